//! The one connection a SQLite store writes through, behind a fair lock instead of a pool.
//!
//! SQLite takes one writer at a time, so every write of the process goes through one connection
//! and writers queue for it in order (`store::sqlite`). That queue used to be a pool of one,
//! and a pool costs each write more than the queue: sqlx pings a connection every time it goes
//! back to its pool (`PoolConnection::return_to_pool`, unconditionally, in a task spawned for
//! it), and for SQLite that ping is one more round trip to the connection's thread — two more
//! thread wake-ups per statement. sqlx's own `BEGIN` and `COMMIT` cost two more each: the
//! connection's thread waits for the caller to acknowledge the answer before it takes the next
//! command. Here the connection sits behind a `tokio::sync::Mutex` (first come, first served,
//! as the pool's queue was); a write statement is one trip, and a transaction is `BEGIN
//! IMMEDIATE`, its statements and `COMMIT`, each one trip.
//!
//! What the pool and sqlx's transactions protected is kept:
//! - A transaction dropped before it committed (an error returned half-way, a caller gone) is
//!   rolled back at once, by a task that holds the lock until it is done, so no other write can
//!   run inside it; should that fail, or no runtime be there to run it, the next writer rolls it
//!   back before its own statement, and a connection that cannot roll back is closed and
//!   replaced.
//! - A connection that failed (its thread gone, the file unreadable) is replaced on the next
//!   write; a statement the database refused (a constraint) leaves the connection as it was.
//! - A writer waits at most as long as the pool let it ([`Writer::new`]'s `wait`), then fails
//!   as Unavailable (`PoolTimedOut`); after [`Writer::close`] every write fails (`PoolClosed`).

use sqlx::{ConnectOptions, Connection, Database, Executor};
use std::ops::{Deref, DerefMut};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Mutex, OwnedMutexGuard};

/// The writer connection and what the next writer must know about it.
struct Slot<DB: Database> {
    /// Opened on first use, and again after one failed.
    conn: Option<DB::Connection>,
    /// A transaction was begun on `conn` and neither committed nor rolled back.
    in_transaction: bool,
    closed: bool,
}

/// One connection for every write of the process (see the module's note).
pub struct Writer<DB: Database> {
    options: <DB::Connection as Connection>::Options,
    slot: Arc<Mutex<Slot<DB>>>,
    wait: Duration,
    begin: &'static str,
}

impl<DB> Writer<DB>
where
    DB: Database,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
{
    /// A writer connecting with `options` when first used; a writer waits at most `wait` for
    /// the one before it, and transactions start with `begin` (SQLite: `BEGIN IMMEDIATE`, which
    /// takes the write lock up front).
    pub fn new(
        options: <DB::Connection as Connection>::Options,
        wait: Duration,
        begin: &'static str,
    ) -> Self {
        Writer {
            options,
            slot: Arc::new(Mutex::new(Slot {
                conn: None,
                in_transaction: false,
                closed: false,
            })),
            wait,
            begin,
        }
    }

    /// The connection, for one autocommit statement or several (callers queue in order).
    pub async fn lock(&self) -> Result<WriterConnection<DB>, sqlx::Error> {
        let mut slot = tokio::time::timeout(self.wait, self.slot.clone().lock_owned())
            .await
            .map_err(|_| sqlx::Error::PoolTimedOut)?;
        if slot.closed {
            return Err(sqlx::Error::PoolClosed);
        }
        if slot.in_transaction {
            // Left open by a writer that went away and whose rollback did not run.
            rollback_or_close(&mut slot).await;
        }
        if slot.conn.is_none() {
            slot.conn = Some(self.options.connect().await?);
        }
        Ok(WriterConnection { slot })
    }

    /// A write transaction: commit it with [`WriteTx::commit`]; dropped, it is rolled back.
    pub async fn begin(&self) -> Result<WriteTx<DB>, sqlx::Error> {
        let mut conn = self.lock().await?;
        // Marked before the statement: should this future be dropped while the connection's
        // thread runs the BEGIN, the next writer still rolls it back.
        conn.slot.in_transaction = true;
        match sqlx::raw_sql(self.begin).execute(&mut *conn).await {
            Ok(_) => Ok(WriteTx { conn: Some(conn) }),
            Err(e) => {
                // Not begun (the database refused): nothing to roll back.
                conn.slot.in_transaction = false;
                Err(e)
            }
        }
    }

    /// Closes the connection; every later write fails as `PoolClosed`. Waits for the writer
    /// in progress, if any.
    pub async fn close(&self) {
        let mut slot = self.slot.lock().await;
        slot.closed = true;
        if let Some(conn) = slot.conn.take() {
            let _ = conn.close().await;
        }
    }

    /// Whether a connection is open now.
    #[cfg(test)]
    pub async fn is_open(&self) -> bool {
        self.slot.lock().await.conn.is_some()
    }
}

