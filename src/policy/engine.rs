//! Aggregation. Rules run in order; a DENY stops evaluation at once; otherwise TRIAGE beats ROUTE,
//! ROUTE beats AUTO_APPROVE, and all-abstain collapses to the policy's default outcome. A rule that
//! errors or panics is a DENY (fail closed). A routed request nobody can approve goes to triage.

use super::context::{Action, PolicyContext};
use super::decision::{Constraints, Decision, Outcome, RequiredApproval, RuleTrace, Verdict, Vote};
use super::rules;
use super::set::{DefaultOutcome, PolicySet};
use std::collections::BTreeMap;
use std::panic::{AssertUnwindSafe, catch_unwind};

/// A policy set ready to evaluate, with its version computed once.
#[derive(Debug, Clone)]
pub struct Engine {
    policy: PolicySet,
    version: String,
}

impl Engine {
    pub fn new(policy: PolicySet) -> Engine {
        let version = policy.version();
        Engine { policy, version }
    }

    pub fn policy(&self) -> &PolicySet {
        &self.policy
    }

    pub fn version(&self) -> &str {
        &self.version
    }

    pub fn evaluate(&self, ctx: &PolicyContext) -> Decision {
        evaluate_with(ctx, &self.policy, &self.version, rules::all())
    }
}

