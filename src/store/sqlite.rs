//! SQLite: the embedded default. WAL so readers don't block the writer, foreign keys on, and
//! `BEGIN IMMEDIATE` for every write transaction so the write lock is taken up front (a deferred
//! transaction that upgrades later can deadlock).
//!
//! Every write of this process goes through one writer connection (`store::writer`): writers
//! queue for it, in order, and each is woken the moment the one before is done with it.
//! SQLite's own busy handler polls instead, sleeping in steps of up to 100 ms, so several writers
//! of one process taking turns on the file lock lost most of their time asleep. The busy timeout
//! stays for writers in other processes (the CLI, a second instance on the same file). Reads use
//! their own pool and, under WAL, never wait for the writer.

use super::held::{HeldConnection, TurnConnection, TurnStatement};
use super::models::NewAuditEvent;
use super::writer::{Writer, WriterConnection};
use super::{DatabaseKind, Store, StoreResult, sql, sql::impl_store};
use crate::policy::NewTrace;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::types::Json;
use sqlx::{Sqlite, SqlitePool};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// A write transaction: on the writer connection, begun with `BEGIN IMMEDIATE`.
type WriteTx = super::writer::WriteTx<Sqlite>;

#[derive(Clone, Debug)]
pub struct SqliteStore {
    /// Reads (and raw access for tests and tools).
    pool: SqlitePool,
    /// The one connection this process writes through: write transactions and autocommit writes.
    writer: Arc<Writer<Sqlite>>,
    /// The turn's sender read on a read connection of its own, never returned to the pool
    /// (`store::held`). The turn's claim and done mark are writes: they go through `writer`.
    turn_sender: Arc<HeldConnection<Sqlite>>,
}

impl SqliteStore {
    const MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");
    /// `BEGIN IMMEDIATE` already holds the database's single write lock.
    /// Locks a request row for a counted decision (SQLite: the writer lock already does).
    const LOCK_REQUEST: &'static str = "SELECT status FROM requests WHERE id = $1";
    /// How a claim skips rows another instance is claiming right now.
    const SKIP_LOCKED: &'static str = "";
    /// How a claim names the rows it picked (SQLite looks each one up by rowid).
    const CLAIM_PICKED: (&'static str, &'static str) = ("id IN (", ")");
    /// The chain head, read to link events as they are inserted: the single writer already
    /// serializes transactions (`BEGIN IMMEDIATE` holds the write lock), so holding the head
    /// until commit makes no one wait.
    const CHAIN_HEAD: &'static str = "SELECT seq, hash FROM audit_chain_head WHERE id = 1";
    /// Rows per multi-row INSERT in the batch paths. The parameters are anonymous `?`, bound in
    /// order without a lookup by name (with `$N`, SQLite searched a linear list per bind, so the
    /// rows were kept to 32); 12 columns × 500 rows stays far below SQLite's 32,766 parameters.
    const INSERT_ROWS: usize = 500;
    /// The most traces and events written in one query of several statements (a change writes
    /// one or two traces and one event; see [`Self::insert_traces_and_events_tx`]).
    const ONE_QUERY_ROWS: usize = 8;
    /// Ids per `IN ($N, …)` list in the batch paths. Those lists are numbered (they share the
    /// statement with other `$N` values), and SQLite's lookup by name makes binding one cost the
    /// square of its length: a few short lists beat one long one.
    const ID_LIST_ROWS: usize = 250;

