//! The webhook queue: every statement on `whatsapp_webhook_logs` (in `sql/`), one verb each; the
//! database does the queueing. The front door stores a webhook ([`store`]) and marks its first
//! forward ([`mark_processed`]); a run sweeps, claims with `SKIP LOCKED` and a lease, releases,
//! records; the status route, the console and a run count ([`counts`]); an operator redrives.
//!
//! The queue's states (open, pending, due) are defined once, in `sql/states.sql`, and every
//! statement uses their text as it is there (held so by `tests/statements.rs`). Bound
//! parameters shared by the statements that take the policy's rules: `$1` is
//! `webhook_retry_max_attempts`, `$2` is `webhook_retry_base_seconds`. Rows are found by their
//! primary key in its own type (the rule in `db.rs`), so recording an attempt reads no more of
//! the log than its row.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use spin_sdk::pg4::ParameterValue;

use super::policy::{Fate, Rules};
use crate::db::{str, str_array, Db, DbResult};

const STORE_WEBHOOK: &str = include_str!("sql/store_webhook.sql");
const MARK_WEBHOOK_PROCESSED: &str = include_str!("sql/mark_webhook_processed.sql");
const SWEEP_STUCK_WEBHOOKS: &str = include_str!("sql/sweep_stuck_webhooks.sql");
const CLAIM_DUE_WEBHOOKS: &str = include_str!("sql/claim_due_webhooks.sql");
const RELEASE_WEBHOOK_CLAIMS: &str = include_str!("sql/release_webhook_claims.sql");
const RECORD_WEBHOOK_ATTEMPTS: &str = include_str!("sql/record_webhook_attempts.sql");
const REDRIVE_WEBHOOKS: &str = include_str!("sql/redrive_webhooks.sql");
const REDRIVE_WEBHOOKS_DEAD_IN_WINDOW: &str = include_str!("sql/redrive_webhooks_dead_in_window.sql");
const WEBHOOK_QUEUE_COUNTS: &str = include_str!("sql/webhook_queue_counts.sql");
const WEBHOOK_TENANT_BACKLOGS: &str = include_str!("sql/webhook_tenant_backlogs.sql");
const OLDEST_DUE_WEBHOOK: &str = include_str!("sql/oldest_due_webhook.sql");
const PAUSE_TENANT: &str = include_str!("sql/pause_tenant.sql");
const RESUME_TENANT: &str = include_str!("sql/resume_tenant.sql");
const REDRIVE_TENANT_WEBHOOKS: &str = include_str!("sql/redrive_tenant_webhooks.sql");

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Claimed {
    pub id: String,
    pub retry_count: u32,
    /// `"rawBody"` when stored, else the `payload` JSON as text.
    #[serde(default)]
    pub body: String,
    /// Its organization; `None` for a webhook without one (a tenant of its own).
    #[serde(default)]
    pub tenant: Option<String>,
}

/// What one claim took, and where it left the round of tenants.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClaimPage {
    /// In turn order: the first of each tenant, then the second of each...
    pub claimed: Vec<Claimed>,
    /// The last tenant the claim visited: the next claim continues after it.
    pub last_tenant: Option<String>,
    /// No tenant after it: the next claim starts a new round.
    pub round_ended: bool,
}

/// One attempt, as [`Queue::record`] writes it.
pub struct AttemptRecord<'a> {
    pub id: &'a str,
    pub attempt: u32,
    pub http_status: Option<u16>,
    pub error: Option<&'a str>,
    pub duration_ms: u64,
    pub fate: Fate,
}

/// The status route's queue counts.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Counts {
    pub pending_webhooks: u64,
    pub dead_webhooks: u64,
}

/// The queue's figures, as one statement counts them.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Gauges {
    pub pending: u64,
    pub due: u64,
    /// Due, of organizations an operator paused.
    pub held: u64,
    pub dead: u64,
    pub oldest_due_age_seconds: u64,
}

