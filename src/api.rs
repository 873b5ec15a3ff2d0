//! The contract's JSON bodies (SPEC section 3), one type per response shape. Every body is an
//! object whose `success` says which of the two envelopes it is: [`Success`] around a route's
//! own fields, or [`Failure`] with the error.

use http::header::{HeaderValue, CONTENT_TYPE};
use http::StatusCode;
use serde::Serialize;
use serde_json::Value;

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

/// What every route answers; the SDK writes it out.
pub type Response = http::Response<String>;

/// A response of `content_type` (a constant of ours).
pub fn respond(status: StatusCode, content_type: &'static str, body: String) -> Response {
    let mut response = Response::new(body);
    *response.status_mut() = status;
    response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

pub fn success(status: StatusCode, fields: impl Serialize) -> Response {
    json(status, &Success { success: true, fields })
}

pub fn failure(status: StatusCode, error: &str) -> Response {
    json(status, &Failure { success: false, error: &urls::redact(error) })
}

fn json(status: StatusCode, body: &impl Serialize) -> Response {
    // Serialising these types cannot fail: they hold only strings, numbers and JSON values.
    respond(status, "application/json", serde_json::to_string(body).unwrap_or_default())
}
