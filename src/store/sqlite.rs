//! SQLite: the embedded default. WAL so readers don't block the writer, a busy timeout so writers
//! queue instead of failing, foreign keys on, and `BEGIN IMMEDIATE` for every write transaction so
//! the write lock is taken up front (a deferred transaction that upgrades later can deadlock).

use super::{DatabaseKind, Store, StoreResult, sql::impl_store};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Sqlite, SqlitePool};
use std::path::Path;
use std::time::Duration;

#[derive(Clone, Debug)]
pub struct SqliteStore {
    pool: SqlitePool,
}

impl SqliteStore {
    const MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");
    /// `BEGIN IMMEDIATE` already holds the database's single write lock.
    /// Locks a request row for a counted decision (SQLite: the writer lock already does).
    const LOCK_REQUEST: &'static str = "SELECT status FROM requests WHERE id = $1";
    /// How a claim skips rows another instance is claiming right now.
    const SKIP_LOCKED: &'static str = "";
    const LOCK_CHAIN_HEAD: &'static str = "SELECT seq, hash FROM audit_chain_head WHERE id = 1";
    /// Events are linked as they are inserted: the single writer already serializes
    /// transactions, so holding the head until commit makes no one wait.
    const LINKS_INLINE: bool = true;
    /// Rows per multi-row INSERT in the batch paths. Small: SQLite looks each `$N` up by name in a
    /// linear list, so binding a statement costs the square of its parameter count (12 columns ×
    /// 32 rows = 384 parameters).
    const INSERT_ROWS: usize = 32;

    /// Opens (creating if needed) the database file; does not migrate.
    pub async fn open(path: &Path, max_connections: u32) -> StoreResult<Self> {
        // Created (or tightened) 0600 before SQLite opens it: SQLite gives the WAL and shared-
        // memory files the database file's mode.
        if path.as_os_str() != ":memory:" {
            crate::private_fs::ensure_file(path).map_err(|e| {
                crate::store::StoreError::Invalid(format!("{}: {e}", path.display()))
            })?;
        }
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(max_connections.max(1))
            .acquire_timeout(Duration::from_secs(10))
            // sqlx pings a pooled connection before handing it out; for SQLite that is one more
            // round trip to the connection's worker thread per statement (two wake-ups), and
            // there is no server that could have gone away. A broken connection still fails its
            // statement and is closed.
            .test_before_acquire(false)
            .connect_with(options)
            .await?;
        Ok(SqliteStore { pool })
    }

    async fn begin_write(&self) -> Result<sqlx::Transaction<'static, Sqlite>, sqlx::Error> {
        self.pool.begin_with("BEGIN IMMEDIATE").await
    }

    async fn commit_write(
        &self,
        tx: sqlx::Transaction<'static, Sqlite>,
    ) -> Result<(), sqlx::Error> {
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

    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }
}

impl Store for SqliteStore {
    fn kind(&self) -> DatabaseKind {
        DatabaseKind::Sqlite
    }
}

impl_store!(SqliteStore, sqlx::Sqlite);
