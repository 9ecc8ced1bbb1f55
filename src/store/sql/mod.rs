//! The SQL both stores run. `impl_store!` expands the same statements for SQLite and Postgres;
//! the few real dialect differences are inherent items on each store type:
//! `begin_write()` (SQLite needs `BEGIN IMMEDIATE` to serialize writers up front), `writer()` (the
//! pool an autocommit write runs on: SQLite's one writer connection, see `sqlite.rs`),
//! `commit_write()` (Postgres links a lone write's events in it, or wakes its audit linker), and
//! `insert_traces_and_events_tx()` with `link_committed()` (SQLite links audit events as they are
//! inserted; Postgres inserts them unlinked and links them after they commit, see
//! `PgStore::link_pass`).
//! Placeholders are `$N`, which both drivers bind by number.
//!
//! The bulk inserts of traces and audit events are written per database too, as
//! `insert_traces_and_events_tx` on each store, because the fast form
//! differs in kind, not in spelling: SQLite binds rows of anonymous `?` parameters (it looks a
//! `$N` up by name in a linear list on every bind, quadratic in the parameter count); Postgres
//! binds one array per column and expands them with `UNNEST` (one statement of fixed text for any
//! number of rows, prepared once, instead of a `VALUES` list whose text and plan change with the
//! row count), and writes a change's traces and events in that one statement.
//!
//! **A statement that finds its rows by primary key writes its other conditions as one
//! `(…) IS TRUE`** when another index of the table covers one of those columns, or a partial
//! index's predicate follows from them (`requests` by status or lease end, `issuance_events` and
//! authorities by `revoked_at IS NULL`, open reviews, pending notices). Postgres cannot use such
//! a condition to choose an index, so the key is the only way in. Written plainly, the conditions
//! let a plan made while the table was small and never analyzed (a new database, or statistics
//! from before a burst) scan that other index instead — every live lease, every pending request —
//! and a pooled connection keeps that plan until the table is analyzed again: minting, using and
//! recording a retrieval read all live leases each (docs/benchmarks.md, fifth pass). In a
//! `WHERE`, `(c) IS TRUE` keeps exactly the rows `c` keeps (NULL is not true). The test
//! `store_contract::postgres_finds_requests_by_key_whatever_plan_it_keeps` pins it.
//!
//! One file per store trait (`users.rs` for `UserStore`, …), each holding one macro with that
//! trait's `impl`; `impl_store!` invokes them all inside one `generated` module, after the inherent
//! helpers they share (`append_audit_tx`, …), so every statement is still written once.

pub(super) mod audit;
pub(super) mod conversations;
pub(super) mod governance;
pub(super) mod health;
pub(super) mod jobs;
pub(super) mod leases;
pub(super) mod local_shares;
pub(super) mod permissions;
pub(super) mod reports;
pub(super) mod requests;
pub(super) mod reviews;
pub(super) mod second_factor;
pub(super) mod users;
pub(super) mod vault;

use super::models::{AuditEvent, NewAuditEvent};

/// The one hook where audit events are seen as they are written (both engines, single and
/// batch appends): the metrics derived from them (actions, decisions, code sends), and the request
/// number on the turn or job span that wrote them. Counted as the insert succeeds, inside its
/// transaction.
pub(super) fn appended(events: &[NewAuditEvent]) {
    crate::metrics::get().audit_appended(events.iter().map(|e| e.action.as_str()));
    if let Some(request) = events.iter().find_map(|e| e.request_id) {
        tracing::Span::current().record("request_number", request);
    }
}

/// An audit event's content as the chain hashes it, borrowed (the detail is not cloned).
pub(super) struct HashedContent<'a> {
    pub actor: &'a str,
    pub action: &'a str,
    pub request_id: Option<i64>,
    pub record_id: Option<i64>,
    pub detail: &'a serde_json::Value,
    pub at: crate::domain::Timestamp,
}

