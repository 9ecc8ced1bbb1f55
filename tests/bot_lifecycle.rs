//! The request lifecycle through Teams: people type commands in their 1:1 chats with the real app
//! (dev channel mode, demo data); replies and proactive notices are caught by a fake Connector.

mod common;

use common::card_text;
use common::chat::Chat;
use passkey::domain::RequestStatus;
use serde_json::{Value, json};

const ALICE: (&str, &str) = ("a11ce000-0000-4000-8000-000000000001", "Alice Requester");
const BOB: (&str, &str) = ("b0b00000-0000-4000-8000-000000000002", "Bob DBA Lead");
const DAVE: (&str, &str) = ("da7e0000-0000-4000-8000-000000000004", "Dave Platform");
const CAROL: (&str, &str) = ("ca201000-0000-4000-8000-000000000003", "Carol SecOps");

async fn status(chat: &Chat, id: i64) -> RequestStatus {
    chat.store.request_by_id(id).await.unwrap().unwrap().status
}

#[tokio::test]
async fn a_routed_request_is_approved_in_chat_and_everyone_hears_once() {
    let chat = Chat::start(None).await;
    // Approvers who have talked to the bot can be told about requests.
    chat.say(BOB, "help").await;
    chat.say(DAVE, "help").await;

    let asked = chat
        .say(
            ALICE,
            "request db-analytics-readonly 2h because INC-4411 nightly report",
        )
        .await;
    assert!(
        asked.contains("Request #1 for `db-analytics-readonly` is waiting for approval"),
        "{asked}"
    );
    assert_eq!(status(&chat, 1).await, RequestStatus::Pending);
    for approver in [BOB.0, DAVE.0] {
        let cards = chat.cards_to(approver);
        assert_eq!(cards.len(), 1, "one approval card each: {cards:?}");
        let text = cards[0].to_string();
        assert!(
            text.contains("Alice Requester") && text.contains("db-analytics-readonly"),
            "{text}"
        );
    }

    let approved = chat.say(BOB, "approve 1 ok for the report").await;
    assert!(
        approved.contains("Request #1 for `db-analytics-readonly` is **approved**"),
        "{approved}"
    );
    assert_eq!(status(&chat, 1).await, RequestStatus::Approved);
    let alice_told = chat.messages_to(ALICE.0);
    assert_eq!(alice_told.len(), 1, "{alice_told:?}");
    assert!(
        alice_told[0].contains("/requests/1/issue"),
        "the requester gets the retrieval page link: {alice_told:?}"
    );

    // A second approver taps after the decision: told who decided, nothing changes.
    let late = chat.say(DAVE, "approve 1").await;
    assert!(
        late.starts_with("Request #1 was already approved by Bob DBA Lead at "),
        "{late}"
    );
    let approvals = chat.store.approvals_for_request(1).await.unwrap();
    assert_eq!(approvals.len(), 1);

    let mine = chat.say(ALICE, "my requests").await;
    assert!(
        mine.contains("#1 · db-analytics-readonly\nAPPROVED · until "),
        "my requests is a card listing the request and its state: {mine}"
    );
    assert!(mine.contains("3 of 3 retrievals left"), "{mine}");
    assert!(mine.contains("\nRelease\nExtend"), "{mine}");

    let released = chat.say(ALICE, "release 1").await;
    assert!(released.contains("Request #1 released"), "{released}");
    assert_eq!(status(&chat, 1).await, RequestStatus::Released);

    // Nothing the bot said carries a share link or a token.
    for call in chat.connector.calls() {
        let text = call.body["text"].as_str().unwrap_or_default();
        assert!(!text.contains("/vault/share"), "{text}");
        assert!(!text.contains("/dev-vault/share/"), "{text}");
    }
}

#[tokio::test]
async fn low_sensitivity_is_approved_at_once_and_refusals_change_nothing() {
    let chat = Chat::start(None).await;
    let auto = chat
        .say(ALICE, "request db-staging 1h because INC-7 load test")
        .await;
    assert!(
        auto.contains("Request #1 for `db-staging` is **approved**"),
        "{auto}"
    );
    assert!(auto.contains("/requests/1/issue"), "{auto}");
    assert_eq!(status(&chat, 1).await, RequestStatus::Approved);

    // A second open request for the same record is refused before anything is written.
    let before = chat.audit_count().await;
    let again = chat
        .say(ALICE, "request db-staging 1h because INC-8 again")
        .await;
    assert_eq!(again, "You already have request #1 open for this record.");
    assert_eq!(chat.audit_count().await, before);

    // No reason: asked for one, nothing written.
    let no_reason = chat.say(ALICE, "request db-prod 1h").await;
    assert!(no_reason.starts_with("Say why you need it"), "{no_reason}");
    assert_eq!(chat.audit_count().await, before);

    // Someone else's request cannot be released or extended.
    let not_hers = chat.say(BOB, "release 1").await;
    assert_eq!(not_hers, "Request #1 is not yours.");
    assert_eq!(status(&chat, 1).await, RequestStatus::Approved);

    // Unknown records and requests are named.
    let unknown = chat
        .say(ALICE, "request no-such-thing 1h because INC-9 test")
        .await;
    assert!(
        unknown.contains("No record matches `no-such-thing`"),
        "{unknown}"
    );
    assert_eq!(
        chat.say(ALICE, "release 99").await,
        "There is no request #99."
    );

    // Approving your own request is refused and audited; the request stays as it was.
    let routed = chat
        .say(BOB, "request db-prod 1h because INC-4411 failover drill")
        .await;
    assert!(routed.contains("Request #2"), "{routed}");
    let own = chat.say(BOB, "approve 2").await;
    assert!(!own.contains("approved**"), "{own}");
    assert_eq!(status(&chat, 2).await, RequestStatus::RequiresTriage);
}

