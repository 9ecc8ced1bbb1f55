//! Key Vault secret references. Any secret setting may be written `kv:NAME` (in `passkey.toml`
//! or a `PASSKEY_…` variable); at start-up [`resolve`] replaces each with the value of secret
//! `NAME` in `azure.key_vault_url`. A reference that does not resolve stops the start with a
//! message naming the reference and the setting — never a value.

use super::AzureError;
use crate::config::Settings;
use async_trait::async_trait;
use azure_core::credentials::TokenCredential;
use azure_security_keyvault_secrets::SecretClient;
use secrecy::{ExposeSecret, SecretString};
use std::collections::HashMap;
use std::sync::Arc;

/// What marks a setting's value as a Key Vault reference.
pub const REFERENCE_PREFIX: &str = "kv:";

/// The secret name in a reference, if `value` is one. Key Vault names are 1–127 letters,
/// digits and dashes.
pub fn reference_name(value: &str) -> Option<&str> {
    value
        .strip_prefix(REFERENCE_PREFIX)
        .filter(|name| valid_name(name))
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 127
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

/// Where referenced secrets come from.
#[async_trait]
pub trait SecretSource: Send + Sync {
    /// The secret's current value; `NotFound` when the vault has no such (enabled) secret.
    async fn secret(&self, name: &str) -> Result<SecretString, AzureError>;
    /// Where the secrets live, for messages (a vault URL).
    fn location(&self) -> String;
}

/// Secrets from Azure Key Vault (`GET {vault}/secrets/{name}`, latest version).
pub struct KeyVaultSecrets {
    client: SecretClient,
    vault_url: String,
}

impl KeyVaultSecrets {
    pub fn new(
        vault_url: &str,
        credential: Arc<dyn TokenCredential>,
    ) -> Result<KeyVaultSecrets, AzureError> {
        let client = SecretClient::new(vault_url, credential, None).map_err(|_| {
            AzureError::Config(format!(
                "azure.key_vault_url {vault_url} is not a vault URL"
            ))
        })?;
        Ok(KeyVaultSecrets {
            client,
            vault_url: vault_url.to_string(),
        })
    }
}

#[async_trait]
impl SecretSource for KeyVaultSecrets {
    #[tracing::instrument(name = "key_vault.get_secret", skip(self))]
    async fn secret(&self, name: &str) -> Result<SecretString, AzureError> {
        let what = format!("secret {name}");
        let response = self
            .client
            .get_secret(name, None)
            .await
            .map_err(|e| AzureError::from_sdk(&what, &e))?;
        let secret = response
            .into_model()
            .map_err(|e| AzureError::from_sdk(&what, &e))?;
        secret
            .value
            .map(SecretString::from)
            .ok_or(AzureError::NotFound(what))
    }

    fn location(&self) -> String {
        self.vault_url.clone()
    }
}

/// Secrets held in memory: tests, and anything that already has its values.
#[derive(Default)]
pub struct MemorySecrets {
    values: HashMap<String, SecretString>,
}

impl MemorySecrets {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn with(mut self, name: &str, value: &str) -> Self {
        self.values
            .insert(name.to_string(), SecretString::from(value.to_string()));
        self
    }
}

#[async_trait]
impl SecretSource for MemorySecrets {
    async fn secret(&self, name: &str) -> Result<SecretString, AzureError> {
        self.values
            .get(name)
            .cloned()
            .ok_or_else(|| AzureError::NotFound(format!("secret {name}")))
    }

    fn location(&self) -> String {
        "memory".into()
    }
}

/// A setting that holds a Key Vault reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    /// The setting's name (`database_url`, `bot.app_password`).
    pub setting: &'static str,
    /// As written: `kv:DATABASE-URL`.
    pub reference: String,
}

/// Every setting written as a reference (valid or not), in configuration order.
pub fn references(settings: &mut Settings) -> Vec<Reference> {
    settings
        .secret_fields_mut()
        .into_iter()
        .filter_map(|(setting, value)| {
            let value = value.as_ref()?.expose_secret();
            value.starts_with(REFERENCE_PREFIX).then(|| Reference {
                setting,
                reference: value.to_string(),
            })
        })
        .collect()
}

/// References that could not be resolved; start-up stops on this.
#[derive(Debug, thiserror::Error)]
#[error("cannot resolve Key Vault references:\n{}", .problems.iter().map(|p| format!("  - {p}")).collect::<Vec<_>>().join("\n"))]
pub struct ResolveError {
    pub problems: Vec<String>,
}