    /// Opens (creating if needed) the database file; does not migrate.
    pub async fn open(path: &Path, max_connections: u32) -> StoreResult<Self> {
        configure_library();
        // Created (or tightened) 0600 before SQLite opens it: SQLite gives the WAL and shared-
        // memory files the database file's mode.
        if path.as_os_str() != ":memory:" {
            crate::private_fs::ensure_file(path).map_err(|e| {
                crate::store::StoreError::Invalid(format!("{}: {e}", path.display()))
            })?;
        }
        // Each connection to a plain ":memory:" is a database of its own; sqlx's own name for
        // it opens one shared in-memory database (shared cache), so the writer, the readers
        // and the held connection see the same one.
        let options = if path.as_os_str() == ":memory:" {
            "sqlite::memory:".parse::<SqliteConnectOptions>()?
        } else {
            SqliteConnectOptions::new().filename(path)
        };
        let options = options
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true)
            // A statement inside a transaction keeps an undo journal of the pages it changes (so
            // it alone can be rolled back): in memory, not in a temporary file written through
            // the kernel — a batch insert of 500 events wrote one.
            .pragma("temp_store", "memory");
        // No ping before each acquire: the connection is a local file handle with nothing on the
        // other end to hang up, and the ping is a round trip to the connection's worker thread.
        let pool = SqlitePoolOptions::new()
            .max_connections(max_connections.max(1))
            .acquire_timeout(Duration::from_secs(10))
            // sqlx pings a pooled connection before handing it out; for SQLite that is one more
            // round trip to the connection's worker thread per statement (two wake-ups), and
            // there is no server that could have gone away. A broken connection still fails its
            // statement and is closed.
            .test_before_acquire(false)
            .connect_with(options.clone())
            .await?;
        // The wait for the writer replaces the busy handler's: as long as it. Every write goes
        // through this one connection: a page cache of 16 MiB (the default is 2) keeps the
        // indexes a batch updates in memory rather than read back from the file. It fills only
        // as pages are used.
        let writer = Arc::new(Writer::new(
            options.pragma("cache_size", "-16384"),
            Duration::from_secs(10),
            "BEGIN IMMEDIATE",
        ));
        // Opened now, so a database that cannot be written fails here rather than on the
        // first write.
        drop(writer.lock().await?);
        let turn_sender = Arc::new(HeldConnection::new(pool.clone()));
        Ok(SqliteStore {
            pool,
            writer,
            turn_sender,
        })
    }

    async fn begin_write(&self) -> Result<WriteTx, sqlx::Error> {
        self.writer.begin().await
    }

    async fn commit_write(&self, tx: WriteTx) -> Result<(), sqlx::Error> {
        tx.commit().await
    }

    /// Nothing to wake: events are linked inline.
    fn link_wakeup(&self) -> Option<std::sync::Arc<tokio::sync::Notify>> {
        None
    }

    /// Nothing to link: events are linked inline.
    async fn link_committed(&self) -> StoreResult<u64> {
        Ok(0)
    }

    /// Where an autocommit write statement runs: the writer connection, behind the same queue as
    /// the write transactions. (Never called while this task holds a write transaction: it would
    /// wait for itself.)
    async fn writer(&self) -> Result<WriterConnection<Sqlite>, sqlx::Error> {
        self.writer.lock().await
    }

    /// Inserts traces (each of request `trace_request` when given) and appends events, linked
    /// inline, inside `tx`, each in the order given. The chain head is read once (the writer
    /// lock is already held) and each event's hash computed in order from it
    /// (`sql::audit_hash`, the formula Postgres' linker uses too). A change's few rows (at most [`Self::ONE_QUERY_ROWS`]) — its
    /// traces' insert, its events' insert and the head's move — go to SQLite's thread as one
    /// query of several statements, one hand-off; each statement binds the next of the anonymous
    /// `?` parameters, in order. They took one hand-off per statement, and every other writer
    /// waits for the writer lock meanwhile. A batch goes statement by statement,
    /// [`Self::INSERT_ROWS`] rows each: its statements are few for its rows, and a text per
    /// chunk size keeps the connection's statement cache to what the chunks need (one query
    /// text per batch size would prepare, and keep, a program of up to nine statements for
    /// every size a batch happens to have).
    async fn insert_traces_and_events_tx(
        tx: &mut WriteTx,
        traces: &[NewTrace],
        trace_request: Option<i64>,
        events: &[NewAuditEvent],
    ) -> StoreResult<()> {
        if traces.is_empty() && events.is_empty() {
            return Ok(());
        }
        let mut chained: Vec<(i64, uuid::Uuid, String, String)> = Vec::with_capacity(events.len());
        let mut head = None;
        if !events.is_empty() {
            let (head_seq, head_hash): (i64, String) = sqlx::query_as(Self::CHAIN_HEAD)
                .fetch_one(&mut **tx)
                .await?;
            let mut seq = head_seq;
            let mut prev = head_hash;
            for e in events {
                seq += 1;
                let event_id = uuid::Uuid::new_v4();
                let hash = sql::audit_hash(&prev, seq, &event_id, e);
                chained.push((
                    seq,
                    event_id,
                    std::mem::replace(&mut prev, hash.clone()),
                    hash,
                ));
            }
            head = Some((seq, prev));
        }
        if traces.len() + events.len() <= Self::ONE_QUERY_ROWS {
            let mut statements = Vec::with_capacity(3);
            if !traces.is_empty() {
                statements.push(traces_insert(traces.len()));
            }
            if !events.is_empty() {
                statements.push(events_insert(events.len()));
                statements.push(HEAD_MOVE.to_string());
            }
            let text = statements.join(";\n");
            // Only placeholders are formatted in: no outside text.
            let q = sqlx::query(sqlx::AssertSqlSafe(text));
            let q = bind_events(bind_traces(q, traces, trace_request), events, &chained);
            bind_head(q, head.as_ref()).execute(&mut **tx).await?;
        } else {
            let rows = Self::INSERT_ROWS;
            for chunk in traces.chunks(rows) {
                let q = sqlx::query(sqlx::AssertSqlSafe(traces_insert(chunk.len())));
                bind_traces(q, chunk, trace_request)
                    .execute(&mut **tx)
                    .await?;
            }
            for (chunk, chained) in events.chunks(rows).zip(chained.chunks(rows)) {
                let q = sqlx::query(sqlx::AssertSqlSafe(events_insert(chunk.len())));
                bind_events(q, chunk, chained).execute(&mut **tx).await?;
            }
            if head.is_some() {
                bind_head(sqlx::query(HEAD_MOVE), head.as_ref())
                    .execute(&mut **tx)
                    .await?;
            }
        }
        sql::appended(events);
        Ok(())
    }

    /// The read pool (raw access for tests and tools; writes made through it wait in SQLite's
    /// busy handler like another process's).
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// Closes the writer, the read pool and the held connection: every later read and write
    /// fails as Unavailable.
    pub async fn close(&self) {
        self.writer.close().await;
        self.pool.close().await;
        self.turn_sender.close().await;
    }

    /// Where the turn's `statement` runs: the sender read on its held read connection, the
    /// claims and done marks on the writer.
    async fn turn_connection(
        &self,
        statement: TurnStatement,
    ) -> Result<TurnConnection<'_, Sqlite>, sqlx::Error> {
        Ok(match statement {
            TurnStatement::Sender => TurnConnection::Held(self.turn_sender.get().await?),
            TurnStatement::Write => TurnConnection::Writer(self.writer.lock().await?),
        })
    }
}

