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

            async fn migrate(&self) -> StoreResult<()> {
                Self::MIGRATOR.run(&self.pool).await.map_err(|e| match e {
                    sqlx::migrate::MigrateError::Execute(e) => StoreError::from(e),
                    other => StoreError::Invalid(format!("migrations: {other}")),
                })
            }
        }
    };
}
pub(in crate::store) use impl_health_store;
