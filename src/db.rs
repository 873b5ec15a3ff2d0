//! Postgres, through Spin's interface: the connection, the error type, reads decoded with serde,
//! batched writes and paged reads, and the value conversions. The statements themselves live
//! with the code that runs them, one `.sql` file each, exactly as sent (`jobs/health_check/sql/`
//! and `jobs/webhook_retry/queue/sql/` for each job's rows, `runner/sql/` for `job_runs`,
//! `console/sql/`); the suite prepares and explains every one of them against the migrated schema (`tests/statements.rs`).
//!
//! Rules every statement keeps:
//!
//! - camelCase columns are quoted; values are bound parameters, never formatted in.
//! - "now" is the database's clock in UTC, `timezone('UTC', now())`, since the columns are
//!   `TIMESTAMP(3)` without time zone; a timestamp goes out as ISO 8601, the API's form,
//!   `to_char(<column>, 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')`.
//! - **Ids.** The component holds every id as text and reads them out as `id::text`. A statement
//!   compares a key with one of ours in the key's own type, whatever the schema made it (`uuid`
//!   in WhaTrack's, `text` in some), so that the primary key's index serves: our text is read
//!   back through the table's own row type, `(json_populate_record(NULL::<table>,
//!   json_build_object('id', $1))).id`, and a list as `id = ANY(ARRAY(SELECT <the same, of x>
//!   FROM unnest($1::text[]) x))`. Never `id::text = $1`, which cannot use the index and reads
//!   the whole table for every row it looks for.
//!
//! Every statement that returns rows goes through [`Db::rows`] (or [`Db::row`], or
//! [`Db::rows_in_order`]), never through
//! Spin's `query` as it is: Spin 4's Postgres host learns a result's columns from its first row
//! and waits for that row, so a query that finds nothing never returns there. [`Db::rows`]
//! wraps the statement so that it always answers exactly one row, its rows as a JSON array
//! ([`as_json_rows`]), and decodes that array into the caller's type by column name. The
//! columns a statement returns are therefore named (`AS "retryCount"`) as the fields of the type
//! it is read into. An aggregate keeps no order unless told: a statement whose order matters
//! numbers its rows in that order (`row_number() OVER (ORDER BY ...) AS ord`) and is read with
//! [`Db::rows_in_order`], which aggregates them by that number.

use serde::de::DeserializeOwned;
use spin_sdk::pg4::{Connection, DbValue, ParameterValue, PgError, QueryError};

use crate::urls;

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
                let message = match behind_a_transaction_pooler(&d.code, &d.message) {
                    true => format!("{TRANSACTION_POOLER} ({}, SQLSTATE {})", d.message, d.code),
                    false => format!("{} (SQLSTATE {})", d.message, d.code),
                };
                sqlstate = Some(d.code);
                message
            }
            PgError::QueryFailed(QueryError::Text(s)) => {
                sqlstate = sqlstate_in(&s);
                s
            }
            PgError::ValueConversionFailed(s) => format!("value conversion failed: {s}"),
            PgError::Other(s) => {
                sqlstate = sqlstate_in(&s);
                s
            }
        };
        // Spin quotes the whole address, password included, in some of these.
        Self { context, message: urls::redact(&message), sqlstate }
    }

    /// A statement's answer could not be read into its type: `why` says which column or value.
    pub fn decode(context: &'static str, why: impl std::fmt::Display) -> Self {
        Self { context, message: format!("unexpected answer: {why}"), sqlstate: None }
    }

    /// `database_url` goes through a transaction-mode pooler (see [`TRANSACTION_POOLER`]).
    pub fn is_behind_a_transaction_pooler(&self) -> bool {
        self.message.starts_with(TRANSACTION_POOLER)
    }

    /// The server refused the data of a statement, not the statement or the session: a value out
    /// of range (class 22), a constraint (23) or a trigger's `RAISE` (P0). Retrying the other rows
    /// one by one makes sense; after a lost connection or a syntax error it does not.
    pub fn is_about_the_data(&self) -> bool {
        !self.is_behind_a_transaction_pooler()
            && self
                .sqlstate
                .as_deref()
                .is_some_and(|c| c.starts_with("22") || c.starts_with("23") || c.starts_with("P0"))
    }
}

pub type DbResult<T> = Result<T, DbError>;

