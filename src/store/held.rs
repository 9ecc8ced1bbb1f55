//! Connections kept out of the pool for the turn's own statements.
//!
//! Every statement run on a pool borrows a connection and gives it back, and sqlx tests a
//! connection each time it comes back (`PoolConnection::return_to_pool` pings it,
//! unconditionally): one more round trip to the Postgres server, or to the SQLite connection's
//! thread, per statement. A Teams turn runs small statements of two kinds — the read of its
//! sender, and its writes (its claim, then its done mark) — each together with other turns'
//! (`governance::coalesce`), and at 32 connections those pings were 7.5 % of the Postgres bot's
//! CPU (docs/benchmarks.md, seventh pass). So each kind has a connection of its own that never
//! goes back to the pool: there is nothing to test on its return.
//!
//! What the pool's test protected against is kept another way: a connection whose statement
//! failed, or whose statement was abandoned half-way (its future dropped), is closed rather than
//! kept, so the next statement opens a fresh one; and one idle for [`PING_WHEN_IDLE`] is pinged
//! before use, as the Postgres pool does, because that is where a server's idle timeout or a
//! dropped connection shows up.

use super::writer::WriterConnection;
use sqlx::{Connection, Database, Pool};
use std::ops::{Deref, DerefMut};
use std::time::{Duration, Instant};
use tokio::sync::{Mutex, MutexGuard};

/// A connection idle at least this long is pinged before its next statement: a held one here,
/// and a pooled one by the Postgres pool (`PgStore::connect`).
pub const PING_WHEN_IDLE: Duration = Duration::from_secs(10);

/// One connection for one kind of statement, taken from `pool` when first needed. It is
/// detached from the pool, so the pool opens another in its place: the process holds this one
/// connection beyond the pool's `max_connections` (a held connection counted against the pool
/// would leave a pool of one with none).
pub struct HeldConnection<DB: Database> {
    pool: Pool<DB>,
    slot: Mutex<Option<(DB::Connection, Instant)>>,
    ping_when_idle: Duration,
}

impl<DB: Database> HeldConnection<DB> {
    pub fn new(pool: Pool<DB>) -> Self {
        HeldConnection {
            pool,
            slot: Mutex::new(None),
            ping_when_idle: PING_WHEN_IDLE,
        }
    }

    /// Pings the connection when it was idle `after` or longer (tests: zero, every time).
    pub fn ping_when_idle(mut self, after: Duration) -> Self {
        self.ping_when_idle = after;
        self
    }

    /// The connection, for one caller at a time (others wait). Call [`Held::keep`] once its
    /// statements succeeded; otherwise it is closed when the guard drops.
    pub async fn get(&self) -> Result<Held<'_, DB>, sqlx::Error> {
        let mut slot = self.slot.lock().await;
        if let Some((conn, last_used)) = slot.as_mut()
            && last_used.elapsed() >= self.ping_when_idle
            && conn.ping().await.is_err()
        {
            // Gone while idle: open another below.
            *slot = None;
        }
        if slot.is_none() {
            let conn = self.pool.acquire().await?.detach();
            *slot = Some((conn, Instant::now()));
        }
        Ok(Held { slot, kept: false })
    }

    /// Whether a connection is held now.
    #[cfg(test)]
    async fn is_held(&self) -> bool {
        self.slot.lock().await.is_some()
    }

    /// Closes the held connection, if any (the store is closing: with its pool closed, no
    /// other is opened).
    pub async fn close(&self) {
        if let Some((conn, _)) = self.slot.lock().await.take() {
            let _ = conn.close().await;
        }
    }
}

impl<DB: Database> std::fmt::Debug for HeldConnection<DB> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HeldConnection")
    }
}

/// A held connection for each of the turn's statements.
#[derive(Debug)]
pub struct TurnConnections<DB: Database> {
    write: HeldConnection<DB>,
    sender: HeldConnection<DB>,
}

impl<DB: Database> TurnConnections<DB> {
    pub fn new(pool: &Pool<DB>) -> Self {
        TurnConnections {
            write: HeldConnection::new(pool.clone()),
            sender: HeldConnection::new(pool.clone()),
        }
    }

    pub fn of(&self, statement: TurnStatement) -> &HeldConnection<DB> {
        match statement {
            TurnStatement::Write => &self.write,
            TurnStatement::Sender => &self.sender,
        }
    }
}

/// A held connection in use. Dropped without [`keep`](Held::keep), its connection is closed: a
/// statement that failed or was abandoned may have left it mid-protocol or mid-transaction.
pub struct Held<'a, DB: Database> {
    slot: MutexGuard<'a, Option<(DB::Connection, Instant)>>,
    kept: bool,
}

impl<DB: Database> Held<'_, DB> {
    /// The statements succeeded: the connection stays for the next caller.
    pub fn keep(mut self) {
        if let Some((_, last_used)) = self.slot.as_mut() {
            *last_used = Instant::now();
        }
        self.kept = true;
    }
}

impl<DB: Database> Deref for Held<'_, DB> {
    type Target = DB::Connection;

    fn deref(&self) -> &DB::Connection {
        &self
            .slot
            .as_ref()
            .expect("a held connection is in its slot")
            .0
    }
}

impl<DB: Database> DerefMut for Held<'_, DB> {
    fn deref_mut(&mut self) -> &mut DB::Connection {
        &mut self
            .slot
            .as_mut()
            .expect("a held connection is in its slot")
            .0
    }
}

impl<DB: Database> Drop for Held<'_, DB> {
    fn drop(&mut self) {
        if !self.kept {
            *self.slot = None;
        }
    }
}

