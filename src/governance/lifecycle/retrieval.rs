//! Retrieval: minting and exchanging an issuance token for a one-time share.

use super::*;
use crate::otp::SecondFactorProof;

/// What the caller of an exchange knows of the second factor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Factor {
    /// Nothing: a request that needs one is refused.
    Unproven,
    /// The OTP service's proof ([`SecondFactorProof`]).
    Proven,
}

impl Lifecycle {
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

    /// Exchanges an issuance token for a fresh one-time share, when the request needs no second
    /// factor (one that does is refused with `SecondFactorRequired`: see
    /// [`Lifecycle::exchange_proven`]). The token is checked in constant time and used up; the
    /// retrieval is counted with its IssuanceEvent in one transaction, and only while
    /// `issuance_count < max_issuances` (INV-4). A passing vault failure uses nothing up. The URL
    /// goes back to the caller and nowhere else (INV-5).
    pub async fn exchange_token(
        &self,
        requester: &User,
        request_id: i64,
        token: &SecretString,
        client: ClientInfo,
    ) -> Result<Retrieved, LifecycleError> {
        let presented = sha256_hex(token.expose_secret());
        self.exchange_by_hash(requester, request_id, presented, Factor::Unproven, client)
            .await
    }

    /// Step 1 of a two-step retrieval (a second factor is required): checks the token exactly as
    /// [`Lifecycle::exchange_token`] does — constant time, unexpired, a mismatch audited, a live lease
    /// with retrievals left — but uses nothing up. Returns the token's SHA-256, which the OTP
    /// challenge binds; step 2 is [`Lifecycle::exchange_proven`].
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

    /// Step 2 of a two-step retrieval: the second factor was verified on a challenge bound to the
    /// token's hash (from [`Lifecycle::check_issuance_token`]); the OTP service's `verify` returns
    /// the [`SecondFactorProof`]. Uses the token up by that hash and creates the share, as
    /// [`Lifecycle::exchange_token`] does. A token minted since step 1 replaced the bound one, so
    /// the hash no longer matches and nothing is shared; a proof for another request matches no
    /// token of this one.
    pub async fn exchange_proven(
        &self,
        requester: &User,
        request_id: i64,
        proof: &SecondFactorProof,
        client: ClientInfo,
    ) -> Result<Retrieved, LifecycleError> {
        if proof.request_id() != request_id {
            return Err(LifecycleError::TokenMismatch);
        }
        self.exchange_by_hash(
            requester,
            request_id,
            proof.token_hash().to_string(),
            Factor::Proven,
            client,
        )
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
            crate::crypto::same_bytes(h.as_bytes(), presented.as_bytes())
                && request.issuance_token_expires_at.is_some_and(|e| e > now)
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
        factor: Factor,
        client: ClientInfo,
    ) -> Result<Retrieved, LifecycleError> {
        let request = self
            .own_request_with_token(requester, request_id, &presented)
            .await?;
        let now = self.clock.now();
        // Read once: it says whether a second factor is needed and which record to share.
        let record = self.record_of(&request).await?;
        if factor == Factor::Unproven && self.needs_second_factor(&request, &record) {
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
                "second_factor": factor != Factor::Unproven,
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
}
