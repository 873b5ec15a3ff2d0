//! The retry policy of the dead-letter queue.
//!
//! The life of a failing webhook:
//!
//! 1. WhaTrack receives it from Meta, stores it in `whatsapp_webhook_logs` (`processed = false`)
//!    and its processing fails. After `webhook_retry_base_seconds` (the grace period for
//!    processing still in flight) it is *due*.
//! 2. A run claims it and POSTs it to `webhook_processor_url`.
//! 3. 2xx: delivered; `processed = true`. Done.
//! 4. 408, 425, 429, 5xx, a timeout or a network error: a transient failure. `"retryCount"` goes
//!    up by one and the next attempt waits `base * 2^retryCount` (capped at 6 hours) plus up to
//!    10% random jitter, so that a batch that failed together does not retry together. A
//!    `Retry-After` from the receiver wins when it asks for longer.
//! 5. When `"retryCount"` reaches `webhook_retry_max_attempts` the webhook is dead-lettered
//!    (`"deadAt"` set) and stays there until an operator redrives it.
//! 6. Any other status (a 4xx such as 400 or 401): the receiver rejected it for good. It is
//!    dead-lettered at once, with the status and the start of the body as the reason.
//!
//! Defaults, all Spin variables: `webhook_retry_base_seconds` = 300, `webhook_retry_max_attempts`
//! = 3, `webhook_retry_batch_size` = 50. With those a webhook is tried at about 5 minutes after
//! it arrived, then 10 and 20 minutes after each failure:
//!
//! | failures so far | next attempt after |
//! |---|---|
//! | 1 | base * 2 = 10 min |
//! | 2 | base * 4 = 20 min |
//! | 3 (= max) | dead-lettered |
//!
//! Everything here is pure, so the table above is a unit test.

use std::time::Duration;

use crate::outbound::OutboundError;

const MAX_DELAY: Duration = Duration::from_secs(6 * 3600);
const JITTER_FRACTION: f64 = 0.10;
const REASON_BODY_CHARS: usize = 200;

/// What one delivery attempt came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempt {
    Delivered,
    /// Worth trying again; `retry_after` is the receiver's own wish, in seconds.
    Transient {
        reason: String,
        retry_after: Option<u64>,
    },
    Rejected {
        reason: String,
    },
}

/// Reads a receiver's answer. `retry_after` is the raw `Retry-After` header.
pub fn judge_response(status: u16, body: &[u8], retry_after: Option<&str>, now_unix: i64) -> Attempt {
    match status {
        200..=299 => Attempt::Delivered,
        408 | 425 | 429 | 500..=599 => Attempt::Transient {
            reason: with_body(&format!("HTTP {status}"), body),
            retry_after: retry_after.and_then(|h| parse_retry_after(h, now_unix)),
        },
        _ => Attempt::Rejected { reason: with_body(&format!("HTTP {status}"), body) },
    }
}

pub fn judge_error(e: &OutboundError) -> Attempt {
    match e {
        // A URL the host cannot even try is not going to work on the next attempt either.
        OutboundError::InvalidUrl(_) => Attempt::Rejected { reason: e.to_string() },
        _ => Attempt::Transient { reason: e.to_string(), retry_after: None },
    }
}

fn with_body(head: &str, body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if text.is_empty() {
        return head.to_owned();
    }
    let start: String = text.chars().take(REASON_BODY_CHARS).collect();
    format!("{head}: {start}")
}

/// `Retry-After` as delay-seconds or an HTTP date (RFC 9110).
pub fn parse_retry_after(value: &str, now_unix: i64) -> Option<u64> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(secs);
    }
    let at = parse_http_date(value)?;
    Some(at.saturating_sub(now_unix).max(0) as u64)
}

