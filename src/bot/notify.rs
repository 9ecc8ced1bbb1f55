//! Delivers lifecycle notices in each person's 1:1 chat with the bot: approval requests as
//! Adaptive Cards (each copy recorded, so it can be updated in place later), everything else as
//! text. When a request changes, every recorded card about it is updated in place: approval copies
//! become the decided card (outcome, who decided and when, no buttons) once nobody needs to decide,
//! and the requester's status cards show the new state.
//!
//! People the bot has never talked to have no chat yet. With [`ProactiveChats`] configured the
//! notifier opens one: it installs the Teams app for the person through Graph first (where
//! `graph.install_app` says so; "already installed" is fine), asks the Connector for the 1:1
//! conversation (`POST /v3/conversations` at the configured service URL, in the person's tenant),
//! keeps the new conversation reference, and delivers. A chat that cannot be opened is logged
//! (no tokens, no addresses) and counted; without the configuration such people are skipped.
//!
//! Reachability is decided by the lifecycle, not here: a routed request whose approvers resolve to
//! nobody goes to triage before any notice exists. A notice that cannot be delivered does not
//! undo that decision; the stale-request job reminds approvers and escalates to the admins after
//! `escalate_after_secs`, so an approver whose chat could not be opened is never the only thing
//! standing between a request and an answer for longer than that.

use super::connector::{Connector, ConversationTarget};
use super::render;
use crate::bot::activity::OutgoingActivity;
use crate::cards::{self, ApprovalCard, DecidedCard};
use crate::domain::{Clock, RequestStatus};
use crate::governance::conversations::Conversations;
use crate::governance::directory::UserDirectory;
use crate::governance::lifecycle::{Lifecycle, Notice, NoticeKind, Notifier};
use crate::notify::{ReviewNotice, ReviewNoticeKind};
use crate::store::{ConversationRef, NewSentCard, Record, Request, Store, User};
use async_trait::async_trait;
use serde_json::json;
use std::collections::hash_map::Entry;
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

pub struct TeamsNotifier {
    store: Arc<dyn Store>,
    /// Where the chats it opens and the cards it sends are recorded.
    conversations: Conversations,
    connector: Arc<dyn Connector>,
    clock: Arc<dyn Clock>,
    base_url: String,
    proactive: Option<ProactiveChats>,
    /// Who may still see a request: an approval card copy is updated only for them.
    lifecycle: Option<Arc<Lifecycle>>,
    /// Chats that could not be opened (app install or conversation creation failed).
    chat_failures: AtomicU64,
    /// Chats opened for people the bot had never talked to.
    chats_opened: AtomicU64,
}

/// How the notifier opens a 1:1 chat with someone the bot has never talked to.
#[derive(Clone)]
pub struct ProactiveChats {
    /// The Connector base URL conversations are created at (`bot.service_url`).
    pub service_url: String,
    /// The bot's channel account id (`28:<app id>`).
    pub bot_id: String,
    /// The tenant for people whose own tenant Passkey has not seen (the bot's home tenant).
    pub tenant_id: Option<String>,
    /// The Graph directory and the app's catalog id, when the app is installed for people first.
    pub install: Option<(Arc<dyn UserDirectory>, String)>,
}

/// Why a notice was not delivered: the person has never talked to the bot.
const NO_CHAT: &str = "the bot has no chat with this person yet";
/// Why a notice was not delivered: opening a chat with the person failed.
const NO_CHAT_OPENED: &str = "no chat could be opened";

/// The kind recorded for approval cards in `sent_cards` (defined with the views that read it, so
/// `views` does not import `notify`, which builds on it).
pub use super::views::{APPROVAL_CARD, CHANNEL_APPROVAL_CARD};
/// The kind recorded for a requester's status card in `sent_cards`.
pub const STATUS_CARD: &str = "status";

