//! Alerts (SPEC section 7): `{"text":"..."}` POSTed to `alert_webhook_url` (the shape Slack and
//! most chat webhooks accept), at most one per subject per hour.
//!
//! - Alerts never fail a job: every failure is logged, never returned, and the sends of one run
//!   go out together within the run's finishing deadline.
//! - A storm is one message, not hundreds: a run sends at most [`MAX_PER_RUN`] individual alerts
//!   and, for the rest, one summary per kind ("and 490 more connections moved into error").
//! - The throttle lives in Redis (`alert:<subject>`, 1 hour), shared by all replicas: a run
//!   claims a subject before sending (`SET NX`, so that runs failing at the same moment send
//!   one alert between them) and gives the claim back when the alert did not go out, so a
//!   receiver that was down does not silence the next hour. When Redis cannot be asked, nothing
//!   is sent, since nothing could be throttled.
//! - Texts carry ids, statuses and short reasons, never a webhook's payload.

use std::time::Duration;

use futures::stream::{self, StreamExt};
use serde_json::json;

use crate::log::Logger;
use crate::outbound::{self, Allowance, Request};
use crate::redis::Redis;
use crate::time::Deadline;
use crate::urls;

const ALERT_TIMEOUT: Duration = Duration::from_secs(5);
const THROTTLE: Duration = Duration::from_secs(3600);
/// Individual alerts one run sends at most; the rest are summed up.
pub const MAX_PER_RUN: usize = 10;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    ConnectionError,
    WebhookDead,
    RunFailed,
    AppCredentials,
    Throttled,
}

