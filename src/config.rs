//! The component's settings, read from Spin variables (SPEC section 2).
//!
//! Parsing is separated from reading: [`Config::from_source`] takes any lookup function, so the
//! rules (required, defaults, ranges) are unit-tested natively, while [`Config::load`] reads Spin.
//! Every error names the variable and never echoes a secret's value.

use std::time::Duration;

use crate::crypto::KeyRing;
use crate::time::FINISH_GRACE;
use crate::urls;

const MIN_SECRET_LEN: usize = 32;
const DEFAULT_GRAPH_URL: &str = "https://graph.facebook.com";

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

/// Meta app credentials: both enable `debug_token`.
#[derive(Clone, Copy)]
pub struct MetaApp<'a> {
    pub id: &'a str,
    pub secret: &'a str,
}

/// `PartialEq` lets a test hold spin.toml's defaults equal to the ones applied here.
#[derive(Clone, PartialEq)]
pub struct Config {
    pub database_url: String,
    pub redis_url: String,
    pub keys: KeyRing,
    pub meta_graph_url: String,
    pub meta_api_version: String,
    pub meta_app_id: Option<String>,
    /// Also signs DLQ re-deliveries, with or without `meta_app_id`.
    pub meta_app_secret: Option<String>,
    /// The budget of a run started over HTTP (hosted platforms cut a request at about 30 s)...
    pub job_time_budget: Duration,
    /// ...and of one started by the cron trigger, which has no such limit.
    pub cron_time_budget: Duration,
    pub lock_ttl: Duration,
    pub health_recheck_after_hours: u32,
    /// Graph requests in flight at once (each a batch, or a single call).
    pub health_check_concurrency: usize,
    /// Operations per Graph batch request (at most Meta's 50); 1 makes single calls.
    pub graph_batch_size: usize,
    /// Meta's usage figures at which a run starts no further Graph call.
    pub graph_usage_ceiling_percent: u32,
    /// Outbound HTTP requests per clock hour, all jobs and replicas together; `None`: no limit.
    pub outbound_requests_per_hour: Option<u32>,
    pub token_expiry_warning_days: u32,
    /// Empty when not configured: only the webhook retry needs it, and says so when it runs.
    pub webhook_processor_url: Option<String>,
    pub webhook_retry_max_attempts: u32,
    pub webhook_retry_base: Duration,
    pub webhook_retry_batch_size: u32,
    /// Re-deliveries in flight at once.
    pub webhook_retry_concurrency: usize,
    /// A pending webhook older than this is dead-lettered as expired, not re-delivered.
    pub webhook_retry_max_age: Duration,
    pub alert_webhook_url: Option<String>,
    /// What Meta's subscription handshake must present; unset: the handshake is refused.
    pub meta_webhook_verify_token: Option<String>,
    /// The largest webhook body the front door stores.
    pub webhook_max_body_bytes: usize,
    /// How long the front door waits for its one immediate forward.
    pub webhook_forward_timeout: Duration,
    /// How old a job's last success may get before the overview calls it overdue.
    pub health_check_overdue: Duration,
    pub webhook_retry_overdue: Duration,
    /// Days `job_runs` and `webhook_retry_attempts` rows are kept; `None` keeps them forever.
    pub audit_retention_days: Option<u32>,
    /// Days `whatsapp_health` rows are kept; `None` (the default) keeps them forever, since
    /// WhaTrack's app reads that table too.
    pub health_retention_days: Option<u32>,
}

impl Config {
    pub fn load() -> Result<Self, ConfigError> {
        Self::from_source(&SpinVariables)
    }

