//! Fair to every tenant (SPEC section 6): one organization's backlog never holds back another's
//! webhooks. The shipped .wasm (test host or `spin up`), a real Postgres and Redis, and a fake
//! processor that answers each organization's webhooks as its integration would.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::fake::{Canned, FakeHttp, Recorded};
use common::seed;
use common::*;
use serde_json::json;
use uuid::Uuid;

const PATH: &str = "/api/v1/jobs/webhook-retry";

/// The tag each seeded webhook carries in its payload, as the processor reads it.
fn tag_of(req: &Recorded) -> String {
    let body: serde_json::Value = serde_json::from_slice(&req.body).unwrap_or_default();
    body["tag"].as_str().unwrap_or_default().to_owned()
}

fn vars(env: &Env, processor: &FakeHttp, concurrency: usize) -> HashMap<String, String> {
    let mut v = env.variables("http://127.0.0.1:9");
    v.insert("webhook_processor_url".into(), format!("{}/api/webhooks/whatsapp", processor.url));
    v.insert("webhook_processor_host".into(), processor.url.clone());
    v.insert("webhook_retry_concurrency".into(), concurrency.to_string());
    v
}

async fn run(app: &TestApp) -> serde_json::Value {
    let r = call(app, "POST", PATH, &[("x-cron-secret", SECRET)]).await;
    assert_eq!(r.status, 200, "{}", r.json);
    r.json
}

/// (delivered, attempted at least once) of the webhooks tagged `tag`.
async fn progress(env: &Env, tag: &str) -> (i64, i64) {
    let r = env
        .db
        .query_one(
            "SELECT count(*) FILTER (WHERE processed), count(*) FILTER (WHERE \"retryCount\" > 0 OR processed) \
             FROM whatsapp_webhook_logs WHERE payload->>'tag' = $1",
            &[&tag],
        )
        .await
        .unwrap();
    (r.get(0), r.get(1))
}

#[tokio::test(flavor = "multi_thread")]
async fn one_tenants_backlog_never_holds_back_anothers() {
    let env = Env::new().await;
    // A's integration is broken: each delivery is answered 500, after a second.
    let processor = FakeHttp::start(|req| match tag_of(req).as_str() {
        "a" => Canned::json(500, json!({"error":"integration down"})).after(Duration::from_secs(1)),
        _ => Canned::json(200, json!({"ok":true})),
    })
    .await;
    let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
    seed::tenant_webhooks(&env.db, &[Some(a)], 300, 60, "a").await;
    // B's five came in after every one of A's.
    seed::tenant_webhooks(&env.db, &[Some(b)], 5, 30, "b").await;
    let mut v = vars(&env, &processor, 4);
    v.insert("job_time_budget_seconds".into(), "6".into());
    let app = app("jobs-http", &v).await;

    let summary = run(&app).await;
    assert_eq!(progress(&env, "b").await, (5, 5), "B's webhooks wait behind A's backlog: {summary}");
    let (_, tried) = progress(&env, "a").await;
    assert!(tried >= 4, "A's webhooks are still tried ({tried}): {summary}");
}

