//! Admin commands and effective permissions through the Teams channel: the real app in dev
//! channel mode (no tokens, loopback only) over the demo data, replies caught by a fake Bot
//! Connector on loopback.

use crate::common;

use common::chat::Chat;
use passkey::domain::Role;
use passkey::governance::permissions::{Group, StaticGroupDirectory};
use passkey::store::Store;
use std::sync::Arc;

const CAROL: (&str, &str) = ("ca201000-0000-4000-8000-000000000003", "Carol SecOps");
const ALICE: (&str, &str) = ("a11ce000-0000-4000-8000-000000000001", "Alice Requester");
const ERIN: (&str, &str) = ("e2140000-0000-4000-8000-000000000005", "Erin Contractor");

#[tokio::test]
async fn the_admin_manages_authority_and_roles_in_chat_and_requesters_cannot() {
    let chat = Chat::start(None).await;
    let carol_id = chat
        .store
        .user_by_aad_object_id(CAROL.0)
        .await
        .unwrap()
        .unwrap()
        .id;

    let shown = chat.say(CAROL, "admin authority show db-prod").await;
    assert!(
        shown.starts_with("Authority\n**Authority over db-prod**"),
        "an admin result card: its title, then the report: {shown}"
    );
    assert!(
        shown.contains("OWNER — user Bob DBA Lead <bob@contoso.example>")
            && shown.contains("APPROVER — user Bob DBA Lead <bob@contoso.example>"),
        "{shown}"
    );

    let granted = chat
        .say(
            CAROL,
            "admin authority grant db-prod approver user:dave@contoso.example stage=2",
        )
        .await;
    assert!(
        granted.starts_with(
            "Authority\nGranted APPROVER over db-prod to user Dave Platform <dave@contoso.example> (stage 2)"
        ),
        "{granted}"
    );
    let event = chat.store.audit_events_after(0, 10_000).await.unwrap();
    let event = event.last().unwrap();
    assert_eq!(
        (event.action.as_str(), event.actor.clone()),
        ("AUTHORITY_GRANTED", format!("user:{carol_id}"))
    );
    let id = event.detail.0["authority_id"].as_i64().unwrap();
    assert!(
        chat.say(CAROL, "admin authority show db-prod")
            .await
            .contains(&format!(
                "#{id} APPROVER — user Dave Platform <dave@contoso.example>, stage 2"
            )),
    );

    // Refusals and usage mistakes answer with what to do, and change nothing.
    let before = chat.audit_count().await;
    let unknown = chat
        .say(
            CAROL,
            "admin authority grant db-prod approver user:nobody@contoso.example",
        )
        .await;
    assert!(
        unknown.starts_with("Authority\nNo Passkey user nobody@contoso.example"),
        "{unknown}"
    );
    let usage = chat.say(CAROL, "admin authority grant db-prod").await;
    assert!(
        usage.contains("grant needs a record, a kind and a principal")
            && usage.contains(
                "Example: admin authority grant db-prod approver user:bob@contoso.example"
            ),
        "{usage}"
    );
    let bad_stage = chat
        .say(
            CAROL,
            "admin authority grant db-prod approver role:approver stage=two",
        )
        .await;
    assert!(
        bad_stage.contains("The stage must be a whole number"),
        "{bad_stage}"
    );
    let ambiguous = chat.say(CAROL, "admin authority show db").await;
    assert!(ambiguous.contains("matches several records"), "{ambiguous}");
    let role_usage = chat.say(CAROL, "admin role erin@contoso.example").await;
    assert!(
        role_usage.starts_with("Role\nUsage: admin role"),
        "{role_usage}"
    );
    assert_eq!(chat.audit_count().await, before);

    let revoked = chat
        .say(
            CAROL,
            &format!("admin authority revoke #{id} covered by the DBA rota"),
        )
        .await;
    assert!(
        revoked.starts_with(&format!("Authority\nRevoked authority #{id}")),
        "{revoked}"
    );
    let twice = chat
        .say(CAROL, &format!("admin authority revoke {id} again"))
        .await;
    assert!(twice.contains("was already revoked"), "{twice}");

    let promoted = chat
        .say(CAROL, "admin role erin@contoso.example Approver")
        .await;
    assert_eq!(
        promoted,
        "Role\nErin Contractor <erin@contoso.example> is now APPROVER (was REQUESTER)."
    );

    // A requester gets the same one-line answer for every admin command; nothing changes, and
    // each refused attempt is audited.
    let before = chat.audit_count().await;
    for text in [
        "admin authority show db-prod",
        "admin authority grant db-prod approver user:alice@contoso.example",
        "admin role alice@contoso.example ADMIN",
    ] {
        assert_eq!(
            chat.say(ALICE, text).await,
            "Admin commands are for Passkey admins.",
            "{text}"
        );
    }
    let refused: Vec<(String, String)> = chat
        .store
        .audit_events_after(0, 10_000)
        .await
        .unwrap()
        .into_iter()
        .skip(before)
        .map(|e| {
            (
                e.action,
                e.detail.0["command"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            )
        })
        .collect();
    assert_eq!(
        refused,
        [
            (
                "ACCESS_DENIED_INSUFFICIENT_PERMISSION".to_string(),
                "admin authority".to_string()
            ),
            (
                "ACCESS_DENIED_INSUFFICIENT_PERMISSION".to_string(),
                "admin authority".to_string()
            ),
            (
                "ACCESS_DENIED_INSUFFICIENT_PERMISSION".to_string(),
                "admin role".to_string()
            ),
        ]
    );
    let alice = chat
        .store
        .user_by_aad_object_id(ALICE.0)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(alice.role, Role::Requester);
}

/// (#21.9) `admin sensitivity <record> <LEVEL> <reason…>`: an admin changes a record's level in
/// chat, with a reason, audited; every mistake is answered and changes nothing; a requester is
/// refused like any admin command.
#[tokio::test]
async fn the_admin_sets_a_records_sensitivity_in_chat_and_requesters_cannot() {
    let chat = Chat::start(None).await;
    let level = || async {
        chat.store
            .records_by_title_prefix("grafana-admin", 1)
            .await
            .unwrap()[0]
            .sensitivity
    };
    assert_eq!(level().await, passkey::domain::Sensitivity::Low);

    let before = chat.audit_count().await;
    for (text, answer) in [
        (
            "admin sensitivity nope-db HIGH audit finding",
            "Sensitivity\nNo record matches nope-db",
        ),
        (
            "admin sensitivity db HIGH audit finding",
            "matches several records",
        ),
        (
            "admin sensitivity grafana-admin TOPSECRET audit finding",
            "Unknown sensitivity TOPSECRET: use LOW, MEDIUM, HIGH or CRITICAL",
        ),
        (
            "admin sensitivity grafana-admin HIGH",
            "A reason is required",
        ),
        (
            "admin sensitivity grafana-admin",
            "Usage: admin sensitivity <record> <LOW|MEDIUM|HIGH|CRITICAL> <reason>",
        ),
        (
            "admin sensitivity grafana-admin LOW nothing to do",
            "grafana-admin is already LOW; nothing changed.",
        ),
    ] {
        let said = chat.say(CAROL, text).await;
        assert!(said.contains(answer), "{text}: {said}");
    }
    assert_eq!(chat.audit_count().await, before, "nothing was written");
    assert_eq!(level().await, passkey::domain::Sensitivity::Low);

    // A requester: the usual refusal, audited, nothing changed.
    assert_eq!(
        chat.say(
            ALICE,
            "admin sensitivity grafana-admin LOW cheaper approvals"
        )
        .await,
        "Admin commands are for Passkey admins."
    );
    let refused = chat.store.audit_events_after(0, 10_000).await.unwrap();
    let refused = refused.last().unwrap();
    assert_eq!(
        (
            refused.action.as_str(),
            refused.detail.0["command"].as_str()
        ),
        (
            "ACCESS_DENIED_INSUFFICIENT_PERMISSION",
            Some("admin sensitivity")
        )
    );

    let changed = chat
        .say(
            CAROL,
            "admin sensitivity Grafana-Admin critical now holds the SSO signing key",
        )
        .await;
    assert!(
        changed.starts_with("Sensitivity\ngrafana-admin is now CRITICAL (was LOW)."),
        "{changed}"
    );
    assert_eq!(level().await, passkey::domain::Sensitivity::Critical);
    let events = chat.store.audit_events_after(0, 10_000).await.unwrap();
    let event = events.last().unwrap();
    assert_eq!(event.action, "RECORD_SENSITIVITY_CHANGED");
    assert_eq!(event.detail.0["reason"], "now holds the SSO signing key");
    assert_eq!(
        (&event.detail.0["old"], &event.detail.0["new"]),
        (&serde_json::json!("LOW"), &serde_json::json!("CRITICAL"))
    );
}

#[tokio::test]
async fn records_shared_with_a_persons_groups_are_listed() {
    // Erin's own ACL entries cover Databases and Shared Services; the Platform folder is shared
    // with the Keeper team `sre-oncall`, which is her Entra group's name.
    let without_groups = Chat::start(None).await;
    let listed = |text: &str, title: &str| text.lines().any(|l| l == title);
    let text = without_groups.say(ERIN, "records").await;
    assert!(listed(&text, "db-prod"), "{text}");
    assert!(!listed(&text, "k8s-prod-admin"), "{text}");

    let directory =
        StaticGroupDirectory::new().with_member(ERIN.0, Group::new("5e0c-group-id", "SRE-Oncall"));
    let with_groups = Chat::start(Some(Arc::new(directory))).await;
    let text = with_groups.say(ERIN, "records").await;
    assert!(
        listed(&text, "k8s-prod-admin") && listed(&text, "db-prod"),
        "{text}"
    );
    assert!(!text.contains("break-glass"), "{text}");
}

/// A stored submission decision for db-prod, as the request flow writes it.
async fn stored_trace(store: &dyn Store, engine: &passkey::policy::Engine) -> i64 {
    use passkey::domain::*;
    let ctx = common::submission_context(Sensitivity::Medium);
    let decision = engine.evaluate(&ctx);
    store
        .insert_trace(&passkey::policy::trace_record(
            TraceStage::RequestSubmission,
            &ctx,
            &decision,
        ))
        .await
        .unwrap()
        .id
}

#[tokio::test]
async fn the_admin_replays_stored_decisions_in_chat() {
    let chat = Chat::start(None).await;
    let engine = passkey::governance::policies::load_engine(chat.store.as_ref())
        .await
        .unwrap();
    let id = stored_trace(chat.store.as_ref(), &engine).await;
    let carol = ("ca201000-0000-4000-8000-000000000003", "Carol SecOps");
    let reply = chat.say(carol, &format!("admin replay {id}")).await;
    assert!(
        reply.contains(&format!("trace {id}: same decision")),
        "{reply}"
    );
    let reply = chat.say(carol, "admin replay all").await;
    assert!(
        reply.contains("replayed 1 trace(s): 1 same, 0 different"),
        "{reply}"
    );
    let reply = chat.say(carol, "admin replay 999999").await;
    assert_eq!(reply, "Policy replay\nThere is no decision trace 999999.");
    let alice = ("a11ce000-0000-4000-8000-000000000001", "Alice Requester");
    assert_eq!(
        chat.say(alice, "admin replay all").await,
        "Admin commands are for Passkey admins."
    );
}

#[tokio::test]
async fn the_admin_syncs_the_vault_from_chat() {
    let chat = Chat::start(None).await;
    let carol = ("ca201000-0000-4000-8000-000000000003", "Carol SecOps");
    let reply = chat.say(carol, "admin sync").await;
    assert_eq!(
        reply,
        "Vault sync\nvault sync: 4 folders (0 ACL changes), 12 records seen: 0 discovered, 0 rotated, 0 updated, 0 orphaned, \
         0 restored, 0 double-checked",
        "the demo database already matches the local vault"
    );
    let alice = ("a11ce000-0000-4000-8000-000000000001", "Alice Requester");
    assert_eq!(
        chat.say(alice, "admin sync").await,
        "Admin commands are for Passkey admins."
    );
}

/// #14.1: someone with neither a phone number nor an authenticator app can only set one up with an
/// admin's invitation; the admin issues it in chat, and the person is told in their own chat.
#[tokio::test]
async fn an_admin_invites_someone_to_set_up_an_authenticator_and_they_are_told() {
    let chat = Chat::start(None).await;
    // Alice has talked to the bot, so it has a chat with her.
    chat.say(ALICE, "help").await;
    let invited = chat
        .say(CAROL, "admin totp-invite alice@contoso.example")
        .await;
    assert!(
        invited.starts_with(
            "Authenticator invitation\nAlice Requester may set up an authenticator app once"
        ),
        "{invited}"
    );
    let told = chat.messages_to(ALICE.0);
    assert!(
        told.iter()
            .any(|m| m.contains("invited you to set up an authenticator app")
                && m.contains("Carol SecOps")),
        "{told:?}"
    );
    let alice = chat
        .store
        .user_by_aad_object_id(ALICE.0)
        .await
        .unwrap()
        .unwrap();
    assert!(
        chat.store
            .totp_invitation(alice.id)
            .await
            .unwrap()
            .is_some()
    );
    // Usage, an unknown person, and a requester trying it: nothing is issued.
    let usage = chat.say(CAROL, "admin totp-invite").await;
    assert!(
        usage.contains("admin totp-invite alice@contoso.example"),
        "{usage}"
    );
    let unknown = chat
        .say(CAROL, "admin totp-invite nobody@contoso.example")
        .await;
    assert!(unknown.contains("nobody@contoso.example"), "{unknown}");
    let erin = chat
        .store
        .user_by_aad_object_id(ERIN.0)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        chat.say(ALICE, "admin totp-invite erin@contoso.example")
            .await,
        "Admin commands are for Passkey admins."
    );
    assert!(chat.store.totp_invitation(erin.id).await.unwrap().is_none());
}

