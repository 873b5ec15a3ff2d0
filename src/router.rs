//! The HTTP entry point (SPEC section 3): a route table, the secret check, then one small
//! function per route. Errors become status codes here and nowhere else.

use anyhow::Context;
use http::header::{HeaderName, HeaderValue, ALLOW, AUTHORIZATION, CONTENT_LENGTH};
use http::{Method, StatusCode};
use serde_json::json;
use spin_sdk::http::IncomingRequest;
use spin_sdk::http_component;

use crate::api::{self, Response};
use crate::auth::{self, Presented};
use crate::config::{Config, ConfigError, Secrets, SpinVariables, StatusConfig};
use crate::console::{self, metrics, page::Asset};
use crate::crypto;
use crate::db::Db;
use crate::front_door;
use crate::jobs::webhook_retry::policy::Rules;
use crate::jobs::webhook_retry::queue::{Queue, Redrive};
use crate::jobs::JobType;
use crate::log::Logger;
use crate::runner::{self, overview, pauses, RunError, Trigger};

const JOBS: &str = "/api/v1/jobs";
/// A redrive body: 64 KB hold about 1,500 ids.
const MAX_REDRIVE_BODY: usize = 64 * 1024;

const META_WEBHOOK: &str = "/api/v1/whatsapp/webhook";
const METRICS: &str = "/api/v1/metrics";

const X_CRON_SECRET: HeaderName = HeaderName::from_static("x-cron-secret");

const GET: &[Method] = &[Method::GET];
const POST: &[Method] = &[Method::POST];
const GET_OR_POST: &[Method] = &[Method::GET, Method::POST];

#[derive(Clone, Copy)]
enum Route {
    /// `GET` (Meta's handshake) and `POST` (a webhook) `/api/v1/whatsapp/webhook`, the front
    /// door: Meta's signature is its authentication, not the secret.
    MetaWebhook,
    /// `GET /api/v1/jobs`
    Overview,
    /// `GET` (status) and `POST` (run) `/api/v1/jobs/<job>`
    Job(JobType),
    /// `GET /api/v1/jobs/<job>/run`: runs the job, for schedulers that can only GET
    Run(JobType),
    /// `GET /api/v1/jobs/<job>/runs`
    Runs(JobType),
    /// `POST /api/v1/jobs/webhook-retry/redrive`
    Redrive,
    /// `GET /api/v1/metrics`: Prometheus' scrape (Bearer, as Prometheus sends it)
    Metrics,
    /// `GET /api/v1/jobs/ui` and its script and style: the dashboard, which holds no data, so
    /// served without the secret
    Page(Asset),
    /// `GET /api/v1/jobs/console`: the figures the dashboard shows beyond the overview and runs
    Console,
    /// `POST /api/v1/jobs/<job>/pause` and `/resume`
    Pause(JobType),
    Resume(JobType),
}

impl Route {
    fn parse(path: &str) -> Option<Self> {
        match path.trim_end_matches('/') {
            META_WEBHOOK => return Some(Route::MetaWebhook),
            METRICS => return Some(Route::Metrics),
            _ => {}
        }
        let rest = path.trim_end_matches('/').strip_prefix(JOBS)?;
        if rest.is_empty() {
            return Some(Route::Overview);
        }
        let rest = rest.strip_prefix('/')?;
        let (job, tail) = rest.split_once('/').map_or((rest, None), |(j, t)| (j, Some(t)));
        match job {
            "ui" => return Asset::parse(tail).map(Route::Page),
            "console" if tail.is_none() => return Some(Route::Console),
            _ => {}
        }
        let job = JobType::parse(job)?;
        match tail {
            None => Some(Route::Job(job)),
            Some("run") => Some(Route::Run(job)),
            Some("runs") => Some(Route::Runs(job)),
            Some("redrive") if job == JobType::WebhookRetry => Some(Route::Redrive),
            Some("pause") => Some(Route::Pause(job)),
            Some("resume") => Some(Route::Resume(job)),
            Some(_) => None,
        }
    }

