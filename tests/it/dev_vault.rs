//! The local vault's one-time links, served by the app: looking (GET, HEAD) uses nothing up, the
//! button's POST opens once, then "used"; expired and revoked links say so; the page is never
//! cached and leaks no referrer.

use crate::common;

use common::{Db, TestServer, fresh_sqlite, test_settings};
use passkey::vault::Removed;

on_both_databases!(a_share_revoked_on_one_instance_is_dead_on_every_instance);

const DB_PROD: &str = "dbPr0dPgL0g1nR3c0rd001";

fn path_of(url: &str) -> String {
    let at = url.find("/dev-vault/share/").expect("a local vault link");
    url[at..].to_string()
}

#[tokio::test]
async fn a_local_link_opens_once_and_then_says_it_was_used() {
    let db = fresh_sqlite().await;
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(test_settings(dir.path(), &[]), db.store.clone()).await;
    assert!(
        dir.path().join("dev-vault.json").exists(),
        "the vault file is written from the demo set"
    );

    let share = server
        .state
        .sharer
        .create(DB_PROD, time::Duration::hours(1), "passkey-req-1")
        .await
        .unwrap();
    let url = server.url(&path_of(share.url.expose()));
    let http = reqwest::Client::new();
    let first = http.post(&url).send().await.unwrap();
    assert_eq!(first.status(), 200);
    for (name, value) in [
        ("cache-control", "no-store"),
        ("referrer-policy", "no-referrer"),
        ("x-content-type-options", "nosniff"),
    ] {
        assert_eq!(first.headers()[name], value, "{name}");
    }
    let page = first.text().await.unwrap();
    assert!(
        page.contains("demo-only-db-prod-pw") && page.contains("This link opens once"),
        "{page}"
    );

    let second = http.post(&url).send().await.unwrap();
    assert_eq!(second.status(), 410);
    let page = second.text().await.unwrap();
    assert!(
        page.contains("already used") && !page.contains("demo-only-db-prod-pw"),
        "{page}"
    );

    let revoked = server
        .state
        .sharer
        .create(DB_PROD, time::Duration::hours(1), "passkey-req-2")
        .await
        .unwrap();
    server
        .state
        .sharer
        .remove(DB_PROD, &revoked.share_id)
        .await
        .unwrap();
    let r = reqwest::get(server.url(&path_of(revoked.url.expose())))
        .await
        .unwrap();
    assert_eq!(r.status(), 410);
    assert!(r.text().await.unwrap().contains("revoked"));

    let expiring = server
        .state
        .sharer
        .create(DB_PROD, time::Duration::minutes(10), "passkey-req-3")
        .await
        .unwrap();
    server.clock.advance(time::Duration::minutes(11));
    let r = reqwest::get(server.url(&path_of(expiring.url.expose())))
        .await
        .unwrap();
    assert_eq!(r.status(), 410);
    assert!(r.text().await.unwrap().contains("expired"));

    assert_eq!(
        reqwest::get(server.url("/dev-vault/share/made-up-key"))
            .await
            .unwrap()
            .status(),
        404
    );
    server.stop().await;
}

#[tokio::test]
async fn link_scanners_and_previews_do_not_use_up_a_one_time_link() {
    let db = fresh_sqlite().await;
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(test_settings(dir.path(), &[]), db.store.clone()).await;
    let share = server
        .state
        .sharer
        .create(DB_PROD, time::Duration::hours(1), "passkey-req-1")
        .await
        .unwrap();
    let url = server.url(&path_of(share.url.expose()));
    let http = reqwest::Client::new();

    // A scanner's HEAD and a preview's GETs see a page with a button, never the secret.
    let head = http.head(&url).send().await.unwrap();
    assert_eq!(head.status(), 200);
    for _ in 0..2 {
        let r = http.get(&url).send().await.unwrap();
        assert_eq!(r.status(), 200);
        for (name, value) in [
            ("cache-control", "no-store"),
            ("referrer-policy", "no-referrer"),
        ] {
            assert_eq!(r.headers()[name], value, "{name}");
        }
        let page = r.text().await.unwrap();
        assert!(
            page.contains("<form method=post") && page.contains("Show the secret"),
            "{page}"
        );
        for leak in ["demo-only-db-prod-pw", "db-prod", "already used"] {
            assert!(!page.contains(leak), "{leak}: {page}");
        }
    }

    // The button (a POST) shows it once; the next POST and GET say the link was used.
    let revealed = http.post(&url).send().await.unwrap();
    assert_eq!(revealed.status(), 200);
    assert_eq!(revealed.headers()["cache-control"], "no-store");
    let page = revealed.text().await.unwrap();
    assert!(
        page.contains("demo-only-db-prod-pw") && page.contains("This link opens once"),
        "{page}"
    );
    let again = http.post(&url).send().await.unwrap();
    assert_eq!(again.status(), 410);
    let page = again.text().await.unwrap();
    assert!(
        page.contains("already used") && !page.contains("demo-only-db-prod-pw"),
        "{page}"
    );
    let r = http.get(&url).send().await.unwrap();
    assert_eq!(r.status(), 410);
    assert!(r.text().await.unwrap().contains("already used"));
    assert_eq!(http.head(&url).send().await.unwrap().status(), 410);
    server.stop().await;
}

