//! Signing in and out. Production: Entra ID (see [`super::oidc`]); the state, nonce and PKCE
//! verifier ride in a signed, HttpOnly, ten-minute flow cookie, so nothing is kept server-side.
//! Dev profile without Entra configured: a page listing the people in the database (the demo
//! set), served to loopback clients only. Every sign-in and every refused sign-in is audited.

use super::html::{escape, message, page};
use super::session::{
    self, FLOW_TTL_SECS, SignInFlow, SignedInUser, clear_cookie, cookie, flow_cookie_name,
    random_token, safe_next, same_text, session_cookie_name, set_cookie, start_session,
};
use super::state::IssuePageState;
use crate::config::Profile;
use crate::domain::Role;
use crate::error::ApiError;
use crate::governance::events;
use crate::store::User;
use axum::extract::{Form, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Router, http::request::Parts};
use serde::Deserialize;

pub fn router() -> Router<IssuePageState> {
    Router::new()
        .route("/signin", get(start))
        .route("/signin/dev", post(dev_sign_in))
        .route("/signin/callback", get(callback))
        .route("/signout", post(sign_out))
}

#[derive(Deserialize)]
struct Next {
    next: Option<String>,
}

/// `GET /signin?next=/requests/7/issue`: off to Entra, or the dev page.
async fn start(
    State(state): State<IssuePageState>,
    Query(q): Query<Next>,
    parts: Parts,
) -> Response {
    let next = safe_next(q.next.as_deref());
    let web = &state.web;
    let now = state.clock.now();
    let mut flow = SignInFlow {
        state: random_token::<24>(),
        nonce: random_token::<24>(),
        verifier: random_token::<48>(),
        csrf: random_token::<24>(),
        next,
        exp: now.unix_seconds() + FLOW_TTL_SECS,
    };
    let Some(oidc) = &web.oidc else {
        return dev_page(&state, &parts, flow).await;
    };
    flow.csrf.clear();
    match oidc
        .authorization_url(&flow.state, &flow.nonce, &flow.verifier)
        .await
    {
        Ok(url) => {
            let mut response = Redirect::to(&url).into_response();
            response.headers_mut().append(
                header::SET_COOKIE,
                set_cookie(
                    flow_cookie_name(web.secure_cookies),
                    &web.key.seal_flow(&flow),
                    FLOW_TTL_SECS,
                    web.secure_cookies,
                ),
            );
            response
        }
        Err(e) => {
            tracing::warn!(error = %e, "sign-in could not start");
            message(
                StatusCode::SERVICE_UNAVAILABLE,
                "Sign-in is unavailable",
                "Microsoft sign-in is not answering right now. Try again in a minute.",
            )
        }
    }
}

/// The dev sign-in page is for this machine only: dev profile, no Entra configured, loopback peer.
fn dev_sign_in_allowed(state: &IssuePageState, parts: &Parts) -> bool {
    state.profile == Profile::Dev
        && state.web.oidc.is_none()
        && parts
            .extensions
            .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
            .is_some_and(|c| c.0.ip().is_loopback())
}

async fn people(state: &IssuePageState) -> Result<Vec<User>, ApiError> {
    let mut all = Vec::new();
    for role in [Role::Requester, Role::Approver, Role::Admin] {
        all.extend(state.store.users_with_role(role).await?);
    }
    all.sort_by_key(|u| u.id);
    Ok(all)
}

