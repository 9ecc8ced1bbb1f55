//! PostgreSQL: the production database. Several instances may share it: conditional updates and
//! row locks (the audit chain head is locked `FOR UPDATE`) keep their writes from colliding.

use super::{DatabaseKind, Store, StoreResult, sql::impl_store};
use sqlx::postgres::PgPoolOptions;
use sqlx::{PgPool, Postgres};
use std::time::Duration;

#[derive(Clone, Debug)]
pub struct PgStore {
    pool: PgPool,
}

impl PgStore {
    const MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");
    /// Locks a request row for a counted decision (SQLite: the writer lock already does).
    const LOCK_REQUEST: &'static str = "SELECT status FROM requests WHERE id = $1 FOR UPDATE";
    /// How a claim skips rows another instance is claiming right now.
    const SKIP_LOCKED: &'static str = " FOR UPDATE SKIP LOCKED";
    const LOCK_CHAIN_HEAD: &'static str =
        "SELECT seq, hash FROM audit_chain_head WHERE id = 1 FOR UPDATE";
    /// Rows per multi-row INSERT in the batch paths (12 columns × 250 rows = 3,000 parameters,
    /// well under the protocol's 65,535): fewer round trips.
    const INSERT_ROWS: usize = 250;
    /// A pooled connection idle at least this long is pinged before use.
    const PING_WHEN_IDLE: Duration = Duration::from_secs(10);

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
                    if meta.idle_for >= Self::PING_WHEN_IDLE {
                        sqlx::Connection::ping(conn).await?;
                    }
                    Ok(true)
                })
            })
            .connect(url)
            .await?;
        Ok(PgStore { pool })
    }

    pub fn from_pool(pool: PgPool) -> Self {
        PgStore { pool }
    }

    async fn begin_write(&self) -> Result<sqlx::Transaction<'static, Postgres>, sqlx::Error> {
        self.pool.begin().await
    }

    /// Where an autocommit write statement runs: any connection (row locks order the writers).
    fn writer(&self) -> &PgPool {
        &self.pool
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }
}

impl Store for PgStore {
    fn kind(&self) -> DatabaseKind {
        DatabaseKind::Postgres
    }
}

impl_store!(PgStore, sqlx::Postgres);
