//! self-approval-block: nobody approves their own request, and a request whose only approver is
//! its requester goes to human triage instead of being routed back to them.

use super::{Rule, RuleError};
use crate::policy::context::{Action, PolicyContext};
use crate::policy::decision::{Verdict, Vote};
use crate::policy::set::PolicySet;

pub struct SelfApprovalBlock;

impl Rule for SelfApprovalBlock {
    fn name(&self) -> &'static str {
        "self-approval-block"
    }

    fn evaluate(&self, ctx: &PolicyContext, policy: &PolicySet) -> Result<Vote, RuleError> {
        match ctx.action {
            Action::Approve => {
                let actor = ctx
                    .actor
                    .as_ref()
                    .ok_or_else(|| RuleError("an approval needs its approver".into()))?;
                if actor.user_id == ctx.requester.user_id {
                    return Ok(Vote::of(
                        Verdict::Deny,
                        "you cannot approve your own request",
                    ));
                }
                Ok(Vote::abstain())
            }
            Action::Submit if !ctx.request.break_glass => {
                let approvers: Vec<_> = ctx
                    .authorities
                    .iter()
                    .filter(|a| {
                        a.in_force(ctx.now) && policy.access.approver_authorities.contains(&a.kind)
                    })
                    .collect();
                if !approvers.is_empty() && approvers.iter().all(|a| a.names(&ctx.requester)) {
                    return Ok(Vote::of(
                        Verdict::Triage,
                        "the only approvers of this record are you; an admin will decide",
                    ));
                }
                Ok(Vote::abstain())
            }
            _ => Ok(Vote::abstain()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{AuthorityKind, PrincipalType};
    use crate::policy::rules::fixtures::{self, authority};

    #[test]
    fn approving_your_own_request_is_denied() {
        let mut ctx = fixtures::approve();
        ctx.actor = Some(fixtures::alice());
        let vote = SelfApprovalBlock
            .evaluate(&ctx, &PolicySet::defaults())
            .unwrap();
        assert_eq!(vote.verdict(), Verdict::Deny);
        assert_eq!(vote.reasons, ["you cannot approve your own request"]);
        assert_eq!(
            SelfApprovalBlock
                .evaluate(&fixtures::approve(), &PolicySet::defaults())
                .unwrap()
                .verdict(),
            Verdict::Abstain
        );
    }

    #[test]
    fn an_owner_requesting_their_own_record_is_triaged_when_nobody_else_can_approve() {
        let mut ctx = fixtures::submit();
        ctx.requester = fixtures::bob();
        let vote = SelfApprovalBlock
            .evaluate(&ctx, &PolicySet::defaults())
            .unwrap();
        assert_eq!(
            vote.verdict(),
            Verdict::Triage,
            "bob owns and approves db-prod alone"
        );
        // With a second approver, the request can be routed to them instead.
        ctx.authorities.push(authority(
            102,
            AuthorityKind::Approver,
            PrincipalType::Group,
            "grp-dba-leads",
            1,
        ));
        assert_eq!(
            SelfApprovalBlock
                .evaluate(&ctx, &PolicySet::defaults())
                .unwrap()
                .verdict(),
            Verdict::Abstain
        );
    }

    #[test]
    fn revoked_authorities_do_not_count_as_other_approvers() {
        let mut ctx = fixtures::submit();
        ctx.requester = fixtures::bob();
        let mut revoked = authority(
            102,
            AuthorityKind::Approver,
            PrincipalType::User,
            "aad-carol",
            1,
        );
        revoked.revoked = true;
        ctx.authorities.push(revoked);
        assert_eq!(
            SelfApprovalBlock
                .evaluate(&ctx, &PolicySet::defaults())
                .unwrap()
                .verdict(),
            Verdict::Triage
        );
    }

    #[test]
    fn an_approval_without_an_approver_fails_closed() {
        let mut ctx = fixtures::approve();
        ctx.actor = None;
        assert!(
            SelfApprovalBlock
                .evaluate(&ctx, &PolicySet::defaults())
                .is_err()
        );
    }
}
