//! `job_runs`: one row per run attempt (SPEC section 7), written by the runner and read by the
//! overview and the runs route.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use spin_sdk::pg4::ParameterValue;

use crate::db::{iso, now_utc, str, Db, DbResult};
use crate::urls;

/// A run's status as stored in `job_runs.status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RunStatus {
    Running,
    Succeeded,
    /// Ran, but the time budget left work for the next run.
    Partial,
    Failed,
    /// Found the lock held by another run.
    Skipped,
}

impl RunStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Running => "running",
            RunStatus::Succeeded => "succeeded",
            RunStatus::Partial => "partial",
            RunStatus::Failed => "failed",
            RunStatus::Skipped => "skipped",
        }
    }
}

/// A `job_runs` row as the API shows it (timestamps in ISO 8601, UTC), read through
/// [`record_columns!`].
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunRecord {
    pub job_id: String,
    pub job_type: String,
    pub trigger: String,
    pub status: String,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    pub summary: Option<Value>,
    pub error: Option<String>,
}

/// The columns of a [`RunRecord`], timestamps rendered as ISO 8601.
macro_rules! record_columns {
    () => {
        concat!(
            "id AS \"jobId\", \"jobType\", trigger, status, ",
            iso!("\"startedAt\""),
            " AS \"startedAt\", ",
            iso!("\"finishedAt\""),
            " AS \"finishedAt\", summary, error"
        )
    };
}

/// A run that did its work (`partial` ran out of budget, but ran).
macro_rules! success {
    () => {
        "status IN ('succeeded', 'partial')"
    };
}

/// Reserves the jobId `<$2>-<ms>` with the first millisecond from `$1` on (up to a second
/// ahead) that no run of the job has taken; `$3` trigger. Two runs racing for the same id: the
/// primary key refuses the second, which returns no row and tries again.
const RESERVE: &str = concat!(
    "INSERT INTO job_runs (id, \"jobType\", trigger, status, \"startedAt\") \
     SELECT c.id, $2, $3, 'running', ",
    now_utc!(),
    " FROM (SELECT $2 || '-' || ($1::bigint + g) AS id, g FROM generate_series(0, 999) g) c \
     WHERE NOT EXISTS (SELECT 1 FROM job_runs j WHERE j.id = c.id) ORDER BY c.g LIMIT 1 \
     ON CONFLICT (id) DO NOTHING RETURNING id"
);

const FINISH: &str = concat!(
    "UPDATE job_runs SET status = $2, \"finishedAt\" = ",
    now_utc!(),
    ", summary = $3, error = $4 WHERE id = $1"
);

/// The run took the lock: its interval starts now, not when its id was reserved, so that the
/// rows of runs that never overlapped never look as if they did.
const MARK_STARTED: &str = concat!("UPDATE job_runs SET \"startedAt\" = ", now_utc!(), " WHERE id = $1");

/// `running` rows of `$1` that started more than `$2` seconds ago.
const ABANDON_STALE: &str = concat!(
    "UPDATE job_runs SET status = 'failed', \"finishedAt\" = ",
    now_utc!(),
    ", error = 'abandoned: the run ended without recording a result' \
     WHERE \"jobType\" = $1 AND status = 'running' AND \"startedAt\" < ",
    now_utc!(),
    " - make_interval(secs => $2::float8)"
);

/// A job's last run (kind `last`) and its last success (kind `success`), each row with the
/// seconds since the last success ended.
const HISTORY: &str = concat!(
    "SELECT kind, ",
    record_columns!(),
    ", (SELECT EXTRACT(EPOCH FROM ",
    now_utc!(),
    " - max(\"finishedAt\"))::bigint FROM job_runs WHERE \"jobType\" = $1 AND ",
    success!(),
    ") AS \"successAge\" FROM ( \
        (SELECT 'last' AS kind, * FROM job_runs WHERE \"jobType\" = $1 ORDER BY \"startedAt\" DESC LIMIT 1) \
        UNION ALL \
        (SELECT 'success' AS kind, * FROM job_runs WHERE \"jobType\" = $1 AND ",
    success!(),
    " ORDER BY \"startedAt\" DESC LIMIT 1)) runs"
);

/// Runs of each job over the last 24 hours, by status.
const RUNS_24H: &str = concat!(
    "SELECT \"jobType\", status, count(*) AS count FROM job_runs WHERE \"startedAt\" > ",
    now_utc!(),
    " - interval '24 hours' GROUP BY 1, 2 ORDER BY 1, 2"
);

