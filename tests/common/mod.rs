//! Shared test harness: a fresh database (migrated) and Redis database per test, the shipped
//! component loaded once into the wasmtime test host (or served by the real `spin up`, see
//! [`spin`]), and fake outside services on 127.0.0.1.
#![allow(dead_code)] // each test binary uses its own part of the harness

pub mod fake;
pub mod graph;
pub mod process;
pub mod seed;
pub mod servers;
pub mod spin;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;

use bytes::Bytes;
use serde_json::Value;
use spin_test_host::manifest::Manifest;
use spin_test_host::{App, Runtime};

pub const SECRET: &str = "test-secret-0123456789abcdefghijklmnop";
pub const KEY: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn runtime() -> &'static Runtime {
    static RUNTIME: OnceLock<Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        let wasm = std::env::var("WHATRACK_WASM")
            .map(PathBuf::from)
            .unwrap_or_else(|_| built_wasm("whatrack_jobs.wasm"));
        Runtime::load(wasm).expect("load the component (scripts/test.sh builds it)")
    })
}

/// A component the scripts built, in cargo's target directory (`CARGO_TARGET_DIR` when set).
pub fn built_wasm(file: &str) -> PathBuf {
    built_wasm_dir().join(file)
}

/// The folder the scripts build the components into; `WHATRACK_WASM_DIR` names another (a build
/// of an earlier commit, to see a test fail on it under `spin up` too).
pub fn built_wasm_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("WHATRACK_WASM_DIR") {
        return PathBuf::from(dir);
    }
    let target =
        std::env::var("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|_| root().join("target"));
    target.join("wasm32-wasip2/release")
}

pub fn manifest() -> Manifest {
    Manifest::load(root().join("spin.toml")).expect("spin.toml")
}

/// The test server's URL without a database name, to name one after it.
pub fn admin_base() -> String {
    let url = admin_url();
    url[..url.rfind('/').expect("a database URL")].to_owned()
}

fn admin_url() -> String {
    std::env::var("TEST_PG_ADMIN_URL").expect("TEST_PG_ADMIN_URL (run the tests with scripts/test.sh)")
}

fn redis_base() -> String {
    std::env::var("TEST_REDIS_URL").expect("TEST_REDIS_URL (run the tests with scripts/test.sh)")
}

/// `scheme://host:port` of a URL, for an `allowed_outbound_hosts` variable.
pub fn host_of(url: &str) -> String {
    let url = url::Url::parse(url).unwrap();
    let port = url.port().map(|p| format!(":{p}")).unwrap_or_default();
    format!("{}://{}{port}", url.scheme(), url.host_str().unwrap())
}

/// A test's own database and Redis database.
/// WhaTrack's own tables as an older WhaTrack has them, before this app's migrations.
pub const WHATRACK_SCHEMA: &str = include_str!("whatrack.sql");

pub struct Env {
    pub database_url: String,
    pub db: tokio_postgres::Client,
    pub redis_url: String,
    pub redis: redis::aio::MultiplexedConnection,
    /// With `WHATRACK_PGBOUNCER=session`, the app reaches Postgres through PgBouncer in session
    /// mode (scripts/test.sh runs the end-to-end suites so once); the test's own client does not.
    pooler: Option<servers::OwnPgBouncer>,
}

static REDIS_DB: AtomicU32 = AtomicU32::new(1);

impl Env {
    pub async fn new() -> Env {
        Self::with_existing_schema("").await
    }

    /// A database that already holds `existing_sql` (e.g. WhaTrack's own tables) before the
    /// migrations run.
    pub async fn with_existing_schema(existing_sql: &str) -> Env {
        let env = Self::unmigrated(existing_sql).await;
        migrate(&env.database_url).await;
        env
    }

