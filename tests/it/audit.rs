//! Audit you can prove: the hash chain written through the real stores, tampered with the way an
//! attacker with DDL rights would (the INV-2 trigger disabled in a superuser session on Postgres,
//! dropped and recreated on SQLite), then verified — the verifier names the first bad seq. Signed
//! checkpoints (local Ed25519 key, a remote-style ES256 signer, key rotation), the checkpoint and
//! verify jobs, 16 concurrent writers, 100k events, and `admin audit verify` in chat.

use crate::common;

use async_trait::async_trait;
use common::{Db, RawSql, t0};
use passkey::audit::{
    Algorithm, AuditTrail, LocalEd25519Signer, Problem, PublicKey, Report, SignError, Signature,
    Signer,
};
use passkey::config::AuditSettings;
use passkey::domain::{Clock, ManualClock};
use passkey::governance::lifecycle::{Notice, Notifier};
use passkey::store::{AuditStore, NewAuditEvent, Store};
use serde_json::json;
use std::sync::{Arc, Mutex};
use time::Duration;

fn settings(every_secs: u64) -> AuditSettings {
    AuditSettings {
        checkpoint_every_events: 50,
        checkpoint_every_secs: every_secs,
        ..AuditSettings::default()
    }
}

struct Fixture {
    trail: AuditTrail,
    clock: Arc<ManualClock>,
    _keys: tempfile::TempDir,
}

fn fixture(db: &Db, every_secs: u64) -> Fixture {
    let keys = tempfile::tempdir().unwrap();
    let signer = LocalEd25519Signer::open_or_create(&keys.path().join("audit.p8")).unwrap();
    let clock = Arc::new(ManualClock::new(t0()));
    Fixture {
        trail: AuditTrail::new(
            db.store.clone(),
            Arc::new(signer),
            clock.clone(),
            settings(every_secs),
        ),
        clock,
        _keys: keys,
    }
}

/// Appends `n` events through the real append, one every 2 s, the checkpoint job looking after
/// each (a checkpoint every 50 events).
async fn write_events(store: &dyn Store, f: &Fixture, n: usize) {
    for i in 0..n {
        store
            .append_audit(
                &NewAuditEvent::new("user:1", "REQUEST_SUBMITTED", f.clock.now())
                    .request(i as i64 + 1)
                    .detail(json!({ "reason": format!("INC-{i}"), "hours": 2 })),
            )
            .await
            .unwrap();
        f.clock.advance(Duration::seconds(2));
        f.trail.checkpoint_if_due().await.unwrap();
    }
}

fn first(report: &Report) -> (i64, Problem) {
    let f = report
        .first_bad
        .as_ref()
        .unwrap_or_else(|| panic!("expected a finding: {}", report.summary()));
    (f.seq, f.problem)
}

/// Runs `sql` as an attacker with DDL rights: the INV-2 triggers are switched off around it.
async fn tamper(db: &Db, table: &str, sql: &[&str]) {
    // The database refuses it first.
    assert!(
        db.raw.exec(sql[0]).await.is_err(),
        "INV-2 should refuse: {}",
        sql[0]
    );
    if db.engine == "postgres" {
        db.raw
            .exec(&format!("ALTER TABLE {table} DISABLE TRIGGER USER"))
            .await
            .unwrap();
        for s in sql {
            db.raw.exec(s).await.unwrap();
        }
        db.raw
            .exec(&format!("ALTER TABLE {table} ENABLE TRIGGER USER"))
            .await
            .unwrap();
    } else {
        let triggers = db
            .raw
            .texts(&format!(
                "SELECT sql FROM sqlite_master WHERE type = 'trigger' AND tbl_name = '{table}'"
            ))
            .await
            .unwrap();
        let names = db
            .raw
            .texts(&format!(
                "SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name = '{table}'"
            ))
            .await
            .unwrap();
        // One script, so it runs on one connection: drop, tamper, put the triggers back.
        let mut script: Vec<String> = names.iter().map(|n| format!("DROP TRIGGER {n}")).collect();
        script.extend(sql.iter().map(|s| s.to_string()));
        script.extend(triggers);
        db.raw.exec(&script.join(";\n")).await.unwrap();
    }
}

async fn hash_at(db: &Db, seq: i64) -> String {
    db.raw
        .texts(&format!("SELECT hash FROM audit_events WHERE seq = {seq}"))
        .await
        .unwrap()
        .remove(0)
}

