//! The Bot Framework activity, as much of it as Passkey reads and writes. Unknown fields are
//! ignored; fields we rely on are checked by [`Activity::validate`] so a malformed activity is a
//! 400 before anything is stored or sent.

use serde::{Deserialize, Serialize};
use serde_json::Value;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChannelAccount {
    #[serde(default)]
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aad_object_id: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConversationAccount {
    #[serde(default)]
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conversation_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub is_group: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// An inbound activity.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Activity {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub service_url: String,
    #[serde(default)]
    pub channel_id: String,
    #[serde(default)]
    pub from: ChannelAccount,
    #[serde(default)]
    pub conversation: ConversationAccount,
    #[serde(default)]
    pub recipient: ChannelAccount,
    #[serde(default)]
    pub text: Option<String>,
    #[serde(default)]
    pub value: Option<Value>,
    /// Invoke name, e.g. `adaptiveCard/action`.
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub channel_data: Option<Value>,
    #[serde(default)]
    pub members_added: Option<Vec<ChannelAccount>>,
    #[serde(default)]
    pub members_removed: Option<Vec<ChannelAccount>>,
    /// installationUpdate: `add` or `remove` (with `-upgrade` variants).
    #[serde(default)]
    pub action: Option<String>,
    #[serde(default)]
    pub reply_to_id: Option<String>,
    #[serde(default)]
    pub locale: Option<String>,
    /// Teams puts the client's `clientInfo` here (with its IANA `timezone`).
    #[serde(default)]
    pub entities: Option<Vec<Value>>,
    /// The client's IANA time zone, when the channel sends it.
    #[serde(default)]
    pub local_timezone: Option<String>,
}

/// Why an activity is malformed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed activity: {0}")]
pub struct MalformedActivity(pub String);

const MAX_ID_LEN: usize = 1024;

impl Activity {
    /// Parses and checks the fields Passkey relies on.
    pub fn from_json(bytes: &[u8]) -> Result<Activity, MalformedActivity> {
        let activity: Activity = serde_json::from_slice(bytes).map_err(|e| {
            // serde's message names the field and position; never echo the body itself.
            MalformedActivity(format!("invalid JSON ({})", e.classify_name()))
        })?;
        activity.validate()?;
        Ok(activity)
    }

    pub fn validate(&self) -> Result<(), MalformedActivity> {
        let missing = |what: &str| Err(MalformedActivity(format!("`{what}` is required")));
        if self.kind.trim().is_empty() {
            return missing("type");
        }
        if self.channel_id.trim().is_empty() {
            return missing("channelId");
        }
        if self.conversation.id.trim().is_empty() {
            return missing("conversation.id");
        }
        if self.from.id.trim().is_empty() {
            return missing("from.id");
        }
        if self.service_url.trim().is_empty() {
            return missing("serviceUrl");
        }
        match reqwest::Url::parse(&self.service_url) {
            Ok(url) if matches!(url.scheme(), "https" | "http") && url.host().is_some() => {}
            _ => {
                return Err(MalformedActivity(
                    "`serviceUrl` must be an absolute http(s) URL".into(),
                ));
            }
        }
        if matches!(self.kind.as_str(), "message" | "invoke")
            && self.id.as_deref().is_none_or(str::is_empty)
        {
            return missing("id");
        }
        for (name, value) in [
            ("id", self.id.as_deref().unwrap_or_default()),
            ("conversation.id", &self.conversation.id),
            ("from.id", &self.from.id),
        ] {
            if value.len() > MAX_ID_LEN {
                return Err(MalformedActivity(format!("`{name}` is too long")));
            }
        }
        Ok(())
    }

    /// The Teams tenant the activity came from. The channel extractor has checked that
    /// `conversation.tenantId`, when present, says the same as `channelData.tenant.id`.
    pub fn tenant_id(&self) -> Option<&str> {
        self.channel_data_tenant_id()
            .or(self.conversation.tenant_id.as_deref())
    }

    /// `channelData.tenant.id`, where Teams puts the tenant.
    pub fn channel_data_tenant_id(&self) -> Option<&str> {
        self.channel_data
            .as_ref()
            .and_then(|d| d.pointer("/tenant/id"))
            .and_then(Value::as_str)
    }

    pub fn team_id(&self) -> Option<&str> {
        self.channel_data
            .as_ref()
            .and_then(|d| d.pointer("/team/id"))
            .and_then(Value::as_str)
    }

    /// The conversation's kind as Passkey treats it: `personal` only when Teams says so and does
    /// not also say it is a group (`isGroup`); a conversation that names no kind is `unknown`,
    /// and like `groupChat` and `channel` it is read by other people.
    pub fn conversation_type(&self) -> &str {
        match (
            self.conversation.conversation_type.as_deref(),
            self.conversation.is_group,
        ) {
            (Some("personal"), Some(true)) => "groupChat",
            (Some(kind), _) => kind,
            (None, _) => "unknown",
        }
    }

    /// A 1:1 chat between the sender and the bot: nobody else reads what is said there.
    /// The sender's time zone as their client reports it: the `clientInfo` entity's `timezone`,
    /// else `localTimezone`. A name the tz database does not know is no zone.
    pub fn client_zone(&self) -> Option<crate::domain::Zone> {
        let client_info = self
            .entities
            .iter()
            .flatten()
            .filter(|e| e.get("type").and_then(Value::as_str) == Some("clientInfo"))
            .filter_map(|e| e.get("timezone").and_then(Value::as_str));
        client_info
            .chain(self.local_timezone.as_deref())
            .find_map(crate::domain::Zone::named)
    }

    pub fn is_personal(&self) -> bool {
        self.conversation_type() == "personal"
    }
}

trait ClassifyName {
    fn classify_name(&self) -> String;
}

impl ClassifyName for serde_json::Error {
    fn classify_name(&self) -> String {
        match self.classify() {
            serde_json::error::Category::Io => "unreadable".into(),
            serde_json::error::Category::Syntax => format!(
                "syntax error at line {} column {}",
                self.line(),
                self.column()
            ),
            serde_json::error::Category::Data => format!(
                "wrong type at line {} column {}",
                self.line(),
                self.column()
            ),
            serde_json::error::Category::Eof => "truncated".into(),
        }
    }
}

/// An activity the bot sends.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OutgoingActivity {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text_format: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub attachments: Vec<Attachment>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reply_to_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from: Option<ChannelAccount>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recipient: Option<ChannelAccount>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub conversation: Option<ConversationAccount>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Attachment {
    pub content_type: String,
    pub content: crate::cards::Card,
}

