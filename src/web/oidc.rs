//! Entra ID sign-in: OpenID Connect authorization code flow with PKCE (S256), as a confidential
//! client. Discovery at `{authority}/{tenant}/v2.0/.well-known/openid-configuration` and the
//! signing keys at its `jwks_uri` come through the shared cache in `crate::openid` (one fetch in
//! flight, backoff after a failure, stale metadata and keys while Entra is unreachable, an unknown
//! kid refetched at most once a minute). The id_token must be RS256 under a published key, `aud`
//! = our client id, `iss` = the discovery issuer for the token's own `tid` (which must be an
//! allowed tenant), `exp`/`nbf` within a minute of our clock, and carry the nonce this browser's
//! sign-in started with. Fails closed: anything unverifiable refuses the sign-in.

use crate::config::OidcSettings;
use crate::domain::Clock;
use crate::openid::{CachePolicy, KeyError, OpenIdCache};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, Validation};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use std::sync::Arc;
use std::time::Duration;

/// Clock tolerance on `exp` and `nbf`.
pub const LEEWAY_SECS: i64 = 60;
const TIMEOUT: Duration = Duration::from_secs(10);

/// Why a sign-in was refused. The variant is audited; the person sees a plain "sign-in failed".
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OidcError {
    #[error("the identity provider is unreachable or answered badly")]
    Provider,
    #[error("the identity provider refused the code ({0})")]
    TokenRefused(String),
    #[error("id_token is malformed")]
    Malformed,
    #[error("id_token algorithm {0} is not accepted")]
    WrongAlgorithm(String),
    #[error("id_token signing key is not published")]
    UnknownKey,
    #[error("id_token signature or audience is invalid")]
    Invalid,
    #[error("id_token issuer is not the tenant's")]
    WrongIssuer,
    #[error("id_token expired")]
    Expired,
    #[error("id_token not yet valid")]
    NotYetValid,
    #[error("nonce does not match this sign-in")]
    NonceMismatch,
    #[error("tenant is not allowed")]
    TenantNotAllowed,
    #[error("id_token has no object id")]
    NoObjectId,
}

impl OidcError {
    /// A stable word for the audit trail.
    pub fn code(&self) -> &'static str {
        match self {
            OidcError::Provider => "provider_unavailable",
            OidcError::TokenRefused(_) => "code_refused",
            OidcError::Malformed => "malformed",
            OidcError::WrongAlgorithm(_) => "wrong_algorithm",
            OidcError::UnknownKey => "unknown_key",
            OidcError::Invalid => "bad_signature_or_audience",
            OidcError::WrongIssuer => "wrong_issuer",
            OidcError::Expired => "expired",
            OidcError::NotYetValid => "not_yet_valid",
            OidcError::NonceMismatch => "nonce_mismatch",
            OidcError::TenantNotAllowed => "tenant_not_allowed",
            OidcError::NoObjectId => "no_object_id",
        }
    }
}

/// Who Entra says signed in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub oid: String,
    pub tid: String,
}

/// What sign-in needs from the discovery document; all of it must be there.
#[derive(Debug, Clone)]
struct Discovery {
    issuer: String,
    authorization_endpoint: String,
    token_endpoint: String,
}

#[derive(Deserialize)]
struct TokenResponse {
    id_token: Option<String>,
    error: Option<String>,
}

#[derive(Deserialize)]
struct Claims {
    iss: String,
    exp: i64,
    nbf: Option<i64>,
    nonce: Option<String>,
    tid: Option<String>,
    oid: Option<String>,
}

pub struct OidcClient {
    client_id: String,
    client_secret: SecretString,
    allowed_tenants: Vec<String>,
    redirect_uri: String,
    http: reqwest::Client,
    clock: Arc<dyn Clock>,
    /// Discovery and signing keys.
    provider: OpenIdCache,
}

/// The PKCE S256 challenge for a verifier.
pub fn pkce_challenge(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(aws_lc_rs::digest::digest(
        &aws_lc_rs::digest::SHA256,
        verifier.as_bytes(),
    ))
}

impl OidcClient {
    /// None unless a client id is configured (`Settings::check` made sure the rest is there).
    pub fn from_settings(
        settings: &OidcSettings,
        allowed_tenants: &[String],
        public_base_url: &str,
        clock: Arc<dyn Clock>,
    ) -> Option<OidcClient> {
        let client_id = settings.client_id.clone().filter(|c| !c.is_empty())?;
        let http = crate::outbound::client(Some(TIMEOUT));
        let tenant = settings.tenant_id.clone().unwrap_or_default();
        // No allow-list (dev): the one tenant the app is registered in, unless that is a
        // multi-tenant alias — then nobody, rather than everybody.
        let allowed_tenants = if allowed_tenants.is_empty() {
            match tenant.as_str() {
                "" | "common" | "organizations" | "consumers" => Vec::new(),
                t => vec![t.to_string()],
            }
        } else {
            allowed_tenants.to_vec()
        };
        let authority = settings.authority.trim_end_matches('/').to_string();
        let provider = OpenIdCache::new(
            format!("{authority}/{tenant}/v2.0/.well-known/openid-configuration"),
            http.clone(),
        );
        Some(OidcClient {
            client_id,
            client_secret: settings
                .client_secret
                .clone()
                .unwrap_or_else(|| SecretString::from("")),
            allowed_tenants,
            redirect_uri: format!("{public_base_url}/signin/callback"),
            http,
            clock,
            provider,
        })
    }