    pub fn from_source(src: &impl Source) -> Result<Self, ConfigError> {
        let database_url = database_url(src)?;
        let redis_url = redis_url(src)?;
        let webhook_processor_url = http_url(src, "webhook_processor_url")?;
        let alert_webhook_url = http_url(src, "alert_webhook_url")?;
        let meta_graph_url = match src.get("meta_graph_url")? {
            None => DEFAULT_GRAPH_URL.to_owned(),
            Some(url) => url.trim_end_matches('/').to_owned(),
        };
        // Each of these is also an `allowed_outbound_hosts` entry: one Spin cannot read makes it
        // refuse every outbound connection, and one that does not cover its URL refuses that one.
        allowed_host("meta_graph_url", &meta_graph_url)?;
        host_of(src, "database_host", "database_url", Some(&database_url))?;
        host_of(src, "redis_host", "redis_url", Some(&redis_url))?;
        host_of(src, "webhook_processor_host", "webhook_processor_url", webhook_processor_url.as_deref())?;
        host_of(src, "alert_webhook_host", "alert_webhook_url", alert_webhook_url.as_deref())?;

        let job_time_budget = Duration::from_secs(number(src, "job_time_budget_seconds", 25, 1..=3600)?);
        let cron_time_budget =
            Duration::from_secs(number(src, "cron_time_budget_seconds", 1800, 1..=86_400)?);
        let lock_ttl = Duration::from_secs(number(src, "lock_ttl_seconds", 3600, 10..=86_400)?);
        Ok(Self {
            database_url,
            redis_url,
            keys: key_ring(src)?,
            meta_graph_url,
            meta_api_version: src.value("meta_api_version")?.unwrap_or_else(|| "v25.0".into()),
            meta_app_id: src.value("meta_app_id")?,
            meta_app_secret: src.value("meta_app_secret")?,
            job_time_budget,
            cron_time_budget,
            lock_ttl,
            health_recheck_after_hours: number(src, "health_recheck_after_hours", 20, 0..=8760)?,
            health_check_concurrency: number(src, "health_check_concurrency", 16, 1..=256)?,
            graph_batch_size: number(src, "graph_batch_size", 50, 1..=50)?,
            graph_usage_ceiling_percent: number(src, "graph_usage_ceiling_percent", 90, 1..=100)?,
            outbound_requests_per_hour: Some(number(src, "outbound_requests_per_hour", 0, 0..=10_000_000)?)
                .filter(|n| *n > 0),
            token_expiry_warning_days: number(src, "token_expiry_warning_days", 7, 0..=365)?,
            webhook_processor_url,
            webhook_retry_max_attempts: max_attempts(src)?,
            webhook_retry_base: retry_base(src)?,
            webhook_retry_batch_size: number(src, "webhook_retry_batch_size", 50, 1..=100_000)?,
            webhook_retry_concurrency: number(src, "webhook_retry_concurrency", 16, 1..=256)?,
            webhook_retry_max_age: hours(number(src, "webhook_retry_max_age_hours", 168, 1..=87_600)?),
            alert_webhook_url,
            meta_webhook_verify_token: src.value("meta_webhook_verify_token")?,
            webhook_max_body_bytes: number(src, "webhook_max_body_bytes", 1 << 20, 1024..=16 << 20)?,
            webhook_forward_timeout: Duration::from_millis(number(
                src,
                "webhook_forward_timeout_ms",
                3000,
                100..=20_000,
            )?),
            health_check_overdue: minutes(number(src, "health_check_overdue_minutes", 26 * 60, 1..=525_600)?),
            webhook_retry_overdue: minutes(number(src, "webhook_retry_overdue_minutes", 30, 1..=525_600)?),
            audit_retention_days: days_or_forever(number(src, "audit_retention_days", 90, 0..=36_500)?),
            health_retention_days: days_or_forever(number(src, "health_retention_days", 0, 0..=36_500)?),
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

    /// The app credentials `debug_token` needs, when both are set.
    pub fn meta_app(&self) -> Option<MetaApp<'_>> {
        Some(MetaApp { id: self.meta_app_id.as_deref()?, secret: self.meta_app_secret.as_deref()? })
    }
}

/// What a job's status read needs, and no more: the status route is the one monitors poll, and
/// each variable read is a call into the host (the whole [`Config`] reads some 30).
pub struct StatusConfig {
    pub redis_url: String,
    /// For the webhook retry's queue counts.
    pub queue: Option<QueueConfig>,
}

/// What the status route needs to count the webhook retry's queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueConfig {
    pub database_url: String,
    /// `webhook_retry_max_attempts`: below it, a webhook still counts as pending.
    pub max_attempts: u32,
    /// `webhook_retry_base_seconds`: when a failure never retried is due.
    pub base: Duration,
}

impl StatusConfig {
    pub fn load(with_queue: bool) -> Result<Self, ConfigError> {
        Self::from_source(&SpinVariables, with_queue)
    }

