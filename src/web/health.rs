//! Liveness, readiness and (when `telemetry.metrics_endpoint` is on) `/metrics`. None says
//! anything about configuration or secrets.

use crate::error::ApiError;
use crate::state::AppState;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use secrecy::ExposeSecret;
use serde_json::json;
use std::net::SocketAddr;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(liveness))
        .route("/readyz", get(readiness))
        .route("/metrics", get(metrics))
}

/// The Prometheus text exposition of every metric, the gauges read from the database first.
/// Off (404) unless `telemetry.metrics_endpoint`. Served to a loopback peer that no proxy
/// relayed (no `X-Forwarded-For` / `Forwarded`), or to anyone with
/// `telemetry.metrics_bearer_token`; anyone else gets 401 when a token is set, else 404, and
/// nothing of the metrics.
async fn metrics(State(state): State<AppState>, request: Request) -> Result<Response, ApiError> {
    let headers = request.headers();
    let peer = request.extensions().get::<ConnectInfo<SocketAddr>>();
    let t = &state.settings.telemetry;
    if !t.metrics_endpoint {
        return Err(ApiError::NotFound);
    }
    let relayed = headers.contains_key("x-forwarded-for") || headers.contains_key("forwarded");
    let local = !relayed && peer.is_some_and(|ConnectInfo(addr)| addr.ip().is_loopback());
    let token = t
        .metrics_bearer_token
        .as_ref()
        .map(|s| s.expose_secret())
        .filter(|s| !s.is_empty());
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        });
    let authorized = match (token, presented) {
        (Some(token), Some(presented)) => {
            crate::crypto::same_bytes(token.as_bytes(), presented.as_bytes())
        }
        _ => false,
    };
    if !(local || authorized) {
        return Err(if token.is_some() {
            ApiError::Unauthorized
        } else {
            ApiError::NotFound
        });
    }
    crate::telemetry::refresh_gauges(state.store.as_ref(), state.clock.now()).await;
    let body = crate::telemetry::prometheus_text().unwrap_or_default();
    Ok((
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        body,
    )
        .into_response())
}

/// The process is up and serving HTTP.
async fn liveness() -> impl IntoResponse {
    Json(json!({ "status": "ok", "version": crate::VERSION }))
}

/// The database answers and carries exactly the migrations this build expects, and no scheduled
/// job of this instance is crashing (a job whose last run panicked makes the instance
/// `degraded`, 503: a lease-expiry loop that keeps dying must be noticed by the orchestrator and
/// by ops, not found later in a log).
async fn readiness(State(state): State<AppState>) -> impl IntoResponse {
    let kind = state.store.kind();
    let reachable = state.store.ping().await.is_ok();
    let migrations = if reachable {
        match state.store.migration_state().await {
            Ok(m) if m.is_current() => "current",
            Ok(m) if m.applied.len() < m.expected.len() => "pending",
            Ok(_) => "unknown_applied",
            Err(_) => "unreadable",
        }
    } else {
        "unreadable"
    };
    let database_ok = reachable && migrations == "current";
    let crashing = state.jobs.crashing();
    let status = if database_ok && crashing.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let word = match (database_ok, crashing.is_empty()) {
        (false, _) => "not_ready",
        (true, false) => "degraded",
        (true, true) => "ready",
    };
    let body = json!({
        "status": word,
        "database": { "kind": kind, "reachable": reachable, "migrations": migrations },
        "jobs": { "crashing": crashing },
    });
    (status, Json(body))
}
