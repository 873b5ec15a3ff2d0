//! The HTTP door (SPEC section 3): the route table's row for the request ([`routes`]), the
//! secret check, then one small function per route, each calling the runner, the console or
//! the front door. Errors become status codes here and nowhere else.

use anyhow::Context;
use http::header::{HeaderName, HeaderValue, ALLOW, AUTHORIZATION, CONTENT_LENGTH};
use http::{Method, StatusCode};
use serde_json::json;
use spin_sdk::http::{IncomingRequest, IntoResponse, OutgoingResponse, ResponseOutparam};
use spin_sdk::http_component;

use crate::api::{self, Response};
use crate::auth::{self, Presented};
use crate::config::{Config, ConfigError, Secrets, SpinVariables};
use crate::console::{self, metrics, page};
use crate::crypto;
use crate::edges::Edges;
use crate::front_door;
use crate::jobs::{JobType, StatusSettings};
use crate::log::Logger;
use crate::routes::{self, Access, NoRoute, Route};
use crate::runner::{self, overview, pauses, Redrive, Rules, RunError, Tenant, Trigger};

/// A redrive body: 64 KB hold about 1,500 ids.
const MAX_REDRIVE_BODY: usize = 64 * 1024;

const X_CRON_SECRET: HeaderName = HeaderName::from_static("x-cron-secret");

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

/// The answer's way out, used once: most routes answer when they are done; the front door answers
/// Meta as soon as the webhook is stored, then forwards it (Spin lets a handler go on after its
/// answer, and keeps the instance until it returns).
struct Reply(Option<ResponseOutparam>);

impl Reply {
    /// Sends `response` unless an answer went already; the body is complete when this returns.
    async fn send(&mut self, response: Response) {
        let Some(out) = self.0.take() else { return };
        let mut response = response.into_response();
        let body = std::mem::take(response.body_mut());
        let sent = match OutgoingResponse::try_from(response) {
            Ok(outgoing) => out.set_with_body(outgoing, body).await.map_err(anyhow::Error::from),
            Err(e) => Err(e),
        };
        if let Err(e) = sent {
            Logger::new("Router").error("could not send the answer", json!({ "error": format!("{e:#}") }));
        }
    }
}

#[http_component]
async fn handle(req: IncomingRequest, out: ResponseOutparam) {
    let mut reply = Reply(Some(out));
    let response = respond(req, &mut reply).await;
    reply.send(response).await;
}

/// The request's answer, unless the route sent it already through `reply`.
async fn respond(req: IncomingRequest, reply: &mut Reply) -> Response {
    let incoming = Incoming::read(&req);
    let resolved = match routes::resolve(&incoming.method, &incoming.path) {
        Ok(resolved) => resolved,
        Err(NoRoute::NotFound) => return api::failure(StatusCode::NOT_FOUND, "Not found"),
        Err(NoRoute::MethodNotAllowed(allow)) => return method_not_allowed(&allow),
    };
    let route = resolved.route;
    // The front door answers Meta, whose signature is its authentication, and the page's files
    // hold no data; every other route wants the secret first.
    if resolved.access != Access::Open {
        if let Err(refused) = authenticate(&incoming, route, resolved.access) {
            return refused;
        }
    }
    // Each route reads the settings it needs, and no more: a wrong one answers 500 and names it.
    match route {
        Route::Page(asset) => page::response(asset),
        // Monitors poll the status: it reads the fewest variables.
        Route::Status(job) => match StatusSettings::load(job) {
            Ok(settings) => status(&settings, job),
            Err(e) => config_error(route, e),
        },
        Route::Handshake => match front_door::Settings::load() {
            Ok(settings) => handshake(&settings, &incoming),
            Err(e) => config_error(route, e),
        },
        // A paused job runs only when a POST insists.
        Route::Run(job) | Route::RunByGet(job) => match runner::Settings::load(job) {
            Ok(settings) => {
                let force =
                    route == Route::Run(job) && query_param(&incoming.query, "force").as_deref() == Some("1");
                run(&settings, job, force).await
            }
            Err(e) => config_error(route, e),
        },
        Route::Webhook => match (Config::load(), front_door::Settings::load()) {
            (Ok(config), Ok(settings)) => webhook(&settings, &config, &incoming, req, reply).await,
            (Err(e), _) | (_, Err(e)) => config_error(route, e),
        },
        _ => match Config::load() {
            Ok(config) => answer(route, &config, &incoming, req).await,
            Err(e) => config_error(route, e),
        },
    }
}

