//! Who may start a job: the caller must present the shared secret (`cron_secret`, or
//! `cron_secret_previous` during a rotation).
//!
//! Pure functions, so that every way of presenting (or botching) the secret is unit-tested.

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// The places a caller may put the secret. The query parameter is only honoured on the GET status
/// routes (older monitors use it); the router decides whether to pass it.
#[derive(Debug, Default, Clone, Copy)]
pub struct Presented<'a> {
    pub x_cron_secret: Option<&'a str>,
    pub authorization: Option<&'a str>,
    pub query_secret: Option<&'a str>,
}

impl<'a> Presented<'a> {
    fn candidates(&self) -> impl Iterator<Item = &'a str> {
        let bearer = self.authorization.and_then(bearer_token);
        [self.x_cron_secret, bearer, self.query_secret].into_iter().flatten().filter(|s| !s.is_empty())
    }
}

/// `Authorization: Bearer <token>`; the scheme name is case-insensitive (RFC 9110), the token not.
fn bearer_token(header: &str) -> Option<&str> {
    let (scheme, token) = header.trim().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// A header (or query parameter) sent more than once: refused, whichever value is right, so
/// that a proxy adding or a client repeating one cannot make the check look at another.
#[derive(Debug, PartialEq, Eq)]
pub struct Repeated;

/// The one value of a header as received (all its values), if it came once and as UTF-8.
pub fn only_value(values: &[Vec<u8>]) -> Result<Option<&str>, Repeated> {
    match values {
        [] => Ok(None),
        [one] => Ok(std::str::from_utf8(one).ok()),
        _ => Err(Repeated),
    }
}

/// True when any presented value equals one of the accepted secrets.
///
/// Both sides are hashed before the constant-time comparison so that neither the content nor the
/// length of the secret leaks through timing.
pub fn is_authorized(presented: &Presented<'_>, accepted: &[&str]) -> bool {
    let accepted: Vec<[u8; 32]> = accepted.iter().filter(|s| !s.is_empty()).map(|s| digest(s)).collect();
    let mut ok = subtle::Choice::from(0u8);
    for candidate in presented.candidates() {
        let candidate = digest(candidate);
        for secret in &accepted {
            ok |= candidate.ct_eq(secret);
        }
    }
    ok.into()
}

fn digest(s: &str) -> [u8; 32] {
    Sha256::digest(s.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "0123456789abcdef0123456789abcdef";
    const OLD: &str = "fedcba9876543210fedcba9876543210";

    fn check(p: Presented<'_>) -> bool {
        is_authorized(&p, &[SECRET, OLD])
    }

    #[test]
    fn header_secret_accepted() {
        assert!(check(Presented { x_cron_secret: Some(SECRET), ..Default::default() }));
    }

    #[test]
    fn previous_secret_accepted() {
        assert!(check(Presented { x_cron_secret: Some(OLD), ..Default::default() }));
    }

    #[test]
    fn bearer_accepted_with_any_case_scheme() {
        let h = format!("Bearer {SECRET}");
        assert!(check(Presented { authorization: Some(&h), ..Default::default() }));
        let h = format!("bearer {SECRET}");
        assert!(check(Presented { authorization: Some(&h), ..Default::default() }));
    }

    #[test]
    fn basic_scheme_refused() {
        let h = format!("Basic {SECRET}");
        assert!(!check(Presented { authorization: Some(&h), ..Default::default() }));
    }

    #[test]
    fn missing_wrong_empty_and_recased_refused() {
        assert!(!check(Presented::default()));
        assert!(!check(Presented { x_cron_secret: Some("nope"), ..Default::default() }));
        assert!(!check(Presented { x_cron_secret: Some(""), ..Default::default() }));
        let upper = SECRET.to_uppercase();
        assert!(!check(Presented { x_cron_secret: Some(&upper), ..Default::default() }));
        let prefix = &SECRET[..31];
        assert!(!check(Presented { x_cron_secret: Some(prefix), ..Default::default() }));
    }

    #[test]
    fn empty_previous_secret_never_matches_empty_input() {
        assert!(!is_authorized(&Presented { x_cron_secret: Some(""), ..Default::default() }, &[SECRET, ""]));
        assert!(!is_authorized(
            &Presented { authorization: Some("Bearer "), ..Default::default() },
            &[SECRET, ""]
        ));
    }

    #[test]
    fn a_header_sent_twice_is_refused_whatever_its_values() {
        let right = SECRET.as_bytes().to_vec();
        assert_eq!(only_value(&[right.clone(), b"wrong".to_vec()]), Err(Repeated));
        assert_eq!(only_value(&[right.clone(), right.clone()]), Err(Repeated));
        assert_eq!(only_value(&[right]), Ok(Some(SECRET)));
        assert_eq!(only_value(&[]), Ok(None));
        assert_eq!(only_value(&[vec![0xff, 0xfe]]), Ok(None), "not UTF-8: not a secret");
    }

    #[test]
    fn prefixes_and_suffixes_of_the_secret_are_refused() {
        for wrong in
            [format!("{SECRET}x"), format!("x{SECRET}"), SECRET[1..].to_owned(), format!("{SECRET} ")]
        {
            assert!(!check(Presented { x_cron_secret: Some(&wrong), ..Default::default() }), "{wrong:?}");
        }
    }

    #[test]
    fn query_secret_counts_when_passed() {
        assert!(check(Presented { query_secret: Some(SECRET), ..Default::default() }));
    }
}
