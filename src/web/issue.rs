//! The issuance page and its JSON endpoints. The page is server-rendered HTML with one script of
//! our own (`/static/issue.js`); the script asks for an issuance token with a signed-in,
//! CSRF-checked POST, keeps it in memory only, and exchanges it. The share URL comes back in that
//! response body and nowhere else (INV-5): never in a URL, a cookie, a log line or the database.
//!
//! When the request needs a second factor the exchange is two-step: `issue` checks the token
//! without using it and starts an OTP challenge bound to the token's hash (a code texted, or the
//! authenticator app's); `issue/verify` takes the challenge id and the code and, when right, uses
//! that token and no other. The page also enrolls an authenticator app (TOTP), but only with proof
//! of the factor on file (a code texted to the person's number) or an admin's invitation: a
//! signed-in session alone never changes the second factor.
//!
//! Routes: `GET /requests/{id}/issue` (the page), `POST /api/requests/{id}/issuance-token`,
//! `POST /api/requests/{id}/issue`, `POST /api/requests/{id}/issue/verify`,
//! `POST /api/requests/{id}/issue/resend`, `POST /api/totp/proof`, `POST /api/totp/enroll`,
//! `POST /api/totp/confirm`, `POST /api/totp/remove`,
//! `GET /static/issue.js`, `GET /static/passkey.css`, `GET /favicon.ico`.

use super::html::{escape, message, page, sign_out_form};
use super::rate_limit::Refused;
use super::session::{CheckedPost, SignedInUser};
use super::state::IssuePageState;
use crate::error::ApiError;
use crate::governance::events;
use crate::governance::lifecycle::{ClientInfo, LifecycleError, Retrieved, actor};
use crate::otp::{ChallengeStarted, FactorProofInput, OtpError};
use crate::store::{Request, User};
use axum::extract::{FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use secrecy::SecretString;
use serde::Deserialize;
use serde_json::{Value, json};
use std::net::IpAddr;
use uuid::Uuid;

const ISSUE_JS: &str = include_str!("static/issue.js");
const PASSKEY_CSS: &str = include_str!("static/passkey.css");
/// The Teams app's colour icon (192×192 PNG, 2 KB): the browser tab shows the same mark as Teams.
const FAVICON_PNG: &[u8] = include_bytes!("../../manifest/color.png");

pub fn router() -> Router<IssuePageState> {
    Router::new()
        .route("/", get(home))
        .route("/requests/{id}/issue", get(issue_page))
        .route("/api/requests/{id}/issuance-token", post(mint_token))
        .route("/api/requests/{id}/issue", post(exchange))
        .route("/api/requests/{id}/issue/verify", post(verify))
        .route("/api/requests/{id}/issue/resend", post(resend))
        .route("/api/totp/proof", post(begin_factor_change))
        .route("/api/totp/enroll", post(enroll_totp))
        .route("/api/totp/confirm", post(confirm_totp))
        .route("/api/totp/remove", post(remove_totp))
        .route(
            "/static/issue.js",
            get(|| async { asset("text/javascript; charset=utf-8", ISSUE_JS) }),
        )
        .route(
            "/static/passkey.css",
            get(|| async { asset("text/css; charset=utf-8", PASSKEY_CSS) }),
        )
        .route("/favicon.ico", get(favicon))
}

/// Browsers ask for `/favicon.ico` on every page whatever the HTML says. A real icon, cacheable
/// for a day (it is public and the same for everyone), instead of a 404 in every page load's log.
async fn favicon() -> Response {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static("image/png")),
            (
                header::CACHE_CONTROL,
                HeaderValue::from_static("public, max-age=86400"),
            ),
        ],
        FAVICON_PNG,
    )
        .into_response()
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [(header::CONTENT_TYPE, HeaderValue::from_static(content_type))],
        body,
    )
        .into_response()
}

async fn home() -> Response {
    message(
        StatusCode::OK,
        "Passkey",
        "Passkey gives just-in-time access to vault credentials. Ask the Passkey bot in Teams; when a request is approved, open the link it sends you to retrieve the credential here.",
    )
}

