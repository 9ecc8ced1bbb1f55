//! The audit sequencer (#20.2): on Postgres a change's transaction inserts its audit event
//! unlinked and the linker links committed events into the chain afterwards; SQLite links as it
//! inserts. Concurrent writers and linkers make one chain that verifies; a rolled-back change
//! leaves no event; an event committed late is linked after the ones committed before it; the
//! database allows an event exactly one change, its linking; a write committing alone links
//! its own event and never waits for a link pass; the linker task links what concurrent writes
//! leave.

use crate::common;

use common::{Db, RawSql, t0};
use passkey::audit::{AuditTrail, LocalEd25519Signer};
use passkey::config::AuditSettings;
use passkey::domain::ManualClock;
use passkey::store::{AuditStore, NewAuditEvent, PgStore, Store};
use serde_json::json;
use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

crate::on_both_databases!(concurrent_writers_and_linkers_make_one_chain);

fn trail(store: Arc<dyn Store>, keys: &tempfile::TempDir) -> AuditTrail {
    let signer = LocalEd25519Signer::open_or_create(&keys.path().join("audit.p8")).unwrap();
    AuditTrail::new(
        store,
        Arc::new(signer),
        Arc::new(ManualClock::new(t0())),
        AuditSettings::default(),
    )
}

/// Verifies the whole chain (signed checkpoints included): asserts it is intact and answers how
/// many events it holds.
async fn verified_events(store: Arc<dyn Store>) -> u64 {
    let keys = tempfile::tempdir().unwrap();
    let report = trail(store, &keys).verify().await.unwrap();
    assert!(report.ok(), "{}", report.summary());
    report.events
}

fn event(actor: &str, n: usize) -> NewAuditEvent {
    NewAuditEvent::new(actor, "ROLE_CHANGED", t0()).detail(json!({ "n": n }))
}

