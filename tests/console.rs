//! The operator console: pausing and resuming a job, redriving by time window, the figures the
//! dashboard and Prometheus read, and the page itself (in headless Chromium, `browser`).

mod common;

use common::fake::{Canned, FakeHttp};
use common::seed::{self, Webhook};
use common::*;
use serde_json::{json, Value};
use tokio::io::AsyncBufReadExt;

const RETRY: &str = "/api/v1/jobs/webhook-retry";

async fn post(app: &TestApp, path: &str) -> AppReply {
    call(app, "POST", path, &[("x-cron-secret", SECRET)]).await
}

async fn retry_state(app: &TestApp) -> Value {
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
    let app = app("jobs-http", &vars).await;

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
    assert_eq!(common::app("cron-webhook-retry", &vars).await.cron(0).await.unwrap(), Ok(()));
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
    let app = app("jobs-http", &vars).await;
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

/// Untrusted text as Meta or a processor might send it: the page must show it, inert.
const HOSTILE: &str = "(#190) <img src=x onerror=\"document.title='pwned'\"> token invalid";
const HOSTILE_RUN_ERROR: &str = "processor said <script>document.title='pwned'</script>";

/// What [`seed_estate`] put in the database, as the console must count it.
mod seeded {
    /// Active connections by health (an inactive `error` one is left out).
    pub const BY_HEALTH: [(&str, u64); 4] = [("error", 2), ("healthy", 3), ("unknown", 1), ("warning", 1)];
    /// Tokens of active connections expiring within 7 days, soonest first (phone ids).
    pub const EXPIRING: [&str; 2] = ["1001", "1002"];
    pub const PENDING: u64 = 3;
    pub const DUE: u64 = 2;
    pub const DEAD: u64 = 3;
    /// The oldest due webhook was created 20 minutes ago and became due after 5 (base 300 s).
    pub const OLDEST_DUE_SECS: u64 = 15 * 60;
    /// The organizations with a backlog, largest first: (organization, due, dead, paused). The
    /// webhook pending but not due yet is a third's, which has none.
    pub const ORGANIZATIONS: [(&str, u64, u64, bool); 2] = [(ORG_A, 2, 1, false), (ORG_B, 0, 2, true)];
    pub const ORG_A: &str = "0a1e0000-0000-4000-8000-00000000000a";
    pub const ORG_B: &str = "0b1e0000-0000-4000-8000-00000000000b";
    /// The unhealthy connections, the latest checked first, with their latest check's reason.
    pub const UNHEALTHY: [(&str, &str, &str); 3] = [
        ("1004", "warning", "rate limited (#80007)"),
        ("1005", "error", super::HOSTILE),
        ("1006", "error", "banned"),
    ];
}

/// A small estate: connections in every health, reasons (one hostile), expiring tokens, a queue
/// with pending, due and dead webhooks, and runs of both jobs; the retry never succeeded, so it is
/// overdue and the overview answers 503.
async fn seed_estate(env: &Env) {
    let connections = [
        ("1001", "healthy", 1),
        ("1002", "healthy", 1),
        ("1003", "healthy", 1),
        ("1004", "warning", 2),
        ("1005", "error", 3),
        ("1006", "error", 4),
        ("1007", "unknown", 5),
    ];
    for (phone, health, hours) in connections {
        let c = seed::Connection {
            phone_number_id: Some(phone),
            health_status: health,
            checked_hours_ago: Some(hours),
            ..Default::default()
        };
        seed::connection(&env.db, c).await;
    }
    let inactive = seed::Connection {
        status: "inactive",
        phone_number_id: Some("1099"),
        health_status: "error",
        ..Default::default()
    };
    seed::connection(&env.db, inactive).await;
    for (phone, _, reason) in seeded::UNHEALTHY {
        env.db
            .execute(
                "INSERT INTO whatsapp_health (\"organizationId\", \"connectionId\", status, \"apiResponse\", \"lastCheck\") \
                 SELECT \"organizationId\", id, \"healthStatus\", r.reason, \"lastHealthCheckAt\" - r.back \
                 FROM whatsapp_connections, (VALUES ('an older reason', interval '1 day'), ($2, interval '0')) r(reason, back) \
                 WHERE \"phoneNumberId\" = $1",
                &[&phone, &reason],
            )
            .await
            .unwrap();
    }
    env.db
        .batch_execute(
            "UPDATE whatsapp_configs w SET \"tokenExpiresAt\" = timezone('UTC', now()) + e.due \
             FROM whatsapp_connections c, (VALUES ('1001', interval '2 days'), ('1002', interval '6 days'), \
                 ('1003', interval '30 days'), ('1004', interval '-1 day'), ('1099', interval '1 day')) e(phone, due) \
             WHERE w.\"connectionId\" = c.id AND c.\"phoneNumberId\" = e.phone",
        )
        .await
        .unwrap();
    for (created_minutes_ago, dead, processed) in [
        (20, false, false),
        (10, false, false),
        (1, false, false),
        (60, true, false),
        (61, true, false),
        (62, true, false),
        (30, false, true),
    ] {
        let retry_count = if dead { 3 } else { 0 };
        let id = seed::webhook(
            &env.db,
            Webhook { created_minutes_ago, dead, processed, retry_count, ..Default::default() },
        )
        .await;
        let organization = match created_minutes_ago {
            20 | 10 | 60 => seeded::ORG_A,
            61 | 62 => seeded::ORG_B,
            _ => continue,
        };
        env.db
            .execute(
                "UPDATE whatsapp_webhook_logs SET \"organizationId\" = $1::text::uuid WHERE id = $2",
                &[&organization, &id],
            )
            .await
            .unwrap();
    }
    env.db
        .execute(
            "INSERT INTO webhook_tenant_pauses (\"organizationId\", \"pausedAt\") VALUES ($1, timezone('UTC', now()))",
            &[&seeded::ORG_B],
        )
        .await
        .unwrap();
    env.db
        .execute(
            "INSERT INTO job_runs (id, \"jobType\", trigger, status, \"startedAt\", \"finishedAt\", summary, error) \
             SELECT r.job || '-' || r.n, r.job, 'cron', r.status, timezone('UTC', now()) - r.ago, \
                    timezone('UTC', now()) - r.ago + r.took, r.summary::jsonb, r.error \
             FROM (VALUES \
                 (1, 'whatsapp-health-check', 'succeeded', interval '1 hour', interval '42 seconds', '{\"checked\":7}', NULL), \
                 (2, 'whatsapp-health-check', 'failed', interval '3 hours', interval '2 seconds', NULL, 'Postgres error'), \
                 (3, 'whatsapp-health-check', 'succeeded', interval '30 hours', interval '40 seconds', '{\"checked\":7}', NULL), \
                 (4, 'webhook-retry', 'failed', interval '5 minutes', interval '3 seconds', NULL, $1)) \
                 r(n, job, status, ago, took, summary, error)",
            &[&HOSTILE_RUN_ERROR],
        )
        .await
        .unwrap();
}

async fn estate_app(env: &Env) -> TestApp {
    app("jobs-http", &env.variables("http://127.0.0.1:9")).await
}

/// The dashboard's figures beyond the overview (`GET /api/v1/jobs/console`).
#[tokio::test(flavor = "multi_thread")]
async fn the_console_route_counts_the_estate() {
    let env = Env::new().await;
    seed_estate(&env).await;
    let app = estate_app(&env).await;
    assert_eq!(call(&app, "GET", "/api/v1/jobs/console", &[]).await.status, 401);
    let r = call(&app, "GET", "/api/v1/jobs/console", &[("x-cron-secret", SECRET)]).await;
    assert_eq!(r.status, 200, "{}", r.json);

    let q = &r.json["webhooks"];
    assert_eq!(
        (q["pending"].as_u64(), q["due"].as_u64(), q["dead"].as_u64()),
        (Some(seeded::PENDING), Some(seeded::DUE), Some(seeded::DEAD))
    );
    let oldest = q["oldestDueAgeSeconds"].as_u64().unwrap();
    assert!((seeded::OLDEST_DUE_SECS..seeded::OLDEST_DUE_SECS + 60).contains(&oldest), "{oldest}");
    let organizations: Vec<_> = seeded::ORGANIZATIONS
        .iter()
        .map(|(org, due, dead, paused)| json!({"organizationId": org, "due": due, "dead": dead, "paused": paused}))
        .collect();
    assert_eq!(r.json["organizations"], json!(organizations));
    assert_eq!(q["held"], 0, "B's webhooks are dead, none due");
    let by_health: Vec<(&str, u64)> = r.json["connections"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["health"].as_str().unwrap(), c["count"].as_u64().unwrap()))
        .collect();
    assert_eq!(by_health, seeded::BY_HEALTH);
    let unhealthy: Vec<(&str, &str, &str)> = r.json["unhealthy"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["phoneNumberId"].as_str().unwrap(),
                c["health"].as_str().unwrap(),
                c["reason"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(unhealthy, seeded::UNHEALTHY, "the latest reason of each, the latest checked first");
    let tokens = &r.json["expiringTokens"];
    assert_eq!((tokens["count"].as_u64(), tokens["withinDays"].as_u64()), (Some(2), Some(7)));
    let soonest: Vec<&str> =
        tokens["soonest"].as_array().unwrap().iter().map(|t| t["phoneNumberId"].as_str().unwrap()).collect();
    assert_eq!(soonest, seeded::EXPIRING);
}

/// Prometheus' scrape, read back with a parser of the text format, figure by figure against
/// what was seeded and what the database says.
#[tokio::test(flavor = "multi_thread")]
async fn the_metrics_are_the_estate_in_prometheus_text() {
    let env = Env::new().await;
    seed_estate(&env).await;
    let app = estate_app(&env).await;
    assert_eq!(call(&app, "GET", "/api/v1/metrics", &[]).await.status, 401);
    let bearer = format!("Bearer {SECRET}");
    let r = call(&app, "GET", "/api/v1/metrics", &[("authorization", &bearer)]).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(r.headers["content-type"].to_str().unwrap().starts_with("text/plain; version=0.0.4"));
    let scrape = openmetrics_parser::prometheus::parse_prometheus(&r.text).expect("valid Prometheus text");
    let value = |name: &str, labels: &[(&str, &str)]| -> Option<f64> {
        let family = scrape.families.get(name).unwrap_or_else(|| panic!("no {name} in\n{}", r.text));
        assert!(!family.help.is_empty(), "{name} has its HELP");
        let found: Vec<f64> = family
            .iter_samples()
            .filter(|s| {
                let set = s.get_labelset().unwrap();
                labels.iter().all(|(k, v)| set.get_label_value(k) == Some(*v))
            })
            .map(|s| match &s.value {
                openmetrics_parser::PrometheusValue::Gauge(v) => v.as_f64(),
                other => panic!("{name} is not a gauge: {other:?}"),
            })
            .collect();
        assert!(found.len() <= 1, "{name} {labels:?} twice");
        found.first().copied()
    };

    let health = [("job", "whatsapp-health-check")];
    let retry = [("job", "webhook-retry")];
    assert_eq!(value("whatrack_job_running", &health), Some(0.0));
    assert_eq!(value("whatrack_job_overdue", &health), Some(0.0));
    assert_eq!(value("whatrack_job_overdue", &retry), Some(1.0), "the retry never succeeded");
    assert_eq!(value("whatrack_job_paused", &retry), Some(0.0));
    let runs = |job: &str, status: &str| value("whatrack_job_runs_24h", &[("job", job), ("status", status)]);
    assert_eq!(runs("whatsapp-health-check", "succeeded"), Some(1.0), "the run 30 hours ago is out");
    assert_eq!(runs("whatsapp-health-check", "failed"), Some(1.0));
    assert_eq!(runs("webhook-retry", "failed"), Some(1.0));
    let last_success: f64 = env
        .db
        .query_one(
            "SELECT EXTRACT(EPOCH FROM max(\"finishedAt\"))::float8 FROM job_runs \
             WHERE \"jobType\" = 'whatsapp-health-check' AND status = 'succeeded'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(value("whatrack_job_last_success_timestamp_seconds", &health), Some(last_success.trunc()));
    assert_eq!(value("whatrack_job_last_success_timestamp_seconds", &retry), None, "never succeeded");
    assert_eq!(value("whatrack_job_last_duration_milliseconds", &health), Some(42_000.0));
    assert_eq!(value("whatrack_job_last_duration_milliseconds", &retry), Some(3_000.0));

    let webhooks = |state: &str| value("whatrack_webhooks", &[("state", state)]);
    assert_eq!(
        (webhooks("pending"), webhooks("due"), webhooks("dead")),
        (Some(seeded::PENDING as f64), Some(seeded::DUE as f64), Some(seeded::DEAD as f64))
    );
    for (org, due, dead, _) in seeded::ORGANIZATIONS {
        let of =
            |state| value("whatrack_webhooks_by_organization", &[("organization", org), ("state", state)]);
        assert_eq!((of("due"), of("dead")), (Some(due as f64), Some(dead as f64)), "{org}");
    }
    let oldest = value("whatrack_webhooks_oldest_due_age_seconds", &[]).unwrap();
    assert!(
        (seeded::OLDEST_DUE_SECS as f64..seeded::OLDEST_DUE_SECS as f64 + 60.0).contains(&oldest),
        "{oldest}"
    );
    for (health, n) in seeded::BY_HEALTH {
        assert_eq!(value("whatrack_connections", &[("health", health)]), Some(n as f64), "{health}");
    }
    assert_eq!(value("whatrack_tokens_expiring", &[]), Some(seeded::EXPIRING.len() as f64));

    // A label value is escaped as the format asks, whatever WhaTrack wrote in the column.
    env.db
        .batch_execute("UPDATE whatsapp_connections SET \"healthStatus\" = 'odd \"quoted\" \\ one' WHERE \"phoneNumberId\" = '1007'")
        .await
        .unwrap();
    let r = call(&app, "GET", "/api/v1/metrics", &[("authorization", &bearer)]).await;
    assert!(
        r.text.contains("whatrack_connections{health=\"odd \\\"quoted\\\" \\\\ one\"} 1\n"),
        "{}",
        r.text
    );
    openmetrics_parser::prometheus::parse_prometheus(&r.text).expect("still valid Prometheus text");
}

/// The page and its files are served without the secret (they hold no data), under a policy
/// that allows no inline or remote script.
#[tokio::test(flavor = "multi_thread")]
async fn the_page_is_served_without_the_secret_under_a_strict_policy() {
    let env = Env::new().await;
    let app = estate_app(&env).await;
    for (path, content_type) in [
        ("/api/v1/jobs/ui", "text/html"),
        ("/api/v1/jobs/ui/app.js", "text/javascript"),
        ("/api/v1/jobs/ui/app.css", "text/css"),
    ] {
        let r = call(&app, "GET", path, &[]).await;
        assert_eq!(r.status, 200, "{path}");
        assert!(r.headers["content-type"].to_str().unwrap().starts_with(content_type), "{path}");
        let csp = r.headers["content-security-policy"].to_str().unwrap();
        for directive in ["default-src 'none'", "script-src 'self'", "style-src 'self'", "connect-src 'self'"]
        {
            assert!(csp.contains(directive), "{path}: {csp}");
        }
        assert!(!csp.contains("unsafe-inline") && !csp.contains("http"), "{csp}");
        assert_eq!(r.headers["x-content-type-options"], "nosniff");
    }
    let page = call(&app, "GET", "/api/v1/jobs/ui", &[]).await.text;
    assert!(!page.contains("<script>") && !page.contains("style="), "nothing inline for the policy to block");
    assert!(!page.contains("http://") && !page.contains("https://"), "nothing remote");
    assert_eq!(call(&app, "GET", "/api/v1/jobs/ui/other.js", &[]).await.status, 404);
    // Outside spin.toml's routes the host answers, as Spin does; the component never sees it.
    let unrouted = call(&app, "GET", "/api/v1/metricsx", &[]).await;
    assert_eq!((unrouted.status, unrouted.text.as_str()), (404, ""));
    assert_eq!(call(&app, "POST", "/api/v1/jobs/ui", &[]).await.status, 405);
    let script = call(&app, "GET", "/api/v1/jobs/ui/app.js", &[]).await.text;
    assert!(!script.contains("innerHTML") && !script.contains("insertAdjacentHTML"), "text only");
}

/// The page as an operator sees it, in Debian's headless Chromium driven by playwright-core
/// (`tests/browser/console.mjs`): a wrong secret, then the right one; each section's figures
/// against the database; the hostile texts shown as text, with no element made and no script
/// run; no policy violation logged; readable at a phone's width; the redrive through its
/// confirm. The screenshot goes to `target/console.png`.
#[tokio::test(flavor = "multi_thread")]
async fn the_page_shows_the_estate_in_a_real_browser() {
    let env = Env::new().await;
    seed_estate(&env).await;
    let app = estate_app(&env).await;
    let url = match &app {
        TestApp::Spin(spin) => spin.url(),
        TestApp::Host(_) => {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let url = format!("http://{}", listener.local_addr().unwrap());
            let served = host_app("jobs-http", &env.variables("http://127.0.0.1:9"));
            tokio::spawn(spin_test_host::serve(std::sync::Arc::new(served), listener));
            url
        }
    };
    let paused = post(&app, "/api/v1/jobs/whatsapp-health-check/pause").await;
    assert_eq!(paused.status, 200, "{}", paused.json);
    // Meta's figures as the last run kept them, and a cool-down on.
    let usage = json!({"app": {"callCount": 91.0, "totalCputime": 12.0, "totalTime": 40.0, "at": "2026-11-30T01:00:00.000Z"}, "businesses": {}});
    env.redis_set("graph-usage", &usage.to_string()).await;
    let until = chrono::Utc::now().timestamp_millis() + 600_000;
    env.redis_set("graph-cooldown:app", &until.to_string()).await;
    let screenshot = root().join("target/console.png");
    let out = tokio::process::Command::new("node")
        .arg(root().join("tests/browser/console.mjs"))
        .args([url.as_str(), SECRET, screenshot.to_str().unwrap()])
        .output()
        .await
        .expect("node (scripts/test.sh installs Node.js, Chromium and playwright-core)");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let seen: Value = serde_json::from_slice(&out.stdout).unwrap();
    let strings = |v: &Value| -> Vec<String> {
        v.as_array().unwrap().iter().map(|s| s.as_str().unwrap_or_default().to_owned()).collect()
    };

    assert!(seen["wrongSecret"]["error"].as_str().unwrap().contains("Wrong secret (401"), "{seen}");
    assert_eq!(
        (seen["wrongSecret"]["loginShown"].as_bool(), seen["wrongSecret"]["consoleShown"].as_bool()),
        (Some(true), Some(false))
    );
    assert_eq!(
        (seen["secretStored"].as_bool(), seen["loginShownAfter"].as_bool()),
        (Some(true), Some(false))
    );
    assert!(
        seen["banner"].as_str().unwrap().contains("Overdue (the overview answers 503): webhook-retry"),
        "{seen}"
    );
    assert_eq!(seen["consoleErrors"], json!([]), "no script error, no policy violation");
    let mut failed = strings(&seen["failedLoads"]);
    failed.sort();
    failed.dedup();
    assert_eq!(
        failed,
        ["/api/v1/jobs 401", "/api/v1/jobs 503", "/favicon.ico 404"],
        "the wrong secret, the overdue job"
    );
    assert_eq!(
        (seen["images"].as_u64(), seen["titleAfter"].as_str()),
        (Some(0), Some("WhaTrack jobs")),
        "inert"
    );
    assert_eq!(seen["scripts"], json!(["/api/v1/jobs/ui/app.js"]));
    assert_eq!(
        (seen["overflowsWidth"].as_bool(), seen["phoneOverflows"].as_bool()),
        (Some(false), Some(false))
    );

    let meta = seen["metaUsage"].as_str().unwrap();
    assert!(meta.contains("calls 91%, CPU 12%, time 40% (2026-11-30 01:00:00 UTC)"), "{meta}");
    assert!(meta.contains("Meta throttled the app: no Graph call until"), "{meta}");

    // Jobs: state, last success and the time by which the next run is expected.
    let row = env
        .db
        .query_one(
            "SELECT to_char(max(\"finishedAt\"), 'YYYY-MM-DD HH24:MI:SS') || ' UTC', \
                    to_char(max(\"finishedAt\") + interval '1560 minutes', 'YYYY-MM-DD HH24:MI:SS') || ' UTC', \
                    (SELECT to_char(\"pausedAt\", 'YYYY-MM-DD HH24:MI:SS') || ' UTC' FROM job_pauses) \
             FROM job_runs WHERE \"jobType\" = 'whatsapp-health-check' AND status = 'succeeded'",
            &[],
        )
        .await
        .unwrap();
    let (last_success, expected_by, paused_since): (String, String, String) =
        (row.get(0), row.get(1), row.get(2));
    let jobs = seen["jobs"].as_array().unwrap();
    assert_eq!(jobs.len(), 2);
    let (health, retry) = (&jobs[0], &jobs[1]);
    assert_eq!(
        (health["job"].as_str(), strings(&health["badges"])),
        (
            Some("whatsapp-health-check"),
            vec!["idle".to_owned(), "paused".to_owned(), "held by Meta".to_owned()]
        ),
        "the app's cool-down seeded above holds the health check"
    );
    assert_eq!(health["fields"]["paused-since"], paused_since.as_str());
    let held = health["fields"]["held"].as_str().unwrap_or_default();
    assert!(held.starts_with("Meta throttled the app: no Graph call until 20"), "{seen}");
    assert_eq!(retry["fields"]["paused-since"], "not paused");
    assert_eq!(health["fields"]["last-success"], last_success.as_str());
    assert_eq!(health["fields"]["expected-by"], expected_by.as_str());
    assert_eq!(strings(&retry["badges"]), ["idle", "overdue"]);
    assert_eq!(retry["fields"]["last-success"], "never");
    assert!(retry["fields"]["last-run"].as_str().unwrap().ends_with("(failed)"), "{retry}");

    // Runs: one row and one bar per run, newest first, as job_runs holds them.
    for (part, job) in seen["runs"].as_array().unwrap().iter().zip(["whatsapp-health-check", "webhook-retry"])
    {
        let statuses: Vec<String> = env
            .db
            .query("SELECT status FROM job_runs WHERE \"jobType\" = $1 ORDER BY \"startedAt\" DESC", &[&job])
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        let rows = part["rows"].as_array().unwrap();
        assert_eq!((part["job"].as_str(), part["bars"].as_u64()), (Some(job), Some(statuses.len() as u64)));
        assert_eq!(rows.iter().map(|r| r[2].as_str().unwrap().to_owned()).collect::<Vec<_>>(), statuses);
    }
    let health_rows = &seen["runs"][0]["rows"];
    assert_eq!(
        (health_rows[0][3].as_str(), health_rows[0][4].as_str()),
        (Some("42.0 s"), Some("checked: 7"))
    );
    assert_eq!(seen["runs"][0]["barHeights"][2], "100%", "the longest run, drawn last (oldest first)");
    assert_eq!(seen["runs"][1]["rows"][0][4], HOSTILE_RUN_ERROR, "the processor's words, as text");

    // The queue.
    let q = &seen["webhooks"];
    assert_eq!(
        (q["pending"].as_str(), q["due"].as_str(), q["dead"].as_str()),
        (
            Some(seeded::PENDING.to_string().as_str()),
            Some(seeded::DUE.to_string().as_str()),
            Some(seeded::DEAD.to_string().as_str())
        )
    );
    assert!(["15 min", "16 min"].contains(&q["oldest"].as_str().unwrap()), "{q}");
    let shown: Vec<Vec<String>> = seeded::ORGANIZATIONS
        .iter()
        .map(|(org, due, dead, paused)| {
            vec![
                org.to_string(),
                due.to_string(),
                dead.to_string(),
                (if *paused { "paused" } else { "going" }).into(),
            ]
        })
        .collect();
    assert_eq!(seen["organizations"], json!(shown), "the organizations with the largest backlog");

    // Connections by health, as the database counts them, and the latest reasons.
    let by_health: Value = env
        .db
        .query("SELECT \"healthStatus\", count(*)::text FROM whatsapp_connections WHERE status = 'active' GROUP BY 1", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get::<_, String>(0), Value::String(r.get(1))))
        .collect::<serde_json::Map<_, _>>()
        .into();
    assert_eq!(seen["health"], by_health);
    let unhealthy: Vec<(String, String, String)> = seen["unhealthy"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (r[0].as_str().unwrap().into(), r[1].as_str().unwrap().into(), r[3].as_str().unwrap().into())
        })
        .collect();
    let expected: Vec<(String, String, String)> =
        seeded::UNHEALTHY.iter().map(|(p, h, r)| (p.to_string(), h.to_string(), r.to_string())).collect();
    assert_eq!(unhealthy, expected, "the hostile reason shown as the text it is");

    // Expiring tokens.
    assert_eq!((seen["expiringCount"].as_str(), seen["warningDays"].as_str()), (Some("2"), Some("7")));
    let phones: Vec<&str> =
        seen["expiring"].as_array().unwrap().iter().map(|r| r[0].as_str().unwrap()).collect();
    assert_eq!(phones, seeded::EXPIRING);

    // "Redrive all dead", behind its confirm.
    assert_eq!(strings(&seen["dialogs"]), ["Put all 3 dead-lettered webhooks back in the queue?"]);
    assert_eq!((seen["redriven"].as_str(), seen["deadAfter"].as_str()), (Some("Redriven: 3"), Some("0")));
    assert_eq!(env.count("SELECT count(*) FROM whatsapp_webhook_logs WHERE \"deadAt\" IS NOT NULL").await, 0);
}

/// `scripts/dev.sh --demo`'s parts, with the test host in place of Spin: its seed (Node.js, tokens
/// encrypted as WhaTrack does) and its stand-ins, with the demo's variables. One run of each job
/// shows every kind of connection and webhook at work (the demo's scheduler then retries every
/// 5 s until the flaky webhook is accepted and the poison one dead-lettered).
#[tokio::test(flavor = "multi_thread")]
async fn the_demo_seed_and_stand_ins_put_both_jobs_to_work() {
    let env = Env::new().await;
    let seed = std::process::Command::new("node")
        .arg(root().join("scripts/demo/seed.mjs"))
        .arg(KEY)
        .output()
        .unwrap();
    assert!(seed.status.success(), "{}", String::from_utf8_lossy(&seed.stderr));
    env.db.batch_execute(std::str::from_utf8(&seed.stdout).unwrap()).await.unwrap();
    // Ready when both say they listen; a port already taken (a demo running?) ends the process.
    let mut stand_ins = tokio::process::Command::new("node")
        .arg(root().join("scripts/demo/standins.mjs"))
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut said = tokio::io::BufReader::new(stand_ins.stderr.take().unwrap()).lines();
    let mut listening = 0;
    while listening < 2 {
        let line = tokio::time::timeout(std::time::Duration::from_secs(30), said.next_line()).await;
        match line.expect("the demo stand-ins did not start").unwrap() {
            Some(line) if line.contains("listening on") => listening += 1,
            Some(_) => {}
            None => panic!("the demo stand-ins ended: are ports 3901/3902 taken (scripts/dev.sh --demo)?"),
        }
    }
    let mut vars = env.variables("http://127.0.0.1:9");
    for line in std::fs::read_to_string(root().join("scripts/demo/variables")).unwrap().lines() {
        let (name, value) = line.split_once('=').unwrap();
        vars.insert(name.into(), value.into());
    }
    let app = app("jobs-http", &vars).await;

    let health = post_health(&app).await;
    let retry = post(&app, RETRY).await;
    let console = call(&app, "GET", "/api/v1/jobs/console", &[("x-cron-secret", SECRET)]).await;
    let overview = call(&app, "GET", "/api/v1/jobs", &[("x-cron-secret", SECRET)]).await;
    stand_ins.kill().await.unwrap();

    // One WABA an organization: Meta's hold on the rate-limited business holds its two numbers,
    // and nobody else's.
    let s = &health.json["summary"];
    assert_eq!(
        [&s["checked"], &s["healthy"], &s["warning"], &s["error"], &s["unknown"], &s["throttled"]],
        [12, 6, 3, 3, 0, 2],
        "healthy x6; expiring, flagged, limited; banned, expired, undecryptable; rate-limited x2, not checked: {}",
        health.json
    );
    let held = &console.json["held"];
    assert_eq!(held.as_array().map(Vec::len), Some(1), "{}", console.json);
    assert_eq!((&held[0]["business"], &held[0]["connections"]), (&json!("demo-waba-9"), &json!(2)));
    assert_eq!(held[0]["phoneNumbers"].as_array().map(Vec::len), Some(2), "{held}");
    let named = overview.json["jobs"][0]["held"].as_str().unwrap_or_default();
    assert!(named.contains("Meta holds business demo-waba-9 until"), "{}", overview.json);
    assert!(overview.json["jobs"][1].get("held").is_none(), "the retry holds nothing: {}", overview.json);
    let s = &retry.json["summary"];
    assert_eq!(
        [&s["attempted"], &s["delivered"], &s["failed"]],
        [4, 2, 2],
        "flaky and poison refused: {}",
        retry.json
    );
    assert_eq!(console.json["expiringTokens"]["count"], 1, "{}", console.json);
    assert_eq!(console.json["webhooks"]["dead"], 1, "the one seeded dead, for the redrive button");
    assert_eq!(console.json["unhealthy"].as_array().unwrap().len(), 6, "{}", console.json);
}

/// With Postgres or Redis gone, the figures answer 500 naming the store (Prometheus marks the
/// target down; the page shows the error), and the page itself is still served.
#[tokio::test(flavor = "multi_thread")]
async fn the_figures_say_which_store_is_down() {
    let env = Env::new().await;
    let auth = [("x-cron-secret", SECRET)];
    let mut vars = env.variables("http://127.0.0.1:9");
    vars.insert("database_url".into(), "postgres://postgres@127.0.0.1:9/gone".into());
    vars.insert("database_host".into(), "postgres://127.0.0.1:9".into());
    let app = app("jobs-http", &vars).await;
    for path in ["/api/v1/jobs/console", "/api/v1/metrics"] {
        let r = call(&app, "GET", path, &auth).await;
        assert_eq!(r.status, 500, "{path}: {}", r.text);
        assert!(r.json["error"].as_str().unwrap().contains("Postgres"), "{path}: {}", r.json);
    }
    assert_eq!(call(&app, "GET", "/api/v1/jobs/ui", &[]).await.status, 200);

    let mut vars = env.variables("http://127.0.0.1:9");
    vars.insert("redis_url".into(), "redis://127.0.0.1:9".into());
    vars.insert("redis_host".into(), "redis://127.0.0.1:9".into());
    let r = call(&common::app("jobs-http", &vars).await, "GET", "/api/v1/metrics", &auth).await;
    assert_eq!(r.status, 500, "{}", r.text);
    assert!(r.json["error"].as_str().unwrap().contains("Redis"), "{}", r.json);
}
