//! The queue's verbs, one named statement each, over `whatsapp_webhook_logs`: the database does
//! the queueing (sweep, claim with `SKIP LOCKED`, lease, release, record, count, redrive).
//!
//! Bound parameters shared by the statements that take the policy's rules: `$1` is
//! `webhook_retry_max_attempts`, `$2` is `webhook_retry_base_seconds`.
//!
//! Rows are found by their primary key as the column's own type (`id = $1::uuid` on WhaTrack's
//! uuid ids, `id = $1` on text ones), never as `id::text = $1`, which cannot use the index and
//! would scan the whole log for every attempt recorded: [`Queue::open`] asks which it is.

use serde::{Deserialize, Serialize};
use spin_sdk::pg4::ParameterValue;

use super::policy::{Fate, Rules};
use crate::db::{now_utc, str, str_array, Db, DbResult};

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
     RETURNING w.id::text AS id, w.\"retryCount\", COALESCE(w.\"rawBody\", w.payload::text) AS body"
);

/// Makes claimed rows that were never attempted due again, without counting an attempt.
macro_rules! release {
    ($id:literal) => {
        concat!(
            "UPDATE whatsapp_webhook_logs SET \"nextRetryAt\" = ",
            now_utc!(),
            " WHERE id = ANY($1::text[]::",
            $id,
            "[])"
        )
    };
}

/// A batch of attempts: each one's outcome on its row and its `webhook_retry_attempts` row, all
/// in one statement (one transaction). Arrays, one element per attempt: `$1` ids, `$2` attempt,
/// `$3` HTTP status, `$4` ms, `$6` error (NULL when delivered), `$7` ms until the next
/// attempt (NULL unless one is planned), `$8` delivered, `$9` dead-lettered now; `$5` the
/// jobId. The ids are cast to the key's own type, so each row is found by its index.
macro_rules! record {
    ($id:literal) => {
        concat!(
            "WITH u AS ( \
                SELECT * FROM unnest($1::text[]::",
            $id,
            "[], $2::int[], $3::int[], $4::int[], $6::text[], $7::bigint[], $8::text[], $9::text[]) \
                    AS u(id, attempt, status, ms, error, retry_in_ms, delivered, dead)), \
             done AS ( \
                UPDATE whatsapp_webhook_logs w SET \
                    processed = w.processed OR u.delivered::boolean, \
                    \"processedAt\" = CASE WHEN u.delivered::boolean THEN ",
            now_utc!(),
            " ELSE w.\"processedAt\" END, \
                    \"processingError\" = u.error, \
                    \"retryCount\" = w.\"retryCount\" + CASE WHEN u.delivered::boolean THEN 0 ELSE 1 END, \
                    \"lastRetryAt\" = CASE WHEN u.delivered::boolean THEN w.\"lastRetryAt\" ELSE ",
            now_utc!(),
            " END, \
                    \"nextRetryAt\" = ",
            now_utc!(),
            " + u.retry_in_ms * interval '1 millisecond', \
                    \"deadAt\" = CASE WHEN u.dead::boolean THEN ",
            now_utc!(),
            " ELSE NULL END \
                FROM u WHERE w.id = u.id \
                RETURNING w.id, u.attempt, u.status, u.error, u.ms) \
             INSERT INTO webhook_retry_attempts (id, \"webhookLogId\", attempt, \"attemptedAt\", \"httpStatus\", error, \"durationMs\", \"jobId\") \
             SELECT gen_random_uuid(), done.id::text, done.attempt, ",
            now_utc!(),
            ", done.status, done.error, done.ms, $5 FROM done"
        )
    };
}

/// Puts dead-lettered rows back in the queue: all of them (`$1` NULL), or those of `$1`.
macro_rules! redrive {
    ($id:literal) => {
        concat!(
            "UPDATE whatsapp_webhook_logs SET \"deadAt\" = NULL, \"retryCount\" = 0, \"nextRetryAt\" = ",
            now_utc!(),
            " WHERE \"deadAt\" IS NOT NULL AND processed = false AND ($1::text[] IS NULL OR id = ANY($1::",
            $id,
            "[]))"
        )
    };
}

