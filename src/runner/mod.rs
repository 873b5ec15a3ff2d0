//! The life of one job run, whatever started it (HTTP or cron):
//!
//! 1. Reserve a jobId (`<jobType>-<unix ms>`) by inserting a `running` row into `job_runs`; two
//!    runs in the same millisecond take the next free millisecond instead (one statement).
//!    A paused job (see [`pauses`]) stops here: the row becomes `skipped` ("paused"), unless
//!    the run is forced.
//! 2. Take the Redis lock `job-lock:<jobType>` with that jobId. Held by another run: the row
//!    becomes `skipped` (its `"startedAt"` the moment it tried) and the caller gets
//!    [`RunError::Busy`]. Redis failing: the row becomes `failed` and the caller gets a Redis
//!    error, never `Busy`. Taken: `"startedAt"` becomes now, so that a row's interval is the time
//!    the run held the lock.
//! 3. Mark `running` rows older than the lock TTL as failed (their run died unrecorded), then
//!    run the job with a deadline of `job_time_budget_seconds` (HTTP) or
//!    `cron_time_budget_seconds` (cron).
//! 4. Record the outcome (`succeeded`, `partial` when work remains, or `failed`).
//! 5. Release the lock if it is still ours, on every path after step 2.
//!
//! The runner knows the lock and `job_runs` ([`job_runs`]); what a job does is behind
//! [`JobType::run`].

pub mod job_runs;
pub mod overview;
pub mod pauses;

use serde_json::{json, Value};

use crate::alerts::{self, Alert};
use crate::config::{Config, ConfigError};
use crate::context::{JobContext, JobError};
use crate::db::{Db, DbError};
use crate::jobs::JobType;
use crate::lock::{Redis, RedisError};
use crate::log::Logger;
use crate::time::{self, Deadline, FINISH_GRACE};
use job_runs::RunStatus;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    Http,
    Cron,
}

