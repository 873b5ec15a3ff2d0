//! The health check's statements: which connections are due, and the writes of a batch of
//! results (`whatsapp_health`, `whatsapp_connections`, `whatsapp_configs`).

use serde::Deserialize;
use spin_sdk::pg4::ParameterValue;

use super::classify::{Health, TokenStatus};
use crate::db::{now_utc, str, write_isolating, Db, DbError, DbResult, Pages};
use crate::time::Deadline;

/// Where a run draws the line, once at its start: connections checked before `$1` hours ago
/// are due, and how many active ones were checked since. Fixed for the whole run, so that the
/// connections it checks (now checked "since") never come round again, even with a recheck
/// window of 0.
const CUTOFF: &str = concat!(
    "WITH t AS (SELECT ",
    now_utc!(),
    " - make_interval(hours => $1) AS cutoff) \
     SELECT t.cutoff::text AS at, (SELECT count(*) FROM whatsapp_connections \
         WHERE status = 'active' AND \"lastHealthCheckAt\" >= t.cutoff) AS \"recentlyChecked\" FROM t"
);

/// The stalest-first order of due connections, a key the keyset below can resume from.
macro_rules! staleness {
    () => {
        "(COALESCE(c.\"lastHealthCheckAt\", '-infinity'), c.id::text COLLATE \"C\")"
    };
}

/// A page of due connections (active, checked before the cutoff `$1` or never), stalest first,
/// after the key (`$2` last check, `$3` id; `$2` NULL for the first page), at most `$4`: the keyset
/// reads each page from where the last ended, not by an offset that rereads the table. Each
/// comes with its best token (SPEC 5.1: a non-NULL token, `connected` configs first, then the
/// newest), how many of its last two checks were `unknown`, and its key.
const DUE: &str = concat!(
    "WITH page AS ( \
        SELECT c.id, c.\"organizationId\", c.\"healthStatus\", c.\"wabaId\", c.\"phoneNumberId\", \
               COALESCE(c.\"lastHealthCheckAt\", '-infinity') AS checked, c.id::text COLLATE \"C\" AS key \
        FROM whatsapp_connections c \
        WHERE c.status = 'active' \
          AND (c.\"lastHealthCheckAt\" IS NULL OR c.\"lastHealthCheckAt\" < $1::text::timestamp) \
          AND ($2::text IS NULL OR ",
    staleness!(),
    " > ($2::text::timestamp, $3::text COLLATE \"C\")) \
        ORDER BY COALESCE(c.\"lastHealthCheckAt\", '-infinity'), c.id::text COLLATE \"C\" LIMIT $4) \
     SELECT c.id::text AS id, c.\"organizationId\"::text AS \"organizationId\", \
            c.\"healthStatus\"::text AS \"healthStatus\", c.\"wabaId\"::text AS \"wabaId\", \
            c.\"phoneNumberId\"::text AS \"phoneNumberId\", cfg.\"accessToken\"::text AS \"accessToken\", \
            cfg.\"phoneId\"::text AS \"configPhoneId\", cfg.\"wabaId\"::text AS \"configWabaId\", \
            cfg.id::text AS \"configId\", \
            (SELECT count(*) FROM (SELECT h.status FROM whatsapp_health h \
                WHERE h.\"connectionId\" = c.id ORDER BY h.\"lastCheck\" DESC LIMIT 2) recent \
             WHERE recent.status = 'unknown') AS \"recentUnknowns\", \
            c.checked::text AS \"checkedKey\" \
     FROM page c \
     LEFT JOIN LATERAL ( \
        SELECT w.id, w.\"accessToken\", w.\"phoneId\", w.\"wabaId\" FROM whatsapp_configs w \
        WHERE w.\"connectionId\" = c.id AND w.\"accessToken\" IS NOT NULL \
        ORDER BY (w.status = 'connected') DESC NULLS LAST, w.\"updatedAt\" DESC NULLS LAST LIMIT 1 \
     ) cfg ON true \
     ORDER BY c.checked, c.key"
);

