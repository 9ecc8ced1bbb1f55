//! Triage: an admin routes or closes a request the policy could not route.

use super::*;

impl Lifecycle {
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
}
