//! The front door's statements on `whatsapp_webhook_logs` (in `sql/`).

use serde::Deserialize;
use serde_json::Value;
use spin_sdk::pg4::ParameterValue;

use crate::db::{str, Db, DbResult};

const STORE_WEBHOOK: &str = include_str!("sql/store_webhook.sql");
const MARK_WEBHOOK_PROCESSED: &str = include_str!("sql/mark_webhook_processed.sql");

/// A stored webhook's id, as text.
#[derive(Deserialize)]
pub struct Stored {
    pub id: String,
}

/// `None` when Meta sent these exact bytes before.
pub fn insert(
    db: &Db,
    payload: &Value,
    raw: &str,
    event_type: Option<&str>,
    waba_id: Option<&str>,
) -> DbResult<Option<Stored>> {
    let params = [
        ParameterValue::Jsonb(payload.to_string().into_bytes()),
        str(raw),
        event_type.map(str).into(),
        waba_id.map(str).into(),
    ];
    let stored: Vec<Stored> = db.rows("store webhook", STORE_WEBHOOK, &params)?;
    Ok(stored.into_iter().next())
}

pub fn mark_processed(db: &Db, id: &str) -> DbResult<()> {
    db.execute("mark webhook processed", MARK_WEBHOOK_PROCESSED, &[str(id)])?;
    Ok(())
}