impl<'a> From<&'a NewAuditEvent> for HashedContent<'a> {
    fn from(e: &'a NewAuditEvent) -> Self {
        HashedContent {
            actor: &e.actor,
            action: &e.action,
            request_id: e.request_id,
            record_id: e.record_id,
            detail: &e.detail,
            at: e.at,
        }
    }
}

/// The bytes an audit event's hash covers: the previous hash, then the canonical JSON of
/// `{seq, event_id, actor, action, request_id, record_id, detail, created_at}`.
pub(super) fn audit_hash(
    prev_hash: &str,
    seq: i64,
    event_id: &uuid::Uuid,
    e: &NewAuditEvent,
) -> String {
    chain_hash(
        prev_hash,
        seq,
        &canonical_body_before_seq(event_id, &e.into()),
    )
}

/// The canonical JSON of an event's hashed body up to, not including, the value of `seq`.
/// Written directly (the same bytes `canonical_json` gives for the body built as a `Value`, see
/// the test below) because every chained event is hashed once when linked and again by every
/// verification: building the body as a `Value` cloned the detail each time. `seq` sorts last
/// among the keys, so the part that depends on the chain's position is the tail: this prefix can
/// be computed before the chain head is known.
pub(super) fn canonical_body_before_seq(event_id: &uuid::Uuid, c: &HashedContent<'_>) -> Vec<u8> {
    use crate::canonical::{write_canonical_json, write_json_str};
    // Keys in byte order: action, actor, created_at, detail, event_id, record_id, request_id, seq.
    let mut out = Vec::with_capacity(256);
    out.extend_from_slice(b"{\"action\":");
    write_json_str(c.action, &mut out);
    out.extend_from_slice(b",\"actor\":");
    write_json_str(c.actor, &mut out);
    out.extend_from_slice(b",\"created_at\":");
    write_json_str(&c.at.to_fixed_text(), &mut out);
    out.extend_from_slice(b",\"detail\":");
    write_canonical_json(c.detail, &mut out);
    out.extend_from_slice(b",\"event_id\":\"");
    out.extend_from_slice(
        event_id
            .hyphenated()
            .encode_lower(&mut uuid::Uuid::encode_buffer())
            .as_bytes(),
    );
    out.extend_from_slice(b"\",\"record_id\":");
    write_optional_int(c.record_id, &mut out);
    out.extend_from_slice(b",\"request_id\":");
    write_optional_int(c.request_id, &mut out);
    out.extend_from_slice(b",\"seq\":");
    out
}

fn write_optional_int(n: Option<i64>, out: &mut Vec<u8>) {
    match n {
        Some(n) => out.extend_from_slice(n.to_string().as_bytes()),
        None => out.extend_from_slice(b"null"),
    }
}

/// SHA-256 (lower-case hex) of `prev_hash ‖ body_before_seq ‖ seq ‖ "}"`: the chain hash of an
/// event at `seq` whose body prefix is [`canonical_body_before_seq`].
pub(super) fn chain_hash(prev_hash: &str, seq: i64, body_before_seq: &[u8]) -> String {
    let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    ctx.update(prev_hash.as_bytes());
    ctx.update(body_before_seq);
    ctx.update(seq.to_string().as_bytes());
    ctx.update(b"}");
    hex::encode(ctx.finish())
}

/// Recomputes an event's hash from its stored fields.
pub fn recompute_audit_hash(event: &AuditEvent) -> String {
    let content = HashedContent {
        actor: &event.actor,
        action: &event.action,
        request_id: event.request_id,
        record_id: event.record_id,
        detail: &event.detail.0,
        at: event.created_at,
    };
    chain_hash(
        &event.prev_hash,
        event.seq,
        &canonical_body_before_seq(&event.event_id, &content),
    )
}

/// Turns per statement when concurrent turns' claims and finishes are written together: enough
/// for every turn a busy instance has in flight, few enough that SQLite's lookup of each `$N` by
/// name (linear in the parameter count) stays small.
pub(super) const TURN_ROWS: usize = 32;

