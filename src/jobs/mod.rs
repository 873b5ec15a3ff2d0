//! The jobs, and the one place that dispatches to them. Everything about a job lives in its
//! folder: its domain logic, its pure rules and its SQL.
//!
//! - [`health_check`]: the WhatsApp token health check (SPEC section 5).
//! - [`webhook_retry`]: the webhook dead-letter queue (SPEC section 6).

pub mod health_check;
pub mod webhook_retry;

use serde::Serialize;

use crate::config::{self, ConfigError, Source, SpinVariables};
use crate::context::{JobContext, JobError, JobOutcome};
use crate::edges::Edges;
use crate::redis::{self, Redis};
use health_check::meta_limits::MetaLimits;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobType {
    HealthCheck,
    WebhookRetry,
}

impl JobType {
    pub const ALL: [JobType; 2] = [JobType::HealthCheck, JobType::WebhookRetry];

    /// The name in routes, lock keys and `job_runs."jobType"`.
    pub fn as_str(self) -> &'static str {
        match self {
            JobType::HealthCheck => "whatsapp-health-check",
            JobType::WebhookRetry => "webhook-retry",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|j| j.as_str() == s)
    }

    /// The job the component variable `job` names: the cron and command doors run one job each.
    pub fn named_by_variable() -> anyhow::Result<Self> {
        use anyhow::Context;
        let name = spin_sdk::variables::get("job").context("reading the variable job")?;
        let names = Self::ALL.map(Self::as_str).join(" or ");
        Self::parse(name.trim())
            .with_context(|| format!("the variable job names no job: {name:?} (set it to {names})"))
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

    /// The job that runs once a day, after which the runner trims the audit tables.
    pub fn is_daily(self) -> bool {
        self == JobType::HealthCheck
    }

    /// What the status route shows: whether a run holds the lock, and the queue's counts for
    /// the webhook retry.
    pub fn status(self, settings: &StatusSettings, edges: &Edges) -> Result<Status, JobError> {
        let redis = edges.redis()?;
        // The health check's lock and what it knows of Meta's limits in one round trip: the
        // status route is the one monitors poll.
        let (is_running, meta) = match self {
            JobType::HealthCheck => {
                let [usage, until] = health_check::meta_limits::KEYS;
                let values = redis.values(&[&redis::lock_key(self.as_str()), usage, until])?;
                let meta = MetaLimits::from_values(values[1].as_deref(), values[2].as_deref());
                (values[0].is_some(), Some(meta))
            }
            JobType::WebhookRetry => (redis.is_locked(self.as_str())?, None),
        };
        let queue = match &settings.queue {
            Some(rules) => Some(webhook_retry::queue::counts(edges.db()?, rules)?.counts()),
            None => None,
        };
        Ok(Status { is_running, job_type: self.as_str(), queue, meta })
    }

    /// What an outside service holds back of this job, if anything (the overview's `held`).
    pub fn held(self, redis: &Redis) -> Result<Option<String>, redis::RedisError> {
        match self {
            JobType::HealthCheck => health_check::meta_limits::hold_summary(redis),
            JobType::WebhookRetry => Ok(None),
        }
    }

    /// Whether the status route shows this job's queue.
    pub fn has_queue(self) -> bool {
        self == JobType::WebhookRetry
    }
}

/// A job with its own settings, as a door loads it before the run: a setting that is wrong
/// stops the run before it touches any data.
pub enum Job {
    HealthCheck(health_check::Settings),
    WebhookRetry(webhook_retry::Settings),
}

impl Job {
    pub fn from_source(job: JobType, src: &impl Source) -> Result<Self, ConfigError> {
        Ok(match job {
            JobType::HealthCheck => Job::HealthCheck(health_check::Settings::from_source(src)?),
            JobType::WebhookRetry => Job::WebhookRetry(webhook_retry::Settings::from_source(src)?),
        })
    }

    pub fn job_type(&self) -> JobType {
        match self {
            Job::HealthCheck(_) => JobType::HealthCheck,
            Job::WebhookRetry(_) => JobType::WebhookRetry,
        }
    }

    pub async fn run(&self, ctx: &JobContext<'_>) -> Result<JobOutcome, JobError> {
        match self {
            Job::HealthCheck(settings) => health_check::run(&ctx.with(settings)).await,
            Job::WebhookRetry(settings) => webhook_retry::run(&ctx.with(settings)).await,
        }
    }
}

/// What a job's status read needs, and no more: the status route is the one monitors poll, and
/// each variable read is a call into the host.
pub struct StatusSettings {
    pub redis_url: String,
    /// For the webhook retry's queue counts: where, and by which rules.
    pub database_url: Option<String>,
    pub queue: Option<webhook_retry::policy::Rules>,
}

impl StatusSettings {
    pub fn load(job: JobType) -> Result<Self, ConfigError> {
        Self::from_source(job, &SpinVariables)
    }

    pub fn from_source(job: JobType, src: &impl Source) -> Result<Self, ConfigError> {
        let (database_url, queue) = match job.has_queue() {
            true => (Some(config::database_url(src)?), Some(webhook_retry::policy::Rules::from_source(src)?)),
            false => (None, None),
        };
        Ok(Self { redis_url: config::redis_url(src)?, database_url, queue })
    }
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Status {
    pub is_running: bool,
    pub job_type: &'static str,
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub queue: Option<webhook_retry::queue::Counts>,
    /// The health check's: what the app has learnt of Meta's limits.
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub meta: Option<MetaLimits>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::testing::Recording;

    #[test]
    fn a_status_read_reads_only_what_it_shows() {
        let src = Recording::new();
        let health = StatusSettings::from_source(JobType::HealthCheck, &src).unwrap();
        assert_eq!((health.database_url, health.queue), (None, None));
        assert_eq!(src.take(), ["redis_url"]);

        let retry = StatusSettings::from_source(JobType::WebhookRetry, &src).unwrap();
        assert_eq!(retry.database_url.as_deref(), Some("postgres://u:p@localhost:5432/db"));
        assert_eq!(retry.queue.map(|r| r.max_attempts), Some(3));
        assert_eq!(
            src.take(),
            [
                "database_url",
                "webhook_retry_max_attempts",
                "webhook_retry_base_seconds",
                "webhook_retry_max_age_hours",
                "redis_url"
            ]
        );
    }

    #[test]
    fn each_job_reads_its_own_settings() {
        let src = Recording::new();
        Job::from_source(JobType::HealthCheck, &src).unwrap();
        let health = src.take();
        Job::from_source(JobType::WebhookRetry, &src).unwrap();
        let retry = src.take();
        assert!(
            health.contains(&"encryption_keys") && !health.contains(&"webhook_processor_url"),
            "{health:?}"
        );
        assert!(retry.contains(&"webhook_processor_url") && !retry.contains(&"encryption_keys"), "{retry:?}");
        for shared in ["database_url", "redis_url", "cron_secret", "meta_webhook_verify_token"] {
            assert!(!health.contains(&shared) && !retry.contains(&shared), "{shared}");
        }
    }
}
