//! whatrack-jobs: WhaTrack's scheduled jobs as one Spin component.
//!
//! Map of the crate. Dependencies point one way, down this list:
//!
//! - [`router`], [`cron`] and [`command`]: the three doors. The router finds the request's row
//!   in the route table ([`routes`], data), checks the secret, then has one small function per
//!   route; the cron handler and the command door (`wasi:cli/run`,
//!   for Kubernetes CronJobs and `scripts/run-job.sh`) run the job named by the component's
//!   `job` variable. All start runs through [`runner::run_job`]. [`api`] holds the contract's
//!   JSON bodies, one type per shape.
//! - [`runner`]: the life of one run, whatever started it: reserve a jobId, take the Redis lock,
//!   record the run in `job_runs` ([`runner::job_runs`]), run the job within its time budget,
//!   trim the audit tables after the daily job ([`runner::retention`]), release the lock; and
//!   what monitors read of those rows ([`runner::overview`]).
//! - [`jobs`]: [`jobs::JobType`] dispatches to the jobs, one folder each, holding the job's
//!   logic, its pure rules and its own SQL (`sql/`, one file per statement):
//!   - [`jobs::health_check`]: the token health check; the classification table in
//!     [`jobs::health_check::classify`], its statements in [`jobs::health_check::connections`].
//!   - [`jobs::webhook_retry`]: the dead-letter queue; what happens to a webhook after each
//!     attempt in [`jobs::webhook_retry::policy`], the queue in [`jobs::webhook_retry::queue`]
//!     (every statement on `whatsapp_webhook_logs`, the front door's store included).
//! - [`console`]: what operators look at: the dashboard page, the figures it reads beyond the
//!   overview (the queue's gauges, and [`console::estate`]: connections by health, expiring
//!   tokens) and the same for Prometheus.
//! - [`front_door`]: Meta's webhooks received, verified and stored before anything else, then
//!   forwarded once through the webhook retry's delivery.
//! - [`context`]: what a job gets to work with ([`context::JobContext`], with the bounded,
//!   budgeted concurrency of [`context::JobContext::within_budget`] and the write batching of
//!   [`context::batches`]) and hands back; it knows no job, so jobs and runner never import each
//!   other in a circle.
//! - [`edges`]: the Postgres and Redis one request or run holds, each opened once at the most,
//!   by the door that made it: nothing below the doors opens a connection.
//! - Settings: each module reads its own (`jobs::*::settings`, the front door's, the overview's,
//!   the console's, retention's), and the door loads them before it runs anything;
//!   [`config`] has what every run shares (the stores, budgets, lock, alerts, outbound
//!   allowance), the secret, and the rules every variable is read by.
//! - Edges, one outside system each: [`db`] (Postgres: the
//!   connection, reads decoded with serde, the rules every statement keeps), [`redis`] (the lock
//!   and the alert throttle), [`graph`] (Meta's Graph API), [`outbound`] (HTTP with a timeout),
//!   [`alerts`] (the alert receiver), [`crypto`] (WhaTrack's token ciphertext), [`auth`] (the
//!   shared secret), [`log`] (JSON lines), [`time`] (clocks and deadlines), [`urls`] (splitting,
//!   `allowed_outbound_hosts` entries, and credentials kept out of every message).
//!
//! Errors: each edge has its own error type that says which system failed and why (`thiserror`,
//! since callers match on them); the runner folds them into [`runner::RunError`], and only the
//! router turns that into status codes (the `http` crate's). Where an error only travels up to
//! be reported (the cron door, reading a request's body) it is an `anyhow` error with context.

pub mod alerts;
pub mod auth;
pub mod config;
pub mod console;
pub mod context;
pub mod crypto;
pub mod db;
pub mod edges;
pub mod front_door;
pub mod graph;
pub mod jobs;
pub mod log;
pub mod outbound;
pub mod redis;
pub mod routes;
pub mod runner;
pub mod time;
pub mod urls;

// The doors export component symbols (`wasi:http/incoming-handler@0.2.0#handle`) that a native
// shared library cannot carry; natively the crate is the library the unit and integration tests
// link.
#[cfg(target_arch = "wasm32")]
mod api;
#[cfg(target_arch = "wasm32")]
mod command;
#[cfg(target_arch = "wasm32")]
mod cron;
#[cfg(target_arch = "wasm32")]
mod router;