    pub fn from_source(src: &impl Source, with_queue: bool) -> Result<Self, ConfigError> {
        let queue = match with_queue {
            true => Some(QueueConfig {
                database_url: database_url(src)?,
                max_attempts: max_attempts(src)?,
                base: retry_base(src)?,
            }),
            false => None,
        };
        Ok(Self { redis_url: redis_url(src)?, queue })
    }
}

fn database_url(src: &impl Source) -> Result<String, ConfigError> {
    let url = required(src, "database_url")?;
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) || urls::split(&url).is_none() {
        return Err(invalid("database_url", "must be postgres://user:password@host:port/database"));
    }
    Ok(url)
}

fn redis_url(src: &impl Source) -> Result<String, ConfigError> {
    let url = required(src, "redis_url")?;
    if !(url.starts_with("redis://") || url.starts_with("rediss://")) || urls::split(&url).is_none() {
        return Err(invalid("redis_url", "must be redis://host:port (or rediss://)"));
    }
    Ok(url)
}

fn max_attempts(src: &impl Source) -> Result<u32, ConfigError> {
    number(src, "webhook_retry_max_attempts", 3, 1..=100)
}

fn retry_base(src: &impl Source) -> Result<Duration, ConfigError> {
    Ok(Duration::from_secs(number(src, "webhook_retry_base_seconds", 300, 1..=86_400)?))
}

