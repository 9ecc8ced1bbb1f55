//! The people directory: Passkey's Graph client against a loopback Graph that checks the wire
//! format (token, OData quoting, paging, 404/409), then EMAIL and GROUP approvers resolved by the
//! lifecycle on both databases — people found only in Graph become users and are asked; an
//! address or group nobody has, or a directory that fails, sends the request to the admins with
//! the reason, never to nobody in silence.

use crate::common;

use common::fake_graph::{CATALOG_APP_ID, FakeGraph};
use common::fake_sharer::FakeSharer;
use common::{Db, only_approvers, t0};
use passkey::config::LifecycleSettings;
use passkey::domain::*;
use passkey::governance::directory::{AppInstall, UserDirectory};
use passkey::governance::lifecycle::*;
use passkey::governance::permissions::{
    DirectoryError, GroupDirectory, PermissionResolver, StaticGroupDirectory,
};
use passkey::governance::policies::{ensure_default_policies, load_engine};
use passkey::store::*;
use passkey::vault::OneTimeSharer;
use std::sync::Arc;

const DANA: &str = "da0a0000-0000-4000-8000-0000000000d1";
const GROUP: &str = "5e0c0000-0000-4000-8000-00000000000a";
const MEMBERS: [&str; 3] = [
    "3e3b0001-0000-4000-8000-000000000001",
    "3e3b0002-0000-4000-8000-000000000002",
    "3e3b0003-0000-4000-8000-000000000003",
];

/// Dana (mail differs from UPN, and has an apostrophe), and a group of three across two pages.
async fn graph() -> FakeGraph {
    let graph = FakeGraph::start().await;
    graph.add_user(
        DANA,
        "Dana O'Neil",
        "dana.o'neil@contoso.example",
        "doneil@contoso.example",
    );
    for (i, id) in MEMBERS.iter().enumerate() {
        let mail = format!("sre{i}@contoso.example");
        graph.add_user(id, &format!("SRE {i}"), &mail, &mail);
    }
    graph.add_group(GROUP, &MEMBERS);
    graph
}

// ---- the Graph client ----------------------------------------------------------------------

#[tokio::test]
async fn a_person_is_found_by_upn_and_else_by_mail_with_the_quote_doubled() {
    let graph = graph().await;
    let directory = graph.directory();

    let by_upn = directory
        .user_by_address("doneil@contoso.example")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(by_upn.id, DANA);
    assert_eq!(by_upn.mail.as_deref(), Some("dana.o'neil@contoso.example"));
    assert_eq!(by_upn.mobile_phone.as_deref(), Some("+1 555 0100"));
    let calls = graph.calls();
    assert_eq!(calls.len(), 1, "the UPN answers at once: {calls:?}");
    assert_eq!(calls[0].path, "/v1.0/users/doneil@contoso.example");

    // A mail that is not a UPN: 404 by key, then the filter, quote doubled inside the literal.
    let by_mail = directory
        .user_by_address("Dana.O'Neil@contoso.example")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(by_mail.id, DANA);
    let calls = graph.calls();
    assert_eq!(calls.len(), 3, "{calls:?}");
    assert_eq!(calls[2].path, "/v1.0/users");
    assert_eq!(
        calls[2].query["$filter"],
        "mail eq 'Dana.O''Neil@contoso.example' or userPrincipalName eq 'Dana.O''Neil@contoso.example'"
    );
    assert_eq!(
        calls[2].query["$select"],
        "id,displayName,mail,userPrincipalName,mobilePhone"
    );
    assert!(
        calls[2].raw_query.contains("%20eq%20%27") && !calls[2].raw_query.contains('+'),
        "spaces and quotes are percent-encoded: {}",
        calls[2].raw_query
    );

    // Nobody has it: None, not an error. Not an address: refused before any call.
    assert!(
        directory
            .user_by_address("nobody@contoso.example")
            .await
            .unwrap()
            .is_none()
    );
    let before = graph.calls().len();
    let err = directory
        .user_by_address("not an address")
        .await
        .unwrap_err();
    assert!(matches!(err, DirectoryError::Malformed(_)), "{err}");
    assert_eq!(graph.calls().len(), before);
    // One token served every call.
    assert_eq!(
        graph
            .state
            .token_requests
            .load(std::sync::atomic::Ordering::SeqCst),
        1
    );
}

