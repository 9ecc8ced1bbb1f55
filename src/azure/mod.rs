//! Azure: the identity Passkey runs as, Key Vault secrets and Key Vault keys.
//!
//! - [`credential`]: managed identity in Azure (system- or user-assigned), developer tools
//!   (`az login`) locally — chosen by `azure.credential`; no secret of our own anywhere.
//! - [`secrets`]: `kv:NAME` references in any secret setting, resolved once at start-up
//!   ([`secrets::resolve`]) through a [`secrets::SecretSource`].
//! - [`keys`]: the Key Vault key operations Passkey uses ([`keys::KeyVaultKeys`]: get, sign,
//!   wrapKey, unwrapKey), the ES256 checkpoint signer and the data-key wrapper built on them.
//! - [`fake`]: in-process stand-ins that really sign (P-256) and really encrypt (AES-256-GCM),
//!   for tests — azure_core refuses bearer tokens over plain http, so Key Vault is faked at the
//!   trait, not on a loopback socket.
//!
//! Errors name vaults, keys and secret references, never a secret value or key material.

pub mod credential;
pub mod fake;
pub mod keys;
pub mod secrets;

/// The Key Vault key that signs audit checkpoints, when `audit.signer = "key-vault"`.
pub fn signing_key_name(settings: &crate::config::Settings) -> Option<String> {
    (settings.audit.signer == crate::config::KeyProtection::KeyVault)
        .then(|| settings.audit.key_vault_key.clone())
        .flatten()
}

/// The Key Vault key that wraps the data-encryption key, when `crypto.key_wrapper = "key-vault"`.
pub fn wrapping_key_name(settings: &crate::config::Settings) -> Option<String> {
    (settings.crypto.key_wrapper == crate::config::KeyProtection::KeyVault)
        .then(|| settings.crypto.key_vault_key.clone())
        .flatten()
}

/// Why an Azure call failed. Messages are safe to log and print.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AzureError {
    /// The configuration cannot work (missing vault URL, malformed key id…).
    #[error("azure configuration: {0}")]
    Config(String),
    /// No token for our identity.
    #[error("azure identity: {0}")]
    Identity(String),
    /// The named secret or key does not exist (or is disabled).
    #[error("{0} not found")]
    NotFound(String),
    /// Key Vault refused or could not be reached.
    #[error("key vault: {0}")]
    Unavailable(String),
    /// Key Vault answered with something we cannot use (wrong key type, bad lengths).
    #[error("key vault: {0}")]
    Invalid(String),
}

impl AzureError {
    /// Maps an SDK error without its body (a body could echo request content): the HTTP status
    /// and the error kind are enough to act on.
    pub(crate) fn from_sdk(what: &str, e: &azure_core::Error) -> AzureError {
        use azure_core::error::ErrorKind;
        match e.kind() {
            ErrorKind::HttpResponse {
                status, error_code, ..
            } => {
                if *status == azure_core::http::StatusCode::NotFound {
                    AzureError::NotFound(what.to_string())
                } else {
                    AzureError::Unavailable(format!(
                        "{what}: HTTP {} {}",
                        u16::from(*status),
                        error_code.as_deref().unwrap_or_default()
                    ))
                }
            }
            // Credential errors say which credential failed and why (CLI not logged in, no
            // managed identity endpoint); they never carry a token.
            ErrorKind::Credential => AzureError::Identity(format!("{what}: {e}")),
            kind => AzureError::Unavailable(format!("{what}: {kind}")),
        }
    }
}
