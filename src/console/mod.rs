//! The operator console (docs/operating.md, "The operator console"): what people and Prometheus look at.
//!
//! - [`page`]: the dashboard page (`GET /api/v1/jobs/ui`), static files that hold no data and read
//!   the JSON routes with the secret the operator types in.
//! - [`Estate`] (`GET /api/v1/jobs/console`): what the page shows beyond the overview and the runs:
//!   the dead-letter queue and the organizations with the largest backlog, connections by health with the latest reasons, expiring tokens, the
//!   businesses Meta holds, and what the app last learnt of Meta's limits.
//! - [`metrics`] (`GET /api/v1/metrics`): the same figures, and the jobs', for Prometheus.
//!
//! Everything is read from Postgres and Redis when asked; nothing is counted up in the component,
//! so every replica answers the same.

pub mod estate;
pub mod metrics;
// Answers with the router's response type, which only the wasm build has.
#[cfg(target_arch = "wasm32")]
pub mod page;

use serde::Serialize;

use crate::config::{ConfigError, Source, SpinVariables};
use crate::edges::Edges;
use crate::jobs::health_check::meta_limits::{self, MetaLimits};
use crate::jobs::health_check::settings::token_expiry_warning_days;
use crate::jobs::webhook_retry::policy::Rules;
use crate::jobs::webhook_retry::queue::{self, Gauges, TenantBacklog};
use crate::runner::RunError;
use estate::{ExpiringTokens, HealthCount, HeldConnections, Unhealthy};

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Estate {
    pub webhooks: Gauges,
    /// The ten organizations with the largest backlog of webhooks.
    pub organizations: Vec<TenantBacklog>,
    pub connections: Vec<HealthCount>,
    /// The latest unhealthy connections ([`estate::LISTED`] at most) and why.
    pub unhealthy: Vec<Unhealthy>,
    pub expiring_tokens: ExpiringTokens,
    /// Meta's latest usage figures, and its cool-down while one is on.
    pub meta: MetaLimits,
    /// The businesses Meta holds ([`estate::LISTED`] at most) and their connections.
    pub held: Vec<HeldConnections>,
}

/// The jobs' settings the console reads: the queue's rules, and what makes a token expiring.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    pub rules: Rules,
    pub token_expiry_warning_days: u32,
}

impl Settings {
    pub fn load() -> Result<Self, ConfigError> {
        Self::from_source(&SpinVariables)
    }

    pub fn from_source(src: &impl Source) -> Result<Self, ConfigError> {
        Ok(Self {
            rules: Rules::from_source(src)?,
            token_expiry_warning_days: token_expiry_warning_days(src)?,
        })
    }
}

pub fn estate(edges: &Edges, settings: &Settings) -> Result<Estate, RunError> {
    let (db, redis) = (edges.db()?, edges.redis()?);
    Ok(Estate {
        webhooks: queue::counts(db, &settings.rules)?,
        organizations: queue::tenant_backlogs(db, &settings.rules)?,
        connections: estate::by_health(db)?,
        unhealthy: estate::latest_unhealthy(db)?,
        expiring_tokens: estate::expiring_tokens(db, settings.token_expiry_warning_days)?,
        meta: meta_limits::read(redis)?,
        held: estate::held_connections(db, meta_limits::held_businesses(redis, estate::LISTED as usize)?)?,
    })
}
