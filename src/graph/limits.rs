//! What Meta says about its limits: the throttling error codes, and the usage headers it sends
//! once an app's or a business's usage is noticeable (Meta's "Rate Limiting" guide).
//!
//! - `X-App-Usage: {"call_count":N,"total_cputime":N,"total_time":N}`: the app's share of its
//!   rolling-hour limit, in percent. Calls made with the app token count here. When Meta names
//!   a wait for the app (`estimated_time_to_regain_access`), the app's cool-down takes it.
//! - `X-Business-Use-Case-Usage: {"<business id>":[{"type":..,"call_count":N,"total_cputime":N,
//!   "total_time":N,"estimated_time_to_regain_access":M}]}`: the same per business (for WhatsApp,
//!   the WABA), with the minutes until a throttled business may call again.
//!
//! Meta puts them on a batch request's answer and on each operation's (`include_headers=true`,
//! where a business's figures come with the calls about it); both are read.
//! A header that is missing means nothing (usage is low); one that does not parse is ignored,
//! never a reason to fail a check.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::parse::lenient;
use super::GraphError;

pub const APP_USAGE_HEADER: &str = "x-app-usage";
pub const BUSINESS_USAGE_HEADER: &str = "x-business-use-case-usage";

/// Whose limit a throttling error is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Throttle {
    /// The app's own limit (codes 4 and 613): no call of the app can succeed until it falls.
    App,
    /// A user's, page's or business's limit (17, 32, 80000-80014): only that business waits.
    Business,
}

/// The throttle an error reports, if it is one of Meta's throttling codes.
pub fn throttle_of(error: &GraphError) -> Option<Throttle> {
    match error.code {
        4 | 613 => Some(Throttle::App),
        17 | 32 | 80_000..=80_014 => Some(Throttle::Business),
        _ => None,
    }
}

/// Percentages of a rolling-hour limit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Figures {
    #[serde(default, alias = "call_count", deserialize_with = "percent")]
    pub call_count: f64,
    #[serde(default, alias = "total_cputime", deserialize_with = "percent")]
    pub total_cputime: f64,
    #[serde(default, alias = "total_time", deserialize_with = "percent")]
    pub total_time: f64,
}

impl Figures {
    /// The highest of the three: the one that throttles first.
    pub fn peak(&self) -> f64 {
        self.call_count.max(self.total_cputime).max(self.total_time)
    }

    fn max(self, other: Figures) -> Figures {
        Figures {
            call_count: self.call_count.max(other.call_count),
            total_cputime: self.total_cputime.max(other.total_cputime),
            total_time: self.total_time.max(other.total_time),
        }
    }
}

/// One limit's usage as Meta reported it: the highest figures over the entries it listed (a
/// business has one per use-case type), and the wait it announced, if any.
#[derive(Debug, Clone, Copy, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Reported {
    #[serde(flatten)]
    pub figures: Figures,
    /// Meta's `estimated_time_to_regain_access`, when it gives one.
    pub regain_minutes: Option<u32>,
}

impl Reported {
    fn max(self, other: Reported) -> Reported {
        Reported {
            figures: self.figures.max(other.figures),
            regain_minutes: self.regain_minutes.max(other.regain_minutes),
        }
    }
}

/// The figures one answer carried: the app's and each business's.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Usage {
    pub app: Option<Reported>,
    pub businesses: BTreeMap<String, Reported>,
}

impl Usage {
    /// From an answer's headers (name, value), names in any case: a batch request's own, or one
    /// operation's (`include_headers=true`).
    pub fn from_headers<'h>(headers: impl IntoIterator<Item = (&'h str, &'h str)>) -> Usage {
        let mut usage = Usage::default();
        for (name, value) in headers {
            if name.eq_ignore_ascii_case(APP_USAGE_HEADER) {
                usage.app = serde_json::from_str::<Entry>(value).ok().map(Entry::reported);
            } else if name.eq_ignore_ascii_case(BUSINESS_USAGE_HEADER) {
                usage.businesses = parse_business_usage(value);
            }
        }
        usage
    }

    /// Takes what `newer` reports over what this holds.
    pub fn update(&mut self, newer: Usage) {
        if newer.app.is_some() {
            self.app = newer.app;
        }
        self.businesses.extend(newer.businesses);
    }

    pub fn is_empty(&self) -> bool {
        self.app.is_none() && self.businesses.is_empty()
    }
}

/// One entry of either header: the three figures, and Meta's wait when it gives one.
#[derive(Deserialize)]
struct Entry {
    #[serde(flatten)]
    figures: Figures,
    #[serde(default, deserialize_with = "lenient")]
    estimated_time_to_regain_access: Option<f64>,
}

