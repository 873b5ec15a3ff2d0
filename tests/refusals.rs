//! A request Meta refuses as a whole is about the request, never a verdict about a customer
//! (SPEC 5, step 6): the shipped .wasm, a real Postgres and Redis, and a Graph stand-in that
//! checks a batch's own `access_token` before it runs any operation, as Meta does. A refused
//! request gives none of its connections a row; when the refusal is about the request's own
//! token, its connections are checked again in the same run with another, so that the bad
//! token is found in its own operation and the others get their own verdicts.

mod common;

use common::fake::{Canned, FakeHttp};
use common::graph::{self, Script};
use common::seed::{self, Connection};
use common::*;
use serde_json::json;

const APP_SECRET: &str = "app-secret-for-signatures-only";

/// `n` active connections of `waba`, phone ids `first..first + n`, each with a token of its own
/// (`EAAB-<phone id>`), the first the stalest.
async fn seed_with_tokens(env: &Env, waba: &str, first: i32, n: i32) {
    for phone in first..first + n {
        let phone_id = phone.to_string();
        seed::connection(
            &env.db,
            Connection {
                phone_number_id: Some(&phone_id),
                waba_id: Some(waba),
                checked_hours_ago: Some(1_000 - phone),
                stored_token: Some(seed::encrypt(&format!("EAAB-{phone}"))),
                ..Default::default()
            },
        )
        .await;
    }
}

/// The variables of a WhaTrack that set `meta_app_secret` (for the webhook signatures) but not
/// `meta_app_id`: it has no app token, so a batch's own token is a customer's.
fn without_app_token(env: &Env, graph: &str, alerts: &str) -> std::collections::HashMap<String, String> {
    let mut vars = env.variables(graph);
    vars.insert("meta_app_secret".into(), APP_SECRET.into());
    vars.insert("alert_webhook_url".into(), format!("{alerts}/hooks/alerts"));
    vars.insert("alert_webhook_host".into(), alerts.into());
    vars
}

async fn count_where(env: &Env, condition: &str) -> i64 {
    env.count(&format!("SELECT count(*) FROM whatsapp_health WHERE {condition}")).await
}

/// 60 connections, the stalest one's token revoked. Its batch of 50 goes first with that token
/// as its own (every connection was last seen healthy) and is refused as a whole; checked again
/// with another token, the revoked connection is `error` and the other 59 `healthy`, after one
/// run, with no `unknown` row.
#[tokio::test(flavor = "multi_thread")]
async fn one_revoked_token_never_blinds_its_batch() {
    let env = Env::new().await;
    let script = Script::default();
    for phone in 2..=60 {
        script.known_token(&format!("EAAB-{phone}"));
    }
    let fake = graph::start(&script).await;
    let receiver = FakeHttp::start(|_| Canned::text(200, "ok")).await;
    seed_with_tokens(&env, "2001", 1, 60).await;
    let app = app("jobs-http", &without_app_token(&env, &fake.url, &receiver.url)).await;

    let r = post_health(&app).await;
    assert_eq!(r.status, 200, "{}", r.json);
    let summary = &r.json["summary"];
    assert_eq!(
        (summary["checked"].as_i64(), summary["healthy"].as_i64(), summary["error"].as_i64()),
        (Some(60), Some(59), Some(1)),
        "{summary}"
    );
    assert_eq!(
        (summary["unknown"].as_i64(), summary["unanswered"].as_i64()),
        (Some(0), Some(0)),
        "{summary}"
    );
    assert_eq!(count_where(&env, "status = 'unknown'").await, 0);
    let (status, reason): (String, String) = {
        let row = env
            .db
            .query_one(
                "SELECT c.\"healthStatus\", h.\"apiResponse\" FROM whatsapp_connections c \
                 JOIN whatsapp_health h ON h.\"connectionId\" = c.id WHERE c.\"phoneNumberId\" = '1'",
                &[],
            )
            .await
            .unwrap();
        (row.get(0), row.get(1))
    };
    assert_eq!(status, "error");
    assert!(reason.contains("190"), "{reason}");

    // The refused request, then its connections again with a token Meta accepts; the rest.
    let requests = fake.requests();
    assert!(requests.len() <= 4, "{} requests", requests.len());
    let calls = graph::calls(&requests);
    let revoked_read =
        |request: usize| calls.iter().any(|c| c.request == request && c.target.starts_with("/v25.0/1?"));
    let with_revoked: Vec<usize> = (0..requests.len()).filter(|r| revoked_read(*r)).collect();
    assert_eq!(with_revoked.len(), 2, "asked about once more after the refusal: {with_revoked:?}");
    let logs = app.output();
    assert!(logs.contains("Meta refused the request's own token"), "{logs}");
    assert!(!logs.contains("EAAB-"), "no token in the log");
    assert!(receiver.alert_texts().iter().all(|t| !t.contains("EAAB-")));
}