/// Turns off SQLite's allocation statistics, once per process, before its first connection.
///
/// With them on (the library's default) every allocation SQLite makes — one per column of every
/// row sqlx reads — takes one process-wide mutex to update the counters. The writer and the read
/// connections each run on their own thread, so under load they queue on that lock and wake each
/// other through the kernel: in the lease-expiry profile, a third of the writer thread's time was
/// `sqlite3_value_dup` → `sqlite3Malloc`, much of it lock hand-offs. Passkey never reads those
/// statistics and sets no SQLite heap limit (the one feature that needs them).
fn configure_library() {
    static CONFIGURED: std::sync::Once = std::sync::Once::new();
    CONFIGURED.call_once(|| {
        // SAFETY: `sqlite3_config` may only run before SQLite initializes and while no other
        // thread is inside the library. Every connection of this process is opened by `open`
        // (above), which calls this first; `Once` makes later and concurrent callers wait until
        // it has returned. Should the library already be initialized anyway (a connection opened
        // some other way first), SQLite refuses with SQLITE_MISUSE and changes nothing: the
        // statistics stay on, which costs speed and nothing else.
        let rc = unsafe {
            libsqlite3_sys::sqlite3_config(
                libsqlite3_sys::SQLITE_CONFIG_MEMSTATUS,
                0 as std::ffi::c_int,
            )
        };
        if rc != libsqlite3_sys::SQLITE_OK {
            tracing::debug!(
                rc,
                "SQLite already initialized: its allocation statistics stay on"
            );
        }
    });
}

