//! What Prometheus scrapes (`GET /api/v1/metrics`, Bearer auth): the jobs' state and the
//! [`Estate`](super::Estate), in the Prometheus text format (version 0.0.4). Every figure is a
//! gauge, read afresh at each scrape.

use std::fmt::Write;

use super::Estate;
use crate::edges::Edges;
use crate::graph::limits::Figures;
use crate::jobs::health_check::meta_limits::MetaLimits;
use crate::runner::overview::{self, JobState};
use crate::runner::{job_runs, RunError};

pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// A per-job gauge: name, help, and how to read it off the job's state.
type JobGauge = (&'static str, &'static str, fn(&JobState) -> bool);

/// The text format, written as it goes: a metric's header, then its samples.
struct Text(String);

impl Text {
    fn metric(&mut self, name: &str, help: &str) {
        let _ = writeln!(self.0, "# HELP {name} {help}\n# TYPE {name} gauge");
    }

    /// `labels`: `(name, value)` pairs; values escaped as the format asks.
    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: i64) {
        self.0.push_str(name);
        for (i, (label, v)) in labels.iter().enumerate() {
            let v = v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n");
            let _ = write!(self.0, "{}{label}=\"{v}\"", if i == 0 { '{' } else { ',' });
        }
        let _ = writeln!(self.0, "{} {value}", if labels.is_empty() { "" } else { "}" });
    }
}

pub fn render(
    edges: &Edges,
    overdue: &overview::Settings,
    console: &super::Settings,
) -> Result<String, RunError> {
    let jobs = overview::states(edges, overdue)?;
    let estate = super::estate(edges, console)?;
    let mut out = Text(String::new());
    job_states(&mut out, &jobs);
    runs(&mut out, edges, &jobs)?;
    queue(&mut out, &estate);
    connections(&mut out, &estate);
    meta_limits(&mut out, estate.meta);
    Ok(out.0)
}

fn job_states(out: &mut Text, jobs: &[JobState]) {
    let states: [JobGauge; 3] = [
        ("whatrack_job_running", "1 while a run of the job holds its lock.", |j| j.is_running),
        ("whatrack_job_overdue", "1 when the job's last success is older than its schedule allows.", |j| {
            j.overdue
        }),
        ("whatrack_job_paused", "1 while an operator has paused the job.", |j| j.paused),
    ];
    for (name, help, value) in states {
        out.metric(name, help);
        for job in jobs {
            out.sample(name, &[("job", job.job_type)], value(job).into());
        }
    }
}

fn runs(out: &mut Text, edges: &Edges, jobs: &[JobState]) -> Result<(), RunError> {
    const RUNS: &str = "whatrack_job_runs_24h";
    out.metric(RUNS, "Runs of the job started in the last 24 hours, by status.");
    for runs in job_runs::runs_24h(edges.db()?)? {
        out.sample(RUNS, &[("job", &runs.job_type), ("status", runs.status.as_str())], runs.count as i64);
    }
    const SUCCESS: &str = "whatrack_job_last_success_timestamp_seconds";
    const DURATION: &str = "whatrack_job_last_duration_milliseconds";
    let times =
        jobs.iter().map(|j| job_runs::last_times(edges.db()?, j.job_type)).collect::<Result<Vec<_>, _>>()?;
    for (name, help, pick) in [
        (SUCCESS, "When the job's last successful run ended (unix time).", 0),
        (DURATION, "How long the job's last finished run took.", 1),
    ] {
        out.metric(name, help);
        for (job, times) in jobs.iter().zip(&times) {
            if let Some(value) = [times.last_success, times.last_duration_ms][pick] {
                out.sample(name, &[("job", job.job_type)], value);
            }
        }
    }
    Ok(())
}

fn queue(out: &mut Text, estate: &Estate) {
    let webhooks = &estate.webhooks;
    const WEBHOOKS: &str = "whatrack_webhooks";
    out.metric(WEBHOOKS, "Webhooks waiting for a retry (pending; due now, among them) and dead-lettered.");
    for (state, n) in [("pending", webhooks.pending), ("due", webhooks.due), ("dead", webhooks.dead)] {
        out.sample(WEBHOOKS, &[("state", state)], n as i64);
    }
    const BY_ORGANIZATION: &str = "whatrack_webhooks_by_organization";
    out.metric(
        BY_ORGANIZATION,
        "Due and dead-lettered webhooks of the ten organizations with the largest backlog; organization none: the webhooks without one.",
    );
    for tenant in &estate.organizations {
        let organization = tenant.organization_id.as_deref().unwrap_or("none");
        for (state, n) in [("due", tenant.due), ("dead", tenant.dead)] {
            out.sample(BY_ORGANIZATION, &[("organization", organization), ("state", state)], n as i64);
        }
    }
    const OLDEST: &str = "whatrack_webhooks_oldest_due_age_seconds";
    out.metric(OLDEST, "How long the oldest due webhook has waited for its retry (0 when none is due).");
    out.sample(OLDEST, &[], webhooks.oldest_due_age_seconds as i64);
}

fn connections(out: &mut Text, estate: &Estate) {
    const CONNECTIONS: &str = "whatrack_connections";
    out.metric(CONNECTIONS, "Active WhatsApp connections by health status.");
    for c in &estate.connections {
        out.sample(CONNECTIONS, &[("health", &c.health)], c.count as i64);
    }
    const EXPIRING: &str = "whatrack_tokens_expiring";
    out.metric(EXPIRING, "Tokens of active connections that expire within token_expiry_warning_days.");
    out.sample(EXPIRING, &[], estate.expiring_tokens.count as i64);
}

fn meta_limits(out: &mut Text, meta: MetaLimits) {
    if let Some(known) = meta.graph_usage {
        const APP: &str = "whatrack_graph_app_usage_percent";
        const BUSINESS: &str = "whatrack_graph_business_usage_percent";
        let figures = |f: &Figures| {
            [("call_count", f.call_count), ("total_cputime", f.total_cputime), ("total_time", f.total_time)]
        };
        if let Some(app) = known.app {
            out.metric(APP, "Meta's latest X-App-Usage figures: the app's share of its hourly limit.");
            for (figure, value) in figures(&app.reported.figures) {
                out.sample(APP, &[("figure", figure)], value.round() as i64);
            }
        }
        if !known.businesses.is_empty() {
            out.metric(
                BUSINESS,
                "Meta's latest X-Business-Use-Case-Usage figures, per business (WABA): those at the ceiling and the busiest.",
            );
            for (business, seen) in &known.businesses {
                for (figure, value) in figures(&seen.reported.figures) {
                    out.sample(BUSINESS, &[("business", business), ("figure", figure)], value.round() as i64);
                }
            }
        }
    }
    const COOLING: &str = "whatrack_graph_cool_down";
    out.metric(
        COOLING,
        "1 while Meta's app-wide throttle keeps the health check from calling the Graph API.",
    );
    out.sample(COOLING, &[], meta.cool_down_until.is_some().into());
}
