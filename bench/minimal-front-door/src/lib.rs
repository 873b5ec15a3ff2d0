//! A webhook front door with nothing but the work: Meta's signature checked over the raw bytes,
//! the row stored with the real front door's own statement, the body forwarded to the
//! processor, the row marked processed, 200. No settings but four variables, no body limit, no
//! outbound allowance, no logs.

use hmac::{Hmac, Mac};
use sha2::Sha256;
use spin_sdk::http::{IncomingRequest, Method, Request, Response};
use spin_sdk::http_component;
use spin_sdk::pg4::{Connection, DbValue, ParameterValue};

const STORE: &str = include_str!("../../../src/jobs/webhook_retry/queue/sql/store_webhook.sql");
const MARK: &str = include_str!("../../../src/jobs/webhook_retry/queue/sql/mark_webhook_processed.sql");

#[http_component]
async fn handle(req: IncomingRequest) -> Response {
    match receive(req).await {
        Ok(()) => json(200, "{\"success\":true}".to_owned()),
        Err((status, e)) => json(status, format!("{{\"success\":false,\"error\":{e:?}}}")),
    }
}

async fn receive(req: IncomingRequest) -> Result<(), (u16, String)> {
    let signature = req.headers().get("x-hub-signature-256").into_iter().next();
    let body = req.into_body().await.map_err(|e| (400, e.to_string()))?;
    let var = |name| spin_sdk::variables::get(name).map_err(|e| (500, e.to_string()));
    let mut mac = Hmac::<Sha256>::new_from_slice(var("meta_app_secret")?.as_bytes()).map_err(|e| (500, e.to_string()))?;
    mac.update(&body);
    let expected = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
    if signature.as_deref() != Some(expected.as_bytes()) {
        return Err((401, "Invalid signature".into()));
    }
    let raw = String::from_utf8(body.clone()).map_err(|_| (400, "Body is not JSON".to_owned()))?;
    let db = Connection::open(&var("database_url")?).map_err(|e| (500, e.to_string()))?;
    let params = [ParameterValue::Jsonb(body.clone()), ParameterValue::Str(raw), ParameterValue::DbNull, ParameterValue::DbNull];
    let stored = db.query(STORE, &params).map_err(|e| (500, e.to_string()))?;
    let Some(DbValue::Str(id)) = stored.rows.first().and_then(|r| r.first()).cloned() else {
        return Ok(());
    };
    let forward = Request::builder()
        .method(Method::Post)
        .uri(var("webhook_processor_url")?)
        .header("content-type", "application/json")
        .header("x-hub-signature-256", expected)
        .header("x-webhook-log-id", id.clone())
        .header("x-webhook-retry-attempt", "0")
        .body(body)
        .build();
    let answer: Result<Response, _> = spin_sdk::http::send(forward).await;
    if answer.is_ok_and(|a| (200..300).contains(a.status())) {
        db.execute(MARK, &[ParameterValue::Str(id)]).map_err(|e| (500, e.to_string()))?;
    }
    Ok(())
}

fn json(status: u16, body: String) -> Response {
    Response::builder().status(status).header("content-type", "application/json").body(body).build()
}
