//! The scheduler's jobs over the demo data on both databases, time driven by a manual clock:
//! expiry warnings and lease expiry, preflight retries on the backoff schedule, reminders and
//! escalation of undecided requests, several instances at once, and the job-run record.

use crate::common;

use async_trait::async_trait;
use common::fake_sharer::{FakeSharer, Op};
use common::{Db, t0};
use passkey::config::LifecycleSettings;
use passkey::domain::{Clock, ManualClock, RequestStatus, Role};
use passkey::governance::lifecycle::{
    ClientInfo, Lifecycle, Notice, NoticeKind, Notifier, Submission,
};
use passkey::governance::permissions::{GroupDirectory, PermissionResolver, StaticGroupDirectory};
use passkey::governance::policies::{ensure_default_policies, load_engine};
use passkey::jobs::{Job, Scheduler};
use passkey::store::{Store, User};
use passkey::vault::{
    ErrorClass, NoRotationInfo, OneTimeSharer, RecordMeta, SharedFolder, VaultError, VaultReader,
};
use std::sync::{Arc, Mutex};
use time::Duration;

/// Collects what the jobs would tell people.
#[derive(Default)]
struct Told(Mutex<Vec<Notice>>);

#[async_trait]
impl Notifier for Told {
    async fn deliver(&self, notices: &[Notice]) {
        self.0.lock().unwrap().extend_from_slice(notices);
    }
}

impl Told {
    fn take(&self) -> Vec<(i64, NoticeKind)> {
        self.0
            .lock()
            .unwrap()
            .drain(..)
            .map(|n| (n.user_id, n.kind))
            .collect()
    }
}

/// The vault reader is not what these jobs exercise (vault sync has its own tests): an empty one.
struct EmptyVault;

#[async_trait]
impl VaultReader for EmptyVault {
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

struct Rig {
    store: Arc<dyn Store>,
    clock: Arc<ManualClock>,
    sharer: Arc<FakeSharer>,
    life: Arc<Lifecycle>,
    told: Arc<Told>,
}

impl Rig {
    async fn new(db: &Db) -> Rig {
        let store = db.store.clone();
        passkey::demo::load_if_empty(store.as_ref(), t0())
            .await
            .unwrap();
        ensure_default_policies(store.as_ref(), t0()).await.unwrap();
        let clock = Arc::new(ManualClock::new(t0()));
        let sharer = FakeSharer::new(clock.clone());
        let directory: Arc<dyn GroupDirectory> = Arc::new(StaticGroupDirectory::new());
        let life = Arc::new(Lifecycle::new(
            store.clone(),
            Arc::new(load_engine(store.as_ref()).await.unwrap()),
            clock.clone(),
            Arc::new(PermissionResolver::new(
                store.clone(),
                directory,
                clock.clone(),
            )),
            sharer.clone() as Arc<dyn OneTimeSharer>,
            LifecycleSettings::default(),
        ));
        Rig {
            store,
            clock,
            sharer,
            life,
            told: Arc::new(Told::default()),
        }
    }

    fn scheduler(&self, holder: &str) -> Scheduler {
        Scheduler::new(
            self.life.clone(),
            self.store.clone(),
            self.clock.clone(),
            Arc::new(EmptyVault),
            Arc::new(NoRotationInfo),
            self.told.clone(),
            holder,
        )
    }

    async fn user(&self, email: &str) -> User {
        self.store.user_by_email(email).await.unwrap().unwrap()
    }

    async fn submit(&self, who: &User, record: &str) -> i64 {
        self.life
            .submit(
                who,
                &Submission {
                    record: record.into(),
                    duration_secs: Some(3600),
                    justification: "INC-4411 investigation".into(),
                    ticket_id: None,
                    break_glass: false,
                },
            )
            .await
            .unwrap()
            .request
            .id
    }

