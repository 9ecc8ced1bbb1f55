//! sensitivity-escalation: records up to the auto-approve ceiling are approved at once; above it
//! the policy escalates per sensitivity (route to authorities, triage, or deny). From the OTP
//! threshold up, retrieval needs a second factor.

use super::{Rule, RuleError};
use crate::policy::context::{Action, PolicyContext};
use crate::policy::decision::{Constraints, Verdict, Vote};
use crate::policy::set::{Escalation, PolicySet};

pub struct SensitivityEscalation;

impl Rule for SensitivityEscalation {
    fn name(&self) -> &'static str {
        "sensitivity-escalation"
    }

    fn evaluate(&self, ctx: &PolicyContext, policy: &PolicySet) -> Result<Vote, RuleError> {
        let s = ctx.record.sensitivity;
        let constraints = Constraints {
            otp_required: policy
                .access
                .otp_required_from
                .is_some_and(|from| s >= from),
            ..Default::default()
        };
        if ctx.action == Action::Approve {
            let needs_manager = policy
                .access
                .approver_folder_permission_from
                .is_some_and(|from| s >= from);
            if needs_manager && !ctx.actor_folder_access.is_some_and(|p| p.may_approve()) {
                let held = ctx
                    .actor_folder_access
                    .map_or("no".to_string(), |p| p.to_string());
                return Ok(Vote::of(
                    Verdict::Deny,
                    format!(
                        "{s} records need an approver who owns or manages the vault folder (you have {held} access)"
                    ),
                ));
            }
            return Ok(Vote::abstain().with_constraints(constraints));
        }
        if ctx.request.break_glass {
            return Ok(Vote::abstain().with_constraints(constraints));
        }
        let auto = policy
            .access
            .auto_approve_max_sensitivity
            .is_some_and(|max| s <= max);
        let vote = if auto {
            Vote::of(
                Verdict::AutoApprove,
                format!("{s} records are approved automatically"),
            )
        } else {
            match policy
                .access
                .escalation
                .get(&s)
                .copied()
                .unwrap_or(Escalation::Route)
            {
                Escalation::Route => Vote::of(Verdict::Route, format!("{s} records need approval")),
                Escalation::Triage => Vote::of(
                    Verdict::Triage,
                    format!("{s} records are decided by an admin"),
                ),
                Escalation::Deny => {
                    Vote::of(Verdict::Deny, format!("{s} records cannot be requested"))
                }
            }
        };
        Ok(vote.with_constraints(constraints))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Sensitivity;
    use crate::policy::rules::fixtures;

    #[test]
    fn sensitivity_table() {
        let policy = PolicySet::defaults();
        for (s, verdict, otp) in [
            (Sensitivity::Low, Verdict::AutoApprove, false),
            (Sensitivity::Medium, Verdict::Route, false),
            (Sensitivity::High, Verdict::Route, true),
            (Sensitivity::Critical, Verdict::Route, true),
        ] {
            let mut ctx = fixtures::submit();
            ctx.record.sensitivity = s;
            let vote = SensitivityEscalation.evaluate(&ctx, &policy).unwrap();
            assert_eq!(
                (vote.verdict(), vote.constraints.otp_required),
                (verdict, otp),
                "{s}"
            );
        }
    }

    #[test]
    fn sensitive_records_need_an_approver_who_manages_the_folder() {
        use crate::domain::FolderPermission;
        let policy = PolicySet::defaults();
        for (s, held, expected) in [
            (
                Sensitivity::High,
                Some(FolderPermission::Manager),
                Verdict::Abstain,
            ),
            (
                Sensitivity::High,
                Some(FolderPermission::Owner),
                Verdict::Abstain,
            ),
            (
                Sensitivity::High,
                Some(FolderPermission::Editor),
                Verdict::Deny,
            ),
            (Sensitivity::Critical, None, Verdict::Deny),
            (
                Sensitivity::Medium,
                Some(FolderPermission::Editor),
                Verdict::Abstain,
            ),
        ] {
            let mut ctx = fixtures::approve();
            ctx.record.sensitivity = s;
            ctx.actor_folder_access = held;
            let vote = SensitivityEscalation.evaluate(&ctx, &policy).unwrap();
            assert_eq!(vote.verdict(), expected, "{s} {held:?}");
        }
        let mut ctx = fixtures::approve();
        ctx.actor_folder_access = Some(FolderPermission::Editor);
        assert_eq!(
            SensitivityEscalation
                .evaluate(&ctx, &policy)
                .unwrap()
                .reasons,
            [
                "HIGH records need an approver who owns or manages the vault folder (you have EDITOR access)"
            ]
        );
    }

    #[test]
    fn escalation_can_triage_or_deny_and_the_ceiling_can_be_lifted() {
        let mut policy = PolicySet::defaults();
        policy
            .access
            .escalation
            .insert(Sensitivity::Critical, Escalation::Triage);
        policy
            .access
            .escalation
            .insert(Sensitivity::High, Escalation::Deny);
        let mut ctx = fixtures::submit();
        ctx.record.sensitivity = Sensitivity::Critical;
        assert_eq!(
            SensitivityEscalation
                .evaluate(&ctx, &policy)
                .unwrap()
                .verdict(),
            Verdict::Triage
        );
        ctx.record.sensitivity = Sensitivity::High;
        assert_eq!(
            SensitivityEscalation
                .evaluate(&ctx, &policy)
                .unwrap()
                .verdict(),
            Verdict::Deny
        );
        policy.access.auto_approve_max_sensitivity = Some(Sensitivity::High);
        assert_eq!(
            SensitivityEscalation
                .evaluate(&ctx, &policy)
                .unwrap()
                .verdict(),
            Verdict::AutoApprove
        );
        policy.access.auto_approve_max_sensitivity = None;
        ctx.record.sensitivity = Sensitivity::Low;
        assert_eq!(
            SensitivityEscalation
                .evaluate(&ctx, &policy)
                .unwrap()
                .verdict(),
            Verdict::Route,
            "no ceiling: nothing auto-approves"
        );
    }
}
