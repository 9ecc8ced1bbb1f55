//! `AuditStore` in SQL, for both databases: expanded by `impl_store!` (see `super`) inside its
//! `generated` module, whose imports it uses.

macro_rules! impl_audit_store {
    ($store:ident, $db:ty) => {
        #[async_trait]
        impl AuditStore for $store {
            async fn append_audit(&self, event: &NewAuditEvent) -> StoreResult<()> {
                let mut tx = self.begin_write().await?;
                Self::append_audit_tx(&mut tx, event).await?;
                self.commit_write(tx).await?;
                Ok(())
            }

            async fn append_audit_batch(&self, events: &[NewAuditEvent]) -> StoreResult<()> {
                let mut tx = self.begin_write().await?;
                Self::append_audit_batch_tx(&mut tx, events).await?;
                self.commit_write(tx).await?;
                Ok(())
            }

            async fn link_pending(&self) -> StoreResult<u64> {
                self.link_committed().await
            }

            async fn unlinked_events(&self) -> StoreResult<UnlinkedEvents> {
                let (count, oldest_at): (i64, Option<Timestamp>) =
                    sqlx::query_as("SELECT COUNT(*), MIN(created_at) FROM audit_events WHERE seq IS NULL")
                        .fetch_one(&self.pool)
                        .await?;
                Ok(UnlinkedEvents { count: count.max(0) as u64, oldest_at })
            }

            fn link_wakeup(&self) -> Option<std::sync::Arc<tokio::sync::Notify>> {
                $store::link_wakeup(self)
            }

            async fn audit_events_after(&self, after: i64, limit: i64) -> StoreResult<Vec<AuditEvent>> {
                self.link_before_read().await;
                Ok(sqlx::query_as("SELECT * FROM audit_events WHERE seq > $1 ORDER BY seq LIMIT $2")
                    .bind(after)
                    .bind(limit)
                    .fetch_all(&self.pool)
                    .await?)
            }

            async fn audit_events_for_request(&self, request_id: i64) -> StoreResult<Vec<AuditEvent>> {
                self.link_before_read().await;
                Ok(sqlx::query_as("SELECT * FROM audit_events WHERE request_id = $1 AND seq IS NOT NULL ORDER BY seq")
                    .bind(request_id)
                    .fetch_all(&self.pool)
                    .await?)
            }

            async fn audit_head(&self) -> StoreResult<(i64, String)> {
                self.link_before_read().await;
                Ok(sqlx::query_as("SELECT seq, hash FROM audit_chain_head WHERE id = 1")
                    .fetch_one(&self.pool)
                    .await?)
            }

            async fn insert_checkpoint(&self, c: &AuditCheckpoint) -> StoreResult<bool> {
                let done = sqlx::query(
                    "INSERT INTO audit_checkpoints (seq, head_hash, signed_at, key_id, algorithm, signature)
                     VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (seq) DO NOTHING",
                )
                .bind(c.seq)
                .bind(&c.head_hash)
                .bind(c.signed_at)
                .bind(&c.key_id)
                .bind(&c.algorithm)
                .bind(&c.signature)
                .execute(&mut *self.writer().await?)
                .await?;
                Ok(done.rows_affected() == 1)
            }

            async fn checkpoints_from(&self, from: i64) -> StoreResult<Vec<AuditCheckpoint>> {
                Ok(sqlx::query_as("SELECT * FROM audit_checkpoints WHERE seq >= $1 ORDER BY seq")
                    .bind(from)
                    .fetch_all(&self.pool)
                    .await?)
            }

            async fn last_checkpoint(&self) -> StoreResult<Option<AuditCheckpoint>> {
                Ok(sqlx::query_as("SELECT * FROM audit_checkpoints ORDER BY seq DESC LIMIT 1")
                    .fetch_optional(&self.pool)
                    .await?)
            }

            async fn register_public_key(&self, k: &AuditPublicKey) -> StoreResult<()> {
                sqlx::query(
                    "INSERT INTO audit_public_keys (key_id, algorithm, public_key, created_at)
                     VALUES ($1, $2, $3, $4) ON CONFLICT (key_id) DO NOTHING",
                )
                .bind(&k.key_id)
                .bind(&k.algorithm)
                .bind(&k.public_key)
                .bind(k.created_at)
                .execute(&mut *self.writer().await?)
                .await?;
                Ok(())
            }

            async fn public_keys(&self) -> StoreResult<Vec<AuditPublicKey>> {
                Ok(sqlx::query_as("SELECT * FROM audit_public_keys ORDER BY created_at, key_id")
                    .fetch_all(&self.pool)
                    .await?)
            }

            async fn record_probe(&self, p: &NewProbeEvent) -> StoreResult<ProbeEvent> {
                Ok(sqlx::query_as(
                    "INSERT INTO governance_probe_events
                        (command_id, invoked_by, invoked_at, exit_code, fresh, degraded, duration_ms, detail)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING *",
                )
                .bind(&p.command_id)
                .bind(&p.invoked_by)
                .bind(p.invoked_at)
                .bind(p.exit_code)
                .bind(p.fresh)
                .bind(p.degraded)
                .bind(p.duration_ms)
                .bind(Json(&p.detail))
                .fetch_one(&mut *self.writer().await?)
                .await?)
            }

            async fn recent_probes(&self, limit: i64) -> StoreResult<Vec<ProbeEvent>> {
                Ok(sqlx::query_as("SELECT * FROM governance_probe_events ORDER BY id DESC LIMIT $1")
                    .bind(limit)
                    .fetch_all(&self.pool)
                    .await?)
            }

            async fn insert_trace(&self, trace: &NewTrace) -> StoreResult<DecisionTrace> {
                let mut tx = self.begin_write().await?;
                let row = Self::insert_trace_tx(&mut tx, trace, None).await?;
                self.commit_write(tx).await?;
                Ok(row)
            }

            async fn traces_for_request(&self, request_id: i64) -> StoreResult<Vec<DecisionTrace>> {
                Ok(sqlx::query_as("SELECT * FROM governance_decision_traces WHERE request_id = $1 ORDER BY id")
                    .bind(request_id)
                    .fetch_all(&self.pool)
                    .await?)
            }

            async fn trace_by_id(&self, id: i64) -> StoreResult<Option<DecisionTrace>> {
                Ok(sqlx::query_as("SELECT * FROM governance_decision_traces WHERE id = $1")
                    .bind(id)
                    .fetch_optional(&self.pool)
                    .await?)
            }

            async fn traces_after(&self, after: i64, limit: i64) -> StoreResult<Vec<DecisionTrace>> {
                Ok(sqlx::query_as("SELECT * FROM governance_decision_traces WHERE id > $1 ORDER BY id LIMIT $2")
                    .bind(after)
                    .bind(limit)
                    .fetch_all(&self.pool)
                    .await?)
            }
        }
    };
}
pub(in crate::store) use impl_audit_store;
