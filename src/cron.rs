//! The cron entry point (`fermyon:spin-cron`): runs the job named by the component's `job`
//! variable, through the same runner as the HTTP route. The trigger only logs what this returns,
//! so a failure is a message with its context, not a type to match on.

use serde_json::json;

use crate::config::Config;
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
        spin_executor::run(run()).map_err(Error::Other)
    }
}

export!(Cron);

async fn run() -> Result<(), String> {
    let name = spin_sdk::variables::get("job").map_err(|e| format!("variable job: {e}"))?;
    let job = JobType::parse(&name).ok_or_else(|| format!("variable job names no job: {name:?}"))?;
    let config = Config::load().map_err(|e| {
        Logger::new(job.log_name()).error("configuration error", json!({ "error": e.to_string() }));
        e.to_string()
    })?;
    match runner::run_job(job, Trigger::Cron, &config, false).await {
        Ok(_) => Ok(()),
        // Another run (HTTP, another replica) has it: this tick has nothing to do.
        Err(e) if e.is_contention() => Ok(()),
        Err(e) => Err(e.to_string()),
    }
}
