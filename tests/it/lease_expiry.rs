//! The scheduler's lease expiry on both databases: two scheduler instances over 1,000 due leases
//! expire each lease and remove each share exactly once (INV-7), with one audit event, one trace
//! and one notice per lease, and a chain that verifies; a removal that fails is retried by the
//! next run.

use crate::common;

use async_trait::async_trait;
use common::{Db, t0};
use passkey::config::LifecycleSettings;
use passkey::domain::*;
use passkey::governance::lifecycle::{Lifecycle, Notice, NoticeKind, Notifier};
use passkey::governance::permissions::{PermissionResolver, StaticGroupDirectory};
use passkey::governance::policies;
use passkey::jobs::Scheduler;
use passkey::store::*;
use passkey::vault::{
    ErrorClass, NoRotationInfo, OneTimeSharer, RecordMeta, Removed, Share, ShareInfo, SharedFolder,
    VaultError, VaultReader,
};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

on_both_databases!(
    two_schedulers_expire_each_lease_once,
    a_failed_removal_is_retried,
    a_share_that_cannot_be_removed_alerts_admins_once,
    not_found_from_a_vault_that_cannot_know_is_not_revoked
);

/// Shares in a set; removals counted per share id; ids in `failing` fail (transiently) once.
#[derive(Default)]
struct FakeSharer {
    live: Mutex<HashSet<String>>,
    removals: Mutex<HashMap<String, u32>>,
    failing: Mutex<HashSet<String>>,
    /// Ids that fail every time (Commander refuses them).
    stuck: Mutex<HashSet<String>>,
    /// Knows only its own process's shares (like the staging stub): its "not found" proves nothing.
    forgetful: std::sync::atomic::AtomicBool,
}

#[async_trait]
impl OneTimeSharer for FakeSharer {
    async fn create(&self, _: &str, _: time::Duration, _: &str) -> Result<Share, VaultError> {
        unreachable!("no retrievals here")
    }

    async fn remove(&self, _: &str, share_id: &str) -> Result<Removed, VaultError> {
        if self.failing.lock().unwrap().remove(share_id) {
            return Err(VaultError::new(ErrorClass::Transient, "busy", "throttled"));
        }
        if self.stuck.lock().unwrap().contains(share_id) {
            return Err(VaultError::new(
                ErrorClass::Terminal,
                "invalid share name",
                format!("refused share name or id {share_id:?} before calling Commander"),
            ));
        }
        *self
            .removals
            .lock()
            .unwrap()
            .entry(share_id.to_string())
            .or_default() += 1;
        Ok(if self.live.lock().unwrap().remove(share_id) {
            Removed::Removed
        } else {
            Removed::NotFound
        })
    }

    async fn list(&self, _: &str) -> Result<Vec<ShareInfo>, VaultError> {
        Ok(vec![])
    }

    fn knows_every_share(&self) -> bool {
        !self.forgetful.load(std::sync::atomic::Ordering::SeqCst)
    }
}

struct NoVault;

#[async_trait]
impl VaultReader for NoVault {
    async fn shared_folders(&self) -> Result<Vec<SharedFolder>, VaultError> {
        Ok(vec![])
    }
    async fn records(&self) -> Result<Vec<RecordMeta>, VaultError> {
        Ok(vec![])
    }
    async fn record(&self, _: &str) -> Result<Option<RecordMeta>, VaultError> {
        Ok(None)
    }
}

/// Notices per request, and every admin alert.
#[derive(Default)]
struct Notices(Mutex<HashMap<i64, u32>>, Mutex<Vec<String>>);

#[async_trait]
impl Notifier for Notices {
    async fn deliver(&self, notices: &[Notice]) {
        let mut seen = self.0.lock().unwrap();
        for n in notices {
            assert_eq!(n.kind, NoticeKind::StatusChanged);
            *seen.entry(n.request_id).or_default() += 1;
        }
    }

    async fn alert_admins(&self, text: &str) {
        self.1.lock().unwrap().push(text.to_string());
    }
}

