//! URLs, as far as this component needs them: split one into its parts, check it against an
//! `allowed_outbound_hosts` entry the way Spin does, and strip credentials out of any text that
//! quotes one.
//!
//! Hand-written because the `url` crate's IDNA tables would grow the component by about 200 KB
//! (measured: 584 KB to 785 KB) for addresses that are ASCII in practice.

/// `scheme://[user[:password]@]host[:port][/path][?query]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parts<'a> {
    pub scheme: &'a str,
    /// `host[:port]`, as written.
    pub authority: &'a str,
    /// As written: an IPv6 address keeps its brackets.
    pub host: &'a str,
    pub port: Option<u16>,
    /// Starts with `/` or `?`; empty when the URL has neither.
    pub path_and_query: &'a str,
}

impl Parts<'_> {
    /// The port, or the one the scheme's clients use when a URL names none.
    pub fn port_or_default(&self) -> Option<u16> {
        self.port.or_else(|| client_default_port(self.scheme))
    }
}

/// `None` when `url` has no scheme, no host, or a port that is not a number.
pub fn split(url: &str) -> Option<Parts<'_>> {
    let (scheme, rest) = url.split_once("://")?;
    if scheme.is_empty() || !scheme.chars().all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c)) {
        return None;
    }
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (with_userinfo, path_and_query) = rest.split_at(end);
    let authority = with_userinfo.rsplit_once('@').map_or(with_userinfo, |(_, hostport)| hostport);
    let (host, port) = host_and_port(authority)?;
    if host.is_empty() || host.contains(char::is_whitespace) {
        return None;
    }
    let port = match port {
        Some(p) => Some(p.parse().ok()?),
        None => None,
    };
    Some(Parts { scheme, authority, host, port, path_and_query })
}

/// `host[:port]`, where an IPv6 host keeps its brackets.
fn host_and_port(authority: &str) -> Option<(&str, Option<&str>)> {
    if authority.starts_with('[') {
        let close = authority.find(']')?;
        let (host, after) = authority.split_at(close + 1);
        return Some((host, after.strip_prefix(':')));
    }
    Some(match authority.rsplit_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (authority, None),
    })
}

/// The port a URL without one reaches, as the clients read it.
fn client_default_port(scheme: &str) -> Option<u16> {
    Some(match scheme {
        "postgres" | "postgresql" => 5432,
        "redis" | "rediss" => 6379,
        "http" => 80,
        "https" => 443,
        _ => return None,
    })
}

