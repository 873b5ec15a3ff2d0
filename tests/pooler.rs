//! Behind a connection pooler (docs/existing-database.md): Debian's
//! PgBouncer on loopback in front of the suite's Postgres. In transaction mode, which cannot
//! carry the named statements Spin's Postgres host prepares, every failure says what is wrong and
//! what to do, in one alert, and charges nothing to a connection or a webhook. In session mode
//! the app works as with a direct connection (and `scripts/test.sh` runs the end-to-end suites
//! through it once more, with `WHATRACK_PGBOUNCER=session`).

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use common::fake::{Canned, FakeHttp};
use common::graph::{self, Script};
use common::seed::{self, Connection, Webhook};
use common::servers::OwnPgBouncer;
use common::*;
use serde_json::{json, Value};

const POOLER_ERROR: &str = "database_url goes through a transaction-mode connection pooler";

/// The app in front of `pooler`, with the stand-ins it calls: Graph, a processor and an alert
/// receiver.
struct Pooled {
    pooler: OwnPgBouncer,
    receiver: FakeHttp,
    vars: std::collections::HashMap<String, String>,
    _stand_ins: (FakeHttp, FakeHttp),
}

impl Pooled {
    async fn start(env: &Env, pool_mode: &str, pool_size: u32) -> Pooled {
        let graph = graph::start(&Script::default()).await;
        let processor = FakeHttp::start(|_| Canned::json(200, json!({"ok": true}))).await;
        let receiver = FakeHttp::start(|_| Canned::text(200, "ok")).await;
        let pooler = OwnPgBouncer::start(&postgres_address(&env.database_url), pool_mode, pool_size);
        let mut vars = env.variables(&graph.url);
        let url = pooler.url_for(&env.database_url);
        vars.insert("database_host".into(), host_of(&url));
        vars.insert("database_url".into(), url);
        vars.insert("webhook_processor_url".into(), format!("{}/hook", processor.url));
        vars.insert("webhook_processor_host".into(), processor.url.clone());
        vars.insert("alert_webhook_url".into(), format!("{}/alerts", receiver.url));
        vars.insert("alert_webhook_host".into(), receiver.url.clone());
        Pooled { pooler, receiver, vars, _stand_ins: (graph, processor) }
    }
}

