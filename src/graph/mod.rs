//! Meta's Graph API: the calls that check a connection, made one at a time or, by default, up to
//! `graph_batch_size` of them in one batch request ([`batch`]); the parsing of their answers
//! ([`parse`]); and what Meta says about its limits ([`limits`]).
//!
//! Batching is for the platform as much as for Meta: Spin does not pool outbound connections,
//! so every request is a new TCP and TLS handshake, and hosted platforms count requests per
//! hour. Meta still counts each operation of a batch against its limits.

pub mod batch;
pub mod limits;
mod parse;

use std::time::{Duration, Instant};

use http::header::{AUTHORIZATION, CONTENT_TYPE};
use http::Method;
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

pub use parse::{parse_debug_token, parse_phone_health, Answer, DebugToken, GraphError, PhoneHealth};

use crate::config::MetaApp;
use crate::outbound::{self, Allowance, OutboundError, Request, Response};
use crate::time::Deadline;
use batch::{Operation, Reply};
use limits::Usage;

/// A single call's timeout...
const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// ...and what a batch adds per operation: Meta runs a batch's operations in parallel, but not
/// all at once.
const PER_OPERATION: Duration = Duration::from_millis(200);
const PHONE_FIELDS: &str = "health_status,status,quality_rating";

/// The node whose health is read: a phone number when we know one, else the WABA.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    Phone(String),
    Waba(String),
}

/// The calls that check one connection: `debug_token` (when the app's credentials are set) and
/// the node's health, both about `token`.
pub struct Probe<'a> {
    pub token: &'a str,
    pub node: &'a Node,
}

/// What Meta answered about one connection, and how long the request(s) took.
#[derive(Debug, Clone, PartialEq)]
pub struct Probed {
    /// `None` when `debug_token` is not configured.
    pub debug: Option<Answer<DebugToken>>,
    pub node: Answer<PhoneHealth>,
    pub ms: u64,
}

/// A Graph API client bound to one base URL and version, and to the run's deadline.
pub struct Client<'a> {
    pub base_url: &'a str,
    pub version: &'a str,
    pub app: Option<MetaApp<'a>>,
    pub deadline: Deadline,
    /// Operations per request; 1 makes single calls.
    pub batch_size: usize,
    pub allowance: Allowance<'a>,
}

/// Why a request was not made (or not finished), through nobody's fault: the connections'
/// checks were not made, and nobody is charged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotMade {
    /// The run's deadline came before Meta answered.
    OutOfTime,
    /// The hour's outbound allowance is spent, or could not be counted (why).
    NotSent(String),
}

/// One request's worth of probes answered, and the usage figures Meta sent with them.
pub struct Answered {
    pub probed: Vec<Probed>,
    pub usage: Usage,
    /// HTTP requests it took.
    pub requests: u32,
}

