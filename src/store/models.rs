//! Rows as the application sees them, and the inputs that create them.
//! Row structs derive `FromRow` generically, so one definition serves both databases.

use crate::domain::{
    ApprovalDecision, AuthorityKind, DiscoverySource, FactorChange, FolderPermission, OtpChannel,
    PhoneSource, PolicyKind, PrincipalType, RequestStatus, Role, Sensitivity, SyncStatus,
    Timestamp, TraceOutcome, TraceStage, VaultPrincipalType,
};
use serde::Serialize;
use serde_json::Value;
use sqlx::types::Json;

#[derive(Debug, Clone, PartialEq, sqlx::FromRow, Serialize)]
pub struct User {
    pub id: i64,
    pub aad_object_id: String,
    pub tenant_id: Option<String>,
    pub teams_user_id: Option<String>,
    pub upn: Option<String>,
    pub email: Option<String>,
    pub display_name: String,
    pub role: Role,
    pub allow_multiple_leases: bool,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    /// When the directory was last asked for the person's mail and UPN (`None`: never).
    pub directory_checked_at: Option<Timestamp>,
    /// That ask failed or its answer was not about this person: nothing was learnt from it.
    pub directory_check_failed: bool,
}

/// A Teams turn's sender as read at its start ([`super::UserStore::turn_sender`]).
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct TurnSender {
    #[sqlx(flatten)]
    pub user: User,
    /// The IANA zone their Teams client last reported (`None`: never).
    pub time_zone: Option<String>,
    /// Notices wait for them (approval notices the bot could not deliver before).
    pub notices_waiting: bool,
}

/// Who a person is, as Teams or Entra tells us. Upserting never changes a stored role.
#[derive(Debug, Clone)]
pub struct NewUser {
    pub aad_object_id: String,
    pub tenant_id: Option<String>,
    pub teams_user_id: Option<String>,
    pub upn: Option<String>,
    pub email: Option<String>,
    pub display_name: String,
    /// The role given to a user seen for the first time.
    pub initial_role: Role,
}

/// A person's addresses as the directory gives them: what USER entries of folder ACLs and EMAIL
/// authorities are matched against.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserAddresses {
    pub email: Option<String>,
    pub upn: Option<String>,
}

#[derive(Debug, Clone, PartialEq, sqlx::FromRow, Serialize)]
pub struct VaultFolder {
    pub id: i64,
    pub vault_uid: String,
    pub name: String,
    pub last_synced_at: Option<Timestamp>,
    pub created_at: Timestamp,
}

#[derive(Debug, Clone, PartialEq, sqlx::FromRow, Serialize)]
pub struct VaultFolderPermission {
    pub id: i64,
    pub folder_id: i64,
    pub principal_type: VaultPrincipalType,
    pub principal: String,
    pub permission: FolderPermission,
    pub synced_at: Timestamp,
}

#[derive(Debug, Clone)]
pub struct NewFolderPermission {
    pub principal_type: VaultPrincipalType,
    pub principal: String,
    pub permission: FolderPermission,
}

