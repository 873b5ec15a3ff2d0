//! The benchmark: `scripts/bench.sh` (method and latest table: docs/BENCHMARKS.md). Timings are
//! printed, never asserted (the machine is shared and noisy); each ratio is measured in one
//! process, one configuration right after the other. `smoke` runs the smallest size in the
//! test suite, checking that the benchmark itself works; `table` is the real thing.

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::fake::{Canned, FakeHttp};
use common::graph::Script;
use common::servers::OwnPostgres;
use common::*;
use serde_json::json;
use spin_test_host::manifest::Manifest;
use spin_test_host::Runtime;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// What one table covers.
struct Sizes {
    connections: &'static [usize],
    latencies_ms: &'static [u64],
    concurrencies: &'static [usize],
    /// Sequential runs above this size are left out: 20,000 connections one call at a time take
    /// over an hour at 100 ms.
    sequential_up_to: usize,
    status_requests: usize,
    /// Also under the real `spin up`, side by side with the test host, where `spin` is on PATH.
    under_spin: bool,
}

const FULL: Sizes = Sizes {
    connections: &[1_000, 20_000],
    latencies_ms: &[20, 100],
    concurrencies: &[1, 16],
    sequential_up_to: 1_000,
    status_requests: 4_000,
    under_spin: true,
};

const SMOKE: Sizes = Sizes {
    connections: &[200, 2_000],
    latencies_ms: &[5],
    concurrencies: &[1, 16],
    sequential_up_to: 200,
    status_requests: 100,
    under_spin: false,
};

#[tokio::test(flavor = "multi_thread")]
#[ignore = "benchmark: scripts/bench.sh"]
async fn table() {
    let sizes = match std::env::var("BENCH_SEQUENTIAL_UP_TO").ok().and_then(|n| n.parse().ok()) {
        Some(n) => Sizes { sequential_up_to: n, ..FULL },
        None => FULL,
    };
    // `BENCH_ONLY=20:16`: the rows of one latency (ms) and one concurrency alone;
    // `BENCH_ONLY=status`: no job, the status route, the size and the cold start.
    let only = std::env::var("BENCH_ONLY").ok();
    let sizes = match only.as_deref().map(|o| (o, o.split_once(':'))) {
        Some((_, Some((l, c)))) => Sizes {
            latencies_ms: Vec::leak(vec![l.parse().expect("BENCH_ONLY latency")]),
            concurrencies: Vec::leak(vec![c.parse().expect("BENCH_ONLY concurrency")]),
            ..sizes
        },
        Some(("status", None)) => Sizes { latencies_ms: &[], ..sizes },
        Some((other, None)) => panic!("BENCH_ONLY={other}: latency:concurrency (20:16), or status"),
        None => sizes,
    };
    // `BENCH_N=5000`: that many items alone.
    let sizes = match std::env::var("BENCH_N").ok().and_then(|n| n.parse().ok()) {
        Some(n) => Sizes { connections: Vec::leak(vec![n]), ..sizes },
        None => sizes,
    };
    let rows = measure(&sizes).await;
    for row in &rows {
        assert_eq!(row.remaining, 0, "{}: work left undone", row.name);
    }
}

/// The benchmark at its smallest, in the test suite: no timing is asserted, but what does not
/// depend on the machine is: all the work done, statements batched, memory flat in N.
#[tokio::test(flavor = "multi_thread")]
async fn smoke() {
    let rows = measure(&SMOKE).await;
    for job in [Job::HealthCheck, Job::WebhookRetry] {
        let runs: Vec<&Row> = rows.iter().filter(|r| r.job == job && r.concurrency == 16).collect();
        let (small, large) = (runs[0], runs[runs.len() - 1]);
        assert_eq!((small.items, large.items), (200, 2_000));
        for row in rows.iter().filter(|r| r.job == job) {
            assert_eq!(row.remaining, 0, "{}: work left undone", row.name);
            assert!(row.statements > 0 && row.peak_memory > 0, "{}: nothing measured", row.name);
        }
        let per_item = large.statements as f64 / large.items as f64;
        assert!(per_item <= 0.1, "{}: {per_item:.3} SQL statements per item", large.name);
        assert!(
            large.peak_memory <= 2 * small.peak_memory,
            "{}: peak memory {} at 2,000 against {} at 200",
            job.name(),
            large.peak_memory,
            small.peak_memory
        );
    }
    // Batched, a request checks 25 connections; in single calls, each costs two.
    for row in rows.iter().filter(|r| r.job != Job::WebhookRetry) {
        let per_item = row.requests as f64 / row.items as f64;
        let most = if row.job == Job::HealthCheck { 0.05 } else { 2.0 };
        assert!(per_item <= most, "{}: {per_item:.3} requests per connection", row.name);
    }
}

/// One line of the jobs' table.
struct Row {
    name: String,
    job: Job,
    concurrency: usize,
    items: usize,
    /// HTTP requests the stand-in received.
    requests: usize,
    remaining: u64,
    statements: u64,
    peak_memory: usize,
}

/// The benchmark's own Postgres, counting statements with `pg_stat_statements`.
struct Bench {
    pg: OwnPostgres,
    db: tokio_postgres::Client,
    redis_url: String,
    _env: Env,
}