async fn dev_page(state: &IssuePageState, parts: &Parts, flow: SignInFlow) -> Response {
    if !dev_sign_in_allowed(state, parts) {
        return message(
            StatusCode::FORBIDDEN,
            "Sign-in refused",
            "The dev sign-in page is only served to this machine.",
        );
    }
    let users = match people(state).await {
        Ok(u) => u,
        Err(e) => return e.into_response(),
    };
    let mut list = String::new();
    for u in &users {
        list.push_str(&format!(
            "<li><form method=\"post\" action=\"/signin/dev\">\
             <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\"><input type=\"hidden\" name=\"next\" value=\"{next}\">\
             <input type=\"hidden\" name=\"user_id\" value=\"{id}\">\
             <button type=\"submit\" id=\"signin-{id}\">Sign in as {name}</button> <span class=\"muted\">{role}{email}</span></form></li>",
            csrf = escape(&flow.csrf),
            next = escape(&flow.next),
            id = u.id,
            name = escape(&u.display_name),
            role = u.role,
            email = u.email.as_deref().map(|e| format!(" · {}", escape(e))).unwrap_or_default(),
        ));
    }
    if users.is_empty() {
        list.push_str("<li>Nobody is in the database yet. Load the demo set: <code>passkey admin demo-load</code>.</li>");
    }
    let web = &state.web;
    let mut response = page(
        StatusCode::OK,
        "Sign in (dev)",
        "",
        &format!(
            "<h1>Sign in (dev)</h1><p>Development sign-in: pick who you are. Production signs people in with \
             Microsoft Entra ID instead; this page is only served on loopback.</p><ul class=\"people\">{list}</ul>"
        ),
    );
    response.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(
            flow_cookie_name(web.secure_cookies),
            &web.key.seal_flow(&flow),
            FLOW_TTL_SECS,
            web.secure_cookies,
        ),
    );
    response
}

#[derive(Deserialize)]
struct DevSignIn {
    user_id: i64,
    csrf: String,
    next: Option<String>,
}

/// `POST /signin/dev`: the form's CSRF value must match the flow cookie the page set.
async fn dev_sign_in(
    State(state): State<IssuePageState>,
    parts: Parts,
    Form(form): Form<DevSignIn>,
) -> Response {
    if !dev_sign_in_allowed(&state, &parts) {
        return message(
            StatusCode::FORBIDDEN,
            "Sign-in refused",
            "The dev sign-in page is only served to this machine.",
        );
    }
    let web = &state.web;
    if let Err(e) = session::check_origin(&parts.headers, web) {
        return e.into_response();
    }
    let now = state.clock.now();
    let flow = cookie(&parts.headers, flow_cookie_name(web.secure_cookies))
        .and_then(|v| web.key.open_flow(v, now));
    if !flow.is_some_and(|f| !f.csrf.is_empty() && same_text(&f.csrf, &form.csrf)) {
        return message(
            StatusCode::FORBIDDEN,
            "Sign-in refused",
            "This sign-in page is out of date. Open it again and pick who you are.",
        );
    }
    let user = match state.store.user_by_id(form.user_id).await {
        Ok(Some(u)) => u,
        Ok(None) => {
            return message(
                StatusCode::BAD_REQUEST,
                "Sign-in refused",
                "There is no such person.",
            );
        }
        Err(e) => return ApiError::from(e).into_response(),
    };
    signed_in(&state, &user, "dev", None, &safe_next(form.next.as_deref())).await
}

/// Writes the audit event, sets the session cookie, drops the flow cookie, and goes on.
async fn signed_in(
    state: &IssuePageState,
    user: &User,
    method: &str,
    tid: Option<&str>,
    next: &str,
) -> Response {
    let now = state.clock.now();
    if let Err(e) = events::signed_in(
        state.store.as_ref(),
        crate::governance::lifecycle::actor(user),
        method,
        tid,
        now,
    )
    .await
    {
        return ApiError::from(e).into_response();
    }
    let web = &state.web;
    let mut response = Redirect::to(next).into_response();
    let h = response.headers_mut();
    h.append(header::SET_COOKIE, start_session(web, user.id, now));
    h.append(
        header::SET_COOKIE,
        clear_cookie(flow_cookie_name(web.secure_cookies), web.secure_cookies),
    );
    response
}

#[derive(Deserialize)]
struct Callback {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
}

