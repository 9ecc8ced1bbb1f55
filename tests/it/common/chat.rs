//! People chatting with the real app in dev channel mode (no tokens, loopback only) over the demo
//! data; everything the bot says — replies and proactive messages — is caught by a fake Bot
//! Connector on loopback.

use super::channel::{FakeConnector, TENANT};
use super::{SqliteTestDb, TestServer, fresh_sqlite, t0, test_settings};
use passkey::governance::directory::UserDirectory;
use passkey::governance::permissions::GroupDirectory;
use passkey::store::Store;
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

pub struct Chat {
    pub connector: FakeConnector,
    pub server: TestServer,
    pub store: Arc<dyn Store>,
    /// The chat's own database, when it was not given one ([`Chat::start_over`]).
    _db: Option<SqliteTestDb>,
    _dir: tempfile::TempDir,
    client: reqwest::Client,
    sent: AtomicUsize,
}

/// `aad`'s 1:1 chat with the bot.
pub fn personal(aad: &str) -> Value {
    json!({"id": format!("a:{aad}-personal"), "conversationType": "personal", "tenantId": TENANT})
}

/// The sender `(aad, name)` as Teams names them (a Teams id made from the name).
fn from((aad, name): (&str, &str)) -> Value {
    json!({"id": format!("29:{name}"), "name": name, "aadObjectId": aad})
}

/// A group chat the bot was added to.
pub fn group_chat() -> Value {
    json!({"id": "19:ops-group-chat@thread.v2", "conversationType": "groupChat", "isGroup": true, "tenantId": TENANT})
}

/// A team channel the bot was added to.
pub fn channel() -> Value {
    json!({"id": "19:ops-channel@thread.tacv2", "conversationType": "channel", "isGroup": true, "tenantId": TENANT})
}

impl Chat {
    pub async fn start(directory: Option<Arc<dyn GroupDirectory>>) -> Chat {
        Self::start_with(directory, None, &[]).await
    }

    /// With both directories: `groups` says whose Entra groups a person is in (who may decide),
    /// `people` lists the groups' members (who is asked), 1:1 chats opened as in
    /// [`Chat::start_with_people`].
    pub async fn start_with_directories(
        groups: Arc<dyn GroupDirectory>,
        people: Arc<dyn UserDirectory>,
    ) -> Chat {
        Self::start_with(Some(groups), Some(people), &[]).await
    }

    /// As [`Chat::start_with_directories`], over `store` (either database).
    pub async fn start_over_with_directories(
        store: Arc<dyn Store>,
        groups: Arc<dyn GroupDirectory>,
        people: Arc<dyn UserDirectory>,
    ) -> Chat {
        Self::serve(
            FakeConnector::start().await,
            store,
            Some(groups),
            Some(people),
            &[],
            |_| {},
        )
        .await
    }

    /// With a people directory, and 1:1 chats opened through the fake Connector (in the demo
    /// tenant) for people the bot has never talked to; `extra` settings on top.
    pub async fn start_with_people(people: Arc<dyn UserDirectory>, extra: &[(&str, &str)]) -> Chat {
        Self::start_with(None, Some(people), extra).await
    }

    async fn start_with(
        directory: Option<Arc<dyn GroupDirectory>>,
        people: Option<Arc<dyn UserDirectory>>,
        extra: &[(&str, &str)],
    ) -> Chat {
        let connector = FakeConnector::start().await;
        let db = fresh_sqlite().await;
        let service_url = connector.service_url.clone();
        let mut settings: Vec<(&str, &str)> = extra.to_vec();
        if people.is_some() {
            settings.push(("PASSKEY_BOT__SERVICE_URL", &service_url));
            settings.push(("PASSKEY_BOT__TENANT_ID", TENANT));
        }
        let store: Arc<dyn Store> = db.store.clone();
        let mut chat = Self::serve(connector, store, directory, people, &settings, |_| {}).await;
        chat._db = Some(db);
        chat
    }

    /// The app over `store` (either database; the demo data is loaded when it is empty), with
    /// the people directory given and exactly the `extra` settings.
    pub async fn start_over(
        store: Arc<dyn Store>,
        people: Option<Arc<dyn UserDirectory>>,
        extra: &[(&str, &str)],
    ) -> Chat {
        Self::start_over_configured(store, people, extra, |_| {}).await
    }