    fn methods(self) -> &'static [Method] {
        match self {
            Route::Job(_) | Route::MetaWebhook => GET_OR_POST,
            Route::Redrive | Route::Pause(_) | Route::Resume(_) => POST,
            Route::Overview
            | Route::Run(_)
            | Route::Runs(_)
            | Route::Metrics
            | Route::Page(_)
            | Route::Console => GET,
        }
    }

    /// Whether `?secret=` counts: on the status and run GETs only, for monitors and schedulers
    /// that cannot send a header. A query string ends up in proxy logs, so nowhere else.
    fn takes_query_secret(self, method: &Method) -> bool {
        matches!(self, Route::Job(_) | Route::Run(_)) && *method == Method::GET
    }

    /// The log tag of what this route does.
    fn log_name(self) -> &'static str {
        match self {
            Route::Job(job) | Route::Run(job) | Route::Runs(job) | Route::Pause(job) | Route::Resume(job) => {
                job.log_name()
            }
            Route::Redrive => JobType::WebhookRetry.log_name(),
            Route::Overview | Route::Metrics | Route::Page(_) | Route::Console => "JobsOverview",
            Route::MetaWebhook => "WebhookFrontDoor",
        }
    }
}

/// What the router reads of a request, copied out of it. Headers keep every value they came
/// with: a secret header sent twice is refused, whichever of the two is right.
///
/// The headers are a copy, not the request's `fields`: that resource is a child of the request,
/// and Spin's host traps the instance ("resource has children") when the request is consumed or
/// dropped while a child lives.
struct Incoming {
    method: Method,
    path: String,
    query: String,
    headers: Vec<(String, Vec<u8>)>,
}

impl Incoming {
    fn read(req: &IncomingRequest) -> Self {
        let path_with_query = req.path_with_query().unwrap_or_default();
        let (path, query) = path_with_query.split_once('?').unwrap_or((&path_with_query, ""));
        Self {
            method: req.method().into(),
            path: path.to_owned(),
            query: query.to_owned(),
            // The `fields` handle is a temporary, dropped at the end of this statement.
            headers: req.headers().entries(),
        }
    }

    fn values(&self, name: &HeaderName) -> Vec<Vec<u8>> {
        let name = name.as_str();
        self.headers.iter().filter(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.clone()).collect()
    }
}

#[http_component]
async fn handle(req: IncomingRequest) -> Response {
    let incoming = Incoming::read(&req);
    let Some(route) = Route::parse(&incoming.path) else {
        return api::failure(StatusCode::NOT_FOUND, "Not found");
    };
    if !route.methods().contains(&incoming.method) {
        return method_not_allowed(route);
    }
    // The front door answers Meta, whose signature is its authentication, and the page's files
    // hold no data; every other route wants the secret first.
    match route {
        Route::MetaWebhook => return front_door(&incoming, req).await,
        Route::Page(asset) => return asset.response(),
        _ => {}
    }
    if let Err(refused) = authenticate(&incoming, route) {
        return refused;
    }
    // Monitors poll the status; it reads only the variables it needs.
    if let (Route::Job(job), &Method::GET) = (route, &incoming.method) {
        return match StatusConfig::load(job.has_queue()) {
            Ok(config) => status(&config, job),
            Err(e) => config_error(route, e),
        };
    }
    let config = match Config::load() {
        Ok(config) => config,
        Err(e) => return config_error(route, e),
    };
    match route {
        Route::Overview => jobs_overview(&config),
        Route::Metrics => match metrics::render(&config) {
            Ok(text) => api::respond(StatusCode::OK, metrics::CONTENT_TYPE, text),
            Err(e) => run_error(e),
        },
        Route::Console => match console::estate(&config) {
            Ok(estate) => api::success(StatusCode::OK, estate),
            Err(e) => run_error(e),
        },
        Route::Runs(job) => recent_runs(&config, job, &incoming.query),
        Route::Redrive => match read_body(req).await {
            Ok(body) => redrive(&config, &body),
            Err(e) => api::failure(StatusCode::BAD_REQUEST, &format!("{e:#}")),
        },
        Route::Pause(job) => pause(&config, job, true),
        Route::Resume(job) => pause(&config, job, false),
        // A paused job runs only when a POST insists.
        Route::Job(job) => {
            run(&config, job, query_param(&incoming.query, "force").as_deref() == Some("1")).await
        }
        Route::Run(job) => run(&config, job, false).await,
        Route::MetaWebhook | Route::Page(_) => unreachable!("answered before authentication"),
    }
}

