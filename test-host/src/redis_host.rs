//! `fermyon:spin/redis@2.0.0` over the `redis` crate, with Spin 3.5's reply flattening.

use redis::aio::MultiplexedConnection;
use redis::Value;
use wasmtime::component::Resource;

use crate::bindings::fermyon::spin::redis::{self as spin_redis, Error, RedisParameter, RedisResult};
use crate::State;

pub struct RedisConnection {
    conn: MultiplexedConnection,
}

impl spin_redis::Host for State {}

impl State {
    fn redis(&self, conn: &Resource<RedisConnection>) -> wasmtime::Result<MultiplexedConnection> {
        Ok(self.table.get(conn)?.conn.clone())
    }
}

async fn run<T: redis::FromRedisValue>(mut conn: MultiplexedConnection, cmd: redis::Cmd) -> Result<T, Error> {
    cmd.query_async(&mut conn).await.map_err(|e| Error::Other(e.to_string()))
}

impl spin_redis::HostConnection for State {
    async fn open(&mut self, address: String) -> wasmtime::Result<Result<Resource<RedisConnection>, Error>> {
        match self.app.allowed.check(&address) {
            Ok(true) => {}
            Ok(false) => return Ok(Err(Error::InvalidAddress)),
            Err(broken) => return Ok(Err(Error::Other(broken))),
        }
        let client = match redis::Client::open(address.as_str()) {
            Ok(c) => c,
            Err(_) => return Ok(Err(Error::InvalidAddress)),
        };
        match client.get_multiplexed_async_connection().await {
            Ok(conn) => Ok(Ok(self.table.push(RedisConnection { conn })?)),
            Err(e) => Ok(Err(Error::Other(e.to_string()))),
        }
    }

    async fn publish(
        &mut self,
        c: Resource<RedisConnection>,
        channel: String,
        payload: Vec<u8>,
    ) -> wasmtime::Result<Result<(), Error>> {
        Ok(run::<i64>(self.redis(&c)?, redis::cmd("PUBLISH").arg(channel).arg(payload).clone())
            .await
            .map(|_| ()))
    }

    async fn get(
        &mut self,
        c: Resource<RedisConnection>,
        key: String,
    ) -> wasmtime::Result<Result<Option<Vec<u8>>, Error>> {
        Ok(run(self.redis(&c)?, redis::cmd("GET").arg(key).clone()).await)
    }

    async fn set(
        &mut self,
        c: Resource<RedisConnection>,
        key: String,
        value: Vec<u8>,
    ) -> wasmtime::Result<Result<(), Error>> {
        Ok(run::<()>(self.redis(&c)?, redis::cmd("SET").arg(key).arg(value).clone()).await)
    }

    async fn incr(
        &mut self,
        c: Resource<RedisConnection>,
        key: String,
    ) -> wasmtime::Result<Result<i64, Error>> {
        Ok(run(self.redis(&c)?, redis::cmd("INCR").arg(key).clone()).await)
    }

    async fn del(
        &mut self,
        c: Resource<RedisConnection>,
        keys: Vec<String>,
    ) -> wasmtime::Result<Result<u32, Error>> {
        Ok(run(self.redis(&c)?, redis::cmd("DEL").arg(keys).clone()).await)
    }

    async fn sadd(
        &mut self,
        c: Resource<RedisConnection>,
        key: String,
        values: Vec<String>,
    ) -> wasmtime::Result<Result<u32, Error>> {
        Ok(run(self.redis(&c)?, redis::cmd("SADD").arg(key).arg(values).clone()).await)
    }

    async fn smembers(
        &mut self,
        c: Resource<RedisConnection>,
        key: String,
    ) -> wasmtime::Result<Result<Vec<String>, Error>> {
        Ok(run(self.redis(&c)?, redis::cmd("SMEMBERS").arg(key).clone()).await)
    }

    async fn srem(
        &mut self,
        c: Resource<RedisConnection>,
        key: String,
        values: Vec<String>,
    ) -> wasmtime::Result<Result<u32, Error>> {
        Ok(run(self.redis(&c)?, redis::cmd("SREM").arg(key).arg(values).clone()).await)
    }

    async fn execute(
        &mut self,
        c: Resource<RedisConnection>,
        command: String,
        arguments: Vec<RedisParameter>,
    ) -> wasmtime::Result<Result<Vec<RedisResult>, Error>> {
        let mut cmd = redis::cmd(&command);
        for arg in arguments {
            match arg {
                RedisParameter::Int64(n) => cmd.arg(n),
                RedisParameter::Binary(b) => cmd.arg(b),
            };
        }
        let value: Value = match run(self.redis(&c)?, cmd).await {
            Ok(v) => v,
            Err(e) => return Ok(Err(e)),
        };
        let mut out = Vec::new();
        Ok(flatten(value, &mut out).map(|()| out))
    }

    async fn drop(&mut self, c: Resource<RedisConnection>) -> wasmtime::Result<()> {
        self.table.delete(c)?;
        Ok(())
    }
}

/// Spin's reply mapping: scalars map one to one, arrays and sets are appended element by
/// element, and maps, pushes, verbatim strings and error replies are an `other` error.
fn flatten(value: Value, out: &mut Vec<RedisResult>) -> Result<(), Error> {
    match value {
        Value::Nil => out.push(RedisResult::Nil),
        Value::Int(n) => out.push(RedisResult::Int64(n)),
        Value::Boolean(b) => out.push(RedisResult::Int64(b.into())),
        Value::BulkString(b) => out.push(RedisResult::Binary(b)),
        Value::Double(d) => out.push(RedisResult::Binary(d.to_string().into_bytes())),
        Value::BigNumber(n) => out.push(RedisResult::Binary(n.to_string().into_bytes())),
        Value::SimpleString(s) => out.push(RedisResult::Status(s)),
        Value::Okay => out.push(RedisResult::Status("OK".into())),
        Value::Array(items) | Value::Set(items) => {
            for item in items {
                flatten(item, out)?;
            }
        }
        other => return Err(Error::Other(format!("unsupported Redis reply: {other:?}"))),
    }
    Ok(())
}
