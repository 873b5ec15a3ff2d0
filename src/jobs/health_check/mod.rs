//! The WhatsApp token health check (SPEC section 5).
//!
//! A run: unless Meta's cool-down for the app is on, select the active connections that are
//! due, stalest first ([`connections`]); check them against the Graph API, a batch request of up
//! to `graph_batch_size` calls at a time ([`requests`]) and up to `health_check_concurrency`
//! requests at once; classify each connection's answers ([`classify`], the table of SPEC 5);
//! write the results in batches as they complete, so a run killed at any moment keeps what it
//! finished; and alert on connections that moved into `error`. (The runner then trims old audit
//! rows: `runner::retention`.)
//!
//! Two things end a run's calls before its list ends, and neither is charged to a connection: the
//! time budget (no request starts after it and none outlives it), and Meta's limits ([`pacing`]:
//! a throttle or usage at the ceiling). What they leave is `remaining`, first in line next run.

pub mod classify;
pub mod connections;
pub mod meta_limits;
pub mod pacing;
mod requests;
pub mod settings;

use std::cell::RefCell;
use std::pin::pin;
use std::time::Duration;

use futures::stream::{self, StreamExt};
use serde::Serialize;
use serde_json::json;

use crate::alerts::Alert;
use crate::context::{self, JobError, JobOutcome, Turn};
use crate::graph;
use crate::time;
use classify::Health;
use connections::CheckResult;
use pacing::{Halt, Pacing};
use requests::{Checked, Credentials, Left, Outcome, Work};
pub use settings::Settings;

/// A run's context, with this job's settings.
pub type JobContext<'a> = context::JobContext<'a, Settings>;

/// Due connections read per statement: enough to keep the checks busy between reads, few
/// enough that a run's memory does not grow with the estate.
const PAGE: u32 = 200;
/// Results written per transaction, at the most...
const WRITE_BATCH: usize = 200;
/// ...and at the latest this long after the first of them finished: prompt enough to show a
/// run's progress, rare enough that a slow run still writes many results to a statement.
const WRITE_EVERY: Duration = Duration::from_secs(3);

#[derive(Debug, Default, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    pub checked: u64,
    pub healthy: u64,
    pub warning: u64,
    pub error: u64,
    pub unknown: u64,
    pub skipped: u64,
    pub remaining: u64,
    /// Not checked because Meta throttled the app or their business (left for a later run).
    pub throttled: u64,
    /// Not checked because Meta's usage figures reached `graph_usage_ceiling_percent`.
    pub paced: u64,
    /// Not checked because Meta refused (or did not answer) the request that carried the
    /// check, for a reason about the request and none of its connections.
    pub unanswered: u64,
    /// Checked, but the database refused to store the result (a trigger or constraint of
    /// WhaTrack's); the connection stays due.
    pub not_saved: u64,
}

impl Summary {
    fn count(&mut self, health: Health) {
        self.checked += 1;
        *match health {
            Health::Healthy => &mut self.healthy,
            Health::Warning => &mut self.warning,
            Health::Error => &mut self.error,
            Health::Unknown => &mut self.unknown,
        } += 1;
    }
}

pub async fn run(ctx: &JobContext<'_>) -> Result<JobOutcome, JobError> {
    let cooling = ctx.redis.cool_downs(time::unix_millis())?;
    if let Some(until) = cooling.app_until {
        let until = time::iso_millis(until);
        ctx.log.info(
            "Meta throttled the app: no Graph call until its cool-down ends",
            json!({ "coolDownUntil": until }),
        );
        return Ok(JobOutcome::skipped(COOLING_DOWN, json!({ "coolDownUntil": until })));
    }
    let cutoff = connections::cutoff(ctx.db, ctx.settings.recheck_after_hours)?;
    let known = meta_limits::known_usage(ctx)?;
    let pacing =
        Pacing::new(ctx.settings.usage_ceiling_percent, cooling.businesses, known, time::unix_millis());
    ctx.log.info(
        "health check started",
        json!({ "skipped": cutoff.recently_checked, "cautious": pacing.cautious() }),
    );
    let pacing = RefCell::new(pacing);
    let credentials = RefCell::new(Credentials::default());
    let mut run = RunState {
        summary: Summary { skipped: cutoff.recently_checked, ..Default::default() },
        alerts: Vec::new(),
    };

    check_due(ctx, &cutoff, &pacing, &credentials, &mut run).await?;
    let halted = pacing.borrow().halted();
    if ctx.deadline.passed() || halted.is_some() {
        run.count_not_reached(connections::count_still_due(ctx.db, &cutoff)?, halted);
    }
    log_halt(ctx, halted, &run.summary);
    meta_limits::save_usage(ctx, &mut pacing.borrow_mut());
    Ok(run.finish(ctx, credentials.into_inner().app_refused).await)
}

/// Why a run did nothing at all.
const COOLING_DOWN: &str =
    "Meta throttled the app: nothing is called until the cool-down ends (summary.coolDownUntil)";

