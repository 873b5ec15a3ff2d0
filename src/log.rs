//! One JSON object per line, tagged with the job, so that `grep HealthCheckJob` finds a run.
//!
//! Callers pass only counts, ids and reasons built by this crate; tokens, keys and secrets never
//! reach a log call (the integration tests grep the captured output to hold us to that).

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};

use serde_json::{json, Map, Value};

use crate::urls;

/// Set by the command door, whose stdout is the run's result line alone.
static INFO_ON_STDERR: AtomicBool = AtomicBool::new(false);

/// Every log line goes to stderr from now on.
pub fn all_to_stderr() {
    INFO_ON_STDERR.store(true, Ordering::Relaxed);
}

#[derive(Debug, Clone)]
pub struct Logger {
    job: &'static str,
    job_id: Option<String>,
}

impl Logger {
    pub fn new(job: &'static str) -> Self {
        Self { job, job_id: None }
    }

    pub fn with_job_id(&self, job_id: &str) -> Self {
        Self { job: self.job, job_id: Some(job_id.to_owned()) }
    }

    pub fn info(&self, msg: &str, fields: Value) {
        let line = self.line("info", msg, fields);
        if INFO_ON_STDERR.load(Ordering::Relaxed) {
            emit(&mut std::io::stderr(), line);
        } else {
            emit(&mut std::io::stdout(), line);
        }
    }

    pub fn warn(&self, msg: &str, fields: Value) {
        emit(&mut std::io::stderr(), self.line("warn", msg, fields));
    }

    pub fn error(&self, msg: &str, fields: Value) {
        emit(&mut std::io::stderr(), self.line("error", msg, fields));
    }

    fn line(&self, level: &str, msg: &str, fields: Value) -> String {
        let mut obj = Map::new();
        obj.insert("ts".into(), json!(crate::time::unix_millis()));
        obj.insert("level".into(), json!(level));
        obj.insert("job".into(), json!(self.job));
        if let Some(id) = &self.job_id {
            obj.insert("jobId".into(), json!(id));
        }
        obj.insert("msg".into(), json!(msg));
        if let Value::Object(extra) = fields {
            obj.extend(extra);
        }
        // Last line of defence: whatever an error quoted, no URL leaves with its password.
        urls::redact(&Value::Object(obj).to_string())
    }
}

/// A log line the host will not take (a closed or full pipe) is dropped: `println!` would panic
/// and end the run over its log, mid-way through its work.
fn emit(out: &mut impl Write, mut line: String) {
    line.push('\n');
    let _ = out.write_all(line.as_bytes());
}