impl TeamsNotifier {
    pub fn new(
        store: Arc<dyn Store>,
        connector: Arc<dyn Connector>,
        clock: Arc<dyn Clock>,
        base_url: String,
    ) -> Self {
        TeamsNotifier {
            conversations: Conversations::new(store.clone(), clock.clone()),
            store,
            connector,
            clock,
            base_url,
            proactive: None,
            lifecycle: None,
            chat_failures: AtomicU64::new(0),
            chats_opened: AtomicU64::new(0),
        }
    }

    /// Opens 1:1 chats with people the bot has never talked to.
    pub fn with_proactive_chats(mut self, proactive: ProactiveChats) -> Self {
        self.proactive = Some(proactive);
        self
    }

    /// Updates a person's approval card copy only while they may still see the request
    /// ([`Lifecycle::standing`]): an approver who lost their authority before deciding keeps the
    /// card as it was and is shown nothing new.
    pub fn with_lifecycle(mut self, lifecycle: Arc<Lifecycle>) -> Self {
        self.lifecycle = Some(lifecycle);
        self
    }

    /// Whether an approval copy addressed to `recipient` may show the request as it now is. A
    /// copy nobody is named for, or a check that fails, shows nothing new.
    async fn recipient_may_see(&self, recipient: Option<i64>, request: &Request) -> bool {
        let Some(lifecycle) = &self.lifecycle else {
            return true;
        };
        let Some(user_id) = recipient else {
            return false;
        };
        match self.store.user_by_id(user_id).await {
            Ok(Some(user)) => lifecycle
                .standing(&user, request)
                .await
                .is_ok_and(|s| s.may_see()),
            _ => false,
        }
    }

    /// Chats that could not be opened since start.
    pub fn chat_failures(&self) -> u64 {
        self.chat_failures.load(Ordering::Relaxed)
    }

    /// Chats opened for people the bot had never talked to, since start.
    pub fn chats_opened(&self) -> u64 {
        self.chats_opened.load(Ordering::Relaxed)
    }

    /// The person's 1:1 chat: the one the bot has, else a new one where configured.
    async fn personal_chat(&self, user: &User) -> Result<ConversationRef, String> {
        if let Some(chat) = self
            .store
            .personal_conversation(&user.aad_object_id)
            .await
            .map_err(|e| e.to_string())?
        {
            return Ok(chat);
        }
        let Some(proactive) = &self.proactive else {
            return Err(NO_CHAT.into());
        };
        match self.open_chat(proactive, user).await {
            Ok(chat) => {
                self.chats_opened.fetch_add(1, Ordering::Relaxed);
                tracing::info!(user_id = user.id, "opened a 1:1 chat");
                Ok(chat)
            }
            Err(error) => {
                self.chat_failures.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(user_id = user.id, %error, "could not open a 1:1 chat");
                Err(format!("{NO_CHAT_OPENED}: {error}"))
            }
        }
    }

    /// Installs the app for the person (when configured), creates the conversation and keeps
    /// its reference. Errors name the step, never a token or an address.
    async fn open_chat(&self, p: &ProactiveChats, user: &User) -> Result<ConversationRef, String> {
        if let Some((directory, catalog_id)) = &p.install {
            directory
                .install_app(&user.aad_object_id, catalog_id)
                .await
                .map_err(|e| format!("installing the app failed: {e}"))?;
        }
        let tenant = user
            .tenant_id
            .clone()
            .or_else(|| p.tenant_id.clone())
            .ok_or("no tenant is known for this person")?;
        // Teams takes the Entra object id as the member in the personal scope.
        let member = user
            .teams_user_id
            .clone()
            .unwrap_or_else(|| user.aad_object_id.clone());
        let conversation_id = self
            .connector
            .create_personal_conversation(&p.service_url, &p.bot_id, &member, &tenant)
            .await
            .map_err(|e| format!("creating the conversation failed: {e}"))?;
        let chat = ConversationRef {
            conversation_id: conversation_id.clone(),
            conversation_type: "personal".into(),
            channel_id: "msteams".into(),
            service_url: p.service_url.clone(),
            tenant_id: Some(tenant.clone()),
            bot_id: p.bot_id.clone(),
            user_id: Some(user.id),
            aad_object_id: Some(user.aad_object_id.clone()),
            teams_user_id: user.teams_user_id.clone(),
            team_id: None,
            reference: sqlx::types::Json(json!({
                "bot": {"id": p.bot_id},
                "conversation": {"id": conversation_id, "conversationType": "personal", "tenantId": tenant},
                "channelId": "msteams",
                "serviceUrl": p.service_url,
                "openedBy": "passkey",
            })),
            updated_at: self.clock.now(),
        };
        self.conversations
            .remember_conversation(&chat)
            .await
            .map_err(|e| format!("the new conversation was not kept: {e}"))?;
        Ok(chat)
    }

