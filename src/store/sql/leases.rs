//! `LeaseStore` in SQL, for both databases: expanded by `impl_store!` (see `super`) inside its
//! `generated` module, whose imports it uses.

macro_rules! impl_lease_store {
    ($store:ident, $db:ty) => {
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
                self.commit_write(tx).await?;
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
                     WHERE id = $1 AND (status = 'APPROVED') IS TRUE RETURNING *",
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
                self.commit_write(tx).await?;
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
                     WHERE id = $1 AND (status IN ('APPROVED', 'ISSUED', 'RENEWAL_PENDING')
                       AND lease_expires_at > $4 AND issuance_count < max_issuances) IS TRUE
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
                self.commit_write(tx).await?;
                Ok(request)
            }

            async fn consume_issuance_token(
                &self,
                request_id: i64,
                token_hash: &str,
                now: Timestamp,
                dead_before: Timestamp,
            ) -> StoreResult<Option<Request>> {
                // One statement, so no transaction around it (two round trips fewer); it writes
                // no audit event, so there is nothing for the linker either. Reservations taken
                // before `dead_before` belong to retrievals that died (no live one takes that
                // long): they are reclaimed here, in the same statement.
                let updated: Option<Request> = sqlx::query_as(
                    "UPDATE requests SET issuance_token_hash = NULL, issuance_token_expires_at = NULL,
                        issuances_in_flight = CASE WHEN issuances_in_flight_since < $4 THEN 1
                                                   ELSE issuances_in_flight + 1 END,
                        issuances_in_flight_since = CASE
                            WHEN issuances_in_flight = 0 OR issuances_in_flight_since IS NULL
                                 OR issuances_in_flight_since < $4 THEN $3
                            ELSE issuances_in_flight_since END,
                        updated_at = $3
                     WHERE id = $1 AND (issuance_token_hash = $2 AND issuance_token_expires_at > $3
                       AND status IN ('APPROVED', 'ISSUED', 'RENEWAL_PENDING')
                       AND lease_expires_at > $3
                       AND issuance_count + CASE WHEN issuances_in_flight_since < $4 THEN 0
                                                 ELSE issuances_in_flight END < max_issuances) IS TRUE
                     RETURNING *",
                )
                .bind(request_id)
                .bind(token_hash)
                .bind(now)
                .bind(dead_before)
                .fetch_optional(&mut *self.writer().await?)
                .await?;
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
                     WHERE id = $1 AND (issuance_token_hash IS NULL
                       AND status IN ('APPROVED', 'ISSUED', 'RENEWAL_PENDING')) IS TRUE",
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
                self.commit_write(tx).await?;
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
                     WHERE id = $1 AND (status IN ('APPROVED', 'ISSUED', 'RENEWAL_PENDING')
                       AND issuances_in_flight > 0 AND issuance_count < max_issuances AND lease_expires_at > $2) IS TRUE
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
                self.commit_write(tx).await?;
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
                .execute(&mut *self.writer().await?)
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
                let revoked = sqlx::query("UPDATE issuance_events SET revoked_at = $2 WHERE id = $1 AND (revoked_at IS NULL) IS TRUE")
                    .bind(issuance_id)
                    .bind(at)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected()
                    == 1;
                if revoked {
                    Self::append_audit_tx(&mut tx, audit).await?;
                }
                self.commit_write(tx).await?;
                Ok(revoked)
            }

            async fn outstanding_issuances_for(&self, request_ids: &[i64]) -> StoreResult<Vec<IssuanceEvent>> {
                let mut out = Vec::new();
                for chunk in request_ids.chunks(Self::ID_LIST_ROWS) {
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
                for chunk in revocations.chunks(Self::ID_LIST_ROWS) {
                    let sql = format!(
                        "UPDATE issuance_events SET revoked_at = $1 WHERE id IN ({}) AND (revoked_at IS NULL) IS TRUE RETURNING id",
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
                self.commit_write(tx).await?;
                Ok(ids)
            }

            async fn record_revoke_failure(&self, issuance_id: i64, error: &str) -> StoreResult<()> {
                sqlx::query(
                    "UPDATE issuance_events SET revoke_attempts = revoke_attempts + 1, last_revoke_error = $2
                     WHERE id = $1 AND (revoked_at IS NULL) IS TRUE",
                )
                .bind(issuance_id)
                .bind(error)
                .execute(&mut *self.writer().await?)
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
                .fetch_all(&mut *self.writer().await?)
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
                    let (open, close) = Self::CLAIM_PICKED;
                    let sql = format!(
                        "UPDATE requests SET claimed_by = $1, claim_until = $2
                         WHERE {open}SELECT id FROM requests
                                      WHERE ({due}) AND (claim_until IS NULL OR claim_until <= $3)
                                      ORDER BY {order} LIMIT $5{}{close}
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
                self.commit_write(tx).await?;
                claimed.sort_by_key(|r| r.id);
                Ok(claimed)
            }

            async fn release_claim(&self, request_id: i64, holder: &str) -> StoreResult<()> {
                sqlx::query("UPDATE requests SET claimed_by = NULL, claim_until = NULL WHERE id = $1 AND claimed_by = $2")
                    .bind(request_id)
                    .bind(holder)
                    .execute(&mut *self.writer().await?)
                    .await?;
                Ok(())
            }

            async fn release_claims(&self, request_ids: &[i64], holder: &str) -> StoreResult<()> {
                if request_ids.is_empty() {
                    return Ok(());
                }
                // One transaction for every chunk: one commit (on Postgres one WAL flush) per
                // batch rather than one per chunk of a large batch.
                let mut tx = self.begin_write().await?;
                for chunk in request_ids.chunks(Self::ID_LIST_ROWS) {
                    let sql = format!(
                        "UPDATE requests SET claimed_by = NULL, claim_until = NULL WHERE claimed_by = $1 AND id IN ({})",
                        $crate::store::sql::list_placeholders(chunk.len(), 2)
                    );
                    // Only numbered placeholders are formatted in: no outside text.
                    let mut q = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(holder);
                    for id in chunk {
                        q = q.bind(*id);
                    }
                    q.execute(&mut *tx).await?;
                }
                self.commit_write(tx).await?;
                Ok(())
            }

            async fn renew_claims(
                &self,
                request_ids: &[i64],
                holder: &str,
                claim_until: Timestamp,
            ) -> StoreResult<Vec<i64>> {
                let mut held = Vec::with_capacity(request_ids.len());
                for chunk in request_ids.chunks(Self::ID_LIST_ROWS) {
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
                    held.extend(q.fetch_all(&mut *self.writer().await?).await?);
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
                    for chunk in ids.chunks(Self::ID_LIST_ROWS) {
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
                             WHERE id IN ({}) AND (status = $2 AND lease_expires_at <= $1) IS TRUE
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
                Self::insert_traces_and_events_tx(&mut tx, &traces, None, &events).await?;
                self.commit_write(tx).await?;
                Ok(expired)
            }

            async fn mark_notified_once(&self, request_id: i64, expiry_warning: bool, at: Timestamp) -> StoreResult<bool> {
                let sql = if expiry_warning {
                    "UPDATE requests SET expiry_warned_at = $2 WHERE id = $1 AND expiry_warned_at IS NULL"
                } else {
                    "UPDATE requests SET reminded_at = $2 WHERE id = $1 AND reminded_at IS NULL"
                };
                Ok(sqlx::query(sql).bind(request_id).bind(at).execute(&mut *self.writer().await?).await?.rows_affected() == 1)
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
                .fetch_one(&mut *self.writer().await?)
                .await?)
            }

            async fn claim_job_fire(&self, job_name: &str, fire_at: Timestamp, holder: &str) -> StoreResult<bool> {
                let claimed = sqlx::query(
                    "INSERT INTO job_fires (job_name, fire_at, holder) VALUES ($1, $2, $3)
                     ON CONFLICT (job_name, fire_at) DO NOTHING",
                )
                .bind(job_name)
                .bind(fire_at)
                .bind(holder)
                .execute(&mut *self.writer().await?)
                .await?
                .rows_affected()
                    == 1;
                if claimed {
                    sqlx::query("DELETE FROM job_fires WHERE job_name = $1 AND fire_at < $2")
                        .bind(job_name)
                        .bind(fire_at.minus(time::Duration::days(2)))
                        .execute(&mut *self.writer().await?)
                        .await?;
                }
                Ok(claimed)
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
                        .execute(&mut *self.writer().await?)
                        .await?
                        .rows_affected();
                }
                Ok(forgotten)
            }
        }
    };
}
pub(in crate::store) use impl_lease_store;
