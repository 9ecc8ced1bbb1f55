//! visibility: people may only ask for records in vault folders they can see.

use super::{Rule, RuleError};
use crate::domain::Role;
use crate::policy::context::{Action, PolicyContext};
use crate::policy::decision::{Verdict, Vote};
use crate::policy::set::PolicySet;

pub struct Visibility;

impl Rule for Visibility {
    fn name(&self) -> &'static str {
        "visibility"
    }

    fn evaluate(&self, ctx: &PolicyContext, policy: &PolicySet) -> Result<Vote, RuleError> {
        if ctx.action == Action::Approve || !policy.visibility.require_folder_access {
            return Ok(Vote::abstain());
        }
        if ctx.folder_access.permission.is_some() {
            return Ok(Vote::abstain());
        }
        if policy.visibility.admins_see_all && ctx.requester.role == Role::Admin {
            return Ok(Vote::abstain());
        }
        Ok(Vote::of(
            Verdict::Deny,
            format!("{} is not in a vault folder you can see", ctx.record.title),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::FolderPermission;
    use crate::policy::rules::fixtures;

    #[test]
    fn folder_access_decides_visibility() {
        let policy = PolicySet::defaults();
        for (permission, role, expected) in [
            (
                Some(FolderPermission::Viewer),
                Role::Requester,
                Verdict::Abstain,
            ),
            (
                Some(FolderPermission::Owner),
                Role::Requester,
                Verdict::Abstain,
            ),
            (None, Role::Requester, Verdict::Deny),
            (None, Role::Approver, Verdict::Deny),
            (None, Role::Admin, Verdict::Abstain),
        ] {
            let mut ctx = fixtures::submit();
            ctx.folder_access.permission = permission;
            ctx.requester.role = role;
            assert_eq!(
                Visibility.evaluate(&ctx, &policy).unwrap().verdict(),
                expected,
                "{permission:?} {role}"
            );
        }
    }

    #[test]
    fn approvals_are_not_about_the_approvers_visibility_and_the_rule_can_be_switched_off() {
        let mut ctx = fixtures::approve();
        ctx.folder_access.permission = None;
        assert_eq!(
            Visibility
                .evaluate(&ctx, &PolicySet::defaults())
                .unwrap()
                .verdict(),
            Verdict::Abstain
        );
        let mut policy = PolicySet::defaults();
        policy.visibility.require_folder_access = false;
        let mut ctx = fixtures::submit();
        ctx.folder_access.permission = None;
        assert_eq!(
            Visibility.evaluate(&ctx, &policy).unwrap().verdict(),
            Verdict::Abstain
        );
    }
}
