//! The life of one job run, whatever started it (HTTP or cron):
//!
//! 1. Reserve a jobId (`<jobType>-<unix ms>`) by inserting a `running` row into `job_runs`; the
//!    primary key makes two runs in the same millisecond take the next millisecond instead.
//! 2. Take the Redis lock `job-lock:<jobType>` with that jobId. Held by another run: the row
//!    becomes `skipped` and the caller gets [`RunError::Busy`]. Redis failing: the row becomes
//!    `failed` and the caller gets a Redis error, never `Busy`.
//! 3. Mark `running` rows older than the lock TTL as failed (their run died unrecorded), then
//!    run the job with a deadline of `job_time_budget_seconds`.
//! 4. Record the outcome (`succeeded`, `partial` when work remains, or `failed`).
//! 5. Release the lock if it is still ours, on every path after step 2.

use serde::Serialize;
use serde_json::{json, Map, Value};

use crate::alerts::{self, Alert};
use crate::config::{Config, ConfigError};
use crate::db::{Db, DbError};
use crate::lock::{Redis, RedisError};
use crate::log::Logger;
use crate::time::{self, Deadline};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobType {
    HealthCheck,
    WebhookRetry,
}

impl JobType {
    pub const ALL: [JobType; 2] = [JobType::HealthCheck, JobType::WebhookRetry];

    pub fn as_str(self) -> &'static str {
        match self {
            JobType::HealthCheck => "whatsapp-health-check",
            JobType::WebhookRetry => "webhook-retry",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|j| j.as_str() == s)
    }

    /// The tag of the job's log lines.
    pub fn log_name(self) -> &'static str {
        match self {
            JobType::HealthCheck => "HealthCheckJob",
            JobType::WebhookRetry => "WebhookRetryJob",
        }
    }

    pub fn done_message(self) -> &'static str {
        match self {
            JobType::HealthCheck => "WhatsApp health check completed",
            JobType::WebhookRetry => "Webhook retry completed",
        }
    }

    /// Settings that are optional for the app but required by this job.
    fn check_config(self, config: &Config) -> Result<(), ConfigError> {
        match self {
            JobType::WebhookRetry if config.webhook_processor_url.is_none() => {
                Err(ConfigError::Missing("webhook_processor_url"))
            }
            _ => Ok(()),
        }
    }

    async fn run(self, ctx: &JobContext<'_>) -> Result<JobOutcome, JobError> {
        match self {
            JobType::HealthCheck => crate::health_check::run(ctx).await,
            JobType::WebhookRetry => crate::webhook_retry::run(ctx).await,
        }
    }
}

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

/// What a job gets to work with.
pub struct JobContext<'a> {
    pub job_id: &'a str,
    pub config: &'a Config,
    pub db: &'a Db,
    pub redis: &'a Redis,
    pub deadline: Deadline,
    pub log: &'a Logger,
}

/// A job's counts, and how much of its work the budget left undone.
pub struct JobOutcome {
    pub summary: Value,
    pub remaining: u64,
}

impl JobOutcome {
    pub fn new(summary: &impl Serialize, remaining: u64) -> Self {
        Self { summary: serde_json::to_value(summary).unwrap_or(Value::Null), remaining }
    }
}

