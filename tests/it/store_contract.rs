//! Store contract: one story per store area, each run against SQLite and against PostgreSQL,
//! each on its own fresh database.

use crate::common;

use common::{Db, t0};
use passkey::domain::*;
use passkey::store::*;
use serde_json::json;
use time::Duration;

on_both_databases!(
    users,
    vault_records_and_permissions,
    permission_cache_expires_and_is_dropped_when_an_acl_or_role_changes,
    policies_and_authorities,
    authority_rows_are_append_only_in_the_database,
    approval_channels_are_append_only_and_one_is_in_force,
    audit_and_traces_are_insert_only_in_the_database,
    request_lifecycle_writes,
    illegal_and_stale_transitions_change_nothing,
    racing_approvals_have_exactly_one_winner,
    audit_chain_links_every_event_even_under_concurrency,
    conversations_cards_and_redelivery,
    batched_turn_claims_answer_each_activity_as_one_at_a_time_would,
    turns_starting_and_finishing_together_share_one_write,
    waiting_notices_are_kept_once_and_closed,
    job_claims,
    batch_lease_expiry_skips_changed_rows_and_chains_its_events,
    batch_share_revocation_marks_each_share_once,
    concurrent_batch_expiries_end_each_lease_once,
    batches_larger_than_one_statement_write_every_row_as_given,
    migrations_are_current_and_idempotent,
    demo_data_loads_once,
);

fn new_user(aad: &str, name: &str, email: &str, role: Role) -> NewUser {
    NewUser {
        aad_object_id: aad.into(),
        tenant_id: Some("tenant-1".into()),
        teams_user_id: None,
        upn: Some(email.into()),
        email: Some(email.into()),
        display_name: name.into(),
        initial_role: role,
    }
}

/// A requester, an approver and one governed record, for the stories that need them.
struct Fixture {
    requester: User,
    approver: User,
    record: Record,
    resource: GovernedResource,
}

async fn fixture(store: &dyn Store) -> Fixture {
    let requester = store
        .upsert_user(
            &new_user(
                "aad-req",
                "Rita Requester",
                "rita@x.example",
                Role::Requester,
            ),
            t0(),
        )
        .await
        .unwrap();
    let approver = store
        .upsert_user(
            &new_user("aad-app", "Abe Approver", "abe@x.example", Role::Approver),
            t0(),
        )
        .await
        .unwrap();
    let folder = store
        .upsert_folder("FOLDERUID0000000000001", "Databases", t0())
        .await
        .unwrap();
    let record = store
        .upsert_record(
            &NewRecord {
                vault_uid: "RECORDUID0000000000001".into(),
                title: "db-prod".into(),
                record_type: "databaseCredentials".into(),
                folder_id: Some(folder.id),
                revision: 3,
                vault_owner: Some("abe@x.example".into()),
                owner_user_id: Some(approver.id),
                sensitivity: Sensitivity::High,
                discovery_source: DiscoverySource::Manual,
            },
            t0(),
        )
        .await
        .unwrap();
    let resource = store
        .upsert_governed_resource(record.id, "vis", "acc", "lease", t0())
        .await
        .unwrap();
    Fixture {
        requester,
        approver,
        record,
        resource,
    }
}

fn submission_trace(outcome: TraceOutcome) -> NewTrace {
    let inputs = json!({"record": "db-prod", "duration_secs": 7200});
    NewTrace {
        request_id: None,
        stage: TraceStage::RequestSubmission,
        outcome,
        reasons: json!(["routed to authority"]),
        constraints: json!({"max_lease_secs": 28800}),
        required_approvals: json!([{"authority": "APPROVER", "count": 1}]),
        trace: json!([{"rule": "authority-routing", "verdict": "ROUTE"}]),
        inputs_hash: passkey::canonical::hash_canonical(&inputs),
        inputs,
        policy_version: "pv-test".into(),
        code_version: "test".into(),
        at: t0(),
    }
}

async fn pending_request(store: &dyn Store, f: &Fixture) -> Request {
    store
        .create_request(
            &NewRequest {
                requester_id: f.requester.id,
                record_id: f.record.id,
                status: RequestStatus::Pending,
                justification: "INC-4411 failover".into(),
                ticket_id: Some("INC-4411".into()),
                requested_duration_secs: 7200,
                break_glass: false,
                required_approvals: 1,
                max_issuances: 3,
                policy_version: Some("pv-test".into()),
                review_required: false,
                otp_required: false,
                decision_reason: None,
            },
            &[submission_trace(TraceOutcome::Pending)],
            &NewAuditEvent::new(format!("user:{}", f.requester.id), "REQUEST_CREATED", t0()),
            t0(),
        )
        .await
        .unwrap()
}

async fn users(db: Db) {
    let s = db.store.as_ref();
    let first = s
        .upsert_user(
            &new_user("aad-1", "Alice", "Alice@Contoso.example", Role::Requester),
            t0(),
        )
        .await
        .unwrap();
    assert_eq!(first.role, Role::Requester);
    assert_eq!(first.created_at, t0());

    // Seen again with a new display name and a different "initial" role: profile refreshes, role stays.
    let later = t0().plus(Duration::hours(1));
    let again = s
        .upsert_user(
            &new_user(
                "aad-1",
                "Alice Liddell",
                "alice@contoso.example",
                Role::Admin,
            ),
            later,
        )
        .await
        .unwrap();
    assert_eq!(again.id, first.id);
    assert_eq!(again.display_name, "Alice Liddell");
    assert_eq!(
        again.role,
        Role::Requester,
        "an upsert must never escalate a role"
    );
    assert_eq!(again.created_at, t0());
    assert_eq!(again.updated_at, later);

    assert_eq!(
        s.user_by_aad_object_id("aad-1").await.unwrap().unwrap().id,
        first.id
    );
    assert_eq!(
        s.user_by_email("ALICE@contoso.EXAMPLE")
            .await
            .unwrap()
            .unwrap()
            .id,
        first.id
    );
    assert!(
        s.user_by_email("nobody@contoso.example")
            .await
            .unwrap()
            .is_none()
    );
    assert!(s.user_by_id(999_999).await.unwrap().is_none());

    let promoted = s
        .set_user_role(
            first.id,
            Role::Approver,
            &NewAuditEvent::new("user:admin", "ROLE_CHANGED", later)
                .detail(json!({"to": "APPROVER"})),
        )
        .await
        .unwrap();
    assert_eq!(promoted.role, Role::Approver);
    assert_eq!(s.users_with_role(Role::Approver).await.unwrap().len(), 1);
    let events = s.audit_events_after(0, 10).await.unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].action, "ROLE_CHANGED");

    let missing = s
        .set_user_role(
            424242,
            Role::Admin,
            &NewAuditEvent::new("user:admin", "ROLE_CHANGED", later),
        )
        .await;
    assert!(
        matches!(missing, Err(StoreError::NotFound(_))),
        "{missing:?}"
    );
    assert_eq!(
        s.audit_events_after(0, 10).await.unwrap().len(),
        1,
        "a failed change writes no audit event"
    );
    assert_eq!(s.count_users().await.unwrap(), 1);
}

