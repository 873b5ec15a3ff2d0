//! What an operator needs on day one: alerts (throttled, never in the job's way), the overview
//! for monitors, and retention of the audit tables.

mod common;

use std::time::{Duration, Instant};

use common::fake::{Canned, FakeHttp, TcpProxy};
use common::graph::{self, Script};
use common::seed::{self, Connection, Webhook};
use common::*;
use serde_json::{json, Value};

async fn alert_receiver() -> FakeHttp {
    FakeHttp::start(|_| Canned::text(200, "ok")).await
}

fn with_alerts(vars: &mut std::collections::HashMap<String, String>, url: &str) {
    vars.insert("alert_webhook_url".into(), format!("{url}/services/T000/B000/XXXX"));
    vars.insert("alert_webhook_host".into(), url.into());
}

fn blocked() -> Canned {
    Canned::json(200, json!({"status":"CONNECTED","health_status":{"can_send_message":"BLOCKED"}}))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_connection_moving_into_error_alerts_once_an_hour() {
    let env = Env::new().await;
    let receiver = alert_receiver().await;
    let script = Script::default();
    script.node("1001", blocked()).node("1002", blocked());
    let fake = graph::start(&script).await;
    let moving =
        seed::connection(&env.db, Connection { phone_number_id: Some("1001"), ..Default::default() }).await;
    // Already in error: staying there is not news.
    seed::connection(
        &env.db,
        Connection { phone_number_id: Some("1002"), health_status: "error", ..Default::default() },
    )
    .await;
    let mut vars = env.variables(&fake.url);
    with_alerts(&mut vars, &receiver.url);
    let app = app("jobs-http", &vars).await;

    assert_eq!(post_health(&app).await.json["summary"]["error"], 2);
    let sent = receiver.alert_texts();
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert!(
        sent[0].contains(&moving.to_string()) && sent[0].contains("can_send_message BLOCKED"),
        "{}",
        sent[0]
    );
    assert_eq!(receiver.requests()[0].target, "/services/T000/B000/XXXX");

    // It recovers and breaks again within the hour: the throttle holds.
    env.db
        .execute("UPDATE whatsapp_connections SET \"healthStatus\" = 'healthy', \"lastHealthCheckAt\" = NULL WHERE id = $1", &[&moving])
        .await
        .unwrap();
    post_health(&app).await;
    assert_eq!(receiver.alert_texts().len(), 1);
    assert_eq!(env.redis_get(&format!("alert:connection-error:{moving}")).await.as_deref(), Some("1"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dead_lettered_webhook_alerts() {
    let env = Env::new().await;
    let receiver = alert_receiver().await;
    let processor = FakeHttp::start(|_| Canned::json(400, json!({"error":"bad"}))).await;
    let id = seed::webhook(&env.db, Webhook::default()).await;
    let mut vars = env.variables("http://127.0.0.1:9");
    vars.insert("webhook_processor_url".into(), processor.url.clone());
    vars.insert("webhook_processor_host".into(), processor.url.clone());
    with_alerts(&mut vars, &receiver.url);
    let app = app("jobs-http", &vars).await;
    let r = call(&app, "POST", "/api/v1/jobs/webhook-retry", &[("x-cron-secret", SECRET)]).await;
    assert_eq!(r.json["summary"]["deadLettered"], 1, "{}", r.json);
    let sent = receiver.alert_texts();
    assert_eq!(sent.len(), 1);
    assert!(sent[0].contains(&id.to_string()) && sent[0].contains("HTTP 400"), "{}", sent[0]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_run_alerts_once_an_hour() {
    let env = Env::new().await;
    let receiver = alert_receiver().await;
    let pg: std::net::SocketAddr =
        host_of(&env.database_url).trim_start_matches("postgres://").parse().unwrap();
    let mut urls = Vec::new();
    let mut proxies = Vec::new();
    for _ in 0..2 {
        let proxy = TcpProxy::start(pg).await;
        urls.push(env.database_url.replace(&pg.to_string(), &proxy.addr.to_string()));
        proxies.push(proxy);
    }
    seed::connection(&env.db, Connection::default()).await;
    for (url, proxy) in urls.iter().zip(&proxies) {
        let cutter = proxy.clone();
        let graph = FakeHttp::start(move |req| {
            cutter.cut();
            graph::each_call(req, graph::healthy_phone())
        })
        .await;
        let mut vars = env.variables(&graph.url);
        vars.insert("database_url".into(), url.clone());
        vars.insert("database_host".into(), host_of(url));
        with_alerts(&mut vars, &receiver.url);
        let app = app("jobs-http", &vars).await;
        assert_eq!(post_health(&app).await.status, 500);
    }
    let sent = receiver.alert_texts();
    assert_eq!(sent.len(), 1, "two failures, one alert: {sent:?}");
    assert!(sent[0].contains("whatsapp-health-check") && sent[0].contains("Postgres"), "{}", sent[0]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dead_or_hanging_receiver_changes_nothing_else() {
    for hanging in [false, true] {
        let env = Env::new().await;
        let receiver = if hanging {
            FakeHttp::start(|_| Canned::text(200, "ok").after(Duration::from_secs(30))).await
        } else {
            let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let url = format!("http://{}", closed.local_addr().unwrap());
            drop(closed);
            let mut f = alert_receiver().await;
            f.url = url;
            f
        };
        let script = Script::default();
        script.node("1001", blocked());
        let fake = graph::start(&script).await;
        let id = seed::connection(&env.db, Connection::default()).await;
        let mut vars = env.variables(&fake.url);
        with_alerts(&mut vars, &receiver.url);
        let app = app("jobs-http", &vars).await;
        let started = Instant::now();
        let r = post_health(&app).await;
        let took = started.elapsed();
        assert_eq!(r.status, 200, "{}", r.json);
        assert_eq!(r.json["summary"]["error"], 1);
        assert_eq!(env.health_status(id).await, "error");
        assert_eq!(env.job_runs().await[0].status, "succeeded");
        // Bounded by the alert timeout (5 s), not by the receiver (30 s).
        assert!(took < Duration::from_secs(20), "hanging={hanging}: {took:?}");
        assert!(app.output().contains("alert not delivered"), "hanging={hanging}");
    }
}

async fn overview(app: &TestApp) -> (u16, Value) {
    let r = call(app, "GET", "/api/v1/jobs", &[("x-cron-secret", SECRET)]).await;
    (r.status, r.json)
}

fn job<'a>(v: &'a Value, name: &str) -> &'a Value {
    v["jobs"].as_array().unwrap().iter().find(|j| j["jobType"] == name).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_overview_shows_last_runs_and_overdue_jobs() {
    let env = Env::new().await;
    let fake = graph::start(&Script::default()).await;
    let processor = FakeHttp::start(|_| Canned::text(200, "")).await;
    let mut vars = env.variables(&fake.url);
    vars.insert("webhook_processor_url".into(), processor.url.clone());
    vars.insert("webhook_processor_host".into(), processor.url.clone());
    let app = app("jobs-http", &vars).await;

    assert_eq!(call(&app, "GET", "/api/v1/jobs", &[]).await.status, 401);
    let (status, v) = overview(&app).await;
    assert_eq!(status, 503, "never ran: overdue");
    for name in ["whatsapp-health-check", "webhook-retry"] {
        let j = job(&v, name);
        assert_eq!(
            (j["overdue"].clone(), j["lastRun"].clone(), j["isRunning"].clone()),
            (json!(true), Value::Null, json!(false))
        );
    }
    assert_eq!(job(&v, "whatsapp-health-check")["overdueAfterMinutes"], 1560);
    assert_eq!(job(&v, "webhook-retry")["overdueAfterMinutes"], 30);

    let done = post_health(&app).await;
    let (status, v) = overview(&app).await;
    assert_eq!(status, 503, "the retry still never ran");
    let h = job(&v, "whatsapp-health-check");
    assert_eq!(h["overdue"], false);
    assert_eq!(h["lastRun"]["jobId"], done.json["jobId"]);
    assert_eq!(h["lastRun"]["status"], "succeeded");
    assert_eq!(h["lastRun"]["trigger"], "http");
    assert_eq!(h["lastSuccess"]["jobId"], done.json["jobId"]);
    assert!(h["lastRun"]["startedAt"].as_str().unwrap().ends_with('Z'));
    assert_eq!(h["lastRun"]["summary"], done.json["summary"]);

    call(&app, "POST", "/api/v1/jobs/webhook-retry", &[("x-cron-secret", SECRET)]).await;
    let (status, _) = overview(&app).await;
    assert_eq!(status, 200, "both fresh");

    // A failed run is the last run, but not a success; a success 27 hours old is overdue.
    env.redis_set("job-lock:whatsapp-health-check", "someone").await;
    env.db
        .execute("UPDATE job_runs SET \"finishedAt\" = \"finishedAt\" - interval '27 hours'", &[])
        .await
        .unwrap();
    let skipped = post_health(&app).await;
    assert_eq!(skipped.status, 429);
    let (status, v) = overview(&app).await;
    assert_eq!(status, 503);
    let h = job(&v, "whatsapp-health-check");
    assert_eq!(
        (h["overdue"].clone(), h["isRunning"].clone(), h["lastRun"]["status"].clone()),
        (json!(true), json!(true), json!("skipped"))
    );
    assert_eq!(h["lastSuccess"]["jobId"], done.json["jobId"]);
    assert_eq!(job(&v, "webhook-retry")["overdue"], true, "27 hours > 30 minutes");
}

#[tokio::test(flavor = "multi_thread")]
async fn overdue_thresholds_are_configurable() {
    let env = Env::new().await;
    let fake = graph::start(&Script::default()).await;
    let mut vars = env.variables(&fake.url);
    vars.insert("health_check_overdue_minutes".into(), "1".into());
    let app = app("jobs-http", &vars).await;
    post_health(&app).await;
    assert_eq!(job(&overview(&app).await.1, "whatsapp-health-check")["overdue"], false);
    env.db
        .execute("UPDATE job_runs SET \"finishedAt\" = \"finishedAt\" - interval '2 minutes'", &[])
        .await
        .unwrap();
    let v = overview(&app).await.1;
    assert_eq!(job(&v, "whatsapp-health-check")["overdue"], true);
    assert_eq!(job(&v, "whatsapp-health-check")["overdueAfterMinutes"], 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn recent_runs_of_a_job() {
    let env = Env::new().await;
    let fake = graph::start(&Script::default()).await;
    let app = app("jobs-http", &env.variables(&fake.url)).await;
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(post_health(&app).await.json["jobId"].as_str().unwrap().to_owned());
    }
    let r =
        call(&app, "GET", "/api/v1/jobs/whatsapp-health-check/runs?limit=2", &[("x-cron-secret", SECRET)])
            .await;
    assert_eq!(r.status, 200);
    let runs = r.json["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 2);
    assert_eq!(runs[0]["jobId"], ids[2].as_str(), "newest first");
    assert_eq!(runs[1]["jobId"], ids[1].as_str());
    for key in ["jobType", "trigger", "status", "startedAt", "finishedAt", "summary", "error"] {
        assert!(runs[0].get(key).is_some(), "{key}");
    }
    let bearer = format!("Bearer {SECRET}");
    let all =
        call(&app, "GET", "/api/v1/jobs/whatsapp-health-check/runs", &[("authorization", &bearer)]).await;
    assert_eq!(all.json["runs"].as_array().unwrap().len(), 3);
    let none = call(&app, "GET", "/api/v1/jobs/webhook-retry/runs", &[("x-cron-secret", SECRET)]).await;
    assert_eq!(none.json["runs"], json!([]));
    assert_eq!(
        call(&app, "POST", "/api/v1/jobs/webhook-retry/runs", &[("x-cron-secret", SECRET)]).await.status,
        405
    );
    assert_eq!(call(&app, "GET", "/api/v1/jobs/whatsapp-health-check/runs", &[]).await.status, 401);
    for bad in ["0", "201", "-1", "many", ""] {
        let path = format!("/api/v1/jobs/whatsapp-health-check/runs?limit={bad}");
        let r = call(&app, "GET", &path, &[("x-cron-secret", SECRET)]).await;
        assert_eq!(r.status, 400, "limit={bad}: {}", r.json);
        assert!(r.json["error"].as_str().unwrap().contains("1 to 200"), "{}", r.json);
    }
    let most =
        call(&app, "GET", "/api/v1/jobs/whatsapp-health-check/runs?limit=200", &[("x-cron-secret", SECRET)]);
    assert_eq!(most.await.status, 200);
}

/// Rows `days` old in each audit table: 12,000 `job_runs` (more than two delete batches), and
/// a few of the others.
async fn age_audit_rows(env: &Env, conn: uuid::Uuid, days: i32) {
    env.db
        .execute(
            "INSERT INTO job_runs (id, \"jobType\", trigger, status, \"startedAt\", \"finishedAt\") \
             SELECT 'old-' || $1::int || '-' || n, 'whatsapp-health-check', 'cron', 'succeeded', \
                    timezone('UTC', now()) - make_interval(days => $1::int), timezone('UTC', now()) - make_interval(days => $1::int) \
             FROM generate_series(1, 12000) n",
            &[&days],
        )
        .await
        .unwrap();
    env.db
        .execute(
            "INSERT INTO webhook_retry_attempts (\"webhookLogId\", attempt, \"attemptedAt\", \"durationMs\") \
             SELECT 'x', n, timezone('UTC', now()) - make_interval(days => $1), 5 FROM generate_series(1, 7) n",
            &[&days],
        )
        .await
        .unwrap();
    env.db
        .execute(
            "INSERT INTO whatsapp_health (\"organizationId\", \"connectionId\", status, \"tokenValid\", \"tokenExpired\", \"lastCheck\") \
             SELECT gen_random_uuid(), $2, 'healthy', true, false, timezone('UTC', now()) - make_interval(days => $1) \
             FROM generate_series(1, 5)",
            &[&days, &conn],
        )
        .await
        .unwrap();
}

async fn count(env: &Env, table: &str) -> i64 {
    env.db.query_one(&format!("SELECT count(*) FROM {table}"), &[]).await.unwrap().get(0)
}

/// Audit rows 100 and 10 days old, and nothing due for a check.
async fn env_with_old_audit_rows() -> (Env, FakeHttp) {
    let env = Env::new().await;
    let fake = graph::start(&Script::default()).await;
    let conn =
        seed::connection(&env.db, Connection { checked_hours_ago: Some(1), ..Default::default() }).await;
    age_audit_rows(&env, conn, 100).await;
    age_audit_rows(&env, conn, 10).await;
    (env, fake)
}

#[tokio::test(flavor = "multi_thread")]
async fn retention_trims_our_tables_and_leaves_whatrack_health_by_default() {
    let (env, fake) = env_with_old_audit_rows().await;
    let app = app("jobs-http", &env.variables(&fake.url)).await;
    let r = post_health(&app).await;
    assert_eq!(
        r.json["summary"]["purged"],
        json!({"jobRuns":12000,"webhookRetryAttempts":7,"whatsappHealth":0}),
        "{}",
        r.json
    );
    assert_eq!(count(&env, "job_runs").await, 12001, "the 10-day-old rows and this run's own");
    assert_eq!(count(&env, "webhook_retry_attempts").await, 7);
    assert_eq!(count(&env, "whatsapp_health").await, 10, "WhaTrack's table untouched");
}

#[tokio::test(flavor = "multi_thread")]
async fn retention_is_configurable() {
    let (env, fake) = env_with_old_audit_rows().await;

    let mut vars = env.variables(&fake.url);
    vars.insert("audit_retention_days".into(), "0".into());
    vars.insert("health_retention_days".into(), "30".into());
    let app = app("jobs-http", &vars).await;
    let r = post_health(&app).await;
    assert_eq!(r.json["summary"]["purged"], json!({"jobRuns":0,"webhookRetryAttempts":0,"whatsappHealth":5}));
    assert_eq!(count(&env, "whatsapp_health").await, 5);
    assert_eq!(count(&env, "job_runs").await, 24001);

    let mut vars = env.variables(&fake.url);
    vars.insert("audit_retention_days".into(), "7".into());
    let app = common::app("jobs-http", &vars).await;
    let r = post_health(&app).await;
    assert_eq!(r.json["summary"]["purged"]["jobRuns"], 24000);
    assert_eq!(count(&env, "webhook_retry_attempts").await, 0);
}

/// Five hundred connections failing at once are ten alerts and one summary, not five hundred
/// messages (here 25: ten and "15 more").
#[tokio::test(flavor = "multi_thread")]
async fn an_alert_storm_is_ten_alerts_and_a_summary() {
    let env = Env::new().await;
    let receiver = alert_receiver().await;
    let script = Script::default();
    for i in 0..25 {
        let phone = format!("44{i:02}");
        script.node(&phone, blocked());
        seed::connection(&env.db, Connection { phone_number_id: Some(&phone), ..Default::default() }).await;
    }
    let fake = graph::start(&script).await;
    let mut vars = env.variables(&fake.url);
    with_alerts(&mut vars, &receiver.url);
    let app = app("jobs-http", &vars).await;
    assert_eq!(post_health(&app).await.json["summary"]["error"], 25);
    let sent = receiver.alert_texts();
    assert_eq!(sent.len(), 11, "{sent:?}");
    assert_eq!(sent.iter().filter(|t| t.contains("is now in error")).count(), 10);
    assert!(sent.iter().any(|t| t.contains("and 15 more WhatsApp connections moved into error")), "{sent:?}");
}

/// The throttle starts once an alert went out: a receiver that was down does not silence the
/// next hour.
#[tokio::test(flavor = "multi_thread")]
async fn an_alert_that_did_not_go_out_is_sent_by_the_next_run() {
    let env = Env::new().await;
    let calls = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let seen = calls.clone();
    let receiver = FakeHttp::start(move |_| {
        if seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0 {
            Canned::text(503, "slack is down")
        } else {
            Canned::text(200, "ok")
        }
    })
    .await;
    // A run that fails: its Postgres refuses the statements (a revoked grant, say).
    let mut vars = env.variables("http://127.0.0.1:9");
    with_alerts(&mut vars, &receiver.url);
    env.db.batch_execute("ALTER TABLE job_runs RENAME TO job_runs_gone").await.unwrap();
    let app = app("jobs-http", &vars).await;
    for _ in 0..3 {
        assert_eq!(post_health(&app).await.status, 500);
    }
    let sent = receiver.alert_texts();
    assert_eq!(sent.len(), 2, "refused, sent, then throttled: {sent:?}");
    assert!(sent.iter().all(|t| t.contains("run failed")), "{sent:?}");
}

/// A wrong `meta_app_secret` makes Meta refuse the app's own token: the batches that carry it
/// as their own, and `debug_token` asked singly. That says nothing about the customers' tokens:
/// the run goes on without `debug_token` (their node reads, each with its own token, decide),
/// and raises one alert naming the app credentials, not one per connection.
#[tokio::test(flavor = "multi_thread")]
async fn refused_app_credentials_are_one_alert_and_the_check_goes_on_without_them() {
    for batch_size in ["50", "1"] {
        let env = Env::new().await;
        let receiver = alert_receiver().await;
        let script = Script::default();
        script.app_token("123", "the-right-secret").node(
            "662",
            graph::graph_error(
                400,
                190,
                Some(463),
                "OAuthException",
                "Error validating access token: Session has expired",
                false,
            ),
        );
        let fake = graph::start(&script).await;
        let mut ids = Vec::new();
        for i in 0..3 {
            let phone = format!("66{i}");
            // Already in error, so that the one alert is the credentials'.
            let health_status = if i == 2 { "error" } else { "healthy" };
            let connection =
                Connection { phone_number_id: Some(&phone), health_status, ..Default::default() };
            ids.push(seed::connection(&env.db, connection).await);
        }
        let mut vars = env.variables(&fake.url);
        with_alerts(&mut vars, &receiver.url);
        vars.insert("meta_app_id".into(), "123".into());
        vars.insert("meta_app_secret".into(), "a-wrong-secret".into());
        vars.insert("graph_batch_size".into(), batch_size.into());
        vars.insert("health_check_concurrency".into(), "1".into());
        let app = app("jobs-http", &vars).await;
        let r = post_health(&app).await;
        assert_eq!(r.status, 200, "{}", r.json);
        let summary = &r.json["summary"];
        assert_eq!(
            (summary["healthy"].as_u64(), summary["error"].as_u64(), summary["unknown"].as_u64()),
            (Some(2), Some(1), Some(0)),
            "batch size {batch_size}: {summary}"
        );
        assert_eq!(env.health_status(ids[2]).await, "error", "the expired token is found");
        let calls = graph::calls(&fake.requests());
        let debug_calls = calls.iter().filter(|c| c.target.contains("debug_token")).count();
        let expected_debug = if batch_size == "1" { 1 } else { 3 };
        assert_eq!(debug_calls, expected_debug, "batch size {batch_size}: debug_token dropped once refused");
        let sent = receiver.alert_texts();
        assert_eq!(sent.len(), 1, "{sent:?}");
        assert!(
            sent[0].contains("meta_app_secret") && sent[0].contains("Invalid OAuth access token signature"),
            "{sent:?}"
        );
        assert!(!sent[0].contains("a-wrong-secret"));
    }
}

/// Spin's errors quote the whole address, password included. No exit shows it: the HTTP answer,
/// the logs, the alert, `job_runs.error`.
#[tokio::test(flavor = "multi_thread")]
async fn no_password_leaves_in_an_error() {
    let env = Env::new().await;
    let receiver = alert_receiver().await;
    // The test servers trust every local login, so the passwords are carried but not checked.
    let with_password =
        |url: &str, user: &str, password: &str| url.replacen("://", &format!("://{user}:{password}@"), 1);
    let database_url =
        with_password(&env.app_database_url().replace("postgres@", ""), "postgres", "PgS3cret");
    let redis_url = with_password(&env.redis_url, "default", "RdS3cret");
    let mut vars = env.variables("http://127.0.0.1:9");
    vars.insert("database_url".into(), database_url.clone());
    vars.insert("redis_url".into(), redis_url.clone());
    with_alerts(&mut vars, &receiver.url);

    // Postgres refused by the host (an edited spin.toml): Spin's error quotes the address.
    let manifest = manifest_without_host("{{ database_host }}");
    let app = app_of(&manifest, "jobs-http", &vars).await;
    let r = post_health(&app).await;
    assert_eq!(r.status, 500, "{}", r.json);
    let error = r.json["error"].as_str().unwrap();
    assert!(error.contains("not permitted") && error.contains("127.0.0.1"), "{error}");
    let mut exits = vec![r.json.to_string(), app.output()];
    exits.extend(receiver.alert_texts());
    assert_eq!(exits.len(), 3, "an alert went out: {exits:?}");

    // Redis refused by the host in the same way: the lock cannot be taken.
    let manifest = manifest_without_host("{{ redis_host }}");
    let app = app_of(&manifest, "jobs-http", &vars).await;
    let r = post_health(&app).await;
    assert_eq!(r.status, 500, "{}", r.json);
    let error = r.json["error"].as_str().unwrap();
    assert!(error.contains("Redis error: cannot connect"), "{error}");
    exits.extend([r.json.to_string(), app.output()]);

    // A failure recorded in job_runs that quotes a URL with credentials.
    let processor = FakeHttp::start(|_| Canned::text(200, "ok")).await;
    seed::webhook(&env.db, Webhook::default()).await;
    vars.insert(
        "webhook_processor_url".into(),
        with_password(&format!("{}/hook", processor.url), "hook", "PrS3cret"),
    );
    vars.insert("webhook_processor_host".into(), processor.url.clone());
    let manifest = manifest_without_host("{{ webhook_processor_host }}");
    let app = app_of(&manifest, "jobs-http", &vars).await;
    let r = call(&app, "POST", "/api/v1/jobs/webhook-retry", &[("x-cron-secret", SECRET)]).await;
    assert_eq!(r.status, 500, "{}", r.json);
    let runs = env.job_runs().await;
    let recorded = runs.iter().find(|r| r.job_type == "webhook-retry").unwrap().error.clone().unwrap();
    assert!(
        recorded.contains(&processor.url.replace("http://", "")),
        "the failure names the processor: {recorded}"
    );
    exits.extend([r.json.to_string(), app.output(), recorded]);
    exits.extend(receiver.alert_texts());

    // The alert receiver refused by the host too, its URL carrying a password: the run's
    // failure (Postgres refused, as above) cannot be told, and the log says so. (The throttle
    // is emptied: that failure was alerted once already this hour.)
    let _: () = redis::cmd("FLUSHDB").query_async(&mut env.redis.clone()).await.unwrap();
    let manifest = manifest_without_host("{{ database_host }}").replace(", \"{{ alert_webhook_host }}\"", "");
    vars.insert(
        "alert_webhook_url".into(),
        with_password(&format!("{}/hook", receiver.url), "al", "AlS3cret"),
    );
    let app = app_of(&manifest, "jobs-http", &vars).await;
    let r = post_health(&app).await;
    assert_eq!(r.status, 500, "{}", r.json);
    assert!(app.output().contains("alert not delivered"), "the lost alert is logged:\n{}", app.output());
    exits.extend([r.json.to_string(), app.output()]);

    for text in &exits {
        for secret in ["PgS3cret", "RdS3cret", "PrS3cret", "AlS3cret"] {
            assert!(!text.contains(secret), "{secret} in {text}");
        }
    }
}
