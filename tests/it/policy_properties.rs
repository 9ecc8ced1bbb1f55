//! Properties of the policy engine over generated contexts: determinism, DENY dominance, hash
//! invariance under key order, and every decision replaying to itself.

use passkey::canonical::canonical_json;
use passkey::domain::*;
use passkey::policy::context::*;
use passkey::policy::decision::Verdict;
use passkey::policy::{Engine, Outcome, PolicySet, inputs_hash, replay, trace_record};
use passkey::store::DecisionTrace;
use proptest::prelude::*;
use serde_json::Value;
use sqlx::types::Json;

fn t0() -> Timestamp {
    Timestamp::parse("2026-11-23T10:00:00Z").unwrap()
}

fn person(id: i64, role: Role) -> Person {
    Person {
        user_id: id,
        aad_object_id: format!("aad-{id}"),
        email: Some(format!("user{id}@contoso.example")),
        role,
        groups: vec![format!("grp-{}", id % 3)],
    }
}

fn arb_role() -> impl Strategy<Value = Role> {
    prop_oneof![
        Just(Role::Requester),
        Just(Role::Approver),
        Just(Role::Admin)
    ]
}

fn arb_sensitivity() -> impl Strategy<Value = Sensitivity> {
    prop_oneof![
        Just(Sensitivity::Low),
        Just(Sensitivity::Medium),
        Just(Sensitivity::High),
        Just(Sensitivity::Critical)
    ]
}

fn arb_authority() -> impl Strategy<Value = AuthorityFacts> {
    (
        1i64..50,
        prop_oneof![
            Just(AuthorityKind::Owner),
            Just(AuthorityKind::Custodian),
            Just(AuthorityKind::Approver)
        ],
        prop_oneof![
            (1i64..6).prop_map(|id| (PrincipalType::User, format!("aad-{id}"))),
            (0i64..3).prop_map(|g| (PrincipalType::Group, format!("grp-{g}"))),
            Just((PrincipalType::Role, "APPROVER".to_string())),
            (1i64..6).prop_map(|id| (PrincipalType::Email, format!("user{id}@contoso.example"))),
        ],
        1i32..3,
        any::<bool>(),
        -3i64..3,
    )
        .prop_map(
            |(id, kind, (principal_type, principal), stage, revoked, valid_to_days)| {
                AuthorityFacts {
                    authority_id: id,
                    kind,
                    principal_type,
                    principal,
                    stage,
                    valid_from: t0().minus(time::Duration::days(10)),
                    valid_to: (valid_to_days != 0)
                        .then(|| t0().plus(time::Duration::days(valid_to_days))),
                    revoked,
                }
            },
        )
}

prop_compose! {
    fn arb_context()(
        action in prop_oneof![3 => Just(Action::Submit), 1 => Just(Action::Approve), 1 => Just(Action::Extend)],
        requester_role in arb_role(),
        actor_id in 1i64..6,
        sensitivity in arb_sensitivity(),
        duration_minutes in -10i64..2000,
        justification in prop_oneof![Just(""), Just("short"), Just("restore replica for INC-4411"), Just("quarterly audit evidence, CHG-77")],
        ticket in proptest::option::of(prop_oneof![Just("INC-1"), Just("bogus")]),
        break_glass in any::<bool>(),
        permission in proptest::option::of(prop_oneof![Just(FolderPermission::Owner), Just(FolderPermission::Viewer)]),
        authorities in proptest::collection::vec(arb_authority(), 0..5),
        approvals in proptest::collection::vec((1i64..6, 1i32..3), 0..3),
        extension_minutes in 0i64..600,
        extension_count in 0u32..4,
        status in prop_oneof![Just(RequestStatus::Pending), Just(RequestStatus::Issued), Just(RequestStatus::Approved), Just(RequestStatus::Denied)],
        minute_of_week in 0i64..(7 * 24 * 60),
        actor_permission in proptest::option::of(prop_oneof![Just(FolderPermission::Manager), Just(FolderPermission::Editor)]),
    ) -> PolicyContext {
        let submit = action == Action::Submit;
        PolicyContext {
            action,
            now: t0().plus(time::Duration::minutes(minute_of_week)),
            requester: person(1, requester_role),
            actor: (action == Action::Approve).then(|| person(actor_id, Role::Approver)),
            record: RecordFacts {
                record_id: 10,
                vault_uid: "dbPr0dPgL0g1nR3c0rd001".into(),
                title: "db-prod".into(),
                sensitivity,
                owner_user_id: Some(2),
            },
            request: RequestFacts {
                request_id: (!submit).then_some(42),
                status: (!submit).then_some(status),
                requested_duration_secs: duration_minutes * 60,
                justification: justification.to_string(),
                ticket_id: ticket.map(String::from),
                break_glass: submit && break_glass,
                granted_lease_secs: 3600,
                extension_count,
            },
            folder_access: FolderAccess { permission },
            authorities,
            approvals: approvals.into_iter().map(|(approver_user_id, stage)| ApprovalFacts { approver_user_id, stage }).collect(),
            extension_secs: (action == Action::Extend).then_some(extension_minutes * 60),
            actor_folder_access: (action == Action::Approve).then_some(actor_permission).flatten(),
        }
    }
}

