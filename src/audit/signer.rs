//! Who signs checkpoints, and how anyone checks a signature later without them.
//!
//! [`Signer`] is async and returns the key id and algorithm with each signature, because the
//! production signer is remote (an Azure Key Vault ES256 key: the private key never leaves the
//! vault, and the key id names the key version that signed). The local default is
//! [`LocalEd25519Signer`], a PKCS#8 key file in the data directory.
//!
//! Verification needs only the exported public keys ([`PublicKey`]): [`verify_signature`] checks
//! Ed25519 and ES256 (ECDSA P-256 with SHA-256, the 64-byte `r ‖ s` form JWS and Key Vault use)
//! offline, so a checkpoint signed by a key that has since been rotated still verifies as long as
//! its public key is kept (the `audit_public_keys` table, and every export).

use crate::canonical::sha256_hex;
use async_trait::async_trait;
use aws_lc_rs::signature::{self, Ed25519KeyPair, KeyPair, UnparsedPublicKey};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use std::path::{Path, PathBuf};

/// Signature algorithms a checkpoint may carry (JOSE names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Algorithm {
    /// Ed25519 over the message itself.
    Ed25519,
    /// ECDSA P-256 with SHA-256 of the message; signature `r ‖ s`, 32 bytes each.
    ES256,
}

impl Algorithm {
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::Ed25519 => "Ed25519",
            Algorithm::ES256 => "ES256",
        }
    }

    pub fn parse(text: &str) -> Option<Algorithm> {
        match text {
            "Ed25519" => Some(Algorithm::Ed25519),
            "ES256" => Some(Algorithm::ES256),
            _ => None,
        }
    }
}

impl std::fmt::Display for Algorithm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A verifying key with the id signatures name it by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicKey {
    pub key_id: String,
    pub algorithm: Algorithm,
    /// Raw public key: 32 bytes (Ed25519) or the 65-byte uncompressed SEC1 point `0x04 ‖ X ‖ Y`
    /// (ES256; a JWK's `x` and `y` joined after `0x04`).
    pub bytes: Vec<u8>,
}

impl PublicKey {
    pub fn to_base64(&self) -> String {
        B64.encode(&self.bytes)
    }

    /// The key id a local key gets: its algorithm and the first 32 hex digits of the SHA-256 of
    /// the raw public key, so the same key always has the same id and different keys differ.
    pub fn fingerprint_id(algorithm: Algorithm, bytes: &[u8]) -> String {
        format!(
            "{}:{}",
            algorithm.as_str().to_ascii_lowercase(),
            &sha256_hex(bytes)[..32]
        )
    }
}

/// A signature with the key that made it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signature {
    pub key_id: String,
    pub algorithm: Algorithm,
    pub bytes: Vec<u8>,
}

#[derive(Debug, thiserror::Error)]
pub enum SignError {
    /// The key could not be read, created or used (names the file or key, never key material).
    #[error("audit signing key: {0}")]
    Key(String),
    /// A remote signer could not be reached or refused.
    #[error("audit signer unavailable: {0}")]
    Unavailable(String),
}

/// Signs audit checkpoints.
#[async_trait]
pub trait Signer: Send + Sync {
    /// The public half of the key `sign` uses now (registered before its first checkpoint).
    async fn public_key(&self) -> Result<PublicKey, SignError>;
    /// Signs `message` (the canonical checkpoint bytes). A remote ES256 signer hashes the message
    /// with SHA-256 and sends the digest; [`verify_signature`] checks against the message.
    async fn sign(&self, message: &[u8]) -> Result<Signature, SignError>;
}

/// Checks a signature with a public key: false for a wrong signature, a wrong-length key, or an
/// algorithm that does not match the key's.
pub fn verify_signature(key: &PublicKey, message: &[u8], signature: &Signature) -> bool {
    if key.key_id != signature.key_id || key.algorithm != signature.algorithm {
        return false;
    }
    let alg: &dyn signature::VerificationAlgorithm = match key.algorithm {
        Algorithm::Ed25519 => &signature::ED25519,
        Algorithm::ES256 => &signature::ECDSA_P256_SHA256_FIXED,
    };
    UnparsedPublicKey::new(alg, &key.bytes)
        .verify(message, &signature.bytes)
        .is_ok()
}

/// An Ed25519 key in a PKCS#8 file: created (mode 0600, never overwritten) when missing.
pub struct LocalEd25519Signer {
    key: Ed25519KeyPair,
    public: PublicKey,
    path: PathBuf,
}