#[tokio::test]
async fn group_members_come_from_every_page_and_unknown_groups_are_none() {
    let graph = graph().await;
    let directory = graph.directory();
    let members = directory.group_members(GROUP).await.unwrap().unwrap();
    let ids: Vec<&str> = members.iter().map(|m| m.id.as_str()).collect();
    assert_eq!(ids, MEMBERS);
    let calls = graph.calls();
    assert_eq!(calls.len(), 2, "two pages of two: {calls:?}");
    assert_eq!(
        calls[0].path,
        format!("/v1.0/groups/{GROUP}/transitiveMembers/microsoft.graph.user")
    );
    assert_eq!(calls[1].query["$skiptoken"], "X'2");

    assert!(
        directory
            .group_members("5e0c0000-0000-4000-8000-0000000000ff")
            .await
            .unwrap()
            .is_none()
    );
    // A group is named by its object id; a name is refused without asking Graph.
    let before = graph.calls().len();
    let err = directory.group_members("sre-oncall").await.unwrap_err();
    assert!(matches!(err, DirectoryError::Malformed(_)), "{err}");
    assert_eq!(graph.calls().len(), before);
}

#[tokio::test]
async fn a_group_name_is_read_and_an_unknown_or_unnamed_group_has_none() {
    let graph = graph().await;
    graph.name_group(GROUP, "Platform SRE");
    let directory = graph.directory();
    assert_eq!(
        directory.group_name(GROUP).await.unwrap().as_deref(),
        Some("Platform SRE")
    );
    let call = graph.calls().pop().unwrap();
    assert_eq!(call.path, format!("/v1.0/groups/{GROUP}"));
    assert_eq!(call.query["$select"], "displayName");
    assert!(
        directory
            .group_name("5e0c0000-0000-4000-8000-0000000000ff")
            .await
            .unwrap()
            .is_none()
    );
    graph.add_group("5e0c0000-0000-4000-8000-0000000000fe", &[]);
    assert!(
        directory
            .group_name("5e0c0000-0000-4000-8000-0000000000fe")
            .await
            .unwrap()
            .is_none()
    );
    let err = directory.group_name("sre-oncall").await.unwrap_err();
    assert!(matches!(err, DirectoryError::Malformed(_)), "{err}");
}

#[tokio::test]
async fn the_app_is_installed_once_and_a_second_install_is_already_installed() {
    let graph = graph().await;
    let directory = graph.directory();
    assert_eq!(
        directory.install_app(DANA, CATALOG_APP_ID).await.unwrap(),
        AppInstall::Installed
    );
    assert_eq!(
        directory.install_app(DANA, CATALOG_APP_ID).await.unwrap(),
        AppInstall::AlreadyInstalled
    );
    let err = directory
        .install_app("0000dead-0000-4000-8000-000000000000", CATALOG_APP_ID)
        .await
        .unwrap_err();
    assert!(
        matches!(err, DirectoryError::Refused { status: 404 }),
        "{err}"
    );
    assert_eq!(graph.installs().len(), 3);
}

#[tokio::test]
async fn a_failing_graph_is_unavailable_for_people_groups_and_installs() {
    let graph = graph().await;
    graph.set_down(true);
    let directory = graph.directory();
    let err = directory
        .user_by_address("doneil@contoso.example")
        .await
        .unwrap_err();
    assert!(matches!(err, DirectoryError::Unavailable(_)), "{err}");
    let err = directory.group_members(GROUP).await.unwrap_err();
    assert!(matches!(err, DirectoryError::Unavailable(_)), "{err}");
    let err = directory
        .install_app(DANA, CATALOG_APP_ID)
        .await
        .unwrap_err();
    assert!(matches!(err, DirectoryError::Unavailable(_)), "{err}");
    // The same client answers group memberships.
    let err = directory.groups_of(DANA).await.unwrap_err();
    assert!(matches!(err, DirectoryError::Unavailable(_)), "{err}");
}

// ---- approvers through the lifecycle, on both databases --------------------------------------

on_both_databases!(
    an_email_approver_known_only_to_graph_becomes_a_user_and_is_asked,
    a_group_approver_asks_every_member,
    an_approver_named_by_upn_is_found_and_may_decide,
    a_second_stage_is_reached_through_the_directory_or_the_request_goes_to_triage,
    an_address_nobody_has_sends_the_request_to_triage_with_the_reason,
    a_failing_directory_sends_the_request_to_triage_with_the_reason,
    an_unreachable_group_is_named_by_its_display_name_never_its_id,
);

const ALICE: &str = "a11ce000-0000-4000-8000-000000000001";

