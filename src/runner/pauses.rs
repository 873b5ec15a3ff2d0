//! `job_pauses`: the jobs an operator paused, one row each while paused. A paused job's runs
//! record `skipped` ("paused") and do nothing, unless forced; the row is in Postgres so that a
//! pause outlives a Redis flush.

use serde::Deserialize;
use spin_sdk::pg4::ParameterValue;

use crate::db::{iso, now_utc, Db, DbResult};

/// Pauses `$1` and says since when; a second pause keeps the first one's time (the no-op update
/// is there so that the row comes back whether it was inserted or already there).
const PAUSE: &str = concat!(
    "INSERT INTO job_pauses (\"jobType\", \"pausedAt\") VALUES ($1, ",
    now_utc!(),
    ") ON CONFLICT (\"jobType\") DO UPDATE SET \"pausedAt\" = job_pauses.\"pausedAt\" RETURNING ",
    iso!("\"pausedAt\""),
    " AS since"
);

const RESUME: &str = "DELETE FROM job_pauses WHERE \"jobType\" = $1";

/// Since when `$1` is paused; no row when it is not.
const PAUSED_SINCE: &str =
    concat!("SELECT ", iso!("\"pausedAt\""), " AS since FROM job_pauses WHERE \"jobType\" = $1");

#[derive(Deserialize)]
struct Paused {
    since: String,
}

/// Pauses the job; answers since when it is paused.
pub fn pause(db: &Db, job_type: &str) -> DbResult<String> {
    let paused: Paused = db.row("pause job", PAUSE, &[ParameterValue::Str(job_type.to_owned())])?;
    Ok(paused.since)
}

/// Resumes the job; says whether it was paused.
pub fn resume(db: &Db, job_type: &str) -> DbResult<bool> {
    Ok(db.execute("resume job", RESUME, &[ParameterValue::Str(job_type.to_owned())])? > 0)
}

/// Since when the job is paused, if it is.
pub fn paused_since(db: &Db, job_type: &str) -> DbResult<Option<String>> {
    let paused: Vec<Paused> =
        db.rows("read job pause", PAUSED_SINCE, &[ParameterValue::Str(job_type.to_owned())])?;
    Ok(paused.into_iter().next().map(|p| p.since))
}