    /// Delivers one notice; `Ok(Some(id))` names a status card sent just now (already current).
    async fn deliver_one(&self, notice: &Notice) -> Result<Option<String>, String> {
        let s = &self.store;
        let user = s
            .user_by_id(notice.user_id)
            .await
            .map_err(|e| e.to_string())?
            .ok_or("no such user")?;
        let chat = self.personal_chat(&user).await?;
        let (request, record) = self.request_and_record(notice.request_id).await?;
        let requester = s
            .user_by_id(request.requester_id)
            .await
            .map_err(|e| e.to_string())?
            .ok_or("no such requester")?;
        let target = ConversationTarget {
            service_url: chat.service_url,
            conversation_id: chat.conversation_id.clone(),
        };
        if matches!(
            notice.kind,
            NoticeKind::ApprovalNeeded | NoticeKind::ExtensionNeeded
        ) {
            let folder = self.folder_name(&record).await;
            let card = cards::render_approval(
                &ApprovalCard::new(&request, &record, &requester, folder.as_deref(), &[])
                    .decidable(true),
            )
            .map_err(|e| e.to_string())?;
            let summary = format!(
                "Approval needed: {} for {}",
                record.title, requester.display_name
            );
            let sent = self
                .connector
                .send(&target, &OutgoingActivity::card(summary, card))
                .await
                .map_err(|e| e.to_string())?;
            if !sent.id.is_empty() {
                self.conversations
                    .record_card(&NewSentCard {
                        request_id: request.id,
                        recipient_user_id: Some(user.id),
                        conversation_id: chat.conversation_id,
                        activity_id: sent.id,
                        card_kind: APPROVAL_CARD.into(),
                        at: self.clock.now(),
                    })
                    .await
                    .map_err(|e| e.to_string())?;
            }
            return Ok(None);
        }
        let text = render::notice_text(
            notice.kind,
            &request,
            &record,
            &requester.display_name,
            &self.base_url,
        );
        // The requester told of an approval gets the status card with Retrieve, kept up to date.
        if notice.kind == NoticeKind::StatusChanged
            && user.id == request.requester_id
            && matches!(
                request.status,
                RequestStatus::Approved | RequestStatus::Issued
            )
        {
            let card = super::views::request_status(s.as_ref(), &request, &record, &self.base_url)
                .await
                .map_err(|e| e.to_string())?;
            let mut activity = OutgoingActivity::card(format!("Request #{}", request.id), card);
            activity.text = Some(text);
            activity.text_format = Some("markdown".into());
            let sent = self
                .connector
                .send(&target, &activity)
                .await
                .map_err(|e| e.to_string())?;
            if sent.id.is_empty() {
                return Ok(None);
            }
            self.conversations
                .record_card(&NewSentCard {
                    request_id: request.id,
                    recipient_user_id: Some(user.id),
                    conversation_id: chat.conversation_id,
                    activity_id: sent.id.clone(),
                    card_kind: STATUS_CARD.into(),
                    at: self.clock.now(),
                })
                .await
                .map_err(|e| e.to_string())?;
            return Ok(Some(sent.id));
        }
        self.connector
            .send(&target, &OutgoingActivity::text(text))
            .await
            .map(|_| None)
            .map_err(|e| e.to_string())
    }

    /// The recipient's time zone (#18.6): a notice shows times as they read them.
    async fn zone_of(&self, user_id: i64) -> crate::domain::Zone {
        crate::governance::conversations::zone_of(self.store.as_ref(), user_id).await
    }