impl Bench {
    async fn start() -> Bench {
        let pg =
            OwnPostgres::start("-c shared_preload_libraries=pg_stat_statements -c max_connections=100").await;
        let db = connect(&pg.url("jobs")).await;
        db.batch_execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements").await.unwrap();
        let env = Env::new().await;
        Bench { redis_url: env.redis_url.clone(), pg, db, _env: env }
    }

    fn variables(&self, graph: &str, processor: &str, n: usize, c: usize) -> HashMap<String, String> {
        let database_url = self.pg.url("jobs");
        HashMap::from([
            ("cron_secret".into(), SECRET.into()),
            ("database_host".into(), host_of(&database_url)),
            ("database_url".into(), database_url),
            ("redis_url".into(), self.redis_url.clone()),
            ("redis_host".into(), host_of(&self.redis_url)),
            ("token_encryption_key".into(), KEY.into()),
            ("meta_graph_url".into(), graph.into()),
            ("meta_app_id".into(), "123".into()),
            ("meta_app_secret".into(), "bench-app-secret".into()),
            ("health_check_concurrency".into(), c.to_string()),
            ("webhook_retry_concurrency".into(), c.to_string()),
            ("webhook_retry_batch_size".into(), n.to_string()),
            ("webhook_processor_url".into(), format!("{processor}/hook")),
            ("webhook_processor_host".into(), processor.into()),
        ])
    }

    async fn reset(&self) {
        self.db
            .batch_execute(
                "TRUNCATE whatsapp_health, whatsapp_configs, whatsapp_connections, whatsapp_webhook_logs, \
                 webhook_retry_attempts, job_runs",
            )
            .await
            .unwrap();
    }

    async fn seed_connections(&self, n: usize) {
        let token = common::seed::encrypt("EAAB-bench-token");
        self.db
            .execute(
                "INSERT INTO whatsapp_connections (\"organizationId\", \"wabaId\", \"phoneNumberId\", status, \
                     \"healthStatus\", \"updatedAt\") \
                 SELECT gen_random_uuid(), '2001', (100000 + g)::text, 'active', 'healthy', timezone('UTC', now()) \
                 FROM generate_series(1, $1::int) g",
                &[&(n as i32)],
            )
            .await
            .unwrap();
        self.db
            .execute(
                "INSERT INTO whatsapp_configs (\"organizationId\", \"connectionId\", \"wabaId\", \"accessToken\", \
                     status, \"updatedAt\") \
                 SELECT c.\"organizationId\", c.id, c.\"wabaId\", $1, 'connected', timezone('UTC', now()) \
                 FROM whatsapp_connections c",
                &[&token],
            )
            .await
            .unwrap();
    }

    async fn seed_webhooks(&self, n: usize) {
        let payload = json!({"object":"whatsapp_business_account","entry":[{"id":"2001","changes":[{"field":"messages","value":{"messages":[{"id":"wamid.1","text":{"body":"hi"}}]}}]}]}).to_string();
        self.db
            .execute(
                "INSERT INTO whatsapp_webhook_logs (\"organizationId\", payload, \"eventType\", processed, \
                     \"signatureValid\", \"processingError\", \"retryCount\", \"createdAt\") \
                 SELECT gen_random_uuid(), $1::text::jsonb, 'messages', false, true, 'processing failed', 0, \
                     timezone('UTC', now()) - interval '10 minutes' \
                 FROM generate_series(1, $2::int)",
                &[&payload, &(n as i32)],
            )
            .await
            .unwrap();
        self.db.batch_execute("ANALYZE").await.unwrap();
    }

    /// Runs one job through its cron component in the test host, as the cron trigger does:
    /// wall time, statements counted, peak memory of the instance, and the run's own summary.
    async fn run(
        &self,
        component: &str,
        vars: &HashMap<String, String>,
    ) -> (Duration, u64, Option<usize>, serde_json::Value) {
        let app = host_app(component, vars);
        self.before_run().await;
        app.take_peak_memory();
        let started = Instant::now();
        let result = app.cron(0).await.expect("cron call");
        let took = started.elapsed();
        assert!(result.is_ok(), "{component}: {result:?}\n{}", app.take_output());
        let peak = app.take_peak_memory();
        app.take_output();
        (took, self.statements().await, Some(peak), self.last_summary().await)
    }

    /// Runs one job under the real `spin up`, through its HTTP route with the cron budget (the
    /// cron trigger gives no way to time one run from outside): wall time of the POST, statements
    /// and summary; Spin does not say how much memory an instance took.
    async fn run_under_spin(
        &self,
        cli: &str,
        retry: bool,
        vars: &HashMap<String, String>,
    ) -> (Duration, u64, Option<usize>, serde_json::Value) {
        let mut vars = vars.clone();
        vars.insert("job_time_budget_seconds".into(), "1800".into());
        let manifest = std::fs::read_to_string(root().join("spin.toml")).unwrap();
        let spin = common::spin::SpinUp::start(cli, &manifest, &vars, false).await.expect("spin up");
        let route = if retry { "webhook-retry" } else { "whatsapp-health-check" };
        // A serving `spin up` keeps its Postgres pool between requests; a fresh one opens it on
        // the first (26 ms here). The retry's status reads the queue: the run finds the pool open.
        let warm = common::process::request(
            spin.addr(),
            "GET",
            "/api/v1/jobs/webhook-retry",
            &[("x-cron-secret", SECRET)],
        );
        assert_eq!(warm.await.expect("the status").0, 200, "the retry's status");
        self.before_run().await;
        let started = Instant::now();
        let answer = common::process::request(
            spin.addr(),
            "POST",
            &format!("/api/v1/jobs/{route}"),
            &[("x-cron-secret", SECRET)],
        )
        .await
        .expect("an answer");
        let took = started.elapsed();
        assert_eq!(answer.0, 200, "{route}: {}", answer.1);
        let rss = spin.peak_rss().map(|b| b as usize);
        (took, self.statements().await, rss, self.last_summary().await)
    }