/// The most webhooks of `tag` the processor was answering at once while another tenant still
/// had webhooks waiting (before the last of the others arrived). Each is answered `answer`
/// after it arrives, and a slot's next delivery comes after that: the ones that arrived within
/// `answer` of each other were in flight together.
fn most_at_once_while_others_wait(requests: &[Recorded], tag: &str, answer: Duration) -> usize {
    let others_last = requests.iter().filter(|r| tag_of(r) != tag).map(|r| r.at).max();
    let own: Vec<_> = requests.iter().filter(|r| tag_of(r) == tag).map(|r| r.at).collect();
    let window = answer.mul_f64(0.9);
    own.iter()
        .filter(|&&at| others_last.is_some_and(|last| at < last))
        .map(|&at| own.iter().filter(|&&o| o <= at && at.duration_since(o) < window).count())
        .max()
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread")]
async fn no_tenant_holds_more_than_its_slots_while_another_has_due_webhooks() {
    let env = Env::new().await;
    let answer = Duration::from_millis(400);
    let processor = FakeHttp::start(move |_| Canned::json(200, json!({"ok":true})).after(answer)).await;
    let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
    // A's are older: first come, first served would give A every slot.
    seed::tenant_webhooks(&env.db, &[Some(a)], 40, 60, "a").await;
    seed::tenant_webhooks(&env.db, &[Some(b)], 40, 30, "b").await;
    let mut v = vars(&env, &processor, 12);
    v.insert("webhook_retry_batch_size".into(), "100".into());
    let app = app("jobs-http", &v).await;

    let summary = run(&app).await;
    assert_eq!(summary["summary"]["delivered"], 80, "{summary}");
    let requests = processor.requests();
    for tag in ["a", "b"] {
        let most = most_at_once_while_others_wait(&requests, tag, answer);
        assert!(
            (1..=4).contains(&most),
            "{tag} held {most} slots at once while the other tenant waited (webhook_retry_tenant_concurrency 4)"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tenant_alone_uses_every_slot_and_the_cap_is_a_setting() {
    let env = Env::new().await;
    let answer = Duration::from_millis(300);
    let processor = FakeHttp::start(move |_| Canned::json(200, json!({"ok":true})).after(answer)).await;
    seed::tenant_webhooks(&env.db, &[Some(Uuid::new_v4())], 36, 60, "a").await;
    let alone = app("jobs-http", &vars(&env, &processor, 12)).await;
    assert_eq!(run(&alone).await["summary"]["delivered"], 36);
    assert_eq!(processor.max_in_flight(), 12, "alone, a tenant may use all the run's slots");

    // Two tenants, the cap at 2.
    let env = Env::new().await;
    let processor = FakeHttp::start(move |_| Canned::json(200, json!({"ok":true})).after(answer)).await;
    seed::tenant_webhooks(&env.db, &[Some(Uuid::new_v4())], 20, 60, "a").await;
    seed::tenant_webhooks(&env.db, &[None], 20, 30, "unowned").await;
    let mut v = vars(&env, &processor, 12);
    v.insert("webhook_retry_tenant_concurrency".into(), "2".into());
    let app = app("jobs-http", &v).await;
    assert_eq!(run(&app).await["summary"]["delivered"], 40);
    let requests = processor.requests();
    for tag in ["a", "unowned"] {
        let most = most_at_once_while_others_wait(&requests, tag, answer);
        assert!((1..=2).contains(&most), "{tag} held {most} slots at once (cap 2)");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_thousand_tenants_each_get_their_turn_in_one_run() {
    let env = Env::new().await;
    let processor = FakeHttp::start(|_| Canned::json(200, json!({"ok":true}))).await;
    let big = Uuid::new_v4();
    seed::tenant_webhooks(&env.db, &[Some(big)], 2_000, 60, "big").await;
    let others: Vec<Option<Uuid>> = (0..300).map(|_| Some(Uuid::new_v4())).chain([None]).collect();
    seed::tenant_webhooks(&env.db, &others, 301, 30, "small").await;
    let mut v = vars(&env, &processor, 16);
    v.insert("webhook_retry_batch_size".into(), "600".into());
    let app = app("jobs-http", &v).await;
    let summary = run(&app).await;
    assert_eq!(summary["summary"]["delivered"], 600, "{summary}");
    assert_eq!(
        progress(&env, "small").await.0,
        301,
        "every small tenant's webhook in the first run: {summary}"
    );
}

/// `POST /api/v1/jobs/webhook-retry/<what>` with `body`, authenticated.
async fn steer(app: &TestApp, what: &str, body: serde_json::Value) -> common::AppReply {
    let path = format!("{PATH}/{what}");
    call_with_body(app, "POST", &path, &[("x-cron-secret", SECRET)], &body.to_string()).await
}

/// (action, organization, detail) of the operator's actions on the queue, oldest first.
async fn actions(env: &Env) -> Vec<(String, String, serde_json::Value)> {
    env.db
        .query(
            "SELECT action, \"organizationId\", COALESCE(detail, 'null'::jsonb) FROM webhook_tenant_actions ORDER BY \"at\", id",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn one_organization_paused_holds_its_webhooks_across_runs_and_the_others_go() {
    let env = Env::new().await;
    let processor = FakeHttp::start(|_| Canned::json(200, json!({"ok":true}))).await;
    let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
    seed::tenant_webhooks(&env.db, &[Some(a)], 5, 60, "a").await;
    seed::tenant_webhooks(&env.db, &[Some(b)], 5, 30, "b").await;
    let app = app("jobs-http", &vars(&env, &processor, 4)).await;

    let paused = steer(&app, "pause", json!({ "organizationId": a.to_string() })).await;
    assert_eq!(paused.status, 200, "{}", paused.json);
    assert_eq!(paused.json["organizationId"], a.to_string());
    assert_eq!(paused.json["paused"], true);
    assert!(paused.json["pausedSince"].is_string(), "{}", paused.json);
    // Old enough to expire: a paused organization's webhooks are held, not dead-lettered.
    env.db
        .execute(
            "UPDATE whatsapp_webhook_logs SET \"createdAt\" = \"createdAt\" - interval '30 days' WHERE \"organizationId\" = $1",
            &[&a],
        )
        .await
        .unwrap();

    let summary = run(&app).await;
    assert_eq!(summary["summary"]["delivered"], 5, "B's go: {summary}");
    assert_eq!(progress(&env, "a").await, (0, 0), "A's are held: {summary}");
    assert_eq!(summary["summary"]["expired"], 0, "{summary}");
    assert_eq!(summary["summary"]["held"], 5, "A's five are held, still due: {summary}");
    assert_eq!(summary["summary"]["remaining"], 0, "{summary}");
    // The job itself is not paused.
    assert_eq!(env.job_runs().await[0].status, "succeeded");

    // Back to their real age: resumed, webhooks past webhook_retry_max_age_hours expire as any do.
    env.db
        .execute(
            "UPDATE whatsapp_webhook_logs SET \"createdAt\" = \"createdAt\" + interval '30 days' WHERE \"organizationId\" = $1",
            &[&a],
        )
        .await
        .unwrap();
    let resumed = steer(&app, "resume", json!({ "organizationId": a.to_string() })).await;
    assert_eq!((resumed.status, &resumed.json["paused"]), (200, &json!(false)), "{}", resumed.json);
    let summary = run(&app).await;
    assert_eq!(progress(&env, "a").await, (5, 5), "{summary}");
    let done: Vec<_> = actions(&env).await.into_iter().map(|(what, org, _)| (what, org)).collect();
    assert_eq!(done, [("pause".to_owned(), a.to_string()), ("resume".to_owned(), a.to_string())]);
}

#[tokio::test(flavor = "multi_thread")]
async fn one_organizations_dead_letters_are_redriven_and_recorded() {
    let env = Env::new().await;
    let processor = FakeHttp::start(|_| Canned::json(200, json!({"ok":true}))).await;
    let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
    seed::tenant_webhooks(&env.db, &[Some(a)], 3, 60, "a").await;
    seed::tenant_webhooks(&env.db, &[Some(b)], 2, 60, "b").await;
    env.db
        .execute("UPDATE whatsapp_webhook_logs SET \"deadAt\" = timezone('UTC', now())", &[])
        .await
        .unwrap();
    let app = app("jobs-http", &vars(&env, &processor, 4)).await;

    let r = redrive(&app, &json!({ "organizationId": a.to_string() }).to_string()).await;
    assert_eq!((r.status, &r.json["redriven"]), (200, &json!(3)), "{}", r.json);
    run(&app).await;
    assert_eq!(progress(&env, "a").await.0, 3);
    assert_eq!(progress(&env, "b").await.0, 0, "B's stay dead-lettered");
    assert_eq!(actions(&env).await, [("redrive".to_owned(), a.to_string(), json!({ "redriven": 3 }))]);
    // Not an organization the log could hold: refused, nothing done.
    let r = redrive(&app, r#"{"organizationId":"not-a-uuid"}"#).await;
    assert_eq!(r.status, 400, "{}", r.json);
    let r = steer(&app, "pause", json!({ "organizationId": 7 })).await;
    assert_eq!(r.status, 400, "{}", r.json);
    assert_eq!(actions(&env).await.len(), 1);
}

/// The overview's entry for `job`.
async fn overview_of(app: &TestApp, job: &str) -> serde_json::Value {
    let r = call(app, "GET", "/api/v1/jobs", &[("x-cron-secret", SECRET)]).await;
    let jobs = r.json["jobs"].as_array().unwrap_or_else(|| panic!("{}", r.json)).clone();
    jobs.into_iter().find(|j| j["jobType"] == job).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_overview_names_the_organization_with_the_oldest_due_webhook() {
    let env = Env::new().await;
    let processor = FakeHttp::start(|_| Canned::json(200, json!({"ok":true}))).await;
    let app = app("jobs-http", &vars(&env, &processor, 4)).await;
    assert_eq!(overview_of(&app, "webhook-retry").await["oldestDue"], json!(null), "none due");
    assert!(overview_of(&app, "whatsapp-health-check").await.get("oldestDue").is_none());

    let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
    // A's came in an hour ago (due after the 5 min grace); B's was retried, and has been due
    // for 70 minutes.
    seed::tenant_webhooks(&env.db, &[Some(a)], 3, 60, "a").await;
    seed::tenant_webhooks(&env.db, &[Some(b)], 1, 30, "b").await;
    let retried_b = "UPDATE whatsapp_webhook_logs SET \"retryCount\" = 1, \
                     \"nextRetryAt\" = timezone('UTC', now()) + $2 * interval '1 minute' WHERE \"organizationId\" = $1";
    env.db.execute(retried_b, &[&b, &-70.0f64]).await.unwrap();
    let oldest = overview_of(&app, "webhook-retry").await["oldestDue"].clone();
    assert_eq!(oldest["organizationId"], b.to_string(), "{oldest}");
    let waited = oldest["waitingSeconds"].as_u64().unwrap();
    assert!((70 * 60..71 * 60).contains(&waited), "{oldest}");

    // B's next retry is not due yet: A's is the oldest due.
    env.db.execute(retried_b, &[&b, &10.0f64]).await.unwrap();
    let oldest = overview_of(&app, "webhook-retry").await["oldestDue"].clone();
    assert_eq!(oldest["organizationId"], a.to_string(), "{oldest}");
    let waited = oldest["waitingSeconds"].as_u64().unwrap();
    assert!((55 * 60..56 * 60).contains(&waited), "{oldest}");
}

/// Organizations that have had a webhook delivered.
async fn tenants_served(env: &Env) -> i64 {
    let r = env
        .db
        .query_one(
            "SELECT count(DISTINCT \"organizationId\") FROM whatsapp_webhook_logs WHERE processed",
            &[],
        )
        .await
        .unwrap();
    r.get(0)
}

#[tokio::test(flavor = "multi_thread")]
async fn the_next_run_continues_the_round_where_the_last_one_ended() {
    let env = Env::new().await;
    let processor = FakeHttp::start(|_| Canned::json(200, json!({"ok":true}))).await;
    // 300 organizations with two due webhooks each; a run takes 100.
    let tenants: Vec<Option<Uuid>> = (0..300).map(|_| Some(Uuid::new_v4())).collect();
    seed::tenant_webhooks(&env.db, &tenants, 600, 60, "t").await;
    let mut v = vars(&env, &processor, 16);
    v.insert("webhook_retry_batch_size".into(), "100".into());
    let app = app("jobs-http", &v).await;
    run(&app).await;
    assert_eq!(tenants_served(&env).await, 100, "one webhook each of the first hundred");
    run(&app).await;
    assert_eq!(
        tenants_served(&env).await,
        200,
        "the second run serves the next hundred, not the first again"
    );
}

/// Every node of an `EXPLAIN (FORMAT JSON)` plan.
fn nodes(plan: &serde_json::Value) -> Vec<&serde_json::Value> {
    let mut all = vec![plan];
    for child in plan["Plans"].as_array().into_iter().flatten() {
        all.extend(nodes(child));
    }
    all
}

#[tokio::test(flavor = "multi_thread")]
async fn a_claim_of_fifty_among_a_million_rows_reads_a_few_hundred() {
    let env = Env::new().await;
    // 1,000 organizations, 990,000 of the rows in one of them, the first a round visits; and
    // webhooks without an organization. Half of each tenant's were retried before.
    seed::tenant_webhooks(&env.db, &[Some(Uuid::from_u128(1))], 990_000, 600, "big").await;
    let others: Vec<Option<Uuid>> = (0..999).map(|_| Some(Uuid::new_v4())).collect();
    seed::tenant_webhooks(&env.db, &others, 9_000, 300, "small").await;
    seed::tenant_webhooks(&env.db, &[None], 1_000, 300, "unowned").await;
    env.db
        .batch_execute(
            "UPDATE whatsapp_webhook_logs SET \"retryCount\" = 1, \
                 \"nextRetryAt\" = \"createdAt\" + interval '6 minutes' WHERE (payload->>'n')::int % 2 = 0",
        )
        .await
        .unwrap();
    env.db.batch_execute("ANALYZE whatsapp_webhook_logs").await.unwrap();
    let claim =
        std::fs::read_to_string(root().join("src/jobs/webhook_retry/queue/sql/claim_due_webhooks.sql"))
            .unwrap();

    // EXPLAIN ANALYZE carries the claim out: in a transaction, rolled back.
    env.db.batch_execute("BEGIN").await.unwrap();
    let explained = env
        .db
        .query_one(
            &format!("EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) {claim}"),
            &[&3i32, &300f64, &50i64, &600f64, &None::<String>],
        )
        .await;
    env.db.batch_execute("ROLLBACK").await.unwrap();
    let explained: serde_json::Value = explained.expect("the claim, explained").get(0);
    let plan = &explained[0]["Plan"];
    let on_the_log = |n: &&serde_json::Value| n["Relation Name"] == "whatsapp_webhook_logs";
    let scans: Vec<_> = nodes(plan).into_iter().filter(on_the_log).collect();
    assert!(
        scans.iter().all(|n| n["Node Type"] != "Seq Scan"),
        "a sequential scan of the webhook log:\n{explained:#}"
    );
    let read: f64 = scans
        .iter()
        .map(|n| n["Actual Rows"].as_f64().unwrap_or(0.0) * n["Actual Loops"].as_f64().unwrap_or(1.0))
        .sum();
    println!(
        "claim of 50 among 1,000,000 rows: {:.2} ms, {read} rows read, {} buffers",
        explained[0]["Execution Time"].as_f64().unwrap_or(0.0),
        plan["Shared Hit Blocks"].as_i64().unwrap_or(0) + plan["Shared Read Blocks"].as_i64().unwrap_or(0)
    );
    assert!(read <= 2_000.0, "{read} rows read for a claim of 50:\n{explained:#}");
    let update =
        nodes(plan).into_iter().find(|n| n["Node Type"] == "ModifyTable").expect("the claim's update");
    assert_eq!(update["Actual Rows"].as_f64(), Some(50.0), "the claim took 50 rows");
}
