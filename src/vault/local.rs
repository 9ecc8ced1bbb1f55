//! The local vault, for `cargo run` on a fresh machine: folders, ACLs and records from
//! `dev-vault.json` in the data directory (written from the demo data set on first start), and
//! real one-time links served by this app under `/dev-vault/share/{key}`. The first open shows the
//! record's demo secret; every later open says the link was used; expired and removed links say
//! so. Shares live in the database ([`LocalShareStore`]), so that every instance on it sees the
//! same links: one made by instance A is opened, listed and removed through instance B, and a
//! "not found" means the database has no live share of that id. The database keeps the share id
//! (derived one way from the link's key), record uid, name and times — never the link or a secret.
//! Refused in the production profile (`Settings::check`).

use super::{
    FolderAclEntry, OneTimeSharer, RecordMeta, Removed, Share, ShareInfo, ShareUrl, SharedFolder,
    VaultError, VaultReader, share_id_from_url,
};
use crate::domain::{Clock, Timestamp};
use crate::store::{LocalShareRow, LocalShareStore, StoreError};
use async_trait::async_trait;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub const FILE_NAME: &str = "dev-vault.json";

/// The file's shape.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VaultFile {
    pub folders: Vec<FileFolder>,
    pub records: Vec<FileRecord>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FileFolder {
    pub uid: String,
    pub name: String,
    pub acl: Vec<FolderAclEntry>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FileRecord {
    pub uid: String,
    pub title: String,
    pub record_type: String,
    pub folder_uid: Option<String>,
    pub revision: i64,
    pub owner: Option<String>,
    /// Demo values only; they leave the vault through a one-time link and nowhere else.
    pub login: String,
    pub password: String,
}

/// What opening a link found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Opened {
    /// The first open: the record's title, login and password.
    Secret {
        title: String,
        login: String,
        password: String,
    },
    AlreadyUsed,
    Expired,
    Removed,
    Unknown,
    /// The share store did not answer: nothing is shown (try again).
    Unavailable,
}

pub struct LocalVault {
    file: VaultFile,
    /// Base URL links point at, e.g. `http://127.0.0.1:3978`.
    public_base: String,
    clock: Arc<dyn Clock>,
    /// Where the shares live; `None` for a vault opened only to read records (the stub backend,
    /// `doctor`), whose share operations then fail closed.
    shares: Option<Arc<dyn LocalShareStore>>,
}

impl LocalVault {
    pub fn new(file: VaultFile, public_base: String, clock: Arc<dyn Clock>) -> LocalVault {
        LocalVault {
            file,
            public_base,
            clock,
            shares: None,
        }
    }

    /// Keeps this vault's one-time shares in `store` (shared by every instance on it).
    pub fn with_shares(mut self, store: Arc<dyn LocalShareStore>) -> LocalVault {
        self.shares = Some(store);
        self
    }

    fn share_store(&self) -> Result<&dyn LocalShareStore, VaultError> {
        self.shares.as_deref().ok_or_else(|| {
            VaultError::new(
                super::ErrorClass::Terminal,
                super::classify::says::MISCONFIGURED,
                "the local vault was opened without a share store",
            )
        })
    }

    /// Loads `dev-vault.json` from the data directory, writing it from the demo data set first
    /// if it is not there.
    pub fn open(
        data_dir: &Path,
        public_base: String,
        clock: Arc<dyn Clock>,
    ) -> std::io::Result<LocalVault> {
        let path: PathBuf = data_dir.join(FILE_NAME);
        if !path.exists() {
            let file = demo_vault_file();
            match crate::private_fs::write_new(
                &path,
                &serde_json::to_vec_pretty(&file).map_err(std::io::Error::other)?,
            ) {
                Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => return Err(e),
                _ => {}
            }
        }
        crate::private_fs::tighten(&path, 0o600)?;
        let file: VaultFile = serde_json::from_slice(&std::fs::read(&path)?)
            .map_err(|e| std::io::Error::other(format!("{}: {e}", path.display())))?;
        Ok(LocalVault::new(file, public_base, clock))
    }

    /// What opening the link whose key is `key` would find, without using it up: `None` when it
    /// would show the secret. Link scanners and chat previews fetch links; only [`open_link`]
    /// (a deliberate POST) may use one.
    ///
    /// [`open_link`]: LocalVault::open_link
    pub async fn peek_link(&self, key: &str) -> Option<Opened> {
        let Some(id) = share_id_from_url(&format!("#{key}")) else {
            return Some(Opened::Unknown);
        };
        let Ok(store) = self.share_store() else {
            return Some(Opened::Unavailable);
        };
        match store.local_share(&id).await {
            Ok(None) => Some(Opened::Unknown),
            Ok(Some(share)) => Self::closed(&share, self.clock.now()),
            Err(e) => Some(Self::unavailable(&e)),
        }
    }

