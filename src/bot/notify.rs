//! Delivers lifecycle notices in each person's 1:1 chat with the bot: approval requests as
//! Adaptive Cards (each copy recorded, so it can be updated in place later), everything else as
//! text. When a request changes, every recorded card about it is updated in place: approval copies
//! become the decided card (outcome, who decided and when, no buttons) once nobody needs to decide,
//! and the requester's status cards show the new state. People the bot has never talked
//! to have no chat yet: they are skipped with a log line.

use super::connector::{Connector, ConversationTarget};
use super::render;
use crate::bot::activity::OutgoingActivity;
use crate::cards::{self, ApprovalCard, DecidedCard};
use crate::domain::{Clock, RequestStatus};
use crate::governance::lifecycle::{Notice, NoticeKind, Notifier};
use crate::store::{NewSentCard, Record, Request, Store};
use async_trait::async_trait;
use std::collections::BTreeSet;
use std::sync::Arc;

pub struct TeamsNotifier {
    store: Arc<dyn Store>,
    connector: Arc<dyn Connector>,
    clock: Arc<dyn Clock>,
    base_url: String,
}

/// The kind recorded for approval cards in `sent_cards`.
pub const APPROVAL_CARD: &str = "approval";
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
            store,
            connector,
            clock,
            base_url,
        }
    }

    async fn deliver_one(&self, notice: &Notice) -> Result<(), String> {
        let s = &self.store;
        let user = s
            .user_by_id(notice.user_id)
            .await
            .map_err(|e| e.to_string())?
            .ok_or("no such user")?;
        let Some(chat) = s
            .personal_conversation(&user.aad_object_id)
            .await
            .map_err(|e| e.to_string())?
        else {
            return Err("the bot has no chat with this person yet".into());
        };
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
                s.record_sent_card(&NewSentCard {
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
            return Ok(());
        }
        let text = render::notice_text(
            notice.kind,
            &request,
            &record,
            &requester.display_name,
            &self.base_url,
        );
        self.connector
            .send(&target, &OutgoingActivity::text(text))
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
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
    async fn update_copies(&self, request_id: i64) -> Result<(), String> {
        let copies = self
            .store
            .sent_cards_for_request(request_id)
            .await
            .map_err(|e| e.to_string())?;
        if copies.is_empty() {
            return Ok(());
        }
        let (request, record) = self.request_and_record(request_id).await?;
        let decided = !matches!(
            request.status,
            RequestStatus::Pending | RequestStatus::RenewalPending | RequestStatus::RequiresTriage
        );
        let mut decided_view = None;
        let mut status_view = None;
        for copy in &copies {
            let card = match copy.card_kind.as_str() {
                APPROVAL_CARD if decided => match &decided_view {
                    Some(card) => card,
                    None => decided_view
                        .insert(decided_card(self.store.as_ref(), &request, &record, false).await?),
                },
                STATUS_CARD => match &status_view {
                    Some(card) => card,
                    None => status_view.insert(
                        super::views::request_status(
                            self.store.as_ref(),
                            &request,
                            &record,
                            &self.base_url,
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
                format!("Request #{request_id}: {}", request.status),
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
) -> Result<serde_json::Value, String> {
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
        for notice in notices {
            if notice.kind == NoticeKind::StatusChanged {
                changed.insert(notice.request_id);
            }
            if let Err(error) = self.deliver_one(notice).await {
                tracing::warn!(user_id = notice.user_id, request_id = notice.request_id,
                    kind = ?notice.kind, %error, "notice not delivered");
            }
        }
        for request_id in changed {
            self.request_changed(request_id).await;
        }
    }

    async fn request_changed(&self, request_id: i64) {
        if let Err(error) = self.update_copies(request_id).await {
            tracing::warn!(request_id, %error, "cards not updated");
        }
    }
}
