//! Approving and denying a PENDING request (quorum, stages, break-glass).

use super::*;

impl Lifecycle {
    // ---- approve / deny ---------------------------------------------------------------------

    /// An approver's approval: counted toward the quorum; the deciding one approves the request
    /// with one conditional update, so concurrent approvers give exactly one decision.
    pub async fn approve(
        &self,
        approver: &User,
        request_id: i64,
        comment: Option<&str>,
    ) -> Result<Change, LifecycleError> {
        let comment = comment.map(|c| bounded(c, "comment")).transpose()?;
        for _ in 0..APPROVAL_ATTEMPTS {
            let Decidable {
                request,
                record,
                ctx,
                seen,
            } = match self.decidable(approver, request_id, "approve").await? {
                Some(d) => d,
                None => {
                    return self
                        .decide_extension(approver, request_id, true, comment.as_deref())
                        .await;
                }
            };
            let decision = self.engine.evaluate(&ctx);
            let trace = trace_record(TraceStage::ApprovalDecision, &ctx, &decision);
            let now = ctx.now;
            let stage = self.current_stage(&ctx);
            let new_approval = NewApproval {
                request_id,
                approver_id: approver.id,
                stage,
                decision: ApprovalDecision::Approve,
                comment: comment.clone(),
                at: now,
            };
            let result = match decision.outcome {
                Outcome::Deny | Outcome::RequiresHumanTriage => {
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
                Outcome::AutoApprove => {
                    let secs = self.lease_secs(&request, &decision);
                    let change = StatusChange::new(
                        request_id,
                        RequestStatus::Pending,
                        RequestStatus::Approved,
                        now,
                    )
                    .decided_by(approver.id, comment.clone().unwrap_or_default())
                    .lease(now, now.plus(Duration::seconds(secs)), secs);
                    let audit = NewAuditEvent::new(actor(approver), "REQUEST_APPROVED", now)
                        .detail(json!({ "stage": stage, "approvals": seen + 1, "lease_secs": secs, "comment": comment }));
                    self.store
                        .record_approval(
                            &new_approval,
                            RequestStatus::Pending,
                            seen,
                            Some(&change),
                            &[trace],
                            &audit,
                        )
                        .await
                        .map(|(_, r)| (r, true))
                }
                Outcome::RouteToAuthority => {
                    let audit = NewAuditEvent::new(actor(approver), "APPROVAL_RECORDED", now)
                        .detail(json!({ "stage": stage, "approvals": seen + 1, "reasons": decision.reasons, "comment": comment }));
                    self.store
                        .record_approval(
                            &new_approval,
                            RequestStatus::Pending,
                            seen,
                            None,
                            &[trace],
                            &audit,
                        )
                        .await
                        .map(|(_, r)| (r, false))
                }
            };
            match result {
                Ok((request, true)) => {
                    return self
                        .after_approval(request, record, Event::Approved, decision.reasons, vec![])
                        .await;
                }
                Ok((request, false)) => {
                    // A completed stage hands over to the next: tell its approvers — or, when
                    // they reach nobody, the admins, as at submission.
                    let next = self.next_stage_approvers(&ctx, stage);
                    let reached = if next.is_empty() {
                        ReachedApprovers::default()
                    } else {
                        self.reach_approvers(&next, request.requester_id).await?
                    };
                    if !next.is_empty() && reached.users.is_empty() {
                        let mut change = self
                            .no_approver_reachable(
                                request,
                                record,
                                decision.reasons,
                                reached.unreached,
                            )
                            .await?;
                        change.notices.push(Self::requester_notice(&change.request));
                        return Ok(change);
                    }
                    let mut notices = vec![Self::requester_notice(&request)];
                    notices.extend(Self::notices(
                        &reached.users,
                        request.id,
                        NoticeKind::ApprovalNeeded,
                    ));
                    let mut reasons = decision.reasons;
                    reasons.extend(reached.unreached);
                    return Ok(Change {
                        request,
                        record,
                        event: Event::ApprovalRecorded,
                        reasons,
                        notices,
                    });
                }
                Err(StoreError::StatusConflict { .. }) => {
                    return Err(self.already_decided(request_id).await);
                }
                Err(StoreError::Conflict(m)) if m.contains("meanwhile") => continue,
                Err(StoreError::Conflict(_)) => {
                    return Err(LifecycleError::Refused(vec![
                        "you have already given your decision on this request".into(),
                    ]));
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(LifecycleError::Refused(vec![
            "too many approvers at once; try again".into(),
        ]))
    }

    /// What an approver's decision needs: the request (still PENDING), its record, and the policy
    /// context of this approver's approval with the approvals so far. `None`: the request waits
    /// for an extension, which `decide_extension` decides. Any other state is an answer for the
    /// approver.
    async fn decidable(
        &self,
        approver: &User,
        request_id: i64,
        attempt: &'static str,
    ) -> Result<Option<Decidable>, LifecycleError> {
        // Who may see it and the policy context read the same authority facts: once.
        let mut read = ReadAuthorities::default();
        let request = self
            .visible_request_reading(approver, request_id, attempt, &mut read)
            .await?;
        match request.status {
            RequestStatus::Pending => {}
            RequestStatus::RenewalPending => return Ok(None),
            RequestStatus::RequiresTriage => {
                return Err(LifecycleError::WrongState {
                    request_id,
                    status: request.status,
                    what: "an admin decides it from the triage queue",
                });
            }
            _ => return Err(self.already_decided(request_id).await),
        }
        let record = self.record_of(&request).await?;
        let requester = self
            .store
            .user_by_id(request.requester_id)
            .await?
            .ok_or(StoreError::NotFound("requester"))?;
        let approve_rows: Vec<ApprovalFacts> = self
            .store
            .approvals_for_request(request_id)
            .await?
            .iter()
            .filter(|a| a.decision == ApprovalDecision::Approve)
            .map(|a| ApprovalFacts {
                approver_user_id: a.approver_id,
                stage: a.stage,
            })
            .collect();
        let seen = approve_rows.len() as i64;
        let ctx = self
            .context_reading(
                Action::Approve,
                &requester,
                Some(approver),
                &record,
                Self::facts_of(&request),
                approve_rows,
                None,
                &mut read,
            )
            .await?;
        Ok(Some(Decidable {
            request,
            record,
            ctx,
            seen,
        }))
    }

    /// The stage an approval counts toward: the first whose quorum is not met yet.
    pub(super) fn current_stage(&self, ctx: &PolicyContext) -> i32 {
        let needed = crate::policy::rules::quorum::stage_requirements(ctx, self.engine.policy());
        needed
            .iter()
            .find(|(stage, count)| {
                (ctx.approvals.iter().filter(|a| a.stage == **stage).count() as u32) < **count
            })
            .map(|(s, _)| *s)
            .unwrap_or(1)
    }

    /// The approvers of the stage after `stage`, once `stage` has just completed.
    fn next_stage_approvers(&self, ctx: &PolicyContext, stage: i32) -> Vec<Approver> {
        let policy = self.engine.policy();
        let needed = crate::policy::rules::quorum::stage_requirements(ctx, policy);
        let have = ctx.approvals.iter().filter(|a| a.stage == stage).count() as u32 + 1;
        if needed.get(&stage).is_none_or(|n| have < *n) {
            return vec![];
        }
        let stages = crate::policy::rules::quorum::approvers_by_stage(ctx, policy);
        stages
            .range(stage + 1..)
            .next()
            .map(|(_, rows)| rows.iter().map(|a| approver_of(a)).collect())
            .unwrap_or_default()
    }

    /// A refused attempt is an event too: audited with the decision that refused it.
    pub(super) async fn refused(
        &self,
        who: &User,
        request: &Request,
        action: &str,
        reasons: &[String],
        trace: NewTrace,
    ) -> Result<(), StoreError> {
        self.store.insert_trace(&trace).await?;
        self.store
            .append_audit(
                &NewAuditEvent::new(actor(who), action, self.clock.now())
                    .request(request.id)
                    .record(request.record_id)
                    .detail(json!({ "reasons": reasons })),
            )
            .await?;
        Ok(())
    }

    /// An approver's denial: one resolved approver's "no" decides.
    pub async fn deny(
        &self,
        approver: &User,
        request_id: i64,
        comment: Option<&str>,
    ) -> Result<Change, LifecycleError> {
        let comment = comment.map(|c| bounded(c, "comment")).transpose()?;
        // Whoever may approve may deny: the same evaluation says whether this person may decide.
        let Decidable {
            request,
            record,
            ctx,
            seen,
        } = match self.decidable(approver, request_id, "deny").await? {
            Some(d) => d,
            None => {
                return self
                    .decide_extension(approver, request_id, false, comment.as_deref())
                    .await;
            }
        };
        let mut decision = self.engine.evaluate(&ctx);
        if matches!(
            decision.outcome,
            Outcome::Deny | Outcome::RequiresHumanTriage
        ) {
            let trace = trace_record(TraceStage::ApprovalDecision, &ctx, &decision);
            self.refused(
                approver,
                &request,
                "DENIAL_REFUSED",
                &decision.reasons,
                trace,
            )
            .await?;
            if request.requester_id == approver.id {
                // The requester wants it gone, not to judge it: say what they can do instead.
                return Err(LifecycleError::BadInput(format!(
                    "Request #{request_id} is your own, so you cannot deny it. Until it is approved there is no access to hand back; if you no longer need it, leave it: it ends by itself when nobody approves it in time."
                )));
            }
            return Err(LifecycleError::Refused(decision.reasons));
        }
        let why = comment
            .clone()
            .filter(|c| !c.is_empty())
            .unwrap_or_else(|| "denied by an approver".to_string());
        // The policy said this approver may decide; the denial is theirs. The trace keeps both,
        // so replay re-derives the policy's part from the stored inputs.
        let reasons = vec![format!("{} denied it: {why}", approver.display_name)];
        let trace = person_decision_trace(
            TraceStage::ApprovalDecision,
            &ctx,
            &decision,
            Outcome::Deny,
            reasons.clone(),
        );
        decision.outcome = Outcome::Deny;
        decision.reasons = reasons;
        let now = ctx.now;
        let stage = self.current_stage(&ctx);
        let change = StatusChange::new(
            request_id,
            RequestStatus::Pending,
            RequestStatus::Denied,
            now,
        )
        .decided_by(approver.id, why.clone());
        let audit = NewAuditEvent::new(actor(approver), "REQUEST_DENIED", now)
            .detail(json!({ "stage": stage, "comment": comment }));
        let new_approval = NewApproval {
            request_id,
            approver_id: approver.id,
            stage,
            decision: ApprovalDecision::Deny,
            comment: comment.clone(),
            at: now,
        };
        match self
            .store
            .record_approval(
                &new_approval,
                RequestStatus::Pending,
                seen,
                Some(&change),
                &[trace],
                &audit,
            )
            .await
        {
            Ok((_, request)) => Ok(Change {
                notices: vec![Self::requester_notice(&request)],
                request,
                record,
                event: Event::Denied,
                reasons: decision.reasons,
            }),
            Err(StoreError::StatusConflict { .. }) => Err(self.already_decided(request_id).await),
            Err(StoreError::Conflict(m)) if m.contains("meanwhile") => {
                Box::pin(self.deny(approver, request_id, comment.as_deref())).await
            }
            Err(StoreError::Conflict(_)) => Err(LifecycleError::Refused(vec![
                "you have already given your decision on this request".into(),
            ])),
            Err(e) => Err(e.into()),
        }
    }
}
