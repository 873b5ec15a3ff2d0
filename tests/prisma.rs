//! WhaTrack's Prisma schema and this app's migrations held in step (docs/existing-database.md): `prisma/whatrack-jobs.prisma` and `prisma/whatrack-tables.prisma`
//! read by Prisma's own schema parser (`tests/prisma/datamodel.mjs`, `@prisma/prisma-schema-wasm`)
//! against a database `migrations/` migrated, column by column and index by index; and the Prisma
//! migration (`prisma/migrations/*_whatrack_jobs`) applied to a fresh WhaTrack-shaped database
//! against the same database migrated by `migrations/`.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::*;
use serde::Deserialize;

/// An index of the migrations that Prisma's schema language cannot write (an expression index):
/// both migrations create it, the schema files name it nowhere.
const NOT_IN_PRISMA: &[&str] = &["whatsapp_connections_due_idx"];
/// This app's own tables: every column of theirs is in the schema. WhaTrack's tables have more
/// columns than the schema files show.
const OWN_TABLES: &[&str] = &["job_runs", "webhook_retry_attempts", "job_pauses"];

#[derive(Debug, Deserialize)]
struct Model {
    model: String,
    table: String,
    fields: Vec<Field>,
    indexes: Vec<Index>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Field {
    column: String,
    #[serde(rename = "type")]
    kind: String,
    native_type: Option<(String, Vec<String>)>,
    required: bool,
}

#[derive(Debug, PartialEq, Eq, Deserialize)]
struct Index {
    name: String,
    unique: bool,
    #[serde(rename = "where")]
    predicate: Option<String>,
    columns: Vec<IndexColumn>,
}

#[derive(Debug, PartialEq, Eq, Deserialize)]
struct IndexColumn {
    column: String,
    descending: bool,
}

/// The schema files as Prisma's parser reads them; a schema it refuses fails here, with its message.
fn datamodel() -> Vec<Model> {
    let out = std::process::Command::new("node")
        .arg(root().join("tests/prisma/datamodel.mjs"))
        .arg(root())
        .output()
        .expect("node (scripts/test.sh installs Node.js and tests/prisma's @prisma/prisma-schema-wasm)");
    assert!(out.status.success(), "Prisma refused the schema: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Postgres's type of a Prisma field, as Prisma maps it.
fn postgres_type(field: &Field) -> String {
    match (field.kind.as_str(), &field.native_type) {
        ("String", None) => "text".into(),
        ("String", Some((native, _))) if native == "Uuid" => "uuid".into(),
        ("Int", None) => "integer".into(),
        ("Boolean", None) => "boolean".into(),
        ("Json", None) => "jsonb".into(),
        ("DateTime", Some((native, args))) if native == "Timestamp" => format!("timestamp({})", args[0]),
        other => panic!("{}: no mapping for {other:?}", field.column),
    }
}

/// `table`'s columns: name to (type, NOT NULL).
async fn columns(env: &Env, table: &str) -> BTreeMap<String, (String, bool)> {
    env.db
        .query(
            "SELECT column_name::text, CASE WHEN data_type = 'timestamp without time zone' \
                 THEN 'timestamp(' || datetime_precision || ')' ELSE udt_name::text END, is_nullable = 'NO' \
             FROM information_schema.columns WHERE table_schema = current_schema() AND table_name = $1",
            &[&table],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| {
            (
                r.get(0),
                (r.get::<_, String>(1).replace("int4", "integer").replace("bool", "boolean"), r.get(2)),
            )
        })
        .collect()
}

/// `table`'s indexes but its primary key, as [`Index`]es (a predicate without its outer
/// parentheses, as Prisma's `raw()` holds it).
async fn indexes(env: &Env, table: &str) -> Vec<Index> {
    let rows = env
        .db
        .query(
            "SELECT c.relname::text, i.indisunique, pg_get_expr(i.indpred, i.indrelid), \
                    array(SELECT pg_get_indexdef(i.indexrelid, k, true) FROM generate_series(1, i.indnkeyatts) k ORDER BY k), \
                    array(SELECT (i.indoption[k - 1] & 1) = 1 FROM generate_series(1, i.indnkeyatts) k ORDER BY k) \
             FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid \
             WHERE i.indrelid = to_regclass($1) AND NOT i.indisprimary ORDER BY 1",
            &[&table],
        )
        .await
        .unwrap();
    rows.iter()
        .map(|r| {
            let keys: Vec<String> = r.get(3);
            let descending: Vec<bool> = r.get(4);
            Index {
                name: r.get(0),
                unique: r.get(1),
                predicate: r
                    .get::<_, Option<String>>(2)
                    .map(|p| p.strip_prefix('(').and_then(|p| p.strip_suffix(')')).unwrap_or(&p).to_owned()),
                columns: keys
                    .into_iter()
                    .zip(descending)
                    .map(|(k, descending)| IndexColumn { column: k.trim_matches('"').to_owned(), descending })
                    .collect(),
            }
        })
        .collect()
}

/// Every model, field, type, nullability and index of the schema files is what `migrations/`
/// made of a WhaTrack database; this app's tables have nothing the schema leaves out, and no
/// index of the app is missing from the schema but the one it cannot write.
#[tokio::test(flavor = "multi_thread")]
async fn the_prisma_schema_describes_the_migrated_database() {
    let env = Env::with_existing_schema(WHATRACK_SCHEMA).await;
    let models = datamodel();
    let tables: BTreeSet<&str> = models.iter().map(|m| m.table.as_str()).collect();
    for table in OWN_TABLES.iter().chain(&[
        "whatsapp_connections",
        "whatsapp_configs",
        "whatsapp_health",
        "whatsapp_webhook_logs",
    ]) {
        assert!(tables.contains(table), "no model maps {table}");
    }
    for model in &models {
        let in_db = columns(&env, &model.table).await;
        for field in &model.fields {
            let (kind, not_null) = in_db.get(&field.column).unwrap_or_else(|| {
                panic!("{}.{}: no such column in {}", model.model, field.column, model.table)
            });
            assert_eq!(kind, &postgres_type(field), "{}.{}: type", model.model, field.column);
            assert_eq!(*not_null, field.required, "{}.{}: required is NOT NULL", model.model, field.column);
        }
        if OWN_TABLES.contains(&model.table.as_str()) {
            let in_schema: BTreeSet<&str> = model.fields.iter().map(|f| f.column.as_str()).collect();
            let in_table: BTreeSet<&str> = in_db.keys().map(String::as_str).collect();
            assert_eq!(in_schema, in_table, "{}: every column in the schema", model.table);
        }
        let mut in_db: Vec<Index> = indexes(&env, &model.table).await;
        in_db.retain(|i| !NOT_IN_PRISMA.contains(&i.name.as_str()));
        let mut in_schema: Vec<&Index> = model.indexes.iter().collect();
        in_schema.sort_by(|a, b| a.name.cmp(&b.name));
        assert_eq!(in_schema, in_db.iter().collect::<Vec<_>>(), "{}: indexes", model.table);
    }
    // The one left out is there, and is what the schema could not say.
    let due = indexes(&env, "whatsapp_connections").await;
    assert!(due.iter().any(|i| i.name == NOT_IN_PRISMA[0]), "{due:?}");
}

/// `table.column` to (type, NOT NULL, default) for every table, and every index's definition.
async fn shape(env: &Env) -> (BTreeMap<String, (String, String, Option<String>)>, BTreeSet<String>) {
    let columns = env
        .db
        .query(
            "SELECT table_name || '.' || column_name, data_type || coalesce('(' || datetime_precision || ')', ''), \
                    is_nullable, column_default \
             FROM information_schema.columns WHERE table_schema = current_schema()",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), (r.get(1), r.get(2), r.get(3))))
        .collect();
    let indexes = env
        .db
        .query("SELECT indexdef FROM pg_indexes WHERE schemaname = current_schema()", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    (columns, indexes)
}

/// The Prisma migration, applied to WhaTrack's tables as `prisma migrate deploy` would, leaves
/// the database `migrations/` leaves: every column (type, nullability, default) and index.
#[tokio::test(flavor = "multi_thread")]
async fn the_prisma_migration_leaves_the_database_the_migrations_leave() {
    let by_migrations = Env::with_existing_schema(WHATRACK_SCHEMA).await;
    let by_prisma = Env::unmigrated(WHATRACK_SCHEMA).await;
    let mut folders: Vec<_> = std::fs::read_dir(root().join("prisma/migrations"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    folders.sort();
    assert_eq!(folders.len(), 3, "{folders:?}");
    for folder in folders {
        let name = folder.file_name().unwrap().to_str().unwrap().to_owned();
        assert!(name.contains("_whatrack_jobs"), "{name}");
        let sql = std::fs::read_to_string(folder.join("migration.sql")).unwrap();
        // As `prisma migrate deploy` sends it: the script as one simple query, which Postgres runs
        // as one transaction when it holds several statements (CONCURRENTLY is refused there).
        by_prisma.db.batch_execute(&sql).await.unwrap_or_else(|e| panic!("{name}: {e:?}"));
    }

    let (want_columns, want_indexes) = shape(&by_migrations).await;
    let (got_columns, got_indexes) = shape(&by_prisma).await;
    let differ = |a: &BTreeMap<String, _>, b: &BTreeMap<String, _>| -> Vec<String> {
        a.keys().filter(|k| a.get(*k) != b.get(*k)).cloned().collect()
    };
    assert!(
        want_columns == got_columns,
        "columns differ: {:?} / {:?}",
        differ(&want_columns, &got_columns),
        differ(&got_columns, &want_columns)
    );
    assert_eq!(
        want_indexes.symmetric_difference(&got_indexes).collect::<Vec<_>>(),
        Vec::<&String>::new(),
        "indexes differ"
    );
}
