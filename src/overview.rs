//! What monitors read: every job's state at a glance (`GET /api/v1/jobs`) and a job's recent runs
//! (`GET /api/v1/jobs/{jobType}/runs`).
//!
//! A job is `overdue` when its last success (a `succeeded` or `partial` run) ended longer ago
//! than its schedule allows, or when it never succeeded: the sign of a scheduler that silently
//! stopped, which is why the overview answers 503 then, for uptime monitors that only read the
//! status code.

use std::time::Duration;

use serde_json::{json, Value};

use crate::config::Config;
use crate::db::Db;
use crate::lock::Redis;
use crate::runner::{JobType, RunError};

pub const DEFAULT_RUNS_LIMIT: u32 = 20;
const MAX_RUNS_LIMIT: u32 = 200;

pub struct Overview {
    pub any_overdue: bool,
    pub jobs: Vec<Value>,
}

pub fn overview(config: &Config) -> Result<Overview, RunError> {
    let db = Db::open(&config.database_url)?;
    let redis = Redis::open(&config.redis_url)?;
    let mut any_overdue = false;
    let mut jobs = Vec::new();
    for job in JobType::ALL {
        let allowed = overdue_after(job, config);
        let (last_run, last_success, success_age) = db.job_overview(job.as_str())?;
        let overdue = is_overdue(success_age, allowed);
        any_overdue |= overdue;
        jobs.push(json!({
            "jobType": job.as_str(),
            "isRunning": redis.is_locked(job.as_str())?,
            "lastRun": last_run,
            "lastSuccess": last_success,
            "overdue": overdue,
            "overdueAfterMinutes": allowed.as_secs() / 60,
        }));
    }
    Ok(Overview { any_overdue, jobs })
}

pub fn recent_runs(config: &Config, job: JobType, limit: u32) -> Result<Vec<Value>, RunError> {
    Ok(Db::open(&config.database_url)?.recent_runs(job.as_str(), limit.clamp(1, MAX_RUNS_LIMIT))?)
}

fn overdue_after(job: JobType, config: &Config) -> Duration {
    match job {
        JobType::HealthCheck => config.health_check_overdue,
        JobType::WebhookRetry => config.webhook_retry_overdue,
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
