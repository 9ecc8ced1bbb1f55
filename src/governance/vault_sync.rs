//! Vault sync: bring the database's copy of the vault — folders, their ACLs, record metadata — in
//! line with what the vault says, and audit what changed. One pass does permission sync (folder
//! ACLs), discovery (vault records the database doesn't know: registered by uid, never matched by
//! title) and record sync (revision changes → CREDENTIAL_ROTATED; records gone → RECORD_ORPHANED,
//! but only after a direct read by uid also misses them, because KSM silently leaves out records it
//! fails to decrypt). Idempotent: a second run with nothing changed writes nothing.

use crate::domain::{DiscoverySource, Sensitivity, SyncStatus, Timestamp};
use crate::store::{NewAuditEvent, NewFolderPermission, NewRecord, Record, Store, StoreError};
use crate::vault::{VaultError, VaultReader};
use serde::Serialize;
use serde_json::json;
use std::collections::{BTreeSet, HashMap};

#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error("vault: {0}")]
    Vault(#[from] VaultError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What a sync found and did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SyncReport {
    pub folders: usize,
    pub acl_changes: usize,
    pub records_seen: usize,
    pub discovered: usize,
    pub rotated: usize,
    pub updated: usize,
    pub orphaned: usize,
    pub restored: usize,
    /// Missing from the bulk read but found by uid: left alone.
    pub double_checked: usize,
}

impl SyncReport {
    pub fn changes(&self) -> usize {
        self.acl_changes
            + self.discovered
            + self.rotated
            + self.updated
            + self.orphaned
            + self.restored
    }

    pub fn render(&self) -> String {
        format!(
            "vault sync: {} folders ({} ACL changes), {} records seen: {} discovered, {} rotated, {} updated, \
             {} orphaned, {} restored, {} double-checked",
            self.folders,
            self.acl_changes,
            self.records_seen,
            self.discovered,
            self.rotated,
            self.updated,
            self.orphaned,
            self.restored,
            self.double_checked
        )
    }
}

/// Policies a newly discovered record is governed by until an admin says otherwise.
const DEFAULT_POLICIES: (&str, &str, &str) = (
    "system.visibility.vault-access",
    "system.access.default",
    "system.lease.default",
);

