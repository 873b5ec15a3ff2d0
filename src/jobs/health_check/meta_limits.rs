//! What the app has learnt of Meta's limits, kept in Redis for every replica and later run
//! (see [`super::pacing`] for what a run does about them): the cool-downs a throttle starts, and
//! Meta's latest usage figures, each with the time it was read, which every run starts from and
//! the status route, the metrics and the console show.

use std::collections::BTreeMap;
use std::time::UNIX_EPOCH;

use serde::{Deserialize, Serialize};
use serde_json::json;

use super::pacing::Pacing;
use super::JobContext;
use crate::alerts::Alert;
use crate::graph::limits::{Reported, Usage};
use crate::redis::{self, Redis, RedisError};
use crate::time;

/// What an operator sees of Meta's limits.
#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MetaLimits {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub graph_usage: Option<KnownUsage>,
    /// When Meta's app-wide cool-down ends, while one is on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cool_down_until: Option<String>,
}

/// Meta's latest figures, each as last read by any run on any replica, with when.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KnownUsage {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app: Option<Seen>,
    #[serde(default)]
    pub businesses: BTreeMap<String, Seen>,
}

/// One limit's figures and when they were read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Seen {
    #[serde(flatten)]
    pub reported: Reported,
    /// ISO 8601, UTC.
    pub at: String,
}

impl Seen {
    fn read_at_ms(&self) -> u64 {
        humantime::parse_rfc3339(&self.at)
            .ok()
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_millis() as u64)
    }

    /// At or above `ceiling`, and read within Meta's rolling hour before `now_ms`.
    fn at_ceiling(&self, ceiling: f64, now_ms: u64) -> bool {
        self.reported.figures.peak() >= ceiling && now_ms.saturating_sub(self.read_at_ms()) < HOUR_MS
    }
}

/// Meta counts usage over a rolling hour: an older figure says nothing about now.
const HOUR_MS: u64 = 3_600_000;
/// Businesses kept below the ceiling, the busiest first: enough to show, few enough that the
/// key stays small with any number of businesses (and the metrics' labels bounded).
const BUSIEST_KEPT: usize = 10;

/// Which kept figures were at or above the ceiling within the last hour.
pub struct Peaks {
    pub app: bool,
    pub businesses: Vec<String>,
}

impl KnownUsage {
    /// Takes in an answer's figures, read at `now_ms`.
    pub fn record(&mut self, usage: &Usage, now_ms: u64) {
        let at = time::iso_millis(now_ms);
        if let Some(app) = usage.app {
            self.app = Some(Seen { reported: app, at: at.clone() });
        }
        for (business, reported) in &usage.businesses {
            self.businesses.insert(business.clone(), Seen { reported: *reported, at: at.clone() });
        }
    }

    pub fn recent_peaks(&self, ceiling: f64, now_ms: u64) -> Peaks {
        Peaks {
            app: self.app.as_ref().is_some_and(|app| app.at_ceiling(ceiling, now_ms)),
            businesses: self
                .businesses
                .iter()
                .filter(|(_, seen)| seen.at_ceiling(ceiling, now_ms))
                .map(|(id, _)| id.clone())
                .collect(),
        }
    }