/// Where a call came from: the client address (rate limits, IssuanceEvent) and user agent.
pub struct Client {
    pub ip: Option<IpAddr>,
    pub user_agent: Option<String>,
}

impl FromRequestParts<IssuePageState> for Client {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &IssuePageState,
    ) -> Result<Self, Self::Rejection> {
        Ok(Client {
            ip: state.web.client_ip(&parts.headers, &parts.extensions),
            user_agent: parts
                .headers
                .get(header::USER_AGENT)
                .and_then(|v| v.to_str().ok())
                .map(|v| v.chars().take(256).collect()),
        })
    }
}

impl Client {
    pub fn info(&self) -> ClientInfo {
        ClientInfo {
            ip: self.ip.map(|ip| ip.to_string()),
            user_agent: self.user_agent.clone(),
        }
    }
}

/// `GET /requests/{id}/issue`: the requester's page; anyone else is told it is not theirs.
async fn issue_page(
    State(state): State<IssuePageState>,
    Path(id): Path<i64>,
    signed_in: SignedInUser,
) -> Response {
    let SignedInUser { user, session } = signed_in;
    // Someone else's request and one that does not exist get the same page, so request numbers
    // cannot be probed from here (#14.7); only the audit trail tells them apart.
    let request = match state.store.request_by_id(id).await {
        Ok(Some(r)) if r.requester_id == user.id => r,
        Ok(found) => {
            if let Err(e) = events::issuance_not_yours(
                state.store.as_ref(),
                actor(&user),
                id,
                found.as_ref().map(|r| r.record_id),
                state.clock.now(),
            )
            .await
            {
                return ApiError::from(e).into_response();
            }
            // With a sign-out, so someone signed in as the wrong account can switch (#18.9).
            return page(
                StatusCode::FORBIDDEN,
                "Not yours",
                "",
                &format!(
                    "<h1>Not yours</h1><p>Request #{id} is not yours. Only the person who asked for it can \
                     retrieve the credential.</p><p>Signed in as {name}. If this is the wrong account, \
                     sign out and sign in as the requester.</p>{signout}",
                    name = escape(&user.display_name),
                    signout = sign_out_form(&session.csrf),
                ),
            );
        }
        Err(e) => return ApiError::from(e).into_response(),
    };
    let record_title = match state.store.record_by_id(request.record_id).await {
        Ok(Some(r)) => r.title,
        Ok(None) => format!("record {}", request.record_id),
        Err(e) => return ApiError::from(e).into_response(),
    };
    let needs_second_factor = match state.lifecycle.second_factor_required(&request).await {
        Ok(needed) => needed,
        Err(e) => return lifecycle_error(e).into_response(),
    };
    let factors = if needs_second_factor {
        match state.otp.factors(&user).await {
            Ok(f) => Some(f),
            Err(e) => return otp_error(e).into_response(),
        }
    } else {
        None
    };
    // The page's times in the zone the person's Teams client last reported (#18.6).
    let zone = crate::governance::conversations::zone_of(state.store.as_ref(), user.id).await;
    crate::domain::for_reader(zone, async {
        render_page(
            &state,
            &user,
            &request,
            &record_title,
            &session.csrf,
            factors.as_ref(),
        )
    })
    .await
}

