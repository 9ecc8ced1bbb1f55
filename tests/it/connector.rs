//! The Connector client against a fake Bot Connector and token endpoint on loopback: every REST
//! operation's wire shape, token caching with one refresh in flight (the real client-secret
//! credential, over TLS), a fresh token after a 401, and error classification.

use crate::common;

use common::channel::{APP_ID, CONNECTOR_TOKEN, FakeConnector, Issuer};
use common::redirector::Redirector;
use common::tokens::{FakeCredential, HttpsTokens};
use passkey::bot::activity::OutgoingActivity;
use passkey::bot::connector::{
    Connector, ConnectorError, ConnectorHosts, ConversationTarget, HostPattern, HttpConnector,
    RetryPolicy, TokenProvider,
};
use secrecy::ExposeSecret;
use serde_json::json;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

fn fast_retries() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 3,
        base_delay: Duration::from_millis(10),
        max_delay: Duration::from_secs(2),
    }
}

/// Bot Framework's hosts and the fakes' loopback address.
fn hosts() -> ConnectorHosts {
    ConnectorHosts::bot_framework().with(HostPattern::parse("127.0.0.1").unwrap())
}

/// The Connector with the bot's real client-secret credential, asking the issuer's token
/// endpoint over TLS.
async fn client(issuer: &Issuer) -> (HttpConnector, Arc<TokenProvider>) {
    let https = HttpsTokens::front(&issuer.oauth_authority()).await;
    let tokens =
        Arc::new(https.provider(APP_ID, "pw", None, "https://api.botframework.com/.default"));
    (
        HttpConnector::new(Some(tokens.clone()), fast_retries()).with_hosts(hosts()),
        tokens,
    )
}

#[tokio::test]
async fn every_operation_speaks_the_connector_rest_shape() {
    let issuer = Issuer::start().await;
    let fake = FakeConnector::start().await;
    let (connector, _) = client(&issuer).await;
    let to = ConversationTarget {
        service_url: fake.service_url.clone(),
        conversation_id: "19:abc@thread.tacv2".into(),
    };

    let sent = connector
        .send(&to, &OutgoingActivity::text("hello"))
        .await
        .unwrap();
    assert_eq!(
        sent.id, "activity-0",
        "the new activity's id is kept, to update the card later"
    );
    let replied = connector
        .reply(&to, "1700", &OutgoingActivity::text("re"))
        .await
        .unwrap();
    assert_eq!(replied.id, "activity-1");
    connector
        .update(&to, "activity-0", &OutgoingActivity::text("edited"))
        .await
        .unwrap();
    connector.delete(&to, "activity-1").await.unwrap();
    connector.typing(&to).await.unwrap();
    let conversation = connector
        .create_personal_conversation(&fake.service_url, "28:bot", "29:user", "tenant-1")
        .await
        .unwrap();
    assert_eq!(conversation, "a:new-personal-29:user");

    let calls = fake.calls();
    let shape: Vec<(&str, &str)> = calls
        .iter()
        .map(|c| (c.method.as_str(), c.path.as_str()))
        .collect();
    assert_eq!(
        shape,
        [
            (
                "POST",
                "/connector/v3/conversations/19:abc@thread.tacv2/activities"
            ),
            (
                "POST",
                "/connector/v3/conversations/19:abc@thread.tacv2/activities/1700"
            ),
            (
                "PUT",
                "/connector/v3/conversations/19:abc@thread.tacv2/activities/activity-0"
            ),
            (
                "DELETE",
                "/connector/v3/conversations/19:abc@thread.tacv2/activities/activity-1"
            ),
            (
                "POST",
                "/connector/v3/conversations/19:abc@thread.tacv2/activities"
            ),
            ("POST", "/connector/v3/conversations"),
        ]
    );
    assert_eq!(
        calls[2].body["id"], "activity-0",
        "an update carries the id it replaces"
    );
    assert_eq!(calls[2].body["text"], "edited");
    assert_eq!(calls[4].body["type"], "typing");
    assert_eq!(
        calls[5].body,
        json!({"bot": {"id": "28:bot"}, "members": [{"id": "29:user"}], "channelData": {"tenant": {"id": "tenant-1"}}, "tenantId": "tenant-1", "isGroup": false})
    );
    assert!(
        calls
            .iter()
            .all(|c| c.authorization.as_deref() == Some(&format!("Bearer {CONNECTOR_TOKEN}")[..]))
    );
    assert_eq!(
        issuer.state.token_requests.load(Ordering::SeqCst),
        1,
        "one token serves every call"
    );
}