/// Puts back the rows dead-lettered from `$1` until `$2` (now when NULL), oldest first, at most
/// `$3` (all when NULL); the times are RFC 3339, any offset.
const REDRIVE_WINDOW: &str = concat!(
    "UPDATE whatsapp_webhook_logs SET \"deadAt\" = NULL, \"retryCount\" = 0, \"nextRetryAt\" = ",
    now_utc!(),
    " WHERE id IN (SELECT id FROM whatsapp_webhook_logs \
         WHERE \"deadAt\" IS NOT NULL AND processed = false \
           AND \"deadAt\" >= ($1::text::timestamptz AT TIME ZONE 'UTC') \
           AND ($2::text IS NULL OR \"deadAt\" < ($2::text::timestamptz AT TIME ZONE 'UTC')) \
         ORDER BY \"deadAt\" LIMIT $3)"
);

/// The statements that find rows by a list of ids, for one type of primary key (Spin's Postgres
/// interface has no uuid arrays, so the list goes as `text[]` and is cast).
struct ById {
    release: &'static str,
    redrive: &'static str,
    record: &'static str,
}

const BY_UUID: ById = ById { release: release!("uuid"), redrive: redrive!("uuid"), record: record!("uuid") };
const BY_TEXT: ById = ById { release: release!("text"), redrive: redrive!("text"), record: record!("text") };

/// Whether the log's primary key is a uuid (WhaTrack's is) or text.
const ID_TYPE: &str = "SELECT data_type::text AS data_type FROM information_schema.columns \
     WHERE table_schema = current_schema() AND table_name = 'whatsapp_webhook_logs' AND column_name = 'id'";

/// Dead-letters what must not be re-delivered any more: rows whose `"retryCount"` already
/// reached `$1` without being dead-lettered, and rows pending for longer than `$2` seconds.
/// Up to `$3` rows a run; keeps the row's last error after the new reason.
const SWEEP: &str = concat!(
    "UPDATE whatsapp_webhook_logs SET \"deadAt\" = ",
    now_utc!(),
    ", \"processingError\" = CASE WHEN \"retryCount\" >= $1 THEN 'attempts exhausted' \
         ELSE 'expired: pending longer than webhook_retry_max_age_hours' END \
         || COALESCE('; last error: ' || \"processingError\", '') \
     WHERE id IN (SELECT id FROM whatsapp_webhook_logs \
         WHERE processed = false AND \"signatureValid\" = true AND \"deadAt\" IS NULL \
           AND (\"retryCount\" >= $1 OR \"createdAt\" < ",
    now_utc!(),
    " - make_interval(secs => $2::float8)) LIMIT $3) \
     RETURNING id::text AS id, \"retryCount\" >= $1 AS exhausted"
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
    ") AS \"pendingWebhooks\", count(*) FILTER (WHERE \"deadAt\" IS NOT NULL AND processed = false) AS \"deadWebhooks\" \
     FROM whatsapp_webhook_logs WHERE processed = false"
);

/// The console's view of the queue: waiting (due now, among them), dead-lettered, and how long
/// the oldest due webhook has waited, in seconds (0 when none is due).
const GAUGES: &str = concat!(
    "WITH q AS (SELECT ",
    pending!(),
    " AS pending, \"deadAt\" IS NOT NULL AS dead, ",
    due_at!(),
    " AS due_at FROM whatsapp_webhook_logs WHERE processed = false) \
     SELECT count(*) FILTER (WHERE pending) AS pending, count(*) FILTER (WHERE pending AND due_at <= ",
    now_utc!(),
    ") AS due, count(*) FILTER (WHERE dead) AS dead, GREATEST(COALESCE(EXTRACT(EPOCH FROM ",
    now_utc!(),
    " - min(due_at) FILTER (WHERE pending AND due_at <= ",
    now_utc!(),
    "))::bigint, 0), 0) AS \"oldestDueAgeSeconds\" FROM q"
);

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Claimed {
    pub id: String,
    pub retry_count: u32,
    /// `"rawBody"` when stored, else the `payload` JSON as text.
    #[serde(default)]
    pub body: String,
}