    /// What is worth keeping: the app's figures, every business at the ceiling within the hour,
    /// and the [`BUSIEST_KEPT`] busiest of the others.
    pub fn pruned(&self, ceiling: f64, now_ms: u64) -> KnownUsage {
        let (mut kept, mut others): (BTreeMap<_, _>, Vec<_>) =
            (BTreeMap::new(), Vec::with_capacity(self.businesses.len()));
        for (id, seen) in &self.businesses {
            if seen.at_ceiling(ceiling, now_ms) {
                kept.insert(id.clone(), seen.clone());
            } else {
                others.push((id, seen));
            }
        }
        others.sort_by(|a, b| b.1.reported.figures.peak().total_cmp(&a.1.reported.figures.peak()));
        kept.extend(others.into_iter().take(BUSIEST_KEPT).map(|(id, seen)| (id.clone(), seen.clone())));
        KnownUsage { app: self.app.clone(), businesses: kept }
    }
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

/// A business Meta holds (throttled: its connections wait), and until when.
#[derive(Debug, Serialize)]
pub struct Held {
    pub business: String,
    pub until: String,
}

/// The businesses Meta holds now, soonest end first, at most `limit`.
pub fn held_businesses(redis: &Redis, limit: usize) -> Result<Vec<Held>, RedisError> {
    let held = redis.business_cool_downs(time::unix_millis(), limit)?;
    Ok(held.into_iter().map(|(business, until)| Held { business, until: time::iso_millis(until) }).collect())
}

/// What the overview says of Meta's holds on the health check, if there are any: the app's
/// cool-down, else the business whose hold ends first (and how many are held).
pub fn hold_summary(redis: &Redis) -> Result<Option<String>, RedisError> {
    let cooling = redis.cool_downs(time::unix_millis())?;
    if let Some(until) = cooling.app_until {
        return Ok(Some(format!("Meta throttled the app: no Graph call until {}", time::iso_millis(until))));
    }
    let Some(first) = held_businesses(redis, 1)?.into_iter().next() else {
        return Ok(None);
    };
    let others = match cooling.businesses.len() {
        0 | 1 => String::new(),
        n => format!(" ({n} businesses held)"),
    };
    Ok(Some(format!(
        "Meta holds business {} until {}{others}: its connections are not checked until then",
        first.business, first.until
    )))
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

/// The figures earlier runs kept: nothing when there are none, or Redis holds something else.
pub fn known_usage(ctx: &JobContext<'_>) -> Result<KnownUsage, RedisError> {
    let values = ctx.redis.values(&[redis::GRAPH_USAGE_KEY])?;
    Ok(values[0].as_deref().and_then(|v| serde_json::from_str(v).ok()).unwrap_or_default())
}

/// Keeps the figures this run has read since the last call, for every later run and replica.
pub fn save_usage(ctx: &JobContext<'_>, pacing: &mut Pacing) {
    let Some(known) = pacing.usage_to_save(time::unix_millis()) else {
        return;
    };
    let saved = serde_json::to_string(&known)
        .map_err(|e| e.to_string())
        .and_then(|json| ctx.redis.save_graph_usage(&json).map_err(|e| e.to_string()));
    if let Err(e) = saved {
        ctx.log.warn("Meta's usage figures not kept", json!({ "error": e }));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::limits::Figures;

    const NOW: u64 = 1_800_000_000_000;

    fn app(peak: f64) -> Usage {
        let reported =
            Reported { figures: Figures { total_time: peak, ..Figures::default() }, regain_minutes: None };
        Usage { app: Some(reported), businesses: BTreeMap::new() }
    }

    #[test]
    fn kept_figures_are_bounded_and_keep_every_one_at_the_ceiling() {
        let mut known = KnownUsage::default();
        for i in 0..100 {
            let mut usage = app(f64::from(i));
            usage.businesses.insert(format!("b{i}"), usage.app.unwrap());
            known.record(&usage, NOW - 1_000 * u64::from(i as u32));
        }
        let kept = known.pruned(95.0, NOW);
        let ids: Vec<&str> = kept.businesses.keys().map(String::as_str).collect();
        // b95..b99 at the ceiling, then the ten busiest of the others: b85..b94.
        assert_eq!(kept.businesses.len(), 15, "{ids:?}");
        assert!(kept.businesses.contains_key("b85") && !kept.businesses.contains_key("b84"), "{ids:?}");
        assert_eq!(kept.app.as_ref().unwrap().reported.figures.total_time, 99.0, "the last one read");
        let json = serde_json::to_string(&kept).unwrap();
        assert_eq!(serde_json::from_str::<KnownUsage>(&json).unwrap(), kept);
        // What an older version kept reads as nothing, not as an error.
        let old: KnownUsage =
            serde_json::from_str(r#"{"at":"2026-01-01T00:00:00.000Z","usage":{}}"#).unwrap();
        assert_eq!(old, KnownUsage::default());
    }
}
