//! Faults injected for real: host processes killed with SIGKILL mid-run, and load from two
//! host processes (two replicas) sharing one Postgres and one Redis. Nothing is lost, nothing is
//! done twice. The long ones run at a reduced size here; `LOAD_SECONDS=60 scripts/test.sh --test
//! faults two_replicas -- --nocapture` runs the load for the full minute and prints its figures.

mod common;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::fake::{Broken, BrokenHttp, Canned, FakeHttp};
use common::graph::{self, Script};
use common::process::Served;
use common::seed::{self, Connection, Webhook};
use common::servers::{OwnPostgres, OwnRedis};
use common::*;
use serde_json::json;

const HEALTH: &str = "/api/v1/jobs/whatsapp-health-check";
const RETRY: &str = "/api/v1/jobs/webhook-retry";

/// Not a test: the host process the other tests start and kill (see `common::process`).
#[tokio::test(flavor = "multi_thread")]
#[ignore = "run by the fault tests as their host process"]
async fn host_process() {
    common::process::serve_if_asked().await;
}

fn with_processor(vars: &mut HashMap<String, String>, processor_url: &str) {
    vars.insert("webhook_processor_url".into(), format!("{processor_url}/webhooks"));
    vars.insert("webhook_processor_host".into(), processor_url.to_owned());
}