/// When `$1` last succeeded (whole unix seconds, rounded down: a success at 12.6 s has not
/// happened at 13 s) and how long its last finished run took (ms).
const LAST_TIMES: &str = concat!(
    "SELECT floor(EXTRACT(EPOCH FROM max(\"finishedAt\") FILTER (WHERE ",
    success!(),
    ")))::bigint AS \"lastSuccess\", \
        (SELECT (EXTRACT(EPOCH FROM \"finishedAt\" - \"startedAt\") * 1000)::bigint FROM job_runs \
         WHERE \"jobType\" = $1 AND \"finishedAt\" IS NOT NULL AND status <> 'skipped' \
         ORDER BY \"startedAt\" DESC LIMIT 1) AS \"lastDurationMs\" \
     FROM job_runs WHERE \"jobType\" = $1"
);

/// The latest `$2` runs of `$1`, newest first.
const RECENT: &str = concat!(
    "SELECT ",
    record_columns!(),
    " FROM job_runs WHERE \"jobType\" = $1 ORDER BY \"startedAt\" DESC, id DESC LIMIT $2"
);

/// Inserts a `running` row under the first free jobId from `millis` on; `None` when a
/// concurrent run took the one this statement chose.
pub fn reserve(db: &Db, job_type: &str, millis: u64, trigger: &str) -> DbResult<Option<String>> {
    const CTX: &str = "job_runs insert";
    let params = [ParameterValue::Int64(millis as i64), str(job_type), str(trigger)];
    #[derive(Deserialize)]
    struct Reserved {
        id: String,
    }
    let reserved: Vec<Reserved> = db.rows(CTX, RESERVE, &params)?;
    Ok(reserved.into_iter().next().map(|r| r.id))
}

pub fn mark_started(db: &Db, id: &str) -> DbResult<()> {
    db.execute("job_runs start", MARK_STARTED, &[str(id)])?;
    Ok(())
}

pub fn finish(
    db: &Db,
    id: &str,
    status: RunStatus,
    summary: Option<&Value>,
    error: Option<&str>,
) -> DbResult<()> {
    let summary = summary.map(|s| ParameterValue::Jsonb(s.to_string().into_bytes()));
    // The error quotes what failed, and Spin's errors can quote a password.
    let error = error.map(|e| str(&urls::redact(e)));
    db.execute("job_runs update", FINISH, &[str(id), str(status.as_str()), summary.into(), error.into()])?;
    Ok(())
}

/// Marks `running` rows of `job_type` that started more than `older_than_secs` ago as failed:
/// their run died without recording a result (e.g. its Postgres went away).
pub fn abandon_stale(db: &Db, job_type: &str, older_than_secs: u64) -> DbResult<u64> {
    db.execute(
        "abandon stale runs",
        ABANDON_STALE,
        &[str(job_type), ParameterValue::Floating64(older_than_secs as f64)],
    )
}

/// What the overview knows of one job from its rows.
pub struct History {
    pub last_run: Option<RunRecord>,
    pub last_success: Option<RunRecord>,
    /// Seconds since the last success ended; `None` when there never was one.
    pub success_age: Option<i64>,
}

pub fn history(db: &Db, job_type: &str) -> DbResult<History> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Row {
        kind: String,
        #[serde(flatten)]
        record: RunRecord,
        success_age: Option<i64>,
    }
    let rows: Vec<Row> = db.rows("job overview", HISTORY, &[str(job_type)])?;
    let mut history = History { last_run: None, last_success: None, success_age: None };
    for row in rows {
        history.success_age = row.success_age;
        match row.kind.as_str() {
            "last" => history.last_run = Some(row.record),
            _ => history.last_success = Some(row.record),
        }
    }
    Ok(history)
}

pub fn recent(db: &Db, job_type: &str, limit: u32) -> DbResult<Vec<RunRecord>> {
    db.rows("recent runs", RECENT, &[str(job_type), ParameterValue::Int64(i64::from(limit))])
}

/// `(job, status, runs)` over the last 24 hours.
pub fn runs_24h(db: &Db) -> DbResult<Vec<(String, String, u64)>> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Row {
        job_type: String,
        status: String,
        count: u64,
    }
    let rows: Vec<Row> = db.rows("runs in 24 hours", RUNS_24H, &[])?;
    Ok(rows.into_iter().map(|r| (r.job_type, r.status, r.count)).collect())
}

/// The job's last success (unix seconds) and its last finished run's duration (ms).
pub fn last_times(db: &Db, job_type: &str) -> DbResult<(Option<i64>, Option<i64>)> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Row {
        last_success: Option<i64>,
        last_duration_ms: Option<i64>,
    }
    let row: Row = db.row("last run times", LAST_TIMES, &[str(job_type)])?;
    Ok((row.last_success, row.last_duration_ms))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_names_are_the_serialised_names() {
        use RunStatus::*;
        for s in [Running, Succeeded, Partial, Failed, Skipped] {
            assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
        }
    }
}
