//! The request lifecycle on both databases, driven through `Lifecycle` directly (no HTTP): submit,
//! approve/deny, preflight, retrieve, release/expire/revoke, extend, triage, break-glass and the
//! stale-request chaser — each path with the audit events and decision traces it writes. Time is
//! a `ManualClock` (never a sleep); the vault is a fake sharer that records calls and fails on
//! demand. Then INV-4/INV-7 under concurrency, INV-5 over a dump of every table, and INV-6 with
//! the database gone.

use crate::common;

use common::fake_sharer::{Call, FakeSharer, Op};
use common::second_factor::SecondFactor;
use common::{Db, t0};
use passkey::canonical::sha256_hex;
use passkey::config::LifecycleSettings;
use passkey::domain::ApprovalDecision;
use passkey::domain::*;
use passkey::governance::lifecycle::*;
use passkey::governance::permissions::{GroupDirectory, PermissionResolver, StaticGroupDirectory};
use passkey::governance::policies::{ensure_default_policies, load_engine};
use passkey::store::*;
use passkey::vault::{ErrorClass, OneTimeSharer, share_id_from_url};
use secrecy::{ExposeSecret, SecretString};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use time::Duration;

on_both_databases!(
    low_auto_approves_with_its_lease_and_a_preflight_but_no_share,
    medium_routes_to_its_approvers,
    policy_denies_a_record_outside_the_requesters_folders,
    a_record_nobody_can_approve_goes_to_triage_and_an_admin_decides,
    refused_submissions_write_nothing,
    input_errors_write_nothing_and_policy_denials_stay_denials,
    non_approvers_and_self_approval_are_refused,
    critical_needs_two_distinct_approvals,
    a_denial_decides_and_late_clicks_are_told_who_decided,
    a_terminal_preflight_makes_the_request_unfulfillable,
    a_transient_preflight_is_retried_on_the_backoff_schedule,
    a_preflight_that_never_passes_spends_its_budget,
    retrieval_returns_the_url_once_and_stores_only_its_hash,
    a_passing_vault_failure_uses_nothing_up,
    a_terminal_vault_failure_makes_an_unissued_lease_unfulfillable,
    a_retrieval_killed_mid_share_does_not_hold_its_reservation_forever,
    an_unrecorded_share_is_removed_again,
    a_high_record_needs_a_second_factor,
    a_two_step_retrieval_uses_the_token_bound_to_the_verified_challenge,
    release_removes_every_share_by_id,
    admin_revoke_and_lost_permission_end_the_lease,
    expiry_retries_a_removal_that_failed,
    extensions_within_caps_are_granted_and_beyond_refused,
    a_routed_extension_waits_for_an_approver,
    break_glass_is_approved_at_once_and_announced,
    undecided_requests_are_reminded_escalated_and_expired,
    nothing_secret_is_left_in_the_database,
    twenty_approvers_at_once_give_one_decision,
    a_hundred_parallel_retrievals_make_exactly_max_issuances_shares,
    two_schedulers_expire_a_thousand_leases_exactly_once,
    every_stored_trace_replays_to_the_decision_it_records,
);

// ---- the world ---------------------------------------------------------------------------------

const JUSTIFICATION: &str = "restoring the service for INC-4411";

struct World {
    life: Lifecycle,
    store: Arc<dyn Store>,
    clock: Arc<ManualClock>,
    sharer: Arc<FakeSharer>,
    /// The OTP service, for the proof a second-factor retrieval takes.
    second: SecondFactor,
    /// REQUESTER, EDITOR on the folder.
    alice: User,
    /// REQUESTER, no folder access.
    erin: User,
    /// APPROVER, MANAGER on the folder.
    bob: User,
    /// APPROVER, MANAGER on the folder.
    dave: User,
    /// ADMIN, OWNER of the folder.
    carol: User,
    /// ADMIN, not in the folder's ACL.
    frank: User,
    folder: VaultFolder,
}

impl World {
    async fn record(&self, title: &str) -> Record {
        self.store
            .list_records()
            .await
            .unwrap()
            .into_iter()
            .find(|r| r.title == title)
            .unwrap_or_else(|| panic!("no record {title}"))
    }

    async fn request(&self, id: i64) -> Request {
        self.store.request_by_id(id).await.unwrap().unwrap()
    }

    async fn submit(&self, who: &User, record: &str, secs: i64) -> Result<Change, LifecycleError> {
        self.life
            .submit(
                who,
                &Submission {
                    record: record.into(),
                    duration_secs: Some(secs),
                    justification: JUSTIFICATION.into(),
                    ticket_id: None,
                    break_glass: false,
                },
            )
            .await
    }

    /// Mint and exchange, as the issuance page does (no second factor).
    async fn retrieve(&self, who: &User, id: i64) -> Result<Retrieved, LifecycleError> {
        let minted = self.life.mint_issuance_token(who, id).await?;
        self.life
            .exchange_token(who, id, &minted.token, ClientInfo::default())
            .await
    }

    /// The proof of a second factor for retrieving `id` with `token`, as the page gets it.
    async fn prove(
        &self,
        who: &User,
        id: i64,
        token: &SecretString,
    ) -> passkey::otp::SecondFactorProof {
        self.second.prove(&self.life, who, id, token).await
    }

    /// A MEDIUM request approved by bob.
    async fn approved_medium(&self) -> Request {
        let id = self
            .submit(&self.alice, "ops-medium", 3600)
            .await
            .unwrap()
            .request
            .id;
        let change = self.life.approve(&self.bob, id, None).await.unwrap();
        assert_eq!(change.request.status, RequestStatus::Approved);
        change.request
    }
}

fn user(key: &str, role: Role) -> NewUser {
    NewUser {
        aad_object_id: format!("aad-{key}"),
        tenant_id: Some("tenant-1".into()),
        teams_user_id: None,
        upn: Some(format!("{key}@contoso.example")),
        email: Some(format!("{key}@contoso.example")),
        display_name: format!("{}{} Test", key[..1].to_uppercase(), &key[1..]),
        initial_role: role,
    }
}

/// A 22-character Keeper-like uid for a title.
fn uid(title: &str) -> String {
    let mut s: String = title
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .collect();
    while s.len() < 22 {
        s.push('0');
    }
    s.truncate(22);
    s
}

async fn add_record(
    store: &dyn Store,
    folder: &VaultFolder,
    title: &str,
    sensitivity: Sensitivity,
    owner: &User,
    authorities: &[(AuthorityKind, PrincipalType, String)],
    governed: bool,
) -> Record {
    let record = store
        .upsert_record(
            &NewRecord {
                vault_uid: uid(title),
                title: title.into(),
                record_type: "login".into(),
                folder_id: Some(folder.id),
                revision: 1,
                vault_owner: owner.email.clone(),
                owner_user_id: Some(owner.id),
                sensitivity,
                discovery_source: DiscoverySource::Manual,
            },
            t0(),
        )
        .await
        .unwrap();
    if governed {
        let resource = store
            .upsert_governed_resource(
                record.id,
                "system.visibility.vault-access",
                "system.access.default",
                "system.lease.default",
                t0(),
            )
            .await
            .unwrap();
        for (kind, principal_type, principal) in authorities {
            store
                .add_authority(
                    &NewAuthority {
                        resource_id: resource.id,
                        authority: *kind,
                        principal_type: *principal_type,
                        principal: principal.clone(),
                        stage: 1,
                        valid_from: t0(),
                        valid_to: None,
                        created_by: "test".into(),
                    },
                    &NewAuditEvent::new("test", "AUTHORITY_GRANTED", t0()).record(record.id),
                )
                .await
                .unwrap();
        }
    }
    record
}

async fn lifecycle_on(
    store: Arc<dyn Store>,
    clock: Arc<ManualClock>,
    sharer: Arc<FakeSharer>,
) -> Lifecycle {
    ensure_default_policies(store.as_ref(), t0()).await.unwrap();
    let engine = Arc::new(load_engine(store.as_ref()).await.unwrap());
    let directory: Arc<dyn GroupDirectory> = Arc::new(StaticGroupDirectory::new());
    let permissions = Arc::new(PermissionResolver::new(
        store.clone(),
        directory,
        clock.clone(),
    ));
    Lifecycle::new(
        store,
        engine,
        clock,
        permissions,
        sharer as Arc<dyn OneTimeSharer>,
        LifecycleSettings::default(),
    )
}

/// Six people, one shared folder, records of every sensitivity with their authorities.
async fn world(db: &Db) -> World {
    let store = db.store.clone();
    let s = store.as_ref();
    let mut people = BTreeMap::new();
    for (key, role) in [
        ("alice", Role::Requester),
        ("erin", Role::Requester),
        ("bob", Role::Approver),
        ("dave", Role::Approver),
        ("carol", Role::Admin),
        ("frank", Role::Admin),
    ] {
        people.insert(key, s.upsert_user(&user(key, role), t0()).await.unwrap());
    }
    let folder = s
        .upsert_folder("OpsF0ld3rUid000000000A", "Operations", t0())
        .await
        .unwrap();
    let acl: Vec<NewFolderPermission> = [
        ("alice", FolderPermission::Editor),
        ("bob", FolderPermission::Manager),
        ("dave", FolderPermission::Manager),
        ("carol", FolderPermission::Owner),
    ]
    .into_iter()
    .map(|(k, p)| NewFolderPermission {
        principal_type: VaultPrincipalType::User,
        principal: format!("{k}@contoso.example"),
        permission: p,
    })
    .collect();
    s.replace_folder_permissions(folder.id, &acl, t0())
        .await
        .unwrap();
    let aad = |k: &str| people[k].aad_object_id.clone();
    use AuthorityKind::{Approver, Owner};
    use PrincipalType::User as U;
    let (bob, carol) = (&people["bob"], &people["carol"]);
    for (title, sensitivity, owner, authorities, governed) in [
        (
            "ops-low",
            Sensitivity::Low,
            bob,
            vec![(Owner, U, aad("bob"))],
            true,
        ),
        (
            "ops-medium",
            Sensitivity::Medium,
            bob,
            vec![(Owner, U, aad("bob")), (Approver, U, aad("dave"))],
            true,
        ),
        (
            "ops-high",
            Sensitivity::High,
            bob,
            vec![(Owner, U, aad("bob")), (Approver, U, aad("dave"))],
            true,
        ),
        (
            "ops-critical",
            Sensitivity::Critical,
            bob,
            vec![(Owner, U, aad("bob")), (Approver, U, aad("dave"))],
            true,
        ),
        // Not governed: nobody can approve it.
        ("ops-orphan", Sensitivity::Medium, bob, vec![], false),
        (
            "break-glass-domain-admin",
            Sensitivity::Critical,
            carol,
            vec![(Owner, U, aad("carol")), (Approver, U, aad("bob"))],
            true,
        ),
        (
            "db-prod-eu",
            Sensitivity::Low,
            bob,
            vec![(Owner, U, aad("bob"))],
            true,
        ),
        (
            "db-prod-us",
            Sensitivity::Low,
            bob,
            vec![(Owner, U, aad("bob"))],
            true,
        ),
    ] {
        add_record(
            s,
            &folder,
            title,
            sensitivity,
            owner,
            &authorities,
            governed,
        )
        .await;
    }
    let clock = Arc::new(ManualClock::new(t0()));
    let sharer = FakeSharer::new(clock.clone());
    let life = lifecycle_on(store.clone(), clock.clone(), sharer.clone()).await;
    let second = SecondFactor::new(store.clone(), clock.clone());
    World {
        life,
        store,
        clock,
        second,
        sharer,
        alice: people["alice"].clone(),
        erin: people["erin"].clone(),
        bob: people["bob"].clone(),
        dave: people["dave"].clone(),
        carol: people["carol"].clone(),
        frank: people["frank"].clone(),
        folder,
    }
}

async fn actions(store: &dyn Store, id: i64) -> Vec<String> {
    store
        .audit_events_for_request(id)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.action)
        .collect()
}

async fn traces(store: &dyn Store, id: i64) -> Vec<(TraceStage, TraceOutcome)> {
    store
        .traces_for_request(id)
        .await
        .unwrap()
        .into_iter()
        .map(|t| (t.stage, t.outcome))
        .collect()
}