#[derive(Debug, Clone, PartialEq, sqlx::FromRow, Serialize)]
pub struct Record {
    pub id: i64,
    pub vault_uid: String,
    pub title: String,
    pub record_type: String,
    pub folder_id: Option<i64>,
    pub revision: i64,
    pub vault_owner: Option<String>,
    pub owner_user_id: Option<i64>,
    pub sensitivity: Sensitivity,
    pub sync_status: SyncStatus,
    pub vault_uid_pinned: bool,
    pub discovery_source: DiscoverySource,
    pub discovered_at: Option<Timestamp>,
    pub last_synced_at: Option<Timestamp>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// Vault metadata for a record (never a secret field value). Upserts key on `vault_uid`.
#[derive(Debug, Clone)]
pub struct NewRecord {
    pub vault_uid: String,
    pub title: String,
    pub record_type: String,
    pub folder_id: Option<i64>,
    pub revision: i64,
    pub vault_owner: Option<String>,
    pub owner_user_id: Option<i64>,
    pub sensitivity: Sensitivity,
    pub discovery_source: DiscoverySource,
}

#[derive(Debug, Clone, PartialEq, sqlx::FromRow, Serialize)]
pub struct GovernancePolicy {
    pub id: i64,
    pub kind: PolicyKind,
    pub name: String,
    pub body: Json<Value>,
    pub content_hash: String,
    pub active: bool,
    pub created_at: Timestamp,
    pub created_by: String,
}

#[derive(Debug, Clone)]
pub struct NewPolicy {
    pub kind: PolicyKind,
    pub name: String,
    pub body: Value,
    pub created_by: String,
}

#[derive(Debug, Clone, PartialEq, sqlx::FromRow, Serialize)]
pub struct GovernedResource {
    pub id: i64,
    pub record_id: i64,
    pub visibility_policy: String,
    pub access_policy: String,
    pub lease_policy: String,
    pub created_at: Timestamp,
}

#[derive(Debug, Clone, PartialEq, sqlx::FromRow, Serialize)]
pub struct Authority {
    pub id: i64,
    pub resource_id: i64,
    pub authority: AuthorityKind,
    pub principal_type: PrincipalType,
    pub principal: String,
    pub stage: i32,
    pub valid_from: Timestamp,
    pub valid_to: Option<Timestamp>,
    pub created_at: Timestamp,
    pub created_by: String,
    pub revoked_at: Option<Timestamp>,
    pub revoked_by: Option<String>,
    pub revoked_reason: Option<String>,
    pub superseded_by: Option<i64>,
}

/// The team channel a GROUP approver authority posts its approval cards in (#18.7).
/// Append-only: a new choice revokes the row in force and inserts another.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow, Serialize)]
pub struct ApprovalChannel {
    pub id: i64,
    pub authority_id: i64,
    /// The channel's conversation id (`19:…@thread.tacv2`).
    pub conversation_id: String,
    pub team_id: Option<String>,
    pub set_by: String,
    pub set_at: Timestamp,
    pub revoked_at: Option<Timestamp>,
    pub revoked_by: Option<String>,
}

#[derive(Debug, Clone)]
pub struct NewAuthority {
    pub resource_id: i64,
    pub authority: AuthorityKind,
    pub principal_type: PrincipalType,
    pub principal: String,
    pub stage: i32,
    pub valid_from: Timestamp,
    pub valid_to: Option<Timestamp>,
    pub created_by: String,
}

#[derive(Debug, Clone, PartialEq, sqlx::FromRow, Serialize)]
pub struct Request {
    pub id: i64,
    pub requester_id: i64,
    pub record_id: i64,
    pub status: RequestStatus,
    pub justification: String,
    pub ticket_id: Option<String>,
    pub requested_duration_secs: i64,
    pub approved_duration_secs: Option<i64>,
    pub break_glass: bool,
    pub required_approvals: i32,
    pub policy_version: Option<String>,
    pub decided_by: Option<i64>,
    pub decided_at: Option<Timestamp>,
    pub decision_reason: Option<String>,
    pub lease_started_at: Option<Timestamp>,
    pub lease_expires_at: Option<Timestamp>,
    pub ended_at: Option<Timestamp>,
    #[serde(skip)]
    pub issuance_token_hash: Option<String>,
    pub issuance_token_expires_at: Option<Timestamp>,
    pub issuance_count: i32,
    pub max_issuances: i32,
    pub extension_count: i32,
    pub renewal_duration_secs: Option<i64>,
    pub preflight_attempts: i32,
    pub next_attempt_at: Option<Timestamp>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    /// The scheduler instance holding due work on this request, until `claim_until` (INV-7).
    pub claimed_by: Option<String>,
    pub claim_until: Option<Timestamp>,
    /// Break-glass: approved at once, to be reviewed afterwards.
    pub review_required: bool,
    /// The policy asked for a second factor at retrieval.
    pub otp_required: bool,
    pub reminded_at: Option<Timestamp>,
    pub expiry_warned_at: Option<Timestamp>,
    /// Retrievals reserved (token used) whose share is not recorded yet.
    pub issuances_in_flight: i32,
}

impl Request {
    /// Retrievals left on this lease.
    pub fn issuances_left(&self) -> i32 {
        (self.max_issuances - self.issuance_count).max(0)
    }
}

#[derive(Debug, Clone)]
pub struct NewRequest {
    pub requester_id: i64,
    pub record_id: i64,
    /// PENDING, REQUIRES_TRIAGE or DENIED as the policy decided; approval is a transition.
    pub status: RequestStatus,
    pub justification: String,
    pub ticket_id: Option<String>,
    pub requested_duration_secs: i64,
    pub break_glass: bool,
    pub required_approvals: i32,
    pub max_issuances: i32,
    pub policy_version: Option<String>,
    pub review_required: bool,
    pub otp_required: bool,
    /// Why, when the policy denied it at submission.
    pub decision_reason: Option<String>,
}

/// One status move, conditional on the status the caller saw. Fields left `None` keep their value.
#[derive(Debug, Clone)]
pub struct StatusChange {
    pub request_id: i64,
    pub from: RequestStatus,
    pub to: RequestStatus,
    pub at: Timestamp,
    pub decided_by: Option<i64>,
    pub decision_reason: Option<String>,
    pub approved_duration_secs: Option<i64>,
    pub lease_started_at: Option<Timestamp>,
    pub lease_expires_at: Option<Timestamp>,
    /// Entering RENEWAL_PENDING: the extra time asked for.
    pub renewal_duration_secs: Option<i64>,
    /// Leaving RENEWAL_PENDING: true when the extension was granted (counts it, clears the ask).
    pub extension_granted: bool,
    /// Sets the preflight bookkeeping: attempts made and when to try next (None: nothing due).
    pub preflight: Option<(i32, Option<Timestamp>)>,
}

impl StatusChange {
    pub fn new(request_id: i64, from: RequestStatus, to: RequestStatus, at: Timestamp) -> Self {
        StatusChange {
            request_id,
            from,
            to,
            at,
            decided_by: None,
            decision_reason: None,
            approved_duration_secs: None,
            lease_started_at: None,
            lease_expires_at: None,
            renewal_duration_secs: None,
            extension_granted: false,
            preflight: None,
        }
    }

