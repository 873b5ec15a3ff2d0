//! Every SQL statement of the component, on Spin's Postgres interface.
//!
//! Rules kept here: camelCase columns are always quoted; values are always bound parameters;
//! "now" is the database's clock in UTC (`NOW_UTC`), since the columns are `TIMESTAMP(3)` without
//! time zone. Ids are read as text and matched as `id::text`, and values copied into audit rows come
//! from the rows they describe, so the queries work whether WhaTrack's ids are `uuid` or `text`.

use serde_json::Value;
use spin_sdk::pg4::{Connection, DbValue, ParameterValue, PgError, QueryError, RowSet};

#[derive(Debug, thiserror::Error)]
#[error("Postgres error ({context}): {message}")]
pub struct DbError {
    context: &'static str,
    message: String,
}

impl DbError {
    fn new(context: &'static str, e: PgError) -> Self {
        let message = match e {
            PgError::ConnectionFailed(s) => format!("connection failed: {s}"),
            PgError::BadParameter(s) => format!("bad parameter: {s}"),
            PgError::QueryFailed(QueryError::DbError(d)) => {
                format!("{} (SQLSTATE {})", d.message, d.code)
            }
            PgError::QueryFailed(QueryError::Text(s)) => s,
            PgError::ValueConversionFailed(s) => format!("value conversion failed: {s}"),
            PgError::Other(s) => s,
        };
        Self { context, message }
    }

    fn decode(context: &'static str, what: &str) -> Self {
        Self { context, message: format!("unexpected value in column {what}") }
    }
}

pub type DbResult<T> = Result<T, DbError>;

const NOW_UTC: &str = "timezone('UTC', now())";

pub struct Db {
    conn: Connection,
}

impl Db {
    pub fn open(url: &str) -> DbResult<Self> {
        Connection::open(url).map(|conn| Self { conn }).map_err(|e| DbError::new("connect", e))
    }

    fn query(&self, context: &'static str, sql: &str, params: &[ParameterValue]) -> DbResult<RowSet> {
        self.conn.query(sql, params).map_err(|e| DbError::new(context, e))
    }

    fn execute(&self, context: &'static str, sql: &str, params: &[ParameterValue]) -> DbResult<u64> {
        self.conn.execute(sql, params).map_err(|e| DbError::new(context, e))
    }

    /// Runs `body` inside BEGIN/COMMIT on this connection (Spin keeps one session per
    /// connection), rolling back when it fails.
    fn transaction<T>(&self, context: &'static str, body: impl FnOnce() -> DbResult<T>) -> DbResult<T> {
        self.execute(context, "BEGIN", &[])?;
        match body() {
            Ok(v) => {
                self.execute(context, "COMMIT", &[])?;
                Ok(v)
            }
            Err(e) => {
                let _ = self.execute(context, "ROLLBACK", &[]);
                Err(e)
            }
        }
    }

    // ---- job_runs ----------------------------------------------------------------------------

    /// Inserts a `running` row; false when the id is taken (two runs in the same millisecond).
    pub fn reserve_job_run(&self, id: &str, job_type: &str, trigger: &str) -> DbResult<bool> {
        let sql = format!(
            "INSERT INTO job_runs (id, \"jobType\", trigger, status, \"startedAt\") \
             VALUES ($1, $2, $3, 'running', {NOW_UTC}) ON CONFLICT (id) DO NOTHING"
        );
        Ok(self.execute("job_runs insert", &sql, &[str(id), str(job_type), str(trigger)])? == 1)
    }

    pub fn finish_job_run(
        &self,
        id: &str,
        status: &str,
        summary: Option<&Value>,
        error: Option<&str>,
    ) -> DbResult<()> {
        let sql = format!(
            "UPDATE job_runs SET status = $2, \"finishedAt\" = {NOW_UTC}, summary = $3, error = $4 WHERE id = $1"
        );
        let summary = summary.map(|s| ParameterValue::Jsonb(s.to_string().into_bytes()));
        self.execute(
            "job_runs update",
            &sql,
            &[str(id), str(status), summary.into(), error.map(str).into()],
        )?;
        Ok(())
    }

