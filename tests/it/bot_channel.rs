//! #18 item 7 through Teams: a GROUP approver authority that names a team channel gets its
//! approval card posted there, one copy for everyone, refreshing to a view with Approve and Deny
//! for the group's members alone; anyone in the group may decide there, nobody else; every copy
//! shows the outcome in place; a channel that cannot be reached falls back to the 1:1 cards and
//! the requester is told.

use crate::common;

use common::card_text;
use common::chat::{Chat, channel};
use passkey::domain::{PrincipalType, RequestStatus};
use passkey::governance::directory::{DirectoryUser, StaticDirectory};
use passkey::governance::permissions::{Group, StaticGroupDirectory};
use serde_json::{Value, json};
use std::sync::Arc;

const ALICE: (&str, &str) = ("a11ce000-0000-4000-8000-000000000001", "Alice Requester");
const BOB: (&str, &str) = ("b0b00000-0000-4000-8000-000000000002", "Bob DBA Lead");
const CAROL: (&str, &str) = ("ca201000-0000-4000-8000-000000000003", "Carol SecOps");
const DAVE: (&str, &str) = ("da7e0000-0000-4000-8000-000000000004", "Dave Platform");
const ERIN: (&str, &str) = ("e2140000-0000-4000-8000-000000000005", "Erin Contractor");
/// The team channel of `common::chat::channel()`.
const CHANNEL: &str = "19:ops-channel@thread.tacv2";
/// jenkins-deploy is approved by the Entra group sre-oncall (and its owner, Dave).
const JENKINS: &str = "j3nk1nsD3pl0yK3y000007";
const REQUEST: &str = "request jenkins-deploy 1h because INC-4414 hotfix deploy";

/// Erin is in sre-oncall, both as her groups say (she may decide) and as the group's member list
/// says (she is asked). Everyone has talked to the bot; the bot is in the team channel.
async fn team() -> Chat {
    team_over(None).await
}

/// As [`team`], over `store` when given (else the chat's own SQLite database).
async fn team_over(store: Option<Arc<dyn passkey::store::Store>>) -> Chat {
    let groups =
        StaticGroupDirectory::new().with_member(ERIN.0, Group::new("sre-oncall", "SRE-Oncall"));
    let people = StaticDirectory::new()
        .with_user(DirectoryUser::new(ERIN.0, ERIN.1, "erin@contoso.example"))
        .with_group("sre-oncall", &[ERIN.0]);
    let chat = match store {
        Some(store) => {
            Chat::start_over_with_directories(store, Arc::new(groups), Arc::new(people)).await
        }
        None => Chat::start_with_directories(Arc::new(groups), Arc::new(people)).await,
    };
    for who in [ALICE, BOB, CAROL, DAVE, ERIN] {
        chat.say(who, "help").await;
    }
    chat.say_in(ERIN, channel(), "help").await;
    chat
}

/// The id of jenkins-deploy's GROUP authority.
async fn group_authority(chat: &Chat) -> i64 {
    let record = chat.store.record_by_uid(JENKINS).await.unwrap().unwrap();
    let resource = chat
        .store
        .governed_resource_for_record(record.id)
        .await
        .unwrap()
        .unwrap();
    chat.store
        .authority_history(resource.id)
        .await
        .unwrap()
        .into_iter()
        .find(|a| a.principal_type == PrincipalType::Group)
        .expect("jenkins-deploy has a group authority")
        .id
}

async fn with_channel(chat: &Chat) -> i64 {
    let id = group_authority(chat).await;
    let answer = chat
        .say(CAROL, &format!("admin authority channel {id} {CHANNEL}"))
        .await;
    assert!(answer.contains("now also posted"), "{answer}");
    id
}

/// Cards the bot started in the team channel (not replies), oldest first.
fn channel_posts(chat: &Chat) -> Vec<Value> {
    chat.connector
        .calls()
        .into_iter()
        .filter(|c| {
            c.method == "POST" && c.path.contains(CHANNEL) && c.path.ends_with("/activities")
        })
        .filter_map(|c| c.body["attachments"][0].get("content").cloned())
        .collect()
}

