//! The verifier: pure, no database. It walks events in sequence order, recomputes each hash from
//! the previous hash and the event's canonical bytes, checks sequence numbers and links, checks
//! every checkpoint's signature and that its head hash is the chain's hash at its seq, and checks
//! that no event went longer than allowed without a checkpoint covering it. It reports the first
//! bad sequence number and what is wrong there.
//!
//! It streams: events arrive in pages ([`Verifier::push`]), and only the current and previous
//! page are kept for telling a reordered event from an edited one, so the memory it needs does not
//! grow with the trail.

use super::signer::{Algorithm, PublicKey, Signature, verify_signature};
use crate::canonical::canonical_json;
use crate::domain::Timestamp;
use crate::store::{AuditCheckpoint, AuditEvent, recompute_audit_hash};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use std::collections::{BTreeSet, HashMap, HashSet};

/// The hash the first event chains from.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The bytes a checkpoint signs: canonical JSON of its purpose, seq, head hash and time.
pub fn checkpoint_message(seq: i64, head_hash: &str, signed_at: Timestamp) -> Vec<u8> {
    canonical_json(&serde_json::json!({
        "purpose": "passkey.audit.checkpoint.v1",
        "seq": seq,
        "head_hash": head_hash,
        "signed_at": signed_at.to_fixed_text(),
    }))
    .into_bytes()
}

/// What is wrong at a sequence number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Problem {
    /// The event's contents (or its stored prev hash) no longer give its hash.
    Edited,
    /// One or more events are missing here.
    Deleted,
    /// An event that was never appended through the chain sits here.
    Inserted,
    /// Events are out of their chain order.
    Reordered,
    /// A checkpoint whose signature does not verify, or whose key is unknown.
    ForgedCheckpoint,
    /// A checkpoint's signed head hash is not the chain's hash at its seq: the chain was
    /// rewritten (hashes recomputed) somewhere after the previous good checkpoint.
    Rewritten,
    /// An event went longer than allowed without a signed checkpoint covering it.
    MissingCheckpoint,
}

impl Problem {
    pub fn as_str(self) -> &'static str {
        match self {
            Problem::Edited => "edited",
            Problem::Deleted => "deleted",
            Problem::Inserted => "inserted",
            Problem::Reordered => "reordered",
            Problem::ForgedCheckpoint => "forged checkpoint",
            Problem::Rewritten => "rewritten",
            Problem::MissingCheckpoint => "missing checkpoint",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Finding {
    pub seq: i64,
    pub problem: Problem,
    pub detail: String,
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "seq {}: {} — {}",
            self.seq,
            self.problem.as_str(),
            self.detail
        )
    }
}

/// What the walk is checked against.
#[derive(Debug, Clone)]
pub struct VerifyOptions {
    /// Events are expected from `from_seq + 1` (0: the whole chain, from the genesis hash).
    pub from_seq: i64,
    /// The last seq the trail should reach (the chain head when it was read); events beyond it
    /// were inserted, events short of it were deleted. None: whatever the trail holds.
    pub to_seq: Option<i64>,
    /// How long an event may wait for a checkpoint covering it; None switches the check off.
    pub max_checkpoint_delay: Option<time::Duration>,
    /// "Now", for events no checkpoint covers yet (the export time for a file).
    pub as_of: Timestamp,
}

/// The outcome of a walk.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Report {
    pub events: u64,
    pub first_seq: Option<i64>,
    pub last_seq: Option<i64>,
    pub last_hash: Option<String>,
    /// Checkpoints whose signature and head hash both verified.
    pub checkpoints_verified: u64,
    /// Key ids that signed those checkpoints.
    pub key_ids: BTreeSet<String>,
    /// False when the trail starts mid-chain with no checkpoint vouching for its first prev hash.
    pub anchored: bool,
    /// The first bad sequence number and what is wrong there; None when the trail verifies.
    pub first_bad: Option<Finding>,
    /// Every problem found (the chain walk stops at its first).
    pub findings: Vec<Finding>,
}

impl Report {
    pub fn ok(&self) -> bool {
        self.first_bad.is_none()
    }

