//! When the health check stops calling Meta (SPEC section 5, step 7). Throttling is a limit of
//! ours, never a finding about a customer: a connection Meta refused to answer for because of a
//! limit was not checked, and keeps its status and its place at the head of the line.
//!
//! 1. Meta throttles the app (codes 4, 613): the run starts no further Graph call (requests in
//!    flight finish), and an app-wide cool-down is kept in Redis for the app's own wait (Meta's
//!    `estimated_time_to_regain_access` for the app), else [`DEFAULT_COOL_DOWN_MINUTES`], so that
//!    no run on any replica calls Meta before it ends.
//! 2. Meta throttles a business (17, 32, 80000-80014): that business's connections wait for a
//!    later run, with a cool-down of their own (Meta's wait for that business); the run goes on
//!    with the others.
//! 3. The usage headers reach `graph_usage_ceiling_percent`: the same, before Meta has to say
//!    it (the app's figures stop the run, a business's figures hold that business), without a
//!    cool-down. Figures are kept with the time they were read ([`KnownUsage`]), so a run starts
//!    from the latest: with a figure at or above the ceiling read within the last hour, it is
//!    [`Pacing::cautious`]: one request first, and more only if that request's figures are
//!    below the ceiling (a business's fresh figures hold or release that business as the run
//!    goes; a throttled business waits for its cool-down).
//! 4. The platform's limit: the hour's `outbound_requests_per_hour` is spent. The run starts no
//!    further request; the next hour has a fresh allowance.
//!
//! This module is the run's memory of all that, as data: the job feeds it each request's
//! answers and asks it before each request.

use std::collections::HashMap;

use super::meta_limits::KnownUsage;
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
    cautious: bool,
    /// Meta's figures as last read, by this run or an earlier one.
    known: KnownUsage,
    /// Whether this run read figures not yet written down.
    unsaved: bool,
    /// Throttles seen and not yet written down.
    fresh: Vec<CoolDown>,
}

impl Pacing {
    /// `cooling`: the businesses whose cool-down, from an earlier run, has not ended; `known`:
    /// the figures kept by earlier runs, read at `now_ms`.
    pub fn new(
        ceiling_percent: u32,
        cooling: impl IntoIterator<Item = String>,
        known: KnownUsage,
        now_ms: u64,
    ) -> Self {
        let ceiling = f64::from(ceiling_percent);
        let peaks = known.recent_peaks(ceiling, now_ms);
        let cautious = peaks.app || !peaks.businesses.is_empty();
        let held = cooling.into_iter().map(|b| (b, Halt::Throttled)).collect();
        Self { ceiling, halted: None, cautious, held, known, unsaved: false, fresh: Vec::new() }
    }

