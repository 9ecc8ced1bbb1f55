//! The issuance page over HTTP, against the real app on a loopback port: sign-in (dev page and
//! Entra ID against a fake OpenID provider), the page, the token exchange, CSRF, rate limits,
//! session cookies, security headers, and that the share URL and token never reach the database
//! or the logs.

use crate::common;

use common::oidc::{CLIENT_ID, FakeEntra, IdTokenShape};
use common::web::{WebClient, WebServer, attr_value};
use common::{Db, fresh_sqlite, t0};
use serde_json::json;
use std::sync::{Arc, Mutex, OnceLock};

const ALICE: &str = "alice@contoso.example";
const BOB: &str = "bob@contoso.example";

// ---- captured logs ----------------------------------------------------------------------------

/// Everything any test in this binary logs, unredacted, at debug level.
fn logs() -> &'static Mutex<Vec<u8>> {
    static LOGS: OnceLock<Mutex<Vec<u8>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        #[derive(Clone)]
        struct Capture;
        impl std::io::Write for Capture {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                logs().lock().unwrap().extend_from_slice(buf);
                Ok(buf.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let subscriber = tracing_subscriber::fmt()
            .with_env_filter("debug,hyper=info,sqlx=info,reqwest=info,h2=info")
            .with_writer(move || Capture)
            .with_ansi(false)
            .finish();
        let _ = tracing::subscriber::set_global_default(subscriber);
        Mutex::new(Vec::new())
    })
}

fn logged_text() -> String {
    String::from_utf8_lossy(&logs().lock().unwrap()).to_string()
}

// ---- the retrieval story, on both databases ---------------------------------------------------

on_both_databases!(the_requester_retrieves_three_times_and_the_fourth_is_refused);

async fn the_requester_retrieves_three_times_and_the_fourth_is_refused(db: Db) {
    let _ = logs();
    let dir = tempfile::tempdir().unwrap();
    let server = WebServer::start(db.store.clone(), dir.path(), &[]).await;
    let id = server.request(ALICE, "db-staging").await;
    let alice = WebClient::new(&server.base);

    // Not signed in: the page sends the browser to sign in and back.
    let r = alice.get(&format!("/requests/{id}/issue")).await;
    assert_eq!(r.status(), 303);
    assert_eq!(
        r.headers()["location"],
        format!("/signin?next=/requests/{id}/issue")
    );

    alice
        .sign_in_dev("Alice Requester", &format!("/requests/{id}/issue"))
        .await;
    let page = alice
        .get(&format!("/requests/{id}/issue"))
        .await
        .text()
        .await
        .unwrap();
    assert!(page.contains("3 of 3 retrievals left."), "{page}");
    assert!(page.contains("Retrieve db-staging"), "{page}");
    let csrf = attr_value(&page, "name=\"csrf-token\" content=\"");

    let mut urls = Vec::new();
    let mut tokens = Vec::new();
    for left in [2, 1, 0] {
        let minted: serde_json::Value = alice
            .post_json(
                &format!("/api/requests/{id}/issuance-token"),
                &json!({}),
                Some(&csrf),
            )
            .await
            .json()
            .await
            .unwrap();
        let token = minted["token"].as_str().unwrap().to_string();
        assert_eq!(token.len(), 43, "32 random bytes, base64url");
        let r = alice
            .post_json(
                &format!("/api/requests/{id}/issue"),
                &json!({ "token": token }),
                Some(&csrf),
            )
            .await;
        assert_eq!(r.status(), 200);
        let share: serde_json::Value = r.json().await.unwrap();
        assert_eq!(share["retrievals_left"], left);
        assert_eq!(share["max"], 3);
        let url = share["share_url"].as_str().unwrap().to_string();
        assert!(
            url.starts_with(&format!("{}/dev-vault/share/", server.base)),
            "{url}"
        );
        // The token is used up: the same one again is refused.
        let again = alice
            .post_json(
                &format!("/api/requests/{id}/issue"),
                &json!({ "token": token }),
                Some(&csrf),
            )
            .await;
        assert_eq!(again.status(), 409);
        urls.push(url);
        tokens.push(token);
    }
    // The link opens once (its button's POST), with the secret.
    let opened = reqwest::Client::new().post(&urls[0]).send().await.unwrap();
    assert_eq!(opened.status(), 200);
    assert!(
        opened
            .text()
            .await
            .unwrap()
            .contains("This link opens once")
    );

    // The fourth retrieval is refused: no token is even minted.
    let (status, body) = alice.retrieve(id, &csrf).await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(
        body["error"]["message"],
        format!("No retrievals are left on request #{id}.")
    );
    let page = alice
        .get(&format!("/requests/{id}/issue"))
        .await
        .text()
        .await
        .unwrap();
    assert!(
        page.contains("0 of 3 retrievals left.") && page.contains("No retrievals are left"),
        "{page}"
    );

    let actions = server.audit_actions(id).await;
    assert_eq!(
        actions
            .iter()
            .filter(|a| *a == "ISSUANCE_SUCCEEDED")
            .count(),
        3,
        "{actions:?}"
    );
    assert_eq!(
        server.store.issuances_for_request(id).await.unwrap().len(),
        3
    );

    // INV-5: neither the URLs nor the tokens are in the database or the logs.
    let mut secrets: Vec<String> = urls.clone();
    secrets.extend(
        urls.iter()
            .map(|u| u.rsplit('/').next().unwrap().to_string()),
    );
    secrets.extend(tokens);
    let dumped = dump_database(&db, &server).await;
    let logged = logged_text();
    assert!(
        logged.contains("/api/requests/"),
        "the capture works: the request spans are there"
    );
    assert!(
        dumped.contains(&passkey::canonical::sha256_hex(&urls[0])),
        "the dump covers issuance_events: the link's hash is there"
    );
    for secret in &secrets {
        assert!(
            !dumped.contains(secret.as_str()),
            "{secret} is in the database"
        );
        assert!(!logged.contains(secret.as_str()), "{secret} is in the logs");
    }
    server.stop().await;
}

/// Every row of the tables a retrieval writes, as text.
async fn dump_database(db: &Db, server: &WebServer) -> String {
    let tables = [
        "requests",
        "issuance_events",
        "audit_events",
        "governance_decision_traces",
        "otp_challenges",
    ];
    let mut out = String::new();
    for table in tables {
        let sql = if db.engine == "postgres" {
            format!("SELECT t::text FROM {table} t")
        } else {
            let columns = db
                .raw
                .texts(&format!("SELECT name FROM pragma_table_info('{table}')"))
                .await
                .unwrap();
            let parts: Vec<String> = columns.iter().map(|c| format!("coalesce(CASE WHEN typeof(\"{c}\") = 'blob' THEN hex(\"{c}\") ELSE CAST(\"{c}\" AS TEXT) END, '')")).collect();
            format!("SELECT {} FROM {table}", parts.join(" || '|' || "))
        };
        for row in db.raw.texts(&sql).await.unwrap() {
            out.push_str(&row);
            out.push('\n');
        }
    }
    let _ = server;
    out
}

/// The CSRF secret inside a signed-in client's session cookie (what its page would carry).
fn session_csrf(client: &WebClient) -> String {
    use base64::Engine as _;
    let sealed = client.cookies.lock().unwrap()["passkey_session"].clone();
    let payload = sealed.split('.').next().unwrap();
    let session: serde_json::Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap(),
    )
    .unwrap();
    session["csrf"].as_str().unwrap().to_string()
}

// ---- refusals ---------------------------------------------------------------------------------

async fn start() -> (common::SqliteTestDb, tempfile::TempDir, WebServer) {
    start_with(&[]).await
}

async fn start_with(
    extra: &[(&str, &str)],
) -> (common::SqliteTestDb, tempfile::TempDir, WebServer) {
    let _ = logs();
    let db = fresh_sqlite().await;
    let dir = tempfile::tempdir().unwrap();
    let server = WebServer::start(db.store.clone(), dir.path(), extra).await;
    (db, dir, server)
}

