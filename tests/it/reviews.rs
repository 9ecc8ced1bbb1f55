//! Access review campaigns (#19.2) end to end: the real app over the demo data, the fake
//! Connector catching every card, the scheduler's jobs run by hand against a manual clock.

use crate::common::chat::Chat;
use crate::common::{Db, card_text};
use passkey::governance::lifecycle::Submission;
use passkey::jobs::{Job, Scheduler};
use passkey::store::{AccessReview, User};
use serde_json::{Value, json};
use time::Duration;

const ALICE: (&str, &str) = ("a11ce000-0000-4000-8000-000000000001", "Alice Requester");
const BOB: (&str, &str) = ("b0b00000-0000-4000-8000-000000000002", "Bob DBA Lead");
const CAROL: (&str, &str) = ("ca201000-0000-4000-8000-000000000003", "Carol SecOps");
const DAVE: (&str, &str) = ("da7e0000-0000-4000-8000-000000000004", "Dave Platform");

async fn chat_over(db: &Db) -> Chat {
    // The test runs the jobs itself.
    let chat = Chat::start_over(
        db.store.clone(),
        None,
        &[("PASSKEY_LIFECYCLE__SCHEDULER", "false")],
    )
    .await;
    // Everyone has a 1:1 chat with the bot, so cards reach them.
    for who in [ALICE, BOB, CAROL, DAVE] {
        chat.say(who, "help").await;
    }
    chat
}

fn scheduler(chat: &Chat) -> Scheduler {
    let s = &chat.server.state;
    Scheduler::new(
        s.lifecycle.clone(),
        s.store.clone(),
        s.clock.clone(),
        s.vault.clone(),
        s.rotations.clone(),
        s.notifier.clone(),
        "test",
    )
}

async fn user(chat: &Chat, who: (&str, &str)) -> User {
    chat.store
        .user_by_aad_object_id(who.0)
        .await
        .unwrap()
        .unwrap()
}

/// The review of `title` in the latest campaign.
/// Alice's break-glass use of the domain admin account, which policy sends to an after-the-fact
/// review.
async fn break_glass_use(chat: &Chat) -> passkey::store::Request {
    let alice = user(chat, ALICE).await;
    chat.server
        .state
        .lifecycle
        .submit(
            &alice,
            &Submission {
                record: "break-glass-domain-admin".into(),
                duration_secs: Some(1800),
                justification: "domain controllers down, restoring from backup".into(),
                ticket_id: Some("INC-9000".into()),
                break_glass: true,
            },
        )
        .await
        .unwrap()
        .request
}

async fn review_of(chat: &Chat, title: &str) -> AccessReview {
    let campaign = chat.store.review_campaigns().await.unwrap()[0].clone();
    let record = chat
        .store
        .records_by_title_prefix(title, 1)
        .await
        .unwrap()
        .remove(0);
    chat.store
        .reviews_in_campaign(campaign.id)
        .await
        .unwrap()
        .into_iter()
        .find(|r| r.record_id == record.id)
        .unwrap()
}

/// The id of the review row whose title starts with `prefix`.
fn row(review: &AccessReview, prefix: &str) -> (String, i64) {
    let item = review
        .items
        .0
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["title"].as_str().unwrap().starts_with(prefix))
        .unwrap_or_else(|| panic!("no row {prefix} in {}", review.items.0));
    (
        item["kind"].as_str().unwrap().to_string(),
        item["id"].as_i64().unwrap(),
    )
}

/// The words of an invoke answer: a card's text, or a message.
fn said(answer: &Value) -> String {
    match answer["value"].as_str() {
        Some(text) => text.to_string(),
        None => card_text(&answer["value"]),
    }
}

fn review_cards(chat: &Chat, who: (&str, &str)) -> Vec<String> {
    chat.cards_to(who.0)
        .iter()
        .map(card_text)
        .filter(|t| t.contains("Access review:"))
        .collect()
}

fn count(run: &passkey::store::NewJobRun, key: &str) -> u64 {
    run.counts.get(key).and_then(Value::as_u64).unwrap_or(0)
}

