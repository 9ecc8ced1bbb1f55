//! `passkey doctor`: the effective configuration (secrets redacted) and a check of every dependency
//! it can reach. Later subsystems add their checks here.

use crate::azure::keys::{KeyVaultKeys, KeyVaultSigner, KeyVaultWrapper, verify_es256};
use crate::azure::secrets::SecretSource;
use crate::azure::{AzureError, credential, secrets};
use crate::config::Settings;
use crate::store;
use azure_core::credentials::TokenCredential;
use secrecy::ExposeSecret;
use std::fmt::Write as _;
use std::sync::Arc;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    pub name: &'static str,
    pub ok: bool,
    pub detail: String,
}

/// Runs every check; the report is printable and `all_ok` decides the exit code.
pub struct Report {
    pub settings: Vec<(String, String)>,
    pub checks: Vec<Check>,
}

impl Report {
    pub fn all_ok(&self) -> bool {
        self.checks.iter().all(|c| c.ok)
    }

    pub fn render(&self) -> String {
        let mut out = String::from("effective configuration\n");
        let width = self
            .settings
            .iter()
            .map(|(k, _)| k.len())
            .max()
            .unwrap_or(0);
        for (k, v) in &self.settings {
            let _ = writeln!(out, "  {k:width$}  {v}");
        }
        out.push_str("\nchecks\n");
        for c in &self.checks {
            let _ = writeln!(
                out,
                "  [{}] {}: {}",
                if c.ok { " ok " } else { "FAIL" },
                c.name,
                c.detail
            );
        }
        out.push_str(if self.all_ok() {
            "\nall checks passed\n"
        } else {
            "\nsome checks failed\n"
        });
        out
    }
}

/// The Azure pieces the doctor talks to; `None` where nothing is configured (or could be built:
/// that is reported as a failed check by [`AzureProbes::from_settings`]).
#[derive(Default)]
pub struct AzureProbes {
    pub identity: Option<(String, Arc<dyn TokenCredential>)>,
    pub secrets: Option<Arc<dyn SecretSource>>,
    pub keys: Option<Arc<dyn KeyVaultKeys>>,
    /// The Key Vault key that signs audit checkpoints, when the signer is `key-vault`.
    pub signing_key: Option<String>,
    /// The Key Vault key that wraps the data-encryption key, when the wrapper is `key-vault`.
    pub wrapping_key: Option<String>,
    /// Problems met while building the probes.
    pub problems: Vec<Check>,
}

impl AzureProbes {
    /// The real identity and vault, when the settings use Azure at all.
    pub fn from_settings(settings: &Settings) -> AzureProbes {
        let mut probes = AzureProbes {
            signing_key: crate::azure::signing_key_name(settings),
            wrapping_key: crate::azure::wrapping_key_name(settings),
            ..Default::default()
        };
        let mut copy = settings.clone();
        let uses_vault = !secrets::references(&mut copy).is_empty()
            || probes.signing_key.is_some()
            || probes.wrapping_key.is_some();
        if !uses_vault && settings.azure.key_vault_url.is_none() {
            return probes;
        }
        let credential = match credential::from_settings(&settings.azure) {
            Ok(c) => c,
            Err(e) => {
                probes.problems.push(Check {
                    name: "azure identity",
                    ok: false,
                    detail: e.to_string(),
                });
                return probes;
            }
        };
        probes.identity = Some((credential::describe(&settings.azure), credential.clone()));
        let Some(url) = settings
            .azure
            .key_vault_url
            .as_deref()
            .filter(|u| !u.is_empty())
        else {
            if uses_vault {
                probes.problems.push(Check {
                    name: "key vault",
                    ok: false,
                    detail: "Key Vault references or keys are configured but azure.key_vault_url is not set".into(),
                });
            }
            return probes;
        };
        match secrets::KeyVaultSecrets::new(url, credential.clone()) {
            Ok(s) => probes.secrets = Some(Arc::new(s)),
            Err(e) => probes.problems.push(Check {
                name: "key vault",
                ok: false,
                detail: e.to_string(),
            }),
        }
        if let Ok(k) = crate::azure::keys::SdkKeys::new(url, credential) {
            probes.keys = Some(Arc::new(k));
        }
        probes
    }
}

pub async fn run(settings: &Settings) -> Report {
    run_with(settings, AzureProbes::from_settings(settings)).await
}

