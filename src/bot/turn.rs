//! One turn: what the bot does with a verified activity. Redeliveries are recognised and dropped,
//! the sender and the conversation are remembered (for proactive messages later), then the
//! activity is dispatched: typed commands, card actions, installs.

use super::actions::{self, CardAction};
use super::activity::{Activity, OutgoingActivity};
use super::admin;
use super::auth::ChannelIdentity;
use super::commands::{self, AdminCommand, Command, ParseError};
use super::connector::ConversationTarget;
use super::render;
use crate::app::AppState;
use crate::domain::{RequestStatus, Role, Timestamp};
use crate::error::ApiError;
use crate::governance::admin::AdminError;
use crate::governance::lifecycle::{LifecycleError, Submission};
use crate::governance::policies;
use crate::store::{ConversationRef, NewAuditEvent, NewUser, User};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tokio::sync::OnceCell;

pub enum TurnOutcome {
    /// Answer the HTTP request with 200 and no body.
    Ack,
    /// Answer with an invoke response.
    Invoke { status: u16, body: Option<Value> },
}

/// What the bot says back to a message or card action.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    Text(String),
    /// An Adaptive Card: the invoke response to a card action (it replaces the clicked card).
    Card(Value),
}

pub async fn handle(
    state: &AppState,
    activity: &Activity,
    identity: &ChannelIdentity,
) -> Result<TurnOutcome, ApiError> {
    let now = state.clock.now();
    if let Some(id) = activity.id.as_deref()
        && !state
            .store
            .mark_activity_processed(&activity.conversation.id, id, now)
            .await?
    {
        tracing::info!(kind = %activity.kind, "redelivered activity ignored");
        return Ok(match activity.kind.as_str() {
            "invoke" => TurnOutcome::Invoke {
                status: 200,
                body: Some(invoke_message("Already done.")),
            },
            _ => TurnOutcome::Ack,
        });
    }
    let sender = remember_sender(state, activity, now).await?;
    remember_conversation(state, activity, &sender, identity, now).await?;

    match activity.kind.as_str() {
        "message" => {
            let reply = match activity.value.as_ref().filter(|v| v.is_object()) {
                Some(value) => match actions::from_submit(value) {
                    Ok(action) => on_card_action(state, &sender, action).await?,
                    Err(e) => {
                        Reply::Text(format!("That card button didn't make sense to me ({e})."))
                    }
                },
                None => {
                    on_text(state, &sender, activity.text.as_deref().unwrap_or_default()).await?
                }
            };
            send_reply(state, activity, reply).await;
            Ok(TurnOutcome::Ack)
        }
        "invoke" if activity.name.as_deref() == Some("adaptiveCard/action") => {
            let value = activity.value.clone().unwrap_or(Value::Null);
            match actions::from_execute(&value) {
                Ok(action) => {
                    let body = match on_card_action(state, &sender, action).await? {
                        Reply::Text(text) => invoke_message(&text),
                        Reply::Card(card) => json!({
                            "statusCode": 200,
                            "type": crate::bot::activity::ADAPTIVE_CARD_CONTENT_TYPE,
                            "value": card,
                        }),
                    };
                    Ok(TurnOutcome::Invoke {
                        status: 200,
                        body: Some(body),
                    })
                }
                Err(e) => Ok(TurnOutcome::Invoke {
                    status: 200,
                    body: Some(json!({
                        "statusCode": 400,
                        "type": "application/vnd.microsoft.error",
                        "value": {"code": "BadRequest", "message": e.to_string()},
                    })),
                }),
            }
        }
        // The protocol's answer for invokes a bot does not implement.
        "invoke" => Ok(TurnOutcome::Invoke {
            status: 501,
            body: None,
        }),
        "conversationUpdate" => {
            let bot_added = activity
                .members_added
                .as_ref()
                .is_some_and(|m| m.iter().any(|member| member.id == activity.recipient.id));
            if bot_added {
                state
                    .store
                    .append_audit(
                        &NewAuditEvent::new(actor(sender.user().await?), "BOT_INSTALLED", now)
                            .detail(json!({
                                "conversation_type": activity.conversation_type(),
                            })),
                    )
                    .await?;
                let target = target(activity);
                if let Err(e) = state
                    .bot
                    .connector
                    .send(&target, &OutgoingActivity::text(WELCOME))
                    .await
                {
                    tracing::warn!(error = %e, "welcome message not delivered");
                }
            }
            Ok(TurnOutcome::Ack)
        }
        "installationUpdate" => {
            let action = activity.action.as_deref().unwrap_or_default();
            let audit = if action.starts_with("remove") {
                "BOT_UNINSTALLED"
            } else {
                "BOT_INSTALL_UPDATED"
            };
            state
                .store
                .append_audit(
                    &NewAuditEvent::new(actor(sender.user().await?), audit, now)
                        .detail(json!({ "action": action })),
                )
                .await?;
            Ok(TurnOutcome::Ack)
        }
        _ => Ok(TurnOutcome::Ack),
    }
}

