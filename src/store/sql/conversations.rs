//! `ConversationStore` in SQL, for both databases: expanded by `impl_store!` (see `super`) inside its
//! `generated` module, whose imports it uses.

macro_rules! impl_conversation_store {
    ($store:ident, $db:ty) => {
        #[async_trait]
        impl ConversationStore for $store {
            async fn upsert_conversation(&self, c: &ConversationRef) -> StoreResult<()> {
                sqlx::query(
                    "INSERT INTO conversation_references
                        (conversation_id, conversation_type, channel_id, service_url, tenant_id, bot_id, user_id,
                         aad_object_id, teams_user_id, team_id, reference, updated_at)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
                     ON CONFLICT (conversation_id) DO UPDATE SET
                        conversation_type = excluded.conversation_type,
                        channel_id = excluded.channel_id,
                        service_url = excluded.service_url,
                        tenant_id = excluded.tenant_id,
                        bot_id = excluded.bot_id,
                        user_id = COALESCE(excluded.user_id, conversation_references.user_id),
                        aad_object_id = COALESCE(excluded.aad_object_id, conversation_references.aad_object_id),
                        teams_user_id = COALESCE(excluded.teams_user_id, conversation_references.teams_user_id),
                        team_id = COALESCE(excluded.team_id, conversation_references.team_id),
                        reference = excluded.reference,
                        updated_at = excluded.updated_at",
                )
                .bind(&c.conversation_id)
                .bind(&c.conversation_type)
                .bind(&c.channel_id)
                .bind(&c.service_url)
                .bind(&c.tenant_id)
                .bind(&c.bot_id)
                .bind(c.user_id)
                .bind(&c.aad_object_id)
                .bind(&c.teams_user_id)
                .bind(&c.team_id)
                .bind(&c.reference)
                .bind(c.updated_at)
                .execute(&mut *self.writer().await?)
                .await?;
                Ok(())
            }

            async fn conversation(&self, id: &str) -> StoreResult<Option<ConversationRef>> {
                Ok(sqlx::query_as("SELECT * FROM conversation_references WHERE conversation_id = $1")
                    .bind(id)
                    .fetch_optional(&self.pool)
                    .await?)
            }

            async fn personal_conversation(&self, aad: &str) -> StoreResult<Option<ConversationRef>> {
                Ok(sqlx::query_as(
                    "SELECT * FROM conversation_references
                     WHERE aad_object_id = $1 AND conversation_type = 'personal'
                     ORDER BY updated_at DESC LIMIT 1",
                )
                .bind(aad)
                .fetch_optional(&self.pool)
                .await?)
            }

            async fn record_sent_card(&self, c: &NewSentCard) -> StoreResult<SentCard> {
                Ok(sqlx::query_as(
                    "INSERT INTO sent_cards (request_id, recipient_user_id, conversation_id, activity_id, card_kind,
                                             created_at, updated_at)
                     VALUES ($1, $2, $3, $4, $5, $6, $6)
                     ON CONFLICT (conversation_id, activity_id) DO UPDATE SET
                        card_kind = excluded.card_kind, updated_at = excluded.updated_at
                     RETURNING *",
                )
                .bind(c.request_id)
                .bind(c.recipient_user_id)
                .bind(&c.conversation_id)
                .bind(&c.activity_id)
                .bind(&c.card_kind)
                .bind(c.at)
                .fetch_one(&mut *self.writer().await?)
                .await?)
            }

            async fn sent_cards_for_request(&self, request_id: i64) -> StoreResult<Vec<SentCard>> {
                Ok(sqlx::query_as("SELECT * FROM sent_cards WHERE request_id = $1 ORDER BY id")
                    .bind(request_id)
                    .fetch_all(&self.pool)
                    .await?)
            }

            async fn record_channel_miss(
                &self,
                request_id: i64,
                approval_channel_id: i64,
                at: Timestamp,
            ) -> StoreResult<()> {
                sqlx::query(
                    "INSERT INTO approval_channel_misses (request_id, approval_channel_id, at) VALUES ($1, $2, $3)",
                )
                .bind(request_id)
                .bind(approval_channel_id)
                .bind(at)
                .execute(&mut *self.writer().await?)
                .await?;
                Ok(())
            }

            async fn channel_misses_for_request(&self, request_id: i64) -> StoreResult<i64> {
                let (n,): (i64,) =
                    sqlx::query_as("SELECT COUNT(*) FROM approval_channel_misses WHERE request_id = $1")
                        .bind(request_id)
                        .fetch_one(&self.pool)
                        .await?;
                Ok(n)
            }

            async fn record_waiting_notice(
                &self,
                user_id: i64,
                request_id: i64,
                kind: &str,
                why: &str,
                at: Timestamp,
            ) -> StoreResult<()> {
                sqlx::query(
                    "INSERT INTO notifications (user_id, request_id, kind, payload, status, attempts, last_error, created_at)
                     SELECT $1, $2, $3, $4, 'PENDING', 1, $5, $6
                     WHERE NOT EXISTS (
                        SELECT 1 FROM notifications
                        WHERE user_id = $1 AND request_id = $2 AND kind = $3 AND status = 'PENDING')",
                )
                .bind(user_id)
                .bind(request_id)
                .bind(kind)
                .bind(Json(Value::Object(Default::default())))
                .bind(why)
                .bind(at)
                .execute(&mut *self.writer().await?)
                .await?;
                Ok(())
            }

            async fn waiting_notices_for_user(&self, user_id: i64) -> StoreResult<Vec<WaitingNotice>> {
                Ok(sqlx::query_as(
                    "SELECT id, user_id, request_id, kind, status, last_error, created_at, sent_at
                     FROM notifications WHERE user_id = $1 AND status = 'PENDING' ORDER BY id",
                )
                .bind(user_id)
                .fetch_all(&self.pool)
                .await?)
            }

            async fn kept_notices_for_request(
                &self,
                request_id: i64,
            ) -> StoreResult<Vec<WaitingNotice>> {
                Ok(sqlx::query_as(
                    "SELECT id, user_id, request_id, kind, status, last_error, created_at, sent_at
                     FROM notifications WHERE request_id = $1 ORDER BY id",
                )
                .bind(request_id)
                .fetch_all(&self.pool)
                .await?)
            }

            async fn close_waiting_notice(
                &self,
                id: i64,
                delivered: bool,
                at: Timestamp,
            ) -> StoreResult<()> {
                sqlx::query(
                    "UPDATE notifications SET status = $2, sent_at = $3
                     WHERE id = $1 AND (status = 'PENDING') IS TRUE",
                )
                .bind(id)
                .bind(if delivered { "SENT" } else { "FAILED" })
                .bind(delivered.then_some(at))
                .execute(&mut *self.writer().await?)
                .await?;
                Ok(())
            }

            async fn write_turns(
                &self,
                claims: &[TurnClaim],
                dones: &[TurnKey],
                now: Timestamp,
            ) -> StoreResult<Vec<ActivityClaim>> {
                use std::collections::{HashMap, HashSet};
                type Key<'k> = (&'k str, &'k str);
                enum Row<'r> {
                    Claim(usize, &'r TurnClaim),
                    Done(&'r TurnKey),
                }
                // Rounds of rows, one statement per chunk of a round, each key at most once per
                // round: Postgres refuses an upsert that touches one row twice. Done marks are
                // placed first, so a redelivery claimed in the same batch as its turn's done mark
                // (a later round) finds the activity done.
                let mut rounds: Vec<(HashSet<Key<'_>>, Vec<Row<'_>>)> = Vec::new();
                let mut place = |key, row| {
                    match rounds.iter_mut().find(|(keys, _)| !keys.contains(&key)) {
                        Some((keys, rows)) => {
                            keys.insert(key);
                            rows.push(row);
                        }
                        None => rounds.push((HashSet::from([key]), vec![row])),
                    }
                };
                for d in dones {
                    place((d.conversation_id.as_str(), d.activity_id.as_str()), Row::Done(d));
                }
                // A claim listed twice goes to the database once; the later listing loses to the
                // first (answered below).
                let mut first: HashMap<Key<'_>, usize> = HashMap::with_capacity(claims.len());
                for (i, c) in claims.iter().enumerate() {
                    let key = (c.conversation_id.as_str(), c.activity_id.as_str());
                    if let std::collections::hash_map::Entry::Vacant(e) = first.entry(key) {
                        e.insert(i);
                        place(key, Row::Claim(i, c));
                    }
                }
                let mut claimed = vec![false; claims.len()];
                let mut conn = self.turn_connection($crate::store::held::TurnStatement::Write).await?;
                // Statement texts by chunk size, built once: this is the hottest write of a turn.
                static WRITE_SQL: [std::sync::OnceLock<String>; 6] = [const { std::sync::OnceLock::new() }; 6];
                for (_, rows) in &rounds {
                    let mut rest = &rows[..];
                    for n in $crate::store::sql::pow2_chunks(rows.len(), $crate::store::sql::TURN_ROWS) {
                        let (chunk, after) = rest.split_at(n);
                        rest = after;
                        // One upsert for claims and done marks alike, so two deliveries racing for
                        // an activity cannot both win. A claim inserts its row, or takes over one
                        // whose claim lapsed; a done mark changes the row its turn's token still
                        // holds (a row gone meanwhile — released by a takeover that failed — is
                        // written done: the turn did succeed). The rows changed come back.
                        // `processed_at` stays the claim's time on a done mark, so Postgres
                        // writes it in place (no new index entries).
                        let sql = $crate::store::sql::turn_statement(&WRITE_SQL, n, |n| format!(
                            "INSERT INTO processed_activities
                                (conversation_id, activity_id, processed_at, claimed_until, claim_token, state)
                             VALUES {}
                             ON CONFLICT (conversation_id, activity_id) DO UPDATE SET
                                processed_at = CASE WHEN excluded.state = 'DONE'
                                    THEN processed_activities.processed_at ELSE excluded.processed_at END,
                                claimed_until = excluded.claimed_until,
                                claim_token = CASE WHEN excluded.state = 'DONE'
                                    THEN NULL ELSE excluded.claim_token END,
                                state = excluded.state
                             WHERE processed_activities.state = 'IN_PROGRESS'
                               AND CASE WHEN excluded.state = 'DONE'
                                   THEN processed_activities.claim_token = excluded.claim_token
                                   ELSE processed_activities.claimed_until <= excluded.processed_at END
                             RETURNING conversation_id, activity_id",
                            (0..n)
                                .map(|r| format!("({})", $crate::store::sql::list_placeholders(6, 6 * r + 1)))
                                .collect::<Vec<_>>()
                                .join(", ")
                        ));
                        // Only numbered placeholders are formatted in: no outside text.
                        let mut q = sqlx::query_as::<_, (String, String)>(sqlx::AssertSqlSafe(sql));
                        for row in chunk {
                            q = match row {
                                Row::Claim(_, c) => q
                                    .bind(&c.conversation_id)
                                    .bind(&c.activity_id)
                                    .bind(c.now)
                                    .bind(Some(c.until))
                                    .bind(&c.token)
                                    .bind("IN_PROGRESS"),
                                Row::Done(d) => q
                                    .bind(&d.conversation_id)
                                    .bind(&d.activity_id)
                                    .bind(now)
                                    .bind(None::<Timestamp>)
                                    .bind(&d.token)
                                    .bind("DONE"),
                            };
                        }
                        let written: HashSet<(String, String)> =
                            q.fetch_all(&mut *conn).await?.into_iter().collect();
                        for row in chunk {
                            if let Row::Claim(i, c) = row
                                && written.contains(&(c.conversation_id.clone(), c.activity_id.clone()))
                            {
                                claimed[*i] = true;
                            }
                        }
                    }
                }
                let mut answers = Vec::with_capacity(claims.len());
                for (i, c) in claims.iter().enumerate() {
                    let key = (c.conversation_id.as_str(), c.activity_id.as_str());
                    let answer = if first[&key] != i {
                        // A second listing: the first one's answer, unless the first claimed it.
                        match answers[first[&key]] {
                            ActivityClaim::Claimed => ActivityClaim::InProgress,
                            earlier => earlier,
                        }
                    } else if claimed[i] {
                        ActivityClaim::Claimed
                    } else {
                        // Not ours (a redelivery): rare, so read one at a time.
                        let state: Option<String> = sqlx::query_scalar(
                            "SELECT state FROM processed_activities WHERE conversation_id = $1 AND activity_id = $2",
                        )
                        .bind(&c.conversation_id)
                        .bind(&c.activity_id)
                        .fetch_optional(&mut *conn)
                        .await?;
                        // Gone between the two statements: the holder released it; ask for a retry.
                        match state.as_deref() {
                            Some("DONE") => ActivityClaim::Done,
                            _ => ActivityClaim::InProgress,
                        }
                    };
                    answers.push(answer);
                }
                conn.keep();
                Ok(answers)
            }

            async fn renew_activity_claim(
                &self,
                conversation_id: &str,
                activity_id: &str,
                token: &str,
                until: Timestamp,
            ) -> StoreResult<bool> {
                Ok(sqlx::query(
                    "UPDATE processed_activities SET claimed_until = $4
                     WHERE conversation_id = $1 AND activity_id = $2 AND claim_token = $3
                       AND state = 'IN_PROGRESS'",
                )
                .bind(conversation_id)
                .bind(activity_id)
                .bind(token)
                .bind(until)
                .execute(&mut *self.writer().await?)
                .await?
                .rows_affected()
                    == 1)
            }

            async fn release_activity(
                &self,
                conversation_id: &str,
                activity_id: &str,
                token: &str,
            ) -> StoreResult<()> {
                sqlx::query(
                    "DELETE FROM processed_activities
                     WHERE conversation_id = $1 AND activity_id = $2 AND claim_token = $3
                       AND state = 'IN_PROGRESS'",
                )
                .bind(conversation_id)
                .bind(activity_id)
                .bind(token)
                .execute(&mut *self.writer().await?)
                .await?;
                Ok(())
            }

            async fn forget_processed_before(&self, before: Timestamp) -> StoreResult<u64> {
                Ok(sqlx::query("DELETE FROM processed_activities WHERE processed_at < $1")
                    .bind(before)
                    .execute(&mut *self.writer().await?)
                    .await?
                    .rows_affected())
            }
        }
    };
}
pub(in crate::store) use impl_conversation_store;