#[tokio::test]
async fn a_wrong_token_is_refused_audited_and_uses_nothing_up() {
    let (_db, _dir, server) = start().await;
    let id = server.request(ALICE, "db-staging").await;
    let alice = WebClient::new(&server.base);
    alice
        .sign_in_dev("Alice Requester", &format!("/requests/{id}/issue"))
        .await;
    let csrf = alice.page_csrf(id).await;
    let minted: serde_json::Value = alice
        .post_json(
            &format!("/api/requests/{id}/issuance-token"),
            &json!({}),
            Some(&csrf),
        )
        .await
        .json()
        .await
        .unwrap();
    let wrong = alice
        .post_json(
            &format!("/api/requests/{id}/issue"),
            &json!({ "token": "A".repeat(43) }),
            Some(&csrf),
        )
        .await;
    assert_eq!(wrong.status(), 409);
    let body: serde_json::Value = wrong.json().await.unwrap();
    assert_eq!(
        body["error"]["message"],
        "That retrieval link is not valid any more. Reload the page to get a fresh one."
    );
    assert!(
        server
            .audit_actions(id)
            .await
            .contains(&"ISSUANCE_TOKEN_MISMATCH".to_string())
    );
    assert_eq!(
        server.store.issuances_for_request(id).await.unwrap().len(),
        0
    );
    // The real token still works, and shows what is left.
    let r = alice
        .post_json(
            &format!("/api/requests/{id}/issue"),
            &json!({ "token": minted["token"] }),
            Some(&csrf),
        )
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.json::<serde_json::Value>().await.unwrap()["retrievals_left"],
        2
    );
    // A body without a token is a client error, not a retrieval.
    let r = alice
        .post_json(
            &format!("/api/requests/{id}/issue"),
            &json!({}),
            Some(&csrf),
        )
        .await;
    assert!(r.status().is_client_error());
    server.stop().await;
}

#[tokio::test]
async fn posts_without_the_csrf_token_or_from_another_site_are_refused() {
    let (_db, _dir, server) = start().await;
    let id = server.request(ALICE, "db-staging").await;
    let alice = WebClient::new(&server.base);
    alice
        .sign_in_dev("Alice Requester", &format!("/requests/{id}/issue"))
        .await;
    let csrf = alice.page_csrf(id).await;
    let path = format!("/api/requests/{id}/issuance-token");

    let missing = alice.post_json(&path, &json!({}), None).await;
    assert_eq!(missing.status(), 403);
    let text = missing.text().await.unwrap();
    assert!(text.contains("CSRF"), "{text}");
    assert_eq!(
        alice
            .post_json(&path, &json!({}), Some("not-the-token"))
            .await
            .status(),
        403
    );
    let cross_site = alice
        .http
        .post(server.url(&path))
        .header("cookie", alice.cookie_header())
        .header("origin", "https://evil.example")
        .header("x-csrf-token", &csrf)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(cross_site.status(), 403);
    // Another person's CSRF token is not this session's.
    let bob = WebClient::new(&server.base);
    bob.sign_in_dev("Bob DBA Lead", "/").await;
    let bobs = session_csrf(&bob);
    assert_eq!(
        alice
            .post_json(&path, &json!({}), Some(&bobs))
            .await
            .status(),
        403
    );
    assert!(
        !server
            .audit_actions(id)
            .await
            .contains(&"ISSUANCE_TOKEN_MINTED".to_string()),
        "nothing was minted"
    );
    // With the token, from our own origin, it works.
    assert_eq!(
        alice
            .post_json(&path, &json!({}), Some(&csrf))
            .await
            .status(),
        200
    );
    server.stop().await;
}

#[tokio::test]
async fn too_many_attempts_get_429_with_retry_after_audited_once_per_run() {
    let (_db, _dir, server) = start_with(&[("PASSKEY_WEB__RATE_PER_USER_PER_MINUTE", "3")]).await;
    let id = server.request(ALICE, "db-staging").await;
    let alice = WebClient::new(&server.base);
    alice
        .sign_in_dev("Alice Requester", &format!("/requests/{id}/issue"))
        .await;
    let csrf = alice.page_csrf(id).await;
    let path = format!("/api/requests/{id}/issuance-token");
    for _ in 0..3 {
        assert_eq!(
            alice
                .post_json(&path, &json!({}), Some(&csrf))
                .await
                .status(),
            200
        );
    }
    for _ in 0..2 {
        let r = alice.post_json(&path, &json!({}), Some(&csrf)).await;
        assert_eq!(r.status(), 429);
        let wait: u64 = r.headers()["retry-after"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!(
            (1..=20).contains(&wait),
            "a token comes back every 20 s: {wait}"
        );
        let body: serde_json::Value = r.json().await.unwrap();
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .starts_with("Too many attempts")
        );
    }
    let actions = server.audit_actions(id).await;
    assert_eq!(
        actions
            .iter()
            .filter(|a| *a == "ISSUANCE_RATE_LIMITED")
            .count(),
        1,
        "{actions:?}"
    );
    assert_eq!(
        actions
            .iter()
            .filter(|a| *a == "ISSUANCE_TOKEN_MINTED")
            .count(),
        3
    );
    server.stop().await;
}

#[tokio::test]
async fn one_address_is_limited_across_people() {
    let (_db, _dir, server) = start_with(&[("PASSKEY_WEB__RATE_PER_IP_PER_MINUTE", "2")]).await;
    let a = server.request(ALICE, "db-staging").await;
    let alice = WebClient::new(&server.base);
    alice
        .sign_in_dev("Alice Requester", &format!("/requests/{a}/issue"))
        .await;
    let csrf = alice.page_csrf(a).await;
    let path = format!("/api/requests/{a}/issuance-token");
    assert_eq!(
        alice
            .post_json(&path, &json!({}), Some(&csrf))
            .await
            .status(),
        200
    );
    assert_eq!(
        alice
            .post_json(&path, &json!({}), Some(&csrf))
            .await
            .status(),
        200
    );
    // Bob, from the same address, is refused before anything is looked at.
    let bob = WebClient::new(&server.base);
    bob.sign_in_dev("Bob DBA Lead", "/").await;
    let r = bob
        .post_json(&path, &json!({}), Some(&session_csrf(&bob)))
        .await;
    assert_eq!(r.status(), 429);
    assert!(r.headers().contains_key("retry-after"));
    let limited = server.audit_actions(a).await;
    assert!(
        limited.contains(&"ISSUANCE_RATE_LIMITED".to_string()),
        "{limited:?}"
    );
    assert!(
        !limited.contains(&"ACCESS_DENIED_NOT_REQUESTER".to_string()),
        "refused before the lookup"
    );
    server.stop().await;
}

/// Mints an issuance token as `client` (whatever `X-Forwarded-For` it is set to send); the status.
async fn mint_status(client: &WebClient, request_id: i64, csrf: &str) -> u16 {
    client
        .post_json(
            &format!("/api/requests/{request_id}/issuance-token"),
            &json!({}),
            Some(csrf),
        )
        .await
        .status()
        .as_u16()
}

#[tokio::test]
async fn a_client_rotating_the_leftmost_forwarded_for_entry_is_still_limited() {
    // Behind one trusted proxy (the test's loopback peer): the proxy appends the address it saw.
    let (_db, _dir, server) = start_with(&[
        ("PASSKEY_WEB__TRUST_FORWARDED_FOR", "true"),
        ("PASSKEY_WEB__RATE_PER_IP_PER_MINUTE", "2"),
        ("PASSKEY_WEB__RATE_PER_USER_PER_MINUTE", "100"),
    ])
    .await;
    let id = server.request(ALICE, "db-staging").await;
    let alice = WebClient::new(&server.base);
    alice
        .sign_in_dev("Alice Requester", &format!("/requests/{id}/issue"))
        .await;
    let csrf = alice.page_csrf(id).await;

    // One comma list: whatever the client wrote, then the proxy's entry for it.
    for (i, expected) in [(1, 200), (2, 200), (3, 429), (4, 429)] {
        let chosen = format!("198.51.100.{i}, 10.9.8.{i}");
        alice.set_forwarded_for(&[&format!("{chosen}, 203.0.113.7")]);
        assert_eq!(mint_status(&alice, id, &csrf).await, expected, "{chosen}");
    }
    // The client's own header line, then a second line the proxy added.
    for (i, expected) in [(1, 200), (2, 200), (3, 429)] {
        let chosen = format!("192.0.2.{i}");
        alice.set_forwarded_for(&[&chosen, "203.0.113.9"]);
        assert_eq!(mint_status(&alice, id, &csrf).await, expected, "{chosen}");
    }
    // An IPv6 client owns its /64: walking through it is one address.
    for (i, expected) in [(1, 200), (2, 200), (3, 429)] {
        let own = format!("2001:db8:7:1::{i:x}");
        alice.set_forwarded_for(&[&own]);
        assert_eq!(mint_status(&alice, id, &csrf).await, expected, "{own}");
    }
    let minted = server
        .audit_actions(id)
        .await
        .iter()
        .filter(|a| *a == "ISSUANCE_TOKEN_MINTED")
        .count();
    assert_eq!(minted, 6, "two per client address");
    server.stop().await;
}

