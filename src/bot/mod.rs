//! The Teams channel: `POST /api/messages`. The [`VerifiedActivity`] extractor authenticates and
//! parses; [`turn`] decides what the bot does; the [`connector`] carries replies back.

pub mod actions;
pub mod activity;
pub mod admin;
pub mod auth;
pub mod commands;
pub mod connector;
pub mod notify;
pub mod render;
pub mod state;
pub mod turn;
pub mod views;

use crate::config::Settings;
use crate::domain::Clock;
use crate::error::ApiError;
use crate::store::Store;
use activity::Activity;
use auth::{ChannelAuth, ChannelIdentity};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{FromRequest, Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use connector::{Connector, ConnectorHosts, HttpConnector, RetryPolicy, TokenProvider};
pub use state::BotState;
use std::sync::Arc;

/// How inbound activities are authenticated.
pub enum ChannelAuthMode {
    /// No app id configured, loopback only: activities are accepted without a token (Emulator,
    /// Agents Playground), and only loopback service URLs are honoured.
    Dev,
    Verified(ChannelAuth),
}

/// The channel's moving parts, built once from settings.
pub struct BotRuntime {
    pub auth: ChannelAuthMode,
    /// Unchanged users/conversations are not rewritten on every message.
    pub recent: turn::RecentWrites,
    pub connector: Arc<dyn Connector>,
    pub app_id: Option<String>,
    /// The hosts inbound activities' service URLs must name (the connector checks them again).
    pub hosts: ConnectorHosts,
}

impl BotRuntime {
    /// `store` is where refused Connector hosts are audited.
    pub fn from_settings(
        settings: &Settings,
        clock: Arc<dyn Clock>,
        store: Arc<dyn Store>,
    ) -> BotRuntime {
        let http = reqwest::Client::builder()
            .user_agent(concat!("passkey/", env!("CARGO_PKG_VERSION")))
            .build()
            .unwrap_or_default();
        let hosts = ConnectorHosts::from_settings(settings);
        let connector = |tokens| {
            Arc::new(
                HttpConnector::new(tokens, RetryPolicy::default())
                    .with_hosts(hosts.clone())
                    .with_audit(store.clone(), clock.clone()),
            )
        };
        let app_id = settings.bot.app_id.clone().filter(|id| !id.is_empty());
        match &app_id {
            Some(app_id) => {
                let entra = settings.bot.tenant_id.as_ref().map(|tenant| {
                    (
                        tenant.clone(),
                        settings
                            .bot
                            .entra_openid_metadata_url
                            .replace("{tenant}", tenant),
                    )
                });
                let auth = ChannelAuth::new(
                    app_id.clone(),
                    settings.bot.openid_metadata_url.clone(),
                    entra,
                    http.clone(),
                    clock.clone(),
                );
                let tokens = TokenProvider::from_settings(settings, &settings.bot.connector_scope)
                    .map(Arc::new);
                BotRuntime {
                    auth: ChannelAuthMode::Verified(auth),
                    connector: connector(tokens),
                    app_id: Some(app_id.clone()),
                    recent: Default::default(),
                    hosts,
                }
            }
            None => BotRuntime {
                auth: ChannelAuthMode::Dev,
                connector: connector(None),
                app_id: None,
                recent: Default::default(),
                hosts,
            },
        }
    }
}

/// The channel's routes, over the bot's own state (the root gives it from `AppState`).
pub fn router() -> Router<BotState> {
    Router::new().route("/api/messages", post(messages))
}

/// The inbound endpoint. Message turns answer 200 after replies went out through the Connector;
/// invokes answer with their invoke response. The turn runs as a task of its own: a caller that
/// hangs up (Teams gives up after its timeout) does not cut it off halfway; it finishes, and
/// marks its activity done.
///
/// Telemetry is recorded here, once for every activity: refusals before the turn by reason,
/// activities by type and outcome, the turn's latency; and the turn runs in a `turn` span that
/// carries the correlation id (the `x-request-id`), the activity id and, once a use case writes
/// about one, the request number.
async fn messages(
    State(state): State<BotState>,
    headers: axum::http::HeaderMap,
    verified: Result<VerifiedActivity, ApiError>,
) -> Result<Response, ApiError> {
    let metrics = crate::metrics::get();
    let VerifiedActivity { activity, identity } = verified.inspect_err(|refused| {
        metrics.channel_refused(refusal_reason(refused));
    })?;
    let kind = crate::metrics::activity_type_label(&activity.kind);
    let correlation_id = headers
        .get(crate::web::REQUEST_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-");
    let span = tracing::info_span!(
        "turn",
        correlation_id = %crate::telemetry::tame(correlation_id),
        activity_id = %crate::telemetry::tame(activity.id.as_deref().unwrap_or("-")),
        activity_type = kind,
        request_number = tracing::field::Empty,
    );
    let started = std::time::Instant::now();
    let turn = tokio::spawn(tracing::Instrument::instrument(
        async move { turn::handle(&state, &activity, &identity).await },
        span,
    ));
    let outcome = match turn.await.map_err(ApiError::internal) {
        Ok(Ok(outcome)) => outcome,
        Ok(Err(e)) | Err(e) => {
            metrics.activity(kind, "error", Some(started.elapsed()));
            return Err(e);
        }
    };
    match outcome {
        turn::TurnOutcome::Ack => {
            metrics.activity(kind, "ok", Some(started.elapsed()));
            Ok(StatusCode::OK.into_response())
        }
        turn::TurnOutcome::Invoke { status, body } => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let word = if status.is_success() {
                "ok"
            } else if status.is_client_error() {
                "refused"
            } else {
                "error"
            };
            metrics.activity(kind, word, Some(started.elapsed()));
            Ok(match body {
                Some(body) => (status, axum::Json(body)).into_response(),
                None => status.into_response(),
            })
        }
    }
}

/// Why an activity was refused before its turn, as a metric label.
fn refusal_reason(refused: &ApiError) -> &'static str {
    match refused {
        ApiError::Unauthorized => "channel_token",
        ApiError::PayloadTooLarge => "too_large",
        ApiError::UnsupportedMediaType(_) => "not_json",
        ApiError::BadRequest(_) => "malformed",
        ApiError::Forbidden(why) if why.contains("tenant") => "tenant",
        ApiError::Forbidden(why) if why.contains("serviceUrl") => "service_url",
        ApiError::Forbidden(why) if why.contains("Teams only") => "channel",
        ApiError::Forbidden(why) if why.contains("this machine only") => "not_loopback",
        ApiError::Forbidden(_) => "forbidden",
        _ => "other",
    }
}