async fn vault_records_and_permissions(db: Db) {
    let s = db.store.as_ref();
    let folder = s.upsert_folder("F1", "Databases", t0()).await.unwrap();
    let renamed = s
        .upsert_folder("F1", "Databases (prod)", t0())
        .await
        .unwrap();
    assert_eq!(folder.id, renamed.id);
    assert_eq!(s.list_folders().await.unwrap().len(), 1);

    let perm = |t, p: &str, l| NewFolderPermission {
        principal_type: t,
        principal: p.into(),
        permission: l,
    };
    s.replace_folder_permissions(
        folder.id,
        &[
            perm(VaultPrincipalType::User, "bob@x", FolderPermission::Manager),
            perm(VaultPrincipalType::Team, "sre", FolderPermission::Viewer),
        ],
        t0(),
    )
    .await
    .unwrap();
    let replaced = s
        .replace_folder_permissions(
            folder.id,
            &[perm(
                VaultPrincipalType::User,
                "carol@x",
                FolderPermission::Owner,
            )],
            t0(),
        )
        .await
        .unwrap();
    assert_eq!(replaced.len(), 1);
    let acl = s.folder_permissions(folder.id).await.unwrap();
    assert_eq!(acl.len(), 1, "a sync replaces the whole ACL");
    assert_eq!(
        (acl[0].principal.as_str(), acl[0].permission),
        ("carol@x", FolderPermission::Owner)
    );

    // A duplicate principal in one ACL is refused and the previous ACL survives intact.
    let dup = s
        .replace_folder_permissions(
            folder.id,
            &[
                perm(VaultPrincipalType::User, "x@x", FolderPermission::Owner),
                perm(VaultPrincipalType::User, "x@x", FolderPermission::Viewer),
            ],
            t0(),
        )
        .await;
    assert!(matches!(dup, Err(StoreError::Conflict(_))), "{dup:?}");
    assert_eq!(
        s.folder_permissions(folder.id).await.unwrap()[0].principal,
        "carol@x"
    );

    let mk = |uid: &str, title: &str| NewRecord {
        vault_uid: uid.into(),
        title: title.into(),
        record_type: "login".into(),
        folder_id: Some(folder.id),
        revision: 1,
        vault_owner: None,
        owner_user_id: None,
        sensitivity: Sensitivity::Medium,
        discovery_source: DiscoverySource::Auto,
    };
    let prod = s.upsert_record(&mk("U1", "db-prod"), t0()).await.unwrap();
    s.upsert_record(&mk("U2", "db-prod-replica"), t0())
        .await
        .unwrap();
    s.upsert_record(&mk("U3", "DB_staging"), t0())
        .await
        .unwrap();
    assert_eq!(prod.sync_status, SyncStatus::Fresh);

    let mut newer = mk("U1", "db-prod");
    newer.revision = 7;
    let updated = s
        .upsert_record(&newer, t0().plus(Duration::minutes(5)))
        .await
        .unwrap();
    assert_eq!((updated.id, updated.revision), (prod.id, 7));
    assert_eq!(updated.created_at, t0());

    let found = s.records_by_title_prefix("DB-PROD", 10).await.unwrap();
    let titles: Vec<&str> = found.iter().map(|r| r.title.as_str()).collect();
    assert_eq!(
        titles,
        ["db-prod", "db-prod-replica"],
        "exact match first, case-insensitive"
    );
    // LIKE wildcards in user text are literal characters.
    assert!(
        s.records_by_title_prefix("db%", 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(s.records_by_title_prefix("db_", 10).await.unwrap().len(), 1);
    assert_eq!(s.records_by_title_prefix("db", 1).await.unwrap().len(), 1);

    let orphaned = s
        .set_record_sync_status(prod.id, SyncStatus::Orphaned, t0())
        .await
        .unwrap();
    assert_eq!(orphaned.sync_status, SyncStatus::Orphaned);
    assert_eq!(
        s.record_by_uid("U1").await.unwrap().unwrap().sync_status,
        SyncStatus::Orphaned
    );
    assert!(s.record_by_uid("nope").await.unwrap().is_none());
    assert!(matches!(
        s.set_record_sync_status(987654, SyncStatus::Stale, t0())
            .await,
        Err(StoreError::NotFound(_))
    ));
    assert_eq!(s.list_records().await.unwrap().len(), 3);
}

async fn permission_cache_expires_and_is_dropped_when_an_acl_or_role_changes(db: Db) {
    let s = db.store.as_ref();
    let f = fixture(s).await;
    let folder_id = f.record.folder_id.unwrap();
    let perm = |p: &str, l| NewFolderPermission {
        principal_type: VaultPrincipalType::User,
        principal: p.into(),
        permission: l,
    };
    let acl = [
        perm("rita@x.example", FolderPermission::Viewer),
        perm("abe@x.example", FolderPermission::Manager),
    ];
    s.replace_folder_permissions(folder_id, &acl, t0())
        .await
        .unwrap();
    let body = json!({"requestable_folders": [folder_id], "degraded": false});
    let expires = t0().plus(Duration::minutes(5));
    s.put_cached_permissions(f.requester.id, &body, t0(), expires)
        .await
        .unwrap();
    assert_eq!(
        s.cached_permissions(f.requester.id, t0()).await.unwrap(),
        Some(body.clone())
    );
    // Fresh until expires_at, exclusive.
    assert!(
        s.cached_permissions(f.requester.id, expires.minus(Duration::seconds(1)))
            .await
            .unwrap()
            .is_some()
    );
    assert_eq!(
        s.cached_permissions(f.requester.id, expires).await.unwrap(),
        None
    );
    assert_eq!(
        s.cached_permissions(f.approver.id, t0()).await.unwrap(),
        None
    );

    // Upsert replaces the body.
    let newer = json!({"requestable_folders": [], "degraded": true});
    s.put_cached_permissions(f.requester.id, &newer, t0(), expires)
        .await
        .unwrap();
    assert_eq!(
        s.cached_permissions(f.requester.id, t0()).await.unwrap(),
        Some(newer.clone())
    );

    // A sync that reports the same ACL (other order) keeps the cache…
    s.replace_folder_permissions(folder_id, &[acl[1].clone(), acl[0].clone()], t0())
        .await
        .unwrap();
    assert!(
        s.cached_permissions(f.requester.id, t0())
            .await
            .unwrap()
            .is_some()
    );
    // …one that changes a permission drops every cached row in the same write.
    s.put_cached_permissions(f.approver.id, &body, t0(), expires)
        .await
        .unwrap();
    s.replace_folder_permissions(
        folder_id,
        &[
            perm("rita@x.example", FolderPermission::Editor),
            acl[1].clone(),
        ],
        t0(),
    )
    .await
    .unwrap();
    assert_eq!(
        s.cached_permissions(f.requester.id, t0()).await.unwrap(),
        None
    );
    assert_eq!(
        s.cached_permissions(f.approver.id, t0()).await.unwrap(),
        None
    );

    // A refused sync (duplicate principal) leaves both the ACL and the cache as they were.
    s.put_cached_permissions(f.requester.id, &body, t0(), expires)
        .await
        .unwrap();
    let dup = s
        .replace_folder_permissions(
            folder_id,
            &[
                perm("x@x", FolderPermission::Owner),
                perm("x@x", FolderPermission::Viewer),
            ],
            t0(),
        )
        .await;
    assert!(matches!(dup, Err(StoreError::Conflict(_))), "{dup:?}");
    assert!(
        s.cached_permissions(f.requester.id, t0())
            .await
            .unwrap()
            .is_some()
    );

    // A role change drops that person's cached permissions (admins may request everywhere).
    s.put_cached_permissions(f.approver.id, &body, t0(), expires)
        .await
        .unwrap();
    s.set_user_role(
        f.requester.id,
        Role::Admin,
        &NewAuditEvent::new("admin-cli", "ROLE_CHANGED", t0()),
    )
    .await
    .unwrap();
    assert_eq!(
        s.cached_permissions(f.requester.id, t0()).await.unwrap(),
        None
    );
    assert!(
        s.cached_permissions(f.approver.id, t0())
            .await
            .unwrap()
            .is_some()
    );

    assert_eq!(s.invalidate_permission_cache().await.unwrap(), 1);
    assert_eq!(
        s.cached_permissions(f.approver.id, t0()).await.unwrap(),
        None
    );
    assert_eq!(s.invalidate_permission_cache().await.unwrap(), 0);
}

async fn policies_and_authorities(db: Db) {
    let s = db.store.as_ref();
    let f = fixture(s).await;
    let audit = |action: &str| NewAuditEvent::new("user:admin", action, t0());

    let p1 = s
        .put_policy(
            &NewPolicy {
                kind: PolicyKind::Lease,
                name: "system.lease.default".into(),
                body: json!({"max_lease_secs": 3600}),
                created_by: "admin".into(),
            },
            &audit("POLICY_CHANGED"),
        )
        .await
        .unwrap();
    // The same body (keys in another order) is the same policy: nothing new, no audit event.
    let same = s
        .put_policy(
            &NewPolicy {
                kind: PolicyKind::Lease,
                name: "system.lease.default".into(),
                body: json!({"max_lease_secs": 3600}),
                created_by: "admin".into(),
            },
            &audit("POLICY_CHANGED"),
        )
        .await
        .unwrap();
    assert_eq!(same.id, p1.id);
    let p2 = s
        .put_policy(
            &NewPolicy {
                kind: PolicyKind::Lease,
                name: "system.lease.default".into(),
                body: json!({"max_lease_secs": 7200}),
                created_by: "admin".into(),
            },
            &audit("POLICY_CHANGED"),
        )
        .await
        .unwrap();
    assert_ne!(p2.id, p1.id);
    let active = s.active_policies().await.unwrap();
    assert_eq!(active.len(), 1);
    assert_eq!(active[0].body.0["max_lease_secs"], 7200);
    assert_eq!(s.audit_events_after(0, 10).await.unwrap().len(), 2);
    assert_eq!(
        s.governed_resource_for_record(f.record.id)
            .await
            .unwrap()
            .unwrap()
            .id,
        f.resource.id
    );

    let grant = |principal: &str, stage: i32| NewAuthority {
        resource_id: f.resource.id,
        authority: AuthorityKind::Approver,
        principal_type: PrincipalType::User,
        principal: principal.into(),
        stage,
        valid_from: t0(),
        valid_to: None,
        created_by: "user:admin".into(),
    };
    let a1 = s
        .add_authority(&grant("aad-app", 1), &audit("AUTHORITY_GRANTED"))
        .await
        .unwrap();
    let a2 = s
        .add_authority(&grant("aad-other", 2), &audit("AUTHORITY_GRANTED"))
        .await
        .unwrap();
    let mut expired = grant("aad-old", 1);
    expired.valid_to = Some(t0().plus(Duration::minutes(1)));
    s.add_authority(&expired, &audit("AUTHORITY_GRANTED"))
        .await
        .unwrap();

    let later = t0().plus(Duration::hours(1));
    let ids: Vec<i64> = s
        .active_authorities(f.resource.id, later)
        .await
        .unwrap()
        .iter()
        .map(|a| a.id)
        .collect();
    assert_eq!(
        ids,
        [a1.id, a2.id],
        "ordered by stage; rows past valid_to are not in force"
    );

    // The audit event of a grant names the row it created; rows and resources read back by id.
    let events = s.audit_events_after(0, 100).await.unwrap();
    let granted: Vec<i64> = events
        .iter()
        .filter(|e| e.action == "AUTHORITY_GRANTED")
        .filter_map(|e| e.detail.0["authority_id"].as_i64())
        .collect();
    assert_eq!(&granted[..2], [a1.id, a2.id]);
    assert_eq!(s.authority_by_id(a2.id).await.unwrap().unwrap(), a2);
    assert!(s.authority_by_id(99999).await.unwrap().is_none());
    assert_eq!(
        s.governed_resource_by_id(f.resource.id)
            .await
            .unwrap()
            .unwrap()
            .record_id,
        f.record.id
    );
    assert!(s.governed_resource_by_id(99999).await.unwrap().is_none());

    let revoked = s
        .revoke_authority(
            a2.id,
            "user:admin",
            "left the team",
            &audit("AUTHORITY_REVOKED"),
        )
        .await
        .unwrap();
    assert_eq!(revoked.revoked_reason.as_deref(), Some("left the team"));
    let twice = s
        .revoke_authority(a2.id, "user:admin", "again", &audit("AUTHORITY_REVOKED"))
        .await;
    assert!(matches!(twice, Err(StoreError::Conflict(_))), "{twice:?}");
    assert!(matches!(
        s.revoke_authority(99999, "u", "r", &audit("AUTHORITY_REVOKED"))
            .await,
        Err(StoreError::NotFound(_))
    ));

    let successor = s
        .supersede_authority(
            a1.id,
            &grant("aad-new", 1),
            "handover",
            &audit("AUTHORITY_SUPERSEDED"),
        )
        .await
        .unwrap();
    let history = s.authority_history(f.resource.id).await.unwrap();
    let old = history.iter().find(|a| a.id == a1.id).unwrap();
    assert_eq!(old.superseded_by, Some(successor.id));
    assert!(old.revoked_at.is_some());
    assert_eq!(history.len(), 4, "nothing is ever deleted");
    let active: Vec<String> = s
        .active_authorities(f.resource.id, later)
        .await
        .unwrap()
        .into_iter()
        .map(|a| a.principal)
        .collect();
    assert_eq!(active, ["aad-new"]);
    let again = s
        .supersede_authority(
            a1.id,
            &grant("aad-newer", 1),
            "again",
            &audit("AUTHORITY_SUPERSEDED"),
        )
        .await;
    assert!(matches!(again, Err(StoreError::Conflict(_))), "{again:?}");
    assert_eq!(
        s.authority_history(f.resource.id).await.unwrap().len(),
        4,
        "a refused supersede inserts nothing"
    );
}

async fn authority_rows_are_append_only_in_the_database(db: Db) {
    let s = db.store.as_ref();
    let f = fixture(s).await;
    let row = s
        .add_authority(
            &NewAuthority {
                resource_id: f.resource.id,
                authority: AuthorityKind::Approver,
                principal_type: PrincipalType::User,
                principal: "aad-app".into(),
                stage: 1,
                valid_from: t0(),
                valid_to: None,
                created_by: "user:admin".into(),
            },
            &NewAuditEvent::new("user:admin", "AUTHORITY_GRANTED", t0()),
        )
        .await
        .unwrap();
    let id = row.id;
    let refused = |r: Result<u64, StoreError>, what: &str| match r {
        Err(StoreError::Refused(msg)) => assert!(msg.contains("INV-1"), "{what}: {msg}"),
        other => panic!(
            "{what} on {}: expected an INV-1 refusal, got {other:?}",
            db.engine
        ),
    };
    refused(
        db.raw
            .exec(&format!(
                "UPDATE governed_resource_authorities SET principal = 'aad-mallory' WHERE id = {id}"
            ))
            .await,
        "rewrite principal",
    );
    refused(
        db.raw
            .exec(&format!(
                "UPDATE governed_resource_authorities SET stage = 2 WHERE id = {id}"
            ))
            .await,
        "rewrite stage",
    );
    refused(
        db.raw
            .exec(&format!(
                "DELETE FROM governed_resource_authorities WHERE id = {id}"
            ))
            .await,
        "delete",
    );
    let ts = if db.engine == "sqlite" {
        "'2026-11-23T10:00:00.000000Z'"
    } else {
        "'2026-11-23T10:00:00Z'"
    };
    assert_eq!(
        db.raw.exec(&format!("UPDATE governed_resource_authorities SET revoked_at = {ts}, revoked_by = 'dba', revoked_reason = 'r' WHERE id = {id}")).await.unwrap(),
        1,
        "the first revocation is the one change allowed"
    );
    refused(
        db.raw
            .exec(&format!(
                "UPDATE governed_resource_authorities SET revoked_at = {ts} WHERE id = {id}"
            ))
            .await,
        "revoke twice",
    );
    refused(
        db.raw
            .exec(&format!(
                "UPDATE governed_resource_authorities SET revoked_reason = 'edited' WHERE id = {id}"
            ))
            .await,
        "edit reason",
    );
    let after = s.authority_history(f.resource.id).await.unwrap();
    assert_eq!(after[0].principal, "aad-app");
    assert_eq!(after[0].revoked_reason.as_deref(), Some("r"));
}

async fn audit_and_traces_are_insert_only_in_the_database(db: Db) {
    let s = db.store.as_ref();
    let f = fixture(s).await;
    let req = pending_request(s, &f).await;
    let refused = |r: Result<u64, StoreError>, what: &str| match r {
        Err(StoreError::Refused(msg)) => assert!(msg.contains("INV-2"), "{what}: {msg}"),
        other => panic!(
            "{what} on {}: expected an INV-2 refusal, got {other:?}",
            db.engine
        ),
    };
    refused(
        db.raw
            .exec("UPDATE audit_events SET actor = 'someone-else'")
            .await,
        "update audit",
    );
    refused(
        db.raw.exec("DELETE FROM audit_events").await,
        "delete audit",
    );
    refused(
        db.raw
            .exec("UPDATE governance_decision_traces SET outcome = 'ALLOW'")
            .await,
        "update trace",
    );
    refused(
        db.raw.exec("DELETE FROM governance_decision_traces").await,
        "delete trace",
    );
    if db.engine == "postgres" {
        refused(db.raw.exec("TRUNCATE audit_events").await, "truncate audit");
    }
    let events = s.audit_events_for_request(req.id).await.unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].actor, format!("user:{}", f.requester.id));
    assert_eq!(
        s.traces_for_request(req.id).await.unwrap()[0].outcome,
        TraceOutcome::Pending
    );
}