    /// A database holding only `existing_sql`: the migrations are the test's to run.
    pub async fn unmigrated(existing_sql: &str) -> Env {
        let name = format!("wt_{}", uuid::Uuid::new_v4().simple());
        let admin = connect(&admin_url()).await;
        admin.batch_execute(&format!("CREATE DATABASE {name}")).await.unwrap();
        let database_url = format!("{}/{name}", admin_base());
        let db = connect(&database_url).await;
        db.batch_execute(existing_sql).await.unwrap();

        let redis_url = format!("{}/{}", redis_base(), REDIS_DB.fetch_add(1, Ordering::SeqCst) % 1000 + 1);
        let mut redis = redis::Client::open(redis_url.as_str())
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap();
        let _: () = redis::cmd("FLUSHDB").query_async(&mut redis).await.unwrap();
        let pooler = match std::env::var("WHATRACK_PGBOUNCER").ok().as_deref() {
            None | Some("") => None,
            Some("session") => {
                Some(servers::OwnPgBouncer::start(&postgres_address(&database_url), "session", 100))
            }
            Some(other) => panic!("WHATRACK_PGBOUNCER={other}: only session mode serves the app"),
        };
        Env { database_url, db, redis_url, redis, pooler }
    }

    /// The variables a working app needs, pointing at this test's services.
    pub fn variables(&self, graph_url: &str) -> HashMap<String, String> {
        let database_url = self.app_database_url();
        HashMap::from([
            ("cron_secret".into(), SECRET.into()),
            ("database_host".into(), host_of(&database_url)),
            ("database_url".into(), database_url),
            ("redis_url".into(), self.redis_url.clone()),
            ("token_encryption_key".into(), KEY.into()),
            ("meta_graph_url".into(), graph_url.into()),
            ("redis_host".into(), host_of(&self.redis_url)),
        ])
    }

    /// The test's database as the app reaches it: directly, or through the suite's pooler.
    pub fn app_database_url(&self) -> String {
        match &self.pooler {
            Some(pooler) => pooler.url_for(&self.database_url),
            None => self.database_url.clone(),
        }
    }

    pub async fn redis_get(&self, key: &str) -> Option<String> {
        let mut r = self.redis.clone();
        redis::cmd("GET").arg(key).query_async(&mut r).await.unwrap()
    }

    pub async fn redis_set(&self, key: &str, value: &str) {
        let mut r = self.redis.clone();
        let _: () = redis::cmd("SET").arg(key).arg(value).query_async(&mut r).await.unwrap();
    }

    /// The one number a `SELECT count(*) ...` answers.
    pub async fn count(&self, sql: &str) -> i64 {
        self.db.query_one(sql, &[]).await.unwrap().get(0)
    }

    /// How many `whatsapp_health` rows the connections of business (WABA) `waba` have.
    pub async fn health_rows_of_business(&self, waba: &str) -> i64 {
        self.db
            .query_one(
                "SELECT count(*) FROM whatsapp_health h JOIN whatsapp_connections c ON c.id = h.\"connectionId\" \
                 WHERE c.\"wabaId\" = $1",
                &[&waba],
            )
            .await
            .unwrap()
            .get(0)
    }

    pub async fn health_status(&self, connection: uuid::Uuid) -> String {
        self.db
            .query_one("SELECT \"healthStatus\" FROM whatsapp_connections WHERE id = $1", &[&connection])
            .await
            .unwrap()
            .get(0)
    }

    pub async fn job_runs(&self) -> Vec<JobRun> {
        self.db
            .query(
                "SELECT id, \"jobType\", trigger, status, summary, error, \"finishedAt\" IS NOT NULL \
                 FROM job_runs ORDER BY \"startedAt\", id",
                &[],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| JobRun {
                id: r.get(0),
                job_type: r.get(1),
                trigger: r.get(2),
                status: r.get(3),
                summary: r.get(4),
                error: r.get(5),
                finished: r.get(6),
            })
            .collect()
    }
}

#[derive(Debug, Clone)]
pub struct JobRun {
    pub id: String,
    pub job_type: String,
    pub trigger: String,
    pub status: String,
    pub summary: Option<Value>,
    pub error: Option<String>,
    pub finished: bool,
}

/// `host:port` of a `postgres://` URL.
pub fn postgres_address(url: &str) -> String {
    host_of(url).trim_start_matches("postgres://").to_owned()
}

pub async fn connect(url: &str) -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(async move {
        let _ = conn.await;
    });
    client
}

/// Applies the migrations as an operator does: `scripts/migrate.sh`, with psql.
pub async fn migrate_url(url: &str) -> std::process::Output {
    let out = tokio::process::Command::new("bash")
        .arg(root().join("scripts/migrate.sh"))
        .arg(url)
        .kill_on_drop(true)
        .output()
        .await
        .unwrap();
    out
}