impl Entry {
    fn reported(self) -> Reported {
        let regain = self.estimated_time_to_regain_access.filter(|m| *m > 0.0).map(|m| m.ceil() as u32);
        Reported { figures: self.figures, regain_minutes: regain }
    }
}

fn parse_business_usage(value: &str) -> BTreeMap<String, Reported> {
    let Ok(by_business) = serde_json::from_str::<BTreeMap<String, serde_json::Value>>(value) else {
        return BTreeMap::new();
    };
    by_business
        .into_iter()
        .filter_map(|(id, entries)| {
            let entries: Vec<Entry> = serde_json::from_value(entries).ok()?;
            let usage = entries.into_iter().map(Entry::reported).fold(Reported::default(), Reported::max);
            Some((id, usage))
        })
        .collect()
}

/// A percentage Meta may send as a number or a numeric string; anything else reads as 0.
fn percent<'de, D: serde::Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    let value = serde_json::Value::deserialize(d)?;
    Ok(match value {
        serde_json::Value::Number(n) => n.as_f64().unwrap_or(0.0),
        serde_json::Value::String(s) => s.trim().parse().unwrap_or(0.0),
        _ => 0.0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(code: i64) -> GraphError {
        GraphError {
            code,
            subcode: None,
            kind: "OAuthException".into(),
            message: String::new(),
            is_transient: true,
        }
    }

    #[test]
    fn throttling_codes_name_whose_limit() {
        assert_eq!(throttle_of(&error(4)), Some(Throttle::App));
        assert_eq!(throttle_of(&error(613)), Some(Throttle::App));
        for code in [17, 32, 80_000, 80_007, 80_014] {
            assert_eq!(throttle_of(&error(code)), Some(Throttle::Business), "{code}");
        }
        for code in [1, 2, 190, 368, 79_999, 80_015, 130_429] {
            assert_eq!(throttle_of(&error(code)), None, "{code}");
        }
    }

    fn headers<'h>(pairs: &'h [(&'h str, &'h str)]) -> impl Iterator<Item = (&'h str, &'h str)> {
        pairs.iter().copied()
    }

    #[test]
    fn app_usage_read_in_any_case() {
        let usage = Usage::from_headers(headers(&[(
            "X-App-Usage",
            r#"{"call_count":28,"total_time":25,"total_cputime":"91"}"#,
        )]));
        let app = usage.app.unwrap();
        let f = app.figures;
        assert_eq!((f.call_count, f.total_time, f.total_cputime), (28.0, 25.0, 91.0));
        assert_eq!((f.peak(), app.regain_minutes), (91.0, None));
        // Meta's wait, when it names one for the app.
        let waiting = Usage::from_headers(headers(&[(
            "x-app-usage",
            r#"{"call_count":100,"total_time":40,"total_cputime":10,"estimated_time_to_regain_access":4.5}"#,
        )]));
        assert_eq!(waiting.app.unwrap().regain_minutes, Some(5));
    }

    #[test]
    fn business_usage_takes_the_highest_figures_and_wait() {
        let usage = Usage::from_headers(headers(&[(
            "x-business-use-case-usage",
            r#"{"1001":[{"type":"whatsapp_business_management","call_count":40,"total_cputime":5,"total_time":7,"estimated_time_to_regain_access":0},
                        {"type":"messaging","call_count":12,"total_cputime":96,"total_time":3,"estimated_time_to_regain_access":7}],
                "1002":[{"type":"whatsapp_business_management","call_count":1,"total_cputime":1,"total_time":1}]}"#,
        )]));
        let b = usage.businesses["1001"];
        assert_eq!((b.figures.call_count, b.figures.total_cputime, b.regain_minutes), (40.0, 96.0, Some(7)));
        assert_eq!(usage.businesses["1002"].regain_minutes, None);
    }

    #[test]
    fn missing_or_garbage_headers_mean_nothing() {
        assert!(Usage::from_headers(headers(&[])).is_empty());
        let garbage = Usage::from_headers(headers(&[
            ("x-app-usage", "not json"),
            ("x-business-use-case-usage", r#"{"1001":"soon"}"#),
        ]));
        assert!(garbage.is_empty());
    }

    #[test]
    fn newer_figures_win() {
        let mut usage = Usage::from_headers(headers(&[("x-app-usage", r#"{"call_count":10}"#)]));
        usage.update(Usage::from_headers(headers(&[("x-app-usage", r#"{"call_count":55}"#)])));
        usage.update(Usage::default());
        assert_eq!(usage.app.unwrap().figures.call_count, 55.0);
    }
}
