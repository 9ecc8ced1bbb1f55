//! The request lifecycle: submit, approve/deny, start lease (with the vault preflight), retrieve
//! (mint and exchange an issuance token), release, expire, revoke, extend, triage, break-glass.
//!
//! Every use case runs without HTTP or Teams and returns what happened — the request as it now is,
//! the event, the policy's reasons, and who should hear about it ([`Notice`]) — so the edges (bot,
//! web page, scheduler) render and deliver. Every state change goes through the store's
//! conditional writes with its audit event and decision trace in the same transaction (INV-3).
//!
//! Decisions taken here (also in docs/ARCHITECTURE.md):
//! - An auto-approved request is written PENDING and then approved, two transactions, so the
//!   approval has its own audit event and trace like every other approval.
//! - A renewal is decided by one resolved approver, whatever the original quorum was; the approval
//!   is in the audit trail and its trace (approval rows count the original decision only).
//! - The share name is `<request id>-<retrieval number>`, so cleaning up after an unclear create
//!   by name never removes an earlier retrieval's link.
//! - A requester has one open request per record at a time (unless the user row allows several).

mod channels;
mod chase;
mod decisions;
mod extension;
mod lease_end;
mod retrieval;
mod submit;
mod triage;

use crate::canonical::{hash_canonical, sha256_hex};
use crate::config::LifecycleSettings;
use crate::domain::{
    ApprovalDecision, Clock, PrincipalType, RequestStatus, Role, Timestamp, TraceOutcome,
    TraceStage,
};
use crate::governance::admin::{AdminError, GovernanceAdmin};
use crate::governance::directory::{DirectoryUser, StaticDirectory, UserDirectory};
use crate::governance::permissions::PermissionResolver;
pub use crate::notify::{Notice, NoticeKind, Notifier, SilentNotifier};
use crate::policy::context::{
    Action, ApprovalFacts, AuthorityFacts, FolderAccess, Person, PolicyContext, RecordFacts,
    RequestFacts,
};
use crate::policy::decision::{Approver, RequiredApproval};
use crate::policy::{Decision, Engine, Outcome, person_decision_trace, trace_record};
use crate::store::{
    IssuanceEvent, LeaseEnding, NewApproval, NewAuditEvent, NewIssuance, NewRequest, NewTrace,
    NewUser, Record, Request, ShareRevocation, StatusChange, Store, StoreError, User,
};
use crate::vault::{ErrorClass, OneTimeSharer, Removed, ShareUrl, VaultError};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::Arc;
use time::Duration;

/// Preflight backoff: the wait before retry 1, 2, 3, 4 (seed 003); a larger budget repeats the last.
pub const PREFLIGHT_BACKOFF: [Duration; 4] = [
    Duration::seconds(30),
    Duration::minutes(1),
    Duration::minutes(2),
    Duration::minutes(4),
];
/// Keeper refuses one-time shares of these record types (keeper.md).
const PAM_RECORD_TYPES: [&str; 5] = [
    "pamDatabase",
    "pamDirectory",
    "pamMachine",
    "pamUser",
    "pamRemoteBrowser",
];
const MAX_TEXT_CHARS: usize = 500;
/// How many times a counted approval is re-read and re-decided when another approver got in first.
const APPROVAL_ATTEMPTS: usize = 8;
/// The most people one GROUP approver is asked through (a huge group is a misconfiguration; the
/// requester is told that only the first ones were asked).
pub const MAX_GROUP_APPROVERS: usize = 50;
pub use channels::{ChannelRoute, MAX_CHANNEL_REFRESH_USERS};