async fn request_lifecycle_writes(db: Db) {
    let s = db.store.as_ref();
    let f = fixture(s).await;
    let req = pending_request(s, &f).await;
    assert_eq!(req.status, RequestStatus::Pending);
    assert_eq!((req.issuance_count, req.max_issuances), (0, 3));
    assert!(req.decided_at.is_none());

    let traces = s.traces_for_request(req.id).await.unwrap();
    assert_eq!(traces.len(), 1);
    assert_eq!(traces[0].stage, TraceStage::RequestSubmission);
    assert_eq!(
        traces[0].inputs_hash,
        passkey::canonical::hash_canonical(&traces[0].inputs.0),
        "inputs are stored so replay needs nothing else"
    );

    let at = t0().plus(Duration::minutes(3));
    let mut approve =
        StatusChange::new(req.id, RequestStatus::Pending, RequestStatus::Approved, at);
    approve.decided_by = Some(f.approver.id);
    approve.decision_reason = Some("ok for the incident".into());
    approve.approved_duration_secs = Some(3600);
    approve.lease_started_at = Some(at);
    approve.lease_expires_at = Some(at.plus(Duration::hours(1)));
    let mut decision = submission_trace(TraceOutcome::Allow);
    decision.stage = TraceStage::ApprovalDecision;
    let approved = s
        .transition_request(
            &approve,
            &[decision],
            &NewAuditEvent::new(format!("user:{}", f.approver.id), "REQUEST_APPROVED", at),
        )
        .await
        .unwrap();
    assert_eq!(approved.status, RequestStatus::Approved);
    assert_eq!(approved.decided_by, Some(f.approver.id));
    assert_eq!(approved.decided_at, Some(at));
    assert_eq!(approved.lease_expires_at, Some(at.plus(Duration::hours(1))));
    assert_eq!(approved.approved_duration_secs, Some(3600));
    assert_eq!(approved.updated_at, at);

    let end = at.plus(Duration::minutes(20));
    let released = s
        .transition_request(
            &StatusChange::new(
                req.id,
                RequestStatus::Approved,
                RequestStatus::Released,
                end,
            ),
            &[],
            &NewAuditEvent::new(format!("user:{}", f.requester.id), "LEASE_RELEASED", end),
        )
        .await
        .unwrap();
    assert_eq!(released.ended_at, Some(end));
    assert_eq!(
        released.decided_by,
        Some(f.approver.id),
        "fields not named in a change keep their values"
    );

    let actions: Vec<String> = s
        .audit_events_for_request(req.id)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.action)
        .collect();
    assert_eq!(
        actions,
        ["REQUEST_CREATED", "REQUEST_APPROVED", "LEASE_RELEASED"]
    );
    let events = s.audit_events_for_request(req.id).await.unwrap();
    assert!(
        events.iter().all(|e| e.record_id == Some(f.record.id)),
        "events carry the record"
    );
    assert_eq!(s.traces_for_request(req.id).await.unwrap().len(), 2);

    let mine = s.requests_for_requester(f.requester.id, 10).await.unwrap();
    assert_eq!(mine.len(), 1);
    assert_eq!(
        s.requests_in_status(&[RequestStatus::Released], 10)
            .await
            .unwrap()
            .len(),
        1
    );
    assert!(
        s.requests_in_status(&[RequestStatus::Pending, RequestStatus::Approved], 10)
            .await
            .unwrap()
            .is_empty()
    );

    // A request cannot be born approved: approval is always a recorded transition.
    let mut born_approved = NewRequest {
        requester_id: f.requester.id,
        record_id: f.record.id,
        status: RequestStatus::Approved,
        justification: "x".into(),
        ticket_id: None,
        requested_duration_secs: 60,
        break_glass: false,
        required_approvals: 1,
        max_issuances: 3,
        policy_version: None,
        review_required: false,
        otp_required: false,
        decision_reason: None,
    };
    let refused = s
        .create_request(
            &born_approved,
            &[],
            &NewAuditEvent::new("u", "REQUEST_CREATED", t0()),
            t0(),
        )
        .await;
    assert!(
        matches!(refused, Err(StoreError::Invalid(_))),
        "{refused:?}"
    );
    // A request whose policy said DENY is recorded as decided.
    born_approved.status = RequestStatus::Denied;
    let denied = s
        .create_request(
            &born_approved,
            &[],
            &NewAuditEvent::new("u", "REQUEST_DENIED", t0()),
            t0(),
        )
        .await
        .unwrap();
    assert_eq!(
        (denied.decided_at, denied.ended_at),
        (Some(t0()), Some(t0()))
    );
    // A foreign key that points nowhere is invalid, and nothing is half-written.
    born_approved.record_id = 987654;
    born_approved.status = RequestStatus::Pending;
    let dangling = s
        .create_request(
            &born_approved,
            &[],
            &NewAuditEvent::new("u", "REQUEST_CREATED", t0()),
            t0(),
        )
        .await;
    assert!(
        matches!(dangling, Err(StoreError::Invalid(_))),
        "{dangling:?}"
    );
    assert_eq!(s.audit_events_after(0, 100).await.unwrap().len(), 4);
}

async fn illegal_and_stale_transitions_change_nothing(db: Db) {
    let s = db.store.as_ref();
    let f = fixture(s).await;
    let req = pending_request(s, &f).await;
    let audit = |a: &str| NewAuditEvent::new("user:x", a, t0());

    // Every illegal move out of PENDING is refused before touching the database.
    for to in RequestStatus::ALL
        .iter()
        .filter(|to| !RequestStatus::Pending.can_become(**to))
    {
        let r = s
            .transition_request(
                &StatusChange::new(req.id, RequestStatus::Pending, *to, t0()),
                &[],
                &audit("X"),
            )
            .await;
        assert!(
            matches!(r, Err(StoreError::IllegalTransition(_))),
            "PENDING -> {to}: {r:?}"
        );
    }
    // A legal move from a status the row is no longer in: the caller saw stale data.
    let stale = s
        .transition_request(
            &StatusChange::new(req.id, RequestStatus::Approved, RequestStatus::Issued, t0()),
            &[],
            &audit("SHARE_ISSUED"),
        )
        .await;
    match stale {
        Err(StoreError::StatusConflict {
            expected, actual, ..
        }) => {
            assert_eq!(
                (expected, actual),
                (RequestStatus::Approved, RequestStatus::Pending)
            )
        }
        other => panic!("expected a status conflict, got {other:?}"),
    }
    let unknown = s
        .transition_request(
            &StatusChange::new(
                777_777,
                RequestStatus::Pending,
                RequestStatus::Approved,
                t0(),
            ),
            &[],
            &audit("REQUEST_APPROVED"),
        )
        .await;
    assert!(
        matches!(unknown, Err(StoreError::NotFound(_))),
        "{unknown:?}"
    );

    let now = s.request_by_id(req.id).await.unwrap().unwrap();
    assert_eq!(now, req, "the row is exactly as created");
    assert_eq!(
        s.audit_events_after(0, 100).await.unwrap().len(),
        1,
        "only REQUEST_CREATED was audited"
    );
    assert_eq!(s.traces_for_request(req.id).await.unwrap().len(), 1);
}

async fn racing_approvals_have_exactly_one_winner(db: Db) {
    let store = db.store.clone();
    let f = fixture(store.as_ref()).await;
    let req = pending_request(store.as_ref(), &f).await;
    let mut approvers = Vec::new();
    for i in 0..32 {
        let u = new_user(
            &format!("aad-approver-{i}"),
            &format!("Approver {i}"),
            &format!("a{i}@x.example"),
            Role::Approver,
        );
        approvers.push(store.upsert_user(&u, t0()).await.unwrap().id);
    }
    let tasks: Vec<_> = approvers
        .into_iter()
        .enumerate()
        .map(|(i, approver)| {
            let store = store.clone();
            tokio::spawn(async move {
                let at = t0().plus(Duration::seconds(i as i64));
                let mut change =
                    StatusChange::new(req.id, RequestStatus::Pending, RequestStatus::Approved, at);
                change.decided_by = Some(approver);
                change.lease_started_at = Some(at);
                store
                    .transition_request(
                        &change,
                        &[],
                        &NewAuditEvent::new(format!("user:{approver}"), "REQUEST_APPROVED", at),
                    )
                    .await
            })
        })
        .collect();
    let mut winners = Vec::new();
    let mut losers = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(r) => winners.push(r),
            Err(StoreError::StatusConflict {
                actual: RequestStatus::Approved,
                ..
            }) => losers += 1,
            Err(e) => panic!("{}: unexpected error {e:?}", db.engine),
        }
    }
    assert_eq!(winners.len(), 1, "{}: exactly one approval wins", db.engine);
    assert_eq!(losers, 31);
    let stored = store.request_by_id(req.id).await.unwrap().unwrap();
    assert_eq!(
        stored.decided_by, winners[0].decided_by,
        "the stored decider is the winner"
    );
    let approvals = store
        .audit_events_for_request(req.id)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.action == "REQUEST_APPROVED")
        .count();
    assert_eq!(approvals, 1, "losers leave no audit trace of a decision");
}

fn assert_chain_intact(events: &[AuditEvent]) {
    let mut prev = "0".repeat(64);
    for (i, e) in events.iter().enumerate() {
        assert_eq!(e.seq, i as i64 + 1, "sequence numbers are contiguous");
        assert_eq!(
            e.prev_hash, prev,
            "event {} links to its predecessor",
            e.seq
        );
        assert_eq!(
            recompute_audit_hash(e),
            e.hash,
            "event {} hash covers its content",
            e.seq
        );
        prev = e.hash.clone();
    }
}

async fn audit_chain_links_every_event_even_under_concurrency(db: Db) {
    let store = db.store.clone();
    let tasks: Vec<_> = (0..24)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .append_audit(
                        &NewAuditEvent::new(format!("user:{i}"), "ADMIN_COMMAND", t0())
                            .detail(json!({"n": i, "text": "ünïcode \"quoted\""})),
                    )
                    .await
                    .unwrap()
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let events = store.audit_events_after(0, 100).await.unwrap();
    assert_eq!(events.len(), 24);
    assert_chain_intact(&events);
    assert_eq!(store.audit_events_after(20, 100).await.unwrap().len(), 4);

    // Tampering is visible: change one event's content (bypassing the trigger is impossible, so
    // alter the copy) and its recomputed hash no longer matches.
    let mut forged = events[5].clone();
    forged.actor = "user:mallory".into();
    assert_ne!(recompute_audit_hash(&forged), forged.hash);
}

