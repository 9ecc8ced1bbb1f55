//! Encryption of personal data at rest (phone numbers, TOTP secrets): one data-encryption key
//! (DEK), AES-256-GCM, a fresh random 96-bit nonce per seal, and associated data that binds each
//! ciphertext to the row and purpose it was written for (`phone:user:42`), so a ciphertext copied
//! into another row or column does not open.
//!
//! Sealed values are versioned envelopes:
//!
//! ```text
//! 0x01 | key id length (1 byte) | key id (ASCII) | nonce (12 bytes) | ciphertext ‖ tag (16 bytes)
//! ```
//!
//! The version byte and key id are authenticated too (they are prepended to the associated data),
//! so the header cannot be swapped either. The key id names the DEK that sealed a value, so a
//! future rotation can keep old keys for opening.
//!
//! Where the DEK lives: a [`KeyWrapper`] protects it at rest. [`LocalKeyFile`] keeps it in a file
//! in the data directory, mode 0600, created on first start in dev and required in production; an
//! Azure Key Vault wrapper (issue 9) stores the DEK wrapped by a Key Vault key instead and
//! unwraps it once at start.

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use secrecy::{ExposeSecret, SecretBox};
use std::path::{Path, PathBuf};

/// Whether `a` and `b` are equal, compared in constant time for equal lengths (a length is never
/// the secret here). The one comparison every code, digest and token check uses.
pub fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    aws_lc_rs::constant_time::verify_slices_are_equal(a, b).is_ok()
}

/// The envelope format this build writes.
pub const ENVELOPE_VERSION: u8 = 1;
/// AES-256 key bytes.
pub const KEY_LEN: usize = 32;
const TAG_LEN: usize = 16;
/// The file name of the local DEK inside the data directory.
pub const LOCAL_KEY_FILE: &str = "data-encryption.key";

/// Why sealing, opening or loading a key failed. Messages never contain key material or
/// plaintext.
#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    /// The envelope is malformed, was sealed for other associated data, or was tampered with.
    #[error("sealed value cannot be opened (wrong row or purpose, tampered, or not an envelope)")]
    Open,
    #[error("sealed value uses key `{0}`, which this instance does not have")]
    UnknownKey(String),
    #[error(
        "no data-encryption key at {0}: create it once with `passkey admin keys init` (with this \
         instance's data_dir / PASSKEY_DATA_DIR and crypto.key_wrapper); only dev creates one on \
         first start"
    )]
    MissingKey(PathBuf),
    #[error(
        "a data-encryption key already exists at {0}; it is kept (a new key could not open the \
         phone numbers and authenticator secrets sealed with this one)"
    )]
    KeyExists(PathBuf),
    #[error(
        "data-encryption key file {path} is readable by others (mode {mode:o}); run `chmod 600` on it"
    )]
    KeyFilePermissions { path: PathBuf, mode: u32 },
    #[error("data-encryption key file {0} is malformed")]
    BadKeyFile(PathBuf),
    #[error("data-encryption key file {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("random number generator failed")]
    Random,
    #[error("key wrapper: {0}")]
    Wrapper(String),
}

/// A data-encryption key and the id sealed values carry.
pub struct DataKey {
    key_id: String,
    key: LessSafeKey,
    /// For subkeys only (HMAC and AES-GCM are different functions of the same secret).
    mac: aws_lc_rs::hmac::Key,
}

impl std::fmt::Debug for DataKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DataKey")
            .field("key_id", &self.key_id)
            .field("key", &"[REDACTED]")
            .finish()
    }
}