fn render_page(
    state: &IssuePageState,
    user: &User,
    request: &Request,
    title: &str,
    csrf: &str,
    factors: Option<&crate::otp::SecondFactors>,
) -> Response {
    let now = state.clock.now();
    let live = request.status.has_live_lease() && request.lease_expires_at.is_some_and(|e| e > now);
    let left = request.issuances_left();
    // What the page says before the button (the second factor it will ask for), and the
    // authenticator set-up, which comes after the retrieval step, not before it (#18.9).
    let (second_factor, setup) = match factors {
        None => (String::new(), String::new()),
        Some(f) if f.totp_confirmed => (
            "<p>This record needs a second factor: after you press the button, \
            enter the current code from your authenticator app.</p>"
                .to_string(),
            String::new(),
        ),
        Some(f) => {
            let sms = match &f.phone_hint {
                Some(hint) => format!(
                    "<p>This record needs a second factor: after you press the button, a code is texted to {}.</p>",
                    escape(hint)
                ),
                None => "<p>This record needs a second factor, and you have none yet: set up an authenticator \
                    app below first (or ask an admin to add your mobile number).</p>"
                    .to_string(),
            };
            // Setting up the app needs proof of the factor on file (a texted code) or an admin's
            // invitation: a session alone never changes the second factor.
            let start = match (&f.phone_hint, f.invitation_open) {
                (Some(hint), _) => format!(
                    "<p><button type=\"button\" id=\"totp-start\" data-proof=\"texted\">Set up an authenticator app</button></p>\
                     <form id=\"totp-proof-form\" hidden><p>To confirm it is you, we texted a code to {}.</p>\
                     <p><label for=\"totp-proof-code\">Code from the text</label> \
                     <input id=\"totp-proof-code\" name=\"code\" inputmode=\"numeric\" autocomplete=\"one-time-code\" pattern=\"[0-9]{{6}}\" maxlength=\"6\" required> \
                     <button type=\"submit\">Continue</button></p></form>",
                    escape(hint)
                ),
                (None, true) => "<p>An admin invited you to set up an authenticator app.</p>\
                     <p><button type=\"button\" id=\"totp-start\" data-proof=\"invitation\">Set up an authenticator app</button></p>"
                    .to_string(),
                (None, false) => "<p>To set one up without a phone number, ask a Passkey admin for an invitation \
                     (they type <code>admin totp-invite</code> and your address), then reload this page.</p>"
                    .to_string(),
            };
            let setup = format!(
                "<section id=\"totp-setup\" aria-labelledby=\"totp-title\"><h2 id=\"totp-title\">Authenticator app</h2>\
                 <p>An authenticator app (Microsoft Authenticator, or any TOTP app) works without your phone number.</p>\
                 {start}\
                 <div id=\"totp-enroll\" hidden><p>Scan this QR code with the app, or type the key in by hand.</p>\
                 <p><img id=\"totp-qr\" alt=\"QR code to add Passkey to your authenticator app\" width=\"200\" height=\"200\"></p>\
                 <p><label for=\"totp-key\">Key (for typing in)</label> \
                 <input id=\"totp-key\" class=\"wide key\" readonly spellcheck=\"false\" autocomplete=\"off\"></p>\
                 <form id=\"totp-form\"><p><label for=\"totp-code\">First code from the app</label> \
                 <input id=\"totp-code\" name=\"code\" inputmode=\"numeric\" autocomplete=\"one-time-code\" pattern=\"[0-9]{{6}}\" maxlength=\"6\" required> \
                 <button type=\"submit\">Confirm</button></p></form></div></section>"
            );
            (sms, setup)
        }
    };
    let action = if !live {
        // A tap on an old link: say what became of the request, in words (#18.9).
        format!(
            "<p class=\"notice warning\" id=\"state\">{} There is nothing to retrieve.</p>",
            escape(&state_in_words(request, now))
        )
    } else if left == 0 {
        "<p class=\"notice\">No retrievals are left on this request.</p>".to_string()
    } else {
        format!(
            "{second_factor}<p><button type=\"button\" id=\"retrieve\" class=\"primary\">Show the one-time link</button></p>\
             <form id=\"code-form\" hidden><p id=\"code-hint\"></p><p><label for=\"code\">Code</label> \
             <input id=\"code\" name=\"code\" inputmode=\"numeric\" autocomplete=\"one-time-code\" pattern=\"[0-9]{{6}}\" maxlength=\"6\" required aria-describedby=\"code-hint\"> \
             <button type=\"submit\" class=\"primary\">Verify</button> <button type=\"button\" id=\"resend\">Send a new code</button></p></form>\
             <section id=\"result\" hidden tabindex=\"-1\" aria-labelledby=\"result-title\"><h2 id=\"result-title\">Your one-time link</h2>\
             <p><strong>This link opens once.</strong> Open it or copy it now: it is not shown again and is gone when you leave this page.</p>\
             <p><label for=\"share-url\">Link</label><br><input id=\"share-url\" class=\"wide\" readonly></p>\
             <p><button type=\"button\" id=\"copy\">Copy</button> <a id=\"open\" href=\"#\" target=\"_blank\" rel=\"noreferrer noopener\">Open</a></p>\
             <p id=\"result-left\"></p></section>{setup}"
        )
    };
    // Only a live lease has an end ahead and retrievals to count.
    let summary = if live {
        let lease = request
            .lease_expires_at
            .map(|e| format!(" · lease ends {}", crate::cards::when(e)))
            .unwrap_or_default();
        format!(
            "<p>Request #{id}{lease}. Signed in as {name}.</p>\
             <p id=\"left\">{left} of {max} retrievals left.</p>",
            id = request.id,
            name = escape(&user.display_name),
            max = request.max_issuances,
        )
    } else {
        format!(
            "<p>Request #{id}. Signed in as {name}.</p>",
            id = request.id,
            name = escape(&user.display_name),
        )
    };
    let body = format!(
        "<div id=\"issue\" data-request-id=\"{id}\"><h1>Retrieve {title}</h1>\
         {summary}{action}\
         <p id=\"status\" role=\"status\" aria-live=\"polite\"></p>\
         <p id=\"error\" role=\"alert\" class=\"error\"></p></div>{signout}",
        id = request.id,
        title = escape(title),
        signout = sign_out_form(csrf),
    );
    let head = format!(
        "<meta name=\"csrf-token\" content=\"{}\"><script src=\"/static/issue.js\" defer></script>",
        escape(csrf)
    );
    page(StatusCode::OK, &format!("Retrieve {title}"), &head, &body)
}

