//! `PermissionStore` in SQL, for both databases: expanded by `impl_store!` (see `super`) inside its
//! `generated` module, whose imports it uses.

macro_rules! impl_permission_store {
    ($store:ident, $db:ty) => {
        #[async_trait]
        impl PermissionStore for $store {
            async fn cached_permissions(&self, user_id: i64, now: Timestamp) -> StoreResult<Option<Value>> {
                let row: Option<Json<Value>> = sqlx::query_scalar(
                    "SELECT permissions FROM user_permission_cache WHERE user_id = $1 AND expires_at > $2",
                )
                .bind(user_id)
                .bind(now)
                .fetch_optional(&self.pool)
                .await?;
                Ok(row.map(|Json(v)| v))
            }

            async fn put_cached_permissions(
                &self,
                user_id: i64,
                permissions: &Value,
                resolved_at: Timestamp,
                expires_at: Timestamp,
            ) -> StoreResult<()> {
                sqlx::query(
                    "INSERT INTO user_permission_cache (user_id, permissions, resolved_at, expires_at)
                     VALUES ($1, $2, $3, $4)
                     ON CONFLICT (user_id) DO UPDATE SET
                        permissions = excluded.permissions,
                        resolved_at = excluded.resolved_at,
                        expires_at = excluded.expires_at",
                )
                .bind(user_id)
                .bind(Json(permissions))
                .bind(resolved_at)
                .bind(expires_at)
                .execute(&mut *self.writer().await?)
                .await?;
                Ok(())
            }

            async fn invalidate_permission_cache(&self) -> StoreResult<u64> {
                Ok(sqlx::query("DELETE FROM user_permission_cache").execute(&mut *self.writer().await?).await?.rows_affected())
            }
        }
    };
}
pub(in crate::store) use impl_permission_store;
