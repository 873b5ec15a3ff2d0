//! The webhook retry (dead-letter queue) end to end: the shipped .wasm in the test host, a real
//! Postgres and Redis, and a fake webhook processor on 127.0.0.1 that checks Meta's signature
//! and records every delivery.

mod common;

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::fake::{Canned, FakeHttp, Recorded};
use common::seed::{self, Webhook};
use common::*;
use hmac::{Hmac, Mac};
use serde_json::json;
use sha2::Sha256;
use uuid::Uuid;

const PATH: &str = "/api/v1/jobs/webhook-retry";
const APP_SECRET: &str = "meta-app-secret-for-signatures";

/// Answers per webhook id, in order; 200 once a script runs out.
#[derive(Clone, Default)]
struct Processor {
    script: Arc<Mutex<HashMap<String, VecDeque<Canned>>>>,
}

impl Processor {
    fn then(&self, id: Uuid, replies: Vec<Canned>) {
        self.script.lock().unwrap().insert(id.to_string(), replies.into());
    }

    async fn start(&self) -> FakeHttp {
        let script = self.script.clone();
        FakeHttp::start(move |req: &Recorded| {
            let id = req.header("x-webhook-log-id").unwrap_or_default().to_owned();
            // A receiver that checks Meta's signature, as WhaTrack's does.
            if !signature_ok(req) {
                return Canned::json(401, json!({"error":"bad signature"}));
            }
            script
                .lock()
                .unwrap()
                .get_mut(&id)
                .and_then(VecDeque::pop_front)
                .unwrap_or_else(|| Canned::json(200, json!({"ok":true})))
        })
        .await
    }
}

