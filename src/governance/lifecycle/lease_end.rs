//! Ending a lease: release, revoke, expiry, lost permissions.

use super::*;

impl Lifecycle {
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
}
