//! The webhook retry job (SPEC section 6): a dead-letter queue over `whatsapp_webhook_logs`.
//!
//! A run dead-letters what must not be re-delivered any more (expired or exhausted rows), claims
//! due rows a page at a time as the deliveries need them, up to `webhook_retry_batch_size` in all
//! ([`queue`] says why two runs can never deliver the same row), re-delivers them concurrently to
//! `webhook_processor_url`, and records the outcomes, as [`policy`] decides them, a batch per
//! statement. Rows the time budget left unstarted or cut short are released, due again with no
//! attempt charged, and counted in `remaining`. Each webhook dead-lettered raises an alert.
//!
//! Two failures are not the webhook's fault and charge no row: a destination the host refuses
//! (missing from `allowed_outbound_hosts`) fails the run, and a row the database refuses to
//! record is logged, counted as `failed`, and left for its lease to end.

pub mod policy;
pub mod queue;
pub mod settings;
pub mod turns;

use std::cell::Cell;
use std::pin::pin;
use std::time::{Duration, Instant, SystemTime};

use futures::StreamExt;
use http::header::{HeaderName, CONTENT_TYPE};
use http::Method;
use serde::Serialize;
use serde_json::json;

use crate::alerts::Alert;
use crate::context::{self, JobError, JobOutcome, Turn};
use crate::crypto;
use crate::db::write_isolating;
use crate::outbound::{self, Allowance, OutboundError, Request, Response};
use crate::time::Deadline;
use policy::{Decision, Fate, Outcome, Release, Rules};
use queue::{AttemptRecord, Claimed, Queue, Stuck, Swept};
pub use queue::{Redrive, Tenant};
pub use settings::{Delivery, Settings};
use turns::{Slots, Turns};

/// A run's context, with this job's settings.
pub type JobContext<'a> = context::JobContext<'a, Settings>;

/// The receiver contract's headers (docs/webhook-retry.md): which stored webhook this is, and which attempt.
const X_WEBHOOK_LOG_ID: HeaderName = HeaderName::from_static("x-webhook-log-id");
const X_WEBHOOK_RETRY_ATTEMPT: HeaderName = HeaderName::from_static("x-webhook-retry-attempt");

const DELIVERY_TIMEOUT: Duration = Duration::from_secs(10);
/// Due rows claimed per statement: enough to keep the deliveries busy between claims, few enough
/// that a run's memory does not grow with the queue.
const CLAIM_PAGE: u32 = 200;
/// Attempts recorded per statement, at the most...
const RECORD_BATCH: usize = 200;
/// ...and at the latest this long after the first of them finished: a run killed in between
/// re-delivers those once its lease ends (the receiver contract's at-least-once).
const RECORD_EVERY: Duration = Duration::from_secs(3);
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
    /// Due, of organizations an operator paused: left as they are, not counted in `remaining`.
    pub held: u64,
}

pub async fn run(ctx: &JobContext<'_>) -> Result<JobOutcome, JobError> {
    let queue = Queue::new(ctx.db, ctx.settings.rules);
    let mut progress = Progress::default();

    sweep(&queue, &mut progress)?;
    let swept = &progress.summary;
    ctx.log.info("webhook retry started", json!({ "expired": swept.expired, "exhausted": swept.exhausted }));

    let delivered = deliver_due(ctx, &queue, &mut progress).await;
    // The one way out of the deliveries, however they ended: what was claimed and not attempted
    // goes back, due again and charged nothing.
    let released = queue.release(&progress.unattempted);
    delivered?;
    released?;
    if let Some(why) = progress.misconfigured {
        let processor = ctx.settings.delivery.processor_url.as_deref().unwrap_or_default();
        return Err(JobError::Misconfigured(format!(
            "the webhook processor {processor} cannot be reached as configured ({why}): check webhook_processor_url \
             and that webhook_processor_host allows it; {} claimed webhooks were released, none charged an attempt",
            progress.unattempted.len()
        )));
    }
    ctx.send_alerts(progress.alerts).await;
    let mut summary = progress.summary;
    let counts = queue::counts(ctx.db, &ctx.settings.rules)?;
    (summary.remaining, summary.held) = (counts.due.saturating_sub(counts.held), counts.held);
    Ok(JobOutcome::new(&summary, summary.remaining))
}