fn invoke_message(text: &str) -> Value {
    json!({"statusCode": 200, "type": "application/vnd.microsoft.activity.message", "value": text})
}

fn actor(user: Option<&User>) -> String {
    user.map_or_else(|| "teams:unknown".to_string(), |u| format!("user:{}", u.id))
}

fn target(activity: &Activity) -> ConversationTarget {
    ConversationTarget {
        service_url: activity.service_url.clone(),
        conversation_id: activity.conversation.id.clone(),
    }
}

/// The person behind a turn. Their row is read only when something needs it (`help` doesn't).
pub struct Sender<'a> {
    state: &'a AppState,
    aad_object_id: Option<String>,
    user: OnceCell<Option<User>>,
}

impl<'a> Sender<'a> {
    /// A sender whose row is already at hand.
    fn known(state: &'a AppState, user: &User) -> Sender<'a> {
        Sender {
            state,
            aad_object_id: Some(user.aad_object_id.clone()),
            user: OnceCell::new_with(Some(Some(user.clone()))),
        }
    }

    /// The stored user, if the activity named one (Entra object id).
    pub async fn user(&self) -> Result<Option<&User>, ApiError> {
        let user = self
            .user
            .get_or_try_init(|| async {
                match &self.aad_object_id {
                    Some(aad) => self.state.store.user_by_aad_object_id(aad).await,
                    None => Ok(None),
                }
            })
            .await?;
        Ok(user.as_ref())
    }
}

/// People are keyed by their Entra object id; a newcomer starts as a requester. An unchanged
/// profile seen moments ago is not written again.
async fn remember_sender<'a>(
    state: &'a AppState,
    activity: &Activity,
    now: Timestamp,
) -> Result<Sender<'a>, ApiError> {
    let Some(aad) = activity
        .from
        .aad_object_id
        .as_deref()
        .filter(|a| !a.is_empty())
    else {
        return Ok(Sender {
            state,
            aad_object_id: None,
            user: OnceCell::new_with(Some(None)),
        });
    };
    let key = format!("user:{aad}");
    let fingerprint = RecentWrites::fingerprint(&(
        aad,
        activity.tenant_id(),
        &activity.from.id,
        &activity.from.name,
    ));
    if state.bot.recent.unchanged(&key, fingerprint) {
        return Ok(Sender {
            state,
            aad_object_id: Some(aad.to_string()),
            user: OnceCell::new(),
        });
    }
    let user = state
        .store
        .upsert_user(
            &NewUser {
                aad_object_id: aad.to_string(),
                tenant_id: activity.tenant_id().map(String::from),
                teams_user_id: Some(activity.from.id.clone()),
                upn: None,
                email: None,
                display_name: activity
                    .from
                    .name
                    .clone()
                    .unwrap_or_else(|| "Teams user".into()),
                initial_role: Role::Requester,
            },
            now,
        )
        .await?;
    state.bot.recent.remember(key, fingerprint);
    Ok(Sender {
        state,
        aad_object_id: Some(aad.to_string()),
        user: OnceCell::new_with(Some(Some(user))),
    })
}

