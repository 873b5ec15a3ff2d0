//! The classification table of SPEC section 5, as a function from Graph answers to a verdict.
//!
//! `debug_token` is asked with the app's credentials, so an error object at the top of its
//! answer (not under `data`) is about the app, not the customer's token: no finding about the
//! connection, whose verdict is the node read's (made with its own token), as without app
//! credentials; the run goes on without `debug_token` and raises one alert naming
//! `meta_app_id`/`meta_app_secret` instead of one per connection.
//!
//! Every finding gets a level; the worst level wins. Our order of badness is
//! `error > unknown > warning > healthy`: a definite error always shows, but a check that could
//! not finish (a transient Graph failure) is `unknown` even when another call found a warning,
//! so the connection is re-checked on the next run instead of waiting a whole recheck window.

use serde::Serialize;

use crate::graph::{Answer, DebugToken, GraphError, PhoneHealth};

/// A connection's health; the order is the order of badness (the worst finding wins).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Health {
    Healthy,
    Warning,
    Unknown,
    Error,
}

impl Health {
    /// A stored `"healthStatus"`: WhaTrack's column may hold values that are none of ours, which
    /// read as `None` rather than failing the page they are on.
    pub fn lenient<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Health>, D::Error> {
        let stored: Option<String> = serde::Deserialize::deserialize(d)?;
        Ok(Health::ALL.into_iter().find(|h| stored.as_deref() == Some(h.as_str())))
    }

    const ALL: [Health; 4] = [Health::Healthy, Health::Warning, Health::Unknown, Health::Error];

    pub fn as_str(self) -> &'static str {
        match self {
            Health::Healthy => "healthy",
            Health::Warning => "warning",
            Health::Unknown => "unknown",
            Health::Error => "error",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenStatus {
    Valid,
    ExpiringSoon,
    Expired,
    Invalid,
}

impl TokenStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            TokenStatus::Valid => "valid",
            TokenStatus::ExpiringSoon => "expiring_soon",
            TokenStatus::Expired => "expired",
            TokenStatus::Invalid => "invalid",
        }
    }
}

/// What `debug_token` told us about the token, written to `whatsapp_configs`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenFacts {
    pub status: TokenStatus,
    /// Unix seconds; `None` for a token that never expires.
    pub expires_at: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub health: Health,
    pub reason: String,
    pub token_valid: bool,
    pub token_expired: bool,
    pub token: Option<TokenFacts>,
    /// Why Meta refused `debug_token` for the app itself, when it did.
    pub app_refused: Option<String>,
}

pub struct Inputs<'a> {
    /// `None` when `debug_token` is not configured.
    pub debug: Option<&'a Answer<DebugToken>>,
    pub node: &'a Answer<PhoneHealth>,
    pub now: i64,
    pub warning_days: u32,
    /// How many checks in a row just before this one were `unknown`.
    pub previous_unknowns: usize,
}

const REQUIRED_SCOPES: [&str; 2] = ["whatsapp_business_messaging", "whatsapp_business_management"];
/// The `unknown` in a row that makes a warning; the due connections' read counts the ones before.
pub const UNKNOWN_STREAK_WARNING: usize = 3;

/// A connection that could not be checked at all (no token, or one we cannot decrypt).
pub fn unchecked(reason: &str) -> Verdict {
    Verdict {
        health: Health::Error,
        reason: reason.to_owned(),
        token_valid: false,
        token_expired: false,
        token: None,
        app_refused: None,
    }
}

