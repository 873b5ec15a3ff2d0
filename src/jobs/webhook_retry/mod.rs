//! The webhook retry job (SPEC section 6): a dead-letter queue over `whatsapp_webhook_logs`.
//!
//! A run dead-letters what must not be re-delivered any more (expired or exhausted rows), claims
//! up to `webhook_retry_batch_size` due rows ([`queue`] says why two runs can never deliver the
//! same row), re-delivers them concurrently to `webhook_processor_url`, and records each outcome
//! as it comes, as [`policy`] decides it. Rows the time budget left unstarted or cut short are
//! released, due again with no attempt charged, and counted in `remaining`. Each webhook
//! dead-lettered raises an alert.
//!
//! Two failures are not the webhook's fault and charge no row: a destination the host refuses
//! (missing from `allowed_outbound_hosts`) fails the run, and a row the database refuses to
//! record is logged, counted as `failed`, and left for its lease to end.

pub mod policy;
pub mod queue;

use std::collections::HashSet;
use std::time::{Duration, Instant, SystemTime};

use futures::StreamExt;
use serde::Serialize;
use serde_json::json;

use crate::alerts::Alert;
use crate::config::Config;
use crate::context::{JobContext, JobError, JobOutcome, Turn};
use crate::crypto;
use crate::outbound::{self, OutboundError, Request, Response};
use crate::time::Deadline;
use policy::{Decision, Fate, Rules};
use queue::{AttemptRecord, Claimed, Queue};

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
    /// Failed attempts that will be retried, and attempts the database refused to record.
    pub failed: u64,
    /// Dead-lettered by this run: after an attempt, or by the sweep below.
    pub dead_lettered: u64,
    /// Swept: pending longer than `webhook_retry_max_age_hours`.
    pub expired: u64,
    /// Swept: `"retryCount"` already at the maximum without having been dead-lettered.
    pub exhausted: u64,
    pub remaining: u64,
}

pub async fn run(ctx: &JobContext<'_>) -> Result<JobOutcome, JobError> {
    let config = ctx.config;
    let processor = config.webhook_processor_url.as_deref().unwrap_or_default();
    let rules = Rules::of(config);
    let queue = Queue::open(ctx.db, rules)?;
    let mut summary = Summary::default();
    let mut alerts = Vec::new();

    sweep(&queue, &mut summary, &mut alerts)?;

    let lease = config.job_time_budget + DELIVERY_TIMEOUT + LEASE_MARGIN;
    let claimed = queue.claim(config.webhook_retry_batch_size, lease.as_secs())?;
    ctx.log.info(
        "webhook retry started",
        json!({ "claimed": claimed.len(), "expired": summary.expired, "exhausted": summary.exhausted }),
    );
    // Claimed but not (yet) attempted: released at the end, due again, charged nothing.
    let mut unrecorded: HashSet<String> = claimed.iter().map(|w| w.id.clone()).collect();

    let deadline = ctx.deadline;
    let mut deliveries = ctx.within_budget(claimed, DELIVERY_CONCURRENCY, |webhook| async move {
        let started = Instant::now();
        let attempt = webhook.retry_count + 1;
        let result =
            deliver(config, &webhook.id, webhook.body.as_bytes(), attempt, DELIVERY_TIMEOUT, deadline).await;
        (webhook, result, started.elapsed())
    });
    let mut misconfigured = None;
    while let Some(turn) = deliveries.next().await {
        let Turn::Done((webhook, result, elapsed)) = turn else { continue };
        match &result {
            // Cut short by the budget: not attempted, as far as anyone is charged.
            Err(OutboundError::OutOfTime) => continue,
            Err(e @ (OutboundError::Denied(_) | OutboundError::InvalidUrl(_))) => {
                misconfigured = Some(e.to_string());
                break;
            }
            _ => {}
        }
        summary.attempted += 1;
        let decision = policy::decide(&result, webhook.retry_count + 1, &rules, SystemTime::now(), jitter());
        let recorded = record(ctx, &queue, &webhook, &decision, elapsed)?;
        // Attempted: not released. A row the database refused stays claimed until its lease ends.
        unrecorded.remove(&webhook.id);
        match decision.fate {
            _ if !recorded => summary.failed += 1,
            Fate::Delivered => summary.delivered += 1,
            Fate::RetryIn(_) => summary.failed += 1,
            Fate::Dead => {
                summary.dead_lettered += 1;
                alerts.push(Alert::webhook_dead(&webhook.id, decision.brief.as_deref().unwrap_or_default()));
            }
        }
    }
    drop(deliveries);
    queue.release(&unrecorded.iter().cloned().collect::<Vec<_>>())?;
    if let Some(why) = misconfigured {
        return Err(JobError::Misconfigured(format!(
            "the webhook processor {processor} cannot be reached as configured ({why}): check webhook_processor_url \
             and that webhook_processor_host allows it; {} claimed webhooks were released, none charged an attempt",
            unrecorded.len()
        )));
    }
    ctx.send_alerts(alerts).await;
    summary.remaining = queue.count_due()?;
    Ok(JobOutcome::new(&summary, summary.remaining))
}

