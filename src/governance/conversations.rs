//! What the bot keeps about whom it talks to and where, so it can answer once and write later:
//! each inbound activity claimed for one turn (redeliveries recognised), the people who write to
//! it (keyed by their Entra object id; a newcomer starts as a requester), the conversations'
//! addresses (for proactive messages), and the cards it sent about a request (updated in place
//! when the request changes), and the notices it could not deliver yet (kept until the person
//! first talks to it). The bot and the notifier record these facts here, never in the
//! store themselves (#16: edges never write the store).

use super::coalesce::Coalescer;
use crate::domain::{Clock, Role, Timestamp, Zone};
use crate::store::{
    ActivityClaim, ConversationRef, NewSentCard, NewUser, SentCard, Store, StoreResult, TurnClaim,
    TurnKey, TurnSender, User,
};
use std::sync::Arc;
use std::time::Duration;

/// A person as a Teams activity names them (the sender).
pub struct TeamsPerson<'a> {
    pub aad_object_id: &'a str,
    pub tenant_id: Option<&'a str>,
    /// Their Teams user id (`29:…`).
    pub teams_user_id: &'a str,
    pub display_name: Option<&'a str>,
}

/// The zone a person's Teams client last reported (#18.6), for showing them times; UTC when they
/// never reported one, or it cannot be read now (a time in UTC, named, is still true).
pub async fn zone_of(store: &dyn Store, user_id: i64) -> Zone {
    match store.user_time_zone(user_id).await {
        Ok(name) => name.as_deref().and_then(Zone::named),
        Err(error) => {
            tracing::warn!(user_id, %error, "time zone not read; times shown in UTC");
            None
        }
    }
    .unwrap_or_else(Zone::utc)
}

/// A failed batch written again item by item, so each caller gets its own answer.
async fn one_by_one<I: Clone, O, Fut>(items: &[I], write: impl Fn(I) -> Fut) -> Vec<StoreResult<O>>
where
    Fut: std::future::Future<Output = StoreResult<O>>,
{
    let mut answers = Vec::with_capacity(items.len());
    for item in items {
        answers.push(write(item.clone()).await);
    }
    answers
}

/// One turn's write: its claim when it starts, its done mark when it succeeded.
#[derive(Clone)]
enum TurnWrite {
    Claim(TurnClaim),
    Done(TurnKey),
}

pub struct Conversations {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    /// Concurrent turns' claims and done marks, written together (see `governance::coalesce`):
    /// one statement for the turns starting and the turns finishing at the same moment, so a
    /// turn's two writes cost a share of one write, not of two.
    turn_writes: Arc<Coalescer<TurnWrite, Option<ActivityClaim>>>,
    /// Concurrent turns' senders, read together (each read starts after its turn asked).
    senders: Arc<Coalescer<String, Option<TurnSender>>>,
}

/// Writes a batch of turns' claims and done marks: a claim is answered `Some`, a done mark `None`.
async fn write_turns(
    store: &dyn Store,
    writes: &[TurnWrite],
    now: Timestamp,
) -> StoreResult<Vec<Option<ActivityClaim>>> {
    let mut claims = Vec::new();
    let mut dones = Vec::new();
    for write in writes {
        match write {
            TurnWrite::Claim(claim) => claims.push(claim.clone()),
            TurnWrite::Done(key) => dones.push(key.clone()),
        }
    }
    let mut answers = store.write_turns(&claims, &dones, now).await?.into_iter();
    Ok(writes
        .iter()
        .map(|write| match write {
            TurnWrite::Claim(_) => answers.next(),
            TurnWrite::Done(_) => None,
        })
        .collect())
}

impl Conversations {
    pub fn new(store: Arc<dyn Store>, clock: Arc<dyn Clock>) -> Self {
        let turn_writes = {
            let store = store.clone();
            let clock = clock.clone();
            Coalescer::new(
                "turn claims and done marks",
                move |writes: Vec<TurnWrite>| {
                    let store = store.clone();
                    let now = clock.now();
                    async move {
                        match write_turns(store.as_ref(), &writes, now).await {
                            Ok(answers) => answers.into_iter().map(Ok).collect(),
                            Err(_) => {
                                one_by_one(&writes, |write| {
                                    let store = store.clone();
                                    async move {
                                        Ok(write_turns(store.as_ref(), &[write], now).await?[0])
                                    }
                                })
                                .await
                            }
                        }
                    }
                },
            )
        };
        let senders = {
            let store = store.clone();
            Coalescer::new("turn senders", move |aads: Vec<String>| {
                let store = store.clone();
                async move {
                    match store.turn_senders(&aads).await {
                        Ok(senders) => senders.into_iter().map(Ok).collect(),
                        Err(_) => {
                            one_by_one(&aads, |aad| {
                                let store = store.clone();
                                async move { store.turn_sender(&aad).await }
                            })
                            .await
                        }
                    }
                }
            })
        };
        Conversations {
            store,
            clock,
            turn_writes,
            senders,
        }
    }

    /// Claims an inbound activity for the turn holding `token`, for `lease` from now (see
    /// `ConversationStore::claim_activities`), in one write with the claims and done marks of
    /// other turns starting and finishing at the same moment.
    pub async fn claim_turn(
        &self,
        conversation_id: &str,
        activity_id: &str,
        token: &str,
        lease: Duration,
    ) -> StoreResult<ActivityClaim> {
        let now = self.clock.now();
        let answer = self
            .turn_writes
            .submit(TurnWrite::Claim(TurnClaim {
                conversation_id: conversation_id.to_string(),
                activity_id: activity_id.to_string(),
                token: token.to_string(),
                now,
                until: lease_end(now, lease),
            }))
            .await?;
        // Every claim is answered; were one not, the turn is told to come back (fail closed).
        Ok(answer.unwrap_or(ActivityClaim::InProgress))
    }

