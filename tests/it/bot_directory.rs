//! Approvers named by address or group, reached through Microsoft Graph, in chat: requests typed
//! into `/api/messages` (dev channel mode, demo data), a fake Graph and a fake Connector on
//! loopback. People the bot has never talked to get the app installed for them and a 1:1 chat
//! opened; an approver nobody has, or a Graph that fails, sends the request to the admins and
//! the requester hears why.

use crate::common;

use common::chat::Chat;
use common::fake_graph::{CATALOG_APP_ID, FakeGraph};
use common::only_approvers;
use passkey::domain::{PrincipalType, RequestStatus};
use passkey::governance::directory::UserDirectory;
use std::sync::Arc;

const ALICE: (&str, &str) = ("a11ce000-0000-4000-8000-000000000001", "Alice Requester");
const CAROL: (&str, &str) = ("ca201000-0000-4000-8000-000000000003", "Carol SecOps");
const DANA: &str = "da0a0000-0000-4000-8000-0000000000d1";
const GROUP: &str = "5e0c0000-0000-4000-8000-00000000000a";
const MEMBERS: [&str; 3] = [
    "3e3b0001-0000-4000-8000-000000000001",
    "3e3b0002-0000-4000-8000-000000000002",
    "3e3b0003-0000-4000-8000-000000000003",
];
const ASK: &str = "request db-analytics-readonly 2h because INC-4411 nightly report";

async fn graph() -> FakeGraph {
    let graph = FakeGraph::start().await;
    graph.add_user(
        DANA,
        "Dana Approver",
        "dana@contoso.example",
        "dana@contoso.example",
    );
    for (i, id) in MEMBERS.iter().enumerate() {
        let mail = format!("sre{i}@contoso.example");
        graph.add_user(id, &format!("SRE {i}"), &mail, &mail);
    }
    graph.add_group(GROUP, &MEMBERS);
    graph
}

/// The app with Graph as its directory, installing the app for people before opening chats.
async fn chat_with(graph: &FakeGraph) -> Chat {
    let people: Arc<dyn UserDirectory> = Arc::new(graph.directory());
    Chat::start_with_people(
        people,
        &[
            ("PASSKEY_GRAPH__INSTALL_APP", "true"),
            ("PASSKEY_GRAPH__TEAMS_APP_CATALOG_ID", CATALOG_APP_ID),
        ],
    )
    .await
}

/// The recorded copies of a request's approval card (the requester's status card is recorded too).
async fn approval_copies(chat: &Chat, id: i64) -> Vec<passkey::store::SentCard> {
    chat.store
        .sent_cards_for_request(id)
        .await
        .unwrap()
        .into_iter()
        .filter(|c| c.card_kind == passkey::bot::notify::APPROVAL_CARD)
        .collect()
}

async fn status(chat: &Chat, id: i64) -> RequestStatus {
    chat.store.request_by_id(id).await.unwrap().unwrap().status
}

/// The Connector's create-conversation calls, as (member id, tenant, bot id).
fn chats_created(chat: &Chat) -> Vec<(String, String, String)> {
    chat.connector
        .calls()
        .into_iter()
        .filter(|c| c.method == "POST" && c.path == "/connector/v3/conversations")
        .map(|c| {
            (
                c.body["members"][0]["id"]
                    .as_str()
                    .unwrap_or_default()
                    .into(),
                c.body["channelData"]["tenant"]["id"]
                    .as_str()
                    .unwrap_or_default()
                    .into(),
                c.body["bot"]["id"].as_str().unwrap_or_default().into(),
            )
        })
        .collect()
}