#[tokio::test]
async fn forwarded_addresses_with_ports_map_to_the_clients_own_bucket() {
    let (_db, _dir, server) = start_with(&[
        ("PASSKEY_WEB__TRUST_FORWARDED_FOR", "true"),
        ("PASSKEY_WEB__RATE_PER_IP_PER_MINUTE", "2"),
        ("PASSKEY_WEB__RATE_PER_USER_PER_MINUTE", "100"),
    ])
    .await;
    let id = server.request(ALICE, "db-staging").await;
    let alice = WebClient::new(&server.base);
    alice
        .sign_in_dev("Alice Requester", &format!("/requests/{id}/issue"))
        .await;
    let csrf = alice.page_csrf(id).await;

    // App Service writes `ip:port`: a retrieval (two calls) from 203.0.113.7, recorded as that.
    alice.set_forwarded_for(&["203.0.113.7:50123"]);
    let (status, body) = alice.retrieve(id, &csrf).await;
    assert_eq!(status, 200, "{body}");
    let issued = server.store.issuances_for_request(id).await.unwrap();
    assert_eq!(issued[0].client_ip.as_deref(), Some("203.0.113.7"));
    // The same client from another port, or without one, has nothing left.
    for same in [" 203.0.113.7:40000 ", "203.0.113.7"] {
        alice.set_forwarded_for(&[same]);
        assert_eq!(mint_status(&alice, id, &csrf).await, 429, "{same}");
    }
    // Another client behind the same proxy has its own allowance.
    for (entry, expected) in [
        ("203.0.113.8:1234", 200),
        ("[2001:db8::1]:443", 200),
        ("2001:db8::1", 200),
        ("[2001:db8::2]:8443", 429),
        ("[2001:db8:0:1::1]:443", 200),
        ("::ffff:203.0.113.8", 200),
        ("203.0.113.8", 429),
    ] {
        alice.set_forwarded_for(&[entry]);
        assert_eq!(mint_status(&alice, id, &csrf).await, expected, "{entry}");
    }
    server.stop().await;
}

/// #14.7: the page must not tell a stranger which request numbers exist: someone else's request
/// and one that was never made get the same answer.
#[tokio::test]
async fn a_missing_request_looks_the_same_as_someone_elses() {
    let (_db, _dir, server) = start().await;
    let id = server.request(ALICE, "db-staging").await;
    let bob = WebClient::new(&server.base);
    bob.sign_in_dev("Bob DBA Lead", &format!("/requests/{id}/issue"))
        .await;
    let missing = id + 1000;
    let mut answers = Vec::new();
    for n in [id, missing] {
        let r = bob.get(&format!("/requests/{n}/issue")).await;
        let status = r.status().as_u16();
        let page = r.text().await.unwrap().replace(&format!("#{n}"), "#N");
        answers.push((status, page));
    }
    assert_eq!(answers[0].0, 403);
    assert_eq!(answers[0], answers[1], "existing vs missing");
    server.stop().await;
}

#[tokio::test]
async fn another_person_is_told_the_request_is_not_theirs() {
    let (_db, _dir, server) = start().await;
    let id = server.request(ALICE, "db-staging").await;
    let bob = WebClient::new(&server.base);
    bob.sign_in_dev("Bob DBA Lead", &format!("/requests/{id}/issue"))
        .await;
    let r = bob.get(&format!("/requests/{id}/issue")).await;
    assert_eq!(r.status(), 403);
    let page = r.text().await.unwrap();
    assert!(
        page.contains(&format!("Request #{id} is not yours.")),
        "{page}"
    );
    assert!(
        !page.contains("retrievals left") && !page.contains("issue.js"),
        "{page}"
    );
    assert!(
        server
            .audit_actions(id)
            .await
            .contains(&"ISSUANCE_NOT_YOURS".to_string())
    );

    // Bob's own session and CSRF token get him nothing on Alice's request either.
    let bobs_request = server.request(BOB, "grafana-admin").await;
    let csrf = bob.page_csrf(bobs_request).await;
    let r = bob
        .post_json(
            &format!("/api/requests/{id}/issuance-token"),
            &json!({}),
            Some(&csrf),
        )
        .await;
    assert_eq!(r.status(), 403);
    let actions = server.audit_actions(id).await;
    assert!(
        actions.contains(&"ACCESS_DENIED_NOT_REQUESTER".to_string()),
        "{actions:?}"
    );
    assert!(!actions.contains(&"ISSUANCE_TOKEN_MINTED".to_string()));
    // An unknown request looks the same as someone else's (see
    // a_missing_request_looks_the_same_as_someone_elses).
    assert_eq!(bob.get("/requests/999/issue").await.status(), 403);
    server.stop().await;
}

#[tokio::test]
async fn missing_forged_foreign_and_expired_session_cookies_are_refused() {
    let (_db, _dir, server) = start().await;
    let id = server.request(ALICE, "db-staging").await;
    let api = format!("/api/requests/{id}/issuance-token");
    let stranger = WebClient::new(&server.base);
    assert_eq!(
        stranger
            .post_json(&api, &json!({}), Some("x"))
            .await
            .status(),
        401
    );

    let alice = WebClient::new(&server.base);
    alice.sign_in_dev("Alice Requester", "/").await;
    let csrf = alice.page_csrf(id).await;
    let sealed = alice.cookies.lock().unwrap()["passkey_session"].clone();
    let (payload, tag) = sealed.split_once('.').unwrap();
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let mut session: serde_json::Value =
        serde_json::from_slice(&b64.decode(payload).unwrap()).unwrap();
    assert_eq!(
        session["csrf"],
        csrf.as_str(),
        "the page's CSRF token is the session's"
    );

    let with_cookie = |value: String| {
        let c = WebClient::new(&server.base);
        c.cookies
            .lock()
            .unwrap()
            .insert("passkey_session".into(), value);
        c
    };
    // Someone else's user id under Alice's tag.
    let bob = server.user(BOB).await;
    session["uid"] = json!(bob.id);
    let forged = format!(
        "{}.{tag}",
        b64.encode(serde_json::to_vec(&session).unwrap())
    );
    let c = with_cookie(forged);
    assert_eq!(
        c.post_json(&api, &json!({}), Some(&csrf)).await.status(),
        401
    );
    assert_eq!(c.get(&format!("/requests/{id}/issue")).await.status(), 303);
    // No signature at all.
    let c = with_cookie(payload.to_string());
    assert_eq!(
        c.post_json(&api, &json!({}), Some(&csrf)).await.status(),
        401
    );
    // Signed with another key (another deployment's cookie).
    let other = passkey::web::session::CookieKey::from_bytes(&[9u8; 32]);
    let c = with_cookie(other.seal_session(&passkey::web::session::Session {
        uid: server.user(ALICE).await.id,
        csrf: csrf.clone(),
        exp: t0().unix_seconds() + 600,
    }));
    assert_eq!(
        c.post_json(&api, &json!({}), Some(&csrf)).await.status(),
        401
    );
    // The real cookie works until the session lapses (15 minutes).
    assert_eq!(
        alice
            .post_json(&api, &json!({}), Some(&csrf))
            .await
            .status(),
        200
    );
    server.clock.advance(time::Duration::minutes(16));
    let r = alice.post_json(&api, &json!({}), Some(&csrf)).await;
    assert_eq!(r.status(), 401);
    assert_eq!(
        alice.get(&format!("/requests/{id}/issue")).await.headers()["location"],
        format!("/signin?next=/requests/{id}/issue")
    );
    server.stop().await;
}

