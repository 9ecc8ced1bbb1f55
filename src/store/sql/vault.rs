//! `VaultStore` in SQL, for both databases: expanded by `impl_store!` (see `super`) inside its
//! `generated` module, whose imports it uses.

macro_rules! impl_vault_store {
    ($store:ident, $db:ty) => {
        #[async_trait]
        impl VaultStore for $store {
            async fn upsert_folder(&self, vault_uid: &str, name: &str, at: Timestamp) -> StoreResult<VaultFolder> {
                Ok(sqlx::query_as(
                    "INSERT INTO vault_folders (vault_uid, name, last_synced_at, created_at) VALUES ($1, $2, $3, $3)
                     ON CONFLICT (vault_uid) DO UPDATE SET name = excluded.name, last_synced_at = excluded.last_synced_at
                     RETURNING *",
                )
                .bind(vault_uid)
                .bind(name)
                .bind(at)
                .fetch_one(&mut *self.writer().await?)
                .await?)
            }

            async fn folder_by_id(&self, id: i64) -> StoreResult<Option<VaultFolder>> {
                Ok(sqlx::query_as("SELECT * FROM vault_folders WHERE id = $1").bind(id).fetch_optional(&self.pool).await?)
            }

            async fn list_folders(&self) -> StoreResult<Vec<VaultFolder>> {
                Ok(sqlx::query_as("SELECT * FROM vault_folders ORDER BY name, id").fetch_all(&self.pool).await?)
            }

            async fn replace_folder_permissions(
                &self,
                folder_id: i64,
                permissions: &[NewFolderPermission],
                at: Timestamp,
            ) -> StoreResult<Vec<VaultFolderPermission>> {
                let mut tx = self.begin_write().await?;
                let before: Vec<(VaultPrincipalType, String, FolderPermission)> = sqlx::query_as(
                    "SELECT principal_type, principal, permission FROM vault_folder_permissions WHERE folder_id = $1",
                )
                .bind(folder_id)
                .fetch_all(&mut *tx)
                .await?;
                let before: std::collections::BTreeSet<_> = before.into_iter().collect();
                let after: std::collections::BTreeSet<_> = permissions
                    .iter()
                    .map(|p| (p.principal_type, p.principal.clone(), p.permission))
                    .collect();
                if before != after {
                    // Whose permissions changed is not worth working out: a sync that changes an
                    // ACL is rare, and the next question re-resolves from the new ACL.
                    sqlx::query("DELETE FROM user_permission_cache").execute(&mut *tx).await?;
                }
                sqlx::query("DELETE FROM vault_folder_permissions WHERE folder_id = $1")
                    .bind(folder_id)
                    .execute(&mut *tx)
                    .await?;
                let mut rows = Vec::with_capacity(permissions.len());
                for p in permissions {
                    let row: VaultFolderPermission = sqlx::query_as(
                        "INSERT INTO vault_folder_permissions (folder_id, principal_type, principal, permission, synced_at)
                         VALUES ($1, $2, $3, $4, $5) RETURNING *",
                    )
                    .bind(folder_id)
                    .bind(p.principal_type)
                    .bind(&p.principal)
                    .bind(p.permission)
                    .bind(at)
                    .fetch_one(&mut *tx)
                    .await?;
                    rows.push(row);
                }
                self.commit_write(tx).await?;
                Ok(rows)
            }

            async fn folder_permissions(&self, folder_id: i64) -> StoreResult<Vec<VaultFolderPermission>> {
                Ok(sqlx::query_as("SELECT * FROM vault_folder_permissions WHERE folder_id = $1 ORDER BY id")
                    .bind(folder_id)
                    .fetch_all(&self.pool)
                    .await?)
            }

            async fn upsert_record(&self, r: &NewRecord, at: Timestamp) -> StoreResult<Record> {
                Ok(sqlx::query_as(
                    "INSERT INTO records (vault_uid, title, record_type, folder_id, revision, vault_owner, owner_user_id,
                                          sensitivity, sync_status, discovery_source, discovered_at, last_synced_at,
                                          created_at, updated_at)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'FRESH', $9, $10, $10, $10, $10)
                     ON CONFLICT (vault_uid) DO UPDATE SET
                        title = excluded.title,
                        record_type = excluded.record_type,
                        folder_id = excluded.folder_id,
                        revision = excluded.revision,
                        vault_owner = excluded.vault_owner,
                        owner_user_id = COALESCE(excluded.owner_user_id, records.owner_user_id),
                        sync_status = 'FRESH',
                        last_synced_at = excluded.last_synced_at,
                        updated_at = excluded.updated_at
                     RETURNING *",
                )
                .bind(&r.vault_uid)
                .bind(&r.title)
                .bind(&r.record_type)
                .bind(r.folder_id)
                .bind(r.revision)
                .bind(&r.vault_owner)
                .bind(r.owner_user_id)
                .bind(r.sensitivity)
                .bind(r.discovery_source)
                .bind(at)
                .fetch_one(&mut *self.writer().await?)
                .await?)
            }

            async fn record_by_id(&self, id: i64) -> StoreResult<Option<Record>> {
                Ok(sqlx::query_as("SELECT * FROM records WHERE id = $1").bind(id).fetch_optional(&self.pool).await?)
            }

            async fn record_by_uid(&self, uid: &str) -> StoreResult<Option<Record>> {
                Ok(sqlx::query_as("SELECT * FROM records WHERE vault_uid = $1")
                    .bind(uid)
                    .fetch_optional(&self.pool)
                    .await?)
            }

            async fn list_records(&self) -> StoreResult<Vec<Record>> {
                Ok(sqlx::query_as("SELECT * FROM records ORDER BY title, id").fetch_all(&self.pool).await?)
            }

            async fn records_by_title_prefix(&self, prefix: &str, limit: i64) -> StoreResult<Vec<Record>> {
                // LIKE wildcards in user text are matched literally: compare on substr instead.
                Ok(sqlx::query_as(
                    "SELECT * FROM records
                     WHERE substr(lower(title), 1, length($1)) = lower($1)
                     ORDER BY CASE WHEN lower(title) = lower($1) THEN 0 ELSE 1 END, title, id
                     LIMIT $2",
                )
                .bind(prefix)
                .bind(limit)
                .fetch_all(&self.pool)
                .await?)
            }

            async fn set_record_sensitivity(
                &self,
                id: i64,
                from: Sensitivity,
                to: Sensitivity,
                audit: &NewAuditEvent,
            ) -> StoreResult<Record> {
                let mut tx = self.begin_write().await?;
                let record: Option<Record> = sqlx::query_as(
                    "UPDATE records SET sensitivity = $3, updated_at = $4 WHERE id = $1 AND sensitivity = $2 RETURNING *",
                )
                .bind(id)
                .bind(from)
                .bind(to)
                .bind(audit.at)
                .fetch_optional(&mut *tx)
                .await?;
                let Some(record) = record else {
                    return Err(StoreError::Conflict("the record's sensitivity changed meanwhile".into()));
                };
                Self::append_audit_tx(&mut tx, audit).await?;
                self.commit_write(tx).await?;
                Ok(record)
            }

            async fn set_record_sync_status(&self, id: i64, status: SyncStatus, at: Timestamp) -> StoreResult<Record> {
                sqlx::query_as("UPDATE records SET sync_status = $2, updated_at = $3 WHERE id = $1 RETURNING *")
                    .bind(id)
                    .bind(status)
                    .bind(at)
                    .fetch_optional(&mut *self.writer().await?)
                    .await?
                    .ok_or(StoreError::NotFound("record"))
            }
        }
    };
}
pub(in crate::store) use impl_vault_store;
