//! The command door (`wasi:cli/run@0.2.0`), as Spin's command trigger and SpinKube's shim call
//! it: a Kubernetes CronJob's pod, or `scripts/run-job.sh`, runs one job once and exits. It runs
//! the job named by the `job` variable through the same runner as the other doors, with the
//! cron budget, and:
//!
//! - prints the run's result as one JSON line on stdout, the HTTP answer's fields (the log lines
//!   go to stderr, so that stdout is that line alone);
//! - succeeds when the run succeeded, was skipped because another run holds the lock, or the
//!   job is paused; fails (a non-zero exit of the pod) when the run failed or the configuration
//!   is wrong, with the reason on stderr, so that a Kubernetes Job's status, `backoffLimit` and
//!   failed-jobs history mean what they say.
//!
//! How the exit status comes out, as the command trigger plugin (0.5.0, the line SpinKube's shim
//! embeds) has it: it discards what `run` returns, `Err` included, and reports any WASI `exit`,
//! `exit(0)` included, as a failed run. So a good run returns from `run`, and a failed one calls
//! `exit(1)` once its output is written.

use std::io::Write;

use anyhow::Context;
use serde_json::json;

use crate::api;
use crate::edges::Edges;
use crate::jobs::JobType;
use crate::log::{self, Logger};
use crate::runner::{self, Trigger};

struct Command;

impl wasi::exports::cli::run::Guest for Command {
    fn run() -> Result<(), ()> {
        log::all_to_stderr();
        let (line, result) = spin_executor::run(run());
        // A closed stdout must not turn a good run into a failed pod: the run is recorded.
        let _ = writeln!(std::io::stdout(), "{line}");
        if let Err(reason) = result {
            let _ = writeln!(std::io::stderr(), "{reason:#}");
            let _ = std::io::stdout().flush();
            let _ = std::io::stderr().flush();
            std::process::exit(1);
        }
        Ok(())
    }
}

wasi::cli::command::export!(Command);

/// The result line, and whether the pod should succeed.
async fn run() -> (String, anyhow::Result<()>) {
    let job = match JobType::named_by_variable() {
        Ok(job) => job,
        Err(e) => return (api::failure_body(&format!("{e:#}")), Err(e)),
    };
    let settings = match runner::Settings::load(job) {
        Ok(settings) => settings,
        Err(e) => {
            Logger::new(job.log_name()).error("configuration error", json!({ "error": e.to_string() }));
            return (api::failure_body(&e.to_string()), Err(e.into()));
        }
    };
    let edges = Edges::new(Some(&settings.config.database_url), &settings.config.redis_url);
    match runner::run_job(&settings, Trigger::Command, &edges, false).await {
        Ok(done) => (api::success_body(api::RunDone::of(job, &done)), Ok(())),
        // Another run (a CronJob's earlier pod, the HTTP route) has it: nothing went wrong.
        Err(e) if e.is_contention() => (api::failure_body(&e.to_string()), Ok(())),
        Err(e) => {
            let line = api::failure_body(&e.to_string());
            (line, Err(e).with_context(|| format!("running {}", job.as_str())))
        }
    }
}
