//! Stateless signed cookies: the session (who is signed in, their CSRF secret, until when) and the
//! short-lived sign-in flow cookie (OIDC state, nonce and PKCE verifier, or the dev page's CSRF
//! value). Each is `base64url(JSON) "." base64url(HMAC-SHA256(key, purpose ‖ 0 ‖ JSON))`; the
//! purpose keeps a flow cookie from ever passing as a session. Nothing is stored server-side, so
//! any instance holding the same key accepts a cookie, and signing out only forgets the cookie in
//! this browser (the session lapses within `web.session_ttl_secs` everywhere else).

use super::WebState;
use super::state::IssuePageState;
use crate::config::Settings;
use crate::domain::Timestamp;
use crate::error::ApiError;
use crate::store::User;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Redirect, Response};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize, de::DeserializeOwned};

/// The header the page sends its CSRF token in.
pub const CSRF_HEADER: &str = "x-csrf-token";
const SESSION_PURPOSE: &str = "passkey-session-v1";
const FLOW_PURPOSE: &str = "passkey-signin-flow-v1";
/// How long a sign-in may take between leaving for Entra and coming back.
pub const FLOW_TTL_SECS: i64 = 600;
const KEY_FILE: &str = "session.key";

/// The key that signs cookies.
pub struct CookieKey(Vec<u8>);

impl CookieKey {
    /// `web.session_key` when set, else `session.key` in the data directory (created with 32
    /// random bytes, readable by the owner only, on first start).
    pub fn load(settings: &Settings) -> Result<CookieKey, String> {
        if let Some(key) = &settings.web.session_key {
            let text = key.expose_secret().trim();
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(text)
                .or_else(|_| URL_SAFE_NO_PAD.decode(text))
                .map_err(|_| "web.session_key is not base64".to_string())?;
            if bytes.len() < 32 {
                return Err("web.session_key must be at least 32 bytes".into());
            }
            return Ok(CookieKey(bytes));
        }
        let path = settings.data_dir.join(KEY_FILE);
        match std::fs::read(&path) {
            Ok(bytes) if bytes.len() >= 32 => return Ok(CookieKey(bytes)),
            Ok(_) => return Err(format!("{} is shorter than 32 bytes", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
        }
        let bytes = random_bytes::<32>().to_vec();
        write_private(&path, &bytes)
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        // Another instance may have raced us to it: whatever is on disk now is the key.
        let on_disk =
            std::fs::read(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        Ok(CookieKey(on_disk))
    }

    /// A key given directly (tests).
    pub fn from_bytes(bytes: &[u8]) -> CookieKey {
        CookieKey(bytes.to_vec())
    }

    fn key(&self) -> aws_lc_rs::hmac::Key {
        aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, &self.0)
    }

    /// What is signed: `purpose ‖ 0 ‖ payload`.
    fn signed_bytes(purpose: &str, payload: &[u8]) -> Vec<u8> {
        [purpose.as_bytes(), &[0], payload].concat()
    }

    fn seal<T: Serialize>(&self, purpose: &str, value: &T) -> String {
        let json = serde_json::to_vec(value).expect("cookie payloads serialize");
        let tag = aws_lc_rs::hmac::sign(&self.key(), &Self::signed_bytes(purpose, &json));
        format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(&json),
            URL_SAFE_NO_PAD.encode(tag)
        )
    }

    fn open<T: DeserializeOwned>(&self, purpose: &str, sealed: &str) -> Option<T> {
        let (payload, tag) = sealed.split_once('.')?;
        let json = URL_SAFE_NO_PAD.decode(payload).ok()?;
        let tag = URL_SAFE_NO_PAD.decode(tag).ok()?;
        // verify compares in constant time.
        aws_lc_rs::hmac::verify(&self.key(), &Self::signed_bytes(purpose, &json), &tag).ok()?;
        serde_json::from_slice(&json).ok()
    }

    pub fn seal_session(&self, session: &Session) -> String {
        self.seal(SESSION_PURPOSE, session)
    }

    /// The session in a cookie value, if it is ours, untampered and not expired at `now`.
    pub fn open_session(&self, sealed: &str, now: Timestamp) -> Option<Session> {
        let session: Session = self.open(SESSION_PURPOSE, sealed)?;
        (session.exp > now.unix_seconds()).then_some(session)
    }

    pub fn seal_flow(&self, flow: &SignInFlow) -> String {
        self.seal(FLOW_PURPOSE, flow)
    }

    pub fn open_flow(&self, sealed: &str, now: Timestamp) -> Option<SignInFlow> {
        let flow: SignInFlow = self.open(FLOW_PURPOSE, sealed)?;
        (flow.exp > now.unix_seconds()).then_some(flow)
    }
}

/// A new key file, 0600; one another instance wrote a moment ago is kept (and read back).
fn write_private(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    match crate::private_fs::write_new(path, bytes) {
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        other => other,
    }
}

/// Random bytes from the OS.
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes).expect("the OS random source is available");
    bytes
}

