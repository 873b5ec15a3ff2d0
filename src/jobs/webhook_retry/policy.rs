//! The retry policy of the dead-letter queue: what becomes of a webhook after each attempt.
//!
//! The life of a failing webhook:
//!
//! 1. WhaTrack receives it from Meta, stores it in `whatsapp_webhook_logs` (`processed = false`)
//!    and its processing fails. After `webhook_retry_base_seconds` (the grace period for
//!    processing still in flight) it is *due*.
//! 2. A run claims it and POSTs it to `webhook_processor_url`. Some deliveries are no attempt,
//!    and charge the webhook nothing ([`Release`]): the run's budget cut it short, the hour's
//!    outbound allowance is spent (no further delivery this run), or the host refuses the
//!    destination (`allowed_outbound_hosts`; our configuration, not the webhook: the run stops
//!    and fails, saying so). The claim is released: due again, `"retryCount"` unchanged.
//! 3. 2xx: delivered; `processed = true`. Done.
//! 4. 408, 425, 429, 5xx, a timeout or a network error: a transient failure. `"retryCount"` goes
//!    up by one and the next attempt waits `base * 2^retryCount` (capped at 6 hours) plus up to
//!    10% random jitter, so that a batch that failed together does not retry together. A
//!    `Retry-After` from the receiver wins when it asks for longer.
//! 5. When `"retryCount"` reaches `webhook_retry_max_attempts` the webhook is dead-lettered
//!    (`"deadAt"` set) and stays there until an operator redrives it.
//! 6. Any other status (a 4xx such as 400 or 401): the receiver rejected it for good. It is
//!    dead-lettered at once, with the status and the start of the body as the reason.
//! 7. A webhook still pending `webhook_retry_max_age_hours` after it arrived (168, a week, as
//!    long as Meta itself retries) is dead-lettered as expired instead of re-delivered; so is
//!    one whose `"retryCount"` already reached the maximum (the setting was lowered, or WhaTrack
//!    counts retries itself) but was never dead-lettered: "attempts exhausted". Both happen at
//!    the start of the next run ([`super::queue::sweep`]).
//!
//! What the receiver answered is kept, cut to its first 200 characters, in
//! `"processingError"` only; logs and alerts get the status and a short reason, since a
//! receiver that echoes the payload would otherwise put customer messages into a chat channel.
//!
//! Defaults, all Spin variables: `webhook_retry_base_seconds` = 300, `webhook_retry_max_attempts`
//! = 3, `webhook_retry_batch_size` = 50. With those a webhook that keeps failing lives like this
//! (the table of docs/webhook-retry.md, checked against [`decide`] by a unit test):
//!
//! | attempt | when |
//! |---|---|
//! | 1 | 5 min after the webhook arrived (first due) |
//! | 2 | 10-11 min after attempt 1 failed |
//! | 3 | 20-22 min after attempt 2 failed |
//! | - | attempt 3 failed: dead-lettered |
//!
//! Everything here is pure: the answer (or the error) of one attempt in, the webhook's fate out.

use std::time::{Duration, SystemTime};

use crate::outbound::{OutboundError, Response};

const MAX_DELAY: Duration = Duration::from_secs(6 * 3600);
const JITTER_FRACTION: f64 = 0.10;
const REASON_BODY_CHARS: usize = 200;

/// The policy's settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rules {
    pub max_attempts: u32,
    /// The grace period before the first attempt, and the unit of the backoff.
    pub base: Duration,
    /// How long after it arrived a webhook may still be re-delivered.
    pub max_age: Duration,
}

/// Where an attempt leaves the webhook.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Fate {
    Delivered,
    RetryIn(Duration),
    Dead,
}

impl Fate {
    pub fn name(self) -> &'static str {
        match self {
            Fate::Delivered => "delivered",
            Fate::RetryIn(_) => "retry",
            Fate::Dead => "dead-lettered",
        }
    }
}