impl<DB: Database> std::fmt::Debug for Writer<DB> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Writer")
    }
}

/// Rolls back the transaction left open on the slot's connection; if that fails, closes the
/// connection (closing rolls it back), so the next statement runs on a fresh one.
async fn rollback_or_close<DB>(slot: &mut Slot<DB>)
where
    DB: Database,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
{
    slot.in_transaction = false;
    let Some(conn) = slot.conn.as_mut() else {
        return;
    };
    if let Err(error) = sqlx::raw_sql("ROLLBACK").execute(&mut *conn).await {
        tracing::warn!(%error, "writer connection not rolled back; it is replaced");
        if let Some(conn) = slot.conn.take() {
            let _ = conn.close().await;
        }
    }
}

/// The writer connection, held: no other write runs until it is dropped.
pub struct WriterConnection<DB: Database> {
    slot: OwnedMutexGuard<Slot<DB>>,
}

impl<DB: Database> Deref for WriterConnection<DB> {
    type Target = DB::Connection;

    fn deref(&self) -> &DB::Connection {
        self.slot
            .conn
            .as_ref()
            .expect("a locked writer has a connection")
    }
}

impl<DB: Database> DerefMut for WriterConnection<DB> {
    fn deref_mut(&mut self) -> &mut DB::Connection {
        self.slot
            .conn
            .as_mut()
            .expect("a locked writer has a connection")
    }
}

/// A write transaction on the writer connection. Its statements run on `&mut *tx`.
pub struct WriteTx<DB>
where
    DB: Database,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
{
    /// Taken by `commit`, or by `drop` for the rollback.
    conn: Option<WriterConnection<DB>>,
}

impl<DB> WriteTx<DB>
where
    DB: Database,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
{
    /// Commits; on failure the transaction is rolled back before the next write runs.
    pub async fn commit(mut self) -> Result<(), sqlx::Error> {
        let mut conn = self
            .conn
            .take()
            .expect("an open transaction has its connection");
        sqlx::raw_sql("COMMIT").execute(&mut *conn).await?;
        conn.slot.in_transaction = false;
        Ok(())
    }
}

impl<DB> Deref for WriteTx<DB>
where
    DB: Database,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
{
    type Target = DB::Connection;

    fn deref(&self) -> &DB::Connection {
        self.conn
            .as_ref()
            .expect("an open transaction has its connection")
    }
}

impl<DB> DerefMut for WriteTx<DB>
where
    DB: Database,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
{
    fn deref_mut(&mut self) -> &mut DB::Connection {
        self.conn
            .as_mut()
            .expect("an open transaction has its connection")
    }
}

