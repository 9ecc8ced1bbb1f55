//! `GET /reports/access/{from}/{to}` and `GET /reports/access/{from}/{to}/{record id}`: the
//! access report's CSV, for admins signed in on the issuance page's sign-in. The window and the
//! record are path segments, not a query string, because sign-in brings a person back to the
//! path they asked for and nothing more (`session::safe_next`). Anyone else gets a 403 page and
//! their attempt is recorded; each download is recorded (`REPORT_DOWNLOADED`, the filters, never
//! the content).

use super::html::message;
use super::session::SignedInUser;
use super::state::IssuePageState;
use crate::domain::Role;
use crate::error::ApiError;
use crate::governance::events;
use crate::governance::reports::{AccessQuery, ReportError, Reports, date_text, parse_date};
use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;

pub fn router() -> Router<IssuePageState> {
    Router::new()
        .route("/reports/access/{from}/{to}", get(whole))
        .route("/reports/access/{from}/{to}/{record}", get(of_record))
}

async fn whole(
    State(state): State<IssuePageState>,
    Path((from, to)): Path<(String, String)>,
    signed_in: SignedInUser,
) -> Result<Response, ApiError> {
    download(state, signed_in, &from, &to, None).await
}

async fn of_record(
    State(state): State<IssuePageState>,
    Path((from, to, record)): Path<(String, String, String)>,
    signed_in: SignedInUser,
) -> Result<Response, ApiError> {
    download(state, signed_in, &from, &to, Some(&record)).await
}

async fn download(
    state: IssuePageState,
    SignedInUser { user, .. }: SignedInUser,
    from: &str,
    to: &str,
    record: Option<&str>,
) -> Result<Response, ApiError> {
    if user.role != Role::Admin {
        events::admin_command_refused(
            state.store.as_ref(),
            format!("user:{}", user.id),
            json!({ "command": "report download" }),
            state.clock.now(),
        )
        .await?;
        return Ok(message(
            StatusCode::FORBIDDEN,
            "Admins only",
            "Access reports are for Passkey admins. Ask one if you need this report.",
        ));
    }
    let not_found = || {
        message(
            StatusCode::NOT_FOUND,
            "No such report",
            "This report link names a record Passkey does not know. Ask the bot for the report again.",
        )
    };
    // The link names the record by number; the use case finds records by vault uid.
    let record = match record {
        None => None,
        Some(id) => match id.parse::<i64>() {
            Ok(id) => match state.store.record_by_id(id).await? {
                Some(r) => Some(r.vault_uid),
                None => return Ok(not_found()),
            },
            Err(_) => return Ok(not_found()),
        },
    };
    let dates = parse_date(from).and_then(|f| Ok((f, parse_date(to)?)));
    let (from, to) = match dates {
        Ok(window) => window,
        Err(e) => {
            return Ok(message(
                StatusCode::BAD_REQUEST,
                "Not a report window",
                &e.to_string(),
            ));
        }
    };
    let reports = Reports::new(state.store.clone(), state.clock.clone());
    let query = AccessQuery {
        from,
        to,
        record,
        user: None,
    };
    let report = match reports.access(&query).await {
        Ok(report) => report,
        Err(ReportError::Store(e)) => return Err(e.into()),
        Err(refusal) => {
            return Ok(message(
                StatusCode::BAD_REQUEST,
                "Not a report window",
                &refusal.to_string(),
            ));
        }
    };
    reports.record_download(&user, &report).await?;
    let file = format!(
        "attachment; filename=\"passkey-access-{}-{}.csv\"",
        date_text(report.from),
        date_text(report.to)
    );
    Ok((
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/csv; charset=utf-8"),
            ),
            (
                header::CONTENT_DISPOSITION,
                HeaderValue::from_str(&file).map_err(ApiError::internal)?,
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
        ],
        report.to_csv(),
    )
        .into_response())
}
