//! What the operator console and Prometheus read of the connections: how many are in each
//! health status, why the latest unhealthy ones are, and whose tokens expire soon. Read-only
//! statements (in `sql/`), each bounded, for an estate of any size.

use serde::{Deserialize, Serialize};
use spin_sdk::pg4::ParameterValue;

use crate::db::{Db, DbResult};

/// How many unhealthy connections, and expiring tokens, the console lists (all are counted).
pub const LISTED: i64 = 20;

const CONNECTIONS_BY_HEALTH: &str = include_str!("sql/connections_by_health.sql");
const LATEST_UNHEALTHY_CONNECTIONS: &str = include_str!("sql/latest_unhealthy_connections.sql");
const EXPIRING_TOKENS: &str = include_str!("sql/expiring_tokens.sql");

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
    db.rows_in_order("connections by health", CONNECTIONS_BY_HEALTH, &[])
}

pub fn latest_unhealthy(db: &Db) -> DbResult<Vec<Unhealthy>> {
    db.rows_in_order(
        "latest unhealthy connections",
        LATEST_UNHEALTHY_CONNECTIONS,
        &[ParameterValue::Int64(LISTED)],
    )
}

pub fn expiring_tokens(db: &Db, within_days: u32) -> DbResult<ExpiringTokens> {
    let params = [ParameterValue::Int32(within_days as i32), ParameterValue::Int64(LISTED)];
    let soonest: Vec<Expiring> = db.rows_in_order("expiring tokens", EXPIRING_TOKENS, &params)?;
    Ok(ExpiringTokens { count: soonest.first().map_or(0, |e| e.total), within_days, soonest })
}