/// Whatever asks for a call — a reply, a proactive send, opening a chat — the token goes only to
/// allowed Connector hosts: a refused host gets no connection, and no token is even fetched.
/// Every Connector operation once, at the Connector `service_url`, each answer as `()`.
async fn every_call(
    connector: &HttpConnector,
    service_url: &str,
) -> Vec<Result<(), ConnectorError>> {
    let to = ConversationTarget {
        service_url: service_url.to_string(),
        conversation_id: "a:1".into(),
    };
    vec![
        connector
            .send(&to, &OutgoingActivity::text("x"))
            .await
            .map(|_| ()),
        connector
            .reply(&to, "1", &OutgoingActivity::text("x"))
            .await
            .map(|_| ()),
        connector
            .update(&to, "1", &OutgoingActivity::text("x"))
            .await,
        connector.delete(&to, "1").await,
        connector.typing(&to).await,
        connector
            .create_personal_conversation(service_url, "28:bot", "29:user", "tenant-1")
            .await
            .map(|_| ()),
    ]
}

#[tokio::test]
async fn calls_to_hosts_outside_the_allow_list_are_refused_before_any_token_or_connection() {
    let issuer = Issuer::start().await;
    let foreign = FakeConnector::start_on("127.0.0.2").await;
    let (connector, _) = client(&issuer).await;
    let port = foreign
        .service_url
        .split(':')
        .nth(2)
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .to_string();
    let refused_urls = [
        foreign.service_url.clone(),
        format!("http://127.0.0.1@127.0.0.2:{port}/connector/"),
        format!("http://localhost:{port}/connector/"),
        "http://smba.trafficmanager.net/emea/".to_string(),
        "https://smba.trafficmanager.net.evil.example/emea/".to_string(),
        "https://botframework.com.evil.example/".to_string(),
        "https://evilbotframework.com/".to_string(),
    ];
    for url in &refused_urls {
        for result in every_call(&connector, url).await {
            assert!(
                matches!(result, Err(ConnectorError::HostRefused(_))),
                "{url}: {result:?}"
            );
        }
    }
    assert!(
        foreign.calls().is_empty(),
        "no connection to a foreign host"
    );
    assert_eq!(
        issuer.state.token_requests.load(Ordering::SeqCst),
        0,
        "no token was fetched for a refused call"
    );
}

