//! The issuance page's cookies: the session cookie and the sign-in flow cookie
//! (`src/web/session.rs`, read by `SignedInUser`, `CheckedPost`, `/signin/dev` and
//! `/signin/callback`). A cookie that is not exactly one we sealed opens to nothing; over HTTP it
//! is a 401 for `/api/…`, a redirect to sign in for a page, a 403 at `/signin/dev`, and it changes
//! nothing (no audit event, no session cookie set). A cookie sealed with the right key but whose
//! payload has the wrong shape opens to nothing too, never to a guess.

use super::{ByteEdit, apply_bytes, apply_json, byte_edits, config, edit_anything, json_edits};
use crate::common::web::{WebClient, WebServer, attr_value};
use crate::common::{fresh_sqlite, t0};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use passkey::domain::Timestamp;
use passkey::web::session::{CookieKey, Session, SignInFlow, cookie};
use proptest::prelude::*;
use proptest::test_runner::TestRunner;
use serde_json::{Value, json};

const KEY: [u8; 32] = [0x5a; 32];
const SESSION_PURPOSE: &str = "passkey-session-v1";
const FLOW_PURPOSE: &str = "passkey-signin-flow-v1";

fn now() -> Timestamp {
    t0()
}

fn session_json() -> Value {
    json!({"uid": 1, "csrf": "Q2hlY2tlZC1jc3JmLXZhbHVl", "exp": now().unix_seconds() + 3600})
}

fn flow_json() -> Value {
    json!({
        "state": "c3RhdGU", "nonce": "bm9uY2U", "verifier": "dmVyaWZpZXI", "csrf": "Y3NyZg",
        "next": "/requests/7/issue", "exp": now().unix_seconds() + 600,
    })
}

/// Seals `payload` the way the app does (`base64url(JSON).base64url(HMAC(key, purpose‖0‖JSON))`),
/// whatever its shape: what someone holding the key, or a bug writing the cookie, could produce.
fn seal_raw(purpose: &str, payload: &[u8]) -> String {
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, &KEY);
    let tag = aws_lc_rs::hmac::sign(&key, &[purpose.as_bytes(), &[0], payload].concat());
    format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(payload),
        URL_SAFE_NO_PAD.encode(tag)
    )
}

fn valid_session() -> String {
    seal_raw(SESSION_PURPOSE, session_json().to_string().as_bytes())
}

fn valid_flow() -> String {
    seal_raw(FLOW_PURPOSE, flow_json().to_string().as_bytes())
}