/// Splits `len` rows into chunks of powers of two, largest first, none over `max` (a power of
/// two): 13 → 8, 4, 1. Each chunk size is its own statement text, and each connection keeps
/// every text it prepared; so a batch of any size uses one of log2(max) + 1 texts, not one of
/// `max`.
pub(super) fn pow2_chunks(mut len: usize, max: usize) -> Vec<usize> {
    debug_assert!(max.is_power_of_two());
    let mut chunks = Vec::new();
    while len > 0 {
        let size = if len >= max {
            max
        } else {
            1 << (usize::BITS - 1 - len.leading_zeros())
        };
        chunks.push(size);
        len -= size;
    }
    chunks
}

/// The statement text for `rows` rows (a power of two up to [`TURN_ROWS`]), built once per size
/// and kept for the life of the process.
pub(super) fn turn_statement(
    cache: &'static [std::sync::OnceLock<String>; 6],
    rows: usize,
    build: impl FnOnce(usize) -> String,
) -> &'static str {
    cache[rows.trailing_zeros() as usize].get_or_init(|| build(rows))
}

/// `$first, $first+1, …` for `n` values.
pub(super) fn list_placeholders(n: usize, first: usize) -> String {
    let mut out = String::with_capacity(n * 6);
    for i in 0..n {
        if i > 0 {
            out.push_str(", ");
        }
        out.push('$');
        out.push_str(&(first + i).to_string());
    }
    out
}

/// `(?, …, ?), (?, …)` for `rows` rows of `cols` anonymous parameters, bound in order (SQLite:
/// see the module doc).
pub(super) fn anonymous_values(rows: usize, cols: usize) -> String {
    let row = format!("({})", vec!["?"; cols].join(", "));
    vec![row; rows].join(", ")
}

/// Binds a trace's twelve columns, in the order of `governance_decision_traces`' insert lists
/// (`request_id`, stage, outcome, … `created_at`), to `$q`: the single insert and SQLite's
/// multi-row one bind the same fields.
macro_rules! bind_trace {
    ($q:expr, $request_id:expr, $t:expr) => {
        $q.bind($request_id)
            .bind($t.stage)
            .bind($t.outcome)
            .bind(sqlx::types::Json(&$t.reasons))
            .bind(sqlx::types::Json(&$t.constraints))
            .bind(sqlx::types::Json(&$t.required_approvals))
            .bind(sqlx::types::Json(&$t.trace))
            .bind(sqlx::types::Json(&$t.inputs))
            .bind(&$t.inputs_hash)
            .bind(&$t.policy_version)
            .bind(&$t.code_version)
            .bind($t.at)
    };
}
pub(super) use bind_trace;

