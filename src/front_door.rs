//! The webhook front door: Meta's webhooks stored durably before anything else, so that the
//! retry queue has every event to retry, byte for byte.
//!
//! 1. `GET`: Meta's subscription handshake (`hub.mode=subscribe`, `hub.verify_token`, answered
//!    with `hub.challenge`).
//! 2. `POST`: the body is refused above `webhook_max_body_bytes`, and without a valid
//!    `X-Hub-Signature-256` (over the raw bytes, with `meta_app_secret`): nothing is stored.
//! 3. A valid one is stored in one INSERT, raw bytes included, once however often Meta re-sends
//!    it (a unique hash of the raw body), in the webhook queue ([`queue::store`]).
//! 4. Meta gets 200 as soon as the row is stored: Meta's answer never waits for the processor
//!    (Meta retries anything else for days, and disables subscriptions that keep failing).
//! 5. Then, in the same invocation after the answer, it is forwarded once to the processor
//!    ([`forward`]), through the retry job's own delivery (attempt 0), within
//!    `webhook_forward_timeout_ms`: delivered, the row is processed; otherwise it stays pending,
//!    and the retry job takes it at its first due time. A host that ends the invocation with its
//!    answer loses nothing either: the row is pending until a delivery succeeds.

use std::time::Duration;

use serde_json::{json, Value};

use crate::config::{number, Config, ConfigError, Source, SpinVariables};
use crate::crypto;
use crate::db::DbError;
use crate::edges::Edges;
use crate::jobs::webhook_retry::{self, queue, Delivery};
use crate::log::Logger;
use crate::outbound::Allowance;
use crate::time::Deadline;

/// Why a POST was not stored.
#[derive(Debug, thiserror::Error)]
pub enum Refused {
    #[error("Payload too large")]
    TooLarge,
    #[error("Invalid signature")]
    BadSignature,
    #[error("Body is not JSON")]
    NotJson,
    #[error("meta_app_secret is not set: webhooks cannot be verified")]
    NoAppSecret,
    #[error(transparent)]
    Db(#[from] DbError),
}

/// The front door's settings (docs/configuration.md).
#[derive(Clone, PartialEq)]
pub struct Settings {
    /// What Meta's subscription handshake must present; unset: the handshake is refused.
    pub verify_token: Option<String>,
    /// The largest webhook body stored.
    pub max_body_bytes: usize,
    /// Where the one immediate forward goes, signed with the app secret that also verifies
    /// Meta's signature.
    pub delivery: Delivery,
    /// How long the front door waits for its one immediate forward.
    pub forward_timeout: Duration,
}

impl Settings {
    pub fn load() -> Result<Self, ConfigError> {
        Self::from_source(&SpinVariables)
    }

    pub fn from_source(src: &impl Source) -> Result<Self, ConfigError> {
        Ok(Self {
            verify_token: src.value("meta_webhook_verify_token")?,
            max_body_bytes: number(src, "webhook_max_body_bytes", 4 << 20, 1024..=16 << 20)?,
            delivery: Delivery::from_source(src)?,
            forward_timeout: Duration::from_millis(number(
                src,
                "webhook_forward_timeout_ms",
                3000,
                100..=20_000,
            )?),
        })
    }
}

/// Meta's handshake: the challenge when the mode and the token are right.
pub fn handshake<'q>(settings: &Settings, query: &'q [(String, String)]) -> Option<&'q str> {
    let get = |name: &str| query.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
    let expected = settings.verify_token.as_deref()?;
    let presented = get("hub.verify_token")?;
    let token_ok = crate::auth::is_authorized(
        &crate::auth::Presented { x_cron_secret: Some(presented), ..Default::default() },
        &[expected],
    );
    (get("hub.mode") == Some("subscribe") && token_ok).then(|| get("hub.challenge")).flatten()
}

/// What became of a webhook Meta sent.
#[derive(Debug, PartialEq, Eq)]
pub enum Received {
    /// Stored now, to be forwarded once Meta has its answer.
    Stored { id: String },
    /// Meta sent these exact bytes before: already stored.
    Duplicate,
}