/// `GET /signin/callback?code&state`: back from Entra.
async fn callback(
    State(state): State<IssuePageState>,
    headers: HeaderMap,
    Query(q): Query<Callback>,
) -> Response {
    let web = &state.web;
    let Some(oidc) = &web.oidc else {
        return ApiError::NotFound.into_response();
    };
    let now = state.clock.now();
    let Some(flow) = cookie(&headers, flow_cookie_name(web.secure_cookies))
        .and_then(|v| web.key.open_flow(v, now))
    else {
        // No sign-in of ours is under way in this browser (expired, or someone else's link).
        return refused_page(
            web.secure_cookies,
            "/",
            "This sign-in expired or was not started here.",
        );
    };
    let next = flow.next.clone();
    if !q
        .state
        .as_deref()
        .is_some_and(|s| same_text(s, &flow.state))
    {
        return refuse(&state, None, "state_mismatch", &next).await;
    }
    if let Some(error) = q.error.as_deref() {
        let code: String = error
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
            .take(64)
            .collect();
        return refuse(&state, None, &format!("provider_error:{code}"), &next).await;
    }
    let Some(code) = q.code.as_deref().filter(|c| !c.is_empty()) else {
        return refuse(&state, None, "no_code", &next).await;
    };
    let identity = match oidc.redeem(code, &flow.verifier, &flow.nonce).await {
        Ok(i) => i,
        Err(e) => return refuse(&state, None, e.code(), &next).await,
    };
    let user = match state.store.user_by_aad_object_id(&identity.oid).await {
        Ok(Some(u)) => u,
        Ok(None) => return refuse(&state, Some(&identity.oid), "no_account", &next).await,
        Err(e) => return ApiError::from(e).into_response(),
    };
    if user
        .tenant_id
        .as_deref()
        .is_some_and(|t| !t.eq_ignore_ascii_case(&identity.tid))
    {
        return refuse(
            &state,
            Some(&identity.oid),
            "tenant_differs_from_account",
            &next,
        )
        .await;
    }
    signed_in(&state, &user, "entra", Some(&identity.tid), &next).await
}

async fn refuse(state: &IssuePageState, oid: Option<&str>, reason: &str, next: &str) -> Response {
    let actor = oid.map_or_else(|| "anonymous".to_string(), |o| format!("aad:{o}"));
    if let Err(e) =
        events::sign_in_refused(state.store.as_ref(), actor, reason, state.clock.now()).await
    {
        return ApiError::from(e).into_response();
    }
    tracing::info!(reason, "sign-in refused");
    let why = if reason == "no_account" {
        "Passkey does not know you yet. Talk to the Passkey bot in Teams first, then open the link again."
    } else {
        "Sign-in could not be completed."
    };
    refused_page(state.web.secure_cookies, next, why)
}

fn refused_page(secure: bool, next: &str, why: &str) -> Response {
    let mut response = page(
        StatusCode::FORBIDDEN,
        "Sign-in failed",
        "",
        &format!(
            "<h1>Sign-in failed</h1><p>{}</p><p><a href=\"/signin?next={}\">Sign in again</a></p>",
            escape(why),
            escape(&session::encode_query_value(next))
        ),
    );
    response.headers_mut().append(
        header::SET_COOKIE,
        clear_cookie(flow_cookie_name(secure), secure),
    );
    response
}

#[derive(Deserialize)]
struct SignOut {
    csrf: String,
}

/// `POST /signout`: forgets the session cookie in this browser.
async fn sign_out(
    State(state): State<IssuePageState>,
    signed_in: SignedInUser,
    headers: HeaderMap,
    Form(form): Form<SignOut>,
) -> Response {
    let web = &state.web;
    if session::check_origin(&headers, web).is_err()
        || !same_text(&form.csrf, &signed_in.session.csrf)
    {
        return ApiError::Forbidden("This page is out of date. Reload it and try again.".into())
            .into_response();
    }
    let mut response = message(
        StatusCode::OK,
        "Signed out",
        "You are signed out of Passkey in this browser.",
    );
    response.headers_mut().append(
        header::SET_COOKIE,
        clear_cookie(session_cookie_name(web.secure_cookies), web.secure_cookies),
    );
    response
}
