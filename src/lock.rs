//! The Redis side of a run: the per-job lock (SPEC section 4) and the alert throttle.
//!
//! Acquire is `SET key jobId NX PX ttl`; release is a compare-and-delete in Lua, so a run whose
//! lock expired and was taken by another run can never delete the newcomer's lock.

use std::time::Duration;

use spin_sdk::redis::{Connection, RedisParameter, RedisResult};

/// Deletes the key only while it still holds our jobId; answers 1 when it did.
const RELEASE_SCRIPT: &str =
    "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) else return 0 end";

#[derive(Debug, thiserror::Error)]
#[error("Redis error: {0}")]
pub struct RedisError(String);

pub struct Redis {
    conn: Connection,
}

fn lock_key(job_type: &str) -> String {
    format!("job-lock:{job_type}")
}

impl Redis {
    pub fn open(url: &str) -> Result<Self, RedisError> {
        Connection::open(url)
            .map(|conn| Self { conn })
            .map_err(|e| RedisError(format!("cannot connect: {e}")))
    }

    fn exec(&self, cmd: &str, args: Vec<RedisParameter>) -> Result<Vec<RedisResult>, RedisError> {
        self.conn.execute(cmd, &args).map_err(|e| RedisError(format!("{cmd} failed: {e}")))
    }

    /// `SET key value NX <unit> <amount>`: true when the key was free and is now ours.
    fn set_nx(&self, key: &str, value: &str, unit: &str, amount: i64) -> Result<bool, RedisError> {
        let reply = self
            .exec("SET", vec![bin(key), bin(value), bin("NX"), bin(unit), RedisParameter::Int64(amount)])?;
        match reply.as_slice() {
            [RedisResult::Status(s)] if s == "OK" => Ok(true),
            [RedisResult::Nil] => Ok(false),
            other => Err(RedisError(format!("unexpected SET reply {other:?}"))),
        }
    }

    /// True when this run now holds the lock.
    pub fn try_lock(&self, job_type: &str, job_id: &str, ttl: Duration) -> Result<bool, RedisError> {
        self.set_nx(&lock_key(job_type), job_id, "PX", ttl.as_millis() as i64)
    }

    /// True when our lock was deleted; false when it had expired or belongs to another run.
    pub fn unlock(&self, job_type: &str, job_id: &str) -> Result<bool, RedisError> {
        let reply = self.exec(
            "EVAL",
            vec![bin(RELEASE_SCRIPT), RedisParameter::Int64(1), bin(&lock_key(job_type)), bin(job_id)],
        )?;
        Ok(matches!(reply.as_slice(), [RedisResult::Int64(1)]))
    }

    /// True when no alert on `subject` went out within `window`: this caller may send one.
    pub fn claim_alert(&self, subject: &str, window: Duration) -> Result<bool, RedisError> {
        self.set_nx(&format!("alert:{subject}"), "1", "EX", window.as_secs() as i64)
    }

    pub fn is_locked(&self, job_type: &str) -> Result<bool, RedisError> {
        let reply = self.exec("EXISTS", vec![bin(&lock_key(job_type))])?;
        match reply.as_slice() {
            [RedisResult::Int64(n)] => Ok(*n > 0),
            other => Err(RedisError(format!("unexpected EXISTS reply {other:?}"))),
        }
    }
}

fn bin(s: &str) -> RedisParameter {
    RedisParameter::Binary(s.as_bytes().to_vec())
}