/// Keeps the conversation's address. The service URL here came with a verified activity (or a
/// loopback one in dev mode) — the only place outbound calls ever take one from.
async fn remember_conversation(
    state: &AppState,
    activity: &Activity,
    sender: &Sender<'_>,
    identity: &ChannelIdentity,
    now: Timestamp,
) -> Result<(), ApiError> {
    let personal = activity.conversation_type() == "personal";
    let key = format!("conversation:{}", activity.conversation.id);
    let fingerprint = RecentWrites::fingerprint(&(
        activity.conversation_type(),
        &activity.channel_id,
        &activity.service_url,
        activity.tenant_id(),
        &activity.recipient.id,
        personal.then_some((&activity.from.aad_object_id, &activity.from.id)),
        activity.team_id(),
        identity.issuer_kind,
    ));
    if state.bot.recent.unchanged(&key, fingerprint) {
        return Ok(());
    }
    let user = if personal { sender.user().await? } else { None };
    let reference = ConversationRef {
        conversation_id: activity.conversation.id.clone(),
        conversation_type: activity.conversation_type().to_string(),
        channel_id: activity.channel_id.clone(),
        service_url: activity.service_url.clone(),
        tenant_id: activity.tenant_id().map(String::from),
        bot_id: activity.recipient.id.clone(),
        user_id: if personal { user.map(|u| u.id) } else { None },
        aad_object_id: if personal {
            activity.from.aad_object_id.clone()
        } else {
            None
        },
        teams_user_id: if personal {
            Some(activity.from.id.clone())
        } else {
            None
        },
        team_id: activity.team_id().map(String::from),
        reference: sqlx::types::Json(json!({
            "bot": activity.recipient,
            "conversation": activity.conversation,
            "channelId": activity.channel_id,
            "serviceUrl": activity.service_url,
            "verifiedBy": identity.issuer_kind,
        })),
        updated_at: now,
    };
    state.store.upsert_conversation(&reference).await?;
    state.bot.recent.remember(key, fingerprint);
    Ok(())
}

async fn send_reply(state: &AppState, activity: &Activity, reply: Reply) {
    let outgoing = match reply {
        Reply::Text(text) => OutgoingActivity::text(text),
        Reply::Card(card) => OutgoingActivity::card("Passkey", card),
    }
    .addressed_as_reply_to(activity);
    let reply_to = activity.id.as_deref().unwrap_or_default();
    if let Err(e) = state
        .bot
        .connector
        .reply(&target(activity), reply_to, &outgoing)
        .await
    {
        tracing::warn!(error = %e, "reply not delivered");
    }
}

pub const WELCOME: &str = "Hi, I'm **Passkey**. I get you time-limited access to credentials in the \
Keeper vault, with the right people's approval.\n\nTry `request db-prod 2h because INC-4411`, \
`records`, or `help`.";

pub fn help_text() -> String {
    // Placeholders are upper-case words, not <angle brackets>: some clients escape those twice.
    [
        "**Passkey commands**",
        "- `request RECORD [for DURATION] [because REASON]` — ask for access, e.g. `request db-prod 2h because INC-4411`",
        "- `records [SEARCH]` — records you can request",
        "- `my requests` — your requests and leases",
        "- `pending` — requests waiting for your approval",
        "- `approve ID [COMMENT]`, `deny ID REASON`",
        "- `release ID` — hand access back early",
        "- `extend ID DURATION` — ask for more time",
        "- `admin health | sync | triage | audit verify | authority … | role … | revoke ID REASON`",
        "",
        "Durations: `30m`, `2h`, `1d`, `90 minutes`.",
    ]
    .join("\n")
}

