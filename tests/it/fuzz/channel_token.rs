//! The channel token: the `Authorization` header of `POST /api/messages`, its JWT header and its
//! claims. `ChannelAuth::verify` (what the extractor calls) is fed, against a loopback issuer
//! with our own RSA keys: any header text; a valid token with its text edited; its header or
//! claims edited and the old signature kept; its claims or header edited and signed again with the
//! published key. Only a token that is signed and says what a channel token must say passes;
//! everything else is an `AuthError` (a 401 at the edge), never a panic. Over HTTP, an edited token
//! is a 401 that stores nothing and sends nothing.

use super::{
    ByteEdit, apply_json, apply_text, byte_edits, config, edit_anything, json_edits, runtime,
};
use crate::common::channel::{APP_ID, FakeConnector, Issuer, message, signing_key};
use crate::common::{TestServer, fresh_sqlite, t0, test_settings};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use passkey::bot::auth::{BOT_FRAMEWORK_ISSUER, ChannelAuth, ChannelIdentity};
use passkey::domain::{Clock, ManualClock};
use passkey::store::Store;
use proptest::prelude::*;
use proptest::test_runner::TestRunner;
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

const SERVICE_URL: &str = "https://smba.trafficmanager.net/emea/";
const SKEW: i64 = 300;

fn header_json() -> Value {
    json!({"alg": "RS256", "typ": "JWT", "kid": "kid-a"})
}