    async fn before_run(&self) {
        self.db.batch_execute("ANALYZE").await.unwrap();
        self.db.query("SELECT pg_stat_statements_reset()", &[]).await.unwrap();
    }

    /// The component's statements since [`Bench::before_run`]: not the benchmark's own, nor what
    /// a host sends to clean a pooled connection before handing it over (the test host's
    /// `DISCARD ALL`; Spin's pool, deadpool's `Clean` recycling, the others of [`HOST_CLEANUP`]).
    async fn statements(&self) -> u64 {
        let n: i64 = self
            .db
            .query_one(
                "SELECT COALESCE(sum(calls), 0)::bigint FROM pg_stat_statements s \
                 JOIN pg_database d ON d.oid = s.dbid \
                 WHERE d.datname = 'jobs' AND s.query NOT ILIKE '%pg_stat_statements%' \
                   AND s.query <> ALL($1) AND s.query <> 'ANALYZE'",
                &[&HOST_CLEANUP.to_vec()],
            )
            .await
            .unwrap()
            .get(0);
        n as u64
    }

    async fn last_summary(&self) -> serde_json::Value {
        let summary: String = self
            .db
            .query_one("SELECT summary::text FROM job_runs ORDER BY \"startedAt\" DESC LIMIT 1", &[])
            .await
            .unwrap()
            .get(0);
        serde_json::from_str(&summary).unwrap()
    }
}

/// What the hosts send on a pooled connection before a component gets it.
const HOST_CLEANUP: [&str; 8] = [
    "DISCARD ALL",
    "CLOSE ALL",
    "SET SESSION AUTHORIZATION DEFAULT",
    "RESET ALL",
    "UNLISTEN *",
    "SELECT pg_advisory_unlock_all()",
    "DISCARD TEMP",
    "DISCARD SEQUENCES",
];

/// A request `C` at a time straight to a stand-in, each on a new connection as the component's
/// are: how fast the stand-in alone can be, to hold the component's figures against.
async fn stand_in_alone(url: &str, request: &str, requests: usize, c: usize) -> Duration {
    let addr = url.trim_start_matches("http://").to_owned();
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let workers: Vec<_> = (0..c)
        .map(|_| {
            let (addr, next, request) = (addr.clone(), next.clone(), request.to_owned());
            tokio::spawn(async move {
                while next.fetch_add(1, Ordering::SeqCst) < requests {
                    let mut stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
                    stream.write_all(request.as_bytes()).await.unwrap();
                    let mut answer = Vec::new();
                    stream.read_to_end(&mut answer).await.unwrap();
                    assert!(answer.starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&answer));
                }
            })
        })
        .collect();
    for w in workers {
        w.await.unwrap();
    }
    started.elapsed()
}

/// One phone number's read, as a single call.
fn single_call(url: &str) -> String {
    let host = url.trim_start_matches("http://");
    format!("GET /v25.0/100001?fields=health_status,status,quality_rating HTTP/1.1\r\nhost: {host}\r\nauthorization: Bearer EAAB-bench-token\r\nconnection: close\r\n\r\n")
}

