//! The platform's cap on outbound requests (`outbound_requests_per_hour`, Fermyon Cloud allows
//! 500): counted in Redis per clock hour across both jobs and every replica, never exceeded, and
//! what it leaves is charged to nobody.

mod common;

use std::time::Duration;

use common::fake::{Canned, FakeHttp};
use common::graph::{self, Script};
use common::seed::{self, Webhook};
use common::*;
use serde_json::json;

const ALLOWANCE: usize = 100;

async fn post_retry(app: &TestApp) -> AppReply {
    call(app, "POST", "/api/v1/jobs/webhook-retry", &[("x-cron-secret", SECRET)]).await
}

/// Seconds left in the current clock hour.
fn left_in_hour() -> u64 {
    3600 - std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() % 3600
}

#[tokio::test(flavor = "multi_thread")]
async fn two_jobs_on_two_replicas_send_the_hours_allowance_and_not_one_more() {
    // The allowance is per clock hour: a test across the hour's end would count two hours.
    if left_in_hour() < 30 {
        tokio::time::sleep(Duration::from_secs(left_in_hour() + 1)).await;
    }
    let env = Env::new().await;
    let script = Script::default();
    let fake = FakeHttp::start(move |req| script.answer(req).after(Duration::from_millis(20))).await;
    let processor =
        FakeHttp::start(|_| Canned::json(200, json!({"ok": true})).after(Duration::from_millis(10))).await;
    env.db
        .execute(
            "WITH c AS (
                 INSERT INTO whatsapp_connections (\"organizationId\", \"wabaId\", \"phoneNumberId\", status, \"healthStatus\", \"updatedAt\")
                 SELECT gen_random_uuid(), '2001', p::text, 'active', 'healthy', timezone('UTC', now()) FROM generate_series(1, 100) p
                 RETURNING id, \"organizationId\")
             INSERT INTO whatsapp_configs (\"organizationId\", \"connectionId\", \"accessToken\", status, \"updatedAt\")
             SELECT \"organizationId\", id, $1, 'connected', timezone('UTC', now()) FROM c",
            &[&seed::encrypt("EAAB-allowance")],
        )
        .await
        .unwrap();
    for _ in 0..100 {
        seed::webhook(&env.db, Webhook::default()).await;
    }
    let mut vars = env.variables(&fake.url);
    vars.insert("outbound_requests_per_hour".into(), ALLOWANCE.to_string());
    // One call a request, so that the health check alone could spend the allowance.
    vars.insert("graph_batch_size".into(), "1".into());
    // Slow enough that the two jobs' requests interleave.
    vars.insert("health_check_concurrency".into(), "4".into());
    vars.insert("webhook_processor_url".into(), format!("{}/webhooks", processor.url));
    vars.insert("webhook_processor_host".into(), processor.url.clone());
    vars.insert("webhook_retry_batch_size".into(), "200".into());
    let (first, second) = (app("jobs-http", &vars).await, app("jobs-http", &vars).await);

    let (health, retry) = tokio::join!(post_health(&first), post_retry(&second));
    let (retry_again, health_again) = tokio::join!(post_retry(&first), post_health(&second));
    let sent = graph::calls(&fake.requests()).len() + processor.requests().len();
    assert_eq!(sent, ALLOWANCE, "the hour's allowance, not one more");
    for r in [&health, &retry, &retry_again, &health_again] {
        assert_eq!(r.status, 200, "{}", r.json);
    }
    let checked = health.json["summary"]["checked"].as_u64().unwrap()
        + health_again.json["summary"]["checked"].as_u64().unwrap();
    let delivered = retry.json["summary"]["delivered"].as_u64().unwrap()
        + retry_again.json["summary"]["delivered"].as_u64().unwrap();
    assert_eq!(
        checked + delivered,
        ALLOWANCE as u64,
        "{health:?} {retry:?}",
        health = health.json,
        retry = retry.json
    );
    assert!(checked > 0 && delivered > 0, "both jobs spent from the same allowance");
    assert_eq!(health_again.json["summary"]["remaining"].as_u64(), Some(100 - checked));
    assert_eq!(health_again.json["summary"]["unknown"], 0, "a check not made is no finding");
    assert_eq!(retry_again.json["summary"]["remaining"].as_u64(), Some(100 - delivered));
    assert_eq!(retry_again.json["summary"]["failed"], 0);

    // Nothing is charged for what was not sent.
    assert_eq!(env.count("SELECT count(*) FROM whatsapp_health").await as u64, checked);
    assert_eq!(env.count("SELECT count(*) FROM webhook_retry_attempts").await as u64, delivered);
    assert_eq!(
        env.count("SELECT count(*) FROM whatsapp_webhook_logs WHERE \"retryCount\" > 0 AND NOT processed")
            .await,
        0
    );
    let runs = env.job_runs().await;
    assert!(runs.iter().all(|r| r.status == "partial"), "{runs:?}");
}
