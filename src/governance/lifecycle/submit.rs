//! Submitting a request, deciding it by policy, and the vault preflight.

use super::*;
use crate::domain::format_duration;
use crate::policy::decision::Verdict;

/// Policy rules whose refusal of a submission can be an input error (see "Input errors and
/// policy decisions" in docs/ARCHITECTURE.md).
const INPUT_RULES: [&str; 2] = ["duration-caps", "reason"];

impl Lifecycle {
    // ---- submit -----------------------------------------------------------------------------

    /// What the person typed wrong, when that is all the policy refused: a duration over the
    /// record's cap, or a justification shorter than the policy's minimum. The request form
    /// checks both before it is sent; a refusal by any other rule (or by the reason rule on the
    /// ticket, i.e. by content) stays a policy denial.
    fn input_error(
        &self,
        record: &Record,
        duration: i64,
        justification: &str,
        decision: &Decision,
    ) -> Option<String> {
        if decision.outcome != Outcome::Deny
            || decision
                .trace
                .iter()
                .any(|t| t.verdict == Verdict::Deny && !INPUT_RULES.contains(&t.rule.as_str()))
        {
            return None;
        }
        let policy = self.engine.policy();
        let cap = policy.max_lease_secs(record.sensitivity);
        let min = policy.access.reason.min_justification_chars;
        let mut problems = Vec::new();
        if duration > cap {
            problems.push(format!(
                "{} can be borrowed for at most {}; choose {} or less.",
                record.title,
                format_duration(Duration::seconds(cap)),
                format_duration(Duration::seconds(cap)),
            ));
        }
        if policy.access.reason.justification_required && justification.chars().count() < min {
            problems.push(format!(
                "Say why you need it, in at least {min} characters."
            ));
        }
        let denied_by_reason = decision
            .trace
            .iter()
            .any(|t| t.verdict == Verdict::Deny && t.rule == "reason");
        let denied_by_cap = decision
            .trace
            .iter()
            .any(|t| t.verdict == Verdict::Deny && t.rule == "duration-caps");
        // Every refusal must be one of these mistakes (the reason rule also refuses tickets).
        let explained = (!denied_by_cap || duration > cap)
            && (!denied_by_reason
                || (policy.access.reason.justification_required
                    && justification.chars().count() < min));
        (explained && !problems.is_empty()).then(|| problems.join(" "))
    }