proptest! {
    #![proptest_config(config(512))]

    /// Any change to a sealed cookie's text makes it open to nothing.
    #[test]
    fn an_edited_cookie_opens_to_nothing(edits in byte_edits(), flow in any::<bool>()) {
        let key = CookieKey::from_bytes(&KEY);
        let original = if flow { valid_flow() } else { valid_session() };
        let edited = String::from_utf8_lossy(&apply_bytes(original.as_bytes(), &edits)).into_owned();
        prop_assume!(edited != original);
        prop_assert!(key.open_session(&edited, now()).is_none(), "{edited}");
        prop_assert!(key.open_flow(&edited, now()).is_none(), "{edited}");
    }

    #[test]
    fn any_text_opens_to_nothing(text in ".{0,200}", dotted in "[A-Za-z0-9_-]{0,80}\\.[A-Za-z0-9_-]{0,60}") {
        let key = CookieKey::from_bytes(&KEY);
        for t in [&text, &dotted] {
            prop_assert!(key.open_session(t, now()).is_none());
            prop_assert!(key.open_flow(t, now()).is_none());
        }
    }

    /// Correctly sealed payloads of the wrong shape open to nothing; of the right shape, to
    /// exactly what they say, and only before they expire.
    #[test]
    fn a_sealed_payload_opens_only_when_it_is_well_formed(
        edits in json_edits(),
        flow in any::<bool>(),
        raw in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..200)),
    ) {
        let key = CookieKey::from_bytes(&KEY);
        let (purpose, base) = if flow { (FLOW_PURPOSE, flow_json()) } else { (SESSION_PURPOSE, session_json()) };
        let payload = match raw {
            Some(bytes) => bytes,
            None => apply_json(&base, &edits, &edit_anything).to_string().into_bytes(),
        };
        let sealed = seal_raw(purpose, &payload);
        if flow {
            let expected = serde_json::from_slice::<SignInFlow>(&payload).ok().filter(|f| f.exp > now().unix_seconds());
            let opened = key.open_flow(&sealed, now());
            prop_assert_eq!(opened.as_ref().map(|f| (&f.state, &f.nonce, &f.verifier, &f.csrf, &f.next, f.exp)),
                expected.as_ref().map(|f| (&f.state, &f.nonce, &f.verifier, &f.csrf, &f.next, f.exp)));
            // A flow cookie never passes as a session.
            prop_assert!(key.open_session(&sealed, now()).is_none());
        } else {
            let expected = serde_json::from_slice::<Session>(&payload).ok().filter(|s| s.exp > now().unix_seconds());
            let opened = key.open_session(&sealed, now());
            prop_assert_eq!(opened.as_ref().map(|s| (s.uid, &s.csrf, s.exp)), expected.as_ref().map(|s| (s.uid, &s.csrf, s.exp)));
            prop_assert!(key.open_flow(&sealed, now()).is_none());
        }
    }

    /// `Cookie` headers of any bytes a header may hold: a value is found only as written.
    #[test]
    fn any_cookie_header_is_read_without_panicking(
        headers in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..120), 0..4),
        name in prop_oneof![Just("passkey_session".to_string()), "[a-z_=; ]{0,12}"],
    ) {
        let mut map = axum::http::HeaderMap::new();
        for h in &headers {
            if let Ok(v) = axum::http::HeaderValue::from_bytes(h) {
                map.append(axum::http::header::COOKIE, v);
            }
        }
        if let Some(found) = cookie(&map, &name) {
            let pair = format!("{name}={found}");
            prop_assert!(
                map.get_all(axum::http::header::COOKIE).iter().any(|v| v.to_str().is_ok_and(|t| t.contains(&pair))),
                "{pair:?} is not in the headers"
            );
        }
    }
}

/// The issuance page with a known cookie key, Alice signed in once: her session cookie, the
/// page's CSRF token, and a flow cookie with its form's CSRF value.
struct Site {
    rt: tokio::runtime::Runtime,
    server: WebServer,
    session: String,
    csrf: String,
    flow: String,
    flow_csrf: String,
    _db: crate::common::SqliteTestDb,
    _dir: tempfile::TempDir,
}

fn start_site() -> Site {
    let rt = super::runtime();
    let (server, db, dir, session, csrf, flow, flow_csrf) = rt.block_on(async {
        let db = fresh_sqlite().await;
        let dir = tempfile::tempdir().unwrap();
        let key = STANDARD.encode(KEY);
        let server = WebServer::start(
            db.store.clone(),
            dir.path(),
            &[("PASSKEY_WEB__SESSION_KEY", key.as_str())],
        )
        .await;
        let alice = WebClient::new(&server.base);
        alice.sign_in_dev("Alice Requester", "/").await;
        let session = alice.cookies.lock().unwrap()["passkey_session"].clone();
        let csrf = key_session(&session).csrf;
        // A fresh sign-in page: its flow cookie and the CSRF value in its forms.
        let other = WebClient::new(&server.base);
        let page = other.get("/signin?next=/").await;
        let html = page.text().await.unwrap();
        let flow = other.cookies.lock().unwrap()["passkey_signin"].clone();
        let flow_csrf = attr_value(&html, "name=\"csrf\" value=\"");
        (server, db, dir, session, csrf, flow, flow_csrf)
    });
    Site {
        rt,
        server,
        session,
        csrf,
        flow,
        flow_csrf,
        _db: db,
        _dir: dir,
    }
}