impl LocalEd25519Signer {
    /// Opens the key file, creating a new key there first if there is none.
    pub fn open_or_create(path: &Path) -> Result<Self, SignError> {
        let bytes = match std::fs::read(path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Self::create(path)?,
            Err(e) => {
                return Err(SignError::Key(format!(
                    "cannot read {}: {e}",
                    path.display()
                )));
            }
        };
        let key = Ed25519KeyPair::from_pkcs8(&bytes).map_err(|e| {
            SignError::Key(format!(
                "{} is not an Ed25519 PKCS#8 key: {e}",
                path.display()
            ))
        })?;
        let raw = key.public_key().as_ref().to_vec();
        let public = PublicKey {
            key_id: PublicKey::fingerprint_id(Algorithm::Ed25519, &raw),
            algorithm: Algorithm::Ed25519,
            bytes: raw,
        };
        Ok(LocalEd25519Signer {
            key,
            public,
            path: path.to_path_buf(),
        })
    }

    fn create(path: &Path) -> Result<Vec<u8>, SignError> {
        let document = Ed25519KeyPair::generate_pkcs8(&aws_lc_rs::rand::SystemRandom::new())
            .map_err(|_| SignError::Key("cannot generate an Ed25519 key".into()))?;
        if let Some(dir) = path.parent() {
            crate::private_fs::create_dir(dir)
                .map_err(|e| SignError::Key(format!("cannot create {}: {e}", dir.display())))?;
        }
        // A new file only: two instances starting together must not overwrite each other's key.
        match crate::private_fs::write_new(path, document.as_ref()) {
            Ok(()) => {
                tracing::info!(path = %path.display(), "created the audit signing key");
                Ok(document.as_ref().to_vec())
            }
            // Someone else created it a moment ago: use theirs.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => std::fs::read(path)
                .map_err(|e| SignError::Key(format!("cannot read {}: {e}", path.display()))),
            Err(e) => Err(SignError::Key(format!(
                "cannot create {}: {e}",
                path.display()
            ))),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn key_id(&self) -> &str {
        &self.public.key_id
    }
}

#[async_trait]
impl Signer for LocalEd25519Signer {
    async fn public_key(&self) -> Result<PublicKey, SignError> {
        Ok(self.public.clone())
    }

    async fn sign(&self, message: &[u8]) -> Result<Signature, SignError> {
        Ok(Signature {
            key_id: self.public.key_id.clone(),
            algorithm: Algorithm::Ed25519,
            bytes: self.key.sign(message).as_ref().to_vec(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair};

    #[tokio::test]
    async fn a_local_key_is_created_once_private_and_signs_verifiably() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys/audit.p8");
        let signer = LocalEd25519Signer::open_or_create(&path).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(
                mode & 0o777,
                0o600,
                "the key file is readable by its owner only"
            );
        }
        // Opening again reads the same key: same id, signatures verify with the first public key.
        let again = LocalEd25519Signer::open_or_create(&path).unwrap();
        assert_eq!(signer.key_id(), again.key_id());
        assert!(signer.key_id().starts_with("ed25519:"));
        let public = signer.public_key().await.unwrap();
        let sig = again.sign(b"checkpoint").await.unwrap();
        assert!(verify_signature(&public, b"checkpoint", &sig));
        assert!(!verify_signature(&public, b"checkpoinT", &sig));

        // A different key file is a different key id, and its signatures do not verify with ours.
        let other = LocalEd25519Signer::open_or_create(&dir.path().join("b.p8")).unwrap();
        assert_ne!(other.key_id(), signer.key_id());
        let mut forged = other.sign(b"checkpoint").await.unwrap();
        forged.key_id = public.key_id.clone();
        assert!(!verify_signature(&public, b"checkpoint", &forged));
    }

    #[test]
    fn a_file_that_is_not_a_key_is_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.p8");
        std::fs::write(&path, b"not a key").unwrap();
        let err = LocalEd25519Signer::open_or_create(&path)
            .err()
            .expect("refused");
        assert!(err.to_string().contains("audit.p8"), "{err}");
        assert_eq!(
            std::fs::read(&path).unwrap(),
            b"not a key",
            "left as it was"
        );
    }

    #[test]
    fn es256_signatures_verify_with_the_uncompressed_point() {
        let pair = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).unwrap();
        let bytes = pair.public_key().as_ref().to_vec();
        assert_eq!(bytes.len(), 65);
        let key = PublicKey {
            key_id: "https://vault.example/keys/audit/v1".into(),
            algorithm: Algorithm::ES256,
            bytes,
        };
        let rng = aws_lc_rs::rand::SystemRandom::new();
        let sig = Signature {
            key_id: key.key_id.clone(),
            algorithm: Algorithm::ES256,
            bytes: pair.sign(&rng, b"head").unwrap().as_ref().to_vec(),
        };
        assert_eq!(sig.bytes.len(), 64, "r ‖ s");
        assert!(verify_signature(&key, b"head", &sig));
        assert!(!verify_signature(&key, b"heaD", &sig));
        // The algorithm must match the key's: an ES256 signature claimed as Ed25519 fails.
        let mislabelled = Signature {
            algorithm: Algorithm::Ed25519,
            ..sig
        };
        assert!(!verify_signature(&key, b"head", &mislabelled));
    }
}
