//! #18.6: times in the person's time zone. Teams reports the client's IANA zone with every
//! message (the `clientInfo` entity's `timezone`, and `localTimezone`); the bot keeps the last
//! one per person and shows times there, with the zone named. People whose client never reported
//! a zone the tz database knows read UTC, named. No one ever reads RFC 3339 with a fraction.

use crate::common;

use common::card_text;
use common::chat::Chat;
use serde_json::{Value, json};

const ALICE: (&str, &str) = ("a11ce000-0000-4000-8000-000000000001", "Alice Requester");
const BOB: (&str, &str) = ("b0b00000-0000-4000-8000-000000000002", "Bob DBA Lead");

/// What a Teams client sends about itself: its locale and IANA time zone.
fn client_in(zone: &str) -> Value {
    json!({
        "entities": [{"type": "clientInfo", "locale": "en-US", "country": "US", "platform": "Web", "timezone": zone}],
        "localTimezone": zone,
    })
}

/// Alice's status card for request #1, as a refresh (an invoke: no client info on it).
async fn status_card_text(chat: &Chat) -> String {
    let answer = chat
        .tap(ALICE, "refresh", json!({"requestId": 1, "view": "status"}))
        .await;
    assert_eq!(
        answer["type"], "application/vnd.microsoft.card.adaptive",
        "{answer}"
    );
    card_text(&answer["value"])
}

async fn alice_zone(chat: &Chat) -> Option<String> {
    let alice = chat
        .store
        .user_by_aad_object_id(ALICE.0)
        .await
        .unwrap()
        .unwrap();
    chat.store.user_time_zone(alice.id).await.unwrap()
}

#[tokio::test]
async fn a_reported_zone_is_kept_and_the_next_card_shows_local_time_with_the_zone() {
    let chat = Chat::start(None).await;
    chat.say(BOB, "help").await;
    chat.say_with(
        ALICE,
        "request db-prod 1h because INC-4411 replica lag",
        client_in("Europe/Berlin"),
    )
    .await;
    // Bob approves at 09:00 UTC (the test clock) for 1h: until 11:00 in Berlin in November.
    chat.say(BOB, "approve 1").await;
    assert_eq!(alice_zone(&chat).await.as_deref(), Some("Europe/Berlin"));
    let berlin = status_card_text(&chat).await;
    assert!(
        berlin.contains("until 2026-11-23 11:00 Europe/Berlin"),
        "{berlin}"
    );
    assert!(!berlin.contains("UTC"), "{berlin}");

    // A later message from another zone replaces it.
    chat.say_with(ALICE, "help", client_in("Asia/Tokyo")).await;
    assert_eq!(alice_zone(&chat).await.as_deref(), Some("Asia/Tokyo"));
    let tokyo = status_card_text(&chat).await;
    assert!(
        tokyo.contains("until 2026-11-23 19:00 Asia/Tokyo"),
        "{tokyo}"
    );
    assert!(!tokyo.contains("Berlin"), "{tokyo}");

    // A zone the tz database does not know is ignored: the last real one stays.
    chat.say_with(ALICE, "help", client_in("Mars/Olympus_Mons"))
        .await;
    assert_eq!(alice_zone(&chat).await.as_deref(), Some("Asia/Tokyo"));
    assert!(status_card_text(&chat).await.contains("19:00 Asia/Tokyo"));
}

#[tokio::test]
async fn a_bogus_zone_is_ignored_and_the_person_reads_utc_named() {
    let chat = Chat::start(None).await;
    chat.say(BOB, "help").await;
    chat.say_with(
        ALICE,
        "request db-prod 1h because INC-4411 replica lag",
        client_in("Europe/Nowhere"),
    )
    .await;
    chat.say(BOB, "approve 1").await;
    assert_eq!(alice_zone(&chat).await, None);
    let text = status_card_text(&chat).await;
    assert!(text.contains("until 2026-11-23 10:00 UTC"), "{text}");
}

#[tokio::test]
async fn notices_and_card_updates_show_times_in_their_recipients_zone() {
    let chat = Chat::start(None).await;
    chat.say_with(BOB, "help", client_in("America/New_York"))
        .await;
    chat.say_with(
        ALICE,
        "request db-prod 1h because INC-4411 replica lag",
        client_in("Europe/Berlin"),
    )
    .await;
    // Bob, in New York, approves: what Alice is told, and her status card updated in place,
    // are in Berlin time.
    chat.say_with(BOB, "approve 1", client_in("America/New_York"))
        .await;
    let told = chat.messages_to(ALICE.0).join("\n");
    assert!(told.contains("11:00 Europe/Berlin"), "{told}");
    assert!(!told.contains("New_York"), "{told}");
    let updated: Vec<String> = chat
        .card_updates()
        .iter()
        .map(|(_, card)| card_text(card))
        .filter(|t| t.contains("Access until"))
        .collect();
    assert!(!updated.is_empty(), "the status card followed the approval");
    for text in updated {
        assert!(
            text.contains("until 2026-11-23 11:00 Europe/Berlin"),
            "{text}"
        );
    }
}

