//! The webhook retry job (SPEC section 6): a dead-letter queue over `whatsapp_webhook_logs`.
//!
//! A run claims up to `webhook_retry_batch_size` due rows (see [`crate::db::Db::claim_due_webhooks`]
//! for why two runs can never deliver the same row), re-delivers them concurrently to
//! `webhook_processor_url`, and writes each outcome as it comes, following [`policy`]. Rows the
//! time budget left unstarted are released, due again, and counted in `remaining`. Each webhook
//! dead-lettered raises an alert.

pub mod policy;

use std::time::{Duration, Instant};

use futures::stream::{self, StreamExt};
use serde::Serialize;
use serde_json::json;

use crate::alerts::{self, Alert};
use crate::config::Config;
use crate::crypto;
use crate::db::{AttemptOutcome, AttemptWrite, ClaimedWebhook, Db, DbResult, RetryRules};
use crate::outbound::{self, OutboundError, Request, Response};
use crate::runner::{JobContext, JobError, JobOutcome};
use policy::Attempt;

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

pub fn rules(config: &Config) -> RetryRules {
    RetryRules {
        max_attempts: config.webhook_retry_max_attempts,
        base_secs: config.webhook_retry_base.as_secs(),
    }
}

pub async fn run(ctx: &JobContext<'_>) -> Result<JobOutcome, JobError> {
    let config = ctx.config;
    let processor = config.webhook_processor_url.as_deref().unwrap_or_default();
    let rules = rules(config);
    let lease = config.job_time_budget + DELIVERY_TIMEOUT + LEASE_MARGIN;
    let claimed = ctx.db.claim_due_webhooks(&rules, config.webhook_retry_batch_size, lease.as_secs())?;
    ctx.log.info("webhook retry started", json!({ "claimed": claimed.len() }));

    let mut deliveries = stream::iter(claimed)
        .map(|webhook| async move {
            // Checked when the delivery would start: the budget bounds the work we begin.
            if ctx.deadline.passed() {
                return (webhook, None);
            }
            let started = Instant::now();
            let result = deliver(config, processor, &webhook).await;
            (webhook, Some((result, started.elapsed())))
        })
        .buffer_unordered(DELIVERY_CONCURRENCY);

    let mut summary = Summary::default();
    let mut unstarted = Vec::new();
    let mut alerts = Vec::new();
    while let Some((webhook, delivery)) = deliveries.next().await {
        let Some((result, elapsed)) = delivery else {
            unstarted.push(webhook.id);
            continue;
        };
        summary.attempted += 1;
        alerts.extend(record(ctx, &rules, &webhook, result, elapsed, &mut summary)?);
    }
    ctx.db.release_webhooks(&unstarted)?;
    alerts::send(config.alert_webhook_url.as_deref(), Some(ctx.redis), alerts, ctx.log).await;
    summary.remaining = ctx.db.count_due_webhooks(&rules)?;
    Ok(JobOutcome::new(&summary, summary.remaining))
}

async fn deliver(config: &Config, url: &str, webhook: &ClaimedWebhook) -> Result<Response, OutboundError> {
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

fn record(
    ctx: &JobContext<'_>,
    rules: &RetryRules,
    webhook: &ClaimedWebhook,
    result: Result<Response, OutboundError>,
    elapsed: Duration,
    summary: &mut Summary,
) -> DbResult<Option<Alert>> {
    let attempt_no = webhook.retry_count + 1;
    let (http_status, attempt) = match &result {
        Ok(resp) => (
            Some(resp.status),
            policy::judge_response(
                resp.status,
                &resp.body,
                resp.header("retry-after"),
                crate::time::unix_secs(),
            ),
        ),
        Err(e) => (None, policy::judge_error(e)),
    };
    let (outcome, error) = match &attempt {
        Attempt::Delivered => (AttemptOutcome::Delivered, None),
        Attempt::Transient { reason, .. } if attempt_no >= rules.max_attempts => {
            (AttemptOutcome::Dead, Some(format!("{reason} (attempt {attempt_no} of {})", rules.max_attempts)))
        }
        Attempt::Transient { reason, retry_after } => {
            let base = Duration::from_secs(rules.base_secs);
            let delay = policy::next_delay(base, attempt_no, jitter(), *retry_after);
            (AttemptOutcome::RetryIn(delay.as_secs_f64()), Some(reason.clone()))
        }
        Attempt::Rejected { reason } => (AttemptOutcome::Dead, Some(format!("rejected: {reason}"))),
    };
    match outcome {
        AttemptOutcome::Delivered => summary.delivered += 1,
        AttemptOutcome::RetryIn(_) => summary.failed += 1,
        AttemptOutcome::Dead => summary.dead_lettered += 1,
    }
    let outcome_name = match outcome {
        AttemptOutcome::Delivered => "delivered",
        AttemptOutcome::RetryIn(_) => "retry",
        AttemptOutcome::Dead => "dead-lettered",
    };
    ctx.log.info(
        "webhook re-delivered",
        json!({ "webhookLogId": webhook.id, "attempt": attempt_no, "httpStatus": http_status,
                "outcome": outcome_name, "error": error, "durationMs": elapsed.as_millis() as u64 }),
    );
    ctx.db.record_webhook_attempt(&AttemptWrite {
        id: &webhook.id,
        attempt: attempt_no,
        http_status,
        error: error.as_deref(),
        duration_ms: elapsed.as_millis() as u64,
        job_id: ctx.job_id,
        outcome,
    })?;
    Ok((outcome == AttemptOutcome::Dead)
        .then(|| Alert::webhook_dead(&webhook.id, error.as_deref().unwrap_or_default())))
}

/// A uniform number in [0, 1) for the backoff jitter. std seeds `RandomState` from the host's
/// random source (`wasi:random/insecure-seed`), which is all spreading retries needs.
fn jitter() -> f64 {
    use std::hash::{BuildHasher, Hasher};
    let bits = std::collections::hash_map::RandomState::new().build_hasher().finish();
    (bits >> 11) as f64 / (1u64 << 53) as f64
}

/// Which dead-lettered webhooks to put back in the queue.
pub enum Redrive {
    All,
    Ids(Vec<String>),
}

pub fn redrive(db: &Db, which: &Redrive) -> DbResult<u64> {
    match which {
        Redrive::All => db.redrive_webhooks(None),
        Redrive::Ids(ids) => db.redrive_webhooks(Some(ids)),
    }
}
