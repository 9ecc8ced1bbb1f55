//! Shared-folder ACLs from Commander, and the reader that puts them together with KSM's metadata.
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
use std::sync::Arc;

/// Shared folders with their ACLs, from a source that can see them (Commander).
#[async_trait]
pub trait FolderAclSource: Send + Sync {
    /// Every shared folder the account sees, each with `acl: Some(..)`.
    async fn folder_acls(&self) -> Result<Vec<SharedFolder>, VaultError>;
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
}
