//! The webhook retry's own settings (docs/configuration.md): where webhooks are delivered and
//! signed with what ([`Delivery`], the front door's forward too), the policy's [`Rules`] (the
//! console and the status route count the queue by them), and how much a run delivers, how fast.

use std::time::Duration;

use super::policy::Rules;
use crate::config::{self, hours, http_url, number, ConfigError, Source, SpinVariables};

#[derive(Clone, PartialEq)]
pub struct Settings {
    pub delivery: Delivery,
    pub rules: Rules,
    /// Webhooks a run claims in all.
    pub batch_size: u32,
    /// Re-deliveries in flight at once.
    pub concurrency: usize,
    /// Of those, the most one tenant holds while another has webhooks waiting (SPEC section 6).
    pub tenant_concurrency: usize,
}

impl Settings {
    pub fn load() -> Result<Self, ConfigError> {
        Self::from_source(&SpinVariables)
    }

    /// Refused without a processor: optional for the app (the front door stores without one),
    /// required for this job.
    pub fn from_source(src: &impl Source) -> Result<Self, ConfigError> {
        let delivery = Delivery::from_source(src)?;
        if delivery.processor_url.is_none() {
            return Err(ConfigError::Missing("webhook_processor_url"));
        }
        Ok(Self {
            delivery,
            rules: Rules::from_source(src)?,
            batch_size: number(src, "webhook_retry_batch_size", 50, 1..=100_000)?,
            concurrency: number(src, "webhook_retry_concurrency", 16, 1..=256)?,
            tenant_concurrency: number(src, "webhook_retry_tenant_concurrency", 4, 1..=256)?,
        })
    }
}

/// Where a webhook goes and how it is signed: the retry's deliveries and the front door's forward.
#[derive(Clone, PartialEq)]
pub struct Delivery {
    /// Not set: the front door only stores (the job refuses to run).
    pub processor_url: Option<String>,
    /// Signs each delivery when set, with or without `meta_app_id`.
    pub app_secret: Option<String>,
}

impl Delivery {
    pub fn from_source(src: &impl Source) -> Result<Self, ConfigError> {
        let processor_url = http_url(src, "webhook_processor_url")?;
        // An `allowed_outbound_hosts` entry: one that does not cover the URL refuses every delivery.
        config::host_of(src, "webhook_processor_host", "webhook_processor_url", processor_url.as_deref())?;
        Ok(Self { processor_url, app_secret: src.value("meta_app_secret")? })
    }
}

impl Rules {
    pub fn from_source(src: &impl Source) -> Result<Self, ConfigError> {
        Ok(Self {
            max_attempts: number(src, "webhook_retry_max_attempts", 3, 1..=100)?,
            base: Duration::from_secs(number(src, "webhook_retry_base_seconds", 300, 1..=86_400)?),
            max_age: hours(number(src, "webhook_retry_max_age_hours", 168, 1..=87_600)?),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::testing::{base, with, Map};

    #[test]
    fn defaults_apply() {
        let s = Settings::from_source(&Map(base())).unwrap();
        let rules = Rules {
            max_attempts: 3,
            base: Duration::from_secs(300),
            max_age: Duration::from_secs(168 * 3600),
        };
        assert_eq!((s.rules, s.batch_size, s.concurrency, s.tenant_concurrency), (rules, 50, 16, 4));
        assert_eq!(s.delivery.app_secret, None);
    }

    #[test]
    fn the_job_needs_a_processor_the_front_door_does_not() {
        let mut m = base();
        m.remove("webhook_processor_url");
        let e = Settings::from_source(&Map(m.clone())).err().unwrap();
        assert_eq!(e, ConfigError::Missing("webhook_processor_url"));
        assert_eq!(Delivery::from_source(&Map(m)).unwrap().processor_url, None);
    }

    #[test]
    fn urls_must_be_http() {
        let e = Delivery::from_source(&with("webhook_processor_url", "ftp://x")).err().unwrap();
        assert!(e.to_string().contains("webhook_processor_url"));
    }
}
