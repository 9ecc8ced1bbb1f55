//! The export file: JSON lines. A header line, then the events in seq order, then the signed
//! checkpoints, then the public keys that signed them — everything `passkey audit verify` needs,
//! offline. Each line is an object whose `type` says what it is:
//!
//! ```text
//! {"type":"header","format":"passkey-audit-trail","version":1,"exported_at":…,"from_seq":0,"to_seq":812,…}
//! {"type":"event","seq":1,"event_id":…,"actor":…,"action":…,"request_id":…,"record_id":…,"detail":{…},"created_at":…,"prev_hash":…,"hash":…}
//! {"type":"checkpoint","seq":800,"head_hash":…,"signed_at":…,"key_id":…,"algorithm":"Ed25519","signature":…}
//! {"type":"public_key","key_id":…,"algorithm":"Ed25519","public_key":…,"created_at":…}
//! ```
//!
//! Reading takes two passes over the file (checkpoints and keys first, then the events in pages),
//! so verifying a large trail needs little memory.

use super::signer::{Algorithm, PublicKey};
use super::verify::{PAGE, Report, Verifier, VerifyOptions};
use crate::domain::Timestamp;
use crate::store::{AuditCheckpoint, AuditEvent, AuditPublicKey, UnlinkedEvents};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;

pub const FORMAT: &str = "passkey-audit-trail";
pub const VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Header {
    pub format: String,
    pub version: u32,
    pub exported_at: Timestamp,
    /// Events after this seq are in the file (0: from the start of the chain).
    pub from_seq: i64,
    /// The chain head when the export was read: the file should reach exactly this seq.
    pub to_seq: i64,
    /// The checkpoint policy the trail was written under; the missing-checkpoint check uses
    /// `max_checkpoint_delay_secs`.
    pub checkpoint_every_events: u64,
    pub checkpoint_every_secs: u64,
    pub max_checkpoint_delay_secs: u64,
    /// True for `passkey audit archive` files.
    #[serde(default)]
    pub archive: bool,
    /// Committed events not linked into the chain when the export was read (not in the file),
    /// when the oldest of them was written, and how long one may stay unlinked (the verifier's
    /// `Unlinked` rule). Absent in files from before the audit sequencer: none.
    #[serde(default)]
    pub unlinked: u64,
    #[serde(default)]
    pub oldest_unlinked_at: Option<Timestamp>,
    #[serde(default = "default_link_allowance_secs")]
    pub link_allowance_secs: u64,
}

fn default_link_allowance_secs() -> u64 {
    crate::config::AuditSettings::default().link_allowance_secs
}

/// One line of the file.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Line {
    Header(Header),
    Event(AuditEvent),
    Checkpoint(AuditCheckpoint),
    PublicKey(AuditPublicKey),
}

/// Why a file could not be read as a trail (distinct from a trail that fails verification).
#[derive(Debug, thiserror::Error)]
pub enum TrailError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}, line {line}: {message}")]
    Malformed {
        path: String,
        line: usize,
        message: String,
    },
}

pub fn write_line(out: &mut impl Write, line: &Line) -> std::io::Result<()> {
    serde_json::to_writer(&mut *out, line)?;
    out.write_all(b"\n")
}

/// A stored key row as a verifying key; None for an algorithm or encoding this build can't read.
pub fn to_public_key(row: &AuditPublicKey) -> Option<PublicKey> {
    Some(PublicKey {
        key_id: row.key_id.clone(),
        algorithm: Algorithm::parse(&row.algorithm)?,
        bytes: B64.decode(&row.public_key).ok()?,
    })
}

pub fn to_key_row(key: &PublicKey, created_at: Timestamp) -> AuditPublicKey {
    AuditPublicKey {
        key_id: key.key_id.clone(),
        algorithm: key.algorithm.as_str().to_string(),
        public_key: key.to_base64(),
        created_at,
    }
}

/// Everything in a trail file except its events.
pub struct TrailIndex {
    pub header: Header,
    pub checkpoints: Vec<AuditCheckpoint>,
    pub keys: Vec<AuditPublicKey>,
    pub events: u64,
}

fn lines(
    path: &Path,
) -> Result<impl Iterator<Item = (usize, std::io::Result<String>)>, TrailError> {
    let file = std::fs::File::open(path).map_err(|source| TrailError::Io {
        path: path.display().to_string(),
        source,
    })?;
    Ok(BufReader::new(file)
        .lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l)))
}

fn parse(path: &Path, n: usize, text: std::io::Result<String>) -> Result<Option<Line>, TrailError> {
    let text = text.map_err(|source| TrailError::Io {
        path: path.display().to_string(),
        source,
    })?;
    if text.trim().is_empty() {
        return Ok(None);
    }
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|e| TrailError::Malformed {
            path: path.display().to_string(),
            line: n,
            message: shortened(&e.to_string()),
        })
}