/// JSON text with every object's keys in reverse order.
fn reversed_json(v: &Value) -> String {
    match v {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            keys.reverse();
            let fields: Vec<String> = keys
                .iter()
                .map(|k| {
                    format!(
                        "{} : {}",
                        Value::String((*k).clone()),
                        reversed_json(&map[*k])
                    )
                })
                .collect();
            format!("{{ {} }}", fields.join(" , "))
        }
        Value::Array(items) => format!(
            "[{}]",
            items
                .iter()
                .map(reversed_json)
                .collect::<Vec<_>>()
                .join(", ")
        ),
        other => other.to_string(),
    }
}

fn as_stored(ctx: &PolicyContext, engine: &Engine) -> DecisionTrace {
    let t = trace_record(TraceStage::RequestSubmission, ctx, &engine.evaluate(ctx));
    DecisionTrace {
        id: 1,
        request_id: t.request_id,
        stage: t.stage,
        outcome: t.outcome,
        reasons: Json(t.reasons),
        constraints: Json(t.constraints),
        required_approvals: Json(t.required_approvals),
        trace: Json(t.trace),
        inputs: Json(t.inputs),
        inputs_hash: t.inputs_hash,
        policy_version: t.policy_version,
        code_version: t.code_version,
        created_at: t.at,
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn the_same_context_gives_the_same_decision_and_hash(ctx in arb_context()) {
        let engine = Engine::new(PolicySet::defaults());
        prop_assert_eq!(engine.evaluate(&ctx), engine.evaluate(&ctx.clone()));
        prop_assert_eq!(inputs_hash(&ctx), inputs_hash(&ctx.clone()));
    }

    #[test]
    fn any_deny_vote_denies_and_stops(ctx in arb_context()) {
        let d = Engine::new(PolicySet::defaults()).evaluate(&ctx);
        let denied_by_a_rule = d.trace.iter().any(|t| t.verdict == Verdict::Deny);
        prop_assert_eq!(denied_by_a_rule, d.outcome == Outcome::Deny);
        if denied_by_a_rule {
            prop_assert_eq!(&d.trace.last().unwrap().verdict, &Verdict::Deny);
            prop_assert!(!d.reasons.is_empty(), "a denial always says why");
        }
        if d.outcome != Outcome::RouteToAuthority {
            prop_assert!(d.required_approvals.is_empty());
        }
    }

    #[test]
    fn the_inputs_hash_ignores_key_order_and_whitespace(ctx in arb_context()) {
        let value = serde_json::to_value(&ctx).unwrap();
        let shuffled_text = reversed_json(&value);
        let reparsed: PolicyContext = serde_json::from_str(&shuffled_text).unwrap();
        prop_assert_eq!(inputs_hash(&reparsed), inputs_hash(&ctx));
        let reparsed_value: Value = serde_json::from_str(&shuffled_text).unwrap();
        prop_assert_eq!(canonical_json(&reparsed_value), canonical_json(&value));
    }

    #[test]
    fn every_decision_replays_to_itself(ctx in arb_context()) {
        let engine = Engine::new(PolicySet::defaults());
        let report = replay(&as_stored(&ctx, &engine), &engine);
        prop_assert!(report.same, "{:?}", report);
    }
}