/// The titles of a card's buttons (its `refresh` action left out).
fn buttons(card: &Value) -> Vec<String> {
    card["actions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|a| a["title"].as_str().map(String::from))
        .collect()
}

async fn status(chat: &Chat, id: i64) -> RequestStatus {
    chat.store.request_by_id(id).await.unwrap().unwrap().status
}

#[tokio::test]
async fn an_unknown_channel_is_refused_and_changes_nothing() {
    let chat = team().await;
    let id = group_authority(&chat).await;
    let before = chat.audit_count().await;

    let answer = chat
        .say(
            CAROL,
            &format!("admin authority channel {id} 19:nowhere@thread.tacv2"),
        )
        .await;
    assert!(answer.contains("Passkey knows no team channel"), "{answer}");
    // A chat the bot knows that is not a team channel is no approval channel either.
    let answer = chat
        .say(
            CAROL,
            &format!("admin authority channel {id} a:{}-personal", ERIN.0),
        )
        .await;
    assert!(answer.contains("Passkey knows no team channel"), "{answer}");
    // Only a group's authority posts in a channel.
    let record = chat.store.record_by_uid(JENKINS).await.unwrap().unwrap();
    let resource = chat
        .store
        .governed_resource_for_record(record.id)
        .await
        .unwrap()
        .unwrap();
    let dave_row = chat
        .store
        .authority_history(resource.id)
        .await
        .unwrap()
        .into_iter()
        .find(|a| a.principal_type != PrincipalType::Group)
        .unwrap();
    let answer = chat
        .say(
            CAROL,
            &format!("admin authority channel {} {CHANNEL}", dave_row.id),
        )
        .await;
    assert!(answer.contains("is not a group's authority"), "{answer}");
    // Nobody but an admin may name one.
    let answer = chat
        .say(DAVE, &format!("admin authority channel {id} {CHANNEL}"))
        .await;
    assert!(answer.contains("for Passkey admins"), "{answer}");

    assert_eq!(chat.store.approval_channel(id).await.unwrap(), None);
    let refused_admin_events = 1;
    assert_eq!(chat.audit_count().await, before + refused_admin_events);

    chat.say(ALICE, REQUEST).await;
    assert!(channel_posts(&chat).is_empty());
}

#[tokio::test]
async fn a_group_member_approves_from_the_channel_and_every_copy_shows_it() {
    member_approves_from_the_channel(team().await).await;
}

#[tokio::test]
async fn a_group_member_approves_from_the_channel_on_postgres_too() {
    let Some(db) = common::fresh_pg().await else {
        return;
    };
    member_approves_from_the_channel(team_over(Some(db.store.clone())).await).await;
}

async fn member_approves_from_the_channel(chat: Chat) {
    let authority = with_channel(&chat).await;
    let set = chat
        .store
        .approval_channel(authority)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(set.conversation_id, CHANNEL);
    assert_eq!(set.set_by, "user:5", "Carol, as the audit trail names her");

    let reply = chat.say(ALICE, REQUEST).await;
    assert!(
        reply.contains("Posted in the approvers' team channel too."),
        "{reply}"
    );

    // One card in the channel, for everyone: no buttons, who decides, and the group members'
    // clients refresh it to their own view.
    let posts = channel_posts(&chat);
    assert_eq!(posts.len(), 1, "{posts:?}");
    let card = &posts[0];
    assert_eq!(
        buttons(card),
        vec!["Refresh"],
        "nobody decides on the shared copy"
    );
    let text = card_text(card);
    assert!(text.contains("hotfix deploy"), "{text}");
    assert!(
        text.contains("Members of the approver group sre-oncall decide here"),
        "{text}"
    );
    assert_eq!(card["refresh"]["userIds"], json!(["29:Erin Contractor"]));
    assert_eq!(
        card["refresh"]["action"]["data"],
        json!({"requestId": 1, "view": "approver"})
    );
    assert!(common::adaptive_card_errors(card).is_empty());
    // Erin is still asked in her 1:1 chat as well.
    assert!(
        chat.cards_to(ERIN.0)
            .iter()
            .any(|c| buttons(c).contains(&"Approve".to_string()))
    );
    let copies = chat.store.sent_cards_for_request(1).await.unwrap();
    let posted = copies
        .iter()
        .find(|c| c.card_kind == "approval-channel")
        .expect("the channel's copy is recorded");
    assert_eq!(posted.conversation_id, CHANNEL);
    assert_eq!(posted.recipient_user_id, None);

    // Erin's client refreshes the channel card to her view, with Approve and Deny.
    let hers = chat
        .tap_in(
            ERIN,
            channel(),
            Some(&posted.activity_id),
            "refresh",
            json!({"requestId": 1, "view": "approver"}),
        )
        .await;
    let hers = buttons(&hers["value"]);
    assert!(
        hers.contains(&"Approve".to_string()) && hers.contains(&"Deny".to_string()),
        "{hers:?}"
    );
    // Bob, in the channel but not in the group, gets no view of his own.
    let his = chat
        .tap_in(
            BOB,
            channel(),
            Some(&posted.activity_id),
            "refresh",
            json!({"requestId": 1, "view": "approver"}),
        )
        .await;
    assert_eq!(his["value"], "Request #1 is not yours.", "{his}");

    // Bob taps Approve anyway (a crafted invoke): refused, nothing changes.
    let answer = chat
        .tap_in(
            BOB,
            channel(),
            Some(&posted.activity_id),
            "approve",
            json!({"requestId": 1}),
        )
        .await;
    assert_eq!(
        answer["type"], "application/vnd.microsoft.activity.message",
        "{answer}"
    );
    assert_eq!(status(&chat, 1).await, RequestStatus::Pending);
    // The requester never approves her own request, from the channel either.
    let answer = chat
        .tap_in(
            ALICE,
            channel(),
            Some(&posted.activity_id),
            "approve",
            json!({"requestId": 1}),
        )
        .await;
    assert_eq!(
        answer["type"], "application/vnd.microsoft.activity.message",
        "{answer}"
    );
    assert_eq!(status(&chat, 1).await, RequestStatus::Pending);
    assert!(chat.card_updates().is_empty(), "{:?}", chat.card_updates());

    // Erin approves from the channel.
    let answer = chat
        .tap_in(
            ERIN,
            channel(),
            Some(&posted.activity_id),
            "approve",
            json!({"requestId": 1}),
        )
        .await;
    assert_eq!(status(&chat, 1).await, RequestStatus::Approved);
    assert!(
        card_text(&answer["value"]).contains("Erin Contractor"),
        "{answer}"
    );
    // Every copy shows the outcome in place: the channel's, and the 1:1 copies.
    let updates = chat.card_updates();
    let in_channel = updates
        .iter()
        .find(|(path, _)| path.contains(CHANNEL) && path.ends_with(&posted.activity_id))
        .unwrap_or_else(|| panic!("the channel copy was not updated: {updates:?}"));
    let decided = card_text(&in_channel.1);
    assert!(decided.contains("Approved"), "{decided}");
    assert!(decided.contains("Erin Contractor"), "{decided}");
    assert!(
        buttons(&in_channel.1).is_empty() || !buttons(&in_channel.1).contains(&"Approve".into())
    );
    assert!(in_channel.1.get("refresh").is_none(), "{}", in_channel.1);
    for aad in [ERIN.0, DAVE.0] {
        assert!(
            updates.iter().any(|(path, _)| path.contains(aad)),
            "{aad}'s copy was not updated: {updates:?}"
        );
    }
}

#[tokio::test]
async fn a_channel_that_cannot_be_reached_falls_back_to_personal_chats() {
    let chat = team().await;
    with_channel(&chat).await;
    // The bot was removed from the team.
    chat.connector.refuse_path("tacv2/activities", 1, 403);

    let reply = chat.say(ALICE, REQUEST).await;
    assert!(
        reply.contains("The approvers' team channel could not be reached; its members were asked in their 1:1 chats."),
        "{reply}"
    );
    assert!(!reply.contains("BotNotInConversationRoster"), "{reply}");
    assert!(!reply.contains("403"), "{reply}");
    assert_eq!(chat.store.channel_misses_for_request(1).await.unwrap(), 1);
    assert!(
        chat.store
            .sent_cards_for_request(1)
            .await
            .unwrap()
            .iter()
            .all(|c| c.card_kind != "approval-channel")
    );
    // Erin was asked in her 1:1 chat and decides there.
    assert!(
        chat.cards_to(ERIN.0)
            .iter()
            .any(|c| buttons(c).contains(&"Approve".to_string()))
    );
    chat.say(ERIN, "approve 1 ok").await;
    assert_eq!(status(&chat, 1).await, RequestStatus::Approved);
}

#[tokio::test]
async fn clearing_the_channel_stops_posting_there() {
    let chat = team().await;
    let id = with_channel(&chat).await;
    let answer = chat
        .say(CAROL, &format!("admin authority channel {id} none"))
        .await;
    assert!(answer.contains("no longer posted"), "{answer}");
    assert_eq!(chat.store.approval_channel(id).await.unwrap(), None);
    let answer = chat
        .say(CAROL, &format!("admin authority channel {id} none"))
        .await;
    assert!(answer.contains("nothing changed"), "{answer}");

    chat.say(ALICE, REQUEST).await;
    assert!(channel_posts(&chat).is_empty());
    let actions: Vec<String> = chat
        .store
        .audit_events_after(0, 10_000)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.action)
        .filter(|a| a.starts_with("APPROVAL_CHANNEL"))
        .collect();
    assert_eq!(
        actions,
        ["APPROVAL_CHANNEL_SET", "APPROVAL_CHANNEL_CLEARED"]
    );
}