/// What a run has done so far, and what it owes.
#[derive(Default)]
struct Progress {
    summary: Summary,
    alerts: Vec<Alert>,
    /// Claimed but not attempted: released at the end.
    unattempted: Vec<String>,
    /// Set when a delivery showed that the processor cannot be reached as configured.
    misconfigured: Option<String>,
}

/// One finished delivery: the webhook, what came back, how long it took.
type Delivered = (Claimed, Result<Response, OutboundError>, Duration);

impl Progress {
    /// A batch of deliveries as the policy judges them: the attempts to record; the others are
    /// released at the end, and those that say so stop the claims (`stop`).
    fn judge(
        &mut self,
        ctx: &JobContext<'_>,
        batch: Vec<Turn<Claimed, Delivered>>,
        stop: &Cell<bool>,
    ) -> Vec<Attempt> {
        let rules = ctx.settings.rules;
        let mut attempts = Vec::with_capacity(batch.len());
        for turn in batch {
            let (webhook, result, elapsed) = match turn {
                Turn::Done(done) => done,
                Turn::NotStarted(webhook) => {
                    self.unattempted.push(webhook.id);
                    continue;
                }
            };
            let attempt = webhook.retry_count + 1;
            match policy::judge(&result, attempt, &rules, SystemTime::now(), jitter()) {
                Outcome::Attempted(decision) => attempts.push(Attempt { webhook, decision, elapsed }),
                Outcome::Released(why) => {
                    match why {
                        Release::OutOfTime => {}
                        Release::AllowanceSpent(why) if !stop.replace(true) => {
                            ctx.log.warn("no further delivery this run", json!({ "reason": why }));
                        }
                        Release::AllowanceSpent(_) => {}
                        Release::Misconfigured(why) => {
                            self.misconfigured.get_or_insert(why);
                            stop.set(true);
                        }
                    }
                    self.unattempted.push(webhook.id);
                }
            }
        }
        attempts
    }
}

/// Claims due webhooks a page at a time as the deliveries need them, delivers them
/// concurrently, and records what [`policy::judge`] makes of each, a batch per statement.
async fn deliver_due(
    ctx: &JobContext<'_>,
    queue: &Queue<'_>,
    progress: &mut Progress,
) -> Result<(), JobError> {
    let stop = Cell::new(false);
    let slots = Slots::default();
    // A claim outlives the run that made it, so a run that dies mid-way only delays its rows.
    let lease = (ctx.deadline.remaining() + DELIVERY_TIMEOUT + LEASE_MARGIN).as_secs();
    let mut turns = Turns::new(ctx, queue, &slots, &stop, lease, CLAIM_PAGE, turns::saved_round(ctx));
    let recorded = deliver_and_record(ctx, queue, &mut turns, &slots, &stop, progress).await;
    turns::save_round(ctx, turns.round());
    let unread = turns.error.take();
    progress.unattempted.extend(turns.unread().map(|w| w.id));
    recorded?;
    unread.map_or(Ok(()), |e| Err(e.into()))
}

async fn deliver_and_record(
    ctx: &JobContext<'_>,
    queue: &Queue<'_>,
    claims: &mut Turns<'_>,
    slots: &Slots,
    stop: &Cell<bool>,
    progress: &mut Progress,
) -> Result<(), JobError> {
    let (delivery, deadline, allowance) = (&ctx.settings.delivery, ctx.deadline, ctx.allowance());
    let deliveries = pin!(ctx.within_budget(claims, ctx.settings.concurrency, |webhook| async move {
        let started = Instant::now();
        let attempt = webhook.retry_count + 1;
        let body = webhook.body.as_bytes();
        let result =
            deliver(delivery, &webhook.id, body, attempt, DELIVERY_TIMEOUT, deadline, allowance).await;
        slots.give_back(&webhook.tenant);
        (webhook, result, started.elapsed())
    }));
    let mut batches = pin!(context::batches(deliveries, RECORD_BATCH, RECORD_EVERY));
    while let Some(batch) = batches.next().await {
        let attempts = progress.judge(ctx, batch, stop);
        record(ctx, queue, &attempts, progress)?;
    }
    Ok(())
}

