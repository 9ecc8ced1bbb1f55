//! The admin use cases (authority grants and revocations, role changes) on both databases, over
//! the demo data set: what an admin sees, what the audit trail records, and that every refusal
//! leaves the database exactly as it was.

use crate::common;

use common::{Db, t0};
use passkey::domain::*;
use passkey::governance::admin::*;
use passkey::store::*;
use std::sync::Arc;

on_both_databases!(
    a_grant_shows_up_and_a_revoked_row_stays_listed_as_revoked,
    refused_admin_input_writes_nothing,
    roles_change_with_an_audit_event_and_the_last_admin_cannot_step_down,
    the_database_still_refuses_rewriting_a_granted_row,
    an_admin_sets_a_records_sensitivity_with_a_reason_and_the_trail_says_so,
    refused_sensitivity_changes_write_nothing,
);

struct World {
    admin: GovernanceAdmin,
    carol: User,
    bob: User,
    dave: User,
    clock: Arc<ManualClock>,
}

async fn world(db: &Db) -> World {
    passkey::demo::load_if_empty(db.store.as_ref(), t0())
        .await
        .unwrap();
    let clock = Arc::new(ManualClock::new(t0().plus(time::Duration::hours(1))));
    let by_mail = |m: &'static str| {
        let store = db.store.clone();
        async move { store.user_by_email(m).await.unwrap().unwrap() }
    };
    World {
        admin: GovernanceAdmin::new(db.store.clone(), clock.clone()),
        carol: by_mail("carol@contoso.example").await,
        bob: by_mail("bob@contoso.example").await,
        dave: by_mail("dave@contoso.example").await,
        clock,
    }
}

fn grant(record: &str, kind: &str, principal: &str, stage: Option<i32>) -> Grant {
    Grant {
        record: record.into(),
        kind: kind.into(),
        principal: principal.into(),
        stage,
    }
}

async fn audit_events(s: &dyn Store) -> Vec<AuditEvent> {
    s.audit_events_after(0, 10_000).await.unwrap()
}