fn claims_json(service_url: &str) -> Value {
    let now = t0().unix_seconds();
    json!({
        "iss": BOT_FRAMEWORK_ISSUER,
        "aud": APP_ID,
        "exp": now + 3600,
        "nbf": now - 60,
        "serviceurl": service_url,
    })
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// `header.claims.signature` over exactly these JSON texts, signed with fixture key `key`.
fn signed(header: &str, claims: &str, key: &str) -> String {
    let message = format!("{}.{}", b64(header.as_bytes()), b64(claims.as_bytes()));
    let signature = jsonwebtoken::crypto::sign(
        message.as_bytes(),
        &signing_key(key),
        jsonwebtoken::Algorithm::RS256,
    )
    .unwrap();
    format!("{message}.{signature}")
}

fn valid_token(service_url: &str) -> (String, String, String) {
    let header = header_json().to_string();
    let claims = claims_json(service_url).to_string();
    let token = signed(&header, &claims, "channel-a");
    (header, claims, token)
}

/// A verifier, with its keys fetched, and the runtime it runs on.
struct Verifier {
    rt: tokio::runtime::Runtime,
    auth: ChannelAuth,
    _issuer: Issuer,
}

fn start_verifier() -> Verifier {
    let rt = runtime();
    let (issuer, auth) = rt.block_on(async {
        let issuer = Issuer::start().await;
        let clock: Arc<dyn Clock> = Arc::new(ManualClock::new(t0()));
        let auth = ChannelAuth::new(
            APP_ID.into(),
            issuer.bf_metadata_url(),
            None,
            reqwest::Client::new(),
            clock,
        );
        let (_, _, token) = valid_token(SERVICE_URL);
        auth.verify(Some(&format!("Bearer {token}")), SERVICE_URL, "msteams")
            .await
            .expect("the unedited token passes");
        (issuer, auth)
    });
    Verifier {
        rt,
        auth,
        _issuer: issuer,
    }
}

impl Verifier {
    fn verify(&self, authorization: &str) -> Result<ChannelIdentity, String> {
        self.rt
            .block_on(
                self.auth
                    .verify(Some(authorization), SERVICE_URL, "msteams"),
            )
            .map_err(|e| {
                let shown = e.to_string();
                assert!(shown.len() <= 300, "a refusal of {} bytes", shown.len());
                shown
            })
    }
}

/// What a token that passed must have said.
fn check_accepted(header: &Value, claims: &Value) -> Result<(), TestCaseError> {
    let now = t0().unix_seconds();
    prop_assert_eq!(&header["alg"], "RS256");
    prop_assert!(header.get("crit").is_none());
    prop_assert_eq!(&claims["iss"], BOT_FRAMEWORK_ISSUER);
    let aud_ok = claims["aud"] == APP_ID
        || claims["aud"]
            .as_array()
            .is_some_and(|a| a.iter().any(|v| v == APP_ID));
    prop_assert!(aud_ok, "aud {}", claims["aud"]);
    let exp = claims["exp"].as_i64();
    prop_assert!(
        exp.is_some_and(|exp| now <= exp.saturating_add(SKEW)),
        "exp {}",
        claims["exp"]
    );
    if let Some(nbf) = claims.get("nbf") {
        prop_assert!(
            nbf.as_i64().is_some_and(|nbf| nbf <= now + SKEW),
            "nbf {nbf}"
        );
    }
    let url = claims["serviceurl"].as_str().unwrap_or_default();
    prop_assert!(
        url.trim_end_matches('/')
            .eq_ignore_ascii_case(SERVICE_URL.trim_end_matches('/')),
        "serviceurl {}",
        claims["serviceurl"]
    );
    Ok(())
}

#[test]
fn any_token_is_checked_and_only_a_signed_valid_one_passes() {
    let v = start_verifier();
    let (header, claims, token) = valid_token(SERVICE_URL);
    let parts: Vec<&str> = token.split('.').collect();
    let run = |cases, strategy: BoxedStrategy<Mutation>| {
        let mut runner = TestRunner::new(proptest::test_runner::Config {
            source_file: Some(file!()),
            ..config(cases)
        });
        runner
            .run(&strategy, |mutation| {
                let outcome = match &mutation {
                    Mutation::Header(text) => {
                        prop_assert!(v.verify(text).is_err(), "{text:?} passed");
                        return Ok(());
                    }
                    Mutation::Text(edits) => {
                        let edited = apply_text(&token, edits);
                        prop_assume!(edited != token);
                        prop_assert!(
                            v.verify(&format!("Bearer {edited}")).is_err(),
                            "{edited} passed"
                        );
                        return Ok(());
                    }
                    Mutation::Unsigned {
                        header: h,
                        claims: c,
                    } => {
                        let h = if h.is_null() {
                            header.clone()
                        } else {
                            h.to_string()
                        };
                        let c = if c.is_null() {
                            claims.clone()
                        } else {
                            c.to_string()
                        };
                        prop_assume!(h != header || c != claims);
                        let edited =
                            format!("{}.{}.{}", b64(h.as_bytes()), b64(c.as_bytes()), parts[2]);
                        (v.verify(&format!("Bearer {edited}")), None)
                    }
                    Mutation::Resigned {
                        header: h,
                        claims: c,
                        key,
                    } => {
                        let edited = signed(&h.to_string(), &c.to_string(), key);
                        let outcome = v.verify(&format!("Bearer {edited}"));
                        (outcome, Some((h.clone(), c.clone(), *key)))
                    }
                };
                match outcome {
                    (Ok(_), None) => prop_assert!(
                        false,
                        "{mutation:?}: an edit kept the old signature and passed"
                    ),
                    (Ok(_), Some((h, c, key))) => {
                        prop_assert_eq!(
                            key,
                            "channel-a",
                            "signed with an unpublished or unendorsed key"
                        );
                        prop_assert_eq!(&h["kid"], "kid-a");
                        check_accepted(&h, &c)?;
                    }
                    (Err(_), _) => {}
                }
                Ok(())
            })
            .unwrap();
    };
    let header_v = header_json();
    let claims_v = claims_json(SERVICE_URL);
    run(
        256,
        prop_oneof![
            "(Bearer |bearer |BEARER |)?.{0,200}".prop_map(Mutation::Header),
            proptest::collection::vec(any::<u8>(), 0..300)
                .prop_map(|b| Mutation::Header(format!("Bearer {}", String::from_utf8_lossy(&b)))),
        ]
        .boxed(),
    );
    run(256, byte_edits().prop_map(Mutation::Text).boxed());
    let (h, c) = (header_v.clone(), claims_v.clone());
    run(
        256,
        (json_edits(), any::<bool>())
            .prop_map(move |(edits, in_header)| {
                if in_header {
                    Mutation::Unsigned {
                        header: apply_json(&h, &edits, &edit_anything),
                        claims: Value::Null,
                    }
                } else {
                    Mutation::Unsigned {
                        header: Value::Null,
                        claims: apply_json(&c, &edits, &edit_anything),
                    }
                }
            })
            .boxed(),
    );
    let (h, c) = (header_v, claims_v);
    run(
        256,
        (
            json_edits(),
            any::<bool>(),
            prop_oneof![4 => Just("channel-a"), 1 => Just("channel-b")],
        )
            .prop_map(move |(edits, in_header, key)| {
                let (header, claims) = if in_header {
                    (apply_json(&h, &edits, &edit_anything), c.clone())
                } else {
                    (h.clone(), apply_json(&c, &edits, &edit_anything))
                };
                Mutation::Resigned {
                    header,
                    claims,
                    key,
                }
            })
            .boxed(),
    );
}

#[derive(Debug, Clone)]
enum Mutation {
    /// Any `Authorization` value.
    Header(String),
    /// The valid token's text, edited.
    Text(Vec<ByteEdit>),
    /// The header or the claims edited (`null`: the original), the old signature kept.
    Unsigned { header: Value, claims: Value },
    /// The header or the claims edited and signed again with fixture key `key`.
    Resigned {
        header: Value,
        claims: Value,
        key: &'static str,
    },
}

/// The app with an app id, keys from the local issuer, a fake Connector on loopback.
struct Channel {
    rt: tokio::runtime::Runtime,
    connector: FakeConnector,
    server: TestServer,
    store: Arc<dyn Store>,
    _issuer: Issuer,
    _db: crate::common::SqliteTestDb,
    _https: crate::common::tokens::HttpsTokens,
    _dir: tempfile::TempDir,
}

fn start_channel() -> Channel {
    let rt = runtime();
    let (issuer, connector, server, db, dir, https) = rt.block_on(async {
        let issuer = Issuer::start().await;
        let connector = FakeConnector::start().await;
        let db = fresh_sqlite().await;
        passkey::demo::load_if_empty(db.store.as_ref(), t0())
            .await
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let metadata = issuer.bf_metadata_url();
        // azure_identity asks for the Connector token over https only: a TLS front the test trusts.
        let https = crate::common::tokens::HttpsTokens::front(&issuer.oauth_authority()).await;
        let authority = https.authority.clone();
        let env = [
            ("PASSKEY_BOT__APP_ID", APP_ID),
            ("PASSKEY_BOT__APP_PASSWORD", "test-app-password"),
            ("PASSKEY_BOT__OPENID_METADATA_URL", metadata.as_str()),
            ("PASSKEY_BOT__OAUTH_AUTHORITY", authority.as_str()),
            ("PASSKEY_BOT__CONNECTOR_HOSTS", "127.0.0.1"),
        ];
        let mut settings = test_settings(dir.path(), &env);
        https.trusted_by(&mut settings);
        let server = TestServer::start(settings, db.store.clone()).await;
        (issuer, connector, server, db, dir, https)
    });
    Channel {
        rt,
        connector,
        store: db.store.clone(),
        server,
        _issuer: issuer,
        _https: https,
        _db: db,
        _dir: dir,
    }
}

async fn snapshot(c: &Channel) -> (i64, usize, usize) {
    (
        c.store.count_users().await.unwrap(),
        c.store.audit_events_after(0, 100_000).await.unwrap().len(),
        c.connector.calls().len(),
    )
}

#[test]
fn edited_tokens_over_http_are_401s_that_change_nothing() {
    let c = &start_channel();
    let http = reqwest::Client::new();
    let n = AtomicUsize::new(0);
    let (_, _, token) = valid_token(&c.connector.service_url);
    let post = |authorization: &str| {
        let id = format!("tok-{}", n.fetch_add(1, Ordering::SeqCst));
        let body = message(&c.connector.service_url, &id, "help");
        let mut r = http.post(c.server.url("/api/messages")).json(&body);
        if let Ok(v) = reqwest::header::HeaderValue::from_str(authorization) {
            r = r.header("authorization", v);
        }
        c.rt.block_on(async { r.send().await.unwrap().status().as_u16() })
    };
    // The unedited token passes, so the refusals below are the edits' doing.
    assert_eq!(post(&format!("Bearer {token}")), 200);
    let mut runner = TestRunner::new(proptest::test_runner::Config {
        source_file: Some(file!()),
        ..config(48)
    });
    runner
        .run(&(byte_edits(), any::<bool>()), |(edits, whole)| {
            let authorization = if whole {
                apply_text(&format!("Bearer {token}"), &edits)
            } else {
                format!("Bearer {}", apply_text(&token, &edits))
            };
            // `bearer` is as good as `Bearer`, and an edit may only touch the spaces around it.
            prop_assume!(
                !authorization
                    .trim()
                    .eq_ignore_ascii_case(&format!("bearer {token}"))
            );
            let before = c.rt.block_on(snapshot(c));
            let status = post(&authorization);
            prop_assert_eq!(status, 401, "{}", authorization);
            prop_assert_eq!(
                c.rt.block_on(snapshot(c)),
                before,
                "a refused token changed something"
            );
            Ok(())
        })
        .unwrap();
}

/// Found by `any_token_is_checked_and_only_a_signed_valid_one_passes`: a signed token whose `exp`
/// is `i64::MAX` overflowed the clock-skew addition (a panic in debug builds; in release it wrapped
/// and a token valid forever read as expired).
#[test]
fn a_token_expiring_at_the_end_of_time_is_checked_without_overflow() {
    let v = start_verifier();
    let header = header_json().to_string();
    let mut claims = claims_json(SERVICE_URL);
    claims["exp"] = json!(i64::MAX);
    let token = signed(&header, &claims.to_string(), "channel-a");
    assert!(v.verify(&format!("Bearer {token}")).is_ok());
    // And at the other end: an `nbf` far in the future is still "not yet".
    let mut claims = claims_json(SERVICE_URL);
    claims["nbf"] = json!(i64::MAX);
    let token = signed(&header, &claims.to_string(), "channel-a");
    assert_eq!(
        v.verify(&format!("Bearer {token}")).err().as_deref(),
        Some("token not yet valid")
    );
}
