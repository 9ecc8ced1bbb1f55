//! Key Vault keys: the operations Passkey uses ([`KeyVaultKeys`]), the ES256 audit checkpoint
//! signer ([`KeyVaultSigner`]) and the data-encryption-key wrapper ([`KeyVaultWrapper`]).
//!
//! The private keys never leave the vault: signing sends a SHA-256 digest and receives the
//! 64-byte `r ‖ s` signature; wrapping sends the 32-byte data key and receives it encrypted
//! (RSA-OAEP-256). Every result carries the full key id (`https://{vault}/keys/{name}/{version}`)
//! of the key version that produced it, which is stored beside the result: a signature is
//! verified with that version's public key, a wrapped key is unwrapped with that version, so
//! rotating the key breaks neither old checkpoints nor the stored data key.

use super::AzureError;
use async_trait::async_trait;
use azure_core::credentials::TokenCredential;
use azure_security_keyvault_keys::models::{
    CurveName, EncryptionAlgorithm, KeyClientGetKeyOptions, KeyClientSignOptions,
    KeyClientWrapKeyOptions, KeyOperationParameters, SignParameters, SignatureAlgorithm,
};
use azure_security_keyvault_keys::{KeyClient, ResourceId};
use secrecy::SecretBox;
use std::str::FromStr as _;
use std::sync::{Arc, Mutex};

/// A key version's id and, for an EC P-256 key, its public point.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyVersion {
    /// The full key id: `https://{vault}/keys/{name}/{version}`.
    pub kid: String,
    /// `0x04 ‖ X ‖ Y` (65 bytes) for an EC P-256 key; `None` for other key types.
    pub p256_point: Option<Vec<u8>>,
}

/// The result of a sign or wrap: the bytes and the key version that made them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyResult {
    pub kid: String,
    pub bytes: Vec<u8>,
}

/// The Key Vault key operations Passkey uses. `version: None` means the key's current version.
#[async_trait]
pub trait KeyVaultKeys: Send + Sync {
    async fn get_key(&self, name: &str, version: Option<&str>) -> Result<KeyVersion, AzureError>;
    /// ES256 over a SHA-256 digest (32 bytes).
    async fn sign_es256(
        &self,
        name: &str,
        version: &str,
        digest: &[u8; 32],
    ) -> Result<KeyResult, AzureError>;
    /// RSA-OAEP-256 wrap with the key's current version.
    async fn wrap_key(&self, name: &str, key: &[u8]) -> Result<KeyResult, AzureError>;
    /// Unwraps with the exact version that wrapped.
    async fn unwrap_key(
        &self,
        name: &str,
        version: &str,
        wrapped: &[u8],
    ) -> Result<SecretBox<Vec<u8>>, AzureError>;
    /// The vault's URL, for messages and for checking that a key id belongs to this vault.
    fn vault_url(&self) -> String;
}

/// The Key Vault REST API through `azure_security_keyvault_keys`.
pub struct SdkKeys {
    client: KeyClient,
    vault_url: String,
}

impl SdkKeys {
    pub fn new(vault_url: &str, credential: Arc<dyn TokenCredential>) -> Result<Self, AzureError> {
        let client = KeyClient::new(vault_url, credential, None).map_err(|_| {
            AzureError::Config(format!(
                "azure.key_vault_url {vault_url} is not a vault URL"
            ))
        })?;
        Ok(SdkKeys {
            client,
            vault_url: vault_url.to_string(),
        })
    }
}

#[async_trait]
impl KeyVaultKeys for SdkKeys {
    #[tracing::instrument(name = "key_vault.get_key", skip(self))]
    async fn get_key(&self, name: &str, version: Option<&str>) -> Result<KeyVersion, AzureError> {
        let what = format!("key {name}");
        let options = KeyClientGetKeyOptions {
            key_version: version.map(str::to_string),
            ..Default::default()
        };
        let key = self
            .client
            .get_key(name, Some(options))
            .await
            .and_then(|r| r.into_model())
            .map_err(|e| AzureError::from_sdk(&what, &e))?;
        let jwk = key
            .key
            .ok_or_else(|| AzureError::Invalid(format!("{what}: no key material in the answer")))?;
        let kid = jwk
            .kid
            .clone()
            .ok_or_else(|| AzureError::Invalid(format!("{what}: no key id in the answer")))?;
        let p256_point = match (jwk.crv, jwk.x, jwk.y) {
            (Some(CurveName::P256), Some(x), Some(y)) => Some(p256_point(&x, &y)?),
            _ => None,
        };
        Ok(KeyVersion { kid, p256_point })
    }