    async fn request_and_record(&self, request_id: i64) -> Result<(Request, Record), String> {
        let request = self
            .store
            .request_by_id(request_id)
            .await
            .map_err(|e| e.to_string())?
            .ok_or("no such request")?;
        let record = self
            .store
            .record_by_id(request.record_id)
            .await
            .map_err(|e| e.to_string())?
            .ok_or("no such record")?;
        Ok((request, record))
    }

    async fn folder_name(&self, record: &Record) -> Option<String> {
        let id = record.folder_id?;
        self.store
            .folder_by_id(id)
            .await
            .ok()
            .flatten()
            .map(|f| f.name)
    }

    /// Every recorded copy of a request's cards shows the request as it now is: approval cards
    /// become the decided card once nobody needs to decide any more; the requester's status
    /// cards follow every change.
    async fn update_copies(&self, request_id: i64, fresh: &[String]) -> Result<(), String> {
        let mut copies = self
            .store
            .sent_cards_for_request(request_id)
            .await
            .map_err(|e| e.to_string())?;
        copies.retain(|c| !fresh.contains(&c.activity_id));
        if copies.is_empty() {
            return Ok(());
        }
        let (request, record) = self.request_and_record(request_id).await?;
        let decided = !matches!(
            request.status,
            RequestStatus::Pending | RequestStatus::RenewalPending | RequestStatus::RequiresTriage
        );
        // Each approver's copy in that approver's time zone (#18.6), rendered once per zone.
        let mut decided_views: HashMap<String, crate::cards::Card> = HashMap::new();
        let mut status_view = None;
        for copy in &copies {
            // The channel's copy stays as posted until the request is decided: it has no
            // buttons, and each member's own view comes from their refresh.
            if copy.card_kind == CHANNEL_APPROVAL_CARD && !decided {
                continue;
            }
            if copy.card_kind == APPROVAL_CARD
                && !self
                    .recipient_may_see(copy.recipient_user_id, &request)
                    .await
            {
                continue;
            }
            let card = match copy.card_kind.as_str() {
                APPROVAL_CARD | CHANNEL_APPROVAL_CARD if decided => {
                    let zone = match copy.recipient_user_id {
                        Some(user_id) => self.zone_of(user_id).await,
                        None => crate::domain::Zone::utc(),
                    };
                    match decided_views.entry(zone.name().to_string()) {
                        Entry::Occupied(card) => &*card.into_mut(),
                        Entry::Vacant(slot) => &*slot.insert(
                            crate::domain::for_reader(
                                zone,
                                decided_card(self.store.as_ref(), &request, &record, false),
                            )
                            .await?,
                        ),
                    }
                }
                STATUS_CARD => match &status_view {
                    Some(card) => card,
                    // The requester's card, in the requester's time zone.
                    None => status_view.insert(
                        crate::domain::for_reader(
                            self.zone_of(request.requester_id).await,
                            super::views::request_status(
                                self.store.as_ref(),
                                &request,
                                &record,
                                &self.base_url,
                            ),
                        )
                        .await
                        .map_err(|e| e.to_string())?,
                    ),
                },
                _ => continue,
            };
            let Some(chat) = self
                .store
                .conversation(&copy.conversation_id)
                .await
                .map_err(|e| e.to_string())?
            else {
                continue;
            };
            let target = ConversationTarget {
                service_url: chat.service_url,
                conversation_id: chat.conversation_id,
            };
            let activity = OutgoingActivity::card(
                format!("Request #{request_id}: {}", request.status.in_words()),
                card.clone(),
            );
            if let Err(e) = self
                .connector
                .update(&target, &copy.activity_id, &activity)
                .await
            {
                tracing::warn!(request_id, kind = %copy.card_kind, error = %e, "a card copy was not updated");
            }
        }
        Ok(())
    }
}

