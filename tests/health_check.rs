//! The health check end to end: the shipped .wasm in the test host, a real Postgres and Redis,
//! and a fake Graph API on 127.0.0.1.

mod common;

use std::time::Duration;

use common::fake::Canned;
use common::graph::{self, graph_error, valid_token, Script};
use common::seed::{self, Connection};
use common::*;
use serde_json::json;
use uuid::Uuid;

const APP_ID: &str = "123456";
const APP_SECRET: &str = "app-secret-never-logged-42";

struct Health {
    status: String,
    token_valid: bool,
    token_expired: bool,
    api_response: String,
    response_time: i32,
    organization_matches: bool,
}

struct ConnRow {
    health_status: String,
    checked: bool,
    updated_recently: bool,
}

struct ConfigRow {
    token_status: Option<String>,
    expires_in_days: Option<f64>,
    checked: bool,
}

async fn health_rows(env: &Env, id: Uuid) -> Vec<Health> {
    env.db
        .query(
            "SELECT h.status, h.\"tokenValid\", h.\"tokenExpired\", h.\"apiResponse\", h.\"responseTime\", \
                    h.\"organizationId\" = c.\"organizationId\" \
             FROM whatsapp_health h JOIN whatsapp_connections c ON c.id = h.\"connectionId\" \
             WHERE h.\"connectionId\" = $1 ORDER BY h.\"lastCheck\"",
            &[&id],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| Health {
            status: r.get(0),
            token_valid: r.get(1),
            token_expired: r.get(2),
            api_response: r.get(3),
            response_time: r.get(4),
            organization_matches: r.get(5),
        })
        .collect()
}

async fn conn_row(env: &Env, id: Uuid) -> ConnRow {
    let r = env
        .db
        .query_one(
            "SELECT \"healthStatus\", \"lastHealthCheckAt\" > timezone('UTC', now()) - interval '1 minute', \
                    \"updatedAt\" > timezone('UTC', now()) - interval '1 minute' \
             FROM whatsapp_connections WHERE id = $1",
            &[&id],
        )
        .await
        .unwrap();
    ConnRow {
        health_status: r.get(0),
        checked: r.get::<_, Option<bool>>(1).unwrap_or(false),
        updated_recently: r.get(2),
    }
}

async fn config_row(env: &Env, id: Uuid) -> ConfigRow {
    let r = env
        .db
        .query_one(
            "SELECT \"tokenStatus\", EXTRACT(EPOCH FROM \"tokenExpiresAt\" - timezone('UTC', now()))::float8 / 86400, \
                    \"tokenLastCheckedAt\" IS NOT NULL \
             FROM whatsapp_configs WHERE \"connectionId\" = $1",
            &[&id],
        )
        .await
        .unwrap();
    ConfigRow { token_status: r.get(0), expires_in_days: r.get(1), checked: r.get(2) }
}

/// A case's status for a connection Meta did not answer about (throttled).
const NOT_CHECKED: &str = "not checked";

fn with_app_credentials(env: &Env, graph_url: &str) -> std::collections::HashMap<String, String> {
    let mut vars = env.variables(graph_url);
    vars.insert("meta_app_id".into(), APP_ID.into());
    vars.insert("meta_app_secret".into(), APP_SECRET.into());
    vars
}

fn unix_now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64
}

/// One connection per row of the classification table, all in one run, each checked column by
/// column: in one batch request...
#[tokio::test(flavor = "multi_thread")]
async fn classification_table_end_to_end() {
    classification_table(Calls::Batched).await;
}