    pub fn decided_by(mut self, user_id: i64, reason: impl Into<String>) -> Self {
        self.decided_by = Some(user_id);
        self.decision_reason = Some(reason.into());
        self
    }

    pub fn reason(mut self, reason: impl Into<String>) -> Self {
        self.decision_reason = Some(reason.into());
        self
    }

    pub fn lease(mut self, started: Timestamp, expires: Timestamp, approved_secs: i64) -> Self {
        self.lease_started_at = Some(started);
        self.lease_expires_at = Some(expires);
        self.approved_duration_secs = Some(approved_secs);
        self
    }
}

#[derive(Debug, Clone, PartialEq, sqlx::FromRow, Serialize)]
pub struct Approval {
    pub id: i64,
    pub request_id: i64,
    pub approver_id: i64,
    pub stage: i32,
    pub decision: ApprovalDecision,
    pub comment: Option<String>,
    pub decided_at: Timestamp,
}

#[derive(Debug, Clone)]
pub struct NewApproval {
    pub request_id: i64,
    pub approver_id: i64,
    pub stage: i32,
    pub decision: ApprovalDecision,
    pub comment: Option<String>,
    pub at: Timestamp,
}

/// One share handed out. INV-5: the URL's SHA-256 and the vault's share id, never the URL.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow, Serialize)]
pub struct IssuanceEvent {
    pub id: i64,
    pub request_id: i64,
    pub share_link_hash: String,
    pub vault_share_id: String,
    pub client_ip: Option<String>,
    pub user_agent: Option<String>,
    pub issued_at: Timestamp,
    pub expires_at: Timestamp,
    pub revoked_at: Option<Timestamp>,
    pub revoke_attempts: i32,
    pub last_revoke_error: Option<String>,
}

/// A share whose removal kept failing: what `admin health` lists and admins are alerted about.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow, Serialize)]
pub struct UnremovableShare {
    pub issuance_id: i64,
    pub request_id: i64,
    pub revoke_attempts: i32,
    pub last_revoke_error: Option<String>,
}

/// One of the local (development) vault's one-time shares. No URL, no secret.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow, Serialize)]
pub struct LocalShareRow {
    pub share_id: String,
    pub record_uid: String,
    pub name: String,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
    pub opened_at: Option<Timestamp>,
    pub removed_at: Option<Timestamp>,
}

#[derive(Debug, Clone)]
pub struct NewIssuance {
    pub request_id: i64,
    pub share_link_hash: String,
    pub vault_share_id: String,
    pub client_ip: Option<String>,
    pub user_agent: Option<String>,
    pub issued_at: Timestamp,
    pub expires_at: Timestamp,
}

/// One lease to end in a batch ([`LeaseStore::expire_leases`](crate::store::LeaseStore::expire_leases)): the status the claimer saw, and
/// the trace and audit event written with the change if the row is still in that status.
/// `request_id` and `record_id` of the audit event are filled in from the row, as
/// [`RequestStore::transition_request`](crate::store::RequestStore::transition_request) does.
#[derive(Debug, Clone)]
pub struct LeaseEnding {
    pub request_id: i64,
    pub from: RequestStatus,
    pub trace: NewTrace,
    pub audit: NewAuditEvent,
}

/// A share removed from the vault, to be marked revoked in a batch
/// ([`LeaseStore::mark_issuances_revoked_batch`](crate::store::LeaseStore::mark_issuances_revoked_batch)) with its audit event.
#[derive(Debug, Clone)]
pub struct ShareRevocation {
    pub issuance_id: i64,
    pub audit: NewAuditEvent,
}

/// Which due work a scheduler claims.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DueWork {
    /// Live leases past their expiry, and ended requests whose shares are not all removed yet.
    LeaseEnd,
    /// Live leases that end within the warning window and were not warned yet.
    ExpiryWarning,
    /// Approved requests whose vault preflight is due again.
    Preflight,
    /// Requests waiting for a decision (PENDING, REQUIRES_TRIAGE) created before the cutoff.
    Undecided,
}