/// The routes that read the shared settings (the stores), and their own.
async fn answer(route: Route, config: &Config, incoming: &Incoming, req: IncomingRequest) -> Response {
    // The request's stores, each opened when first used.
    let edges = &Edges::new(Some(&config.database_url), &config.redis_url);
    let unreadable = |e| config_error(route, e);
    match route {
        Route::Overview => overview::Settings::load().map_or_else(unreadable, |s| jobs_overview(edges, &s)),
        Route::Metrics => match (overview::Settings::load(), console::Settings::load()) {
            (Ok(overdue), Ok(console)) => match metrics::render(edges, &overdue, &console) {
                Ok(text) => api::respond(StatusCode::OK, metrics::CONTENT_TYPE, text),
                Err(e) => run_error(e),
            },
            (Err(e), _) | (_, Err(e)) => unreadable(e),
        },
        Route::Console => match console::Settings::load().map(|s| console::estate(edges, &s)) {
            Ok(Ok(estate)) => api::success(StatusCode::OK, estate),
            Ok(Err(e)) => run_error(e),
            Err(e) => unreadable(e),
        },
        Route::Runs(job) => recent_runs(edges, job, &incoming.query),
        Route::Redrive => match (Rules::from_source(&SpinVariables), read_body(req).await) {
            (Ok(rules), Ok(body)) => redrive(edges, rules, &body),
            (Err(e), _) => unreadable(e),
            (_, Err(e)) => api::failure(StatusCode::BAD_REQUEST, &format!("{e:#}")),
        },
        Route::Pause(job) | Route::Resume(job) => {
            let paused = matches!(route, Route::Pause(_));
            match read_body(req).await {
                Ok(body) if body.is_empty() => pause(edges, job, paused),
                Ok(body) => match (job, Tenant::from_json(&body)) {
                    (JobType::WebhookRetry, Some(organization)) => pause_tenant(edges, &organization, paused),
                    _ => api::failure(StatusCode::BAD_REQUEST, ONE_ORGANIZATION),
                },
                Err(e) => api::failure(StatusCode::BAD_REQUEST, &format!("{e:#}")),
            }
        }
        Route::Page(_)
        | Route::Status(_)
        | Route::Handshake
        | Route::Webhook
        | Route::Run(_)
        | Route::RunByGet(_) => {
            unreachable!("answered above, with their own settings")
        }
    }
}

