//! `POST /api/messages` end to end: the real app on port 0, a local OpenID/JWKS issuer with our own
//! RSA keys, and a fake Bot Connector on loopback. Every forged token is a 401 that stores nothing
//! and sends nothing.

use crate::common;

use common::channel::{
    APP_ID, CONNECTOR_TOKEN, FakeConnector, Issuer, OTHER_TENANT, TENANT, message, sign,
};
use common::{TestServer, fresh_sqlite, t0, test_settings};
use passkey::store::{ActivityClaim, ConversationStore, Store, UserStore};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;

struct Harness {
    issuer: Issuer,
    /// The issuer's token endpoint over TLS (the client-secret credential's way in).
    _https: common::tokens::HttpsTokens,
    connector: FakeConnector,
    server: TestServer,
    store: Arc<dyn Store>,
    _db: common::SqliteTestDb,
    _dir: tempfile::TempDir,
    client: reqwest::Client,
    /// Audit events written before any activity arrived (demo data, default policies).
    audit_at_start: usize,
}

impl Harness {
    async fn start() -> Harness {
        Self::with(&[]).await
    }

    /// A production-like channel: app id and password set, keys from the local issuer.
    async fn with(extra: &[(&str, &str)]) -> Harness {
        let issuer = Issuer::start().await;
        let connector = FakeConnector::start().await;
        let db = fresh_sqlite().await;
        passkey::demo::load_if_empty(db.store.as_ref(), t0())
            .await
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let metadata = issuer.bf_metadata_url();
        let https = common::tokens::HttpsTokens::front(&issuer.oauth_authority()).await;
        let authority = https.authority.clone();
        let entra = issuer.entra_metadata_template();
        let mut env = vec![
            ("PASSKEY_BOT__APP_ID", APP_ID),
            ("PASSKEY_BOT__APP_PASSWORD", "test-app-password"),
            ("PASSKEY_BOT__OPENID_METADATA_URL", metadata.as_str()),
            ("PASSKEY_BOT__OAUTH_AUTHORITY", authority.as_str()),
            ("PASSKEY_BOT__ENTRA_OPENID_METADATA_URL", entra.as_str()),
            // The fake Connector is on loopback, which a bot with an app id only reaches when told.
            ("PASSKEY_BOT__CONNECTOR_HOSTS", "127.0.0.1"),
        ];
        env.extend_from_slice(extra);
        let mut settings = test_settings(dir.path(), &env);
        https.trusted_by(&mut settings);
        let server = TestServer::start(settings, db.store.clone()).await;
        let store = db.store.clone() as Arc<dyn Store>;
        let audit_at_start = store.audit_events_after(0, 10_000).await.unwrap().len();
        Harness {
            issuer,
            _https: https,
            connector,
            server,
            store,
            _db: db,
            _dir: dir,
            client: reqwest::Client::new(),
            audit_at_start,
        }
    }

    /// Standard claims for a Bot Framework channel token at the server's current time.
    fn claims(&self) -> Value {
        let now = self.server.clock.now_secs();
        json!({
            "iss": "https://api.botframework.com",
            "aud": APP_ID,
            "exp": now + 3600,
            "nbf": now - 60,
            "serviceurl": self.connector.service_url,
        })
    }

    fn token(&self) -> String {
        sign("channel-a", "kid-a", &self.claims())
    }

    fn message(&self, id: &str, text: &str) -> Value {
        message(&self.connector.service_url, id, text)
    }

    async fn post(&self, authorization: Option<String>, body: &Value) -> reqwest::Response {
        let mut r = self
            .client
            .post(self.server.url("/api/messages"))
            .json(body);
        if let Some(a) = authorization {
            r = r.header("authorization", a);
        }
        r.send().await.unwrap()
    }

    async fn post_raw(&self, authorization: Option<String>, body: Vec<u8>) -> reqwest::Response {
        let mut r = self
            .client
            .post(self.server.url("/api/messages"))
            .header("content-type", "application/json")
            .body(body);
        if let Some(a) = authorization {
            r = r.header("authorization", a);
        }
        r.send().await.unwrap()
    }

    /// Nothing stored by any turn: no processed activity, no conversation, no new user, no audit.
    async fn assert_nothing_stored(&self, case: &str, activity_id: &str) {
        let users_before = 5; // the demo set
        assert_eq!(
            self.store.count_users().await.unwrap(),
            users_before,
            "{case}: a user was stored"
        );
        assert!(
            self.store
                .conversation("a:1alice-personal")
                .await
                .unwrap()
                .is_none(),
            "{case}: conversation stored"
        );
        // The refused activity was not marked processed (this probe marks it, so ids must be unique).
        assert!(
            self.never_processed(activity_id).await,
            "{case}: the activity was recorded as processed"
        );
        let audit = self.store.audit_events_after(0, 10_000).await.unwrap();
        assert_eq!(
            audit.len(),
            self.audit_at_start,
            "{case}: an audit event was written"
        );
        assert!(
            self.connector.calls().is_empty(),
            "{case}: something was sent to the connector"
        );
    }
}

impl Harness {
    /// Whether the activity was never recorded as processed: a probe claims it (and so marks it;
    /// each test's activity ids must be unique).
    async fn never_processed(&self, activity_id: &str) -> bool {
        self.store
            .claim_activity(
                "a:1alice-personal",
                activity_id,
                "probe",
                t0(),
                t0().plus(time::Duration::minutes(1)),
            )
            .await
            .unwrap()
            == passkey::store::ActivityClaim::Claimed
    }

    /// A refused activity left no trace: it was not recorded as processed, and the Connector got
    /// only the `replies` of the activities answered before it.
    async fn assert_no_trace_of(&self, replies: usize, activity_id: &str) {
        assert!(
            self.never_processed(activity_id).await,
            "{activity_id}: the activity was recorded as processed"
        );
        assert_eq!(
            self.connector.calls().len(),
            replies,
            "{activity_id}: something was sent to the connector"
        );
    }
}

trait ClockSecs {
    fn now_secs(&self) -> i64;
}

impl ClockSecs for passkey::domain::ManualClock {
    fn now_secs(&self) -> i64 {
        use passkey::domain::Clock;
        self.now().unix_seconds()
    }
}

fn bearer(token: &str) -> Option<String> {
    Some(format!("Bearer {token}"))
}

