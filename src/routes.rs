//! The route table (SPEC section 3, and the routes later issues added), as data: one row per
//! method and path, saying what the request asks for and who may ask it. [`resolve`] finds a
//! request's row, or says why there is none (404, or 405 with the methods the path allows). The
//! HTTP door (`router.rs`) answers each [`Route`]; this module is plain data, unit-tested
//! natively.

use http::Method;

use crate::jobs::JobType;

/// What a request asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// Meta's subscription handshake (`GET`) on the webhook front door.
    Handshake,
    /// A webhook from Meta (`POST`), stored, then forwarded.
    Webhook,
    /// Every job's state, for monitors.
    Overview,
    Status(JobType),
    /// Runs the job now; a paused job only with `?force=1`.
    Run(JobType),
    /// Runs the job, for schedulers that can only GET.
    RunByGet(JobType),
    Runs(JobType),
    Pause(JobType),
    Resume(JobType),
    Redrive,
    /// Prometheus' scrape.
    Metrics,
    /// The figures the dashboard shows beyond the overview and the runs.
    Console,
    /// One of the dashboard's files.
    Page(Asset),
}

/// The dashboard's files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Asset {
    Html,
    Script,
    Style,
}

/// A row's route: the same whatever the path, or the one of the job the path names.
#[derive(Clone, Copy)]
pub enum Target {
    Fixed(Route),
    ForJob(fn(JobType) -> Route),
}

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone: Meta's signature is the front door's authentication, and the page's files hold
    /// no data.
    Open,
    /// The shared secret, in `x-cron-secret` or `Authorization: Bearer`.
    Secret,
    /// The same, or `?secret=`, for monitors and schedulers that cannot send a header (a query
    /// string ends up in proxy logs, so nowhere else).
    SecretOrQuery,
}

/// One route: `path`, in which `{job}` stands for a job's name.
pub struct Row {
    pub method: Method,
    pub path: &'static str,
    pub target: Target,
    pub access: Access,
}

const fn fixed(method: Method, path: &'static str, route: Route, access: Access) -> Row {
    Row { method, path, target: Target::Fixed(route), access }
}

const fn for_job(method: Method, path: &'static str, route: fn(JobType) -> Route, access: Access) -> Row {
    Row { method, path, target: Target::ForJob(route), access }
}

/// Every route. A path without `{job}` is matched before one with it.
pub const TABLE: &[Row] = &[
    fixed(Method::GET, "/api/v1/whatsapp/webhook", Route::Handshake, Access::Open),
    fixed(Method::POST, "/api/v1/whatsapp/webhook", Route::Webhook, Access::Open),
    fixed(Method::GET, "/api/v1/metrics", Route::Metrics, Access::Secret),
    fixed(Method::GET, "/api/v1/jobs", Route::Overview, Access::Secret),
    fixed(Method::GET, "/api/v1/jobs/console", Route::Console, Access::Secret),
    fixed(Method::GET, "/api/v1/jobs/ui", Route::Page(Asset::Html), Access::Open),
    fixed(Method::GET, "/api/v1/jobs/ui/app.js", Route::Page(Asset::Script), Access::Open),
    fixed(Method::GET, "/api/v1/jobs/ui/app.css", Route::Page(Asset::Style), Access::Open),
    fixed(Method::POST, "/api/v1/jobs/webhook-retry/redrive", Route::Redrive, Access::Secret),
    for_job(Method::GET, "/api/v1/jobs/{job}", Route::Status, Access::SecretOrQuery),
    for_job(Method::POST, "/api/v1/jobs/{job}", Route::Run, Access::Secret),
    for_job(Method::GET, "/api/v1/jobs/{job}/run", Route::RunByGet, Access::SecretOrQuery),
    for_job(Method::GET, "/api/v1/jobs/{job}/runs", Route::Runs, Access::Secret),
    for_job(Method::POST, "/api/v1/jobs/{job}/pause", Route::Pause, Access::Secret),
    for_job(Method::POST, "/api/v1/jobs/{job}/resume", Route::Resume, Access::Secret),
];

/// A request's route, and who may call it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resolved {
    pub route: Route,
    pub access: Access,
}

impl Route {
    /// The tag of the log lines the route writes: its job's, or the door's.
    pub fn log_name(self) -> &'static str {
        match self {
            Route::Status(job)
            | Route::Run(job)
            | Route::RunByGet(job)
            | Route::Runs(job)
            | Route::Pause(job)
            | Route::Resume(job) => job.log_name(),
            Route::Redrive => JobType::WebhookRetry.log_name(),
            Route::Handshake | Route::Webhook => "WebhookFrontDoor",
            Route::Overview | Route::Metrics | Route::Console | Route::Page(_) => "JobsOverview",
        }
    }
}

/// Why a request has no route.
#[derive(Debug, PartialEq, Eq)]
pub enum NoRoute {
    NotFound,
    /// The path exists with other methods: these, for `Allow`.
    MethodNotAllowed(Vec<Method>),
}