/// Replaces every `kv:NAME` secret setting with the secret's value. All references are tried and
/// every failure is reported together; on failure `settings` is left unchanged. Returns the
/// settings that were resolved.
pub async fn resolve(
    settings: &mut Settings,
    source: &dyn SecretSource,
) -> Result<Vec<&'static str>, ResolveError> {
    let mut values = Vec::new();
    let mut problems = Vec::new();
    for Reference { setting, reference } in references(settings) {
        match lookup(source, &reference).await {
            Ok(value) => values.push((setting, value)),
            Err(e) => problems.push(format!("{setting} = {reference}: {e}")),
        }
    }
    if !problems.is_empty() {
        return Err(ResolveError { problems });
    }
    let resolved: Vec<&'static str> = values.iter().map(|(s, _)| *s).collect();
    for (setting, field) in settings.secret_fields_mut() {
        if let Some(index) = values.iter().position(|(s, _)| *s == setting) {
            *field = Some(values.swap_remove(index).1);
        }
    }
    Ok(resolved)
}

/// One reference's value. An empty secret is as good as a missing one.
pub async fn lookup(
    source: &dyn SecretSource,
    reference: &str,
) -> Result<SecretString, AzureError> {
    let name = reference_name(reference).ok_or_else(|| {
        AzureError::Config(
            "not a valid Key Vault secret name (1-127 letters, digits and dashes after `kv:`)"
                .into(),
        )
    })?;
    match source.secret(name).await {
        Ok(value) if value.expose_secret().is_empty() => Err(AzureError::Invalid(format!(
            "secret {name} in {} is empty",
            source.location()
        ))),
        Ok(value) => Ok(value),
        Err(AzureError::NotFound(_)) => Err(AzureError::NotFound(format!(
            "secret {name} in {}",
            source.location()
        ))),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_names_follow_key_vault_rules() {
        assert_eq!(reference_name("kv:DATABASE-URL"), Some("DATABASE-URL"));
        assert_eq!(reference_name("kv:db2"), Some("db2"));
        assert_eq!(reference_name("kv:"), None);
        assert_eq!(reference_name("kv:has_underscore"), None);
        assert_eq!(reference_name("postgres://u:p@h/db"), None);
        assert_eq!(reference_name(&format!("kv:{}", "a".repeat(128))), None);
    }

    #[tokio::test]
    async fn every_reference_is_resolved_and_plain_values_are_kept() {
        let mut settings = Settings {
            database_url: Some("kv:DATABASE-URL".to_string().into()),
            ..Default::default()
        };
        settings.bot.app_password = Some("kv:BOT-PASSWORD".to_string().into());
        settings.vault.commander_api_key = Some("plain-api-key".to_string().into());
        let source = MemorySecrets::new()
            .with("DATABASE-URL", "sqlite::memory:")
            .with("BOT-PASSWORD", "pw-from-vault");
        let resolved = resolve(&mut settings, &source).await.unwrap();
        assert_eq!(resolved, vec!["database_url", "bot.app_password"]);
        let value = |s: &Option<SecretString>| s.as_ref().unwrap().expose_secret().to_string();
        assert_eq!(value(&settings.database_url), "sqlite::memory:");
        assert_eq!(value(&settings.bot.app_password), "pw-from-vault");
        assert_eq!(value(&settings.vault.commander_api_key), "plain-api-key");
    }

    #[tokio::test]
    async fn failures_name_every_bad_reference_and_change_nothing() {
        let mut settings = Settings {
            database_url: Some("kv:DATABASE-URL".to_string().into()),
            ..Default::default()
        };
        settings.bot.app_password = Some("kv:MISSING-PASSWORD".to_string().into());
        settings.vault.ksm_config = Some("kv:bad_name".to_string().into());
        settings.vault.commander_api_key = Some("kv:EMPTY".to_string().into());
        let source = MemorySecrets::new()
            .with("DATABASE-URL", "postgres://u:topsecret@h/db")
            .with("EMPTY", "");
        let err = resolve(&mut settings, &source).await.unwrap_err();
        let text = err.to_string();
        assert_eq!(err.problems.len(), 3, "{text}");
        assert!(text.contains("bot.app_password = kv:MISSING-PASSWORD: secret MISSING-PASSWORD in memory not found"), "{text}");
        assert!(
            text.contains("vault.ksm_config = kv:bad_name: azure configuration: not a valid"),
            "{text}"
        );
        assert!(
            text.contains("vault.commander_api_key = kv:EMPTY"),
            "{text}"
        );
        assert!(!text.contains("topsecret"), "{text}");
        // Nothing was replaced, not even the reference that did resolve.
        assert_eq!(
            settings.database_url.as_ref().unwrap().expose_secret(),
            "kv:DATABASE-URL"
        );
    }

    /// Guards `Settings::secret_fields_mut`: every `Option<SecretString>` field in the settings
    /// must be listed there, or a `kv:` reference in it would be used literally.
    #[test]
    fn every_secret_field_is_resolvable() {
        let source = include_str!("../config/mod.rs");
        let declared = source
            .lines()
            .filter(|l| l.trim_start().starts_with("pub ") && l.contains(": Option<SecretString>,"))
            .count();
        let listed = Settings::default().secret_fields_mut().len();
        assert_eq!(
            declared, listed,
            "config.rs declares {declared} secret settings but Settings::secret_fields_mut lists {listed}"
        );
    }
}
