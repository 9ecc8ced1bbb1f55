//! `RequestStore` in SQL, for both databases: expanded by `impl_store!` (see `super`) inside its
//! `generated` module, whose imports it uses.

macro_rules! impl_request_store {
    ($store:ident, $db:ty) => {
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
                // The submission's traces (two when routed) and its event.
                Self::finish_tx(&mut tx, &request, traces, audit).await?;
                self.commit_write(tx).await?;
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
                self.commit_write(tx).await?;
                Ok(request)
            }
        }
    };
}
pub(in crate::store) use impl_request_store;
