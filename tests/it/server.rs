//! The real server on an ephemeral port: health, readiness, errors, limits — and the `passkey`
//! binary itself, started the way `cargo run` starts it.

use crate::common;

use common::{TestServer, fresh_pg, fresh_sqlite, test_settings};
use passkey::store::{SqliteStore, Store};
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

async fn get_json(url: &str) -> (u16, Value) {
    let r = reqwest::get(url).await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap())
}

async fn health_and_readiness(store: Arc<dyn Store>, kind: &str) {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(test_settings(dir.path(), &[]), store).await;
    let (status, body) = get_json(&server.url("/healthz")).await;
    assert_eq!(status, 200);
    assert_eq!(body["status"], "ok");
    let (status, body) = get_json(&server.url("/readyz")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "ready");
    assert_eq!(body["database"]["kind"], kind);
    assert_eq!(body["database"]["migrations"], "current");
    server.stop().await;
}

#[tokio::test]
async fn health_and_readiness_on_sqlite() {
    let db = fresh_sqlite().await;
    health_and_readiness(db.store.clone(), "sqlite").await;
}

#[tokio::test]
async fn health_and_readiness_on_postgres() {
    let Some(db) = fresh_pg().await else { return };
    health_and_readiness(db.store.clone(), "postgres").await;
}

#[tokio::test]
async fn readiness_fails_while_migrations_are_missing() {
    // A running instance whose database lost (or never got) a migration this build expects —
    // e.g. a rollback underneath it — must stop saying it is ready.
    let db = fresh_sqlite().await;
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(test_settings(dir.path(), &[]), db.store.clone()).await;
    assert_eq!(get_json(&server.url("/readyz")).await.0, 200);
    use common::RawSql;
    db.store.exec("DELETE FROM _sqlx_migrations").await.unwrap();
    let (status, body) = get_json(&server.url("/readyz")).await;
    assert_eq!(status, 503);
    assert_eq!(body["status"], "not_ready");
    assert_eq!(body["database"]["migrations"], "pending");
    // Liveness is about the process, not its dependencies.
    assert_eq!(get_json(&server.url("/healthz")).await.0, 200);
    server.stop().await;
}

#[tokio::test]
async fn the_app_refuses_to_start_on_an_unmigrated_database() {
    let dir = tempfile::tempdir().unwrap();
    let unmigrated = SqliteStore::open(&dir.path().join("empty.db"), 2)
        .await
        .unwrap();
    let clock = Arc::new(passkey::domain::SystemClock);
    let built =
        passkey::app::App::with_store(test_settings(dir.path(), &[]), Arc::new(unmigrated), clock)
            .await;
    assert!(
        built.is_err(),
        "no policies can be loaded from an unmigrated database"
    );
}

#[tokio::test]
async fn the_browser_gets_an_icon_not_a_404() {
    let db = fresh_sqlite().await;
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(test_settings(dir.path(), &[]), db.store.clone()).await;
    let r = reqwest::get(server.url("/favicon.ico")).await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "image/png");
    let cache = r.headers()["cache-control"].to_str().unwrap().to_string();
    assert!(
        cache.contains("public") && cache.contains("max-age="),
        "{cache}"
    );
    let body = r.bytes().await.unwrap();
    assert!(body.starts_with(b"\x89PNG\r\n\x1a\n"), "a PNG");
    server.stop().await;
}

#[tokio::test]
async fn unknown_paths_get_a_json_404_and_every_response_carries_a_request_id() {
    let db = fresh_sqlite().await;
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(test_settings(dir.path(), &[]), db.store.clone()).await;
    let client = reqwest::Client::new();
    let r = client
        .get(server.url("/no/such/thing"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let generated = r.headers()["x-request-id"].to_str().unwrap().to_string();
    assert_eq!(generated.len(), 36, "a UUID is generated: {generated}");
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"]["code"],
        "not_found"
    );

    let r = client
        .get(server.url("/healthz"))
        .header("x-request-id", "trace-me-123")
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.headers()["x-request-id"],
        "trace-me-123",
        "a caller's id is propagated"
    );
    server.stop().await;
}

