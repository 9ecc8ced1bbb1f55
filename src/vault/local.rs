//! The local vault, for `cargo run` on a fresh machine: folders, ACLs and records from
//! `dev-vault.json` in the data directory (written from the demo data set on first start), and
//! real one-time links served by this app under `/dev-vault/share/{key}`. The first open shows the
//! record's demo secret; every later open says the link was used; expired and removed links say
//! so. Shares live in memory: a restart forgets them (they are demo links).
//! Refused in the production profile (`Settings::check`).

use super::{
    FolderAclEntry, OneTimeSharer, RecordMeta, Removed, Share, ShareInfo, ShareUrl, SharedFolder,
    VaultError, VaultReader, share_id_from_url,
};
use crate::domain::{Clock, Timestamp};
use async_trait::async_trait;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

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
}

#[derive(Debug, Clone)]
struct LocalShare {
    record_uid: String,
    name: String,
    generated: Timestamp,
    expires: Timestamp,
    opened: Option<Timestamp>,
    removed: bool,
}

pub struct LocalVault {
    file: VaultFile,
    /// Base URL links point at, e.g. `http://127.0.0.1:3978`.
    public_base: String,
    clock: Arc<dyn Clock>,
    /// By share id. One lock for all shares: opens are rare, and it makes "exactly one open sees
    /// the secret" trivially true.
    shares: Mutex<HashMap<String, LocalShare>>,
}

impl LocalVault {
    pub fn new(file: VaultFile, public_base: String, clock: Arc<dyn Clock>) -> LocalVault {
        LocalVault {
            file,
            public_base,
            clock,
            shares: Mutex::new(HashMap::new()),
        }
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
    pub fn peek_link(&self, key: &str) -> Option<Opened> {
        let Some(id) = share_id_from_url(&format!("#{key}")) else {
            return Some(Opened::Unknown);
        };
        let now = self.clock.now();
        let shares = self.shares.lock().unwrap_or_else(|e| e.into_inner());
        match shares.get(&id) {
            None => Some(Opened::Unknown),
            Some(share) => Self::closed(share, now),
        }
    }

    /// Why `share` shows no secret at `now`, if it does not.
    fn closed(share: &LocalShare, now: Timestamp) -> Option<Opened> {
        if share.removed {
            Some(Opened::Removed)
        } else if share.opened.is_some() {
            Some(Opened::AlreadyUsed)
        } else if now >= share.expires {
            Some(Opened::Expired)
        } else {
            None
        }
    }

    /// Opens the link whose key is `key` (the last path segment). Exactly one open ever sees the secret.
    pub fn open_link(&self, key: &str) -> Opened {
        let Some(id) = share_id_from_url(&format!("#{key}")) else {
            return Opened::Unknown;
        };
        let now = self.clock.now();
        let mut shares = self.shares.lock().unwrap_or_else(|e| e.into_inner());
        let Some(share) = shares.get_mut(&id) else {
            return Opened::Unknown;
        };
        if let Some(closed) = Self::closed(share, now) {
            return closed;
        }
        share.opened = Some(now);
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
            revision: r.revision,
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
        self.shares
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(
                share_id.clone(),
                LocalShare {
                    record_uid: record_uid.to_string(),
                    name: name.to_string(),
                    generated: now,
                    expires,
                    opened: None,
                    removed: false,
                },
            );
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
        let mut shares = self.shares.lock().unwrap_or_else(|e| e.into_inner());
        let found = shares.iter_mut().find(|(id, s)| {
            s.record_uid == record_uid
                && !s.removed
                && (id.as_str() == share_id_or_name || s.name == share_id_or_name)
        });
        Ok(match found {
            Some((_, share)) => {
                share.removed = true;
                Removed::Removed
            }
            None => Removed::NotFound,
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
        let shares = self.shares.lock().unwrap_or_else(|e| e.into_inner());
        let mut list: Vec<ShareInfo> = shares
            .iter()
            .filter(|(_, s)| s.record_uid == record_uid && !s.removed)
            .map(|(id, s)| ShareInfo {
                share_id: id.clone(),
                name: Some(s.name.clone()),
                generated: Some(s.generated),
                opened: s.opened,
                expires: Some(s.expires),
                status: if s.opened.is_some() {
                    "Opened"
                } else if now >= s.expires {
                    "Expired"
                } else {
                    "Generated"
                }
                .to_string(),
            })
            .collect();
        list.sort_by(|a, b| {
            a.generated
                .cmp(&b.generated)
                .then(a.share_id.cmp(&b.share_id))
        });
        Ok(list)
    }
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
    let data = crate::demo::dataset();
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

    fn vault() -> (LocalVault, Arc<ManualClock>) {
        let clock = Arc::new(ManualClock::new(
            Timestamp::parse("2026-11-23T10:00:00Z").unwrap(),
        ));
        (
            LocalVault::new(
                demo_vault_file(),
                "http://127.0.0.1:3978".into(),
                clock.clone(),
            ),
            clock,
        )
    }

    fn key_of(share: &Share) -> String {
        share.url.expose().rsplit('/').next().unwrap().to_string()
    }

    const DB_PROD: &str = "dbPr0dPgL0g1nR3c0rd001";

    #[tokio::test]
    async fn a_link_opens_once() {
        let (v, _) = vault();
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
                v.peek_link(&key_of(&share)),
                None,
                "looking uses nothing up"
            );
        }
        match v.open_link(&key_of(&share)) {
            Opened::Secret {
                title, password, ..
            } => assert_eq!(
                (title.as_str(), password.as_str()),
                ("db-prod", "demo-only-db-prod-pw")
            ),
            other => panic!("{other:?}"),
        }
        assert_eq!(v.open_link(&key_of(&share)), Opened::AlreadyUsed);
        assert_eq!(v.peek_link(&key_of(&share)), Some(Opened::AlreadyUsed));
        assert_eq!(v.list(DB_PROD).await.unwrap()[0].status, "Opened");
        assert_eq!(v.open_link("not-a-key"), Opened::Unknown);
    }

    #[tokio::test]
    async fn expired_and_removed_links_say_so() {
        let (v, clock) = vault();
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
        assert_eq!(v.open_link(&key_of(&removed)), Opened::Removed);
        clock.advance(time::Duration::minutes(5));
        assert_eq!(v.open_link(&key_of(&expiring)), Opened::Expired);
        // Removal by name, for cleaning up after an unclear create.
        v.create(DB_PROD, time::Duration::hours(1), "passkey-req-9")
            .await
            .unwrap();
        assert_eq!(
            v.remove(DB_PROD, "passkey-req-9").await.unwrap(),
            Removed::Removed
        );
    }

    #[tokio::test]
    async fn concurrent_opens_of_one_link_give_the_secret_exactly_once() {
        let (v, _) = vault();
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
                std::thread::spawn(move || matches!(v.open_link(&key), Opened::Secret { .. }))
            })
            .collect();
        let winners = handles
            .into_iter()
            .map(|h| h.join().unwrap())
            .filter(|w| *w)
            .count();
        assert_eq!(winners, 1);
    }

    #[tokio::test]
    async fn unknown_records_and_bad_ttls_are_terminal() {
        let (v, _) = vault();
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

    #[test]
    fn share_urls_never_print() {
        let url = ShareUrl::new("http://127.0.0.1:3978/dev-vault/share/abc".into());
        assert_eq!(format!("{url:?}"), "ShareUrl([REDACTED])");
    }
}
