//! Wall-clock time for ids and Graph expiry dates; the monotonic clock for budgets and timeouts.

use std::task::Poll;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use spin_executor::CancelOnDropToken;
use wasi::clocks::monotonic_clock;

pub fn unix_millis() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

pub fn unix_secs() -> i64 {
    (unix_millis() / 1000) as i64
}

/// What a run may take after its budget to write down and announce what it did (the last
/// batch of results, the alerts, the `job_runs` row): a run answers within budget + this.
pub const FINISH_GRACE: Duration = Duration::from_secs(2);

/// A point in time that work must not outlive: a run's budget, or its budget plus the grace.
#[derive(Debug, Clone, Copy)]
pub struct Deadline(Instant);

impl Deadline {
    pub fn after(budget: Duration) -> Self {
        Self(Instant::now() + budget)
    }

    pub fn passed(&self) -> bool {
        Instant::now() >= self.0
    }

    pub fn remaining(&self) -> Duration {
        self.0.saturating_duration_since(Instant::now())
    }

    /// `timeout`, shortened to what is left before the deadline.
    pub fn clip(&self, timeout: Duration) -> Duration {
        timeout.min(self.remaining())
    }

    /// The same deadline, `extra` later.
    pub fn extended(&self, extra: Duration) -> Self {
        Self(self.0 + extra)
    }
}

/// Resolves at `at`: the host's monotonic clock wakes the executor (a busy wait would stall
/// every other future of the run).
pub async fn sleep_until(at: Instant) {
    // Holds the clock's subscription while the executor may wake us with it.
    let mut tokens: Vec<CancelOnDropToken> = Vec::new();
    std::future::poll_fn(move |cx| {
        let left = at.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Poll::Ready(());
        }
        let clock = monotonic_clock::subscribe_duration(left.as_nanos() as u64);
        tokens.clear();
        tokens.push(spin_executor::push_waker_and_get_token(clock, cx.waker().clone()).into());
        Poll::Pending
    })
    .await
}

/// `2026-11-30T01:42:08.123Z`, from unix milliseconds.
pub fn iso_millis(unix_ms: u64) -> String {
    humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(unix_ms)).to_string()
}