async fn untouched_trail_verifies_with_signed_checkpoints(db: Db) {
    let f = fixture(&db, 300);
    write_events(db.store.as_ref(), &f, 200).await;
    let report = f.trail.verify().await.unwrap();
    assert!(report.ok(), "{}", report.summary());
    assert_eq!(report.events, 200);
    assert_eq!(
        report.checkpoints_verified, 4,
        "at once, then every 50 events: 1, 51, 101, 151"
    );
    assert_eq!(report.key_ids.len(), 1);
    // The stored checkpoints are insert-only too.
    assert!(
        db.raw
            .exec("UPDATE audit_checkpoints SET head_hash = 'x' WHERE seq = 51")
            .await
            .is_err()
    );
    assert!(db.raw.exec("DELETE FROM audit_public_keys").await.is_err());
}

async fn an_edited_detail_is_found_at_its_seq(db: Db) {
    let f = fixture(&db, 300);
    write_events(db.store.as_ref(), &f, 120).await;
    let detail = if db.engine == "postgres" {
        "'{\"reason\": \"INC-nothing-to-see\", \"hours\": 2}'::jsonb"
    } else {
        "'{\"reason\": \"INC-nothing-to-see\", \"hours\": 2}'"
    };
    tamper(
        &db,
        "audit_events",
        &[&format!(
            "UPDATE audit_events SET detail = {detail} WHERE seq = 77"
        )],
    )
    .await;
    let report = f.trail.verify().await.unwrap();
    assert_eq!(
        first(&report),
        (77, Problem::Edited),
        "{}",
        report.summary()
    );
}

async fn a_deleted_row_is_found_at_its_seq(db: Db) {
    let f = fixture(&db, 300);
    write_events(db.store.as_ref(), &f, 120).await;
    tamper(
        &db,
        "audit_events",
        &["DELETE FROM audit_events WHERE seq = 64"],
    )
    .await;
    let report = f.trail.verify().await.unwrap();
    assert_eq!(
        first(&report),
        (64, Problem::Deleted),
        "{}",
        report.summary()
    );
    // The last row deleted: the chain head (and the last checkpoint) still name it.
    let f = fixture(&db, 300);
    tamper(
        &db,
        "audit_events",
        &["DELETE FROM audit_events WHERE seq = 120"],
    )
    .await;
    let report = f.trail.verify().await.unwrap();
    assert_eq!(first(&report).0, 64, "the first problem is still the first");
}

async fn swapped_rows_are_found_at_the_first_of_them(db: Db) {
    let f = fixture(&db, 300);
    write_events(db.store.as_ref(), &f, 120).await;
    tamper(
        &db,
        "audit_events",
        &[
            "UPDATE audit_events SET seq = -1 WHERE seq = 31",
            "UPDATE audit_events SET seq = 31 WHERE seq = 32",
            "UPDATE audit_events SET seq = 32 WHERE seq = -1",
        ],
    )
    .await;
    let report = f.trail.verify().await.unwrap();
    assert_eq!(
        first(&report),
        (31, Problem::Reordered),
        "{}",
        report.summary()
    );
}