pub const ADAPTIVE_CARD_CONTENT_TYPE: &str = "application/vnd.microsoft.card.adaptive";

impl OutgoingActivity {
    pub fn text(text: impl Into<String>) -> Self {
        OutgoingActivity {
            kind: "message".into(),
            text: Some(text.into()),
            text_format: Some("markdown".into()),
            ..Default::default()
        }
    }

    pub fn card(summary: impl Into<String>, card: crate::cards::Card) -> Self {
        OutgoingActivity {
            kind: "message".into(),
            summary: Some(summary.into()),
            attachments: vec![Attachment {
                content_type: ADAPTIVE_CARD_CONTENT_TYPE.into(),
                content: card,
            }],
            ..Default::default()
        }
    }

    pub fn typing() -> Self {
        OutgoingActivity {
            kind: "typing".into(),
            ..Default::default()
        }
    }

    /// Addresses a reply the way the SDKs do: from the bot, to the sender, in the same conversation.
    pub fn addressed_as_reply_to(mut self, inbound: &Activity) -> Self {
        self.from = Some(inbound.recipient.clone());
        self.recipient = Some(inbound.from.clone());
        self.conversation = Some(inbound.conversation.clone());
        self.reply_to_id = inbound.id.clone();
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn base() -> Value {
        json!({
            "type": "message",
            "id": "1700000000000",
            "serviceUrl": "https://smba.trafficmanager.net/emea/",
            "channelId": "msteams",
            "from": {"id": "29:abc", "aadObjectId": "aad-1", "name": "Alice"},
            "conversation": {"id": "a:conv", "conversationType": "personal", "tenantId": "t-1"},
            "recipient": {"id": "28:bot", "name": "Passkey"},
            "text": "help",
            "channelData": {"tenant": {"id": "t-1"}},
            "somethingNew": {"ignored": true}
        })
    }

    #[test]
    fn a_teams_message_parses_and_unknown_fields_are_ignored() {
        let a = Activity::from_json(base().to_string().as_bytes()).unwrap();
        assert_eq!(a.kind, "message");
        assert_eq!(a.from.aad_object_id.as_deref(), Some("aad-1"));
        assert_eq!(a.tenant_id(), Some("t-1"));
        assert_eq!(a.conversation_type(), "personal");
        assert!(a.is_personal());
    }

    #[test]
    fn only_a_conversation_that_says_personal_and_not_group_is_personal() {
        for (conversation, kind) in [
            (
                json!({"id": "a:1", "conversationType": "personal"}),
                "personal",
            ),
            (
                json!({"id": "a:1", "conversationType": "personal", "isGroup": false}),
                "personal",
            ),
            (
                json!({"id": "19:g", "conversationType": "personal", "isGroup": true}),
                "groupChat",
            ),
            (
                json!({"id": "19:g", "conversationType": "groupChat"}),
                "groupChat",
            ),
            (
                json!({"id": "19:c", "conversationType": "channel"}),
                "channel",
            ),
            (json!({"id": "a:1"}), "unknown"),
            (json!({"id": "a:1", "isGroup": false}), "unknown"),
        ] {
            let mut v = base();
            v["conversation"] = conversation.clone();
            let a = Activity::from_json(v.to_string().as_bytes()).unwrap();
            assert_eq!(a.conversation_type(), kind, "{conversation}");
            assert_eq!(a.is_personal(), kind == "personal", "{conversation}");
        }
    }

    #[test]
    fn missing_or_mistyped_fields_are_named() {
        for (pointer, replacement, expected) in [
            ("/conversation", json!({}), "`conversation.id` is required"),
            ("/conversation", json!(null), "wrong type"),
            ("/from", json!({}), "`from.id` is required"),
            ("/serviceUrl", json!(""), "`serviceUrl` is required"),
            ("/serviceUrl", json!("not a url"), "absolute http(s) URL"),
            ("/serviceUrl", json!("ftp://x/"), "absolute http(s) URL"),
            ("/channelId", json!(""), "`channelId` is required"),
            ("/id", json!(""), "`id` is required"),
            ("/type", json!(42), "wrong type"),
            ("/text", json!({"nested": 1}), "wrong type"),
        ] {
            let mut v = base();
            *v.pointer_mut(pointer).unwrap() = replacement;
            let err = Activity::from_json(v.to_string().as_bytes()).unwrap_err();
            assert!(err.to_string().contains(expected), "{pointer}: {err}");
        }
        assert!(
            Activity::from_json(b"{not json")
                .unwrap_err()
                .to_string()
                .contains("syntax error")
        );
        assert!(
            Activity::from_json(b"")
                .unwrap_err()
                .to_string()
                .contains("truncated")
        );
        assert!(
            Activity::from_json(b"[]")
                .unwrap_err()
                .to_string()
                .contains("wrong type")
        );
        let mut v = base();
        v["conversation"]["id"] = json!("x".repeat(5000));
        assert!(
            Activity::from_json(v.to_string().as_bytes())
                .unwrap_err()
                .to_string()
                .contains("too long")
        );
    }

    /// The decoder sees whatever the network sends: random corruptions of a real activity must
    /// come back as errors or activities, never a panic.
    #[test]
    fn corrupted_activities_never_panic_the_decoder() {
        let valid = base().to_string().into_bytes();
        let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let alphabet = b"{}[]\",:0123456789-etrufalsnu\\ \x00\xff";
        let (mut accepted, mut refused) = (0, 0);
        for _ in 0..20_000 {
            let mut bytes = valid.clone();
            for _ in 0..(next() % 6 + 1) {
                if bytes.is_empty() {
                    break;
                }
                let at = (next() as usize) % bytes.len();
                match next() % 3 {
                    0 => bytes[at] = alphabet[(next() as usize) % alphabet.len()],
                    1 => {
                        bytes.remove(at);
                    }
                    _ => bytes.truncate(at.max(1)),
                }
            }
            match Activity::from_json(&bytes) {
                Ok(a) => {
                    assert!(a.validate().is_ok());
                    accepted += 1;
                }
                Err(_) => refused += 1,
            }
        }
        assert!(refused > 0 && accepted + refused == 20_000);
    }

    #[test]
    fn conversation_updates_need_no_id() {
        let mut v = base();
        v["type"] = json!("conversationUpdate");
        v.as_object_mut().unwrap().remove("id");
        assert!(Activity::from_json(v.to_string().as_bytes()).is_ok());
    }

    #[test]
    fn replies_are_addressed_back_to_the_sender() {
        let inbound = Activity::from_json(base().to_string().as_bytes()).unwrap();
        let reply = OutgoingActivity::text("hi").addressed_as_reply_to(&inbound);
        let v = serde_json::to_value(&reply).unwrap();
        assert_eq!(v["recipient"]["id"], "29:abc");
        assert_eq!(v["from"]["id"], "28:bot");
        assert_eq!(v["replyToId"], "1700000000000");
        assert_eq!(v["type"], "message");
        assert!(v.get("attachments").is_none());
    }
}
