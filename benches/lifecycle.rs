//! Lifecycle benchmark, on SQLite and on Postgres:
//!
//! 1. **Lease expiry**: N leases (default 100,000), each ISSUED, past its end, with one outstanding
//!    share, bulk-inserted with SQL; then timed: `Scheduler::lease_expiry()` run by two scheduler
//!    instances at once (the batched path), against an in-process fake sharer. Afterwards it
//!    checks that every request is EXPIRED, every share was removed exactly once, one
//!    LEASE_EXPIRED and one SHARE_REVOKED event was written per lease, one notice went to each
//!    requester, and the whole audit chain verifies.
//! 2. **Baseline**: the same on fewer leases (default 10,000) through the per-request path the
//!    scheduler used before batching (`claim_due`, then `Lifecycle::expire_due` and
//!    `release_claim` for each request), for the before/after comparison.
//! 3. **Workflows**: full request → approve → mint → exchange workflows (a MEDIUM record routed to
//!    one approver) through `Lifecycle`, at concurrency 1 and 8.
//!
//! SQLite runs on a temporary file. Postgres runs in a scratch database `passkey_bench_<uuid>`
//! created from `PASSKEY_TEST_DATABASE_URL` (default `postgres://postgres@127.0.0.1:5432/postgres`)
//! and dropped at the end; when Postgres is unreachable that half is skipped with a note.
//!
//! `cargo bench --bench lifecycle`. Environment: `PASSKEY_BENCH_LEASES` (100000; 0 skips),
//! `PASSKEY_BENCH_BASELINE_LEASES` (10000; 0 skips), `PASSKEY_BENCH_SCHEDULERS` (2),
//! `PASSKEY_BENCH_WORKFLOWS` (1000 per concurrency level; 0 skips),
//! `PASSKEY_BENCH_CONCURRENCY` (`1,8`: the workflow levels), `PASSKEY_BENCH_DATABASES`
//! (`sqlite,postgres`), `PASSKEY_BENCH_LINKER` (1; 0 runs the lease expiry without the audit
//! linker beside it, linking everything afterwards), `PASSKEY_BENCH_LOG` (a tracing filter such as `sqlx=debug`: logs to
//! stderr, for profiling; off by default).

#[path = "common/scratch_pg.rs"]
mod scratch_pg;

use async_trait::async_trait;
use passkey::config::LifecycleSettings;
use passkey::domain::{
    AuthorityKind, Clock, DiscoverySource, FolderPermission, ManualClock, PrincipalType, Role,
    Sensitivity, Timestamp, VaultPrincipalType,
};
use passkey::governance::lifecycle::{
    ClientInfo, Event, Lifecycle, Notice, NoticeKind, Notifier, Submission,
};
use passkey::governance::permissions::{PermissionResolver, StaticGroupDirectory};
use passkey::governance::policies;
use passkey::jobs::Scheduler;
use passkey::store::{
    AuditEvent, DueWork, HealthStore, NewAuditEvent, NewAuthority, NewFolderPermission, NewRecord,
    NewUser, PgStore, SqliteStore, Store, recompute_audit_hash,
};
use passkey::vault::{
    NoRotationInfo, OneTimeSharer, RecordMeta, Removed, Share, ShareInfo, ShareUrl, SharedFolder,
    VaultError, VaultReader,
};
use scratch_pg::ScratchPg;
use sqlx::AssertSqlSafe;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.replace('_', "").parse().ok())
        .unwrap_or(default)
}

fn now0() -> Timestamp {
    Timestamp::parse("2026-11-23T12:00:00Z").unwrap()
}

// ---- fakes ------------------------------------------------------------------------------------

/// One-time shares in a hash set: O(1) create and remove; counts every call.
#[derive(Default)]
struct FakeSharer {
    live: Mutex<HashSet<String>>,
    created: AtomicU64,
    remove_calls: AtomicU64,
    removed: AtomicU64,
}

impl FakeSharer {
    fn preload(&self, ids: impl IntoIterator<Item = String>) {
        self.live.lock().unwrap().extend(ids);
    }
}