/// A batch request as the component sends one: 25 connections' `debug_token` and phone reads.
fn batch_of_fifty(url: &str) -> String {
    let host = url.trim_start_matches("http://");
    let operations: Vec<serde_json::Value> = (0..25)
        .flat_map(|i| {
            [
                json!({"method":"GET","relative_url":"debug_token?input_token=EAAB-bench-token"}),
                json!({"method":"GET","relative_url":format!("{}?fields=health_status,status,quality_rating&access_token=EAAB-bench-token", 100001 + i)}),
            ]
        })
        .collect();
    let body = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("batch", &serde_json::Value::Array(operations).to_string())
        .append_pair("include_headers", "false")
        .append_pair("access_token", "123|bench-app-secret")
        .finish();
    format!(
        "POST /v25.0/ HTTP/1.1\r\nhost: {host}\r\ncontent-type: application/x-www-form-urlencoded\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
}

/// The Spin CLI to measure beside the test host: `spin` (3.x) when it is on PATH, or the one
/// `BENCH_SPIN` names (`BENCH_SPIN=spin4`).
fn spin_cli() -> Option<String> {
    let cli = std::env::var("BENCH_SPIN").unwrap_or_else(|_| "spin".to_owned());
    let version = std::process::Command::new(&cli).arg("--version").output().ok()?;
    version.status.success().then_some(cli)
}

/// The status route over real HTTP, driven by `wrk` (2 threads, 8 connections, 10 s, twice
/// each, alternating, best kept): in the test host (its `serve`) and under `spin up`, each beside
/// the minimal component served the same way.
async fn status_route_over_http(bench: &Bench, cli: &str) {
    let vars = bench.variables("http://127.0.0.1:9", "http://127.0.0.1:9", 1, 1);
    let minimal_vars = HashMap::from([
        ("redis_url".to_owned(), vars["redis_url"].clone()),
        ("redis_host".to_owned(), vars["redis_host"].clone()),
    ]);
    let minimal_runtime = Runtime::load(built_wasm("minimal_status.wasm")).unwrap();
    let minimal_manifest_path = root().join("bench/minimal-status/spin.toml");
    let minimal_manifest = Manifest::load(&minimal_manifest_path).unwrap();
    let host_ours = serve_in_test_host(host_app("jobs-http", &vars)).await;
    let host_minimal =
        serve_in_test_host(minimal_runtime.app(&minimal_manifest, "minimal-status", &minimal_vars).unwrap())
            .await;
    let spin_manifest = std::fs::read_to_string(root().join("spin.toml")).unwrap();
    let spin_ours = common::spin::SpinUp::start(cli, &spin_manifest, &vars, false).await.unwrap();
    // Its manifest lives two folders down; the copy names the source as the project's does.
    let minimal_text = std::fs::read_to_string(&minimal_manifest_path)
        .unwrap()
        .replace("source = \"../../target/", "source = \"target/");
    let spin_minimal = common::spin::SpinUp::start(cli, &minimal_text, &minimal_vars, false).await.unwrap();
    let servers = [
        ("test host", "minimal component", host_minimal),
        ("test host", "status route", host_ours),
        ("spin up", "minimal component", spin_minimal.url()),
        ("spin up", "status route", spin_ours.url()),
    ];
    let mut best: HashMap<(&str, &str), Wrk> = HashMap::new();
    for _ in 0..2 {
        for (runtime, route, url) in &servers {
            let measured = wrk(&format!("{url}/api/v1/jobs/whatsapp-health-check")).await;
            let entry = best.entry((runtime, route)).or_insert(measured);
            if measured.rate > entry.rate {
                *entry = measured;
            }
        }
    }
    println!(
        "\n| runtime | route (over HTTP, wrk -t2 -c8) | requests/s | p50 | p99 |\n|---|---|---:|---:|---:|"
    );
    for (runtime, route, _) in &servers {
        let w = best[&(*runtime, *route)];
        println!("| {runtime} | {route} | {:.0} | {:.2} ms | {:.2} ms |", w.rate, w.p50_ms, w.p99_ms);
    }
    for runtime in ["test host", "spin up"] {
        let ratio = best[&(runtime, "status route")].rate / best[&(runtime, "minimal component")].rate;
        println!("{runtime}: status route / minimal over HTTP: {:.0}%", 100.0 * ratio);
    }
}

async fn serve_in_test_host(app: spin_test_host::App) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(spin_test_host::serve(Arc::new(app), listener));
    url
}

#[derive(Clone, Copy)]
struct Wrk {
    rate: f64,
    p50_ms: f64,
    p99_ms: f64,
}

/// `wrk` against `url` with the secret: requests per second and the 50th and 99th percentiles.
async fn wrk(url: &str) -> Wrk {
    wrk_with(&["-H", &format!("x-cron-secret: {SECRET}"), url]).await
}

/// `wrk -t2 -c8 -d10s --latency` with `args`.
async fn wrk_with(args: &[&str]) -> Wrk {
    let url = args.last().copied().unwrap_or_default();
    let out = tokio::process::Command::new("wrk")
        .args(["-t2", "-c8", "-d10s", "--latency"])
        .args(args)
        .output()
        .await
        .expect("wrk (scripts/bench.sh installs it)");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!text.contains("Non-2xx"), "{url}: {text}");
    let field = |prefix: &str| {
        let line =
            text.lines().find(|l| l.trim_start().starts_with(prefix)).unwrap_or_else(|| panic!("{text}"));
        line.split_whitespace().nth(1).unwrap().to_owned()
    };
    let ms = |v: String| {
        let (number, unit) = v.split_at(v.find(|c: char| c.is_ascii_alphabetic()).unwrap());
        let n: f64 = number.parse().unwrap();
        match unit {
            "us" => n / 1e3,
            "ms" => n,
            "s" => n * 1e3,
            other => panic!("unit {other}"),
        }
    };
    Wrk { rate: field("Requests/sec:").parse().unwrap(), p50_ms: ms(field("50%")), p99_ms: ms(field("99%")) }
}

fn mb(bytes: usize) -> String {
    format!("{:.1} MB", bytes as f64 / 1e6)
}

/// What a batch request costs the Graph stand-in beyond its latency, per call in it: Meta runs a
/// batch's calls in parallel, but not for nothing.
/// `BENCH_PER_OPERATION_MS=0`: none (Meta answering a batch at once).
fn per_operation() -> Duration {
    let ms = std::env::var("BENCH_PER_OPERATION_MS").ok().and_then(|ms| ms.parse().ok());
    Duration::from_millis(ms.unwrap_or(2))
}