    /// Marks `running` rows of `job_type` that started more than `older_than_secs` ago as
    /// failed: their run died without recording a result (e.g. its Postgres went away).
    pub fn abandon_stale_runs(&self, job_type: &str, older_than_secs: u64) -> DbResult<u64> {
        let sql = format!(
            "UPDATE job_runs SET status = 'failed', \"finishedAt\" = {NOW_UTC}, \
                 error = 'abandoned: the run ended without recording a result' \
             WHERE \"jobType\" = $1 AND status = 'running' \
               AND \"startedAt\" < {NOW_UTC} - make_interval(secs => $2::float8)"
        );
        self.execute(
            "abandon stale runs",
            &sql,
            &[str(job_type), ParameterValue::Floating64(older_than_secs as f64)],
        )
    }

    // ---- health check ------------------------------------------------------------------------

    /// Active connections due for a check, stalest first, each with its best token.
    pub fn due_connections(&self, recheck_after_hours: u32) -> DbResult<Vec<DueConnection>> {
        const CTX: &str = "select due connections";
        let sql = format!(
            "SELECT c.id::text, c.\"organizationId\"::text, c.\"healthStatus\"::text, c.\"wabaId\", c.\"phoneNumberId\", \
                    cfg.\"accessToken\", cfg.\"phoneId\", cfg.\"wabaId\", cfg.id::text, \
                    (SELECT count(*) FROM (SELECT h.status FROM whatsapp_health h \
                        WHERE h.\"connectionId\" = c.id ORDER BY h.\"lastCheck\" DESC LIMIT 2) recent \
                     WHERE recent.status = 'unknown') \
             FROM whatsapp_connections c \
             LEFT JOIN LATERAL ( \
                SELECT w.id, w.\"accessToken\", w.\"phoneId\", w.\"wabaId\" FROM whatsapp_configs w \
                WHERE w.\"connectionId\" = c.id AND w.\"accessToken\" IS NOT NULL \
                ORDER BY (w.status = 'connected') DESC NULLS LAST, w.\"updatedAt\" DESC NULLS LAST LIMIT 1 \
             ) cfg ON true \
             WHERE c.status = 'active' \
               AND (c.\"lastHealthCheckAt\" IS NULL \
                    OR c.\"lastHealthCheckAt\" < {NOW_UTC} - make_interval(hours => $1)) \
             ORDER BY c.\"lastHealthCheckAt\" ASC NULLS FIRST, c.id"
        );
        let rows = self.query(CTX, &sql, &[ParameterValue::Int32(recheck_after_hours as i32)])?;
        rows.rows
            .iter()
            .map(|r| {
                let need = |i: usize, what: &str| text(&r[i]).ok_or_else(|| DbError::decode(CTX, what));
                Ok(DueConnection {
                    id: need(0, "id")?,
                    organization_id: text(&r[1]),
                    health_status: text(&r[2]),
                    waba_id: text(&r[3]),
                    phone_number_id: text(&r[4]),
                    access_token: text(&r[5]),
                    config_phone_id: text(&r[6]),
                    config_waba_id: text(&r[7]),
                    config_id: text(&r[8]),
                    recent_unknowns: int(&r[9]).unwrap_or(0) as usize,
                })
            })
            .collect()
    }

    /// Active connections left alone this run because they were checked recently.
    pub fn count_recently_checked(&self, recheck_after_hours: u32) -> DbResult<u64> {
        let sql = format!(
            "SELECT count(*) FROM whatsapp_connections WHERE status = 'active' \
             AND \"lastHealthCheckAt\" >= {NOW_UTC} - make_interval(hours => $1)"
        );
        self.count("count recent checks", &sql, &[ParameterValue::Int32(recheck_after_hours as i32)])
    }