#[tokio::test]
async fn oversized_bodies_are_refused_with_413_before_any_handler_runs() {
    let db = fresh_sqlite().await;
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(
        test_settings(dir.path(), &[("PASSKEY_HTTP__BODY_LIMIT_BYTES", "1024")]),
        db.store.clone(),
    )
    .await;
    let client = reqwest::Client::new();
    let r = client
        .post(server.url("/readyz"))
        .body(vec![b'x'; 4096])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    // Under the limit the same request reaches routing (and is told GET only).
    let r = client
        .post(server.url("/readyz"))
        .body(vec![b'x'; 10])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);
    server.stop().await;
}

/// `passkey` with a scrubbed environment, run in `dir` (so `./data` lands there).
fn passkey_cmd(dir: &std::path::Path, args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_passkey"));
    cmd.args(args)
        .current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd
}

#[tokio::test]
async fn cargo_run_defaults_serve_the_demo_database_on_loopback() {
    let dir = tempfile::tempdir().unwrap();
    // Port 0 instead of 3978 so parallel test runs can't collide; everything else is default.
    let mut child = passkey_cmd(dir.path(), &[], &[("PASSKEY_BIND", "127.0.0.1:0")])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let banner: Vec<String> = BufReader::new(stdout)
        .lines()
        .take(7)
        .map(Result::unwrap)
        .collect();
    let first = &banner[0];
    let addr = first.rsplit("http://").next().unwrap().trim().to_string();
    assert!(
        first.starts_with("passkey ") && addr.starts_with("127.0.0.1:"),
        "{banner:?}"
    );
    assert!(
        banner
            .iter()
            .any(|l| l.contains("database: sqlite data/passkey.db")),
        "{banner:?}"
    );
    assert!(banner.iter().any(|l| l.contains("dev mode")), "{banner:?}");
    // Which rules it runs under, and where people are sent (#21.5).
    assert!(
        banner.iter().any(|l| l.trim() == "profile: dev"),
        "{banner:?}"
    );
    assert!(
        banner
            .iter()
            .any(|l| l.trim() == format!("public_url: http://{addr} (public_url unset)")),
        "{banner:?}"
    );
    assert!(
        banner
            .iter()
            .any(|l| l.contains(&format!("bot endpoint: http://{addr}/api/messages"))),
        "{banner:?}"
    );
    assert!(
        banner
            .iter()
            .any(|l| l.contains("demo data loaded: 5 users, 12 records")),
        "{banner:?}"
    );

    let (status, body) = get_json(&format!("http://{addr}/readyz")).await;
    assert_eq!((status, body["status"].as_str()), (200, Some("ready")));
    assert!(dir.path().join("data/passkey.db").exists());
    child.kill().unwrap();
    child.wait().unwrap();

    // A second start finds the data and does not load the demo set again.
    let mut child = passkey_cmd(dir.path(), &[], &[("PASSKEY_BIND", "127.0.0.1:0")])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let banner: Vec<String> = BufReader::new(stdout)
        .lines()
        .take(4)
        .map(Result::unwrap)
        .collect();
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        !banner.iter().any(|l| l.contains("demo data loaded")),
        "{banner:?}"
    );
}

#[test]
fn dev_mode_refuses_a_non_loopback_bind() {
    let dir = tempfile::tempdir().unwrap();
    let out = passkey_cmd(dir.path(), &["serve"], &[("PASSKEY_BIND", "0.0.0.0:0")])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("refusing to start") && err.contains("loopback"),
        "{err}"
    );
    assert!(
        !dir.path().join("data").exists(),
        "nothing is created when start-up is refused"
    );
}

#[test]
fn production_refuses_the_local_vault_and_missing_credentials() {
    let dir = tempfile::tempdir().unwrap();
    let out = passkey_cmd(dir.path(), &["serve"], &[("PASSKEY_PROFILE", "production")])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    for needle in ["bot.app_id", "bot.app_password", "local demo vault"] {
        assert!(err.contains(needle), "missing `{needle}` in: {err}");
    }
}