#[async_trait]
impl OneTimeSharer for FakeSharer {
    async fn create(
        &self,
        _record_uid: &str,
        ttl: time::Duration,
        _name: &str,
    ) -> Result<Share, VaultError> {
        let n = self.created.fetch_add(1, Ordering::Relaxed);
        let share_id = format!("bench-wf-{n}");
        self.live.lock().unwrap().insert(share_id.clone());
        Ok(Share {
            url: ShareUrl::new(format!("https://fake.invalid/vault/share/#bench-key-{n}")),
            share_id,
            expires_at: now0().plus(ttl),
        })
    }

    async fn remove(&self, _record_uid: &str, share_id: &str) -> Result<Removed, VaultError> {
        self.remove_calls.fetch_add(1, Ordering::Relaxed);
        if self.live.lock().unwrap().remove(share_id) {
            self.removed.fetch_add(1, Ordering::Relaxed);
            Ok(Removed::Removed)
        } else {
            Ok(Removed::NotFound)
        }
    }

    async fn list(&self, _record_uid: &str) -> Result<Vec<ShareInfo>, VaultError> {
        Ok(Vec::new())
    }
}

struct EmptyVault;

#[async_trait]
impl VaultReader for EmptyVault {
    async fn shared_folders(&self) -> Result<Vec<SharedFolder>, VaultError> {
        Ok(Vec::new())
    }
    async fn records(&self) -> Result<Vec<RecordMeta>, VaultError> {
        Ok(Vec::new())
    }
    async fn record(&self, _uid: &str) -> Result<Option<RecordMeta>, VaultError> {
        Ok(None)
    }
}

/// Counts StatusChanged notices per request.
#[derive(Default)]
struct CountingNotifier {
    status_changed: Mutex<HashMap<i64, u32>>,
}

#[async_trait]
impl Notifier for CountingNotifier {
    async fn deliver(&self, notices: &[Notice]) {
        let mut seen = self.status_changed.lock().unwrap();
        for n in notices {
            if n.kind == NoticeKind::StatusChanged {
                *seen.entry(n.request_id).or_default() += 1;
            }
        }
    }
}

// ---- databases --------------------------------------------------------------------------------

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Sqlite,
    Postgres,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Sqlite => "SQLite",
            Kind::Postgres => "Postgres",
        }
    }
}

/// A fresh, migrated database; Postgres ones are dropped by [`BenchDb::drop_now`].
struct BenchDb {
    kind: Kind,
    store: Arc<dyn Store>,
    sqlite: Option<Arc<SqliteStore>>,
    pg: Option<(Arc<PgStore>, ScratchPg)>,
    _dir: Option<tempfile::TempDir>,
}

impl BenchDb {
    async fn fresh(kind: Kind) -> Option<BenchDb> {
        match kind {
            Kind::Sqlite => {
                let dir = tempfile::tempdir().unwrap();
                let store = Arc::new(
                    SqliteStore::open(&dir.path().join("bench.db"), 8)
                        .await
                        .unwrap(),
                );
                store.migrate().await.unwrap();
                Some(BenchDb {
                    kind,
                    store: store.clone(),
                    sqlite: Some(store),
                    pg: None,
                    _dir: Some(dir),
                })
            }
            Kind::Postgres => {
                let scratch = ScratchPg::create().await?;
                let url = scratch.url();
                let store = Arc::new(PgStore::connect(&url, 16).await.unwrap());
                store.migrate().await.unwrap();
                Some(BenchDb {
                    kind,
                    store: store.clone(),
                    sqlite: None,
                    pg: Some((store, scratch)),
                    _dir: None,
                })
            }
        }
    }

