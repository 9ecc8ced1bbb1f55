//! Azure: Key Vault secret references resolved at start-up, the Key Vault checkpoint signer, the
//! data-key wrapper, and `passkey doctor`'s Azure checks — all through in-process fakes (a real
//! P-256 key that signs, real AES-GCM wrapping), since azure_core will not send bearer tokens to
//! a plain-http loopback server.

use crate::common;

use passkey::app::{App, StartError};
use passkey::azure::AzureError;
use passkey::azure::fake::{FakeCredential, FakeKeyVault};
use passkey::azure::keys::{Es256PublicKey, KeyVaultSigner, KeyVaultWrapper, verify_es256};
use passkey::azure::secrets::MemorySecrets;
use passkey::doctor::{self, AzureProbes};
use secrecy::{ExposeSecret, SecretString};
use std::path::Path;
use std::sync::Arc;

const VAULT: &str = "https://passkey-test.vault.azure.net";
/// A secret value that must never show up in any output.
const BOT_PASSWORD: &str = "s3cret-b0t-passw0rd-never-printed";

fn settings_with_references(data_dir: &Path) -> passkey::config::Settings {
    common::test_settings(
        data_dir,
        &[
            ("PASSKEY_DATABASE_URL", "kv:DATABASE-URL"),
            ("PASSKEY_BOT__APP_PASSWORD", "kv:BOT-APP-PASSWORD"),
            ("PASSKEY_AZURE__KEY_VAULT_URL", VAULT),
        ],
    )
}

/// The app opens the database the secret names, and nothing else.
async fn reference_opens_the_database(url: &str, store: Arc<dyn passkey::store::Store>) {
    let data_dir = tempfile::tempdir().unwrap();
    let secrets = MemorySecrets::new()
        .with("DATABASE-URL", url)
        .with("BOT-APP-PASSWORD", BOT_PASSWORD);
    assert!(store.active_policies().await.unwrap().is_empty());
    let app = App::build_with_secrets(settings_with_references(data_dir.path()), &secrets)
        .await
        .expect("the app starts with its secrets from Key Vault");
    // The app wrote its default policies into the referenced database: the test's own
    // connection to it sees them.
    assert!(!store.active_policies().await.unwrap().is_empty());
    assert!(
        !data_dir.path().join("passkey.db").exists(),
        "the default SQLite file was not used"
    );
    let settings = &app.state.settings;
    assert_eq!(settings.database_url.as_ref().unwrap().expose_secret(), url);
    assert_eq!(
        settings.bot.app_password.as_ref().unwrap().expose_secret(),
        BOT_PASSWORD
    );
}

#[tokio::test]
async fn a_database_url_given_as_a_reference_opens_that_sqlite_database() {
    let db = common::fresh_sqlite().await;
    let url = format!("sqlite://{}", db.dir.path().join("test.db").display());
    reference_opens_the_database(&url, db.store.clone()).await;
}

#[tokio::test]
async fn a_database_url_given_as_a_reference_opens_that_postgres_database() {
    let Some(db) = common::fresh_pg().await else {
        return;
    };
    reference_opens_the_database(&db.url(), db.store.clone()).await;
}

#[tokio::test]
async fn a_reference_that_does_not_resolve_stops_start_up_naming_it() {
    let data_dir = tempfile::tempdir().unwrap();
    let app_dir = data_dir.path().join("app");
    let secrets = MemorySecrets::new().with("BOT-APP-PASSWORD", BOT_PASSWORD);
    let err = match App::build_with_secrets(settings_with_references(&app_dir), &secrets).await {
        Ok(_) => panic!("started without its database secret"),
        Err(e) => e,
    };
    assert!(matches!(err, StartError::Secrets(_)), "{err:?}");
    let text = err.to_string();
    assert!(
        text.contains("database_url = kv:DATABASE-URL: secret DATABASE-URL in memory not found"),
        "{text}"
    );
    assert!(!text.contains(BOT_PASSWORD), "{text}");
    assert!(!format!("{err:?}").contains(BOT_PASSWORD));
    // Nothing was started: not even the data directory was created.
    assert!(!app_dir.exists());
}

#[test]
fn the_binary_refuses_references_without_a_vault_and_names_them() {
    for command in [
        "serve",
        "migrate",
        "audit export --out trail.jsonl",
        "admin job housekeeping",
    ] {
        let dir = tempfile::tempdir().unwrap();
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_passkey"))
            .current_dir(dir.path())
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("PASSKEY_DATA_DIR", dir.path().join("data"))
            .env("PASSKEY_BIND", "127.0.0.1:0")
            .env("PASSKEY_LOG__FILTER", "warn")
            .env("PASSKEY_DATABASE_URL", "kv:DATABASE-URL")
            .args(command.split(' '))
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(2), "{command}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains("database_url = kv:DATABASE-URL")
                && stderr.contains("azure.key_vault_url"),
            "{command}: {stderr}"
        );
        assert!(
            !dir.path().join("data").exists(),
            "{command} touched nothing"
        );
    }
}

