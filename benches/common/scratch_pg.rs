//! A scratch Postgres database for one benchmark run: `passkey_bench_<uuid>` on the server of
//! `PASSKEY_TEST_DATABASE_URL` (the local server by default), created empty and dropped by
//! [`ScratchPg::drop_now`]. Shared by the benches through `#[path]`.

use sqlx::{AssertSqlSafe, Connection};

/// The URL the scratch database is made through (a connection to another database).
pub fn admin_url() -> String {
    std::env::var("PASSKEY_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_string())
}

pub struct ScratchPg {
    pub name: String,
}

impl ScratchPg {
    /// A new, empty database, or `None` (after a note) when Postgres is unreachable.
    pub async fn create() -> Option<ScratchPg> {
        let admin = admin_url();
        let mut conn = match sqlx::PgConnection::connect(&admin).await {
            Ok(conn) => conn,
            Err(e) => {
                println!("Postgres skipped: unreachable at {admin} ({e})");
                return None;
            }
        };
        let name = format!("passkey_bench_{}", uuid::Uuid::new_v4().simple());
        sqlx::query(AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
            .execute(&mut conn)
            .await
            .expect("create the scratch database");
        Some(ScratchPg { name })
    }

    /// Its URL: the admin URL's server, this database.
    pub fn url(&self) -> String {
        let admin = admin_url();
        let (base, _) = admin
            .rsplit_once('/')
            .expect("PASSKEY_TEST_DATABASE_URL needs a database path");
        format!("{base}/{}", self.name)
    }

    /// Drops it, forcibly: connections the bench or its server still hold are cut.
    pub async fn drop_now(&self) {
        if let Ok(mut conn) = sqlx::PgConnection::connect(&admin_url()).await {
            let sql = format!("DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)", self.name);
            let _ = sqlx::query(AssertSqlSafe(sql)).execute(&mut conn).await;
        }
    }
}