#[test]
fn doctor_reports_redacted_configuration_and_passes_on_a_healthy_setup() {
    let dir = tempfile::tempdir().unwrap();
    let migrate = passkey_cmd(dir.path(), &["migrate"], &[]).output().unwrap();
    assert!(
        migrate.status.success(),
        "{}",
        String::from_utf8_lossy(&migrate.stderr)
    );
    let out = passkey_cmd(
        dir.path(),
        &["doctor"],
        &[("PASSKEY_BOT__APP_PASSWORD", "pa55-w0rd-value")],
    )
    .output()
    .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("bot.app_password") && text.contains("[REDACTED]"),
        "{text}"
    );
    assert!(!text.contains("pa55-w0rd-value"), "{text}");
    assert!(text.contains("[ ok ] database reachable"), "{text}");
    assert!(text.contains("[ ok ] migrations current"), "{text}");
    assert!(text.contains("[ ok ] data directory writable"), "{text}");
    assert!(
        text.contains("[ ok ] vault backend: local vault: 12 records"),
        "{text}"
    );
}

#[test]
fn doctor_fails_on_unmigrated_or_unreachable_databases_without_printing_credentials() {
    let dir = tempfile::tempdir().unwrap();
    let out = passkey_cmd(dir.path(), &["doctor"], &[]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("[FAIL] migrations current") && text.contains("passkey migrate"),
        "{text}"
    );

    let out = passkey_cmd(
        dir.path(),
        &["doctor"],
        &[(
            "DATABASE_URL",
            "postgres://app:s3cr3tpw@127.0.0.1:1/passkey",
        )],
    )
    .output()
    .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("[FAIL] database reachable: postgres 127.0.0.1:1/passkey"),
        "{text}"
    );
    assert!(
        !text.contains("s3cr3tpw") && !String::from_utf8_lossy(&out.stderr).contains("s3cr3tpw"),
        "{text}"
    );
}

#[tokio::test]
async fn graceful_shutdown_finishes_and_frees_the_port() {
    let db = fresh_sqlite().await;
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(test_settings(dir.path(), &[]), db.store.clone()).await;
    let url = server.url("/healthz");
    assert_eq!(get_json(&url).await.0, 200);
    tokio::time::timeout(Duration::from_secs(10), server.stop())
        .await
        .expect("shutdown completes");
    assert!(
        reqwest::get(&url).await.is_err(),
        "nothing listens after shutdown"
    );
}

#[test]
fn doctor_checks_the_commander_backend_and_its_ksm_configuration_without_printing_them() {
    let dir = tempfile::tempdir().unwrap();
    assert!(
        passkey_cmd(dir.path(), &["migrate"], &[])
            .output()
            .unwrap()
            .status
            .success()
    );
    let out = passkey_cmd(
        dir.path(),
        &["doctor"],
        &[
            ("PASSKEY_VAULT__BACKEND", "commander-service"),
            ("PASSKEY_VAULT__COMMANDER_URL", "http://127.0.0.1:9"),
            ("PASSKEY_VAULT__COMMANDER_API_KEY", "api-key-do-not-print"),
            ("PASSKEY_VAULT__KSM_CONFIG", "bm90IGEga3NtIGNvbmZpZw=="),
        ],
    )
    .output()
    .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains(
            "[FAIL] vault backend: commander service at http://127.0.0.1:9 is unreachable"
        ),
        "{text}"
    );
    assert!(
        text.contains(
            "[FAIL] vault records: vault.ksm_config (PASSKEY_VAULT__KSM_CONFIG) is not a KSM application configuration"
        ),
        "{text}"
    );
    assert!(
        !text.contains("api-key-do-not-print") && !text.contains("bm90IGEga3NtIGNvbmZpZw"),
        "{text}"
    );
}

