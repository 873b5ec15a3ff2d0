//! `job_pauses`: the jobs an operator paused, one row each while paused. A paused job's runs
//! record `skipped` ("paused") and do nothing, unless forced; the row is in Postgres so that a
//! pause outlives a Redis flush. One organization's webhook deliveries pause the same way
//! (`webhook_tenant_pauses`, the webhook queue's), without pausing the job.

use serde::Deserialize;

use super::RunError;
use crate::db::{str, Db, DbError, DbResult};
use crate::edges::Edges;
use crate::jobs::webhook_retry::queue;
use crate::jobs::JobType;

const PAUSE_JOB: &str = include_str!("sql/pause_job.sql");
const RESUME_JOB: &str = include_str!("sql/resume_job.sql");
const JOB_PAUSED_SINCE: &str = include_str!("sql/job_paused_since.sql");

#[derive(Deserialize)]
struct Paused {
    since: String,
}

/// Pauses the job; answers since when it is paused.
pub fn pause(db: &Db, job_type: &str) -> DbResult<String> {
    let paused: Paused = db.row("pause job", PAUSE_JOB, &[str(job_type)])?;
    Ok(paused.since)
}

/// Resumes the job; says whether it was paused.
pub fn resume(db: &Db, job_type: &str) -> DbResult<bool> {
    Ok(db.execute("resume job", RESUME_JOB, &[str(job_type)])? > 0)
}

/// Since when the job is paused, if it is.
pub fn paused_since(db: &Db, job_type: &str) -> DbResult<Option<String>> {
    let paused: Vec<Paused> = db.rows("read job pause", JOB_PAUSED_SINCE, &[str(job_type)])?;
    Ok(paused.into_iter().next().map(|p| p.since))
}

/// Pauses (`paused`) or resumes `job`, for the doors: since when it is paused, `None` once
/// resumed.
pub fn set(edges: &Edges, job: JobType, paused: bool) -> Result<Option<String>, RunError> {
    let db = edges.db()?;
    Ok(match paused {
        true => Some(pause(db, job.as_str())?),
        false => resume(db, job.as_str()).map(|_| None)?,
    })
}

/// Pauses (`paused`) or resumes one organization's webhook deliveries, for the doors; recorded
/// in `webhook_tenant_actions` with the change. The organization as the log holds it, and since
/// when it is paused (`None` once resumed).
pub fn set_tenant(
    edges: &Edges,
    organization: &str,
    paused: bool,
) -> Result<(String, Option<String>), DbError> {
    let db = edges.db()?;
    Ok(match paused {
        true => {
            let p = queue::pause_tenant(db, organization)?;
            (p.organization_id, Some(p.since))
        }
        false => {
            queue::resume_tenant(db, organization)?;
            (organization.to_owned(), None)
        }
    })
}