async fn on_text(state: &AppState, sender: &Sender<'_>, text: &str) -> Result<Reply, ApiError> {
    let command = match commands::parse(text) {
        Ok(c) => c,
        Err(ParseError::Empty) => return Ok(Reply::Text(help_text())),
        Err(e @ ParseError::Unknown { .. }) => {
            return Ok(Reply::Text(format!("{e}\n\n{}", help_text())));
        }
        Err(e) => return Ok(Reply::Text(e.to_string())),
    };
    Ok(match command {
        Command::Help { .. } => Reply::Text(help_text()),
        Command::Records { search } => {
            Reply::Text(records_text(state, sender.user().await?, search.as_deref()).await?)
        }
        Command::Admin(admin) => Reply::Text(admin_text(state, sender.user().await?, admin).await?),
        Command::Request {
            record,
            duration,
            reason,
        } => {
            lifecycle_reply(
                state,
                sender,
                Call::Submit {
                    record,
                    duration_secs: duration.map(|d| d.whole_seconds()),
                    reason,
                    ticket: None,
                },
            )
            .await?
        }
        Command::MyRequests => Reply::Text(my_requests_text(state, sender.user().await?).await?),
        Command::Pending => Reply::Text(pending_text(state, sender.user().await?).await?),
        Command::Approve {
            request_id,
            comment,
        } => lifecycle_reply(state, sender, Call::Approve(request_id, comment)).await?,
        Command::Deny { request_id, reason } => {
            lifecycle_reply(state, sender, Call::Deny(request_id, Some(reason))).await?
        }
        Command::Release { request_id } => {
            lifecycle_reply(state, sender, Call::Release(request_id)).await?
        }
        Command::Extend {
            request_id,
            duration,
        } => {
            lifecycle_reply(
                state,
                sender,
                Call::Extend(request_id, duration.whole_seconds()),
            )
            .await?
        }
    })
}

/// A lifecycle use case as the bot asks for it.
enum Call {
    Submit {
        record: String,
        duration_secs: Option<i64>,
        reason: Option<String>,
        ticket: Option<String>,
    },
    Approve(i64, Option<String>),
    Deny(i64, Option<String>),
    Release(i64),
    Extend(i64, i64),
    Triage(i64, bool, String),
    Revoke(i64, String),
}

/// A ticket reference in a reason (`INC-4411`, `CHG-12`): upper-case letters, a dash, digits.
fn ticket_in(reason: &str) -> Option<String> {
    reason
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
        .find(|w| {
            w.split_once('-').is_some_and(|(a, b)| {
                !a.is_empty()
                    && a.chars().all(|c| c.is_ascii_uppercase())
                    && !b.is_empty()
                    && b.chars().all(|c| c.is_ascii_digit())
            })
        })
        .map(String::from)
}

/// Runs a use case for the sender, delivers its notices to the others, and answers the sender.
async fn lifecycle_reply(
    state: &AppState,
    sender: &Sender<'_>,
    call: Call,
) -> Result<Reply, ApiError> {
    let Some(user) = sender.user().await? else {
        return Ok(Reply::Text(NO_IDENTITY.into()));
    };
    Ok(match run_call(state, user, call).await? {
        Ok(change) => Reply::Text(render::change_text(
            &change,
            &state.settings.public_base_url(),
        )),
        Err(refusal) => Reply::Text(render::refusal_text(&refusal)),
    })
}

const NO_IDENTITY: &str =
    "I can't tell who you are (no Entra object id on your message), so I can't act on requests.";

/// Runs a use case for `user`; on success delivers its notices to the others and updates the
/// copies of cards about the request. A refusal is the inner error; a database failure the outer.
async fn run_call(
    state: &AppState,
    user: &User,
    call: Call,
) -> Result<Result<crate::governance::lifecycle::Change, LifecycleError>, ApiError> {
    let lc = &state.lifecycle;
    let result = match call {
        Call::Submit {
            record,
            duration_secs,
            reason,
            ticket,
        } => {
            let Some(reason) = reason.filter(|r| !r.trim().is_empty()) else {
                return Ok(Err(LifecycleError::BadInput(format!(
                    "Say why you need it, e.g. `request {record} 2h because INC-4411 failover`."
                ))));
            };
            // `because break-glass: …` asks for emergency access (the policy decides who may).
            let lowered = reason.trim_start().to_ascii_lowercase();
            let break_glass =
                lowered.starts_with("break-glass") || lowered.starts_with("breakglass");
            let ticket = ticket.or_else(|| ticket_in(&reason));
            lc.submit(
                user,
                &Submission {
                    record,
                    duration_secs,
                    justification: reason,
                    ticket_id: ticket,
                    break_glass,
                },
            )
            .await
        }
        Call::Approve(id, comment) => lc.approve(user, id, comment.as_deref()).await,
        Call::Deny(id, comment) => lc.deny(user, id, comment.as_deref()).await,
        Call::Release(id) => lc.release(user, id).await,
        Call::Extend(id, secs) => lc.extend(user, id, secs).await,
        Call::Triage(id, approve, reason) => lc.triage(user, id, approve, &reason).await,
        Call::Revoke(id, reason) => lc.revoke(user, id, &reason).await,
    };
    match result {
        Ok(change) => {
            // The sender reads the reply; everyone else is told through the notifier.
            let others: Vec<_> = change
                .notices
                .iter()
                .filter(|n| n.user_id != user.id)
                .cloned()
                .collect();
            state.notifier.deliver(&others).await;
            // Delivering a status notice already updates the request's cards; otherwise do it here.
            let updated = others.iter().any(|n| {
                n.request_id == change.request.id
                    && n.kind == crate::governance::lifecycle::NoticeKind::StatusChanged
            });
            if !updated {
                state.notifier.request_changed(change.request.id).await;
            }
            Ok(Ok(change))
        }
        Err(LifecycleError::Store(e)) => Err(e.into()),
        Err(refusal) => Ok(Err(refusal)),
    }
}