    /// As `start_over`, with `configure` having the last word on the settings.
    pub async fn start_over_configured(
        store: Arc<dyn Store>,
        people: Option<Arc<dyn UserDirectory>>,
        extra: &[(&str, &str)],
        configure: impl FnOnce(&mut passkey::config::Settings),
    ) -> Chat {
        Self::serve(
            FakeConnector::start().await,
            store,
            None,
            people,
            extra,
            configure,
        )
        .await
    }

    async fn serve(
        connector: FakeConnector,
        store: Arc<dyn Store>,
        directory: Option<Arc<dyn GroupDirectory>>,
        people: Option<Arc<dyn UserDirectory>>,
        settings: &[(&str, &str)],
        configure: impl FnOnce(&mut passkey::config::Settings),
    ) -> Chat {
        passkey::demo::load_if_empty(store.as_ref(), t0())
            .await
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let mut settings = test_settings(dir.path(), settings);
        configure(&mut settings);
        let server =
            TestServer::start_with_directories(settings, store.clone(), directory, people).await;
        Chat {
            connector,
            server,
            store,
            _db: None,
            _dir: dir,
            client: reqwest::Client::new(),
            sent: Default::default(),
        }
    }

    /// Sends `text` as `who` in their 1:1 chat and returns what the bot's reply says (its text
    /// and the text of its card).
    pub async fn say(&self, who: (&str, &str), text: &str) -> String {
        self.say_in(who, personal(who.0), text).await
    }

    /// Sends `text` as `who` in `conversation` (see [`personal`], [`group_chat`], [`channel`])
    /// and returns what the bot's reply there says.
    pub async fn say_in(&self, who: (&str, &str), conversation: Value, text: &str) -> String {
        self.post_message(from(who), conversation, json!({ "text": text }), text)
            .await
    }

    /// Sends `text` in their 1:1 chat as the Teams member `(teams id, name, aad object id)` —
    /// the id the Connector's member lookup is asked about — and returns what the reply says.
    pub async fn say_as(&self, (teams_id, name, aad): (&str, &str, &str), text: &str) -> String {
        let from = json!({"id": teams_id, "name": name, "aadObjectId": aad});
        self.post_message(from, personal(aad), json!({ "text": text }), text)
            .await
    }

    /// Sends `text` as `who` in their 1:1 chat with `extra` activity fields (Teams' `entities`,
    /// `localTimezone`, …) and returns what the bot's reply says.
    pub async fn say_with(&self, who: (&str, &str), text: &str, extra: Value) -> String {
        let mut content = json!({ "text": text });
        for (k, v) in extra.as_object().unwrap() {
            content[k] = v.clone();
        }
        self.post_message(from(who), personal(who.0), content, text)
            .await
    }

    /// An `Action.Submit` button tapped as `who` in `conversation`: a message whose `value` is
    /// the button's data. Returns what the bot's reply there says.
    pub async fn submit_in(&self, who: (&str, &str), conversation: Value, value: Value) -> String {
        let what = value.to_string();
        self.post_message(from(who), conversation, json!({ "value": value }), &what)
            .await
    }

