//! PostgreSQL: the production database. Several instances may share it: conditional updates and
//! row locks keep their writes from colliding. Audit events are inserted unlinked and linked into
//! the chain afterwards by [`PgStore::link_pass`] (the audit sequencer, see ARCHITECTURE.md
//! "Audit sequencer"), so no write transaction waits for the chain head; a write committing
//! alone links them itself when no pass holds the linker lock ([`PgStore::commit_write`]).

use super::held::{PING_WHEN_IDLE, TurnConnection, TurnConnections, TurnStatement};
use super::models::NewAuditEvent;
use super::{DatabaseKind, Store, StoreError, StoreResult, sql, sql::impl_store};
use crate::domain::Timestamp;
use crate::policy::NewTrace;
use sqlx::postgres::PgPoolOptions;
use sqlx::types::Json;
use sqlx::{PgPool, Postgres, Transaction};
use std::sync::Arc;
use std::time::Duration;

/// A write transaction: any pooled connection (row locks order the writers).
type WriteTx = Transaction<'static, Postgres>;

#[derive(Clone, Debug)]
pub struct PgStore {
    pool: PgPool,
    /// Woken after a write commit that left events unlinked, so this instance's linker links
    /// them.
    link_wakeup: Arc<tokio::sync::Notify>,
    /// Write transactions of this instance committing right now (see [`PgStore::commit_write`]).
    committing: Arc<std::sync::atomic::AtomicUsize>,
    /// The turn's claim, sender read and done mark each on a connection of its own, never
    /// returned to the pool (`store::held`: no test of the connection after each statement).
    turn: Arc<TurnConnections<Postgres>>,
}

/// Counts a commit in [`PgStore::committing`] while it lasts, however it ends.
struct Committing<'a>(&'a std::sync::atomic::AtomicUsize);

impl<'a> Committing<'a> {
    /// Counts this commit in; true when no other commit of this instance is under way.
    fn enter(count: &'a std::sync::atomic::AtomicUsize) -> (Self, bool) {
        let before = count.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        (Committing(count), before == 0)
    }
}

impl Drop for Committing<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
    }
}

/// The events' insert (`$1`–`$7`, one array per column; see
/// [`PgStore::insert_traces_and_events_tx`]).
macro_rules! events_insert {
    () => {
        "INSERT INTO audit_events (event_id, actor, action, request_id, record_id, detail, created_at)
         SELECT event_id, actor, action, request_id, record_id, detail, created_at
         FROM UNNEST($1::uuid[], $2::text[], $3::text[], $4::bigint[], $5::bigint[], $6::jsonb[],
                     $7::timestamptz[])
              WITH ORDINALITY AS e(event_id, actor, action, request_id, record_id, detail, created_at, n)
         ORDER BY n"
    };
}
const EVENTS_INSERT: &str = events_insert!();
/// The traces' insert (`$8`–`$19`) as a data-modifying `WITH` before the events' insert: Postgres
/// runs it to completion whether or not the events' insert reads it.
const TRACES_AND_EVENTS_INSERT: &str = concat!(
    "WITH traces AS (
        INSERT INTO governance_decision_traces
            (request_id, stage, outcome, reasons, constraints, required_approvals, trace, inputs,
             inputs_hash, policy_version, code_version, created_at)
        SELECT request_id, stage, outcome, reasons, constraints, required_approvals, trace, inputs,
               inputs_hash, policy_version, code_version, created_at
        FROM UNNEST($8::bigint[], $9::text[], $10::text[], $11::jsonb[], $12::jsonb[], $13::jsonb[],
                    $14::jsonb[], $15::jsonb[], $16::text[], $17::text[], $18::text[], $19::timestamptz[])
             WITH ORDINALITY AS t(request_id, stage, outcome, reasons, constraints, required_approvals,
                                  trace, inputs, inputs_hash, policy_version, code_version, created_at, n)
        ORDER BY n
     ) ",
    events_insert!()
);

/// Events one link pass links at most: one short transaction each.
const LINK_BATCH: i64 = 500;
/// The most events a write links in its own transaction (its own, and what committed just
/// before it); more are left to the linker, so a large batch write stays as short as it was.
const LINK_IN_WRITE: i64 = 32;

/// An unlinked event as the linker reads it: its insertion order and its content, with the
/// chain head it links after (the same on every row of a pass).
#[derive(sqlx::FromRow)]
struct UnlinkedEvent {
    head_seq: i64,
    head_hash: String,
    link_order: i64,
    event_id: uuid::Uuid,
    actor: String,
    action: String,
    request_id: Option<i64>,
    record_id: Option<i64>,
    detail: Json<serde_json::Value>,
    created_at: Timestamp,
}