async fn a_grant_shows_up_and_a_revoked_row_stays_listed_as_revoked(db: Db) {
    let s = db.store.as_ref();
    let w = world(&db).await;
    let carol = Actor::User(Box::new(w.carol.clone()));

    // By a unique title prefix, kind in any case.
    let granted = w
        .admin
        .grant_authority(
            &carol,
            &grant("db-st", "approver", "user:Dave@Contoso.example", None),
        )
        .await
        .unwrap();
    assert_eq!(granted.record.title, "db-staging");
    let row = &granted.authority;
    assert_eq!(
        (
            row.authority,
            row.principal_type,
            row.principal.as_str(),
            row.stage
        ),
        (
            AuthorityKind::Approver,
            PrincipalType::User,
            w.dave.aad_object_id.as_str(),
            1
        ),
        "a user is stored by Entra object id"
    );
    assert_eq!(row.created_by, format!("user:{}", w.carol.id));
    assert_eq!(row.valid_from, w.clock.now());
    assert!(
        granted.render().contains(
            "Granted APPROVER over `db-staging` to user Dave Platform <dave@contoso.example>"
        ),
        "{}",
        granted.render()
    );

    let event = audit_events(s).await.pop().unwrap();
    assert_eq!(event.action, "AUTHORITY_GRANTED");
    assert_eq!(event.actor, format!("user:{}", w.carol.id));
    assert_eq!(event.record_id, Some(granted.record.id));
    let detail = &event.detail.0;
    assert_eq!(detail["authority_id"], row.id);
    assert!(detail["old"].is_null());
    assert_eq!(detail["new"]["authority"], "APPROVER");
    assert_eq!(detail["new"]["principal"], w.dave.aad_object_id.as_str());

    // Other principal forms, by exact title in another case and by vault uid.
    let staged = w
        .admin
        .grant_authority(
            &carol,
            &grant("DB-STAGING", "CUSTODIAN", "group:1f2e3d4c-group", Some(2)),
        )
        .await
        .unwrap();
    assert_eq!(
        (staged.authority.principal_type, staged.authority.stage),
        (PrincipalType::Group, 2)
    );
    let by_mail = w
        .admin
        .grant_authority(
            &carol,
            &grant(
                "dbSt4g1ngL0g1nR3c0rd02",
                "owner",
                "Ops@Contoso.example",
                None,
            ),
        )
        .await
        .unwrap();
    assert_eq!(
        (
            by_mail.authority.principal_type,
            by_mail.authority.principal.as_str()
        ),
        (PrincipalType::Email, "ops@contoso.example")
    );
    let by_role = w
        .admin
        .grant_authority(&carol, &grant("db-staging", "approver", "role:admin", None))
        .await
        .unwrap();
    assert_eq!(by_role.authority.principal, "ADMIN");

    let listing = w.admin.show_authorities("db-staging").await.unwrap();
    let in_force: Vec<i64> = listing.in_force().map(|l| l.authority.id).collect();
    assert!(in_force.contains(&row.id) && in_force.contains(&by_role.authority.id));
    let text = listing.render();
    assert!(
        text.contains(&format!(
            "#{} APPROVER — user Dave Platform <dave@contoso.example>",
            row.id
        )),
        "{text}"
    );
    assert!(text.contains("group 1f2e3d4c-group, stage 2"), "{text}");
    assert!(!text.contains("Not in force"), "{text}");

    // Revoke: the row stays, listed as revoked, with who and why.
    w.clock.advance(time::Duration::minutes(5));
    let revoked = w
        .admin
        .revoke_authority(&carol, row.id, "  moved to another team ")
        .await
        .unwrap();
    assert_eq!(
        revoked.authority.revoked_reason.as_deref(),
        Some("moved to another team")
    );
    assert!(
        revoked
            .render()
            .contains(&format!("Revoked authority #{}", row.id))
    );
    let event = audit_events(s).await.pop().unwrap();
    assert_eq!(event.action, "AUTHORITY_REVOKED");
    assert_eq!(event.detail.0["authority_id"], row.id);
    assert_eq!(
        event.detail.0["old"]["principal"],
        w.dave.aad_object_id.as_str()
    );
    assert_eq!(event.detail.0["reason"], "moved to another team");

    let listing = w.admin.show_authorities("db-staging").await.unwrap();
    let line = listing
        .lines
        .iter()
        .find(|l| l.authority.id == row.id)
        .expect("a revoked row is still listed");
    assert!(!line.in_force);
    let text = listing.render();
    let (active, past) = text.split_once("Not in force:").expect(&text);
    assert!(!active.contains(&format!("#{} ", row.id)), "{text}");
    assert!(
        past.contains(&format!(
            "#{} APPROVER — user Dave Platform <dave@contoso.example> — revoked",
            row.id
        )) && past.contains(&format!("by user:{}: moved to another team", w.carol.id)),
        "{text}"
    );

    // Revoking it again is refused and writes nothing.
    let before = audit_events(s).await.len();
    let again = w
        .admin
        .revoke_authority(&Actor::Cli, row.id, "again")
        .await
        .unwrap_err();
    assert!(matches!(again, AdminError::AlreadyRevoked { id, .. } if id == row.id));
    assert!(again.to_string().contains("already revoked"), "{again}");
    assert_eq!(audit_events(s).await.len(), before);

    // The same grant may be made again once the old one is revoked.
    w.admin
        .grant_authority(
            &Actor::Cli,
            &grant("db-staging", "approver", "user:dave@contoso.example", None),
        )
        .await
        .unwrap();

    // A record nobody governs yet is governed by its first grant.
    let folder = s.list_folders().await.unwrap()[0].id;
    let fresh = s
        .upsert_record(
            &NewRecord {
                vault_uid: "N3wR3c0rdN0tG0v3rn3d01".into(),
                title: "ldap-bind".into(),
                record_type: "login".into(),
                folder_id: Some(folder),
                revision: 1,
                vault_owner: None,
                owner_user_id: None,
                sensitivity: Sensitivity::Medium,
                discovery_source: DiscoverySource::Auto,
            },
            t0(),
        )
        .await
        .unwrap();
    let empty = w.admin.show_authorities("ldap-bind").await.unwrap();
    assert!(empty.render().contains("No authority in force."));
    let first = w
        .admin
        .grant_authority(
            &Actor::Cli,
            &grant("ldap-bind", "owner", "user:bob@contoso.example", None),
        )
        .await
        .unwrap();
    let resource = s
        .governed_resource_for_record(fresh.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(first.authority.resource_id, resource.id);
    assert_eq!(resource.access_policy, DEFAULT_ACCESS_POLICY);
    let event = audit_events(s).await.pop().unwrap();
    assert_eq!(event.actor, "admin-cli");
    assert_eq!(event.detail.0["newly_governed"], true);
}

/// Everything an admin change could touch, to compare before and after a refusal.
async fn snapshot(s: &dyn Store) -> (usize, Vec<Vec<Authority>>, Vec<(i64, Role)>) {
    let mut histories = Vec::new();
    for record in s.list_records().await.unwrap() {
        histories.push(
            match s.governed_resource_for_record(record.id).await.unwrap() {
                Some(r) => s.authority_history(r.id).await.unwrap(),
                None => Vec::new(),
            },
        );
    }
    let mut roles = Vec::new();
    for role in Role::ALL {
        for u in s.users_with_role(*role).await.unwrap() {
            roles.push((u.id, u.role));
        }
    }
    (audit_events(s).await.len(), histories, roles)
}

async fn refused_admin_input_writes_nothing(db: Db) {
    let s = db.store.as_ref();
    let w = world(&db).await;
    let carol = Actor::User(Box::new(w.carol.clone()));
    let live = w
        .admin
        .show_authorities("db-prod")
        .await
        .unwrap()
        .in_force()
        .next()
        .unwrap()
        .authority
        .id;
    let before = snapshot(s).await;

    let refusals: Vec<(&str, AdminError)> = vec![
        (
            "unknown record",
            w.admin
                .grant_authority(
                    &carol,
                    &grant(
                        "no-such-record",
                        "approver",
                        "user:bob@contoso.example",
                        None,
                    ),
                )
                .await
                .unwrap_err(),
        ),
        (
            "ambiguous record",
            w.admin.show_authorities("db").await.unwrap_err(),
        ),
        (
            "unknown user",
            w.admin
                .grant_authority(
                    &carol,
                    &grant("db-prod", "approver", "user:nobody@contoso.example", None),
                )
                .await
                .unwrap_err(),
        ),
        (
            "unknown kind",
            w.admin
                .grant_authority(
                    &carol,
                    &grant("db-prod", "overlord", "user:bob@contoso.example", None),
                )
                .await
                .unwrap_err(),
        ),
        (
            "principal without a kind",
            w.admin
                .grant_authority(&carol, &grant("db-prod", "approver", "bob", None))
                .await
                .unwrap_err(),
        ),
        (
            "stage 0",
            w.admin
                .grant_authority(
                    &carol,
                    &grant("db-prod", "approver", "role:approver", Some(0)),
                )
                .await
                .unwrap_err(),
        ),
        (
            "duplicate",
            w.admin
                .grant_authority(
                    &carol,
                    &grant("db-prod", "APPROVER", "user:bob@contoso.example", None),
                )
                .await
                .unwrap_err(),
        ),
        (
            "unknown authority",
            w.admin
                .revoke_authority(&carol, 987_654, "gone")
                .await
                .unwrap_err(),
        ),
        (
            "no reason",
            w.admin
                .revoke_authority(&carol, live, "   ")
                .await
                .unwrap_err(),
        ),
        (
            "unknown user for a role",
            w.admin
                .set_role(&carol, "nobody@contoso.example", "APPROVER")
                .await
                .unwrap_err(),
        ),
        (
            "unknown role",
            w.admin
                .set_role(&carol, "bob@contoso.example", "superuser")
                .await
                .unwrap_err(),
        ),
    ];
    for (case, err) in &refusals {
        assert!(err.is_refusal(), "{case}: {err:?}");
    }
    let message = |case: &str| {
        refusals
            .iter()
            .find(|(c, _)| *c == case)
            .unwrap()
            .1
            .to_string()
    };
    assert!(message("unknown record").contains("No record matches `no-such-record`"));
    let ambiguous = message("ambiguous record");
    assert!(
        ambiguous.contains("`db-prod`") && ambiguous.contains("`db-staging`"),
        "candidates are listed: {ambiguous}"
    );
    assert!(message("unknown user").contains("No Passkey user `nobody@contoso.example`"));
    assert!(message("unknown kind").contains("use OWNER, CUSTODIAN or APPROVER"));
    assert!(message("principal without a kind").contains("`group:<Entra group id>`"));
    assert!(message("stage 0").contains("from 1 to 9"));
    assert!(message("duplicate").contains("already has that authority in force"));
    assert!(message("unknown authority").contains("no authority #987654"));
    assert!(message("unknown role").contains("use REQUESTER, APPROVER or ADMIN"));

    assert_eq!(snapshot(s).await, before, "a refusal changes nothing");
}

async fn roles_change_with_an_audit_event_and_the_last_admin_cannot_step_down(db: Db) {
    let s = db.store.as_ref();
    let w = world(&db).await;
    let carol = Actor::User(Box::new(w.carol.clone()));

    // Carol is the demo's only admin.
    let before = audit_events(s).await.len();
    let err = w
        .admin
        .set_role(&carol, "carol@contoso.example", "APPROVER")
        .await
        .unwrap_err();
    assert!(matches!(err, AdminError::LastAdmin), "{err:?}");
    assert!(err.to_string().contains("last admin"));
    assert_eq!(s.users_with_role(Role::Admin).await.unwrap().len(), 1);
    assert_eq!(audit_events(s).await.len(), before);

    // By Entra object id, role in any case.
    let change = w
        .admin
        .set_role(&carol, &w.bob.aad_object_id, "admin")
        .await
        .unwrap();
    assert!(
        matches!(&change, RoleChange::Changed { user, old: Role::Approver } if user.role == Role::Admin)
    );
    assert_eq!(
        change.render(),
        "Bob DBA Lead <bob@contoso.example> is now ADMIN (was APPROVER)."
    );
    let event = audit_events(s).await.pop().unwrap();
    assert_eq!(event.action, "ROLE_CHANGED");
    assert_eq!(event.actor, format!("user:{}", w.carol.id));
    assert_eq!(
        (
            &event.detail.0["old"],
            &event.detail.0["new"],
            &event.detail.0["user_id"]
        ),
        (&"APPROVER".into(), &"ADMIN".into(), &w.bob.id.into())
    );

    // Asking for the role someone already has writes nothing.
    let count = audit_events(s).await.len();
    let same = w
        .admin
        .set_role(&carol, "BOB@contoso.example", "ADMIN")
        .await
        .unwrap();
    assert!(matches!(same, RoleChange::Unchanged { .. }));
    assert_eq!(audit_events(s).await.len(), count);

    // With two admins, one may step down; then the other is the last.
    w.admin
        .set_role(&carol, "carol@contoso.example", "requester")
        .await
        .unwrap();
    let bob = Actor::User(Box::new(s.user_by_id(w.bob.id).await.unwrap().unwrap()));
    let err = w
        .admin
        .set_role(&bob, "bob@contoso.example", "APPROVER")
        .await
        .unwrap_err();
    assert!(matches!(err, AdminError::LastAdmin), "{err:?}");
}

async fn the_database_still_refuses_rewriting_a_granted_row(db: Db) {
    let w = world(&db).await;
    let granted = w
        .admin
        .grant_authority(
            &Actor::Cli,
            &grant("db-prod", "custodian", "email:dba@contoso.example", None),
        )
        .await
        .unwrap();
    let id = granted.authority.id;
    let rewrite = db
        .raw
        .exec(&format!(
            "UPDATE governed_resource_authorities SET principal = 'mallory@evil.example' WHERE id = {id}"
        ))
        .await;
    assert!(
        matches!(&rewrite, Err(StoreError::Refused(m)) if m.contains("INV-1")),
        "{}: {rewrite:?}",
        db.engine
    );
    w.admin
        .revoke_authority(&Actor::Cli, id, "rotation")
        .await
        .unwrap();
    let reword = db
        .raw
        .exec(&format!(
            "UPDATE governed_resource_authorities SET revoked_reason = 'never happened' WHERE id = {id}"
        ))
        .await;
    assert!(
        matches!(&reword, Err(StoreError::Refused(m)) if m.contains("INV-1")),
        "{}: {reword:?}",
        db.engine
    );
    let row = db.store.authority_by_id(id).await.unwrap().unwrap();
    assert_eq!(
        (row.principal.as_str(), row.revoked_reason.as_deref()),
        ("dba@contoso.example", Some("rotation"))
    );
}

async fn sensitivities(s: &dyn Store) -> Vec<(String, Sensitivity)> {
    s.list_records()
        .await
        .unwrap()
        .into_iter()
        .map(|r| (r.title, r.sensitivity))
        .collect()
}

/// (#21.9) By unique title prefix or vault uid, any case; the trail names who, why, before and
/// after; the same level again says so and writes nothing.
async fn an_admin_sets_a_records_sensitivity_with_a_reason_and_the_trail_says_so(db: Db) {
    let s = db.store.as_ref();
    let w = world(&db).await;
    let carol = Actor::User(Box::new(w.carol.clone()));

    let changed = w
        .admin
        .set_sensitivity(
            &carol,
            "db-st",
            "high",
            "  now holds a copy of production  ",
        )
        .await
        .unwrap();
    let text = changed.render();
    assert!(
        text.contains("`db-staging` is now HIGH (was LOW)")
            && text.contains("Every decision from now on uses HIGH"),
        "{text}"
    );
    let staging = s.records_by_title_prefix("db-staging", 1).await.unwrap()[0].clone();
    assert_eq!(staging.sensitivity, Sensitivity::High);
    let events = audit_events(s).await;
    let event = events.last().unwrap();
    assert_eq!(event.action, "RECORD_SENSITIVITY_CHANGED");
    assert_eq!(event.actor, format!("user:{}", w.carol.id));
    assert_eq!(event.record_id, Some(staging.id));
    assert_eq!(
        (
            &event.detail["old"],
            &event.detail["new"],
            &event.detail["reason"],
            &event.detail["record_uid"],
        ),
        (
            &serde_json::json!("LOW"),
            &serde_json::json!("HIGH"),
            &serde_json::json!("now holds a copy of production"),
            &serde_json::json!(staging.vault_uid),
        )
    );

    // The same level again: said, not written.
    let again = w
        .admin
        .set_sensitivity(&carol, "db-staging", "HIGH", "still production data")
        .await
        .unwrap();
    assert!(
        again
            .render()
            .contains("`db-staging` is already HIGH; nothing changed"),
        "{}",
        again.render()
    );
    assert_eq!(audit_events(s).await.len(), events.len());

    // By vault uid, from the shell: the trail names the CLI.
    w.admin
        .set_sensitivity(
            &Actor::Cli,
            &staging.vault_uid,
            "CRITICAL",
            "break-glass only",
        )
        .await
        .unwrap();
    let event = audit_events(s).await.pop().unwrap();
    assert_eq!(
        (
            event.actor.as_str(),
            &event.detail["old"],
            &event.detail["new"]
        ),
        (
            "admin-cli",
            &serde_json::json!("HIGH"),
            &serde_json::json!("CRITICAL")
        )
    );
    assert_eq!(
        s.record_by_id(staging.id)
            .await
            .unwrap()
            .unwrap()
            .sensitivity,
        Sensitivity::Critical
    );
}

async fn refused_sensitivity_changes_write_nothing(db: Db) {
    let s = db.store.as_ref();
    let w = world(&db).await;
    let carol = Actor::User(Box::new(w.carol.clone()));
    let before = (snapshot(s).await, sensitivities(s).await);

    let cases: Vec<(&str, &str, &str, &str)> = vec![
        ("unknown record", "no-such-record", "HIGH", "audit finding"),
        ("ambiguous prefix", "db", "HIGH", "audit finding"),
        ("empty record", "  ", "HIGH", "audit finding"),
        ("unknown level", "db-prod", "SECRET", "audit finding"),
        ("empty level", "db-prod", "", "audit finding"),
        ("missing reason", "db-prod", "CRITICAL", ""),
        ("blank reason", "db-prod", "CRITICAL", "   "),
    ];
    let too_long = "x".repeat(501);
    let mut refusals = Vec::new();
    for (case, record, level, reason) in &cases {
        let err = w
            .admin
            .set_sensitivity(&carol, record, level, reason)
            .await
            .unwrap_err();
        assert!(err.is_refusal(), "{case}: {err:?}");
        refusals.push((*case, err.to_string()));
    }
    let err = w
        .admin
        .set_sensitivity(&carol, "db-prod", "CRITICAL", &too_long)
        .await
        .unwrap_err();
    refusals.push(("over-long reason", err.to_string()));
    let message = |case: &str| refusals.iter().find(|(c, _)| *c == case).unwrap().1.clone();
    assert!(message("unknown record").contains("No record matches `no-such-record`"));
    let ambiguous = message("ambiguous prefix");
    assert!(
        ambiguous.contains("`db-prod`") && ambiguous.contains("`db-staging`"),
        "{ambiguous}"
    );
    assert!(message("empty record").contains("No record matches"));
    assert!(
        message("unknown level")
            .contains("Unknown sensitivity `SECRET`: use LOW, MEDIUM, HIGH or CRITICAL")
    );
    assert!(message("empty level").contains("use LOW, MEDIUM, HIGH or CRITICAL"));
    for case in ["missing reason", "blank reason", "over-long reason"] {
        assert!(message(case).contains("A reason is required"), "{case}");
    }

    // Two admins at once: the store replaces only the level the change was judged against, so
    // the trail's "before" is always true; the loser is refused and writes nothing.
    let prod = s.records_by_title_prefix("db-prod", 1).await.unwrap()[0].clone();
    assert_eq!(prod.sensitivity, Sensitivity::High);
    let stale = s
        .set_record_sensitivity(
            prod.id,
            Sensitivity::Medium,
            Sensitivity::Low,
            &NewAuditEvent::new("admin-cli", "RECORD_SENSITIVITY_CHANGED", t0()),
        )
        .await
        .unwrap_err();
    assert!(matches!(stale, StoreError::Conflict(_)), "{stale:?}");

    assert_eq!(
        (snapshot(s).await, sensitivities(s).await),
        before,
        "a refusal changes nothing"
    );
}
