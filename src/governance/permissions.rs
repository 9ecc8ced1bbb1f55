//! Effective permissions: which vault folders a person may request from and approve for.
//!
//! Keeper shared folders are the ACL containers; records inherit their folder's ACL. An ACL entry
//! names a USER (an email), a GROUP (an Entra group id or display name) or a TEAM (a Keeper team,
//! matched to the Entra group of the same display name). OWNER and MANAGER may approve (and
//! request); EDITOR and VIEWER may request. Admins may request from every folder but approve only
//! where an ACL says so.
//!
//! Group memberships come from a [`GroupDirectory`] (Microsoft Graph in production). When the
//! directory cannot answer, resolution fails closed: the result carries no group-derived
//! permissions and says `degraded: true` — it never grants more than the person's own entries.
//!
//! Results are cached per user in `user_permission_cache` for five minutes (degraded ones for
//! thirty seconds, so a directory outage does not outlive itself by long). A vault permission sync
//! that changes an ACL, and a role change, drop cached results in the same transaction.

use crate::domain::{Clock, FolderPermission, Role, Timestamp, VaultPrincipalType};
use crate::store::{Store, StoreResult, User, VaultFolderPermission};
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

/// An Entra group a person belongs to (directly or through nested groups).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Group {
    pub id: String,
    pub display_name: String,
}

