//! The HTTP entry point: routes, authentication, and the contract's JSON (SPEC section 3).
//!
//! Thin on purpose: it reads the secrets, checks the caller, loads the configuration and hands
//! over to the runner; errors become status codes here and nowhere else.

use serde_json::{json, Value};
use spin_sdk::http::{Method, Request, Response};
use spin_sdk::http_component;

use crate::auth::{self, Presented};
use crate::config::{Config, ConfigError, Secrets, SpinVariables};
use crate::log::Logger;
use crate::runner::{self, JobType, RunError, Trigger};

const JOBS_PREFIX: &str = "/api/v1/jobs/";

#[http_component]
async fn handle(req: Request) -> Response {
    let path = req.path().trim_end_matches('/');
    let Some(job) = path.strip_prefix(JOBS_PREFIX).and_then(JobType::parse) else {
        return reply(404, json!({ "success": false, "error": "Not found" }));
    };
    let method = req.method().clone();
    if !matches!(method, Method::Get | Method::Post) {
        let mut resp = reply(405, json!({ "success": false, "error": "Method not allowed" }));
        resp.set_header("allow", "GET, POST");
        return resp;
    }

    let secrets = match Secrets::from_source(&SpinVariables) {
        Ok(s) => s,
        Err(e) => return config_error(job, e),
    };
    // The query parameter is honoured on the status routes only: a POST that starts work must
    // not carry its secret in a URL that proxies log.
    let query_secret = (method == Method::Get).then(|| query_param(req.query(), "secret")).flatten();
    let presented = Presented {
        x_cron_secret: header(&req, "x-cron-secret"),
        authorization: header(&req, "authorization"),
        query_secret: query_secret.as_deref(),
    };
    if !auth::is_authorized(&presented, &secrets.accepted()) {
        return reply(401, json!({ "success": false, "error": "Unauthorized" }));
    }
    let config = match Config::load() {
        Ok(c) => c,
        Err(e) => return config_error(job, e),
    };

    if method == Method::Get {
        return status(job, &config);
    }
    match runner::run_job(job, Trigger::Http, &config).await {
        Ok(done) => reply(
            200,
            json!({
                "success": true,
                "jobId": done.job_id,
                "message": job.done_message(),
                "summary": done.summary,
            }),
        ),
        Err(e) => run_error(e),
    }
}

fn header<'a>(req: &'a Request, name: &str) -> Option<&'a str> {
    req.header(name).and_then(|v| v.as_str())
}

fn query_param(query: &str, name: &str) -> Option<String> {
    form_urlencoded::parse(query.as_bytes()).find(|(k, _)| k == name).map(|(_, v)| v.into_owned())
}

fn status(job: JobType, config: &Config) -> Response {
    match runner::is_running(job, config) {
        Ok(running) => reply(200, json!({ "success": true, "isRunning": running, "jobType": job.as_str() })),
        Err(e) => run_error(e.into()),
    }
}

fn run_error(e: RunError) -> Response {
    let status = match e {
        RunError::Busy { .. } => 429,
        _ => 500,
    };
    reply(status, json!({ "success": false, "error": e.to_string() }))
}

fn config_error(job: JobType, e: ConfigError) -> Response {
    Logger::new(job.log_name()).error("configuration error", json!({ "error": e.to_string() }));
    reply(500, json!({ "success": false, "error": e.to_string() }))
}

fn reply(status: u16, body: Value) -> Response {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(body.to_string())
        .build()
}
