//! Replay: re-evaluate a stored decision trace from its own inputs with the current policy and
//! code, and say "same decision" or exactly what differs — and the likely why (policy or code
//! version changed, or the stored inputs no longer match their hash).

use super::context::PolicyContext;
use super::engine::Engine;
use crate::canonical::hash_canonical;
use crate::store::DecisionTrace;
use serde::Serialize;
use serde_json::{Value, json};

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReplayReport {
    pub trace_id: i64,
    pub same: bool,
    /// The stored inputs still hash to the stored inputs hash.
    pub inputs_intact: bool,
    pub differences: Vec<String>,
    pub stored_policy_version: String,
    pub current_policy_version: String,
    pub stored_code_version: String,
    pub current_code_version: String,
}

impl ReplayReport {
    pub fn summary(&self) -> String {
        if self.same {
            return format!("trace {}: same decision", self.trace_id);
        }
        let mut lines = vec![format!("trace {}: DIFFERENT", self.trace_id)];
        lines.extend(self.differences.iter().map(|d| format!("  - {d}")));
        lines.join("\n")
    }
}

pub fn replay(trace: &DecisionTrace, engine: &Engine) -> ReplayReport {
    let mut report = ReplayReport {
        trace_id: trace.id,
        same: false,
        inputs_intact: hash_canonical(&trace.inputs.0) == trace.inputs_hash,
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
    let ctx: PolicyContext = match serde_json::from_value(trace.inputs.0.clone()) {
        Ok(ctx) => ctx,
        Err(e) => {
            report.differences.push(format!(
                "the stored inputs no longer parse as a policy context: {e}"
            ));
            return report;
        }
    };
    let d = engine.evaluate(&ctx);
    let compare = |what: &str, stored: &Value, now: Value, out: &mut Vec<String>| {
        if *stored != now {
            out.push(format!("{what}: was {stored}, now {now}"));
        }
    };
    let mut diffs = Vec::new();
    compare(
        "outcome",
        trace.trace.0.get("outcome").unwrap_or(&Value::Null),
        json!(d.outcome),
        &mut diffs,
    );
    compare("reasons", &trace.reasons.0, json!(d.reasons), &mut diffs);
    compare(
        "constraints",
        &trace.constraints.0,
        json!(d.constraints),
        &mut diffs,
    );
    compare(
        "required approvals",
        &trace.required_approvals.0,
        json!(d.required_approvals),
        &mut diffs,
    );
    if diffs.is_empty() {
        // Same decision; a different path to it is still worth saying.
        compare(
            "rule trace",
            trace.trace.0.get("rules").unwrap_or(&Value::Null),
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
}
