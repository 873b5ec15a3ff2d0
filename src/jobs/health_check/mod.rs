//! The WhatsApp token health check (SPEC section 5).
//!
//! A run: select the active connections that are due, stalest first ([`connections`]); check up
//! to `health_check_concurrency` of them at once against the Graph API; stop starting checks
//! when the time budget is spent (those are `remaining`, first in line next run); classify each
//! answer ([`classify`], the table of SPEC 5); write every result in one transaction; alert on
//! connections that moved into `error`; and trim old audit rows ([`retention`]).

pub mod classify;
pub mod connections;
pub mod retention;

use futures::StreamExt;
use serde::Serialize;
use serde_json::json;

use crate::alerts::Alert;
use crate::context::{JobContext, JobError, JobOutcome, Turn};
use crate::graph::{self, Node};
use classify::{Health, Inputs, Verdict};
use connections::{CheckResult, DueConnection};

#[derive(Debug, Default, Serialize, PartialEq, Eq)]
pub struct Summary {
    pub checked: u64,
    pub healthy: u64,
    pub warning: u64,
    pub error: u64,
    pub unknown: u64,
    pub skipped: u64,
    pub remaining: u64,
    /// Old audit rows removed by this run's retention pass.
    pub purged: retention::Purged,
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
    let hours = ctx.config.health_recheck_after_hours;
    let due = connections::due(ctx.db, hours)?;
    let skipped = connections::count_recently_checked(ctx.db, hours)?;
    ctx.log.info("health check started", json!({ "due": due.len(), "skipped": skipped }));

    let client = graph::Client {
        base_url: &ctx.config.meta_graph_url,
        version: &ctx.config.meta_api_version,
        app: ctx.config.meta_app.as_ref(),
    };
    let client = &client;
    let turns: Vec<Turn<&DueConnection, (&DueConnection, CheckResult)>> = ctx
        .within_budget(due.iter(), ctx.config.health_check_concurrency, |conn| async move {
            (conn, check(ctx, client, conn).await)
        })
        .collect()
        .await;

    let mut summary = Summary { skipped, ..Default::default() };
    let mut results = Vec::with_capacity(turns.len());
    let mut alerts = Vec::new();
    for turn in turns {
        let (conn, result) = match turn {
            Turn::Done(checked) => checked,
            Turn::NotStarted(_) => {
                summary.remaining += 1;
                continue;
            }
        };
        if result.health == Health::Error && conn.health_status.as_deref() != Some(Health::Error.as_str()) {
            alerts.push(Alert::connection_error(&conn.id, conn.organization_id.as_deref(), &result.reason));
        }
        summary.count(result.health);
        results.push(result);
    }
    connections::save_results(ctx.db, &results)?;
    // After the commit: an alert announces what the database already says.
    ctx.send_alerts(alerts).await;
    summary.purged = retention::run(ctx)?;
    Ok(JobOutcome::new(&summary, summary.remaining))
}

/// Checks one connection; never fails: every problem is a verdict about the connection.
async fn check(ctx: &JobContext<'_>, client: &graph::Client<'_>, conn: &DueConnection) -> CheckResult {
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
                let (verdict, ms) = check_token(ctx, client, conn, &token).await;
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
    CheckResult {
        connection_id: conn.id.clone(),
        config_id: conn.config_id.clone(),
        health: verdict.health,
        token_valid: verdict.token_valid,
        token_expired: verdict.token_expired,
        reason,
        response_ms,
        token_status: verdict.token.map(|t| t.status),
        token_expires_at: verdict.token.and_then(|t| t.expires_at),
    }
}

async fn check_token(
    ctx: &JobContext<'_>,
    client: &graph::Client<'_>,
    conn: &DueConnection,
    token: &str,
) -> (Verdict, u64) {
    let Some(node) = node_of(conn) else {
        return (classify::unchecked("No phone number id or WABA id to check"), 0);
    };
    let debug = client.debug_token(token).await;
    let (node_answer, node_ms) = client.node_health(token, &node).await;
    let debug_ms = debug.as_ref().map_or(0, |(_, ms)| *ms);
    let verdict = classify::classify(&Inputs {
        debug: debug.as_ref().map(|(answer, _)| answer),
        node: &node_answer,
        now: crate::time::unix_secs(),
        warning_days: ctx.config.token_expiry_warning_days,
        previous_unknowns: conn.recent_unknowns,
    });
    (verdict, debug_ms + node_ms)
}

/// The phone number to read health from (the connection's, else the config's), else the WABA.
fn node_of(conn: &DueConnection) -> Option<Node> {
    let present = |s: &Option<String>| s.as_deref().filter(|s| !s.is_empty()).map(str::to_owned);
    present(&conn.phone_number_id)
        .or_else(|| present(&conn.config_phone_id))
        .map(Node::Phone)
        .or_else(|| present(&conn.waba_id).or_else(|| present(&conn.config_waba_id)).map(Node::Waba))
}
