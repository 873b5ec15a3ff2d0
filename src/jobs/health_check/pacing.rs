//! When the health check stops calling Meta (SPEC section 5, step 7). Throttling is a limit of
//! ours, never a finding about a customer: a connection Meta refused to answer for because of a
//! limit was not checked, and keeps its status and its place at the head of the line.
//!
//! 1. Meta throttles the app (codes 4, 613): the run starts no further Graph call (requests in
//!    flight finish), and an app-wide cool-down is kept in Redis for Meta's
//!    `estimated_time_to_regain_access`, else [`DEFAULT_COOL_DOWN_MINUTES`], so that no run on
//!    any replica calls Meta before it ends.
//! 2. Meta throttles a business (17, 32, 80000-80014): that business's connections wait for a
//!    later run, with a cool-down of their own; the run goes on with the others.
//! 3. The usage headers reach `graph_usage_ceiling_percent`: the same, before Meta has to say
//!    it (the app's figures stop the run, a business's figures hold that business), without a
//!    cool-down: the next run reads the figures afresh.
//! 4. The platform's limit: the hour's `outbound_requests_per_hour` is spent. The run starts no
//!    further request; the next hour has a fresh allowance.
//!
//! This module is the run's memory of all that, as data: the job feeds it each request's
//! answers and asks it before each request.

use std::collections::HashMap;

use crate::graph::limits::{throttle_of, Throttle, Usage};
use crate::graph::{Answer, GraphError, Probed};

/// Minutes a throttle keeps Meta uncalled when Meta does not say how long.
pub const DEFAULT_COOL_DOWN_MINUTES: u32 = 15;

/// Why a connection was not checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Halt {
    /// Meta answered with a throttling code.
    Throttled,
    /// Meta's usage figures reached the ceiling.
    Paced,
    /// The platform's: the hour's outbound allowance is spent (`outbound_requests_per_hour`).
    Allowance,
}

/// A throttle Meta announced: kept in Redis so later runs wait, and alerted once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CoolDown {
    /// `None` for the app as a whole.
    pub business: Option<String>,
    pub minutes: u32,
}

pub struct Pacing {
    ceiling: f64,
    halted: Option<Halt>,
    held: HashMap<String, Halt>,
    /// The newest figures Meta sent this run.
    pub usage: Usage,
    /// Throttles seen and not yet written down.
    fresh: Vec<CoolDown>,
}

impl Pacing {
    /// `cooling`: the businesses whose cool-down, from an earlier run, has not ended.
    pub fn new(ceiling_percent: u32, cooling: impl IntoIterator<Item = String>) -> Self {
        Self {
            ceiling: f64::from(ceiling_percent),
            halted: None,
            held: cooling.into_iter().map(|b| (b, Halt::Throttled)).collect(),
            usage: Usage::default(),
            fresh: Vec::new(),
        }
    }

    /// Set once the run must start no further Graph call.
    pub fn halted(&self) -> Option<Halt> {
        self.halted
    }

    /// The hour's outbound allowance is spent: no further request this run.
    pub fn halt_for_allowance(&mut self) {
        self.halted.get_or_insert(Halt::Allowance);
    }

    /// Why `business`'s connections wait for a later run, if they do.
    pub fn holds(&self, business: &str) -> Option<Halt> {
        self.halted.or_else(|| self.held.get(business).copied())
    }

    /// Reads one request's answers, `businesses[i]` being the business of `probed[i]`: which of
    /// them were not checked (a throttle in any of its answers), in order.
    pub fn observe(&mut self, businesses: &[&str], probed: &[Probed], usage: Usage) -> Vec<Option<Halt>> {
        let verdicts = businesses
            .iter()
            .zip(probed)
            .map(|(business, probed)| {
                let throttle = throttle_in(probed)?;
                match throttle {
                    Throttle::App if self.halted != Some(Halt::Throttled) => {
                        self.halted = Some(Halt::Throttled);
                        let minutes = usage.longest_regain_minutes();
                        self.fresh.push(CoolDown { business: None, minutes: or_default(minutes) });
                    }
                    Throttle::Business if self.held.get(*business) != Some(&Halt::Throttled) => {
                        self.held.insert((*business).to_owned(), Halt::Throttled);
                        let minutes = usage.businesses.get(*business).and_then(|b| b.regain_minutes);
                        self.fresh.push(CoolDown {
                            business: Some((*business).to_owned()),
                            minutes: or_default(minutes),
                        });
                    }
                    _ => {}
                }
                Some(Halt::Throttled)
            })
            .collect();
        if usage.app.is_some_and(|app| app.peak() >= self.ceiling) {
            self.halted.get_or_insert(Halt::Paced);
        }
        for (business, figures) in &usage.businesses {
            if figures.figures.peak() >= self.ceiling {
                self.held.entry(business.clone()).or_insert(Halt::Paced);
            }
        }
        self.usage.update(usage);
        verdicts
    }