    /// Writes a batch of check results in one transaction: the audit rows, the connections'
    /// health (not for `unknown`), and the token facts `debug_token` gave.
    pub fn save_health_results(&self, results: &[HealthWrite]) -> DbResult<()> {
        if results.is_empty() {
            return Ok(());
        }
        let col = |f: &dyn Fn(&HealthWrite) -> Option<String>| {
            ParameterValue::ArrayStr(results.iter().map(f).collect())
        };
        let ints = |f: &dyn Fn(&HealthWrite) -> Option<i64>| {
            ParameterValue::ArrayInt64(results.iter().map(f).collect())
        };
        let audit = format!(
            "INSERT INTO whatsapp_health (id, \"organizationId\", \"connectionId\", status, \"tokenValid\", \
                 \"tokenExpired\", \"apiResponse\", \"responseTime\", \"lastCheck\", \"createdAt\") \
             SELECT gen_random_uuid(), c.\"organizationId\", c.id, u.status, u.valid::boolean, \
                    u.expired::boolean, u.reason, u.ms::int, {NOW_UTC}, {NOW_UTC} \
             FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::bigint[]) \
                  AS u(id, status, valid, expired, reason, ms) \
             JOIN whatsapp_connections c ON c.id::text = u.id"
        );
        let connections = format!(
            "UPDATE whatsapp_connections c SET \"healthStatus\" = u.status, \
                 \"lastHealthCheckAt\" = {NOW_UTC}, \"updatedAt\" = {NOW_UTC} \
             FROM unnest($1::text[], $2::text[]) AS u(id, status) \
             WHERE c.id::text = u.id AND u.status <> 'unknown'"
        );
        let tokens = format!(
            "UPDATE whatsapp_configs w SET \"tokenStatus\" = u.token_status, \
                 \"tokenExpiresAt\" = CASE WHEN u.expires IS NULL THEN NULL \
                     ELSE timezone('UTC', to_timestamp(u.expires)) END, \
                 \"tokenLastCheckedAt\" = {NOW_UTC}, \"updatedAt\" = {NOW_UTC} \
             FROM unnest($1::text[], $2::text[], $3::bigint[]) AS u(id, token_status, expires) \
             WHERE w.id::text = u.id AND u.token_status IS NOT NULL"
        );
        self.transaction("save health results", || {
            self.execute(
                "insert whatsapp_health",
                &audit,
                &[
                    col(&|w| Some(w.connection_id.clone())),
                    col(&|w| Some(w.status.to_owned())),
                    col(&|w| Some(w.token_valid.to_string())),
                    col(&|w| Some(w.token_expired.to_string())),
                    col(&|w| Some(w.reason.clone())),
                    ints(&|w| Some(w.response_ms as i64)),
                ],
            )?;
            self.execute(
                "update whatsapp_connections",
                &connections,
                &[col(&|w| Some(w.connection_id.clone())), col(&|w| Some(w.status.to_owned()))],
            )?;
            self.execute(
                "update whatsapp_configs",
                &tokens,
                &[
                    col(&|w| w.config_id.clone()),
                    col(&|w| w.token_status.map(str::to_owned)),
                    ints(&|w| w.token_expires_at),
                ],
            )?;
            Ok(())
        })
    }

    // ---- webhook retry -----------------------------------------------------------------------

    /// Claims up to `batch` due webhooks, oldest due first, and pushes their `"nextRetryAt"`
    /// ahead by `lease_secs`: one statement, so one transaction, and `SKIP LOCKED` keeps two
    /// concurrent claims from ever taking the same row, Redis lock or not.
    pub fn claim_due_webhooks(
        &self,
        rules: &RetryRules,
        batch: u32,
        lease_secs: u64,
    ) -> DbResult<Vec<ClaimedWebhook>> {
        const CTX: &str = "claim due webhooks";
        let sql = format!(
            "WITH due AS ( \
                SELECT id FROM whatsapp_webhook_logs \
                WHERE {PENDING} AND {DUE_AT} <= {NOW_UTC} \
                ORDER BY {DUE_AT}, id \
                LIMIT $3 \
                FOR UPDATE SKIP LOCKED \
             ) \
             UPDATE whatsapp_webhook_logs w \
             SET \"nextRetryAt\" = {NOW_UTC} + make_interval(secs => $4::float8) \
             FROM due WHERE w.id = due.id \
             RETURNING w.id::text, w.\"retryCount\", COALESCE(w.\"rawBody\", w.payload::text)"
        );
        let rows = self.query(
            CTX,
            &sql,
            &[
                rules.max_attempts(),
                rules.base_secs(),
                ParameterValue::Int64(i64::from(batch)),
                ParameterValue::Floating64(lease_secs as f64),
            ],
        )?;
        rows.rows
            .iter()
            .map(|r| {
                Ok(ClaimedWebhook {
                    id: text(&r[0]).ok_or_else(|| DbError::decode(CTX, "id"))?,
                    retry_count: int(&r[1]).ok_or_else(|| DbError::decode(CTX, "retryCount"))? as u32,
                    body: text(&r[2]).unwrap_or_default(),
                })
            })
            .collect()
    }