/// The SQLSTATE quoted in an error Spin passes on as text: Spin 4 does so for a query whose
/// rows it streams (`query_failed_anyhow`), its text the server's error as Rust prints it,
/// `code: "22P02"` among its fields.
fn sqlstate_in(text: &str) -> Option<String> {
    text.match_indices("code: \"").find_map(|(at, key)| {
        let code = text.get(at + key.len()..at + key.len() + 6)?;
        let (code, quote) = code.split_at(5);
        (quote == "\"" && code.bytes().all(|b| b.is_ascii_alphanumeric())).then(|| code.to_owned())
    })
}

/// What a pooler in transaction mode does to Spin's Postgres host, and what to do about it. The
/// host prepares every statement under a name (`s0`, `s1`, ...) and runs it in a second exchange,
/// which such a pooler may hand to another server connection: there the name means nothing
/// (SQLSTATE 26000), or, with two replicas (two processes counting names from `s0`) behind one
/// pooler, it is taken already (42P05) or names another replica's statement, whose parameters
/// are not ours (08P01: another count; 22P03: another type). Where the two statements take the
/// same parameters, ours runs as theirs, which no error reveals: never put two replicas behind
/// a transaction-mode pooler. The component cannot change how the host talks to the database.
pub const TRANSACTION_POOLER: &str = "database_url goes through a transaction-mode connection pooler \
(PgBouncer in transaction mode, Supabase's port 6543, Prisma's ?pgbouncer=true), which loses the \
statements Spin prepares: use the direct database URL, the pooler's session mode, or PgBouncer 1.21+ \
with max_prepared_statements set";

/// SQLSTATE 26000 (invalid statement name) or 42P05 (duplicate statement) about one of the
/// host's own statement names, or a bind that does not fit the statement it reached (08P01, a
/// protocol violation; 22P03, parameters in a binary format the statement cannot read): no
/// statement of ours has a name, and the host binds each with the types it was prepared with,
/// so only a pooler can have mixed them up.
fn behind_a_transaction_pooler(sqlstate: &str, message: &str) -> bool {
    let name = message.split_once("prepared statement \"").and_then(|(_, rest)| rest.split_once('"'));
    let hosts = |n: &str| n.len() > 1 && n.starts_with('s') && n[1..].bytes().all(|b| b.is_ascii_digit());
    match (sqlstate, name) {
        ("26000", Some((n, " does not exist"))) | ("42P05", Some((n, " already exists"))) => hosts(n),
        ("08P01", Some((n, _))) => hosts(n),
        ("08P01", None) => message.starts_with("bind message"),
        ("22P03", _) => message.starts_with("incorrect binary data format in bind parameter"),
        _ => false,
    }
}

pub struct Db {
    conn: Connection,
}

impl Db {
    pub fn open(url: &str) -> DbResult<Self> {
        Connection::open(url).map(|conn| Self { conn }).map_err(|e| DbError::new("connect", e))
    }

    /// The rows `sql` returns (a `SELECT`, or an `INSERT`/`UPDATE`/`DELETE` with `RETURNING`), each
    /// read into `T` by column name, in no particular order. An empty result is an empty `Vec`,
    /// on every Spin.
    pub fn rows<T: DeserializeOwned>(
        &self,
        context: &'static str,
        sql: &str,
        params: &[ParameterValue],
    ) -> DbResult<Vec<T>> {
        self.json(context, &as_json_rows(sql, ""), params)
    }

    /// [`Db::rows`] in the order of the statement's `ord` column.
    pub fn rows_in_order<T: DeserializeOwned>(
        &self,
        context: &'static str,
        sql: &str,
        params: &[ParameterValue],
    ) -> DbResult<Vec<T>> {
        self.json(context, &as_json_rows(sql, ORDERED), params)
    }

    /// The one JSON text cell `sql` answers, read into `T`.
    fn json<T: DeserializeOwned>(
        &self,
        context: &'static str,
        sql: &str,
        params: &[ParameterValue],
    ) -> DbResult<T> {
        let set = self.conn.query(sql, params).map_err(|e| DbError::new(context, e))?;
        let json = match set.rows.first().map(Vec::as_slice) {
            Some([DbValue::Str(json)]) => json,
            _ => return Err(DbError::decode(context, "not the one JSON row asked for")),
        };
        serde_json::from_str(json).map_err(|e| DbError::decode(context, e))
    }

    /// The one row `sql` returns (an aggregate, or a statement that answers one row whatever
    /// it finds).
    pub fn row<T: DeserializeOwned>(
        &self,
        context: &'static str,
        sql: &str,
        params: &[ParameterValue],
    ) -> DbResult<T> {
        let mut rows = self.rows(context, sql, params)?;
        match rows.len() {
            1 => Ok(rows.remove(0)),
            n => Err(DbError::decode(context, format!("{n} rows where one was expected"))),
        }
    }