/// Why a use case refused or failed. Every variant except `Store` is an answer for the person who
/// asked; its message says what is going on and never carries a secret or the vault's raw text.
#[derive(Debug, thiserror::Error)]
pub enum LifecycleError {
    #[error(transparent)]
    Record(#[from] AdminError),
    #[error("There is no request #{0}.")]
    UnknownRequest(i64),
    #[error("Request #{0} is not yours.")]
    NotYours(i64),
    #[error("{0}")]
    BadInput(String),
    #[error("You already have request #{0} open for this record.")]
    AlreadyOpen(i64),
    #[error("{}", .0.join("; "))]
    Refused(Vec<String>),
    #[error("Request #{request_id} was already {}{}.", status_word(*.status), decided_by_text(.by.as_deref(), *.at))]
    AlreadyDecided {
        request_id: i64,
        status: RequestStatus,
        by: Option<String>,
        at: Option<Timestamp>,
    },
    #[error("Request #{request_id}: {}; {what}.", .status.in_words())]
    WrongState {
        request_id: i64,
        status: RequestStatus,
        what: &'static str,
    },
    /// The same extend command, delivered again after its extension was asked for.
    #[error(
        "Your extension of request #{0} was already asked for; `my requests` shows where it stands."
    )]
    AlreadyExtended(i64),
    #[error("Only admins can do that.")]
    NotAdmin,
    #[error("That retrieval link is not valid any more. Reload the page to get a fresh one.")]
    TokenMismatch,
    #[error("No retrievals are left on request #{0}.")]
    NoRetrievalsLeft(i64),
    /// Every retrieval left is being made right now (another tab); one may fail and free a slot.
    #[error("Another retrieval of request #{0} is in progress. Try again in a moment.")]
    RetrievalInProgress(i64),
    #[error("This record needs a second factor before the link is shown.")]
    SecondFactorRequired,
    #[error("The vault is not answering right now; nothing was used up. Try again in a minute.")]
    VaultUnavailable,
    #[error("The vault cannot share this record: {0}")]
    VaultRefused(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn status_word(s: RequestStatus) -> &'static str {
    match s {
        RequestStatus::Approved | RequestStatus::Issued | RequestStatus::RenewalPending => {
            "approved"
        }
        RequestStatus::Denied => "denied",
        RequestStatus::Expired => "ended (expired or revoked)",
        RequestStatus::Released => "released",
        RequestStatus::Unfulfillable => "found unfulfillable",
        RequestStatus::Pending => "routed to approvers",
        RequestStatus::RequiresTriage => "sent to triage",
    }
}

fn decided_by_text(by: Option<&str>, at: Option<Timestamp>) -> String {
    match (by, at) {
        (Some(by), Some(at)) => format!(" by {by} at {}", at.to_reader_text()),
        (Some(by), None) => format!(" by {by}"),
        (None, Some(at)) => format!(" at {}", at.to_reader_text()),
        (None, None) => String::new(),
    }
}

/// What a use case did to the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Event {
    /// Policy denied it at submission.
    DeniedByPolicy,
    /// Waiting for approvers.
    Routed,
    /// Waiting for an admin.
    Triaged,
    /// Approved and the lease started (the preflight passed or is being retried).
    Approved,
    /// Break-glass: approved at once, flagged for review.
    BreakGlassApproved,
    /// An approval was counted; more are needed.
    ApprovalRecorded,
    Denied,
    Unfulfillable,
    /// The preflight failed for a passing reason and will be retried.
    PreflightDeferred,
    PreflightPassed,
    Released,
    Expired,
    Revoked,
    /// More time was asked for and waits for an approver.
    ExtensionRequested,
    Extended,
    ExtensionDenied,
    /// Routed again to approvers, or moved to triage, because nobody decided in time.
    Escalated,
}

/// The result of a use case.
#[derive(Debug, Clone)]
pub struct Change {
    pub request: Request,
    pub record: Record,
    pub event: Event,
    /// The policy's or the person's reasons, for the card.
    pub reasons: Vec<String>,
    pub notices: Vec<Notice>,
}

/// What a person is to a request, which decides what they may see of it
/// ([`Lifecycle::standing`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    /// They asked for it.
    Requester,
    /// An approver authority of its record names them now (at any stage, through their Entra
    /// groups too), or they already gave their decision on it.
    Approver,
    /// A Passkey admin: admins may see every request.
    Admin,
    /// None of these: they learn nothing about it, not even whether it exists.
    Stranger,
}

impl Standing {
    pub fn may_see(self) -> bool {
        self != Standing::Stranger
    }
}

/// How long a retrieval may hold its reservation before it counts as dead (its process killed
/// mid-share). Far longer than any live one takes: vault calls time out after 30 s (service) or
/// 60 s (CLI), and a retrieval makes at most a few. A share such a retrieval may have created was
/// never shown to anyone (its URL died with the process) and expires with the lease.
pub const RETRIEVAL_DEAD_AFTER: time::Duration = time::Duration::minutes(10);