pub async fn migrate(url: &str) {
    let out = migrate_url(url).await;
    assert!(out.status.success(), "migrations: {}", String::from_utf8_lossy(&out.stderr));
}

/// spin.toml with `entry` taken out of every component's `allowed_outbound_hosts`, as an
/// operator's edited copy might be (for [`app_of`]).
pub fn manifest_without_host(entry: &str) -> String {
    let text = std::fs::read_to_string(root().join("spin.toml")).unwrap();
    let quoted = format!("\"{entry}\"");
    let edited = text.replace(&format!("{quoted}, "), "").replace(&format!(", {quoted}"), "");
    assert_ne!(edited, text, "{entry} is not an allowed host of spin.toml");
    edited
}

/// The app as a test talks to it: loaded into the test host, or served by the real `spin up`
/// when `WHATRACK_RUNTIME` says so ([`spin`]).
pub enum TestApp {
    Host(App),
    Spin(spin::SpinUp),
}

impl TestApp {
    pub async fn request(&self, req: http::Request<Bytes>) -> anyhow::Result<http::Response<Bytes>> {
        match self {
            TestApp::Host(app) => app.request(req).await,
            TestApp::Spin(spin) => spin.request(req).await,
        }
    }

    /// Everything the component has printed so far.
    pub fn output(&self) -> String {
        match self {
            TestApp::Host(app) => app.output(),
            TestApp::Spin(spin) => spin.output(),
        }
    }

    /// The test host's own handle, for what only it can do (call the cron export directly,
    /// measure memory). A test that needs it cannot run under Spin, and says so here.
    pub fn host(&self) -> &App {
        match self {
            TestApp::Host(app) => app,
            TestApp::Spin(_) => {
                panic!("this test drives the test host directly and cannot run under spin up")
            }
        }
    }

    /// Calls the component's `handle-cron-event` (the test host only).
    pub async fn cron(&self, timestamp: u64) -> anyhow::Result<Result<(), String>> {
        self.host().cron(timestamp).await
    }
}

/// `component` of the project's `spin.toml`, with `vars`.
pub async fn app(component: &str, vars: &HashMap<String, String>) -> TestApp {
    app_of(&std::fs::read_to_string(root().join("spin.toml")).expect("spin.toml"), component, vars).await
}

/// `component` of the manifest `text` (a `spin.toml` whose sources are relative to the project).
pub async fn app_of(text: &str, component: &str, vars: &HashMap<String, String>) -> TestApp {
    match spin::cli() {
        None => {
            let path = std::env::temp_dir().join(format!("spin.{}.toml", uuid::Uuid::new_v4().simple()));
            std::fs::write(&path, text).unwrap();
            let manifest = Manifest::load(&path);
            std::fs::remove_file(&path).unwrap();
            TestApp::Host(runtime().app(&manifest.expect("manifest"), component, vars).expect("app"))
        }
        Some(cli) => {
            assert_eq!(component, "jobs-http", "only the HTTP component is served under spin up");
            TestApp::Spin(spin::SpinUp::start(&cli, text, vars, false).await.expect("spin up"))
        }
    }
}

/// `deploy/spin-command.toml` with its sources relative to the project, as `app_of` takes them.
pub fn command_manifest() -> String {
    std::fs::read_to_string(root().join("deploy/spin-command.toml"))
        .expect("deploy/spin-command.toml")
        .replace("source = \"../target/", "source = \"target/")
}

/// One run of the command app (`deploy/spin-command.toml`) with `vars`, until it exits: under
/// `spin up` with the command trigger plugin, or through the test host's `wasi:cli/run`. An app
/// Spin would not start (a required variable unset) is a failed run, Spin's reason on stderr.
pub async fn run_command(vars: &HashMap<String, String>) -> spin_test_host::CommandRun {
    let text = command_manifest();
    match spin::cli() {
        Some(cli) => spin::run_command(&cli, &text, vars).await.expect("spin up of the command app"),
        None => {
            let path = std::env::temp_dir().join(format!("spin.{}.toml", uuid::Uuid::new_v4().simple()));
            std::fs::write(&path, &text).unwrap();
            let manifest = Manifest::load(&path).expect("the command manifest");
            std::fs::remove_file(&path).unwrap();
            match runtime().app(&manifest, "job", vars) {
                Ok(app) => app.run_command().await.expect("wasi:cli/run"),
                Err(e) => spin_test_host::CommandRun {
                    succeeded: false,
                    stdout: String::new(),
                    stderr: format!("{e:#}"),
                },
            }
        }
    }
}

