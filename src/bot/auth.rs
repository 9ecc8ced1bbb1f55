//! Channel authentication for `POST /api/messages`, fail closed.
//!
//! A Bot Framework channel token is an RS256 JWT. We check, in order: the header names RS256 and a
//! key id; the key id is one the issuer publishes (an unknown kid triggers one rate-limited refetch
//! of the keys); the signature; `iss` is one of that key source's issuers; `aud` is our app id;
//! `exp`/`nbf` with five minutes of clock tolerance; the `serviceurl` claim equals the activity's
//! `serviceUrl`; and the signing key's `endorsements` contain the activity's `channelId`.
//! For single-tenant bots, tokens issued by the tenant's Entra issuers (v1 and v2) are accepted
//! too: there the app id must also be the token's `appid` (v1) or `azp` (v2).
//! Keys come from OpenID metadata → `jwks_uri` through the shared cache in `crate::openid` (one
//! fetch in flight, backoff, stale keys during an outage, rate-limited refetch on an unknown kid);
//! a failed fetch with nothing cached is a 401 — never a 500 and never a pass.
//!
//! Before any of that the token is read once by us: three base64url segments, at most
//! [`MAX_TOKEN_BYTES`], header and claims JSON objects in which no name appears twice (at any
//! depth — serde_json would keep the last `serviceurl`, another reader the first), and no `crit`
//! header (it names extensions a verifier must understand; we implement none).

use crate::domain::Clock;
use crate::openid::{KeyError, OpenIdCache, SigningKey};
use base64::Engine as _;
use jsonwebtoken::{Algorithm, Validation};
use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::Value;
use std::collections::HashSet;
use std::sync::Arc;

/// Clock tolerance the Bot Framework SDKs allow on exp/nbf.
pub const CLOCK_SKEW_SECS: u64 = 300;

pub const BOT_FRAMEWORK_ISSUER: &str = "https://api.botframework.com";
/// Channel tokens are one to two kilobytes; anything near this is not one.
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// Why a token was refused. Every variant is a 401 to the caller; the variant is logged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("no bearer token")]
    MissingToken,
    #[error("token is not a well-formed JWT")]
    Malformed,
    #[error("token of {0} bytes is too large")]
    TooLarge(usize),
    #[error("token repeats a name in its {0}")]
    RepeatedName(&'static str),
    #[error("token has a crit header")]
    CriticalHeader,
    #[error("algorithm {0} is not accepted")]
    WrongAlgorithm(String),
    #[error("token has no key id")]
    MissingKeyId,
    #[error("issuer not accepted")]
    UnknownIssuer,
    /// The kid as [`printable_kid`] shows it: it comes from the caller.
    #[error("signing key {0} is not published by the issuer")]
    UnknownKey(String),
    #[error("signing keys unavailable")]
    KeysUnavailable,
    #[error("signature or claims invalid: {0}")]
    Invalid(String),
    #[error("token expired")]
    Expired,
    #[error("token not yet valid")]
    NotYetValid,
    #[error("audience is not this bot")]
    WrongAudience,
    #[error("serviceurl claim missing")]
    MissingServiceUrl,
    #[error("serviceurl claim does not match the activity")]
    ServiceUrlMismatch,
    #[error("signing key is not endorsed for channel {0}")]
    NotEndorsed(String),
    #[error("token was issued to another app")]
    WrongAppId,
}

/// What a verified token told us.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelIdentity {
    /// `bot-framework`, `entra` or `dev` (unauthenticated, loopback only).
    pub issuer_kind: &'static str,
    pub service_url: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SourceKind {
    BotFramework,
    Entra,
}

struct KeySource {
    kind: SourceKind,
    issuers: Vec<String>,
    /// The source's OpenID metadata and signing keys.
    keys: OpenIdCache,
}

/// Verifies channel tokens against one or two key sources.
pub struct ChannelAuth {
    app_id: String,
    sources: Vec<KeySource>,
    clock: Arc<dyn Clock>,
    verified: VerifiedTokens,
}