/// A freshly minted issuance token: shown to the signed-in requester's page once, never stored.
pub struct IssuanceToken {
    pub token: SecretString,
    pub expires_at: Timestamp,
    pub issuances_left: i32,
}

/// A retrieval: the one place the share URL exists outside the vault (INV-5).
pub struct Retrieved {
    pub url: ShareUrl,
    pub expires_at: Timestamp,
    pub issuance_count: i32,
    pub max_issuances: i32,
}

/// A new request as the requester typed it or filled it in.
#[derive(Debug, Clone)]
pub struct Submission {
    pub record: String,
    /// None: the policy's default lease.
    pub duration_secs: Option<i64>,
    pub justification: String,
    pub ticket_id: Option<String>,
    pub break_glass: bool,
}

/// How a share removal went.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct RevokeCounts {
    pub removed: u32,
    pub already_gone: u32,
    pub failed: u32,
}

/// What [`Lifecycle::expire_due_batch`] did with one claimed batch.
#[derive(Debug, Clone, Default)]
pub struct ExpiryBatch {
    /// Leases moved to EXPIRED here.
    pub expired: Vec<Request>,
    /// Live leases left alone because they changed after they were claimed (released, revoked,
    /// extended).
    pub skipped: usize,
    /// Ended requests whose outstanding shares were tried again.
    pub shares_retried: usize,
    pub shares: RevokeCounts,
    /// One StatusChanged notice per expired lease, to its requester.
    pub notices: Vec<Notice>,
    /// Shares left alone because this holder's claim on their request was lost (another
    /// instance took it over and removes them).
    pub shares_claim_lost: usize,
}

/// Whether the caller still holds its claim on a request (the scheduler's claims, INV-7). Asked
/// before each vault call of a claimed batch: a holder whose claim was taken over stops, so the
/// new holder is the only one calling the vault for that request.
#[async_trait::async_trait]
pub trait ClaimCheck: Send + Sync {
    async fn still_held(&self, request_id: i64) -> bool;
}

/// The name of someone the directory gives neither a name nor an address.
const UNNAMED_PERSON: &str = "Unnamed person";

/// The lifecycle's dependencies.
#[derive(Clone)]
pub struct Lifecycle {
    store: Arc<dyn Store>,
    engine: Arc<Engine>,
    clock: Arc<dyn Clock>,
    permissions: Arc<PermissionResolver>,
    sharer: Arc<dyn OneTimeSharer>,
    settings: LifecycleSettings,
    /// Who EMAIL and GROUP approvers are (Graph in production).
    directory: Arc<dyn UserDirectory>,
}

/// The people an approval stage reaches, and — in words for the requester — every approver it
/// names who could not be reached.
#[derive(Debug, Clone, Default)]
pub struct ReachedApprovers {
    pub users: Vec<User>,
    pub unreached: Vec<String>,
}

fn person(user: &User, groups: Vec<String>) -> Person {
    Person {
        user_id: user.id,
        aad_object_id: user.aad_object_id.clone(),
        email: user.email.clone().or_else(|| user.upn.clone()),
        role: user.role,
        groups,
    }
}

/// As [`person`], for a record's authorities: a person answers to their mail and to their UPN, so
/// when an EMAIL authority names their UPN (and not their mail), that is the address the policy
/// sees — an approver found in the directory by UPN can then decide, not only be told.
fn person_for(user: &User, groups: Vec<String>, authorities: &[AuthorityFacts]) -> Person {
    let mut p = person(user, groups);
    let names = |address: &str| {
        authorities.iter().any(|a| {
            a.principal_type == PrincipalType::Email && a.principal.eq_ignore_ascii_case(address)
        })
    };
    if let Some(upn) = &user.upn
        && !p.email.as_deref().is_some_and(names)
        && names(upn)
    {
        p.email = Some(upn.clone());
    }
    p
}