    /// A new request: resolve the record, ask the policy, persist with the trace, then approve at
    /// once, deny, route to approvers or queue for triage.
    pub async fn submit(
        &self,
        requester: &User,
        submission: &Submission,
    ) -> Result<Change, LifecycleError> {
        let admin = GovernanceAdmin::new(self.store.clone(), self.clock.clone());
        let record = admin.find_record(&submission.record).await?;
        let justification = bounded(&submission.justification, "justification")?;
        let ticket_id = match &submission.ticket_id {
            Some(t) if !t.trim().is_empty() => Some(bounded(t, "ticket")?),
            _ => None,
        };
        let duration = submission
            .duration_secs
            .unwrap_or(self.engine.policy().lease.default_lease_secs);
        if duration <= 0 {
            return Err(LifecycleError::BadInput(
                "The duration must be positive, e.g. 30m, 2h or 1d.".into(),
            ));
        }
        if !requester.allow_multiple_leases
            && let Some(open) = self
                .store
                .requests_for_requester(requester.id, 200)
                .await?
                .into_iter()
                .find(|r| r.record_id == record.id && !r.status.is_final())
        {
            return Err(LifecycleError::AlreadyOpen(open.id));
        }

        let ctx = self
            .context(
                Action::Submit,
                requester,
                None,
                &record,
                RequestFacts {
                    request_id: None,
                    status: None,
                    requested_duration_secs: duration,
                    justification: justification.clone(),
                    ticket_id: ticket_id.clone(),
                    break_glass: submission.break_glass,
                    granted_lease_secs: 0,
                    extension_count: 0,
                },
                vec![],
                None,
            )
            .await?;
        let decision = self.engine.evaluate(&ctx);
        if let Some(problem) = self.input_error(&record, duration, &justification, &decision) {
            // A mistake the form catches is answered, not recorded: no request, no audit event.
            return Err(LifecycleError::BadInput(problem));
        }
        let status = match decision.outcome {
            Outcome::Deny => RequestStatus::Denied,
            Outcome::RequiresHumanTriage => RequestStatus::RequiresTriage,
            Outcome::AutoApprove | Outcome::RouteToAuthority => RequestStatus::Pending,
        };
        let mut traces = vec![trace_record(TraceStage::RequestSubmission, &ctx, &decision)];
        if decision.outcome == Outcome::RouteToAuthority {
            traces.push(trace_record(
                TraceStage::AuthorityResolution,
                &ctx,
                &decision,
            ));
        }
        let required: u32 = decision.required_approvals.iter().map(|r| r.count).sum();
        let new = NewRequest {
            requester_id: requester.id,
            record_id: record.id,
            status,
            justification,
            ticket_id,
            requested_duration_secs: duration,
            break_glass: submission.break_glass,
            required_approvals: required.max(1) as i32,
            max_issuances: decision
                .constraints
                .max_issuances
                .unwrap_or(self.engine.policy().lease.max_issuances)
                .min(i32::MAX as u32) as i32,
            policy_version: Some(decision.policy_version.clone()),
            review_required: decision.constraints.post_hoc_review,
            otp_required: decision.constraints.otp_required,
            decision_reason: (status == RequestStatus::Denied).then(|| decision.reasons.join("; ")),
        };
        let now = ctx.now;
        let audit = NewAuditEvent::new(actor(requester), "REQUEST_SUBMITTED", now)
            .record(record.id)
            .detail(json!({
                "outcome": decision.outcome,
                "reasons": decision.reasons,
                "requested_duration_secs": duration,
                "break_glass": submission.break_glass,
            }));
        let request = self
            .store
            .create_request(&new, &traces, &audit, now)
            .await?;
        if status == RequestStatus::Denied {
            // The reason is on the request for the card; the trace holds the detail.
            return Ok(Change {
                notices: vec![],
                request,
                record,
                event: Event::DeniedByPolicy,
                reasons: decision.reasons,
            });
        }
        match decision.outcome {
            Outcome::RequiresHumanTriage => {
                let admins = self.admins().await?;
                Ok(Change {
                    notices: Self::notices(&admins, request.id, NoticeKind::TriageNeeded),
                    request,
                    record,
                    event: Event::Triaged,
                    reasons: decision.reasons,
                })
            }
            Outcome::RouteToAuthority => {
                let first = decision.required_approvals.first();
                let reached = match first {
                    Some(stage) => self.reach_approvers(&stage.approvers, requester.id).await?,
                    None => ReachedApprovers::default(),
                };
                if reached.users.is_empty() {
                    return self
                        .no_approver_reachable(request, record, decision.reasons, reached.unreached)
                        .await;
                }
                let mut reasons = decision.reasons;
                reasons.extend(reached.unreached);
                Ok(Change {
                    notices: Self::notices(&reached.users, request.id, NoticeKind::ApprovalNeeded),
                    request,
                    record,
                    event: Event::Routed,
                    reasons,
                })
            }
            _ => {
                self.approve_by_policy(request, record, &ctx, &decision)
                    .await
            }
        }
    }