#[tokio::test]
async fn an_email_approver_known_only_to_graph_gets_the_app_a_chat_and_the_card() {
    let graph = graph().await;
    let chat = chat_with(&graph).await;
    only_approvers(
        chat.store.as_ref(),
        "db-analytics-readonly",
        &[(PrincipalType::Email, "dana@contoso.example")],
    )
    .await;

    let asked = chat.say(ALICE, ASK).await;
    assert!(asked.contains("is waiting for approval"), "{asked}");
    assert_eq!(status(&chat, 1).await, RequestStatus::Pending);

    // Installed for her through Graph, then the 1:1 chat opened in the tenant.
    assert_eq!(graph.installs(), [DANA]);
    assert_eq!(
        chats_created(&chat),
        [(
            DANA.to_string(),
            common::channel::TENANT.to_string(),
            "28:passkey-dev".to_string()
        )]
    );
    let cards = chat.cards_to(DANA);
    assert_eq!(cards.len(), 1, "{cards:?}");
    let card = cards[0].to_string();
    assert!(
        card.contains("Alice Requester") && card.contains("db-analytics-readonly"),
        "{card}"
    );

    // The card is recorded for updating in place, in the chat that was opened and kept.
    let dana = chat
        .store
        .user_by_aad_object_id(DANA)
        .await
        .unwrap()
        .unwrap();
    let copies = approval_copies(&chat, 1).await;
    assert_eq!(copies.len(), 1);
    assert_eq!(copies[0].recipient_user_id, Some(dana.id));
    let kept = chat
        .store
        .personal_conversation(DANA)
        .await
        .unwrap()
        .expect("the new chat is kept");
    assert_eq!(kept.conversation_id, copies[0].conversation_id);
    assert_eq!(kept.service_url, chat.connector.service_url);
    assert_eq!(kept.user_id, Some(dana.id));

    // A second request reuses the chat: no second install, no second conversation.
    only_approvers(
        chat.store.as_ref(),
        "jenkins-deploy",
        &[(PrincipalType::Email, "dana@contoso.example")],
    )
    .await;
    chat.say(
        ALICE,
        "request jenkins-deploy 1h because INC-4412 hotfix deploy",
    )
    .await;
    assert_eq!(status(&chat, 2).await, RequestStatus::Pending);
    assert_eq!(chat.cards_to(DANA).len(), 2);
    assert_eq!(graph.installs().len(), 1);
    assert_eq!(chats_created(&chat).len(), 1);
    // Nothing the bot sent carries Graph's token.
    for call in chat.connector.calls() {
        assert!(!call.body.to_string().contains("graph-access-token"));
    }
}

#[tokio::test]
async fn every_member_of_a_group_over_two_pages_gets_the_card() {
    let graph = graph().await;
    let chat = chat_with(&graph).await;
    only_approvers(
        chat.store.as_ref(),
        "db-analytics-readonly",
        &[(PrincipalType::Group, GROUP)],
    )
    .await;
    let asked = chat.say(ALICE, ASK).await;
    assert!(asked.contains("is waiting for approval"), "{asked}");

    let pages = graph
        .calls()
        .into_iter()
        .filter(|c| c.path.contains("/transitiveMembers/"))
        .count();
    assert_eq!(pages, 2, "members come in two pages");
    assert_eq!(graph.installs(), MEMBERS);
    let created: Vec<String> = chats_created(&chat).into_iter().map(|c| c.0).collect();
    assert_eq!(created, MEMBERS);
    for member in MEMBERS {
        assert_eq!(chat.cards_to(member).len(), 1, "{member} gets the card");
    }
    assert_eq!(approval_copies(&chat, 1).await.len(), 3);
}

#[tokio::test]
async fn an_approver_nobody_has_sends_the_request_to_the_admins_and_the_requester_hears_why() {
    let graph = graph().await;
    let chat = chat_with(&graph).await;
    chat.say(CAROL, "help").await;
    only_approvers(
        chat.store.as_ref(),
        "db-analytics-readonly",
        &[(PrincipalType::Email, "nobody@contoso.example")],
    )
    .await;
    let asked = chat.say(ALICE, ASK).await;
    assert!(asked.contains("needs an admin's decision"), "{asked}");
    assert!(
        asked.contains("approver nobody@contoso.example could not be found in the directory"),
        "{asked}"
    );
    assert!(asked.contains("no approver could be reached"), "{asked}");
    assert_eq!(status(&chat, 1).await, RequestStatus::RequiresTriage);
    assert!(
        chat.messages_to(CAROL.0)
            .iter()
            .any(|m| m.contains("Request #1 from Alice Requester")),
        "the admins are told"
    );
    assert!(graph.installs().is_empty());
    assert!(chats_created(&chat).is_empty());
}

#[tokio::test]
async fn a_failing_graph_sends_the_request_to_the_admins_with_a_clear_reason() {
    let graph = graph().await;
    let chat = chat_with(&graph).await;
    chat.say(CAROL, "help").await;
    only_approvers(
        chat.store.as_ref(),
        "db-analytics-readonly",
        &[
            (PrincipalType::Email, "dana@contoso.example"),
            (PrincipalType::Group, GROUP),
        ],
    )
    .await;
    graph.set_down(true);
    let asked = chat.say(ALICE, ASK).await;
    assert!(asked.contains("needs an admin's decision"), "{asked}");
    assert!(
        asked.contains(
            "approver dana@contoso.example could not be looked up in the directory just now"
        ),
        "{asked}"
    );
    // The group by a fixed phrase (its name cannot be read either), never its object id, and
    // the directory's error text stays in the log.
    assert!(
        asked.contains("an approver group could not be listed just now"),
        "{asked}"
    );
    assert!(
        !asked.contains(GROUP) && !asked.contains("HTTP 500"),
        "{asked}"
    );
    assert_eq!(status(&chat, 1).await, RequestStatus::RequiresTriage);
    assert!(
        chat.messages_to(CAROL.0)
            .iter()
            .any(|m| m.contains("Request #1 from Alice Requester")),
        "the admins are told"
    );
    let actions: Vec<String> = chat
        .store
        .audit_events_for_request(1)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.action)
        .collect();
    assert_eq!(actions, ["REQUEST_SUBMITTED", "REQUEST_ESCALATED"]);
}