/// The decided card for a request as it now is (`stale`: the answer to a click that came late).
pub async fn decided_card(
    store: &dyn Store,
    request: &Request,
    record: &Record,
    stale: bool,
) -> Result<crate::cards::Card, String> {
    let requester = store
        .user_by_id(request.requester_id)
        .await
        .map_err(|e| e.to_string())?
        .map(|u| u.display_name)
        .unwrap_or_else(|| "Someone".into());
    let decider = match request.decided_by {
        Some(id) => store
            .user_by_id(id)
            .await
            .map_err(|e| e.to_string())?
            .map(|u| u.display_name),
        None if request.decided_at.is_some() => Some("policy".to_string()),
        None => None,
    };
    let mut view = DecidedCard::new(request, record, &requester, decider.as_deref());
    if stale {
        view = view.already_decided();
    }
    cards::render_decided(&view).map_err(|e| e.to_string())
}

#[async_trait]
impl Notifier for TeamsNotifier {
    async fn deliver(&self, notices: &[Notice]) {
        let mut changed = BTreeSet::new();
        let mut asked = BTreeSet::new();
        let mut fresh = Vec::new();
        for notice in notices {
            if notice.kind == NoticeKind::StatusChanged {
                changed.insert(notice.request_id);
            }
            if notice.kind == NoticeKind::ApprovalNeeded {
                asked.insert(notice.request_id);
            }
            let zone = self.zone_of(notice.user_id).await;
            match crate::domain::for_reader(zone, self.deliver_one(notice)).await {
                Ok(sent) => fresh.extend(sent),
                Err(error) => {
                    tracing::warn!(user_id = notice.user_id, request_id = notice.request_id,
                    kind = ?notice.kind, %error, "notice not delivered");
                    self.keep_waiting(notice, &error).await;
                }
            }
        }
        // Before the requester's status card is updated, so it says where the card went.
        for request_id in asked {
            if let Err(error) = self.post_in_channels(request_id).await {
                tracing::warn!(request_id, %error, "approval card not posted in channels");
            }
        }
        for request_id in changed {
            if let Err(error) = self.update_copies(request_id, &fresh).await {
                tracing::warn!(request_id, %error, "cards not updated");
            }
        }
    }

    async fn request_changed(&self, request_id: i64) {
        if let Err(error) = self.update_copies(request_id, &[]).await {
            tracing::warn!(request_id, %error, "cards not updated");
        }
    }

    /// An access review card in each person's 1:1 chat, recorded so decisions update it.
    async fn review_cards(&self, notices: &[ReviewNotice]) {
        for n in notices {
            let zone = self.zone_of(n.user_id).await;
            if let Err(error) = crate::domain::for_reader(zone, self.send_review_card(n)).await {
                tracing::warn!(user_id = n.user_id, review_id = n.review_id, kind = ?n.kind,
                    %error, "review card not delivered");
            }
        }
    }

    async fn review_changed(&self, review_id: i64) {
        if let Err(error) = self.update_review_copies(review_id).await {
            tracing::warn!(review_id, %error, "review cards not updated");
        }
    }

    /// A text message in every admin's 1:1 chat; admins the bot has no chat with are logged.
    async fn alert_admins(&self, text: &str) {
        let admins = match self.store.users_with_role(crate::domain::Role::Admin).await {
            Ok(admins) => admins,
            Err(error) => {
                tracing::error!(%error, alert = text, "admin alert not delivered: admins unknown");
                return;
            }
        };
        for admin in admins {
            self.send_text(&admin, text, "admin alert").await;
        }
    }

    async fn tell_user(&self, user_id: i64, text: &str) {
        match self.store.user_by_id(user_id).await {
            Ok(Some(user)) => self.send_text(&user, text, "message").await,
            Ok(None) => tracing::warn!(user_id, "message not delivered: no such person"),
            Err(error) => tracing::warn!(user_id, %error, "message not delivered"),
        }
    }
}