async fn lifecycle(db: &Db, graph: &FakeGraph) -> (Lifecycle, User) {
    let store = db.store.clone();
    passkey::demo::load_if_empty(store.as_ref(), t0())
        .await
        .unwrap();
    ensure_default_policies(store.as_ref(), t0()).await.unwrap();
    let engine = Arc::new(load_engine(store.as_ref()).await.unwrap());
    let clock = Arc::new(ManualClock::new(t0()));
    let groups: Arc<dyn GroupDirectory> = Arc::new(StaticGroupDirectory::new());
    let permissions = Arc::new(PermissionResolver::new(
        store.clone(),
        groups,
        clock.clone(),
    ));
    let life = Lifecycle::new(
        store.clone(),
        engine,
        clock.clone(),
        permissions,
        FakeSharer::new(clock.clone()) as Arc<dyn OneTimeSharer>,
        LifecycleSettings::default(),
    )
    .with_directory(Arc::new(graph.directory()));
    let alice = store.user_by_aad_object_id(ALICE).await.unwrap().unwrap();
    (life, alice)
}

async fn ask(life: &Lifecycle, alice: &User) -> Change {
    life.submit(
        alice,
        &Submission {
            record: "db-analytics-readonly".into(),
            duration_secs: Some(3600),
            justification: "nightly report for INC-4411".into(),
            ticket_id: None,
            break_glass: false,
        },
    )
    .await
    .unwrap()
}

async fn an_email_approver_known_only_to_graph_becomes_a_user_and_is_asked(db: Db) {
    let graph = graph().await;
    let (life, alice) = lifecycle(&db, &graph).await;
    only_approvers(
        db.store.as_ref(),
        "db-analytics-readonly",
        &[(PrincipalType::Email, "dana.o'neil@contoso.example")],
    )
    .await;
    assert!(
        db.store
            .user_by_aad_object_id(DANA)
            .await
            .unwrap()
            .is_none()
    );

    let change = ask(&life, &alice).await;
    assert_eq!(change.event, Event::Routed, "{:?}", change.reasons);
    assert_eq!(change.request.status, RequestStatus::Pending);
    let dana = db
        .store
        .user_by_aad_object_id(DANA)
        .await
        .unwrap()
        .expect("Dana is a user now");
    assert_eq!(dana.display_name, "Dana O'Neil");
    assert_eq!(dana.email.as_deref(), Some("dana.o'neil@contoso.example"));
    assert_eq!(dana.upn.as_deref(), Some("doneil@contoso.example"));
    assert_eq!(dana.role, Role::Requester, "found in Graph is not promoted");
    assert_eq!(
        change.notices,
        [Notice {
            user_id: dana.id,
            request_id: change.request.id,
            kind: NoticeKind::ApprovalNeeded
        }]
    );

    // Next time she is in the database: Graph is not asked again.
    let before = graph.calls().len();
    only_approvers(
        db.store.as_ref(),
        "db-analytics-readonly",
        &[(PrincipalType::Email, "DANA.O'NEIL@contoso.example")],
    )
    .await;
    let reached = life
        .reach_approvers(
            &[passkey::policy::decision::Approver {
                authority_id: 0,
                kind: AuthorityKind::Approver,
                principal_type: PrincipalType::Email,
                principal: "DANA.O'NEIL@contoso.example".into(),
            }],
            alice.id,
        )
        .await
        .unwrap();
    assert_eq!(reached.users.len(), 1);
    assert!(reached.unreached.is_empty());
    assert_eq!(graph.calls().len(), before);
}

async fn a_group_approver_asks_every_member(db: Db) {
    let graph = graph().await;
    let (life, alice) = lifecycle(&db, &graph).await;
    only_approvers(
        db.store.as_ref(),
        "db-analytics-readonly",
        &[(PrincipalType::Group, GROUP)],
    )
    .await;
    let change = ask(&life, &alice).await;
    assert_eq!(change.event, Event::Routed, "{:?}", change.reasons);
    let mut told = Vec::new();
    for id in MEMBERS {
        let user = db
            .store
            .user_by_aad_object_id(id)
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("member {id} is a user"));
        told.push(user.id);
    }
    let notified: Vec<i64> = change.notices.iter().map(|n| n.user_id).collect();
    assert_eq!(notified, told);
    assert!(
        change
            .notices
            .iter()
            .all(|n| n.kind == NoticeKind::ApprovalNeeded)
    );
}