/// Meta answers a whole batch with a business code for the business of the request's own
/// token: that business waits (one cool-down, one alert); the other businesses in the batch
/// are checked in the same run.
#[tokio::test(flavor = "multi_thread")]
async fn a_business_code_on_the_whole_batch_holds_that_business_only() {
    let env = Env::new().await;
    let script = Script::default();
    let mut refusal = graph::business_throttled();
    refusal.headers.push((
        "x-business-use-case-usage".into(),
        json!({"4001":[{"type":"whatsapp_business_management","call_count":100,"total_cputime":3,
                        "total_time":4,"estimated_time_to_regain_access":7}]})
        .to_string(),
    ));
    // The stalest connection is 4001's: its token is the first batch's own.
    script.refuse_batches_with("EAAB-1", refusal);
    let fake = graph::start(&script).await;
    let receiver = FakeHttp::start(|_| Canned::text(200, "ok")).await;
    seed_with_tokens(&env, "4001", 1, 10).await;
    seed_with_tokens(&env, "4002", 11, 10).await;
    seed_with_tokens(&env, "4003", 21, 10).await;
    let app = app("jobs-http", &without_app_token(&env, &fake.url, &receiver.url)).await;

    let r = post_health(&app).await;
    assert_eq!(r.status, 200, "{}", r.json);
    let summary = &r.json["summary"];
    assert_eq!(
        (summary["checked"].as_i64(), summary["healthy"].as_i64(), summary["throttled"].as_i64()),
        (Some(20), Some(20), Some(10)),
        "{summary}"
    );
    assert_eq!(summary["unknown"], 0, "{summary}");
    assert_eq!(
        (
            env.health_rows_of_business("4001").await,
            env.health_rows_of_business("4002").await,
            env.health_rows_of_business("4003").await
        ),
        (0, 10, 10)
    );
    let mut redis = env.redis.clone();
    let held: Vec<(String, f64)> = redis::cmd("ZRANGE")
        .arg("graph-cooldown:businesses")
        .arg(0)
        .arg(-1)
        .arg("WITHSCORES")
        .query_async(&mut redis)
        .await
        .unwrap();
    assert_eq!(held.iter().map(|(b, _)| b.as_str()).collect::<Vec<_>>(), ["4001"]);
    let minutes = (held[0].1 - chrono::Utc::now().timestamp_millis() as f64) / 60_000.0;
    assert!((6.5..=7.0).contains(&minutes), "Meta's 7 minutes for the business: {minutes}");
    let alerts = receiver.alert_texts();
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert!(alerts[0].contains("business 4001"), "{alerts:?}");
    assert_eq!(
        env.count("SELECT count(*) FROM whatsapp_connections WHERE \"healthStatus\" <> 'healthy'").await,
        0
    );
}

/// A batch answered with anything but Meta's array (a page, another object, a gateway error,
/// Meta's error object about the request) gives no connection a row or a status change: they
/// wait for a later run, counted as `unanswered`, and no streak of unknowns begins.
#[tokio::test(flavor = "multi_thread")]
async fn a_batch_answered_with_garbage_gives_no_verdict() {
    for (name, answer) in [
        ("an HTML page", Canned::text(200, "<html>maintenance</html>")),
        ("an object", Canned::json(200, json!({"data": []}))),
        ("a gateway error", Canned::text(502, "Bad Gateway")),
        (
            "Meta's error object",
            graph::graph_error(500, 1, None, "OAuthException", "An unknown error occurred", true),
        ),
    ] {
        let env = Env::new().await;
        let fake = FakeHttp::start(move |_| answer.clone()).await;
        seed_with_tokens(&env, "2001", 1, 5).await;
        let app = app("jobs-http", &env.variables(&fake.url)).await;
        for run in 1..=3 {
            let r = post_health(&app).await;
            assert_eq!(r.status, 200, "{name}: {}", r.json);
            let summary = &r.json["summary"];
            assert_eq!(
                (summary["checked"].as_i64(), summary["unanswered"].as_i64(), summary["remaining"].as_i64()),
                (Some(0), Some(5), Some(5)),
                "{name}, run {run}: {summary}"
            );
        }
        assert_eq!(env.count("SELECT count(*) FROM whatsapp_health").await, 0, "{name}");
        assert_eq!(
            env.count(
                "SELECT count(*) FROM whatsapp_connections WHERE \"healthStatus\" = 'healthy' \
                 AND \"lastHealthCheckAt\" < timezone('UTC', now()) - interval '900 hours'"
            )
            .await,
            5,
            "{name}: left as they were"
        );
        assert_eq!(env.job_runs().await[0].status, "partial", "{name}");
    }
}