/// One attempt, as [`Queue::record`] writes it.
pub struct AttemptRecord<'a> {
    pub id: &'a str,
    pub attempt: u32,
    pub http_status: Option<u16>,
    pub error: Option<&'a str>,
    pub duration_ms: u64,
    pub fate: Fate,
}

/// The status route's queue counts.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Counts {
    pub pending_webhooks: u64,
    pub dead_webhooks: u64,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Gauges {
    pub pending: u64,
    pub due: u64,
    pub dead: u64,
    pub oldest_due_age_seconds: u64,
}

/// Which dead-lettered webhooks to put back in the queue.
#[derive(Debug, PartialEq, Eq)]
pub enum Redrive {
    All,
    Ids(Vec<String>),
    /// Dead-lettered from `since` (inclusive) until `until` (exclusive; now when absent), RFC
    /// 3339 timestamps, oldest first, at most `limit`: "recover what failed since the outage".
    Window {
        since: String,
        until: Option<String>,
        limit: Option<u32>,
    },
}

impl Redrive {
    /// `{"dead":true}`, `{"ids":["<id>", ...]}` or `{"deadSince":"<RFC 3339>"}` with an optional
    /// `"deadUntil"` and `"limit"` (1-100,000), one of the three; `None` for anything else.
    pub fn from_json(body: &[u8]) -> Option<Self> {
        let v: serde_json::Value = serde_json::from_slice(body).ok()?;
        let v = v.as_object()?;
        let timestamp = |key: &str| match v.get(key) {
            None => Some(None),
            Some(t) => t.as_str().filter(|t| is_rfc3339(t)).map(|t| Some(t.to_owned())),
        };
        let keys: Vec<&str> = v.keys().map(String::as_str).collect();
        match keys.as_slice() {
            ["dead"] => (v["dead"] == serde_json::Value::Bool(true)).then_some(Redrive::All),
            ["ids"] => v["ids"]
                .as_array()?
                .iter()
                .map(|id| id.as_str().map(str::to_owned))
                .collect::<Option<Vec<_>>>()
                .map(Redrive::Ids),
            _ if v.contains_key("deadSince")
                && keys.iter().all(|k| ["deadSince", "deadUntil", "limit"].contains(k)) =>
            {
                let limit = match v.get("limit") {
                    None => None,
                    Some(n) => Some(n.as_u64().filter(|n| (1..=100_000).contains(n))? as u32),
                };
                Some(Redrive::Window {
                    since: timestamp("deadSince")??,
                    until: timestamp("deadUntil")?,
                    limit,
                })
            }
            _ => None,
        }
    }
}

/// `2026-11-28T09:00:00Z`, `2026-11-28T09:00:00.5+01:00`: an RFC 3339 date-time, and nothing
/// else Postgres would also read as a time (`now`, `yesterday`, a bare date).
pub fn is_rfc3339(s: &str) -> bool {
    let b = s.as_bytes();
    let digits = |r: std::ops::Range<usize>| b.get(r).is_some_and(|d| d.iter().all(u8::is_ascii_digit));
    let shape = b.len() >= 20
        && digits(0..4)
        && b[4] == b'-'
        && digits(5..7)
        && b[7] == b'-'
        && digits(8..10)
        && matches!(b[10], b'T' | b't')
        && digits(11..13)
        && b[13] == b':'
        && digits(14..16)
        && b[16] == b':'
        && digits(17..19);
    if !shape {
        return false;
    }
    let mut rest = &s[19..];
    if let Some(fraction) = rest.strip_prefix('.') {
        let n = fraction.bytes().take_while(u8::is_ascii_digit).count();
        if n == 0 {
            return false;
        }
        rest = &fraction[n..];
    }
    match rest.as_bytes() {
        [b'Z' | b'z'] => true,
        [b'+' | b'-', h1, h2, b':', m1, m2] => [h1, h2, m1, m2].iter().all(|d| d.is_ascii_digit()),
        _ => false,
    }
}