    /// Why `share` shows no secret at `now`, if it does not.
    fn closed(share: &LocalShareRow, now: Timestamp) -> Option<Opened> {
        if share.removed_at.is_some() {
            Some(Opened::Removed)
        } else if share.opened_at.is_some() {
            Some(Opened::AlreadyUsed)
        } else if now >= share.expires_at {
            Some(Opened::Expired)
        } else {
            None
        }
    }

    fn unavailable(e: &StoreError) -> Opened {
        tracing::warn!(error = %e, "local vault share store unavailable");
        Opened::Unavailable
    }

    /// Opens the link whose key is `key` (the last path segment). Exactly one open ever sees the
    /// secret, across every instance: the database marks it opened conditionally.
    pub async fn open_link(&self, key: &str) -> Opened {
        let Some(id) = share_id_from_url(&format!("#{key}")) else {
            return Opened::Unknown;
        };
        let Ok(store) = self.share_store() else {
            return Opened::Unavailable;
        };
        let now = self.clock.now();
        let share = match store.local_share(&id).await {
            Ok(Some(share)) => share,
            Ok(None) => return Opened::Unknown,
            Err(e) => return Self::unavailable(&e),
        };
        if let Some(closed) = Self::closed(&share, now) {
            return closed;
        }
        match store.open_local_share(&id, now).await {
            Ok(true) => {}
            // Someone else opened, removed or outlived it in between: say which.
            Ok(false) => {
                return match store.local_share(&id).await {
                    Ok(Some(share)) => Self::closed(&share, now).unwrap_or(Opened::AlreadyUsed),
                    Ok(None) => Opened::Unknown,
                    Err(e) => Self::unavailable(&e),
                };
            }
            Err(e) => return Self::unavailable(&e),
        }
        match self.file.records.iter().find(|r| r.uid == share.record_uid) {
            Some(r) => Opened::Secret {
                title: r.title.clone(),
                login: r.login.clone(),
                password: r.password.clone(),
            },
            None => Opened::Unknown,
        }
    }

    fn meta(r: &FileRecord) -> RecordMeta {
        RecordMeta {
            uid: r.uid.clone(),
            title: r.title.clone(),
            record_type: r.record_type.clone(),
            folder_uid: r.folder_uid.clone(),
            revision: Some(r.revision),
            owner: r.owner.clone(),
        }
    }
}

#[async_trait]
impl VaultReader for LocalVault {
    async fn shared_folders(&self) -> Result<Vec<SharedFolder>, VaultError> {
        Ok(self
            .file
            .folders
            .iter()
            .map(|f| SharedFolder {
                uid: f.uid.clone(),
                name: f.name.clone(),
                acl: Some(f.acl.clone()),
            })
            .collect())
    }

    async fn records(&self) -> Result<Vec<RecordMeta>, VaultError> {
        Ok(self.file.records.iter().map(Self::meta).collect())
    }

    async fn record(&self, uid: &str) -> Result<Option<RecordMeta>, VaultError> {
        Ok(self
            .file
            .records
            .iter()
            .find(|r| r.uid == uid)
            .map(Self::meta))
    }
}

#[async_trait]
impl OneTimeSharer for LocalVault {
    async fn create(
        &self,
        record_uid: &str,
        ttl: time::Duration,
        name: &str,
    ) -> Result<Share, VaultError> {
        if !self.file.records.iter().any(|r| r.uid == record_uid) {
            return Err(VaultError::new(
                super::ErrorClass::Terminal,
                "the vault has no such record",
                "one-time-share: Enter name or uid of existing record",
            ));
        }
        if ttl <= time::Duration::ZERO || ttl > time::Duration::days(182) {
            return Err(VaultError::new(
                super::ErrorClass::Terminal,
                "a share must expire within six months",
                "one-time-share: URL expiration period cannot be greater than 6 months.",
            ));
        }
        let key: [u8; 32] = rand_key();
        let encoded = URL_SAFE_NO_PAD.encode(key);
        let share_id =
            share_id_from_url(&format!("#{encoded}")).expect("a fresh key always has an id");
        let now = self.clock.now();
        let expires = now.plus(ttl);
        self.share_store()?
            .insert_local_share(&LocalShareRow {
                share_id: share_id.clone(),
                record_uid: record_uid.to_string(),
                name: name.to_string(),
                created_at: now,
                expires_at: expires,
                opened_at: None,
                removed_at: None,
            })
            .await
            .map_err(|e| store_error(&e))?;
        let url = ShareUrl::new(format!(
            "{}/dev-vault/share/{encoded}",
            self.public_base.trim_end_matches('/')
        ));
        Ok(Share {
            url,
            share_id,
            expires_at: expires,
        })
    }

