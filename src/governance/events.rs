//! What the edges see happen that the audit trail must hold, though no other use case acts on
//! it: the bot installed or removed, a refused admin command, a sign-in and a refused one,
//! someone opening another person's issuance, a rate limit, a Connector host refused. The edges
//! call these instead of writing audit rows themselves (#16.2): each event's action name and
//! detail fields are decided here, once.

use crate::domain::Timestamp;
use crate::store::{NewAuditEvent, Store, StoreError};
use serde_json::{Value, json};

/// The bot was added to a conversation (`conversationUpdate` naming the bot).
pub async fn bot_installed(
    store: &dyn Store,
    actor: String,
    conversation_type: &str,
    at: Timestamp,
) -> Result<(), StoreError> {
    let event = NewAuditEvent::new(actor, "BOT_INSTALLED", at)
        .detail(json!({ "conversation_type": conversation_type }));
    store.append_audit(&event).await.map(drop)
}

/// Teams reported an installation change: removed (`remove…`) or anything else.
pub async fn bot_installation_changed(
    store: &dyn Store,
    actor: String,
    action: &str,
    at: Timestamp,
) -> Result<(), StoreError> {
    let name = if action.starts_with("remove") {
        "BOT_UNINSTALLED"
    } else {
        "BOT_INSTALL_UPDATED"
    };
    let event = NewAuditEvent::new(actor, name, at).detail(json!({ "action": action }));
    store.append_audit(&event).await.map(drop)
}

/// Someone who is not an admin tried an admin command: who, and which (`detail`).
pub async fn admin_command_refused(
    store: &dyn Store,
    actor: String,
    detail: Value,
    at: Timestamp,
) -> Result<(), StoreError> {
    let event =
        NewAuditEvent::new(actor, "ACCESS_DENIED_INSUFFICIENT_PERMISSION", at).detail(detail);
    store.append_audit(&event).await.map(drop)
}

/// A person asked for an issuance that is not theirs: `record_id` of the request when it exists,
/// `None` when there is no such request (the trail tells the two apart; the person cannot).
pub async fn issuance_not_yours(
    store: &dyn Store,
    actor: String,
    request_id: i64,
    record_id: Option<i64>,
    at: Timestamp,
) -> Result<(), StoreError> {
    let event = NewAuditEvent::new(actor, "ISSUANCE_NOT_YOURS", at);
    let event = match record_id {
        Some(record_id) => event.request(request_id).record(record_id),
        None => event.detail(json!({ "request_id": request_id, "exists": false })),
    };
    store.append_audit(&event).await.map(drop)
}

/// The first refusal of a rate-limit window on an issuance endpoint.
pub async fn issuance_rate_limited(
    store: &dyn Store,
    actor: String,
    request_id: Option<i64>,
    detail: Value,
    at: Timestamp,
) -> Result<(), StoreError> {
    let mut event = NewAuditEvent::new(actor, "ISSUANCE_RATE_LIMITED", at).detail(detail);
    event.request_id = request_id;
    store.append_audit(&event).await.map(drop)
}

/// A person signed in to the issuance page (`method`: entra or dev; `tenant_id` for Entra).
pub async fn signed_in(
    store: &dyn Store,
    actor: String,
    method: &str,
    tenant_id: Option<&str>,
    at: Timestamp,
) -> Result<(), StoreError> {
    let event = NewAuditEvent::new(actor, "SIGNED_IN", at)
        .detail(json!({ "method": method, "tenant_id": tenant_id }));
    store.append_audit(&event).await.map(drop)
}

/// A sign-in was refused, and why (a reason code, never a token).
pub async fn sign_in_refused(
    store: &dyn Store,
    actor: String,
    reason: &str,
    at: Timestamp,
) -> Result<(), StoreError> {
    let event = NewAuditEvent::new(actor, "SIGNIN_REFUSED", at).detail(json!({ "reason": reason }));
    store.append_audit(&event).await.map(drop)
}

/// A service URL the bot refused to send its token to. `direction`: `inbound` (an activity) or
/// `outbound` (a call about to be made).
pub async fn connector_host_refused(
    store: &dyn Store,
    actor: &str,
    host: &str,
    reason: &str,
    direction: &str,
    at: Timestamp,
) -> Result<(), StoreError> {
    let event = NewAuditEvent::new(actor, "CONNECTOR_HOST_REFUSED", at).detail(json!({
        "host": host,
        "reason": reason,
        "direction": direction,
    }));
    store.append_audit(&event).await.map(drop)
}