#[tokio::test]
async fn concurrent_opens_over_http_show_the_secret_once() {
    let db = fresh_sqlite().await;
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(test_settings(dir.path(), &[]), db.store.clone()).await;
    let share = server
        .state
        .sharer
        .create(DB_PROD, time::Duration::hours(1), "x")
        .await
        .unwrap();
    let url = server.url(&path_of(share.url.expose()));
    let http = reqwest::Client::new();
    let tasks: Vec<_> = (0..16)
        .map(|_| tokio::spawn(http.post(&url).send()))
        .collect();
    let mut shown = 0;
    for t in tasks {
        let r = t.await.unwrap().unwrap();
        if r.status() == 200 {
            shown += 1;
        } else {
            assert_eq!(r.status(), 410);
        }
    }
    assert_eq!(shown, 1);
    server.stop().await;
}

#[tokio::test]
async fn the_configured_backend_is_the_one_the_app_uses() {
    use passkey::vault::ErrorClass;
    // Staging stub: fake links, metadata from the vault file.
    let db = fresh_sqlite().await;
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(
        test_settings(dir.path(), &[("PASSKEY_VAULT__BACKEND", "stub")]),
        db.store.clone(),
    )
    .await;
    let share = server
        .state
        .sharer
        .create(DB_PROD, time::Duration::hours(1), "passkey-req-1")
        .await
        .unwrap();
    assert!(
        share
            .url
            .expose()
            .starts_with("https://stub.invalid/vault/share/#")
    );
    assert_eq!(server.state.vault.records().await.unwrap().len(), 12);
    assert!(
        server.state.local_vault.is_none(),
        "no /dev-vault links in staging"
    );
    assert_eq!(
        reqwest::get(server.url("/dev-vault/share/anything"))
            .await
            .unwrap()
            .status(),
        404
    );
    server.stop().await;

    // Commander service mode without KSM: shares and metadata reads (`list`) both go to Commander.
    let db = fresh_sqlite().await;
    let dir = tempfile::tempdir().unwrap();
    let settings = test_settings(
        dir.path(),
        &[
            ("PASSKEY_VAULT__BACKEND", "commander-service"),
            ("PASSKEY_VAULT__COMMANDER_URL", "http://127.0.0.1:9"),
            ("PASSKEY_VAULT__COMMANDER_API_KEY", "not-a-real-key"),
            ("PASSKEY_VAULT__COMMANDER_TIMEOUT_SECS", "2"),
        ],
    );
    let server = TestServer::start(settings, db.store.clone()).await;
    let err = server.state.vault.records().await.unwrap_err();
    assert_eq!(
        err.class,
        ErrorClass::Transient,
        "Commander unreachable: record reads try again later ({err:?})"
    );
    let err = server
        .state
        .sharer
        .create(DB_PROD, time::Duration::hours(1), "passkey-req-2")
        .await
        .unwrap_err();
    assert_eq!(
        err.class,
        ErrorClass::Transient,
        "Commander unreachable: try again later ({err:?})"
    );
    server.stop().await;
}

