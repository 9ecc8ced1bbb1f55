//! One turn: what the bot does with a verified activity. The activity is claimed for the turn
//! (redeliveries of a finished one are recognised and dropped), the sender and the conversation
//! are remembered (for proactive messages later), then the activity is dispatched: typed
//! commands, card actions, installs.

use super::BotState;
use super::actions::{self, CardAction};
use super::activity::{Activity, OutgoingActivity};
use super::admin;
use super::auth::ChannelIdentity;
use super::commands::{self, AdminCommand, Command, ParseError};
use super::connector::{Connector, ConnectorError, ConversationTarget};
use super::notify::STATUS_CARD;
use super::render;
use super::views;
use crate::cards::Card;
use crate::domain::{RequestStatus, Role, Timestamp, Zone};
use crate::error::ApiError;
use crate::governance::admin::AdminError;
use crate::governance::conversations::TeamsPerson;
use crate::governance::events;
use crate::governance::identities::{self, AddressSource, DirectoryAnswer, GraphAddresses};
use crate::governance::lifecycle::{LifecycleError, Submission};
use crate::governance::permissions::DirectoryError;
use crate::governance::policies;
use crate::store::{ActivityClaim, ConversationRef, NewSentCard, TurnSender, User};
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
    /// An Adaptive Card: a message of its own, or the invoke response to a card action (it
    /// replaces the clicked card).
    Card(Card),
    /// What just happened to the requester's own request (`text`, with the policy's reasons) and
    /// its status card under it. The card is recorded, so every later change to the request
    /// updates it in place.
    Status {
        text: String,
        card: Card,
        request_id: i64,
        requester_id: i64,
    },
    /// The request form again after an input error: `text` says what was wrong (a message's
    /// text; the form says it too, for the invoke answer that replaces the tapped form).
    Form {
        text: String,
        card: Card,
    },
}

/// One turn, effectively once: the activity is claimed for this turn (renewed while it runs),
/// marked done only when the turn succeeded, and released when it failed, so Teams' redelivery of
/// a failed turn runs it again. A redelivery while the turn still runs is answered 503 (Teams
/// retries); one after it finished is acknowledged without running. A turn that ran its use case
/// and then failed is run again in full: the use cases find their work done and say so (see
/// "Reliability decisions" in docs/ARCHITECTURE.md).
pub async fn handle(
    state: &BotState,
    activity: &Activity,
    identity: &ChannelIdentity,
) -> Result<TurnOutcome, ApiError> {
    let Some(activity_id) = activity.id.as_deref() else {
        return run_for_reader(state, activity, identity).await;
    };
    let conversation = activity.conversation.id.as_str();
    let token = uuid::Uuid::new_v4().to_string();
    let lease = Duration::from_secs(state.settings.bot.turn_claim_secs);
    let claim = state
        .conversations
        .claim_turn(conversation, activity_id, &token, lease)
        .await?;
    match claim {
        ActivityClaim::Claimed => {}
        ActivityClaim::Done => {
            tracing::info!(kind = %activity.kind, "redelivered activity ignored");
            return Ok(match activity.kind.as_str() {
                "invoke" => TurnOutcome::Invoke {
                    status: 200,
                    body: Some(invoke_message("Already done.")),
                },
                _ => TurnOutcome::Ack,
            });
        }
        ActivityClaim::InProgress => {
            tracing::info!(kind = %activity.kind, "activity redelivered while its turn runs");
            return Err(ApiError::TryAgain(
                "this activity is being handled; try again shortly".into(),
            ));
        }
    }
    let outcome = {
        let turn = run_for_reader(state, activity, identity);
        tokio::pin!(turn);
        tokio::select! {
            biased;
            outcome = &mut turn => outcome,
            never = keep_claimed(state, conversation, activity_id, &token, lease) => match never {},
        }
    };
    match outcome {
        Ok(outcome) => {
            // The work and the reply are done and the turn answers 200, so Teams does not
            // redeliver; the done mark follows without holding the answer back.
            state
                .conversations
                .finish_turn(conversation, activity_id, &token);
            Ok(outcome)
        }
        Err(e) => {
            if let Err(release) = state
                .conversations
                .release_turn(conversation, activity_id, &token)
                .await
            {
                tracing::warn!(error = %release, "activity claim not released; it lapses");
            }
            Err(e)
        }
    }
}

/// Renews the turn's claim every third of its lease for as long as the turn runs (it is dropped
/// with the turn), so a slow turn is not taken over by a redelivery while it still works.
async fn keep_claimed(
    state: &BotState,
    conversation: &str,
    activity_id: &str,
    token: &str,
    lease: Duration,
) -> std::convert::Infallible {
    loop {
        tokio::time::sleep(lease / 3).await;
        match state
            .conversations
            .renew_turn(conversation, activity_id, token, lease)
            .await
        {
            Ok(true) => {}
            Ok(false) => tracing::warn!("activity claim lapsed while its turn ran"),
            Err(e) => tracing::warn!(error = %e, "activity claim not renewed"),
        }
    }
}

