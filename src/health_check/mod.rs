//! The WhatsApp token health check (SPEC section 5).
//!
//! A run: select the active connections that are due (stalest first), check up to
//! `health_check_concurrency` of them at once against the Graph API, stop starting checks when
//! the time budget is spent (those are `remaining`, first in line next run), write every
//! result in one transaction, alert on connections that moved into `error`, and trim old audit
//! rows ([`crate::retention`]).

pub mod classify;

use futures::stream::{self, StreamExt};
use serde::Serialize;
use serde_json::json;

use crate::alerts::{self, Alert};
use crate::db::{DueConnection, HealthWrite};
use crate::graph::{self, Node};
use crate::retention;
use crate::runner::{JobContext, JobError, JobOutcome};
use classify::{Inputs, Verdict};

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

pub async fn run(ctx: &JobContext<'_>) -> Result<JobOutcome, JobError> {
    let hours = ctx.config.health_recheck_after_hours;
    let due = ctx.db.due_connections(hours)?;
    let skipped = ctx.db.count_recently_checked(hours)?;
    ctx.log.info("health check started", json!({ "due": due.len(), "skipped": skipped }));

    let client = graph::Client {
        base_url: &ctx.config.meta_graph_url,
        version: &ctx.config.meta_api_version,
        app: ctx.config.meta_app.as_ref(),
    };
    let results: Vec<(&DueConnection, Option<HealthWrite>)> = stream::iter(due.iter())
        .map(|conn| {
            let client = &client;
            async move {
                // Checked when the check would start, not when it was queued: the budget bounds
                // the work we begin.
                if ctx.deadline.passed() {
                    return (conn, None);
                }
                (conn, Some(check(ctx, client, conn).await))
            }
        })
        .buffer_unordered(ctx.config.health_check_concurrency)
        .collect()
        .await;

    let mut summary = Summary { skipped, ..Default::default() };
    let mut writes = Vec::with_capacity(results.len());
    let mut alerts = Vec::new();
    for (conn, result) in results {
        let Some(w) = result else {
            summary.remaining += 1;
            continue;
        };
        if w.status == "error" && conn.health_status.as_deref() != Some("error") {
            alerts.push(Alert::connection_error(&conn.id, conn.organization_id.as_deref(), &w.reason));
        }
        summary.checked += 1;
        match w.status {
            "healthy" => summary.healthy += 1,
            "warning" => summary.warning += 1,
            "error" => summary.error += 1,
            _ => summary.unknown += 1,
        }
        writes.push(w);
    }
    ctx.db.save_health_results(&writes)?;
    // After the commit: an alert announces what the database already says.
    alerts::send(ctx.config.alert_webhook_url.as_deref(), Some(ctx.redis), alerts, ctx.log).await;
    summary.purged = retention::run(ctx)?;
    Ok(JobOutcome::new(&summary, summary.remaining))
}

/// Checks one connection; never fails: every problem is a verdict about the connection.
async fn check(ctx: &JobContext<'_>, client: &graph::Client<'_>, conn: &DueConnection) -> HealthWrite {
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
        json!({ "connectionId": conn.id, "status": verdict.health.as_str(), "reason": reason, "responseTime": response_ms }),
    );
    HealthWrite {
        connection_id: conn.id.clone(),
        config_id: conn.config_id.clone(),
        status: verdict.health.as_str(),
        token_valid: verdict.token_valid,
        token_expired: verdict.token_expired,
        reason,
        response_ms,
        token_status: verdict.token.map(|t| t.status.as_str()),
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