/// Who hears what (NoticeKind has no order, so its name stands in).
fn kinds(notices: &[Notice]) -> BTreeSet<(i64, String)> {
    set(&notices
        .iter()
        .map(|n| (n.user_id, n.kind))
        .collect::<Vec<_>>())
}

fn set(items: &[(i64, NoticeKind)]) -> BTreeSet<(i64, String)> {
    items.iter().map(|(u, k)| (*u, format!("{k:?}"))).collect()
}

async fn count(db: &Db, table: &str) -> i64 {
    db.raw
        .texts(&format!("SELECT CAST(COUNT(*) AS TEXT) FROM {table}"))
        .await
        .unwrap()[0]
        .parse()
        .unwrap()
}

use RequestStatus::*;
use TraceOutcome::{Allow, Deny as TDeny, Pending as TPending};
use TraceStage::*;

// ---- submit ------------------------------------------------------------------------------------

async fn low_auto_approves_with_its_lease_and_a_preflight_but_no_share(db: Db) {
    let w = world(&db).await;
    let record = w.record("ops-low").await;
    let change = w.submit(&w.alice, "ops-low", 7200).await.unwrap();
    let r = &change.request;
    assert_eq!(change.event, Event::Approved);
    assert_eq!(r.status, Approved);
    assert_eq!(r.lease_started_at, Some(t0()));
    assert_eq!(r.lease_expires_at, Some(t0().plus(Duration::hours(2))));
    assert_eq!(r.approved_duration_secs, Some(7200));
    assert_eq!((r.max_issuances, r.issuance_count), (3, 0));
    assert!(!r.otp_required && !r.review_required);
    assert_eq!(r.next_attempt_at, None);
    assert_eq!(
        actions(w.store.as_ref(), r.id).await,
        ["REQUEST_SUBMITTED", "REQUEST_AUTO_APPROVED"]
    );
    assert_eq!(
        traces(w.store.as_ref(), r.id).await,
        [(RequestSubmission, Allow), (ApprovalDecision, Allow)]
    );
    // The preflight asked the vault about the record and created nothing.
    assert_eq!(
        w.sharer.calls(),
        [Call::List {
            uid: record.vault_uid.clone()
        }]
    );
    assert_eq!(w.sharer.live_total(), 0);
    assert_eq!(
        kinds(&change.notices),
        set(&[(w.alice.id, NoticeKind::StatusChanged)])
    );
}

async fn medium_routes_to_its_approvers(db: Db) {
    let w = world(&db).await;
    let change = w.submit(&w.alice, "ops-medium", 3600).await.unwrap();
    let r = &change.request;
    assert_eq!((change.event, r.status), (Event::Routed, Pending));
    assert_eq!(r.lease_started_at, None);
    assert_eq!(r.required_approvals, 1);
    assert_eq!(
        kinds(&change.notices),
        set(&[
            (w.bob.id, NoticeKind::ApprovalNeeded),
            (w.dave.id, NoticeKind::ApprovalNeeded)
        ])
    );
    assert_eq!(actions(w.store.as_ref(), r.id).await, ["REQUEST_SUBMITTED"]);
    assert_eq!(
        traces(w.store.as_ref(), r.id).await,
        [
            (RequestSubmission, TPending),
            (AuthorityResolution, TPending)
        ]
    );
    assert!(w.sharer.calls().is_empty(), "no preflight before approval");
}

async fn policy_denies_a_record_outside_the_requesters_folders(db: Db) {
    let w = world(&db).await;
    let change = w.submit(&w.erin, "ops-low", 3600).await.unwrap();
    let r = &change.request;
    assert_eq!((change.event, r.status), (Event::DeniedByPolicy, Denied));
    assert!(
        change
            .reasons
            .iter()
            .any(|m| m.contains("not in a vault folder you can see")),
        "{:?}",
        change.reasons
    );
    assert_eq!(r.decided_at, Some(t0()));
    assert_eq!(r.lease_started_at, None);
    assert_eq!(actions(w.store.as_ref(), r.id).await, ["REQUEST_SUBMITTED"]);
    let stored = w.store.traces_for_request(r.id).await.unwrap();
    assert_eq!(
        stored
            .iter()
            .map(|t| (t.stage, t.outcome))
            .collect::<Vec<_>>(),
        [(RequestSubmission, TDeny)]
    );
    assert!(
        stored[0].reasons.0.to_string().contains("vault folder"),
        "the trace says why"
    );
    assert!(change.notices.is_empty());
    assert!(w.sharer.calls().is_empty());
}

async fn a_record_nobody_can_approve_goes_to_triage_and_an_admin_decides(db: Db) {
    let w = world(&db).await;
    let change = w.submit(&w.alice, "ops-orphan", 3600).await.unwrap();
    let id = change.request.id;
    assert_eq!(
        (change.event, change.request.status),
        (Event::Triaged, RequiresTriage)
    );
    assert!(
        change
            .reasons
            .iter()
            .any(|m| m.contains("nobody can approve")),
        "{:?}",
        change.reasons
    );
    assert_eq!(
        kinds(&change.notices),
        set(&[
            (w.carol.id, NoticeKind::TriageNeeded),
            (w.frank.id, NoticeKind::TriageNeeded)
        ])
    );
    assert_eq!(
        traces(w.store.as_ref(), id).await,
        [(RequestSubmission, TPending)]
    );

    // Nobody but the admins may even see it, non-admins can't triage, a reason is required.
    assert!(matches!(
        w.life.approve(&w.bob, id, None).await,
        Err(LifecycleError::NotYours(x)) if x == id
    ));
    assert!(matches!(
        w.life.triage(&w.bob, id, true, "looks fine").await,
        Err(LifecycleError::NotAdmin)
    ));
    assert!(matches!(
        w.life.triage(&w.carol, id, true, "  ").await,
        Err(LifecycleError::BadInput(_))
    ));
    assert_eq!(w.request(id).await.status, RequiresTriage);

    w.clock.advance(Duration::minutes(10));
    let now = w.clock.now();
    let decided = w
        .life
        .triage(&w.carol, id, true, "confirmed with the record owner")
        .await
        .unwrap();
    let r = &decided.request;
    assert_eq!((decided.event, r.status), (Event::Approved, Approved));
    assert_eq!(r.decided_by, Some(w.carol.id));
    assert_eq!(
        r.decision_reason.as_deref(),
        Some("confirmed with the record owner")
    );
    assert_eq!(r.lease_started_at, Some(now));
    assert_eq!(r.lease_expires_at, Some(now.plus(Duration::hours(1))));
    assert_eq!(
        actions(w.store.as_ref(), id).await,
        ["REQUEST_SUBMITTED", "TRIAGE_APPROVED"]
    );
    assert_eq!(
        traces(w.store.as_ref(), id).await,
        [(RequestSubmission, TPending), (ApprovalDecision, Allow)]
    );
    assert_eq!(w.sharer.count(Op::List), 1, "the preflight ran");
    // Decided once: a second admin is told who decided.
    match w.life.triage(&w.frank, id, false, "no").await {
        Err(LifecycleError::AlreadyDecided { by, status, .. }) => {
            assert_eq!(status, Approved);
            assert_eq!(by.as_deref(), Some(w.carol.display_name.as_str()));
        }
        other => panic!("{:?}", other.map(|c| c.event)),
    }

    // A triage denial.
    let other = w.submit(&w.alice, "ops-orphan", 3600).await;
    assert!(
        matches!(other, Err(LifecycleError::AlreadyOpen(open)) if open == id),
        "one open request per record"
    );
    w.life.release(&w.alice, id).await.unwrap();
    let id2 = w
        .submit(&w.alice, "ops-orphan", 3600)
        .await
        .unwrap()
        .request
        .id;
    let denied = w
        .life
        .triage(&w.frank, id2, false, "not for this team")
        .await
        .unwrap();
    assert_eq!(
        (denied.event, denied.request.status),
        (Event::Denied, Denied)
    );
    assert_eq!(
        actions(w.store.as_ref(), id2).await,
        ["REQUEST_SUBMITTED", "TRIAGE_DENIED"]
    );
    assert_eq!(
        traces(w.store.as_ref(), id2).await,
        [(RequestSubmission, TPending), (ApprovalDecision, TDeny)]
    );
}

/// A duration over the record's cap or too short a justification is an input error: answered,
/// with no request and no audit event. A refusal by any other rule, or by the reason rule on the
/// justification's content (no ticket), is a policy denial and stays a DENIED request.
async fn input_errors_write_nothing_and_policy_denials_stay_denials(db: Db) {
    let w = world(&db).await;
    let written = || async {
        (
            count(&db, "requests").await,
            count(&db, "audit_events").await,
        )
    };
    let before = written().await;
    match w.submit(&w.alice, "ops-critical", 2 * 3600).await {
        Err(LifecycleError::BadInput(problem)) => {
            assert!(problem.contains("ops-critical"), "{problem}");
            assert!(problem.contains("at most 1h"), "{problem}");
        }
        other => panic!("{:?}", other.map(|c| c.request.status)),
    }
    let short = Submission {
        record: "ops-low".into(),
        duration_secs: Some(3600),
        justification: "  short  ".into(),
        ticket_id: None,
        break_glass: false,
    };
    match w.life.submit(&w.alice, &short).await {
        Err(LifecycleError::BadInput(problem)) => {
            assert!(problem.contains("at least 8 characters"), "{problem}")
        }
        other => panic!("{:?}", other.map(|c| c.request.status)),
    }
    assert_eq!(written().await, before, "an input error writes nothing");

    // Erin cannot see the record: a policy denial, even with a duration over the cap too.
    let hidden = w.submit(&w.erin, "ops-low", 9 * 86_400).await.unwrap();
    assert_eq!(
        (hidden.event, hidden.request.status),
        (Event::DeniedByPolicy, Denied)
    );
    assert_eq!(
        actions(w.store.as_ref(), hidden.request.id).await,
        ["REQUEST_SUBMITTED"]
    );
    // A HIGH record without a ticket: the policy rejects the reason by content.
    let no_ticket = Submission {
        record: "ops-high".into(),
        duration_secs: Some(3600),
        justification: "restoring the service".into(),
        ticket_id: None,
        break_glass: false,
    };
    let denied = w.life.submit(&w.alice, &no_ticket).await.unwrap();
    assert_eq!(denied.request.status, Denied);
    assert!(
        denied.reasons.iter().any(|r| r.contains("ticket")),
        "{:?}",
        denied.reasons
    );
}

async fn refused_submissions_write_nothing(db: Db) {
    let w = world(&db).await;
    let before = (
        count(&db, "requests").await,
        count(&db, "audit_events").await,
    );

    match w.submit(&w.alice, "db-prod", 3600).await {
        Err(LifecycleError::Record(passkey::governance::admin::AdminError::AmbiguousRecord {
            candidates,
            ..
        })) => {
            assert_eq!(candidates.len(), 2);
            assert!(candidates.iter().any(|c| c.contains("db-prod-eu")));
            assert!(candidates.iter().any(|c| c.contains("db-prod-us")));
        }
        other => panic!("{:?}", other.map(|c| c.event)),
    }
    assert!(matches!(
        w.submit(&w.alice, "no-such-record", 3600).await,
        Err(LifecycleError::Record(
            passkey::governance::admin::AdminError::UnknownRecord(_)
        ))
    ));
    for secs in [0, -60] {
        assert!(matches!(
            w.submit(&w.alice, "ops-low", secs).await,
            Err(LifecycleError::BadInput(_))
        ));
    }
    let long = Submission {
        record: "ops-low".into(),
        duration_secs: Some(3600),
        justification: "x".repeat(501),
        ticket_id: None,
        break_glass: false,
    };
    assert!(matches!(
        w.life.submit(&w.alice, &long).await,
        Err(LifecycleError::BadInput(_))
    ));
    assert_eq!(
        (
            count(&db, "requests").await,
            count(&db, "audit_events").await
        ),
        before,
        "refused input writes nothing"
    );

    // A duplicate open request is refused, by uid too, and writes nothing.
    let open = w
        .submit(&w.alice, "ops-medium", 3600)
        .await
        .unwrap()
        .request;
    let before = (
        count(&db, "requests").await,
        count(&db, "audit_events").await,
    );
    for query in ["ops-medium", uid("ops-medium").as_str()] {
        assert!(matches!(
            w.submit(&w.alice, query, 3600).await,
            Err(LifecycleError::AlreadyOpen(id)) if id == open.id
        ));
    }
    assert_eq!(
        (
            count(&db, "requests").await,
            count(&db, "audit_events").await
        ),
        before
    );
    assert!(w.sharer.calls().is_empty());
}

