//! `HealthStore` in SQL, for both databases: expanded by `impl_store!` (see `super`) inside its
//! `generated` module, whose imports it uses.

macro_rules! impl_health_store {
    ($store:ident, $db:ty) => {
        #[async_trait]
        impl HealthStore for $store {
            async fn ping(&self) -> StoreResult<()> {
                sqlx::query("SELECT 1").execute(&self.pool).await?;
                Ok(())
            }

            async fn migration_state(&self) -> StoreResult<MigrationState> {
                let expected: Vec<i64> = Self::MIGRATOR.iter().map(|m| m.version).collect();
                // Before the first migration the bookkeeping table doesn't exist: nothing applied.
                let applied: Vec<i64> = match sqlx::query_scalar(
                    "SELECT version FROM _sqlx_migrations WHERE success ORDER BY version",
                )
                .fetch_all(&self.pool)
                .await
                {
                    Ok(v) => v,
                    Err(sqlx::Error::Database(_)) => Vec::new(),
                    Err(e) => return Err(e.into()),
                };
                Ok(MigrationState { applied, expected })
            }

            async fn telemetry_gauges(
                &self,
                now: Timestamp,
            ) -> StoreResult<$crate::metrics::Gauges> {
                const LIVE: &str = "status IN ('APPROVED', 'ISSUED', 'RENEWAL_PENDING')";
                let active_leases: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
                    "SELECT COUNT(*) FROM requests WHERE {LIVE}"
                )))
                .fetch_one(&self.pool)
                .await?;
                // The oldest end among live leases already past it: how far the expiry job lags.
                let overdue: Option<Timestamp> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
                    "SELECT lease_expires_at FROM requests
                     WHERE {LIVE} AND lease_expires_at IS NOT NULL AND lease_expires_at <= $1
                     ORDER BY lease_expires_at ASC LIMIT 1"
                )))
                .bind(now)
                .fetch_optional(&self.pool)
                .await?;
                let shares_outstanding: i64 = sqlx::query_scalar(
                    "SELECT COUNT(*) FROM issuance_events WHERE revoked_at IS NULL",
                )
                .fetch_one(&self.pool)
                .await?;
                let by_status: Vec<(String, i64)> =
                    sqlx::query_as("SELECT status, COUNT(*) FROM requests GROUP BY status")
                        .fetch_all(&self.pool)
                        .await?;
                let chain: i64 =
                    sqlx::query_scalar("SELECT seq FROM audit_chain_head WHERE id = 1")
                        .fetch_optional(&self.pool)
                        .await?
                        .unwrap_or(0);
                let checkpoint: Option<Timestamp> = sqlx::query_scalar(
                    "SELECT signed_at FROM audit_checkpoints ORDER BY seq DESC LIMIT 1",
                )
                .fetch_optional(&self.pool)
                .await?;
                let seconds = |earlier: Timestamp| now.since(earlier).as_seconds_f64().max(0.0);
                let requests_by_status = RequestStatus::ALL
                    .iter()
                    .map(|status| {
                        let n = by_status
                            .iter()
                            .find(|(s, _)| s == status.as_str())
                            .map_or(0, |(_, n)| *n);
                        (status.as_str().to_string(), n.max(0) as u64)
                    })
                    .collect();
                Ok($crate::metrics::Gauges {
                    active_leases: active_leases.max(0) as u64,
                    expiry_lag_secs: overdue.map_or(0.0, seconds),
                    shares_outstanding: shares_outstanding.max(0) as u64,
                    requests_by_status,
                    audit_chain_length: chain.max(0) as u64,
                    since_checkpoint_secs: checkpoint.map(seconds),
                })
            }

            async fn migrate(&self) -> StoreResult<()> {
                let mut writer = self.writer().await?;
                Self::MIGRATOR
                    .run_direct(None, &mut *writer, false)
                    .await
                    .map_err(|e| match e {
                        sqlx::migrate::MigrateError::Execute(e) => StoreError::from(e),
                        other => StoreError::Invalid(format!("migrations: {other}")),
                    })
            }
        }
    };
}
pub(in crate::store) use impl_health_store;
