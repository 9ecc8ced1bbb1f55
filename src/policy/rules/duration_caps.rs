//! duration-caps: a lease no longer than the record's sensitivity allows; extensions limited in
//! number and in the lease's total length.

use super::{Rule, RuleError};
use crate::policy::context::{Action, PolicyContext};
use crate::policy::decision::{Constraints, Verdict, Vote};
use crate::policy::set::PolicySet;

pub struct DurationCaps;

/// `7200` → `2h`, `5400` → `1h 30m`.
pub fn human(secs: i64) -> String {
    crate::domain::format_duration(time::Duration::seconds(secs))
}

impl Rule for DurationCaps {
    fn name(&self) -> &'static str {
        "duration-caps"
    }

    fn evaluate(&self, ctx: &PolicyContext, policy: &PolicySet) -> Result<Vote, RuleError> {
        let sensitivity = ctx.record.sensitivity;
        let cap = policy.max_lease_secs(sensitivity);
        let constraints = Constraints {
            max_lease_secs: Some(cap),
            max_issuances: Some(policy.lease.max_issuances),
            ..Default::default()
        };
        let vote = match ctx.action {
            Action::Submit => {
                let asked = ctx.request.requested_duration_secs;
                if asked <= 0 {
                    Vote::of(Verdict::Deny, "the duration must be positive")
                } else if asked > cap {
                    Vote::of(
                        Verdict::Deny,
                        format!(
                            "{} is longer than the {} allowed for {sensitivity} records",
                            human(asked),
                            human(cap)
                        ),
                    )
                } else {
                    Vote::abstain()
                }
            }
            Action::Extend => {
                let more = ctx
                    .extension_secs
                    .ok_or_else(|| RuleError("an extension needs its duration".into()))?;
                let total_cap = policy
                    .lease
                    .max_total_lease_secs
                    .get(&sensitivity)
                    .copied()
                    .unwrap_or(cap);
                let total = ctx.request.granted_lease_secs.saturating_add(more);
                if more <= 0 {
                    Vote::of(Verdict::Deny, "the extension must be positive")
                } else if ctx.request.extension_count >= policy.lease.max_extensions {
                    Vote::of(
                        Verdict::Deny,
                        format!(
                            "this lease has had its {} extensions already",
                            policy.lease.max_extensions
                        ),
                    )
                } else if more > cap {
                    Vote::of(
                        Verdict::Deny,
                        format!("{} is longer than one {} lease", human(more), human(cap)),
                    )
                } else if total > total_cap {
                    Vote::of(
                        Verdict::Deny,
                        format!(
                            "that would make the lease {} in all; {sensitivity} leases stop at {}",
                            human(total),
                            human(total_cap)
                        ),
                    )
                } else {
                    Vote::abstain()
                }
            }
            Action::Approve => Vote::abstain(),
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
    fn the_cap_is_inclusive_and_one_minute_over_is_denied() {
        let policy = PolicySet::defaults();
        let cap = policy.max_lease_secs(Sensitivity::High);
        for (asked, expected) in [
            (cap, Verdict::Abstain),
            (cap + 60, Verdict::Deny),
            (60, Verdict::Abstain),
            (0, Verdict::Deny),
            (-5, Verdict::Deny),
        ] {
            let mut ctx = fixtures::submit();
            ctx.request.requested_duration_secs = asked;
            let vote = DurationCaps.evaluate(&ctx, &policy).unwrap();
            assert_eq!(vote.verdict(), expected, "{asked}s");
            assert_eq!(vote.constraints.max_lease_secs, Some(cap));
            assert_eq!(vote.constraints.max_issuances, Some(3));
        }
        let mut ctx = fixtures::submit();
        ctx.request.requested_duration_secs = cap + 60;
        assert_eq!(
            DurationCaps.evaluate(&ctx, &policy).unwrap().reasons,
            ["4h 1m is longer than the 4h allowed for HIGH records"]
        );
    }

    #[test]
    fn extensions_are_limited_in_count_and_total() {
        let policy = PolicySet::defaults();
        let ok = fixtures::extend();
        assert_eq!(
            DurationCaps.evaluate(&ok, &policy).unwrap().verdict(),
            Verdict::Abstain
        );

        let mut exhausted = fixtures::extend();
        exhausted.request.extension_count = policy.lease.max_extensions;
        let vote = DurationCaps.evaluate(&exhausted, &policy).unwrap();
        assert_eq!(vote.verdict(), Verdict::Deny);
        assert_eq!(
            vote.reasons,
            ["this lease has had its 2 extensions already"]
        );

        let total_cap = policy.lease.max_total_lease_secs[&Sensitivity::High];
        let mut at_total = fixtures::extend();
        at_total.request.granted_lease_secs = total_cap - 1800;
        assert_eq!(
            DurationCaps.evaluate(&at_total, &policy).unwrap().verdict(),
            Verdict::Abstain,
            "exactly at the total cap"
        );
        at_total.request.granted_lease_secs += 60;
        assert_eq!(
            DurationCaps.evaluate(&at_total, &policy).unwrap().verdict(),
            Verdict::Deny,
            "one minute over"
        );

        let mut missing = fixtures::extend();
        missing.extension_secs = None;
        assert!(DurationCaps.evaluate(&missing, &policy).is_err());
    }
}