struct Rig {
    sharer: Arc<FakeSharer>,
    notices: Arc<Notices>,
    schedulers: Vec<Arc<Scheduler>>,
}

/// `n` ISSUED leases that ended at t0 − 1 h, each with one outstanding share `share-<id>`.
async fn rig(db: &Db, n: usize, schedulers: usize) -> Rig {
    let store = db.store.clone();
    let at = t0().minus(time::Duration::days(1));
    let user = store
        .upsert_user(
            &NewUser {
                aad_object_id: "aad-req".into(),
                tenant_id: None,
                teams_user_id: None,
                upn: None,
                email: Some("rita@x.example".into()),
                display_name: "Rita".into(),
                initial_role: Role::Requester,
            },
            at,
        )
        .await
        .unwrap();
    let record = store
        .upsert_record(
            &NewRecord {
                vault_uid: "RECORDUID0000000000001".into(),
                title: "db-prod".into(),
                record_type: "login".into(),
                folder_id: None,
                revision: 1,
                vault_owner: None,
                owner_user_id: None,
                sensitivity: Sensitivity::Medium,
                discovery_source: DiscoverySource::Manual,
            },
            at,
        )
        .await
        .unwrap();
    let (started, ended) = ("2026-11-23T07:00:00.000000Z", "2026-11-23T08:00:00.000000Z");
    let (series, hex) = if db.engine == "sqlite" {
        (
            format!(
                "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {n}) SELECT"
            ),
            "printf('%064x', id)",
        )
    } else {
        ("SELECT".to_string(), "lpad(to_hex(id), 64, '0')")
    };
    let from = if db.engine == "sqlite" {
        "FROM n".to_string()
    } else {
        format!("FROM generate_series(1, {n})")
    };
    let inserted = db
        .raw
        .exec(&format!(
            "INSERT INTO requests (requester_id, record_id, status, justification, requested_duration_secs,
                                   approved_duration_secs, max_issuances, decided_at, lease_started_at,
                                   lease_expires_at, issuance_count, created_at, updated_at)
             {series} {}, {}, 'ISSUED', 'test lease', 3600, 3600, 3, '{started}', '{started}', '{ended}', 1,
                    '{started}', '{started}' {from}",
            user.id, record.id
        ))
        .await
        .unwrap();
    assert_eq!(inserted, n as u64);
    db.raw
        .exec(&format!(
            "INSERT INTO issuance_events (request_id, share_link_hash, vault_share_id, issued_at, expires_at)
             SELECT id, {hex}, 'share-' || id, '{started}', '{ended}' FROM requests"
        ))
        .await
        .unwrap();
    let ids: Vec<i64> = store
        .requests_in_status(&[RequestStatus::Issued], 1_000_000)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.id)
        .collect();
    let sharer = Arc::new(FakeSharer::default());
    sharer
        .live
        .lock()
        .unwrap()
        .extend(ids.iter().map(|id| format!("share-{id}")));
    let clock = Arc::new(ManualClock::new(t0()));
    policies::ensure_default_policies(store.as_ref(), t0())
        .await
        .unwrap();
    let engine = Arc::new(policies::load_engine(store.as_ref()).await.unwrap());
    let lifecycle = Arc::new(Lifecycle::new(
        store.clone(),
        engine,
        clock.clone(),
        Arc::new(PermissionResolver::new(
            store.clone(),
            Arc::new(StaticGroupDirectory::new()),
            clock.clone(),
        )),
        sharer.clone(),
        LifecycleSettings::default(),
    ));
    let notices = Arc::new(Notices::default());
    let schedulers = (0..schedulers)
        .map(|i| {
            Arc::new(Scheduler::new(
                lifecycle.clone(),
                store.clone(),
                clock.clone(),
                Arc::new(NoVault),
                Arc::new(NoRotationInfo),
                notices.clone(),
                format!("node-{i}"),
            ))
        })
        .collect();
    Rig {
        sharer,
        notices,
        schedulers,
    }
}

