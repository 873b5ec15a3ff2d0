//! The operator's controls: pausing and resuming a job.

mod common;

use common::fake::{Canned, FakeHttp};
use common::seed::{self, Webhook};
use common::*;
use serde_json::{json, Value};

const RETRY: &str = "/api/v1/jobs/webhook-retry";

async fn post(app: &spin_test_host::App, path: &str) -> AppReply {
    call(app, "POST", path, &[("x-cron-secret", SECRET)]).await
}

async fn retry_state(app: &spin_test_host::App) -> Value {
    let r = call(app, "GET", "/api/v1/jobs", &[("x-cron-secret", SECRET)]).await;
    r.json["jobs"].as_array().unwrap().iter().find(|j| j["jobType"] == "webhook-retry").unwrap().clone()
}

/// Typical use: the processor is down, so the retry is paused and webhooks keep their attempts.
/// While paused, HTTP calls and cron ticks record a `skipped` run ("paused"), deliver nothing and
/// answer 200; the pause is in Postgres, so a Redis flush does not lift it; `?force=1` still runs.
#[tokio::test(flavor = "multi_thread")]
async fn a_paused_job_runs_nothing_until_resumed_or_forced() {
    let env = Env::new().await;
    let processor = FakeHttp::start(|_| Canned::json(200, json!({}))).await;
    seed::webhook(&env.db, Webhook::default()).await;
    let mut vars = env.variables("http://127.0.0.1:9");
    vars.insert("webhook_processor_url".into(), format!("{}/hook", processor.url));
    vars.insert("webhook_processor_host".into(), processor.url.clone());
    let app = app("jobs-http", &vars);

    assert_eq!(call(&app, "POST", "/api/v1/jobs/webhook-retry/pause", &[]).await.status, 401);
    let paused = post(&app, "/api/v1/jobs/webhook-retry/pause").await;
    assert_eq!(paused.status, 200, "{}", paused.json);
    assert_eq!(paused.json["paused"], true);
    let since = paused.json["pausedSince"].as_str().unwrap().to_owned();
    let again = post(&app, "/api/v1/jobs/webhook-retry/pause").await;
    assert_eq!(again.json["pausedSince"], since.as_str(), "a second pause keeps the first one's time");

    let run = post(&app, RETRY).await;
    assert_eq!(run.status, 200, "a scheduler calling a paused job must not alarm");
    assert_eq!(
        (run.json["paused"].as_bool(), run.json["pausedSince"].as_str()),
        (Some(true), Some(since.as_str()))
    );
    assert_eq!(common::app("cron-webhook-retry", &vars).cron(0).await.unwrap(), Ok(()));
    let mut redis = env.redis.clone();
    let _: () = redis::cmd("FLUSHDB").query_async(&mut redis).await.unwrap();
    assert_eq!(post(&app, RETRY).await.json["paused"], true, "a Redis flush does not resume");
    assert!(processor.requests().is_empty(), "nothing delivered while paused");
    let skipped: Vec<_> =
        env.job_runs().await.into_iter().filter(|r| r.job_type == "webhook-retry").collect();
    assert_eq!(skipped.len(), 3);
    for r in &skipped {
        assert_eq!((r.status.as_str(), r.error.as_deref()), ("skipped", Some("paused")), "{r:?}");
    }
    assert_eq!(skipped.iter().filter(|r| r.trigger == "cron").count(), 1);
    let state = retry_state(&app).await;
    assert_eq!(
        (state["paused"].as_bool(), state["pausedSince"].as_str()),
        (Some(true), Some(since.as_str()))
    );
    // The health check is not paused by the retry's pause.
    assert_eq!(
        call(&app, "GET", "/api/v1/jobs", &[("x-cron-secret", SECRET)]).await.json["jobs"][0]["paused"],
        false
    );

    let forced = post(&app, &format!("{RETRY}?force=1")).await;
    assert_eq!(forced.status, 200, "{}", forced.json);
    assert_eq!(forced.json["summary"]["delivered"], 1, "{}", forced.json);
    assert!(forced.json.get("paused").is_none());

    let resumed = post(&app, "/api/v1/jobs/webhook-retry/resume").await;
    assert_eq!((resumed.status, resumed.json["paused"].as_bool()), (200, Some(false)), "{}", resumed.json);
    assert_eq!(retry_state(&app).await["paused"], false);
    let run = post(&app, RETRY).await;
    assert!(run.json.get("paused").is_none() && run.json["summary"].is_object(), "{}", run.json);
    assert_eq!(
        call(&app, "GET", "/api/v1/jobs/webhook-retry/pause", &[("x-cron-secret", SECRET)]).await.status,
        405
    );
}

/// "Recover what failed since the outage": dead-lettered webhooks put back by the time they
/// were dead-lettered, oldest first, up to a limit; times in RFC 3339 with any offset.
#[tokio::test(flavor = "multi_thread")]
async fn dead_webhooks_are_redriven_by_time_window() {
    let env = Env::new().await;
    env.db
        .batch_execute(
            "INSERT INTO whatsapp_webhook_logs (payload, processed, \"signatureValid\", \"retryCount\", \"deadAt\", \"processingError\") \
             SELECT jsonb_build_object('hour', h), false, true, 3, timestamp '2026-11-20 00:00' + make_interval(hours => h), 'HTTP 502' \
             FROM unnest(ARRAY[9, 10, 11]) h",
        )
        .await
        .unwrap();
    let vars = env.variables("http://127.0.0.1:9");
    let app = app("jobs-http", &vars);
    let back = || {
        env.count(
            "SELECT count(*) FROM whatsapp_webhook_logs WHERE \"deadAt\" IS NULL AND \"retryCount\" = 0",
        )
    };

    let r = redrive(&app, r#"{"deadSince":"2026-11-20T09:30:00Z","deadUntil":"2026-11-20T11:00:00Z"}"#).await;
    assert_eq!((r.status, r.json["redriven"].as_u64()), (200, Some(1)), "{}", r.json);
    let r = redrive(&app, r#"{"deadSince":"2026-11-20T08:00:00+00:00","limit":1}"#).await;
    assert_eq!(r.json["redriven"], 1, "the oldest of the two left: {}", r.json);
    let hours: Vec<i64> = env
        .db
        .query("SELECT (payload->>'hour')::bigint FROM whatsapp_webhook_logs WHERE \"deadAt\" IS NULL ORDER BY 1", &[])
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!(hours, [9, 10]);
    // 12:00 at +01:00 is 11:00 UTC, the last one.
    let r = redrive(&app, r#"{"deadSince":"2026-11-20T12:00:00+01:00"}"#).await;
    assert_eq!(r.json["redriven"], 1, "{}", r.json);
    assert_eq!(back().await, 3);

    for refused in [
        r#"{"deadSince":"yesterday"}"#,
        r#"{"deadSince":"2026-11-20"}"#,
        r#"{"deadUntil":"2026-11-20T12:00:00Z"}"#,
    ] {
        let r = redrive(&app, refused).await;
        assert_eq!(r.status, 400, "{refused}: {}", r.json);
        assert!(r.json["error"].as_str().unwrap().contains("deadSince"), "{}", r.json);
    }
}
