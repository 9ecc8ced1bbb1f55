//! The Bot Framework channel's outbound ground rules, below every layer that calls Microsoft:
//! the hosts the Connector token may go to (`ConnectorHosts`), the app token itself
//! (`TokenProvider`: an `azure_identity` credential, client secret or managed identity), and the
//! Connector's error type. The
//! Connector client (`bot/connector.rs`) and the Graph directory (`governance/directory.rs`) both
//! use them; settings checks use the host patterns (see src/layers.rs).

use crate::config::{ConnectorAuth, Profile, Settings};
use azure_core::cloud::{CloudConfiguration, CustomConfiguration};
use azure_core::credentials::{Secret, TokenCredential};
use azure_core::http::{ClientOptions, ExponentialRetryOptions, RetryOptions, Transport};
use azure_identity::{ClientSecretCredential, ClientSecretCredentialOptions};
use reqwest::Url;
use secrecy::{ExposeSecret, SecretString};
use std::net::IpAddr;
use std::sync::Arc;
use tokio::sync::Mutex;

/// Bot Framework's Connector hosts: Teams in the public cloud, GCC, GCC High and DoD (the
/// service URLs Microsoft's Agents SDK lists), and the Bot Framework domains of the public and
/// US government clouds.
pub const BOT_FRAMEWORK_CONNECTOR_HOSTS: &[&str] = &[
    "smba.trafficmanager.net",
    "smba.infra.gcc.teams.microsoft.com",
    "smba.infra.gov.teams.microsoft.us",
    "smba.infra.dod.teams.microsoft.us",
    "*.botframework.com",
    "*.botframework.us",
];

/// One allowed host: a name, every name under a domain (`*.botframework.com`), or an address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostPattern {
    Name(String),
    /// The suffix with its leading dot: `.botframework.com`.
    Under(String),
    Address(IpAddr),
}

impl HostPattern {
    /// Reads a `bot.connector_hosts` entry: `host`, `*.domain` (two labels at least) or an IP
    /// address. Not a URL: no scheme, port or path.
    pub fn parse(entry: &str) -> Result<HostPattern, String> {
        let entry = entry.trim().to_ascii_lowercase();
        let address = entry.trim_start_matches('[').trim_end_matches(']');
        if let Ok(ip) = address.parse::<IpAddr>() {
            return Ok(HostPattern::Address(ip));
        }
        let (name, under) = match entry.strip_prefix("*.") {
            Some(domain) => (domain, true),
            None => (entry.as_str(), false),
        };
        let label_ok = |l: &str| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        };
        let labels: Vec<&str> = name.split('.').collect();
        if name.len() > 253 || !labels.iter().all(|l| label_ok(l)) {
            return Err(format!(
                "{entry:?} is not a host name, `*.domain` or IP address (no scheme, port or path)"
            ));
        }
        if under {
            if labels.len() < 2 {
                return Err(format!("{entry:?} would allow a whole top-level domain"));
            }
            Ok(HostPattern::Under(format!(".{name}")))
        } else {
            Ok(HostPattern::Name(name.to_string()))
        }
    }

    /// Loopback: an address like 127.0.0.1 or ::1, or `localhost`.
    pub fn is_loopback(&self) -> bool {
        match self {
            HostPattern::Address(ip) => ip.is_loopback(),
            HostPattern::Name(name) => is_loopback_name(name),
            HostPattern::Under(suffix) => is_loopback_name(&suffix[1..]),
        }
    }
}

fn is_loopback_name(name: &str) -> bool {
    name == "localhost" || name.ends_with(".localhost")
}

/// Why a service URL may not be called.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason} (host {host})")]
pub struct HostRefused {
    /// The URL's host as parsed (what a connection would have gone to), at most 253 bytes.
    pub host: String,
    pub reason: &'static str,
}

/// Where the bot's Connector token may go: [`BOT_FRAMEWORK_CONNECTOR_HOSTS`], the hosts in
/// `bot.connector_hosts`, and loopback in dev channel mode (no app id, so no token is sent).
/// Anything else is refused — by the `/api/messages` extractor for inbound activities, and by
/// [`HttpConnector`] for every outbound call.
#[derive(Debug, Clone)]
pub struct ConnectorHosts {
    patterns: Vec<HostPattern>,
    any_loopback: bool,
    /// Service URLs these hosts accepted, parsed: every turn's activity names its service URL,
    /// checked on the way in and again for the reply, and a deployment sees a handful of them
    /// (one per Teams region). Only acceptances are kept; a refused URL is checked (and
    /// reported) every time. Shared by clones, emptied by every change to the hosts.
    accepted: Arc<std::sync::Mutex<std::collections::HashMap<String, Url>>>,
}