const BOB: (&str, &str) = ("b0b00000-0000-4000-8000-000000000002", "Bob DBA Lead");

/// The group's answer to anything private typed there, when the person has a 1:1 chat with
/// the bot (the answer went there) and when they have none (nothing was done).
const SENT_PRIVATELY: &str =
    "Ask me in a personal chat: that answer is only for you, so I sent it to our personal chat.";
const NO_PERSONAL_CHAT: &str = "Ask me in a personal chat: that answer is only for you, and we have no personal chat yet. Open one with me (Passkey, in Teams chat) and ask there. I did nothing with this message.";

/// Group conversations: a group chat, a team channel, and a conversation that calls itself
/// personal but says it is a group (treated as the group it says it is).
fn groups() -> Vec<serde_json::Value> {
    use common::chat::{channel, group_chat};
    let mut odd = group_chat();
    odd["conversationType"] = serde_json::json!("personal");
    odd["id"] = serde_json::json!("19:odd-group@thread.v2");
    let mut untyped = channel();
    untyped.as_object_mut().unwrap().remove("conversationType");
    untyped["id"] = serde_json::json!("19:untyped@thread.tacv2");
    vec![group_chat(), channel(), odd, untyped]
}

#[tokio::test]
async fn admin_lists_and_other_private_answers_typed_in_a_group_go_to_the_personal_chat() {
    let chat = Chat::start(None).await;
    for person in [CAROL, BOB, ALICE] {
        chat.say(person, "help").await;
    }
    // Bob is db-prod's only approver, so his own request waits in the triage queue.
    chat.say(
        BOB,
        "request db-prod 1h because INC-4411 SECRET-DRILL failover",
    )
    .await;
    let private: [((&str, &str), &str, &str); 9] = [
        (CAROL, "admin triage", "Triage queue"),
        (CAROL, "admin health", "Database"),
        (
            CAROL,
            "admin authority show db-prod",
            "Authority over db-prod",
        ),
        (CAROL, "admin role bob@contoso.example", "Usage: admin role"),
        (BOB, "my requests", "#1 · db-prod"),
        (BOB, "pending", "Nothing"),
        (ALICE, "records db", "db-staging"),
        (ALICE, "request", "Why"),
        (BOB, "release 1", "Request #1"),
    ];
    for place in groups() {
        for (who, text, answer) in private {
            let what = format!("{} typed `{text}` in {place}", who.1);
            let sent_before = chat.messages_to(who.0).len();
            let reply = chat.say_in(who, place.clone(), text).await;
            assert_eq!(reply, SENT_PRIVATELY, "{what}");
            let sent = chat.messages_to(who.0);
            assert_eq!(sent.len(), sent_before + 1, "{what}: {sent:?}");
            assert!(sent.last().unwrap().contains(answer), "{what}: {sent:?}");
        }
        // Help is for everyone: answered in the group, without anyone's admin commands.
        let help = chat.say_in(CAROL, place.clone(), "help").await;
        assert!(help.contains("request RECORD"), "{help}");
        assert!(!help.contains("admin health"), "{help}");
    }
    // Nothing posted to a group names a request, a record or a person's data.
    for call in chat.connector.calls() {
        if call.path.contains("19%3A") || call.path.contains("19:") {
            let body = call.body.to_string();
            for detail in [
                "db-prod",
                "SECRET-DRILL",
                "Triage",
                "db-staging",
                "Database",
            ] {
                assert!(!body.contains(detail), "{detail} posted to a group: {body}");
            }
        }
    }
}