async fn an_approver_named_by_upn_is_found_and_may_decide(db: Db) {
    let graph = graph().await;
    let (life, alice) = lifecycle(&db, &graph).await;
    // Her UPN, not her mail: the directory finds her, and the approval check knows her by it.
    only_approvers(
        db.store.as_ref(),
        "db-analytics-readonly",
        &[(PrincipalType::Email, "doneil@contoso.example")],
    )
    .await;
    let change = ask(&life, &alice).await;
    assert_eq!(change.event, Event::Routed, "{:?}", change.reasons);
    let dana = db.store.user_by_aad_object_id(DANA).await.unwrap().unwrap();
    assert_eq!(dana.email.as_deref(), Some("dana.o'neil@contoso.example"));
    let decided = life
        .approve(&dana, change.request.id, Some("fine"))
        .await
        .unwrap();
    assert_eq!(decided.request.status, RequestStatus::Approved);
    assert_eq!(decided.request.decided_by, Some(dana.id));
}

const BOB: &str = "b0b00000-0000-4000-8000-000000000002";

/// Bob decides stage 1; `second` is the stage-2 approver.
async fn two_stages(db: &Db, second: (PrincipalType, &str)) {
    only_approvers(
        db.store.as_ref(),
        "db-analytics-readonly",
        &[(PrincipalType::User, BOB)],
    )
    .await;
    let record = db
        .store
        .records_by_title_prefix("db-analytics-readonly", 1)
        .await
        .unwrap()
        .remove(0);
    let resource = db
        .store
        .governed_resource_for_record(record.id)
        .await
        .unwrap()
        .unwrap();
    db.store
        .add_authority(
            &NewAuthority {
                resource_id: resource.id,
                authority: AuthorityKind::Approver,
                principal_type: second.0,
                principal: second.1.into(),
                stage: 2,
                valid_from: t0(),
                valid_to: None,
                created_by: "test".into(),
            },
            &NewAuditEvent::new("test", "AUTHORITY_GRANTED", t0()).record(record.id),
        )
        .await
        .unwrap();
}

async fn a_second_stage_is_reached_through_the_directory_or_the_request_goes_to_triage(db: Db) {
    let graph = graph().await;
    let (life, alice) = lifecycle(&db, &graph).await;
    let bob = db.store.user_by_aad_object_id(BOB).await.unwrap().unwrap();

    // Stage 2 is someone only Graph knows: Bob's approval hands over to her.
    two_stages(&db, (PrincipalType::Email, "doneil@contoso.example")).await;
    let first = ask(&life, &alice).await;
    assert_eq!(first.event, Event::Routed, "{:?}", first.reasons);
    assert!(first.notices.iter().all(|n| n.user_id == bob.id));
    let handed = life.approve(&bob, first.request.id, None).await.unwrap();
    assert_eq!(
        handed.event,
        Event::ApprovalRecorded,
        "{:?}",
        handed.reasons
    );
    let dana = db.store.user_by_aad_object_id(DANA).await.unwrap().unwrap();
    assert!(
        handed
            .notices
            .iter()
            .any(|n| n.user_id == dana.id && n.kind == NoticeKind::ApprovalNeeded),
        "{:?}",
        handed.notices
    );
    life.deny(&dana, first.request.id, Some("not today"))
        .await
        .unwrap();

    // Stage 2 is an address nobody has: after Bob's approval the admins decide, and the
    // requester hears why — the request does not wait for nobody.
    two_stages(&db, (PrincipalType::Email, "nobody@contoso.example")).await;
    let second = ask(&life, &alice).await;
    assert_eq!(second.event, Event::Routed, "{:?}", second.reasons);
    let stuck = life.approve(&bob, second.request.id, None).await.unwrap();
    triaged_with(
        &db,
        &Change {
            notices: stuck
                .notices
                .iter()
                .filter(|n| n.kind == NoticeKind::TriageNeeded)
                .cloned()
                .collect(),
            ..stuck.clone()
        },
        "approver nobody@contoso.example could not be found in the directory",
    )
    .await;
    assert!(
        stuck
            .notices
            .iter()
            .any(|n| n.user_id == alice.id && n.kind == NoticeKind::StatusChanged),
        "{:?}",
        stuck.notices
    );
    assert_eq!(
        db.store
            .approvals_for_request(second.request.id)
            .await
            .unwrap()
            .len(),
        1
    );
}