#[tokio::test]
async fn an_unusable_ksm_configuration_stops_the_start_with_a_clear_error() {
    let db = fresh_sqlite().await;
    let dir = tempfile::tempdir().unwrap();
    let settings = test_settings(
        dir.path(),
        &[
            ("PASSKEY_VAULT__BACKEND", "commander-cli"),
            (
                "PASSKEY_VAULT__COMMANDER_CONFIG_PATH",
                "/nonexistent/keeper.json",
            ),
            ("PASSKEY_VAULT__KSM_CONFIG", "bm90IGEga3NtIGNvbmZpZw=="),
        ],
    );
    let clock = std::sync::Arc::new(passkey::domain::SystemClock);
    let err = match passkey::app::App::with_store(settings, db.store.clone(), clock).await {
        Err(e) => e.to_string(),
        Ok(_) => panic!("a garbage KSM configuration must not start"),
    };
    assert!(
        err.contains(
            "vault.ksm_config (PASSKEY_VAULT__KSM_CONFIG) is not a KSM application configuration"
        ),
        "{err}"
    );
    assert!(
        !err.contains("bm90IGEga3NtIGNvbmZpZw"),
        "the configuration is never echoed: {err}"
    );
}

/// Two instances on one database (#15.7): a share made by one is known to the other, removed by
/// the other, and dead everywhere; it opens once across both; "not found" only when it is gone.
async fn a_share_revoked_on_one_instance_is_dead_on_every_instance(db: Db) {
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = TestServer::start(test_settings(dir_a.path(), &[]), db.store.clone()).await;
    let b = TestServer::start(test_settings(dir_b.path(), &[]), db.store.clone()).await;
    let http = reqwest::Client::new();
    let post = |server: &TestServer, url: &str| {
        let request = http.post(server.url(&path_of(url)));
        async move {
            let r = request.send().await.unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        }
    };

    let share = a
        .state
        .sharer
        .create(DB_PROD, time::Duration::hours(1), "passkey-req-1")
        .await
        .unwrap();
    assert!(
        b.state
            .sharer
            .list(DB_PROD)
            .await
            .unwrap()
            .iter()
            .any(|s| s.share_id == share.share_id),
        "the other instance sees the share"
    );
    assert_eq!(
        b.state
            .sharer
            .remove(DB_PROD, &share.share_id)
            .await
            .unwrap(),
        Removed::Removed,
        "the other instance removes it, not 'not found'"
    );
    for server in [&a, &b] {
        let (status, page) = post(server, share.url.expose()).await;
        assert_eq!(status, 410, "{page}");
        assert!(
            page.contains("revoked") && !page.contains("demo-only-db-prod-pw"),
            "{page}"
        );
    }
    assert_eq!(
        a.state
            .sharer
            .remove(DB_PROD, &share.share_id)
            .await
            .unwrap(),
        Removed::NotFound,
        "removed once, then known to be gone"
    );

    // Opened through one instance, used up on both.
    let second = a
        .state
        .sharer
        .create(DB_PROD, time::Duration::hours(1), "passkey-req-2")
        .await
        .unwrap();
    let (status, page) = post(&b, second.url.expose()).await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("demo-only-db-prod-pw"), "{page}");
    let (status, page) = post(&a, second.url.expose()).await;
    assert_eq!(status, 410);
    assert!(
        page.contains("already used") && !page.contains("demo-only-db-prod-pw"),
        "{page}"
    );

    // Removed by name from the other instance, as the cleanup after an unclear create does.
    let third = b
        .state
        .sharer
        .create(DB_PROD, time::Duration::hours(1), "passkey-req-3")
        .await
        .unwrap();
    assert_eq!(
        a.state
            .sharer
            .remove(DB_PROD, "passkey-req-3")
            .await
            .unwrap(),
        Removed::Removed
    );
    assert_eq!(post(&b, third.url.expose()).await.0, 410);

    // The database holds no link and no secret.
    for sql in [
        "SELECT share_id FROM local_vault_shares",
        "SELECT record_uid FROM local_vault_shares",
    ] {
        for text in db.raw.texts(sql).await.unwrap() {
            assert!(
                !text.contains("demo-only") && !text.contains("dev-vault/share"),
                "{text}"
            );
        }
    }
    a.stop().await;
    b.stop().await;
}