#[tokio::test]
async fn every_page_carries_the_security_headers_and_runs_only_our_script() {
    let (_db, _dir, server) = start().await;
    let id = server.request(ALICE, "db-staging").await;
    let alice = WebClient::new(&server.base);
    let signin = alice
        .get(&format!("/signin?next=/requests/{id}/issue"))
        .await;
    let cookie = signin.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Lax"),
        "{cookie}"
    );
    assert!(
        !cookie.contains("Secure"),
        "dev serves plain http on loopback: {cookie}"
    );
    alice
        .sign_in_dev("Alice Requester", &format!("/requests/{id}/issue"))
        .await;
    let r = alice.get(&format!("/requests/{id}/issue")).await;
    let h = r.headers().clone();
    let csp = h["content-security-policy"].to_str().unwrap();
    for part in [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "form-action 'self'",
        "base-uri 'none'",
        "frame-ancestors https://teams.microsoft.com https://*.teams.microsoft.com",
    ] {
        assert!(csp.contains(part), "`{part}` missing from {csp}");
    }
    assert!(!csp.contains("unsafe"), "{csp}");
    assert_eq!(h["cache-control"], "no-store");
    assert_eq!(h["referrer-policy"], "no-referrer");
    assert_eq!(h["x-content-type-options"], "nosniff");
    assert!(
        !h.contains_key("strict-transport-security"),
        "no HSTS on dev's plain http"
    );
    let html = r.text().await.unwrap();
    let scripts: Vec<&str> = html
        .match_indices("<script")
        .map(|(i, _)| &html[i..i + 60.min(html.len() - i)])
        .collect();
    assert_eq!(scripts.len(), 1, "{scripts:?}");
    assert!(
        scripts[0].starts_with("<script src=\"/static/issue.js\""),
        "{scripts:?}"
    );
    assert!(
        html.contains("</script>")
            && html
                .split("<script")
                .nth(1)
                .unwrap()
                .split("</script>")
                .next()
                .unwrap()
                .ends_with('>'),
        "no inline code"
    );
    assert!(!html.contains(" style="), "no inline style");
    assert!(
        html.contains("<label for=\"code\">") && html.contains("<label for=\"share-url\">"),
        "inputs are labelled"
    );

    let js = alice.get("/static/issue.js").await;
    assert_eq!(
        js.headers()["content-type"],
        "text/javascript; charset=utf-8"
    );
    assert_eq!(js.headers()["x-content-type-options"], "nosniff");
    assert!(js.text().await.unwrap().contains("X-CSRF-Token"));
    let css = alice.get("/static/passkey.css").await;
    assert_eq!(css.headers()["content-type"], "text/css; charset=utf-8");
    // API answers carry them too.
    let api = alice
        .post_json(
            &format!("/api/requests/{id}/issuance-token"),
            &json!({}),
            None,
        )
        .await;
    assert_eq!(api.headers()["cache-control"], "no-store");
    server.stop().await;
}

#[tokio::test]
async fn outside_dev_cookies_are_secure_and_hsts_is_sent() {
    // Production settings need Entra; the fake provider stands in for it.
    let entra = FakeEntra::start(t0().unix_seconds()).await;
    let db = fresh_sqlite().await;
    let dir = tempfile::tempdir().unwrap();
    let owned = entra.settings();
    let mut extra: Vec<(&str, &str)> = owned.iter().map(|(k, v)| (*k, v.as_str())).collect();
    extra.extend_from_slice(&[
        ("PASSKEY_PROFILE", "production"),
        ("PASSKEY_BOT__APP_ID", "app"),
        ("PASSKEY_BOT__APP_PASSWORD", "pw"),
        ("PASSKEY_BOT__ALLOWED_TENANTS", common::web::DEMO_TENANT),
        ("PASSKEY_VAULT__BACKEND", "commander-service"),
        ("PASSKEY_VAULT__COMMANDER_URL", "http://127.0.0.1:9"),
        ("PASSKEY_VAULT__COMMANDER_API_KEY", "k"),
        ("PASSKEY_PUBLIC_URL", "https://passkey.contoso.example"),
        ("PASSKEY_WEB__OIDC__AUTHORITY", &entra.base),
    ]);
    // `Settings::check` wants https authorities in production; build the app directly instead.
    let mut env: std::collections::BTreeMap<String, String> = extra
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    env.insert("PASSKEY_DATA_DIR".into(), dir.path().display().to_string());
    let settings = passkey::config::Settings::from_layers(None, &env).unwrap();
    // Production never creates the data-encryption key; provision it as an operator would (here:
    // a dev start on the same data directory creates it).
    passkey::app::data_key(&common::test_settings(dir.path(), &[]))
        .await
        .unwrap();
    let clock = Arc::new(passkey::domain::ManualClock::new(t0()));
    let app = passkey::app::App::with_store(settings, db.store.clone(), clock)
        .await
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let handle = tokio::spawn(app.run_until_stopped(listener, std::future::pending()));
    let client = WebClient::new(&base);
    let r = client.get("/signin?next=/requests/1/issue").await;
    assert_eq!(r.status(), 303);
    assert!(
        r.headers()["location"]
            .to_str()
            .unwrap()
            .starts_with(&entra.base)
    );
    let cookie = r.headers()["set-cookie"].to_str().unwrap();
    assert!(
        cookie.starts_with("__Host-passkey_signin=") && cookie.contains("; Secure"),
        "{cookie}"
    );
    assert_eq!(
        r.headers()["strict-transport-security"],
        "max-age=31536000; includeSubDomains"
    );
    // No dev sign-in in production.
    assert_ne!(
        client
            .post_form("/signin/dev", &[("csrf", "x"), ("user_id", "1")])
            .await
            .status(),
        303
    );
    handle.abort();
}

// ---- Entra ID sign-in against a fake provider -------------------------------------------------

struct EntraWorld {
    _db: common::SqliteTestDb,
    _dir: tempfile::TempDir,
    entra: FakeEntra,
    server: WebServer,
    request_id: i64,
}

async fn entra_world() -> EntraWorld {
    let _ = logs();
    let entra = FakeEntra::start(t0().unix_seconds()).await;
    let db = fresh_sqlite().await;
    let dir = tempfile::tempdir().unwrap();
    let owned = entra.settings();
    let extra: Vec<(&str, &str)> = owned.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let server = WebServer::start(db.store.clone(), dir.path(), &extra).await;
    let request_id = server.request(ALICE, "db-staging").await;
    EntraWorld {
        _db: db,
        _dir: dir,
        entra,
        server,
        request_id,
    }
}

/// Starts a sign-in, lets the fake provider sign the person in, and returns the callback path.
async fn go_to_entra(client: &WebClient, next: &str) -> String {
    let r = client.get(&format!("/signin?next={next}")).await;
    assert_eq!(r.status(), 303);
    let authorize = r.headers()["location"].to_str().unwrap().to_string();
    let r = client.get(&authorize).await;
    assert!(r.status().is_redirection(), "{}", r.status());
    let back = r.headers()["location"].to_str().unwrap().to_string();
    back[back.find("/signin/callback").expect("back to our callback")..].to_string()
}

/// The outcome of a whole sign-in with the provider's token bent by `shape`.
async fn sign_in_with(world: &EntraWorld, shape: IdTokenShape) -> (u16, String, WebClient) {
    world.entra.shape(shape);
    let client = WebClient::new(&world.server.base);
    let next = format!("/requests/{}/issue", world.request_id);
    let callback = go_to_entra(&client, &next).await;
    let r = client.get(&callback).await;
    let status = r.status().as_u16();
    let location = r
        .headers()
        .get("location")
        .map(|l| l.to_str().unwrap().to_string());
    let body = r.text().await.unwrap();
    (status, location.unwrap_or(body), client)
}

