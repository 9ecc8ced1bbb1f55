//! `GovernanceStore` in SQL, for both databases: expanded by `impl_store!` (see `super`) inside its
//! `generated` module, whose imports it uses.

macro_rules! impl_governance_store {
    ($store:ident, $db:ty) => {
        #[async_trait]
        impl GovernanceStore for $store {
            async fn put_policy(&self, p: &NewPolicy, audit: &NewAuditEvent) -> StoreResult<GovernancePolicy> {
                let hash = $crate::canonical::hash_canonical(&p.body);
                let mut tx = self.begin_write().await?;
                let current: Option<GovernancePolicy> =
                    sqlx::query_as("SELECT * FROM governance_policies WHERE name = $1 AND active")
                        .bind(&p.name)
                        .fetch_optional(&mut *tx)
                        .await?;
                if let Some(current) = current {
                    if current.content_hash == hash && current.kind == p.kind {
                        return Ok(current);
                    }
                }
                sqlx::query("UPDATE governance_policies SET active = FALSE WHERE name = $1 AND active")
                    .bind(&p.name)
                    .execute(&mut *tx)
                    .await?;
                let policy: GovernancePolicy = sqlx::query_as(
                    "INSERT INTO governance_policies (kind, name, body, content_hash, active, created_at, created_by)
                     VALUES ($1, $2, $3, $4, TRUE, $5, $6)
                     ON CONFLICT (name, content_hash) DO UPDATE SET active = TRUE
                     RETURNING *",
                )
                .bind(p.kind)
                .bind(&p.name)
                .bind(Json(&p.body))
                .bind(&hash)
                .bind(audit.at)
                .bind(&p.created_by)
                .fetch_one(&mut *tx)
                .await?;
                Self::append_audit_tx(&mut tx, audit).await?;
                self.commit_write(tx).await?;
                Ok(policy)
            }

            async fn active_policies(&self) -> StoreResult<Vec<GovernancePolicy>> {
                Ok(sqlx::query_as("SELECT * FROM governance_policies WHERE active ORDER BY name")
                    .fetch_all(&self.pool)
                    .await?)
            }

            async fn upsert_governed_resource(
                &self,
                record_id: i64,
                visibility: &str,
                access: &str,
                lease: &str,
                at: Timestamp,
            ) -> StoreResult<GovernedResource> {
                Ok(sqlx::query_as(
                    "INSERT INTO governed_resources (record_id, visibility_policy, access_policy, lease_policy, created_at)
                     VALUES ($1, $2, $3, $4, $5)
                     ON CONFLICT (record_id) DO UPDATE SET
                        visibility_policy = excluded.visibility_policy,
                        access_policy = excluded.access_policy,
                        lease_policy = excluded.lease_policy
                     RETURNING *",
                )
                .bind(record_id)
                .bind(visibility)
                .bind(access)
                .bind(lease)
                .bind(at)
                .fetch_one(&mut *self.writer().await?)
                .await?)
            }

            async fn governed_resource_for_record(&self, record_id: i64) -> StoreResult<Option<GovernedResource>> {
                Ok(sqlx::query_as("SELECT * FROM governed_resources WHERE record_id = $1")
                    .bind(record_id)
                    .fetch_optional(&self.pool)
                    .await?)
            }

            async fn governed_resource_by_id(&self, id: i64) -> StoreResult<Option<GovernedResource>> {
                Ok(sqlx::query_as("SELECT * FROM governed_resources WHERE id = $1")
                    .bind(id)
                    .fetch_optional(&self.pool)
                    .await?)
            }

            async fn add_authority(&self, a: &NewAuthority, audit: &NewAuditEvent) -> StoreResult<Authority> {
                let mut tx = self.begin_write().await?;
                let row = Self::insert_authority_tx(&mut tx, a, audit.at).await?;
                let mut audit = audit.clone();
                if let Value::Object(detail) = &mut audit.detail {
                    detail.insert("authority_id".into(), Value::from(row.id));
                }
                Self::append_audit_tx(&mut tx, &audit).await?;
                self.commit_write(tx).await?;
                Ok(row)
            }

            async fn authority_by_id(&self, id: i64) -> StoreResult<Option<Authority>> {
                Ok(sqlx::query_as("SELECT * FROM governed_resource_authorities WHERE id = $1")
                    .bind(id)
                    .fetch_optional(&self.pool)
                    .await?)
            }

            async fn set_approval_channel(
                &self,
                authority_id: i64,
                channel: Option<(&str, Option<&str>)>,
                by: &str,
                audit: &NewAuditEvent,
            ) -> StoreResult<Option<ApprovalChannel>> {
                let mut tx = self.begin_write().await?;
                sqlx::query(
                    "UPDATE approval_channels SET revoked_at = $2, revoked_by = $3
                     WHERE authority_id = $1 AND revoked_at IS NULL",
                )
                .bind(authority_id)
                .bind(audit.at)
                .bind(by)
                .execute(&mut *tx)
                .await?;
                let row = match channel {
                    Some((conversation_id, team_id)) => Some(
                        sqlx::query_as(
                            "INSERT INTO approval_channels (authority_id, conversation_id, team_id, set_by, set_at)
                             VALUES ($1, $2, $3, $4, $5) RETURNING *",
                        )
                        .bind(authority_id)
                        .bind(conversation_id)
                        .bind(team_id)
                        .bind(by)
                        .bind(audit.at)
                        .fetch_one(&mut *tx)
                        .await?,
                    ),
                    None => None,
                };
                Self::append_audit_tx(&mut tx, audit).await?;
                self.commit_write(tx).await?;
                Ok(row)
            }

            async fn approval_channel(&self, authority_id: i64) -> StoreResult<Option<ApprovalChannel>> {
                Ok(sqlx::query_as(
                    "SELECT * FROM approval_channels WHERE authority_id = $1 AND revoked_at IS NULL",
                )
                .bind(authority_id)
                .fetch_optional(&self.pool)
                .await?)
            }

            async fn revoke_authority(
                &self,
                id: i64,
                revoked_by: &str,
                reason: &str,
                audit: &NewAuditEvent,
            ) -> StoreResult<Authority> {
                let mut tx = self.begin_write().await?;
                let row: Option<Authority> = sqlx::query_as(
                    "UPDATE governed_resource_authorities
                     SET revoked_at = $2, revoked_by = $3, revoked_reason = $4
                     WHERE id = $1 AND (revoked_at IS NULL) IS TRUE RETURNING *",
                )
                .bind(id)
                .bind(audit.at)
                .bind(revoked_by)
                .bind(reason)
                .fetch_optional(&mut *tx)
                .await?;
                let Some(row) = row else {
                    Self::authority_row(&mut tx, id).await?;
                    return Err(StoreError::Conflict(format!("authority {id} is already revoked")));
                };
                Self::append_audit_tx(&mut tx, audit).await?;
                self.commit_write(tx).await?;
                Ok(row)
            }

            async fn supersede_authority(
                &self,
                old_id: i64,
                successor: &NewAuthority,
                reason: &str,
                audit: &NewAuditEvent,
            ) -> StoreResult<Authority> {
                let mut tx = self.begin_write().await?;
                let old = Self::authority_row(&mut tx, old_id).await?;
                if old.revoked_at.is_some() {
                    return Err(StoreError::Conflict(format!("authority {old_id} is already revoked")));
                }
                if old.resource_id != successor.resource_id {
                    return Err(StoreError::Invalid("a successor must govern the same resource".into()));
                }
                let new = Self::insert_authority_tx(&mut tx, successor, audit.at).await?;
                let updated = sqlx::query(
                    "UPDATE governed_resource_authorities
                     SET revoked_at = $2, revoked_by = $3, revoked_reason = $4, superseded_by = $5
                     WHERE id = $1 AND (revoked_at IS NULL) IS TRUE",
                )
                .bind(old_id)
                .bind(audit.at)
                .bind(&successor.created_by)
                .bind(reason)
                .bind(new.id)
                .execute(&mut *tx)
                .await?;
                if updated.rows_affected() != 1 {
                    return Err(StoreError::Conflict(format!("authority {old_id} is already revoked")));
                }
                Self::append_audit_tx(&mut tx, audit).await?;
                self.commit_write(tx).await?;
                Ok(new)
            }

            async fn active_authorities(&self, resource_id: i64, at: Timestamp) -> StoreResult<Vec<Authority>> {
                Ok(sqlx::query_as(
                    "SELECT * FROM governed_resource_authorities
                     WHERE resource_id = $1 AND revoked_at IS NULL
                       AND valid_from <= $2 AND (valid_to IS NULL OR valid_to > $2)
                     ORDER BY stage, id",
                )
                .bind(resource_id)
                .bind(at)
                .fetch_all(&self.pool)
                .await?)
            }

            async fn authority_history(&self, resource_id: i64) -> StoreResult<Vec<Authority>> {
                Ok(sqlx::query_as("SELECT * FROM governed_resource_authorities WHERE resource_id = $1 ORDER BY id")
                    .bind(resource_id)
                    .fetch_all(&self.pool)
                    .await?)
            }

            async fn authority_history_for_record(&self, record_id: i64) -> StoreResult<Vec<Authority>> {
                Ok(sqlx::query_as(
                    "SELECT a.* FROM governed_resource_authorities a
                     JOIN governed_resources r ON r.id = a.resource_id
                     WHERE r.record_id = $1 ORDER BY a.id",
                )
                .bind(record_id)
                .fetch_all(&self.pool)
                .await?)
            }
        }
    };
}
pub(in crate::store) use impl_governance_store;
