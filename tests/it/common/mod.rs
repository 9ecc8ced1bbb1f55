//! Shared test harness: a fresh database per test on both engines, and the real app on port 0.
//!
//! Postgres: `PASSKEY_TEST_DATABASE_URL` (default `postgres://postgres@127.0.0.1:5432/postgres`)
//! must let us create databases. Each test gets `passkey_t_<uuid>`, dropped when the test ends.
//! When Postgres is unreachable the Postgres half of a test prints that it was skipped — except
//! under CI (`CI=true`), where that is a failure.

#![allow(dead_code)]

pub mod channel;
pub mod chat;
pub mod fake_commander;
pub mod fake_graph;
pub mod fake_sharer;
pub mod fake_twilio;
pub mod logs;
pub mod oidc;
pub mod redirector;
pub mod second_factor;
pub mod tls;
pub mod tokens;
pub mod web;

use passkey::app::App;
use passkey::config::Settings;
use passkey::domain::{Clock, ManualClock, Timestamp};
use passkey::governance::directory::UserDirectory;
use passkey::governance::permissions::{GroupDirectory, StaticGroupDirectory};
use passkey::store::{HealthStore, PgStore, SqliteStore, Store, StoreError};
use sqlx::AssertSqlSafe;
use sqlx::Connection;
use std::collections::BTreeMap;
use std::sync::Arc;

pub fn admin_url() -> String {
    std::env::var("PASSKEY_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_string())
}

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// A database made for one test; dropped (forcibly) when this goes out of scope.
pub struct PgTestDb {
    pub store: Arc<PgStore>,
    name: String,
}

impl Drop for PgTestDb {
    fn drop(&mut self) {
        // The test does not wait for its database to go: DROP DATABASE makes Postgres checkpoint
        // (a second or more while other tests write), so one thread drops them in the background.
        pg_dropper().send(self.name.clone());
    }
}

/// Drops test databases, one after another, on its own thread with its own runtime. Databases
/// still queued when the test process exits are dropped by the next process's sweep
/// ([`sweep_abandoned_pg`]): their names carry the pid that made them.
struct PgDropper {
    queue: std::sync::Mutex<std::sync::mpsc::Sender<String>>,
}

impl PgDropper {
    fn send(&self, name: String) {
        let _ = self.queue.lock().unwrap().send(name);
    }
}

fn pg_dropper() -> &'static PgDropper {
    static DROPPER: std::sync::OnceLock<PgDropper> = std::sync::OnceLock::new();
    DROPPER.get_or_init(|| {
        let (tx, rx) = std::sync::mpsc::channel::<String>();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let mut conn: Option<sqlx::PgConnection> = None;
                while let Ok(name) = rx.recv() {
                    if conn.is_none() {
                        conn = sqlx::PgConnection::connect(&admin_url()).await.ok();
                    }
                    let Some(c) = conn.as_mut() else { continue };
                    // FORCE: the test's pool belongs to a runtime that is gone or going.
                    let sql = format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)");
                    if sqlx::query(AssertSqlSafe(sql))
                        .execute(&mut *c)
                        .await
                        .is_err()
                    {
                        conn = None;
                    }
                }
            });
        });
        PgDropper {
            queue: std::sync::Mutex::new(tx),
        }
    })
}

/// Test databases left by test processes that have exited (queued for dropping when their
/// process ended, or interrupted) go to the dropper. Run once per process.
async fn sweep_abandoned_pg(conn: &mut sqlx::PgConnection) {
    let names: Vec<String> =
        sqlx::query_scalar("SELECT datname FROM pg_database WHERE datname LIKE 'passkey\\_t\\_%'")
            .fetch_all(&mut *conn)
            .await
            .unwrap_or_default();
    for name in names {
        let pid = name
            .strip_prefix("passkey_t_")
            .and_then(|rest| rest.split_once('_'))
            .and_then(|(pid, _)| pid.parse::<u32>().ok());
        // A name without a pid is another harness's (it drops its own): left alone.
        let alive = pid.is_none_or(|pid| std::path::Path::new(&format!("/proc/{pid}")).exists());
        if !alive {
            pg_dropper().send(name);
        }
    }
}

