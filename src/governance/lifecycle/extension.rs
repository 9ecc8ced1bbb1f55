//! Extending a lease: asking, and deciding an extension.

use super::*;

impl Lifecycle {
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
                what: if request.status == RequestStatus::RenewalPending {
                    "more time was already asked for, and your access continues while an approver decides; ask again after that"
                } else {
                    "only a live lease can be extended"
                },
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
}