#[tokio::test]
async fn a_request_typed_in_a_group_is_answered_privately_or_not_taken() {
    let chat = Chat::start(None).await;
    chat.say(ALICE, "help").await;
    chat.say(BOB, "help").await;
    let group = common::chat::group_chat();

    let reply = chat
        .say_in(
            ALICE,
            group.clone(),
            "request db-prod 1h because INC-4411 SECRET-DRILL failover",
        )
        .await;
    assert_eq!(reply, SENT_PRIVATELY);
    let request = chat.store.request_by_id(1).await.unwrap().expect("taken");
    assert_eq!(request.status, passkey::domain::RequestStatus::Pending);
    let told = chat.messages_to(ALICE.0);
    assert!(
        told.last()
            .unwrap()
            .contains("Request #1 for `db-prod` is waiting for approval"),
        "{told:?}"
    );
    // The status card that follows the request is the one in the personal chat.
    let status_cards: Vec<_> = chat
        .store
        .sent_cards_for_request(1)
        .await
        .unwrap()
        .into_iter()
        .filter(|c| c.card_kind == "status")
        .collect();
    assert_eq!(status_cards.len(), 1, "{status_cards:?}");
    assert_eq!(
        status_cards[0].conversation_id,
        format!("a:{}-personal", ALICE.0)
    );

    // Erin never opened a personal chat with the bot: nothing is taken, the group hears nothing
    // of it, and she is told where to ask.
    let before = chat.audit_count().await;
    let reply = chat
        .say_in(
            ERIN,
            group.clone(),
            "request db-staging 1h because INC-4412 SECRET-LOAD test",
        )
        .await;
    assert_eq!(reply, NO_PERSONAL_CHAT);
    assert!(chat.store.request_by_id(2).await.unwrap().is_none());
    assert_eq!(chat.audit_count().await, before);
    let reply = chat
        .submit_in(
            ERIN,
            group.clone(),
            serde_json::json!({"verb": "submitRequest", "record": "db-staging", "duration": "1h", "justification": "INC-4413"}),
        )
        .await;
    assert_eq!(reply, NO_PERSONAL_CHAT);
    assert!(chat.store.request_by_id(2).await.unwrap().is_none());
    assert!(chat.messages_to(ERIN.0).is_empty());
}

