//! The HTTP entry point: routes, authentication, and the contract's JSON (SPEC section 3).
//!
//! Thin on purpose: it reads the secrets, checks the caller, loads the configuration and hands
//! over to the runner (or, for a redrive, to the webhook retry); errors become status codes here
//! and nowhere else.

use serde_json::{json, Value};
use spin_sdk::http::{Method, Request, Response};
use spin_sdk::http_component;

use crate::auth::{self, Presented};
use crate::config::{Config, ConfigError, Secrets, SpinVariables};
use crate::db::Db;
use crate::log::Logger;
use crate::overview;
use crate::runner::{self, JobType, RunError, Trigger};
use crate::webhook_retry::{self, Redrive};

const JOBS_PREFIX: &str = "/api/v1/jobs/";

#[derive(Clone, Copy)]
enum Route {
    Job(JobType),
    Redrive,
    Overview,
    Runs(JobType),
}

impl Route {
    fn parse(path: &str) -> Option<Self> {
        let path = path.trim_end_matches('/');
        if path == JOBS_PREFIX.trim_end_matches('/') {
            return Some(Route::Overview);
        }
        let rest = path.strip_prefix(JOBS_PREFIX)?;
        let (job, tail) = rest.split_once('/').map_or((rest, None), |(j, t)| (j, Some(t)));
        let job = JobType::parse(job)?;
        match tail {
            None => Some(Route::Job(job)),
            Some("runs") => Some(Route::Runs(job)),
            Some("redrive") if job == JobType::WebhookRetry => Some(Route::Redrive),
            Some(_) => None,
        }
    }

    fn allows(self, method: &Method) -> bool {
        match self {
            Route::Job(_) => matches!(method, Method::Get | Method::Post),
            Route::Redrive => *method == Method::Post,
            Route::Overview | Route::Runs(_) => *method == Method::Get,
        }
    }

    fn allow_header(self) -> &'static str {
        match self {
            Route::Job(_) => "GET, POST",
            Route::Redrive => "POST",
            Route::Overview | Route::Runs(_) => "GET",
        }
    }

    /// The log tag of what this route does.
    fn log_name(self) -> &'static str {
        match self {
            Route::Job(job) | Route::Runs(job) => job.log_name(),
            Route::Redrive => JobType::WebhookRetry.log_name(),
            Route::Overview => "JobsOverview",
        }
    }
}

#[http_component]
async fn handle(req: Request) -> Response {
    let Some(route) = Route::parse(req.path()) else {
        return reply(404, json!({ "success": false, "error": "Not found" }));
    };
    let method = req.method().clone();
    if !route.allows(&method) {
        let mut resp = reply(405, json!({ "success": false, "error": "Method not allowed" }));
        resp.set_header("allow", route.allow_header());
        return resp;
    }
    let log_name = route.log_name();

    let secrets = match Secrets::from_source(&SpinVariables) {
        Ok(s) => s,
        Err(e) => return config_error(log_name, e),
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
        Err(e) => return config_error(log_name, e),
    };

    match (route, method) {
        (Route::Redrive, _) => redrive(&config, req.body()),
        (Route::Overview, _) => match overview::overview(&config) {
            Ok(o) => reply(if o.any_overdue { 503 } else { 200 }, json!({ "success": true, "jobs": o.jobs })),
            Err(e) => run_error(e),
        },
        (Route::Runs(job), _) => {
            let limit = query_param(req.query(), "limit")
                .and_then(|l| l.parse().ok())
                .unwrap_or(overview::DEFAULT_RUNS_LIMIT);
            match overview::recent_runs(&config, job, limit) {
                Ok(runs) => reply(200, json!({ "success": true, "jobType": job.as_str(), "runs": runs })),
                Err(e) => run_error(e),
            }
        }
        (Route::Job(job), Method::Get) => match runner::status(job, &config) {
            Ok(mut fields) => {
                fields.insert("success".into(), json!(true));
                reply(200, Value::Object(fields))
            }
            Err(e) => run_error(e),
        },
        (Route::Job(job), _) => match runner::run_job(job, Trigger::Http, &config).await {
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
        },
    }
}

/// `{"ids":[...]}` or `{"dead":true}`.
fn redrive(config: &Config, body: &[u8]) -> Response {
    let which = match serde_json::from_slice::<Value>(body).ok().as_ref().map(parse_redrive) {
        Some(Some(which)) => which,
        _ => {
            return reply(
                400,
                json!({ "success": false, "error": "Body must be {\"ids\":[\"<id>\", ...]} or {\"dead\":true}" }),
            )
        }
    };
    let log = Logger::new(JobType::WebhookRetry.log_name());
    match Db::open(&config.database_url).and_then(|db| webhook_retry::redrive(&db, &which)) {
        Ok(n) => {
            log.info("dead-lettered webhooks redriven", json!({ "redriven": n }));
            reply(200, json!({ "success": true, "redriven": n }))
        }
        Err(e) => {
            log.error("redrive failed", json!({ "error": e.to_string() }));
            reply(500, json!({ "success": false, "error": e.to_string() }))
        }
    }
}

fn parse_redrive(v: &Value) -> Option<Redrive> {
    if v.get("dead") == Some(&Value::Bool(true)) {
        return Some(Redrive::All);
    }
    let ids = v.get("ids")?.as_array()?;
    ids.iter().map(|id| id.as_str().map(str::to_owned)).collect::<Option<Vec<_>>>().map(Redrive::Ids)
}

fn header<'a>(req: &'a Request, name: &str) -> Option<&'a str> {
    req.header(name).and_then(|v| v.as_str())
}

fn query_param(query: &str, name: &str) -> Option<String> {
    form_urlencoded::parse(query.as_bytes()).find(|(k, _)| k == name).map(|(_, v)| v.into_owned())
}

fn run_error(e: RunError) -> Response {
    let status = match e {
        RunError::Busy { .. } => 429,
        _ => 500,
    };
    reply(status, json!({ "success": false, "error": e.to_string() }))
}

fn config_error(log_name: &'static str, e: ConfigError) -> Response {
    Logger::new(log_name).error("configuration error", json!({ "error": e.to_string() }));
    reply(500, json!({ "success": false, "error": e.to_string() }))
}

fn reply(status: u16, body: Value) -> Response {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(body.to_string())
        .build()
}