    async fn remove(
        &self,
        record_uid: &str,
        share_id_or_name: &str,
    ) -> Result<Removed, VaultError> {
        // The database is the whole truth about local shares: nothing removed there means no
        // live share of that id or name on any instance, so "not found" is an answer, not a guess.
        let removed = self
            .share_store()?
            .remove_local_share(record_uid, share_id_or_name, self.clock.now())
            .await
            .map_err(|e| store_error(&e))?;
        Ok(if removed > 0 {
            Removed::Removed
        } else {
            Removed::NotFound
        })
    }

    async fn list(&self, record_uid: &str) -> Result<Vec<ShareInfo>, VaultError> {
        if !self.file.records.iter().any(|r| r.uid == record_uid) {
            return Err(VaultError::new(
                super::ErrorClass::Terminal,
                "the vault has no such record",
                "one-time-share: Enter name or uid of existing record",
            ));
        }
        let now = self.clock.now();
        let shares = self
            .share_store()?
            .local_shares(record_uid)
            .await
            .map_err(|e| store_error(&e))?;
        Ok(shares
            .into_iter()
            .map(|s| ShareInfo {
                status: if s.opened_at.is_some() {
                    "Opened"
                } else if now >= s.expires_at {
                    "Expired"
                } else {
                    "Generated"
                }
                .to_string(),
                share_id: s.share_id,
                name: Some(s.name),
                generated: Some(s.created_at),
                opened: s.opened_at,
                expires: Some(s.expires_at),
            })
            .collect())
    }
}

/// The share store failing is a transient vault failure (the caller retries).
fn store_error(e: &StoreError) -> VaultError {
    VaultError::new(
        super::ErrorClass::Transient,
        "the vault could not be reached, try again",
        format!("local vault share store: {e}"),
    )
}

/// 32 bytes from the OS CSPRNG.
fn rand_key() -> [u8; 32] {
    let mut key = [0u8; 32];
    getrandom::fill(&mut key).expect("the OS random source is available");
    key
}

