//! Outbound HTTP with a hard timeout over the whole exchange (connect, headers and body).
//!
//! spin-sdk's `send` has no timeout, and a Graph API or webhook receiver that hangs must not hold
//! a run past its budget. So requests are made on the WASI HTTP interface directly: the timeouts
//! go into `request-options` for the host, and the guest also races every wait against a
//! monotonic-clock deadline, which holds even on a host that ignores the options. A call's own
//! timeout is clipped to the run's deadline; when the deadline is what ended it, the error says
//! so ([`OutboundError::OutOfTime`]), so that callers do not blame the other side.
//!
//! A body always goes with its `Content-Length`: receivers behind some proxies refuse chunked
//! requests, and a signature check wants the exact bytes.
//!
//! Hosted platforms cap an app's outbound requests per hour (Fermyon Cloud: 500). Every request
//! goes through an [`Allowance`]: with `outbound_requests_per_hour` set, it is counted in Redis
//! per clock hour across both jobs and every replica, and one that would exceed the hour's
//! allowance is not sent ([`OutboundError::NotSent`]), so that callers charge nobody for it.

use std::task::Poll;
use std::time::{Duration, Instant};

use http::header::{HeaderName, CONTENT_LENGTH};
use spin_executor::CancelOnDropToken;
use spin_sdk::wit::wasi::http0_2_0::outgoing_handler;
use spin_sdk::wit::wasi::http0_2_0::types::{
    ErrorCode, Fields, IncomingBody, IncomingResponse, Method, OutgoingBody, OutgoingRequest, RequestOptions,
    Scheme,
};
use wasi::clocks::monotonic_clock;
use wasi::io::poll::Pollable;
use wasi::io::streams::StreamError;

use crate::redis::Redis;
use crate::time::{self, Deadline};
use crate::urls;

/// What we send. `body` empty means no body.
pub struct Request<'a> {
    pub method: http::Method,
    pub url: &'a str,
    pub headers: Vec<(HeaderName, String)>,
    pub body: &'a [u8],
}

#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &HeaderName) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name.as_str())).map(|(_, v)| v.as_str())
    }
}

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum OutboundError {
    #[error("timed out after {0} s")]
    Timeout(u64),
    /// The run's deadline came before the answer: nobody's fault but the budget's.
    #[error("cut short by the run's time budget")]
    OutOfTime,
    #[error("destination not allowed by allowed_outbound_hosts: {0}")]
    Denied(String),
    #[error("invalid URL: {0}")]
    InvalidUrl(String),
    #[error("network error: {0}")]
    Network(String),
    /// The hour's allowance of outbound requests is spent (or could not be counted): not sent.
    #[error("not sent: {0}")]
    NotSent(String),
}

/// The app's outbound requests per clock hour (`outbound_requests_per_hour`), shared by both
/// jobs, the front door and every replica through Redis.
#[derive(Clone, Copy)]
pub struct Allowance<'a> {
    counted: Option<(&'a Redis, u32)>,
}

impl<'a> Allowance<'a> {
    pub fn new(redis: Option<&'a Redis>, per_hour: Option<u32>) -> Self {
        Self { counted: redis.zip(per_hour) }
    }

    pub fn unlimited() -> Self {
        Self { counted: None }
    }

    /// Takes one request from the hour's allowance.
    fn take(&self) -> Result<(), OutboundError> {
        let Some((redis, per_hour)) = self.counted else { return Ok(()) };
        match redis.take_outbound(per_hour, time::unix_secs()) {
            Ok(true) => Ok(()),
            Ok(false) => Err(OutboundError::NotSent(format!(
                "the hour's {per_hour} outbound requests (outbound_requests_per_hour) are spent"
            ))),
            Err(e) => Err(OutboundError::NotSent(format!("outbound requests cannot be counted: {e}"))),
        }
    }
}

/// Bodies are read up to this, and the rest left unread: callers only read small JSON answers or
/// an error excerpt.
const MAX_RESPONSE_BYTES: usize = 1 << 20;
const WRITE_CHUNK: usize = 4096;

