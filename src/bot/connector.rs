//! Outbound calls to the Bot Connector: send, reply, update, delete, typing, create a 1:1 chat.
//!
//! Authentication is an app token from Entra by client credentials (scope
//! `https://api.botframework.com/.default`), cached until five minutes before it expires, with one
//! refresh in flight at a time. In dev mode (no app id) requests go unauthenticated, which is what
//! the Agents Playground and the Emulator expect.
//! Retries: 429 honours `Retry-After` (capped), 5xx and network errors back off exponentially, a
//! bounded number of times. 403/404 mean the bot cannot reach that conversation (uninstalled, not in
//! the roster): reported at once, never retried.
//!
//! Every call's service URL passes [`ConnectorHosts`] first, whoever supplied it (an inbound
//! activity, a stored conversation reference, `bot.service_url`): the bearer token only ever goes
//! to a Connector host, and a refusal happens before any token is fetched or connection made.

use super::activity::OutgoingActivity;
use crate::config::{Profile, Settings};
use crate::domain::Clock;
use crate::store::{NewAuditEvent, Store};
use async_trait::async_trait;
use reqwest::{Method, StatusCode, Url};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::{Value, json};
use std::net::IpAddr;
use std::sync::Arc;
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

/// Audits (and logs) a service URL the bot refused to use. `direction` says where it came from:
/// `inbound` (an activity) or `outbound` (a call about to be made).
pub async fn audit_host_refusal(
    store: &dyn Store,
    clock: &dyn Clock,
    refused: &HostRefused,
    direction: &str,
    actor: &str,
) {
    tracing::warn!(host = %refused.host, reason = refused.reason, direction, "Connector host refused");
    let event = NewAuditEvent::new(actor, "CONNECTOR_HOST_REFUSED", clock.now()).detail(json!({
        "host": refused.host,
        "reason": refused.reason,
        "direction": direction,
    }));
    if let Err(e) = store.append_audit(&event).await {
        tracing::error!(error = %e, "the Connector host refusal was not audited");
    }
}

/// A conversation the bot may write to: its id and the `serviceUrl` that came with an
/// authenticated activity for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConversationTarget {
    pub service_url: String,
    pub conversation_id: String,
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

/// A conversation member as Teams describes them (a `TeamsChannelAccount`): only what Passkey
/// reads. Teams also sends `name`, `givenName`, `surname` and `userRole`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConversationMember {
    /// The Teams user id (`29:…`).
    #[serde(default)]
    pub id: String,
    #[serde(default)]
    pub aad_object_id: Option<String>,
    #[serde(default)]
    pub email: Option<String>,
    #[serde(default)]
    pub user_principal_name: Option<String>,
    #[serde(default)]
    pub tenant_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ResourceResponse {
    #[serde(default)]
    pub id: String,
}

/// What the bot can do to conversations. The HTTP client implements it; tests may too.
#[async_trait]
pub trait Connector: Send + Sync {
    async fn send(
        &self,
        to: &ConversationTarget,
        activity: &OutgoingActivity,
    ) -> Result<ResourceResponse, ConnectorError>;
    async fn reply(
        &self,
        to: &ConversationTarget,
        reply_to_id: &str,
        activity: &OutgoingActivity,
    ) -> Result<ResourceResponse, ConnectorError>;
    async fn update(
        &self,
        to: &ConversationTarget,
        activity_id: &str,
        activity: &OutgoingActivity,
    ) -> Result<(), ConnectorError>;
    async fn delete(
        &self,
        to: &ConversationTarget,
        activity_id: &str,
    ) -> Result<(), ConnectorError>;
    async fn typing(&self, to: &ConversationTarget) -> Result<(), ConnectorError> {
        self.send(to, &OutgoingActivity::typing()).await.map(|_| ())
    }
    /// Opens (or finds) the 1:1 chat between the bot and a user; returns its conversation id.
    async fn create_personal_conversation(
        &self,
        service_url: &str,
        bot_id: &str,
        user_id: &str,
        tenant_id: &str,
    ) -> Result<String, ConnectorError>;
    /// One member of a conversation (`GET v3/conversations/{id}/members/{member id}`), which
    /// Teams answers with the person's object id, tenant, email and UPN. 404: not a member.
    async fn member(
        &self,
        to: &ConversationTarget,
        member_id: &str,
    ) -> Result<ConversationMember, ConnectorError>;
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

/// Retry limits for Connector calls.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    pub max_attempts: u32,
    pub base_delay: Duration,
    /// A `Retry-After` longer than this is cut to it (the turn must finish).
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 4,
            base_delay: Duration::from_millis(250),
            max_delay: Duration::from_secs(10),
        }
    }
}