    /// Many people with a lease each on db-staging (LOW: approved at once), each retrieved once.
    async fn leases_for_many(&self, people_count: usize) -> Vec<i64> {
        let folder = self.store.list_folders().await.unwrap();
        let databases = folder.iter().find(|f| f.name == "Databases").unwrap();
        let mut acl: Vec<_> = self
            .store
            .folder_permissions(databases.id)
            .await
            .unwrap()
            .into_iter()
            .map(|p| passkey::store::NewFolderPermission {
                principal_type: p.principal_type,
                principal: p.principal,
                permission: p.permission,
            })
            .collect();
        let mut people = Vec::new();
        for i in 0..people_count {
            let email = format!("person{i}@contoso.example");
            let user = self
                .store
                .upsert_user(
                    &passkey::store::NewUser {
                        aad_object_id: format!("00000000-0000-4000-8000-{i:012}"),
                        tenant_id: None,
                        teams_user_id: None,
                        upn: None,
                        email: Some(email.clone()),
                        display_name: format!("Person {i}"),
                        initial_role: Role::Requester,
                    },
                    t0(),
                )
                .await
                .unwrap();
            acl.push(passkey::store::NewFolderPermission {
                principal_type: passkey::domain::VaultPrincipalType::User,
                principal: email,
                permission: passkey::domain::FolderPermission::Viewer,
            });
            people.push(user);
        }
        self.store
            .replace_folder_permissions(databases.id, &acl, t0())
            .await
            .unwrap();
        let mut ids = Vec::new();
        for person in &people {
            let id = self.submit(person, "db-staging").await;
            let token = self.life.mint_issuance_token(person, id).await.unwrap();
            self.life
                .exchange_token(person, id, &token.token, ClientInfo::default())
                .await
                .unwrap();
            ids.push(id);
        }
        ids
    }

    async fn status(&self, id: i64) -> RequestStatus {
        self.store.request_by_id(id).await.unwrap().unwrap().status
    }

    async fn actions(&self, id: i64) -> Vec<String> {
        self.store
            .audit_events_for_request(id)
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.action)
            .collect()
    }
}

fn count(run: &passkey::store::NewJobRun, key: &str) -> u64 {
    run.counts.get(key).and_then(|v| v.as_u64()).unwrap_or(0)
}