/// Sends `req` and reads the whole answer, within `timeout` and before `run_deadline`, if the
/// hour's `allowance` has room for it.
pub async fn send(
    req: Request<'_>,
    timeout: Duration,
    run_deadline: Deadline,
    allowance: Allowance<'_>,
) -> Result<Response, OutboundError> {
    let clipped = run_deadline.clip(timeout);
    let expired = || {
        if clipped < timeout {
            OutboundError::OutOfTime
        } else {
            OutboundError::Timeout(timeout.as_secs())
        }
    };
    if clipped.is_zero() {
        return Err(OutboundError::OutOfTime);
    }
    let timeout = clipped;
    let deadline = Instant::now() + timeout;

    let (outgoing, body) = outgoing(&req)?;
    let options = RequestOptions::new();
    let nanos = timeout.as_nanos() as u64;
    let _ = options.set_connect_timeout(Some(nanos));
    let _ = options.set_first_byte_timeout(Some(nanos));
    let _ = options.set_between_bytes_timeout(Some(nanos));

    allowance.take()?;
    let future = outgoing_handler::handle(outgoing, Some(options)).map_err(|e| map_error(e, expired()))?;
    // A request the host refuses has its body closed under it: the answer says why, so it is
    // awaited before a failed write is reported.
    let written = write_body(body, req.body, expired());

    let response = loop {
        if let Some(result) = future.get() {
            break result
                .map_err(|_| OutboundError::Network("response already taken".into()))?
                .map_err(|e| map_error(e, expired()))?;
        }
        if !wait(|| future.subscribe(), deadline).await {
            return Err(written.err().unwrap_or_else(expired));
        }
    };
    written?;
    received(response, deadline, expired()).await
}

/// The answer read whole by `deadline`, else `expired`.
async fn received(
    response: IncomingResponse,
    deadline: Instant,
    expired: OutboundError,
) -> Result<Response, OutboundError> {
    let status = response.status();
    let headers = response
        .headers()
        .entries()
        .into_iter()
        .map(|(n, v)| (n, String::from_utf8_lossy(&v).into_owned()))
        .collect();
    let incoming = response.consume().map_err(|_| OutboundError::Network("no body".into()))?;
    let body = read_body(incoming, deadline).await?.ok_or(expired)?;
    Ok(Response { status, headers, body })
}

/// `req` as the host's outgoing request, and its body to write once the host has it.
fn outgoing(req: &Request<'_>) -> Result<(OutgoingRequest, OutgoingBody), OutboundError> {
    let (scheme, authority, path) = split_url(req.url)?;
    let mut fields: Vec<(String, Vec<u8>)> =
        req.headers.iter().map(|(n, v)| (n.as_str().to_owned(), v.as_bytes().to_vec())).collect();
    if !req.body.is_empty() {
        fields.push((CONTENT_LENGTH.as_str().to_owned(), req.body.len().to_string().into_bytes()));
    }
    let headers =
        Fields::from_list(&fields).map_err(|e| OutboundError::InvalidUrl(format!("bad header: {e:?}")))?;
    let outgoing = OutgoingRequest::new(headers);
    let _ = outgoing.set_method(&method(&req.method));
    let _ = outgoing.set_scheme(Some(&scheme));
    outgoing.set_authority(Some(authority)).map_err(|_| OutboundError::InvalidUrl(urls::redact(req.url)))?;
    outgoing.set_path_with_query(Some(path)).map_err(|_| OutboundError::InvalidUrl(urls::redact(req.url)))?;
    let body = outgoing.body().map_err(|_| OutboundError::Network("body unavailable".into()))?;
    Ok((outgoing, body))
}

fn method(m: &http::Method) -> Method {
    match *m {
        http::Method::GET => Method::Get,
        http::Method::POST => Method::Post,
        http::Method::PUT => Method::Put,
        http::Method::DELETE => Method::Delete,
        _ => Method::Other(m.as_str().to_owned()),
    }
}

fn split_url(url: &str) -> Result<(Scheme, &str, &str), OutboundError> {
    let bad = || OutboundError::InvalidUrl(urls::redact(url));
    let parts = urls::split(url).ok_or_else(bad)?;
    let scheme = match parts.scheme {
        "http" => Scheme::Http,
        "https" => Scheme::Https,
        _ => return Err(bad()),
    };
    let path = parts.path_and_query.split('#').next().unwrap_or_default();
    Ok((scheme, parts.authority, if path.is_empty() { "/" } else { path }))
}

fn write_body(body: OutgoingBody, bytes: &[u8], timed_out: OutboundError) -> Result<(), OutboundError> {
    let failed = |e: StreamError| OutboundError::Network(format!("writing request body: {e:?}"));
    {
        let stream = body.write().map_err(|_| OutboundError::Network("body stream".into()))?;
        for chunk in bytes.chunks(WRITE_CHUNK) {
            stream.blocking_write_and_flush(chunk).map_err(failed)?;
        }
    }
    OutgoingBody::finish(body, None).map_err(|e| map_error(e, timed_out))
}