/// #18.1: a notice nobody could be sent waits (once per person, request and kind) until it is
/// delivered or no longer applies.
async fn waiting_notices_are_kept_once_and_closed(db: Db) {
    let s = db.store.as_ref();
    let f = fixture(s).await;
    let r = pending_request(s, &f).await;
    let (bob, req) = (f.approver.id, f.requester.id);
    s.record_waiting_notice(bob, r.id, "APPROVAL_NEEDED", "no_chat", t0())
        .await
        .unwrap();
    s.record_waiting_notice(bob, r.id, "APPROVAL_NEEDED", "no_chat", t0())
        .await
        .unwrap();
    s.record_waiting_notice(bob, r.id, "EXTENSION_NEEDED", "not_delivered", t0())
        .await
        .unwrap();
    s.record_waiting_notice(req, r.id, "APPROVAL_NEEDED", "no_chat", t0())
        .await
        .unwrap();
    let bobs = s.waiting_notices_for_user(bob).await.unwrap();
    assert_eq!(bobs.len(), 2, "{bobs:?}");
    // A turn reads its sender with whether notices wait and their stored zone, in one read.
    let aad = f.approver.aad_object_id.as_str();
    let sender = s.turn_sender(aad).await.unwrap().unwrap();
    assert_eq!(sender.user.id, bob);
    assert!(sender.notices_waiting);
    assert_eq!(sender.time_zone, None);
    s.set_user_time_zone(bob, "Europe/Berlin").await.unwrap();
    assert_eq!(
        s.turn_sender(aad)
            .await
            .unwrap()
            .unwrap()
            .time_zone
            .as_deref(),
        Some("Europe/Berlin")
    );
    assert!(s.turn_sender("nobody-by-this-id").await.unwrap().is_none());
    // Concurrent turns read their senders in one statement per power-of-two chunk: one answer
    // per id, in order, whatever the batch size (an id twice, an unknown one, over one chunk).
    let requester_aad = f.requester.aad_object_id.clone();
    let mut ids = vec![
        aad.to_string(),
        "nobody-by-this-id".to_string(),
        requester_aad.clone(),
        aad.to_string(),
    ];
    ids.extend((0..40).map(|i| format!("unknown-{i}")));
    ids.push(requester_aad.clone());
    let senders = s.turn_senders(&ids).await.unwrap();
    assert_eq!(senders.len(), 45);
    let who = |i: usize| senders[i].as_ref().map(|t| (t.user.id, t.notices_waiting));
    assert_eq!(who(0), Some((bob, true)));
    assert_eq!(who(1), None);
    assert_eq!(who(2), Some((req, true)));
    assert_eq!(who(3), Some((bob, true)));
    assert!((4..44).all(|i| who(i).is_none()));
    assert_eq!(who(44), Some((req, true)));
    assert!(s.turn_senders(&[]).await.unwrap().is_empty());
    assert_eq!(bobs[0].kind, "APPROVAL_NEEDED");
    assert_eq!(bobs[0].request_id, Some(r.id));
    assert_eq!(bobs[0].status, "PENDING");
    assert_eq!(bobs[0].last_error.as_deref(), Some("no_chat"));
    assert_eq!(s.kept_notices_for_request(r.id).await.unwrap().len(), 3);

    let later = t0().plus(Duration::minutes(5));
    s.close_waiting_notice(bobs[0].id, true, later)
        .await
        .unwrap();
    s.close_waiting_notice(bobs[1].id, false, later)
        .await
        .unwrap();
    assert!(s.waiting_notices_for_user(bob).await.unwrap().is_empty());
    assert!(!s.turn_sender(aad).await.unwrap().unwrap().notices_waiting);
    let kept: Vec<String> = s
        .kept_notices_for_request(r.id)
        .await
        .unwrap()
        .into_iter()
        .map(|n| n.status)
        .collect();
    assert_eq!(kept, ["SENT", "FAILED", "PENDING"]);
    let states = db
        .raw
        .texts(&format!(
            "SELECT status FROM notifications WHERE user_id = {bob} ORDER BY id"
        ))
        .await
        .unwrap();
    assert_eq!(states, ["SENT", "FAILED"]);
    // Closed notices no longer stop a new one from waiting.
    s.record_waiting_notice(bob, r.id, "APPROVAL_NEEDED", "no_chat", later)
        .await
        .unwrap();
    assert_eq!(s.waiting_notices_for_user(bob).await.unwrap().len(), 1);
}