/// At most this many accepted service URLs are kept; past it, further ones are checked each time.
const ACCEPTED_URLS: usize = 64;

impl Default for ConnectorHosts {
    fn default() -> Self {
        Self::bot_framework()
    }
}

impl ConnectorHosts {
    /// Bot Framework's own hosts only.
    pub fn bot_framework() -> ConnectorHosts {
        ConnectorHosts {
            patterns: BOT_FRAMEWORK_CONNECTOR_HOSTS
                .iter()
                .filter_map(|h| HostPattern::parse(h).ok())
                .collect(),
            any_loopback: false,
            accepted: Arc::default(),
        }
    }

    /// The hosts the settings allow. Entries that do not parse, and loopback entries in
    /// production, are left out here; `Settings::check` refuses to start with them.
    pub fn from_settings(settings: &Settings) -> ConnectorHosts {
        let mut hosts = Self::bot_framework();
        for entry in &settings.bot.connector_hosts {
            if let Ok(pattern) = HostPattern::parse(entry)
                && !(settings.profile == Profile::Production && pattern.is_loopback())
            {
                hosts.patterns.push(pattern);
            }
        }
        hosts.any_loopback = settings.dev_channel_auth();
        hosts
    }

    /// These hosts and `pattern`.
    pub fn with(mut self, pattern: HostPattern) -> ConnectorHosts {
        self.patterns.push(pattern);
        self.accepted = Arc::default();
        self
    }

    /// These hosts and any loopback address (dev channel mode).
    pub fn with_any_loopback(mut self) -> ConnectorHosts {
        self.any_loopback = true;
        self.accepted = Arc::default();
        self
    }

    /// Whether calls to `service_url` may carry the Connector token. Non-loopback hosts must be
    /// reached over https; URLs with credentials in them are refused outright.
    pub fn check(&self, service_url: &str) -> Result<(), HostRefused> {
        self.checked(service_url).map(drop)
    }

    /// [`check`](Self::check), answering the accepted URL parsed (the base of the calls made to
    /// it). Remembered once accepted, so a known service URL is neither parsed nor matched again.
    pub fn checked(&self, service_url: &str) -> Result<Url, HostRefused> {
        if let Some(url) = self.accepted().get(service_url) {
            return Ok(url.clone());
        }
        let url = self.accept(service_url)?;
        let mut accepted = self.accepted();
        if accepted.len() < ACCEPTED_URLS {
            accepted.insert(service_url.to_string(), url.clone());
        }
        Ok(url)
    }

