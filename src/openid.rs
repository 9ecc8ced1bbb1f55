//! OpenID provider metadata and signing keys, fetched and cached in one place for every token
//! Passkey verifies: Bot Framework and Entra channel tokens (`bot::auth`) and the sign-in
//! id_token (`web::oidc`). What a token must say is the caller's business; this module only
//! answers "what does the provider publish" and "which key is `kid`".
//!
//! One [`OpenIdCache`] per metadata URL (`…/.well-known/openid-configuration`). A refresh reads
//! the metadata, then the JWKS at its `jwks_uri`, and keeps the RSA keys by `kid`. The rules,
//! the strictest the two verifiers had before they shared this:
//! - one refresh in flight: concurrent callers wait for it and then read the cache;
//! - refreshed when nothing is cached, when the cache is older than
//!   [`CachePolicy::refresh_after`], or when a `kid` is unknown — at most once per
//!   [`CachePolicy::unknown_kid_interval`] for unknown kids (forged kids cannot become a flood
//!   of fetches);
//! - after a failed refresh, no other attempt for [`CachePolicy::failure_backoff`]: callers are
//!   answered from the cache, or refused;
//! - stale metadata and keys are served while the provider is unreachable: an outage there must
//!   not lock everyone out, and a token still has to be signed by a key the provider once
//!   published;
//! - a JWKS without one usable RSA key is a failed refresh (the old keys stay);
//! - nothing cached and the provider unreachable is [`KeyError::Unavailable`], never a pass.

use jsonwebtoken::DecodingKey;
use serde::Deserialize;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{Mutex, RwLock};

/// How long things are kept and how often the provider may be asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CachePolicy {
    /// Metadata and keys older than this are refetched on use.
    pub refresh_after: Duration,
    /// An unknown kid triggers at most one refetch per this interval.
    pub unknown_kid_interval: Duration,
    /// After a failed fetch, callers within this window are answered from the cache (or refused).
    pub failure_backoff: Duration,
    /// Each request to the provider.
    pub timeout: Duration,
}

impl Default for CachePolicy {
    fn default() -> Self {
        CachePolicy {
            refresh_after: Duration::from_secs(24 * 60 * 60),
            unknown_kid_interval: Duration::from_secs(60),
            failure_backoff: Duration::from_secs(5),
            timeout: Duration::from_secs(10),
        }
    }
}

/// The parts of the provider's metadata Passkey reads. Only `jwks_uri` is required here; the
/// sign-in client requires the endpoints it uses.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Metadata {
    pub jwks_uri: String,
    #[serde(default)]
    pub issuer: Option<String>,
    #[serde(default)]
    pub authorization_endpoint: Option<String>,
    #[serde(default)]
    pub token_endpoint: Option<String>,
}

/// A published RSA signing key, with the Bot Framework's `endorsements` (the channels it may
/// sign for) when the JWKS lists them.
#[derive(Clone)]
pub struct SigningKey {
    pub key: DecodingKey,
    pub endorsements: Option<Vec<String>>,
    /// SHA-256 of the key material (modulus and exponent as published): tells whether a kid
    /// still names the key it named when a token was verified with it.
    pub fingerprint: [u8; 32],
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// Nothing usable is cached and the provider could not be read.
    #[error("signing keys unavailable")]
    Unavailable,
    /// The provider does not publish this kid (as far as the cache may know right now).
    #[error("signing key is not published")]
    UnknownKey,
}

#[derive(Default)]
struct State {
    metadata: Option<(Arc<Metadata>, Instant)>,
    keys: HashMap<String, SigningKey>,
    keys_fetched: Option<Instant>,
    last_unknown_kid_fetch: Option<Instant>,
    last_failure: Option<Instant>,
}

impl State {
    fn failing(&self, policy: &CachePolicy) -> bool {
        self.last_failure
            .is_some_and(|t| t.elapsed() < policy.failure_backoff)
    }
}

