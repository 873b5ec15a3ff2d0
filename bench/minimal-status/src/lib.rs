//! Answers every request with whether the health check's lock key exists: one variable read,
//! one Redis connection, one `EXISTS`, as the real status route does at the least.

use spin_sdk::http::{Request, Response};
use spin_sdk::http_component;
use spin_sdk::redis::{Connection, RedisParameter, RedisResult};

#[http_component]
fn handle(_req: Request) -> Response {
    match is_running() {
        Ok(running) => json(200, format!("{{\"isRunning\":{running}}}")),
        Err(e) => json(500, format!("{{\"error\":{e:?}}}")),
    }
}

fn is_running() -> Result<bool, String> {
    let url = spin_sdk::variables::get("redis_url").map_err(|e| e.to_string())?;
    let redis = Connection::open(&url).map_err(|e| e.to_string())?;
    let key = RedisParameter::Binary(b"job-lock:whatsapp-health-check".to_vec());
    match redis.execute("EXISTS", &[key]).map_err(|e| e.to_string())?.as_slice() {
        [RedisResult::Int64(n)] => Ok(*n > 0),
        other => Err(format!("unexpected EXISTS reply {other:?}")),
    }
}

fn json(status: u16, body: String) -> Response {
    Response::builder().status(status).header("content-type", "application/json").body(body).build()
}
