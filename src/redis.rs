//! Redis, through Spin's interface: the per-job lock (SPEC section 4) and the alert throttle.
//! Errors never quote the address's password (Spin's errors do).
//!
//! Acquire is `SET key jobId NX PX ttl`; release is a compare-and-delete in Lua, so a run whose
//! lock expired and was taken by another run can never delete the newcomer's lock.

use std::time::Duration;

use spin_sdk::redis::{Connection, RedisParameter, RedisResult};

use crate::urls;

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

fn alert_key(subject: &str) -> String {
    format!("alert:{subject}")
}

impl Redis {
    pub fn open(url: &str) -> Result<Self, RedisError> {
        Connection::open(url)
            .map(|conn| Self { conn })
            .map_err(|e| RedisError(urls::redact(&format!("cannot connect: {e}"))))
    }

    fn exec(&self, cmd: &str, args: Vec<RedisParameter>) -> Result<Vec<RedisResult>, RedisError> {
        self.conn.execute(cmd, &args).map_err(|e| RedisError(urls::redact(&format!("{cmd} failed: {e}"))))
    }

    /// True when this run now holds the lock (`SET key jobId NX PX ttl`).
    pub fn try_lock(&self, job_type: &str, job_id: &str, ttl: Duration) -> Result<bool, RedisError> {
        let args = vec![
            bin(&lock_key(job_type)),
            bin(job_id),
            bin("NX"),
            bin("PX"),
            RedisParameter::Int64(ttl.as_millis() as i64),
        ];
        match self.exec("SET", args)?.as_slice() {
            [RedisResult::Status(s)] if s == "OK" => Ok(true),
            [RedisResult::Nil] => Ok(false),
            other => Err(RedisError(format!("unexpected SET reply {other:?}"))),
        }
    }

    /// True when our lock was deleted; false when it had expired or belongs to another run.
    pub fn unlock(&self, job_type: &str, job_id: &str) -> Result<bool, RedisError> {
        let reply = self.exec(
            "EVAL",
            vec![bin(RELEASE_SCRIPT), RedisParameter::Int64(1), bin(&lock_key(job_type)), bin(job_id)],
        )?;
        Ok(matches!(reply.as_slice(), [RedisResult::Int64(1)]))
    }

    /// True when an alert on `subject` went out within the throttle window.
    pub fn alert_sent_recently(&self, subject: &str) -> Result<bool, RedisError> {
        self.exists(&alert_key(subject))
    }

    /// Starts the throttle window of `subject`, once its alert went out.
    pub fn mark_alert_sent(&self, subject: &str, window: Duration) -> Result<(), RedisError> {
        let args = vec![
            bin(&alert_key(subject)),
            bin("1"),
            bin("EX"),
            RedisParameter::Int64(window.as_secs() as i64),
        ];
        match self.exec("SET", args)?.as_slice() {
            [RedisResult::Status(s)] if s == "OK" => Ok(()),
            other => Err(RedisError(format!("unexpected SET reply {other:?}"))),
        }
    }

    pub fn is_locked(&self, job_type: &str) -> Result<bool, RedisError> {
        self.exists(&lock_key(job_type))
    }

    fn exists(&self, key: &str) -> Result<bool, RedisError> {
        match self.exec("EXISTS", vec![bin(key)])?.as_slice() {
            [RedisResult::Int64(n)] => Ok(*n > 0),
            other => Err(RedisError(format!("unexpected EXISTS reply {other:?}"))),
        }
    }
}

fn bin(s: &str) -> RedisParameter {
    RedisParameter::Binary(s.as_bytes().to_vec())
}
