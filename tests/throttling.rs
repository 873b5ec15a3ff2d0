//! Meta's limits end to end (SPEC 5, step 7): the shipped .wasm, a real Postgres and Redis, and
//! a Graph stand-in that throttles the app or a business, and sends rising usage headers.
//! Throttling is never a finding about a customer: a connection Meta would not answer for is
//! not checked, keeps its status, and goes first next run.

mod common;

use common::fake::{Canned, FakeHttp};
use common::graph::{self, Script};
use common::*;
use serde_json::Value;

const APP_ID: &str = "123456";
const APP_SECRET: &str = "app-secret-never-logged-42";

/// `n` active connections of `waba`, phone ids `first..first + n`, each last checked 100 +
/// (phone id) hours ago: the highest id is the stalest.
async fn seed_estate(env: &Env, waba: &str, first: i32, n: i32) {
    env.db
        .execute(
            "WITH c AS (
                 INSERT INTO whatsapp_connections (\"organizationId\", \"wabaId\", \"phoneNumberId\", status,
                     \"healthStatus\", \"lastHealthCheckAt\", \"updatedAt\")
                 SELECT gen_random_uuid(), $1, p::text, 'active', 'healthy',
                     timezone('UTC', now()) - make_interval(hours => 100 + p), timezone('UTC', now()) - interval '1 day'
                 FROM generate_series($2::int, $2::int + $3::int - 1) p
                 RETURNING id, \"organizationId\", \"wabaId\")
             INSERT INTO whatsapp_configs (\"organizationId\", \"connectionId\", \"wabaId\", \"accessToken\", status, \"updatedAt\")
             SELECT \"organizationId\", id, \"wabaId\", $4, 'connected', timezone('UTC', now()) FROM c",
            &[&waba, &first, &n, &seed::encrypt("EAAB-estate")],
        )
        .await
        .unwrap();
}

fn variables(env: &Env, graph: &str, alerts: &str) -> std::collections::HashMap<String, String> {
    let mut vars = env.variables(graph);
    vars.insert("meta_app_id".into(), APP_ID.into());
    vars.insert("meta_app_secret".into(), APP_SECRET.into());
    vars.insert("alert_webhook_url".into(), format!("{alerts}/hooks/alerts"));
    vars.insert("alert_webhook_host".into(), alerts.into());
    // One request at a time, so that "after the throttle" is a fact of order, not of timing.
    vars.insert("health_check_concurrency".into(), "1".into());
    vars
}

/// The phone ids of the node reads in `requests`, in order.
fn phones_read(requests: &[common::fake::Recorded]) -> Vec<i32> {
    graph::calls(requests)
        .iter()
        .filter(|c| !c.target.contains("debug_token"))
        .map(|c| c.target.split('?').next().unwrap().rsplit('/').next().unwrap().parse().unwrap())
        .collect()
}

async fn pttl(env: &Env, key: &str) -> i64 {
    let mut r = env.redis.clone();
    redis::cmd("PTTL").arg(key).query_async(&mut r).await.unwrap()
}

async fn redis_del(env: &Env, key: &str) {
    let mut r = env.redis.clone();
    let _: () = redis::cmd("DEL").arg(key).query_async(&mut r).await.unwrap();
}

/// Rows and statuses of the estate: how many were checked (a `whatsapp_health` row and a fresh
/// `"lastHealthCheckAt"`), and how many still look exactly as seeded.
async fn estate_state(env: &Env) -> (i64, i64, i64) {
    let rows = env.count("SELECT count(*) FROM whatsapp_health").await;
    let checked = env
        .count("SELECT count(*) FROM whatsapp_connections WHERE \"lastHealthCheckAt\" > timezone('UTC', now()) - interval '1 hour'")
        .await;
    let untouched = env
        .count(
            "SELECT count(*) FROM whatsapp_connections WHERE \"healthStatus\" = 'healthy' \
             AND \"lastHealthCheckAt\" < timezone('UTC', now()) - interval '100 hours' \
             AND \"updatedAt\" < timezone('UTC', now()) - interval '23 hours'",
        )
        .await;
    (rows, checked, untouched)
}

/// Meta throttles the app (code 4) after `after` calls: the run calls nothing more, changes no
/// connection it could not check, keeps a cool-down that the next run obeys, and the run after
/// the cool-down finishes the estate, stalest first.
async fn an_app_throttle(estate: i32, after: u64, batch_size: &str) {
    let env = Env::new().await;
    let script = Script::default();
    script.app_token(APP_ID, APP_SECRET).throttle_app_after(after);
    let fake = graph::start(&script).await;
    let receiver = FakeHttp::start(|_| Canned::text(200, "ok")).await;
    seed_estate(&env, "2001", 1, estate).await;
    let mut vars = variables(&env, &fake.url, &receiver.url);
    vars.insert("graph_batch_size".into(), batch_size.into());
    let app = app("jobs-http", &vars).await;

    let r = post_health(&app).await;
    assert_eq!(r.status, 200, "{}", r.json);
    let summary = &r.json["summary"];
    let checked = summary["checked"].as_i64().unwrap();
    assert_eq!(checked as u64, after / 2, "two calls a connection: {summary}");
    assert_eq!(summary["healthy"].as_i64(), Some(checked), "{summary}");
    assert_eq!(summary["throttled"].as_i64(), Some(i64::from(estate) - checked), "{summary}");
    assert_eq!(summary["remaining"], summary["throttled"], "{summary}");
    assert_eq!(summary["unknown"], 0, "a throttle is no finding: {summary}");
    let first_throttled = script.first_throttled_request().expect("Meta throttled");
    assert_eq!(fake.requests().len(), first_throttled + 1, "not one request after the throttle");
    assert_eq!(estate_state(&env).await, (checked, checked, i64::from(estate) - checked));
    assert_eq!(env.job_runs().await[0].status, "partial");
    // Meta gave no wait: the default 15 minutes.
    let ttl = pttl(&env, "graph-cooldown:app").await;
    assert!((14 * 60_000..=15 * 60_000).contains(&ttl), "cool-down of {ttl} ms");
    let alerts = receiver.alert_texts();
    assert_eq!(alerts.len(), 1, "one alert for the throttle: {alerts:?}");
    assert!(alerts[0].contains("Meta throttled the app"), "{alerts:?}");
    let logs = app.output();
    assert!(!logs.contains("EAAB-") && !logs.contains(APP_SECRET), "no token in the log");

    // Inside the cool-down: skipped at once, nothing called.
    let requests_before = fake.requests().len();
    let skipped = post_health(&app).await;
    assert_eq!(skipped.status, 200, "{}", skipped.json);
    assert!(skipped.json["message"].as_str().unwrap().contains("cool-down"), "{}", skipped.json);
    assert!(skipped.json["summary"]["coolDownUntil"].as_str().unwrap().ends_with('Z'), "{}", skipped.json);
    assert_eq!(fake.requests().len(), requests_before, "no Graph call inside the cool-down");
    let runs = env.job_runs().await;
    assert_eq!(runs[1].status, "skipped", "{runs:?}");

    // The cool-down over (an operator may end it as here), the next run finishes the estate.
    redis_del(&env, "graph-cooldown:app").await;
    script.throttle_app_after(u64::MAX);
    let done = post_health(&app).await;
    assert_eq!(done.json["summary"]["checked"].as_i64(), Some(i64::from(estate) - checked), "{}", done.json);
    assert_eq!(done.json["summary"]["throttled"], 0);
    let answered_first: Vec<i32> = phones_read(&fake.requests()[..first_throttled]);
    let answered_next: Vec<i32> = phones_read(&fake.requests()[requests_before..]);
    let order: Vec<i32> = answered_first.into_iter().chain(answered_next).collect();
    assert_eq!(order, (1..=estate).rev().collect::<Vec<_>>(), "each once, stalest first");
    assert_eq!(estate_state(&env).await, (i64::from(estate), i64::from(estate), 0));
}

#[tokio::test(flavor = "multi_thread")]
async fn an_app_throttle_stops_the_calls_and_blames_no_connection() {
    // 25 connections a batch: the throttle comes in the seventh of forty batches.
    an_app_throttle(1_000, 300, "50").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_app_throttle_stops_single_calls_too() {
    an_app_throttle(40, 30, "1").await;
}

/// One business throttled (80007, with Meta's wait): its connections wait for a later run, the
/// others are checked in this one.
#[tokio::test(flavor = "multi_thread")]
async fn a_throttled_business_waits_while_the_others_are_checked() {
    let env = Env::new().await;
    let script = Script::default();
    script.app_token(APP_ID, APP_SECRET).throttle_business_after("3003", 3, 7);
    for phone in 1..=20 {
        script.business(&phone.to_string(), "3003");
    }
    let fake = graph::start(&script).await;
    let receiver = FakeHttp::start(|_| Canned::text(200, "ok")).await;
    seed_estate(&env, "3003", 1, 20).await;
    seed_estate(&env, "3004", 21, 20).await;
    seed_estate(&env, "3005", 41, 20).await;
    let mut vars = variables(&env, &fake.url, &receiver.url);
    // Five connections a request, in order: the throttled business comes in the last four.
    vars.insert("graph_batch_size".into(), "10".into());
    let app = app("jobs-http", &vars).await;

    let r = post_health(&app).await;
    assert_eq!(r.status, 200, "{}", r.json);
    let summary = &r.json["summary"];
    assert_eq!(
        (summary["checked"].as_i64(), summary["throttled"].as_i64()),
        (Some(43), Some(17)),
        "{summary}"
    );
    assert_eq!(summary["remaining"], 17, "{summary}");
    let throttled_at = script.first_throttled_request().expect("Meta throttled the business");
    let read_after: Vec<i32> = phones_read(&fake.requests()[throttled_at + 1..]);
    assert!(read_after.is_empty(), "no call for the business after its throttle: {read_after:?}");
    assert_eq!(
        (
            env.health_rows_of_business("3003").await,
            env.health_rows_of_business("3004").await,
            env.health_rows_of_business("3005").await
        ),
        (3, 20, 20)
    );
    let mut redis = env.redis.clone();
    let until: f64 = redis::cmd("ZSCORE")
        .arg("graph-cooldown:businesses")
        .arg("3003")
        .query_async(&mut redis)
        .await
        .unwrap();
    let in_minutes = (until - chrono::Utc::now().timestamp_millis() as f64) / 60_000.0;
    assert!((6.5..=7.0).contains(&in_minutes), "Meta's 7 minutes, kept: {in_minutes}");
    assert_eq!(env.count("SELECT count(*) FROM whatsapp_health WHERE status = 'unknown'").await, 0);
    let alerts = receiver.alert_texts();
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert!(alerts[0].contains("business 3003"), "{alerts:?}");

    // Inside the business's cool-down: its connections wait, nothing is called.
    let before = fake.requests().len();
    let again = post_health(&app).await;
    assert_eq!(
        (again.json["summary"]["checked"].as_i64(), again.json["summary"]["throttled"].as_i64()),
        (Some(0), Some(17))
    );
    assert_eq!(fake.requests().len(), before, "{}", again.json);

    // Over, the business's connections are checked.
    let _: () = redis::cmd("ZREM")
        .arg("graph-cooldown:businesses")
        .arg("3003")
        .query_async(&mut redis)
        .await
        .unwrap();
    script.throttle_business_after("3003", u64::MAX, 0);
    let last = post_health(&app).await;
    assert_eq!(last.json["summary"]["checked"].as_i64(), Some(17), "{}", last.json);
    assert_eq!(env.health_rows_of_business("3003").await, 20);
}

/// Usage rising with every call: the run stops at `graph_usage_ceiling_percent`, before Meta
/// has to throttle, and the figures are where an operator looks.
#[tokio::test(flavor = "multi_thread")]
async fn rising_usage_stops_the_run_before_the_limit() {
    let env = Env::new().await;
    let script = Script::default();
    // Half a percent a call: ten calls a request add five points.
    script.app_usage_per_call(0.5);
    let fake = graph::start(&script).await;
    seed_estate(&env, "2001", 1, 300).await;
    let mut vars = env.variables(&fake.url);
    vars.insert("health_check_concurrency".into(), "1".into());
    vars.insert("graph_batch_size".into(), "10".into());
    vars.insert("graph_usage_ceiling_percent".into(), "95".into());
    let app = app("jobs-http", &vars).await;
    let r = post_health(&app).await;
    assert_eq!(r.status, 200, "{}", r.json);
    let summary = &r.json["summary"];
    assert_eq!(fake.requests().len(), 19, "the request that reported 95% was the last");
    assert_eq!((summary["checked"].as_i64(), summary["paced"].as_i64()), (Some(190), Some(110)), "{summary}");
    assert_eq!(summary["throttled"], 0);
    assert_eq!(summary["unknown"], 0);
    assert_eq!(env.redis_get("graph-cooldown:app").await, None, "pacing keeps no cool-down");

    let status = call(&app, "GET", "/api/v1/jobs/whatsapp-health-check", &[("x-cron-secret", SECRET)]).await;
    let app_usage = &status.json["graphUsage"]["app"];
    assert_eq!(app_usage["callCount"], 95.0, "{}", status.json);
    assert!(app_usage["at"].as_str().unwrap().ends_with('Z'), "read when: {}", status.json);
    let metrics = call(&app, "GET", "/api/v1/metrics", &[("x-cron-secret", SECRET)]).await;
    assert!(
        metrics.text.contains("whatrack_graph_app_usage_percent{figure=\"call_count\"} 95"),
        "{}",
        metrics.text
    );

    // The next run starts from those figures: one request, and it stops again at once.
    let again = post_health(&app).await;
    assert_eq!(again.json["summary"]["checked"].as_i64(), Some(10), "{}", again.json);
}

/// A run that stopped at the ceiling leaves its figures, with when they were read; the next,
/// at the default concurrency, sends one request first and no more while Meta's figures stay
/// at the ceiling: Meta never has to throttle it. Once Meta's hour has passed, the first
/// request's low figures let the run go on at full concurrency.
#[tokio::test(flavor = "multi_thread")]
async fn pacing_starts_from_the_figures_of_the_last_run() {
    let env = Env::new().await;
    let script = Script::default();
    // Half a percent a call, and Meta throttles the app at 100%.
    script.app_usage_per_call(0.5).throttle_app_after(200);
    let fake = graph::start(&script).await;
    seed_estate(&env, "2001", 1, 600).await;
    let mut vars = env.variables(&fake.url);
    vars.insert("graph_batch_size".into(), "10".into());
    vars.insert("graph_usage_ceiling_percent".into(), "95".into());
    let mut one_at_a_time = vars.clone();
    one_at_a_time.insert("health_check_concurrency".into(), "1".into());
    let first = post_health(&app("jobs-http", &one_at_a_time).await).await;
    assert_eq!(first.json["summary"]["checked"].as_i64(), Some(190), "{}", first.json);
    let after_first = fake.requests().len();
    let kept = env.redis_get("graph-usage").await.expect("the figures are kept");
    let kept: Value = serde_json::from_str(&kept).unwrap();
    assert_eq!(kept["app"]["callCount"], 95.0, "{kept}");

    let app = app("jobs-http", &vars).await;
    let second = post_health(&app).await;
    assert_eq!(second.status, 200, "{}", second.json);
    let summary = &second.json["summary"];
    assert_eq!(fake.requests().len(), after_first + 1, "one request first: {summary}");
    assert_eq!(script.first_throttled_request(), None, "Meta never throttled: {summary}");
    assert_eq!(
        (summary["checked"].as_i64(), summary["throttled"].as_i64()),
        (Some(10), Some(0)),
        "{summary}"
    );
    assert_eq!(summary["paced"].as_i64(), Some(400), "{summary}");
    assert!(app.output().contains("\"cautious\":true"), "the run says why it went slowly");

    // Meta's hour over (and its limit out of the way of the requests already in flight when
    // the figures come back to the ceiling).
    script.usage_lapsed().throttle_app_after(u64::MAX);
    let third = post_health(&app).await;
    let summary = &third.json["summary"];
    let (checked, paced) = (summary["checked"].as_i64().unwrap(), summary["paced"].as_i64().unwrap());
    assert!(checked >= 190 && checked + paced == 400, "{summary}");
    assert!(fake.max_in_flight() > 1, "full concurrency once the first request's figures allowed");
}

/// Meta reports a business's usage on the operations about it (`include_headers=true`), not
/// always on the batch: read there, a business at the ceiling waits while the others go on.
#[tokio::test(flavor = "multi_thread")]
async fn a_business_at_the_ceiling_waits_when_its_figures_come_per_operation() {
    let env = Env::new().await;
    let script = Script::default();
    for phone in 21..=40 {
        script.business(&phone.to_string(), "3003");
    }
    script.business_usage_per_call("3003", 10.0);
    let fake = graph::start(&script).await;
    // 3003's connections are the stalest: they fill the first two requests.
    seed_estate(&env, "3003", 21, 20).await;
    seed_estate(&env, "3004", 1, 20).await;
    let mut vars = env.variables(&fake.url);
    vars.insert("health_check_concurrency".into(), "1".into());
    vars.insert("graph_batch_size".into(), "10".into());
    let app = app("jobs-http", &vars).await;
    let r = post_health(&app).await;
    let summary = &r.json["summary"];
    assert_eq!((summary["checked"].as_i64(), summary["paced"].as_i64()), (Some(30), Some(10)), "{summary}");
    let requests = fake.requests();
    assert!(
        phones_read(&requests[1..]).iter().all(|p| *p <= 20),
        "no call for 3003 once its figures reached the ceiling"
    );
    assert!(
        fake.requests().iter().all(|r| String::from_utf8_lossy(&r.body).contains("include_headers=true")),
        "each operation's headers asked for"
    );
    let kept: Value = serde_json::from_str(&env.redis_get("graph-usage").await.unwrap()).unwrap();
    assert_eq!(kept["businesses"]["3003"]["callCount"], 100.0, "{kept}");
}

/// Batches of whole connections, never more than Meta's 50 calls.
#[tokio::test(flavor = "multi_thread")]
async fn batches_hold_at_most_fifty_calls() {
    let env = Env::new().await;
    let script = Script::default();
    script.app_token(APP_ID, APP_SECRET).known_token("EAAB-estate");
    let fake = graph::start(&script).await;
    seed_estate(&env, "2001", 1, 120).await;
    let mut vars = env.variables(&fake.url);
    vars.insert("meta_app_id".into(), APP_ID.into());
    vars.insert("meta_app_secret".into(), APP_SECRET.into());
    let app = app("jobs-http", &vars).await;
    let r = post_health(&app).await;
    assert_eq!(r.json["summary"]["healthy"], 120, "{}", r.json);
    let requests = fake.requests();
    assert_eq!(requests.len(), 5, "25 connections a batch");
    let calls = graph::calls(&requests);
    for request in 0..requests.len() {
        assert!(calls.iter().filter(|c| c.request == request).count() <= 50);
    }
    assert!(requests.iter().all(|r| r.method == "POST" && r.target == "/v25.0/"));
    assert!(requests.iter().all(|r| r.header("content-type") == Some("application/x-www-form-urlencoded")));

    let mut vars = vars.clone();
    vars.insert("graph_batch_size".into(), "51".into());
    let refused = post_health(&common::app("jobs-http", &vars).await).await;
    assert_eq!(refused.status, 500);
    assert!(refused.json["error"].as_str().unwrap().contains("graph_batch_size"), "{}", refused.json);
}

/// A `null` element is `unknown` for its own connection; the others in the batch are checked.
#[tokio::test(flavor = "multi_thread")]
async fn a_null_element_is_unknown_for_that_connection_only() {
    let env = Env::new().await;
    let script = Script::default();
    script.node("3", graph::no_answer());
    let fake = graph::start(&script).await;
    seed_estate(&env, "2001", 1, 5).await;
    let r = post_health(&app("jobs-http", &env.variables(&fake.url)).await).await;
    assert_eq!(
        (r.json["summary"]["healthy"].as_i64(), r.json["summary"]["unknown"].as_i64()),
        (Some(4), Some(1)),
        "{}",
        r.json
    );
    assert_eq!(fake.requests().len(), 1);
    let unknown: String = env
        .db
        .query_one(
            "SELECT c.\"phoneNumberId\" FROM whatsapp_health h JOIN whatsapp_connections c ON c.id = h.\"connectionId\" \
             WHERE h.status = 'unknown'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(unknown, "3");
}