    /// What a statement answers as one JSON value (one row, its one column `answer`): for a
    /// statement whose own `WITH` changes data, which [`Db::rows`] cannot wrap.
    pub fn answer<T: DeserializeOwned>(
        &self,
        context: &'static str,
        sql: &str,
        params: &[ParameterValue],
    ) -> DbResult<T> {
        self.json(context, sql, params)
    }

    /// A statement that returns no rows; answers how many it changed.
    pub fn execute(&self, context: &'static str, sql: &str, params: &[ParameterValue]) -> DbResult<u64> {
        self.conn.execute(sql, params).map_err(|e| DbError::new(context, e))
    }

    /// The `count` column of the one row `sql` returns.
    pub fn count(&self, context: &'static str, sql: &str, params: &[ParameterValue]) -> DbResult<u64> {
        #[derive(serde::Deserialize)]
        struct Count {
            count: u64,
        }
        Ok(self.row::<Count>(context, sql, params)?.count)
    }
}

/// The order [`Db::rows_in_order`] aggregates in: the statement's own numbering of its rows.
pub const ORDERED: &str = " ORDER BY t.ord";

/// `sql` as one row holding its rows as a JSON array of objects keyed by column name (`[]` when
/// it returns none), aggregated in `order` ([`ORDERED`], or empty for none). A CTE rather than a
/// subquery, so that an `INSERT ... RETURNING` can be wrapped too. Postgres allows an
/// `INSERT`/`UPDATE`/`DELETE` inside a `WITH` only at the top level, so a statement read this way
/// keeps its own `WITH` to `SELECT`s.
/// The statement goes on lines of its own: a file's last line may be a comment.
pub fn as_json_rows(sql: &str, order: &str) -> String {
    format!("WITH t AS (\n{sql}\n) SELECT coalesce(json_agg(t{order}), '[]'::json)::text FROM t")
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spin_4s_streamed_query_errors_keep_their_sqlstate() {
        // As Spin 4.0.2 passed on a uuid Postgres could not read (tests/tenants.rs found it).
        let text = r#"Error::QueryFailed(QueryError::DbError(DbError { as-text: "Error { kind: Db, cause: Some(DbError { severity: \"ERROR\", code: SqlState(E22P02), message: \"invalid input syntax for type uuid\" }) }", severity: "ERROR", code: "22P02", message: "invalid input syntax for type uuid: \"not-a-uuid\"" }))"#;
        let e = DbError::new("redrive", PgError::Other(text.to_owned()));
        assert!(e.is_about_the_data(), "{e}");
        assert_eq!(sqlstate_in("code: \"08006\", connection closed").as_deref(), Some("08006"));
        assert_eq!(sqlstate_in("connection refused"), None);
        assert_eq!(sqlstate_in("code: \"22\""), None);
    }

    #[test]
    fn a_lost_host_statement_is_the_poolers_doing() {
        assert!(behind_a_transaction_pooler("26000", "prepared statement \"s13592\" does not exist"));
        assert!(behind_a_transaction_pooler("26000", "prepared statement \"s0\" does not exist"));
        // Another statement name, another SQLSTATE, another message: not ours to explain.
        assert!(!behind_a_transaction_pooler("26000", "prepared statement \"my_stmt\" does not exist"));
        assert!(!behind_a_transaction_pooler("26000", "prepared statement \"s\" does not exist"));
        // Two replicas behind one pooler: a name taken, or another replica's statement.
        assert!(behind_a_transaction_pooler("42P05", "prepared statement \"s1\" already exists"));
        assert!(behind_a_transaction_pooler(
            "08P01",
            "bind message supplies 1 parameters, but prepared statement \"s7\" requires 3"
        ));
        assert!(!behind_a_transaction_pooler("42P05", "prepared statement \"mine\" already exists"));
        assert!(!behind_a_transaction_pooler("08P01", "invalid message format"));
        assert!(!behind_a_transaction_pooler("42P05", "prepared statement \"s1\" does not exist"));
        // A bind that reached another replica's statement of the same name, unnamed in the error.
        assert!(behind_a_transaction_pooler("22P03", "incorrect binary data format in bind parameter 1"));
        assert!(behind_a_transaction_pooler(
            "08P01",
            "bind message has 2 result formats but query has 1 columns"
        ));
        assert!(!behind_a_transaction_pooler("22P03", "invalid input syntax for type integer"));
        assert!(!behind_a_transaction_pooler("26000", "cursor \"s1\" does not exist"));
    }
}
