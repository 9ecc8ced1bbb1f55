//! Policy engine benchmark: `Engine::evaluate` on a realistic submission (a HIGH record, four
//! authority rows in two stages, one of them revoked), and the inputs hash a trace needs.
//! Single-threaded; reports evaluations per second.
//!
//! `cargo bench --bench policy`

use passkey::domain::*;
use passkey::policy::context::*;
use passkey::policy::{Engine, Outcome, PolicySet, inputs_hash};
use std::hint::black_box;
use std::time::Instant;

fn context() -> PolicyContext {
    let now = Timestamp::parse("2026-11-23T10:00:00Z").unwrap();
    let authority = |id, kind, principal_type, principal: &str, stage, revoked| AuthorityFacts {
        authority_id: id,
        kind,
        principal_type,
        principal: principal.into(),
        stage,
        valid_from: now.minus(time::Duration::days(30)),
        valid_to: None,
        revoked,
    };
    PolicyContext {
        action: Action::Submit,
        now,
        requester: Person {
            user_id: 1,
            aad_object_id: "a11ce000-0000-4000-8000-000000000001".into(),
            email: Some("alice@contoso.example".into()),
            role: Role::Requester,
            groups: vec!["grp-engineering".into(), "grp-oncall".into()],
        },
        actor: None,
        record: RecordFacts {
            record_id: 10,
            vault_uid: "dbPr0dPgL0g1nR3c0rd001".into(),
            title: "db-prod".into(),
            sensitivity: Sensitivity::High,
            owner_user_id: Some(2),
        },
        request: RequestFacts {
            request_id: None,
            status: None,
            requested_duration_secs: 7200,
            justification: "failover drill for INC-4411".into(),
            ticket_id: None,
            break_glass: false,
            granted_lease_secs: 0,
            extension_count: 0,
        },
        folder_access: FolderAccess {
            permission: Some(FolderPermission::Editor),
        },
        authorities: vec![
            authority(
                100,
                AuthorityKind::Owner,
                PrincipalType::User,
                "b0b00000-0000-4000-8000-000000000002",
                1,
                false,
            ),
            authority(
                101,
                AuthorityKind::Approver,
                PrincipalType::Group,
                "grp-dba",
                1,
                false,
            ),
            authority(
                102,
                AuthorityKind::Approver,
                PrincipalType::User,
                "da7e0000-0000-4000-8000-000000000004",
                2,
                false,
            ),
            authority(
                103,
                AuthorityKind::Approver,
                PrincipalType::Email,
                "old-dba@contoso.example",
                1,
                true,
            ),
        ],
        approvals: vec![],
        extension_secs: None,
        actor_folder_access: None,
    }
}

fn measure(label: &str, iterations: u32, mut f: impl FnMut()) -> f64 {
    for _ in 0..iterations / 10 {
        f();
    }
    let started = Instant::now();
    for _ in 0..iterations {
        f();
    }
    let per = started.elapsed() / iterations;
    let rate = 1.0 / per.as_secs_f64();
    println!(
        "| {label} | {iterations} | {:.2} µs | {:.0}/s |",
        per.as_secs_f64() * 1e6,
        rate
    );
    rate
}

fn main() {
    let engine = Engine::new(PolicySet::defaults());
    let ctx = context();
    assert_eq!(engine.evaluate(&ctx).outcome, Outcome::RouteToAuthority);
    println!(
        "machine: {} cores, load average: {}",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0),
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .trim()
    );
    println!();
    println!("| operation | iterations | per call | per second (one core) |");
    println!("|---|---|---|---|");
    measure("evaluate (10 rules)", 200_000, || {
        black_box(engine.evaluate(black_box(&ctx)));
    });
    measure("inputs hash (canonical JSON + SHA-256)", 100_000, || {
        black_box(inputs_hash(black_box(&ctx)));
    });
    measure("evaluate + inputs hash", 100_000, || {
        black_box(engine.evaluate(black_box(&ctx)));
        black_box(inputs_hash(black_box(&ctx)));
    });
}
