//! A fake Entra ID on loopback, speaking OpenID Connect's wire format: discovery at
//! `/{tenant}/v2.0/.well-known/openid-configuration`, JWKS, an authorization endpoint that "signs
//! the person in" at once and redirects back with a code, and a token endpoint that checks the
//! client secret, the redirect URI and the PKCE verifier (S256) before returning an RS256
//! id_token signed with a fixture key. Tests bend the id_token through `IdTokenShape`.

use super::channel::{public_key, sign};
use axum::extract::{Form, Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine as _;
use serde_json::json;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

pub const CLIENT_ID: &str = "3c1a9e77-2b4d-4f60-8e1a-6d5c4b3a2f10";
pub const CLIENT_SECRET: &str = "fake-entra-client-secret";
pub const KID: &str = "entra-signing-key";

/// How the next id_tokens are made. `Default` is a good token.
#[derive(Clone, Debug)]
pub struct IdTokenShape {
    /// Fixture key that signs (`channel-a` is the published one; `rogue` is never published).
    pub signing_key: &'static str,
    /// Empty: no `aud` claim at all.
    pub audience: String,
    pub tenant: String,
    /// Seconds from the app's clock (the tests' t0) at which the token expires.
    pub expires_in: i64,
    /// Replaces the nonce the app sent, when set.
    pub nonce: Option<String>,
    pub oid: String,
}

impl Default for IdTokenShape {
    fn default() -> Self {
        IdTokenShape {
            signing_key: "channel-a",
            audience: CLIENT_ID.into(),
            tenant: super::web::DEMO_TENANT.into(),
            expires_in: 3600,
            nonce: None,
            oid: "a11ce000-0000-4000-8000-000000000001".into(),
        }
    }
}

struct Grant {
    client_id: String,
    redirect_uri: String,
    challenge: String,
    nonce: String,
}

#[derive(Default)]
pub struct ProviderState {
    pub shape: Mutex<IdTokenShape>,
    grants: Mutex<HashMap<String, Grant>>,
    /// The query of every authorization request, for the tests to inspect.
    pub authorize_queries: Mutex<Vec<HashMap<String, String>>>,
    /// Token requests refused, with the OAuth error code.
    pub refusals: Mutex<Vec<String>>,
    /// Unix time the tokens are issued at (the app's clock in tests).
    pub now: Mutex<i64>,
    /// The base URL the discovery document names, when not the listener's own (a TLS proxy in
    /// front of this fake: the app must be sent to the https address).
    pub advertised: Mutex<Option<String>>,
    /// Discovery and the JWKS answer 503 while set (authorize and token stay up).
    pub metadata_down: AtomicBool,
    pub discovery_fetches: AtomicUsize,
    pub jwks_fetches: AtomicUsize,
}

pub struct FakeEntra {
    pub base: String,
    pub state: Arc<ProviderState>,
}

impl FakeEntra {
    pub async fn start(now_unix: i64) -> FakeEntra {
        let state = Arc::new(ProviderState::default());
        *state.now.lock().unwrap() = now_unix;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let app = Router::new()
            .route(
                "/{tenant}/v2.0/.well-known/openid-configuration",
                get(discovery),
            )
            .route("/{tenant}/discovery/v2.0/keys", get(keys))
            .route("/{tenant}/oauth2/v2.0/authorize", get(authorize))
            .route("/{tenant}/oauth2/v2.0/token", post(token))
            .with_state((state.clone(), base.clone()));
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        FakeEntra { base, state }
    }

    /// The app's settings for signing in here.
    pub fn settings(&self) -> Vec<(&'static str, String)> {
        vec![
            ("PASSKEY_WEB__OIDC__AUTHORITY", self.base.clone()),
            (
                "PASSKEY_WEB__OIDC__TENANT_ID",
                super::web::DEMO_TENANT.into(),
            ),
            ("PASSKEY_WEB__OIDC__CLIENT_ID", CLIENT_ID.into()),
            ("PASSKEY_WEB__OIDC__CLIENT_SECRET", CLIENT_SECRET.into()),
            (
                "PASSKEY_WEB__OIDC__ALLOWED_TENANTS",
                super::web::DEMO_TENANT.into(),
            ),
        ]
    }

    /// Discovery names `base` (say, a TLS proxy in front of this fake) instead of the listener.
    pub fn advertise(&mut self, base: &str) {
        *self.state.advertised.lock().unwrap() = Some(base.to_string());
        self.base = base.to_string();
    }

    pub fn shape(&self, shape: IdTokenShape) {
        *self.state.shape.lock().unwrap() = shape;
    }

    /// Discovery and the JWKS answer 503 while `down`.
    pub fn set_metadata_down(&self, down: bool) {
        self.state.metadata_down.store(down, Ordering::SeqCst);
    }

    /// (discovery fetches, JWKS fetches) so far.
    pub fn fetches(&self) -> (usize, usize) {
        (
            self.state.discovery_fetches.load(Ordering::SeqCst),
            self.state.jwks_fetches.load(Ordering::SeqCst),
        )
    }
}

type S = State<(Arc<ProviderState>, String)>;

async fn discovery(State((state, base)): S, Path(tenant): Path<String>) -> Response {
    state.discovery_fetches.fetch_add(1, Ordering::SeqCst);
    if state.metadata_down.load(Ordering::SeqCst) {
        return (StatusCode::SERVICE_UNAVAILABLE, "down for the test").into_response();
    }
    let base = state.advertised.lock().unwrap().clone().unwrap_or(base);
    Json(json!({
        // What Entra's multi-tenant documents say; a token's own `tid` fills the placeholder.
        "issuer": "https://login.microsoftonline.com/{tenantid}/v2.0",
        "authorization_endpoint": format!("{base}/{tenant}/oauth2/v2.0/authorize"),
        "token_endpoint": format!("{base}/{tenant}/oauth2/v2.0/token"),
        "jwks_uri": format!("{base}/{tenant}/discovery/v2.0/keys"),
        "response_types_supported": ["code", "id_token", "code id_token"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "code_challenge_methods_supported": ["plain", "S256"],
    }))
    .into_response()
}

async fn keys(State((state, _)): S) -> Response {
    state.jwks_fetches.fetch_add(1, Ordering::SeqCst);
    if state.metadata_down.load(Ordering::SeqCst) {
        return (StatusCode::SERVICE_UNAVAILABLE, "down for the test").into_response();
    }
    let (n, e) = public_key("channel-a");
    Json(json!({ "keys": [{ "kty": "RSA", "use": "sig", "kid": KID, "n": n, "e": e }] }))
        .into_response()
}

/// Signs the person in at once and sends the browser back with a code bound to this request.
async fn authorize(State((state, _)): S, Query(q): Query<HashMap<String, String>>) -> Response {
    state.authorize_queries.lock().unwrap().push(q.clone());
    let (Some(redirect), Some(st), Some(challenge)) = (
        q.get("redirect_uri"),
        q.get("state"),
        q.get("code_challenge"),
    ) else {
        return (StatusCode::BAD_REQUEST, "missing parameters").into_response();
    };
    if q.get("code_challenge_method").map(String::as_str) != Some("S256")
        || q.get("response_type").map(String::as_str) != Some("code")
    {
        return (StatusCode::BAD_REQUEST, "S256 code flow only").into_response();
    }
    let code = format!("code-{}", uuid::Uuid::new_v4().simple());
    state.grants.lock().unwrap().insert(
        code.clone(),
        Grant {
            client_id: q.get("client_id").cloned().unwrap_or_default(),
            redirect_uri: redirect.clone(),
            challenge: challenge.clone(),
            nonce: q.get("nonce").cloned().unwrap_or_default(),
        },
    );
    Redirect::to(&format!(
        "{redirect}?code={code}&state={st}&session_state=ignored"
    ))
    .into_response()
}

fn oauth_error(state: &ProviderState, code: &str) -> Response {
    state.refusals.lock().unwrap().push(code.to_string());
    (
        StatusCode::BAD_REQUEST,
        Json(json!({ "error": code, "error_description": format!("AADSTS: {code} for the test") })),
    )
        .into_response()
}

async fn token(
    State((state, _)): S,
    Path(tenant): Path<String>,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let field = |k: &str| form.get(k).cloned().unwrap_or_default();
    if field("grant_type") != "authorization_code" {
        return oauth_error(&state, "unsupported_grant_type");
    }
    if field("client_id") != CLIENT_ID || field("client_secret") != CLIENT_SECRET {
        return oauth_error(&state, "invalid_client");
    }
    // A code is good once.
    let Some(grant) = state.grants.lock().unwrap().remove(&field("code")) else {
        return oauth_error(&state, "invalid_grant");
    };
    if grant.client_id != CLIENT_ID || grant.redirect_uri != field("redirect_uri") {
        return oauth_error(&state, "invalid_grant");
    }
    let verifier = field("code_verifier");
    let computed = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(Sha256::digest(verifier.as_bytes()));
    if verifier.len() < 43 || computed != grant.challenge {
        return oauth_error(&state, "invalid_grant");
    }
    let shape = state.shape.lock().unwrap().clone();
    let now = *state.now.lock().unwrap();
    let claims = json!({
        "aud": shape.audience,
        "iss": format!("https://login.microsoftonline.com/{}/v2.0", shape.tenant),
        "iat": now - 10,
        "nbf": now - 10,
        "exp": now + shape.expires_in,
        "nonce": shape.nonce.unwrap_or(grant.nonce),
        "oid": shape.oid,
        "tid": shape.tenant,
        "sub": "pairwise-subject",
        "name": "Alice Requester",
        "preferred_username": "alice@contoso.example",
        "ver": "2.0",
    });
    let _ = tenant;
    let mut claims = claims;
    if shape.audience.is_empty() {
        claims.as_object_mut().unwrap().remove("aud");
    }
    let id_token = sign(shape.signing_key, KID, &claims);
    Json(json!({
        "token_type": "Bearer",
        "scope": "openid profile",
        "expires_in": 3599,
        "access_token": "not-used-by-passkey",
        "id_token": id_token,
    }))
    .into_response()
}
