//! What a job gets to work with, and what it hands back. The jobs depend on this module and the
//! runner builds it; it knows neither job.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::pin;
use std::task::Poll;
use std::time::{Duration, Instant};

use futures::future::{select, Either};
use futures::stream::{self, FuturesUnordered, Stream, StreamExt};
use serde::Serialize;
use serde_json::Value;

use crate::alerts::{self, Alert};
use crate::config::Config;
use crate::db::{Db, DbError};
use crate::log::Logger;
use crate::outbound::Allowance;
use crate::redis::{Redis, RedisError};
use crate::time::{self, Deadline};

/// `S`: the job's own settings (each job names its context with them).
pub struct JobContext<'a, S = ()> {
    pub job_id: &'a str,
    /// The settings both jobs share.
    pub config: &'a Config,
    pub settings: &'a S,
    pub db: &'a Db,
    pub redis: &'a Redis,
    /// The end of the time budget: no work starts after it, and no call outlives it.
    pub deadline: Deadline,
    /// The budget plus the grace for writing down and announcing what was done.
    pub finish: Deadline,
    pub log: &'a Logger,
}

impl<'a, S> JobContext<'a, S> {
    /// The same run's context, with a job's `settings`.
    pub fn with<'b, T>(&'b self, settings: &'b T) -> JobContext<'b, T> {
        let Self { job_id, config, db, redis, deadline, finish, log, .. } = *self;
        JobContext { job_id, config, settings, db, redis, deadline, finish, log }
    }

    /// Runs `work` on each item, up to `concurrency` at once, yielding results as they complete.
    /// An item whose turn comes once the budget is spent is not started: it comes back as
    /// [`Turn::NotStarted`], for the job to leave to the next run.
    pub fn within_budget<'s, T, R, F, Fut>(
        &'s self,
        items: impl IntoIterator<Item = T> + 's,
        concurrency: usize,
        work: F,
    ) -> impl Stream<Item = Turn<T, R>> + 's
    where
        T: 's,
        F: Fn(T) -> Fut + Copy + 's,
        Fut: Future<Output = R> + 's,
    {
        let deadline = self.deadline;
        refilled(
            items.into_iter().map(move |item| {
                async move {
                    // Checked when the work would start, not when it was queued: the budget
                    // bounds the work a run begins.
                    if deadline.passed() {
                        Turn::NotStarted(item)
                    } else {
                        Turn::Done(work(item).await)
                    }
                }
            }),
            concurrency,
        )
    }

    /// The app's outbound requests this hour, as every request of the run spends them.
    pub fn allowance(&self) -> Allowance<'_> {
        Allowance::new(Some(self.redis), self.config.outbound_requests_per_hour)
    }

    /// Sends a run's alerts (throttled and capped; never fails the run, never outlives it).
    pub async fn send_alerts(&self, batch: Vec<Alert>) {
        alerts::send(
            self.config.alert_webhook_url.as_deref(),
            Some(self.redis),
            self.allowance(),
            batch,
            self.finish,
            self.log,
        )
        .await;
    }
}

/// Groups a stream's items into batches of at most `size`, each handed over at the latest `every`
/// after its first item arrived (a timer, not the next arrival), so that a slow stream still
/// writes down what it finished. Batching is what keeps a run's statements per item far below one.
pub fn batches<S: Stream + Unpin>(
    items: S,
    size: usize,
    every: Duration,
) -> impl Stream<Item = Vec<S::Item>> {
    stream::unfold(Some(items), move |items| async move {
        let mut items = items?;
        let mut batch = Vec::new();
        let mut due: Option<Instant> = None;
        loop {
            let next = match due {
                None => items.next().await,
                Some(at) => match select(items.next(), pin!(time::sleep_until(at))).await {
                    Either::Left((item, _)) => item,
                    Either::Right(_) => return Some((batch, Some(items))),
                },
            };
            let Some(item) = next else {
                return (!batch.is_empty()).then_some((batch, None));
            };
            due.get_or_insert_with(|| Instant::now() + every);
            batch.push(item);
            if batch.len() >= size {
                return Some((batch, Some(items)));
            }
        }
    })
}