/// The rows of the jobs' table.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Job {
    /// The health check as shipped: Graph batch requests of 50 calls (25 connections).
    HealthCheck,
    /// The same with `graph_batch_size = 1`, as before batching: at the smallest N only.
    HealthCheckSingle,
    WebhookRetry,
}

impl Job {
    fn name(self) -> &'static str {
        match self {
            Job::HealthCheck => "health check",
            Job::HealthCheckSingle => "health check, single calls",
            Job::WebhookRetry => "webhook retry",
        }
    }
}

async fn measure(sizes: &Sizes) -> Vec<Row> {
    let bench = Bench::start().await;
    let mut rows = Vec::new();
    let spin = sizes.under_spin.then(spin_cli).flatten();
    println!(
        "\nGraph stand-in: a single call answered after L, a batch after L + {:?} a call in it",
        per_operation()
    );
    println!(
        "\n| job | runtime | N | L | C | wall | per s | ideal | ideal/wall | stand-in alone | requests/item | SQL/item | peak memory |"
    );
    println!("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for &latency_ms in sizes.latencies_ms {
        let latency = Duration::from_millis(latency_ms);
        let script = Script::default();
        script.app_token("123", "bench-app-secret").per_operation(per_operation());
        let graph = FakeHttp::start(move |req| {
            let reply = script.answer(req);
            let own = reply.delay;
            reply.after(latency + own)
        })
        .await;
        let processor = FakeHttp::start(move |_| Canned::json(200, json!({})).after(latency)).await;
        for &c in sizes.concurrencies {
            let alone_requests = if c == 1 { 200 } else { 100 * c };
            let single = single_call(&graph.url);
            let alone = stand_in_alone(&graph.url, &single, alone_requests, c).await;
            let alone_ratio =
                (alone_requests as u32 * latency / c as u32).as_secs_f64() / alone.as_secs_f64();
            let batch = batch_of_fifty(&graph.url);
            let alone_batched = stand_in_alone(&graph.url, &batch, alone_requests, c).await;
            let alone_batched_ratio = (alone_requests as u32 * (latency + 50 * per_operation()) / c as u32)
                .as_secs_f64()
                / alone_batched.as_secs_f64();
            for &n in sizes.connections {
                if c == 1 && n > sizes.sequential_up_to {
                    continue;
                }
                // `BENCH_JOB="health check"`: that job's rows alone.
                let only_job = std::env::var("BENCH_JOB").ok();
                let jobs = [Job::HealthCheck, Job::HealthCheckSingle, Job::WebhookRetry]
                    .into_iter()
                    .filter(|job| *job != Job::HealthCheckSingle || n == sizes.connections[0])
                    .filter(move |job| only_job.as_deref().is_none_or(|name| name == job.name()));
                // `BENCH_SPIN_ONLY=1`: the spin up rows alone (a run without the optimised host).
                let host = std::env::var_os("BENCH_SPIN_ONLY").is_none();
                let runtimes = host.then_some(None).into_iter().chain(spin.as_deref().map(Some));
                for (job, runtime) in jobs.flat_map(|job| runtimes.clone().map(move |r| (job, r))) {
                    let mut vars = bench.variables(&graph.url, &processor.url, n, c);
                    if job == Job::HealthCheckSingle {
                        vars.insert("graph_batch_size".into(), "1".into());
                    }
                    bench.reset().await;
                    let (component, stand_in) = match job {
                        Job::WebhookRetry => {
                            bench.seed_webhooks(n).await;
                            ("cron-webhook-retry", &processor)
                        }
                        _ => {
                            bench.seed_connections(n).await;
                            ("cron-health-check", &graph)
                        }
                    };
                    let before = stand_in.requests().len();
                    let (took, statements, peak, summary) = match runtime {
                        None => bench.run(component, &vars).await,
                        Some(cli) => bench.run_under_spin(cli, job == Job::WebhookRetry, &vars).await,
                    };
                    let requests = stand_in.requests()[before..].to_vec();
                    let done =
                        if job == Job::WebhookRetry { &summary["delivered"] } else { &summary["checked"] };
                    assert_eq!(done.as_u64(), Some(n as u64), "{}: {summary}", job.name());
                    // The latency-bound ideal: each request's own answer time, C at a time.
                    let mut calls_in = vec![0u32; requests.len()];
                    for call in common::graph::calls(&requests) {
                        calls_in[call.request] += 1;
                    }
                    let answer_times: Duration = requests
                        .iter()
                        .zip(calls_in)
                        .map(|(r, calls)| {
                            if r.method == "POST" && job != Job::WebhookRetry {
                                latency + per_operation() * calls
                            } else {
                                latency
                            }
                        })
                        .sum();
                    let ideal = answer_times / c as u32;
                    let alone = if job == Job::HealthCheck { alone_batched_ratio } else { alone_ratio };
                    println!(
                        "| {} | {} | {n} | {latency_ms} ms | {c} | {:.2} s | {:.0} | {:.2} s | {:.0}% | {:.0}% | {:.3} | {:.3} | {} |",
                        job.name(),
                        runtime.map_or("test host (cron)".to_owned(), |cli| format!("{cli} up (HTTP)")),
                        took.as_secs_f64(),
                        n as f64 / took.as_secs_f64(),
                        ideal.as_secs_f64(),
                        100.0 * ideal.as_secs_f64() / took.as_secs_f64(),
                        100.0 * alone,
                        requests.len() as f64 / n as f64,
                        statements as f64 / n as f64,
                        match (peak, runtime) {
                            (Some(bytes), Some(_)) => format!("{} (Spin's RSS)", mb(bytes)),
                            (peak, _) => peak.map_or("-".to_owned(), mb),
                        },
                    );
                    rows.push(Row {
                        name: format!(
                            "{} N={n} L={latency_ms} C={c} {}",
                            job.name(),
                            runtime.unwrap_or("test host")
                        ),
                        job,
                        concurrency: c,
                        items: n,
                        requests: requests.len(),
                        remaining: summary["remaining"].as_u64().unwrap_or(u64::MAX),
                        statements,
                        peak_memory: peak.unwrap_or(0),
                    });
                }
            }
        }
    }
    status_route(&bench, sizes.status_requests).await;
    if let Some(cli) = &spin {
        status_route_over_http(&bench, cli).await;
    }
    let size = std::fs::metadata(built_wasm("whatrack_jobs.wasm")).unwrap().len();
    println!("\ncomponent: {size} bytes ({:.1} KB)", size as f64 / 1024.0);
    if let Some(cli) = &spin {
        cold_start(&bench, cli).await;
    }
    rows
}