// ---- approve / deny ----------------------------------------------------------------------------

async fn non_approvers_and_self_approval_are_refused(db: Db) {
    let w = world(&db).await;
    let id = w
        .submit(&w.alice, "ops-medium", 3600)
        .await
        .unwrap()
        .request
        .id;
    // Erin has no part in the request: she may not even see it, and learns nothing of it.
    assert!(matches!(
        w.life.approve(&w.erin, id, None).await,
        Err(LifecycleError::NotYours(x)) if x == id
    ));
    assert!(matches!(
        w.life.deny(&w.erin, id, Some("no")).await,
        Err(LifecycleError::NotYours(x)) if x == id
    ));
    // Carol, an admin, may see it but is no approver of it: the policy refuses her.
    match w.life.approve(&w.carol, id, None).await {
        Err(LifecycleError::Refused(reasons)) => assert!(
            reasons.iter().any(|r| r.contains("not an approver")),
            "{reasons:?}"
        ),
        other => panic!("{:?}", other.map(|c| c.event)),
    }
    assert!(matches!(
        w.life.deny(&w.carol, id, Some("no")).await,
        Err(LifecycleError::Refused(_))
    ));
    let r = w.request(id).await;
    assert_eq!((r.status, r.decided_by), (Pending, None));
    assert!(w.store.approvals_for_request(id).await.unwrap().is_empty());
    assert_eq!(
        actions(w.store.as_ref(), id).await,
        ["REQUEST_SUBMITTED", "APPROVAL_REFUSED", "DENIAL_REFUSED"]
    );
    assert_eq!(
        traces(w.store.as_ref(), id).await,
        [
            (RequestSubmission, TPending),
            (AuthorityResolution, TPending),
            (ApprovalDecision, TDeny),
            (ApprovalDecision, TDeny)
        ]
    );

    // bob owns ops-medium and asks for it himself: routed to dave only, and bob can't approve it.
    let own = w.submit(&w.bob, "ops-medium", 3600).await.unwrap();
    assert_eq!(
        kinds(&own.notices),
        set(&[(w.dave.id, NoticeKind::ApprovalNeeded)])
    );
    match w.life.approve(&w.bob, own.request.id, None).await {
        Err(LifecycleError::Refused(reasons)) => assert!(
            reasons.iter().any(|r| r.contains("your own request")),
            "{reasons:?}"
        ),
        other => panic!("{:?}", other.map(|c| c.event)),
    }
    assert_eq!(w.request(own.request.id).await.status, Pending);
    assert_eq!(
        actions(w.store.as_ref(), own.request.id).await,
        ["REQUEST_SUBMITTED", "APPROVAL_REFUSED"]
    );
}

async fn critical_needs_two_distinct_approvals(db: Db) {
    let w = world(&db).await;
    let change = w.submit(&w.alice, "ops-critical", 3600).await.unwrap();
    let id = change.request.id;
    assert_eq!(change.request.status, Pending);
    assert_eq!(change.request.required_approvals, 2);
    assert!(
        change.request.otp_required,
        "CRITICAL ≥ HIGH needs a second factor"
    );

    let first = w
        .life
        .approve(&w.bob, id, Some("ok from me"))
        .await
        .unwrap();
    assert_eq!(
        (first.event, first.request.status),
        (Event::ApprovalRecorded, Pending)
    );
    assert_eq!(first.request.lease_started_at, None);
    // The same approver can't count twice.
    assert!(matches!(
        w.life.approve(&w.bob, id, None).await,
        Err(LifecycleError::Refused(_))
    ));
    assert_eq!(w.store.approvals_for_request(id).await.unwrap().len(), 1);

    w.clock.advance(Duration::minutes(5));
    let second = w.life.approve(&w.dave, id, None).await.unwrap();
    assert_eq!(
        (second.event, second.request.status),
        (Event::Approved, Approved)
    );
    assert_eq!(second.request.decided_by, Some(w.dave.id));
    assert_eq!(second.request.lease_started_at, Some(w.clock.now()));
    let approvals = w.store.approvals_for_request(id).await.unwrap();
    assert_eq!(
        approvals
            .iter()
            .map(|a| (a.approver_id, a.decision))
            .collect::<Vec<_>>(),
        [
            (w.bob.id, ApprovalDecision::Approve),
            (w.dave.id, ApprovalDecision::Approve)
        ]
    );
    assert_eq!(
        actions(w.store.as_ref(), id).await,
        [
            "REQUEST_SUBMITTED",
            "APPROVAL_RECORDED",
            "APPROVAL_REFUSED",
            "REQUEST_APPROVED"
        ]
    );
    assert_eq!(
        traces(w.store.as_ref(), id).await,
        [
            (RequestSubmission, TPending),
            (AuthorityResolution, TPending),
            (ApprovalDecision, TPending),
            (ApprovalDecision, TDeny),
            (ApprovalDecision, Allow)
        ]
    );
    // Late click after the decision.
    match w.life.approve(&w.bob, id, None).await {
        Err(LifecycleError::AlreadyDecided { by, status, at, .. }) => {
            assert_eq!(status, Approved);
            assert_eq!(by.as_deref(), Some(w.dave.display_name.as_str()));
            assert_eq!(at, Some(w.clock.now()));
        }
        other => panic!("{:?}", other.map(|c| c.event)),
    }
}

async fn a_denial_decides_and_late_clicks_are_told_who_decided(db: Db) {
    let w = world(&db).await;
    let id = w
        .submit(&w.alice, "ops-medium", 3600)
        .await
        .unwrap()
        .request
        .id;
    let denied = w
        .life
        .deny(&w.dave, id, Some("use the read replica"))
        .await
        .unwrap();
    assert_eq!(
        (denied.event, denied.request.status),
        (Event::Denied, Denied)
    );
    assert_eq!(denied.request.decided_by, Some(w.dave.id));
    assert_eq!(
        denied.request.decision_reason.as_deref(),
        Some("use the read replica")
    );
    assert!(denied.reasons[0].contains("use the read replica"));
    assert_eq!(
        kinds(&denied.notices),
        set(&[(w.alice.id, NoticeKind::StatusChanged)])
    );
    assert_eq!(
        actions(w.store.as_ref(), id).await,
        ["REQUEST_SUBMITTED", "REQUEST_DENIED"]
    );
    assert_eq!(
        traces(w.store.as_ref(), id).await,
        [
            (RequestSubmission, TPending),
            (AuthorityResolution, TPending),
            (ApprovalDecision, TDeny)
        ]
    );
    for late in [
        w.life.approve(&w.bob, id, None).await,
        w.life.deny(&w.bob, id, None).await,
    ] {
        match late {
            Err(e @ LifecycleError::AlreadyDecided { .. }) => {
                let text = e.to_string();
                assert!(text.contains("denied by Dave Test"), "{text}");
            }
            other => panic!("{:?}", other.map(|c| c.event)),
        }
    }
    assert_eq!(
        actions(w.store.as_ref(), id).await.len(),
        2,
        "late clicks write nothing"
    );
    assert!(w.sharer.calls().is_empty());
}

// ---- preflight ---------------------------------------------------------------------------------

async fn a_terminal_preflight_makes_the_request_unfulfillable(db: Db) {
    let w = world(&db).await;
    w.sharer.fail_next(Op::List, ErrorClass::Terminal, 1);
    let change = w.submit(&w.alice, "ops-low", 3600).await.unwrap();
    let r = &change.request;
    assert_eq!(
        (change.event, r.status),
        (Event::Unfulfillable, Unfulfillable)
    );
    assert_eq!(r.preflight_attempts, 1);
    assert_eq!(r.next_attempt_at, None);
    assert_eq!(r.ended_at, Some(t0()));
    assert_eq!(
        r.decision_reason.as_deref(),
        Some("The record does not exist")
    );
    assert_eq!(
        actions(w.store.as_ref(), r.id).await,
        [
            "REQUEST_SUBMITTED",
            "REQUEST_AUTO_APPROVED",
            "REQUEST_UNFULFILLABLE"
        ]
    );
    assert_eq!(
        traces(w.store.as_ref(), r.id).await,
        [
            (RequestSubmission, Allow),
            (ApprovalDecision, Allow),
            (IssuanceCheck, TDeny)
        ]
    );
    assert!(matches!(
        w.life.mint_issuance_token(&w.alice, r.id).await,
        Err(LifecycleError::WrongState { .. })
    ));
    assert_eq!(w.sharer.count(Op::Create), 0);
}

async fn a_transient_preflight_is_retried_on_the_backoff_schedule(db: Db) {
    let w = world(&db).await;
    let record = w.record("ops-low").await;
    w.sharer.fail_next(Op::List, ErrorClass::Transient, 2);
    let change = w.submit(&w.alice, "ops-low", 3600).await.unwrap();
    let id = change.request.id;
    assert_eq!(
        (change.event, change.request.status),
        (Event::Approved, Approved)
    );
    assert_eq!(change.request.preflight_attempts, 1);
    let first_retry = t0().plus(Duration::seconds(30));
    assert_eq!(change.request.next_attempt_at, Some(first_retry));

    // Not due a second early; due at the time.
    let claim = |now: Timestamp| {
        let store = w.store.clone();
        async move {
            store
                .claim_due(
                    DueWork::Preflight,
                    now,
                    now,
                    "scheduler-a",
                    now.plus(Duration::minutes(5)),
                    10,
                )
                .await
                .unwrap()
        }
    };
    w.clock.advance(Duration::seconds(29));
    assert!(claim(w.clock.now()).await.is_empty());
    w.clock.advance(Duration::seconds(1));
    let due = claim(w.clock.now()).await;
    assert_eq!(due.iter().map(|r| r.id).collect::<Vec<_>>(), [id]);
    let (r, event, _) = w
        .life
        .preflight(due.into_iter().next().unwrap(), &record)
        .await
        .unwrap();
    w.store.release_claim(id, "scheduler-a").await.unwrap();
    assert_eq!((event, r.status), (Event::PreflightDeferred, Approved));
    assert_eq!(r.preflight_attempts, 2);
    let second_retry = first_retry.plus(Duration::seconds(60));
    assert_eq!(r.next_attempt_at, Some(second_retry));

    w.clock.set(second_retry.minus(Duration::seconds(1)));
    assert!(claim(w.clock.now()).await.is_empty());
    w.clock.set(second_retry);
    let due = claim(w.clock.now()).await;
    assert_eq!(due.len(), 1);
    let (r, event, _) = w
        .life
        .preflight(due.into_iter().next().unwrap(), &record)
        .await
        .unwrap();
    w.store.release_claim(id, "scheduler-a").await.unwrap();
    assert_eq!((event, r.status), (Event::PreflightPassed, Approved));
    assert_eq!((r.preflight_attempts, r.next_attempt_at), (3, None));
    assert!(
        claim(w.clock.now().plus(Duration::hours(1)))
            .await
            .is_empty()
    );
    assert_eq!(w.sharer.count(Op::List), 3);
    assert_eq!(w.sharer.count(Op::Create), 0);
    assert_eq!(
        actions(w.store.as_ref(), id).await,
        [
            "REQUEST_SUBMITTED",
            "REQUEST_AUTO_APPROVED",
            "VAULT_PREFLIGHT_DEFERRED",
            "VAULT_PREFLIGHT_DEFERRED",
            "VAULT_PREFLIGHT_PASSED"
        ]
    );
    let deferred = w.store.audit_events_for_request(id).await.unwrap();
    assert_eq!(
        deferred[2].detail.0["next_attempt_at"],
        first_retry.to_fixed_text()
    );
    assert_eq!(deferred[2].created_at, t0());
    // The lease can be used now.
    assert!(w.retrieve(&w.alice, id).await.is_ok());
}

