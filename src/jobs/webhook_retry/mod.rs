//! The webhook retry job (SPEC section 6): a dead-letter queue over `whatsapp_webhook_logs`.
//!
//! A run claims up to `webhook_retry_batch_size` due rows ([`queue`] says why two runs can never
//! deliver the same row), re-delivers them concurrently to `webhook_processor_url`, and records
//! each outcome as it comes, as [`policy`] decides it. Rows the time budget left unstarted are
//! released, due again, and counted in `remaining`. Each webhook dead-lettered raises an alert.

pub mod policy;
pub mod queue;

use std::time::{Duration, Instant, SystemTime};

use futures::StreamExt;
use serde::Serialize;
use serde_json::json;

use crate::alerts::Alert;
use crate::config::Config;
use crate::context::{JobContext, JobError, JobOutcome, Turn};
use crate::crypto;
use crate::db::DbResult;
use crate::outbound::{self, OutboundError, Request, Response};
use policy::{Decision, Fate, Rules};
use queue::{AttemptRecord, Claimed};

const DELIVERY_TIMEOUT: Duration = Duration::from_secs(10);
/// Deliveries in flight at once.
const DELIVERY_CONCURRENCY: usize = 16;
/// A claim outlives the run that made it (budget plus the last deliveries' timeout), so a run
/// that dies mid-way only delays its rows until the lease ends.
const LEASE_MARGIN: Duration = Duration::from_secs(60);

#[derive(Debug, Default, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    pub attempted: u64,
    pub delivered: u64,
    pub failed: u64,
    pub dead_lettered: u64,
    pub remaining: u64,
}

pub async fn run(ctx: &JobContext<'_>) -> Result<JobOutcome, JobError> {
    let config = ctx.config;
    let processor = config.webhook_processor_url.as_deref().unwrap_or_default();
    let rules = Rules::of(config);
    let lease = config.job_time_budget + DELIVERY_TIMEOUT + LEASE_MARGIN;
    let claimed = queue::claim(ctx.db, &rules, config.webhook_retry_batch_size, lease.as_secs())?;
    ctx.log.info("webhook retry started", json!({ "claimed": claimed.len() }));

    let mut deliveries = ctx.within_budget(claimed, DELIVERY_CONCURRENCY, |webhook| async move {
        let started = Instant::now();
        let result = deliver(config, processor, &webhook).await;
        (webhook, result, started.elapsed())
    });

    let mut summary = Summary::default();
    let mut unstarted = Vec::new();
    let mut alerts = Vec::new();
    while let Some(turn) = deliveries.next().await {
        let (webhook, result, elapsed) = match turn {
            Turn::Done(delivered) => delivered,
            Turn::NotStarted(webhook) => {
                unstarted.push(webhook.id);
                continue;
            }
        };
        summary.attempted += 1;
        let decision = policy::decide(&result, webhook.retry_count + 1, &rules, SystemTime::now(), jitter());
        match decision.fate {
            Fate::Delivered => summary.delivered += 1,
            Fate::RetryIn(_) => summary.failed += 1,
            Fate::Dead => {
                summary.dead_lettered += 1;
                alerts.push(Alert::webhook_dead(&webhook.id, decision.error.as_deref().unwrap_or_default()));
            }
        }
        record(ctx, &webhook, &decision, elapsed)?;
    }
    queue::release(ctx.db, &unstarted)?;
    ctx.send_alerts(alerts).await;
    summary.remaining = queue::count_due(ctx.db, &rules)?;
    Ok(JobOutcome::new(&summary, summary.remaining))
}

async fn deliver(config: &Config, url: &str, webhook: &Claimed) -> Result<Response, OutboundError> {
    let body = webhook.body.as_bytes();
    let mut headers = vec![
        ("content-type", "application/json".to_owned()),
        ("x-webhook-log-id", webhook.id.clone()),
        ("x-webhook-retry-attempt", (webhook.retry_count + 1).to_string()),
    ];
    if let Some(app) = &config.meta_app {
        headers.push(("x-hub-signature-256", crypto::hub_signature(&app.secret, body)));
    }
    outbound::send(Request { method: "POST", url, headers, body }, DELIVERY_TIMEOUT).await
}

fn record(ctx: &JobContext<'_>, webhook: &Claimed, decision: &Decision, elapsed: Duration) -> DbResult<()> {
    let attempt = webhook.retry_count + 1;
    let duration_ms = elapsed.as_millis() as u64;
    ctx.log.info(
        "webhook re-delivered",
        json!({ "webhookLogId": webhook.id, "attempt": attempt, "httpStatus": decision.http_status,
                "outcome": decision.fate.name(), "error": decision.error, "durationMs": duration_ms }),
    );
    queue::record(
        ctx.db,
        &AttemptRecord {
            id: &webhook.id,
            attempt,
            http_status: decision.http_status,
            error: decision.error.as_deref(),
            duration_ms,
            job_id: ctx.job_id,
            fate: decision.fate,
        },
    )
}

/// A uniform number in [0, 1) for the backoff jitter, from the host's random source.
fn jitter() -> f64 {
    let bits = wasi::random::insecure::get_insecure_random_u64();
    (bits >> 11) as f64 / (1u64 << 53) as f64
}