    async fn exec(&self, sql: &str, binds: &[Bind<'_>]) -> u64 {
        macro_rules! run {
            ($pool:expr) => {{
                let mut q = sqlx::query(AssertSqlSafe(sql.to_string()));
                for b in binds {
                    q = match *b {
                        Bind::I(v) => q.bind(v),
                        Bind::T(v) => q.bind(v),
                    };
                }
                q.execute($pool).await.expect(sql).rows_affected()
            }};
        }
        match (&self.sqlite, &self.pg) {
            (Some(s), _) => run!(s.pool()),
            (_, Some((p, _))) => run!(p.pool()),
            _ => unreachable!(),
        }
    }

    async fn count(&self, sql: &str) -> i64 {
        match (&self.sqlite, &self.pg) {
            (Some(s), _) => sqlx::query_scalar(AssertSqlSafe(sql.to_string()))
                .fetch_one(s.pool())
                .await
                .expect(sql),
            (_, Some((p, _))) => sqlx::query_scalar(AssertSqlSafe(sql.to_string()))
                .fetch_one(p.pool())
                .await
                .expect(sql),
            _ => unreachable!(),
        }
    }

    async fn ids(&self, sql: &str) -> Vec<i64> {
        match (&self.sqlite, &self.pg) {
            (Some(s), _) => sqlx::query_scalar(AssertSqlSafe(sql.to_string()))
                .fetch_all(s.pool())
                .await
                .expect(sql),
            (_, Some((p, _))) => sqlx::query_scalar(AssertSqlSafe(sql.to_string()))
                .fetch_all(p.pool())
                .await
                .expect(sql),
            _ => unreachable!(),
        }
    }

    async fn drop_now(self) {
        if let Some((store, scratch)) = self.pg {
            store.pool().close().await;
            scratch.drop_now().await;
        }
    }
}

#[derive(Clone, Copy)]
enum Bind<'a> {
    I(i64),
    T(&'a Timestamp),
}

// ---- wiring -----------------------------------------------------------------------------------

struct Rig {
    lifecycle: Arc<Lifecycle>,
    sharer: Arc<FakeSharer>,
    notifier: Arc<CountingNotifier>,
    clock: Arc<ManualClock>,
}

async fn rig(store: &Arc<dyn Store>) -> Rig {
    let clock = Arc::new(ManualClock::new(now0()));
    policies::ensure_default_policies(store.as_ref(), clock.now())
        .await
        .unwrap();
    let engine = Arc::new(policies::load_engine(store.as_ref()).await.unwrap());
    let permissions = Arc::new(PermissionResolver::new(
        store.clone(),
        Arc::new(StaticGroupDirectory::new()),
        clock.clone(),
    ));
    let sharer = Arc::new(FakeSharer::default());
    let lifecycle = Arc::new(Lifecycle::new(
        store.clone(),
        engine,
        clock.clone(),
        permissions,
        sharer.clone(),
        LifecycleSettings::default(),
    ));
    Rig {
        lifecycle,
        sharer,
        notifier: Arc::new(CountingNotifier::default()),
        clock,
    }
}

fn scheduler(store: &Arc<dyn Store>, rig: &Rig, n: usize) -> Scheduler {
    Scheduler::new(
        rig.lifecycle.clone(),
        store.clone(),
        rig.clock.clone(),
        Arc::new(EmptyVault),
        Arc::new(NoRotationInfo),
        rig.notifier.clone(),
        format!("bench-scheduler-{n}"),
    )
}

async fn user(store: &dyn Store, key: &str, role: Role) -> passkey::store::User {
    store
        .upsert_user(
            &NewUser {
                aad_object_id: format!("{key}-0000-4000-8000-000000000001"),
                tenant_id: None,
                teams_user_id: None,
                upn: Some(format!("{key}@contoso.example")),
                email: Some(format!("{key}@contoso.example")),
                display_name: key.to_string(),
                initial_role: role,
            },
            now0(),
        )
        .await
        .unwrap()
}

/// A requester and an approver, a folder both may use, and one MEDIUM record routed to the
/// approver. Returns (requester, approver, record uid).
async fn people_and_record(
    store: &dyn Store,
) -> (passkey::store::User, passkey::store::User, String) {
    let at = now0().minus(time::Duration::days(1));
    let requester = user(store, "alice", Role::Requester).await;
    let approver = user(store, "bob", Role::Approver).await;
    let folder = store
        .upsert_folder("B3nchF0ld3rXXXXXXXXXX1", "Bench", at)
        .await
        .unwrap();
    store
        .replace_folder_permissions(
            folder.id,
            &[
                NewFolderPermission {
                    principal_type: VaultPrincipalType::User,
                    principal: "alice@contoso.example".into(),
                    permission: FolderPermission::Editor,
                },
                NewFolderPermission {
                    principal_type: VaultPrincipalType::User,
                    principal: "bob@contoso.example".into(),
                    permission: FolderPermission::Manager,
                },
            ],
            at,
        )
        .await
        .unwrap();
    let uid = "B3nchR3c0rdXXXXXXXXXX1".to_string();
    let record = store
        .upsert_record(
            &NewRecord {
                vault_uid: uid.clone(),
                title: "bench-db".into(),
                record_type: "login".into(),
                folder_id: Some(folder.id),
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
    let resource = store
        .upsert_governed_resource(
            record.id,
            "system.visibility.vault-access",
            "system.access.default",
            "system.lease.default",
            at,
        )
        .await
        .unwrap();
    store
        .add_authority(
            &NewAuthority {
                resource_id: resource.id,
                authority: AuthorityKind::Approver,
                principal_type: PrincipalType::User,
                principal: approver.aad_object_id.clone(),
                stage: 1,
                valid_from: at,
                valid_to: None,
                created_by: "bench".into(),
            },
            &NewAuditEvent::new("bench", "AUTHORITY_GRANTED", at).record(record.id),
        )
        .await
        .unwrap();
    (requester, approver, uid)
}

/// N ISSUED leases that ended an hour ago, each with one outstanding share `bench-share-<id>`,
/// inserted in two statements. Returns the share ids.
async fn seed_leases(db: &BenchDb, n: usize) -> Vec<String> {
    let (requester, _, uid) = people_and_record(db.store.as_ref()).await;
    let record = db.store.record_by_uid(&uid).await.unwrap().unwrap();
    let now = now0();
    let started = now.minus(time::Duration::hours(2));
    let ended = now.minus(time::Duration::hours(1));
    let columns = "requester_id, record_id, status, justification, requested_duration_secs,
                   approved_duration_secs, required_approvals, max_issuances, policy_version,
                   decided_at, decision_reason, lease_started_at, lease_expires_at, issuance_count,
                   created_at, updated_at";
    let values = "$2, $3, 'ISSUED', 'benchmark lease', 3600, 3600, 1, 3, 'bench', $4, 'bench', $4, $5, 1, $4, $4";
    let (requests, shares) = match db.kind {
        Kind::Sqlite => (
            format!(
                "INSERT INTO requests ({columns})
                 WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < $1)
                 SELECT {values} FROM n"
            ),
            "INSERT INTO issuance_events (request_id, share_link_hash, vault_share_id, issued_at, expires_at)
             SELECT id, printf('%064x', id), 'bench-share-' || id, $1, $2 FROM requests WHERE status = 'ISSUED'"
                .to_string(),
        ),
        Kind::Postgres => (
            format!("INSERT INTO requests ({columns}) SELECT {values} FROM generate_series(1, $1) AS i"),
            "INSERT INTO issuance_events (request_id, share_link_hash, vault_share_id, issued_at, expires_at)
             SELECT id, lpad(to_hex(id), 64, '0'), 'bench-share-' || id, $1, $2 FROM requests WHERE status = 'ISSUED'"
                .to_string(),
        ),
    };
    db.exec(
        &requests,
        &[
            Bind::I(n as i64),
            Bind::I(requester.id),
            Bind::I(record.id),
            Bind::T(&started),
            Bind::T(&ended),
        ],
    )
    .await;
    db.exec(&shares, &[Bind::T(&started), Bind::T(&ended)])
        .await;
    db.exec("ANALYZE", &[]).await;
    db.ids("SELECT id FROM requests WHERE status = 'ISSUED' ORDER BY id")
        .await
        .into_iter()
        .map(|id| format!("bench-share-{id}"))
        .collect()
}

// ---- checks -----------------------------------------------------------------------------------

/// Stops the linker task and links what is left: how long after `started` the last event of
/// the timed work was in the chain.
async fn linked_after(
    store: &dyn Store,
    started: Instant,
    linker: Option<passkey::audit::linker::LinkerTask>,
) -> Duration {
    store.link_pending().await.unwrap();
    drop(linker);
    started.elapsed()
}

/// Walks the whole chain: every hash recomputes and links to the one before.
async fn verify_chain(store: &dyn Store) -> usize {
    let mut prev = "0".repeat(64);
    let mut after = 0;
    let mut n = 0;
    loop {
        let page: Vec<AuditEvent> = store.audit_events_after(after, 10_000).await.unwrap();
        if page.is_empty() {
            return n;
        }
        for e in &page {
            assert_eq!(e.seq, after + 1, "chain has a gap at {}", e.seq);
            assert_eq!(e.prev_hash, prev, "event {} does not link", e.seq);
            assert_eq!(recompute_audit_hash(e), e.hash, "event {} hash", e.seq);
            prev = e.hash.clone();
            after = e.seq;
            n += 1;
        }
    }
}

async fn check_expiry(db: &BenchDb, rig: &Rig, n: usize) {
    let expired = db
        .count("SELECT COUNT(*) FROM requests WHERE status = 'EXPIRED'")
        .await;
    assert_eq!(expired, n as i64, "every lease EXPIRED");
    let outstanding = db
        .count("SELECT COUNT(*) FROM issuance_events WHERE revoked_at IS NULL")
        .await;
    assert_eq!(outstanding, 0, "every share marked revoked");
    assert_eq!(rig.sharer.removed.load(Ordering::Relaxed), n as u64);
    assert_eq!(
        rig.sharer.remove_calls.load(Ordering::Relaxed),
        n as u64,
        "each share removed exactly once"
    );
    assert!(rig.sharer.live.lock().unwrap().is_empty());
    for action in ["LEASE_EXPIRED", "SHARE_REVOKED"] {
        let events = db
            .count(&format!(
                "SELECT COUNT(*) FROM audit_events WHERE action = '{action}'"
            ))
            .await;
        assert_eq!(events, n as i64, "one {action} per lease");
    }
    let traces = db
        .count("SELECT COUNT(*) FROM governance_decision_traces WHERE stage = 'REVOCATION_EVENT'")
        .await;
    assert_eq!(traces, n as i64, "one revocation trace per lease");
    let notices = rig.notifier.status_changed.lock().unwrap();
    assert_eq!(notices.len(), n);
    assert!(notices.values().all(|&c| c == 1), "one notice per lease");
}

// ---- phases -----------------------------------------------------------------------------------

struct ExpiryFigures {
    leases: usize,
    wall: Duration,
    chain_events: usize,
}

/// The batched path: `Scheduler::lease_expiry` on `schedulers` instances at once.
async fn batched_expiry(kind: Kind, n: usize, schedulers: usize) -> Option<ExpiryFigures> {
    let db = BenchDb::fresh(kind).await?;
    let rig = rig(&db.store).await;
    let t = Instant::now();
    rig.sharer.preload(seed_leases(&db, n).await);
    let seeded = t.elapsed();
    let instances: Vec<Arc<Scheduler>> = (0..schedulers)
        .map(|i| Arc::new(scheduler(&db.store, &rig, i)))
        .collect();
    // The audit linker runs beside the work, as in `serve` (Postgres; SQLite links inline).
    // `PASSKEY_BENCH_LINKER=0` leaves it off during the timed work (everything is linked after),
    // to see what linking beside the expiry costs it.
    let linker = if env_usize("PASSKEY_BENCH_LINKER", 1) > 0 {
        passkey::audit::linker::spawn(db.store.clone())
    } else {
        None
    };
    let started = Instant::now();
    let runs: Vec<_> = instances
        .iter()
        .map(|s| {
            let s = s.clone();
            tokio::spawn(async move { s.lease_expiry().await })
        })
        .collect();
    let mut per_instance = Vec::new();
    for r in runs {
        let counts = r.await.unwrap().expect("lease expiry run");
        per_instance.push(
            counts
                .get("expired")
                .and_then(serde_json::Value::as_u64)
                .unwrap_or(0),
        );
    }
    let wall = started.elapsed();
    let linked = linked_after(db.store.as_ref(), started, linker).await;
    println!(
        "  {}: seeded {n} leases in {:.1} s; batched expiry by {schedulers} schedulers {:?} leases each; \
         every audit event linked {:.2} s after the start",
        kind.name(),
        seeded.as_secs_f64(),
        per_instance,
        linked.as_secs_f64()
    );
    check_expiry(&db, &rig, n).await;
    let chain_events = verify_chain(db.store.as_ref()).await;
    db.drop_now().await;
    Some(ExpiryFigures {
        leases: n,
        wall,
        chain_events,
    })
}

/// The path the scheduler took before batching: per request, `Lifecycle::expire_due` (two write
/// transactions, each locking the audit chain head) and `release_claim`.
async fn per_request_expiry(kind: Kind, n: usize) -> Option<ExpiryFigures> {
    let db = BenchDb::fresh(kind).await?;
    let rig = rig(&db.store).await;
    rig.sharer.preload(seed_leases(&db, n).await);
    let holder = "bench-per-request";
    let started = Instant::now();
    let now = rig.clock.now();
    let mut seen = HashSet::new();
    loop {
        let claimed = db
            .store
            .claim_due(
                DueWork::LeaseEnd,
                now,
                now,
                holder,
                now.plus(time::Duration::minutes(5)),
                500,
            )
            .await
            .unwrap();
        let fresh: Vec<_> = claimed.into_iter().filter(|r| seen.insert(r.id)).collect();
        if fresh.is_empty() {
            break;
        }
        for request in fresh {
            let id = request.id;
            let change = rig.lifecycle.expire_due(request).await.unwrap();
            rig.notifier.deliver(&change.notices).await;
            db.store.release_claim(id, holder).await.unwrap();
        }
    }
    let wall = started.elapsed();
    check_expiry(&db, &rig, n).await;
    let chain_events = verify_chain(db.store.as_ref()).await;
    db.drop_now().await;
    Some(ExpiryFigures {
        leases: n,
        wall,
        chain_events,
    })
}

/// request → approve → mint → exchange, `total` times with `concurrency` workers.
async fn workflows(kind: Kind, total: usize, concurrency: usize) -> Option<Duration> {
    let db = BenchDb::fresh(kind).await?;
    let rig = rig(&db.store).await;
    let (requester, approver, uid) = people_and_record(db.store.as_ref()).await;
    // One requester, many open requests on one record.
    db.exec(
        "UPDATE users SET allow_multiple_leases = TRUE WHERE id = $1",
        &[Bind::I(requester.id)],
    )
    .await;
    let requester = db.store.user_by_id(requester.id).await.unwrap().unwrap();
    let per_worker = total / concurrency;
    let linker = passkey::audit::linker::spawn(db.store.clone());
    let started = Instant::now();
    let workers: Vec<_> = (0..concurrency)
        .map(|_| {
            let lc = rig.lifecycle.clone();
            let (requester, approver, uid) = (requester.clone(), approver.clone(), uid.clone());
            tokio::spawn(async move {
                for _ in 0..per_worker {
                    let submitted = lc
                        .submit(
                            &requester,
                            &Submission {
                                record: uid.clone(),
                                duration_secs: Some(3600),
                                justification: "benchmark workflow".into(),
                                ticket_id: None,
                                break_glass: false,
                            },
                        )
                        .await
                        .unwrap();
                    assert_eq!(submitted.event, Event::Routed);
                    let id = submitted.request.id;
                    let approved = lc.approve(&approver, id, None).await.unwrap();
                    assert_eq!(approved.event, Event::Approved);
                    let token = lc.mint_issuance_token(&requester, id).await.unwrap();
                    let retrieved = lc
                        .exchange_token(&requester, id, &token.token, ClientInfo::default())
                        .await
                        .unwrap();
                    assert_eq!(retrieved.issuance_count, 1);
                }
            })
        })
        .collect();
    for w in workers {
        w.await.unwrap();
    }
    let wall = started.elapsed();
    let linked = linked_after(db.store.as_ref(), started, linker).await;
    println!(
        "  {}: {total} workflows, {concurrency} workers: {:.2} s; every audit event linked {:.2} s after the start",
        kind.name(),
        wall.as_secs_f64(),
        linked.as_secs_f64()
    );
    let issued = db
        .count("SELECT COUNT(*) FROM requests WHERE status = 'ISSUED'")
        .await;
    assert_eq!(issued, (per_worker * concurrency) as i64);
    verify_chain(db.store.as_ref()).await;
    db.drop_now().await;
    Some(wall)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let leases = env_usize("PASSKEY_BENCH_LEASES", 100_000);
    let baseline = env_usize("PASSKEY_BENCH_BASELINE_LEASES", 10_000);
    let schedulers = env_usize("PASSKEY_BENCH_SCHEDULERS", 2).max(1);
    let total_workflows = env_usize("PASSKEY_BENCH_WORKFLOWS", 1000);
    let databases =
        std::env::var("PASSKEY_BENCH_DATABASES").unwrap_or_else(|_| "sqlite,postgres".into());
    let levels: Vec<usize> = std::env::var("PASSKEY_BENCH_CONCURRENCY")
        .unwrap_or_else(|_| "1,8".into())
        .split(',')
        .filter_map(|c| c.trim().parse().ok())
        .filter(|&c| c > 0)
        .collect();
    if let Ok(filter) = std::env::var("PASSKEY_BENCH_LOG") {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .with_writer(std::io::stderr)
            .init();
    }
    let kinds: Vec<Kind> = databases
        .split(',')
        .filter_map(|d| match d.trim() {
            "sqlite" => Some(Kind::Sqlite),
            "postgres" => Some(Kind::Postgres),
            _ => None,
        })
        .collect();
    println!(
        "machine: {} cores, load average: {}",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0),
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .trim()
    );

    let mut expiry_rows = Vec::new();
    let mut workflow_rows = Vec::new();
    for &kind in &kinds {
        println!("{}:", kind.name());
        if baseline > 0
            && let Some(f) = per_request_expiry(kind, baseline).await
        {
            expiry_rows.push((kind, "per request (before)", 1, f));
        }
        if leases > 0
            && let Some(f) = batched_expiry(kind, leases, schedulers).await
        {
            expiry_rows.push((kind, "batched (after)", schedulers, f));
        }
        for &concurrency in &levels {
            if total_workflows > 0
                && let Some(wall) = workflows(kind, total_workflows, concurrency).await
            {
                workflow_rows.push((kind, concurrency, total_workflows, wall));
            }
        }
    }
    println!(
        "load average after: {}",
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .trim()
    );
    println!();
    println!(
        "| database | path | schedulers | leases | wall time | leases/s | projected for 100,000 | audit events verified |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for (kind, path, schedulers, f) in &expiry_rows {
        let rate = f.leases as f64 / f.wall.as_secs_f64();
        println!(
            "| {} | {path} | {schedulers} | {} | {:.2} s | {:.0} | {:.1} s | {} |",
            kind.name(),
            f.leases,
            f.wall.as_secs_f64(),
            rate,
            100_000.0 / rate,
            f.chain_events
        );
    }
    println!();
    println!("| database | concurrency | workflows | wall time | workflows/s |");
    println!("|---|---|---|---|---|");
    for (kind, concurrency, n, wall) in &workflow_rows {
        println!(
            "| {} | {concurrency} | {n} | {:.2} s | {:.0} |",
            kind.name(),
            wall.as_secs_f64(),
            *n as f64 / wall.as_secs_f64()
        );
    }
}
