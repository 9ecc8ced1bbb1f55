//! Audit chain benchmark, on SQLite and on Postgres:
//!
//! 1. **Append throughput**: `AuditStore::append_audit` — one event, its own transaction (SQLite:
//!    linked inline under `BEGIN IMMEDIATE`; Postgres: inserted unlinked, the audit linker task
//!    linking beside the writers) — with 1 writer and with 16 concurrent writers: events/s
//!    committed, and events/s until the last one was linked. Afterwards the chain is checked:
//!    contiguous, unforked.
//! 2. **Verifier speed**: `AuditTrail::verify` over the whole chain in the database (paged reads,
//!    hash recomputation, checkpoint signatures), and the pure verifier over events already in
//!    memory (hash recomputation only).
//!
//! `cargo bench --bench audit`. Environment: `PASSKEY_BENCH_APPENDS` (5000 per level),
//! `PASSKEY_BENCH_VERIFY_EVENTS` (100000; the chain is topped up with the batch append),
//! `PASSKEY_BENCH_DATABASES` (`sqlite,postgres`), `PASSKEY_TEST_DATABASE_URL` as in the tests
//! (a scratch database `passkey_bench_<uuid>` is created and dropped).

#[path = "common/scratch_pg.rs"]
mod scratch_pg;

use passkey::audit::verify::{GENESIS_HASH, VerifyOptions, verify_all};
use passkey::audit::{AuditTrail, LocalEd25519Signer};
use passkey::config::AuditSettings;
use passkey::domain::{Clock, SystemClock};
use passkey::store::{HealthStore, NewAuditEvent, PgStore, SqliteStore, Store};
use scratch_pg::ScratchPg;
use serde_json::json;
use std::sync::Arc;
use std::time::Instant;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.replace('_', "").parse().ok())
        .unwrap_or(default)
}

fn event(writer: usize, i: usize) -> NewAuditEvent {
    NewAuditEvent::new(
        format!("user:{writer}"),
        "REQUEST_SUBMITTED",
        SystemClock.now(),
    )
    .request(i as i64)
    .detail(json!({ "record": "db-prod", "duration_secs": 7200, "reason": "INC-4411 restore" }))
}

/// Appends `total` events with `writers` concurrent writers, the audit linker running beside
/// them as in `serve` (Postgres; SQLite links inline). Returns events/s committed, and events/s
/// counted until the last of them was linked into the chain.
async fn append_level(store: Arc<dyn Store>, writers: usize, total: usize) -> (f64, f64) {
    let each = total / writers;
    let linker = passkey::audit::linker::spawn(store.clone());
    let started = Instant::now();
    let tasks: Vec<_> = (0..writers)
        .map(|w| {
            let store = store.clone();
            tokio::spawn(async move {
                for i in 0..each {
                    store.append_audit(&event(w, i)).await.unwrap();
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let committed = started.elapsed();
    store.link_pending().await.unwrap();
    let linked = started.elapsed();
    drop(linker);
    let n = (each * writers) as f64;
    (n / committed.as_secs_f64(), n / linked.as_secs_f64())
}

async fn run(name: &str, store: Arc<dyn Store>) {
    let appends = env_usize("PASSKEY_BENCH_APPENDS", 5000);
    let verify_events = env_usize("PASSKEY_BENCH_VERIFY_EVENTS", 100_000);
    println!("== {name}");
    // Warm-up: connections open, statements prepared.
    append_level(store.clone(), 16, 320).await;
    for writers in [1, 16] {
        let (rate, linked) = append_level(store.clone(), writers, appends).await;
        println!(
            "append, {writers:>2} writer(s): {rate:>8.0} events/s committed, {linked:>8.0} events/s linked ({appends} events)"
        );
    }
    let events = store.audit_events_after(0, i64::MAX).await.unwrap();
    for (i, e) in events.iter().enumerate() {
        assert_eq!(e.seq, i as i64 + 1, "contiguous");
        assert_eq!(
            e.prev_hash,
            if i == 0 {
                GENESIS_HASH
            } else {
                &events[i - 1].hash
            },
            "unforked"
        );
    }
    // Top up to the verification size through the batch append, a checkpoint every 1000.
    let dir = tempfile::tempdir().unwrap();
    let signer = LocalEd25519Signer::open_or_create(&dir.path().join("k.p8")).unwrap();
    let trail = AuditTrail::new(
        store.clone(),
        Arc::new(signer),
        Arc::new(SystemClock),
        AuditSettings::default(),
    );
    let mut have = events.len();
    let batch: Vec<NewAuditEvent> = (0..1000).map(|i| event(0, i)).collect();
    while have < verify_events {
        let n = (verify_events - have).min(batch.len());
        store.append_audit_batch(&batch[..n]).await.unwrap();
        trail.checkpoint().await.unwrap();
        have += n;
    }
    let started = Instant::now();
    let report = trail.verify().await.unwrap();
    let secs = started.elapsed().as_secs_f64();
    assert!(report.ok(), "{}", report.summary());
    println!(
        "verify from the database: {:>8.0} events/s ({} events, {} checkpoints, {:.2} s)",
        report.events as f64 / secs,
        report.events,
        report.checkpoints_verified,
        secs
    );
    let events = store.audit_events_after(0, i64::MAX).await.unwrap();
    let started = Instant::now();
    let report = verify_all(
        VerifyOptions {
            from_seq: 0,
            to_seq: Some(events.len() as i64),
            max_checkpoint_delay: None,
            as_of: SystemClock.now(),
        },
        &events,
        vec![],
        &[],
    );
    let secs = started.elapsed().as_secs_f64();
    assert!(report.ok());
    println!(
        "verify in memory:         {:>8.0} events/s ({} events, {:.2} s)",
        report.events as f64 / secs,
        report.events,
        secs
    );
}

#[tokio::main]
async fn main() {
    let databases =
        std::env::var("PASSKEY_BENCH_DATABASES").unwrap_or_else(|_| "sqlite,postgres".to_string());
    if databases.contains("sqlite") {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(
            SqliteStore::open(&dir.path().join("bench.db"), 16)
                .await
                .unwrap(),
        );
        store.migrate().await.unwrap();
        run("SQLite (file, WAL, synchronous=NORMAL)", store).await;
    }
    if databases.contains("postgres") {
        let Some(scratch) = ScratchPg::create().await else {
            return;
        };
        {
            let store = Arc::new(PgStore::connect(&scratch.url(), 20).await.unwrap());
            store.migrate().await.unwrap();
            run("Postgres", store.clone()).await;
            store.pool().close().await;
        }
        scratch.drop_now().await;
    }
}
