//! The HTTP edge: routes, middleware, health. Handlers are thin: they parse, call a use case or
//! the store, and map errors through [`ApiError`](crate::error::ApiError).

mod dev_vault;
mod health;

use crate::app::AppState;
use crate::error::ApiError;
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderName, Request};
use tower::ServiceBuilder;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

pub const REQUEST_ID_HEADER: HeaderName = HeaderName::from_static("x-request-id");

/// The whole application router, with every route and layer.
pub fn router(state: AppState) -> Router {
    let body_limit = state.settings.http.body_limit_bytes;
    Router::new()
        .merge(health::router())
        .merge(crate::bot::router())
        .merge(dev_vault::router())
        .fallback(|| async { ApiError::NotFound })
        .with_state(state)
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
                    tracing::info_span!("http", method = %req.method(), path = %path, request_id = %id)
                }))
                .layer(PropagateRequestIdLayer::new(REQUEST_ID_HEADER))
                // Refuses by Content-Length before the body is read; the extractor limit covers
                // chunked bodies that only reveal their size while streaming.
                .layer(RequestBodyLimitLayer::new(body_limit))
                .layer(DefaultBodyLimit::max(body_limit)),
        )
}