/// One run of a scheduled job, as `admin health` shows it.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow, Serialize)]
pub struct JobRun {
    pub id: i64,
    pub job_name: String,
    pub holder: String,
    pub started_at: Timestamp,
    pub finished_at: Timestamp,
    pub ok: bool,
    pub counts: Json<Value>,
    pub error: Option<String>,
}

#[derive(Debug, Clone)]
pub struct NewJobRun {
    pub job_name: String,
    pub holder: String,
    pub started_at: Timestamp,
    pub finished_at: Timestamp,
    pub ok: bool,
    pub counts: Value,
    pub error: Option<String>,
}

#[derive(Debug, Clone, PartialEq, sqlx::FromRow, Serialize, serde::Deserialize)]
pub struct AuditEvent {
    pub seq: i64,
    pub event_id: uuid::Uuid,
    pub actor: String,
    pub action: String,
    pub request_id: Option<i64>,
    pub record_id: Option<i64>,
    pub detail: Json<Value>,
    pub created_at: Timestamp,
    pub prev_hash: String,
    pub hash: String,
}

/// Committed audit events the linker has not linked yet (always none where events are linked
/// inline): what the verifier's `Unlinked` rule judges.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UnlinkedEvents {
    pub count: u64,
    /// When the oldest of them was written.
    pub oldest_at: Option<Timestamp>,
}