impl Store for SqliteStore {
    fn kind(&self) -> DatabaseKind {
        DatabaseKind::Sqlite
    }
}

impl_store!(SqliteStore, sqlx::Sqlite);

type SqliteQuery<'q> = sqlx::query::Query<'q, Sqlite, sqlx::sqlite::SqliteArguments>;

/// The chain head's move after inline-linked events: their last seq and hash.
const HEAD_MOVE: &str = "UPDATE audit_chain_head SET seq = ?, hash = ? WHERE id = 1";

/// The insert of `rows` traces, twelve anonymous `?` per row.
fn traces_insert(rows: usize) -> String {
    format!(
        "INSERT INTO governance_decision_traces
            (request_id, stage, outcome, reasons, constraints, required_approvals, trace, inputs,
             inputs_hash, policy_version, code_version, created_at)
         VALUES {}",
        sql::anonymous_values(rows, 12)
    )
}

/// The insert of `rows` linked events, ten anonymous `?` per row.
fn events_insert(rows: usize) -> String {
    format!(
        "INSERT INTO audit_events
            (seq, event_id, actor, action, request_id, record_id, detail, created_at, prev_hash, hash)
         VALUES {}",
        sql::anonymous_values(rows, 10)
    )
}

fn bind_traces<'q>(
    mut q: SqliteQuery<'q>,
    traces: &'q [NewTrace],
    trace_request: Option<i64>,
) -> SqliteQuery<'q> {
    for t in traces {
        q = sql::bind_trace!(q, trace_request.or(t.request_id), t);
    }
    q
}

/// Binds events with their (seq, event id, prev hash, hash) from the chain.
fn bind_events<'q>(
    mut q: SqliteQuery<'q>,
    events: &'q [NewAuditEvent],
    chained: &'q [(i64, uuid::Uuid, String, String)],
) -> SqliteQuery<'q> {
    for (e, (seq, event_id, prev_hash, hash)) in events.iter().zip(chained) {
        q = q
            .bind(*seq)
            .bind(*event_id)
            .bind(&e.actor)
            .bind(&e.action)
            .bind(e.request_id)
            .bind(e.record_id)
            .bind(Json(&e.detail))
            .bind(e.at)
            .bind(prev_hash)
            .bind(hash);
    }
    q
}

fn bind_head<'q>(q: SqliteQuery<'q>, head: Option<&'q (i64, String)>) -> SqliteQuery<'q> {
    match head {
        Some((seq, hash)) => q.bind(*seq).bind(hash),
        None => q,
    }
}

#[cfg(test)]
mod tests {
    use crate::store::HealthStore;

    #[tokio::test]
    async fn an_in_memory_store_is_one_database_for_its_writer_and_readers() {
        let store = super::SqliteStore::open(std::path::Path::new(":memory:"), 4)
            .await
            .unwrap();
        store.migrate().await.expect("migrated through the writer");
        // Every read connection sees what the writer wrote: four held at once are four
        // connections of the pool.
        let mut held = Vec::new();
        for _ in 0..4 {
            let mut conn = store.pool().acquire().await.unwrap();
            let applied: i64 = sqlx::query_scalar("SELECT count(*) FROM _sqlx_migrations")
                .fetch_one(&mut *conn)
                .await
                .unwrap();
            assert!(
                applied > 0,
                "the migrations are in the database the readers read"
            );
            held.push(conn);
        }
    }
}