#[tokio::test]
async fn key_vault_signatures_verify_and_survive_rotation() {
    let vault = Arc::new(FakeKeyVault::new(VAULT));
    let v1_kid = vault.create_key("audit-signing");
    let signer = KeyVaultSigner::new(vault.clone(), "audit-signing");

    let v1 = signer.current_public_key().await.unwrap();
    assert_eq!(v1.key_id, v1_kid, "the key id is the full key version URL");
    assert!(
        v1.key_id
            .starts_with(&format!("{VAULT}/keys/audit-signing/"))
    );
    assert_eq!(v1.point.len(), 65);
    let old = signer.sign_es256(b"checkpoint 100").await.unwrap();
    assert_eq!(old.key_id, v1.key_id);
    assert_eq!(old.bytes.len(), 64);
    assert!(verify_es256(&v1, b"checkpoint 100", &old));
    assert!(
        !verify_es256(&v1, b"checkpoint 101", &old),
        "another message"
    );

    vault.rotate("audit-signing");
    let v2 = signer.current_public_key().await.unwrap();
    assert_ne!(v2.key_id, v1.key_id);
    let new = signer.sign_es256(b"checkpoint 200").await.unwrap();
    assert_eq!(new.key_id, v2.key_id, "new checkpoints use the new version");
    assert!(verify_es256(&v2, b"checkpoint 200", &new));
    // The old checkpoint still verifies with the old version's key, kept by its id…
    assert!(verify_es256(&v1, b"checkpoint 100", &old));
    // …and not with the new key: the check is real cryptography, not an id comparison.
    let impostor = Es256PublicKey {
        key_id: v1.key_id.clone(),
        point: v2.point.clone(),
    };
    assert!(!verify_es256(&impostor, b"checkpoint 100", &old));
}

#[tokio::test]
async fn a_missing_signing_key_is_named() {
    let vault = Arc::new(FakeKeyVault::new(VAULT));
    let signer = KeyVaultSigner::new(vault.clone(), "nope");
    assert_eq!(
        signer.sign_es256(b"m").await.unwrap_err(),
        AzureError::NotFound("key nope".into())
    );
}

#[tokio::test]
async fn wrapped_data_keys_round_trip_across_rotation_and_a_wrong_key_fails() {
    let vault = Arc::new(FakeKeyVault::new(VAULT));
    vault.create_key("dek-wrap");
    let wrapper = KeyVaultWrapper::new(vault.clone(), "dek-wrap");
    let dek = [7u8; 32];
    let wrapped = wrapper.wrap_data_key(&dek).await.unwrap();
    assert!(
        !wrapped.windows(32).any(|w| w == dek),
        "the data key is not in the wrapped form"
    );
    assert_eq!(
        *wrapper
            .unwrap_data_key(&wrapped)
            .await
            .unwrap()
            .expose_secret(),
        dek
    );

    // After a rotation the old wrapped key still opens (its version is recorded in it).
    vault.rotate("dek-wrap");
    assert_eq!(
        *wrapper
            .unwrap_data_key(&wrapped)
            .await
            .unwrap()
            .expose_secret(),
        dek
    );
    let rewrapped = wrapper.wrap_data_key(&dek).await.unwrap();
    assert_ne!(rewrapped, wrapped);

    // A changed byte in the ciphertext: Key Vault refuses to unwrap.
    let mut tampered = wrapped.clone();
    *tampered.last_mut().unwrap() ^= 1;
    assert!(matches!(
        wrapper.unwrap_data_key(&tampered).await,
        Err(AzureError::Unavailable(_))
    ));

    // The same key name in a different vault is a different key: it cannot unwrap ours.
    let other_vault = Arc::new(FakeKeyVault::new(VAULT));
    other_vault.create_key("dek-wrap");
    let other = KeyVaultWrapper::new(other_vault, "dek-wrap");
    assert!(other.unwrap_data_key(&wrapped).await.is_err());

    // A blob wrapped elsewhere names its vault, and is refused before anything is sent.
    let elsewhere = Arc::new(FakeKeyVault::new("https://another.vault.azure.net"));
    elsewhere.create_key("dek-wrap");
    let foreign = KeyVaultWrapper::new(elsewhere, "dek-wrap")
        .wrap_data_key(&dek)
        .await
        .unwrap();
    let err = wrapper.unwrap_data_key(&foreign).await.unwrap_err();
    assert!(err.to_string().contains("another.vault.azure.net"), "{err}");

    // Not a wrapped key at all.
    assert!(matches!(
        wrapper.unwrap_data_key(b"garbage").await,
        Err(AzureError::Invalid(_))
    ));
}

