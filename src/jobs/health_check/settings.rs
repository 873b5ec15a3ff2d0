//! The health check's own settings (docs/configuration.md): Meta's Graph API, the keys that
//! decrypt the stored tokens, and how much of the estate a run checks, how fast.

use crate::config::{invalid, number, ConfigError, Source, SpinVariables};
use crate::crypto::KeyRing;
use crate::graph::MetaApp;

const DEFAULT_GRAPH_URL: &str = "https://graph.facebook.com";

#[derive(Clone, PartialEq)]
pub struct Settings {
    pub graph_url: String,
    pub api_version: String,
    pub app_id: Option<String>,
    pub app_secret: Option<String>,
    pub keys: KeyRing,
    pub recheck_after_hours: u32,
    /// Graph requests in flight at once (each a batch, or a single call).
    pub concurrency: usize,
    /// Operations per Graph batch request (at most Meta's 50); 1 makes single calls.
    pub batch_size: usize,
    /// Meta's usage figures at which a run starts no further Graph call.
    pub usage_ceiling_percent: u32,
    pub token_expiry_warning_days: u32,
}

impl Settings {
    pub fn load() -> Result<Self, ConfigError> {
        Self::from_source(&SpinVariables)
    }

    pub fn from_source(src: &impl Source) -> Result<Self, ConfigError> {
        let graph_url = match src.get("meta_graph_url")? {
            None => DEFAULT_GRAPH_URL.to_owned(),
            Some(url) => url.trim_end_matches('/').to_owned(),
        };
        // Also an `allowed_outbound_hosts` entry: one Spin cannot read makes it refuse every
        // outbound connection.
        crate::config::allowed_host("meta_graph_url", &graph_url)?;
        Ok(Self {
            graph_url,
            api_version: src.value("meta_api_version")?.unwrap_or_else(|| "v25.0".into()),
            app_id: src.value("meta_app_id")?,
            app_secret: src.value("meta_app_secret")?,
            keys: key_ring(src)?,
            recheck_after_hours: number(src, "health_recheck_after_hours", 20, 0..=8760)?,
            concurrency: number(src, "health_check_concurrency", 16, 1..=256)?,
            batch_size: number(src, "graph_batch_size", 50, 1..=50)?,
            usage_ceiling_percent: number(src, "graph_usage_ceiling_percent", 90, 1..=100)?,
            token_expiry_warning_days: token_expiry_warning_days(src)?,
        })
    }

    /// The app credentials `debug_token` needs, when both are set.
    pub fn meta_app(&self) -> Option<MetaApp<'_>> {
        Some(MetaApp { id: self.app_id.as_deref()?, secret: self.app_secret.as_deref()? })
    }
}

/// Days before a token's expiry that make it a warning (the console lists the same tokens).
pub fn token_expiry_warning_days(src: &impl Source) -> Result<u32, ConfigError> {
    number(src, "token_expiry_warning_days", 7, 0..=365)
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
    use crate::config::testing::{base, with, Map, KEY};

    #[test]
    fn defaults_apply() {
        let s = Settings::from_source(&Map(base())).unwrap();
        assert_eq!((s.graph_url.as_str(), s.api_version.as_str()), ("https://graph.facebook.com", "v25.0"));
        assert_eq!((s.concurrency, s.batch_size, s.usage_ceiling_percent), (16, 50, 90));
        assert_eq!((s.recheck_after_hours, s.token_expiry_warning_days), (20, 7));
        assert!(s.meta_app().is_none());
        assert!(s.keys.has("v1"));
    }

    #[test]
    fn unparsable_number_named() {
        let e = Settings::from_source(&with("health_check_concurrency", "lots")).err().unwrap();
        assert!(e.to_string().contains("health_check_concurrency"), "{e}");
        assert!(Settings::from_source(&with("health_check_concurrency", "0")).is_err());
    }

    #[test]
    fn bad_key_named_without_value() {
        let e = Settings::from_source(&with("token_encryption_key", "abcd")).err().unwrap();
        assert!(e.to_string().contains("token_encryption_key"));
        assert!(!e.to_string().contains("abcd"));
    }

    #[test]
    fn no_key_at_all_is_missing() {
        let mut m = base();
        m.remove("token_encryption_key");
        assert!(matches!(Settings::from_source(&Map(m)), Err(ConfigError::Missing(_))));
    }

    #[test]
    fn encryption_keys_take_precedence_for_v1() {
        let other = Box::leak(format!(r#"{{"v1":"{}","v2":"{}"}}"#, "ab".repeat(32), KEY).into_boxed_str());
        let s = Settings::from_source(&with("encryption_keys", other)).unwrap();
        assert!(s.keys.has("v2"));
        // v1 is the JSON's key, so the known answer (made with KEY) no longer decrypts under v1.
        let known = "v1:a0a1a2a3a4a5a6a7a8a9aaabacadaeaf:96f074d59d58732b41fefbddc91e2b62:6fe262fe35b9a805b7b36bde8671e3";
        assert!(s.keys.decrypt(known).is_err());
    }

    #[test]
    fn a_graph_url_spin_cannot_read_as_a_host_is_refused() {
        let e = Settings::from_source(&with("meta_graph_url", "graph.facebook.com")).err().unwrap();
        assert!(e.to_string().contains("meta_graph_url"), "{e}");
    }
}
