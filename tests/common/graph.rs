//! A fake Meta Graph API: answers `debug_token` by input token and node reads by node id, the
//! way Meta does (bodies, status codes, error objects), one call at a time or in Meta's batch
//! protocol, with scripted exceptions and Meta's limits (throttling codes, usage headers).
//!
//! The batch protocol, as Meta speaks it: `POST /{version}/` with a form body (`batch`, a JSON
//! array of `{"method","relative_url"}`; `include_headers`; `access_token`, the request's own
//! token, the token of operations that carry none); the request's own token checked before any
//! operation runs (a bad one refuses the whole batch with code 190); more than 50 operations
//! refused with HTTP 400, code 100; the answer an array in operation order of
//! `{"code":N,"headers":[{"name","value"}],"body":"<JSON as a string>"}` (headers only with
//! `include_headers=true`) or `null`, answered after the slowest operation (Meta runs them in
//! parallel) plus a per-operation cost. Usage headers come on the batch's answer and on each
//! operation's; a business's rising figures only on the operations about it.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};

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

/// What Meta answers `debug_token` asked with an app token whose secret is wrong.
pub fn bad_app_token() -> Canned {
    graph_error(400, 190, None, "OAuthException", "Invalid OAuth access token signature.", false)
}

/// Meta's answer to a call made once the app is over its limit.
pub fn app_throttled() -> Canned {
    graph_error(403, 4, None, "OAuthException", "(#4) Application request limit reached", true)
}

/// Meta's answer to a call about a WhatsApp Business Account over its limit.
pub fn business_throttled() -> Canned {
    graph_error(
        400,
        80007,
        None,
        "OAuthException",
        "(#80007) Rate limit hit for WhatsApp Business Account",
        true,
    )
}

/// What Meta answers a call made with a token it cannot use (revoked, or never issued).
pub fn invalid_token() -> Canned {
    graph_error(
        400,
        190,
        None,
        "OAuthException",
        "Invalid OAuth access token - Cannot parse access token",
        false,
    )
}

/// In a batch, Meta's `null`: no answer for that operation.
pub fn no_answer() -> Canned {
    Canned { status: 0, body: String::new(), headers: Vec::new(), delay: Duration::ZERO }
}

/// One Graph call as Meta received it, single or inside a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    /// `/{version}/{path}?{query}`, the operation's token parameter left out.
    pub target: String,
    /// The token the call was made with: its bearer, its own `access_token`, or the batch's.
    pub token: Option<String>,
    /// Which HTTP request carried it (0-based).
    pub request: usize,
}

/// Every Graph call in `requests`, batches unpacked, in order.
pub fn calls(requests: &[Recorded]) -> Vec<Call> {
    requests
        .iter()
        .enumerate()
        .flat_map(|(request, req)| match Batch::read(req) {
            Some(batch) => batch
                .operations
                .into_iter()
                .map(|op| Call { target: op.target, token: op.token, request })
                .collect::<Vec<_>>(),
            None => vec![Call {
                target: req.target.clone(),
                token: req.header("authorization").and_then(|a| a.strip_prefix("Bearer ")).map(str::to_owned),
                request,
            }],
        })
        .collect()
}

/// Answers every call of `req` (each operation of a batch) with `reply`: for stand-ins that
/// answer everything alike.
pub fn each_call(req: &Recorded, reply: Canned) -> Canned {
    match Batch::read(req) {
        Some(batch) => batch_answer(vec![reply; batch.operations.len()], Duration::ZERO, Vec::new()),
        None => reply,
    }
}

struct Operation {
    target: String,
    token: Option<String>,
    query: HashMap<String, String>,
}

struct Batch {
    operations: Vec<Operation>,
    /// The request's own `access_token`.
    own_token: Option<String>,
    include_headers: bool,
}