/// `[startedAt, finishedAt]` of a job's runs that held the lock, in ms, oldest first.
async fn run_intervals(env: &Env, job: &str) -> Vec<(i64, i64)> {
    env.db
        .query(
            "SELECT (EXTRACT(EPOCH FROM \"startedAt\") * 1000)::bigint, (EXTRACT(EPOCH FROM \"finishedAt\") * 1000)::bigint \
             FROM job_runs WHERE \"jobType\" = $1 AND status IN ('succeeded', 'partial') ORDER BY \"startedAt\", id",
            &[&job],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

/// Two replicas, each hit by 20 concurrent POSTs per job route, again and again: one run of a
/// job at a time (the rows' intervals never overlap), every other request a 429, no 5xx, and no
/// webhook delivered twice.
#[tokio::test(flavor = "multi_thread")]
async fn two_replicas_under_load_run_one_at_a_time() {
    let seconds: u64 = std::env::var("LOAD_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(8);
    let env = Env::new().await;
    let graph = graph::start(&Script::default()).await;
    let processor =
        FakeHttp::start(|_| Canned::json(200, json!({"ok":true})).after(Duration::from_millis(5))).await;
    for i in 0..100 {
        let phone = format!("7{i:03}");
        seed::connection(&env.db, Connection { phone_number_id: Some(&phone), ..Default::default() }).await;
    }
    for _ in 0..300 {
        seed::webhook(&env.db, Webhook::default()).await;
    }
    let mut vars = env.variables(&graph.url);
    with_processor(&mut vars, &processor.url);
    let replicas = [Arc::new(Served::start(&vars).await), Arc::new(Served::start(&vars).await)];

    let mut statuses: HashMap<u16, usize> = HashMap::new();
    let until = Instant::now() + Duration::from_secs(seconds);
    while Instant::now() < until {
        let mut calls = Vec::new();
        for replica in &replicas {
            for path in [HEALTH, RETRY] {
                for _ in 0..20 {
                    let replica = replica.clone();
                    calls.push(tokio::spawn(async move {
                        replica.request("POST", path, &[("x-cron-secret", SECRET)]).await.map(|(s, _)| s)
                    }));
                }
            }
        }
        for call in calls {
            *statuses.entry(call.await.unwrap().expect("the replica answered")).or_default() += 1;
        }
    }
    let total: usize = statuses.values().sum();
    println!("{total} requests in {seconds} s: {statuses:?}");
    assert!(statuses.keys().all(|s| *s == 200 || *s == 429), "{statuses:?}");
    assert!(statuses[&429] > statuses[&200], "{statuses:?}");

    for job in ["whatsapp-health-check", "webhook-retry"] {
        let runs = run_intervals(&env, job).await;
        assert!(!runs.is_empty(), "{job} ran");
        for pair in runs.windows(2) {
            let ((_, finished), (next_started, _)) = (pair[0], pair[1]);
            assert!(next_started >= finished, "{job}: runs overlap: {pair:?}");
        }
    }
    let skipped: i64 =
        env.db.query_one("SELECT count(*) FROM job_runs WHERE status = 'skipped'", &[]).await.unwrap().get(0);
    assert_eq!(skipped as usize, statuses[&429], "every 429 is a skipped row");

    let delivered: Vec<String> =
        processor.requests().iter().map(|r| r.header("x-webhook-log-id").unwrap().to_owned()).collect();
    let distinct: HashSet<&String> = delivered.iter().collect();
    assert_eq!(distinct.len(), delivered.len(), "a webhook was delivered twice");
    assert_eq!(distinct.len(), 300, "the whole queue drained");
    let checked: i64 = env
        .db
        .query_one("SELECT count(*) FROM whatsapp_connections WHERE \"lastHealthCheckAt\" IS NOT NULL", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(checked, 100);
}

/// A Graph API or processor that hangs on the first replica only, so that it can be killed
/// mid-call, and answers at once for the next.
fn hang_until(released: &Arc<AtomicBool>, answer: Canned) -> impl Fn() -> Canned + Send + Sync + 'static {
    let released = released.clone();
    move || {
        if released.load(Ordering::SeqCst) {
            answer.clone()
        } else {
            answer.clone().after(Duration::from_secs(60))
        }
    }
}

/// The variables of a crash test: a short lock TTL, so the next run does not wait an hour.
fn crash_vars(env: &Env, graph: &str) -> HashMap<String, String> {
    let mut vars = env.variables(graph);
    vars.insert("job_time_budget_seconds".into(), "5".into());
    vars.insert("lock_ttl_seconds".into(), "10".into());
    vars
}

async fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < Duration::from_secs(30), "waited too long for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits out a dead run's lock, and a second more: the run's row started a few milliseconds
/// after its lock was set, and is abandoned once older than the TTL.
async fn wait_for_lock_to_expire(env: &Env, key: &str) {
    let started = Instant::now();
    while env.redis_get(key).await.is_some() {
        assert!(started.elapsed() < Duration::from_secs(30), "the lock never expired");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
}

async fn assert_dead_run_abandoned(env: &Env, job: &str) {
    let runs = env.job_runs().await;
    let dead = runs.iter().find(|r| r.job_type == job).unwrap();
    assert_eq!(dead.status, "failed", "{dead:?}");
    assert!(dead.error.as_deref().unwrap().starts_with("abandoned"), "{dead:?}");
}

/// The host dies mid-delivery (SIGKILL). Its lock expires by its TTL, the next run marks the dead
/// run failed, the claimed webhooks come due when their lease ends, and in the end every webhook
/// is delivered at least once and recorded processed exactly once.
#[tokio::test(flavor = "multi_thread")]
async fn a_host_killed_mid_delivery_loses_nothing() {
    let env = Env::new().await;
    let released = Arc::new(AtomicBool::new(false));
    let answer = hang_until(&released, Canned::json(200, json!({"ok":true})));
    let processor = FakeHttp::start(move |_| answer()).await;
    let ids: Vec<uuid::Uuid> = {
        let mut ids = Vec::new();
        for _ in 0..20 {
            ids.push(seed::webhook(&env.db, Webhook::default()).await);
        }
        ids
    };
    let mut vars = crash_vars(&env, "http://127.0.0.1:9");
    with_processor(&mut vars, &processor.url);

    let mut first = Served::start(&vars).await;
    let run = first.post_in_background(RETRY);
    wait_for("the first deliveries", || processor.requests().len() >= 16).await;
    first.kill_during(run).await;
    released.store(true, Ordering::SeqCst);

    let second = Served::start(&vars).await;
    let busy = second.request("POST", RETRY, &[("x-cron-secret", SECRET)]).await.unwrap();
    assert_eq!(busy.0, 429, "the dead run's lock holds until its TTL");
    wait_for_lock_to_expire(&env, "job-lock:webhook-retry").await;
    let (status, body) = second.request("POST", RETRY, &[("x-cron-secret", SECRET)]).await.unwrap();
    assert_eq!(status, 200, "{body}");
    assert_dead_run_abandoned(&env, "webhook-retry").await;
    // The dead run's claims hold until their lease ends (budget + 70 s); then they are due.
    let leased: i64 = env
        .db
        .query_one(
            "SELECT count(*) FROM whatsapp_webhook_logs WHERE processed = false \
             AND \"nextRetryAt\" > timezone('UTC', now()) + interval '60 seconds'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(leased + body["summary"]["delivered"].as_i64().unwrap(), 20, "{body}");
    assert!(leased > 0, "claimed rows wait for their lease");
    env.db
        .batch_execute(
            "UPDATE whatsapp_webhook_logs SET \"nextRetryAt\" = \"nextRetryAt\" - interval '75 seconds'",
        )
        .await
        .unwrap();
    let (status, _) = second.request("POST", RETRY, &[("x-cron-secret", SECRET)]).await.unwrap();
    assert_eq!(status, 200);

    let delivered: HashSet<String> =
        processor.requests().iter().map(|r| r.header("x-webhook-log-id").unwrap().to_owned()).collect();
    assert_eq!(delivered.len(), 20, "every webhook delivered at least once");
    for id in ids {
        let processed: i64 = env
            .db
            .query_one(
                "SELECT count(*) FROM webhook_retry_attempts WHERE \"webhookLogId\" = $1 AND \"httpStatus\" = 200",
                &[&id.to_string()],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(processed, 1, "{id} recorded processed exactly once");
    }
}

/// The host dies mid-check: nothing half-written, and the next run after the TTL checks every
/// active connection.
#[tokio::test(flavor = "multi_thread")]
async fn a_host_killed_mid_check_loses_nothing() {
    let env = Env::new().await;
    let released = Arc::new(AtomicBool::new(false));
    let answer = hang_until(&released, graph::healthy_phone());
    let graph = FakeHttp::start(move |req| graph::each_call(req, answer())).await;
    for i in 0..10 {
        let phone = format!("8{i:02}");
        seed::connection(
            &env.db,
            Connection { phone_number_id: Some(&phone), health_status: "unknown", ..Default::default() },
        )
        .await;
    }
    let vars = crash_vars(&env, &graph.url);
    let mut first = Served::start(&vars).await;
    let run = first.post_in_background(HEALTH);
    wait_for("the first checks", || graph::calls(&graph.requests()).len() >= 10).await;
    first.kill_during(run).await;
    released.store(true, Ordering::SeqCst);
    let audit: i64 = env.db.query_one("SELECT count(*) FROM whatsapp_health", &[]).await.unwrap().get(0);
    assert_eq!(audit, 0, "no result was finished");

    let second = Served::start(&vars).await;
    wait_for_lock_to_expire(&env, "job-lock:whatsapp-health-check").await;
    let (status, body) = second.request("POST", HEALTH, &[("x-cron-secret", SECRET)]).await.unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["summary"]["checked"], 10, "{body}");
    assert_dead_run_abandoned(&env, "whatsapp-health-check").await;
    let healthy: i64 = env
        .db
        .query_one("SELECT count(*) FROM whatsapp_connections WHERE \"healthStatus\" = 'healthy'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(healthy, 10);
}

/// The host dies while a batch of results is being written (a slow trigger holds the statement
/// open): the batch is one statement, so it lands whole or not at all, never an audit row
/// without its connection update; the next run checks whatever did not land.
#[tokio::test(flavor = "multi_thread")]
async fn a_host_killed_mid_write_leaves_no_half_written_row() {
    let env = Env::new().await;
    let graph = graph::start(&Script::default()).await;
    for i in 0..5 {
        let phone = format!("9{i:02}");
        seed::connection(
            &env.db,
            Connection { phone_number_id: Some(&phone), health_status: "unknown", ..Default::default() },
        )
        .await;
    }
    env.db
        .batch_execute(
            "CREATE TABLE slow_write_gate (open boolean NOT NULL); INSERT INTO slow_write_gate VALUES (false); \
             CREATE FUNCTION slow_write() RETURNS trigger LANGUAGE plpgsql AS $$ \
             BEGIN WHILE NOT (SELECT open FROM slow_write_gate) LOOP PERFORM pg_sleep(0.05); END LOOP; \
             RETURN NEW; END $$; \
             CREATE TRIGGER slow BEFORE UPDATE ON whatsapp_connections FOR EACH ROW EXECUTE FUNCTION slow_write();",
        )
        .await
        .unwrap();
    let vars = crash_vars(&env, &graph.url);
    let mut first = Served::start(&vars).await;
    let run = first.post_in_background(HEALTH);
    // The batch's statement has inserted the audit rows and sleeps in the connections' trigger.
    const SLEEPING_UPDATE: &str = "SELECT count(*) FROM pg_stat_activity \
         WHERE wait_event = 'PgSleep' AND datname = current_database()";
    let started = Instant::now();
    while env.count(SLEEPING_UPDATE).await == 0 {
        assert!(started.elapsed() < Duration::from_secs(30), "the write never started");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    first.kill_during(run).await;
    env.db.batch_execute("UPDATE slow_write_gate SET open = true").await.unwrap();
    // The killed host's session ends; its open transaction goes with it.
    let started = Instant::now();
    loop {
        let audit = env.count("SELECT count(*) FROM whatsapp_health").await;
        let updated =
            env.count("SELECT count(*) FROM whatsapp_connections WHERE \"healthStatus\" <> 'unknown'").await;
        // The statement dies with the session, or finishes whole before the server sees it go.
        assert!(
            matches!((audit, updated), (0, 0) | (5, 5)),
            "a half-written batch is visible: {audit} audit rows, {updated} connections updated"
        );
        if env.count(SLEEPING_UPDATE).await == 0 || started.elapsed() > Duration::from_secs(35) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let second = Served::start(&vars).await;
    wait_for_lock_to_expire(&env, "job-lock:whatsapp-health-check").await;
    let (status, body) = second.request("POST", HEALTH, &[("x-cron-secret", SECRET)]).await.unwrap();
    assert_eq!(status, 200, "{body}");
    let written_by_the_first = env.count("SELECT count(*) FROM whatsapp_health").await
        - body["summary"]["checked"].as_i64().unwrap();
    assert!(matches!(written_by_the_first, 0 | 5), "{body}");
    let audit: i64 = env.db.query_one("SELECT count(*) FROM whatsapp_health", &[]).await.unwrap().get(0);
    assert_eq!(audit, 5, "each connection checked once in all");
}

/// Which broken behaviour a request gets, by a marker in its request line or headers.
fn broken_by_marker(head: &str) -> Broken {
    [
        ("silent", Broken::Silent),
        ("trickle", Broken::Trickle),
        ("closes", Broken::ClosesMidResponse),
        ("huge", Broken::Huge),
        ("garbled", Broken::MalformedStatusLine),
    ]
    .into_iter()
    .find(|(marker, _)| head.contains(marker))
    .map_or(Broken::Silent, |(_, b)| b)
}

const BROKEN: [&str; 5] = ["silent", "trickle", "closes", "huge", "garbled"];

/// A Graph API that never answers, answers a byte a second, closes mid-answer, sends 50 MB or a
/// malformed status line: each call ends at its timeout or size limit, the run ends within its
/// budget, and each connection is `unknown` (a transient failure, left as it was).
#[tokio::test(flavor = "multi_thread")]
async fn a_broken_graph_api_is_a_transient_failure_within_the_budget() {
    let env = Env::new().await;
    let graph = BrokenHttp::start(broken_by_marker).await;
    let mut ids = HashMap::new();
    for marker in BROKEN {
        let id =
            seed::connection(&env.db, Connection { phone_number_id: Some(marker), ..Default::default() })
                .await;
        ids.insert(marker, id);
    }
    // One call a request, so that each request meets its own kind of breakage.
    let mut vars = env.variables(&graph.url);
    vars.insert("graph_batch_size".into(), "1".into());
    let app = app("jobs-http", &vars).await;
    let started = Instant::now();
    let r = post_health(&app).await;
    let took = started.elapsed();
    assert_eq!(r.status, 200, "{}", r.json);
    assert!(took < Duration::from_secs(14), "each call ends at its 10 s timeout: {took:?}");
    assert_eq!(r.json["summary"]["unknown"], 5, "{}", r.json);
    for (marker, id) in ids {
        assert_eq!(env.health_status(id).await, "healthy", "{marker}: left as it was");
        let reason: String = env
            .db
            .query_one("SELECT \"apiResponse\" FROM whatsapp_health WHERE \"connectionId\" = $1", &[&id])
            .await
            .unwrap()
            .get(0);
        let expected = match marker {
            "silent" | "trickle" => "timed out",
            "huge" => "not the JSON expected",
            _ => "Graph API call failed: network error",
        };
        assert!(reason.contains(expected), "{marker}: {reason}");
    }
}

/// A processor broken the same ways, and an alert receiver that answers a byte a second: the
/// run ends within its budget (and the alerts' timeout), and each delivery is judged per the
/// policy (a transient failure charged its one attempt and dead-lettered; a 200 with 50 MB
/// delivered).
#[tokio::test(flavor = "multi_thread")]
async fn a_broken_processor_is_judged_per_the_policy_within_the_budget() {
    let env = Env::new().await;
    let ids: Vec<(&str, uuid::Uuid)> = {
        let mut ids = Vec::new();
        for marker in BROKEN {
            ids.push((marker, seed::webhook(&env.db, Webhook::default()).await));
        }
        ids
    };
    let by_id: HashMap<String, &'static str> = ids.iter().map(|(m, id)| (id.to_string(), *m)).collect();
    let processor = BrokenHttp::start(move |head| {
        let marker = by_id.iter().find(|(id, _)| head.contains(id.as_str())).map_or("silent", |(_, m)| *m);
        broken_by_marker(marker)
    })
    .await;
    let alerts = BrokenHttp::start(|_| Broken::Trickle).await;
    let mut vars = env.variables("http://127.0.0.1:9");
    with_processor(&mut vars, &processor.url);
    vars.insert("webhook_retry_max_attempts".into(), "1".into());
    vars.insert("alert_webhook_url".into(), format!("{}/hook", alerts.url));
    vars.insert("alert_webhook_host".into(), alerts.url.clone());
    let app = app("jobs-http", &vars).await;
    let started = Instant::now();
    let r = call(&app, "POST", RETRY, &[("x-cron-secret", SECRET)]).await;
    let took = started.elapsed();
    assert_eq!(r.status, 200, "{}", r.json);
    assert!(took < Duration::from_secs(19), "deliveries end at 10 s, alerts at 5 s more: {took:?}");
    assert_eq!(processor.connections(), 5);
    assert_eq!(alerts.connections(), 4, "one alert per dead-lettered webhook was attempted");
    for (marker, id) in ids {
        let (processed, retries, error, dead): (bool, i32, Option<String>, bool) = {
            let row = env
                .db
                .query_one(
                    "SELECT processed, \"retryCount\", \"processingError\", \"deadAt\" IS NOT NULL \
                     FROM whatsapp_webhook_logs WHERE id = $1",
                    &[&id],
                )
                .await
                .unwrap();
            (row.get(0), row.get(1), row.get(2), row.get(3))
        };
        if marker == "huge" {
            assert!(processed, "a 200 is a delivery, however long its body");
        } else {
            assert_eq!(
                (processed, retries, dead),
                (false, 1, true),
                "{marker}: a transient failure, its last"
            );
            let error = error.unwrap();
            let expected = if matches!(marker, "silent" | "trickle") { "timed out" } else { "network error" };
            assert!(error.contains(expected), "{marker}: {error}");
        }
    }
}

/// Variables pointing the app at a Postgres and a Redis of the test's own.
fn own_servers_vars(env: &Env, pg: &OwnPostgres, redis_url: &str, graph: &str) -> HashMap<String, String> {
    let mut vars = env.variables(graph);
    vars.insert("database_url".into(), pg.url("jobs"));
    vars.insert("database_host".into(), format!("postgres://127.0.0.1:{}", pg.port));
    vars.insert("redis_url".into(), redis_url.to_owned());
    vars.insert("redis_host".into(), host_of(redis_url));
    vars
}

/// Postgres restarted while a run checks: the run answers a clear 500 naming Postgres, its lock
/// is released, nothing is half-written, and the next run completes normally.
#[tokio::test(flavor = "multi_thread")]
async fn postgres_restarted_during_a_run() {
    let env = Env::new().await;
    let pg = std::sync::Arc::new(OwnPostgres::start("").await);
    let db = connect(&pg.url("jobs")).await;
    for i in 0..3 {
        let phone = format!("5{i:02}");
        seed::connection(
            &db,
            Connection { phone_number_id: Some(&phone), health_status: "warning", ..Default::default() },
        )
        .await;
    }
    drop(db);
    let restarted = Arc::new(AtomicBool::new(false));
    let graph = {
        let (pg, restarted) = (pg.clone(), restarted.clone());
        FakeHttp::start(move |req| {
            if !restarted.swap(true, Ordering::SeqCst) {
                pg.restart();
            }
            graph::each_call(req, graph::healthy_phone())
        })
        .await
    };
    let vars = own_servers_vars(&env, &pg, &env.redis_url, &graph.url);
    let app = app("jobs-http", &vars).await;
    let r = post_health(&app).await;
    assert_eq!(r.status, 500, "{}", r.json);
    assert!(r.json["error"].as_str().unwrap().contains("Postgres"), "{}", r.json);
    assert_eq!(env.redis_get("job-lock:whatsapp-health-check").await, None, "lock released");
    let db = connect(&pg.url("jobs")).await;
    let written: i64 = db.query_one("SELECT count(*) FROM whatsapp_health", &[]).await.unwrap().get(0);
    let moved: i64 = db
        .query_one("SELECT count(*) FROM whatsapp_connections WHERE \"healthStatus\" <> 'warning'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!((written, moved), (0, 0), "nothing half-written");

    let again = post_health(&app).await;
    assert_eq!(again.status, 200, "{}", again.json);
    assert_eq!(again.json["summary"]["checked"], 3, "{}", again.json);
}

/// Postgres refusing new connections (`max_connections` reached by WhaTrack's own sessions): a
/// clear 500 naming Postgres, no lock taken; once a slot frees, the next run completes.
#[tokio::test(flavor = "multi_thread")]
async fn postgres_refusing_new_connections() {
    let env = Env::new().await;
    // Four ordinary slots; the app connects as an ordinary role, as WhaTrack's app does.
    let pg = OwnPostgres::start("-c max_connections=6 -c superuser_reserved_connections=2").await;
    let admin = connect(&pg.url("jobs")).await;
    admin
        .batch_execute("CREATE ROLE app LOGIN; GRANT ALL ON ALL TABLES IN SCHEMA public TO app; GRANT ALL ON SCHEMA public TO app;")
        .await
        .unwrap();
    seed::connection(&admin, Connection::default()).await;
    let app_url = pg.url("jobs").replace("postgres@", "app@");
    // WhaTrack's sessions take every ordinary slot left.
    let mut holders = Vec::new();
    while let Ok((client, conn)) = tokio_postgres::connect(&app_url, tokio_postgres::NoTls).await {
        tokio::spawn(conn);
        holders.push(client);
        assert!(holders.len() < 10);
    }
    assert!(!holders.is_empty());
    let graph = graph::start(&Script::default()).await;
    let mut vars = own_servers_vars(&env, &pg, &env.redis_url, &graph.url);
    vars.insert("database_url".into(), app_url.clone());
    let app = app("jobs-http", &vars).await;
    let r = post_health(&app).await;
    assert_eq!(r.status, 500, "{}", r.json);
    let error = r.json["error"].as_str().unwrap();
    assert!(error.contains("Postgres") && error.contains("connection"), "{error}");
    assert_eq!(env.redis_get("job-lock:whatsapp-health-check").await, None, "no lock taken");

    holders.pop();
    let again = post_health(&app).await;
    assert_eq!(again.status, 200, "{}", again.json);
    assert_eq!(again.json["summary"]["checked"], 1);
}

/// Postgres down when a run starts: a 500 naming it, no lock, nothing recorded anywhere else.
#[tokio::test(flavor = "multi_thread")]
async fn postgres_down_when_a_run_starts() {
    let env = Env::new().await;
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let mut vars = env.variables("http://127.0.0.1:9");
    vars.insert("database_url".into(), format!("postgres://postgres@{closed}/jobs"));
    vars.insert("database_host".into(), format!("postgres://{closed}"));
    let app = app("jobs-http", &vars).await;
    let r = post_health(&app).await;
    assert_eq!(r.status, 500);
    assert!(r.json["error"].as_str().unwrap().starts_with("Postgres error (connect)"), "{}", r.json);
    assert_eq!(env.redis_get("job-lock:whatsapp-health-check").await, None);
}

/// Redis restarted while a run works (its keys, the lock among them, gone with it): the work
/// already committed stands and the run answers 200; the failed release is logged; the next
/// run takes a fresh lock and completes.
#[tokio::test(flavor = "multi_thread")]
async fn redis_restarted_during_a_run() {
    let env = Env::new().await;
    let redis = Arc::new(std::sync::Mutex::new(OwnRedis::start()));
    let redis_url = redis.lock().unwrap().url();
    seed::connection(&env.db, Connection { health_status: "warning", ..Default::default() }).await;
    let restart = Arc::new(AtomicBool::new(true));
    let graph = {
        let (redis, restart) = (redis.clone(), restart.clone());
        FakeHttp::start(move |req| {
            if restart.swap(false, Ordering::SeqCst) {
                let mut redis = redis.lock().unwrap();
                redis.stop();
                redis.start_again();
            }
            graph::each_call(req, graph::healthy_phone())
        })
        .await
    };
    let mut vars = env.variables(&graph.url);
    vars.insert("redis_url".into(), redis_url.clone());
    vars.insert("redis_host".into(), host_of(&redis_url));
    let app = app("jobs-http", &vars).await;
    let r = post_health(&app).await;
    assert_eq!(r.status, 200, "{}", r.json);
    assert_eq!(r.json["summary"]["checked"], 1);
    assert!(
        app.output().contains("lock release failed") || app.output().contains("no longer ours"),
        "logged"
    );
    seed::connection(&env.db, Connection { phone_number_id: Some("3003"), ..Default::default() }).await;
    let again = post_health(&app).await;
    assert_eq!(again.status, 200, "{}", again.json);
    assert_eq!(again.json["summary"]["checked"], 1);
}
