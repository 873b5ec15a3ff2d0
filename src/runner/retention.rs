//! Retention: the audit tables do not grow without end. The runner runs it after the daily job
//! (the health check), within the same run and time budget.
//!
//! This project's own tables (`job_runs`, the runner's; `webhook_retry_attempts`, the queue's)
//! keep `audit_retention_days` (90 by default). `whatsapp_health` is WhaTrack's too (its app shows
//! the history), so it is trimmed only when the operator sets `health_retention_days`. Deletes go
//! in batches so that no statement holds locks for long; whatever the budget or the batch cap
//! leaves, the next day's run continues.

use serde::Serialize;
use spin_sdk::pg4::ParameterValue;

use crate::config::{days_or_forever, number, ConfigError, Source};
use crate::context::JobContext;
use crate::db::DbResult;

/// One statement per table: names cannot be bound parameters.
const PURGE_JOB_RUNS: &str = include_str!("sql/purge_job_runs.sql");
const PURGE_WEBHOOK_RETRY_ATTEMPTS: &str = include_str!("sql/purge_webhook_retry_attempts.sql");
const PURGE_WHATSAPP_HEALTH: &str = include_str!("sql/purge_whatsapp_health.sql");

/// Rows per DELETE statement.
const BATCH: u32 = 5_000;
/// Statements per table per run: at most 100,000 rows a day each.
const MAX_BATCHES: u32 = 20;

#[derive(Debug, Default, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Purged {
    pub job_runs: u64,
    pub webhook_retry_attempts: u64,
    pub whatsapp_health: u64,
}

/// Days each table keeps; `None` keeps it forever.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    /// `job_runs` and `webhook_retry_attempts` (90 by default).
    pub audit_days: Option<u32>,
    /// `whatsapp_health`: forever by default, since WhaTrack's app reads that table too.
    pub health_days: Option<u32>,
}

impl Settings {
    pub fn from_source(src: &impl Source) -> Result<Self, ConfigError> {
        Ok(Self {
            audit_days: days_or_forever(number(src, "audit_retention_days", 90, 0..=36_500)?),
            health_days: days_or_forever(number(src, "health_retention_days", 0, 0..=36_500)?),
        })
    }
}

pub fn run(ctx: &JobContext<'_>, keep: &Settings) -> DbResult<Purged> {
    Ok(Purged {
        job_runs: purge(ctx, PURGE_JOB_RUNS, keep.audit_days)?,
        webhook_retry_attempts: purge(ctx, PURGE_WEBHOOK_RETRY_ATTEMPTS, keep.audit_days)?,
        whatsapp_health: purge(ctx, PURGE_WHATSAPP_HEALTH, keep.health_days)?,
    })
}

fn purge(ctx: &JobContext<'_>, statement: &str, days: Option<u32>) -> DbResult<u64> {
    let Some(days) = days else { return Ok(0) };
    let mut total = 0;
    for _ in 0..MAX_BATCHES {
        if ctx.deadline.passed() {
            break;
        }
        let params = [ParameterValue::Int32(days as i32), ParameterValue::Int64(i64::from(BATCH))];
        let deleted = ctx.db.execute("purge old rows", statement, &params)?;
        total += deleted;
        if deleted < u64::from(BATCH) {
            break;
        }
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::testing::{base, with, Map};

    #[test]
    fn zero_keeps_forever() {
        let defaults = Settings::from_source(&Map(base())).unwrap();
        assert_eq!(defaults, Settings { audit_days: Some(90), health_days: None });
        let mut m = base();
        m.insert("audit_retention_days", "0");
        m.insert("health_retention_days", "30");
        assert_eq!(
            Settings::from_source(&Map(m)).unwrap(),
            Settings { audit_days: None, health_days: Some(30) }
        );
        assert!(Settings::from_source(&with("audit_retention_days", "-1")).is_err());
    }
}