async fn conversations_cards_and_redelivery(db: Db) {
    let s = db.store.as_ref();
    let f = fixture(s).await;
    let reference = |service_url: &str, at| ConversationRef {
        conversation_id: "a:1personal".into(),
        conversation_type: "personal".into(),
        channel_id: "msteams".into(),
        service_url: service_url.into(),
        tenant_id: Some("tenant-1".into()),
        bot_id: "28:bot".into(),
        user_id: Some(f.requester.id),
        aad_object_id: Some("aad-req".into()),
        teams_user_id: Some("29:req".into()),
        team_id: None,
        reference: sqlx::types::Json(json!({"conversation": {"id": "a:1personal"}})),
        updated_at: at,
    };
    s.upsert_conversation(&reference("https://smba.example/emea/", t0()))
        .await
        .unwrap();
    let later = t0().plus(Duration::minutes(1));
    s.upsert_conversation(&reference("https://smba.example/amer/", later))
        .await
        .unwrap();
    let got = s.personal_conversation("aad-req").await.unwrap().unwrap();
    assert_eq!(
        got.service_url, "https://smba.example/amer/",
        "the latest authenticated serviceUrl wins"
    );
    assert_eq!(got.updated_at, later);
    assert!(
        s.personal_conversation("aad-unknown")
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(
        s.conversation("a:1personal")
            .await
            .unwrap()
            .unwrap()
            .user_id,
        Some(f.requester.id)
    );

    let req = pending_request(s, &f).await;
    let card = |activity: &str, kind: &str| NewSentCard {
        request_id: req.id,
        recipient_user_id: Some(f.approver.id),
        conversation_id: "a:approver".into(),
        activity_id: activity.into(),
        card_kind: kind.into(),
        at: t0(),
    };
    s.record_sent_card(&card("act-1", "approval"))
        .await
        .unwrap();
    s.record_sent_card(&card("act-2", "approval"))
        .await
        .unwrap();
    s.record_sent_card(&card("act-1", "decided")).await.unwrap();
    let cards = s.sent_cards_for_request(req.id).await.unwrap();
    assert_eq!(cards.len(), 2);
    assert_eq!(cards[0].card_kind, "decided");

    // An activity is claimed by one turn at a time, done only when that turn finishes it.
    let minute = |t: Timestamp| t.plus(Duration::minutes(1));
    let claim = |conv: &'static str, token: &'static str, at: Timestamp| {
        s.claim_activity(conv, "act-9", token, at, minute(at))
    };
    assert_eq!(
        claim("conv", "turn-1", t0()).await.unwrap(),
        ActivityClaim::Claimed,
        "first delivery is claimed"
    );
    assert_eq!(
        claim("conv", "turn-2", t0()).await.unwrap(),
        ActivityClaim::InProgress,
        "a redelivery while the turn runs is told to come back"
    );
    assert_eq!(
        claim("other-conv", "turn-3", t0()).await.unwrap(),
        ActivityClaim::Claimed,
        "ids are per conversation"
    );
    assert!(
        !s.renew_activity_claim("conv", "act-9", "turn-2", minute(later))
            .await
            .unwrap(),
        "only the holder renews"
    );
    s.release_activity("conv", "act-9", "turn-2").await.unwrap();
    assert_eq!(
        claim("conv", "turn-2", t0()).await.unwrap(),
        ActivityClaim::InProgress,
        "only the holder releases"
    );
    s.release_activity("conv", "act-9", "turn-1").await.unwrap();
    assert_eq!(
        claim("conv", "turn-4", t0()).await.unwrap(),
        ActivityClaim::Claimed,
        "a failed turn's activity is claimed again"
    );
    assert_eq!(
        claim("conv", "turn-5", later).await.unwrap(),
        ActivityClaim::Claimed,
        "a claim that lapsed (its turn crashed) is taken over"
    );
    s.finish_activities(&[turn_key("act-9", "turn-4")], later)
        .await
        .unwrap();
    assert_eq!(
        claim("conv", "turn-6", later).await.unwrap(),
        ActivityClaim::InProgress,
        "the turn that lost its claim does not finish the activity"
    );
    assert!(
        s.renew_activity_claim("conv", "act-9", "turn-5", minute(later))
            .await
            .unwrap()
    );
    s.finish_activities(&[turn_key("act-9", "turn-5")], later)
        .await
        .unwrap();
    s.release_activity("conv", "act-9", "turn-5").await.unwrap();
    let much_later = later.plus(Duration::hours(1));
    assert_eq!(
        claim("conv", "turn-7", much_later).await.unwrap(),
        ActivityClaim::Done,
        "a finished activity stays done"
    );
    assert_eq!(s.forget_processed_before(much_later).await.unwrap(), 2);
    assert_eq!(
        claim("conv", "turn-8", much_later).await.unwrap(),
        ActivityClaim::Claimed
    );
}

/// A turn's claim on `activity` in conversation `conv`, for a minute from `now`.
fn turn_claim(activity: &str, token: &str, now: Timestamp) -> TurnClaim {
    TurnClaim {
        conversation_id: "conv".into(),
        activity_id: activity.into(),
        token: token.into(),
        now,
        until: now.plus(Duration::minutes(1)),
    }
}

/// The key of a turn holding `activity` in conversation `conv`.
fn turn_key(activity: &str, token: &str) -> TurnKey {
    TurnKey {
        conversation_id: "conv".into(),
        activity_id: activity.into(),
        token: token.into(),
    }
}

/// Concurrent turns' claims and finishes are written in one statement per power-of-two chunk;
/// each answer is what claiming that activity alone would have answered, in order, whatever the
/// batch size (1 to 70 here: one, several and more than one full chunk).
async fn batched_turn_claims_answer_each_activity_as_one_at_a_time_would(db: Db) {
    let s = db.store.as_ref();
    let until = t0().plus(Duration::minutes(1));
    let (claim, key) = (turn_claim, turn_key);
    // Where things stand before the batch: one activity done, one held by a live turn, one whose
    // turn crashed (its claim lapses at `until`).
    assert_eq!(
        s.claim_activities(&[
            claim("done", "t-done", t0()),
            claim("held", "t-held", t0()),
            claim("crashed", "t-crashed", t0())
        ])
        .await
        .unwrap(),
        vec![ActivityClaim::Claimed; 3]
    );
    s.finish_activities(&[key("done", "t-done")], t0())
        .await
        .unwrap();

    let now = t0().plus(Duration::seconds(30));
    let mut batch = vec![
        claim("done", "b-0", now),
        claim("held", "b-1", now),
        claim("crashed", "b-2", until),
        claim("new", "b-3", now),
        // The same activity twice in one batch: the first listing claims it, the second waits.
        claim("new", "b-4", now),
        claim("done", "b-5", now),
    ];
    for i in 0..64 {
        batch.push(claim(&format!("fresh-{i}"), &format!("f-{i}"), now));
    }
    let answers = s.claim_activities(&batch).await.unwrap();
    assert_eq!(answers.len(), 70);
    assert_eq!(
        answers[..6],
        [
            ActivityClaim::Done,
            ActivityClaim::InProgress,
            ActivityClaim::Claimed,
            ActivityClaim::Claimed,
            ActivityClaim::InProgress,
            ActivityClaim::Done,
        ],
        "done stays done, a live claim is not taken, a lapsed one is, a duplicate loses to the first"
    );
    assert!(answers[6..].iter().all(|a| *a == ActivityClaim::Claimed));

    // Finishing in one batch: only the turns that still hold their claims finish them.
    let mut finishes = vec![
        key("crashed", "t-crashed"),
        key("crashed", "b-2"),
        key("new", "b-4"),
    ];
    for i in 0..64 {
        finishes.push(key(&format!("fresh-{i}"), &format!("f-{i}")));
    }
    s.finish_activities(&finishes, until).await.unwrap();
    let again = s
        .claim_activities(&[
            claim("crashed", "c-0", until),
            claim("new", "c-1", until),
            claim("fresh-0", "c-2", until),
            claim("fresh-63", "c-3", until),
        ])
        .await
        .unwrap();
    assert_eq!(
        again,
        vec![
            ActivityClaim::Done,
            // b-4 never held it: b-3's claim is still live, so the redelivery waits.
            ActivityClaim::InProgress,
            ActivityClaim::Done,
            ActivityClaim::Done,
        ]
    );
    assert!(s.claim_activities(&[]).await.unwrap().is_empty());
}

/// What a busy instance writes for its turns in one batch: some claiming their activities, some
/// marking theirs done. Each claim is answered and each mark written as on its own; a redelivery
/// claimed in the batch that finishes its activity finds it done; of two marks for one activity
/// only the one holding the claim counts, whichever comes first; a mark whose row is gone
/// (released by a takeover that failed) writes it done.
async fn turns_starting_and_finishing_together_share_one_write(db: Db) {
    let s = db.store.as_ref();
    let (claim, key) = (turn_claim, turn_key);
    assert_eq!(
        s.claim_activities(&[
            claim("finishing", "t-1", t0()),
            claim("other", "t-2", t0()),
            claim("crashed", "t-3", t0()),
            claim("released", "t-4", t0()),
        ])
        .await
        .unwrap(),
        vec![ActivityClaim::Claimed; 4]
    );
    s.release_activity("conv", "released", "t-4").await.unwrap();
    let lapsed = t0().plus(Duration::minutes(1));
    let answers = s
        .write_turns(
            &[
                claim("new", "t-5", lapsed),
                // Teams redelivers while the turn finishes: the mark is in the same batch.
                claim("finishing", "t-6", lapsed),
                claim("crashed", "t-7", lapsed),
                claim("new", "t-8", lapsed),
            ],
            &[
                key("finishing", "t-1"),
                // A turn whose claim is not its own any more, then the one holding it.
                key("other", "not-the-holder"),
                key("other", "t-2"),
                key("released", "t-4"),
            ],
            lapsed,
        )
        .await
        .unwrap();
    assert_eq!(
        answers,
        vec![
            ActivityClaim::Claimed,
            ActivityClaim::Done,
            ActivityClaim::Claimed,
            ActivityClaim::InProgress,
        ],
        "new, finished in this batch, taken over, listed twice"
    );
    let much_later = t0().plus(Duration::hours(1));
    assert_eq!(
        s.claim_activities(&[
            claim("finishing", "t-9", much_later),
            claim("other", "t-10", much_later),
            claim("released", "t-11", much_later),
            claim("crashed", "t-12", lapsed),
        ])
        .await
        .unwrap(),
        vec![
            ActivityClaim::Done,
            ActivityClaim::Done,
            ActivityClaim::Done,
            ActivityClaim::InProgress
        ],
        "every mark of a holder is written; the taken-over claim is live"
    );
    // A batch of marks only, and one of claims only: the same statement serves.
    assert!(
        s.write_turns(&[], &[key("crashed", "t-7")], much_later)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        s.write_turns(&[claim("crashed", "t-13", much_later)], &[], much_later)
            .await
            .unwrap(),
        vec![ActivityClaim::Done]
    );
}

async fn job_claims(db: Db) {
    let s = db.store.as_ref();
    let lease = Duration::minutes(5);
    assert!(
        s.try_claim(
            "lease-expiry",
            "request:1",
            "node-a",
            t0(),
            t0().plus(lease)
        )
        .await
        .unwrap()
    );
    assert!(
        !s.try_claim(
            "lease-expiry",
            "request:1",
            "node-b",
            t0().plus(Duration::minutes(1)),
            t0().plus(Duration::minutes(6))
        )
        .await
        .unwrap(),
        "a live claim is exclusive"
    );
    assert!(
        s.try_claim(
            "lease-expiry",
            "request:2",
            "node-b",
            t0(),
            t0().plus(lease)
        )
        .await
        .unwrap(),
        "claims are per key"
    );

    // node-a stalls past its lease: node-b takes over; node-a can no longer complete.
    let later = t0().plus(Duration::minutes(6));
    assert!(
        s.try_claim(
            "lease-expiry",
            "request:1",
            "node-b",
            later,
            later.plus(lease)
        )
        .await
        .unwrap()
    );
    assert!(
        !s.complete_claim("lease-expiry", "request:1", "node-a", later)
            .await
            .unwrap()
    );
    assert!(
        s.complete_claim("lease-expiry", "request:1", "node-b", later)
            .await
            .unwrap()
    );
    // Completed work is never claimed again, however late (INV-7: revoked exactly once).
    let much_later = t0().plus(Duration::days(3));
    assert!(
        !s.try_claim(
            "lease-expiry",
            "request:1",
            "node-c",
            much_later,
            much_later.plus(lease)
        )
        .await
        .unwrap()
    );

    // Concurrent claimants of one unit: exactly one wins.
    let store = db.store.clone();
    let tasks: Vec<_> = (0..16)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .try_claim(
                        "sync",
                        "tick:1",
                        &format!("node-{i}"),
                        t0(),
                        t0().plus(lease),
                    )
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut wins = 0;
    for t in tasks {
        wins += usize::from(t.await.unwrap());
    }
    assert_eq!(wins, 1);
}

async fn migrations_are_current_and_idempotent(db: Db) {
    let s = db.store.as_ref();
    let state = s.migration_state().await.unwrap();
    assert!(state.is_current(), "{state:?}");
    assert!(!state.expected.is_empty());
    s.migrate().await.unwrap();
    assert_eq!(s.migration_state().await.unwrap(), state);
    s.ping().await.unwrap();
}

async fn demo_data_loads_once(db: Db) {
    let s = db.store.as_ref();
    let outcome = passkey::demo::load_if_empty(s, t0()).await.unwrap();
    assert_eq!(
        outcome,
        passkey::demo::DemoOutcome::Loaded {
            users: 5,
            records: 12
        }
    );
    assert_eq!(
        passkey::demo::load_if_empty(s, t0()).await.unwrap(),
        passkey::demo::DemoOutcome::SkippedNotEmpty
    );
    assert_eq!(s.list_records().await.unwrap().len(), 12);
    let db_prod = s
        .records_by_title_prefix("db-prod", 1)
        .await
        .unwrap()
        .remove(0);
    let resource = s
        .governed_resource_for_record(db_prod.id)
        .await
        .unwrap()
        .unwrap();
    let authorities = s.active_authorities(resource.id, t0()).await.unwrap();
    assert!(
        authorities
            .iter()
            .any(|a| a.authority == AuthorityKind::Approver)
    );
    assert!(
        authorities
            .iter()
            .any(|a| a.authority == AuthorityKind::Owner)
    );
    for role in Role::ALL {
        assert!(
            !s.users_with_role(*role).await.unwrap().is_empty(),
            "a demo {role}"
        );
    }
    let events = s.audit_events_after(0, 1000).await.unwrap();
    assert_eq!(events.last().unwrap().action, "DEMO_DATA_LOADED");
    assert_chain_intact(&events);
}

/// A request approved at `at` with a lease of `lease`, optionally retrieved once (ISSUED, one
/// outstanding share).
async fn leased_request(
    store: &dyn Store,
    f: &Fixture,
    at: Timestamp,
    lease: Duration,
    issue: bool,
) -> Request {
    let req = pending_request(store, f).await;
    let approve = StatusChange::new(req.id, RequestStatus::Pending, RequestStatus::Approved, at)
        .decided_by(f.approver.id, "ok")
        .lease(at, at.plus(lease), lease.whole_seconds());
    let mut request = store
        .transition_request(
            &approve,
            &[],
            &NewAuditEvent::new(format!("user:{}", f.approver.id), "REQUEST_APPROVED", at),
        )
        .await
        .unwrap();
    if issue {
        let share_at = at.plus(Duration::minutes(1));
        // A retrieval is reserved by using a minted token before its share is recorded.
        let token_hash = passkey::canonical::sha256_hex(format!("token-{}", req.id));
        store
            .set_issuance_token(
                req.id,
                &token_hash,
                share_at.plus(Duration::minutes(5)),
                share_at,
                &NewAuditEvent::new("test", "ISSUANCE_TOKEN_MINTED", share_at),
            )
            .await
            .unwrap();
        store
            .consume_issuance_token(
                req.id,
                &token_hash,
                share_at,
                share_at.minus(passkey::governance::lifecycle::RETRIEVAL_DEAD_AFTER),
            )
            .await
            .unwrap()
            .expect("the token is current");
        let (issued, _) = store
            .record_issuance(
                &NewIssuance {
                    request_id: req.id,
                    share_link_hash: passkey::canonical::sha256_hex(format!("url-{}", req.id)),
                    vault_share_id: format!("share-{}", req.id),
                    client_ip: None,
                    user_agent: None,
                    issued_at: share_at,
                    expires_at: at.plus(lease),
                },
                share_at,
                &[],
                &NewAuditEvent::new(
                    format!("user:{}", f.requester.id),
                    "ISSUANCE_SUCCEEDED",
                    share_at,
                ),
            )
            .await
            .unwrap();
        request = issued;
    }
    request
}

fn ending(request: &Request, at: Timestamp) -> LeaseEnding {
    let mut trace = submission_trace(TraceOutcome::Allow);
    trace.stage = TraceStage::RevocationEvent;
    LeaseEnding {
        request_id: request.id,
        from: request.status,
        trace,
        audit: NewAuditEvent::new("system:lease-expiry", "LEASE_EXPIRED", at)
            .detail(json!({"reason": "the lease ran out"})),
    }
}

async fn batch_lease_expiry_skips_changed_rows_and_chains_its_events(db: Db) {
    let s = db.store.as_ref();
    let f = fixture(s).await;
    let hour = Duration::hours(1);
    let issued: Vec<Request> = [
        leased_request(s, &f, t0(), hour, true).await,
        leased_request(s, &f, t0(), hour, true).await,
    ]
    .into();
    let approved = leased_request(s, &f, t0(), hour, false).await;
    let released = leased_request(s, &f, t0(), hour, false).await;
    let stale = leased_request(s, &f, t0(), hour, false).await;
    let extended = leased_request(s, &f, t0(), Duration::hours(5), true).await;
    let at = t0().plus(Duration::hours(2));
    // Released after the claim saw it APPROVED.
    s.transition_request(
        &StatusChange::new(
            released.id,
            RequestStatus::Approved,
            RequestStatus::Released,
            at,
        ),
        &[],
        &NewAuditEvent::new(format!("user:{}", f.requester.id), "LEASE_RELEASED", at),
    )
    .await
    .unwrap();
    let before = s.audit_events_after(0, 1000).await.unwrap().len();

    let mut endings: Vec<LeaseEnding> = issued.iter().map(|r| ending(r, at)).collect();
    endings.push(ending(&approved, at));
    endings.push(ending(&approved, at)); // listed twice: ended once
    endings.push(ending(&released, at)); // changed meanwhile
    let mut wrong = ending(&stale, at);
    wrong.from = RequestStatus::Issued; // the claimer saw another status
    endings.push(wrong);
    endings.push(ending(&extended, at)); // its lease does not end before `at`
    let expired = s
        .expire_leases(&endings, "the lease ran out", at)
        .await
        .unwrap();
    let ids: Vec<i64> = expired.iter().map(|r| r.id).collect();
    assert_eq!(ids, vec![issued[0].id, issued[1].id, approved.id]);
    for r in &expired {
        assert_eq!(r.status, RequestStatus::Expired);
        assert_eq!(
            (r.ended_at, r.updated_at, r.decided_at),
            (Some(at), at, Some(at))
        );
        assert_eq!(r.decision_reason.as_deref(), Some("the lease ran out"));
        assert_eq!(
            r.decided_by,
            Some(f.approver.id),
            "other fields keep their values"
        );
        assert!(r.issuance_token_hash.is_none());
        assert_eq!(s.request_by_id(r.id).await.unwrap().as_ref(), Some(r));
    }
    for (r, status) in [
        (&released, RequestStatus::Released),
        (&stale, RequestStatus::Approved),
        (&extended, RequestStatus::Issued),
    ] {
        assert_eq!(s.request_by_id(r.id).await.unwrap().unwrap().status, status);
    }

    // Exactly one event and one trace per expired lease, each naming its request and record.
    let events = s.audit_events_after(0, 1000).await.unwrap();
    assert_eq!(events.len(), before + 3);
    assert_chain_intact(&events);
    let new: Vec<&AuditEvent> = events[before..].iter().collect();
    let named: Vec<Option<i64>> = new.iter().map(|e| e.request_id).collect();
    assert_eq!(named, ids.iter().map(|&id| Some(id)).collect::<Vec<_>>());
    assert!(
        new.iter()
            .all(|e| e.action == "LEASE_EXPIRED" && e.record_id == Some(f.record.id))
    );
    for r in &expired {
        let traces = s.traces_for_request(r.id).await.unwrap();
        assert_eq!(
            traces
                .iter()
                .filter(|t| t.stage == TraceStage::RevocationEvent)
                .count(),
            1
        );
    }

    // Again: nothing left to end, nothing written.
    let again = s
        .expire_leases(&endings, "the lease ran out", at)
        .await
        .unwrap();
    assert!(again.is_empty());
    assert!(s.expire_leases(&[], "x", at).await.unwrap().is_empty());
    assert_eq!(
        s.audit_events_after(0, 1000).await.unwrap().len(),
        before + 3
    );

    // A status that has no lease to end is refused before anything is written.
    let mut bad = ending(&extended, at);
    bad.from = RequestStatus::Denied;
    let refused = s.expire_leases(&[bad], "x", at).await;
    assert!(
        matches!(refused, Err(StoreError::IllegalTransition(_))),
        "{refused:?}"
    );
    let mut pending = ending(&extended, at);
    pending.from = RequestStatus::Pending;
    let refused = s.expire_leases(&[pending], "x", at).await;
    assert!(
        matches!(refused, Err(StoreError::Invalid(_))),
        "{refused:?}"
    );
    assert_eq!(
        s.audit_events_after(0, 1000).await.unwrap().len(),
        before + 3
    );
}

async fn batch_share_revocation_marks_each_share_once(db: Db) {
    let s = db.store.as_ref();
    let f = fixture(s).await;
    let mut requests = Vec::new();
    for _ in 0..3 {
        requests.push(leased_request(s, &f, t0(), Duration::hours(1), true).await);
    }
    let unissued = leased_request(s, &f, t0(), Duration::hours(1), false).await;
    let mut ids: Vec<i64> = requests.iter().map(|r| r.id).collect();
    ids.push(unissued.id);
    let shares = s.outstanding_issuances_for(&ids).await.unwrap();
    assert_eq!(shares.len(), 3);
    assert_eq!(
        shares.iter().map(|e| e.request_id).collect::<Vec<_>>(),
        ids[..3].to_vec()
    );
    let at = t0().plus(Duration::hours(2));
    let revocation = |e: &IssuanceEvent| ShareRevocation {
        issuance_id: e.id,
        audit: NewAuditEvent::new("system:lease-expiry", "SHARE_REVOKED", at)
            .request(e.request_id)
            .record(f.record.id)
            .detail(json!({"issuance_id": e.id, "already_gone": false})),
    };
    // One share was marked by someone else first.
    assert!(
        s.mark_issuance_revoked(shares[1].id, at, &revocation(&shares[1]).audit)
            .await
            .unwrap()
    );
    let before = s.audit_events_after(0, 1000).await.unwrap().len();
    let batch: Vec<ShareRevocation> = [&shares[0], &shares[1], &shares[2], &shares[0]]
        .into_iter()
        .map(revocation)
        .collect();
    let marked = s.mark_issuances_revoked_batch(&batch, at).await.unwrap();
    assert_eq!(marked, vec![shares[0].id, shares[2].id]);
    assert!(s.outstanding_issuances_for(&ids).await.unwrap().is_empty());
    for e in s.issuances_for_request(requests[0].id).await.unwrap() {
        assert_eq!(e.revoked_at, Some(at));
    }
    let events = s.audit_events_after(0, 1000).await.unwrap();
    assert_eq!(events.len(), before + 2, "one event per share marked here");
    assert_chain_intact(&events);
    assert_eq!(
        events[before..]
            .iter()
            .map(|e| e.request_id)
            .collect::<Vec<_>>(),
        vec![Some(requests[0].id), Some(requests[2].id)]
    );
    // Nothing left: nothing written.
    assert!(
        s.mark_issuances_revoked_batch(&batch, at)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        s.mark_issuances_revoked_batch(&[], at)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        s.audit_events_after(0, 1000).await.unwrap().len(),
        before + 2
    );

    // Claims given back in bulk, only by their holder.
    let claimed = s
        .claim_due(
            DueWork::LeaseEnd,
            at,
            at,
            "node-a",
            at.plus(Duration::minutes(5)),
            10,
        )
        .await
        .unwrap();
    assert_eq!(claimed.iter().map(|r| r.id).collect::<Vec<_>>(), ids);
    let claimed_ids: Vec<i64> = claimed.iter().map(|r| r.id).collect();
    s.release_claims(&claimed_ids, "node-b").await.unwrap();
    assert_eq!(
        s.request_by_id(ids[0])
            .await
            .unwrap()
            .unwrap()
            .claimed_by
            .as_deref(),
        Some("node-a")
    );
    s.release_claims(&claimed_ids, "node-a").await.unwrap();
    for id in &ids {
        let r = s.request_by_id(*id).await.unwrap().unwrap();
        assert_eq!((r.claimed_by, r.claim_until), (None, None));
    }
}

async fn concurrent_batch_expiries_end_each_lease_once(db: Db) {
    let f = fixture(db.store.as_ref()).await;
    let mut requests = Vec::new();
    for i in 0..24 {
        requests.push(
            leased_request(db.store.as_ref(), &f, t0(), Duration::hours(1), i % 2 == 0).await,
        );
    }
    let at = t0().plus(Duration::hours(2));
    let before = db.store.audit_events_after(0, 1000).await.unwrap().len();
    let endings: Vec<LeaseEnding> = requests.iter().map(|r| ending(r, at)).collect();
    let tasks: Vec<_> = (0..4)
        .map(|_| {
            let store = db.store.clone();
            let endings = endings.clone();
            tokio::spawn(async move {
                store
                    .expire_leases(&endings, "the lease ran out", at)
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut total = Vec::new();
    for t in tasks {
        total.extend(t.await.unwrap().into_iter().map(|r| r.id));
    }
    total.sort_unstable();
    assert_eq!(
        total,
        requests.iter().map(|r| r.id).collect::<Vec<_>>(),
        "each lease ended once"
    );
    let events = db.store.audit_events_after(0, 1000).await.unwrap();
    assert_eq!(events.len(), before + requests.len());
    assert_chain_intact(&events);
}

/// The batch writes bind many rows per statement (SQLite: rows of `?`, at most 500 a statement;
/// Postgres: one `UNNEST` of column arrays for any count). A batch of 1,100 leases spans three
/// SQLite statements: every lease is ended, and every trace, event and share mark carries its own
/// row's values, in the order given, on the chain.
async fn batches_larger_than_one_statement_write_every_row_as_given(db: Db) {
    const N: usize = 1100;
    let s = db.store.as_ref();
    let f = fixture(s).await;
    let (started, ended) = ("2026-11-23T07:00:00.000000Z", "2026-11-23T08:00:00.000000Z");
    let (series, from, hex) = if db.engine == "sqlite" {
        (
            format!(
                "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {N}) SELECT"
            ),
            "FROM n".to_string(),
            "printf('%064x', id)",
        )
    } else {
        (
            "SELECT".to_string(),
            format!("FROM generate_series(1, {N})"),
            "lpad(to_hex(id), 64, '0')",
        )
    };
    db.raw
        .exec(&format!(
            "INSERT INTO requests (requester_id, record_id, status, justification, requested_duration_secs,
                                   approved_duration_secs, max_issuances, decided_at, lease_started_at,
                                   lease_expires_at, issuance_count, created_at, updated_at)
             {series} {}, {}, 'ISSUED', 'bulk lease', 3600, 3600, 3, '{started}', '{started}', '{ended}', 1,
                    '{started}', '{started}' {from}",
            f.requester.id, f.record.id
        ))
        .await
        .unwrap();
    db.raw
        .exec(&format!(
            "INSERT INTO issuance_events (request_id, share_link_hash, vault_share_id, issued_at, expires_at)
             SELECT id, {hex}, 'share-' || id, '{started}', '{ended}' FROM requests WHERE status = 'ISSUED'"
        ))
        .await
        .unwrap();
    let requests = s
        .requests_in_status(&[RequestStatus::Issued], 10_000)
        .await
        .unwrap();
    assert_eq!(requests.len(), N);
    let at = t0().plus(Duration::hours(2));
    // Claims over several `IN` lists are taken and given back whole.
    let claimed = s
        .claim_due(
            DueWork::LeaseEnd,
            at,
            at,
            "node-a",
            at.plus(Duration::minutes(5)),
            10_000,
        )
        .await
        .unwrap();
    assert_eq!(claimed.len(), N);
    let claimed_ids: Vec<i64> = claimed.iter().map(|r| r.id).collect();
    s.release_claims(&claimed_ids, "node-a").await.unwrap();
    assert!(
        s.requests_in_status(&[RequestStatus::Issued], 10_000)
            .await
            .unwrap()
            .iter()
            .all(|r| r.claimed_by.is_none() && r.claim_until.is_none())
    );
    let before = s.audit_events_after(0, 10_000).await.unwrap().len();
    // Each row's values differ (its id in the trace's inputs and reasons, the event's detail).
    let endings: Vec<LeaseEnding> = requests
        .iter()
        .map(|r| {
            let mut e = ending(r, at);
            e.trace.inputs = json!({"request_id": r.id, "quote": "a \"b\" ☃"});
            e.trace.inputs_hash = passkey::canonical::hash_canonical(&e.trace.inputs);
            e.trace.reasons = json!([format!("lease {} ran out", r.id)]);
            e.trace.at = at;
            e.audit = e
                .audit
                .detail(json!({"reason": "the lease ran out", "n": r.id}));
            e
        })
        .collect();
    let expired = s
        .expire_leases(&endings, "the lease ran out", at)
        .await
        .unwrap();
    let mut ids: Vec<i64> = requests.iter().map(|r| r.id).collect();
    ids.sort_unstable();
    assert_eq!(expired.iter().map(|r| r.id).collect::<Vec<_>>(), ids);
    assert!(
        expired
            .iter()
            .all(|r| r.status == RequestStatus::Expired && r.ended_at == Some(at))
    );

    let traces: Vec<DecisionTrace> = s
        .traces_after(0, 10_000)
        .await
        .unwrap()
        .into_iter()
        .filter(|t| t.stage == TraceStage::RevocationEvent)
        .collect();
    assert_eq!(traces.len(), N);
    let by_request: std::collections::HashMap<i64, &LeaseEnding> =
        endings.iter().map(|e| (e.request_id, e)).collect();
    for t in &traces {
        let want = &by_request[&t.request_id.expect("the trace names its request")].trace;
        assert_eq!(
            (
                t.outcome,
                &t.reasons.0,
                &t.constraints.0,
                &t.required_approvals.0
            ),
            (
                want.outcome,
                &want.reasons,
                &want.constraints,
                &want.required_approvals
            )
        );
        assert_eq!(
            (&t.trace.0, &t.inputs.0, &t.inputs_hash),
            (&want.trace, &want.inputs, &want.inputs_hash)
        );
        assert_eq!(
            (&t.policy_version, &t.code_version, t.created_at),
            (&want.policy_version, &want.code_version, at)
        );
    }

    let events = s.audit_events_after(0, 10_000).await.unwrap();
    assert_chain_intact(&events);
    let new = &events[before..];
    assert_eq!(new.len(), N, "one event per lease");
    for (e, id) in new.iter().zip(&ids) {
        assert_eq!(
            (
                e.request_id,
                e.record_id,
                e.actor.as_str(),
                e.action.as_str(),
                e.created_at
            ),
            (
                Some(*id),
                Some(f.record.id),
                "system:lease-expiry",
                "LEASE_EXPIRED",
                at
            ),
            "events in the order of the leases"
        );
        assert_eq!(e.detail.0, json!({"reason": "the lease ran out", "n": id}));
    }

    let shares = s.outstanding_issuances_for(&ids).await.unwrap();
    assert_eq!(shares.len(), N);
    let revocations: Vec<ShareRevocation> = shares
        .iter()
        .rev()
        .map(|e| ShareRevocation {
            issuance_id: e.id,
            audit: NewAuditEvent::new("system:lease-expiry", "SHARE_REVOKED", at)
                .request(e.request_id)
                .record(f.record.id)
                .detail(json!({"issuance_id": e.id, "already_gone": e.id % 2 == 0})),
        })
        .collect();
    let marked = s
        .mark_issuances_revoked_batch(&revocations, at)
        .await
        .unwrap();
    let given: Vec<i64> = revocations.iter().map(|r| r.issuance_id).collect();
    assert_eq!(marked, given, "every share marked, in the order given");
    assert!(s.outstanding_issuances_for(&ids).await.unwrap().is_empty());
    let events = s.audit_events_after(0, 10_000).await.unwrap();
    assert_chain_intact(&events);
    let revoked = &events[before + N..];
    assert_eq!(revoked.len(), N);
    for (e, r) in revoked.iter().zip(&revocations) {
        assert_eq!(
            (e.request_id, e.action.as_str(), &e.detail.0),
            (r.audit.request_id, "SHARE_REVOKED", &r.audit.detail)
        );
    }
    let claimed = s
        .claim_due(
            DueWork::LeaseEnd,
            at,
            at,
            "node-a",
            at.plus(Duration::minutes(5)),
            10_000,
        )
        .await
        .unwrap();
    assert!(claimed.is_empty(), "nothing left to end");
}

/// #18.7: a GROUP authority's team channel. Naming another revokes the one in force and inserts
/// a row, with its audit event; `none` revokes only; the database refuses any other change and
/// every delete, and holds at most one channel in force per authority. Missed posts are kept.
async fn approval_channels_are_append_only_and_one_is_in_force(db: Db) {
    let s = db.store.as_ref();
    let f = fixture(s).await;
    let group = s
        .add_authority(
            &NewAuthority {
                resource_id: f.resource.id,
                authority: AuthorityKind::Approver,
                principal_type: PrincipalType::Group,
                principal: "sre-oncall".into(),
                stage: 1,
                valid_from: t0(),
                valid_to: None,
                created_by: "user:admin".into(),
            },
            &NewAuditEvent::new("user:admin", "AUTHORITY_GRANTED", t0()),
        )
        .await
        .unwrap();
    assert_eq!(s.approval_channel(group.id).await.unwrap(), None);
    let events = s.audit_events_after(0, 1000).await.unwrap().len();

    let first = s
        .set_approval_channel(
            group.id,
            Some(("19:ops@thread.tacv2", Some("team-1"))),
            "user:admin",
            &NewAuditEvent::new("user:admin", "APPROVAL_CHANNEL_SET", t0()),
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(first.conversation_id, "19:ops@thread.tacv2");
    assert_eq!(first.team_id.as_deref(), Some("team-1"));
    let later = t0().plus(Duration::minutes(1));
    let second = s
        .set_approval_channel(
            group.id,
            Some(("19:sre@thread.tacv2", None)),
            "user:admin",
            &NewAuditEvent::new("user:admin", "APPROVAL_CHANNEL_SET", later),
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        s.approval_channel(group.id).await.unwrap(),
        Some(second.clone())
    );
    let cleared = s
        .set_approval_channel(
            group.id,
            None,
            "user:admin",
            &NewAuditEvent::new("user:admin", "APPROVAL_CHANNEL_CLEARED", later),
        )
        .await
        .unwrap();
    assert_eq!(cleared, None);
    assert_eq!(s.approval_channel(group.id).await.unwrap(), None);
    assert_eq!(
        s.audit_events_after(0, 1000).await.unwrap().len(),
        events + 3,
        "each change has its audit event"
    );
    assert_eq!(
        db.raw
            .texts(&format!(
                "SELECT conversation_id FROM approval_channels WHERE authority_id = {} AND revoked_at IS NOT NULL ORDER BY id",
                group.id
            ))
            .await
            .unwrap(),
        ["19:ops@thread.tacv2", "19:sre@thread.tacv2"],
        "every choice is kept, revoked"
    );

    let refused = |r: Result<u64, StoreError>, what: &str| match r {
        Err(StoreError::Refused(msg)) => assert!(msg.contains("append-only"), "{what}: {msg}"),
        other => panic!("{what} on {}: expected a refusal, got {other:?}", db.engine),
    };
    refused(
        db.raw
            .exec(&format!(
                "UPDATE approval_channels SET conversation_id = '19:evil@thread.tacv2' WHERE id = {}",
                first.id
            ))
            .await,
        "rewrite a channel",
    );
    refused(
        db.raw
            .exec(&format!(
                "UPDATE approval_channels SET revoked_by = 'mallory' WHERE id = {}",
                first.id
            ))
            .await,
        "revoke twice",
    );
    refused(
        db.raw
            .exec(&format!(
                "DELETE FROM approval_channels WHERE id = {}",
                first.id
            ))
            .await,
        "delete",
    );

    // Two channels in force for one authority: refused by the database.
    let third = s
        .set_approval_channel(
            group.id,
            Some(("19:ops@thread.tacv2", None)),
            "user:admin",
            &NewAuditEvent::new("user:admin", "APPROVAL_CHANNEL_SET", later),
        )
        .await
        .unwrap()
        .unwrap();
    let ts = if db.engine == "sqlite" {
        "'2026-11-23T10:00:00.000000Z'"
    } else {
        "'2026-11-23T10:00:00Z'"
    };
    assert!(
        db.raw
            .exec(&format!(
                "INSERT INTO approval_channels (authority_id, conversation_id, set_by, set_at) VALUES ({}, '19:x@thread.tacv2', 'x', {ts})",
                group.id
            ))
            .await
            .is_err()
    );

    let req = pending_request(s, &f).await;
    assert_eq!(s.channel_misses_for_request(req.id).await.unwrap(), 0);
    s.record_channel_miss(req.id, third.id, later)
        .await
        .unwrap();
    assert_eq!(s.channel_misses_for_request(req.id).await.unwrap(), 1);
    assert!(
        db.raw
            .exec("DELETE FROM approval_channel_misses")
            .await
            .is_err()
    );
}

// ---- SQLite: one writer per process --------------------------------------------------------------

/// Many writers of one process at once — audit appends (write transactions) and job-run records
/// (autocommit writes) — all succeed: they queue for the process's writer connection instead of
/// meeting SQLite's busy handler, and the chain links every event.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_writers_in_one_process_all_succeed() {
    let db = common::fresh_sqlite().await;
    const WRITERS: usize = 24;
    let tasks: Vec<_> = (0..WRITERS)
        .map(|i| {
            let store = db.store.clone();
            tokio::spawn(async move {
                store
                    .append_audit(&NewAuditEvent::new(
                        format!("writer-{i}"),
                        "TEST_EVENT",
                        t0(),
                    ))
                    .await?;
                store
                    .record_job_run(&NewJobRun {
                        job_name: format!("job-{i}"),
                        holder: "test".into(),
                        started_at: t0(),
                        finished_at: t0(),
                        ok: true,
                        counts: json!({}),
                        error: None,
                    })
                    .await
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap().expect("every writer succeeds");
    }
    let events = db.store.audit_events_after(0, 1000).await.unwrap();
    assert_eq!(events.len(), WRITERS);
    for (i, e) in events.iter().enumerate() {
        assert_eq!(e.seq, i as i64 + 1);
        if i > 0 {
            assert_eq!(e.prev_hash, events[i - 1].hash, "event {} links", e.seq);
        }
    }
    assert_eq!(db.store.last_job_runs().await.unwrap().len(), WRITERS);
}

/// A write while another process holds SQLite's write lock waits for it, then succeeds: the busy
/// timeout still covers other processes (the CLI, a second instance on the same file).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_write_waits_for_another_process_then_succeeds() {
    use sqlx::Connection;
    let db = common::fresh_sqlite().await;
    let path = db.dir.path().join("test.db");
    let mut other =
        sqlx::sqlite::SqliteConnection::connect(&format!("sqlite://{}", path.display()))
            .await
            .unwrap();
    sqlx::query("BEGIN IMMEDIATE")
        .execute(&mut other)
        .await
        .unwrap();
    let store = db.store.clone();
    let write = tokio::spawn(async move {
        store
            .append_audit(&NewAuditEvent::new("waiting-writer", "TEST_EVENT", t0()))
            .await
    });
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(
        !write.is_finished(),
        "the write waits while the lock is held"
    );
    sqlx::query("COMMIT").execute(&mut other).await.unwrap();
    write
        .await
        .unwrap()
        .expect("the write succeeds once the lock is free");
    let events = db.store.audit_events_after(0, 10).await.unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].actor, "waiting-writer");
    assert_eq!(db.store.audit_head().await.unwrap().0, 1);
}

/// The SQLite library keeps no allocation statistics: with them on, every value sqlx copies out
/// of a row took one process-wide lock, and the writer and read threads queued on it
/// (docs/benchmarks.md, fourth pass). SQLite's allocation counter stays at zero when they are off,
/// however much the store's connections allocate.
#[tokio::test]
async fn sqlite_allocates_without_a_process_wide_lock() {
    let db = common::fresh_sqlite().await;
    db.store
        .append_audit(&NewAuditEvent::new(
            "user:1",
            "REQUEST_SUBMITTED",
            common::t0(),
        ))
        .await
        .unwrap();
    assert_eq!(db.store.audit_events_after(0, 10).await.unwrap().len(), 1);
    // SAFETY: a read of SQLite's status counter, safe from any thread.
    let counted = unsafe { libsqlite3_sys::sqlite3_memory_used() };
    assert_eq!(
        counted, 0,
        "SQLite counted {counted} bytes: its allocation statistics are on"
    );
}

/// On Postgres, a claim (and its release) rewrites no index of `requests`: the new row version
/// stays on its page (a HOT update), because pages are filled to 80 % and the claim columns are in
/// no index. With pages packed full, each claim and each release moved the row to another page and
/// added an entry to all five indexes — three times per lease in a lease-expiry run
/// (docs/benchmarks.md, fourth pass). One row per page is claimed as the scheduler's claim does.
#[tokio::test]
async fn postgres_claims_rewrite_no_index_of_requests() {
    let Some(db) = common::fresh_pg().await else {
        return;
    };
    let store = db.store.as_ref();
    let f = fixture(store).await;
    pending_request(store, &f).await;
    let pool = db.store.pool();
    // 400 more requests like it, so that many pages are full as far as they are filled.
    let columns: Vec<String> = sqlx::query_scalar(
        "SELECT column_name::text FROM information_schema.columns
         WHERE table_name = 'requests' AND column_name <> 'id' ORDER BY ordinal_position",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    let columns = columns.join(", ");
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "INSERT INTO requests ({columns}) SELECT {columns} FROM requests, generate_series(1, 400)"
    )))
    .execute(pool)
    .await
    .unwrap();
    let first_of_each_page: Vec<i64> = sqlx::query_scalar(
        "SELECT DISTINCT ON ((ctid::text::point)[0]) id FROM requests
         ORDER BY (ctid::text::point)[0], id",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    assert!(
        first_of_each_page.len() >= 5,
        "{} pages",
        first_of_each_page.len()
    );
    let mut tx = pool.begin().await.unwrap();
    let claimed = sqlx::query(
        "UPDATE requests SET claimed_by = 'node-a', claim_until = $1 WHERE id = ANY($2)",
    )
    .bind(t0())
    .bind(&first_of_each_page)
    .execute(&mut *tx)
    .await
    .unwrap()
    .rows_affected();
    let (updated, hot): (i64, i64) = sqlx::query_as(
        "SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_xact_user_tables WHERE relname = 'requests'",
    )
    .fetch_one(&mut *tx)
    .await
    .unwrap();
    tx.rollback().await.unwrap();
    assert_eq!(claimed as usize, first_of_each_page.len());
    assert_eq!(updated, claimed as i64);
    assert_eq!(
        hot, updated,
        "every claimed row stays on its page without new index entries"
    );
}

/// A turn's done mark is written in place on Postgres: it changes no indexed column (the claim's
/// `processed_at` stays) and pages keep room for it (migration 0025), so every mark is a
/// heap-only update — no new entries in the text primary key or the age index. Before, all 6,424
/// done marks of a channel bench run moved their rows (docs/benchmarks.md, fifth pass). Claimed
/// and marked as a busy instance's turns are: 200 activities, 16 at a time, each batch claimed and
/// then marked done.
#[tokio::test]
async fn postgres_marks_turns_done_in_place() {
    let Some(db) = common::fresh_pg().await else {
        return;
    };
    let (store, pool) = one_connection_store(&db, None).await;
    let now = t0();
    let turns: Vec<TurnKey> = (0..200)
        .map(|i| TurnKey {
            conversation_id: format!("19:conversation-{}@thread.v2", i % 7),
            activity_id: format!("1700000000{i:06}"),
            token: format!("turn-{i}"),
        })
        .collect();
    let claims: Vec<TurnClaim> = turns
        .iter()
        .map(|t| TurnClaim {
            conversation_id: t.conversation_id.clone(),
            activity_id: t.activity_id.clone(),
            token: t.token.clone(),
            now,
            until: now.plus(Duration::minutes(1)),
        })
        .collect();
    let before = activity_updates(&pool).await;
    // As the bot writes them: each batch claims 16 turns and marks the 16 before done.
    let mut finishing: &[TurnKey] = &[];
    for (claims, turns) in claims.chunks(16).zip(turns.chunks(16)) {
        let answers = store.write_turns(claims, finishing, now).await.unwrap();
        assert!(answers.iter().all(|a| *a == ActivityClaim::Claimed));
        finishing = turns;
    }
    store.write_turns(&[], finishing, now).await.unwrap();
    let (updated, hot) = activity_updates(&pool).await;
    assert_eq!(updated - before.0, 200, "every turn marked done once");
    assert_eq!(
        hot - before.1,
        200,
        "every done mark stays on its page without new index entries"
    );
    // The claim's held connection was ended above: the first try may fail, the next runs on a
    // fresh one.
    let again = match store.claim_activities(&claims[..1]).await {
        Ok(again) => again,
        Err(_) => store.claim_activities(&claims[..1]).await.unwrap(),
    };
    assert_eq!(again, vec![ActivityClaim::Done]);
}

/// A store on one connection to `db`'s database (running `setup` when it connects), so what its
/// statements leave in Postgres's statistics can be flushed and read back on that same
/// connection ([`flush_statistics`]).
async fn one_connection_store(
    db: &common::PgTestDb,
    setup: Option<&'static str>,
) -> (PgStore, sqlx::PgPool) {
    let options = db.store.pool().connect_options().as_ref().clone();
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .after_connect(move |conn, _| {
            Box::pin(async move {
                if let Some(setup) = setup {
                    sqlx::query(setup).execute(conn).await?;
                }
                Ok(())
            })
        })
        .connect_with(options)
        .await
        .unwrap();
    (PgStore::from_pool(pool.clone()), pool)
}

/// Makes the one connection of `pool` report its counts now: they reach the statistics views
/// when it next goes idle, at once when told to first.
async fn flush_statistics(pool: &sqlx::PgPool) {
    sqlx::query("SELECT pg_stat_force_next_flush()")
        .execute(pool)
        .await
        .unwrap();
}

/// Updates of `processed_activities`, and how many of them were heap-only, as Postgres counts
/// them for the store on `pool`: its one pooled connection, and the connections it holds for the
/// turn's statements (`store::held`), which are ended here so that they report their counts (a
/// backend reports them as it exits; idle, it may wait ten seconds).
async fn activity_updates(pool: &sqlx::PgPool) -> (i64, i64) {
    end_other_backends(&mut pool.acquire().await.unwrap()).await;
    flush_statistics(pool).await;
    sqlx::query_as(
        "SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables WHERE relname = 'processed_activities'",
    )
    .fetch_one(pool)
    .await
    .unwrap()
}

/// Ends every connection to `conn`'s database but `conn` itself, and waits until the server has
/// let them go; answers how many were ended.
async fn end_other_backends(conn: &mut sqlx::PgConnection) -> usize {
    let ended: Vec<bool> = sqlx::query_scalar(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
         WHERE datname = current_database() AND pid <> pg_backend_pid()",
    )
    .fetch_all(&mut *conn)
    .await
    .unwrap();
    for _ in 0..250 {
        let left: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity
             WHERE datname = current_database() AND pid <> pg_backend_pid()",
        )
        .fetch_one(&mut *conn)
        .await
        .unwrap();
        if left == 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    ended.len()
}

/// A statement that finds a request by its id reads that request only, whatever plan Postgres
/// keeps for it. A pooled connection plans a statement once and keeps the plan until the table is
/// analyzed again. Planned while `requests` was small and never analyzed, `WHERE id = $1 AND
/// status IN (…) AND lease_expires_at > $4` walked the partial index of live leases (and
/// `status = $2` the status index) instead of the key, so minting, using and recording a
/// retrieval each read every live lease (docs/benchmarks.md, fifth pass). Here the store's one
/// connection keeps the first plan of every statement (`force_generic_plan`), made on a fresh
/// database by one lease's approval and retrieval and one authority's revocation; then 400 more
/// live leases and 400 more authorities in force are added, and the same steps for another lease
/// and another authority must read no index of `requests` or `governed_resource_authorities` but
/// its key (the revocation's `revoked_at IS NULL` implies the predicate of the partial index of
/// authorities in force, which the same kept plan scanned instead).
#[tokio::test]
async fn postgres_finds_requests_by_key_whatever_plan_it_keeps() {
    let Some(db) = common::fresh_pg().await else {
        return;
    };
    let (store, pool) =
        one_connection_store(&db, Some("SET plan_cache_mode = force_generic_plan")).await;
    let f = fixture(&store).await;
    let lease = Duration::hours(1);
    let grant = |principal: &'static str| {
        let store = &store;
        let resource_id = f.resource.id;
        async move {
            let grant = NewAuthority {
                resource_id,
                authority: AuthorityKind::Approver,
                principal_type: PrincipalType::User,
                principal: principal.into(),
                stage: 1,
                valid_from: t0(),
                valid_to: None,
                created_by: "user:admin".into(),
            };
            let audit = NewAuditEvent::new("user:admin", "AUTHORITY_GRANTED", t0());
            store.add_authority(&grant, &audit).await.unwrap().id
        }
    };
    let revoke = |id: i64| {
        let store = &store;
        async move {
            let audit = NewAuditEvent::new("user:admin", "AUTHORITY_REVOKED", t0());
            store
                .revoke_authority(id, "user:admin", "left the team", &audit)
                .await
                .unwrap();
        }
    };
    let first = leased_request(&store, &f, t0(), lease, true).await;
    revoke(grant("aad-first").await).await;
    let in_force = grant("aad-in-force").await;
    // 400 copies of the first lease, live, and of an authority in force.
    for (table, row) in [
        ("requests", first.id),
        ("governed_resource_authorities", in_force),
    ] {
        let columns: Vec<String> = sqlx::query_scalar(
            "SELECT column_name::text FROM information_schema.columns
             WHERE table_name = $1 AND column_name <> 'id' ORDER BY ordinal_position",
        )
        .bind(table)
        .fetch_all(&pool)
        .await
        .unwrap();
        let columns = columns.join(", ");
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO {table} ({columns})
             SELECT {columns} FROM {table}, generate_series(1, 400) WHERE id = $1"
        )))
        .bind(row)
        .execute(&pool)
        .await
        .unwrap();
    }
    let before = read_by_other_indexes(&pool).await;
    let second = leased_request(&store, &f, t0(), lease, true).await;
    revoke(grant("aad-second").await).await;
    let after = read_by_other_indexes(&pool).await;
    assert_eq!(second.status, RequestStatus::Issued);
    assert_eq!(second.issuance_count, 1);
    assert_eq!(
        after - before,
        0,
        "one lease's steps and one authority's revocation read {} index entries of other rows",
        after - before
    );
}