async fn actions(chat: &Chat) -> Vec<String> {
    chat.store
        .audit_events_after(0, 100_000)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.action)
        .collect()
}

on_both_databases!(a_campaign_sends_cards_removes_reminds_and_escalates);
async fn a_campaign_sends_cards_removes_reminds_and_escalates(db: Db) {
    let chat = chat_over(&db).await;
    let clock = chat.server.clock.clone();
    // A break-glass use waiting for its after-the-fact review.
    let used = break_glass_use(&chat).await;
    assert!(used.break_glass && used.review_required);

    let reply = chat.say(CAROL, "admin review start").await;
    assert!(reply.contains("campaign #1 started"), "{reply}");
    // Bob owns four records: one card each, listing the rows and the break-glass use for Carol.
    let bob_cards = review_cards(&chat, BOB);
    assert_eq!(bob_cards.len(), 4, "{bob_cards:?}");
    assert!(bob_cards.iter().any(|c| c.contains("db-prod")));
    let carol_cards = review_cards(&chat, CAROL);
    assert!(
        carol_cards
            .iter()
            .any(|c| c.contains(&format!("Break-glass #{} · Alice Requester", used.id))),
        "{carol_cards:?}"
    );
    assert!(review_cards(&chat, ALICE).is_empty());

    // Bob removes his APPROVER row on db-prod: the authority is revoked, audited.
    let review = review_of(&chat, "db-prod").await;
    let (kind, approver) = row(&review, "APPROVER");
    let (_, bobs_owner_row) = row(&review, "OWNER");
    let answer = chat
        .tap(
            BOB,
            "reviewRemove",
            json!({"reviewId": review.id, "kind": kind, "itemId": approver}),
        )
        .await;
    assert!(
        said(&answer).contains("Removed by Bob DBA Lead"),
        "{answer}"
    );
    let revoked = chat.store.authority_by_id(approver).await.unwrap().unwrap();
    assert!(revoked.revoked_at.is_some());
    assert_eq!(
        revoked.revoked_reason.as_deref(),
        Some(format!("removed in access review #{}", review.id).as_str())
    );
    let trail = actions(&chat).await;
    assert!(trail.ends_with(&["ACCESS_REVIEW_DECIDED".into(), "AUTHORITY_REVOKED".into()]));
    // Bob's card copy in his chat shows the decision too.
    assert!(
        chat.card_updates()
            .iter()
            .any(|(path, card)| path.contains(BOB.0)
                && card_text(card).contains("Removed by Bob DBA Lead"))
    );
    let events = chat.audit_count().await;

    // Stale and refused clicks: a clear answer, nothing written.
    let again = chat
        .tap(
            BOB,
            "reviewRemove",
            json!({"reviewId": review.id, "kind": "AUTHORITY", "itemId": approver}),
        )
        .await;
    assert!(
        said(&again).contains("already decided: removed by Bob DBA Lead"),
        "{again}"
    );
    let own = chat
        .tap(
            BOB,
            "reviewKeep",
            json!({"reviewId": review.id, "kind": "AUTHORITY", "itemId": bobs_owner_row}),
        )
        .await;
    assert!(
        said(&own).contains("cannot decide your own OWNER row"),
        "{own}"
    );
    let stranger = chat
        .tap(
            DAVE,
            "reviewKeep",
            json!({"reviewId": review.id, "kind": "AUTHORITY", "itemId": bobs_owner_row}),
        )
        .await;
    assert!(
        said(&stranger).contains("Only the record's owners"),
        "{stranger}"
    );
    let unknown_row = chat
        .tap(
            BOB,
            "reviewKeep",
            json!({"reviewId": review.id, "kind": "BREAK_GLASS", "itemId": used.id}),
        )
        .await;
    assert!(
        said(&unknown_row).contains("not part of access review"),
        "{unknown_row}"
    );
    let nothing_left = chat
        .tap(
            BOB,
            "reviewConfirm",
            json!({"reviewId": review.id, "shown": ""}),
        )
        .await;
    assert!(
        said(&nothing_left).contains("Nothing is left for you"),
        "{nothing_left}"
    );
    assert_eq!(chat.audit_count().await, events);
    assert!(
        chat.store
            .authority_by_id(bobs_owner_row)
            .await
            .unwrap()
            .unwrap()
            .revoked_at
            .is_none()
    );

    // Carol flags Alice's break-glass use: the report's contract event, and the admins alerted.
    let bg_review = review_of(&chat, "break-glass-domain-admin").await;
    let flagged = chat
        .tap(
            CAROL,
            "reviewRemove",
            json!({"reviewId": bg_review.id, "kind": "BREAK_GLASS", "itemId": used.id}),
        )
        .await;
    assert!(
        said(&flagged).contains("Flagged by Carol SecOps"),
        "{flagged}"
    );
    let event = chat
        .store
        .audit_events_for_request(used.id)
        .await
        .unwrap()
        .into_iter()
        .find(|e| e.action == "BREAK_GLASS_REVIEWED")
        .unwrap();
    assert_eq!(event.detail.0["outcome"], "flagged");
    assert_eq!(event.detail.0["reviewer"], "Carol SecOps");
    assert!(
        chat.messages_to(CAROL.0)
            .iter()
            .any(|m| m.contains(&format!("flagged break-glass use #{}", used.id)))
    );
    assert!(
        chat.store
            .break_glass_awaiting_review()
            .await
            .unwrap()
            .is_empty()
    );

    // A week on, one reminder per open review to its owners; not twice.
    let reviews = chat
        .store
        .reviews_in_campaign(review.campaign_id)
        .await
        .unwrap()
        .len() as u64;
    let scheduler = scheduler(&chat);
    clock.advance(Duration::days(7));
    let run = scheduler.run(Job::StaleRequests).await;
    assert!(run.ok, "{:?}", run.error);
    assert_eq!(count(&run, "reviews_reminded"), reviews);
    let bob_cards = review_cards(&chat, BOB);
    assert_eq!(bob_cards.len(), 8);
    assert!(bob_cards[4..].iter().all(|c| c.contains("Reminder")));
    let run = scheduler.run(Job::StaleRequests).await;
    assert_eq!(count(&run, "reviews_reminded"), 0);

    // Two weeks on, escalated to the admins, who may now answer: Carol keeps Bob's OWNER row,
    // the last one, and the review closes.
    clock.advance(Duration::days(7));
    let run = scheduler.run(Job::StaleRequests).await;
    assert_eq!(count(&run, "reviews_escalated"), reviews);
    assert!(
        review_cards(&chat, CAROL)
            .iter()
            .any(|c| c.contains("db-prod") && c.contains("Escalated to the admins"))
    );
    let closed = chat
        .tap(
            CAROL,
            "reviewConfirm",
            json!({"reviewId": review.id, "shown": format!("AUTHORITY:{bobs_owner_row}")}),
        )
        .await;
    assert!(
        said(&closed).contains("every row of this review is decided"),
        "{closed}"
    );
    assert!(
        actions(&chat)
            .await
            .contains(&"ACCESS_REVIEW_COMPLETED".to_string())
    );
    let late = chat
        .tap(
            BOB,
            "reviewKeep",
            json!({"reviewId": review.id, "kind": "AUTHORITY", "itemId": bobs_owner_row}),
        )
        .await;
    assert!(said(&late).contains("is closed"), "{late}");

    let summary = passkey::governance::reviews::summary(chat.store.as_ref(), None)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((summary.removed, summary.kept), (1, 1));
    assert_eq!(summary.break_glass_flagged, 1);
    assert_eq!(summary.reviews_closed, 1);
    assert!(
        chat.say(CAROL, "admin health")
            .await
            .contains("Campaign #1")
    );
}