/// The route of `method` on `path` (a trailing `/` is ignored).
pub fn resolve(method: &Method, path: &str) -> Result<Resolved, NoRoute> {
    let path = path.trim_end_matches('/');
    let mut allowed = Vec::new();
    for row in TABLE {
        let route = match (row.target, matches(row.path, path)) {
            (_, None) => continue,
            (Target::Fixed(route), Some(None)) => route,
            (Target::ForJob(route), Some(Some(job))) => route(job),
            // A row whose target does not fit its path: the table's tests refuse it.
            (_, Some(_)) => continue,
        };
        if row.method != *method {
            allowed.push(row.method.clone());
            continue;
        }
        return Ok(Resolved { route, access: row.access });
    }
    match allowed.is_empty() {
        true => Err(NoRoute::NotFound),
        false => Err(NoRoute::MethodNotAllowed(allowed)),
    }
}

/// Whether `path` is the pattern's: `Some(job)` when it is (`Some(None)` for a pattern without
/// `{job}`), `None` when not.
fn matches(pattern: &str, path: &str) -> Option<Option<JobType>> {
    match pattern.split_once("{job}") {
        None => (pattern == path).then_some(None),
        Some((before, after)) => {
            let name = path.strip_prefix(before)?.strip_suffix(after)?;
            // A literal route of the table (the console, the page) is not a job's.
            JobType::parse(name).map(Some)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(method: Method, path: &str) -> Result<Route, NoRoute> {
        resolve(&method, path).map(|r| r.route)
    }

    #[test]
    fn every_row_resolves_to_itself_and_fits_its_path() {
        for row in TABLE {
            assert_eq!(row.path.contains("{job}"), matches!(row.target, Target::ForJob(_)), "{}", row.path);
            for job in JobType::ALL {
                let path = row.path.replace("{job}", job.as_str());
                let resolved = resolve(&row.method, &path).unwrap();
                let expected = match row.target {
                    Target::Fixed(route) => route,
                    Target::ForJob(route) => route(job),
                };
                assert_eq!(
                    (resolved.route, resolved.access),
                    (expected, row.access),
                    "{} {path}",
                    row.method
                );
                assert_eq!(resolve(&row.method, &format!("{path}/")).unwrap(), resolved, "a trailing slash");
            }
        }
    }

    #[test]
    fn job_routes_name_their_job() {
        let (health, retry) = (JobType::HealthCheck, JobType::WebhookRetry);
        assert_eq!(route(Method::POST, "/api/v1/jobs/whatsapp-health-check"), Ok(Route::Run(health)));
        assert_eq!(route(Method::GET, "/api/v1/jobs/whatsapp-health-check"), Ok(Route::Status(health)));
        assert_eq!(route(Method::GET, "/api/v1/jobs/webhook-retry/run"), Ok(Route::RunByGet(retry)));
        assert_eq!(route(Method::POST, "/api/v1/jobs/webhook-retry/redrive"), Ok(Route::Redrive));
        assert_eq!(route(Method::GET, "/api/v1/jobs/ui/app.js"), Ok(Route::Page(Asset::Script)));
        assert_eq!(Route::Pause(retry).log_name(), "WebhookRetryJob");
        assert_eq!(Route::Redrive.log_name(), "WebhookRetryJob");
        assert_eq!(Route::Webhook.log_name(), "WebhookFrontDoor");
    }

    #[test]
    fn unknown_paths_are_404_and_known_paths_name_their_methods() {
        for path in [
            "/",
            "/api/v1",
            "/api/v1/jobs/nope",
            "/api/v1/jobs/whatsapp-health-check/redrive",
            "/api/v1/jobs/webhook-retry/unknown",
            "/api/v1/jobs/ui/other.js",
            "/api/v1/jobs/webhook-retry/run/extra",
            "/api/v1/jobs//run",
        ] {
            assert_eq!(resolve(&Method::GET, path), Err(NoRoute::NotFound), "{path}");
        }
        assert_eq!(
            resolve(&Method::DELETE, "/api/v1/jobs/webhook-retry"),
            Err(NoRoute::MethodNotAllowed(vec![Method::GET, Method::POST]))
        );
        assert_eq!(
            resolve(&Method::GET, "/api/v1/jobs/webhook-retry/redrive"),
            Err(NoRoute::MethodNotAllowed(vec![Method::POST]))
        );
        assert_eq!(
            resolve(&Method::POST, "/api/v1/metrics"),
            Err(NoRoute::MethodNotAllowed(vec![Method::GET]))
        );
    }

    #[test]
    fn only_the_status_and_run_gets_take_the_secret_in_the_query() {
        let rows = |access: Access| -> Vec<String> {
            TABLE.iter().filter(|r| r.access == access).map(|r| format!("{} {}", r.method, r.path)).collect()
        };
        assert_eq!(rows(Access::SecretOrQuery), ["GET /api/v1/jobs/{job}", "GET /api/v1/jobs/{job}/run"]);
        assert_eq!(
            rows(Access::Open),
            [
                "GET /api/v1/whatsapp/webhook",
                "POST /api/v1/whatsapp/webhook",
                "GET /api/v1/jobs/ui",
                "GET /api/v1/jobs/ui/app.js",
                "GET /api/v1/jobs/ui/app.css"
            ]
        );
    }
}