impl Gauges {
    pub fn counts(&self) -> Counts {
        Counts { pending_webhooks: self.pending, dead_webhooks: self.dead }
    }
}

/// One organization's backlog, as the console and the metrics show the largest ten.
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct TenantBacklog {
    /// `None`: the webhooks without an organization.
    pub organization_id: Option<String>,
    pub due: u64,
    pub dead: u64,
    /// An operator paused its deliveries.
    pub paused: bool,
}

/// The ten organizations with the most due webhooks (then dead-lettered ones), largest first.
pub fn tenant_backlogs(db: &Db, rules: &Rules) -> DbResult<Vec<TenantBacklog>> {
    let params = [max_attempts(rules), base_secs(rules)];
    db.rows_in_order("the organizations' backlogs", WEBHOOK_TENANT_BACKLOGS, &params)
}

/// The oldest due webhook: whose, and how long it has waited since it became due.
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct OldestDue {
    /// `None`: a webhook without an organization.
    pub organization_id: Option<String>,
    pub waiting_seconds: u64,
}

/// The oldest due webhook, if any is due (two index probes: light enough for the overview).
pub fn oldest_due(db: &Db, rules: &Rules) -> DbResult<Option<OldestDue>> {
    let params = [max_attempts(rules), base_secs(rules)];
    let oldest: Vec<OldestDue> = db.rows("the oldest due webhook", OLDEST_DUE_WEBHOOK, &params)?;
    Ok(oldest.into_iter().next())
}

/// Which dead-lettered webhooks to put back in the queue.
#[derive(Debug, PartialEq, Eq)]
pub enum Redrive {
    All,
    Ids(Vec<String>),
    /// Dead-lettered from `since` (inclusive) until `until` (exclusive; now when absent), RFC
    /// 3339 timestamps, oldest first, at most `limit`: "recover what failed since the outage".
    Window {
        since: String,
        until: Option<String>,
        limit: Option<u32>,
    },
    /// One organization's dead letters (its id as text), recorded in `webhook_tenant_actions`.
    Organization(String),
}

impl Redrive {
    /// `{"dead":true}`, `{"ids":["<id>", ...]}`, `{"deadSince":"<RFC 3339>"}` with an optional
    /// `"deadUntil"` and `"limit"` (1-100,000), or `{"organizationId":"<id>"}`, one of the four
    /// and nothing more; `None` for anything else.
    pub fn from_json(body: &[u8]) -> Option<Self> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Body {
            Dead(DeadBody),
            Ids(IdsBody),
            Window(WindowBody),
            Organization(Tenant),
        }
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct DeadBody {
            dead: bool,
        }
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct IdsBody {
            ids: Vec<String>,
        }
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields, rename_all = "camelCase")]
        struct WindowBody {
            dead_since: String,
            #[serde(default)]
            dead_until: Option<String>,
            #[serde(default)]
            limit: Option<u32>,
        }
        let body: serde_json::Value = serde_json::from_slice(body).ok()?;
        if !body.is_object() {
            return None;
        }
        match Body::deserialize(body).ok()? {
            Body::Dead(DeadBody { dead }) => dead.then_some(Redrive::All),
            Body::Ids(IdsBody { ids }) => Some(Redrive::Ids(ids)),
            Body::Organization(Tenant { organization_id }) => Some(Redrive::Organization(organization_id)),
            Body::Window(w) => {
                let times_ok = is_rfc3339(&w.dead_since) && w.dead_until.as_deref().is_none_or(is_rfc3339);
                let limit_ok = w.limit.is_none_or(|n| (1..=100_000).contains(&n));
                (times_ok && limit_ok).then_some(Redrive::Window {
                    since: w.dead_since,
                    until: w.dead_until,
                    limit: w.limit,
                })
            }
        }
    }
}

/// `{"organizationId":"<id>"}`: the body that steers one organization's webhooks.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Tenant {
    pub organization_id: String,
}