#[tokio::test]
async fn concurrent_callers_share_one_token_refresh() {
    let issuer = Issuer::start().await;
    let (_, tokens) = client(&issuer).await;
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let tokens = tokens.clone();
            tokio::spawn(async move { tokens.token().await.unwrap() })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(issuer.state.token_requests.load(Ordering::SeqCst), 1);
    tokens.invalidate().await;
    tokens.token().await.unwrap();
    assert_eq!(issuer.state.token_requests.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_401_from_the_connector_refreshes_the_token_once() {
    let issuer = Issuer::start().await;
    let fake = FakeConnector::start().await;
    let (connector, _) = client(&issuer).await;
    let to = ConversationTarget {
        service_url: fake.service_url.clone(),
        conversation_id: "a:1".into(),
    };
    fake.script(&[(401, None)]);
    connector
        .send(&to, &OutgoingActivity::text("x"))
        .await
        .unwrap();
    assert_eq!(fake.calls().len(), 2);
    assert_eq!(issuer.state.token_requests.load(Ordering::SeqCst), 2);

    fake.script(&[(401, None), (401, None)]);
    let err = connector
        .send(&to, &OutgoingActivity::text("x"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, ConnectorError::Rejected { status: 401 }),
        "{err:?}"
    );
}

#[tokio::test]
async fn unreachable_conversations_and_exhausted_retries_are_classified() {
    let issuer = Issuer::start().await;
    let fake = FakeConnector::start().await;
    let (connector, _) = client(&issuer).await;
    let to = ConversationTarget {
        service_url: fake.service_url.clone(),
        conversation_id: "a:gone".into(),
    };

    fake.script(&[(403, None)]);
    match connector
        .send(&to, &OutgoingActivity::text("x"))
        .await
        .unwrap_err()
    {
        ConnectorError::Unreachable { status: 403, code } => {
            assert_eq!(code.as_deref(), Some("BotNotInConversationRoster"))
        }
        other => panic!("{other:?}"),
    }
    fake.script(&[(404, None)]);
    assert!(matches!(
        connector.delete(&to, "x").await.unwrap_err(),
        ConnectorError::Unreachable { status: 404, .. }
    ));
    let before = fake.calls().len();
    fake.script(&[(500, None), (502, None), (503, None)]);
    let err = connector
        .send(&to, &OutgoingActivity::text("x"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, ConnectorError::Unavailable { attempts: 3, .. }),
        "{err:?}"
    );
    assert_eq!(
        fake.calls().len() - before,
        3,
        "bounded: exactly max_attempts calls"
    );
    fake.script(&[(400, None)]);
    assert!(matches!(
        connector
            .send(&to, &OutgoingActivity::text("x"))
            .await
            .unwrap_err(),
        ConnectorError::Rejected { status: 400 }
    ));

    let dead = ConversationTarget {
        service_url: "http://127.0.0.1:9/".into(),
        conversation_id: "a:1".into(),
    };
    let err = connector
        .send(&dead, &OutgoingActivity::text("x"))
        .await
        .unwrap_err();
    assert!(matches!(err, ConnectorError::Unavailable { .. }), "{err:?}");
    let bad = ConversationTarget {
        service_url: "not a url".into(),
        conversation_id: "a:1".into(),
    };
    assert!(matches!(
        connector
            .send(&bad, &OutgoingActivity::text("x"))
            .await
            .unwrap_err(),
        ConnectorError::BadServiceUrl
    ));
}

#[tokio::test]
async fn a_failing_token_endpoint_is_a_token_error_and_nothing_is_sent() {
    let fake = FakeConnector::start().await;
    let to = ConversationTarget {
        service_url: fake.service_url.clone(),
        conversation_id: "a:1".into(),
    };
    // The real credential, its token endpoint a closed port behind TLS.
    let https = HttpsTokens::front("http://127.0.0.1:9").await;
    let unreachable =
        Arc::new(https.provider(APP_ID, "pw", None, "https://api.botframework.com/.default"));
    // A credential that fails without any endpoint.
    let failing = Arc::new(TokenProvider::new(
        FakeCredential::failing(),
        "https://api.botframework.com/.default",
    ));
    for tokens in [unreachable, failing] {
        let connector = HttpConnector::new(Some(tokens), fast_retries()).with_hosts(hosts());
        let err = connector
            .send(&to, &OutgoingActivity::text("x"))
            .await
            .unwrap_err();
        assert!(matches!(err, ConnectorError::Token(_)), "{err:?}");
        assert!(!err.to_string().contains("pw"), "{err}");
    }
    assert!(fake.calls().is_empty());
}

/// Whatever credential the bot has: its token goes as the bearer, and after a 401 the credential
/// is asked again, once.
#[tokio::test]
async fn any_credential_gives_the_bearer_token_and_a_401_asks_it_again_once() {
    let fake = FakeConnector::start().await;
    let credential = FakeCredential::answering("token-from-any-credential");
    let tokens = Arc::new(TokenProvider::new(
        credential.clone(),
        "https://api.botframework.com/.default",
    ));
    assert_eq!(
        tokens.token().await.unwrap().expose_secret(),
        "token-from-any-credential"
    );
    let connector = HttpConnector::new(Some(tokens), fast_retries()).with_hosts(hosts());
    let to = ConversationTarget {
        service_url: fake.service_url.clone(),
        conversation_id: "a:1".into(),
    };
    fake.script(&[(401, None)]);
    connector
        .send(&to, &OutgoingActivity::text("x"))
        .await
        .unwrap();
    let calls = fake.calls();
    assert_eq!(calls.len(), 2);
    assert!(
        calls
            .iter()
            .all(|c| c.authorization.as_deref() == Some("Bearer token-from-any-credential"))
    );
    assert_eq!(
        credential.calls(),
        3,
        "one ask before the call, one after its 401"
    );
    fake.script(&[(401, None), (401, None)]);
    let err = connector
        .send(&to, &OutgoingActivity::text("x"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, ConnectorError::Rejected { status: 401 }),
        "{err:?}"
    );
    assert_eq!(credential.calls(), 5, "a second 401 is not retried");
}

/// A redirect would take the call past the host allow-list (the refusal above checks the URL the
/// bot chose, not where a 3xx sends it): the Connector never redirects, so a 3xx is a refusal and
/// nothing reaches the other host — no body, no token.
#[tokio::test]
async fn a_redirect_from_the_connector_is_refused_and_never_followed() {
    let issuer = Issuer::start().await;
    let foreign = FakeConnector::start_on("127.0.0.2").await;
    let allowed_twin = FakeConnector::start().await;
    let (connector, _) = client(&issuer).await;
    // To a host outside the allow-list, and to one inside it: neither is followed.
    for target in [&foreign, &allowed_twin] {
        let redirector =
            Redirector::start(target.service_url.trim_end_matches("/connector/")).await;
        let service_url = format!("{}/connector/", redirector.base);
        for result in every_call(&connector, &service_url).await {
            assert!(
                matches!(result, Err(ConnectorError::Rejected { status: 307 })),
                "{}: {result:?}",
                target.service_url
            );
        }
        assert_eq!(
            redirector.hits(),
            6,
            "each call was tried once, not retried"
        );
    }
    assert!(
        foreign.calls().is_empty(),
        "nothing reached the foreign host"
    );
    assert!(
        allowed_twin.calls().is_empty(),
        "a redirect is not followed even to an allowed host"
    );
}