impl DataKey {
    /// A key from raw bytes. `key_id` is 1–64 printable ASCII characters, no spaces.
    pub fn from_bytes(key_id: &str, bytes: &[u8; KEY_LEN]) -> Result<Self, CryptoError> {
        if key_id.is_empty() || key_id.len() > 64 || !key_id.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(CryptoError::Wrapper("invalid key id".into()));
        }
        let unbound = UnboundKey::new(&AES_256_GCM, bytes).map_err(|_| CryptoError::Random)?;
        Ok(DataKey {
            key_id: key_id.to_string(),
            key: LessSafeKey::new(unbound),
            mac: aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, bytes),
        })
    }

    /// A fresh random key with a random id (`dek-` and 16 hex digits).
    pub fn generate() -> Result<(Self, SecretBox<[u8; KEY_LEN]>), CryptoError> {
        let mut bytes = Box::new([0u8; KEY_LEN]);
        getrandom::fill(bytes.as_mut()).map_err(|_| CryptoError::Random)?;
        let mut id = [0u8; 8];
        getrandom::fill(&mut id).map_err(|_| CryptoError::Random)?;
        let key = Self::from_bytes(&format!("dek-{}", hex::encode(id)), &bytes)?;
        Ok((key, SecretBox::new(bytes)))
    }

    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    fn header(&self) -> Vec<u8> {
        let mut h = Vec::with_capacity(2 + self.key_id.len());
        h.push(ENVELOPE_VERSION);
        h.push(self.key_id.len() as u8);
        h.extend_from_slice(self.key_id.as_bytes());
        h
    }

    /// Encrypts `plaintext` for `purpose` (e.g. `phone:user:42`) under a fresh random nonce.
    pub fn seal(&self, purpose: &str, plaintext: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let mut nonce = [0u8; NONCE_LEN];
        getrandom::fill(&mut nonce).map_err(|_| CryptoError::Random)?;
        let header = self.header();
        let aad = [header.as_slice(), purpose.as_bytes()].concat();
        let mut in_out = plaintext.to_vec();
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad.as_slice()),
                &mut in_out,
            )
            .map_err(|_| CryptoError::Random)?;
        let mut out = header;
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&in_out);
        Ok(out)
    }

    /// Decrypts an envelope sealed for the same `purpose`. Any change to any byte, or another
    /// purpose, fails with [`CryptoError::Open`].
    pub fn open(&self, purpose: &str, sealed: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let (&version, rest) = sealed.split_first().ok_or(CryptoError::Open)?;
        if version != ENVELOPE_VERSION {
            return Err(CryptoError::Open);
        }
        let (&id_len, rest) = rest.split_first().ok_or(CryptoError::Open)?;
        let id_len = id_len as usize;
        if rest.len() < id_len + NONCE_LEN + TAG_LEN {
            return Err(CryptoError::Open);
        }
        let (id, rest) = rest.split_at(id_len);
        if id != self.key_id.as_bytes() {
            return Err(CryptoError::UnknownKey(
                String::from_utf8_lossy(id).chars().take(64).collect(),
            ));
        }
        let (nonce, ciphertext) = rest.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| CryptoError::Open)?;
        let aad = [&sealed[..2 + id_len], purpose.as_bytes()].concat();
        let mut in_out = ciphertext.to_vec();
        let plain = self
            .key
            .open_in_place(nonce, Aad::from(aad.as_slice()), &mut in_out)
            .map_err(|_| CryptoError::Open)?;
        Ok(plain.to_vec())
    }

    /// A 32-byte subkey for `purpose`: HMAC-SHA256 of the purpose under the DEK (a PRF, as in
    /// HKDF-Expand). Used as the pepper of OTP code hashes, so a database dump alone cannot
    /// brute-force the million possible codes.
    pub fn derive_subkey(&self, purpose: &str) -> [u8; KEY_LEN] {
        let tag = aws_lc_rs::hmac::sign(&self.mac, format!("passkey-subkey:{purpose}").as_bytes());
        let mut out = [0u8; KEY_LEN];
        out.copy_from_slice(tag.as_ref());
        out
    }
}

/// Protects the DEK at rest: `wrap` turns the raw key into what is stored, `unwrap` back.
/// The local implementation stores it as is in a 0600 file; a Key Vault implementation calls
/// the vault's wrapKey/unwrapKey with a key-encryption key that never leaves the vault.
#[async_trait::async_trait]
pub trait KeyWrapper: Send + Sync {
    /// Names the wrapping in the key file (`local`, `azure-keyvault:<key url>`).
    fn wrapper_id(&self) -> String;
    async fn wrap(&self, key: &[u8; KEY_LEN]) -> Result<Vec<u8>, CryptoError>;
    async fn unwrap(&self, wrapped: &[u8]) -> Result<SecretBox<[u8; KEY_LEN]>, CryptoError>;
}