    async fn post_message(
        &self,
        from: Value,
        conversation: Value,
        content: Value,
        what: &str,
    ) -> String {
        let n = self.sent.fetch_add(1, Ordering::SeqCst) + 1;
        let id = format!("m-{n}");
        let mut activity: Value = json!({
            "type": "message",
            "id": id,
            "timestamp": "2026-11-23T09:00:00.000Z",
            "serviceUrl": self.connector.service_url,
            "channelId": "msteams",
            "from": from,
            "conversation": conversation,
            "recipient": {"id": "28:passkey", "name": "Passkey"},
            "channelData": {"tenant": {"id": TENANT}},
        });
        for (k, v) in content.as_object().unwrap() {
            activity[k] = v.clone();
        }
        let r = self
            .client
            .post(self.server.url("/api/messages"))
            .json(&activity)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{what}");
        let suffix = format!("/activities/{id}");
        for _ in 0..100 {
            if let Some(reply) = self
                .connector
                .calls()
                .into_iter()
                .find(|c| c.path.ends_with(&suffix))
            {
                return super::message_text(&reply.body);
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        panic!("no reply to {what:?}");
    }

    /// Taps an `Action.Execute` button as `who` (an `adaptiveCard/action` invoke) and returns the
    /// invoke response body.
    pub async fn tap(&self, who: (&str, &str), verb: &str, data: Value) -> Value {
        self.tap_on(who, None, verb, data).await
    }

    /// Taps a button on the card in message `card_activity_id` (Teams names it in `replyToId`).
    pub async fn tap_on(
        &self,
        who: (&str, &str),
        card_activity_id: Option<&str>,
        verb: &str,
        data: Value,
    ) -> Value {
        self.tap_in(who, personal(who.0), card_activity_id, verb, data)
            .await
    }

    /// Taps a button as `who` on a card in `conversation`.
    pub async fn tap_in(
        &self,
        (aad, name): (&str, &str),
        conversation: Value,
        card_activity_id: Option<&str>,
        verb: &str,
        data: Value,
    ) -> Value {
        let n = self.sent.fetch_add(1, Ordering::SeqCst) + 1;
        let mut activity: Value = json!({
            "type": "invoke",
            "name": "adaptiveCard/action",
            "id": format!("m-{n}"),
            "timestamp": "2026-11-23T09:00:00.000Z",
            "serviceUrl": self.connector.service_url,
            "channelId": "msteams",
            "from": {"id": format!("29:{name}"), "name": name, "aadObjectId": aad},
            "conversation": conversation,
            "recipient": {"id": "28:passkey", "name": "Passkey"},
            "value": {"action": {"type": "Action.Execute", "verb": verb, "data": data}, "trigger": "manual"},
            "channelData": {"tenant": {"id": TENANT}},
        });
        if let Some(id) = card_activity_id {
            activity["replyToId"] = json!(id);
        }
        let r = self
            .client
            .post(self.server.url("/api/messages"))
            .json(&activity)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{verb}");
        r.json().await.unwrap()
    }

    /// Adaptive Cards the bot started in `aad`'s 1:1 chat (not replies), oldest first.
    pub fn cards_to(&self, aad: &str) -> Vec<Value> {
        self.connector
            .calls()
            .into_iter()
            .filter(|c| {
                c.method == "POST" && c.path.ends_with("/activities") && c.path.contains(aad)
            })
            .filter_map(|c| c.body["attachments"][0].get("content").cloned())
            .collect()
    }

    /// Cards the bot updated in place (PUT activity), as (path, card).
    pub fn card_updates(&self) -> Vec<(String, Value)> {
        self.connector
            .calls()
            .into_iter()
            .filter(|c| c.method == "PUT")
            .map(|c| (c.path.clone(), c.body["attachments"][0]["content"].clone()))
            .collect()
    }

    /// Messages the bot started (not replies) in `aad`'s 1:1 chat, oldest first.
    pub fn messages_to(&self, aad: &str) -> Vec<String> {
        self.connector
            .calls()
            .into_iter()
            .filter(|c| {
                c.method == "POST" && c.path.ends_with("/activities") && c.path.contains(aad)
            })
            .map(|c| super::message_text(&c.body))
            .collect()
    }

    /// Every card the bot sent, replied with or updated to, as (what, card).
    pub fn every_card(&self) -> Vec<(String, Value)> {
        self.connector
            .calls()
            .into_iter()
            .filter_map(|c| {
                c.body["attachments"][0]
                    .get("content")
                    .map(|card| (format!("{} {}", c.method, c.path), card.clone()))
            })
            .collect()
    }

    /// The SQLite store under the chat, for raw SQL.
    pub fn sqlite(&self) -> Arc<passkey::store::SqliteStore> {
        self._db
            .as_ref()
            .expect("the chat's own database")
            .store
            .clone()
    }

    pub async fn audit_count(&self) -> usize {
        self.store
            .audit_events_after(0, 10_000)
            .await
            .unwrap()
            .len()
    }
}