#[tokio::test]
async fn admins_work_the_triage_queue_and_revoke_in_chat() {
    let chat = Chat::start(None).await;
    chat.say(CAROL, "help").await;
    // Bob is the only approver of db-prod, so his own request has nobody to approve it.
    let asked = chat
        .say(BOB, "request db-prod 1h because INC-4411 failover drill")
        .await;
    assert!(asked.contains("needs an admin's decision"), "{asked}");
    assert_eq!(status(&chat, 1).await, RequestStatus::RequiresTriage);
    let carol_told = chat.messages_to(CAROL.0);
    assert!(
        carol_told
            .iter()
            .any(|m| m.contains("Request #1 from Bob DBA Lead")),
        "{carol_told:?}"
    );

    let queue = chat.say(CAROL, "admin triage").await;
    assert!(
        queue.contains("Triage queue") && queue.contains("db-prod"),
        "{queue}"
    );
    assert_eq!(
        chat.say(ALICE, "admin triage 1 approve fine").await,
        "Admin commands are for Passkey admins."
    );
    let decided = chat
        .say(
            CAROL,
            "admin triage 1 approve drill is on the change calendar",
        )
        .await;
    assert!(
        decided.contains("Request #1 for `db-prod` is **approved**"),
        "{decided}"
    );
    assert_eq!(status(&chat, 1).await, RequestStatus::Approved);
    assert!(
        chat.say(CAROL, "admin triage")
            .await
            .contains("Nothing waits for an admin.")
    );

    let revoked = chat.say(CAROL, "admin revoke 1 drill finished early").await;
    assert!(
        revoked.contains("access to `db-prod` was revoked"),
        "{revoked}"
    );
    assert_eq!(status(&chat, 1).await, RequestStatus::Expired);
    let actions: Vec<String> = chat
        .store
        .audit_events_for_request(1)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.action)
        .collect();
    assert_eq!(
        actions,
        ["REQUEST_SUBMITTED", "TRIAGE_APPROVED", "LEASE_REVOKED"],
        "{actions:?}"
    );
}

/// Every `Action.Execute` verb on a card.
fn verbs(card: &Value) -> Vec<String> {
    let mut found = vec![];
    fn walk(v: &Value, found: &mut Vec<String>) {
        match v {
            Value::Object(m) => {
                if m.get("type").and_then(Value::as_str) == Some("Action.Execute")
                    && let Some(verb) = m.get("verb").and_then(Value::as_str)
                {
                    found.push(verb.to_string());
                }
                for (k, x) in m {
                    // The refresh action is not a button.
                    if k != "refresh" {
                        walk(x, found);
                    }
                }
            }
            Value::Array(a) => a.iter().for_each(|x| walk(x, found)),
            _ => {}
        }
    }
    walk(card, &mut found);
    found
}