/// The whole decision about one attempt: the fate, and what the audit rows say about it.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    pub fate: Fate,
    pub http_status: Option<u16>,
    /// `"processingError"`, with the start of the receiver's answer: `None` once delivered.
    pub error: Option<String>,
    /// The reason for logs and alerts: the status or the failure, never the receiver's body.
    pub brief: Option<String>,
}

/// What one delivery comes to.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// An attempt, charged (steps 3 to 6).
    Attempted(Decision),
    /// No attempt (step 2): the claim goes back, due again, charged nothing.
    Released(Release),
}

/// Why a delivery was no attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Release {
    /// The run's budget ended before the answer.
    OutOfTime,
    /// The hour's outbound allowance is spent (why): no further delivery this run.
    AllowanceSpent(String),
    /// The host refuses the destination or cannot read its URL (why): the run stops and fails.
    Misconfigured(String),
}

/// The webhook's `attempt`-th delivery (1 for the first) came back with `result`: an attempt
/// and its [`Decision`], or none. `jitter` is a uniform random number in [0, 1).
pub fn judge(
    result: &Result<Response, OutboundError>,
    attempt: u32,
    rules: &Rules,
    now: SystemTime,
    jitter: f64,
) -> Outcome {
    match result {
        Err(OutboundError::OutOfTime) => Outcome::Released(Release::OutOfTime),
        Err(OutboundError::NotSent(why)) => Outcome::Released(Release::AllowanceSpent(why.clone())),
        Err(e @ (OutboundError::Denied(_) | OutboundError::InvalidUrl(_))) => {
            Outcome::Released(Release::Misconfigured(e.to_string()))
        }
        _ => Outcome::Attempted(decide(result, attempt, rules, now, jitter)),
    }
}

/// Decides a webhook's fate after its `attempt`-th delivery (1 for the first) came back with
/// `result`, an attempt ([`judge`] sorts out those that are none). `jitter` is a uniform random
/// number in [0, 1).
fn decide(
    result: &Result<Response, OutboundError>,
    attempt: u32,
    rules: &Rules,
    now: SystemTime,
    jitter: f64,
) -> Decision {
    let (http_status, judged) = match result {
        Ok(resp) => (Some(resp.status), judge_response(resp, now)),
        Err(e) => (None, Judged::Transient { reason: e.to_string(), retry_after: None }),
    };
    let brief = match (http_status, result) {
        (Some(status), _) => format!("HTTP {status}"),
        (None, Err(e)) => e.to_string(),
        (None, Ok(_)) => String::new(),
    };
    let last = format!(" (attempt {attempt} of {})", rules.max_attempts);
    let (fate, error, brief) = match judged {
        Judged::Delivered => (Fate::Delivered, None, None),
        Judged::Transient { reason, .. } if attempt >= rules.max_attempts => {
            (Fate::Dead, Some(reason + last.as_str()), Some(brief + last.as_str()))
        }
        Judged::Transient { reason, retry_after } => {
            (Fate::RetryIn(next_delay(rules.base, attempt, jitter, retry_after)), Some(reason), Some(brief))
        }
        Judged::Rejected { reason } => {
            (Fate::Dead, Some(format!("rejected: {reason}")), Some(format!("rejected: {brief}")))
        }
    };
    Decision { fate, http_status, error: error.map(|e| storable(&e)), brief }
}

/// Text Postgres will store: no NUL byte (it refuses 0x00 in text), and not too long.
pub fn storable(text: &str) -> String {
    const MAX_CHARS: usize = 1000;
    text.chars().filter(|&c| c != '\0').take(MAX_CHARS).collect()
}

/// What one answer says, before the attempt count is taken into account.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Judged {
    Delivered,
    /// Worth trying again; `retry_after` is the receiver's own wish.
    Transient {
        reason: String,
        retry_after: Option<Duration>,
    },
    Rejected {
        reason: String,
    },
}

