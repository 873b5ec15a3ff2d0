//! Alerts (SPEC section 7): `{"text":"..."}` POSTed to `alert_webhook_url` (the shape Slack and
//! most chat webhooks accept), at most one per subject per hour.
//!
//! Alerts never fail a job: a receiver that is down costs at most `ALERT_TIMEOUT` (5 s) per batch
//! (alerts of one run go out concurrently), and every failure is logged, never returned. The
//! throttle lives in Redis (`SET alert:<subject> 1 NX EX 3600`), shared by all replicas; when
//! Redis cannot be asked, the alert is not sent, since it could not be throttled.

use std::time::Duration;

use futures::stream::{self, StreamExt};
use serde_json::json;

use crate::lock::Redis;
use crate::log::Logger;
use crate::outbound::{self, Request};

const ALERT_TIMEOUT: Duration = Duration::from_secs(5);
const THROTTLE: Duration = Duration::from_secs(3600);
const CONCURRENCY: usize = 16;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alert {
    /// What the throttle counts: one alert per subject per hour.
    pub subject: String,
    pub text: String,
}

impl Alert {
    pub fn connection_error(connection_id: &str, organization_id: Option<&str>, reason: &str) -> Self {
        let org = organization_id.map(|o| format!(" (organization {o})")).unwrap_or_default();
        Self {
            subject: format!("connection-error:{connection_id}"),
            text: format!("WhaTrack: WhatsApp connection {connection_id}{org} is now in error: {reason}"),
        }
    }

    pub fn webhook_dead(webhook_id: &str, reason: &str) -> Self {
        Self {
            subject: format!("webhook-dead:{webhook_id}"),
            text: format!("WhaTrack: webhook {webhook_id} was dead-lettered: {reason}. Redrive it once the processor is fixed."),
        }
    }

    pub fn run_failed(job_type: &str, error: &str) -> Self {
        Self {
            subject: format!("run-failed:{job_type}"),
            text: format!("WhaTrack: a {job_type} run failed: {error}"),
        }
    }
}

/// Sends what is not throttled; returns how many alerts went out.
pub async fn send(url: Option<&str>, redis: Option<&Redis>, alerts: Vec<Alert>, log: &Logger) -> usize {
    let Some(url) = url else { return 0 };
    if alerts.is_empty() {
        return 0;
    }
    let Some(redis) = redis else {
        log.warn("alerts not sent: Redis is needed to throttle them", json!({ "alerts": alerts.len() }));
        return 0;
    };
    let mut due = Vec::new();
    for alert in alerts {
        match redis.claim_alert(&alert.subject, THROTTLE) {
            Ok(true) => due.push(alert),
            Ok(false) => {
                log.info("alert throttled (sent within the hour)", json!({ "subject": alert.subject }))
            }
            Err(e) => log.warn(
                "alert not sent: throttle unavailable",
                json!({ "subject": alert.subject, "error": e.to_string() }),
            ),
        }
    }
    stream::iter(due)
        .map(|alert| async move {
            let body = json!({ "text": alert.text }).to_string();
            let req = Request {
                method: "POST",
                url,
                headers: vec![("content-type", "application/json".to_owned())],
                body: body.as_bytes(),
            };
            match outbound::send(req, ALERT_TIMEOUT).await {
                Ok(resp) if (200..300).contains(&resp.status) => {
                    log.info("alert sent", json!({ "subject": alert.subject }));
                    true
                }
                Ok(resp) => {
                    log.warn(
                        "alert receiver refused the alert",
                        json!({ "subject": alert.subject, "httpStatus": resp.status }),
                    );
                    false
                }
                Err(e) => {
                    log.warn(
                        "alert not delivered",
                        json!({ "subject": alert.subject, "error": e.to_string() }),
                    );
                    false
                }
            }
        })
        .buffer_unordered(CONCURRENCY)
        .filter(|sent| std::future::ready(*sent))
        .count()
        .await
}