pub fn classify(inputs: &Inputs<'_>) -> Verdict {
    let mut findings: Vec<(Health, String)> = Vec::new();
    let mut token_valid = false;
    let mut token_expired = false;
    let mut token = None;
    let mut app_refused = None;

    match inputs.debug {
        Some(Answer::Ok(d)) => {
            let facts = token_facts(d, inputs.now, inputs.warning_days);
            token_valid = matches!(facts.status, TokenStatus::Valid | TokenStatus::ExpiringSoon);
            token_expired = facts.status == TokenStatus::Expired;
            findings.extend(debug_findings(d, facts, inputs.now));
            token = Some(facts);
        }
        Some(Answer::Error { error, .. }) if !is_listed_transient(error) => {
            app_refused = Some(format!("{} {}: {}", error.kind, code_of(error), short(&error.message)));
        }
        Some(other) => findings.extend(failure_finding("debug_token", other)),
        None => {}
    }

    match inputs.node {
        Answer::Ok(h) => {
            // A call made with the token succeeded; debug_token, when it answered, has the last word.
            if token.is_none() {
                token_valid = true;
            }
            findings.extend(node_findings(h));
        }
        other => findings.extend(failure_finding("health_status", other)),
    }

    if let Some(e) = node_error(inputs).filter(|e| is_token_error(e)) {
        token_valid = false;
        token_expired = token_expired || (e.code == 190 && e.subcode == Some(463));
    }

    let (health, reason) = worst(&findings, inputs.previous_unknowns);
    Verdict { health, reason, token_valid, token_expired, token, app_refused }
}

/// The worst finding wins, with its reasons; the third `unknown` in a row is a warning.
fn worst(findings: &[(Health, String)], previous_unknowns: usize) -> (Health, String) {
    let worst = findings.iter().map(|(h, _)| *h).max().unwrap_or(Health::Healthy);
    let reason =
        findings.iter().filter(|(h, _)| *h == worst).map(|(_, r)| r.as_str()).collect::<Vec<_>>().join("; ");
    match worst {
        Health::Healthy => (worst, "Token validated successfully".into()),
        Health::Unknown if previous_unknowns + 1 >= UNKNOWN_STREAK_WARNING => (
            Health::Warning,
            format!("{} transient failures in a row; last: {reason}", previous_unknowns + 1),
        ),
        _ => (worst, reason),
    }
}

/// The error object of the call made with the customer's token, if it failed with one.
fn node_error<'a>(inputs: &'a Inputs<'_>) -> Option<&'a GraphError> {
    match inputs.node {
        Answer::Error { error, .. } => Some(error),
        _ => None,
    }
}

/// `190/463`, or `190` without a subcode.
fn code_of(e: &GraphError) -> String {
    match e.subcode {
        Some(sub) => format!("{}/{}", e.code, sub),
        None => e.code.to_string(),
    }
}

fn is_token_error(e: &GraphError) -> bool {
    matches!(e.code, 190 | 102)
}

fn token_facts(d: &DebugToken, now: i64, warning_days: u32) -> TokenFacts {
    let expires_at = (d.expires_at != 0).then_some(d.expires_at);
    let status = match expires_at {
        Some(at) if at <= now => TokenStatus::Expired,
        _ if !d.is_valid => TokenStatus::Invalid,
        Some(at) if at - now < i64::from(warning_days) * 86_400 => TokenStatus::ExpiringSoon,
        _ => TokenStatus::Valid,
    };
    TokenFacts { status, expires_at }
}

fn debug_findings(d: &DebugToken, facts: TokenFacts, now: i64) -> Vec<(Health, String)> {
    let mut out = Vec::new();
    match facts.status {
        TokenStatus::Expired => out.push((Health::Error, "Token expired (debug_token)".to_owned())),
        TokenStatus::Invalid => out.push((
            Health::Error,
            match &d.invalid_reason {
                Some(why) => format!("Token invalid (debug_token): {}", short(why)),
                None => "Token invalid (debug_token)".to_owned(),
            },
        )),
        TokenStatus::ExpiringSoon => {
            let days = (facts.expires_at.unwrap_or(now) - now) / 86_400;
            out.push((Health::Warning, format!("Token expires in {days} day(s)")));
        }
        TokenStatus::Valid => {}
    }
    if d.is_valid {
        if let Some(scopes) = &d.scopes {
            let missing: Vec<&str> =
                REQUIRED_SCOPES.iter().copied().filter(|s| !scopes.iter().any(|have| have == s)).collect();
            if !missing.is_empty() {
                out.push((Health::Error, format!("Token lacks scope(s): {}", missing.join(", "))));
            }
        }
    }
    out
}

