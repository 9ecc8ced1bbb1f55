//! Replay: re-evaluate a stored decision trace from its own inputs with the current policy and
//! code, and say "same decision" or exactly what differs — and the likely why (policy or code
//! version changed, or the stored inputs no longer match their hash).

use super::NewTrace;
use super::context::PolicyContext;
use super::engine::Engine;
use crate::canonical::hash_canonical;
use serde::Serialize;
use serde_json::{Value, json};

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReplayReport {
    pub trace_id: i64,
    pub same: bool,
    /// The stored inputs still hash to the stored inputs hash.
    pub inputs_intact: bool,
    /// A recorded lifecycle step with no policy evaluation: replay checks its inputs only.
    pub event: bool,
    pub differences: Vec<String>,
    pub stored_policy_version: String,
    pub current_policy_version: String,
    pub stored_code_version: String,
    pub current_code_version: String,
}

impl ReplayReport {
    pub fn summary(&self) -> String {
        if self.same && self.event {
            return format!(
                "trace {}: same record (a lifecycle step, no policy decision)",
                self.trace_id
            );
        }
        if self.same {
            return format!("trace {}: same decision", self.trace_id);
        }
        let mut lines = vec![format!("trace {}: DIFFERENT", self.trace_id)];
        lines.extend(self.differences.iter().map(|d| format!("  - {d}")));
        lines.join("\n")
    }
}

/// A trace as it was kept: its id and the policy's record. The store's row implements it, so
/// the policy replays what the store gives back without knowing the store.
pub trait StoredTrace {
    fn trace_id(&self) -> i64;
    fn record(&self) -> NewTrace;
}