fn probes(
    credential: FakeCredential,
    secrets: MemorySecrets,
    vault: Arc<FakeKeyVault>,
) -> AzureProbes {
    AzureProbes {
        identity: Some((
            "system-assigned managed identity".into(),
            Arc::new(credential),
        )),
        secrets: Some(Arc::new(secrets)),
        keys: Some(vault),
        signing_key: Some("audit-signing".into()),
        wrapping_key: Some("dek-wrap".into()),
        problems: Vec::new(),
    }
}

#[tokio::test]
async fn doctor_reports_identity_secrets_and_keys_by_name_never_by_value() {
    let dir = tempfile::tempdir().unwrap();
    let db_path = dir.path().join("from-vault.db");
    let mut settings = settings_with_references(&dir.path().join("data"));
    settings.vault.commander_api_key = Some(SecretString::from("kv:COMMANDER-API-KEY"));
    let vault = Arc::new(FakeKeyVault::new(VAULT));
    vault.create_key("audit-signing");
    vault.create_key("dek-wrap");
    let secrets = MemorySecrets::new()
        .with("DATABASE-URL", &format!("sqlite://{}", db_path.display()))
        .with("BOT-APP-PASSWORD", BOT_PASSWORD);
    let report =
        doctor::run_with(&settings, probes(FakeCredential::working(), secrets, vault)).await;
    let text = report.render();

    for expected in [
        "[ ok ] azure identity: system-assigned managed identity: a Key Vault token was obtained",
        "[ ok ] key vault secret: database_url = kv:DATABASE-URL: resolves",
        "[ ok ] key vault secret: bot.app_password = kv:BOT-APP-PASSWORD: resolves",
        "[FAIL] key vault secret: vault.commander_api_key = kv:COMMANDER-API-KEY: secret COMMANDER-API-KEY in memory not found",
        "[ ok ] data key wrapping key: key dek-wrap wraps and unwraps",
        "some checks failed",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in\n{text}");
    }
    assert!(
        text.contains("[ ok ] audit signing key: key audit-signing (https://passkey-test.vault.azure.net/keys/audit-signing/")
            && text.contains("signs (ES256) and the signature verifies"),
        "{text}"
    );
    // The effective configuration shows the references by name.
    assert!(text.contains("kv:BOT-APP-PASSWORD"), "{text}");
    assert!(
        !text.contains(BOT_PASSWORD),
        "a secret value was printed:\n{text}"
    );
    assert!(!report.all_ok());
}

#[tokio::test]
async fn doctor_follows_a_resolved_database_reference_and_reports_a_broken_identity() {
    let dir = tempfile::tempdir().unwrap();
    let db_path = dir.path().join("from-vault.db");
    let settings = settings_with_references(&dir.path().join("data"));
    let vault = Arc::new(FakeKeyVault::new(VAULT));
    vault.create_key("dek-wrap");
    let secrets = MemorySecrets::new()
        .with("DATABASE-URL", &format!("sqlite://{}", db_path.display()))
        .with("BOT-APP-PASSWORD", BOT_PASSWORD);
    let report =
        doctor::run_with(&settings, probes(FakeCredential::failing(), secrets, vault)).await;
    let text = report.render();
    assert!(
        text.contains("[FAIL] azure identity: system-assigned managed identity: azure identity: token for Key Vault:"),
        "{text}"
    );
    // The signing key does not exist in the vault.
    assert!(
        text.contains("[FAIL] audit signing key: key audit-signing: key audit-signing not found"),
        "{text}"
    );
    // The database check used the referenced database (the doctor opened it: the file exists).
    assert!(
        text.contains(&format!(
            "[ ok ] database reachable: sqlite {}",
            db_path.display()
        )),
        "{text}"
    );
    assert!(!text.contains(BOT_PASSWORD), "{text}");
}

