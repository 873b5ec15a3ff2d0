//! `allowed_outbound_hosts` as Spin 3.5 reads and enforces it: entries are
//! `scheme://host[:port]` (no path), `*` may stand for the scheme, the host, a subdomain prefix
//! or the port; hosts match literally (`localhost` does not allow `127.0.0.1`); an entry without
//! a port allows only the scheme's well-known port.

use anyhow::{anyhow, bail, Result};

#[derive(Debug, Clone, Default)]
pub struct AllowedHosts {
    entries: Vec<Entry>,
    /// Spin resolves templated entries when the component first dials out; one that does not
    /// parse then makes every outbound connection fail with this message.
    broken: Option<String>,
}

#[derive(Debug, Clone)]
struct Entry {
    scheme: Option<String>,
    host: HostRule,
    port: PortRule,
}

#[derive(Debug, Clone)]
enum HostRule {
    Any,
    Subdomain(String),
    Literal(url::Host),
}

#[derive(Debug, Clone)]
enum PortRule {
    Any,
    Port(u16),
    Range(u16, u16),
}

pub fn well_known_port(scheme: &str) -> Option<u16> {
    Some(match scheme {
        "postgres" => 5432,
        "mysql" => 3306,
        "redis" => 6379,
        "mqtt" => 1883,
        "http" => 80,
        "https" => 443,
        _ => return None,
    })
}

impl AllowedHosts {
    pub fn parse(entries: &[String]) -> Result<Self> {
        let entries = entries.iter().map(|e| Entry::parse(e)).collect::<Result<Vec<_>>>()?;
        Ok(Self { entries, broken: None })
    }

    /// Entries rendered from templates: a malformed one breaks outbound networking at run time,
    /// not at startup.
    pub fn parse_resolved(entries: &[String]) -> Self {
        Self::parse(entries).unwrap_or_else(|e| Self { entries: Vec::new(), broken: Some(format!("{e:#}")) })
    }

    /// Whether `url` may be reached; `Err` with Spin's message when the entries are broken.
    pub fn check(&self, url: &str) -> std::result::Result<bool, String> {
        match &self.broken {
            Some(message) => Err(message.clone()),
            None => Ok(self.allows(url)),
        }
    }

    /// Whether `url` (any scheme Spin dials: http, https, postgres, redis) may be reached.
    pub fn allows(&self, url: &str) -> bool {
        let Some((scheme, host, port)) = split_target(url) else {
            return false;
        };
        let Some(port) = port.or_else(|| well_known_port(&scheme)) else {
            return false;
        };
        let Ok(host) = url::Host::parse(&host) else {
            return false;
        };
        self.broken.is_none() && self.entries.iter().any(|e| e.allows(&scheme, &host, port))
    }
}

impl Entry {
    fn parse(raw: &str) -> Result<Self> {
        let raw = raw.trim();
        let Some((scheme, rest)) = raw.split_once("://") else {
            if matches!(raw, "*" | ":" | "" | "?") {
                bail!(
                    "{raw:?} is not an allowed outbound host format.\nHosts must be in the form <scheme>://<host>[:<port>], with '*' wildcards allowed for each."
                );
            }
            bail!("{raw:?} does not contain a scheme (e.g. 'http://' or '*://')");
        };
        let (host, port) = rest.rsplit_once(':').unwrap_or((rest, ""));
        let port = match port.split_once('/') {
            Some((_, path)) if !path.is_empty() => {
                bail!("{raw:?} has a path but is not allowed to")
            }
            Some((port, _)) => port,
            None => port,
        };
        let host = host.trim().trim_end_matches('/');
        if host.contains('/') {
            bail!("{raw:?} has a path but is not allowed to");
        }
        let scheme_rule = match scheme {
            "*" => None,
            s if s.chars().all(|c| c.is_ascii_alphabetic()) && !s.is_empty() => Some(s.to_owned()),
            s => bail!("invalid scheme {s:?} in {raw:?}"),
        };
        let host_rule = if host == "*" {
            HostRule::Any
        } else if let Some(domain) = host.strip_prefix("*.") {
            if domain.contains('*') {
                bail!("wildcards are allowed only as prefixes: {raw:?}");
            }
            HostRule::Subdomain(format!(".{domain}"))
        } else if host.contains('*') {
            bail!("wildcards are allowed only as subdomains: {raw:?}");
        } else {
            HostRule::Literal(url::Host::parse(host).map_err(|e| anyhow!("invalid host in {raw:?}: {e}"))?)
        };
        let port_rule = if port.is_empty() {
            PortRule::Port(
                well_known_port(scheme)
                    .ok_or_else(|| anyhow!("{raw:?}: no port and scheme {scheme:?} has no default port"))?,
            )
        } else if port == "*" {
            PortRule::Any
        } else if let Some((a, b)) = port.split_once("..") {
            PortRule::Range(a.parse()?, b.parse()?)
        } else {
            PortRule::Port(port.parse().map_err(|_| anyhow!("port {port:?} is not a number in {raw:?}"))?)
        };
        Ok(Self { scheme: scheme_rule, host: host_rule, port: port_rule })
    }