/// Base64url of `N` random bytes.
pub fn random_token<const N: usize>() -> String {
    URL_SAFE_NO_PAD.encode(random_bytes::<N>())
}

/// Who is signed in, until when, and the secret their page must echo on every POST.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Session {
    pub uid: i64,
    pub csrf: String,
    /// Unix seconds.
    pub exp: i64,
}

/// A sign-in under way: the OIDC values to check on the way back (or, for the dev page, just
/// `csrf`), and where to go afterwards.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SignInFlow {
    pub state: String,
    pub nonce: String,
    pub verifier: String,
    pub csrf: String,
    pub next: String,
    pub exp: i64,
}

pub fn session_cookie_name(secure: bool) -> &'static str {
    // `__Host-` binds the cookie to this exact host and path `/`; browsers only accept it with Secure.
    if secure {
        "__Host-passkey_session"
    } else {
        "passkey_session"
    }
}

pub fn flow_cookie_name(secure: bool) -> &'static str {
    if secure {
        "__Host-passkey_signin"
    } else {
        "passkey_signin"
    }
}

/// A `Set-Cookie` value: HttpOnly, SameSite=Lax, path `/`, Secure outside dev.
pub fn set_cookie(name: &str, value: &str, max_age_secs: i64, secure: bool) -> HeaderValue {
    let secure = if secure { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{name}={value}; Path=/; Max-Age={max_age_secs}; HttpOnly; SameSite=Lax{secure}"
    ))
    .expect("cookie values are base64url")
}

/// A `Set-Cookie` value that removes the cookie.
pub fn clear_cookie(name: &str, secure: bool) -> HeaderValue {
    set_cookie(name, "", 0, secure)
}

/// A cookie's value from the request's `Cookie` headers.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// Starts a session for `user`: the `Set-Cookie` value.
pub fn start_session(web: &WebState, user_id: i64, now: Timestamp) -> HeaderValue {
    let ttl = web.session_ttl_secs;
    let session = Session {
        uid: user_id,
        csrf: random_token::<24>(),
        exp: now.unix_seconds() + ttl,
    };
    set_cookie(
        session_cookie_name(web.secure_cookies),
        &web.key.seal_session(&session),
        ttl,
        web.secure_cookies,
    )
}

/// The signed-in person, from a valid session cookie whose user still exists. Pages without one
/// are sent to sign in and come back; `/api/…` calls get 401.
pub struct SignedInUser {
    pub user: User,
    pub session: Session,
}

/// Why there is no signed-in user.
pub enum SignInRequired {
    Page { next: String },
    Api,
    Store(ApiError),
}

impl IntoResponse for SignInRequired {
    fn into_response(self) -> Response {
        match self {
            SignInRequired::Page { next } => {
                let to = format!("/signin?next={}", encode_query_value(&next));
                Redirect::to(&to).into_response()
            }
            SignInRequired::Api => ApiError::Unauthorized.into_response(),
            SignInRequired::Store(e) => e.into_response(),
        }
    }
}

impl FromRequestParts<IssuePageState> for SignedInUser {
    type Rejection = SignInRequired;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &IssuePageState,
    ) -> Result<Self, Self::Rejection> {
        let path = parts.uri.path();
        let refused = || {
            if path.starts_with("/api/") {
                SignInRequired::Api
            } else {
                SignInRequired::Page {
                    next: path.to_string(),
                }
            }
        };
        let web = &state.web;
        let Some(session) = cookie(&parts.headers, session_cookie_name(web.secure_cookies))
            .and_then(|v| web.key.open_session(v, state.clock.now()))
        else {
            return Err(refused());
        };
        match state.store.user_by_id(session.uid).await {
            Ok(Some(user)) => Ok(SignedInUser { user, session }),
            Ok(None) => Err(refused()),
            Err(e) => Err(SignInRequired::Store(e.into())),
        }
    }
}

/// A signed-in POST that passed the CSRF checks: the `X-CSRF-Token` header equals the session's
/// secret (constant time), and the `Origin`, when the browser sends one, is ours. Failing either
/// is 403 and changes nothing.
pub struct CheckedPost(pub SignedInUser);