async fn refusal_reasons(server: &WebServer) -> Vec<String> {
    server
        .store
        .audit_events_after(0, 1000)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.action == "SIGNIN_REFUSED")
        .map(|e| e.detail.0["reason"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn entra_sign_in_with_pkce_lands_on_the_page() {
    let world = entra_world().await;
    let client = WebClient::new(&world.server.base);
    let next = format!("/requests/{}/issue", world.request_id);
    let callback = go_to_entra(&client, &next).await;
    let sent = world
        .entra
        .state
        .authorize_queries
        .lock()
        .unwrap()
        .last()
        .cloned()
        .unwrap();
    assert_eq!(sent["client_id"], CLIENT_ID);
    assert_eq!(sent["code_challenge_method"], "S256");
    assert_eq!(
        sent["redirect_uri"],
        format!("{}/signin/callback", world.server.base)
    );
    assert_eq!(sent["code_challenge"].len(), 43);
    assert!(
        !sent.contains_key("code_verifier"),
        "the verifier never leaves the server's cookie"
    );
    let r = client.get(&callback).await;
    assert_eq!(
        r.status(),
        303,
        "{:?}",
        refusal_reasons(&world.server).await
    );
    assert_eq!(r.headers()["location"], next.as_str());
    let page = client.get(&next).await;
    assert_eq!(page.status(), 200);
    assert!(
        page.text()
            .await
            .unwrap()
            .contains("Signed in as Alice Requester")
    );
    assert!(
        world
            .server
            .all_audit_actions()
            .await
            .contains(&"SIGNED_IN".to_string())
    );
    // The code was good once: replaying the callback is refused.
    let replay = client.get(&callback).await;
    assert_eq!(replay.status(), 403);
    world.server.stop().await;
}

#[tokio::test]
async fn entra_tokens_that_are_not_right_are_all_refused() {
    let world = entra_world().await;
    let cases: Vec<(&str, IdTokenShape)> = vec![
        (
            "bad_signature_or_audience",
            IdTokenShape {
                signing_key: "rogue",
                ..Default::default()
            },
        ),
        (
            "bad_signature_or_audience",
            IdTokenShape {
                audience: "another-app".into(),
                ..Default::default()
            },
        ),
        (
            "bad_signature_or_audience",
            IdTokenShape {
                audience: String::new(),
                ..Default::default()
            },
        ),
        (
            "tenant_not_allowed",
            IdTokenShape {
                tenant: common::channel::OTHER_TENANT.into(),
                ..Default::default()
            },
        ),
        (
            "expired",
            IdTokenShape {
                expires_in: -120,
                ..Default::default()
            },
        ),
        (
            "nonce_mismatch",
            IdTokenShape {
                nonce: Some("someone-elses-nonce".into()),
                ..Default::default()
            },
        ),
        (
            "no_account",
            IdTokenShape {
                oid: "00000000-0000-4000-8000-00000000dead".into(),
                ..Default::default()
            },
        ),
    ];
    for (reason, shape) in &cases {
        let (status, body, client) = sign_in_with(&world, shape.clone()).await;
        assert_eq!(status, 403, "{reason}: {body}");
        assert!(body.contains("Sign-in failed"), "{reason}: {body}");
        assert!(
            !client
                .cookies
                .lock()
                .unwrap()
                .contains_key("passkey_session"),
            "{reason}: no session"
        );
        assert_eq!(
            refusal_reasons(&world.server)
                .await
                .last()
                .map(String::as_str),
            Some(*reason)
        );
    }
    // Expired within the minute of leeway is still fine.
    let (status, _, _) = sign_in_with(
        &world,
        IdTokenShape {
            expires_in: -30,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(status, 303);
    world.server.stop().await;
}

#[tokio::test]
async fn entra_state_mismatch_and_a_code_from_another_sign_in_are_refused() {
    let world = entra_world().await;
    let next = format!("/requests/{}/issue", world.request_id);
    // The state in the callback is not this browser's.
    let client = WebClient::new(&world.server.base);
    let callback = go_to_entra(&client, &next).await;
    let tampered = callback.replace("state=", "state=x");
    assert_eq!(client.get(&tampered).await.status(), 403);
    assert_eq!(
        refusal_reasons(&world.server).await.last().unwrap(),
        "state_mismatch"
    );

    // A code obtained by an attacker's sign-in, injected into the victim's browser with the
    // victim's own state: PKCE binds the code to the attacker's verifier, so the provider refuses.
    let attacker = WebClient::new(&world.server.base);
    let attackers = go_to_entra(&attacker, &next).await;
    let victim = WebClient::new(&world.server.base);
    let victims = go_to_entra(&victim, &next).await;
    let code = |cb: &str| {
        cb.split("code=")
            .nth(1)
            .unwrap()
            .split('&')
            .next()
            .unwrap()
            .to_string()
    };
    let injected = victims.replace(&code(&victims), &code(&attackers));
    let r = victim.get(&injected).await;
    assert_eq!(r.status(), 403);
    assert_eq!(
        world.entra.state.refusals.lock().unwrap().last().unwrap(),
        "invalid_grant"
    );
    assert_eq!(
        refusal_reasons(&world.server).await.last().unwrap(),
        "code_refused"
    );

    // No flow cookie at all (the link opened in another browser): refused, nothing redeemed.
    let elsewhere = WebClient::new(&world.server.base);
    let before = world.entra.state.refusals.lock().unwrap().len();
    assert_eq!(elsewhere.get(&callback).await.status(), 403);
    assert_eq!(world.entra.state.refusals.lock().unwrap().len(), before);
    // The provider reporting an error is a refusal too.
    let client = WebClient::new(&world.server.base);
    let callback = go_to_entra(&client, &next).await;
    let st = callback
        .split("state=")
        .nth(1)
        .unwrap()
        .split('&')
        .next()
        .unwrap()
        .to_string();
    let r = client
        .get(&format!("/signin/callback?error=access_denied&state={st}"))
        .await;
    assert_eq!(r.status(), 403);
    assert_eq!(
        refusal_reasons(&world.server).await.last().unwrap(),
        "provider_error:access_denied"
    );
    // With Entra configured there is no dev sign-in.
    assert_eq!(client.get("/signin").await.status(), 303);
    assert_eq!(
        client
            .post_form("/signin/dev", &[("csrf", "x"), ("user_id", "1")])
            .await
            .status(),
        403
    );
    world.server.stop().await;
}

// ---- the second factor ------------------------------------------------------------------------

const ALICE_PHONE: &str = "+15550104411";

/// Alice signed in on an approved db-prod request (HIGH: a second factor is required).
async fn second_factor_world() -> (
    common::SqliteTestDb,
    tempfile::TempDir,
    WebServer,
    WebClient,
    i64,
    String,
) {
    let (db, dir, server) = start_with(&[("PASSKEY_WEB__RATE_PER_USER_PER_MINUTE", "100")]).await;
    let id = server.approved_request(ALICE, "db-prod", BOB).await;
    assert!(
        server
            .store
            .request_by_id(id)
            .await
            .unwrap()
            .unwrap()
            .otp_required
    );
    let alice = WebClient::new(&server.base);
    alice
        .sign_in_dev("Alice Requester", &format!("/requests/{id}/issue"))
        .await;
    let csrf = alice.page_csrf(id).await;
    (db, dir, server, alice, id, csrf)
}

async fn verify(
    client: &WebClient,
    id: i64,
    csrf: &str,
    challenge: &serde_json::Value,
    code: &str,
) -> (u16, serde_json::Value) {
    let r = client
        .post_json(
            &format!("/api/requests/{id}/issue/verify"),
            &json!({ "challenge_id": challenge, "code": code }),
            Some(csrf),
        )
        .await;
    (r.status().as_u16(), r.json().await.unwrap())
}

fn wrong(code: &str) -> String {
    let last = (code.as_bytes()[5] - b'0' + 1) % 10;
    format!("{}{last}", &code[..5])
}

#[tokio::test]
async fn a_texted_code_unlocks_the_retrieval_once() {
    let (_db, _dir, server, alice, id, csrf) = second_factor_world().await;
    server.set_phone(ALICE, ALICE_PHONE).await;
    let page = alice
        .get(&format!("/requests/{id}/issue"))
        .await
        .text()
        .await
        .unwrap();
    assert!(page.contains("a code is texted to •••• 4411"), "{page}");

    let (status, started) = alice.retrieve(id, &csrf).await;
    assert_eq!(status, 200, "{started}");
    assert_eq!(started["channel"], "sms");
    assert_eq!(started["destination_hint"], "•••• 4411");
    assert!(
        started.get("share_url").is_none(),
        "no link before the code"
    );
    assert_eq!(
        server.store.issuances_for_request(id).await.unwrap().len(),
        0
    );
    let code = server.sms.last_code_to(ALICE_PHONE);

    let (status, body) = verify(&alice, id, &csrf, &started["challenge_id"], &wrong(&code)).await;
    assert_eq!(status, 403);
    assert_eq!(
        body["error"]["message"],
        "That code is not right. 4 attempt(s) left."
    );
    let (status, share) = verify(&alice, id, &csrf, &started["challenge_id"], &code).await;
    assert_eq!(status, 200, "{share}");
    assert!(
        share["share_url"]
            .as_str()
            .unwrap()
            .contains("/dev-vault/share/")
    );
    assert_eq!(share["retrievals_left"], 2);
    // The same code again (a replay) gets nothing more.
    let (status, body) = verify(&alice, id, &csrf, &started["challenge_id"], &code).await;
    assert_ne!(status, 200, "{body}");
    assert_eq!(
        server.store.issuances_for_request(id).await.unwrap().len(),
        1
    );
    let actions = server.audit_actions(id).await;
    for action in [
        "OTP_SENT",
        "OTP_WRONG_CODE",
        "OTP_VERIFIED",
        "ISSUANCE_SUCCEEDED",
    ] {
        assert!(
            actions.contains(&action.to_string()),
            "{action} missing: {actions:?}"
        );
    }
    server.stop().await;
}

/// (#21.9) A request keeps the second factor it was decided with, and a level raised after the
/// approval adds one: an admin who marks a record HIGH stops its next retrieval without a code,
/// even for a request approved while it was MEDIUM. Lowering the level never drops a factor a
/// request was decided with. New requests carry the level they were decided at in their trace.
#[tokio::test]
async fn a_level_raised_after_approval_asks_for_a_code_and_a_lowered_one_keeps_it() {
    use passkey::governance::admin::{Actor, GovernanceAdmin};
    let (_db, _dir, server) = start_with(&[("PASSKEY_WEB__RATE_PER_USER_PER_MINUTE", "100")]).await;
    let admin = GovernanceAdmin::new(server.store.clone(), server.state.clock.clone());
    server.set_phone(ALICE, ALICE_PHONE).await;

    // Approved while MEDIUM: no factor was asked for then.
    let raised = server
        .approved_request(ALICE, "db-analytics-readonly", BOB)
        .await;
    let decided_at = server.store.request_by_id(raised).await.unwrap().unwrap();
    assert!(!decided_at.otp_required);
    admin
        .set_sensitivity(
            &Actor::Cli,
            "db-analytics-readonly",
            "HIGH",
            "holds salaries now",
        )
        .await
        .unwrap();
    // Approved while HIGH, then lowered.
    let lowered = server.approved_request(ALICE, "db-prod", BOB).await;
    admin
        .set_sensitivity(&Actor::Cli, "db-prod", "MEDIUM", "only test data left")
        .await
        .unwrap();

    let alice = WebClient::new(&server.base);
    alice
        .sign_in_dev("Alice Requester", &format!("/requests/{raised}/issue"))
        .await;
    for id in [raised, lowered] {
        let page = alice
            .get(&format!("/requests/{id}/issue"))
            .await
            .text()
            .await
            .unwrap();
        assert!(
            page.contains("a code is texted to •••• 4411"),
            "#{id}: {page}"
        );
        let csrf = alice.page_csrf(id).await;
        let (status, started) = alice.retrieve(id, &csrf).await;
        assert_eq!(status, 200, "#{id}: {started}");
        assert_eq!(started["channel"], "sms", "#{id}: {started}");
        assert!(
            started.get("share_url").is_none(),
            "#{id}: no link before the code"
        );
        assert!(
            server
                .store
                .issuances_for_request(id)
                .await
                .unwrap()
                .is_empty(),
            "#{id}"
        );
        let code = server.sms.last_code_to(ALICE_PHONE);
        let (status, share) = verify(&alice, id, &csrf, &started["challenge_id"], &code).await;
        assert_eq!(status, 200, "#{id}: {share}");
        assert!(share["share_url"].as_str().is_some(), "#{id}: {share}");
        // Past the resend cooldown before the next request's code.
        server.clock.advance(time::Duration::seconds(61));
    }

    // A new request is decided at the level in force, and its policy traces say which (event
    // traces — issuance, release — carry no policy inputs).
    server
        .state
        .lifecycle
        .release(&server.user(ALICE).await, raised)
        .await
        .unwrap();
    let newer = server.request(ALICE, "db-analytics-readonly").await;
    assert!(
        server
            .store
            .request_by_id(newer)
            .await
            .unwrap()
            .unwrap()
            .otp_required
    );
    let levels = |id: i64| {
        let store = server.store.clone();
        async move {
            store
                .traces_for_request(id)
                .await
                .unwrap()
                .into_iter()
                .filter_map(|t| {
                    t.inputs.0["record"]["sensitivity"]
                        .as_str()
                        .map(String::from)
                })
                .collect::<Vec<_>>()
        }
    };
    let first = levels(raised).await;
    let second = levels(newer).await;
    assert!(
        !first.is_empty() && first.iter().all(|s| s == "MEDIUM"),
        "{first:?}"
    );
    assert!(
        !second.is_empty() && second.iter().all(|s| s == "HIGH"),
        "{second:?}"
    );
    server.stop().await;
}

#[tokio::test]
async fn five_wrong_codes_lock_the_challenge() {
    let (_db, _dir, server, alice, id, csrf) = second_factor_world().await;
    server.set_phone(ALICE, ALICE_PHONE).await;
    let (_, started) = alice.retrieve(id, &csrf).await;
    let code = server.sms.last_code_to(ALICE_PHONE);
    for left in (1..=4).rev() {
        let (status, body) =
            verify(&alice, id, &csrf, &started["challenge_id"], &wrong(&code)).await;
        assert_eq!(status, 403);
        assert_eq!(
            body["error"]["message"],
            format!("That code is not right. {left} attempt(s) left.")
        );
    }
    let (status, body) = verify(&alice, id, &csrf, &started["challenge_id"], &wrong(&code)).await;
    assert_eq!(status, 403);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("locked"),
        "{body}"
    );
    // Locked: even the right code is refused now, and nothing was shared.
    let (status, body) = verify(&alice, id, &csrf, &started["challenge_id"], &code).await;
    assert_eq!(status, 403);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("locked"),
        "{body}"
    );
    assert_eq!(
        server.store.issuances_for_request(id).await.unwrap().len(),
        0
    );
    assert!(
        server
            .audit_actions(id)
            .await
            .contains(&"OTP_LOCKED".to_string())
    );
    // Starting again at once is too soon for another text; after the minute's cooldown it works.
    let (status, body) = alice.retrieve(id, &csrf).await;
    assert_eq!(status, 429, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("Please wait"),
        "{body}"
    );
    server.clock.advance(time::Duration::seconds(61));
    let (status, again) = alice.retrieve(id, &csrf).await;
    assert_eq!(status, 200, "{again}");
    let (status, _) = verify(
        &alice,
        id,
        &csrf,
        &again["challenge_id"],
        &server.sms.last_code_to(ALICE_PHONE),
    )
    .await;
    assert_eq!(status, 200);
    server.stop().await;
}

#[tokio::test]
async fn an_expired_challenge_is_refused() {
    let (_db, _dir, server, alice, id, csrf) = second_factor_world().await;
    server.set_phone(ALICE, ALICE_PHONE).await;
    let (_, started) = alice.retrieve(id, &csrf).await;
    let code = server.sms.last_code_to(ALICE_PHONE);
    server.clock.advance(time::Duration::minutes(6));
    let (status, body) = verify(&alice, id, &csrf, &started["challenge_id"], &code).await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(
        body["error"]["message"],
        "This code has expired. Start again to get a new one."
    );
    assert_eq!(
        server.store.issuances_for_request(id).await.unwrap().len(),
        0
    );
    server.stop().await;
}

#[tokio::test]
async fn without_a_phone_or_app_the_page_says_what_to_set_up_and_nothing_is_shared() {
    let (db, _dir, server, alice, id, csrf) = second_factor_world().await;
    // The demo set gives everyone a fictional number; Alice's goes.
    use common::RawSql as _;
    let alice_id = server.user(ALICE).await.id;
    db.store
        .exec(&format!(
            "DELETE FROM user_phone_numbers WHERE user_id = {alice_id}"
        ))
        .await
        .unwrap();
    let page = alice
        .get(&format!("/requests/{id}/issue"))
        .await
        .text()
        .await
        .unwrap();
    assert!(
        page.contains("you have none yet")
            && page.contains("admin totp-invite")
            && !page.contains("id=\"totp-start\""),
        "{page}"
    );
    let (status, body) = alice.retrieve(id, &csrf).await;
    assert_eq!(status, 409);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("No phone number or authenticator app"),
        "{body}"
    );
    // Someone else's challenge id is not Alice's to answer; a made-up one is refused too.
    let (status, _) = verify(&alice, id, &csrf, &json!(uuid::Uuid::new_v4()), "123456").await;
    assert!((400..500).contains(&status));
    assert_eq!(
        server.store.issuances_for_request(id).await.unwrap().len(),
        0
    );
    server.stop().await;
}

/// The secret in an otpauth URI's `secret=` (base32, RFC 4648, no padding).
fn totp_secret(uri: &str) -> Vec<u8> {
    let b32 = uri
        .split("secret=")
        .nth(1)
        .unwrap()
        .split('&')
        .next()
        .unwrap();
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let (mut bits, mut value, mut out) = (0u32, 0u32, Vec::new());
    for c in b32.bytes() {
        value = (value << 5) | alphabet.iter().position(|a| *a == c).unwrap() as u32;
        bits += 5;
        if bits >= 8 {
            out.push((value >> (bits - 8)) as u8);
            bits -= 8;
        }
    }
    out
}

/// Issue 14.1: a signed-in session is all a cookie thief has. It must not be enough to set up an
/// authenticator app (which from then on answers every HIGH/CRITICAL retrieval): without a code
/// texted to the number on file, or an admin's invitation, nothing is enrolled.
#[tokio::test]
async fn a_session_alone_cannot_enroll_an_authenticator() {
    let (_db, _dir, server, alice, _id, csrf) = second_factor_world().await;
    let alice_id = server.user(ALICE).await.id;
    for body in [
        json!({}),
        json!({ "challenge_id": uuid::Uuid::new_v4(), "code": "123456" }),
        json!({ "invitation": true }),
    ] {
        let r = alice
            .post_json("/api/totp/enroll", &body, Some(&csrf))
            .await;
        let status = r.status().as_u16();
        let answer: serde_json::Value = r.json().await.unwrap_or_default();
        assert!(
            (400..500).contains(&status) && answer.get("key_uri").is_none(),
            "{body} -> {status} {answer}"
        );
    }
    assert!(
        server
            .store
            .totp_enrollment(alice_id)
            .await
            .unwrap()
            .is_none(),
        "nothing enrolled"
    );
    server.stop().await;
}

/// Someone with no phone number on file sets up an app with an admin's invitation (from the
/// shell): once, on their own signed-in page.
#[tokio::test]
async fn an_admin_invitation_sets_up_an_authenticator_once_without_a_phone() {
    let (db, _dir, server, alice, id, csrf) = second_factor_world().await;
    use common::RawSql as _;
    let alice_id = server.user(ALICE).await.id;
    db.store
        .exec(&format!(
            "DELETE FROM user_phone_numbers WHERE user_id = {alice_id}"
        ))
        .await
        .unwrap();
    let before = alice
        .get(&format!("/requests/{id}/issue"))
        .await
        .text()
        .await
        .unwrap();
    assert!(
        before.contains("admin totp-invite") && !before.contains("totp-start"),
        "{before}"
    );
    let r = alice
        .post_json(
            "/api/totp/proof",
            &json!({ "change": "ENROLL" }),
            Some(&csrf),
        )
        .await;
    assert_eq!(r.status(), 409, "no number to text a proof to");
    server
        .state
        .otp
        .invite_totp(&passkey::governance::admin::Actor::Cli, alice_id)
        .await
        .unwrap();
    let invited = alice
        .get(&format!("/requests/{id}/issue"))
        .await
        .text()
        .await
        .unwrap();
    assert!(invited.contains("data-proof=\"invitation\""), "{invited}");
    let first = alice
        .post_json(
            "/api/totp/enroll",
            &json!({ "invitation": true }),
            Some(&csrf),
        )
        .await;
    assert_eq!(first.status(), 200);
    let second = alice
        .post_json(
            "/api/totp/enroll",
            &json!({ "invitation": true }),
            Some(&csrf),
        )
        .await;
    assert_eq!(second.status(), 403, "the invitation works once");
    server.stop().await;
}

#[tokio::test]
async fn an_authenticator_app_is_enrolled_on_the_page_and_its_codes_are_not_replayed() {
    let (_db, _dir, server, alice, id, csrf) = second_factor_world().await;
    server.set_phone(ALICE, ALICE_PHONE).await;
    // Proof first: a code texted to the number on file.
    let proof: serde_json::Value = alice
        .post_json(
            "/api/totp/proof",
            &json!({ "change": "ENROLL" }),
            Some(&csrf),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(proof["destination_hint"], "•••• 4411", "{proof}");
    let texted = server.sms.last_code_to(ALICE_PHONE);
    let page = alice
        .get(&format!("/requests/{id}/issue"))
        .await
        .text()
        .await
        .unwrap();
    assert!(page.contains("data-proof=\"texted\""), "{page}");
    let enrolled: serde_json::Value = alice
        .post_json(
            "/api/totp/enroll",
            &json!({ "proof_id": proof["proof_id"], "code": texted }),
            Some(&csrf),
        )
        .await
        .json()
        .await
        .unwrap();
    assert!(
        enrolled["qr"]
            .as_str()
            .unwrap()
            .starts_with("data:image/svg+xml;base64,")
    );
    let uri = enrolled["key_uri"].as_str().unwrap();
    assert!(uri.starts_with("otpauth://totp/"), "{uri}");
    let secret = totp_secret(uri);
    // The key for typing in is the base32 secret in groups of four, not the whole URI (#18.9).
    let typed = enrolled["key"].as_str().unwrap();
    let b32 = uri
        .split("secret=")
        .nth(1)
        .unwrap()
        .split('&')
        .next()
        .unwrap();
    assert_eq!(typed.replace(' ', ""), b32.to_ascii_uppercase(), "{typed}");
    assert!(
        typed.split(' ').all(|group| group.len() <= 4) && typed.split(' ').count() > 1,
        "{typed}"
    );
    assert!(!typed.contains("otpauth"));
    let step = |server: &WebServer| passkey::otp::totp::step_at(server.clock.now().unix_seconds());
    use passkey::domain::Clock as _;
    let first = passkey::otp::totp::totp_at_step(&secret, step(&server));
    let bad = alice
        .post_json(
            "/api/totp/confirm",
            &json!({ "code": wrong(&first) }),
            Some(&csrf),
        )
        .await;
    assert_eq!(bad.status(), 403);
    let ok = alice
        .post_json("/api/totp/confirm", &json!({ "code": first }), Some(&csrf))
        .await;
    assert_eq!(ok.status(), 200);
    let page = alice
        .get(&format!("/requests/{id}/issue"))
        .await
        .text()
        .await
        .unwrap();
    assert!(
        page.contains("from your authenticator app") && !page.contains("totp-start"),
        "{page}"
    );

    let texts_before = server.sms.sent.lock().unwrap().len();
    let (status, started) = alice.retrieve(id, &csrf).await;
    assert_eq!(status, 200, "{started}");
    assert_eq!(started["channel"], "totp");
    assert_eq!(
        server.sms.sent.lock().unwrap().len(),
        texts_before,
        "no text when the app is set up"
    );
    // The confirming code's step is used: the same code is a replay.
    let (status, body) = verify(&alice, id, &csrf, &started["challenge_id"], &first).await;
    assert_eq!(status, 403, "{body}");
    server.clock.advance(time::Duration::seconds(30));
    let next = passkey::otp::totp::totp_at_step(&secret, step(&server));
    let (status, share) = verify(&alice, id, &csrf, &started["challenge_id"], &next).await;
    assert_eq!(status, 200, "{share}");
    assert_eq!(share["retrievals_left"], 2);
    // A second enrollment over a confirmed one without proof is refused (a session alone can't
    // swap the factor), and the used proof does not work twice.
    for body in [
        json!({}),
        json!({ "proof_id": proof["proof_id"], "code": texted }),
    ] {
        assert_eq!(
            alice
                .post_json("/api/totp/enroll", &body, Some(&csrf))
                .await
                .status(),
            if body == json!({}) { 403 } else { 409 },
            "{body}"
        );
    }
    server.stop().await;
}

#[tokio::test]
async fn a_resent_code_replaces_the_first_after_the_cooldown() {
    let (_db, _dir, server, alice, id, csrf) = second_factor_world().await;
    server.set_phone(ALICE, ALICE_PHONE).await;
    let (_, started) = alice.retrieve(id, &csrf).await;
    let first = server.sms.last_code_to(ALICE_PHONE);
    let resend = |challenge: serde_json::Value| {
        let alice = &alice;
        let csrf = &csrf;
        async move {
            let r = alice
                .post_json(
                    &format!("/api/requests/{id}/issue/resend"),
                    &json!({ "challenge_id": challenge }),
                    Some(csrf),
                )
                .await;
            let status = r.status().as_u16();
            let retry = r
                .headers()
                .get("retry-after")
                .map(|v| v.to_str().unwrap().to_string());
            (status, retry, r.json::<serde_json::Value>().await.unwrap())
        }
    };
    let (status, retry, body) = resend(started["challenge_id"].clone()).await;
    assert_eq!(status, 429, "{body}");
    assert!(retry.is_some());
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("Please wait")
    );
    server.clock.advance(time::Duration::seconds(61));
    let (status, _, again) = resend(started["challenge_id"].clone()).await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["challenge_id"], started["challenge_id"]);
    let second = server.sms.last_code_to(ALICE_PHONE);
    assert_eq!(server.sms.sent.lock().unwrap().len(), 2);
    if first != second {
        let (status, _) = verify(&alice, id, &csrf, &started["challenge_id"], &first).await;
        assert_eq!(status, 403, "the first code stopped working");
    }
    let (status, share) = verify(&alice, id, &csrf, &started["challenge_id"], &second).await;
    assert_eq!(status, 200, "{share}");
    server.stop().await;
}

