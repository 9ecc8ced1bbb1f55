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
    #[error("Request #{request_id} is {status}; {what}.")]
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
        (Some(by), Some(at)) => format!(" by {by} at {}", at.to_fixed_text()),
        (Some(by), None) => format!(" by {by}"),
        (None, Some(at)) => format!(" at {}", at.to_fixed_text()),
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

/// Constant-time equality of two hex digests (the token check must not leak by timing).
fn same_digest(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
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
        Ok(self
            .engine
            .policy()
            .access
            .otp_required_from
            .is_some_and(|from| record.sensitivity >= from))
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
        if request.requester_id == viewer.id {
            return Ok(Standing::Requester);
        }
        if self.names_as_approver(viewer, request).await? {
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
    ) -> Result<bool, StoreError> {
        let now = self.clock.now();
        let kinds = &self.engine.policy().access.approver_authorities;
        let authorities: Vec<AuthorityFacts> = self
            .authority_facts(request.record_id)
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
        match self.store.request_by_id(request_id).await? {
            Some(request) if self.standing(viewer, &request).await?.may_see() => {
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

    async fn authority_facts(&self, record_id: i64) -> Result<Vec<AuthorityFacts>, StoreError> {
        let Some(resource) = self.store.governed_resource_for_record(record_id).await? else {
            return Ok(Vec::new());
        };
        Ok(self
            .store
            .authority_history(resource.id)
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
        let requester_perms = self.permissions.effective(requester).await?;
        let authorities = self.authority_facts(record.id).await?;
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
                            tracing::warn!(authority_id = a.authority_id, error = %e,
                                "approver address not looked up");
                            reached.unreached.push(format!(
                                "approver {} could not be looked up ({e})",
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

    /// A GROUP approver's members, as users (the first [`MAX_GROUP_APPROVERS`]).
    async fn group_approvers(
        &self,
        a: &Approver,
        unreached: &mut Vec<String>,
    ) -> Result<Vec<User>, StoreError> {
        let members = match self.directory.group_members(&a.principal).await {
            Ok(Some(members)) => members,
            Ok(None) => {
                unreached.push(format!(
                    "approver group {} could not be found in the directory",
                    a.principal
                ));
                return Ok(vec![]);
            }
            Err(e) => {
                tracing::warn!(authority_id = a.authority_id, error = %e,
                    "approver group not listed");
                unreached.push(format!(
                    "approver group {} could not be listed ({e})",
                    a.principal
                ));
                return Ok(vec![]);
            }
        };
        if members.is_empty() {
            unreached.push(format!("approver group {} has no members", a.principal));
        }
        if members.len() > MAX_GROUP_APPROVERS {
            unreached.push(format!(
                "approver group {} has {} members; the first {MAX_GROUP_APPROVERS} were asked",
                a.principal,
                members.len()
            ));
        }
        let mut users = Vec::new();
        for member in members.iter().take(MAX_GROUP_APPROVERS) {
            users.extend(self.remember(member).await?);
        }
        Ok(users)
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
            .unwrap_or_else(|| person.id.clone());
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

    // ---- submit -----------------------------------------------------------------------------

    /// A new request: resolve the record, ask the policy, persist with the trace, then approve at
    /// once, deny, route to approvers or queue for triage.
    pub async fn submit(
        &self,
        requester: &User,
        submission: &Submission,
    ) -> Result<Change, LifecycleError> {
        let admin = GovernanceAdmin::new(self.store.clone(), self.clock.clone());
        let record = admin.find_record(&submission.record).await?;
        let justification = bounded(&submission.justification, "justification")?;
        let ticket_id = match &submission.ticket_id {
            Some(t) if !t.trim().is_empty() => Some(bounded(t, "ticket")?),
            _ => None,
        };
        let duration = submission
            .duration_secs
            .unwrap_or(self.engine.policy().lease.default_lease_secs);
        if duration <= 0 {
            return Err(LifecycleError::BadInput(
                "The duration must be positive, e.g. 30m, 2h or 1d.".into(),
            ));
        }
        if !requester.allow_multiple_leases
            && let Some(open) = self
                .store
                .requests_for_requester(requester.id, 200)
                .await?
                .into_iter()
                .find(|r| r.record_id == record.id && !r.status.is_final())
        {
            return Err(LifecycleError::AlreadyOpen(open.id));
        }

        let ctx = self
            .context(
                Action::Submit,
                requester,
                None,
                &record,
                RequestFacts {
                    request_id: None,
                    status: None,
                    requested_duration_secs: duration,
                    justification: justification.clone(),
                    ticket_id: ticket_id.clone(),
                    break_glass: submission.break_glass,
                    granted_lease_secs: 0,
                    extension_count: 0,
                },
                vec![],
                None,
            )
            .await?;
        let decision = self.engine.evaluate(&ctx);
        let status = match decision.outcome {
            Outcome::Deny => RequestStatus::Denied,
            Outcome::RequiresHumanTriage => RequestStatus::RequiresTriage,
            Outcome::AutoApprove | Outcome::RouteToAuthority => RequestStatus::Pending,
        };
        let mut traces = vec![trace_record(TraceStage::RequestSubmission, &ctx, &decision)];
        if decision.outcome == Outcome::RouteToAuthority {
            traces.push(trace_record(
                TraceStage::AuthorityResolution,
                &ctx,
                &decision,
            ));
        }
        let required: u32 = decision.required_approvals.iter().map(|r| r.count).sum();
        let new = NewRequest {
            requester_id: requester.id,
            record_id: record.id,
            status,
            justification,
            ticket_id,
            requested_duration_secs: duration,
            break_glass: submission.break_glass,
            required_approvals: required.max(1) as i32,
            max_issuances: decision
                .constraints
                .max_issuances
                .unwrap_or(self.engine.policy().lease.max_issuances)
                .min(i32::MAX as u32) as i32,
            policy_version: Some(decision.policy_version.clone()),
            review_required: decision.constraints.post_hoc_review,
            otp_required: decision.constraints.otp_required,
            decision_reason: (status == RequestStatus::Denied).then(|| decision.reasons.join("; ")),
        };
        let now = ctx.now;
        let audit = NewAuditEvent::new(actor(requester), "REQUEST_SUBMITTED", now)
            .record(record.id)
            .detail(json!({
                "outcome": decision.outcome,
                "reasons": decision.reasons,
                "requested_duration_secs": duration,
                "break_glass": submission.break_glass,
            }));
        let request = self
            .store
            .create_request(&new, &traces, &audit, now)
            .await?;
        if status == RequestStatus::Denied {
            // The reason is on the request for the card; the trace holds the detail.
            return Ok(Change {
                notices: vec![],
                request,
                record,
                event: Event::DeniedByPolicy,
                reasons: decision.reasons,
            });
        }
        match decision.outcome {
            Outcome::RequiresHumanTriage => {
                let admins = self.admins().await?;
                Ok(Change {
                    notices: Self::notices(&admins, request.id, NoticeKind::TriageNeeded),
                    request,
                    record,
                    event: Event::Triaged,
                    reasons: decision.reasons,
                })
            }
            Outcome::RouteToAuthority => {
                let first = decision.required_approvals.first();
                let reached = match first {
                    Some(stage) => self.reach_approvers(&stage.approvers, requester.id).await?,
                    None => ReachedApprovers::default(),
                };
                if reached.users.is_empty() {
                    return self
                        .no_approver_reachable(request, record, decision.reasons, reached.unreached)
                        .await;
                }
                let mut reasons = decision.reasons;
                reasons.extend(reached.unreached);
                Ok(Change {
                    notices: Self::notices(&reached.users, request.id, NoticeKind::ApprovalNeeded),
                    request,
                    record,
                    event: Event::Routed,
                    reasons,
                })
            }
            _ => {
                self.approve_by_policy(request, record, &ctx, &decision)
                    .await
            }
        }
    }

    /// A routed request whose approvers resolve to nobody Passkey can reach (a group whose members
    /// it cannot list, an address nobody has) goes to the admins at once, and the requester is
    /// told why — it never waits silently for people who will not hear of it. `unreached` says
    /// which approvers could not be reached and why; it is in the reasons and the audit event.
    async fn no_approver_reachable(
        &self,
        request: Request,
        record: Record,
        mut reasons: Vec<String>,
        unreached: Vec<String>,
    ) -> Result<Change, LifecycleError> {
        let why = "no approver could be reached; an admin will decide".to_string();
        let now = self.clock.now();
        let change = StatusChange::new(
            request.id,
            RequestStatus::Pending,
            RequestStatus::RequiresTriage,
            now,
        )
        .reason(why.clone());
        let audit = NewAuditEvent::new("system:routing", "REQUEST_ESCALATED", now)
            .detail(json!({ "reason": "no_reachable_approver", "unreached": unreached }));
        let request = self.store.transition_request(&change, &[], &audit).await?;
        reasons.extend(unreached);
        reasons.push(why);
        let admins = self.admins().await?;
        Ok(Change {
            notices: Self::notices(&admins, request.id, NoticeKind::TriageNeeded),
            request,
            record,
            event: Event::Triaged,
            reasons,
        })
    }

    /// AUTO_APPROVE at submission (including break-glass): the approval transition, then the lease.
    async fn approve_by_policy(
        &self,
        request: Request,
        record: Record,
        ctx: &PolicyContext,
        decision: &Decision,
    ) -> Result<Change, LifecycleError> {
        let now = self.clock.now();
        let secs = self.lease_secs(&request, decision);
        let break_glass = decision.constraints.post_hoc_review;
        let action = if break_glass {
            "BREAK_GLASS_APPROVED"
        } else {
            "REQUEST_AUTO_APPROVED"
        };
        let change = StatusChange::new(
            request.id,
            RequestStatus::Pending,
            RequestStatus::Approved,
            now,
        )
        .reason(decision.reasons.join("; "))
        .lease(now, now.plus(Duration::seconds(secs)), secs);
        let audit = NewAuditEvent::new("system:policy", action, now).detail(json!({
            "reasons": decision.reasons,
            "lease_secs": secs,
            "review_required": break_glass,
        }));
        // The decision was taken on the submission's context (no request yet): that is what the
        // trace stores and what replay evaluates; only the row is tied to the new request.
        let mut trace = trace_record(TraceStage::ApprovalDecision, ctx, decision);
        trace.request_id = Some(request.id);
        let request = self
            .store
            .transition_request(&change, &[trace], &audit)
            .await?;
        let mut notices = vec![];
        if decision.constraints.notify_authorities || break_glass {
            let approvers: Vec<Approver> = ctx
                .authorities
                .iter()
                .filter(|a| a.in_force(now))
                .map(approver_of)
                .collect();
            let mut people = self
                .resolve_approvers(&approvers, request.requester_id)
                .await?;
            for admin in self.admins().await? {
                if admin.id != request.requester_id && !people.iter().any(|p| p.id == admin.id) {
                    people.push(admin);
                }
            }
            notices.extend(Self::notices(
                &people,
                request.id,
                NoticeKind::BreakGlassUsed,
            ));
        }
        let event = if break_glass {
            Event::BreakGlassApproved
        } else {
            Event::Approved
        };
        self.after_approval(request, record, event, decision.reasons.clone(), notices)
            .await
    }

    /// The approved lease length: what was asked, within the policy's cap.
    fn lease_secs(&self, request: &Request, decision: &Decision) -> i64 {
        let cap = decision
            .constraints
            .max_lease_secs
            .unwrap_or(request.requested_duration_secs);
        request.requested_duration_secs.min(cap).max(1)
    }

    /// After any approval: the vault preflight, and the requester told.
    async fn after_approval(
        &self,
        request: Request,
        record: Record,
        event: Event,
        reasons: Vec<String>,
        mut notices: Vec<Notice>,
    ) -> Result<Change, LifecycleError> {
        let (request, preflight_event, more) = self.preflight(request, &record).await?;
        notices.push(Self::requester_notice(&request));
        notices.extend(more);
        Ok(Change {
            event: match preflight_event {
                Event::Unfulfillable => Event::Unfulfillable,
                _ => event,
            },
            request,
            record,
            reasons,
            notices,
        })
    }

    // ---- preflight --------------------------------------------------------------------------

    /// Can the vault serve this record? Asked once at approval and again by the retry job: a
    /// terminal answer makes the request UNFULFILLABLE; a passing one is retried with backoff
    /// until the budget is spent. No share is created here.
    pub async fn preflight(
        &self,
        request: Request,
        record: &Record,
    ) -> Result<(Request, Event, Vec<Notice>), LifecycleError> {
        if request.status != RequestStatus::Approved {
            return Ok((request, Event::Approved, vec![]));
        }
        let result = if PAM_RECORD_TYPES.contains(&record.record_type.as_str()) {
            Err(VaultError::new(
                ErrorClass::Terminal,
                "One-time shares are not available for PAM records",
                format!("record type {}", record.record_type),
            ))
        } else {
            self.sharer.list(&record.vault_uid).await.map(|_| ())
        };
        let now = self.clock.now();
        let attempts = request.preflight_attempts + 1;
        match result {
            Ok(()) => {
                let request = if request.preflight_attempts > 0 || request.next_attempt_at.is_some()
                {
                    let audit =
                        NewAuditEvent::new("system:preflight", "VAULT_PREFLIGHT_PASSED", now)
                            .detail(json!({ "attempts": attempts }));
                    self.store
                        .schedule_preflight(request.id, attempts, None, &audit)
                        .await?
                } else {
                    request
                };
                Ok((request, Event::PreflightPassed, vec![]))
            }
            Err(e) => {
                let retries_used = attempts - 1;
                let budget = self.settings.preflight_retry_budget as i32;
                if e.class == ErrorClass::Terminal || retries_used >= budget {
                    let why = if e.class == ErrorClass::Terminal {
                        e.message.clone()
                    } else {
                        format!("the vault did not answer after {attempts} attempts")
                    };
                    let change = StatusChange::new(
                        request.id,
                        RequestStatus::Approved,
                        RequestStatus::Unfulfillable,
                        now,
                    )
                    .reason(why.clone())
                    .preflight(attempts, None);
                    let audit =
                        NewAuditEvent::new("system:preflight", "REQUEST_UNFULFILLABLE", now).detail(
                            json!({ "class": e.class, "message": e.message, "raw": e.raw, "attempts": attempts }),
                        );
                    let trace = event_trace(
                        TraceStage::IssuanceCheck,
                        &request,
                        TraceOutcome::Deny,
                        vec![why],
                        json!({ "record_uid": record.vault_uid, "record_type": record.record_type, "class": e.class, "attempts": attempts }),
                        self.engine.version(),
                        now,
                    );
                    let request = self
                        .store
                        .transition_request(&change, &[trace], &audit)
                        .await?;
                    let notices = vec![Self::requester_notice(&request)];
                    Ok((request, Event::Unfulfillable, notices))
                } else {
                    let wait =
                        PREFLIGHT_BACKOFF[(retries_used as usize).min(PREFLIGHT_BACKOFF.len() - 1)];
                    let next = now.plus(wait);
                    let audit =
                        NewAuditEvent::new("system:preflight", "VAULT_PREFLIGHT_DEFERRED", now)
                            .detail(json!({
                                "class": e.class, "message": e.message, "raw": e.raw,
                                "attempts": attempts, "next_attempt_at": next.to_fixed_text(),
                            }));
                    let request = self
                        .store
                        .schedule_preflight(request.id, attempts, Some(next), &audit)
                        .await?;
                    let notices = if e.class == ErrorClass::NeedsOperator {
                        Self::notices(
                            &self.admins().await?,
                            request.id,
                            NoticeKind::VaultNeedsOperator,
                        )
                    } else {
                        vec![]
                    };
                    Ok((request, Event::PreflightDeferred, notices))
                }
            }
        }
    }

    // ---- approve / deny ---------------------------------------------------------------------

    /// An approver's approval: counted toward the quorum; the deciding one approves the request
    /// with one conditional update, so concurrent approvers give exactly one decision.
    pub async fn approve(
        &self,
        approver: &User,
        request_id: i64,
        comment: Option<&str>,
    ) -> Result<Change, LifecycleError> {
        let comment = comment.map(|c| bounded(c, "comment")).transpose()?;
        for _ in 0..APPROVAL_ATTEMPTS {
            let Decidable {
                request,
                record,
                ctx,
                seen,
            } = match self.decidable(approver, request_id, "approve").await? {
                Some(d) => d,
                None => {
                    return self
                        .decide_extension(approver, request_id, true, comment.as_deref())
                        .await;
                }
            };
            let decision = self.engine.evaluate(&ctx);
            let trace = trace_record(TraceStage::ApprovalDecision, &ctx, &decision);
            let now = ctx.now;
            let stage = self.current_stage(&ctx);
            let new_approval = NewApproval {
                request_id,
                approver_id: approver.id,
                stage,
                decision: ApprovalDecision::Approve,
                comment: comment.clone(),
                at: now,
            };
            let result = match decision.outcome {
                Outcome::Deny | Outcome::RequiresHumanTriage => {
                    self.refused(
                        approver,
                        &request,
                        "APPROVAL_REFUSED",
                        &decision.reasons,
                        trace,
                    )
                    .await?;
                    return Err(LifecycleError::Refused(decision.reasons));
                }
                Outcome::AutoApprove => {
                    let secs = self.lease_secs(&request, &decision);
                    let change = StatusChange::new(
                        request_id,
                        RequestStatus::Pending,
                        RequestStatus::Approved,
                        now,
                    )
                    .decided_by(approver.id, comment.clone().unwrap_or_default())
                    .lease(now, now.plus(Duration::seconds(secs)), secs);
                    let audit = NewAuditEvent::new(actor(approver), "REQUEST_APPROVED", now)
                        .detail(json!({ "stage": stage, "approvals": seen + 1, "lease_secs": secs, "comment": comment }));
                    self.store
                        .record_approval(
                            &new_approval,
                            RequestStatus::Pending,
                            seen,
                            Some(&change),
                            &[trace],
                            &audit,
                        )
                        .await
                        .map(|(_, r)| (r, true))
                }
                Outcome::RouteToAuthority => {
                    let audit = NewAuditEvent::new(actor(approver), "APPROVAL_RECORDED", now)
                        .detail(json!({ "stage": stage, "approvals": seen + 1, "reasons": decision.reasons, "comment": comment }));
                    self.store
                        .record_approval(
                            &new_approval,
                            RequestStatus::Pending,
                            seen,
                            None,
                            &[trace],
                            &audit,
                        )
                        .await
                        .map(|(_, r)| (r, false))
                }
            };
            match result {
                Ok((request, true)) => {
                    return self
                        .after_approval(request, record, Event::Approved, decision.reasons, vec![])
                        .await;
                }
                Ok((request, false)) => {
                    // A completed stage hands over to the next: tell its approvers — or, when
                    // they reach nobody, the admins, as at submission.
                    let next = self.next_stage_approvers(&ctx, stage);
                    let reached = if next.is_empty() {
                        ReachedApprovers::default()
                    } else {
                        self.reach_approvers(&next, request.requester_id).await?
                    };
                    if !next.is_empty() && reached.users.is_empty() {
                        let mut change = self
                            .no_approver_reachable(
                                request,
                                record,
                                decision.reasons,
                                reached.unreached,
                            )
                            .await?;
                        change.notices.push(Self::requester_notice(&change.request));
                        return Ok(change);
                    }
                    let mut notices = vec![Self::requester_notice(&request)];
                    notices.extend(Self::notices(
                        &reached.users,
                        request.id,
                        NoticeKind::ApprovalNeeded,
                    ));
                    let mut reasons = decision.reasons;
                    reasons.extend(reached.unreached);
                    return Ok(Change {
                        request,
                        record,
                        event: Event::ApprovalRecorded,
                        reasons,
                        notices,
                    });
                }
                Err(StoreError::StatusConflict { .. }) => {
                    return Err(self.already_decided(request_id).await);
                }
                Err(StoreError::Conflict(m)) if m.contains("meanwhile") => continue,
                Err(StoreError::Conflict(_)) => {
                    return Err(LifecycleError::Refused(vec![
                        "you have already given your decision on this request".into(),
                    ]));
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(LifecycleError::Refused(vec![
            "too many approvers at once; try again".into(),
        ]))
    }

    /// What an approver's decision needs: the request (still PENDING), its record, and the policy
    /// context of this approver's approval with the approvals so far. `None`: the request waits
    /// for an extension, which `decide_extension` decides. Any other state is an answer for the
    /// approver.
    async fn decidable(
        &self,
        approver: &User,
        request_id: i64,
        attempt: &'static str,
    ) -> Result<Option<Decidable>, LifecycleError> {
        let request = self.visible_request(approver, request_id, attempt).await?;
        match request.status {
            RequestStatus::Pending => {}
            RequestStatus::RenewalPending => return Ok(None),
            RequestStatus::RequiresTriage => {
                return Err(LifecycleError::WrongState {
                    request_id,
                    status: request.status,
                    what: "an admin decides it from the triage queue",
                });
            }
            _ => return Err(self.already_decided(request_id).await),
        }
        let record = self.record_of(&request).await?;
        let requester = self
            .store
            .user_by_id(request.requester_id)
            .await?
            .ok_or(StoreError::NotFound("requester"))?;
        let approve_rows: Vec<ApprovalFacts> = self
            .store
            .approvals_for_request(request_id)
            .await?
            .iter()
            .filter(|a| a.decision == ApprovalDecision::Approve)
            .map(|a| ApprovalFacts {
                approver_user_id: a.approver_id,
                stage: a.stage,
            })
            .collect();
        let seen = approve_rows.len() as i64;
        let ctx = self
            .context(
                Action::Approve,
                &requester,
                Some(approver),
                &record,
                Self::facts_of(&request),
                approve_rows,
                None,
            )
            .await?;
        Ok(Some(Decidable {
            request,
            record,
            ctx,
            seen,
        }))
    }

    /// The stage an approval counts toward: the first whose quorum is not met yet.
    fn current_stage(&self, ctx: &PolicyContext) -> i32 {
        let needed = crate::policy::rules::quorum::stage_requirements(ctx, self.engine.policy());
        needed
            .iter()
            .find(|(stage, count)| {
                (ctx.approvals.iter().filter(|a| a.stage == **stage).count() as u32) < **count
            })
            .map(|(s, _)| *s)
            .unwrap_or(1)
    }

    /// The approvers of the stage after `stage`, once `stage` has just completed.
    fn next_stage_approvers(&self, ctx: &PolicyContext, stage: i32) -> Vec<Approver> {
        let policy = self.engine.policy();
        let needed = crate::policy::rules::quorum::stage_requirements(ctx, policy);
        let have = ctx.approvals.iter().filter(|a| a.stage == stage).count() as u32 + 1;
        if needed.get(&stage).is_none_or(|n| have < *n) {
            return vec![];
        }
        let stages = crate::policy::rules::quorum::approvers_by_stage(ctx, policy);
        stages
            .range(stage + 1..)
            .next()
            .map(|(_, rows)| rows.iter().map(|a| approver_of(a)).collect())
            .unwrap_or_default()
    }

    /// A refused attempt is an event too: audited with the decision that refused it.
    async fn refused(
        &self,
        who: &User,
        request: &Request,
        action: &str,
        reasons: &[String],
        trace: NewTrace,
    ) -> Result<(), StoreError> {
        self.store.insert_trace(&trace).await?;
        self.store
            .append_audit(
                &NewAuditEvent::new(actor(who), action, self.clock.now())
                    .request(request.id)
                    .record(request.record_id)
                    .detail(json!({ "reasons": reasons })),
            )
            .await?;
        Ok(())
    }

    /// An approver's denial: one resolved approver's "no" decides.
    pub async fn deny(
        &self,
        approver: &User,
        request_id: i64,
        comment: Option<&str>,
    ) -> Result<Change, LifecycleError> {
        let comment = comment.map(|c| bounded(c, "comment")).transpose()?;
        // Whoever may approve may deny: the same evaluation says whether this person may decide.
        let Decidable {
            request,
            record,
            ctx,
            seen,
        } = match self.decidable(approver, request_id, "deny").await? {
            Some(d) => d,
            None => {
                return self
                    .decide_extension(approver, request_id, false, comment.as_deref())
                    .await;
            }
        };
        let mut decision = self.engine.evaluate(&ctx);
        if matches!(
            decision.outcome,
            Outcome::Deny | Outcome::RequiresHumanTriage
        ) {
            let trace = trace_record(TraceStage::ApprovalDecision, &ctx, &decision);
            self.refused(
                approver,
                &request,
                "DENIAL_REFUSED",
                &decision.reasons,
                trace,
            )
            .await?;
            return Err(LifecycleError::Refused(decision.reasons));
        }
        let why = comment
            .clone()
            .filter(|c| !c.is_empty())
            .unwrap_or_else(|| "denied by an approver".to_string());
        // The policy said this approver may decide; the denial is theirs. The trace keeps both,
        // so replay re-derives the policy's part from the stored inputs.
        let reasons = vec![format!("{} denied it: {why}", approver.display_name)];
        let trace = person_decision_trace(
            TraceStage::ApprovalDecision,
            &ctx,
            &decision,
            Outcome::Deny,
            reasons.clone(),
        );
        decision.outcome = Outcome::Deny;
        decision.reasons = reasons;
        let now = ctx.now;
        let stage = self.current_stage(&ctx);
        let change = StatusChange::new(
            request_id,
            RequestStatus::Pending,
            RequestStatus::Denied,
            now,
        )
        .decided_by(approver.id, why.clone());
        let audit = NewAuditEvent::new(actor(approver), "REQUEST_DENIED", now)
            .detail(json!({ "stage": stage, "comment": comment }));
        let new_approval = NewApproval {
            request_id,
            approver_id: approver.id,
            stage,
            decision: ApprovalDecision::Deny,
            comment: comment.clone(),
            at: now,
        };
        match self
            .store
            .record_approval(
                &new_approval,
                RequestStatus::Pending,
                seen,
                Some(&change),
                &[trace],
                &audit,
            )
            .await
        {
            Ok((_, request)) => Ok(Change {
                notices: vec![Self::requester_notice(&request)],
                request,
                record,
                event: Event::Denied,
                reasons: decision.reasons,
            }),
            Err(StoreError::StatusConflict { .. }) => Err(self.already_decided(request_id).await),
            Err(StoreError::Conflict(m)) if m.contains("meanwhile") => {
                Box::pin(self.deny(approver, request_id, comment.as_deref())).await
            }
            Err(StoreError::Conflict(_)) => Err(LifecycleError::Refused(vec![
                "you have already given your decision on this request".into(),
            ])),
            Err(e) => Err(e.into()),
        }
    }

    // ---- triage -----------------------------------------------------------------------------

    /// An admin decides a request in triage: approve (as the deciding authority) or deny.
    pub async fn triage(
        &self,
        admin: &User,
        request_id: i64,
        approve: bool,
        reason: &str,
    ) -> Result<Change, LifecycleError> {
        if admin.role != Role::Admin {
            return Err(LifecycleError::NotAdmin);
        }
        let reason = bounded(reason, "reason")?;
        if reason.is_empty() {
            return Err(LifecycleError::BadInput(
                "A triage decision needs a reason.".into(),
            ));
        }
        let request = self.visible_request(admin, request_id, "triage").await?;
        if request.status != RequestStatus::RequiresTriage {
            return Err(match request.status {
                RequestStatus::Pending => LifecycleError::WrongState {
                    request_id,
                    status: request.status,
                    what: "its approvers decide it",
                },
                _ => self.already_decided(request_id).await,
            });
        }
        if request.requester_id == admin.id {
            return Err(LifecycleError::Refused(vec![
                "you cannot decide your own request; another admin must".into(),
            ]));
        }
        let record = self.record_of(&request).await?;
        let now = self.clock.now();
        let cap = self
            .engine
            .policy()
            .max_lease_secs(record.sensitivity)
            .min(request.requested_duration_secs)
            .max(1);
        let (to, action) = if approve {
            (RequestStatus::Approved, "TRIAGE_APPROVED")
        } else {
            (RequestStatus::Denied, "TRIAGE_DENIED")
        };
        let mut change = StatusChange::new(request_id, RequestStatus::RequiresTriage, to, now)
            .decided_by(admin.id, reason.clone());
        if approve {
            change = change.lease(now, now.plus(Duration::seconds(cap)), cap);
        }
        let trace = event_trace(
            TraceStage::ApprovalDecision,
            &request,
            if approve {
                TraceOutcome::Allow
            } else {
                TraceOutcome::Deny
            },
            vec![format!("triage by an admin: {reason}")],
            json!({ "request_id": request_id, "admin_user_id": admin.id, "approve": approve, "lease_secs": cap }),
            self.engine.version(),
            now,
        );
        let audit =
            NewAuditEvent::new(actor(admin), action, now).detail(json!({ "reason": reason }));
        let new_approval = NewApproval {
            request_id,
            approver_id: admin.id,
            stage: 1,
            decision: if approve {
                ApprovalDecision::Approve
            } else {
                ApprovalDecision::Deny
            },
            comment: Some(reason.clone()),
            at: now,
        };
        let seen = self
            .store
            .approvals_for_request(request_id)
            .await?
            .iter()
            .filter(|a| a.decision == ApprovalDecision::Approve)
            .count() as i64;
        let request = match self
            .store
            .record_approval(
                &new_approval,
                RequestStatus::RequiresTriage,
                seen,
                Some(&change),
                &[trace],
                &audit,
            )
            .await
        {
            Ok((_, r)) => r,
            Err(StoreError::StatusConflict { .. }) | Err(StoreError::Conflict(_)) => {
                return Err(self.already_decided(request_id).await);
            }
            Err(e) => return Err(e.into()),
        };
        if approve {
            self.after_approval(request, record, Event::Approved, vec![reason], vec![])
                .await
        } else {
            Ok(Change {
                notices: vec![Self::requester_notice(&request)],
                request,
                record,
                event: Event::Denied,
                reasons: vec![reason],
            })
        }
    }

    /// Requests waiting in triage, oldest first.
    pub async fn triage_queue(&self, limit: i64) -> Result<Vec<Request>, LifecycleError> {
        Ok(self
            .store
            .requests_in_status(&[RequestStatus::RequiresTriage], limit)
            .await?)
    }

    // ---- retrieve ---------------------------------------------------------------------------

    /// Mints a fresh issuance token for the signed-in requester's page (32 bytes from the OS, only
    /// its SHA-256 kept), replacing any unused one.
    pub async fn mint_issuance_token(
        &self,
        requester: &User,
        request_id: i64,
    ) -> Result<IssuanceToken, LifecycleError> {
        let request = self.own_request(requester, request_id, "retrieve").await?;
        let now = self.clock.now();
        self.check_retrievable(&request, now)?;
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes).map_err(|e| {
            LifecycleError::Store(StoreError::Invalid(format!("no randomness: {e}")))
        })?;
        use base64::Engine as _;
        let token = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
        let expires_at = now.plus(Duration::seconds(
            self.settings.issuance_token_ttl_secs as i64,
        ));
        let audit = NewAuditEvent::new(actor(requester), "ISSUANCE_TOKEN_MINTED", now)
            .detail(json!({ "expires_at": expires_at.to_fixed_text() }));
        let request = match self
            .store
            .set_issuance_token(request_id, &sha256_hex(&token), expires_at, now, &audit)
            .await
        {
            Ok(r) => r,
            Err(StoreError::Conflict(_)) => {
                let r = self.request(request_id).await?;
                self.check_retrievable(&r, now)?;
                return Err(LifecycleError::NoRetrievalsLeft(request_id));
            }
            Err(e) => return Err(e.into()),
        };
        Ok(IssuanceToken {
            token: SecretString::from(token),
            expires_at,
            issuances_left: request.issuances_left(),
        })
    }

    fn check_retrievable(&self, request: &Request, now: Timestamp) -> Result<(), LifecycleError> {
        if !request.status.has_live_lease() || request.lease_expires_at.is_none_or(|e| e <= now) {
            return Err(LifecycleError::WrongState {
                request_id: request.id,
                status: request.status,
                what: "there is no live lease to retrieve",
            });
        }
        if request.issuances_left() == 0 {
            return Err(LifecycleError::NoRetrievalsLeft(request.id));
        }
        Ok(())
    }

    /// Exchanges an issuance token for a fresh one-time share. The token is checked in constant
    /// time and used up; the retrieval is counted with its IssuanceEvent in one transaction, and
    /// only while `issuance_count < max_issuances` (INV-4). A passing vault failure uses nothing
    /// up. The URL goes back to the caller and nowhere else (INV-5).
    pub async fn exchange(
        &self,
        requester: &User,
        request_id: i64,
        token: &SecretString,
        second_factor_verified: bool,
        client: ClientInfo,
    ) -> Result<Retrieved, LifecycleError> {
        let presented = sha256_hex(token.expose_secret());
        self.exchange_by_hash(
            requester,
            request_id,
            presented,
            second_factor_verified,
            client,
        )
        .await
    }

    /// Step 1 of a two-step retrieval (a second factor is required): checks the token exactly as
    /// [`Lifecycle::exchange`] does — constant time, unexpired, a mismatch audited, a live lease
    /// with retrievals left — but uses nothing up. Returns the token's SHA-256, which the OTP
    /// challenge binds; step 2 is [`Lifecycle::exchange_verified`].
    pub async fn check_issuance_token(
        &self,
        requester: &User,
        request_id: i64,
        token: &SecretString,
    ) -> Result<(Request, String), LifecycleError> {
        let presented = sha256_hex(token.expose_secret());
        let request = self
            .own_request_with_token(requester, request_id, &presented)
            .await?;
        Ok((request, presented))
    }

    /// Step 2 of a two-step retrieval: the second factor was verified on a challenge bound to
    /// `token_hash` (from [`Lifecycle::check_issuance_token`]). Uses the token up by that hash and
    /// creates the share, as [`Lifecycle::exchange`] does. A token minted since step 1 replaced
    /// the bound one, so the hash no longer matches and nothing is shared.
    pub async fn exchange_verified(
        &self,
        requester: &User,
        request_id: i64,
        token_hash: &str,
        client: ClientInfo,
    ) -> Result<Retrieved, LifecycleError> {
        self.exchange_by_hash(requester, request_id, token_hash.to_string(), true, client)
            .await
    }

    /// The requester's request whose current, unexpired token hashes to `presented`, with a
    /// live lease and retrievals left. A mismatch is audited.
    async fn own_request_with_token(
        &self,
        requester: &User,
        request_id: i64,
        presented: &str,
    ) -> Result<Request, LifecycleError> {
        let request = self.own_request(requester, request_id, "retrieve").await?;
        let now = self.clock.now();
        let stored_ok = request.issuance_token_hash.as_deref().is_some_and(|h| {
            same_digest(h, presented) && request.issuance_token_expires_at.is_some_and(|e| e > now)
        });
        if !stored_ok {
            self.store
                .append_audit(
                    &NewAuditEvent::new(actor(requester), "ISSUANCE_TOKEN_MISMATCH", now)
                        .request(request_id)
                        .record(request.record_id),
                )
                .await?;
            return Err(LifecycleError::TokenMismatch);
        }
        self.check_retrievable(&request, now)?;
        Ok(request)
    }

    async fn exchange_by_hash(
        &self,
        requester: &User,
        request_id: i64,
        presented: String,
        second_factor_verified: bool,
        client: ClientInfo,
    ) -> Result<Retrieved, LifecycleError> {
        let request = self
            .own_request_with_token(requester, request_id, &presented)
            .await?;
        let now = self.clock.now();
        if !second_factor_verified && self.second_factor_required(&request).await? {
            return Err(LifecycleError::SecondFactorRequired);
        }
        let token_expires = request.issuance_token_expires_at.unwrap_or(now);
        let Some(request) = self
            .store
            .consume_issuance_token(request_id, &presented, now, now.minus(RETRIEVAL_DEAD_AFTER))
            .await?
        else {
            // Someone else used the token first, or every retrieval left is taken.
            let now_seen = self.request(request_id).await?;
            if now_seen.issuance_token_hash.as_deref() == Some(presented.as_str()) {
                if now_seen.issuances_left() == 0 {
                    return Err(LifecycleError::NoRetrievalsLeft(request_id));
                }
                return Err(LifecycleError::RetrievalInProgress(request_id));
            }
            return Err(LifecycleError::TokenMismatch);
        };
        let record = self.record_of(&request).await?;
        let lease_end = request.lease_expires_at.unwrap_or(now);
        let ttl = lease_end.since(now);
        let name = format!("{}-{}", request.id, request.issuance_count + 1);
        let share = match self.sharer.create(&record.vault_uid, ttl, &name).await {
            Ok(share) => share,
            Err(e) => {
                return Err(self
                    .exchange_failed(&request, &presented, token_expires, e)
                    .await);
            }
        };
        let issuance = NewIssuance {
            request_id,
            share_link_hash: share.url.hash(),
            vault_share_id: share.share_id.clone(),
            client_ip: client.ip,
            user_agent: client.user_agent.map(|u| u.chars().take(256).collect()),
            issued_at: now,
            expires_at: share.expires_at.min(lease_end),
        };
        let trace = event_trace(
            TraceStage::IssuanceEvent,
            &request,
            TraceOutcome::Allow,
            vec![format!(
                "retrieval {} of {}",
                request.issuance_count + 1,
                request.max_issuances
            )],
            json!({
                "request_id": request_id, "record_uid": record.vault_uid,
                "issuance_count": request.issuance_count, "max_issuances": request.max_issuances,
                "second_factor": second_factor_verified,
            }),
            self.engine.version(),
            now,
        );
        let audit = NewAuditEvent::new(actor(requester), "ISSUANCE_SUCCEEDED", now).detail(json!({
            "retrieval": request.issuance_count + 1,
            "max_issuances": request.max_issuances,
            "share_expires_at": issuance.expires_at.to_fixed_text(),
        }));
        match self
            .store
            .record_issuance(&issuance, now, &[trace], &audit)
            .await
        {
            Ok((request, event)) => Ok(Retrieved {
                url: share.url,
                expires_at: event.expires_at,
                issuance_count: request.issuance_count,
                max_issuances: request.max_issuances,
            }),
            Err(e) => {
                // The share exists but was not recorded: it must not survive, and its reservation
                // is given back once it is gone.
                self.remove_orphan(&record.vault_uid, &share.share_id, &name)
                    .await;
                if let Err(release) = self.store.release_issuance_reservation(request_id).await {
                    tracing::warn!(request_id, error = %release, "retrieval reservation not released");
                }
                Err(match e {
                    StoreError::Conflict(_) => LifecycleError::NoRetrievalsLeft(request_id),
                    other => other.into(),
                })
            }
        }
    }

    async fn exchange_failed(
        &self,
        request: &Request,
        token_hash: &str,
        token_expires: Timestamp,
        e: VaultError,
    ) -> LifecycleError {
        let now = self.clock.now();
        let audit = NewAuditEvent::new("system:issuance", "ISSUANCE_VAULT_FAIL", now)
            .request(request.id)
            .record(request.record_id)
            .detail(json!({ "class": e.class, "message": e.message, "raw": e.raw }));
        if e.class == ErrorClass::Terminal {
            // Nothing will ever be shareable: an unissued lease becomes UNFULFILLABLE.
            let result = match self.store.append_audit(&audit).await {
                // The state change has its own event, as on the approval path (#15.8).
                Ok(_) if request.status == RequestStatus::Approved => {
                    let change = StatusChange::new(
                        request.id,
                        RequestStatus::Approved,
                        RequestStatus::Unfulfillable,
                        now,
                    )
                    .reason(e.message.clone());
                    let unfulfillable =
                        NewAuditEvent::new("system:issuance", "REQUEST_UNFULFILLABLE", now).detail(
                            json!({ "class": e.class, "message": e.message, "raw": e.raw, "at": "retrieval" }),
                        );
                    self.store
                        .transition_request(&change, &[], &unfulfillable)
                        .await
                        .map(|_| ())
                }
                other => other.map(|_| ()),
            };
            if let Err(err) = result {
                return err.into();
            }
            if let Err(err) = self.store.release_issuance_reservation(request.id).await {
                return err.into();
            }
            return LifecycleError::VaultRefused(e.message);
        }
        // A passing failure: the page may try again with the same token.
        match self
            .store
            .restore_issuance_token(request.id, token_hash, token_expires, &audit)
            .await
        {
            Ok(()) => LifecycleError::VaultUnavailable,
            Err(err) => err.into(),
        }
    }

    /// Removes a share that was created but not recorded: by id, then by name until the vault
    /// says there is none, so a retry never leaves two live links.
    async fn remove_orphan(&self, record_uid: &str, share_id: &str, name: &str) {
        if let Ok(Removed::Removed | Removed::NotFound) =
            self.sharer.remove(record_uid, share_id).await
        {
            return;
        }
        for _ in 0..3 {
            match self.sharer.remove(record_uid, name).await {
                Ok(Removed::NotFound) => return,
                Ok(Removed::Removed) => continue,
                Err(e) => tracing::warn!(error = %e.message, "orphaned share not removed yet"),
            }
        }
        tracing::error!("an unrecorded one-time share may still be live; remove it by name");
    }

    // ---- ending a lease ---------------------------------------------------------------------

    /// The requester gives the credential back early.
    pub async fn release(
        &self,
        requester: &User,
        request_id: i64,
    ) -> Result<Change, LifecycleError> {
        let request = self.own_request(requester, request_id, "release").await?;
        if !request.status.has_live_lease() {
            return Err(match request.status {
                RequestStatus::Pending | RequestStatus::RequiresTriage => {
                    LifecycleError::WrongState {
                        request_id,
                        status: request.status,
                        what: "there is no lease to release yet",
                    }
                }
                _ => LifecycleError::WrongState {
                    request_id,
                    status: request.status,
                    what: "its lease has already ended",
                },
            });
        }
        self.end_lease(
            request,
            RequestStatus::Released,
            &actor(requester),
            "LEASE_RELEASED",
            "released by the requester".into(),
            Event::Released,
        )
        .await
    }

    /// An admin ends a lease now.
    pub async fn revoke(
        &self,
        admin: &User,
        request_id: i64,
        reason: &str,
    ) -> Result<Change, LifecycleError> {
        if admin.role != Role::Admin {
            return Err(LifecycleError::NotAdmin);
        }
        let reason = bounded(reason, "reason")?;
        let request = self.visible_request(admin, request_id, "revoke").await?;
        if !request.status.has_live_lease() {
            return Err(LifecycleError::WrongState {
                request_id,
                status: request.status,
                what: "there is no live lease to revoke",
            });
        }
        let why = if reason.is_empty() {
            "revoked by an admin".to_string()
        } else {
            format!("revoked by an admin: {reason}")
        };
        self.end_lease(
            request,
            RequestStatus::Expired,
            &actor(admin),
            "LEASE_REVOKED",
            why,
            Event::Revoked,
        )
        .await
    }

    /// Ends the lease of someone who lost access to the record's folder (permission sync).
    pub async fn revoke_for_lost_permission(
        &self,
        request_id: i64,
    ) -> Result<Change, LifecycleError> {
        let request = self.request(request_id).await?;
        self.end_lease(
            request,
            RequestStatus::Expired,
            "system:permission-sync",
            "LEASE_REVOKED_PERMISSION_LOST",
            "the requester no longer has access to the record's vault folder".into(),
            Event::Revoked,
        )
        .await
    }

    /// The scheduler's half: a lease past its end is expired; an ended request whose shares are
    /// not all removed yet has them removed.
    pub async fn expire_due(&self, request: Request) -> Result<Change, LifecycleError> {
        if request.status.has_live_lease() {
            return self
                .end_lease(
                    request,
                    RequestStatus::Expired,
                    "system:lease-expiry",
                    "LEASE_EXPIRED",
                    "the lease ran out".into(),
                    Event::Expired,
                )
                .await;
        }
        let record = self.record_of(&request).await?;
        self.revoke_shares(&request, &record, "system:lease-expiry")
            .await?;
        let event = match request.status {
            RequestStatus::Released => Event::Released,
            _ => Event::Expired,
        };
        Ok(Change {
            request,
            record,
            event,
            reasons: vec![],
            notices: vec![],
        })
    }

    /// The scheduler's batched path: [`Lifecycle::expire_due`] for a whole claimed batch, with
    /// two write transactions in all instead of two per lease. The live leases are expired in
    /// one transaction ([`crate::store::LeaseStore::expire_leases`]: a row that changed since it
    /// was claimed is skipped), each with the trace and audit event `expire_due` writes; then
    /// every outstanding share of the leases expired here and of the ended requests in the batch
    /// is removed by share id, and the removed ones are marked revoked with their SHARE_REVOKED
    /// events in a second transaction. A removal that fails is counted and left for the next
    /// run, as in `revoke_shares`.
    pub async fn expire_due_batch(
        &self,
        requests: Vec<Request>,
        claims: &dyn ClaimCheck,
    ) -> Result<ExpiryBatch, LifecycleError> {
        const WHO: &str = "system:lease-expiry";
        const WHY: &str = "the lease ran out";
        let now = self.clock.now();
        let ids: Vec<i64> = requests.iter().map(|r| r.id).collect();
        let mut outstanding: HashMap<i64, Vec<IssuanceEvent>> = HashMap::new();
        for share in self.store.outstanding_issuances_for(&ids).await? {
            outstanding.entry(share.request_id).or_default().push(share);
        }
        let (live, ended): (Vec<Request>, Vec<Request>) = requests
            .into_iter()
            .partition(|r| r.status.has_live_lease());
        let endings: Vec<LeaseEnding> = live
            .iter()
            .map(|request| {
                let shares = outstanding.get(&request.id).map_or(0, Vec::len);
                let trace = event_trace(
                    TraceStage::RevocationEvent,
                    request,
                    TraceOutcome::Allow,
                    vec![WHY.to_string()],
                    json!({ "request_id": request.id, "from": request.status, "to": RequestStatus::Expired, "outstanding_shares": shares }),
                    self.engine.version(),
                    now,
                );
                let audit = NewAuditEvent::new(WHO, "LEASE_EXPIRED", now).detail(json!({
                    "reason": WHY,
                    "outstanding_shares": shares,
                    "issuance_count": request.issuance_count,
                }));
                LeaseEnding {
                    request_id: request.id,
                    from: request.status,
                    trace,
                    audit,
                }
            })
            .collect();
        let expired = if endings.is_empty() {
            Vec::new()
        } else {
            self.store.expire_leases(&endings, WHY, now).await?
        };
        let mut batch = ExpiryBatch {
            skipped: live.len() - expired.len(),
            shares_retried: ended.len(),
            notices: expired.iter().map(Self::requester_notice).collect(),
            ..ExpiryBatch::default()
        };
        // Shares of leases that changed meanwhile are not ours to remove: whoever changed them
        // removes them (or they are still in use, after an extension).
        let mut records: HashMap<i64, Record> = HashMap::new();
        let mut revocations = Vec::new();
        let mut already_gone: HashMap<i64, bool> = HashMap::new();
        for request in expired.iter().chain(&ended) {
            let Some(shares) = outstanding.remove(&request.id) else {
                continue;
            };
            if let std::collections::hash_map::Entry::Vacant(slot) =
                records.entry(request.record_id)
            {
                slot.insert(self.record_of(request).await?);
            }
            let record = &records[&request.record_id];
            for (i, share) in shares.iter().enumerate() {
                if !claims.still_held(request.id).await {
                    batch.shares_claim_lost += shares.len() - i;
                    tracing::warn!(
                        request_id = request.id,
                        "claim lost to another instance; its shares are left to it"
                    );
                    break;
                }
                match self
                    .remove_share(&record.vault_uid, &share.vault_share_id)
                    .await
                {
                    Ok(outcome) => {
                        let gone = outcome == Removed::NotFound;
                        already_gone.insert(share.id, gone);
                        revocations.push(ShareRevocation {
                            issuance_id: share.id,
                            audit: NewAuditEvent::new(WHO, "SHARE_REVOKED", now)
                                .request(request.id)
                                .record(request.record_id)
                                .detail(json!({ "issuance_id": share.id, "already_gone": gone })),
                        });
                    }
                    Err(e) => {
                        batch.shares.failed += 1;
                        tracing::warn!(request_id = request.id, issuance_id = share.id, error = %e.message,
                            "share not removed; the scheduler will try again");
                        self.store.record_revoke_failure(share.id, &e.raw).await?;
                    }
                }
            }
        }
        for id in self
            .store
            .mark_issuances_revoked_batch(&revocations, now)
            .await?
        {
            if already_gone.get(&id).copied().unwrap_or(false) {
                batch.shares.already_gone += 1;
            } else {
                batch.shares.removed += 1;
            }
        }
        batch.expired = expired;
        Ok(batch)
    }

    async fn end_lease(
        &self,
        request: Request,
        to: RequestStatus,
        who: &str,
        action: &str,
        why: String,
        event: Event,
    ) -> Result<Change, LifecycleError> {
        let record = self.record_of(&request).await?;
        let now = self.clock.now();
        let change = StatusChange::new(request.id, request.status, to, now).reason(why.clone());
        let outstanding = self.store.outstanding_issuances(request.id).await?.len();
        let trace = event_trace(
            TraceStage::RevocationEvent,
            &request,
            TraceOutcome::Allow,
            vec![why.clone()],
            json!({ "request_id": request.id, "from": request.status, "to": to, "outstanding_shares": outstanding }),
            self.engine.version(),
            now,
        );
        let audit = NewAuditEvent::new(who, action, now).detail(json!({
            "reason": why,
            "outstanding_shares": outstanding,
            "issuance_count": request.issuance_count,
        }));
        let request = match self
            .store
            .transition_request(&change, &[trace], &audit)
            .await
        {
            Ok(r) => r,
            Err(StoreError::StatusConflict { .. }) => {
                return Err(self.already_decided(request.id).await);
            }
            Err(e) => return Err(e.into()),
        };
        self.revoke_shares(&request, &record, who).await?;
        Ok(Change {
            notices: vec![Self::requester_notice(&request)],
            request,
            record,
            event,
            reasons: vec![why],
        })
    }

    /// Removes one share by id. "Not found" counts as removed only from a backend that knows
    /// every share; from one that cannot know (it may live in another instance), it is a failed
    /// removal: retried, and alerted on after a few runs, never recorded as revoked.
    async fn remove_share(
        &self,
        record_uid: &str,
        share_id: &str,
    ) -> Result<Removed, crate::vault::VaultError> {
        match self.sharer.remove(record_uid, share_id).await? {
            Removed::NotFound if !self.sharer.knows_every_share() => {
                Err(crate::vault::VaultError::new(
                    crate::vault::ErrorClass::Transient,
                    "the vault could not confirm the share is gone",
                    "not found by a vault that knows only its own process's shares",
                ))
            }
            outcome => Ok(outcome),
        }
    }

    /// Removes every outstanding share of the request by its share id. A removal that fails is
    /// counted and left for the scheduler's next pass.
    pub async fn revoke_shares(
        &self,
        request: &Request,
        record: &Record,
        who: &str,
    ) -> Result<RevokeCounts, StoreError> {
        let mut counts = RevokeCounts::default();
        for share in self.store.outstanding_issuances(request.id).await? {
            match self
                .remove_share(&record.vault_uid, &share.vault_share_id)
                .await
            {
                Ok(outcome) => {
                    let gone = outcome == Removed::NotFound;
                    let audit = NewAuditEvent::new(who, "SHARE_REVOKED", self.clock.now())
                        .request(request.id)
                        .record(request.record_id)
                        .detail(json!({ "issuance_id": share.id, "already_gone": gone }));
                    if self
                        .store
                        .mark_issuance_revoked(share.id, self.clock.now(), &audit)
                        .await?
                    {
                        if gone {
                            counts.already_gone += 1;
                        } else {
                            counts.removed += 1;
                        }
                    }
                }
                Err(e) => {
                    counts.failed += 1;
                    tracing::warn!(request_id = request.id, issuance_id = share.id, error = %e.message,
                        "share not removed; the scheduler will try again");
                    self.store.record_revoke_failure(share.id, &e.raw).await?;
                }
            }
        }
        Ok(counts)
    }

    // ---- extend -----------------------------------------------------------------------------

    /// More time on a live lease: granted at once when the policy allows, otherwise the request
    /// waits in RENEWAL_PENDING for one approver.
    pub async fn extend(
        &self,
        requester: &User,
        request_id: i64,
        extra_secs: i64,
    ) -> Result<Change, LifecycleError> {
        self.extend_once(requester, request_id, extra_secs, None)
            .await
    }

    /// As [`extend`](Self::extend), for the command `origin` names (a Teams activity). A turn that
    /// failed after asking is run again when Teams redelivers it; unlike a decision, a second
    /// extension is legal, so the command itself must be recognised: it is answered, not asked
    /// again.
    pub async fn extend_once(
        &self,
        requester: &User,
        request_id: i64,
        extra_secs: i64,
        origin: Option<&str>,
    ) -> Result<Change, LifecycleError> {
        let request = self.own_request(requester, request_id, "extend").await?;
        if let Some(origin) = origin {
            let asked = self
                .store
                .audit_events_for_request(request_id)
                .await?
                .iter()
                .any(|e| e.action == "EXTENSION_REQUESTED" && e.detail.0["origin"] == origin);
            if asked {
                return Err(LifecycleError::AlreadyExtended(request_id));
            }
        }
        if !matches!(
            request.status,
            RequestStatus::Approved | RequestStatus::Issued
        ) {
            return Err(LifecycleError::WrongState {
                request_id,
                status: request.status,
                what: "only a live lease can be extended",
            });
        }
        let record = self.record_of(&request).await?;
        let ctx = self
            .context(
                Action::Extend,
                requester,
                None,
                &record,
                Self::facts_of(&request),
                vec![],
                Some(extra_secs),
            )
            .await?;
        let decision = self.engine.evaluate(&ctx);
        let trace = trace_record(TraceStage::ApprovalDecision, &ctx, &decision);
        let now = ctx.now;
        if decision.outcome == Outcome::Deny {
            self.refused(
                requester,
                &request,
                "EXTENSION_REFUSED",
                &decision.reasons,
                trace,
            )
            .await?;
            return Err(LifecycleError::Refused(decision.reasons));
        }
        let ask = StatusChange {
            renewal_duration_secs: Some(extra_secs),
            ..StatusChange::new(
                request_id,
                request.status,
                RequestStatus::RenewalPending,
                now,
            )
        };
        let mut detail = json!({ "extra_secs": extra_secs, "outcome": decision.outcome, "reasons": decision.reasons });
        if let Some(origin) = origin {
            detail["origin"] = json!(origin);
        }
        let audit = NewAuditEvent::new(actor(requester), "EXTENSION_REQUESTED", now).detail(detail);
        let pending = match self.store.transition_request(&ask, &[trace], &audit).await {
            Ok(r) => r,
            Err(StoreError::StatusConflict { .. }) => {
                return Err(self.already_decided(request_id).await);
            }
            Err(e) => return Err(e.into()),
        };
        if decision.outcome == Outcome::AutoApprove {
            return self
                .grant_extension(pending, record, None, decision.reasons)
                .await;
        }
        let approvers: Vec<Approver> = decision
            .required_approvals
            .iter()
            .flat_map(|r: &RequiredApproval| r.approvers.clone())
            .collect();
        let mut people = self.resolve_approvers(&approvers, requester.id).await?;
        if people.is_empty() {
            people = self.admins().await?;
            people.retain(|u| u.id != requester.id);
        }
        Ok(Change {
            notices: Self::notices(&people, request_id, NoticeKind::ExtensionNeeded),
            request: pending,
            record,
            event: Event::ExtensionRequested,
            reasons: decision.reasons,
        })
    }

    async fn grant_extension(
        &self,
        request: Request,
        record: Record,
        approver: Option<&User>,
        reasons: Vec<String>,
    ) -> Result<Change, LifecycleError> {
        let now = self.clock.now();
        let extra = request.renewal_duration_secs.unwrap_or(0);
        let back_to = if request.issuance_count > 0 {
            RequestStatus::Issued
        } else {
            RequestStatus::Approved
        };
        let expires = request
            .lease_expires_at
            .unwrap_or(now)
            .plus(Duration::seconds(extra));
        let total = request.approved_duration_secs.unwrap_or(0) + extra;
        let mut change = StatusChange {
            lease_expires_at: Some(expires),
            approved_duration_secs: Some(total),
            extension_granted: true,
            ..StatusChange::new(request.id, RequestStatus::RenewalPending, back_to, now)
        };
        if let Some(a) = approver {
            change = change.decided_by(a.id, "extension approved");
        }
        let who = approver
            .map(actor)
            .unwrap_or_else(|| "system:policy".into());
        let audit = NewAuditEvent::new(who, "LEASE_EXTENDED", now).detail(json!({
            "extra_secs": extra,
            "lease_expires_at": expires.to_fixed_text(),
        }));
        let request = match self.store.transition_request(&change, &[], &audit).await {
            Ok(r) => r,
            Err(StoreError::StatusConflict { .. }) => {
                return Err(self.already_decided(request.id).await);
            }
            Err(e) => return Err(e.into()),
        };
        Ok(Change {
            notices: vec![Self::requester_notice(&request)],
            request,
            record,
            event: Event::Extended,
            reasons,
        })
    }

    /// One approver grants or refuses the extra time asked for.
    pub async fn decide_extension(
        &self,
        approver: &User,
        request_id: i64,
        approve: bool,
        comment: Option<&str>,
    ) -> Result<Change, LifecycleError> {
        let attempt = if approve { "approve" } else { "deny" };
        let request = self.visible_request(approver, request_id, attempt).await?;
        if request.status != RequestStatus::RenewalPending {
            return Err(self.already_decided(request_id).await);
        }
        let record = self.record_of(&request).await?;
        let requester = self
            .store
            .user_by_id(request.requester_id)
            .await?
            .ok_or(StoreError::NotFound("requester"))?;
        // A renewal is its own round: earlier approvals don't count, one approver decides.
        let ctx = self
            .context(
                Action::Approve,
                &requester,
                Some(approver),
                &record,
                Self::facts_of(&request),
                vec![],
                None,
            )
            .await?;
        let decision = self.engine.evaluate(&ctx);
        let trace = trace_record(TraceStage::ApprovalDecision, &ctx, &decision);
        if matches!(
            decision.outcome,
            Outcome::Deny | Outcome::RequiresHumanTriage
        ) {
            self.refused(
                approver,
                &request,
                "APPROVAL_REFUSED",
                &decision.reasons,
                trace,
            )
            .await?;
            return Err(LifecycleError::Refused(decision.reasons));
        }
        self.store.insert_trace(&trace).await?;
        if approve {
            return self
                .grant_extension(request, record, Some(approver), decision.reasons)
                .await;
        }
        let now = ctx.now;
        let back_to = if request.issuance_count > 0 {
            RequestStatus::Issued
        } else {
            RequestStatus::Approved
        };
        let why = comment
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .unwrap_or("extension refused")
            .to_string();
        let change = StatusChange::new(request_id, RequestStatus::RenewalPending, back_to, now)
            .decided_by(approver.id, why.clone());
        let audit = NewAuditEvent::new(actor(approver), "EXTENSION_DENIED", now)
            .detail(json!({ "comment": why }));
        let request = match self.store.transition_request(&change, &[], &audit).await {
            Ok(r) => r,
            Err(StoreError::StatusConflict { .. }) => {
                return Err(self.already_decided(request_id).await);
            }
            Err(e) => return Err(e.into()),
        };
        Ok(Change {
            notices: vec![Self::requester_notice(&request)],
            request,
            record,
            event: Event::ExtensionDenied,
            reasons: vec![why],
        })
    }

    // ---- undecided requests (scheduler) -----------------------------------------------------

    /// A request nobody decided: remind its approvers once, then move it to triage, and expire it
    /// when it has waited too long.
    pub async fn chase_undecided(
        &self,
        request: Request,
    ) -> Result<Option<Change>, LifecycleError> {
        if !matches!(
            request.status,
            RequestStatus::Pending | RequestStatus::RequiresTriage
        ) {
            return Ok(None);
        }
        let now = self.clock.now();
        let age = now.since(request.created_at);
        let s = &self.settings;
        let record = self.record_of(&request).await?;
        if age >= Duration::seconds(s.undecided_ttl_secs as i64) {
            let change = StatusChange::new(request.id, request.status, RequestStatus::Expired, now)
                .reason("nobody decided in time");
            let audit =
                NewAuditEvent::new("system:stale-requests", "REQUEST_EXPIRED_UNDECIDED", now)
                    .detail(json!({ "waited_secs": age.whole_seconds() }));
            return match self.store.transition_request(&change, &[], &audit).await {
                Ok(request) => Ok(Some(Change {
                    notices: vec![Self::requester_notice(&request)],
                    request,
                    record,
                    event: Event::Expired,
                    reasons: vec!["nobody decided in time".into()],
                })),
                Err(StoreError::StatusConflict { .. }) => Ok(None),
                Err(e) => Err(e.into()),
            };
        }
        if request.status == RequestStatus::Pending
            && age >= Duration::seconds(s.escalate_after_secs as i64)
        {
            let change = StatusChange::new(
                request.id,
                RequestStatus::Pending,
                RequestStatus::RequiresTriage,
                now,
            )
            .reason("approvers did not decide in time; escalated to admins");
            let audit = NewAuditEvent::new("system:stale-requests", "REQUEST_ESCALATED", now)
                .detail(json!({ "waited_secs": age.whole_seconds() }));
            return match self.store.transition_request(&change, &[], &audit).await {
                Ok(request) => {
                    let admins = self.admins().await?;
                    Ok(Some(Change {
                        notices: Self::notices(&admins, request.id, NoticeKind::TriageNeeded),
                        request,
                        record,
                        event: Event::Escalated,
                        reasons: vec!["escalated to admins".into()],
                    }))
                }
                Err(StoreError::StatusConflict { .. }) => Ok(None),
                Err(e) => Err(e.into()),
            };
        }
        if request.reminded_at.is_none()
            && age >= Duration::seconds(s.reminder_after_secs as i64)
            && self
                .store
                .mark_notified_once(request.id, false, now)
                .await?
        {
            let people = if request.status == RequestStatus::RequiresTriage {
                self.admins().await?
            } else {
                let requester = self
                    .store
                    .user_by_id(request.requester_id)
                    .await?
                    .ok_or(StoreError::NotFound("requester"))?;
                let ctx = self
                    .context(
                        Action::Submit,
                        &requester,
                        None,
                        &record,
                        RequestFacts {
                            request_id: None,
                            status: None,
                            ..Self::facts_of(&request)
                        },
                        vec![],
                        None,
                    )
                    .await?;
                let approvers: Vec<Approver> =
                    crate::policy::rules::quorum::approvers_by_stage(&ctx, self.engine.policy())
                        .into_values()
                        .next()
                        .unwrap_or_default()
                        .into_iter()
                        .map(approver_of)
                        .collect();
                self.resolve_approvers(&approvers, request.requester_id)
                    .await?
            };
            self.store
                .append_audit(
                    &NewAuditEvent::new("system:stale-requests", "APPROVERS_REMINDED", now)
                        .request(request.id)
                        .record(request.record_id)
                        .detail(json!({ "people": people.len() })),
                )
                .await?;
            return Ok(Some(Change {
                notices: Self::notices(&people, request.id, NoticeKind::Reminder),
                request,
                record,
                event: Event::Routed,
                reasons: vec![],
            }));
        }
        Ok(None)
    }

    /// Ends the leases of people who can no longer see the record's folder (after a permission
    /// sync). Someone whose group memberships could not be read keeps their lease: an outage of
    /// the directory must not revoke everybody.
    pub async fn revoke_lost_permissions(&self) -> Result<Vec<Change>, LifecycleError> {
        let live = self
            .store
            .requests_in_status(
                &[
                    RequestStatus::Approved,
                    RequestStatus::Issued,
                    RequestStatus::RenewalPending,
                ],
                100_000,
            )
            .await?;
        let mut changes = Vec::new();
        for request in live {
            let Some(record) = self.store.record_by_id(request.record_id).await? else {
                continue;
            };
            let Some(folder) = record.folder_id else {
                continue;
            };
            let Some(requester) = self.store.user_by_id(request.requester_id).await? else {
                continue;
            };
            let perms = self.permissions.effective(&requester).await?;
            if perms.degraded || perms.may_request(folder) {
                continue;
            }
            match self.revoke_for_lost_permission(request.id).await {
                Ok(change) => changes.push(change),
                Err(LifecycleError::AlreadyDecided { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(changes)
    }

    /// "Your lease ends soon", once per lease (again after an extension).
    pub async fn warn_expiry(&self, request: &Request) -> Result<Option<Notice>, LifecycleError> {
        let now = self.clock.now();
        if self.store.mark_notified_once(request.id, true, now).await? {
            Ok(Some(Notice {
                user_id: request.requester_id,
                request_id: request.id,
                kind: NoticeKind::ExpiringSoon,
            }))
        } else {
            Ok(None)
        }
    }
}

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
    fn digests_compare_equal_only_when_identical() {
        let a = sha256_hex("token-a");
        assert!(same_digest(&a, &a.clone()));
        assert!(!same_digest(&a, &sha256_hex("token-b")));
        assert!(!same_digest(&a, &a[..10]));
    }

    #[test]
    fn backoff_follows_the_seed_schedule() {
        let secs: Vec<i64> = PREFLIGHT_BACKOFF
            .iter()
            .map(|d| d.whole_seconds())
            .collect();
        assert_eq!(secs, vec![30, 60, 120, 240]);
    }
}
