//! The request lifecycle through Teams: people type commands in their 1:1 chats with the real app
//! (dev channel mode, demo data); replies and proactive notices are caught by a fake Connector.

use crate::common;

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
        mine.contains("#1 · db-analytics-readonly\nApproved · until "),
        "my requests is a card listing the request and its state: {mine}"
    );
    assert!(mine.contains("3 of 3 retrievals left"), "{mine}");
    assert!(mine.contains("\nExtend 1h\nRelease\n"), "{mine}");

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

    // Unknown records are named; an unknown request number gets the same answer as someone
    // else's, so numbers cannot be probed.
    let unknown = chat
        .say(ALICE, "request no-such-thing 1h because INC-9 test")
        .await;
    assert!(
        unknown.contains("No record matches `no-such-thing`"),
        "{unknown}"
    );
    assert_eq!(
        chat.say(ALICE, "release 99").await,
        "Request #99 is not yours."
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

/// #18.5: states in words, the right rule for an extension already asked for, a requester's
/// `deny` answered as a requester, and a revocation named as one.
#[tokio::test]
async fn requesters_read_words_not_codes() {
    let chat = Chat::start(None).await;
    chat.say(BOB, "help").await;
    chat.say(CAROL, "help").await;
    chat.say(
        ALICE,
        "request db-analytics-readonly 2h because INC-4411 nightly report",
    )
    .await;
    let own = chat.say(ALICE, "deny 1 not needed any more").await;
    assert!(own.contains("is your own, so you cannot deny it"), "{own}");
    assert!(!own.contains("cannot approve"), "{own}");
    assert_eq!(status(&chat, 1).await, RequestStatus::Pending);

    chat.say(BOB, "approve 1 ok").await;
    chat.say(ALICE, "extend 1 1h").await;
    assert_eq!(status(&chat, 1).await, RequestStatus::RenewalPending);
    let again = chat.say(ALICE, "extend 1 2h").await;
    assert!(again.contains("Renewal pending"), "{again}");
    assert!(again.contains("your access continues"), "{again}");
    assert!(
        !again.contains("RENEWAL_PENDING") && !again.contains("only a live lease"),
        "{again}"
    );

    chat.say(CAROL, "admin revoke 1 drill over").await;
    let mine = chat.say(ALICE, "my requests").await;
    assert!(mine.contains("Revoked by an admin · "), "{mine}");
    for code in RequestStatus::ALL {
        assert!(!mine.contains(code.as_str()), "{code}: {mine}");
    }
    let status_card = chat
        .tap(ALICE, "refresh", json!({"requestId": 1, "view": "status"}))
        .await;
    assert_eq!(
        status_card["type"],
        "application/vnd.microsoft.card.adaptive"
    );
    let text = card_text(&status_card["value"]);
    assert!(text.starts_with("Revoked by an admin\n"), "{text}");
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

const ERIN: (&str, &str) = ("e2140000-0000-4000-8000-000000000005", "Erin Contractor");

async fn user_id(chat: &Chat, (aad, _): (&str, &str)) -> i64 {
    chat.store
        .user_by_aad_object_id(aad)
        .await
        .unwrap()
        .unwrap()
        .id
}

/// Every typed command that names a request, for request `id`.
fn typed_with_id(id: i64) -> Vec<String> {
    vec![
        format!("approve {id}"),
        format!("approve {id} looks fine"),
        format!("deny {id} not today"),
        format!("release {id}"),
        format!("extend {id} 1h"),
    ]
}

/// Every card button (verb and data) that names a request, for request `id`.
fn buttons_with_id(id: i64) -> Vec<(&'static str, Value)> {
    vec![
        ("approve", json!({"requestId": id, "comment": "ok"})),
        ("deny", json!({"requestId": id})),
        ("release", json!({"requestId": id})),
        ("extend", json!({"requestId": id, "duration": "1h"})),
        ("refresh", json!({"requestId": id})),
        ("refresh", json!({"requestId": id, "view": "status"})),
        ("refresh", json!({"requestId": id, "view": "approver"})),
        ("refresh", json!({"requestId": id, "view": "myRequests"})),
    ]
}

/// The one event a refused look at request `id` by `who` writes: who and which id, nothing of
/// the request (no request or record link, no detail beyond the id and what was tried).
async fn assert_refusal_audited(
    chat: &Chat,
    who: (&str, &str),
    id: i64,
    before: usize,
    what: &str,
) {
    let new: Vec<_> = chat
        .store
        .audit_events_after(0, 10_000)
        .await
        .unwrap()
        .into_iter()
        .skip(before)
        .collect();
    assert_eq!(new.len(), 1, "{what}: exactly one event: {new:?}");
    let event = &new[0];
    assert_eq!(event.action, "ACCESS_DENIED_NOT_VISIBLE", "{what}");
    assert_eq!(
        event.actor,
        format!("user:{}", user_id(chat, who).await),
        "{what}"
    );
    assert_eq!((event.request_id, event.record_id), (None, None), "{what}");
    assert_eq!(event.detail.0["request_id"], json!(id), "{what}");
    let keys: Vec<&String> = event.detail.0.as_object().unwrap().keys().collect();
    assert!(
        keys.iter().all(|k| *k == "request_id" || *k == "attempt"),
        "{what}: {keys:?}"
    );
}

#[tokio::test]
async fn a_stranger_learns_nothing_about_any_request_from_any_command_or_button() {
    let chat = Chat::start(None).await;
    for person in [BOB, DAVE, CAROL, ERIN] {
        chat.say(person, "help").await;
    }
    // #1 waits for Bob, db-prod's only approver; #2 was approved by Bob (db-analytics-readonly:
    // any APPROVER); #99 does not exist.
    chat.say(
        ALICE,
        "request db-prod 1h because INC-4411 SECRET-FAILOVER drill",
    )
    .await;
    chat.say(
        ALICE,
        "request db-analytics-readonly 2h because INC-4412 SECRET-REPORT run",
    )
    .await;
    chat.say(BOB, "approve 2 fine").await;
    assert_eq!(status(&chat, 1).await, RequestStatus::Pending);
    assert_eq!(status(&chat, 2).await, RequestStatus::Approved);
    let store = chat.store.clone();
    let approvals = move |id| {
        let store = store.clone();
        async move { store.approvals_for_request(id).await.unwrap().len() }
    };
    let (approvals_1, approvals_2) = (approvals(1).await, approvals(2).await);

    // Erin has no part in any of them; Dave approves other records (and #2), not db-prod.
    for (who, ids) in [(ERIN, vec![1, 2, 99]), (DAVE, vec![1, 99])] {
        for id in ids {
            let not_yours = format!("Request #{id} is not yours.");
            for text in typed_with_id(id) {
                let before = chat.audit_count().await;
                let reply = chat.say(who, &text).await;
                let what = format!("{} typed `{text}`", who.1);
                assert_eq!(reply, not_yours, "{what}");
                assert_refusal_audited(&chat, who, id, before, &what).await;
            }
            for (verb, data) in buttons_with_id(id) {
                let what = format!("{} tapped {verb} {data}", who.1);
                let before = chat.audit_count().await;
                let answer = chat.tap(who, verb, data.clone()).await;
                assert_eq!(
                    answer,
                    json!({"statusCode": 200, "type": "application/vnd.microsoft.activity.message", "value": not_yours}),
                    "{what}"
                );
                assert_refusal_audited(&chat, who, id, before, &what).await;
                // The same button as an Action.Submit (a message carrying the data).
                let mut value = data.clone();
                value["verb"] = json!(verb);
                let before = chat.audit_count().await;
                let reply = chat
                    .submit_in(who, common::chat::personal(who.0), value)
                    .await;
                assert_eq!(reply, not_yours, "{what} (Action.Submit)");
                assert_refusal_audited(&chat, who, id, before, &what).await;
            }
        }
    }
    // Admin commands naming a request answer every non-admin alike, whatever the id.
    for id in [1, 2, 99] {
        for text in [
            format!("admin triage {id} approve ok"),
            format!("admin revoke {id} done"),
        ] {
            assert_eq!(
                chat.say(ERIN, &text).await,
                "Admin commands are for Passkey admins.",
                "{text}"
            );
            let events = chat.store.audit_events_after(0, 10_000).await.unwrap();
            let refused = events.last().unwrap();
            assert_eq!(refused.action, "ACCESS_DENIED_INSUFFICIENT_PERMISSION");
            assert_eq!(refused.detail.0["request_id"], json!(id), "{text}");
            assert_eq!((refused.request_id, refused.record_id), (None, None));
        }
    }
    // Nothing changed, and nothing about the requests reached the strangers' chats.
    assert_eq!(status(&chat, 1).await, RequestStatus::Pending);
    assert_eq!(status(&chat, 2).await, RequestStatus::Approved);
    assert_eq!(
        (approvals(1).await, approvals(2).await),
        (approvals_1, approvals_2)
    );
    for who in [ERIN, DAVE] {
        let pending = chat.say(who, "pending").await;
        assert!(!pending.contains("db-prod"), "{pending}");
    }
    // (Dave approves #2, so its card reached him; nothing of #1 did.)
    for call in chat.connector.calls() {
        let body = call.body.to_string();
        if call.path.contains(ERIN.0) {
            for detail in ["SECRET-", "Alice Requester"] {
                assert!(!body.contains(detail), "{detail} in {body}");
            }
        }
        if call.path.contains(DAVE.0) {
            assert!(!body.contains("SECRET-FAILOVER"), "{body}");
        }
    }

    // The request's own people still see it: its requester, its approver, an admin.
    let own = chat
        .tap(ALICE, "refresh", json!({"requestId": 1, "view": "status"}))
        .await;
    assert!(
        card_text(&own["value"]).starts_with("Waiting for approval\n"),
        "{own}"
    );
    for who in [BOB, CAROL] {
        let card = chat
            .tap(who, "refresh", json!({"requestId": 1, "view": "approver"}))
            .await;
        assert!(
            card_text(&card["value"]).contains("SECRET-FAILOVER"),
            "{}: {card}",
            who.1
        );
    }
    let decided = chat.tap(DAVE, "refresh", json!({"requestId": 2})).await;
    assert!(
        card_text(&decided["value"]).contains("Bob DBA Lead"),
        "Dave approves db-analytics-readonly: {decided}"
    );
    // An admin may see every request, so there is nothing to hide from one.
    assert_eq!(
        chat.say(CAROL, "approve 99").await,
        "There is no request #99."
    );
}

#[tokio::test]
async fn an_approver_who_lost_authority_no_longer_sees_what_waits_but_keeps_their_decisions() {
    let chat = Chat::start(None).await;
    chat.say(BOB, "help").await;
    chat.say(DAVE, "help").await;
    chat.say(
        ALICE,
        "request db-analytics-readonly 2h because INC-4412 nightly report",
    )
    .await;
    chat.say(BOB, "approve 1 fine").await;
    chat.say(
        ALICE,
        "request vpn-service-account 2h because INC-4413 tunnel test",
    )
    .await;
    assert_eq!(status(&chat, 1).await, RequestStatus::Approved);
    assert_eq!(status(&chat, 2).await, RequestStatus::Pending);
    let card = chat.tap(BOB, "refresh", json!({"requestId": 2})).await;
    assert!(card_text(&card["value"]).contains("tunnel test"), "{card}");

    // Both records are approved by the APPROVER role; Bob is made a requester.
    let carol = ("ca201000-0000-4000-8000-000000000003", "Carol SecOps");
    let demoted = chat
        .say(carol, "admin role bob@contoso.example requester")
        .await;
    assert!(demoted.contains("is now REQUESTER"), "{demoted}");

    let before = chat.audit_count().await;
    let answer = chat.tap(BOB, "refresh", json!({"requestId": 2})).await;
    assert_eq!(answer["value"], "Request #2 is not yours.", "{answer}");
    assert_refusal_audited(&chat, BOB, 2, before, "Bob refreshes #2").await;
    assert_eq!(chat.say(BOB, "approve 2").await, "Request #2 is not yours.");
    assert!(
        !chat
            .say(BOB, "pending")
            .await
            .contains("vpn-service-account")
    );
    // What he decided stays his to see.
    let his = chat.tap(BOB, "refresh", json!({"requestId": 1})).await;
    assert!(card_text(&his["value"]).contains("Approved"), "{his}");

    // Dave decides #2: his copy of the approval card shows the outcome; Bob's is left as it was.
    let copies = chat.store.sent_cards_for_request(2).await.unwrap();
    let copy_of = |aad: &str| {
        copies
            .iter()
            .find(|c| c.card_kind == "approval" && c.conversation_id.contains(aad))
            .unwrap_or_else(|| panic!("no approval card for {aad}: {copies:?}"))
            .activity_id
            .clone()
    };
    let (bobs, daves) = (copy_of(BOB.0), copy_of(DAVE.0));
    chat.say(DAVE, "approve 2 fine").await;
    assert_eq!(status(&chat, 2).await, RequestStatus::Approved);
    let updated: Vec<String> = chat.card_updates().into_iter().map(|(p, _)| p).collect();
    assert!(updated.iter().any(|p| p.ends_with(&daves)), "{updated:?}");
    assert!(!updated.iter().any(|p| p.ends_with(&bobs)), "{updated:?}");
}

#[tokio::test]
async fn group_approvers_see_their_groups_requests_and_nobody_else_does() {
    use passkey::governance::permissions::{Group, StaticGroupDirectory};
    // jenkins-deploy is approved by the group sre-oncall (and its owner, Dave); Erin is in it.
    let directory =
        StaticGroupDirectory::new().with_member(ERIN.0, Group::new("sre-oncall", "SRE-Oncall"));
    let chat = Chat::start(Some(std::sync::Arc::new(directory))).await;
    chat.say(DAVE, "help").await;
    chat.say(ERIN, "help").await;
    chat.say(BOB, "help").await;
    let asked = chat
        .say(
            ALICE,
            "request jenkins-deploy 1h because INC-4414 hotfix deploy",
        )
        .await;
    assert!(asked.contains("waiting for approval"), "{asked}");

    let erins = chat.say(ERIN, "pending").await;
    assert!(erins.contains("jenkins-deploy"), "{erins}");
    let card = chat.tap(ERIN, "refresh", json!({"requestId": 1})).await;
    assert!(
        card_text(&card["value"]).contains("hotfix deploy"),
        "{card}"
    );

    // Bob is an approver elsewhere, not in the group: the request is not listed for him, and
    // asking for it by number gets him nothing.
    assert!(!chat.say(BOB, "pending").await.contains("jenkins-deploy"));
    let answer = chat.tap(BOB, "refresh", json!({"requestId": 1})).await;
    assert_eq!(answer["value"], "Request #1 is not yours.", "{answer}");
}