impl ChannelAuth {
    /// `entra`: for single-tenant bots, the tenant id and the Entra OpenID metadata URL.
    pub fn new(
        app_id: String,
        bot_framework_metadata_url: String,
        entra: Option<(String, String)>,
        http: reqwest::Client,
        clock: Arc<dyn Clock>,
    ) -> Self {
        let mut sources = vec![KeySource {
            kind: SourceKind::BotFramework,
            issuers: vec![BOT_FRAMEWORK_ISSUER.to_string()],
            keys: OpenIdCache::new(bot_framework_metadata_url, http.clone()),
        }];
        if let Some((tenant, metadata_url)) = entra {
            sources.push(KeySource {
                kind: SourceKind::Entra,
                issuers: vec![
                    format!("https://sts.windows.net/{tenant}/"),
                    format!("https://login.microsoftonline.com/{tenant}/v2.0"),
                ],
                keys: OpenIdCache::new(metadata_url, http.clone()),
            });
        }
        ChannelAuth {
            app_id,
            sources,
            clock,
            verified: VerifiedTokens::default(),
        }
    }

    /// Verifies an `Authorization` header value against the activity it came with.
    pub async fn verify(
        &self,
        authorization: Option<&str>,
        activity_service_url: &str,
        activity_channel_id: &str,
    ) -> Result<ChannelIdentity, AuthError> {
        let token = authorization
            .and_then(|h| {
                h.strip_prefix("Bearer ")
                    .or_else(|| h.strip_prefix("bearer "))
            })
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or(AuthError::MissingToken)?;
        let digest = crate::canonical::sha256(token);
        if let Some(seen) = self.verified.get(&digest) {
            let source = &self.sources[seen.source];
            // The kid must still be published and name the key that verified the signature; a
            // key rotated out is refused here as in full, a kid that names another key now is
            // verified in full (and its signature fails).
            let key = self.key(source, &seen.kid).await?;
            if key.fingerprint == seen.key {
                return self.accept(
                    source,
                    &key,
                    &seen.claims,
                    activity_service_url,
                    activity_channel_id,
                );
            }
            self.verified.forget(&digest);
        }
        let unverified = UnverifiedToken::read(token)?;
        let header = jsonwebtoken::decode_header(token).map_err(|_| AuthError::Malformed)?;
        if header.alg != Algorithm::RS256 {
            return Err(AuthError::WrongAlgorithm(format!("{:?}", header.alg)));
        }
        let kid = header
            .kid
            .filter(|k| !k.is_empty())
            .ok_or(AuthError::MissingKeyId)?;
        // The unverified issuer only picks which key source to verify against; the verified
        // token's `iss` is then checked against that source's list.
        let issuer = unverified
            .claims
            .get("iss")
            .and_then(Value::as_str)
            .map(String::from)
            .ok_or(AuthError::UnknownIssuer)?;
        let (source_index, source) = self
            .sources
            .iter()
            .enumerate()
            .find(|(_, s)| s.issuers.contains(&issuer))
            .ok_or(AuthError::UnknownIssuer)?;
        let key = self.key(source, &kid).await?;

        let mut validation = Validation::new(Algorithm::RS256);
        validation.leeway = CLOCK_SKEW_SECS;
        validation.validate_nbf = false;
        validation.set_audience(&[&self.app_id]);
        validation.set_issuer(&source.issuers);
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        // Time is checked against our clock, not the library's (see `check_times`), so tests that
        // move time agree with production.
        validation.validate_exp = false;
        let data = jsonwebtoken::decode::<Value>(token, &key.key, &validation).map_err(|e| {
            use jsonwebtoken::errors::ErrorKind;
            match e.kind() {
                ErrorKind::InvalidAudience => AuthError::WrongAudience,
                ErrorKind::ImmatureSignature => AuthError::NotYetValid,
                ErrorKind::InvalidIssuer => AuthError::UnknownIssuer,
                ErrorKind::InvalidSignature => AuthError::Invalid("bad signature".into()),
                ErrorKind::MissingRequiredClaim(claim) => {
                    AuthError::Invalid(format!("missing {}", printable_kid(claim)))
                }
                // The other kinds may quote the token (serde's messages do): name the kind only.
                other => AuthError::Invalid(
                    format!("{other:?}")
                        .split(['(', ' ', '{'])
                        .next()
                        .unwrap_or("invalid")
                        .to_string(),
                ),
            }
        })?;
        let claims = data.claims;
        let identity = self.accept(
            source,
            &key,
            &claims,
            activity_service_url,
            activity_channel_id,
        )?;
        self.verified.remember(
            digest,
            VerifiedToken {
                source: source_index,
                kid,
                key: key.fingerprint,
                claims: Arc::new(claims),
            },
            self.clock.now().unix_seconds(),
        );
        Ok(identity)
    }

