//! The HTTP edge: routes, middleware, health. Handlers are thin: they parse, call a use case (or
//! read the store; they never write it), and map errors through
//! [`ApiError`](crate::error::ApiError). Each group of routes takes its own sub-state
//! ([`state`]), given from `AppState` by `FromRef`.

mod dev_vault;
pub mod forwarded;
pub mod health;
mod html;
pub mod issue;
pub mod oidc;
pub mod rate_limit;
mod reports;
pub mod session;
pub mod signin;
pub mod state;

use crate::bot::BotState;
use crate::config::{Profile, Settings};
use crate::error::ApiError;
use crate::state::AppState;
use axum::Router;
use axum::extract::{DefaultBodyLimit, FromRef, State};
use axum::http::{HeaderName, HeaderValue, Request, header};
use axum::response::Response;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use tower::ServiceBuilder;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

pub const REQUEST_ID_HEADER: HeaderName = HeaderName::from_static("x-request-id");

/// The whole application router, with every route and layer. Each group of routes gets its own
/// sub-state from `state` (`FromRef`), not the whole of it.
pub fn router(state: AppState) -> Router {
    let body_limit = state.settings.http.body_limit_bytes;
    let pages = state::IssuePageState::from_ref(&state);
    Router::new()
        .merge(health::router().with_state(state::HealthState::from_ref(&state)))
        .merge(crate::bot::router().with_state(BotState::from_ref(&state)))
        .merge(dev_vault::router().with_state(state::DevVaultState::from_ref(&state)))
        .merge(signin::router().with_state(pages.clone()))
        .merge(issue::router().with_state(pages.clone()))
        .merge(reports::router().with_state(pages))
        .fallback(|| async { ApiError::NotFound })
        .layer(axum::middleware::map_response_with_state(
            state.web.clone(),
            security_headers,
        ))
        .layer(
            ServiceBuilder::new()
                .layer(SetRequestIdLayer::new(REQUEST_ID_HEADER, MakeRequestUuid))
                .layer(TraceLayer::new_for_http().make_span_with(|req: &Request<_>| {
                    let id = req
                        .headers()
                        .get(REQUEST_ID_HEADER)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("-");
                    // The path only (query strings may carry things we must not log), and never a
                    // one-time link's key.
                    let path = req.uri().path();
                    let path = if path.starts_with("/dev-vault/share/") { "/dev-vault/share/[REDACTED]" } else { path };
                    // (`/signin/callback`'s code and state are in the query, which is never logged.)
                    tracing::info_span!("http", method = %req.method(), path = %path, request_id = %id)
                }))
                .layer(PropagateRequestIdLayer::new(REQUEST_ID_HEADER))
                // Refuses by Content-Length before the body is read; the extractor limit covers
                // chunked bodies that only reveal their size while streaming.
                .layer(RequestBodyLimitLayer::new(body_limit))
                .layer(DefaultBodyLimit::max(body_limit)),
        )
}

/// What the web pages need beyond the use cases: the cookie key, the sign-in provider, the rate
/// limits and the header values, built once at start.
pub struct WebState {
    pub key: session::CookieKey,
    /// Entra sign-in; None = the dev sign-in page (dev profile, loopback only).
    pub oidc: Option<oidc::OidcClient>,
    pub limiter: rate_limit::RateLimiter,
    /// Cookies carry `Secure` (and the `__Host-` prefix) outside dev.
    pub secure_cookies: bool,
    pub hsts: bool,
    pub session_ttl_secs: i64,
    /// `scheme://host[:port]` of `public_url`: the only `Origin` a POST may come from.
    pub public_origin: String,
    /// Trusted proxies appending to `X-Forwarded-For` in front of the app; 0 = ignore the header.
    pub forwarded_for_hops: u8,
    csp: HeaderValue,
}

impl WebState {
    pub fn from_settings(
        settings: &Settings,
        clock: std::sync::Arc<dyn crate::domain::Clock>,
    ) -> Result<WebState, String> {
        let key = session::CookieKey::load(settings)?;
        let base = settings.public_base_url();
        let oidc = oidc::OidcClient::from_settings(
            &settings.web.oidc,
            settings.sign_in_tenants(),
            &base,
            clock,
        );
        let w = &settings.web;
        let frame_ancestors = if w.frame_ancestors.is_empty() {
            "'none'".to_string()
        } else {
            w.frame_ancestors.join(" ")
        };
        let csp = format!(
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
             connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors {frame_ancestors}"
        );
        Ok(WebState {
            key,
            oidc,
            limiter: rate_limit::RateLimiter::new(
                w.rate_per_user_per_minute,
                w.rate_per_ip_per_minute,
            ),
            secure_cookies: settings.profile != Profile::Dev,
            hsts: settings.profile != Profile::Dev,
            session_ttl_secs: w.session_ttl_secs as i64,
            public_origin: origin_of(&base),
            forwarded_for_hops: if w.trust_forwarded_for {
                w.forwarded_for_hops
            } else {
                0
            },
            csp: HeaderValue::from_str(&csp).map_err(|_| {
                "web.frame_ancestors holds characters a header cannot carry".to_string()
            })?,
        })
    }

    /// The client's address: the entry the trusted proxies appended to `X-Forwarded-For` when
    /// they are configured, else (and whenever that entry is missing or not an address) the peer.
    pub fn client_ip(
        &self,
        headers: &axum::http::HeaderMap,
        extensions: &axum::http::Extensions,
    ) -> Option<IpAddr> {
        forwarded::forwarded_client(headers, self.forwarded_for_hops).or_else(|| {
            extensions
                .get::<axum::extract::ConnectInfo<SocketAddr>>()
                .map(|c| c.0.ip().to_canonical())
        })
    }
}

fn origin_of(url: &str) -> String {
    match url.find("://") {
        Some(at) => {
            let rest = &url[at + 3..];
            let host = rest.split('/').next().unwrap_or(rest);
            format!("{}{}", &url[..at + 3], host)
        }
        None => url.to_string(),
    }
}

/// Every response: no caching, no referrer, no sniffing, the strict CSP (unless the handler set
/// its own), and HSTS outside dev.
async fn security_headers(State(web): State<Arc<WebState>>, mut response: Response) -> Response {
    let h = response.headers_mut();
    h.entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.entry(header::CONTENT_SECURITY_POLICY)
        .or_insert(web.csp.clone());
    if web.hsts {
        h.insert(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static("max-age=31536000; includeSubDomains"),
        );
    }
    response
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_origin_is_scheme_host_and_port() {
        assert_eq!(
            super::origin_of("https://passkey.contoso.com/x"),
            "https://passkey.contoso.com"
        );
        assert_eq!(
            super::origin_of("http://127.0.0.1:3978"),
            "http://127.0.0.1:3978"
        );
    }
}