    #[tracing::instrument(name = "key_vault.sign", skip(self, digest))]
    async fn sign_es256(
        &self,
        name: &str,
        version: &str,
        digest: &[u8; 32],
    ) -> Result<KeyResult, AzureError> {
        let what = format!("key {name}");
        let parameters = SignParameters {
            algorithm: Some(SignatureAlgorithm::Es256),
            value: Some(digest.to_vec()),
        };
        let options = KeyClientSignOptions {
            key_version: Some(version.to_string()),
            ..Default::default()
        };
        let result = self
            .client
            .sign(
                name,
                parameters
                    .try_into()
                    .map_err(|e| AzureError::from_sdk(&what, &e))?,
                Some(options),
            )
            .await
            .and_then(|r| r.into_model())
            .map_err(|e| AzureError::from_sdk(&what, &e))?;
        operation_result(&what, result.kid, result.result)
    }

    #[tracing::instrument(name = "key_vault.wrap_key", skip(self, key))]
    async fn wrap_key(&self, name: &str, key: &[u8]) -> Result<KeyResult, AzureError> {
        let what = format!("key {name}");
        let parameters = KeyOperationParameters {
            algorithm: Some(EncryptionAlgorithm::RsaOaep256),
            value: Some(key.to_vec()),
            ..Default::default()
        };
        let result = self
            .client
            .wrap_key(
                name,
                parameters
                    .try_into()
                    .map_err(|e| AzureError::from_sdk(&what, &e))?,
                Some(KeyClientWrapKeyOptions::default()),
            )
            .await
            .and_then(|r| r.into_model())
            .map_err(|e| AzureError::from_sdk(&what, &e))?;
        operation_result(&what, result.kid, result.result)
    }

    #[tracing::instrument(name = "key_vault.unwrap_key", skip(self, wrapped))]
    async fn unwrap_key(
        &self,
        name: &str,
        version: &str,
        wrapped: &[u8],
    ) -> Result<SecretBox<Vec<u8>>, AzureError> {
        let what = format!("key {name}");
        let parameters = KeyOperationParameters {
            algorithm: Some(EncryptionAlgorithm::RsaOaep256),
            value: Some(wrapped.to_vec()),
            ..Default::default()
        };
        let result = self
            .client
            .unwrap_key(
                name,
                version,
                parameters
                    .try_into()
                    .map_err(|e| AzureError::from_sdk(&what, &e))?,
                None,
            )
            .await
            .and_then(|r| r.into_model())
            .map_err(|e| AzureError::from_sdk(&what, &e))?;
        let bytes = result
            .result
            .ok_or_else(|| AzureError::Invalid(format!("{what}: no value in the answer")))?;
        Ok(SecretBox::new(Box::new(bytes)))
    }

    fn vault_url(&self) -> String {
        self.vault_url.clone()
    }
}

fn operation_result(
    what: &str,
    kid: Option<String>,
    result: Option<Vec<u8>>,
) -> Result<KeyResult, AzureError> {
    match (kid, result) {
        (Some(kid), Some(bytes)) => Ok(KeyResult { kid, bytes }),
        _ => Err(AzureError::Invalid(format!(
            "{what}: the answer lacks the key id or the value"
        ))),
    }
}

/// A JWK's `x` and `y` as the uncompressed SEC1 point verifiers take.
pub fn p256_point(x: &[u8], y: &[u8]) -> Result<Vec<u8>, AzureError> {
    if x.len() != 32 || y.len() != 32 {
        return Err(AzureError::Invalid(
            "EC key coordinates are not 32 bytes each (not P-256)".into(),
        ));
    }
    let mut point = Vec::with_capacity(65);
    point.push(0x04);
    point.extend_from_slice(x);
    point.extend_from_slice(y);
    Ok(point)
}

