//! The Keeper bridge the settings select: which reader, sharer and rotation source each backend
//! provides. Built by `app.rs`; also used by `passkey doctor` to check the record listing.

use crate::config::{Settings, VaultBackend};
use crate::domain::Clock;
use crate::store::{LocalShareStore, StoreError};
use crate::vault::commander::{CommanderCli, CommanderService};
use crate::vault::local::LocalVault;
use crate::vault::stub::StubSharer;
use crate::vault::{
    CommanderAclReader, CommanderReader, CommanderReads, FolderAclSource, NoRotationInfo,
    OneTimeSharer, RotationChecker, VaultReader,
};
use std::sync::Arc;

/// The Keeper bridge's parts, as one backend provides them.
pub struct VaultParts {
    /// Metadata reads (for Commander: KSM's records and folders with Commander's ACLs).
    pub reader: Arc<dyn VaultReader>,
    pub sharer: Arc<dyn OneTimeSharer>,
    pub rotations: Arc<dyn RotationChecker>,
    /// The local vault, when that is the backend.
    pub local: Option<Arc<LocalVault>>,
}

/// The vault bridge cannot be assembled from the settings (the message names the setting and its
/// environment variable). Distinct from a database failure, which it is never reported as.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct VaultSetupError(pub String);

impl From<VaultSetupError> for StoreError {
    fn from(e: VaultSetupError) -> StoreError {
        StoreError::Invalid(e.0)
    }
}

/// The Keeper bridge the settings select. `local_shares` is where the local vault keeps its
/// one-time shares (the app's database, so every instance sees them); without it (a command that
/// only reads records) the local vault's share operations fail closed.
pub fn vault_backend(
    settings: &Settings,
    clock: Arc<dyn Clock>,
    local_shares: Option<Arc<dyn LocalShareStore>>,
) -> Result<VaultParts, VaultSetupError> {
    match settings.vault.backend {
        VaultBackend::Local => {
            let mut local = LocalVault::open(&settings.data_dir, settings.public_base_url(), clock)
                .map_err(|e| VaultSetupError(format!("local vault: {e}")))?;
            if let Some(shares) = local_shares {
                local = local.with_shares(shares);
            }
            let local = Arc::new(local);
            Ok(VaultParts {
                reader: local.clone(),
                sharer: local.clone(),
                rotations: Arc::new(NoRotationInfo),
                local: Some(local),
            })
        }
        VaultBackend::Stub => {
            // Staging without Commander: fake links, metadata from the vault file.
            let local = LocalVault::open(
                &settings.data_dir,
                settings.public_base_url(),
                clock.clone(),
            )
            .map_err(|e| VaultSetupError(format!("vault metadata file: {e}")))?;
            Ok(VaultParts {
                reader: Arc::new(local),
                sharer: Arc::new(StubSharer::new(clock)),
                rotations: Arc::new(NoRotationInfo),
                local: None,
            })
        }
        VaultBackend::CommanderService => {
            let (Some(url), Some(key)) = (
                &settings.vault.commander_url,
                &settings.vault.commander_api_key,
            ) else {
                return Err(VaultSetupError(
                    "vault.backend = \"commander-service\" needs vault.commander_url (PASSKEY_VAULT__COMMANDER_URL) and vault.commander_api_key (PASSKEY_VAULT__COMMANDER_API_KEY)".into(),
                ));
            };
            let commander = Arc::new(
                CommanderService::new(url, key.clone(), settings.vault.commander_timeout(), clock)
                    .map_err(|e| VaultSetupError(format!("commander service: {}", e.message)))?,
            );
            Ok(VaultParts {
                reader: commander_metadata(settings, commander.clone())?,
                sharer: commander.clone(),
                rotations: commander,
                local: None,
            })
        }
        VaultBackend::CommanderCli => {
            let Some(config) = &settings.vault.commander_config_path else {
                return Err(VaultSetupError(
                    "vault.backend = \"commander-cli\" needs vault.commander_config_path (PASSKEY_VAULT__COMMANDER_CONFIG_PATH)".into(),
                ));
            };
            let commander = Arc::new(CommanderCli::new(
                settings.vault.commander_binary.clone(),
                config.clone(),
                settings.vault.commander_timeout(),
                clock,
            ));
            Ok(VaultParts {
                reader: commander_metadata(settings, commander.clone())?,
                sharer: commander.clone(),
                rotations: commander,
                local: None,
            })
        }
    }
}

/// Record and folder reads for the Commander backends: KSM's records and folders with
/// Commander's ACLs when `vault.ksm_config` is set (see [`CommanderAclReader`]), otherwise
/// Commander alone (records from `list`, see [`CommanderReader`]). Both print no secret.
fn commander_metadata<C>(
    settings: &Settings,
    commander: Arc<C>,
) -> Result<Arc<dyn VaultReader>, VaultSetupError>
where
    C: CommanderReads + FolderAclSource + 'static,
{
    use crate::vault::ksm::{CrateKsm, KsmReader};
    match &settings.vault.ksm_config {
        Some(config) => {
            let client = CrateKsm::from_config(config).map_err(|_| {
                VaultSetupError(
                    "vault.ksm_config (PASSKEY_VAULT__KSM_CONFIG) is not a KSM application \
                     configuration; unset it to read records through Commander's `list`"
                        .into(),
                )
            })?;
            let ksm = Arc::new(KsmReader::new(
                Box::new(client),
                std::time::Duration::from_secs(60),
            ));
            Ok(Arc::new(CommanderAclReader::new(ksm, commander)))
        }
        None => Ok(Arc::new(CommanderReader::new(commander))),
    }
}
