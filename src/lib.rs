//! whatrack-jobs: WhaTrack's scheduled jobs as one Spin component.
//!
//! Map of the crate, one job per module:
//!
//! - [`router`] and [`cron`]: the two entry points. The router turns HTTP requests into job runs
//!   and job results into the contract's JSON; the cron handler runs the job named by the
//!   component's `job` variable. Both call [`runner::run_job`], nothing else.
//! - [`runner`]: the life of one run, whatever started it: reserve a jobId, take the Redis lock,
//!   record the run in `job_runs`, run the job within its time budget, release the lock.
//! - [`health_check`]: the WhatsApp token health check (SPEC section 5), with its pure
//!   classification in [`health_check::classify`].
//! - [`overview`]: what monitors read: each job's last run, last success, and whether it is
//!   overdue.
//! - [`retention`]: the bounded cleanup of old audit rows, run by the health check.
//! - [`webhook_retry`]: the webhook dead-letter queue (SPEC section 6), with its pure retry
//!   policy in [`webhook_retry::policy`].
//! - Edges, one outside system each: [`config`] (Spin variables), [`db`] (every SQL statement),
//!   [`lock`] (Redis: the lock and the alert throttle), [`graph`] (Meta's Graph API),
//!   [`outbound`] (HTTP with a timeout), [`alerts`] (the alert receiver), [`crypto`] (WhaTrack's
//!   token ciphertext), [`auth`] (the shared secret), [`log`] (JSON lines).
//!
//! Errors: each edge has its own error type that says which system failed and why; the runner
//! folds them into [`runner::RunError`], and only the router turns that into HTTP status codes.

pub mod alerts;
pub mod auth;
pub mod config;
pub mod crypto;
pub mod db;
pub mod graph;
pub mod health_check;
pub mod lock;
pub mod log;
pub mod outbound;
pub mod overview;
pub mod retention;
pub mod runner;
pub mod time;
pub mod webhook_retry;

// The entry points export component symbols (`wasi:http/incoming-handler@0.2.0#handle`) that a
// native shared library cannot carry; natively the crate is the library the unit and
// integration tests link.
#[cfg(target_arch = "wasm32")]
mod cron;
#[cfg(target_arch = "wasm32")]
mod router;
