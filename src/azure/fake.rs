//! In-process stand-ins for Azure, for tests and local experiments. They are faithful where it
//! matters: the fake vault's keys are real P-256 keys that sign the digest they are sent (so a
//! signature verifies, or fails to, exactly as Key Vault's would), keep every version after a
//! rotation, and wrap with real AES-256-GCM under a per-version key (so a wrong version or a
//! changed byte fails to unwrap).

use super::AzureError;
use super::keys::{KeyResult, KeyVaultKeys, KeyVersion};
use async_trait::async_trait;
use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use aws_lc_rs::digest::{self, Digest};
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair as _};
use azure_core::credentials::{AccessToken, Secret, TokenCredential, TokenRequestOptions};
use secrecy::SecretBox;
use std::collections::HashMap;
use std::sync::Mutex;

struct FakeVersion {
    version: String,
    ec: EcdsaKeyPair,
    wrapping: LessSafeKey,
}

/// A Key Vault holding EC P-256 keys with versions.
pub struct FakeKeyVault {
    vault_url: String,
    keys: Mutex<HashMap<String, Vec<FakeVersion>>>,
}

impl FakeKeyVault {
    /// An empty vault at `vault_url` (never contacted: it only shapes key ids).
    pub fn new(vault_url: &str) -> Self {
        FakeKeyVault {
            vault_url: vault_url.trim_end_matches('/').to_string(),
            keys: Mutex::new(HashMap::new()),
        }
    }

    /// Creates key `name`, or a new current version of it (a rotation). Returns the version's id.
    pub fn create_key(&self, name: &str) -> String {
        let mut version = [0u8; 16];
        getrandom::fill(&mut version).expect("random");
        let mut wrapping = [0u8; 32];
        getrandom::fill(&mut wrapping).expect("random");
        let v = FakeVersion {
            version: hex::encode(version),
            ec: EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).expect("P-256 key"),
            wrapping: LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &wrapping).expect("AES key")),
        };
        let kid = self.kid(name, &v.version);
        self.lock().entry(name.to_string()).or_default().push(v);
        kid
    }

    /// Same as [`FakeKeyVault::create_key`] on an existing key: old versions stay usable.
    pub fn rotate(&self, name: &str) -> String {
        self.create_key(name)
    }

    /// Deletes key `name` with all its versions.
    pub fn delete_key(&self, name: &str) {
        self.lock().remove(name);
    }

    fn kid(&self, name: &str, version: &str) -> String {
        format!("{}/keys/{name}/{version}", self.vault_url)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Vec<FakeVersion>>> {
        self.keys.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn with_version<T>(
        &self,
        name: &str,
        version: Option<&str>,
        f: impl FnOnce(&FakeVersion) -> Result<T, AzureError>,
    ) -> Result<T, AzureError> {
        let keys = self.lock();
        let versions = keys
            .get(name)
            .ok_or_else(|| AzureError::NotFound(format!("key {name}")))?;
        let found = match version.filter(|v| !v.is_empty()) {
            None => versions.last(),
            Some(v) => versions.iter().find(|k| k.version == v),
        };
        f(found.ok_or_else(|| AzureError::NotFound(format!("key {name}")))?)
    }
}

#[async_trait]
impl KeyVaultKeys for FakeKeyVault {
    async fn get_key(&self, name: &str, version: Option<&str>) -> Result<KeyVersion, AzureError> {
        self.with_version(name, version, |v| {
            Ok(KeyVersion {
                kid: self.kid(name, &v.version),
                p256_point: Some(v.ec.public_key().as_ref().to_vec()),
            })
        })
    }

    async fn sign_es256(
        &self,
        name: &str,
        version: &str,
        digest: &[u8; 32],
    ) -> Result<KeyResult, AzureError> {
        self.with_version(name, Some(version), |v| {
            let digest = Digest::import_less_safe(digest, &digest::SHA256)
                .map_err(|_| AzureError::Invalid("bad digest".into()))?;
            let signature =
                v.ec.sign_digest(&digest)
                    .map_err(|_| AzureError::Unavailable("signing failed".into()))?;
            Ok(KeyResult {
                kid: self.kid(name, &v.version),
                bytes: signature.as_ref().to_vec(),
            })
        })
    }

    async fn wrap_key(&self, name: &str, key: &[u8]) -> Result<KeyResult, AzureError> {
        self.with_version(name, None, |v| {
            let mut nonce = [0u8; NONCE_LEN];
            getrandom::fill(&mut nonce).map_err(|_| AzureError::Unavailable("random".into()))?;
            let mut sealed = key.to_vec();
            v.wrapping
                .seal_in_place_append_tag(
                    Nonce::assume_unique_for_key(nonce),
                    Aad::empty(),
                    &mut sealed,
                )
                .map_err(|_| AzureError::Unavailable("wrap failed".into()))?;
            Ok(KeyResult {
                kid: self.kid(name, &v.version),
                bytes: [nonce.as_slice(), &sealed].concat(),
            })
        })
    }

    async fn unwrap_key(
        &self,
        name: &str,
        version: &str,
        wrapped: &[u8],
    ) -> Result<SecretBox<Vec<u8>>, AzureError> {
        self.with_version(name, Some(version), |v| {
            // Key Vault answers a value it cannot decrypt with 400 Bad Request.
            let refused = || AzureError::Unavailable(format!("key {name}: HTTP 400 BadParameter"));
            if wrapped.len() < NONCE_LEN {
                return Err(refused());
            }
            let (nonce, sealed) = wrapped.split_at(NONCE_LEN);
            let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| refused())?;
            let mut in_out = sealed.to_vec();
            let plain = v
                .wrapping
                .open_in_place(nonce, Aad::empty(), &mut in_out)
                .map_err(|_| refused())?;
            Ok(SecretBox::new(Box::new(plain.to_vec())))
        })
    }

    fn vault_url(&self) -> String {
        self.vault_url.clone()
    }
}

/// A credential that hands out a fixed token, or always fails (to test what a broken identity
/// looks like).
#[derive(Debug)]
pub struct FakeCredential {
    works: bool,
}

impl FakeCredential {
    pub fn working() -> Self {
        FakeCredential { works: true }
    }

    pub fn failing() -> Self {
        FakeCredential { works: false }
    }
}

#[async_trait]
impl TokenCredential for FakeCredential {
    async fn get_token(
        &self,
        _scopes: &[&str],
        _options: Option<TokenRequestOptions<'_>>,
    ) -> azure_core::Result<AccessToken> {
        if !self.works {
            return Err(azure_core::Error::with_message(
                azure_core::error::ErrorKind::Credential,
                "FakeCredential: no managed identity endpoint",
            ));
        }
        Ok(AccessToken::new(
            Secret::new("fake-token"),
            time::OffsetDateTime::now_utc() + time::Duration::hours(1),
        ))
    }
}