/// The turn in its sender's time zone (#18.6), so the times it shows are theirs: the zone their
/// client reports with this activity, else the one it last reported, else UTC. The sender's row
/// is read here, once, with their stored zone and whether notices wait for them.
async fn run_for_reader(
    state: &BotState,
    activity: &Activity,
    identity: &ChannelIdentity,
) -> Result<TurnOutcome, ApiError> {
    let known = read_sender(state, activity).await;
    let zone = match activity.client_zone() {
        Some(zone) => zone,
        None => known
            .as_ref()
            .and_then(Option::as_ref)
            .and_then(|sender| sender.time_zone.as_deref())
            .and_then(Zone::named)
            .unwrap_or_else(Zone::utc),
    };
    crate::domain::for_reader(zone, run(state, activity, identity, known)).await
}

/// The sender as stored: `Some(None)` when nobody is stored for them, `None` when the activity
/// names nobody or the read failed (times are then shown in UTC, and the row is read again when
/// the turn needs it, which fails the turn if the database still does).
async fn read_sender(state: &BotState, activity: &Activity) -> Option<Option<TurnSender>> {
    let aad = activity
        .from
        .aad_object_id
        .as_deref()
        .filter(|a| !a.is_empty())?;
    match state.conversations.turn_sender(aad).await {
        Ok(sender) => Some(sender),
        Err(e) => {
            tracing::warn!(error = %e, "sender not read; times shown in UTC");
            None
        }
    }
}

/// Keeps the zone the sender's client reports, the last one per person. An unchanged zone seen
/// moments ago is not written again; a failed write never fails the turn.
async fn remember_zone(state: &BotState, activity: &Activity, sender: &Sender<'_>) {
    let (Some(zone), Some(aad)) = (activity.client_zone(), sender.aad_object_id.as_deref()) else {
        return;
    };
    let key = format!("zone:{aad}");
    let fingerprint = RecentWrites::fingerprint(&zone.name());
    if state.bot.recent.unchanged(&key, fingerprint) {
        return;
    }
    let user = match sender.user().await {
        Ok(Some(user)) => user,
        Ok(None) => return,
        Err(e) => {
            tracing::warn!(error = %e, "time zone not kept");
            return;
        }
    };
    match state.conversations.remember_time_zone(user.id, &zone).await {
        Ok(()) => state.bot.recent.remember(key, fingerprint),
        Err(e) => tracing::warn!(error = %e, "time zone not kept"),
    }
}