// ---- #18.9: the page tells the truth and offers what a person needs ----------------------------

/// The page for `id` as `client` sees it.
async fn page_of(client: &WebClient, id: i64) -> String {
    client
        .get(&format!("/requests/{id}/issue"))
        .await
        .text()
        .await
        .unwrap()
}

fn assert_nothing_to_retrieve(page: &str, words: &str) {
    assert!(page.contains(words), "expected `{words}`: {page}");
    assert!(page.contains("There is nothing to retrieve."), "{page}");
    assert!(
        !page.contains("retrievals left")
            && !page.contains("lease ends")
            && !page.contains("id=\"retrieve\""),
        "an ended request shows no lease or count: {page}"
    );
    for raw in ["RELEASED", "DENIED", "EXPIRED", "APPROVED", "PENDING"] {
        assert!(!page.contains(raw), "raw status {raw}: {page}");
    }
    assert!(page.contains("class=\"notice warning\""), "{page}");
}

#[tokio::test]
async fn a_released_denied_revoked_or_expired_request_says_so_in_words() {
    let (_db, _dir, server) = start().await;
    let alice_user = server.user(ALICE).await;
    let alice = WebClient::new(&server.base);
    let released = server.request(ALICE, "db-staging").await;
    alice
        .sign_in_dev("Alice Requester", &format!("/requests/{released}/issue"))
        .await;
    assert!(
        page_of(&alice, released)
            .await
            .contains("3 of 3 retrievals left.")
    );
    server
        .state
        .lifecycle
        .release(&alice_user, released)
        .await
        .unwrap();
    assert_nothing_to_retrieve(
        &page_of(&alice, released).await,
        "You released this request",
    );

    let denied = server.request(ALICE, "db-prod").await;
    let bob = server.user(BOB).await;
    server
        .state
        .lifecycle
        .deny(&bob, denied, Some("not this week"))
        .await
        .unwrap();
    assert_nothing_to_retrieve(&page_of(&alice, denied).await, "This request was denied.");

    let revoked = server.request(ALICE, "db-staging").await;
    let carol = server.user("carol@contoso.example").await;
    server
        .state
        .lifecycle
        .revoke(&carol, revoked, "suspicious login")
        .await
        .unwrap();
    assert_nothing_to_retrieve(
        &page_of(&alice, revoked).await,
        "An admin revoked this request&#39;s access.",
    );

    // A lease past its end, before the scheduler has marked it: expired, with when.
    let expired = server.request(ALICE, "db-staging").await;
    server.clock.advance(time::Duration::hours(2));
    alice
        .sign_in_dev("Alice Requester", &format!("/requests/{expired}/issue"))
        .await;
    let page = page_of(&alice, expired).await;
    assert_nothing_to_retrieve(&page, "This request has expired. Its access ended ");
    server.stop().await;
}