/// ...and as single calls (`graph_batch_size` 1), where a call can time out on its own.
#[tokio::test(flavor = "multi_thread")]
async fn classification_table_end_to_end_in_single_calls() {
    classification_table(Calls::Single).await;
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Calls {
    Batched,
    Single,
}

async fn classification_table(calls: Calls) {
    let env = Env::new().await;
    let script = Script::default();
    let fake = graph::start(&script).await;

    /// A row of the table: what Graph answers for one connection, and what the run must write.
    struct Case {
        name: &'static str,
        phone: &'static str,
        /// The plaintext token, which the fake Graph API keys `debug_token` answers by.
        token: &'static str,
        /// What `"accessToken"` holds; `None` for no config row.
        stored: Option<String>,
        waba: &'static str,
        node: Option<Canned>,
        debug: Option<Canned>,
        status: &'static str,
        token_valid: bool,
        token_expired: bool,
        /// Part of `"apiResponse"`.
        reason: &'static str,
    }
    impl Default for Case {
        fn default() -> Self {
            Case {
                name: "",
                phone: "",
                token: "",
                stored: None,
                waba: "2001",
                node: None,
                debug: None,
                status: "healthy",
                token_valid: true,
                token_expired: false,
                reason: "Token validated successfully",
            }
        }
    }
    let cases = vec![
        Case {
            name: "healthy",
            phone: "101",
            token: "EAAB-healthy",
            stored: Some(seed::encrypt("EAAB-healthy")),
            ..Default::default()
        },
        Case {
            name: "expiring",
            phone: "102",
            token: "EAAB-expiring",
            stored: Some(seed::encrypt("EAAB-expiring")),
            debug: Some(valid_token(unix_now() + 3 * 86_400 + 600)),
            status: "warning",
            reason: "Token expires in 3 day(s)",
            ..Default::default()
        },
        Case {
            name: "limited",
            phone: "103",
            token: "EAAB-limited",
            stored: Some(seed::encrypt("EAAB-limited")),
            node: Some(Canned::json(
                200,
                json!({"status":"CONNECTED","quality_rating":"GREEN","health_status":{"can_send_message":"LIMITED","entities":[{"entity_type":"WABA","id":"w","can_send_message":"LIMITED","errors":[{"error_code":141010,"error_description":"Messaging limit reached"}]}]}}),
            )),
            status: "warning",
            reason: "can_send_message LIMITED (Messaging limit reached)",
            ..Default::default()
        },
        Case {
            name: "blocked",
            phone: "104",
            token: "EAAB-blocked",
            stored: Some(seed::encrypt("EAAB-blocked")),
            node: Some(Canned::json(
                200,
                json!({"status":"CONNECTED","health_status":{"can_send_message":"BLOCKED"}}),
            )),
            status: "error",
            reason: "can_send_message BLOCKED",
            ..Default::default()
        },
        Case {
            name: "expired",
            phone: "105",
            token: "EAAB-expired",
            stored: Some(seed::encrypt("EAAB-expired")),
            node: Some(graph_error(
                401,
                190,
                Some(463),
                "OAuthException",
                "Error validating access token: Session has expired",
                false,
            )),
            debug: Some(Canned::json(
                200,
                json!({"data":{"is_valid":false,"expires_at": unix_now() - 3600,"error":{"code":190,"message":"Session has expired"}}}),
            )),
            status: "error",
            token_valid: false,
            token_expired: true,
            reason: "Token expired (debug_token)",
            ..Default::default()
        },
        // Throttling is no finding: the connection was not checked, and keeps its status.
        Case {
            name: "rate_limited",
            phone: "106",
            token: "EAAB-ratelimited",
            stored: Some(seed::encrypt("EAAB-ratelimited")),
            waba: "2099",
            node: Some(graph::business_throttled()),
            status: NOT_CHECKED,
            ..Default::default()
        },
        Case {
            name: "server_error",
            phone: "107",
            token: "EAAB-5xx",
            stored: Some(seed::encrypt("EAAB-5xx")),
            node: Some(Canned::text(503, "<html>Service Unavailable</html>")),
            status: "unknown",
            reason: "health_status: HTTP 503 from Graph API",
            ..Default::default()
        },
        // A call that times out; in a batch, the operation Meta ran out of time for.
        Case {
            name: "timeout",
            phone: "108",
            token: "EAAB-timeout",
            stored: Some(seed::encrypt("EAAB-timeout")),
            node: Some(match calls {
                Calls::Single => graph::healthy_phone().after(Duration::from_secs(12)),
                Calls::Batched => graph::no_answer(),
            }),
            status: "unknown",
            reason: match calls {
                Calls::Single => "timed out",
                Calls::Batched => "no answer to this call of the batch (null)",
            },
            ..Default::default()
        },
        Case {
            name: "garbage",
            phone: "109",
            token: "EAAB-garbage",
            stored: Some(seed::encrypt("EAAB-garbage")),
            node: Some(Canned::text(200, "<!doctype html><p>hi</p>")),
            status: "unknown",
            reason: "not the JSON expected",
            ..Default::default()
        },
        Case {
            name: "no_token",
            phone: "110",
            status: "error",
            token_valid: false,
            reason: "No token in database",
            ..Default::default()
        },
        Case {
            name: "undecryptable",
            phone: "111",
            stored: Some("v1:zz:not:hex".into()),
            status: "error",
            token_valid: false,
            reason: "Token decryption failed",
            ..Default::default()
        },
        Case {
            name: "wrong_key_version",
            phone: "112",
            stored: Some(seed::encrypt("EAAB-v9").replacen("v1:", "v9:", 1)),
            status: "error",
            token_valid: false,
            reason: "Token decryption failed",
            ..Default::default()
        },
        Case {
            name: "legacy",
            phone: "113",
            token: "EAAB-legacy",
            stored: Some(seed::encrypt_legacy("EAAB-legacy")),
            ..Default::default()
        },
    ];

    let mut ids = std::collections::HashMap::new();
    for c in &cases {
        if let Some(node) = &c.node {
            script.node(c.phone, node.clone());
        }
        if let Some(debug) = &c.debug {
            script.token(c.token, debug.clone());
        }
        let id = seed::connection(
            &env.db,
            Connection {
                phone_number_id: Some(c.phone),
                waba_id: Some(c.waba),
                stored_token: c.stored.clone(),
                health_status: "healthy",
                ..Default::default()
            },
        )
        .await;
        ids.insert(c.name, id);
    }

    let mut vars = with_app_credentials(&env, &fake.url);
    if calls == Calls::Single {
        vars.insert("graph_batch_size".into(), "1".into());
    }
    let app = app("jobs-http", &vars).await;
    let r = post_health(&app).await;
    assert_eq!(r.status, 200, "{}", r.json);
    assert_eq!(r.json["success"], true);
    assert_eq!(r.json["message"], "WhatsApp health check completed");
    assert!(r.json["jobId"].as_str().unwrap().starts_with("whatsapp-health-check-"));
    assert_eq!(
        r.json["summary"],
        json!({"checked":12,"healthy":2,"warning":2,"error":5,"unknown":3,"skipped":0,"remaining":1,
            "throttled":1,"paced":0,"unanswered":0,"notSaved":0,"purged":{"jobRuns":0,"webhookRetryAttempts":0,"whatsappHealth":0}})
    );

    for Case { name, status, token_valid, token_expired, reason, .. } in cases {
        let id = ids[name];
        let rows = health_rows(&env, id).await;
        if status == NOT_CHECKED {
            assert!(rows.is_empty(), "{name}: no audit row for a connection not checked");
            let c = conn_row(&env, id).await;
            assert_eq!(c.health_status, "healthy", "{name}: status kept");
            assert!(!c.checked && !c.updated_recently, "{name}: first in line next run");
            continue;
        }
        assert_eq!(rows.len(), 1, "{name}: one audit row");
        let h = &rows[0];
        assert_eq!(h.status, status, "{name}: status ({})", h.api_response);
        assert_eq!(h.token_valid, token_valid, "{name}: tokenValid");
        assert_eq!(h.token_expired, token_expired, "{name}: tokenExpired");
        assert!(h.api_response.contains(reason), "{name}: apiResponse {:?} lacks {reason:?}", h.api_response);
        assert!(h.organization_matches, "{name}: organizationId copied from the connection");
        let c = conn_row(&env, id).await;
        if status == "unknown" {
            assert_eq!(
                c.health_status, "healthy",
                "{name}: a transient failure leaves the last known status"
            );
            assert!(
                !c.checked && !c.updated_recently,
                "{name}: unknown leaves lastHealthCheckAt/updatedAt alone"
            );
        } else {
            assert_eq!(c.health_status, status, "{name}: healthStatus");
            assert!(c.checked && c.updated_recently, "{name}: lastHealthCheckAt and updatedAt set");
        }
    }
    let expired = health_rows(&env, ids["expired"]).await;
    assert!(
        expired[0].api_response.contains("OAuthException 190/463: token expired"),
        "{}",
        expired[0].api_response
    );
    if calls == Calls::Single {
        assert!(health_rows(&env, ids["timeout"]).await[0].response_time >= 10_000);
    }
    assert_eq!(health_rows(&env, ids["no_token"]).await[0].response_time, 0);

    // Token facts from debug_token.
    let healthy = config_row(&env, ids["healthy"]).await;
    assert_eq!(
        (healthy.token_status.as_deref(), healthy.expires_in_days, healthy.checked),
        (Some("valid"), None, true)
    );
    let expiring = config_row(&env, ids["expiring"]).await;
    assert_eq!(expiring.token_status.as_deref(), Some("expiring_soon"));
    assert!((expiring.expires_in_days.unwrap() - 3.0).abs() < 0.1);
    assert_eq!(config_row(&env, ids["expired"]).await.token_status.as_deref(), Some("expired"));
    let undecryptable = config_row(&env, ids["undecryptable"]).await;
    assert_eq!(
        (undecryptable.token_status, undecryptable.checked),
        (None, false),
        "no debug_token answer, no token facts"
    );

    // What Meta was sent: the app token for debug_token, the user token with its own call only,
    // never in a request's URL but for debug_token's own single call (SPEC 5.3).
    let sent = graph::calls(&fake.requests());
    let phone = sent.iter().find(|c| c.target.starts_with("/v25.0/101?")).expect("phone call");
    assert_eq!(phone.target, "/v25.0/101?fields=health_status,status,quality_rating");
    assert_eq!(phone.token.as_deref(), Some("EAAB-healthy"));
    let debug =
        sent.iter().find(|c| c.target.contains("input_token=EAAB-healthy")).expect("debug_token call");
    assert_eq!(debug.token, Some(format!("{APP_ID}|{APP_SECRET}")));
    assert!(
        !sent.iter().any(|c| c.target.contains("110") || c.target.contains("111")),
        "no call without a usable token"
    );
    let requests = fake.requests();
    match calls {
        Calls::Batched => {
            assert_eq!(requests.len(), 1, "the whole table in one batch request");
            assert!(requests.iter().all(|r| !r.target.contains("EAAB-")), "no token in a URL");
        }
        Calls::Single => {
            assert_eq!(requests.len(), sent.len());
            assert!(requests
                .iter()
                .filter(|r| !r.target.contains("/debug_token?"))
                .all(|r| !r.target.contains("EAAB-")));
        }
    }

    // Logs: one JSON object per line, tagged, and no secret of any kind.
    let out = app.output();
    for line in out.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|_| panic!("not JSON: {line}"));
        assert_eq!(v["job"], "HealthCheckJob", "{line}");
    }
    for secret in ["EAAB-", KEY, SECRET, APP_SECRET] {
        assert!(!out.contains(secret), "log output contains {secret:?}");
    }
    let audit: Vec<String> = env
        .db
        .query("SELECT \"apiResponse\" FROM whatsapp_health", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(!audit.iter().any(|a| a.contains("EAAB-")), "no token in the audit table");
}