    /// A routed request whose approvers resolve to nobody Passkey can reach (a group whose members
    /// it cannot list, an address nobody has) goes to the admins at once, and the requester is
    /// told why — it never waits silently for people who will not hear of it. `unreached` says
    /// which approvers could not be reached and why; it is in the reasons and the audit event.
    pub(super) async fn no_approver_reachable(
        &self,
        request: Request,
        record: Record,
        mut reasons: Vec<String>,
        unreached: Vec<String>,
    ) -> Result<Change, LifecycleError> {
        let why = "no approver could be reached; an admin will decide".to_string();
        let now = self.clock.now();
        let change = StatusChange::new(
            request.id,
            RequestStatus::Pending,
            RequestStatus::RequiresTriage,
            now,
        )
        .reason(why.clone());
        let audit = NewAuditEvent::new("system:routing", "REQUEST_ESCALATED", now)
            .detail(json!({ "reason": "no_reachable_approver", "unreached": unreached }));
        let request = self.store.transition_request(&change, &[], &audit).await?;
        reasons.extend(unreached);
        reasons.push(why);
        let admins = self.admins().await?;
        Ok(Change {
            notices: Self::notices(&admins, request.id, NoticeKind::TriageNeeded),
            request,
            record,
            event: Event::Triaged,
            reasons,
        })
    }

    /// AUTO_APPROVE at submission (including break-glass): the approval transition, then the lease.
    async fn approve_by_policy(
        &self,
        request: Request,
        record: Record,
        ctx: &PolicyContext,
        decision: &Decision,
    ) -> Result<Change, LifecycleError> {
        let now = self.clock.now();
        let secs = self.lease_secs(&request, decision);
        let break_glass = decision.constraints.post_hoc_review;
        let action = if break_glass {
            "BREAK_GLASS_APPROVED"
        } else {
            "REQUEST_AUTO_APPROVED"
        };
        let change = StatusChange::new(
            request.id,
            RequestStatus::Pending,
            RequestStatus::Approved,
            now,
        )
        .reason(decision.reasons.join("; "))
        .lease(now, now.plus(Duration::seconds(secs)), secs);
        let audit = NewAuditEvent::new("system:policy", action, now).detail(json!({
            "reasons": decision.reasons,
            "lease_secs": secs,
            "review_required": break_glass,
        }));
        // The decision was taken on the submission's context (no request yet): that is what the
        // trace stores and what replay evaluates; only the row is tied to the new request.
        let mut trace = trace_record(TraceStage::ApprovalDecision, ctx, decision);
        trace.request_id = Some(request.id);
        let request = self
            .store
            .transition_request(&change, &[trace], &audit)
            .await?;
        let mut notices = vec![];
        if decision.constraints.notify_authorities || break_glass {
            let approvers: Vec<Approver> = ctx
                .authorities
                .iter()
                .filter(|a| a.in_force(now))
                .map(approver_of)
                .collect();
            let mut people = self
                .resolve_approvers(&approvers, request.requester_id)
                .await?;
            for admin in self.admins().await? {
                if admin.id != request.requester_id && !people.iter().any(|p| p.id == admin.id) {
                    people.push(admin);
                }
            }
            notices.extend(Self::notices(
                &people,
                request.id,
                NoticeKind::BreakGlassUsed,
            ));
        }
        let event = if break_glass {
            Event::BreakGlassApproved
        } else {
            Event::Approved
        };
        self.after_approval(request, record, event, decision.reasons.clone(), notices)
            .await
    }

    /// The approved lease length: what was asked, within the policy's cap.
    pub(super) fn lease_secs(&self, request: &Request, decision: &Decision) -> i64 {
        let cap = decision
            .constraints
            .max_lease_secs
            .unwrap_or(request.requested_duration_secs);
        request.requested_duration_secs.min(cap).max(1)
    }

    /// After any approval: the vault preflight, and the requester told.
    pub(super) async fn after_approval(
        &self,
        request: Request,
        record: Record,
        event: Event,
        reasons: Vec<String>,
        mut notices: Vec<Notice>,
    ) -> Result<Change, LifecycleError> {
        let (request, preflight_event, more) = self.preflight(request, &record).await?;
        notices.push(Self::requester_notice(&request));
        notices.extend(more);
        Ok(Change {
            event: match preflight_event {
                Event::Unfulfillable => Event::Unfulfillable,
                _ => event,
            },
            request,
            record,
            reasons,
            notices,
        })
    }

