//! Vault sync on both databases: discovery, ACL sync, rotations, the double check before calling a
//! record gone, idempotence — and a 10,000-record vault. Then the Commander pieces against the
//! fake `keeper` (tests/fake-keeper/keeper): folder ACLs synced through `CommanderAclReader`, and
//! the rotation check (due, not due, failures, one event per due time).

use crate::common;

use async_trait::async_trait;
use common::{Db, t0};
use passkey::domain::*;
use passkey::governance::vault_sync::{
    ROTATION_DUE_JOB, RotationReport, SyncError, SyncReport, check_rotations, sync_vault,
};
use passkey::store::{NewRecord, Store};
use passkey::vault::local::{VaultFile, demo_vault_file};
use passkey::vault::{
    CommanderAclReader, CommanderCli, ErrorClass, FolderAclEntry, NoRotationInfo, RecordMeta,
    SharedFolder, VaultError, VaultReader,
};

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

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
        revision: Some(r.revision),
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

on_both_databases!(
    discovery_rotation_orphans_and_acls_then_nothing_twice,
    a_sensitivity_an_admin_set_survives_every_later_sync,
);

async fn sync(vault: &dyn VaultReader, db: &Db) -> SyncReport {
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

/// (#21.9) Discovery makes a record MEDIUM; an admin's level outlives every later sync — one
/// that changes nothing, one that rewrites the record's metadata (a rotation and a rename), and
/// one that read the record before the admin changed it and writes what it read.
async fn a_sensitivity_an_admin_set_survives_every_later_sync(db: Db) {
    use passkey::governance::admin::{Actor, GovernanceAdmin};
    let s = db.store.as_ref();
    let vault = FakeVault::new(demo_vault_file());
    sync(&vault, &db).await;
    let discovered = s.records_by_title_prefix("db-prod", 1).await.unwrap()[0].clone();
    assert_eq!(discovered.sensitivity, Sensitivity::Medium);
    let admin = GovernanceAdmin::new(db.store.clone(), Arc::new(ManualClock::new(t0())));
    admin
        .set_sensitivity(&Actor::Cli, "db-prod", "HIGH", "holds customer data")
        .await
        .unwrap();
    let level = || async {
        s.record_by_uid(&discovered.vault_uid)
            .await
            .unwrap()
            .unwrap()
            .sensitivity
    };

    sync(&vault, &db).await;
    assert_eq!(level().await, Sensitivity::High, "an idle sync");

    {
        let mut file = vault.file.lock().unwrap();
        let record = file
            .records
            .iter_mut()
            .find(|r| r.uid == discovered.vault_uid)
            .unwrap();
        record.revision += 1;
        record.title = "db-prod-primary".into();
    }
    let rotated = sync(&vault, &db).await;
    assert_eq!(rotated.rotated, 1, "{rotated:?}");
    let after = s
        .record_by_uid(&discovered.vault_uid)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (after.title.as_str(), after.sensitivity),
        ("db-prod-primary", Sensitivity::High),
        "a rotation and a rename keep the admin's level"
    );

    // A sync that listed the record while it was still MEDIUM writes its metadata back late.
    s.upsert_record(
        &NewRecord {
            vault_uid: discovered.vault_uid.clone(),
            title: discovered.title.clone(),
            record_type: discovered.record_type.clone(),
            folder_id: discovered.folder_id,
            revision: discovered.revision + 2,
            vault_owner: discovered.vault_owner.clone(),
            owner_user_id: discovered.owner_user_id,
            sensitivity: Sensitivity::Medium,
            discovery_source: discovered.discovery_source,
        },
        t0(),
    )
    .await
    .unwrap();
    assert_eq!(
        level().await,
        Sensitivity::High,
        "a late write of a stale read"
    );
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

// ---------------------------------------------------------------------------------------------
// Commander: folder ACLs and the rotation check, against the fake `keeper`.

/// A fake `keeper` in a temporary directory, answering reads as `sf` and `rotations` say (see
/// tests/fake-keeper/keeper), behind a `CommanderCli`.
struct FakeKeeper {
    dir: tempfile::TempDir,
}

impl FakeKeeper {
    fn new(sf: &str, rotations: &str) -> FakeKeeper {
        FakeKeeper {
            dir: common::fake_keeper_dir(&[
                ("FAKE_KEEPER_SF", sf),
                ("FAKE_KEEPER_ROTATION", rotations),
            ]),
        }
    }

    fn cli(&self) -> CommanderCli {
        CommanderCli::new(
            self.dir.path().join("keeper"),
            self.dir.path().join("keeper-config.json"),
            Duration::from_secs(20),
            Arc::new(ManualClock::new(t0())),
        )
    }

    /// Each call's command words.
    fn commands(&self) -> Vec<String> {
        std::fs::read_to_string(self.dir.path().join("calls.jsonl"))
            .unwrap_or_default()
            .lines()
            .map(|l| {
                let call: serde_json::Value = serde_json::from_str(l).unwrap();
                call["argv"].as_array().unwrap()[3..]
                    .iter()
                    .map(|a| a.as_str().unwrap())
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .collect()
    }
}

const SF_DATABASES: &str = "SfDatabases0000000001a";
const SF_WEB: &str = "SfWebServers000000002b";
const SF_KSM_ONLY: &str = "SfKsmOnly0000000000003";

/// What KSM sees: folders without ACLs (one Commander also lists, one it does not) and a record.
fn ksm_like() -> Arc<FakeVault> {
    let mut file = demo_vault_file();
    let record = file.records[0].clone();
    file.folders.truncate(2);
    file.folders[0].uid = SF_DATABASES.into();
    file.folders[0].name = "Databases".into();
    file.folders[1].uid = SF_KSM_ONLY.into();
    file.folders[1].name = "KSM only".into();
    file.records = vec![passkey::vault::local::FileRecord {
        folder_uid: Some(SF_DATABASES.into()),
        ..record
    }];
    let vault = FakeVault::new(file);
    *vault.acls_unknown.lock().unwrap() = true;
    Arc::new(vault)
}

async fn acl_of(s: &dyn Store, uid: &str) -> Vec<(String, String, String)> {
    let folder = s
        .list_folders()
        .await
        .unwrap()
        .into_iter()
        .find(|f| f.vault_uid == uid)
        .unwrap_or_else(|| panic!("folder {uid} stored"));
    let mut acl: Vec<(String, String, String)> = s
        .folder_permissions(folder.id)
        .await
        .unwrap()
        .into_iter()
        .map(|p| {
            (
                p.principal_type.to_string(),
                p.principal,
                p.permission.to_string(),
            )
        })
        .collect();
    acl.sort();
    acl
}

on_both_databases!(
    commander_acls_sync_into_the_store,
    rotation_check_flags_each_due_time_once
);

async fn commander_acls_sync_into_the_store(db: Db) {
    let s = db.store.as_ref();
    let keeper = FakeKeeper::new("ok", "{}");
    let reader = CommanderAclReader::new(ksm_like(), Arc::new(keeper.cli()));
    let report = sync(&reader, &db).await;
    assert_eq!(
        (report.folders, report.acl_changes, report.discovered),
        (3, 2, 1),
        "{report:?}"
    );
    let row = |t: &str, p: &str, l: &str| (t.to_string(), p.to_string(), l.to_string());
    assert_eq!(
        acl_of(s, SF_DATABASES).await,
        vec![
            row("TEAM", "Auditors", "VIEWER"),
            row("TEAM", "DBA", "EDITOR"),
            row("USER", "alice@contoso.example", "OWNER"),
            row("USER", "bob@contoso.example", "MANAGER"),
            row("USER", "carol@contoso.example", "EDITOR"),
            row("USER", "dave@contoso.example", "VIEWER"),
        ]
    );
    assert_eq!(
        acl_of(s, SF_WEB).await,
        vec![row("USER", "erin@contoso.example", "OWNER")],
        "a folder only Commander lists is synced with its ACL"
    );
    assert_eq!(
        acl_of(s, SF_KSM_ONLY).await,
        vec![],
        "a folder Commander does not list keeps an unknown ACL"
    );
    let events = s.audit_events_after(0, 1000).await.unwrap();
    assert_eq!(
        events
            .iter()
            .filter(|e| e.action == "VAULT_PERMISSIONS_CHANGED")
            .count(),
        2
    );
    assert!(
        keeper
            .commands()
            .iter()
            .all(|c| !c.starts_with("get ") || c.contains(SF_DATABASES) || c.contains(SF_WEB)),
        "get only on listed shared folders: {:?}",
        keeper.commands()
    );

    // Nothing changed: nothing written.
    assert_eq!(sync(&reader, &db).await.changes(), 0);

    // Commander failing is the sync's error, and the stored ACLs stay as they were.
    let before = s.audit_events_after(0, 1000).await.unwrap().len();
    for scenario in ["throttled", "login-broken", "get-denied"] {
        let failing = FakeKeeper::new(scenario, "{}");
        let reader = CommanderAclReader::new(ksm_like(), Arc::new(failing.cli()));
        let err = sync_vault(&reader, s, t0(), "system:vault-sync", &|_, _| {})
            .await
            .unwrap_err();
        assert!(matches!(err, SyncError::Vault(_)), "{scenario}: {err:?}");
        assert_eq!(acl_of(s, SF_DATABASES).await.len(), 6, "{scenario}");
    }
    assert_eq!(s.audit_events_after(0, 1000).await.unwrap().len(), before);
}

/// A PAM record (or not) the database knows, last changed at `t0()`.
async fn known_record(s: &dyn Store, uid: &str, title: &str, record_type: &str) -> i64 {
    s.upsert_record(
        &NewRecord {
            vault_uid: uid.into(),
            title: title.into(),
            record_type: record_type.into(),
            folder_id: None,
            revision: 1,
            vault_owner: None,
            owner_user_id: None,
            sensitivity: Sensitivity::High,
            discovery_source: DiscoverySource::Auto,
        },
        t0(),
    )
    .await
    .unwrap()
    .id
}

async fn rotation_events(s: &dyn Store) -> Vec<passkey::store::AuditEvent> {
    s.audit_events_after(0, 1000)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.action == "COMMANDER_ROTATION_DUE")
        .collect()
}

async fn rotation_check_flags_each_due_time_once(db: Db) {
    let s = db.store.as_ref();
    // t0 is Monday 2026-11-23 09:00 UTC; every record last changed then.
    let daily = known_record(s, "PamDaily00000000000001", "db-root", "pamUser").await;
    known_record(s, "PamWeekly0000000000002", "web-admin", "pamMachine").await;
    known_record(s, "PamManual0000000000003", "dir-svc", "pamDirectory").await;
    known_record(s, "PamDenied0000000000004", "db-audit", "pamDatabase").await;
    known_record(s, "Login00000000000000005", "wiki", "login").await;
    let rotations =
        r#"{"PamDaily00000000000001": "daily", "PamWeekly0000000000002": "weekly-legacy",
        "PamManual0000000000003": "manual", "PamDenied0000000000004": "denied",
        "Login00000000000000005": "daily"}"#
            .replace('\n', " ");
    let keeper = FakeKeeper::new("ok", &rotations);
    let cli = keeper.cli();
    let actor = "system:rotation-check";

    // Before the next 08:00 run nothing is due.
    let early = check_rotations(&cli, s, t0().plus(time::Duration::hours(1)), actor)
        .await
        .unwrap();
    assert_eq!(
        (early.checked, early.due, early.not_due),
        (4, 0, 2),
        "{early:?}"
    );
    assert!(rotation_events(s).await.is_empty());

    // A day later the daily run (Tuesday 08:00) has passed with no change seen: due. The weekly
    // run (Sunday 08:00) came before the last change: not due.
    let tuesday = Timestamp::parse("2026-11-24T09:00:00Z").unwrap();
    let report = check_rotations(&cli, s, tuesday, actor).await.unwrap();
    assert_eq!(
        (
            report.checked,
            report.due,
            report.flagged,
            report.not_due,
            report.not_scheduled,
            report.failed.len()
        ),
        (4, 1, 1, 1, 1, 1),
        "{report:?}"
    );
    assert_eq!(report.failed[0].vault_uid, "PamDenied0000000000004");
    assert!(
        !keeper
            .commands()
            .iter()
            .any(|c| c.contains("Login00000000000000005")),
        "only PAM records are asked about"
    );
    let events = rotation_events(s).await;
    assert_eq!(events.len(), 1);
    let event = &events[0];
    assert_eq!(
        (event.actor.as_str(), event.record_id),
        (actor, Some(daily))
    );
    let due_at = Timestamp::parse("2026-11-24T08:00:00Z").unwrap();
    assert_eq!(event.detail.0["vault_uid"], "PamDaily00000000000001");
    assert_eq!(event.detail.0["title"], "db-root");
    assert_eq!(
        event.detail.0["due_at"],
        serde_json::to_value(due_at).unwrap()
    );
    assert_eq!(event.detail.0["schedule_type"], "scheduled");

    // Again, later the same day: the same due time, already flagged — nothing written.
    for now in [tuesday, tuesday.plus(time::Duration::hours(5))] {
        let again = check_rotations(&cli, s, now, actor).await.unwrap();
        assert_eq!((again.due, again.flagged, again.already_flagged), (1, 0, 1));
    }
    assert_eq!(rotation_events(s).await.len(), 1);
    assert!(
        !s.try_claim(
            ROTATION_DUE_JOB,
            &format!("PamDaily00000000000001@{}", due_at.to_fixed_text()),
            "someone-else",
            tuesday,
            tuesday.plus(time::Duration::hours(1)),
        )
        .await
        .unwrap(),
        "the flag is a completed claim"
    );

    // Still not rotated at the next day's run: flagged again, for that run.
    let wednesday = tuesday.plus(time::Duration::days(1));
    let next = check_rotations(&cli, s, wednesday, actor).await.unwrap();
    assert_eq!(next.flagged, 1, "{next:?}");
    assert_eq!(rotation_events(s).await.len(), 2);

    // The vault shows a change after the run (a sync saw the new revision): not due any more.
    s.upsert_record(
        &NewRecord {
            vault_uid: "PamDaily00000000000001".into(),
            title: "db-root".into(),
            record_type: "pamUser".into(),
            folder_id: None,
            revision: 2,
            vault_owner: None,
            owner_user_id: None,
            sensitivity: Sensitivity::High,
            discovery_source: DiscoverySource::Auto,
        },
        wednesday,
    )
    .await
    .unwrap();
    let after = check_rotations(&cli, s, wednesday.plus(time::Duration::hours(1)), actor)
        .await
        .unwrap();
    assert_eq!((after.due, after.not_due), (0, 2), "{after:?}");

    // A transient failure stops the check with its error; nothing is written.
    let throttled = FakeKeeper::new("ok", r#"{"PamDaily00000000000001": "throttled"}"#);
    let err = check_rotations(&throttled.cli(), s, wednesday, actor)
        .await
        .unwrap_err();
    match err {
        SyncError::Vault(e) => assert_eq!(e.class, ErrorClass::Transient),
        other => panic!("{other:?}"),
    }
    assert_eq!(rotation_events(s).await.len(), 2);

    // The local vault has no rotation information: an empty report, nothing asked.
    let none = check_rotations(&NoRotationInfo, s, wednesday, actor)
        .await
        .unwrap();
    assert_eq!(none, RotationReport::default());
}

// ---------------------------------------------------------------------------------------------
// #21.1: a Commander-only deployment (no KSM) brings its records in. The real app is assembled
// from settings, and the scheduler's vault-sync job runs against the fake service
// (tests/it/common/fake_commander.rs) and the fake `keeper` CLI.

use common::fake_commander::{
    DB_FOLDER, DB_PROD, FakeCommander, FakeRecord, LOGIN_NAME, WEB_ADMIN, WEB_FOLDER, WIKI,
};

/// The app as a deployment would assemble it from `vault` settings (no `vault.ksm_config`).
async fn commander_app(db: &Db, dir: &Path, vault: &[(&str, &str)]) -> passkey::app::App {
    let settings = common::test_settings(dir, vault);
    assert!(settings.vault.ksm_config.is_none());
    passkey::app::App::with_store(settings, db.store.clone(), Arc::new(ManualClock::new(t0())))
        .await
        .unwrap()
}

async fn run_vault_sync(app: &passkey::app::App) -> serde_json::Value {
    let run = app
        .scheduler("test")
        .run(passkey::jobs::Job::VaultSync)
        .await;
    assert!(run.ok, "vault-sync failed: {:?}", run.error);
    run.counts
}

/// (vault uid, title, type, folder uid) of every live record.
async fn catalogue(s: &dyn Store) -> Vec<(String, String, String, Option<String>)> {
    let folders: std::collections::HashMap<i64, String> = s
        .list_folders()
        .await
        .unwrap()
        .into_iter()
        .map(|f| (f.id, f.vault_uid))
        .collect();
    let mut rows: Vec<_> = s
        .list_records()
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.sync_status != SyncStatus::Orphaned)
        .map(|r| {
            (
                r.vault_uid,
                r.title,
                r.record_type,
                r.folder_id.and_then(|id| folders.get(&id).cloned()),
            )
        })
        .collect();
    rows.sort();
    rows
}

/// Nothing Passkey wrote — records, audit events, job runs, logs — holds the login name that
/// Commander's `list` printed in `description`.
async fn assert_login_name_kept_nowhere(s: &dyn Store, logs: &common::logs::Logs) {
    let written = format!(
        "{:?} {:?} {:?}",
        s.list_records().await.unwrap(),
        s.audit_events_after(0, 10_000).await.unwrap(),
        s.last_job_runs().await.unwrap()
    );
    assert!(!written.contains(LOGIN_NAME), "the login name was stored");
    let logs = logs.text();
    assert!(
        logs.contains("listed records from Commander"),
        "the logs were captured"
    );
    assert!(!logs.contains(LOGIN_NAME), "the login name was logged");
}

fn row(
    uid: &str,
    title: &str,
    kind: &str,
    folder: Option<&str>,
) -> (String, String, String, Option<String>) {
    (
        uid.into(),
        title.into(),
        kind.into(),
        folder.map(str::to_string),
    )
}

async fn audit_count(s: &dyn Store, action: &str) -> usize {
    s.audit_events_after(0, 10_000)
        .await
        .unwrap()
        .iter()
        .filter(|e| e.action == action)
        .count()
}

on_both_databases!(
    commander_service_alone_syncs_records_folders_and_acls,
    commander_cli_alone_syncs_records_folders_and_acls
);

async fn commander_service_alone_syncs_records_folders_and_acls(db: Db) {
    let s = db.store.as_ref();
    let (logs, _guard) = common::logs::capture_raw();
    let commander = FakeCommander::start().await;
    let dir = tempfile::tempdir().unwrap();
    let app = commander_app(
        &db,
        dir.path(),
        &[
            ("PASSKEY_VAULT__BACKEND", "commander-service"),
            ("PASSKEY_VAULT__COMMANDER_URL", &commander.url),
            ("PASSKEY_VAULT__COMMANDER_API_KEY", &commander.api_key),
        ],
    )
    .await;

    let counts = run_vault_sync(&app).await;
    assert_eq!(
        (
            &counts["folders"],
            &counts["discovered"],
            &counts["acl_changes"]
        ),
        (
            &serde_json::json!(2),
            &serde_json::json!(3),
            &serde_json::json!(2)
        ),
        "{counts}"
    );
    assert_eq!(
        catalogue(s).await,
        vec![
            row(WIKI, "Team wiki", "login", None),
            row(WEB_ADMIN, "web-admin", "pamMachine", Some(WEB_FOLDER)),
            row(DB_PROD, "db-prod", "databaseCredentials", Some(DB_FOLDER)),
        ]
        .into_iter()
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect::<Vec<_>>()
    );
    let r = |t: &str, p: &str, l: &str| (t.to_string(), p.to_string(), l.to_string());
    assert_eq!(
        acl_of(s, DB_FOLDER).await,
        vec![
            r("TEAM", "DBA", "EDITOR"),
            r("USER", "alice@contoso.example", "OWNER"),
            r("USER", "bob@contoso.example", "MANAGER"),
            r("USER", "carol@contoso.example", "VIEWER"),
        ]
    );
    assert_eq!(
        acl_of(s, WEB_FOLDER).await,
        vec![r("USER", "erin@contoso.example", "OWNER")]
    );
    assert!(
        commander
            .commands()
            .contains(&"list --format json --verbose".to_string()),
        "{:?}",
        commander.commands()
    );
    assert!(
        commander.got_non_folders().is_empty(),
        "get is only ever pointed at shared folders"
    );

    // Nothing changed: nothing written, and no rotation is invented without a revision.
    let again = run_vault_sync(&app).await;
    for key in [
        "discovered",
        "rotated",
        "updated",
        "orphaned",
        "acl_changes",
    ] {
        assert_eq!(again[key], 0, "{key}: {again}");
    }

    // A renamed record is updated (not rotated); a record gone from `list` is orphaned once the
    // second look misses it too.
    commander.set_records(vec![
        FakeRecord::new(
            DB_PROD,
            "databaseCredentials",
            "db-prod-eu",
            "svc-pg-admin-7731",
        ),
        FakeRecord::new(WEB_ADMIN, "pamMachine", "web-admin", "root"),
    ]);
    let third = run_vault_sync(&app).await;
    assert_eq!(
        (&third["updated"], &third["rotated"], &third["orphaned"]),
        (
            &serde_json::json!(1),
            &serde_json::json!(0),
            &serde_json::json!(1)
        ),
        "{third}"
    );
    assert_eq!(audit_count(s, "CREDENTIAL_ROTATED").await, 0);
    assert_eq!(audit_count(s, "RECORD_ORPHANED").await, 1);
    assert_login_name_kept_nowhere(s, &logs).await;
}

async fn commander_cli_alone_syncs_records_folders_and_acls(db: Db) {
    let s = db.store.as_ref();
    let (logs, _guard) = common::logs::capture_raw();
    let keeper = FakeKeeper::new("ok", "{}");
    let binary = keeper.dir.path().join("keeper");
    let config = keeper.dir.path().join("keeper-config.json");
    let app = commander_app(
        &db,
        keeper.dir.path(),
        &[
            ("PASSKEY_VAULT__BACKEND", "commander-cli"),
            ("PASSKEY_VAULT__COMMANDER_BINARY", binary.to_str().unwrap()),
            (
                "PASSKEY_VAULT__COMMANDER_CONFIG_PATH",
                config.to_str().unwrap(),
            ),
        ],
    )
    .await;

    let counts = run_vault_sync(&app).await;
    assert_eq!(counts["discovered"], 3, "{counts}");
    // PAM records come in (`--verbose`), whole titles too; application and file records do not.
    // `web-admin` sits in both shared folders: the smaller folder uid governs it.
    let mut want = vec![
        row(
            "dbPr0dPostgres00000001",
            "db-prod",
            "databaseCredentials",
            Some(SF_DATABASES),
        ),
        row(
            "WebAdmin00000000000002",
            "web-admin",
            "pamMachine",
            Some(SF_DATABASES),
        ),
        row(
            "Wiki000000000000000003",
            "Team wiki with a title longer than forty characters, whole",
            "login",
            None,
        ),
    ];
    want.sort();
    assert_eq!(catalogue(s).await, want);
    assert_eq!(acl_of(s, SF_DATABASES).await.len(), 6);
    assert_eq!(
        acl_of(s, SF_WEB).await,
        vec![(
            "USER".to_string(),
            "erin@contoso.example".to_string(),
            "OWNER".to_string()
        )]
    );
    let commands = keeper.commands();
    assert!(
        commands.contains(&"list --format json --verbose".to_string()),
        "{commands:?}"
    );
    assert!(
        commands
            .iter()
            .filter(|c| c.starts_with("get "))
            .all(|c| c.contains(SF_DATABASES) || c.contains(SF_WEB)),
        "get only on shared folders: {commands:?}"
    );

    let again = run_vault_sync(&app).await;
    for key in [
        "discovered",
        "rotated",
        "updated",
        "orphaned",
        "acl_changes",
    ] {
        assert_eq!(again[key], 0, "{key}: {again}");
    }
    assert_login_name_kept_nowhere(s, &logs).await;
}

/// #21.1: a vault setting that cannot work stops start-up as a vault problem, named — not as a
/// database failure.
#[tokio::test]
async fn a_vault_setting_that_cannot_work_stops_start_up_as_itself() {
    let dir = tempfile::tempdir().unwrap();
    let settings =
        common::test_settings(dir.path(), &[("PASSKEY_VAULT__BACKEND", "commander-cli")]);
    let Err(err) = passkey::app::App::build(settings).await else {
        panic!("a Commander CLI backend without its config path must not start");
    };
    assert!(matches!(err, passkey::app::StartError::Vault(_)), "{err:?}");
    let text = err.to_string();
    assert!(
        text.contains("vault.commander_config_path")
            && text.contains("PASSKEY_VAULT__COMMANDER_CONFIG_PATH")
            && !text.contains("database"),
        "{text}"
    );
}

/// #21.1: `passkey doctor` checks the record listing with Commander
/// alone — passing, and saying where records come from — and names the flag when service mode
/// does not allow `list`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_checks_commanders_record_listing_without_ksm() {
    let commander = FakeCommander::start().await;
    let dir = tempfile::tempdir().unwrap();
    let settings = common::test_settings(
        dir.path(),
        &[
            ("PASSKEY_VAULT__BACKEND", "commander-service"),
            ("PASSKEY_VAULT__COMMANDER_URL", &commander.url),
            ("PASSKEY_VAULT__COMMANDER_API_KEY", &commander.api_key),
        ],
    );
    let records_check = |report: &passkey::doctor::Report| {
        report
            .checks
            .iter()
            .find(|c| c.name == "vault records")
            .cloned()
            .expect("a vault records check")
    };
    let report = passkey::doctor::run(&settings).await;
    let check = records_check(&report);
    assert!(check.ok, "{check:?}");
    assert!(
        check.detail.contains("Commander's `list`") && check.detail.contains("3 records"),
        "{check:?}"
    );
    let backend = report
        .checks
        .iter()
        .find(|c| c.name == "vault backend")
        .unwrap();
    assert!(backend.ok, "{backend:?}");
    assert!(!report.render().contains(LOGIN_NAME));

    commander.forbid("list");
    let check = records_check(&passkey::doctor::run(&settings).await);
    assert!(!check.ok, "{check:?}");
    assert!(check.detail.contains("service-create -c"), "{check:?}");
}