/// The migrated database every test database is copied from (`CREATE DATABASE … TEMPLATE`), made
/// once per set of migrations: its name carries a hash of migrations/postgres, so a changed or
/// added migration makes a new template. A copy costs a fraction of running every migration.
/// Made under an advisory lock, so concurrent test processes make it once.
async fn pg_template(conn: &mut sqlx::PgConnection) -> String {
    let name = format!("passkey_template_{}", migrations_hash("postgres"));

    sqlx::query("SELECT pg_advisory_lock(hashtext('passkey test template'))")
        .execute(&mut *conn)
        .await
        .expect("template lock");
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
            .bind(&name)
            .fetch_one(&mut *conn)
            .await
            .expect("look for the template");
    if !exists {
        // Built under another name and renamed when complete: a run interrupted mid-migration
        // never leaves a half-migrated template behind under the real name.
        let partial = format!("{name}_partial");
        for sql in [
            format!("DROP DATABASE IF EXISTS \"{partial}\" WITH (FORCE)"),
            format!("CREATE DATABASE \"{partial}\""),
        ] {
            sqlx::query(AssertSqlSafe(sql))
                .execute(&mut *conn)
                .await
                .expect("make the template");
        }
        let store = PgStore::connect(&database_url(&partial), 1)
            .await
            .expect("connect the template");
        store.migrate().await.expect("migrate the template");
        store.pool().close().await;
        sqlx::query(AssertSqlSafe(format!(
            "ALTER DATABASE \"{partial}\" RENAME TO \"{name}\""
        )))
        .execute(&mut *conn)
        .await
        .expect("name the template");
    }
    sqlx::query("SELECT pg_advisory_unlock(hashtext('passkey test template'))")
        .execute(&mut *conn)
        .await
        .expect("template unlock");
    name
}

/// `name` on the admin URL's server.
fn database_url(name: &str) -> String {
    match admin_url().rsplit_once('/') {
        Some((base, _)) => format!("{base}/{name}"),
        None => panic!("PASSKEY_TEST_DATABASE_URL needs a database path"),
    }
}

impl PgTestDb {
    /// The database's URL (the admin URL's server, this test's database).
    pub fn url(&self) -> String {
        database_url(&self.name)
    }
}

/// Connections per test database: `RUST_TEST_THREADS` (.cargo/config.toml) tests at a time, each
/// with at most this many, stay inside Postgres' default 100 connections.
const PG_TEST_POOL: u32 = 20;

/// A migrated, empty Postgres database, or None (with a note) when Postgres is unreachable outside CI.
pub async fn fresh_pg() -> Option<PgTestDb> {
    let admin = admin_url();
    let mut conn = match sqlx::PgConnection::connect(&admin).await {
        Ok(c) => c,
        Err(e) => {
            if in_ci() {
                panic!("CI=true but Postgres is unreachable at {admin}: {e}");
            }
            eprintln!(
                "SKIPPED (Postgres unreachable at {admin}: {e}); set PASSKEY_TEST_DATABASE_URL"
            );
            return None;
        }
    };
    static TEMPLATE: tokio::sync::OnceCell<String> = tokio::sync::OnceCell::const_new();
    let template = TEMPLATE
        .get_or_init(|| async {
            sweep_abandoned_pg(&mut conn).await;
            pg_template(&mut conn).await
        })
        .await;
    let name = format!(
        "passkey_t_{}_{}",
        std::process::id(),
        uuid::Uuid::new_v4().simple()
    );
    sqlx::query(AssertSqlSafe(format!(
        "CREATE DATABASE \"{name}\" TEMPLATE \"{template}\""
    )))
    .execute(&mut conn)
    .await
    .expect("create test database");
    let url = database_url(&name);
    let store = PgStore::connect(&url, PG_TEST_POOL)
        .await
        .expect("connect test database");
    store.migrate().await.expect("migrate test database");
    Some(PgTestDb {
        store: Arc::new(store),
        name,
    })
}

