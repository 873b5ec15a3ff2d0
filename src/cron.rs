//! The cron entry point (`fermyon:spin-cron`): runs the job named by the component's `job`
//! variable, through the same runner as the HTTP route. The trigger only logs what this returns,
//! so a failure is an `anyhow` error with its context, not a type to match on.

use anyhow::Context;
use serde_json::json;

use crate::edges::Edges;
use crate::jobs::JobType;
use crate::log::Logger;
use crate::runner::{self, Trigger};

wit_bindgen::generate!({
    world: "spin-cron",
    path: "wit",
});

struct Cron;

impl Guest for Cron {
    fn handle_cron_event(_metadata: Metadata) -> Result<(), Error> {
        spin_executor::run(run()).map_err(|e| Error::Other(format!("{e:#}")))
    }
}

export!(Cron);

async fn run() -> anyhow::Result<()> {
    let job = JobType::named_by_variable()?;
    let settings = runner::Settings::load(job).inspect_err(|e| {
        Logger::new(job.log_name()).error("configuration error", json!({ "error": e.to_string() }));
    })?;
    let edges = Edges::new(Some(&settings.config.database_url), &settings.config.redis_url);
    match runner::run_job(&settings, Trigger::Cron, &edges, false).await {
        Ok(_) => Ok(()),
        // Another run (HTTP, another replica) has it: this tick has nothing to do.
        Err(e) if e.is_contention() => Ok(()),
        Err(e) => Err(e).with_context(|| format!("running {}", job.as_str())),
    }
}