#[tokio::test]
async fn a_chat_that_cannot_be_opened_leaves_nothing_half_kept_and_the_request_waits() {
    let graph = graph().await;
    let chat = chat_with(&graph).await;
    only_approvers(
        chat.store.as_ref(),
        "db-analytics-readonly",
        &[(PrincipalType::Email, "dana@contoso.example")],
    )
    .await;
    // The Connector refuses the new conversation (the app is not in her roster yet).
    chat.connector.script(&[(403, None)]);
    let asked = chat.say(ALICE, ASK).await;
    assert!(asked.contains("is waiting for approval"), "{asked}");
    assert_eq!(graph.installs(), [DANA]);
    assert!(chat.cards_to(DANA).is_empty());
    assert!(
        chat.store
            .personal_conversation(DANA)
            .await
            .unwrap()
            .is_none()
    );
    assert!(approval_copies(&chat, 1).await.is_empty());
}

#[tokio::test]
async fn the_notifier_counts_chats_it_could_not_open_and_opens_them_when_it_can() {
    use passkey::bot::notify::{ProactiveChats, TeamsNotifier};
    use passkey::governance::lifecycle::{Notice, NoticeKind, Notifier};
    let graph = graph().await;
    let chat = chat_with(&graph).await;
    only_approvers(
        chat.store.as_ref(),
        "db-analytics-readonly",
        &[(PrincipalType::Email, "dana@contoso.example")],
    )
    .await;
    // The app's own notifier tells Dana once; this one is built by hand to read its counters.
    chat.say(ALICE, ASK).await;
    let dana = chat
        .store
        .user_by_aad_object_id(DANA)
        .await
        .unwrap()
        .unwrap();
    let state = &chat.server.state;
    let notifier = TeamsNotifier::new(
        state.store.clone(),
        state.bot.connector.clone(),
        state.clock.clone(),
        chat.server.base.clone(),
    )
    .with_proactive_chats(ProactiveChats {
        service_url: chat.connector.service_url.clone(),
        bot_id: "28:passkey-dev".into(),
        tenant_id: Some(common::channel::TENANT.into()),
        install: Some((Arc::new(graph.directory()), CATALOG_APP_ID.into())),
    });
    // Someone the bot has never talked to, and a Connector that refuses the new chat.
    let erin = chat
        .store
        .user_by_aad_object_id("e2140000-0000-4000-8000-000000000005")
        .await
        .unwrap()
        .unwrap();
    graph.add_user(
        &erin.aad_object_id,
        "Erin",
        "erin@contoso.example",
        "erin@contoso.example",
    );
    let notice = |user_id| Notice {
        user_id,
        request_id: 1,
        kind: NoticeKind::ApprovalNeeded,
    };
    chat.connector.script(&[(403, None)]);
    notifier.deliver(&[notice(erin.id)]).await;
    assert_eq!((notifier.chat_failures(), notifier.chats_opened()), (1, 0));
    assert!(
        chat.store
            .personal_conversation(&erin.aad_object_id)
            .await
            .unwrap()
            .is_none()
    );
    // Tried again, it works: the app was already installed (409 is fine), the chat is opened.
    notifier.deliver(&[notice(erin.id)]).await;
    assert_eq!((notifier.chat_failures(), notifier.chats_opened()), (1, 1));
    assert!(
        chat.store
            .personal_conversation(&erin.aad_object_id)
            .await
            .unwrap()
            .is_some()
    );
    assert_eq!(chat.cards_to(&erin.aad_object_id).len(), 1);
    // Dana has a chat from the first notice: used as it is, nothing opened.
    notifier.deliver(&[notice(dana.id)]).await;
    assert_eq!((notifier.chat_failures(), notifier.chats_opened()), (1, 1));
    assert_eq!(chat.cards_to(DANA).len(), 2);
    let erin_installs = graph
        .installs()
        .into_iter()
        .filter(|id| id == &erin.aad_object_id)
        .count();
    assert_eq!(erin_installs, 2, "installed, then 409 on the retry");
}