/// An audit event to append. `actor` is a user reference (`user:42`), `system:<job>` or `admin-cli`.
#[derive(Debug, Clone)]
pub struct NewAuditEvent {
    pub actor: String,
    pub action: String,
    pub request_id: Option<i64>,
    pub record_id: Option<i64>,
    pub detail: Value,
    pub at: Timestamp,
}

impl NewAuditEvent {
    pub fn new(actor: impl Into<String>, action: impl Into<String>, at: Timestamp) -> Self {
        NewAuditEvent {
            actor: actor.into(),
            action: action.into(),
            request_id: None,
            record_id: None,
            detail: Value::Object(Default::default()),
            at,
        }
    }

    pub fn request(mut self, id: i64) -> Self {
        self.request_id = Some(id);
        self
    }

    pub fn record(mut self, id: i64) -> Self {
        self.record_id = Some(id);
        self
    }

    pub fn detail(mut self, detail: Value) -> Self {
        self.detail = detail;
        self
    }
}

/// A signed checkpoint: a signer vouched for the chain's head at `seq` (INV-2: insert-only).
#[derive(Debug, Clone, PartialEq, sqlx::FromRow, Serialize, serde::Deserialize)]
pub struct AuditCheckpoint {
    pub seq: i64,
    pub head_hash: String,
    pub signed_at: Timestamp,
    pub key_id: String,
    pub algorithm: String,
    /// Base64 of the signature bytes.
    pub signature: String,
}

/// A public key that signed (or signs) checkpoints, kept so rotated keys still verify.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow, Serialize, serde::Deserialize)]
pub struct AuditPublicKey {
    pub key_id: String,
    pub algorithm: String,
    /// Base64 of the raw public key.
    pub public_key: String,
    pub created_at: Timestamp,
}

/// One probe or health run (seed 003's GovernanceProbeEvent): who ran which check, how it ended.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow, Serialize)]
pub struct ProbeEvent {
    pub id: i64,
    pub command_id: String,
    pub invoked_by: String,
    pub invoked_at: Timestamp,
    pub exit_code: i32,
    /// Computed now rather than served from a cache.
    pub fresh: bool,
    pub degraded: bool,
    pub duration_ms: i64,
    pub detail: Json<Value>,
}

#[derive(Debug, Clone)]
pub struct NewProbeEvent {
    pub command_id: String,
    pub invoked_by: String,
    pub invoked_at: Timestamp,
    pub exit_code: i32,
    pub fresh: bool,
    pub degraded: bool,
    pub duration_ms: i64,
    pub detail: Value,
}

#[derive(Debug, Clone, PartialEq, sqlx::FromRow, Serialize)]
pub struct DecisionTrace {
    pub id: i64,
    pub request_id: Option<i64>,
    pub stage: TraceStage,
    pub outcome: TraceOutcome,
    pub reasons: Json<Value>,
    pub constraints: Json<Value>,
    pub required_approvals: Json<Value>,
    pub trace: Json<Value>,
    pub inputs: Json<Value>,
    pub inputs_hash: String,
    pub policy_version: String,
    pub code_version: String,
    pub created_at: Timestamp,
}

/// For replay: the record as the policy wrote it.
impl crate::policy::StoredTrace for DecisionTrace {
    fn trace_id(&self) -> i64 {
        self.id
    }

    fn record(&self) -> NewTrace {
        NewTrace {
            request_id: self.request_id,
            stage: self.stage,
            outcome: self.outcome,
            reasons: self.reasons.0.clone(),
            constraints: self.constraints.0.clone(),
            required_approvals: self.required_approvals.0.clone(),
            trace: self.trace.0.clone(),
            inputs: self.inputs.0.clone(),
            inputs_hash: self.inputs_hash.clone(),
            policy_version: self.policy_version.clone(),
            code_version: self.code_version.clone(),
            at: self.created_at,
        }
    }
}

