//! quorum: N approvals of the M resolved approvers (N by sensitivity), and ordered stages — stage
//! 2 approvers decide only after stage 1 has its approvals. Each later stage needs one approval.

use super::{Rule, RuleError};
use crate::policy::context::{Action, AuthorityFacts, PolicyContext};
use crate::policy::decision::{RequiredApproval, Verdict, Vote};
use crate::policy::set::PolicySet;
use std::collections::{BTreeMap, BTreeSet};

pub struct Quorum;

/// In-force approver authorities, by stage.
pub fn approvers_by_stage<'a>(
    ctx: &'a PolicyContext,
    policy: &PolicySet,
) -> BTreeMap<i32, Vec<&'a AuthorityFacts>> {
    let mut stages: BTreeMap<i32, Vec<&AuthorityFacts>> = BTreeMap::new();
    for a in ctx
        .authorities
        .iter()
        .filter(|a| a.in_force(ctx.now) && policy.access.approver_authorities.contains(&a.kind))
    {
        stages.entry(a.stage).or_default().push(a);
    }
    stages
}

/// Approvals needed per stage: the policy's N at the first stage, one at each later stage.
pub fn stage_requirements(ctx: &PolicyContext, policy: &PolicySet) -> BTreeMap<i32, u32> {
    let n = policy.approvals_required(ctx.record.sensitivity);
    approvers_by_stage(ctx, policy)
        .keys()
        .enumerate()
        .map(|(i, stage)| (*stage, if i == 0 { n } else { 1 }))
        .collect()
}

