//! The scheduler's nudges: chasing undecided requests and expiry warnings.

use super::*;

impl Lifecycle {
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