/// #14.3: a deployment that sets an app id but forgets `PASSKEY_PROFILE` must not serve dev's
/// stand-ins (local vault, console SMS, dev sign-in, cookies without `Secure`, any tenant) on a
/// reachable address: production's rules apply, and start-up names every problem at once.
#[test]
fn an_app_id_on_a_public_address_without_a_profile_gets_production_rules() {
    for (bind, public_url) in [
        ("0.0.0.0:3978", None),
        ("127.0.0.1:0", Some("https://passkey.contoso.example")),
        ("[::]:0", None),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let mut env = vec![
            ("PASSKEY_BIND", bind),
            (
                "PASSKEY_BOT__APP_ID",
                "00000000-0000-4000-8000-00000000b07a",
            ),
        ];
        if let Some(url) = public_url {
            env.push(("PASSKEY_PUBLIC_URL", url));
        }
        let out = passkey_cmd(dir.path(), &["serve"], &env).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{bind}: {err}");
        for needle in [
            "production rules apply",
            "bot.app_password",
            "bot.allowed_tenants",
            "local demo vault",
            "console SMS sender",
            "Entra sign-in for the issuance page",
        ] {
            assert!(err.contains(needle), "{bind}: missing `{needle}` in: {err}");
        }
        assert!(
            !dir.path().join("data").exists(),
            "nothing is created when start-up is refused"
        );
    }
}

/// #14.11: everything `cargo run` writes into `data_dir` (the SQLite database and its WAL, the
/// local vault, the keys) is readable by Passkey's own user only, whatever the umask.
#[cfg(unix)]
#[tokio::test]
async fn every_file_in_the_data_directory_is_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let mut child = passkey_cmd(dir.path(), &[], &[("PASSKEY_BIND", "127.0.0.1:0")])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let first = BufReader::new(stdout).lines().next().unwrap().unwrap();
    let addr = first.rsplit("http://").next().unwrap().trim().to_string();
    let (status, _) = get_json(&format!("http://{addr}/readyz")).await;
    assert_eq!(status, 200);
    child.kill().unwrap();
    child.wait().unwrap();
    let data = dir.path().join("data");
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&data), 0o700, "the data directory");
    let mut seen = Vec::new();
    for entry in std::fs::read_dir(&data).unwrap() {
        let path = entry.unwrap().path();
        seen.push(path.file_name().unwrap().to_string_lossy().into_owned());
        assert_eq!(mode(&path), 0o600, "{}", path.display());
    }
    for expected in ["passkey.db", "dev-vault.json", "data-encryption.key"] {
        assert!(seen.iter().any(|s| s == expected), "{expected} in {seen:?}");
    }
}

/// `doctor` shows each setting as the configuration spells it, so what an admin reads can be
/// pasted back: `managed-identity`, not the Rust name lower-cased (#21.8).
#[test]
fn doctor_prints_settings_in_their_own_spelling() {
    let dir = tempfile::tempdir().unwrap();
    let out = passkey_cmd(
        dir.path(),
        &["doctor"],
        &[
            ("PASSKEY_AZURE__CREDENTIAL", "managed-identity"),
            ("PASSKEY_BOT__CONNECTOR_AUTH", "managed-identity"),
            ("PASSKEY_VAULT__BACKEND", "stub"),
            ("PASSKEY_LOG__FORMAT", "json"),
        ],
    )
    .output()
    .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let value = |name: &str| {
        text.lines()
            .find_map(|l| {
                let mut words = l.split_whitespace();
                (words.next() == Some(name)).then(|| words.collect::<Vec<_>>().join(" "))
            })
            .unwrap_or_else(|| panic!("no `{name}` line:\n{text}"))
    };
    assert_eq!(value("azure.credential"), "managed-identity", "{text}");
    assert_eq!(value("bot.connector_auth"), "managed-identity", "{text}");
    assert_eq!(value("vault.backend"), "stub", "{text}");
    assert_eq!(value("log.format"), "json", "{text}");
    assert_eq!(value("crypto.key_wrapper"), "local", "{text}");
    assert!(!text.contains("managedidentity"), "{text}");
}
