//! Shared-folder ACLs from Commander, and the two readers built on them: [`CommanderAclReader`]
//! (KSM's records and folders with Commander's ACLs) and [`CommanderReader`] (Commander alone:
//! records from `list`, folders, ACLs and membership from `list-sf` and `get`).
//!
//! KSM sees folders and records but no ACLs. Commander does: `list-sf --format json` lists the
//! shared folders (`shared_folder_uid`, `name`), and `get <SHARED_FOLDER_UID> --format json`
//! prints one folder's users and teams. [`acl_from_folder_json`] maps them to
//! [`FolderPermission`]s; [`CommanderAclReader`] serves records from KSM and folders with their
//! ACLs from Commander. `get` is only ever called with a uid `list-sf` returned: pointed at a
//! record, it would print the record's field values.

use super::{FolderAclEntry, RecordMeta, SharedFolder, VaultError, VaultReader};
use crate::domain::{FolderPermission, VaultPrincipalType};
use async_trait::async_trait;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Shared folders with their ACLs, from a source that can see them (Commander).
#[async_trait]
pub trait FolderAclSource: Send + Sync {
    /// Every shared folder the account sees, each with `acl: Some(..)`.
    async fn folder_acls(&self) -> Result<Vec<SharedFolder>, VaultError>;
}

/// A record as `list --format json` names it: the three columns Passkey reads, nothing else.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedRecord {
    pub uid: String,
    pub record_type: String,
    pub title: String,
}

/// A shared folder with its ACL and the records in it (`get <SHARED_FOLDER_UID>`'s `records`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FolderListing {
    pub folder: SharedFolder,
    pub record_uids: Vec<String>,
}

/// Commander's metadata reads, neither of which prints a secret: `list` for records and `list-sf`
/// plus `get` on each shared folder for folders, ACLs and membership.
#[async_trait]
pub trait CommanderReads: Send + Sync {
    async fn listed_records(&self) -> Result<Vec<ListedRecord>, VaultError>;
    async fn folder_listings(&self) -> Result<Vec<FolderListing>, VaultError>;
}

/// One Commander permission set → one Passkey level, strongest first:
///
/// | Commander | Passkey |
/// |---|---|
/// | `owner: true` | OWNER |
/// | `manage_users: true` | MANAGER |
/// | `manage_records: true` | EDITOR |
/// | none of these | VIEWER |
///
/// (OWNER and MANAGER may approve; EDITOR and VIEWER may request — see
/// [`FolderPermission::may_approve`].) Teams have no `owner` flag.
pub fn permission_of(owner: bool, manage_users: bool, manage_records: bool) -> FolderPermission {
    if owner {
        FolderPermission::Owner
    } else if manage_users {
        FolderPermission::Manager
    } else if manage_records {
        FolderPermission::Editor
    } else {
        FolderPermission::Viewer
    }
}

/// The ACL in `get <SHARED_FOLDER_UID> --format json`: `users[{username, owner, manage_records,
/// manage_users}]` → USER entries by username (the account's email), `teams[{name, team_uid,
/// manage_records, manage_users}]` → TEAM entries by team name. Entries without a name are
/// skipped; a missing flag reads as false (the weaker permission). `share_admins` are not
/// folder members and are not mapped.
pub fn acl_from_folder_json(folder: &serde_json::Value) -> Vec<FolderAclEntry> {
    let flag = |entry: &serde_json::Value, key: &str| {
        entry.get(key).and_then(|v| v.as_bool()).unwrap_or(false)
    };
    let name = |entry: &serde_json::Value, key: &str| {
        entry
            .get(key)
            .and_then(|v| v.as_str())
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
    };
    let list = |key: &str| {
        folder
            .get(key)
            .and_then(|v| v.as_array())
            .cloned()
            .unwrap_or_default()
    };
    let users = list("users").into_iter().filter_map(|u| {
        Some(FolderAclEntry {
            principal_type: VaultPrincipalType::User,
            principal: name(&u, "username")?,
            permission: permission_of(
                flag(&u, "owner"),
                flag(&u, "manage_users"),
                flag(&u, "manage_records"),
            ),
        })
    });
    let teams = list("teams").into_iter().filter_map(|t| {
        Some(FolderAclEntry {
            principal_type: VaultPrincipalType::Team,
            principal: name(&t, "name")?,
            permission: permission_of(false, flag(&t, "manage_users"), flag(&t, "manage_records")),
        })
    });
    users.chain(teams).collect()
}

/// Records from one reader (KSM), folders from it too — each given the ACL Commander reports.
///
/// A folder both know gets Commander's ACL; a folder only KSM sees keeps `acl: None` (unknown,
/// so a sync leaves its stored ACL alone); a folder only Commander sees is listed with its ACL
/// (the KSM application may not be shared into every folder, and permissions still matter). A
/// Commander failure is the read's error: an ACL is never guessed as empty.
pub struct CommanderAclReader {
    records: Arc<dyn VaultReader>,
    acls: Arc<dyn FolderAclSource>,
}