/// The Connector over HTTP.
pub struct HttpConnector {
    http: reqwest::Client,
    tokens: Option<Arc<TokenProvider>>,
    retry: RetryPolicy,
    hosts: ConnectorHosts,
    /// Where refusals are audited (none: only logged).
    audit: Option<(Arc<dyn Store>, Arc<dyn Clock>)>,
}

impl HttpConnector {
    /// `tokens: None` = dev mode, unauthenticated calls. Calls go to Bot Framework's Connector
    /// hosts only until [`HttpConnector::with_hosts`] says otherwise.
    pub fn new(
        http: reqwest::Client,
        tokens: Option<Arc<TokenProvider>>,
        retry: RetryPolicy,
    ) -> Self {
        HttpConnector {
            http,
            tokens,
            retry,
            hosts: ConnectorHosts::bot_framework(),
            audit: None,
        }
    }

    pub fn with_hosts(mut self, hosts: ConnectorHosts) -> Self {
        self.hosts = hosts;
        self
    }

    /// Audits refused service URLs in `store`.
    pub fn with_audit(mut self, store: Arc<dyn Store>, clock: Arc<dyn Clock>) -> Self {
        self.audit = Some((store, clock));
        self
    }

    /// The call's URL, once its host passed the allow-list.
    async fn target(&self, service_url: &str, segments: &[&str]) -> Result<Url, ConnectorError> {
        let url = Self::url(service_url, segments)?;
        if let Err(refused) = self.hosts.check(service_url) {
            match &self.audit {
                Some((store, clock)) => {
                    audit_host_refusal(
                        store.as_ref(),
                        clock.as_ref(),
                        &refused,
                        "outbound",
                        "passkey",
                    )
                    .await
                }
                None => {
                    tracing::warn!(host = %refused.host, reason = refused.reason, "Connector host refused")
                }
            }
            return Err(ConnectorError::HostRefused(refused));
        }
        Ok(url)
    }

    fn url(service_url: &str, segments: &[&str]) -> Result<Url, ConnectorError> {
        let mut base = service_url.to_string();
        if !base.ends_with('/') {
            base.push('/');
        }
        let mut url = Url::parse(&base).map_err(|_| ConnectorError::BadServiceUrl)?;
        if url.cannot_be_a_base() || !matches!(url.scheme(), "http" | "https") {
            return Err(ConnectorError::BadServiceUrl);
        }
        {
            let mut path = url
                .path_segments_mut()
                .map_err(|_| ConnectorError::BadServiceUrl)?;
            path.pop_if_empty();
            // Conversation ids carry ':', '@', ';' and more: each is one percent-encoded segment.
            path.extend(segments);
        }
        Ok(url)
    }

    async fn call(
        &self,
        method: Method,
        url: Url,
        body: Option<Value>,
    ) -> Result<Option<Value>, ConnectorError> {
        self.call_with(method, url, body, self.retry.max_attempts, Self::TIMEOUT)
            .await
    }

    const TIMEOUT: Duration = Duration::from_secs(15);
    /// A member lookup runs inside a turn and only improves on what is stored: one attempt (a
    /// later turn retries) with a short timeout, so a slow Connector delays the answer by
    /// seconds, not a minute.
    const LOOKUP_ATTEMPTS: u32 = 1;
    const LOOKUP_TIMEOUT: Duration = Duration::from_secs(5);

