//! The webhook front door end to end: Meta's handshake, signed webhooks stored byte for byte and
//! once, forwarded once, left to the retry job when the processor fails.

mod common;

use std::time::{Duration, Instant};

use common::fake::{Canned, FakeHttp};
use common::*;
use hmac::{Hmac, Mac};
use serde_json::json;
use sha2::Sha256;

const PATH: &str = "/api/v1/whatsapp/webhook";
const APP_SECRET: &str = "meta-app-secret-for-the-front-door";

fn sign(secret: &str, body: &[u8]) -> String {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

fn vars(env: &Env, processor: &FakeHttp) -> std::collections::HashMap<String, String> {
    let mut v = env.variables("http://127.0.0.1:9");
    v.insert("meta_app_secret".into(), APP_SECRET.into());
    v.insert("meta_webhook_verify_token".into(), "verify-me-please".into());
    v.insert("webhook_processor_url".into(), format!("{}/api/webhooks/whatsapp", processor.url));
    v.insert("webhook_processor_host".into(), processor.url.clone());
    v
}

async fn post(app: &TestApp, body: &str, signature: Option<&str>) -> AppReply {
    let headers: Vec<(&str, &str)> = signature.map(|s| vec![("x-hub-signature-256", s)]).unwrap_or_default();
    call_with_body(app, "POST", PATH, &headers, body).await
}

/// (rawBody, processed, eventType) of every stored webhook.
async fn stored(env: &Env) -> Vec<(String, bool, Option<String>)> {
    env.db
        .query(
            "SELECT \"rawBody\", processed, \"eventType\" FROM whatsapp_webhook_logs ORDER BY \"createdAt\"",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect()
}

/// Waits (at most 20 s) until `done` holds: the forward comes after Meta's answer, so what it
/// does is seen a moment later.
async fn eventually<F: std::future::Future<Output = bool>>(what: &str, done: impl Fn() -> F) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !done().await {
        assert!(Instant::now() < deadline, "never happened: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until the one stored webhook is processed: the forward is done.
async fn processed(env: &Env) {
    eventually("the stored webhook processed", || async { stored(env).await.iter().all(|w| w.1) }).await;
}

const MESSAGE: &str = r#"{"object":"whatsapp_business_account","entry":[{"id":"2001","changes":[{"field":"messages","value":{"messages":[{"id":"wamid.1","text":{"body":"ol\u00e1 \/ hi"}}]}}]}]}"#;

#[tokio::test(flavor = "multi_thread")]
async fn metas_handshake_is_answered_with_the_challenge() {
    let env = Env::new().await;
    let processor = FakeHttp::start(|_| Canned::json(200, json!({}))).await;
    let app = app("jobs-http", &vars(&env, &processor)).await;
    let ok = format!("{PATH}?hub.mode=subscribe&hub.verify_token=verify-me-please&hub.challenge=1158201444");
    let resp = app.request(http::Request::get(ok).body(bytes::Bytes::new()).unwrap()).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "text/plain");
    assert_eq!(resp.body().as_ref(), b"1158201444");
    for wrong in [
        format!("{PATH}?hub.mode=subscribe&hub.verify_token=wrong&hub.challenge=1"),
        format!("{PATH}?hub.mode=unsubscribe&hub.verify_token=verify-me-please&hub.challenge=1"),
        format!("{PATH}?hub.challenge=1"),
    ] {
        assert_eq!(call(&app, "GET", &wrong, &[]).await.status, 403, "{wrong}");
    }
}

/// Signed like Meta signs: stored byte for byte (escaped unicode and `\/` included), forwarded
/// once with the retry job's headers, and marked processed; Meta gets 200.
#[tokio::test(flavor = "multi_thread")]
async fn a_signed_webhook_is_stored_byte_for_byte_and_forwarded_once() {
    let env = Env::new().await;
    let processor = FakeHttp::start(|_| Canned::json(200, json!({"ok":true}))).await;
    let app = app("jobs-http", &vars(&env, &processor)).await;
    let r = post(&app, MESSAGE, Some(&sign(APP_SECRET, MESSAGE.as_bytes()))).await;
    assert_eq!(r.status, 200, "{}", r.json);
    processed(&env).await;
    assert_eq!(stored(&env).await, [(MESSAGE.to_owned(), true, Some("messages".to_owned()))]);
    let forwarded = processor.requests();
    assert_eq!(forwarded.len(), 1);
    assert_eq!(forwarded[0].body.as_ref(), MESSAGE.as_bytes());
    assert_eq!(
        forwarded[0].header("x-hub-signature-256"),
        Some(sign(APP_SECRET, MESSAGE.as_bytes()).as_str())
    );
    assert_eq!(forwarded[0].header("x-webhook-retry-attempt"), Some("0"));
    assert!(forwarded[0].header("x-webhook-log-id").is_some());
}

/// Nothing is stored without the right signature over the exact bytes, nor above the limit.
#[tokio::test(flavor = "multi_thread")]
async fn unsigned_missigned_or_oversized_webhooks_store_nothing() {
    let env = Env::new().await;
    let processor = FakeHttp::start(|_| Canned::json(200, json!({}))).await;
    let mut v = vars(&env, &processor);
    v.insert("webhook_max_body_bytes".into(), "2048".into());
    let app = app("jobs-http", &v).await;
    let reserialised =
        serde_json::to_string(&serde_json::from_str::<serde_json::Value>(MESSAGE).unwrap()).unwrap();
    assert_ne!(reserialised, MESSAGE);
    for (what, body, signature) in [
        ("missing", MESSAGE.to_owned(), None),
        ("another secret", MESSAGE.to_owned(), Some(sign("another-secret", MESSAGE.as_bytes()))),
        ("re-serialised body", reserialised.clone(), Some(sign(APP_SECRET, MESSAGE.as_bytes()))),
        ("bare hex", MESSAGE.to_owned(), Some(sign(APP_SECRET, MESSAGE.as_bytes()).replace("sha256=", ""))),
    ] {
        let r = post(&app, &body, signature.as_deref()).await;
        assert_eq!(r.status, 401, "{what}: {}", r.json);
    }
    let big = json!({"object":"whatsapp_business_account","blob":"x".repeat(4096)}).to_string();
    let r = post(&app, &big, Some(&sign(APP_SECRET, big.as_bytes()))).await;
    assert_eq!(r.status, 413);
    assert!(stored(&env).await.is_empty());
    assert!(processor.requests().is_empty());
}

/// Meta re-sends a delivery it is unsure of: the same bytes are stored once, forwarded once.
#[tokio::test(flavor = "multi_thread")]
async fn a_webhook_sent_twice_is_stored_once() {
    let env = Env::new().await;
    let processor = FakeHttp::start(|_| Canned::json(200, json!({}))).await;
    let app = app("jobs-http", &vars(&env, &processor)).await;
    let signature = sign(APP_SECRET, MESSAGE.as_bytes());
    for _ in 0..3 {
        assert_eq!(post(&app, MESSAGE, Some(&signature)).await.status, 200);
    }
    assert_eq!(stored(&env).await.len(), 1);
    processed(&env).await;
    assert_eq!(processor.requests().len(), 1);
}

/// The processor down: the row is stored and pending, Meta still gets 200, and the next retry
/// run (once the row is due) delivers it.
#[tokio::test(flavor = "multi_thread")]
async fn with_the_processor_down_the_retry_job_delivers_it_later() {
    let env = Env::new().await;
    let up = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let processor = {
        let up = up.clone();
        FakeHttp::start(move |_| {
            if up.load(std::sync::atomic::Ordering::SeqCst) {
                Canned::json(200, json!({}))
            } else {
                Canned::text(503, "down")
            }
        })
        .await
    };
    let app = app("jobs-http", &vars(&env, &processor)).await;
    let r = post(&app, MESSAGE, Some(&sign(APP_SECRET, MESSAGE.as_bytes()))).await;
    assert_eq!(r.status, 200, "{}", r.json);
    eventually("the forward refused", || async { processor.requests().len() == 1 }).await;
    assert_eq!(stored(&env).await[0].1, false, "pending");
    up.store(true, std::sync::atomic::Ordering::SeqCst);
    env.db
        .batch_execute(
            "UPDATE whatsapp_webhook_logs SET \"createdAt\" = \"createdAt\" - interval '10 minutes'",
        )
        .await
        .unwrap();
    let run = call(&app, "POST", "/api/v1/jobs/webhook-retry", &[("x-cron-secret", SECRET)]).await;
    assert_eq!(run.json["summary"]["delivered"], 1, "{}", run.json);
    assert!(stored(&env).await[0].1);
    assert_eq!(processor.requests().last().unwrap().header("x-webhook-retry-attempt"), Some("1"));
}

/// A slow processor does not hold Meta's answer past the forward timeout (plus a little).
#[tokio::test(flavor = "multi_thread")]
async fn a_slow_processor_does_not_hold_metas_answer() {
    let env = Env::new().await;
    let processor = FakeHttp::start(|_| Canned::json(200, json!({})).after(Duration::from_secs(30))).await;
    let mut v = vars(&env, &processor);
    v.insert("webhook_forward_timeout_ms".into(), "500".into());
    let app = app("jobs-http", &v).await;
    let started = Instant::now();
    let r = post(&app, MESSAGE, Some(&sign(APP_SECRET, MESSAGE.as_bytes()))).await;
    let took = started.elapsed();
    assert_eq!(r.status, 200);
    assert!(took < Duration::from_millis(1500), "answered after {took:?}");
    assert_eq!(stored(&env).await[0].1, false, "left to the retry job");
}

/// Stored and forwarded, but the mark as processed refused (here by a trigger, as a WhaTrack
/// trigger or a lost connection might): Meta still gets 200, the row stays pending, and the
/// retry job delivers it again once due.
#[tokio::test(flavor = "multi_thread")]
async fn a_stored_webhook_is_answered_200_even_when_marking_it_processed_fails() {
    let env = Env::new().await;
    env.db
        .batch_execute(
            "CREATE FUNCTION refuse_processed() RETURNS trigger LANGUAGE plpgsql AS \
               $$ BEGIN IF NEW.processed THEN RAISE EXCEPTION 'processed refused'; END IF; RETURN NEW; END $$; \
             CREATE TRIGGER refuse_processed BEFORE UPDATE ON whatsapp_webhook_logs \
               FOR EACH ROW EXECUTE FUNCTION refuse_processed();",
        )
        .await
        .unwrap();
    let processor = FakeHttp::start(|_| Canned::json(200, json!({}))).await;
    let app = app("jobs-http", &vars(&env, &processor)).await;
    let r = post(&app, MESSAGE, Some(&sign(APP_SECRET, MESSAGE.as_bytes()))).await;
    assert_eq!((r.status, &r.json), (200, &json!({"success":true})));
    eventually("the mark refused, logged", || async { app.output().contains("not marked processed") }).await;
    assert_eq!(stored(&env).await, [(MESSAGE.to_owned(), false, Some("messages".to_owned()))]);
    assert_eq!(processor.requests().len(), 1, "forwarded once");
}

/// A processor that answers each forward `after` it arrived, and when the first arrived.
async fn slow_processor(after: Duration) -> (FakeHttp, std::sync::Arc<std::sync::Mutex<Option<Instant>>>) {
    let arrived = std::sync::Arc::new(std::sync::Mutex::new(None::<Instant>));
    let first = arrived.clone();
    let processor = FakeHttp::start(move |_| {
        first.lock().unwrap().get_or_insert_with(Instant::now);
        Canned::json(200, json!({})).after(after)
    })
    .await;
    (processor, arrived)
}

/// Meta's answer never waits for the processor: the processor answers the forward 3 s after it
/// arrives, and Meta has its 200 before that; the forward then completes in the same invocation
/// and the row is processed.
#[tokio::test(flavor = "multi_thread")]
async fn meta_is_answered_before_the_processor_answers_the_forward() {
    let env = Env::new().await;
    let (processor, arrived) = slow_processor(Duration::from_secs(3)).await;
    let mut v = vars(&env, &processor);
    v.insert("webhook_forward_timeout_ms".into(), "10000".into());
    let app = app("jobs-http", &v).await;
    let r = post(&app, MESSAGE, Some(&sign(APP_SECRET, MESSAGE.as_bytes()))).await;
    let answered = Instant::now();
    assert_eq!((r.status, &r.json), (200, &json!({"success":true})));
    processed(&env).await;
    let arrived = arrived.lock().unwrap().expect("the processor had the forward");
    assert!(
        answered < arrived + Duration::from_secs(3),
        "Meta's answer came {:?} after the forward arrived, once the processor had answered",
        answered - arrived
    );
    assert!(app.output().contains("webhook forwarded"), "{}", app.output());
}

/// Meta documents payloads of up to 3 MB: one of 3 MB is stored byte for byte and forwarded
/// with the default `webhook_max_body_bytes` (4 MiB).
#[tokio::test(flavor = "multi_thread")]
async fn a_webhook_of_three_megabytes_is_stored_and_forwarded() {
    let env = Env::new().await;
    let processor = FakeHttp::start(|_| Canned::json(200, json!({}))).await;
    let mut v = vars(&env, &processor);
    v.remove("webhook_max_body_bytes");
    let app = app("jobs-http", &v).await;
    let text = "x".repeat(3_000_000);
    let big = json!({"object":"whatsapp_business_account","entry":[{"id":"2001","changes":[{"field":"messages","value":{"messages":[{"text":{"body":text}}]}}]}]}).to_string();
    assert!(big.len() > 3_000_000);
    let r = post(&app, &big, Some(&sign(APP_SECRET, big.as_bytes()))).await;
    assert_eq!(r.status, 200, "{}", r.json);
    processed(&env).await;
    assert_eq!(stored(&env).await[0].0, big, "stored byte for byte");
    let forwarded = processor.requests();
    assert_eq!((forwarded.len(), forwarded[0].body.len()), (1, big.len()));
}

/// More webhooks at once than Spin's Postgres pool holds (64 connections per address), each
/// forward waiting on the processor: every answer comes before the processor answers any of
/// them, since no forward holds a connection while it waits (one that did would leave the 65th
/// webhook waiting for the first processor's answer before it could even be stored).
#[tokio::test(flavor = "multi_thread")]
async fn waiting_forwards_hold_no_database_connection() {
    use futures::StreamExt;
    const AT_ONCE: usize = 80;
    const PROCESSOR: Duration = Duration::from_secs(8);
    let env = Env::new().await;
    let (processor, arrived) = slow_processor(PROCESSOR).await;
    let mut v = vars(&env, &processor);
    v.insert("webhook_forward_timeout_ms".into(), "15000".into());
    let app = app("jobs-http", &v).await;
    let answered: Vec<(u16, Instant)> = futures::stream::iter(0..AT_ONCE)
        .map(|i| {
            let app = &app;
            async move {
                let body = MESSAGE.replace("wamid.1", &format!("wamid.pool.{i}"));
                let r = post(app, &body, Some(&sign(APP_SECRET, body.as_bytes()))).await;
                (r.status, Instant::now())
            }
        })
        .buffer_unordered(AT_ONCE)
        .collect()
        .await;
    assert!(answered.iter().all(|(status, _)| *status == 200));
    let last = answered.iter().map(|(_, at)| *at).max().unwrap();
    let first_forward = arrived.lock().unwrap().expect("a forward arrived");
    assert!(
        last < first_forward + PROCESSOR,
        "the last answer came {:?} after the first forward arrived",
        last - first_forward
    );
    eventually("every forward done", || async {
        stored(&env).await.iter().filter(|w| w.1).count() == AT_ONCE
    })
    .await;
}
