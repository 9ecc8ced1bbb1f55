//! Loopback stand-ins for the Teams side: an OpenID/JWKS issuer with our own RSA keys (also
//! serving the Entra token endpoint), and a Bot Connector that records what the bot sends.
//! Both speak the real wire formats.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

pub const APP_ID: &str = "5f1e8c2a-0b7d-4c1e-9a55-1b2c3d4e5f60";
pub const TENANT: &str = "7f3c2a10-5e1b-4c8a-9d2e-0a1b2c3d4e5f";
pub const OTHER_TENANT: &str = "0badbeef-0000-4000-8000-000000000000";
pub const CONNECTOR_TOKEN: &str = "connector-access-token-for-tests";

fn fixture(name: &str) -> String {
    std::fs::read_to_string(format!(
        "{}/tests/fixtures/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

pub fn public_key(name: &str) -> (String, String) {
    let keys: Value = serde_json::from_str(&fixture("test-keys.json")).unwrap();
    (
        keys[name]["n"].as_str().unwrap().to_string(),
        keys[name]["e"].as_str().unwrap().to_string(),
    )
}

pub fn signing_key(name: &str) -> EncodingKey {
    EncodingKey::from_rsa_pem(fixture(&format!("{name}.pem")).as_bytes()).unwrap()
}

/// Signs `claims` with a fixture key under `kid`.
pub fn sign(key: &str, kid: &str, claims: &Value) -> String {
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some(kid.to_string());
    jsonwebtoken::encode(&header, claims, &signing_key(key)).unwrap()
}

#[derive(Default)]
pub struct IssuerState {
    pub base: Mutex<String>,
    pub down: AtomicBool,
    /// Only the Bot Framework JWKS answers 503 (the metadata stays up).
    pub keys_down: AtomicBool,
    /// The Bot Framework JWKS answers after this many milliseconds (callers pile up meanwhile).
    pub keys_delay_ms: AtomicU64,
    pub metadata_fetches: AtomicUsize,
    pub jwks_fetches: AtomicUsize,
    pub token_requests: AtomicUsize,
    /// Keys published in the Bot Framework JWKS: (fixture name, kid, endorsements).
    pub published: Mutex<Vec<(String, String, Vec<String>)>>,
    pub last_token_form: Mutex<Option<String>>,
}

/// The local issuer. Bot Framework metadata at `/bf/.well-known/openidconfiguration`, Entra
/// metadata at `/entra/{tenant}/v2.0/.well-known/openid-configuration`, tokens at
/// `/{tenant}/oauth2/v2.0/token` (the authority is the bare address, as Entra's is; the
/// credential reaches it over https, `common::tokens::HttpsTokens`).
pub struct Issuer {
    pub base: String,
    pub state: Arc<IssuerState>,
}

impl Issuer {
    pub async fn start() -> Issuer {
        let state = Arc::new(IssuerState::default());
        *state.published.lock().unwrap() = vec![
            (
                "channel-a".into(),
                "kid-a".into(),
                vec!["msteams".into(), "webchat".into()],
            ),
            ("channel-b".into(), "kid-b".into(), vec!["skype".into()]),
        ];
        let app = Router::new()
            .route("/bf/.well-known/openidconfiguration", get(bf_metadata))
            .route("/bf/.well-known/keys", get(bf_keys))
            .route(
                "/entra/{tenant}/v2.0/.well-known/openid-configuration",
                get(entra_metadata),
            )
            .route("/entra/{tenant}/keys", get(entra_keys))
            .route("/{tenant}/oauth2/v2.0/token", post(token))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        *state.base.lock().unwrap() = base.clone();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Issuer { base, state }
    }

    pub fn bf_metadata_url(&self) -> String {
        format!("{}/bf/.well-known/openidconfiguration", self.base)
    }

    pub fn entra_metadata_template(&self) -> String {
        format!(
            "{}/entra/{{tenant}}/v2.0/.well-known/openid-configuration",
            self.base
        )
    }

    pub fn oauth_authority(&self) -> String {
        self.base.clone()
    }

    pub fn key_fetches(&self) -> usize {
        self.state.jwks_fetches.load(Ordering::SeqCst)
    }

    pub fn publish(&self, key: &str, kid: &str, endorsements: &[&str]) {
        self.state.published.lock().unwrap().push((
            key.into(),
            kid.into(),
            endorsements.iter().map(|e| e.to_string()).collect(),
        ));
    }

    /// Stops publishing `kid` in the Bot Framework JWKS (a rotated-out key).
    pub fn retire(&self, kid: &str) {
        self.state
            .published
            .lock()
            .unwrap()
            .retain(|(_, published, _)| published != kid);
    }

    pub fn set_down(&self, down: bool) {
        self.state.down.store(down, Ordering::SeqCst);
    }

    pub fn metadata_fetches(&self) -> usize {
        self.state.metadata_fetches.load(Ordering::SeqCst)
    }

    /// The Bot Framework JWKS alone answers 503 while `down`.
    pub fn set_keys_down(&self, down: bool) {
        self.state.keys_down.store(down, Ordering::SeqCst);
    }

    /// The Bot Framework JWKS answers `ms` milliseconds late.
    pub fn delay_keys(&self, ms: u64) {
        self.state.keys_delay_ms.store(ms, Ordering::SeqCst);
    }
}

fn unavailable() -> Response {
    (StatusCode::SERVICE_UNAVAILABLE, "down for the test").into_response()
}

async fn bf_metadata(State(s): State<Arc<IssuerState>>) -> Response {
    s.metadata_fetches.fetch_add(1, Ordering::SeqCst);
    if s.down.load(Ordering::SeqCst) {
        return unavailable();
    }
    let base = s.base.lock().unwrap().clone();
    Json(json!({
        "issuer": "https://api.botframework.com",
        "authorization_endpoint": "https://invalid.botframework.com",
        "jwks_uri": format!("{base}/bf/.well-known/keys"),
        "id_token_signing_alg_values_supported": ["RS256"],
        "token_endpoint_auth_methods_supported": ["private_key_jwt"],
    }))
    .into_response()
}

async fn bf_keys(State(s): State<Arc<IssuerState>>) -> Response {
    s.jwks_fetches.fetch_add(1, Ordering::SeqCst);
    let delay = s.keys_delay_ms.load(Ordering::SeqCst);
    if delay > 0 {
        tokio::time::sleep(std::time::Duration::from_millis(delay)).await;
    }
    if s.down.load(Ordering::SeqCst) || s.keys_down.load(Ordering::SeqCst) {
        return unavailable();
    }
    let keys: Vec<Value> = s
        .published
        .lock()
        .unwrap()
        .iter()
        .map(|(name, kid, endorsements)| {
            let (n, e) = public_key(name);
            json!({"kty": "RSA", "use": "sig", "kid": kid, "n": n, "e": e, "endorsements": endorsements})
        })
        .collect();
    Json(json!({ "keys": keys })).into_response()
}

async fn entra_metadata(State(s): State<Arc<IssuerState>>, Path(tenant): Path<String>) -> Response {
    if s.down.load(Ordering::SeqCst) {
        return unavailable();
    }
    let base = s.base.lock().unwrap().clone();
    Json(json!({
        "issuer": format!("https://login.microsoftonline.com/{tenant}/v2.0"),
        "jwks_uri": format!("{base}/entra/{tenant}/keys"),
    }))
    .into_response()
}

async fn entra_keys(State(s): State<Arc<IssuerState>>) -> Response {
    if s.down.load(Ordering::SeqCst) {
        return unavailable();
    }
    let (n, e) = public_key("channel-b");
    Json(json!({"keys": [{"kty": "RSA", "use": "sig", "kid": "entra-kid", "n": n, "e": e}]}))
        .into_response()
}

async fn token(State(s): State<Arc<IssuerState>>, body: String) -> Response {
    s.token_requests.fetch_add(1, Ordering::SeqCst);
    *s.last_token_form.lock().unwrap() = Some(body);
    Json(json!({"token_type": "Bearer", "expires_in": 3599, "ext_expires_in": 3599, "access_token": CONNECTOR_TOKEN}))
        .into_response()
}

/// One call the bot made to the Connector.
#[derive(Debug, Clone)]
pub struct ConnectorCall {
    pub method: String,
    pub path: String,
    pub authorization: Option<String>,
    pub body: Value,
    pub at: std::time::Instant,
}

#[derive(Default)]
pub struct ConnectorState {
    pub calls: Mutex<Vec<ConnectorCall>>,
    /// Responses to give before answering normally: (status, Retry-After).
    pub script: Mutex<VecDeque<(u16, Option<&'static str>)>>,
    /// Calls whose path ends with the first to fail with 500, as many times as the second says.
    pub failing: Mutex<Option<(String, usize)>>,
    /// Calls whose path ends with the first are refused with the third's status (403
    /// `BotNotInConversationRoster`, 404…), as many times as the second says.
    pub refusing: Mutex<Option<(String, usize, u16)>>,
    /// Calls whose path ends with this are never answered (a Connector that hangs).
    pub hanging: Mutex<Option<String>>,
    pub next_id: AtomicUsize,
    /// Conversation members by Teams user id (`29:…`), as `GET …/members/{id}` answers them
    /// (a TeamsChannelAccount); an id not here is 404 `MemberNotFoundInConversation`.
    pub members: Mutex<HashMap<String, Value>>,
    /// Every member lookup, apart from `calls` (so counts of messages are not disturbed).
    pub member_calls: Mutex<Vec<ConnectorCall>>,
    /// Member lookups answer this status (and an error body) while set; 0 means never answer.
    pub members_failing: Mutex<Option<u16>>,
}

/// A Bot Connector on loopback; its base URL is what activities carry as `serviceUrl`.
pub struct FakeConnector {
    pub service_url: String,
    pub state: Arc<ConnectorState>,
}

impl FakeConnector {
    pub async fn start() -> FakeConnector {
        Self::start_on("127.0.0.1").await
    }

    /// A Connector at another address (`127.0.0.2` is loopback too, but not the host a test
    /// allowed): where a stolen token would land.
    pub async fn start_on(ip: &str) -> FakeConnector {
        let state = Arc::new(ConnectorState::default());
        let app = Router::new()
            .route("/connector/v3/conversations", post(create_conversation))
            .route(
                "/connector/v3/conversations/{conversation}/activities",
                post(activity_call),
            )
            .route(
                "/connector/v3/conversations/{conversation}/activities/{activity}",
                post(activity_call).put(activity_call).delete(activity_call),
            )
            .route(
                "/connector/v3/conversations/{conversation}/members/{member}",
                get(member_call),
            )
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind((ip, 0)).await.unwrap();
        let service_url = format!("http://{}/connector/", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        FakeConnector { service_url, state }
    }

    pub fn calls(&self) -> Vec<ConnectorCall> {
        self.state.calls.lock().unwrap().clone()
    }

    pub fn script(&self, responses: &[(u16, Option<&'static str>)]) {
        self.state
            .script
            .lock()
            .unwrap()
            .extend(responses.iter().copied());
    }

    /// The next `times` calls to a path ending with `suffix` fail with 500 (say, the reply to
    /// one activity); other calls are answered normally.
    pub fn fail_path(&self, suffix: &str, times: usize) {
        *self.state.failing.lock().unwrap() = Some((suffix.to_string(), times));
    }

    /// The next `times` calls to a path ending with `suffix` are refused with `status` (the bot
    /// was removed from that team or chat); other calls are answered normally.
    pub fn refuse_path(&self, suffix: &str, times: usize, status: u16) {
        *self.state.refusing.lock().unwrap() = Some((suffix.to_string(), times, status));
    }

    /// Calls to a path ending with `suffix` are recorded and then never answered.
    pub fn hang_path(&self, suffix: &str) {
        *self.state.hanging.lock().unwrap() = Some(suffix.to_string());
    }

    /// The member lookup for Teams user `member_id` answers `account` (see [`teams_member`]).
    pub fn set_member(&self, member_id: &str, account: Value) {
        self.state
            .members
            .lock()
            .unwrap()
            .insert(member_id.to_string(), account);
    }

    /// Member lookups answer `status` while `Some` (`Some(0)`: they hang, unanswered), normally
    /// again with `None`.
    pub fn fail_members(&self, status: Option<u16>) {
        *self.state.members_failing.lock().unwrap() = status;
    }

    /// Every member lookup made so far.
    pub fn member_calls(&self) -> Vec<ConnectorCall> {
        self.state.member_calls.lock().unwrap().clone()
    }

    /// Waits briefly for `n` calls (replies are sent before the turn answers, but be tolerant).
    pub async fn wait_for(&self, n: usize) -> Vec<ConnectorCall> {
        for _ in 0..100 {
            if self.state.calls.lock().unwrap().len() >= n {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        self.calls()
    }
}

async fn record(
    s: &ConnectorState,
    method: Method,
    path: String,
    headers: &HeaderMap,
    body: Value,
) -> Option<Response> {
    s.calls.lock().unwrap().push(ConnectorCall {
        method: method.to_string(),
        path,
        authorization: headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .map(String::from),
        body,
        at: std::time::Instant::now(),
    });
    let path = s.calls.lock().unwrap().last().map(|c| c.path.clone());
    let hang = matches!((&path, s.hanging.lock().unwrap().as_deref()), (Some(p), Some(h)) if p.ends_with(h));
    if hang {
        std::future::pending::<()>().await;
    }
    if let (Some(path), Some((suffix, times, status))) =
        (path.as_ref(), s.refusing.lock().unwrap().as_mut())
        && *times > 0
        && path.ends_with(suffix.as_str())
    {
        *times -= 1;
        let code = if *status == 403 {
            "BotNotInConversationRoster"
        } else {
            "ConversationNotFound"
        };
        return Some(
            (
                StatusCode::from_u16(*status).unwrap(),
                Json(json!({"error": {"code": code, "message": "refused for the test"}})),
            )
                .into_response(),
        );
    }
    if let (Some(path), Some((suffix, times))) = (path, s.failing.lock().unwrap().as_mut())
        && *times > 0
        && path.ends_with(suffix.as_str())
    {
        *times -= 1;
        return Some(StatusCode::INTERNAL_SERVER_ERROR.into_response());
    }
    let scripted = s.script.lock().unwrap().pop_front();
    scripted.map(|(status, retry_after)| {
        let mut response = (
            StatusCode::from_u16(status).unwrap(),
            Json(json!({"error": {"code": if status == 403 { "BotNotInConversationRoster" } else { "Scripted" }, "message": "scripted"}})),
        )
            .into_response();
        if let Some(r) = retry_after {
            response.headers_mut().insert("retry-after", r.parse().unwrap());
        }
        response
    })
}

async fn activity_call(
    State(s): State<Arc<ConnectorState>>,
    method: Method,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    // The Connector takes JSON bodies labelled as JSON, as the create-conversation route's `Json`
    // extractor insists too.
    let json = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if method != Method::DELETE && !json {
        return StatusCode::UNSUPPORTED_MEDIA_TYPE.into_response();
    }
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    if let Some(r) = record(&s, method.clone(), uri.path().to_string(), &headers, body).await {
        return r;
    }
    match method {
        Method::DELETE => StatusCode::OK.into_response(),
        Method::PUT => Json(json!({})).into_response(),
        _ => {
            let n = s.next_id.fetch_add(1, Ordering::SeqCst);
            Json(json!({"id": format!("activity-{n}")})).into_response()
        }
    }
}

/// `GET /v3/conversations/{conversation}/members/{member}`: the member's TeamsChannelAccount,
/// 404 `MemberNotFoundInConversation` for anyone else, or the failure the test set.
async fn member_call(
    State(s): State<Arc<ConnectorState>>,
    Path((_conversation, member)): Path<(String, String)>,
    uri: axum::http::Uri,
    headers: HeaderMap,
) -> Response {
    s.member_calls.lock().unwrap().push(ConnectorCall {
        method: "GET".into(),
        path: uri.path().to_string(),
        authorization: headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .map(String::from),
        body: Value::Null,
        at: std::time::Instant::now(),
    });
    let failing = *s.members_failing.lock().unwrap();
    if failing == Some(0) {
        std::future::pending::<()>().await;
    }
    if let Some(status) = failing {
        return (
            StatusCode::from_u16(status).unwrap(),
            Json(json!({"error": {"code": "ServiceError", "message": "failing for the test"}})),
        )
            .into_response();
    }
    match s.members.lock().unwrap().get(&member) {
        Some(account) => Json(account.clone()).into_response(),
        None => (
            StatusCode::NOT_FOUND,
            Json(json!({"error": {"code": "MemberNotFoundInConversation", "message": "The member is not part of the conversation."}})),
        )
            .into_response(),
    }
}

/// A TeamsChannelAccount as Teams answers the member lookup.
pub fn teams_member(
    teams_id: &str,
    name: &str,
    aad_object_id: &str,
    email: &str,
    upn: &str,
    tenant: &str,
) -> Value {
    let (given, surname) = name.split_once(' ').unwrap_or((name, ""));
    json!({
        "id": teams_id,
        "name": name,
        "aadObjectId": aad_object_id,
        "email": email,
        "userPrincipalName": upn,
        "tenantId": tenant,
        "givenName": given,
        "surname": surname,
        "userRole": "user",
    })
}

/// Creates (or finds) the 1:1 chat with the one member: its id names the member, as Teams' do
/// not — but it lets a test tell whose chat a message went to.
async fn create_conversation(
    State(s): State<Arc<ConnectorState>>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    let member = body["members"][0]["id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    if let Some(r) = record(
        &s,
        Method::POST,
        "/connector/v3/conversations".into(),
        &headers,
        body,
    )
    .await
    {
        return r;
    }
    if member.is_empty() {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": {"code": "BadArgument", "message": "no members"}})),
        )
            .into_response();
    }
    Json(json!({"id": format!("a:new-personal-{member}")})).into_response()
}

/// A Teams personal-chat message from the demo requester, addressed to `service_url`.
pub fn message(service_url: &str, id: &str, text: &str) -> Value {
    json!({
        "type": "message",
        "id": id,
        "timestamp": "2026-11-23T09:00:00.000Z",
        "serviceUrl": service_url,
        "channelId": "msteams",
        "from": {"id": "29:1alice", "name": "Alice Requester", "aadObjectId": "a11ce000-0000-4000-8000-000000000001"},
        "conversation": {"id": "a:1alice-personal", "conversationType": "personal", "tenantId": TENANT},
        "recipient": {"id": format!("28:{APP_ID}"), "name": "Passkey"},
        "text": text,
        "channelData": {"tenant": {"id": TENANT}},
        "locale": "en-US",
    })
}