pub(crate) fn evaluate_with(
    ctx: &PolicyContext,
    policy: &PolicySet,
    version: &str,
    rules: &[&dyn rules::Rule],
) -> Decision {
    let mut trace = Vec::with_capacity(rules.len());
    let mut constraints = Constraints {
        max_lease_secs: Some(policy.max_lease_secs(ctx.record.sensitivity)),
        max_issuances: Some(policy.lease.max_issuances),
        ..Default::default()
    };
    let mut approvals: BTreeMap<i32, RequiredApproval> = BTreeMap::new();
    let mut votes: Vec<(Verdict, Vec<String>)> = Vec::new();

    for rule in rules {
        let vote = match catch_unwind(AssertUnwindSafe(|| rule.evaluate(ctx, policy))) {
            Ok(Ok(vote)) => vote,
            Ok(Err(e)) => Vote::of(
                Verdict::Deny,
                format!("{} could not decide: {e}", rule.name()),
            ),
            Err(_) => Vote::of(Verdict::Deny, format!("{} failed", rule.name())),
        };
        let verdict = vote.verdict();
        constraints.merge(&vote.constraints);
        for r in &vote.required_approvals {
            let slot = approvals
                .entry(r.stage)
                .or_insert_with(|| RequiredApproval {
                    stage: r.stage,
                    count: 0,
                    approvers: vec![],
                });
            slot.count = slot.count.max(r.count);
            for a in &r.approvers {
                if !slot
                    .approvers
                    .iter()
                    .any(|x| x.authority_id == a.authority_id)
                {
                    slot.approvers.push(a.clone());
                }
            }
        }
        trace.push(RuleTrace {
            rule: rule.name().to_string(),
            verdict: verdict.clone(),
            reasons: vote.reasons.clone(),
        });
        if verdict == Verdict::Deny {
            return Decision {
                outcome: Outcome::Deny,
                reasons: vote.reasons,
                constraints,
                required_approvals: vec![],
                trace,
                policy_version: version.to_string(),
            };
        }
        votes.push((verdict, vote.reasons));
    }

    let has = |v: Verdict| votes.iter().any(|(x, _)| *x == v);
    let (mut outcome, winning) = if has(Verdict::Triage) {
        (Outcome::RequiresHumanTriage, Some(Verdict::Triage))
    } else if has(Verdict::Route) {
        (Outcome::RouteToAuthority, Some(Verdict::Route))
    } else if has(Verdict::AutoApprove) {
        (Outcome::AutoApprove, Some(Verdict::AutoApprove))
    } else {
        let default = match policy.access.default_outcome {
            DefaultOutcome::AutoApprove => Outcome::AutoApprove,
            DefaultOutcome::RouteToAuthority => Outcome::RouteToAuthority,
            DefaultOutcome::RequiresHumanTriage => Outcome::RequiresHumanTriage,
        };
        (default, None)
    };
    let mut reasons: Vec<String> = match &winning {
        Some(w) => votes
            .iter()
            .filter(|(v, _)| v == w)
            .flat_map(|(_, r)| r.clone())
            .collect(),
        None => vec!["no rule objected; the policy's default applies".to_string()],
    };

    let mut required_approvals: Vec<RequiredApproval> =
        approvals.into_values().filter(|r| r.count > 0).collect();
    if outcome == Outcome::RouteToAuthority && ctx.action != Action::Approve {
        // Stages with counts but nobody to ask (quorum spoke, routing found no one) don't count.
        required_approvals.retain(|r| !r.approvers.is_empty());
        if required_approvals.is_empty() {
            outcome = Outcome::RequiresHumanTriage;
            reasons.push(format!(
                "nobody can approve {}; an admin will decide",
                ctx.record.title
            ));
        }
    }
    if outcome != Outcome::RouteToAuthority {
        required_approvals.clear();
    }
    Decision {
        outcome,
        reasons,
        constraints,
        required_approvals,
        trace,
        policy_version: version.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{FolderPermission, Sensitivity};
    use crate::policy::rules::{Rule, RuleError, fixtures};

    #[test]
    fn a_routed_high_request_names_its_approvers_and_constraints() {
        let engine = Engine::new(PolicySet::defaults());
        let d = engine.evaluate(&fixtures::submit());
        assert_eq!(d.outcome, Outcome::RouteToAuthority, "{d:#?}");
        assert_eq!(d.reasons, ["HIGH records need approval"]);
        assert_eq!(d.required_approvals.len(), 1);
        assert_eq!(d.required_approvals[0].count, 1);
        assert_eq!(d.required_approvals[0].approvers.len(), 2);
        assert!(d.constraints.otp_required);
        assert_eq!(d.constraints.max_lease_secs, Some(4 * 3600));
        assert_eq!(
            d.trace.len(),
            rules::all().len(),
            "every rule ran and is traced"
        );
        assert_eq!(d.policy_version, engine.version());
    }

    #[test]
    fn low_sensitivity_auto_approves_and_deny_short_circuits() {
        let engine = Engine::new(PolicySet::defaults());
        let mut ctx = fixtures::submit();
        ctx.record.sensitivity = Sensitivity::Low;
        let d = engine.evaluate(&ctx);
        assert_eq!(d.outcome, Outcome::AutoApprove);
        assert!(d.required_approvals.is_empty());

        ctx.folder_access.permission = None;
        let d = engine.evaluate(&ctx);
        assert_eq!(d.outcome, Outcome::Deny);
        assert_eq!(
            d.trace.last().unwrap().rule,
            "visibility",
            "evaluation stopped at the first DENY"
        );
        assert_eq!(d.trace.len(), 2);
        ctx.folder_access.permission = Some(FolderPermission::Viewer);
        assert_eq!(engine.evaluate(&ctx).outcome, Outcome::AutoApprove);
    }

    #[test]
    fn nobody_to_route_to_means_triage() {
        let engine = Engine::new(PolicySet::defaults());
        let mut ctx = fixtures::submit();
        ctx.authorities.iter_mut().for_each(|a| a.revoked = true);
        let d = engine.evaluate(&ctx);
        assert_eq!(d.outcome, Outcome::RequiresHumanTriage);
        assert!(
            d.reasons
                .iter()
                .any(|r| r.contains("nobody can approve db-prod")),
            "{:?}",
            d.reasons
        );
    }

    struct Panics;
    impl Rule for Panics {
        fn name(&self) -> &'static str {
            "panics"
        }
        fn evaluate(&self, _: &PolicyContext, _: &PolicySet) -> Result<Vote, RuleError> {
            panic!("a bug in a rule")
        }
    }

    struct Errs;
    impl Rule for Errs {
        fn name(&self) -> &'static str {
            "errs"
        }
        fn evaluate(&self, _: &PolicyContext, _: &PolicySet) -> Result<Vote, RuleError> {
            Err(RuleError("missing data".into()))
        }
    }

    struct Abstains;
    impl Rule for Abstains {
        fn name(&self) -> &'static str {
            "abstains"
        }
        fn evaluate(&self, _: &PolicyContext, _: &PolicySet) -> Result<Vote, RuleError> {
            Ok(Vote::abstain())
        }
    }

    #[test]
    fn a_rule_that_errors_or_panics_denies() {
        let policy = PolicySet::defaults();
        let ctx = fixtures::submit();
        let d = evaluate_with(&ctx, &policy, "v", &[&Abstains, &Errs]);
        assert_eq!(
            (d.outcome, d.reasons.clone()),
            (
                Outcome::Deny,
                vec!["errs could not decide: missing data".to_string()]
            )
        );
        let d = evaluate_with(&ctx, &policy, "v", &[&Panics, &Abstains]);
        assert_eq!(d.outcome, Outcome::Deny);
        assert_eq!(d.reasons, ["panics failed"]);
    }

    #[test]
    fn all_abstain_collapses_to_the_policy_default() {
        let mut policy = PolicySet::defaults();
        let ctx = fixtures::submit();
        assert_eq!(
            evaluate_with(&ctx, &policy, "v", &[&Abstains]).outcome,
            Outcome::AutoApprove
        );
        policy.access.default_outcome = DefaultOutcome::RequiresHumanTriage;
        assert_eq!(
            evaluate_with(&ctx, &policy, "v", &[&Abstains]).outcome,
            Outcome::RequiresHumanTriage
        );
    }
}