/// A migrated, empty SQLite database in a temporary directory.
pub struct SqliteTestDb {
    pub store: Arc<SqliteStore>,
    pub dir: tempfile::TempDir,
}

pub async fn fresh_sqlite() -> SqliteTestDb {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("test.db");
    std::fs::copy(sqlite_template().await, &path).expect("copy the sqlite template");
    let store = SqliteStore::open(&path, 8).await.expect("open sqlite");
    // Nothing left to apply; it still checks the copy is current.
    store.migrate().await.expect("migrate sqlite");
    SqliteTestDb {
        store: Arc::new(store),
        dir,
    }
}

/// A hash of one engine's migration files (names and contents): a template made from other
/// migrations is never used.
fn migrations_hash(engine: &str) -> String {
    use sha2::{Digest, Sha256};
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("migrations")
        .join(engine);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    let mut hash = Sha256::new();
    for f in &files {
        hash.update(f.file_name().unwrap().as_encoded_bytes());
        hash.update(std::fs::read(f).unwrap());
    }
    hex::encode(&hash.finalize()[..8])
}

/// The migrated SQLite file each test database is copied from, made once per set of migrations
/// in cargo's scratch directory for integration tests (built under a private name, then renamed:
/// concurrent test processes never see half a template).
async fn sqlite_template() -> &'static std::path::Path {
    static TEMPLATE: tokio::sync::OnceCell<std::path::PathBuf> = tokio::sync::OnceCell::const_new();
    TEMPLATE
        .get_or_init(|| async {
            let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"));
            let path = dir.join(format!("passkey-template-{}.db", migrations_hash("sqlite")));
            if !path.exists() {
                let partial = dir.join(format!("passkey-template-{}.partial", std::process::id()));
                let _ = std::fs::remove_file(&partial);
                let store = SqliteStore::open(&partial, 1)
                    .await
                    .expect("open the template");
                store.migrate().await.expect("migrate the template");
                // Everything into the main file, so a plain copy of it is the whole database.
                sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
                    .execute(store.pool())
                    .await
                    .expect("checkpoint the template");
                store.close().await;
                std::fs::rename(&partial, &path).expect("name the template");
                for suffix in ["-wal", "-shm"] {
                    let mut side = partial.clone().into_os_string();
                    side.push(suffix);
                    let _ = std::fs::remove_file(side);
                }
            }
            path
        })
        .await
}

/// A temporary directory whose `keeper` is the fake Keeper CLI (tests/fake-keeper/keeper) run with
/// `env` exported, and which receives its call log (`calls.jsonl`, FAKE_KEEPER_LOG). `keeper` is a
/// symlink to the checked-in tests/fake-keeper/wrapper, which reads `fake-keeper.env` beside the
/// link: nothing executable is written at test time. (A script written here could be executed
/// while another test's fork still held it open for writing — ETXTBSY, "Text file busy" — which
/// failed these tests now and then on a loaded machine.)
pub fn fake_keeper_dir(env: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("calls.jsonl");
    let mut vars: Vec<(&str, String)> = vec![("FAKE_KEEPER_LOG", log.display().to_string())];
    vars.extend(env.iter().map(|(k, v)| (*k, v.to_string())));
    for (key, value) in vars {
        set_fake_keeper_env(dir.path(), key, &value);
    }
    let wrapper =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fake-keeper/wrapper");
    std::os::unix::fs::symlink(wrapper, dir.path().join("keeper")).unwrap();
    dir
}

