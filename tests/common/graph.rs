//! A fake Meta Graph API: answers `debug_token` by input token and node reads by node id, the
//! way Meta does (bodies, status codes, error objects), with scripted exceptions.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde_json::json;

use super::fake::{Canned, FakeHttp, Recorded};

pub fn healthy_phone() -> Canned {
    Canned::json(
        200,
        json!({"id":"x","status":"CONNECTED","quality_rating":"GREEN",
               "health_status":{"can_send_message":"AVAILABLE","entities":[{"entity_type":"PHONE_NUMBER","id":"x","can_send_message":"AVAILABLE"}]}}),
    )
}

pub fn valid_token(expires_at: i64) -> Canned {
    Canned::json(
        200,
        json!({"data":{"app_id":"123","type":"SYSTEM_USER","application":"WhaTrack","is_valid":true,"expires_at":expires_at,
               "scopes":["whatsapp_business_messaging","whatsapp_business_management","business_management"]}}),
    )
}

pub fn graph_error(
    status: u16,
    code: i64,
    subcode: Option<i64>,
    kind: &str,
    message: &str,
    transient: bool,
) -> Canned {
    let mut error = json!({"message": message, "type": kind, "code": code, "is_transient": transient, "fbtrace_id": "AbCdEf"});
    if let Some(sub) = subcode {
        error["error_subcode"] = json!(sub);
    }
    Canned::json(status, json!({ "error": error }))
}

#[derive(Clone, Default)]
pub struct Script {
    nodes: Arc<Mutex<HashMap<String, Canned>>>,
    tokens: Arc<Mutex<HashMap<String, Canned>>>,
    /// The app access token (`<app id>|<app secret>`) `debug_token` accepts; any when unset.
    app_token: Arc<Mutex<Option<String>>>,
}

/// What Meta answers `debug_token` asked with an app token whose secret is wrong.
pub fn bad_app_token() -> Canned {
    graph_error(400, 190, None, "OAuthException", "Invalid OAuth access token signature.", false)
}

impl Script {
    pub fn app_token(&self, app_id: &str, app_secret: &str) -> &Self {
        *self.app_token.lock().unwrap() = Some(format!("{app_id}|{app_secret}"));
        self
    }

    pub fn node(&self, id: &str, reply: Canned) -> &Self {
        self.nodes.lock().unwrap().insert(id.into(), reply);
        self
    }

    pub fn token(&self, token: &str, reply: Canned) -> &Self {
        self.tokens.lock().unwrap().insert(token.into(), reply);
        self
    }

    pub fn answer(&self, req: &Recorded) -> Canned {
        let path = req.target.split('?').next().unwrap_or_default();
        if path.ends_with("/debug_token") {
            let expected = self.app_token.lock().unwrap().clone();
            let presented = req.header("authorization").and_then(|a| a.strip_prefix("Bearer "));
            if expected.is_some_and(|t| presented != Some(t.as_str())) {
                return bad_app_token();
            }
            let token = req
                .target
                .split("input_token=")
                .nth(1)
                .unwrap_or_default()
                .split('&')
                .next()
                .unwrap_or_default();
            return self.tokens.lock().unwrap().get(token).cloned().unwrap_or_else(|| valid_token(0));
        }
        let id = path.rsplit('/').next().unwrap_or_default();
        self.nodes.lock().unwrap().get(id).cloned().unwrap_or_else(healthy_phone)
    }
}

pub async fn start(script: &Script) -> FakeHttp {
    let script = script.clone();
    FakeHttp::start(move |req| script.answer(req)).await
}
