//! What the operator console and Prometheus read of the connections (`console`): how many are
//! in each health status, why the latest unhealthy ones are, and whose tokens expire soon.
//! Read-only statements, each bounded, for an estate of any size.

use serde::{Deserialize, Serialize};
use spin_sdk::pg4::ParameterValue;

use crate::db::{iso, now_utc, Db, DbResult};

/// How many unhealthy connections, and expiring tokens, the console lists (all are counted).
pub const LISTED: i64 = 20;

/// Active connections by `"healthStatus"`.
const BY_HEALTH: &str =
    "SELECT COALESCE(\"healthStatus\"::text, 'unknown') AS health, count(*) AS count FROM whatsapp_connections \
     WHERE status = 'active' GROUP BY 1 ORDER BY 1";

/// The `$1` active connections in `error` or `warning` checked last, each with its latest
/// check's reason (`"apiResponse"`: what Meta or the run said, untrusted text).
const LATEST_UNHEALTHY: &str = concat!(
    "SELECT c.id::text AS \"connectionId\", c.\"phoneNumberId\"::text AS \"phoneNumberId\", \
         c.\"healthStatus\"::text AS health, h.\"apiResponse\"::text AS reason, ",
    iso!("h.\"lastCheck\""),
    " AS \"checkedAt\" FROM (SELECT id, \"phoneNumberId\", \"healthStatus\", \"lastHealthCheckAt\" FROM whatsapp_connections \
         WHERE status = 'active' AND \"healthStatus\" IN ('error', 'warning') \
         ORDER BY \"lastHealthCheckAt\" DESC NULLS LAST LIMIT $1) c \
     LEFT JOIN LATERAL (SELECT \"apiResponse\", \"lastCheck\" FROM whatsapp_health \
         WHERE \"connectionId\" = c.id ORDER BY \"lastCheck\" DESC LIMIT 1) h ON true \
     ORDER BY c.\"lastHealthCheckAt\" DESC NULLS LAST"
);

/// Tokens of active connections that expire within `$1` days (and have not yet), soonest
/// first, at most `$2`, each row with the count of all of them.
const EXPIRING: &str = concat!(
    "SELECT c.id::text AS \"connectionId\", c.\"phoneNumberId\"::text AS \"phoneNumberId\", ",
    iso!("w.\"tokenExpiresAt\""),
    " AS \"expiresAt\", count(*) OVER () AS total FROM whatsapp_configs w JOIN whatsapp_connections c ON c.id = w.\"connectionId\" \
     WHERE c.status = 'active' AND w.\"tokenExpiresAt\" > ",
    now_utc!(),
    " AND w.\"tokenExpiresAt\" <= ",
    now_utc!(),
    " + make_interval(days => $1) ORDER BY w.\"tokenExpiresAt\" LIMIT $2"
);

#[derive(Debug, Serialize, Deserialize)]
pub struct HealthCount {
    pub health: String,
    pub count: u64,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Unhealthy {
    pub connection_id: String,
    pub phone_number_id: Option<String>,
    pub health: Option<String>,
    pub reason: Option<String>,
    pub checked_at: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Expiring {
    pub connection_id: String,
    pub phone_number_id: Option<String>,
    pub expires_at: Option<String>,
    /// How many expire within the window, listed or not (the same on every row).
    #[serde(skip_serializing)]
    total: u64,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ExpiringTokens {
    pub count: u64,
    pub within_days: u32,
    pub soonest: Vec<Expiring>,
}

pub fn by_health(db: &Db) -> DbResult<Vec<HealthCount>> {
    db.rows("connections by health", BY_HEALTH, &[])
}

pub fn latest_unhealthy(db: &Db) -> DbResult<Vec<Unhealthy>> {
    db.rows("latest unhealthy connections", LATEST_UNHEALTHY, &[ParameterValue::Int64(LISTED)])
}

pub fn expiring_tokens(db: &Db, within_days: u32) -> DbResult<ExpiringTokens> {
    let params = [ParameterValue::Int32(within_days as i32), ParameterValue::Int64(LISTED)];
    let soonest: Vec<Expiring> = db.rows("expiring tokens", EXPIRING, &params)?;
    Ok(ExpiringTokens { count: soonest.first().map_or(0, |e| e.total), within_days, soonest })
}
