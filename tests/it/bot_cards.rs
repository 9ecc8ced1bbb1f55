//! The card workflows end to end through `/api/messages` (dev channel mode, fake Connector on
//! loopback): the request form, the requester's status card that follows every change in place,
//! the lists, admin health, and each `refresh` view — and every card the bot shows validates
//! against the official Adaptive Card 1.5 schema.

use crate::common;

use common::chat::Chat;
use common::{adaptive_card_errors, card_text};
use passkey::domain::RequestStatus;
use serde_json::{Value, json};

const ALICE: (&str, &str) = ("a11ce000-0000-4000-8000-000000000001", "Alice Requester");
const BOB: (&str, &str) = ("b0b00000-0000-4000-8000-000000000002", "Bob DBA Lead");
const CAROL: (&str, &str) = ("ca201000-0000-4000-8000-000000000003", "Carol SecOps");
const ERIN: (&str, &str) = ("e2140000-0000-4000-8000-000000000005", "Erin Contractor");

/// The card of an invoke answer (`adaptiveCard/action` response), or a panic naming what came.
fn answered_card(answer: &Value) -> &Value {
    assert_eq!(
        answer["type"], "application/vnd.microsoft.card.adaptive",
        "a card was expected: {answer}"
    );
    &answer["value"]
}

/// The text an invoke answered with instead of a card.
fn answered_text(answer: &Value) -> &str {
    assert_eq!(
        answer["type"], "application/vnd.microsoft.activity.message",
        "a message was expected: {answer}"
    );
    answer["value"].as_str().unwrap()
}