fn judge_response(resp: &Response, now: SystemTime) -> Judged {
    let reason = || with_body(&format!("HTTP {}", resp.status), &resp.body);
    match resp.status {
        200..=299 => Judged::Delivered,
        408 | 425 | 429 | 500..=599 => Judged::Transient {
            reason: reason(),
            retry_after: resp.header(&http::header::RETRY_AFTER).and_then(|h| parse_retry_after(h, now)),
        },
        _ => Judged::Rejected { reason: reason() },
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

/// `Retry-After` as delay-seconds or an HTTP date in any of the three forms RFC 9110 says a
/// recipient must accept (`httpdate`, which also holds the weekday to the date); a date in the
/// past means "now".
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// The wait before the next attempt, after the `retry_count`-th failure. A `Retry-After` is
/// honoured up to the backoff's own cap: a receiver cannot park a webhook for years.
pub fn next_delay(base: Duration, retry_count: u32, jitter: f64, retry_after: Option<Duration>) -> Duration {
    let exp = base.saturating_mul(2u32.saturating_pow(retry_count.min(31))).min(MAX_DELAY);
    let delay = exp.mul_f64(1.0 + JITTER_FRACTION * jitter.clamp(0.0, 1.0));
    match retry_after.map(|asked| asked.min(MAX_DELAY)) {
        Some(asked) if asked > delay => asked,
        _ => delay,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: Duration = Duration::from_secs(300);
    const DEFAULTS: Rules = Rules { max_attempts: 3, base: BASE, max_age: Duration::from_secs(168 * 3600) };
    const MINUTE: f64 = 60.0;

    fn at_unix(secs: u64) -> SystemTime {
        std::time::UNIX_EPOCH + Duration::from_secs(secs)
    }

    fn answer(status: u16, body: &str, headers: &[(&str, &str)]) -> Result<Response, OutboundError> {
        Ok(Response {
            status,
            headers: headers.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect(),
            body: body.as_bytes().to_vec(),
        })
    }

    fn fate_after_502(attempt: u32, jitter: f64) -> Fate {
        decide(&answer(502, "", &[]), attempt, &DEFAULTS, at_unix(0), jitter).fate
    }

    /// The lifecycle table of docs/webhook-retry.md, verbatim: each row is checked against the
    /// policy with the defaults, at no jitter and at the most jitter.
    #[test]
    fn lifecycle_table_of_the_guide() {
        const TABLE: &str = "\
| attempt | when |
|---|---|
| 1 | 5 min after the webhook arrived (first due) |
| 2 | 10-11 min after attempt 1 failed |
| 3 | 20-22 min after attempt 2 failed |
| - | attempt 3 failed: dead-lettered |
";
        let guide = include_str!("../../../docs/webhook-retry.md");
        assert!(guide.contains(TABLE), "the guide's lifecycle table changed: update this test");

        let rows: Vec<(&str, &str)> = TABLE
            .lines()
            .skip(2)
            .map(|l| {
                let cells: Vec<&str> = l.trim_matches('|').split('|').map(str::trim).collect();
                (cells[0], cells[1])
            })
            .collect();
        assert_eq!(rows.len(), 4);
        for (attempt, when) in rows {
            if attempt == "-" {
                let failed: u32 =
                    when.strip_prefix("attempt ").unwrap().split(' ').next().unwrap().parse().unwrap();
                assert_eq!(fate_after_502(failed, 0.5), Fate::Dead, "{when}");
                continue;
            }
            let attempt: u32 = attempt.parse().unwrap();
            let (span, rest) = when.split_once(" min after ").unwrap();
            if rest.starts_with("the webhook arrived") {
                // The first attempt waits one base period: the due time of queue/sql/states.sql.
                assert_eq!(DEFAULTS.base.as_secs_f64(), span.parse::<f64>().unwrap() * MINUTE, "{when}");
                continue;
            }
            let (low, high) = span.split_once('-').unwrap();
            let previous: u32 =
                rest.strip_prefix("attempt ").unwrap().split(' ').next().unwrap().parse().unwrap();
            assert_eq!(previous, attempt - 1, "{when}");
            let Fate::RetryIn(least) = fate_after_502(previous, 0.0) else { panic!("{when}: not retried") };
            let Fate::RetryIn(most) = fate_after_502(previous, 0.999_999) else { panic!("{when}") };
            assert_eq!(least.as_secs_f64(), low.parse::<f64>().unwrap() * MINUTE, "{when}");
            assert!(most.as_secs_f64() <= high.parse::<f64>().unwrap() * MINUTE, "{when}: {most:?}");
            assert!(most > least, "{when}: jitter");
        }
    }

    #[test]
    fn decisions_carry_status_and_reason() {
        let ok = decide(&answer(204, "", &[]), 1, &DEFAULTS, at_unix(0), 0.0);
        assert_eq!(ok, Decision { fate: Fate::Delivered, http_status: Some(204), error: None, brief: None });
        let retry = decide(&answer(503, "busy", &[]), 1, &DEFAULTS, at_unix(0), 0.0);
        assert_eq!(retry.fate, Fate::RetryIn(Duration::from_secs(600)));
        assert_eq!(retry.error.as_deref(), Some("HTTP 503: busy"));
        let last = decide(&answer(503, "busy", &[]), 3, &DEFAULTS, at_unix(0), 0.0);
        assert_eq!(last.error.as_deref(), Some("HTTP 503: busy (attempt 3 of 3)"));
        assert_eq!(last.brief.as_deref(), Some("HTTP 503 (attempt 3 of 3)"));
        let rejected = decide(&answer(422, "bad payload", &[]), 1, &DEFAULTS, at_unix(0), 0.0);
        assert_eq!(
            rejected,
            Decision {
                fate: Fate::Dead,
                http_status: Some(422),
                error: Some("rejected: HTTP 422: bad payload".into()),
                brief: Some("rejected: HTTP 422".into()),
            }
        );
        let timeout = decide(&Err(OutboundError::Timeout(10)), 1, &DEFAULTS, at_unix(0), 0.0);
        assert_eq!((timeout.http_status, timeout.error.as_deref()), (None, Some("timed out after 10 s")));
        assert!(matches!(timeout.fate, Fate::RetryIn(_)));
    }

    #[test]
    fn retry_after_header_wins_when_later_up_to_the_cap() {
        let asked = decide(&answer(429, "", &[("Retry-After", "3600")]), 1, &DEFAULTS, at_unix(0), 0.0);
        assert_eq!(asked.fate, Fate::RetryIn(Duration::from_secs(3600)));
        let sooner = decide(&answer(429, "", &[("retry-after", "5")]), 1, &DEFAULTS, at_unix(0), 0.0);
        assert_eq!(sooner.fate, Fate::RetryIn(Duration::from_secs(600)));
    }

    #[test]
    fn poison_answers_become_storable_values() {
        let nul = decide(&answer(500, "bad\0byte", &[]), 1, &DEFAULTS, at_unix(0), 0.0);
        assert_eq!(nul.error.as_deref(), Some("HTTP 500: badbyte"));
        let forever =
            decide(&answer(503, "", &[("retry-after", "99999999999999")]), 1, &DEFAULTS, at_unix(0), 0.0);
        assert_eq!(forever.fate, Fate::RetryIn(MAX_DELAY), "capped at the backoff cap");
        assert_eq!(storable(&"é".repeat(5000)).chars().count(), 1000);
    }

    #[test]
    fn backoff_doubles() {
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
        assert_eq!(next_delay(BASE, 1, 0.5, None), Duration::from_secs(630));
    }

    #[test]
    fn statuses() {
        let judge = |s| judge_response(&answer(s, "", &[]).unwrap(), at_unix(0));
        assert_eq!(judge(200), Judged::Delivered);
        assert_eq!(judge(204), Judged::Delivered);
        for s in [408, 425, 429, 500, 502, 503, 504] {
            assert!(matches!(judge(s), Judged::Transient { .. }), "{s}");
        }
        for s in [400, 401, 403, 404, 410, 422, 301] {
            assert!(matches!(judge(s), Judged::Rejected { .. }), "{s}");
        }
    }

    #[test]
    fn reasons_carry_the_start_of_the_body() {
        let long = "x".repeat(500);
        let Judged::Rejected { reason } = judge_response(&answer(400, &long, &[]).unwrap(), at_unix(0))
        else {
            panic!()
        };
        assert_eq!(reason, format!("HTTP 400: {}", "x".repeat(200)));
    }

    #[test]
    fn retry_after_forms() {
        let secs = |s| Some(Duration::from_secs(s));
        assert_eq!(parse_retry_after("120", at_unix(0)), secs(120));
        // 1994-11-06 08:49:37 UTC = 784111777, in RFC 9110's three date forms.
        for date in
            ["Sun, 06 Nov 1994 08:49:37 GMT", "Sunday, 06-Nov-94 08:49:37 GMT", "Sun Nov  6 08:49:37 1994"]
        {
            assert_eq!(parse_retry_after(date, at_unix(784_111_777 - 60)), secs(60), "{date}");
            assert_eq!(parse_retry_after(date, at_unix(784_111_777 + 60)), secs(0), "{date}");
        }
        assert_eq!(parse_retry_after("soon", at_unix(0)), None);
        assert_eq!(parse_retry_after("-5", at_unix(0)), None);
        assert_eq!(parse_retry_after("Sun, 06 Nov 1994 99:49:37 GMT", at_unix(0)), None, "hour 99");
        for bad in [
            "Sun, 06 Foo 1994 08:49:37 GMT",
            "Sun, 06 Nov 1994 08:49:37 CET",
            "Sun, 32 Nov 1994 08:49:37 GMT",
            "Wed, 31 Nov 1994 08:49:37 GMT",
            "Fri, 29 Feb 2019 00:00:00 GMT",
        ] {
            assert_eq!(parse_retry_after(bad, at_unix(0)), None, "{bad}");
        }
        // The epoch, a leap day, and the two-digit years on each side of 1970, from the epoch.
        let from_epoch = |date| parse_retry_after(date, at_unix(0));
        assert_eq!(from_epoch("Thu, 01 Jan 1970 00:00:00 GMT"), secs(0));
        assert_eq!(from_epoch("Thu, 29 Feb 2024 12:00:00 GMT"), secs(1_709_208_000));
        assert_eq!(from_epoch("Thursday, 01-Jan-70 00:00:00 GMT"), secs(0));
        assert_eq!(from_epoch("Saturday, 28-Nov-26 00:00:00 GMT"), secs(1_795_824_000));
        assert_eq!(from_epoch("Wed, 31 Dec 1969 23:59:59 GMT"), None);
        assert_eq!(from_epoch("Sunday, 28-Nov-26 00:00:00 GMT"), None, "the wrong weekday");
    }

    #[test]
    fn failures_of_ours_are_no_attempt() {
        let judged = |result: Result<Response, OutboundError>| judge(&result, 2, &DEFAULTS, at_unix(0), 0.0);
        assert_eq!(judged(Err(OutboundError::OutOfTime)), Outcome::Released(Release::OutOfTime));
        assert_eq!(
            judged(Err(OutboundError::NotSent("spent".into()))),
            Outcome::Released(Release::AllowanceSpent("spent".into()))
        );
        for ours in [OutboundError::Denied("http://x".into()), OutboundError::InvalidUrl("x".into())] {
            assert!(matches!(judged(Err(ours)), Outcome::Released(Release::Misconfigured(_))));
        }
        // The receiver's, or the network's: an attempt, charged.
        for theirs in [OutboundError::Timeout(10), OutboundError::Network("reset".into())] {
            let Outcome::Attempted(decision) = judged(Err(theirs)) else { panic!("an attempt") };
            assert!(matches!(decision.fate, Fate::RetryIn(_)));
        }
        assert!(matches!(
            judged(answer(200, "", &[])),
            Outcome::Attempted(Decision { fate: Fate::Delivered, .. })
        ));
    }
}
