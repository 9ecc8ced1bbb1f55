//! `admin authority …`, `admin sensitivity …`, `admin role …` and `admin totp-invite …` in chat: the words after the command become a call to
//! a `governance::admin` use case, and its result (or refusal) becomes a short reply. The caller
//! has already checked that the sender is an admin.

use super::BotState;
use crate::governance::admin::{Actor, AdminError, Grant};
use crate::store::User;

pub const AUTHORITY_USAGE: &str = "**admin authority**\n\
- `admin authority show <record>`\n\
- `admin authority grant <record> <OWNER|CUSTODIAN|APPROVER> <principal> [stage=N]`\n\
- `admin authority revoke <authority-id> <reason>`\n\
- `admin authority channel <authority-id> <channel-id | none>` (a group's approval cards also go to that team channel)\n\n\
Principals: `user:<email or Entra object id>`, `group:<Entra group id>`, `role:<REQUESTER|APPROVER|ADMIN>`, \
`email:<address>`. Example: `admin authority grant db-prod approver user:bob@contoso.example`";

pub const ROLE_USAGE: &str = "Usage: `admin role <email or Entra object id> <REQUESTER|APPROVER|ADMIN>`, \
e.g. `admin role bob@contoso.example APPROVER`";

/// The reply to `admin authority <args…>`.
pub async fn authority_reply(
    state: &BotState,
    admin: &User,
    args: &[String],
) -> Result<String, AdminError> {
    let use_cases = &state.admin;
    let actor = Actor::User(Box::new(admin.clone()));
    let words: Vec<&str> = args.iter().map(String::as_str).collect();
    let Some((sub, rest)) = words.split_first() else {
        return Ok(AUTHORITY_USAGE.into());
    };
    match (sub.to_ascii_lowercase().as_str(), rest) {
        ("show", [record]) => Ok(use_cases.show_authorities(record).await?.render()),
        ("grant", [record, kind, principal, extra @ ..]) => {
            let stage = match extra {
                [] => None,
                [word] => match word.to_ascii_lowercase().strip_prefix("stage=") {
                    Some(n) => Some(
                        n.parse::<i32>()
                            .map_err(|_| AdminError::BadStage(n.to_string()))?,
                    ),
                    None => {
                        return Ok(usage("`grant` takes at most `stage=N` after the principal"));
                    }
                },
                _ => return Ok(usage("`grant` takes at most `stage=N` after the principal")),
            };
            let grant = Grant {
                record: record.to_string(),
                kind: kind.to_string(),
                principal: principal.to_string(),
                stage,
            };
            Ok(use_cases.grant_authority(&actor, &grant).await?.render())
        }
        ("revoke", [id, reason @ ..]) if !reason.is_empty() => {
            let Ok(id) = id.trim_start_matches('#').parse::<i64>() else {
                return Ok(usage(
                    "`revoke` needs the authority's number, as `show` lists it",
                ));
            };
            Ok(use_cases
                .revoke_authority(&actor, id, &reason.join(" "))
                .await?
                .render())
        }
        ("channel", [id, channel]) => {
            let Ok(id) = id.trim_start_matches('#').parse::<i64>() else {
                return Ok(usage(
                    "`channel` needs the authority's number, as `show` lists it",
                ));
            };
            Ok(use_cases
                .name_approval_channel(&actor, id, channel)
                .await?
                .render())
        }
        ("channel", _) => Ok(usage(
            "`channel` needs an authority number and a channel id (or `none`)",
        )),
        ("show", _) => Ok(usage("`show` takes one record")),
        ("grant", _) => Ok(usage("`grant` needs a record, a kind and a principal")),
        ("revoke", _) => Ok(usage("`revoke` needs an authority number and a reason")),
        _ => Ok(AUTHORITY_USAGE.into()),
    }
}

pub const SENSITIVITY_USAGE: &str = "Usage: `admin sensitivity <record> <LOW|MEDIUM|HIGH|CRITICAL> <reason>`, \
e.g. `admin sensitivity payroll-db HIGH holds salary data`";

/// The reply to `admin sensitivity <record> <LEVEL> <reason…>`. Too few words is a refusal (not
/// a usage hint), so the card says nothing changed.
pub async fn sensitivity_reply(
    state: &BotState,
    admin: &User,
    args: &[String],
) -> Result<String, AdminError> {
    let use_cases = &state.admin;
    match args {
        [record, level, reason @ ..] => Ok(use_cases
            .set_sensitivity(
                &Actor::User(Box::new(admin.clone())),
                record,
                level,
                &reason.join(" "),
            )
            .await?
            .render()),
        _ => Err(AdminError::Usage(SENSITIVITY_USAGE)),
    }
}

/// The reply to `admin role <args…>`.
pub async fn role_reply(
    state: &BotState,
    admin: &User,
    args: &[String],
) -> Result<String, AdminError> {
    let [who, role] = args else {
        return Ok(ROLE_USAGE.into());
    };
    let use_cases = &state.admin;
    Ok(use_cases
        .set_role(&Actor::User(Box::new(admin.clone())), who, role)
        .await?
        .render())
}

/// The reply to `admin totp-invite <who>`: whether it went through, and what to tell the admin.
/// Nothing secret is handed out: the person redeems it on their own signed-in page.
pub async fn totp_invite_reply(
    state: &BotState,
    admin: &User,
    who: &str,
) -> Result<(bool, String), crate::error::ApiError> {
    let use_cases = &state.admin;
    let person = match use_cases.find_user(who).await {
        Ok(person) => person,
        Err(AdminError::Store(e)) => return Err(e.into()),
        Err(refusal) => return Ok((false, refusal.to_string())),
    };
    match state
        .otp
        .invite_totp(&Actor::User(Box::new(admin.clone())), person.id)
        .await
    {
        Ok(invitation) => Ok((
            true,
            format!(
                "{} may set up an authenticator app once, on their retrieval page, until {}. They were \
                 told in their chat with me.",
                person.display_name,
                invitation.expires_at.to_reader_text()
            ),
        )),
        Err(crate::otp::OtpError::Store(e)) => Err(e.into()),
        Err(e @ crate::otp::OtpError::Crypto(_)) => Err(crate::error::ApiError::internal(e)),
        Err(refusal) => Ok((false, refusal.to_string())),
    }
}

fn usage(what: &str) -> String {
    format!("{what}.\n\n{AUTHORITY_USAGE}")
}
