//! Meta's batch protocol: up to 50 Graph calls in one `POST {graph}/{version}/`.
//!
//! The request is a form: `batch` (a JSON array of `{"method":"GET","relative_url":...}`),
//! `include_headers=true`, and `access_token`, the request's own token, which Meta checks before
//! it runs any operation and which operations that carry none use. A customer's token travels
//! inside its operation's `relative_url`, which is inside the POST body: never in the request's
//! URL. The answer is a JSON array in operation order, each element `{"code":<status>,
//! "headers":[{"name":..,"value":..}],"body":"<the call's JSON, as a string>"}`, or `null` when
//! Meta ran out of time for that operation. Of an operation's headers only Meta's usage figures
//! are kept. Anything but the array (Meta's error object, another shape, another status) refuses
//! the request as a whole: a [`Refusal`], about the request and none of its operations.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::limits::Usage;
use super::parse::{lenient, object, ErrorBody};
use super::GraphError;

/// Meta refuses a batch of more (HTTP 400, code 100, "Maximum batch size is 50").
pub const MAX_OPERATIONS: usize = 50;

/// One operation: a GET of `relative_url` (path and query, after the version).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Operation {
    pub method: &'static str,
    pub relative_url: String,
}

impl Operation {
    pub fn get(relative_url: String) -> Self {
        Self { method: "GET", relative_url }
    }
}

/// The form body of a batch request.
pub fn request_body(operations: &[Operation], fallback_token: &str) -> String {
    let batch = serde_json::to_string(operations).unwrap_or_default();
    form_urlencoded::Serializer::new(String::new())
        .append_pair("batch", &batch)
        .append_pair("include_headers", "true")
        .append_pair("access_token", fallback_token)
        .finish()
}

/// What came back for one operation.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    /// The operation's own answer, as a single call would have had it, and the usage figures
    /// Meta sent with it.
    Answered { code: u16, body: String, usage: Usage },
    /// No answer for this operation (why, for the audit row): `null`, a missing element, or an
    /// element of another shape.
    Missing(String),
}

/// Meta did not answer the request with the batch's array.
#[derive(Debug, Clone, PartialEq)]
pub enum Refusal {
    /// Meta's error object, for the request as a whole.
    Refused { http_status: u16, error: GraphError },
    /// Anything else: another status, another shape, no answer at all (why).
    Unanswered(String),
}