fn count(counts: &serde_json::Map<String, serde_json::Value>, key: &str) -> u64 {
    counts.get(key).and_then(|v| v.as_u64()).unwrap_or(0)
}

async fn chain_verifies(store: &dyn Store) -> Vec<AuditEvent> {
    let events = store.audit_events_after(0, 1_000_000).await.unwrap();
    let mut prev = "0".repeat(64);
    for (i, e) in events.iter().enumerate() {
        assert_eq!(e.seq, i as i64 + 1);
        assert_eq!(e.prev_hash, prev, "event {} links", e.seq);
        assert_eq!(recompute_audit_hash(e), e.hash, "event {} hash", e.seq);
        prev = e.hash.clone();
    }
    events
}

async fn two_schedulers_expire_each_lease_once(db: Db) {
    let n = 1000;
    let rig = rig(&db, n, 2).await;
    let runs: Vec<_> = rig
        .schedulers
        .iter()
        .map(|s| {
            let s = s.clone();
            tokio::spawn(async move { s.lease_expiry().await.unwrap() })
        })
        .collect();
    let mut expired = 0;
    for r in runs {
        let counts = r.await.unwrap();
        assert_eq!(count(&counts, "errors"), 0, "{counts:?}");
        assert_eq!(count(&counts, "expired"), count(&counts, "shares_removed"));
        expired += count(&counts, "expired");
    }
    assert_eq!(
        expired, n as u64,
        "each lease expired by exactly one instance"
    );
    let s = db.store.as_ref();
    assert_eq!(
        s.requests_in_status(&[RequestStatus::Expired], 1_000_000)
            .await
            .unwrap()
            .len(),
        n
    );
    let removals = rig.sharer.removals.lock().unwrap().clone();
    assert_eq!(removals.len(), n);
    assert!(
        removals.values().all(|&c| c == 1),
        "each share removed once"
    );
    assert!(rig.sharer.live.lock().unwrap().is_empty());
    let notices = rig.notices.0.lock().unwrap().clone();
    assert_eq!(notices.len(), n);
    assert!(notices.values().all(|&c| c == 1), "one notice per lease");

    let events = chain_verifies(s).await;
    for action in ["LEASE_EXPIRED", "SHARE_REVOKED"] {
        let of: Vec<&AuditEvent> = events.iter().filter(|e| e.action == action).collect();
        assert_eq!(of.len(), n, "{action}");
        let requests: HashSet<Option<i64>> = of.iter().map(|e| e.request_id).collect();
        assert_eq!(requests.len(), n, "{action}: one per request");
    }
    let one = events.iter().find(|e| e.action == "LEASE_EXPIRED").unwrap();
    assert_eq!(one.detail.0["outstanding_shares"], 1);
    assert_eq!(one.actor, "system:lease-expiry");
    let traces = s.traces_for_request(one.request_id.unwrap()).await.unwrap();
    assert_eq!(traces.len(), 1);
    assert_eq!(traces[0].stage, TraceStage::RevocationEvent);
    assert_eq!(traces[0].inputs.0["to"], "EXPIRED");

    // Nothing is due any more.
    let again = rig.schedulers[0].lease_expiry().await.unwrap();
    assert!(again.is_empty(), "{again:?}");
}

async fn a_failed_removal_is_retried(db: Db) {
    let rig = rig(&db, 5, 1).await;
    let s = db.store.as_ref();
    let ids: Vec<i64> = s
        .requests_in_status(&[RequestStatus::Issued], 10)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.id)
        .collect();
    rig.sharer
        .failing
        .lock()
        .unwrap()
        .insert(format!("share-{}", ids[2]));
    let first = rig.schedulers[0].lease_expiry().await.unwrap();
    assert_eq!(
        (
            count(&first, "expired"),
            count(&first, "shares_removed"),
            count(&first, "shares_failed")
        ),
        (5, 4, 1)
    );
    let left = s.outstanding_issuances(ids[2]).await.unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].revoke_attempts, 1);
    // The claim was given back: the next run tries the share again (the lease stays EXPIRED,
    // and nobody is told twice).
    let second = rig.schedulers[0].lease_expiry().await.unwrap();
    assert_eq!(
        (
            count(&second, "expired"),
            count(&second, "shares_retried"),
            count(&second, "shares_removed")
        ),
        (0, 1, 1)
    );
    assert!(s.outstanding_issuances(ids[2]).await.unwrap().is_empty());
    assert!(rig.notices.0.lock().unwrap().values().all(|&c| c == 1));
    let events = chain_verifies(s).await;
    assert_eq!(
        events
            .iter()
            .filter(|e| e.action == "SHARE_REVOKED")
            .count(),
        5
    );
}

