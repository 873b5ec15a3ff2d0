//! The contract's JSON bodies (SPEC section 3), one type per response shape. Every body is an
//! object whose `success` says which of the two envelopes it is: [`Success`] around a route's
//! own fields, or [`Failure`] with the error.

use std::io::Write;

use serde::Serialize;
use serde_json::Value;
use spin_sdk::http::{Fields, OutgoingResponse, ResponseOutparam};

use crate::runner::job_runs::RunRecord;
use crate::runner::overview::JobState;
use crate::urls;

/// `{"success":true, ...fields}`.
#[derive(Serialize)]
pub struct Success<T> {
    success: bool,
    #[serde(flatten)]
    fields: T,
}

/// `{"success":false,"error":"..."}`.
#[derive(Serialize)]
pub struct Failure<'a> {
    success: bool,
    error: &'a str,
}

/// A run that finished (`POST /api/v1/jobs/<job>`).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RunDone<'a> {
    pub job_id: &'a str,
    pub message: &'static str,
    pub summary: &'a Value,
    /// Only on a paused job's call, which ran nothing.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub paused: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub paused_since: Option<&'a str>,
}

/// A job paused or resumed (`POST /api/v1/jobs/<job>/pause`, `/resume`).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PauseState<'a> {
    pub job_type: &'static str,
    pub paused: bool,
    pub paused_since: Option<&'a str>,
}

/// A webhook the front door stored (or had stored before).
#[derive(Serialize)]
pub struct Stored {}

#[derive(Serialize)]
pub struct Redriven {
    pub redriven: u64,
}

#[derive(Serialize)]
pub struct Overview {
    pub jobs: Vec<JobState>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Runs {
    pub job_type: &'static str,
    pub runs: Vec<RunRecord>,
}

/// A whole response, written out by [`Response::send`]. Our own type rather than the SDK's
/// `Response`, whose conversion pulls `anyhow` and a backtrace printer into the component.
pub struct Response {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub body: String,
}

impl Response {
    pub fn new(status: u16, content_type: &str, body: String) -> Self {
        Self { status, headers: vec![("content-type", content_type.to_owned())], body }
    }

    pub fn with_header(mut self, name: &'static str, value: String) -> Self {
        self.headers.push((name, value));
        self
    }

    pub async fn send(self, out: ResponseOutparam) {
        let fields: Vec<(String, Vec<u8>)> =
            self.headers.into_iter().map(|(name, value)| (name.to_owned(), value.into_bytes())).collect();
        let response = match Fields::from_list(&fields) {
            Ok(headers) => OutgoingResponse::new(headers),
            // Only a header the host refuses lands here; the answer goes without its headers.
            Err(_) => OutgoingResponse::new(Fields::new()),
        };
        // Our codes are all valid HTTP statuses.
        let _ = response.set_status_code(self.status);
        if let Err(e) = out.set_with_body(response, self.body.into_bytes()).await {
            let _ = writeln!(std::io::stderr(), "could not send the response: {e}");
        }
    }
}

/// The status codes the contract uses, by name.
pub struct StatusCode;

impl StatusCode {
    pub const OK: u16 = 200;
    pub const BAD_REQUEST: u16 = 400;
    pub const UNAUTHORIZED: u16 = 401;
    pub const FORBIDDEN: u16 = 403;
    pub const NOT_FOUND: u16 = 404;
    pub const METHOD_NOT_ALLOWED: u16 = 405;
    pub const PAYLOAD_TOO_LARGE: u16 = 413;
    pub const TOO_MANY_REQUESTS: u16 = 429;
    pub const INTERNAL_SERVER_ERROR: u16 = 500;
    pub const SERVICE_UNAVAILABLE: u16 = 503;
}

pub fn success(status: u16, fields: impl Serialize) -> Response {
    json(status, &Success { success: true, fields })
}

pub fn failure(status: u16, error: &str) -> Response {
    json(status, &Failure { success: false, error: &urls::redact(error) })
}

fn json(status: u16, body: &impl Serialize) -> Response {
    // Serialising these types cannot fail: they hold only strings, numbers and JSON values.
    Response::new(status, "application/json", serde_json::to_string(body).unwrap_or_default())
}
