//! Rows as WhaTrack writes them, for the jobs to find.

use uuid::Uuid;
use whatrack_jobs::crypto;

use super::KEY;

/// A connection and (optionally) its config row.
pub struct Connection<'a> {
    pub status: &'a str,
    pub phone_number_id: Option<&'a str>,
    pub waba_id: Option<&'a str>,
    pub health_status: &'a str,
    /// Hours since the last check; `None` for never checked.
    pub checked_hours_ago: Option<i32>,
    /// What goes into `"accessToken"`: `None` for no config row at all.
    pub stored_token: Option<String>,
}

impl Default for Connection<'_> {
    fn default() -> Self {
        Self {
            status: "active",
            phone_number_id: Some("1001"),
            waba_id: Some("2001"),
            health_status: "healthy",
            checked_hours_ago: None,
            stored_token: Some(encrypt("EAAB-default-token")),
        }
    }
}

/// A token stored the way WhaTrack's Node code stores it (`v1:iv:tag:ciphertext`).
pub fn encrypt(token: &str) -> String {
    let iv: [u8; 16] = rand_iv();
    crypto::encrypt(KEY, Some("v1"), &iv, token)
}

/// The legacy three-part form (`iv:tag:ciphertext`).
pub fn encrypt_legacy(token: &str) -> String {
    crypto::encrypt(KEY, None, &rand_iv(), token)
}

fn rand_iv() -> [u8; 16] {
    *Uuid::new_v4().as_bytes()
}

pub async fn connection(db: &tokio_postgres::Client, c: Connection<'_>) -> Uuid {
    let org = Uuid::new_v4();
    let id: Uuid = db
        .query_one(
            "INSERT INTO whatsapp_connections (\"organizationId\", \"wabaId\", \"phoneNumberId\", status, \"healthStatus\", \
                 \"lastHealthCheckAt\", \"updatedAt\") \
             VALUES ($1, $2, $3, $4, $5, \
                 CASE WHEN $6::int IS NULL THEN NULL ELSE timezone('UTC', now()) - make_interval(hours => $6::int) END, \
                 timezone('UTC', now()) - interval '1 day') RETURNING id",
            &[&org, &c.waba_id, &c.phone_number_id, &c.status, &c.health_status, &c.checked_hours_ago],
        )
        .await
        .unwrap()
        .get(0);
    if let Some(token) = c.stored_token {
        db.execute(
            "INSERT INTO whatsapp_configs (\"organizationId\", \"connectionId\", \"wabaId\", \"accessToken\", status, \"updatedAt\") \
             VALUES ($1, $2, $3, $4, 'connected', timezone('UTC', now()))",
            &[&org, &id, &c.waba_id, &token],
        )
        .await
        .unwrap();
    }
    id
}

/// A row of `whatsapp_webhook_logs` as WhaTrack writes it when processing failed.
pub struct Webhook<'a> {
    pub payload: serde_json::Value,
    pub raw_body: Option<&'a str>,
    pub signature_valid: Option<bool>,
    pub processed: bool,
    pub created_minutes_ago: i32,
    pub retry_count: i32,
    pub dead: bool,
}

impl Default for Webhook<'_> {
    fn default() -> Self {
        Self {
            payload: serde_json::json!({"object":"whatsapp_business_account","entry":[{"id":"2001","changes":[{"field":"messages","value":{"messages":[{"id":"wamid.1","text":{"body":"hi"}}]}}]}]}),
            raw_body: None,
            signature_valid: Some(true),
            processed: false,
            created_minutes_ago: 10,
            retry_count: 0,
            dead: false,
        }
    }
}

/// `n` due webhooks (not processed, signed, never retried) in one statement, row `i` of the
/// organization `tenants[i % len]` (`None`: a row without one), the first `minutes_ago` old and
/// each 1 ms younger than the one before, with `tag` in its payload.
pub async fn tenant_webhooks(
    db: &tokio_postgres::Client,
    tenants: &[Option<Uuid>],
    n: i64,
    minutes_ago: i32,
    tag: &str,
) {
    db.execute(
        "INSERT INTO whatsapp_webhook_logs (\"organizationId\", payload, \"eventType\", processed, \"signatureValid\", \
             \"processingError\", \"retryCount\", \"createdAt\") \
         SELECT ($1::uuid[])[1 + i % cardinality($1::uuid[])], \
             jsonb_build_object('object', 'whatsapp_business_account', 'tag', $2::text, 'n', i), 'messages', \
             false, true, 'processing failed', 0, \
             timezone('UTC', now()) - make_interval(mins => $3) + make_interval(secs => i / 1000.0) \
         FROM generate_series(0, $4::bigint - 1) i",
        &[&tenants, &tag, &minutes_ago, &n],
    )
    .await
    .unwrap();
}

pub async fn webhook(db: &tokio_postgres::Client, w: Webhook<'_>) -> Uuid {
    db.query_one(
        "INSERT INTO whatsapp_webhook_logs (\"organizationId\", payload, \"eventType\", processed, \"signatureValid\", \
             \"processingError\", \"retryCount\", \"rawBody\", \"createdAt\", \"deadAt\") \
         VALUES (gen_random_uuid(), $1, 'messages', $2, $3, 'processing failed', $4, $5, \
             timezone('UTC', now()) - make_interval(mins => $6), \
             CASE WHEN $7 THEN timezone('UTC', now()) ELSE NULL END) RETURNING id",
        &[&w.payload, &w.processed, &w.signature_valid, &w.retry_count, &w.raw_body, &w.created_minutes_ago, &w.dead],
    )
    .await
    .unwrap()
    .get(0)
}