    /// What a verified token must still satisfy on every use: its times against our clock, and,
    /// against the activity it came with, the service URL, the key's endorsements and (Entra) the
    /// app id. The same checks for a token verified now and one verified before.
    fn accept(
        &self,
        source: &KeySource,
        key: &SigningKey,
        claims: &Value,
        activity_service_url: &str,
        activity_channel_id: &str,
    ) -> Result<ChannelIdentity, AuthError> {
        self.check_times(claims)?;

        let service_url_claim = claims.get("serviceurl").and_then(Value::as_str);
        match source.kind {
            SourceKind::BotFramework => {
                let claimed = service_url_claim.ok_or(AuthError::MissingServiceUrl)?;
                if !same_service_url(claimed, activity_service_url) {
                    return Err(AuthError::ServiceUrlMismatch);
                }
                let endorsed = key
                    .endorsements
                    .as_ref()
                    .is_some_and(|e| e.iter().any(|c| c == activity_channel_id));
                if !endorsed {
                    return Err(AuthError::NotEndorsed(activity_channel_id.to_string()));
                }
            }
            SourceKind::Entra => {
                let app_claim = match claims.get("ver").and_then(Value::as_str) {
                    Some("2.0") => claims.get("azp"),
                    _ => claims.get("appid"),
                };
                if app_claim.and_then(Value::as_str) != Some(self.app_id.as_str()) {
                    return Err(AuthError::WrongAppId);
                }
                if let Some(claimed) = service_url_claim
                    && !same_service_url(claimed, activity_service_url)
                {
                    return Err(AuthError::ServiceUrlMismatch);
                }
                if let Some(endorsements) = &key.endorsements
                    && !endorsements.iter().any(|c| c == activity_channel_id)
                {
                    return Err(AuthError::NotEndorsed(activity_channel_id.to_string()));
                }
            }
        }
        Ok(ChannelIdentity {
            issuer_kind: match source.kind {
                SourceKind::BotFramework => "bot-framework",
                SourceKind::Entra => "entra",
            },
            service_url: service_url_claim.map(String::from),
        })
    }

    fn check_times(&self, claims: &Value) -> Result<(), AuthError> {
        let now = self.clock.now().unix_seconds();
        let skew = CLOCK_SKEW_SECS as i64;
        let exp = claims
            .get("exp")
            .and_then(Value::as_i64)
            .ok_or(AuthError::Invalid("exp is not a number".into()))?;
        // Saturating: a signed `exp` of i64::MAX is "never", not an overflow.
        if now > exp.saturating_add(skew) {
            return Err(AuthError::Expired);
        }
        if let Some(nbf) = claims.get("nbf") {
            let nbf = nbf
                .as_i64()
                .ok_or(AuthError::Invalid("nbf is not a number".into()))?;
            if now.saturating_add(skew) < nbf {
                return Err(AuthError::NotYetValid);
            }
        }
        Ok(())
    }

    /// The key for `kid`, from the source's shared metadata and key cache (`openid`): one fetch
    /// in flight, stale keys during an outage, unknown kids refetched at most once a minute, and
    /// not again within a few seconds of a failed fetch.
    async fn key(&self, source: &KeySource, kid: &str) -> Result<SigningKey, AuthError> {
        source.keys.key(kid).await.map_err(|e| match e {
            KeyError::Unavailable => AuthError::KeysUnavailable,
            KeyError::UnknownKey => AuthError::UnknownKey(printable_kid(kid)),
        })
    }
}

/// Channel tokens whose signature, issuer and audience were verified, by SHA-256 of the token.
/// The Connector sends one token with many activities (for about an hour), and the RSA
/// verification was about 7 % of the server's CPU per message (docs/benchmarks.md, fifth pass).
/// An entry says only that this token was signed by this key for this bot; whatever depends on
/// the moment or the activity is checked on every use as for a new token (`ChannelAuth::accept`),
/// and the key must still be published under its kid and be the same key. Bounded: when full,
/// entries past their token's `exp` (and the clock tolerance) go, then all of them.
#[derive(Default)]
struct VerifiedTokens {
    entries: std::sync::Mutex<std::collections::HashMap<[u8; 32], VerifiedToken>>,
}

#[derive(Clone)]
struct VerifiedToken {
    /// Index into `ChannelAuth::sources`.
    source: usize,
    kid: String,
    /// The verifying key's fingerprint.
    key: [u8; 32],
    claims: Arc<Value>,
}

impl VerifiedTokens {
    /// Tokens kept at most: one or a few per Connector region in practice.
    const CAPACITY: usize = 256;

    fn get(&self, digest: &[u8; 32]) -> Option<VerifiedToken> {
        self.lock().get(digest).cloned()
    }

