//! The one OpenID metadata and key cache (`passkey::openid`) that channel auth and web sign-in
//! share, against the loopback issuers of `common::channel` (Bot Framework metadata + JWKS) and
//! `common::oidc` (a fake Entra ID). Timings are shortened through `CachePolicy` where a test
//! has to see an interval pass.

use crate::common::channel::Issuer;
use crate::common::oidc::{CLIENT_ID, CLIENT_SECRET, FakeEntra};
use crate::common::t0;
use crate::common::web::DEMO_TENANT;
use passkey::config::OidcSettings;
use passkey::domain::ManualClock;
use passkey::openid::{CachePolicy, KeyError, OpenIdCache};
use passkey::web::oidc::{OidcClient, OidcError};
use std::sync::Arc;
use std::time::Duration;

fn cache(issuer: &Issuer, policy: CachePolicy) -> Arc<OpenIdCache> {
    Arc::new(OpenIdCache::with_policy(
        issuer.bf_metadata_url(),
        reqwest::Client::new(),
        policy,
    ))
}

fn short(ms: u64) -> Duration {
    Duration::from_millis(ms)
}

#[tokio::test]
async fn n_concurrent_callers_on_a_cold_cache_cause_one_metadata_and_one_key_fetch() {
    let issuer = Issuer::start().await;
    // The JWKS answers late, so every caller arrives while the one fetch is in flight.
    issuer.delay_keys(300);
    let keys = cache(&issuer, CachePolicy::default());
    let callers = (0..12).map(|i| {
        let keys = keys.clone();
        tokio::spawn(async move {
            if i % 3 == 0 {
                keys.metadata().await.map(|_| ())
            } else {
                keys.key(if i % 2 == 0 { "kid-a" } else { "kid-b" })
                    .await
                    .map(|_| ())
            }
        })
    });
    for caller in callers.collect::<Vec<_>>() {
        assert_eq!(caller.await.unwrap(), Ok(()));
    }
    assert_eq!(issuer.metadata_fetches(), 1);
    assert_eq!(issuer.key_fetches(), 1);
}

#[tokio::test]
async fn stale_keys_are_served_while_the_jwks_endpoint_is_down() {
    let issuer = Issuer::start().await;
    // Everything cached is stale at once: each use wants a refresh.
    let keys = cache(
        &issuer,
        CachePolicy {
            refresh_after: Duration::ZERO,
            ..CachePolicy::default()
        },
    );
    let first = keys.key("kid-a").await.unwrap();
    assert_eq!(
        first.endorsements,
        Some(vec!["msteams".to_string(), "webchat".to_string()])
    );
    assert_eq!(issuer.key_fetches(), 1);

    issuer.set_keys_down(true);
    // One refresh is tried, fails, and the stale key answers.
    assert!(keys.key("kid-a").await.is_ok());
    assert_eq!(issuer.key_fetches(), 2);
    // Within the backoff the stale keys answer without asking again; an unknown kid is refused.
    assert!(keys.key("kid-b").await.is_ok());
    assert!(keys.key("kid-a").await.is_ok());
    assert_eq!(keys.key("kid-x").await.err(), Some(KeyError::UnknownKey));
    assert_eq!(issuer.key_fetches(), 2);

    // The whole issuer down: stale metadata answers as well.
    issuer.set_down(true);
    assert!(
        keys.metadata()
            .await
            .unwrap()
            .jwks_uri
            .ends_with("/bf/.well-known/keys")
    );
}

#[tokio::test]
async fn after_a_failed_fetch_callers_back_off_instead_of_storming_the_provider() {
    let issuer = Issuer::start().await;
    issuer.set_down(true);
    let keys = cache(
        &issuer,
        CachePolicy {
            failure_backoff: short(1000),
            ..CachePolicy::default()
        },
    );
    let callers: Vec<_> = (0..10)
        .map(|_| {
            let keys = keys.clone();
            tokio::spawn(async move { keys.key("kid-a").await.err() })
        })
        .collect();
    for caller in callers {
        assert_eq!(caller.await.unwrap(), Some(KeyError::Unavailable));
    }
    for _ in 0..10 {
        assert_eq!(keys.key("kid-a").await.err(), Some(KeyError::Unavailable));
        assert_eq!(keys.metadata().await.err(), Some(KeyError::Unavailable));
    }
    assert_eq!(
        issuer.metadata_fetches(),
        1,
        "one attempt per backoff window"
    );

    // The issuer is back; the next attempt waits for the backoff to pass.
    issuer.set_down(false);
    assert_eq!(keys.key("kid-a").await.err(), Some(KeyError::Unavailable));
    assert_eq!(issuer.metadata_fetches(), 1);
    tokio::time::sleep(short(1100)).await;
    assert!(keys.key("kid-a").await.is_ok());
    assert_eq!(issuer.metadata_fetches(), 2);
    assert_eq!(issuer.key_fetches(), 1);
}