/// The port Spin gives an `allowed_outbound_hosts` entry that names none. Spin 3.5 knows these
/// schemes only: an entry such as `rediss://cache` without a port is refused ("Invalid allowed
/// host port"), and with it every outbound connection of the component (seen under Spin 3.5.0).
/// The test host's table is written from Spin's code on its own; a test holds the two equal.
pub fn spin_default_port(scheme: &str) -> Option<u16> {
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

/// Why a value cannot serve as an `allowed_outbound_hosts` entry, in Spin's terms.
pub const HOST_ENTRY_FORM: &str = "must be scheme://host[:port] with no path, e.g. https://hooks.example.com or \
     postgres://db.internal:5432; the port may be left out only for http, https, postgres, redis, mysql and mqtt";

/// Checks `entry` as Spin reads an `allowed_outbound_hosts` entry (`*` may stand for the scheme,
/// the host, a `*.` subdomain prefix or the port; no port means the scheme's well-known one),
/// and whether it lets the component reach `url`. `Err` when the entry itself is malformed:
/// Spin then refuses every outbound connection of the component.
pub fn entry_allows(entry: &str, url: &str) -> Result<bool, ()> {
    let entry = entry.trim();
    let (scheme, rest) = entry.split_once("://").ok_or(())?;
    let rest = rest.trim_end_matches('/');
    if rest.contains('/') || rest.contains('@') || rest.is_empty() {
        return Err(());
    }
    let (host, port) = host_and_port(rest).ok_or(())?;
    if host.is_empty() || (host.contains('*') && host != "*" && !host.starts_with("*.")) {
        return Err(());
    }
    let port_rule = match port {
        Some("*") => None,
        Some(p) => Some(p.parse::<u16>().map_err(|_| ())?),
        None => Some(spin_default_port(scheme).ok_or(())?),
    };
    let Some(target) = split(url) else { return Ok(false) };
    let scheme_ok = scheme == "*" || scheme == target.scheme;
    let host_ok = match host.strip_prefix("*.") {
        _ if host == "*" => true,
        Some(domain) => target.host.ends_with(&format!(".{domain}")),
        None => host == target.host,
    };
    let port_ok = port_rule.is_none() || port_rule == target.port_or_default();
    Ok(scheme_ok && host_ok && port_ok)
}

/// `text` with the user info (`user:password@`) of every URL it quotes removed, so that an error
/// that quotes `postgres://app:SECRET@db:5432/whatrack` shows `postgres://db:5432/whatrack`.
pub fn redact(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("://") {
        let (before, after) = rest.split_at(at + 3);
        out.push_str(before);
        // The URL runs to the next white space or quote; its user info ends at its last '@'.
        let end = after.find(|c: char| c.is_whitespace() || "\"'`<>".contains(c)).unwrap_or(after.len());
        match after[..end].rfind('@') {
            Some(userinfo_end) => rest = &after[userinfo_end + 1..],
            None => rest = after,
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_urls() {
        let p = split("https://user:pw@hooks.example.com:8443/a/b?c=d").unwrap();
        assert_eq!(
            (p.scheme, p.authority, p.host, p.port, p.path_and_query),
            ("https", "hooks.example.com:8443", "hooks.example.com", Some(8443), "/a/b?c=d")
        );
        let p = split("http://[::1]:3000").unwrap();
        assert_eq!((p.host, p.port, p.path_and_query), ("[::1]", Some(3000), ""));
        assert_eq!(split("redis://127.0.0.1/2").unwrap().port_or_default(), Some(6379));
        for bad in ["", "://x", "http://", "http://host:port/", "hooks.example.com/x", "http:// x/"] {
            assert_eq!(split(bad), None, "{bad}");
        }
    }

    #[test]
    fn host_entries_as_spin_reads_them() {
        assert_eq!(entry_allows("https://hooks.example.com", "https://hooks.example.com/x"), Ok(true));
        assert_eq!(entry_allows("https://hooks.example.com/", "https://hooks.example.com/x"), Ok(true));
        assert_eq!(entry_allows("https://hooks.example.com", "https://hooks.example.com:8443/x"), Ok(false));
        assert_eq!(entry_allows("http://127.0.0.1:8080", "http://localhost:8080/"), Ok(false));
        assert_eq!(entry_allows("postgres://db:5432", "postgres://u:p@db:5432/whatrack"), Ok(true));
        // Spin has no default port for these schemes: the entry needs one.
        assert_eq!(entry_allows("rediss://cache", "rediss://cache:6379"), Err(()));
        assert_eq!(entry_allows("postgresql://db", "postgresql://db:5432/x"), Err(()));
        assert_eq!(entry_allows("rediss://cache:6379", "rediss://cache/0"), Ok(true));
        assert_eq!(entry_allows("postgres://db", "postgres://u@db/whatrack"), Ok(true));
        assert_eq!(entry_allows("https://*.example.com", "https://api.example.com/x"), Ok(true));
        assert_eq!(entry_allows("https://*.example.com", "https://example.org/x"), Ok(false));
        assert_eq!(entry_allows("*://*:*", "redis://cache:6380"), Ok(true));
        assert_eq!(entry_allows("http://[::1]:3000", "http://[::1]:3000/x"), Ok(true));
        assert_eq!(entry_allows("http://[::1]", "http://[::1]/x"), Ok(true));
        for malformed in [
            "",
            "hooks.example.com",
            "https://hooks.example.com/path",
            "postgres://u:p@db:5432",
            "http://a*b.com",
            "ftp://host",
        ] {
            assert_eq!(entry_allows(malformed, "https://x"), Err(()), "{malformed:?}");
        }
    }

    #[test]
    fn redacts_user_info_wherever_a_url_is_quoted() {
        assert_eq!(
            redact("address postgres://app:S3cret@db.internal:5432/whatrack is not permitted"),
            "address postgres://db.internal:5432/whatrack is not permitted"
        );
        assert_eq!(redact("\"redis://:hunter2@cache:6379\" refused"), "\"redis://cache:6379\" refused");
        // A password with an unescaped '/' or '@' still goes: user info ends at the last '@'.
        assert_eq!(redact("dial postgres://u:pa/ss@w@db:5432/x failed"), "dial postgres://db:5432/x failed");
        assert_eq!(redact("no url here"), "no url here");
        assert_eq!(redact("two: http://a:b@h1/ and https://c:d@h2"), "two: http://h1/ and https://h2");
    }
}
