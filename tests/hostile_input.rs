//! Hostile input for the parsers that read what outsiders send: no input makes them panic, and
//! what they accept is what they should. Property tests, a few thousand cases each (native; no
//! host needed).

use proptest::prelude::*;
use whatrack_jobs::crypto::{self, KeyRing};
use whatrack_jobs::graph::{parse_debug_token, parse_phone_health, Answer};
use whatrack_jobs::jobs::webhook_retry::policy::parse_retry_after;
use whatrack_jobs::jobs::webhook_retry::queue::{is_rfc3339, Redrive};

const KEY: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

fn ring() -> KeyRing {
    KeyRing::from_json(&format!(r#"{{"v1":"{KEY}"}}"#)).unwrap()
}

fn config() -> ProptestConfig {
    ProptestConfig { cases: 4096, ..ProptestConfig::default() }
}

/// Strings shaped like stored tokens: hex parts, colons, versions, and some noise.
fn ciphertext_like() -> impl Strategy<Value = String> {
    prop_oneof![
        "[0-9a-fv:]{0,120}",
        "(v[0-9]:)?[0-9a-f]{0,40}:[0-9a-f]{0,40}:[0-9a-f]{0,60}",
        any::<String>(),
    ]
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn decrypting_anything_is_an_answer_not_a_panic(stored in ciphertext_like()) {
        let _ = ring().decrypt(&stored);
    }

    /// A tampered ciphertext never decrypts to anything: GCM's tag refuses it.
    #[test]
    fn a_flipped_bit_never_decrypts(token in "[A-Za-z0-9]{1,60}", iv in any::<[u8; 16]>(), at in any::<usize>()) {
        let stored = crypto::encrypt(KEY, Some("v1"), &iv, &token);
        prop_assert_eq!(ring().decrypt(&stored).unwrap(), token);
        let mut bytes = stored.into_bytes();
        let i = 3 + at % (bytes.len() - 3);
        if bytes[i] == b':' { return Ok(()); }
        bytes[i] = if bytes[i] == b'0' { b'1' } else { b'0' };
        prop_assert!(ring().decrypt(&String::from_utf8(bytes).unwrap()).is_err());
    }

    #[test]
    fn graph_answers_of_any_shape_are_classified(status in 100u16..600, body in prop_oneof![
        any::<Vec<u8>>().prop_map(|b| b),
        "\\{\"(data|error|health_status|status)\":[^}]{0,80}\\}".prop_map(String::into_bytes),
        Just(br#"{"error":{"code":"190","message":null}}"#.to_vec()),
        Just(br#"{"data":{"is_valid":true,"expires_at":1e300,"scopes":[1,2]}}"#.to_vec()),
    ]) {
        let token = parse_debug_token(status, &body);
        let phone = parse_phone_health(status, &body);
        // Whatever it is, it is one of the three answers, and garbage is never "ok".
        if serde_json::from_slice::<serde_json::Value>(&body).is_err() {
            prop_assert!(!matches!(token, Answer::Ok(_)));
            prop_assert!(!matches!(phone, Answer::Ok(_)));
        }
    }

    #[test]
    fn retry_after_of_any_text_is_a_delay_or_nothing(value in prop_oneof![
        any::<String>(),
        "[0-9]{0,30}",
        "(Sun|Mon|Sunday), [0-9]{1,3}[ -](Nov|Foo)[ -][0-9]{2,5} [0-9]{1,3}:[0-9]{1,3}:[0-9]{1,3} (GMT|UTC)",
    ], now in 0u64..4_000_000_000) {
        let _ = parse_retry_after(&value, std::time::UNIX_EPOCH + std::time::Duration::from_secs(now));
    }

    #[test]
    fn redrive_bodies_of_any_shape_are_one_form_or_refused(body in prop_oneof![
        any::<Vec<u8>>(),
        "\\{\"(ids|dead)\":(true|false|null|\\[\"[a-z0-9-]{0,36}\"(,\"x\")?\\]|1)(,\"(ids|dead)\":(true|\\[\\]))?\\}".prop_map(String::into_bytes),
        "\\{\"(organizationId|dead|ids)\":(\"[a-z0-9-]{0,36}\"|null|7|true)(,\"(organizationId|dead)\":(true|\"x\"))?\\}".prop_map(String::into_bytes),
        "\\{\"(deadSince|deadUntil|limit|dead)\":(\"20[0-9]{2}-[01][0-9]-[0-3][0-9][Tt ][0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9]{0,3})?(Z|[+-][0-9]{2}:[0-9]{2}|)\"|-?[0-9]{1,7}|true)(,\"(deadSince|deadUntil|limit|ids)\":(\"now\"|\"2026-11-28T00:00:00Z\"|[0-9]{1,6}))?\\}".prop_map(String::into_bytes),
    ]) {
        match Redrive::from_json(&body) {
            None => {}
            Some(Redrive::All) => {
                let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
                prop_assert_eq!(&v["dead"], &serde_json::Value::Bool(true));
                prop_assert!(v.get("ids").is_none());
            }
            Some(Redrive::Ids(ids)) => {
                let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
                prop_assert!(v.get("dead").is_none());
                prop_assert_eq!(v["ids"].as_array().unwrap().len(), ids.len());
            }
            // Only RFC 3339 times reach Postgres, which would also take `now` or a bare date.
            Some(Redrive::Window { since, until, limit }) => {
                let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
                prop_assert!(v.get("dead").is_none() && v.get("ids").is_none());
                prop_assert!(is_rfc3339(&since) && until.iter().all(|u| is_rfc3339(u)));
                prop_assert!(limit.is_none_or(|n| (1..=100_000).contains(&n)));
                prop_assert!(since.len() >= 20 && since.as_bytes()[10].eq_ignore_ascii_case(&b't'));
            }
            Some(Redrive::Organization(organization)) => {
                let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
                prop_assert_eq!(v.as_object().map(|o| o.len()), Some(1), "the organization and nothing more");
                prop_assert_eq!(v["organizationId"].as_str(), Some(organization.as_str()));
            }
        }
    }
}
