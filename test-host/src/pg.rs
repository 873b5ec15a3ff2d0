// The error type is the WIT `error` variant Spin returns, large because `db-error` is.
#![allow(clippy::result_large_err)]

//! `spin:postgres/postgres@4.0.0` over tokio-postgres, converting values as Spin 3.5 does, and
//! refusing what Spin 4.0.2 cannot do: a `query` whose result has no rows traps (Spin 4 never
//! answers it).
//!
//! As in Spin, sessions come from a per-address pool: a `connection` resource holds one for its
//! whole life (so BEGIN/COMMIT across calls is one transaction), and gives it back cleaned by
//! `DISCARD ALL` when dropped. A session that cannot be cleaned (a transaction left open, a
//! broken link) is closed instead.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::BytesMut;
use chrono::{Datelike, NaiveDate, NaiveDateTime, NaiveTime, Timelike};
use tokio_postgres::types::{to_sql_checked, IsNull, ToSql, Type};
use tokio_postgres::{Client, NoTls, Row};
use wasmtime::component::Resource;

use crate::bindings::spin::postgres::postgres::{
    self as pg, Column, DbDataType, DbError, DbValue, Error, ParameterValue, QueryError, RowSet,
};
use crate::State;

pub struct PgConnection {
    address: String,
    client: Arc<Client>,
}

/// Idle sessions by address, shared by the instances of one app.
#[derive(Default)]
pub(crate) struct PgPool(std::sync::Mutex<HashMap<String, Vec<Arc<Client>>>>);

impl PgPool {
    fn take(&self, address: &str) -> Option<Arc<Client>> {
        let mut idle = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let clients = idle.get_mut(address)?;
        while let Some(client) = clients.pop() {
            if !client.is_closed() {
                return Some(client);
            }
        }
        None
    }

    fn put(&self, address: String, client: Arc<Client>) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).entry(address).or_default().push(client);
    }
}

impl pg::Host for State {}

impl pg::HostConnection for State {
    async fn open(&mut self, address: String) -> wasmtime::Result<Result<Resource<PgConnection>, Error>> {
        match self.app.allowed.check(&address) {
            Ok(true) => {}
            Ok(false) => {
                return Ok(Err(Error::ConnectionFailed(format!("address {address} is not permitted"))))
            }
            Err(broken) => return Ok(Err(Error::ConnectionFailed(broken))),
        }
        let client = match self.app.pg_pool.take(&address) {
            Some(client) => client,
            None => match tokio_postgres::connect(&address, NoTls).await {
                Ok((client, connection)) => {
                    tokio::spawn(async move {
                        let _ = connection.await;
                    });
                    Arc::new(client)
                }
                Err(e) => return Ok(Err(Error::ConnectionFailed(e.to_string()))),
            },
        };
        Ok(Ok(self.table.push(PgConnection { address, client })?))
    }

    async fn query(
        &mut self,
        conn: Resource<PgConnection>,
        statement: String,
        params: Vec<ParameterValue>,
    ) -> wasmtime::Result<Result<RowSet, Error>> {
        let client = self.table.get(&conn)?.client.clone();
        Ok(match to_sql_params(params) {
            Ok(params) => match client.query(&statement, &as_refs(&params)).await {
                // Spin 4's host waits for a first row to learn the columns, and never answers
                // a query that has none: a trap here, so that the suite fails where Spin hangs.
                Ok(rows) if rows.is_empty() => {
                    return Err(wasmtime::format_err!(
                        "a Postgres query returned no rows, which Spin 4 never answers \
                         (send row-returning statements through db::Db::rows): {statement}"
                    ))
                }
                Ok(rows) => row_set(&rows),
                Err(e) => Err(query_failed(e)),
            },
            Err(e) => Err(e),
        })
    }

    async fn execute(
        &mut self,
        conn: Resource<PgConnection>,
        statement: String,
        params: Vec<ParameterValue>,
    ) -> wasmtime::Result<Result<u64, Error>> {
        let client = self.table.get(&conn)?.client.clone();
        Ok(match to_sql_params(params) {
            Ok(params) => client.execute(&statement, &as_refs(&params)).await.map_err(query_failed),
            Err(e) => Err(e),
        })
    }

    async fn drop(&mut self, conn: Resource<PgConnection>) -> wasmtime::Result<()> {
        let PgConnection { address, client } = self.table.delete(conn)?;
        if client.batch_execute("DISCARD ALL").await.is_ok() {
            self.app.pg_pool.put(address, client);
        }
        Ok(())
    }
}

