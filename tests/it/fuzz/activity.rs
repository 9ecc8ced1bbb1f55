//! The activity parser: `Activity::from_json` on any bytes, and `POST /api/messages` on the real
//! app in dev channel mode (loopback, no token) fed valid activities — a message, an
//! `Action.Execute` invoke, an `Action.Submit` message, a conversation update — with fields
//! dropped, retyped, made huge or deep, and with their bytes edited. A body the parser refuses is
//! a 400 (a 413 over the body limit) that stores nothing, writes no audit and sends nothing; a
//! body it takes is answered without a 5xx (but the 501 an unimplemented invoke gets).

use super::{apply_bytes, apply_json, byte_edits, config, json_edits, runtime};
use crate::common::channel::TENANT;
use crate::common::chat::{Chat, personal};
use passkey::bot::activity::Activity;
use proptest::prelude::*;
use proptest::test_runner::TestRunner;
use serde_json::{Value, json};
use std::sync::atomic::{AtomicUsize, Ordering};

const ALICE: &str = "a11ce000-0000-4000-8000-000000000001";
/// Written into every example; a refusal never quotes the body back.
const MARKER: &str = "FUZZMARKER";

fn seeds(service_url: &str) -> Vec<Value> {
    let base = |kind: &str| {
        json!({
            "type": kind,
            "id": "seed",
            "timestamp": "2026-11-23T09:00:00.000Z",
            "serviceUrl": service_url,
            "channelId": "msteams",
            "from": {"id": "29:alice", "name": "Alice Requester", "aadObjectId": ALICE},
            "conversation": personal(ALICE),
            "recipient": {"id": "28:passkey", "name": "Passkey"},
            "channelData": {"tenant": {"id": TENANT}, "note": MARKER},
            "locale": "en-US",
        })
    };
    let mut message = base("message");
    message["text"] = json!(format!("help {MARKER}"));
    let mut invoke = base("invoke");
    invoke["name"] = json!("adaptiveCard/action");
    invoke["value"] = json!({"action": {"type": "Action.Execute", "verb": "approve", "data": {"requestId": 1, "comment": MARKER}}, "trigger": "manual"});
    let mut submit = base("message");
    submit["value"] = json!({"verb": "refresh", "requestId": "1", "view": MARKER});
    let mut update = base("conversationUpdate");
    update["membersAdded"] =
        json!([{"id": "28:passkey"}, {"id": "29:alice", "aadObjectId": ALICE}]);
    let mut install = base("installationUpdate");
    install["action"] = json!("add");
    vec![message, invoke, submit, update, install]
}

proptest! {
    #![proptest_config(config(512))]

    #[test]
    fn any_bytes_are_an_activity_or_a_named_refusal(bytes in proptest::collection::vec(any::<u8>(), 0..1_000)) {
        check_parse(&bytes)?;
    }

    #[test]
    fn edited_activities_are_activities_or_named_refusals(
        seed in 0usize..5,
        json in json_edits(),
        bytes in proptest::option::of(byte_edits()),
    ) {
        let seed = &seeds("https://smba.trafficmanager.net/emea/")[seed];
        let mut body = apply_json(seed, &json, &super::edit_anything).to_string().into_bytes();
        if let Some(edits) = bytes {
            body = apply_bytes(&body, &edits);
        }
        check_parse(&body)?;
    }
}

/// A parsed activity is one `validate` passes; a refusal names what is wrong without quoting the
/// body.
fn check_parse(bytes: &[u8]) -> Result<Option<Activity>, TestCaseError> {
    match Activity::from_json(bytes) {
        Ok(a) => {
            prop_assert!(a.validate().is_ok());
            prop_assert!(!a.kind.trim().is_empty() && !a.channel_id.trim().is_empty());
            Ok(Some(a))
        }
        Err(e) => {
            let shown = e.to_string();
            prop_assert!(
                !shown.contains(MARKER),
                "the refusal quotes the body: {shown}"
            );
            prop_assert!(shown.len() <= 200, "{shown}");
            Ok(None)
        }
    }
}

struct Bot {
    rt: tokio::runtime::Runtime,
    chat: Chat,
    next: AtomicUsize,
}

fn start_bot() -> Bot {
    let rt = runtime();
    let chat = rt.block_on(Chat::start(None));
    Bot {
        rt,
        chat,
        next: AtomicUsize::new(0),
    }
}

/// What a refused activity must leave as it was.
async fn snapshot(chat: &Chat) -> (i64, usize, usize) {
    (
        chat.store.count_users().await.unwrap(),
        chat.audit_count().await,
        chat.connector.calls().len(),
    )
}

#[test]
fn edited_activities_over_http_are_refused_with_a_400_and_change_nothing() {
    let bot = &start_bot();
    let service_url = bot.chat.connector.service_url.clone();
    let seeds = seeds(&service_url);
    let http = reqwest::Client::new();
    let limit = bot.chat.server.state.settings.http.body_limit_bytes;
    // The seeds are accepted, so the refusals below are the edits' doing.
    bot.rt.block_on(async {
        for mut seed in seeds.clone() {
            let n = bot.next.fetch_add(1, Ordering::SeqCst);
            seed["id"] = json!(format!("seed-{n}"));
            let r = http
                .post(bot.chat.server.url("/api/messages"))
                .json(&seed)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200, "{seed}");
        }
    });
    let mut runner = TestRunner::new(proptest::test_runner::Config {
        source_file: Some(file!()),
        ..config(96)
    });
    let strategy = (
        0usize..seeds.len(),
        json_edits(),
        proptest::option::of(byte_edits()),
    );
    runner
        .run(&strategy, |(seed, json, bytes)| {
            let n = bot.next.fetch_add(1, Ordering::SeqCst);
            let mut doc = seeds[seed].clone();
            doc["id"] = json!(format!("fuzz-{n}"));
            // The reply goes to the fake Connector: a serviceUrl edited into another loopback
            // port would only make the Connector client retry.
            let doc = apply_json(&doc, &json, &|p: &str| p.starts_with("/serviceUrl"));
            let mut body = doc.to_string().into_bytes();
            if let Some(edits) = bytes {
                body = apply_bytes(&body, &edits);
            }
            let parsed = check_parse(&body)?;
            if parsed
                .as_ref()
                .is_some_and(|a| a.service_url != service_url)
            {
                return Ok(());
            }
            bot.rt.block_on(async {
                let before = snapshot(&bot.chat).await;
                let r = http
                    .post(bot.chat.server.url("/api/messages"))
                    .header("content-type", "application/json")
                    .body(body.clone())
                    .send()
                    .await
                    .unwrap();
                let status = r.status().as_u16();
                let text = r.text().await.unwrap_or_default();
                // 501 is the protocol's answer to an invoke the bot does not implement.
                let unimplemented_invoke =
                    status == 501 && parsed.as_ref().is_some_and(|a| a.kind == "invoke");
                prop_assert!(
                    status < 500 || unimplemented_invoke,
                    "{status} {text} for {}",
                    String::from_utf8_lossy(&body)
                );
                if body.len() > limit {
                    prop_assert_eq!(status, 413, "{}", text);
                } else if parsed.is_none() {
                    prop_assert_eq!(status, 400, "{}", text);
                }
                if (400..500).contains(&status) {
                    prop_assert!(
                        !text.contains(MARKER),
                        "the refusal quotes the body: {text}"
                    );
                    prop_assert_eq!(
                        snapshot(&bot.chat).await,
                        before,
                        "a refused activity changed something"
                    );
                }
                Ok(())
            })
        })
        .unwrap();
}
