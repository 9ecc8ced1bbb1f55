//! The audit trail file reader (`passkey audit verify`): `read_index`, `read_keys` and
//! `verify_file` on a real export (30 events, signed checkpoints, the public key) with lines cut,
//! deleted, repeated, reordered, fields edited and bytes changed. Nothing panics; a file that is
//! not a trail is a `TrailError` naming the line; and a file that verifies against the pinned keys
//! holds exactly the exported events, in order, and only checkpoints that were signed.

use super::{
    ByteEdit, JsonEdit, apply_bytes, apply_json, byte_edits, config, edit_anything, json_edits,
};
use crate::common::{fresh_sqlite, t0};
use passkey::audit::trail::{Line, read_index, read_keys, verify_file};
use passkey::audit::{AuditTrail, LocalEd25519Signer};
use passkey::config::AuditSettings;
use passkey::domain::{Clock, ManualClock};
use passkey::store::{AuditCheckpoint, AuditEvent, AuditPublicKey, AuditStore, NewAuditEvent};
use proptest::prelude::*;
use serde_json::{Value, json};
use std::sync::{Arc, LazyLock};

/// A valid export, as lines, and what it holds.
struct Export {
    lines: Vec<String>,
    events: Vec<AuditEvent>,
    checkpoints: Vec<AuditCheckpoint>,
    keys: Vec<AuditPublicKey>,
}

static EXPORT: LazyLock<Export> = LazyLock::new(|| {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let db = fresh_sqlite().await;
        let dir = tempfile::tempdir().unwrap();
        let signer = LocalEd25519Signer::open_or_create(&dir.path().join("audit.p8")).unwrap();
        let clock = Arc::new(ManualClock::new(t0()));
        let trail = AuditTrail::new(
            db.store.clone(),
            Arc::new(signer),
            clock.clone(),
            AuditSettings {
                checkpoint_every_events: 7,
                checkpoint_every_secs: 300,
                ..AuditSettings::default()
            },
        );
        for i in 0..30i64 {
            db.store
                .append_audit(
                    &NewAuditEvent::new(format!("user:{}", i % 3 + 1), "REQUEST_SUBMITTED", clock.now())
                        .request(i + 1)
                        .detail(json!({"reason": format!("INC-{i}"), "hours": 2, "nested": {"a": [1, "b", null]}})),
                )
                .await
                .unwrap();
            clock.advance(time::Duration::seconds(5));
            trail.checkpoint_if_due().await.unwrap();
        }
        let path = dir.path().join("trail.jsonl");
        trail.export(&path, 0, "admin-cli").await.unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<String> = text.lines().map(String::from).collect();
        let (_, report) = verify_file(&path, None, None).unwrap();
        assert!(report.ok(), "the unedited export verifies: {}", report.summary());
        let parsed: Vec<Line> = lines.iter().map(|l| serde_json::from_str(l).unwrap()).collect();
        Export {
            events: parsed.iter().filter_map(|l| match l { Line::Event(e) => Some(e.clone()), _ => None }).collect(),
            checkpoints: parsed.iter().filter_map(|l| match l { Line::Checkpoint(c) => Some(c.clone()), _ => None }).collect(),
            keys: parsed.iter().filter_map(|l| match l { Line::PublicKey(k) => Some(k.clone()), _ => None }).collect(),
            lines,
        }
    })
});

#[derive(Debug, Clone)]
enum TrailEdit {
    Delete(usize),
    Swap(usize, usize),
    Repeat(usize),
    Cut(usize, usize),
    /// Fields of one line edited, the line written again with `type` first (as the exporter does).
    Json(usize, Vec<JsonEdit>),
    /// One line's bytes edited.
    LineBytes(usize, Vec<ByteEdit>),
    /// The whole file's bytes edited.
    FileBytes(Vec<ByteEdit>),
    Insert(usize, String),
}