async fn a_forged_row_is_found_where_it_was_slipped_in(db: Db) {
    let f = fixture(&db, 300);
    write_events(db.store.as_ref(), &f, 120).await;
    // A row after the head, hash made up: the head row still says 120.
    let prev = hash_at(&db, 120).await;
    let uuid = if db.engine == "postgres" {
        "'6f1c1a0e-0000-4000-8000-000000000001'::uuid".to_string()
    } else {
        "X'6f1c1a0e000040008000000000000001'".to_string()
    };
    let detail = if db.engine == "postgres" {
        "'{}'::jsonb"
    } else {
        "'{}'"
    };
    let at = if db.engine == "postgres" {
        "'2026-11-23T10:00:00Z'::timestamptz"
    } else {
        "'2026-11-23T10:00:00.000000Z'"
    };
    let insert = format!(
        "INSERT INTO audit_events (seq, event_id, actor, action, request_id, record_id, detail, created_at, prev_hash, hash)
         VALUES (121, {uuid}, 'user:9', 'ROLE_CHANGED', NULL, NULL, {detail}, {at}, '{prev}', '{}')",
        "ab".repeat(32)
    );
    if db.engine == "postgres" {
        // Postgres refuses a row inserted linked (only its linker links), so the attacker
        // needs DDL rights here.
        tamper(&db, "audit_events", &[&insert]).await;
    } else {
        // Inserting is allowed (the app appends); the verifier is what notices.
        db.raw.exec(&insert).await.unwrap();
    }
    let report = f.trail.verify().await.unwrap();
    assert_eq!(
        first(&report),
        (121, Problem::Inserted),
        "{}",
        report.summary()
    );
    tamper(
        &db,
        "audit_events",
        &["DELETE FROM audit_events WHERE seq = 121"],
    )
    .await;
    assert!(f.trail.verify().await.unwrap().ok());

    // In the middle: later rows shifted up by one, the forged row chained and hashed properly.
    let forged = {
        let mut e = db.store.audit_events_after(39, 1).await.unwrap().remove(0);
        e.actor = "user:9".into();
        e.action = "ROLE_CHANGED".into();
        e.event_id = uuid::Uuid::new_v4();
        e.hash = passkey::store::recompute_audit_hash(&e);
        e
    };
    let event_id = if db.engine == "postgres" {
        format!("'{}'::uuid", forged.event_id)
    } else {
        format!("X'{}'", forged.event_id.simple())
    };
    let created = if db.engine == "postgres" {
        format!("'{}'::timestamptz", forged.created_at)
    } else {
        format!("'{}'", forged.created_at)
    };
    let detail = forged.detail.0.to_string().replace('\'', "''");
    let detail = if db.engine == "postgres" {
        format!("'{detail}'::jsonb")
    } else {
        format!("'{detail}'")
    };
    tamper(
        &db,
        "audit_events",
        &[
            "UPDATE audit_events SET seq = -seq WHERE seq >= 40",
            "UPDATE audit_events SET seq = -seq + 1 WHERE seq < 0",
            &format!(
                "INSERT INTO audit_events (seq, event_id, actor, action, request_id, record_id, detail, created_at, prev_hash, hash)
                 VALUES (40, {event_id}, 'user:9', 'ROLE_CHANGED', 40, NULL, {detail}, {created}, '{}', '{}')",
                forged.prev_hash, forged.hash
            ),
        ],
    )
    .await;
    let report = f.trail.verify().await.unwrap();
    assert_eq!(
        first(&report),
        (40, Problem::Inserted),
        "{}",
        report.summary()
    );
}

async fn forged_and_missing_checkpoints_are_found(db: Db) {
    // Events every 2 s; checkpoints every 60 s: at seq 1, 31, 61, 91, 121, 151, 181. An event may
    // wait 2 × 60 s + 60 s = 180 s for one.
    let f = fixture(&db, 60);
    write_events(db.store.as_ref(), &f, 200).await;
    assert!(f.trail.verify().await.unwrap().ok());

    // An event an hour later, and nothing signed it for ten minutes: the tail is uncovered.
    assert_eq!(
        f.trail.checkpoint().await.unwrap().map(|c| c.seq),
        Some(200)
    );
    f.clock.advance(Duration::hours(1));
    db.store
        .append_audit(&NewAuditEvent::new("user:1", "ROLE_CHANGED", f.clock.now()))
        .await
        .unwrap();
    f.clock.advance(Duration::minutes(2));
    assert!(
        f.trail.verify().await.unwrap().ok(),
        "two minutes is within the allowed delay"
    );
    f.clock.advance(Duration::minutes(8));
    let report = f.trail.verify().await.unwrap();
    assert_eq!(
        first(&report),
        (201, Problem::MissingCheckpoint),
        "{}",
        report.summary()
    );
    assert!(f.trail.checkpoint().await.unwrap().is_some());

    // Three checkpoints deleted: event 32, written at +62 s, waited until +302 s (seq 151).
    tamper(
        &db,
        "audit_checkpoints",
        &["DELETE FROM audit_checkpoints WHERE seq IN (61, 91, 121)"],
    )
    .await;
    let report = f.trail.verify().await.unwrap();
    assert_eq!(
        first(&report),
        (32, Problem::MissingCheckpoint),
        "{}",
        report.summary()
    );

    // A checkpoint whose signature is someone else's.
    let signature: String = db
        .raw
        .texts("SELECT signature FROM audit_checkpoints WHERE seq = 31")
        .await
        .unwrap()
        .remove(0);
    tamper(
        &db,
        "audit_checkpoints",
        &[&format!(
            "UPDATE audit_checkpoints SET signature = '{signature}' WHERE seq = 151"
        )],
    )
    .await;
    let report = f.trail.verify().await.unwrap();
    assert_eq!(first(&report), (32, Problem::MissingCheckpoint));
    assert!(
        report
            .findings
            .iter()
            .any(|x| x.seq == 151 && x.problem == Problem::ForgedCheckpoint),
        "{:?}",
        report.findings
    );
}

