//! Outbound calls to the Bot Connector: send, reply, update, delete, typing, create a 1:1 chat.
//!
//! Authentication is the bot's app token (scope `https://api.botframework.com/.default`) from an
//! `azure_identity` credential — client secret or managed identity — which caches it until five
//! minutes before it expires, with one refresh in flight at a time; a 401 drops it for a fresh one. In dev mode (no app id) requests go unauthenticated, which is what
//! the Agents Playground and the Emulator expect.
//! Retries: 429 honours `Retry-After` (capped), 5xx and network errors back off exponentially, a
//! bounded number of times. 403/404 mean the bot cannot reach that conversation (uninstalled, not in
//! the roster): reported at once, never retried.
//!
//! Every call's service URL passes [`ConnectorHosts`] first, whoever supplied it (an inbound
//! activity, a stored conversation reference, `bot.service_url`): the bearer token only ever goes
//! to a Connector host, and a refusal happens before any token is fetched or connection made.

use super::activity::OutgoingActivity;
use crate::channel::without_url;
pub use crate::channel::{
    BOT_FRAMEWORK_CONNECTOR_HOSTS, ConnectorError, ConnectorHosts, HostPattern, HostRefused,
    TokenProvider,
};
use crate::domain::Clock;
use crate::store::Store;
use async_trait::async_trait;
use reqwest::{Method, StatusCode, Url};
use secrecy::ExposeSecret;
use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;

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
    if let Err(e) = crate::governance::events::connector_host_refused(
        store,
        actor,
        &refused.host,
        refused.reason,
        direction,
        clock.now(),
    )
    .await
    {
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
    pub fn new(tokens: Option<Arc<TokenProvider>>, retry: RetryPolicy) -> Self {
        HttpConnector {
            // No redirects (`crate::outbound`): the host allow-list checks the URL the bot chose,
            // and a 3xx answer is a refusal (`Rejected`), never followed.
            http: crate::outbound::client(None),
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

    /// The call's URL, once its host passed the allow-list (a service URL accepted before is
    /// not parsed again: the allow-list keeps it parsed).
    async fn target(&self, service_url: &str, segments: &[&str]) -> Result<Url, ConnectorError> {
        match self.hosts.checked(service_url) {
            Ok(base) => Self::extend(base, segments),
            Err(refused) => {
                // A URL that is no URL at all says so, before any host is named.
                Self::url(service_url, segments)?;
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
                Err(ConnectorError::HostRefused(refused))
            }
        }
    }

    fn url(service_url: &str, segments: &[&str]) -> Result<Url, ConnectorError> {
        let base = Url::parse(service_url).map_err(|_| ConnectorError::BadServiceUrl)?;
        Self::extend(base, segments)
    }

    /// `segments` appended to the service URL's path (with or without its trailing `/`).
    fn extend(mut url: Url, segments: &[&str]) -> Result<Url, ConnectorError> {
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

    /// One Connector call, retried as [`Self::call_with`] says; `body` is JSON, serialized once
    /// (every attempt sends the same bytes). Answers the success's body.
    async fn call(
        &self,
        method: Method,
        url: Url,
        body: Option<Vec<u8>>,
    ) -> Result<Vec<u8>, ConnectorError> {
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
        body: Option<Vec<u8>>,
        max_attempts: u32,
        timeout: Duration,
    ) -> Result<Vec<u8>, ConnectorError> {
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
                request = request
                    .header(reqwest::header::CONTENT_TYPE, "application/json")
                    .body(body.clone());
            }
            // Either we return, or we know why this attempt failed and how long to wait.
            let (last, wait) = match request.send().await {
                Ok(response) => {
                    let status = response.status();
                    if status.is_success() {
                        return Ok(response.bytes().await.unwrap_or_default().to_vec());
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
                            crate::metrics::get().throttled("connector");
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

/// A request body as JSON bytes: serialized straight from the typed value (no `Value` tree in
/// between). Serializing these types cannot fail (string keys, no non-finite floats to refuse).
fn json_bytes(body: &impl serde::Serialize) -> Vec<u8> {
    serde_json::to_vec(body).unwrap_or_else(|_| b"null".to_vec())
}

/// The Connector's `{"id": …}` answer; an answer that is not one reads as no id.
fn resource(body: &[u8]) -> ResourceResponse {
    serde_json::from_slice(body).unwrap_or(ResourceResponse { id: String::new() })
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
            &self
                .call(Method::POST, url, Some(json_bytes(activity)))
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
            &self
                .call(Method::POST, url, Some(json_bytes(activity)))
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
        let mut body = serde_json::to_value(activity).unwrap_or(Value::Null);
        body["id"] = json!(activity_id);
        self.call(Method::PUT, url, Some(json_bytes(&body)))
            .await
            .map(|_| ())
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
        let created = resource(
            &self
                .call(Method::POST, url, Some(json_bytes(&body)))
                .await?,
        );
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
        serde_json::from_slice(&body).map_err(|_| ConnectorError::Rejected { status: 200 })
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