fn node_findings(h: &PhoneHealth) -> Vec<(Health, String)> {
    let mut out = Vec::new();
    let detail = h.entity_error.as_deref().map(|e| format!(" ({})", short(e))).unwrap_or_default();
    if h.can_send_message.iter().any(|c| c == "BLOCKED") {
        out.push((Health::Error, format!("can_send_message BLOCKED{detail}")));
    } else if h.can_send_message.iter().any(|c| c == "LIMITED") {
        out.push((Health::Warning, format!("can_send_message LIMITED{detail}")));
    }
    match h.status.as_deref() {
        Some(s @ ("BANNED" | "DELETED" | "DISCONNECTED")) => {
            out.push((Health::Error, format!("phone status {s}")))
        }
        Some(s @ ("FLAGGED" | "RESTRICTED" | "RATE_LIMITED")) => {
            out.push((Health::Warning, format!("phone status {s}")))
        }
        _ => {}
    }
    if let Some(q @ ("YELLOW" | "RED")) = h.quality_rating.as_deref() {
        out.push((Health::Warning, format!("quality rating {q}")));
    }
    out
}

fn failure_finding<T>(call: &str, answer: &Answer<T>) -> Option<(Health, String)> {
    match answer {
        Answer::Ok(_) => None,
        Answer::Unusable(why) => Some((Health::Unknown, format!("{call}: {why}"))),
        Answer::Error { http_status, error } => {
            let level = graph_error_level(error);
            let code = code_of(error);
            let what = known_meaning(error).map(str::to_owned).unwrap_or_else(|| short(&error.message));
            let unlisted = if level == Health::Unknown && !is_listed_transient(error) {
                format!(" (unrecognised Graph error, HTTP {http_status})")
            } else {
                String::new()
            };
            Some((level, format!("{} {code}: {what}{unlisted}", error.kind)))
        }
    }
}

/// The Graph error codes of SPEC section 5. Codes in neither list are treated as `unknown`:
/// we could not confirm the connection's health, so it is re-checked, never alerted on.
pub fn graph_error_level(e: &GraphError) -> Health {
    match (e.code, e.subcode) {
        (190, _) | (102, _) | (0, _) | (3, _) | (10, _) | (200..=299, _) | (368, _) | (131031, _) => {
            Health::Error
        }
        (100, Some(33)) => Health::Error,
        _ => Health::Unknown,
    }
}

fn is_listed_transient(e: &GraphError) -> bool {
    e.is_transient
        || matches!(
            e.code,
            1 | 2 | 4 | 17 | 32 | 341 | 613 | 80000..=80014 | 130429 | 131000 | 131016 | 131057
        )
}

fn known_meaning(e: &GraphError) -> Option<&'static str> {
    Some(match (e.code, e.subcode) {
        (190, Some(463)) => "token expired",
        (190, Some(460)) => "password changed",
        (190, Some(458)) => "app not installed",
        (190, Some(459)) => "user checkpointed",
        (190, Some(464)) => "unconfirmed user",
        (190, Some(467)) => "token invalid",
        (190, Some(492)) => "invalid session",
        (190, _) => "token invalid",
        (368, _) => "temporarily blocked for policy violations",
        (131031, _) => "account locked",
        (4 | 17 | 32 | 613 | 80000..=80014 | 130429, _) => "rate limited",
        _ => return None,
    })
}