    async fn call_with(
        &self,
        method: Method,
        url: Url,
        body: Option<Value>,
        max_attempts: u32,
        timeout: Duration,
    ) -> Result<Option<Value>, ConnectorError> {
        let mut attempt = 0;
        let mut refreshed_token = false;
        loop {
            attempt += 1;
            let mut request = self
                .http
                .request(method.clone(), url.clone())
                .timeout(timeout);
            if let Some(tokens) = &self.tokens {
                request = request.bearer_auth(tokens.token().await?.expose_secret());
            }
            if let Some(body) = &body {
                request = request.json(body);
            }
            // Either we return, or we know why this attempt failed and how long to wait.
            let (last, wait) = match request.send().await {
                Ok(response) => {
                    let status = response.status();
                    if status.is_success() {
                        let bytes = response.bytes().await.unwrap_or_default();
                        return Ok(serde_json::from_slice(&bytes).ok());
                    }
                    match status {
                        StatusCode::UNAUTHORIZED if !refreshed_token && self.tokens.is_some() => {
                            // The cached token may have been revoked early: one retry with a new one.
                            refreshed_token = true;
                            if let Some(tokens) = &self.tokens {
                                tokens.invalidate().await;
                            }
                            attempt -= 1;
                            continue;
                        }
                        StatusCode::FORBIDDEN | StatusCode::NOT_FOUND => {
                            let code = response.json::<Value>().await.ok().and_then(|v| {
                                v.pointer("/error/code")
                                    .and_then(Value::as_str)
                                    .map(String::from)
                            });
                            return Err(ConnectorError::Unreachable {
                                status: status.as_u16(),
                                code,
                            });
                        }
                        StatusCode::TOO_MANY_REQUESTS => {
                            let wait =
                                retry_after(response.headers()).unwrap_or(self.backoff(attempt));
                            ("HTTP 429".to_string(), wait.min(self.retry.max_delay))
                        }
                        s if s.is_server_error() => {
                            (format!("HTTP {}", s.as_u16()), self.backoff(attempt))
                        }
                        s => return Err(ConnectorError::Rejected { status: s.as_u16() }),
                    }
                }
                Err(e) => (without_url(&e), self.backoff(attempt)),
            };
            if attempt >= max_attempts {
                return Err(ConnectorError::Unavailable {
                    attempts: attempt,
                    last,
                });
            }
            tracing::debug!(attempt, wait_ms = wait.as_millis() as u64, reason = %last, "retrying connector call");
            tokio::time::sleep(wait).await;
        }
    }

    fn backoff(&self, attempt: u32) -> Duration {
        (self.retry.base_delay * 2u32.saturating_pow(attempt.saturating_sub(1)))
            .min(self.retry.max_delay)
    }
}

/// `Retry-After` in delta-seconds (what the Connector sends); HTTP dates are not used by it.
fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let value = headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim();
    value
        .parse::<u64>()
        .ok()
        .map(Duration::from_secs)
        .or_else(|| {
            value
                .parse::<f64>()
                .ok()
                .filter(|s| s.is_finite() && *s >= 0.0)
                .map(Duration::from_secs_f64)
        })
}

/// A reqwest error's text without the URL (which may carry ids we don't log at info).
fn without_url(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timeout"
    } else if e.is_connect() {
        "connection failed"
    } else {
        "request failed"
    };
    kind.to_string()
}

fn as_body(activity: &OutgoingActivity) -> Value {
    serde_json::to_value(activity).unwrap_or(Value::Null)
}

fn resource(v: Option<Value>) -> ResourceResponse {
    v.and_then(|v| serde_json::from_value(v).ok())
        .unwrap_or(ResourceResponse { id: String::new() })
}