async fn a_preflight_that_never_passes_spends_its_budget(db: Db) {
    let w = world(&db).await;
    let record = w.record("ops-low").await;
    w.sharer.fail_next(Op::List, ErrorClass::Transient, 10);
    let mut r = w.submit(&w.alice, "ops-low", 86400).await.unwrap().request;
    let mut waits = vec![];
    while r.status == Approved {
        let next = r.next_attempt_at.expect("a retry is scheduled");
        waits.push(next.since(w.clock.now()).whole_seconds());
        w.clock.set(next);
        r = w.life.preflight(r, &record).await.unwrap().0;
    }
    // 3 retries after the first attempt (30 s, 1 m, 2 m), then it gives up.
    assert_eq!(waits, [30, 60, 120]);
    assert_eq!(r.status, Unfulfillable);
    assert_eq!((r.preflight_attempts, r.next_attempt_at), (4, None));
    assert_eq!(w.sharer.count(Op::List), 4);
    let acts = actions(w.store.as_ref(), r.id).await;
    assert_eq!(
        acts.iter()
            .filter(|a| *a == "VAULT_PREFLIGHT_DEFERRED")
            .count(),
        3
    );
    assert_eq!(acts.last().unwrap(), "REQUEST_UNFULFILLABLE");
    assert_eq!(
        traces(w.store.as_ref(), r.id).await.last(),
        Some(&(IssuanceCheck, TDeny))
    );
}

// ---- retrieve ----------------------------------------------------------------------------------

async fn retrieval_returns_the_url_once_and_stores_only_its_hash(db: Db) {
    let w = world(&db).await;
    let record = w.record("ops-low").await;
    let id = w
        .submit(&w.alice, "ops-low", 3600)
        .await
        .unwrap()
        .request
        .id;
    w.clock.advance(Duration::minutes(1));

    // Someone else's request: refused and audited.
    assert!(matches!(
        w.life.mint_issuance_token(&w.bob, id).await,
        Err(LifecycleError::NotYours(x)) if x == id
    ));

    let minted = w.life.mint_issuance_token(&w.alice, id).await.unwrap();
    assert_eq!(minted.issuances_left, 3);
    assert_eq!(
        minted.expires_at,
        w.clock.now().plus(Duration::seconds(300))
    );
    let token = minted.token.expose_secret().to_string();
    assert_eq!(token.len(), 43, "32 random bytes, base64url");
    assert_eq!(
        w.request(id).await.issuance_token_hash.as_deref(),
        Some(sha256_hex(&token).as_str()),
        "only the token's hash is stored"
    );

    // A wrong token: refused, audited, nothing used up.
    let wrong = SecretString::from("not-the-token".to_string());
    assert!(matches!(
        w.life
            .exchange_token(&w.alice, id, &wrong, ClientInfo::default())
            .await,
        Err(LifecycleError::TokenMismatch)
    ));
    // Someone else presenting the right token.
    assert!(matches!(
        w.life
            .exchange_token(&w.bob, id, &minted.token, ClientInfo::default())
            .await,
        Err(LifecycleError::NotYours(_))
    ));
    assert_eq!(w.request(id).await.issuance_count, 0);
    assert_eq!(w.sharer.count(Op::Create), 0);

    let got = w
        .life
        .exchange_token(
            &w.alice,
            id,
            &minted.token,
            ClientInfo {
                ip: Some("203.0.113.9".into()),
                user_agent: Some("Edge".into()),
            },
        )
        .await
        .unwrap();
    let url = got.url.expose().to_string();
    assert!(url.starts_with("https://keepersecurity.com/vault/share/#"));
    assert_eq!(format!("{:?}", got.url), "ShareUrl([REDACTED])");
    assert_eq!((got.issuance_count, got.max_issuances), (1, 3));
    assert_eq!(got.expires_at, t0().plus(Duration::hours(1)));
    let r = w.request(id).await;
    assert_eq!((r.status, r.issuance_count), (Issued, 1));
    assert_eq!(r.issuance_token_hash, None, "the token is used up");
    let events = w.store.issuances_for_request(id).await.unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].share_link_hash, sha256_hex(&url));
    assert_eq!(
        Some(events[0].vault_share_id.clone()),
        share_id_from_url(&url)
    );
    assert_eq!(events[0].client_ip.as_deref(), Some("203.0.113.9"));
    assert_eq!(events[0].revoked_at, None);
    match &w.sharer.calls()[1] {
        Call::Create {
            uid,
            name,
            ttl_secs,
        } => {
            assert_eq!(uid, &record.vault_uid);
            assert_eq!(name, &format!("{id}-1"));
            assert_eq!(*ttl_secs, 59 * 60, "the share lives as long as the lease");
        }
        other => panic!("{other:?}"),
    }

    // The used token can't be reused.
    assert!(matches!(
        w.life
            .exchange_token(&w.alice, id, &minted.token, ClientInfo::default())
            .await,
        Err(LifecycleError::TokenMismatch)
    ));
    // A minted token replaces the previous unused one.
    let stale = w.life.mint_issuance_token(&w.alice, id).await.unwrap();
    let fresh = w.life.mint_issuance_token(&w.alice, id).await.unwrap();
    assert!(matches!(
        w.life
            .exchange_token(&w.alice, id, &stale.token, ClientInfo::default())
            .await,
        Err(LifecycleError::TokenMismatch)
    ));
    w.life
        .exchange_token(&w.alice, id, &fresh.token, ClientInfo::default())
        .await
        .unwrap();
    // An expired token.
    let late = w.life.mint_issuance_token(&w.alice, id).await.unwrap();
    w.clock.advance(Duration::seconds(301));
    assert!(matches!(
        w.life
            .exchange_token(&w.alice, id, &late.token, ClientInfo::default())
            .await,
        Err(LifecycleError::TokenMismatch)
    ));
    let third = w.retrieve(&w.alice, id).await.unwrap();
    assert_eq!(third.issuance_count, 3);
    // max_issuances reached.
    assert!(matches!(
        w.life.mint_issuance_token(&w.alice, id).await,
        Err(LifecycleError::NoRetrievalsLeft(x)) if x == id
    ));
    assert_eq!(w.sharer.live(&record.vault_uid).len(), 3);
    assert_eq!(w.store.issuances_for_request(id).await.unwrap().len(), 3);
    assert_eq!(w.request(id).await.issuance_count, 3);

    let acts = actions(w.store.as_ref(), id).await;
    let n = |a: &str| acts.iter().filter(|x| *x == a).count();
    assert_eq!(n("ISSUANCE_TOKEN_MINTED"), 5);
    assert_eq!(n("ISSUANCE_TOKEN_MISMATCH"), 4);
    assert_eq!(n("ISSUANCE_SUCCEEDED"), 3);
    assert_eq!(n("ACCESS_DENIED_NOT_REQUESTER"), 2);
    assert_eq!(
        traces(w.store.as_ref(), id)
            .await
            .iter()
            .filter(|t| **t == (IssuanceEvent, Allow))
            .count(),
        3
    );
}

async fn a_passing_vault_failure_uses_nothing_up(db: Db) {
    let w = world(&db).await;
    let id = w
        .submit(&w.alice, "ops-low", 3600)
        .await
        .unwrap()
        .request
        .id;
    let minted = w.life.mint_issuance_token(&w.alice, id).await.unwrap();
    for class in [ErrorClass::Transient, ErrorClass::NeedsOperator] {
        w.sharer.fail_next(Op::Create, class, 1);
        assert!(matches!(
            w.life
                .exchange_token(&w.alice, id, &minted.token, ClientInfo::default())
                .await,
            Err(LifecycleError::VaultUnavailable)
        ));
        let r = w.request(id).await;
        assert_eq!((r.status, r.issuance_count), (Approved, 0));
        assert!(r.issuance_token_hash.is_some(), "the token is put back");
    }
    assert!(w.store.issuances_for_request(id).await.unwrap().is_empty());
    // The same token works once the vault answers.
    let got = w
        .life
        .exchange_token(&w.alice, id, &minted.token, ClientInfo::default())
        .await
        .unwrap();
    assert_eq!(got.issuance_count, 1);
    assert_eq!(w.sharer.live_total(), 1);
    assert_eq!(
        actions(w.store.as_ref(), id).await,
        [
            "REQUEST_SUBMITTED",
            "REQUEST_AUTO_APPROVED",
            "ISSUANCE_TOKEN_MINTED",
            "ISSUANCE_VAULT_FAIL",
            "ISSUANCE_VAULT_FAIL",
            "ISSUANCE_SUCCEEDED"
        ]
    );
}

async fn a_terminal_vault_failure_makes_an_unissued_lease_unfulfillable(db: Db) {
    let w = world(&db).await;
    let id = w
        .submit(&w.alice, "ops-low", 3600)
        .await
        .unwrap()
        .request
        .id;
    w.sharer.fail_next(Op::Create, ErrorClass::Terminal, 1);
    assert!(matches!(
        w.retrieve(&w.alice, id).await,
        Err(LifecycleError::VaultRefused(_))
    ));
    let r = w.request(id).await;
    assert_eq!((r.status, r.issuance_count), (Unfulfillable, 0));
    assert_eq!(r.issuance_token_hash, None);
    // #15.8: the state change has its own event, as on the approval path.
    assert_eq!(
        actions(w.store.as_ref(), id).await,
        [
            "REQUEST_SUBMITTED",
            "REQUEST_AUTO_APPROVED",
            "ISSUANCE_TOKEN_MINTED",
            "ISSUANCE_VAULT_FAIL",
            "REQUEST_UNFULFILLABLE"
        ]
    );

    // Once issued, a terminal failure leaves the lease (and its share) as it is.
    let id = w
        .submit(&w.alice, "db-prod-eu", 3600)
        .await
        .unwrap()
        .request
        .id;
    w.retrieve(&w.alice, id).await.unwrap();
    w.sharer.fail_next(Op::Create, ErrorClass::Terminal, 1);
    assert!(matches!(
        w.retrieve(&w.alice, id).await,
        Err(LifecycleError::VaultRefused(_))
    ));
    let r = w.request(id).await;
    assert_eq!((r.status, r.issuance_count), (Issued, 1));
}