/// How long `spin up` takes from its start to its first answer (the status route): first with an
/// empty Wasmtime compilation cache, so that Spin compiles the component, then after a restart
/// with that cache warm. Reported, not targeted.
async fn cold_start(bench: &Bench, cli: &str) {
    let vars = bench.variables("http://127.0.0.1:9", "http://127.0.0.1:9", 1, 1);
    let manifest = std::fs::read_to_string(root().join("spin.toml")).unwrap();
    let cache =
        std::env::temp_dir().join(format!("whatrack-wasmtime-cache-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&cache).unwrap();
    let config = cache.join("config.toml");
    std::fs::write(
        &config,
        format!("[cache]\ndirectory = {:?}\n", cache.join("store").display().to_string()),
    )
    .unwrap();
    let config = config.display().to_string();
    for state in ["compilation cache empty", "compilation cache warm, after a restart"] {
        let started = Instant::now();
        let spin = common::spin::SpinUp::start_with_env(
            cli,
            &manifest,
            &vars,
            false,
            &[("WASMTIME_CACHE_FILE", &config)],
        )
        .await
        .expect("spin up");
        let serving = started.elapsed();
        let request = http::Request::get("/api/v1/jobs/whatsapp-health-check")
            .header("x-cron-secret", SECRET)
            .body(bytes::Bytes::new())
            .unwrap();
        let status = spin.request(request).await.expect("the first answer").status();
        assert_eq!(status, 200, "the status route");
        let answered = started.elapsed();
        println!(
            "spin up: first answer {:.2} s after start, serving at {:.2} s ({state})",
            answered.as_secs_f64(),
            serving.as_secs_f64()
        );
    }
    let cached = std::fs::read_dir(cache.join("store")).map(|d| d.count()).unwrap_or(0);
    assert!(cached > 0, "Spin wrote nothing to the compilation cache at {}", cache.display());
}

/// Rounds of the in-process status route measurement, each the minimal component then ours.
const STATUS_ROUNDS: usize = 7;

/// The status route against the floor of any status route (bench/minimal-status: one variable,
/// one Redis connection, one `EXISTS`), 8 requests at a time: the median of pairs measured back
/// to back (the table shows the median pair).
async fn status_route(bench: &Bench, requests: usize) {
    let vars = bench.variables("http://127.0.0.1:9", "http://127.0.0.1:9", 1, 1);
    let ours = Arc::new(TestApp::Host(host_app("jobs-http", &vars)));
    let minimal_wasm = built_wasm("minimal_status.wasm");
    let minimal_runtime =
        Runtime::load(&minimal_wasm).expect("bench/minimal-status (scripts/bench.sh builds it)");
    let minimal_manifest = Manifest::load(root().join("bench/minimal-status/spin.toml")).unwrap();
    let minimal_vars = HashMap::from([
        ("redis_url".to_owned(), vars["redis_url"].clone()),
        ("redis_host".to_owned(), vars["redis_host"].clone()),
    ]);
    let minimal = Arc::new(TestApp::Host(
        minimal_runtime.app(&minimal_manifest, "minimal-status", &minimal_vars).unwrap(),
    ));
    let path = "/api/v1/jobs/whatsapp-health-check";
    // Pairs measured back to back, their ratio's median kept: the machine's speed drifts from
    // minute to minute more than the two routes differ.
    let mut rounds = Vec::new();
    for _ in 0..STATUS_ROUNDS {
        let floor = hammer(&minimal, path, requests, 8).await;
        let route = hammer(&ours, path, requests, 8).await;
        rounds.push((route.0 / floor.0, floor, route));
    }
    rounds.sort_by(|a, b| a.0.total_cmp(&b.0));
    let (ratio, floor, route) = rounds[STATUS_ROUNDS / 2];
    println!("\n| route | requests/s | p50 | p99 |\n|---|---:|---:|---:|");
    for (name, (rate, p50, p99)) in [("minimal component", floor), ("status route", route)] {
        println!(
            "| {name} | {rate:.0} | {:.2} ms | {:.2} ms |",
            p50.as_secs_f64() * 1e3,
            p99.as_secs_f64() * 1e3
        );
    }
    println!(
        "status route / minimal: {:.0}% (median of {STATUS_ROUNDS} pairs; {:.0}% to {:.0}%)",
        100.0 * ratio,
        100.0 * rounds[0].0,
        100.0 * rounds[STATUS_ROUNDS - 1].0
    );
}

/// `requests` GETs, `c` at a time: requests per second, p50, p99.
async fn hammer(
    app: &Arc<TestApp>,
    path: &'static str,
    requests: usize,
    c: usize,
) -> (f64, Duration, Duration) {
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let workers: Vec<_> = (0..c)
        .map(|_| {
            let (app, next) = (app.clone(), next.clone());
            tokio::spawn(async move {
                let mut times = Vec::new();
                while next.fetch_add(1, Ordering::SeqCst) < requests {
                    let t = Instant::now();
                    let r = call(&app, "GET", path, &[("x-cron-secret", SECRET)]).await;
                    assert_eq!(r.status, 200, "{}", r.json);
                    times.push(t.elapsed());
                }
                times
            })
        })
        .collect();
    let mut times = Vec::new();
    for w in workers {
        times.extend(w.await.unwrap());
    }
    let took = started.elapsed();
    app.host().take_output();
    times.sort();
    let at = |q: f64| times[((times.len() as f64 * q) as usize).min(times.len() - 1)];
    (requests as f64 / took.as_secs_f64(), at(0.50), at(0.99))
}

/// The front door's answer time to Meta, p50 and p99 over 300 webhooks each: with a processor
/// that answers at once, and with one that is down (connection refused), side by side.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "benchmark"]
async fn front_door_answer_times() {
    const SECRET_OF_APP: &str = "bench-app-secret";
    let fast = FakeHttp::start(|_| Canned::json(200, json!({}))).await;
    let down = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", l.local_addr().unwrap())
    };
    for (name, processor) in [("processor up", fast.url.clone()), ("processor down", down)] {
        let env = Env::new().await;
        let mut vars = env.variables("http://127.0.0.1:9");
        vars.insert("meta_app_secret".into(), SECRET_OF_APP.into());
        vars.insert("webhook_processor_url".into(), format!("{processor}/hook"));
        vars.insert("webhook_processor_host".into(), processor.clone());
        let app = TestApp::Host(host_app("jobs-http", &vars));
        let mut times = Vec::new();
        for i in 0..300 {
            let body = json!({"object":"whatsapp_business_account","entry":[{"id":"2001","changes":[{"field":"messages","value":{"messages":[{"id":format!("wamid.{i}")}]}}]}]}).to_string();
            let signature = whatrack_jobs::crypto::hub_signature(SECRET_OF_APP, body.as_bytes());
            let started = Instant::now();
            let r = call_with_body(
                &app,
                "POST",
                "/api/v1/whatsapp/webhook",
                &[("x-hub-signature-256", &signature)],
                &body,
            )
            .await;
            times.push(started.elapsed());
            assert_eq!(r.status, 200);
        }
        times.sort();
        let at = |q: f64| times[((times.len() as f64 * q) as usize).min(times.len() - 1)];
        println!("front door, {name}: p50 {:?}, p99 {:?}", at(0.50), at(0.99));
    }
}

/// The front door under `spin up`, over HTTP. Meta's answer time: 200 signed webhooks, 8 at a
/// time, with the processor fast, slow (1 s) and down (connection refused). Throughput: wrk (2
/// threads, 8 connections, 10 s) POSTs new signed webhooks (a body sent twice is stored and
/// forwarded once) with the processor fast, to the front door and to the minimal one
/// (`bench/minimal-front-door`: verify, store, forward, mark, then answer), alternating, twice
/// each.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "benchmark"]
async fn front_door_under_spin() {
    let cli = spin_cli().expect("spin on PATH");
    let fast = FakeHttp::start(|_| Canned::json(200, json!({}))).await;
    let slow = FakeHttp::start(|_| Canned::json(200, json!({})).after(Duration::from_secs(1))).await;
    let down = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", l.local_addr().unwrap())
    };
    let minimal = std::fs::read_to_string(root().join("bench/minimal-front-door/spin.toml"))
        .unwrap()
        .replace("source = \"../../target/", "source = \"target/");
    let ours = std::fs::read_to_string(root().join("spin.toml")).unwrap();

    println!("\n| front door (spin up), 200 webhooks 8 at a time | processor | p50 | p99 | forwarded |\n|---|---|---:|---:|---:|");
    for (name, processor) in [("fast", &fast.url), ("slow (1 s)", &slow.url), ("down", &down)] {
        let (env, spin) = front_door_app(&cli, &ours, processor).await;
        // A serving front door has its Postgres pool open; a fresh `spin up` opens it on the
        // first requests (their answers took 45-60 ms): not what Meta sees.
        answer_times(&spin, "warm", 8, 8).await;
        let mut times = answer_times(&spin, "timed", 200, 8).await;
        times.sort();
        let at = |q: f64| times[((times.len() as f64 * q) as usize).min(times.len() - 1)];
        // The forwards end after the answers: wait for the slow ones before counting.
        tokio::time::sleep(Duration::from_secs(if name == "fast" { 1 } else { 4 })).await;
        let forwarded: i64 = env
            .db
            .query_one(
                "SELECT count(*) FROM whatsapp_webhook_logs WHERE processed AND payload::text LIKE '%wamid.timed.%'",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        println!(
            "| whatrack-jobs | {name} | {:.2} ms | {:.2} ms | {forwarded} |",
            ms(at(0.50)),
            ms(at(0.99))
        );
    }

    let script = signed_webhooks_script(FRONT_DOOR_APP_SECRET, 60_000);
    println!("\n| front door (spin up, wrk -t2 -c8, processor fast) | requests/s | p50 | p99 | stored |\n|---|---|---:|---:|---:|");
    let mut best = HashMap::new();
    for (who, manifest) in [("minimal component", &minimal), ("whatrack-jobs", &ours)].repeat(2) {
        let (env, spin) = front_door_app(&cli, manifest, &fast.url).await;
        let url = format!("{}/api/v1/whatsapp/webhook", spin.url());
        let w = wrk_with(&["-s", script.to_str().unwrap(), &url]).await;
        let stored: i64 =
            env.db.query_one("SELECT count(*) FROM whatsapp_webhook_logs", &[]).await.unwrap().get(0);
        println!("| {who} | {:.0} | {:.2} ms | {:.2} ms | {stored} |", w.rate, w.p50_ms, w.p99_ms);
        let rate = best.entry(who).or_insert(0.0f64);
        *rate = rate.max(w.rate);
    }
    let ratio = best["whatrack-jobs"] / best["minimal component"];
    println!("spin up: front door / minimal, processor fast (best of two each): {:.0}%", 100.0 * ratio);
}

const FRONT_DOOR_APP_SECRET: &str = "bench-app-secret";

/// A database of its own and `manifest` under `spin up`, forwarding to `processor`.
async fn front_door_app(cli: &str, manifest: &str, processor: &str) -> (Env, common::spin::SpinUp) {
    let env = Env::new().await;
    let mut vars = env.variables("http://127.0.0.1:9");
    vars.insert("meta_app_secret".into(), FRONT_DOOR_APP_SECRET.into());
    vars.insert("webhook_processor_url".into(), format!("{processor}/hook"));
    vars.insert("webhook_processor_host".into(), processor.to_owned());
    let spin = common::spin::SpinUp::start(cli, manifest, &vars, false).await.unwrap();
    (env, spin)
}

/// Each of `n` new signed webhooks' answer time, `at_once` in flight; their message ids are
/// `wamid.<tag>.<i>`.
async fn answer_times(spin: &common::spin::SpinUp, tag: &str, n: usize, at_once: usize) -> Vec<Duration> {
    use futures::StreamExt;
    futures::stream::iter(0..n)
        .map(|i| async move {
            let body = json!({"object":"whatsapp_business_account","entry":[{"id":"2001","changes":[{"field":"messages","value":{"messages":[{"id":format!("wamid.{tag}.{i}")}]}}]}]}).to_string();
            let signature = whatrack_jobs::crypto::hub_signature(FRONT_DOOR_APP_SECRET, body.as_bytes());
            let req = http::Request::post("/api/v1/whatsapp/webhook")
                .header("x-hub-signature-256", signature)
                .body(bytes::Bytes::from(body))
                .unwrap();
            let started = Instant::now();
            let resp = spin.request(req).await.unwrap();
            assert_eq!(resp.status(), 200);
            started.elapsed()
        })
        .buffer_unordered(at_once)
        .collect()
        .await
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// A wrk script that POSTs `n` different webhooks, each signed with `secret`, the two threads
/// taking turns through them (wrk gives each thread its own Lua state).
fn signed_webhooks_script(secret: &str, n: usize) -> std::path::PathBuf {
    use std::fmt::Write;
    let mut lua = String::from("local bodies = {\n");
    for i in 0..n {
        let body = json!({"object":"whatsapp_business_account","entry":[{"id":"2001","changes":[{"field":"messages","value":{"messages":[{"id":format!("wamid.bench.{i}"),"text":{"body":"hello"}}]}}]}]}).to_string();
        let signature = whatrack_jobs::crypto::hub_signature(secret, body.as_bytes());
        let _ = writeln!(lua, "{{[=[{body}]=], \"{signature}\"}},");
    }
    lua.push_str(
        r#"}
local threads = 0
function setup(thread)
  thread:set("tid", threads)
  threads = threads + 1
end
local sent = 0
function request()
  local w = bodies[((tid or 0) + 2 * sent) % #bodies + 1]
  sent = sent + 1
  return wrk.format("POST", nil, {["content-type"] = "application/json", ["x-hub-signature-256"] = w[2]}, w[1])
end
"#,
    );
    let path = std::env::temp_dir().join(format!("front-door-{}.lua", std::process::id()));
    std::fs::write(&path, lua).unwrap();
    path
}
