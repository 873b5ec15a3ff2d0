//! Postgres, through Spin's interface: the connection, the error type, batched writes and paged
//! reads, and the value conversions. The statements themselves live with the code that runs them
//! (`jobs/*/` for each job's rows, `runner/` for `job_runs`).
//!
//! Rules every statement keeps: camelCase columns are quoted; values are bound parameters, never
//! formatted in; "now" is the database's clock in UTC ([`now_utc!`]), since the columns are
//! `TIMESTAMP(3)` without time zone. Ids are read as text and matched as `id::text`, so the
//! queries work whether WhaTrack's ids are `uuid` or `text`.

use serde_json::Value;
use spin_sdk::pg4::{Connection, DbValue, ParameterValue, PgError, QueryError, RowSet};

use crate::urls;

/// The database's clock in UTC, as a SQL fragment for `concat!`-built statements.
macro_rules! now_utc {
    () => {
        "timezone('UTC', now())"
    };
}
pub(crate) use now_utc;

/// A `TIMESTAMP(3)` column (UTC) rendered as ISO 8601, the API's form, for `concat!`.
macro_rules! iso {
    ($column:literal) => {
        concat!("to_char(", $column, ", 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')")
    };
}
pub(crate) use iso;

/// Which statement failed, and what Postgres (or Spin) said.
#[derive(Debug, thiserror::Error)]
#[error("Postgres error ({context}): {message}")]
pub struct DbError {
    context: &'static str,
    message: String,
    /// The server's SQLSTATE, when the server answered.
    sqlstate: Option<String>,
}

impl DbError {
    fn new(context: &'static str, e: PgError) -> Self {
        let mut sqlstate = None;
        let message = match e {
            PgError::ConnectionFailed(s) => format!("connection failed: {s}"),
            PgError::BadParameter(s) => format!("bad parameter: {s}"),
            PgError::QueryFailed(QueryError::DbError(d)) => {
                let message = format!("{} (SQLSTATE {})", d.message, d.code);
                sqlstate = Some(d.code);
                message
            }
            PgError::QueryFailed(QueryError::Text(s)) => s,
            PgError::ValueConversionFailed(s) => format!("value conversion failed: {s}"),
            PgError::Other(s) => s,
        };
        // Spin quotes the whole address, password included, in some of these.
        Self { context, message: urls::redact(&message), sqlstate }
    }

    /// A row came back with a value of the wrong type in `column`.
    pub fn decode(context: &'static str, column: &str) -> Self {
        Self { context, message: format!("unexpected value in column {column}"), sqlstate: None }
    }

    /// The server refused the data of a statement, not the statement or the session: a value out
    /// of range (class 22), a constraint (23) or a trigger's `RAISE` (P0). Retrying the other rows
    /// one by one makes sense; after a lost connection or a syntax error it does not.
    pub fn is_about_the_data(&self) -> bool {
        self.sqlstate
            .as_deref()
            .is_some_and(|c| c.starts_with("22") || c.starts_with("23") || c.starts_with("P0"))
    }
}

pub type DbResult<T> = Result<T, DbError>;

pub struct Db {
    conn: Connection,
}

impl Db {
    pub fn open(url: &str) -> DbResult<Self> {
        Connection::open(url).map(|conn| Self { conn }).map_err(|e| DbError::new("connect", e))
    }

    pub fn query(&self, context: &'static str, sql: &str, params: &[ParameterValue]) -> DbResult<RowSet> {
        self.conn.query(sql, params).map_err(|e| DbError::new(context, e))
    }

    pub fn execute(&self, context: &'static str, sql: &str, params: &[ParameterValue]) -> DbResult<u64> {
        self.conn.execute(sql, params).map_err(|e| DbError::new(context, e))
    }

    /// The first column of the first row as a count (0 when there is none).
    pub fn count(&self, context: &'static str, sql: &str, params: &[ParameterValue]) -> DbResult<u64> {
        let rows = self.query(context, sql, params)?;
        Ok(rows.rows.first().and_then(|r| int(&r[0])).unwrap_or(0) as u64)
    }
}

/// Writes `rows` with `write` in one go; when the database refuses their data (a trigger or
/// constraint of WhaTrack's), each row is tried alone, so that one bad row does not hold back the
/// others. Says which rows were saved; `refused` hears of each that was not. Any other failure
/// (the connection, the statement) fails the whole write.
pub fn write_isolating<T>(
    rows: &[T],
    write: impl Fn(&[T]) -> DbResult<()>,
    mut refused: impl FnMut(&T, &DbError),
) -> DbResult<Vec<bool>> {
    match write(rows) {
        Ok(()) => return Ok(vec![true; rows.len()]),
        Err(e) if e.is_about_the_data() && rows.len() > 1 => {}
        Err(e) if e.is_about_the_data() => {
            refused(&rows[0], &e);
            return Ok(vec![false]);
        }
        Err(e) => return Err(e),
    }
    rows.iter()
        .map(|row| match write(std::slice::from_ref(row)) {
            Ok(()) => Ok(true),
            Err(e) if e.is_about_the_data() => {
                refused(row, &e);
                Ok(false)
            }
            Err(e) => Err(e),
        })
        .collect()
}

/// Rows read a page at a time, when the consumer gets to them: a run holds one page in memory,
/// however many rows the table has. `fetch` reads the next page (and keeps its own place);
/// an empty page ends the rows, and so does an error, kept in `error` for the caller.
pub struct Pages<T, F> {
    fetch: F,
    page: std::vec::IntoIter<T>,
    done: bool,
    pub error: Option<DbError>,
}

impl<T, F: FnMut() -> DbResult<Vec<T>>> Pages<T, F> {
    pub fn new(fetch: F) -> Self {
        Self { fetch, page: Vec::new().into_iter(), done: false, error: None }
    }

    /// What was read but not handed out.
    pub fn unread(self) -> impl Iterator<Item = T> {
        self.page
    }
}

impl<T, F: FnMut() -> DbResult<Vec<T>>> Iterator for Pages<T, F> {
    type Item = T;

    fn next(&mut self) -> Option<T> {
        if let Some(row) = self.page.next() {
            return Some(row);
        }
        if self.done {
            return None;
        }
        match (self.fetch)() {
            Ok(rows) if !rows.is_empty() => {
                self.page = rows.into_iter();
                self.page.next()
            }
            Ok(_) => {
                self.done = true;
                None
            }
            Err(e) => {
                self.done = true;
                self.error = Some(e);
                None
            }
        }
    }
}

pub fn str(s: &str) -> ParameterValue {
    ParameterValue::Str(s.to_owned())
}

pub fn str_array(items: &[String]) -> ParameterValue {
    ParameterValue::ArrayStr(items.iter().cloned().map(Some).collect())
}

pub fn text(v: &DbValue) -> Option<String> {
    match v {
        DbValue::Str(s) => Some(s.clone()),
        DbValue::Uuid(s) => Some(s.clone()),
        _ => None,
    }
}

/// A JSON document the statement rendered as text.
pub fn json_text(v: &DbValue) -> Option<Value> {
    text(v).and_then(|t| serde_json::from_str(&t).ok())
}

pub fn int(v: &DbValue) -> Option<i64> {
    match v {
        DbValue::Int64(n) => Some(*n),
        DbValue::Int32(n) => Some(i64::from(*n)),
        DbValue::Int16(n) => Some(i64::from(*n)),
        _ => None,
    }
}