    // ---- preflight --------------------------------------------------------------------------

    /// Can the vault serve this record? Asked once at approval and again by the retry job: a
    /// terminal answer makes the request UNFULFILLABLE; a passing one is retried with backoff
    /// until the budget is spent. No share is created here.
    pub async fn preflight(
        &self,
        request: Request,
        record: &Record,
    ) -> Result<(Request, Event, Vec<Notice>), LifecycleError> {
        if request.status != RequestStatus::Approved {
            return Ok((request, Event::Approved, vec![]));
        }
        let result = if PAM_RECORD_TYPES.contains(&record.record_type.as_str()) {
            Err(VaultError::new(
                ErrorClass::Terminal,
                "One-time shares are not available for PAM records",
                format!("record type {}", record.record_type),
            ))
        } else {
            self.sharer.list(&record.vault_uid).await.map(|_| ())
        };
        let now = self.clock.now();
        let attempts = request.preflight_attempts + 1;
        match result {
            Ok(()) => {
                let request = if request.preflight_attempts > 0 || request.next_attempt_at.is_some()
                {
                    let audit =
                        NewAuditEvent::new("system:preflight", "VAULT_PREFLIGHT_PASSED", now)
                            .detail(json!({ "attempts": attempts }));
                    self.store
                        .schedule_preflight(request.id, attempts, None, &audit)
                        .await?
                } else {
                    request
                };
                Ok((request, Event::PreflightPassed, vec![]))
            }
            Err(e) => {
                let retries_used = attempts - 1;
                let budget = self.settings.preflight_retry_budget as i32;
                if e.class == ErrorClass::Terminal || retries_used >= budget {
                    let why = if e.class == ErrorClass::Terminal {
                        e.message.clone()
                    } else {
                        format!("the vault did not answer after {attempts} attempts")
                    };
                    let change = StatusChange::new(
                        request.id,
                        RequestStatus::Approved,
                        RequestStatus::Unfulfillable,
                        now,
                    )
                    .reason(why.clone())
                    .preflight(attempts, None);
                    let audit =
                        NewAuditEvent::new("system:preflight", "REQUEST_UNFULFILLABLE", now).detail(
                            json!({ "class": e.class, "message": e.message, "raw": e.raw, "attempts": attempts }),
                        );
                    let trace = event_trace(
                        TraceStage::IssuanceCheck,
                        &request,
                        TraceOutcome::Deny,
                        vec![why],
                        json!({ "record_uid": record.vault_uid, "record_type": record.record_type, "class": e.class, "attempts": attempts }),
                        self.engine.version(),
                        now,
                    );
                    let request = self
                        .store
                        .transition_request(&change, &[trace], &audit)
                        .await?;
                    let notices = vec![Self::requester_notice(&request)];
                    Ok((request, Event::Unfulfillable, notices))
                } else {
                    let wait =
                        PREFLIGHT_BACKOFF[(retries_used as usize).min(PREFLIGHT_BACKOFF.len() - 1)];
                    let next = now.plus(wait);
                    let audit =
                        NewAuditEvent::new("system:preflight", "VAULT_PREFLIGHT_DEFERRED", now)
                            .detail(json!({
                                "class": e.class, "message": e.message, "raw": e.raw,
                                "attempts": attempts, "next_attempt_at": next.to_fixed_text(),
                            }));
                    let request = self
                        .store
                        .schedule_preflight(request.id, attempts, Some(next), &audit)
                        .await?;
                    let notices = if e.class == ErrorClass::NeedsOperator {
                        Self::notices(
                            &self.admins().await?,
                            request.id,
                            NoticeKind::VaultNeedsOperator,
                        )
                    } else {
                        vec![]
                    };
                    Ok((request, Event::PreflightDeferred, notices))
                }
            }
        }
    }
}
