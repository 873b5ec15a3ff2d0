//! The life of one job run, whatever started it (HTTP or cron):
//!
//! 1. Reserve a jobId (`<jobType>-<unix ms>`) by inserting a `running` row into `job_runs`; two
//!    runs in the same millisecond take the next free millisecond instead (one statement).
//!    From here on the run has a row, and every way it ends is written there ([`record`]).
//! 2. A paused job (see [`pauses`]) stops here: the row becomes `skipped` ("paused"), unless the
//!    run is forced.
//! 3. Take the Redis lock `job-lock:<jobType>` with that jobId ([`Lock`]). Held by another run:
//!    the row becomes `skipped` (its `"startedAt"` the moment it tried) and the caller gets
//!    [`RunError::Busy`]. Redis failing: the row becomes `failed` and the caller gets a Redis
//!    error, never `Busy`. Taken: `"startedAt"` becomes now, so that a row's interval is the time
//!    the run held the lock.
//! 4. Mark `running` rows older than the lock TTL as failed (their run died unrecorded), then
//!    run the job with a deadline of `job_time_budget_seconds` (HTTP) or
//!    `cron_time_budget_seconds` (cron); after the daily job, trim the audit tables
//!    ([`retention`]) within the same budget.
//! 5. Record the outcome (`succeeded`, `partial` when work remains, or `failed`), then release
//!    the lock if it is still ours.
//!
//! The runner knows the lock and `job_runs` ([`job_runs`]); what a job does is behind
//! [`JobType::run`].

pub mod job_runs;
pub mod overview;
pub mod pauses;
pub mod retention;

pub use crate::jobs::webhook_retry::policy::Rules;
pub use crate::jobs::webhook_retry::{Redrive, Tenant};

use serde_json::{json, Value};

use crate::alerts::{self, Alert};
use crate::config::{Config, ConfigError, Source, SpinVariables};
use crate::context::{JobContext, JobError, JobOutcome};
use crate::db::{Db, DbError};
use crate::edges::Edges;
use crate::jobs::{Job, JobType};
use crate::log::Logger;
use crate::outbound::Allowance;
use crate::redis::{Redis, RedisError};
use crate::time::{self, Deadline, FINISH_GRACE};
use job_runs::RunStatus;
pub use job_runs::Trigger;

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

    /// `database_url` goes through a transaction-mode pooler ([`crate::db::TRANSACTION_POOLER`]).
    pub fn is_behind_a_transaction_pooler(&self) -> bool {
        match self {
            RunError::Db(e) | RunError::Job(JobError::Db(e)) => e.is_behind_a_transaction_pooler(),
            _ => false,
        }
    }
}

pub struct Completed {
    pub job_id: String,
    pub summary: Value,
    /// Set when the job is paused: the run was recorded `skipped` and did nothing.
    pub paused_since: Option<String>,
    /// Set when the job itself found it must not run now (why): recorded `skipped`.
    pub skipped: Option<&'static str>,
}

/// An operator's redrive of the webhook retry's dead letters: how many went back in the queue.
pub fn redrive(edges: &Edges, rules: Rules, which: &Redrive) -> Result<u64, DbError> {
    crate::jobs::webhook_retry::redrive(edges.db()?, rules, which)
}

/// Everything a run reads, loaded by the door before the run starts: the shared settings, the
/// job's own, and, after the daily job, retention's.
pub struct Settings {
    pub config: Config,
    pub job: Job,
    pub retention: Option<retention::Settings>,
}

impl Settings {
    pub fn load(job: JobType) -> Result<Self, ConfigError> {
        Self::from_source(job, &SpinVariables)
    }

    pub fn from_source(job: JobType, src: &impl Source) -> Result<Self, ConfigError> {
        Ok(Self {
            config: Config::from_source(src)?,
            job: Job::from_source(job, src)?,
            retention: job.is_daily().then(|| retention::Settings::from_source(src)).transpose()?,
        })
    }
}

/// Attempts per run to reserve a jobId, each losing only to a run that reserved the same one.
const JOB_ID_ATTEMPTS: u32 = 10;

