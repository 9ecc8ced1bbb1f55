//! business hours: outside the auto-approve window (local weekdays and hours), requests that would
//! have been approved automatically are routed to a person instead.

use super::{Rule, RuleError};
use crate::policy::context::{Action, PolicyContext};
use crate::policy::decision::{Verdict, Vote};
use crate::policy::set::PolicySet;

pub struct BusinessHoursWindow;

impl Rule for BusinessHoursWindow {
    fn name(&self) -> &'static str {
        "business-hours"
    }

    fn evaluate(&self, ctx: &PolicyContext, policy: &PolicySet) -> Result<Vote, RuleError> {
        let hours = &policy.access.business_hours;
        if !hours.enabled || ctx.action != Action::Submit || ctx.request.break_glass {
            return Ok(Vote::abstain());
        }
        let auto = policy
            .access
            .auto_approve_max_sensitivity
            .is_some_and(|max| ctx.record.sensitivity <= max);
        if !auto {
            return Ok(Vote::abstain());
        }
        let offset = time::Duration::minutes(i64::from(hours.utc_offset_minutes));
        let local = ctx.now.datetime() + offset;
        let weekday = local.weekday().number_from_monday();
        let minute = u16::from(local.hour()) * 60 + u16::from(local.minute());
        let inside = hours.weekdays.contains(&weekday)
            && hours.start_minute <= minute
            && minute < hours.end_minute;
        if inside {
            Ok(Vote::abstain())
        } else {
            Ok(Vote::of(
                Verdict::Route,
                "outside the auto-approve hours, a person approves",
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Sensitivity, Timestamp};
    use crate::policy::rules::fixtures;

    #[test]
    fn the_window_is_local_weekdays_from_start_to_end() {
        let mut policy = PolicySet::defaults();
        policy.access.business_hours.enabled = true;
        policy.access.business_hours.utc_offset_minutes = 60; // CET
        let cases = [
            ("2026-11-23T07:00:00Z", Verdict::Abstain), // Monday 08:00 local: opens
            ("2026-11-23T06:59:00Z", Verdict::Route),   // 07:59 local
            ("2026-11-23T16:59:00Z", Verdict::Abstain), // 17:59 local
            ("2026-11-23T17:00:00Z", Verdict::Route),   // 18:00 local: closed
            ("2026-11-28T10:00:00Z", Verdict::Route),   // Saturday
        ];
        for (at, expected) in cases {
            let mut ctx = fixtures::submit();
            ctx.record.sensitivity = Sensitivity::Low;
            ctx.now = Timestamp::parse(at).unwrap();
            assert_eq!(
                BusinessHoursWindow
                    .evaluate(&ctx, &policy)
                    .unwrap()
                    .verdict(),
                expected,
                "{at}"
            );
        }
        // Records that need approval anyway are not this rule's business.
        let mut ctx = fixtures::submit();
        ctx.now = Timestamp::parse("2026-11-28T10:00:00Z").unwrap();
        assert_eq!(
            BusinessHoursWindow
                .evaluate(&ctx, &policy)
                .unwrap()
                .verdict(),
            Verdict::Abstain
        );
    }
}