macro_rules! impl_store {
    ($store:ident, $db:ty) => {
        mod generated {
        use super::$store;
        use $crate::domain::{FolderPermission, PhoneSource, RequestStatus, Role, Sensitivity, SyncStatus, Timestamp, VaultPrincipalType};
        use $crate::store::models::*;
        use $crate::store::{
            AuditStore, ConversationStore, GovernanceStore, HealthStore, JobStore, LeaseStore, LocalShareStore, PermissionStore,
            ReportStore, RequestStore, ReviewStore, SecondFactorStore, StoreError, StoreResult, UserStore, VaultStore,
        };
        use serde_json::Value;
        use async_trait::async_trait;
        use sqlx::types::Json;
        use super::WriteTx;

        impl $store {
            /// Appends an audit event inside `tx` (INV-3: it commits or rolls back with the change):
            /// the store's batch append of one event — linked inline under the chain-head lock
            /// on SQLite; on Postgres inserted unlinked, taking no shared lock, for the linker to
            /// link after it commits (see `PgStore::link_pass`).
            async fn append_audit_tx(
                tx: &mut WriteTx,
                e: &NewAuditEvent,
            ) -> StoreResult<()> {
                Self::append_audit_batch_tx(tx, std::slice::from_ref(e)).await
            }

            /// Appends events inside `tx`, in the order given: the store's insert of traces and
            /// events, with no traces.
            async fn append_audit_batch_tx(
                tx: &mut WriteTx,
                events: &[NewAuditEvent],
            ) -> StoreResult<()> {
                Self::insert_traces_and_events_tx(tx, &[], None, events).await
            }

            /// Links what is committed before a read of the chain, so a read after a write sees the
            /// write's event (a no-op where events are linked inline). A failed pass is logged and
            /// the linked chain read: the verifier reports events left unlinked too long.
            async fn link_before_read(&self) {
                if let Err(e) = self.link_committed().await {
                    tracing::warn!(error = %e, "audit link pass failed; reading the chain linked so far");
                }
            }

            /// One more wrong code on a live OTP challenge or factor proof (`table`) that still has
            /// `attempts_seen` attempts, locking it at the last one, counted against its person's
            /// hourly cap, with its audit event. `None`: it changed meanwhile (nothing written).
            async fn record_wrong_attempt<R>(
                &self,
                table: &'static str,
                id: uuid::Uuid,
                attempts_seen: i32,
                at: Timestamp,
                audit: &NewAuditEvent,
            ) -> StoreResult<Option<R>>
            where
                R: for<'r> sqlx::FromRow<'r, <$db as sqlx::Database>::Row> + Send + Unpin + CodeAttempts,
            {
                let mut tx = self.begin_write().await?;
                let sql = format!(
                    "UPDATE {table}
                     SET attempts = attempts + 1,
                         locked_at = CASE WHEN attempts + 1 >= max_attempts THEN $3 ELSE NULL END
                     WHERE id = $1 AND attempts = $2
                       AND consumed_at IS NULL AND locked_at IS NULL AND expires_at > $3
                     RETURNING *"
                );
                let row: Option<R> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
                    .bind(id)
                    .bind(attempts_seen)
                    .bind(at)
                    .fetch_optional(&mut *tx)
                    .await?;
                if let Some(row) = &row {
                    Self::count_wrong_code_tx(&mut tx, row.person(), at).await?;
                    Self::append_audit_tx(&mut tx, audit).await?;
                }
                self.commit_write(tx).await?;
                Ok(row)
            }

            /// Records one wrong second-factor code against the person's hourly cap.
            async fn count_wrong_code_tx(
                tx: &mut WriteTx,
                user_id: i64,
                at: Timestamp,
            ) -> StoreResult<()> {
                sqlx::query("INSERT INTO otp_failures (user_id, at) VALUES ($1, $2)")
                    .bind(user_id)
                    .bind(at)
                    .execute(&mut **tx)
                    .await?;
                Ok(())
            }

            async fn insert_trace_tx(
                tx: &mut WriteTx,
                t: &NewTrace,
                request_id: Option<i64>,
            ) -> StoreResult<DecisionTrace> {
                Ok($crate::store::sql::bind_trace!(sqlx::query_as(
                    "INSERT INTO governance_decision_traces
                        (request_id, stage, outcome, reasons, constraints, required_approvals, trace, inputs,
                         inputs_hash, policy_version, code_version, created_at)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) RETURNING *",
                ), request_id.or(t.request_id), t)
                .fetch_one(&mut **tx)
                .await?)
            }

            /// The conditional status move every transition shares (see `RequestStore::transition_request`).
            async fn transition_tx(tx: &mut WriteTx, c: &StatusChange) -> StoreResult<Request> {
                c.from.transition(c.to)?;
                let final_state = c.to.is_final();
                let (set_preflight, attempts, next_at) = match c.preflight {
                    Some((attempts, next)) => (true, attempts, next),
                    None => (false, 0, None),
                };
                let updated: Option<Request> = sqlx::query_as(
                    "UPDATE requests SET
                        status = $3,
                        updated_at = $4,
                        decided_by = COALESCE($5, decided_by),
                        decided_at = CASE WHEN $5 IS NOT NULL OR $6 IS NOT NULL THEN $4 ELSE decided_at END,
                        decision_reason = COALESCE($6, decision_reason),
                        approved_duration_secs = COALESCE($7, approved_duration_secs),
                        lease_started_at = COALESCE($8, lease_started_at),
                        lease_expires_at = COALESCE($9, lease_expires_at),
                        ended_at = CASE WHEN $10 THEN $4 ELSE ended_at END,
                        issuance_token_hash = CASE WHEN $10 THEN NULL ELSE issuance_token_hash END,
                        issuance_token_expires_at = CASE WHEN $10 THEN NULL ELSE issuance_token_expires_at END,
                        renewal_duration_secs = CASE WHEN status = 'RENEWAL_PENDING' THEN NULL
                                                     ELSE COALESCE($11, renewal_duration_secs) END,
                        extension_count = extension_count + CASE WHEN $12 THEN 1 ELSE 0 END,
                        preflight_attempts = CASE WHEN $13 THEN $14 ELSE preflight_attempts END,
                        next_attempt_at = CASE WHEN $10 THEN NULL WHEN $13 THEN $15 ELSE next_attempt_at END,
                        expiry_warned_at = CASE WHEN $12 THEN NULL ELSE expiry_warned_at END
                     WHERE id = $1 AND (status = $2) IS TRUE
                     RETURNING *",
                )
                .bind(c.request_id)
                .bind(c.from)
                .bind(c.to)
                .bind(c.at)
                .bind(c.decided_by)
                .bind(&c.decision_reason)
                .bind(c.approved_duration_secs)
                .bind(c.lease_started_at)
                .bind(c.lease_expires_at)
                .bind(final_state)
                .bind(c.renewal_duration_secs)
                .bind(c.extension_granted)
                .bind(set_preflight)
                .bind(attempts)
                .bind(next_at)
                .fetch_optional(&mut **tx)
                .await?;
                match updated {
                    Some(request) => Ok(request),
                    None => Err(Self::why_not(tx, c.request_id, c.from).await),
                }
            }

            /// Why a conditional write on a request matched nothing: gone, or in another status.
            async fn why_not(tx: &mut WriteTx, request_id: i64, expected: RequestStatus) -> StoreError {
                let actual: Result<Option<RequestStatus>, sqlx::Error> =
                    sqlx::query_scalar("SELECT status FROM requests WHERE id = $1")
                        .bind(request_id)
                        .fetch_optional(&mut **tx)
                        .await;
                match actual {
                    Err(e) => e.into(),
                    Ok(None) => StoreError::NotFound("request"),
                    Ok(Some(actual)) if actual != expected => StoreError::StatusConflict { request_id, expected, actual },
                    Ok(Some(_)) => StoreError::Conflict("the request changed meanwhile".into()),
                }
            }

            /// Writes a state change's traces and audit event into its transaction (INV-3).
            async fn finish_tx(
                tx: &mut WriteTx,
                request: &Request,
                traces: &[NewTrace],
                audit: &NewAuditEvent,
            ) -> StoreResult<()> {
                let mut audit = audit.clone();
                audit.request_id = Some(request.id);
                audit.record_id = audit.record_id.or(Some(request.record_id));
                Self::insert_traces_and_events_tx(tx, traces, Some(request.id), std::slice::from_ref(&audit)).await
            }

            async fn authority_row(tx: &mut WriteTx, id: i64) -> StoreResult<Authority> {
                sqlx::query_as("SELECT * FROM governed_resource_authorities WHERE id = $1")
                    .bind(id)
                    .fetch_optional(&mut **tx)
                    .await?
                    .ok_or(StoreError::NotFound("authority"))
            }

            async fn insert_authority_tx(
                tx: &mut WriteTx,
                a: &NewAuthority,
                at: Timestamp,
            ) -> StoreResult<Authority> {
                Ok(sqlx::query_as(
                    "INSERT INTO governed_resource_authorities
                        (resource_id, authority, principal_type, principal, stage, valid_from, valid_to, created_at, created_by)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING *",
                )
                .bind(a.resource_id)
                .bind(a.authority)
                .bind(a.principal_type)
                .bind(&a.principal)
                .bind(a.stage)
                .bind(a.valid_from)
                .bind(a.valid_to)
                .bind(at)
                .bind(&a.created_by)
                .fetch_one(&mut **tx)
                .await?)
            }
        }

        $crate::store::sql::users::impl_user_store!($store, $db);
        $crate::store::sql::vault::impl_vault_store!($store, $db);
        $crate::store::sql::governance::impl_governance_store!($store, $db);
        $crate::store::sql::permissions::impl_permission_store!($store, $db);
        $crate::store::sql::requests::impl_request_store!($store, $db);
        $crate::store::sql::leases::impl_lease_store!($store, $db);
        $crate::store::sql::audit::impl_audit_store!($store, $db);
        $crate::store::sql::conversations::impl_conversation_store!($store, $db);
        $crate::store::sql::jobs::impl_job_store!($store, $db);
        $crate::store::sql::second_factor::impl_second_factor_store!($store, $db);
        $crate::store::sql::local_shares::impl_local_share_store!($store, $db);
        $crate::store::sql::reports::impl_report_store!($store, $db);
        $crate::store::sql::reviews::impl_review_store!($store, $db);
        $crate::store::sql::health::impl_health_store!($store, $db);
        }
    };
}
pub(super) use impl_store;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::canonical::{canonical_json, sha256_hex};
    use crate::domain::Timestamp;
    use serde_json::json;

    #[test]
    fn turn_batches_split_into_powers_of_two() {
        assert_eq!(pow2_chunks(0, 32), Vec::<usize>::new());
        assert_eq!(pow2_chunks(1, 32), vec![1]);
        assert_eq!(pow2_chunks(13, 32), vec![8, 4, 1]);
        assert_eq!(pow2_chunks(32, 32), vec![32]);
        assert_eq!(pow2_chunks(70, 32), vec![32, 32, 4, 2]);
    }

    /// The chain's hash formula as first written (and as exports from before verify): the body
    /// built as a JSON value, then canonical JSON, then SHA-256 of the previous hash and it.
    fn reference_hash(
        prev_hash: &str,
        seq: i64,
        event_id: &uuid::Uuid,
        e: &NewAuditEvent,
    ) -> String {
        let body = json!({
            "seq": seq,
            "event_id": event_id.to_string(),
            "actor": e.actor,
            "action": e.action,
            "request_id": e.request_id,
            "record_id": e.record_id,
            "detail": e.detail,
            "created_at": e.at.to_fixed_text(),
        });
        let mut bytes = prev_hash.as_bytes().to_vec();
        bytes.extend_from_slice(canonical_json(&body).as_bytes());
        sha256_hex(bytes)
    }

    #[test]
    fn the_direct_hash_is_the_chain_formula_byte_for_byte() {
        let at = Timestamp::parse("2026-11-23T12:00:00.123456Z").unwrap();
        let events = [
            NewAuditEvent::new("system:lease-expiry", "LEASE_EXPIRED", at)
                .request(42)
                .record(7)
                .detail(json!({"reason": "the lease ran out", "outstanding_shares": 1, "issuance_count": 3})),
            NewAuditEvent::new("user:\"quoted\"\n", "ROLE_CHANGED", at),
            NewAuditEvent::new("ünïcode ☃ \u{1}", "SHARE_REVOKED", at)
                .request(-1)
                .detail(json!({"z": [3, {"b": null, "a": 1.5}], "a": "x\\y", "m": true})),
            NewAuditEvent::new("a", "b", at).record(i64::MAX).detail(json!(null)),
        ];
        for (n, e) in events.iter().enumerate() {
            let id = uuid::Uuid::new_v4();
            for (prev, seq) in [
                ("0".repeat(64), 1),
                ("ab".repeat(32), i64::MAX),
                (String::new(), 10 + n as i64),
            ] {
                assert_eq!(
                    audit_hash(&prev, seq, &id, e),
                    reference_hash(&prev, seq, &id, e),
                    "event {n}"
                );
            }
        }
    }
}
