//! The health check's Graph requests: due connections gathered into requests of whole
//! connections ([`group`]), each request made and its answers turned into results
//! ([`carry_out`]). What can be decided without Meta (no token, one we cannot decrypt, nothing to
//! read) is decided here and never waits for a request.

use std::cell::RefCell;

use serde_json::json;

use super::classify::{self, Inputs, Verdict};
use super::connections::{CheckResult, DueConnection};
use super::pacing::{Halt, Pacing};
use crate::context::JobContext;
use crate::graph::{self, Node, NotMade, Probe, Probed};

/// A connection ready for Meta: its token decrypted and the node to read.
pub struct Ready {
    conn: DueConnection,
    token: String,
    node: Node,
    business: String,
}

/// One turn of the run's concurrency.
pub enum Work {
    /// Decided without a call.
    Settled(Outcome),
    /// Connections whose calls go in one request.
    Request(Vec<Ready>),
}

pub enum Outcome {
    Checked(Checked),
    /// Not checked, and left for a later run.
    Left(Left),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Left {
    /// The budget ended before its check.
    Later,
    Halted(Halt),
}

/// One finished check: the row to write, and why Meta refused the app, if it did.
pub struct Checked {
    pub conn: DueConnection,
    pub result: CheckResult,
    pub app_refused: Option<String>,
}

impl Work {
    /// What becomes of work the budget did not let start.
    pub fn not_started(self) -> Vec<Outcome> {
        match self {
            Work::Settled(Outcome::Left(why)) => vec![Outcome::Left(why)],
            Work::Settled(Outcome::Checked(_)) => vec![Outcome::Left(Left::Later)],
            Work::Request(group) => group.iter().map(|_| Outcome::Left(Left::Later)).collect(),
        }
    }
}

/// The due connections as work: requests of up to `per_request` connections, and what needs no
/// request on its own. Ends early once the run is halted: the rest stays due.
pub fn group<'a>(
    ctx: &'a JobContext<'a>,
    due: &'a mut impl Iterator<Item = DueConnection>,
    per_request: usize,
    pacing: &'a RefCell<Pacing>,
) -> impl Iterator<Item = Work> + 'a {
    let mut pending: Vec<Ready> = Vec::with_capacity(per_request);
    std::iter::from_fn(move || loop {
        if pacing.borrow().halted().is_some() {
            return None;
        }
        let Some(conn) = due.next() else {
            return (!pending.is_empty()).then(|| Work::Request(std::mem::take(&mut pending)));
        };
        match prepare(ctx, conn, pacing) {
            Ok(ready) => {
                pending.push(ready);
                if pending.len() >= per_request {
                    return Some(Work::Request(std::mem::take(&mut pending)));
                }
            }
            Err(settled) => return Some(Work::Settled(settled)),
        }
    })
}

/// A connection ready for a request, or what it comes to without one.
fn prepare(ctx: &JobContext<'_>, conn: DueConnection, pacing: &RefCell<Pacing>) -> Result<Ready, Outcome> {
    let Some(stored) = conn.access_token.as_deref() else {
        return Err(settle(ctx, conn, classify::unchecked("No token in database")));
    };
    let token = match ctx.config.keys.decrypt(stored) {
        Ok(token) => token,
        Err(e) => {
            ctx.log
                .warn("token decryption failed", json!({ "connectionId": conn.id, "reason": e.to_string() }));
            return Err(settle(ctx, conn, classify::unchecked("Token decryption failed")));
        }
    };
    let Some(node) = node_of(&conn) else {
        return Err(settle(ctx, conn, classify::unchecked("No phone number id or WABA id to check")));
    };
    let business = business_of(&conn, &node);
    if let Some(halt) = pacing.borrow().holds(&business) {
        return Err(Outcome::Left(Left::Halted(halt)));
    }
    Ok(Ready { conn, token, node, business })
}

fn settle(ctx: &JobContext<'_>, conn: DueConnection, verdict: Verdict) -> Outcome {
    Outcome::Checked(finish(ctx, conn, verdict, 0, None))
}