/// Meta's messages can be long; the audit row wants a short human-readable reason.
fn short(s: &str) -> String {
    const MAX: usize = 160;
    if s.chars().count() <= MAX {
        s.to_owned()
    } else {
        format!("{}...", s.chars().take(MAX).collect::<String>())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stored_health_of_another_vocabulary_reads_as_none() {
        #[derive(serde::Deserialize)]
        struct Row {
            #[serde(deserialize_with = "Health::lenient")]
            health: Option<Health>,
        }
        let read = |json: &str| serde_json::from_str::<Row>(json).unwrap().health;
        assert_eq!(read(r#"{"health":"error"}"#), Some(Health::Error));
        assert_eq!(read(r#"{"health":"healthy"}"#), Some(Health::Healthy));
        assert_eq!(read(r#"{"health":"DEGRADED"}"#), None);
        assert_eq!(read(r#"{"health":null}"#), None);
    }

    const NOW: i64 = 1_800_000_000;

    fn ok_node() -> Answer<PhoneHealth> {
        Answer::Ok(PhoneHealth {
            can_send_message: vec!["AVAILABLE".into()],
            status: Some("CONNECTED".into()),
            quality_rating: Some("GREEN".into()),
            entity_error: None,
        })
    }

    fn debug(is_valid: bool, expires_at: i64, scopes: Option<&[&str]>) -> Answer<DebugToken> {
        Answer::Ok(DebugToken {
            is_valid,
            expires_at,
            scopes: scopes.map(|s| s.iter().map(|x| x.to_string()).collect()),
            invalid_reason: None,
        })
    }

    fn err(code: i64, subcode: Option<i64>, transient: bool) -> Answer<PhoneHealth> {
        Answer::Error {
            http_status: 400,
            error: GraphError {
                code,
                subcode,
                kind: "OAuthException".into(),
                message: "m".into(),
                is_transient: transient,
            },
        }
    }

    fn run(debug: Option<&Answer<DebugToken>>, node: &Answer<PhoneHealth>) -> Verdict {
        classify(&Inputs { debug, node, now: NOW, warning_days: 7, previous_unknowns: 0 })
    }

    fn node_with(f: impl FnOnce(&mut PhoneHealth)) -> Answer<PhoneHealth> {
        let Answer::Ok(mut h) = ok_node() else { unreachable!() };
        f(&mut h);
        Answer::Ok(h)
    }

    #[test]
    fn healthy() {
        let v = run(Some(&debug(true, 0, Some(&REQUIRED_SCOPES))), &ok_node());
        assert_eq!(v.health, Health::Healthy);
        assert_eq!(v.reason, "Token validated successfully");
        assert!(v.token_valid && !v.token_expired);
        assert_eq!(v.token, Some(TokenFacts { status: TokenStatus::Valid, expires_at: None }));
        assert_eq!(run(None, &ok_node()).health, Health::Healthy);
        assert!(run(None, &ok_node()).token_valid);
    }

    #[test]
    fn token_expiry() {
        let soon = run(Some(&debug(true, NOW + 3 * 86_400 + 10, None)), &ok_node());
        assert_eq!(soon.health, Health::Warning);
        assert_eq!(soon.reason, "Token expires in 3 day(s)");
        assert_eq!(soon.token.unwrap().status, TokenStatus::ExpiringSoon);
        let later = run(Some(&debug(true, NOW + 8 * 86_400, None)), &ok_node());
        assert_eq!(later.health, Health::Healthy);
        let past = run(Some(&debug(true, NOW - 1, None)), &ok_node());
        assert_eq!(past.health, Health::Error);
        assert!(past.token_expired && !past.token_valid);
        assert_eq!(past.token.unwrap().status, TokenStatus::Expired);
    }

    #[test]
    fn invalid_token_and_missing_scopes() {
        let v = run(Some(&debug(false, 0, None)), &ok_node());
        assert_eq!((v.health, v.token.unwrap().status), (Health::Error, TokenStatus::Invalid));
        assert!(!v.token_valid);
        let v = run(Some(&debug(true, 0, Some(&["whatsapp_business_messaging"]))), &ok_node());
        assert_eq!(v.health, Health::Error);
        assert!(v.reason.contains("whatsapp_business_management"));
    }

    #[test]
    fn can_send_message_and_phone_status() {
        let limited = node_with(|h| h.can_send_message.push("LIMITED".into()));
        assert_eq!(run(None, &limited).health, Health::Warning);
        let blocked = node_with(|h| h.can_send_message = vec!["BLOCKED".into()]);
        assert_eq!(run(None, &blocked).health, Health::Error);
        for (s, want) in [
            ("BANNED", Health::Error),
            ("DELETED", Health::Error),
            ("DISCONNECTED", Health::Error),
            ("FLAGGED", Health::Warning),
            ("RESTRICTED", Health::Warning),
            ("RATE_LIMITED", Health::Warning),
            ("CONNECTED", Health::Healthy),
        ] {
            assert_eq!(run(None, &node_with(|h| h.status = Some(s.into()))).health, want, "{s}");
        }
        for (q, want) in [("YELLOW", Health::Warning), ("RED", Health::Warning), ("GREEN", Health::Healthy)] {
            assert_eq!(run(None, &node_with(|h| h.quality_rating = Some(q.into()))).health, want, "{q}");
        }
    }

    #[test]
    fn graph_error_codes() {
        for code in [190, 102, 0, 3, 10, 200, 250, 299, 368, 131031] {
            assert_eq!(run(None, &err(code, None, false)).health, Health::Error, "{code}");
        }
        assert_eq!(run(None, &err(100, Some(33), false)).health, Health::Error);
        assert_eq!(run(None, &err(100, None, false)).health, Health::Unknown);
        for code in [1, 2, 4, 17, 32, 341, 613, 80000, 80007, 80014, 130429, 131000, 131016, 131057] {
            assert_eq!(run(None, &err(code, None, false)).health, Health::Unknown, "{code}");
        }
        assert_eq!(run(None, &err(999, None, true)).health, Health::Unknown);
    }

    #[test]
    fn expired_token_error_reason_and_flags() {
        let v = run(None, &err(190, Some(463), false));
        assert_eq!(v.reason, "OAuthException 190/463: token expired");
        assert!(v.token_expired && !v.token_valid);
    }

    #[test]
    fn unusable_answers_are_unknown_and_worst_wins() {
        let down = Answer::Unusable("HTTP 503 from Graph API".into());
        assert_eq!(run(None, &down).health, Health::Unknown);
        // A definite error beats a transient failure...
        assert_eq!(run(Some(&debug(false, 0, None)), &down).health, Health::Error);
        // ...and a transient failure beats a warning (the check did not finish).
        assert_eq!(run(Some(&debug(true, NOW + 86_400, None)), &down).health, Health::Unknown);
    }

    #[test]
    fn third_unknown_in_a_row_is_a_warning() {
        let down = Answer::Unusable("timeout".into());
        for (prev, want) in
            [(0, Health::Unknown), (1, Health::Unknown), (2, Health::Warning), (5, Health::Warning)]
        {
            let v = classify(&Inputs {
                debug: None,
                node: &down,
                now: NOW,
                warning_days: 7,
                previous_unknowns: prev,
            });
            assert_eq!(v.health, want, "after {prev}");
        }
    }

    #[test]
    fn stored_names_are_the_serialised_names() {
        for h in [Health::Healthy, Health::Warning, Health::Unknown, Health::Error] {
            assert_eq!(serde_json::to_value(h).unwrap(), h.as_str());
        }
        for t in [TokenStatus::Valid, TokenStatus::ExpiringSoon, TokenStatus::Expired, TokenStatus::Invalid] {
            assert_eq!(serde_json::to_value(t).unwrap(), t.as_str());
        }
    }

    #[test]
    fn refused_app_credentials_say_nothing_about_the_customer() {
        let refused = Answer::Error {
            http_status: 400,
            error: GraphError {
                code: 190,
                subcode: None,
                kind: "OAuthException".into(),
                message: "Invalid OAuth access token signature.".into(),
                is_transient: false,
            },
        };
        let v = classify(&Inputs {
            debug: Some(&refused),
            node: &ok_node(),
            now: NOW,
            warning_days: 7,
            previous_unknowns: 5,
        });
        assert_eq!(v.health, Health::Healthy, "the node read, made with the customer's token, decides");
        assert!(v.token_valid, "the customer's token worked for the node call");
        assert_eq!(v.token, None, "no token facts to write");
        assert_eq!(
            v.app_refused.as_deref(),
            Some("OAuthException 190: Invalid OAuth access token signature.")
        );
        // A banned phone still shows.
        let banned = node_with(|h| h.status = Some("BANNED".into()));
        assert_eq!(run(Some(&refused), &banned).health, Health::Error);
        // A rate limit on debug_token is a transient failure, not a refusal.
        let limited = Answer::Error {
            http_status: 400,
            error: GraphError {
                code: 4,
                subcode: None,
                kind: "OAuthException".into(),
                message: "limit".into(),
                is_transient: true,
            },
        };
        assert_eq!(run(Some(&limited), &ok_node()).app_refused, None);
    }

    #[test]
    fn unchecked_connections_are_errors() {
        let v = unchecked("No token in database");
        assert_eq!(
            (v.health, v.reason.as_str(), v.token_valid),
            (Health::Error, "No token in database", false)
        );
    }
}
