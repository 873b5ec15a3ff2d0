//! The health check's Graph requests: due connections gathered into requests of whole
//! connections ([`group`]), each request made and its answers turned into results
//! ([`carry_out`]). What can be decided without Meta (no token, one we cannot decrypt, nothing to
//! read) is decided here and never waits for a request.
//!
//! A batch request carries a token of its own, which Meta checks before it runs any operation:
//! the app's, or without app credentials a customer's ([`Credentials`] chooses one Meta has
//! accepted, else a connection last seen healthy). A request Meta refuses as a whole is about
//! the request, not about any connection in it (SPEC 5, step 6): none of them gets a verdict
//! from it. When the refusal is about the request's own token, the same connections go again
//! with another ([`Refused`]), and after [`MAX_REFUSED`] refusals as single calls, so that a
//! revoked token is found in its own operation and never blinds the others.

use std::cell::RefCell;
use std::collections::HashSet;

use serde_json::json;

use super::classify::{self, Health, Inputs, Verdict};
use super::connections::{CheckResult, DueConnection};
use super::pacing::{Halt, Pacing};
use super::JobContext;
use crate::graph::batch::Refusal;
use crate::graph::limits::{throttle_of, Throttle};
use crate::graph::{self, Auth, Node, NotMade, Probe, Probed};
use crate::time;

/// Batch requests refused for their own token before a group's connections go as single calls.
const MAX_REFUSED: usize = 3;

/// A connection ready for Meta: its token decrypted and the node to read.
pub struct Ready {
    conn: DueConnection,
    token: String,
    node: Node,
    business: String,
}

/// What the run has learnt of the tokens its requests go with.
#[derive(Default)]
pub struct Credentials {
    /// Meta refused the app's credentials this run (why): no `debug_token` from then on.
    pub app_refused: Option<String>,
    /// A customer token Meta accepted as a batch's own this run, and its business.
    accepted: Option<(String, String)>,
    /// Customer tokens Meta refused as a batch's own this run.
    refused: HashSet<String>,
}

impl Credentials {
    /// The token a request of `group` goes with: the app's while Meta takes them; else a
    /// customer's: one Meta accepted this run, else one of a connection last seen healthy, else
    /// any Meta has not refused; never one of a business held. `None`: every candidate was
    /// refused, and only single calls remain.
    fn choose(
        &self,
        client: &graph::Client<'_>,
        group: &[Ready],
        held: impl Fn(&str) -> bool,
    ) -> Option<Own> {
        if client.app.is_some() && self.app_refused.is_none() {
            return Some(Own::App);
        }
        let usable = |token: &str, business: &str| !self.refused.contains(token) && !held(business);
        if let Some((token, business)) = self.accepted.as_ref().filter(|(t, b)| usable(t, b)) {
            return Some(Own::Customer { token: token.clone(), business: business.clone() });
        }
        let candidates = group.iter().filter(|r| usable(&r.token, &r.business));
        let last_healthy = |r: &&Ready| r.conn.health_status == Some(Health::Healthy);
        let chosen = candidates.clone().find(last_healthy).or_else(|| candidates.clone().next())?;
        Some(Own::Customer { token: chosen.token.clone(), business: chosen.business.clone() })
    }
}

/// A request's own token, as chosen.
enum Own {
    App,
    Customer { token: String, business: String },
}

impl Own {
    fn auth(&self) -> Auth<'_> {
        match self {
            Own::App => Auth::App,
            Own::Customer { token, .. } => Auth::Customer(token),
        }
    }
}

/// What a request refused as a whole comes to.
#[derive(Debug, PartialEq, Eq)]
enum Refused {
    /// Meta throttled the app: nobody's finding, and no further call this run.
    AppThrottled,
    /// Meta throttled the business of the request's own token: that business waits.
    BusinessThrottled(String),
    /// Meta refused the request's own customer token: the request goes again with another.
    Token(String),
    /// Meta refused the app's credentials (why): the request goes again without them.
    App(String),
    /// Anything else (why): no verdict for anyone, and the connections wait for a later run.
    NoVerdict(String),
}

