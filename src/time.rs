//! Wall-clock time for ids and Graph expiry dates; the monotonic clock for budgets and timeouts.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

pub fn unix_millis() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

pub fn unix_secs() -> i64 {
    (unix_millis() / 1000) as i64
}

/// The point after which a run starts no new work.
#[derive(Debug, Clone, Copy)]
pub struct Deadline(Instant);

impl Deadline {
    pub fn after(budget: Duration) -> Self {
        Self(Instant::now() + budget)
    }

    pub fn passed(&self) -> bool {
        Instant::now() >= self.0
    }
}
