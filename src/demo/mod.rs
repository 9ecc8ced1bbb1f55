//! The demo data set `cargo run` loads into an empty dev database: five people (each role), four
//! vault folders with ACLs, twelve records from harmless to break-glass, their governed-resource
//! links and authority rows — enough for every bot command to have something to show.
//! The same record uids are what the local dev vault serves.

pub mod data;

use crate::domain::{AuthorityKind, DiscoverySource, PrincipalType, Timestamp};
use crate::governance::directory::{DirectoryUser, StaticDirectory};
use crate::store::{
    NewAuditEvent, NewAuthority, NewFolderPermission, NewRecord, NewUser, Store, StoreError,
};
use std::collections::HashMap;

pub use data::{DATASET_JSON, Dataset, DemoFolder, DemoRecord, DemoUser, dataset};

/// The demo people, as the directory behind EMAIL approvers in dev (no groups: the demo ACLs'
/// teams have no members here). Defined here, not in `governance/`: demo data is built from the
/// layers below it, never read by them.
impl StaticDirectory {
    pub fn demo() -> Self {
        dataset().users.iter().fold(Self::new(), |d, u| {
            d.with_user(DirectoryUser::new(
                &u.aad_object_id,
                &u.display_name,
                &u.email,
            ))
        })
    }
}

/// What [`load_if_empty`] did.
#[derive(Debug, PartialEq, Eq)]
pub enum DemoOutcome {
    Loaded { users: usize, records: usize },
    SkippedNotEmpty,
}

/// Loads the demo data set unless the database already has users.
pub async fn load_if_empty(store: &dyn Store, at: Timestamp) -> Result<DemoOutcome, StoreError> {
    if store.count_users().await? > 0 {
        return Ok(DemoOutcome::SkippedNotEmpty);
    }
    let data = dataset();
    let mut users = HashMap::new();
    for u in &data.users {
        let user = store
            .upsert_user(
                &NewUser {
                    aad_object_id: u.aad_object_id.clone(),
                    tenant_id: Some(data.tenant_id.clone()),
                    teams_user_id: None,
                    upn: Some(u.email.clone()),
                    email: Some(u.email.clone()),
                    display_name: u.display_name.clone(),
                    initial_role: u.role,
                },
                at,
            )
            .await?;
        users.insert(u.key.clone(), user);
    }
    let mut folders = HashMap::new();
    for f in &data.folders {
        let folder = store.upsert_folder(&f.vault_uid, &f.name, at).await?;
        let acl: Vec<NewFolderPermission> = f
            .acl
            .iter()
            .map(
                |(principal_type, principal, permission)| NewFolderPermission {
                    principal_type: *principal_type,
                    principal: principal.clone(),
                    permission: *permission,
                },
            )
            .collect();
        store
            .replace_folder_permissions(folder.id, &acl, at)
            .await?;
        folders.insert(f.key.clone(), folder);
    }
    for r in &data.records {
        let owner = users
            .get(&r.owner)
            .ok_or(StoreError::NotFound("demo owner"))?;
        let folder = folders
            .get(&r.folder)
            .ok_or(StoreError::NotFound("demo folder"))?;
        let record = store
            .upsert_record(
                &NewRecord {
                    vault_uid: r.vault_uid.clone(),
                    title: r.title.clone(),
                    record_type: r.record_type.clone(),
                    folder_id: Some(folder.id),
                    revision: 1,
                    vault_owner: Some(owner.email.clone().unwrap_or_default()),
                    owner_user_id: Some(owner.id),
                    sensitivity: r.sensitivity,
                    discovery_source: DiscoverySource::Manual,
                },
                at,
            )
            .await?;
        let resource = store
            .upsert_governed_resource(
                record.id,
                "system.visibility.vault-access",
                "system.access.default",
                "system.lease.default",
                at,
            )
            .await?;
        let mut authorities = vec![(
            AuthorityKind::Owner,
            PrincipalType::User,
            owner.aad_object_id.clone(),
        )];
        for (principal_type, principal) in &r.approvers {
            let principal = match principal_type {
                PrincipalType::User => users
                    .get(principal)
                    .ok_or(StoreError::NotFound("demo approver"))?
                    .aad_object_id
                    .clone(),
                _ => principal.clone(),
            };
            authorities.push((AuthorityKind::Approver, *principal_type, principal));
        }
        for (authority, principal_type, principal) in authorities {
            let audit = NewAuditEvent::new("system:demo", "AUTHORITY_GRANTED", at)
                .record(record.id)
                .detail(serde_json::json!({
                    "authority": authority, "principal_type": principal_type, "principal": principal,
                }));
            store
                .add_authority(
                    &NewAuthority {
                        resource_id: resource.id,
                        authority,
                        principal_type,
                        principal,
                        stage: 1,
                        valid_from: at,
                        valid_to: None,
                        created_by: "system:demo".into(),
                    },
                    &audit,
                )
                .await?;
        }
    }
    store
        .append_audit(&NewAuditEvent::new("system:demo", "DEMO_DATA_LOADED", at).detail(serde_json::json!({
            "users": data.users.len(), "folders": data.folders.len(), "records": data.records.len(),
        })))
        .await?;
    Ok(DemoOutcome::Loaded {
        users: data.users.len(),
        records: data.records.len(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Role, Sensitivity};

    #[test]
    fn the_dataset_covers_every_role_and_sensitivity_and_references_resolve() {
        let d = dataset();
        for role in Role::ALL {
            assert!(
                d.users.iter().any(|u| u.role == *role),
                "no demo user is {role}"
            );
        }
        for s in Sensitivity::ALL {
            assert!(
                d.records.iter().any(|r| r.sensitivity == *s),
                "no demo record is {s}"
            );
        }
        assert_eq!(d.records.len(), 12);
        let keys: Vec<&str> = d.users.iter().map(|u| u.key.as_str()).collect();
        let folders: Vec<&str> = d.folders.iter().map(|f| f.key.as_str()).collect();
        for r in &d.records {
            assert!(keys.contains(&r.owner.as_str()), "{} owner", r.title);
            assert!(folders.contains(&r.folder.as_str()), "{} folder", r.title);
            assert_eq!(
                r.vault_uid.len(),
                22,
                "Keeper uids are 22 base64url characters: {}",
                r.title
            );
            for (t, p) in &r.approvers {
                if *t == PrincipalType::User {
                    assert!(keys.contains(&p.as_str()), "{} approver {p}", r.title);
                }
            }
        }
    }
}