/// As [`run`], with the Azure pieces given (tests pass fakes).
pub async fn run_with(settings: &Settings, azure: AzureProbes) -> Report {
    let mut checks = Vec::new();
    // The data key file is opened with the configured wrapper (the probes' Key Vault, if any).
    let data_key_wrapper: Box<dyn crate::crypto::KeyWrapper> = match (
        settings.crypto.key_wrapper,
        &azure.keys,
        &azure.wrapping_key,
    ) {
        (crate::config::KeyProtection::KeyVault, Some(keys), Some(name)) => {
            Box::new(KeyVaultWrapper::new(keys.clone(), name))
        }
        _ => Box::new(crate::crypto::LocalWrapper),
    };
    let resolved = azure_checks(settings, azure, &mut checks).await;
    // The summary shows the settings as written (references by name); the checks below use
    // the resolved values, so the database check reaches the database a reference names.
    let summary_settings = settings;
    let settings = resolved.as_ref().unwrap_or(settings);
    checks.push(match settings.check() {
        Ok(()) => Check {
            name: "configuration",
            ok: true,
            detail: "safe to start".into(),
        },
        Err(e) => Check {
            name: "configuration",
            ok: false,
            detail: e.to_string(),
        },
    });
    checks.push(data_dir_check(settings));
    let url = settings.effective_database_url();
    let mut recorded_sms_faults = None;
    match store::connect(url.expose_secret(), 1).await {
        Err(e) => checks.push(Check {
            name: "database reachable",
            ok: false,
            detail: format!("{}: {e}", settings.database_label()),
        }),
        Ok(store) => {
            let ping = store.ping().await;
            checks.push(Check {
                name: "database reachable",
                ok: ping.is_ok(),
                detail: match ping {
                    Ok(()) => settings.database_label(),
                    Err(e) => format!("{}: {e}", settings.database_label()),
                },
            });
            recorded_sms_faults = store.sms_credential_faults().await.ok();
            checks.push(match store.migration_state().await {
                Ok(m) if m.is_current() => Check {
                    name: "migrations current",
                    ok: true,
                    detail: format!("{} applied", m.applied.len()),
                },
                Ok(m) => Check {
                    name: "migrations current",
                    ok: false,
                    detail: format!(
                        "applied {:?}, this build expects {:?}; run `passkey migrate`",
                        m.applied, m.expected
                    ),
                },
                Err(e) => Check {
                    name: "migrations current",
                    ok: false,
                    detail: e.to_string(),
                },
            });
        }
    }
    checks.push(vault_check(settings).await);
    checks.push(data_key_check(settings, data_key_wrapper).await);
    checks.push(sms_check(settings, recorded_sms_faults.unwrap_or_default()).await);
    if let Some(check) = records_check(settings).await {
        checks.push(check);
    }
    Report {
        settings: summary_settings.redacted_summary(),
        checks,
    }
}

/// The SMS provider: a harmless authenticated call where the provider has one (Twilio reads the
/// account), and the refusals sends have recorded (ACS has no call that sends nothing, so its
/// credentials show only through a send; #21.6).
async fn sms_check(settings: &Settings, recorded: Vec<crate::store::SmsCredentialFault>) -> Check {
    let check = |ok, detail| Check {
        name: "sms provider",
        ok,
        detail,
    };
    let clock: Arc<dyn crate::domain::Clock> = Arc::new(crate::domain::SystemClock);
    let sender = match crate::otp::sms_sender(&settings.otp, clock) {
        Ok(sender) => sender,
        Err(e) => return check(false, e),
    };
    let provider = sender.provider();
    let settings_named = crate::otp::sms::credential_settings(provider);
    if let Some(fault) = recorded.iter().find(|f| f.provider == provider) {
        return check(
            false,
            format!(
                "{provider} has refused Passkey's credentials since {} ({}); check {settings_named}",
                fault.first_seen_at.to_minute_text(),
                fault.detail
            ),
        );
    }
    match sender.check_credentials().await {
        Ok(Some(what)) => check(true, format!("{provider}: {what}")),
        Ok(None) if provider == "console" => check(
            true,
            "console (dev): codes are written to the log, not sent".into(),
        ),
        Ok(None) => check(
            true,
            format!(
                "{provider}: no refusal on record (it has no call that checks credentials without sending)"
            ),
        ),
        Err(e) if e.class == crate::otp::sms::SmsFailure::Credentials => check(
            false,
            format!(
                "{provider} refuses Passkey's credentials ({}); check {settings_named}",
                e.detail
            ),
        ),
        Err(e) => check(
            false,
            format!("{provider} unreachable or failing ({})", e.detail),
        ),
    }
}

