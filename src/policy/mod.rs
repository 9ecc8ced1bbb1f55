//! The policy engine: pure decisions over a [`PolicyContext`] and a [`PolicySet`]. No I/O, no
//! clock reads. [`Engine::evaluate`] gives a [`Decision`]; [`trace_record`] turns one into the
//! `GovernanceDecisionTrace` to store (with the canonical inputs and their hash); [`replay`]
//! re-evaluates a stored trace and says what, if anything, changed.

pub mod context;
pub mod decision;
pub mod engine;
pub mod replay;
pub mod rules;
pub mod set;

pub use context::PolicyContext;
pub use decision::{Decision, Outcome};
pub use engine::Engine;
pub use replay::{ReplayReport, StoredTrace, replay};
pub use set::PolicySet;

use crate::canonical::hash_canonical;
use crate::domain::Timestamp;
use crate::domain::TraceOutcome;
use crate::domain::TraceStage;
use serde_json::{Value, json};

/// The build's git commit (set by build.rs), or the crate version when built outside git.
pub fn code_version() -> &'static str {
    option_env!("BUILD_GIT_SHA")
        .filter(|s| !s.is_empty())
        .unwrap_or(concat!("v", env!("CARGO_PKG_VERSION")))
}

/// SHA-256 of the canonical JSON of the context: identical inputs give identical hashes across
/// runs, machines and key orders.
pub fn inputs_hash(ctx: &PolicyContext) -> String {
    hash_canonical(&serde_json::to_value(ctx).expect("a context is plain data"))
}

/// A decision trace to write: what the policy decided, on which inputs, under which versions.
/// The store keeps it as it is (when written with a new request, it fills in `request_id`).
#[derive(Debug, Clone)]
pub struct NewTrace {
    pub request_id: Option<i64>,
    pub stage: TraceStage,
    pub outcome: TraceOutcome,
    pub reasons: Value,
    pub constraints: Value,
    pub required_approvals: Value,
    pub trace: Value,
    pub inputs: Value,
    pub inputs_hash: String,
    pub policy_version: String,
    pub code_version: String,
    pub at: Timestamp,
}

/// The trace row for a decision at `stage`. `ctx` must be exactly the context `decision` was
/// evaluated on: replay re-evaluates the stored inputs and expects the stored answer.
pub fn trace_record(stage: TraceStage, ctx: &PolicyContext, decision: &Decision) -> NewTrace {
    let inputs = serde_json::to_value(ctx).expect("a context is plain data");
    NewTrace {
        request_id: ctx.request.request_id,
        stage,
        outcome: decision.outcome.trace_outcome(),
        reasons: json!(decision.reasons),
        constraints: json!(decision.constraints),
        required_approvals: json!(decision.required_approvals),
        trace: json!({ "outcome": decision.outcome, "rules": decision.trace }),
        inputs_hash: hash_canonical(&inputs),
        inputs,
        policy_version: decision.policy_version.clone(),
        code_version: code_version().to_string(),
        at: ctx.now,
    }
}

/// The trace row for a decision a person took once the policy let them (an approver's denial):
/// the policy's own answer stays in the trace (`outcome`, `rules`, `policy_reasons`), so replay
/// re-derives it from the stored inputs; the person's decision is recorded next to it
/// (`person`) and is what the outcome and reasons columns say.
pub fn person_decision_trace(
    stage: TraceStage,
    ctx: &PolicyContext,
    policy: &Decision,
    outcome: Outcome,
    reasons: Vec<String>,
) -> NewTrace {
    let mut trace = trace_record(stage, ctx, policy);
    trace.outcome = outcome.trace_outcome();
    trace.trace = json!({
        "outcome": policy.outcome,
        "rules": policy.trace,
        "policy_reasons": policy.reasons,
        "person": { "outcome": outcome, "reasons": reasons },
    });
    trace.reasons = json!(reasons);
    trace
}
