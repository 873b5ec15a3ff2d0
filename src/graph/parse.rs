//! The answers of the two Graph calls the health check makes.
//!
//! Parsing is pure (status + body in, [`Answer`] out), through serde, so that every shape Meta
//! answers with, garbage included, is unit-tested without a network. It is lenient where Meta's
//! documentation is loose (unknown fields ignored, a descriptive field of another type read as
//! absent) and strict where the verdict depends on it (`is_valid` must be a boolean); no shape
//! panics.

use serde::de::{DeserializeOwned, Deserializer};
use serde::Deserialize;
use serde_json::Value;

/// Meta's error object (`{"error":{...}}`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GraphError {
    pub code: i64,
    pub subcode: Option<i64>,
    pub kind: String,
    pub message: String,
    pub is_transient: bool,
}

/// What one Graph call came back with, reduced to what classification needs.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer<T> {
    Ok(T),
    /// Meta answered with its error object.
    Error {
        http_status: u16,
        error: GraphError,
    },
    /// No usable answer: 429 or 5xx without an error object, a timeout, a network error, or a
    /// body that is not the JSON expected.
    Unusable(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DebugToken {
    pub is_valid: bool,
    /// Unix seconds; 0 means the token never expires.
    pub expires_at: i64,
    pub scopes: Option<Vec<String>>,
    /// `data.error.message` when Meta says why the token is invalid.
    pub invalid_reason: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PhoneHealth {
    /// `can_send_message` of the node and of each entity in `health_status.entities`.
    pub can_send_message: Vec<String>,
    pub status: Option<String>,
    pub quality_rating: Option<String>,
    /// The first error an entity reports, for the human-readable reason.
    pub entity_error: Option<String>,
}

pub fn parse_debug_token(http_status: u16, body: &[u8]) -> Answer<DebugToken> {
    #[derive(Deserialize)]
    struct Body {
        data: Data,
    }
    #[derive(Deserialize)]
    struct Data {
        is_valid: bool,
        #[serde(default)]
        expires_at: Option<i64>,
        #[serde(default)]
        scopes: Option<Vec<String>>,
        #[serde(default, deserialize_with = "lenient")]
        error: Option<Reason>,
    }
    #[derive(Deserialize)]
    struct Reason {
        message: String,
    }
    parse_answer(http_status, body, |body: Body| {
        let data = body.data;
        Some(DebugToken {
            is_valid: data.is_valid,
            expires_at: data.expires_at.unwrap_or(0),
            scopes: data.scopes,
            invalid_reason: data.error.map(|e| e.message),
        })
    })
}

/// A node's answer, as far as the health check reads it.
#[derive(Deserialize)]
struct NodeBody {
    #[serde(default)]
    health_status: Option<HealthStatusBody>,
    #[serde(default, deserialize_with = "lenient")]
    status: Option<String>,
    #[serde(default, deserialize_with = "lenient")]
    quality_rating: Option<String>,
}

#[derive(Deserialize)]
struct HealthStatusBody {
    #[serde(default, deserialize_with = "lenient")]
    can_send_message: Option<String>,
    #[serde(default, deserialize_with = "lenient")]
    entities: Option<Vec<Value>>,
}

#[derive(Deserialize)]
struct EntityBody {
    #[serde(default, deserialize_with = "lenient")]
    can_send_message: Option<String>,
    #[serde(default, deserialize_with = "lenient")]
    errors: Option<Vec<Value>>,
}

#[derive(Deserialize)]
struct EntityErrorBody {
    #[serde(default, deserialize_with = "lenient")]
    error_description: Option<String>,
    #[serde(default, deserialize_with = "lenient")]
    possible_solution: Option<String>,
}

pub fn parse_phone_health(http_status: u16, body: &[u8]) -> Answer<PhoneHealth> {
    parse_answer(http_status, body, |body: NodeBody| {
        // A node answers with one or the other; with neither, it is not the answer asked for.
        if body.health_status.is_none() && body.status.is_none() {
            return None;
        }
        let mut out =
            PhoneHealth { status: body.status, quality_rating: body.quality_rating, ..Default::default() };
        if let Some(health) = body.health_status {
            out.can_send_message.extend(health.can_send_message);
            // An entity or error of another shape is passed over, not a reason to refuse the answer.
            for entity in health.entities.iter().flatten().filter_map(object::<EntityBody>) {
                out.can_send_message.extend(entity.can_send_message);
                let first_error = entity.errors.iter().flatten().next().and_then(object::<EntityErrorBody>);
                if let (None, Some(error)) = (&out.entity_error, first_error) {
                    out.entity_error = error.error_description.or(error.possible_solution);
                }
            }
        }
        Some(out)
    })
}

/// Meta's error object: only `code` is required; a field of another type than documented is
/// read as absent.
#[derive(Deserialize)]
pub(super) struct ErrorBody {
    pub error: RawError,
}

#[derive(Deserialize)]
pub(super) struct RawError {
    code: i64,
    #[serde(default, deserialize_with = "lenient")]
    error_subcode: Option<i64>,
    #[serde(default, rename = "type", deserialize_with = "lenient")]
    kind: Option<String>,
    #[serde(default, deserialize_with = "lenient")]
    message: Option<String>,
    #[serde(default, deserialize_with = "lenient")]
    is_transient: Option<bool>,
}

impl From<RawError> for GraphError {
    fn from(error: RawError) -> Self {
        GraphError {
            code: error.code,
            subcode: error.error_subcode,
            kind: error.kind.unwrap_or_else(|| "GraphError".to_owned()),
            message: error.message.unwrap_or_default(),
            is_transient: error.is_transient.unwrap_or(false),
        }
    }
}

/// Meta's error object wins on any status; then a status without one is unusable; then the body
/// must be the object `T` reads (`parse_ok` may still refuse it). Unknown fields are ignored.
fn parse_answer<T: DeserializeOwned, U>(
    http_status: u16,
    body: &[u8],
    parse_ok: impl FnOnce(T) -> Option<U>,
) -> Answer<U> {
    let json: Option<Value> = serde_json::from_slice(body).ok();
    if let Some(ErrorBody { error }) = json.as_ref().and_then(object) {
        return Answer::Error { http_status, error: error.into() };
    }
    if http_status == 429 || http_status >= 500 {
        return Answer::Unusable(format!("HTTP {http_status} from Graph API"));
    }
    if !(200..300).contains(&http_status) {
        return Answer::Unusable(format!("HTTP {http_status} from Graph API without an error object"));
    }
    match json.as_ref().and_then(object).and_then(parse_ok) {
        Some(ok) => Answer::Ok(ok),
        None => Answer::Unusable("Graph API answered with a body that is not the JSON expected".into()),
    }
}

/// `T` read from a JSON object: not from an array, which serde would also read into a struct,
/// field by field.
pub(super) fn object<T: DeserializeOwned>(v: &Value) -> Option<T> {
    if v.is_object() {
        T::deserialize(v).ok()
    } else {
        None
    }
}

/// A field read as absent when it is not of the type expected, rather than failing the answer.
pub(super) fn lenient<'de, D: Deserializer<'de>, T: DeserializeOwned>(d: D) -> Result<Option<T>, D::Error> {
    Ok(Option::<Value>::deserialize(d)?.and_then(|v| T::deserialize(v).ok()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_token_valid() {
        let body = br#"{"data":{"app_id":"1","is_valid":true,"expires_at":0,"scopes":["whatsapp_business_messaging"]}}"#;
        assert_eq!(
            parse_debug_token(200, body),
            Answer::Ok(DebugToken {
                is_valid: true,
                expires_at: 0,
                scopes: Some(vec!["whatsapp_business_messaging".into()]),
                invalid_reason: None
            })
        );
    }

    #[test]
    fn debug_token_invalid_with_reason() {
        let body = br#"{"data":{"is_valid":false,"error":{"code":190,"message":"Session has expired"}}}"#;
        let Answer::Ok(d) = parse_debug_token(200, body) else { panic!() };
        assert!(!d.is_valid);
        assert_eq!(d.invalid_reason.as_deref(), Some("Session has expired"));
    }

    #[test]
    fn graph_error_object_parsed_on_any_status() {
        let body = br#"{"error":{"message":"Error validating access token","type":"OAuthException","code":190,"error_subcode":463,"fbtrace_id":"x"}}"#;
        let Answer::Error { http_status, error } = parse_phone_health(400, body) else { panic!() };
        assert_eq!(http_status, 400);
        assert_eq!((error.code, error.subcode, error.kind.as_str()), (190, Some(463), "OAuthException"));
        assert!(!error.is_transient);
    }

    #[test]
    fn server_errors_and_garbage_are_unusable() {
        assert!(matches!(parse_phone_health(503, b"<html>down</html>"), Answer::Unusable(_)));
        assert!(matches!(parse_phone_health(429, b""), Answer::Unusable(_)));
        assert!(matches!(parse_phone_health(200, b"not json"), Answer::Unusable(_)));
        assert!(matches!(parse_phone_health(200, b"[1,2]"), Answer::Unusable(_)));
        assert!(matches!(parse_phone_health(200, br#"{"id":"1"}"#), Answer::Unusable(_)));
        assert!(matches!(parse_debug_token(200, br#"{"data":{}}"#), Answer::Unusable(_)));
        assert!(matches!(parse_debug_token(200, br#"{"data":{"is_valid":"yes"}}"#), Answer::Unusable(_)));
    }

    #[test]
    fn phone_health_collects_entities() {
        let body = br#"{"id":"1","status":"CONNECTED","quality_rating":"GREEN","health_status":{"can_send_message":"LIMITED","entities":[{"entity_type":"PHONE_NUMBER","id":"1","can_send_message":"AVAILABLE"},{"entity_type":"WABA","id":"2","can_send_message":"LIMITED","errors":[{"error_code":141006,"error_description":"Payment method missing"}]}]}}"#;
        let Answer::Ok(h) = parse_phone_health(200, body) else { panic!() };
        assert_eq!(h.can_send_message, vec!["LIMITED", "AVAILABLE", "LIMITED"]);
        assert_eq!(h.status.as_deref(), Some("CONNECTED"));
        assert_eq!(h.entity_error.as_deref(), Some("Payment method missing"));
    }
}