on_both_databases!(one_fire_makes_one_campaign_and_a_new_one_supersedes_it);
async fn one_fire_makes_one_campaign_and_a_new_one_supersedes_it(db: Db) {
    let chat = chat_over(&db).await;
    let scheduler = scheduler(&chat);
    // smtp-relay loses its only owner: its review goes to the admins at once.
    let admin = &chat.server.state.admin;
    let listing = admin.show_authorities("smtp-relay").await.unwrap();
    let owner = listing
        .lines
        .iter()
        .find(|l| l.in_force && l.authority.authority == passkey::domain::AuthorityKind::Owner)
        .unwrap()
        .authority
        .id;
    admin
        .revoke_authority(&passkey::governance::admin::Actor::Cli, owner, "left")
        .await
        .unwrap();

    // Alice's break-glass use, which Carol (the record's owner) accepts with the rest.
    let used = break_glass_use(&chat).await;

    let first = scheduler.run(Job::AccessReviews).await;
    assert!(first.ok, "{:?}", first.error);
    let again = scheduler.run(Job::AccessReviews).await;
    assert_eq!(count(&again, "already_started"), 1);
    assert_eq!(chat.store.review_campaigns().await.unwrap().len(), 1);
    let unowned = review_of(&chat, "smtp-relay").await;
    assert!(unowned.escalated_at.is_some());
    assert!(
        review_cards(&chat, CAROL)
            .iter()
            .any(|c| c.contains("smtp-relay") && c.contains("Escalated to the admins"))
    );
    // An admin may answer it at once.
    let (kind, id) = row(&unowned, "APPROVER");
    let kept = chat
        .tap(
            CAROL,
            "reviewKeep",
            json!({"reviewId": unowned.id, "kind": kind, "itemId": id}),
        )
        .await;
    assert!(said(&kept).contains("Kept by Carol SecOps"), "{kept}");
    let bg_review = review_of(&chat, "break-glass-domain-admin").await;
    let confirmed = chat
        .tap(
            CAROL,
            "reviewConfirm",
            json!({"reviewId": bg_review.id, "shown": format!("BREAK_GLASS:{}", used.id)}),
        )
        .await;
    assert!(
        said(&confirmed).contains("Accepted by Carol SecOps"),
        "{confirmed}"
    );
    let event = chat
        .store
        .audit_events_for_request(used.id)
        .await
        .unwrap()
        .into_iter()
        .find(|e| e.action == "BREAK_GLASS_REVIEWED")
        .unwrap();
    assert_eq!(event.detail.0["outcome"], "accepted");
    assert_eq!(event.detail.0["reviewer"], "Carol SecOps");

    // The next quarter: a new campaign; the old reviews are superseded, its rows carried over.
    let old = review_of(&chat, "db-prod").await;
    chat.server.clock.advance(Duration::days(91));
    let next = scheduler.run(Job::AccessReviews).await;
    assert!(next.ok, "{:?}", next.error);
    let campaigns = chat.store.review_campaigns().await.unwrap();
    assert_eq!(campaigns.len(), 2);
    assert_eq!(campaigns[0].period_from, campaigns[1].period_to);
    let (kind, id) = row(&old, "APPROVER");
    let stale = chat
        .tap(
            BOB,
            "reviewKeep",
            json!({"reviewId": old.id, "kind": kind, "itemId": id}),
        )
        .await;
    assert!(
        said(&stale).contains("replaced by a newer campaign"),
        "{stale}"
    );
    let nowhere = chat
        .tap(
            BOB,
            "reviewKeep",
            json!({"reviewId": 999_999, "kind": "AUTHORITY", "itemId": id}),
        )
        .await;
    assert!(
        said(&nowhere).contains("no access review #999999"),
        "{nowhere}"
    );
}

on_both_databases!(review_decisions_are_append_only_in_the_database);
async fn review_decisions_are_append_only_in_the_database(db: Db) {
    let chat = chat_over(&db).await;
    chat.say(CAROL, "admin review start").await;
    let review = review_of(&chat, "db-prod").await;
    let (kind, id) = row(&review, "APPROVER");
    chat.tap(
        BOB,
        "reviewKeep",
        json!({"reviewId": review.id, "kind": kind, "itemId": id}),
    )
    .await;
    for sql in [
        "UPDATE review_decisions SET decision = 'REMOVE'",
        "DELETE FROM review_decisions",
    ] {
        let err = db.raw.exec(sql).await.unwrap_err().to_string();
        assert!(err.contains("INV-2"), "{sql}: {err}");
    }
    assert_eq!(
        chat.store.review_decisions(review.id).await.unwrap()[0].decision,
        "KEEP"
    );
}