/// The demo data set as a vault file: the same folders, ACLs and record uids the database demo
/// set uses, with made-up secrets.
pub fn demo_vault_file() -> VaultFile {
    let data = crate::demo::data::dataset();
    let owners: HashMap<&str, &str> = data
        .users
        .iter()
        .map(|u| (u.key.as_str(), u.email.as_str()))
        .collect();
    let folder_uids: HashMap<&str, &str> = data
        .folders
        .iter()
        .map(|f| (f.key.as_str(), f.vault_uid.as_str()))
        .collect();
    VaultFile {
        folders: data
            .folders
            .iter()
            .map(|f| FileFolder {
                uid: f.vault_uid.clone(),
                name: f.name.clone(),
                acl: f
                    .acl
                    .iter()
                    .map(|(t, p, l)| FolderAclEntry {
                        principal_type: *t,
                        principal: p.clone(),
                        permission: *l,
                    })
                    .collect(),
            })
            .collect(),
        records: data
            .records
            .iter()
            .map(|r| FileRecord {
                uid: r.vault_uid.clone(),
                title: r.title.clone(),
                record_type: r.record_type.clone(),
                folder_uid: folder_uids.get(r.folder.as_str()).map(|s| s.to_string()),
                revision: 1,
                owner: owners.get(r.owner.as_str()).map(|s| s.to_string()),
                login: format!("svc_{}", r.title.replace('-', "_")),
                password: format!("demo-only-{}-pw", r.title),
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::ManualClock;

    /// A vault over a fresh SQLite file (kept alive by the returned directory).
    async fn vault() -> (LocalVault, Arc<ManualClock>, tempfile::TempDir) {
        use crate::store::HealthStore;
        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::SqliteStore::open(&dir.path().join("t.db"), 4)
            .await
            .unwrap();
        store.migrate().await.unwrap();
        let clock = Arc::new(ManualClock::new(
            Timestamp::parse("2026-11-23T10:00:00Z").unwrap(),
        ));
        (
            LocalVault::new(
                demo_vault_file(),
                "http://127.0.0.1:3978".into(),
                clock.clone(),
            )
            .with_shares(Arc::new(store)),
            clock,
            dir,
        )
    }

    fn key_of(share: &Share) -> String {
        share.url.expose().rsplit('/').next().unwrap().to_string()
    }

    const DB_PROD: &str = "dbPr0dPgL0g1nR3c0rd001";

    #[tokio::test]
    async fn a_link_opens_once() {
        let (v, _, _dir) = vault().await;
        let share = v
            .create(DB_PROD, time::Duration::hours(1), "passkey-req-1")
            .await
            .unwrap();
        assert!(
            share
                .url
                .expose()
                .starts_with("http://127.0.0.1:3978/dev-vault/share/")
        );
        assert_eq!(
            share_id_from_url(&format!("#{}", key_of(&share))).unwrap(),
            share.share_id
        );
        for _ in 0..3 {
            assert_eq!(
                v.peek_link(&key_of(&share)).await,
                None,
                "looking uses nothing up"
            );
        }
        match v.open_link(&key_of(&share)).await {
            Opened::Secret {
                title, password, ..
            } => assert_eq!(
                (title.as_str(), password.as_str()),
                ("db-prod", "demo-only-db-prod-pw")
            ),
            other => panic!("{other:?}"),
        }
        assert_eq!(v.open_link(&key_of(&share)).await, Opened::AlreadyUsed);
        assert_eq!(
            v.peek_link(&key_of(&share)).await,
            Some(Opened::AlreadyUsed)
        );
        assert_eq!(v.list(DB_PROD).await.unwrap()[0].status, "Opened");
        assert_eq!(v.open_link("not-a-key").await, Opened::Unknown);
    }

    #[tokio::test]
    async fn expired_and_removed_links_say_so() {
        let (v, clock, _dir) = vault().await;
        let expiring = v
            .create(DB_PROD, time::Duration::minutes(5), "a")
            .await
            .unwrap();
        let removed = v
            .create(DB_PROD, time::Duration::hours(1), "b")
            .await
            .unwrap();
        assert_eq!(
            v.remove(DB_PROD, &removed.share_id).await.unwrap(),
            Removed::Removed
        );
        assert_eq!(
            v.remove(DB_PROD, &removed.share_id).await.unwrap(),
            Removed::NotFound
        );
        assert_eq!(v.open_link(&key_of(&removed)).await, Opened::Removed);
        clock.advance(time::Duration::minutes(5));
        assert_eq!(v.open_link(&key_of(&expiring)).await, Opened::Expired);
        // Removal by name, for cleaning up after an unclear create.
        v.create(DB_PROD, time::Duration::hours(1), "passkey-req-9")
            .await
            .unwrap();
        assert_eq!(
            v.remove(DB_PROD, "passkey-req-9").await.unwrap(),
            Removed::Removed
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_opens_of_one_link_give_the_secret_exactly_once() {
        let (v, _, _dir) = vault().await;
        let v = Arc::new(v);
        let key = key_of(
            &v.create(DB_PROD, time::Duration::hours(1), "x")
                .await
                .unwrap(),
        );
        let handles: Vec<_> = (0..32)
            .map(|_| {
                let v = v.clone();
                let key = key.clone();
                tokio::spawn(
                    async move { matches!(v.open_link(&key).await, Opened::Secret { .. }) },
                )
            })
            .collect();
        let mut winners = 0;
        for h in handles {
            winners += usize::from(h.await.unwrap());
        }
        assert_eq!(winners, 1);
    }

    #[tokio::test]
    async fn unknown_records_and_bad_ttls_are_terminal() {
        let (v, _, _dir) = vault().await;
        let e = v
            .create("NoSuchRecordUid0000000", time::Duration::hours(1), "x")
            .await
            .unwrap_err();
        assert_eq!(e.class, super::super::ErrorClass::Terminal);
        let e = v
            .create(DB_PROD, time::Duration::days(183), "x")
            .await
            .unwrap_err();
        assert_eq!(e.class, super::super::ErrorClass::Terminal);
        assert!(v.list("NoSuchRecordUid0000000").await.is_err());
        assert_eq!(v.records().await.unwrap().len(), 12);
        assert_eq!(v.record(DB_PROD).await.unwrap().unwrap().title, "db-prod");
        assert!(v.record("nope").await.unwrap().is_none());
        assert_eq!(v.shared_folders().await.unwrap().len(), 4);
    }

    #[tokio::test]
    async fn without_a_share_store_nothing_is_shared_or_shown() {
        let v = LocalVault::new(
            demo_vault_file(),
            "http://127.0.0.1:3978".into(),
            Arc::new(ManualClock::new(
                Timestamp::parse("2026-11-23T10:00:00Z").unwrap(),
            )),
        );
        assert!(
            v.create(DB_PROD, time::Duration::hours(1), "x")
                .await
                .is_err()
        );
        assert!(
            v.remove(DB_PROD, "x").await.is_err(),
            "never a guessed 'not found'"
        );
        assert_eq!(v.open_link("AAAA").await, Opened::Unavailable);
    }

    #[test]
    fn share_urls_never_print() {
        let url = ShareUrl::new("http://127.0.0.1:3978/dev-vault/share/abc".into());
        assert_eq!(format!("{url:?}"), "ShareUrl([REDACTED])");
    }
}
