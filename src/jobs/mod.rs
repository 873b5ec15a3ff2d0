//! The jobs, and the one place that dispatches to them. Everything about a job lives in its
//! folder: its domain logic, its pure rules and its SQL.
//!
//! - [`health_check`]: the WhatsApp token health check (SPEC section 5).
//! - [`webhook_retry`]: the webhook dead-letter queue (SPEC section 6).

pub mod health_check;
pub mod webhook_retry;

use serde::Serialize;

use crate::config::{Config, ConfigError, StatusConfig};
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

    /// Settings that are optional for the app but required by this job.
    pub fn check_config(self, config: &Config) -> Result<(), ConfigError> {
        match self {
            JobType::WebhookRetry if config.webhook_processor_url.is_none() => {
                Err(ConfigError::Missing("webhook_processor_url"))
            }
            _ => Ok(()),
        }
    }

    pub async fn run(self, ctx: &JobContext<'_>) -> Result<JobOutcome, JobError> {
        match self {
            JobType::HealthCheck => health_check::run(ctx).await,
            JobType::WebhookRetry => webhook_retry::run(ctx).await,
        }
    }

    /// What the status route shows: whether a run holds the lock, and the queue's counts for
    /// the webhook retry.
    pub fn status(self, config: &StatusConfig, edges: &Edges) -> Result<Status, JobError> {
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
        let queue = match &config.queue {
            Some(queue) => {
                Some(webhook_retry::queue::counts(edges.db()?, queue.max_attempts, queue.base)?.counts())
            }
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