/// Runs one sync. `progress(done, total)` is called as records are processed.
pub async fn sync_vault(
    reader: &dyn VaultReader,
    store: &dyn Store,
    now: Timestamp,
    actor: &str,
    progress: &(dyn Fn(usize, usize) + Send + Sync),
) -> Result<SyncReport, SyncError> {
    let mut report = SyncReport::default();

    // Folders and their ACLs.
    let mut folder_ids: HashMap<String, i64> = HashMap::new();
    for folder in reader.shared_folders().await? {
        let row = store.upsert_folder(&folder.uid, &folder.name, now).await?;
        folder_ids.insert(folder.uid.clone(), row.id);
        report.folders += 1;
        let Some(folder_acl) = &folder.acl else {
            continue;
        };
        let current: BTreeSet<(String, String, String)> = store
            .folder_permissions(row.id)
            .await?
            .into_iter()
            .map(|p| {
                (
                    p.principal_type.to_string(),
                    p.principal.to_ascii_lowercase(),
                    p.permission.to_string(),
                )
            })
            .collect();
        let wanted: BTreeSet<(String, String, String)> = folder_acl
            .iter()
            .map(|a| {
                (
                    a.principal_type.to_string(),
                    a.principal.to_ascii_lowercase(),
                    a.permission.to_string(),
                )
            })
            .collect();
        if current != wanted {
            let acl: Vec<NewFolderPermission> = folder_acl
                .iter()
                .map(|a| NewFolderPermission {
                    principal_type: a.principal_type,
                    principal: a.principal.clone(),
                    permission: a.permission,
                })
                .collect();
            store.replace_folder_permissions(row.id, &acl, now).await?;
            store
                .append_audit(&NewAuditEvent::new(actor, "VAULT_PERMISSIONS_CHANGED", now).detail(json!({
                    "folder_uid": folder.uid, "entries_before": current.len(), "entries_after": wanted.len(),
                })))
                .await?;
            report.acl_changes += 1;
        }
    }

    // Records.
    let vault_records = reader.records().await?;
    let known: HashMap<String, Record> = store
        .list_records()
        .await?
        .into_iter()
        .map(|r| (r.vault_uid.clone(), r))
        .collect();
    let total = vault_records.len();
    report.records_seen = total;
    let mut seen = BTreeSet::new();
    for (i, meta) in vault_records.iter().enumerate() {
        seen.insert(meta.uid.clone());
        let folder_id = meta
            .folder_uid
            .as_ref()
            .and_then(|f| folder_ids.get(f))
            .copied();
        match known.get(&meta.uid) {
            None => {
                let record = store
                    .upsert_record(
                        &NewRecord {
                            vault_uid: meta.uid.clone(),
                            title: meta.title.clone(),
                            record_type: meta.record_type.clone(),
                            folder_id,
                            revision: meta.revision,
                            vault_owner: meta.owner.clone(),
                            owner_user_id: None,
                            sensitivity: Sensitivity::Medium,
                            discovery_source: DiscoverySource::Auto,
                        },
                        now,
                    )
                    .await?;
                let (visibility, access, lease) = DEFAULT_POLICIES;
                store
                    .upsert_governed_resource(record.id, visibility, access, lease, now)
                    .await?;
                store
                    .append_audit(
                        &NewAuditEvent::new(actor, "RECORD_AUTO_DISCOVERED", now)
                            .record(record.id)
                            .detail(json!({ "vault_uid": meta.uid, "title": meta.title, "revision": meta.revision })),
                    )
                    .await?;
                report.discovered += 1;
            }
            Some(existing) => {
                let rotated = existing.revision != meta.revision;
                let restored = matches!(
                    existing.sync_status,
                    SyncStatus::Orphaned | SyncStatus::Stale
                );
                let changed = rotated
                    || restored
                    || existing.title != meta.title
                    || existing.record_type != meta.record_type
                    || existing.folder_id != folder_id
                    || existing.vault_owner != meta.owner;
                if changed {
                    store
                        .upsert_record(
                            &NewRecord {
                                vault_uid: meta.uid.clone(),
                                title: meta.title.clone(),
                                record_type: meta.record_type.clone(),
                                folder_id,
                                revision: meta.revision,
                                vault_owner: meta.owner.clone(),
                                owner_user_id: existing.owner_user_id,
                                sensitivity: existing.sensitivity,
                                discovery_source: existing.discovery_source,
                            },
                            now,
                        )
                        .await?;
                }
                if rotated {
                    store
                        .append_audit(&NewAuditEvent::new(actor, "CREDENTIAL_ROTATED", now).record(existing.id).detail(
                            json!({ "vault_uid": meta.uid, "revision_before": existing.revision, "revision_after": meta.revision }),
                        ))
                        .await?;
                    report.rotated += 1;
                } else if restored {
                    report.restored += 1;
                } else if changed {
                    report.updated += 1;
                }
            }
        }
        if (i + 1) % 1000 == 0 || i + 1 == total {
            progress(i + 1, total);
        }
    }

    // Records the bulk read left out: gone only if a direct read by uid misses them too.
    for (uid, record) in &known {
        if seen.contains(uid) || record.sync_status == SyncStatus::Orphaned {
            continue;
        }
        if reader.record(uid).await?.is_some() {
            report.double_checked += 1;
            continue;
        }
        store
            .set_record_sync_status(record.id, SyncStatus::Orphaned, now)
            .await?;
        store
            .append_audit(
                &NewAuditEvent::new(actor, "RECORD_ORPHANED", now)
                    .record(record.id)
                    .detail(json!({ "vault_uid": uid, "title": record.title })),
            )
            .await?;
        report.orphaned += 1;
    }

    if report.changes() > 0 {
        store
            .append_audit(
                &NewAuditEvent::new(actor, "VAULT_SYNC_DETECTED_CHANGES", now)
                    .detail(serde_json::to_value(&report).unwrap_or_default()),
            )
            .await?;
    }
    Ok(report)
}