impl Kind {
    /// The summary of `n` alerts of this kind that were not sent one by one.
    fn summary(self, n: usize) -> String {
        match self {
            Kind::ConnectionError => format!(
                "WhaTrack: and {n} more WhatsApp connections moved into error; see whatsapp_health or GET /api/v1/jobs/whatsapp-health-check/runs"
            ),
            Kind::WebhookDead => format!(
                "WhaTrack: and {n} more webhooks were dead-lettered; see GET /api/v1/jobs/webhook-retry, and redrive them once the processor is fixed"
            ),
            Kind::Throttled => format!("WhaTrack: and {n} more businesses throttled by Meta"),
            Kind::RunFailed | Kind::AppCredentials => format!("WhaTrack: and {n} more alerts"),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Kind::ConnectionError => "connection-error",
            Kind::WebhookDead => "webhook-dead",
            Kind::RunFailed => "run-failed",
            Kind::AppCredentials => "app-credentials",
            Kind::Throttled => "graph-throttled",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alert {
    pub kind: Kind,
    /// What the throttle counts: one alert per subject per hour.
    pub subject: String,
    pub text: String,
}

impl Alert {
    fn new(kind: Kind, about: &str, text: String) -> Self {
        Self { kind, subject: format!("{}:{about}", kind.name()), text }
    }

    pub fn connection_error(connection_id: &str, organization_id: Option<&str>, reason: &str) -> Self {
        let org = organization_id.map(|o| format!(" (organization {o})")).unwrap_or_default();
        Self::new(
            Kind::ConnectionError,
            connection_id,
            format!("WhaTrack: WhatsApp connection {connection_id}{org} is now in error: {reason}"),
        )
    }

    pub fn webhook_dead(webhook_id: &str, reason: &str) -> Self {
        Self::new(
            Kind::WebhookDead,
            webhook_id,
            format!("WhaTrack: webhook {webhook_id} was dead-lettered: {reason}. Redrive it once the processor is fixed."),
        )
    }

    /// The database refuses the host's statements through a transaction-mode pooler: every run
    /// fails alike until `database_url` changes.
    pub fn database_pooler(error: &str) -> Self {
        Self::new(
            Kind::RunFailed,
            "database-pooler",
            format!("WhaTrack: the jobs cannot use the database: {error}"),
        )
    }

    pub fn run_failed(job_type: &str, error: &str) -> Self {
        Self::new(Kind::RunFailed, job_type, format!("WhaTrack: a {job_type} run failed: {error}"))
    }

    /// Meta refused the app's own credentials: the health check goes on without `debug_token`.
    pub fn app_credentials(reason: &str) -> Self {
        Self::new(
            Kind::AppCredentials,
            "meta-app",
            format!(
                "WhaTrack: Meta refused the app credentials (meta_app_id / meta_app_secret) for debug_token: {reason}. \
                 The health check goes on without debug_token (no token expiry or scope checks) until they are fixed."
            ),
        )
    }
}

impl Alert {
    /// Meta throttled the app (`business` `None`) or one business: a limit of ours, not a finding
    /// about a customer.
    pub fn throttled(business: Option<&str>, until: &str) -> Self {
        let text = match business {
            None => format!(
                "WhaTrack: Meta throttled the app's Graph API calls. The health check calls nothing until {until}; connections not checked keep their status and go first next run."
            ),
            Some(id) => format!(
                "WhaTrack: Meta throttled the Graph API calls for business {id}. Its connections are not checked until {until}; they keep their status."
            ),
        };
        Self::new(Kind::Throttled, business.unwrap_or("app"), text)
    }
}

/// The individual alerts to send and the summaries of the rest, per [`MAX_PER_RUN`].
pub fn cap(mut due: Vec<Alert>) -> Vec<Alert> {
    if due.len() <= MAX_PER_RUN {
        return due;
    }
    let rest = due.split_off(MAX_PER_RUN);
    let mut kinds: Vec<Kind> = rest.iter().map(|a| a.kind).collect();
    kinds.sort();
    kinds.dedup();
    for kind in kinds {
        let n = rest.iter().filter(|a| a.kind == kind).count();
        due.push(Alert::new(kind, "more", kind.summary(n)));
    }
    due
}

/// Sends what is not throttled, before `deadline`; returns how many alerts went out.
pub async fn send(
    url: Option<&str>,
    redis: Option<&Redis>,
    allowance: Allowance<'_>,
    alerts: Vec<Alert>,
    deadline: Deadline,
    log: &Logger,
) -> usize {
    let Some(url) = url else { return 0 };
    if alerts.is_empty() {
        return 0;
    }
    let Some(redis) = redis else {
        log.warn("alerts not sent: Redis is needed to throttle them", json!({ "alerts": alerts.len() }));
        return 0;
    };
    let claim = |alert: &Alert| match redis.claim_alert(&alert.subject, THROTTLE) {
        Ok(true) => true,
        Ok(false) => {
            log.info("alert throttled (sent within the hour)", json!({ "subject": alert.subject }));
            false
        }
        Err(e) => {
            log.warn(
                "alert not sent: throttle unavailable",
                json!({ "subject": alert.subject, "error": e.to_string() }),
            );
            false
        }
    };
    let claimed: Vec<Alert> = alerts.into_iter().filter(|a| claim(a)).collect();
    let capped = cap(claimed.clone());
    // Those summed up were not sent one by one: their own alert may go out next time.
    release(redis, claimed.iter().filter(|a| !capped.contains(a)), log);
    let due: Vec<Alert> = capped.into_iter().filter(|a| claimed.contains(a) || claim(a)).collect();
    let concurrency = due.len().max(1);
    let posted: Vec<(Alert, bool)> = stream::iter(due)
        .map(|alert| async move {
            let sent = post(url, &alert, deadline, allowance, log).await;
            (alert, sent)
        })
        .buffer_unordered(concurrency)
        .collect()
        .await;
    // A receiver that was down does not silence the next hour.
    release(redis, posted.iter().filter(|(_, sent)| !sent).map(|(a, _)| a), log);
    posted.iter().filter(|(_, sent)| *sent).count()
}

fn release<'a>(redis: &Redis, alerts: impl Iterator<Item = &'a Alert>, log: &Logger) {
    for alert in alerts {
        if let Err(e) = redis.release_alert(&alert.subject) {
            log.warn(
                "alert not sent and its throttle not lifted: it waits the hour",
                json!({ "subject": alert.subject, "error": e.to_string() }),
            );
        }
    }
}

async fn post(url: &str, alert: &Alert, deadline: Deadline, allowance: Allowance<'_>, log: &Logger) -> bool {
    let body = json!({ "text": urls::redact(&alert.text) }).to_string();
    let req = Request {
        method: http::Method::POST,
        url,
        headers: vec![(http::header::CONTENT_TYPE, "application/json".to_owned())],
        body: body.as_bytes(),
    };
    match outbound::send(req, ALERT_TIMEOUT, deadline, allowance).await {
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
            log.warn("alert not delivered", json!({ "subject": alert.subject, "error": e.to_string() }));
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_storm_is_ten_alerts_and_a_summary_per_kind() {
        let mut alerts: Vec<Alert> =
            (0..500).map(|i| Alert::connection_error(&format!("c{i}"), None, "banned")).collect();
        alerts.extend((0..3).map(|i| Alert::webhook_dead(&format!("w{i}"), "HTTP 400")));
        let sent = cap(alerts);
        assert_eq!(sent.len(), MAX_PER_RUN + 2);
        assert!(sent[..MAX_PER_RUN]
            .iter()
            .all(|a| a.kind == Kind::ConnectionError && a.subject != "connection-error:more"));
        assert_eq!(sent[MAX_PER_RUN].subject, "connection-error:more");
        assert!(
            sent[MAX_PER_RUN].text.contains("and 490 more WhatsApp connections moved into error"),
            "{}",
            sent[MAX_PER_RUN].text
        );
        assert!(sent[MAX_PER_RUN + 1].text.contains("and 3 more webhooks were dead-lettered"));
    }

    #[test]
    fn a_handful_goes_out_one_by_one() {
        let alerts: Vec<Alert> = (0..10).map(|i| Alert::webhook_dead(&format!("w{i}"), "x")).collect();
        assert_eq!(cap(alerts.clone()), alerts);
    }
}
