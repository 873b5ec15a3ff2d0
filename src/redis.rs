//! Redis, through Spin's interface: the per-job lock (SPEC section 4), the alert throttle, and
//! what the app has learnt of Meta's limits (the Graph API cool-downs and the latest usage
//! figures), so that every replica and every later run knows it.
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

pub fn lock_key(job_type: &str) -> String {
    format!("job-lock:{job_type}")
}

/// Meta throttled the app: no Graph call until this key expires (its value: the end, unix ms).
pub const APP_COOL_DOWN_KEY: &str = "graph-cooldown:app";
/// Throttled businesses, each scored with the end of its cool-down (unix ms).
pub const BUSINESS_COOL_DOWNS_KEY: &str = "graph-cooldown:businesses";
/// The last tenant the webhook retry's claims visited: the next run's round continues after it.
pub const WEBHOOK_ROUND_KEY: &str = "webhook-retry:round";
/// A round a day old is as good as a new one.
const WEBHOOK_ROUND_TTL_SECONDS: i64 = 86_400;
/// The latest usage figures Meta sent, as JSON.
pub const GRAPH_USAGE_KEY: &str = "graph-usage";
/// Figures older than a day say nothing about Meta's rolling hour.
const GRAPH_USAGE_TTL_SECONDS: i64 = 86_400;

/// The cool-downs in force.
#[derive(Debug, Default)]
pub struct CoolDowns {
    /// The end of the app-wide one, unix ms.
    pub app_until: Option<u64>,
    pub businesses: Vec<String>,
}

/// Counts one request against the hour's allowance, unless that would exceed it; answers 1 when
/// counted. The key outlives its hour a little, so that clocks a little apart agree.
const TAKE_OUTBOUND_SCRIPT: &str = "local n = redis.call('INCR', KEYS[1]) \
    if n == 1 then redis.call('EXPIRE', KEYS[1], 7200) end \
    if n > tonumber(ARGV[1]) then redis.call('DECR', KEYS[1]) return 0 end return 1";