    /// One paragraph for a person: the verdict first.
    pub fn summary(&self) -> String {
        let range = match (self.first_seq, self.last_seq) {
            (Some(a), Some(b)) => format!("seq {a}–{b}"),
            _ => "no events".into(),
        };
        match &self.first_bad {
            None => format!(
                "Audit trail verified: {} events ({range}), {} signed checkpoints ({} key{}){}.",
                self.events,
                self.checkpoints_verified,
                self.key_ids.len(),
                if self.key_ids.len() == 1 { "" } else { "s" },
                if self.anchored {
                    ""
                } else {
                    "; the first event's predecessor is not vouched for by a checkpoint in this trail"
                }
            ),
            Some(first) => format!(
                "Audit trail FAILED verification. First bad {first}. ({} problem{} found; {} events read, {range}.)",
                self.findings.len(),
                if self.findings.len() == 1 { "" } else { "s" },
                self.events
            ),
        }
    }
}

struct CheckedCheckpoint {
    checkpoint: AuditCheckpoint,
    /// Its signature verified with a known key.
    valid: bool,
}

pub struct Verifier {
    opts: VerifyOptions,
    checkpoints: Vec<CheckedCheckpoint>,
    /// Index of the first checkpoint with seq >= the next event's seq.
    next_checkpoint: usize,
    /// Seq of the first valid checkpoint: events up to it may predate checkpointing.
    first_valid_checkpoint: Option<i64>,
    last_good_checkpoint: i64,
    expected: i64,
    prev_hash: Option<String>,
    prev_prev_hash: Option<String>,
    previous_page: HashMap<String, i64>,
    stopped: bool,
    missing_reported: bool,
    /// The highest seq any pushed event claimed.
    max_seen: i64,
    report: Report,
}

impl Verifier {
    /// Starts a walk. Checkpoint signatures are checked here, with `keys` (the trusted public
    /// keys, by key id).
    pub fn new(opts: VerifyOptions, mut checkpoints: Vec<AuditCheckpoint>, keys: &[PublicKey]) -> Self {
        checkpoints.sort_by_key(|c| c.seq);
        let keys: HashMap<&str, &PublicKey> = keys.iter().map(|k| (k.key_id.as_str(), k)).collect();
        let mut findings = Vec::new();
        let checked: Vec<CheckedCheckpoint> = checkpoints
            .into_iter()
            .map(|c| {
                let problem = check_signature(&c, &keys);
                if let Some(detail) = &problem {
                    findings.push(Finding {
                        seq: c.seq,
                        problem: Problem::ForgedCheckpoint,
                        detail: detail.clone(),
                    });
                }
                CheckedCheckpoint {
                    valid: problem.is_none(),
                    checkpoint: c,
                }
            })
            .collect();
        let first_valid_checkpoint = checked.iter().find(|c| c.valid).map(|c| c.checkpoint.seq);
        // The first event's predecessor: the genesis hash, or a valid checkpoint at `from_seq`.
        let anchor = if opts.from_seq == 0 {
            Some(GENESIS_HASH.to_string())
        } else {
            checked
                .iter()
                .find(|c| c.valid && c.checkpoint.seq == opts.from_seq)
                .map(|c| c.checkpoint.head_hash.clone())
        };
        let next_checkpoint = checked.partition_point(|c| c.checkpoint.seq <= opts.from_seq);
        Verifier {
            expected: opts.from_seq + 1,
            last_good_checkpoint: opts.from_seq,
            report: Report {
                events: 0,
                first_seq: None,
                last_seq: None,
                last_hash: None,
                checkpoints_verified: 0,
                key_ids: BTreeSet::new(),
                anchored: anchor.is_some(),
                first_bad: None,
                findings,
            },
            prev_hash: anchor,
            prev_prev_hash: None,
            previous_page: HashMap::new(),
            stopped: false,
            missing_reported: false,
            max_seen: 0,
            first_valid_checkpoint,
            next_checkpoint,
            checkpoints: checked,
            opts,
        }
    }

    /// Walks the next page of events, in the order the trail holds them.
    pub fn push(&mut self, page: &[AuditEvent]) {
        self.max_seen = page.iter().map(|e| e.seq).fold(self.max_seen, i64::max);
        if self.stopped {
            return;
        }
        let here: HashMap<&str, i64> = page.iter().map(|e| (e.hash.as_str(), e.seq)).collect();
        let seqs_here: HashSet<i64> = page.iter().map(|e| e.seq).collect();
        for e in page {
            if let Some(finding) = self.step(e, &here, &seqs_here) {
                self.report.findings.push(finding);
                self.stopped = true;
                return;
            }
        }
        self.previous_page = page.iter().map(|e| (e.hash.clone(), e.seq)).collect();
    }

