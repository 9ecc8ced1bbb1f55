//! `/dev-vault/share/{key}`: the local vault's one-time links, so the whole flow works on a fresh
//! machine. Exists only with the local vault (never in production). GET and HEAD never use a link
//! up (link scanners and chat previews fetch links): they show a page whose button POSTs to the
//! same URL, and that POST shows the secret, once. The link itself is the bearer secret, so the
//! POST needs no cookie or CSRF token. Pages are never cached, send no referrer, and run no script.

use super::html::escape;
use super::state::DevVaultState;
use crate::vault::local::Opened;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;

pub fn router() -> Router<DevVaultState> {
    Router::new().route("/dev-vault/share/{key}", get(look).post(open))
}

/// GET (and HEAD): what the link holds, without using it up. The record's title stays off this
/// page too: a preview shows nothing of the record.
async fn look(State(state): State<DevVaultState>, Path(key): Path<String>) -> Response {
    let Some(vault) = state.local_vault.as_ref() else {
        return crate::error::ApiError::NotFound.into_response();
    };
    match vault.peek_link(&key).await {
        Some(closed) => show(closed),
        None => page(
            StatusCode::OK,
            "One-time share",
            "<h1>One-time share</h1><p>This link shows a secret once. Press the button when you are \
             ready to copy it; after that the link is used up.</p>\
             <form method=post><button type=submit>Show the secret</button></form>\
             <p class=note>Opening the link only shows this page.</p>"
                .to_string(),
        ),
    }
}

/// POST (the button): shows the secret to the first caller, and "already used" after.
async fn open(State(state): State<DevVaultState>, Path(key): Path<String>) -> Response {
    let Some(vault) = state.local_vault.as_ref() else {
        return crate::error::ApiError::NotFound.into_response();
    };
    show(vault.open_link(&key).await)
}

fn show(opened: Opened) -> Response {
    let (status, title, body) = match opened {
        Opened::Secret { title, login, password } => (
            StatusCode::OK,
            "One-time share",
            format!(
                "<h1>{}</h1><p>This link opens once. Copy what you need now.</p>\
                 <dl><dt>Login</dt><dd><code>{}</code></dd><dt>Password</dt><dd><code>{}</code></dd></dl>\
                 <p class=note>Local demo vault: these are made-up values.</p>",
                escape(&title),
                escape(&login),
                escape(&password)
            ),
        ),
        Opened::AlreadyUsed => (StatusCode::GONE, "Link used", "<h1>This link was already used</h1><p>One-time links open once. Ask Passkey for a new one.</p>".to_string()),
        Opened::Expired => (StatusCode::GONE, "Link expired", "<h1>This link has expired</h1><p>Ask Passkey for a new one.</p>".to_string()),
        Opened::Removed => (StatusCode::GONE, "Link revoked", "<h1>This link was revoked</h1><p>The lease ended or was revoked.</p>".to_string()),
        Opened::Unknown => (StatusCode::NOT_FOUND, "Unknown link", "<h1>No such link</h1>".to_string()),
        Opened::Unavailable => (StatusCode::SERVICE_UNAVAILABLE, "Try again", "<h1>The vault is not answering</h1><p>Nothing was used up. Try again in a moment.</p>".to_string()),
    };
    page(status, title, body)
}

fn page(status: StatusCode, title: &str, body: String) -> Response {
    let page = format!(
        "<!doctype html><html lang=en><head><meta charset=utf-8><meta name=viewport content=\"width=device-width\">\
         <title>{title}</title><style>body{{font:16px system-ui,sans-serif;max-width:36rem;margin:3rem auto;padding:0 1rem}}\
         code{{font-size:1.1rem}}.note{{color:#666}}</style></head><body>{body}</body></html>"
    );
    let mut response = (status, Html(page)).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'",
        ),
    );
    response
}