impl<DB> Drop for WriteTx<DB>
where
    DB: Database,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
{
    fn drop(&mut self) {
        // Not committed: roll back now, holding the lock so no write runs inside this
        // transaction meanwhile. Without a runtime the slot's mark makes the next writer do it.
        if let Some(mut conn) = self.conn.take()
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            runtime.spawn(async move { rollback_or_close(&mut conn.slot).await });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::held::tests::{is_marked, mark_connection};
    use sqlx::Sqlite;
    use sqlx::sqlite::SqliteConnectOptions;

    fn writer(dir: &tempfile::TempDir, wait: Duration) -> Writer<Sqlite> {
        Writer::new(
            SqliteConnectOptions::new()
                .filename(dir.path().join("writer.db"))
                .create_if_missing(true),
            wait,
            "BEGIN IMMEDIATE",
        )
    }

    async fn count(writer: &Writer<Sqlite>) -> i64 {
        let mut conn = writer.lock().await.unwrap();
        sqlx::query_scalar("SELECT count(*) FROM t")
            .fetch_one(&mut *conn)
            .await
            .unwrap()
    }

    async fn with_table(dir: &tempfile::TempDir) -> Writer<Sqlite> {
        let writer = writer(dir, Duration::from_secs(5));
        let mut conn = writer.lock().await.unwrap();
        sqlx::query("CREATE TABLE t (x INTEGER PRIMARY KEY)")
            .execute(&mut *conn)
            .await
            .unwrap();
        drop(conn);
        writer
    }

    #[tokio::test]
    async fn a_committed_transaction_is_kept_and_a_dropped_one_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let writer = with_table(&dir).await;
        let mut tx = writer.begin().await.unwrap();
        sqlx::query("INSERT INTO t VALUES (1)")
            .execute(&mut *tx)
            .await
            .unwrap();
        tx.commit().await.unwrap();
        assert_eq!(count(&writer).await, 1);

        // An error returned half-way: the transaction is dropped before it commits.
        let mut tx = writer.begin().await.unwrap();
        sqlx::query("INSERT INTO t VALUES (2)")
            .execute(&mut *tx)
            .await
            .unwrap();
        let refused = sqlx::query("INSERT INTO t VALUES (1)")
            .execute(&mut *tx)
            .await;
        assert!(refused.is_err(), "the key is taken");
        drop(tx);
        assert_eq!(
            count(&writer).await,
            1,
            "the dropped transaction's row is gone"
        );

        // The next write runs outside it, and commits on its own.
        let mut conn = writer.lock().await.unwrap();
        sqlx::query("INSERT INTO t VALUES (3)")
            .execute(&mut *conn)
            .await
            .unwrap();
        drop(conn);
        let other = SqliteConnectOptions::new().filename(dir.path().join("writer.db"));
        let mut reader = other.connect().await.unwrap();
        let seen: i64 = sqlx::query_scalar("SELECT count(*) FROM t")
            .fetch_one(&mut reader)
            .await
            .unwrap();
        assert_eq!(seen, 2, "another connection sees both committed rows");
    }

    #[tokio::test]
    async fn a_transaction_whose_caller_went_away_is_rolled_back_before_the_next_write() {
        let dir = tempfile::tempdir().unwrap();
        let writer = with_table(&dir).await;
        // Abandoned mid-transaction (its future dropped by a timeout).
        let abandoned = async {
            let mut tx = writer.begin().await.unwrap();
            sqlx::query("INSERT INTO t VALUES (7)")
                .execute(&mut *tx)
                .await
                .unwrap();
            std::future::pending::<()>().await;
            tx.commit().await.unwrap();
        };
        let _ = tokio::time::timeout(Duration::from_millis(50), abandoned).await;
        // Dropped where no runtime runs to roll it back at once: the next writer does.
        let mut tx = writer.begin().await.unwrap();
        sqlx::query("INSERT INTO t VALUES (9)")
            .execute(&mut *tx)
            .await
            .unwrap();
        std::thread::spawn(move || drop(tx)).join().unwrap();
        let mut tx = writer
            .begin()
            .await
            .expect("a new transaction, not a nested one");
        sqlx::query("INSERT INTO t VALUES (8)")
            .execute(&mut *tx)
            .await
            .unwrap();
        tx.commit().await.unwrap();
        let rows: Vec<i64> = {
            let mut conn = writer.lock().await.unwrap();
            sqlx::query_scalar("SELECT x FROM t ORDER BY x")
                .fetch_all(&mut *conn)
                .await
                .unwrap()
        };
        assert_eq!(rows, vec![8]);
    }

    #[tokio::test]
    async fn a_refused_statement_keeps_the_connection() {
        let dir = tempfile::tempdir().unwrap();
        let writer = with_table(&dir).await;
        let mut conn = writer.lock().await.unwrap();
        mark_connection(&mut conn).await;
        assert!(
            sqlx::query("INSERT INTO no_such_table VALUES (1)")
                .execute(&mut *conn)
                .await
                .is_err()
        );
        drop(conn);
        let mut conn = writer.lock().await.unwrap();
        assert!(
            is_marked(&mut conn).await,
            "the same connection: its page cache stays warm"
        );
    }

    #[tokio::test]
    async fn a_writer_waits_its_turn_at_most_as_long_as_allowed() {
        let dir = tempfile::tempdir().unwrap();
        let writer = writer(&dir, Duration::from_millis(100));
        let held = writer.lock().await.unwrap();
        assert!(matches!(
            writer.lock().await,
            Err(sqlx::Error::PoolTimedOut)
        ));
        drop(held);
        assert!(
            writer.lock().await.is_ok(),
            "its turn, once the first is done"
        );
    }

    #[tokio::test]
    async fn after_close_every_write_fails_and_nothing_is_opened() {
        let dir = tempfile::tempdir().unwrap();
        let writer = with_table(&dir).await;
        writer.close().await;
        assert!(!writer.is_open().await);
        assert!(matches!(writer.lock().await, Err(sqlx::Error::PoolClosed)));
        assert!(matches!(writer.begin().await, Err(sqlx::Error::PoolClosed)));
        assert!(!writer.is_open().await);
    }
}