impl Trigger {
    fn as_str(self) -> &'static str {
        match self {
            Trigger::Http => "http",
            Trigger::Cron => "cron",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("Job already running, skipping")]
    Busy { job_id: String },
    /// The reservation lost every race for a jobId: a burst of starts of one job.
    #[error("Too many runs of {job} started at once; try again")]
    NoFreeJobId { job: &'static str },
    #[error(transparent)]
    Redis(#[from] RedisError),
    #[error(transparent)]
    Db(#[from] DbError),
    #[error(transparent)]
    Job(#[from] JobError),
}

impl RunError {
    /// Another run has (or is starting) this job: nothing went wrong, this one just yields.
    pub fn is_contention(&self) -> bool {
        matches!(self, RunError::Busy { .. } | RunError::NoFreeJobId { .. })
    }
}

pub struct Completed {
    pub job_id: String,
    pub summary: Value,
    /// Set when the job is paused: the run was recorded `skipped` and did nothing.
    pub paused_since: Option<String>,
}

/// Attempts per run to reserve a jobId, each losing only to a run that reserved the same one.
const JOB_ID_ATTEMPTS: u32 = 10;

/// `force`: run even if the job is paused.
pub async fn run_job(
    job: JobType,
    trigger: Trigger,
    config: &Config,
    force: bool,
) -> Result<Completed, RunError> {
    // Tagged with the jobId once there is one, so that every line of a run can be joined to it
    // (and to the request's trace).
    let mut log = Logger::new(job.log_name());
    // A request is cut at the platform's limit (about 30 s hosted); a cron tick is not, so the
    // nightly run can get through a whole estate.
    let deadline = Deadline::after(config.run_budget(trigger == Trigger::Cron)?);
    let finish = deadline.extended(FINISH_GRACE);
    let result = run_locked(job, trigger, config, deadline, force, &mut log).await;
    match &result {
        Ok(_) => {}
        Err(RunError::Busy { .. }) => log.info("lock held by another run, skipping", json!({})),
        Err(e @ RunError::NoFreeJobId { .. }) => log.info("skipping", json!({ "reason": e.to_string() })),
        Err(other) => {
            let error = other.to_string();
            log.error("run failed", json!({ "error": error, "trigger": trigger.as_str() }));
            // A fresh connection: the failure may have been the run's own Redis.
            let redis = Redis::open(&config.redis_url).ok();
            let alert = Alert::run_failed(job.as_str(), &error);
            alerts::send(config.alert_webhook_url.as_deref(), redis.as_ref(), vec![alert], finish, &log)
                .await;
        }
    }
    result
}

async fn run_locked(
    job: JobType,
    trigger: Trigger,
    config: &Config,
    deadline: Deadline,
    force: bool,
    log: &mut Logger,
) -> Result<Completed, RunError> {
    job.check_config(config)?;
    let db = Db::open(&config.database_url)?;
    let job_id = reserve_job_id(&db, job, trigger)?;
    *log = log.with_job_id(&job_id);
    let log = &*log;

    let paused_since = if force { Ok(None) } else { pauses::paused_since(&db, job.as_str()) };
    match paused_since {
        Ok(None) => {}
        Ok(Some(since)) => {
            log.info("job paused, skipping", json!({ "pausedSince": since }));
            job_runs::finish(&db, &job_id, RunStatus::Skipped, None, Some("paused"))?;
            return Ok(Completed { job_id, summary: Value::Null, paused_since: Some(since) });
        }
        Err(e) => {
            record_failure(&db, &job_id, &e.to_string(), log);
            return Err(e.into());
        }
    }

    let redis = match Redis::open(&config.redis_url)
        .and_then(|r| r.try_lock(job.as_str(), &job_id, config.lock_ttl).map(|got| (r, got)))
    {
        Ok((redis, true)) => redis,
        Ok((_, false)) => {
            job_runs::finish(&db, &job_id, RunStatus::Skipped, None, Some("lock held by another run"))?;
            return Err(RunError::Busy { job_id });
        }
        Err(e) => {
            record_failure(&db, &job_id, &e.to_string(), &log);
            return Err(e.into());
        }
    };

    if let Err(e) = job_runs::mark_started(&db, &job_id) {
        let _ = redis.unlock(job.as_str(), &job_id);
        record_failure(&db, &job_id, &e.to_string(), log);
        return Err(e.into());
    }
    // Holding the lock, no earlier run of this job can still be recording; one that started more
    // than a lock TTL ago and still says `running` died without a result.
    match job_runs::abandon_stale(&db, job.as_str(), config.lock_ttl.as_secs()) {
        Ok(0) => {}
        Ok(n) => log
            .warn("earlier runs marked failed: they ended without recording a result", json!({ "runs": n })),
        Err(e) => log.warn("could not look for abandoned runs", json!({ "error": e.to_string() })),
    }
    log.info("run started", json!({ "trigger": trigger.as_str() }));
    let ctx = JobContext {
        job_id: &job_id,
        config,
        db: &db,
        redis: &redis,
        deadline,
        finish: deadline.extended(FINISH_GRACE),
        log: &log,
    };
    let result = job.run(&ctx).await;
    let recorded = match &result {
        Ok(outcome) => {
            let status = if outcome.remaining > 0 { RunStatus::Partial } else { RunStatus::Succeeded };
            log.info("run finished", json!({ "status": status, "summary": outcome.summary }));
            job_runs::finish(&db, &job_id, status, Some(&outcome.summary), None)
        }
        Err(e) => {
            record_failure(&db, &job_id, &e.to_string(), &log);
            Ok(())
        }
    };

    match redis.unlock(job.as_str(), &job_id) {
        Ok(true) => {}
        Ok(false) => log.warn("lock was no longer ours at release (expired or taken over)", json!({})),
        Err(e) => log.error("lock release failed; it expires by its TTL", json!({ "error": e.to_string() })),
    }

    let outcome = result?;
    recorded?;
    Ok(Completed { job_id, summary: outcome.summary, paused_since: None })
}

fn reserve_job_id(db: &Db, job: JobType, trigger: Trigger) -> Result<String, RunError> {
    for _ in 0..JOB_ID_ATTEMPTS {
        if let Some(id) = job_runs::reserve(db, job.as_str(), time::unix_millis(), trigger.as_str())? {
            return Ok(id);
        }
    }
    Err(RunError::NoFreeJobId { job: job.as_str() })
}

/// Best effort: when Postgres itself is what failed, the row cannot be written; the log has it.
fn record_failure(db: &Db, job_id: &str, error: &str, log: &Logger) {
    if let Err(e) = job_runs::finish(db, job_id, RunStatus::Failed, None, Some(error)) {
        log.error("could not record the failed run", json!({ "error": e.to_string() }));
    }
}