/// No wrapping: the file's permissions are the protection (dev, single-host installs).
#[derive(Debug, Default, Clone, Copy)]
pub struct LocalWrapper;

#[async_trait::async_trait]
impl KeyWrapper for LocalWrapper {
    fn wrapper_id(&self) -> String {
        "local".into()
    }
    async fn wrap(&self, key: &[u8; KEY_LEN]) -> Result<Vec<u8>, CryptoError> {
        Ok(key.to_vec())
    }
    async fn unwrap(&self, wrapped: &[u8]) -> Result<SecretBox<[u8; KEY_LEN]>, CryptoError> {
        let bytes: [u8; KEY_LEN] = wrapped
            .try_into()
            .map_err(|_| CryptoError::Wrapper("wrapped key has the wrong length".into()))?;
        Ok(SecretBox::new(Box::new(bytes)))
    }
}

/// The DEK's file in the data directory: one line, `passkey-dek v1 <key id> <wrapper id>
/// <base64 of the wrapped key>`, mode 0600.
pub struct LocalKeyFile {
    path: PathBuf,
    wrapper: Box<dyn KeyWrapper>,
}

impl LocalKeyFile {
    /// The key file in `data_dir`, wrapped by `wrapper`.
    pub fn new(data_dir: &Path, wrapper: Box<dyn KeyWrapper>) -> Self {
        LocalKeyFile {
            path: data_dir.join(LOCAL_KEY_FILE),
            wrapper,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads the key, or, when `create_if_missing` (dev), makes one and writes it with mode 0600.
    /// A file others may read is refused rather than used.
    pub async fn load(&self, create_if_missing: bool) -> Result<DataKey, CryptoError> {
        let io = |source| CryptoError::Io {
            path: self.path.clone(),
            source,
        };
        match std::fs::read_to_string(&self.path) {
            Ok(text) => {
                check_private(&self.path)?;
                let bad = || CryptoError::BadKeyFile(self.path.clone());
                let parts: Vec<&str> = text.split_whitespace().collect();
                let [magic, version, key_id, wrapper, wrapped] = parts.as_slice() else {
                    return Err(bad());
                };
                if *magic != "passkey-dek" || *version != "v1" {
                    return Err(bad());
                }
                if *wrapper != self.wrapper.wrapper_id() {
                    return Err(CryptoError::Wrapper(format!(
                        "{} was wrapped by `{wrapper}`, but this instance unwraps with `{}`",
                        self.path.display(),
                        self.wrapper.wrapper_id()
                    )));
                }
                let wrapped = B64.decode(wrapped).map_err(|_| bad())?;
                let key = self.wrapper.unwrap(&wrapped).await?;
                DataKey::from_bytes(key_id, key.expose_secret())
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if !create_if_missing {
                    return Err(CryptoError::MissingKey(self.path.clone()));
                }
                match self.create().await {
                    Ok(key) => {
                        tracing::info!(path = %self.path.display(), key_id = key.key_id(), "created the data-encryption key (dev)");
                        Ok(key)
                    }
                    // Another instance starting at the same moment won: use its key.
                    Err(CryptoError::KeyExists(_)) => Box::pin(self.load(false)).await,
                    Err(e) => Err(e),
                }
            }
            Err(e) => Err(io(e)),
        }
    }

    /// Makes a new key, wraps it, and writes the file with mode 0600 — never over an existing
    /// one ([`CryptoError::KeyExists`]): the key opens everything sealed so far. This is
    /// `passkey admin keys init`, and dev's first start.
    pub async fn create(&self) -> Result<DataKey, CryptoError> {
        let io = |source| CryptoError::Io {
            path: self.path.clone(),
            source,
        };
        if self.path.exists() {
            return Err(CryptoError::KeyExists(self.path.clone()));
        }
        let (key, bytes) = DataKey::generate()?;
        let wrapped = self.wrapper.wrap(bytes.expose_secret()).await?;
        let line = format!(
            "passkey-dek v1 {} {} {}\n",
            key.key_id(),
            self.wrapper.wrapper_id(),
            B64.encode(wrapped)
        );
        if let Some(dir) = self.path.parent() {
            crate::private_fs::create_dir(dir).map_err(io)?;
        }
        // Written whole to a private temporary file, then linked into place: another
        // instance starting at the same moment either wins (we read its key) or loses,
        // and nobody ever reads a half-written file.
        let tmp = self
            .path
            .with_extension(format!("tmp-{}", &key.key_id()[4..]));
        crate::private_fs::write_new(&tmp, line.as_bytes()).map_err(io)?;
        let linked = std::fs::hard_link(&tmp, &self.path);
        let _ = std::fs::remove_file(&tmp);
        match linked {
            Ok(()) => Ok(key),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                Err(CryptoError::KeyExists(self.path.clone()))
            }
            Err(e) => Err(io(e)),
        }
    }

    /// What is wrong with the key file that shows without unwrapping it (no Key Vault call):
    /// missing where it is not created, readable by others, or not a key file. Start-up lists it
    /// with the configuration's problems, so one refusal names everything to fix.
    pub fn precheck(&self, create_if_missing: bool) -> Option<CryptoError> {
        match std::fs::read_to_string(&self.path) {
            Ok(text) => {
                if let Err(e) = check_private(&self.path) {
                    return Some(e);
                }
                let parts: Vec<&str> = text.split_whitespace().collect();
                match parts.as_slice() {
                    ["passkey-dek", "v1", _, _, _] => None,
                    _ => Some(CryptoError::BadKeyFile(self.path.clone())),
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                (!create_if_missing).then(|| CryptoError::MissingKey(self.path.clone()))
            }
            Err(source) => Some(CryptoError::Io {
                path: self.path.clone(),
                source,
            }),
        }
    }
}

#[cfg(unix)]
fn check_private(path: &Path) -> Result<(), CryptoError> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path)
        .map_err(|source| CryptoError::Io {
            path: path.into(),
            source,
        })?
        .permissions()
        .mode()
        & 0o777;
    if mode & 0o077 != 0 {
        return Err(CryptoError::KeyFilePermissions {
            path: path.into(),
            mode,
        });
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_private(_: &Path) -> Result<(), CryptoError> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> DataKey {
        DataKey::generate().unwrap().0
    }

    #[test]
    fn digests_compare_equal_only_when_identical() {
        let a = crate::canonical::sha256_hex("token-a");
        assert!(same_bytes(a.as_bytes(), a.clone().as_bytes()));
        assert!(!same_bytes(
            a.as_bytes(),
            crate::canonical::sha256_hex("token-b").as_bytes()
        ));
        assert!(!same_bytes(a.as_bytes(), &a.as_bytes()[..10]));
    }

    #[test]
    fn a_sealed_value_opens_with_the_same_purpose() {
        let k = key();
        let sealed = k.seal("phone:user:42", b"+15551234411").unwrap();
        assert_eq!(k.open("phone:user:42", &sealed).unwrap(), b"+15551234411");
        assert_eq!(sealed[0], ENVELOPE_VERSION);
        assert!(
            !sealed.windows(12).any(|w| w == b"+15551234411"),
            "plaintext visible in the envelope"
        );
    }

    #[test]
    fn each_seal_uses_a_fresh_nonce() {
        let k = key();
        let a = k.seal("p", b"same").unwrap();
        let b = k.seal("p", b"same").unwrap();
        assert_ne!(a, b);
    }

    #[test]
    fn another_row_or_purpose_does_not_open() {
        let k = key();
        let sealed = k.seal("phone:user:42", b"+15551234411").unwrap();
        assert!(matches!(
            k.open("phone:user:43", &sealed),
            Err(CryptoError::Open)
        ));
        assert!(matches!(
            k.open("totp:user:42", &sealed),
            Err(CryptoError::Open)
        ));
    }

    #[test]
    fn every_tampered_byte_is_refused() {
        let k = key();
        let sealed = k.seal("phone:user:42", b"+15551234411").unwrap();
        for i in 0..sealed.len() {
            let mut t = sealed.clone();
            t[i] ^= 0x01;
            assert!(k.open("phone:user:42", &t).is_err(), "byte {i} flipped");
        }
        assert!(
            k.open("phone:user:42", &sealed[..sealed.len() - 1])
                .is_err()
        );
        assert!(k.open("phone:user:42", &[]).is_err());
    }

    #[test]
    fn another_key_cannot_open() {
        let sealed = key().seal("p", b"x").unwrap();
        assert!(matches!(
            key().open("p", &sealed),
            Err(CryptoError::UnknownKey(_))
        ));
    }

    #[test]
    fn subkeys_differ_per_purpose_and_are_stable() {
        let k = key();
        assert_eq!(k.derive_subkey("otp"), k.derive_subkey("otp"));
        assert_ne!(k.derive_subkey("otp"), k.derive_subkey("other"));
        assert_ne!(k.derive_subkey("otp"), key().derive_subkey("otp"));
    }

    #[tokio::test]
    async fn the_key_file_is_created_private_in_dev_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let file = LocalKeyFile::new(dir.path(), Box::new(LocalWrapper));
        let first = file.load(true).await.unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(file.path()).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
        let sealed = first.seal("phone:user:1", b"+15550001111").unwrap();
        let again = file.load(false).await.unwrap();
        assert_eq!(again.key_id(), first.key_id());
        assert_eq!(
            again.open("phone:user:1", &sealed).unwrap(),
            b"+15550001111"
        );
    }