/// Steps 2 and 3: verified and stored, or refused.
pub fn receive(
    settings: &Settings,
    edges: &Edges,
    body: &[u8],
    signature: Option<&str>,
    log: &Logger,
) -> Result<Received, Refused> {
    if body.len() > settings.max_body_bytes {
        return Err(Refused::TooLarge);
    }
    let secret = settings.delivery.app_secret.as_deref().ok_or(Refused::NoAppSecret)?;
    if !signature.is_some_and(|s| crypto::hub_signature_matches(secret, body, s)) {
        return Err(Refused::BadSignature);
    }
    let payload: Value = serde_json::from_slice(body).map_err(|_| Refused::NotJson)?;
    let raw = std::str::from_utf8(body).map_err(|_| Refused::NotJson)?;
    let db = edges.db()?;
    let Some(queue::Stored { id }) =
        queue::store(db, &payload, raw, event_type(&payload).as_deref(), waba_id(&payload).as_deref())?
    else {
        log.info("webhook already stored (re-sent by Meta)", json!({}));
        return Ok(Received::Duplicate);
    };
    log.info("webhook stored", json!({ "webhookLogId": id }));
    Ok(Received::Stored { id })
}

/// Step 5: the stored webhook `id` forwarded once (attempt 0): taken by the processor, the row
/// is marked processed; anything else leaves it to the retry job, and is logged.
pub async fn forward(
    settings: &Settings,
    config: &Config,
    edges: &Edges,
    id: &str,
    body: &[u8],
    log: &Logger,
) {
    let Some(_) = &settings.delivery.processor_url else { return };
    let left = |message: &str, field: &str, value: Value| {
        log.warn(message, json!({ "webhookLogId": id, field: value }));
    };
    // The forward spends from the hour's outbound allowance when one is set, counted in Redis.
    let counter = match config.outbound_requests_per_hour.map(|_| edges.redis()) {
        Some(Err(e)) => {
            let message =
                "webhook stored; not forwarded (outbound requests cannot be counted), left to the retry job";
            return left(message, "reason", json!(e.to_string()));
        }
        counter => counter.and_then(Result::ok),
    };
    let allowance = Allowance::new(counter, config.outbound_requests_per_hour);
    let timeout = settings.forward_timeout;
    match webhook_retry::deliver(
        &settings.delivery,
        id,
        body,
        0,
        timeout,
        Deadline::after(timeout),
        allowance,
    )
    .await
    {
        // Stored is what Meta's answer depends on: a row left unprocessed here is only delivered
        // again by the retry job, while a 500 would have Meta retry for days.
        Ok(resp) if (200..300).contains(&resp.status) => match edges
            .db()
            .and_then(|db| queue::mark_processed(db, id))
        {
            Ok(()) => log.info("webhook forwarded", json!({ "webhookLogId": id })),
            Err(e) => left(
                "webhook stored and forwarded, but not marked processed: the retry job will deliver it again",
                "reason",
                json!(e.to_string()),
            ),
        },
        Ok(resp) => {
            left("webhook stored; forward refused, left to the retry job", "httpStatus", json!(resp.status))
        }
        Err(e) => {
            left("webhook stored; forward failed, left to the retry job", "reason", json!(e.to_string()))
        }
    }
}

/// WhaTrack's derivation: the first change's `field`; a `messages` change that carries only
/// delivery statuses is `statuses`.
pub fn event_type(payload: &Value) -> Option<String> {
    let change = payload.get("entry")?.get(0)?.get("changes")?.get(0)?;
    let field = change.get("field")?.as_str()?;
    let value = change.get("value");
    let only_statuses = value.is_some_and(|v| v.get("statuses").is_some() && v.get("messages").is_none());
    Some(if field == "messages" && only_statuses { "statuses".into() } else { field.to_owned() })
}

/// The WABA the event is about (`entry[0].id`), to find its organization.
fn waba_id(payload: &Value) -> Option<String> {
    payload.get("entry")?.get(0)?.get("id")?.as_str().map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_types_as_whatrack_derives_them() {
        let change = |field: &str, value: Value| json!({"entry":[{"id":"2001","changes":[{"field":field,"value":value}]}]});
        assert_eq!(event_type(&change("messages", json!({"messages":[{}]}))).as_deref(), Some("messages"));
        assert_eq!(event_type(&change("messages", json!({"statuses":[{}]}))).as_deref(), Some("statuses"));
        assert_eq!(event_type(&change("account_update", json!({}))).as_deref(), Some("account_update"));
        assert_eq!(event_type(&json!({"object":"x"})), None);
        assert_eq!(waba_id(&change("messages", json!({}))).as_deref(), Some("2001"));
    }
}