#[tokio::test]
async fn approval_cards_are_updated_everywhere_and_a_stale_tap_is_told_who_decided() {
    let chat = Chat::start(None).await;
    chat.say(BOB, "help").await;
    chat.say(DAVE, "help").await;
    chat.say(
        ALICE,
        "request db-analytics-readonly 2h because INC-4411 nightly report",
    )
    .await;
    let bob_card = &chat.cards_to(BOB.0)[0];
    let dave_card = &chat.cards_to(DAVE.0)[0];
    for card in [bob_card, dave_card] {
        assert!(verbs(card).contains(&"approve".to_string()), "{card}");
        assert!(verbs(card).contains(&"deny".to_string()), "{card}");
        assert!(card["refresh"]["action"]["verb"] == "refresh" || card.get("refresh").is_none());
    }
    let recorded = chat.store.sent_cards_for_request(1).await.unwrap();
    let (copies, status_cards): (Vec<_>, Vec<_>) = recorded
        .into_iter()
        .partition(|c| c.card_kind == "approval");
    assert_eq!(copies.len(), 2, "both copies are recorded for updating");
    assert_eq!(
        status_cards.len(),
        1,
        "the requester's status card (the reply to `request`) is recorded too"
    );
    assert_eq!(status_cards[0].card_kind, "status");

    // Bob taps Approve: his card becomes the decided card at once.
    let answer = chat
        .tap(BOB, "approve", json!({"requestId": 1, "comment": "ok"}))
        .await;
    assert_eq!(
        answer["type"], "application/vnd.microsoft.card.adaptive",
        "{answer}"
    );
    let decided = &answer["value"];
    assert!(card_text(decided).contains("Approved"), "{decided}");
    assert!(
        verbs(decided).is_empty(),
        "no buttons once decided: {decided}"
    );
    assert_eq!(status(&chat, 1).await, RequestStatus::Approved);

    // Every recorded copy was updated in place to the outcome and who decided; the requester's
    // status card now says approved and offers Retrieve.
    let updates = chat.card_updates();
    assert_eq!(updates.len(), 3, "{updates:?}");
    let (_, status_card) = updates
        .iter()
        .find(|(path, _)| path.ends_with(&status_cards[0].activity_id))
        .expect("the status card was updated in place");
    let text = card_text(status_card);
    assert!(text.starts_with("Approved\n"), "{text}");
    assert!(text.contains("3 of 3"), "{text}");
    assert!(
        status_card.to_string().contains("/requests/1/issue"),
        "{status_card}"
    );
    for copy in &copies {
        let (_, card) = updates
            .iter()
            .find(|(path, _)| path.ends_with(&copy.activity_id))
            .unwrap_or_else(|| panic!("copy {} not updated", copy.activity_id));
        let text = card_text(card);
        assert!(
            text.contains("Bob DBA Lead") && text.contains("Approved"),
            "{text}"
        );
        assert!(verbs(card).is_empty(), "{text}");
    }

    // Dave's tap on his (now stale) copy: the current card and who decided, nothing changes.
    let stale = chat.tap(DAVE, "approve", json!({"requestId": 1})).await;
    let text = card_text(&stale["value"]);
    assert!(
        text.contains("Already decided by Bob DBA Lead at "),
        "{stale}"
    );
    assert_eq!(chat.store.approvals_for_request(1).await.unwrap().len(), 1);
    let decisions = chat
        .store
        .audit_events_for_request(1)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.action == "REQUEST_APPROVED")
        .count();
    assert_eq!(decisions, 1);

    // The requester hears, with a Retrieve link that carries no secret.
    let told = chat.messages_to(ALICE.0);
    assert!(
        told.iter().any(|m| m.contains("/requests/1/issue")),
        "{told:?}"
    );
    for call in chat.connector.calls() {
        let body = call.body.to_string();
        assert!(
            !body.contains("/vault/share") && !body.contains("/dev-vault/share/"),
            "{body}"
        );
    }
}

#[tokio::test]
async fn a_request_whose_approvers_cannot_be_reached_goes_to_the_admins_not_nowhere() {
    let chat = Chat::start(None).await;
    chat.say(CAROL, "help").await;
    // jenkins-deploy is approved by the Entra group sre-oncall, whose members Passkey cannot list
    // (no Graph here), and by its owner; with the owner's authority revoked nobody would hear of
    // the request, so it goes to triage at once.
    let record = chat
        .store
        .records_by_title_prefix("jenkins-deploy", 1)
        .await
        .unwrap()
        .remove(0);
    let resource = chat
        .store
        .governed_resource_for_record(record.id)
        .await
        .unwrap()
        .unwrap();
    for a in chat
        .store
        .active_authorities(resource.id, common::t0())
        .await
        .unwrap()
    {
        if a.principal_type != passkey::domain::PrincipalType::Group {
            chat.store
                .revoke_authority(
                    a.id,
                    "test",
                    "owner away",
                    &passkey::store::NewAuditEvent::new("test", "AUTHORITY_REVOKED", common::t0()),
                )
                .await
                .unwrap();
        }
    }
    let asked = chat
        .say(
            ALICE,
            "request jenkins-deploy 1h because INC-4411 hotfix deploy",
        )
        .await;
    assert!(asked.contains("needs an admin's decision"), "{asked}");
    assert!(asked.contains("no approver could be reached"), "{asked}");
    assert_eq!(status(&chat, 1).await, RequestStatus::RequiresTriage);
    let actions: Vec<String> = chat
        .store
        .audit_events_for_request(1)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.action)
        .collect();
    assert_eq!(actions, ["REQUEST_SUBMITTED", "REQUEST_ESCALATED"]);
    assert!(
        chat.messages_to(CAROL.0)
            .iter()
            .any(|m| m.contains("Request #1 from Alice Requester")),
        "the admins are told"
    );
}
