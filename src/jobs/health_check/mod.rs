//! The WhatsApp token health check (SPEC section 5).
//!
//! A run: select the active connections that are due, stalest first ([`connections`]); check up
//! to `health_check_concurrency` of them at once against the Graph API; classify each answer
//! ([`classify`], the table of SPEC 5); write the results in batches as they complete, so a run
//! killed at any moment keeps what it finished; and alert on connections that moved into
//! `error`. (The runner then trims old audit rows: `runner::retention`.)
//!
//! The time budget bounds the whole run: no check starts after it and no Graph call outlives it.
//! A check the budget cut short is `remaining` (first in line next run), not an `unknown` charged
//! to the connection.

pub mod classify;
pub mod connections;

use std::pin::pin;
use std::time::Duration;

use futures::StreamExt;
use serde::Serialize;
use serde_json::json;

use crate::alerts::Alert;
use crate::context::{self, JobContext, JobError, JobOutcome, Turn};
use crate::graph::{self, CutShort, Node};
use classify::{Health, Inputs, Verdict};
use connections::{CheckResult, DueConnection};

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

/// One finished check: the row to write, and why Meta refused the app, if it did.
struct Checked {
    conn: DueConnection,
    result: CheckResult,
    app_refused: Option<String>,
}

pub async fn run(ctx: &JobContext<'_>) -> Result<JobOutcome, JobError> {
    let hours = ctx.config.health_recheck_after_hours;
    let cutoff = connections::cutoff(ctx.db, hours)?;
    let skipped = cutoff.recently_checked;
    ctx.log.info("health check started", json!({ "skipped": skipped }));

    let client = &graph::Client {
        base_url: &ctx.config.meta_graph_url,
        version: &ctx.config.meta_api_version,
        app: ctx.config.meta_app(),
        deadline: ctx.deadline,
    };
    let mut due = connections::due(ctx.db, &cutoff, PAGE, ctx.deadline);
    let mut run = RunState { summary: Summary { skipped, ..Default::default() }, alerts: Vec::new() };
    let mut app_refused = None;
    {
        let turns =
            pin!(ctx.within_budget(&mut due, ctx.config.health_check_concurrency, |conn| async move {
                check(ctx, client, conn).await.ok()
            }));
        let mut batches = pin!(context::batches(turns, WRITE_BATCH, WRITE_EVERY));
        while let Some(batch) = batches.next().await {
            let mut finished = Vec::with_capacity(batch.len());
            for turn in batch {
                match turn {
                    Turn::Done(Some(checked)) => {
                        app_refused = app_refused.or_else(|| checked.app_refused.clone());
                        finished.push(checked);
                    }
                    // Not started, or cut short by the budget: first in line next run.
                    _ => run.summary.remaining += 1,
                }
            }
            run.write(ctx, finished)?;
        }
    }
    if let Some(e) = due.error {
        return Err(e.into());
    }
    if ctx.deadline.passed() {
        // The budget ended the reading too: what is still due, less what this run checked and
        // left due (unknown, or refused by the database), is what it did not get to.
        let still_due = connections::count_still_due(ctx.db, &cutoff)?;
        let checked_but_due = run.summary.unknown + run.summary.not_saved;
        run.summary.remaining = still_due.saturating_sub(checked_but_due);
    }

    if let Some(why) = app_refused {
        ctx.log.error("Meta refused the app credentials for debug_token", json!({ "reason": why }));
        run.alerts.push(Alert::app_credentials(&why));
    }
    // After the commits: an alert announces what the database already says.
    ctx.send_alerts(run.alerts).await;
    Ok(JobOutcome::new(&run.summary, run.summary.remaining))
}

/// What a run has written so far, and the alerts it owes.
struct RunState {
    summary: Summary,
    alerts: Vec<Alert>,
}

impl RunState {
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

/// Checks one connection. Every problem is a verdict about the connection, except a check the
/// run's budget cut short.
async fn check(
    ctx: &JobContext<'_>,
    client: &graph::Client<'_>,
    conn: DueConnection,
) -> Result<Checked, CutShort> {
    let (verdict, response_ms, token) = match conn.access_token.as_deref() {
        None => (classify::unchecked("No token in database"), 0, None),
        Some(stored) => match ctx.config.keys.decrypt(stored) {
            Err(e) => {
                ctx.log.warn(
                    "token decryption failed",
                    json!({ "connectionId": conn.id, "reason": e.to_string() }),
                );
                (classify::unchecked("Token decryption failed"), 0, None)
            }
            Ok(token) => {
                let (verdict, ms) = check_token(ctx, client, &conn, &token).await?;
                (verdict, ms, Some(token))
            }
        },
    };
    // Meta sometimes echoes its input in error messages; a token must never reach the audit table.
    let reason = match &token {
        Some(t) if !t.is_empty() => verdict.reason.replace(t.as_str(), "[redacted]"),
        _ => verdict.reason.clone(),
    };
    ctx.log.info(
        "connection checked",
        json!({ "connectionId": conn.id, "status": verdict.health, "reason": reason, "responseTime": response_ms }),
    );
    let result = CheckResult {
        connection_id: conn.id.clone(),
        config_id: conn.config_id.clone(),
        health: verdict.health,
        token_valid: verdict.token_valid,
        token_expired: verdict.token_expired,
        reason,
        response_ms,
        token_status: verdict.token.map(|t| t.status),
        token_expires_at: verdict.token.and_then(|t| t.expires_at),
    };
    Ok(Checked { conn, result, app_refused: verdict.app_refused })
}

async fn check_token(
    ctx: &JobContext<'_>,
    client: &graph::Client<'_>,
    conn: &DueConnection,
    token: &str,
) -> Result<(Verdict, u64), CutShort> {
    let Some(node) = node_of(conn) else {
        return Ok((classify::unchecked("No phone number id or WABA id to check"), 0));
    };
    let debug = client.debug_token(token).await?;
    let (node_answer, node_ms) = client.node_health(token, &node).await?;
    let debug_ms = debug.as_ref().map_or(0, |(_, ms)| *ms);
    let verdict = classify::classify(&Inputs {
        debug: debug.as_ref().map(|(answer, _)| answer),
        node: &node_answer,
        now: crate::time::unix_secs(),
        warning_days: ctx.config.token_expiry_warning_days,
        previous_unknowns: conn.recent_unknowns,
    });
    Ok((verdict, debug_ms + node_ms))
}

/// The phone number to read health from (the connection's, else the config's), else the WABA.
fn node_of(conn: &DueConnection) -> Option<Node> {
    let present = |s: &Option<String>| s.as_deref().filter(|s| !s.is_empty()).map(str::to_owned);
    present(&conn.phone_number_id)
        .or_else(|| present(&conn.config_phone_id))
        .map(Node::Phone)
        .or_else(|| present(&conn.waba_id).or_else(|| present(&conn.config_waba_id)).map(Node::Waba))
}
