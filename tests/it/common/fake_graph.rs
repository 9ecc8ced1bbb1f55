//! Microsoft Graph (and Entra's token endpoint) on loopback, speaking the wire format Passkey's
//! directory uses: users by UPN and by `$filter`, a group's transitive user members in pages
//! linked by `@odata.nextLink`, a group's name, and app installation in a user's personal scope.
//! It checks what Graph checks — the bearer token, the OData query syntax (quotes doubled inside
//! literals), the `ConsistencyLevel` header on cast member lists, the `teamsApp@odata.bind` body —
//! and answers 404 for unknown people and groups, 409 for an app already installed, 500 while
//! "down".

use super::tokens::HttpsTokens;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use passkey::governance::directory::{GRAPH_SCOPE, GraphDirectory};
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

pub const GRAPH_TOKEN: &str = "graph-access-token-for-tests";
pub const CATALOG_APP_ID: &str = "1542629c-01b3-4a6d-8f76-1938b779e48d";
const USER_SELECT: &str = "id,displayName,mail,userPrincipalName,mobilePhone";

/// One call Passkey made: method, path, decoded query parameters.
#[derive(Debug, Clone)]
pub struct GraphCall {
    pub method: String,
    pub path: String,
    pub raw_query: String,
    pub query: BTreeMap<String, String>,
}

#[derive(Default)]
pub struct GraphState {
    base: Mutex<String>,
    users: Mutex<Vec<Value>>,
    /// Group id → member ids, in listing order.
    groups: Mutex<HashMap<String, Vec<String>>>,
    /// Group id → display name (a group without one has none).
    group_names: Mutex<HashMap<String, String>>,
    installed: Mutex<BTreeSet<String>>,
    pub calls: Mutex<Vec<GraphCall>>,
    pub token_requests: AtomicUsize,
    pub down: AtomicBool,
    page_size: AtomicUsize,
}

pub struct FakeGraph {
    pub base: String,
    pub state: Arc<GraphState>,
    /// Its token endpoint over TLS, as the client-secret credential reaches it.
    pub tokens: HttpsTokens,
}

impl FakeGraph {
    pub async fn start() -> FakeGraph {
        let state = Arc::new(GraphState::default());
        state.page_size.store(2, Ordering::SeqCst);
        let app = Router::new()
            .route("/{tenant}/oauth2/v2.0/token", post(token))
            .route("/v1.0/users", get(list_users))
            .route("/v1.0/users/{key}", get(get_user))
            .route("/v1.0/groups/{id}", get(get_group))
            .route(
                "/v1.0/groups/{id}/transitiveMembers/microsoft.graph.user",
                get(group_members),
            )
            .route("/v1.0/users/{id}/teamwork/installedApps", post(install))
            .route(
                "/v1.0/users/{id}/transitiveMemberOf/microsoft.graph.group",
                get(member_of),
            )
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        *state.base.lock().unwrap() = base.clone();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        let tokens = HttpsTokens::front(&base).await;
        FakeGraph {
            base,
            state,
            tokens,
        }
    }

    /// A person in the directory (mail and UPN may differ).
    pub fn add_user(&self, id: &str, name: &str, mail: &str, upn: &str) {
        self.state.users.lock().unwrap().push(json!({
            "id": id, "displayName": name, "mail": mail, "userPrincipalName": upn,
            "mobilePhone": "+1 555 0100",
        }));
    }

    pub fn add_group(&self, id: &str, members: &[&str]) {
        self.state.groups.lock().unwrap().insert(
            id.to_string(),
            members.iter().map(|m| m.to_string()).collect(),
        );
    }

    /// Gives a group its display name.
    pub fn name_group(&self, id: &str, name: &str) {
        self.state
            .group_names
            .lock()
            .unwrap()
            .insert(id.to_string(), name.to_string());
    }

    pub fn set_down(&self, down: bool) {
        self.state.down.store(down, Ordering::SeqCst);
    }

    pub fn calls(&self) -> Vec<GraphCall> {
        self.state.calls.lock().unwrap().clone()
    }

    /// The object ids of every install call, in order (a repeat is answered 409).
    pub fn installs(&self) -> Vec<String> {
        self.calls()
            .into_iter()
            .filter(|c| c.method == "POST")
            .map(|c| c.path.split('/').nth(3).unwrap_or_default().to_string())
            .collect()
    }

    /// The Passkey client for this fake, with a client-credentials token from its endpoint.
    pub fn directory(&self) -> GraphDirectory {
        let tokens = self
            .tokens
            .provider("app-id", "app-secret", Some("tenant-1"), GRAPH_SCOPE);
        GraphDirectory::new(reqwest::Client::new(), &self.base, Arc::new(tokens)).unwrap()
    }
}