/// Index entries of `requests` and `governed_resource_authorities` read through any index but
/// their primary keys, as Postgres counts them for the one connection of `pool`.
async fn read_by_other_indexes(pool: &sqlx::PgPool) -> i64 {
    flush_statistics(pool).await;
    sqlx::query_scalar(
        "SELECT COALESCE(SUM(idx_tup_read), 0)::bigint FROM pg_stat_user_indexes
         WHERE relname IN ('requests', 'governed_resource_authorities')
           AND indexrelname NOT LIKE '%\\_pkey'",
    )
    .fetch_one(pool)
    .await
    .unwrap()
}

/// The store's Postgres connections send each statement at once: `TCP_NODELAY` is set on their
/// sockets. sqlx 0.9.0 left Nagle's algorithm on, and every statement larger than one TCP segment
/// (a link pass, a batch insert) waited for the server's delayed ACK, about 40 ms — the lease
/// expiry and the audit linker spent most of their time waiting (docs/benchmarks.md). Read off
/// the process's own sockets: the two whose local ports the server names for the pool's two
/// connections (other tests in this process open connections of their own meanwhile).
#[cfg(target_os = "linux")]
#[tokio::test]
async fn postgres_connections_send_statements_without_waiting_for_acks() {
    use std::os::fd::BorrowedFd;
    let Some(db) = common::fresh_pg().await else {
        return;
    };
    // Two connections of the store's own pool, held while the sockets are read.
    let pool = db.store.pool();
    let server_port = pool.connect_options().get_port();
    let mut ports = Vec::new();
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut connection = pool.acquire().await.unwrap();
        let port: i32 = sqlx::query_scalar("SELECT inet_client_port()")
            .fetch_one(&mut *connection)
            .await
            .unwrap();
        ports.push(u16::try_from(port).unwrap());
        held.push(connection);
    }
    let mut checked = 0;
    for entry in std::fs::read_dir("/proc/self/fd").unwrap() {
        let Ok(fd) = entry.unwrap().file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        // SAFETY: the descriptor is only read (getsockname, getpeername, getsockopt) while this
        // process's pools hold it open; a descriptor closed meanwhile fails the calls and is
        // skipped.
        let fd = unsafe { BorrowedFd::borrow_raw(fd) };
        let socket = socket2::SockRef::from(&fd);
        let (Ok(local), Ok(peer)) = (socket.local_addr(), socket.peer_addr()) else {
            continue;
        };
        if local.as_socket().is_some_and(|a| ports.contains(&a.port()))
            && peer.as_socket().is_some_and(|a| a.port() == server_port)
        {
            assert!(
                socket.tcp_nodelay().unwrap(),
                "the store's connection from port {} has Nagle's algorithm on",
                local.as_socket().unwrap().port()
            );
            checked += 1;
        }
    }
    assert_eq!(checked, 2, "the pool's two connections were found");
}

