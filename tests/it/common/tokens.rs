//! The bot's own tokens in tests. [`HttpsTokens`] puts TLS in front of a fake's Entra token
//! endpoint (`/{tenant}/oauth2/v2.0/token`): `azure_identity` posts an app password over https
//! only, so the real `ClientSecretCredential` talks to it through a client that trusts the test's
//! throwaway CA. [`FakeCredential`] stands in for any credential where only the caller's
//! behaviour is under test.

use super::tls::{TestCa, TlsProxy, socket_of};
use async_trait::async_trait;
use azure_core::credentials::{AccessToken, Secret, TokenCredential, TokenRequestOptions};
use passkey::bot::connector::TokenProvider;
use passkey::config::Settings;
use secrecy::SecretString;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// An https address for a plain-http fake, and a client that trusts it.
pub struct HttpsTokens {
    /// `https://127.0.0.1:{port}`: what `bot.oauth_authority` names.
    pub authority: String,
    pub client: reqwest::Client,
    _ca: TestCa,
}

impl HttpsTokens {
    /// TLS on loopback in front of the fake at `plain_base` (`http://127.0.0.1:{port}`), or in
    /// front of a closed port.
    pub async fn front(plain_base: &str) -> HttpsTokens {
        let ca = TestCa::new(&[IpAddr::V4(Ipv4Addr::LOCALHOST)]);
        let proxy =
            TlsProxy::start(&ca, IpAddr::V4(Ipv4Addr::LOCALHOST), socket_of(plain_base)).await;
        let pem = std::fs::read(&ca.ca_file).unwrap();
        let client = reqwest::Client::builder()
            .tls_certs_only([reqwest::Certificate::from_pem(&pem).unwrap()])
            .build()
            .unwrap();
        HttpsTokens {
            authority: proxy.base(),
            client,
            _ca: ca,
        }
    }

    /// Bot settings for a client secret against this endpoint (single-tenant when `tenant`).
    pub fn settings(&self, app_id: &str, password: &str, tenant: Option<&str>) -> Settings {
        let mut settings = Settings::default();
        settings.bot.app_id = Some(app_id.into());
        settings.bot.app_password = Some(SecretString::from(password.to_string()));
        settings.bot.tenant_id = tenant.map(String::from);
        self.trusted_by(&mut settings);
        settings
    }

    /// Points `settings` at this endpoint, through the client that trusts it.
    pub fn trusted_by(&self, settings: &mut Settings) {
        settings.bot.oauth_authority = self.authority.clone();
        settings.bot.token_client = Some(self.client.clone());
    }

    /// The real client-secret credential for `scope`, as the app builds it.
    pub fn provider(
        &self,
        app_id: &str,
        password: &str,
        tenant: Option<&str>,
        scope: &str,
    ) -> TokenProvider {
        TokenProvider::from_settings(&self.settings(app_id, password, tenant), scope)
            .expect("an app id and password")
    }
}

/// A credential that answers `token` (or fails) and counts how often it was asked. It keeps no
/// cache: every ask is a fresh token.
#[derive(Debug)]
pub struct FakeCredential {
    token: Option<String>,
    pub calls: AtomicUsize,
}

impl FakeCredential {
    pub fn answering(token: &str) -> Arc<FakeCredential> {
        Arc::new(FakeCredential {
            token: Some(token.into()),
            calls: AtomicUsize::new(0),
        })
    }

    /// Fails every ask, as a credential whose endpoint is down.
    pub fn failing() -> Arc<FakeCredential> {
        Arc::new(FakeCredential {
            token: None,
            calls: AtomicUsize::new(0),
        })
    }

    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

#[async_trait]
impl TokenCredential for FakeCredential {
    async fn get_token(
        &self,
        _scopes: &[&str],
        _options: Option<TokenRequestOptions<'_>>,
    ) -> azure_core::Result<AccessToken> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        match &self.token {
            Some(token) => Ok(AccessToken::new(
                Secret::new(token.clone()),
                time::OffsetDateTime::now_utc() + time::Duration::hours(1),
            )),
            None => Err(azure_core::Error::with_message(
                azure_core::error::ErrorKind::Connection,
                "FakeCredential: the token endpoint is down",
            )),
        }
    }
}