async fn token(State(s): State<Arc<GraphState>>, body: String) -> Response {
    s.token_requests.fetch_add(1, Ordering::SeqCst);
    if !body.contains("scope=https%3A%2F%2Fgraph.microsoft.com%2F.default") {
        return (StatusCode::BAD_REQUEST, "wrong scope").into_response();
    }
    Json(json!({"token_type": "Bearer", "expires_in": 3599, "access_token": GRAPH_TOKEN}))
        .into_response()
}

fn graph_error(status: StatusCode, code: &str) -> Response {
    (
        status,
        Json(json!({"error": {"code": code, "message": code}})),
    )
        .into_response()
}

/// Records the call; answers 401 without the token and 500 while down.
fn admit(
    s: &GraphState,
    method: Method,
    uri: &axum::http::Uri,
    raw: Option<String>,
    headers: &HeaderMap,
) -> Result<BTreeMap<String, String>, Box<Response>> {
    let raw_query = raw.unwrap_or_default();
    let query: BTreeMap<String, String> = serde_urlencoded_pairs(&raw_query).into_iter().collect();
    s.calls.lock().unwrap().push(GraphCall {
        method: method.to_string(),
        path: uri.path().to_string(),
        raw_query: raw_query.clone(),
        query: query.clone(),
    });
    let bearer = headers.get("authorization").and_then(|v| v.to_str().ok());
    if bearer != Some(&format!("Bearer {GRAPH_TOKEN}")) {
        return Err(Box::new(graph_error(
            StatusCode::UNAUTHORIZED,
            "InvalidAuthenticationToken",
        )));
    }
    if s.down.load(Ordering::SeqCst) {
        return Err(Box::new(graph_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "generalException",
        )));
    }
    // Graph reads `+` as a plus sign: a client that encodes spaces that way asks a different
    // question.
    if raw_query.contains('+') {
        return Err(Box::new(graph_error(StatusCode::BAD_REQUEST, "BadRequest")));
    }
    Ok(query)
}

