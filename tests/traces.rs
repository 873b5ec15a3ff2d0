//! The "Traces" section of docs/operating.md as a fact: `spin up` with `OTEL_EXPORTER_OTLP_ENDPOINT` set
//! exports a span for the inbound request and for each outbound call of a run (Postgres, Redis,
//! the processor) to an OTLP/HTTP collector, here a stand-in that records what it is sent. Spin's
//! exporter, not the component, makes these, so the test runs under `spin up` only
//! (`scripts/test.sh` runs it there with `--ignored`).

mod common;

use std::time::{Duration, Instant};

use common::fake::{Canned, FakeHttp};
use common::seed::{self, Webhook};
use common::spin::SpinUp;
use common::*;
use serde_json::json;

#[tokio::test(flavor = "multi_thread")]
#[ignore = "under spin up only: scripts/test.sh runs it with WHATRACK_RUNTIME set"]
async fn a_run_is_traced_from_its_request_to_each_outbound_call() {
    let cli = common::spin::cli().expect("WHATRACK_RUNTIME=spin or spin4: Spin makes the traces");
    let env = Env::new().await;
    let collector = FakeHttp::start(|_| Canned::json(200, json!({}))).await;
    let processor = FakeHttp::start(|_| Canned::json(200, json!({}))).await;
    seed::webhook(&env.db, Webhook::default()).await;
    let mut vars = env.variables("http://127.0.0.1:9");
    vars.insert("webhook_processor_url".into(), format!("{}/hook", processor.url));
    vars.insert("webhook_processor_host".into(), processor.url.clone());
    // Passwords in the URLs (the test servers do not check them): none may reach a trace.
    vars.insert("database_url".into(), env.database_url.replacen("postgres@", "postgres:PgS3cret@", 1));
    vars.insert("redis_url".into(), env.redis_url.replacen("://", "://default:RdS3cret@", 1));
    let manifest = std::fs::read_to_string(root().join("spin.toml")).unwrap();
    let exporter = [("OTEL_EXPORTER_OTLP_ENDPOINT", collector.url.as_str())];
    let spin = SpinUp::start_with_env(&cli, &manifest, &vars, false, &exporter).await.expect("spin up");

    let r = spin
        .request(
            http::Request::post("/api/v1/jobs/webhook-retry")
                .header("x-cron-secret", SECRET)
                .body(bytes::Bytes::new())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(processor.requests().len(), 1);

    // OTLP/HTTP carries protobuf, whose strings are stored as they are: each span is found by
    // the names and attribute values it must carry.
    let wanted = [
        "/api/v1/jobs/webhook-retry",       // the inbound request's route
        "spin_factor_outbound_pg",          // Postgres calls
        "FOR UPDATE SKIP LOCKED",           // ... with the claim's statement
        "spin_factor_outbound_redis",       // the Redis lock
        &format!("{}/hook", processor.url), // the delivery's url.full
    ];
    let until = Instant::now() + Duration::from_secs(30);
    let traces = loop {
        let traces: Vec<u8> = collector
            .requests()
            .iter()
            .filter(|r| r.target == "/v1/traces")
            .flat_map(|r| r.body.to_vec())
            .collect();
        let text = String::from_utf8_lossy(&traces).into_owned();
        if wanted.iter().all(|w| text.contains(w)) || Instant::now() > until {
            break text;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    for w in wanted {
        assert!(traces.contains(w), "no span with {w:?} exported:\n{}", spin.errors());
    }
    let exported: String =
        collector.requests().iter().map(|r| String::from_utf8_lossy(&r.body).into_owned()).collect();
    for secret in ["PgS3cret", "RdS3cret"] {
        assert!(!exported.contains(secret), "{secret} exported to the collector");
    }
    assert!(
        collector.requests().iter().all(|r| r.header("content-type") == Some("application/x-protobuf")),
        "OTLP/HTTP with protobuf bodies"
    );
}