impl PgStore {
    /// The advisory lock key that makes link passes take turns across instances ("PKAUDLNK").
    pub const LINKER_LOCK: i64 = 0x504B_4155_444C_4E4B;

    /// One link pass's read: the first `$1` unlinked events in insertion order, each with the
    /// chain head. `audit_unlinked_events` (migration 0023) walks `audit_events_unlinked_idx`
    /// in order and stops after `$1` rows whatever the statistics say; the same query planned
    /// here, with statistics from before a burst, fetched every unlinked event and sorted them
    /// on each pass.
    pub const LINK_READ: &'static str = "SELECT h.seq AS head_seq, h.hash AS head_hash, e.*
         FROM audit_unlinked_events($1) e
         CROSS JOIN audit_chain_head h
         WHERE h.id = 1";

    /// One link pass's write: links the events listed ($1 their `link_order`s, $2–$4 their seq,
    /// prev hash and hash) that are still unlinked, and moves the head to ($5, $6) only if every
    /// one was; answers how many were linked (NULL: the head did not move). In a function
    /// (`audit_link_events`, migration 0023) planned to fetch the listed events by primary key
    /// whatever the statistics say: planned here, statistics from before a burst made it read
    /// every unlinked event on each pass to hash-join the 500 it links.
    pub const LINK_STATEMENT: &'static str = "SELECT audit_link_events($1, $2, $3, $4, $5, $6)";
    const MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");
    /// Locks a request row for a counted decision (SQLite: the writer lock already does).
    const LOCK_REQUEST: &'static str = "SELECT status FROM requests WHERE id = $1 FOR UPDATE";
    /// How a claim skips rows another instance is claiming right now.
    const SKIP_LOCKED: &'static str = " FOR UPDATE SKIP LOCKED";
    /// How a claim names the rows it picked: an array the update fetches by primary key. As
    /// `id IN (subquery)` Postgres planned a hash semi-join over a sequential scan of *every*
    /// request (a table that keeps all history) to claim 2,000 of them.
    const CLAIM_PICKED: (&'static str, &'static str) = ("id = ANY(ARRAY(", "))");
    /// Ids per `IN ($N, …)` list in the batch paths: a whole lease-expiry batch (2,000) in one
    /// statement, one round trip, well under the protocol's 65,535 parameters.
    const ID_LIST_ROWS: usize = 2000;

    /// Connects a pool; does not migrate.
    pub async fn connect(url: &str, max_connections: u32) -> StoreResult<Self> {
        let pool = PgPoolOptions::new()
            .max_connections(max_connections.max(1))
            .acquire_timeout(Duration::from_secs(5))
            // sqlx pings every pooled connection before handing it out: a round trip to the
            // server per statement. Only a connection that sat idle a while is pinged (that is
            // where server-side idle timeouts and dropped connections show up); one in steady
            // use goes straight to its statement, and if it broke meanwhile that statement fails
            // and the connection is closed.
            .test_before_acquire(false)
            .before_acquire(|conn, meta| {
                Box::pin(async move {
                    if meta.idle_for >= PING_WHEN_IDLE {
                        sqlx::Connection::ping(conn).await?;
                    }
                    Ok(true)
                })
            })
            .connect(url)
            .await?;
        Ok(PgStore::from_pool(pool))
    }

    pub fn from_pool(pool: PgPool) -> Self {
        PgStore {
            turn: Arc::new(TurnConnections::new(&pool)),
            pool,
            link_wakeup: Arc::new(tokio::sync::Notify::new()),
            committing: Arc::new(std::sync::atomic::AtomicUsize::new(0)),
        }
    }

