//! The queue's verbs, one named statement each, over `whatsapp_webhook_logs`: the database does
//! the queueing (claim with `SKIP LOCKED`, lease, release, record, count, redrive).
//!
//! Bound parameters shared by the statements that take the policy's rules: `$1` is
//! `webhook_retry_max_attempts`, `$2` is `webhook_retry_base_seconds`.

use serde::Serialize;
use spin_sdk::pg4::ParameterValue;

use super::policy::{Fate, Rules};
use crate::db::{int, now_utc, str, str_array, text, Db, DbError, DbResult};

/// A webhook waiting for a retry (`$1`: max attempts).
macro_rules! pending {
    () => {
        "processed = false AND \"signatureValid\" = true AND \"deadAt\" IS NULL AND \"retryCount\" < $1"
    };
}

/// When a pending webhook is due, once this has passed (`$2`: base seconds): a brand-new failure
/// waits one base period, so processing still in flight is not duplicated.
macro_rules! due_at {
    () => {
        "COALESCE(\"nextRetryAt\", \"createdAt\" + make_interval(secs => $2::float8))"
    };
}

/// Takes up to `$3` due rows, oldest due first, and pushes their `"nextRetryAt"` ahead by a
/// lease of `$4` seconds. One statement, so one transaction, and `SKIP LOCKED` keeps two
/// concurrent claims from ever taking the same row, Redis lock or not.
const CLAIM: &str = concat!(
    "WITH due AS ( \
        SELECT id FROM whatsapp_webhook_logs WHERE ",
    pending!(),
    " AND ",
    due_at!(),
    " <= ",
    now_utc!(),
    " ORDER BY ",
    due_at!(),
    ", id LIMIT $3 FOR UPDATE SKIP LOCKED) \
     UPDATE whatsapp_webhook_logs w SET \"nextRetryAt\" = ",
    now_utc!(),
    " + make_interval(secs => $4::float8) \
     FROM due WHERE w.id = due.id \
     RETURNING w.id::text, w.\"retryCount\", COALESCE(w.\"rawBody\", w.payload::text)"
);

/// Makes claimed rows that were never attempted due again, without counting an attempt.
const RELEASE: &str = concat!(
    "UPDATE whatsapp_webhook_logs SET \"nextRetryAt\" = ",
    now_utc!(),
    " WHERE id::text = ANY($1::text[])"
);

/// One attempt's outcome and its `webhook_retry_attempts` row, in one statement.
/// `$1` id, `$2` attempt, `$3` HTTP status, `$4` ms, `$5` jobId, `$6` error (NULL when
/// delivered), `$7` seconds until the next attempt (NULL unless one is planned), `$8` delivered,
/// `$9` dead-lettered now.
const RECORD: &str = concat!(
    "WITH done AS ( \
        UPDATE whatsapp_webhook_logs SET \
            processed = processed OR $8, \
            \"processedAt\" = CASE WHEN $8 THEN ",
    now_utc!(),
    " ELSE \"processedAt\" END, \
            \"processingError\" = $6, \
            \"retryCount\" = \"retryCount\" + CASE WHEN $8 THEN 0 ELSE 1 END, \
            \"lastRetryAt\" = CASE WHEN $8 THEN \"lastRetryAt\" ELSE ",
    now_utc!(),
    " END, \
            \"nextRetryAt\" = ",
    now_utc!(),
    " + make_interval(secs => $7::float8), \
            \"deadAt\" = CASE WHEN $9 THEN ",
    now_utc!(),
    " ELSE NULL END \
        WHERE id::text = $1 RETURNING id) \
     INSERT INTO webhook_retry_attempts (id, \"webhookLogId\", attempt, \"attemptedAt\", \"httpStatus\", error, \"durationMs\", \"jobId\") \
     SELECT gen_random_uuid(), done.id::text, $2, ",
    now_utc!(),
    ", $3, $6, $4, $5 FROM done"
);

/// Due rows not yet attempted: the work a run leaves to the next one.
const COUNT_DUE: &str = concat!(
    "SELECT count(*) FROM whatsapp_webhook_logs WHERE ",
    pending!(),
    " AND ",
    due_at!(),
    " <= ",
    now_utc!()
);

/// Waiting for a retry, and dead-lettered.
const COUNTS: &str = concat!(
    "SELECT count(*) FILTER (WHERE ",
    pending!(),
    "), count(*) FILTER (WHERE \"deadAt\" IS NOT NULL AND processed = false) \
     FROM whatsapp_webhook_logs WHERE processed = false"
);

