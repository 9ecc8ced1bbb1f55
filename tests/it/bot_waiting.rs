//! #18 items 1, 2 and 8 through Teams: truthful waiting (who was asked, who could not be reached,
//! and what waited for an approver delivered when they first talk to the bot), getting back to
//! Retrieve (`my requests`, `status N`, the approval notice), and status cards in group chats.

use crate::common;

use common::card_text;
use common::chat::{Chat, group_chat, personal};
use passkey::domain::RequestStatus;
use serde_json::{Value, json};

const ALICE: (&str, &str) = ("a11ce000-0000-4000-8000-000000000001", "Alice Requester");
const BOB: (&str, &str) = ("b0b00000-0000-4000-8000-000000000002", "Bob DBA Lead");
const DAVE: (&str, &str) = ("da7e0000-0000-4000-8000-000000000004", "Dave Platform");
const CAROL: (&str, &str) = ("ca201000-0000-4000-8000-000000000003", "Carol SecOps");
const ERIN: (&str, &str) = ("e2140000-0000-4000-8000-000000000005", "Erin Contractor");
const ROUTED: &str = "request db-analytics-readonly 2h because INC-4411 nightly report";

/// Every action on a card (nested cards too), as (type, title, url or verb).
fn actions(card: &Value) -> Vec<(String, String, String)> {
    fn walk(v: &Value, out: &mut Vec<(String, String, String)>) {
        match v {
            Value::Object(map) => {
                let kind = map.get("type").and_then(Value::as_str).unwrap_or_default();
                if kind.starts_with("Action.") {
                    let target = map
                        .get("url")
                        .or_else(|| map.get("verb"))
                        .and_then(Value::as_str)
                        .unwrap_or_default();
                    out.push((
                        kind.to_string(),
                        map["title"].as_str().unwrap_or_default().to_string(),
                        target.to_string(),
                    ));
                }
                for (key, child) in map {
                    if key != "refresh" {
                        walk(child, out);
                    }
                }
            }
            Value::Array(items) => items.iter().for_each(|i| walk(i, out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(card, &mut out);
    out
}

fn titles(card: &Value) -> Vec<String> {
    actions(card).into_iter().map(|(_, t, _)| t).collect()
}

/// The latest card the bot sent in `aad`'s chat.
fn last_card_to(chat: &Chat, aad: &str) -> Value {
    chat.cards_to(aad).pop().expect("a card")
}

async fn install(chat: &Chat, (aad, name): (&str, &str)) {
    let activity = json!({
        "type": "conversationUpdate",
        "id": format!("install-{aad}"),
        "timestamp": "2026-11-23T09:00:00.000Z",
        "serviceUrl": chat.connector.service_url,
        "channelId": "msteams",
        "from": {"id": format!("29:{name}"), "name": name, "aadObjectId": aad},
        "conversation": personal(aad),
        "recipient": {"id": "28:passkey", "name": "Passkey"},
        "membersAdded": [{"id": "28:passkey"}],
        "channelData": {"tenant": {"id": common::channel::TENANT}},
    });
    let r = reqwest::Client::new()
        .post(chat.server.url("/api/messages"))
        .json(&activity)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

// --- 1. Truthful waiting ----------------------------------------------------------------------

#[tokio::test]
async fn the_status_card_names_who_was_asked_and_who_could_not_be_reached() {
    let chat = Chat::start(None).await;
    chat.say(BOB, "help").await; // Bob has a chat with the bot; Dave never talked to it.
    let asked = chat.say(ALICE, ROUTED).await;
    assert!(
        asked.contains("Asked: Bob DBA Lead.")
            && asked.contains("Not reached yet: Dave Platform (has no chat with Passkey)"),
        "{asked}"
    );
    assert!(!asked.contains("The approvers have been asked"), "{asked}");

    // Nobody reachable at all: the card does not pretend anyone was asked.
    let chat = Chat::start(None).await;
    let asked = chat.say(ALICE, ROUTED).await;
    assert!(
        asked.contains(
            "Nobody could be reached yet: Bob DBA Lead and Dave Platform have no chat with Passkey"
        ),
        "{asked}"
    );
    assert!(!asked.contains("Asked:"), "{asked}");
}

#[tokio::test]
async fn an_approver_who_first_talks_to_the_bot_gets_what_waits_for_them_once() {
    let chat = Chat::start(None).await;
    chat.say(ALICE, ROUTED).await;
    chat.say(ALICE, "request redis-prod 1h because INC-4412 cache flush")
        .await;
    assert!(chat.cards_to(BOB.0).is_empty(), "Bob could not be reached");

    let answer = chat.say(BOB, "help").await;
    assert!(answer.contains("Passkey commands"), "{answer}");
    let cards = chat.cards_to(BOB.0);
    let waiting: Vec<&Value> = cards
        .iter()
        .filter(|c| card_text(c).contains("wait for you"))
        .collect();
    assert_eq!(waiting.len(), 1, "{cards:?}");
    let text = card_text(waiting[0]);
    assert!(text.starts_with("2 requests wait for you"), "{text}");
    assert!(
        text.contains("#1 · db-analytics-readonly") && text.contains("#2 · redis-prod"),
        "{text}"
    );
    let reviews: Vec<_> = actions(waiting[0])
        .into_iter()
        .filter(|(_, title, _)| title == "Review")
        .collect();
    assert_eq!(reviews.len(), 2, "a Review button each: {text}");

    // Told once: the next message is answered without it.
    chat.say(BOB, "help").await;
    let again = chat
        .cards_to(BOB.0)
        .iter()
        .filter(|c| card_text(c).contains("wait for you"))
        .count();
    assert_eq!(again, 1);

    // The requester's card now names Bob as asked; Dave still waits to hear.
    let status = chat.say(ALICE, "status 1").await;
    assert!(
        status.contains("Asked: Bob DBA Lead. Not reached yet: Dave Platform"),
        "{status}"
    );
}

#[tokio::test]
async fn a_decided_request_is_not_delivered_as_waiting() {
    let chat = Chat::start(None).await;
    chat.say(DAVE, "help").await;
    chat.say(ALICE, ROUTED).await;
    chat.say(DAVE, "approve 1 fine").await;
    chat.say(BOB, "help").await;
    assert!(
        !chat
            .cards_to(BOB.0)
            .iter()
            .any(|c| card_text(c).contains("wait for you")),
        "nothing waits for Bob any more"
    );
}

#[tokio::test]
async fn an_approvers_welcome_lists_what_waits_for_them() {
    let chat = Chat::start(None).await;
    chat.say(ALICE, ROUTED).await;
    install(&chat, DAVE).await;
    let mut welcome = None;
    for _ in 0..100 {
        welcome = chat.cards_to(DAVE.0).pop();
        if welcome.is_some() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let welcome = welcome.expect("a welcome card");
    let text = card_text(&welcome);
    assert!(text.starts_with("Hi Dave Platform, I'm Passkey"), "{text}");
    assert!(text.contains("1 request waits for you"), "{text}");
    assert!(text.contains("#1 · db-analytics-readonly"), "{text}");
    assert!(text.contains("Alice Requester"), "{text}");
    assert!(
        actions(&welcome)
            .iter()
            .any(|(_, title, verb)| title == "Review" && verb == "refresh"),
        "{welcome}"
    );
    assert!(common::adaptive_card_errors(&welcome).is_empty());
    // The welcome delivered it: the first message does not repeat it.
    chat.say(DAVE, "help").await;
    assert!(
        !chat
            .cards_to(DAVE.0)
            .iter()
            .any(|c| card_text(c).contains("wait for you") && !card_text(c).starts_with("Hi ")),
    );

    // Someone with nothing waiting gets the plain welcome.
    install(&chat, CAROL).await;
    for _ in 0..100 {
        if !chat.cards_to(CAROL.0).is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let text = card_text(&last_card_to(&chat, CAROL.0));
    assert!(!text.contains("wait"), "{text}");
}

// --- 2. Getting back to Retrieve --------------------------------------------------------------

#[tokio::test]
async fn my_requests_offers_retrieve_while_retrievals_are_left() {
    let chat = Chat::start(None).await;
    chat.say(BOB, "help").await;
    chat.say(ALICE, ROUTED).await;
    chat.say(ALICE, "request redis-prod 1h because INC-4412 cache flush")
        .await;
    chat.say(BOB, "approve 1 ok").await;
    chat.say(ALICE, "my requests").await;
    let card = chat
        .connector
        .calls()
        .into_iter()
        .rev()
        .find_map(|c| c.body["attachments"][0].get("content").cloned())
        .unwrap();
    let retrieve: Vec<_> = actions(&card)
        .into_iter()
        .filter(|(_, title, _)| title == "Retrieve")
        .collect();
    assert_eq!(retrieve.len(), 1, "only the approved request: {card}");
    assert_eq!(retrieve[0].0, "Action.OpenUrl");
    assert!(retrieve[0].2.ends_with("/requests/1/issue"), "{retrieve:?}");
    assert!(common::adaptive_card_errors(&card).is_empty());

    // No retrievals left: no Retrieve.
    common::RawSql::exec(
        chat.sqlite().as_ref(),
        "UPDATE requests SET issuance_count = max_issuances WHERE id = 1",
    )
    .await
    .unwrap();
    let mine = chat.say(ALICE, "my requests").await;
    assert!(!mine.contains("Retrieve"), "{mine}");
}

#[tokio::test]
async fn status_n_shows_the_status_card_to_those_who_may_see_it() {
    let chat = Chat::start(None).await;
    chat.say(BOB, "help").await;
    chat.say(ALICE, ROUTED).await;
    chat.say(BOB, "approve 1 ok").await;
    let status = chat.say(ALICE, "status 1").await;
    assert!(status.contains("Approved"), "{status}");
    assert!(
        status.contains("Request #1 · db-analytics-readonly"),
        "{status}"
    );
    assert!(status.contains("Retrieve"), "{status}");
    // Recorded, so it follows later changes in place.
    let kinds: Vec<String> = chat
        .store
        .sent_cards_for_request(1)
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.card_kind)
        .collect();
    assert!(
        kinds.iter().filter(|k| *k == "status").count() >= 2,
        "{kinds:?}"
    );

    // An admin sees the request as decided, without the requester's Retrieve.
    let admin = chat.say(CAROL, "status 1").await;
    assert!(admin.contains("Decided by\nBob DBA Lead"), "{admin}");
    assert!(!admin.contains("Retrieve"), "{admin}");
    let stranger = chat.say(ERIN, "status 1").await;
    assert!(!stranger.contains("db-analytics-readonly"), "{stranger}");
    let nothing = chat.say(ALICE, "status 99").await;
    assert!(!nothing.contains("Retrieve"), "{nothing}");
    let usage = chat.say(ALICE, "status").await;
    assert!(usage.contains("status 42"), "{usage}");
}

#[tokio::test]
async fn the_approval_notice_carries_retrieve_and_the_approvers_confirmation_does_not() {
    let chat = Chat::start(None).await;
    chat.say(BOB, "help").await;
    chat.say(ALICE, ROUTED).await;
    let confirmation = chat.say(BOB, "approve 1 ok").await;
    assert!(confirmation.contains("is **approved**"), "{confirmation}");
    assert!(
        !confirmation.contains("/requests/1/issue") && !confirmation.contains("Retrieve"),
        "the approver is not handed the requester's link: {confirmation}"
    );
    assert_eq!(
        chat.store.request_by_id(1).await.unwrap().unwrap().status,
        RequestStatus::Approved
    );

    let notice = last_card_to(&chat, ALICE.0);
    assert!(card_text(&notice).starts_with("Approved\n"), "{notice}");
    assert!(
        actions(&notice)
            .iter()
            .any(|(kind, title, url)| kind == "Action.OpenUrl"
                && title == "Retrieve"
                && url.ends_with("/requests/1/issue")),
        "{notice}"
    );
    let recorded = chat.store.sent_cards_for_request(1).await.unwrap();
    assert!(
        recorded.iter().filter(|c| c.card_kind == "status").count() >= 2,
        "the notice's card is recorded for updates in place: {recorded:?}"
    );

    // An approver tapping Approve on the card gets the decided card: no link either.
    let chat = Chat::start(None).await;
    chat.say(BOB, "help").await;
    chat.say(ALICE, ROUTED).await;
    let answer = chat.tap(BOB, "approve", json!({"requestId": 1})).await;
    assert!(
        !answer.to_string().contains("/requests/1/issue"),
        "{answer}"
    );
}

// --- 8. Status cards in group chats -----------------------------------------------------------

#[tokio::test]
async fn a_status_card_in_a_group_chat_refreshes_for_the_requester_alone() {
    let chat = Chat::start(None).await;
    chat.say(BOB, "help").await;
    chat.say(ALICE, ROUTED).await;
    chat.say(BOB, "approve 1 ok").await;

    let mine = chat
        .tap_in(
            ALICE,
            group_chat(),
            None,
            "refresh",
            json!({"requestId": 1, "view": "status"}),
        )
        .await;
    let card = &mine["value"];
    assert_eq!(
        card["refresh"]["userIds"],
        json!(["29:Alice Requester"]),
        "{card}"
    );
    assert_eq!(card["refresh"]["action"]["verb"], "refresh");
    assert_eq!(
        card["refresh"]["action"]["data"],
        json!({"requestId": 1, "view": "status"})
    );
    let buttons = titles(card);
    assert!(buttons.contains(&"Release".to_string()), "{buttons:?}");
    assert!(buttons.contains(&"Extend".to_string()), "{buttons:?}");
    assert!(common::adaptive_card_errors(card).is_empty());

    // Anyone else's refresh of that card shows no Release or Extend.
    let theirs = chat
        .tap_in(
            BOB,
            group_chat(),
            None,
            "refresh",
            json!({"requestId": 1, "view": "status"}),
        )
        .await;
    let buttons = titles(&theirs["value"]);
    assert!(!buttons.contains(&"Release".to_string()), "{buttons:?}");
    assert!(!buttons.contains(&"Extend".to_string()), "{buttons:?}");

    // In the 1:1 chat the card needs no per-user refresh.
    let personal = chat
        .tap(ALICE, "refresh", json!({"requestId": 1, "view": "status"}))
        .await;
    assert!(personal["value"].get("refresh").is_none(), "{personal}");
}