/// The turn's claim, sender read and done mark run on connections held out of the pool
/// (`store::held`). When the server ends those connections (a restart, a failover, an idle
/// timeout), a statement may fail once, but the connection is not kept: the next one opens a
/// fresh connection and succeeds. A broken connection kept in its slot would fail every turn
/// from then on.
#[tokio::test]
async fn postgres_turn_statements_recover_when_the_server_ends_their_connections() {
    use sqlx::Connection;
    let Some(db) = common::fresh_pg().await else {
        return;
    };
    let store = db.store.clone();
    let now = t0();
    let claim = |activity: &str| TurnClaim {
        conversation_id: "conv".into(),
        activity_id: activity.into(),
        token: format!("token-{activity}"),
        now,
        until: now.plus(Duration::minutes(1)),
    };
    let done = |activity: &str| TurnKey {
        conversation_id: "conv".into(),
        activity_id: activity.into(),
        token: format!("token-{activity}"),
    };
    let aad = "a11ce000-0000-4000-8000-000000000001".to_string();
    // Every statement kind once, so each has its connection.
    assert_eq!(
        store.claim_activities(&[claim("a1")]).await.unwrap(),
        vec![ActivityClaim::Claimed]
    );
    store
        .turn_senders(std::slice::from_ref(&aad))
        .await
        .unwrap();
    store.finish_activities(&[done("a1")], now).await.unwrap();

    // The server ends every connection to this database but the one ending them.
    let url = db.store.pool().connect_options().clone();
    let mut admin = sqlx::PgConnection::connect_with(&url).await.unwrap();
    let ended = end_other_backends(&mut admin).await;
    assert!(ended >= 2, "the held connections were ended: {ended}");

    // Each kind may fail once (its connection is gone); the second try runs on a fresh one.
    let first = store.claim_activities(&[claim("a2")]).await;
    let second = store.claim_activities(&[claim("a2")]).await.unwrap();
    match first {
        Ok(answer) => assert_eq!(answer, vec![ActivityClaim::Claimed]),
        Err(_) => assert_eq!(second, vec![ActivityClaim::Claimed]),
    }
    let _ = store.turn_senders(std::slice::from_ref(&aad)).await;
    store
        .turn_senders(std::slice::from_ref(&aad))
        .await
        .unwrap();
    let _ = store.finish_activities(&[done("a2")], now).await;
    store.finish_activities(&[done("a2")], now).await.unwrap();
    // And they stay usable.
    assert_eq!(
        store.claim_activities(&[claim("a2")]).await.unwrap(),
        vec![ActivityClaim::Done]
    );
    assert_eq!(
        store.claim_activities(&[claim("a3")]).await.unwrap(),
        vec![ActivityClaim::Claimed]
    );
}