impl FromRequestParts<IssuePageState> for CheckedPost {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &IssuePageState,
    ) -> Result<Self, Self::Rejection> {
        let signed_in = SignedInUser::from_request_parts(parts, state)
            .await
            .map_err(IntoResponse::into_response)?;
        check_origin(&parts.headers, &state.web).map_err(IntoResponse::into_response)?;
        let presented = parts
            .headers
            .get(CSRF_HEADER)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        if !same_text(presented, &signed_in.session.csrf) {
            return Err(ApiError::Forbidden(
                "This page is out of date (missing or wrong CSRF token). Reload it and try again."
                    .into(),
            )
            .into_response());
        }
        Ok(CheckedPost(signed_in))
    }
}

/// A cross-site POST shows itself by `Sec-Fetch-Site` (modern browsers) or by its `Origin`, which
/// must then be this app's public origin. (`Origin: null` is what a browser sends for a form post
/// from a page with `Referrer-Policy: no-referrer`, as ours are; the CSRF token still decides.)
pub fn check_origin(headers: &HeaderMap, web: &WebState) -> Result<(), ApiError> {
    let refused = || {
        Err(ApiError::Forbidden(
            "Requests from other sites are refused.".into(),
        ))
    };
    if let Some(site) = headers.get("sec-fetch-site")
        && site.as_bytes() != b"same-origin"
    {
        return refused();
    }
    match headers
        .get(header::ORIGIN)
        .map(|o| o.to_str().unwrap_or(""))
    {
        None | Some("null") => Ok(()),
        Some(origin) if origin == web.public_origin => Ok(()),
        Some(_) => refused(),
    }
}

/// Equal texts, compared in constant time for equal lengths.
pub fn same_text(a: &str, b: &str) -> bool {
    crate::crypto::same_bytes(a.as_bytes(), b.as_bytes())
}

/// Percent-encodes a query value (everything but unreserved characters and `/`).
pub fn encode_query_value(value: &str) -> String {
    const QUERY_VALUE: &percent_encoding::AsciiSet = &crate::encoding::UNRESERVED.remove(b'/');
    crate::encoding::percent_encode(value, QUERY_VALUE)
}

/// Where to go after signing in: a local path only (never another site, never `//host`).
pub fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n)
            if n.starts_with('/')
                && !n.starts_with("//")
                && n.len() <= 200
                && n.bytes().all(|b| {
                    b.is_ascii_alphanumeric() || matches!(b, b'/' | b'-' | b'_' | b'.')
                }) =>
        {
            n.to_string()
        }
        _ => "/".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: i64) -> Timestamp {
        Timestamp::from_unix_seconds(secs)
    }

    #[test]
    fn a_session_opens_only_untampered_with_its_own_key_and_before_it_expires() {
        let key = CookieKey::from_bytes(&[7u8; 32]);
        let session = Session {
            uid: 42,
            csrf: "c".into(),
            exp: 1_000,
        };
        let sealed = key.seal_session(&session);
        assert_eq!(key.open_session(&sealed, at(999)).unwrap().uid, 42);
        assert!(key.open_session(&sealed, at(1_000)).is_none(), "expired");
        assert!(
            CookieKey::from_bytes(&[8u8; 32])
                .open_session(&sealed, at(0))
                .is_none()
        );
        // Change the user id inside the payload and keep the old tag.
        let (_, tag) = sealed.split_once('.').unwrap();
        let forged = URL_SAFE_NO_PAD.encode(br#"{"uid":1,"csrf":"c","exp":1000}"#);
        assert!(
            key.open_session(&format!("{forged}.{tag}"), at(0))
                .is_none()
        );
        assert!(key.open_session("garbage", at(0)).is_none());
    }

    #[test]
    fn a_flow_cookie_is_never_a_session() {
        let key = CookieKey::from_bytes(&[7u8; 32]);
        let flow = SignInFlow {
            state: "s".into(),
            nonce: "n".into(),
            verifier: "v".into(),
            csrf: "c".into(),
            next: "/".into(),
            exp: 1_000,
        };
        let sealed = key.seal_flow(&flow);
        assert!(key.open_session(&sealed, at(0)).is_none());
        assert_eq!(key.open_flow(&sealed, at(0)).unwrap().state, "s");
    }

    #[test]
    fn next_is_a_local_path_or_the_root() {
        assert_eq!(safe_next(Some("/requests/7/issue")), "/requests/7/issue");
        for bad in [
            "//evil.example/x",
            "https://evil.example",
            "/a?b=c",
            "relative",
            "/a\\b",
        ] {
            assert_eq!(safe_next(Some(bad)), "/", "{bad}");
        }
        assert_eq!(safe_next(None), "/");
    }

    #[test]
    fn cookies_are_found_among_others() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; passkey_session=xyz; b=2"),
        );
        assert_eq!(cookie(&headers, "passkey_session"), Some("xyz"));
        assert_eq!(cookie(&headers, "missing"), None);
    }
}
