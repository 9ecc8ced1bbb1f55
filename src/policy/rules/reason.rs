//! reason rules: a justification is required, and above a sensitivity a ticket id matching the
//! policy's pattern (e.g. `INC-4411`). A ticket written in the justification counts.

use super::{Rule, RuleError};
use crate::policy::context::{Action, PolicyContext};
use crate::policy::decision::{Verdict, Vote};
use crate::policy::set::PolicySet;
use regex::Regex;
use std::collections::HashMap;
use std::sync::{LazyLock, Mutex};

pub struct ReasonRules;

/// Compiled ticket patterns, by pattern text (policies change rarely; compiling per call is waste).
static PATTERNS: LazyLock<Mutex<HashMap<String, Regex>>> = LazyLock::new(Default::default);

fn matches(pattern: &str, text: &str) -> Result<bool, RuleError> {
    let mut cache = PATTERNS.lock().unwrap_or_else(|e| e.into_inner());
    if !cache.contains_key(pattern) {
        let re = Regex::new(pattern).map_err(|e| RuleError(format!("ticket_pattern: {e}")))?;
        cache.insert(pattern.to_string(), re);
    }
    Ok(cache[pattern].is_match(text))
}

/// The ticket id: the explicit one, else the first word of the justification that matches.
pub fn find_ticket(ctx: &PolicyContext, pattern: &str) -> Result<Option<String>, RuleError> {
    if let Some(t) = ctx
        .request
        .ticket_id
        .as_deref()
        .map(str::trim)
        .filter(|t| !t.is_empty())
    {
        return Ok(Some(t.to_string()));
    }
    for word in ctx
        .request
        .justification
        .split(|c: char| c.is_whitespace() || ",;()[]".contains(c))
    {
        let word = word.trim_matches(|c: char| c == '.' || c == ':');
        if !word.is_empty() && matches(pattern, word)? {
            return Ok(Some(word.to_string()));
        }
    }
    Ok(None)
}

impl Rule for ReasonRules {
    fn name(&self) -> &'static str {
        "reason"
    }

    fn evaluate(&self, ctx: &PolicyContext, policy: &PolicySet) -> Result<Vote, RuleError> {
        if ctx.action != Action::Submit {
            return Ok(Vote::abstain());
        }
        let rules = &policy.access.reason;
        let justification = ctx.request.justification.trim();
        if rules.justification_required
            && justification.chars().count() < rules.min_justification_chars
        {
            return Ok(Vote::of(
                Verdict::Deny,
                format!(
                    "say why you need it (at least {} characters)",
                    rules.min_justification_chars
                ),
            ));
        }
        let Some(pattern) = rules.ticket_pattern.as_deref() else {
            return Ok(Vote::abstain());
        };
        let required = rules
            .ticket_required_from
            .is_some_and(|from| ctx.record.sensitivity >= from);
        match find_ticket(ctx, pattern)? {
            Some(ticket) if matches(pattern, &ticket)? => Ok(Vote::abstain()),
            Some(ticket) => Ok(Vote::of(
                Verdict::Deny,
                format!("ticket `{ticket}` does not look like a ticket id ({pattern})"),
            )),
            None if required => Ok(Vote::of(
                Verdict::Deny,
                format!(
                    "{} records need a ticket id, e.g. `because INC-4411 …`",
                    ctx.record.sensitivity
                ),
            )),
            None => Ok(Vote::abstain()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Sensitivity;
    use crate::policy::rules::fixtures;

    #[test]
    fn justification_and_ticket_table() {
        let policy = PolicySet::defaults();
        let cases: &[(&str, Option<&str>, Sensitivity, Verdict)] = &[
            (
                "failover drill for INC-4411",
                Some("INC-4411"),
                Sensitivity::High,
                Verdict::Abstain,
            ),
            (
                "failover drill for INC-4411",
                None,
                Sensitivity::High,
                Verdict::Abstain,
            ),
            (
                "failover drill (CHG-17).",
                None,
                Sensitivity::Critical,
                Verdict::Abstain,
            ),
            ("failover drill", None, Sensitivity::High, Verdict::Deny),
            (
                "failover drill",
                None,
                Sensitivity::Medium,
                Verdict::Abstain,
            ),
            (
                "failover drill",
                Some("JIRA-9"),
                Sensitivity::Medium,
                Verdict::Deny,
            ),
            (
                "failover drill",
                Some("inc-4411"),
                Sensitivity::High,
                Verdict::Deny,
            ),
            ("short", Some("INC-1"), Sensitivity::Low, Verdict::Deny),
            ("   ", Some("INC-1"), Sensitivity::Low, Verdict::Deny),
        ];
        for (justification, ticket, sensitivity, expected) in cases {
            let mut ctx = fixtures::submit();
            ctx.request.justification = justification.to_string();
            ctx.request.ticket_id = ticket.map(String::from);
            ctx.record.sensitivity = *sensitivity;
            let vote = ReasonRules.evaluate(&ctx, &policy).unwrap();
            assert_eq!(
                vote.verdict(),
                *expected,
                "{justification:?} {ticket:?} {sensitivity}: {:?}",
                vote.reasons
            );
        }
    }

    #[test]
    fn the_ticket_is_found_in_the_justification() {
        let mut ctx = fixtures::submit();
        ctx.request.ticket_id = None;
        ctx.request.justification = "restore after INC-77: replica lag".into();
        assert_eq!(
            find_ticket(&ctx, "^INC-[0-9]+$").unwrap().as_deref(),
            Some("INC-77")
        );
    }

    #[test]
    fn a_broken_pattern_is_an_error() {
        let mut policy = PolicySet::defaults();
        policy.access.reason.ticket_pattern = Some("(".into());
        assert!(ReasonRules.evaluate(&fixtures::submit(), &policy).is_err());
    }
}