/// Both cron components of the project's `spin.toml` with their schedules running: under
/// `spin up`, the real cron trigger fires each every [`spin::EVERY_SECONDS`]; in the test host,
/// each tick of [`Schedules::run_until`] calls both cron exports once, as one tick of each
/// schedule would.
pub enum Schedules {
    Host { components: Vec<App>, failures: std::sync::Mutex<Vec<String>> },
    Spin(spin::SpinUp),
}

impl Schedules {
    pub async fn start(vars: &HashMap<String, String>) -> Self {
        match spin::cli() {
            None => Schedules::Host {
                components: ["cron-health-check", "cron-webhook-retry"].map(|c| host_app(c, vars)).into(),
                failures: Default::default(),
            },
            Some(cli) => {
                let manifest = std::fs::read_to_string(root().join("spin.toml")).expect("spin.toml");
                Schedules::Spin(spin::SpinUp::start(&cli, &manifest, vars, true).await.expect("spin up"))
            }
        }
    }

    /// Lets the schedules tick until `done` says so; false when it has not after `limit`.
    pub async fn run_until<F: std::future::Future<Output = bool>>(
        &self,
        limit: std::time::Duration,
        mut done: impl FnMut() -> F,
    ) -> bool {
        let until = std::time::Instant::now() + limit;
        while std::time::Instant::now() < until {
            match self {
                Schedules::Host { components, failures } => {
                    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap();
                    for component in components {
                        if let Err(failure) = component.cron(now.as_secs()).await.expect("cron call") {
                            failures.lock().unwrap().push(failure);
                        }
                    }
                }
                Schedules::Spin(_) => tokio::time::sleep(std::time::Duration::from_millis(500)).await,
            }
            if done().await {
                return true;
            }
        }
        false
    }

    /// What the cron trigger was told of failed runs: the errors the cron export returned, or
    /// the cron plugin's lines on Spin's stderr (`ERROR trigger_cron: Component <id> failed:
    /// Error::Other("...")`, in the 0.3 and the 0.5 line alike).
    pub fn failures(&self) -> String {
        match self {
            Schedules::Host { failures, .. } => failures.lock().unwrap().join("\n"),
            Schedules::Spin(spin) => spin
                .errors()
                .lines()
                .filter(|line| line.contains("trigger_cron: Component") && line.contains(" failed: "))
                .collect::<Vec<_>>()
                .join("\n"),
        }
    }

    /// Everything the components printed.
    pub fn output(&self) -> String {
        match self {
            Schedules::Host { components, .. } => components.iter().map(App::output).collect(),
            Schedules::Spin(spin) => spin.output(),
        }
    }
}

/// `component` loaded into the test host, whatever `WHATRACK_RUNTIME` says.
pub fn host_app(component: &str, vars: &HashMap<String, String>) -> App {
    runtime().app(&manifest(), component, vars).expect("app")
}

/// What the component answered a request.
pub struct AppReply {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub json: Value,
    /// The body as text, for the routes that do not answer JSON.
    pub text: String,
}

pub async fn call(app: &TestApp, method: &str, path: &str, headers: &[(&str, &str)]) -> AppReply {
    call_with_body(app, method, path, headers, "").await
}

pub async fn call_with_body(
    app: &TestApp,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> AppReply {
    let mut req = http::Request::builder().method(method).uri(path);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let body = Bytes::copy_from_slice(body.as_bytes());
    let resp = app.request(req.body(body).unwrap()).await.expect("component answered");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let json = serde_json::from_slice(resp.body()).unwrap_or(Value::Null);
    let text = String::from_utf8_lossy(resp.body()).into_owned();
    AppReply { status, headers, json, text }
}

/// `POST /api/v1/jobs/webhook-retry/redrive` with `body`, authenticated.
pub async fn redrive(app: &TestApp, body: &str) -> AppReply {
    call_with_body(app, "POST", "/api/v1/jobs/webhook-retry/redrive", &[("x-cron-secret", SECRET)], body)
        .await
}

pub async fn post_health(app: &TestApp) -> AppReply {
    call(app, "POST", "/api/v1/jobs/whatsapp-health-check", &[("x-cron-secret", SECRET)]).await
}
