//! `UserStore` in SQL, for both databases: expanded by `impl_store!` (see `super`) inside its
//! `generated` module, whose imports it uses.

macro_rules! impl_user_store {
    ($store:ident, $db:ty) => {
        #[async_trait]
        impl UserStore for $store {
            async fn upsert_user(&self, u: &NewUser, at: Timestamp) -> StoreResult<User> {
                Ok(sqlx::query_as(
                    "INSERT INTO users (aad_object_id, tenant_id, teams_user_id, upn, email, display_name, role,
                                        created_at, updated_at)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8)
                     ON CONFLICT (aad_object_id) DO UPDATE SET
                        tenant_id = COALESCE(excluded.tenant_id, users.tenant_id),
                        teams_user_id = COALESCE(excluded.teams_user_id, users.teams_user_id),
                        upn = COALESCE(excluded.upn, users.upn),
                        email = COALESCE(excluded.email, users.email),
                        display_name = excluded.display_name,
                        updated_at = excluded.updated_at
                     RETURNING *",
                )
                .bind(&u.aad_object_id)
                .bind(&u.tenant_id)
                .bind(&u.teams_user_id)
                .bind(&u.upn)
                .bind(&u.email)
                .bind(&u.display_name)
                .bind(u.initial_role)
                .bind(at)
                .fetch_one(&mut *self.writer().await?)
                .await?)
            }

            async fn user_by_id(&self, id: i64) -> StoreResult<Option<User>> {
                Ok(sqlx::query_as("SELECT * FROM users WHERE id = $1").bind(id).fetch_optional(&self.pool).await?)
            }

            async fn user_by_aad_object_id(&self, aad: &str) -> StoreResult<Option<User>> {
                Ok(sqlx::query_as("SELECT * FROM users WHERE aad_object_id = $1")
                    .bind(aad)
                    .fetch_optional(&self.pool)
                    .await?)
            }

            async fn turn_senders(&self, aads: &[String]) -> StoreResult<Vec<Option<TurnSender>>> {
                // Statement texts by chunk size, built once (see `pow2_chunks`).
                static SENDERS_SQL: [std::sync::OnceLock<String>; 6] = [const { std::sync::OnceLock::new() }; 6];
                let mut found: std::collections::HashMap<String, TurnSender> = std::collections::HashMap::new();
                let mut conn = self.turn_connection($crate::store::held::TurnStatement::Sender).await?;
                let mut rest = aads;
                for rows in $crate::store::sql::pow2_chunks(aads.len(), $crate::store::sql::TURN_ROWS) {
                    let (chunk, after) = rest.split_at(rows);
                    rest = after;
                    let sql = $crate::store::sql::turn_statement(&SENDERS_SQL, rows, |rows| format!(
                        "SELECT users.*,
                                EXISTS (SELECT 1 FROM notifications n
                                        WHERE n.user_id = users.id AND n.status = 'PENDING') AS notices_waiting
                         FROM users WHERE aad_object_id IN ({})",
                        $crate::store::sql::list_placeholders(rows, 1)
                    ));
                    let mut q = sqlx::query_as::<_, TurnSender>(sqlx::AssertSqlSafe(sql));
                    for aad in chunk {
                        q = q.bind(aad);
                    }
                    for sender in q.fetch_all(&mut *conn).await? {
                        found.insert(sender.user.aad_object_id.clone(), sender);
                    }
                }
                conn.keep();
                Ok(aads.iter().map(|aad| found.get(aad).cloned()).collect())
            }

            async fn user_by_email(&self, email: &str) -> StoreResult<Option<User>> {
                Ok(sqlx::query_as(
                    "SELECT * FROM users WHERE lower(email) = lower($1) OR lower(upn) = lower($1) ORDER BY id LIMIT 1",
                )
                .bind(email)
                .fetch_optional(&self.pool)
                .await?)
            }

            async fn users_with_role(&self, role: Role) -> StoreResult<Vec<User>> {
                Ok(sqlx::query_as("SELECT * FROM users WHERE role = $1 ORDER BY id")
                    .bind(role)
                    .fetch_all(&self.pool)
                    .await?)
            }

            async fn set_user_role(&self, user_id: i64, role: Role, audit: &NewAuditEvent) -> StoreResult<User> {
                let mut tx = self.begin_write().await?;
                let user: User = sqlx::query_as("UPDATE users SET role = $2, updated_at = $3 WHERE id = $1 RETURNING *")
                    .bind(user_id)
                    .bind(role)
                    .bind(audit.at)
                    .fetch_optional(&mut *tx)
                    .await?
                    .ok_or(StoreError::NotFound("user"))?;
                sqlx::query("DELETE FROM user_permission_cache WHERE user_id = $1")
                    .bind(user_id)
                    .execute(&mut *tx)
                    .await?;
                Self::append_audit_tx(&mut tx, audit).await?;
                self.commit_write(tx).await?;
                Ok(user)
            }

            async fn user_time_zone(&self, user_id: i64) -> StoreResult<Option<String>> {
                Ok(sqlx::query_scalar::<_, Option<String>>("SELECT time_zone FROM users WHERE id = $1")
                    .bind(user_id)
                    .fetch_optional(&self.pool)
                    .await?
                    .flatten())
            }

            async fn set_user_time_zone(&self, user_id: i64, zone: &str) -> StoreResult<()> {
                sqlx::query("UPDATE users SET time_zone = $2 WHERE id = $1")
                    .bind(user_id)
                    .bind(zone)
                    .execute(&mut *self.writer().await?)
                    .await?;
                Ok(())
            }

            async fn count_users(&self) -> StoreResult<i64> {
                Ok(sqlx::query_scalar("SELECT COUNT(*) FROM users").fetch_one(&self.pool).await?)
            }

            async fn set_user_addresses(
                &self,
                user_id: i64,
                addresses: &UserAddresses,
                audit: &NewAuditEvent,
                released: &(dyn Fn(i64, Vec<&'static str>) -> NewAuditEvent + Sync),
                at: Timestamp,
            ) -> StoreResult<User> {
                let mut tx = self.begin_write().await?;
                let before: Option<(Option<String>, Option<String>)> =
                    sqlx::query_as("SELECT email, upn FROM users WHERE id = $1")
                        .bind(user_id)
                        .fetch_optional(&mut *tx)
                        .await?;
                let (email, upn) = before.ok_or(StoreError::NotFound("user"))?;
                let changed = email != addresses.email || upn != addresses.upn;
                let user: User = sqlx::query_as(
                    "UPDATE users SET email = $2, upn = $3, directory_checked_at = $4,
                            directory_check_failed = $5, updated_at = $4
                     WHERE id = $1 RETURNING *",
                )
                .bind(user_id)
                .bind(&addresses.email)
                .bind(&addresses.upn)
                .bind(at)
                .bind(false)
                .fetch_one(&mut *tx)
                .await?;
                if changed {
                    // Permissions were matched against the old addresses.
                    sqlx::query("DELETE FROM user_permission_cache WHERE user_id = $1")
                        .bind(user_id)
                        .execute(&mut *tx)
                        .await?;
                    Self::append_audit_tx(&mut tx, audit).await?;
                }
                if let (Some(tenant), false) = (&user.tenant_id, addresses.email.is_none() && addresses.upn.is_none()) {
                    let holders: Vec<(i64, Option<String>, Option<String>)> = sqlx::query_as(
                        "SELECT id, email, upn FROM users
                         WHERE id <> $1 AND tenant_id = $2
                           AND (lower(email) IN (lower($3), lower($4)) OR lower(upn) IN (lower($3), lower($4)))
                         ORDER BY id",
                    )
                    .bind(user_id)
                    .bind(tenant)
                    .bind(&addresses.email)
                    .bind(&addresses.upn)
                    .fetch_all(&mut *tx)
                    .await?;
                    let taken = |a: &Option<String>| {
                        a.as_deref().is_some_and(|a| {
                            [&addresses.email, &addresses.upn]
                                .into_iter()
                                .flatten()
                                .any(|n| n.to_lowercase() == a.to_lowercase())
                        })
                    };
                    for (holder, email, upn) in holders {
                        let mut cleared = Vec::new();
                        if taken(&email) {
                            cleared.push("email");
                        }
                        if taken(&upn) {
                            cleared.push("upn");
                        }
                        if cleared.is_empty() {
                            continue;
                        }
                        sqlx::query(
                            "UPDATE users SET email = $2, upn = $3, directory_checked_at = NULL,
                                    directory_check_failed = $4, updated_at = $5
                             WHERE id = $1",
                        )
                        .bind(holder)
                        .bind(if taken(&email) { None } else { email })
                        .bind(if taken(&upn) { None } else { upn })
                        .bind(false)
                        .bind(at)
                        .execute(&mut *tx)
                        .await?;
                        sqlx::query("DELETE FROM user_permission_cache WHERE user_id = $1")
                            .bind(holder)
                            .execute(&mut *tx)
                            .await?;
                        Self::append_audit_tx(&mut tx, &released(holder, cleared)).await?;
                    }
                }
                self.commit_write(tx).await?;
                Ok(user)
            }

            async fn mark_directory_check_failed(&self, user_id: i64, at: Timestamp) -> StoreResult<User> {
                sqlx::query_as(
                    "UPDATE users SET directory_checked_at = $2, directory_check_failed = $3 WHERE id = $1 RETURNING *",
                )
                .bind(user_id)
                .bind(at)
                .bind(true)
                .fetch_optional(&mut *self.writer().await?)
                .await?
                .ok_or(StoreError::NotFound("user"))
            }
        }
    };
}
pub(in crate::store) use impl_user_store;
