//! request-state: the decision must be a legal move of the 9-state machine.

use super::{Rule, RuleError};
use crate::domain::RequestStatus;
use crate::policy::context::{Action, PolicyContext};
use crate::policy::decision::{Verdict, Vote};
use crate::policy::set::PolicySet;

pub struct RequestState;

impl Rule for RequestState {
    fn name(&self) -> &'static str {
        "request-state"
    }

    fn evaluate(&self, ctx: &PolicyContext, _: &PolicySet) -> Result<Vote, RuleError> {
        let status = ctx.request.status;
        Ok(match (ctx.action, status) {
            (Action::Submit, None) => Vote::abstain(),
            (Action::Submit, Some(s)) => {
                Vote::of(Verdict::Deny, format!("request is already {}", in_words(s)))
            }
            (Action::Approve, Some(s)) if s.can_become(RequestStatus::Approved) => Vote::abstain(),
            (Action::Extend, Some(s))
                if s.has_live_lease() && s.can_become(RequestStatus::RenewalPending) =>
            {
                Vote::abstain()
            }
            (Action::Approve | Action::Extend, Some(s)) => Vote::of(
                Verdict::Deny,
                format!(
                    "request is {}; it cannot be {}",
                    in_words(s),
                    verb(ctx.action)
                ),
            ),
            (Action::Approve | Action::Extend, None) => {
                return Err(RuleError(format!(
                    "{} needs the request's status",
                    verb(ctx.action)
                )));
            }
        })
    }
}

/// Reasons reach people: the state as they read it, not its stored name.
fn in_words(s: RequestStatus) -> String {
    s.in_words().to_lowercase()
}

fn verb(a: Action) -> &'static str {
    match a {
        Action::Submit => "submitted",
        Action::Approve => "approved",
        Action::Extend => "extended",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::rules::fixtures;

    #[test]
    fn each_action_needs_a_state_it_can_move_from() {
        let policy = PolicySet::defaults();
        let cases = [
            (fixtures::submit(), None, Verdict::Abstain),
            (
                fixtures::submit(),
                Some(RequestStatus::Pending),
                Verdict::Deny,
            ),
            (
                fixtures::approve(),
                Some(RequestStatus::Pending),
                Verdict::Abstain,
            ),
            (
                fixtures::approve(),
                Some(RequestStatus::RequiresTriage),
                Verdict::Abstain,
            ),
            (
                fixtures::approve(),
                Some(RequestStatus::Approved),
                Verdict::Deny,
            ),
            (
                fixtures::approve(),
                Some(RequestStatus::Denied),
                Verdict::Deny,
            ),
            (
                fixtures::extend(),
                Some(RequestStatus::Issued),
                Verdict::Abstain,
            ),
            (
                fixtures::extend(),
                Some(RequestStatus::Approved),
                Verdict::Abstain,
            ),
            (
                fixtures::extend(),
                Some(RequestStatus::RenewalPending),
                Verdict::Deny,
            ),
            (
                fixtures::extend(),
                Some(RequestStatus::Expired),
                Verdict::Deny,
            ),
            (
                fixtures::extend(),
                Some(RequestStatus::Pending),
                Verdict::Deny,
            ),
        ];
        for (mut ctx, status, expected) in cases {
            ctx.request.status = status;
            let vote = RequestState.evaluate(&ctx, &policy).unwrap();
            assert_eq!(vote.verdict(), expected, "{:?} from {status:?}", ctx.action);
        }
    }

    #[test]
    fn a_refusal_names_the_state_in_words_not_its_stored_name() {
        let policy = PolicySet::defaults();
        let mut ctx = fixtures::extend();
        ctx.request.status = Some(RequestStatus::RenewalPending);
        let vote = RequestState.evaluate(&ctx, &policy).unwrap();
        assert_eq!(
            vote.reasons,
            vec!["request is renewal pending; it cannot be extended".to_string()]
        );
    }

    #[test]
    fn an_approval_without_a_status_is_an_error_not_a_pass() {
        let mut ctx = fixtures::approve();
        ctx.request.status = None;
        assert!(RequestState.evaluate(&ctx, &PolicySet::defaults()).is_err());
    }
}
