//! Retention: the audit tables do not grow without end. Run by the health-check job (once a day),
//! after its checks and within the same time budget.
//!
//! This project's own tables (`job_runs`, `webhook_retry_attempts`) keep `audit_retention_days`
//! (90 by default). `whatsapp_health` is WhaTrack's too (its app shows the history), so it is
//! trimmed only when the operator sets `health_retention_days`. Deletes go in batches so that no
//! statement holds locks for long; whatever the budget or the batch cap leaves, the next day's run
//! continues.

use serde::Serialize;

use crate::db::{AuditTable, DbResult};
use crate::runner::JobContext;

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

pub fn run(ctx: &JobContext<'_>) -> DbResult<Purged> {
    let audit = ctx.config.audit_retention_days;
    let health = ctx.config.health_retention_days;
    Ok(Purged {
        job_runs: purge(ctx, AuditTable::JobRuns, audit)?,
        webhook_retry_attempts: purge(ctx, AuditTable::WebhookRetryAttempts, audit)?,
        whatsapp_health: purge(ctx, AuditTable::WhatsappHealth, health)?,
    })
}

fn purge(ctx: &JobContext<'_>, table: AuditTable, days: Option<u32>) -> DbResult<u64> {
    let Some(days) = days else { return Ok(0) };
    let mut total = 0;
    for _ in 0..MAX_BATCHES {
        if ctx.deadline.passed() {
            break;
        }
        let deleted = ctx.db.purge_older_than(table, days, BATCH)?;
        total += deleted;
        if deleted < u64::from(BATCH) {
            break;
        }
    }
    Ok(total)
}