impl CommanderAclReader {
    pub fn new(
        records: Arc<dyn VaultReader>,
        acls: Arc<dyn FolderAclSource>,
    ) -> CommanderAclReader {
        CommanderAclReader { records, acls }
    }
}

#[async_trait]
impl VaultReader for CommanderAclReader {
    async fn shared_folders(&self) -> Result<Vec<SharedFolder>, VaultError> {
        let from_records = self.records.shared_folders().await?;
        let with_acls = self.acls.folder_acls().await?;
        let mut acls: HashMap<String, SharedFolder> =
            with_acls.into_iter().map(|f| (f.uid.clone(), f)).collect();
        let mut folders: Vec<SharedFolder> = from_records
            .into_iter()
            .map(|mut folder| {
                if let Some(known) = acls.remove(&folder.uid) {
                    folder.acl = known.acl;
                }
                folder
            })
            .collect();
        let mut only_commander: Vec<SharedFolder> = acls.into_values().collect();
        only_commander.sort_by(|a, b| a.uid.cmp(&b.uid));
        folders.extend(only_commander);
        Ok(folders)
    }

    async fn records(&self) -> Result<Vec<RecordMeta>, VaultError> {
        self.records.records().await
    }

    async fn record(&self, uid: &str) -> Result<Option<RecordMeta>, VaultError> {
        self.records.record(uid).await
    }
}

/// How long [`CommanderReader::records`] reuses the folder listing that
/// [`CommanderReader::shared_folders`] just read: one sync reads folders, then records, and each
/// `get` is a Commander call (a CLI call logs in: seconds each).
const LISTING_REUSE: Duration = Duration::from_secs(120);

/// Vault metadata from Commander alone, for deployments without KSM.
///
/// - Folders: every shared folder `list-sf` lists, each with the ACL `get` prints.
/// - Records: `list --format json --verbose` (uid, type, title); each record's folder is the
///   shared folder whose `records` list holds it. A record in several shared folders is governed
///   by one, the smallest folder uid (stable from sync to sync); a record in none has no folder.
/// - Revision: Commander's `list` has none, so [`RecordMeta::revision`] is `None` and a sync
///   keeps the stored revision — never a CREDENTIAL_ROTATED it cannot prove. Rotation
///   information comes from `pam rotation info`.
/// - `record(uid)` lists again and looks the uid up (a second, fresh look before a record is
///   called gone).
///
/// `get` is never pointed at a record: on a record uid it prints the secrets.
pub struct CommanderReader {
    commander: Arc<dyn CommanderReads>,
    last_listing: Mutex<Option<(Instant, Vec<FolderListing>)>>,
}

impl CommanderReader {
    pub fn new(commander: Arc<dyn CommanderReads>) -> CommanderReader {
        CommanderReader {
            commander,
            last_listing: Mutex::new(None),
        }
    }

    async fn fresh_listing(&self) -> Result<Vec<FolderListing>, VaultError> {
        let listing = self.commander.folder_listings().await?;
        *self.last_listing.lock().unwrap_or_else(|e| e.into_inner()) =
            Some((Instant::now(), listing.clone()));
        Ok(listing)
    }

    async fn recent_listing(&self) -> Result<Vec<FolderListing>, VaultError> {
        let kept = self
            .last_listing
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .filter(|(at, _)| at.elapsed() < LISTING_REUSE)
            .map(|(_, listing)| listing.clone());
        match kept {
            Some(listing) => Ok(listing),
            None => self.fresh_listing().await,
        }
    }

    async fn metas(&self) -> Result<Vec<RecordMeta>, VaultError> {
        let listed = self.commander.listed_records().await?;
        let listing = self.recent_listing().await?;
        let mut folder_of: HashMap<&str, &str> = HashMap::new();
        for l in &listing {
            for uid in &l.record_uids {
                folder_of
                    .entry(uid.as_str())
                    .and_modify(|f| {
                        if l.folder.uid.as_str() < *f {
                            *f = l.folder.uid.as_str();
                        }
                    })
                    .or_insert(l.folder.uid.as_str());
            }
        }
        Ok(listed
            .into_iter()
            .map(|r| RecordMeta {
                folder_uid: folder_of.get(r.uid.as_str()).map(|f| f.to_string()),
                uid: r.uid,
                title: r.title,
                record_type: r.record_type,
                revision: None,
                owner: None,
            })
            .collect())
    }
}

#[async_trait]
impl VaultReader for CommanderReader {
    async fn shared_folders(&self) -> Result<Vec<SharedFolder>, VaultError> {
        Ok(self
            .fresh_listing()
            .await?
            .into_iter()
            .map(|l| l.folder)
            .collect())
    }