/// #21.1: service mode created without `list` is a configuration fault: the vault-sync run fails
/// (recorded for `admin health`) naming the `service-create -c` flag, and no record is stored.
#[tokio::test]
async fn a_service_without_list_fails_the_sync_naming_the_flag() {
    let db = common::fresh_sqlite().await;
    let db = Db {
        store: db.store.clone(),
        raw: db.store.clone(),
        engine: "sqlite",
    };
    let commander = FakeCommander::start().await;
    commander.forbid("list");
    let dir = tempfile::tempdir().unwrap();
    let app = commander_app(
        &db,
        dir.path(),
        &[
            ("PASSKEY_VAULT__BACKEND", "commander-service"),
            ("PASSKEY_VAULT__COMMANDER_URL", &commander.url),
            ("PASSKEY_VAULT__COMMANDER_API_KEY", &commander.api_key),
        ],
    )
    .await;
    let run = app
        .scheduler("test")
        .run(passkey::jobs::Job::VaultSync)
        .await;
    assert!(!run.ok);
    let error = run.error.unwrap_or_default();
    assert!(
        error.contains("`list`")
            && error.contains("service-create -c \"one-time-share,get,list-sf,list,pam\""),
        "{error}"
    );
    assert!(db.store.list_records().await.unwrap().is_empty());
    let recorded = db.store.last_job_runs().await.unwrap();
    assert!(
        recorded.iter().any(|r| r.job_name == "vault-sync"
            && !r.ok
            && r.error.as_deref() == Some(error.as_str())),
        "{recorded:?}"
    );
}