/// A card decision (Approve / Deny tapped on an approval card): the answer replaces the tapped
/// card — the decided card, or, for a click that came after the decision, the decided card with
/// "already decided by X at T". Never an error card and never a second decision.
async fn card_decision(
    state: &AppState,
    sender: &Sender<'_>,
    request_id: i64,
    call: Call,
) -> Result<Reply, ApiError> {
    let Some(user) = sender.user().await? else {
        return Ok(Reply::Text(NO_IDENTITY.into()));
    };
    let stale = match run_call(state, user, call).await? {
        Ok(_) => false,
        Err(LifecycleError::AlreadyDecided { .. }) => true,
        Err(refusal) => return Ok(Reply::Text(render::refusal_text(&refusal))),
    };
    card_view(state, user, request_id, stale).await
}

/// The card a person sees for a request right now: the approval card (buttons only for someone
/// who has not decided and is not the requester; the policy still decides on the tap), or the
/// decided card.
async fn card_view(
    state: &AppState,
    user: &User,
    request_id: i64,
    stale: bool,
) -> Result<Reply, ApiError> {
    let unknown = || Ok(Reply::Text(format!("There is no request #{request_id}.")));
    let Some(request) = state.store.request_by_id(request_id).await? else {
        return unknown();
    };
    let Some(record) = state.store.record_by_id(request.record_id).await? else {
        return unknown();
    };
    if !matches!(
        request.status,
        RequestStatus::Pending | RequestStatus::RenewalPending
    ) {
        return super::notify::decided_card(state.store.as_ref(), &request, &record, stale)
            .await
            .map(Reply::Card)
            .map_err(|e| ApiError::internal(std::io::Error::other(e)));
    }
    let Some(requester) = state.store.user_by_id(request.requester_id).await? else {
        return unknown();
    };
    let folder = match record.folder_id {
        Some(id) => state.store.folder_by_id(id).await?.map(|f| f.name),
        None => None,
    };
    let decided_already = state
        .store
        .approvals_for_request(request_id)
        .await?
        .iter()
        .any(|a| a.approver_id == user.id);
    let may_decide = user.id != request.requester_id && !decided_already;
    crate::cards::render_approval(
        &crate::cards::ApprovalCard::new(&request, &record, &requester, folder.as_deref(), &[])
            .decidable(may_decide),
    )
    .map(Reply::Card)
    .map_err(ApiError::internal)
}

async fn my_requests_text(state: &AppState, user: Option<&User>) -> Result<String, ApiError> {
    let Some(user) = user else {
        return Ok("I can't tell who you are, so I can't list your requests.".into());
    };
    let requests = state.store.requests_for_requester(user.id, 10).await?;
    if requests.is_empty() {
        return Ok(
            "You have no requests yet. Try `request db-staging 1h because INC-4411`.".into(),
        );
    }
    let mut lines = vec!["**Your requests** (latest first)".to_string()];
    for r in &requests {
        let title = state
            .store
            .record_by_id(r.record_id)
            .await?
            .map(|rec| rec.title)
            .unwrap_or_default();
        lines.push(format!("- {}", render::request_line(r, &title)));
    }
    Ok(lines.join("\n"))
}

