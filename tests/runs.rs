//! Everything around a run, whatever the job: authentication, routes, configuration errors, the
//! Redis lock, the `job_runs` audit rows, the cron entry point, and Postgres or Redis failing.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::fake::{FakeHttp, TcpProxy};
use common::graph::{self, Script};
use common::seed::{self, Connection};
use common::*;
use tokio::net::TcpListener;

const PATH: &str = "/api/v1/jobs/whatsapp-health-check";
const LOCK: &str = "job-lock:whatsapp-health-check";

/// A "Redis" that only counts who connects to it: proof that nothing talked to Redis.
async fn redis_tripwire() -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("redis://{}", listener.local_addr().unwrap());
    let hits = Arc::new(AtomicUsize::new(0));
    let h = hits.clone();
    tokio::spawn(async move {
        while let Ok((_s, _)) = listener.accept().await {
            h.fetch_add(1, Ordering::SeqCst);
        }
    });
    (url, hits)
}

#[tokio::test(flavor = "multi_thread")]
async fn unauthorized_callers_touch_nothing() {
    let env = Env::new().await;
    let (redis_url, hits) = redis_tripwire().await;
    let mut vars = env.variables("http://127.0.0.1:9");
    vars.insert("redis_url".into(), redis_url.clone());
    vars.insert("redis_host".into(), host_of(&redis_url));
    let app = app("jobs-http", &vars).await;

    let upper = SECRET.to_uppercase();
    let wrong_bearer = format!("Bearer {}x", SECRET);
    let (prefix, suffix, longer) = (&SECRET[..SECRET.len() - 1], &SECRET[1..], format!("{SECRET}{SECRET}"));
    // Spin's HTTP server reads a request head of up to 408 KiB; the component judges this one.
    let huge = "a".repeat(300 << 10);
    let bearer = format!("Bearer {SECRET}");
    let cases: Vec<(&str, Vec<(&str, &str)>)> = vec![
        ("missing", vec![]),
        ("wrong", vec![("x-cron-secret", "not-the-secret-not-the-secret-00000")]),
        ("empty", vec![("x-cron-secret", "")]),
        ("differently cased", vec![("x-cron-secret", upper.as_str())]),
        ("wrong bearer", vec![("authorization", wrong_bearer.as_str())]),
        ("basic scheme", vec![("authorization", "Basic dGVzdA==")]),
        ("a prefix", vec![("x-cron-secret", prefix)]),
        ("a suffix", vec![("x-cron-secret", suffix)]),
        ("the secret twice over", vec![("x-cron-secret", longer.as_str())]),
        ("a 300 KB header", vec![("x-cron-secret", huge.as_str())]),
        ("sent twice, right first", vec![("x-cron-secret", SECRET), ("x-cron-secret", "wrong")]),
        ("sent twice, right last", vec![("x-cron-secret", "wrong"), ("x-cron-secret", SECRET)]),
        ("bearer twice", vec![("authorization", "Bearer wrong"), ("authorization", bearer.as_str())]),
    ];
    for (name, headers) in &cases {
        for method in ["POST", "GET"] {
            let r = call(&app, method, PATH, headers).await;
            assert_eq!(r.status, 401, "{name} {method}");
            assert_eq!(r.json, serde_json::json!({"success":false,"error":"Unauthorized"}), "{name}");
        }
    }
    // A 1 MB header never reaches the component: Spin's server answers 431 itself.
    let too_big = "a".repeat(1 << 20);
    let r = call(&app, "POST", PATH, &[("x-cron-secret", too_big.as_str())]).await;
    assert_eq!((r.status, r.text.as_str()), (431, ""), "a 1 MB header");
    // The query parameter is for the GET status and run routes only, and once.
    let r = call(&app, "POST", &format!("{PATH}?secret={SECRET}"), &[]).await;
    assert_eq!(r.status, 401);
    let r = call(&app, "GET", &format!("{PATH}/run?secret=wrong&secret={SECRET}"), &[]).await;
    assert_eq!(r.status, 401, "a query secret given twice");
    // Bytes that are not UTF-8: Spin's server refuses the request itself (500, empty body).
    let mut req = http::Request::post(PATH).body(bytes::Bytes::new()).unwrap();
    req.headers_mut().insert("x-cron-secret", http::HeaderValue::from_bytes(b"\xff\xfe secret").unwrap());
    let refused = app.request(req).await.unwrap();
    assert_eq!(
        (refused.status(), refused.body().is_empty()),
        (http::StatusCode::INTERNAL_SERVER_ERROR, true),
        "non-UTF-8 header"
    );
    assert_eq!(hits.load(Ordering::SeqCst), 0, "Redis was contacted");
    assert!(env.job_runs().await.is_empty(), "job_runs written");
}

