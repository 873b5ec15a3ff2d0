//! Every statement the component sends, as it sends it: each `.sql` file under `src/` is
//! prepared against the migrated schema (so it parses, and names only tables and columns that
//! exist), prepared again as `Db::rows` wraps it when it returns rows, and explained; on
//! WhaTrack's `uuid` keys and on `text` keys alike. The statements that find rows by id use the
//! primary key's index, on either.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use whatrack_jobs::db::{as_json_rows, ORDERED};

/// The files under `dir` whose name ends in `.{extension}`, sorted.
fn files_under(dir: &Path, extension: &str) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(files_under(&path, extension));
        } else if path.extension().is_some_and(|e| e == extension) {
            files.push(path);
        }
    }
    files.sort();
    files
}

/// The webhook queue's states, defined once: fragments, not a statement.
const QUEUE_STATES: &str = "jobs/webhook_retry/queue/sql/states.sql";

/// `(path under src/, text)` of every statement: the `.sql` files under `src/` but
/// [`QUEUE_STATES`].
fn statements() -> Vec<(String, String)> {
    let src = root().join("src");
    let files: Vec<PathBuf> =
        files_under(&src, "sql").into_iter().filter(|f| !f.ends_with(QUEUE_STATES)).collect();
    let statements: Vec<(String, String)> = files
        .iter()
        .map(|f| (f.strip_prefix(&src).unwrap().display().to_string(), std::fs::read_to_string(f).unwrap()))
        .collect();
    assert!(statements.len() >= 30, "{} statements found", statements.len());
    statements
}

/// WhaTrack's tables with `text` keys, as a schema that made its ids strings has them; the
/// migrations add the rest.
fn text_keyed_schema() -> String {
    let whatrack = std::fs::read_to_string(root().join("migrations/001_whatrack_tables.sql")).unwrap();
    let tables: Vec<&str> = whatrack
        .split("CREATE TABLE IF NOT EXISTS")
        .skip(1)
        .map(|t| &t[..t.find(");").unwrap() + 2])
        .collect();
    assert_eq!(tables.len(), 4, "WhaTrack's four tables");
    tables.iter().map(|t| format!("CREATE TABLE{}\n", t.replace("UUID", "TEXT"))).collect()
}

async fn key_type(env: &Env, table: &str) -> String {
    let row = env
        .db
        .query_one(
            "SELECT data_type::text FROM information_schema.columns WHERE table_name = $1 AND column_name = 'id'",
            &[&table],
        )
        .await
        .unwrap();
    row.get(0)
}