/// serde's message quotes the offending value, which an edited file can make as long as a line:
/// keep its head (what was found) and its tail (what was expected, where), cut the middle.
fn shortened(message: &str) -> String {
    const HEAD: usize = 120;
    const TAIL: usize = 80;
    let chars: Vec<char> = message.chars().collect();
    if chars.len() <= HEAD + TAIL {
        return message.to_string();
    }
    let head: String = chars[..HEAD].iter().collect();
    let tail: String = chars[chars.len() - TAIL..].iter().collect();
    format!("{head}…{tail}")
}

/// The seq values a file may name: 0 (before the first event) up to 2^62. A chain never comes
/// near the end of the range, and the verifier counts from and to them (`seq + 1`, `seq - 1`):
/// an edited file naming `i64::MAX` or a negative seq is refused here, before any arithmetic.
const MAX_SEQ: i64 = 1 << 62;

fn seq_in_range(seq: i64) -> bool {
    (0..=MAX_SEQ).contains(&seq)
}

/// First pass: the header (which must come first), checkpoints and keys.
pub fn read_index(path: &Path) -> Result<TrailIndex, TrailError> {
    // Messages may quote what the file says (a header's format): bounded like serde's.
    let malformed = |line, message: &str| TrailError::Malformed {
        path: path.display().to_string(),
        line,
        message: shortened(message),
    };
    let mut header = None;
    let mut checkpoints = Vec::new();
    let mut keys = Vec::new();
    let mut events = 0;
    for (n, text) in lines(path)? {
        // Events are read in the second pass; telling them apart needs no parse (the tag is
        // written first), but a malformed one is still reported there with its line number.
        if let Ok(t) = &text
            && t.starts_with(r#"{"type":"event""#)
        {
            if header.is_none() {
                return Err(malformed(n, "the first line must be the header"));
            }
            events += 1;
            continue;
        }
        match parse(path, n, text)? {
            None => {}
            Some(Line::Header(h)) if header.is_none() && n == 1 => {
                if h.format != FORMAT || h.version != VERSION {
                    return Err(malformed(
                        n,
                        &format!(
                            "not a {FORMAT} v{VERSION} file ({} v{})",
                            h.format, h.version
                        ),
                    ));
                }
                for (name, seq) in [("from_seq", h.from_seq), ("to_seq", h.to_seq)] {
                    if !seq_in_range(seq) {
                        return Err(malformed(n, &format!("{name} {seq} is out of range")));
                    }
                }
                header = Some(h);
            }
            Some(Line::Header(_)) => {
                return Err(malformed(n, "only the first line may be a header"));
            }
            Some(_) if header.is_none() => {
                return Err(malformed(n, "the first line must be the header"));
            }
            Some(Line::Checkpoint(c)) if !seq_in_range(c.seq) => {
                return Err(malformed(
                    n,
                    &format!("checkpoint seq {} is out of range", c.seq),
                ));
            }
            Some(Line::Checkpoint(c)) => checkpoints.push(c),
            Some(Line::PublicKey(k)) => keys.push(k),
            Some(Line::Event(_)) => events += 1,
        }
    }
    let header = header.ok_or_else(|| malformed(1, "empty file: no header"))?;
    Ok(TrailIndex {
        header,
        checkpoints,
        keys,
        events,
    })
}

/// Public keys from a file of `public_key` lines (any trail file, or a saved list): the keys an
/// auditor trusts, independent of the file being verified.
pub fn read_keys(path: &Path) -> Result<Vec<AuditPublicKey>, TrailError> {
    let mut keys = Vec::new();
    for (n, text) in lines(path)? {
        if let Ok(t) = &text
            && t.starts_with(r#"{"type":"event""#)
        {
            continue;
        }
        if let Some(Line::PublicKey(k)) = parse(path, n, text)? {
            keys.push(k);
        }
    }
    Ok(keys)
}

/// Verifies a trail file offline. `trusted` pins the keys checkpoints may be signed with; None
/// trusts the keys the file itself lists (an edited file could list its own — pin them for an
/// audit). `as_of` defaults to the export time in the header.
pub fn verify_file(
    path: &Path,
    trusted: Option<&[AuditPublicKey]>,
    max_checkpoint_delay: Option<Option<time::Duration>>,
) -> Result<(Header, Report), TrailError> {
    let index = read_index(path)?;
    let key_rows = trusted.unwrap_or(&index.keys);
    let keys: Vec<PublicKey> = key_rows.iter().filter_map(to_public_key).collect();
    let h = &index.header;
    let delay = max_checkpoint_delay.unwrap_or(Some(time::Duration::seconds(
        h.max_checkpoint_delay_secs.min(i64::MAX as u64) as i64,
    )));
    let mut verifier = Verifier::new(
        VerifyOptions {
            from_seq: h.from_seq,
            to_seq: Some(h.to_seq),
            max_checkpoint_delay: delay,
            as_of: h.exported_at,
        },
        index.checkpoints.clone(),
        &keys,
    );
    let mut page = Vec::with_capacity(PAGE);
    for (n, text) in lines(path)? {
        let is_event = matches!(&text, Ok(t) if t.starts_with(r#"{"type":"event""#));
        if !is_event {
            continue;
        }
        match parse(path, n, text)? {
            Some(Line::Event(e)) if !seq_in_range(e.seq) => {
                return Err(TrailError::Malformed {
                    path: path.display().to_string(),
                    line: n,
                    message: format!("event seq {} is out of range", e.seq),
                });
            }
            Some(Line::Event(e)) => page.push(e),
            _ => {
                return Err(TrailError::Malformed {
                    path: path.display().to_string(),
                    line: n,
                    message: "not an event".into(),
                });
            }
        }
        if page.len() == PAGE {
            verifier.push(&page);
            page.clear();
        }
    }
    verifier.push(&page);
    verifier.check_unlinked(
        UnlinkedEvents {
            count: h.unlinked,
            oldest_at: h.oldest_unlinked_at,
        },
        time::Duration::seconds(h.link_allowance_secs.min(i64::MAX as u64) as i64),
    );
    Ok((index.header, verifier.finish()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by `fuzz::audit_trail`: serde's message quotes the offending value, so one long
    /// string in an edited file made an error as long as the line.
    #[test]
    fn a_malformed_line_is_named_without_quoting_a_long_value() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.jsonl");
        let long = "x".repeat(100_000);
        std::fs::write(
            &path,
            format!("{{\"type\":\"header\",\"format\":\"{FORMAT}\",\"version\":\"{long}\"}}\n"),
        )
        .unwrap();
        let err = read_index(&path).err().expect("refused").to_string();
        assert!(err.contains("line 1"), "{err}");
        assert!(err.contains("invalid type"), "{err}");
        assert!(
            err.len() < path.display().to_string().len() + 300,
            "{} bytes",
            err.len()
        );
    }

    /// A trail file in `dir` holding only a header with this format and seq range.
    fn header_only(
        dir: &std::path::Path,
        format: String,
        from_seq: i64,
        to_seq: i64,
    ) -> std::path::PathBuf {
        let path = dir.join("t.jsonl");
        let header = Header {
            format,
            version: VERSION,
            exported_at: Timestamp::from_unix_seconds(1_800_000_000),
            from_seq,
            to_seq,
            checkpoint_every_events: 1,
            checkpoint_every_secs: 1,
            max_checkpoint_delay_secs: 1,
            archive: false,
            unlinked: 0,
            oldest_unlinked_at: None,
            link_allowance_secs: 1,
        };
        let mut file = std::fs::File::create(&path).unwrap();
        write_line(&mut file, &Line::Header(header)).unwrap();
        path
    }

    /// Found by `fuzz::audit_trail`: a header naming seq `i64::MAX` made the verifier overflow
    /// counting from it (a panic in a debug build). Seq values near the ends of the range, in
    /// the header, a checkpoint or an event, are refused as malformed.
    #[test]
    fn seq_values_out_of_range_are_refused_before_any_arithmetic() {
        let dir = tempfile::tempdir().unwrap();
        for (from_seq, to_seq) in [(i64::MAX, i64::MAX), (0, i64::MAX), (-1, 5), (i64::MIN, 0)] {
            let path = header_only(dir.path(), FORMAT.into(), from_seq, to_seq);
            let Err(err) = verify_file(&path, None, None) else {
                panic!("from_seq {from_seq}, to_seq {to_seq} was accepted");
            };
            let err = err.to_string();
            assert!(
                err.contains("line 1") && err.contains("out of range"),
                "{err}"
            );
        }
    }

    /// Found by `fuzz::audit_trail` in CI: a header that parses but names another format was
    /// refused with the format quoted whole, so a long one made an error as long as the line.
    #[test]
    fn a_foreign_header_is_named_without_quoting_a_long_format() {
        let dir = tempfile::tempdir().unwrap();
        let path = header_only(dir.path(), "x".repeat(100_000), 0, 0);
        let err = read_index(&path).err().expect("refused").to_string();
        assert!(err.contains("line 1") && err.contains("not a"), "{err}");
        assert!(
            err.len() < path.display().to_string().len() + 300,
            "{} bytes",
            err.len()
        );
    }
}