/// Makes one request for `work`'s connections and classifies what Meta answered about each.
pub async fn carry_out(
    ctx: &JobContext<'_>,
    client: &graph::Client<'_>,
    pacing: &RefCell<Pacing>,
    work: Work,
) -> Vec<Outcome> {
    let group = match work {
        Work::Settled(outcome) => return vec![outcome],
        Work::Request(group) => group,
    };
    // Asked again as the request starts: a throttle may have come since the group was formed.
    let (group, mut outcomes): (Vec<Ready>, Vec<Outcome>) = {
        let pacing = pacing.borrow();
        let (go, held): (Vec<Ready>, Vec<Ready>) =
            group.into_iter().partition(|r| pacing.holds(&r.business).is_none());
        let held =
            held.iter().filter_map(|r| pacing.holds(&r.business)).map(|h| Outcome::Left(Left::Halted(h)));
        (go, held.collect())
    };
    if group.is_empty() {
        return outcomes;
    }
    let answered = {
        let probes: Vec<Probe<'_>> = group.iter().map(|r| Probe { token: &r.token, node: &r.node }).collect();
        client.probe(&probes).await
    };
    let answered = match answered {
        Ok(answered) => answered,
        Err(NotMade::OutOfTime) => {
            outcomes.extend(group.iter().map(|_| Outcome::Left(Left::Later)));
            return outcomes;
        }
        Err(NotMade::NotSent(why)) => {
            if pacing.borrow().halted().is_none() {
                ctx.log.warn("no further Graph request this run", json!({ "reason": why }));
            }
            pacing.borrow_mut().halt_for_allowance();
            outcomes.extend(group.iter().map(|_| Outcome::Left(Left::Halted(Halt::Allowance))));
            return outcomes;
        }
    };
    let businesses: Vec<&str> = group.iter().map(|r| r.business.as_str()).collect();
    let halts = pacing.borrow_mut().observe(&businesses, &answered.probed, answered.usage);
    for ((ready, probed), halt) in group.into_iter().zip(answered.probed).zip(halts) {
        outcomes.push(match halt {
            Some(halt) => Outcome::Left(Left::Halted(halt)),
            None => Outcome::Checked(classified(ctx, ready, probed)),
        });
    }
    outcomes
}

fn classified(ctx: &JobContext<'_>, ready: Ready, probed: Probed) -> Checked {
    let verdict = classify::classify(&Inputs {
        debug: probed.debug.as_ref(),
        node: &probed.node,
        now: crate::time::unix_secs(),
        warning_days: ctx.config.token_expiry_warning_days,
        previous_unknowns: ready.conn.recent_unknowns,
    });
    finish(ctx, ready.conn, verdict, probed.ms, Some(&ready.token))
}

/// The row a verdict becomes, logged.
fn finish(
    ctx: &JobContext<'_>,
    conn: DueConnection,
    verdict: Verdict,
    response_ms: u64,
    token: Option<&str>,
) -> Checked {
    // Meta sometimes echoes its input in error messages; a token must never reach the audit table.
    let reason = match token {
        Some(t) if !t.is_empty() => verdict.reason.replace(t, "[redacted]"),
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
    Checked { conn, result, app_refused: verdict.app_refused }
}

fn present(s: &Option<String>) -> Option<String> {
    s.as_deref().filter(|s| !s.is_empty()).map(str::to_owned)
}

/// The phone number to read health from (the connection's, else the config's), else the WABA.
fn node_of(conn: &DueConnection) -> Option<Node> {
    present(&conn.phone_number_id)
        .or_else(|| present(&conn.config_phone_id))
        .map(Node::Phone)
        .or_else(|| present(&conn.waba_id).or_else(|| present(&conn.config_waba_id)).map(Node::Waba))
}

/// The business whose limit Meta counts the connection's calls against: its WABA (the key of
/// `X-Business-Use-Case-Usage` for WhatsApp), else the node itself.
fn business_of(conn: &DueConnection, node: &Node) -> String {
    present(&conn.waba_id).or_else(|| present(&conn.config_waba_id)).unwrap_or_else(|| match node {
        Node::Phone(id) | Node::Waba(id) => id.clone(),
    })
}