    /// Makes claimed rows that were never attempted due again, without counting an attempt.
    pub fn release_webhooks(&self, ids: &[String]) -> DbResult<()> {
        if ids.is_empty() {
            return Ok(());
        }
        let sql = format!(
            "UPDATE whatsapp_webhook_logs SET \"nextRetryAt\" = {NOW_UTC} WHERE id::text = ANY($1::text[])"
        );
        self.execute("release webhook claims", &sql, &[str_array(ids)])?;
        Ok(())
    }

    /// Writes one attempt's outcome and its `webhook_retry_attempts` row in one statement.
    pub fn record_webhook_attempt(&self, a: &AttemptWrite<'_>) -> DbResult<()> {
        // $6 error (NULL when delivered), $7 seconds until the next attempt (NULL unless one is
        // planned), $8 delivered, $9 dead-lettered now.
        let sql = format!(
            "WITH done AS ( \
                UPDATE whatsapp_webhook_logs SET \
                    processed = processed OR $8, \
                    \"processedAt\" = CASE WHEN $8 THEN {NOW_UTC} ELSE \"processedAt\" END, \
                    \"processingError\" = $6, \
                    \"retryCount\" = \"retryCount\" + CASE WHEN $8 THEN 0 ELSE 1 END, \
                    \"lastRetryAt\" = CASE WHEN $8 THEN \"lastRetryAt\" ELSE {NOW_UTC} END, \
                    \"nextRetryAt\" = {NOW_UTC} + make_interval(secs => $7::float8), \
                    \"deadAt\" = CASE WHEN $9 THEN {NOW_UTC} ELSE NULL END \
                WHERE id::text = $1 RETURNING id) \
             INSERT INTO webhook_retry_attempts (id, \"webhookLogId\", attempt, \"attemptedAt\", \"httpStatus\", error, \"durationMs\", \"jobId\") \
             SELECT gen_random_uuid(), done.id::text, $2, {NOW_UTC}, $3, $6, $4, $5 FROM done"
        );
        let (retry_in, delivered, dead) = match a.outcome {
            AttemptOutcome::Delivered => (None, true, false),
            AttemptOutcome::RetryIn(secs) => (Some(secs), false, false),
            AttemptOutcome::Dead => (None, false, true),
        };
        self.execute(
            "record webhook attempt",
            &sql,
            &[
                str(a.id),
                ParameterValue::Int32(a.attempt as i32),
                a.http_status.map(|s| ParameterValue::Int32(i32::from(s))).into(),
                ParameterValue::Int32(a.duration_ms.min(i32::MAX as u64) as i32),
                str(a.job_id),
                a.error.map(str).into(),
                retry_in.map(ParameterValue::Floating64).into(),
                ParameterValue::Boolean(delivered),
                ParameterValue::Boolean(dead),
            ],
        )?;
        Ok(())
    }

    /// Due rows not yet attempted: the work a run leaves to the next one.
    pub fn count_due_webhooks(&self, rules: &RetryRules) -> DbResult<u64> {
        let sql =
            format!("SELECT count(*) FROM whatsapp_webhook_logs WHERE {PENDING} AND {DUE_AT} <= {NOW_UTC}");
        self.count("count due webhooks", &sql, &[rules.max_attempts(), rules.base_secs()])
    }