/// Rows swept per run at the most (the rest go in the next run).
const SWEEP_LIMIT: i64 = 10_000;

/// A webhook [`Queue::sweep`] dead-lettered, and why.
#[derive(Debug, Deserialize)]
pub struct Swept {
    pub id: String,
    /// It had used up its attempts (else it had waited too long).
    pub exhausted: bool,
}

fn max_attempts(rules: &Rules) -> ParameterValue {
    ParameterValue::Int32(rules.max_attempts as i32)
}

fn base_secs(rules: &Rules) -> ParameterValue {
    ParameterValue::Floating64(rules.base.as_secs_f64())
}

/// The queue of one run: the database, the policy's rules, and the statements for its key type.
pub struct Queue<'a> {
    db: &'a Db,
    rules: Rules,
    by_id: &'static ById,
}

impl<'a> Queue<'a> {
    pub fn open(db: &'a Db, rules: Rules) -> DbResult<Self> {
        #[derive(Deserialize)]
        struct Column {
            data_type: String,
        }
        let columns: Vec<Column> = db.rows("webhook log id type", ID_TYPE, &[])?;
        let uuid = columns.first().is_some_and(|c| c.data_type == "uuid");
        Ok(Self { db, rules, by_id: if uuid { &BY_UUID } else { &BY_TEXT } })
    }

    pub fn sweep(&self) -> DbResult<Vec<Swept>> {
        const CTX: &str = "sweep stuck webhooks";
        let params = [
            max_attempts(&self.rules),
            ParameterValue::Floating64(self.rules.max_age.as_secs_f64()),
            ParameterValue::Int64(SWEEP_LIMIT),
        ];
        self.db.rows(CTX, SWEEP, &params)
    }

    pub fn claim(&self, batch: u32, lease_secs: u64) -> DbResult<Vec<Claimed>> {
        const CTX: &str = "claim due webhooks";
        let params = [
            max_attempts(&self.rules),
            base_secs(&self.rules),
            ParameterValue::Int64(i64::from(batch)),
            ParameterValue::Floating64(lease_secs as f64),
        ];
        self.db.rows(CTX, CLAIM, &params)
    }

    pub fn release(&self, ids: &[String]) -> DbResult<()> {
        if !ids.is_empty() {
            self.db.execute("release webhook claims", self.by_id.release, &[str_array(ids)])?;
        }
        Ok(())
    }