/// What became of a request with no live lease, in words: released, denied, expired or revoked
/// (an admin's revocation and a lost permission end the lease as EXPIRED, with the reason saying
/// which).
fn state_in_words(request: &Request, now: crate::domain::Timestamp) -> String {
    use crate::domain::RequestStatus::*;
    let reason = request.decision_reason.as_deref().unwrap_or_default();
    let ended = |what: &str| match request.lease_expires_at {
        Some(end) if end <= now => format!("{what} Its access ended {}.", crate::cards::when(end)),
        _ => what.to_string(),
    };
    match request.status {
        Released => "You released this request: its access has ended.".to_string(),
        Denied => "This request was denied.".to_string(),
        Expired if reason.starts_with("revoked by an admin") => {
            "An admin revoked this request's access.".to_string()
        }
        Expired if reason.contains("no longer has access") => {
            "This request's access was revoked: you no longer have access to the record's vault folder."
                .to_string()
        }
        Expired if request.lease_started_at.is_none() => {
            "This request expired: nobody decided it in time.".to_string()
        }
        Expired | Approved | Issued | RenewalPending => ended("This request has expired."),
        Pending | RequiresTriage => "This request is waiting for approval.".to_string(),
        Unfulfillable => {
            "This request was approved, but the vault could not provide the credential.".to_string()
        }
    }
}

