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

use crate::outbound::{self, Allowance, OutboundError, Request, Response};
use crate::time::Deadline;
use batch::{Operation, Refusal, Reply};
use limits::Usage;

/// Meta app credentials: both enable `debug_token`.
#[derive(Clone, Copy)]
pub struct MetaApp<'a> {
    pub id: &'a str,
    pub secret: &'a str,
}

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

/// How a request authenticates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Auth<'a> {
    /// With the app's credentials: `debug_token` goes along, and the app token is a batch's own.
    App,
    /// Without them (none configured, or Meta refused them this run): node reads only, and a
    /// batch's own token is this customer token, one Meta has accepted when there is one.
    Customer(&'a str),
}

/// Why a request was not made (or not answered), through nobody's fault: the connections'
/// checks were not made, and nobody is charged.
#[derive(Debug, Clone, PartialEq)]
pub enum NotMade {
    /// The run's deadline came before Meta answered.
    OutOfTime,
    /// The hour's outbound allowance is spent, or could not be counted (why).
    NotSent(String),
    /// Meta refused the batch request as a whole, or did not answer it with the batch's array:
    /// about the request, not about any connection in it. With the usage figures it sent.
    Refused(Refusal, Usage),
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

    /// Whether requests are batches (else single calls).
    pub fn batches(&self) -> bool {
        self.batch_size > 1
    }

    /// Checks up to [`Self::probes_per_request`] connections: one batch request, or single calls
    /// one after the other when batching is off (`singly`, or `graph_batch_size` 1).
    pub async fn probe(
        &self,
        probes: &[Probe<'_>],
        auth: Auth<'_>,
        singly: bool,
    ) -> Result<Answered, NotMade> {
        if singly || !self.batches() {
            let mut answered = Answered { probed: Vec::new(), usage: Usage::default(), requests: 0 };
            for probe in probes {
                let (probed, usage, requests) = self.probe_singly(probe, auth).await?;
                answered.probed.push(probed);
                answered.usage.update(usage);
                answered.requests += requests;
            }
            return Ok(answered);
        }
        self.probe_in_batch(probes, auth).await
    }

    /// The app's credentials, when this request may use them.
    fn app_for(&self, auth: Auth<'_>) -> Option<MetaApp<'_>> {
        self.app.filter(|_| auth == Auth::App)
    }

    async fn probe_singly(&self, probe: &Probe<'_>, auth: Auth<'_>) -> Result<(Probed, Usage, u32), NotMade> {
        let started = Instant::now();
        let mut usage = Usage::default();
        let mut requests = 0;
        let debug = match self.app_for(auth) {
            None => None,
            Some(app) => {
                let url = format!("{}/{}/{}", self.base_url, self.version, debug_token_path(probe.token));
                let auth = format!("Bearer {}|{}", app.id, app.secret);
                let (answer, headers) = self.get(&url, auth, parse_debug_token).await?;
                usage.update(usage_of(&headers));
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
                usage.update(usage_of(&headers));
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

    /// The operations that check `probes`, and the batch request's own token.
    fn operations(&self, probes: &[Probe<'_>], auth: Auth<'_>) -> (Vec<Operation>, String) {
        let app = self.app_for(auth);
        let mut operations = Vec::with_capacity(probes.len() * 2);
        for probe in probes {
            if app.is_some() {
                operations.push(Operation::get(debug_token_path(probe.token)));
            }
            let node = format!("{}&access_token={}", node_path(probe.node), encode(probe.token));
            operations.push(Operation::get(node));
        }
        let own_token = match (app, auth) {
            (Some(app), _) => format!("{}|{}", app.id, app.secret),
            (None, Auth::Customer(token)) => token.to_owned(),
            (None, Auth::App) => probes.first().map(|p| p.token.to_owned()).unwrap_or_default(),
        };
        (operations, own_token)
    }

    async fn probe_in_batch(&self, probes: &[Probe<'_>], auth: Auth<'_>) -> Result<Answered, NotMade> {
        let app = self.app_for(auth);
        let (operations, own_token) = self.operations(probes, auth);
        let body = batch::request_body(&operations, &own_token);
        let url = format!("{}/{}/", self.base_url, self.version);
        let req = Request {
            method: Method::POST,
            url: &url,
            headers: vec![(CONTENT_TYPE, "application/x-www-form-urlencoded".to_owned())],
            body: body.as_bytes(),
        };
        let started = Instant::now();
        let timeout = CALL_TIMEOUT + PER_OPERATION * operations.len() as u32;
        let resp = match self.send(req, timeout).await? {
            Ok(resp) => resp,
            Err(e) => {
                let why = format!("Graph API batch call failed: {e}");
                return Err(NotMade::Refused(Refusal::Unanswered(why), Usage::default()));
            }
        };
        let mut usage = usage_of(&resp.headers);
        let replies = match batch::parse_answer(resp.status, &resp.body, operations.len()) {
            Ok(replies) => replies,
            Err(refusal) => return Err(NotMade::Refused(refusal, usage)),
        };
        let ms = started.elapsed().as_millis() as u64;
        let mut replies = replies.into_iter().map(|reply| match reply {
            Reply::Answered { code, body, usage: own } => {
                usage.update(own);
                Ok((code, body))
            }
            Reply::Missing(why) => Err(why),
        });
        let mut probed = Vec::with_capacity(probes.len());
        for _ in probes {
            let debug = app.map(|_| answer_of(replies.next(), parse_debug_token));
            let node = answer_of(replies.next(), parse_phone_health);
            probed.push(Probed { debug, node, ms });
        }
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

fn usage_of(headers: &[(String, String)]) -> Usage {
    Usage::from_headers(headers.iter().map(|(n, v)| (n.as_str(), v.as_str())))
}

/// An operation's reply as the single call's answer would have been.
fn answer_of<T>(
    reply: Option<Result<(u16, String), String>>,
    parse: fn(u16, &[u8]) -> Answer<T>,
) -> Answer<T> {
    match reply {
        Some(Ok((code, body))) => parse(code, body.as_bytes()),
        Some(Err(why)) => Answer::Unusable(why),
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
}