/// Which of the turn's statements a connection is for (see the module's note).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TurnStatement {
    /// The claims and done marks of a batch of turns (`write_turns`).
    Write,
    /// The senders of a batch of turns (`turn_senders`).
    Sender,
}

/// Where one of the turn's statements runs: a held connection, or (where the store cannot hold
/// one: SQLite writes all go through its one writer) the writer connection.
pub enum TurnConnection<'a, DB: Database> {
    Held(Held<'a, DB>),
    Writer(WriterConnection<DB>),
}

impl<DB: Database> TurnConnection<'_, DB> {
    /// The statements succeeded (see [`Held::keep`]); the writer is simply released.
    pub fn keep(self) {
        if let TurnConnection::Held(held) = self {
            held.keep();
        }
    }
}

impl<DB: Database> Deref for TurnConnection<'_, DB> {
    type Target = DB::Connection;

    fn deref(&self) -> &DB::Connection {
        match self {
            TurnConnection::Held(held) => held,
            TurnConnection::Writer(writer) => writer,
        }
    }
}

impl<DB: Database> DerefMut for TurnConnection<'_, DB> {
    fn deref_mut(&mut self) -> &mut DB::Connection {
        match self {
            TurnConnection::Held(held) => held,
            TurnConnection::Writer(writer) => writer,
        }
    }
}

#[cfg(test)]
pub(in crate::store) mod tests {
    use super::*;
    use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};
    use sqlx::{Sqlite, SqliteConnection, SqlitePool};

    /// Marks `conn` with a TEMP table: only statements on this very connection see it.
    pub(in crate::store) async fn mark_connection(conn: &mut SqliteConnection) {
        sqlx::query("CREATE TEMP TABLE mark (x)")
            .execute(conn)
            .await
            .unwrap();
    }

    /// Whether `conn` is the connection [`mark_connection`] marked.
    pub(in crate::store) async fn is_marked(conn: &mut SqliteConnection) -> bool {
        let found: Option<i64> =
            sqlx::query_scalar("SELECT 1 FROM sqlite_temp_master WHERE name = 'mark'")
                .fetch_optional(conn)
                .await
                .unwrap();
        found.is_some()
    }

    /// A file database: each connection to it is a connection of its own, so a TEMP table
    /// shows which connection a statement ran on.
    async fn file_pool(dir: &tempfile::TempDir, max: u32) -> SqlitePool {
        SqlitePoolOptions::new()
            .max_connections(max)
            .connect_with(
                SqliteConnectOptions::new()
                    .filename(dir.path().join("held.db"))
                    .create_if_missing(true),
            )
            .await
            .unwrap()
    }

    async fn marked(held: &HeldConnection<Sqlite>) -> bool {
        let mut conn = held.get().await.unwrap();
        let found = is_marked(&mut conn).await;
        conn.keep();
        found
    }

    async fn mark(held: &HeldConnection<Sqlite>) {
        let mut conn = held.get().await.unwrap();
        mark_connection(&mut conn).await;
        conn.keep();
    }

    #[tokio::test]
    async fn a_kept_connection_serves_the_next_statement() {
        let dir = tempfile::tempdir().unwrap();
        let held = HeldConnection::new(file_pool(&dir, 4).await);
        mark(&held).await;
        assert!(marked(&held).await, "the same connection again");
        assert!(marked(&held).await);
    }

    #[tokio::test]
    async fn a_connection_whose_statement_failed_or_was_abandoned_is_closed() {
        let dir = tempfile::tempdir().unwrap();
        let held = HeldConnection::new(file_pool(&dir, 4).await);
        mark(&held).await;
        {
            let mut conn = held.get().await.unwrap();
            let failed = sqlx::query("SELECT * FROM no_such_table")
                .execute(&mut *conn)
                .await;
            assert!(failed.is_err());
            // Dropped without `keep`: its statement failed.
        }
        assert!(!held.is_held().await, "closed, not kept");
        assert!(!marked(&held).await, "a fresh connection, without the mark");

        mark(&held).await;
        // A caller that goes away mid-statement (its future dropped) leaves nothing behind.
        let abandoned = async {
            let mut conn = held.get().await.unwrap();
            sqlx::query("SELECT 1").execute(&mut *conn).await.unwrap();
            std::future::pending::<()>().await;
            conn.keep();
        };
        let _ = tokio::time::timeout(Duration::from_millis(20), abandoned).await;
        assert!(!marked(&held).await, "abandoned: closed, not kept");
    }

    #[tokio::test]
    async fn holding_a_connection_leaves_a_pool_of_one_its_connection() {
        let dir = tempfile::tempdir().unwrap();
        let pool = file_pool(&dir, 1).await;
        let held = HeldConnection::new(pool.clone());
        mark(&held).await;
        let one: i64 = tokio::time::timeout(
            Duration::from_secs(5),
            sqlx::query_scalar("SELECT 1").fetch_one(&pool),
        )
        .await
        .expect("the pool still has a connection")
        .unwrap();
        assert_eq!(one, 1);
    }

    #[tokio::test]
    async fn after_close_no_connection_is_held_or_opened() {
        let dir = tempfile::tempdir().unwrap();
        let pool = file_pool(&dir, 2).await;
        let held = HeldConnection::new(pool.clone());
        mark(&held).await;
        pool.close().await;
        held.close().await;
        assert!(!held.is_held().await);
        assert!(matches!(held.get().await, Err(sqlx::Error::PoolClosed)));
    }
}