/// Runs up to `max` of `work`'s futures at once, like `buffer_unordered`, except that a finished
/// one's slot is refilled, and the new work started, before its output is handed over. The
/// caller's handling of an output (a statement, which blocks the guest) then overlaps work in
/// flight instead of holding a slot empty: the benchmark's pipeline stays full.
fn refilled<F: Future>(mut work: impl Iterator<Item = F>, max: usize) -> impl Stream<Item = F::Output> {
    let mut running = FuturesUnordered::new();
    let mut finished = VecDeque::new();
    stream::poll_fn(move |cx| loop {
        while running.len() < max.max(1) {
            match work.next() {
                Some(next) => running.push(next),
                None => break,
            }
        }
        match running.poll_next_unpin(cx) {
            Poll::Ready(Some(output)) => {
                finished.push_back(output);
                // Bounded: work that finishes at once (nothing to send) must not be read ahead
                // without limit before anyone takes it.
                if finished.len() >= max {
                    return Poll::Ready(finished.pop_front());
                }
            }
            Poll::Ready(None) => return Poll::Ready(finished.pop_front()),
            Poll::Pending => return finished.pop_front().map_or(Poll::Pending, |o| Poll::Ready(Some(o))),
        }
    })
}

/// One item's fate in [`JobContext::within_budget`].
pub enum Turn<T, R> {
    Done(R),
    NotStarted(T),
}

/// A job's counts, and how much of its work the budget left undone.
pub struct JobOutcome {
    pub summary: Value,
    pub remaining: u64,
    /// Set when the job found it must not run now (why, for the caller and the run's row).
    pub skipped: Option<&'static str>,
}

impl JobOutcome {
    pub fn new(summary: &impl Serialize, remaining: u64) -> Self {
        Self { summary: serde_json::to_value(summary).unwrap_or(Value::Null), remaining, skipped: None }
    }

    /// A run that did nothing, and says why.
    pub fn skipped(why: &'static str, summary: Value) -> Self {
        Self { summary, remaining: 0, skipped: Some(why) }
    }

    /// Adds a field to the summary: what the runner did after the job (retention).
    pub fn add(&mut self, field: &str, value: &impl Serialize) {
        if let Value::Object(fields) = &mut self.summary {
            fields.insert(field.to_owned(), serde_json::to_value(value).unwrap_or(Value::Null));
        }
    }
}

/// What fails a job's run (or its status read): the systems a job cannot do without, and a
/// configuration the host refuses to carry out.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error(transparent)]
    Redis(#[from] RedisError),
    /// Our own setup is wrong (e.g. a destination missing from `allowed_outbound_hosts`): no
    /// row is charged for it.
    #[error("Configuration error: {0}")]
    Misconfigured(String),
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::task::Context;

    use futures::channel::oneshot;
    use futures::task::noop_waker_ref;

    use super::*;

    #[test]
    fn a_finished_slot_is_refilled_and_started_before_its_output_is_handed_over() {
        let started = RefCell::new(Vec::new());
        let (senders, receivers): (Vec<_>, Vec<_>) = (0..5).map(|_| oneshot::channel::<()>()).unzip();
        let work = receivers.into_iter().enumerate().map(|(i, done)| {
            let started = &started;
            async move {
                started.borrow_mut().push(i);
                let _ = done.await;
                i
            }
        });
        let mut outputs = Box::pin(refilled(work, 2));
        let mut cx = Context::from_waker(noop_waker_ref());
        let mut senders = senders.into_iter().map(Some).collect::<Vec<_>>();
        let mut finish = |i: usize| senders[i].take().map(|s| s.send(()));

        assert!(outputs.as_mut().poll_next(&mut cx).is_pending());
        assert_eq!(*started.borrow(), [0, 1], "two at once, no more");
        finish(0);
        assert_eq!(outputs.as_mut().poll_next(&mut cx), Poll::Ready(Some(0)));
        assert_eq!(*started.borrow(), [0, 1, 2], "the third started before the first's output came out");
        finish(2);
        finish(1);
        let mut seen = Vec::new();
        while let Poll::Ready(Some(i)) = outputs.as_mut().poll_next(&mut cx) {
            seen.push(i);
        }
        seen.sort();
        assert_eq!(seen, [1, 2]);
        assert_eq!(*started.borrow(), [0, 1, 2, 3, 4]);
        finish(3);
        finish(4);
        let mut rest = Vec::new();
        while let Poll::Ready(next) = outputs.as_mut().poll_next(&mut cx) {
            match next {
                Some(i) => rest.push(i),
                None => break,
            }
        }
        rest.sort();
        assert_eq!(rest, [3, 4]);
    }

    #[test]
    fn work_that_needs_no_waiting_is_not_read_ahead_without_bound() {
        let pulled = RefCell::new(0);
        let work = (0..1000).map(|i| {
            *pulled.borrow_mut() += 1;
            async move { i }
        });
        let mut outputs = Box::pin(refilled(work, 4));
        let mut cx = Context::from_waker(noop_waker_ref());
        assert_eq!(outputs.as_mut().poll_next(&mut cx), Poll::Ready(Some(0)));
        assert!(*pulled.borrow() <= 8, "{} items taken for the first output", pulled.borrow());
    }
}
