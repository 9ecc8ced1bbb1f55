//! Policies in the database and replay of stored traces, on both databases.

use crate::common;

use common::{Db, t0};
use passkey::domain::*;
use passkey::governance::policies::{
    ensure_default_policies, load_engine, replay_all, replay_trace,
};
use passkey::policy::set::ACCESS_POLICY;
use passkey::policy::{Outcome, PolicySet, trace_record};
use passkey::store::{NewAuditEvent, NewPolicy};
use serde_json::json;

on_both_databases!(
    defaults_seed_once_and_load_as_the_engine,
    stored_traces_replay_and_policy_changes_are_explained
);

async fn defaults_seed_once_and_load_as_the_engine(db: Db) {
    let s = db.store.as_ref();
    assert_eq!(ensure_default_policies(s, t0()).await.unwrap(), 3);
    assert_eq!(
        ensure_default_policies(s, t0()).await.unwrap(),
        0,
        "seeding is idempotent"
    );
    let engine = load_engine(s).await.unwrap();
    assert_eq!(
        engine.version(),
        PolicySet::defaults().version(),
        "the stored defaults are the built-in ones"
    );
    let audit: Vec<String> = s
        .audit_events_after(0, 10)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.action)
        .collect();
    assert_eq!(audit, ["POLICY_DEFAULT_LOADED"; 3]);

    // A body that doesn't parse makes loading fail: never evaluate with a policy we can't read.
    s.put_policy(
        &NewPolicy {
            kind: PolicyKind::Access,
            name: ACCESS_POLICY.into(),
            body: json!({"default_outcome": "MAYBE"}),
            created_by: "admin".into(),
        },
        &NewAuditEvent::new("user:admin", "POLICY_CHANGED", t0()),
    )
    .await
    .unwrap();
    let err = load_engine(s).await.unwrap_err().to_string();
    assert!(err.contains(ACCESS_POLICY), "{err}");
    // An operator's body is never overwritten by the defaults.
    assert_eq!(ensure_default_policies(s, t0()).await.unwrap(), 0);
}

async fn stored_traces_replay_and_policy_changes_are_explained(db: Db) {
    let s = db.store.as_ref();
    ensure_default_policies(s, t0()).await.unwrap();
    let engine = load_engine(s).await.unwrap();
    let mut ids = vec![];
    for sensitivity in [Sensitivity::Low, Sensitivity::Medium, Sensitivity::High] {
        let ctx = common::submission_context(sensitivity);
        let decision = engine.evaluate(&ctx);
        let trace = s
            .insert_trace(&trace_record(
                TraceStage::RequestSubmission,
                &ctx,
                &decision,
            ))
            .await
            .unwrap();
        ids.push((trace.id, decision.outcome));
    }
    assert_eq!(ids[1].1, Outcome::RouteToAuthority);
    let report = replay_trace(s, &engine, ids[1].0).await.unwrap().unwrap();
    assert!(report.same, "{report:?}");
    assert!(replay_trace(s, &engine, 999_999).await.unwrap().is_none());
    let summary = replay_all(s, &engine).await.unwrap();
    assert_eq!(
        (summary.total, summary.same, summary.different.len()),
        (3, 3, 0)
    );

    // An admin lets MEDIUM records auto-approve: the MEDIUM decision would now differ, and replay says why.
    let mut access = serde_json::to_value(&PolicySet::defaults().access).unwrap();
    access["auto_approve_max_sensitivity"] = json!("MEDIUM");
    s.put_policy(
        &NewPolicy {
            kind: PolicyKind::Access,
            name: ACCESS_POLICY.into(),
            body: access,
            created_by: "admin".into(),
        },
        &NewAuditEvent::new("user:admin", "POLICY_CHANGED", t0()),
    )
    .await
    .unwrap();
    let changed = load_engine(s).await.unwrap();
    assert_ne!(changed.version(), engine.version());
    let summary = replay_all(s, &changed).await.unwrap();
    assert_eq!(
        (summary.total, summary.same),
        (3, 2),
        "{}",
        summary.render()
    );
    let diff = &summary.different[0];
    assert_eq!(diff.trace_id, ids[1].0);
    assert!(
        diff.differences[0].contains("ROUTE_TO_AUTHORITY")
            && diff.differences[0].contains("AUTO_APPROVE"),
        "{:?}",
        diff.differences
    );
    assert!(
        summary.render().contains("why: the policy changed"),
        "{}",
        summary.render()
    );
}