#[tokio::test]
async fn card_buttons_in_a_channel_answer_only_the_person_who_tapped_and_keep_working() {
    let chat = Chat::start(None).await;
    chat.say(BOB, "help").await;
    chat.say(ALICE, "help").await;
    let channel = common::chat::channel();

    // Alice opens the form from a card in the channel and submits it there: the status card is
    // the invoke's answer, shown to her alone, and is not kept for updates — an update in place
    // would show it to the whole channel.
    let form = chat
        .tap_in(
            ALICE,
            channel.clone(),
            Some("channel-welcome-card"),
            "refresh",
            serde_json::json!({"view": "requestForm"}),
        )
        .await;
    assert_eq!(
        form["type"], "application/vnd.microsoft.card.adaptive",
        "{form}"
    );
    let status = chat
        .tap_in(
            ALICE,
            channel.clone(),
            Some("channel-welcome-card"),
            "submitRequest",
            serde_json::json!({"record": "dbPr0dPgL0g1nR3c0rd001", "duration": "1h", "justification": "INC-4411 SECRET-DRILL"}),
        )
        .await;
    assert!(
        common::card_text(&status["value"]).starts_with("Waiting for approval\n"),
        "{status}"
    );
    let kept = chat.store.sent_cards_for_request(1).await.unwrap();
    assert!(
        kept.iter().all(|c| !c.conversation_id.starts_with("19:")),
        "{kept:?}"
    );

    // Bob, the approver, refreshes and approves from the channel: his card, his decision.
    let card = chat
        .tap_in(
            BOB,
            channel.clone(),
            None,
            "refresh",
            serde_json::json!({"requestId": 1, "view": "approver"}),
        )
        .await;
    assert!(
        common::card_text(&card["value"]).contains("SECRET-DRILL"),
        "{card}"
    );
    // Erin, in the same channel, gets nothing from the same button.
    let hers = chat
        .tap_in(
            ERIN,
            channel.clone(),
            None,
            "refresh",
            serde_json::json!({"requestId": 1, "view": "approver"}),
        )
        .await;
    assert_eq!(hers["value"], "Request #1 is not yours.", "{hers}");
    let decided = chat
        .tap_in(
            BOB,
            channel.clone(),
            None,
            "approve",
            serde_json::json!({"requestId": 1}),
        )
        .await;
    assert!(
        common::card_text(&decided["value"]).contains("Approved"),
        "{decided}"
    );
    // No card in the channel was updated for everyone to read.
    assert!(
        chat.card_updates()
            .iter()
            .all(|(path, _)| !path.contains("19%3A") && !path.contains("19:")),
        "{:?}",
        chat.card_updates()
    );
}