/// Identity, secret references and keys. Returns the settings with references resolved when
/// every one resolved (so the database check below reaches the real database).
async fn azure_checks(
    settings: &Settings,
    azure: AzureProbes,
    checks: &mut Vec<Check>,
) -> Option<Settings> {
    checks.extend(azure.problems);
    if let Some((who, credential)) = &azure.identity {
        checks.push(match credential::check(credential.as_ref()).await {
            Ok(()) => Check {
                name: "azure identity",
                ok: true,
                detail: format!("{who}: a Key Vault token was obtained"),
            },
            Err(e) => Check {
                name: "azure identity",
                ok: false,
                detail: format!("{who}: {e}"),
            },
        });
    }
    let mut resolved = settings.clone();
    let references = secrets::references(&mut resolved);
    let mut all_resolved = true;
    for r in &references {
        let outcome = match &azure.secrets {
            Some(source) => secrets::lookup(source.as_ref(), &r.reference).await,
            None => Err(AzureError::Config("no Key Vault to resolve it from".into())),
        };
        all_resolved &= outcome.is_ok();
        checks.push(Check {
            name: "key vault secret",
            ok: outcome.is_ok(),
            detail: match outcome {
                Ok(_) => format!("{} = {}: resolves", r.setting, r.reference),
                Err(e) => format!("{} = {}: {e}", r.setting, r.reference),
            },
        });
    }
    if let Some(name) = &azure.signing_key {
        checks.push(signing_check(azure.keys.clone(), name).await);
    }
    if let Some(name) = &azure.wrapping_key {
        checks.push(wrapping_check(azure.keys.clone(), name).await);
    }
    if references.is_empty() || !all_resolved {
        return None;
    }
    let source = azure.secrets?;
    secrets::resolve(&mut resolved, source.as_ref())
        .await
        .ok()?;
    Some(resolved)
}

/// The checkpoint key signs a probe message, and the signature verifies with its public key.
async fn signing_check(keys: Option<Arc<dyn KeyVaultKeys>>, name: &str) -> Check {
    let check = |ok, detail| Check {
        name: "audit signing key",
        ok,
        detail,
    };
    let Some(keys) = keys else {
        return check(false, format!("key {name}: no Key Vault configured"));
    };
    let signer = KeyVaultSigner::new(keys, name);
    let probe = format!("passkey doctor probe {}", std::process::id());
    let outcome = async {
        let public = signer.current_public_key().await?;
        let signature = signer.sign_es256(probe.as_bytes()).await?;
        Ok::<_, AzureError>((
            public.clone(),
            verify_es256(&public, probe.as_bytes(), &signature),
        ))
    }
    .await;
    match outcome {
        Ok((public, true)) => check(
            true,
            format!(
                "key {name} ({}) signs (ES256) and the signature verifies",
                public.key_id
            ),
        ),
        Ok((public, false)) => check(
            false,
            format!(
                "key {name} ({}) signed, but the signature does not verify",
                public.key_id
            ),
        ),
        Err(e) => check(false, format!("key {name}: {e}")),
    }
}

/// The data-key wrapping key wraps a random probe key and unwraps it to the same bytes.
async fn wrapping_check(keys: Option<Arc<dyn KeyVaultKeys>>, name: &str) -> Check {
    let check = |ok, detail| Check {
        name: "data key wrapping key",
        ok,
        detail,
    };
    let Some(keys) = keys else {
        return check(false, format!("key {name}: no Key Vault configured"));
    };
    let wrapper = KeyVaultWrapper::new(keys, name);
    let mut probe = [0u8; 32];
    if getrandom::fill(&mut probe).is_err() {
        return check(false, "random number generator failed".into());
    }
    let outcome = async {
        let wrapped = wrapper.wrap_data_key(&probe).await?;
        let unwrapped = wrapper.unwrap_data_key(&wrapped).await?;
        Ok::<_, AzureError>(*unwrapped.expose_secret() == probe)
    }
    .await;
    match outcome {
        Ok(true) => check(true, format!("key {name} wraps and unwraps")),
        Ok(false) => check(
            false,
            format!("key {name}: unwrap returned different bytes"),
        ),
        Err(e) => check(false, format!("key {name}: {e}")),
    }
}

/// The data-encryption key file is there and private (read-only: doctor never creates it).
async fn data_key_check(settings: &Settings, wrapper: Box<dyn crate::crypto::KeyWrapper>) -> Check {
    use crate::crypto::{CryptoError, LocalKeyFile};
    let file = LocalKeyFile::new(&settings.data_dir, wrapper);
    let name = "data-encryption key";
    match file.load(false).await {
        Ok(key) => Check {
            name,
            ok: true,
            detail: format!("{} ({})", file.path().display(), key.key_id()),
        },
        Err(CryptoError::MissingKey(path)) if settings.profile == crate::config::Profile::Dev => {
            Check {
                name,
                ok: true,
                detail: format!("{} is created on the first dev start", path.display()),
            }
        }
        Err(e) => Check {
            name,
            ok: false,
            detail: e.to_string(),
        },
    }
}