/// A decision trace to write: the policy's own record of a decision (see `policy::trace_record`).
pub use crate::policy::NewTrace;

/// Where and how to reach a conversation later. Built only from authenticated activities.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow, Serialize)]
pub struct ConversationRef {
    pub conversation_id: String,
    pub conversation_type: String,
    pub channel_id: String,
    pub service_url: String,
    pub tenant_id: Option<String>,
    pub bot_id: String,
    pub user_id: Option<i64>,
    pub aad_object_id: Option<String>,
    pub teams_user_id: Option<String>,
    pub team_id: Option<String>,
    pub reference: Json<Value>,
    pub updated_at: Timestamp,
}

#[derive(Debug, Clone, PartialEq, sqlx::FromRow, Serialize)]
pub struct SentCard {
    pub id: i64,
    pub request_id: i64,
    pub recipient_user_id: Option<i64>,
    pub conversation_id: String,
    pub activity_id: String,
    pub card_kind: String,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

#[derive(Debug, Clone)]
pub struct NewSentCard {
    pub request_id: i64,
    pub recipient_user_id: Option<i64>,
    pub conversation_id: String,
    pub activity_id: String,
    pub card_kind: String,
    pub at: Timestamp,
}

/// A notice for a person that could not be delivered when it was sent (a `notifications` row):
/// `PENDING` until the person first talks to the bot and it is delivered then (`SENT`), or it no
/// longer applies (`FAILED`). `last_error` is a short fixed code, never a message from elsewhere.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow, Serialize)]
pub struct WaitingNotice {
    pub id: i64,
    pub user_id: i64,
    pub request_id: Option<i64>,
    pub kind: String,
    pub status: String,
    pub last_error: Option<String>,
    pub created_at: Timestamp,
    pub sent_at: Option<Timestamp>,
}

/// A person's phone number, sealed (`crypto::DataKey`, associated data `phone:user:<id>`).
#[derive(Clone, PartialEq, sqlx::FromRow)]
pub struct PhoneNumberRow {
    pub user_id: i64,
    pub phone_sealed: Vec<u8>,
    pub source: PhoneSource,
    pub updated_at: Timestamp,
}

impl std::fmt::Debug for PhoneNumberRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PhoneNumberRow")
            .field("user_id", &self.user_id)
            .field("source", &self.source)
            .field("updated_at", &self.updated_at)
            .finish_non_exhaustive()
    }
}

/// A person's authenticator app: the TOTP secret, sealed (associated data `totp:user:<id>`).
#[derive(Clone, PartialEq, sqlx::FromRow)]
pub struct TotpEnrollmentRow {
    pub user_id: i64,
    pub secret_sealed: Vec<u8>,
    pub created_at: Timestamp,
    /// Set once the person proved the app works by entering a first code.
    pub confirmed_at: Option<Timestamp>,
    /// The highest time step accepted so far; codes for it or earlier steps are replays.
    pub last_accepted_step: Option<i64>,
}

impl std::fmt::Debug for TotpEnrollmentRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TotpEnrollmentRow")
            .field("user_id", &self.user_id)
            .field("created_at", &self.created_at)
            .field("confirmed_at", &self.confirmed_at)
            .field("last_accepted_step", &self.last_accepted_step)
            .finish_non_exhaustive()
    }
}

/// A second-factor challenge for one retrieval (`otp_challenges`). SMS challenges hold the keyed
/// hash of the code that was sent; TOTP challenges hold none (the code comes from the app).
#[derive(Debug, Clone, PartialEq, sqlx::FromRow, Serialize)]
pub struct OtpChallenge {
    pub id: uuid::Uuid,
    pub request_id: i64,
    pub user_id: i64,
    pub channel: OtpChannel,
    #[serde(skip)]
    pub code_hash: Option<String>,
    pub attempts: i32,
    pub max_attempts: i32,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
    pub last_sent_at: Option<Timestamp>,
    pub consumed_at: Option<Timestamp>,
    pub locked_at: Option<Timestamp>,
    pub send_count: i32,
    #[serde(skip)]
    pub token_hash: Option<String>,
}