/// A key id's vault, name and version.
pub fn parse_kid(kid: &str) -> Result<(String, String, String), AzureError> {
    let id = ResourceId::from_str(kid)
        .map_err(|_| AzureError::Invalid(format!("{kid} is not a Key Vault key id")))?;
    let version = id
        .version
        .filter(|v| !v.is_empty())
        .ok_or_else(|| AzureError::Invalid(format!("{kid} names no key version")))?;
    Ok((id.vault_url, id.name, version))
}

fn same_vault(a: &str, b: &str) -> bool {
    a.trim_end_matches('/')
        .eq_ignore_ascii_case(b.trim_end_matches('/'))
}

/// A public key for ES256 verification, named by the key version's full id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Es256PublicKey {
    pub key_id: String,
    /// `0x04 ‖ X ‖ Y`.
    pub point: Vec<u8>,
}

/// An ES256 signature (`r ‖ s`, 64 bytes) and the key version that made it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Es256Signature {
    pub key_id: String,
    pub bytes: Vec<u8>,
}

/// The Key Vault signer as the audit trail's checkpoint signer: ES256, the key id naming the key
/// version, so checkpoints signed before a rotation keep verifying with their own version's key.
#[async_trait]
impl crate::audit::signer::Signer for KeyVaultSigner {
    async fn public_key(
        &self,
    ) -> Result<crate::audit::signer::PublicKey, crate::audit::signer::SignError> {
        let key = self.current_public_key().await.map_err(sign_error)?;
        Ok(crate::audit::signer::PublicKey {
            key_id: key.key_id,
            algorithm: crate::audit::signer::Algorithm::ES256,
            bytes: key.point,
        })
    }

    async fn sign(
        &self,
        message: &[u8],
    ) -> Result<crate::audit::signer::Signature, crate::audit::signer::SignError> {
        let signature = self.sign_es256(message).await.map_err(sign_error)?;
        Ok(crate::audit::signer::Signature {
            key_id: signature.key_id,
            algorithm: crate::audit::signer::Algorithm::ES256,
            bytes: signature.bytes,
        })
    }
}

/// A vault that cannot be reached (or no token) is "unavailable": the checkpoint job retries;
/// anything else is a key problem an operator must fix.
fn sign_error(e: AzureError) -> crate::audit::signer::SignError {
    match e {
        AzureError::Unavailable(_) | AzureError::Identity(_) => {
            crate::audit::signer::SignError::Unavailable(e.to_string())
        }
        other => crate::audit::signer::SignError::Key(other.to_string()),
    }
}

/// Signs audit checkpoints with an EC P-256 Key Vault key (ES256).
///
/// `public_key` reads the key's current version and pins it; `sign` then signs with exactly that
/// version. The audit trail registers the public key right before each signature, so a rotation
/// between the two calls cannot produce a signature whose key was never registered.
pub struct KeyVaultSigner {
    keys: Arc<dyn KeyVaultKeys>,
    key_name: String,
    pinned: Mutex<Option<(String, Es256PublicKey)>>,
}

impl KeyVaultSigner {
    pub fn new(keys: Arc<dyn KeyVaultKeys>, key_name: &str) -> Self {
        KeyVaultSigner {
            keys,
            key_name: key_name.to_string(),
            pinned: Mutex::new(None),
        }
    }

    pub fn key_name(&self) -> &str {
        &self.key_name
    }

    /// The current key version's public key (and pins that version for `sign`).
    pub async fn current_public_key(&self) -> Result<Es256PublicKey, AzureError> {
        let key = self.keys.get_key(&self.key_name, None).await?;
        let point = key.p256_point.ok_or_else(|| {
            AzureError::Invalid(format!(
                "key {} is not an EC P-256 key (ES256 needs one)",
                self.key_name
            ))
        })?;
        let (_, _, version) = parse_kid(&key.kid)?;
        let public = Es256PublicKey {
            key_id: key.kid,
            point,
        };
        *self.pinned.lock().unwrap_or_else(|e| e.into_inner()) = Some((version, public.clone()));
        Ok(public)
    }