/// What `refusal` of a request of `group`'s connections with `own` as its token comes to. Meta's
/// words are kept without any of the request's tokens, should Meta ever echo one.
fn refused(refusal: &Refusal, own: &Own, group: &[Ready]) -> Refused {
    let (http_status, error) = match refusal {
        Refusal::Unanswered(why) => return Refused::NoVerdict(why.clone()),
        Refusal::Refused { http_status, error } => (http_status, error),
    };
    let message = group.iter().fold(error.message.clone(), |m, r| m.replace(&r.token, "[redacted]"));
    let why = format!(
        "Graph API refused the request (HTTP {http_status}): {} {}: {message}",
        error.kind, error.code
    );
    match (throttle_of(error), error.code, own) {
        (Some(Throttle::App), _, _) => Refused::AppThrottled,
        (Some(Throttle::Business), _, Own::Customer { business, .. }) => {
            Refused::BusinessThrottled(business.clone())
        }
        (None, 190 | 102, Own::Customer { token, .. }) => Refused::Token(token.clone()),
        (None, 190 | 102, Own::App) => Refused::App(format!("{} {}: {message}", error.kind, error.code)),
        _ => Refused::NoVerdict(why),
    }
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
    /// Meta refused (or did not answer) the request that carried its check, for a reason
    /// about the request: no verdict.
    Unanswered,
}

/// One finished check: the row to write.
pub struct Checked {
    pub conn: DueConnection,
    pub result: CheckResult,
}