/// Requests waiting in PENDING that this person could approve (the policy decides on the tap).
async fn pending_text(state: &AppState, user: Option<&User>) -> Result<String, ApiError> {
    let Some(user) = user else {
        return Ok("I can't tell who you are, so I can't list approvals.".into());
    };
    let waiting = state
        .store
        .requests_in_status(
            &[RequestStatus::Pending, RequestStatus::RenewalPending],
            200,
        )
        .await?;
    let mut lines = Vec::new();
    for r in waiting.iter().filter(|r| r.requester_id != user.id) {
        let Some(record) = state.store.record_by_id(r.record_id).await? else {
            continue;
        };
        let approvers = match state.store.governed_resource_for_record(record.id).await? {
            Some(resource) => {
                state
                    .store
                    .active_authorities(resource.id, state.clock.now())
                    .await?
            }
            None => vec![],
        };
        let named = approvers.iter().any(|a| match a.principal_type {
            crate::domain::PrincipalType::User => {
                a.principal.eq_ignore_ascii_case(&user.aad_object_id)
            }
            crate::domain::PrincipalType::Email => [user.email.as_deref(), user.upn.as_deref()]
                .into_iter()
                .flatten()
                .any(|e| e.eq_ignore_ascii_case(&a.principal)),
            crate::domain::PrincipalType::Role => a
                .principal
                .parse::<Role>()
                .is_ok_and(|role| role == user.role),
            // Group membership is checked when the approver taps; list the request to be safe.
            crate::domain::PrincipalType::Group => true,
        });
        if named {
            lines.push(format!(
                "- {} (`approve {}` / `deny {} REASON`)",
                render::request_line(r, &record.title),
                r.id,
                r.id
            ));
        }
    }
    if lines.is_empty() {
        return Ok("Nothing is waiting for your approval.".into());
    }
    lines.insert(
        0,
        format!("**Waiting for your approval** ({})", lines.len()),
    );
    Ok(lines.join("\n"))
}

async fn on_card_action(
    state: &AppState,
    sender: &Sender<'_>,
    action: CardAction,
) -> Result<Reply, ApiError> {
    let call = match action {
        CardAction::SubmitRequest {
            record,
            duration,
            justification,
            ticket,
        } => {
            let duration_secs = match duration.as_deref().map(str::trim).filter(|d| !d.is_empty()) {
                Some(text) => match commands::parse_duration(text) {
                    Ok(d) => Some(d.whole_seconds()),
                    Err(e) => return Ok(Reply::Text(format!("That duration didn't work: {e}"))),
                },
                None => None,
            };
            Call::Submit {
                record,
                duration_secs,
                reason: justification,
                ticket,
            }
        }
        CardAction::Approve {
            request_id,
            comment,
        } => {
            let call = Call::Approve(request_id, comment);
            return card_decision(state, sender, request_id, call).await;
        }
        CardAction::Deny {
            request_id,
            comment,
        } => {
            let call = Call::Deny(request_id, comment);
            return card_decision(state, sender, request_id, call).await;
        }
        CardAction::Release { request_id } => Call::Release(request_id),
        CardAction::Extend {
            request_id,
            duration,
        } => match commands::parse_duration(&duration) {
            Ok(d) => Call::Extend(request_id, d.whole_seconds()),
            Err(e) => return Ok(Reply::Text(format!("That duration didn't work: {e}"))),
        },
        CardAction::Refresh {
            request_id: Some(id),
            ..
        } => {
            let Some(user) = sender.user().await? else {
                return Ok(Reply::Text(NO_IDENTITY.into()));
            };
            return card_view(state, user, id, false).await;
        }
        CardAction::Refresh {
            request_id: None, ..
        } => {
            return Ok(Reply::Text(
                my_requests_text(state, sender.user().await?).await?,
            ));
        }
    };
    lifecycle_reply(state, sender, call).await
}