    /// The same client with other cache timings (tests shorten them to see refreshes).
    pub fn with_cache_policy(mut self, policy: CachePolicy) -> OidcClient {
        self.provider = OpenIdCache::with_policy(
            self.provider.metadata_url().to_string(),
            self.http.clone(),
            policy,
        );
        self
    }

    async fn discovery(&self) -> Result<Discovery, OidcError> {
        let m = self
            .provider
            .metadata()
            .await
            .map_err(|_| OidcError::Provider)?;
        match (&m.issuer, &m.authorization_endpoint, &m.token_endpoint) {
            (Some(issuer), Some(authorization), Some(token)) => Ok(Discovery {
                issuer: issuer.clone(),
                authorization_endpoint: authorization.clone(),
                token_endpoint: token.clone(),
            }),
            _ => {
                tracing::warn!("OpenID discovery document lacks the issuer or an endpoint");
                Err(OidcError::Provider)
            }
        }
    }

    /// Where to send the browser: the authorization endpoint with our client, the state, nonce
    /// and PKCE challenge.
    pub async fn authorization_url(
        &self,
        state: &str,
        nonce: &str,
        verifier: &str,
    ) -> Result<String, OidcError> {
        let d = self.discovery().await?;
        let mut url =
            reqwest::Url::parse(&d.authorization_endpoint).map_err(|_| OidcError::Provider)?;
        url.query_pairs_mut()
            .append_pair("client_id", &self.client_id)
            .append_pair("response_type", "code")
            .append_pair("redirect_uri", &self.redirect_uri)
            .append_pair("response_mode", "query")
            .append_pair("scope", "openid profile")
            .append_pair("state", state)
            .append_pair("nonce", nonce)
            .append_pair("code_challenge", &pkce_challenge(verifier))
            .append_pair("code_challenge_method", "S256");
        Ok(url.into())
    }

    /// Redeems the code (with the client secret and PKCE verifier) and validates the id_token.
    pub async fn redeem(
        &self,
        code: &str,
        verifier: &str,
        nonce: &str,
    ) -> Result<Identity, OidcError> {
        let d = self.discovery().await?;
        let form = [
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", &self.redirect_uri),
            ("client_id", &self.client_id),
            ("client_secret", self.client_secret.expose_secret()),
            ("code_verifier", verifier),
            ("scope", "openid profile"),
        ];
        let response = self
            .http
            .post(&d.token_endpoint)
            .form(&form)
            .send()
            .await
            .map_err(|e| {
                tracing::warn!(error = %e, "token endpoint unreachable");
                OidcError::Provider
            })?;
        let status = response.status();
        let body: TokenResponse = response.json().await.map_err(|_| OidcError::Provider)?;
        let id_token = match (status.is_success(), body.id_token, body.error) {
            (true, Some(t), _) => t,
            (_, _, Some(error)) => {
                // Only the error code: the description may echo parts of the request.
                let code: String = error
                    .chars()
                    .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .take(64)
                    .collect();
                return Err(OidcError::TokenRefused(code));
            }
            _ => return Err(OidcError::Provider),
        };
        self.validate(&id_token, nonce, &d).await
    }

    async fn validate(
        &self,
        id_token: &str,
        nonce: &str,
        d: &Discovery,
    ) -> Result<Identity, OidcError> {
        let header = jsonwebtoken::decode_header(id_token).map_err(|_| OidcError::Malformed)?;
        if header.alg != Algorithm::RS256 {
            return Err(OidcError::WrongAlgorithm(format!("{:?}", header.alg)));
        }
        let kid = header
            .kid
            .filter(|k| !k.is_empty())
            .ok_or(OidcError::UnknownKey)?;
        let key = match self.provider.key(&kid).await {
            Ok(k) => k.key,
            Err(KeyError::Unavailable) => return Err(OidcError::Provider),
            Err(KeyError::UnknownKey) => return Err(OidcError::UnknownKey),
        };
        let mut validation = Validation::new(Algorithm::RS256);
        validation.set_audience(&[&self.client_id]);
        // exp/nbf are checked below against the app's clock; iss once `tid` is known.
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.required_spec_claims = ["aud", "exp", "iss"]
            .map(String::from)
            .into_iter()
            .collect();
        let claims = jsonwebtoken::decode::<Claims>(id_token, &key, &validation)
            .map_err(|_| OidcError::Invalid)?
            .claims;
        let tid = claims.tid.clone().unwrap_or_default();
        if tid.is_empty() || claims.iss != d.issuer.replace("{tenantid}", &tid) {
            return Err(OidcError::WrongIssuer);
        }
        let now = self.clock.now().unix_seconds();
        if claims.exp + LEEWAY_SECS < now {
            return Err(OidcError::Expired);
        }
        if claims.nbf.is_some_and(|nbf| nbf - LEEWAY_SECS > now) {
            return Err(OidcError::NotYetValid);
        }
        if !claims
            .nonce
            .as_deref()
            .is_some_and(|n| super::session::same_text(n, nonce))
        {
            return Err(OidcError::NonceMismatch);
        }
        if !self
            .allowed_tenants
            .iter()
            .any(|t| t.eq_ignore_ascii_case(&tid))
        {
            return Err(OidcError::TenantNotAllowed);
        }
        let oid = claims
            .oid
            .filter(|o| !o.is_empty())
            .ok_or(OidcError::NoObjectId)?;
        Ok(Identity { oid, tid })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pkce_challenge_is_rfc_7636s_example() {
        // RFC 7636, appendix B.
        assert_eq!(
            pkce_challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
    }
}