#[async_trait]
impl Connector for HttpConnector {
    async fn send(
        &self,
        to: &ConversationTarget,
        activity: &OutgoingActivity,
    ) -> Result<ResourceResponse, ConnectorError> {
        let url = self
            .target(
                &to.service_url,
                &["v3", "conversations", &to.conversation_id, "activities"],
            )
            .await?;
        Ok(resource(
            self.call(Method::POST, url, Some(as_body(activity)))
                .await?,
        ))
    }

    async fn reply(
        &self,
        to: &ConversationTarget,
        reply_to_id: &str,
        activity: &OutgoingActivity,
    ) -> Result<ResourceResponse, ConnectorError> {
        let url = self
            .target(
                &to.service_url,
                &[
                    "v3",
                    "conversations",
                    &to.conversation_id,
                    "activities",
                    reply_to_id,
                ],
            )
            .await?;
        Ok(resource(
            self.call(Method::POST, url, Some(as_body(activity)))
                .await?,
        ))
    }

    async fn update(
        &self,
        to: &ConversationTarget,
        activity_id: &str,
        activity: &OutgoingActivity,
    ) -> Result<(), ConnectorError> {
        let url = self
            .target(
                &to.service_url,
                &[
                    "v3",
                    "conversations",
                    &to.conversation_id,
                    "activities",
                    activity_id,
                ],
            )
            .await?;
        let mut body = as_body(activity);
        body["id"] = json!(activity_id);
        self.call(Method::PUT, url, Some(body)).await.map(|_| ())
    }

    async fn delete(
        &self,
        to: &ConversationTarget,
        activity_id: &str,
    ) -> Result<(), ConnectorError> {
        let url = self
            .target(
                &to.service_url,
                &[
                    "v3",
                    "conversations",
                    &to.conversation_id,
                    "activities",
                    activity_id,
                ],
            )
            .await?;
        self.call(Method::DELETE, url, None).await.map(|_| ())
    }

    async fn create_personal_conversation(
        &self,
        service_url: &str,
        bot_id: &str,
        user_id: &str,
        tenant_id: &str,
    ) -> Result<String, ConnectorError> {
        let url = self.target(service_url, &["v3", "conversations"]).await?;
        let body = json!({
            "bot": {"id": bot_id},
            "members": [{"id": user_id}],
            "channelData": {"tenant": {"id": tenant_id}},
            "tenantId": tenant_id,
            "isGroup": false,
        });
        let created = resource(self.call(Method::POST, url, Some(body)).await?);
        if created.id.is_empty() {
            return Err(ConnectorError::Rejected { status: 200 });
        }
        Ok(created.id)
    }

