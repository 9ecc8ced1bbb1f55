//! Vault sync: bring the database's copy of the vault — folders, their ACLs, record metadata — in
//! line with what the vault says, and audit what changed. One pass does permission sync (folder
//! ACLs), discovery (vault records the database doesn't know: registered by uid, never matched by
//! title) and record sync (revision changes → CREDENTIAL_ROTATED; records gone → RECORD_ORPHANED,
//! but only after a direct read by uid also misses them, because KSM silently leaves out records it
//! fails to decrypt). Idempotent: a second run with nothing changed writes nothing.
//!
//! [`check_rotations`] is the Commander rotation check: PAM records whose scheduled rotation is
//! due get one `COMMANDER_ROTATION_DUE` event per due time.

use crate::domain::{DiscoverySource, Sensitivity, SyncStatus, Timestamp};
use crate::store::{NewAuditEvent, NewFolderPermission, NewRecord, Record, Store, StoreError};
use crate::vault::rotation::Due;
use crate::vault::{ErrorClass, RotationChecker, VaultError, VaultReader};
use serde::Serialize;
use serde_json::json;
use std::collections::{BTreeSet, HashMap};

#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// The vault's words, once: the error carries no `source`, so a printer that walks the
    /// chain (the CLI's) does not repeat them.
    #[error("vault: {}", .0.message)]
    Vault(VaultError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<VaultError> for SyncError {
    fn from(e: VaultError) -> SyncError {
        SyncError::Vault(e)
    }
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
                            // No revision from the vault (Commander): 0 until one is known.
                            revision: meta.revision.unwrap_or(0),
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
                // A backend without revisions (Commander) never proves a rotation: the stored
                // revision stays.
                let revision = meta.revision.unwrap_or(existing.revision);
                let rotated = existing.revision != revision;
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
                                revision,
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
                            json!({ "vault_uid": meta.uid, "revision_before": existing.revision, "revision_after": revision }),
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

// ---------------------------------------------------------------------------------------------
// The Commander rotation check.

/// The `job_claims` job under which each flagged (record, due time) is recorded, once.
pub const ROTATION_DUE_JOB: &str = "commander-rotation-due";

/// Record types Commander can rotate (`pam rotation set` accepts these); others are not asked.
pub const ROTATABLE_TYPES: [&str; 4] = ["pamUser", "pamMachine", "pamDatabase", "pamDirectory"];

/// A record Commander refused to describe (a Terminal answer); the check went on without it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RotationFailure {
    pub vault_uid: String,
    pub message: String,
}

/// What a rotation check found and did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RotationReport {
    /// Records asked about.
    pub checked: usize,
    /// Due now: `flagged` this run plus `already_flagged` earlier.
    pub due: usize,
    /// COMMANDER_ROTATION_DUE events written by this run.
    pub flagged: usize,
    pub already_flagged: usize,
    pub not_due: usize,
    /// No rotation, rotation off, manual, or the router cannot rotate it.
    pub not_scheduled: usize,
    /// A schedule Passkey does not interpret (CRON, monthly by weekday, yearly, other zones).
    pub unsupported: usize,
    pub failed: Vec<RotationFailure>,
}

impl RotationReport {
    pub fn render(&self) -> String {
        format!(
            "rotation check: {} records checked: {} due ({} newly flagged), {} not due, {} not scheduled, \
             {} unsupported schedules, {} failed",
            self.checked,
            self.due,
            self.flagged,
            self.not_due,
            self.not_scheduled,
            self.unsupported,
            self.failed.len()
        )
    }
}

/// How long a checker holds a (record, due time) while it writes the event; a checker that dies
/// in between lets the next run take it over after this.
const ROTATION_CLAIM_LEASE: time::Duration = time::Duration::minutes(10);

/// Asks the checker about every live PAM record the database knows and, for each whose
/// scheduled rotation is due (the schedule's latest run came after the last change Passkey saw
/// in the record — run it after a vault sync; see `vault::rotation`), appends one
/// `COMMANDER_ROTATION_DUE` event. Idempotent: each (record, due time) is flagged once, through a
/// completed `job_claims` row (`commander-rotation-due`, `<uid>@<due>`) — a second run, or a
/// second instance running at the same moment, writes nothing more. A record still overdue at
/// its schedule's next run is flagged again, for that run.
///
/// A Terminal answer for one record (access denied, say) is listed in `failed` and the check
/// goes on; any other failure (throttled, unreachable, login broken) stops it with the error,
/// and the next run picks up where the claims say.
pub async fn check_rotations(
    checker: &dyn RotationChecker,
    store: &dyn Store,
    now: Timestamp,
    actor: &str,
) -> Result<RotationReport, SyncError> {
    let mut report = RotationReport::default();
    if !checker.has_rotation_info() {
        return Ok(report);
    }
    let holder = format!("{actor}#{}", uuid::Uuid::new_v4().simple());
    let mut records: Vec<Record> = store
        .list_records()
        .await?
        .into_iter()
        .filter(|r| {
            r.sync_status != SyncStatus::Orphaned
                && ROTATABLE_TYPES.contains(&r.record_type.as_str())
        })
        .collect();
    records.sort_by(|a, b| a.vault_uid.cmp(&b.vault_uid));
    for record in &records {
        report.checked += 1;
        let info = match checker.rotation_info(&record.vault_uid).await {
            Ok(info) => info,
            Err(e) if e.class == ErrorClass::Terminal => {
                tracing::warn!(vault_uid = %record.vault_uid, raw = %e.raw, "rotation info refused");
                report.failed.push(RotationFailure {
                    vault_uid: record.vault_uid.clone(),
                    message: e.message,
                });
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        let due_at = match info.due(record.updated_at, now) {
            Due::Since(at) => at,
            Due::NotDue => {
                report.not_due += 1;
                continue;
            }
            Due::NotScheduled => {
                report.not_scheduled += 1;
                continue;
            }
            Due::Unsupported(why) => {
                tracing::info!(vault_uid = %record.vault_uid, why, "rotation schedule not interpreted");
                report.unsupported += 1;
                continue;
            }
        };
        report.due += 1;
        let key = format!("{}@{}", record.vault_uid, due_at.to_fixed_text());
        let claimed = store
            .try_claim(
                ROTATION_DUE_JOB,
                &key,
                &holder,
                now,
                now.plus(ROTATION_CLAIM_LEASE),
            )
            .await?;
        if !claimed {
            report.already_flagged += 1;
            continue;
        }
        store
            .append_audit(
                &NewAuditEvent::new(actor, "COMMANDER_ROTATION_DUE", now)
                    .record(record.id)
                    .detail(json!({
                        "vault_uid": record.vault_uid,
                        "title": record.title,
                        "due_at": due_at,
                        "last_change_seen": record.updated_at,
                        "schedule_type": info.schedule_type,
                        "schedule": info.schedule_data,
                        "rotation_status": info.status,
                    })),
            )
            .await?;
        store
            .complete_claim(ROTATION_DUE_JOB, &key, &holder, now)
            .await?;
        report.flagged += 1;
    }
    Ok(report)
}
