//! `job_runs`: one row per run attempt (SPEC section 7), written by the runner and read by the
//! overview, the runs route and the metrics. The statements are in `sql/`.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use spin_sdk::pg4::ParameterValue;

use crate::db::{str, Db, DbResult};
use crate::urls;

const RESERVE_JOB_ID: &str = include_str!("sql/reserve_job_id.sql");
const MARK_RUN_STARTED: &str = include_str!("sql/mark_run_started.sql");
const FINISH_RUN: &str = include_str!("sql/finish_run.sql");
const ABANDON_STALE_RUNS: &str = include_str!("sql/abandon_stale_runs.sql");
const JOB_HISTORY: &str = include_str!("sql/job_history.sql");
const RECENT_RUNS: &str = include_str!("sql/recent_runs.sql");
const RUNS_IN_24_HOURS: &str = include_str!("sql/runs_in_24_hours.sql");
const LAST_RUN_TIMES: &str = include_str!("sql/last_run_times.sql");

/// A run's status as stored in `job_runs.status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunStatus {
    Running,
    Succeeded,
    /// Ran, but the time budget left work for the next run.
    Partial,
    Failed,
    /// Found the lock held by another run, or the job paused.
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

/// What started a run, as stored in `job_runs.trigger`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Trigger {
    Http,
    Cron,
    /// Spin's command trigger (`wasi:cli/run`): a Kubernetes CronJob, or `scripts/run-job.sh`.
    Command,
}

impl Trigger {
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Http => "http",
            Trigger::Cron => "cron",
            Trigger::Command => "command",
        }
    }

    /// Started by a schedule (or an operator's shell) rather than a request, so that no
    /// request limit cuts it: it gets `cron_time_budget_seconds`.
    pub fn is_scheduled(self) -> bool {
        self != Trigger::Http
    }
}

/// A `job_runs` row as the API shows it (timestamps in ISO 8601, UTC).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunRecord {
    pub job_id: String,
    pub job_type: String,
    pub trigger: Trigger,
    pub status: RunStatus,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    pub summary: Option<Value>,
    pub error: Option<String>,
}

/// Inserts a `running` row under the first free jobId from `millis` on; `None` when a
/// concurrent run took the one this statement chose.
pub fn reserve(db: &Db, job_type: &str, millis: u64, trigger: Trigger) -> DbResult<Option<String>> {
    let params = [ParameterValue::Int64(millis as i64), str(job_type), str(trigger.as_str())];
    #[derive(Deserialize)]
    struct Reserved {
        id: String,
    }
    let reserved: Vec<Reserved> = db.rows("job_runs insert", RESERVE_JOB_ID, &params)?;
    Ok(reserved.into_iter().next().map(|r| r.id))
}

pub fn mark_started(db: &Db, id: &str) -> DbResult<()> {
    db.execute("job_runs start", MARK_RUN_STARTED, &[str(id)])?;
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
    db.execute(
        "job_runs update",
        FINISH_RUN,
        &[str(id), str(status.as_str()), summary.into(), error.into()],
    )?;
    Ok(())
}

/// Marks `running` rows of `job_type` that started more than `older_than_secs` ago as failed:
/// their run died without recording a result (e.g. its Postgres went away).
pub fn abandon_stale(db: &Db, job_type: &str, older_than_secs: u64) -> DbResult<u64> {
    db.execute(
        "abandon stale runs",
        ABANDON_STALE_RUNS,
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
    #[serde(rename_all = "lowercase")]
    enum Kind {
        Last,
        Success,
    }
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Row {
        kind: Kind,
        #[serde(flatten)]
        record: RunRecord,
        success_age: Option<i64>,
    }
    let rows: Vec<Row> = db.rows("job overview", JOB_HISTORY, &[str(job_type)])?;
    let mut history = History { last_run: None, last_success: None, success_age: None };
    for row in rows {
        history.success_age = row.success_age;
        match row.kind {
            Kind::Last => history.last_run = Some(row.record),
            Kind::Success => history.last_success = Some(row.record),
        }
    }
    Ok(history)
}

pub fn recent(db: &Db, job_type: &str, limit: u32) -> DbResult<Vec<RunRecord>> {
    db.rows_in_order("recent runs", RECENT_RUNS, &[str(job_type), ParameterValue::Int64(i64::from(limit))])
}

/// How many runs of a job ended (or stand) in one status.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunCount {
    pub job_type: String,
    pub status: RunStatus,
    pub count: u64,
}

/// Runs started over the last 24 hours, by job and status.
pub fn runs_24h(db: &Db) -> DbResult<Vec<RunCount>> {
    db.rows_in_order("runs in 24 hours", RUNS_IN_24_HOURS, &[])
}

/// When a job last succeeded, and how long its last finished run took.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LastTimes {
    /// Unix seconds.
    pub last_success: Option<i64>,
    pub last_duration_ms: Option<i64>,
}

pub fn last_times(db: &Db, job_type: &str) -> DbResult<LastTimes> {
    db.row("last run times", LAST_RUN_TIMES, &[str(job_type)])
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
        for t in [Trigger::Http, Trigger::Cron, Trigger::Command] {
            assert_eq!(serde_json::to_value(t).unwrap(), t.as_str());
        }
    }
}