fn signature_ok(req: &Recorded) -> bool {
    let Some(sig) = req.header("x-hub-signature-256") else { return false };
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(APP_SECRET.as_bytes()).unwrap();
    mac.update(&req.body);
    sig == format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

fn vars(env: &Env, processor: &FakeHttp) -> HashMap<String, String> {
    let mut v = env.variables("http://127.0.0.1:9");
    v.insert("webhook_processor_url".into(), format!("{}/api/webhooks/whatsapp", processor.url));
    v.insert("webhook_processor_host".into(), processor.url.clone());
    v.insert("meta_app_id".into(), "123".into());
    v.insert("meta_app_secret".into(), APP_SECRET.into());
    v
}

async fn post(app: &TestApp) -> common::AppReply {
    call(app, "POST", PATH, &[("x-cron-secret", SECRET)]).await
}

#[derive(Debug)]
struct Row {
    processed: bool,
    retry_count: i32,
    error: Option<String>,
    dead: bool,
    processed_at: bool,
    /// Seconds from "lastRetryAt" to "nextRetryAt".
    backoff: Option<f64>,
}

async fn row(env: &Env, id: Uuid) -> Row {
    let r = env
        .db
        .query_one(
            "SELECT processed, \"retryCount\", \"processingError\", \"deadAt\" IS NOT NULL, \"processedAt\" IS NOT NULL, \
                    EXTRACT(EPOCH FROM \"nextRetryAt\" - \"lastRetryAt\")::float8 \
             FROM whatsapp_webhook_logs WHERE id = $1",
            &[&id],
        )
        .await
        .unwrap();
    Row {
        processed: r.get(0),
        retry_count: r.get(1),
        error: r.get(2),
        dead: r.get(3),
        processed_at: r.get(4),
        backoff: r.get(5),
    }
}

/// (attempt, httpStatus, error) of every attempt on a webhook.
async fn attempts(env: &Env, id: Uuid) -> Vec<(i32, Option<i32>, Option<String>)> {
    env.db
        .query(
            "SELECT attempt, \"httpStatus\", error FROM webhook_retry_attempts WHERE \"webhookLogId\" = $1 ORDER BY attempt",
            &[&id.to_string()],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect()
}

/// Makes a webhook due now, as if its backoff had elapsed.
async fn make_due(env: &Env, id: Uuid) {
    env.db
        .execute("UPDATE whatsapp_webhook_logs SET \"nextRetryAt\" = timezone('UTC', now()) - interval '1 second' WHERE id = $1", &[&id])
        .await
        .unwrap();
}

fn deliveries_of(fake: &FakeHttp, id: Uuid) -> Vec<Recorded> {
    fake.requests().into_iter().filter(|r| r.header("x-webhook-log-id") == Some(&id.to_string())).collect()
}

async fn status(app: &TestApp) -> serde_json::Value {
    call(app, "GET", PATH, &[("x-cron-secret", SECRET)]).await.json
}

#[tokio::test(flavor = "multi_thread")]
async fn mixed_outcomes_in_one_run() {
    let env = Env::new().await;
    let p = Processor::default();
    let fake = p.start().await;
    let ok = seed::webhook(&env.db, Webhook::default()).await;
    let server_error = seed::webhook(&env.db, Webhook::default()).await;
    let timeout = seed::webhook(&env.db, Webhook::default()).await;
    let throttled = seed::webhook(&env.db, Webhook::default()).await;
    let rejected = seed::webhook(&env.db, Webhook::default()).await;
    p.then(server_error, vec![Canned::text(502, "<html>Bad Gateway</html>")]);
    p.then(timeout, vec![Canned::json(200, json!({})).after(Duration::from_secs(12))]);
    let mut retry_after = Canned::json(429, json!({"error":"slow down"}));
    retry_after.headers.push(("retry-after".into(), "7200".into()));
    p.then(throttled, vec![retry_after]);
    p.then(rejected, vec![Canned::json(400, json!({"error":"unknown phone number id"}))]);

    let app = app("jobs-http", &vars(&env, &fake)).await;
    let r = post(&app).await;
    assert_eq!(r.status, 200, "{}", r.json);
    assert_eq!(r.json["message"], "Webhook retry completed");
    assert!(r.json["jobId"].as_str().unwrap().starts_with("webhook-retry-"));
    assert_eq!(
        r.json["summary"],
        json!({"attempted":5,"delivered":1,"failed":3,"deadLettered":1,"expired":0,"exhausted":0,"remaining":0,"held":0})
    );

    let delivered = row(&env, ok).await;
    assert!(
        delivered.processed
            && delivered.processed_at
            && delivered.error.is_none()
            && delivered.retry_count == 0
    );
    assert_eq!(attempts(&env, ok).await, [(1, Some(200), None)]);

    let s = row(&env, server_error).await;
    assert!(!s.processed && !s.dead);
    assert_eq!((s.retry_count, s.error.as_deref()), (1, Some("HTTP 502: <html>Bad Gateway</html>")));
    let b = s.backoff.unwrap();
    assert!((600.0..=660.0).contains(&b), "base 300 * 2^1 plus at most 10%: {b}");

    let t = row(&env, timeout).await;
    assert_eq!(t.retry_count, 1);
    assert!(t.error.as_deref().unwrap().contains("timed out"), "{t:?}");
    assert_eq!(attempts(&env, timeout).await[0].1, None, "no HTTP status for a timeout");

    let th = row(&env, throttled).await;
    assert_eq!(th.retry_count, 1);
    assert!((th.backoff.unwrap() - 7200.0).abs() < 2.0, "Retry-After wins when later: {:?}", th.backoff);

    let rej = row(&env, rejected).await;
    assert!(rej.dead && !rej.processed);
    assert_eq!(rej.error.as_deref(), Some(r#"rejected: HTTP 400: {"error":"unknown phone number id"}"#));
    assert_eq!(attempts(&env, rejected).await, [(1, Some(400), rej.error.clone())]);

    // What the processor received.
    let d = &deliveries_of(&fake, ok)[0];
    assert_eq!(d.method, "POST");
    assert_eq!(d.target, "/api/webhooks/whatsapp");
    assert_eq!(d.header("content-type"), Some("application/json"));
    assert_eq!(d.header("x-webhook-retry-attempt"), Some("1"));
    assert!(signature_ok(d));
    let sent: serde_json::Value = serde_json::from_slice(&d.body).unwrap();
    assert_eq!(sent, Webhook::default().payload, "the stored payload JSON");

    let out = app.output();
    assert!(out.lines().all(|l| l.contains("\"job\":\"WebhookRetryJob\"")), "{out}");
    assert!(!out.contains(APP_SECRET) && !out.contains(SECRET));
    let runs = env.job_runs().await;
    assert_eq!((runs[0].job_type.as_str(), runs[0].status.as_str()), ("webhook-retry", "succeeded"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failure_is_retried_only_when_due_then_delivered() {
    let env = Env::new().await;
    let p = Processor::default();
    let fake = p.start().await;
    let id = seed::webhook(&env.db, Webhook::default()).await;
    let fresh = seed::webhook(&env.db, Webhook { created_minutes_ago: 1, ..Default::default() }).await;
    p.then(id, vec![Canned::text(500, "oops")]);
    let app = app("jobs-http", &vars(&env, &fake)).await;

    assert_eq!(post(&app).await.json["summary"]["failed"], 1);
    // Not due yet (10 minutes of backoff; the fresh one is still in its 5-minute grace period).
    let second = post(&app).await;
    assert_eq!(second.json["summary"]["attempted"], 0, "{}", second.json);
    assert_eq!(deliveries_of(&fake, id).len(), 1);
    assert!(deliveries_of(&fake, fresh).is_empty());

    make_due(&env, id).await;
    let third = post(&app).await;
    assert_eq!(third.json["summary"]["delivered"], 1);
    let d = deliveries_of(&fake, id);
    assert_eq!(d.len(), 2);
    assert_eq!(d[1].header("x-webhook-retry-attempt"), Some("2"));
    assert!(row(&env, id).await.processed);
    assert_eq!(
        attempts(&env, id).await,
        [(1, Some(500), Some("HTTP 500: oops".into())), (2, Some(200), None)]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn dead_lettered_after_max_attempts_with_exponential_backoff() {
    let env = Env::new().await;
    let p = Processor::default();
    let fake = p.start().await;
    let id = seed::webhook(&env.db, Webhook::default()).await;
    p.then(
        id,
        vec![
            Canned::text(503, "down"),
            Canned::text(503, "down"),
            Canned::text(503, "down"),
            Canned::text(503, "down"),
        ],
    );
    let mut v = vars(&env, &fake);
    v.insert("webhook_retry_base_seconds".into(), "60".into());
    v.insert("webhook_retry_max_attempts".into(), "3".into());
    let app = app("jobs-http", &v).await;

    for (n, expected) in [(1, 120.0), (2, 240.0)] {
        let r = post(&app).await;
        assert_eq!(r.json["summary"]["failed"], 1, "{}", r.json);
        let w = row(&env, id).await;
        assert_eq!(w.retry_count, n);
        let b = w.backoff.unwrap();
        assert!(b >= expected && b <= expected * 1.1 + 0.01, "after failure {n}: {b} vs {expected}");
        make_due(&env, id).await;
    }
    let last = post(&app).await;
    assert_eq!(
        last.json["summary"],
        json!({"attempted":1,"delivered":0,"failed":0,"deadLettered":1,"expired":0,"exhausted":0,"remaining":0,"held":0})
    );
    let w = row(&env, id).await;
    assert!(w.dead && !w.processed);
    assert_eq!(w.retry_count, 3);
    assert_eq!(w.error.as_deref(), Some("HTTP 503: down (attempt 3 of 3)"));
    assert_eq!(attempts(&env, id).await.len(), 3);
    // Dead rows stay put.
    make_due(&env, id).await;
    assert_eq!(post(&app).await.json["summary"]["attempted"], 0);
    assert_eq!(deliveries_of(&fake, id).len(), 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn rows_that_are_not_pending_are_never_delivered() {
    let env = Env::new().await;
    let p = Processor::default();
    let fake = p.start().await;
    for w in [
        Webhook { signature_valid: Some(false), ..Default::default() },
        Webhook { signature_valid: None, ..Default::default() },
        Webhook { processed: true, ..Default::default() },
        Webhook { dead: true, ..Default::default() },
        Webhook { retry_count: 3, ..Default::default() },
    ] {
        seed::webhook(&env.db, w).await;
    }
    let app = app("jobs-http", &vars(&env, &fake)).await;
    let r = post(&app).await;
    assert_eq!(r.json["summary"]["attempted"], 0, "{}", r.json);
    assert!(fake.requests().is_empty());
    // The row whose retryCount already reached the maximum is dead-lettered, not delivered.
    assert_eq!(r.json["summary"]["exhausted"], 1, "{}", r.json);
    let s = status(&app).await;
    assert_eq!((s["pendingWebhooks"].as_u64(), s["deadWebhooks"].as_u64()), (Some(0), Some(2)));
}

/// Stores one webhook with `raw` as its `"rawBody"`, runs the retry, and returns what the
/// processor received.
async fn deliver_raw(raw: &str) -> Recorded {
    let env = Env::new().await;
    let fake = Processor::default().start().await;
    let id = seed::webhook(&env.db, Webhook { raw_body: Some(raw), ..Default::default() }).await;
    let app = app("jobs-http", &vars(&env, &fake)).await;
    let r = post(&app).await;
    assert_eq!(r.json["summary"]["delivered"], 1, "{}", r.json);
    deliveries_of(&fake, id).remove(0)
}

#[tokio::test(flavor = "multi_thread")]
async fn raw_body_is_sent_byte_for_byte_and_signed_over_those_bytes() {
    let raw = "{\"object\":\"whatsapp_business_account\",  \"entry\":[ {\"id\":\"2001\", \"text\":\"ol\u{e1} \u{1f44b}\"} ]}\n";
    let d = deliver_raw(raw).await;
    assert_eq!(d.body.as_ref(), raw.as_bytes());
    assert_eq!(d.header("content-length"), Some(raw.len().to_string().as_str()), "a length, not chunks");
    assert!(signature_ok(&d));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_three_megabyte_payload_is_delivered_whole() {
    let big = json!({"object":"whatsapp_business_account","blob":"x".repeat(3 * 1024 * 1024)}).to_string();
    let d = deliver_raw(&big).await;
    assert_eq!(d.body.len(), big.len());
    assert!(d.body.as_ref() == big.as_bytes());
    assert!(signature_ok(&d));
}

#[tokio::test(flavor = "multi_thread")]
async fn two_runs_at_once_deliver_each_row_at_most_once() {
    let env = Env::new().await;
    let p = Processor::default();
    let fake = p.start().await;
    let mut ids = Vec::new();
    for _ in 0..60 {
        let id = seed::webhook(&env.db, Webhook::default()).await;
        p.then(id, vec![Canned::json(200, json!({})).after(Duration::from_millis(400))]);
        ids.push(id);
    }
    // Two hosts with their own Redis: the lock cannot keep them apart, only the row claim can.
    let other = Env::new().await;
    let mut v1 = vars(&env, &fake);
    v1.insert("webhook_retry_batch_size".into(), "40".into());
    let mut v2 = v1.clone();
    v2.insert("redis_url".into(), other.redis_url.clone());
    let a = std::sync::Arc::new(app("jobs-http", &v1).await);
    let b = app("jobs-http", &v2).await;
    let first = {
        let a = a.clone();
        tokio::spawn(async move { post(&a).await })
    };
    // The second run starts while the first is still delivering its claimed rows.
    while fake.requests().is_empty() {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let rb = post(&b).await;
    let ra = first.await.unwrap();
    assert_eq!((ra.status, rb.status), (200, 200));
    assert_eq!(ra.json["summary"]["attempted"], 40, "{}", ra.json);
    assert_eq!(rb.json["summary"]["attempted"], 20, "only the rows nobody had claimed: {}", rb.json);
    for id in &ids {
        assert_eq!(deliveries_of(&fake, *id).len(), 1, "{id} delivered once");
        assert!(row(&env, *id).await.processed);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_thousand_rows_drain_over_several_runs() {
    let env = Env::new().await;
    let p = Processor::default();
    let fake = p.start().await;
    env.db
        .execute(
            "INSERT INTO whatsapp_webhook_logs (payload, processed, \"signatureValid\", \"createdAt\") \
             SELECT jsonb_build_object('n', n), false, true, timezone('UTC', now()) - interval '1 hour' + make_interval(secs => n) \
             FROM generate_series(1, 1000) n",
            &[],
        )
        .await
        .unwrap();
    let mut v = vars(&env, &fake);
    v.insert("webhook_retry_batch_size".into(), "300".into());
    let app = app("jobs-http", &v).await;
    let mut runs = 0;
    let mut remaining_seen = Vec::new();
    loop {
        runs += 1;
        let r = post(&app).await;
        assert_eq!(r.status, 200, "{}", r.json);
        let remaining = r.json["summary"]["remaining"].as_u64().unwrap();
        remaining_seen.push(remaining);
        if remaining == 0 || runs > 10 {
            break;
        }
    }
    assert_eq!(remaining_seen, [700, 400, 100, 0]);
    let sent: Vec<i64> = fake
        .requests()
        .iter()
        .map(|r| serde_json::from_slice::<serde_json::Value>(&r.body).unwrap()["n"].as_i64().unwrap())
        .collect();
    let mut sorted = sent.clone();
    sorted.sort();
    assert_eq!(sorted, (1..=1000).collect::<Vec<_>>(), "each row exactly once");
    // Oldest due first: every batch holds older rows than the next.
    let first_batch_max = sent[..300].iter().max().unwrap();
    assert_eq!(*first_batch_max, 300);
    let n: i64 = env
        .db
        .query_one("SELECT count(*) FROM whatsapp_webhook_logs WHERE processed", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 1000);
    assert_eq!(status(&app).await["pendingWebhooks"], 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn redrive_puts_dead_rows_back_and_counts_follow() {
    let env = Env::new().await;
    let p = Processor::default();
    let fake = p.start().await;
    let a = seed::webhook(&env.db, Webhook::default()).await;
    let b = seed::webhook(&env.db, Webhook::default()).await;
    let c = seed::webhook(&env.db, Webhook { created_minutes_ago: 1, ..Default::default() }).await;
    p.then(a, vec![Canned::json(422, json!({"error":"x"}))]);
    p.then(b, vec![Canned::json(404, json!({"error":"y"}))]);
    let app = app("jobs-http", &vars(&env, &fake)).await;

    let s = status(&app).await;
    assert_eq!(
        s,
        json!({"success":true,"isRunning":false,"jobType":"webhook-retry","pendingWebhooks":3,"deadWebhooks":0})
    );
    assert_eq!(post(&app).await.json["summary"]["deadLettered"], 2);
    let s = status(&app).await;
    assert_eq!((s["pendingWebhooks"].as_u64(), s["deadWebhooks"].as_u64()), (Some(1), Some(2)));

    let redrive = |body: String, secret: &'static str| {
        let app = &app;
        async move {
            let r =
                call_with_body(app, "POST", &format!("{PATH}/redrive"), &[("x-cron-secret", secret)], &body)
                    .await;
            (r.status, r.json)
        }
    };
    assert_eq!(redrive(r#"{"ids":[]}"#.into(), "wrong").await.0, 401);
    assert_eq!(redrive("not json".into(), SECRET).await.0, 400);
    assert_eq!(redrive(r#"{"ids":[1]}"#.into(), SECRET).await.0, 400);
    assert_eq!(
        redrive(format!(r#"{{"ids":["{a}"]}}"#), SECRET).await,
        (200, json!({"success":true,"redriven":1}))
    );
    let w = row(&env, a).await;
    assert!(!w.dead && w.retry_count == 0);
    let s = status(&app).await;
    assert_eq!((s["pendingWebhooks"].as_u64(), s["deadWebhooks"].as_u64()), (Some(2), Some(1)));
    assert_eq!(redrive(r#"{"dead":true}"#.into(), SECRET).await, (200, json!({"success":true,"redriven":1})));
    let s = status(&app).await;
    assert_eq!((s["pendingWebhooks"].as_u64(), s["deadWebhooks"].as_u64()), (Some(3), Some(0)));

    // The processor accepts them now: the next run delivers both (c is still in its grace period).
    let r = post(&app).await;
    assert_eq!(r.json["summary"]["delivered"], 2, "{}", r.json);
    assert!(row(&env, a).await.processed && row(&env, b).await.processed && !row(&env, c).await.processed);
    assert_eq!(
        deliveries_of(&fake, a)[1].header("x-webhook-retry-attempt"),
        Some("1"),
        "redrive starts the count anew"
    );
    let wrong_method = call(&app, "GET", &format!("{PATH}/redrive"), &[("x-cron-secret", SECRET)]).await;
    assert_eq!(
        (wrong_method.status, wrong_method.headers.get("allow").unwrap().to_str().unwrap()),
        (405, "POST")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn time_budget_releases_unstarted_rows() {
    let env = Env::new().await;
    let p = Processor::default();
    let fake = p.start().await;
    for _ in 0..40 {
        let id = seed::webhook(&env.db, Webhook::default()).await;
        p.then(id, vec![Canned::json(200, json!({})).after(Duration::from_millis(700))]);
    }
    let mut v = vars(&env, &fake);
    v.insert("job_time_budget_seconds".into(), "1".into());
    let app = app("jobs-http", &v).await;
    let r = post(&app).await;
    let attempted = r.json["summary"]["attempted"].as_u64().unwrap();
    let remaining = r.json["summary"]["remaining"].as_u64().unwrap();
    assert!(attempted >= 16 && remaining > 0, "{}", r.json);
    assert_eq!(attempted + remaining, 40);
    assert_eq!(env.job_runs().await[0].status, "partial");
    // Released rows are due again at once, with no attempt counted.
    let n: i64 = env
        .db
        .query_one("SELECT count(*) FROM whatsapp_webhook_logs WHERE NOT processed AND \"retryCount\" = 0 AND \"nextRetryAt\" <= timezone('UTC', now())", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n as u64, remaining);
    let next = post(&app).await;
    assert!(next.json["summary"]["attempted"].as_u64().unwrap() > 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn without_a_processor_url_the_job_refuses_to_run() {
    let env = Env::new().await;
    seed::webhook(&env.db, Webhook::default()).await;
    let app = app("jobs-http", &env.variables("http://127.0.0.1:9")).await;
    let r = post(&app).await;
    assert_eq!(r.status, 500);
    assert!(r.json["error"].as_str().unwrap().contains("webhook_processor_url"), "{}", r.json);
    assert!(env.job_runs().await.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn cron_runs_the_webhook_retry() {
    let env = Env::new().await;
    let p = Processor::default();
    let fake = p.start().await;
    let id = seed::webhook(&env.db, Webhook::default()).await;
    let cron = app("cron-webhook-retry", &vars(&env, &fake)).await;
    assert_eq!(cron.cron(1_800_000_000).await.unwrap(), Ok(()));
    assert!(row(&env, id).await.processed);
    let runs = env.job_runs().await;
    assert_eq!(
        (runs[0].trigger.as_str(), runs[0].job_type.as_str(), runs[0].status.as_str()),
        ("cron", "webhook-retry", "succeeded")
    );
}

/// Answers that Postgres cannot store as they are (a NUL byte in the body, a `Retry-After` of
/// three million years) are charged an attempt like any other, and the rest of the batch goes on.
#[tokio::test(flavor = "multi_thread")]
async fn poison_answers_are_recorded_and_the_batch_goes_on() {
    let env = Env::new().await;
    let p = Processor::default();
    let fake = p.start().await;
    let nul = seed::webhook(&env.db, Webhook::default()).await;
    let forever = seed::webhook(&env.db, Webhook::default()).await;
    let fine = seed::webhook(&env.db, Webhook::default()).await;
    p.then(nul, vec![Canned::text(500, "crashed at byte \0 here")]);
    let mut later = Canned::text(503, "busy");
    later.headers.push(("retry-after".into(), "99999999999999".into()));
    p.then(forever, vec![later]);
    let app = app("jobs-http", &vars(&env, &fake)).await;
    let r = post(&app).await;
    assert_eq!(r.status, 200, "{}", r.json);
    assert_eq!(
        (r.json["summary"]["delivered"].as_u64(), r.json["summary"]["failed"].as_u64()),
        (Some(1), Some(2))
    );
    let w = row(&env, nul).await;
    assert_eq!((w.retry_count, w.error.as_deref()), (1, Some("HTTP 500: crashed at byte  here")));
    let w = row(&env, forever).await;
    assert_eq!(w.retry_count, 1);
    let wait = w.backoff.unwrap();
    assert!((6.0 * 3600.0..=6.0 * 3600.0 + 1.0).contains(&wait), "Retry-After capped at 6 h: {wait}");
    assert!(row(&env, fine).await.processed);
}

/// A row the database refuses to record (a trigger of WhaTrack's) is logged and counted as
/// failed; the others are recorded, and the run succeeds.
#[tokio::test(flavor = "multi_thread")]
async fn a_row_the_database_refuses_does_not_stop_the_batch() {
    let env = Env::new().await;
    let fake = Processor::default().start().await;
    let refused = seed::webhook(&env.db, Webhook::default()).await;
    let others =
        [seed::webhook(&env.db, Webhook::default()).await, seed::webhook(&env.db, Webhook::default()).await];
    env.db
        .batch_execute(&format!(
            "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$ \
             BEGIN IF NEW.id = '{refused}' THEN RAISE EXCEPTION 'row {refused} is frozen'; END IF; RETURN NEW; END $$; \
             CREATE TRIGGER frozen BEFORE UPDATE OF processed ON whatsapp_webhook_logs \
             FOR EACH ROW EXECUTE FUNCTION refuse();"
        ))
        .await
        .unwrap();
    let app = app("jobs-http", &vars(&env, &fake)).await;
    let r = post(&app).await;
    assert_eq!(r.status, 200, "{}", r.json);
    assert_eq!(
        (r.json["summary"]["delivered"].as_u64(), r.json["summary"]["failed"].as_u64()),
        (Some(2), Some(1))
    );
    for id in others {
        assert!(row(&env, id).await.processed);
    }
    assert!(!row(&env, refused).await.processed);
    assert!(app.output().contains("is frozen"), "logged");
}

/// An operator's spin.toml that lost the processor's entry: the host refuses the delivery. That
/// is our setup's fault, not the webhooks': the run fails, and no row is charged an attempt.
#[tokio::test(flavor = "multi_thread")]
async fn a_processor_the_host_refuses_fails_the_run_and_charges_no_row() {
    let env = Env::new().await;
    let fake = Processor::default().start().await;
    let ids =
        [seed::webhook(&env.db, Webhook::default()).await, seed::webhook(&env.db, Webhook::default()).await];
    let manifest = manifest_without_host("{{ webhook_processor_host }}");
    let app = app_of(&manifest, "jobs-http", &vars(&env, &fake)).await;
    let r = post(&app).await;
    assert_eq!(r.status, 500, "{}", r.json);
    assert!(r.json["error"].as_str().unwrap().contains("webhook_processor_host"), "{}", r.json);
    assert!(fake.requests().is_empty());
    for id in ids {
        let w = row(&env, id).await;
        assert_eq!((w.retry_count, w.dead, w.processed), (0, false, false));
        assert!(attempts(&env, id).await.is_empty());
    }
    let s = status(&app).await;
    assert_eq!(s["pendingWebhooks"], 2);
    let due: i64 = env
        .db
        .query_one(
            "SELECT count(*) FROM whatsapp_webhook_logs WHERE \"nextRetryAt\" <= timezone('UTC', now())",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(due, 2, "released: due again at once");
    assert_eq!(env.job_runs().await[0].status, "failed");
}

/// A processor URL that cannot be sent to, or a host variable that does not cover it, is refused
/// when the configuration loads: no row is touched.
#[tokio::test(flavor = "multi_thread")]
async fn a_processor_url_or_host_that_cannot_work_is_refused_at_load() {
    let env = Env::new().await;
    let fake = Processor::default().start().await;
    let id = seed::webhook(&env.db, Webhook::default()).await;
    for (name, value) in [
        ("webhook_processor_url", "https://".to_string()),
        ("webhook_processor_url", "http://processor:port/hook".to_string()),
        ("webhook_processor_host", "https://webhook-processor.invalid".to_string()),
        ("webhook_processor_host", format!("{}/hook", fake.url)),
    ] {
        let mut v = vars(&env, &fake);
        v.insert(name.into(), value.clone());
        let app = app("jobs-http", &v).await;
        let r = post(&app).await;
        assert_eq!(r.status, 500, "{name}={value}: {}", r.json);
        assert!(r.json["error"].as_str().unwrap().contains(name), "{name}={value}: {}", r.json);
    }
    let w = row(&env, id).await;
    assert_eq!((w.retry_count, w.dead), (0, false));
    assert!(env.job_runs().await.is_empty());
}

/// A processor that checks Meta's signature accepts re-deliveries whenever the app secret is
/// set, with or without the app id.
#[tokio::test(flavor = "multi_thread")]
async fn re_deliveries_are_signed_with_the_app_secret_alone() {
    let env = Env::new().await;
    let fake = Processor::default().start().await;
    let id = seed::webhook(&env.db, Webhook::default()).await;
    let mut v = vars(&env, &fake);
    v.remove("meta_app_id");
    let r = post(&app("jobs-http", &v).await).await;
    assert_eq!(r.json["summary"]["delivered"], 1, "{}", r.json);
    assert!(signature_ok(&deliveries_of(&fake, id)[0]));
}

/// Rows that must not be re-delivered any more are dead-lettered, with the reason, and counted:
/// one whose retries were used up without being dead-lettered, and one older than a week.
#[tokio::test(flavor = "multi_thread")]
async fn exhausted_and_expired_rows_are_dead_lettered_not_delivered() {
    let env = Env::new().await;
    let fake = Processor::default().start().await;
    let exhausted = seed::webhook(&env.db, Webhook { retry_count: 5, ..Default::default() }).await;
    let expired =
        seed::webhook(&env.db, Webhook { created_minutes_ago: 169 * 60, ..Default::default() }).await;
    let young = seed::webhook(&env.db, Webhook { created_minutes_ago: 167 * 60, ..Default::default() }).await;
    let app = app("jobs-http", &vars(&env, &fake)).await;
    let r = post(&app).await;
    assert_eq!(r.status, 200, "{}", r.json);
    let summary = &r.json["summary"];
    assert_eq!(
        (summary["exhausted"].as_u64(), summary["expired"].as_u64(), summary["deadLettered"].as_u64()),
        (Some(1), Some(1), Some(2)),
        "{summary}"
    );
    assert_eq!(summary["delivered"], 1);
    assert_eq!(deliveries_of(&fake, young).len(), 1);
    assert!(fake.requests().len() == 1, "neither swept row is delivered");
    let w = row(&env, exhausted).await;
    assert!(
        w.dead
            && w.error.as_deref().unwrap().starts_with("attempts exhausted; last error: processing failed"),
        "{w:?}"
    );
    let w = row(&env, expired).await;
    assert!(w.dead && w.error.as_deref().unwrap().starts_with("expired"), "{w:?}");
    assert_eq!(status(&app).await["deadWebhooks"], 2);
    // The age is a setting.
    let old = seed::webhook(&env.db, Webhook { created_minutes_ago: 3 * 60, ..Default::default() }).await;
    let mut v = vars(&env, &fake);
    v.insert("webhook_retry_max_age_hours".into(), "2".into());
    assert_eq!(post(&common::app("jobs-http", &v).await).await.json["summary"]["expired"], 1);
    assert!(row(&env, old).await.dead);
}

/// A processor that echoes the payload must not put customer messages into logs or alerts; the
/// database keeps the start of its answer for the operator.
#[tokio::test(flavor = "multi_thread")]
async fn processor_answers_stay_out_of_logs_and_alerts() {
    let env = Env::new().await;
    let p = Processor::default();
    let fake = p.start().await;
    let receiver = FakeHttp::start(|_| Canned::text(200, "ok")).await;
    let id = seed::webhook(&env.db, Webhook::default()).await;
    p.then(id, vec![Canned::text(422, "cannot process: {\"text\":{\"body\":\"my card is 4111 1111\"}}")]);
    let mut v = vars(&env, &fake);
    v.insert("alert_webhook_url".into(), format!("{}/hook", receiver.url));
    v.insert("alert_webhook_host".into(), receiver.url.clone());
    let app = app("jobs-http", &v).await;
    assert_eq!(post(&app).await.json["summary"]["deadLettered"], 1);
    let alerts: Vec<String> =
        receiver.requests().iter().map(|r| String::from_utf8_lossy(&r.body).into_owned()).collect();
    assert_eq!(alerts.len(), 1);
    assert!(alerts[0].contains("rejected: HTTP 422"), "{alerts:?}");
    assert!(!alerts[0].contains("4111"), "{alerts:?}");
    assert!(!app.output().contains("4111"), "logs");
    assert!(row(&env, id).await.error.unwrap().contains("4111 1111"), "the database keeps it");
}

/// The redrive body: at most 64 KB, and one of the two forms.
#[tokio::test(flavor = "multi_thread")]
async fn redrive_bodies_are_bounded_and_unambiguous() {
    let env = Env::new().await;
    let fake = Processor::default().start().await;
    let app = app("jobs-http", &vars(&env, &fake)).await;
    let big = json!({ "ids": vec![Uuid::nil().to_string(); 2000] }).to_string();
    assert!(big.len() > 64 * 1024);
    assert_eq!(common::redrive(&app, &big).await.status, 413);
    assert_eq!(common::redrive(&app, r#"{"dead":true,"ids":[]}"#).await.status, 400);
    assert_eq!(common::redrive(&app, r#"{"ids":["not-a-uuid"]}"#).await.status, 400);
    assert_eq!(common::redrive(&app, r#"{"dead":true}"#).await.json["redriven"], 0);
}

/// The budget bounds the whole run whatever the processor and the alert receiver do: with a
/// processor answering in 9 s and an alert receiver that never answers, a run with the default
/// 25 s budget answers within 27 s, deliveries the budget cut short are released uncharged, and
/// every finished delivery is recorded.
#[tokio::test(flavor = "multi_thread")]
async fn a_run_answers_within_its_budget_whatever_its_peers_do() {
    let env = Env::new().await;
    let p = Processor::default();
    let fake = p.start().await;
    let receiver = FakeHttp::start(|_| Canned::text(200, "ok").after(Duration::from_secs(60))).await;
    let mut ids = Vec::new();
    for _ in 0..40 {
        let id = seed::webhook(&env.db, Webhook::default()).await;
        p.then(id, vec![Canned::text(400, "no").after(Duration::from_secs(9))]);
        ids.push(id);
    }
    let mut v = vars(&env, &fake);
    v.insert("alert_webhook_url".into(), format!("{}/hook", receiver.url));
    v.insert("alert_webhook_host".into(), receiver.url.clone());
    let app = app("jobs-http", &v).await;
    let started = std::time::Instant::now();
    let r = post(&app).await;
    let elapsed = started.elapsed();
    assert_eq!(r.status, 200, "{}", r.json);
    assert!(elapsed < Duration::from_millis(27_500), "answered after {elapsed:?}");
    let dead = r.json["summary"]["deadLettered"].as_i64().unwrap();
    assert!(dead > 0 && dead < 40, "{}", r.json);
    assert!(!receiver.requests().is_empty(), "alerts were attempted");
    let recorded: i64 =
        env.db.query_one("SELECT count(*) FROM webhook_retry_attempts", &[]).await.unwrap().get(0);
    assert_eq!(recorded, dead, "every finished delivery is recorded, no other");
    let uncharged: i64 = env
        .db
        .query_one(
            "SELECT count(*) FROM whatsapp_webhook_logs WHERE \"retryCount\" = 0 AND \"deadAt\" IS NULL",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(uncharged, 40 - dead, "the rest were released without an attempt");
    assert_eq!(r.json["summary"]["remaining"].as_i64(), Some(40 - dead));
}

/// More due rows than a claim page (200): one run claims page after page, up to
/// `webhook_retry_batch_size`, delivers each row once, and records every attempt.
#[tokio::test(flavor = "multi_thread")]
async fn a_run_claims_page_after_page_up_to_the_batch_size() {
    let env = Env::new().await;
    let fake = Processor::default().start().await;
    let seed_rows = |from: i32, to: i32| {
        let db = &env.db;
        async move {
            db.execute(
                "INSERT INTO whatsapp_webhook_logs (payload, processed, \"signatureValid\", \"createdAt\") \
                 SELECT jsonb_build_object('n', n), false, true, timezone('UTC', now()) - interval '1 hour' \
                 FROM generate_series($1::int, $2::int) n",
                &[&from, &to],
            )
            .await
            .unwrap();
        }
    };
    seed_rows(1, 450).await;
    let mut v = vars(&env, &fake);
    v.insert("webhook_retry_batch_size".into(), "1000".into());
    let r = post(&app("jobs-http", &v).await).await;
    assert_eq!(r.status, 200, "{}", r.json);
    assert_eq!(
        (r.json["summary"]["delivered"].as_u64(), r.json["summary"]["remaining"].as_u64()),
        (Some(450), Some(0))
    );
    let sent: std::collections::HashSet<String> =
        fake.requests().iter().map(|r| r.header("x-webhook-log-id").unwrap().to_owned()).collect();
    assert_eq!((sent.len(), fake.requests().len()), (450, 450), "each row once");
    assert_eq!(env.count("SELECT count(*) FROM webhook_retry_attempts").await, 450);

    // The batch size still bounds a run.
    seed_rows(451, 900).await;
    v.insert("webhook_retry_batch_size".into(), "300".into());
    let r = post(&app("jobs-http", &v).await).await;
    assert_eq!(
        (r.json["summary"]["attempted"].as_u64(), r.json["summary"]["remaining"].as_u64()),
        (Some(300), Some(150))
    );
}