/// #15.8: the process dies (kill -9) while the vault is slowly creating the share. Nothing after
/// that point runs, so the retrieval's reservation is never given back by the code that took it.
/// It must not hold a retrieval forever: once no live retrieval could still be running, the next
/// one reclaims it, and every retrieval the lease allows can still be made.
async fn a_retrieval_killed_mid_share_does_not_hold_its_reservation_forever(db: Db) {
    let w = world(&db).await;
    let id = w
        .submit(&w.alice, "ops-low", 3600)
        .await
        .unwrap()
        .request
        .id;
    let max = w.request(id).await.max_issuances;
    w.sharer.set_after_create(std::future::pending::<()>);
    let minted = w.life.mint_issuance_token(&w.alice, id).await.unwrap();
    let (life, alice) = (w.life.clone(), w.alice.clone());
    let retrieval = tokio::spawn(async move {
        life.exchange_token(&alice, id, &minted.token, ClientInfo::default())
            .await
    });
    while w.sharer.live_total() == 0 {
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    retrieval.abort();
    assert!(matches!(retrieval.await, Err(e) if e.is_cancelled()));
    w.sharer.set_after_create(|| async {});
    assert_eq!(
        w.request(id).await.issuances_in_flight,
        1,
        "held by the dead retrieval"
    );
    // Five minutes on, a slow retrieval could still be alive: its reservation still counts.
    w.clock.advance(Duration::minutes(5));
    for _ in 1..max {
        w.retrieve(&w.alice, id).await.unwrap();
    }
    let held = w.retrieve(&w.alice, id).await;
    assert!(
        matches!(held, Err(LifecycleError::RetrievalInProgress(_))),
        "{:?}",
        held.err()
    );
    // Past any live retrieval's time, the dead one's reservation is reclaimed.
    w.clock.advance(Duration::minutes(6));
    let last = w.retrieve(&w.alice, id).await.unwrap();
    assert_eq!(last.issuance_count, max);
    let r = w.request(id).await;
    assert_eq!((r.issuance_count, r.issuances_in_flight), (max, 0));
}

async fn an_unrecorded_share_is_removed_again(db: Db) {
    let w = world(&db).await;
    let record = w.record("ops-low").await;
    let id = w
        .submit(&w.alice, "ops-low", 3600)
        .await
        .unwrap()
        .request
        .id;
    // An admin revokes the lease while the vault is creating the share: it can't be recorded.
    let (life, carol) = (w.life.clone(), w.carol.clone());
    w.sharer.set_after_create(move || {
        let (life, carol) = (life.clone(), carol.clone());
        async move {
            life.revoke(&carol, id, "ended meanwhile").await.unwrap();
        }
    });
    // …and removing it by id fails once, so it is removed by name.
    w.sharer.fail_next(Op::Remove, ErrorClass::Transient, 1);
    let result = w.retrieve(&w.alice, id).await;
    assert!(
        matches!(result, Err(LifecycleError::NoRetrievalsLeft(_))),
        "{:?}",
        result.err()
    );
    assert!(
        w.sharer.live(&record.vault_uid).is_empty(),
        "no orphan left"
    );
    let calls = w.sharer.calls();
    let Call::Create { name, .. } = &calls[1] else {
        panic!("{calls:?}")
    };
    assert!(matches!(&calls[2], Call::Remove { id_or_name, .. } if id_or_name != name));
    assert!(matches!(&calls[3], Call::Remove { id_or_name, .. } if id_or_name == name));
    let r = w.request(id).await;
    assert_eq!((r.status, r.issuance_count), (Expired, 0));
    assert!(w.store.issuances_for_request(id).await.unwrap().is_empty());
    assert!(
        !actions(w.store.as_ref(), id)
            .await
            .contains(&"ISSUANCE_SUCCEEDED".to_string())
    );
}

async fn a_high_record_needs_a_second_factor(db: Db) {
    let w = world(&db).await;
    let change = w.submit(&w.alice, "ops-high", 3600).await.unwrap();
    let id = change.request.id;
    assert!(change.request.otp_required);
    let approved = w.life.approve(&w.dave, id, None).await.unwrap();
    assert_eq!(approved.request.status, Approved);
    let minted = w.life.mint_issuance_token(&w.alice, id).await.unwrap();
    assert!(matches!(
        w.life
            .exchange_token(&w.alice, id, &minted.token, ClientInfo::default())
            .await,
        Err(LifecycleError::SecondFactorRequired)
    ));
    assert_eq!(w.request(id).await.issuance_count, 0);
    assert_eq!(w.sharer.count(Op::Create), 0);
    // The token is still good once the second factor is verified.
    let proof = w.prove(&w.alice, id, &minted.token).await;
    let got = w
        .life
        .exchange_proven(&w.alice, id, &proof, ClientInfo::default())
        .await
        .unwrap();
    assert_eq!(got.issuance_count, 1);
}

/// Step 1 checks the token without using it (a wrong one is audited); step 2 uses it by the
/// hash step 1 returned, which the verified challenge's proof carries. A token minted in between replaces the bound one, and a used hash is
/// never good twice.
async fn a_two_step_retrieval_uses_the_token_bound_to_the_verified_challenge(db: Db) {
    let w = world(&db).await;
    let id = w
        .submit(&w.alice, "ops-high", 3600)
        .await
        .unwrap()
        .request
        .id;
    w.life.approve(&w.dave, id, None).await.unwrap();
    let minted = w.life.mint_issuance_token(&w.alice, id).await.unwrap();

    let wrong = SecretString::from("A".repeat(43));
    assert!(matches!(
        w.life.check_issuance_token(&w.alice, id, &wrong).await,
        Err(LifecycleError::TokenMismatch)
    ));
    let actions: Vec<String> = w
        .store
        .audit_events_for_request(id)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.action)
        .collect();
    assert!(
        actions.contains(&"ISSUANCE_TOKEN_MISMATCH".to_string()),
        "{actions:?}"
    );
    assert!(matches!(
        w.life.check_issuance_token(&w.bob, id, &minted.token).await,
        Err(LifecycleError::NotYours(_))
    ));

    let (request, hash) = w
        .life
        .check_issuance_token(&w.alice, id, &minted.token)
        .await
        .unwrap();
    assert_eq!(hash, sha256_hex(minted.token.expose_secret()));
    assert!(request.otp_required);
    // Checking used nothing up: checking again still passes, nothing was shared.
    w.life
        .check_issuance_token(&w.alice, id, &minted.token)
        .await
        .unwrap();
    assert_eq!(w.sharer.count(Op::Create), 0);
    assert_eq!(w.request(id).await.issuance_count, 0);

    let proof = w.prove(&w.alice, id, &minted.token).await;
    assert_eq!(
        proof.token_hash(),
        hash,
        "the challenge is bound to the checked token"
    );
    let got = w
        .life
        .exchange_proven(&w.alice, id, &proof, ClientInfo::default())
        .await
        .unwrap();
    assert_eq!(got.issuance_count, 1);
    assert!(
        matches!(
            w.life
                .exchange_proven(&w.alice, id, &proof, ClientInfo::default())
                .await,
            Err(LifecycleError::TokenMismatch)
        ),
        "a used token's hash is not good twice"
    );

    // A token minted after step 1 replaces the bound one: the old binding shares nothing.
    let first = w.life.mint_issuance_token(&w.alice, id).await.unwrap();
    let bound = w.prove(&w.alice, id, &first.token).await;
    let second = w.life.mint_issuance_token(&w.alice, id).await.unwrap();
    assert!(matches!(
        w.life
            .exchange_proven(&w.alice, id, &bound, ClientInfo::default())
            .await,
        Err(LifecycleError::TokenMismatch)
    ));
    assert_eq!(w.sharer.count(Op::Create), 1);
    let current = w.prove(&w.alice, id, &second.token).await;
    assert_eq!(
        w.life
            .exchange_proven(&w.alice, id, &current, ClientInfo::default())
            .await
            .unwrap()
            .issuance_count,
        2
    );
}

// ---- ending a lease ----------------------------------------------------------------------------

/// A LOW lease with `n` retrievals.
async fn issued(w: &World, record: &str, n: usize) -> (Request, Vec<String>) {
    let id = w.submit(&w.alice, record, 3600).await.unwrap().request.id;
    let mut urls = vec![];
    for _ in 0..n {
        urls.push(
            w.retrieve(&w.alice, id)
                .await
                .unwrap()
                .url
                .expose()
                .to_string(),
        );
    }
    (w.request(id).await, urls)
}

async fn assert_all_shares_removed(w: &World, request: &Request, urls: &[String]) {
    let record = w
        .store
        .record_by_id(request.record_id)
        .await
        .unwrap()
        .unwrap();
    for url in urls {
        let share_id = share_id_from_url(url).unwrap();
        assert!(
            w.sharer.saw_remove(&record.vault_uid, &share_id),
            "removed by its share id"
        );
    }
    assert!(w.sharer.live(&record.vault_uid).is_empty());
    let events = w.store.issuances_for_request(request.id).await.unwrap();
    assert_eq!(events.len(), urls.len());
    assert!(events.iter().all(|e| e.revoked_at == Some(w.clock.now())));
    assert!(
        w.store
            .outstanding_issuances(request.id)
            .await
            .unwrap()
            .is_empty()
    );
}

async fn release_removes_every_share_by_id(db: Db) {
    let w = world(&db).await;
    let (r, urls) = issued(&w, "ops-low", 2).await;
    w.clock.advance(Duration::minutes(3));
    assert!(matches!(
        w.life.release(&w.bob, r.id).await,
        Err(LifecycleError::NotYours(_))
    ));
    let change = w.life.release(&w.alice, r.id).await.unwrap();
    assert_eq!(
        (change.event, change.request.status),
        (Event::Released, Released)
    );
    assert_eq!(change.request.ended_at, Some(w.clock.now()));
    assert_all_shares_removed(&w, &r, &urls).await;
    let acts = actions(w.store.as_ref(), r.id).await;
    assert_eq!(
        acts[acts.len() - 3..],
        ["LEASE_RELEASED", "SHARE_REVOKED", "SHARE_REVOKED"]
    );
    assert_eq!(
        traces(w.store.as_ref(), r.id).await.last(),
        Some(&(RevocationEvent, Allow))
    );
    assert!(matches!(
        w.life.release(&w.alice, r.id).await,
        Err(LifecycleError::WrongState {
            status: Released,
            ..
        })
    ));
    assert!(matches!(
        w.life.mint_issuance_token(&w.alice, r.id).await,
        Err(LifecycleError::WrongState { .. })
    ));
}

async fn admin_revoke_and_lost_permission_end_the_lease(db: Db) {
    let w = world(&db).await;
    let (r, urls) = issued(&w, "ops-low", 2).await;
    assert!(matches!(
        w.life.revoke(&w.bob, r.id, "suspicious").await,
        Err(LifecycleError::NotAdmin)
    ));
    assert_eq!(w.request(r.id).await.status, Issued);
    w.clock.advance(Duration::minutes(1));
    let change = w
        .life
        .revoke(&w.carol, r.id, "suspicious login")
        .await
        .unwrap();
    assert_eq!(
        (change.event, change.request.status),
        (Event::Revoked, Expired)
    );
    assert_eq!(
        change.request.decision_reason.as_deref(),
        Some("revoked by an admin: suspicious login")
    );
    assert_all_shares_removed(&w, &r, &urls).await;
    let events = w.store.audit_events_for_request(r.id).await.unwrap();
    let revoked = events.iter().find(|e| e.action == "LEASE_REVOKED").unwrap();
    assert_eq!(revoked.actor, format!("user:{}", w.carol.id));
    assert_eq!(revoked.detail.0["outstanding_shares"], 2);
    assert_eq!(
        events
            .iter()
            .filter(|e| e.action == "SHARE_REVOKED")
            .count(),
        2
    );

    // Alice loses the folder; permission sync ends her other lease.
    let (r2, urls2) = issued(&w, "db-prod-eu", 1).await;
    let acl: Vec<NewFolderPermission> = w
        .store
        .folder_permissions(w.folder.id)
        .await
        .unwrap()
        .into_iter()
        .filter(|p| !p.principal.starts_with("alice@"))
        .map(|p| NewFolderPermission {
            principal_type: p.principal_type,
            principal: p.principal,
            permission: p.permission,
        })
        .collect();
    w.store
        .replace_folder_permissions(w.folder.id, &acl, w.clock.now())
        .await
        .unwrap();
    let change = w.life.revoke_for_lost_permission(r2.id).await.unwrap();
    assert_eq!(change.request.status, Expired);
    assert_all_shares_removed(&w, &r2, &urls2).await;
    let acts = actions(w.store.as_ref(), r2.id).await;
    assert_eq!(
        acts[acts.len() - 2..],
        ["LEASE_REVOKED_PERMISSION_LOST", "SHARE_REVOKED"]
    );
    assert_eq!(
        traces(w.store.as_ref(), r2.id).await.last(),
        Some(&(RevocationEvent, Allow))
    );
    // And a new request for it is denied now.
    let denied = w.submit(&w.alice, "db-prod-eu", 3600).await.unwrap();
    assert_eq!(denied.request.status, Denied);
}