async fn a_consistently_rewritten_chain_is_caught_by_its_checkpoint(db: Db) {
    let f = fixture(&db, 300);
    write_events(db.store.as_ref(), &f, 120).await;
    // Edit event 70 and recompute every hash after it, the head row too: only the signed
    // checkpoint at 101 still remembers the old chain.
    let mut events = db.store.audit_events_after(0, 1000).await.unwrap();
    events[69].actor = "user:666".into();
    for i in 69..events.len() {
        events[i].prev_hash = events[i - 1].hash.clone();
        events[i].hash = passkey::store::recompute_audit_hash(&events[i]);
    }
    let mut sql: Vec<String> = events[69..]
        .iter()
        .map(|e| {
            format!(
                "UPDATE audit_events SET actor = '{}', prev_hash = '{}', hash = '{}' WHERE seq = {}",
                e.actor, e.prev_hash, e.hash, e.seq
            )
        })
        .collect();
    sql.insert(
        0,
        "UPDATE audit_events SET actor = 'user:666' WHERE seq = 70".into(),
    );
    let refs: Vec<&str> = sql.iter().map(String::as_str).collect();
    tamper(&db, "audit_events", &refs).await;
    db.raw
        .exec(&format!(
            "UPDATE audit_chain_head SET hash = '{}' WHERE id = 1",
            events.last().unwrap().hash
        ))
        .await
        .unwrap();
    let report = f.trail.verify().await.unwrap();
    assert_eq!(
        first(&report),
        (52, Problem::Rewritten),
        "{}",
        report.summary()
    );
    assert!(report.first_bad.unwrap().detail.contains("52–101"));
}

/// A signer that works like a remote Key Vault ES256 key: it returns the key version's id with
/// each signature, and the private key stays inside it.
struct RemoteStyleEs256 {
    pair: aws_lc_rs::signature::EcdsaKeyPair,
    key_id: String,
    calls: Mutex<u32>,
}

impl RemoteStyleEs256 {
    fn new(version: &str) -> Self {
        RemoteStyleEs256 {
            pair: aws_lc_rs::signature::EcdsaKeyPair::generate(
                &aws_lc_rs::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
            )
            .unwrap(),
            key_id: format!("https://passkey-kv.vault.azure.net/keys/audit-signing/{version}"),
            calls: Mutex::new(0),
        }
    }
}

#[async_trait]
impl Signer for RemoteStyleEs256 {
    async fn public_key(&self) -> Result<PublicKey, SignError> {
        use aws_lc_rs::signature::KeyPair as _;
        Ok(PublicKey {
            key_id: self.key_id.clone(),
            algorithm: Algorithm::ES256,
            bytes: self.pair.public_key().as_ref().to_vec(),
        })
    }

    async fn sign(&self, message: &[u8]) -> Result<Signature, SignError> {
        *self.calls.lock().unwrap() += 1;
        let sig = self
            .pair
            .sign(&aws_lc_rs::rand::SystemRandom::new(), message)
            .map_err(|_| SignError::Unavailable("sign failed".into()))?;
        Ok(Signature {
            key_id: self.key_id.clone(),
            algorithm: Algorithm::ES256,
            bytes: sig.as_ref().to_vec(),
        })
    }
}

