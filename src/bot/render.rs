//! Plain-text views of requests and lifecycle outcomes for chat. Nothing here ever sees a share
//! URL, token or OTP: the inputs are rows and use-case results, which carry none (INV-5).

use crate::cards::{retrieve_url, when};
use crate::domain::{RequestStatus, format_duration};
use crate::governance::lifecycle::{Change, Event, LifecycleError, NoticeKind};
use crate::store::{Record, Request};

/// One line per request: id, record, state and what matters about that state.
pub fn request_line(request: &Request, record_title: &str) -> String {
    let mut line = format!(
        "#{} `{}` — {}",
        request.id,
        record_title,
        crate::cards::status_words(request)
    );
    match request.status {
        RequestStatus::Approved | RequestStatus::Issued | RequestStatus::RenewalPending => {
            if let Some(end) = request.lease_expires_at {
                line.push_str(&format!(" until {}", when(end)));
            }
            line.push_str(&format!(
                ", {} of {} retrievals left",
                request.issuances_left(),
                request.max_issuances
            ));
        }
        RequestStatus::Pending => line.push_str(", waiting for approval"),
        RequestStatus::RequiresTriage => line.push_str(", waiting for an admin"),
        _ => {
            if let Some(reason) = &request.decision_reason {
                line.push_str(&format!(" ({reason})"));
            }
        }
    }
    line
}

/// What the person who acted sees.
pub fn change_text(change: &Change, base_url: &str) -> String {
    let r = &change.request;
    let title = &change.record.title;
    let reasons = if change.reasons.is_empty() {
        String::new()
    } else {
        format!("\n\nWhy: {}", change.reasons.join("; "))
    };
    let body = match change.event {
        Event::DeniedByPolicy => {
            format!("Request #{} for `{title}` was **denied** by policy.", r.id)
        }
        Event::Routed => format!(
            "Request #{} for `{title}` is waiting for approval. I'll tell you when it is decided.",
            r.id
        ),
        Event::Triaged => format!(
            "Request #{} for `{title}` needs an admin's decision; they have been told.",
            r.id
        ),
        Event::Approved
        | Event::BreakGlassApproved
        | Event::PreflightPassed
        | Event::PreflightDeferred
        | Event::Extended => approved_text(r, title, base_url, change.event),
        Event::ApprovalRecorded => format!(
            "Your approval of request #{} is recorded; more approvals are needed.",
            r.id
        ),
        Event::Denied => format!("Request #{} for `{title}` was **denied**.", r.id),
        Event::Unfulfillable => format!(
            "Request #{} for `{title}` was approved, but the vault cannot share this record, so it is **unfulfillable**.",
            r.id
        ),
        Event::Released => format!(
            "Request #{} released: access to `{title}` has ended and its links were removed.",
            r.id
        ),
        Event::Expired => format!("Request #{}: access to `{title}` has ended.", r.id),
        Event::Revoked => format!("Request #{}: access to `{title}` was revoked.", r.id),
        Event::ExtensionRequested => format!(
            "More time on request #{} was asked for; an approver will decide.",
            r.id
        ),
        Event::ExtensionDenied => format!("The extension of request #{} was refused.", r.id),
        Event::Escalated => format!("Request #{} was escalated to the admins.", r.id),
    };
    format!("{body}{reasons}")
}

/// What someone who acted on another person's request sees (an approver, an admin): the
/// outcome without the requester's retrieve link, which is the requester's alone.
pub fn change_text_for_decider(change: &Change) -> String {
    let r = &change.request;
    match change.event {
        Event::Approved
        | Event::BreakGlassApproved
        | Event::PreflightPassed
        | Event::PreflightDeferred
        | Event::Extended => {
            let verb = if change.event == Event::Extended {
                "extended"
            } else {
                "**approved**"
            };
            let until = r
                .lease_expires_at
                .map(|t| format!(" Access lasts until {}.", when(t)))
                .unwrap_or_default();
            format!(
                "Request #{} for `{}` is {verb}.{until} The requester has been told and retrieves it themselves.",
                r.id, change.record.title
            )
        }
        _ => change_text(change, ""),
    }
}

fn approved_text(r: &Request, title: &str, base_url: &str, event: Event) -> String {
    let head = match event {
        Event::BreakGlassApproved => format!(
            "**Break-glass**: request #{} for `{title}` is approved now and will be reviewed afterwards.",
            r.id
        ),
        Event::Extended => format!("Request #{} for `{title}` was extended.", r.id),
        _ => format!("Request #{} for `{title}` is **approved**.", r.id),
    };
    let until = r
        .lease_expires_at
        .map(|t| format!(" Access lasts until {}.", when(t)))
        .unwrap_or_default();
    let delay = if r.next_attempt_at.is_some() {
        " The vault is slow to answer; I'm checking again shortly."
    } else {
        ""
    };
    format!(
        "{head}{until}{delay}\n\nRetrieve it here (sign-in required; the link opens once): {}",
        retrieve_url(base_url, r.id)
    )
}

/// What someone told about a request hears.
pub fn notice_text(
    kind: NoticeKind,
    request: &Request,
    record: &Record,
    requester: &str,
    base_url: &str,
) -> String {
    let id = request.id;
    let title = &record.title;
    match kind {
        NoticeKind::ApprovalNeeded => format!(
            "{requester} asks for `{title}` ({}) for {}: “{}”.\n\nReply `approve {id}` or `deny {id} REASON`.",
            record.sensitivity,
            format_duration(time::Duration::seconds(request.requested_duration_secs)),
            request.justification
        ),
        NoticeKind::Reminder => format!(
            "Reminder: request #{id} from {requester} for `{title}` is still waiting for you (`approve {id}` / `deny {id} REASON`)."
        ),
        NoticeKind::TriageNeeded => format!(
            "Request #{id} from {requester} for `{title}` needs an admin: `admin triage` lists the queue."
        ),
        NoticeKind::BreakGlassUsed => format!(
            "**Break-glass used**: {requester} took `{title}` (request #{id}): “{}”. Review it afterwards.",
            request.justification
        ),
        NoticeKind::ExtensionNeeded => format!(
            "{requester} asks for {} more on `{title}` (request #{id}). Reply `approve {id}` or `deny {id} REASON`.",
            format_duration(time::Duration::seconds(
                request.renewal_duration_secs.unwrap_or(0)
            ))
        ),
        NoticeKind::VaultNeedsOperator => format!(
            "The vault bridge needs an operator (request #{id}, `{title}`): check Commander's login. `admin health` shows the state."
        ),
        NoticeKind::ExpiringSoon => format!(
            "Your access to `{title}` (request #{id}) ends soon. Reply `extend {id} 1h` for more time."
        ),
        NoticeKind::StatusChanged => match request.status {
            RequestStatus::Approved | RequestStatus::Issued => {
                approved_text(request, title, base_url, Event::Approved)
            }
            _ => format!("Update: {}", request_line(request, title)),
        },
    }
}

/// A refusal as the person sees it. A database failure is not a refusal: the caller handles it.
pub fn refusal_text(e: &LifecycleError) -> String {
    e.to_string()
}
