//! Vault sync on both databases: discovery, ACL sync, rotations, the double check before calling a
//! record gone, idempotence — and a 10,000-record vault.

mod common;

use async_trait::async_trait;
use common::{Db, t0};
use passkey::domain::*;
use passkey::governance::vault_sync::{SyncReport, sync_vault};
use passkey::vault::local::{VaultFile, demo_vault_file};
use passkey::vault::{FolderAclEntry, RecordMeta, SharedFolder, VaultError, VaultReader};
use std::sync::Mutex;

/// A vault whose contents the test changes between syncs. `hidden_from_bulk` records are left
/// out of the bulk read but still found by uid — what KSM does with a record it fails to decrypt.
struct FakeVault {
    file: Mutex<VaultFile>,
    hidden_from_bulk: Mutex<Vec<String>>,
    /// Like KSM: folders without their ACLs.
    acls_unknown: Mutex<bool>,
}

impl FakeVault {
    fn new(file: VaultFile) -> FakeVault {
        FakeVault {
            file: Mutex::new(file),
            hidden_from_bulk: Mutex::new(vec![]),
            acls_unknown: Mutex::new(false),
        }
    }
}

fn meta(r: &passkey::vault::local::FileRecord) -> RecordMeta {
    RecordMeta {
        uid: r.uid.clone(),
        title: r.title.clone(),
        record_type: r.record_type.clone(),
        folder_uid: r.folder_uid.clone(),
        revision: r.revision,
        owner: r.owner.clone(),
    }
}

#[async_trait]
impl VaultReader for FakeVault {
    async fn shared_folders(&self) -> Result<Vec<SharedFolder>, VaultError> {
        let file = self.file.lock().unwrap();
        Ok(file
            .folders
            .iter()
            .map(|f| SharedFolder {
                uid: f.uid.clone(),
                name: f.name.clone(),
                acl: (!*self.acls_unknown.lock().unwrap()).then(|| f.acl.clone()),
            })
            .collect())
    }
    async fn records(&self) -> Result<Vec<RecordMeta>, VaultError> {
        let hidden = self.hidden_from_bulk.lock().unwrap().clone();
        Ok(self
            .file
            .lock()
            .unwrap()
            .records
            .iter()
            .filter(|r| !hidden.contains(&r.uid))
            .map(meta)
            .collect())
    }
    async fn record(&self, uid: &str) -> Result<Option<RecordMeta>, VaultError> {
        Ok(self
            .file
            .lock()
            .unwrap()
            .records
            .iter()
            .find(|r| r.uid == uid)
            .map(meta))
    }
}

on_both_databases!(discovery_rotation_orphans_and_acls_then_nothing_twice);

async fn sync(vault: &FakeVault, db: &Db) -> SyncReport {
    sync_vault(
        vault,
        db.store.as_ref(),
        t0(),
        "system:vault-sync",
        &|_, _| {},
    )
    .await
    .unwrap()
}