/// Sets one variable for the fake `keeper` in `dir` (a later line wins over an earlier one).
pub fn set_fake_keeper_env(dir: &std::path::Path, key: &str, value: &str) {
    use std::io::Write;
    assert!(
        !value.contains('\''),
        "fake keeper values are single-quoted"
    );
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("fake-keeper.env"))
        .unwrap();
    writeln!(f, "export {key}='{value}'").unwrap();
}

/// Raw SQL, for tests that must prove the database itself refuses something.
#[async_trait::async_trait]
pub trait RawSql: Send + Sync {
    async fn exec(&self, sql: &str) -> Result<u64, StoreError>;
    /// The first column of every row, as text.
    async fn texts(&self, sql: &str) -> Result<Vec<String>, StoreError>;
}

#[async_trait::async_trait]
impl RawSql for SqliteStore {
    async fn exec(&self, sql: &str) -> Result<u64, StoreError> {
        Ok(sqlx::query(AssertSqlSafe(sql.to_string()))
            .execute(self.pool())
            .await?
            .rows_affected())
    }

    async fn texts(&self, sql: &str) -> Result<Vec<String>, StoreError> {
        Ok(sqlx::query_scalar(AssertSqlSafe(sql.to_string()))
            .fetch_all(self.pool())
            .await?)
    }
}

#[async_trait::async_trait]
impl RawSql for PgStore {
    async fn exec(&self, sql: &str) -> Result<u64, StoreError> {
        Ok(sqlx::query(AssertSqlSafe(sql.to_string()))
            .execute(self.pool())
            .await?
            .rows_affected())
    }

    async fn texts(&self, sql: &str) -> Result<Vec<String>, StoreError> {
        Ok(sqlx::query_scalar(AssertSqlSafe(sql.to_string()))
            .fetch_all(self.pool())
            .await?)
    }
}

/// What a story receives: the store under test, raw SQL against the same database, and which engine.
#[derive(Clone)]
pub struct Db {
    pub store: Arc<dyn Store>,
    pub raw: Arc<dyn RawSql>,
    pub engine: &'static str,
}

