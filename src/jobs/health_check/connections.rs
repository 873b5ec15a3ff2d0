//! The health check's statements (in `sql/`): which connections are due, and the writes of a
//! batch of results (`whatsapp_health`, `whatsapp_connections`, `whatsapp_configs`).

use serde::Deserialize;
use spin_sdk::pg4::ParameterValue;

use super::classify::{self, Health, TokenStatus};
use crate::db::{str, write_isolating, Db, DbError, DbResult, Pages};
use crate::time::Deadline;

const HEALTH_CHECK_CUTOFF: &str = include_str!("sql/health_check_cutoff.sql");
const DUE_CONNECTIONS: &str = include_str!("sql/due_connections.sql");
const COUNT_DUE_CONNECTIONS: &str = include_str!("sql/count_due_connections.sql");
const SAVE_HEALTH_RESULTS: &str = include_str!("sql/save_health_results.sql");

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DueConnection {
    pub id: String,
    pub organization_id: Option<String>,
    /// The last known health, before this check; `None` when never checked, or when the
    /// stored value is none of ours.
    #[serde(deserialize_with = "Health::lenient")]
    pub health_status: Option<Health>,
    pub waba_id: Option<String>,
    pub phone_number_id: Option<String>,
    pub access_token: Option<String>,
    pub config_phone_id: Option<String>,
    pub config_waba_id: Option<String>,
    pub config_id: Option<String>,
    /// How many of the checks just before this one were `unknown`, within the streak's window.
    pub previous_unknowns: usize,
    /// Its last check time as the keyset orders it (`-infinity` for never), where the next
    /// page starts.
    checked_key: String,
}

/// One checked connection, as [`save_results`] writes it.
#[derive(Debug, Clone)]
pub struct CheckResult {
    pub connection_id: String,
    pub config_id: Option<String>,
    pub health: Health,
    pub token_valid: bool,
    pub token_expired: bool,
    pub reason: String,
    pub response_ms: u64,
    /// Set only when `debug_token` answered.
    pub token_status: Option<TokenStatus>,
    pub token_expires_at: Option<i64>,
}

/// Where this run draws the line between due and recently checked.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Cutoff {
    at: String,
    pub recently_checked: u64,
}

pub fn cutoff(db: &Db, recheck_after_hours: u32) -> DbResult<Cutoff> {
    db.row("health check cutoff", HEALTH_CHECK_CUTOFF, &[ParameterValue::Int32(recheck_after_hours as i32)])
}

/// The due connections, stalest first, read `page` at a time as the run gets to them.
/// Nothing is read once `deadline` has passed: the run could not start those checks anyway.
pub fn due<'a>(
    db: &'a Db,
    cutoff: &'a Cutoff,
    page: u32,
    deadline: Deadline,
) -> Pages<DueConnection, impl FnMut() -> DbResult<Vec<DueConnection>> + 'a> {
    let mut after: Option<(String, String)> = None;
    Pages::new(move || {
        if deadline.passed() {
            return Ok(Vec::new());
        }
        let (checked, id) = after.clone().unzip();
        let params = [
            str(&cutoff.at),
            checked.map(|c| str(&c)).into(),
            id.map(|i| str(&i)).into(),
            ParameterValue::Int64(i64::from(page)),
            ParameterValue::Int64(classify::UNKNOWN_STREAK_WARNING as i64 - 1),
        ];
        let due: Vec<DueConnection> = db.rows_in_order("select due connections", DUE_CONNECTIONS, &params)?;
        if let Some(last) = due.last() {
            after = Some((last.checked_key.clone(), last.id.clone()));
        }
        Ok(due)
    })
}

pub fn count_still_due(db: &Db, cutoff: &Cutoff) -> DbResult<u64> {
    db.count("count due connections", COUNT_DUE_CONNECTIONS, &[str(&cutoff.at)])
}

/// Writes a batch of results, one transaction per batch, isolating rows the database refuses
/// (see [`write_isolating`]).
pub fn save_isolating(
    db: &Db,
    results: &[CheckResult],
    refused: impl FnMut(&CheckResult, &DbError),
) -> DbResult<Vec<bool>> {
    write_isolating(results, |rows| save(db, rows), refused)
}

fn save(db: &Db, results: &[CheckResult]) -> DbResult<()> {
    if results.is_empty() {
        return Ok(());
    }
    let texts = |f: &dyn Fn(&CheckResult) -> Option<String>| {
        ParameterValue::ArrayStr(results.iter().map(f).collect())
    };
    let ints =
        |f: &dyn Fn(&CheckResult) -> Option<i64>| ParameterValue::ArrayInt64(results.iter().map(f).collect());
    db.execute(
        "save health results",
        SAVE_HEALTH_RESULTS,
        &[
            texts(&|r| Some(r.connection_id.clone())),
            texts(&|r| Some(r.health.as_str().to_owned())),
            texts(&|r| Some(r.token_valid.to_string())),
            texts(&|r| Some(r.token_expired.to_string())),
            texts(&|r| Some(r.reason.clone())),
            ints(&|r| Some(r.response_ms as i64)),
            texts(&|r| r.config_id.clone()),
            texts(&|r| r.token_status.map(|t| t.as_str().to_owned())),
            ints(&|r| r.token_expires_at),
        ],
    )?;
    Ok(())
}