    /// (pending, dead): waiting for a retry, and dead-lettered.
    pub fn webhook_queue_counts(&self, rules: &RetryRules) -> DbResult<(u64, u64)> {
        let sql = format!(
            "SELECT count(*) FILTER (WHERE {PENDING}), \
                    count(*) FILTER (WHERE \"deadAt\" IS NOT NULL AND processed = false) \
             FROM whatsapp_webhook_logs WHERE processed = false"
        );
        let rows = self.query("count webhook queue", &sql, &[rules.max_attempts()])?;
        let row = rows.rows.first();
        let n = |i: usize| row.and_then(|r| int(&r[i])).unwrap_or(0) as u64;
        Ok((n(0), n(1)))
    }

    /// Puts dead-lettered rows back in the queue: all of them, or those of `ids`.
    pub fn redrive_webhooks(&self, ids: Option<&[String]>) -> DbResult<u64> {
        let sql = format!(
            "UPDATE whatsapp_webhook_logs SET \"deadAt\" = NULL, \"retryCount\" = 0, \"nextRetryAt\" = {NOW_UTC} \
             WHERE \"deadAt\" IS NOT NULL AND processed = false AND ($1::text[] IS NULL OR id::text = ANY($1::text[]))"
        );
        let ids = ids.map(str_array).unwrap_or(ParameterValue::DbNull);
        self.execute("redrive webhooks", &sql, &[ids])
    }

    // ---- overview --------------------------------------------------------------------------

    /// A job's last run, its last success, and the seconds since that success ended.
    pub fn job_overview(&self, job_type: &str) -> DbResult<(Option<Value>, Option<Value>, Option<i64>)> {
        let sql = format!(
            "SELECT (SELECT {RUN_JSON} FROM job_runs WHERE \"jobType\" = $1 ORDER BY \"startedAt\" DESC LIMIT 1), \
                    (SELECT {RUN_JSON} FROM job_runs WHERE \"jobType\" = $1 AND {SUCCESS} ORDER BY \"startedAt\" DESC LIMIT 1), \
                    (SELECT EXTRACT(EPOCH FROM {NOW_UTC} - max(\"finishedAt\"))::bigint FROM job_runs \
                     WHERE \"jobType\" = $1 AND {SUCCESS})"
        );
        let rows = self.query("job overview", &sql, &[str(job_type)])?;
        let Some(row) = rows.rows.first() else { return Ok((None, None, None)) };
        Ok((json_text(&row[0]), json_text(&row[1]), int(&row[2])))
    }

    /// The latest `limit` runs of a job, newest first.
    pub fn recent_runs(&self, job_type: &str, limit: u32) -> DbResult<Vec<Value>> {
        let sql = format!(
            "SELECT {RUN_JSON} FROM job_runs WHERE \"jobType\" = $1 ORDER BY \"startedAt\" DESC, id DESC LIMIT $2"
        );
        let rows =
            self.query("recent runs", &sql, &[str(job_type), ParameterValue::Int64(i64::from(limit))])?;
        Ok(rows.rows.iter().filter_map(|r| json_text(&r[0])).collect())
    }

    // ---- retention ---------------------------------------------------------------------------

    /// Deletes up to `batch` rows of `table` older than `days`; returns how many went.
    pub fn purge_older_than(&self, table: AuditTable, days: u32, batch: u32) -> DbResult<u64> {
        let (name, column) = match table {
            AuditTable::JobRuns => ("job_runs", "\"startedAt\""),
            AuditTable::WebhookRetryAttempts => ("webhook_retry_attempts", "\"attemptedAt\""),
            AuditTable::WhatsappHealth => ("whatsapp_health", "\"lastCheck\""),
        };
        // Table and column come from the match above, never from input.
        let sql = format!(
            "DELETE FROM {name} WHERE ctid IN ( \
                SELECT ctid FROM {name} WHERE {column} < {NOW_UTC} - make_interval(days => $1) LIMIT $2)"
        );
        self.execute(
            "purge old rows",
            &sql,
            &[ParameterValue::Int32(days as i32), ParameterValue::Int64(i64::from(batch))],
        )
    }

    fn count(&self, context: &'static str, sql: &str, params: &[ParameterValue]) -> DbResult<u64> {
        let rows = self.query(context, sql, params)?;
        Ok(rows.rows.first().and_then(|r| int(&r[0])).unwrap_or(0) as u64)
    }
}