/// `force`: run even if the job is paused.
pub async fn run_job(
    settings: &Settings,
    trigger: Trigger,
    edges: &Edges,
    force: bool,
) -> Result<Completed, RunError> {
    let (job, config) = (settings.job.job_type(), &settings.config);
    // Tagged with the jobId once there is one, so that every line of a run can be joined to it
    // (and to the request's trace).
    let mut log = Logger::new(job.log_name());
    // A request is cut at the platform's limit (about 30 s hosted); a cron tick is not, so the
    // nightly run can get through a whole estate.
    let deadline = Deadline::after(config.run_budget(trigger.is_scheduled())?);
    let finish = deadline.extended(FINISH_GRACE);
    let result = run_recorded(settings, trigger, edges, deadline, force, &mut log).await;
    match &result {
        Ok(_) => {}
        Err(RunError::Busy { .. }) => log.info("lock held by another run, skipping", json!({})),
        Err(e @ RunError::NoFreeJobId { .. }) => log.info("skipping", json!({ "reason": e.to_string() })),
        Err(other) => {
            let error = other.to_string();
            log.error("run failed", json!({ "error": error, "trigger": trigger.as_str() }));
            // Redis itself may be what failed: then the alert is logged, not sent.
            let redis = edges.redis().ok();
            // Behind a transaction-mode pooler every run of both jobs fails alike: one alert for
            // the database, not one per job.
            let alert = match other.is_behind_a_transaction_pooler() {
                true => Alert::database_pooler(&error),
                false => Alert::run_failed(job.as_str(), &error),
            };
            let allowance = Allowance::new(redis, config.outbound_requests_per_hour);
            let url = config.alert_webhook_url.as_deref();
            alerts::send(url, redis, allowance, vec![alert], finish, &log).await;
        }
    }
    result
}

/// Steps 1 to 5: a run with its row. Each phase answers how the run ended, if it did; the row is
/// written once, in [`record`], whichever phase ended it.
async fn run_recorded(
    settings: &Settings,
    trigger: Trigger,
    edges: &Edges,
    deadline: Deadline,
    force: bool,
    log: &mut Logger,
) -> Result<Completed, RunError> {
    let (job, config) = (settings.job.job_type(), &settings.config);
    let db = edges.db()?;
    let job_id = reserve_job_id(db, job, trigger)?;
    *log = log.with_job_id(&job_id);
    let log = &*log;

    let (ended, lock) = match admit(job, config, edges, &job_id, force) {
        Ok(Admitted::Locked(lock)) => {
            let ended = execute(settings, trigger, db, &lock, deadline, log).await;
            (ended, Some(lock))
        }
        Ok(Admitted::Paused { since }) => {
            log.info("job paused, skipping", json!({ "pausedSince": since }));
            (Ended::Paused { since }, None)
        }
        Ok(Admitted::Busy) => (Ended::Busy, None),
        Err(e) => (Ended::Failed(e), None),
    };
    let result = record(db, &job_id, ended, log);
    if let Some(lock) = lock {
        lock.release(log);
    }
    result
}

/// Whether the run may go on (steps 2 and 3).
enum Admitted<'e> {
    Locked(Lock<'e>),
    Paused { since: String },
    Busy,
}

/// How a run that has its row ended.
enum Ended {
    Ran(JobOutcome),
    Paused { since: String },
    Busy,
    Failed(RunError),
}

fn admit<'e>(
    job: JobType,
    config: &Config,
    edges: &'e Edges,
    job_id: &str,
    force: bool,
) -> Result<Admitted<'e>, RunError> {
    if !force {
        if let Some(since) = pauses::paused_since(edges.db()?, job.as_str())? {
            return Ok(Admitted::Paused { since });
        }
    }
    Ok(match Lock::take(edges.redis()?, config, job, job_id)? {
        Some(lock) => Admitted::Locked(lock),
        None => Admitted::Busy,
    })
}