    /// What a turn needs about its sender (`UserStore::turn_sender`), read with the senders of
    /// other turns starting at the same moment.
    pub async fn turn_sender(&self, aad_object_id: &str) -> StoreResult<Option<TurnSender>> {
        self.senders.submit(aad_object_id.to_string()).await
    }

    /// Extends the turn's claim to `lease` from now; false when the turn holds it no longer.
    pub async fn renew_turn(
        &self,
        conversation_id: &str,
        activity_id: &str,
        token: &str,
        lease: Duration,
    ) -> StoreResult<bool> {
        let until = lease_end(self.clock.now(), lease);
        self.store
            .renew_activity_claim(conversation_id, activity_id, token, until)
            .await
    }

    /// The turn succeeded: redeliveries of its activity are answered as done. Not waited for:
    /// the mark rides with the next turn's claim (placed before it, so a redelivery claimed
    /// in that write finds the activity done), or is written within
    /// [`DEFER_WINDOW`](super::coalesce::DEFER_WINDOW), or at shutdown ([`flush`](Self::flush)).
    /// Until then a redelivery to another instance is told to retry (the claim holds); a crash
    /// before it leaves the claim to lapse, as a failed mark always did (see "Reliability
    /// decisions" in docs/ARCHITECTURE.md).
    pub fn finish_turn(&self, conversation_id: &str, activity_id: &str, token: &str) {
        self.turn_writes.defer(TurnWrite::Done(TurnKey {
            conversation_id: conversation_id.to_string(),
            activity_id: activity_id.to_string(),
            token: token.to_string(),
        }));
    }

    /// Writes the done marks not yet written (at shutdown, after the last turn answered).
    pub async fn flush(&self) {
        self.turn_writes.flush().await;
    }

    /// The turn failed: its claim is dropped, so a redelivery runs it again.
    pub async fn release_turn(
        &self,
        conversation_id: &str,
        activity_id: &str,
        token: &str,
    ) -> StoreResult<()> {
        self.store
            .release_activity(conversation_id, activity_id, token)
            .await
    }

    /// Keeps the sender's Teams profile; someone seen for the first time is a requester. A stored
    /// role is never changed here (role changes are audited use cases).
    pub async fn remember_person(
        &self,
        person: &TeamsPerson<'_>,
        at: Timestamp,
    ) -> StoreResult<User> {
        self.store
            .upsert_user(
                &NewUser {
                    aad_object_id: person.aad_object_id.to_string(),
                    tenant_id: person.tenant_id.map(String::from),
                    teams_user_id: Some(person.teams_user_id.to_string()),
                    upn: None,
                    email: None,
                    display_name: person.display_name.unwrap_or("Teams user").to_string(),
                    initial_role: Role::Requester,
                },
                at,
            )
            .await
    }

    /// Keeps the time zone the person's Teams client reported, the last one (#18.6). Not audited:
    /// it is how they read times, not who may do what.
    pub async fn remember_time_zone(&self, user_id: i64, zone: &Zone) -> StoreResult<()> {
        self.store.set_user_time_zone(user_id, zone.name()).await
    }

    /// Keeps a conversation's address (its service URL came with a verified activity, or from
    /// the configured Connector when the bot opened the chat itself).
    pub async fn remember_conversation(&self, reference: &ConversationRef) -> StoreResult<()> {
        self.store.upsert_conversation(reference).await
    }

    /// Records a card sent about a request, so later changes update it in place.
    pub async fn record_card(&self, card: &NewSentCard) -> StoreResult<SentCard> {
        self.store.record_sent_card(card).await
    }

    /// Records that `request_id`'s approval card could not be posted in its approval channel
    /// (the requester's status card says so; the members were asked in their 1:1 chats anyway).
    pub async fn keep_channel_miss(
        &self,
        request_id: i64,
        approval_channel_id: i64,
    ) -> StoreResult<()> {
        self.store
            .record_channel_miss(request_id, approval_channel_id, self.clock.now())
            .await
    }

    /// Records an access review card sent to `recipient_user_id`, so a decision updates it in
    /// place.
    pub async fn keep_review_card(
        &self,
        review_id: i64,
        recipient_user_id: i64,
        conversation_id: &str,
        activity_id: &str,
    ) -> StoreResult<()> {
        self.store
            .record_review_card(
                review_id,
                recipient_user_id,
                conversation_id,
                activity_id,
                self.clock.now(),
            )
            .await
    }

    /// Keeps a notice about `request_id` that `user_id` could not be sent (`why`: a short fixed
    /// code, never an error's text), until they first talk to the bot.
    pub async fn keep_waiting_notice(
        &self,
        user_id: i64,
        request_id: i64,
        kind: &str,
        why: &str,
    ) -> StoreResult<()> {
        self.store
            .record_waiting_notice(user_id, request_id, kind, why, self.clock.now())
            .await
    }

    /// Closes every notice waiting for `user_id`: delivered, or no longer applying.
    pub async fn close_waiting_notices(&self, user_id: i64, delivered: bool) -> StoreResult<()> {
        let now = self.clock.now();
        for notice in self.store.waiting_notices_for_user(user_id).await? {
            self.store
                .close_waiting_notice(notice.id, delivered, now)
                .await?;
        }
        Ok(())
    }
}

fn lease_end(now: Timestamp, lease: Duration) -> Timestamp {
    now.plus(time::Duration::seconds(
        i64::try_from(lease.as_secs()).unwrap_or(i64::MAX),
    ))
}