impl TeamsNotifier {
    /// Posts request `request_id`'s approval card in the team channels of the authorities now
    /// deciding it (#18.7), once per channel: a card without buttons that says who decides,
    /// refreshing for the group's members to their own view with Approve and Deny. Recorded, so
    /// it shows the outcome in place like every other copy. A channel that cannot be reached is
    /// recorded as missed (the requester's status card says so); its members were asked in their
    /// 1:1 chats all the same.
    async fn post_in_channels(&self, request_id: i64) -> Result<(), String> {
        let Some(lifecycle) = &self.lifecycle else {
            return Ok(());
        };
        let routes = lifecycle
            .approval_channels(request_id)
            .await
            .map_err(|e| e.to_string())?;
        if routes.is_empty() {
            return Ok(());
        }
        let posted = self
            .store
            .sent_cards_for_request(request_id)
            .await
            .map_err(|e| e.to_string())?;
        let (request, record) = self.request_and_record(request_id).await?;
        let requester = self
            .store
            .user_by_id(request.requester_id)
            .await
            .map_err(|e| e.to_string())?
            .ok_or("no such requester")?;
        let folder = self.folder_name(&record).await;
        for route in routes {
            let conversation_id = route.conversation.conversation_id.clone();
            if posted.iter().any(|c| {
                c.card_kind == CHANNEL_APPROVAL_CARD && c.conversation_id == conversation_id
            }) {
                continue;
            }
            let card = cards::render_approval(
                &ApprovalCard::new(&request, &record, &requester, folder.as_deref(), &[])
                    .refresh_for(&route.member_teams_ids)
                    .in_channel(&route.group),
            )
            .map_err(|e| e.to_string())?;
            let summary = format!(
                "Approval needed: {} for {}",
                record.title, requester.display_name
            );
            let target = ConversationTarget {
                service_url: route.conversation.service_url.clone(),
                conversation_id: conversation_id.clone(),
            };
            match self
                .connector
                .send(&target, &OutgoingActivity::card(summary, card))
                .await
            {
                Ok(sent) if !sent.id.is_empty() => {
                    self.conversations
                        .record_card(&NewSentCard {
                            request_id,
                            recipient_user_id: None,
                            conversation_id,
                            activity_id: sent.id,
                            card_kind: CHANNEL_APPROVAL_CARD.into(),
                            at: self.clock.now(),
                        })
                        .await
                        .map_err(|e| e.to_string())?;
                }
                Ok(_) => {}
                Err(error) => {
                    tracing::warn!(request_id, channel_id = route.channel.id, %error,
                        "approval card not posted in its team channel");
                    self.conversations
                        .keep_channel_miss(request_id, route.channel.id)
                        .await
                        .map_err(|e| e.to_string())?;
                }
            }
        }
        Ok(())
    }

    /// The OWNER rows of a review naming `user` (none without the lifecycle to resolve them).
    async fn own_review_rows(
        &self,
        user: &User,
        view: &crate::governance::reviews::ReviewView,
    ) -> Result<Vec<i64>, String> {
        match &self.lifecycle {
            Some(lifecycle) => crate::governance::reviews::Reviews::new(lifecycle.clone())
                .own_rows(user, view)
                .await
                .map_err(|e| e.to_string()),
            None => Ok(vec![]),
        }
    }

    async fn send_review_card(&self, n: &ReviewNotice) -> Result<(), String> {
        let user = self
            .store
            .user_by_id(n.user_id)
            .await
            .map_err(|e| e.to_string())?
            .ok_or("no such user")?;
        let chat = self.personal_chat(&user).await?;
        let view = crate::governance::reviews::view(self.store.as_ref(), n.review_id)
            .await
            .map_err(|e| e.to_string())?
            .ok_or("no such review")?;
        let note = match n.kind {
            ReviewNoticeKind::Review => {
                "You are an owner of this record: please review who governs it and what happened in the period."
            }
            ReviewNoticeKind::Reminder => "Reminder: this access review is still open.",
            ReviewNoticeKind::Escalated => {
                "Escalated to the admins: no owner answered in time, or the record has no owner anyone can reach."
            }
        };
        let own = self.own_review_rows(&user, &view).await?;
        let card = super::views::access_review_card(&view, user.id, &own, Some(note))
            .map_err(|e| e.to_string())?;
        let target = ConversationTarget {
            service_url: chat.service_url,
            conversation_id: chat.conversation_id.clone(),
        };
        let sent = self
            .connector
            .send(
                &target,
                &OutgoingActivity::card(format!("Access review: {}", view.record.title), card),
            )
            .await
            .map_err(|e| e.to_string())?;
        if !sent.id.is_empty() {
            self.conversations
                .keep_review_card(n.review_id, user.id, &chat.conversation_id, &sent.id)
                .await
                .map_err(|e| e.to_string())?;
        }
        Ok(())
    }

