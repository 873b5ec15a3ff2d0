//! What the app has learnt of Meta's limits, kept in Redis for every replica and later run
//! (see [`super::pacing`] for what a run does about them): the cool-downs a throttle starts, and
//! Meta's latest usage figures, which the status route, the metrics and the console show.

use serde::{Deserialize, Serialize};
use serde_json::json;

use super::pacing::Pacing;
use crate::alerts::Alert;
use crate::context::JobContext;
use crate::graph::limits::Usage;
use crate::redis::{self, Redis, RedisError};
use crate::time;

/// What an operator sees of Meta's limits.
#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MetaLimits {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub graph_usage: Option<StoredUsage>,
    /// When Meta's app-wide cool-down ends, while one is on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cool_down_until: Option<String>,
}

/// Meta's latest figures, and when they came.
#[derive(Debug, Serialize, Deserialize)]
pub struct StoredUsage {
    pub at: String,
    pub usage: Usage,
}

/// The Redis keys [`MetaLimits::from_values`] reads, for a caller that reads others with them.
pub const KEYS: [&str; 2] = [redis::GRAPH_USAGE_KEY, redis::APP_COOL_DOWN_KEY];

impl MetaLimits {
    /// From the values of [`KEYS`], in that order.
    pub fn from_values(usage: Option<&str>, cool_down_until: Option<&str>) -> Self {
        MetaLimits {
            graph_usage: usage.and_then(|u| serde_json::from_str(u).ok()),
            cool_down_until: cool_down_until
                .and_then(|u| u.parse::<u64>().ok())
                .filter(|u| *u > time::unix_millis())
                .map(time::iso_millis),
        }
    }
}

pub fn read(redis: &Redis) -> Result<MetaLimits, RedisError> {
    let values = redis.values(&KEYS)?;
    Ok(MetaLimits::from_values(values[0].as_deref(), values[1].as_deref()))
}

/// Writes down the throttles seen since the last call, so that no run on any replica calls Meta
/// before they end; returns the alert each owes. A cool-down Redis would not keep is logged: the
/// run itself has stopped calling all the same.
pub fn keep_cool_downs(ctx: &JobContext<'_>, pacing: &mut Pacing) -> Vec<Alert> {
    let now = time::unix_millis();
    let mut alerts = Vec::new();
    for cool_down in pacing.take_cool_downs() {
        let until = now + u64::from(cool_down.minutes) * 60_000;
        let business = cool_down.business.as_deref();
        let fields = json!({ "business": business, "coolDownUntil": time::iso_millis(until) });
        ctx.log.warn("Meta throttled the app's calls", fields);
        if let Err(e) = ctx.redis.cool_down(business, until, now) {
            ctx.log.error(
                "cool-down not kept: the next run may call Meta too soon",
                json!({ "error": e.to_string() }),
            );
        }
        alerts.push(Alert::throttled(business, &time::iso_millis(until)));
    }
    alerts
}

/// Keeps Meta's latest figures, when it sent any.
pub fn save_usage(ctx: &JobContext<'_>, usage: &Usage) {
    if usage.is_empty() {
        return;
    }
    let stored = StoredUsage { at: time::iso_millis(time::unix_millis()), usage: usage.clone() };
    let saved = serde_json::to_string(&stored)
        .map_err(|e| e.to_string())
        .and_then(|json| ctx.redis.save_graph_usage(&json).map_err(|e| e.to_string()));
    if let Err(e) = saved {
        ctx.log.warn("Meta's usage figures not kept", json!({ "error": e }));
    }
}