/// The configured Keeper bridge answers (without printing any secret it holds).
async fn vault_check(settings: &Settings) -> Check {
    use crate::config::VaultBackend;
    use crate::vault::VaultReader;
    use crate::vault::local::LocalVault;
    let name = "vault backend";
    match settings.vault.backend {
        VaultBackend::Local => {
            let clock = std::sync::Arc::new(crate::domain::SystemClock);
            match LocalVault::open(&settings.data_dir, settings.public_base_url(), clock) {
                Ok(vault) => match vault.records().await {
                    Ok(records) => Check {
                        name,
                        ok: true,
                        detail: format!(
                            "local vault: {} records in {}",
                            records.len(),
                            crate::vault::local::FILE_NAME
                        ),
                    },
                    Err(e) => Check {
                        name,
                        ok: false,
                        detail: e.message,
                    },
                },
                Err(e) => Check {
                    name,
                    ok: false,
                    detail: format!("local vault: {e}"),
                },
            }
        }
        VaultBackend::Stub => Check {
            name,
            ok: true,
            detail: "staging stub: links are fake".into(),
        },
        VaultBackend::CommanderService => {
            let Some(url) = settings.vault.commander_url.as_deref() else {
                return Check {
                    name,
                    ok: false,
                    detail: "vault.commander_url is not set".into(),
                };
            };
            // Service mode's /health needs no api key.
            let health = format!("{}/health", url.trim_end_matches('/'));
            match reqwest::Client::new()
                .get(&health)
                .timeout(std::time::Duration::from_secs(5))
                .send()
                .await
            {
                Ok(r) if r.status().is_success() => Check {
                    name,
                    ok: true,
                    detail: format!("commander service at {url} is healthy"),
                },
                Ok(r) => Check {
                    name,
                    ok: false,
                    detail: format!(
                        "commander service at {url} answered HTTP {}",
                        r.status().as_u16()
                    ),
                },
                Err(_) => Check {
                    name,
                    ok: false,
                    detail: format!("commander service at {url} is unreachable"),
                },
            }
        }
        VaultBackend::CommanderCli => {
            let binary = &settings.vault.commander_binary;
            let found = if binary.components().count() > 1 {
                binary.is_file()
            } else {
                std::env::var_os("PATH").is_some_and(|paths| {
                    std::env::split_paths(&paths).any(|d| d.join(binary).is_file())
                })
            };
            let config_ok = settings
                .vault
                .commander_config_path
                .as_ref()
                .is_some_and(|p| p.is_file());
            Check {
                name,
                ok: found && config_ok,
                detail: format!(
                    "keeper binary {} {}; config file {}",
                    binary.display(),
                    if found { "found" } else { "NOT found" },
                    if config_ok { "present" } else { "missing" }
                ),
            }
        }
    }
}

fn data_dir_check(settings: &Settings) -> Check {
    let dir = &settings.data_dir;
    let probe = dir.join(format!(".doctor-{}", std::process::id()));
    let result = crate::private_fs::create_dir(dir)
        .and_then(|_| crate::private_fs::write_new(&probe, b"ok"))
        .and_then(|_| std::fs::remove_file(&probe));
    match result {
        Ok(()) => Check {
            name: "data directory writable",
            ok: true,
            detail: dir.display().to_string(),
        },
        Err(e) => Check {
            name: "data directory writable",
            ok: false,
            detail: format!("{}: {e}", dir.display()),
        },
    }
}

/// (#21.1) Where records come from, with the Commander backends, and whether they can: KSM when
/// `vault.ksm_config` is set (its configuration must decode; reaching Keeper is the first sync's
/// job), otherwise Commander's own `list`, which is run (it prints no secret; only the count is
/// shown).
async fn records_check(settings: &Settings) -> Option<Check> {
    use crate::config::VaultBackend;
    if !matches!(
        settings.vault.backend,
        VaultBackend::CommanderService | VaultBackend::CommanderCli
    ) {
        return None;
    }
    let name = "vault records";
    if let Some(config) = &settings.vault.ksm_config {
        return Some(match crate::vault::ksm::CrateKsm::from_config(config) {
            Ok(_) => Check {
                name,
                ok: true,
                detail: "records come from KSM (vault.ksm_config); the KSM configuration decodes"
                    .into(),
            },
            Err(_) => Check {
                name,
                ok: false,
                detail: "vault.ksm_config (PASSKEY_VAULT__KSM_CONFIG) is not a KSM application \
                         configuration; unset it to read records through Commander's `list`"
                    .into(),
            },
        });
    }
    let reader = match crate::vault::backend::vault_backend(
        settings,
        Arc::new(crate::domain::SystemClock),
        None,
    ) {
        Ok(parts) => parts.reader,
        Err(e) => {
            return Some(Check {
                name,
                ok: false,
                detail: e.to_string(),
            });
        }
    };
    Some(match reader.records().await {
        Ok(records) => Check {
            name,
            ok: true,
            detail: format!(
                "records come from Commander's `list` (no vault.ksm_config): {} records",
                records.len()
            ),
        },
        Err(e) => Check {
            name,
            ok: false,
            detail: format!(
                "records come from Commander's `list`, which failed: {}",
                e.message
            ),
        },
    })
}