/// Checks the secret before anything else is read, so a stranger only ever sees 401.
fn authenticate(req: &Incoming, route: Route) -> Result<(), Response> {
    let secrets = Secrets::from_source(&SpinVariables).map_err(|e| config_error(route, e))?;
    let unauthorized = || api::failure(StatusCode::UNAUTHORIZED, "Unauthorized");
    let queried: Vec<Vec<u8>> = if route.takes_query_secret(&req.method) {
        query_values(&req.query, "secret").into_iter().map(String::into_bytes).collect()
    } else {
        Vec::new()
    };
    let (x_cron_secret, authorization) = (req.values(&X_CRON_SECRET), req.values(&AUTHORIZATION));
    let (Ok(x_cron_secret), Ok(authorization), Ok(query_secret)) =
        (auth::only_value(&x_cron_secret), auth::only_value(&authorization), auth::only_value(&queried))
    else {
        return Err(unauthorized());
    };
    let presented = Presented { x_cron_secret, authorization, query_secret };
    if !auth::is_authorized(&presented, &secrets.accepted()) {
        return Err(unauthorized());
    }
    Ok(())
}

/// Meta's handshake and webhooks (see `front_door`).
async fn front_door(incoming: &Incoming, req: IncomingRequest) -> Response {
    let log = Logger::new(Route::MetaWebhook.log_name());
    let config = match Config::load() {
        Ok(config) => config,
        Err(e) => return config_error(Route::MetaWebhook, e),
    };
    if incoming.method == Method::GET {
        let query: Vec<(String, String)> = form_urlencoded::parse(incoming.query.as_bytes())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        return match front_door::handshake(&config, &query) {
            Some(challenge) => api::respond(StatusCode::OK, "text/plain", challenge.to_owned()),
            None => api::failure(StatusCode::FORBIDDEN, "Forbidden"),
        };
    }
    let declared = auth::only_value(&incoming.values(&CONTENT_LENGTH))
        .ok()
        .flatten()
        .and_then(|l| l.trim().parse::<usize>().ok());
    if declared.is_some_and(|n| n > config.webhook_max_body_bytes) {
        return api::failure(StatusCode::PAYLOAD_TOO_LARGE, "Payload too large");
    }
    let body = match read_body(req).await {
        Ok(body) => body,
        Err(e) => return api::failure(StatusCode::BAD_REQUEST, &format!("{e:#}")),
    };
    let signatures = incoming.values(&crypto::SIGNATURE_HEADER);
    let signature = auth::only_value(&signatures).ok().flatten();
    match front_door::receive(&config, &body, signature, &log).await {
        Ok(_) => api::success(StatusCode::OK, api::Stored {}),
        Err(e @ front_door::Refused::TooLarge) => api::failure(StatusCode::PAYLOAD_TOO_LARGE, &e.to_string()),
        Err(e @ front_door::Refused::BadSignature) => {
            log.warn("webhook refused: missing or wrong signature", json!({}));
            api::failure(StatusCode::UNAUTHORIZED, &e.to_string())
        }
        Err(e @ front_door::Refused::NotJson) => api::failure(StatusCode::BAD_REQUEST, &e.to_string()),
        Err(e) => {
            log.error("webhook not stored", json!({ "error": e.to_string() }));
            api::failure(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string())
        }
    }
}

async fn run(config: &Config, job: JobType, force: bool) -> Response {
    match runner::run_job(job, Trigger::Http, config, force).await {
        // 200 all the same: a scheduler calling a paused job must not raise an alarm.
        Ok(done) => api::success(StatusCode::OK, api::RunDone::of(job, &done)),
        Err(e) => run_error(e),
    }
}

/// Pauses (`paused`) or resumes the job.
fn pause(config: &Config, job: JobType, paused: bool) -> Response {
    let log = Logger::new(job.log_name());
    let result = Db::open(&config.database_url).and_then(|db| match paused {
        true => pauses::pause(&db, job.as_str()).map(Some),
        false => pauses::resume(&db, job.as_str()).map(|_| None),
    });
    match result {
        Ok(since) => {
            log.info(if paused { "job paused" } else { "job resumed" }, json!({ "pausedSince": since }));
            let state = api::PauseState { job_type: job.as_str(), paused, paused_since: since.as_deref() };
            api::success(StatusCode::OK, state)
        }
        Err(e) => {
            log.error("pause or resume failed", json!({ "error": e.to_string() }));
            api::failure(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string())
        }
    }
}