    fn accepted(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, Url>> {
        // The map is only ever inserted into whole: a panic elsewhere cannot leave it half-written.
        self.accepted.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn accept(&self, service_url: &str) -> Result<Url, HostRefused> {
        let refused = |host: &str, reason| HostRefused {
            host: host.chars().take(253).collect(),
            reason,
        };
        let Ok(url) = Url::parse(service_url.trim()) else {
            return Err(refused("-", "the service URL does not parse"));
        };
        let host = url.host_str().unwrap_or("-");
        if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
            return Err(refused(host, "the service URL is not http(s) with a host"));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(refused(host, "the service URL carries credentials"));
        }
        // The URL parser has already normalised the host: IPv4 in dotted decimal, IPv6 in
        // brackets, names in lower case and punycode.
        let (name, address) = match host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
        {
            Ok(ip) => (None, Some(ip)),
            Err(_) => (Some(host.to_ascii_lowercase()), None),
        };
        let loopback = address.is_some_and(|ip| ip.is_loopback())
            || name.as_deref().is_some_and(is_loopback_name);
        if loopback && self.any_loopback {
            return Ok(url);
        }
        if !loopback && url.scheme() != "https" {
            return Err(refused(host, "Connector calls go over https only"));
        }
        let listed = self.patterns.iter().any(|p| match (p, &name, &address) {
            (HostPattern::Name(n), Some(name), _) => n == name,
            (HostPattern::Under(suffix), Some(name), _) => {
                name.len() > suffix.len() && name.ends_with(suffix.as_str())
            }
            (HostPattern::Address(a), _, Some(address)) => a == address,
            _ => false,
        });
        if listed {
            Ok(url)
        } else {
            Err(refused(host, "not a Bot Framework Connector host"))
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConnectorError {
    /// 403/404: the bot is not (or no longer) in that conversation.
    #[error("conversation unreachable (HTTP {status}{})", code.as_ref().map(|c| format!(", {c}")).unwrap_or_default())]
    Unreachable { status: u16, code: Option<String> },
    /// Still failing after every retry (429, 5xx, network).
    #[error("connector unavailable after {attempts} attempts: {last}")]
    Unavailable { attempts: u32, last: String },
    /// Any other refusal (400, 401 after a fresh token, 413…).
    #[error("connector refused the call (HTTP {status})")]
    Rejected { status: u16 },
    #[error("cannot obtain a connector token: {0}")]
    Token(String),
    #[error("invalid service URL")]
    BadServiceUrl,
    /// The service URL's host is not one the Connector token may go to; nothing was sent.
    #[error("service URL refused: {0}")]
    HostRefused(HostRefused),
}

/// Builds the credential a [`TokenProvider`] asks, again after [`TokenProvider::invalidate`].
type BuildCredential = Box<dyn Fn() -> Result<Arc<dyn TokenCredential>, String> + Send + Sync>;

/// The bot's own app token for one scope (the Connector's, or Graph's), from an `azure_identity`
/// credential: a client secret (`bot.connector_auth = "secret"`) or the managed identity Key
/// Vault uses too (`"managed-identity"`, user-assigned by `azure.client_id`). The credential
/// caches the token until five minutes before it expires, with one refresh in flight at a time.
pub struct TokenProvider {
    scope: String,
    build: BuildCredential,
    /// Built on first use, so a credential that cannot be built fails the call that needs it
    /// (as an unreachable token endpoint does), not the start of a bot that may never call out.
    current: Mutex<Option<Arc<dyn TokenCredential>>>,
}

impl TokenProvider {
    /// Tokens for `scope` from `credential` (tests pass fakes). [`TokenProvider::invalidate`]
    /// cannot clear this credential's cache: the next call asks it again.
    pub fn new(credential: Arc<dyn TokenCredential>, scope: impl Into<String>) -> TokenProvider {
        TokenProvider::rebuilt_by(scope, move || Ok(credential.clone()))
    }

    /// Tokens for `scope` from the credential `build` makes; `invalidate` makes a new one.
    pub fn rebuilt_by(
        scope: impl Into<String>,
        build: impl Fn() -> Result<Arc<dyn TokenCredential>, String> + Send + Sync + 'static,
    ) -> TokenProvider {
        TokenProvider {
            scope: scope.into(),
            build: Box::new(build),
            current: Mutex::new(None),
        }
    }

    /// The bot's identity for `scope`, as the settings name it: `None` without an app id (dev
    /// channel mode), or with `bot.connector_auth = "secret"` and no app password.
    pub fn from_settings(settings: &Settings, scope: &str) -> Option<TokenProvider> {
        let bot = &settings.bot;
        let app_id = bot.app_id.clone().filter(|id| !id.is_empty())?;
        match bot.connector_auth {
            ConnectorAuth::ManagedIdentity => {
                let azure = settings.azure.clone();
                Some(TokenProvider::rebuilt_by(scope, move || {
                    crate::azure::credential::from_settings(&azure).map_err(|e| e.to_string())
                }))
            }
            ConnectorAuth::Secret => {
                let secret = bot
                    .app_password
                    .clone()
                    .filter(|p| !p.expose_secret().is_empty())?;
                let client = ClientSecret {
                    tenant: bot
                        .tenant_id
                        .clone()
                        .filter(|t| !t.is_empty())
                        .unwrap_or_else(|| "botframework.com".into()),
                    app_id,
                    secret,
                    authority: bot.oauth_authority.clone(),
                    http: bot.token_client.clone().unwrap_or_else(token_client),
                };
                Some(TokenProvider::rebuilt_by(scope, move || {
                    client.credential()
                }))
            }
        }
    }

    /// A valid token. Concurrent callers share the credential, whose cache lets one refresh run
    /// while the others wait for it.
    pub async fn token(&self) -> Result<SecretString, ConnectorError> {
        let credential = {
            let mut current = self.current.lock().await;
            match current.as_ref() {
                Some(credential) => credential.clone(),
                None => {
                    let credential = (self.build)().map_err(ConnectorError::Token)?;
                    *current = Some(credential.clone());
                    credential
                }
            }
        };
        let token = credential
            .get_token(&[self.scope.as_str()], None)
            .await
            .map_err(|e| ConnectorError::Token(token_failure(&e)))?;
        Ok(SecretString::from(token.token.secret().to_string()))
    }

    /// Forgets the token (the Connector or Graph said 401). `azure_identity` 1.0 offers no way
    /// to evict a cached token (its `TokenRequestOptions` carry only a call context: no claims,
    /// no forced refresh), so the credential itself is dropped and the next call builds a new
    /// one, whose empty cache asks Entra (or the managed identity endpoint) afresh. Building is
    /// cheap: no I/O until the first token request.
    pub async fn invalidate(&self) {
        *self.current.lock().await = None;
    }
}

/// A client-secret identity: the bot's app registration and its password.
#[derive(Clone)]
struct ClientSecret {
    /// `botframework.com` for multi-tenant bots, the tenant id for single-tenant ones.
    tenant: String,
    app_id: String,
    secret: SecretString,
    /// `https://login.microsoftonline.com` in the public cloud; `azure_identity` asks
    /// `{authority}/{tenant}/oauth2/v2.0/token`, over https only.
    authority: String,
    /// The HTTP client for token requests: ours (the reqwest and rustls azure_core would use too,
    /// trusting the platform's roots, `SSL_CERT_FILE` included), with our time limit.
    http: reqwest::Client,
}

/// How long one token request may take, and how long retrying one may go on.
const TOKEN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(15);

/// The client for client-secret token requests: a time limit per request, no redirects (as
/// azure_core's own client).
fn token_client() -> reqwest::Client {
    crate::outbound::client(Some(TOKEN_TIMEOUT))
}

impl ClientSecret {
    fn credential(&self) -> Result<Arc<dyn TokenCredential>, String> {
        let mut cloud = CustomConfiguration::default();
        cloud.authority_host = self.authority.clone();
        let client_options = ClientOptions {
            cloud: Some(Arc::new(CloudConfiguration::Custom(cloud))),
            transport: Some(Transport::new(Arc::new(self.http.clone()))),
            // A Teams turn waits for its reply: a few quick retries, not azure_core's minute.
            retry: RetryOptions::exponential(ExponentialRetryOptions {
                max_retries: 2,
                max_total_elapsed: azure_core::time::Duration::seconds(
                    TOKEN_TIMEOUT.as_secs() as i64
                ),
                ..Default::default()
            }),
            ..Default::default()
        };
        let credential = ClientSecretCredential::new(
            &self.tenant,
            self.app_id.clone(),
            Secret::new(self.secret.expose_secret().to_string()),
            Some(ClientSecretCredentialOptions { client_options }),
        )
        .map_err(|e| format!("client secret credential: {}", token_failure(&e)))?;
        Ok(credential)
    }
}

/// Why no token came, without anything a response body said beyond its status and Entra error
/// codes (bodies are not ours to log).
fn token_failure(e: &azure_core::Error) -> String {
    use azure_core::error::ErrorKind;
    let mut layer = Some(e);
    while let Some(err) = layer {
        match err.kind() {
            ErrorKind::HttpResponse {
                status, error_code, ..
            } => {
                return format!(
                    "token endpoint answered HTTP {}{}",
                    u16::from(*status),
                    error_code
                        .as_deref()
                        .map(|c| format!(" (error codes {c})"))
                        .unwrap_or_default()
                );
            }
            ErrorKind::Connection => return "connection failed".into(),
            ErrorKind::Io => return "request failed".into(),
            ErrorKind::DataConversion => return "unreadable token response".into(),
            _ => layer = err.downcast_ref::<azure_core::Error>(),
        }
    }
    // No response was involved: the credential's own refusal (no managed identity here, an
    // authority that is not https…), which names settings and environment, not secrets.
    let text = e.to_string();
    let first = text.lines().next().unwrap_or_default();
    first.chars().take(300).collect()
}

/// A reqwest error's text without the URL (which may carry ids we don't log at info).
pub(crate) fn without_url(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timeout"
    } else if e.is_connect() {
        "connection failed"
    } else {
        "request failed"
    };
    kind.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepted_service_urls_are_remembered_and_refused_ones_checked_every_time() {
        let hosts = ConnectorHosts::bot_framework().with(HostPattern::parse("127.0.0.1").unwrap());
        let first = hosts.checked("http://127.0.0.1:9/_connector/").unwrap();
        let again = hosts
            .clone()
            .checked("http://127.0.0.1:9/_connector/")
            .unwrap();
        assert_eq!(first, again);
        assert_eq!(first.as_str(), "http://127.0.0.1:9/_connector/");
        assert_eq!(hosts.accepted().len(), 1, "clones share what was accepted");
        for _ in 0..2 {
            let refused = hosts.checked("http://127.0.0.2:9/").unwrap_err();
            assert_eq!(refused.reason, "not a Bot Framework Connector host");
        }
        assert_eq!(hosts.accepted().len(), 1, "a refusal is never remembered");
        // A change of hosts starts from nothing: what the old hosts accepted is checked anew.
        let more = hosts.clone().with_any_loopback();
        assert!(more.accepted().is_empty());
        assert!(more.checked("http://localhost:9/").is_ok());
        assert!(hosts.checked("http://localhost:9/").is_err());
        // Past the bound, URLs are still checked and accepted, just not kept.
        for port in 0..(ACCEPTED_URLS as u16 + 10) {
            let url = format!("http://127.0.0.1:{}/", 1000 + port);
            assert_eq!(hosts.checked(&url).unwrap().as_str(), url);
        }
        assert_eq!(hosts.accepted().len(), ACCEPTED_URLS);
    }
}