/// Dead-letters what must not be re-delivered any more (policy step 7), counting and alerting.
fn sweep(queue: &Queue<'_>, summary: &mut Summary, alerts: &mut Vec<Alert>) -> Result<(), JobError> {
    for (id, exhausted) in queue.sweep()?.rows {
        let reason = if exhausted {
            "attempts exhausted"
        } else {
            "expired (pending longer than webhook_retry_max_age_hours)"
        };
        *if exhausted { &mut summary.exhausted } else { &mut summary.expired } += 1;
        summary.dead_lettered += 1;
        alerts.push(Alert::webhook_dead(&id, reason));
    }
    Ok(())
}

/// POSTs a stored webhook to the processor as the receiver contract says (README): its exact
/// bytes, signed when `meta_app_secret` is set, with its id and the attempt number (0 for the
/// front door's immediate forward).
pub async fn deliver(
    config: &Config,
    id: &str,
    body: &[u8],
    attempt: u32,
    timeout: Duration,
    deadline: Deadline,
) -> Result<Response, OutboundError> {
    let url = config.webhook_processor_url.as_deref().unwrap_or_default();
    let mut headers = vec![
        ("content-type", "application/json".to_owned()),
        ("x-webhook-log-id", id.to_owned()),
        ("x-webhook-retry-attempt", attempt.to_string()),
    ];
    if let Some(secret) = &config.meta_app_secret {
        headers.push(("x-hub-signature-256", crypto::hub_signature(secret, body)));
    }
    outbound::send(Request { method: "POST", url, headers, body }, timeout, deadline).await
}

/// Records one attempt; false when the database refused this row's data (logged), which must
/// not stop the others.
fn record(
    ctx: &JobContext<'_>,
    queue: &Queue<'_>,
    webhook: &Claimed,
    decision: &Decision,
    elapsed: Duration,
) -> Result<bool, JobError> {
    let attempt = webhook.retry_count + 1;
    let duration_ms = elapsed.as_millis() as u64;
    ctx.log.info(
        "webhook re-delivered",
        json!({ "webhookLogId": webhook.id, "attempt": attempt, "httpStatus": decision.http_status,
                "outcome": decision.fate.name(), "reason": decision.brief, "durationMs": duration_ms }),
    );
    let written = queue.record(&AttemptRecord {
        id: &webhook.id,
        attempt,
        http_status: decision.http_status,
        error: decision.error.as_deref(),
        duration_ms,
        job_id: ctx.job_id,
        fate: decision.fate,
    });
    match written {
        Ok(()) => Ok(true),
        Err(e) if e.is_about_the_data() => {
            ctx.log.error(
                "webhook attempt not recorded: the database refused it",
                json!({ "webhookLogId": webhook.id, "error": e.to_string() }),
            );
            Ok(false)
        }
        Err(e) => Err(e.into()),
    }
}

/// A uniform number in [0, 1) for the backoff jitter, from the host's random source.
fn jitter() -> f64 {
    let bits = wasi::random::insecure::get_insecure_random_u64();
    (bits >> 11) as f64 / (1u64 << 53) as f64
}