#[tokio::test]
async fn an_unknown_kid_triggers_at_most_one_refresh_per_interval() {
    let issuer = Issuer::start().await;
    let keys = cache(
        &issuer,
        CachePolicy {
            unknown_kid_interval: short(1000),
            ..CachePolicy::default()
        },
    );
    assert!(keys.key("kid-a").await.is_ok());
    assert_eq!(issuer.key_fetches(), 1);

    // The first unknown kid refreshes once; a burst after it does not.
    for i in 0..8 {
        assert_eq!(
            keys.key(&format!("made-up-{i}")).await.err(),
            Some(KeyError::UnknownKey)
        );
    }
    assert_eq!(issuer.key_fetches(), 2);

    // A key published now is seen only after the interval, with one more refresh.
    issuer.publish("rogue", "kid-new", &["msteams"]);
    assert_eq!(keys.key("kid-new").await.err(), Some(KeyError::UnknownKey));
    assert_eq!(issuer.key_fetches(), 2);
    tokio::time::sleep(short(1100)).await;
    assert!(keys.key("kid-new").await.is_ok());
    assert_eq!(issuer.key_fetches(), 3);
    // Known kids never refresh while the keys are fresh.
    assert!(keys.key("kid-a").await.is_ok());
    assert_eq!(issuer.key_fetches(), 3);
}

fn sign_in_client(entra: &FakeEntra, policy: CachePolicy) -> OidcClient {
    let settings = OidcSettings {
        authority: entra.base.clone(),
        tenant_id: Some(DEMO_TENANT.into()),
        client_id: Some(CLIENT_ID.into()),
        client_secret: Some(CLIENT_SECRET.to_string().into()),
        allowed_tenants: vec![DEMO_TENANT.into()],
    };
    OidcClient::from_settings(
        &settings,
        &[DEMO_TENANT.into()],
        "https://passkey.example",
        Arc::new(ManualClock::new(t0())),
    )
    .unwrap()
    .with_cache_policy(policy)
}

/// A whole sign-in: the authorization URL, the fake's instant "sign in" (a redirect carrying the
/// code), and the redemption with the id_token checks.
async fn sign_in(client: &OidcClient, n: usize) -> Result<String, OidcError> {
    let verifier = format!("verifier-{n}-{}", "v".repeat(48));
    let nonce = format!("nonce-{n}");
    let url = client
        .authorization_url(&format!("state-{n}"), &nonce, &verifier)
        .await?;
    let browser = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let location = browser.get(url).send().await.unwrap().headers()["location"]
        .to_str()
        .unwrap()
        .to_string();
    let code = reqwest::Url::parse(&location)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "code")
        .map(|(_, v)| v.into_owned())
        .unwrap();
    client
        .redeem(&code, &verifier, &nonce)
        .await
        .map(|identity| identity.oid)
}

#[tokio::test]
async fn web_sign_in_keeps_working_from_cached_metadata_and_keys_while_entra_is_down() {
    let entra = FakeEntra::start(t0().unix_seconds()).await;
    // Stale at once, as after a day: the old sign-in cache refetched here and failed.
    let client = sign_in_client(
        &entra,
        CachePolicy {
            refresh_after: Duration::ZERO,
            ..CachePolicy::default()
        },
    );
    assert!(sign_in(&client, 1).await.is_ok());
    let (before, _) = entra.fetches();
    entra.set_metadata_down(true);
    for n in 2..5 {
        assert_eq!(
            sign_in(&client, n).await.unwrap(),
            "a11ce000-0000-4000-8000-000000000001"
        );
    }
    // One failed refresh, then the backoff: no fetch per sign-in.
    let (discovery, _) = entra.fetches();
    assert_eq!(
        discovery,
        before + 1,
        "one refresh tried in the outage, then backoff"
    );

    // A client that never reached Entra refuses, as before.
    let cold = sign_in_client(&entra, CachePolicy::default());
    assert_eq!(sign_in(&cold, 9).await.err(), Some(OidcError::Provider));
}

#[tokio::test]
async fn concurrent_sign_ins_on_a_cold_client_fetch_discovery_and_keys_once() {
    let entra = FakeEntra::start(t0().unix_seconds()).await;
    let client = Arc::new(sign_in_client(&entra, CachePolicy::default()));
    let sign_ins: Vec<_> = (0..8)
        .map(|n| {
            let client = client.clone();
            tokio::spawn(async move { sign_in(&client, n).await })
        })
        .collect();
    for s in sign_ins {
        assert!(s.await.unwrap().is_ok());
    }
    assert_eq!(entra.fetches(), (1, 1));
}