fn status(config: &StatusConfig, job: JobType) -> Response {
    match job.status(config) {
        Ok(status) => api::success(StatusCode::OK, status),
        Err(e) => run_error(e.into()),
    }
}

fn jobs_overview(config: &Config) -> Response {
    match overview::overview(config) {
        Ok(jobs) => {
            let code =
                if jobs.iter().any(|j| j.overdue) { StatusCode::SERVICE_UNAVAILABLE } else { StatusCode::OK };
            api::success(code, api::Overview { jobs })
        }
        Err(e) => run_error(e),
    }
}

fn recent_runs(config: &Config, job: JobType, query: &str) -> Response {
    let limit = match query_param(query, "limit") {
        None => overview::DEFAULT_RUNS_LIMIT,
        Some(l) => match l.parse() {
            Ok(n) if overview::RUNS_LIMITS.contains(&n) => n,
            _ => {
                let range = &overview::RUNS_LIMITS;
                let error = format!("limit must be a whole number from {} to {}", range.start(), range.end());
                return api::failure(StatusCode::BAD_REQUEST, &error);
            }
        },
    };
    match overview::recent_runs(config, job, limit) {
        Ok(runs) => api::success(StatusCode::OK, api::Runs { job_type: job.as_str(), runs }),
        Err(e) => run_error(e),
    }
}

/// `{"ids":[...]}`, `{"dead":true}` or `{"deadSince":...}` (see [`Redrive`]).
fn redrive(config: &Config, body: &[u8]) -> Response {
    if body.len() > MAX_REDRIVE_BODY {
        let error = format!("Body too large: at most {} KB", MAX_REDRIVE_BODY / 1024);
        return api::failure(StatusCode::PAYLOAD_TOO_LARGE, &error);
    }
    let Some(which) = Redrive::from_json(body) else {
        return api::failure(
            StatusCode::BAD_REQUEST,
            "Body must be one of {\"ids\":[\"<id>\", ...]}, {\"dead\":true} or \
             {\"deadSince\":\"<RFC 3339>\", \"deadUntil\":\"<RFC 3339, optional>\", \"limit\":<1-100000, optional>}",
        );
    };
    let log = Logger::new(JobType::WebhookRetry.log_name());
    let rules = Rules::of(config);
    match Db::open(&config.database_url).and_then(|db| Queue::new(&db, rules).redrive(&which)) {
        Ok(redriven) => {
            log.info("dead-lettered webhooks redriven", json!({ "redriven": redriven }));
            api::success(StatusCode::OK, api::Redriven { redriven })
        }
        // An id that is not of the log's key type (e.g. not a uuid).
        Err(e) if e.is_about_the_data() => api::failure(StatusCode::BAD_REQUEST, &format!("ids: {e}")),
        Err(e) => {
            log.error("redrive failed", json!({ "error": e.to_string() }));
            api::failure(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string())
        }
    }
}

fn query_values(query: &str, name: &str) -> Vec<String> {
    form_urlencoded::parse(query.as_bytes()).filter(|(k, _)| k == name).map(|(_, v)| v.into_owned()).collect()
}

fn query_param(query: &str, name: &str) -> Option<String> {
    query_values(query, name).into_iter().next()
}

async fn read_body(req: IncomingRequest) -> anyhow::Result<Vec<u8>> {
    req.into_body().await.context("reading the body")
}

fn method_not_allowed(route: Route) -> Response {
    let allow = route.methods().iter().map(Method::as_str).collect::<Vec<_>>().join(", ");
    let mut response = api::failure(StatusCode::METHOD_NOT_ALLOWED, "Method not allowed");
    if let Ok(allow) = HeaderValue::from_str(&allow) {
        response.headers_mut().insert(ALLOW, allow);
    }
    response
}

fn run_error(e: RunError) -> Response {
    let code =
        if e.is_contention() { StatusCode::TOO_MANY_REQUESTS } else { StatusCode::INTERNAL_SERVER_ERROR };
    api::failure(code, &e.to_string())
}

fn config_error(route: Route, e: ConfigError) -> Response {
    Logger::new(route.log_name()).error("configuration error", json!({ "error": e.to_string() }));
    api::failure(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string())
}