async fn expiry_retries_a_removal_that_failed(db: Db) {
    let w = world(&db).await;
    let (r, urls) = issued(&w, "ops-low", 2).await;
    let claim = |now: Timestamp| {
        let store = w.store.clone();
        async move {
            store
                .claim_due(
                    DueWork::LeaseEnd,
                    now,
                    now,
                    "scheduler-a",
                    now.plus(Duration::minutes(5)),
                    10,
                )
                .await
                .unwrap()
        }
    };
    w.clock.advance(Duration::minutes(59));
    assert!(claim(w.clock.now()).await.is_empty(), "not due yet");
    w.clock.advance(Duration::minutes(1));
    let due = claim(w.clock.now()).await;
    assert_eq!(due.iter().map(|r| r.id).collect::<Vec<_>>(), [r.id]);
    assert_eq!(due[0].claimed_by.as_deref(), Some("scheduler-a"));

    w.sharer.fail_next(Op::Remove, ErrorClass::Transient, 1);
    let change = w.life.expire_due(due[0].clone()).await.unwrap();
    w.store.release_claim(r.id, "scheduler-a").await.unwrap();
    assert_eq!(
        (change.event, change.request.status),
        (Event::Expired, Expired)
    );
    let outstanding = w.store.outstanding_issuances(r.id).await.unwrap();
    assert_eq!(outstanding.len(), 1, "the failed removal is left for later");
    assert_eq!(outstanding[0].revoke_attempts, 1);
    assert!(outstanding[0].last_revoke_error.is_some());
    assert_eq!(w.sharer.live_total(), 1);

    // The next pass picks the ended request up again and finishes the job.
    w.clock.advance(Duration::minutes(1));
    let due = claim(w.clock.now()).await;
    assert_eq!(due.len(), 1);
    assert_eq!(due[0].status, Expired);
    w.life.expire_due(due[0].clone()).await.unwrap();
    w.store.release_claim(r.id, "scheduler-a").await.unwrap();
    let record = w.record("ops-low").await;
    for url in &urls {
        assert!(
            w.sharer
                .saw_remove(&record.vault_uid, &share_id_from_url(url).unwrap())
        );
    }
    assert_eq!(w.sharer.live_total(), 0);
    assert!(
        w.store
            .outstanding_issuances(r.id)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        claim(w.clock.now().plus(Duration::hours(1)))
            .await
            .is_empty()
    );
    let acts = actions(w.store.as_ref(), r.id).await;
    assert_eq!(acts.iter().filter(|a| *a == "LEASE_EXPIRED").count(), 1);
    assert_eq!(acts.iter().filter(|a| *a == "SHARE_REVOKED").count(), 2);
    assert!(w.sharer.removals().values().all(|n| *n == 1));
}

// ---- extend ------------------------------------------------------------------------------------

async fn extensions_within_caps_are_granted_and_beyond_refused(db: Db) {
    let w = world(&db).await;
    let id = w
        .submit(&w.alice, "ops-low", 3600)
        .await
        .unwrap()
        .request
        .id;
    w.clock.advance(Duration::minutes(30));
    let change = w.life.extend(&w.alice, id, 1800).await.unwrap();
    assert_eq!(
        (change.event, change.request.status),
        (Event::Extended, Approved)
    );
    assert_eq!(
        change.request.lease_expires_at,
        Some(t0().plus(Duration::minutes(90)))
    );
    assert_eq!(change.request.extension_count, 1);
    assert_eq!(change.request.approved_duration_secs, Some(5400));
    assert_eq!(change.request.renewal_duration_secs, None);
    assert_eq!(
        actions(w.store.as_ref(), id).await[2..],
        ["EXTENSION_REQUESTED", "LEASE_EXTENDED"]
    );
    assert_eq!(
        traces(w.store.as_ref(), id).await.last(),
        Some(&(ApprovalDecision, Allow))
    );

    // Longer than one LOW lease (24 h) is refused and changes nothing.
    match w.life.extend(&w.alice, id, 25 * 3600).await {
        Err(LifecycleError::Refused(reasons)) => {
            assert!(reasons[0].contains("longer than one"), "{reasons:?}")
        }
        other => panic!("{:?}", other.map(|c| c.event)),
    }
    let r = w.request(id).await;
    assert_eq!((r.status, r.extension_count), (Approved, 1));
    assert_eq!(r.lease_expires_at, Some(t0().plus(Duration::minutes(90))));
    assert_eq!(
        actions(w.store.as_ref(), id).await.last().unwrap(),
        "EXTENSION_REFUSED"
    );

    // An issued lease goes back to ISSUED; the second extension is the last one allowed.
    w.retrieve(&w.alice, id).await.unwrap();
    let change = w.life.extend(&w.alice, id, 600).await.unwrap();
    assert_eq!(change.request.status, Issued);
    assert_eq!(change.request.extension_count, 2);
    match w.life.extend(&w.alice, id, 600).await {
        Err(LifecycleError::Refused(reasons)) => {
            assert!(reasons[0].contains("extensions already"), "{reasons:?}")
        }
        other => panic!("{:?}", other.map(|c| c.event)),
    }
    assert_eq!(w.request(id).await.extension_count, 2);
    assert!(matches!(
        w.life.extend(&w.bob, id, 600).await,
        Err(LifecycleError::NotYours(_))
    ));
}

async fn a_routed_extension_waits_for_an_approver(db: Db) {
    let w = world(&db).await;
    let r = w.approved_medium().await;
    let expires = r.lease_expires_at.unwrap();
    let change = w.life.extend(&w.alice, r.id, 1800).await.unwrap();
    assert_eq!(
        (change.event, change.request.status),
        (Event::ExtensionRequested, RenewalPending)
    );
    assert_eq!(change.request.renewal_duration_secs, Some(1800));
    assert_eq!(
        kinds(&change.notices),
        set(&[
            (w.bob.id, NoticeKind::ExtensionNeeded),
            (w.dave.id, NoticeKind::ExtensionNeeded)
        ])
    );
    // The lease is still live while the extension waits.
    let got = w.retrieve(&w.alice, r.id).await.unwrap();
    assert_eq!(got.issuance_count, 1);
    assert!(matches!(
        w.life.approve(&w.erin, r.id, None).await,
        Err(LifecycleError::NotYours(_))
    ));
    let granted = w.life.approve(&w.dave, r.id, Some("ok")).await.unwrap();
    assert_eq!(
        (granted.event, granted.request.status),
        (Event::Extended, Issued)
    );
    assert_eq!(
        granted.request.lease_expires_at,
        Some(expires.plus(Duration::minutes(30)))
    );
    assert_eq!(granted.request.extension_count, 1);
    assert_eq!(granted.request.decided_by, Some(w.dave.id));
    // A late click on the decided extension.
    assert!(matches!(
        w.life.approve(&w.bob, r.id, None).await,
        Err(LifecycleError::AlreadyDecided { .. })
    ));

    // The next one is refused by an approver: back to ISSUED, expiry unchanged.
    w.life.extend(&w.alice, r.id, 1800).await.unwrap();
    let refused = w
        .life
        .deny(&w.bob, r.id, Some("finish by then"))
        .await
        .unwrap();
    assert_eq!(
        (refused.event, refused.request.status),
        (Event::ExtensionDenied, Issued)
    );
    assert_eq!(
        refused.request.lease_expires_at,
        Some(expires.plus(Duration::minutes(30)))
    );
    assert_eq!(refused.request.extension_count, 1);
    assert_eq!(refused.request.renewal_duration_secs, None);
    let acts = actions(w.store.as_ref(), r.id).await;
    let tail: Vec<&str> = acts
        .iter()
        .map(String::as_str)
        .filter(|a| {
            a.starts_with("EXTENSION") || *a == "LEASE_EXTENDED" || *a == "APPROVAL_REFUSED"
        })
        .collect();
    // Erin's attempt is audited apart from the request (ACCESS_DENIED_NOT_VISIBLE).
    assert_eq!(
        tail,
        [
            "EXTENSION_REQUESTED",
            "LEASE_EXTENDED",
            "EXTENSION_REQUESTED",
            "EXTENSION_DENIED"
        ]
    );
}

// ---- break-glass -------------------------------------------------------------------------------

async fn break_glass_is_approved_at_once_and_announced(db: Db) {
    let w = world(&db).await;
    let submission = |reason: &str| Submission {
        record: "break-glass-domain-admin".into(),
        duration_secs: Some(1800),
        justification: reason.into(),
        ticket_id: Some("INC-9000".into()),
        break_glass: true,
    };
    // Too short a reason: denied.
    let short = w
        .life
        .submit(&w.carol, &submission("DC down INC-9000"))
        .await
        .unwrap();
    assert_eq!(short.request.status, Denied);

    let change = w
        .life
        .submit(
            &w.carol,
            &submission("domain controllers down, restoring from backup"),
        )
        .await
        .unwrap();
    let r = &change.request;
    assert_eq!(
        (change.event, r.status),
        (Event::BreakGlassApproved, Approved)
    );
    assert!(r.review_required && r.break_glass);
    assert_eq!(r.lease_expires_at, Some(t0().plus(Duration::minutes(30))));
    assert_eq!(
        actions(w.store.as_ref(), r.id).await,
        ["REQUEST_SUBMITTED", "BREAK_GLASS_APPROVED"]
    );
    assert_eq!(
        traces(w.store.as_ref(), r.id).await,
        [(RequestSubmission, Allow), (ApprovalDecision, Allow)]
    );
    // Every authority (bob) and every other admin (frank) hears; carol is the requester.
    assert_eq!(
        kinds(&change.notices),
        set(&[
            (w.bob.id, NoticeKind::BreakGlassUsed),
            (w.frank.id, NoticeKind::BreakGlassUsed),
            (w.carol.id, NoticeKind::StatusChanged)
        ])
    );
    assert_eq!(w.sharer.count(Op::List), 1);

    // A requester who is not listed for break-glass is denied.
    let denied = w
        .life
        .submit(
            &w.alice,
            &Submission {
                record: "ops-critical".into(),
                ..submission("the database is on fire, restoring now")
            },
        )
        .await
        .unwrap();
    assert_eq!(denied.request.status, Denied);
}

// ---- the stale-request chaser ------------------------------------------------------------------

async fn undecided_requests_are_reminded_escalated_and_expired(db: Db) {
    let w = world(&db).await;
    let s = LifecycleSettings::default();
    let id = w
        .submit(&w.alice, "ops-medium", 3600)
        .await
        .unwrap()
        .request
        .id;
    let chase = || async { w.life.chase_undecided(w.request(id).await).await.unwrap() };

    w.clock
        .advance(Duration::seconds(s.reminder_after_secs as i64 - 1));
    assert!(chase().await.is_none(), "too early for a reminder");
    w.clock.advance(Duration::seconds(1));
    let reminded = chase().await.expect("a reminder");
    assert_eq!(
        kinds(&reminded.notices),
        set(&[
            (w.bob.id, NoticeKind::Reminder),
            (w.dave.id, NoticeKind::Reminder)
        ])
    );
    assert_eq!(w.request(id).await.reminded_at, Some(w.clock.now()));
    w.clock.advance(Duration::minutes(10));
    assert!(chase().await.is_none(), "one reminder only");
    assert_eq!(
        actions(w.store.as_ref(), id).await,
        ["REQUEST_SUBMITTED", "APPROVERS_REMINDED"]
    );

    w.clock
        .set(t0().plus(Duration::seconds(s.escalate_after_secs as i64)));
    let escalated = chase().await.expect("escalated");
    assert_eq!(
        (escalated.event, escalated.request.status),
        (Event::Escalated, RequiresTriage)
    );
    assert_eq!(
        kinds(&escalated.notices),
        set(&[
            (w.carol.id, NoticeKind::TriageNeeded),
            (w.frank.id, NoticeKind::TriageNeeded)
        ])
    );
    assert!(chase().await.is_none());

    w.clock
        .set(t0().plus(Duration::seconds(s.undecided_ttl_secs as i64)));
    let expired = chase().await.expect("expired");
    assert_eq!(
        (expired.event, expired.request.status),
        (Event::Expired, Expired)
    );
    assert_eq!(
        actions(w.store.as_ref(), id).await,
        [
            "REQUEST_SUBMITTED",
            "APPROVERS_REMINDED",
            "REQUEST_ESCALATED",
            "REQUEST_EXPIRED_UNDECIDED"
        ]
    );

    // The claim finds undecided requests by age.
    let id2 = w
        .submit(&w.alice, "ops-medium", 3600)
        .await
        .unwrap()
        .request
        .id;
    let now = w.clock.now();
    let claimed = w
        .store
        .claim_due(
            DueWork::Undecided,
            now,
            now,
            "scheduler-a",
            now.plus(Duration::minutes(1)),
            10,
        )
        .await
        .unwrap();
    assert_eq!(claimed.iter().map(|r| r.id).collect::<Vec<_>>(), [id2]);

    // The expiry warning is given once per lease.
    let lease = w.submit(&w.alice, "ops-low", 3600).await.unwrap().request;
    let notice = w.life.warn_expiry(&lease).await.unwrap();
    assert_eq!(
        notice.map(|n| (n.user_id, n.kind)),
        Some((w.alice.id, NoticeKind::ExpiringSoon))
    );
    assert!(w.life.warn_expiry(&lease).await.unwrap().is_none());
}