/// A row that counts wrong codes (an OTP challenge, a factor proof): whose guesses they are.
pub trait CodeAttempts {
    fn person(&self) -> i64;
}

impl CodeAttempts for OtpChallenge {
    fn person(&self) -> i64 {
        self.user_id
    }
}

impl CodeAttempts for FactorProof {
    fn person(&self) -> i64 {
        self.user_id
    }
}

/// A code texted to the number on file to prove the person holds it before their second factor
/// changes (`factor_proofs`). Only the keyed hash of the code is kept.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct FactorProof {
    pub id: uuid::Uuid,
    pub user_id: i64,
    pub purpose: FactorChange,
    pub code_hash: String,
    pub attempts: i32,
    pub max_attempts: i32,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
    pub consumed_at: Option<Timestamp>,
    pub locked_at: Option<Timestamp>,
}

#[derive(Debug, Clone)]
pub struct NewFactorProof {
    pub id: uuid::Uuid,
    pub user_id: i64,
    pub purpose: FactorChange,
    pub code_hash: String,
    pub max_attempts: i32,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
}

/// An admin's one-time permission to set up an authenticator without a factor on file
/// (`totp_invitations`).
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct TotpInvitation {
    pub user_id: i64,
    pub created_by: String,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
    pub used_at: Option<Timestamp>,
}

#[derive(Debug, Clone)]
pub struct NewChallenge {
    pub id: uuid::Uuid,
    pub request_id: i64,
    pub user_id: i64,
    pub channel: OtpChannel,
    pub code_hash: Option<String>,
    pub max_attempts: i32,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
    pub last_sent_at: Option<Timestamp>,
    pub send_count: i32,
    pub token_hash: String,
}

/// What [`crate::store::SecondFactorStore::consume_challenge`] did.
#[derive(Debug, Clone, PartialEq)]
pub enum ConsumeOutcome {
    Consumed(OtpChallenge),
    /// Consumed, locked or expired meanwhile: nothing written.
    NotLive,
    /// The TOTP step was already accepted (a replayed code): nothing written.
    StepReplayed,
}

/// Which migrations the database has, against the ones this build carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MigrationState {
    pub applied: Vec<i64>,
    pub expected: Vec<i64>,
}

impl MigrationState {
    pub fn is_current(&self) -> bool {
        self.applied == self.expected
    }
}

/// A turn's claim on an inbound activity, until `until` (see
/// [`ConversationStore::claim_activities`](crate::store::ConversationStore::claim_activities)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TurnClaim {
    pub conversation_id: String,
    pub activity_id: String,
    /// The turn's own random claim token: only it can renew, finish or release the claim.
    pub token: String,
    pub now: Timestamp,
    pub until: Timestamp,
}

/// The activity a turn holds, and the token it holds it with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TurnKey {
    pub conversation_id: String,
    pub activity_id: String,
    pub token: String,
}

/// Where an inbound activity stands when a turn claims it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActivityClaim {
    /// This turn holds it: run, then finish or release.
    Claimed,
    /// Another turn holds a claim on it that has not lapsed.
    InProgress,
    /// A turn finished it.
    Done,
}

/// The SMS provider refused Passkey's own credentials or configuration (#21.6). `detail` holds
/// only the HTTP status and the provider's error code.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow, Serialize)]
pub struct SmsCredentialFault {
    pub provider: String,
    pub detail: String,
    pub first_seen_at: Timestamp,
    pub last_seen_at: Timestamp,
}

/// Which requests an access report covers: those created in `[from, to)` (half-open, so
/// consecutive windows never count a request twice), optionally of one record and one requester.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReportWindow {
    pub from: Timestamp,
    pub to: Timestamp,
    pub record_id: Option<i64>,
    pub requester_id: Option<i64>,
}