/// Step 4, holding the lock.
async fn execute(
    settings: &Settings,
    trigger: Trigger,
    db: &Db,
    lock: &Lock<'_>,
    deadline: Deadline,
    log: &Logger,
) -> Ended {
    let (job, config) = (settings.job.job_type(), &settings.config);
    if let Err(e) = job_runs::mark_started(db, &lock.job_id) {
        return Ended::Failed(e.into());
    }
    // Holding the lock, no earlier run of this job can still be recording; one that started more
    // than a lock TTL ago and still says `running` died without a result.
    match job_runs::abandon_stale(db, job.as_str(), config.lock_ttl.as_secs()) {
        Ok(0) => {}
        Ok(n) => log
            .warn("earlier runs marked failed: they ended without recording a result", json!({ "runs": n })),
        Err(e) => log.warn("could not look for abandoned runs", json!({ "error": e.to_string() })),
    }
    log.info("run started", json!({ "trigger": trigger.as_str() }));
    let ctx = JobContext {
        job_id: &lock.job_id,
        config,
        settings: &(),
        db,
        redis: lock.redis,
        deadline,
        finish: deadline.extended(FINISH_GRACE),
        log,
    };
    let mut outcome = match settings.job.run(&ctx).await {
        Ok(outcome) => outcome,
        Err(e) => return Ended::Failed(e.into()),
    };
    if let Some(retention) = &settings.retention {
        match retention::run(&ctx, retention) {
            Ok(purged) => outcome.add("purged", &purged),
            Err(e) => return Ended::Failed(JobError::from(e).into()),
        }
    }
    Ended::Ran(outcome)
}

/// Step 5's record: the row says how the run ended. A failure is recorded as best it can be
/// (when Postgres itself is what failed, the row cannot be written; the log has it).
fn record(db: &Db, job_id: &str, ended: Ended, log: &Logger) -> Result<Completed, RunError> {
    let completed =
        |summary, paused_since| Completed { job_id: job_id.to_owned(), summary, paused_since, skipped: None };
    match ended {
        Ended::Ran(JobOutcome { summary, skipped: Some(why), .. }) => {
            log.info("run skipped", json!({ "reason": why, "summary": summary }));
            job_runs::finish(db, job_id, RunStatus::Skipped, Some(&summary), Some(why))?;
            Ok(Completed { skipped: Some(why), ..completed(summary, None) })
        }
        Ended::Ran(outcome) => {
            let status = if outcome.remaining > 0 { RunStatus::Partial } else { RunStatus::Succeeded };
            log.info("run finished", json!({ "status": status, "summary": outcome.summary }));
            job_runs::finish(db, job_id, status, Some(&outcome.summary), None)?;
            Ok(completed(outcome.summary, None))
        }
        Ended::Paused { since } => {
            job_runs::finish(db, job_id, RunStatus::Skipped, None, Some("paused"))?;
            Ok(completed(Value::Null, Some(since)))
        }
        Ended::Busy => {
            job_runs::finish(db, job_id, RunStatus::Skipped, None, Some("lock held by another run"))?;
            Err(RunError::Busy { job_id: job_id.to_owned() })
        }
        Ended::Failed(e) => {
            if let Err(not_recorded) =
                job_runs::finish(db, job_id, RunStatus::Failed, None, Some(&e.to_string()))
            {
                log.error("could not record the failed run", json!({ "error": not_recorded.to_string() }));
            }
            Err(e)
        }
    }
}

fn reserve_job_id(db: &Db, job: JobType, trigger: Trigger) -> Result<String, RunError> {
    for _ in 0..JOB_ID_ATTEMPTS {
        if let Some(id) = job_runs::reserve(db, job.as_str(), time::unix_millis(), trigger)? {
            return Ok(id);
        }
    }
    Err(RunError::NoFreeJobId { job: job.as_str() })
}

/// The job's Redis lock, held by this run.
struct Lock<'e> {
    redis: &'e Redis,
    job: JobType,
    job_id: String,
}

impl<'e> Lock<'e> {
    /// `None` when another run holds it.
    fn take(redis: &'e Redis, config: &Config, job: JobType, job_id: &str) -> Result<Option<Self>, RunError> {
        let taken = redis.try_lock(job.as_str(), job_id, config.lock_ttl)?;
        Ok(taken.then(|| Self { redis, job, job_id: job_id.to_owned() }))
    }

    fn release(self, log: &Logger) {
        match self.redis.unlock(self.job.as_str(), &self.job_id) {
            Ok(true) => {}
            Ok(false) => log.warn("lock was no longer ours at release (expired or taken over)", json!({})),
            Err(e) => {
                log.error("lock release failed; it expires by its TTL", json!({ "error": e.to_string() }))
            }
        }
    }
}