/// `None` when the deadline passed before the body ended.
async fn read_body(body: IncomingBody, deadline: Instant) -> Result<Option<Vec<u8>>, OutboundError> {
    let mut out = Vec::new();
    {
        let stream = body.stream().map_err(|_| OutboundError::Network("body stream".into()))?;
        loop {
            match stream.read(64 * 1024) {
                Ok(chunk) if chunk.is_empty() => {
                    if !wait(|| stream.subscribe(), deadline).await {
                        return Ok(None);
                    }
                }
                Ok(chunk) => {
                    out.extend_from_slice(&chunk);
                    // Enough to judge any answer: the rest is not read (a 50 MB answer would
                    // hold the run for as long as it takes to come).
                    if out.len() >= MAX_RESPONSE_BYTES {
                        out.truncate(MAX_RESPONSE_BYTES);
                        return Ok(Some(out));
                    }
                }
                Err(StreamError::Closed) => break,
                Err(e) => return Err(OutboundError::Network(format!("reading response body: {e:?}"))),
            }
        }
    }
    IncomingBody::finish(body);
    Ok(Some(out))
}

/// Waits until a fresh subscription is ready (true) or `deadline` passes (false).
///
/// The executor takes ownership of what it polls, so every poll subscribes anew; the tokens
/// cancel the previous poll's subscriptions (and this one's when the wait ends), so no pollable
/// outlives the stream or future it belongs to.
async fn wait(subscribe: impl Fn() -> Pollable, deadline: Instant) -> bool {
    let mut tokens: Vec<CancelOnDropToken> = Vec::new();
    std::future::poll_fn(move |cx| {
        let pollable = subscribe();
        if pollable.ready() {
            return Poll::Ready(true);
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Poll::Ready(false);
        }
        let clock = monotonic_clock::subscribe_duration(left.as_nanos() as u64);
        tokens.clear();
        tokens.push(spin_executor::push_waker_and_get_token(pollable, cx.waker().clone()).into());
        tokens.push(spin_executor::push_waker_and_get_token(clock, cx.waker().clone()).into());
        Poll::Pending
    })
    .await
}

/// `timed_out` is what a timeout reported by the host means for this call.
fn map_error(e: ErrorCode, timed_out: OutboundError) -> OutboundError {
    match e {
        ErrorCode::HttpRequestDenied => OutboundError::Denied("request denied by host".into()),
        ErrorCode::ConnectionTimeout | ErrorCode::ConnectionReadTimeout | ErrorCode::HttpResponseTimeout => {
            timed_out
        }
        ErrorCode::DnsError(d) => OutboundError::Network(format!("DNS error: {:?}", d.rcode)),
        ErrorCode::ConnectionRefused => OutboundError::Network("connection refused".into()),
        ErrorCode::InternalError(Some(why)) => OutboundError::Network(format!("host error: {why}")),
        other => OutboundError::Network(describe(&other).into()),
    }
}

/// The WIT name of the rest of the codes. Their derived `Debug` would say the same with the
/// payload, at the cost of 6 KB of formatting code in the component.
fn describe(e: &ErrorCode) -> &'static str {
    use ErrorCode::*;
    match e {
        DnsTimeout => "DNS timeout",
        DestinationNotFound => "destination not found",
        DestinationUnavailable => "destination unavailable",
        DestinationIpProhibited => "destination IP prohibited",
        DestinationIpUnroutable => "destination IP unroutable",
        ConnectionTerminated => "connection terminated",
        ConnectionWriteTimeout => "connection write timeout",
        ConnectionLimitReached => "connection limit reached",
        TlsProtocolError => "TLS protocol error",
        TlsCertificateError => "TLS certificate error",
        TlsAlertReceived(_) => "TLS alert received",
        HttpRequestLengthRequired => "HTTP request length required",
        HttpRequestBodySize(_) => "HTTP request body size",
        HttpRequestMethodInvalid => "HTTP request method invalid",
        HttpRequestUriInvalid => "HTTP request URI invalid",
        HttpRequestUriTooLong => "HTTP request URI too long",
        HttpResponseIncomplete => "HTTP response incomplete",
        HttpResponseBodySize(_) => "HTTP response body size",
        HttpResponseTransferCoding(_) => "HTTP response transfer coding",
        HttpResponseContentCoding(_) => "HTTP response content coding",
        HttpUpgradeFailed => "HTTP upgrade failed",
        HttpProtocolError => "HTTP protocol error",
        LoopDetected => "loop detected",
        ConfigurationError => "configuration error",
        InternalError(None) => "host error",
        // The header and trailer size limits; the other codes are told apart in `map_error`.
        _ => "HTTP header or trailer size",
    }
}