pub fn replay(stored: &impl StoredTrace, engine: &Engine) -> ReplayReport {
    let trace_id = stored.trace_id();
    let trace = &stored.record();
    let mut report = ReplayReport {
        trace_id,
        same: false,
        inputs_intact: hash_canonical(&trace.inputs) == trace.inputs_hash,
        event: false,
        differences: vec![],
        stored_policy_version: trace.policy_version.clone(),
        current_policy_version: engine.version().to_string(),
        stored_code_version: trace.code_version.clone(),
        current_code_version: super::code_version().to_string(),
    };
    if !report.inputs_intact {
        report
            .differences
            .push("the stored inputs do not match their hash: the trace was altered".into());
    }
    let ctx: PolicyContext = match serde_json::from_value(trace.inputs.clone()) {
        Ok(ctx) => ctx,
        // A recorded step (issuance, revocation, expiry, triage by an admin, an unfulfillable
        // preflight) took no policy decision: its inputs are the facts it acted on, and what
        // replays is that record — intact inputs under the stored hash. Only a trace written as
        // such qualifies: inputs that parse as a policy context are always re-evaluated.
        Err(_) if trace.trace.get("event").is_some_and(Value::is_string) => {
            report.event = true;
            report.same = report.differences.is_empty();
            return report;
        }
        Err(e) => {
            report.differences.push(format!(
                "the stored inputs no longer parse as a policy context: {e}"
            ));
            return report;
        }
    };
    let d = engine.evaluate(&ctx);
    // A person's decision taken once the policy let them (an approver's denial): the policy's
    // part is replayed, and it must still let a person decide.
    let person = trace.trace.get("person");
    let stored_reasons = match person {
        Some(_) => trace.trace.get("policy_reasons").unwrap_or(&Value::Null),
        None => &trace.reasons,
    };
    let compare = |what: &str, stored: &Value, now: Value, out: &mut Vec<String>| {
        if *stored != now {
            out.push(format!("{what}: was {stored}, now {now}"));
        }
    };
    let mut diffs = Vec::new();
    compare(
        "outcome",
        trace.trace.get("outcome").unwrap_or(&Value::Null),
        json!(d.outcome),
        &mut diffs,
    );
    compare("reasons", stored_reasons, json!(d.reasons), &mut diffs);
    if let Some(person) = person {
        use super::Outcome;
        if matches!(d.outcome, Outcome::Deny | Outcome::RequiresHumanTriage) {
            diffs.push(format!(
                "the policy now refuses to let this person decide ({})",
                json!(d.outcome)
            ));
        }
        let recorded = person
            .get("outcome")
            .and_then(|o| serde_json::from_value::<Outcome>(o.clone()).ok());
        if recorded.map(Outcome::trace_outcome) != Some(trace.outcome)
            || person.get("reasons") != Some(&trace.reasons)
        {
            diffs.push("the person's decision does not match the trace's outcome".into());
        }
    }
    compare(
        "constraints",
        &trace.constraints,
        json!(d.constraints),
        &mut diffs,
    );
    compare(
        "required approvals",
        &trace.required_approvals,
        json!(d.required_approvals),
        &mut diffs,
    );
    if diffs.is_empty() {
        // Same decision; a different path to it is still worth saying.
        compare(
            "rule trace",
            trace.trace.get("rules").unwrap_or(&Value::Null),
            json!(d.trace),
            &mut diffs,
        );
    }
    if !diffs.is_empty() {
        if report.stored_policy_version != report.current_policy_version {
            diffs.push(format!(
                "why: the policy changed ({} → {})",
                report.stored_policy_version, report.current_policy_version
            ));
        } else if report.stored_code_version != report.current_code_version {
            diffs.push(format!(
                "why: same policy, different code ({} → {})",
                report.stored_code_version, report.current_code_version
            ));
        } else {
            diffs.push("why: same policy and code, yet a different decision — investigate".into());
        }
    }
    report.differences.extend(diffs);
    report.same = report.differences.is_empty();
    report
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Sensitivity, TraceStage};
    use crate::policy::rules::fixtures;
    use crate::policy::{PolicySet, trace_record};
    use crate::store::DecisionTrace;
    use sqlx::types::Json;

    /// What the store would give back for a written trace.
    fn stored(ctx: &PolicyContext, engine: &Engine) -> DecisionTrace {
        let t = trace_record(TraceStage::RequestSubmission, ctx, &engine.evaluate(ctx));
        DecisionTrace {
            id: 7,
            request_id: t.request_id,
            stage: t.stage,
            outcome: t.outcome,
            reasons: Json(t.reasons),
            constraints: Json(t.constraints),
            required_approvals: Json(t.required_approvals),
            trace: Json(t.trace),
            inputs: Json(t.inputs),
            inputs_hash: t.inputs_hash,
            policy_version: t.policy_version,
            code_version: t.code_version,
            created_at: t.at,
        }
    }

    #[test]
    fn an_unchanged_world_replays_to_the_same_decision() {
        let engine = Engine::new(PolicySet::defaults());
        let report = replay(&stored(&fixtures::submit(), &engine), &engine);
        assert!(report.same, "{report:?}");
        assert!(report.inputs_intact);
        assert_eq!(report.summary(), "trace 7: same decision");
    }

    #[test]
    fn a_policy_change_is_named_as_the_reason() {
        let before = Engine::new(PolicySet::defaults());
        let mut ctx = fixtures::submit();
        ctx.record.sensitivity = Sensitivity::Medium;
        let trace = stored(&ctx, &before);
        let mut loosened = PolicySet::defaults();
        loosened.access.auto_approve_max_sensitivity = Some(Sensitivity::Medium);
        let after = Engine::new(loosened);
        let report = replay(&trace, &after);
        assert!(!report.same);
        assert!(
            report.differences[0]
                .starts_with("outcome: was \"ROUTE_TO_AUTHORITY\", now \"AUTO_APPROVE\""),
            "{:?}",
            report.differences
        );
        assert!(
            report
                .differences
                .last()
                .unwrap()
                .starts_with("why: the policy changed (pv-"),
            "{:?}",
            report.differences
        );
    }

    #[test]
    fn altered_inputs_are_detected() {
        let engine = Engine::new(PolicySet::defaults());
        let mut trace = stored(&fixtures::submit(), &engine);
        trace.inputs.0["request"]["requested_duration_secs"] = json!(60);
        let report = replay(&trace, &engine);
        assert!(!report.inputs_intact && !report.same);
        trace.inputs.0 = json!({"not": "a context"});
        let report = replay(&trace, &engine);
        assert!(
            report
                .differences
                .iter()
                .any(|d| d.contains("no longer parse"))
        );
    }

    #[test]
    fn a_recorded_step_replays_as_itself_and_a_disguised_decision_does_not() {
        let engine = Engine::new(PolicySet::defaults());
        let mut step = stored(&fixtures::submit(), &engine);
        step.inputs = Json(json!({ "request_id": 7, "from": "ISSUED", "to": "EXPIRED" }));
        step.inputs_hash = hash_canonical(&step.inputs.0);
        step.trace = Json(json!({ "event": "REVOCATION_EVENT" }));
        let report = replay(&step, &engine);
        assert!(report.same && report.event, "{report:?}");
        assert!(report.summary().contains("same record"));
        // Its facts edited: no longer the same.
        step.inputs.0["to"] = json!("APPROVED");
        assert!(!replay(&step, &engine).same);

        // A policy decision relabelled as a recorded step is still re-evaluated.
        let mut ctx = fixtures::submit();
        ctx.record.sensitivity = Sensitivity::Medium;
        let mut disguised = stored(&ctx, &engine);
        disguised.trace = Json(json!({ "event": "REVOCATION_EVENT" }));
        disguised.reasons = Json(json!(["LOW records are approved automatically"]));
        let report = replay(&disguised, &engine);
        assert!(!report.same && !report.event, "{report:?}");
    }

    #[test]
    fn a_persons_denial_replays_and_a_forged_one_does_not() {
        let engine = Engine::new(PolicySet::defaults());
        let mut ctx = fixtures::submit();
        ctx.record.sensitivity = Sensitivity::Medium;
        let policy = engine.evaluate(&ctx);
        let t = crate::policy::person_decision_trace(
            TraceStage::ApprovalDecision,
            &ctx,
            &policy,
            crate::policy::Outcome::Deny,
            vec!["Bob denied it: not now".into()],
        );
        let mut trace = stored(&ctx, &engine);
        trace.outcome = t.outcome;
        trace.reasons = Json(t.reasons);
        trace.trace = Json(t.trace);
        assert!(
            replay(&trace, &engine).same,
            "{:?}",
            replay(&trace, &engine)
        );
        // The outcome column turned into an approval: the person's recorded decision disagrees.
        let mut forged = trace.clone();
        forged.outcome = crate::domain::TraceOutcome::Allow;
        let report = replay(&forged, &engine);
        assert!(!report.same, "{report:?}");
    }
}