impl Batch {
    /// `req` read as a batch request, if it is one.
    fn read(req: &Recorded) -> Option<Batch> {
        if req.method != "POST" || !req.target.ends_with('/') {
            return None;
        }
        let form: HashMap<String, String> = url::form_urlencoded::parse(&req.body).into_owned().collect();
        let ops: Vec<Value> = serde_json::from_str(form.get("batch")?).ok()?;
        let prefix = req.target.trim_end_matches('/');
        let operations = ops
            .iter()
            .map(|op| {
                let relative = op["relative_url"].as_str().unwrap_or_default();
                let (path, query) = relative.split_once('?').unwrap_or((relative, ""));
                let mut params: Vec<(String, String)> =
                    url::form_urlencoded::parse(query.as_bytes()).into_owned().collect();
                let own = params.iter().position(|(k, _)| k == "access_token").map(|i| params.remove(i).1);
                let kept: Vec<String> =
                    query.split('&').filter(|p| !p.starts_with("access_token=")).map(str::to_owned).collect();
                let target = if kept.iter().all(|p| p.is_empty()) {
                    format!("{prefix}/{path}")
                } else {
                    format!("{prefix}/{path}?{}", kept.join("&"))
                };
                Operation {
                    target,
                    token: own.or_else(|| form.get("access_token").cloned()),
                    query: params.into_iter().collect(),
                }
            })
            .collect();
        Some(Batch {
            operations,
            own_token: form.get("access_token").cloned(),
            include_headers: form.get("include_headers").is_none_or(|v| v != "false"),
        })
    }
}

fn batch_answer(replies: Vec<Canned>, per_operation: Duration, headers: Vec<(String, String)>) -> Canned {
    let slowest = replies.iter().map(|r| r.delay).max().unwrap_or_default();
    let elements: Vec<Value> = replies
        .iter()
        .map(|r| match r.status {
            0 => Value::Null,
            _ => {
                let headers: Vec<Value> =
                    r.headers.iter().map(|(n, v)| json!({ "name": n, "value": v })).collect();
                json!({ "code": r.status, "headers": headers, "body": r.body })
            }
        })
        .collect();
    let mut answer = Canned::json(200, Value::Array(elements));
    answer.headers.extend(headers);
    answer.after(slowest + per_operation * replies.len() as u32)
}

/// Meta's limits, as the stand-in enforces them.
#[derive(Default)]
struct Limits {
    /// Operations (or single calls) answered so far.
    calls: u64,
    /// The app is throttled (code 4) once this many calls were answered.
    app_after: Option<u64>,
    /// `X-App-Usage`'s `call_count`: this many percent per call answered.
    app_percent_per_call: Option<f64>,
    /// Businesses (WABA ids) throttled (80007) after so many of their calls, with Meta's
    /// `estimated_time_to_regain_access`.
    business_after: HashMap<String, (u64, u32)>,
    business_calls: HashMap<String, u64>,
    /// The businesses throttled so far.
    throttled_businesses: HashSet<String>,
    /// Businesses whose `X-Business-Use-Case-Usage` rises by this many percent a call about
    /// them, reported on the operations about them only.
    business_percent_per_call: HashMap<String, f64>,
}

#[derive(Clone, Default)]
pub struct Script {
    nodes: Arc<Mutex<HashMap<String, Canned>>>,
    tokens: Arc<Mutex<HashMap<String, Canned>>>,
    /// The app access token (`<app id>|<app secret>`) `debug_token` accepts; any when unset.
    app_token: Arc<Mutex<Option<String>>>,
    /// The customer tokens node reads accept; any when empty.
    known_tokens: Arc<Mutex<HashSet<String>>>,
    /// Node id to its business (WABA id), for the business limits.
    businesses: Arc<Mutex<HashMap<String, String>>>,
    limits: Arc<Mutex<Limits>>,
    /// What each batch operation adds to the batch's answer time.
    per_operation: Arc<Mutex<Duration>>,
    /// Scripted refusals of whole batches, by the batch's own token.
    batch_refusals: Arc<Mutex<HashMap<String, Canned>>>,
    /// The first answer that carried a throttle, as the number of requests answered before it.
    first_throttled_request: Arc<Mutex<Option<usize>>>,
    requests: Arc<Mutex<usize>>,
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

    /// Node reads with any other customer token answer Meta's invalid-token error.
    pub fn known_token(&self, token: &str) -> &Self {
        self.known_tokens.lock().unwrap().insert(token.into());
        self
    }

    pub fn business(&self, node: &str, waba: &str) -> &Self {
        self.businesses.lock().unwrap().insert(node.into(), waba.into());
        self
    }

    pub fn throttle_app_after(&self, calls: u64) -> &Self {
        self.limits.lock().unwrap().app_after = Some(calls);
        self
    }

