//! Side-by-side measurements, not pass/fail timings (the machine is shared and noisy): run with
//! `scripts/test.sh --test bench -- --ignored --nocapture`. Each prints a ratio measured in one
//! process, one configuration right after the other, over the same data.

mod common;

use std::time::{Duration, Instant};

use common::fake::{Canned, FakeHttp};
use common::graph::{self, Script};
use common::seed::{self, Connection, Webhook};
use common::*;
use serde_json::json;

/// The health check against a Graph API that takes 100 ms a call: 64 connections checked one at
/// a time, then 16 at a time.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "benchmark"]
async fn health_check_concurrency() {
    let script = Script::default();
    let mut runs = Vec::new();
    for concurrency in ["1", "16"] {
        let env = Env::new().await;
        for i in 0..64 {
            let id = format!("9{i:03}");
            script.node(&id, graph::healthy_phone().after(Duration::from_millis(100)));
            seed::connection(&env.db, Connection { phone_number_id: Some(&id), ..Default::default() }).await;
        }
        let fake = graph::start(&script).await;
        let mut vars = env.variables(&fake.url);
        vars.insert("health_check_concurrency".into(), concurrency.into());
        vars.insert("job_time_budget_seconds".into(), "120".into());
        let app = app("jobs-http", &vars);
        let started = Instant::now();
        let r = post_health(&app).await;
        let took = started.elapsed();
        assert_eq!(r.json["summary"]["checked"], 64, "{}", r.json);
        println!("health check, 64 connections, concurrency {concurrency}: {took:?}");
        runs.push(took);
    }
    println!("ratio concurrency 1 / 16: {:.1}x", runs[0].as_secs_f64() / runs[1].as_secs_f64());
}

/// The webhook retry draining 1,000 rows to an instant processor: per-run cost of claiming,
/// delivering and recording, at batch sizes 50 and 500.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "benchmark"]
async fn webhook_retry_batch_size() {
    let processor = FakeHttp::start(|_| Canned::json(200, json!({}))).await;
    let mut per_row = Vec::new();
    for batch in ["50", "500"] {
        let env = Env::new().await;
        for _ in 0..1000 {
            seed::webhook(&env.db, Webhook::default()).await;
        }
        let mut vars = env.variables("http://127.0.0.1:9");
        vars.insert("webhook_processor_url".into(), processor.url.clone());
        vars.insert("webhook_processor_host".into(), processor.url.clone());
        vars.insert("webhook_retry_batch_size".into(), batch.into());
        vars.insert("job_time_budget_seconds".into(), "120".into());
        let app = app("jobs-http", &vars);
        let started = Instant::now();
        let mut delivered = 0;
        while delivered < 1000 {
            let r = call(&app, "POST", "/api/v1/jobs/webhook-retry", &[("x-cron-secret", SECRET)]).await;
            delivered += r.json["summary"]["delivered"].as_u64().unwrap();
        }
        let took = started.elapsed();
        println!("webhook retry, 1000 rows, batch {batch}: {took:?} ({:?} a row)", took / 1000);
        per_row.push(took);
    }
    println!("ratio batch 50 / 500: {:.2}x", per_row[0].as_secs_f64() / per_row[1].as_secs_f64());
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
        let app = app("jobs-http", &vars);
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