    /// Where the turn's `statement` runs: its held connection.
    async fn turn_connection(
        &self,
        statement: TurnStatement,
    ) -> Result<TurnConnection<'_, Postgres>, sqlx::Error> {
        Ok(TurnConnection::Held(self.turn.of(statement).get().await?))
    }

    async fn begin_write(&self) -> Result<WriteTx, sqlx::Error> {
        self.pool.begin().await
    }

    /// Where an autocommit write statement runs: any connection (row locks order the writers).
    async fn writer(&self) -> Result<sqlx::pool::PoolConnection<Postgres>, sqlx::Error> {
        self.pool.acquire().await
    }

    /// Commits a write. A write committing alone (no other commit of this instance under way)
    /// links its events itself, in its own transaction, when no link pass holds the linker lock
    /// (`pg_try_advisory_xact_lock`: it never waits for one): they are in the chain when the
    /// write commits, with no linker transaction of their own. Otherwise — writes committing
    /// together, a pass under way, more than [`LINK_IN_WRITE`] events waiting — it commits and
    /// wakes this instance's linker, which links them after the commit.
    ///
    /// Why: a link pass is a transaction, and its commit an fsync. With one writer (one
    /// workflow worker commits five times in about ten milliseconds) linking after each commit
    /// put a linker fsync beside each of the writer's, and they queued for the disk; linking in
    /// the write costs three statements and no commit. With several writers committing at once
    /// the linker gathers their events into one pass, and a write does not take the lock then,
    /// so writers never wait for each other's commits (the sequencer's point).
    async fn commit_write(&self, mut tx: WriteTx) -> StoreResult<()> {
        let (_counted, alone) = Committing::enter(&self.committing);
        let linked_all = alone
            && Self::link_in(&mut tx, false, LINK_IN_WRITE)
                .await?
                .is_some();
        tx.commit().await?;
        if !linked_all {
            self.link_wakeup.notify_one();
        }
        Ok(())
    }

    fn link_wakeup(&self) -> Option<Arc<tokio::sync::Notify>> {
        Some(self.link_wakeup.clone())
    }

    /// Links every event committed before the call (passes until one finds fewer than a batch).
    async fn link_committed(&self) -> StoreResult<u64> {
        let mut linked = 0;
        loop {
            let n = self.link_pass().await?;
            linked += n;
            if n < LINK_BATCH as u64 {
                return Ok(linked);
            }
        }
    }

    /// One link pass, one short transaction: with the linker lock held (so passes take turns
    /// across instances), reads the committed unlinked events in insertion order (at most
    /// [`LINK_BATCH`]), gives each the next seq, the head's hash as its prev hash and the hash
    /// `audit_hash` computes (the formula inline linking uses, so every chain verifies alike),
    /// and moves the head. An event whose transaction commits after a later-inserted one was
    /// linked is simply linked in a later pass: the chain order is link order. The update only
    /// touches still-unlinked rows and must touch every row read, or nothing commits.
    pub async fn link_pass(&self) -> StoreResult<u64> {
        let mut tx = self.pool.begin().await?;
        match Self::link_in(&mut tx, true, LINK_BATCH).await? {
            Some(0) | None => {
                tx.rollback().await?;
                Ok(0)
            }
            Some(n) => {
                tx.commit().await?;
                Ok(n)
            }
        }
    }

    /// The body of a link pass, in `tx`: takes the linker lock (waiting for it when `wait`,
    /// else giving up at once), then links the unlinked events `tx` sees, at most `limit`.
    /// `None` (only when not `wait`): nothing was linked — the lock was held elsewhere, or more
    /// than `limit` events wait (a write must not take a backlog into its own transaction).
    /// `Some(n)`: n events linked — every one `tx` saw, or when `wait` the first `limit`. The
    /// caller commits (or rolls back, and nothing was linked).
    async fn link_in(
        tx: &mut sqlx::Transaction<'static, Postgres>,
        wait: bool,
        limit: i64,
    ) -> StoreResult<Option<u64>> {
        if wait {
            sqlx::query("SELECT pg_advisory_xact_lock($1)")
                .bind(Self::LINKER_LOCK)
                .execute(&mut **tx)
                .await?;
        } else {
            let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_xact_lock($1)")
                .bind(Self::LINKER_LOCK)
                .fetch_one(&mut **tx)
                .await?;
            if !locked {
                return Ok(None);
            }
        }
        // Read after the lock is granted: this statement's snapshot sees the previous pass. The
        // head comes with the events (one statement fewer); only a pass holding the linker lock
        // moves it, so it cannot change before this pass commits.
        let events: Vec<UnlinkedEvent> = sqlx::query_as(Self::LINK_READ)
            // One more than the limit: a write that sees more leaves them all to the linker.
            .bind(if wait { limit } else { limit + 1 })
            .fetch_all(&mut **tx)
            .await?;
        if events.len() as i64 > limit {
            return Ok(None);
        }
        let Some(first) = events.first() else {
            return Ok(Some(0));
        };
        let (mut seq, mut prev) = (first.head_seq, first.head_hash.clone());
        let mut orders = Vec::with_capacity(events.len());
        let mut seqs = Vec::with_capacity(events.len());
        let mut prev_hashes = Vec::with_capacity(events.len());
        let mut hashes = Vec::with_capacity(events.len());
        for e in events {
            seq += 1;
            let content = NewAuditEvent {
                actor: e.actor,
                action: e.action,
                request_id: e.request_id,
                record_id: e.record_id,
                detail: e.detail.0,
                at: e.created_at,
            };
            let hash = super::sql::audit_hash(&prev, seq, &e.event_id, &content);
            orders.push(e.link_order);
            seqs.push(seq);
            prev_hashes.push(std::mem::replace(&mut prev, hash.clone()));
            hashes.push(hash);
        }
        // The links and the head's move in one statement; the head moves only with every link.
        let updated: i64 = sqlx::query_scalar::<_, Option<i64>>(Self::LINK_STATEMENT)
            .bind(&orders)
            .bind(&seqs)
            .bind(&prev_hashes)
            .bind(&hashes)
            .bind(seq)
            .bind(&prev)
            .fetch_one(&mut **tx)
            .await?
            // NULL: the head did not move because fewer rows were linked than read.
            .unwrap_or(0);
        if updated != orders.len() as i64 {
            // Only a linker changes these rows, and linkers take turns: never commit half a pass.
            return Err(StoreError::Conflict(format!(
                "the audit link pass read {} unlinked events but could link only {updated}",
                orders.len()
            )));
        }
        Ok(Some(orders.len() as u64))
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Inserts traces (each of request `trace_request` when given) and events (unlinked, for the
    /// linker) inside `tx`, each in the order given, in one statement whatever their number: a
    /// change's trace and its event cost one round trip, not two. Each column is bound as one
    /// array and expanded by `UNNEST`, so the text never changes (one text for events alone,
    /// one with traces) and is parsed and planned once per connection; a `VALUES` list of bound
    /// rows was a new statement (and a fresh plan) per row count, and 1,750 parameters to bind
    /// per 250 rows. `WITH ORDINALITY … ORDER BY` keeps the insertion order (`link_order`, the
    /// chain order) the order given. Events alone do not bind the traces' twelve empty arrays.
    async fn insert_traces_and_events_tx(
        tx: &mut Transaction<'static, Postgres>,
        traces: &[NewTrace],
        trace_request: Option<i64>,
        events: &[NewAuditEvent],
    ) -> StoreResult<()> {
        if traces.is_empty() && events.is_empty() {
            return Ok(());
        }
        let ids: Vec<uuid::Uuid> = events.iter().map(|_| uuid::Uuid::new_v4()).collect();
        let actors: Vec<&str> = events.iter().map(|e| e.actor.as_str()).collect();
        let actions: Vec<&str> = events.iter().map(|e| e.action.as_str()).collect();
        let requests: Vec<Option<i64>> = events.iter().map(|e| e.request_id).collect();
        let records: Vec<Option<i64>> = events.iter().map(|e| e.record_id).collect();
        let details: Vec<Json<&serde_json::Value>> =
            events.iter().map(|e| Json(&e.detail)).collect();
        let ats: Vec<Timestamp> = events.iter().map(|e| e.at).collect();
        let json = |f: fn(&NewTrace) -> &serde_json::Value| -> Vec<Json<&serde_json::Value>> {
            traces.iter().map(|t| Json(f(t))).collect()
        };
        let trace_requests: Vec<Option<i64>> = traces
            .iter()
            .map(|t| trace_request.or(t.request_id))
            .collect();
        let stages: Vec<&str> = traces.iter().map(|t| t.stage.as_str()).collect();
        let outcomes: Vec<&str> = traces.iter().map(|t| t.outcome.as_str()).collect();
        let inputs_hashes: Vec<&str> = traces.iter().map(|t| t.inputs_hash.as_str()).collect();
        let policy_versions: Vec<&str> = traces.iter().map(|t| t.policy_version.as_str()).collect();
        let code_versions: Vec<&str> = traces.iter().map(|t| t.code_version.as_str()).collect();
        let trace_ats: Vec<Timestamp> = traces.iter().map(|t| t.at).collect();
        // Events alone (most appends) take the events' statement; with traces, both in one.
        let text = if traces.is_empty() {
            EVENTS_INSERT
        } else {
            TRACES_AND_EVENTS_INSERT
        };
        let mut q = sqlx::query(text)
            .bind(&ids)
            .bind(&actors)
            .bind(&actions)
            .bind(&requests)
            .bind(&records)
            .bind(&details)
            .bind(&ats);
        if !traces.is_empty() {
            q = q
                .bind(&trace_requests)
                .bind(&stages)
                .bind(&outcomes)
                .bind(json(|t| &t.reasons))
                .bind(json(|t| &t.constraints))
                .bind(json(|t| &t.required_approvals))
                .bind(json(|t| &t.trace))
                .bind(json(|t| &t.inputs))
                .bind(&inputs_hashes)
                .bind(&policy_versions)
                .bind(&code_versions)
                .bind(&trace_ats);
        }
        q.execute(&mut **tx).await?;
        sql::appended(events);
        Ok(())
    }
}

impl Store for PgStore {
    fn kind(&self) -> DatabaseKind {
        DatabaseKind::Postgres
    }
}

impl_store!(PgStore, sqlx::Postgres);