fn bounded(text: &str, what: &str) -> Result<String, LifecycleError> {
    let text = text.trim();
    if text.chars().count() > MAX_TEXT_CHARS {
        return Err(LifecycleError::BadInput(format!(
            "The {what} is too long (at most {MAX_TEXT_CHARS} characters)."
        )));
    }
    Ok(text.to_string())
}

/// The approver an authority row names.
fn approver_of(a: &AuthorityFacts) -> Approver {
    Approver {
        authority_id: a.authority_id,
        kind: a.kind,
        principal_type: a.principal_type,
        principal: a.principal.clone(),
    }
}

/// A trace for a lifecycle event that is not a policy evaluation (issuance, revocation): the
/// inputs are the facts the step acted on, hashed the same canonical way.
fn event_trace(
    stage: TraceStage,
    request: &Request,
    outcome: TraceOutcome,
    reasons: Vec<String>,
    inputs: Value,
    policy_version: &str,
    at: Timestamp,
) -> NewTrace {
    NewTrace {
        request_id: Some(request.id),
        stage,
        outcome,
        reasons: json!(reasons),
        constraints: json!({ "max_issuances": request.max_issuances }),
        required_approvals: json!([]),
        trace: json!({ "event": stage.as_str() }),
        inputs_hash: hash_canonical(&inputs),
        inputs,
        policy_version: policy_version.to_string(),
        code_version: crate::policy::code_version().to_string(),
        at,
    }
}

impl Lifecycle {
    pub fn new(
        store: Arc<dyn Store>,
        engine: Arc<Engine>,
        clock: Arc<dyn Clock>,
        permissions: Arc<PermissionResolver>,
        sharer: Arc<dyn OneTimeSharer>,
        settings: LifecycleSettings,
    ) -> Self {
        Lifecycle {
            store,
            engine,
            clock,
            permissions,
            sharer,
            settings,
            directory: Arc::new(StaticDirectory::new()),
        }
    }