/// Runs one story against SQLite and against Postgres, as two tests.
#[macro_export]
macro_rules! on_both_databases {
    ($($story:ident),+ $(,)?) => {
        $(
            mod $story {
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn sqlite() {
                    let db = $crate::common::fresh_sqlite().await;
                    super::$story($crate::common::Db { store: db.store.clone(), raw: db.store.clone(), engine: "sqlite" }).await;
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn postgres() {
                    let Some(db) = $crate::common::fresh_pg().await else { return };
                    super::$story($crate::common::Db { store: db.store.clone(), raw: db.store.clone(), engine: "postgres" }).await;
                }
            }
        )+
    };
}

pub fn t0() -> Timestamp {
    Timestamp::parse("2026-11-23T09:00:00Z").unwrap()
}

/// Dev settings for a test server: loopback port 0, its own data directory, no demo data.
pub fn test_settings(data_dir: &std::path::Path, extra: &[(&str, &str)]) -> Settings {
    let mut env = BTreeMap::new();
    env.insert("PASSKEY_BIND".to_string(), "127.0.0.1:0".to_string());
    env.insert(
        "PASSKEY_DATA_DIR".to_string(),
        data_dir.display().to_string(),
    );
    env.insert("PASSKEY_DEMO_DATA".to_string(), "false".to_string());
    for (k, v) in extra {
        env.insert(k.to_string(), v.to_string());
    }
    Settings::from_layers(None, &env).expect("test settings")
}

/// The real app serving on an ephemeral loopback port until dropped.
pub struct TestServer {
    pub base: String,
    pub clock: Arc<ManualClock>,
    pub store: Arc<dyn Store>,
    /// The running app's state: its vault, policy engine, settings.
    pub state: passkey::app::AppState,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    handle: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

impl TestServer {
    pub async fn start(settings: Settings, store: Arc<dyn Store>) -> TestServer {
        Self::start_with_directory(settings, store, None).await
    }

    /// As `start`, with people's group memberships from `directory` when given.
    pub async fn start_with_directory(
        settings: Settings,
        store: Arc<dyn Store>,
        directory: Option<Arc<dyn GroupDirectory>>,
    ) -> TestServer {
        Self::start_with_directories(settings, store, directory, None).await
    }

    /// As `start`, listening on `listener` (say, on an address other machines can reach).
    pub async fn start_on(
        settings: Settings,
        store: Arc<dyn Store>,
        listener: tokio::net::TcpListener,
    ) -> TestServer {
        Self::start_listening(settings, store, None, None, listener).await
    }

    /// As `start`, with group memberships and the people directory given where they are.
    pub async fn start_with_directories(
        settings: Settings,
        store: Arc<dyn Store>,
        directory: Option<Arc<dyn GroupDirectory>>,
        people: Option<Arc<dyn UserDirectory>>,
    ) -> TestServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        Self::start_listening(settings, store, directory, people, listener).await
    }

    async fn start_listening(
        settings: Settings,
        store: Arc<dyn Store>,
        directory: Option<Arc<dyn GroupDirectory>>,
        people: Option<Arc<dyn UserDirectory>>,
        listener: tokio::net::TcpListener,
    ) -> TestServer {
        let clock = Arc::new(ManualClock::new(t0()));
        let app = match (directory, people) {
            (groups, Some(people)) => {
                App::with_directories(
                    settings,
                    store.clone(),
                    clock.clone() as Arc<dyn Clock>,
                    groups.unwrap_or_else(|| Arc::new(StaticGroupDirectory::new())),
                    people,
                )
                .await
            }
            (Some(d), None) => {
                App::with_directory(settings, store.clone(), clock.clone() as Arc<dyn Clock>, d)
                    .await
            }
            (None, None) => {
                App::with_store(settings, store.clone(), clock.clone() as Arc<dyn Clock>).await
            }
        }
        .expect("build app");
        let state = app.state.clone();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let handle = tokio::spawn(app.run_until_stopped(listener, async move {
            let _ = stopped.await;
        }));
        TestServer {
            base,
            clock,
            store,
            state,
            stop: Some(stop),
            handle: Some(handle),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Stops the server gracefully and waits for it.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(handle) = self.handle.take() {
            handle.await.unwrap().unwrap();
        }
    }
}

/// A submission for db-prod with one user approver (`aad-2`) at t0, as the request flow would
/// build it; tests that need a stored decision trace evaluate this.
pub fn submission_context(
    sensitivity: passkey::domain::Sensitivity,
) -> passkey::policy::PolicyContext {
    use passkey::domain::*;
    use passkey::policy::context::*;
    PolicyContext {
        action: Action::Submit,
        now: t0(),
        requester: Person {
            user_id: 1,
            aad_object_id: "aad-1".into(),
            email: None,
            role: Role::Requester,
            groups: vec![],
        },
        actor: None,
        record: RecordFacts {
            record_id: 1,
            vault_uid: "U1".into(),
            title: "db-prod".into(),
            sensitivity,
            owner_user_id: None,
        },
        request: RequestFacts {
            request_id: None,
            status: None,
            requested_duration_secs: 3600,
            justification: "investigating INC-4411".into(),
            ticket_id: None,
            break_glass: false,
            granted_lease_secs: 0,
            extension_count: 0,
        },
        folder_access: FolderAccess {
            permission: Some(FolderPermission::Editor),
        },
        authorities: vec![AuthorityFacts {
            authority_id: 1,
            kind: AuthorityKind::Approver,
            principal_type: PrincipalType::User,
            principal: "aad-2".into(),
            stage: 1,
            valid_from: t0().minus(time::Duration::days(1)),
            valid_to: None,
            revoked: false,
        }],
        approvals: vec![],
        extension_secs: None,
        actor_folder_access: None,
    }
}

/// Revokes every authority in force on the record titled `title` and grants APPROVER to each
/// `(principal type, principal)` at stage 1, from t0.
pub async fn only_approvers(
    store: &dyn Store,
    title: &str,
    approvers: &[(passkey::domain::PrincipalType, &str)],
) {
    use passkey::store::{NewAuditEvent, NewAuthority};
    let record = store
        .records_by_title_prefix(title, 1)
        .await
        .unwrap()
        .remove(0);
    let resource = store
        .governed_resource_for_record(record.id)
        .await
        .unwrap()
        .expect("a governed record");
    for a in store.active_authorities(resource.id, t0()).await.unwrap() {
        store
            .revoke_authority(
                a.id,
                "test",
                "replaced for the test",
                &NewAuditEvent::new("test", "AUTHORITY_REVOKED", t0()),
            )
            .await
            .unwrap();
    }
    for (principal_type, principal) in approvers {
        store
            .add_authority(
                &NewAuthority {
                    resource_id: resource.id,
                    authority: passkey::domain::AuthorityKind::Approver,
                    principal_type: *principal_type,
                    principal: principal.to_string(),
                    stage: 1,
                    valid_from: t0(),
                    valid_to: None,
                    created_by: "test".into(),
                },
                &NewAuditEvent::new("test", "AUTHORITY_GRANTED", t0()).record(record.id),
            )
            .await
            .unwrap();
    }
}

/// Everything a person reads on an Adaptive Card — text blocks, fact titles and values, button
/// titles, choice titles — one item per line, in card order.
pub fn card_text(card: &serde_json::Value) -> String {
    fn walk(v: &serde_json::Value, out: &mut Vec<String>) {
        match v {
            serde_json::Value::Object(map) => {
                let kind = map.get("type").and_then(|t| t.as_str()).unwrap_or_default();
                for key in ["text", "title", "value", "placeholder", "label"] {
                    // A fact's value is read; an input's value is what it submits, not text.
                    if key == "value" && kind.starts_with("Input.") {
                        continue;
                    }
                    if let Some(s) = map.get(key).and_then(|t| t.as_str()) {
                        out.push(s.to_string());
                    }
                }
                for (key, child) in map {
                    match (key.as_str(), child) {
                        ("data", _) => {}
                        // A choice's value is what it submits; its title is what is read.
                        ("choices", serde_json::Value::Array(choices)) => out.extend(
                            choices
                                .iter()
                                .filter_map(|c| c["title"].as_str().map(String::from)),
                        ),
                        _ => walk(child, out),
                    }
                }
            }
            serde_json::Value::Array(items) => items.iter().for_each(|i| walk(i, out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(card, &mut out);
    out.join("\n")
}

/// What a person reads in a bot message: its text, then its card's text.
pub fn message_text(activity: &serde_json::Value) -> String {
    let mut parts = Vec::new();
    if let Some(text) = activity["text"].as_str().filter(|t| !t.is_empty()) {
        parts.push(text.to_string());
    }
    if let Some(card) = activity["attachments"][0].get("content") {
        parts.push(card_text(card));
    }
    parts.join("\n")
}

static ADAPTIVE_CARD_SCHEMA: std::sync::LazyLock<jsonschema::Validator> =
    std::sync::LazyLock::new(|| {
        let schema: serde_json::Value =
            serde_json::from_str(include_str!("../../schemas/adaptive-card-1.5.json")).unwrap();
        jsonschema::draft6::options()
            .should_validate_formats(true)
            .build(&schema)
            .expect("the Adaptive Card 1.5 schema compiles offline")
    });

/// Where `card` breaks the official Adaptive Card 1.5 schema (empty: it is valid).
pub fn adaptive_card_errors(card: &serde_json::Value) -> Vec<String> {
    ADAPTIVE_CARD_SCHEMA
        .iter_errors(card)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect()
}