    pub fn app_usage_per_call(&self, percent: f64) -> &Self {
        self.limits.lock().unwrap().app_percent_per_call = Some(percent);
        self
    }

    /// `waba`'s usage rises by `percent` a call about it (its nodes given with [`Self::business`]).
    pub fn business_usage_per_call(&self, waba: &str, percent: f64) -> &Self {
        self.limits.lock().unwrap().business_percent_per_call.insert(waba.into(), percent);
        self
    }

    /// Meta's usage falls back to nothing (its rolling hour has passed).
    pub fn usage_lapsed(&self) -> &Self {
        let mut limits = self.limits.lock().unwrap();
        limits.calls = 0;
        limits.business_calls.clear();
        self
    }

    /// A batch whose own `access_token` is `token` is refused as a whole with `refusal`.
    pub fn refuse_batches_with(&self, token: &str, refusal: Canned) -> &Self {
        self.batch_refusals.lock().unwrap().insert(token.into(), refusal);
        self
    }

    /// From now on (a throttle already on is lifted).
    pub fn throttle_business_after(&self, waba: &str, calls: u64, regain_minutes: u32) -> &Self {
        let mut limits = self.limits.lock().unwrap();
        limits.business_after.insert(waba.into(), (calls, regain_minutes));
        limits.business_calls.remove(waba);
        limits.throttled_businesses.remove(waba);
        self
    }

    pub fn per_operation(&self, cost: Duration) -> &Self {
        *self.per_operation.lock().unwrap() = cost;
        self
    }

    /// How many HTTP requests were answered before the first one that carried a throttle.
    pub fn first_throttled_request(&self) -> Option<usize> {
        *self.first_throttled_request.lock().unwrap()
    }

    pub fn answer(&self, req: &Recorded) -> Canned {
        let request = {
            let mut n = self.requests.lock().unwrap();
            *n += 1;
            *n - 1
        };
        let (answer, throttled) = match Batch::read(req) {
            Some(batch) => self.answer_batch(&batch),
            None => {
                let token =
                    req.header("authorization").and_then(|a| a.strip_prefix("Bearer ")).map(str::to_owned);
                let path = req.target.split('?').next().unwrap_or_default();
                let query: HashMap<String, String> = url::form_urlencoded::parse(
                    req.target.split_once('?').map(|(_, q)| q).unwrap_or_default().as_bytes(),
                )
                .into_owned()
                .collect();
                let (reply, throttled) = self.answer_call(path, &query, token.as_deref());
                let mut reply = reply;
                reply.headers.extend(self.usage_headers(Some(path)));
                (reply, throttled)
            }
        };
        if throttled {
            self.first_throttled_request.lock().unwrap().get_or_insert(request);
        }
        answer
    }

    fn answer_batch(&self, batch: &Batch) -> (Canned, bool) {
        if batch.operations.len() > 50 {
            let refusal = graph_error(
                400,
                100,
                None,
                "GraphBatchException",
                "Too many requests in batch message. Maximum batch size is 50",
                false,
            );
            return (refusal, false);
        }
        {
            let limits = self.limits.lock().unwrap();
            if limits.app_after.is_some_and(|after| limits.calls >= after) {
                // An app already over its limit has the whole batch refused.
                return (app_throttled(), true);
            }
        }
        // Meta checks the request's own token before it runs any operation.
        if let Some(refusal) = self.refusal_of(batch.own_token.as_deref()) {
            let mut refusal = refusal;
            refusal.headers.extend(self.usage_headers(None));
            return (refusal, false);
        }
        let mut throttled = false;
        let replies: Vec<Canned> = batch
            .operations
            .iter()
            .map(|op| {
                let path = op.target.split('?').next().unwrap_or_default();
                let (mut reply, t) = self.answer_call(path, &op.query, op.token.as_deref());
                throttled |= t;
                if batch.include_headers && reply.status != 0 {
                    reply.headers.extend(self.usage_headers(Some(path)));
                }
                reply
            })
            .collect();
        let per_operation = *self.per_operation.lock().unwrap();
        (batch_answer(replies, per_operation, self.usage_headers(None)), throttled)
    }

