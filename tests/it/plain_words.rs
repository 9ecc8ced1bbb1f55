//! #18.5: people read names and words, never identifiers. Every message and card the bot sends,
//! replies with or updates in whole journeys — asking, being asked, deciding, a decision that came
//! late, more time, release, an approver group that cannot be reached, an admin's triage — is
//! scanned for what only a machine should see: object ids (GUID-shaped), Teams ids (`29:…`) and
//! the stored, upper-case names of request states.

use crate::common;

use common::chat::Chat;
use common::message_text;
use passkey::domain::{PrincipalType, RequestStatus};
use passkey::governance::directory::{StaticDirectory, UserDirectory};
use regex::Regex;
use serde_json::{Value, json};
use std::sync::Arc;

const ALICE: (&str, &str) = ("a11ce000-0000-4000-8000-000000000001", "Alice Requester");
const BOB: (&str, &str) = ("b0b00000-0000-4000-8000-000000000002", "Bob DBA Lead");
const CAROL: (&str, &str) = ("ca201000-0000-4000-8000-000000000003", "Carol SecOps");
const DAVE: (&str, &str) = ("da7e0000-0000-4000-8000-000000000004", "Dave Platform");
/// An approver group the directory knows by name, with nobody in it.
const EMPTY_GROUP: &str = "5e0c0000-0000-4000-8000-0000000000e0";
/// An approver group the directory does not know at all.
const UNKNOWN_GROUP: &str = "5e0c0000-0000-4000-8000-0000000000ff";

/// What a person reads in `texts` that only a machine should: each offending line, with why.
fn machine_words(texts: &[String]) -> Vec<String> {
    let guid = Regex::new(r"(?i)\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b")
        .unwrap();
    let teams_id = Regex::new(r"\b29:\S").unwrap();
    let states = RequestStatus::ALL
        .iter()
        .map(|s| s.as_str())
        .collect::<Vec<_>>()
        .join("|");
    let state = Regex::new(&format!(r"\b({states})\b")).unwrap();
    let mut found = Vec::new();
    for text in texts {
        for line in text.lines() {
            for (what, re) in [("an object id", &guid), ("a Teams id", &teams_id)] {
                if re.is_match(line) {
                    found.push(format!("{what}: {line}"));
                }
            }
            if let Some(m) = state.find(line) {
                found.push(format!("the stored state {}: {line}", m.as_str()));
            }
        }
    }
    found
}

/// Everything the bot said in the chat: every activity it sent or updated (text, summary and card
/// text, as people read them), the answers to the taps in `answers`, and `replies`.
fn everything_read(chat: &Chat, replies: &[String], answers: &[Value]) -> Vec<String> {
    let mut texts: Vec<String> = replies.to_vec();
    for call in chat.connector.calls() {
        if call.method == "POST" || call.method == "PUT" {
            texts.push(message_text(&call.body));
            // The summary is what a notification shows for a card.
            if let Some(summary) = call.body["summary"].as_str() {
                texts.push(summary.to_string());
            }
        }
    }
    texts.extend(
        answers
            .iter()
            .filter_map(|a| a.get("value"))
            .map(common::card_text),
    );
    texts
}

#[test]
fn the_scan_finds_ids_and_stored_states() {
    let bad = [
        "approver group 5e0c0000-0000-4000-8000-0000000000ff could not be found".to_string(),
        "Asked: 29:1xyz".to_string(),
        "Request #1: ISSUED".to_string(),
        "request is RENEWAL_PENDING".to_string(),
    ];
    assert_eq!(machine_words(&bad).len(), 4, "{:?}", machine_words(&bad));
    let good = [
        "Request #1: Approved, retrieved".to_string(),
        "Asked: Bob DBA Lead. Decided at 2026-11-23 10:00 Europe/Berlin".to_string(),
        "an approver group could not be found in the directory".to_string(),
    ];
    assert!(
        machine_words(&good).is_empty(),
        "{:?}",
        machine_words(&good)
    );
}

#[tokio::test]
async fn a_requesters_and_an_approvers_journey_shows_no_ids_or_stored_states() {
    let chat = Chat::start(None).await;
    let mut said = vec![
        chat.say(BOB, "help").await,
        chat.say(DAVE, "help").await,
        chat.say(
            ALICE,
            "request db-analytics-readonly 2h because INC-4411 nightly report",
        )
        .await,
        chat.say(ALICE, "status 1").await,
        chat.say(BOB, "pending").await,
    ];
    let mut answers = vec![
        chat.tap(BOB, "approve", json!({"requestId": 1, "comment": "ok"}))
            .await,
        // Dave's tap comes after Bob decided: the card says who decided, and when.
        chat.tap(DAVE, "approve", json!({"requestId": 1})).await,
        chat.tap(ALICE, "refresh", json!({"requestId": 1, "view": "status"}))
            .await,
    ];
    said.push(chat.say(DAVE, "approve 1").await);
    said.push(chat.say(ALICE, "my requests").await);
    said.push(chat.say(ALICE, "extend 1 30m").await);
    said.push(chat.say(BOB, "deny 1 not this time").await);
    said.push(chat.say(ALICE, "status 1").await);
    said.push(chat.say(ALICE, "release 1").await);
    answers.push(
        chat.tap(ALICE, "refresh", json!({"view": "myRequests"}))
            .await,
    );
    // A second request, denied; asking again for a record with one open.
    said.push(
        chat.say(ALICE, "request redis-prod 1h because INC-4412 cache flush")
            .await,
    );
    said.push(
        chat.say(ALICE, "request redis-prod 1h because INC-4412 cache flush")
            .await,
    );
    said.push(chat.say(BOB, "deny 2 use the replica").await);
    said.push(chat.say(BOB, "approve 2").await);
    said.push(chat.say(ALICE, "status 2").await);
    said.push(chat.say(CAROL, "status 2").await);

    let texts = everything_read(&chat, &said, &answers);
    assert!(
        texts.iter().any(|t| t.contains("Bob DBA Lead")),
        "the journey named people"
    );
    let found = machine_words(&texts);
    assert!(found.is_empty(), "people read: {found:#?}");
}

#[tokio::test]
async fn unreachable_approver_groups_and_the_admins_triage_show_no_ids_or_stored_states() {
    let people: Arc<dyn UserDirectory> = Arc::new(
        StaticDirectory::demo()
            .with_group(EMPTY_GROUP, &[])
            .with_group_name(EMPTY_GROUP, "Platform SRE"),
    );
    let chat = Chat::start_with_people(people, &[]).await;
    let mut said = vec![chat.say(CAROL, "help").await];
    common::only_approvers(
        chat.store.as_ref(),
        "db-analytics-readonly",
        &[
            (PrincipalType::Group, EMPTY_GROUP),
            (PrincipalType::Group, UNKNOWN_GROUP),
        ],
    )
    .await;
    let asked = chat
        .say(
            ALICE,
            "request db-analytics-readonly 2h because INC-4411 nightly report",
        )
        .await;
    assert!(
        asked.contains("approver group Platform SRE has no members")
            && asked.contains("an approver group could not be found in the directory"),
        "{asked}"
    );
    said.push(asked);
    said.push(chat.say(ALICE, "status 1").await);
    said.push(chat.say(CAROL, "admin triage").await);
    said.push(chat.say(CAROL, "deny 1 no approver for this record").await);
    said.push(chat.say(ALICE, "my requests").await);

    let found = machine_words(&everything_read(&chat, &said, &[]));
    assert!(found.is_empty(), "people read: {found:#?}");
}