/// IMF-fixdate only (`Sun, 06 Nov 1994 08:49:37 GMT`), the form senders must use.
fn parse_http_date(s: &str) -> Option<i64> {
    let mut parts = s.split_whitespace();
    let _weekday = parts.next()?;
    let day: i64 = parts.next()?.parse().ok()?;
    let month = match parts.next()? {
        "Jan" => 1,
        "Feb" => 2,
        "Mar" => 3,
        "Apr" => 4,
        "May" => 5,
        "Jun" => 6,
        "Jul" => 7,
        "Aug" => 8,
        "Sep" => 9,
        "Oct" => 10,
        "Nov" => 11,
        "Dec" => 12,
        _ => return None,
    };
    let year: i64 = parts.next()?.parse().ok()?;
    let mut hms = parts.next()?.split(':').map(|p| p.parse::<i64>().ok());
    let (h, m, sec) = (hms.next()??, hms.next()??, hms.next()??);
    if parts.next()? != "GMT" {
        return None;
    }
    Some(days_from_civil(year, month, day) * 86_400 + h * 3600 + m * 60 + sec)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The wait before the next attempt, after the `retry_count`-th failure.
/// `jitter` is a uniform random number in [0, 1).
pub fn next_delay(base: Duration, retry_count: u32, jitter: f64, retry_after: Option<u64>) -> Duration {
    let exp = base.saturating_mul(2u32.saturating_pow(retry_count.min(31))).min(MAX_DELAY);
    let delay = exp.mul_f64(1.0 + JITTER_FRACTION * jitter.clamp(0.0, 1.0));
    match retry_after.map(Duration::from_secs) {
        Some(asked) if asked > delay => asked,
        _ => delay,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: Duration = Duration::from_secs(300);

    #[test]
    fn backoff_table_of_the_docs() {
        assert_eq!(next_delay(BASE, 1, 0.0, None), Duration::from_secs(600));
        assert_eq!(next_delay(BASE, 2, 0.0, None), Duration::from_secs(1200));
        assert_eq!(next_delay(BASE, 3, 0.0, None), Duration::from_secs(2400));
    }

    #[test]
    fn capped_at_six_hours_plus_jitter() {
        assert_eq!(next_delay(BASE, 10, 0.0, None), MAX_DELAY);
        assert_eq!(next_delay(BASE, 40, 0.0, None), MAX_DELAY);
        let most = next_delay(BASE, 10, 0.999_999, None);
        assert!(most > MAX_DELAY && most <= MAX_DELAY.mul_f64(1.1), "{most:?}");
    }

    #[test]
    fn jitter_is_at_most_ten_percent() {
        let d = next_delay(BASE, 1, 0.5, None);
        assert_eq!(d, Duration::from_secs(630));
    }

    #[test]
    fn retry_after_wins_only_when_later() {
        assert_eq!(next_delay(BASE, 1, 0.0, Some(3600)), Duration::from_secs(3600));
        assert_eq!(next_delay(BASE, 1, 0.0, Some(5)), Duration::from_secs(600));
    }

    #[test]
    fn statuses() {
        assert_eq!(judge_response(200, b"", None, 0), Attempt::Delivered);
        assert_eq!(judge_response(204, b"", None, 0), Attempt::Delivered);
        for s in [408, 425, 429, 500, 502, 503, 504] {
            assert!(matches!(judge_response(s, b"", None, 0), Attempt::Transient { .. }), "{s}");
        }
        for s in [400, 401, 403, 404, 410, 422, 301] {
            assert!(matches!(judge_response(s, b"", None, 0), Attempt::Rejected { .. }), "{s}");
        }
    }

    #[test]
    fn reasons_carry_status_and_body_start() {
        let long = "x".repeat(500);
        let Attempt::Rejected { reason } = judge_response(400, long.as_bytes(), None, 0) else { panic!() };
        assert_eq!(reason, format!("HTTP 400: {}", "x".repeat(200)));
        let Attempt::Transient { reason, retry_after } = judge_response(429, b"", Some("120"), 0) else {
            panic!()
        };
        assert_eq!((reason.as_str(), retry_after), ("HTTP 429", Some(120)));
    }

    #[test]
    fn retry_after_forms() {
        assert_eq!(parse_retry_after("120", 0), Some(120));
        // 1994-11-06 08:49:37 UTC = 784111777
        assert_eq!(parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", 784_111_777 - 60), Some(60));
        assert_eq!(parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", 784_111_777 + 60), Some(0));
        assert_eq!(parse_retry_after("soon", 0), None);
        assert_eq!(parse_retry_after("-5", 0), None);
    }

    #[test]
    fn errors() {
        assert!(matches!(judge_error(&OutboundError::Timeout(10)), Attempt::Transient { .. }));
        assert!(matches!(judge_error(&OutboundError::Network("reset".into())), Attempt::Transient { .. }));
        assert!(matches!(judge_error(&OutboundError::InvalidUrl("x".into())), Attempt::Rejected { .. }));
    }
}
