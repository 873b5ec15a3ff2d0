//! The health check's statements: which connections are due, and the writes of a batch of
//! results (`whatsapp_health`, `whatsapp_connections`, `whatsapp_configs`).

use spin_sdk::pg4::ParameterValue;

use super::classify::{Health, TokenStatus};
use crate::db::{int, now_utc, text, Db, DbError, DbResult};

/// Active connections not checked within `$1` hours, stalest first, each with its best token
/// (SPEC 5.1: a non-NULL token, `connected` configs first, then the newest) and how many of its
/// last two checks were `unknown`.
const DUE: &str = concat!(
    "SELECT c.id::text, c.\"organizationId\"::text, c.\"healthStatus\"::text, c.\"wabaId\", c.\"phoneNumberId\", \
            cfg.\"accessToken\", cfg.\"phoneId\", cfg.\"wabaId\", cfg.id::text, \
            (SELECT count(*) FROM (SELECT h.status FROM whatsapp_health h \
                WHERE h.\"connectionId\" = c.id ORDER BY h.\"lastCheck\" DESC LIMIT 2) recent \
             WHERE recent.status = 'unknown') \
     FROM whatsapp_connections c \
     LEFT JOIN LATERAL ( \
        SELECT w.id, w.\"accessToken\", w.\"phoneId\", w.\"wabaId\" FROM whatsapp_configs w \
        WHERE w.\"connectionId\" = c.id AND w.\"accessToken\" IS NOT NULL \
        ORDER BY (w.status = 'connected') DESC NULLS LAST, w.\"updatedAt\" DESC NULLS LAST LIMIT 1 \
     ) cfg ON true \
     WHERE c.status = 'active' \
       AND (c.\"lastHealthCheckAt\" IS NULL \
            OR c.\"lastHealthCheckAt\" < ",
    now_utc!(),
    " - make_interval(hours => $1)) \
     ORDER BY c.\"lastHealthCheckAt\" ASC NULLS FIRST, c.id"
);

/// Active connections left alone because they were checked within `$1` hours.
const COUNT_RECENT: &str = concat!(
    "SELECT count(*) FROM whatsapp_connections WHERE status = 'active' \
     AND \"lastHealthCheckAt\" >= ",
    now_utc!(),
    " - make_interval(hours => $1)"
);

/// The audit rows: `$1` connection id, `$2` status, `$3` tokenValid, `$4` tokenExpired,
/// `$5` reason, `$6` ms. The organization comes from the connection itself.
const INSERT_AUDIT: &str = concat!(
    "INSERT INTO whatsapp_health (id, \"organizationId\", \"connectionId\", status, \"tokenValid\", \
         \"tokenExpired\", \"apiResponse\", \"responseTime\", \"lastCheck\", \"createdAt\") \
     SELECT gen_random_uuid(), c.\"organizationId\", c.id, u.status, u.valid::boolean, \
            u.expired::boolean, u.reason, u.ms::int, ",
    now_utc!(),
    ", ",
    now_utc!(),
    " FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::bigint[]) \
          AS u(id, status, valid, expired, reason, ms) \
     JOIN whatsapp_connections c ON c.id::text = u.id"
);

/// The connections' health, except for `unknown` (SPEC 5: a transient failure keeps the last
/// known status and stays first in line).
const UPDATE_CONNECTIONS: &str = concat!(
    "UPDATE whatsapp_connections c SET \"healthStatus\" = u.status, \"lastHealthCheckAt\" = ",
    now_utc!(),
    ", \"updatedAt\" = ",
    now_utc!(),
    " FROM unnest($1::text[], $2::text[]) AS u(id, status) \
     WHERE c.id::text = u.id AND u.status <> 'unknown'"
);

/// What `debug_token` said of each config's token (`$2` NULL where it did not answer).
const UPDATE_TOKENS: &str = concat!(
    "UPDATE whatsapp_configs w SET \"tokenStatus\" = u.token_status, \
         \"tokenExpiresAt\" = CASE WHEN u.expires IS NULL THEN NULL \
             ELSE timezone('UTC', to_timestamp(u.expires)) END, \
         \"tokenLastCheckedAt\" = ",
    now_utc!(),
    ", \"updatedAt\" = ",
    now_utc!(),
    " FROM unnest($1::text[], $2::text[], $3::bigint[]) AS u(id, token_status, expires) \
     WHERE w.id::text = u.id AND u.token_status IS NOT NULL"
);

