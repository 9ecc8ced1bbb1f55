//! Liveness, readiness and (when `telemetry.metrics_endpoint` is on) `/metrics`. None says
//! anything about configuration or secrets. And the probe `passkey healthcheck` runs against
//! `/healthz` (a container image without curl uses the binary itself).

use super::state::HealthState;
use crate::error::ApiError;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use secrecy::ExposeSecret;
use serde_json::json;
use std::net::SocketAddr;

pub fn router() -> Router<HealthState> {
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
async fn metrics(State(state): State<HealthState>, request: Request) -> Result<Response, ApiError> {
    let headers = request.headers();
    let peer = request.extensions().get::<ConnectInfo<SocketAddr>>();
    let t = state.telemetry.as_ref();
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
async fn readiness(State(state): State<HealthState>) -> impl IntoResponse {
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

/// The URL `passkey healthcheck` probes by default: `/healthz` at `bind`'s port, on loopback when
/// `bind` is a wildcard address (`0.0.0.0` → `127.0.0.1`, `[::]` → `[::1]`).
pub fn local_healthz_url(bind: std::net::SocketAddr) -> String {
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
    let ip = match bind.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    format!("http://{}/healthz", SocketAddr::new(ip, bind.port()))
}

/// GETs `url` once, without proxies or redirects, within `timeout`: `Ok` on 200, otherwise why
/// not (the status, or that nothing answered). The URL carries no secret; the answer is not read.
pub async fn probe(url: &str, timeout: std::time::Duration) -> Result<(), String> {
    let client = crate::outbound::builder()
        .no_proxy()
        .timeout(timeout)
        .build()
        .map_err(|e| format!("http client: {e}"))?;
    match client.get(url).send().await {
        Ok(response) if response.status() == reqwest::StatusCode::OK => Ok(()),
        Ok(response) => Err(format!("{url} answered {}", response.status())),
        Err(e) if e.is_timeout() => Err(format!("{url} did not answer within {timeout:?}")),
        Err(e) if e.is_connect() => Err(format!("nothing listens at {url}")),
        Err(e) if e.is_builder() => Err(format!("`{url}` is not a usable URL")),
        Err(_) => Err(format!("{url} could not be read")),
    }
}

#[cfg(test)]
mod tests {
    use super::local_healthz_url;

    #[test]
    fn the_default_probe_goes_to_loopback_on_the_bound_port() {
        let url = |bind: &str| local_healthz_url(bind.parse().unwrap());
        assert_eq!(url("0.0.0.0:3978"), "http://127.0.0.1:3978/healthz");
        assert_eq!(url("[::]:8080"), "http://[::1]:8080/healthz");
        assert_eq!(url("127.0.0.1:3978"), "http://127.0.0.1:3978/healthz");
        assert_eq!(url("10.1.2.3:80"), "http://10.1.2.3:80/healthz");
    }
}
