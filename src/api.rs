//! The contract's JSON bodies (SPEC section 3), one type per response shape. Every body is an
//! object whose `success` says which of the two envelopes it is: [`Success`] around a route's
//! own fields, or [`Failure`] with the error.

use http::header::{HeaderValue, CONTENT_TYPE};
use http::StatusCode;
use serde::Serialize;
use serde_json::Value;

use crate::jobs::JobType;
use crate::runner::job_runs::RunRecord;
use crate::runner::overview::JobState;
use crate::runner::Completed;
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

impl<'a> RunDone<'a> {
    /// What a door answers for a run that ended well: completed, paused, or skipped by the job.
    pub fn of(job: JobType, done: &'a Completed) -> Self {
        RunDone {
            job_id: &done.job_id,
            message: match (&done.paused_since, done.skipped) {
                (Some(_), _) => PAUSED_MESSAGE,
                (None, Some(why)) => why,
                (None, None) => job.done_message(),
            },
            summary: &done.summary,
            paused: done.paused_since.is_some(),
            paused_since: done.paused_since.as_deref(),
        }
    }
}

const PAUSED_MESSAGE: &str = "Job is paused: nothing ran (POST with ?force=1 runs it anyway)";

/// A job paused or resumed (`POST /api/v1/jobs/<job>/pause`, `/resume`).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PauseState<'a> {
    pub job_type: &'static str,
    pub paused: bool,
    pub paused_since: Option<&'a str>,
}

/// One organization's webhook deliveries, paused or not.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TenantPauseState {
    pub job_type: &'static str,
    pub organization_id: String,
    pub paused: bool,
    pub paused_since: Option<String>,
}

impl TenantPauseState {
    pub fn new(organization_id: String, paused_since: Option<String>) -> Self {
        Self {
            job_type: crate::jobs::JobType::WebhookRetry.as_str(),
            organization_id,
            paused: paused_since.is_some(),
            paused_since,
        }
    }
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
    respond(status, "application/json", success_body(fields))
}

pub fn failure(status: StatusCode, error: &str) -> Response {
    respond(status, "application/json", failure_body(error))
}

/// [`Success`] as text: a response's body, or the command door's result line.
pub fn success_body(fields: impl Serialize) -> String {
    // Serialising these types cannot fail: they hold only strings, numbers and JSON values.
    serde_json::to_string(&Success { success: true, fields }).unwrap_or_default()
}

/// [`Failure`] as text, its error free of any URL's password.
pub fn failure_body(error: &str) -> String {
    serde_json::to_string(&Failure { success: false, error: &urls::redact(error) }).unwrap_or_default()
}