/// An http(s) URL with a host, or not set.
fn http_url(src: &impl Source, name: &'static str) -> Result<Option<String>, ConfigError> {
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
fn allowed_host(name: &'static str, entry: &str) -> Result<(), ConfigError> {
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
fn host_of(
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

fn hours(n: u32) -> Duration {
    Duration::from_secs(u64::from(n) * 3600)
}

fn minutes(n: u32) -> Duration {
    Duration::from_secs(u64::from(n) * 60)
}

/// 0 means "keep forever".
fn days_or_forever(days: u32) -> Option<u32> {
    (days > 0).then_some(days)
}

fn required(src: &impl Source, name: &'static str) -> Result<String, ConfigError> {
    src.value(name)?.ok_or(ConfigError::Missing(name))
}

fn invalid(name: &'static str, reason: &str) -> ConfigError {
    ConfigError::Invalid { name, reason: reason.to_owned() }
}

/// A whole number setting, of whatever width its field has (the range keeps it in that width).
fn number<T: TryFrom<u64>>(
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

/// `encryption_keys` (JSON of versions) plus the legacy `token_encryption_key`, which serves as
/// `v1` when the JSON has no `v1` of its own.
fn key_ring(src: &impl Source) -> Result<KeyRing, ConfigError> {
    let mut ring = match src.value("encryption_keys")? {
        Some(json) => KeyRing::from_json(&json)
            .map_err(|e| ConfigError::Invalid { name: "encryption_keys", reason: e.to_string() })?,
        None => KeyRing::default(),
    };
    if let Some(legacy) = src.value("token_encryption_key")? {
        if !ring.has("v1") {
            ring.insert("v1".into(), &legacy)
                .map_err(|_| invalid("token_encryption_key", "must be 64 hex characters"))?;
        }
    }
    if ring.is_empty() {
        return Err(ConfigError::Missing("encryption_keys (or token_encryption_key)"));
    }
    Ok(ring)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    struct Map(HashMap<&'static str, &'static str>);

    impl Source for Map {
        fn get(&self, name: &'static str) -> Result<Option<String>, ConfigError> {
            Ok(self.0.get(name).map(|v| v.to_string()))
        }
    }

    const KEY: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

    fn base() -> HashMap<&'static str, &'static str> {
        HashMap::from([
            ("cron_secret", "0123456789abcdef0123456789abcdef"),
            ("database_url", "postgres://u:p@localhost:5432/db"),
            ("redis_url", "redis://localhost:6379"),
            ("token_encryption_key", KEY),
        ])
    }

    /// Remembers which variables were read.
    struct Recording(Map, std::cell::RefCell<Vec<&'static str>>);

    impl Source for Recording {
        fn get(&self, name: &'static str) -> Result<Option<String>, ConfigError> {
            self.1.borrow_mut().push(name);
            self.0.get(name)
        }
    }

    #[test]
    fn a_status_read_reads_only_what_it_shows() {
        let src = Recording(Map(base()), Default::default());
        let health = StatusConfig::from_source(&src, false).unwrap();
        assert_eq!((health.redis_url.as_str(), health.queue), ("redis://localhost:6379", None));
        assert_eq!(*src.1.borrow(), ["redis_url"]);

        src.1.borrow_mut().clear();
        let retry = StatusConfig::from_source(&src, true).unwrap();
        let queue = QueueConfig {
            database_url: "postgres://u:p@localhost:5432/db".to_owned(),
            max_attempts: 3,
            base: Duration::from_secs(300),
        };
        assert_eq!(retry.queue, Some(queue));
        assert_eq!(
            *src.1.borrow(),
            ["database_url", "webhook_retry_max_attempts", "webhook_retry_base_seconds", "redis_url"]
        );

        src.1.borrow_mut().clear();
        Config::from_source(&src).unwrap();
        assert!(
            src.1.borrow().len() > 25,
            "the whole configuration reads {} variables",
            src.1.borrow().len()
        );
    }

    #[test]
    fn defaults_apply() {
        let c = Config::from_source(&Map(base())).unwrap();
        assert_eq!(c.meta_graph_url, "https://graph.facebook.com");
        assert_eq!(c.meta_api_version, "v25.0");
        assert_eq!(c.job_time_budget, Duration::from_secs(25));
        assert_eq!(c.lock_ttl, Duration::from_secs(3600));
        assert_eq!(c.health_check_concurrency, 16);
        assert!(c.meta_app().is_none());
        assert_eq!(c.webhook_retry_max_age, Duration::from_secs(168 * 3600));
        assert!(c.keys.has("v1"));
        assert_eq!(c.webhook_processor_url, None);
        assert_eq!((c.webhook_retry_max_attempts, c.webhook_retry_batch_size), (3, 50));
        assert_eq!(c.webhook_retry_base, Duration::from_secs(300));
        assert_eq!(c.alert_webhook_url, None);
        assert_eq!(c.health_check_overdue, Duration::from_secs(26 * 3600));
        assert_eq!(c.webhook_retry_overdue, Duration::from_secs(30 * 60));
        assert_eq!((c.audit_retention_days, c.health_retention_days), (Some(90), None));
    }

    #[test]
    fn retention_zero_keeps_forever() {
        let mut m = base();
        m.insert("audit_retention_days", "0");
        m.insert("health_retention_days", "30");
        let c = Config::from_source(&Map(m)).unwrap();
        assert_eq!((c.audit_retention_days, c.health_retention_days), (None, Some(30)));
    }

    #[test]
    fn urls_must_be_http() {
        for name in ["webhook_processor_url", "alert_webhook_url"] {
            let mut m = base();
            m.insert(name, "ftp://x");
            let e = Config::from_source(&Map(m)).err().unwrap();
            assert!(e.to_string().contains(name));
        }
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
        let mut m = base();
        m.insert("health_check_concurrency", "lots");
        let e = Config::from_source(&Map(m)).err().unwrap();
        assert!(e.to_string().contains("health_check_concurrency"), "{e}");
        let mut m = base();
        m.insert("health_check_concurrency", "0");
        assert!(Config::from_source(&Map(m)).is_err());
    }

    #[test]
    fn short_secret_refused() {
        let mut m = base();
        m.insert("cron_secret", "short");
        let e = Secrets::from_source(&Map(m)).err().unwrap();
        assert!(e.to_string().contains("cron_secret"));
        assert!(!e.to_string().contains("short"));
    }

    #[test]
    fn bad_key_named_without_value() {
        let mut m = base();
        m.insert("token_encryption_key", "abcd");
        let e = Config::from_source(&Map(m)).err().unwrap();
        assert!(e.to_string().contains("token_encryption_key"));
        assert!(!e.to_string().contains("abcd"));
    }

    #[test]
    fn no_key_at_all_is_missing() {
        let mut m = base();
        m.remove("token_encryption_key");
        assert!(matches!(Config::from_source(&Map(m)), Err(ConfigError::Missing(_))));
    }

    #[test]
    fn encryption_keys_take_precedence_for_v1() {
        let mut m = base();
        let other = Box::leak(format!(r#"{{"v1":"{}","v2":"{}"}}"#, "ab".repeat(32), KEY).into_boxed_str());
        m.insert("encryption_keys", other);
        let c = Config::from_source(&Map(m)).unwrap();
        assert!(c.keys.has("v2"));
        // v1 is the JSON's key, so the known answer (made with KEY) no longer decrypts under v1.
        let known = "v1:a0a1a2a3a4a5a6a7a8a9aaabacadaeaf:96f074d59d58732b41fefbddc91e2b62:6fe262fe35b9a805b7b36bde8671e3";
        assert!(c.keys.decrypt(known).is_err());
    }
}