/// Choices of the `Input.ChoiceSet` with this id, as (title, value).
fn choices(card: &Value, id: &str) -> Vec<(String, String)> {
    fn find<'a>(v: &'a Value, id: &str) -> Option<&'a Value> {
        match v {
            Value::Object(m) => {
                if m.get("type").and_then(Value::as_str) == Some("Input.ChoiceSet")
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
    find(card, id).unwrap_or_else(|| panic!("no choice set `{id}` in {card}"))["choices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["title"].as_str().unwrap().to_string(),
                c["value"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// Every card the bot sent, replied with or updated to, plus the invoke answers given, is a valid
/// Adaptive Card 1.5 with no secret in it.
fn assert_every_card_valid(chat: &Chat, answers: &[&Value]) {
    let mut cards = chat.every_card();
    cards.extend(
        answers
            .iter()
            .filter(|a| a["type"] == "application/vnd.microsoft.card.adaptive")
            .map(|a| ("invoke answer".to_string(), a["value"].clone())),
    );
    assert!(!cards.is_empty());
    for (what, card) in cards {
        let errors = adaptive_card_errors(&card);
        assert!(errors.is_empty(), "{what}: {errors:?}\n{card:#}");
        let text = card.to_string();
        assert!(!text.contains("/dev-vault/share/"), "{what}: a share link");
    }
}

async fn status_of(chat: &Chat, id: i64) -> RequestStatus {
    chat.store.request_by_id(id).await.unwrap().unwrap().status
}

#[tokio::test]
async fn the_request_form_submits_and_the_status_card_follows_the_request_in_place() {
    let chat = Chat::start(None).await;
    chat.say(BOB, "help").await;

    // `request` alone opens the form: Alice's requestable records, durations within the policy.
    let last_card = || {
        chat.connector
            .calls()
            .into_iter()
            .rev()
            .find_map(|c| c.body["attachments"][0].get("content").cloned())
            .expect("the form is a card")
    };
    let form_text = chat.say(ALICE, "request").await;
    let form = last_card();
    let records = choices(&form, "record");
    assert!(
        records
            .iter()
            .any(|(t, v)| t == "db-prod (HIGH)" && v == "dbPr0dPgL0g1nR3c0rd001"),
        "{records:?}"
    );
    chat.say(ERIN, "request").await;
    let erins = choices(&last_card(), "record");
    assert!(
        erins.iter().any(|(t, _)| t == "db-staging (LOW)")
            && !erins.iter().any(|(t, _)| t.starts_with("k8s-prod-admin")),
        "only records in Erin's folders are offered: {erins:?}"
    );
    let durations: Vec<String> = choices(&form, "duration")
        .into_iter()
        .map(|(_, v)| v)
        .collect();
    assert!(durations.contains(&"1h".to_string()), "{durations:?}");
    assert!(
        form_text.contains("\nWhy\n") && form_text.contains("Ticket (optional)"),
        "{form_text}"
    );

    // Submitting the form answers with the status card in its place.
    let answer = chat
        .tap_on(
            ALICE,
            Some("form-card-1"),
            "submitRequest",
            json!({"record": "dbPr0dPgL0g1nR3c0rd001", "duration": "1h",
                   "justification": "INC-4411 replica lag", "ticket": "INC-4411"}),
        )
        .await;
    let status = card_text(answered_card(&answer));
    assert!(status.starts_with("Waiting for approval\n"), "{status}");
    assert_eq!(status_of(&chat, 1).await, RequestStatus::Pending);
    let recorded = chat.store.sent_cards_for_request(1).await.unwrap();
    assert!(
        recorded
            .iter()
            .any(|c| c.card_kind == "status" && c.activity_id == "form-card-1"),
        "the tapped card is now the request's status card: {recorded:?}"
    );

    // Bob denies in chat: Alice's status card turns into the denial, with his reason, in place.
    let denied = chat.say(BOB, "deny 1 use the read replica instead").await;
    assert!(denied.contains("denied"), "{denied}");
    let (_, card) = chat
        .card_updates()
        .into_iter()
        .find(|(path, _)| path.ends_with("/activities/form-card-1"))
        .expect("the status card was updated in place");
    let text = card_text(&card);
    assert!(text.starts_with("Denied\n"), "{text}");
    assert!(text.contains("use the read replica instead"), "{text}");
    assert!(
        !card.to_string().contains("\"verb\":\"release\""),
        "nothing to release on a denied request: {card}"
    );
    assert_every_card_valid(&chat, &[&answer]);
}

#[tokio::test]
async fn a_bad_form_changes_nothing_and_says_what_was_wrong() {
    let chat = Chat::start(None).await;
    let bad_duration = chat
        .tap(
            ALICE,
            "submitRequest",
            json!({"record": "dbSt4g1ngL0g1nR3c0rd02", "duration": "forever", "justification": "INC-1"}),
        )
        .await;
    // An input error answers with the form again (it replaces the tapped one), saying why.
    assert!(
        card_text(answered_card(&bad_duration)).contains("That duration didn't work"),
        "{bad_duration}"
    );
    let no_reason = chat
        .tap(
            ALICE,
            "submitRequest",
            json!({"record": "dbSt4g1ngL0g1nR3c0rd02", "duration": "1h"}),
        )
        .await;
    assert!(
        card_text(answered_card(&no_reason)).contains("Say why you need it"),
        "{no_reason}"
    );
    let unknown = chat
        .tap(
            ALICE,
            "submitRequest",
            json!({"record": "no-such-record", "duration": "1h", "justification": "INC-1"}),
        )
        .await;
    assert!(
        answered_text(&unknown).contains("no-such-record"),
        "{unknown}"
    );
    assert!(chat.store.request_by_id(1).await.unwrap().is_none());
    assert!(
        chat.store
            .sent_cards_for_request(1)
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn each_refresh_view_answers_with_its_card_for_that_person() {
    let chat = Chat::start(None).await;
    chat.say(BOB, "help").await;
    chat.say(ALICE, "request db-prod 1h because INC-4411 failover")
        .await;
    let mut answers = Vec::new();

    let form = chat
        .tap(ALICE, "refresh", json!({"view": "requestForm"}))
        .await;
    assert!(!choices(answered_card(&form), "record").is_empty());
    answers.push(form);

    let help = chat.tap(ALICE, "refresh", json!({"view": "help"})).await;
    let text = card_text(answered_card(&help));
    assert!(text.contains("request RECORD"), "{text}");
    assert!(
        !text.contains("admin health"),
        "no admin section for Alice: {text}"
    );
    let admin_help = chat.tap(CAROL, "refresh", json!({"view": "help"})).await;
    assert!(
        card_text(answered_card(&admin_help)).contains("admin health"),
        "{admin_help}"
    );
    answers.extend([help, admin_help]);

    let mine = chat
        .tap(ALICE, "refresh", json!({"view": "myRequests"}))
        .await;
    let text = card_text(answered_card(&mine));
    assert!(
        text.contains("#1 · db-prod\nWaiting for approval · asked "),
        "{text}"
    );
    answers.push(mine);

    // The status view is the requester's; an approver asking for it sees the approval card.
    let own = chat
        .tap(ALICE, "refresh", json!({"requestId": 1, "view": "status"}))
        .await;
    assert!(
        card_text(answered_card(&own)).starts_with("Waiting for approval\n"),
        "{own}"
    );
    let bobs = chat
        .tap(BOB, "refresh", json!({"requestId": 1, "view": "status"}))
        .await;
    let bobs_card = answered_card(&bobs).to_string();
    assert!(bobs_card.contains("\"verb\":\"approve\""), "{bobs_card}");
    assert!(!bobs_card.contains("\"verb\":\"release\""), "{bobs_card}");
    answers.extend([own, bobs]);

    let missing = chat
        .tap(
            ALICE,
            "refresh",
            json!({"requestId": 999, "view": "status"}),
        )
        .await;
    // Not one of Alice's, as far as she can tell: no answer says whether a number exists.
    assert_eq!(answered_text(&missing), "Request #999 is not yours.");

    // Admin health: Carol gets the card; Alice is refused, and the refusal is audited.
    let health = chat
        .tap(CAROL, "refresh", json!({"view": "adminHealth"}))
        .await;
    let text = card_text(answered_card(&health));
    assert!(text.starts_with("Passkey is healthy\n"), "{text}");
    assert!(text.contains("Database\n✅ sqlite "), "{text}");
    assert!(text.contains("Migrations\n✅ current"), "{text}");
    assert!(text.contains("Vault backend\n✅ local"), "{text}");
    answers.push(health);
    let before = chat.audit_count().await;
    let refused = chat
        .tap(ALICE, "refresh", json!({"view": "adminHealth"}))
        .await;
    assert_eq!(
        answered_text(&refused),
        "Admin commands are for Passkey admins."
    );
    assert_eq!(chat.audit_count().await, before + 1);
    let last = chat
        .store
        .audit_events_after(0, 10_000)
        .await
        .unwrap()
        .pop()
        .unwrap();
    assert_eq!(last.action, "ACCESS_DENIED_INSUFFICIENT_PERMISSION");

    let answers: Vec<&Value> = answers.iter().collect();
    assert_every_card_valid(&chat, &answers);
}

#[tokio::test]
async fn lists_are_cards_and_release_from_the_status_card_ends_the_lease() {
    let chat = Chat::start(None).await;
    chat.say(BOB, "help").await;
    chat.say(CAROL, "help").await;
    let asked = chat
        .say(ALICE, "request db-prod 1h because INC-4411 replica lag")
        .await;
    assert!(asked.contains("waiting for approval"), "{asked}");

    let pending = chat.say(BOB, "pending").await;
    assert!(
        pending.contains("db-prod") && pending.contains("Alice Requester"),
        "Bob's pending list names the request: {pending}"
    );
    assert!(
        !chat.say(ALICE, "pending").await.contains("db-prod"),
        "a requester does not approve their own request"
    );
    chat.say(BOB, "approve 1").await;
    assert_eq!(status_of(&chat, 1).await, RequestStatus::Approved);

    let health = chat.say(CAROL, "admin health").await;
    assert!(health.contains("Database\n✅ sqlite "), "{health}");

    // Release from the status card: the answer is the status card, now released.
    let status_card_id = chat
        .store
        .sent_cards_for_request(1)
        .await
        .unwrap()
        .into_iter()
        .find(|c| c.card_kind == "status")
        .expect("the reply to `request` was a recorded status card")
        .activity_id;
    let answer = chat
        .tap_on(
            ALICE,
            Some(&status_card_id),
            "release",
            json!({"requestId": 1}),
        )
        .await;
    let text = card_text(answered_card(&answer));
    assert!(text.starts_with("Released\n"), "{text}");
    assert_eq!(status_of(&chat, 1).await, RequestStatus::Released);
    assert_every_card_valid(&chat, &[&answer]);
}

#[tokio::test]
async fn admin_health_lists_shares_that_could_not_be_removed() {
    use passkey::store::{NewAuditEvent, NewIssuance};
    let chat = Chat::start(None).await;
    chat.say(BOB, "help").await;
    chat.say(CAROL, "help").await;
    chat.say(ALICE, "request db-prod 1h because INC-4411 replica lag")
        .await;
    chat.say(BOB, "approve 1").await;
    let healthy = chat.say(CAROL, "admin health").await;
    assert!(
        healthy.contains("Share removal\n✅ every ended share removed"),
        "{healthy}"
    );

    let now = passkey::domain::Timestamp::parse("2026-11-23T09:00:00Z").unwrap();
    let token = "cd".repeat(32);
    chat.store
        .set_issuance_token(
            1,
            &token,
            now.plus(time::Duration::minutes(5)),
            now,
            &NewAuditEvent::new("test", "ISSUANCE_TOKEN_MINTED", now).request(1),
        )
        .await
        .unwrap();
    assert!(
        chat.store
            .consume_issuance_token(
                1,
                &token,
                now,
                now.minus(passkey::governance::lifecycle::RETRIEVAL_DEAD_AFTER)
            )
            .await
            .unwrap()
            .is_some()
    );
    let (_, share) = chat
        .store
        .record_issuance(
            &NewIssuance {
                request_id: 1,
                share_link_hash: "ab".repeat(32),
                vault_share_id: "-c2hhcmUtb25l".into(),
                client_ip: None,
                user_agent: None,
                issued_at: now,
                expires_at: now.plus(time::Duration::hours(1)),
            },
            now,
            &[],
            &NewAuditEvent::new("test", "ISSUANCE_SUCCEEDED", now).request(1),
        )
        .await
        .unwrap();
    for _ in 0..passkey::jobs::REVOKE_ATTEMPTS_BEFORE_ALERT {
        chat.store
            .record_revoke_failure(share.id, "refused before calling Commander")
            .await
            .unwrap();
    }
    let health = chat.say(CAROL, "admin health").await;
    assert!(health.contains("Share removal\n"), "{health}");
    assert!(
        !health.contains("every ended share removed")
            && health.contains("1 could not be removed after 5+ tries")
            && health.contains("#1 (5 tries)"),
        "{health}"
    );
    assert!(
        !health.contains("c2hhcmUtb25l"),
        "no share id on the card: {health}"
    );
}

/// A refused SMS credential shows in `admin health` while it lasts, naming the settings to fix;
/// once a text goes through (the fault is cleared) the line is healthy again (#21.6).
#[tokio::test]
async fn admin_health_shows_a_refused_sms_credential_until_a_text_goes_through() {
    let people: std::sync::Arc<dyn passkey::governance::directory::UserDirectory> =
        std::sync::Arc::new(passkey::governance::directory::StaticDirectory::demo());
    let chat = Chat::start_with_people(
        people,
        &[
            ("PASSKEY_OTP__SMS_PROVIDER", "twilio"),
            ("PASSKEY_OTP__TWILIO_BASE_URL", "http://127.0.0.1:9"),
            (
                "PASSKEY_OTP__TWILIO_ACCOUNT_SID",
                "AC0123456789abcdef0123456789abcdef",
            ),
            ("PASSKEY_OTP__TWILIO_AUTH_TOKEN", "twilio-auth-token-secret"),
            ("PASSKEY_OTP__SMS_FROM", "+18005550100"),
        ],
    )
    .await;
    chat.say(CAROL, "help").await;
    let healthy = chat.say(CAROL, "admin health").await;
    assert!(
        healthy.contains("Text messages\n✅ twilio: no credential refusal on record"),
        "{healthy}"
    );

    // What a send Twilio answered 401 / 20003 records (tests/it/otp.rs drives it over the wire).
    let at = passkey::domain::Timestamp::parse("2026-11-23T09:00:00Z").unwrap();
    assert!(
        chat.store
            .record_sms_credential_fault("twilio", "HTTP 401, error code 20003", at)
            .await
            .unwrap()
    );
    let health = chat.say(CAROL, "admin health").await;
    assert!(health.contains("Text messages\n"), "{health}");
    assert!(
        health.contains("NOT WORKING")
            && health.contains("20003")
            && health.contains("otp.twilio_auth_token")
            && health.contains("PASSKEY_OTP__TWILIO_AUTH_TOKEN"),
        "{health}"
    );
    assert!(!health.contains("twilio-auth-token-secret"), "{health}");

    assert!(
        chat.store
            .clear_sms_credential_fault("twilio")
            .await
            .unwrap()
    );
    let again = chat.say(CAROL, "admin health").await;
    assert!(
        again.contains("✅ twilio: no credential refusal on record"),
        "{again}"
    );
}