/// The turn itself: remember who and where, then dispatch.
async fn run(
    state: &BotState,
    activity: &Activity,
    identity: &ChannelIdentity,
    known: Option<Option<TurnSender>>,
) -> Result<TurnOutcome, ApiError> {
    let now = state.clock.now();
    let mut sender = remember_sender(state, activity, known, now).await?;
    refresh_sender_addresses(state, activity, &mut sender).await?;
    remember_conversation(state, activity, &sender, identity, now).await?;
    remember_zone(state, activity, &sender).await;

    match activity.kind.as_str() {
        "message" => {
            if activity.is_personal() {
                deliver_waiting(state, activity, &sender).await?;
            }
            let value = activity.value.as_ref().filter(|v| v.is_object());
            let text = activity.text.as_deref().unwrap_or_default();
            let reply = if activity.is_personal() {
                on_message(state, &sender, value, text).await?
            } else {
                // Everyone in a group chat or channel reads the reply: only what is for everyone
                // is answered there.
                let public = match value {
                    Some(_) => None,
                    None => public_reply(text)?,
                };
                match public {
                    Some(reply) => reply,
                    None => answer_privately(state, &sender, value, text).await?,
                }
            };
            send_reply(state, activity, reply).await?;
            Ok(TurnOutcome::Ack)
        }
        "invoke" if activity.name.as_deref() == Some("adaptiveCard/action") => {
            let value = activity.value.clone().unwrap_or(Value::Null);
            match actions::from_execute(&value) {
                Ok(action) => {
                    let card = |card: Card| {
                        json!({
                            "statusCode": 200,
                            "type": crate::bot::activity::ADAPTIVE_CARD_CONTENT_TYPE,
                            "value": card,
                        })
                    };
                    let body = match on_card_action(state, &sender, action).await? {
                        Reply::Text(text) => invoke_message(&text),
                        Reply::Card(c) | Reply::Form { card: c, .. } => card(c),
                        // The tapped card becomes the status card; it is the message `replyToId`
                        // names. Only in a 1:1 chat: the invoke's answer is shown to the person who
                        // tapped alone, but an update in place would show a group everything.
                        Reply::Status {
                            card: c,
                            request_id,
                            requester_id,
                            ..
                        } => {
                            if let Some(tapped) = activity.reply_to_id.as_deref()
                                && activity.is_personal()
                            {
                                remember_status_card(
                                    state,
                                    &activity.conversation.id,
                                    tapped,
                                    request_id,
                                    requester_id,
                                )
                                .await;
                            }
                            if activity.is_personal() {
                                card(c)
                            } else {
                                card(group_status_card(state, request_id, requester_id, c).await?)
                            }
                        }
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
                events::bot_installed(
                    state.store.as_ref(),
                    actor(sender.user().await?),
                    activity.conversation_type(),
                    now,
                )
                .await?;
                let target = target(activity);
                // In a 1:1 chat an approver's welcome lists what waits for them.
                let user = match activity.is_personal() {
                    true => sender.user().await?,
                    false => None,
                };
                let welcome =
                    views::welcome_for(state, activity.from.name.as_deref(), user).await?;
                match state
                    .bot
                    .connector
                    .send(
                        &target,
                        &OutgoingActivity::card("Welcome to Passkey", welcome),
                    )
                    .await
                {
                    Ok(_) => {
                        if let Some(user) = user {
                            views::close_waiting(state, user, true).await?;
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "welcome message not delivered"),
                }
            }
            Ok(TurnOutcome::Ack)
        }
        "installationUpdate" => {
            let action = activity.action.as_deref().unwrap_or_default();
            events::bot_installation_changed(
                state.store.as_ref(),
                actor(sender.user().await?),
                action,
                now,
            )
            .await?;
            Ok(TurnOutcome::Ack)
        }
        _ => Ok(TurnOutcome::Ack),
    }
}

/// What waited for the sender because the bot could not reach them before (approval notices
/// sent while it had no chat with them): "2 requests wait for you", with Review buttons, in
/// this 1:1 chat before the answer. A send that fails leaves the notices waiting.
async fn deliver_waiting(
    state: &BotState,
    activity: &Activity,
    sender: &Sender<'_>,
) -> Result<(), ApiError> {
    if sender.notices_waiting == Some(false) {
        return Ok(());
    }
    let Some(user) = sender.user().await? else {
        return Ok(());
    };
    let Some(card) = views::waiting_for(state, user).await? else {
        return Ok(());
    };
    match state
        .bot
        .connector
        .send(
            &target(activity),
            &OutgoingActivity::card("Waiting for you", card),
        )
        .await
    {
        Ok(_) => views::close_waiting(state, user, true).await,
        Err(e) => {
            tracing::warn!(error = %e, "what waits for an approver was not delivered");
            Ok(())
        }
    }
}

/// A status card answered in a group chat or channel carries `refresh.userIds` with the
/// requester alone (as the approval card does): their client keeps their own view, with Release
/// and Extend; anyone else's refresh answers what they may see of the request. `card` is kept
/// when the requester has no Teams user id on record.
async fn group_status_card(
    state: &BotState,
    request_id: i64,
    requester_id: i64,
    card: Card,
) -> Result<Card, ApiError> {
    let Some(request) = state.store.request_by_id(request_id).await? else {
        return Ok(card);
    };
    let Some(record) = state.store.record_by_id(request.record_id).await? else {
        return Ok(card);
    };
    let Some(teams_id) = state
        .store
        .user_by_id(requester_id)
        .await?
        .and_then(|u| u.teams_user_id)
    else {
        return Ok(card);
    };
    views::request_status_in_group(
        state.store.as_ref(),
        &request,
        &record,
        &state.settings.public_base_url(),
        &teams_id,
    )
    .await
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
    state: &'a BotState,
    aad_object_id: Option<String>,
    user: OnceCell<Option<User>>,
    /// The activity being answered (`conversation/activity id`), for a use case that must
    /// recognise a redelivery of a command whose work an earlier attempt already did.
    origin: Option<String>,
    /// Whether notices waited for them when the turn read their row (`None`: not known).
    notices_waiting: Option<bool>,
}

impl<'a> Sender<'a> {
    /// A sender whose row is already at hand.
    fn known(state: &'a BotState, user: &User) -> Sender<'a> {
        Sender {
            state,
            aad_object_id: Some(user.aad_object_id.clone()),
            user: OnceCell::new_with(Some(Some(user.clone()))),
            origin: None,
            notices_waiting: None,
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
/// profile seen moments ago is not written again: the row the turn read (`known`) serves.
async fn remember_sender<'a>(
    state: &'a BotState,
    activity: &Activity,
    known: Option<Option<TurnSender>>,
    now: Timestamp,
) -> Result<Sender<'a>, ApiError> {
    let origin = activity
        .id
        .as_deref()
        .map(|id| format!("{}/{id}", activity.conversation.id));
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
            origin,
            notices_waiting: Some(false),
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
        let (user, notices_waiting) = match known {
            Some(Some(sender)) => (
                OnceCell::new_with(Some(Some(sender.user))),
                Some(sender.notices_waiting),
            ),
            Some(None) => (OnceCell::new_with(Some(None)), Some(false)),
            None => (OnceCell::new(), None),
        };
        return Ok(Sender {
            state,
            aad_object_id: Some(aad.to_string()),
            user,
            origin,
            notices_waiting,
        });
    }
    let user = state
        .conversations
        .remember_person(
            &TeamsPerson {
                aad_object_id: aad,
                tenant_id: activity.tenant_id(),
                teams_user_id: &activity.from.id,
                display_name: activity.from.name.as_deref(),
            },
            now,
        )
        .await?;
    state.bot.recent.remember(key, fingerprint);
    Ok(Sender {
        state,
        aad_object_id: Some(aad.to_string()),
        user: OnceCell::new_with(Some(Some(user))),
        origin,
        // A person seen for the first time may have notices waiting from before (an approver
        // the directory named): read when delivering.
        notices_waiting: match known {
            Some(Some(sender)) => Some(sender.notices_waiting),
            _ => None,
        },
    })
}

/// Asks the directory for the sender's mail and UPN when they are due (first contact, a day
/// later, or a while after a failed ask: `governance::identities`), so USER entries of folder
/// ACLs can match them. The refreshed row replaces the sender's, so this very turn is decided
/// with it. A failed lookup never fails the turn: the person keeps what they had.
async fn refresh_sender_addresses(
    state: &BotState,
    activity: &Activity,
    sender: &mut Sender<'_>,
) -> Result<(), ApiError> {
    let Some(user) = sender.user().await?.cloned() else {
        return Ok(());
    };
    let now = state.clock.now();
    if !identities::lookup_due(&user, now) {
        return Ok(());
    }
    let tenant = activity.tenant_id();
    // The people directory (Graph when `graph.enabled`; otherwise the demo people in dev, or
    // nobody) answers for the bot's home tenant only: Graph's token is from there.
    let graph = state
        .settings
        .bot
        .tenant_id
        .clone()
        .filter(|home| tenant.is_some_and(|t| t.eq_ignore_ascii_case(home)))
        .map(|tenant_id| GraphAddresses {
            directory: state.directory.clone(),
            tenant_id,
        });
    let connector = ConnectorAddresses {
        connector: state.bot.connector.as_ref(),
        target: target(activity),
        member_id: activity.from.id.clone(),
    };
    let mut sources: Vec<&dyn AddressSource> = Vec::new();
    if let Some(graph) = &graph {
        sources.push(graph);
    }
    if !connector.member_id.is_empty() {
        sources.push(&connector);
    }
    match identities::refresh_addresses(state.store.as_ref(), &user, tenant, &sources, now).await {
        Ok(updated) => sender.user = OnceCell::new_with(Some(Some(updated))),
        Err(e) => tracing::warn!(user_id = user.id, error = %e, "directory lookup not recorded"),
    }
    Ok(())
}

/// The Bot Connector's member lookup as an address source: the sender as a member of the
/// conversation their activity came from, asked at that activity's (verified) service URL.
struct ConnectorAddresses<'a> {
    connector: &'a dyn Connector,
    target: ConversationTarget,
    /// The sender's Teams user id (`29:…`).
    member_id: String,
}

#[async_trait::async_trait]
impl AddressSource for ConnectorAddresses<'_> {
    fn name(&self) -> &'static str {
        "teams-connector"
    }

    async fn lookup(
        &self,
        _aad_object_id: &str,
    ) -> Result<Option<DirectoryAnswer>, DirectoryError> {
        match self.connector.member(&self.target, &self.member_id).await {
            Ok(member) => Ok(Some(DirectoryAnswer {
                aad_object_id: member.aad_object_id.unwrap_or_default(),
                tenant_id: member.tenant_id,
                email: member.email,
                upn: member.user_principal_name,
            })),
            Err(ConnectorError::Unreachable { status: 404, .. }) => Ok(None),
            Err(
                ConnectorError::Unreachable { status, .. } | ConnectorError::Rejected { status },
            ) => Err(DirectoryError::Refused { status }),
            Err(e) => Err(DirectoryError::Unavailable(e.to_string())),
        }
    }
}

/// Keeps the conversation's address. The service URL here came with a verified activity (or a
/// loopback one in dev mode) — the only place outbound calls ever take one from.
async fn remember_conversation(
    state: &BotState,
    activity: &Activity,
    sender: &Sender<'_>,
    identity: &ChannelIdentity,
    now: Timestamp,
) -> Result<(), ApiError> {
    let personal = activity.is_personal();
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
    state
        .conversations
        .remember_conversation(&reference)
        .await?;
    state.bot.recent.remember(key, fingerprint);
    Ok(())
}

/// A message's answer, before it is addressed: the activity, and the request whose status card
/// it carries (to record for updates in place).
fn outgoing(reply: Reply) -> (OutgoingActivity, Option<(i64, i64)>) {
    match reply {
        Reply::Text(text) => (OutgoingActivity::text(text), None),
        Reply::Card(card) => (OutgoingActivity::card("Passkey", card), None),
        Reply::Form { text, card } => {
            let mut outgoing = OutgoingActivity::card("Passkey", card);
            outgoing.text = Some(text);
            (outgoing, None)
        }
        Reply::Status {
            text,
            card,
            request_id,
            requester_id,
        } => {
            let mut outgoing = OutgoingActivity::card(format!("Request #{request_id}"), card);
            outgoing.text = Some(text);
            outgoing.text_format = Some("markdown".into());
            (outgoing, Some((request_id, requester_id)))
        }
    }
}

/// Delivers a message's answer. A Connector that is down (still failing after its retries) fails
/// the turn with 503, so Teams redelivers and the person is answered then; a conversation the bot
/// cannot reach or a call the Connector refuses would fail again, so those are only logged.
async fn send_reply(state: &BotState, activity: &Activity, reply: Reply) -> Result<(), ApiError> {
    let (outgoing, status) = outgoing(reply);
    let outgoing = outgoing.addressed_as_reply_to(activity);
    let reply_to = activity.id.as_deref().unwrap_or_default();
    match state
        .bot
        .connector
        .reply(&target(activity), reply_to, &outgoing)
        .await
    {
        Ok(sent) => {
            if let Some((request_id, requester_id)) = status
                && activity.is_personal()
            {
                remember_status_card(
                    state,
                    &activity.conversation.id,
                    &sent.id,
                    request_id,
                    requester_id,
                )
                .await;
            }
        }
        Err(e @ (ConnectorError::Unavailable { .. } | ConnectorError::Token(_))) => {
            tracing::warn!(error = %e, "reply not delivered; Teams is asked to redeliver");
            return Err(ApiError::Unavailable(Some(Box::new(e))));
        }
        Err(e) => tracing::warn!(error = %e, "reply not delivered"),
    }
    Ok(())
}

/// Records a status card the requester can see, so later changes update it in place. A card
/// that cannot be recorded is only logged: the reply itself was delivered.
async fn remember_status_card(
    state: &BotState,
    conversation_id: &str,
    activity_id: &str,
    request_id: i64,
    requester_id: i64,
) {
    if activity_id.is_empty() {
        return;
    }
    let card = NewSentCard {
        request_id,
        recipient_user_id: Some(requester_id),
        conversation_id: conversation_id.to_string(),
        activity_id: activity_id.to_string(),
        card_kind: STATUS_CARD.into(),
        at: state.clock.now(),
    };
    if let Err(e) = state.conversations.record_card(&card).await {
        tracing::warn!(request_id, error = %e, "status card not recorded");
    }
}

/// A message in the sender's 1:1 chat: a card's Action.Submit data, or typed text.
async fn on_message(
    state: &BotState,
    sender: &Sender<'_>,
    value: Option<&Value>,
    text: &str,
) -> Result<Reply, ApiError> {
    match value {
        Some(value) => match actions::from_submit(value) {
            Ok(action) => on_card_action(state, sender, action).await,
            Err(e) => Ok(Reply::Text(format!(
                "That card button didn't make sense to me ({e})."
            ))),
        },
        None => on_text(state, sender, text).await,
    }
}

/// The answer to typed text in a group chat or channel when everyone there may read it: help
/// (without anyone's admin commands) and the parser's hints about text it did not understand.
/// Everything else is private (`None`) — admin commands, `pending`, `my requests`, `records`,
/// the request form, requests, and every command that names a request — as is any card data.
fn public_reply(text: &str) -> Result<Option<Reply>, ApiError> {
    Ok(match commands::parse(text) {
        Ok(Command::Help { .. }) | Err(ParseError::Empty) => Some(Reply::Card(views::help(None)?)),
        Err(ParseError::Usage {
            command: "request", ..
        }) if is_bare_request(text) => None,
        Err(e) => Some(Reply::Text(e.to_string())),
        Ok(_) => None,
    })
}

/// What a group is told about a private command typed there.
const SENT_PRIVATELY: &str =
    "Ask me in a personal chat: that answer is only for you, so I sent it to our personal chat.";
const NO_PERSONAL_CHAT: &str = "Ask me in a personal chat: that answer is only for you, and we have no personal chat yet. Open one with me (Passkey, in Teams chat) and ask there. I did nothing with this message.";
const NOT_DELIVERED_PRIVATELY: &str = "Ask me in a personal chat: that answer is only for you, and I could not deliver it to our personal chat just now. Look there with `my requests`.";

/// A private command typed (or a card submitted) in a group chat or channel. With a 1:1 chat
/// between the sender and the bot on record, it runs and its answer goes there; the group is
/// told only where to look, the same words whatever the command. Without one nothing runs: the
/// sender could not read the outcome, and the group must not.
async fn answer_privately(
    state: &BotState,
    sender: &Sender<'_>,
    value: Option<&Value>,
    text: &str,
) -> Result<Reply, ApiError> {
    let chat = match sender.aad_object_id.as_deref() {
        Some(aad) => state.store.personal_conversation(aad).await?,
        None => None,
    };
    let Some(chat) = chat else {
        return Ok(Reply::Text(NO_PERSONAL_CHAT.into()));
    };
    let answer = on_message(state, sender, value, text).await?;
    let (outgoing, status) = outgoing(answer);
    let target = ConversationTarget {
        service_url: chat.service_url,
        conversation_id: chat.conversation_id.clone(),
    };
    match state.bot.connector.send(&target, &outgoing).await {
        Ok(sent) => {
            if let Some((request_id, requester_id)) = status {
                remember_status_card(
                    state,
                    &chat.conversation_id,
                    &sent.id,
                    request_id,
                    requester_id,
                )
                .await;
            }
            Ok(Reply::Text(SENT_PRIVATELY.into()))
        }
        Err(e) => {
            tracing::warn!(error = %e, "private answer not delivered");
            Ok(Reply::Text(NOT_DELIVERED_PRIVATELY.into()))
        }
    }
}

async fn on_text(state: &BotState, sender: &Sender<'_>, text: &str) -> Result<Reply, ApiError> {
    let command = match commands::parse(text) {
        Ok(c) => c,
        Err(ParseError::Empty) => return Ok(Reply::Card(views::help(sender.user().await?)?)),
        // `request` alone opens the form.
        Err(ParseError::Usage {
            command: "request", ..
        }) if is_bare_request(text) => {
            return with_user(sender, |user| async move {
                Ok(Reply::Card(
                    views::request_form(state, user, None, None).await?,
                ))
            })
            .await;
        }
        Err(e) => return Ok(Reply::Text(e.to_string())),
    };
    Ok(match command {
        Command::Help { .. } => Reply::Card(views::help(sender.user().await?)?),
        Command::Records { search } => {
            return with_user(sender, |user| async move {
                Ok(Reply::Card(
                    views::records(state, user, search.as_deref()).await?,
                ))
            })
            .await;
        }
        Command::Admin(admin) => admin_reply_for(state, sender.user().await?, admin).await?,
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
        Command::MyRequests => {
            return with_user(sender, |user| async move {
                Ok(Reply::Card(views::my_requests(state, user).await?))
            })
            .await;
        }
        Command::Pending => {
            return with_user(sender, |user| async move {
                Ok(Reply::Card(views::pending(state, user).await?))
            })
            .await;
        }
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
        Command::Status { request_id } => {
            return with_user(sender, |user| async move {
                refresh(state, user, Some(request_id), Some("status")).await
            })
            .await;
        }
        Command::Extend {
            request_id,
            duration,
        } => {
            lifecycle_reply(
                state,
                sender,
                Call::Extend(request_id, duration.whole_seconds(), sender.origin.clone()),
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
    /// Request, seconds, and the activity that asked (see `Sender::origin`).
    Extend(i64, i64, Option<String>),
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
    state: &BotState,
    sender: &Sender<'_>,
    call: Call,
) -> Result<Reply, ApiError> {
    let Some(user) = sender.user().await? else {
        return Ok(Reply::Text(NO_IDENTITY.into()));
    };
    let base_url = state.settings.public_base_url();
    let answers = match &call {
        Call::Submit {
            record,
            duration_secs,
            reason,
            ticket,
        } => Some(views::Answers {
            record: record.clone(),
            duration_secs: *duration_secs,
            justification: reason.clone(),
            ticket: ticket.clone(),
        }),
        _ => None,
    };
    Ok(match run_call(state, user, call).await? {
        // The requester acting on their own request sees its status card too.
        Ok(change) if change.request.requester_id == user.id => Reply::Status {
            text: render::change_text(&change, &base_url),
            card: views::request_status(
                state.store.as_ref(),
                &change.request,
                &change.record,
                &base_url,
            )
            .await?,
            request_id: change.request.id,
            requester_id: user.id,
        },
        Ok(change) => Reply::Text(render::change_text_for_decider(&change)),
        // An input error on a request: the form again, filled in, nothing recorded.
        Err(LifecycleError::BadInput(problem)) if answers.is_some() => {
            let answers = answers.unwrap_or_default();
            Reply::Form {
                card: views::request_form_again(state, user, &answers, &problem).await?,
                text: problem,
            }
        }
        Err(refusal) => Reply::Text(render::refusal_text(&refusal)),
    })
}

/// Runs `f` for the sender's stored user, or says why it can't.
async fn with_user<'s, F, Fut>(sender: &'s Sender<'_>, f: F) -> Result<Reply, ApiError>
where
    F: FnOnce(&'s User) -> Fut,
    Fut: std::future::Future<Output = Result<Reply, ApiError>>,
{
    match sender.user().await? {
        Some(user) => f(user).await,
        None => Ok(Reply::Text(NO_IDENTITY.into())),
    }
}

/// `request` with nothing after it (mentions and case aside).
fn is_bare_request(text: &str) -> bool {
    commands::normalize(text).eq_ignore_ascii_case("request")
}

const NO_IDENTITY: &str =
    "I can't tell who you are (no Entra object id on your message), so I can't act on requests.";

/// Runs a use case for `user`; on success delivers its notices to the others and updates the
/// copies of cards about the request. A refusal is the inner error; a database failure the outer.
async fn run_call(
    state: &BotState,
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
        Call::Extend(id, secs, origin) => lc.extend_once(user, id, secs, origin.as_deref()).await,
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
    state: &BotState,
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

/// The card a person sees for a request right now, if they may see it at all
/// ([`crate::governance::lifecycle::Lifecycle::standing`]; anyone else is told it is not theirs):
/// the approval card (buttons only for someone who has not decided and is not the requester; the
/// policy still decides on the tap), or the decided card.
async fn card_view(
    state: &BotState,
    user: &User,
    request_id: i64,
    stale: bool,
) -> Result<Reply, ApiError> {
    match visible(state, user, request_id).await? {
        Ok(request) => request_card(state, user, request, stale).await,
        Err(refusal) => Ok(refusal),
    }
}

/// The request, or the reply for someone who may not see it.
async fn visible(
    state: &BotState,
    user: &User,
    request_id: i64,
) -> Result<Result<crate::store::Request, Reply>, ApiError> {
    match state
        .lifecycle
        .visible_request(user, request_id, "view")
        .await
    {
        Ok(request) => Ok(Ok(request)),
        Err(LifecycleError::Store(e)) => Err(e.into()),
        Err(refusal) => Ok(Err(Reply::Text(render::refusal_text(&refusal)))),
    }
}

async fn request_card(
    state: &BotState,
    user: &User,
    request: crate::store::Request,
    stale: bool,
) -> Result<Reply, ApiError> {
    let request_id = request.id;
    let unknown = || Ok(Reply::Text(format!("There is no request #{request_id}.")));
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

async fn on_card_action(
    state: &BotState,
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
                    Err(e) => {
                        let problem = format!("That duration didn't work: {e}");
                        let answers = views::Answers {
                            record,
                            duration_secs: None,
                            justification,
                            ticket,
                        };
                        return with_user(sender, |user| async move {
                            Ok(Reply::Form {
                                card: views::request_form_again(state, user, &answers, &problem)
                                    .await?,
                                text: problem,
                            })
                        })
                        .await;
                    }
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
            Ok(d) => Call::Extend(request_id, d.whole_seconds(), sender.origin.clone()),
            Err(e) => return Ok(Reply::Text(format!("That duration didn't work: {e}"))),
        },
        CardAction::Refresh { request_id, view } => {
            return with_user(sender, |user| async move {
                refresh(state, user, request_id, view.as_deref()).await
            })
            .await;
        }
        CardAction::ReviewDecide {
            review_id,
            kind,
            item_id,
            keep,
        } => {
            return with_user(sender, |user| async move {
                review_answer(state, user, review_id, Some((kind, item_id, keep)), &[]).await
            })
            .await;
        }
        CardAction::ReviewConfirm { review_id, shown } => {
            return with_user(sender, |user| async move {
                review_answer(state, user, review_id, None, &shown).await
            })
            .await;
        }
    };
    lifecycle_reply(state, sender, call).await
}

/// An answer on an access review card: one row kept or removed (`one`), or the rows shown
/// confirmed. The answer replaces the tapped card; every other copy is updated; a flagged
/// break-glass use alerts the admins. A refusal (a decided row, a closed review, someone who may
/// not answer) is said in words and changes nothing.
async fn review_answer(
    state: &BotState,
    user: &User,
    review_id: i64,
    one: Option<(String, i64, bool)>,
    shown: &[(String, i64)],
) -> Result<Reply, ApiError> {
    use crate::governance::reviews::{ReviewError, Reviews};
    let reviews = Reviews::new(state.lifecycle.clone());
    let result = match one {
        Some((kind, item_id, keep)) => reviews.decide(user, review_id, &kind, item_id, keep).await,
        None => reviews.confirm_rest(user, review_id, shown).await,
    };
    match result {
        Ok(decided) => {
            for alert in &decided.alerts {
                state.notifier.alert_admins(alert).await;
            }
            state.notifier.review_changed(review_id).await;
            let own = reviews.own_rows(user, &decided.view).await?;
            let note =
                (!decided.view.open()).then_some("Thank you: every row of this review is decided.");
            Ok(Reply::Card(views::access_review_card(
                &decided.view,
                user.id,
                &own,
                note,
            )?))
        }
        Err(ReviewError::Store(e)) => Err(e.into()),
        Err(refusal) => Ok(Reply::Text(refusal.to_string())),
    }
}

/// The card a `refresh` asks for: a request's card for this person (`view` "approver" or a
/// request id: the approval or decided card; "status": the requester's status card), or one of
/// the lists and forms the other cards link to.
async fn refresh(
    state: &BotState,
    user: &User,
    request_id: Option<i64>,
    view: Option<&str>,
) -> Result<Reply, ApiError> {
    match (view, request_id) {
        (Some("status"), Some(id)) => {
            let request = match visible(state, user, id).await? {
                Ok(request) => request,
                Err(refusal) => return Ok(refusal),
            };
            if request.requester_id != user.id {
                // Someone else's status card shows them what they may see of the request.
                return request_card(state, user, request, false).await;
            }
            let Some(record) = state.store.record_by_id(request.record_id).await? else {
                return Ok(Reply::Text(format!("There is no request #{id}.")));
            };
            // A status reply, so the card is recorded and follows later changes in place.
            Ok(Reply::Status {
                text: format!("Request #{id} for {}:", record.title),
                card: views::request_status(
                    state.store.as_ref(),
                    &request,
                    &record,
                    &state.settings.public_base_url(),
                )
                .await?,
                request_id: id,
                requester_id: user.id,
            })
        }
        (_, Some(id)) => card_view(state, user, id, false).await,
        (Some("requestForm"), None) => Ok(Reply::Card(
            views::request_form(state, user, None, None).await?,
        )),
        (Some("help"), None) => Ok(Reply::Card(views::help(Some(user))?)),
        (Some("adminHealth"), None) => {
            admin_reply_for(state, Some(user), AdminCommand::Health).await
        }
        (Some("pending"), None) => Ok(Reply::Card(views::pending(state, user).await?)),
        (Some("triage"), None) => {
            admin_reply_for(state, Some(user), AdminCommand::Triage { decision: None }).await
        }
        // "myRequests", or a refresh that names nothing.
        _ => Ok(Reply::Card(views::my_requests(state, user).await?)),
    }
}

async fn admin_reply_for(
    state: &BotState,
    user: Option<&User>,
    command: AdminCommand,
) -> Result<Reply, ApiError> {
    let Some(admin) = user.filter(|u| u.role == Role::Admin) else {
        // A refused attempt is recorded (who, which command), and changes nothing else.
        events::admin_command_refused(
            state.store.as_ref(),
            actor(user),
            refused_admin_detail(&command),
            state.clock.now(),
        )
        .await?;
        return Ok(Reply::Text("Admin commands are for Passkey admins.".into()));
    };
    let (title, (ok, report)) = match command {
        AdminCommand::Authority { args } => (
            "Authority",
            admin_outcome(admin::authority_reply(state, admin, &args).await)?,
        ),
        AdminCommand::Sensitivity { args } => (
            "Sensitivity",
            admin_outcome(admin::sensitivity_reply(state, admin, &args).await)?,
        ),
        AdminCommand::Role { args } => (
            "Role",
            admin_outcome(admin::role_reply(state, admin, &args).await)?,
        ),
        AdminCommand::TotpInvite { user } => (
            "Authenticator invitation",
            admin::totp_invite_reply(state, admin, &user).await?,
        ),
        AdminCommand::Health => return Ok(Reply::Card(views::admin_health(state).await?)),
        AdminCommand::Report { days, record } => {
            match views::access_report(state, days, record.as_deref()).await? {
                Ok(card) => return Ok(Reply::Card(card)),
                Err(refusal) => ("Access report", (false, refusal)),
            }
        }
        AdminCommand::ReviewStart => {
            let reviews = crate::governance::reviews::Reviews::new(state.lifecycle.clone());
            // One campaign per admin per minute: a repeated turn or a double tap starts one.
            let now = state.clock.now().to_fixed_text();
            let key = format!("manual:{}:{}", admin.id, now.get(..16).unwrap_or(&now));
            let report = match reviews.start_campaign(&key, &actor(Some(admin))).await? {
                Some(started) => {
                    state.notifier.review_cards(&started.notices).await;
                    (
                        true,
                        format!(
                            "Access review campaign #{} started: {} reviews, {} cards sent to \
                             owners (and to admins for records nobody owns). `admin health` \
                             shows how far it got.",
                            started.campaign.id,
                            started.reviews.len(),
                            started.notices.len()
                        ),
                    )
                }
                None => (
                    false,
                    "You started a campaign a moment ago; `admin health` shows it.".to_string(),
                ),
            };
            ("Access reviews", report)
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
                Ok(report) => ("Vault sync", (true, report.render())),
                Err(crate::governance::vault_sync::SyncError::Vault(e)) => (
                    "Vault sync",
                    (false, format!("The vault sync failed: {}", e.message)),
                ),
                Err(crate::governance::vault_sync::SyncError::Store(e)) => return Err(e.into()),
            }
        }
        AdminCommand::Replay { trace_id: Some(id) } => (
            "Policy replay",
            match policies::replay_trace(state.store.as_ref(), &state.policy, id).await? {
                Some(report) => (true, format!("```\n{}\n```", report.summary())),
                None => (false, format!("There is no decision trace {id}.")),
            },
        ),
        AdminCommand::Replay { trace_id: None } => {
            let summary = policies::replay_all(state.store.as_ref(), &state.policy).await?;
            (
                "Policy replay",
                (true, format!("```\n{}\n```", summary.render())),
            )
        }
        AdminCommand::Triage { decision: None } => {
            return Ok(Reply::Card(views::triage_queue(state).await?));
        }
        AdminCommand::Triage { decision: Some(d) } => {
            return lifecycle_reply(
                state,
                &Sender::known(state, admin),
                Call::Triage(d.request_id, d.approve, d.reason),
            )
            .await;
        }
        AdminCommand::Revoke { request_id, reason } => {
            return lifecycle_reply(
                state,
                &Sender::known(state, admin),
                Call::Revoke(request_id, reason),
            )
            .await;
        }
        AdminCommand::AuditVerify => {
            let actor = format!("user:{}", admin.id);
            match state
                .audit
                .verify_and_alert(state.notifier.as_ref(), &actor)
                .await
            {
                Ok(report) => ("Audit trail", (report.ok(), report.summary())),
                Err(crate::audit::AuditError::Store(e)) => return Err(e.into()),
                Err(e) => (
                    "Audit trail",
                    (false, format!("The audit trail could not be checked: {e}")),
                ),
            }
        }
    };
    Ok(Reply::Card(
        crate::cards::render_admin_result(&crate::cards::AdminResultCard::new(title, ok, &report))
            .map_err(ApiError::internal)?,
    ))
}

/// A refusal is the report of a failed command; a database failure is the turn's error.
fn admin_outcome(result: Result<String, AdminError>) -> Result<(bool, String), ApiError> {
    match result {
        Ok(text) => Ok((true, text)),
        Err(AdminError::Store(e)) => Err(e.into()),
        Err(refusal) => Ok((false, refusal.to_string())),
    }
}

/// What a refused admin command is audited with: the command, and the request number it named
/// (nothing of the request itself).
fn refused_admin_detail(command: &AdminCommand) -> Value {
    let mut detail = json!({ "command": format!("admin {}", admin_name(command)) });
    let named = match command {
        AdminCommand::Triage { decision: Some(d) } => Some(d.request_id),
        AdminCommand::Revoke { request_id, .. } => Some(*request_id),
        _ => None,
    };
    if let Some(id) = named {
        detail["request_id"] = json!(id);
    }
    detail
}

fn admin_name(c: &AdminCommand) -> &'static str {
    match c {
        AdminCommand::Health => "health",
        AdminCommand::Sync => "sync",
        AdminCommand::Triage { .. } => "triage",
        AdminCommand::AuditVerify => "audit verify",
        AdminCommand::Authority { .. } => "authority",
        AdminCommand::Sensitivity { .. } => "sensitivity",
        AdminCommand::Role { .. } => "role",
        AdminCommand::Revoke { .. } => "revoke",
        AdminCommand::TotpInvite { .. } => "totp-invite",
        AdminCommand::Replay { .. } => "replay",
        AdminCommand::Report { .. } => "report",
        AdminCommand::ReviewStart => "review start",
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