    fn known_hash(&self, hash: &str, here: &HashMap<&str, i64>) -> Option<i64> {
        here.get(hash)
            .copied()
            .or_else(|| self.previous_page.get(hash).copied())
    }

    /// One event; a finding stops the chain walk.
    fn step(
        &mut self,
        e: &AuditEvent,
        here: &HashMap<&str, i64>,
        seqs_here: &HashSet<i64>,
    ) -> Option<Finding> {
        let s = self.expected;
        if let Some(to) = self.opts.to_seq
            && e.seq > to
            && e.seq >= s
        {
            return Some(Finding {
                seq: e.seq,
                problem: Problem::Inserted,
                detail: format!("the chain ends at seq {to}, yet an event claims seq {}", e.seq),
            });
        }
        if e.seq != s {
            return Some(if e.seq > s {
                if seqs_here.contains(&s) {
                    Finding {
                        seq: s,
                        problem: Problem::Reordered,
                        detail: format!("seq {} comes before seq {s} in the trail", e.seq),
                    }
                } else {
                    Finding {
                        seq: s,
                        problem: Problem::Deleted,
                        detail: if e.seq == s + 1 {
                            format!("event {s} is missing (the trail goes from {} to {})", s - 1, e.seq)
                        } else {
                            format!("events {s}–{} are missing", e.seq - 1)
                        },
                    }
                }
            } else {
                Finding {
                    seq: e.seq,
                    problem: Problem::Reordered,
                    detail: format!("seq {} appears again after seq {}", e.seq, s - 1),
                }
            });
        }
        let recomputed = recompute_audit_hash(e);
        let hash_ok = recomputed == e.hash;
        let prev = self.prev_hash.clone();
        let link_ok = prev.as_deref().is_none_or(|p| p == e.prev_hash);
        if !link_ok {
            let problem = if self.prev_prev_hash.as_deref() == Some(e.prev_hash.as_str()) {
                // Two consecutive events chain from the same predecessor: the first of them was
                // slipped in between.
                return Some(Finding {
                    seq: s - 1,
                    problem: Problem::Inserted,
                    detail: format!(
                        "events {} and {s} both chain from seq {}: event {} was not appended through the chain",
                        s - 1,
                        s - 2,
                        s - 1
                    ),
                });
            } else if let Some(other) = self.known_hash(&e.prev_hash, here) {
                (
                    Problem::Reordered,
                    format!("it chains from the event now at seq {other}, not from seq {}", s - 1),
                )
            } else if hash_ok {
                (
                    Problem::Inserted,
                    format!("its hash is consistent but it does not chain from seq {}", s - 1),
                )
            } else {
                (
                    Problem::Edited,
                    format!(
                        "it does not chain from seq {} and its hash does not match its contents \
                         (edited, or an event before it was removed)",
                        s - 1
                    ),
                )
            };
            return Some(Finding {
                seq: s,
                problem: problem.0,
                detail: problem.1,
            });
        }
        if !hash_ok {
            return Some(Finding {
                seq: s,
                problem: Problem::Edited,
                detail: "its stored hash does not match its contents".into(),
            });
        }
        // The event is sound. Checkpoints at this seq must vouch for exactly this hash.
        while let Some(c) = self.checkpoints.get(self.next_checkpoint)
            && c.checkpoint.seq <= s
        {
            self.next_checkpoint += 1;
            if !c.valid || c.checkpoint.seq < s {
                continue;
            }
            if c.checkpoint.head_hash != e.hash {
                return Some(Finding {
                    seq: self.last_good_checkpoint + 1,
                    problem: Problem::Rewritten,
                    detail: format!(
                        "the checkpoint at seq {s} signed a different head hash: events {}–{s} were rewritten",
                        self.last_good_checkpoint + 1
                    ),
                });
            }
            self.last_good_checkpoint = s;
            self.report.checkpoints_verified += 1;
            self.report.key_ids.insert(c.checkpoint.key_id.clone());
        }
        self.check_covered(e);
        self.report.events += 1;
        self.report.first_seq.get_or_insert(e.seq);
        self.report.last_seq = Some(e.seq);
        self.report.last_hash = Some(e.hash.clone());
        self.prev_prev_hash = Some(e.prev_hash.clone());
        self.prev_hash = Some(e.hash.clone());
        self.expected = s + 1;
        None
    }

