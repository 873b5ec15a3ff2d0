//! The component's settings, read from Spin variables (SPEC section 2).
//!
//! Parsing is separated from reading: [`Config::from_source`] takes any lookup function, so the
//! rules (required, defaults, ranges) are unit-tested natively, while [`Config::load`] reads Spin.
//! Every error names the variable and never echoes a secret's value.

use std::time::Duration;

use crate::time::FINISH_GRACE;
use crate::urls;

const MIN_SECRET_LEN: usize = 32;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("Configuration error: variable {0} is required but not set")]
    Missing(&'static str),
    #[error("Configuration error: variable {name} {reason}")]
    Invalid { name: &'static str, reason: String },
}

/// A source of variable values, trimmed: `Ok(None)` for a variable the component does not
/// declare (or that has no value), `Ok(Some(""))` for one set to an empty string.
pub trait Source {
    fn get(&self, name: &'static str) -> Result<Option<String>, ConfigError>;

    /// The value, with an empty one read as "not set" (most settings).
    fn value(&self, name: &'static str) -> Result<Option<String>, ConfigError> {
        Ok(self.get(name)?.filter(|v| !v.is_empty()))
    }
}

/// Spin's variables. An undefined variable (no value, no default) reads as "not set".
pub struct SpinVariables;

impl Source for SpinVariables {
    fn get(&self, name: &'static str) -> Result<Option<String>, ConfigError> {
        use spin_sdk::variables::Error;
        match spin_sdk::variables::get(name) {
            Ok(v) => Ok(Some(v.trim().to_owned())),
            Err(Error::Undefined(_)) => Ok(None),
            Err(e) => Err(ConfigError::Invalid { name, reason: format!("could not be read: {e}") }),
        }
    }
}

/// The secrets every job route checks, read before anything else so that a stranger only ever
/// sees 401, whatever else is misconfigured.
#[derive(Clone, PartialEq)]
pub struct Secrets {
    pub current: String,
    pub previous: Option<String>,
}

impl Secrets {
    pub fn from_source(src: &impl Source) -> Result<Self, ConfigError> {
        let current = required(src, "cron_secret")?;
        let previous = src.value("cron_secret_previous")?;
        for (name, secret) in [("cron_secret", Some(&current)), ("cron_secret_previous", previous.as_ref())] {
            if secret.is_some_and(|s| s.chars().count() < MIN_SECRET_LEN) {
                return Err(ConfigError::Invalid {
                    name,
                    reason: format!("must be at least {MIN_SECRET_LEN} characters; no job runs until it is"),
                });
            }
        }
        Ok(Self { current, previous })
    }

    pub fn accepted(&self) -> Vec<&str> {
        std::iter::once(self.current.as_str()).chain(self.previous.as_deref()).collect()
    }
}

/// What every run of either job reads, whichever door started it: the stores, the budgets and
/// the lock, the outbound allowance and the alerts. Each job reads its own settings besides
/// (`jobs::*::settings`), and so do the front door and the overview: a component lists only the
/// variables its code reads (tests/manifest.rs holds spin.toml to it).
///
/// `PartialEq` lets a test hold spin.toml's defaults equal to the ones applied here.
#[derive(Clone, PartialEq)]
pub struct Config {
    pub database_url: String,
    pub redis_url: String,
    /// The budget of a run started over HTTP (hosted platforms cut a request at about 30 s)...
    pub job_time_budget: Duration,
    /// ...and of one started by the cron trigger, which has no such limit.
    pub cron_time_budget: Duration,
    pub lock_ttl: Duration,
    /// Outbound HTTP requests per clock hour, all jobs and replicas together; `None`: no limit.
    pub outbound_requests_per_hour: Option<u32>,
    pub alert_webhook_url: Option<String>,
}

impl Config {
    pub fn load() -> Result<Self, ConfigError> {
        Self::from_source(&SpinVariables)
    }

    pub fn from_source(src: &impl Source) -> Result<Self, ConfigError> {
        let database_url = database_url(src)?;
        let redis_url = redis_url(src)?;
        let alert_webhook_url = http_url(src, "alert_webhook_url")?;
        host_of(src, "database_host", "database_url", Some(&database_url))?;
        host_of(src, "redis_host", "redis_url", Some(&redis_url))?;
        host_of(src, "alert_webhook_host", "alert_webhook_url", alert_webhook_url.as_deref())?;
        Ok(Self {
            database_url,
            redis_url,
            job_time_budget: Duration::from_secs(number(src, "job_time_budget_seconds", 25, 1..=3600)?),
            cron_time_budget: Duration::from_secs(number(src, "cron_time_budget_seconds", 1800, 1..=86_400)?),
            lock_ttl: Duration::from_secs(number(src, "lock_ttl_seconds", 3600, 10..=86_400)?),
            outbound_requests_per_hour: Some(number(src, "outbound_requests_per_hour", 0, 0..=10_000_000)?)
                .filter(|n| *n > 0),
            alert_webhook_url,
        })
    }

    /// The budget of a run started by HTTP or cron (`cron`), once checked against the lock: a
    /// lock that expires before its run ends lets a second run start while the first still works.
    pub fn run_budget(&self, cron: bool) -> Result<Duration, ConfigError> {
        let (name, budget) = if cron {
            ("cron_time_budget_seconds", self.cron_time_budget)
        } else {
            ("job_time_budget_seconds", self.job_time_budget)
        };
        if self.lock_ttl <= budget + FINISH_GRACE {
            return Err(ConfigError::Invalid {
                name: "lock_ttl_seconds",
                reason: format!(
                    "({}) must be greater than {name} ({}) + {} s, the longest a run takes: \
                     a lock that expires first lets a second run start while the first still works",
                    self.lock_ttl.as_secs(),
                    budget.as_secs(),
                    FINISH_GRACE.as_secs()
                ),
            });
        }
        Ok(budget)
    }
}

pub fn database_url(src: &impl Source) -> Result<String, ConfigError> {
    let url = required(src, "database_url")?;
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) || urls::split(&url).is_none() {
        return Err(invalid("database_url", "must be postgres://user:password@host:port/database"));
    }
    Ok(url)
}

pub fn redis_url(src: &impl Source) -> Result<String, ConfigError> {
    let url = required(src, "redis_url")?;
    if !(url.starts_with("redis://") || url.starts_with("rediss://")) || urls::split(&url).is_none() {
        return Err(invalid("redis_url", "must be redis://host:port (or rediss://)"));
    }
    Ok(url)
}

/// An http(s) URL with a host, or not set.
pub(crate) fn http_url(src: &impl Source, name: &'static str) -> Result<Option<String>, ConfigError> {
    let Some(url) = src.value(name)? else { return Ok(None) };
    match urls::split(&url) {
        Some(p) if p.scheme == "http" || p.scheme == "https" => Ok(Some(url)),
        _ => Err(invalid(
            name,
            "must be an http:// or https:// URL with a host, e.g. https://app.example.com/api/x",
        )),
    }
}

/// The variable `name` holds `entry`, which must be an `allowed_outbound_hosts` entry Spin can
/// read.
pub(crate) fn allowed_host(name: &'static str, entry: &str) -> Result<(), ConfigError> {
    urls::entry_allows(entry, "").map(|_| ()).map_err(|()| ConfigError::Invalid {
        name,
        reason: format!(
            "{} (it is an allowed_outbound_hosts entry; {:?} makes Spin refuse every outbound connection)",
            urls::HOST_ENTRY_FORM,
            entry
        ),
    })
}

/// The `allowed_outbound_hosts` variable `name` must be readable and let the component reach
/// `url` (the variable `url_name`). Not declared to the component: nothing to check.
pub(crate) fn host_of(
    src: &impl Source,
    name: &'static str,
    url_name: &'static str,
    url: Option<&str>,
) -> Result<(), ConfigError> {
    let Some(entry) = src.get(name)? else { return Ok(()) };
    allowed_host(name, &entry)?;
    let Some(url) = url else { return Ok(()) };
    if urls::entry_allows(&entry, url) == Ok(false) {
        let want = urls::split(url)
            .map(|p| format!("{}://{}", p.scheme, p.authority))
            .unwrap_or_else(|| "scheme://host:port".into());
        return Err(ConfigError::Invalid {
            name,
            reason: format!("({entry:?}) does not allow {url_name}: set it to {want}, the scheme, host and port of {url_name}"),
        });
    }
    Ok(())
}

pub(crate) fn hours(n: u32) -> Duration {
    Duration::from_secs(u64::from(n) * 3600)
}

pub(crate) fn minutes(n: u32) -> Duration {
    Duration::from_secs(u64::from(n) * 60)
}

/// 0 means "keep forever".
pub(crate) fn days_or_forever(days: u32) -> Option<u32> {
    (days > 0).then_some(days)
}

pub(crate) fn required(src: &impl Source, name: &'static str) -> Result<String, ConfigError> {
    src.value(name)?.ok_or(ConfigError::Missing(name))
}

pub(crate) fn invalid(name: &'static str, reason: &str) -> ConfigError {
    ConfigError::Invalid { name, reason: reason.to_owned() }
}

/// A whole number setting, of whatever width its field has (the range keeps it in that width).
pub(crate) fn number<T: TryFrom<u64>>(
    src: &impl Source,
    name: &'static str,
    default: u64,
    range: std::ops::RangeInclusive<u64>,
) -> Result<T, ConfigError> {
    let value = whole_number(src, name, default, range)?;
    T::try_from(value).map_err(|_| invalid(name, "is too large"))
}

fn whole_number(
    src: &impl Source,
    name: &'static str,
    default: u64,
    range: std::ops::RangeInclusive<u64>,
) -> Result<u64, ConfigError> {
    let Some(raw) = src.value(name)? else {
        return Ok(default);
    };
    let value: u64 = raw
        .parse()
        .map_err(|_| ConfigError::Invalid { name, reason: format!("is not a whole number: {raw:?}") })?;
    if !range.contains(&value) {
        return Err(ConfigError::Invalid {
            name,
            reason: format!("must be between {} and {}", range.start(), range.end()),
        });
    }
    Ok(value)
}

/// Variables from a map, and a record of which were read: the settings of every module are
/// unit-tested with them, and tests/manifest.rs holds each component's list to what was read.
#[cfg(test)]
pub(crate) mod testing {
    use super::{ConfigError, Source};
    use std::cell::RefCell;
    use std::collections::HashMap;

    pub const KEY: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

    pub struct Map(pub HashMap<&'static str, &'static str>);

    impl Source for Map {
        fn get(&self, name: &'static str) -> Result<Option<String>, ConfigError> {
            Ok(self.0.get(name).map(|v| v.to_string()))
        }
    }

    /// What every configuration needs set to load.
    pub fn base() -> HashMap<&'static str, &'static str> {
        HashMap::from([
            ("cron_secret", "0123456789abcdef0123456789abcdef"),
            ("database_url", "postgres://u:p@localhost:5432/db"),
            ("redis_url", "redis://localhost:6379"),
            ("token_encryption_key", KEY),
            ("webhook_processor_url", "https://app.example.com/hook"),
        ])
    }

    pub fn with(name: &'static str, value: &'static str) -> Map {
        let mut m = base();
        m.insert(name, value);
        Map(m)
    }

    /// Remembers which variables were read.
    pub struct Recording(pub Map, pub RefCell<Vec<&'static str>>);

    impl Recording {
        pub fn new() -> Self {
            Self(Map(base()), RefCell::default())
        }

        pub fn take(&self) -> Vec<&'static str> {
            std::mem::take(&mut *self.1.borrow_mut())
        }
    }

    impl Source for Recording {
        fn get(&self, name: &'static str) -> Result<Option<String>, ConfigError> {
            self.1.borrow_mut().push(name);
            self.0.get(name)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::testing::{base, with, Map, Recording};
    use super::*;

    #[test]
    fn the_shared_settings_are_the_stores_budgets_alerts_and_allowance() {
        let src = Recording::new();
        Config::from_source(&src).unwrap();
        assert_eq!(
            src.take(),
            [
                "database_url",
                "redis_url",
                "alert_webhook_url",
                "database_host",
                "redis_host",
                "alert_webhook_host",
                "job_time_budget_seconds",
                "cron_time_budget_seconds",
                "lock_ttl_seconds",
                "outbound_requests_per_hour"
            ]
        );
    }

    #[test]
    fn defaults_apply() {
        let c = Config::from_source(&Map(base())).unwrap();
        assert_eq!(c.job_time_budget, Duration::from_secs(25));
        assert_eq!(c.cron_time_budget, Duration::from_secs(1800));
        assert_eq!(c.lock_ttl, Duration::from_secs(3600));
        assert_eq!((c.alert_webhook_url, c.outbound_requests_per_hour), (None, None));
    }

    #[test]
    fn urls_must_be_http() {
        let e = Config::from_source(&with("alert_webhook_url", "ftp://x")).err().unwrap();
        assert!(e.to_string().contains("alert_webhook_url"));
    }

    #[test]
    fn missing_required_named() {
        let mut m = base();
        m.remove("database_url");
        let e = Config::from_source(&Map(m)).err().unwrap();
        assert_eq!(e, ConfigError::Missing("database_url"));
        assert!(e.to_string().contains("database_url"));
    }

    #[test]
    fn unparsable_number_named() {
        let e = Config::from_source(&with("lock_ttl_seconds", "lots")).err().unwrap();
        assert!(e.to_string().contains("lock_ttl_seconds"), "{e}");
        assert!(Config::from_source(&with("lock_ttl_seconds", "0")).is_err());
    }

    #[test]
    fn a_host_entry_must_allow_its_url() {
        let e = Config::from_source(&with("database_host", "postgres://elsewhere:5432")).err().unwrap();
        assert!(
            e.to_string().contains("database_host") && e.to_string().contains("postgres://localhost:5432"),
            "{e}"
        );
    }

    #[test]
    fn short_secret_refused() {
        let e = Secrets::from_source(&with("cron_secret", "short")).err().unwrap();
        assert!(e.to_string().contains("cron_secret"));
        assert!(!e.to_string().contains("short"));
    }
}