impl Group {
    pub fn new(id: impl Into<String>, display_name: impl Into<String>) -> Self {
        Group {
            id: id.into(),
            display_name: display_name.into(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DirectoryError {
    /// Throttled (429), failing (5xx), unreachable, or no token could be had: try again later.
    #[error("directory unavailable: {0}")]
    Unavailable(String),
    /// Any other refusal — typically 401/403 because the app lacks a Graph permission.
    #[error("directory refused the call (HTTP {status})")]
    Refused { status: u16 },
    /// The directory answered something we cannot read, or a page link pointing elsewhere.
    #[error("unexpected directory answer: {0}")]
    Malformed(String),
}

/// Where a person's group memberships come from.
#[async_trait]
pub trait GroupDirectory: Send + Sync {
    /// Every group the person is a member of, transitively. A person the directory does not know
    /// is in no groups.
    async fn groups_of(&self, aad_object_id: &str) -> Result<Vec<Group>, DirectoryError>;
}

/// Memberships from a fixed table: dev mode (where nobody has groups unless configured) and tests.
#[derive(Debug, Default, Clone)]
pub struct StaticGroupDirectory {
    members: HashMap<String, Vec<Group>>,
}

impl StaticGroupDirectory {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `group` to the person's memberships.
    pub fn with_member(mut self, aad_object_id: &str, group: Group) -> Self {
        self.members
            .entry(aad_object_id.to_ascii_lowercase())
            .or_default()
            .push(group);
        self
    }
}

#[async_trait]
impl GroupDirectory for StaticGroupDirectory {
    async fn groups_of(&self, aad_object_id: &str) -> Result<Vec<Group>, DirectoryError> {
        Ok(self
            .members
            .get(&aad_object_id.to_ascii_lowercase())
            .cloned()
            .unwrap_or_default())
    }
}

/// The Graph client answers group memberships too (one client, one token provider).
pub use crate::governance::directory::{GRAPH_SCOPE, GraphDirectory as GraphGroupDirectory};

/// What a person may do, by vault folder id. Stored as the cache body, so it is serde.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EffectivePermissions {
    /// Folders whose records the person may request, ascending.
    pub requestable_folders: Vec<i64>,
    /// Folders whose records the person may approve, ascending.
    pub approvable_folders: Vec<i64>,
    /// The strongest permission the person's ACL entries give on each folder (admins' see-all
    /// access is not an entry and does not appear here).
    pub folder_levels: BTreeMap<i64, FolderPermission>,
    /// The person's Entra group ids, ascending.
    pub groups: Vec<String>,
    pub resolved_at: Timestamp,
    /// The group directory could not answer: group-derived permissions are missing.
    pub degraded: bool,
}

impl EffectivePermissions {
    /// Matches the person against every folder's ACL. Pure: the resolver gathers the inputs.
    pub fn from_acls(
        user: &User,
        groups: &[Group],
        acls: &[(i64, Vec<VaultFolderPermission>)],
        degraded: bool,
        resolved_at: Timestamp,
    ) -> EffectivePermissions {
        let mut requestable = BTreeSet::new();
        let mut approvable = BTreeSet::new();
        let mut folder_levels: BTreeMap<i64, FolderPermission> = BTreeMap::new();
        for (folder_id, acl) in acls {
            if user.role == Role::Admin {
                requestable.insert(*folder_id);
            }
            for entry in acl.iter().filter(|e| names_person(e, user, groups)) {
                requestable.insert(*folder_id);
                // Permissions are declared strongest first, so the least is the strongest.
                let level = folder_levels.entry(*folder_id).or_insert(entry.permission);
                *level = (*level).min(entry.permission);
                if entry.permission.may_approve() {
                    approvable.insert(*folder_id);
                }
            }
        }
        let groups: BTreeSet<String> = groups.iter().map(|g| g.id.clone()).collect();
        EffectivePermissions {
            requestable_folders: requestable.into_iter().collect(),
            approvable_folders: approvable.into_iter().collect(),
            folder_levels,
            groups: groups.into_iter().collect(),
            resolved_at,
            degraded,
        }
    }

    pub fn may_request(&self, folder_id: i64) -> bool {
        self.requestable_folders.binary_search(&folder_id).is_ok()
    }

    pub fn may_approve(&self, folder_id: i64) -> bool {
        self.approvable_folders.binary_search(&folder_id).is_ok()
    }
}

/// Emails, group ids and names are compared case-insensitively: Keeper and Entra both treat
/// them that way.
fn names_person(entry: &VaultFolderPermission, user: &User, groups: &[Group]) -> bool {
    let principal = entry.principal.trim();
    match entry.principal_type {
        VaultPrincipalType::User => [user.email.as_deref(), user.upn.as_deref()]
            .into_iter()
            .flatten()
            .any(|name| name.eq_ignore_ascii_case(principal)),
        VaultPrincipalType::Group => groups.iter().any(|g| {
            g.id.eq_ignore_ascii_case(principal) || g.display_name.eq_ignore_ascii_case(principal)
        }),
        VaultPrincipalType::Team => groups
            .iter()
            .any(|g| g.display_name.eq_ignore_ascii_case(principal)),
    }
}

/// Resolves and caches [`EffectivePermissions`]. Reading permissions is not an event: nothing is
/// audited here.
pub struct PermissionResolver {
    store: Arc<dyn Store>,
    directory: Arc<dyn GroupDirectory>,
    clock: Arc<dyn Clock>,
}

impl PermissionResolver {
    pub const CACHE_TTL: time::Duration = time::Duration::minutes(5);
    pub const DEGRADED_CACHE_TTL: time::Duration = time::Duration::seconds(30);

    pub fn new(
        store: Arc<dyn Store>,
        directory: Arc<dyn GroupDirectory>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        PermissionResolver {
            store,
            directory,
            clock,
        }
    }

    /// The person's permissions: the cached ones while fresh, else resolved now and cached.
    pub async fn effective(&self, user: &User) -> StoreResult<EffectivePermissions> {
        let now = self.clock.now();
        if let Some(body) = self.store.cached_permissions(user.id, now).await? {
            // A body this build cannot read (an older shape) is simply resolved again.
            if let Ok(cached) = serde_json::from_value(body) {
                return Ok(cached);
            }
        }
        let (groups, degraded) = match self.directory.groups_of(&user.aad_object_id).await {
            Ok(groups) => (groups, false),
            Err(e) => {
                tracing::warn!(user_id = user.id, error = %e,
                    "group memberships unavailable; permissions resolved without them");
                (Vec::new(), true)
            }
        };
        let mut acls = Vec::new();
        for folder in self.store.list_folders().await? {
            acls.push((folder.id, self.store.folder_permissions(folder.id).await?));
        }
        let permissions = EffectivePermissions::from_acls(user, &groups, &acls, degraded, now);
        let ttl = if degraded {
            Self::DEGRADED_CACHE_TTL
        } else {
            Self::CACHE_TTL
        };
        match serde_json::to_value(&permissions) {
            Ok(body) => {
                // The answer stands even if it could not be cached; the next call resolves again.
                if let Err(e) = self
                    .store
                    .put_cached_permissions(user.id, &body, now, now.plus(ttl))
                    .await
                {
                    tracing::warn!(user_id = user.id, error = %e, "permissions not cached");
                }
            }
            Err(e) => tracing::warn!(error = %e, "permissions not serializable"),
        }
        Ok(permissions)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::FolderPermission;

    fn user(role: Role) -> User {
        let at = Timestamp::parse("2026-11-23T09:00:00Z").unwrap();
        User {
            id: 1,
            aad_object_id: "aad-1".into(),
            tenant_id: None,
            teams_user_id: None,
            upn: Some("Alice@Contoso.example".into()),
            email: Some("alice.mail@contoso.example".into()),
            display_name: "Alice".into(),
            role,
            allow_multiple_leases: false,
            created_at: at,
            updated_at: at,
            directory_checked_at: None,
            directory_check_failed: false,
        }
    }

    fn entry(t: VaultPrincipalType, p: &str, l: FolderPermission) -> VaultFolderPermission {
        VaultFolderPermission {
            id: 0,
            folder_id: 0,
            principal_type: t,
            principal: p.into(),
            permission: l,
            synced_at: Timestamp::parse("2026-11-23T09:00:00Z").unwrap(),
        }
    }

    #[test]
    fn users_groups_and_teams_match_and_only_owners_and_managers_approve() {
        use FolderPermission::*;
        use VaultPrincipalType as P;
        let acls = vec![
            (1, vec![entry(P::User, "alice@contoso.EXAMPLE", Viewer)]),
            (
                2,
                vec![entry(P::User, "ALICE.MAIL@contoso.example", Manager)],
            ),
            (3, vec![entry(P::Group, "0a0a0a0a-group-id", Editor)]),
            (4, vec![entry(P::Group, "DB Admins", Owner)]),
            (5, vec![entry(P::Team, "sre-oncall", Editor)]),
            (
                6,
                vec![entry(P::User, "someone-else@contoso.example", Owner)],
            ),
            // A team is matched by display name only, never by a group id.
            (7, vec![entry(P::Team, "0A0A0A0A-GROUP-ID", Owner)]),
        ];
        let groups = [
            Group::new("0A0A0A0A-GROUP-ID", "Engineering"),
            Group::new("1b1b", "db admins"),
            Group::new("2c2c", "SRE-Oncall"),
        ];
        let p = EffectivePermissions::from_acls(
            &user(Role::Requester),
            &groups,
            &acls,
            false,
            Timestamp::parse("2026-11-23T09:00:00Z").unwrap(),
        );
        assert_eq!(p.requestable_folders, [1, 2, 3, 4, 5]);
        assert_eq!(p.approvable_folders, [2, 4]);
        assert!(p.may_request(5) && !p.may_request(6) && !p.may_approve(3));
        assert_eq!(p.groups, ["0A0A0A0A-GROUP-ID", "1b1b", "2c2c"]);
    }

    #[test]
    fn admins_request_everywhere_but_approve_only_where_the_acl_says() {
        use FolderPermission::*;
        let acls = vec![
            (1, vec![entry(VaultPrincipalType::User, "x@y", Owner)]),
            (
                2,
                vec![entry(
                    VaultPrincipalType::User,
                    "alice@contoso.example",
                    Viewer,
                )],
            ),
            (3, vec![]),
        ];
        let p = EffectivePermissions::from_acls(
            &user(Role::Admin),
            &[],
            &acls,
            false,
            Timestamp::parse("2026-11-23T09:00:00Z").unwrap(),
        );
        assert_eq!(p.requestable_folders, [1, 2, 3]);
        assert!(p.approvable_folders.is_empty());
    }
}
