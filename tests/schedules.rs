//! The cron schedules end to end: under `spin up` (`WHATRACK_RUNTIME=spin` or `spin4`, with the
//! cron plugin that CLI has installed) the real cron trigger fires both components every few
//! seconds; in the test host each tick calls both cron exports (see `common::Schedules`).

mod common;

use std::time::Duration;

use common::fake::{Canned, FakeHttp};
use common::graph::{self, Script};
use common::seed::{self, Connection, Webhook};
use common::*;
use serde_json::json;

const LIMIT: Duration = Duration::from_secs(45);

/// Both schedules fire and each runs its own job: a due connection checked and a failed webhook
/// re-delivered, each recorded as a `cron` run; and ticks with nothing left to do (every
/// statement finding no rows) keep succeeding.
#[tokio::test(flavor = "multi_thread")]
async fn both_schedules_run_their_jobs() {
    let env = Env::new().await;
    let graph = graph::start(&Script::default()).await;
    let processor = FakeHttp::start(|_| Canned::json(200, json!({"ok":true}))).await;
    let connection = seed::connection(&env.db, Connection::default()).await;
    let webhook = seed::webhook(&env.db, Webhook::default()).await;
    let mut vars = env.variables(&graph.url);
    vars.insert("webhook_processor_url".into(), format!("{}/hook", processor.url));
    vars.insert("webhook_processor_host".into(), processor.url.clone());
    let schedules = Schedules::start(&vars).await;

    let succeeded = |job: &'static str| {
        let env = &env;
        async move {
            env.job_runs()
                .await
                .iter()
                .filter(|r| r.job_type == job && r.trigger == "cron" && r.status == "succeeded")
                .count()
        }
    };
    let both_twice = schedules
        .run_until(LIMIT, || async {
            succeeded("whatsapp-health-check").await >= 2 && succeeded("webhook-retry").await >= 2
        })
        .await;
    assert!(both_twice, "runs: {:?}\n{}\n{}", env.job_runs().await, schedules.failures(), schedules.output());

    assert_eq!(env.health_status(connection).await, "healthy");
    let processed: bool = env
        .db
        .query_one("SELECT processed FROM whatsapp_webhook_logs WHERE id = $1", &[&webhook])
        .await
        .unwrap()
        .get(0);
    assert!(processed, "the webhook was re-delivered");
    assert_eq!(processor.requests().len(), 1, "and only once");
    let runs = env.job_runs().await;
    assert!(runs.iter().all(|r| r.trigger == "cron" && r.status == "succeeded"), "{runs:?}");
    assert!(schedules.failures().is_empty(), "{}", schedules.failures());
}

/// A run that fails is reported to the trigger (which logs it) and recorded as failed, and the
/// schedule goes on: the next tick runs again.
#[tokio::test(flavor = "multi_thread")]
async fn a_failing_cron_run_is_logged_and_the_schedule_goes_on() {
    let env = Env::new().await;
    let mut vars = env.variables("http://127.0.0.1:9");
    vars.insert("redis_url".into(), "redis://127.0.0.1:1".into());
    vars.insert("redis_host".into(), "redis://127.0.0.1:1".into());
    vars.insert("webhook_processor_url".into(), "http://127.0.0.1:9/hook".into());
    vars.insert("webhook_processor_host".into(), "http://127.0.0.1:9".into());
    let schedules = Schedules::start(&vars).await;

    let failed_twice = schedules
        .run_until(LIMIT, || async {
            let runs = env.job_runs().await;
            let failed =
                |job: &str| runs.iter().filter(|r| r.job_type == job && r.status == "failed").count();
            failed("whatsapp-health-check") >= 2 && failed("webhook-retry") >= 2
        })
        .await;
    assert!(failed_twice, "runs: {:?}\n{}", env.job_runs().await, schedules.failures());
    for run in env.job_runs().await.iter().filter(|r| r.status == "failed") {
        assert!(run.error.as_deref().unwrap_or_default().contains("Redis"), "{run:?}");
    }
    let failures = schedules.failures();
    assert!(failures.matches("Redis").count() >= 4, "each failure told to the trigger:\n{failures}");
}