impl Rule for Quorum {
    fn name(&self) -> &'static str {
        "quorum"
    }

    fn evaluate(&self, ctx: &PolicyContext, policy: &PolicySet) -> Result<Vote, RuleError> {
        if ctx.request.break_glass {
            return Ok(Vote::abstain());
        }
        let needed = stage_requirements(ctx, policy);
        match ctx.action {
            Action::Submit => {
                let stages = approvers_by_stage(ctx, policy);
                let mut vote = Vote::abstain();
                for (stage, count) in &needed {
                    // Only people named one by one can be counted; a group or role may hold many.
                    let approvers = &stages[stage];
                    let countable_only = approvers.iter().all(|a| {
                        matches!(
                            a.principal_type,
                            crate::domain::PrincipalType::User
                                | crate::domain::PrincipalType::Email
                        )
                    });
                    let others: BTreeSet<&str> = approvers
                        .iter()
                        .filter(|a| !a.names(&ctx.requester))
                        .map(|a| a.principal.as_str())
                        .collect();
                    if countable_only && (others.len() as u32) < *count {
                        return Ok(Vote::of(
                            Verdict::Triage,
                            format!(
                                "stage {stage} needs {count} approvals but only {} people can give them",
                                others.len()
                            ),
                        ));
                    }
                    vote.required_approvals.push(RequiredApproval {
                        stage: *stage,
                        count: *count,
                        approvers: vec![],
                    });
                }
                if let Some(n) = needed.values().next().filter(|n| **n > 1) {
                    vote.reasons.push(format!("{n} approvals needed"));
                }
                Ok(vote)
            }
            Action::Approve => {
                let actor = ctx
                    .actor
                    .as_ref()
                    .ok_or_else(|| RuleError("an approval needs its approver".into()))?;
                if ctx
                    .approvals
                    .iter()
                    .any(|a| a.approver_user_id == actor.user_id)
                {
                    return Ok(Vote::of(
                        Verdict::Deny,
                        "you have already approved this request",
                    ));
                }
                let mut have: BTreeMap<i32, u32> = BTreeMap::new();
                for a in &ctx.approvals {
                    *have.entry(a.stage).or_default() += 1;
                }
                let current = needed
                    .iter()
                    .find(|(stage, count)| have.get(stage).copied().unwrap_or(0) < **count);
                let Some((stage, count)) = current else {
                    return Ok(Vote::of(
                        Verdict::AutoApprove,
                        "every stage already has its approvals",
                    ));
                };
                let after = have.get(stage).copied().unwrap_or(0) + 1;
                let remaining_stages = needed.keys().filter(|s| *s > stage).count();
                if after >= *count && remaining_stages == 0 {
                    Ok(Vote::of(
                        Verdict::AutoApprove,
                        format!("approvals complete ({after} of {count})"),
                    ))
                } else if after >= *count {
                    Ok(Vote::of(
                        Verdict::Route,
                        format!("stage {stage} complete; the next stage decides"),
                    ))
                } else {
                    Ok(Vote::of(
                        Verdict::Route,
                        format!("{after} of {count} approvals"),
                    ))
                }
            }
            Action::Extend => Ok(Vote::abstain()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{AuthorityKind, PrincipalType, Sensitivity};
    use crate::policy::context::ApprovalFacts;
    use crate::policy::rules::fixtures::{self, authority};

    fn critical_with_two_approvers() -> crate::policy::context::PolicyContext {
        let mut ctx = fixtures::approve();
        ctx.record.sensitivity = Sensitivity::Critical;
        ctx.authorities.push(authority(
            102,
            AuthorityKind::Approver,
            PrincipalType::User,
            "aad-carol",
            1,
        ));
        ctx
    }

    #[test]
    fn two_of_m_needs_two_distinct_approvers() {
        let policy = PolicySet::defaults();
        let first = critical_with_two_approvers();
        let vote = Quorum.evaluate(&first, &policy).unwrap();
        assert_eq!(
            (vote.verdict(), vote.reasons.clone()),
            (Verdict::Route, vec!["1 of 2 approvals".to_string()])
        );

        let mut second = critical_with_two_approvers();
        second.approvals.push(ApprovalFacts {
            approver_user_id: 3,
            stage: 1,
        });
        assert_eq!(
            Quorum.evaluate(&second, &policy).unwrap().verdict(),
            Verdict::AutoApprove
        );

        let mut again = critical_with_two_approvers();
        again.approvals.push(ApprovalFacts {
            approver_user_id: 2,
            stage: 1,
        });
        assert_eq!(
            Quorum.evaluate(&again, &policy).unwrap().verdict(),
            Verdict::Deny,
            "bob cannot count twice"
        );
    }

    #[test]
    fn a_quorum_that_cannot_be_met_is_triaged_at_submission() {
        let mut ctx = fixtures::submit();
        ctx.record.sensitivity = Sensitivity::Critical;
        let vote = Quorum.evaluate(&ctx, &PolicySet::defaults()).unwrap();
        assert_eq!(vote.verdict(), Verdict::Triage, "{:?}", vote.reasons);
        // A group approver may hold any number of people: routed, not triaged.
        ctx.authorities.push(authority(
            102,
            AuthorityKind::Approver,
            PrincipalType::Group,
            "grp-dba",
            1,
        ));
        let vote = Quorum.evaluate(&ctx, &PolicySet::defaults()).unwrap();
        assert_eq!(vote.verdict(), Verdict::Abstain);
        assert_eq!(vote.required_approvals[0].count, 2);
    }

    #[test]
    fn stages_are_decided_in_order() {
        let policy = PolicySet::defaults();
        let mut ctx = fixtures::approve();
        ctx.authorities.push(authority(
            103,
            AuthorityKind::Approver,
            PrincipalType::User,
            "aad-carol",
            2,
        ));
        assert_eq!(
            stage_requirements(&ctx, &policy),
            BTreeMap::from([(1, 1), (2, 1)])
        );
        let vote = Quorum.evaluate(&ctx, &policy).unwrap();
        assert_eq!(vote.reasons, ["stage 1 complete; the next stage decides"]);
        ctx.approvals.push(ApprovalFacts {
            approver_user_id: 9,
            stage: 1,
        });
        assert_eq!(
            Quorum.evaluate(&ctx, &policy).unwrap().verdict(),
            Verdict::AutoApprove
        );
    }
}