    /// Looks EMAIL and GROUP approvers up in `directory` (without one, an address nobody in the
    /// database has and every group reach nobody, and say so).
    pub fn with_directory(mut self, directory: Arc<dyn UserDirectory>) -> Self {
        self.directory = directory;
        self
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    pub fn settings(&self) -> &LifecycleSettings {
        &self.settings
    }

    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    /// The ids of the authority rows among `rows` that name `viewer` (a GROUP through their Entra
    /// groups, read only when a group row could name them; a lookup that fails names nobody).
    pub async fn rows_naming(
        &self,
        viewer: &User,
        rows: &[crate::store::Authority],
    ) -> Result<Vec<i64>, StoreError> {
        let facts: Vec<AuthorityFacts> = rows
            .iter()
            .map(|a| AuthorityFacts {
                authority_id: a.id,
                kind: a.authority,
                principal_type: a.principal_type,
                principal: a.principal.clone(),
                stage: a.stage,
                valid_from: a.valid_from,
                valid_to: a.valid_to,
                revoked: a.revoked_at.is_some(),
            })
            .collect();
        let groups = if facts
            .iter()
            .any(|a| a.principal_type == PrincipalType::Group)
        {
            self.permissions.effective(viewer).await?.groups
        } else {
            Vec::new()
        };
        let person = person_for(viewer, groups, &facts);
        Ok(facts
            .iter()
            .filter(|a| a.names(&person))
            .map(|a| a.authority_id)
            .collect())
    }

    // ---- reading ----------------------------------------------------------------------------

    async fn request(&self, id: i64) -> Result<Request, LifecycleError> {
        self.store
            .request_by_id(id)
            .await?
            .ok_or(LifecycleError::UnknownRequest(id))
    }

    /// Whether retrieving `request` needs a second factor (#21.9): it did when it was submitted,
    /// or its record's sensitivity needs one now because an admin raised it since. A level
    /// lowered since never drops a factor the request was decided with.
    pub async fn second_factor_required(&self, request: &Request) -> Result<bool, LifecycleError> {
        if request.otp_required {
            return Ok(true);
        }
        let record = self.record_of(request).await?;
        Ok(self.needs_second_factor(request, &record))
    }

    /// [`Lifecycle::second_factor_required`] for a request whose record was read already.
    fn needs_second_factor(&self, request: &Request, record: &Record) -> bool {
        request.otp_required
            || self
                .engine
                .policy()
                .access
                .otp_required_from
                .is_some_and(|from| record.sensitivity >= from)
    }

    async fn record_of(&self, request: &Request) -> Result<Record, LifecycleError> {
        Ok(self
            .store
            .record_by_id(request.record_id)
            .await?
            .ok_or(StoreError::NotFound("record"))?)
    }

    /// A request the person may act on as its requester. Someone who may not even see it is
    /// refused as [`Lifecycle::visible_request`] refuses them.
    async fn own_request(
        &self,
        user: &User,
        id: i64,
        attempt: &'static str,
    ) -> Result<Request, LifecycleError> {
        let request = self.visible_request(user, id, attempt).await?;
        if request.requester_id != user.id {
            self.store
                .append_audit(
                    &NewAuditEvent::new(
                        actor(user),
                        "ACCESS_DENIED_NOT_REQUESTER",
                        self.clock.now(),
                    )
                    .request(id)
                    .record(request.record_id),
                )
                .await?;
            return Err(LifecycleError::NotYours(id));
        }
        Ok(request)
    }

    /// The one rule for who may see a request — its card, its state, its justification, who
    /// decided — whatever names it by number: typed commands, card buttons, `refresh` views,
    /// lists and card updates. Its requester; the people an approver authority of its record
    /// names now (the policy's `approver_authorities`, in force, any stage; a GROUP through the
    /// person's Entra groups, and a group lookup that fails names nobody); whoever already gave
    /// their decision on it; admins. Authority is read now, not at routing: someone who lost it
    /// before deciding no longer sees the request.
    pub async fn standing(&self, viewer: &User, request: &Request) -> Result<Standing, StoreError> {
        self.standing_reading(viewer, request, &mut ReadAuthorities::default())
            .await
    }

    /// [`Lifecycle::standing`], keeping the authority facts it read in `read` for the rest of
    /// the use case.
    async fn standing_reading(
        &self,
        viewer: &User,
        request: &Request,
        read: &mut ReadAuthorities,
    ) -> Result<Standing, StoreError> {
        if request.requester_id == viewer.id {
            return Ok(Standing::Requester);
        }
        if self.names_as_approver(viewer, request, read).await? {
            return Ok(Standing::Approver);
        }
        if viewer.role == Role::Admin {
            return Ok(Standing::Admin);
        }
        Ok(Standing::Stranger)
    }

    async fn names_as_approver(
        &self,
        viewer: &User,
        request: &Request,
        read: &mut ReadAuthorities,
    ) -> Result<bool, StoreError> {
        let now = self.clock.now();
        let kinds = &self.engine.policy().access.approver_authorities;
        let authorities: Vec<AuthorityFacts> = self
            .authorities_of(request.record_id, read)
            .await?
            .into_iter()
            .filter(|a| a.in_force(now) && kinds.contains(&a.kind))
            .collect();
        if !authorities.is_empty() {
            // Group memberships are read only when a group could name the person.
            let groups = if authorities
                .iter()
                .any(|a| a.principal_type == PrincipalType::Group)
            {
                self.permissions.effective(viewer).await?.groups
            } else {
                Vec::new()
            };
            let person = person_for(viewer, groups, &authorities);
            if authorities.iter().any(|a| a.names(&person)) {
                return Ok(true);
            }
        }
        Ok(self
            .store
            .approvals_for_request(request.id)
            .await?
            .iter()
            .any(|a| a.approver_id == viewer.id))
    }

    /// Request `request_id`, for someone [`Lifecycle::standing`] lets see it. Anyone else is
    /// told it is not theirs — the same words whether it exists or not, so request numbers
    /// cannot be probed — and the attempt is audited as `ACCESS_DENIED_NOT_VISIBLE` with who,
    /// the number and what they tried, and nothing of the request. Admins may see every request,
    /// so they alone are told that one does not exist. `attempt` names the command or view.
    pub async fn visible_request(
        &self,
        viewer: &User,
        request_id: i64,
        attempt: &'static str,
    ) -> Result<Request, LifecycleError> {
        self.visible_request_reading(viewer, request_id, attempt, &mut ReadAuthorities::default())
            .await
    }

    /// [`Lifecycle::visible_request`], keeping the authority facts it read in `read`.
    async fn visible_request_reading(
        &self,
        viewer: &User,
        request_id: i64,
        attempt: &'static str,
        read: &mut ReadAuthorities,
    ) -> Result<Request, LifecycleError> {
        match self.store.request_by_id(request_id).await? {
            Some(request)
                if self
                    .standing_reading(viewer, &request, read)
                    .await?
                    .may_see() =>
            {
                return Ok(request);
            }
            None if viewer.role == Role::Admin => {
                return Err(LifecycleError::UnknownRequest(request_id));
            }
            _ => {}
        }
        self.store
            .append_audit(
                &NewAuditEvent::new(actor(viewer), "ACCESS_DENIED_NOT_VISIBLE", self.clock.now())
                    .detail(json!({ "request_id": request_id, "attempt": attempt })),
            )
            .await?;
        Err(LifecycleError::NotYours(request_id))
    }

    /// "already decided by X at T" for a request someone else moved first.
    async fn already_decided(&self, request_id: i64) -> LifecycleError {
        match self.store.request_by_id(request_id).await {
            Ok(Some(r)) => {
                let by = match r.decided_by {
                    Some(id) => self
                        .store
                        .user_by_id(id)
                        .await
                        .ok()
                        .flatten()
                        .map(|u| u.display_name),
                    None => Some("policy".to_string()),
                };
                LifecycleError::AlreadyDecided {
                    request_id,
                    status: r.status,
                    by,
                    at: r.decided_at,
                }
            }
            Ok(None) => LifecycleError::UnknownRequest(request_id),
            Err(e) => e.into(),
        }
    }

    /// The record's authority facts, from `read` when this use case already read them.
    async fn authorities_of(
        &self,
        record_id: i64,
        read: &mut ReadAuthorities,
    ) -> Result<Vec<AuthorityFacts>, StoreError> {
        match &read.0 {
            Some((id, facts)) if *id == record_id => Ok(facts.clone()),
            _ => {
                let facts = self.authority_facts(record_id).await?;
                read.0 = Some((record_id, facts.clone()));
                Ok(facts)
            }
        }
    }

    async fn authority_facts(&self, record_id: i64) -> Result<Vec<AuthorityFacts>, StoreError> {
        Ok(self
            .store
            .authority_history_for_record(record_id)
            .await?
            .into_iter()
            .map(|a| AuthorityFacts {
                authority_id: a.id,
                kind: a.authority,
                principal_type: a.principal_type,
                principal: a.principal,
                stage: a.stage,
                valid_from: a.valid_from,
                valid_to: a.valid_to,
                revoked: a.revoked_at.is_some(),
            })
            .collect())
    }

    /// Everything a decision about `request` (or a new one) depends on.
    #[allow(clippy::too_many_arguments)]
    async fn context(
        &self,
        action: Action,
        requester: &User,
        actor: Option<&User>,
        record: &Record,
        request: RequestFacts,
        approvals: Vec<ApprovalFacts>,
        extension_secs: Option<i64>,
    ) -> Result<PolicyContext, StoreError> {
        self.context_reading(
            action,
            requester,
            actor,
            record,
            request,
            approvals,
            extension_secs,
            &mut ReadAuthorities::default(),
        )
        .await
    }

    /// [`Lifecycle::context`], with the authority facts from `read` when this use case already
    /// read them (deciding who may see the request).
    #[allow(clippy::too_many_arguments)]
    async fn context_reading(
        &self,
        action: Action,
        requester: &User,
        actor: Option<&User>,
        record: &Record,
        request: RequestFacts,
        approvals: Vec<ApprovalFacts>,
        extension_secs: Option<i64>,
        read: &mut ReadAuthorities,
    ) -> Result<PolicyContext, StoreError> {
        let requester_perms = self.permissions.effective(requester).await?;
        let authorities = self.authorities_of(record.id, read).await?;
        let folder_access = FolderAccess {
            permission: record
                .folder_id
                .and_then(|f| requester_perms.folder_levels.get(&f).copied()),
        };
        let (actor, actor_folder_access) = match actor {
            Some(a) => {
                let perms = self.permissions.effective(a).await?;
                let level = record
                    .folder_id
                    .and_then(|f| perms.folder_levels.get(&f).copied());
                (Some(person_for(a, perms.groups, &authorities)), level)
            }
            None => (None, None),
        };
        Ok(PolicyContext {
            action,
            now: self.clock.now(),
            requester: person_for(requester, requester_perms.groups, &authorities),
            actor,
            record: RecordFacts {
                record_id: record.id,
                vault_uid: record.vault_uid.clone(),
                title: record.title.clone(),
                sensitivity: record.sensitivity,
                owner_user_id: record.owner_user_id,
            },
            request,
            folder_access,
            authorities,
            approvals,
            extension_secs,
            actor_folder_access,
        })
    }

    fn facts_of(request: &Request) -> RequestFacts {
        RequestFacts {
            request_id: Some(request.id),
            status: Some(request.status),
            requested_duration_secs: request.requested_duration_secs,
            justification: request.justification.clone(),
            ticket_id: request.ticket_id.clone(),
            break_glass: request.break_glass,
            granted_lease_secs: request.approved_duration_secs.unwrap_or(0),
            extension_count: request.extension_count.max(0) as u32,
        }
    }

    /// The people an approval stage names (see [`Lifecycle::reach_approvers`]).
    pub async fn resolve_approvers(
        &self,
        approvers: &[Approver],
        except_user_id: i64,
    ) -> Result<Vec<User>, StoreError> {
        Ok(self.reach_approvers(approvers, except_user_id).await?.users)
    }

    /// The people an approval stage names, except `except_user_id`: USER by Entra object id and
    /// ROLE from the database; EMAIL from the database, else the directory; GROUP from the
    /// directory's member list. People found only in the directory become users here (requesters,
    /// like anyone new), so they can be told and can decide. An address or group the directory
    /// does not know, or cannot answer for, reaches nobody — and is said in `unreached`, never
    /// passed over in silence.
    pub async fn reach_approvers(
        &self,
        approvers: &[Approver],
        except_user_id: i64,
    ) -> Result<ReachedApprovers, StoreError> {
        let mut reached = ReachedApprovers::default();
        for a in approvers {
            let found = match a.principal_type {
                PrincipalType::User => self
                    .store
                    .user_by_aad_object_id(&a.principal)
                    .await?
                    .into_iter()
                    .collect(),
                PrincipalType::Email => match self.store.user_by_email(&a.principal).await? {
                    Some(user) => vec![user],
                    None => match self.directory.user_by_address(&a.principal).await {
                        Ok(Some(person)) => self.remember(&person).await?.into_iter().collect(),
                        Ok(None) => {
                            reached.unreached.push(format!(
                                "approver {} could not be found in the directory",
                                a.principal
                            ));
                            vec![]
                        }
                        Err(e) => {
                            // The cause is for the log; people read a fixed reason.
                            tracing::warn!(authority_id = a.authority_id, error = %e,
                                "approver address not looked up");
                            reached.unreached.push(format!(
                                "approver {} could not be looked up in the directory just now",
                                a.principal
                            ));
                            vec![]
                        }
                    },
                },
                PrincipalType::Role => match a.principal.parse::<Role>() {
                    Ok(role) => self.store.users_with_role(role).await?,
                    Err(_) => Vec::new(),
                },
                PrincipalType::Group => self.group_approvers(a, &mut reached.unreached).await?,
            };
            for u in found {
                if u.id != except_user_id && !reached.users.iter().any(|x| x.id == u.id) {
                    reached.users.push(u);
                }
            }
        }
        Ok(reached)
    }

    /// A GROUP approver's members, as users (the first [`MAX_GROUP_APPROVERS`]). What could not
    /// be reached is said with the group's display name, never its object id, and with a fixed
    /// reason, never the directory's error text (#18.5).
    async fn group_approvers(
        &self,
        a: &Approver,
        unreached: &mut Vec<String>,
    ) -> Result<Vec<User>, StoreError> {
        let members = match self.directory.group_members(&a.principal).await {
            Ok(Some(members)) => members,
            Ok(None) => {
                unreached.push("an approver group could not be found in the directory".into());
                return Ok(vec![]);
            }
            Err(e) => {
                tracing::warn!(authority_id = a.authority_id, error = %e,
                    "approver group not listed");
                let group = self.group_label(a).await;
                unreached.push(format!("{group} could not be listed just now"));
                return Ok(vec![]);
            }
        };
        if members.is_empty() {
            let group = self.group_label(a).await;
            unreached.push(format!("{group} has no members"));
        }
        if members.len() > MAX_GROUP_APPROVERS {
            let group = self.group_label(a).await;
            unreached.push(format!(
                "{group} has {} members; the first {MAX_GROUP_APPROVERS} were asked",
                members.len()
            ));
        }
        let mut users = Vec::new();
        for member in members.iter().take(MAX_GROUP_APPROVERS) {
            users.extend(self.remember(member).await?);
        }
        Ok(users)
    }

    /// "approver group Platform SRE" by the directory's name for it, else "an approver group":
    /// the object id means nothing to the people who read it.
    async fn group_label(&self, a: &Approver) -> String {
        match self.directory.group_name(&a.principal).await {
            Ok(Some(name)) => format!("approver group {name}"),
            Ok(None) => "an approver group".into(),
            Err(e) => {
                tracing::warn!(authority_id = a.authority_id, error = %e,
                    "approver group name not read");
                "an approver group".into()
            }
        }
    }

    /// The user row for a person the directory knows: created on first sight, its profile
    /// refreshed otherwise (never its role). A person without an id is skipped.
    async fn remember(&self, person: &DirectoryUser) -> Result<Option<User>, StoreError> {
        if person.id.trim().is_empty() {
            return Ok(None);
        }
        let email = person.mail.clone().or_else(|| person.upn.clone());
        let display_name = person
            .display_name
            .clone()
            .filter(|n| !n.trim().is_empty())
            .or_else(|| email.clone())
            // Never the object id: people read this name on cards.
            .unwrap_or_else(|| UNNAMED_PERSON.to_string());
        let user = self
            .store
            .upsert_user(
                &NewUser {
                    aad_object_id: person.id.clone(),
                    tenant_id: None,
                    teams_user_id: None,
                    upn: person.upn.clone(),
                    email,
                    display_name,
                    initial_role: Role::Requester,
                },
                self.clock.now(),
            )
            .await?;
        Ok(Some(user))
    }

    async fn admins(&self) -> Result<Vec<User>, StoreError> {
        self.store.users_with_role(Role::Admin).await
    }

    fn notices(users: &[User], request_id: i64, kind: NoticeKind) -> Vec<Notice> {
        users
            .iter()
            .map(|u| Notice {
                user_id: u.id,
                request_id,
                kind,
            })
            .collect()
    }

    fn requester_notice(request: &Request) -> Notice {
        Notice {
            user_id: request.requester_id,
            request_id: request.id,
            kind: NoticeKind::StatusChanged,
        }
    }
}

/// The authority facts of one record as a use case read them: who may see a request and the
/// policy context of a decision both need them, and one use case reads them once (a workflow's
/// statements are most of its cost on Postgres, docs/benchmarks.md).
#[derive(Default)]
struct ReadAuthorities(Option<(i64, Vec<AuthorityFacts>)>);

/// A PENDING request and what deciding it needs (see `Lifecycle::decidable`).
struct Decidable {
    request: Request,
    record: Record,
    /// The approval's policy context, with the APPROVE rows recorded so far.
    ctx: PolicyContext,
    /// How many APPROVE rows there were: the store re-checks this under its lock.
    seen: i64,
}

/// Where a retrieval came from, for the IssuanceEvent.
#[derive(Debug, Clone, Default)]
pub struct ClientInfo {
    pub ip: Option<String>,
    pub user_agent: Option<String>,
}

/// The audit trail's name for a person.
pub fn actor(user: &User) -> String {
    format!("user:{}", user.id)
}

impl StatusChange {
    fn preflight(mut self, attempts: i32, next: Option<Timestamp>) -> Self {
        self.preflight = Some((attempts, next));
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_follows_the_seed_schedule() {
        let secs: Vec<i64> = PREFLIGHT_BACKOFF
            .iter()
            .map(|d| d.whole_seconds())
            .collect();
        assert_eq!(secs, vec![30, 60, 120, 240]);
    }
}