    fn forget(&self, digest: &[u8; 32]) {
        self.lock().remove(digest);
    }

    fn remember(&self, digest: [u8; 32], token: VerifiedToken, now: i64) {
        let mut entries = self.lock();
        if entries.len() >= Self::CAPACITY {
            let skew = CLOCK_SKEW_SECS as i64;
            entries.retain(|_, t| {
                t.claims
                    .get("exp")
                    .and_then(Value::as_i64)
                    .is_some_and(|exp| exp.saturating_add(skew) >= now)
            });
            if entries.len() >= Self::CAPACITY {
                entries.clear();
            }
        }
        entries.insert(digest, token);
    }

    fn lock(
        &self,
    ) -> std::sync::MutexGuard<'_, std::collections::HashMap<[u8; 32], VerifiedToken>> {
        // The map holds no invariant a panicking holder could break: use it as it is.
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// `https://x/y/` and `https://x/y` name the same Connector endpoint.
fn same_service_url(a: &str, b: &str) -> bool {
    a.trim_end_matches('/')
        .eq_ignore_ascii_case(b.trim_end_matches('/'))
}

/// A kid as logs and errors show it: printable ASCII, at most 64 characters (it is the caller's
/// text; the telemetry layer caps and escapes again).
fn printable_kid(kid: &str) -> String {
    if kid.len() <= 64 && kid.bytes().all(|b| b.is_ascii_graphic()) {
        kid.to_string()
    } else {
        format!("<{} bytes, not shown>", kid.len())
    }
}

/// The token as we read it ourselves, before the library does: exactly three segments, header
/// and claims decoded with the same strict base64url the library uses, each a JSON object in
/// which no name appears twice at any depth, and no `crit` header.
struct UnverifiedToken {
    claims: serde_json::Map<String, Value>,
}

impl UnverifiedToken {
    fn read(token: &str) -> Result<UnverifiedToken, AuthError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(AuthError::TooLarge(token.len()));
        }
        let mut segments = token.split('.');
        let (Some(header), Some(payload), Some(_signature), None) = (
            segments.next(),
            segments.next(),
            segments.next(),
            segments.next(),
        ) else {
            return Err(AuthError::Malformed);
        };
        let decode = |segment: &str| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(segment)
                .map_err(|_| AuthError::Malformed)
        };
        let header = object(&decode(header)?, "header")?;
        if header.contains_key("crit") {
            return Err(AuthError::CriticalHeader);
        }
        let claims = object(&decode(payload)?, "claims")?;
        Ok(UnverifiedToken { claims })
    }
}

/// A JSON object whose names are unique at every depth.
fn object(bytes: &[u8], part: &'static str) -> Result<serde_json::Map<String, Value>, AuthError> {
    serde_json::from_slice::<UniqueNames>(bytes).map_err(|e| {
        if e.to_string().starts_with(REPEATED_NAME) {
            AuthError::RepeatedName(part)
        } else {
            AuthError::Malformed
        }
    })?;
    match serde_json::from_slice(bytes) {
        Ok(Value::Object(map)) => Ok(map),
        _ => Err(AuthError::Malformed),
    }
}

const REPEATED_NAME: &str = "repeated name";

/// Walks a JSON document and fails on the first object that names a member twice. (serde_json's
/// `Value` and derived structs keep the last one; this only looks, the values are read after.)
struct UniqueNames;

impl<'de> Deserialize<'de> for UniqueNames {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(UniqueNames)
    }
}