async fn checkpoints_from_rotated_keys_still_verify(db: Db) {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(t0()));
    let trail_with = |signer: Arc<dyn Signer>| {
        AuditTrail::new(db.store.clone(), signer, clock.clone(), settings(300))
    };
    let append = |n: usize| {
        let store = db.store.clone();
        let clock = clock.clone();
        async move {
            for _ in 0..n {
                store
                    .append_audit(&NewAuditEvent::new("user:1", "ROLE_CHANGED", clock.now()))
                    .await
                    .unwrap();
                clock.advance(Duration::seconds(1));
            }
        }
    };
    // Key A (local Ed25519) signs, then the key is rotated to B, then to a remote ES256 key.
    let a = trail_with(Arc::new(
        LocalEd25519Signer::open_or_create(&dir.path().join("a.p8")).unwrap(),
    ));
    append(30).await;
    let ca = a.checkpoint().await.unwrap().expect("signed");
    assert_eq!(ca.algorithm, "Ed25519");
    assert!(
        a.checkpoint().await.unwrap().is_none(),
        "nothing new to sign"
    );

    let b = trail_with(Arc::new(
        LocalEd25519Signer::open_or_create(&dir.path().join("b.p8")).unwrap(),
    ));
    append(30).await;
    let cb = b.checkpoint().await.unwrap().expect("signed");
    assert_ne!(ca.key_id, cb.key_id);

    let remote = Arc::new(RemoteStyleEs256::new("v7"));
    let c = trail_with(remote.clone());
    append(30).await;
    let cc = c.checkpoint().await.unwrap().expect("signed");
    assert_eq!(cc.algorithm, "ES256");
    assert!(cc.key_id.ends_with("/audit-signing/v7"));
    assert_eq!(*remote.calls.lock().unwrap(), 1);

    // The current signer is the remote key; the older checkpoints verify by their key ids.
    let report = c.verify().await.unwrap();
    assert!(report.ok(), "{}", report.summary());
    assert_eq!(report.checkpoints_verified, 3);
    assert_eq!(report.key_ids.len(), 3);
    assert_eq!(db.store.public_keys().await.unwrap().len(), 3);
}

