//! The SQL both stores run. `impl_store!` expands the same statements for SQLite and Postgres;
//! the few real dialect differences are inherent items on each store type:
//! `begin_write()` (SQLite needs `BEGIN IMMEDIATE` to serialize writers up front) and
//! `LOCK_CHAIN_HEAD` (Postgres locks the head row with `FOR UPDATE`).
//! Placeholders are `$N`, which both drivers bind by number.

use super::models::{AuditEvent, NewAuditEvent};
use crate::canonical::{canonical_json, sha256_hex};
use serde_json::json;

/// The bytes an audit event's hash covers: the previous hash, then the canonical event.
pub(super) fn audit_hash(
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

/// Recomputes an event's hash from its stored fields.
pub fn recompute_audit_hash(event: &AuditEvent) -> String {
    let as_new = NewAuditEvent {
        actor: event.actor.clone(),
        action: event.action.clone(),
        request_id: event.request_id,
        record_id: event.record_id,
        detail: event.detail.0.clone(),
        at: event.created_at,
    };
    audit_hash(&event.prev_hash, event.seq, &event.event_id, &as_new)
}

/// Ids per `IN (…)` list in the batch paths. Multi-row inserts use each store's `INSERT_ROWS`.
pub(super) const BATCH_ROWS: usize = 250;

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

/// `($1, …, $cols), ($cols+1, …)` for `rows` rows of `cols` values, numbered from 1.
pub(super) fn values_placeholders(rows: usize, cols: usize) -> String {
    let mut out = String::with_capacity(rows * cols * 6);
    for r in 0..rows {
        if r > 0 {
            out.push_str(", ");
        }
        out.push('(');
        out.push_str(&list_placeholders(cols, r * cols + 1));
        out.push(')');
    }
    out
}

macro_rules! impl_store {
    ($store:ident, $db:ty) => {
        mod generated {
        use super::$store;
        use $crate::domain::{FolderPermission, PhoneSource, RequestStatus, Role, Sensitivity, SyncStatus, Timestamp, VaultPrincipalType};
        use $crate::store::models::*;
        use $crate::store::{
            AuditStore, ConversationStore, GovernanceStore, HealthStore, JobStore, LeaseStore, LocalShareStore, PermissionStore,
            RequestStore, SecondFactorStore, StoreError, StoreResult, UserStore, VaultStore,
        };
        use serde_json::Value;
        use async_trait::async_trait;
        use sqlx::types::Json;
        use sqlx::Transaction;

        impl $store {
            /// Appends an audit event inside `tx`, under the chain-head lock.
            async fn append_audit_tx(
                tx: &mut Transaction<'static, $db>,
                e: &NewAuditEvent,
            ) -> StoreResult<AuditEvent> {
                let (head_seq, head_hash): (i64, String) =
                    sqlx::query_as(Self::LOCK_CHAIN_HEAD).fetch_one(&mut **tx).await?;
                let seq = head_seq + 1;
                let event_id = uuid::Uuid::new_v4();
                let hash = $crate::store::sql::audit_hash(&head_hash, seq, &event_id, e);
                let event: AuditEvent = sqlx::query_as(
                    "INSERT INTO audit_events
                        (seq, event_id, actor, action, request_id, record_id, detail, created_at, prev_hash, hash)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING *",
                )
                .bind(seq)
                .bind(event_id)
                .bind(&e.actor)
                .bind(&e.action)
                .bind(e.request_id)
                .bind(e.record_id)
                .bind(Json(&e.detail))
                .bind(e.at)
                .bind(&head_hash)
                .bind(&hash)
                .fetch_one(&mut **tx)
                .await?;
                sqlx::query("UPDATE audit_chain_head SET seq = $1, hash = $2 WHERE id = 1")
                    .bind(seq)
                    .bind(&hash)
                    .execute(&mut **tx)
                    .await?;
                Ok(event)
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
                tx.commit().await?;
                Ok(row)
            }

            /// Records one wrong second-factor code against the person's hourly cap.
            async fn count_wrong_code_tx(
                tx: &mut Transaction<'static, $db>,
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

            /// Appends several events inside `tx` with the chain head locked once: the head is read,
            /// each event's hash is computed in order exactly as [`Self::append_audit_tx`] does, the
            /// events are inserted with multi-row statements and the head is moved once.
            async fn append_audit_batch_tx(
                tx: &mut Transaction<'static, $db>,
                events: &[NewAuditEvent],
            ) -> StoreResult<()> {
                if events.is_empty() {
                    return Ok(());
                }
                let (head_seq, head_hash): (i64, String) =
                    sqlx::query_as(Self::LOCK_CHAIN_HEAD).fetch_one(&mut **tx).await?;
                let mut chained: Vec<(i64, uuid::Uuid, String, String)> = Vec::with_capacity(events.len());
                let mut seq = head_seq;
                let mut prev = head_hash;
                for e in events {
                    seq += 1;
                    let event_id = uuid::Uuid::new_v4();
                    let hash = $crate::store::sql::audit_hash(&prev, seq, &event_id, e);
                    chained.push((seq, event_id, std::mem::replace(&mut prev, hash.clone()), hash));
                }
                let rows = Self::INSERT_ROWS;
                for (events, chained) in events.chunks(rows).zip(chained.chunks(rows)) {
                    let sql = format!(
                        "INSERT INTO audit_events
                            (seq, event_id, actor, action, request_id, record_id, detail, created_at, prev_hash, hash)
                         VALUES {}",
                        $crate::store::sql::values_placeholders(events.len(), 10)
                    );
                    // Only numbered placeholders are formatted in: no outside text.
                    let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
                    for (e, (seq, event_id, prev_hash, hash)) in events.iter().zip(chained) {
                        q = q
                            .bind(*seq)
                            .bind(*event_id)
                            .bind(&e.actor)
                            .bind(&e.action)
                            .bind(e.request_id)
                            .bind(e.record_id)
                            .bind(Json(&e.detail))
                            .bind(e.at)
                            .bind(prev_hash)
                            .bind(hash);
                    }
                    q.execute(&mut **tx).await?;
                }
                sqlx::query("UPDATE audit_chain_head SET seq = $1, hash = $2 WHERE id = 1")
                    .bind(seq)
                    .bind(&prev)
                    .execute(&mut **tx)
                    .await?;
                Ok(())
            }

            /// Inserts several traces inside `tx` with multi-row statements.
            async fn insert_traces_batch_tx(
                tx: &mut Transaction<'static, $db>,
                traces: &[NewTrace],
            ) -> StoreResult<()> {
                for chunk in traces.chunks(Self::INSERT_ROWS) {
                    let sql = format!(
                        "INSERT INTO governance_decision_traces
                            (request_id, stage, outcome, reasons, constraints, required_approvals, trace, inputs,
                             inputs_hash, policy_version, code_version, created_at)
                         VALUES {}",
                        $crate::store::sql::values_placeholders(chunk.len(), 12)
                    );
                    // Only numbered placeholders are formatted in: no outside text.
                    let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
                    for t in chunk {
                        q = q
                            .bind(t.request_id)
                            .bind(t.stage)
                            .bind(t.outcome)
                            .bind(Json(&t.reasons))
                            .bind(Json(&t.constraints))
                            .bind(Json(&t.required_approvals))
                            .bind(Json(&t.trace))
                            .bind(Json(&t.inputs))
                            .bind(&t.inputs_hash)
                            .bind(&t.policy_version)
                            .bind(&t.code_version)
                            .bind(t.at);
                    }
                    q.execute(&mut **tx).await?;
                }
                Ok(())
            }

            async fn insert_trace_tx(
                tx: &mut Transaction<'static, $db>,
                t: &NewTrace,
                request_id: Option<i64>,
            ) -> StoreResult<DecisionTrace> {
                Ok(sqlx::query_as(
                    "INSERT INTO governance_decision_traces
                        (request_id, stage, outcome, reasons, constraints, required_approvals, trace, inputs,
                         inputs_hash, policy_version, code_version, created_at)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) RETURNING *",
                )
                .bind(request_id.or(t.request_id))
                .bind(t.stage)
                .bind(t.outcome)
                .bind(Json(&t.reasons))
                .bind(Json(&t.constraints))
                .bind(Json(&t.required_approvals))
                .bind(Json(&t.trace))
                .bind(Json(&t.inputs))
                .bind(&t.inputs_hash)
                .bind(&t.policy_version)
                .bind(&t.code_version)
                .bind(t.at)
                .fetch_one(&mut **tx)
                .await?)
            }

            /// The conditional status move every transition shares (see `RequestStore::transition_request`).
            async fn transition_tx(tx: &mut Transaction<'static, $db>, c: &StatusChange) -> StoreResult<Request> {
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
                     WHERE id = $1 AND status = $2
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
            async fn why_not(tx: &mut Transaction<'static, $db>, request_id: i64, expected: RequestStatus) -> StoreError {
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
                tx: &mut Transaction<'static, $db>,
                request: &Request,
                traces: &[NewTrace],
                audit: &NewAuditEvent,
            ) -> StoreResult<()> {
                for t in traces {
                    Self::insert_trace_tx(tx, t, Some(request.id)).await?;
                }
                let mut audit = audit.clone();
                audit.request_id = Some(request.id);
                audit.record_id = audit.record_id.or(Some(request.record_id));
                Self::append_audit_tx(tx, &audit).await?;
                Ok(())
            }

            async fn authority_row(tx: &mut Transaction<'static, $db>, id: i64) -> StoreResult<Authority> {
                sqlx::query_as("SELECT * FROM governed_resource_authorities WHERE id = $1")
                    .bind(id)
                    .fetch_optional(&mut **tx)
                    .await?
                    .ok_or(StoreError::NotFound("authority"))
            }

            async fn insert_authority_tx(
                tx: &mut Transaction<'static, $db>,
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

        #[async_trait]
        impl UserStore for $store {
            async fn upsert_user(&self, u: &NewUser, at: Timestamp) -> StoreResult<User> {
                Ok(sqlx::query_as(
                    "INSERT INTO users (aad_object_id, tenant_id, teams_user_id, upn, email, display_name, role,
                                        created_at, updated_at)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8)
                     ON CONFLICT (aad_object_id) DO UPDATE SET
                        tenant_id = COALESCE(excluded.tenant_id, users.tenant_id),
                        teams_user_id = COALESCE(excluded.teams_user_id, users.teams_user_id),
                        upn = COALESCE(excluded.upn, users.upn),
                        email = COALESCE(excluded.email, users.email),
                        display_name = excluded.display_name,
                        updated_at = excluded.updated_at
                     RETURNING *",
                )
                .bind(&u.aad_object_id)
                .bind(&u.tenant_id)
                .bind(&u.teams_user_id)
                .bind(&u.upn)
                .bind(&u.email)
                .bind(&u.display_name)
                .bind(u.initial_role)
                .bind(at)
                .fetch_one(&self.pool)
                .await?)
            }

            async fn user_by_id(&self, id: i64) -> StoreResult<Option<User>> {
                Ok(sqlx::query_as("SELECT * FROM users WHERE id = $1").bind(id).fetch_optional(&self.pool).await?)
            }

            async fn user_by_aad_object_id(&self, aad: &str) -> StoreResult<Option<User>> {
                Ok(sqlx::query_as("SELECT * FROM users WHERE aad_object_id = $1")
                    .bind(aad)
                    .fetch_optional(&self.pool)
                    .await?)
            }

            async fn user_by_email(&self, email: &str) -> StoreResult<Option<User>> {
                Ok(sqlx::query_as(
                    "SELECT * FROM users WHERE lower(email) = lower($1) OR lower(upn) = lower($1) ORDER BY id LIMIT 1",
                )
                .bind(email)
                .fetch_optional(&self.pool)
                .await?)
            }

            async fn users_with_role(&self, role: Role) -> StoreResult<Vec<User>> {
                Ok(sqlx::query_as("SELECT * FROM users WHERE role = $1 ORDER BY id")
                    .bind(role)
                    .fetch_all(&self.pool)
                    .await?)
            }

            async fn set_user_role(&self, user_id: i64, role: Role, audit: &NewAuditEvent) -> StoreResult<User> {
                let mut tx = self.begin_write().await?;
                let user: User = sqlx::query_as("UPDATE users SET role = $2, updated_at = $3 WHERE id = $1 RETURNING *")
                    .bind(user_id)
                    .bind(role)
                    .bind(audit.at)
                    .fetch_optional(&mut *tx)
                    .await?
                    .ok_or(StoreError::NotFound("user"))?;
                sqlx::query("DELETE FROM user_permission_cache WHERE user_id = $1")
                    .bind(user_id)
                    .execute(&mut *tx)
                    .await?;
                Self::append_audit_tx(&mut tx, audit).await?;
                tx.commit().await?;
                Ok(user)
            }

            async fn count_users(&self) -> StoreResult<i64> {
                Ok(sqlx::query_scalar("SELECT COUNT(*) FROM users").fetch_one(&self.pool).await?)
            }

            async fn set_user_addresses(
                &self,
                user_id: i64,
                addresses: &UserAddresses,
                audit: &NewAuditEvent,
                released: &(dyn Fn(i64, Vec<&'static str>) -> NewAuditEvent + Sync),
                at: Timestamp,
            ) -> StoreResult<User> {
                let mut tx = self.begin_write().await?;
                let before: Option<(Option<String>, Option<String>)> =
                    sqlx::query_as("SELECT email, upn FROM users WHERE id = $1")
                        .bind(user_id)
                        .fetch_optional(&mut *tx)
                        .await?;
                let (email, upn) = before.ok_or(StoreError::NotFound("user"))?;
                let changed = email != addresses.email || upn != addresses.upn;
                let user: User = sqlx::query_as(
                    "UPDATE users SET email = $2, upn = $3, directory_checked_at = $4,
                            directory_check_failed = $5, updated_at = $4
                     WHERE id = $1 RETURNING *",
                )
                .bind(user_id)
                .bind(&addresses.email)
                .bind(&addresses.upn)
                .bind(at)
                .bind(false)
                .fetch_one(&mut *tx)
                .await?;
                if changed {
                    // Permissions were matched against the old addresses.
                    sqlx::query("DELETE FROM user_permission_cache WHERE user_id = $1")
                        .bind(user_id)
                        .execute(&mut *tx)
                        .await?;
                    Self::append_audit_tx(&mut tx, audit).await?;
                }
                if let (Some(tenant), false) = (&user.tenant_id, addresses.email.is_none() && addresses.upn.is_none()) {
                    let holders: Vec<(i64, Option<String>, Option<String>)> = sqlx::query_as(
                        "SELECT id, email, upn FROM users
                         WHERE id <> $1 AND tenant_id = $2
                           AND (lower(email) IN (lower($3), lower($4)) OR lower(upn) IN (lower($3), lower($4)))
                         ORDER BY id",
                    )
                    .bind(user_id)
                    .bind(tenant)
                    .bind(&addresses.email)
                    .bind(&addresses.upn)
                    .fetch_all(&mut *tx)
                    .await?;
                    let taken = |a: &Option<String>| {
                        a.as_deref().is_some_and(|a| {
                            [&addresses.email, &addresses.upn]
                                .into_iter()
                                .flatten()
                                .any(|n| n.to_lowercase() == a.to_lowercase())
                        })
                    };
                    for (holder, email, upn) in holders {
                        let mut cleared = Vec::new();
                        if taken(&email) {
                            cleared.push("email");
                        }
                        if taken(&upn) {
                            cleared.push("upn");
                        }
                        if cleared.is_empty() {
                            continue;
                        }
                        sqlx::query(
                            "UPDATE users SET email = $2, upn = $3, directory_checked_at = NULL,
                                    directory_check_failed = $4, updated_at = $5
                             WHERE id = $1",
                        )
                        .bind(holder)
                        .bind(if taken(&email) { None } else { email })
                        .bind(if taken(&upn) { None } else { upn })
                        .bind(false)
                        .bind(at)
                        .execute(&mut *tx)
                        .await?;
                        sqlx::query("DELETE FROM user_permission_cache WHERE user_id = $1")
                            .bind(holder)
                            .execute(&mut *tx)
                            .await?;
                        Self::append_audit_tx(&mut tx, &released(holder, cleared)).await?;
                    }
                }
                tx.commit().await?;
                Ok(user)
            }

            async fn mark_directory_check_failed(&self, user_id: i64, at: Timestamp) -> StoreResult<User> {
                sqlx::query_as(
                    "UPDATE users SET directory_checked_at = $2, directory_check_failed = $3 WHERE id = $1 RETURNING *",
                )
                .bind(user_id)
                .bind(at)
                .bind(true)
                .fetch_optional(&self.pool)
                .await?
                .ok_or(StoreError::NotFound("user"))
            }
        }

        #[async_trait]
        impl VaultStore for $store {
            async fn upsert_folder(&self, vault_uid: &str, name: &str, at: Timestamp) -> StoreResult<VaultFolder> {
                Ok(sqlx::query_as(
                    "INSERT INTO vault_folders (vault_uid, name, last_synced_at, created_at) VALUES ($1, $2, $3, $3)
                     ON CONFLICT (vault_uid) DO UPDATE SET name = excluded.name, last_synced_at = excluded.last_synced_at
                     RETURNING *",
                )
                .bind(vault_uid)
                .bind(name)
                .bind(at)
                .fetch_one(&self.pool)
                .await?)
            }

            async fn folder_by_id(&self, id: i64) -> StoreResult<Option<VaultFolder>> {
                Ok(sqlx::query_as("SELECT * FROM vault_folders WHERE id = $1").bind(id).fetch_optional(&self.pool).await?)
            }

            async fn list_folders(&self) -> StoreResult<Vec<VaultFolder>> {
                Ok(sqlx::query_as("SELECT * FROM vault_folders ORDER BY name, id").fetch_all(&self.pool).await?)
            }

            async fn replace_folder_permissions(
                &self,
                folder_id: i64,
                permissions: &[NewFolderPermission],
                at: Timestamp,
            ) -> StoreResult<Vec<VaultFolderPermission>> {
                let mut tx = self.begin_write().await?;
                let before: Vec<(VaultPrincipalType, String, FolderPermission)> = sqlx::query_as(
                    "SELECT principal_type, principal, permission FROM vault_folder_permissions WHERE folder_id = $1",
                )
                .bind(folder_id)
                .fetch_all(&mut *tx)
                .await?;
                let before: std::collections::BTreeSet<_> = before.into_iter().collect();
                let after: std::collections::BTreeSet<_> = permissions
                    .iter()
                    .map(|p| (p.principal_type, p.principal.clone(), p.permission))
                    .collect();
                if before != after {
                    // Whose permissions changed is not worth working out: a sync that changes an
                    // ACL is rare, and the next question re-resolves from the new ACL.
                    sqlx::query("DELETE FROM user_permission_cache").execute(&mut *tx).await?;
                }
                sqlx::query("DELETE FROM vault_folder_permissions WHERE folder_id = $1")
                    .bind(folder_id)
                    .execute(&mut *tx)
                    .await?;
                let mut rows = Vec::with_capacity(permissions.len());
                for p in permissions {
                    let row: VaultFolderPermission = sqlx::query_as(
                        "INSERT INTO vault_folder_permissions (folder_id, principal_type, principal, permission, synced_at)
                         VALUES ($1, $2, $3, $4, $5) RETURNING *",
                    )
                    .bind(folder_id)
                    .bind(p.principal_type)
                    .bind(&p.principal)
                    .bind(p.permission)
                    .bind(at)
                    .fetch_one(&mut *tx)
                    .await?;
                    rows.push(row);
                }
                tx.commit().await?;
                Ok(rows)
            }

            async fn folder_permissions(&self, folder_id: i64) -> StoreResult<Vec<VaultFolderPermission>> {
                Ok(sqlx::query_as("SELECT * FROM vault_folder_permissions WHERE folder_id = $1 ORDER BY id")
                    .bind(folder_id)
                    .fetch_all(&self.pool)
                    .await?)
            }

            async fn upsert_record(&self, r: &NewRecord, at: Timestamp) -> StoreResult<Record> {
                Ok(sqlx::query_as(
                    "INSERT INTO records (vault_uid, title, record_type, folder_id, revision, vault_owner, owner_user_id,
                                          sensitivity, sync_status, discovery_source, discovered_at, last_synced_at,
                                          created_at, updated_at)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'FRESH', $9, $10, $10, $10, $10)
                     ON CONFLICT (vault_uid) DO UPDATE SET
                        title = excluded.title,
                        record_type = excluded.record_type,
                        folder_id = excluded.folder_id,
                        revision = excluded.revision,
                        vault_owner = excluded.vault_owner,
                        owner_user_id = COALESCE(excluded.owner_user_id, records.owner_user_id),
                        sync_status = 'FRESH',
                        last_synced_at = excluded.last_synced_at,
                        updated_at = excluded.updated_at
                     RETURNING *",
                )
                .bind(&r.vault_uid)
                .bind(&r.title)
                .bind(&r.record_type)
                .bind(r.folder_id)
                .bind(r.revision)
                .bind(&r.vault_owner)
                .bind(r.owner_user_id)
                .bind(r.sensitivity)
                .bind(r.discovery_source)
                .bind(at)
                .fetch_one(&self.pool)
                .await?)
            }

            async fn record_by_id(&self, id: i64) -> StoreResult<Option<Record>> {
                Ok(sqlx::query_as("SELECT * FROM records WHERE id = $1").bind(id).fetch_optional(&self.pool).await?)
            }

            async fn record_by_uid(&self, uid: &str) -> StoreResult<Option<Record>> {
                Ok(sqlx::query_as("SELECT * FROM records WHERE vault_uid = $1")
                    .bind(uid)
                    .fetch_optional(&self.pool)
                    .await?)
            }

            async fn list_records(&self) -> StoreResult<Vec<Record>> {
                Ok(sqlx::query_as("SELECT * FROM records ORDER BY title, id").fetch_all(&self.pool).await?)
            }

            async fn records_by_title_prefix(&self, prefix: &str, limit: i64) -> StoreResult<Vec<Record>> {
                // LIKE wildcards in user text are matched literally: compare on substr instead.
                Ok(sqlx::query_as(
                    "SELECT * FROM records
                     WHERE substr(lower(title), 1, length($1)) = lower($1)
                     ORDER BY CASE WHEN lower(title) = lower($1) THEN 0 ELSE 1 END, title, id
                     LIMIT $2",
                )
                .bind(prefix)
                .bind(limit)
                .fetch_all(&self.pool)
                .await?)
            }

            async fn set_record_sensitivity(
                &self,
                id: i64,
                from: Sensitivity,
                to: Sensitivity,
                audit: &NewAuditEvent,
            ) -> StoreResult<Record> {
                let mut tx = self.begin_write().await?;
                let record: Option<Record> = sqlx::query_as(
                    "UPDATE records SET sensitivity = $3, updated_at = $4 WHERE id = $1 AND sensitivity = $2 RETURNING *",
                )
                .bind(id)
                .bind(from)
                .bind(to)
                .bind(audit.at)
                .fetch_optional(&mut *tx)
                .await?;
                let Some(record) = record else {
                    return Err(StoreError::Conflict("the record's sensitivity changed meanwhile".into()));
                };
                Self::append_audit_tx(&mut tx, audit).await?;
                tx.commit().await?;
                Ok(record)
            }

            async fn set_record_sync_status(&self, id: i64, status: SyncStatus, at: Timestamp) -> StoreResult<Record> {
                sqlx::query_as("UPDATE records SET sync_status = $2, updated_at = $3 WHERE id = $1 RETURNING *")
                    .bind(id)
                    .bind(status)
                    .bind(at)
                    .fetch_optional(&self.pool)
                    .await?
                    .ok_or(StoreError::NotFound("record"))
            }
        }

        #[async_trait]
        impl GovernanceStore for $store {
            async fn put_policy(&self, p: &NewPolicy, audit: &NewAuditEvent) -> StoreResult<GovernancePolicy> {
                let hash = $crate::canonical::hash_canonical(&p.body);
                let mut tx = self.begin_write().await?;
                let current: Option<GovernancePolicy> =
                    sqlx::query_as("SELECT * FROM governance_policies WHERE name = $1 AND active")
                        .bind(&p.name)
                        .fetch_optional(&mut *tx)
                        .await?;
                if let Some(current) = current {
                    if current.content_hash == hash && current.kind == p.kind {
                        return Ok(current);
                    }
                }
                sqlx::query("UPDATE governance_policies SET active = FALSE WHERE name = $1 AND active")
                    .bind(&p.name)
                    .execute(&mut *tx)
                    .await?;
                let policy: GovernancePolicy = sqlx::query_as(
                    "INSERT INTO governance_policies (kind, name, body, content_hash, active, created_at, created_by)
                     VALUES ($1, $2, $3, $4, TRUE, $5, $6)
                     ON CONFLICT (name, content_hash) DO UPDATE SET active = TRUE
                     RETURNING *",
                )
                .bind(p.kind)
                .bind(&p.name)
                .bind(Json(&p.body))
                .bind(&hash)
                .bind(audit.at)
                .bind(&p.created_by)
                .fetch_one(&mut *tx)
                .await?;
                Self::append_audit_tx(&mut tx, audit).await?;
                tx.commit().await?;
                Ok(policy)
            }

            async fn active_policies(&self) -> StoreResult<Vec<GovernancePolicy>> {
                Ok(sqlx::query_as("SELECT * FROM governance_policies WHERE active ORDER BY name")
                    .fetch_all(&self.pool)
                    .await?)
            }

            async fn upsert_governed_resource(
                &self,
                record_id: i64,
                visibility: &str,
                access: &str,
                lease: &str,
                at: Timestamp,
            ) -> StoreResult<GovernedResource> {
                Ok(sqlx::query_as(
                    "INSERT INTO governed_resources (record_id, visibility_policy, access_policy, lease_policy, created_at)
                     VALUES ($1, $2, $3, $4, $5)
                     ON CONFLICT (record_id) DO UPDATE SET
                        visibility_policy = excluded.visibility_policy,
                        access_policy = excluded.access_policy,
                        lease_policy = excluded.lease_policy
                     RETURNING *",
                )
                .bind(record_id)
                .bind(visibility)
                .bind(access)
                .bind(lease)
                .bind(at)
                .fetch_one(&self.pool)
                .await?)
            }

            async fn governed_resource_for_record(&self, record_id: i64) -> StoreResult<Option<GovernedResource>> {
                Ok(sqlx::query_as("SELECT * FROM governed_resources WHERE record_id = $1")
                    .bind(record_id)
                    .fetch_optional(&self.pool)
                    .await?)
            }

            async fn governed_resource_by_id(&self, id: i64) -> StoreResult<Option<GovernedResource>> {
                Ok(sqlx::query_as("SELECT * FROM governed_resources WHERE id = $1")
                    .bind(id)
                    .fetch_optional(&self.pool)
                    .await?)
            }

            async fn add_authority(&self, a: &NewAuthority, audit: &NewAuditEvent) -> StoreResult<Authority> {
                let mut tx = self.begin_write().await?;
                let row = Self::insert_authority_tx(&mut tx, a, audit.at).await?;
                let mut audit = audit.clone();
                if let Value::Object(detail) = &mut audit.detail {
                    detail.insert("authority_id".into(), Value::from(row.id));
                }
                Self::append_audit_tx(&mut tx, &audit).await?;
                tx.commit().await?;
                Ok(row)
            }

            async fn authority_by_id(&self, id: i64) -> StoreResult<Option<Authority>> {
                Ok(sqlx::query_as("SELECT * FROM governed_resource_authorities WHERE id = $1")
                    .bind(id)
                    .fetch_optional(&self.pool)
                    .await?)
            }

            async fn revoke_authority(
                &self,
                id: i64,
                revoked_by: &str,
                reason: &str,
                audit: &NewAuditEvent,
            ) -> StoreResult<Authority> {
                let mut tx = self.begin_write().await?;
                let row: Option<Authority> = sqlx::query_as(
                    "UPDATE governed_resource_authorities
                     SET revoked_at = $2, revoked_by = $3, revoked_reason = $4
                     WHERE id = $1 AND revoked_at IS NULL RETURNING *",
                )
                .bind(id)
                .bind(audit.at)
                .bind(revoked_by)
                .bind(reason)
                .fetch_optional(&mut *tx)
                .await?;
                let Some(row) = row else {
                    Self::authority_row(&mut tx, id).await?;
                    return Err(StoreError::Conflict(format!("authority {id} is already revoked")));
                };
                Self::append_audit_tx(&mut tx, audit).await?;
                tx.commit().await?;
                Ok(row)
            }

            async fn supersede_authority(
                &self,
                old_id: i64,
                successor: &NewAuthority,
                reason: &str,
                audit: &NewAuditEvent,
            ) -> StoreResult<Authority> {
                let mut tx = self.begin_write().await?;
                let old = Self::authority_row(&mut tx, old_id).await?;
                if old.revoked_at.is_some() {
                    return Err(StoreError::Conflict(format!("authority {old_id} is already revoked")));
                }
                if old.resource_id != successor.resource_id {
                    return Err(StoreError::Invalid("a successor must govern the same resource".into()));
                }
                let new = Self::insert_authority_tx(&mut tx, successor, audit.at).await?;
                let updated = sqlx::query(
                    "UPDATE governed_resource_authorities
                     SET revoked_at = $2, revoked_by = $3, revoked_reason = $4, superseded_by = $5
                     WHERE id = $1 AND revoked_at IS NULL",
                )
                .bind(old_id)
                .bind(audit.at)
                .bind(&successor.created_by)
                .bind(reason)
                .bind(new.id)
                .execute(&mut *tx)
                .await?;
                if updated.rows_affected() != 1 {
                    return Err(StoreError::Conflict(format!("authority {old_id} is already revoked")));
                }
                Self::append_audit_tx(&mut tx, audit).await?;
                tx.commit().await?;
                Ok(new)
            }

            async fn active_authorities(&self, resource_id: i64, at: Timestamp) -> StoreResult<Vec<Authority>> {
                Ok(sqlx::query_as(
                    "SELECT * FROM governed_resource_authorities
                     WHERE resource_id = $1 AND revoked_at IS NULL
                       AND valid_from <= $2 AND (valid_to IS NULL OR valid_to > $2)
                     ORDER BY stage, id",
                )
                .bind(resource_id)
                .bind(at)
                .fetch_all(&self.pool)
                .await?)
            }

            async fn authority_history(&self, resource_id: i64) -> StoreResult<Vec<Authority>> {
                Ok(sqlx::query_as("SELECT * FROM governed_resource_authorities WHERE resource_id = $1 ORDER BY id")
                    .bind(resource_id)
                    .fetch_all(&self.pool)
                    .await?)
            }
        }

        #[async_trait]
        impl PermissionStore for $store {
            async fn cached_permissions(&self, user_id: i64, now: Timestamp) -> StoreResult<Option<Value>> {
                let row: Option<Json<Value>> = sqlx::query_scalar(
                    "SELECT permissions FROM user_permission_cache WHERE user_id = $1 AND expires_at > $2",
                )
                .bind(user_id)
                .bind(now)
                .fetch_optional(&self.pool)
                .await?;
                Ok(row.map(|Json(v)| v))
            }

            async fn put_cached_permissions(
                &self,
                user_id: i64,
                permissions: &Value,
                resolved_at: Timestamp,
                expires_at: Timestamp,
            ) -> StoreResult<()> {
                sqlx::query(
                    "INSERT INTO user_permission_cache (user_id, permissions, resolved_at, expires_at)
                     VALUES ($1, $2, $3, $4)
                     ON CONFLICT (user_id) DO UPDATE SET
                        permissions = excluded.permissions,
                        resolved_at = excluded.resolved_at,
                        expires_at = excluded.expires_at",
                )
                .bind(user_id)
                .bind(Json(permissions))
                .bind(resolved_at)
                .bind(expires_at)
                .execute(&self.pool)
                .await?;
                Ok(())
            }

            async fn invalidate_permission_cache(&self) -> StoreResult<u64> {
                Ok(sqlx::query("DELETE FROM user_permission_cache").execute(&self.pool).await?.rows_affected())
            }
        }

        #[async_trait]
        impl RequestStore for $store {
            async fn create_request(
                &self,
                r: &NewRequest,
                traces: &[NewTrace],
                audit: &NewAuditEvent,
                at: Timestamp,
            ) -> StoreResult<Request> {
                if !matches!(r.status, RequestStatus::Pending | RequestStatus::RequiresTriage | RequestStatus::Denied) {
                    return Err(StoreError::Invalid(format!("a request cannot start as {}", r.status)));
                }
                let mut tx = self.begin_write().await?;
                let request: Request = sqlx::query_as(
                    "INSERT INTO requests (requester_id, record_id, status, justification, ticket_id,
                                           requested_duration_secs, break_glass, required_approvals, max_issuances,
                                           policy_version, decided_at, ended_at, created_at, updated_at,
                                           review_required, otp_required, decision_reason)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $11, $12, $12, $13, $14, $15) RETURNING *",
                )
                .bind(r.requester_id)
                .bind(r.record_id)
                .bind(r.status)
                .bind(&r.justification)
                .bind(&r.ticket_id)
                .bind(r.requested_duration_secs)
                .bind(r.break_glass)
                .bind(r.required_approvals)
                .bind(r.max_issuances)
                .bind(&r.policy_version)
                .bind((r.status == RequestStatus::Denied).then_some(at))
                .bind(at)
                .bind(r.review_required)
                .bind(r.otp_required)
                .bind(&r.decision_reason)
                .fetch_one(&mut *tx)
                .await?;
                for t in traces {
                    Self::insert_trace_tx(&mut tx, t, Some(request.id)).await?;
                }
                let mut audit = audit.clone();
                audit.request_id = Some(request.id);
                audit.record_id = audit.record_id.or(Some(request.record_id));
                Self::append_audit_tx(&mut tx, &audit).await?;
                tx.commit().await?;
                Ok(request)
            }

            async fn request_by_id(&self, id: i64) -> StoreResult<Option<Request>> {
                Ok(sqlx::query_as("SELECT * FROM requests WHERE id = $1").bind(id).fetch_optional(&self.pool).await?)
            }

            async fn requests_for_requester(&self, requester_id: i64, limit: i64) -> StoreResult<Vec<Request>> {
                Ok(sqlx::query_as("SELECT * FROM requests WHERE requester_id = $1 ORDER BY id DESC LIMIT $2")
                    .bind(requester_id)
                    .bind(limit)
                    .fetch_all(&self.pool)
                    .await?)
            }

            async fn requests_in_status(&self, statuses: &[RequestStatus], limit: i64) -> StoreResult<Vec<Request>> {
                // Nine states at most: filter in SQL by a fixed-width list so one statement serves both databases.
                let mut wanted: [Option<RequestStatus>; 9] = [None; 9];
                for (slot, s) in wanted.iter_mut().zip(statuses) {
                    *slot = Some(*s);
                }
                let mut q = sqlx::query_as(
                    "SELECT * FROM requests WHERE status IN ($1, $2, $3, $4, $5, $6, $7, $8, $9) ORDER BY id LIMIT $10",
                );
                for s in wanted {
                    q = q.bind(s);
                }
                Ok(q.bind(limit).fetch_all(&self.pool).await?)
            }

            async fn transition_request(
                &self,
                c: &StatusChange,
                traces: &[NewTrace],
                audit: &NewAuditEvent,
            ) -> StoreResult<Request> {
                let mut tx = self.begin_write().await?;
                let request = Self::transition_tx(&mut tx, c).await?;
                Self::finish_tx(&mut tx, &request, traces, audit).await?;
                tx.commit().await?;
                Ok(request)
            }
        }

        #[async_trait]
        impl LeaseStore for $store {
            async fn approvals_for_request(&self, request_id: i64) -> StoreResult<Vec<Approval>> {
                Ok(sqlx::query_as("SELECT * FROM request_approvals WHERE request_id = $1 ORDER BY id")
                    .bind(request_id)
                    .fetch_all(&self.pool)
                    .await?)
            }

            async fn record_approval(
                &self,
                a: &NewApproval,
                expected: RequestStatus,
                approvals_seen: i64,
                change: Option<&StatusChange>,
                traces: &[NewTrace],
                audit: &NewAuditEvent,
            ) -> StoreResult<(Approval, Request)> {
                let mut tx = self.begin_write().await?;
                let status: Option<RequestStatus> =
                    sqlx::query_scalar(Self::LOCK_REQUEST).bind(a.request_id).fetch_optional(&mut *tx).await?;
                match status {
                    None => return Err(StoreError::NotFound("request")),
                    Some(actual) if actual != expected => {
                        return Err(StoreError::StatusConflict { request_id: a.request_id, expected, actual });
                    }
                    Some(_) => {}
                }
                let approvals: i64 = sqlx::query_scalar(
                    "SELECT COUNT(*) FROM request_approvals WHERE request_id = $1 AND decision = 'APPROVE'",
                )
                .bind(a.request_id)
                .fetch_one(&mut *tx)
                .await?;
                if approvals != approvals_seen {
                    return Err(StoreError::Conflict("another approval was recorded meanwhile".into()));
                }
                let approval: Approval = sqlx::query_as(
                    "INSERT INTO request_approvals (request_id, approver_id, stage, decision, comment, decided_at)
                     VALUES ($1, $2, $3, $4, $5, $6) RETURNING *",
                )
                .bind(a.request_id)
                .bind(a.approver_id)
                .bind(a.stage)
                .bind(a.decision)
                .bind(&a.comment)
                .bind(a.at)
                .fetch_one(&mut *tx)
                .await?;
                let request = match change {
                    Some(c) => Self::transition_tx(&mut tx, c).await?,
                    None => sqlx::query_as("SELECT * FROM requests WHERE id = $1")
                        .bind(a.request_id)
                        .fetch_one(&mut *tx)
                        .await?,
                };
                Self::finish_tx(&mut tx, &request, traces, audit).await?;
                tx.commit().await?;
                Ok((approval, request))
            }

            async fn schedule_preflight(
                &self,
                request_id: i64,
                attempts: i32,
                next_attempt_at: Option<Timestamp>,
                audit: &NewAuditEvent,
            ) -> StoreResult<Request> {
                let mut tx = self.begin_write().await?;
                let updated: Option<Request> = sqlx::query_as(
                    "UPDATE requests SET preflight_attempts = $2, next_attempt_at = $3, updated_at = $4
                     WHERE id = $1 AND status = 'APPROVED' RETURNING *",
                )
                .bind(request_id)
                .bind(attempts)
                .bind(next_attempt_at)
                .bind(audit.at)
                .fetch_optional(&mut *tx)
                .await?;
                let Some(request) = updated else {
                    return Err(Self::why_not(&mut tx, request_id, RequestStatus::Approved).await);
                };
                Self::finish_tx(&mut tx, &request, &[], audit).await?;
                tx.commit().await?;
                Ok(request)
            }

            async fn set_issuance_token(
                &self,
                request_id: i64,
                token_hash: &str,
                expires_at: Timestamp,
                now: Timestamp,
                audit: &NewAuditEvent,
            ) -> StoreResult<Request> {
                let mut tx = self.begin_write().await?;
                let updated: Option<Request> = sqlx::query_as(
                    "UPDATE requests SET issuance_token_hash = $2, issuance_token_expires_at = $3, updated_at = $4
                     WHERE id = $1 AND status IN ('APPROVED', 'ISSUED', 'RENEWAL_PENDING')
                       AND lease_expires_at > $4 AND issuance_count < max_issuances
                     RETURNING *",
                )
                .bind(request_id)
                .bind(token_hash)
                .bind(expires_at)
                .bind(now)
                .fetch_optional(&mut *tx)
                .await?;
                let Some(request) = updated else {
                    let exists: Option<i64> = sqlx::query_scalar("SELECT id FROM requests WHERE id = $1")
                        .bind(request_id)
                        .fetch_optional(&mut *tx)
                        .await?;
                    return Err(match exists {
                        None => StoreError::NotFound("request"),
                        Some(_) => StoreError::Conflict("no live lease with retrievals left".into()),
                    });
                };
                Self::finish_tx(&mut tx, &request, &[], audit).await?;
                tx.commit().await?;
                Ok(request)
            }

            async fn consume_issuance_token(
                &self,
                request_id: i64,
                token_hash: &str,
                now: Timestamp,
                dead_before: Timestamp,
            ) -> StoreResult<Option<Request>> {
                let mut tx = self.begin_write().await?;
                // Reservations taken before `dead_before` belong to retrievals that died (no live
                // one takes that long): they are reclaimed here, in the same statement.
                let updated: Option<Request> = sqlx::query_as(
                    "UPDATE requests SET issuance_token_hash = NULL, issuance_token_expires_at = NULL,
                        issuances_in_flight = CASE WHEN issuances_in_flight_since < $4 THEN 1
                                                   ELSE issuances_in_flight + 1 END,
                        issuances_in_flight_since = CASE
                            WHEN issuances_in_flight = 0 OR issuances_in_flight_since IS NULL
                                 OR issuances_in_flight_since < $4 THEN $3
                            ELSE issuances_in_flight_since END,
                        updated_at = $3
                     WHERE id = $1 AND issuance_token_hash = $2 AND issuance_token_expires_at > $3
                       AND status IN ('APPROVED', 'ISSUED', 'RENEWAL_PENDING')
                       AND lease_expires_at > $3
                       AND issuance_count + CASE WHEN issuances_in_flight_since < $4 THEN 0
                                                 ELSE issuances_in_flight END < max_issuances
                     RETURNING *",
                )
                .bind(request_id)
                .bind(token_hash)
                .bind(now)
                .bind(dead_before)
                .fetch_optional(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok(updated)
            }

            async fn restore_issuance_token(
                &self,
                request_id: i64,
                token_hash: &str,
                expires_at: Timestamp,
                audit: &NewAuditEvent,
            ) -> StoreResult<()> {
                let mut tx = self.begin_write().await?;
                sqlx::query(
                    "UPDATE requests SET issuance_token_hash = $2, issuance_token_expires_at = $3
                     WHERE id = $1 AND issuance_token_hash IS NULL
                       AND status IN ('APPROVED', 'ISSUED', 'RENEWAL_PENDING')",
                )
                .bind(request_id)
                .bind(token_hash)
                .bind(expires_at)
                .execute(&mut *tx)
                .await?;
                sqlx::query(
                    "UPDATE requests SET issuances_in_flight = issuances_in_flight - 1,
                        issuances_in_flight_since = CASE WHEN issuances_in_flight <= 1 THEN NULL
                                                         ELSE issuances_in_flight_since END
                     WHERE id = $1 AND issuances_in_flight > 0",
                )
                .bind(request_id)
                .execute(&mut *tx)
                .await?;
                let request: Request = sqlx::query_as("SELECT * FROM requests WHERE id = $1")
                    .bind(request_id)
                    .fetch_optional(&mut *tx)
                    .await?
                    .ok_or(StoreError::NotFound("request"))?;
                Self::finish_tx(&mut tx, &request, &[], audit).await?;
                tx.commit().await?;
                Ok(())
            }

            async fn record_issuance(
                &self,
                i: &NewIssuance,
                now: Timestamp,
                traces: &[NewTrace],
                audit: &NewAuditEvent,
            ) -> StoreResult<(Request, IssuanceEvent)> {
                let mut tx = self.begin_write().await?;
                let updated: Option<Request> = sqlx::query_as(
                    "UPDATE requests SET
                        issuance_count = issuance_count + 1,
                        issuances_in_flight = issuances_in_flight - 1,
                        issuances_in_flight_since = CASE WHEN issuances_in_flight <= 1 THEN NULL
                                                         ELSE issuances_in_flight_since END,
                        status = CASE WHEN status = 'APPROVED' THEN 'ISSUED' ELSE status END,
                        updated_at = $2
                     WHERE id = $1 AND status IN ('APPROVED', 'ISSUED', 'RENEWAL_PENDING')
                       AND issuances_in_flight > 0 AND issuance_count < max_issuances AND lease_expires_at > $2
                     RETURNING *",
                )
                .bind(i.request_id)
                .bind(now)
                .fetch_optional(&mut *tx)
                .await?;
                let Some(request) = updated else {
                    return Err(StoreError::Conflict("no live lease with retrievals left".into()));
                };
                let event: IssuanceEvent = sqlx::query_as(
                    "INSERT INTO issuance_events
                        (request_id, share_link_hash, vault_share_id, client_ip, user_agent, issued_at, expires_at)
                     VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING *",
                )
                .bind(i.request_id)
                .bind(&i.share_link_hash)
                .bind(&i.vault_share_id)
                .bind(&i.client_ip)
                .bind(&i.user_agent)
                .bind(i.issued_at)
                .bind(i.expires_at)
                .fetch_one(&mut *tx)
                .await?;
                Self::finish_tx(&mut tx, &request, traces, audit).await?;
                tx.commit().await?;
                Ok((request, event))
            }

            async fn release_issuance_reservation(&self, request_id: i64) -> StoreResult<()> {
                sqlx::query(
                    "UPDATE requests SET issuances_in_flight = issuances_in_flight - 1,
                        issuances_in_flight_since = CASE WHEN issuances_in_flight <= 1 THEN NULL
                                                         ELSE issuances_in_flight_since END
                     WHERE id = $1 AND issuances_in_flight > 0",
                )
                .bind(request_id)
                .execute(&self.pool)
                .await?;
                Ok(())
            }

            async fn issuances_for_request(&self, request_id: i64) -> StoreResult<Vec<IssuanceEvent>> {
                Ok(sqlx::query_as("SELECT * FROM issuance_events WHERE request_id = $1 ORDER BY id")
                    .bind(request_id)
                    .fetch_all(&self.pool)
                    .await?)
            }

            async fn outstanding_issuances(&self, request_id: i64) -> StoreResult<Vec<IssuanceEvent>> {
                Ok(sqlx::query_as(
                    "SELECT * FROM issuance_events WHERE request_id = $1 AND revoked_at IS NULL ORDER BY id",
                )
                .bind(request_id)
                .fetch_all(&self.pool)
                .await?)
            }

            async fn mark_issuance_revoked(&self, issuance_id: i64, at: Timestamp, audit: &NewAuditEvent) -> StoreResult<bool> {
                let mut tx = self.begin_write().await?;
                let revoked = sqlx::query("UPDATE issuance_events SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL")
                    .bind(issuance_id)
                    .bind(at)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected()
                    == 1;
                if revoked {
                    Self::append_audit_tx(&mut tx, audit).await?;
                }
                tx.commit().await?;
                Ok(revoked)
            }

            async fn outstanding_issuances_for(&self, request_ids: &[i64]) -> StoreResult<Vec<IssuanceEvent>> {
                let mut out = Vec::new();
                for chunk in request_ids.chunks($crate::store::sql::BATCH_ROWS) {
                    let sql = format!(
                        "SELECT * FROM issuance_events WHERE request_id IN ({}) AND revoked_at IS NULL",
                        $crate::store::sql::list_placeholders(chunk.len(), 1)
                    );
                    // Only numbered placeholders are formatted in: no outside text.
                    let mut q = sqlx::query_as::<_, IssuanceEvent>(sqlx::AssertSqlSafe(sql));
                    for id in chunk {
                        q = q.bind(*id);
                    }
                    out.extend(q.fetch_all(&self.pool).await?);
                }
                out.sort_by_key(|e| (e.request_id, e.id));
                Ok(out)
            }

            async fn mark_issuances_revoked_batch(
                &self,
                revocations: &[ShareRevocation],
                at: Timestamp,
            ) -> StoreResult<Vec<i64>> {
                if revocations.is_empty() {
                    return Ok(Vec::new());
                }
                let mut tx = self.begin_write().await?;
                let mut marked: std::collections::HashSet<i64> = std::collections::HashSet::new();
                for chunk in revocations.chunks($crate::store::sql::BATCH_ROWS) {
                    let sql = format!(
                        "UPDATE issuance_events SET revoked_at = $1 WHERE id IN ({}) AND revoked_at IS NULL RETURNING id",
                        $crate::store::sql::list_placeholders(chunk.len(), 2)
                    );
                    // Only numbered placeholders are formatted in: no outside text.
                    let mut q = sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(sql)).bind(at);
                    for r in chunk {
                        q = q.bind(r.issuance_id);
                    }
                    marked.extend(q.fetch_all(&mut *tx).await?);
                }
                // One event per share marked here, in the order given; a share listed twice counts once.
                let mut ids = Vec::with_capacity(marked.len());
                let mut events = Vec::with_capacity(marked.len());
                for r in revocations {
                    if marked.remove(&r.issuance_id) {
                        ids.push(r.issuance_id);
                        events.push(r.audit.clone());
                    }
                }
                Self::append_audit_batch_tx(&mut tx, &events).await?;
                tx.commit().await?;
                Ok(ids)
            }

            async fn record_revoke_failure(&self, issuance_id: i64, error: &str) -> StoreResult<()> {
                sqlx::query(
                    "UPDATE issuance_events SET revoke_attempts = revoke_attempts + 1, last_revoke_error = $2
                     WHERE id = $1 AND revoked_at IS NULL",
                )
                .bind(issuance_id)
                .bind(error)
                .execute(&self.pool)
                .await?;
                Ok(())
            }

            async fn claim_unremovable_alerts(&self, min_attempts: i32, at: Timestamp) -> StoreResult<Vec<UnremovableShare>> {
                // One conditional UPDATE: of two schedulers, only one marks (and so alerts) a share.
                Ok(sqlx::query_as(
                    "UPDATE issuance_events SET revoke_alerted_at = $2
                     WHERE revoked_at IS NULL AND revoke_alerted_at IS NULL AND revoke_attempts >= $1
                     RETURNING id AS issuance_id, request_id, revoke_attempts, last_revoke_error",
                )
                .bind(min_attempts)
                .bind(at)
                .fetch_all(&self.pool)
                .await?)
            }

            async fn unremovable_shares(&self, min_attempts: i32, limit: i64) -> StoreResult<Vec<UnremovableShare>> {
                Ok(sqlx::query_as(
                    "SELECT id AS issuance_id, request_id, revoke_attempts, last_revoke_error FROM issuance_events
                     WHERE revoked_at IS NULL AND revoke_attempts >= $1 ORDER BY id LIMIT $2",
                )
                .bind(min_attempts)
                .bind(limit)
                .fetch_all(&self.pool)
                .await?)
            }

            async fn claim_due(
                &self,
                kind: DueWork,
                now: Timestamp,
                cutoff: Timestamp,
                holder: &str,
                claim_until: Timestamp,
                limit: i64,
            ) -> StoreResult<Vec<Request>> {
                // $3 = now, $4 = cutoff in every predicate. Each part is (predicate, order); a
                // kind's parts are claimed in turn until `limit` rows are claimed.
                let parts: &[(&str, &str)] = match kind {
                    // Live leases past their end, oldest end first: walks the partial index on
                    // `lease_expires_at`, so a claim costs its batch, not the rows already ended.
                    // Then ended requests with a share not yet removed, found from the partial
                    // index of outstanding shares (not by probing every ended request).
                    DueWork::LeaseEnd => &[
                        (
                            "status IN ('APPROVED', 'ISSUED', 'RENEWAL_PENDING') AND lease_expires_at <= $4",
                            "lease_expires_at",
                        ),
                        (
                            "status IN ('EXPIRED', 'RELEASED', 'UNFULFILLABLE') AND id IN (
                                 SELECT e.request_id FROM issuance_events e WHERE e.revoked_at IS NULL)",
                            "id",
                        ),
                    ],
                    DueWork::ExpiryWarning => &[(
                        "status IN ('APPROVED', 'ISSUED', 'RENEWAL_PENDING') AND expiry_warned_at IS NULL
                         AND lease_expires_at > $3 AND lease_expires_at <= $4",
                        "id",
                    )],
                    DueWork::Preflight => &[(
                        "status = 'APPROVED' AND next_attempt_at IS NOT NULL AND next_attempt_at <= $4",
                        "id",
                    )],
                    DueWork::Undecided => &[("status IN ('PENDING', 'REQUIRES_TRIAGE') AND created_at <= $4", "id")],
                };
                let mut tx = self.begin_write().await?;
                let mut claimed: Vec<Request> = Vec::new();
                for (due, order) in parts {
                    let left = limit - claimed.len() as i64;
                    if left <= 0 {
                        break;
                    }
                    let sql = format!(
                        "UPDATE requests SET claimed_by = $1, claim_until = $2
                         WHERE id IN (SELECT id FROM requests
                                      WHERE ({due}) AND (claim_until IS NULL OR claim_until <= $3)
                                      ORDER BY {order} LIMIT $5{})
                         RETURNING *",
                        Self::SKIP_LOCKED
                    );
                    // Built only from the fixed predicates above and a dialect constant: no outside text.
                    let rows: Vec<Request> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
                        .bind(holder)
                        .bind(claim_until)
                        .bind(now)
                        .bind(cutoff)
                        .bind(left)
                        .fetch_all(&mut *tx)
                        .await?;
                    claimed.extend(rows);
                }
                tx.commit().await?;
                claimed.sort_by_key(|r| r.id);
                Ok(claimed)
            }

            async fn release_claim(&self, request_id: i64, holder: &str) -> StoreResult<()> {
                sqlx::query("UPDATE requests SET claimed_by = NULL, claim_until = NULL WHERE id = $1 AND claimed_by = $2")
                    .bind(request_id)
                    .bind(holder)
                    .execute(&self.pool)
                    .await?;
                Ok(())
            }

            async fn release_claims(&self, request_ids: &[i64], holder: &str) -> StoreResult<()> {
                for chunk in request_ids.chunks($crate::store::sql::BATCH_ROWS) {
                    let sql = format!(
                        "UPDATE requests SET claimed_by = NULL, claim_until = NULL WHERE claimed_by = $1 AND id IN ({})",
                        $crate::store::sql::list_placeholders(chunk.len(), 2)
                    );
                    // Only numbered placeholders are formatted in: no outside text.
                    let mut q = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(holder);
                    for id in chunk {
                        q = q.bind(*id);
                    }
                    q.execute(&self.pool).await?;
                }
                Ok(())
            }

            async fn renew_claims(
                &self,
                request_ids: &[i64],
                holder: &str,
                claim_until: Timestamp,
            ) -> StoreResult<Vec<i64>> {
                let mut held = Vec::with_capacity(request_ids.len());
                for chunk in request_ids.chunks($crate::store::sql::BATCH_ROWS) {
                    let sql = format!(
                        "UPDATE requests SET claim_until = $2 WHERE claimed_by = $1 AND id IN ({}) RETURNING id",
                        $crate::store::sql::list_placeholders(chunk.len(), 3)
                    );
                    // Only numbered placeholders are formatted in: no outside text.
                    let mut q = sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(sql))
                        .bind(holder)
                        .bind(claim_until);
                    for id in chunk {
                        q = q.bind(*id);
                    }
                    held.extend(q.fetch_all(&self.pool).await?);
                }
                Ok(held)
            }

            async fn expire_leases(
                &self,
                endings: &[LeaseEnding],
                reason: &str,
                at: Timestamp,
            ) -> StoreResult<Vec<Request>> {
                let to = RequestStatus::Expired;
                // The same table check a single transition makes, before anything is written.
                for e in endings {
                    e.from.transition(to)?;
                    if !e.from.has_live_lease() {
                        return Err(StoreError::Invalid(format!("request {} has no lease to end", e.request_id)));
                    }
                }
                if endings.is_empty() {
                    return Ok(Vec::new());
                }
                // A request listed twice is ended once, as first listed.
                let mut by_id: std::collections::HashMap<i64, &LeaseEnding> = std::collections::HashMap::new();
                for e in endings {
                    by_id.entry(e.request_id).or_insert(e);
                }
                let mut froms: Vec<RequestStatus> = Vec::new();
                for e in by_id.values() {
                    if !froms.contains(&e.from) {
                        froms.push(e.from);
                    }
                }
                // A fixed order (statuses by name, ids ascending), so concurrent batches over the
                // same rows lock them in the same order.
                froms.sort_by_key(|s| s.as_str());
                let mut tx = self.begin_write().await?;
                let mut expired: Vec<Request> = Vec::with_capacity(by_id.len());
                // One conditional update per status seen (three at most), by primary key: each row
                // moves only if it is still in the status its claimer saw and still ended.
                // The columns set are what `transition_tx` sets for a final state with a reason.
                for from in froms {
                    let mut ids: Vec<i64> =
                        by_id.values().filter(|e| e.from == from).map(|e| e.request_id).collect();
                    ids.sort_unstable();
                    for chunk in ids.chunks($crate::store::sql::BATCH_ROWS) {
                        let sql = format!(
                            "UPDATE requests SET
                                status = $3,
                                updated_at = $1,
                                decided_at = $1,
                                decision_reason = $4,
                                ended_at = $1,
                                issuance_token_hash = NULL,
                                issuance_token_expires_at = NULL,
                                renewal_duration_secs = CASE WHEN status = 'RENEWAL_PENDING' THEN NULL
                                                             ELSE renewal_duration_secs END,
                                next_attempt_at = NULL
                             WHERE id IN ({}) AND status = $2 AND lease_expires_at <= $1
                             RETURNING *",
                            $crate::store::sql::list_placeholders(chunk.len(), 5)
                        );
                        // Only numbered placeholders are formatted in: no outside text.
                        let mut q = sqlx::query_as::<_, Request>(sqlx::AssertSqlSafe(sql))
                            .bind(at)
                            .bind(from)
                            .bind(to)
                            .bind(reason);
                        for id in chunk {
                            q = q.bind(*id);
                        }
                        expired.extend(q.fetch_all(&mut *tx).await?);
                    }
                }
                expired.sort_by_key(|r| r.id);
                let mut traces = Vec::with_capacity(expired.len());
                let mut events = Vec::with_capacity(expired.len());
                for request in &expired {
                    let e = by_id[&request.id];
                    let mut trace = e.trace.clone();
                    trace.request_id = Some(request.id);
                    traces.push(trace);
                    let mut audit = e.audit.clone();
                    audit.request_id = Some(request.id);
                    audit.record_id = audit.record_id.or(Some(request.record_id));
                    events.push(audit);
                }
                Self::insert_traces_batch_tx(&mut tx, &traces).await?;
                Self::append_audit_batch_tx(&mut tx, &events).await?;
                tx.commit().await?;
                Ok(expired)
            }

            async fn mark_notified_once(&self, request_id: i64, expiry_warning: bool, at: Timestamp) -> StoreResult<bool> {
                let sql = if expiry_warning {
                    "UPDATE requests SET expiry_warned_at = $2 WHERE id = $1 AND expiry_warned_at IS NULL"
                } else {
                    "UPDATE requests SET reminded_at = $2 WHERE id = $1 AND reminded_at IS NULL"
                };
                Ok(sqlx::query(sql).bind(request_id).bind(at).execute(&self.pool).await?.rows_affected() == 1)
            }

            async fn record_job_run(&self, r: &NewJobRun) -> StoreResult<JobRun> {
                Ok(sqlx::query_as(
                    "INSERT INTO job_runs (job_name, holder, started_at, finished_at, ok, counts, error)
                     VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING *",
                )
                .bind(&r.job_name)
                .bind(&r.holder)
                .bind(r.started_at)
                .bind(r.finished_at)
                .bind(r.ok)
                .bind(Json(&r.counts))
                .bind(&r.error)
                .fetch_one(&self.pool)
                .await?)
            }

            async fn last_job_runs(&self) -> StoreResult<Vec<JobRun>> {
                Ok(sqlx::query_as(
                    "SELECT * FROM job_runs r
                     WHERE id = (SELECT MAX(id) FROM job_runs x WHERE x.job_name = r.job_name)
                     ORDER BY job_name",
                )
                .fetch_all(&self.pool)
                .await?)
            }

            async fn forget_expired_challenges(&self, before: Timestamp) -> StoreResult<u64> {
                let mut forgotten = 0;
                // Failures older than `before` (a day) are far outside the cap's hour.
                for statement in [
                    "DELETE FROM otp_challenges WHERE expires_at < $1",
                    "DELETE FROM factor_proofs WHERE expires_at < $1",
                    "DELETE FROM otp_failures WHERE at < $1",
                ] {
                    forgotten += sqlx::query(statement)
                        .bind(before)
                        .execute(&self.pool)
                        .await?
                        .rows_affected();
                }
                Ok(forgotten)
            }
        }

        #[async_trait]
        impl AuditStore for $store {
            async fn append_audit(&self, event: &NewAuditEvent) -> StoreResult<AuditEvent> {
                let mut tx = self.begin_write().await?;
                let row = Self::append_audit_tx(&mut tx, event).await?;
                tx.commit().await?;
                Ok(row)
            }

            async fn append_audit_batch(&self, events: &[NewAuditEvent]) -> StoreResult<()> {
                let mut tx = self.begin_write().await?;
                Self::append_audit_batch_tx(&mut tx, events).await?;
                tx.commit().await?;
                Ok(())
            }

            async fn audit_events_after(&self, after: i64, limit: i64) -> StoreResult<Vec<AuditEvent>> {
                Ok(sqlx::query_as("SELECT * FROM audit_events WHERE seq > $1 ORDER BY seq LIMIT $2")
                    .bind(after)
                    .bind(limit)
                    .fetch_all(&self.pool)
                    .await?)
            }

            async fn audit_events_for_request(&self, request_id: i64) -> StoreResult<Vec<AuditEvent>> {
                Ok(sqlx::query_as("SELECT * FROM audit_events WHERE request_id = $1 ORDER BY seq")
                    .bind(request_id)
                    .fetch_all(&self.pool)
                    .await?)
            }

            async fn audit_head(&self) -> StoreResult<(i64, String)> {
                Ok(sqlx::query_as("SELECT seq, hash FROM audit_chain_head WHERE id = 1")
                    .fetch_one(&self.pool)
                    .await?)
            }

            async fn insert_checkpoint(&self, c: &AuditCheckpoint) -> StoreResult<bool> {
                let done = sqlx::query(
                    "INSERT INTO audit_checkpoints (seq, head_hash, signed_at, key_id, algorithm, signature)
                     VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (seq) DO NOTHING",
                )
                .bind(c.seq)
                .bind(&c.head_hash)
                .bind(c.signed_at)
                .bind(&c.key_id)
                .bind(&c.algorithm)
                .bind(&c.signature)
                .execute(&self.pool)
                .await?;
                Ok(done.rows_affected() == 1)
            }

            async fn checkpoints_from(&self, from: i64) -> StoreResult<Vec<AuditCheckpoint>> {
                Ok(sqlx::query_as("SELECT * FROM audit_checkpoints WHERE seq >= $1 ORDER BY seq")
                    .bind(from)
                    .fetch_all(&self.pool)
                    .await?)
            }

            async fn last_checkpoint(&self) -> StoreResult<Option<AuditCheckpoint>> {
                Ok(sqlx::query_as("SELECT * FROM audit_checkpoints ORDER BY seq DESC LIMIT 1")
                    .fetch_optional(&self.pool)
                    .await?)
            }

            async fn register_public_key(&self, k: &AuditPublicKey) -> StoreResult<()> {
                sqlx::query(
                    "INSERT INTO audit_public_keys (key_id, algorithm, public_key, created_at)
                     VALUES ($1, $2, $3, $4) ON CONFLICT (key_id) DO NOTHING",
                )
                .bind(&k.key_id)
                .bind(&k.algorithm)
                .bind(&k.public_key)
                .bind(k.created_at)
                .execute(&self.pool)
                .await?;
                Ok(())
            }

            async fn public_keys(&self) -> StoreResult<Vec<AuditPublicKey>> {
                Ok(sqlx::query_as("SELECT * FROM audit_public_keys ORDER BY created_at, key_id")
                    .fetch_all(&self.pool)
                    .await?)
            }

            async fn record_probe(&self, p: &NewProbeEvent) -> StoreResult<ProbeEvent> {
                Ok(sqlx::query_as(
                    "INSERT INTO governance_probe_events
                        (command_id, invoked_by, invoked_at, exit_code, fresh, degraded, duration_ms, detail)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING *",
                )
                .bind(&p.command_id)
                .bind(&p.invoked_by)
                .bind(p.invoked_at)
                .bind(p.exit_code)
                .bind(p.fresh)
                .bind(p.degraded)
                .bind(p.duration_ms)
                .bind(Json(&p.detail))
                .fetch_one(&self.pool)
                .await?)
            }

            async fn recent_probes(&self, limit: i64) -> StoreResult<Vec<ProbeEvent>> {
                Ok(sqlx::query_as("SELECT * FROM governance_probe_events ORDER BY id DESC LIMIT $1")
                    .bind(limit)
                    .fetch_all(&self.pool)
                    .await?)
            }

            async fn insert_trace(&self, trace: &NewTrace) -> StoreResult<DecisionTrace> {
                let mut tx = self.begin_write().await?;
                let row = Self::insert_trace_tx(&mut tx, trace, None).await?;
                tx.commit().await?;
                Ok(row)
            }

            async fn traces_for_request(&self, request_id: i64) -> StoreResult<Vec<DecisionTrace>> {
                Ok(sqlx::query_as("SELECT * FROM governance_decision_traces WHERE request_id = $1 ORDER BY id")
                    .bind(request_id)
                    .fetch_all(&self.pool)
                    .await?)
            }

            async fn trace_by_id(&self, id: i64) -> StoreResult<Option<DecisionTrace>> {
                Ok(sqlx::query_as("SELECT * FROM governance_decision_traces WHERE id = $1")
                    .bind(id)
                    .fetch_optional(&self.pool)
                    .await?)
            }

            async fn traces_after(&self, after: i64, limit: i64) -> StoreResult<Vec<DecisionTrace>> {
                Ok(sqlx::query_as("SELECT * FROM governance_decision_traces WHERE id > $1 ORDER BY id LIMIT $2")
                    .bind(after)
                    .bind(limit)
                    .fetch_all(&self.pool)
                    .await?)
            }
        }

        #[async_trait]
        impl ConversationStore for $store {
            async fn upsert_conversation(&self, c: &ConversationRef) -> StoreResult<()> {
                sqlx::query(
                    "INSERT INTO conversation_references
                        (conversation_id, conversation_type, channel_id, service_url, tenant_id, bot_id, user_id,
                         aad_object_id, teams_user_id, team_id, reference, updated_at)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
                     ON CONFLICT (conversation_id) DO UPDATE SET
                        conversation_type = excluded.conversation_type,
                        channel_id = excluded.channel_id,
                        service_url = excluded.service_url,
                        tenant_id = excluded.tenant_id,
                        bot_id = excluded.bot_id,
                        user_id = COALESCE(excluded.user_id, conversation_references.user_id),
                        aad_object_id = COALESCE(excluded.aad_object_id, conversation_references.aad_object_id),
                        teams_user_id = COALESCE(excluded.teams_user_id, conversation_references.teams_user_id),
                        team_id = COALESCE(excluded.team_id, conversation_references.team_id),
                        reference = excluded.reference,
                        updated_at = excluded.updated_at",
                )
                .bind(&c.conversation_id)
                .bind(&c.conversation_type)
                .bind(&c.channel_id)
                .bind(&c.service_url)
                .bind(&c.tenant_id)
                .bind(&c.bot_id)
                .bind(c.user_id)
                .bind(&c.aad_object_id)
                .bind(&c.teams_user_id)
                .bind(&c.team_id)
                .bind(&c.reference)
                .bind(c.updated_at)
                .execute(&self.pool)
                .await?;
                Ok(())
            }

            async fn conversation(&self, id: &str) -> StoreResult<Option<ConversationRef>> {
                Ok(sqlx::query_as("SELECT * FROM conversation_references WHERE conversation_id = $1")
                    .bind(id)
                    .fetch_optional(&self.pool)
                    .await?)
            }

            async fn personal_conversation(&self, aad: &str) -> StoreResult<Option<ConversationRef>> {
                Ok(sqlx::query_as(
                    "SELECT * FROM conversation_references
                     WHERE aad_object_id = $1 AND conversation_type = 'personal'
                     ORDER BY updated_at DESC LIMIT 1",
                )
                .bind(aad)
                .fetch_optional(&self.pool)
                .await?)
            }

            async fn record_sent_card(&self, c: &NewSentCard) -> StoreResult<SentCard> {
                Ok(sqlx::query_as(
                    "INSERT INTO sent_cards (request_id, recipient_user_id, conversation_id, activity_id, card_kind,
                                             created_at, updated_at)
                     VALUES ($1, $2, $3, $4, $5, $6, $6)
                     ON CONFLICT (conversation_id, activity_id) DO UPDATE SET
                        card_kind = excluded.card_kind, updated_at = excluded.updated_at
                     RETURNING *",
                )
                .bind(c.request_id)
                .bind(c.recipient_user_id)
                .bind(&c.conversation_id)
                .bind(&c.activity_id)
                .bind(&c.card_kind)
                .bind(c.at)
                .fetch_one(&self.pool)
                .await?)
            }

            async fn sent_cards_for_request(&self, request_id: i64) -> StoreResult<Vec<SentCard>> {
                Ok(sqlx::query_as("SELECT * FROM sent_cards WHERE request_id = $1 ORDER BY id")
                    .bind(request_id)
                    .fetch_all(&self.pool)
                    .await?)
            }

            async fn claim_activity(
                &self,
                conversation_id: &str,
                activity_id: &str,
                token: &str,
                now: Timestamp,
                until: Timestamp,
            ) -> StoreResult<ActivityClaim> {
                // New, or taken over from a turn whose claim lapsed: one statement, so two
                // deliveries racing for it cannot both win.
                let claimed = sqlx::query(
                    "INSERT INTO processed_activities
                        (conversation_id, activity_id, processed_at, state, claimed_until, claim_token)
                     VALUES ($1, $2, $3, 'IN_PROGRESS', $4, $5)
                     ON CONFLICT (conversation_id, activity_id) DO UPDATE SET
                        processed_at = excluded.processed_at,
                        claimed_until = excluded.claimed_until,
                        claim_token = excluded.claim_token
                     WHERE processed_activities.state = 'IN_PROGRESS'
                       AND processed_activities.claimed_until <= excluded.processed_at",
                )
                .bind(conversation_id)
                .bind(activity_id)
                .bind(now)
                .bind(until)
                .bind(token)
                .execute(&self.pool)
                .await?
                .rows_affected()
                    == 1;
                if claimed {
                    return Ok(ActivityClaim::Claimed);
                }
                let state: Option<String> = sqlx::query_scalar(
                    "SELECT state FROM processed_activities WHERE conversation_id = $1 AND activity_id = $2",
                )
                .bind(conversation_id)
                .bind(activity_id)
                .fetch_optional(&self.pool)
                .await?;
                // Gone between the two statements: the holder released it; ask for a retry.
                Ok(match state.as_deref() {
                    Some("DONE") => ActivityClaim::Done,
                    _ => ActivityClaim::InProgress,
                })
            }

            async fn renew_activity_claim(
                &self,
                conversation_id: &str,
                activity_id: &str,
                token: &str,
                until: Timestamp,
            ) -> StoreResult<bool> {
                Ok(sqlx::query(
                    "UPDATE processed_activities SET claimed_until = $4
                     WHERE conversation_id = $1 AND activity_id = $2 AND claim_token = $3
                       AND state = 'IN_PROGRESS'",
                )
                .bind(conversation_id)
                .bind(activity_id)
                .bind(token)
                .bind(until)
                .execute(&self.pool)
                .await?
                .rows_affected()
                    == 1)
            }

            async fn finish_activity(
                &self,
                conversation_id: &str,
                activity_id: &str,
                token: &str,
                at: Timestamp,
            ) -> StoreResult<()> {
                sqlx::query(
                    "UPDATE processed_activities
                     SET state = 'DONE', processed_at = $4, claimed_until = NULL, claim_token = NULL
                     WHERE conversation_id = $1 AND activity_id = $2 AND claim_token = $3",
                )
                .bind(conversation_id)
                .bind(activity_id)
                .bind(token)
                .bind(at)
                .execute(&self.pool)
                .await?;
                Ok(())
            }

            async fn release_activity(
                &self,
                conversation_id: &str,
                activity_id: &str,
                token: &str,
            ) -> StoreResult<()> {
                sqlx::query(
                    "DELETE FROM processed_activities
                     WHERE conversation_id = $1 AND activity_id = $2 AND claim_token = $3
                       AND state = 'IN_PROGRESS'",
                )
                .bind(conversation_id)
                .bind(activity_id)
                .bind(token)
                .execute(&self.pool)
                .await?;
                Ok(())
            }

            async fn forget_processed_before(&self, before: Timestamp) -> StoreResult<u64> {
                Ok(sqlx::query("DELETE FROM processed_activities WHERE processed_at < $1")
                    .bind(before)
                    .execute(&self.pool)
                    .await?
                    .rows_affected())
            }
        }

        #[async_trait]
        impl JobStore for $store {
            async fn try_claim(
                &self,
                job: &str,
                key: &str,
                holder: &str,
                now: Timestamp,
                lease_until: Timestamp,
            ) -> StoreResult<bool> {
                let claimed: Option<String> = sqlx::query_scalar(
                    "INSERT INTO job_claims (job_name, claim_key, holder, claimed_at, lease_until)
                     VALUES ($1, $2, $3, $4, $5)
                     ON CONFLICT (job_name, claim_key) DO UPDATE SET
                        holder = excluded.holder, claimed_at = excluded.claimed_at, lease_until = excluded.lease_until
                     WHERE job_claims.completed_at IS NULL AND job_claims.lease_until <= excluded.claimed_at
                     RETURNING holder",
                )
                .bind(job)
                .bind(key)
                .bind(holder)
                .bind(now)
                .bind(lease_until)
                .fetch_optional(&self.pool)
                .await?;
                Ok(claimed.as_deref() == Some(holder))
            }

            async fn complete_claim(&self, job: &str, key: &str, holder: &str, at: Timestamp) -> StoreResult<bool> {
                Ok(sqlx::query(
                    "UPDATE job_claims SET completed_at = $4
                     WHERE job_name = $1 AND claim_key = $2 AND holder = $3 AND completed_at IS NULL",
                )
                .bind(job)
                .bind(key)
                .bind(holder)
                .bind(at)
                .execute(&self.pool)
                .await?
                .rows_affected()
                    == 1)
            }
        }

        #[async_trait]
        impl SecondFactorStore for $store {
            async fn phone_number(&self, user_id: i64) -> StoreResult<Option<PhoneNumberRow>> {
                Ok(sqlx::query_as("SELECT * FROM user_phone_numbers WHERE user_id = $1")
                    .bind(user_id)
                    .fetch_optional(&self.pool)
                    .await?)
            }

            async fn set_phone_number(
                &self,
                user_id: i64,
                phone_sealed: &[u8],
                source: PhoneSource,
                at: Timestamp,
                audit: &NewAuditEvent,
            ) -> StoreResult<PhoneNumberRow> {
                let mut tx = self.begin_write().await?;
                let row: PhoneNumberRow = sqlx::query_as(
                    "INSERT INTO user_phone_numbers (user_id, phone_sealed, source, updated_at) VALUES ($1, $2, $3, $4)
                     ON CONFLICT (user_id) DO UPDATE SET
                        phone_sealed = excluded.phone_sealed, source = excluded.source, updated_at = excluded.updated_at
                     RETURNING *",
                )
                .bind(user_id)
                .bind(phone_sealed)
                .bind(source)
                .bind(at)
                .fetch_one(&mut *tx)
                .await?;
                Self::append_audit_tx(&mut tx, audit).await?;
                tx.commit().await?;
                Ok(row)
            }

            async fn totp_enrollment(&self, user_id: i64) -> StoreResult<Option<TotpEnrollmentRow>> {
                Ok(sqlx::query_as("SELECT * FROM totp_enrollments WHERE user_id = $1")
                    .bind(user_id)
                    .fetch_optional(&self.pool)
                    .await?)
            }

            async fn start_totp_enrollment(
                &self,
                user_id: i64,
                secret_sealed: &[u8],
                at: Timestamp,
                audit: &NewAuditEvent,
            ) -> StoreResult<TotpEnrollmentRow> {
                let mut tx = self.begin_write().await?;
                let row: Option<TotpEnrollmentRow> = sqlx::query_as(
                    "INSERT INTO totp_enrollments (user_id, secret_sealed, created_at) VALUES ($1, $2, $3)
                     ON CONFLICT (user_id) DO UPDATE SET
                        secret_sealed = excluded.secret_sealed, created_at = excluded.created_at,
                        last_accepted_step = NULL
                     WHERE totp_enrollments.confirmed_at IS NULL
                     RETURNING *",
                )
                .bind(user_id)
                .bind(secret_sealed)
                .bind(at)
                .fetch_optional(&mut *tx)
                .await?;
                let Some(row) = row else {
                    return Err(StoreError::Conflict("an authenticator is already confirmed".into()));
                };
                Self::append_audit_tx(&mut tx, audit).await?;
                tx.commit().await?;
                Ok(row)
            }

            async fn confirm_totp_enrollment(
                &self,
                user_id: i64,
                secret_sealed: &[u8],
                step: i64,
                at: Timestamp,
                audit: &NewAuditEvent,
            ) -> StoreResult<TotpEnrollmentRow> {
                let mut tx = self.begin_write().await?;
                let row: Option<TotpEnrollmentRow> = sqlx::query_as(
                    "UPDATE totp_enrollments SET confirmed_at = $3, last_accepted_step = $4
                     WHERE user_id = $1 AND secret_sealed = $2 AND confirmed_at IS NULL
                     RETURNING *",
                )
                .bind(user_id)
                .bind(secret_sealed)
                .bind(at)
                .bind(step)
                .fetch_optional(&mut *tx)
                .await?;
                let Some(row) = row else {
                    return Err(StoreError::Conflict("the enrollment was confirmed or replaced meanwhile".into()));
                };
                Self::append_audit_tx(&mut tx, audit).await?;
                tx.commit().await?;
                Ok(row)
            }

            async fn delete_totp_enrollment(&self, user_id: i64, audit: &NewAuditEvent) -> StoreResult<bool> {
                let mut tx = self.begin_write().await?;
                let deleted = sqlx::query("DELETE FROM totp_enrollments WHERE user_id = $1")
                    .bind(user_id)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                if deleted == 0 {
                    return Ok(false);
                }
                Self::append_audit_tx(&mut tx, audit).await?;
                tx.commit().await?;
                Ok(true)
            }

            async fn create_challenge(&self, c: &NewChallenge, audit: &NewAuditEvent) -> StoreResult<OtpChallenge> {
                let mut tx = self.begin_write().await?;
                let row: OtpChallenge = sqlx::query_as(
                    "INSERT INTO otp_challenges (id, request_id, user_id, channel, code_hash, attempts, max_attempts,
                                                 created_at, expires_at, last_sent_at, send_count, token_hash)
                     VALUES ($1, $2, $3, $4, $5, 0, $6, $7, $8, $9, $10, $11) RETURNING *",
                )
                .bind(c.id)
                .bind(c.request_id)
                .bind(c.user_id)
                .bind(c.channel)
                .bind(&c.code_hash)
                .bind(c.max_attempts)
                .bind(c.created_at)
                .bind(c.expires_at)
                .bind(c.last_sent_at)
                .bind(c.send_count)
                .bind(&c.token_hash)
                .fetch_one(&mut *tx)
                .await?;
                Self::append_audit_tx(&mut tx, audit).await?;
                tx.commit().await?;
                Ok(row)
            }

            async fn challenge_by_id(&self, id: uuid::Uuid) -> StoreResult<Option<OtpChallenge>> {
                Ok(sqlx::query_as("SELECT * FROM otp_challenges WHERE id = $1")
                    .bind(id)
                    .fetch_optional(&self.pool)
                    .await?)
            }

            async fn last_code_sent_to(&self, user_id: i64) -> StoreResult<Option<Timestamp>> {
                Ok(sqlx::query_scalar(
                    "SELECT MAX(sent) FROM (
                        SELECT last_sent_at AS sent FROM otp_challenges WHERE user_id = $1 AND channel = 'SMS'
                        UNION ALL SELECT created_at AS sent FROM factor_proofs WHERE user_id = $1
                     ) AS texts",
                )
                .bind(user_id)
                .fetch_one(&self.pool)
                .await?)
            }

            async fn record_resend(
                &self,
                id: uuid::Uuid,
                code_hash: &str,
                sent_at: Timestamp,
                expires_at: Timestamp,
                send_count_seen: i32,
                audit: &NewAuditEvent,
            ) -> StoreResult<Option<OtpChallenge>> {
                let mut tx = self.begin_write().await?;
                let row: Option<OtpChallenge> = sqlx::query_as(
                    "UPDATE otp_challenges
                     SET code_hash = $2, last_sent_at = $3, expires_at = $4, send_count = send_count + 1
                     WHERE id = $1 AND send_count = $5 AND channel = 'SMS'
                       AND consumed_at IS NULL AND locked_at IS NULL AND expires_at > $3
                     RETURNING *",
                )
                .bind(id)
                .bind(code_hash)
                .bind(sent_at)
                .bind(expires_at)
                .bind(send_count_seen)
                .fetch_optional(&mut *tx)
                .await?;
                if row.is_some() {
                    Self::append_audit_tx(&mut tx, audit).await?;
                }
                tx.commit().await?;
                Ok(row)
            }

            async fn record_wrong_code(
                &self,
                id: uuid::Uuid,
                attempts_seen: i32,
                at: Timestamp,
                audit: &NewAuditEvent,
            ) -> StoreResult<Option<OtpChallenge>> {
                self.record_wrong_attempt("otp_challenges", id, attempts_seen, at, audit).await
            }

            async fn wrong_codes_since(&self, user_id: i64, since: Timestamp) -> StoreResult<Vec<Timestamp>> {
                Ok(sqlx::query_scalar(
                    "SELECT at FROM otp_failures WHERE user_id = $1 AND at > $2 ORDER BY at, id",
                )
                .bind(user_id)
                .bind(since)
                .fetch_all(&self.pool)
                .await?)
            }

            async fn claim_guess_cap_alert(
                &self,
                user_id: i64,
                at: Timestamp,
                not_before: Timestamp,
            ) -> StoreResult<bool> {
                let mut tx = self.begin_write().await?;
                let claimed: Option<i64> = sqlx::query_scalar(
                    "INSERT INTO otp_cap_alerts (user_id, alerted_at) VALUES ($1, $2)
                     ON CONFLICT (user_id) DO UPDATE SET alerted_at = excluded.alerted_at
                     WHERE otp_cap_alerts.alerted_at < $3
                     RETURNING user_id",
                )
                .bind(user_id)
                .bind(at)
                .bind(not_before)
                .fetch_optional(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok(claimed.is_some())
            }

            async fn create_factor_proof(&self, p: &NewFactorProof, audit: &NewAuditEvent) -> StoreResult<FactorProof> {
                let mut tx = self.begin_write().await?;
                let row: FactorProof = sqlx::query_as(
                    "INSERT INTO factor_proofs (id, user_id, purpose, code_hash, attempts, max_attempts, created_at, expires_at)
                     VALUES ($1, $2, $3, $4, 0, $5, $6, $7) RETURNING *",
                )
                .bind(p.id)
                .bind(p.user_id)
                .bind(p.purpose)
                .bind(&p.code_hash)
                .bind(p.max_attempts)
                .bind(p.created_at)
                .bind(p.expires_at)
                .fetch_one(&mut *tx)
                .await?;
                Self::append_audit_tx(&mut tx, audit).await?;
                tx.commit().await?;
                Ok(row)
            }

            async fn factor_proof_by_id(&self, id: uuid::Uuid) -> StoreResult<Option<FactorProof>> {
                Ok(sqlx::query_as("SELECT * FROM factor_proofs WHERE id = $1")
                    .bind(id)
                    .fetch_optional(&self.pool)
                    .await?)
            }

            async fn record_factor_proof_wrong_code(
                &self,
                id: uuid::Uuid,
                attempts_seen: i32,
                at: Timestamp,
                audit: &NewAuditEvent,
            ) -> StoreResult<Option<FactorProof>> {
                self.record_wrong_attempt("factor_proofs", id, attempts_seen, at, audit).await
            }

            async fn consume_factor_proof(
                &self,
                id: uuid::Uuid,
                at: Timestamp,
                audit: &NewAuditEvent,
            ) -> StoreResult<Option<FactorProof>> {
                let mut tx = self.begin_write().await?;
                let row: Option<FactorProof> = sqlx::query_as(
                    "UPDATE factor_proofs SET consumed_at = $2
                     WHERE id = $1 AND consumed_at IS NULL AND locked_at IS NULL AND expires_at > $2
                     RETURNING *",
                )
                .bind(id)
                .bind(at)
                .fetch_optional(&mut *tx)
                .await?;
                if row.is_some() {
                    Self::append_audit_tx(&mut tx, audit).await?;
                }
                tx.commit().await?;
                Ok(row)
            }

            async fn create_totp_invitation(
                &self,
                user_id: i64,
                created_by: &str,
                at: Timestamp,
                expires_at: Timestamp,
                audit: &NewAuditEvent,
            ) -> StoreResult<TotpInvitation> {
                let mut tx = self.begin_write().await?;
                let row: TotpInvitation = sqlx::query_as(
                    "INSERT INTO totp_invitations (user_id, created_by, created_at, expires_at, used_at)
                     VALUES ($1, $2, $3, $4, NULL)
                     ON CONFLICT (user_id) DO UPDATE SET
                        created_by = excluded.created_by, created_at = excluded.created_at,
                        expires_at = excluded.expires_at, used_at = NULL
                     RETURNING *",
                )
                .bind(user_id)
                .bind(created_by)
                .bind(at)
                .bind(expires_at)
                .fetch_one(&mut *tx)
                .await?;
                Self::append_audit_tx(&mut tx, audit).await?;
                tx.commit().await?;
                Ok(row)
            }

            async fn totp_invitation(&self, user_id: i64) -> StoreResult<Option<TotpInvitation>> {
                Ok(sqlx::query_as("SELECT * FROM totp_invitations WHERE user_id = $1")
                    .bind(user_id)
                    .fetch_optional(&self.pool)
                    .await?)
            }

            async fn use_totp_invitation(&self, user_id: i64, at: Timestamp, audit: &NewAuditEvent) -> StoreResult<bool> {
                let mut tx = self.begin_write().await?;
                let used = sqlx::query(
                    "UPDATE totp_invitations SET used_at = $2
                     WHERE user_id = $1 AND used_at IS NULL AND expires_at > $2",
                )
                .bind(user_id)
                .bind(at)
                .execute(&mut *tx)
                .await?
                .rows_affected();
                if used == 0 {
                    return Ok(false);
                }
                Self::append_audit_tx(&mut tx, audit).await?;
                tx.commit().await?;
                Ok(true)
            }

            async fn replace_totp_enrollment(
                &self,
                user_id: i64,
                secret_sealed: &[u8],
                at: Timestamp,
                audit: &NewAuditEvent,
            ) -> StoreResult<TotpEnrollmentRow> {
                let mut tx = self.begin_write().await?;
                let row: TotpEnrollmentRow = sqlx::query_as(
                    "INSERT INTO totp_enrollments (user_id, secret_sealed, created_at) VALUES ($1, $2, $3)
                     ON CONFLICT (user_id) DO UPDATE SET
                        secret_sealed = excluded.secret_sealed, created_at = excluded.created_at,
                        confirmed_at = NULL, last_accepted_step = NULL
                     RETURNING *",
                )
                .bind(user_id)
                .bind(secret_sealed)
                .bind(at)
                .fetch_one(&mut *tx)
                .await?;
                Self::append_audit_tx(&mut tx, audit).await?;
                tx.commit().await?;
                Ok(row)
            }

            async fn consume_challenge(
                &self,
                id: uuid::Uuid,
                at: Timestamp,
                totp_step: Option<i64>,
                audit: &NewAuditEvent,
            ) -> StoreResult<ConsumeOutcome> {
                let mut tx = self.begin_write().await?;
                let row: Option<OtpChallenge> = sqlx::query_as(
                    "UPDATE otp_challenges SET consumed_at = $2
                     WHERE id = $1 AND consumed_at IS NULL AND locked_at IS NULL AND expires_at > $2
                     RETURNING *",
                )
                .bind(id)
                .bind(at)
                .fetch_optional(&mut *tx)
                .await?;
                let Some(row) = row else {
                    return Ok(ConsumeOutcome::NotLive);
                };
                if let Some(step) = totp_step {
                    let moved = sqlx::query(
                        "UPDATE totp_enrollments SET last_accepted_step = $2
                         WHERE user_id = $1 AND confirmed_at IS NOT NULL
                           AND (last_accepted_step IS NULL OR last_accepted_step < $2)",
                    )
                    .bind(row.user_id)
                    .bind(step)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                    if moved != 1 {
                        // Dropping the transaction rolls the consumption back.
                        return Ok(ConsumeOutcome::StepReplayed);
                    }
                }
                Self::append_audit_tx(&mut tx, audit).await?;
                tx.commit().await?;
                Ok(ConsumeOutcome::Consumed(row))
            }

            async fn record_sms_credential_fault(
                &self,
                provider: &str,
                detail: &str,
                at: Timestamp,
            ) -> StoreResult<bool> {
                let mut tx = self.begin_write().await?;
                let first: Option<String> = sqlx::query_scalar(
                    "INSERT INTO sms_credential_faults (provider, detail, first_seen_at, last_seen_at)
                     VALUES ($1, $2, $3, $3)
                     ON CONFLICT (provider) DO NOTHING
                     RETURNING provider",
                )
                .bind(provider)
                .bind(detail)
                .bind(at)
                .fetch_optional(&mut *tx)
                .await?;
                if first.is_none() {
                    sqlx::query(
                        "UPDATE sms_credential_faults SET detail = $2, last_seen_at = $3 WHERE provider = $1",
                    )
                    .bind(provider)
                    .bind(detail)
                    .bind(at)
                    .execute(&mut *tx)
                    .await?;
                }
                tx.commit().await?;
                Ok(first.is_some())
            }

            async fn clear_sms_credential_fault(&self, provider: &str) -> StoreResult<bool> {
                let cleared = sqlx::query("DELETE FROM sms_credential_faults WHERE provider = $1")
                    .bind(provider)
                    .execute(&self.pool)
                    .await?;
                Ok(cleared.rows_affected() > 0)
            }

            async fn sms_credential_faults(&self) -> StoreResult<Vec<SmsCredentialFault>> {
                Ok(sqlx::query_as("SELECT * FROM sms_credential_faults ORDER BY provider")
                    .fetch_all(&self.pool)
                    .await?)
            }
        }

        #[async_trait]
        impl LocalShareStore for $store {
            async fn insert_local_share(&self, share: &LocalShareRow) -> StoreResult<()> {
                sqlx::query(
                    "INSERT INTO local_vault_shares (share_id, record_uid, name, created_at, expires_at, opened_at, removed_at)
                     VALUES ($1, $2, $3, $4, $5, $6, $7)",
                )
                .bind(&share.share_id)
                .bind(&share.record_uid)
                .bind(&share.name)
                .bind(share.created_at)
                .bind(share.expires_at)
                .bind(share.opened_at)
                .bind(share.removed_at)
                .execute(&self.pool)
                .await?;
                Ok(())
            }

            async fn local_share(&self, share_id: &str) -> StoreResult<Option<LocalShareRow>> {
                Ok(sqlx::query_as("SELECT * FROM local_vault_shares WHERE share_id = $1")
                    .bind(share_id)
                    .fetch_optional(&self.pool)
                    .await?)
            }

            async fn open_local_share(&self, share_id: &str, at: Timestamp) -> StoreResult<bool> {
                let opened = sqlx::query(
                    "UPDATE local_vault_shares SET opened_at = $2
                     WHERE share_id = $1 AND opened_at IS NULL AND removed_at IS NULL AND expires_at > $2",
                )
                .bind(share_id)
                .bind(at)
                .execute(&self.pool)
                .await?;
                Ok(opened.rows_affected() == 1)
            }

            async fn remove_local_share(&self, record_uid: &str, id_or_name: &str, at: Timestamp) -> StoreResult<u64> {
                Ok(sqlx::query(
                    "UPDATE local_vault_shares SET removed_at = $3
                     WHERE record_uid = $1 AND (share_id = $2 OR name = $2) AND removed_at IS NULL",
                )
                .bind(record_uid)
                .bind(id_or_name)
                .bind(at)
                .execute(&self.pool)
                .await?
                .rows_affected())
            }

            async fn local_shares(&self, record_uid: &str) -> StoreResult<Vec<LocalShareRow>> {
                Ok(sqlx::query_as(
                    "SELECT * FROM local_vault_shares WHERE record_uid = $1 AND removed_at IS NULL
                     ORDER BY created_at, share_id",
                )
                .bind(record_uid)
                .fetch_all(&self.pool)
                .await?)
            }
        }

        #[async_trait]
        impl HealthStore for $store {
            async fn ping(&self) -> StoreResult<()> {
                sqlx::query("SELECT 1").execute(&self.pool).await?;
                Ok(())
            }

            async fn migration_state(&self) -> StoreResult<MigrationState> {
                let expected: Vec<i64> = Self::MIGRATOR.iter().map(|m| m.version).collect();
                // Before the first migration the bookkeeping table doesn't exist: nothing applied.
                let applied: Vec<i64> =
                    match sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success ORDER BY version")
                        .fetch_all(&self.pool)
                        .await
                    {
                        Ok(v) => v,
                        Err(sqlx::Error::Database(_)) => Vec::new(),
                        Err(e) => return Err(e.into()),
                    };
                Ok(MigrationState { applied, expected })
            }

            async fn migrate(&self) -> StoreResult<()> {
                Self::MIGRATOR.run(&self.pool).await.map_err(|e| match e {
                    sqlx::migrate::MigrateError::Execute(e) => StoreError::from(e),
                    other => StoreError::Invalid(format!("migrations: {other}")),
                })
            }
        }
        }
    };
}
pub(super) use impl_store;
