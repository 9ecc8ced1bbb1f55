//! authority-routing: who may approve — the in-force OWNER / CUSTODIAN / APPROVER rows (as the
//! policy allows) naming users, groups, roles or emails. At submission it resolves the approvers
//! (the engine routes to them when approval is needed, and triages when nobody resolves); at
//! approval it checks the approver is one of them, at the stage being decided.

use super::quorum::{approvers_by_stage, stage_requirements};
use super::{Rule, RuleError};
use crate::policy::context::{Action, PolicyContext};
use crate::policy::decision::{Approver, RequiredApproval, Verdict, Vote};
use crate::policy::set::PolicySet;
use std::collections::BTreeMap;

pub struct AuthorityRouting;

impl Rule for AuthorityRouting {
    fn name(&self) -> &'static str {
        "authority-routing"
    }

    fn evaluate(&self, ctx: &PolicyContext, policy: &PolicySet) -> Result<Vote, RuleError> {
        if ctx.request.break_glass {
            return Ok(Vote::abstain());
        }
        let stages = approvers_by_stage(ctx, policy);
        let ignored = ctx
            .authorities
            .iter()
            .filter(|a| !a.in_force(ctx.now))
            .count();
        match ctx.action {
            Action::Submit | Action::Extend => {
                let mut vote = Vote::abstain();
                for (stage, rows) in &stages {
                    let approvers: Vec<Approver> = rows
                        .iter()
                        // A person never approves their own request: don't route it to them.
                        .filter(|a| {
                            !matches!(
                                a.principal_type,
                                crate::domain::PrincipalType::User
                                    | crate::domain::PrincipalType::Email
                            ) || !a.names(&ctx.requester)
                        })
                        .map(|a| Approver {
                            authority_id: a.authority_id,
                            kind: a.kind,
                            principal_type: a.principal_type,
                            principal: a.principal.clone(),
                        })
                        .collect();
                    if !approvers.is_empty() {
                        vote.required_approvals.push(RequiredApproval {
                            stage: *stage,
                            count: 1,
                            approvers,
                        });
                    }
                }
                let resolved: usize = vote
                    .required_approvals
                    .iter()
                    .map(|r| r.approvers.len())
                    .sum();
                vote.reasons.push(format!(
                    "{resolved} approver(s) resolved; {ignored} revoked or expired row(s) ignored"
                ));
                Ok(vote)
            }
            Action::Approve => {
                let actor = ctx
                    .actor
                    .as_ref()
                    .ok_or_else(|| RuleError("an approval needs its approver".into()))?;
                let actor_stages: Vec<i32> = stages
                    .iter()
                    .filter(|(_, rows)| rows.iter().any(|a| a.names(actor)))
                    .map(|(s, _)| *s)
                    .collect();
                if actor_stages.is_empty() {
                    return Ok(Vote::of(
                        Verdict::Deny,
                        format!("you are not an approver of {}", ctx.record.title),
                    ));
                }
                let needed = stage_requirements(ctx, policy);
                let mut have: BTreeMap<i32, u32> = BTreeMap::new();
                for a in &ctx.approvals {
                    *have.entry(a.stage).or_default() += 1;
                }
                let current = needed
                    .iter()
                    .find(|(s, n)| have.get(s).copied().unwrap_or(0) < **n)
                    .map(|(s, _)| *s);
                match current {
                    Some(stage) if !actor_stages.contains(&stage) => Ok(Vote::of(
                        Verdict::Deny,
                        format!(
                            "stage {stage} approvers decide first; you approve at stage {}",
                            actor_stages[0]
                        ),
                    )),
                    _ => Ok(Vote::abstain()),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{AuthorityKind, PrincipalType};
    use crate::policy::rules::fixtures::{self, authority};

    #[test]
    fn approvers_resolve_from_in_force_rows_only() {
        let policy = PolicySet::defaults();
        let mut ctx = fixtures::submit();
        let mut revoked = authority(
            102,
            AuthorityKind::Approver,
            PrincipalType::User,
            "aad-mallory",
            1,
        );
        revoked.revoked = true;
        let mut expired = authority(
            103,
            AuthorityKind::Approver,
            PrincipalType::User,
            "aad-eve",
            1,
        );
        expired.valid_to = Some(ctx.now.minus(time::Duration::minutes(1)));
        let mut future = authority(
            104,
            AuthorityKind::Approver,
            PrincipalType::User,
            "aad-trent",
            1,
        );
        future.valid_from = ctx.now.plus(time::Duration::days(1));
        ctx.authorities.extend([revoked, expired, future]);
        let vote = AuthorityRouting.evaluate(&ctx, &policy).unwrap();
        let ids: Vec<i64> = vote.required_approvals[0]
            .approvers
            .iter()
            .map(|a| a.authority_id)
            .collect();
        assert_eq!(
            ids,
            [100, 101],
            "bob as owner and as approver; revoked, expired and future rows ignored"
        );
        assert_eq!(
            vote.reasons,
            ["2 approver(s) resolved; 3 revoked or expired row(s) ignored"]
        );
    }

    #[test]
    fn the_requester_is_never_routed_their_own_request() {
        let mut ctx = fixtures::submit();
        ctx.requester = fixtures::bob();
        ctx.authorities.push(authority(
            102,
            AuthorityKind::Approver,
            PrincipalType::Role,
            "APPROVER",
            1,
        ));
        let vote = AuthorityRouting
            .evaluate(&ctx, &PolicySet::defaults())
            .unwrap();
        let principals: Vec<&str> = vote.required_approvals[0]
            .approvers
            .iter()
            .map(|a| a.principal.as_str())
            .collect();
        assert_eq!(principals, ["APPROVER"]);
    }

    #[test]
    fn approvers_are_matched_by_user_group_role_or_email() {
        let policy = PolicySet::defaults();
        for (t, principal, expected) in [
            (PrincipalType::User, "aad-bob", Verdict::Abstain),
            (PrincipalType::User, "AAD-BOB", Verdict::Abstain),
            (PrincipalType::Group, "grp-dba", Verdict::Abstain),
            (PrincipalType::Role, "APPROVER", Verdict::Abstain),
            (
                PrincipalType::Email,
                "Bob@Contoso.example",
                Verdict::Abstain,
            ),
            (PrincipalType::Group, "grp-other", Verdict::Deny),
            (PrincipalType::Role, "ADMIN", Verdict::Deny),
        ] {
            let mut ctx = fixtures::approve();
            ctx.authorities = vec![authority(1, AuthorityKind::Approver, t, principal, 1)];
            assert_eq!(
                AuthorityRouting.evaluate(&ctx, &policy).unwrap().verdict(),
                expected,
                "{t} {principal}"
            );
        }
        // Custodians approve only when the policy lets them.
        let mut policy = PolicySet::defaults();
        policy.access.approver_authorities = vec![AuthorityKind::Approver];
        let mut ctx = fixtures::approve();
        ctx.authorities = vec![authority(
            1,
            AuthorityKind::Custodian,
            PrincipalType::User,
            "aad-bob",
            1,
        )];
        assert_eq!(
            AuthorityRouting.evaluate(&ctx, &policy).unwrap().verdict(),
            Verdict::Deny
        );
    }

    #[test]
    fn a_later_stage_cannot_approve_before_the_first() {
        let mut ctx = fixtures::approve();
        ctx.authorities = vec![
            authority(
                1,
                AuthorityKind::Approver,
                PrincipalType::User,
                "aad-carol",
                1,
            ),
            authority(
                2,
                AuthorityKind::Approver,
                PrincipalType::User,
                "aad-bob",
                2,
            ),
        ];
        let vote = AuthorityRouting
            .evaluate(&ctx, &PolicySet::defaults())
            .unwrap();
        assert_eq!(vote.verdict(), Verdict::Deny);
        assert_eq!(
            vote.reasons,
            ["stage 1 approvers decide first; you approve at stage 2"]
        );
    }
}