/// Active connections due under the cutoff `$1`.
const COUNT_STILL_DUE: &str = "SELECT count(*) FROM whatsapp_connections WHERE status = 'active' \
     AND (\"lastHealthCheckAt\" IS NULL OR \"lastHealthCheckAt\" < $1::text::timestamp)";

/// A batch of results, in one statement (so one transaction): the audit rows, the connections'
/// health and what `debug_token` said of each config's token. Arrays, one element per result:
/// `$1` connection id, `$2` status, `$3` tokenValid, `$4` tokenExpired, `$5` reason, `$6` ms,
/// `$7` config id, `$8` token status (NULL where `debug_token` did not answer), `$9` expiry.
/// The audit row's organization comes from the connection itself. An `unknown` leaves the
/// connection alone (SPEC 5: a transient failure keeps the last known status and stays first in
/// line).
const SAVE: &str = concat!(
    "WITH u AS (SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], \
             $6::bigint[], $7::text[], $8::text[], $9::bigint[]) \
         AS u(id, status, valid, expired, reason, ms, config_id, token_status, expires)), \
     audit AS ( \
         INSERT INTO whatsapp_health (id, \"organizationId\", \"connectionId\", status, \"tokenValid\", \
             \"tokenExpired\", \"apiResponse\", \"responseTime\", \"lastCheck\", \"createdAt\") \
         SELECT gen_random_uuid(), c.\"organizationId\", c.id, u.status, u.valid::boolean, \
                u.expired::boolean, u.reason, u.ms::int, ",
    now_utc!(),
    ", ",
    now_utc!(),
    " FROM u JOIN whatsapp_connections c ON c.id::text = u.id), \
     connections AS ( \
         UPDATE whatsapp_connections c SET \"healthStatus\" = u.status, \"lastHealthCheckAt\" = ",
    now_utc!(),
    ", \"updatedAt\" = ",
    now_utc!(),
    " FROM u WHERE c.id::text = u.id AND u.status <> 'unknown') \
     UPDATE whatsapp_configs w SET \"tokenStatus\" = u.token_status, \
         \"tokenExpiresAt\" = CASE WHEN u.expires IS NULL THEN NULL \
             ELSE timezone('UTC', to_timestamp(u.expires)) END, \
         \"tokenLastCheckedAt\" = ",
    now_utc!(),
    ", \"updatedAt\" = ",
    now_utc!(),
    " FROM u WHERE w.id::text = u.config_id AND u.token_status IS NOT NULL"
);

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DueConnection {
    pub id: String,
    pub organization_id: Option<String>,
    /// The last known health, before this check, as stored.
    pub health_status: Option<String>,
    pub waba_id: Option<String>,
    pub phone_number_id: Option<String>,
    pub access_token: Option<String>,
    pub config_phone_id: Option<String>,
    pub config_waba_id: Option<String>,
    pub config_id: Option<String>,
    /// How many of the connection's last two checks were `unknown`.
    pub recent_unknowns: usize,
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
    db.row("health check cutoff", CUTOFF, &[ParameterValue::Int32(recheck_after_hours as i32)])
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
        const CTX: &str = "select due connections";
        if deadline.passed() {
            return Ok(Vec::new());
        }
        let (checked, id) = after.clone().unzip();
        let params = [
            str(&cutoff.at),
            checked.map(|c| str(&c)).into(),
            id.map(|i| str(&i)).into(),
            ParameterValue::Int64(i64::from(page)),
        ];
        let due: Vec<DueConnection> = db.rows(CTX, DUE, &params)?;
        if let Some(last) = due.last() {
            after = Some((last.checked_key.clone(), last.id.clone()));
        }
        Ok(due)
    })
}

pub fn count_still_due(db: &Db, cutoff: &Cutoff) -> DbResult<u64> {
    db.count("count due connections", COUNT_STILL_DUE, &[str(&cutoff.at)])
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
        SAVE,
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