// ---- INV-5 -------------------------------------------------------------------------------------

/// Every cell of every table, as text.
async fn dump_everything(db: &Db) -> Vec<String> {
    let mut cells = vec![];
    if db.engine == "sqlite" {
        let tables = db
            .raw
            .texts("SELECT name FROM sqlite_master WHERE type = 'table'")
            .await
            .unwrap();
        for t in tables {
            let columns = db
                .raw
                .texts(&format!("SELECT name FROM pragma_table_info('{t}')"))
                .await
                .unwrap();
            let row = columns
                .iter()
                .map(|c| format!("quote(\"{c}\")"))
                .collect::<Vec<_>>()
                .join(" || '|' || ");
            cells.extend(
                db.raw
                    .texts(&format!("SELECT {row} FROM \"{t}\""))
                    .await
                    .unwrap()
                    .into_iter()
                    .map(|r| format!("{t}: {r}")),
            );
        }
    } else {
        let tables = db
            .raw
            .texts(
                "SELECT table_name::text FROM information_schema.tables
                 WHERE table_schema = 'public' AND table_type = 'BASE TABLE'",
            )
            .await
            .unwrap();
        for t in tables {
            cells.extend(
                db.raw
                    .texts(&format!("SELECT t::text FROM \"{t}\" t"))
                    .await
                    .unwrap()
                    .into_iter()
                    .map(|r| format!("{t}: {r}")),
            );
        }
    }
    cells
}

async fn nothing_secret_is_left_in_the_database(db: Db) {
    let w = world(&db).await;
    let mut secrets: Vec<String> = vec![];
    // A full run: several retrievals on two leases, a failed one, tokens minted and replaced,
    // a release, an expiry.
    let (low, _) = issued(&w, "ops-low", 0).await;
    for _ in 0..3 {
        let minted = w.life.mint_issuance_token(&w.alice, low.id).await.unwrap();
        secrets.push(minted.token.expose_secret().to_string());
        if secrets.len() == 2 {
            w.sharer.fail_next(Op::Create, ErrorClass::Transient, 1);
            let _ = w
                .life
                .exchange_token(&w.alice, low.id, &minted.token, ClientInfo::default())
                .await;
        }
        w.life
            .exchange_token(&w.alice, low.id, &minted.token, ClientInfo::default())
            .await
            .unwrap();
    }
    let unused = w.life.mint_issuance_token(&w.alice, low.id).await;
    assert!(unused.is_err(), "all retrievals used");
    let medium = w.approved_medium().await;
    let leftover = w
        .life
        .mint_issuance_token(&w.alice, medium.id)
        .await
        .unwrap();
    secrets.push(leftover.token.expose_secret().to_string());
    let got = w.retrieve(&w.alice, medium.id).await.unwrap();
    assert_eq!(got.issuance_count, 1);
    let pending = w
        .life
        .mint_issuance_token(&w.alice, medium.id)
        .await
        .unwrap();
    secrets.push(pending.token.expose_secret().to_string());
    w.life.release(&w.alice, low.id).await.unwrap();
    w.clock.advance(Duration::hours(2));
    w.life.expire_due(w.request(medium.id).await).await.unwrap();

    let urls = w.sharer.urls();
    assert_eq!(urls.len(), 4);
    for url in &urls {
        secrets.push(url.clone());
        // The key alone is as secret as the URL.
        secrets.push(url.split_once('#').unwrap().1.to_string());
    }
    let cells = dump_everything(&db).await;
    assert!(
        cells.len() > 50,
        "the dump saw the data ({} rows)",
        cells.len()
    );
    assert!(
        cells.iter().any(|c| c.contains(&sha256_hex(&urls[0]))),
        "the dump includes the issuance rows"
    );
    for cell in &cells {
        for secret in &secrets {
            assert!(
                !cell.contains(secret.as_str()),
                "a secret is stored: {cell}"
            );
        }
        assert!(
            !cell.contains("/vault/share"),
            "a share URL is stored: {cell}"
        );
        assert!(!cell.contains("keepersecurity.com"), "{cell}");
    }
}

// ---- concurrency -------------------------------------------------------------------------------

async fn twenty_approvers_at_once_give_one_decision(db: Db) {
    let w = world(&db).await;
    let folder = &w.folder;
    let mut approvers = vec![];
    for i in 0..20 {
        approvers.push(
            w.store
                .upsert_user(&user(&format!("approver{i:02}"), Role::Approver), t0())
                .await
                .unwrap(),
        );
    }
    let authorities: Vec<_> = approvers
        .iter()
        .map(|a| {
            (
                AuthorityKind::Approver,
                PrincipalType::User,
                a.aad_object_id.clone(),
            )
        })
        .collect();
    add_record(
        w.store.as_ref(),
        folder,
        "ops-team",
        Sensitivity::Medium,
        &w.bob,
        &authorities,
        true,
    )
    .await;
    let routed = w.submit(&w.alice, "ops-team", 3600).await.unwrap();
    assert_eq!(routed.notices.len(), 20);
    let id = routed.request.id;

    let barrier = Arc::new(tokio::sync::Barrier::new(20));
    let mut tasks = tokio::task::JoinSet::new();
    for a in approvers.clone() {
        let life = w.life.clone();
        let barrier = barrier.clone();
        tasks.spawn(async move {
            barrier.wait().await;
            (a.id, life.approve(&a, id, None).await)
        });
    }
    let mut winners = vec![];
    let mut told = vec![];
    while let Some(done) = tasks.join_next().await {
        match done.unwrap() {
            (who, Ok(change)) => {
                assert_eq!(change.request.status, Approved);
                winners.push(who);
            }
            (_, Err(LifecycleError::AlreadyDecided { by, status, .. })) => {
                assert_eq!(status, Approved);
                told.push(by);
            }
            (_, Err(e)) => panic!("unexpected: {e}"),
        }
    }
    assert_eq!(winners.len(), 1, "exactly one decision");
    assert_eq!(told.len(), 19);
    let winner = approvers.iter().find(|a| a.id == winners[0]).unwrap();
    assert!(
        told.iter()
            .all(|by| by.as_deref() == Some(winner.display_name.as_str())),
        "everyone else is told who decided: {told:?}"
    );
    let r = w.request(id).await;
    assert_eq!((r.status, r.decided_by), (Approved, Some(winner.id)));
    assert_eq!(w.store.approvals_for_request(id).await.unwrap().len(), 1);
    let acts = actions(w.store.as_ref(), id).await;
    assert_eq!(acts.iter().filter(|a| *a == "REQUEST_APPROVED").count(), 1);
    assert_eq!(w.sharer.count(Op::List), 1, "one preflight");
}

async fn a_hundred_parallel_retrievals_make_exactly_max_issuances_shares(db: Db) {
    let w = world(&db).await;
    let id = w
        .submit(&w.alice, "ops-low", 3600)
        .await
        .unwrap()
        .request
        .id;
    let barrier = Arc::new(tokio::sync::Barrier::new(100));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..100 {
        let life = w.life.clone();
        let alice = w.alice.clone();
        let barrier = barrier.clone();
        tasks.spawn(async move {
            barrier.wait().await;
            for attempt in 0..100u64 {
                let minted = match life.mint_issuance_token(&alice, id).await {
                    Ok(m) => m,
                    Err(LifecycleError::NoRetrievalsLeft(_)) => return None,
                    Err(e) => panic!("mint: {e}"),
                };
                match life
                    .exchange_token(&alice, id, &minted.token, ClientInfo::default())
                    .await
                {
                    Ok(got) => return Some(got.url.expose().to_string()),
                    Err(LifecycleError::TokenMismatch | LifecycleError::RetrievalInProgress(_)) => {
                        // Another page minted meanwhile (a fresh token replaces the last one):
                        // back off exponentially with jitter, as a retrying page would, so that
                        // someone's mint-and-exchange gets through.
                        let mut b = [0u8; 4];
                        getrandom::fill(&mut b).unwrap();
                        let cap = (5u64 << attempt.min(9)).min(2_000);
                        let wait = u64::from(u32::from_le_bytes(b)) % cap;
                        tokio::time::sleep(std::time::Duration::from_millis(wait)).await;
                    }
                    Err(LifecycleError::NoRetrievalsLeft(_)) => return None,
                    Err(e) => panic!("exchange: {e}"),
                }
            }
            panic!("a retrieval never got through");
        });
    }
    let mut urls = vec![];
    while let Some(done) = tasks.join_next().await {
        if let Some(url) = done.unwrap() {
            urls.push(url);
        }
    }
    assert_eq!(urls.len(), 3, "exactly max_issuances URLs (INV-4)");
    assert_eq!(urls.iter().collect::<BTreeSet<_>>().len(), 3);
    assert_eq!(
        w.sharer.live_total(),
        3,
        "exactly max_issuances live shares"
    );
    // A retrieval is reserved before its share is created, so the vault never saw a fourth
    // share, not even for a moment, and nothing had to be removed again.
    assert_eq!(
        w.sharer.count(Op::Create),
        3,
        "no share beyond max_issuances was created"
    );
    assert!(w.sharer.removals().is_empty());
    assert_eq!(
        r_in_flight(&w, id).await,
        0,
        "every reservation was settled"
    );
    let r = w.request(id).await;
    assert_eq!((r.status, r.issuance_count), (Issued, 3));
    assert_eq!(w.store.issuances_for_request(id).await.unwrap().len(), 3);
}

async fn r_in_flight(w: &World, id: i64) -> i32 {
    w.request(id).await.issuances_in_flight
}

async fn two_schedulers_expire_a_thousand_leases_exactly_once(db: Db) {
    let w = world(&db).await;
    const N: usize = 1000;
    let record = w.record("ops-low").await;
    let now = w.clock.now();
    // Leases made through the store directly: approved, each with one live share.
    let mut makers = tokio::task::JoinSet::new();
    for worker in 0..4 {
        let store = w.store.clone();
        let sharer = w.sharer.clone();
        let (alice, record) = (w.alice.clone(), record.clone());
        makers.spawn(async move {
            for i in (worker..N).step_by(4) {
                let r = store
                    .create_request(
                        &NewRequest {
                            requester_id: alice.id,
                            record_id: record.id,
                            status: Pending,
                            justification: format!("bulk {i}"),
                            ticket_id: None,
                            requested_duration_secs: 3600,
                            break_glass: false,
                            required_approvals: 1,
                            max_issuances: 3,
                            policy_version: None,
                            review_required: false,
                            otp_required: false,
                            decision_reason: None,
                        },
                        &[],
                        &NewAuditEvent::new("test", "REQUEST_SUBMITTED", now),
                        now,
                    )
                    .await
                    .unwrap();
                let expires = now.plus(Duration::minutes(30 + (i % 30) as i64));
                store
                    .transition_request(
                        &StatusChange::new(r.id, Pending, Approved, now).lease(now, expires, 3600),
                        &[],
                        &NewAuditEvent::new("test", "REQUEST_AUTO_APPROVED", now),
                    )
                    .await
                    .unwrap();
                // A retrieval is reserved (token minted and used) before its share is recorded.
                let token_hash = format!("{:064x}", r.id);
                store
                    .set_issuance_token(
                        r.id,
                        &token_hash,
                        now.plus(Duration::minutes(5)),
                        now,
                        &NewAuditEvent::new("test", "ISSUANCE_TOKEN_MINTED", now),
                    )
                    .await
                    .unwrap();
                assert!(
                    store
                        .consume_issuance_token(
                            r.id,
                            &token_hash,
                            now,
                            now.minus(passkey::governance::lifecycle::RETRIEVAL_DEAD_AFTER),
                        )
                        .await
                        .unwrap()
                        .is_some()
                );
                let share = sharer
                    .create(
                        &record.vault_uid,
                        Duration::hours(1),
                        &format!("{}-1", r.id),
                    )
                    .await
                    .unwrap();
                store
                    .record_issuance(
                        &NewIssuance {
                            request_id: r.id,
                            share_link_hash: share.url.hash(),
                            vault_share_id: share.share_id.clone(),
                            client_ip: None,
                            user_agent: None,
                            issued_at: now,
                            expires_at: expires,
                        },
                        now,
                        &[],
                        &NewAuditEvent::new("test", "ISSUANCE_SUCCEEDED", now),
                    )
                    .await
                    .unwrap();
            }
        });
    }
    while let Some(done) = makers.join_next().await {
        done.unwrap();
    }
    assert_eq!(w.sharer.live_total(), N);

    w.clock.advance(Duration::hours(1));
    let now = w.clock.now();
    let mut schedulers = tokio::task::JoinSet::new();
    for holder in ["instance-a", "instance-b"] {
        let (life, store) = (w.life.clone(), w.store.clone());
        schedulers.spawn(async move {
            let mut handled = vec![];
            loop {
                let batch = store
                    .claim_due(
                        DueWork::LeaseEnd,
                        now,
                        now,
                        holder,
                        now.plus(Duration::minutes(5)),
                        25,
                    )
                    .await
                    .unwrap();
                if batch.is_empty() {
                    return handled;
                }
                for r in batch {
                    let id = r.id;
                    assert_eq!(r.claimed_by.as_deref(), Some(holder));
                    let change = life.expire_due(r).await.unwrap();
                    assert_eq!(change.request.status, Expired);
                    store.release_claim(id, holder).await.unwrap();
                    handled.push(id);
                }
            }
        });
    }
    let mut handled = vec![];
    while let Some(done) = schedulers.join_next().await {
        let mine = done.unwrap();
        handled.extend(mine);
    }
    assert_eq!(
        handled.len(),
        N,
        "each lease handled by exactly one instance"
    );
    assert_eq!(handled.iter().collect::<BTreeSet<_>>().len(), N);

    let removals = w.sharer.removals();
    assert_eq!(removals.len(), N);
    assert!(
        removals.values().all(|n| *n == 1),
        "each share removed exactly once (INV-7)"
    );
    assert_eq!(w.sharer.count(Op::Remove), N);
    assert_eq!(w.sharer.live_total(), 0);
    let events = w.store.audit_events_after(0, 100_000).await.unwrap();
    for action in ["LEASE_EXPIRED", "SHARE_REVOKED"] {
        let ids: Vec<i64> = events
            .iter()
            .filter(|e| e.action == action)
            .filter_map(|e| e.request_id)
            .collect();
        assert_eq!(ids.len(), N, "{action}");
        assert_eq!(ids.iter().collect::<BTreeSet<_>>().len(), N, "{action}");
    }
    assert_eq!(
        count(&db, "requests WHERE status = 'EXPIRED'").await,
        N as i64
    );
    assert_eq!(
        count(&db, "issuance_events WHERE revoked_at IS NULL").await,
        0
    );
}