/// Metadata and keys of one OpenID provider (see the module docs for the rules).
pub struct OpenIdCache {
    metadata_url: String,
    http: reqwest::Client,
    policy: CachePolicy,
    state: RwLock<State>,
    /// One refresh in flight.
    fetching: Mutex<()>,
}

#[derive(Deserialize)]
struct Jwks {
    keys: Vec<Jwk>,
}

#[derive(Deserialize)]
struct Jwk {
    kid: Option<String>,
    kty: Option<String>,
    n: Option<String>,
    e: Option<String>,
    #[serde(default)]
    endorsements: Option<Vec<String>>,
}

impl OpenIdCache {
    pub fn new(metadata_url: String, http: reqwest::Client) -> OpenIdCache {
        OpenIdCache::with_policy(metadata_url, http, CachePolicy::default())
    }

    pub fn with_policy(
        metadata_url: String,
        http: reqwest::Client,
        policy: CachePolicy,
    ) -> OpenIdCache {
        OpenIdCache {
            metadata_url,
            http,
            policy,
            state: RwLock::new(State::default()),
            fetching: Mutex::new(()),
        }
    }

    pub fn metadata_url(&self) -> &str {
        &self.metadata_url
    }

    /// The provider's metadata: cached, refreshed when due, stale while the provider is down.
    pub async fn metadata(&self) -> Result<Arc<Metadata>, KeyError> {
        if let Some(m) = self.cached_metadata().await {
            return Ok(m);
        }
        let _one_fetch_at_a_time = self.fetching.lock().await;
        if let Some(m) = self.cached_metadata().await {
            return Ok(m);
        }
        let may_fetch = !self.state.read().await.failing(&self.policy);
        if may_fetch {
            self.refresh(false).await;
        }
        self.state
            .read()
            .await
            .metadata
            .as_ref()
            .map(|(m, _)| m.clone())
            .ok_or(KeyError::Unavailable)
    }

    /// `Some` when the cache may answer without a fetch.
    async fn cached_metadata(&self) -> Option<Arc<Metadata>> {
        let state = self.state.read().await;
        let failing = state.failing(&self.policy);
        match &state.metadata {
            Some((m, at)) if failing || at.elapsed() < self.policy.refresh_after => Some(m.clone()),
            _ => None,
        }
    }

    /// The key published as `kid`.
    pub async fn key(&self, kid: &str) -> Result<SigningKey, KeyError> {
        if let Some(k) = self.cached_key(kid).await? {
            return Ok(k);
        }
        let _one_fetch_at_a_time = self.fetching.lock().await;
        // Someone else may have fetched while we waited for the lock.
        if let Some(k) = self.cached_key(kid).await? {
            return Ok(k);
        }
        let was_unknown_kid = {
            let state = self.state.read().await;
            state.keys_fetched.is_some() && !state.keys.contains_key(kid)
        };
        self.refresh(was_unknown_kid).await;
        let state = self.state.read().await;
        match state.keys.get(kid) {
            Some(k) => Ok(k.clone()),
            None if state.keys.is_empty() => Err(KeyError::Unavailable),
            None => Err(KeyError::UnknownKey),
        }
    }

    /// `Ok(Some)` when the cache can answer, `Ok(None)` when a fetch is due, `Err` when a fetch
    /// is due but throttled.
    async fn cached_key(&self, kid: &str) -> Result<Option<SigningKey>, KeyError> {
        let state = self.state.read().await;
        let fresh = state
            .keys_fetched
            .is_some_and(|t| t.elapsed() < self.policy.refresh_after);
        let failing = state.failing(&self.policy);
        match state.keys.get(kid) {
            // A stale key is still used while the provider is unreachable.
            Some(k) if fresh || failing => Ok(Some(k.clone())),
            Some(_) => Ok(None),
            None if failing && state.keys.is_empty() => Err(KeyError::Unavailable),
            None if failing => Err(KeyError::UnknownKey),
            None if fresh
                && state
                    .last_unknown_kid_fetch
                    .is_some_and(|t| t.elapsed() < self.policy.unknown_kid_interval) =>
            {
                Err(KeyError::UnknownKey)
            }
            None => Ok(None),
        }
    }