fn query_failed(e: tokio_postgres::Error) -> Error {
    match e.as_db_error() {
        Some(db) => Error::QueryFailed(QueryError::DbError(DbError {
            as_text: e.to_string(),
            severity: db.severity().to_owned(),
            code: db.code().code().to_owned(),
            message: db.message().to_owned(),
            detail: db.detail().map(str::to_owned),
            extras: vec![],
        })),
        None if e.is_closed() => Error::ConnectionFailed(e.to_string()),
        None => Error::QueryFailed(QueryError::Text(format!("{e:?}"))),
    }
}

type Param = Box<dyn ToSql + Send + Sync>;

fn as_refs(params: &[Param]) -> Vec<&(dyn ToSql + Sync)> {
    params.iter().map(|b| b.as_ref() as &(dyn ToSql + Sync)).collect()
}

fn to_sql_params(params: Vec<ParameterValue>) -> Result<Vec<Param>, Error> {
    params.into_iter().map(to_sql).collect()
}

fn to_sql(p: ParameterValue) -> Result<Param, Error> {
    Ok(match p {
        ParameterValue::Boolean(v) => Box::new(v),
        ParameterValue::Int8(v) => Box::new(v),
        ParameterValue::Int16(v) => Box::new(v),
        ParameterValue::Int32(v) => Box::new(v),
        ParameterValue::Int64(v) => Box::new(v),
        ParameterValue::Floating32(v) => Box::new(v),
        ParameterValue::Floating64(v) => Box::new(v),
        ParameterValue::Str(v) => Box::new(v),
        ParameterValue::Binary(v) => Box::new(v),
        ParameterValue::Date((y, m, d)) => {
            Box::new(NaiveDate::from_ymd_opt(y, m.into(), d.into()).ok_or_else(|| bad("invalid date"))?)
        }
        ParameterValue::Time((h, m, s, ns)) => Box::new(
            NaiveTime::from_hms_nano_opt(h.into(), m.into(), s.into(), ns)
                .ok_or_else(|| bad("invalid time"))?,
        ),
        ParameterValue::Datetime((y, mo, d, h, mi, s, ns)) => {
            let date =
                NaiveDate::from_ymd_opt(y, mo.into(), d.into()).ok_or_else(|| bad("invalid datetime"))?;
            let time = NaiveTime::from_hms_nano_opt(h.into(), mi.into(), s.into(), ns)
                .ok_or_else(|| bad("invalid datetime"))?;
            Box::new(NaiveDateTime::new(date, time))
        }
        ParameterValue::Timestamp(secs) => {
            Box::new(chrono::DateTime::from_timestamp(secs, 0).ok_or_else(|| bad("invalid timestamp"))?)
        }
        ParameterValue::Uuid(s) => {
            Box::new(uuid::Uuid::parse_str(&s).map_err(|e| bad(&format!("invalid uuid: {e}")))?)
        }
        ParameterValue::Jsonb(bytes) => Box::new(
            serde_json::from_slice::<serde_json::Value>(&bytes)
                .map_err(|e| bad(&format!("invalid jsonb: {e}")))?,
        ),
        ParameterValue::Decimal(s) => {
            Box::new(s.parse::<rust_decimal::Decimal>().map_err(|e| bad(&format!("invalid decimal: {e}")))?)
        }
        ParameterValue::ArrayInt32(v) => Box::new(v),
        ParameterValue::ArrayInt64(v) => Box::new(v),
        ParameterValue::ArrayStr(v) => Box::new(v),
        ParameterValue::ArrayDecimal(v) => Box::new(
            v.into_iter()
                .map(|d| d.map(|s| s.parse::<rust_decimal::Decimal>()).transpose())
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| bad(&format!("invalid decimal: {e}")))?,
        ),
        ParameterValue::DbNull => Box::new(PgNull),
        ParameterValue::RangeInt32(_)
        | ParameterValue::RangeInt64(_)
        | ParameterValue::RangeDecimal(_)
        | ParameterValue::Interval(_) => {
            return Err(bad("range and interval parameters are not supported by the test host"))
        }
    })
}

fn bad(msg: &str) -> Error {
    Error::BadParameter(msg.to_owned())
}

/// NULL for a parameter of any type.
#[derive(Debug)]
struct PgNull;

impl ToSql for PgNull {
    fn to_sql(&self, _: &Type, _: &mut BytesMut) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        Ok(IsNull::Yes)
    }
    fn accepts(_: &Type) -> bool {
        true
    }
    to_sql_checked!();
}