async fn triaged_with(db: &Db, change: &Change, reason: &str) {
    assert_eq!(change.event, Event::Triaged);
    assert_eq!(change.request.status, RequestStatus::RequiresTriage);
    assert!(
        change.reasons.iter().any(|r| r == reason),
        "{:?}",
        change.reasons
    );
    assert!(
        change
            .reasons
            .iter()
            .any(|r| r.contains("no approver could be reached")),
        "{:?}",
        change.reasons
    );
    let admins = db.store.users_with_role(Role::Admin).await.unwrap();
    assert!(!admins.is_empty());
    assert_eq!(
        change.notices.len(),
        admins.len(),
        "every admin is told: {:?}",
        change.notices
    );
    assert!(
        change
            .notices
            .iter()
            .all(|n| n.kind == NoticeKind::TriageNeeded)
    );
    let escalated = db
        .store
        .audit_events_for_request(change.request.id)
        .await
        .unwrap()
        .into_iter()
        .find(|e| e.action == "REQUEST_ESCALATED")
        .expect("the escalation is audited");
    let detail = escalated.detail.to_string();
    assert!(
        detail.contains("no_reachable_approver") && detail.contains(&reason.replace('"', "\\\"")),
        "{detail}"
    );
}

async fn an_address_nobody_has_sends_the_request_to_triage_with_the_reason(db: Db) {
    let graph = graph().await;
    let (life, alice) = lifecycle(&db, &graph).await;
    only_approvers(
        db.store.as_ref(),
        "db-analytics-readonly",
        &[
            (PrincipalType::Email, "nobody@contoso.example"),
            (PrincipalType::Group, "5e0c0000-0000-4000-8000-0000000000ff"),
        ],
    )
    .await;
    let users_before = db.store.count_users().await.unwrap();
    let change = ask(&life, &alice).await;
    triaged_with(
        &db,
        &change,
        "approver nobody@contoso.example could not be found in the directory",
    )
    .await;
    assert!(
        change
            .reasons
            .iter()
            .any(|r| r == "an approver group could not be found in the directory"),
        "{:?}",
        change.reasons
    );
    assert_eq!(db.store.count_users().await.unwrap(), users_before);
}

async fn a_failing_directory_sends_the_request_to_triage_with_the_reason(db: Db) {
    let graph = graph().await;
    graph.set_down(true);
    let (life, alice) = lifecycle(&db, &graph).await;
    only_approvers(
        db.store.as_ref(),
        "db-analytics-readonly",
        &[(PrincipalType::Email, "doneil@contoso.example")],
    )
    .await;
    let change = ask(&life, &alice).await;
    triaged_with(
        &db,
        &change,
        "approver doneil@contoso.example could not be looked up in the directory just now",
    )
    .await;
    // The directory's own words (HTTP codes, Graph) stay in the log.
    assert!(
        change.reasons.iter().all(|r| !r.contains("HTTP")),
        "{:?}",
        change.reasons
    );
}

/// What the requester and the admins read about an approver group they could not reach: its
/// display name from the directory, else "an approver group" — never its object id, never the
/// directory's error text (#18.5).
async fn an_unreachable_group_is_named_by_its_display_name_never_its_id(db: Db) {
    const EMPTY: &str = "5e0c0000-0000-4000-8000-0000000000e0";
    const UNNAMED: &str = "5e0c0000-0000-4000-8000-0000000000e1";
    let graph = graph().await;
    graph.add_group(EMPTY, &[]);
    graph.name_group(EMPTY, "Platform SRE");
    graph.add_group(UNNAMED, &[]);
    let (life, alice) = lifecycle(&db, &graph).await;
    only_approvers(
        db.store.as_ref(),
        "db-analytics-readonly",
        &[
            (PrincipalType::Group, EMPTY),
            (PrincipalType::Group, UNNAMED),
        ],
    )
    .await;
    let change = ask(&life, &alice).await;
    triaged_with(&db, &change, "approver group Platform SRE has no members").await;
    assert!(
        change
            .reasons
            .iter()
            .any(|r| r == "an approver group has no members"),
        "{:?}",
        change.reasons
    );
    assert!(
        change.reasons.iter().all(|r| !r.contains("5e0c0000")),
        "{:?}",
        change.reasons
    );

    // Graph down: the group cannot be listed, nor its name read.
    graph.set_down(true);
    let reached = life
        .reach_approvers(
            &[passkey::policy::decision::Approver {
                authority_id: 0,
                kind: AuthorityKind::Approver,
                principal_type: PrincipalType::Group,
                principal: EMPTY.into(),
            }],
            alice.id,
        )
        .await
        .unwrap();
    assert!(reached.users.is_empty());
    assert_eq!(
        reached.unreached,
        ["an approver group could not be listed just now"]
    );
}
