//! `passkey doctor`: the effective configuration (secrets redacted) and a check of every dependency
//! it can reach. Later subsystems add their checks here.

use crate::config::Settings;
use crate::store;
use secrecy::ExposeSecret;
use std::fmt::Write as _;

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

pub async fn run(settings: &Settings) -> Report {
    let mut checks = Vec::new();
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
    checks.push(data_key_check(settings).await);
    if let Some(check) = ksm_check(settings) {
        checks.push(check);
    }
    Report {
        settings: settings.redacted_summary(),
        checks,
    }
}

/// The data-encryption key file is there and private (read-only: doctor never creates it).
async fn data_key_check(settings: &Settings) -> Check {
    use crate::crypto::{CryptoError, LocalKeyFile, LocalWrapper};
    let file = LocalKeyFile::new(&settings.data_dir, Box::new(LocalWrapper));
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
    let result = std::fs::create_dir_all(dir)
        .and_then(|_| std::fs::write(&probe, b"ok"))
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

/// With the Commander backends, metadata reads come from KSM: its configuration must decode.
/// (Decoding proves the shape; reaching Keeper is the first sync's job.)
fn ksm_check(settings: &Settings) -> Option<Check> {
    use crate::config::VaultBackend;
    if !matches!(
        settings.vault.backend,
        VaultBackend::CommanderService | VaultBackend::CommanderCli
    ) {
        return None;
    }
    let name = "vault metadata (KSM)";
    Some(match &settings.vault.ksm_config {
        None => Check {
            name,
            ok: false,
            detail: "vault.ksm_config is not set: vault sync cannot read the vault".into(),
        },
        Some(config) => match crate::vault::ksm::CrateKsm::from_config(config) {
            Ok(_) => Check {
                name,
                ok: true,
                detail: "the KSM configuration decodes".into(),
            },
            Err(e) => Check {
                name,
                ok: false,
                detail: e.message,
            },
        },
    })
}