on_both_databases!(a_lease_is_warned_once_then_expired_and_its_share_removed);
async fn a_lease_is_warned_once_then_expired_and_its_share_removed(db: Db) {
    let rig = Rig::new(&db).await;
    let alice = rig.user("alice@contoso.example").await;
    let id = rig.submit(&alice, "db-staging").await;
    assert_eq!(rig.status(id).await, RequestStatus::Approved);
    let token = rig.life.mint_issuance_token(&alice, id).await.unwrap();
    rig.life
        .exchange_token(&alice, id, &token.token, ClientInfo::default())
        .await
        .unwrap();
    assert_eq!(rig.sharer.live_total(), 1);
    let scheduler = rig.scheduler("instance-a");

    // Nothing due yet.
    let run = scheduler.run(Job::LeaseExpiry).await;
    assert!(run.ok, "{:?}", run.error);
    assert_eq!((count(&run, "expired"), count(&run, "warned")), (0, 0));

    // Ten minutes before the end: one warning, once.
    rig.clock.advance(Duration::minutes(50));
    let run = scheduler.run(Job::LeaseExpiry).await;
    assert_eq!(count(&run, "warned"), 1);
    assert_eq!(rig.told.take(), vec![(alice.id, NoticeKind::ExpiringSoon)]);
    let run = scheduler.run(Job::LeaseExpiry).await;
    assert_eq!(count(&run, "warned"), 0);
    assert!(rig.told.take().is_empty());
    assert_eq!(rig.status(id).await, RequestStatus::Issued);

    // At the end: expired, the share removed by its id, the requester told.
    rig.clock.advance(Duration::minutes(10));
    let run = scheduler.run(Job::LeaseExpiry).await;
    assert_eq!(count(&run, "expired"), 1, "{:?}", run.counts);
    assert_eq!(rig.status(id).await, RequestStatus::Expired);
    assert_eq!(rig.sharer.live_total(), 0);
    assert!(
        rig.store
            .outstanding_issuances(id)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(rig.told.take(), vec![(alice.id, NoticeKind::StatusChanged)]);
    let actions = rig.actions(id).await;
    assert_eq!(
        actions[actions.len() - 2..],
        ["LEASE_EXPIRED".to_string(), "SHARE_REVOKED".to_string()]
    );

    // Every run is on record for `admin health`.
    let runs = rig.store.last_job_runs().await.unwrap();
    let last = runs.iter().find(|r| r.job_name == "lease-expiry").unwrap();
    assert!(last.ok && last.holder == "instance-a");
    assert_eq!(last.counts.0["expired"], 1);
}

on_both_databases!(a_failing_preflight_is_retried_by_the_job_on_the_backoff_schedule);
async fn a_failing_preflight_is_retried_by_the_job_on_the_backoff_schedule(db: Db) {
    let rig = Rig::new(&db).await;
    let alice = rig.user("alice@contoso.example").await;
    rig.sharer.fail_next(Op::List, ErrorClass::Transient, 2);
    let id = rig.submit(&alice, "db-staging").await;
    let approved_at = rig.clock.now();
    let request = rig.store.request_by_id(id).await.unwrap().unwrap();
    assert_eq!(request.status, RequestStatus::Approved);
    assert_eq!(
        request.next_attempt_at,
        Some(approved_at.plus(Duration::seconds(30)))
    );
    let scheduler = rig.scheduler("instance-a");

    rig.clock.advance(Duration::seconds(29));
    let run = scheduler.run(Job::PreflightRetry).await;
    assert_eq!(
        count(&run, "deferred") + count(&run, "passed"),
        0,
        "not due yet"
    );

    rig.clock.advance(Duration::seconds(1));
    let run = scheduler.run(Job::PreflightRetry).await;
    assert_eq!(count(&run, "deferred"), 1, "{:?}", run.counts);
    let request = rig.store.request_by_id(id).await.unwrap().unwrap();
    assert_eq!(request.preflight_attempts, 2);
    assert_eq!(
        request.next_attempt_at,
        Some(rig.clock.now().plus(Duration::minutes(1)))
    );

    rig.clock.advance(Duration::minutes(1));
    let run = scheduler.run(Job::PreflightRetry).await;
    assert_eq!(count(&run, "passed"), 1, "{:?}", run.counts);
    let request = rig.store.request_by_id(id).await.unwrap().unwrap();
    assert_eq!(
        (
            request.status,
            request.next_attempt_at,
            request.preflight_attempts
        ),
        (RequestStatus::Approved, None, 3)
    );
    assert_eq!(rig.sharer.count(Op::List), 3);
    assert_eq!(
        rig.sharer.count(Op::Create),
        0,
        "no share before the requester asks"
    );
}

on_both_databases!(undecided_requests_are_chased_by_the_job);
async fn undecided_requests_are_chased_by_the_job(db: Db) {
    let rig = Rig::new(&db).await;
    let alice = rig.user("alice@contoso.example").await;
    let (bob, dave) = (
        rig.user("bob@contoso.example").await,
        rig.user("dave@contoso.example").await,
    );
    let id = rig.submit(&alice, "db-analytics-readonly").await;
    assert_eq!(rig.status(id).await, RequestStatus::Pending);
    let scheduler = rig.scheduler("instance-a");

    rig.clock.advance(Duration::hours(4));
    let run = scheduler.run(Job::StaleRequests).await;
    assert_eq!(count(&run, "reminded"), 1, "{:?}", run.counts);
    let mut told = rig.told.take();
    told.sort_by_key(|(user, _)| *user);
    assert_eq!(
        told,
        vec![
            (bob.id, NoticeKind::Reminder),
            (dave.id, NoticeKind::Reminder)
        ]
    );
    scheduler.run(Job::StaleRequests).await;
    assert!(rig.told.take().is_empty(), "a reminder goes once");

    rig.clock.advance(Duration::hours(20));
    let run = scheduler.run(Job::StaleRequests).await;
    assert_eq!(count(&run, "escalated"), 1, "{:?}", run.counts);
    assert_eq!(rig.status(id).await, RequestStatus::RequiresTriage);
    let admins = rig.store.users_with_role(Role::Admin).await.unwrap();
    assert_eq!(
        rig.told.take(),
        admins
            .iter()
            .map(|a| (a.id, NoticeKind::TriageNeeded))
            .collect::<Vec<_>>()
    );

    rig.clock.advance(Duration::hours(48));
    let run = scheduler.run(Job::StaleRequests).await;
    assert_eq!(count(&run, "expired"), 1, "{:?}", run.counts);
    assert_eq!(rig.status(id).await, RequestStatus::Expired);
    assert!(rig.actions(id).await.ends_with(&[
        "APPROVERS_REMINDED".to_string(),
        "REQUEST_ESCALATED".to_string(),
        "REQUEST_EXPIRED_UNDECIDED".to_string()
    ]));
}

on_both_databases!(two_instances_running_the_expiry_job_remove_each_share_once);
async fn two_instances_running_the_expiry_job_remove_each_share_once(db: Db) {
    let rig = Rig::new(&db).await;
    const PEOPLE: usize = 60;
    let ids = rig.leases_for_many(PEOPLE).await;
    assert_eq!(rig.sharer.live_total(), PEOPLE);

    rig.clock.advance(Duration::hours(2));
    let (a, b) = (rig.scheduler("instance-a"), rig.scheduler("instance-b"));
    let (run_a, run_b) = tokio::join!(a.run(Job::LeaseExpiry), b.run(Job::LeaseExpiry));
    assert!(run_a.ok && run_b.ok, "{:?} {:?}", run_a.error, run_b.error);
    assert_eq!(
        count(&run_a, "expired") + count(&run_b, "expired"),
        PEOPLE as u64,
        "{:?} / {:?}",
        run_a.counts,
        run_b.counts
    );
    assert_eq!(rig.sharer.live_total(), 0);
    let removals = rig.sharer.removals();
    assert_eq!(removals.len(), PEOPLE);
    assert!(removals.values().all(|n| *n == 1), "{removals:?}");
    for id in ids {
        assert_eq!(rig.status(id).await, RequestStatus::Expired);
        let expired = rig
            .actions(id)
            .await
            .iter()
            .filter(|a| *a == "LEASE_EXPIRED")
            .count();
        assert_eq!(expired, 1);
    }
}

/// Lets the vault take `secs` of the clock's time per removal (and a moment of real time, so the
/// other instance gets to run meanwhile).
fn slow_removals(rig: &Rig, secs: i64) {
    let clock = rig.clock.clone();
    rig.sharer.set_before_remove(move || {
        let clock = clock.clone();
        async move {
            clock.advance(Duration::seconds(secs));
            tokio::time::sleep(std::time::Duration::from_millis(15)).await;
        }
    });
}

on_both_databases!(a_slow_vault_does_not_let_a_second_instance_remove_the_shares_again);
async fn a_slow_vault_does_not_let_a_second_instance_remove_the_shares_again(db: Db) {
    let rig = Rig::new(&db).await;
    // 30 shares at 11 s per removal: 330 s of work in one claimed batch, longer than a claim's
    // five minutes.
    const SHARES: usize = 30;
    let ids = rig.leases_for_many(SHARES).await;
    rig.clock.advance(Duration::hours(2));
    slow_removals(&rig, 11);
    let (a, b) = (rig.scheduler("instance-a"), rig.scheduler("instance-b"));
    let a_done = std::sync::atomic::AtomicBool::new(false);
    let run_a = async {
        let run = a.run(Job::LeaseExpiry).await;
        a_done.store(true, std::sync::atomic::Ordering::SeqCst);
        run
    };
    // The second instance runs the job again and again while the first is removing shares.
    let run_b = async {
        let mut runs = Vec::new();
        while !a_done.load(std::sync::atomic::Ordering::SeqCst) {
            if rig.sharer.count(Op::Remove) > 0 {
                runs.push(b.run(Job::LeaseExpiry).await);
            }
            tokio::time::sleep(std::time::Duration::from_millis(3)).await;
        }
        runs
    };
    let (run_a, runs_b) = tokio::join!(run_a, run_b);
    assert!(run_a.ok, "{:?}", run_a.error);
    assert!(!runs_b.is_empty(), "the second instance never ran");
    assert!(runs_b.iter().all(|r| r.ok));
    let calls = rig.sharer.remove_calls();
    assert_eq!(calls.len(), SHARES);
    let twice = calls.values().filter(|n| **n > 1).count();
    assert_eq!(
        twice, 0,
        "{twice} of {SHARES} shares were removed more than once"
    );
    assert_eq!(count(&run_a, "shares_removed"), SHARES as u64);
    assert_eq!(rig.sharer.live_total(), 0);
    for id in ids {
        assert_eq!(rig.status(id).await, RequestStatus::Expired);
        assert!(
            rig.store
                .outstanding_issuances(id)
                .await
                .unwrap()
                .is_empty()
        );
    }
}

on_both_databases!(an_instance_whose_claim_was_taken_over_stops_removing_shares);
async fn an_instance_whose_claim_was_taken_over_stops_removing_shares(db: Db) {
    let rig = Rig::new(&db).await;
    const SHARES: usize = 10;
    rig.leases_for_many(SHARES).await;
    rig.clock.advance(Duration::hours(2));
    // During the third removal the first instance stalls for six minutes, and a second instance
    // claims the batch meanwhile.
    let (clock, store) = (rig.clock.clone(), rig.store.clone());
    let removals = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    rig.sharer.set_before_remove(move || {
        let (clock, store, removals) = (clock.clone(), store.clone(), removals.clone());
        async move {
            if removals.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 2 {
                clock.advance(Duration::minutes(6));
                let now = clock.now();
                let taken = store
                    .claim_due(
                        passkey::store::DueWork::LeaseEnd,
                        now,
                        now,
                        "instance-b",
                        now.plus(Duration::minutes(5)),
                        500,
                    )
                    .await
                    .unwrap();
                assert_eq!(
                    taken.len(),
                    SHARES,
                    "the second instance takes the batch over"
                );
            }
        }
    });
    let run_a = rig.scheduler("instance-a").run(Job::LeaseExpiry).await;
    assert!(run_a.ok, "{:?}", run_a.error);
    assert_eq!(
        rig.sharer.count(Op::Remove),
        3,
        "the first instance kept calling the vault after losing its claim"
    );
    assert_eq!(count(&run_a, "shares_claim_lost"), (SHARES - 3) as u64);
    assert_eq!(
        count(&run_a, "shares_removed"),
        3,
        "what it removed is on record"
    );

    // The new holder removes the rest, each once.
    rig.clock.advance(Duration::minutes(10));
    let run_b = rig.scheduler("instance-b").run(Job::LeaseExpiry).await;
    assert_eq!(count(&run_b, "shares_removed"), (SHARES - 3) as u64);
    let calls = rig.sharer.remove_calls();
    assert_eq!(calls.len(), SHARES);
    assert!(calls.values().all(|n| *n == 1), "{calls:?}");
    assert_eq!(rig.sharer.live_total(), 0);
}

/// Admin alerts a scheduler sent.
#[derive(Default)]
struct Alerts(Mutex<Vec<String>>);

#[async_trait]
impl Notifier for Alerts {
    async fn deliver(&self, _: &[Notice]) {}
    async fn alert_admins(&self, text: &str) {
        self.0.lock().unwrap().push(text.to_string());
    }
}

async fn readiness(server: &common::TestServer) -> (u16, serde_json::Value) {
    let r = reqwest::get(server.url("/readyz")).await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

/// Polls `/readyz` until it answers `status`, for at most `secs` seconds.
async fn wait_for_readiness(
    server: &common::TestServer,
    status: u16,
    secs: u64,
) -> serde_json::Value {
    let until = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    loop {
        let (got, body) = readiness(server).await;
        if got == status {
            return body;
        }
        assert!(
            std::time::Instant::now() < until,
            "/readyz stayed {got} ({body}), expected {status}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

on_both_databases!(a_job_that_panics_is_restarted_reported_and_admins_alerted_once);
async fn a_job_that_panics_is_restarted_reported_and_admins_alerted_once(db: Db) {
    let dir = tempfile::tempdir().unwrap();
    let server =
        common::TestServer::start(common::test_settings(dir.path(), &[]), db.store.clone()).await;
    assert_eq!(readiness(&server).await.0, 200);
    let state = server.state.clone();
    let alerts = Arc::new(Alerts::default());
    let scheduler = Scheduler::new(
        state.lifecycle.clone(),
        state.store.clone(),
        state.clock.clone(),
        state.vault.clone(),
        state.rotations.clone(),
        alerts.clone(),
        "instance-a",
    )
    .with_health(state.jobs.clone());
    // Lease expiry runs at once on start; its first two runs panic.
    scheduler.inject_panics(Job::LeaseExpiry, 2);
    let handles = Arc::new(scheduler).spawn(&state.settings.lifecycle);

    let body = wait_for_readiness(&server, 503, 5).await;
    assert_eq!(body["status"], "degraded", "{body}");
    assert_eq!(body["jobs"]["crashing"][0]["job"], "lease-expiry", "{body}");
    assert_eq!(body["database"]["reachable"], true);
    let live = reqwest::get(server.url("/healthz")).await.unwrap();
    assert_eq!(live.status().as_u16(), 200, "liveness stays up");
    let card = passkey::bot::views::admin_health(&bot_state(&state))
        .await
        .unwrap()
        .to_string();
    assert!(
        card.contains("Scheduled jobs") && card.contains("lease-expiry"),
        "admin health does not show the crashing job: {card}"
    );

    // Restarted with backoff (1 s, then 2 s): the third run finishes and readiness comes back.
    let body = wait_for_readiness(&server, 200, 15).await;
    assert_eq!(body["status"], "ready");
    let card = passkey::bot::views::admin_health(&bot_state(&state))
        .await
        .unwrap()
        .to_string();
    assert!(!card.contains("Scheduled jobs"), "{card}");
    let runs = state.store.last_job_runs().await.unwrap();
    let last = runs.iter().find(|r| r.job_name == "lease-expiry").unwrap();
    assert!(last.ok, "the restarted job ran: {last:?}");

    let told = alerts.0.lock().unwrap().clone();
    assert_eq!(told.len(), 1, "two panics in a row, one alert: {told:?}");
    assert!(told[0].contains("lease-expiry"), "{told:?}");
    for h in handles {
        h.abort();
    }
    server.stop().await;
}

/// A vault that answers every read with a provider outage.
struct UnavailableVault;

#[async_trait]
impl VaultReader for UnavailableVault {
    async fn shared_folders(&self) -> Result<Vec<SharedFolder>, VaultError> {
        Err(VaultError::new(
            ErrorClass::Transient,
            "Keeper answered 503 Service Unavailable",
            "Status code: 503 Service Unavailable",
        ))
    }
    async fn records(&self) -> Result<Vec<RecordMeta>, VaultError> {
        self.shared_folders().await.map(|_| vec![])
    }
    async fn record(&self, _: &str) -> Result<Option<RecordMeta>, VaultError> {
        self.shared_folders().await.map(|_| None)
    }
}

// A failed job logs its error's own words, once, readable: not `Some("…")` with escaped
// quotes, and not with the status words redacted (#21.7).
on_both_databases!(a_failed_job_logs_its_error_in_plain_words);
async fn a_failed_job_logs_its_error_in_plain_words(db: Db) {
    let rig = Rig::new(&db).await;
    for format in ["pretty", "json"] {
        let (log, _guard) = common::logs::capture_app(&[("PASSKEY_LOG__FORMAT", format)]);
        let scheduler = Scheduler::new(
            rig.life.clone(),
            rig.store.clone(),
            rig.clock.clone(),
            Arc::new(UnavailableVault),
            Arc::new(NoRotationInfo),
            rig.told.clone(),
            "instance-a",
        );
        let run = scheduler.run(Job::VaultSync).await;
        assert!(!run.ok);
        let text = log.text();
        let line = text
            .lines()
            .find(|l| l.contains("job run failed"))
            .unwrap_or_else(|| panic!("{format}: no failure line:\n{text}"));
        assert!(
            line.contains("vault: Keeper answered 503 Service Unavailable"),
            "{format}: the error's words:\n{line}"
        );
        assert!(!line.contains("Some("), "{format}: {line}");
        assert!(!line.contains("[REDACTED]"), "{format}: {line}");
    }
}

/// The bot's part of the application state, as `/api/messages` is given it.
fn bot_state(state: &passkey::app::AppState) -> passkey::bot::BotState {
    use axum::extract::FromRef;
    passkey::bot::BotState::from_ref(state)
}

on_both_databases!(two_instances_claiming_one_fire_time_run_it_once);
/// (#17.3) A fire time of a cron-scheduled job is claimed in the database: of two instances, one
/// gets it; the next fire time is claimed afresh.
async fn two_instances_claiming_one_fire_time_run_it_once(db: Db) {
    let rig = Rig::new(&db).await;
    let (a, b) = (rig.scheduler("instance-a"), rig.scheduler("instance-b"));
    let fire = passkey::domain::Timestamp::parse("2026-12-07T02:00:00Z").unwrap();
    let (got_a, got_b) = tokio::join!(
        a.claim_fire(Job::VaultSync, fire),
        b.claim_fire(Job::VaultSync, fire)
    );
    assert!(got_a ^ got_b, "exactly one claim: {got_a} {got_b}");
    assert!(!a.claim_fire(Job::VaultSync, fire).await);
    assert!(
        b.claim_fire(Job::Housekeeping, fire).await,
        "claims are per job"
    );
    let next = fire.plus(Duration::days(1));
    assert!(b.claim_fire(Job::VaultSync, next).await);
    assert!(!a.claim_fire(Job::VaultSync, next).await);
    // The winner forgets its job's claims older than two days.
    let later = next.plus(Duration::days(3));
    assert!(a.claim_fire(Job::VaultSync, later).await);
    let left = db
        .raw
        .texts("SELECT holder FROM job_fires WHERE job_name = 'vault-sync'")
        .await
        .unwrap();
    assert_eq!(
        left,
        vec!["instance-a".to_string()],
        "only the latest stays"
    );
}

on_both_databases!(two_schedulers_on_a_cron_schedule_run_the_job_once_per_fire_time);
/// (#17.3) Two schedulers on one database with housekeeping every second: each fire time runs
/// once across both — as many `job_runs` rows as claimed fire times, each by the claimant.
async fn two_schedulers_on_a_cron_schedule_run_the_job_once_per_fire_time(db: Db) {
    let rig = Rig::new(&db).await;
    let settings = LifecycleSettings {
        schedules: passkey::config::Schedules::from_table(
            [("housekeeping".to_string(), "* * * * * *".to_string())].into(),
        )
        .unwrap(),
        ..LifecycleSettings::default()
    };
    let mut handles = Arc::new(rig.scheduler("instance-a")).spawn(&settings);
    handles.extend(Arc::new(rig.scheduler("instance-b")).spawn(&settings));
    // Stop between fire times (at x.5 s), so no run is cut off between its claim and its record.
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    let nanos = time::OffsetDateTime::now_utc().nanosecond() as u64;
    let to_half = (1_500_000_000 - nanos) % 1_000_000_000;
    tokio::time::sleep(std::time::Duration::from_nanos(to_half)).await;
    for h in handles {
        h.abort();
    }
    let holders = |sql: &'static str| {
        let raw = db.raw.clone();
        async move {
            let mut h = raw.texts(sql).await.unwrap();
            h.sort();
            h
        }
    };
    let runs = holders("SELECT holder FROM job_runs WHERE job_name = 'housekeeping'").await;
    let fires = holders("SELECT holder FROM job_fires WHERE job_name = 'housekeeping'").await;
    assert!(runs.len() >= 2, "{} ran every second: {runs:?}", db.engine);
    assert_eq!(
        runs, fires,
        "one run per claimed fire time, by its claimant"
    );
    let all_ok = db
        .raw
        .texts("SELECT CAST(COUNT(*) AS TEXT) FROM job_runs WHERE job_name = 'housekeeping' AND ok")
        .await
        .unwrap();
    assert_eq!(all_ok, vec![runs.len().to_string()]);
}

on_both_databases!(admin_health_shows_each_jobs_schedule_and_next_run);
/// (#17.3) `admin health` lists each job's last run with its schedule and next run: a cron
/// schedule's next fire time (UTC), an interval's next tick after the last run.
async fn admin_health_shows_each_jobs_schedule_and_next_run(db: Db) {
    let dir = tempfile::tempdir().unwrap();
    let settings = common::test_settings(
        dir.path(),
        &[("PASSKEY_LIFECYCLE__SCHEDULES__VAULT_SYNC", "0 0 2 * * *")],
    );
    let server = common::TestServer::start(settings, db.store.clone()).await;
    let state = server.state.clone();
    let now = state.clock.now();
    for job in ["vault-sync", "lease-expiry"] {
        state
            .store
            .record_job_run(&passkey::store::NewJobRun {
                job_name: job.into(),
                holder: "instance-a".into(),
                started_at: now,
                finished_at: now,
                ok: true,
                counts: serde_json::json!({}),
                error: None,
            })
            .await
            .unwrap();
    }
    let card = passkey::bot::views::admin_health(&bot_state(&state))
        .await
        .unwrap()
        .to_string();
    let next_two = {
        let d = now.datetime();
        let day = if d.hour() < 2 {
            d.date()
        } else {
            d.date().next_day().unwrap()
        };
        format!("{day} 02:00 UTC")
    };
    assert!(
        card.contains(&format!("cron \\\"0 0 2 * * *\\\" UTC · next {next_two}")),
        "{card}"
    );
    let next_tick = passkey::cards::when(now.plus(Duration::minutes(1)));
    assert!(
        card.contains(&format!("every 1m · next {next_tick}")),
        "{card}"
    );
    server.stop().await;
}