    async fn member(
        &self,
        to: &ConversationTarget,
        member_id: &str,
    ) -> Result<ConversationMember, ConnectorError> {
        let url = self
            .target(
                &to.service_url,
                &[
                    "v3",
                    "conversations",
                    &to.conversation_id,
                    "members",
                    member_id,
                ],
            )
            .await?;
        let body = self
            .call_with(
                Method::GET,
                url,
                None,
                Self::LOOKUP_ATTEMPTS,
                Self::LOOKUP_TIMEOUT,
            )
            .await?;
        // A 2xx whose body is not a member is not an answer to trust.
        body.and_then(|v| serde_json::from_value(v).ok())
            .ok_or(ConnectorError::Rejected { status: 200 })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conversation_ids_are_encoded_as_single_path_segments() {
        let url = HttpConnector::url(
            "https://smba.trafficmanager.net/emea/",
            &[
                "v3",
                "conversations",
                "19:abc@thread.tacv2;messageid=17/x",
                "activities",
            ],
        )
        .unwrap();
        assert_eq!(
            url.as_str(),
            "https://smba.trafficmanager.net/emea/v3/conversations/19:abc@thread.tacv2;messageid=17%2Fx/activities"
        );
        let no_slash =
            HttpConnector::url("http://127.0.0.1:9/_connector", &["v3", "conversations"]).unwrap();
        assert_eq!(
            no_slash.as_str(),
            "http://127.0.0.1:9/_connector/v3/conversations"
        );
        assert!(HttpConnector::url("mailto:x@y", &["v3"]).is_err());
    }

    #[test]
    fn bot_framework_connector_hosts_are_allowed_and_look_alikes_are_not() {
        let hosts = ConnectorHosts::bot_framework();
        for url in [
            "https://smba.trafficmanager.net/emea/",
            "https://smba.trafficmanager.net/teams/",
            "https://SMBA.TrafficManager.net/amer/",
            "https://smba.trafficmanager.net:443/apac/",
            "https://smba.infra.gcc.teams.microsoft.com/teams",
            "https://smba.infra.gov.teams.microsoft.us/teams",
            "https://smba.infra.dod.teams.microsoft.us/teams",
            "https://europe.webchat.botframework.com/",
            "https://directline.botframework.us/",
        ] {
            assert_eq!(hosts.check(url), Ok(()), "{url}");
        }
        for url in [
            "http://smba.trafficmanager.net/emea/",
            "https://smba.trafficmanager.net.evil.example/",
            "https://smba.trafficmanager.net./emea/",
            "https://evil-smba.trafficmanager.net/",
            "https://botframework.com/",
            "https://evilbotframework.com/",
            "https://botframework.com.evil.example/",
            "https://smba.trafficmanager.net@evil.example/",
            "https://user:pw@smba.trafficmanager.net/emea/",
            "https://evil.example/smba.trafficmanager.net/",
            "http://127.0.0.1:3978/_connector",
            "http://localhost:56150/_connector",
            "http://[::1]/",
            "ftp://smba.trafficmanager.net/",
            "not a url",
        ] {
            assert!(hosts.check(url).is_err(), "{url}");
        }
    }

    #[test]
    fn loopback_needs_dev_mode_or_an_explicit_entry() {
        let dev = ConnectorHosts::bot_framework().with_any_loopback();
        for url in [
            "http://127.0.0.1:3978/",
            "http://localhost:56150/_connector",
            "http://[::1]:9/",
        ] {
            assert_eq!(dev.check(url), Ok(()), "{url}");
        }
        assert!(dev.check("http://10.0.0.1/").is_err());
        let one = ConnectorHosts::bot_framework().with(HostPattern::parse("127.0.0.1").unwrap());
        assert_eq!(one.check("http://127.0.0.1:1234/connector/"), Ok(()));
        assert!(one.check("http://127.0.0.2:1234/connector/").is_err());
        assert!(one.check("http://localhost:1234/connector/").is_err());
        let refused = one.check("http://127.0.0.2:1234/").unwrap_err();
        assert_eq!(refused.host, "127.0.0.2");
    }

    #[test]
    fn host_entries_are_names_wildcards_or_addresses_never_urls() {
        assert_eq!(
            HostPattern::parse("*.Bots.Contoso.Example"),
            Ok(HostPattern::Under(".bots.contoso.example".into()))
        );
        assert_eq!(
            HostPattern::parse("[::1]"),
            Ok(HostPattern::Address("::1".parse().unwrap()))
        );
        for bad in [
            "https://x.example",
            "x.example:443",
            "x.example/path",
            "*",
            "*.com",
            "a.*.example",
            "",
            "-x.example",
        ] {
            assert!(HostPattern::parse(bad).is_err(), "{bad}");
        }
        assert!(HostPattern::parse("localhost").unwrap().is_loopback());
        assert!(HostPattern::parse("127.0.0.9").unwrap().is_loopback());
        assert!(!HostPattern::parse("10.0.0.1").unwrap().is_loopback());
    }

    #[test]
    fn retry_after_reads_seconds() {
        let mut h = reqwest::header::HeaderMap::new();
        h.insert(reqwest::header::RETRY_AFTER, "2".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_secs(2)));
        h.insert(reqwest::header::RETRY_AFTER, "0.5".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_millis(500)));
        h.insert(reqwest::header::RETRY_AFTER, "soon".parse().unwrap());
        assert_eq!(retry_after(&h), None);
    }
}