/// Failures inside a job body.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error(transparent)]
    Redis(#[from] RedisError),
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("Job already running, skipping")]
    Busy { job_id: String },
    #[error(transparent)]
    Redis(#[from] RedisError),
    #[error(transparent)]
    Db(#[from] DbError),
    #[error(transparent)]
    Job(#[from] JobError),
}

pub struct Completed {
    pub job_id: String,
    pub summary: Value,
}

/// Attempts per run to find a free jobId millisecond.
const JOB_ID_ATTEMPTS: u64 = 20;

pub async fn run_job(job: JobType, trigger: Trigger, config: &Config) -> Result<Completed, RunError> {
    let log = Logger::new(job.log_name());
    let result = run_locked(job, trigger, config, &log).await;
    if let Err(e) = &result {
        match e {
            RunError::Busy { job_id } => {
                log.info("lock held by another run, skipping", json!({ "jobId": job_id }))
            }
            other => {
                let error = other.to_string();
                log.error("run failed", json!({ "error": error, "trigger": trigger.as_str() }));
                // A fresh connection: the failure may have been the run's own Redis.
                let redis = Redis::open(&config.redis_url).ok();
                let alert = Alert::run_failed(job.as_str(), &error);
                alerts::send(config.alert_webhook_url.as_deref(), redis.as_ref(), vec![alert], &log).await;
            }
        }
    }
    result
}

async fn run_locked(
    job: JobType,
    trigger: Trigger,
    config: &Config,
    log: &Logger,
) -> Result<Completed, RunError> {
    job.check_config(config)?;
    let db = Db::open(&config.database_url)?;
    let job_id = reserve_job_id(&db, job, trigger)?;
    let log = log.with_job_id(&job_id);

    let redis = match Redis::open(&config.redis_url)
        .and_then(|r| r.try_lock(job.as_str(), &job_id, config.lock_ttl).map(|got| (r, got)))
    {
        Ok((redis, true)) => redis,
        Ok((_, false)) => {
            db.finish_job_run(&job_id, "skipped", None, Some("lock held by another run"))?;
            return Err(RunError::Busy { job_id });
        }
        Err(e) => {
            record_failure(&db, &job_id, &e.to_string(), &log);
            return Err(e.into());
        }
    };

    // Holding the lock, no earlier run of this job can still be recording; one that started more
    // than a lock TTL ago and still says `running` died without a result.
    match db.abandon_stale_runs(job.as_str(), config.lock_ttl.as_secs()) {
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
        deadline: Deadline::after(config.job_time_budget),
        log: &log,
    };
    let result = job.run(&ctx).await;
    let recorded = match &result {
        Ok(outcome) => {
            let status = if outcome.remaining > 0 { "partial" } else { "succeeded" };
            log.info("run finished", json!({ "status": status, "summary": outcome.summary }));
            db.finish_job_run(&job_id, status, Some(&outcome.summary), None)
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
    Ok(Completed { job_id, summary: outcome.summary })
}

fn reserve_job_id(db: &Db, job: JobType, trigger: Trigger) -> Result<String, RunError> {
    let start = time::unix_millis();
    for ms in start..start + JOB_ID_ATTEMPTS {
        let id = format!("{}-{ms}", job.as_str());
        if db.reserve_job_run(&id, job.as_str(), trigger.as_str())? {
            return Ok(id);
        }
    }
    // Twenty runs of one job started in the same twenty milliseconds: let the next try win.
    Err(RunError::Busy { job_id: format!("{}-{start}", job.as_str()) })
}

/// Best effort: when Postgres itself is what failed, the row cannot be written; the log has it.
fn record_failure(db: &Db, job_id: &str, error: &str, log: &Logger) {
    if let Err(e) = db.finish_job_run(job_id, "failed", None, Some(error)) {
        log.error("could not record the failed run", json!({ "error": e.to_string() }));
    }
}

/// The status route's fields: whether a run holds the lock, and for the webhook retry the
/// queue's counts.
pub fn status(job: JobType, config: &Config) -> Result<Map<String, Value>, RunError> {
    let mut fields = Map::new();
    fields.insert("isRunning".into(), json!(Redis::open(&config.redis_url)?.is_locked(job.as_str())?));
    fields.insert("jobType".into(), json!(job.as_str()));
    if job == JobType::WebhookRetry {
        let (pending, dead) =
            Db::open(&config.database_url)?.webhook_queue_counts(&crate::webhook_retry::rules(config))?;
        fields.insert("pendingWebhooks".into(), json!(pending));
        fields.insert("deadWebhooks".into(), json!(dead));
    }
    Ok(fields)
}