fn key_session(sealed: &str) -> Session {
    CookieKey::from_bytes(&KEY)
        .open_session(sealed, now())
        .expect("the app seals with the configured key")
}

/// What a refused cookie must leave as it was.
async fn audit_count(server: &WebServer) -> usize {
    server
        .store
        .audit_events_after(0, 100_000)
        .await
        .unwrap()
        .len()
}

/// The three places a cookie is read, with `cookie_header` as the browser's `Cookie` line:
/// returns (page status and location, API status, dev sign-in status, whether it set a session).
async fn probe(site: &Site, cookie_header: &[u8]) -> (u16, String, u16, u16, bool) {
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let url = |p: &str| site.server.url(p);
    let with_cookie = |r: reqwest::RequestBuilder| match reqwest::header::HeaderValue::from_bytes(
        cookie_header,
    ) {
        Ok(v) => r.header("cookie", v),
        Err(_) => r,
    };
    let page = with_cookie(http.get(url("/requests/999/issue")))
        .send()
        .await
        .unwrap();
    let location = page
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let api = with_cookie(http.post(url("/api/totp/proof")))
        .header("origin", &site.server.base)
        .header("x-csrf-token", &site.csrf)
        .json(&json!({"change": "enroll"}))
        .send()
        .await
        .unwrap();
    let alice = site.server.user("alice@contoso.example").await;
    let dev = with_cookie(http.post(url("/signin/dev")))
        .header("origin", &site.server.base)
        .form(&[
            ("csrf", site.flow_csrf.as_str()),
            ("user_id", &alice.id.to_string()),
            ("next", "/"),
        ])
        .send()
        .await
        .unwrap();
    let set_session = dev.headers().get_all("set-cookie").iter().any(|v| {
        v.to_str()
            .is_ok_and(|t| t.starts_with("passkey_session=") && !t.contains("Max-Age=0"))
    });
    (
        page.status().as_u16(),
        location,
        api.status().as_u16(),
        dev.status().as_u16(),
        set_session,
    )
}

#[test]
fn edited_cookies_are_refused_over_http_and_change_nothing() {
    let site = &start_site();
    // The unedited cookies pass, so the refusals below are the edits' doing.
    site.rt.block_on(async {
        let header = format!(
            "passkey_session={}; passkey_signin={}",
            site.session, site.flow
        );
        let (page, location, _api, dev, set_session) = probe(site, header.as_bytes()).await;
        assert!(!location.starts_with("/signin"), "{page} {location}");
        assert_eq!((dev, set_session), (303, true));
    });
    let mut runner = TestRunner::new(proptest::test_runner::Config {
        source_file: Some(file!()),
        ..config(48)
    });
    let strategy = (
        byte_edits(),
        byte_edits(),
        proptest::collection::vec(any::<u8>(), 0..120),
        0u8..3,
    );
    runner
        .run(&strategy, |(session_edits, flow_edits, raw, shape)| {
            let edit = |text: &str, edits: &[ByteEdit]| {
                String::from_utf8_lossy(&apply_bytes(text.as_bytes(), edits)).into_owned()
            };
            let session = edit(&site.session, &session_edits);
            let flow = edit(&site.flow, &flow_edits);
            prop_assume!(session != site.session && flow != site.flow);
            let header = match shape {
                0 => format!("passkey_session={session}; passkey_signin={flow}").into_bytes(),
                1 => format!("passkey_signin={flow};passkey_session={session};x=1").into_bytes(),
                _ => raw,
            };
            site.rt.block_on(async {
                let before = audit_count(&site.server).await;
                let (page, location, api, dev, set_session) = probe(site, &header).await;
                prop_assert_eq!(page, 303);
                prop_assert!(location.starts_with("/signin?next="), "{}", location);
                prop_assert_eq!(api, 401);
                prop_assert_eq!(dev, 403);
                prop_assert!(!set_session);
                prop_assert_eq!(
                    audit_count(&site.server).await,
                    before,
                    "a refused cookie wrote audit"
                );
                Ok(())
            })
        })
        .unwrap();
}