/// Records the person may request: those in vault folders their effective permissions cover
/// (their own ACL entries, their Entra groups; admins: every folder).
async fn records_text(
    state: &AppState,
    user: Option<&User>,
    search: Option<&str>,
) -> Result<String, ApiError> {
    let Some(user) = user else {
        return Ok("I can't tell who you are (no Entra object id on your message), so I can't list records.".into());
    };
    let permissions = state.permissions.effective(user).await?;
    let degraded_note = if permissions.degraded {
        "\n\n_I couldn't check your group memberships just now, so records shared with your groups may be missing._"
    } else {
        ""
    };
    let needle = search.map(str::to_ascii_lowercase);
    let records: Vec<_> = state
        .store
        .list_records()
        .await?
        .into_iter()
        .filter(|r| r.folder_id.is_some_and(|f| permissions.may_request(f)))
        .filter(|r| {
            needle
                .as_ref()
                .is_none_or(|n| r.title.to_ascii_lowercase().contains(n))
        })
        .collect();
    if records.is_empty() {
        let none = match search {
            Some(s) => format!("No records you can request match “{s}”."),
            None => "There are no records you can request yet.".into(),
        };
        return Ok(format!("{none}{degraded_note}"));
    }
    let mut lines = vec![format!("**Records you can request** ({})", records.len())];
    lines.extend(
        records
            .iter()
            .take(25)
            .map(|r| format!("- `{}` — {} ({})", r.title, r.record_type, r.sensitivity)),
    );
    if records.len() > 25 {
        lines.push(format!(
            "…and {} more: narrow it with `records <search>`.",
            records.len() - 25
        ));
    }
    Ok(format!("{}{degraded_note}", lines.join("\n")))
}

async fn admin_text(
    state: &AppState,
    user: Option<&User>,
    command: AdminCommand,
) -> Result<String, ApiError> {
    let Some(admin) = user.filter(|u| u.role == Role::Admin) else {
        // A refused attempt is recorded (who, which command), and changes nothing else.
        state
            .store
            .append_audit(
                &NewAuditEvent::new(
                    actor(user),
                    "ACCESS_DENIED_INSUFFICIENT_PERMISSION",
                    state.clock.now(),
                )
                .detail(json!({ "command": format!("admin {}", admin_name(&command)) })),
            )
            .await?;
        return Ok("Admin commands are for Passkey admins.".into());
    };
    Ok(match command {
        AdminCommand::Authority { args } => {
            admin_reply(admin::authority_reply(state, admin, &args).await)?
        }
        AdminCommand::Role { args } => admin_reply(admin::role_reply(state, admin, &args).await)?,
        AdminCommand::Health => {
            let db = state.store.ping().await.is_ok();
            let migrations = state
                .store
                .migration_state()
                .await
                .map(|m| m.is_current())
                .unwrap_or(false);
            let mut text = format!(
                "**Health**\n- database ({}): {}\n- migrations: {}",
                state.settings.database_label(),
                if db { "reachable" } else { "UNREACHABLE" },
                if migrations { "current" } else { "NOT CURRENT" },
            );
            let runs = state.store.last_job_runs().await.unwrap_or_default();
            if runs.is_empty() {
                text.push_str("\n- jobs: none has run yet");
            }
            for run in runs {
                text.push_str(&format!(
                    "\n- job `{}`: {} at {} {}",
                    run.job_name,
                    if run.ok { "ok" } else { "FAILED" },
                    run.finished_at.to_fixed_text(),
                    match &run.error {
                        Some(e) => e.clone(),
                        None => run.counts.0.to_string(),
                    }
                ));
            }
            text
        }
        AdminCommand::Sync => {
            let actor = format!("user:{}", admin.id);
            match crate::governance::vault_sync::sync_vault(
                state.vault_reader(),
                state.store.as_ref(),
                state.clock.now(),
                &actor,
                &|_, _| {},
            )
            .await
            {
                Ok(report) => report.render(),
                Err(crate::governance::vault_sync::SyncError::Vault(e)) => {
                    format!("The vault sync failed: {}", e.message)
                }
                Err(crate::governance::vault_sync::SyncError::Store(e)) => return Err(e.into()),
            }
        }
        AdminCommand::Replay { trace_id: Some(id) } => {
            match policies::replay_trace(state.store.as_ref(), &state.policy, id).await? {
                Some(report) => format!("```\n{}\n```", report.summary()),
                None => format!("There is no decision trace {id}."),
            }
        }
        AdminCommand::Replay { trace_id: None } => {
            let summary = policies::replay_all(state.store.as_ref(), &state.policy).await?;
            format!("```\n{}\n```", summary.render())
        }
        AdminCommand::Triage { decision: None } => triage_text(state).await?,
        AdminCommand::Triage { decision: Some(d) } => {
            return lifecycle_reply(
                state,
                &Sender::known(state, admin),
                Call::Triage(d.request_id, d.approve, d.reason),
            )
            .await
            .map(reply_text);
        }
        AdminCommand::Revoke { request_id, reason } => {
            return lifecycle_reply(
                state,
                &Sender::known(state, admin),
                Call::Revoke(request_id, reason),
            )
            .await
            .map(reply_text);
        }
        other => format!(
            "`admin {}` is not switched on in this build yet.",
            admin_name(&other)
        ),
    })
}