fn trail_edit() -> impl Strategy<Value = TrailEdit> {
    prop_oneof![
        1 => any::<usize>().prop_map(TrailEdit::Delete),
        1 => (any::<usize>(), any::<usize>()).prop_map(|(i, j)| TrailEdit::Swap(i, j)),
        1 => any::<usize>().prop_map(TrailEdit::Repeat),
        1 => (any::<usize>(), any::<usize>()).prop_map(|(i, at)| TrailEdit::Cut(i, at)),
        4 => (any::<usize>(), json_edits()).prop_map(|(i, e)| TrailEdit::Json(i, e)),
        2 => (any::<usize>(), byte_edits()).prop_map(|(i, e)| TrailEdit::LineBytes(i, e)),
        1 => byte_edits().prop_map(TrailEdit::FileBytes),
        1 => (any::<usize>(), prop_oneof![
            Just(String::new()),
            Just("   ".to_string()),
            Just(r#"{"type":"event"}"#.to_string()),
            Just(r#"{"type":"header","format":"passkey-audit-trail","version":1}"#.to_string()),
            Just(r#"{"type":"checkpoint","seq":1}"#.to_string()),
            ".{0,80}",
        ]).prop_map(|(i, l)| TrailEdit::Insert(i, l)),
    ]
}

/// A line written the exporter's way: `{"type":…` first, so the reader's event test sees it.
fn write_line(v: &Value) -> String {
    match v {
        Value::Object(map) if map.contains_key("type") => {
            let mut rest = map.clone();
            let kind = rest.remove("type").unwrap();
            let rest = Value::Object(rest).to_string();
            if rest == "{}" {
                format!("{{\"type\":{kind}}}")
            } else {
                format!("{{\"type\":{kind},{}", &rest[1..])
            }
        }
        other => other.to_string(),
    }
}

fn apply(lines: &[String], edits: &[TrailEdit]) -> Vec<u8> {
    let mut lines = lines.to_vec();
    let mut file_edits = Vec::new();
    for edit in edits {
        let n = lines.len().max(1);
        let has = !lines.is_empty();
        match edit {
            TrailEdit::Delete(i) if has => {
                lines.remove(i % n);
            }
            TrailEdit::Swap(i, j) if has => lines.swap(i % n, j % n),
            TrailEdit::Repeat(i) if has => {
                let l = lines[i % n].clone();
                lines.insert(i % n, l);
            }
            TrailEdit::Cut(i, at) if has => {
                let l = &mut lines[i % n];
                let at = at % (l.len() + 1);
                let cut = String::from_utf8_lossy(&l.as_bytes()[..at]).into_owned();
                *l = cut;
            }
            TrailEdit::Json(i, json) if has => {
                let l = &mut lines[i % n];
                if let Ok(v) = serde_json::from_str::<Value>(l) {
                    *l = write_line(&apply_json(&v, json, &edit_anything));
                }
            }
            TrailEdit::LineBytes(i, bytes) if has => {
                let l = &mut lines[i % n];
                *l = String::from_utf8_lossy(&apply_bytes(l.as_bytes(), bytes)).into_owned();
            }
            TrailEdit::FileBytes(bytes) => file_edits.extend(bytes.iter().cloned()),
            TrailEdit::Insert(i, l) => lines.insert(i % (lines.len() + 1), l.clone()),
            _ => {}
        }
    }
    let mut text = lines.join("\n").into_bytes();
    text.push(b'\n');
    apply_bytes(&text, &file_edits)
}

/// Reads and verifies `bytes` as a trail file every way the CLI does.
fn check(bytes: &[u8]) -> Result<(), TestCaseError> {
    let export = &*EXPORT;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("edited.jsonl");
    std::fs::write(&path, bytes).unwrap();
    let bounded = |e: &passkey::audit::trail::TrailError| {
        e.to_string().chars().count() <= path.display().to_string().chars().count() + 400
    };
    match read_index(&path) {
        Ok(index) => {
            prop_assert!(index.events <= 1 + bytes.iter().filter(|b| **b == b'\n').count() as u64)
        }
        Err(e) => prop_assert!(bounded(&e), "{e}"),
    }
    if let Err(e) = read_keys(&path) {
        prop_assert!(bounded(&e), "{e}");
    }
    if let Err(e) = verify_file(&path, None, Some(None)) {
        prop_assert!(bounded(&e), "{e}");
    }
    match verify_file(&path, Some(&export.keys), None) {
        Ok((_, report)) if report.ok() => {
            // What passed holds exactly the exported events, in order, and only signed checkpoints.
            let text = String::from_utf8_lossy(bytes);
            let lines: Vec<Line> = text
                .lines()
                .filter_map(|l| serde_json::from_str(l).ok())
                .collect();
            let events: Vec<&AuditEvent> = lines
                .iter()
                .filter_map(|l| match l {
                    Line::Event(e) => Some(e),
                    _ => None,
                })
                .collect();
            prop_assert_eq!(
                events,
                export.events.iter().collect::<Vec<_>>(),
                "an edited trail verified"
            );
            for line in &lines {
                if let Line::Checkpoint(c) = line {
                    prop_assert!(
                        export.checkpoints.contains(c),
                        "an edited checkpoint verified: {c:?}"
                    );
                }
            }
        }
        Ok(_) => {}
        Err(e) => prop_assert!(bounded(&e), "{e}"),
    }
    Ok(())
}

proptest! {
    #![proptest_config(config(384))]

    #[test]
    fn edited_trails_are_read_and_verified_without_passing_an_edit(
        edits in proptest::collection::vec(trail_edit(), 1..4),
    ) {
        check(&apply(&EXPORT.lines, &edits))?;
    }

    #[test]
    fn any_bytes_are_read_as_a_trail_or_refused(bytes in proptest::collection::vec(any::<u8>(), 0..2_000)) {
        check(&bytes)?;
    }

    /// A valid header followed by anything.
    #[test]
    fn any_lines_after_a_valid_header_are_read_or_refused(
        rest in proptest::collection::vec(".{0,120}", 0..20),
    ) {
        let mut text = EXPORT.lines[0].clone();
        for l in rest {
            text.push('\n');
            text.push_str(&l);
        }
        check(text.as_bytes())?;
    }
}
