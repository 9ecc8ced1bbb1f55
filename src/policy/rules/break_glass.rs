//! break-glass: for named records or roles, with a real reason, a request is approved at once —
//! and flagged for review after the fact and announced to every authority of the record.
//! Routing rules stand aside for break-glass requests; refusals (visibility, caps) still apply.

use super::{Rule, RuleError};
use crate::policy::context::{Action, PolicyContext};
use crate::policy::decision::{Constraints, Verdict, Vote};
use crate::policy::set::PolicySet;

pub struct BreakGlass;

impl Rule for BreakGlass {
    fn name(&self) -> &'static str {
        "break-glass"
    }

    fn evaluate(&self, ctx: &PolicyContext, policy: &PolicySet) -> Result<Vote, RuleError> {
        if ctx.action != Action::Submit || !ctx.request.break_glass {
            return Ok(Vote::abstain());
        }
        let bg = &policy.access.break_glass;
        if !bg.enabled {
            return Ok(Vote::of(Verdict::Deny, "break-glass is switched off"));
        }
        let record_listed = bg
            .records
            .iter()
            .any(|r| r.eq_ignore_ascii_case(&ctx.record.title) || r == &ctx.record.vault_uid);
        let role_listed = bg.roles.contains(&ctx.requester.role);
        if !record_listed && !role_listed {
            return Ok(Vote::of(
                Verdict::Deny,
                format!("break-glass is not available for {}", ctx.record.title),
            ));
        }
        if ctx.request.justification.trim().chars().count() < bg.min_reason_chars {
            return Ok(Vote::of(
                Verdict::Deny,
                format!(
                    "break-glass needs a reason of at least {} characters",
                    bg.min_reason_chars
                ),
            ));
        }
        Ok(Vote::of(
            Verdict::AutoApprove,
            "break-glass: approved now, reviewed afterwards",
        )
        .with_constraints(Constraints {
            post_hoc_review: true,
            notify_authorities: true,
            ..Default::default()
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Role;
    use crate::policy::rules::fixtures;

    fn break_glass(title: &str, role: Role, reason: &str) -> Vote {
        let mut ctx = fixtures::submit();
        ctx.request.break_glass = true;
        ctx.record.title = title.into();
        ctx.requester.role = role;
        ctx.request.justification = reason.into();
        BreakGlass.evaluate(&ctx, &PolicySet::defaults()).unwrap()
    }

    #[test]
    fn listed_records_or_roles_with_a_real_reason_auto_approve_and_are_flagged() {
        let long = "domain controller down, INC-9000, restoring now";
        let vote = break_glass("break-glass-domain-admin", Role::Requester, long);
        assert_eq!(vote.verdict(), Verdict::AutoApprove);
        assert!(vote.constraints.post_hoc_review && vote.constraints.notify_authorities);
        assert_eq!(
            break_glass("db-prod", Role::Admin, long).verdict(),
            Verdict::AutoApprove,
            "admins may on any record"
        );
        assert_eq!(
            break_glass("db-prod", Role::Requester, long).verdict(),
            Verdict::Deny
        );
        assert_eq!(
            break_glass("aws-root", Role::Requester, "urgent").verdict(),
            Verdict::Deny,
            "reason too short"
        );
    }

    #[test]
    fn ordinary_requests_and_disabled_policies() {
        assert_eq!(
            BreakGlass
                .evaluate(&fixtures::submit(), &PolicySet::defaults())
                .unwrap()
                .verdict(),
            Verdict::Abstain
        );
        let mut policy = PolicySet::defaults();
        policy.access.break_glass.enabled = false;
        let mut ctx = fixtures::submit();
        ctx.request.break_glass = true;
        assert_eq!(
            BreakGlass.evaluate(&ctx, &policy).unwrap().verdict(),
            Verdict::Deny
        );
    }
}