#[derive(Debug, Clone)]
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

pub fn due(db: &Db, recheck_after_hours: u32) -> DbResult<Vec<DueConnection>> {
    const CTX: &str = "select due connections";
    let rows = db.query(CTX, DUE, &[ParameterValue::Int32(recheck_after_hours as i32)])?;
    rows.rows
        .iter()
        .map(|r| {
            Ok(DueConnection {
                id: text(&r[0]).ok_or_else(|| DbError::decode(CTX, "id"))?,
                organization_id: text(&r[1]),
                health_status: text(&r[2]),
                waba_id: text(&r[3]),
                phone_number_id: text(&r[4]),
                access_token: text(&r[5]),
                config_phone_id: text(&r[6]),
                config_waba_id: text(&r[7]),
                config_id: text(&r[8]),
                recent_unknowns: int(&r[9]).unwrap_or(0) as usize,
            })
        })
        .collect()
}

pub fn count_recently_checked(db: &Db, recheck_after_hours: u32) -> DbResult<u64> {
    db.count("count recent checks", COUNT_RECENT, &[ParameterValue::Int32(recheck_after_hours as i32)])
}

/// Writes a batch of results, one transaction per batch; when the database refuses the batch's
/// data (a trigger or constraint of WhaTrack's), each row is tried alone so that one bad row
/// does not hold back the others. Says which rows were saved; `refused` hears of each that was
/// not. Any other failure (the connection, the statement) fails the whole write.
pub fn save_isolating(
    db: &Db,
    results: &[CheckResult],
    mut refused: impl FnMut(&CheckResult, &DbError),
) -> DbResult<Vec<bool>> {
    match save(db, results) {
        Ok(()) => return Ok(vec![true; results.len()]),
        Err(e) if e.is_about_the_data() && results.len() > 1 => {}
        Err(e) if e.is_about_the_data() => {
            refused(&results[0], &e);
            return Ok(vec![false]);
        }
        Err(e) => return Err(e),
    }
    results
        .iter()
        .map(|result| match save(db, std::slice::from_ref(result)) {
            Ok(()) => Ok(true),
            Err(e) if e.is_about_the_data() => {
                refused(result, &e);
                Ok(false)
            }
            Err(e) => Err(e),
        })
        .collect()
}

/// Writes a batch of results in one transaction: all of it lands, or none.
fn save(db: &Db, results: &[CheckResult]) -> DbResult<()> {
    if results.is_empty() {
        return Ok(());
    }
    let texts = |f: &dyn Fn(&CheckResult) -> Option<String>| {
        ParameterValue::ArrayStr(results.iter().map(f).collect())
    };
    let ints =
        |f: &dyn Fn(&CheckResult) -> Option<i64>| ParameterValue::ArrayInt64(results.iter().map(f).collect());
    let ids = || texts(&|r| Some(r.connection_id.clone()));
    let health = || texts(&|r| Some(r.health.as_str().to_owned()));
    db.transaction("save health results", || {
        db.execute(
            "insert whatsapp_health",
            INSERT_AUDIT,
            &[
                ids(),
                health(),
                texts(&|r| Some(r.token_valid.to_string())),
                texts(&|r| Some(r.token_expired.to_string())),
                texts(&|r| Some(r.reason.clone())),
                ints(&|r| Some(r.response_ms as i64)),
            ],
        )?;
        db.execute("update whatsapp_connections", UPDATE_CONNECTIONS, &[ids(), health()])?;
        db.execute(
            "update whatsapp_configs",
            UPDATE_TOKENS,
            &[
                texts(&|r| r.config_id.clone()),
                texts(&|r| r.token_status.map(|t| t.as_str().to_owned())),
                ints(&|r| r.token_expires_at),
            ],
        )?;
        Ok(())
    })
}