impl Tenant {
    /// The organization a body names, and nothing more; `None` for anything else.
    pub fn from_json(body: &[u8]) -> Option<String> {
        serde_json::from_slice::<Tenant>(body).ok().map(|t| t.organization_id)
    }
}

/// An organization's deliveries paused: since when.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TenantPaused {
    pub organization_id: String,
    pub since: String,
}

/// Pauses one organization's deliveries, recorded with the pause.
pub fn pause_tenant(db: &Db, organization: &str) -> DbResult<TenantPaused> {
    db.answer("pause an organization's deliveries", PAUSE_TENANT, &[str(organization)])
}

/// Resumes one organization's deliveries, recorded; says whether they were paused.
pub fn resume_tenant(db: &Db, organization: &str) -> DbResult<bool> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Resumed {
        was_paused: bool,
    }
    let resumed: Resumed =
        db.answer("resume an organization's deliveries", RESUME_TENANT, &[str(organization)])?;
    Ok(resumed.was_paused)
}

/// `2026-11-28T09:00:00Z`, `2026-11-28T09:00:00.5+01:00`: an RFC 3339 date-time, and nothing
/// else Postgres would also read as a time (`now`, `yesterday`, a bare date).
pub fn is_rfc3339(s: &str) -> bool {
    let b = s.as_bytes();
    let digits = |r: std::ops::Range<usize>| b.get(r).is_some_and(|d| d.iter().all(u8::is_ascii_digit));
    let shape = b.len() >= 20
        && digits(0..4)
        && b[4] == b'-'
        && digits(5..7)
        && b[7] == b'-'
        && digits(8..10)
        && matches!(b[10], b'T' | b't')
        && digits(11..13)
        && b[13] == b':'
        && digits(14..16)
        && b[16] == b':'
        && digits(17..19);
    if !shape {
        return false;
    }
    let mut rest = &s[19..];
    if let Some(fraction) = rest.strip_prefix('.') {
        let n = fraction.bytes().take_while(u8::is_ascii_digit).count();
        if n == 0 {
            return false;
        }
        rest = &fraction[n..];
    }
    match rest.as_bytes() {
        [b'Z' | b'z'] => true,
        [b'+' | b'-', h1, h2, b':', m1, m2] => [h1, h2, m1, m2].iter().all(|d| d.is_ascii_digit()),
        _ => false,
    }
}

/// Rows swept per run at the most (the rest go in the next run).
const SWEEP_LIMIT: i64 = 10_000;

/// A webhook [`Queue::sweep`] dead-lettered, and why.
#[derive(Debug, Deserialize)]
pub struct Swept {
    pub id: String,
    pub why: Stuck,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Stuck {
    /// It had used up its attempts.
    Exhausted,
    /// It had waited longer than `webhook_retry_max_age_hours`.
    Expired,
}

fn max_attempts(rules: &Rules) -> ParameterValue {
    ParameterValue::Int32(rules.max_attempts as i32)
}

fn base_secs(rules: &Rules) -> ParameterValue {
    ParameterValue::Floating64(rules.base.as_secs_f64())
}

/// The queue as one run sees it: the database and the policy's rules.
pub struct Queue<'a> {
    db: &'a Db,
    rules: Rules,
}

impl<'a> Queue<'a> {
    pub fn new(db: &'a Db, rules: Rules) -> Self {
        Self { db, rules }
    }

    pub fn sweep(&self) -> DbResult<Vec<Swept>> {
        let params = [
            max_attempts(&self.rules),
            ParameterValue::Floating64(self.rules.max_age.as_secs_f64()),
            ParameterValue::Int64(SWEEP_LIMIT),
        ];
        self.db.rows("sweep stuck webhooks", SWEEP_STUCK_WEBHOOKS, &params)
    }

