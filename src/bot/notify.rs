//! Delivers lifecycle notices as Teams messages in each person's 1:1 chat with the bot.
//! People the bot has never talked to have no chat yet: they are skipped with a log line (opening
//! the chat proactively belongs with the cards and the app package).

use super::connector::{Connector, ConversationTarget};
use super::render;
use crate::bot::activity::OutgoingActivity;
use crate::governance::lifecycle::{Notice, Notifier};
use crate::store::Store;
use async_trait::async_trait;
use std::sync::Arc;

pub struct TeamsNotifier {
    store: Arc<dyn Store>,
    connector: Arc<dyn Connector>,
    base_url: String,
}

impl TeamsNotifier {
    pub fn new(store: Arc<dyn Store>, connector: Arc<dyn Connector>, base_url: String) -> Self {
        TeamsNotifier {
            store,
            connector,
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
        let request = s
            .request_by_id(notice.request_id)
            .await
            .map_err(|e| e.to_string())?
            .ok_or("no such request")?;
        let record = s
            .record_by_id(request.record_id)
            .await
            .map_err(|e| e.to_string())?
            .ok_or("no such record")?;
        let requester = s
            .user_by_id(request.requester_id)
            .await
            .map_err(|e| e.to_string())?
            .map(|u| u.display_name)
            .unwrap_or_else(|| "Someone".into());
        let text = render::notice_text(notice.kind, &request, &record, &requester, &self.base_url);
        let target = ConversationTarget {
            service_url: chat.service_url,
            conversation_id: chat.conversation_id,
        };
        self.connector
            .send(&target, &OutgoingActivity::text(text))
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
}

#[async_trait]
impl Notifier for TeamsNotifier {
    async fn deliver(&self, notices: &[Notice]) {
        for notice in notices {
            if let Err(error) = self.deliver_one(notice).await {
                tracing::warn!(user_id = notice.user_id, request_id = notice.request_id,
                    kind = ?notice.kind, %error, "notice not delivered");
            }
        }
    }
}