/// Checks the secret before anything else is read, so a stranger only ever sees 401.
fn authenticate(req: &Incoming, route: Route, access: Access) -> Result<(), Response> {
    let secrets = Secrets::from_source(&SpinVariables).map_err(|e| config_error(route, e))?;
    let unauthorized = || api::failure(StatusCode::UNAUTHORIZED, "Unauthorized");
    let queried: Vec<Vec<u8>> = if access == Access::SecretOrQuery {
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

/// Meta's subscription handshake (see `front_door`).
fn handshake(settings: &front_door::Settings, incoming: &Incoming) -> Response {
    let query: Vec<(String, String)> = form_urlencoded::parse(incoming.query.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    match front_door::handshake(settings, &query) {
        Some(challenge) => api::respond(StatusCode::OK, "text/plain", challenge.to_owned()),
        None => api::failure(StatusCode::FORBIDDEN, "Forbidden"),
    }
}

/// A webhook from Meta (see `front_door`): stored, answered, then forwarded. The store's
/// connection is closed before the answer: the forward may wait on the processor for seconds,
/// and Spin's hosts bound the Postgres connections an app holds at once.
async fn webhook(
    settings: &front_door::Settings,
    config: &Config,
    incoming: &Incoming,
    req: IncomingRequest,
    reply: &mut Reply,
) -> Response {
    let log = Logger::new(Route::Webhook.log_name());
    let declared = auth::only_value(&incoming.values(&CONTENT_LENGTH))
        .ok()
        .flatten()
        .and_then(|l| l.trim().parse::<usize>().ok());
    if declared.is_some_and(|n| n > settings.max_body_bytes) {
        return api::failure(StatusCode::PAYLOAD_TOO_LARGE, "Payload too large");
    }
    let body = match read_body(req).await {
        Ok(body) => body,
        Err(e) => return api::failure(StatusCode::BAD_REQUEST, &format!("{e:#}")),
    };
    let signatures = incoming.values(&crypto::SIGNATURE_HEADER);
    let signature = auth::only_value(&signatures).ok().flatten();
    let stores = || Edges::new(Some(&config.database_url), &config.redis_url);
    // A statement of its own: the store's connection goes back before the forward takes one.
    let received = front_door::receive(settings, &stores(), &body, signature, &log);
    match received {
        Ok(received) => {
            let stored = api::success(StatusCode::OK, api::Stored {});
            if let front_door::Received::Stored { id } = received {
                reply.send(stored.clone()).await;
                front_door::forward(settings, config, &stores(), &id, &body, &log).await;
            }
            stored
        }
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

async fn run(settings: &runner::Settings, job: JobType, force: bool) -> Response {
    let edges = &Edges::new(Some(&settings.config.database_url), &settings.config.redis_url);
    match runner::run_job(settings, Trigger::Http, edges, force).await {
        // 200 all the same: a scheduler calling a paused job must not raise an alarm.
        Ok(done) => api::success(StatusCode::OK, api::RunDone::of(job, &done)),
        Err(e) => run_error(e),
    }
}

/// Pauses (`paused`) or resumes the job.
fn pause(edges: &Edges, job: JobType, paused: bool) -> Response {
    let log = Logger::new(job.log_name());
    match pauses::set(edges, job, paused) {
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

/// What a pause or resume with a body must say.
const ONE_ORGANIZATION: &str = "A body names one organization whose webhook deliveries to pause or resume: \
{\"organizationId\":\"<id>\"} (the webhook retry only); without a body, the whole job";

fn pause_tenant(edges: &Edges, organization: &str, paused: bool) -> Response {
    let log = Logger::new(JobType::WebhookRetry.log_name());
    match pauses::set_tenant(edges, organization, paused) {
        Ok((organization, since)) => {
            let what =
                if paused { "organization's deliveries paused" } else { "organization's deliveries resumed" };
            log.info(what, json!({ "organizationId": organization, "pausedSince": since }));
            api::success(StatusCode::OK, api::TenantPauseState::new(organization, since))
        }
        Err(e) if e.is_about_the_data() => {
            api::failure(StatusCode::BAD_REQUEST, &format!("organizationId: {e}"))
        }
        Err(e) => {
            log.error("pause or resume failed", json!({ "error": e.to_string() }));
            api::failure(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string())
        }
    }
}

fn status(settings: &StatusSettings, job: JobType) -> Response {
    match job.status(settings, &Edges::new(settings.database_url.as_deref(), &settings.redis_url)) {
        Ok(status) => api::success(StatusCode::OK, status),
        Err(e) => run_error(e.into()),
    }
}

fn jobs_overview(edges: &Edges, settings: &overview::Settings) -> Response {
    match overview::states(edges, settings) {
        Ok(jobs) => {
            let code =
                if jobs.iter().any(|j| j.overdue) { StatusCode::SERVICE_UNAVAILABLE } else { StatusCode::OK };
            api::success(code, api::Overview { jobs })
        }
        Err(e) => run_error(e),
    }
}

fn recent_runs(edges: &Edges, job: JobType, query: &str) -> Response {
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
    match overview::recent_runs(edges, job, limit) {
        Ok(runs) => api::success(StatusCode::OK, api::Runs { job_type: job.as_str(), runs }),
        Err(e) => run_error(e),
    }
}

/// `{"ids":[...]}`, `{"dead":true}` or `{"deadSince":...}` (see [`Redrive`]).
fn redrive(edges: &Edges, rules: Rules, body: &[u8]) -> Response {
    if body.len() > MAX_REDRIVE_BODY {
        let error = format!("Body too large: at most {} KB", MAX_REDRIVE_BODY / 1024);
        return api::failure(StatusCode::PAYLOAD_TOO_LARGE, &error);
    }
    let Some(which) = Redrive::from_json(body) else {
        return api::failure(
            StatusCode::BAD_REQUEST,
            "Body must be one of {\"ids\":[\"<id>\", ...]}, {\"dead\":true}, \
             {\"deadSince\":\"<RFC 3339>\", \"deadUntil\":\"<RFC 3339, optional>\", \"limit\":<1-100000, optional>} \
             or {\"organizationId\":\"<id>\"}",
        );
    };
    let log = Logger::new(Route::Redrive.log_name());
    match runner::redrive(edges, rules, &which) {
        Ok(redriven) => {
            log.info("dead-lettered webhooks redriven", json!({ "redriven": redriven }));
            api::success(StatusCode::OK, api::Redriven { redriven })
        }
        // An id that is not of the log's key type (e.g. not a uuid).
        Err(e) if e.is_about_the_data() => {
            let what = if matches!(which, Redrive::Organization(_)) { "organizationId" } else { "ids" };
            api::failure(StatusCode::BAD_REQUEST, &format!("{what}: {e}"))
        }
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

fn method_not_allowed(allow: &[Method]) -> Response {
    let allow = allow.iter().map(Method::as_str).collect::<Vec<_>>().join(", ");
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