    /// Reads the metadata, then the keys; keeps what was read and remembers a failure. The
    /// caller holds `fetching`.
    async fn refresh(&self, for_unknown_kid: bool) {
        let outcome = async {
            let metadata: Metadata = self.get_json(&self.metadata_url, "metadata").await?;
            let metadata = Arc::new(metadata);
            self.state.write().await.metadata = Some((metadata.clone(), Instant::now()));
            let jwks: Jwks = self.get_json(&metadata.jwks_uri, "jwks").await?;
            usable_keys(jwks)
        }
        .await;
        let mut state = self.state.write().await;
        match outcome {
            Ok(keys) => {
                state.keys = keys;
                state.keys_fetched = Some(Instant::now());
                state.last_failure = None;
                if for_unknown_kid {
                    state.last_unknown_kid_fetch = Some(Instant::now());
                }
            }
            Err(e) => {
                tracing::warn!(metadata = %self.metadata_url, error = %e, "OpenID metadata or key fetch failed");
                state.last_failure = Some(Instant::now());
            }
        }
    }

    async fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        url: &str,
        what: &str,
    ) -> Result<T, String> {
        self.http
            .get(url)
            .timeout(self.policy.timeout)
            .send()
            .await
            .and_then(|r| r.error_for_status())
            .map_err(|e| format!("{what}: {e}"))?
            .json()
            .await
            .map_err(|e| format!("{what} body: {e}"))
    }
}

/// The JWKS's RSA keys with a kid (RFC 7517 requires `kty`; other types are skipped), or an error
/// when there is none.
fn usable_keys(jwks: Jwks) -> Result<HashMap<String, SigningKey>, String> {
    let mut keys = HashMap::new();
    for jwk in jwks.keys {
        let (Some(kid), Some(n), Some(e)) = (jwk.kid, jwk.n, jwk.e) else {
            continue;
        };
        if jwk.kty.as_deref() != Some("RSA") {
            continue;
        }
        match DecodingKey::from_rsa_components(&n, &e) {
            Ok(key) => {
                keys.insert(
                    kid,
                    SigningKey {
                        key,
                        endorsements: jwk.endorsements,
                        fingerprint: crate::canonical::sha256(format!("{n}.{e}")),
                    },
                );
            }
            Err(err) => tracing::warn!(kid = %kid, error = %err, "skipping unusable JWKS key"),
        }
    }
    if keys.is_empty() {
        return Err("the JWKS holds no usable RSA keys".into());
    }
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jwks(json: &str) -> Jwks {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn only_rsa_keys_with_a_kid_are_kept_and_none_is_an_error() {
        // A 2048-bit modulus is not needed to build a DecodingKey: any base64url n/e parses.
        let keys = usable_keys(jwks(
            r#"{"keys":[
                {"kty":"RSA","kid":"a","n":"sXch","e":"AQAB","endorsements":["msteams"]},
                {"kid":"no-kty","n":"sXch","e":"AQAB"},
                {"kty":"EC","kid":"ec","x":"a","y":"b"},
                {"kty":"RSA","n":"sXch","e":"AQAB"}
            ]}"#,
        ))
        .unwrap();
        assert_eq!(keys.len(), 1);
        assert_eq!(
            keys["a"].endorsements.as_deref(),
            Some(&["msteams".to_string()][..])
        );
        assert!(usable_keys(jwks(r#"{"keys":[]}"#)).is_err());
        assert!(usable_keys(jwks(r#"{"keys":[{"kty":"EC","kid":"e"}]}"#)).is_err());
    }
}