    /// The throttles seen since the last call, to write down and alert.
    pub fn take_cool_downs(&mut self) -> Vec<CoolDown> {
        std::mem::take(&mut self.fresh)
    }
}

fn or_default(minutes: Option<u32>) -> u32 {
    minutes.filter(|m| *m > 0).unwrap_or(DEFAULT_COOL_DOWN_MINUTES)
}

/// The throttle any of a connection's answers reports; the app's wins.
fn throttle_in(probed: &Probed) -> Option<Throttle> {
    let debug = probed.debug.as_ref().and_then(error_of).and_then(throttle_of);
    let node = error_of(&probed.node).and_then(throttle_of);
    debug.into_iter().chain(node).min_by_key(|t| *t != Throttle::App)
}

fn error_of<T>(answer: &Answer<T>) -> Option<&GraphError> {
    match answer {
        Answer::Error { error, .. } => Some(error),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::limits::{BusinessUsage, Figures};
    use crate::graph::PhoneHealth;

    fn healthy() -> Probed {
        Probed { debug: None, node: Answer::Ok(PhoneHealth::default()), ms: 1 }
    }

    fn throttled(code: i64) -> Probed {
        let error = GraphError {
            code,
            subcode: None,
            kind: "OAuthException".into(),
            message: String::new(),
            is_transient: true,
        };
        Probed { debug: None, node: Answer::Error { http_status: 400, error }, ms: 1 }
    }

    fn business_usage(id: &str, peak: f64, regain: Option<u32>) -> Usage {
        let figures = Figures { call_count: peak, ..Figures::default() };
        Usage {
            app: None,
            businesses: [(id.to_owned(), BusinessUsage { figures, regain_minutes: regain })].into(),
        }
    }

    #[test]
    fn an_app_throttle_halts_the_run_once_with_metas_wait() {
        let mut pacing = Pacing::new(90, []);
        let verdicts = pacing.observe(
            &["b1", "b2", "b3"],
            &[healthy(), throttled(4), throttled(613)],
            business_usage("b9", 100.0, Some(12)),
        );
        assert_eq!(verdicts, [None, Some(Halt::Throttled), Some(Halt::Throttled)]);
        assert_eq!(pacing.halted(), Some(Halt::Throttled));
        assert_eq!(pacing.holds("anyone"), Some(Halt::Throttled));
        assert_eq!(pacing.take_cool_downs(), [CoolDown { business: None, minutes: 12 }]);
        assert!(pacing.take_cool_downs().is_empty());
    }

    #[test]
    fn a_business_throttle_holds_that_business_only() {
        let mut pacing = Pacing::new(90, ["b0".to_owned()]);
        let verdicts = pacing.observe(&["b1", "b2"], &[throttled(80_007), healthy()], Usage::default());
        assert_eq!(verdicts, [Some(Halt::Throttled), None]);
        assert_eq!(pacing.halted(), None);
        assert_eq!(
            (pacing.holds("b0"), pacing.holds("b1"), pacing.holds("b2")),
            (Some(Halt::Throttled), Some(Halt::Throttled), None)
        );
        assert_eq!(
            pacing.take_cool_downs(),
            [CoolDown { business: Some("b1".into()), minutes: DEFAULT_COOL_DOWN_MINUTES }]
        );
    }

    #[test]
    fn usage_at_the_ceiling_paces_without_a_cool_down() {
        let mut pacing = Pacing::new(90, []);
        pacing.observe(&["b1"], &[healthy()], business_usage("b1", 89.0, None));
        assert_eq!(pacing.holds("b1"), None);
        pacing.observe(&["b1"], &[healthy()], business_usage("b1", 90.0, None));
        assert_eq!((pacing.holds("b1"), pacing.halted()), (Some(Halt::Paced), None));
        let app = Usage { app: Some(Figures { total_time: 95.0, ..Figures::default() }), ..Usage::default() };
        assert_eq!(pacing.observe(&["b2"], &[healthy()], app), [None]);
        assert_eq!(pacing.halted(), Some(Halt::Paced));
        assert!(pacing.take_cool_downs().is_empty());
        assert_eq!(pacing.usage.app.unwrap().total_time, 95.0);
    }
}
