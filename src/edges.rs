//! The stores a request or a run holds: Postgres and Redis, each opened once at the most, when
//! first needed, through the handle the door made. Nothing below the doors opens a connection:
//! whatever a route or a run reads and writes goes through one [`Edges`].

use std::cell::OnceCell;

use crate::db::{Db, DbError};
use crate::redis::{Redis, RedisError};

pub struct Edges {
    database_url: Option<String>,
    redis_url: String,
    db: OnceCell<Db>,
    redis: OnceCell<Redis>,
}

impl Edges {
    /// The stores at these addresses; `database_url` `None` for a route that reads Redis alone
    /// (the health check's status).
    pub fn new(database_url: Option<&str>, redis_url: &str) -> Self {
        Self {
            database_url: database_url.map(str::to_owned),
            redis_url: redis_url.to_owned(),
            db: OnceCell::new(),
            redis: OnceCell::new(),
        }
    }

    pub fn db(&self) -> Result<&Db, DbError> {
        if let Some(db) = self.db.get() {
            return Ok(db);
        }
        let url =
            self.database_url.as_deref().ok_or_else(|| DbError::decode("connect", "no database_url read"))?;
        let db = Db::open(url)?;
        Ok(self.db.get_or_init(|| db))
    }

    pub fn redis(&self) -> Result<&Redis, RedisError> {
        if let Some(redis) = self.redis.get() {
            return Ok(redis);
        }
        let redis = Redis::open(&self.redis_url)?;
        Ok(self.redis.get_or_init(|| redis))
    }
}
