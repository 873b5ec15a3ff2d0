//! The migrations: idempotent, and safe on top of WhaTrack's existing tables.

mod common;

use common::graph::{self, Script};
use common::*;

/// Columns (with type, nullability and default) and indexes of the public schema.
async fn schema(db: &tokio_postgres::Client) -> Vec<String> {
    let mut out: Vec<String> = db
        .query(
            "SELECT table_name || '.' || column_name || ' ' || data_type || ' ' || is_nullable || ' ' || coalesce(column_default, '') \
             FROM information_schema.columns WHERE table_schema = 'public'",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    out.extend(
        db.query("SELECT indexdef FROM pg_indexes WHERE schemaname = 'public'", &[])
            .await
            .unwrap()
            .iter()
            .map(|r| r.get::<_, String>(0)),
    );
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn applying_twice_changes_nothing() {
    let env = Env::new().await;
    let conn = common::seed::connection(&env.db, common::seed::Connection::default()).await;
    let before = schema(&env.db).await;
    assert!(before.iter().any(|c| c.starts_with("job_runs.id text")), "{before:?}");
    assert!(before.iter().any(|c| c.contains("whatsapp_connections_status_last_health_check_idx")));
    migrate(&env.database_url).await;
    assert_eq!(schema(&env.db).await, before);
    let n: i64 = env
        .db
        .query_one("SELECT count(*) FROM whatsapp_connections WHERE id = $1", &[&conn])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 1, "data kept");
}

/// WhaTrack's tables as its app created them: more columns than the jobs use, some of the jobs'
/// columns missing (an older WhaTrack), and live rows.

#[tokio::test(flavor = "multi_thread")]
async fn migrations_apply_on_top_of_whatrack_tables_and_the_job_runs() {
    let env = Env::with_existing_schema(WHATRACK_SCHEMA).await;
    let cols = schema(&env.db).await;
    for kept in [
        "whatsapp_connections.displayPhoneNumber",
        "whatsapp_connections.verifiedName",
        "whatsapp_configs.webhookVerifyToken",
        "whatsapp_health.checkedBy",
        "whatsapp_webhook_logs.sourceIp",
    ] {
        assert!(cols.iter().any(|c| c.starts_with(kept)), "{kept} kept");
    }
    for added in [
        "whatsapp_connections.healthStatus text NO 'unknown'",
        "whatsapp_connections.lastHealthCheckAt timestamp",
        "whatsapp_configs.tokenStatus text",
        "whatsapp_configs.tokenExpiresAt timestamp",
        "job_runs.summary jsonb",
    ] {
        assert!(cols.iter().any(|c| c.starts_with(added)), "{added} added: {cols:#?}");
    }
    let before = schema(&env.db).await;
    migrate(&env.database_url).await;
    assert_eq!(schema(&env.db).await, before, "idempotent on WhaTrack's schema too");

    // The existing row gets a token and is checked; WhaTrack's own columns stay untouched.
    env.db
        .execute(
            "INSERT INTO whatsapp_configs (\"organizationId\", \"connectionId\", \"accessToken\", status, \"webhookVerifyToken\", \"updatedAt\") \
             VALUES ('22222222-2222-2222-2222-222222222222', '11111111-1111-1111-1111-111111111111', $1, 'connected', 'verify-me', now())",
            &[&common::seed::encrypt("EAAB-whatrack")],
        )
        .await
        .unwrap();
    let fake = graph::start(&Script::default()).await;
    let app = app("jobs-http", &env.variables(&fake.url)).await;
    let r = post_health(&app).await;
    assert_eq!(r.status, 200, "{}", r.json);
    assert_eq!(r.json["summary"]["healthy"], 1);
    let row = env
        .db
        .query_one(
            "SELECT c.\"healthStatus\", c.\"displayPhoneNumber\", c.\"verifiedName\", w.\"webhookVerifyToken\", h.\"checkedBy\" IS NULL \
             FROM whatsapp_connections c JOIN whatsapp_configs w ON w.\"connectionId\" = c.id \
             JOIN whatsapp_health h ON h.\"connectionId\" = c.id",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "healthy");
    assert_eq!(row.get::<_, String>(1), "+1 555 0100");
    assert_eq!(row.get::<_, String>(2), "Acme");
    assert_eq!(row.get::<_, String>(3), "verify-me");
    assert!(row.get::<_, bool>(4));
}

/// The migrations run against WhaTrack's production tables while its app writes to them. With a
/// transaction of WhaTrack's holding the webhook log and another connection inserting every
/// 100 ms, a run gives up after its lock timeout (3 s) with a clear error instead of stalling
/// the inserts behind it; once the table is quiet the next run completes, repairing what the
/// failed one left.
#[tokio::test(flavor = "multi_thread")]
async fn on_a_busy_database_a_migration_fails_fast_and_never_stalls_writers() {
    let env = Env::unmigrated(WHATRACK_SCHEMA).await;
    let holder = connect(&env.database_url).await;
    holder.batch_execute("BEGIN; INSERT INTO whatsapp_webhook_logs (payload) VALUES ('{}');").await.unwrap();
    let writer = connect(&env.database_url).await;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let inserts = tokio::spawn({
        let stop = stop.clone();
        async move {
            let mut slowest = std::time::Duration::ZERO;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                let started = std::time::Instant::now();
                writer
                    .execute("INSERT INTO whatsapp_webhook_logs (payload) VALUES ('{}')", &[])
                    .await
                    .unwrap();
                slowest = slowest.max(started.elapsed());
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            slowest
        }
    });
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let started = std::time::Instant::now();
    let out = tokio::time::timeout(std::time::Duration::from_secs(20), migrate_url(&env.database_url))
        .await
        .expect("the migration stalled behind WhaTrack's transaction");
    let took = started.elapsed();
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let slowest = inserts.await.unwrap();
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "the run gives up while WhaTrack's transaction is open");
    assert!(said.contains("lock timeout"), "{said}");
    assert!(took < std::time::Duration::from_secs(10), "gave up after {took:?}");
    assert!(slowest < std::time::Duration::from_millis(3_500), "an insert waited {slowest:?}");

    holder.batch_execute("COMMIT").await.unwrap();
    migrate(&env.database_url).await;
    let invalid: i64 =
        env.db.query_one("SELECT count(*) FROM pg_index WHERE NOT indisvalid", &[]).await.unwrap().get(0);
    assert_eq!(invalid, 0, "no half-built index left");
    let cols = schema(&env.db).await;
    assert!(cols.iter().any(|c| c.starts_with("whatsapp_webhook_logs.nextRetryAt")), "{cols:#?}");
    assert!(cols.iter().any(|c| c.contains("whatsapp_webhook_logs_pending_due_idx")));
}

/// A second run takes no lock on any table: it completes while another session holds every
/// table of the jobs in ACCESS EXCLUSIVE mode.
#[tokio::test(flavor = "multi_thread")]
async fn a_second_run_takes_no_lock_at_all() {
    let env = Env::new().await;
    // Every table there is, so that a table a new migration adds is held too.
    let tables: String = env
        .db
        .query_one(
            "SELECT string_agg(quote_ident(tablename), ', ') FROM pg_tables WHERE schemaname = 'public'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(tables.contains("job_pauses") && tables.contains("webhook_retry_attempts"), "{tables}");
    let holder = connect(&env.database_url).await;
    holder.batch_execute(&format!("BEGIN; LOCK TABLE {tables} IN ACCESS EXCLUSIVE MODE;")).await.unwrap();
    let started = std::time::Instant::now();
    let out = tokio::time::timeout(std::time::Duration::from_secs(20), migrate_url(&env.database_url))
        .await
        .expect("the second run waited for a lock");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(started.elapsed() < std::time::Duration::from_secs(3), "it waited {:?}", started.elapsed());
    holder.batch_execute("ROLLBACK").await.unwrap();
}
