//! WhaTrack's token ciphertext, byte-compatible with its Node code (SPEC section 8), and the HMAC
//! that signs re-delivered webhooks.
//!
//! Stored form: `vN:iv:tag:ciphertext` (or legacy `iv:tag:ciphertext`, read with key `v1`), each part
//! lowercase hex. AES-256-GCM with a 16-byte IV (Node's choice, not the usual 12), a 16-byte tag
//! and no associated data. Errors name what is wrong with the value, never the key or plaintext.

use std::collections::BTreeMap;
use std::fmt;

use aes_gcm::aead::consts::U16;
use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{AesGcm, Nonce};
use hmac::{Hmac, Mac};
use sha2::Sha256;

type Aes256Gcm16 = AesGcm<aes::Aes256, U16>;

const IV_LEN: usize = 16;
const TAG_LEN: usize = 16;
const KEY_HEX_LEN: usize = 64;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecryptError {
    #[error("ciphertext must have 3 or 4 ':'-separated parts, found {0}")]
    Shape(usize),
    #[error("the {0} part is not hex")]
    NotHex(&'static str),
    #[error("IV must be {IV_LEN} bytes, found {0}")]
    IvLength(usize),
    #[error("auth tag must be {TAG_LEN} bytes, found {0}")]
    TagLength(usize),
    #[error("no key for version {0:?}")]
    UnknownKeyVersion(String),
    #[error("authentication failed (wrong key or tampered ciphertext)")]
    Authentication,
    #[error("plaintext is not UTF-8")]
    NotUtf8,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyError {
    #[error("key {version:?} must be {KEY_HEX_LEN} hex characters")]
    BadKey { version: String },
    #[error("not a JSON object of version to key")]
    NotJsonObject,
}

/// Key versions to AES-256 keys. `Debug` shows the versions only.
#[derive(Clone, Default, PartialEq)]
pub struct KeyRing {
    keys: BTreeMap<String, [u8; 32]>,
}

impl fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyRing").field("versions", &self.keys.keys().collect::<Vec<_>>()).finish()
    }
}

impl KeyRing {
    /// Parses WhaTrack's `ENCRYPTION_KEYS` JSON (`{"v1":"<64 hex>"}`).
    pub fn from_json(json: &str) -> Result<Self, KeyError> {
        let map: BTreeMap<String, String> =
            serde_json::from_str(json).map_err(|_| KeyError::NotJsonObject)?;
        let mut ring = Self::default();
        for (version, hex_key) in map {
            ring.insert(version, &hex_key)?;
        }
        Ok(ring)
    }

    pub fn insert(&mut self, version: String, hex_key: &str) -> Result<(), KeyError> {
        let bad = || KeyError::BadKey { version: version.clone() };
        let hex_key = hex_key.trim();
        if hex_key.len() != KEY_HEX_LEN {
            return Err(bad());
        }
        let mut key = [0u8; 32];
        hex::decode_to_slice(hex_key, &mut key).map_err(|_| bad())?;
        self.keys.insert(version, key);
        Ok(())
    }

