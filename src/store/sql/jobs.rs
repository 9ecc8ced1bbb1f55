//! `JobStore` in SQL, for both databases: expanded by `impl_store!` (see `super`) inside its
//! `generated` module, whose imports it uses.

macro_rules! impl_job_store {
    ($store:ident, $db:ty) => {
        #[async_trait]
        impl JobStore for $store {
            async fn try_claim(
                &self,
                job: &str,
                key: &str,
                holder: &str,
                now: Timestamp,
                lease_until: Timestamp,
            ) -> StoreResult<bool> {
                let claimed: Option<String> = sqlx::query_scalar(
                    "INSERT INTO job_claims (job_name, claim_key, holder, claimed_at, lease_until)
                     VALUES ($1, $2, $3, $4, $5)
                     ON CONFLICT (job_name, claim_key) DO UPDATE SET
                        holder = excluded.holder, claimed_at = excluded.claimed_at, lease_until = excluded.lease_until
                     WHERE job_claims.completed_at IS NULL AND job_claims.lease_until <= excluded.claimed_at
                     RETURNING holder",
                )
                .bind(job)
                .bind(key)
                .bind(holder)
                .bind(now)
                .bind(lease_until)
                .fetch_optional(&mut *self.writer().await?)
                .await?;
                Ok(claimed.as_deref() == Some(holder))
            }

            async fn complete_claim(&self, job: &str, key: &str, holder: &str, at: Timestamp) -> StoreResult<bool> {
                Ok(sqlx::query(
                    "UPDATE job_claims SET completed_at = $4
                     WHERE job_name = $1 AND claim_key = $2 AND holder = $3 AND completed_at IS NULL",
                )
                .bind(job)
                .bind(key)
                .bind(holder)
                .bind(at)
                .execute(&mut *self.writer().await?)
                .await?
                .rows_affected()
                    == 1)
            }
        }
    };
}
pub(in crate::store) use impl_job_store;