fn reply_text(reply: Reply) -> String {
    match reply {
        Reply::Text(t) => t,
        Reply::Card(card) => card.to_string(),
    }
}

/// The triage queue: requests waiting for an admin, oldest first.
async fn triage_text(state: &AppState) -> Result<String, ApiError> {
    let queue = state
        .lifecycle
        .triage_queue(25)
        .await
        .map_err(|e| match e {
            LifecycleError::Store(e) => ApiError::from(e),
            other => ApiError::internal(other),
        })?;
    if queue.is_empty() {
        return Ok("The triage queue is empty.".into());
    }
    let mut lines = vec![format!("**Triage queue** ({})", queue.len())];
    for r in &queue {
        let title = state
            .store
            .record_by_id(r.record_id)
            .await?
            .map(|rec| rec.title)
            .unwrap_or_default();
        lines.push(format!(
            "- {} — “{}” (`admin triage {} approve REASON` / `admin triage {} deny REASON`)",
            render::request_line(r, &title),
            r.justification,
            r.id,
            r.id
        ));
    }
    Ok(lines.join("\n"))
}

/// A refusal is the reply; a database failure is the turn's error.
fn admin_reply(result: Result<String, AdminError>) -> Result<String, ApiError> {
    match result {
        Ok(text) => Ok(text),
        Err(AdminError::Store(e)) => Err(e.into()),
        Err(refusal) => Ok(refusal.to_string()),
    }
}

fn admin_name(c: &AdminCommand) -> &'static str {
    match c {
        AdminCommand::Health => "health",
        AdminCommand::Sync => "sync",
        AdminCommand::Triage { .. } => "triage",
        AdminCommand::AuditVerify => "audit verify",
        AdminCommand::Authority { .. } => "authority",
        AdminCommand::Role { .. } => "role",
        AdminCommand::Revoke { .. } => "revoke",
        AdminCommand::Replay { .. } => "replay",
    }
}

/// Rows this instance wrote recently, by fingerprint, so an unchanged user or conversation is not
/// rewritten on every message (each write costs a database round trip). Per instance and
/// short-lived: at worst another instance writes the same row once more.
#[derive(Default)]
pub struct RecentWrites {
    seen: Mutex<HashMap<String, (u64, Instant)>>,
}

impl RecentWrites {
    const TTL: Duration = Duration::from_secs(10 * 60);
    const MAX_ENTRIES: usize = 50_000;

    pub fn fingerprint(value: &impl Hash) -> u64 {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        value.hash(&mut h);
        h.finish()
    }

    pub fn unchanged(&self, key: &str, fingerprint: u64) -> bool {
        let seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        seen.get(key)
            .is_some_and(|(f, at)| *f == fingerprint && at.elapsed() < Self::TTL)
    }

    pub fn remember(&self, key: String, fingerprint: u64) {
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        if seen.len() >= Self::MAX_ENTRIES {
            seen.clear();
        }
        seen.insert(key, (fingerprint, Instant::now()));
    }
}