/// Puts dead-lettered rows back in the queue: all of them (`$1` NULL), or those of `$1`.
const REDRIVE: &str = concat!(
    "UPDATE whatsapp_webhook_logs SET \"deadAt\" = NULL, \"retryCount\" = 0, \"nextRetryAt\" = ",
    now_utc!(),
    " WHERE \"deadAt\" IS NOT NULL AND processed = false AND ($1::text[] IS NULL OR id::text = ANY($1::text[]))"
);

#[derive(Debug, Clone)]
pub struct Claimed {
    pub id: String,
    pub retry_count: u32,
    /// `"rawBody"` when stored, else the `payload` JSON as text.
    pub body: String,
}

/// One attempt, as [`record`] writes it.
pub struct AttemptRecord<'a> {
    pub id: &'a str,
    pub attempt: u32,
    pub http_status: Option<u16>,
    pub error: Option<&'a str>,
    pub duration_ms: u64,
    pub job_id: &'a str,
    pub fate: Fate,
}

/// The status route's queue counts.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Counts {
    pub pending_webhooks: u64,
    pub dead_webhooks: u64,
}

/// Which dead-lettered webhooks to put back in the queue.
pub enum Redrive {
    All,
    Ids(Vec<String>),
}

fn max_attempts(rules: &Rules) -> ParameterValue {
    ParameterValue::Int32(rules.max_attempts as i32)
}

fn base_secs(rules: &Rules) -> ParameterValue {
    ParameterValue::Floating64(rules.base.as_secs_f64())
}

pub fn claim(db: &Db, rules: &Rules, batch: u32, lease_secs: u64) -> DbResult<Vec<Claimed>> {
    const CTX: &str = "claim due webhooks";
    let params = [
        max_attempts(rules),
        base_secs(rules),
        ParameterValue::Int64(i64::from(batch)),
        ParameterValue::Floating64(lease_secs as f64),
    ];
    let rows = db.query(CTX, CLAIM, &params)?;
    rows.rows
        .iter()
        .map(|r| {
            Ok(Claimed {
                id: text(&r[0]).ok_or_else(|| DbError::decode(CTX, "id"))?,
                retry_count: int(&r[1]).ok_or_else(|| DbError::decode(CTX, "retryCount"))? as u32,
                body: text(&r[2]).unwrap_or_default(),
            })
        })
        .collect()
}

pub fn release(db: &Db, ids: &[String]) -> DbResult<()> {
    if !ids.is_empty() {
        db.execute("release webhook claims", RELEASE, &[str_array(ids)])?;
    }
    Ok(())
}

pub fn record(db: &Db, a: &AttemptRecord<'_>) -> DbResult<()> {
    let (retry_in, delivered, dead) = match a.fate {
        Fate::Delivered => (None, true, false),
        Fate::RetryIn(delay) => (Some(delay.as_secs_f64()), false, false),
        Fate::Dead => (None, false, true),
    };
    db.execute(
        "record webhook attempt",
        RECORD,
        &[
            str(a.id),
            ParameterValue::Int32(a.attempt as i32),
            a.http_status.map(|s| ParameterValue::Int32(i32::from(s))).into(),
            ParameterValue::Int32(a.duration_ms.min(i32::MAX as u64) as i32),
            str(a.job_id),
            a.error.map(str).into(),
            retry_in.map(ParameterValue::Floating64).into(),
            ParameterValue::Boolean(delivered),
            ParameterValue::Boolean(dead),
        ],
    )?;
    Ok(())
}

pub fn count_due(db: &Db, rules: &Rules) -> DbResult<u64> {
    db.count("count due webhooks", COUNT_DUE, &[max_attempts(rules), base_secs(rules)])
}

pub fn counts(db: &Db, rules: &Rules) -> DbResult<Counts> {
    let rows = db.query("count webhook queue", COUNTS, &[max_attempts(rules)])?;
    let row = rows.rows.first();
    let n = |i: usize| row.and_then(|r| int(&r[i])).unwrap_or(0) as u64;
    Ok(Counts { pending_webhooks: n(0), dead_webhooks: n(1) })
}

pub fn redrive(db: &Db, which: &Redrive) -> DbResult<u64> {
    let ids = match which {
        Redrive::All => ParameterValue::DbNull,
        Redrive::Ids(ids) => str_array(ids),
    };
    db.execute("redrive webhooks", REDRIVE, &[ids])
}