/// The outbound requests of the clock hour that contains `unix_secs`.
pub fn outbound_key(unix_secs: i64) -> String {
    format!("outbound-requests:{}", unix_secs / 3600)
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

    /// Starts the throttle window of `subject` (`SET NX EX`): true when this caller may send the
    /// alert, false when one went out (or is going out) within the window. One command, so that
    /// runs failing at the same moment on any replica send one alert between them.
    pub fn claim_alert(&self, subject: &str, window: Duration) -> Result<bool, RedisError> {
        let args = vec![
            bin(&alert_key(subject)),
            bin("1"),
            bin("NX"),
            bin("EX"),
            RedisParameter::Int64(window.as_secs() as i64),
        ];
        match self.exec("SET", args)?.as_slice() {
            [RedisResult::Status(s)] if s == "OK" => Ok(true),
            [RedisResult::Nil] => Ok(false),
            other => Err(RedisError(format!("unexpected SET reply {other:?}"))),
        }
    }

    /// Gives back a claim whose alert did not go out, so that the next run may send it.
    pub fn release_alert(&self, subject: &str) -> Result<(), RedisError> {
        self.exec("DEL", vec![bin(&alert_key(subject))]).map(|_| ())
    }

    /// Starts a cool-down of the app (`business` `None`) or of one business, ending at `until_ms`.
    pub fn cool_down(&self, business: Option<&str>, until_ms: u64, now_ms: u64) -> Result<(), RedisError> {
        let replies = match business {
            None => {
                let ms = until_ms.saturating_sub(now_ms).max(1) as i64;
                let args = vec![
                    bin(APP_COOL_DOWN_KEY),
                    bin(&until_ms.to_string()),
                    bin("PX"),
                    RedisParameter::Int64(ms),
                ];
                self.exec("SET", args)?
            }
            Some(id) => {
                let args =
                    vec![bin(BUSINESS_COOL_DOWNS_KEY), RedisParameter::Int64(until_ms as i64), bin(id)];
                self.exec("ZADD", args)?
            }
        };
        match replies.as_slice() {
            [RedisResult::Status(_) | RedisResult::Int64(_)] => Ok(()),
            other => Err(RedisError(format!("unexpected cool-down reply {other:?}"))),
        }
    }

    /// The cool-downs that have not ended by `now_ms` (ended ones are forgotten on the way).
    pub fn cool_downs(&self, now_ms: u64) -> Result<CoolDowns, RedisError> {
        let app_until = match self.exec("GET", vec![bin(APP_COOL_DOWN_KEY)])?.as_slice() {
            [RedisResult::Binary(v)] => std::str::from_utf8(v).ok().and_then(|v| v.parse().ok()),
            _ => None,
        };
        let past = RedisParameter::Int64(now_ms as i64);
        self.exec("ZREMRANGEBYSCORE", vec![bin(BUSINESS_COOL_DOWNS_KEY), bin("-inf"), past])?;
        let businesses = self
            .exec(
                "ZRANGE",
                vec![bin(BUSINESS_COOL_DOWNS_KEY), RedisParameter::Int64(0), RedisParameter::Int64(-1)],
            )?
            .into_iter()
            .filter_map(|r| match r {
                RedisResult::Binary(id) => String::from_utf8(id).ok(),
                _ => None,
            })
            .collect();
        Ok(CoolDowns { app_until, businesses })
    }

    /// The businesses whose cool-down has not ended by `now_ms`, soonest end first, at most
    /// `limit`, each with its end (unix ms).
    pub fn business_cool_downs(&self, now_ms: u64, limit: usize) -> Result<Vec<(String, u64)>, RedisError> {
        let args = vec![
            bin(BUSINESS_COOL_DOWNS_KEY),
            RedisParameter::Int64(now_ms as i64),
            bin("+inf"),
            bin("WITHSCORES"),
            bin("LIMIT"),
            RedisParameter::Int64(0),
            RedisParameter::Int64(limit as i64),
        ];
        let replies = self.exec("ZRANGEBYSCORE", args)?;
        let text = |r: &RedisResult| match r {
            RedisResult::Binary(v) => String::from_utf8(v.clone()).ok(),
            _ => None,
        };
        Ok(replies
            .chunks(2)
            .filter_map(|pair| match pair {
                [id, until] => Some((text(id)?, text(until)?.parse::<f64>().ok()? as u64)),
                _ => None,
            })
            .collect())
    }

    pub fn save_graph_usage(&self, json: &str) -> Result<(), RedisError> {
        self.set_expiring(GRAPH_USAGE_KEY, json, GRAPH_USAGE_TTL_SECONDS)
    }

    /// Where the webhook retry's round of tenants stands (the last tenant visited; empty for a
    /// new round), for the next run to continue.
    pub fn save_webhook_round(&self, after: &str) -> Result<(), RedisError> {
        self.set_expiring(WEBHOOK_ROUND_KEY, after, WEBHOOK_ROUND_TTL_SECONDS)
    }

    fn set_expiring(&self, key: &str, value: &str, ttl_secs: i64) -> Result<(), RedisError> {
        let args = vec![bin(key), bin(value), bin("EX"), RedisParameter::Int64(ttl_secs)];
        match self.exec("SET", args)?.as_slice() {
            [RedisResult::Status(s)] if s == "OK" => Ok(()),
            other => Err(RedisError(format!("unexpected SET reply {other:?}"))),
        }
    }

    /// The values of `keys` (`None` for a missing key), in one round trip.
    pub fn values(&self, keys: &[&str]) -> Result<Vec<Option<String>>, RedisError> {
        let replies = self.exec("MGET", keys.iter().map(|k| bin(k)).collect())?;
        if replies.len() != keys.len() {
            return Err(RedisError(format!("unexpected MGET reply {replies:?}")));
        }
        Ok(replies
            .into_iter()
            .map(|r| match r {
                RedisResult::Binary(v) => String::from_utf8(v).ok(),
                _ => None,
            })
            .collect())
    }

    /// True when one more outbound request fits in this hour's `per_hour`, and is now counted.
    pub fn take_outbound(&self, per_hour: u32, unix_secs: i64) -> Result<bool, RedisError> {
        let args = vec![
            bin(TAKE_OUTBOUND_SCRIPT),
            RedisParameter::Int64(1),
            bin(&outbound_key(unix_secs)),
            RedisParameter::Int64(i64::from(per_hour)),
        ];
        match self.exec("EVAL", args)?.as_slice() {
            [RedisResult::Int64(n)] => Ok(*n == 1),
            other => Err(RedisError(format!("unexpected EVAL reply {other:?}"))),
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
