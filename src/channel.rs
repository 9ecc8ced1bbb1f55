//! The Bot Framework channel's outbound ground rules, below every layer that calls Microsoft:
//! the hosts the Connector token may go to (`ConnectorHosts`), the app token itself
//! (`TokenProvider`: client secret or managed identity), and the Connector's error type. The
//! Connector client (`bot/connector.rs`) and the Graph directory (`governance/directory.rs`) both
//! use them; settings checks use the host patterns (see src/layers.rs).

use crate::config::{Profile, Settings};
use reqwest::Url;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::Value;
use std::net::IpAddr;
use std::time::{Duration, Instant};
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
}

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
        self
    }

    /// These hosts and any loopback address (dev channel mode).
    pub fn with_any_loopback(mut self) -> ConnectorHosts {
        self.any_loopback = true;
        self
    }

    /// Whether calls to `service_url` may carry the Connector token. Non-loopback hosts must be
    /// reached over https; URLs with credentials in them are refused outright.
    pub fn check(&self, service_url: &str) -> Result<(), HostRefused> {
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
            return Ok(());
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
            Ok(())
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

/// Client-credentials settings for the Connector token.
#[derive(Clone)]
pub struct AppCredentials {
    pub app_id: String,
    pub app_password: SecretString,
    /// `https://login.microsoftonline.com` in the public cloud.
    pub authority: String,
    /// `botframework.com` for multi-tenant bots, the tenant id for single-tenant ones.
    pub tenant: String,
    pub scope: String,
}

#[derive(Clone)]
struct CachedToken {
    value: SecretString,
    refresh_after: Instant,
}

/// Fetches and caches the app token.
pub struct TokenProvider {
    source: TokenSource,
    http: reqwest::Client,
    cache: Mutex<Option<CachedToken>>,
}

/// Where the app token comes from.
enum TokenSource {
    ClientSecret(AppCredentials),
    ManagedIdentity(ManagedIdentity),
}

/// A managed identity endpoint: App Service's (`IDENTITY_ENDPOINT` + `IDENTITY_HEADER`, API
/// 2019-08-01) or the VM instance metadata service (`http://169.254.169.254/metadata/identity/oauth2/token`,
/// header `Metadata: true`, API 2018-02-01).
#[derive(Clone)]
pub struct ManagedIdentity {
    pub endpoint: String,
    /// App Service's `IDENTITY_HEADER`; `None` means IMDS.
    pub identity_header: Option<SecretString>,
    /// For a user-assigned identity.
    pub client_id: Option<String>,
    /// The resource the token is for: `https://api.botframework.com`.
    pub resource: String,
}

impl ManagedIdentity {
    /// The endpoint the platform advertises: App Service's if its variables are set, else IMDS.
    pub fn from_environment(client_id: Option<String>, resource: String) -> ManagedIdentity {
        match (
            std::env::var("IDENTITY_ENDPOINT"),
            std::env::var("IDENTITY_HEADER"),
        ) {
            (Ok(endpoint), Ok(header)) => ManagedIdentity {
                endpoint,
                identity_header: Some(SecretString::from(header)),
                client_id,
                resource,
            },
            _ => ManagedIdentity {
                endpoint: "http://169.254.169.254/metadata/identity/oauth2/token".into(),
                identity_header: None,
                client_id,
                resource,
            },
        }
    }
}

/// Refresh this long before the token says it expires.
const TOKEN_EARLY_REFRESH: Duration = Duration::from_secs(5 * 60);

/// Entra answers `expires_in` as a number; managed identity endpoints send strings, and App
/// Service sends `expires_on` (unix seconds) instead.
#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    #[serde(default)]
    expires_in: Option<Value>,
    #[serde(default)]
    expires_on: Option<Value>,
}

impl TokenResponse {
    fn lifetime(&self) -> Duration {
        let number = |v: &Value| {
            v.as_u64()
                .or_else(|| v.as_str().and_then(|s| s.trim().parse().ok()))
        };
        if let Some(secs) = self.expires_in.as_ref().and_then(number) {
            return Duration::from_secs(secs);
        }
        if let Some(at) = self.expires_on.as_ref().and_then(number) {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0);
            return Duration::from_secs(at.saturating_sub(now));
        }
        Duration::from_secs(3600)
    }
}

impl TokenProvider {
    pub fn new(creds: AppCredentials, http: reqwest::Client) -> Self {
        TokenProvider {
            source: TokenSource::ClientSecret(creds),
            http,
            cache: Mutex::new(None),
        }
    }

    pub fn managed_identity(identity: ManagedIdentity, http: reqwest::Client) -> Self {
        TokenProvider {
            source: TokenSource::ManagedIdentity(identity),
            http,
            cache: Mutex::new(None),
        }
    }

    /// A valid token. Holding the lock while fetching makes concurrent callers wait for the one
    /// refresh instead of each starting their own.
    pub async fn token(&self) -> Result<SecretString, ConnectorError> {
        let mut cache = self.cache.lock().await;
        if let Some(t) = cache.as_ref()
            && Instant::now() < t.refresh_after
        {
            return Ok(t.value.clone());
        }
        let request = match &self.source {
            TokenSource::ClientSecret(creds) => self
                .http
                .post(format!(
                    "{}/{}/oauth2/v2.0/token",
                    creds.authority.trim_end_matches('/'),
                    creds.tenant
                ))
                .form(&[
                    ("grant_type", "client_credentials"),
                    ("client_id", creds.app_id.as_str()),
                    ("client_secret", creds.app_password.expose_secret()),
                    ("scope", creds.scope.as_str()),
                ]),
            TokenSource::ManagedIdentity(mi) => {
                let mut query = vec![("resource", mi.resource.as_str())];
                if let Some(client_id) = &mi.client_id {
                    query.push(("client_id", client_id.as_str()));
                }
                let request = self.http.get(&mi.endpoint).query(&query);
                match &mi.identity_header {
                    Some(header) => request
                        .query(&[("api-version", "2019-08-01")])
                        .header("X-IDENTITY-HEADER", header.expose_secret()),
                    None => request
                        .query(&[("api-version", "2018-02-01")])
                        .header("Metadata", "true"),
                }
            }
        };
        let response = request
            .timeout(Duration::from_secs(15))
            .send()
            .await
            .map_err(|e| ConnectorError::Token(without_url(&e)))?;
        if !response.status().is_success() {
            return Err(ConnectorError::Token(format!(
                "token endpoint answered HTTP {}",
                response.status().as_u16()
            )));
        }
        let body: TokenResponse = response
            .json()
            .await
            .map_err(|_| ConnectorError::Token("unreadable token response".into()))?;
        let lifetime = body.lifetime();
        let token = CachedToken {
            value: SecretString::from(body.access_token),
            refresh_after: Instant::now() + lifetime.saturating_sub(TOKEN_EARLY_REFRESH),
        };
        *cache = Some(token.clone());
        Ok(token.value)
    }

    /// Forgets the cached token (the Connector said 401).
    pub async fn invalidate(&self) {
        *self.cache.lock().await = None;
    }
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
