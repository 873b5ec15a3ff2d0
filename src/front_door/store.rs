//! The front door's statements on `whatsapp_webhook_logs`.

use serde::Deserialize;
use serde_json::Value;
use spin_sdk::pg4::ParameterValue;

use crate::db::{now_utc, str, Db, DbResult};

/// One row, `processed = false` and `"signatureValid" = true`, with the raw bytes and their
/// hash; the organization found through the WABA when WhaTrack knows it. A body stored before
/// (the same hash) inserts nothing and returns no row.
const INSERT: &str = concat!(
    "INSERT INTO whatsapp_webhook_logs (\"organizationId\", payload, \"eventType\", processed, \"signatureValid\", \
         \"retryCount\", \"rawBody\", \"rawBodyHash\", \"createdAt\") \
     SELECT (SELECT c.\"organizationId\" FROM whatsapp_connections c WHERE c.\"wabaId\" = $4 LIMIT 1), \
         $1::jsonb, $3, false, true, 0, $2, encode(sha256(convert_to($2, 'UTF8')), 'hex'), ",
    now_utc!(),
    " ON CONFLICT (\"rawBodyHash\") WHERE \"rawBodyHash\" IS NOT NULL DO NOTHING \
     RETURNING id::text AS text, pg_typeof(id) = 'uuid'::regtype AS uuid"
);

/// Delivered by the immediate forward. `$1` in the key's own type.
const MARK_PROCESSED: &str = concat!(
    "UPDATE whatsapp_webhook_logs SET processed = true, \"processedAt\" = ",
    now_utc!(),
    ", \"processingError\" = NULL WHERE id = $1"
);

/// A stored row's id, as text, and whether the key is a uuid (WhaTrack's is) to bind it back in
/// its own type.
#[derive(Deserialize)]
pub struct Key {
    pub text: String,
    uuid: bool,
}

pub fn insert(
    db: &Db,
    payload: &Value,
    raw: &str,
    event_type: Option<&str>,
    waba_id: Option<&str>,
) -> DbResult<Option<Key>> {
    let params = [
        ParameterValue::Jsonb(payload.to_string().into_bytes()),
        str(raw),
        event_type.map(str).into(),
        waba_id.map(str).into(),
    ];
    let stored: Vec<Key> = db.rows("store webhook", INSERT, &params)?;
    Ok(stored.into_iter().next())
}

pub fn mark_processed(db: &Db, key: &Key) -> DbResult<()> {
    let id = if key.uuid { ParameterValue::Uuid(key.text.clone()) } else { str(&key.text) };
    db.execute("mark webhook processed", MARK_PROCESSED, &[id])?;
    Ok(())
}