/// Prepares and explains every statement, with every parameter NULL.
async fn prepare_and_explain_all(env: &Env) {
    for (i, (path, sql)) in statements().into_iter().enumerate() {
        let prepared = env.db.prepare(&sql).await.unwrap_or_else(|e| panic!("{path}: {e:?}"));
        // A statement that answers its own JSON (`Db::answer`) is sent as it is.
        let answers = prepared.columns().iter().map(|c| c.name()).eq(["answer"]);
        if !prepared.columns().is_empty() && !answers {
            let ordered = prepared.columns().iter().any(|c| c.name() == "ord");
            let read = as_json_rows(&sql, if ordered { ORDERED } else { "" });
            env.db.prepare(&read).await.unwrap_or_else(|e| panic!("{path}, as read: {e:?}"));
        }
        let nulls = vec!["NULL"; prepared.params().len()].join(", ");
        let args = if nulls.is_empty() { String::new() } else { format!("({nulls})") };
        env.db
            .batch_execute(&format!("PREPARE s{i} AS {sql}\n;"))
            .await
            .unwrap_or_else(|e| panic!("{path}: {e:?}"));
        env.db
            .simple_query(&format!("EXPLAIN EXECUTE s{i}{args}"))
            .await
            .unwrap_or_else(|e| panic!("{path}: {e:?}"));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn every_statement_prepares_against_the_migrated_schema() {
    let env = Env::new().await;
    assert_eq!(key_type(&env, "whatsapp_webhook_logs").await, "uuid");
    prepare_and_explain_all(&env).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn every_statement_prepares_against_text_keys() {
    let env = Env::with_existing_schema(&text_keyed_schema()).await;
    assert_eq!(key_type(&env, "whatsapp_webhook_logs").await, "text");
    assert_eq!(key_type(&env, "whatsapp_connections").await, "text");
    prepare_and_explain_all(&env).await;
}

/// A broken statement fails the check above (so that it is not one that passes anything).
#[tokio::test(flavor = "multi_thread")]
async fn a_statement_naming_a_missing_column_fails_to_prepare() {
    let env = Env::new().await;
    let (_, sql) = statements().into_iter().find(|(p, _)| p.ends_with("claim_due_webhooks.sql")).unwrap();
    let broken = sql.replace("\"nextRetryAt\" = timezone", "\"nextRetryTime\" = timezone");
    assert_ne!(broken, sql);
    let e = env.db.prepare(&broken).await.unwrap_err();
    assert!(e.to_string().contains("nextRetryTime") || format!("{e:?}").contains("nextRetryTime"), "{e:?}");
}

/// The plan of `path` with `args` (SQL literals), the planner told to find rows through an index
/// wherever one can serve: on a small table it rightly prefers reading it whole, which says
/// nothing of whether the index could be used.
async fn plan(env: &Env, path: &str, args: &[String]) -> String {
    let (_, sql) = statements().into_iter().find(|(p, _)| p.ends_with(path)).unwrap();
    plan_of(env, &sql, args).await
}

async fn plan_of(env: &Env, sql: &str, args: &[String]) -> String {
    let name = format!("p{}", uuid::Uuid::new_v4().simple());
    env.db
        .batch_execute(&format!(
            "SET enable_seqscan = off; SET enable_hashjoin = off; SET enable_mergejoin = off; PREPARE {name} AS {sql}\n;"
        ))
        .await
        .unwrap();
    let rows = env.db.simple_query(&format!("EXPLAIN EXECUTE {name}({})", args.join(", "))).await.unwrap();
    rows.iter()
        .filter_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_owned),
            _ => None,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

async fn seed_large_estate(env: &Env) -> (Vec<String>, Vec<String>) {
    env.db
        .batch_execute(
            "INSERT INTO whatsapp_webhook_logs (\"organizationId\", payload, processed, \"signatureValid\", \"retryCount\", \"createdAt\") \
                 SELECT gen_random_uuid(), '{}', true, true, 0, timezone('UTC', now()) FROM generate_series(1, 20000); \
             INSERT INTO whatsapp_connections (\"organizationId\", status, \"updatedAt\") \
                 SELECT gen_random_uuid(), 'active', timezone('UTC', now()) FROM generate_series(1, 20000); \
             INSERT INTO whatsapp_configs (\"organizationId\", \"connectionId\", \"accessToken\", \"updatedAt\") \
                 SELECT \"organizationId\", id, 'x', timezone('UTC', now()) FROM whatsapp_connections; \
             ANALYZE;",
        )
        .await
        .unwrap();
    let ids = |sql: &'static str| async move {
        env.db.query(sql, &[]).await.unwrap().iter().map(|r| r.get::<_, String>(0)).collect::<Vec<_>>()
    };
    (
        ids("SELECT id::text FROM whatsapp_webhook_logs LIMIT 200").await,
        ids("SELECT id::text FROM whatsapp_connections LIMIT 200").await,
    )
}

fn text_array(items: &[String]) -> String {
    format!("ARRAY[{}]::text[]", items.iter().map(|i| format!("'{i}'")).collect::<Vec<_>>().join(","))
}

/// An index lookup by id: the primary key probed with the id sought, not read whole.
fn looks_up_by_id(plan: &str, index: &str) -> bool {
    plan.lines()
        .skip_while(|l| {
            !l.contains(&format!("Index Scan using {index}"))
                && !l.contains(&format!("Index Scan on {index}"))
        })
        .nth(1)
        .is_some_and(|l| l.contains("Index Cond: (id = "))
}

/// Recording a batch of attempts, releasing claims and marking a webhook processed find the log's
/// rows through its primary key, and saving health results the connections', on either key type:
/// none reads the whole table for the rows it looks for.
async fn writes_by_id_use_the_primary_keys(env: &Env) {
    let (webhooks, connections) = seed_large_estate(env).await;
    let n = webhooks.len();
    let ints = |v: &str| format!("ARRAY[{}]::int[]", vec![v; n].join(","));
    let texts = |v: &str| format!("ARRAY[{}]::text[]", vec![v; n].join(","));
    let record = plan(
        env,
        "record_webhook_attempts.sql",
        &[
            text_array(&webhooks),
            ints("1"),
            ints("500"),
            ints("20"),
            "'job-1'".into(),
            texts("'HTTP 500'"),
            format!("ARRAY[{}]::bigint[]", vec!["60000"; n].join(",")),
            texts("'false'"),
            texts("'false'"),
        ],
    )
    .await;
    let release = plan(env, "release_webhook_claims.sql", &[text_array(&webhooks)]).await;
    let processed = plan(env, "mark_webhook_processed.sql", &[format!("'{}'", webhooks[0])]).await;
    for (what, plan) in [("record", &record), ("release", &release), ("mark processed", &processed)] {
        assert!(looks_up_by_id(plan, "whatsapp_webhook_logs_pkey"), "{what}:\n{plan}");
    }
    // What the rule forbids, `id::text = $1`, reads a uuid key's index whole at best (on a text
    // key it is the key's own type).
    if key_type(env, "whatsapp_webhook_logs").await == "uuid" {
        let by_text = plan_of(
            env,
            "UPDATE whatsapp_webhook_logs SET processed = true WHERE id::text = $1",
            &[format!("'{}'", webhooks[0])],
        )
        .await;
        assert!(!looks_up_by_id(&by_text, "whatsapp_webhook_logs_pkey"), "{by_text}");
    }
    let m = connections.len();
    let save = plan(
        env,
        "save_health_results.sql",
        &[
            text_array(&connections),
            format!("ARRAY[{}]::text[]", vec!["'healthy'"; m].join(",")),
            format!("ARRAY[{}]::text[]", vec!["'true'"; m].join(",")),
            format!("ARRAY[{}]::text[]", vec!["'false'"; m].join(",")),
            format!("ARRAY[{}]::text[]", vec!["'ok'"; m].join(",")),
            format!("ARRAY[{}]::bigint[]", vec!["20"; m].join(",")),
            format!("ARRAY[{}]::text[]", vec!["NULL"; m].join(",")),
            format!("ARRAY[{}]::text[]", vec!["NULL"; m].join(",")),
            format!("ARRAY[{}]::bigint[]", vec!["NULL"; m].join(",")),
        ],
    )
    .await;
    assert!(looks_up_by_id(&save, "whatsapp_connections_pkey"), "{save}");
}

#[tokio::test(flavor = "multi_thread")]
async fn writes_by_id_use_the_primary_key_on_uuid_keys() {
    writes_by_id_use_the_primary_keys(&Env::new().await).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn writes_by_id_use_the_primary_key_on_text_keys() {
    writes_by_id_use_the_primary_keys(&Env::with_existing_schema(&text_keyed_schema()).await).await;
}

/// No statement is assembled in Rust: a string literal that starts a statement is a `.sql`
/// file's job (the one exception is the wrapper `Db::rows` puts around a read), and every file is
/// sent by the code next to it.
#[test]
fn statements_live_in_sql_files_and_each_is_used() {
    let src = root().join("src");
    let mut included = Vec::new();
    for file in &files_under(&src, "rs") {
        let mut text = std::fs::read_to_string(file).unwrap();
        if file.ends_with("db.rs") {
            text = text.replacen("format!(\"WITH t AS (", "", 1);
        }
        for keyword in ["\"SELECT ", "\"INSERT ", "\"UPDATE ", "\"DELETE ", "\"WITH ", "concat!(\"SELECT"] {
            assert!(!text.contains(keyword), "{}: a statement in Rust ({keyword})", file.display());
        }
        for (at, _) in text.match_indices("include_str!(\"sql/") {
            let name = &text[at + "include_str!(\"".len()..];
            let name = &name[..name.find('"').unwrap()];
            included
                .push(file.parent().unwrap().join(name).strip_prefix(&src).unwrap().display().to_string());
        }
    }
    included.sort();
    let files: Vec<String> = statements().into_iter().map(|(p, _)| p).collect();
    assert_eq!(included, files, "every .sql file is included once, and every include is a file");
}

/// The webhook queue's states (open, pending, due) are written once, in [`QUEUE_STATES`]: every
/// statement that asks for one uses its text as it is there, the partial index of `migrations/`
/// (and of the Prisma migration) is open's, and every statement on `whatsapp_webhook_logs` is
/// the queue's.
#[test]
fn the_queues_states_are_written_once() {
    let states = std::fs::read_to_string(root().join("src").join(QUEUE_STATES)).unwrap();
    let fragments: Vec<&str> =
        states.lines().filter(|l| !l.starts_with("--") && !l.trim().is_empty()).collect();
    let [open, pending, due_at] = fragments[..] else { panic!("open, pending, due at: {fragments:?}") };
    assert!(pending.starts_with(open));
    let mut users = 0;
    for (path, sql) in statements() {
        if !sql.contains("whatsapp_webhook_logs") {
            continue;
        }
        assert!(
            path.starts_with("jobs/webhook_retry/queue/sql/"),
            "{path}: a statement on the queue outside it"
        );
        // Each state, wherever it is asked for, in its one text (spacing aside).
        let words = |s: &str| s.split_whitespace().collect::<Vec<_>>().join(" ").replace("\"<", "\" <");
        let sql = words(&sql);
        let asks = |part: &str| sql.matches(&words(part)).count();
        assert_eq!(asks("\"retryCount\" <"), asks(pending), "{path}: pending, written again");
        assert_eq!(asks("COALESCE(\"nextRetryAt\""), asks(due_at), "{path}: the due time, written again");
        assert_eq!(asks("\"deadAt\" IS NULL"), asks(open), "{path}: open, written again");
        users += asks(open);
    }
    assert!(users >= 3, "{users} uses of the states");
    for (migration, name) in [
        ("migrations/003_webhook_retry.sql", "whatsapp_webhook_logs_pending_due_idx"),
        (
            "prisma/migrations/20261130000000_whatrack_jobs/migration.sql",
            "whatsapp_webhook_logs_pending_due_idx",
        ),
        ("migrations/007_tenant_turns.sql", "whatsapp_webhook_logs_tenant_due_idx"),
        (
            "prisma/migrations/20261204000000_whatrack_jobs_tenant_turns/migration.sql",
            "whatsapp_webhook_logs_tenant_due_idx",
        ),
    ] {
        let text = std::fs::read_to_string(root().join(migration)).unwrap();
        let index = text.lines().find(|l| l.contains("CREATE INDEX") && l.contains(name)).unwrap();
        // Prisma writes each term in parentheses.
        let index = index.replace(['(', ')'], "");
        assert!(
            index.contains(&format!("WHERE {open}")),
            "{migration}: the partial index is open's: {index}"
        );
    }
}