fn row_set(rows: &[Row]) -> Result<RowSet, Error> {
    let Some(first) = rows.first() else {
        return Ok(RowSet { columns: vec![], rows: vec![] });
    };
    let columns = first
        .columns()
        .iter()
        .map(|c| Column { name: c.name().to_owned(), data_type: data_type(c.type_()) })
        .collect();
    let rows = rows
        .iter()
        .map(|row| (0..row.len()).map(|i| db_value(row, i)).collect::<Result<Vec<_>, _>>())
        .collect::<Result<Vec<_>, _>>()?;
    Ok(RowSet { columns, rows })
}

fn data_type(t: &Type) -> DbDataType {
    match *t {
        Type::BOOL => DbDataType::Boolean,
        Type::CHAR => DbDataType::Int8,
        Type::INT2 => DbDataType::Int16,
        Type::INT4 => DbDataType::Int32,
        Type::INT8 => DbDataType::Int64,
        Type::FLOAT4 => DbDataType::Floating32,
        Type::FLOAT8 => DbDataType::Floating64,
        Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME => DbDataType::Str,
        Type::BYTEA => DbDataType::Binary,
        Type::DATE => DbDataType::Date,
        Type::TIME => DbDataType::Time,
        Type::TIMESTAMP | Type::TIMESTAMPTZ => DbDataType::Datetime,
        Type::UUID => DbDataType::Uuid,
        Type::JSONB => DbDataType::Jsonb,
        Type::NUMERIC => DbDataType::Decimal,
        Type::INT4_ARRAY => DbDataType::ArrayInt32,
        Type::INT8_ARRAY => DbDataType::ArrayInt64,
        Type::TEXT_ARRAY | Type::VARCHAR_ARRAY => DbDataType::ArrayStr,
        ref other => DbDataType::Other(other.to_string()),
    }
}

fn db_value(row: &Row, i: usize) -> Result<DbValue, Error> {
    fn get<'a, T: tokio_postgres::types::FromSql<'a>>(row: &'a Row, i: usize) -> Result<Option<T>, Error> {
        row.try_get(i).map_err(|e| Error::ValueConversionFailed(e.to_string()))
    }
    let t = row.columns()[i].type_().clone();
    let value = match t {
        Type::BOOL => get::<bool>(row, i)?.map(DbValue::Boolean),
        Type::CHAR => get::<i8>(row, i)?.map(DbValue::Int8),
        Type::INT2 => get::<i16>(row, i)?.map(DbValue::Int16),
        Type::INT4 => get::<i32>(row, i)?.map(DbValue::Int32),
        Type::INT8 => get::<i64>(row, i)?.map(DbValue::Int64),
        Type::FLOAT4 => get::<f32>(row, i)?.map(DbValue::Floating32),
        Type::FLOAT8 => get::<f64>(row, i)?.map(DbValue::Floating64),
        Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME => get::<String>(row, i)?.map(DbValue::Str),
        Type::BYTEA => get::<Vec<u8>>(row, i)?.map(DbValue::Binary),
        Type::DATE => {
            get::<NaiveDate>(row, i)?.map(|d| DbValue::Date((d.year(), d.month() as u8, d.day() as u8)))
        }
        Type::TIME => get::<NaiveTime>(row, i)?
            .map(|t| DbValue::Time((t.hour() as u8, t.minute() as u8, t.second() as u8, t.nanosecond()))),
        Type::TIMESTAMP => get::<NaiveDateTime>(row, i)?.map(datetime),
        Type::TIMESTAMPTZ => get::<chrono::DateTime<chrono::Utc>>(row, i)?.map(|d| datetime(d.naive_utc())),
        Type::UUID => get::<uuid::Uuid>(row, i)?.map(|u| DbValue::Uuid(u.to_string())),
        Type::JSONB => get::<serde_json::Value>(row, i)?.map(|v| DbValue::Jsonb(v.to_string().into_bytes())),
        Type::NUMERIC => get::<rust_decimal::Decimal>(row, i)?.map(|d| DbValue::Decimal(d.to_string())),
        Type::INT4_ARRAY => get::<Vec<Option<i32>>>(row, i)?.map(DbValue::ArrayInt32),
        Type::INT8_ARRAY => get::<Vec<Option<i64>>>(row, i)?.map(DbValue::ArrayInt64),
        Type::TEXT_ARRAY | Type::VARCHAR_ARRAY => get::<Vec<Option<String>>>(row, i)?.map(DbValue::ArrayStr),
        _ => Some(DbValue::Unsupported(Vec::new())),
    };
    Ok(value.unwrap_or(DbValue::DbNull))
}

fn datetime(d: NaiveDateTime) -> DbValue {
    DbValue::Datetime((
        d.year(),
        d.month() as u8,
        d.day() as u8,
        d.hour() as u8,
        d.minute() as u8,
        d.second() as u8,
        d.nanosecond(),
    ))
}