    /// Signs SHA-256(`message`) with the pinned key version (pinning the current one first if
    /// nothing is pinned yet).
    pub async fn sign_es256(&self, message: &[u8]) -> Result<Es256Signature, AzureError> {
        let pinned = self
            .pinned
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .map(|(v, p)| (v.clone(), p.key_id.clone()));
        let (version, key_id) = match pinned {
            Some(p) => p,
            None => {
                let public = self.current_public_key().await?;
                let (_, _, version) = parse_kid(&public.key_id)?;
                (version, public.key_id)
            }
        };
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, message);
        let digest: [u8; 32] = digest.as_ref().try_into().expect("SHA-256 is 32 bytes");
        let result = self
            .keys
            .sign_es256(&self.key_name, &version, &digest)
            .await?;
        if result.bytes.len() != 64 {
            return Err(AzureError::Invalid(format!(
                "key {}: an ES256 signature is 64 bytes, got {}",
                self.key_name,
                result.bytes.len()
            )));
        }
        // Key Vault answers with the id of the version it used; it must be the pinned one.
        if result.kid != key_id {
            return Err(AzureError::Invalid(format!(
                "key {}: signed with {} but {key_id} was asked for",
                self.key_name, result.kid
            )));
        }
        Ok(Es256Signature {
            key_id,
            bytes: result.bytes,
        })
    }
}

/// Checks an ES256 signature offline (ECDSA P-256, SHA-256, fixed `r ‖ s`).
pub fn verify_es256(key: &Es256PublicKey, message: &[u8], signature: &Es256Signature) -> bool {
    use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED, UnparsedPublicKey};
    key.key_id == signature.key_id
        && UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, &key.point)
            .verify(message, &signature.bytes)
            .is_ok()
}

/// The first bytes of a data key wrapped by Key Vault: the format's name and version.
const WRAPPED_MAGIC: &[u8; 4] = b"KVW1";

/// Protects the data-encryption key with a Key Vault key (`wrapKey`/`unwrapKey`, RSA-OAEP-256).
///
/// The wrapped form records the key version that wrapped it:
/// `"KVW1" | kid length (u16, big-endian) | kid (UTF-8) | wrapped key`.
pub struct KeyVaultWrapper {
    keys: Arc<dyn KeyVaultKeys>,
    key_name: String,
}

impl KeyVaultWrapper {
    pub fn new(keys: Arc<dyn KeyVaultKeys>, key_name: &str) -> Self {
        KeyVaultWrapper {
            keys,
            key_name: key_name.to_string(),
        }
    }

    /// `azure-keyvault:{vault}/keys/{name}`: which key protects the data key (recorded in the
    /// key file; no version, since the wrapped form carries it and rotation must not change this).
    pub fn id(&self) -> String {
        format!(
            "azure-keyvault:{}/keys/{}",
            self.keys.vault_url().trim_end_matches('/'),
            self.key_name
        )
    }

    pub async fn wrap_data_key(&self, key: &[u8; 32]) -> Result<Vec<u8>, AzureError> {
        let result = self.keys.wrap_key(&self.key_name, key).await?;
        let kid = result.kid.as_bytes();
        let kid_len = u16::try_from(kid.len())
            .map_err(|_| AzureError::Invalid("key id longer than 65535 bytes".into()))?;
        let mut out = Vec::with_capacity(6 + kid.len() + result.bytes.len());
        out.extend_from_slice(WRAPPED_MAGIC);
        out.extend_from_slice(&kid_len.to_be_bytes());
        out.extend_from_slice(kid);
        out.extend_from_slice(&result.bytes);
        Ok(out)
    }