    /// Why Meta refuses a batch whose own token is `token`, if it does: a scripted refusal, an
    /// app token with the wrong secret, or a customer token node reads do not accept.
    fn refusal_of(&self, token: Option<&str>) -> Option<Canned> {
        let token = token.unwrap_or_default();
        if let Some(refusal) = self.batch_refusals.lock().unwrap().get(token) {
            return Some(refusal.clone());
        }
        let app = self.app_token.lock().unwrap().clone();
        if token.contains('|') {
            return app.filter(|app| app != token).map(|_| bad_app_token());
        }
        let known = self.known_tokens.lock().unwrap();
        (!known.is_empty() && !known.contains(token)).then(invalid_token)
    }

    /// One call's answer, and whether it was a throttle.
    fn answer_call(
        &self,
        path: &str,
        query: &HashMap<String, String>,
        token: Option<&str>,
    ) -> (Canned, bool) {
        let node = path.rsplit('/').next().unwrap_or_default().to_owned();
        {
            let mut limits = self.limits.lock().unwrap();
            limits.calls += 1;
            if limits.app_after.is_some_and(|after| limits.calls > after) {
                return (app_throttled(), true);
            }
            if let Some(waba) = self.businesses.lock().unwrap().get(&node).cloned() {
                let calls = {
                    let n = limits.business_calls.entry(waba.clone()).or_default();
                    *n += 1;
                    *n
                };
                if limits.business_after.get(&waba).is_some_and(|(after, _)| calls > *after) {
                    limits.throttled_businesses.insert(waba);
                    return (business_throttled(), true);
                }
            }
        }
        if path.ends_with("/debug_token") {
            let expected = self.app_token.lock().unwrap().clone();
            if expected.is_some_and(|t| token != Some(t.as_str())) {
                return (bad_app_token(), false);
            }
            let input = query.get("input_token").cloned().unwrap_or_default();
            return (
                self.tokens.lock().unwrap().get(&input).cloned().unwrap_or_else(|| valid_token(0)),
                false,
            );
        }
        let known = self.known_tokens.lock().unwrap();
        if !known.is_empty() && !token.is_some_and(|t| known.contains(t)) {
            return (invalid_token(), false);
        }
        (self.nodes.lock().unwrap().get(&node).cloned().unwrap_or_else(healthy_phone), false)
    }

    /// `X-App-Usage` once usage is noticeable, and `X-Business-Use-Case-Usage` for the
    /// businesses Meta throttled; for a call about a node (`path`), also its business's rising
    /// figures.
    fn usage_headers(&self, path: Option<&str>) -> Vec<(String, String)> {
        let node = path.map(|p| p.rsplit('/').next().unwrap_or_default().to_owned());
        let business = node.and_then(|n| self.businesses.lock().unwrap().get(&n).cloned());
        let limits = self.limits.lock().unwrap();
        let mut headers = Vec::new();
        if let Some(percent) = limits.app_percent_per_call {
            let used = (limits.calls as f64 * percent).min(100.0).round();
            headers.push((
                "x-app-usage".to_owned(),
                json!({ "call_count": used, "total_cputime": (used / 4.0).round(), "total_time": (used / 2.0).round() })
                    .to_string(),
            ));
        }
        let mut businesses: serde_json::Map<String, Value> = limits
            .throttled_businesses
            .iter()
            .map(|waba| {
                let regain = limits.business_after.get(waba).map_or(0, |(_, m)| *m);
                let entry = json!([{ "type": "whatsapp_business_management", "call_count": 100,
                                     "total_cputime": 12, "total_time": 20, "estimated_time_to_regain_access": regain }]);
                (waba.clone(), entry)
            })
            .collect();
        if let Some(waba) = business.filter(|w| !businesses.contains_key(w)) {
            if let Some(percent) = limits.business_percent_per_call.get(&waba) {
                let calls = limits.business_calls.get(&waba).copied().unwrap_or(0) as f64;
                let used = (calls * percent).min(100.0).round();
                let entry = json!([{ "type": "whatsapp_business_management", "call_count": used,
                                     "total_cputime": 1, "total_time": 1, "estimated_time_to_regain_access": 0 }]);
                businesses.insert(waba, entry);
            }
        }
        if !businesses.is_empty() {
            headers.push(("x-business-use-case-usage".to_owned(), Value::Object(businesses).to_string()));
        }
        headers
    }
}

pub async fn start(script: &Script) -> FakeHttp {
    let script = script.clone();
    FakeHttp::start(move |req| script.answer(req)).await
}
