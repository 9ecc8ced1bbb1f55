//! `LocalShareStore` in SQL, for both databases: expanded by `impl_store!` (see `super`) inside its
//! `generated` module, whose imports it uses.

macro_rules! impl_local_share_store {
    ($store:ident, $db:ty) => {
        #[async_trait]
        impl LocalShareStore for $store {
            async fn insert_local_share(&self, share: &LocalShareRow) -> StoreResult<()> {
                sqlx::query(
                    "INSERT INTO local_vault_shares (share_id, record_uid, name, created_at, expires_at, opened_at, removed_at)
                     VALUES ($1, $2, $3, $4, $5, $6, $7)",
                )
                .bind(&share.share_id)
                .bind(&share.record_uid)
                .bind(&share.name)
                .bind(share.created_at)
                .bind(share.expires_at)
                .bind(share.opened_at)
                .bind(share.removed_at)
                .execute(&mut *self.writer().await?)
                .await?;
                Ok(())
            }

            async fn local_share(&self, share_id: &str) -> StoreResult<Option<LocalShareRow>> {
                Ok(sqlx::query_as("SELECT * FROM local_vault_shares WHERE share_id = $1")
                    .bind(share_id)
                    .fetch_optional(&self.pool)
                    .await?)
            }

            async fn open_local_share(&self, share_id: &str, at: Timestamp) -> StoreResult<bool> {
                let opened = sqlx::query(
                    "UPDATE local_vault_shares SET opened_at = $2
                     WHERE share_id = $1 AND opened_at IS NULL AND removed_at IS NULL AND expires_at > $2",
                )
                .bind(share_id)
                .bind(at)
                .execute(&mut *self.writer().await?)
                .await?;
                Ok(opened.rows_affected() == 1)
            }

            async fn remove_local_share(&self, record_uid: &str, id_or_name: &str, at: Timestamp) -> StoreResult<u64> {
                Ok(sqlx::query(
                    "UPDATE local_vault_shares SET removed_at = $3
                     WHERE record_uid = $1 AND (share_id = $2 OR name = $2) AND removed_at IS NULL",
                )
                .bind(record_uid)
                .bind(id_or_name)
                .bind(at)
                .execute(&mut *self.writer().await?)
                .await?
                .rows_affected())
            }

            async fn local_shares(&self, record_uid: &str) -> StoreResult<Vec<LocalShareRow>> {
                Ok(sqlx::query_as(
                    "SELECT * FROM local_vault_shares WHERE record_uid = $1 AND removed_at IS NULL
                     ORDER BY created_at, share_id",
                )
                .bind(record_uid)
                .fetch_all(&self.pool)
                .await?)
            }
        }
    };
}
pub(in crate::store) use impl_local_share_store;
