//! Who Passkey is to Azure: a managed identity in Azure, the developer's own login locally.
//! Both come from `azure_identity`; neither needs a secret in code or configuration. With
//! `bot.connector_auth = "managed-identity"` the bot's Connector and Graph tokens come from this
//! credential too (`channel::TokenProvider::from_settings`): one identity, `azure.client_id`.

use super::AzureError;
use crate::config::{AzureCredentialKind, AzureSettings};
use azure_core::credentials::TokenCredential;
use azure_identity::{
    DeveloperToolsCredential, ManagedIdentityCredential, ManagedIdentityCredentialOptions,
    UserAssignedId,
};
use std::sync::Arc;

/// The scope of every Key Vault token.
pub const KEY_VAULT_SCOPE: &str = "https://vault.azure.net/.default";

/// The credential `azure.credential` selects.
pub fn from_settings(settings: &AzureSettings) -> Result<Arc<dyn TokenCredential>, AzureError> {
    let credential: Arc<dyn TokenCredential> = match settings.credential {
        AzureCredentialKind::ManagedIdentity => {
            let options = ManagedIdentityCredentialOptions {
                user_assigned_id: settings
                    .client_id
                    .clone()
                    .filter(|id| !id.is_empty())
                    .map(UserAssignedId::ClientId),
                ..Default::default()
            };
            ManagedIdentityCredential::new(Some(options))
                .map_err(|e| AzureError::from_sdk("managed identity", &e))?
        }
        AzureCredentialKind::Developer => DeveloperToolsCredential::new(None)
            .map_err(|e| AzureError::from_sdk("developer tools credential", &e))?,
    };
    Ok(credential)
}

/// A short description of the identity, safe to print (`passkey doctor`).
pub fn describe(settings: &AzureSettings) -> String {
    match (settings.credential, settings.client_id.as_deref()) {
        (AzureCredentialKind::ManagedIdentity, Some(id)) if !id.is_empty() => {
            format!("user-assigned managed identity {id}")
        }
        (AzureCredentialKind::ManagedIdentity, _) => "system-assigned managed identity".into(),
        (AzureCredentialKind::Developer, _) => "developer tools (Azure CLI / azd login)".into(),
    }
}

/// Proves the identity works: a Key Vault token can be obtained (and is dropped unseen).
pub async fn check(credential: &dyn TokenCredential) -> Result<(), AzureError> {
    credential
        .get_token(&[KEY_VAULT_SCOPE], None)
        .await
        .map(|_| ())
        .map_err(|e| AzureError::from_sdk("token for Key Vault", &e))
}