    pub fn has(&self, version: &str) -> bool {
        self.keys.contains_key(version)
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    pub fn decrypt(&self, stored: &str) -> Result<String, DecryptError> {
        let parts: Vec<&str> = stored.trim().split(':').collect();
        let (version, iv, tag, ciphertext) = match parts.as_slice() {
            [v, iv, tag, ct] => (*v, *iv, *tag, *ct),
            [iv, tag, ct] => ("v1", *iv, *tag, *ct),
            other => return Err(DecryptError::Shape(other.len())),
        };
        let key =
            self.keys.get(version).ok_or_else(|| DecryptError::UnknownKeyVersion(version.to_owned()))?;
        let iv = hex::decode(iv).map_err(|_| DecryptError::NotHex("IV"))?;
        let tag = hex::decode(tag).map_err(|_| DecryptError::NotHex("tag"))?;
        let mut sealed = hex::decode(ciphertext).map_err(|_| DecryptError::NotHex("ciphertext"))?;
        if iv.len() != IV_LEN {
            return Err(DecryptError::IvLength(iv.len()));
        }
        if tag.len() != TAG_LEN {
            return Err(DecryptError::TagLength(tag.len()));
        }
        // RustCrypto expects the tag appended to the ciphertext, as GCM emits it.
        sealed.extend_from_slice(&tag);
        let cipher = Aes256Gcm16::new(key.into());
        let plain = cipher
            .decrypt(Nonce::<U16>::from_slice(&iv), Payload { msg: &sealed, aad: &[] })
            .map_err(|_| DecryptError::Authentication)?;
        String::from_utf8(plain).map_err(|_| DecryptError::NotUtf8)
    }
}

/// Encrypts the way WhaTrack's Node code does; used by tests and seed scripts to write tokens.
pub fn encrypt(key_hex: &str, version: Option<&str>, iv: &[u8; IV_LEN], plaintext: &str) -> String {
    let mut key = [0u8; 32];
    hex::decode_to_slice(key_hex, &mut key).expect("encrypt: key must be 64 hex chars");
    let cipher = Aes256Gcm16::new((&key).into());
    let sealed = cipher
        .encrypt(Nonce::<U16>::from_slice(iv), plaintext.as_bytes())
        .expect("AES-GCM encryption cannot fail for in-memory input");
    let (ciphertext, tag) = sealed.split_at(sealed.len() - TAG_LEN);
    let body = format!("{}:{}:{}", hex::encode(iv), hex::encode(tag), hex::encode(ciphertext));
    match version {
        Some(v) => format!("{v}:{body}"),
        None => body,
    }
}

/// Where Meta signs a webhook, and where a re-delivery carries the same signature.
pub const SIGNATURE_HEADER: http::HeaderName = http::HeaderName::from_static("x-hub-signature-256");

/// `sha256=<hex>` as Meta puts it in `X-Hub-Signature-256`.
pub fn hub_signature(app_secret: &str, body: &[u8]) -> String {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(app_secret.as_bytes())
        .expect("HMAC accepts keys of any length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// Whether `header` is the `X-Hub-Signature-256` of `body` under `app_secret`, compared in
/// constant time.
pub fn hub_signature_matches(app_secret: &str, body: &[u8], header: &str) -> bool {
    let Some(hex_mac) = header.trim().strip_prefix("sha256=") else { return false };
    let Ok(mac_bytes) = hex::decode(hex_mac) else { return false };
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(app_secret.as_bytes())
        .expect("HMAC accepts keys of any length");
    mac.update(body);
    mac.verify_slice(&mac_bytes).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
    const KNOWN: &str =
        "v1:a0a1a2a3a4a5a6a7a8a9aaabacadaeaf:96f074d59d58732b41fefbddc91e2b62:6fe262fe35b9a805b7b36bde8671e3";

    fn ring() -> KeyRing {
        KeyRing::from_json(&format!(r#"{{"v1":"{KEY}"}}"#)).unwrap()
    }

    #[test]
    fn known_answer_decrypts() {
        assert_eq!(ring().decrypt(KNOWN).unwrap(), "EAAB-test-token");
    }

    #[test]
    fn encrypt_reproduces_known_answer() {
        let iv: [u8; 16] = hex::decode("a0a1a2a3a4a5a6a7a8a9aaabacadaeaf").unwrap().try_into().unwrap();
        assert_eq!(encrypt(KEY, Some("v1"), &iv, "EAAB-test-token"), KNOWN);
    }

    #[test]
    fn legacy_three_parts_use_v1() {
        let legacy = KNOWN.strip_prefix("v1:").unwrap();
        assert_eq!(ring().decrypt(legacy).unwrap(), "EAAB-test-token");
    }

    #[test]
    fn other_versions_use_their_key() {
        let k2 = "1f".repeat(32);
        let mut r = ring();
        r.insert("v2".into(), &k2).unwrap();
        let stored = encrypt(&k2, Some("v2"), &[7u8; 16], "EAAB-v2");
        assert_eq!(r.decrypt(&stored).unwrap(), "EAAB-v2");
        assert_eq!(ring().decrypt(&stored), Err(DecryptError::UnknownKeyVersion("v2".into())));
    }

    #[test]
    fn malformed_values_are_clear_errors() {
        let r = ring();
        assert_eq!(r.decrypt("abc"), Err(DecryptError::Shape(1)));
        assert_eq!(r.decrypt("v1:a:b:c:d"), Err(DecryptError::Shape(5)));
        assert_eq!(r.decrypt("v1:zz:00:00"), Err(DecryptError::NotHex("IV")));
        let short_iv = KNOWN.replace("a0a1a2a3a4a5a6a7a8a9aaabacadaeaf", "a0a1a2a3a4a5a6a7a8a9aaab");
        assert_eq!(r.decrypt(&short_iv), Err(DecryptError::IvLength(12)));
        let short_tag = KNOWN.replace("96f074d59d58732b41fefbddc91e2b62", "96f074d59d58732b");
        assert_eq!(r.decrypt(&short_tag), Err(DecryptError::TagLength(8)));
        let flipped = KNOWN.replace(":6fe2", ":6fe3");
        assert_eq!(r.decrypt(&flipped), Err(DecryptError::Authentication));
    }

    #[test]
    fn wrong_key_fails_authentication() {
        let r = KeyRing::from_json(&format!(r#"{{"v1":"{}"}}"#, "ab".repeat(32))).unwrap();
        assert_eq!(r.decrypt(KNOWN), Err(DecryptError::Authentication));
    }

    #[test]
    fn bad_keys_rejected_without_echoing_them() {
        let err = KeyRing::from_json(r#"{"v1":"0011"}"#).unwrap_err();
        assert_eq!(err, KeyError::BadKey { version: "v1".into() });
        assert!(!err.to_string().contains("0011"));
        assert_eq!(KeyRing::from_json("[1]").unwrap_err(), KeyError::NotJsonObject);
        assert!(!format!("{:?}", ring()).contains(KEY));
    }

    #[test]
    fn signatures_are_checked_over_the_exact_bytes() {
        let body = br#"{"text":"ol\u00e1 \/ hi"}"#;
        let header = hub_signature("s3cret", body);
        assert!(hub_signature_matches("s3cret", body, &header));
        assert!(!hub_signature_matches("other", body, &header));
        assert!(
            !hub_signature_matches("s3cret", "{\"text\":\"olá / hi\"}".as_bytes(), &header),
            "re-serialised"
        );
        assert!(!hub_signature_matches("s3cret", body, &header.replace("sha256=", "")));
        assert!(!hub_signature_matches("s3cret", body, "sha256=zz"));
        assert!(!hub_signature_matches("s3cret", body, ""));
    }

    #[test]
    fn hub_signature_matches_reference() {
        // HMAC-SHA256("key", "The quick brown fox jumps over the lazy dog"), RFC 4231-style vector.
        assert_eq!(
            hub_signature("key", b"The quick brown fox jumps over the lazy dog"),
            "sha256=f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8"
        );
    }
}