    async fn records(&self) -> Result<Vec<RecordMeta>, VaultError> {
        self.metas().await
    }

    async fn record(&self, uid: &str) -> Result<Option<RecordMeta>, VaultError> {
        Ok(self.metas().await?.into_iter().find(|r| r.uid == uid))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_permission_mapping_takes_the_strongest_flag() {
        use FolderPermission::*;
        assert_eq!(permission_of(true, false, false), Owner);
        assert_eq!(permission_of(true, true, true), Owner);
        assert_eq!(permission_of(false, true, false), Manager);
        assert_eq!(permission_of(false, true, true), Manager);
        assert_eq!(permission_of(false, false, true), Editor);
        assert_eq!(permission_of(false, false, false), Viewer);
    }

    #[test]
    fn users_and_teams_map_to_entries() {
        let folder = serde_json::json!({
            "folder_uid": "F1", "type": "classic_folder", "name": "Databases",
            "manage_users": false, "manage_records": false,
            "records": [{"record_uid": "R1", "can_edit": true, "can_share": false}],
            "users": [
                {"username": "alice@contoso.example", "owner": true, "manage_records": true, "manage_users": true},
                {"username": "bob@contoso.example", "owner": false, "manage_records": false, "manage_users": true},
                {"username": "carol@contoso.example", "manage_records": true},
                {"username": "dave@contoso.example", "owner": false, "manage_records": false, "manage_users": false},
                {"username": "", "owner": true}
            ],
            "teams": [
                {"name": "DBA", "team_uid": "T1", "manage_records": true, "manage_users": false},
                {"name": "Auditors", "team_uid": "T2", "manage_records": false, "manage_users": false}
            ],
            "share_admins": ["root@contoso.example"]
        });
        let acl = acl_from_folder_json(&folder);
        let got: Vec<(VaultPrincipalType, &str, FolderPermission)> = acl
            .iter()
            .map(|e| (e.principal_type, e.principal.as_str(), e.permission))
            .collect();
        use FolderPermission::*;
        use VaultPrincipalType::*;
        assert_eq!(
            got,
            vec![
                (User, "alice@contoso.example", Owner),
                (User, "bob@contoso.example", Manager),
                (User, "carol@contoso.example", Editor),
                (User, "dave@contoso.example", Viewer),
                (Team, "DBA", Editor),
                (Team, "Auditors", Viewer),
            ]
        );
        assert!(acl_from_folder_json(&serde_json::json!({"name": "empty"})).is_empty());
    }

    /// Commander as the reader sees it: a fixed listing, counting the folder reads.
    struct Scripted {
        listings: std::sync::atomic::AtomicUsize,
    }

    #[async_trait]
    impl CommanderReads for Scripted {
        async fn listed_records(&self) -> Result<Vec<ListedRecord>, VaultError> {
            let r = |uid: &str, t: &str| ListedRecord {
                uid: uid.into(),
                record_type: "login".into(),
                title: t.into(),
            };
            Ok(vec![
                r("R1", "in two folders"),
                r("R2", "in one"),
                r("R3", "in none"),
            ])
        }

        async fn folder_listings(&self) -> Result<Vec<FolderListing>, VaultError> {
            self.listings
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let f = |uid: &str, records: &[&str]| FolderListing {
                folder: SharedFolder {
                    uid: uid.into(),
                    name: uid.into(),
                    acl: Some(vec![]),
                },
                record_uids: records.iter().map(|r| r.to_string()).collect(),
            };
            Ok(vec![f("Fb", &["R1", "R2"]), f("Fa", &["R1"])])
        }
    }

    /// #21.1: records from `list` get their folder from the shared folders' record lists (the
    /// smallest folder uid when several hold one), no revision, and one folder read per sync.
    #[tokio::test]
    async fn commander_alone_places_records_in_folders_without_inventing_revisions() {
        let commander = Arc::new(Scripted {
            listings: std::sync::atomic::AtomicUsize::new(0),
        });
        let reader = CommanderReader::new(commander.clone());
        let folders = reader.shared_folders().await.unwrap();
        assert_eq!(folders.len(), 2);
        assert!(folders.iter().all(|f| f.acl.is_some()));
        let records = reader.records().await.unwrap();
        let placed: Vec<(&str, Option<&str>, Option<i64>)> = records
            .iter()
            .map(|r| (r.uid.as_str(), r.folder_uid.as_deref(), r.revision))
            .collect();
        assert_eq!(
            placed,
            vec![
                ("R1", Some("Fa"), None),
                ("R2", Some("Fb"), None),
                ("R3", None, None)
            ]
        );
        assert_eq!(
            commander.listings.load(std::sync::atomic::Ordering::SeqCst),
            1,
            "records reuse the listing the folder read just made"
        );
        assert_eq!(reader.record("R2").await.unwrap().unwrap().title, "in one");
        assert!(reader.record("R9").await.unwrap().is_none());
    }
}