async fn discovery_rotation_orphans_and_acls_then_nothing_twice(db: Db) {
    let s = db.store.as_ref();
    let vault = FakeVault::new(demo_vault_file());
    let first = sync(&vault, &db).await;
    assert_eq!(
        (
            first.folders,
            first.acl_changes,
            first.discovered,
            first.records_seen
        ),
        (4, 4, 12, 12),
        "{first:?}"
    );
    let records = s.list_records().await.unwrap();
    assert!(
        records
            .iter()
            .all(|r| r.discovery_source == DiscoverySource::Auto
                && r.sync_status == SyncStatus::Fresh)
    );
    let db_prod = records
        .iter()
        .find(|r| r.title == "db-prod")
        .unwrap()
        .clone();
    assert!(
        s.governed_resource_for_record(db_prod.id)
            .await
            .unwrap()
            .is_some(),
        "discovered records are governed"
    );

    // Nothing changed: nothing written, not even an audit event.
    let audit_before = s.audit_events_after(0, 10_000).await.unwrap().len();
    let second = sync(&vault, &db).await;
    assert_eq!(second.changes(), 0, "{second:?}");
    assert_eq!(
        s.audit_events_after(0, 10_000).await.unwrap().len(),
        audit_before
    );

    // A rotation, a decryption hiccup, a deletion and an ACL change.
    {
        let mut file = vault.file.lock().unwrap();
        file.records
            .iter_mut()
            .find(|r| r.title == "db-prod")
            .unwrap()
            .revision = 2;
        file.records.retain(|r| r.title != "smtp-relay");
        file.folders[0].acl.push(FolderAclEntry {
            principal_type: VaultPrincipalType::User,
            principal: "frank@contoso.example".into(),
            permission: FolderPermission::Viewer,
        });
    }
    vault
        .hidden_from_bulk
        .lock()
        .unwrap()
        .push("r3d1sPr0dAuthT0k3n0004".into());
    let third = sync(&vault, &db).await;
    assert_eq!(
        (
            third.rotated,
            third.orphaned,
            third.double_checked,
            third.acl_changes
        ),
        (1, 1, 1, 1),
        "{third:?}"
    );
    let redis = s
        .record_by_uid("r3d1sPr0dAuthT0k3n0004")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        redis.sync_status,
        SyncStatus::Fresh,
        "missing from the bulk read is not gone"
    );
    let smtp = s
        .records_by_title_prefix("smtp-relay", 1)
        .await
        .unwrap()
        .remove(0);
    assert_eq!(smtp.sync_status, SyncStatus::Orphaned);
    let actions: Vec<String> = s
        .audit_events_after(audit_before as i64, 100)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.action)
        .collect();
    for expected in [
        "VAULT_PERMISSIONS_CHANGED",
        "CREDENTIAL_ROTATED",
        "RECORD_ORPHANED",
        "VAULT_SYNC_DETECTED_CHANGES",
    ] {
        assert!(
            actions.iter().any(|a| a == expected),
            "{expected} in {actions:?}"
        );
    }
    assert_eq!(
        s.record_by_uid(&db_prod.vault_uid)
            .await
            .unwrap()
            .unwrap()
            .revision,
        2
    );

    // The record comes back: restored, not rediscovered.
    vault.file.lock().unwrap().records.extend(
        demo_vault_file()
            .records
            .into_iter()
            .filter(|r| r.title == "smtp-relay"),
    );
    let fourth = sync(&vault, &db).await;
    assert_eq!((fourth.restored, fourth.discovered), (1, 0), "{fourth:?}");
    assert_eq!(sync(&vault, &db).await.changes(), 0);

    // A reader that can't see ACLs (KSM) leaves the stored ones alone: unknown is not "nobody".
    let folder = s
        .list_folders()
        .await
        .unwrap()
        .into_iter()
        .find(|f| f.name == "Databases")
        .unwrap();
    let acl_before = s.folder_permissions(folder.id).await.unwrap().len();
    *vault.acls_unknown.lock().unwrap() = true;
    vault.file.lock().unwrap().folders[0].acl.clear();
    assert_eq!(sync(&vault, &db).await.acl_changes, 0);
    assert_eq!(
        s.folder_permissions(folder.id).await.unwrap().len(),
        acl_before
    );
}

#[tokio::test]
async fn a_ten_thousand_record_vault_syncs_with_progress() {
    let db = common::fresh_sqlite().await;
    let mut file = demo_vault_file();
    let template = file.records[0].clone();
    file.records = (0..10_000)
        .map(|i| {
            let mut r = template.clone();
            r.uid = format!("bulk{i:018}");
            r.title = format!("bulk-record-{i:05}");
            r
        })
        .collect();
    let vault = FakeVault::new(file);
    let progress = Mutex::new(vec![]);
    let report = sync_vault(
        &vault,
        db.store.as_ref(),
        t0(),
        "system:vault-sync",
        &|done, total| {
            progress.lock().unwrap().push((done, total));
        },
    )
    .await
    .unwrap();
    assert_eq!(report.discovered, 10_000);
    let progress = progress.into_inner().unwrap();
    assert_eq!(progress.len(), 10);
    assert_eq!(progress.last(), Some(&(10_000, 10_000)));
    let again = sync_vault(
        &vault,
        db.store.as_ref(),
        t0(),
        "system:vault-sync",
        &|_, _| {},
    )
    .await
    .unwrap();
    assert_eq!(again.changes(), 0);
}