    /// Unwraps with the key version recorded in `wrapped`. The key may have been rotated since
    /// (the old version still unwraps); a blob from another vault, a malformed blob or a key
    /// that does not open it is an error.
    pub async fn unwrap_data_key(&self, wrapped: &[u8]) -> Result<SecretBox<[u8; 32]>, AzureError> {
        let malformed = || AzureError::Invalid("the wrapped data key is malformed".into());
        let rest = wrapped.strip_prefix(WRAPPED_MAGIC).ok_or_else(malformed)?;
        if rest.len() < 2 {
            return Err(malformed());
        }
        let kid_len = u16::from_be_bytes([rest[0], rest[1]]) as usize;
        let rest = &rest[2..];
        if rest.len() <= kid_len {
            return Err(malformed());
        }
        let (kid, body) = rest.split_at(kid_len);
        let kid = std::str::from_utf8(kid).map_err(|_| malformed())?;
        let (vault, name, version) = parse_kid(kid)?;
        if !same_vault(&vault, &self.keys.vault_url()) {
            return Err(AzureError::Config(format!(
                "the data key was wrapped by {vault}, not by azure.key_vault_url {}",
                self.keys.vault_url()
            )));
        }
        let key = self.keys.unwrap_key(&name, &version, body).await?;
        use secrecy::ExposeSecret as _;
        let bytes: [u8; 32] = key.expose_secret().as_slice().try_into().map_err(|_| {
            AzureError::Invalid(format!(
                "key {name}: the unwrapped data key is not 32 bytes"
            ))
        })?;
        Ok(SecretBox::new(Box::new(bytes)))
    }
}

/// The data-encryption key's wrapper (`crypto.key_wrapper = "key-vault"`).
#[async_trait]
impl crate::crypto::KeyWrapper for KeyVaultWrapper {
    fn wrapper_id(&self) -> String {
        self.id()
    }

    async fn wrap(&self, key: &[u8; 32]) -> Result<Vec<u8>, crate::crypto::CryptoError> {
        self.wrap_data_key(key)
            .await
            .map_err(|e| crate::crypto::CryptoError::Wrapper(e.to_string()))
    }

    async fn unwrap(
        &self,
        wrapped: &[u8],
    ) -> Result<SecretBox<[u8; 32]>, crate::crypto::CryptoError> {
        self.unwrap_data_key(wrapped)
            .await
            .map_err(|e| crate::crypto::CryptoError::Wrapper(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_ids_split_into_vault_name_and_version() {
        let (vault, name, version) =
            parse_kid("https://kv1.vault.azure.net/keys/audit-signing/0123abcd").unwrap();
        assert!(
            same_vault(&vault, "https://kv1.vault.azure.net/"),
            "{vault}"
        );
        assert_eq!(name, "audit-signing");
        assert_eq!(version, "0123abcd");
        assert!(parse_kid("https://kv1.vault.azure.net/keys/audit-signing").is_err());
        assert!(parse_kid("https://kv1.vault.azure.net/secrets/x/1").is_err());
        assert!(parse_kid("not a url").is_err());
    }

    #[test]
    fn jwk_coordinates_become_an_uncompressed_point() {
        let point = p256_point(&[1; 32], &[2; 32]).unwrap();
        assert_eq!(point.len(), 65);
        assert_eq!(point[0], 0x04);
        assert_eq!(&point[1..33], &[1; 32]);
        assert_eq!(&point[33..], &[2; 32]);
        assert!(p256_point(&[1; 48], &[2; 48]).is_err(), "P-384 is refused");
    }

    #[tokio::test]
    async fn truncated_wrapped_keys_are_malformed_not_panics() {
        let vault = Arc::new(crate::azure::fake::FakeKeyVault::new(
            "https://kv1.vault.azure.net",
        ));
        vault.create_key("k");
        let wrapper = KeyVaultWrapper::new(vault, "k");
        let good = wrapper.wrap_data_key(&[9; 32]).await.unwrap();
        for len in 0..40.min(good.len()) {
            let err = wrapper.unwrap_data_key(&good[..len]).await.unwrap_err();
            assert!(matches!(err, AzureError::Invalid(_)), "length {len}: {err}");
        }
    }
}