#[tokio::test(flavor = "multi_thread")]
async fn third_unknown_in_a_row_becomes_a_warning() {
    let env = Env::new().await;
    let script = Script::default();
    script.node("1001", Canned::text(502, "bad gateway"));
    let fake = graph::start(&script).await;
    let id = seed::connection(&env.db, Connection::default()).await;
    let app = app("jobs-http", &env.variables(&fake.url)).await;
    for _ in 0..3 {
        assert_eq!(post_health(&app).await.status, 200);
    }
    let statuses: Vec<String> = health_rows(&env, id).await.into_iter().map(|h| h.status).collect();
    assert_eq!(statuses, ["unknown", "unknown", "warning"]);
    assert_eq!(conn_row(&env, id).await.health_status, "warning");
}

#[tokio::test(flavor = "multi_thread")]
async fn selection_skips_inactive_and_recent_and_takes_stalest_first() {
    let env = Env::new().await;
    let fake = graph::start(&Script::default()).await;
    let inactive = seed::connection(&env.db, Connection { status: "inactive", ..Default::default() }).await;
    let recent =
        seed::connection(&env.db, Connection { checked_hours_ago: Some(2), ..Default::default() }).await;
    let stale = seed::connection(
        &env.db,
        Connection { checked_hours_ago: Some(30), phone_number_id: Some("2002"), ..Default::default() },
    )
    .await;
    let never =
        seed::connection(&env.db, Connection { phone_number_id: Some("3003"), ..Default::default() }).await;
    // The phone id comes from the config when the connection has none; the WABA is the last resort.
    let config_phone = seed::connection(
        &env.db,
        Connection { phone_number_id: None, waba_id: Some("4004"), ..Default::default() },
    )
    .await;

    let mut vars = env.variables(&fake.url);
    vars.insert("health_check_concurrency".into(), "1".into());
    let app = app("jobs-http", &vars).await;
    let r = post_health(&app).await;
    assert_eq!(r.status, 200, "{}", r.json);
    assert_eq!(r.json["summary"]["checked"], 3);
    assert_eq!(r.json["summary"]["skipped"], 1);
    assert!(health_rows(&env, inactive).await.is_empty());
    assert!(health_rows(&env, recent).await.is_empty());
    assert_eq!(health_rows(&env, stale).await.len(), 1);
    assert_eq!(health_rows(&env, never).await.len(), 1);
    assert_eq!(health_rows(&env, config_phone).await.len(), 1);

    let order: Vec<String> = graph::calls(&fake.requests())
        .iter()
        .map(|c| c.target.split('?').next().unwrap().to_owned())
        .collect();
    assert_eq!(
        order.last().map(String::as_str),
        Some("/v25.0/2002"),
        "never-checked first, the 30-hour-old last: {order:?}"
    );
    assert!(order.contains(&"/v25.0/4004".to_owned()), "WABA read when no phone id: {order:?}");
    let waba =
        graph::calls(&fake.requests()).into_iter().find(|c| c.target.starts_with("/v25.0/4004")).unwrap();
    assert_eq!(waba.target, "/v25.0/4004?fields=health_status");

    // Right after, everything is recent: nothing to do.
    let again = post_health(&app).await;
    assert_eq!(again.json["summary"]["checked"], 0);
    assert_eq!(again.json["summary"]["skipped"], 4);
}