/// Other clients of the pooler, as WhaTrack's own traffic is: their transactions keep the
/// server connections changing hands between a statement's two exchanges.
fn other_traffic(url: String, stop: Arc<AtomicBool>) -> Vec<tokio::task::JoinHandle<()>> {
    (0..6)
        .map(|_| {
            let (url, stop) = (url.clone(), stop.clone());
            tokio::spawn(async move {
                let client = connect(&url).await;
                while !stop.load(Ordering::SeqCst) {
                    let _ = client.batch_execute("SELECT pg_sleep(0.002)").await;
                }
            })
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn behind_a_transaction_pooler_every_failure_says_why_and_charges_nothing() {
    let env = Env::new().await;
    let connection =
        seed::connection(&env.db, Connection { health_status: "warning", ..Default::default() }).await;
    let webhook = seed::webhook(&env.db, Webhook::default()).await;
    // Held whole: a field left out of a pattern would be dropped, and its server with it.
    let pooled = Pooled::start(&env, "transaction", 4).await;
    let (pooler, receiver, vars) = (&pooled.pooler, &pooled.receiver, &pooled.vars);
    let stop = Arc::new(AtomicBool::new(false));
    let traffic = other_traffic(pooler.url_for(&env.database_url), stop.clone());
    let app = Arc::new(app("jobs-http", vars).await);

    let requests = (0..30).map(|i| {
        let app = app.clone();
        tokio::spawn(async move {
            let (method, path) = match i % 6 {
                0 => ("POST", "/api/v1/jobs/whatsapp-health-check"),
                1 => ("POST", "/api/v1/jobs/webhook-retry"),
                _ => ("GET", "/api/v1/jobs/whatsapp-health-check/runs"),
            };
            (method, call(&app, method, path, &[("x-cron-secret", SECRET)]).await)
        })
    });
    let mut answers = Vec::new();
    for request in requests.collect::<Vec<_>>() {
        answers.push(request.await.unwrap());
    }
    stop.store(true, Ordering::SeqCst);
    for t in traffic {
        t.await.unwrap();
    }

    let failed: Vec<&Value> = answers.iter().filter(|(_, r)| r.status == 500).map(|(_, r)| &r.json).collect();
    assert!(!failed.is_empty(), "the pooler lost none of the host's statements this time");
    for (method, r) in &answers {
        match r.status {
            200 => {}
            429 => assert_eq!(r.json["error"], "Job already running, skipping"),
            500 => {
                let error = r.json["error"].as_str().unwrap();
                assert!(error.contains(POOLER_ERROR), "{method}: {error}");
                assert!(
                    error.contains("session mode") && error.contains("max_prepared_statements"),
                    "{error}"
                );
            }
            other => panic!("{method}: {other} {}", r.json),
        }
    }

    // Nothing charged: every health row and every attempt belongs to a run that succeeded.
    let healthy_runs = answers
        .iter()
        .filter(|(m, r)| {
            *m == "POST" && r.status == 200 && r.json["message"] == "WhatsApp health check completed"
        })
        .map(|(_, r)| r.json["summary"]["checked"].as_i64().unwrap())
        .sum::<i64>();
    assert_eq!(env.count("SELECT count(*) FROM whatsapp_health").await, healthy_runs);
    if healthy_runs == 0 {
        assert_eq!(env.health_status(connection).await, "warning", "no check was written");
    }
    let (retry_count, attempts): (i32, i64) = {
        let row = env
            .db
            .query_one(
                "SELECT \"retryCount\", (SELECT count(*) FROM webhook_retry_attempts) FROM whatsapp_webhook_logs WHERE id = $1",
                &[&webhook],
            )
            .await
            .unwrap();
        (row.get(0), row.get(1))
    };
    assert_eq!(i64::from(retry_count), attempts, "an attempt is charged only with its record");

    // One alert for the database, however many runs failed.
    let run_failures = answers.iter().filter(|(m, r)| *m == "POST" && r.status == 500).count();
    let texts = receiver.alert_texts();
    if run_failures > 0 {
        assert_eq!(texts.len(), 1, "{run_failures} runs failed: {texts:?}");
        assert!(texts[0].contains(POOLER_ERROR), "{texts:?}");
    }
    assert!(app.output().contains(POOLER_ERROR) || run_failures == 0, "the log says it too");
}

/// Two replicas (two app processes under `spin up`) behind one transaction-mode pooler: each
/// names the statements it prepares from `s0`, so besides a name the pooler lost (26000) one
/// meets the other's: taken already (42P05), or another statement's under our name (08P01, and
/// 22P03 where the bind's types differ). Those failures say what is wrong in the same words,
/// with one alert between them, and nothing is charged. (A bind can also reach the other's
/// statement with parameters Postgres reads otherwise, e.g. an integer's bytes as text, 22021;
/// no error names the pooler then, which is why the guide says never to do this.)
#[tokio::test(flavor = "multi_thread")]
async fn two_replicas_behind_a_transaction_pooler_fail_the_same_clear_way() {
    let env = Env::new().await;
    seed::connection(&env.db, Connection { health_status: "warning", ..Default::default() }).await;
    let webhook = seed::webhook(&env.db, Webhook::default()).await;
    let pooled = Pooled::start(&env, "transaction", 2).await;
    let replicas =
        [Arc::new(app("jobs-http", &pooled.vars).await), Arc::new(app("jobs-http", &pooled.vars).await)];
    let mut requests = Vec::new();
    for i in 0..60 {
        let app = replicas[i % 2].clone();
        requests.push(tokio::spawn(async move {
            let (method, path) = match i % 5 {
                0 => ("POST", "/api/v1/jobs/webhook-retry"),
                1 => ("POST", "/api/v1/jobs/whatsapp-health-check"),
                2 => ("GET", "/api/v1/jobs/webhook-retry"),
                _ => ("GET", "/api/v1/jobs/whatsapp-health-check/runs"),
            };
            (method, call(&app, method, path, &[("x-cron-secret", SECRET)]).await)
        }));
    }
    let mut sqlstates = std::collections::BTreeSet::new();
    let (mut named, mut unnamed) = (0, Vec::new());
    for request in requests {
        let (method, r) = request.await.unwrap();
        match r.status {
            200 => {}
            429 => assert_eq!(r.json["error"], "Job already running, skipping"),
            500 => {
                let error = r.json["error"].as_str().unwrap();
                let state = error.rsplit("SQLSTATE ").next().unwrap().trim_end_matches(')').to_owned();
                if error.contains(POOLER_ERROR) {
                    named += 1;
                    sqlstates.insert(state);
                } else {
                    assert!(state.starts_with("22"), "{method}: {error}");
                    unnamed.push(error.to_owned());
                }
            }
            other => panic!("{method}: {other} {}", r.json),
        }
    }
    assert!(named > 0, "the pooler mixed up none of the replicas' statements this time");
    eprintln!("SQLSTATEs met by two replicas: {sqlstates:?}; no pooler named: {unnamed:?}");
    let known = ["26000", "42P05", "08P01", "22P03"];
    assert!(sqlstates.iter().all(|s| known.contains(&s.as_str())), "{sqlstates:?}");
    let (retry_count, processed, attempts): (i32, bool, i64) = {
        let row = env
            .db
            .query_one(
                "SELECT \"retryCount\", processed, (SELECT count(*) FROM webhook_retry_attempts) \
                 FROM whatsapp_webhook_logs WHERE id = $1",
                &[&webhook],
            )
            .await
            .unwrap();
        (row.get(0), row.get(1), row.get(2))
    };
    // Each failed attempt counted with its record, and a delivery recorded once.
    assert_eq!(
        i64::from(retry_count) + i64::from(processed),
        attempts,
        "an attempt is charged only with its record"
    );
    let texts = pooled.receiver.alert_texts();
    let pooler_alerts = texts.iter().filter(|t| t.contains(POOLER_ERROR)).count();
    assert!(pooler_alerts <= 1, "one alert for the pooler at most: {texts:?}");
}

/// In session mode a client keeps its server connection: everything works as direct.
#[tokio::test(flavor = "multi_thread")]
async fn behind_a_session_pooler_the_jobs_and_routes_work() {
    let env = Env::new().await;
    seed::connection(&env.db, Connection::default()).await;
    seed::webhook(&env.db, Webhook::default()).await;
    let pooled = Pooled::start(&env, "session", 100).await;
    let (receiver, vars) = (&pooled.receiver, &pooled.vars);
    let app = Arc::new(app("jobs-http", vars).await);

    let health = post_health(&app).await;
    assert_eq!((health.status, &health.json["summary"]["checked"]), (200, &json!(1)), "{}", health.json);
    let retry = call(&app, "POST", "/api/v1/jobs/webhook-retry", &[("x-cron-secret", SECRET)]).await;
    assert_eq!((retry.status, &retry.json["summary"]["delivered"]), (200, &json!(1)), "{}", retry.json);
    let mut reads = Vec::new();
    for i in 0..30 {
        let app = app.clone();
        let path =
            ["/api/v1/jobs/whatsapp-health-check/runs", "/api/v1/jobs/webhook-retry", "/api/v1/jobs/console"]
                [i % 3];
        reads.push(tokio::spawn(async move { call(&app, "GET", path, &[("x-cron-secret", SECRET)]).await }));
    }
    for read in reads {
        let r = read.await.unwrap();
        assert_eq!(r.status, 200, "{}", r.json);
    }
    assert_eq!(env.count("SELECT count(*) FROM job_runs WHERE status = 'succeeded'").await, 2);
    assert!(receiver.requests().is_empty(), "no alert");
}