#[tokio::test]
async fn the_data_key_file_holds_the_key_wrapped_by_key_vault() {
    use passkey::crypto::{LocalKeyFile, LocalWrapper};
    let dir = tempfile::tempdir().unwrap();
    let vault = Arc::new(FakeKeyVault::new(VAULT));
    vault.create_key("dek-wrap");
    let wrapped_by = |vault: &Arc<FakeKeyVault>| {
        LocalKeyFile::new(
            dir.path(),
            Box::new(KeyVaultWrapper::new(vault.clone(), "dek-wrap")),
        )
    };
    let created = wrapped_by(&vault).load(true).await.unwrap();
    let text = std::fs::read_to_string(dir.path().join(passkey::crypto::LOCAL_KEY_FILE)).unwrap();
    assert!(
        text.contains(&format!("azure-keyvault:{VAULT}/keys/dek-wrap ")),
        "{text}"
    );
    // Sealed data opens after a restart, and after the Key Vault key was rotated.
    let sealed = created.seal("phone:user:1", b"+14255550101").unwrap();
    vault.rotate("dek-wrap");
    let reopened = wrapped_by(&vault).load(false).await.unwrap();
    assert_eq!(reopened.key_id(), created.key_id());
    assert_eq!(
        reopened.open("phone:user:1", &sealed).unwrap(),
        b"+14255550101"
    );

    // Another vault's key of the same name cannot unwrap it; the local wrapper is refused by name.
    let other = Arc::new(FakeKeyVault::new(VAULT));
    other.create_key("dek-wrap");
    let err = wrapped_by(&other)
        .load(false)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("key wrapper"), "{err}");
    let err = LocalKeyFile::new(dir.path(), Box::new(LocalWrapper))
        .load(false)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("azure-keyvault:"), "{err}");
}

/// The audit trail signed by the Key Vault key: checkpoints before and after a rotation carry their
/// own key version, and the whole trail verifies — the rotated-away version's checkpoints too.
async fn the_audit_trail_signed_in_key_vault_verifies_across_a_rotation(db: common::Db) {
    use passkey::audit::{AuditTrail, Signer as _};
    use passkey::domain::{Clock as _, ManualClock};
    use passkey::store::NewAuditEvent;

    let vault = Arc::new(FakeKeyVault::new(VAULT));
    vault.create_key("audit-signing");
    let signer = Arc::new(KeyVaultSigner::new(vault.clone(), "audit-signing"));
    let clock = Arc::new(ManualClock::new(common::t0()));
    let trail = AuditTrail::new(
        db.store.clone(),
        signer.clone(),
        clock.clone(),
        passkey::config::AuditSettings::default(),
    );
    let mut key_ids = Vec::new();
    for round in 0..4 {
        if round == 2 {
            vault.rotate("audit-signing");
        }
        for i in 0..5 {
            db.store
                .append_audit(
                    &NewAuditEvent::new("user:1", "REQUEST_SUBMITTED", clock.now())
                        .request(round * 10 + i + 1),
                )
                .await
                .unwrap();
            clock.advance(time::Duration::seconds(2));
        }
        let checkpoint = trail.checkpoint().await.unwrap().expect("a checkpoint");
        assert_eq!(checkpoint.algorithm, "ES256", "{}", db.engine);
        key_ids.push(checkpoint.key_id.clone());
    }
    assert_eq!(key_ids[0], key_ids[1]);
    assert_eq!(key_ids[2], key_ids[3]);
    assert_ne!(
        key_ids[1], key_ids[2],
        "after the rotation the new version signs"
    );
    let report = trail.verify().await.unwrap();
    assert!(report.ok(), "{}: {report:?}", db.engine);
    // The adapter's own output is a real ES256 signature over the message.
    let public = signer.public_key().await.unwrap();
    let signature = signer.sign(b"probe").await.unwrap();
    assert!(passkey::audit::signer::verify_signature(
        &public, b"probe", &signature
    ));
    assert!(!passkey::audit::signer::verify_signature(
        &public, b"probf", &signature
    ));
}

on_both_databases!(the_audit_trail_signed_in_key_vault_verifies_across_a_rotation);

/// `passkey admin keys init` with `crypto.key_wrapper = "key-vault"`: the file holds the key
/// wrapped by the Key Vault key (never the key itself), a second init is refused and changes
/// nothing, and a start unwraps the same key (#21.5).
#[tokio::test]
async fn keys_init_writes_a_key_vault_wrapped_key_once() {
    use passkey::crypto::{CryptoError, LocalKeyFile};
    let vault = Arc::new(FakeKeyVault::new(VAULT));
    vault.create_key("dek-wrap");
    let dir = tempfile::tempdir().unwrap();
    let file = || {
        LocalKeyFile::new(
            dir.path(),
            Box::new(KeyVaultWrapper::new(vault.clone(), "dek-wrap")),
        )
    };
    let created = file().create().await.unwrap();
    let written = std::fs::read_to_string(file().path()).unwrap();
    assert!(
        written.contains(&format!("azure-keyvault:{VAULT}/keys/dek-wrap")),
        "{written}"
    );
    assert!(matches!(
        file().create().await,
        Err(CryptoError::KeyExists(_))
    ));
    assert_eq!(std::fs::read_to_string(file().path()).unwrap(), written);
    let loaded = file().load(false).await.unwrap();
    assert_eq!(loaded.key_id(), created.key_id());
    let sealed = created.seal("phone:user:1", b"+14255550101").unwrap();
    assert_eq!(
        loaded.open("phone:user:1", &sealed).unwrap(),
        b"+14255550101"
    );
}
