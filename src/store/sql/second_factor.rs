//! `SecondFactorStore` in SQL, for both databases: expanded by `impl_store!` (see `super`) inside its
//! `generated` module, whose imports it uses.

macro_rules! impl_second_factor_store {
    ($store:ident, $db:ty) => {
        #[async_trait]
        impl SecondFactorStore for $store {
            async fn phone_number(&self, user_id: i64) -> StoreResult<Option<PhoneNumberRow>> {
                Ok(sqlx::query_as("SELECT * FROM user_phone_numbers WHERE user_id = $1")
                    .bind(user_id)
                    .fetch_optional(&self.pool)
                    .await?)
            }

            async fn set_phone_number(
                &self,
                user_id: i64,
                phone_sealed: &[u8],
                source: PhoneSource,
                at: Timestamp,
                audit: &NewAuditEvent,
            ) -> StoreResult<PhoneNumberRow> {
                let mut tx = self.begin_write().await?;
                let row: PhoneNumberRow = sqlx::query_as(
                    "INSERT INTO user_phone_numbers (user_id, phone_sealed, source, updated_at) VALUES ($1, $2, $3, $4)
                     ON CONFLICT (user_id) DO UPDATE SET
                        phone_sealed = excluded.phone_sealed, source = excluded.source, updated_at = excluded.updated_at
                     RETURNING *",
                )
                .bind(user_id)
                .bind(phone_sealed)
                .bind(source)
                .bind(at)
                .fetch_one(&mut *tx)
                .await?;
                Self::append_audit_tx(&mut tx, audit).await?;
                self.commit_write(tx).await?;
                Ok(row)
            }

            async fn totp_enrollment(&self, user_id: i64) -> StoreResult<Option<TotpEnrollmentRow>> {
                Ok(sqlx::query_as("SELECT * FROM totp_enrollments WHERE user_id = $1")
                    .bind(user_id)
                    .fetch_optional(&self.pool)
                    .await?)
            }

            async fn start_totp_enrollment(
                &self,
                user_id: i64,
                secret_sealed: &[u8],
                at: Timestamp,
                audit: &NewAuditEvent,
            ) -> StoreResult<TotpEnrollmentRow> {
                let mut tx = self.begin_write().await?;
                let row: Option<TotpEnrollmentRow> = sqlx::query_as(
                    "INSERT INTO totp_enrollments (user_id, secret_sealed, created_at) VALUES ($1, $2, $3)
                     ON CONFLICT (user_id) DO UPDATE SET
                        secret_sealed = excluded.secret_sealed, created_at = excluded.created_at,
                        last_accepted_step = NULL
                     WHERE totp_enrollments.confirmed_at IS NULL
                     RETURNING *",
                )
                .bind(user_id)
                .bind(secret_sealed)
                .bind(at)
                .fetch_optional(&mut *tx)
                .await?;
                let Some(row) = row else {
                    return Err(StoreError::Conflict("an authenticator is already confirmed".into()));
                };
                Self::append_audit_tx(&mut tx, audit).await?;
                self.commit_write(tx).await?;
                Ok(row)
            }

            async fn confirm_totp_enrollment(
                &self,
                user_id: i64,
                secret_sealed: &[u8],
                step: i64,
                at: Timestamp,
                audit: &NewAuditEvent,
            ) -> StoreResult<TotpEnrollmentRow> {
                let mut tx = self.begin_write().await?;
                let row: Option<TotpEnrollmentRow> = sqlx::query_as(
                    "UPDATE totp_enrollments SET confirmed_at = $3, last_accepted_step = $4
                     WHERE user_id = $1 AND secret_sealed = $2 AND confirmed_at IS NULL
                     RETURNING *",
                )
                .bind(user_id)
                .bind(secret_sealed)
                .bind(at)
                .bind(step)
                .fetch_optional(&mut *tx)
                .await?;
                let Some(row) = row else {
                    return Err(StoreError::Conflict("the enrollment was confirmed or replaced meanwhile".into()));
                };
                Self::append_audit_tx(&mut tx, audit).await?;
                self.commit_write(tx).await?;
                Ok(row)
            }

            async fn delete_totp_enrollment(&self, user_id: i64, audit: &NewAuditEvent) -> StoreResult<bool> {
                let mut tx = self.begin_write().await?;
                let deleted = sqlx::query("DELETE FROM totp_enrollments WHERE user_id = $1")
                    .bind(user_id)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                if deleted == 0 {
                    return Ok(false);
                }
                Self::append_audit_tx(&mut tx, audit).await?;
                self.commit_write(tx).await?;
                Ok(true)
            }

            async fn create_challenge(&self, c: &NewChallenge, audit: &NewAuditEvent) -> StoreResult<OtpChallenge> {
                let mut tx = self.begin_write().await?;
                let row: OtpChallenge = sqlx::query_as(
                    "INSERT INTO otp_challenges (id, request_id, user_id, channel, code_hash, attempts, max_attempts,
                                                 created_at, expires_at, last_sent_at, send_count, token_hash)
                     VALUES ($1, $2, $3, $4, $5, 0, $6, $7, $8, $9, $10, $11) RETURNING *",
                )
                .bind(c.id)
                .bind(c.request_id)
                .bind(c.user_id)
                .bind(c.channel)
                .bind(&c.code_hash)
                .bind(c.max_attempts)
                .bind(c.created_at)
                .bind(c.expires_at)
                .bind(c.last_sent_at)
                .bind(c.send_count)
                .bind(&c.token_hash)
                .fetch_one(&mut *tx)
                .await?;
                Self::append_audit_tx(&mut tx, audit).await?;
                self.commit_write(tx).await?;
                Ok(row)
            }

            async fn challenge_by_id(&self, id: uuid::Uuid) -> StoreResult<Option<OtpChallenge>> {
                Ok(sqlx::query_as("SELECT * FROM otp_challenges WHERE id = $1")
                    .bind(id)
                    .fetch_optional(&self.pool)
                    .await?)
            }

            async fn last_code_sent_to(&self, user_id: i64) -> StoreResult<Option<Timestamp>> {
                Ok(sqlx::query_scalar(
                    "SELECT MAX(sent) FROM (
                        SELECT last_sent_at AS sent FROM otp_challenges WHERE user_id = $1 AND channel = 'SMS'
                        UNION ALL SELECT created_at AS sent FROM factor_proofs WHERE user_id = $1
                     ) AS texts",
                )
                .bind(user_id)
                .fetch_one(&self.pool)
                .await?)
            }

            async fn record_resend(
                &self,
                id: uuid::Uuid,
                code_hash: &str,
                sent_at: Timestamp,
                expires_at: Timestamp,
                send_count_seen: i32,
                audit: &NewAuditEvent,
            ) -> StoreResult<Option<OtpChallenge>> {
                let mut tx = self.begin_write().await?;
                let row: Option<OtpChallenge> = sqlx::query_as(
                    "UPDATE otp_challenges
                     SET code_hash = $2, last_sent_at = $3, expires_at = $4, send_count = send_count + 1
                     WHERE id = $1 AND send_count = $5 AND channel = 'SMS'
                       AND consumed_at IS NULL AND locked_at IS NULL AND expires_at > $3
                     RETURNING *",
                )
                .bind(id)
                .bind(code_hash)
                .bind(sent_at)
                .bind(expires_at)
                .bind(send_count_seen)
                .fetch_optional(&mut *tx)
                .await?;
                if row.is_some() {
                    Self::append_audit_tx(&mut tx, audit).await?;
                }
                self.commit_write(tx).await?;
                Ok(row)
            }

            async fn record_wrong_code(
                &self,
                id: uuid::Uuid,
                attempts_seen: i32,
                at: Timestamp,
                audit: &NewAuditEvent,
            ) -> StoreResult<Option<OtpChallenge>> {
                self.record_wrong_attempt("otp_challenges", id, attempts_seen, at, audit).await
            }

            async fn wrong_codes_since(&self, user_id: i64, since: Timestamp) -> StoreResult<Vec<Timestamp>> {
                Ok(sqlx::query_scalar(
                    "SELECT at FROM otp_failures WHERE user_id = $1 AND at > $2 ORDER BY at, id",
                )
                .bind(user_id)
                .bind(since)
                .fetch_all(&self.pool)
                .await?)
            }

            async fn claim_guess_cap_alert(
                &self,
                user_id: i64,
                at: Timestamp,
                not_before: Timestamp,
            ) -> StoreResult<bool> {
                let mut tx = self.begin_write().await?;
                let claimed: Option<i64> = sqlx::query_scalar(
                    "INSERT INTO otp_cap_alerts (user_id, alerted_at) VALUES ($1, $2)
                     ON CONFLICT (user_id) DO UPDATE SET alerted_at = excluded.alerted_at
                     WHERE otp_cap_alerts.alerted_at < $3
                     RETURNING user_id",
                )
                .bind(user_id)
                .bind(at)
                .bind(not_before)
                .fetch_optional(&mut *tx)
                .await?;
                self.commit_write(tx).await?;
                Ok(claimed.is_some())
            }

            async fn create_factor_proof(&self, p: &NewFactorProof, audit: &NewAuditEvent) -> StoreResult<FactorProof> {
                let mut tx = self.begin_write().await?;
                let row: FactorProof = sqlx::query_as(
                    "INSERT INTO factor_proofs (id, user_id, purpose, code_hash, attempts, max_attempts, created_at, expires_at)
                     VALUES ($1, $2, $3, $4, 0, $5, $6, $7) RETURNING *",
                )
                .bind(p.id)
                .bind(p.user_id)
                .bind(p.purpose)
                .bind(&p.code_hash)
                .bind(p.max_attempts)
                .bind(p.created_at)
                .bind(p.expires_at)
                .fetch_one(&mut *tx)
                .await?;
                Self::append_audit_tx(&mut tx, audit).await?;
                self.commit_write(tx).await?;
                Ok(row)
            }

            async fn factor_proof_by_id(&self, id: uuid::Uuid) -> StoreResult<Option<FactorProof>> {
                Ok(sqlx::query_as("SELECT * FROM factor_proofs WHERE id = $1")
                    .bind(id)
                    .fetch_optional(&self.pool)
                    .await?)
            }

            async fn record_factor_proof_wrong_code(
                &self,
                id: uuid::Uuid,
                attempts_seen: i32,
                at: Timestamp,
                audit: &NewAuditEvent,
            ) -> StoreResult<Option<FactorProof>> {
                self.record_wrong_attempt("factor_proofs", id, attempts_seen, at, audit).await
            }

            async fn consume_factor_proof(
                &self,
                id: uuid::Uuid,
                at: Timestamp,
                audit: &NewAuditEvent,
            ) -> StoreResult<Option<FactorProof>> {
                let mut tx = self.begin_write().await?;
                let row: Option<FactorProof> = sqlx::query_as(
                    "UPDATE factor_proofs SET consumed_at = $2
                     WHERE id = $1 AND consumed_at IS NULL AND locked_at IS NULL AND expires_at > $2
                     RETURNING *",
                )
                .bind(id)
                .bind(at)
                .fetch_optional(&mut *tx)
                .await?;
                if row.is_some() {
                    Self::append_audit_tx(&mut tx, audit).await?;
                }
                self.commit_write(tx).await?;
                Ok(row)
            }

            async fn create_totp_invitation(
                &self,
                user_id: i64,
                created_by: &str,
                at: Timestamp,
                expires_at: Timestamp,
                audit: &NewAuditEvent,
            ) -> StoreResult<TotpInvitation> {
                let mut tx = self.begin_write().await?;
                let row: TotpInvitation = sqlx::query_as(
                    "INSERT INTO totp_invitations (user_id, created_by, created_at, expires_at, used_at)
                     VALUES ($1, $2, $3, $4, NULL)
                     ON CONFLICT (user_id) DO UPDATE SET
                        created_by = excluded.created_by, created_at = excluded.created_at,
                        expires_at = excluded.expires_at, used_at = NULL
                     RETURNING *",
                )
                .bind(user_id)
                .bind(created_by)
                .bind(at)
                .bind(expires_at)
                .fetch_one(&mut *tx)
                .await?;
                Self::append_audit_tx(&mut tx, audit).await?;
                self.commit_write(tx).await?;
                Ok(row)
            }

            async fn totp_invitation(&self, user_id: i64) -> StoreResult<Option<TotpInvitation>> {
                Ok(sqlx::query_as("SELECT * FROM totp_invitations WHERE user_id = $1")
                    .bind(user_id)
                    .fetch_optional(&self.pool)
                    .await?)
            }

            async fn use_totp_invitation(&self, user_id: i64, at: Timestamp, audit: &NewAuditEvent) -> StoreResult<bool> {
                let mut tx = self.begin_write().await?;
                let used = sqlx::query(
                    "UPDATE totp_invitations SET used_at = $2
                     WHERE user_id = $1 AND used_at IS NULL AND expires_at > $2",
                )
                .bind(user_id)
                .bind(at)
                .execute(&mut *tx)
                .await?
                .rows_affected();
                if used == 0 {
                    return Ok(false);
                }
                Self::append_audit_tx(&mut tx, audit).await?;
                self.commit_write(tx).await?;
                Ok(true)
            }

            async fn replace_totp_enrollment(
                &self,
                user_id: i64,
                secret_sealed: &[u8],
                at: Timestamp,
                audit: &NewAuditEvent,
            ) -> StoreResult<TotpEnrollmentRow> {
                let mut tx = self.begin_write().await?;
                let row: TotpEnrollmentRow = sqlx::query_as(
                    "INSERT INTO totp_enrollments (user_id, secret_sealed, created_at) VALUES ($1, $2, $3)
                     ON CONFLICT (user_id) DO UPDATE SET
                        secret_sealed = excluded.secret_sealed, created_at = excluded.created_at,
                        confirmed_at = NULL, last_accepted_step = NULL
                     RETURNING *",
                )
                .bind(user_id)
                .bind(secret_sealed)
                .bind(at)
                .fetch_one(&mut *tx)
                .await?;
                Self::append_audit_tx(&mut tx, audit).await?;
                self.commit_write(tx).await?;
                Ok(row)
            }

            async fn consume_challenge(
                &self,
                id: uuid::Uuid,
                at: Timestamp,
                totp_step: Option<i64>,
                audit: &NewAuditEvent,
            ) -> StoreResult<ConsumeOutcome> {
                let mut tx = self.begin_write().await?;
                let row: Option<OtpChallenge> = sqlx::query_as(
                    "UPDATE otp_challenges SET consumed_at = $2
                     WHERE id = $1 AND consumed_at IS NULL AND locked_at IS NULL AND expires_at > $2
                     RETURNING *",
                )
                .bind(id)
                .bind(at)
                .fetch_optional(&mut *tx)
                .await?;
                let Some(row) = row else {
                    return Ok(ConsumeOutcome::NotLive);
                };
                if let Some(step) = totp_step {
                    let moved = sqlx::query(
                        "UPDATE totp_enrollments SET last_accepted_step = $2
                         WHERE user_id = $1 AND confirmed_at IS NOT NULL
                           AND (last_accepted_step IS NULL OR last_accepted_step < $2)",
                    )
                    .bind(row.user_id)
                    .bind(step)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                    if moved != 1 {
                        // Dropping the transaction rolls the consumption back.
                        return Ok(ConsumeOutcome::StepReplayed);
                    }
                }
                Self::append_audit_tx(&mut tx, audit).await?;
                self.commit_write(tx).await?;
                Ok(ConsumeOutcome::Consumed(row))
            }

            async fn record_sms_credential_fault(
                &self,
                provider: &str,
                detail: &str,
                at: Timestamp,
            ) -> StoreResult<bool> {
                let mut tx = self.begin_write().await?;
                let first: Option<String> = sqlx::query_scalar(
                    "INSERT INTO sms_credential_faults (provider, detail, first_seen_at, last_seen_at)
                     VALUES ($1, $2, $3, $3)
                     ON CONFLICT (provider) DO NOTHING
                     RETURNING provider",
                )
                .bind(provider)
                .bind(detail)
                .bind(at)
                .fetch_optional(&mut *tx)
                .await?;
                if first.is_none() {
                    sqlx::query(
                        "UPDATE sms_credential_faults SET detail = $2, last_seen_at = $3 WHERE provider = $1",
                    )
                    .bind(provider)
                    .bind(detail)
                    .bind(at)
                    .execute(&mut *tx)
                    .await?;
                }
                self.commit_write(tx).await?;
                Ok(first.is_some())
            }

            async fn clear_sms_credential_fault(&self, provider: &str) -> StoreResult<bool> {
                let cleared = sqlx::query("DELETE FROM sms_credential_faults WHERE provider = $1")
                    .bind(provider)
                    .execute(&mut *self.writer().await?)
                    .await?;
                Ok(cleared.rows_affected() > 0)
            }

            async fn sms_credential_faults(&self) -> StoreResult<Vec<SmsCredentialFault>> {
                Ok(sqlx::query_as("SELECT * FROM sms_credential_faults ORDER BY provider")
                    .fetch_all(&self.pool)
                    .await?)
            }
        }
    };
}
pub(in crate::store) use impl_second_factor_store;