    #[tokio::test]
    async fn a_missing_key_in_production_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let file = LocalKeyFile::new(dir.path(), Box::new(LocalWrapper));
        assert!(matches!(
            file.load(false).await,
            Err(CryptoError::MissingKey(_))
        ));
        assert!(!file.path().exists(), "nothing may be created");
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn a_key_file_others_can_read_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let file = LocalKeyFile::new(dir.path(), Box::new(LocalWrapper));
        file.load(true).await.unwrap();
        std::fs::set_permissions(file.path(), std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = file.load(false).await.unwrap_err();
        assert!(matches!(
            err,
            CryptoError::KeyFilePermissions { mode: 0o644, .. }
        ));
        assert!(err.to_string().contains("chmod 600"));
    }

    #[tokio::test]
    async fn instances_starting_together_share_one_key() {
        let dir = tempfile::tempdir().unwrap();
        let loads = (0..8).map(|_| {
            let path = dir.path().to_path_buf();
            tokio::spawn(async move {
                LocalKeyFile::new(&path, Box::new(LocalWrapper))
                    .load(true)
                    .await
                    .unwrap()
                    .key_id()
                    .to_string()
            })
        });
        let mut ids = std::collections::BTreeSet::new();
        for l in loads {
            ids.insert(l.await.unwrap());
        }
        assert_eq!(ids.len(), 1, "{ids:?}");
        let leftovers: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "only the key file remains");
    }

    #[tokio::test]
    async fn a_key_file_from_another_wrapper_is_refused_clearly() {
        struct Other;
        #[async_trait::async_trait]
        impl KeyWrapper for Other {
            fn wrapper_id(&self) -> String {
                "azure-keyvault:https://kv.example/keys/dek".into()
            }
            async fn wrap(&self, _: &[u8; KEY_LEN]) -> Result<Vec<u8>, CryptoError> {
                unreachable!()
            }
            async fn unwrap(&self, _: &[u8]) -> Result<SecretBox<[u8; KEY_LEN]>, CryptoError> {
                unreachable!()
            }
        }
        let dir = tempfile::tempdir().unwrap();
        LocalKeyFile::new(dir.path(), Box::new(LocalWrapper))
            .load(true)
            .await
            .unwrap();
        let err = LocalKeyFile::new(dir.path(), Box::new(Other))
            .load(true)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("wrapped by `local`"), "{err}");
    }

    #[tokio::test]
    async fn a_malformed_key_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let file = LocalKeyFile::new(dir.path(), Box::new(LocalWrapper));
        crate::private_fs::write_new(file.path(), b"hello world\n").unwrap();
        assert!(matches!(
            file.load(true).await,
            Err(CryptoError::BadKeyFile(_))
        ));
    }
}