/// A held connection idle long enough is pinged before its next statement, so one the server
/// ended while it sat idle (an idle timeout, a restart) is replaced before the statement rather
/// than failing it. Without the ping (idle less than the threshold) the same statement fails once.
#[tokio::test]
async fn postgres_held_connection_is_pinged_after_idling_and_replaced_when_gone() {
    use passkey::store::held::HeldConnection;
    use sqlx::Connection;
    let Some(db) = common::fresh_pg().await else {
        return;
    };
    let pool = db.store.pool().clone();
    let mut admin = sqlx::PgConnection::connect_with(&pool.connect_options())
        .await
        .unwrap();
    let backend = |held: &'static HeldConnection<sqlx::Postgres>| async move {
        let mut conn = held.get().await?;
        let pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
            .fetch_one(&mut *conn)
            .await?;
        conn.keep();
        Ok::<i32, sqlx::Error>(pid)
    };
    let mut end = async |pid: i32| {
        sqlx::query("SELECT pg_terminate_backend($1)")
            .bind(pid)
            .execute(&mut admin)
            .await
            .unwrap();
        for _ in 0..250 {
            let alive: bool =
                sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE pid = $1)")
                    .bind(pid)
                    .fetch_one(&mut admin)
                    .await
                    .unwrap();
            if !alive {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        panic!("backend {pid} did not end");
    };

    // Pinged whenever idle at all: the ended connection is replaced before the statement.
    let pinged: &'static HeldConnection<sqlx::Postgres> = Box::leak(Box::new(
        HeldConnection::new(pool.clone()).ping_when_idle(std::time::Duration::ZERO),
    ));
    let first = backend(pinged).await.unwrap();
    end(first).await;
    let second = backend(pinged)
        .await
        .expect("the ping found the connection gone and opened another");
    assert_ne!(first, second);

    // Used moments ago, so not pinged: the statement meets the ended connection and fails once;
    // that connection is not kept, and the next statement runs on a fresh one.
    let unpinged: &'static HeldConnection<sqlx::Postgres> =
        Box::leak(Box::new(HeldConnection::new(pool.clone())));
    let first = backend(unpinged).await.unwrap();
    end(first).await;
    assert!(backend(unpinged).await.is_err());
    let again = backend(unpinged).await.unwrap();
    assert_ne!(first, again);
}