    fn allows(&self, scheme: &str, host: &url::Host, port: u16) -> bool {
        let scheme_ok = self.scheme.as_deref().is_none_or(|s| s == scheme);
        let host_ok = match (&self.host, host) {
            (HostRule::Any, _) => true,
            (HostRule::Subdomain(suffix), url::Host::Domain(d)) => d.ends_with(suffix.as_str()),
            (HostRule::Subdomain(_), _) => false,
            (HostRule::Literal(l), h) => l == h,
        };
        let port_ok = match self.port {
            PortRule::Any => true,
            PortRule::Port(p) => p == port,
            PortRule::Range(a, b) => (a..b).contains(&port),
        };
        scheme_ok && host_ok && port_ok
    }
}

/// Scheme, host and explicit port of a URL or a Postgres/Redis address, ignoring user info,
/// path and query (Spin parses these the same way before checking them). `url` leaves out a
/// port equal to the scheme's default, which the caller fills back in.
fn split_target(url: &str) -> Option<(String, String, Option<u16>)> {
    let parsed = url::Url::parse(url).ok()?;
    Some((parsed.scheme().to_owned(), parsed.host_str()?.to_owned(), parsed.port()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hosts(entries: &[&str]) -> AllowedHosts {
        AllowedHosts::parse(&entries.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap()
    }

    #[test]
    fn literal_hosts_and_ports() {
        let h = hosts(&["http://127.0.0.1:8080", "https://graph.facebook.com"]);
        assert!(h.allows("http://127.0.0.1:8080/v25.0/x?y=1"));
        assert!(!h.allows("http://localhost:8080/"));
        assert!(!h.allows("http://127.0.0.1:8081/"));
        assert!(h.allows("https://graph.facebook.com/v25.0/debug_token"));
        assert!(!h.allows("https://graph.facebook.com:8443/"));
        assert!(!h.allows("http://graph.facebook.com/"));
    }

    #[test]
    fn database_addresses() {
        let h = hosts(&["postgres://localhost:5432", "redis://127.0.0.1:6379"]);
        assert!(h.allows("postgres://user:p%40ss@localhost:5432/whatrack"));
        assert!(h.allows("postgres://user@localhost/whatrack"));
        assert!(!h.allows("postgres://user@127.0.0.1:5432/whatrack"));
        assert!(h.allows("redis://127.0.0.1:6379"));
        assert!(!h.allows("redis://127.0.0.1:6380"));
    }

    #[test]
    fn wildcards() {
        let h = hosts(&["https://*.example.com", "*://*:*"]);
        assert!(h.allows("mqtt://anything:1"));
        let h = hosts(&["https://*.example.com"]);
        assert!(h.allows("https://api.example.com/x"));
        assert!(!h.allows("https://example.org/x"));
    }

    #[test]
    fn malformed_entries_refused() {
        for bad in
            ["127.0.0.1:80", "http://host/path", "postgres://u:p@h:5432/db", "http://a*b.com", "ftp://host"]
        {
            assert!(AllowedHosts::parse(&[bad.to_string()]).is_err(), "{bad}");
        }
    }
}