    /// Records a batch of attempts in one statement.
    pub fn record(&self, attempts: &[AttemptRecord<'_>], job_id: &str) -> DbResult<()> {
        if attempts.is_empty() {
            return Ok(());
        }
        let texts = |f: &dyn Fn(&AttemptRecord) -> Option<String>| {
            ParameterValue::ArrayStr(attempts.iter().map(f).collect())
        };
        let ints = |f: &dyn Fn(&AttemptRecord) -> Option<i32>| {
            ParameterValue::ArrayInt32(attempts.iter().map(f).collect())
        };
        let fate = |a: &AttemptRecord| match a.fate {
            Fate::Delivered => (None, true, false),
            Fate::RetryIn(delay) => (Some(delay.as_millis().min(i64::MAX as u128) as i64), false, false),
            Fate::Dead => (None, false, true),
        };
        self.db.execute(
            "record webhook attempts",
            self.by_id.record,
            &[
                texts(&|a| Some(a.id.to_owned())),
                ints(&|a| Some(a.attempt as i32)),
                ints(&|a| a.http_status.map(i32::from)),
                ints(&|a| Some(a.duration_ms.min(i32::MAX as u64) as i32)),
                str(job_id),
                texts(&|a| a.error.map(str::to_owned)),
                ParameterValue::ArrayInt64(attempts.iter().map(|a| fate(a).0).collect()),
                texts(&|a| Some(fate(a).1.to_string())),
                texts(&|a| Some(fate(a).2.to_string())),
            ],
        )?;
        Ok(())
    }

    pub fn count_due(&self) -> DbResult<u64> {
        self.db.count("count due webhooks", COUNT_DUE, &[max_attempts(&self.rules), base_secs(&self.rules)])
    }

    pub fn redrive(&self, which: &Redrive) -> DbResult<u64> {
        let ids = match which {
            Redrive::All => ParameterValue::DbNull,
            Redrive::Ids(ids) => str_array(ids),
            Redrive::Window { since, until, limit } => {
                let params = [
                    str(since),
                    until.as_deref().map(str).into(),
                    limit.map(|n| ParameterValue::Int64(i64::from(n))).into(),
                ];
                return self.db.execute("redrive webhooks dead in a window", REDRIVE_WINDOW, &params);
            }
        };
        self.db.execute("redrive webhooks", self.by_id.redrive, &[ids])
    }
}

/// The status route's counts: one statement, no need to know the key's type.
/// `max_attempts`: `webhook_retry_max_attempts`, below which a webhook still counts as pending.
pub fn counts(db: &Db, max_attempts: u32) -> DbResult<Counts> {
    db.row("count webhook queue", COUNTS, &[ParameterValue::Int32(max_attempts as i32)])
}

pub fn gauges(db: &Db, rules: &Rules) -> DbResult<Gauges> {
    db.row("webhook queue gauges", GAUGES, &[max_attempts(rules), base_secs(rules)])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_times_and_nothing_else() {
        for good in ["2026-11-28T09:00:00Z", "2026-11-28t09:00:00.123456+01:00", "2026-11-28T09:00:00-05:30"]
        {
            assert!(is_rfc3339(good), "{good}");
        }
        for bad in [
            "now",
            "yesterday",
            "2026-11-28",
            "2026-11-28 09:00:00Z",
            "2026-11-28T09:00:00",
            "2026-11-28T09:00:00.Z",
            "2026-11-28T09:00:00+0100",
            "2026-11-28T09:00:00Z ",
            "2026-11-28T09:00:00ZZ",
            "２026-11-28T09:00:00Z",
        ] {
            assert!(!is_rfc3339(bad), "{bad}");
        }
    }

    #[test]
    fn a_redrive_body_is_one_form() {
        let window = |body: &str| Redrive::from_json(body.as_bytes());
        assert_eq!(
            window(r#"{"deadSince":"2026-11-28T09:00:00Z","deadUntil":"2026-11-28T10:00:00Z","limit":50}"#),
            Some(Redrive::Window {
                since: "2026-11-28T09:00:00Z".into(),
                until: Some("2026-11-28T10:00:00Z".into()),
                limit: Some(50)
            })
        );
        assert_eq!(
            window(r#"{"deadSince":"2026-11-28T09:00:00Z"}"#),
            Some(Redrive::Window { since: "2026-11-28T09:00:00Z".into(), until: None, limit: None })
        );
        for refused in [
            r#"{"deadUntil":"2026-11-28T09:00:00Z"}"#,
            r#"{"deadSince":"yesterday"}"#,
            r#"{"deadSince":"2026-11-28T09:00:00Z","limit":0}"#,
            r#"{"deadSince":"2026-11-28T09:00:00Z","limit":100001}"#,
            r#"{"deadSince":"2026-11-28T09:00:00Z","dead":true}"#,
            r#"{"deadSince":"2026-11-28T09:00:00Z","since":"x"}"#,
            r#"{"dead":true,"ids":[]}"#,
            r#"{"dead":false}"#,
        ] {
            assert_eq!(window(refused), None, "{refused}");
        }
        assert_eq!(window(r#"{"dead":true}"#), Some(Redrive::All));
    }
}
