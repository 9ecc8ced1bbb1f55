//! The rules, one per file. Each looks at the context and the policy set and votes; the engine
//! aggregates. A rule never does I/O and never reads the clock.

mod authority_routing;
mod break_glass;
mod business_hours;
mod duration_caps;
pub mod quorum;
mod reason;
mod request_state;
mod self_approval;
mod sensitivity;
mod visibility;

use super::context::PolicyContext;
use super::decision::Vote;
use super::set::PolicySet;

/// A rule that could not decide (bad policy data, impossible context). The engine turns it into
/// a DENY: fail closed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct RuleError(pub String);

pub trait Rule: Sync {
    fn name(&self) -> &'static str;
    fn evaluate(&self, ctx: &PolicyContext, policy: &PolicySet) -> Result<Vote, RuleError>;
}

/// Every rule, in evaluation order: cheap refusals first, routing last.
pub fn all() -> &'static [&'static dyn Rule] {
    &[
        &request_state::RequestState,
        &visibility::Visibility,
        &self_approval::SelfApprovalBlock,
        &duration_caps::DurationCaps,
        &reason::ReasonRules,
        &break_glass::BreakGlass,
        &sensitivity::SensitivityEscalation,
        &business_hours::BusinessHoursWindow,
        &authority_routing::AuthorityRouting,
        &quorum::Quorum,
    ]
}

#[cfg(test)]
pub(crate) mod fixtures {
    //! A realistic context to vary in rule tests.
    use crate::domain::*;
    use crate::policy::context::*;

    pub fn now() -> Timestamp {
        // Monday 2026-11-23 10:00 UTC.
        Timestamp::parse("2026-11-23T10:00:00Z").unwrap()
    }

    pub fn alice() -> Person {
        Person {
            user_id: 1,
            aad_object_id: "aad-alice".into(),
            email: Some("alice@contoso.example".into()),
            role: Role::Requester,
            groups: vec!["grp-engineering".into()],
        }
    }

    pub fn bob() -> Person {
        Person {
            user_id: 2,
            aad_object_id: "aad-bob".into(),
            email: Some("bob@contoso.example".into()),
            role: Role::Approver,
            groups: vec!["grp-dba".into()],
        }
    }

    pub fn authority(
        id: i64,
        kind: AuthorityKind,
        t: PrincipalType,
        principal: &str,
        stage: i32,
    ) -> AuthorityFacts {
        AuthorityFacts {
            authority_id: id,
            kind,
            principal_type: t,
            principal: principal.into(),
            stage,
            valid_from: now().minus(time::Duration::days(30)),
            valid_to: None,
            revoked: false,
        }
    }

    /// Alice asks for db-prod (HIGH) for 2h with a ticket; Bob is the approver.
    pub fn submit() -> PolicyContext {
        PolicyContext {
            action: Action::Submit,
            now: now(),
            requester: alice(),
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
                ticket_id: Some("INC-4411".into()),
                break_glass: false,
                granted_lease_secs: 0,
                extension_count: 0,
            },
            folder_access: FolderAccess {
                permission: Some(FolderPermission::Editor),
            },
            authorities: vec![
                authority(100, AuthorityKind::Owner, PrincipalType::User, "aad-bob", 1),
                authority(
                    101,
                    AuthorityKind::Approver,
                    PrincipalType::User,
                    "aad-bob",
                    1,
                ),
            ],
            approvals: vec![],
            extension_secs: None,
            actor_folder_access: None,
        }
    }

    /// Bob approves Alice's pending request 42.
    pub fn approve() -> PolicyContext {
        let mut ctx = submit();
        ctx.action = Action::Approve;
        ctx.actor = Some(bob());
        ctx.actor_folder_access = Some(FolderPermission::Manager);
        ctx.request.request_id = Some(42);
        ctx.request.status = Some(RequestStatus::Pending);
        ctx
    }

    /// Alice asks for 30 more minutes on her issued lease.
    pub fn extend() -> PolicyContext {
        let mut ctx = submit();
        ctx.action = Action::Extend;
        ctx.request.request_id = Some(42);
        ctx.request.status = Some(RequestStatus::Issued);
        ctx.request.granted_lease_secs = 7200;
        ctx.extension_secs = Some(1800);
        ctx
    }
}