#[tokio::test]
async fn each_approvers_decided_card_shows_the_decision_in_their_own_zone() {
    const DAVE: (&str, &str) = ("da7e0000-0000-4000-8000-000000000004", "Dave Platform");
    let chat = Chat::start(None).await;
    chat.say_with(BOB, "help", client_in("America/New_York"))
        .await;
    chat.say_with(DAVE, "help", client_in("Asia/Tokyo")).await;
    chat.say_with(
        ALICE,
        "request db-analytics-readonly 2h because INC-4411 nightly report",
        client_in("Europe/Berlin"),
    )
    .await;
    // Dave decides at 09:00 UTC; both approvers' cards become the decided card.
    chat.say(DAVE, "approve 1 fine").await;
    let decided_in = |aad: &str| -> Vec<String> {
        chat.card_updates()
            .into_iter()
            .filter(|(path, _)| path.contains(aad))
            .map(|(_, card)| card_text(&card))
            .filter(|t| t.contains("Decided at"))
            .collect()
    };
    let bobs = decided_in(BOB.0);
    assert!(
        !bobs.is_empty(),
        "Bob's approval card became the decided card"
    );
    for text in &bobs {
        assert!(
            text.contains("Decided at\n2026-11-23 04:00 America/New_York"),
            "{text}"
        );
    }
    let daves = decided_in(DAVE.0);
    assert!(
        !daves.is_empty(),
        "Dave's approval card became the decided card"
    );
    for text in &daves {
        assert!(
            text.contains("Decided at\n2026-11-23 18:00 Asia/Tokyo"),
            "{text}"
        );
    }
}

/// Every string a person could read in `value` (card text, titles, facts, messages).
fn strings(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::String(s) => out.push(s.clone()),
        Value::Array(items) => items.iter().for_each(|v| strings(v, out)),
        Value::Object(fields) => fields.values().for_each(|v| strings(v, out)),
        _ => {}
    }
}

#[tokio::test]
async fn no_text_in_a_full_journey_shows_rfc3339_with_a_fraction() {
    let rfc3339_fraction =
        regex::Regex::new(r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}[.,]\d+").unwrap();
    let chat = Chat::start(None).await;
    let mut said = vec![chat.say(BOB, "help").await];
    said.push(
        chat.say_with(
            ALICE,
            "request db-prod 1h because INC-4411 replica lag",
            client_in("Europe/Berlin"),
        )
        .await,
    );
    said.push(chat.say(BOB, "pending").await);
    said.push(chat.say(BOB, "approve 1").await);
    // Deciding it again names who decided and when.
    said.push(chat.say(BOB, "approve 1").await);
    said.push(chat.say(BOB, "deny 1 too late").await);
    said.push(chat.say(ALICE, "my requests").await);
    said.push(chat.say(ALICE, "extend 1 30m").await);
    let mut answers = vec![
        chat.tap(ALICE, "refresh", json!({"requestId": 1, "view": "status"}))
            .await,
        chat.tap(ALICE, "refresh", json!({"view": "myRequests"}))
            .await,
        chat.tap(BOB, "approve", json!({"requestId": 1})).await,
    ];
    answers.push(chat.tap(ALICE, "release", json!({"requestId": 1})).await);
    said.push(chat.say(ALICE, "release 1").await);
    said.push(chat.say(ALICE, "my requests").await);

    let mut texts = said;
    let mut everything = Vec::new();
    for (_, card) in chat.every_card() {
        strings(&card, &mut everything);
    }
    for call in chat.connector.calls() {
        if let Some(text) = call.body["text"].as_str() {
            texts.push(text.to_string());
        }
    }
    for answer in &answers {
        strings(&answer["value"], &mut everything);
    }
    texts.extend(everything);
    assert!(
        texts.iter().any(|t| t.contains("Europe/Berlin")),
        "the journey showed a time"
    );
    let shown: Vec<&String> = texts
        .iter()
        .filter(|t| rfc3339_fraction.is_match(t))
        .collect();
    assert!(
        shown.is_empty(),
        "RFC 3339 with a fraction shown to a person: {shown:#?}"
    );
}