/// 16 writers append while three linkers run passes at the same time as the linker task: every
/// event is linked exactly once, seqs 1–400 without a gap, one chain that verifies.
async fn concurrent_writers_and_linkers_make_one_chain(db: Db) {
    let _task = passkey::audit::linker::spawn(db.store.clone());
    let writing = Arc::new(AtomicBool::new(true));
    let linkers: Vec<_> = (0..3)
        .map(|_| {
            let (store, writing) = (db.store.clone(), writing.clone());
            tokio::spawn(async move {
                while writing.load(Ordering::Relaxed) {
                    store.link_pending().await.unwrap();
                }
            })
        })
        .collect();
    let writers: Vec<_> = (0..16)
        .map(|w| {
            let store = db.store.clone();
            tokio::spawn(async move {
                for n in 0..25 {
                    store
                        .append_audit(&event(&format!("user:{w}"), n))
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    for w in writers {
        w.await.unwrap();
    }
    writing.store(false, Ordering::Relaxed);
    for l in linkers {
        l.await.unwrap();
    }
    let events = db.store.audit_events_after(0, 1000).await.unwrap();
    assert_eq!(events.len(), 400);
    assert!(
        events.iter().map(|e| e.seq).eq(1..=400),
        "seqs 1–400 in order"
    );
    let ids: HashSet<_> = events.iter().map(|e| e.event_id).collect();
    assert_eq!(ids.len(), 400, "every event once");
    assert_eq!(db.store.unlinked_events().await.unwrap().count, 0);
    assert_eq!(verified_events(db.store.clone()).await, 400);
}

async fn pg() -> Option<(common::PgTestDb, Arc<PgStore>)> {
    let db = common::fresh_pg().await?;
    let store = db.store.clone();
    Some((db, store))
}

/// Inserts an unlinked event in `tx` as the store's append does.
async fn insert_unlinked(tx: &mut sqlx::PgConnection, actor: &str) {
    sqlx::query(
        "INSERT INTO audit_events (event_id, actor, action, detail, created_at)
         VALUES ($1, $2, 'ROLE_CHANGED', '{}'::jsonb, $3)",
    )
    .bind(uuid::Uuid::new_v4())
    .bind(actor)
    .bind(t0())
    .execute(tx)
    .await
    .unwrap();
}

async fn actors(store: &PgStore) -> Vec<String> {
    store
        .audit_events_after(0, 1000)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.actor)
        .collect()
}

/// A transaction that inserted its event before another one committed, but commits after that
/// one was linked, is linked in a later pass, after it: the chain order is the link order, and
/// the chain verifies. A transaction that rolls back leaves no event, and a pass while it is
/// open does not see it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_late_commit_is_linked_afterwards_and_a_rollback_leaves_nothing() {
    let Some((_db, store)) = pg().await else {
        return;
    };
    store.append_audit(&event("user:first", 0)).await.unwrap();
    let mut late = store.pool().begin().await.unwrap();
    insert_unlinked(&mut late, "user:late").await;
    let mut rolled_back = store.pool().begin().await.unwrap();
    insert_unlinked(&mut rolled_back, "user:rolled-back").await;
    store.append_audit(&event("user:second", 1)).await.unwrap();
    // Each append committed alone and linked its own event; the open transactions' events were
    // invisible to it, and are to a pass now.
    assert_eq!(store.link_pending().await.unwrap(), 0);
    assert_eq!(actors(&store).await, ["user:first", "user:second"]);
    rolled_back.rollback().await.unwrap();
    late.commit().await.unwrap();
    assert_eq!(store.link_pending().await.unwrap(), 1);
    assert_eq!(
        actors(&store).await,
        ["user:first", "user:second", "user:late"]
    );
    let orders = store
        .texts("SELECT link_order::text FROM audit_events ORDER BY seq")
        .await
        .unwrap();
    let orders: Vec<i64> = orders.iter().map(|o| o.parse().unwrap()).collect();
    assert!(
        orders[2] < orders[1],
        "inserted before the second, linked after it: {orders:?}"
    );
    assert_eq!(
        store
            .texts("SELECT actor FROM audit_events WHERE actor = 'user:rolled-back'")
            .await
            .unwrap()
            .len(),
        0
    );
    assert_eq!(verified_events(store.clone()).await, 3);
}

/// The linker task links what writes committing together leave unlinked (a write links its
/// own events only when it commits alone): with eight writers and nothing reading the chain,
/// every event ends up linked once, and the chain verifies. (Polled until linked; the sweep
/// bounds the wait at about a second.)
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_linker_task_links_what_concurrent_writes_leave() {
    let Some((_db, store)) = pg().await else {
        return;
    };
    let _task = passkey::audit::linker::spawn(store.clone()).expect("Postgres links afterwards");
    let writers: Vec<_> = (0..8)
        .map(|w| {
            let store = store.clone();
            tokio::spawn(async move {
                for n in 0..5 {
                    store
                        .append_audit(&event(&format!("user:{w}"), n))
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    for w in writers {
        w.await.unwrap();
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while store.unlinked_events().await.unwrap().count > 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the linker task left events unlinked"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(verified_events(store.clone()).await, 40);
}

/// A write committing alone links its own event in its own transaction: it is in the chain
/// when the write returns, with no linker task and no read of the chain.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_write_committing_alone_is_in_the_chain_when_it_returns() {
    let Some((_db, store)) = pg().await else {
        return;
    };
    for n in 0..3 {
        store
            .append_audit(&event(&format!("user:{n}"), n))
            .await
            .unwrap();
        assert_eq!(store.unlinked_events().await.unwrap().count, 0, "write {n}");
    }
    assert_eq!(actors(&store).await, ["user:0", "user:1", "user:2"]);
    verified_events(store.clone()).await;
}

/// A write never waits for a link pass: while another transaction holds the linker lock, the
/// write commits at once with its event unlinked, and the next pass links it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_write_never_waits_for_a_link_pass() {
    let Some((_db, store)) = pg().await else {
        return;
    };
    let mut pass = store.pool().begin().await.unwrap();
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(PgStore::LINKER_LOCK)
        .execute(&mut *pass)
        .await
        .unwrap();
    tokio::time::timeout(
        std::time::Duration::from_secs(30),
        store.append_audit(&event("user:writer", 0)),
    )
    .await
    .expect("the write waited for the linker lock")
    .unwrap();
    assert_eq!(store.unlinked_events().await.unwrap().count, 1);
    pass.rollback().await.unwrap();
    assert_eq!(store.link_pending().await.unwrap(), 1);
    assert_eq!(actors(&store).await, ["user:writer"]);
}

/// A store write whose transaction fails commits none of its events (INV-3): here a batch of
/// which the last event is refused by Postgres (a NUL character in a JSON string) leaves none of
/// the 300 before it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failed_write_leaves_no_unlinked_event_behind() {
    let Some((_db, store)) = pg().await else {
        return;
    };
    let mut batch: Vec<NewAuditEvent> = (0..300).map(|n| event("user:batch", n)).collect();
    batch.push(
        NewAuditEvent::new("user:batch", "ROLE_CHANGED", t0()).detail(json!({ "name": "a\u{0}b" })),
    );
    assert!(store.append_audit_batch(&batch).await.is_err());
    assert_eq!(store.unlinked_events().await.unwrap().count, 0);
    assert_eq!(store.link_pending().await.unwrap(), 0);
    assert_eq!(store.audit_head().await.unwrap().0, 0);
    assert!(
        store
            .texts("SELECT actor FROM audit_events")
            .await
            .unwrap()
            .is_empty()
    );
}

async fn refused(store: &PgStore, sql: &str) {
    let err = store.exec(sql).await.expect_err(sql);
    assert!(
        err.to_string().contains("INV-2") || err.to_string().contains("audit_events_linked_whole"),
        "{sql}: {err}"
    );
}

/// The database allows an audit event one change: its linking, seq, prev hash and hash from
/// NULL to values with nothing else changed. A linked event cannot be changed or linked again,
/// content cannot change while linking, a half link is refused, nothing is deleted, and an
/// event cannot be inserted already linked.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_database_allows_an_event_only_to_be_linked_once() {
    let Some((_db, store)) = pg().await else {
        return;
    };
    store.append_audit(&event("user:linked", 0)).await.unwrap();
    store.link_pending().await.unwrap();
    insert_unlinked(&mut store.pool().acquire().await.unwrap(), "user:unlinked").await;
    let h = "ab".repeat(32);
    refused(
        &store,
        "UPDATE audit_events SET actor = 'user:else' WHERE seq = 1",
    )
    .await;
    refused(
        &store,
        &format!("UPDATE audit_events SET seq = 7, hash = '{h}' WHERE seq = 1"),
    )
    .await;
    refused(
        &store,
        "UPDATE audit_events SET seq = NULL, prev_hash = NULL, hash = NULL WHERE seq = 1",
    )
    .await;
    refused(
        &store,
        &format!("UPDATE audit_events SET seq = 2, prev_hash = '{h}', hash = '{h}', actor = 'user:else' WHERE seq IS NULL"),
    )
    .await;
    refused(
        &store,
        &format!("UPDATE audit_events SET seq = 2, prev_hash = '{h}', hash = '{h}', detail = '{{\"x\": 1}}' WHERE seq IS NULL"),
    )
    .await;
    refused(
        &store,
        &format!("UPDATE audit_events SET hash = '{h}' WHERE seq IS NULL"),
    )
    .await;
    refused(&store, "DELETE FROM audit_events WHERE seq = 1").await;
    refused(&store, "DELETE FROM audit_events WHERE seq IS NULL").await;
    refused(
        &store,
        &format!(
            "INSERT INTO audit_events (event_id, actor, action, detail, created_at, seq, prev_hash, hash)
             VALUES (gen_random_uuid(), 'user:x', 'ROLE_CHANGED', '{{}}'::jsonb, now(), 9, '{h}', '{h}')"
        ),
    )
    .await;
    // Nothing changed: the linker links the waiting event, and the chain verifies.
    assert_eq!(store.link_pending().await.unwrap(), 1);
    assert_eq!(actors(&store).await, ["user:linked", "user:unlinked"]);
    verified_events(store.clone()).await;
}

/// Rows of `audit_events` this transaction has read so far, by any scan: the backend's own
/// counters for the transaction (`pg_stat_xact_user_tables`), which see into functions too.
async fn audit_rows_read(tx: &mut sqlx::PgConnection) -> i64 {
    sqlx::query_scalar(
        "SELECT (COALESCE(seq_tup_read, 0) + COALESCE(idx_tup_fetch, 0))::bigint
         FROM pg_stat_xact_user_tables WHERE relname = 'audit_events'",
    )
    .fetch_one(tx)
    .await
    .unwrap()
}

/// A link pass reads the events it links and no others, whatever the planner believes about
/// the table: with statistics taken while the table was empty (as after a quiet night, before
/// autovacuum catches up with a burst of expiries), both statements of a pass once fetched
/// every unlinked event, so linking 200,000 expired leases' events took 39 s
/// (docs/benchmarks.md). Rows are counted, not timed: the pass's statements run in a
/// transaction that is rolled back, and the transaction's own table counters say how many rows
/// of `audit_events` each read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_link_pass_reads_only_the_events_it_links() {
    let Some((_db, store)) = pg().await else {
        return;
    };
    sqlx::query("ANALYZE audit_events")
        .execute(store.pool())
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO audit_events (event_id, actor, action, detail, created_at)
         SELECT gen_random_uuid(), 'user:burst', 'ROLE_CHANGED', jsonb_build_object('n', g), $1
         FROM generate_series(1, 5000) g",
    )
    .bind(t0())
    .execute(store.pool())
    .await
    .unwrap();
    let mut tx = store.pool().begin().await.unwrap();
    let before = audit_rows_read(&mut tx).await;
    let orders: Vec<i64> = sqlx::query(PgStore::LINK_READ)
        .bind(500_i64)
        .fetch_all(&mut *tx)
        .await
        .unwrap()
        .iter()
        .map(|row| sqlx::Row::get(row, "link_order"))
        .collect();
    let after_read = audit_rows_read(&mut tx).await;
    assert_eq!(orders.len(), 500);
    assert!(orders.is_sorted(), "in insertion order");
    let seqs: Vec<i64> = (1..=500).collect();
    let hashes: Vec<String> = (0..500).map(|n| format!("{n:064x}")).collect();
    let linked: Option<i64> = sqlx::query_scalar(PgStore::LINK_STATEMENT)
        .bind(&orders)
        .bind(&seqs)
        .bind(&hashes)
        .bind(&hashes)
        .bind(500_i64)
        .bind(&hashes[499])
        .fetch_one(&mut *tx)
        .await
        .unwrap();
    let after_link = audit_rows_read(&mut tx).await;
    tx.rollback().await.unwrap();
    assert_eq!(linked, Some(500));
    assert_eq!(
        after_read - before,
        500,
        "the read stops after the 500 it takes of the 5,000 waiting"
    );
    assert_eq!(
        after_link - after_read,
        500,
        "the link reads the 500 it links, not all 5,000 waiting"
    );
    // Nothing was linked: the transaction rolled back.
    assert_eq!(store.unlinked_events().await.unwrap().count, 5000);
}

/// A link pass that waited for the linker lock reads what the pass before it committed: the
/// read is a statement of its own, after the lock is granted. Read with a snapshot from before
/// the wait — the lock and the read in one statement, or in one STABLE function (tried: this
/// test then fails) — the events the other pass linked would still look unlinked, and the pass
/// would fail with "read N unlinked events but could link only 0".
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_pass_that_waited_for_the_lock_reads_after_the_previous_pass() {
    let Some((_db, store)) = pg().await else {
        return;
    };
    // Two committed, unlinked events: appended while another transaction held the lock.
    let mut holder = store.pool().begin().await.unwrap();
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(PgStore::LINKER_LOCK)
        .execute(&mut *holder)
        .await
        .unwrap();
    store.append_audit(&event("user:first", 0)).await.unwrap();
    store.append_audit(&event("user:second", 1)).await.unwrap();
    assert_eq!(store.unlinked_events().await.unwrap().count, 2);
    holder.rollback().await.unwrap();

    // A pass in progress: it holds the lock and has linked both, not yet committed.
    let mut first_pass = store.pool().begin().await.unwrap();
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(PgStore::LINKER_LOCK)
        .execute(&mut *first_pass)
        .await
        .unwrap();
    let rows = sqlx::query(PgStore::LINK_READ)
        .bind(500_i64)
        .fetch_all(&mut *first_pass)
        .await
        .unwrap();
    assert_eq!(rows.len(), 2);
    let orders: Vec<i64> = rows
        .iter()
        .map(|r| sqlx::Row::get(r, "link_order"))
        .collect();
    let hashes: Vec<String> = (0..2).map(|n| format!("{n:064x}")).collect();
    let linked: Option<i64> = sqlx::query_scalar(PgStore::LINK_STATEMENT)
        .bind(&orders)
        .bind(vec![1_i64, 2])
        .bind(&hashes)
        .bind(&hashes)
        .bind(2_i64)
        .bind(&hashes[1])
        .fetch_one(&mut *first_pass)
        .await
        .unwrap();
    assert_eq!(linked, Some(2));

    // The next pass waits for the lock...
    let waiting = tokio::spawn({
        let store = store.clone();
        async move { store.link_pass().await }
    });
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let waiters: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted
             AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
        )
        .fetch_one(store.pool())
        .await
        .unwrap();
        if waiters == 1 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the second pass never waited for the lock"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    // ...and, once the first commits, finds nothing left to link.
    first_pass.commit().await.unwrap();
    assert_eq!(waiting.await.unwrap().unwrap(), 0);
    assert_eq!(store.unlinked_events().await.unwrap().count, 0);
}