    /// Every recorded copy of a review's card shows the review as it now is.
    async fn update_review_copies(&self, review_id: i64) -> Result<(), String> {
        let copies = self
            .store
            .review_cards(review_id)
            .await
            .map_err(|e| e.to_string())?;
        if copies.is_empty() {
            return Ok(());
        }
        let view = crate::governance::reviews::view(self.store.as_ref(), review_id)
            .await
            .map_err(|e| e.to_string())?
            .ok_or("no such review")?;
        for copy in copies {
            let Some(user) = self
                .store
                .user_by_id(copy.recipient_user_id)
                .await
                .map_err(|e| e.to_string())?
            else {
                continue;
            };
            let Some(chat) = self
                .store
                .conversation(&copy.conversation_id)
                .await
                .map_err(|e| e.to_string())?
            else {
                continue;
            };
            let own = self.own_review_rows(&user, &view).await?;
            let card = crate::domain::for_reader(self.zone_of(user.id).await, async {
                super::views::access_review_card(&view, user.id, &own, None)
            })
            .await
            .map_err(|e| e.to_string())?;
            let target = ConversationTarget {
                service_url: chat.service_url,
                conversation_id: chat.conversation_id,
            };
            let activity =
                OutgoingActivity::card(format!("Access review: {}", view.record.title), card);
            if let Err(e) = self
                .connector
                .update(&target, &copy.activity_id, &activity)
                .await
            {
                tracing::warn!(review_id, error = %e, "a review card copy was not updated");
            }
        }
        Ok(())
    }

    /// Keeps an approval or extension notice that could not be delivered, so the requester's
    /// card says who was not reached and the approver gets it when they first talk to the bot.
    async fn keep_waiting(&self, notice: &Notice, error: &str) {
        if !matches!(
            notice.kind,
            NoticeKind::ApprovalNeeded | NoticeKind::ExtensionNeeded
        ) {
            return;
        }
        // A fixed code, never the error's text.
        let why = if error == NO_CHAT {
            "no_chat"
        } else if error.starts_with(NO_CHAT_OPENED) {
            "chat_not_opened"
        } else {
            "not_delivered"
        };
        let kind = match notice.kind {
            NoticeKind::ApprovalNeeded => "APPROVAL_NEEDED",
            _ => "EXTENSION_NEEDED",
        };
        if let Err(e) = self
            .conversations
            .keep_waiting_notice(notice.user_id, notice.request_id, kind, why)
            .await
        {
            tracing::warn!(user_id = notice.user_id, request_id = notice.request_id, error = %e,
                "an undelivered notice was not kept");
        }
    }

    /// A text message in one person's 1:1 chat with the bot; a person the bot has no chat with,
    /// or a failed send, is logged (`what` names the message in the log line, never its text).
    async fn send_text(&self, user: &crate::store::User, text: &str, what: &str) {
        let chat = match self.store.personal_conversation(&user.aad_object_id).await {
            Ok(Some(chat)) => chat,
            Ok(None) => {
                tracing::warn!(
                    user_id = user.id,
                    "{what} not delivered: no chat with this person yet"
                );
                return;
            }
            Err(error) => {
                tracing::warn!(user_id = user.id, %error, "{what} not delivered");
                return;
            }
        };
        let target = ConversationTarget {
            service_url: chat.service_url,
            conversation_id: chat.conversation_id,
        };
        if let Err(error) = self
            .connector
            .send(&target, &OutgoingActivity::text(text.to_string()))
            .await
        {
            tracing::warn!(user_id = user.id, %error, "{what} not delivered");
        }
    }
}