/// The replies to `operations` operations, in their order (always that many), or why the
/// request as a whole was refused.
pub fn parse_answer(http_status: u16, body: &[u8], operations: usize) -> Result<Vec<Reply>, Refusal> {
    let json: Option<Value> = serde_json::from_slice(body).ok();
    if let Some(ErrorBody { error }) = json.as_ref().and_then(object) {
        return Err(Refusal::Refused { http_status, error: error.into() });
    }
    let elements = match json {
        Some(Value::Array(elements)) if (200..300).contains(&http_status) => elements,
        _ => {
            let why = format!("Graph API batch answered HTTP {http_status} without the batch's array");
            return Err(Refusal::Unanswered(why));
        }
    };
    #[derive(Deserialize)]
    struct Element {
        code: u16,
        #[serde(default, deserialize_with = "lenient")]
        headers: Option<Vec<Value>>,
        #[serde(default)]
        body: Option<String>,
    }
    #[derive(Deserialize)]
    struct Header {
        name: String,
        value: String,
    }
    let mut replies: Vec<Reply> = elements
        .iter()
        .take(operations)
        .map(|element| match element {
            Value::Null => Reply::Missing("Graph API gave no answer to this call of the batch (null)".into()),
            other => match object::<Element>(other) {
                Some(e) => {
                    let headers: Vec<Header> = e.headers.iter().flatten().filter_map(object).collect();
                    let usage =
                        Usage::from_headers(headers.iter().map(|h| (h.name.as_str(), h.value.as_str())));
                    Reply::Answered { code: e.code, body: e.body.unwrap_or_default(), usage }
                }
                None => Reply::Missing("Graph API answered this call of the batch in another shape".into()),
            },
        })
        .collect();
    replies.resize(operations, Reply::Missing("Graph API's batch answer ended before this call".into()));
    Ok(replies)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_body_is_a_form_with_the_operations_as_json() {
        let ops = [
            Operation::get("debug_token?input_token=EAAB%26x".into()),
            Operation::get("123?fields=health_status&access_token=EAAB%26x".into()),
        ];
        let body = request_body(&ops, "1|secret");
        let fields: Vec<(String, String)> =
            form_urlencoded::parse(body.as_bytes()).map(|(k, v)| (k.into_owned(), v.into_owned())).collect();
        assert_eq!(fields[1], ("include_headers".into(), "true".into()));
        assert_eq!(fields[2], ("access_token".into(), "1|secret".into()));
        let batch: Value = serde_json::from_str(&fields[0].1).unwrap();
        assert_eq!(batch[1]["method"], "GET");
        assert_eq!(batch[1]["relative_url"], "123?fields=health_status&access_token=EAAB%26x");
    }

    #[test]
    fn each_element_is_its_operations_answer() {
        let body = br#"[{"code":200,"body":"{\"id\":\"1\"}"},null,{"code":400,"headers":[],"body":"{\"error\":{\"code\":190}}"}]"#;
        let replies = parse_answer(200, body, 3).unwrap();
        let answered =
            |code: u16, body: &str| Reply::Answered { code, body: body.into(), usage: Usage::default() };
        assert_eq!(replies[0], answered(200, r#"{"id":"1"}"#));
        assert!(matches!(&replies[1], Reply::Missing(why) if why.contains("null")));
        assert_eq!(replies[2], answered(400, r#"{"error":{"code":190}}"#));
    }

    #[test]
    fn a_short_or_odd_answer_leaves_the_rest_missing() {
        let replies = parse_answer(200, br#"[{"code":200,"body":"{}"},[1],"x"]"#, 4).unwrap();
        assert_eq!(replies.len(), 4);
        assert!(matches!(replies[0], Reply::Answered { code: 200, .. }));
        assert!(replies[1..].iter().all(|r| matches!(r, Reply::Missing(_))));
    }

    #[test]
    fn each_operations_usage_headers_are_kept_and_the_others_dropped() {
        let body = br#"[{"code":200,"headers":[{"name":"Content-Type","value":"text/javascript"},
            {"name":"X-Business-Use-Case-Usage","value":"{\"77\":[{\"type\":\"whatsapp_business_management\",\"call_count\":93,\"total_cputime\":1,\"total_time\":2}]}"},
            {"name":"x-app-usage","value":"{\"call_count\":12}"}, {"name":7}],"body":"{}"},
            {"code":200,"headers":"odd","body":"{}"}]"#;
        let replies = parse_answer(200, body, 2).unwrap();
        let Reply::Answered { usage, .. } = &replies[0] else { panic!("{replies:?}") };
        assert_eq!(usage.businesses["77"].figures.call_count, 93.0);
        assert_eq!(usage.app.unwrap().figures.call_count, 12.0);
        // Headers of another shape are no reason to lose the answer.
        assert!(
            matches!(&replies[1], Reply::Answered { code: 200, usage, .. } if usage.is_empty()),
            "{replies:?}"
        );
    }

    #[test]
    fn an_answer_that_is_not_the_array_refuses_the_request() {
        for (status, body) in [
            (200, &b"<html>"[..]),
            (200, br#"{"data":[]}"#),
            (502, br#"[{"code":200,"body":"{}"}]"#),
            (200, b""),
        ] {
            let refusal = parse_answer(status, body, 2).unwrap_err();
            assert!(matches!(refusal, Refusal::Unanswered(_)), "{status} {body:?}");
        }
    }

    #[test]
    fn a_refused_batch_carries_metas_error() {
        let body = br#"{"error":{"message":"(#4) Application request limit reached","type":"OAuthException","is_transient":true,"code":4}}"#;
        let refusal = parse_answer(403, body, 3).unwrap_err();
        assert!(matches!(refusal, Refusal::Refused { http_status: 403, error } if error.code == 4));
    }
}
