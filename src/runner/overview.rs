//! What monitors read: every job's state at a glance (`GET /api/v1/jobs`) and a job's recent runs
//! (`GET /api/v1/jobs/{jobType}/runs`).
//!
//! A job is `overdue` when its last success (a `succeeded` or `partial` run) ended longer ago
//! than its schedule allows, or when it never succeeded: the sign of a scheduler that silently
//! stopped, which is why the overview answers 503 then, for uptime monitors that only read the
//! status code.

use std::time::Duration;

use serde::Serialize;

use super::job_runs::{self, RunRecord};
use super::pauses;
use super::RunError;
use crate::config::{minutes, number, ConfigError, Source, SpinVariables};
use crate::edges::Edges;
use crate::jobs::webhook_retry::policy::Rules;
use crate::jobs::webhook_retry::queue::{self, OldestDue};
use crate::jobs::JobType;

pub const DEFAULT_RUNS_LIMIT: u32 = 20;
pub const RUNS_LIMITS: std::ops::RangeInclusive<u32> = 1..=200;

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct JobState {
    pub job_type: &'static str,
    pub is_running: bool,
    pub last_run: Option<RunRecord>,
    pub last_success: Option<RunRecord>,
    pub overdue: bool,
    pub overdue_after_minutes: u64,
    /// Paused by an operator, and since when. A pause is no excuse for the overdue check: a
    /// pause forgotten past the schedule turns the overview 503 like a stopped scheduler.
    pub paused: bool,
    pub paused_since: Option<String>,
    /// What an outside service holds back, when it does: for the health check, Meta's
    /// cool-down of the app or of a business.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub held: Option<String>,
    /// The webhook retry's oldest due webhook (`null` when none is due): the organization it
    /// belongs to, and how long it has waited.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub oldest_due: Option<Option<OldestDue>>,
}

/// How old each job's last success may get before the overview calls it overdue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    pub health_check_overdue: Duration,
    pub webhook_retry_overdue: Duration,
    /// The queue's rules, by which the oldest due webhook is found.
    pub rules: Rules,
}

impl Settings {
    pub fn load() -> Result<Self, ConfigError> {
        Self::from_source(&SpinVariables)
    }

    pub fn from_source(src: &impl Source) -> Result<Self, ConfigError> {
        Ok(Self {
            health_check_overdue: minutes(number(src, "health_check_overdue_minutes", 26 * 60, 1..=525_600)?),
            webhook_retry_overdue: minutes(number(src, "webhook_retry_overdue_minutes", 30, 1..=525_600)?),
            rules: Rules::from_source(src)?,
        })
    }
}

pub fn states(edges: &Edges, settings: &Settings) -> Result<Vec<JobState>, RunError> {
    let (db, redis) = (edges.db()?, edges.redis()?);
    JobType::ALL
        .into_iter()
        .map(|job| {
            let allowed = overdue_after(job, settings);
            let history = job_runs::history(db, job.as_str())?;
            let paused_since = pauses::paused_since(db, job.as_str())?;
            Ok(JobState {
                job_type: job.as_str(),
                is_running: redis.is_locked(job.as_str())?,
                last_run: history.last_run,
                last_success: history.last_success,
                overdue: is_overdue(history.success_age, allowed),
                overdue_after_minutes: allowed.as_secs() / 60,
                paused: paused_since.is_some(),
                paused_since,
                held: job.held(redis)?,
                oldest_due: match job {
                    JobType::WebhookRetry => Some(queue::oldest_due(db, &settings.rules)?),
                    JobType::HealthCheck => None,
                },
            })
        })
        .collect()
}

pub fn recent_runs(edges: &Edges, job: JobType, limit: u32) -> Result<Vec<RunRecord>, RunError> {
    let limit = limit.clamp(*RUNS_LIMITS.start(), *RUNS_LIMITS.end());
    Ok(job_runs::recent(edges.db()?, job.as_str(), limit)?)
}

fn overdue_after(job: JobType, settings: &Settings) -> Duration {
    match job {
        JobType::HealthCheck => settings.health_check_overdue,
        JobType::WebhookRetry => settings.webhook_retry_overdue,
    }
}

/// `success_age`: seconds since the last success ended; `None` when there never was one.
pub fn is_overdue(success_age: Option<i64>, allowed: Duration) -> bool {
    match success_age {
        Some(age) => age > allowed.as_secs() as i64,
        None => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overdue_rules() {
        let day = Duration::from_secs(26 * 3600);
        assert!(!is_overdue(Some(3600), day));
        assert!(!is_overdue(Some(26 * 3600), day));
        assert!(is_overdue(Some(26 * 3600 + 1), day));
        assert!(is_overdue(None, day), "never succeeded");
    }
}