impl Client<'_> {
    /// How many connections one request checks.
    pub fn probes_per_request(&self) -> usize {
        let calls = if self.app.is_some() { 2 } else { 1 };
        (self.batch_size.min(batch::MAX_OPERATIONS) / calls).max(1)
    }

    /// Checks up to [`Self::probes_per_request`] connections: one batch request, or single calls
    /// one after the other when batching is off.
    pub async fn probe(&self, probes: &[Probe<'_>]) -> Result<Answered, NotMade> {
        if self.batch_size <= 1 {
            let mut answered = Answered { probed: Vec::new(), usage: Usage::default(), requests: 0 };
            for probe in probes {
                let (probed, usage, requests) = self.probe_singly(probe).await?;
                answered.probed.push(probed);
                answered.usage.update(usage);
                answered.requests += requests;
            }
            return Ok(answered);
        }
        self.probe_in_batch(probes).await
    }

    async fn probe_singly(&self, probe: &Probe<'_>) -> Result<(Probed, Usage, u32), NotMade> {
        let started = Instant::now();
        let mut usage = Usage::default();
        let mut requests = 0;
        let debug = match self.app {
            None => None,
            Some(app) => {
                let url = format!("{}/{}/{}", self.base_url, self.version, debug_token_path(probe.token));
                let auth = format!("Bearer {}|{}", app.id, app.secret);
                let (answer, headers) = self.get(&url, auth, parse_debug_token).await?;
                usage.update(Usage::from_headers(&headers));
                requests += 1;
                Some(answer)
            }
        };
        // A throttled app gets nothing more from Meta: the second call would only add to it.
        let throttled = match &debug {
            Some(Answer::Error { http_status, error }) if limits::throttle_of(error).is_some() => {
                Some(Answer::Error { http_status: *http_status, error: error.clone() })
            }
            _ => None,
        };
        let node = match throttled {
            Some(answer) => answer,
            None => {
                let url = format!("{}/{}/{}", self.base_url, self.version, node_path(probe.node));
                let (answer, headers) =
                    self.get(&url, format!("Bearer {}", probe.token), parse_phone_health).await?;
                usage.update(Usage::from_headers(&headers));
                requests += 1;
                answer
            }
        };
        Ok((Probed { debug, node, ms: started.elapsed().as_millis() as u64 }, usage, requests))
    }

    async fn get<T>(
        &self,
        url: &str,
        auth: String,
        parse: fn(u16, &[u8]) -> Answer<T>,
    ) -> Result<(Answer<T>, Vec<(String, String)>), NotMade> {
        let req = Request { method: Method::GET, url, headers: vec![(AUTHORIZATION, auth)], body: &[] };
        match self.send(req, CALL_TIMEOUT).await? {
            Ok(resp) => Ok((parse(resp.status, &resp.body), resp.headers)),
            Err(e) => Ok((Answer::Unusable(format!("Graph API call failed: {e}")), Vec::new())),
        }
    }

    async fn probe_in_batch(&self, probes: &[Probe<'_>]) -> Result<Answered, NotMade> {
        let mut operations = Vec::with_capacity(probes.len() * 2);
        for probe in probes {
            if self.app.is_some() {
                operations.push(Operation::get(debug_token_path(probe.token)));
            }
            operations.push(Operation::get(format!(
                "{}&access_token={}",
                node_path(probe.node),
                encode(probe.token)
            )));
        }
        // Operations that carry no token of their own are the app's, when it has credentials.
        let fallback = match self.app {
            Some(app) => format!("{}|{}", app.id, app.secret),
            None => probes.first().map(|p| p.token.to_owned()).unwrap_or_default(),
        };
        let body = batch::request_body(&operations, &fallback);
        let url = format!("{}/{}/", self.base_url, self.version);
        let req = Request {
            method: Method::POST,
            url: &url,
            headers: vec![(CONTENT_TYPE, "application/x-www-form-urlencoded".to_owned())],
            body: body.as_bytes(),
        };
        let started = Instant::now();
        let timeout = CALL_TIMEOUT + PER_OPERATION * operations.len() as u32;
        let (replies, usage) = match self.send(req, timeout).await? {
            Ok(resp) => (
                batch::parse_answer(resp.status, &resp.body, operations.len()),
                Usage::from_headers(&resp.headers),
            ),
            Err(e) => {
                let why = format!("Graph API batch call failed: {e}");
                (vec![Reply::Missing(why); operations.len()], Usage::default())
            }
        };
        let ms = started.elapsed().as_millis() as u64;
        let mut replies = replies.into_iter();
        let probed = probes
            .iter()
            .map(|_| {
                let debug = self.app.map(|_| answer_of(replies.next(), parse_debug_token, true));
                let node = answer_of(replies.next(), parse_phone_health, false);
                Probed { debug, node, ms }
            })
            .collect();
        Ok(Answered { probed, usage, requests: 1 })
    }

    /// `Err` when the run's deadline cut the call short; `Ok(Err)` for every other failure.
    async fn send(
        &self,
        req: Request<'_>,
        timeout: Duration,
    ) -> Result<Result<Response, OutboundError>, NotMade> {
        match outbound::send(req, timeout, self.deadline, self.allowance).await {
            Err(OutboundError::OutOfTime) => Err(NotMade::OutOfTime),
            Err(OutboundError::NotSent(why)) => Err(NotMade::NotSent(why)),
            other => Ok(other),
        }
    }
}

/// An operation's reply as the single call's answer would have been. A batch Meta refused as a
/// whole is transient for every operation, since no single call failed; except a throttle,
/// which is the throttle for each, and a refused token on `debug_token`'s operations, whose
/// token is the app's (the batch's fallback).
fn answer_of<T>(reply: Option<Reply>, parse: fn(u16, &[u8]) -> Answer<T>, app_operation: bool) -> Answer<T> {
    match reply {
        Some(Reply::Answered { code, body }) => parse(code, body.as_bytes()),
        Some(Reply::Refused { http_status, error })
            if limits::throttle_of(&error).is_some()
                || (app_operation && matches!(error.code, 190 | 102)) =>
        {
            Answer::Error { http_status, error }
        }
        Some(Reply::Refused { http_status, error }) => Answer::Unusable(format!(
            "Graph API refused the batch (HTTP {http_status}): {} {}: {}",
            error.kind, error.code, error.message
        )),
        Some(Reply::Missing(why)) => Answer::Unusable(why),
        None => Answer::Unusable("Graph API's batch answer ended before this call".into()),
    }
}

fn debug_token_path(token: &str) -> String {
    format!("debug_token?input_token={}", encode(token))
}

/// The node's path and query, relative to the version.
fn node_path(node: &Node) -> String {
    match node {
        Node::Phone(id) => format!("{}?fields={PHONE_FIELDS}", encode(id)),
        Node::Waba(id) => format!("{}?fields=health_status", encode(id)),
    }
}

/// Everything but RFC 3986's unreserved characters (`A-Z a-z 0-9 - . _ ~`) is escaped.
const ESCAPED: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

fn encode(s: &str) -> String {
    utf8_percent_encode(s, ESCAPED).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_escapes_reserved() {
        assert_eq!(encode("a|b c&d"), "a%7Cb%20c%26d");
        assert_eq!(encode("EAAB-x_y.z~"), "EAAB-x_y.z~");
        assert_eq!(encode("é/1"), "%C3%A9%2F1");
    }

    fn client(app: Option<MetaApp<'static>>, batch_size: usize) -> Client<'static> {
        let deadline = Deadline::after(Duration::ZERO);
        Client {
            base_url: "",
            version: "v25.0",
            app,
            deadline,
            batch_size,
            allowance: Allowance::unlimited(),
        }
    }

    #[test]
    fn a_batch_holds_whole_connections_and_never_more_than_fifty_calls() {
        let app = Some(MetaApp { id: "1", secret: "s" });
        assert_eq!(client(app, 50).probes_per_request(), 25);
        assert_eq!(client(None, 50).probes_per_request(), 50);
        assert_eq!(client(app, 7).probes_per_request(), 3);
        assert_eq!(client(app, 1).probes_per_request(), 1);
        assert_eq!(client(None, 500).probes_per_request(), 50);
    }

    fn refused(code: i64) -> Option<Reply> {
        let error = GraphError {
            code,
            subcode: None,
            kind: "OAuthException".into(),
            message: "m".into(),
            is_transient: false,
        };
        Some(Reply::Refused { http_status: 400, error })
    }

    #[test]
    fn a_refused_batch_blames_no_connection() {
        assert!(matches!(answer_of(refused(190), parse_phone_health, false), Answer::Unusable(_)));
        assert!(matches!(answer_of(refused(100), parse_debug_token, true), Answer::Unusable(_)));
        // The app's own token refused: debug_token's operations say so, as a single call would.
        assert!(matches!(answer_of(refused(190), parse_debug_token, true), Answer::Error { .. }));
        // A throttle is a throttle for every operation.
        assert!(matches!(answer_of(refused(4), parse_phone_health, false), Answer::Error { .. }));
        assert!(matches!(answer_of(None, parse_phone_health, false), Answer::Unusable(_)));
    }
}
