//! What the operator console and Prometheus read of the connections: how many are in each
//! health status, why the latest unhealthy ones are, whose tokens expire soon, and which Meta
//! holds. Read-only statements (in `sql/`), each bounded, for an estate of any size.

use serde::{Deserialize, Serialize};
use spin_sdk::pg4::ParameterValue;

use crate::db::{str_array, Db, DbResult};
use crate::jobs::health_check::meta_limits::Held;

/// How many unhealthy connections, and expiring tokens, the console lists (all are counted).
pub const LISTED: i64 = 20;

const CONNECTIONS_BY_HEALTH: &str = include_str!("sql/connections_by_health.sql");
const LATEST_UNHEALTHY_CONNECTIONS: &str = include_str!("sql/latest_unhealthy_connections.sql");
const EXPIRING_TOKENS: &str = include_str!("sql/expiring_tokens.sql");
const CONNECTIONS_HELD: &str = include_str!("sql/connections_held.sql");

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

/// A business Meta holds, until when, and its active connections waiting: not checked, their
/// status their last known one (told apart from a check that was `unknown`).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HeldConnections {
    pub business: String,
    pub until: String,
    pub connections: u64,
    /// The first five, by phone number id.
    pub phone_numbers: Vec<String>,
}

/// The connections of each business in `held`, in `held`'s order.
pub fn held_connections(db: &Db, held: Vec<Held>) -> DbResult<Vec<HeldConnections>> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Row {
        business: String,
        connections: u64,
        phone_numbers: Vec<Option<String>>,
    }
    if held.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<String> = held.iter().map(|h| h.business.clone()).collect();
    let mut rows: Vec<Row> = db.rows("connections held", CONNECTIONS_HELD, &[str_array(&ids)])?;
    Ok(held
        .into_iter()
        .map(|h| {
            let row = rows.iter().position(|r| r.business == h.business).map(|i| rows.swap_remove(i));
            HeldConnections {
                business: h.business,
                until: h.until,
                connections: row.as_ref().map_or(0, |r| r.connections),
                phone_numbers: row
                    .map(|r| r.phone_numbers.into_iter().flatten().collect())
                    .unwrap_or_default(),
            }
        })
        .collect())
}