fn b64url(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..=chunk.len() {
            out.push(A[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

#[tokio::test]
async fn a_valid_channel_token_gets_a_reply_through_the_connector_with_an_app_token() {
    let h = Harness::start().await;
    let r = h.post(bearer(&h.token()), &h.message("m-1", "help")).await;
    assert_eq!(r.status(), 200);
    let calls = h.connector.wait_for(1).await;
    assert_eq!(calls.len(), 1);
    let reply = &calls[0];
    assert_eq!(reply.method, "POST");
    assert_eq!(
        reply.path,
        "/connector/v3/conversations/a:1alice-personal/activities/m-1"
    );
    assert_eq!(
        reply.authorization.as_deref(),
        Some(format!("Bearer {CONNECTOR_TOKEN}").as_str())
    );
    assert_eq!(reply.body["type"], "message");
    assert_eq!(reply.body["replyToId"], "m-1");
    assert_eq!(reply.body["recipient"]["id"], "29:1alice");
    assert_eq!(
        reply.body["attachments"][0]["contentType"],
        "application/vnd.microsoft.card.adaptive"
    );
    assert!(
        common::message_text(&reply.body).contains("request RECORD"),
        "the help card shows how to ask: {}",
        reply.body
    );
    // The client-credentials request carried the right scope and app id.
    let form = h
        .issuer
        .state
        .last_token_form
        .lock()
        .unwrap()
        .clone()
        .unwrap();
    assert!(form.contains("grant_type=client_credentials"), "{form}");
    assert!(
        form.contains("scope=https%3A%2F%2Fapi.botframework.com%2F.default"),
        "{form}"
    );
    assert!(form.contains(&format!("client_id={APP_ID}")), "{form}");
    // The sender and the conversation are remembered, with the verified service URL.
    let conversation = h
        .store
        .conversation("a:1alice-personal")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(conversation.service_url, h.connector.service_url);
    assert!(conversation.user_id.is_some());
}

#[tokio::test]
async fn the_connector_token_is_fetched_once_and_reused() {
    let h = Harness::start().await;
    for i in 0..3 {
        let r = h
            .post(bearer(&h.token()), &h.message(&format!("m-{i}"), "help"))
            .await;
        assert_eq!(r.status(), 200);
    }
    assert_eq!(h.connector.wait_for(3).await.len(), 3);
    assert_eq!(
        h.issuer
            .state
            .token_requests
            .load(std::sync::atomic::Ordering::SeqCst),
        1
    );
    assert_eq!(h.issuer.key_fetches(), 1, "channel keys are cached too");
}

/// The forged-token battery: every case is a 401 with nothing stored and nothing sent.
#[tokio::test]
async fn forged_and_broken_tokens_are_all_refused() {
    let h = Harness::with(&[("PASSKEY_BOT__TENANT_ID", TENANT)]).await;
    let now = h.server.clock.now_secs();
    let base = h.claims();
    let with = |patch: Value| {
        let mut c = base.clone();
        for (k, v) in patch.as_object().unwrap() {
            if v.is_null() {
                c.as_object_mut().unwrap().remove(k);
            } else {
                c[k] = v.clone();
            }
        }
        c
    };
    let good = h.token();
    let parts: Vec<&str> = good.split('.').collect();
    let alg_none = format!(
        "{}.{}.",
        b64url(br#"{"alg":"none","typ":"JWT","kid":"kid-a"}"#),
        parts[1]
    );
    let hs256 = {
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
        header.kid = Some("kid-a".into());
        let public = std::fs::read(format!(
            "{}/tests/fixtures/test-keys.json",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap();
        jsonwebtoken::encode(
            &header,
            &base,
            &jsonwebtoken::EncodingKey::from_secret(&public),
        )
        .unwrap()
    };
    let rs512 = {
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS512);
        header.kid = Some("kid-a".into());
        jsonwebtoken::encode(&header, &base, &common::channel::signing_key("channel-a")).unwrap()
    };
    let no_kid = {
        let header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
        jsonwebtoken::encode(&header, &base, &common::channel::signing_key("channel-a")).unwrap()
    };
    let tampered = {
        let forged_payload = b64url(
            with(json!({"aud": "some-other-bot"}))
                .to_string()
                .as_bytes(),
        );
        format!("{}.{}.{}", parts[0], forged_payload, parts[2])
    };
    let entra = |iss: String, extra: Value| {
        let mut c = json!({"iss": iss, "aud": APP_ID, "exp": now + 3600, "nbf": now - 60, "ver": "2.0", "azp": APP_ID});
        for (k, v) in extra.as_object().unwrap() {
            c[k] = v.clone();
        }
        sign("channel-b", "entra-kid", &c)
    };
    let cases: Vec<(&str, Option<String>)> = vec![
        ("no Authorization header", None),
        ("empty bearer", Some("Bearer ".into())),
        ("not a JWT", bearer("not-a-jwt")),
        (
            "two segments",
            bearer("eyJhbGciOiJSUzI1NiJ9.eyJpc3MiOiJ4In0"),
        ),
        (
            "basic auth scheme",
            Some("Basic YWxhZGRpbjpvcGVuc2VzYW1l".into()),
        ),
        ("alg none", bearer(&alg_none)),
        ("HS256 keyed with public material", bearer(&hs256)),
        ("RS512 instead of RS256", bearer(&rs512)),
        ("no kid", bearer(&no_kid)),
        (
            "unknown kid, unpublished key",
            bearer(&sign("rogue", "kid-rogue", &base)),
        ),
        (
            "known kid, wrong key (bad signature)",
            bearer(&sign("rogue", "kid-a", &base)),
        ),
        ("tampered payload", bearer(&tampered)),
        (
            "signature stripped",
            bearer(&format!("{}.{}.", parts[0], parts[1])),
        ),
        (
            "expired beyond skew",
            bearer(&sign(
                "channel-a",
                "kid-a",
                &with(json!({"exp": now - 301 - 60})),
            )),
        ),
        (
            "not yet valid beyond skew",
            bearer(&sign(
                "channel-a",
                "kid-a",
                &with(json!({"nbf": now + 400})),
            )),
        ),
        (
            "no exp",
            bearer(&sign("channel-a", "kid-a", &with(json!({"exp": null})))),
        ),
        (
            "exp not a number",
            bearer(&sign(
                "channel-a",
                "kid-a",
                &with(json!({"exp": "tomorrow"})),
            )),
        ),
        (
            "wrong audience",
            bearer(&sign(
                "channel-a",
                "kid-a",
                &with(json!({"aud": "another-bot"})),
            )),
        ),
        (
            "audience missing",
            bearer(&sign("channel-a", "kid-a", &with(json!({"aud": null})))),
        ),
        (
            "wrong issuer",
            bearer(&sign(
                "channel-a",
                "kid-a",
                &with(json!({"iss": "https://api.botframework.evil"})),
            )),
        ),
        (
            "missing serviceurl claim",
            bearer(&sign(
                "channel-a",
                "kid-a",
                &with(json!({"serviceurl": null})),
            )),
        ),
        (
            "serviceurl differs from the activity",
            bearer(&sign(
                "channel-a",
                "kid-a",
                &with(json!({"serviceurl": "https://smba.trafficmanager.net/evil/"})),
            )),
        ),
        (
            "key not endorsed for msteams",
            bearer(&sign("channel-b", "kid-b", &base)),
        ),
        (
            "Entra token from another tenant",
            bearer(&entra(
                format!("https://login.microsoftonline.com/{OTHER_TENANT}/v2.0"),
                json!({}),
            )),
        ),
        (
            "Entra v1 token from another tenant",
            bearer(&entra(
                format!("https://sts.windows.net/{OTHER_TENANT}/"),
                json!({"ver": "1.0", "appid": APP_ID}),
            )),
        ),
        (
            "Entra token for another app (azp)",
            bearer(&entra(
                format!("https://login.microsoftonline.com/{TENANT}/v2.0"),
                json!({"azp": "someone-else"}),
            )),
        ),
        (
            "Entra v1 token for another app (appid)",
            bearer(&entra(
                format!("https://sts.windows.net/{TENANT}/"),
                json!({"ver": "1.0", "appid": "someone-else"}),
            )),
        ),
        (
            "Entra-issued token signed by a Bot Framework key",
            bearer(&sign(
                "channel-a",
                "kid-a",
                &json!({"iss": format!("https://login.microsoftonline.com/{TENANT}/v2.0"), "aud": APP_ID, "exp": now + 3600, "ver": "2.0", "azp": APP_ID}),
            )),
        ),
    ];
    assert!(cases.len() >= 20);
    for (i, (case, authorization)) in cases.into_iter().enumerate() {
        let id = format!("forged-{i}");
        let r = h.post(authorization, &h.message(&id, "help")).await;
        assert_eq!(r.status(), 401, "{case}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(
            body["error"]["code"], "unauthorized",
            "{case}: the body says nothing about why"
        );
        h.assert_nothing_stored(case, &id).await;
    }
}

#[tokio::test]
async fn tokens_within_the_clock_skew_and_entra_tokens_of_the_home_tenant_are_accepted() {
    let h = Harness::with(&[("PASSKEY_BOT__TENANT_ID", TENANT)]).await;
    let now = h.server.clock.now_secs();
    let mut late = h.claims();
    late["exp"] = json!(now - 200);
    let r = h
        .post(
            bearer(&sign("channel-a", "kid-a", &late)),
            &h.message("skew-1", "help"),
        )
        .await;
    assert_eq!(
        r.status(),
        200,
        "expired 200 s ago is inside the 5-minute tolerance"
    );

    let v2 = json!({"iss": format!("https://login.microsoftonline.com/{TENANT}/v2.0"), "aud": APP_ID, "exp": now + 600, "ver": "2.0", "azp": APP_ID});
    let r = h
        .post(
            bearer(&sign("channel-b", "entra-kid", &v2)),
            &h.message("entra-2", "help"),
        )
        .await;
    assert_eq!(r.status(), 200);
    let v1 = json!({"iss": format!("https://sts.windows.net/{TENANT}/"), "aud": APP_ID, "exp": now + 600, "ver": "1.0", "appid": APP_ID});
    let r = h
        .post(
            bearer(&sign("channel-b", "entra-kid", &v1)),
            &h.message("entra-1", "help"),
        )
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(h.connector.wait_for(3).await.len(), 3);
}

#[tokio::test]
async fn a_rotated_key_is_picked_up_with_one_refetch_and_unknown_kids_cannot_force_more() {
    let h = Harness::start().await;
    assert_eq!(
        h.post(bearer(&h.token()), &h.message("k-1", "help"))
            .await
            .status(),
        200
    );
    assert_eq!(h.issuer.key_fetches(), 1);

    // The issuer rotates in a new key; the first token signed with it triggers one refetch.
    h.issuer.publish("rogue", "kid-new", &["msteams"]);
    let rotated = sign("rogue", "kid-new", &h.claims());
    assert_eq!(
        h.post(bearer(&rotated), &h.message("k-2", "help"))
            .await
            .status(),
        200
    );
    assert_eq!(h.issuer.key_fetches(), 2);

    // A burst of made-up kids right after: refused without another fetch.
    for i in 0..5 {
        let forged = sign("rogue", &format!("kid-made-up-{i}"), &h.claims());
        assert_eq!(
            h.post(bearer(&forged), &h.message(&format!("k-x{i}"), "help"))
                .await
                .status(),
            401
        );
    }
    assert_eq!(h.issuer.key_fetches(), 2, "unknown kids are rate-limited");
}

// The Connector sends one token with many activities. A token accepted before is sent again where
// the full check refuses it (expired, its key rotated out or replaced, another endpoint, another
// audience): refused, whatever the bot remembers about tokens it has seen.

#[tokio::test]
async fn a_token_accepted_before_is_refused_once_it_expires() {
    let h = Harness::start().await;
    let now = h.server.clock.now_secs();
    let mut claims = h.claims();
    claims["exp"] = json!(now + 60);
    let token = sign("channel-a", "kid-a", &claims);
    let first = h.post(bearer(&token), &h.message("exp-1", "help")).await;
    assert_eq!(first.status(), 200);

    // Past `exp` but inside the five-minute tolerance: still accepted, as the full check does.
    h.server.clock.advance(time::Duration::seconds(60 + 299));
    let inside = h.post(bearer(&token), &h.message("exp-2", "help")).await;
    assert_eq!(inside.status(), 200);

    h.server.clock.advance(time::Duration::seconds(2));
    let expired = h.post(bearer(&token), &h.message("exp-3", "help")).await;
    assert_eq!(expired.status(), 401);
    h.assert_no_trace_of(2, "exp-3").await;
}

#[tokio::test]
async fn a_token_accepted_before_is_refused_once_its_key_is_rotated_out() {
    let h = Harness::start().await;
    let token = h.token();
    let ok = h.post(bearer(&token), &h.message("rot-1", "help")).await;
    assert_eq!(ok.status(), 200);

    // The issuer replaces kid-a: the first token with the new kid makes the bot fetch the keys.
    h.issuer.retire("kid-a");
    h.issuer.publish("rogue", "kid-new", &["msteams"]);
    let rotated = sign("rogue", "kid-new", &h.claims());
    let fresh = h.post(bearer(&rotated), &h.message("rot-2", "help")).await;
    assert_eq!(fresh.status(), 200);
    assert_eq!(h.issuer.key_fetches(), 2);

    let stale = h.post(bearer(&token), &h.message("rot-3", "help")).await;
    assert_eq!(stale.status(), 401, "kid-a is no longer published");
    h.assert_no_trace_of(2, "rot-3").await;
}

#[tokio::test]
async fn a_token_accepted_before_is_refused_when_its_kid_now_names_another_key() {
    let h = Harness::start().await;
    let token = h.token();
    let ok = h
        .post(bearer(&token), &h.message("same-kid-1", "help"))
        .await;
    assert_eq!(ok.status(), 200);

    // kid-a is published again with other key material; an unknown kid makes the bot refetch.
    h.issuer.retire("kid-a");
    h.issuer.publish("rogue", "kid-a", &["msteams"]);
    let unknown = sign("rogue", "kid-unknown", &h.claims());
    let refused = h
        .post(bearer(&unknown), &h.message("same-kid-2", "help"))
        .await;
    assert_eq!(refused.status(), 401);
    assert_eq!(h.issuer.key_fetches(), 2);

    let stale = h
        .post(bearer(&token), &h.message("same-kid-3", "help"))
        .await;
    assert_eq!(
        stale.status(),
        401,
        "the signature does not verify with the key kid-a names now"
    );
    h.assert_no_trace_of(1, "same-kid-3").await;
}

#[tokio::test]
async fn a_token_accepted_before_is_still_checked_against_each_activity_and_audience() {
    let h = Harness::start().await;
    let token = h.token();
    let ok = h.post(bearer(&token), &h.message("each-1", "help")).await;
    assert_eq!(ok.status(), 200);

    // The same token with an activity from another Connector endpoint.
    let elsewhere = message(
        "https://smba.trafficmanager.net/elsewhere/",
        "each-2",
        "help",
    );
    let r = h.post(bearer(&token), &elsewhere).await;
    assert_eq!(
        r.status(),
        401,
        "the serviceurl claim names another endpoint"
    );
    h.assert_no_trace_of(1, "each-2").await;

    // The same claims for another audience are another token, checked in full.
    let mut other = h.claims();
    other["aud"] = json!("another-bot");
    let r = h
        .post(
            bearer(&sign("channel-a", "kid-a", &other)),
            &h.message("each-3", "help"),
        )
        .await;
    assert_eq!(r.status(), 401, "another audience");
    h.assert_no_trace_of(1, "each-3").await;

    let again = h.post(bearer(&token), &h.message("each-4", "help")).await;
    assert_eq!(
        again.status(),
        200,
        "the token still serves its own endpoint"
    );
    assert_eq!(h.connector.wait_for(2).await.len(), 2);
}

#[tokio::test]
async fn the_metadata_server_down_with_an_empty_cache_is_a_401_and_cached_keys_keep_working() {
    let cold = Harness::start().await;
    cold.issuer.set_down(true);
    let r = cold
        .post(bearer(&cold.token()), &cold.message("down-1", "help"))
        .await;
    assert_eq!(r.status(), 401, "never a 500, never a pass");
    cold.assert_nothing_stored("metadata down, empty cache", "down-1")
        .await;

    let warm = Harness::start().await;
    assert_eq!(
        warm.post(bearer(&warm.token()), &warm.message("up-1", "help"))
            .await
            .status(),
        200
    );
    warm.issuer.set_down(true);
    assert_eq!(
        warm.post(bearer(&warm.token()), &warm.message("up-2", "help"))
            .await
            .status(),
        200
    );
}

#[tokio::test]
async fn activities_from_tenants_that_are_not_allowed_get_403_and_nothing_is_stored() {
    let h = Harness::with(&[("PASSKEY_BOT__ALLOWED_TENANTS", OTHER_TENANT)]).await;
    let r = h.post(bearer(&h.token()), &h.message("t-1", "help")).await;
    assert_eq!(r.status(), 403);
    h.assert_nothing_stored("tenant not allowed", "t-1").await;
}

#[tokio::test]
async fn malformed_and_oversized_activities_are_refused_and_change_nothing() {
    let h = Harness::with(&[("PASSKEY_HTTP__BODY_LIMIT_BYTES", "16384")]).await;
    let token = h.token();
    let cases: Vec<(&str, Vec<u8>, u16)> = vec![
        ("not JSON", b"{\"type\": \"message\",".to_vec(), 400),
        ("JSON array", b"[]".to_vec(), 400),
        (
            "message without an id",
            serde_json::to_vec(&{
                let mut m = h.message("b-0", "help");
                m.as_object_mut().unwrap().remove("id");
                m
            })
            .unwrap(),
            400,
        ),
        (
            "missing conversation",
            serde_json::to_vec(&{
                let mut m = h.message("b-1", "help");
                m.as_object_mut().unwrap().remove("conversation");
                m
            })
            .unwrap(),
            400,
        ),
        (
            "text of the wrong type",
            serde_json::to_vec(&{
                let mut m = h.message("b-2", "help");
                m["text"] = json!(["help"]);
                m
            })
            .unwrap(),
            400,
        ),
        (
            "oversized body",
            serde_json::to_vec(&h.message("b-3", &"x".repeat(40_000))).unwrap(),
            413,
        ),
    ];
    for (i, (case, body, status)) in cases.into_iter().enumerate() {
        let r = h.post_raw(bearer(&token), body).await;
        assert_eq!(r.status().as_u16(), status, "{case}");
        h.assert_nothing_stored(case, &format!("b-{i}")).await;
    }
}

#[tokio::test]
async fn a_redelivered_activity_is_processed_once() {
    let h = Harness::start().await;
    let activity = h.message("dup-1", "help");
    assert_eq!(h.post(bearer(&h.token()), &activity).await.status(), 200);
    assert_eq!(
        h.post(bearer(&h.token()), &activity).await.status(),
        200,
        "the redelivery is acknowledged"
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(h.connector.calls().len(), 1, "but answered only once");
}

/// A turn is answered before its done mark is written (the mark rides with the next turn's
/// claim); with no next turn it is written on its own within moments, so the activity is
/// recorded as done on a quiet bot too.
#[tokio::test]
async fn a_turns_done_mark_is_written_without_a_next_turn() {
    let h = Harness::start().await;
    assert_eq!(
        h.post(bearer(&h.token()), &h.message("quiet-1", "help"))
            .await
            .status(),
        200
    );
    let now = passkey::domain::Clock::now(h.server.clock.as_ref());
    let started = std::time::Instant::now();
    loop {
        // Another instance's claim, as a redelivery would make it: done, or still held.
        let claim = h
            .store
            .claim_activity("a:1alice-personal", "quiet-1", "other-instance", now, now)
            .await
            .unwrap();
        if claim == ActivityClaim::Done {
            break;
        }
        assert_eq!(claim, ActivityClaim::InProgress);
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "the done mark was never written"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    assert_eq!(h.connector.calls().len(), 1);
}

/// Turns arriving together share their claim and "done" writes (governance::coalesce); each
/// activity is still answered once, whether its redelivery races the first delivery or comes after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_activities_and_racing_redeliveries_are_each_answered_once() {
    let h = Arc::new(Harness::start().await);
    let token = h.token();
    let mut posts = tokio::task::JoinSet::new();
    for round in 0..2 {
        for i in 0..24 {
            let (h, token) = (h.clone(), token.clone());
            posts.spawn(async move {
                let activity = h.message(&format!("burst-{i}"), "help");
                (
                    round,
                    i,
                    h.post(bearer(&token), &activity).await.status().as_u16(),
                )
            });
        }
    }
    let mut statuses = Vec::new();
    while let Some(done) = posts.join_next().await {
        statuses.push(done.unwrap());
    }
    assert!(
        statuses
            .iter()
            .all(|(_, _, status)| *status == 200 || *status == 503),
        "each delivery either ran, was acknowledged as done, or was asked to come back: {statuses:?}"
    );
    // Teams retries the ones asked to come back; by now every turn has finished.
    for (_, i, status) in &statuses {
        if *status == 503 {
            let activity = h.message(&format!("burst-{i}"), "help");
            assert_eq!(h.post(bearer(&token), &activity).await.status(), 200);
        }
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let calls = h.connector.calls();
    for i in 0..24 {
        let replies = calls
            .iter()
            .filter(|c| c.path.ends_with(&format!("/activities/burst-{i}")))
            .count();
        assert_eq!(replies, 1, "burst-{i} answered exactly once");
    }
    assert_eq!(calls.len(), 24, "no other replies");
}

#[tokio::test]
async fn a_429_with_retry_after_is_honoured_and_the_reply_still_arrives() {
    let h = Harness::start().await;
    h.connector.script(&[(429, Some("1")), (503, None)]);
    let started = std::time::Instant::now();
    assert_eq!(
        h.post(bearer(&h.token()), &h.message("r-1", "help"))
            .await
            .status(),
        200
    );
    let calls = h.connector.wait_for(3).await;
    assert_eq!(calls.len(), 3, "429, 503, then success");
    let waited = calls[1].at.duration_since(calls[0].at);
    assert!(
        waited >= Duration::from_millis(950),
        "Retry-After: 1 was honoured (waited {waited:?})"
    );
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[tokio::test]
async fn a_403_from_the_connector_is_reported_not_retried() {
    let h = Harness::start().await;
    h.connector.script(&[(403, None)]);
    assert_eq!(
        h.post(bearer(&h.token()), &h.message("f-1", "help"))
            .await
            .status(),
        200
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(h.connector.calls().len(), 1);
}

#[tokio::test]
async fn mentions_are_stripped_and_commands_are_understood() {
    let h = Harness::start().await;
    // Alice has a 1:1 chat with the bot. In a group chat she mentions the bot; a request is only
    // for her, so its answer goes to her 1:1 chat.
    assert_eq!(
        h.post(bearer(&h.token()), &h.message("c-0", "help"))
            .await
            .status(),
        200
    );
    h.connector.wait_for(1).await;
    let mut activity = h.message(
        "c-1",
        "<at>Passkey</at>   REQUEST db-prod 2h because INC-4411",
    );
    activity["conversation"] = json!({"id": "19:team-chat@thread.v2", "conversationType": "groupChat", "isGroup": true, "tenantId": TENANT});
    assert_eq!(h.post(bearer(&h.token()), &activity).await.status(), 200);
    let calls = h.connector.wait_for(3).await;
    let private = calls
        .iter()
        .find(|c| c.path.contains("1alice-personal") && c.path.ends_with("/activities"))
        .expect("the answer went to Alice's 1:1 chat");
    let text = common::message_text(&private.body);
    assert!(
        text.contains("for `db-prod` is waiting for approval"),
        "the request was submitted and routed: {text}"
    );

    assert_eq!(
        h.post(bearer(&h.token()), &h.message("c-2", "relase 4"))
            .await
            .status(),
        200
    );
    let text = h.connector.wait_for(4).await[3].body["text"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        text.contains("release"),
        "the closest command is suggested: {text}"
    );

    assert_eq!(
        h.post(bearer(&h.token()), &h.message("c-3", "records db"))
            .await
            .status(),
        200
    );
    let text = common::message_text(&h.connector.wait_for(5).await[4].body);
    let listed = |title: &str| text.lines().any(|l| l == title);
    assert!(listed("db-prod") && listed("db-staging"), "{text}");
    assert!(
        !text.contains("break-glass"),
        "records outside the person's folders stay hidden: {text}"
    );

    assert_eq!(
        h.post(bearer(&h.token()), &h.message("c-4", "admin health"))
            .await
            .status(),
        200
    );
    let text = h.connector.wait_for(6).await[5].body["text"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(text, "Admin commands are for Passkey admins.");
}

#[tokio::test]
async fn card_actions_arrive_as_invokes_and_unknown_invokes_are_not_implemented() {
    let h = Harness::start().await;
    let mut invoke = h.message("i-1", "");
    invoke["type"] = json!("invoke");
    invoke["name"] = json!("adaptiveCard/action");
    invoke["value"] = json!({"action": {"type": "Action.Execute", "verb": "approve", "data": {"requestId": 42}}, "trigger": "manual"});
    let r = h.post(bearer(&h.token()), &invoke).await;
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["statusCode"], 200);
    assert_eq!(body["type"], "application/vnd.microsoft.activity.message");
    assert!(
        body["value"]
            .as_str()
            .unwrap()
            .contains("Request #42 is not yours.")
    );

    let mut bad = invoke.clone();
    bad["id"] = json!("i-2");
    bad["value"] = json!({"action": {"type": "Action.Execute", "verb": "approve", "data": {"requestId": "DROP TABLE"}}});
    let body: Value = h.post(bearer(&h.token()), &bad).await.json().await.unwrap();
    assert_eq!(body["statusCode"], 400);
    assert_eq!(body["type"], "application/vnd.microsoft.error");

    let mut other = invoke.clone();
    other["id"] = json!("i-3");
    other["name"] = json!("composeExtension/query");
    assert_eq!(h.post(bearer(&h.token()), &other).await.status(), 501);
    assert!(
        h.connector.calls().is_empty(),
        "invokes answer in the HTTP response"
    );
}

#[tokio::test]
async fn installing_the_bot_sends_a_welcome_and_is_audited() {
    let h = Harness::start().await;
    let mut update = h.message("u-1", "");
    update["type"] = json!("conversationUpdate");
    update["membersAdded"] = json!([{"id": format!("28:{APP_ID}")}]);
    assert_eq!(h.post(bearer(&h.token()), &update).await.status(), 200);
    let calls = h.connector.wait_for(1).await;
    assert_eq!(
        calls[0].path,
        "/connector/v3/conversations/a:1alice-personal/activities"
    );
    let welcome = common::message_text(&calls[0].body);
    assert!(
        welcome.starts_with("Hi Alice Requester, I'm Passkey"),
        "the welcome card: {welcome}"
    );
    assert!(
        calls[0].body.to_string().contains("requestForm"),
        "its button opens the request form: {}",
        calls[0].body
    );
    let last = h
        .store
        .audit_events_after(0, 1000)
        .await
        .unwrap()
        .pop()
        .unwrap();
    assert_eq!(last.action, "BOT_INSTALLED");
}

#[tokio::test]
async fn dev_mode_accepts_unauthenticated_activities_but_only_replies_to_loopback() {
    let connector = FakeConnector::start().await;
    let db = fresh_sqlite().await;
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(test_settings(dir.path(), &[]), db.store.clone()).await;
    let client = reqwest::Client::new();
    let r = client
        .post(server.url("/api/messages"))
        .json(&message(&connector.service_url, "d-1", "help"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let calls = connector.wait_for(1).await;
    assert_eq!(calls[0].authorization, None, "dev mode sends no app token");

    let r = client
        .post(server.url("/api/messages"))
        .json(&message(
            "https://smba.trafficmanager.net/emea/",
            "d-2",
            "help",
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        400,
        "an unauthenticated activity cannot send the bot to a remote host"
    );
}

#[tokio::test]
async fn profile_and_address_changes_are_stored_but_unchanged_ones_are_not_rewritten() {
    let h = Harness::start().await;
    let aad = "a11ce000-0000-4000-8000-000000000001";
    assert_eq!(
        h.post(bearer(&h.token()), &h.message("p-1", "help"))
            .await
            .status(),
        200
    );
    let first = h.store.user_by_aad_object_id(aad).await.unwrap().unwrap();
    assert_eq!(first.display_name, "Alice Requester");

    // Same profile a minute later: nothing to write.
    h.server.clock.advance(time::Duration::minutes(1));
    assert_eq!(
        h.post(bearer(&h.token()), &h.message("p-2", "help"))
            .await
            .status(),
        200
    );
    let same = h.store.user_by_aad_object_id(aad).await.unwrap().unwrap();
    assert_eq!(same.updated_at, first.updated_at);

    // Renamed in Entra: the next message updates the row.
    h.server.clock.advance(time::Duration::minutes(1));
    let mut renamed = h.message("p-3", "help");
    renamed["from"]["name"] = json!("Alice Liddell");
    assert_eq!(h.post(bearer(&h.token()), &renamed).await.status(), 200);
    let updated = h.store.user_by_aad_object_id(aad).await.unwrap().unwrap();
    assert_eq!(updated.display_name, "Alice Liddell");
    assert!(updated.updated_at > first.updated_at);
    assert_eq!(
        updated.role, first.role,
        "a profile refresh never changes the role"
    );

    // Teams moves the conversation to another regional endpoint: the new address is kept.
    let other = FakeConnector::start().await;
    let mut claims = h.claims();
    claims["serviceurl"] = json!(other.service_url);
    let token = sign("channel-a", "kid-a", &claims);
    let mut moved = message(&other.service_url, "p-4", "help");
    moved["from"]["name"] = json!("Alice Liddell");
    assert_eq!(h.post(bearer(&token), &moved).await.status(), 200);
    assert_eq!(
        other.wait_for(1).await.len(),
        1,
        "the reply goes to the new endpoint"
    );
    let conversation = h
        .store
        .conversation("a:1alice-personal")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(conversation.service_url, other.service_url);
}

const BOB_AAD: &str = "b0b00000-0000-4000-8000-000000000002";

/// The message `h.message` builds, from someone else on another channel.
fn as_person(mut activity: Value, aad: &str, name: &str, conversation: &str) -> Value {
    activity["from"] = json!({"id": format!("29:{name}"), "name": name, "aadObjectId": aad});
    activity["conversation"]["id"] = json!(conversation);
    activity
}

/// Alice asks for db-prod over Teams; the request waits for Bob.
async fn pending_request(h: &Harness) -> i64 {
    let r = h
        .post(
            bearer(&h.token()),
            &h.message("ask-1", "request db-prod 2h because INC-4411"),
        )
        .await;
    assert_eq!(r.status(), 200);
    let request = h.store.request_by_id(1).await.unwrap().unwrap();
    assert_eq!(
        request.status,
        passkey::domain::RequestStatus::Pending,
        "the request waits for its approver"
    );
    request.id
}

/// Direct Line and Web Chat clients write `from.aadObjectId` and `channelData` themselves; only
/// Teams vouches for them. A key endorsed for such a channel must not let anyone act as Bob.
#[tokio::test]
async fn activities_from_channels_other_than_teams_are_refused_and_approve_nothing() {
    let h = Harness::start().await;
    let channels = [
        "webchat",
        "directline",
        "emulator",
        "MSTeams",
        "msteams ",
        "slack",
    ];
    // Each channel gets a key endorsed for it, published before the first key fetch.
    for (i, channel) in channels.iter().enumerate() {
        h.issuer
            .publish("channel-b", &format!("kid-ch-{i}"), &[channel, "msteams"]);
    }
    let id = pending_request(&h).await;
    let calls_before = h.connector.wait_for(1).await.len();
    let audit_before = h.store.audit_events_after(0, 10_000).await.unwrap().len();
    for (i, channel) in channels.into_iter().enumerate() {
        let (key, kid) = ("channel-b", format!("kid-ch-{i}"));
        let conversation = format!("a:bob-on-{i}");
        let mut approve = as_person(
            h.message(&format!("ch-{i}"), &format!("approve {id} looks fine")),
            BOB_AAD,
            "Bob DBA Lead",
            &conversation,
        );
        approve["channelId"] = json!(channel);
        let token = sign(key, &kid, &h.claims());
        let r = h.post(bearer(&token), &approve).await;
        assert_eq!(r.status(), 403, "{channel:?} is not Teams");
        assert!(
            h.store.conversation(&conversation).await.unwrap().is_none(),
            "{channel:?}: its conversation was stored"
        );
    }
    let request = h.store.request_by_id(id).await.unwrap().unwrap();
    assert_eq!(
        request.status,
        passkey::domain::RequestStatus::Pending,
        "nobody approved"
    );
    assert_eq!(
        h.store.audit_events_after(0, 10_000).await.unwrap().len(),
        audit_before,
        "nothing was audited as done"
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(h.connector.calls().len(), calls_before, "nothing was sent");
}

/// Teams puts the tenant in `channelData.tenant.id`; a different `conversation.tenantId` in the
/// same activity is a forgery, not a second opinion.
#[tokio::test]
async fn a_conversation_tenant_that_contradicts_the_channel_data_is_refused() {
    let h = Harness::start().await;
    let mut foreign = h.message("tn-1", "help");
    foreign["conversation"]["tenantId"] = json!(OTHER_TENANT);
    let mut no_channel_data = h.message("tn-2", "help");
    no_channel_data
        .as_object_mut()
        .unwrap()
        .remove("channelData");
    let mut no_tenant_in_channel_data = h.message("tn-3", "help");
    no_tenant_in_channel_data["channelData"] = json!({"tenant": {}});
    for (i, (case, activity)) in [
        ("foreign conversation.tenantId", foreign),
        ("conversation.tenantId without channelData", no_channel_data),
        (
            "conversation.tenantId without channelData.tenant.id",
            no_tenant_in_channel_data,
        ),
    ]
    .into_iter()
    .enumerate()
    {
        let r = h.post(bearer(&h.token()), &activity).await;
        assert_eq!(r.status(), 403, "{case}");
        h.assert_nothing_stored(case, &format!("tn-{}", i + 1))
            .await;
    }
    // Agreeing values are fine.
    assert_eq!(
        h.post(bearer(&h.token()), &h.message("tn-ok", "help"))
            .await
            .status(),
        200
    );
}

/// Dev mode stands in for Teams (Agents Playground, `channelId: msteams`) and the Bot Framework
/// Emulator (`emulator`); any other channel is refused there too.
#[tokio::test]
async fn dev_mode_serves_teams_and_the_emulator_but_no_other_channel() {
    let connector = FakeConnector::start().await;
    let db = fresh_sqlite().await;
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(test_settings(dir.path(), &[]), db.store.clone()).await;
    let client = reqwest::Client::new();
    for (i, (channel, status)) in [
        ("msteams", 200),
        ("emulator", 200),
        ("webchat", 403),
        ("directline", 403),
        ("test", 403),
    ]
    .into_iter()
    .enumerate()
    {
        let mut activity = message(&connector.service_url, &format!("dc-{i}"), "help");
        activity["channelId"] = json!(channel);
        activity["conversation"]["id"] = json!(format!("a:dev-{i}"));
        let r = client
            .post(server.url("/api/messages"))
            .json(&activity)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), status, "{channel}");
        let stored = db
            .store
            .conversation(&format!("a:dev-{i}"))
            .await
            .unwrap()
            .is_some();
        assert_eq!(stored, status == 200, "{channel}: stored = {stored}");
    }
}

/// The audit events written since the harness started, by action.
async fn audit_since_start(h: &Harness) -> Vec<passkey::store::AuditEvent> {
    h.store
        .audit_events_after(0, 10_000)
        .await
        .unwrap()
        .into_iter()
        .skip(h.audit_at_start)
        .collect()
}

/// The bot's Connector token goes only to Bot Framework's Connector hosts (and, here, the one
/// loopback address the test allowed). An authenticated activity naming any other host — with an
/// Entra token that carries no `serviceurl`, or a Bot Framework token vouching for that host — is
/// refused before anything is stored or sent, and the refusal is audited.
#[tokio::test]
async fn the_connector_token_is_never_sent_to_a_host_outside_the_allow_list() {
    let h = Harness::with(&[("PASSKEY_BOT__TENANT_ID", TENANT)]).await;
    let thief = FakeConnector::start_on("127.0.0.2").await;
    let port = thief
        .service_url
        .trim_start_matches("http://127.0.0.2:")
        .split('/')
        .next()
        .unwrap()
        .to_string();
    let now = h.server.clock.now_secs();
    let entra_without_serviceurl = sign(
        "channel-b",
        "entra-kid",
        &json!({"iss": format!("https://login.microsoftonline.com/{TENANT}/v2.0"), "aud": APP_ID, "exp": now + 600, "ver": "2.0", "azp": APP_ID}),
    );
    let vouching_for = |service_url: &str| {
        let mut claims = h.claims();
        claims["serviceurl"] = json!(service_url);
        sign("channel-a", "kid-a", &claims)
    };
    let cases: Vec<(&str, String, String)> = vec![
        (
            "Entra token without a serviceurl claim",
            thief.service_url.clone(),
            entra_without_serviceurl,
        ),
        (
            "Bot Framework token vouching for a foreign host",
            thief.service_url.clone(),
            vouching_for(&thief.service_url),
        ),
        (
            "an allowed host as the user name",
            format!("http://127.0.0.1@127.0.0.2:{port}/connector/"),
            vouching_for(&format!("http://127.0.0.1@127.0.0.2:{port}/connector/")),
        ),
        (
            "a Connector host's name as a prefix",
            "https://smba.trafficmanager.net.evil.example/emea/".into(),
            vouching_for("https://smba.trafficmanager.net.evil.example/emea/"),
        ),
        (
            "a wildcard domain without its dot",
            "https://evilbotframework.com/".into(),
            vouching_for("https://evilbotframework.com/"),
        ),
        (
            "plain http to a Connector host",
            "http://smba.trafficmanager.net/emea/".into(),
            vouching_for("http://smba.trafficmanager.net/emea/"),
        ),
        (
            "loopback by name",
            format!("http://localhost:{port}/connector/"),
            vouching_for(&format!("http://localhost:{port}/connector/")),
        ),
        (
            "loopback over IPv6",
            format!("http://[::1]:{port}/connector/"),
            vouching_for(&format!("http://[::1]:{port}/connector/")),
        ),
    ];
    for (i, (case, service_url, token)) in cases.iter().enumerate() {
        let id = format!("host-{i}");
        let activity = message(service_url, &id, "help");
        let r = h.post(bearer(token), &activity).await;
        assert_eq!(r.status(), 403, "{case}");
        assert!(
            h.store
                .conversation("a:1alice-personal")
                .await
                .unwrap()
                .is_none(),
            "{case}: the conversation was stored"
        );
        assert_eq!(
            h.store.count_users().await.unwrap(),
            5,
            "{case}: user stored"
        );
        assert!(
            h.store
                .claim_activity(
                    "a:1alice-personal",
                    &id,
                    "probe",
                    t0(),
                    t0().plus(time::Duration::minutes(1)),
                )
                .await
                .unwrap()
                == passkey::store::ActivityClaim::Claimed,
            "{case}: the activity was recorded as processed"
        );
        let audit = audit_since_start(&h).await;
        assert_eq!(audit.len(), i + 1, "{case}: one audit event per refusal");
        let refusal = audit.last().unwrap();
        assert_eq!(refusal.action, "CONNECTOR_HOST_REFUSED", "{case}");
        assert!(
            refusal.detail["host"]
                .as_str()
                .is_some_and(|h| !h.is_empty()),
            "{case}: the audit names the host: {}",
            refusal.detail.0
        );
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(thief.calls().is_empty(), "the foreign host heard nothing");
    assert!(h.connector.calls().is_empty(), "nothing was sent at all");
}

/// A stored conversation reference whose host is not a Connector host (a restored or edited
/// database) gets no proactive message and no token either.
#[tokio::test]
async fn proactive_messages_to_a_stored_reference_on_a_foreign_host_are_refused() {
    let h = Harness::start().await;
    let thief = FakeConnector::start_on("127.0.0.2").await;
    let bob = h
        .store
        .user_by_aad_object_id(BOB_AAD)
        .await
        .unwrap()
        .unwrap();
    h.store
        .upsert_conversation(&passkey::store::ConversationRef {
            conversation_id: "a:bob-personal".into(),
            conversation_type: "personal".into(),
            channel_id: "msteams".into(),
            service_url: thief.service_url.clone(),
            tenant_id: Some(TENANT.into()),
            bot_id: format!("28:{APP_ID}"),
            user_id: Some(bob.id),
            aad_object_id: Some(BOB_AAD.into()),
            teams_user_id: Some("29:bob".into()),
            team_id: None,
            reference: sqlx::types::Json(json!({})),
            updated_at: t0(),
        })
        .await
        .unwrap();
    pending_request(&h).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        thief.calls().is_empty(),
        "Bob's approval card (and the bot's token) went to the foreign host: {:?}",
        thief.calls()
    );
    let refusals: Vec<_> = audit_since_start(&h)
        .await
        .into_iter()
        .filter(|e| e.action == "CONNECTOR_HOST_REFUSED")
        .collect();
    assert_eq!(refusals.len(), 1, "the refusal is audited");
    assert_eq!(refusals[0].detail["host"], "127.0.0.2");
}

/// serde_json keeps the last of a repeated name, so a token that says `serviceurl` twice would
/// be read as the second while something else may read the first. Repeats anywhere in the header
/// or the claims, and `crit` headers (extensions nobody here implements), are refused.
#[tokio::test]
async fn tokens_that_repeat_a_name_or_carry_a_crit_header_are_refused() {
    let h = Harness::start().await;
    let key = common::channel::signing_key("channel-a");
    let raw = |header: &str, payload: &str| {
        let message = format!(
            "{}.{}",
            b64url(header.as_bytes()),
            b64url(payload.as_bytes())
        );
        let signature =
            jsonwebtoken::crypto::sign(message.as_bytes(), &key, jsonwebtoken::Algorithm::RS256)
                .unwrap();
        format!("{message}.{signature}")
    };
    let now = h.server.clock.now_secs();
    let service = h.connector.service_url.clone();
    let claims = |rest: &str| {
        format!(
            r#"{{"iss":"https://api.botframework.com","aud":"{APP_ID}","exp":{},"nbf":{}{rest}}}"#,
            now + 3600,
            now - 60
        )
    };
    let serviceurl = format!(r#","serviceurl":"{service}""#);
    let header = r#"{"alg":"RS256","typ":"JWT","kid":"kid-a"}"#;

    // The hand-made token itself is fine.
    let r = h
        .post(
            bearer(&raw(header, &claims(&serviceurl))),
            &h.message("dup-ok", "help"),
        )
        .await;
    assert_eq!(r.status(), 200, "a hand-signed token without repeats");

    let cases: Vec<(&str, String)> = vec![
        (
            "serviceurl twice, the last one matching the activity",
            raw(
                header,
                &claims(&format!(
                    r#","serviceurl":"https://smba.trafficmanager.net/evil/"{serviceurl}"#
                )),
            ),
        ),
        (
            "serviceurl twice, once spelled with an escape",
            raw(
                header,
                &claims(&format!(
                    r#","service\u0075rl":"https://smba.trafficmanager.net/evil/"{serviceurl}"#
                )),
            ),
        ),
        (
            "aud twice",
            raw(
                header,
                &claims(&format!(r#","aud":"another-bot"{serviceurl}"#)),
            ),
        ),
        (
            "iss twice",
            raw(
                header,
                &claims(&format!(r#","iss":"https://evil.example"{serviceurl}"#)),
            ),
        ),
        (
            "a repeat inside a nested claim",
            raw(
                header,
                &claims(&format!(r#","x":{{"a":1,"a":2}}{serviceurl}"#)),
            ),
        ),
        (
            "kid twice in the header",
            raw(
                r#"{"alg":"RS256","kid":"kid-unknown","kid":"kid-a"}"#,
                &claims(&serviceurl),
            ),
        ),
        (
            "alg twice in the header",
            raw(
                r#"{"alg":"HS256","kid":"kid-a","alg":"RS256"}"#,
                &claims(&serviceurl),
            ),
        ),
        (
            "a crit header",
            raw(
                r#"{"alg":"RS256","kid":"kid-a","b64":false,"crit":["b64"]}"#,
                &claims(&serviceurl),
            ),
        ),
        (
            "an empty crit header",
            raw(
                r#"{"alg":"RS256","kid":"kid-a","crit":[]}"#,
                &claims(&serviceurl),
            ),
        ),
    ];
    for (i, (case, token)) in cases.into_iter().enumerate() {
        let id = format!("dup-{i}");
        let r = h.post(bearer(&token), &h.message(&id, "help")).await;
        assert_eq!(r.status(), 401, "{case}");
        assert!(
            h.store
                .claim_activity(
                    "a:1alice-personal",
                    &id,
                    "probe",
                    t0(),
                    t0().plus(time::Duration::minutes(1)),
                )
                .await
                .unwrap()
                == passkey::store::ActivityClaim::Claimed,
            "{case}: the activity was processed"
        );
    }
    assert_eq!(
        h.connector.calls().len(),
        1,
        "only the first, sound token got a reply"
    );
}

/// A dev-mode server (no app id) and a fake Connector.
async fn dev_server() -> (
    TestServer,
    FakeConnector,
    common::SqliteTestDb,
    tempfile::TempDir,
) {
    let connector = FakeConnector::start().await;
    let db = fresh_sqlite().await;
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(test_settings(dir.path(), &[]), db.store.clone()).await;
    (server, connector, db, dir)
}

/// Without an app id, `/api/messages` takes unauthenticated activities. A web page the developer
/// visits can POST to it too — as a "simple" request (text/plain, a form) that needs no CORS
/// preflight. Only native clients are served: JSON, and no browser `Origin` or cross-site
/// `Sec-Fetch-Site`.
#[tokio::test]
async fn cross_site_pages_cannot_drive_the_dev_bot() {
    let (server, connector, db, _dir) = dev_server().await;
    let client = reqwest::Client::new();
    let json = "application/json";
    /// (what, content type, more headers, expected status)
    type Case<'a> = (&'a str, Option<&'a str>, Vec<(&'a str, &'a str)>, u16);
    let cases: Vec<Case> = vec![
        (
            "text/plain from a cross-site page",
            Some("text/plain"),
            vec![
                ("origin", "https://evil.example"),
                ("sec-fetch-site", "cross-site"),
                ("sec-fetch-mode", "no-cors"),
            ],
            415,
        ),
        ("text/plain", Some("text/plain;charset=UTF-8"), vec![], 415),
        (
            "a form",
            Some("application/x-www-form-urlencoded"),
            vec![],
            415,
        ),
        (
            "multipart",
            Some("multipart/form-data; boundary=x"),
            vec![],
            415,
        ),
        ("no content type", None, vec![], 415),
        (
            "JSON-like but not JSON",
            Some("application/jsonp"),
            vec![],
            415,
        ),
        ("text/json", Some("text/json"), vec![], 415),
        (
            "JSON with a cross-site Origin",
            Some(json),
            vec![("origin", "https://evil.example")],
            403,
        ),
        (
            "JSON with an opaque Origin",
            Some(json),
            vec![("origin", "null")],
            403,
        ),
        (
            "JSON from a page on this very server",
            Some(json),
            vec![("origin", &server.base)],
            403,
        ),
        (
            "JSON, Sec-Fetch-Site cross-site",
            Some(json),
            vec![("sec-fetch-site", "cross-site")],
            403,
        ),
        (
            "JSON, Sec-Fetch-Site same-site",
            Some(json),
            vec![("sec-fetch-site", "same-site")],
            403,
        ),
        (
            "JSON, Sec-Fetch-Site same-origin",
            Some(json),
            vec![("sec-fetch-site", "same-origin")],
            403,
        ),
    ];
    for (i, (case, content_type, headers, status)) in cases.into_iter().enumerate() {
        let conversation = format!("a:web-{i}");
        let mut activity = message(&connector.service_url, &format!("web-{i}"), "approve 1");
        activity["conversation"]["id"] = json!(conversation);
        let mut r = client
            .post(server.url("/api/messages"))
            .body(activity.to_string());
        if let Some(content_type) = content_type {
            r = r.header("content-type", content_type);
        }
        for (name, value) in headers {
            r = r.header(name, value);
        }
        let r = r.send().await.unwrap();
        assert_eq!(r.status().as_u16(), status, "{case}");
        assert!(
            db.store
                .conversation(&conversation)
                .await
                .unwrap()
                .is_none(),
            "{case}: the conversation was stored"
        );
        assert_eq!(
            db.store.count_users().await.unwrap(),
            0,
            "{case}: a user was stored"
        );
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(connector.calls().is_empty(), "the bot said nothing");

    // Native clients — the Agents Playground (Node), the Emulator — post JSON without Origin.
    for (i, headers) in [
        vec![("content-type", "application/json; charset=utf-8")],
        vec![
            ("content-type", "application/json"),
            ("sec-fetch-mode", "cors"),
            ("user-agent", "node"),
        ],
        vec![
            ("content-type", "Application/JSON"),
            ("sec-fetch-site", "none"),
        ],
    ]
    .into_iter()
    .enumerate()
    {
        let mut r = client
            .post(server.url("/api/messages"))
            .body(message(&connector.service_url, &format!("native-{i}"), "help").to_string());
        for (name, value) in &headers {
            r = r.header(*name, *value);
        }
        assert_eq!(r.send().await.unwrap().status(), 200, "{headers:?}");
    }
}

/// The loopback bind keeps the dev bot off the network; the handler checks the peer too, so a
/// dev server reachable some other way (a port forward, a mistaken bind) still serves only this
/// machine.
#[tokio::test]
async fn the_dev_bot_serves_loopback_peers_only() {
    // This machine's address on its default route; without one there is nothing to test.
    let probe = std::net::UdpSocket::bind("0.0.0.0:0").unwrap();
    let outside = match probe
        .connect("192.0.2.1:9")
        .and_then(|_| probe.local_addr())
    {
        Ok(addr) if !addr.ip().is_loopback() && !addr.ip().is_unspecified() => addr.ip(),
        _ => {
            eprintln!("SKIPPED: this machine has no non-loopback address");
            return;
        }
    };
    let connector = FakeConnector::start().await;
    let db = fresh_sqlite().await;
    let dir = tempfile::tempdir().unwrap();
    let listener = tokio::net::TcpListener::bind((outside, 0)).await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let server =
        TestServer::start_on(test_settings(dir.path(), &[]), db.store.clone(), listener).await;
    let r = reqwest::Client::new()
        .post(format!("http://{outside}:{port}/api/messages"))
        .json(&message(&connector.service_url, "peer-1", "help"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        403,
        "a peer at {outside} is not this machine's loopback"
    );
    assert!(
        db.store
            .conversation("a:1alice-personal")
            .await
            .unwrap()
            .is_none()
    );
    assert!(connector.calls().is_empty());
    drop(server);
}

/// Bot Framework posts JSON from its servers, never from a browser: with a valid token, other
/// content types and browser headers are refused all the same.
#[tokio::test]
async fn with_an_app_id_too_only_json_without_browser_headers_is_read() {
    let h = Harness::start().await;
    for (i, (case, content_type, header, status)) in [
        ("text/plain", "text/plain", None, 415),
        ("a form", "application/x-www-form-urlencoded", None, 415),
        (
            "a browser Origin",
            "application/json",
            Some(("origin", "https://evil.example")),
            403,
        ),
        (
            "Sec-Fetch-Site cross-site",
            "application/json",
            Some(("sec-fetch-site", "cross-site")),
            403,
        ),
    ]
    .into_iter()
    .enumerate()
    {
        let id = format!("ct-{i}");
        let mut r = h
            .client
            .post(h.server.url("/api/messages"))
            .header("authorization", format!("Bearer {}", h.token()))
            .header("content-type", content_type)
            .body(h.message(&id, "help").to_string());
        if let Some((name, value)) = header {
            r = r.header(name, value);
        }
        assert_eq!(r.send().await.unwrap().status().as_u16(), status, "{case}");
        h.assert_nothing_stored(case, &id).await;
    }
}

/// A refused request logs why, and the why holds the caller's text: a channel id, a tenant, a
/// token. Newlines in it forge no log line, and a huge one adds a few hundred bytes, not itself.
#[tokio::test]
async fn hostile_fields_and_headers_neither_forge_nor_flood_log_lines() {
    const FORGED: &str = "\nINFO passkey::bot::turn: request 1 approved by carol\r\x1b[1A";
    for format in ["pretty", "json"] {
        let (log, _guard) = common::logs::capture_app(&[("PASSKEY_LOG__FORMAT", format)]);
        let h = Harness::start().await;

        let mut channel = h.message("log-1", "help");
        channel["channelId"] = json!(format!("webchat{FORGED}{}", "c".repeat(200_000)));
        assert_eq!(h.post(bearer(&h.token()), &channel).await.status(), 403);

        let mut tenant = h.message("log-2", "help");
        tenant["conversation"]["tenantId"] = json!(format!("t{FORGED}{}", "t".repeat(100_000)));
        assert_eq!(h.post(bearer(&h.token()), &tenant).await.status(), 403);

        let huge_header = format!("Bearer {}", "e".repeat(300_000));
        assert_eq!(
            h.post(Some(huge_header), &h.message("log-3", "help"))
                .await
                .status(),
            401
        );

        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
        header.kid = Some(format!("kid{FORGED}"));
        let forged_kid = jsonwebtoken::encode(
            &header,
            &h.claims(),
            &common::channel::signing_key("channel-a"),
        )
        .unwrap();
        assert_eq!(
            h.post(bearer(&forged_kid), &h.message("log-4", "help"))
                .await
                .status(),
            401
        );

        let text = log.text();
        assert!(
            text.contains("does not serve"),
            "{format}: the refusals were logged:\n{text}"
        );
        assert!(
            !text
                .lines()
                .any(|l| l.trim_start().starts_with("INFO passkey::bot::turn")),
            "{format}: a forged line:\n{text}"
        );
        assert!(
            !text.contains('\r') && !text.contains('\x1b'),
            "{format}: raw control characters"
        );
        for line in text.lines() {
            assert!(line.len() < 2048, "{format}: a {} byte line", line.len());
        }
        assert!(
            text.len() < 64 * 1024,
            "{format}: {} bytes of log",
            text.len()
        );
        drop(h);
    }
}