/// #18.6 and #18.9: the page shows the lease's end in the zone the person's Teams client last
/// reported, named (UTC, named, before any), and a refusal names the request's state in words.
#[tokio::test]
async fn the_page_shows_times_in_the_persons_zone_and_refusals_name_states_in_words() {
    let (_db, _dir, server) = start().await;
    let alice_user = server.user(ALICE).await;
    let id = server.request(ALICE, "db-staging").await;
    let alice = WebClient::new(&server.base);
    alice
        .sign_in_dev("Alice Requester", &format!("/requests/{id}/issue"))
        .await;
    let page = page_of(&alice, id).await;
    assert!(page.contains("lease ends 2026-11-23 10:00 UTC."), "{page}");

    server
        .store
        .set_user_time_zone(alice_user.id, "Europe/Berlin")
        .await
        .unwrap();
    let page = page_of(&alice, id).await;
    assert!(
        page.contains("lease ends 2026-11-23 11:00 Europe/Berlin."),
        "{page}"
    );
    assert!(!page.contains("UTC"), "{page}");

    // Released: a retrieval is refused with the state as people read it.
    server
        .state
        .lifecycle
        .release(&alice_user, id)
        .await
        .unwrap();
    let csrf = attr_value(&page, "name=\"csrf-token\" content=\"");
    let refused = alice
        .post_json(
            &format!("/api/requests/{id}/issuance-token"),
            &json!({}),
            Some(&csrf),
        )
        .await;
    assert_eq!(refused.status(), 409);
    let body = refused.text().await.unwrap();
    assert!(body.contains("Released"), "{body}");
    assert!(!body.contains("RELEASED"), "{body}");
    server.stop().await;
}