    /// Up to `batch` due webhooks, in turn across the tenants after `after` (a new round of
    /// them when `None`), each leased for `lease_secs`.
    pub fn claim(&self, batch: u32, lease_secs: u64, after: Option<&str>) -> DbResult<ClaimPage> {
        let params = [
            max_attempts(&self.rules),
            base_secs(&self.rules),
            ParameterValue::Int64(i64::from(batch)),
            ParameterValue::Floating64(lease_secs as f64),
            after.map(str).into(),
        ];
        self.db.answer("claim due webhooks", CLAIM_DUE_WEBHOOKS, &params)
    }

    pub fn release(&self, ids: &[String]) -> DbResult<()> {
        if !ids.is_empty() {
            self.db.execute("release webhook claims", RELEASE_WEBHOOK_CLAIMS, &[str_array(ids)])?;
        }
        Ok(())
    }

    /// Records a batch of attempts in one statement.
    pub fn record(&self, attempts: &[AttemptRecord<'_>], job_id: &str) -> DbResult<()> {
        if attempts.is_empty() {
            return Ok(());
        }
        let texts = |f: &dyn Fn(&AttemptRecord) -> Option<String>| {
            ParameterValue::ArrayStr(attempts.iter().map(f).collect())
        };
        let ints = |f: &dyn Fn(&AttemptRecord) -> Option<i32>| {
            ParameterValue::ArrayInt32(attempts.iter().map(f).collect())
        };
        let fate = |a: &AttemptRecord| match a.fate {
            Fate::Delivered => (None, true, false),
            Fate::RetryIn(delay) => (Some(delay.as_millis().min(i64::MAX as u128) as i64), false, false),
            Fate::Dead => (None, false, true),
        };
        self.db.execute(
            "record webhook attempts",
            RECORD_WEBHOOK_ATTEMPTS,
            &[
                texts(&|a| Some(a.id.to_owned())),
                ints(&|a| Some(a.attempt as i32)),
                ints(&|a| a.http_status.map(i32::from)),
                ints(&|a| Some(a.duration_ms.min(i32::MAX as u64) as i32)),
                str(job_id),
                texts(&|a| a.error.map(str::to_owned)),
                ParameterValue::ArrayInt64(attempts.iter().map(|a| fate(a).0).collect()),
                texts(&|a| Some(fate(a).1.to_string())),
                texts(&|a| Some(fate(a).2.to_string())),
            ],
        )?;
        Ok(())
    }

    pub fn redrive(&self, which: &Redrive) -> DbResult<u64> {
        let ids = match which {
            Redrive::Organization(organization) => {
                #[derive(Deserialize)]
                struct Redriven {
                    redriven: u64,
                }
                let params = [str(organization)];
                let r: Redriven =
                    self.db.answer("redrive an organization's webhooks", REDRIVE_TENANT_WEBHOOKS, &params)?;
                return Ok(r.redriven);
            }
            Redrive::All => ParameterValue::DbNull,
            Redrive::Ids(ids) => str_array(ids),
            Redrive::Window { since, until, limit } => {
                let params = [
                    str(since),
                    until.as_deref().map(str).into(),
                    limit.map(|n| ParameterValue::Int64(i64::from(n))).into(),
                ];
                return self.db.execute(
                    "redrive webhooks dead in a window",
                    REDRIVE_WEBHOOKS_DEAD_IN_WINDOW,
                    &params,
                );
            }
        };
        self.db.execute("redrive webhooks", REDRIVE_WEBHOOKS, &[ids])
    }
}

/// The queue's figures, by the rules' `max_attempts` (below it a webhook is pending) and `base`
/// (when a failure never retried is due).
pub fn counts(db: &Db, rules: &Rules) -> DbResult<Gauges> {
    let params = [max_attempts(rules), base_secs(rules)];
    db.row("count the webhook queue", WEBHOOK_QUEUE_COUNTS, &params)
}

/// A stored webhook's id, as text.
#[derive(Deserialize)]
pub struct Stored {
    pub id: String,
}

/// Stores a webhook Meta sent (the front door): `None` when Meta sent these exact bytes before.
pub fn store(
    db: &Db,
    payload: &Value,
    raw: &str,
    event_type: Option<&str>,
    waba_id: Option<&str>,
) -> DbResult<Option<Stored>> {
    let params = [
        ParameterValue::Jsonb(payload.to_string().into_bytes()),
        str(raw),
        event_type.map(str).into(),
        waba_id.map(str).into(),
    ];
    let stored: Vec<Stored> = db.rows("store webhook", STORE_WEBHOOK, &params)?;
    Ok(stored.into_iter().next())
}

/// The front door's forward delivered webhook `id`.
pub fn mark_processed(db: &Db, id: &str) -> DbResult<()> {
    db.execute("mark webhook processed", MARK_WEBHOOK_PROCESSED, &[str(id)])?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_times_and_nothing_else() {
        for good in ["2026-11-28T09:00:00Z", "2026-11-28t09:00:00.123456+01:00", "2026-11-28T09:00:00-05:30"]
        {
            assert!(is_rfc3339(good), "{good}");
        }
        for bad in [
            "now",
            "yesterday",
            "2026-11-28",
            "2026-11-28 09:00:00Z",
            "2026-11-28T09:00:00",
            "2026-11-28T09:00:00.Z",
            "2026-11-28T09:00:00+0100",
            "2026-11-28T09:00:00Z ",
            "2026-11-28T09:00:00ZZ",
            "２026-11-28T09:00:00Z",
        ] {
            assert!(!is_rfc3339(bad), "{bad}");
        }
    }

    #[test]
    fn a_redrive_body_is_one_form() {
        let window = |body: &str| Redrive::from_json(body.as_bytes());
        assert_eq!(
            window(r#"{"deadSince":"2026-11-28T09:00:00Z","deadUntil":"2026-11-28T10:00:00Z","limit":50}"#),
            Some(Redrive::Window {
                since: "2026-11-28T09:00:00Z".into(),
                until: Some("2026-11-28T10:00:00Z".into()),
                limit: Some(50)
            })
        );
        assert_eq!(
            window(r#"{"deadSince":"2026-11-28T09:00:00Z"}"#),
            Some(Redrive::Window { since: "2026-11-28T09:00:00Z".into(), until: None, limit: None })
        );
        for refused in [
            r#"{"deadUntil":"2026-11-28T09:00:00Z"}"#,
            r#"{"deadSince":"yesterday"}"#,
            r#"{"deadSince":"2026-11-28T09:00:00Z","limit":0}"#,
            r#"{"deadSince":"2026-11-28T09:00:00Z","limit":100001}"#,
            r#"{"deadSince":"2026-11-28T09:00:00Z","dead":true}"#,
            r#"{"deadSince":"2026-11-28T09:00:00Z","since":"x"}"#,
            r#"{"dead":true,"ids":[]}"#,
            r#"{"dead":false}"#,
            r#"{"organizationId":7}"#,
            r#"{"organizationId":"o1","dead":true}"#,
        ] {
            assert_eq!(window(refused), None, "{refused}");
        }
        assert_eq!(window(r#"{"dead":true}"#), Some(Redrive::All));
        assert_eq!(window(r#"{"organizationId":"o1"}"#), Some(Redrive::Organization("o1".into())));
    }

    #[test]
    fn a_pause_body_names_one_organization_and_nothing_more() {
        assert_eq!(Tenant::from_json(br#"{"organizationId":"o1"}"#).as_deref(), Some("o1"));
        for refused in
            [&br#"{"organizationId":null}"#[..], br#"{"organizationId":"o1","x":1}"#, br#"{}"#, b"o1"]
        {
            assert_eq!(Tenant::from_json(refused), None, "{}", String::from_utf8_lossy(refused));
        }
    }
}
