//! What the engine answers: an outcome, why, under which constraints, who must approve, and the
//! per-rule trace that led there.

use crate::domain::{AuthorityKind, PrincipalType, TraceOutcome};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Outcome {
    AutoApprove,
    Deny,
    RouteToAuthority,
    RequiresHumanTriage,
}

impl Outcome {
    /// How a trace records the outcome: a decision reached (ALLOW/DENY) or not yet (PENDING).
    pub fn trace_outcome(self) -> TraceOutcome {
        match self {
            Outcome::AutoApprove => TraceOutcome::Allow,
            Outcome::Deny => TraceOutcome::Deny,
            Outcome::RouteToAuthority | Outcome::RequiresHumanTriage => TraceOutcome::Pending,
        }
    }
}

/// One rule's say.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Verdict {
    Abstain,
    AutoApprove,
    Route,
    Triage,
    Deny,
}

/// Limits the decision carries forward into the lease and retrieval.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Constraints {
    pub max_lease_secs: Option<i64>,
    pub max_issuances: Option<u32>,
    pub otp_required: bool,
    /// Break-glass: approved now, reviewed after.
    pub post_hoc_review: bool,
    /// Break-glass: tell every authority at once.
    pub notify_authorities: bool,
}

impl Constraints {
    /// Combines two rules' constraints, keeping the stricter of each.
    pub fn merge(&mut self, other: &Constraints) {
        self.max_lease_secs = min_some(self.max_lease_secs, other.max_lease_secs);
        self.max_issuances = min_some(self.max_issuances, other.max_issuances);
        self.otp_required |= other.otp_required;
        self.post_hoc_review |= other.post_hoc_review;
        self.notify_authorities |= other.notify_authorities;
    }
}

fn min_some<T: Ord>(a: Option<T>, b: Option<T>) -> Option<T> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Approver {
    pub authority_id: i64,
    pub kind: AuthorityKind,
    pub principal_type: PrincipalType,
    pub principal: String,
}

/// `count` approvals are needed from `approvers`, at `stage` (stages are decided in order).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequiredApproval {
    pub stage: i32,
    pub count: u32,
    pub approvers: Vec<Approver>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleTrace {
    pub rule: String,
    pub verdict: Verdict,
    pub reasons: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    pub outcome: Outcome,
    pub reasons: Vec<String>,
    pub constraints: Constraints,
    pub required_approvals: Vec<RequiredApproval>,
    pub trace: Vec<RuleTrace>,
    pub policy_version: String,
}

/// What one rule returns: its verdict, why, constraints it imposes, and approvals it requires.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Vote {
    pub verdict: Option<Verdict>,
    pub reasons: Vec<String>,
    pub constraints: Constraints,
    pub required_approvals: Vec<RequiredApproval>,
}

impl Vote {
    pub fn abstain() -> Vote {
        Vote {
            verdict: Some(Verdict::Abstain),
            ..Default::default()
        }
    }

    pub fn of(verdict: Verdict, reason: impl Into<String>) -> Vote {
        Vote {
            verdict: Some(verdict),
            reasons: vec![reason.into()],
            ..Default::default()
        }
    }

    pub fn with_constraints(mut self, c: Constraints) -> Vote {
        self.constraints = c;
        self
    }

    pub fn verdict(&self) -> Verdict {
        self.verdict.clone().unwrap_or(Verdict::Abstain)
    }
}