async fn concurrent_writers_make_one_linear_chain(db: Db) {
    let writers = 16;
    let each = if db.engine == "postgres" { 100 } else { 40 };
    let mut tasks = Vec::new();
    for w in 0..writers {
        let store = db.store.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..each {
                store
                    .append_audit(
                        &NewAuditEvent::new(format!("user:{w}"), "ROLE_CHANGED", t0())
                            .detail(json!({ "writer": w, "i": i })),
                    )
                    .await
                    .unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let total = writers * each;
    let events = db.store.audit_events_after(0, 100_000).await.unwrap();
    assert_eq!(events.len(), total);
    // No gaps: seq 1..=total. No forks: every prev hash is the hash of the event before.
    for (i, e) in events.iter().enumerate() {
        assert_eq!(e.seq, i as i64 + 1);
        if i > 0 {
            assert_eq!(e.prev_hash, events[i - 1].hash, "fork at seq {}", e.seq);
        }
    }
    let prevs: std::collections::HashSet<&str> =
        events.iter().map(|e| e.prev_hash.as_str()).collect();
    assert_eq!(prevs.len(), total, "no two events share a predecessor");
    assert_eq!(
        db.store.audit_head().await.unwrap(),
        (total as i64, events.last().unwrap().hash.clone())
    );
    let f = fixture(&db, 300);
    assert!(f.trail.verify().await.unwrap().ok());
}

async fn a_hundred_thousand_events_verify(db: Db) {
    let f = fixture(&db, 300);
    // A few thousand through the one-by-one append, the rest through the batch append (the
    // same chain code, the head locked once per batch).
    write_events(db.store.as_ref(), &f, 2_000).await;
    let batch: Vec<NewAuditEvent> = (0..1000)
        .map(|i| {
            NewAuditEvent::new("system:lease-expiry", "LEASE_EXPIRED", f.clock.now())
                .request(i)
                .detail(json!({ "shares": 1 }))
        })
        .collect();
    for _ in 0..98 {
        db.store.append_audit_batch(&batch).await.unwrap();
        f.clock.advance(Duration::seconds(2));
        f.trail.checkpoint_if_due().await.unwrap();
    }
    let report = f.trail.verify().await.unwrap();
    assert!(report.ok(), "{}", report.summary());
    assert_eq!(report.events, 100_000);
    assert_eq!(report.last_seq, Some(100_000));
}

/// Records admin alerts.
#[derive(Default)]
struct Alerts(Mutex<Vec<String>>);

#[async_trait]
impl Notifier for Alerts {
    async fn deliver(&self, _notices: &[Notice]) {}
    async fn alert_admins(&self, text: &str) {
        self.0.lock().unwrap().push(text.to_string());
    }
}

async fn the_verify_job_records_a_probe_and_alerts_admins_on_mismatch(db: Db) {
    let f = fixture(&db, 300);
    write_events(db.store.as_ref(), &f, 60).await;
    let alerts = Alerts::default();
    let report = f
        .trail
        .verify_and_alert(&alerts, "system:audit-verify")
        .await
        .unwrap();
    assert!(report.ok());
    assert!(alerts.0.lock().unwrap().is_empty());
    tamper(
        &db,
        "audit_events",
        &["DELETE FROM audit_events WHERE seq = 12"],
    )
    .await;
    let report = f
        .trail
        .verify_and_alert(&alerts, "system:audit-verify")
        .await
        .unwrap();
    assert_eq!(first(&report), (12, Problem::Deleted));
    let sent = alerts.0.lock().unwrap().clone();
    assert_eq!(sent.len(), 1);
    assert!(sent[0].contains("seq 12: deleted"), "{}", sent[0]);
    let probes = db.store.recent_probes(5).await.unwrap();
    assert_eq!(probes.len(), 2);
    assert_eq!((probes[0].exit_code, probes[0].degraded), (1, true));
    assert_eq!((probes[1].exit_code, probes[1].degraded), (0, false));
    assert_eq!(probes[0].command_id, "audit-verify");
    let last = db.store.audit_events_after(60, 10).await.unwrap();
    assert_eq!(last.last().unwrap().action, "AUDIT_VERIFY_FAILED");
}

/// Verifies online (alerting) and offline (an export), which must agree; returns the online
/// report and whether an alert went out.
async fn verify_both_ways(db: &Db, f: &Fixture) -> (Report, Report, bool) {
    let alerts = Alerts::default();
    let online = f
        .trail
        .verify_and_alert(&alerts, "system:audit-verify")
        .await
        .unwrap();
    let alerted = !alerts.0.lock().unwrap().is_empty();
    // The offline file: the events as stored, verified as of the same moment.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("trail.jsonl");
    let head = db.store.audit_head().await.unwrap().0;
    let events = db.store.audit_events_after(0, head + 10).await.unwrap();
    let mut out = std::io::BufWriter::new(std::fs::File::create(&file).unwrap());
    use passkey::audit::trail::{FORMAT, Header, Line, VERSION, write_line};
    let settings = f.trail.settings();
    write_line(
        &mut out,
        &Line::Header(Header {
            format: FORMAT.into(),
            version: VERSION,
            exported_at: f.clock.now(),
            from_seq: 0,
            to_seq: head,
            checkpoint_every_events: settings.checkpoint_every_events,
            checkpoint_every_secs: settings.checkpoint_every_secs,
            max_checkpoint_delay_secs: f.trail.max_checkpoint_delay().whole_seconds() as u64,
            archive: false,
            unlinked: 0,
            oldest_unlinked_at: None,
            link_allowance_secs: settings.link_allowance_secs,
        }),
    )
    .unwrap();
    for e in events {
        write_line(&mut out, &Line::Event(e)).unwrap();
    }
    for c in db.store.checkpoints_from(0).await.unwrap() {
        write_line(&mut out, &Line::Checkpoint(c)).unwrap();
    }
    for k in db.store.public_keys().await.unwrap() {
        write_line(&mut out, &Line::PublicKey(k)).unwrap();
    }
    drop(out);
    let (_, offline) = passkey::audit::trail::verify_file(&file, None, None).unwrap();
    (online, offline, alerted)
}

/// Checkpoints every 5 minutes (an event may wait 11): the service stops within 5 minutes of its
/// last event and stays down longer than 11 — gracefully, with a failed signature at the stop,
/// and by crashing — and every verification afterwards still passes, online and offline.
async fn stops_restarts_and_crashes_never_raise_a_missing_checkpoint(db: Db) {
    let f = fixture(&db, 300);
    let minutes = |m| f.clock.advance(Duration::minutes(m));
    f.trail.record_start("instance-1").await.unwrap();
    write_events(db.store.as_ref(), &f, 3).await;
    // Graceful stop 2 minutes after the last event; down 40 minutes.
    minutes(2);
    f.trail.record_stop("instance-1").await.unwrap();
    let (head, _) = db.store.audit_head().await.unwrap();
    assert_eq!(db.store.last_checkpoint().await.unwrap().unwrap().seq, head);
    minutes(40);
    let (online, offline, alerted) = verify_both_ways(&db, &f).await;
    assert!(
        online.ok() && offline.ok() && !alerted,
        "{}",
        online.summary()
    );
    f.trail.record_start("instance-2").await.unwrap();
    minutes(1);
    write_events(db.store.as_ref(), &f, 2).await;

    // A crash 3 minutes after the last event (no stop recorded, nothing signed); down 30.
    minutes(3);
    minutes(30);
    f.trail.record_start("instance-3").await.unwrap();
    let started = db.store.audit_events_after(0, 1000).await.unwrap();
    let start = started.last().unwrap();
    assert_eq!(start.action, "SERVICE_STARTED");
    assert_eq!(start.detail.0["previous_stop"], "crash");
    let (head, _) = db.store.audit_head().await.unwrap();
    assert_eq!(db.store.last_checkpoint().await.unwrap().unwrap().seq, head);
    for _ in 0..3 {
        minutes(20);
        let (online, offline, alerted) = verify_both_ways(&db, &f).await;
        assert!(online.ok(), "{}", online.summary());
        assert!(offline.ok(), "{}", offline.summary());
        assert!(!alerted);
    }
    let actions: Vec<String> = db
        .store
        .audit_events_after(0, 1000)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.action)
        .collect();
    assert_eq!(
        actions
            .iter()
            .filter(|a| a.starts_with("SERVICE_"))
            .collect::<Vec<_>>(),
        [
            "SERVICE_STARTED",
            "SERVICE_STOPPED",
            "SERVICE_STARTED",
            "SERVICE_STARTED"
        ]
    );
    assert!(!actions.iter().any(|a| a == "AUDIT_VERIFY_FAILED"));

    // A stop whose signature failed (the signer unreachable at that moment), down an hour.
    minutes(1);
    db.store
        .append_audit(&NewAuditEvent::new(
            "system:service",
            "SERVICE_STOPPED",
            f.clock.now(),
        ))
        .await
        .unwrap();
    minutes(60);
    f.trail.record_start("instance-4").await.unwrap();
    let start = db.store.audit_events_after(0, 1000).await.unwrap();
    assert_eq!(start.last().unwrap().detail.0["previous_stop"], "clean");
    minutes(30);
    let (online, offline, alerted) = verify_both_ways(&db, &f).await;
    assert!(
        online.ok() && offline.ok() && !alerted,
        "{}",
        online.summary()
    );
}

/// The checkpoint job stops signing while the service keeps running and writing: verification
/// fails at the first unsigned event, online and offline — and a restart does not excuse it.
async fn an_event_left_unsigned_while_running_still_fails_verification(db: Db) {
    let f = fixture(&db, 300);
    f.trail.record_start("instance-1").await.unwrap();
    write_events(db.store.as_ref(), &f, 2).await;
    f.clock.advance(Duration::minutes(6));
    f.trail.checkpoint_if_due().await.unwrap();
    let (first_unsigned, _) = db.store.audit_head().await.unwrap();
    // Nothing signs from here on, while events keep arriving for 15 minutes.
    for _ in 0..5 {
        db.store
            .append_audit(&NewAuditEvent::new("user:1", "ROLE_CHANGED", f.clock.now()))
            .await
            .unwrap();
        f.clock.advance(Duration::minutes(3));
    }
    let first_unsigned = first_unsigned + 1;
    let (online, offline, alerted) = verify_both_ways(&db, &f).await;
    assert_eq!(first(&online), (first_unsigned, Problem::MissingCheckpoint));
    assert_eq!(
        first(&offline),
        (first_unsigned, Problem::MissingCheckpoint)
    );
    assert!(alerted);
    // A crash and a restart sign the tail, late: still the same finding.
    f.clock.advance(Duration::minutes(30));
    f.trail.record_start("instance-2").await.unwrap();
    let (online, offline, _) = verify_both_ways(&db, &f).await;
    assert_eq!(first(&online), (first_unsigned, Problem::MissingCheckpoint));
    assert_eq!(
        first(&offline),
        (first_unsigned, Problem::MissingCheckpoint)
    );
}

on_both_databases!(
    untouched_trail_verifies_with_signed_checkpoints,
    an_edited_detail_is_found_at_its_seq,
    a_deleted_row_is_found_at_its_seq,
    swapped_rows_are_found_at_the_first_of_them,
    a_forged_row_is_found_where_it_was_slipped_in,
    forged_and_missing_checkpoints_are_found,
    a_consistently_rewritten_chain_is_caught_by_its_checkpoint,
    checkpoints_from_rotated_keys_still_verify,
    concurrent_writers_make_one_linear_chain,
    a_hundred_thousand_events_verify,
    the_verify_job_records_a_probe_and_alerts_admins_on_mismatch,
    stops_restarts_and_crashes_never_raise_a_missing_checkpoint,
    an_event_left_unsigned_while_running_still_fails_verification,
);

#[tokio::test]
async fn the_scheduler_runs_the_checkpoint_and_verify_jobs() {
    let db = common::fresh_sqlite().await;
    let dir = tempfile::tempdir().unwrap();
    let server =
        common::TestServer::start(common::test_settings(dir.path(), &[]), db.store.clone()).await;
    // The signing key was created in the data directory on start, owner-only.
    let key = dir.path().join("audit-signing-key.p8");
    assert!(key.exists());
    db.store
        .append_audit(&NewAuditEvent::new(
            "user:1",
            "ROLE_CHANGED",
            server.clock.now(),
        ))
        .await
        .unwrap();
    let app_scheduler = passkey::jobs::Scheduler::new(
        server.state.lifecycle.clone(),
        server.state.store.clone(),
        server.state.clock.clone(),
        server.state.vault.clone(),
        server.state.rotations.clone(),
        server.state.notifier.clone(),
        "test",
    )
    .with_audit(server.state.audit.clone());
    let run = app_scheduler.run(passkey::jobs::Job::AuditCheckpoint).await;
    assert!(run.ok, "{:?}", run.error);
    let head = db.store.audit_head().await.unwrap().0;
    assert_eq!(run.counts["checkpoint_seq"], json!(head));
    let run = app_scheduler.run(passkey::jobs::Job::AuditVerify).await;
    assert!(run.ok, "{:?}", run.error);
    assert_eq!(run.counts["events"], json!(head));
    server.stop().await;
}

#[tokio::test]
async fn admins_verify_the_trail_in_chat_and_hear_about_a_mismatch() {
    let chat = common::chat::Chat::start(None).await;
    let carol = ("ca201000-0000-4000-8000-000000000003", "Carol SecOps");
    let alice = ("a11ce000-0000-4000-8000-000000000001", "Alice Requester");
    let reply = chat.say(carol, "admin audit verify").await;
    assert!(reply.contains("Audit trail verified:"), "{reply}");
    assert_eq!(
        chat.say(alice, "admin audit verify").await,
        "Admin commands are for Passkey admins."
    );
    // Someone with DDL rights edits an event.
    let raw: Arc<dyn RawSql> = chat.sqlite();
    let db = Db {
        store: chat.store.clone(),
        raw,
        engine: "sqlite",
    };
    tamper(
        &db,
        "audit_events",
        &["UPDATE audit_events SET actor = 'user:0' WHERE seq = 3"],
    )
    .await;
    let reply = chat.say(carol, "admin audit verify").await;
    assert!(reply.contains("FAILED"), "{reply}");
    assert!(reply.contains("seq 3: edited"), "{reply}");
    // Every admin the bot can reach is told in their 1:1 chat.
    let alerts: Vec<String> = chat
        .messages_to(carol.0)
        .into_iter()
        .filter(|m| m.contains("failed verification"))
        .collect();
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert!(alerts[0].contains("seq 3: edited"));
}

/// `passkey serve`'s own path: the start and the graceful stop are in the trail, each covered by
/// a checkpoint signed there and then.
#[tokio::test]
async fn serve_records_its_start_and_stop_and_signs_at_both() {
    let db = common::fresh_sqlite().await;
    let dir = tempfile::tempdir().unwrap();
    let settings = common::test_settings(dir.path(), &[("PASSKEY_LIFECYCLE__SCHEDULER", "false")]);
    let clock = Arc::new(ManualClock::new(t0()));
    let app = passkey::app::App::with_store(settings, db.store.clone(), clock.clone())
        .await
        .unwrap();
    db.store
        .append_audit(&NewAuditEvent::new("user:1", "ROLE_CHANGED", t0()))
        .await
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let served = tokio::spawn(app.serve(listener, async move {
        let _ = stopped.await;
    }));
    let last_action = || async {
        let (head, _) = db.store.audit_head().await.unwrap();
        let event = db.store.audit_events_after(head - 1, 1).await.unwrap();
        let signed = db.store.last_checkpoint().await.unwrap().map(|c| c.seq);
        (event[0].action.clone(), signed == Some(head))
    };
    for _ in 0..200 {
        if last_action().await.0 == "SERVICE_STARTED" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    // Give the start-up checkpoint its moment.
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert_eq!(last_action().await, ("SERVICE_STARTED".to_string(), true));
    clock.advance(Duration::minutes(3));
    stop.send(()).unwrap();
    served.await.unwrap().unwrap();
    assert_eq!(last_action().await, ("SERVICE_STOPPED".to_string(), true));
}