async fn a_share_that_cannot_be_removed_alerts_admins_once(db: Db) {
    let rig = rig(&db, 3, 2).await;
    let s = db.store.as_ref();
    let ids: Vec<i64> = s
        .requests_in_status(&[RequestStatus::Issued], 10)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.id)
        .collect();
    let stuck = ids[1];
    rig.sharer
        .stuck
        .lock()
        .unwrap()
        .insert(format!("share-{stuck}"));
    // Many more runs than the alert threshold, on two instances.
    for run in 0..12 {
        rig.schedulers[run % 2].lease_expiry().await.unwrap();
    }
    let left = s.outstanding_issuances(stuck).await.unwrap();
    assert_eq!(left.len(), 1, "the share is still not removed");
    assert!(left[0].revoke_attempts >= 5, "{}", left[0].revoke_attempts);
    let alerts = rig.notices.1.lock().unwrap().clone();
    assert_eq!(
        alerts.len(),
        1,
        "admins are told once, not every run: {alerts:?}"
    );
    assert!(
        alerts[0].contains(&format!("#{stuck}")) && alerts[0].contains("could not be removed"),
        "{}",
        alerts[0]
    );
    assert!(
        !alerts[0].contains("share-"),
        "no share id in chat: {}",
        alerts[0]
    );
    // What `admin health` lists: this share, and only this one.
    let unremovable = s.unremovable_shares(5, 50).await.unwrap();
    assert_eq!(
        unremovable.iter().map(|u| u.request_id).collect::<Vec<_>>(),
        vec![stuck]
    );
    // Once it can be removed, it leaves the list.
    rig.sharer.stuck.lock().unwrap().clear();
    rig.schedulers[0].lease_expiry().await.unwrap();
    assert!(s.outstanding_issuances(stuck).await.unwrap().is_empty());
    assert!(s.unremovable_shares(5, 50).await.unwrap().is_empty());
}

async fn not_found_from_a_vault_that_cannot_know_is_not_revoked(db: Db) {
    let rig = rig(&db, 2, 1).await;
    let s = db.store.as_ref();
    let ids: Vec<i64> = s
        .requests_in_status(&[RequestStatus::Issued], 10)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.id)
        .collect();
    // This instance never made the second share: it answers "not found".
    rig.sharer
        .forgetful
        .store(true, std::sync::atomic::Ordering::SeqCst);
    rig.sharer
        .live
        .lock()
        .unwrap()
        .remove(&format!("share-{}", ids[1]));
    let counts = rig.schedulers[0].lease_expiry().await.unwrap();
    assert_eq!(
        (
            count(&counts, "shares_removed"),
            count(&counts, "shares_already_gone"),
            count(&counts, "shares_failed")
        ),
        (1, 0, 1),
        "{counts:?}"
    );
    let left = s.outstanding_issuances(ids[1]).await.unwrap();
    assert_eq!(left.len(), 1, "not recorded as revoked");
    assert_eq!(left[0].revoke_attempts, 1);
    let revoked: Vec<Option<i64>> = chain_verifies(s)
        .await
        .into_iter()
        .filter(|e| e.action == "SHARE_REVOKED")
        .map(|e| e.request_id)
        .collect();
    assert_eq!(revoked, vec![Some(ids[0])]);
}