    /// The missing-checkpoint rule: every event after the first checkpoint is covered by a valid
    /// checkpoint signed within the allowed delay (or the delay has not run out yet).
    fn check_covered(&mut self, e: &AuditEvent) {
        let Some(delay) = self.opts.max_checkpoint_delay else {
            return;
        };
        if self.missing_reported {
            return;
        }
        let covering = self.checkpoints[self.next_checkpoint.saturating_sub(1)..]
            .iter()
            .find(|c| c.valid && c.checkpoint.seq >= e.seq)
            .map(|c| &c.checkpoint);
        // Events up to the first checkpoint may predate checkpointing (an older database).
        if let (Some(first), Some(_)) = (self.first_valid_checkpoint, covering)
            && e.seq <= first
        {
            return;
        }
        let deadline = e.created_at.plus(delay);
        let late = match covering {
            Some(c) if c.signed_at > deadline => Some(format!(
                "written at {}, first covered by the checkpoint at seq {} signed at {} (allowed: {} s)",
                e.created_at,
                c.seq,
                c.signed_at,
                delay.whole_seconds()
            )),
            Some(_) => None,
            None if self.opts.as_of > deadline => Some(format!(
                "written at {}, no signed checkpoint covers it as of {} (allowed: {} s)",
                e.created_at,
                self.opts.as_of,
                delay.whole_seconds()
            )),
            None => None,
        };
        if let Some(detail) = late {
            self.missing_reported = true;
            self.report.findings.push(Finding {
                seq: e.seq,
                problem: Problem::MissingCheckpoint,
                detail,
            });
        }
    }

    /// Sets the seq the trail should end at, once known (a live walk reads the chain head after
    /// the events, so an event committed during the walk is not mistaken for an insertion).
    pub fn set_to_seq(&mut self, to: i64) {
        self.opts.to_seq = Some(to);
    }

    /// Ends the walk: events missing or added at the end, and the verdict.
    pub fn finish(mut self) -> Report {
        if let Some(to) = self.opts.to_seq
            && self.max_seen > to
        {
            // Whatever the walk made of rows beyond the head, they were never appended.
            self.report.findings.retain(|f| f.seq <= to);
            self.report.findings.push(Finding {
                seq: to + 1,
                problem: Problem::Inserted,
                detail: format!(
                    "the chain head is seq {to}, yet the trail holds events up to seq {}",
                    self.max_seen
                ),
            });
            self.stopped = true;
        }
        if !self.stopped {
            let last = self.expected - 1;
            let beyond = self
                .checkpoints
                .iter()
                .find(|c| c.valid && c.checkpoint.seq > last)
                .map(|c| c.checkpoint.seq);
            let should_reach = self.opts.to_seq.into_iter().chain(beyond).max();
            if let Some(to) = should_reach
                && to > last
            {
                self.report.findings.push(Finding {
                    seq: last + 1,
                    problem: Problem::Deleted,
                    detail: if Some(to) == beyond {
                        format!("a signed checkpoint vouches for seq {to}, but the trail ends at seq {last}")
                    } else {
                        format!("the chain reaches seq {to}, but the trail ends at seq {last}")
                    },
                });
            }
        }
        let mut report = self.report;
        report.first_bad = report.findings.iter().min_by_key(|f| f.seq).cloned();
        report
    }
}

fn check_signature(c: &AuditCheckpoint, keys: &HashMap<&str, &PublicKey>) -> Option<String> {
    let Some(key) = keys.get(c.key_id.as_str()) else {
        return Some(format!("signed by unknown key `{}`", c.key_id));
    };
    let Some(algorithm) = Algorithm::parse(&c.algorithm) else {
        return Some(format!("unknown signature algorithm `{}`", c.algorithm));
    };
    let Ok(bytes) = B64.decode(&c.signature) else {
        return Some("the signature is not base64".into());
    };
    let signature = Signature {
        key_id: c.key_id.clone(),
        algorithm,
        bytes,
    };
    let message = checkpoint_message(c.seq, &c.head_hash, c.signed_at);
    if verify_signature(key, &message, &signature) {
        None
    } else {
        Some(format!("the signature by `{}` does not verify", c.key_id))
    }
}

/// Verifies a whole trail held in memory (tests, small exports).
pub fn verify_all(
    opts: VerifyOptions,
    events: &[AuditEvent],
    checkpoints: Vec<AuditCheckpoint>,
    keys: &[PublicKey],
) -> Report {
    let mut v = Verifier::new(opts, checkpoints, keys);
    for page in events.chunks(PAGE) {
        v.push(page);
    }
    v.finish()
}

/// Events per page when walking a trail.
pub const PAGE: usize = 5000;