/// An activity whose sender is verified (or dev mode on loopback), well-formed, from an allowed tenant.
pub struct VerifiedActivity {
    pub activity: Activity,
    pub identity: ChannelIdentity,
}

impl FromRequest<BotState> for VerifiedActivity {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &BotState) -> Result<Self, Self::Rejection> {
        let dev = matches!(state.bot.auth, ChannelAuthMode::Dev);
        let authorization = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .map(String::from);
        if !dev && authorization.is_none() {
            // Refuse before reading a body nobody vouched for.
            tracing::warn!(reason = "no bearer token", "channel token refused");
            return Err(ApiError::Unauthorized);
        }
        if dev {
            let peer = req
                .extensions()
                .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
                .map(|c| c.0.ip());
            if !peer.is_some_and(|ip| ip.is_loopback()) {
                tracing::warn!(
                    peer = %peer.map_or("-".into(), |ip| ip.to_string()),
                    "dev channel mode refused a peer that is not loopback"
                );
                return Err(ApiError::Forbidden(
                    "without an app id the bot serves this machine only".into(),
                ));
            }
        }
        refuse_browsers(req.headers())?;
        let body = Bytes::from_request(req, state).await.map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::PayloadTooLarge
            } else {
                ApiError::BadRequest("unreadable request body".into())
            }
        })?;
        let activity =
            Activity::from_json(&body).map_err(|e| ApiError::BadRequest(e.to_string()))?;
        if !served_channel(&activity.channel_id, dev) {
            tracing::warn!(channel = %activity.channel_id, "activity from a channel this bot does not serve");
            return Err(ApiError::Forbidden(
                "this bot serves Microsoft Teams only".into(),
            ));
        }
        if let Some(claimed) = activity.conversation.tenant_id.as_deref()
            && activity.channel_data_tenant_id() != Some(claimed)
        {
            tracing::warn!(
                conversation_tenant = claimed,
                channel_data_tenant = activity.channel_data_tenant_id().unwrap_or("-"),
                "activity names two different tenants"
            );
            return Err(ApiError::Forbidden(
                "conversation.tenantId does not match channelData.tenant.id".into(),
            ));
        }
        let identity = match &state.bot.auth {
            ChannelAuthMode::Dev => {
                if !is_loopback_url(&activity.service_url) {
                    return Err(ApiError::BadRequest(
                        "dev mode only replies to a loopback serviceUrl (Emulator / Agents Playground)".into(),
                    ));
                }
                ChannelIdentity {
                    issuer_kind: "dev",
                    service_url: None,
                }
            }
            ChannelAuthMode::Verified(auth) => auth
                .verify(
                    authorization.as_deref(),
                    &activity.service_url,
                    &activity.channel_id,
                )
                .await
                .map_err(|reason| {
                    tracing::warn!(%reason, "channel token refused");
                    ApiError::Unauthorized
                })?,
        };
        let allowed = &state.settings.bot.allowed_tenants;
        if !allowed.is_empty()
            && !activity
                .tenant_id()
                .is_some_and(|t| allowed.iter().any(|a| a == t))
        {
            tracing::warn!(
                tenant = activity.tenant_id().unwrap_or("-"),
                "activity from a tenant that is not allowed"
            );
            return Err(ApiError::Forbidden(
                "this tenant is not served by this bot".into(),
            ));
        }
        if let Err(refused) = state.bot.hosts.check(&activity.service_url) {
            // An authenticated activity (dev mode took only loopback above) named a host the
            // Connector token must not go to: nothing of it is kept, the refusal is.
            connector::audit_host_refusal(
                state.store.as_ref(),
                state.clock.as_ref(),
                &refused,
                "inbound",
                &format!("channel:{}", identity.issuer_kind),
            )
            .await;
            return Err(ApiError::Forbidden(
                "serviceUrl is not a Bot Framework Connector host".into(),
            ));
        }
        Ok(VerifiedActivity { activity, identity })
    }
}