#[tokio::test(flavor = "multi_thread")]
async fn time_budget_leaves_remaining_for_the_next_run() {
    let env = Env::new().await;
    let script = Script::default();
    for id in ["1", "2", "3", "4", "5"] {
        script.node(id, graph::healthy_phone().after(Duration::from_millis(700)));
    }
    let fake = graph::start(&script).await;
    for id in ["1", "2", "3", "4", "5"] {
        seed::connection(&env.db, Connection { phone_number_id: Some(id), ..Default::default() }).await;
    }
    let mut vars = env.variables(&fake.url);
    vars.insert("job_time_budget_seconds".into(), "1".into());
    vars.insert("health_check_concurrency".into(), "1".into());
    vars.insert("graph_batch_size".into(), "1".into());
    let app = app("jobs-http", &vars).await;

    let first = post_health(&app).await;
    let checked = first.json["summary"]["checked"].as_u64().unwrap();
    let remaining = first.json["summary"]["remaining"].as_u64().unwrap();
    assert!(remaining > 0 && checked > 0, "{}", first.json);
    assert_eq!(checked + remaining, 5);
    let runs = env.job_runs().await;
    assert_eq!(runs.last().unwrap().status, "partial");

    let mut total = checked;
    for _ in 0..5 {
        if total == 5 {
            break;
        }
        let next = post_health(&app).await;
        assert_eq!(next.json["summary"]["skipped"].as_u64().unwrap(), total, "earlier ones are not redone");
        total += next.json["summary"]["checked"].as_u64().unwrap();
    }
    assert_eq!(total, 5, "every connection checked once across the runs");
    // A call the budget cut short is made again by the next run, but only finished checks count.
    let audit: i64 = env.db.query_one("SELECT count(*) FROM whatsapp_health", &[]).await.unwrap().get(0);
    assert_eq!(audit, 5, "one audit row per connection");
    let calls = fake.requests().len();
    assert!((5..=10).contains(&calls), "{calls} Graph calls");
}

