//! `ReportStore` in SQL, for both databases: expanded by `impl_store!` (see `super`) inside its
//! `generated` module, whose imports it uses. Each read joins `requests` on the window's filter
//! (`$1`–`$4`, the same text in every statement), so a report costs one query per table.

/// The requests a [`ReportWindow`](crate::store::ReportWindow) covers, as `r`, on `$1`–`$4`.
macro_rules! in_window {
    () => {
        "r.created_at >= $1 AND r.created_at < $2
         AND ($3 IS NULL OR r.record_id = $3) AND ($4 IS NULL OR r.requester_id = $4)"
    };
}

macro_rules! impl_report_store {
    ($store:ident, $db:ty) => {
        impl $store {
            /// Rows by id, `IN` lists of at most `ID_LIST_ROWS` ids each.
            async fn rows_by_ids<R>(&self, table: &'static str, ids: &[i64]) -> StoreResult<Vec<R>>
            where
                R: for<'r> sqlx::FromRow<'r, <$db as sqlx::Database>::Row> + Send + Unpin,
            {
                let mut ids = ids.to_vec();
                ids.sort_unstable();
                ids.dedup();
                let mut out = Vec::new();
                for chunk in ids.chunks(Self::ID_LIST_ROWS) {
                    let sql = format!(
                        "SELECT * FROM {table} WHERE id IN ({}) ORDER BY id",
                        $crate::store::sql::list_placeholders(chunk.len(), 1)
                    );
                    // Only a table name of ours and numbered placeholders are formatted in.
                    let mut q = sqlx::query_as::<_, R>(sqlx::AssertSqlSafe(sql));
                    for id in chunk {
                        q = q.bind(*id);
                    }
                    out.extend(q.fetch_all(&self.pool).await?);
                }
                Ok(out)
            }
        }

        #[async_trait]
        impl ReportStore for $store {
            async fn report_requests(&self, w: &ReportWindow) -> StoreResult<Vec<Request>> {
                Ok(sqlx::query_as(concat!(
                    "SELECT r.* FROM requests r WHERE ",
                    $crate::store::sql::reports::in_window!(),
                    " ORDER BY r.created_at, r.id"
                ))
                .bind(w.from)
                .bind(w.to)
                .bind(w.record_id)
                .bind(w.requester_id)
                .fetch_all(&self.pool)
                .await?)
            }

            async fn report_approvals(&self, w: &ReportWindow) -> StoreResult<Vec<Approval>> {
                Ok(sqlx::query_as(concat!(
                    "SELECT a.* FROM request_approvals a JOIN requests r ON r.id = a.request_id WHERE ",
                    $crate::store::sql::reports::in_window!(),
                    " ORDER BY a.request_id, a.decided_at, a.id"
                ))
                .bind(w.from)
                .bind(w.to)
                .bind(w.record_id)
                .bind(w.requester_id)
                .fetch_all(&self.pool)
                .await?)
            }

            async fn report_issuances(&self, w: &ReportWindow) -> StoreResult<Vec<IssuanceEvent>> {
                Ok(sqlx::query_as(concat!(
                    "SELECT i.* FROM issuance_events i JOIN requests r ON r.id = i.request_id WHERE ",
                    $crate::store::sql::reports::in_window!(),
                    " ORDER BY i.request_id, i.issued_at, i.id"
                ))
                .bind(w.from)
                .bind(w.to)
                .bind(w.record_id)
                .bind(w.requester_id)
                .fetch_all(&self.pool)
                .await?)
            }

            async fn report_audit_events(
                &self,
                w: &ReportWindow,
                actions: &[&str],
            ) -> StoreResult<Vec<AuditEvent>> {
                if actions.is_empty() {
                    return Ok(Vec::new());
                }
                self.link_before_read().await;
                let sql = format!(
                    "SELECT e.* FROM audit_events e JOIN requests r ON r.id = e.request_id WHERE {}
                     AND e.seq IS NOT NULL AND e.action IN ({}) ORDER BY e.seq",
                    $crate::store::sql::reports::in_window!(),
                    $crate::store::sql::list_placeholders(actions.len(), 5)
                );
                // Only numbered placeholders are formatted in: the actions are bound.
                let mut q = sqlx::query_as::<_, AuditEvent>(sqlx::AssertSqlSafe(sql))
                    .bind(w.from)
                    .bind(w.to)
                    .bind(w.record_id)
                    .bind(w.requester_id);
                for action in actions {
                    q = q.bind(*action);
                }
                Ok(q.fetch_all(&self.pool).await?)
            }

            async fn users_by_ids(&self, ids: &[i64]) -> StoreResult<Vec<User>> {
                self.rows_by_ids("users", ids).await
            }

            async fn records_by_ids(&self, ids: &[i64]) -> StoreResult<Vec<Record>> {
                self.rows_by_ids("records", ids).await
            }
        }
    };
}
pub(in crate::store) use impl_report_store;
pub(in crate::store) use in_window;