/// The base32 secret of an `otpauth://` URI in groups of four ("ABCD EFGH …"), for typing into
/// an authenticator app by hand; empty when the URI has none.
fn typed_key(otpauth_uri: &str) -> String {
    let secret = otpauth_uri
        .split_once('?')
        .map(|(_, query)| query)
        .unwrap_or_default()
        .split('&')
        .find_map(|pair| pair.strip_prefix("secret="))
        .unwrap_or_default();
    let letters: Vec<char> = secret
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .map(|c| c.to_ascii_uppercase())
        .collect();
    letters
        .chunks(4)
        .map(|group| group.iter().collect::<String>())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Spends one call from the person's and the address's allowance, or refuses with 429 (the
/// first refusal of a run is audited).
async fn rate_limit(
    state: &IssuePageState,
    user: &User,
    request_id: Option<i64>,
    client: &Client,
    endpoint: &str,
) -> Result<(), ApiError> {
    match state.web.limiter.check(user.id, client.ip) {
        Ok(()) => Ok(()),
        Err(Refused {
            scope,
            retry_after_secs,
            first,
        }) => {
            if first {
                events::issuance_rate_limited(
                    state.store.as_ref(),
                    actor(user),
                    request_id,
                    json!({ "scope": scope.as_str(), "endpoint": endpoint, "retry_after_secs": retry_after_secs }),
                    state.clock.now(),
                )
                .await?;
            }
            Err(ApiError::too_many(retry_after_secs))
        }
    }
}

/// The person's answer for a refused use case.
pub fn lifecycle_error(e: LifecycleError) -> ApiError {
    let text = e.to_string();
    match e {
        LifecycleError::UnknownRequest(_) => ApiError::NotFound,
        LifecycleError::NotYours(_)
        | LifecycleError::NotAdmin
        | LifecycleError::SecondFactorRequired => ApiError::Forbidden(text),
        LifecycleError::VaultUnavailable => ApiError::TryAgain(text),
        LifecycleError::Store(e) => e.into(),
        LifecycleError::BadInput(_) | LifecycleError::Record(_) => ApiError::BadRequest(text),
        LifecycleError::TokenMismatch
        | LifecycleError::NoRetrievalsLeft(_)
        | LifecycleError::RetrievalInProgress(_)
        | LifecycleError::WrongState { .. }
        | LifecycleError::AlreadyDecided { .. }
        | LifecycleError::AlreadyOpen(_)
        | LifecycleError::AlreadyExtended(_)
        | LifecycleError::Refused(_)
        | LifecycleError::VaultRefused(_) => ApiError::Conflict(text),
    }
}

/// `POST /api/requests/{id}/issuance-token` → `{token, expires_at, retrievals_left}`: the token
/// exists in this response and the page's memory only.
async fn mint_token(
    State(state): State<IssuePageState>,
    Path(id): Path<i64>,
    CheckedPost(signed_in): CheckedPost,
    client: Client,
) -> Result<Json<Value>, ApiError> {
    let user = &signed_in.user;
    rate_limit(&state, user, Some(id), &client, "issuance-token").await?;
    let minted = state
        .lifecycle
        .mint_issuance_token(user, id)
        .await
        .map_err(lifecycle_error)?;
    use secrecy::ExposeSecret;
    Ok(Json(json!({
        "token": minted.token.expose_secret(),
        "expires_at": minted.expires_at.to_fixed_text(),
        "retrievals_left": minted.issuances_left,
    })))
}

#[derive(Deserialize)]
struct ExchangeBody {
    token: SecretString,
}

/// `POST /api/requests/{id}/issue {token}` → the share, or — when the request needs a second
/// factor — a challenge bound to this token: `{challenge_id, channel, destination_hint, …}`.
async fn exchange(
    State(state): State<IssuePageState>,
    Path(id): Path<i64>,
    CheckedPost(signed_in): CheckedPost,
    client: Client,
    Json(body): Json<ExchangeBody>,
) -> Result<Json<Value>, ApiError> {
    let user = &signed_in.user;
    rate_limit(&state, user, Some(id), &client, "issue").await?;
    let needs_second_factor = match state.store.request_by_id(id).await? {
        Some(request) => state
            .lifecycle
            .second_factor_required(&request)
            .await
            .map_err(lifecycle_error)?,
        None => false,
    };
    if needs_second_factor {
        let (request, token_hash) = state
            .lifecycle
            .check_issuance_token(user, id, &body.token)
            .await
            .map_err(lifecycle_error)?;
        let started = state
            .otp
            .begin(user, &request, &token_hash)
            .await
            .map_err(otp_error)?;
        return Ok(Json(challenge_body(&started)));
    }
    let retrieved = state
        .lifecycle
        .exchange_token(user, id, &body.token, client.info())
        .await
        .map_err(lifecycle_error)?;
    Ok(Json(share_body(&retrieved)))
}

#[derive(Deserialize)]
struct VerifyBody {
    challenge_id: Uuid,
    code: SecretString,
}

/// `POST /api/requests/{id}/issue/verify {challenge_id, code}` → the share. A right code uses the
/// challenge up and then the token it was bound to; a wrong one says how many tries are left.
async fn verify(
    State(state): State<IssuePageState>,
    Path(id): Path<i64>,
    CheckedPost(signed_in): CheckedPost,
    client: Client,
    Json(body): Json<VerifyBody>,
) -> Result<Json<Value>, ApiError> {
    use secrecy::ExposeSecret;
    let user = &signed_in.user;
    rate_limit(&state, user, Some(id), &client, "issue/verify").await?;
    let verified = state
        .otp
        .verify(user, body.challenge_id, body.code.expose_secret())
        .await
        .map_err(otp_error)?;
    if verified.request_id != id {
        return Err(ApiError::BadRequest(
            "That code belongs to another request.".into(),
        ));
    }
    let retrieved = state
        .lifecycle
        .exchange_proven(user, id, &verified.proof, client.info())
        .await
        .map_err(lifecycle_error)?;
    Ok(Json(share_body(&retrieved)))
}

#[derive(Deserialize)]
struct ResendBody {
    challenge_id: Uuid,
}

/// `POST /api/requests/{id}/issue/resend {challenge_id}` → the challenge with a fresh code sent.
async fn resend(
    State(state): State<IssuePageState>,
    Path(id): Path<i64>,
    CheckedPost(signed_in): CheckedPost,
    client: Client,
    Json(body): Json<ResendBody>,
) -> Result<Json<Value>, ApiError> {
    let user = &signed_in.user;
    rate_limit(&state, user, Some(id), &client, "issue/resend").await?;
    let started = state
        .otp
        .resend(user, body.challenge_id)
        .await
        .map_err(otp_error)?;
    Ok(Json(challenge_body(&started)))
}

#[derive(Deserialize)]
struct FactorChangeBody {
    change: crate::domain::FactorChange,
}

/// `POST /api/totp/proof {change: "ENROLL"|"REMOVE"}` → `{proof_id, destination_hint, expires_at}`:
/// a code texted to the number on file, the proof a change to the authenticator app needs.
async fn begin_factor_change(
    State(state): State<IssuePageState>,
    CheckedPost(signed_in): CheckedPost,
    client: Client,
    Json(body): Json<FactorChangeBody>,
) -> Result<Json<Value>, ApiError> {
    let user = &signed_in.user;
    rate_limit(&state, user, None, &client, "totp/proof").await?;
    let started = state
        .otp
        .begin_factor_change(user, body.change)
        .await
        .map_err(otp_error)?;
    Ok(Json(serde_json::to_value(&started).unwrap_or(Value::Null)))
}

/// The proof a factor change comes with: `{proof_id, code}` (the texted code) or
/// `{invitation: true}` (an admin's open invitation; set-up only). Anything else is no proof.
#[derive(Deserialize)]
struct ProofBody {
    proof_id: Option<Uuid>,
    code: Option<SecretString>,
    #[serde(default)]
    invitation: bool,
}

impl ProofBody {
    fn into_proof(self) -> Result<FactorProofInput, ApiError> {
        match (self.proof_id, self.code, self.invitation) {
            (Some(proof_id), Some(code), false) => {
                Ok(FactorProofInput::TextedCode { proof_id, code })
            }
            (None, None, true) => Ok(FactorProofInput::Invitation),
            _ => Err(otp_error(OtpError::ProofRequired)),
        }
    }
}

/// `POST /api/totp/enroll {proof_id, code} | {invitation: true}` → `{qr, key_uri, key}`: the new
/// authenticator secret, shown once; `key` is the base32 secret in groups of four, for typing in.
async fn enroll_totp(
    State(state): State<IssuePageState>,
    CheckedPost(signed_in): CheckedPost,
    client: Client,
    Json(body): Json<ProofBody>,
) -> Result<Json<Value>, ApiError> {
    use base64::Engine as _;
    use secrecy::ExposeSecret;
    let user = &signed_in.user;
    rate_limit(&state, user, None, &client, "totp/enroll").await?;
    let proof = body.into_proof()?;
    let enrollment = state
        .otp
        .enroll_totp(user, &proof, &client.info())
        .await
        .map_err(otp_error)?;
    let qr = format!(
        "data:image/svg+xml;base64,{}",
        base64::engine::general_purpose::STANDARD.encode(enrollment.qr_svg.as_bytes())
    );
    let uri = enrollment.otpauth_uri.expose_secret();
    Ok(Json(
        json!({ "qr": qr, "key_uri": uri, "key": typed_key(uri) }),
    ))
}

#[derive(Deserialize)]
struct ConfirmBody {
    code: SecretString,
}

/// `POST /api/totp/confirm {code}`: the first code from the app confirms the enrollment.
async fn confirm_totp(
    State(state): State<IssuePageState>,
    CheckedPost(signed_in): CheckedPost,
    client: Client,
    Json(body): Json<ConfirmBody>,
) -> Result<Json<Value>, ApiError> {
    use secrecy::ExposeSecret;
    let user = &signed_in.user;
    rate_limit(&state, user, None, &client, "totp/confirm").await?;
    state
        .otp
        .confirm_totp(user, body.code.expose_secret(), &client.info())
        .await
        .map_err(otp_error)?;
    Ok(Json(json!({ "confirmed": true })))
}

/// `POST /api/totp/remove {proof_id, code}` → `{removed}`: the person's own app goes, with a code
/// texted to the number on file as proof.
async fn remove_totp(
    State(state): State<IssuePageState>,
    CheckedPost(signed_in): CheckedPost,
    client: Client,
    Json(body): Json<ProofBody>,
) -> Result<Json<Value>, ApiError> {
    let user = &signed_in.user;
    rate_limit(&state, user, None, &client, "totp/remove").await?;
    let proof = body.into_proof()?;
    let removed = state
        .otp
        .remove_totp(user, &proof, &client.info())
        .await
        .map_err(otp_error)?;
    Ok(Json(json!({ "removed": removed })))
}

/// The challenge as the page reads it: `{challenge_id, channel: "sms"|"totp", destination_hint,
/// expires_at, resend_after}`.
fn challenge_body(c: &ChallengeStarted) -> Value {
    serde_json::to_value(c).unwrap_or(Value::Null)
}

/// The person's answer for a refused second-factor step.
pub fn otp_error(e: OtpError) -> ApiError {
    let text = e.to_string();
    match e {
        OtpError::WrongCode { .. }
        | OtpError::CodeNotAccepted
        | OtpError::Locked
        | OtpError::NotYours
        | OtpError::ProofRequired
        | OtpError::NoInvitation => ApiError::Forbidden(text),
        OtpError::Contended => ApiError::TooManyRequests {
            retry_after_secs: 1,
            message: text,
        },
        OtpError::ResendTooSoon { retry_after_secs }
        | OtpError::TooManyFailures { retry_after_secs } => ApiError::TooManyRequests {
            retry_after_secs,
            message: text,
        },
        OtpError::SendFailed => ApiError::TryAgain(text),
        OtpError::TextingNotWorking => ApiError::NeedsAdmin(text),
        OtpError::NoPhoneOrAuthenticator
        | OtpError::Expired
        | OtpError::AlreadyUsed
        | OtpError::NoMoreResends
        | OtpError::AlreadyEnrolled
        | OtpError::NotEnrolled
        | OtpError::NoPhoneOnFile => ApiError::Conflict(text),
        OtpError::InvalidPhoneNumber
        | OtpError::UnknownUser
        | OtpError::InvalidInput(_)
        | OtpError::ProofForAnotherChange => ApiError::BadRequest(text),
        OtpError::Crypto(e) => ApiError::internal(e),
        OtpError::Store(e) => e.into(),
    }
}

/// The success body: the URL, once, and what is left.
pub fn share_body(r: &Retrieved) -> Value {
    json!({
        "share_url": r.url.expose(),
        "expires_at": r.expires_at.to_fixed_text(),
        "retrievals_left": (r.max_issuances - r.issuance_count).max(0),
        "max": r.max_issuances,
    })
}

#[cfg(test)]
mod tests {
    use super::{PASSKEY_CSS, typed_key};

    #[test]
    fn the_key_for_typing_in_is_the_base32_secret_in_groups_of_four() {
        let uri = "otpauth://totp/Passkey:alice%40contoso.example?secret=JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP&issuer=Passkey&digits=6";
        assert_eq!(typed_key(uri), "JBSW Y3DP EHPK 3PXP JBSW Y3DP EHPK 3PXP");
        assert!(!typed_key(uri).contains("otpauth"));
        assert_eq!(
            typed_key("otpauth://totp/x?issuer=P&secret=abcdefg"),
            "ABCD EFG"
        );
        assert_eq!(typed_key("otpauth://totp/x?issuer=P"), "");
    }

    /// sRGB relative luminance of `#rgb` or `#rrggbb` (WCAG 2.x).
    fn luminance(hex: &str) -> f64 {
        let hex = hex.trim_start_matches('#');
        let hex: String = if hex.len() == 3 {
            hex.chars().flat_map(|c| [c, c]).collect()
        } else {
            hex.to_string()
        };
        let channel = |i: usize| {
            let c = f64::from(u8::from_str_radix(&hex[i..i + 2], 16).unwrap()) / 255.0;
            if c <= 0.04045 {
                c / 12.92
            } else {
                ((c + 0.055) / 1.055).powf(2.4)
            }
        };
        0.2126 * channel(0) + 0.7152 * channel(2) + 0.0722 * channel(4)
    }

    fn contrast(a: &str, b: &str) -> f64 {
        let (la, lb) = (luminance(a), luminance(b));
        (la.max(lb) + 0.05) / (la.min(lb) + 0.05)
    }

    /// The stylesheet's rules as (selector, color, background) with the hex colours it sets.
    fn rules() -> Vec<(String, Option<String>, Option<String>)> {
        let mut out = Vec::new();
        for rule in PASSKEY_CSS.split('}') {
            let Some((selector, body)) = rule.split_once('{') else {
                continue;
            };
            let selector = selector
                .rsplit("*/")
                .next()
                .unwrap_or_default()
                .trim()
                .to_string();
            let mut color = None;
            let mut background = None;
            for declaration in body.split(';') {
                let Some((property, value)) = declaration.split_once(':') else {
                    continue;
                };
                let hex = value
                    .split_whitespace()
                    .find(|w| w.starts_with('#'))
                    .map(str::to_string);
                match property.trim() {
                    "color" => color = hex,
                    "background" | "background-color" => background = hex,
                    _ => {}
                }
            }
            out.push((selector, color, background));
        }
        out
    }

    #[test]
    fn every_text_colour_on_the_page_meets_wcag_aa() {
        let rules = rules();
        let of = |selector: &str| {
            rules
                .iter()
                .find(|(s, _, _)| s == selector)
                .unwrap_or_else(|| panic!("no rule {selector}"))
                .clone()
        };
        let (_, body_color, body_background) = of("body");
        let body_color = body_color.expect("body sets its text colour");
        let body_background = body_background.expect("body sets its background");
        let mut checked = 0;
        for (selector, color, background) in &rules {
            if color.is_none() && background.is_none() {
                continue;
            }
            // A state (":hover") keeps its element's colours unless it sets its own; `.a.b`
            // inherits from `.a`.
            let base = selector.split(':').next().unwrap_or_default();
            let parent = rules
                .iter()
                .filter(|(s, _, _)| {
                    s != selector && (s == base || base.starts_with(&format!("{s}.")))
                })
                .max_by_key(|(s, _, _)| s.len())
                .cloned();
            let text = color
                .clone()
                .or_else(|| parent.as_ref().and_then(|p| p.1.clone()))
                .unwrap_or_else(|| body_color.clone());
            let under = background
                .clone()
                .or_else(|| parent.as_ref().and_then(|p| p.2.clone()))
                .unwrap_or_else(|| body_background.clone());
            let ratio = contrast(&text, &under);
            assert!(
                ratio >= 4.5,
                "{selector}: {text} on {under} is {ratio:.2}:1, under WCAG AA's 4.5:1"
            );
            checked += 1;
        }
        assert!(checked >= 8, "only {checked} rules with colours");
        // The warning shown for a tap on an old link, checked by name.
        let (_, warning, warning_bg) = of(".notice.warning");
        assert!(contrast(&warning.unwrap(), &warning_bg.unwrap()) >= 4.5);
        // The arithmetic itself: black on white is 21:1, grey #777 on white under 4.5.
        assert!((contrast("#000", "#fff") - 21.0).abs() < 0.01);
        assert!(contrast("#777777", "#ffffff") < 4.5);
    }
}