/// The due list is read a page (200) at a time, each page after the last one's key. With one
/// check time shared by more connections than a page holds, and never-checked ones before
/// them, every connection is read once, in order, none skipped at a page's edge.
#[tokio::test(flavor = "multi_thread")]
async fn paging_across_ties_in_the_check_time_reads_each_connection_once() {
    let env = Env::new().await;
    let script = Script::default();
    let fake = graph::start(&script).await;
    env.db
        .execute(
            "WITH c AS (
                 INSERT INTO whatsapp_connections (\"organizationId\", \"wabaId\", \"phoneNumberId\", status,
                     \"lastHealthCheckAt\", \"updatedAt\")
                 SELECT gen_random_uuid(), '2001', p::text, 'active',
                     CASE WHEN p <= 30 THEN NULL ELSE timestamp '2026-01-01 00:00:00.123' END, timezone('UTC', now())
                 FROM generate_series(1, 530) p
                 RETURNING id, \"organizationId\")
             INSERT INTO whatsapp_configs (\"organizationId\", \"connectionId\", \"accessToken\", status, \"updatedAt\")
             SELECT \"organizationId\", id, $1, 'connected', timezone('UTC', now()) FROM c",
            &[&seed::encrypt("EAAB-ties")],
        )
        .await
        .unwrap();
    let mut vars = env.variables(&fake.url);
    vars.insert("health_check_concurrency".into(), "1".into());
    let app = app("jobs-http", &vars).await;
    let r = post_health(&app).await;
    assert_eq!(
        (r.json["summary"]["healthy"].as_i64(), r.json["summary"]["remaining"].as_i64()),
        (Some(530), Some(0))
    );
    let read: Vec<u32> = graph::calls(&fake.requests())
        .iter()
        .map(|c| c.target.split('?').next().unwrap().rsplit('/').next().unwrap().parse().unwrap())
        .collect();
    let mut once = read.clone();
    once.sort_unstable();
    once.dedup();
    assert_eq!((read.len(), once.len()), (530, 530), "each read once");
    assert!(read[..30].iter().all(|p| *p <= 30), "never-checked first: {:?}", &read[..30]);
}

#[tokio::test(flavor = "multi_thread")]
async fn at_most_concurrency_graph_calls_in_flight() {
    let env = Env::new().await;
    let script = Script::default();
    let ids: Vec<String> = (0..9).map(|i| format!("70{i}")).collect();
    for id in &ids {
        script.node(id, graph::healthy_phone().after(Duration::from_millis(300)));
    }
    let fake = graph::start(&script).await;
    for id in &ids {
        seed::connection(&env.db, Connection { phone_number_id: Some(id), ..Default::default() }).await;
    }
    let mut vars = env.variables(&fake.url);
    vars.insert("health_check_concurrency".into(), "3".into());
    // Two connections a batch: five requests for nine connections.
    vars.insert("graph_batch_size".into(), "2".into());
    let app = app("jobs-http", &vars).await;
    let r = post_health(&app).await;
    assert_eq!(r.json["summary"]["healthy"], 9, "{}", r.json);
    assert_eq!(fake.requests().len(), 5);
    assert_eq!(fake.max_in_flight(), 3, "three requests at once, never more");
}

/// Hosted Spin kills a request at about 30 s: with Graph answering in 9 s a call, a run with the
/// default 25 s budget answers before 27 s, and every check it finished is stored, written as
/// it went rather than at the end.
#[tokio::test(flavor = "multi_thread")]
async fn a_run_answers_within_its_budget_and_keeps_every_finished_check() {
    let env = Env::new().await;
    let script = Script::default();
    for i in 0..40 {
        let phone = format!("9{i:02}");
        script.node(&phone, graph::healthy_phone().after(Duration::from_secs(9)));
        seed::connection(&env.db, Connection { phone_number_id: Some(&phone), ..Default::default() }).await;
    }
    let fake = graph::start(&script).await;
    let mut vars = env.variables(&fake.url);
    vars.insert("graph_batch_size".into(), "1".into());
    let app = std::sync::Arc::new(app("jobs-http", &vars).await);
    let started = std::time::Instant::now();
    let run = tokio::spawn({
        let app = app.clone();
        async move { post_health(&app).await }
    });
    // The first 16 checks finish at about 9 s and wait at most 2 s for company; by 13 s they are
    // in the database, though the run goes on (the next wave ends at 18 s): a run killed now
    // would keep them.
    tokio::time::sleep(Duration::from_secs(13)).await;
    let stored_mid_run: i64 =
        env.db.query_one("SELECT count(*) FROM whatsapp_health", &[]).await.unwrap().get(0);
    let r = run.await.unwrap();
    let elapsed = started.elapsed();
    assert!(elapsed > Duration::from_secs(13), "the run was still going when the rows were counted");
    assert!(stored_mid_run >= 16, "{stored_mid_run} results stored at 13 s");

    assert_eq!(r.status, 200, "{}", r.json);
    assert!(elapsed < Duration::from_secs(27), "answered after {elapsed:?}");
    let checked = r.json["summary"]["checked"].as_i64().unwrap();
    let remaining = r.json["summary"]["remaining"].as_i64().unwrap();
    assert_eq!(checked + remaining, 40, "{}", r.json);
    assert!(remaining > 0, "{}", r.json);
    assert_eq!(r.json["summary"]["unknown"], 0, "a check cut short is remaining, not unknown: {}", r.json);
    let stored: i64 = env.db.query_one("SELECT count(*) FROM whatsapp_health", &[]).await.unwrap().get(0);
    assert_eq!(stored, checked, "every finished check is stored");
    assert_eq!(env.job_runs().await[0].status, "partial");
}

/// SPEC 5.4: the connection's `"phoneNumberId"`, else its config's `"phoneId"`.
#[tokio::test(flavor = "multi_thread")]
async fn the_configs_phone_id_serves_when_the_connection_has_none() {
    let env = Env::new().await;
    let script = Script::default();
    script.node("5551", blocked_phone());
    let fake = graph::start(&script).await;
    let id = seed::connection(
        &env.db,
        Connection { phone_number_id: None, health_status: "healthy", ..Default::default() },
    )
    .await;
    env.db
        .execute("UPDATE whatsapp_configs SET \"phoneId\" = '5551' WHERE \"connectionId\" = $1", &[&id])
        .await
        .unwrap();
    let app = app("jobs-http", &env.variables(&fake.url)).await;
    assert_eq!(post_health(&app).await.status, 200);
    let calls: Vec<String> = graph::calls(&fake.requests()).into_iter().map(|c| c.target).collect();
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert!(calls[0].starts_with("/v25.0/5551?"), "{calls:?}");
    assert_eq!(env.health_status(id).await, "error", "the config's phone was read");
}

/// SPEC 5.1: the `connected` config's token first, even when another config is newer.
#[tokio::test(flavor = "multi_thread")]
async fn a_connected_config_is_preferred_to_a_newer_one() {
    let env = Env::new().await;
    let script = Script::default();
    let fake = graph::start(&script).await;
    let id = seed::connection(
        &env.db,
        Connection { stored_token: Some(seed::encrypt("EAAB-connected")), ..Default::default() },
    )
    .await;
    env.db
        .execute(
            "INSERT INTO whatsapp_configs (\"organizationId\", \"connectionId\", \"accessToken\", status, \"updatedAt\") \
             SELECT \"organizationId\", id, $2, 'disconnected', timezone('UTC', now()) + interval '1 hour' \
             FROM whatsapp_connections WHERE id = $1",
            &[&id, &seed::encrypt("EAAB-newer-but-disconnected")],
        )
        .await
        .unwrap();
    let app = app("jobs-http", &env.variables(&fake.url)).await;
    assert_eq!(post_health(&app).await.status, 200);
    let tokens: Vec<Option<String>> = graph::calls(&fake.requests()).into_iter().map(|c| c.token).collect();
    assert_eq!(tokens, [Some("EAAB-connected".to_owned())]);
}

fn blocked_phone() -> Canned {
    Canned::json(200, json!({"status":"CONNECTED","health_status":{"can_send_message":"BLOCKED"}}))
}

/// More due connections than a page (200): each is checked once, stalest first across the pages,
/// and a recheck window of 0 h does not bring the run's own checks round again (the cutoff is
/// fixed when the run starts).
#[tokio::test(flavor = "multi_thread")]
async fn an_estate_larger_than_a_page_is_checked_once_stalest_first() {
    let env = Env::new().await;
    let fake = graph::start(&Script::default()).await;
    // Phone id n was last checked 100 + n hours ago: the highest n is the stalest.
    env.db
        .execute(
            "INSERT INTO whatsapp_connections (\"organizationId\", \"wabaId\", \"phoneNumberId\", status, \
                 \"healthStatus\", \"lastHealthCheckAt\", \"updatedAt\") \
             SELECT gen_random_uuid(), '2001', n::text, 'active', 'healthy', \
                 timezone('UTC', now()) - make_interval(hours => 100 + n), timezone('UTC', now()) \
             FROM generate_series(1, 450) n",
            &[],
        )
        .await
        .unwrap();
    env.db
        .execute(
            "INSERT INTO whatsapp_configs (\"organizationId\", \"connectionId\", \"wabaId\", \"accessToken\", status, \"updatedAt\") \
             SELECT \"organizationId\", id, \"wabaId\", $1, 'connected', timezone('UTC', now()) FROM whatsapp_connections",
            &[&seed::encrypt("EAAB-page-token")],
        )
        .await
        .unwrap();
    let mut vars = env.variables(&fake.url);
    vars.insert("health_check_concurrency".into(), "1".into());
    vars.insert("health_recheck_after_hours".into(), "0".into());
    let r = post_health(&app("jobs-http", &vars).await).await;
    assert_eq!(r.status, 200, "{}", r.json);
    assert_eq!(
        (r.json["summary"]["checked"].as_u64(), r.json["summary"]["remaining"].as_u64()),
        (Some(450), Some(0))
    );
    let order: Vec<u32> = graph::calls(&fake.requests())
        .iter()
        .map(|c| c.target.split('?').next().unwrap().rsplit('/').next().unwrap().parse().unwrap())
        .collect();
    assert_eq!(order, (1..=450).rev().collect::<Vec<_>>(), "each once, stalest first");
    let audit: i64 = env.count("SELECT count(*) FROM whatsapp_health").await;
    assert_eq!(audit, 450);
}

/// A run the cron trigger starts has `cron_time_budget_seconds`: no request limit cuts it, so it
/// gets through work that the HTTP budget would leave to later runs.
#[tokio::test(flavor = "multi_thread")]
async fn a_cron_run_has_a_budget_of_its_own() {
    let env = Env::new().await;
    let script = Script::default();
    for id in ["1", "2", "3", "4", "5"] {
        script.node(id, graph::healthy_phone().after(Duration::from_millis(700)));
        seed::connection(&env.db, Connection { phone_number_id: Some(id), ..Default::default() }).await;
    }
    let fake = graph::start(&script).await;
    let mut vars = env.variables(&fake.url);
    vars.insert("job_time_budget_seconds".into(), "1".into());
    vars.insert("cron_time_budget_seconds".into(), "60".into());
    vars.insert("health_check_concurrency".into(), "1".into());
    vars.insert("graph_batch_size".into(), "1".into());
    let result = app("cron-health-check", &vars).await.cron(0).await.unwrap();
    assert_eq!(result, Ok(()));
    let runs = env.job_runs().await;
    let run = runs.last().unwrap();
    assert_eq!((run.trigger.as_str(), run.status.as_str()), ("cron", "succeeded"), "{run:?}");
    let summary = run.summary.as_ref().unwrap();
    assert_eq!((summary["checked"].as_u64(), summary["remaining"].as_u64()), (Some(5), Some(0)), "{summary}");
}
