//! The HTTP entry point (SPEC section 3): a route table, the secret check, then one small
//! function per route. Errors become status codes here and nowhere else.

use http::header::{HeaderValue, ALLOW};
use http::{Method, StatusCode};
use serde_json::json;
use spin_sdk::http::Request;
use spin_sdk::http_component;

use crate::api::{self, Response};
use crate::auth::{self, Presented};
use crate::config::{Config, ConfigError, Secrets, SpinVariables};
use crate::db::Db;
use crate::jobs::webhook_retry::policy::Rules;
use crate::jobs::webhook_retry::queue::{Queue, Redrive};
use crate::jobs::JobType;
use crate::log::Logger;
use crate::runner::{self, overview, RunError, Trigger};

const JOBS: &str = "/api/v1/jobs";
/// A redrive body: 64 KB hold about 1,500 ids.
const MAX_REDRIVE_BODY: usize = 64 * 1024;

#[derive(Clone, Copy)]
enum Route {
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
}

impl Route {
    fn parse(path: &str) -> Option<Self> {
        let rest = path.trim_end_matches('/').strip_prefix(JOBS)?;
        if rest.is_empty() {
            return Some(Route::Overview);
        }
        let rest = rest.strip_prefix('/')?;
        let (job, tail) = rest.split_once('/').map_or((rest, None), |(j, t)| (j, Some(t)));
        let job = JobType::parse(job)?;
        match tail {
            None => Some(Route::Job(job)),
            Some("run") => Some(Route::Run(job)),
            Some("runs") => Some(Route::Runs(job)),
            Some("redrive") if job == JobType::WebhookRetry => Some(Route::Redrive),
            Some(_) => None,
        }
    }

    fn methods(self) -> &'static [Method] {
        match self {
            Route::Job(_) => &[Method::GET, Method::POST],
            Route::Redrive => &[Method::POST],
            Route::Overview | Route::Run(_) | Route::Runs(_) => &[Method::GET],
        }
    }

    /// Whether `?secret=` counts: on the status and run GETs only, for monitors and schedulers
    /// that cannot send a header. A query string ends up in proxy logs, so nowhere else.
    fn takes_query_secret(self, method: &Method) -> bool {
        matches!(self, Route::Job(_) | Route::Run(_)) && method == Method::GET
    }

    /// The log tag of what this route does.
    fn log_name(self) -> &'static str {
        match self {
            Route::Job(job) | Route::Run(job) | Route::Runs(job) => job.log_name(),
            Route::Redrive => JobType::WebhookRetry.log_name(),
            Route::Overview => "JobsOverview",
        }
    }
}

#[http_component]
async fn handle(req: Request) -> Response {
    let Some(route) = Route::parse(req.path()) else {
        return api::failure(StatusCode::NOT_FOUND, "Not found");
    };
    let method = Method::from(req.method().clone());
    if !route.methods().contains(&method) {
        return method_not_allowed(route);
    }
    let config = match authenticate(&req, &method, route) {
        Ok(config) => config,
        Err(refused) => return refused,
    };
    match (route, method) {
        (Route::Overview, _) => jobs_overview(&config),
        (Route::Runs(job), _) => recent_runs(&config, job, req.query()),
        (Route::Redrive, _) => redrive(&config, req.body()),
        (Route::Job(job), Method::GET) => status(&config, job),
        (Route::Job(job) | Route::Run(job), _) => run(&config, job).await,
    }
}

/// Checks the secret before anything else, so a stranger only ever sees 401 whatever else is
/// misconfigured; then loads the configuration once for the route.
fn authenticate(req: &Request, method: &Method, route: Route) -> Result<Config, Response> {
    let secrets = Secrets::from_source(&SpinVariables).map_err(|e| config_error(route, e))?;
    let query_secret = route.takes_query_secret(method).then(|| query_param(req.query(), "secret")).flatten();
    let presented = Presented {
        x_cron_secret: header(req, "x-cron-secret"),
        authorization: header(req, http::header::AUTHORIZATION.as_str()),
        query_secret: query_secret.as_deref(),
    };
    if !auth::is_authorized(&presented, &secrets.accepted()) {
        return Err(api::failure(StatusCode::UNAUTHORIZED, "Unauthorized"));
    }
    Config::load().map_err(|e| config_error(route, e))
}

async fn run(config: &Config, job: JobType) -> Response {
    match runner::run_job(job, Trigger::Http, config).await {
        Ok(done) => api::success(
            StatusCode::OK,
            api::RunDone { job_id: &done.job_id, message: job.done_message(), summary: &done.summary },
        ),
        Err(e) => run_error(e),
    }
}

fn status(config: &Config, job: JobType) -> Response {
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

/// `{"ids":[...]}` or `{"dead":true}`.
fn redrive(config: &Config, body: &[u8]) -> Response {
    if body.len() > MAX_REDRIVE_BODY {
        let error = format!("Body too large: at most {} KB", MAX_REDRIVE_BODY / 1024);
        return api::failure(StatusCode::PAYLOAD_TOO_LARGE, &error);
    }
    let Some(which) = serde_json::from_slice(body).ok().as_ref().and_then(parse_redrive) else {
        return api::failure(
            StatusCode::BAD_REQUEST,
            "Body must be {\"ids\":[\"<id>\", ...]} or {\"dead\":true}, not both",
        );
    };
    let log = Logger::new(JobType::WebhookRetry.log_name());
    let rules = Rules::of(config);
    match Db::open(&config.database_url).and_then(|db| Queue::open(&db, rules)?.redrive(&which)) {
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

fn parse_redrive(v: &serde_json::Value) -> Option<Redrive> {
    match (v.get("dead"), v.get("ids")) {
        (Some(serde_json::Value::Bool(true)), None) => Some(Redrive::All),
        (None, Some(ids)) => ids
            .as_array()?
            .iter()
            .map(|id| id.as_str().map(str::to_owned))
            .collect::<Option<Vec<_>>>()
            .map(Redrive::Ids),
        _ => None,
    }
}

fn header<'a>(req: &'a Request, name: &str) -> Option<&'a str> {
    req.header(name).and_then(|v| v.as_str())
}

fn query_param(query: &str, name: &str) -> Option<String> {
    form_urlencoded::parse(query.as_bytes()).find(|(k, _)| k == name).map(|(_, v)| v.into_owned())
}

fn method_not_allowed(route: Route) -> Response {
    let mut resp = api::failure(StatusCode::METHOD_NOT_ALLOWED, "Method not allowed");
    let allow = route.methods().iter().map(Method::as_str).collect::<Vec<_>>().join(", ");
    if let Ok(allow) = HeaderValue::from_str(&allow) {
        resp.headers_mut().insert(ALLOW, allow);
    }
    resp
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