/// Bot Framework, the Emulator and the Agents Playground post `application/json` from native
/// code. A web page can only post text/plain, a form or multipart without a CORS preflight (which
/// this endpoint never grants), and a browser always says where it came from: `Origin` on a
/// cross-origin or POST request, `Sec-Fetch-Site` other than `none` unless the user typed the
/// address. Either one means a page is trying to drive the bot.
fn refuse_browsers(headers: &axum::http::HeaderMap) -> Result<(), ApiError> {
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|essence| essence.trim().eq_ignore_ascii_case("application/json"));
    if !json {
        return Err(ApiError::UnsupportedMediaType(
            "activities are application/json".into(),
        ));
    }
    let fetch_site = headers.get("sec-fetch-site").map(|v| v.as_bytes());
    if headers.contains_key(header::ORIGIN) || fetch_site.is_some_and(|site| site != b"none") {
        tracing::warn!("a browser request to /api/messages was refused");
        return Err(ApiError::Forbidden(
            "browsers may not post activities".into(),
        ));
    }
    Ok(())
}

/// Only Teams vouches for `from.aadObjectId` and `channelData.tenant`; other channels' clients
/// (Direct Line, Web Chat) write them themselves. Dev mode also takes the Bot Framework Emulator.
fn served_channel(channel_id: &str, dev: bool) -> bool {
    channel_id == TEAMS_CHANNEL || (dev && channel_id == EMULATOR_CHANNEL)
}

pub const TEAMS_CHANNEL: &str = "msteams";
pub const EMULATOR_CHANNEL: &str = "emulator";

fn is_loopback_url(url: &str) -> bool {
    let Ok(url) = reqwest::Url::parse(url) else {
        return false;
    };
    let Some(host) = url.host_str() else {
        return false;
    };
    host.eq_ignore_ascii_case("localhost")
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}