// ---- INV-6: the database goes away -------------------------------------------------------------

mod database_down {
    use super::*;
    use passkey::store::{PgStore, SqliteStore};

    /// Submit on a closed pool fails and writes nothing; a share created while the database went
    /// away is removed again and nothing is counted.
    async fn story(db: Db, broken: Arc<dyn Store>, close: impl Fn() -> CloseFuture) {
        let w = world(&db).await;
        let life = lifecycle_on(broken.clone(), w.clock.clone(), w.sharer.clone()).await;
        let id = life
            .submit(
                &w.alice,
                &Submission {
                    record: "ops-low".into(),
                    duration_secs: Some(3600),
                    justification: JUSTIFICATION.into(),
                    ticket_id: None,
                    break_glass: false,
                },
            )
            .await
            .unwrap()
            .request
            .id;
        let minted = life.mint_issuance_token(&w.alice, id).await.unwrap();
        let before = (
            count(&db, "requests").await,
            count(&db, "audit_events").await,
            count(&db, "governance_decision_traces").await,
        );

        // The database goes away after the vault created the share.
        let close_now = close();
        let slot = Arc::new(std::sync::Mutex::new(Some(close_now)));
        w.sharer.set_after_create(move || {
            let next = slot.lock().unwrap().take();
            async move {
                if let Some(f) = next {
                    f.await
                }
            }
        });
        let result = life
            .exchange_token(&w.alice, id, &minted.token, ClientInfo::default())
            .await;
        assert!(
            matches!(
                result,
                Err(LifecycleError::Store(StoreError::Unavailable(_)))
            ),
            "{:?}",
            result.err()
        );
        let record = w.record("ops-low").await;
        let created = w.sharer.urls();
        assert_eq!(created.len(), 1);
        assert!(
            w.sharer
                .saw_remove(&record.vault_uid, &share_id_from_url(&created[0]).unwrap()),
            "the unrecorded share is removed by id"
        );
        assert!(w.sharer.live(&record.vault_uid).is_empty());

        // Nothing more can be written, and nothing was half-written.
        let submitted = life
            .submit(
                &w.alice,
                &Submission {
                    record: "ops-medium".into(),
                    duration_secs: Some(3600),
                    justification: JUSTIFICATION.into(),
                    ticket_id: None,
                    break_glass: false,
                },
            )
            .await;
        assert!(
            matches!(
                &submitted,
                Err(LifecycleError::Store(StoreError::Unavailable(_)))
                    | Err(LifecycleError::Record(
                        passkey::governance::admin::AdminError::Store(StoreError::Unavailable(_))
                    ))
            ),
            "{:?}",
            submitted.err()
        );
        assert_eq!(
            (
                count(&db, "requests").await,
                count(&db, "audit_events").await,
                count(&db, "governance_decision_traces").await,
            ),
            before
        );
        let r = w.request(id).await;
        assert_eq!((r.status, r.issuance_count), (Approved, 0));
        assert!(w.store.issuances_for_request(id).await.unwrap().is_empty());
    }

    type CloseFuture = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn sqlite() {
        let db = common::fresh_sqlite().await;
        let broken = Arc::new(
            SqliteStore::open(&db.dir.path().join("test.db"), 2)
                .await
                .unwrap(),
        );
        let closer = broken.clone();
        story(
            Db {
                store: db.store.clone(),
                raw: db.store.clone(),
                engine: "sqlite",
            },
            broken,
            move || {
                let s = closer.clone();
                Box::pin(async move { s.close().await })
            },
        )
        .await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn postgres() {
        let Some(db) = common::fresh_pg().await else {
            return;
        };
        let name = db
            .store
            .pool()
            .connect_options()
            .get_database()
            .unwrap()
            .to_string();
        let base = common::admin_url();
        let url = format!("{}/{name}", base.rsplit_once('/').unwrap().0);
        let broken = Arc::new(PgStore::connect(&url, 2).await.unwrap());
        let closer = broken.clone();
        story(
            Db {
                store: db.store.clone(),
                raw: db.store.clone(),
                engine: "postgres",
            },
            broken,
            move || {
                let s = closer.clone();
                Box::pin(async move { s.pool().close().await })
            },
        )
        .await;
    }
}

// ---- replay --------------------------------------------------------------------------------------

/// Every path of the lifecycle writes its traces; `replay --all` must then find every one of them
/// the same — a trace that no longer replays to itself breaks the promise that any decision can
/// be re-derived from what was stored.
async fn every_stored_trace_replays_to_the_decision_it_records(db: Db) {
    use passkey::governance::policies::replay_all;
    let w = world(&db).await;
    // Submission, auto-approval, preflight; then extension granted by policy and one refused.
    let low = w.submit(&w.alice, "ops-low", 3600).await.unwrap().request;
    assert_eq!(low.status, Approved);
    w.clock.advance(Duration::minutes(5));
    w.life.extend(&w.alice, low.id, 1800).await.unwrap();
    assert!(w.life.extend(&w.alice, low.id, 25 * 3600).await.is_err());
    // Issuance, then release.
    w.retrieve(&w.alice, low.id).await.unwrap();
    w.life.release(&w.alice, low.id).await.unwrap();
    // Routed, approved by an approver; a routed extension approved; then an admin's revocation.
    let medium = w.approved_medium().await;
    w.life.extend(&w.alice, medium.id, 1800).await.unwrap();
    w.life
        .approve(&w.dave, medium.id, Some("ok"))
        .await
        .unwrap();
    w.life
        .revoke(&w.carol, medium.id, "rotation")
        .await
        .unwrap();
    // A routed extension denied.
    let low2 = w
        .submit(&w.alice, "db-prod-eu", 3600)
        .await
        .unwrap()
        .request;
    assert_eq!(low2.status, Approved);
    let medium2 = w.approved_medium().await;
    w.life.extend(&w.alice, medium2.id, 1800).await.unwrap();
    w.life.deny(&w.dave, medium2.id, Some("no")).await.unwrap();
    w.life.release(&w.alice, medium2.id).await.unwrap();
    // Denial by an approver; denial by policy; a refused approval.
    let denied = w.submit(&w.alice, "ops-medium", 600).await.unwrap().request;
    w.life
        .deny(&w.bob, denied.id, Some("not now"))
        .await
        .unwrap();
    assert_eq!(
        w.submit(&w.erin, "ops-low", 600)
            .await
            .unwrap()
            .request
            .status,
        Denied
    );
    // Refusals: an owner approving, then denying, their own request.
    let own = w.submit(&w.bob, "ops-medium", 3600).await.unwrap().request;
    assert!(w.life.approve(&w.bob, own.id, None).await.is_err());
    assert!(w.life.deny(&w.bob, own.id, None).await.is_err());
    w.life.deny(&w.dave, own.id, None).await.unwrap();
    // A preflight the vault refuses for good: unfulfillable.
    w.sharer.fail_next(Op::List, ErrorClass::Terminal, 1);
    let gone = w
        .submit(&w.alice, "db-prod-us", 3600)
        .await
        .unwrap()
        .request;
    assert_eq!(gone.status, Unfulfillable);
    // Two-approval critical.
    let critical = w
        .submit(&w.alice, "ops-critical", 600)
        .await
        .unwrap()
        .request;
    w.life.approve(&w.bob, critical.id, None).await.unwrap();
    w.life.approve(&w.dave, critical.id, None).await.unwrap();
    // Triage, approved and denied.
    let t1 = w.submit(&w.alice, "ops-orphan", 600).await.unwrap().request;
    w.life
        .triage(&w.carol, t1.id, true, "looks fine")
        .await
        .unwrap();
    w.life.release(&w.alice, t1.id).await.unwrap();
    let t2 = w.submit(&w.alice, "ops-orphan", 600).await.unwrap().request;
    assert_eq!(t2.status, RequiresTriage);
    w.life.triage(&w.frank, t2.id, false, "no").await.unwrap();
    // Break-glass.
    let bg = w
        .life
        .submit(
            &w.carol,
            &Submission {
                record: "break-glass-domain-admin".into(),
                duration_secs: Some(1800),
                justification: "domain controllers down, restoring from backup".into(),
                ticket_id: Some("INC-9000".into()),
                break_glass: true,
            },
        )
        .await
        .unwrap()
        .request;
    assert_eq!(bg.status, Approved);
    // Expiry of a lease, and of a request nobody decided.
    let undecided = w.submit(&w.alice, "ops-high", 600).await.unwrap().request;
    w.clock.advance(Duration::days(3));
    for r in w
        .store
        .requests_in_status(&[Approved, Issued], 100)
        .await
        .unwrap()
    {
        w.life.expire_due(r).await.unwrap();
    }
    while w
        .life
        .chase_undecided(w.request(undecided.id).await)
        .await
        .unwrap()
        .is_some()
    {}

    let stored = count(&db, "governance_decision_traces").await;
    let stages: BTreeSet<String> = db
        .raw
        .texts("SELECT DISTINCT stage FROM governance_decision_traces")
        .await
        .unwrap()
        .into_iter()
        .collect();
    for stage in [
        "REQUEST_SUBMISSION",
        "AUTHORITY_RESOLUTION",
        "APPROVAL_DECISION",
        "ISSUANCE_CHECK",
        "ISSUANCE_EVENT",
        "REVOCATION_EVENT",
    ] {
        assert!(stages.contains(stage), "no {stage} trace among {stages:?}");
    }
    let engine = load_engine(w.store.as_ref()).await.unwrap();
    let summary = replay_all(w.store.as_ref(), &engine).await.unwrap();
    assert_eq!(summary.total as i64, stored, "{}", summary.render());
    assert!(summary.different.is_empty(), "{}", summary.render());
    assert_eq!(summary.same as i64, stored);
}
