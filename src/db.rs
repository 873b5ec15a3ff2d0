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

    // ---- health check ------------------------------------------------------------------------

    /// Active connections due for a check, stalest first, each with its best token.
    pub fn due_connections(&self, recheck_after_hours: u32) -> DbResult<Vec<DueConnection>> {
        const CTX: &str = "select due connections";
        let sql = format!(
            "SELECT c.id::text, c.\"wabaId\", c.\"phoneNumberId\", \
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
                    waba_id: text(&r[1]),
                    phone_number_id: text(&r[2]),
                    access_token: text(&r[3]),
                    config_phone_id: text(&r[4]),
                    config_waba_id: text(&r[5]),
                    config_id: text(&r[6]),
                    recent_unknowns: int(&r[7]).unwrap_or(0) as usize,
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
        let rows =
            self.query("count recent checks", &sql, &[ParameterValue::Int32(recheck_after_hours as i32)])?;
        Ok(rows.rows.first().and_then(|r| int(&r[0])).unwrap_or(0) as u64)
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
}

#[derive(Debug, Clone)]
pub struct DueConnection {
    pub id: String,
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

fn text(v: &DbValue) -> Option<String> {
    match v {
        DbValue::Str(s) => Some(s.clone()),
        DbValue::Uuid(s) => Some(s.clone()),
        _ => None,
    }
}

fn int(v: &DbValue) -> Option<i64> {
    match v {
        DbValue::Int64(n) => Some(*n),
        DbValue::Int32(n) => Some(i64::from(*n)),
        DbValue::Int16(n) => Some(i64::from(*n)),
        _ => None,
    }
}
