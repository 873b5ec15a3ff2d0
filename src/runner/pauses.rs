//! `job_pauses`: the jobs an operator paused, one row each while paused. A paused job's runs
//! record `skipped` ("paused") and do nothing, unless forced; the row is in Postgres so that a
//! pause outlives a Redis flush.

use spin_sdk::pg4::ParameterValue;

use crate::db::{iso, now_utc, text, Db, DbError, DbResult};

/// Pauses `$1` (a second pause keeps the first one's time) and says since when.
const PAUSE: &str = concat!(
    "WITH paused AS (INSERT INTO job_pauses (\"jobType\", \"pausedAt\") VALUES ($1, ",
    now_utc!(),
    ") ON CONFLICT (\"jobType\") DO NOTHING RETURNING \"pausedAt\") \
     SELECT ",
    iso!("\"pausedAt\""),
    " FROM paused UNION ALL SELECT ",
    iso!("\"pausedAt\""),
    " FROM job_pauses WHERE \"jobType\" = $1"
);

const RESUME: &str = "DELETE FROM job_pauses WHERE \"jobType\" = $1";

/// Since when `$1` is paused; no row when it is not.
const PAUSED_SINCE: &str =
    concat!("SELECT ", iso!("\"pausedAt\""), " FROM job_pauses WHERE \"jobType\" = $1");

/// Pauses the job; answers since when it is paused.
pub fn pause(db: &Db, job_type: &str) -> DbResult<String> {
    const CTX: &str = "pause job";
    let rows = db.query(CTX, PAUSE, &[ParameterValue::Str(job_type.to_owned())])?;
    match rows.rows.first().and_then(|r| text(&r[0])) {
        Some(since) => Ok(since),
        // Paused at the same moment by another request, which this statement could not see yet.
        None => paused_since(db, job_type)?.ok_or_else(|| DbError::decode(CTX, "pausedAt")),
    }
}

/// Resumes the job; says whether it was paused.
pub fn resume(db: &Db, job_type: &str) -> DbResult<bool> {
    Ok(db.execute("resume job", RESUME, &[ParameterValue::Str(job_type.to_owned())])? > 0)
}

/// Since when the job is paused, if it is.
pub fn paused_since(db: &Db, job_type: &str) -> DbResult<Option<String>> {
    let rows = db.query("read job pause", PAUSED_SINCE, &[ParameterValue::Str(job_type.to_owned())])?;
    Ok(rows.rows.first().and_then(|r| text(&r[0])))
}