impl Work {
    /// What becomes of work the budget did not let start.
    pub fn not_started(self) -> Vec<Outcome> {
        match self {
            Work::Settled(Outcome::Left(why)) => vec![Outcome::Left(why)],
            Work::Settled(Outcome::Checked(_)) => vec![Outcome::Left(Left::Later)],
            Work::Request(group) => leave(group.len(), Left::Later).collect(),
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
    let token = match ctx.settings.keys.decrypt(stored) {
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

/// Checks `work`'s connections with one request (more when Meta refuses the request for its
/// own token) and classifies what Meta answered about each.
pub async fn carry_out(
    ctx: &JobContext<'_>,
    client: &graph::Client<'_>,
    pacing: &RefCell<Pacing>,
    credentials: &RefCell<Credentials>,
    work: Work,
) -> Vec<Outcome> {
    let mut group = match work {
        Work::Settled(outcome) => return vec![outcome],
        Work::Request(group) => group,
    };
    let mut outcomes = Vec::new();
    for refusals in 0..=MAX_REFUSED {
        // Asked again before each request: a throttle may have come since the group was formed.
        outcomes.extend(take_held(&mut group, |business| pacing.borrow().holds(business)));
        if group.is_empty() {
            break;
        }
        let own = credentials.borrow().choose(client, &group, |b| pacing.borrow().holds(b).is_some());
        let singly = refusals == MAX_REFUSED || own.is_none();
        // Every customer token refused as a batch's own: single calls, each with its own.
        let own = own.unwrap_or(Own::Customer { token: String::new(), business: String::new() });
        let answered = {
            let probes: Vec<Probe<'_>> =
                group.iter().map(|r| Probe { token: &r.token, node: &r.node }).collect();
            client.probe(&probes, own.auth(), singly).await
        };
        match answered {
            Ok(answered) => {
                if let (Own::Customer { token, business }, true) = (&own, client.batches() && !singly) {
                    credentials.borrow_mut().accepted = Some((token.clone(), business.clone()));
                }
                outcomes.extend(classify_answered(ctx, pacing, credentials, group, answered));
                return outcomes;
            }
            Err(not_made) => {
                if let Some(why) = not_answered(ctx, pacing, credentials, not_made, own, &group) {
                    outcomes.extend(leave(group.len(), why));
                    return outcomes;
                }
            }
        }
    }
    outcomes
}

/// What a request of `group`'s connections that got no answers comes to: `Some(why)` leaves
/// them for a later run; `None` sends them again (Meta refused the request's own token, which
/// the run now knows not to use).
fn not_answered(
    ctx: &JobContext<'_>,
    pacing: &RefCell<Pacing>,
    credentials: &RefCell<Credentials>,
    not_made: NotMade,
    own: Own,
    group: &[Ready],
) -> Option<Left> {
    let (refusal, usage) = match not_made {
        NotMade::OutOfTime => return Some(Left::Later),
        NotMade::NotSent(why) => {
            if pacing.borrow().halted().is_none() {
                ctx.log.warn("no further Graph request this run", json!({ "reason": why }));
            }
            pacing.borrow_mut().halt_for_allowance();
            return Some(Left::Halted(Halt::Allowance));
        }
        NotMade::Refused(refusal, usage) => (refusal, usage),
    };
    pacing.borrow_mut().read_figures(&usage, time::unix_millis());
    let refused = refused(&refusal, &own, group);
    if let Some((message, detail)) = refused.told() {
        ctx.log.warn(message, json!({ "connections": group.len(), "detail": detail }));
    }
    match refused {
        Refused::AppThrottled => {
            pacing.borrow_mut().throttled(Throttle::App, None, &usage);
            Some(Left::Halted(Halt::Throttled))
        }
        Refused::BusinessThrottled(business) => {
            pacing.borrow_mut().throttled(Throttle::Business, Some(&business), &usage);
            None
        }
        Refused::Token(token) => {
            credentials.borrow_mut().refused.insert(token);
            None
        }
        Refused::App(why) => {
            credentials.borrow_mut().app_refused.get_or_insert(why);
            None
        }
        Refused::NoVerdict(_) => Some(Left::Unanswered),
    }
}

impl Refused {
    /// What the run's log says of it, and the detail it gives (never a token); an app
    /// throttle is told by the cool-down it starts.
    fn told(&self) -> Option<(&'static str, &str)> {
        Some(match self {
            Refused::AppThrottled => return None,
            Refused::BusinessThrottled(business) => {
                ("Meta throttled the business of the request's own token: checking the others again", business)
            }
            Refused::Token(_) => {
                ("Meta refused the request's own token (a customer's): checking its connections again with another", "")
            }
            Refused::App(why) => ("Meta refused the app credentials: checking without debug_token from now on", why),
            Refused::NoVerdict(why) => {
                ("Graph API refused a request as a whole: its connections wait for a later run, with no verdict", why)
            }
        })
    }
}

/// `n` connections left unchecked, for `why`.
fn leave(n: usize, why: Left) -> impl Iterator<Item = Outcome> {
    std::iter::repeat_with(move || Outcome::Left(why)).take(n)
}

/// Takes out of `group` the connections whose business is held, as what they come to.
fn take_held(group: &mut Vec<Ready>, holds: impl Fn(&str) -> Option<Halt>) -> Vec<Outcome> {
    let (go, held): (Vec<Ready>, Vec<Ready>) =
        std::mem::take(group).into_iter().partition(|r| holds(&r.business).is_none());
    *group = go;
    held.iter().filter_map(|r| holds(&r.business)).map(|h| Outcome::Left(Left::Halted(h))).collect()
}

/// A request's answers: each connection classified, unless Meta throttled its check.
fn classify_answered(
    ctx: &JobContext<'_>,
    pacing: &RefCell<Pacing>,
    credentials: &RefCell<Credentials>,
    group: Vec<Ready>,
    answered: graph::Answered,
) -> Vec<Outcome> {
    let businesses: Vec<&str> = group.iter().map(|r| r.business.as_str()).collect();
    let halts =
        pacing.borrow_mut().observe(&businesses, &answered.probed, &answered.usage, time::unix_millis());
    let mut outcomes = Vec::with_capacity(group.len());
    for ((ready, probed), halt) in group.into_iter().zip(answered.probed).zip(halts) {
        outcomes.push(match halt {
            Some(halt) => Outcome::Left(Left::Halted(halt)),
            None => {
                let (checked, app_refused) = classified(ctx, ready, probed);
                if let Some(why) = app_refused {
                    credentials.borrow_mut().app_refused.get_or_insert(why);
                }
                Outcome::Checked(checked)
            }
        });
    }
    outcomes
}

/// The row a connection's answers come to, and why Meta refused the app, if it did.
fn classified(ctx: &JobContext<'_>, ready: Ready, probed: Probed) -> (Checked, Option<String>) {
    let mut verdict = classify::classify(&Inputs {
        debug: probed.debug.as_ref(),
        node: &probed.node,
        now: crate::time::unix_secs(),
        warning_days: ctx.settings.token_expiry_warning_days,
        previous_unknowns: ready.conn.previous_unknowns,
    });
    let app_refused = verdict.app_refused.take();
    (finish(ctx, ready.conn, verdict, probed.ms, Some(&ready.token)), app_refused)
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
    Checked { conn, result }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::GraphError;
    use crate::graph::MetaApp;
    use crate::outbound::Allowance;
    use crate::time::Deadline;

    fn refusal(code: i64) -> Refusal {
        let error = GraphError {
            code,
            subcode: None,
            kind: "OAuthException".into(),
            message: "m".into(),
            is_transient: false,
        };
        Refusal::Refused { http_status: 400, error }
    }

    fn customer(token: &str, business: &str) -> Own {
        Own::Customer { token: token.into(), business: business.into() }
    }

    #[test]
    fn a_refusal_names_the_request_not_a_connection() {
        let own = customer("t1", "b1");
        assert_eq!(refused(&refusal(4), &own, &[]), Refused::AppThrottled);
        assert_eq!(refused(&refusal(613), &Own::App, &[]), Refused::AppThrottled);
        assert_eq!(refused(&refusal(80_007), &own, &[]), Refused::BusinessThrottled("b1".into()));
        assert_eq!(refused(&refusal(190), &own, &[]), Refused::Token("t1".into()));
        assert_eq!(refused(&refusal(102), &own, &[]), Refused::Token("t1".into()));
        assert!(matches!(refused(&refusal(190), &Own::App, &[]), Refused::App(why) if why.contains("190")));
        // The app token has no business to hold; anything else is no verdict at all.
        assert!(matches!(refused(&refusal(80_007), &Own::App, &[]), Refused::NoVerdict(_)));
        assert!(matches!(refused(&refusal(100), &own, &[]), Refused::NoVerdict(_)));
        assert!(
            matches!(refused(&Refusal::Unanswered("502".into()), &own, &[]), Refused::NoVerdict(why) if why == "502")
        );
    }

    fn ready(id: &str, health: &str, business: &str) -> Ready {
        let conn: DueConnection = serde_json::from_value(json!({
            "id": id, "organizationId": null, "healthStatus": health, "wabaId": business,
            "phoneNumberId": id, "accessToken": null, "configPhoneId": null, "configWabaId": null,
            "configId": null, "previousUnknowns": 0, "checkedKey": "-infinity"
        }))
        .unwrap();
        Ready { conn, token: format!("token-{id}"), node: Node::Phone(id.into()), business: business.into() }
    }

    fn client(app: Option<MetaApp<'static>>) -> graph::Client<'static> {
        graph::Client {
            base_url: "",
            version: "v25.0",
            app,
            deadline: Deadline::after(std::time::Duration::ZERO),
            batch_size: 50,
            allowance: Allowance::unlimited(),
        }
    }

    fn chosen(
        credentials: &Credentials,
        client: &graph::Client<'_>,
        group: &[Ready],
        held: &[&str],
    ) -> Option<String> {
        credentials.choose(client, group, |b| held.contains(&b)).map(|own| match own {
            Own::App => "app".to_owned(),
            Own::Customer { token, .. } => token,
        })
    }

    #[test]
    fn metas_words_keep_no_token_of_the_request() {
        let group = [ready("1", "healthy", "b1")];
        let mut echoed = refusal(100);
        if let Refusal::Refused { error, .. } = &mut echoed {
            error.message = "Unsupported get request: token-1".into();
        }
        let Refused::NoVerdict(why) = refused(&echoed, &customer("token-1", "b1"), &group) else { panic!() };
        assert!(why.ends_with("Unsupported get request: [redacted]"), "{why}");
    }

    #[test]
    fn a_requests_own_token_is_one_meta_is_likely_to_accept() {
        let group = [ready("1", "error", "b1"), ready("2", "healthy", "b2"), ready("3", "unknown", "b3")];
        let mut credentials = Credentials::default();
        let app = client(Some(MetaApp { id: "1", secret: "s" }));
        assert_eq!(chosen(&credentials, &app, &group, &[]).as_deref(), Some("app"));
        let none = client(None);
        // A connection last seen healthy, before the stalest.
        assert_eq!(chosen(&credentials, &none, &group, &[]).as_deref(), Some("token-2"));
        assert_eq!(chosen(&credentials, &none, &group, &["b2"]).as_deref(), Some("token-1"));
        // One Meta accepted this run, before any of the group's.
        credentials.accepted = Some(("token-9".into(), "b9".into()));
        assert_eq!(chosen(&credentials, &none, &group, &[]).as_deref(), Some("token-9"));
        // Never one Meta refused, or one of a business held.
        credentials.refused.extend(["token-2".to_owned(), "token-1".to_owned()]);
        assert_eq!(chosen(&credentials, &none, &group, &["b9"]).as_deref(), Some("token-3"));
        credentials.refused.insert("token-3".into());
        assert_eq!(chosen(&credentials, &none, &group, &["b9"]), None, "single calls remain");
        // Refused app credentials: a customer's token from then on.
        credentials.app_refused = Some("190".into());
        assert_eq!(chosen(&credentials, &app, &group, &[]).as_deref(), Some("token-9"));
    }
}
