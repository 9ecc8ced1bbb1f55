//! `ReviewStore` in SQL, for both databases: expanded by `impl_store!` (see `super`) inside its
//! `generated` module, whose imports it uses.

macro_rules! impl_review_store {
    ($store:ident, $db:ty) => {
        #[async_trait]
        impl ReviewStore for $store {
            async fn create_review_campaign(
                &self,
                c: &NewReviewCampaign,
                reviews: &[NewAccessReview],
                audit: &NewAuditEvent,
            ) -> StoreResult<Option<(ReviewCampaign, Vec<AccessReview>)>> {
                let mut tx = self.begin_write().await?;
                let campaign: Option<ReviewCampaign> = sqlx::query_as(
                    "INSERT INTO review_campaigns (fire_key, started_by, period_from, period_to, created_at)
                     VALUES ($1, $2, $3, $4, $5)
                     ON CONFLICT (fire_key) DO NOTHING RETURNING *",
                )
                .bind(&c.fire_key)
                .bind(&c.started_by)
                .bind(c.period_from)
                .bind(c.period_to)
                .bind(c.at)
                .fetch_optional(&mut *tx)
                .await?;
                let Some(campaign) = campaign else {
                    return Ok(None);
                };
                sqlx::query("UPDATE access_reviews SET status = 'SUPERSEDED', closed_at = $1 WHERE status = 'OPEN'")
                    .bind(c.at)
                    .execute(&mut *tx)
                    .await?;
                let mut created = Vec::with_capacity(reviews.len());
                for r in reviews {
                    let review: AccessReview = sqlx::query_as(
                        "INSERT INTO access_reviews (campaign_id, record_id, items, lease_holders, status, created_at, escalated_at)
                         VALUES ($1, $2, $3, $4, 'OPEN', $5, $6) RETURNING *",
                    )
                    .bind(campaign.id)
                    .bind(r.record_id)
                    .bind(Json(&r.items))
                    .bind(Json(&r.lease_holders))
                    .bind(c.at)
                    .bind(if r.escalated { Some(c.at) } else { None })
                    .fetch_one(&mut *tx)
                    .await?;
                    created.push(review);
                }
                let mut audit = audit.clone();
                if let Value::Object(detail) = &mut audit.detail {
                    detail.insert("campaign_id".into(), Value::from(campaign.id));
                }
                Self::append_audit_tx(&mut tx, &audit).await?;
                self.commit_write(tx).await?;
                Ok(Some((campaign, created)))
            }

            async fn review_campaign(&self, id: i64) -> StoreResult<Option<ReviewCampaign>> {
                Ok(sqlx::query_as("SELECT * FROM review_campaigns WHERE id = $1")
                    .bind(id)
                    .fetch_optional(&self.pool)
                    .await?)
            }

            async fn review_campaigns(&self) -> StoreResult<Vec<ReviewCampaign>> {
                Ok(sqlx::query_as("SELECT * FROM review_campaigns ORDER BY id DESC")
                    .fetch_all(&self.pool)
                    .await?)
            }

            async fn access_review(&self, id: i64) -> StoreResult<Option<AccessReview>> {
                Ok(sqlx::query_as("SELECT * FROM access_reviews WHERE id = $1")
                    .bind(id)
                    .fetch_optional(&self.pool)
                    .await?)
            }

            async fn reviews_in_campaign(&self, campaign_id: i64) -> StoreResult<Vec<AccessReview>> {
                Ok(sqlx::query_as("SELECT * FROM access_reviews WHERE campaign_id = $1 ORDER BY id")
                    .bind(campaign_id)
                    .fetch_all(&self.pool)
                    .await?)
            }

            async fn open_reviews(&self) -> StoreResult<Vec<AccessReview>> {
                Ok(sqlx::query_as("SELECT * FROM access_reviews WHERE status = 'OPEN' ORDER BY created_at, id")
                    .fetch_all(&self.pool)
                    .await?)
            }

            async fn review_decisions(&self, review_id: i64) -> StoreResult<Vec<ReviewDecision>> {
                Ok(sqlx::query_as("SELECT * FROM review_decisions WHERE review_id = $1 ORDER BY id")
                    .bind(review_id)
                    .fetch_all(&self.pool)
                    .await?)
            }

            async fn decisions_in_campaign(&self, campaign_id: i64) -> StoreResult<Vec<ReviewDecision>> {
                Ok(sqlx::query_as(
                    "SELECT d.* FROM review_decisions d JOIN access_reviews r ON r.id = d.review_id
                     WHERE r.campaign_id = $1 ORDER BY d.id",
                )
                .bind(campaign_id)
                .fetch_all(&self.pool)
                .await?)
            }

            async fn record_review_decisions(
                &self,
                review_id: i64,
                decisions: &[NewReviewDecision],
                items_total: i64,
                at: Timestamp,
            ) -> StoreResult<ReviewWrite> {
                let mut tx = self.begin_write().await?;
                // A no-op update: it locks the review row (Postgres) while we check it is open.
                let open: Option<i64> = sqlx::query_scalar(
                    "UPDATE access_reviews SET status = status WHERE id = $1 AND (status = 'OPEN') IS TRUE RETURNING id",
                )
                .bind(review_id)
                .fetch_optional(&mut *tx)
                .await?;
                if open.is_none() {
                    return Err(StoreError::Conflict(format!("review {review_id} is not open")));
                }
                let mut write = ReviewWrite::default();
                for d in decisions {
                    // A break-glass use is reviewed once, in whichever review: the partial unique
                    // index refuses a second one, so check first rather than fail the batch.
                    let taken: Option<i64> = sqlx::query_scalar(
                        "SELECT id FROM review_decisions
                         WHERE item_kind = $2 AND item_id = $3 AND (review_id = $1 OR item_kind = 'BREAK_GLASS')",
                    )
                    .bind(review_id)
                    .bind(&d.item_kind)
                    .bind(d.item_id)
                    .fetch_optional(&mut *tx)
                    .await?;
                    if taken.is_some() {
                        continue;
                    }
                    sqlx::query(
                        "INSERT INTO review_decisions
                            (review_id, item_kind, item_id, decision, decided_by, decided_by_name, decided_at)
                         VALUES ($1, $2, $3, $4, $5, $6, $7)",
                    )
                    .bind(review_id)
                    .bind(&d.item_kind)
                    .bind(d.item_id)
                    .bind(&d.decision)
                    .bind(d.decided_by)
                    .bind(&d.decided_by_name)
                    .bind(at)
                    .execute(&mut *tx)
                    .await?;
                    Self::append_audit_tx(&mut tx, &d.audit).await?;
                    write.recorded.push((d.item_kind.clone(), d.item_id));
                    if let Some((authority_id, reason, audit)) = &d.revoke {
                        let revoked: Option<i64> = sqlx::query_scalar(
                            "UPDATE governed_resource_authorities
                             SET revoked_at = $2, revoked_by = $3, revoked_reason = $4
                             WHERE id = $1 AND (revoked_at IS NULL) IS TRUE RETURNING id",
                        )
                        .bind(authority_id)
                        .bind(at)
                        .bind(&audit.actor)
                        .bind(reason)
                        .fetch_optional(&mut *tx)
                        .await?;
                        if revoked.is_some() {
                            Self::append_audit_tx(&mut tx, audit).await?;
                            write.revoked.push(*authority_id);
                        }
                    }
                }
                let decided: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM review_decisions WHERE review_id = $1")
                    .bind(review_id)
                    .fetch_one(&mut *tx)
                    .await?;
                if decided >= items_total {
                    let closed = sqlx::query("UPDATE access_reviews SET status = 'CLOSED', closed_at = $2 WHERE id = $1 AND (status = 'OPEN') IS TRUE")
                        .bind(review_id)
                        .bind(at)
                        .execute(&mut *tx)
                        .await?
                        .rows_affected()
                        == 1;
                    if let (true, Some(last)) = (closed, decisions.last()) {
                        let mut audit = NewAuditEvent::new(last.audit.actor.clone(), "ACCESS_REVIEW_COMPLETED", at)
                            .detail(serde_json::json!({ "review_id": review_id, "rows": items_total }));
                        audit.record_id = last.audit.record_id;
                        Self::append_audit_tx(&mut tx, &audit).await?;
                        write.closed = true;
                    }
                }
                self.commit_write(tx).await?;
                Ok(write)
            }

            async fn mark_review_chased(&self, review_id: i64, escalate: bool, audit: &NewAuditEvent) -> StoreResult<bool> {
                let sql = if escalate {
                    "UPDATE access_reviews SET escalated_at = $2 WHERE id = $1 AND (status = 'OPEN' AND escalated_at IS NULL) IS TRUE RETURNING id"
                } else {
                    "UPDATE access_reviews SET reminded_at = $2 WHERE id = $1 AND (status = 'OPEN' AND reminded_at IS NULL) IS TRUE RETURNING id"
                };
                let mut tx = self.begin_write().await?;
                let marked: Option<i64> = sqlx::query_scalar(sql)
                    .bind(review_id)
                    .bind(audit.at)
                    .fetch_optional(&mut *tx)
                    .await?;
                if marked.is_none() {
                    return Ok(false);
                }
                Self::append_audit_tx(&mut tx, audit).await?;
                self.commit_write(tx).await?;
                Ok(true)
            }

            async fn break_glass_awaiting_review(&self) -> StoreResult<Vec<Request>> {
                Ok(sqlx::query_as(
                    "SELECT * FROM requests r
                     WHERE r.break_glass AND r.review_required
                       AND NOT EXISTS (SELECT 1 FROM review_decisions d
                                       WHERE d.item_kind = 'BREAK_GLASS' AND d.item_id = r.id)
                     ORDER BY r.id",
                )
                .fetch_all(&self.pool)
                .await?)
            }

            async fn leases_between(&self, from: Timestamp, to: Timestamp) -> StoreResult<Vec<Request>> {
                Ok(sqlx::query_as(
                    "SELECT * FROM requests
                     WHERE lease_started_at IS NOT NULL AND lease_started_at < $2
                       AND (ended_at IS NULL OR ended_at >= $1)
                     ORDER BY id",
                )
                .bind(from)
                .bind(to)
                .fetch_all(&self.pool)
                .await?)
            }

            async fn governed_resources(&self) -> StoreResult<Vec<GovernedResource>> {
                Ok(sqlx::query_as("SELECT * FROM governed_resources ORDER BY id")
                    .fetch_all(&self.pool)
                    .await?)
            }

            async fn record_review_card(
                &self,
                review_id: i64,
                recipient_user_id: i64,
                conversation_id: &str,
                activity_id: &str,
                at: Timestamp,
            ) -> StoreResult<()> {
                sqlx::query(
                    "INSERT INTO review_cards (review_id, recipient_user_id, conversation_id, activity_id, created_at)
                     VALUES ($1, $2, $3, $4, $5) ON CONFLICT (conversation_id, activity_id) DO NOTHING",
                )
                .bind(review_id)
                .bind(recipient_user_id)
                .bind(conversation_id)
                .bind(activity_id)
                .bind(at)
                .execute(&mut *self.writer().await?)
                .await?;
                Ok(())
            }

            async fn review_cards(&self, review_id: i64) -> StoreResult<Vec<ReviewCard>> {
                Ok(sqlx::query_as("SELECT * FROM review_cards WHERE review_id = $1 ORDER BY id")
                    .bind(review_id)
                    .fetch_all(&self.pool)
                    .await?)
            }
        }
    };
}
pub(in crate::store) use impl_review_store;