/// `k=v&…`, percent-decoded (a `+` stays a `+`, as Graph reads it).
fn serde_urlencoded_pairs(raw: &str) -> Vec<(String, String)> {
    raw.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Ok(b) = u8::from_str_radix(&s[i + 1..i + 3], 16)
        {
            out.push(b);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Reads one OData string literal at the start of `s`: `'…'` with `''` for a quote inside.
/// Returns the value and the rest, or None when it is not a well-formed literal.
fn odata_literal(s: &str) -> Option<(String, &str)> {
    let mut chars = s.char_indices();
    if chars.next()?.1 != '\'' {
        return None;
    }
    let mut value = String::new();
    let mut iter = s[1..].char_indices().peekable();
    while let Some((i, c)) = iter.next() {
        if c == '\'' {
            if let Some((_, '\'')) = iter.peek() {
                iter.next();
                value.push('\'');
            } else {
                return Some((value, &s[1 + i + 1..]));
            }
        } else {
            value.push(c);
        }
    }
    None
}

/// The one filter shape Graph is asked: `mail eq '<a>' or userPrincipalName eq '<a>'`.
fn parse_address_filter(filter: &str) -> Option<(String, String)> {
    let rest = filter.strip_prefix("mail eq ")?;
    let (mail, rest) = odata_literal(rest)?;
    let rest = rest.strip_prefix(" or userPrincipalName eq ")?;
    let (upn, rest) = odata_literal(rest)?;
    rest.is_empty().then_some((mail, upn))
}

fn selected(user: &Value) -> Value {
    let mut v = user.clone();
    v["@odata.type"] = json!("#microsoft.graph.user");
    v
}

fn matches(user: &Value, field: &str, value: &str) -> bool {
    user[field]
        .as_str()
        .is_some_and(|f| f.eq_ignore_ascii_case(value))
}

async fn get_user(
    State(s): State<Arc<GraphState>>,
    Path(key): Path<String>,
    method: Method,
    uri: axum::http::Uri,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> Response {
    let query = match admit(&s, method, &uri, raw, &headers) {
        Ok(q) => q,
        Err(r) => return *r,
    };
    if query.get("$select").map(String::as_str) != Some(USER_SELECT) {
        return graph_error(StatusCode::BAD_REQUEST, "BadRequest");
    }
    let users = s.users.lock().unwrap().clone();
    match users
        .iter()
        .find(|u| matches(u, "id", &key) || matches(u, "userPrincipalName", &key))
    {
        Some(u) => Json(selected(u)).into_response(),
        None => graph_error(StatusCode::NOT_FOUND, "Request_ResourceNotFound"),
    }
}

async fn list_users(
    State(s): State<Arc<GraphState>>,
    method: Method,
    uri: axum::http::Uri,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> Response {
    let query = match admit(&s, method, &uri, raw, &headers) {
        Ok(q) => q,
        Err(r) => return *r,
    };
    if query.get("$select").map(String::as_str) != Some(USER_SELECT) {
        return graph_error(StatusCode::BAD_REQUEST, "BadRequest");
    }
    let Some((mail, upn)) = query.get("$filter").and_then(|f| parse_address_filter(f)) else {
        return graph_error(StatusCode::BAD_REQUEST, "Request_BadRequest");
    };
    let users = s.users.lock().unwrap().clone();
    let found: Vec<Value> = users
        .iter()
        .filter(|u| matches(u, "mail", &mail) || matches(u, "userPrincipalName", &upn))
        .map(selected)
        .collect();
    Json(json!({
        "@odata.context": "https://graph.microsoft.com/v1.0/$metadata#users",
        "value": found,
    }))
    .into_response()
}

/// `GET /groups/{id}?$select=displayName`.
async fn get_group(
    State(s): State<Arc<GraphState>>,
    Path(id): Path<String>,
    method: Method,
    uri: axum::http::Uri,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> Response {
    let query = match admit(&s, method, &uri, raw, &headers) {
        Ok(q) => q,
        Err(r) => return *r,
    };
    if query.get("$select").map(String::as_str) != Some("displayName") {
        return graph_error(StatusCode::BAD_REQUEST, "BadRequest");
    }
    if !s.groups.lock().unwrap().contains_key(&id) {
        return graph_error(StatusCode::NOT_FOUND, "Request_ResourceNotFound");
    }
    let name = s.group_names.lock().unwrap().get(&id).cloned();
    Json(json!({
        "@odata.context": "https://graph.microsoft.com/v1.0/$metadata#groups(displayName)/$entity",
        "displayName": name,
    }))
    .into_response()
}

async fn group_members(
    State(s): State<Arc<GraphState>>,
    Path(id): Path<String>,
    method: Method,
    uri: axum::http::Uri,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> Response {
    let query = match admit(&s, method, &uri, raw, &headers) {
        Ok(q) => q,
        Err(r) => return *r,
    };
    let eventual = headers
        .get("consistencylevel")
        .and_then(|v| v.to_str().ok())
        == Some("eventual");
    if !eventual
        || query.get("$count").map(String::as_str) != Some("true")
        || query.get("$select").map(String::as_str) != Some(USER_SELECT)
    {
        return graph_error(StatusCode::BAD_REQUEST, "Request_UnsupportedQuery");
    }
    let Some(member_ids) = s.groups.lock().unwrap().get(&id).cloned() else {
        return graph_error(StatusCode::NOT_FOUND, "Request_ResourceNotFound");
    };
    let users = s.users.lock().unwrap().clone();
    let members: Vec<Value> = member_ids
        .iter()
        .filter_map(|m| users.iter().find(|u| matches(u, "id", m)))
        .map(selected)
        .collect();
    let size = s.page_size.load(Ordering::SeqCst);
    let from: usize = query
        .get("$skiptoken")
        .and_then(|t| t.strip_prefix("X'"))
        .and_then(|t| t.parse().ok())
        .unwrap_or(0);
    let page: Vec<Value> = members.iter().skip(from).take(size).cloned().collect();
    let mut body = json!({
        "@odata.context": "https://graph.microsoft.com/v1.0/$metadata#users",
        "@odata.count": members.len(),
        "value": page,
    });
    if from + size < members.len() {
        let base = s.base.lock().unwrap().clone();
        body["@odata.nextLink"] = json!(format!(
            "{base}{}?$select={USER_SELECT}&$count=true&$skiptoken=X'{}",
            uri.path(),
            from + size
        ));
    }
    Json(body).into_response()
}

/// Nobody here is in a group (group memberships have their own tests in tests/it/permissions.rs).
async fn member_of(
    State(s): State<Arc<GraphState>>,
    method: Method,
    uri: axum::http::Uri,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> Response {
    match admit(&s, method, &uri, raw, &headers) {
        Ok(_) => Json(json!({"value": []})).into_response(),
        Err(r) => *r,
    }
}

async fn install(
    State(s): State<Arc<GraphState>>,
    Path(id): Path<String>,
    method: Method,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    if let Err(r) = admit(&s, method, &uri, None, &headers) {
        return *r;
    }
    let base = s.base.lock().unwrap().clone();
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let expected = format!("{base}/v1.0/appCatalogs/teamsApps/{CATALOG_APP_ID}");
    if body.as_object().map(|o| o.len()) != Some(1)
        || body["teamsApp@odata.bind"].as_str() != Some(expected.as_str())
    {
        return graph_error(StatusCode::BAD_REQUEST, "BadRequest");
    }
    if !s
        .users
        .lock()
        .unwrap()
        .iter()
        .any(|u| matches(u, "id", &id))
    {
        return graph_error(StatusCode::NOT_FOUND, "NotFound");
    }
    if !s.installed.lock().unwrap().insert(id.to_ascii_lowercase()) {
        return graph_error(StatusCode::CONFLICT, "Conflict");
    }
    StatusCode::CREATED.into_response()
}