#[tokio::test]
async fn the_not_yours_page_offers_a_sign_out_that_works() {
    let (_db, _dir, server) = start().await;
    let id = server.request(ALICE, "db-staging").await;
    let bob = WebClient::new(&server.base);
    bob.sign_in_dev("Bob DBA Lead", &format!("/requests/{id}/issue"))
        .await;
    let r = bob.get(&format!("/requests/{id}/issue")).await;
    assert_eq!(r.status(), 403);
    let page = r.text().await.unwrap();
    assert!(page.contains("Signed in as Bob"), "{page}");
    assert!(
        page.contains("action=\"/signout\"") && page.contains(">Sign out</button>"),
        "{page}"
    );
    let csrf = attr_value(&page, "name=\"csrf\" value=\"");
    let out = bob.post_form("/signout", &[("csrf", &csrf)]).await;
    assert_eq!(out.status(), 200);
    assert!(out.text().await.unwrap().contains("You are signed out"));
    server.stop().await;
}

#[tokio::test]
async fn the_retrieve_button_is_the_styled_primary_action_before_the_authenticator_set_up() {
    let (_db, _dir, server, alice, id, _csrf) = second_factor_world().await;
    server.set_phone(ALICE, ALICE_PHONE).await;
    let page = page_of(&alice, id).await;
    let button = page
        .find("<button type=\"button\" id=\"retrieve\" class=\"primary\">")
        .unwrap_or_else(|| panic!("no primary Retrieve button: {page}"));
    let setup = page
        .find("<h2 id=\"totp-title\">Authenticator app</h2>")
        .unwrap();
    let code_form = page.find("id=\"code-form\"").unwrap();
    assert!(
        button < setup && code_form < setup,
        "the retrieval step comes before the authenticator heading: {page}"
    );
    // One place for the code prompt: the hint the code field is described by.
    assert_eq!(page.matches("id=\"code-hint\"").count(), 1);
    assert!(page.contains("aria-describedby=\"code-hint\""), "{page}");
    // The link and the key fields fit narrow screens.
    assert!(page.contains("id=\"share-url\" class=\"wide\""), "{page}");
    assert!(!page.contains("size=\"60\"") && !page.contains("id=\"totp-uri\""));
    let css = alice.get("/static/passkey.css").await.text().await.unwrap();
    assert!(css.contains("button.primary {") && css.contains("input.wide { width: 100%; }"));
    server.stop().await;
}
