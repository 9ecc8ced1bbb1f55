//! Input mistakes on a request (issue #18, item 3): the request form checks what it can before
//! it is sent, and a typed request or a submitted form with an input error is answered with the
//! form again, filled in and saying what was wrong, and creates no request and no audit event.
//! A policy denial stays a denial.

use crate::common;

use common::chat::Chat;
use common::{adaptive_card_errors, card_text};
use passkey::domain::RequestStatus;
use serde_json::{Value, json};

const ALICE: (&str, &str) = ("a11ce000-0000-4000-8000-000000000001", "Alice Requester");
const BOB: (&str, &str) = ("b0b00000-0000-4000-8000-000000000002", "Bob DBA Lead");
const DB_PROD: &str = "dbPr0dPgL0g1nR3c0rd001";

/// The input with this id anywhere in the card.
fn input<'a>(card: &'a Value, id: &str) -> &'a Value {
    fn find<'a>(v: &'a Value, id: &str) -> Option<&'a Value> {
        match v {
            Value::Object(m) => {
                if m.get("type")
                    .and_then(Value::as_str)
                    .is_some_and(|t| t.starts_with("Input."))
                    && m.get("id").and_then(Value::as_str) == Some(id)
                {
                    return Some(v);
                }
                m.values().find_map(|c| find(c, id))
            }
            Value::Array(items) => items.iter().find_map(|c| find(c, id)),
            _ => None,
        }
    }
    find(card, id).unwrap_or_else(|| panic!("no input `{id}` in {card}"))
}

/// The last card the bot sent or replied with.
fn last_card(chat: &Chat) -> Value {
    chat.connector
        .calls()
        .into_iter()
        .rev()
        .find_map(|c| c.body["attachments"][0].get("content").cloned())
        .expect("a card")
}

fn assert_valid(card: &Value) {
    let errors = adaptive_card_errors(card);
    assert!(errors.is_empty(), "{errors:?}\n{card:#}");
}

async fn nothing_requested(chat: &Chat, audit_before: usize) {
    assert!(chat.store.request_by_id(1).await.unwrap().is_none());
    assert_eq!(chat.audit_count().await, audit_before, "no audit event");
}

#[tokio::test]
async fn the_form_checks_the_reason_and_names_each_durations_limit() {
    let chat = Chat::start(None).await;
    chat.say(ALICE, "request").await;
    let form = last_card(&chat);
    assert_valid(&form);

    // The reason must have the policy's 8 characters, blanks at the ends aside.
    let why = input(&form, "justification");
    assert_eq!(why["isRequired"], true);
    assert!(
        why["errorMessage"]
            .as_str()
            .unwrap()
            .contains("at least 8 characters"),
        "{why}"
    );
    let pattern = regex::Regex::new(why["regex"].as_str().expect("a regex")).unwrap();
    for (text, ok) in [
        ("INC-4411", true),
        ("  replica lag  ", true),
        ("a b c d ", false),
        ("short", false),
        ("       x", false),
        ("", false),
        ("two\nlines", true),
    ] {
        assert_eq!(pattern.is_match(text), ok, "{text:?}");
    }

    // Alice sees records of every sensitivity: each duration says whom it is too long for.
    let durations = card_text(input(&form, "duration"));
    for title in [
        "1h",
        "2h (not CRITICAL)",
        "4h (not CRITICAL)",
        "8h (LOW or MEDIUM only)",
        "1d (LOW only)",
    ] {
        assert!(
            durations.lines().any(|l| l == title),
            "{title}: {durations}"
        );
    }
}

#[tokio::test]
async fn a_typed_request_with_an_input_error_gets_the_form_filled_in_and_creates_nothing() {
    let chat = Chat::start(None).await;
    chat.say(BOB, "help").await;
    let before = chat.audit_count().await;

    let answer = chat.say(ALICE, "request db-prod 9d because x").await;
    assert!(
        answer.starts_with("db-prod can be borrowed for at most 4h"),
        "{answer}"
    );
    assert!(answer.contains("at least 8 characters"), "{answer}");
    let form = last_card(&chat);
    assert_valid(&form);
    assert!(card_text(&form).contains("at most 4h"), "the form says why");
    // Filled in: the record, the longest duration it allows, and what was typed.
    assert_eq!(input(&form, "record")["value"], DB_PROD);
    assert_eq!(input(&form, "duration")["value"], "4h");
    assert_eq!(input(&form, "justification")["value"], "x");
    nothing_requested(&chat, before).await;
}

#[tokio::test]
async fn a_submitted_form_with_an_input_error_comes_back_filled_in_and_creates_nothing() {
    let chat = Chat::start(None).await;
    chat.say(BOB, "help").await;
    let before = chat.audit_count().await;

    // A client that skips the form's checks: a day for a HIGH record.
    let answer = chat
        .tap(
            ALICE,
            "submitRequest",
            json!({"record": DB_PROD, "duration": "1d",
                   "justification": "INC-4411 replica lag", "ticket": "INC-4411"}),
        )
        .await;
    assert_eq!(answer["type"], "application/vnd.microsoft.card.adaptive");
    let form = &answer["value"];
    assert_valid(form);
    assert!(card_text(form).contains("at most 4h"), "{form}");
    assert_eq!(input(form, "record")["value"], DB_PROD);
    assert_eq!(input(form, "duration")["value"], "4h");
    assert_eq!(
        input(form, "justification")["value"],
        "INC-4411 replica lag"
    );
    assert_eq!(input(form, "ticket")["value"], "INC-4411");

    // Too short a reason, likewise.
    let answer = chat
        .tap(
            ALICE,
            "submitRequest",
            json!({"record": DB_PROD, "duration": "2h", "justification": "db"}),
        )
        .await;
    let form = &answer["value"];
    assert!(
        card_text(form).contains("at least 8 characters"),
        "{answer}"
    );
    assert_eq!(input(form, "duration")["value"], "2h");

    // No reason at all: the form says so, in card text (no backticks: cards have no code).
    let answer = chat
        .tap(
            ALICE,
            "submitRequest",
            json!({"record": DB_PROD, "duration": "2h"}),
        )
        .await;
    let text = card_text(&answer["value"]);
    assert!(text.contains("Say why you need it"), "{text}");
    assert!(!answer["value"].to_string().contains('`'), "{answer}");
    nothing_requested(&chat, before).await;

    // Corrected, it goes through.
    chat.tap(
        ALICE,
        "submitRequest",
        json!({"record": DB_PROD, "duration": "4h",
               "justification": "INC-4411 replica lag", "ticket": "INC-4411"}),
    )
    .await;
    let request = chat
        .store
        .request_by_id(1)
        .await
        .unwrap()
        .expect("a request");
    assert_eq!(request.status, RequestStatus::Pending);
}

#[tokio::test]
async fn a_policy_denial_still_creates_a_denied_request() {
    let chat = Chat::start(None).await;
    chat.say(BOB, "help").await;
    // db-prod is HIGH: the policy wants a ticket. That is a decision about the reason, not a
    // typing mistake, so it is recorded.
    let answer = chat
        .say(ALICE, "request db-prod 1h because replica lag again")
        .await;
    assert!(answer.contains("ticket"), "{answer}");
    let request = chat
        .store
        .request_by_id(1)
        .await
        .unwrap()
        .expect("a request");
    assert_eq!(request.status, RequestStatus::Denied);
}