/// Puts dead-lettered webhooks back in the queue, due now with no attempt counted (an
/// operator's redrive): how many.
pub fn redrive(db: &crate::db::Db, rules: Rules, which: &Redrive) -> crate::db::DbResult<u64> {
    Queue::new(db, rules).redrive(which)
}

/// Dead-letters what must not be re-delivered any more (policy step 7), counting and alerting.
fn sweep(queue: &Queue<'_>, progress: &mut Progress) -> Result<(), JobError> {
    let Progress { summary, alerts, .. } = progress;
    for Swept { id, why } in queue.sweep()? {
        let (reason, count) = match why {
            Stuck::Exhausted => ("attempts exhausted", &mut summary.exhausted),
            Stuck::Expired => {
                ("expired (pending longer than webhook_retry_max_age_hours)", &mut summary.expired)
            }
        };
        *count += 1;
        summary.dead_lettered += 1;
        alerts.push(Alert::webhook_dead(&id, reason));
    }
    Ok(())
}

/// POSTs a stored webhook to the processor as the receiver contract says (docs/webhook-retry.md): its exact
/// bytes, signed when `meta_app_secret` is set, with its id and the attempt number (0 for the
/// front door's immediate forward).
pub async fn deliver(
    delivery: &Delivery,
    id: &str,
    body: &[u8],
    attempt: u32,
    timeout: Duration,
    deadline: Deadline,
    allowance: Allowance<'_>,
) -> Result<Response, OutboundError> {
    let url = delivery.processor_url.as_deref().unwrap_or_default();
    let mut headers = vec![
        (CONTENT_TYPE, "application/json".to_owned()),
        (X_WEBHOOK_LOG_ID, id.to_owned()),
        (X_WEBHOOK_RETRY_ATTEMPT, attempt.to_string()),
    ];
    if let Some(secret) = &delivery.app_secret {
        headers.push((crypto::SIGNATURE_HEADER, crypto::hub_signature(secret, body)));
    }
    outbound::send(Request { method: Method::POST, url, headers, body }, timeout, deadline, allowance).await
}

/// One delivery, and what the policy made of it.
struct Attempt {
    webhook: Claimed,
    decision: Decision,
    elapsed: Duration,
}

/// Records a batch of attempts and counts them. A row the database refuses is logged and
/// counted as failed, and stays claimed until its lease ends; it does not stop the others.
fn record(
    ctx: &JobContext<'_>,
    queue: &Queue<'_>,
    attempts: &[Attempt],
    progress: &mut Progress,
) -> Result<(), JobError> {
    let Progress { summary, alerts, .. } = progress;
    let rows: Vec<AttemptRecord> = attempts
        .iter()
        .map(|a| AttemptRecord {
            id: &a.webhook.id,
            attempt: a.webhook.retry_count + 1,
            http_status: a.decision.http_status,
            error: a.decision.error.as_deref(),
            duration_ms: a.elapsed.as_millis() as u64,
            fate: a.decision.fate,
        })
        .collect();
    let saved = write_isolating(
        &rows,
        |batch| queue.record(batch, ctx.job_id),
        |row, e| {
            ctx.log.error(
                "webhook attempt not recorded: the database refused it",
                json!({ "webhookLogId": row.id, "error": e.to_string() }),
            );
        },
    )?;
    for ((a, row), saved) in attempts.iter().zip(&rows).zip(saved) {
        ctx.log.info(
            "webhook re-delivered",
            json!({ "webhookLogId": row.id, "attempt": row.attempt, "httpStatus": row.http_status,
                    "outcome": a.decision.fate.name(), "reason": a.decision.brief, "durationMs": row.duration_ms }),
        );
        summary.attempted += 1;
        match a.decision.fate {
            _ if !saved => summary.failed += 1,
            Fate::Delivered => summary.delivered += 1,
            Fate::RetryIn(_) => summary.failed += 1,
            Fate::Dead => {
                summary.dead_lettered += 1;
                alerts.push(Alert::webhook_dead(row.id, a.decision.brief.as_deref().unwrap_or_default()));
            }
        }
    }
    Ok(())
}

/// A uniform number in [0, 1) for the backoff jitter, from the host's random source.
fn jitter() -> f64 {
    let bits = wasi::random::insecure::get_insecure_random_u64();
    (bits >> 11) as f64 / (1u64 << 53) as f64
}
