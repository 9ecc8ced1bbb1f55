//! Liveness and readiness. Neither says anything about configuration or secrets.

use super::state::HealthState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

pub fn router() -> Router<HealthState> {
    Router::new()
        .route("/healthz", get(liveness))
        .route("/readyz", get(readiness))
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