#[tokio::test(flavor = "multi_thread")]
async fn accepted_ways_to_authenticate() {
    let env = Env::new().await;
    let fake = graph::start(&Script::default()).await;
    let previous = "the-previous-secret-still-valid-for-now";
    let mut vars = env.variables(&fake.url);
    vars.insert("cron_secret_previous".into(), previous.into());
    let app = app("jobs-http", &vars).await;
    let bearer = format!("Bearer {SECRET}");
    for headers in [
        vec![("x-cron-secret", SECRET)],
        vec![("x-cron-secret", previous)],
        vec![("authorization", bearer.as_str())],
    ] {
        let r = call(&app, "POST", PATH, &headers).await;
        assert_eq!(r.status, 200, "{headers:?}: {}", r.json);
    }
    let r = call(&app, "GET", &format!("{PATH}?secret={SECRET}"), &[]).await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.json,
        serde_json::json!({"success":true,"isRunning":false,"jobType":"whatsapp-health-check"})
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn short_cron_secret_refuses_to_run() {
    let env = Env::new().await;
    let mut vars = env.variables("http://127.0.0.1:9");
    vars.insert("cron_secret".into(), "too-short".into());
    let app = app("jobs-http", &vars).await;
    for method in ["POST", "GET"] {
        let r = call(&app, method, PATH, &[("x-cron-secret", "too-short")]).await;
        assert_eq!(r.status, 500);
        let msg = r.json["error"].as_str().unwrap();
        assert!(msg.contains("cron_secret") && msg.contains("32"), "{msg}");
        assert!(!msg.contains("too-short"));
    }
    assert!(env.job_runs().await.is_empty());
    assert!(app.output().contains("configuration error"));
}

#[tokio::test(flavor = "multi_thread")]
async fn missing_or_unparsable_variables_are_named() {
    let env = Env::new().await;
    // Each bad value must be reported under its variable's name.
    for (name, value) in
        [("database_url", ""), ("health_check_concurrency", "many"), ("token_encryption_key", "abc")]
    {
        let expect = name;
        let mut vars = env.variables("http://127.0.0.1:9");
        vars.insert(name.into(), value.into());
        let app = app("jobs-http", &vars).await;
        let r = call(&app, "POST", PATH, &[("x-cron-secret", SECRET)]).await;
        assert_eq!(r.status, 500, "{name}");
        assert!(r.json["error"].as_str().unwrap().contains(expect), "{name}: {}", r.json);
        assert!(app.output().contains(expect), "{name}: logged");
    }
    assert!(env.job_runs().await.is_empty());
    let mut r = env.redis.clone();
    let keys: Vec<String> = redis::cmd("KEYS").arg("*").query_async(&mut r).await.unwrap();
    assert!(keys.is_empty(), "{keys:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_paths_and_wrong_methods() {
    let env = Env::new().await;
    let app = app("jobs-http", &env.variables("http://127.0.0.1:9")).await;
    let auth = [("x-cron-secret", SECRET)];
    assert_eq!(call(&app, "POST", "/api/v1/jobs/nope", &auth).await.status, 404);
    assert_eq!(call(&app, "GET", "/api/v1/jobs/whatsapp-health-check/nope", &auth).await.status, 404);
    assert_eq!(call(&app, "GET", "/api/v1/jobs/whatsapp-health-check/redrive", &auth).await.status, 404);
    let r = call(&app, "DELETE", PATH, &auth).await;
    assert_eq!(r.status, 405);
    assert_eq!(r.headers.get("allow").unwrap(), "GET, POST");
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_posts_one_runs_the_rest_get_429() {
    let env = Env::new().await;
    let script = Script::default();
    script.node("1001", graph::healthy_phone().after(Duration::from_millis(1500)));
    let fake = graph::start(&script).await;
    seed::connection(&env.db, Connection::default()).await;
    let app = Arc::new(app("jobs-http", &env.variables(&fake.url)).await);

    let mut tasks = Vec::new();
    for _ in 0..5 {
        let app = app.clone();
        tasks.push(tokio::spawn(async move { post_health(&app).await }));
    }
    // While the winner waits on the Graph API, the status shows it.
    tokio::time::sleep(Duration::from_millis(700)).await;
    let during = call(&app, "GET", PATH, &[("x-cron-secret", SECRET)]).await;
    assert_eq!(during.json["isRunning"], true);

    let mut statuses = Vec::new();
    for t in tasks {
        let r = t.await.unwrap();
        if r.status == 429 {
            assert_eq!(r.json, serde_json::json!({"success":false,"error":"Job already running, skipping"}));
        }
        statuses.push(r.status);
    }
    statuses.sort();
    assert_eq!(statuses, [200, 429, 429, 429, 429]);
    let after = call(&app, "GET", PATH, &[("x-cron-secret", SECRET)]).await;
    assert_eq!(after.json["isRunning"], false);

    let runs = env.job_runs().await;
    assert_eq!(runs.len(), 5, "every attempt leaves a row");
    let mut by_status: Vec<&str> = runs.iter().map(|r| r.status.as_str()).collect();
    by_status.sort();
    assert_eq!(by_status, ["skipped", "skipped", "skipped", "skipped", "succeeded"]);
    let ids: std::collections::HashSet<_> = runs.iter().map(|r| r.id.clone()).collect();
    assert_eq!(ids.len(), 5, "distinct jobIds");
    let ok = runs.iter().find(|r| r.status == "succeeded").unwrap();
    assert_eq!(ok.trigger, "http");
    assert_eq!(ok.summary.as_ref().unwrap()["healthy"], 1);
    assert!(runs.iter().all(|r| r.finished));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_lock_held_by_another_run_is_left_alone() {
    let env = Env::new().await;
    env.redis_set(LOCK, "whatsapp-health-check-1").await;
    let app = app("jobs-http", &env.variables("http://127.0.0.1:9")).await;
    let r = post_health(&app).await;
    assert_eq!(r.status, 429);
    assert_eq!(env.redis_get(LOCK).await.as_deref(), Some("whatsapp-health-check-1"));
    let status = call(&app, "GET", PATH, &[("x-cron-secret", SECRET)]).await;
    assert_eq!(status.json["isRunning"], true);
    let runs = env.job_runs().await;
    assert_eq!((runs.len(), runs[0].status.as_str()), (1, "skipped"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_lock_taken_over_mid_run_is_not_deleted_at_release() {
    let env = Env::new().await;
    // The Graph API answers slowly; meanwhile our lock "expires" and another run takes it.
    let redis_url = env.redis_url.clone();
    let graph = FakeHttp::start(move |req| {
        let client = redis::Client::open(redis_url.as_str()).unwrap();
        let mut c = client.get_connection().unwrap();
        let _: () = redis::cmd("SET").arg(LOCK).arg("whatsapp-health-check-other").query(&mut c).unwrap();
        graph::each_call(req, graph::healthy_phone())
    })
    .await;
    seed::connection(&env.db, Connection::default()).await;
    let app = app("jobs-http", &env.variables(&graph.url)).await;
    assert_eq!(post_health(&app).await.status, 200);
    assert_eq!(env.redis_get(LOCK).await.as_deref(), Some("whatsapp-health-check-other"));
    assert!(app.output().contains("no longer ours"));
}

#[tokio::test(flavor = "multi_thread")]
async fn postgres_down_mid_run_fails_cleanly_and_releases_the_lock() {
    let env = Env::new().await;
    let pg_addr = {
        let hostport = host_of(&env.database_url).trim_start_matches("postgres://").to_owned();
        tokio::net::lookup_host(hostport).await.unwrap().next().unwrap()
    };
    let proxy = TcpProxy::start(pg_addr).await;
    let via_proxy = env.database_url.replace(&pg_addr.to_string(), &proxy.addr.to_string());
    assert_ne!(via_proxy, env.database_url);
    let cutter = proxy.clone();
    let graph = FakeHttp::start(move |req| {
        cutter.cut();
        graph::each_call(req, graph::healthy_phone())
    })
    .await;
    // Seeded `warning` and answered healthy: a write that got through would show.
    let id = seed::connection(&env.db, Connection { health_status: "warning", ..Default::default() }).await;
    let mut vars = env.variables(&graph.url);
    vars.insert("database_url".into(), via_proxy.clone());
    vars.insert("database_host".into(), host_of(&via_proxy));
    let app = app("jobs-http", &vars).await;
    let r = post_health(&app).await;
    assert_eq!(r.status, 500, "{}", r.json);
    assert!(r.json["error"].as_str().unwrap().contains("Postgres"), "{}", r.json);
    assert_eq!(env.redis_get(LOCK).await, None, "lock released on the error path");
    // Nothing half-written: the connection is as it was.
    let n: i64 = env.db.query_one("SELECT count(*) FROM whatsapp_health", &[]).await.unwrap().get(0);
    assert_eq!(n, 0);
    assert_eq!(env.health_status(id).await, "warning");
    // The run's row cannot be finished through the dead proxy; the log says so.
    assert!(app.output().contains("could not record the failed run"));
}

#[tokio::test(flavor = "multi_thread")]
async fn redis_down_is_500_not_429_and_recorded() {
    let env = Env::new().await;
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let mut vars = env.variables("http://127.0.0.1:9");
    vars.insert("redis_url".into(), format!("redis://{closed}"));
    vars.insert("redis_host".into(), format!("redis://{closed}"));
    let app = app("jobs-http", &vars).await;
    let r = post_health(&app).await;
    assert_eq!(r.status, 500);
    assert!(r.json["error"].as_str().unwrap().starts_with("Redis error"), "{}", r.json);
    let status = call(&app, "GET", PATH, &[("x-cron-secret", SECRET)]).await;
    assert_eq!(status.status, 500);
    let runs = env.job_runs().await;
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].status, "failed");
    assert!(runs[0].error.as_deref().unwrap().contains("Redis"));
}

/// An `allowed_outbound_hosts` variable that does not cover its URL would make Spin refuse that
/// system mid-run: it is refused at load instead, naming the variable and what to set it to.
#[tokio::test(flavor = "multi_thread")]
async fn host_variables_that_do_not_cover_their_urls_are_refused_at_load() {
    let env = Env::new().await;
    let db_port = url::Url::parse(&env.app_database_url()).unwrap().port().unwrap();
    for (name, value, want) in [
        ("database_host", "postgres://127.0.0.1:1".to_string(), format!("postgres://127.0.0.1:{db_port}")),
        ("redis_host", "redis://localhost:1".to_string(), host_of(&env.redis_url)),
    ] {
        let mut vars = env.variables("http://127.0.0.1:9");
        vars.insert(name.into(), value);
        let app = app("jobs-http", &vars).await;
        let r = post_health(&app).await;
        assert_eq!(r.status, 500, "{name}");
        let error = r.json["error"].as_str().unwrap();
        assert!(error.contains(name) && error.contains(&want), "{name}: {error}");
    }
    assert!(env.job_runs().await.is_empty(), "nothing ran");
    assert_eq!(env.redis_get(LOCK).await, None);
}

/// A `rediss://` entry without a port is one Spin cannot read (it has no default port for that
/// scheme, and then refuses every outbound connection): named at load, before anything runs.
#[tokio::test(flavor = "multi_thread")]
async fn a_host_entry_spin_cannot_read_is_named_at_load() {
    let env = Env::new().await;
    let mut vars = env.variables("http://127.0.0.1:9");
    vars.insert("redis_url".into(), "rediss://cache:6379".into());
    vars.insert("redis_host".into(), "rediss://cache".into());
    let r = post_health(&app("jobs-http", &vars).await).await;
    assert_eq!(r.status, 500, "{}", r.json);
    let error = r.json["error"].as_str().unwrap();
    assert!(error.contains("redis_host") && error.contains("port may be left out only"), "{error}");
    assert!(env.job_runs().await.is_empty(), "nothing ran");
}

#[tokio::test(flavor = "multi_thread")]
async fn cron_runs_the_job_named_by_the_component() {
    let env = Env::new().await;
    let fake = graph::start(&Script::default()).await;
    seed::connection(&env.db, Connection::default()).await;
    let cron = app("cron-health-check", &env.variables(&fake.url)).await;
    assert_eq!(cron.cron(1_800_000_000).await.unwrap(), Ok(()));
    let runs = env.job_runs().await;
    assert_eq!(runs.len(), 1);
    assert_eq!(
        (runs[0].trigger.as_str(), runs[0].status.as_str(), runs[0].job_type.as_str()),
        ("cron", "succeeded", "whatsapp-health-check")
    );
    assert_eq!(runs[0].summary.as_ref().unwrap()["healthy"], 1);
    assert_eq!(env.redis_get(LOCK).await, None);

    // Lock held: Ok, recorded as skipped.
    env.redis_set(LOCK, "whatsapp-health-check-42").await;
    assert_eq!(cron.cron(1_800_000_300).await.unwrap(), Ok(()));
    let runs = env.job_runs().await;
    assert_eq!((runs[1].trigger.as_str(), runs[1].status.as_str()), ("cron", "skipped"));
    assert_eq!(env.redis_get(LOCK).await.as_deref(), Some("whatsapp-health-check-42"));
}

#[tokio::test(flavor = "multi_thread")]
async fn cron_failure_is_an_error_for_the_trigger_to_log() {
    let env = Env::new().await;
    let mut vars = env.variables("http://127.0.0.1:9");
    vars.insert("redis_url".into(), "redis://127.0.0.1:1".into());
    vars.insert("redis_host".into(), "redis://127.0.0.1:1".into());
    let cron = app("cron-health-check", &vars).await;
    let err = cron.cron(1).await.unwrap().unwrap_err();
    assert!(err.contains("Redis"), "{err}");
    assert_eq!(env.job_runs().await[0].status, "failed");
}

/// A required variable without a value stops the app before it serves anything: `spin up` exits
/// naming it, and the test host refuses to load the app the same way.
#[tokio::test(flavor = "multi_thread")]
async fn an_app_without_a_required_variable_does_not_start() {
    let env = Env::new().await;
    let mut vars = env.variables("http://127.0.0.1:9");
    vars.remove("cron_secret");
    let refused = match common::spin::cli() {
        None => runtime().app(&manifest(), "jobs-http", &vars).err().map(|e| format!("{e:#}")),
        Some(cli) => {
            let text = std::fs::read_to_string(root().join("spin.toml")).unwrap();
            common::spin::SpinUp::start(&cli, &text, &vars, false).await.err().map(|e| format!("{e:#}"))
        }
    };
    let refused = refused.expect("the app started without cron_secret");
    assert!(refused.contains("cron_secret"), "{refused}");
}

#[tokio::test(flavor = "multi_thread")]
async fn spin_refuses_an_app_without_required_variables() {
    let env = Env::new().await;
    let mut vars = env.variables("http://127.0.0.1:9");
    vars.remove("cron_secret");
    // Whatever this process's environment holds: an environment of our own.
    let m = manifest();
    let refused = m.resolve_with_env("jobs-http", &vars, |_| None);
    assert!(refused.err().unwrap().to_string().contains("cron_secret"));
    let from_env = m.resolve_with_env("jobs-http", &vars, |name| {
        (name == "SPIN_VARIABLE_CRON_SECRET").then(|| SECRET.to_string())
    });
    assert_eq!(from_env.unwrap().variables["cron_secret"], SECRET, "SPIN_VARIABLE_CRON_SECRET provides it");
}

#[tokio::test(flavor = "multi_thread")]
async fn runs_that_died_unrecorded_are_marked_failed_by_the_next_run() {
    let env = Env::new().await;
    let fake = graph::start(&Script::default()).await;
    env.db
        .batch_execute(
            "INSERT INTO job_runs (id, \"jobType\", trigger, status, \"startedAt\") VALUES \
             ('whatsapp-health-check-1', 'whatsapp-health-check', 'cron', 'running', timezone('UTC', now()) - interval '2 hours'), \
             ('webhook-retry-1', 'webhook-retry', 'cron', 'running', timezone('UTC', now()) - interval '2 hours'), \
             ('whatsapp-health-check-2', 'whatsapp-health-check', 'http', 'running', timezone('UTC', now()) - interval '1 minute')",
        )
        .await
        .unwrap();
    let app = app("jobs-http", &env.variables(&fake.url)).await;
    assert_eq!(post_health(&app).await.status, 200);
    let runs = env.job_runs().await;
    let by_id = |id: &str| runs.iter().find(|r| r.id == id).unwrap().clone();
    let dead = by_id("whatsapp-health-check-1");
    assert_eq!(dead.status, "failed");
    assert!(dead.finished && dead.error.unwrap().starts_with("abandoned"));
    assert_eq!(by_id("whatsapp-health-check-2").status, "running", "younger than the lock TTL");
    assert_eq!(by_id("webhook-retry-1").status, "running", "another job's rows are its own business");
}

/// A row WhaTrack's database refuses (a trigger or constraint of its own) is logged and counted;
/// the others land, and the run succeeds, so that one row never fails every run.
#[tokio::test(flavor = "multi_thread")]
async fn a_row_the_database_refuses_does_not_hold_back_the_others() {
    let env = Env::new().await;
    let fake = graph::start(&Script::default()).await;
    let ok = seed::connection(&env.db, Connection { health_status: "unknown", ..Default::default() }).await;
    let refused = seed::connection(
        &env.db,
        Connection { phone_number_id: Some("1002"), health_status: "unknown", ..Default::default() },
    )
    .await;
    env.db
        .batch_execute(
            "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$ \
             BEGIN IF NEW.\"phoneNumberId\" = '1002' THEN RAISE EXCEPTION 'this one is frozen'; END IF; \
             RETURN NEW; END $$; \
             CREATE TRIGGER frozen BEFORE UPDATE ON whatsapp_connections FOR EACH ROW EXECUTE FUNCTION refuse();",
        )
        .await
        .unwrap();
    let app = app("jobs-http", &env.variables(&fake.url)).await;
    let r = post_health(&app).await;
    assert_eq!(r.status, 200, "{}", r.json);
    assert_eq!(
        (r.json["summary"]["checked"].as_u64(), r.json["summary"]["notSaved"].as_u64()),
        (Some(1), Some(1))
    );
    assert_eq!(env.health_status(ok).await, "healthy");
    assert_eq!(env.health_status(refused).await, "unknown", "its write was refused");
    let audit: Vec<uuid::Uuid> = env
        .db
        .query("SELECT \"connectionId\" FROM whatsapp_health", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(audit, [ok], "the refused row's audit row went with it, the other one stayed");
    assert!(app.output().contains("this one is frozen"), "logged");
    assert_eq!(env.redis_get(LOCK).await, None);
    // Once WhaTrack lifts its trigger, the next run writes the one left.
    env.db.batch_execute("DROP TRIGGER frozen ON whatsapp_connections").await.unwrap();
    let again = post_health(&app).await;
    assert_eq!(again.json["summary"]["checked"].as_u64(), Some(1), "{}", again.json);
    assert_eq!(env.health_status(refused).await, "healthy");
}

/// A lock that expires before its run ends lets a second run start beside it: each trigger's
/// budget is checked against the TTL.
#[tokio::test(flavor = "multi_thread")]
async fn a_lock_ttl_shorter_than_a_run_is_refused() {
    let env = Env::new().await;
    let mut vars = env.variables("http://127.0.0.1:9");
    vars.insert("job_time_budget_seconds".into(), "60".into());
    vars.insert("lock_ttl_seconds".into(), "30".into());
    let app = app("jobs-http", &vars).await;
    let r = post_health(&app).await;
    assert_eq!(r.status, 500);
    let error = r.json["error"].as_str().unwrap();
    assert!(error.contains("lock_ttl_seconds") && error.contains("job_time_budget_seconds"), "{error}");
    assert!(env.job_runs().await.is_empty());
    vars.insert("lock_ttl_seconds".into(), "63".into());
    assert_ne!(
        post_health(&common::app("jobs-http", &vars).await).await.status,
        500,
        "a TTL above budget + 2 s is fine"
    );
    // The cron trigger's runs have a budget of their own, held to the same rule.
    let cron = common::app("cron-health-check", &vars).await.cron(0).await.unwrap();
    let error = cron.expect_err("a cron budget of 1800 s outlives a 63 s lock");
    assert!(error.contains("lock_ttl_seconds") && error.contains("cron_time_budget_seconds"), "{error}");
    vars.insert("cron_time_budget_seconds".into(), "60".into());
    let cron = common::app("cron-health-check", &vars).await.cron(0).await.unwrap();
    assert_eq!(cron, Ok(()), "a cron budget under the TTL runs");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_short_previous_secret_is_refused_like_a_short_secret() {
    let env = Env::new().await;
    let mut vars = env.variables("http://127.0.0.1:9");
    vars.insert("cron_secret_previous".into(), "old-and-short".into());
    let app = app("jobs-http", &vars).await;
    for method in ["GET", "POST"] {
        let r = call(&app, method, PATH, &[("x-cron-secret", SECRET)]).await;
        assert_eq!(r.status, 500);
        let error = r.json["error"].as_str().unwrap();
        assert!(error.contains("cron_secret_previous") && !error.contains("old-and-short"), "{error}");
    }
    // Nor does the short one open the door.
    assert_eq!(call(&app, "POST", PATH, &[("x-cron-secret", "old-and-short")]).await.status, 500);
    assert!(env.job_runs().await.is_empty());
}

/// `meta_graph_url` is also an `allowed_outbound_hosts` entry: set to an empty string, Spin
/// refuses every outbound connection. The answer names the variable instead.
#[tokio::test(flavor = "multi_thread")]
async fn an_empty_graph_url_is_named_not_a_refusal_of_everything() {
    let env = Env::new().await;
    for value in ["", "https://graph.facebook.com/v25.0"] {
        let mut vars = env.variables("http://127.0.0.1:9");
        vars.insert("meta_graph_url".into(), value.into());
        let app = app("jobs-http", &vars).await;
        let r = post_health(&app).await;
        assert_eq!(r.status, 500, "{value:?}");
        let error = r.json["error"].as_str().unwrap();
        assert!(
            error.contains("meta_graph_url") && error.contains("scheme://host[:port]"),
            "{value:?}: {error}"
        );
    }
    assert!(env.job_runs().await.is_empty());
}

/// Schedulers that can only GET (Akamai Functions' crons, Vercel Cron): `GET .../run` runs the
/// job exactly as the POST does, authenticated by the Bearer header, `x-cron-secret`, or
/// `?secret=`; the status GET still runs nothing.
#[tokio::test(flavor = "multi_thread")]
async fn a_get_of_run_runs_the_job_for_schedulers_that_can_only_get() {
    let env = Env::new().await;
    let fake = graph::start(&Script::default()).await;
    let app = app("jobs-http", &env.variables(&fake.url)).await;
    let run = format!("{PATH}/run");
    let bearer = format!("Bearer {SECRET}");
    let with_query = format!("{run}?secret={SECRET}");
    let mut ids = Vec::new();
    for (how, path, headers) in [
        ("bearer, as Vercel Cron sends it", run.as_str(), vec![("authorization", bearer.as_str())]),
        ("x-cron-secret", run.as_str(), vec![("x-cron-secret", SECRET)]),
        ("?secret=, as spin aka crons sends it", with_query.as_str(), vec![]),
    ] {
        seed::connection(&env.db, Connection::default()).await;
        let r = call(&app, "GET", path, &headers).await;
        assert_eq!(r.status, 200, "{how}: {}", r.json);
        assert_eq!(r.json["message"], "WhatsApp health check completed", "{how}");
        assert_eq!(r.json["summary"]["checked"], 1, "{how}: {}", r.json);
        ids.push(r.json["jobId"].as_str().unwrap().to_owned());
    }
    let runs = env.job_runs().await;
    assert_eq!(runs.iter().map(|r| r.id.clone()).collect::<Vec<_>>(), ids);
    assert!(runs.iter().all(|r| r.status == "succeeded" && r.trigger == "http"));

    // Refused: no secret, a wrong one, the secret in the query of a POST or of another GET.
    for (method, path) in [
        ("GET", run.clone()),
        ("GET", format!("{run}?secret=wrong-wrong-wrong-wrong-wrong-wrong")),
        ("POST", format!("{PATH}?secret={SECRET}")),
        ("GET", format!("/api/v1/jobs?secret={SECRET}")),
        ("GET", format!("{PATH}/runs?secret={SECRET}")),
    ] {
        assert_eq!(call(&app, method, &path, &[]).await.status, 401, "{method} {path}");
    }
    assert_eq!(env.job_runs().await.len(), 3, "nothing ran");
    // The status GET runs nothing; POST is for the job route itself.
    let status = call(&app, "GET", &format!("{PATH}?secret={SECRET}"), &[]).await;
    assert_eq!(status.json["isRunning"], false);
    let post = call(&app, "POST", &run, &[("x-cron-secret", SECRET)]).await;
    assert_eq!((post.status, post.headers.get("allow").unwrap().to_str().unwrap()), (405, "GET"));
    assert_eq!(env.job_runs().await.len(), 3);
}

/// Every line of a run carries its jobId, so that logs join to the run and to its trace.
#[tokio::test(flavor = "multi_thread")]
async fn every_log_line_of_a_run_carries_its_job_id() {
    let env = Env::new().await;
    let fake = graph::start(&Script::default()).await;
    seed::connection(&env.db, Connection::default()).await;
    let app = app("jobs-http", &env.variables(&fake.url)).await;
    let id = post_health(&app).await.json["jobId"].as_str().unwrap().to_owned();
    // And a failing run: its failure line too.
    env.db.batch_execute("ALTER TABLE whatsapp_health RENAME TO whatsapp_health_gone").await.unwrap();
    seed::connection(&env.db, Connection { phone_number_id: Some("2002"), ..Default::default() }).await;
    let failed = post_health(&app).await;
    assert_eq!(failed.status, 500);
    let lines: Vec<serde_json::Value> =
        app.output().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert!(lines.len() > 4);
    for line in &lines {
        assert!(line["jobId"].as_str().is_some_and(|j| j.starts_with("whatsapp-health-check-")), "{line}");
    }
    assert!(lines.iter().any(|l| l["jobId"] == id.as_str()));
    assert!(lines.iter().any(|l| l["msg"] == "run failed"), "the failure is among them");
}