// ---- access reviews (#19.2) -------------------------------------------------------------------

/// A review campaign: one per cron fire (or per `admin review start`), keyed by `fire_key`.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow, Serialize)]
pub struct ReviewCampaign {
    pub id: i64,
    pub fire_key: String,
    pub started_by: String,
    pub period_from: Timestamp,
    pub period_to: Timestamp,
    pub created_at: Timestamp,
}

#[derive(Debug, Clone)]
pub struct NewReviewCampaign {
    pub fire_key: String,
    pub started_by: String,
    pub period_from: Timestamp,
    pub period_to: Timestamp,
    pub at: Timestamp,
}

/// A review is open until every row is decided (closed) or a newer campaign takes over its
/// undecided rows (superseded).
pub const REVIEW_OPEN: &str = "OPEN";
pub const REVIEW_CLOSED: &str = "CLOSED";
pub const REVIEW_SUPERSEDED: &str = "SUPERSEDED";

/// One record's review in a campaign; `items` and `lease_holders` are the snapshot the owners
/// were shown (`governance::reviews` owns their shape).
#[derive(Debug, Clone, PartialEq, sqlx::FromRow, Serialize)]
pub struct AccessReview {
    pub id: i64,
    pub campaign_id: i64,
    pub record_id: i64,
    pub items: Json<Value>,
    pub lease_holders: Json<Value>,
    pub status: String,
    pub created_at: Timestamp,
    pub reminded_at: Option<Timestamp>,
    pub escalated_at: Option<Timestamp>,
    pub closed_at: Option<Timestamp>,
}

#[derive(Debug, Clone)]
pub struct NewAccessReview {
    pub record_id: i64,
    pub items: Value,
    pub lease_holders: Value,
    /// Escalated to admins from the start (a record nobody owns).
    pub escalated: bool,
}

/// The kinds of row a review decides.
pub const ITEM_AUTHORITY: &str = "AUTHORITY";
pub const ITEM_BREAK_GLASS: &str = "BREAK_GLASS";
pub const DECISION_KEEP: &str = "KEEP";
pub const DECISION_REMOVE: &str = "REMOVE";

/// One decided row (append-only).
#[derive(Debug, Clone, PartialEq, sqlx::FromRow, Serialize)]
pub struct ReviewDecision {
    pub id: i64,
    pub review_id: i64,
    pub item_kind: String,
    pub item_id: i64,
    pub decision: String,
    pub decided_by: Option<i64>,
    pub decided_by_name: String,
    pub decided_at: Timestamp,
}

/// A decision to record, with its audit event, and for a removed authority row the revocation
/// (authority id, reason, and its `AUTHORITY_REVOKED` event), written in the same transaction.
#[derive(Debug, Clone)]
pub struct NewReviewDecision {
    pub item_kind: String,
    pub item_id: i64,
    pub decision: String,
    pub decided_by: Option<i64>,
    pub decided_by_name: String,
    pub audit: NewAuditEvent,
    pub revoke: Option<(i64, String, NewAuditEvent)>,
}

/// What [`crate::store::ReviewStore::record_review_decisions`] wrote.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ReviewWrite {
    /// The rows decided here, as (kind, id); a row someone decided first is not among them.
    pub recorded: Vec<(String, i64)>,
    /// Authority rows revoked here (one already revoked meanwhile is not).
    pub revoked: Vec<i64>,
    /// Whether this write decided the review's last row and closed it.
    pub closed: bool,
}

/// A review card the bot sent (so copies can be updated in place).
#[derive(Debug, Clone, PartialEq, sqlx::FromRow, Serialize)]
pub struct ReviewCard {
    pub id: i64,
    pub review_id: i64,
    pub recipient_user_id: i64,
    pub conversation_id: String,
    pub activity_id: String,
    pub created_at: Timestamp,
}