/// A `job_runs` row as the API shows it (timestamps in ISO 8601, UTC).
const RUN_JSON: &str =
    "jsonb_build_object('jobId', id, 'jobType', \"jobType\", 'trigger', trigger, 'status', status, \
     'startedAt', to_char(\"startedAt\", 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'), \
     'finishedAt', to_char(\"finishedAt\", 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'), \
     'summary', summary, 'error', error)::text";
/// A run that did its work (`partial` ran out of budget, but ran).
const SUCCESS: &str = "status IN ('succeeded', 'partial')";

/// The audit tables retention trims.
#[derive(Debug, Clone, Copy)]
pub enum AuditTable {
    JobRuns,
    WebhookRetryAttempts,
    WhatsappHealth,
}

/// The queue's rules, as the SQL needs them: `$1` max attempts, `$2` base seconds.
pub struct RetryRules {
    pub max_attempts: u32,
    pub base_secs: u64,
}

impl RetryRules {
    fn max_attempts(&self) -> ParameterValue {
        ParameterValue::Int32(self.max_attempts as i32)
    }

    fn base_secs(&self) -> ParameterValue {
        ParameterValue::Floating64(self.base_secs as f64)
    }
}

/// A webhook waiting for a retry: `$1` is `webhook_retry_max_attempts`.
const PENDING: &str =
    "processed = false AND \"signatureValid\" = true AND \"deadAt\" IS NULL AND \"retryCount\" < $1";
/// When a pending webhook is due (once this has passed): `$2` is `webhook_retry_base_seconds`.
const DUE_AT: &str = "COALESCE(\"nextRetryAt\", \"createdAt\" + make_interval(secs => $2::float8))";

#[derive(Debug, Clone)]
pub struct ClaimedWebhook {
    pub id: String,
    pub retry_count: u32,
    /// `"rawBody"` when stored, else the `payload` JSON as text.
    pub body: String,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum AttemptOutcome {
    Delivered,
    /// Retry after this many seconds.
    RetryIn(f64),
    Dead,
}

pub struct AttemptWrite<'a> {
    pub id: &'a str,
    pub attempt: u32,
    pub http_status: Option<u16>,
    pub error: Option<&'a str>,
    pub duration_ms: u64,
    pub job_id: &'a str,
    pub outcome: AttemptOutcome,
}

#[derive(Debug, Clone)]
pub struct DueConnection {
    pub id: String,
    pub organization_id: Option<String>,
    /// The last known health, before this check.
    pub health_status: Option<String>,
    pub waba_id: Option<String>,
    pub phone_number_id: Option<String>,
    pub access_token: Option<String>,
    pub config_phone_id: Option<String>,
    pub config_waba_id: Option<String>,
    pub config_id: Option<String>,
    /// How many of the connection's last two checks were `unknown`.
    pub recent_unknowns: usize,
}

/// One checked connection, as written by [`Db::save_health_results`].
#[derive(Debug, Clone)]
pub struct HealthWrite {
    pub connection_id: String,
    pub config_id: Option<String>,
    pub status: &'static str,
    pub token_valid: bool,
    pub token_expired: bool,
    pub reason: String,
    pub response_ms: u64,
    /// Set only when `debug_token` answered.
    pub token_status: Option<&'static str>,
    pub token_expires_at: Option<i64>,
}

fn str(s: &str) -> ParameterValue {
    ParameterValue::Str(s.to_owned())
}

fn str_array(items: &[String]) -> ParameterValue {
    ParameterValue::ArrayStr(items.iter().cloned().map(Some).collect())
}

fn text(v: &DbValue) -> Option<String> {
    match v {
        DbValue::Str(s) => Some(s.clone()),
        DbValue::Uuid(s) => Some(s.clone()),
        _ => None,
    }
}

fn json_text(v: &DbValue) -> Option<Value> {
    text(v).and_then(|t| serde_json::from_str(&t).ok())
}

fn int(v: &DbValue) -> Option<i64> {
    match v {
        DbValue::Int64(n) => Some(*n),
        DbValue::Int32(n) => Some(i64::from(*n)),
        DbValue::Int16(n) => Some(i64::from(*n)),
        _ => None,
    }
}