impl<'de> Visitor<'de> for UniqueNames {
    type Value = UniqueNames;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("JSON")
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(UniqueNames)
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
        Ok(UniqueNames)
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
        Ok(UniqueNames)
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Ok(UniqueNames)
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
        Ok(UniqueNames)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(UniqueNames)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<UniqueNames>()?.is_some() {}
        Ok(UniqueNames)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut seen = HashSet::new();
        while let Some(name) = map.next_key::<String>()? {
            if !seen.insert(name) {
                return Err(de::Error::custom(REPEATED_NAME));
            }
            // serde_json hands arbitrary-precision numbers over as a one-entry map; walking
            // it like any other object is harmless.
            map.next_value::<UniqueNames>()?;
        }
        Ok(UniqueNames)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(s: &str) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s)
    }

    fn read(header: &str, claims: &str) -> Result<UnverifiedToken, AuthError> {
        UnverifiedToken::read(&format!("{}.{}.c2ln", b64(header), b64(claims)))
    }

    fn verified(exp: i64) -> VerifiedToken {
        VerifiedToken {
            source: 0,
            kid: "kid-a".into(),
            key: [7; 32],
            claims: Arc::new(serde_json::json!({ "exp": exp })),
        }
    }

    fn digest(n: usize) -> [u8; 32] {
        crate::canonical::sha256(n.to_le_bytes())
    }

    #[test]
    fn verified_tokens_stay_bounded_and_expired_ones_go_first() {
        let memo = VerifiedTokens::default();
        let now = 1_000_000;
        let skew = CLOCK_SKEW_SECS as i64;
        // Half expired beyond the tolerance, half current.
        for n in 0..VerifiedTokens::CAPACITY {
            let exp = if n % 2 == 0 { now - skew - 1 } else { now + 60 };
            memo.remember(digest(n), verified(exp), now);
        }
        assert_eq!(memo.lock().len(), VerifiedTokens::CAPACITY);
        memo.remember(digest(usize::MAX), verified(now + 60), now);
        let entries = memo.lock().len();
        assert_eq!(
            entries,
            VerifiedTokens::CAPACITY / 2 + 1,
            "the expired half went"
        );
        assert!(memo.get(&digest(0)).is_none(), "expired");
        assert!(memo.get(&digest(1)).is_some(), "still current");
        assert!(memo.get(&digest(usize::MAX)).is_some(), "the new one");

        // Full of current tokens: all go, the new one stays.
        let memo = VerifiedTokens::default();
        for n in 0..VerifiedTokens::CAPACITY {
            memo.remember(digest(n), verified(now + 60), now);
        }
        memo.remember(digest(usize::MAX), verified(now + 60), now);
        assert_eq!(memo.lock().len(), 1);
        assert!(memo.get(&digest(usize::MAX)).is_some());
        memo.forget(&digest(usize::MAX));
        assert!(memo.get(&digest(usize::MAX)).is_none());
    }

    #[test]
    fn repeated_names_are_found_at_any_depth_and_in_any_spelling() {
        let header = r#"{"alg":"RS256","kid":"k"}"#;
        assert!(
            read(
                header,
                r#"{"iss":"a","x":[{"b":1},{"b":2}],"y":{"z":{"w":1.5e300}}}"#
            )
            .is_ok()
        );
        for claims in [
            r#"{"serviceurl":"a","serviceurl":"b"}"#,
            r#"{"serviceurl":"a","service\u0075rl":"b"}"#,
            r#"{"x":{"a":1,"a":1}}"#,
            r#"{"x":[1,{"y":[{"a":null,"a":null}]}]}"#,
        ] {
            assert_eq!(
                read(header, claims).err(),
                Some(AuthError::RepeatedName("claims")),
                "{claims}"
            );
        }
        assert_eq!(
            read(r#"{"alg":"RS256","kid":"a","kid":"b"}"#, "{}").err(),
            Some(AuthError::RepeatedName("header"))
        );
        assert_eq!(
            read(r#"{"alg":"RS256","kid":"a","crit":[]}"#, "{}").err(),
            Some(AuthError::CriticalHeader)
        );
    }

    #[test]
    fn only_three_strict_base64url_segments_of_json_objects_are_read() {
        let ok = format!("{}.{}.c2ln", b64("{}"), b64("{}"));
        assert!(UnverifiedToken::read(&ok).is_ok());
        for token in [
            format!("{}.{}", b64("{}"), b64("{}")),
            format!("{}.{}.c2ln.x", b64("{}"), b64("{}")),
            format!("{}=.{}.c2ln", b64("{}"), b64("{}")),
            format!("{}.{}.c2ln", b64("[]"), b64("{}")),
            format!("{}.{}.c2ln", b64("{}"), b64("\"1\"")),
            format!("{}.{}.c2ln", b64("{}"), b64("{} x")),
        ] {
            assert_eq!(
                UnverifiedToken::read(&token).err(),
                Some(AuthError::Malformed),
                "{token}"
            );
        }
        let huge = "a".repeat(MAX_TOKEN_BYTES + 1);
        assert_eq!(
            UnverifiedToken::read(&huge).err(),
            Some(AuthError::TooLarge(MAX_TOKEN_BYTES + 1))
        );
    }

    #[test]
    fn kids_are_shown_only_when_short_and_printable() {
        assert_eq!(printable_kid("kid-a"), "kid-a");
        assert_eq!(printable_kid("a\nb"), "<3 bytes, not shown>");
        assert_eq!(
            printable_kid(&"k".repeat(500_000)),
            "<500000 bytes, not shown>"
        );
    }
}