/// Checks the due connections until the list, the budget or Meta's patience ends, writing the
/// results as they come. A cautious run ([`Pacing::cautious`]) makes its first request alone,
/// and starts more only if Meta's figures in its answer allow.
async fn check_due(
    ctx: &JobContext<'_>,
    cutoff: &connections::Cutoff,
    pacing: &RefCell<Pacing>,
    credentials: &RefCell<Credentials>,
    run: &mut RunState,
) -> Result<(), JobError> {
    let client = &graph::Client {
        base_url: &ctx.settings.graph_url,
        version: &ctx.settings.api_version,
        app: ctx.settings.meta_app(),
        deadline: ctx.deadline,
        batch_size: ctx.settings.batch_size,
        allowance: ctx.allowance(),
    };
    let mut due = connections::due(ctx.db, cutoff, PAGE, ctx.deadline);
    {
        let mut work = requests::group(ctx, &mut due, client.probes_per_request(), pacing);
        let first: Vec<Work> = match pacing.borrow().cautious() {
            true => through_first_request(&mut work),
            false => Vec::new(),
        };
        let carry_out = |work| requests::carry_out(ctx, client, pacing, credentials, work);
        let turns = ctx.within_budget(first, 1, carry_out).chain(ctx.within_budget(
            work,
            ctx.settings.concurrency,
            carry_out,
        ));
        let outcomes = pin!(turns.flat_map(|turn| {
            stream::iter(match turn {
                Turn::Done(outcomes) => outcomes,
                Turn::NotStarted(work) => work.not_started(),
            })
        }));
        let mut batches = pin!(context::batches(outcomes, WRITE_BATCH, WRITE_EVERY));
        while let Some(batch) = batches.next().await {
            run.take(ctx, batch)?;
            run.alerts.extend(meta_limits::keep_cool_downs(ctx, &mut pacing.borrow_mut()));
            meta_limits::save_usage(ctx, &mut pacing.borrow_mut());
        }
    }
    match due.error {
        Some(e) => Err(e.into()),
        None => Ok(()),
    }
}

/// The work up to and including the first request, taken off `work`.
fn through_first_request(work: &mut impl Iterator<Item = Work>) -> Vec<Work> {
    let mut first = Vec::new();
    for item in work.by_ref() {
        let request = matches!(item, Work::Request(_));
        first.push(item);
        if request {
            break;
        }
    }
    first
}

fn log_halt(ctx: &JobContext<'_>, halted: Option<Halt>, summary: &Summary) {
    let remaining = summary.remaining;
    match halted {
        Some(Halt::Throttled) => ctx.log.warn(
            "Meta throttled the app: no further Graph call this run",
            json!({ "throttled": summary.throttled, "remaining": remaining }),
        ),
        Some(Halt::Paced) => ctx.log.warn(
            "Meta's usage figures reached graph_usage_ceiling_percent: no further Graph call this run",
            json!({ "paced": summary.paced, "remaining": remaining }),
        ),
        Some(Halt::Allowance) => ctx.log.warn(
            "the hour's outbound_requests_per_hour is spent: the rest waits for a later run",
            json!({ "remaining": remaining }),
        ),
        None => {}
    }
}

/// What a run has written so far, and the alerts it owes.
struct RunState {
    summary: Summary,
    alerts: Vec<Alert>,
}

impl RunState {
    /// The run stopped reading the list (budget, or a halt): what is still due, less what this
    /// run checked and left due (unknown, or refused by the database), is what it did not get
    /// to; a halt's share of it is counted as the halt's.
    fn count_not_reached(&mut self, still_due: u64, halted: Option<Halt>) {
        let summary = &mut self.summary;
        summary.remaining = still_due.saturating_sub(summary.unknown + summary.not_saved);
        let not_reached =
            summary.remaining.saturating_sub(summary.throttled + summary.paced + summary.unanswered);
        match halted {
            Some(Halt::Throttled) => summary.throttled += not_reached,
            Some(Halt::Paced) => summary.paced += not_reached,
            Some(Halt::Allowance) | None => {}
        }
    }

    /// The alerts, once every result is written: an alert announces what the database says.
    /// Refused app credentials are one alert, not one per connection.
    async fn finish(mut self, ctx: &JobContext<'_>, app_refused: Option<String>) -> JobOutcome {
        if let Some(why) = &app_refused {
            ctx.log.error("Meta refused the app credentials for debug_token", json!({ "reason": why }));
            self.alerts.push(Alert::app_credentials(why));
        }
        ctx.send_alerts(self.alerts).await;
        JobOutcome::new(&self.summary, self.summary.remaining)
    }

    fn count_left(&mut self, why: Left) {
        self.summary.remaining += 1;
        match why {
            Left::Later | Left::Halted(Halt::Allowance) => {}
            Left::Halted(Halt::Throttled) => self.summary.throttled += 1,
            Left::Halted(Halt::Paced) => self.summary.paced += 1,
            Left::Unanswered => self.summary.unanswered += 1,
        }
    }

    /// A batch of outcomes: the checks written, the others counted.
    fn take(&mut self, ctx: &JobContext<'_>, batch: Vec<Outcome>) -> Result<(), JobError> {
        let mut finished = Vec::with_capacity(batch.len());
        for outcome in batch {
            match outcome {
                Outcome::Checked(checked) => finished.push(checked),
                Outcome::Left(why) => self.count_left(why),
            }
        }
        self.write(ctx, finished)
    }

    /// Writes a batch; a row the database refuses is logged and counted, and the others land.
    fn write(&mut self, ctx: &JobContext<'_>, batch: Vec<Checked>) -> Result<(), JobError> {
        let results: Vec<CheckResult> = batch.iter().map(|c| c.result.clone()).collect();
        let saved = connections::save_isolating(ctx.db, &results, |result, e| {
            ctx.log.error(
                "health result not saved: the database refused it",
                json!({ "connectionId": result.connection_id, "error": e.to_string() }),
            );
        })?;
        for (checked, saved) in batch.iter().zip(saved) {
            if !saved {
                self.summary.not_saved += 1;
                continue;
            }
            let (conn, result) = (&checked.conn, &checked.result);
            self.summary.count(result.health);
            if result.health == Health::Error && conn.health_status != Some(Health::Error) {
                self.alerts.push(Alert::connection_error(
                    &conn.id,
                    conn.organization_id.as_deref(),
                    &result.reason,
                ));
            }
        }
        Ok(())
    }
}