    /// Whether the run must send one request first and wait for its figures before more: a
    /// figure at or above the ceiling was read within the last hour.
    pub fn cautious(&self) -> bool {
        self.cautious
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
    pub fn observe(
        &mut self,
        businesses: &[&str],
        probed: &[Probed],
        usage: &Usage,
        now_ms: u64,
    ) -> Vec<Option<Halt>> {
        self.read_figures(usage, now_ms);
        businesses
            .iter()
            .zip(probed)
            .map(|(business, probed)| {
                let throttle = throttle_in(probed)?;
                self.throttled(throttle, Some(business), usage);
                Some(Halt::Throttled)
            })
            .collect()
    }

    /// Meta throttled a request as a whole, `business` being whose limit it named (the business
    /// of the request's own token), if any.
    pub fn throttled(&mut self, throttle: Throttle, business: Option<&str>, usage: &Usage) {
        match (throttle, business) {
            (Throttle::App, _) if self.halted != Some(Halt::Throttled) => {
                self.halted = Some(Halt::Throttled);
                let minutes = usage.app.and_then(|app| app.regain_minutes);
                self.fresh.push(CoolDown { business: None, minutes: or_default(minutes) });
            }
            (Throttle::Business, Some(business)) if self.held.get(business) != Some(&Halt::Throttled) => {
                self.held.insert(business.to_owned(), Halt::Throttled);
                let minutes = usage.businesses.get(business).and_then(|b| b.regain_minutes);
                self.fresh
                    .push(CoolDown { business: Some(business.to_owned()), minutes: or_default(minutes) });
            }
            _ => {}
        }
    }

    /// Takes in the figures of an answer: the app's at the ceiling stop the run, a business's
    /// hold that business, and a business's below it release a hold that only figures made.
    pub fn read_figures(&mut self, usage: &Usage, now_ms: u64) {
        if usage.is_empty() {
            return;
        }
        if usage.app.is_some_and(|app| app.figures.peak() >= self.ceiling) {
            self.halted.get_or_insert(Halt::Paced);
        }
        for (business, reported) in &usage.businesses {
            if reported.figures.peak() >= self.ceiling {
                self.held.entry(business.clone()).or_insert(Halt::Paced);
            } else if self.held.get(business) == Some(&Halt::Paced) {
                self.held.remove(business);
            }
        }
        self.known.record(usage, now_ms);
        self.unsaved = true;
    }

    /// The figures to write down, when this run read any since the last call.
    pub fn usage_to_save(&mut self, now_ms: u64) -> Option<KnownUsage> {
        std::mem::take(&mut self.unsaved).then(|| self.known.pruned(self.ceiling, now_ms))
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
    use crate::graph::limits::{Figures, Reported};
    use crate::graph::PhoneHealth;

    const NOW: u64 = 1_800_000_000_000;
    const MINUTE: u64 = 60_000;

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

    fn reported(peak: f64, regain: Option<u32>) -> Reported {
        Reported { figures: Figures { call_count: peak, ..Figures::default() }, regain_minutes: regain }
    }

    fn business_usage(id: &str, peak: f64, regain: Option<u32>) -> Usage {
        Usage { app: None, businesses: [(id.to_owned(), reported(peak, regain))].into() }
    }

    fn app_usage(peak: f64, regain: Option<u32>) -> Usage {
        Usage { app: Some(reported(peak, regain)), ..Usage::default() }
    }

    fn fresh() -> Pacing {
        Pacing::new(90, [], KnownUsage::default(), NOW)
    }

    #[test]
    fn an_app_throttle_halts_the_run_once_with_the_apps_own_wait() {
        let mut pacing = fresh();
        // A business's wait is not the app's.
        let verdicts = pacing.observe(
            &["b1", "b2", "b3"],
            &[healthy(), throttled(4), throttled(613)],
            &business_usage("b9", 100.0, Some(12)),
            NOW,
        );
        assert_eq!(verdicts, [None, Some(Halt::Throttled), Some(Halt::Throttled)]);
        assert_eq!(pacing.halted(), Some(Halt::Throttled));
        assert_eq!(pacing.holds("anyone"), Some(Halt::Throttled));
        assert_eq!(
            pacing.take_cool_downs(),
            [CoolDown { business: None, minutes: DEFAULT_COOL_DOWN_MINUTES }]
        );
        assert!(pacing.take_cool_downs().is_empty());

        let mut pacing = fresh();
        pacing.observe(&["b1"], &[throttled(4)], &app_usage(100.0, Some(6)), NOW);
        assert_eq!(pacing.take_cool_downs(), [CoolDown { business: None, minutes: 6 }]);
    }

    #[test]
    fn a_business_throttle_holds_that_business_only() {
        let mut pacing = Pacing::new(90, ["b0".to_owned()], KnownUsage::default(), NOW);
        let verdicts = pacing.observe(&["b1", "b2"], &[throttled(80_007), healthy()], &Usage::default(), NOW);
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
        // A whole request throttled for the business of its own token.
        pacing.throttled(Throttle::Business, Some("b3"), &business_usage("b3", 100.0, Some(9)));
        assert_eq!(pacing.holds("b3"), Some(Halt::Throttled));
        assert_eq!(pacing.take_cool_downs(), [CoolDown { business: Some("b3".into()), minutes: 9 }]);
    }

    #[test]
    fn usage_at_the_ceiling_paces_without_a_cool_down() {
        let mut pacing = fresh();
        pacing.observe(&["b1"], &[healthy()], &business_usage("b1", 89.0, None), NOW);
        assert_eq!(pacing.holds("b1"), None);
        pacing.observe(&["b1"], &[healthy()], &business_usage("b1", 90.0, None), NOW);
        assert_eq!((pacing.holds("b1"), pacing.halted()), (Some(Halt::Paced), None));
        assert_eq!(pacing.observe(&["b2"], &[healthy()], &app_usage(95.0, None), NOW), [None]);
        assert_eq!(pacing.halted(), Some(Halt::Paced));
        assert!(pacing.take_cool_downs().is_empty());
        let saved = pacing.usage_to_save(NOW).expect("figures were read");
        assert_eq!(saved.app.unwrap().reported.figures.call_count, 95.0);
        assert!(pacing.usage_to_save(NOW).is_none(), "nothing new since");
    }

    #[test]
    fn a_run_starts_from_the_figures_of_the_last_hour() {
        let mut known = KnownUsage::default();
        known.record(&app_usage(95.0, None), NOW - 30 * MINUTE);
        known.record(&business_usage("b1", 92.0, None), NOW - 50 * MINUTE);
        known.record(&business_usage("b2", 99.0, None), NOW - 61 * MINUTE);
        known.record(&business_usage("b3", 40.0, None), NOW - MINUTE);
        let mut pacing = Pacing::new(90, [], known.clone(), NOW);
        assert!(pacing.cautious());
        // The first request's figures decide: a business still at the ceiling is held, and
        // released once a fresh figure falls below it.
        pacing.read_figures(&business_usage("b1", 93.0, None), NOW);
        assert_eq!((pacing.holds("b1"), pacing.halted()), (Some(Halt::Paced), None));
        pacing.read_figures(&business_usage("b1", 30.0, None), NOW);
        assert_eq!(pacing.holds("b1"), None);

        // A business's figure alone makes a run cautious too.
        let mut business_only = KnownUsage::default();
        business_only.record(&business_usage("b1", 92.0, None), NOW - MINUTE);
        assert!(Pacing::new(90, [], business_only, NOW).cautious());
        // An hour later nothing of it counts.
        assert!(!Pacing::new(90, [], known, NOW + 61 * MINUTE).cautious());
        assert!(!fresh().cautious());
    }
}
