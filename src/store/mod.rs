//! Persistence. One trait per aggregate, gathered in [`Store`]; two implementations,
//! [`SqliteStore`] (embedded default) and [`PgStore`] (production), generated from one body of
//! SQL (`sql.rs`) so the two cannot drift apart. Contract tests run every story on both.
//!
//! Rules every implementation keeps:
//! - a request's status changes only through [`RequestStore::transition_request`], conditional on
//!   the status the caller saw, after the domain transition table allowed it;
//! - every state change writes its audit event in the same transaction (INV-3), appended to the
//!   hash chain under a lock on the chain head, so chain order is commit order.

pub mod held;
mod models;
mod postgres;
mod sql;
mod sqlite;
mod timestamp;
pub mod writer;

pub use models::*;
pub use postgres::PgStore;
pub use sql::recompute_audit_hash;
pub use sqlite::SqliteStore;

use crate::domain::{
    IllegalTransition, PhoneSource, RequestStatus, Role, Sensitivity, SyncStatus, Timestamp,
};
use async_trait::async_trait;
use serde_json::Value;
use std::sync::Arc;

/// Why a store call failed. Callers map these to user-facing answers; the inner causes are logged.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{0} not found")]
    NotFound(&'static str),
    /// The row is no longer in the state the caller saw (someone else moved it first).
    #[error("request {request_id} is {actual}, not {expected}")]
    StatusConflict {
        request_id: i64,
        expected: RequestStatus,
        actual: RequestStatus,
    },
    #[error(transparent)]
    IllegalTransition(#[from] IllegalTransition),
    /// A uniqueness or "already done" condition.
    #[error("conflict: {0}")]
    Conflict(String),
    /// A database invariant (INV-1, INV-2 triggers) refused the write.
    #[error("refused by invariant: {0}")]
    Refused(String),
    /// A check, not-null or foreign-key constraint refused the write.
    #[error("invalid data: {0}")]
    Invalid(String),
    /// The database could not be reached in time.
    #[error("database unavailable")]
    Unavailable(#[source] sqlx::Error),
    #[error("database error")]
    Database(#[source] sqlx::Error),
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        use sqlx::error::ErrorKind;
        match &e {
            sqlx::Error::RowNotFound => StoreError::NotFound("row"),
            _ if database_unreachable(&e) => StoreError::Unavailable(e),
            sqlx::Error::Database(db) => {
                let message = db.message().to_string();
                if message.contains("INV-") {
                    return StoreError::Refused(message);
                }
                match db.kind() {
                    ErrorKind::UniqueViolation => StoreError::Conflict(message),
                    ErrorKind::CheckViolation
                    | ErrorKind::NotNullViolation
                    | ErrorKind::ForeignKeyViolation => StoreError::Invalid(message),
                    _ => StoreError::Database(e),
                }
            }
            _ => StoreError::Database(e),
        }
    }
}

/// Whether `e` means the database could not be reached or is going away — worth retrying later
/// (HTTP 503), as opposed to a query the database refused. The one place this is decided.
pub fn database_unreachable(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => {
            let code = db.code();
            let code = code.as_deref().unwrap_or_default();
            if db
                .try_downcast_ref::<sqlx::postgres::PgDatabaseError>()
                .is_some()
            {
                // Class 08: connection exceptions; 57P01–57P05: the server is shutting down, was
                // terminated by an administrator or cannot take connections yet; 53300: too many
                // connections.
                code.starts_with("08")
                    || matches!(
                        code,
                        "57P01" | "57P02" | "57P03" | "57P04" | "57P05" | "53300"
                    )
            } else {
                // SQLite's (extended) result code; the low byte is the primary one: BUSY, LOCKED
                // (another writer held the database past the busy timeout), IOERR, CANTOPEN.
                code.parse::<i32>()
                    .is_ok_and(|c| matches!(c & 0xff, 5 | 6 | 10 | 14))
            }
        }
        _ => false,
    }
}

pub type StoreResult<T> = Result<T, StoreError>;

#[async_trait]
pub trait UserStore: Send + Sync {
    /// Creates the user on first sight, otherwise refreshes their profile (never their role).
    async fn upsert_user(&self, user: &NewUser, at: Timestamp) -> StoreResult<User>;
    async fn user_by_id(&self, id: i64) -> StoreResult<Option<User>>;
    async fn user_by_aad_object_id(&self, aad_object_id: &str) -> StoreResult<Option<User>>;
    /// What a Teams turn needs about its sender, in one read: their row, the time zone their
    /// client last reported, and whether notices wait for them.
    async fn turn_sender(&self, aad_object_id: &str) -> StoreResult<Option<TurnSender>> {
        Ok(self
            .turn_senders(&[aad_object_id.to_string()])
            .await?
            .pop()
            .flatten())
    }
    /// [`turn_sender`](Self::turn_sender) for several senders in one read (concurrent turns
    /// share it): one answer per id, in order.
    async fn turn_senders(&self, aad_object_ids: &[String])
    -> StoreResult<Vec<Option<TurnSender>>>;
    /// Case-insensitive match on mail or UPN.
    async fn user_by_email(&self, email: &str) -> StoreResult<Option<User>>;
    async fn users_with_role(&self, role: Role) -> StoreResult<Vec<User>>;
    /// Changes a role and forgets the user's cached permissions (admins may request from every
    /// folder, so a role change changes them), with the audit event, in one transaction.
    async fn set_user_role(
        &self,
        user_id: i64,
        role: Role,
        audit: &NewAuditEvent,
    ) -> StoreResult<User>;
    async fn count_users(&self) -> StoreResult<i64>;
    /// Records a successful directory lookup: the person's mail and UPN become exactly these
    /// (the directory is the source of truth, so an address it no longer gives is dropped). When
    /// they changed, the person's cached permissions are dropped and `audit` is appended. Anyone
    /// else in the person's tenant still holding one of these addresses (it moved: the directory
    /// just gave it to this person) loses it, is due for a lookup of their own, and has their
    /// cached permissions dropped, with the event `released(their id, fields cleared)` makes.
    /// All in one transaction.
    async fn set_user_addresses(
        &self,
        user_id: i64,
        addresses: &UserAddresses,
        audit: &NewAuditEvent,
        released: &(dyn Fn(i64, Vec<&'static str>) -> NewAuditEvent + Sync),
        at: Timestamp,
    ) -> StoreResult<User>;
    /// Records a directory lookup that taught nothing (failed, or answered about someone else):
    /// the stored addresses stay as they were.
    async fn mark_directory_check_failed(&self, user_id: i64, at: Timestamp) -> StoreResult<User>;
    /// The IANA time zone the person's Teams client last reported (`None`: never).
    async fn user_time_zone(&self, user_id: i64) -> StoreResult<Option<String>>;
    /// Keeps the person's last reported time zone (a name the caller checked).
    async fn set_user_time_zone(&self, user_id: i64, zone: &str) -> StoreResult<()>;
}

#[async_trait]
pub trait VaultStore: Send + Sync {
    async fn upsert_folder(
        &self,
        vault_uid: &str,
        name: &str,
        at: Timestamp,
    ) -> StoreResult<VaultFolder>;
    async fn folder_by_id(&self, id: i64) -> StoreResult<Option<VaultFolder>>;
    async fn list_folders(&self) -> StoreResult<Vec<VaultFolder>>;
    /// Replaces a folder's whole ACL with what the vault reported, in one transaction. When the set
    /// of (principal type, principal, permission) entries actually changed, every cached
    /// permission set is dropped in the same transaction, so no one acts on a stale ACL.
    async fn replace_folder_permissions(
        &self,
        folder_id: i64,
        permissions: &[NewFolderPermission],
        at: Timestamp,
    ) -> StoreResult<Vec<VaultFolderPermission>>;
    async fn folder_permissions(&self, folder_id: i64) -> StoreResult<Vec<VaultFolderPermission>>;
    /// Creates a record, or refreshes the vault's metadata of a known one. A known record's
    /// sensitivity is never changed here: it is Passkey's classification, set by an admin
    /// ([`VaultStore::set_record_sensitivity`]), and a sync that read the record before an admin
    /// changed it must not write the old level back.
    async fn upsert_record(&self, record: &NewRecord, at: Timestamp) -> StoreResult<Record>;
    async fn record_by_id(&self, id: i64) -> StoreResult<Option<Record>>;
    async fn record_by_uid(&self, vault_uid: &str) -> StoreResult<Option<Record>>;
    async fn list_records(&self) -> StoreResult<Vec<Record>>;
    /// Records whose title starts with `prefix` (case-insensitive), exact matches first.
    async fn records_by_title_prefix(&self, prefix: &str, limit: i64) -> StoreResult<Vec<Record>>;
    /// Changes a record's sensitivity from `from` to `to` with its audit event, in one
    /// transaction. A conflict when the stored level is no longer `from` (another admin changed
    /// it meanwhile), so the event's "before" is always what was replaced.
    async fn set_record_sensitivity(
        &self,
        record_id: i64,
        from: Sensitivity,
        to: Sensitivity,
        audit: &NewAuditEvent,
    ) -> StoreResult<Record>;
    async fn set_record_sync_status(
        &self,
        record_id: i64,
        status: SyncStatus,
        at: Timestamp,
    ) -> StoreResult<Record>;
}

#[async_trait]
pub trait GovernanceStore: Send + Sync {
    /// Stores a policy body and makes it the active one for its name. Storing the body that is
    /// already active changes nothing and writes no audit event.
    async fn put_policy(
        &self,
        policy: &NewPolicy,
        audit: &NewAuditEvent,
    ) -> StoreResult<GovernancePolicy>;
    async fn active_policies(&self) -> StoreResult<Vec<GovernancePolicy>>;
    async fn upsert_governed_resource(
        &self,
        record_id: i64,
        visibility_policy: &str,
        access_policy: &str,
        lease_policy: &str,
        at: Timestamp,
    ) -> StoreResult<GovernedResource>;
    async fn governed_resource_for_record(
        &self,
        record_id: i64,
    ) -> StoreResult<Option<GovernedResource>>;
    async fn governed_resource_by_id(&self, id: i64) -> StoreResult<Option<GovernedResource>>;
    /// Inserts an authority row with its audit event; the new row's id is added to an object
    /// `detail` as `authority_id`, so the audit trail names the row it created.
    async fn add_authority(
        &self,
        authority: &NewAuthority,
        audit: &NewAuditEvent,
    ) -> StoreResult<Authority>;
    async fn authority_by_id(&self, id: i64) -> StoreResult<Option<Authority>>;
    /// Revokes an active authority row; a second revocation is a conflict (INV-1).
    async fn revoke_authority(
        &self,
        authority_id: i64,
        revoked_by: &str,
        reason: &str,
        audit: &NewAuditEvent,
    ) -> StoreResult<Authority>;
    /// Inserts the successor and revokes the predecessor with a link to it, atomically.
    async fn supersede_authority(
        &self,
        old_id: i64,
        successor: &NewAuthority,
        reason: &str,
        audit: &NewAuditEvent,
    ) -> StoreResult<Authority>;
    /// Rows in force at `at`: not revoked, valid_from ≤ at < valid_to.
    async fn active_authorities(
        &self,
        resource_id: i64,
        at: Timestamp,
    ) -> StoreResult<Vec<Authority>>;
    /// Every row ever written for the resource, oldest first.
    async fn authority_history(&self, resource_id: i64) -> StoreResult<Vec<Authority>>;
    /// [`GovernanceStore::authority_history`] of the record's governed resource (empty when the
    /// record has none), in one statement: every policy decision reads it.
    async fn authority_history_for_record(&self, record_id: i64) -> StoreResult<Vec<Authority>>;
    /// Names the team channel an authority posts its approval cards in (`Some((conversation id,
    /// team id))`) or none (`None`), with its audit event: the row in force, if any, is revoked
    /// and the new one inserted, atomically. Returns the row now in force.
    async fn set_approval_channel(
        &self,
        authority_id: i64,
        channel: Option<(&str, Option<&str>)>,
        by: &str,
        audit: &NewAuditEvent,
    ) -> StoreResult<Option<ApprovalChannel>>;
    /// The channel in force for an authority.
    async fn approval_channel(&self, authority_id: i64) -> StoreResult<Option<ApprovalChannel>>;
}

/// The per-user cache of effective permissions (`user_permission_cache`). The body is opaque JSON
/// here; `governance::permissions` owns its shape.
#[async_trait]
pub trait PermissionStore: Send + Sync {
    /// The cached body for a user, if it is still fresh at `now` (`expires_at > now`).
    async fn cached_permissions(&self, user_id: i64, now: Timestamp) -> StoreResult<Option<Value>>;
    /// Stores (or replaces) a user's cached body.
    async fn put_cached_permissions(
        &self,
        user_id: i64,
        permissions: &Value,
        resolved_at: Timestamp,
        expires_at: Timestamp,
    ) -> StoreResult<()>;
    /// Drops every cached body; returns how many there were.
    async fn invalidate_permission_cache(&self) -> StoreResult<u64>;
}

#[async_trait]
pub trait RequestStore: Send + Sync {
    /// Persists a new request with its decision traces and audit event in one transaction.
    async fn create_request(
        &self,
        request: &NewRequest,
        traces: &[NewTrace],
        audit: &NewAuditEvent,
        at: Timestamp,
    ) -> StoreResult<Request>;
    async fn request_by_id(&self, id: i64) -> StoreResult<Option<Request>>;
    async fn requests_for_requester(
        &self,
        requester_id: i64,
        limit: i64,
    ) -> StoreResult<Vec<Request>>;
    async fn requests_in_status(
        &self,
        statuses: &[RequestStatus],
        limit: i64,
    ) -> StoreResult<Vec<Request>>;
    /// Moves a request from `change.from` to `change.to` if the table allows it and the row is
    /// still in `change.from`; writes traces and the audit event in the same transaction.
    async fn transition_request(
        &self,
        change: &StatusChange,
        traces: &[NewTrace],
        audit: &NewAuditEvent,
    ) -> StoreResult<Request>;
}

/// The lease half of the lifecycle: approvals, issuance tokens and shares, scheduler claims and
/// job runs. Every write that changes what a request allows is conditional on the state the caller
/// saw and carries its audit event in the same transaction (INV-3).
#[async_trait]
pub trait LeaseStore: Send + Sync {
    async fn approvals_for_request(&self, request_id: i64) -> StoreResult<Vec<Approval>>;
    /// Records one approver's say, provided the request is still `expected` and still has exactly
    /// `approvals_seen` APPROVE rows (else [`StoreError::StatusConflict`] or
    /// [`StoreError::Conflict`]: the caller re-reads and decides again). With `change`, the request
    /// moves in the same transaction. The request row is locked for the check, so concurrent
    /// approvers are counted one at a time.
    async fn record_approval(
        &self,
        approval: &NewApproval,
        expected: RequestStatus,
        approvals_seen: i64,
        change: Option<&StatusChange>,
        traces: &[NewTrace],
        audit: &NewAuditEvent,
    ) -> StoreResult<(Approval, Request)>;
    /// Records the outcome of a vault preflight on an APPROVED request (attempts made, next try).
    async fn schedule_preflight(
        &self,
        request_id: i64,
        attempts: i32,
        next_attempt_at: Option<Timestamp>,
        audit: &NewAuditEvent,
    ) -> StoreResult<Request>;
    /// Stores the hash of a fresh issuance token (replacing any unused one) on a live lease with
    /// retrievals left.
    async fn set_issuance_token(
        &self,
        request_id: i64,
        token_hash: &str,
        expires_at: Timestamp,
        now: Timestamp,
        audit: &NewAuditEvent,
    ) -> StoreResult<Request>;
    /// Uses up the token with this hash, if it is still the request's current, unexpired token on
    /// a live lease with retrievals left, and reserves one retrieval (`issuances_in_flight`), so
    /// no more shares than `max_issuances` can exist even while they are being created (INV-4).
    /// `None` when it is not (someone else used it first, or nothing is left). Reservations
    /// held since before `dead_before` are reclaimed first: their retrievals died (a process killed
    /// mid-share), and they must not hold retrievals forever.
    async fn consume_issuance_token(
        &self,
        request_id: i64,
        token_hash: &str,
        now: Timestamp,
        dead_before: Timestamp,
    ) -> StoreResult<Option<Request>>;
    /// Puts a consumed token back after a retrieval that failed for a passing reason (unless a
    /// newer token was minted meanwhile) and gives its reservation back.
    async fn restore_issuance_token(
        &self,
        request_id: i64,
        token_hash: &str,
        expires_at: Timestamp,
        audit: &NewAuditEvent,
    ) -> StoreResult<()>;
    /// Turns a reservation into a counted retrieval and stores its share (hash and id), in one
    /// transaction, only while the lease is live and `issuance_count < max_issuances` (INV-4); the
    /// first moves APPROVED to ISSUED. Otherwise [`StoreError::Conflict`] and nothing is written.
    async fn record_issuance(
        &self,
        issuance: &NewIssuance,
        now: Timestamp,
        traces: &[NewTrace],
        audit: &NewAuditEvent,
    ) -> StoreResult<(Request, IssuanceEvent)>;
    /// Gives back a reservation whose share was not recorded (the caller removed the share).
    async fn release_issuance_reservation(&self, request_id: i64) -> StoreResult<()>;
    async fn issuances_for_request(&self, request_id: i64) -> StoreResult<Vec<IssuanceEvent>>;
    /// Shares of the request not yet removed from the vault.
    async fn outstanding_issuances(&self, request_id: i64) -> StoreResult<Vec<IssuanceEvent>>;
    /// Marks a share removed, with its audit event; false when it already was.
    async fn mark_issuance_revoked(
        &self,
        issuance_id: i64,
        at: Timestamp,
        audit: &NewAuditEvent,
    ) -> StoreResult<bool>;
    /// Outstanding shares of many requests at once, ordered by request and id.
    async fn outstanding_issuances_for(
        &self,
        request_ids: &[i64],
    ) -> StoreResult<Vec<IssuanceEvent>>;
    /// Marks a batch of removed shares revoked, each with its audit event, in one transaction;
    /// a share already marked (by someone else, meanwhile) is skipped and its event not written.
    /// The events are appended in the order given, under one lock of the chain head. Returns the
    /// ids marked here.
    async fn mark_issuances_revoked_batch(
        &self,
        revocations: &[ShareRevocation],
        at: Timestamp,
    ) -> StoreResult<Vec<i64>>;
    /// Counts a failed removal (the scheduler tries again).
    async fn record_revoke_failure(&self, issuance_id: i64, error: &str) -> StoreResult<()>;
    /// Outstanding shares whose removal failed at least `min_attempts` times and that admins were
    /// not yet told about, marked told at `at`: each is returned once, to one caller.
    async fn claim_unremovable_alerts(
        &self,
        min_attempts: i32,
        at: Timestamp,
    ) -> StoreResult<Vec<UnremovableShare>>;
    /// Outstanding shares whose removal failed at least `min_attempts` times, oldest first.
    async fn unremovable_shares(
        &self,
        min_attempts: i32,
        limit: i64,
    ) -> StoreResult<Vec<UnremovableShare>>;
    /// Claims up to `limit` requests with due work of `kind` for `holder` until `claim_until`.
    /// Rows claimed by another live holder are skipped (`FOR UPDATE SKIP LOCKED` on Postgres, the
    /// single writer lock on SQLite), so each due item goes to one instance (INV-7).
    async fn claim_due(
        &self,
        kind: DueWork,
        now: Timestamp,
        cutoff: Timestamp,
        holder: &str,
        claim_until: Timestamp,
        limit: i64,
    ) -> StoreResult<Vec<Request>>;
    /// Gives a claimed request back (its due work is done or rescheduled).
    async fn release_claim(&self, request_id: i64, holder: &str) -> StoreResult<()>;
    /// Gives many claimed requests back at once.
    async fn release_claims(&self, request_ids: &[i64], holder: &str) -> StoreResult<()>;
    /// Extends `holder`'s claims on `request_ids` to `claim_until` while their work runs, and
    /// returns the ids it still holds: a claim that lapsed and was taken by another instance is
    /// not renewed (its id is missing), and its former holder must stop working on it.
    async fn renew_claims(
        &self,
        request_ids: &[i64],
        holder: &str,
        claim_until: Timestamp,
    ) -> StoreResult<Vec<i64>>;
    /// Expires a batch of leases past their end in ONE transaction (the scheduler's path). Each
    /// row moves from the status its claimer saw to EXPIRED exactly as
    /// [`RequestStore::transition_request`] would move it (with `reason`), but only while it is
    /// still in that status and its lease still ends at or before `at`; a row that changed
    /// meanwhile (released, revoked, extended) is skipped, not failed. Every row moved gets its
    /// trace and audit event in the same transaction (INV-3); the events are appended in request
    /// id order under one lock of the chain head. Returns the expired requests, by id.
    async fn expire_leases(
        &self,
        endings: &[LeaseEnding],
        reason: &str,
        at: Timestamp,
    ) -> StoreResult<Vec<Request>>;
    /// Sets `reminded_at` or `expiry_warned_at` once; false when it was already set.
    async fn mark_notified_once(
        &self,
        request_id: i64,
        expiry_warning: bool,
        at: Timestamp,
    ) -> StoreResult<bool>;
    async fn record_job_run(&self, run: &NewJobRun) -> StoreResult<JobRun>;
    /// Claims one fire time of a job on a cron schedule for `holder`: true for the one instance
    /// whose claim landed, false for every other. The winner forgets its job's claims older than
    /// two days.
    async fn claim_job_fire(
        &self,
        job_name: &str,
        fire_at: Timestamp,
        holder: &str,
    ) -> StoreResult<bool>;
    /// The latest run of each job.
    async fn last_job_runs(&self) -> StoreResult<Vec<JobRun>>;
    /// Housekeeping: forgets OTP challenges that expired before `before`.
    async fn forget_expired_challenges(&self, before: Timestamp) -> StoreResult<u64>;
}

#[async_trait]
pub trait AuditStore: Send + Sync {
    /// Appends one event in its own transaction (for events with no state change). SQLite links
    /// it into the chain at once; Postgres inserts it unlinked and its linker links it after the
    /// commit (see [`AuditStore::link_pending`]).
    async fn append_audit(&self, event: &NewAuditEvent) -> StoreResult<()>;
    /// Appends several events with no state change in one transaction (imports, bulk loads,
    /// benchmarks): the same chain as one `append_audit` each.
    async fn append_audit_batch(&self, events: &[NewAuditEvent]) -> StoreResult<()>;
    /// Links every event committed before the call into the chain, in insertion order, and
    /// returns how many it linked (Postgres: link passes under the linker lock; SQLite links
    /// inline, so 0). The reads below call it first, so a read after a write sees its event.
    async fn link_pending(&self) -> StoreResult<u64>;
    /// How many committed events are not linked yet, and when the oldest was written.
    async fn unlinked_events(&self) -> StoreResult<UnlinkedEvents>;
    /// What this instance's writers notify after a commit, for the linker task
    /// (`audit::linker`); None where events are linked inline.
    fn link_wakeup(&self) -> Option<std::sync::Arc<tokio::sync::Notify>>;
    /// Linked events with `seq > after`, in chain order (what is committed is linked first).
    async fn audit_events_after(&self, after: i64, limit: i64) -> StoreResult<Vec<AuditEvent>>;
    /// A request's linked events, in chain order (what is committed is linked first).
    async fn audit_events_for_request(&self, request_id: i64) -> StoreResult<Vec<AuditEvent>>;
    /// The chain head as committed: `(seq, hash)` of the last linked event (`0` and the genesis
    /// hash when there is none), after linking what is committed. Not locked: a checkpoint signs
    /// a head that was committed.
    async fn audit_head(&self) -> StoreResult<(i64, String)>;
    /// Inserts a signed checkpoint; false when one already exists at that seq (another instance
    /// signed the same head).
    async fn insert_checkpoint(&self, checkpoint: &AuditCheckpoint) -> StoreResult<bool>;
    /// Checkpoints with `seq >= from`, by seq.
    async fn checkpoints_from(&self, from: i64) -> StoreResult<Vec<AuditCheckpoint>>;
    async fn last_checkpoint(&self) -> StoreResult<Option<AuditCheckpoint>>;
    /// Registers a signing public key unless its key id is known already.
    async fn register_public_key(&self, key: &AuditPublicKey) -> StoreResult<()>;
    async fn public_keys(&self) -> StoreResult<Vec<AuditPublicKey>>;
    async fn record_probe(&self, probe: &NewProbeEvent) -> StoreResult<ProbeEvent>;
    /// The latest probe runs, newest first.
    async fn recent_probes(&self, limit: i64) -> StoreResult<Vec<ProbeEvent>>;
    async fn insert_trace(&self, trace: &NewTrace) -> StoreResult<DecisionTrace>;
    async fn traces_for_request(&self, request_id: i64) -> StoreResult<Vec<DecisionTrace>>;
    async fn trace_by_id(&self, id: i64) -> StoreResult<Option<DecisionTrace>>;
    /// Traces with `id > after`, oldest first (replaying every trace pages through these).
    async fn traces_after(&self, after: i64, limit: i64) -> StoreResult<Vec<DecisionTrace>>;
}

#[async_trait]
pub trait ConversationStore: Send + Sync {
    async fn upsert_conversation(&self, reference: &ConversationRef) -> StoreResult<()>;
    async fn conversation(&self, conversation_id: &str) -> StoreResult<Option<ConversationRef>>;
    /// The 1:1 chat with a user, if the bot has one.
    async fn personal_conversation(
        &self,
        aad_object_id: &str,
    ) -> StoreResult<Option<ConversationRef>>;
    async fn record_sent_card(&self, card: &NewSentCard) -> StoreResult<SentCard>;
    async fn sent_cards_for_request(&self, request_id: i64) -> StoreResult<Vec<SentCard>>;
    /// Records that a request's approval card could not be posted in its approval channel.
    async fn record_channel_miss(
        &self,
        request_id: i64,
        approval_channel_id: i64,
        at: Timestamp,
    ) -> StoreResult<()>;
    /// How many times a request's approval card could not be posted in an approval channel.
    async fn channel_misses_for_request(&self, request_id: i64) -> StoreResult<i64>;
    /// Keeps a notice about `request_id` that `user_id` could not be sent (`why`: a short fixed
    /// code), unless one of that kind already waits for them.
    async fn record_waiting_notice(
        &self,
        user_id: i64,
        request_id: i64,
        kind: &str,
        why: &str,
        at: Timestamp,
    ) -> StoreResult<()>;
    /// Notices still waiting for a person, oldest first.
    async fn waiting_notices_for_user(&self, user_id: i64) -> StoreResult<Vec<WaitingNotice>>;
    /// Every kept notice about a request, waiting or closed, oldest first.
    async fn kept_notices_for_request(&self, request_id: i64) -> StoreResult<Vec<WaitingNotice>>;
    /// Closes a waiting notice: delivered (`SENT`) or no longer applying (`FAILED`).
    async fn close_waiting_notice(
        &self,
        id: i64,
        delivered: bool,
        at: Timestamp,
    ) -> StoreResult<()>;
    /// Claims activities and marks others done in one write: what a batch of concurrent turns
    /// writes, some starting and some finishing (see `governance::conversations`).
    ///
    /// A claim is for one turn (identified by its token) until its `until`: claimed when the
    /// activity is new, or when an earlier turn's claim lapsed (that turn crashed); otherwise
    /// where it stands. One answer per claim, in order. An activity claimed twice is claimed at
    /// most once (the later listing is answered as the earlier one found it, or in progress when
    /// the earlier one claimed it). A claim becomes DONE with a done mark, or is dropped with
    /// [`release_activity`](Self::release_activity) so a redelivery runs again.
    ///
    /// A done mark says the turn succeeded: redeliveries are answered as done from then on. A
    /// turn whose claim was taken over meanwhile (its token no longer there) changes nothing; one
    /// whose row is gone (released by a takeover that failed) writes it done at `now`, since the
    /// turn did succeed. `processed_at` stays the claim's time: it only ages the row out
    /// ([`forget_processed_before`](Self::forget_processed_before)), and leaving the indexed
    /// column as it is lets Postgres write the mark in place (no new index entries). A claim of
    /// an activity whose done mark is in the same batch finds it done.
    async fn write_turns(
        &self,
        claims: &[TurnClaim],
        dones: &[TurnKey],
        now: Timestamp,
    ) -> StoreResult<Vec<ActivityClaim>>;
    /// [`write_turns`](Self::write_turns) with claims only.
    async fn claim_activities(&self, claims: &[TurnClaim]) -> StoreResult<Vec<ActivityClaim>> {
        match claims.first() {
            // No done marks: the time a done mark's new row would get is never used.
            Some(first) => self.write_turns(claims, &[], first.now).await,
            None => Ok(Vec::new()),
        }
    }
    /// [`claim_activities`](Self::claim_activities) for one activity.
    async fn claim_activity(
        &self,
        conversation_id: &str,
        activity_id: &str,
        token: &str,
        now: Timestamp,
        until: Timestamp,
    ) -> StoreResult<ActivityClaim> {
        let claims = [TurnClaim {
            conversation_id: conversation_id.to_string(),
            activity_id: activity_id.to_string(),
            token: token.to_string(),
            now,
            until,
        }];
        Ok(self.claim_activities(&claims).await?[0])
    }
    /// Extends a claim `token` still holds; false when it holds it no longer.
    async fn renew_activity_claim(
        &self,
        conversation_id: &str,
        activity_id: &str,
        token: &str,
        until: Timestamp,
    ) -> StoreResult<bool>;
    /// [`write_turns`](Self::write_turns) with done marks only.
    async fn finish_activities(&self, turns: &[TurnKey], now: Timestamp) -> StoreResult<()> {
        self.write_turns(&[], turns, now).await.map(|_| ())
    }
    /// The turn holding `token` failed: the claim is dropped, so a redelivery runs the turn.
    async fn release_activity(
        &self,
        conversation_id: &str,
        activity_id: &str,
        token: &str,
    ) -> StoreResult<()>;
    async fn forget_processed_before(&self, before: Timestamp) -> StoreResult<u64>;
}

#[async_trait]
pub trait JobStore: Send + Sync {
    /// Claims a unit of work until `lease_until`. True for exactly one claimant while the claim is
    /// live; an expired, uncompleted claim may be taken over; a completed one never is (INV-7).
    async fn try_claim(
        &self,
        job: &str,
        key: &str,
        holder: &str,
        now: Timestamp,
        lease_until: Timestamp,
    ) -> StoreResult<bool>;
    /// Marks a claimed unit done; false if `holder` no longer holds it.
    async fn complete_claim(
        &self,
        job: &str,
        key: &str,
        holder: &str,
        at: Timestamp,
    ) -> StoreResult<bool>;
}

/// Phone numbers, authenticator enrollments and OTP challenges (issue 8). Secrets arrive sealed
/// (`crypto.rs`) or hashed; every state change carries its audit event in the same transaction
/// (INV-3), and every change to a challenge is conditional on the state the caller saw.
#[async_trait]
pub trait SecondFactorStore: Send + Sync {
    async fn phone_number(&self, user_id: i64) -> StoreResult<Option<PhoneNumberRow>>;
    /// Stores (or replaces) a person's sealed phone number.
    async fn set_phone_number(
        &self,
        user_id: i64,
        phone_sealed: &[u8],
        source: PhoneSource,
        at: Timestamp,
        audit: &NewAuditEvent,
    ) -> StoreResult<PhoneNumberRow>;
    async fn totp_enrollment(&self, user_id: i64) -> StoreResult<Option<TotpEnrollmentRow>>;
    /// Stores a new, unconfirmed enrollment, replacing an unconfirmed one.
    /// [`StoreError::Conflict`] when the person already has a confirmed one (nothing written).
    async fn start_totp_enrollment(
        &self,
        user_id: i64,
        secret_sealed: &[u8],
        at: Timestamp,
        audit: &NewAuditEvent,
    ) -> StoreResult<TotpEnrollmentRow>;
    /// Confirms the unconfirmed enrollment whose secret is still `secret_sealed` (the one the
    /// code was checked against) and records `step` as accepted. [`StoreError::Conflict`] when it
    /// was confirmed or replaced meanwhile.
    async fn confirm_totp_enrollment(
        &self,
        user_id: i64,
        secret_sealed: &[u8],
        step: i64,
        at: Timestamp,
        audit: &NewAuditEvent,
    ) -> StoreResult<TotpEnrollmentRow>;
    /// Removes a person's enrollment (an admin reset after a lost device), with its audit event;
    /// false when there was none (nothing written).
    async fn delete_totp_enrollment(
        &self,
        user_id: i64,
        audit: &NewAuditEvent,
    ) -> StoreResult<bool>;
    async fn create_challenge(
        &self,
        challenge: &NewChallenge,
        audit: &NewAuditEvent,
    ) -> StoreResult<OtpChallenge>;
    async fn challenge_by_id(&self, id: uuid::Uuid) -> StoreResult<Option<OtpChallenge>>;
    /// When a code was last texted to this person (any challenge), for the send cooldown.
    async fn last_code_sent_to(&self, user_id: i64) -> StoreResult<Option<Timestamp>>;
    /// Replaces a live challenge's code after a resend (new hash, new expiry, one more send),
    /// provided it still has `send_count_seen` sends. `None`: someone else resent first, or it is
    /// no longer live.
    async fn record_resend(
        &self,
        id: uuid::Uuid,
        code_hash: &str,
        sent_at: Timestamp,
        expires_at: Timestamp,
        send_count_seen: i32,
        audit: &NewAuditEvent,
    ) -> StoreResult<Option<OtpChallenge>>;
    /// Counts a wrong code on a live challenge that still has `attempts_seen` attempts, locking
    /// it when that was the last one. `None`: it changed meanwhile (the caller reads it again).
    async fn record_wrong_code(
        &self,
        id: uuid::Uuid,
        attempts_seen: i32,
        at: Timestamp,
        audit: &NewAuditEvent,
    ) -> StoreResult<Option<OtpChallenge>>;
    /// When this person's wrong second-factor codes were typed (every challenge and proof, every
    /// channel), after `since`, oldest first: the per-person cap over a rolling hour.
    async fn wrong_codes_since(
        &self,
        user_id: i64,
        since: Timestamp,
    ) -> StoreResult<Vec<Timestamp>>;
    /// Notes that admins are being alerted about this person reaching the cap, unless they were
    /// alerted at or after `not_before`: true for exactly one caller per window.
    async fn claim_guess_cap_alert(
        &self,
        user_id: i64,
        at: Timestamp,
        not_before: Timestamp,
    ) -> StoreResult<bool>;
    async fn create_factor_proof(
        &self,
        proof: &NewFactorProof,
        audit: &NewAuditEvent,
    ) -> StoreResult<FactorProof>;
    async fn factor_proof_by_id(&self, id: uuid::Uuid) -> StoreResult<Option<FactorProof>>;
    /// Counts a wrong code on a live proof that still has `attempts_seen` attempts (locking it at
    /// the last one) and records it against the person's hourly cap. `None`: it changed meanwhile.
    async fn record_factor_proof_wrong_code(
        &self,
        id: uuid::Uuid,
        attempts_seen: i32,
        at: Timestamp,
        audit: &NewAuditEvent,
    ) -> StoreResult<Option<FactorProof>>;
    /// Uses up a live proof (single use). `None`: it was used, locked or expired meanwhile.
    async fn consume_factor_proof(
        &self,
        id: uuid::Uuid,
        at: Timestamp,
        audit: &NewAuditEvent,
    ) -> StoreResult<Option<FactorProof>>;
    /// Opens (or renews) the person's invitation to set up an authenticator without a factor on
    /// file, until `expires_at`.
    async fn create_totp_invitation(
        &self,
        user_id: i64,
        created_by: &str,
        at: Timestamp,
        expires_at: Timestamp,
        audit: &NewAuditEvent,
    ) -> StoreResult<TotpInvitation>;
    async fn totp_invitation(&self, user_id: i64) -> StoreResult<Option<TotpInvitation>>;
    /// Uses the person's open invitation (once, before it expires); false when there is none.
    async fn use_totp_invitation(
        &self,
        user_id: i64,
        at: Timestamp,
        audit: &NewAuditEvent,
    ) -> StoreResult<bool>;
    /// Replaces whatever enrollment the person has (confirmed or not) with a new unconfirmed one,
    /// after the caller proved the factor on file or used an invitation. Until the new one is
    /// confirmed, codes are texted.
    async fn replace_totp_enrollment(
        &self,
        user_id: i64,
        secret_sealed: &[u8],
        at: Timestamp,
        audit: &NewAuditEvent,
    ) -> StoreResult<TotpEnrollmentRow>;
    /// Uses up a live challenge (single use). With `totp_step`, also moves the person's last
    /// accepted TOTP step to it, only if that is ahead of the stored one (no replays); either
    /// condition failing writes nothing.
    async fn consume_challenge(
        &self,
        id: uuid::Uuid,
        at: Timestamp,
        totp_step: Option<i64>,
        audit: &NewAuditEvent,
    ) -> StoreResult<ConsumeOutcome>;
    /// Notes that the SMS provider refused Passkey's credentials or configuration: true for
    /// exactly one caller per fault (it alerts admins), until a text goes through and
    /// [`SecondFactorStore::clear_sms_credential_fault`] ends it.
    async fn record_sms_credential_fault(
        &self,
        provider: &str,
        detail: &str,
        at: Timestamp,
    ) -> StoreResult<bool>;
    /// A text went through: the provider's fault, if any, is over. True if there was one.
    async fn clear_sms_credential_fault(&self, provider: &str) -> StoreResult<bool>;
    /// The providers refusing Passkey's credentials now, for `admin health` and `doctor`.
    async fn sms_credential_faults(&self) -> StoreResult<Vec<SmsCredentialFault>>;
}

/// The local (development) vault's one-time shares, so that every instance on one database sees
/// the same links. Every change is conditional, so exactly one caller wins it.
#[async_trait]
pub trait LocalShareStore: Send + Sync {
    async fn insert_local_share(&self, share: &LocalShareRow) -> StoreResult<()>;
    async fn local_share(&self, share_id: &str) -> StoreResult<Option<LocalShareRow>>;
    /// Marks the share opened at `at` if it is neither opened, removed nor expired: true for the
    /// one caller that may show the secret.
    async fn open_local_share(&self, share_id: &str, at: Timestamp) -> StoreResult<bool>;
    /// Removes the live shares of `record_uid` whose id or name is `id_or_name`; how many.
    async fn remove_local_share(
        &self,
        record_uid: &str,
        id_or_name: &str,
        at: Timestamp,
    ) -> StoreResult<u64>;
    /// The shares of `record_uid` not removed, oldest first.
    async fn local_shares(&self, record_uid: &str) -> StoreResult<Vec<LocalShareRow>>;
}

/// Bulk reads for the access report (`governance::reports`): one query per table for the
/// requests of a [`ReportWindow`], never one per request. Reads only.
#[async_trait]
pub trait ReportStore: Send + Sync {
    /// The window's requests, oldest first.
    async fn report_requests(&self, window: &ReportWindow) -> StoreResult<Vec<Request>>;
    /// Every approver's say on the window's requests, by request then time.
    async fn report_approvals(&self, window: &ReportWindow) -> StoreResult<Vec<Approval>>;
    /// Every share handed out for the window's requests, by request then time.
    async fn report_issuances(&self, window: &ReportWindow) -> StoreResult<Vec<IssuanceEvent>>;
    /// The audit events with one of `actions` about the window's requests, in chain order.
    async fn report_audit_events(
        &self,
        window: &ReportWindow,
        actions: &[&str],
    ) -> StoreResult<Vec<AuditEvent>>;
    /// The people with these ids (unknown ids are left out), by id.
    async fn users_by_ids(&self, ids: &[i64]) -> StoreResult<Vec<User>>;
    /// The records with these ids (unknown ids are left out), by id.
    async fn records_by_ids(&self, ids: &[i64]) -> StoreResult<Vec<Record>>;
}

/// Access review campaigns (#19.2): campaigns, one review per record, append-only decisions and
/// the review cards sent. Every write carries its audit events in the same transaction (INV-3).
#[async_trait]
pub trait ReviewStore: Send + Sync {
    /// Creates a campaign and its reviews with the audit event, in one transaction, and marks
    /// every review still open from earlier campaigns SUPERSEDED (their undecided rows are in the
    /// new reviews). `None` when a campaign with this `fire_key` exists (nothing written).
    async fn create_review_campaign(
        &self,
        campaign: &NewReviewCampaign,
        reviews: &[NewAccessReview],
        audit: &NewAuditEvent,
    ) -> StoreResult<Option<(ReviewCampaign, Vec<AccessReview>)>>;
    async fn review_campaign(&self, id: i64) -> StoreResult<Option<ReviewCampaign>>;
    /// Every campaign, newest first.
    async fn review_campaigns(&self) -> StoreResult<Vec<ReviewCampaign>>;
    async fn access_review(&self, id: i64) -> StoreResult<Option<AccessReview>>;
    async fn reviews_in_campaign(&self, campaign_id: i64) -> StoreResult<Vec<AccessReview>>;
    /// Reviews still OPEN, oldest first.
    async fn open_reviews(&self) -> StoreResult<Vec<AccessReview>>;
    async fn review_decisions(&self, review_id: i64) -> StoreResult<Vec<ReviewDecision>>;
    async fn decisions_in_campaign(&self, campaign_id: i64) -> StoreResult<Vec<ReviewDecision>>;
    /// Records decisions on an OPEN review, in one transaction: a row already decided (by
    /// someone else, meanwhile) is skipped with its events; a removed authority row is revoked
    /// (append-only: `revoked_*` set once) unless it already was. When the review then has
    /// `items_total` decisions it is CLOSED. [`StoreError::Conflict`] when the review is not
    /// open (nothing written).
    async fn record_review_decisions(
        &self,
        review_id: i64,
        decisions: &[NewReviewDecision],
        items_total: i64,
        at: Timestamp,
    ) -> StoreResult<ReviewWrite>;
    /// Sets an open review's `reminded_at` (or `escalated_at`) once, with its audit event;
    /// false when it was already set or the review is no longer open.
    async fn mark_review_chased(
        &self,
        review_id: i64,
        escalate: bool,
        audit: &NewAuditEvent,
    ) -> StoreResult<bool>;
    /// Break-glass requests whose policy asked for an after-the-fact review and that no review
    /// decided yet, oldest first.
    async fn break_glass_awaiting_review(&self) -> StoreResult<Vec<Request>>;
    /// Requests whose lease overlapped `[from, to)`: started before `to`, not ended before `from`.
    async fn leases_between(&self, from: Timestamp, to: Timestamp) -> StoreResult<Vec<Request>>;
    /// Every governed resource.
    async fn governed_resources(&self) -> StoreResult<Vec<GovernedResource>>;
    async fn record_review_card(
        &self,
        review_id: i64,
        recipient_user_id: i64,
        conversation_id: &str,
        activity_id: &str,
        at: Timestamp,
    ) -> StoreResult<()>;
    async fn review_cards(&self, review_id: i64) -> StoreResult<Vec<ReviewCard>>;
}

#[async_trait]
pub trait HealthStore: Send + Sync {
    /// A round trip to the database.
    async fn ping(&self) -> StoreResult<()>;
    async fn migration_state(&self) -> StoreResult<MigrationState>;
    async fn migrate(&self) -> StoreResult<()>;
    /// What the telemetry gauges report at `now`: live leases and how far the oldest overdue one
    /// is past its end, shares not yet revoked, requests by status, the audit chain's length and
    /// the age of its last checkpoint. Counts and times only, nothing about anyone.
    async fn telemetry_gauges(
        &self,
        now: crate::domain::Timestamp,
    ) -> StoreResult<crate::metrics::Gauges>;
}

/// Which database backs a store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DatabaseKind {
    Sqlite,
    Postgres,
}

/// Everything the application persists.
pub trait Store:
    UserStore
    + VaultStore
    + GovernanceStore
    + PermissionStore
    + RequestStore
    + LeaseStore
    + AuditStore
    + ConversationStore
    + JobStore
    + SecondFactorStore
    + LocalShareStore
    + ReportStore
    + ReviewStore
    + HealthStore
{
    fn kind(&self) -> DatabaseKind;
}

/// Opens the store a database URL names: `postgres://…` or `sqlite://path`.
pub async fn connect(url: &str, max_connections: u32) -> StoreResult<Arc<dyn Store>> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Arc::new(PgStore::connect(url, max_connections).await?))
    } else if let Some(path) = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
    {
        Ok(Arc::new(
            SqliteStore::open(std::path::Path::new(path), max_connections).await?,
        ))
    } else {
        Err(StoreError::Invalid(
            "database URL must start with postgres://, postgresql:// or sqlite://".into(),
        ))
    }
}
