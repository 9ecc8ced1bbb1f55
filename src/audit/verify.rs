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
use crate::store::{AuditCheckpoint, AuditEvent, UnlinkedEvents, recompute_audit_hash};
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
    /// A committed event stayed unlinked (outside the chain) longer than allowed while the
    /// service ran: the linker is failing, or the event was kept out of the chain.
    Unlinked,
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
            Problem::Unlinked => "unlinked",
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

/// The action that tells the verifier the service was down before it (see
/// [`Verifier::check_covered`]).
pub const SERVICE_STARTED: &str = "SERVICE_STARTED";

#[derive(Debug, Clone, Copy)]
struct Run {
    first_seq: i64,
    first_at: Timestamp,
    /// Down time credited inside the run.
    down: time::Duration,
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
    /// The events since the last valid checkpoint, for the missing-checkpoint rule.
    run: Option<Run>,
    /// When the previous event was written.
    prev_at: Option<Timestamp>,
    /// A `SERVICE_STARTED` event was walked (in a walk from the start of the chain).
    seen_start: bool,
    /// A late checkpoint before any start event: reported only if no start event follows.
    legacy_late: Option<Finding>,
    /// The highest seq any pushed event claimed.
    max_seen: i64,
    /// The service's down times the walk found: (last sign of life, the start after it).
    down_times: Vec<(Timestamp, Timestamp)>,
    /// Events not linked yet and how long they may wait (see [`Verifier::check_unlinked`]).
    unlinked: Option<(UnlinkedEvents, time::Duration)>,
    report: Report,
}

impl Verifier {
    /// Starts a walk. Checkpoint signatures are checked here, with `keys` (the trusted public
    /// keys, by key id).
    pub fn new(
        opts: VerifyOptions,
        mut checkpoints: Vec<AuditCheckpoint>,
        keys: &[PublicKey],
    ) -> Self {
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
            run: None,
            prev_at: None,
            seen_start: false,
            legacy_late: None,
            max_seen: 0,
            down_times: Vec::new(),
            unlinked: None,
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
                detail: format!(
                    "the chain ends at seq {to}, yet an event claims seq {}",
                    e.seq
                ),
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
                            format!(
                                "event {s} is missing (the trail goes from {} to {})",
                                s - 1,
                                e.seq
                            )
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
                    format!(
                        "it chains from the event now at seq {other}, not from seq {}",
                        s - 1
                    ),
                )
            } else if hash_ok {
                (
                    Problem::Inserted,
                    format!(
                        "its hash is consistent but it does not chain from seq {}",
                        s - 1
                    ),
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
        let mut covered_at = None;
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
            covered_at = Some(covered_at.map_or(c.checkpoint.signed_at, |at: Timestamp| {
                at.min(c.checkpoint.signed_at)
            }));
            self.report.checkpoints_verified += 1;
            self.report.key_ids.insert(c.checkpoint.key_id.clone());
        }
        self.check_covered(e, covered_at);
        self.report.events += 1;
        self.report.first_seq.get_or_insert(e.seq);
        self.report.last_seq = Some(e.seq);
        self.report.last_hash = Some(e.hash.clone());
        self.prev_prev_hash = Some(e.prev_hash.clone());
        self.prev_hash = Some(e.hash.clone());
        self.expected = s + 1;
        None
    }

    /// The missing-checkpoint rule, over runs: a run is the events from the one after a valid
    /// checkpoint up to the next valid checkpoint (or the end of the trail). Its first event is
    /// the one that waited longest, so the run is judged by it: the time from that event to the
    /// checkpoint covering the run (or `as_of`), less the time the service was down meanwhile,
    /// must not exceed the allowance. The service was down in the gap before each
    /// `SERVICE_STARTED` event — from the event before it, the last sign of the service alive
    /// (its `SERVICE_STOPPED`, or its last event before a crash), to the start. An event left
    /// unsigned while the service ran is still caught: events after it, `SERVICE_STOPPED` and
    /// the clock up to `as_of` all show the service alive, and none of that is credited.
    fn check_covered(&mut self, e: &AuditEvent, covered_at: Option<Timestamp>) {
        if e.action == SERVICE_STARTED {
            if let Some(prev) = self.prev_at {
                self.down_times.push((prev, e.created_at));
            }
            if let (Some(run), Some(prev)) = (self.run.as_mut(), self.prev_at) {
                run.down += e.created_at.since(prev).max(time::Duration::ZERO);
            }
            if self.opts.from_seq == 0 && !self.seen_start {
                // Events before the first start predate start/stop records (an older release)
                // or were written by the command line before the service first ran: their
                // down time cannot be told from a failure, so their timeliness is not judged.
                self.seen_start = true;
                if self.legacy_late.take().is_some() {
                    // Forgiven: what comes after the start is judged afresh.
                    self.missing_reported = false;
                }
            }
        }
        self.prev_at = Some(e.created_at);
        let run = self.run.get_or_insert(Run {
            first_seq: e.seq,
            first_at: e.created_at,
            down: time::Duration::ZERO,
        });
        let Some(signed_at) = covered_at else {
            return;
        };
        let run = *run;
        self.run = None;
        // Events up to the first checkpoint may predate checkpointing (an older database).
        if self
            .first_valid_checkpoint
            .is_some_and(|first| e.seq <= first)
        {
            return;
        }
        self.judge(run, Some((e.seq, signed_at)));
    }

    /// Whether `run` waited longer than allowed for the checkpoint at `covered` (seq, signed at);
    /// None: no checkpoint covers it as of `as_of`.
    fn judge(&mut self, run: Run, covered: Option<(i64, Timestamp)>) {
        let Some(delay) = self.opts.max_checkpoint_delay else {
            return;
        };
        if self.missing_reported {
            return;
        }
        let until = covered.map_or(self.opts.as_of, |(_, at)| at);
        let running = until.since(run.first_at) - run.down;
        if running <= delay {
            return;
        }
        let down = if run.down.is_positive() {
            format!(
                "; {} s of it the service was down",
                run.down.whole_seconds()
            )
        } else {
            String::new()
        };
        let detail = match covered {
            Some((seq, at)) => format!(
                "written at {}, first covered by the checkpoint at seq {seq} signed at {at}{down} (allowed: {} s while running)",
                run.first_at,
                delay.whole_seconds()
            ),
            None => format!(
                "written at {}, no signed checkpoint covers it as of {}{down} (allowed: {} s while running)",
                run.first_at,
                self.opts.as_of,
                delay.whole_seconds()
            ),
        };
        let finding = Finding {
            seq: run.first_seq,
            problem: Problem::MissingCheckpoint,
            detail,
        };
        self.missing_reported = true;
        if self.opts.from_seq == 0 && !self.seen_start {
            self.legacy_late = Some(finding);
        } else {
            self.report.findings.push(finding);
        }
    }

    /// Sets the seq the trail should end at, once known (a live walk reads the chain head after
    /// the events, so an event committed during the walk is not mistaken for an insertion).
    pub fn set_to_seq(&mut self, to: i64) {
        self.opts.to_seq = Some(to);
    }

    /// Judges the events that were committed but not linked into the chain when the walk
    /// ended (the `Unlinked` rule): the oldest of them may have waited at most `allowance`
    /// while the service ran, down time credited as in the missing-checkpoint rule (the gaps
    /// before the `SERVICE_STARTED` events the walk saw after it was written).
    pub fn check_unlinked(&mut self, unlinked: UnlinkedEvents, allowance: time::Duration) {
        self.unlinked = Some((unlinked, allowance));
    }

    fn judge_unlinked(&mut self) {
        let Some((unlinked, allowance)) = self.unlinked else {
            return;
        };
        let Some(oldest) = unlinked.oldest_at.filter(|_| unlinked.count > 0) else {
            return;
        };
        let as_of = self.opts.as_of;
        let down = self
            .down_times
            .iter()
            .map(|&(from, to)| {
                to.min(as_of)
                    .since(from.max(oldest))
                    .max(time::Duration::ZERO)
            })
            .fold(time::Duration::ZERO, |a, b| a + b);
        let running = as_of.since(oldest) - down;
        if running <= allowance {
            return;
        }
        let down = if down.is_positive() {
            format!("; {} s of it the service was down", down.whole_seconds())
        } else {
            String::new()
        };
        let after = self.opts.to_seq.unwrap_or(self.expected - 1);
        self.report.findings.push(Finding {
            seq: after + 1,
            problem: Problem::Unlinked,
            detail: format!(
                "{} committed event{} not linked into the chain; the oldest written at {oldest}, \
                 unlinked as of {as_of}{down} (allowed: {} s while running)",
                unlinked.count,
                if unlinked.count == 1 { " is" } else { "s are" },
                allowance.whole_seconds()
            ),
        });
    }

    /// Ends the walk: events missing or added at the end, and the verdict.
    pub fn finish(mut self) -> Report {
        self.judge_unlinked();
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
        if let Some(run) = self.run.take() {
            // The tail no checkpoint reached in the walk: a checkpoint beyond where the walk
            // stopped may still cover it.
            let covering = self
                .checkpoints
                .iter()
                .find(|c| c.valid && c.checkpoint.seq >= run.first_seq)
                .map(|c| (c.checkpoint.seq, c.checkpoint.signed_at));
            let exempt = covering.is_some()
                && self
                    .first_valid_checkpoint
                    .is_some_and(|first| run.first_seq <= first);
            if !exempt {
                self.judge(run, covering);
            }
        }
        if let Some(late) = self.legacy_late.take() {
            self.report.findings.push(late);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::signer::{LocalEd25519Signer, Signer};
    use serde_json::json;
    use sqlx::types::Json;

    fn t(secs: i64) -> Timestamp {
        Timestamp::parse("2026-11-23T09:00:00Z")
            .unwrap()
            .plus(time::Duration::seconds(secs))
    }

    /// A well-formed chain of `n` events, one a second.
    fn chain(n: i64) -> Vec<AuditEvent> {
        let mut prev = GENESIS_HASH.to_string();
        (1..=n)
            .map(|seq| {
                let e = event(seq, &prev, json!({ "n": seq }));
                prev = e.hash.clone();
                e
            })
            .collect()
    }

    fn event(seq: i64, prev: &str, detail: serde_json::Value) -> AuditEvent {
        let mut e = AuditEvent {
            seq,
            event_id: uuid::Uuid::from_u128(seq as u128),
            actor: "user:1".into(),
            action: "REQUEST_SUBMITTED".into(),
            request_id: Some(seq),
            record_id: None,
            detail: Json(detail),
            created_at: t(seq),
            prev_hash: prev.to_string(),
            hash: String::new(),
        };
        e.hash = recompute_audit_hash(&e);
        e
    }

    /// Re-hashes events from index `from` on, as an attacker who knows the scheme would.
    fn rehash(events: &mut [AuditEvent], from: usize) {
        for i in from..events.len() {
            if i > 0 {
                events[i].prev_hash = events[i - 1].hash.clone();
            }
            events[i].hash = recompute_audit_hash(&events[i]);
        }
    }

    async fn sign(signer: &dyn Signer, e: &AuditEvent, at: Timestamp) -> AuditCheckpoint {
        let s = signer
            .sign(&checkpoint_message(e.seq, &e.hash, at))
            .await
            .unwrap();
        AuditCheckpoint {
            seq: e.seq,
            head_hash: e.hash.clone(),
            signed_at: at,
            key_id: s.key_id,
            algorithm: s.algorithm.as_str().into(),
            signature: B64.encode(s.bytes),
        }
    }

    fn opts(to: i64) -> VerifyOptions {
        VerifyOptions {
            from_seq: 0,
            to_seq: Some(to),
            max_checkpoint_delay: None,
            as_of: t(to + 1),
        }
    }

    fn first(report: &Report) -> (i64, Problem) {
        let f = report.first_bad.as_ref().expect("a finding");
        (f.seq, f.problem)
    }

    fn key() -> (tempfile::TempDir, LocalEd25519Signer) {
        let dir = tempfile::tempdir().unwrap();
        let signer = LocalEd25519Signer::open_or_create(&dir.path().join("k.p8")).unwrap();
        (dir, signer)
    }

    #[test]
    fn an_untouched_chain_verifies_across_pages() {
        let events = chain(PAGE as i64 * 2 + 7);
        let report = verify_all(opts(events.len() as i64), &events, vec![], &[]);
        assert!(report.ok(), "{}", report.summary());
        assert_eq!(report.events, events.len() as u64);
        assert_eq!(
            report.last_hash.as_deref(),
            Some(events.last().unwrap().hash.as_str())
        );
        assert!(report.summary().starts_with("Audit trail verified"));
    }

    #[test]
    fn an_edited_detail_is_named_by_its_seq() {
        let mut events = chain(50);
        events[20].detail = Json(json!({ "n": 999 }));
        let report = verify_all(opts(50), &events, vec![], &[]);
        assert_eq!(first(&report), (21, Problem::Edited));
        assert!(
            report.summary().contains("First bad seq 21: edited"),
            "{}",
            report.summary()
        );
    }

    #[test]
    fn a_deleted_event_is_a_gap_at_its_seq() {
        let mut events = chain(50);
        events.remove(9);
        assert_eq!(
            first(&verify_all(opts(50), &events, vec![], &[])),
            (10, Problem::Deleted)
        );
        // The last event gone: the chain head still says 50.
        let mut events = chain(50);
        events.pop();
        assert_eq!(
            first(&verify_all(opts(50), &events, vec![], &[])),
            (50, Problem::Deleted)
        );
    }

    #[test]
    fn swapped_events_are_reordered() {
        // Lines swapped in a file: seq order broken.
        let mut events = chain(50);
        events.swap(29, 30);
        assert_eq!(
            first(&verify_all(opts(50), &events, vec![], &[])),
            (30, Problem::Reordered)
        );
        // Rows swapped in the database (their seq numbers exchanged): read back in seq order.
        let mut events = chain(50);
        events.swap(29, 30);
        events[29].seq = 30;
        events[30].seq = 31;
        assert_eq!(
            first(&verify_all(opts(50), &events, vec![], &[])),
            (30, Problem::Reordered)
        );
    }

    #[test]
    fn a_forged_row_slipped_in_is_inserted() {
        // In the middle, later rows shifted up, the forgery hashed correctly.
        let mut events = chain(50);
        let forged = event(21, &events[19].hash, json!({ "forged": true }));
        events.insert(20, forged);
        for e in events.iter_mut().skip(21) {
            e.seq += 1;
        }
        assert_eq!(
            first(&verify_all(opts(51), &events, vec![], &[])),
            (21, Problem::Inserted)
        );
        // After the head, chained and hashed correctly: only the head betrays it.
        let mut events = chain(50);
        events.push(event(51, &events[49].hash.clone(), json!({})));
        let report = verify_all(opts(50), &events, vec![], &[]);
        assert_eq!(first(&report), (51, Problem::Inserted));
    }

    #[tokio::test]
    async fn a_rewritten_chain_is_caught_by_the_checkpoint_after_it() {
        let (_dir, signer) = key();
        let keys = vec![signer.public_key().await.unwrap()];
        let mut events = chain(100);
        let checkpoints = vec![
            sign(&signer, &events[39], t(41)).await,
            sign(&signer, &events[79], t(81)).await,
        ];
        // Edit event 60 and recompute every hash after it: the chain itself is consistent.
        events[59].actor = "user:666".into();
        rehash(&mut events, 59);
        let report = verify_all(opts(100), &events, checkpoints, &keys);
        let (seq, problem) = first(&report);
        assert_eq!((seq, problem), (41, Problem::Rewritten));
        assert!(report.first_bad.unwrap().detail.contains("41–80"));
    }

    #[tokio::test]
    async fn forged_checkpoints_fail_and_rotated_keys_still_verify() {
        let (_a, key_a) = key();
        let (_b, key_b) = key();
        let events = chain(30);
        // Key A signed the first checkpoint, key B (after rotation) the second.
        let checkpoints = vec![
            sign(&key_a, &events[9], t(11)).await,
            sign(&key_b, &events[19], t(21)).await,
        ];
        let keys = vec![
            key_a.public_key().await.unwrap(),
            key_b.public_key().await.unwrap(),
        ];
        let report = verify_all(opts(30), &events, checkpoints.clone(), &keys);
        assert!(report.ok(), "{}", report.summary());
        assert_eq!(report.checkpoints_verified, 2);
        assert_eq!(report.key_ids.len(), 2);

        // Key A no longer known: its checkpoint cannot be trusted.
        let report = verify_all(opts(30), &events, checkpoints.clone(), &keys[1..]);
        assert_eq!(first(&report), (10, Problem::ForgedCheckpoint));
        assert!(report.first_bad.unwrap().detail.contains("unknown key"));

        // A signature over something else, relabelled.
        let mut forged = checkpoints.clone();
        forged[1].head_hash = events[18].hash.clone();
        let report = verify_all(opts(30), &events, forged, &keys);
        assert_eq!(first(&report), (20, Problem::ForgedCheckpoint));
    }

    #[tokio::test]
    async fn an_event_without_a_timely_checkpoint_is_a_missing_checkpoint() {
        let (_dir, signer) = key();
        let keys = vec![signer.public_key().await.unwrap()];
        let events = chain(100);
        let every_ten = |_: ()| async {
            let mut cps = Vec::new();
            for i in (9..100).step_by(10) {
                cps.push(sign(&signer, &events[i], t(i as i64 + 2)).await);
            }
            cps
        };
        let cps = every_ten(()).await;
        let mut o = opts(100);
        o.max_checkpoint_delay = Some(time::Duration::seconds(15));
        assert!(verify_all(o.clone(), &events, cps.clone(), &keys).ok());

        // The checkpoints at 50 and 60 removed: events 41.. wait until 70's checkpoint.
        let holes: Vec<_> = cps
            .iter()
            .filter(|c| c.seq != 50 && c.seq != 60)
            .cloned()
            .collect();
        let report = verify_all(o.clone(), &events, holes, &keys);
        assert_eq!(first(&report), (41, Problem::MissingCheckpoint));

        // Nothing covers the tail, long after it was written.
        let report = verify_all(
            VerifyOptions {
                as_of: t(200),
                ..o.clone()
            },
            &events[..95],
            cps[..9].to_vec(),
            &keys,
        );
        // (The trail also stops short of seq 100, a deletion at 96, but 91 comes first.)
        assert_eq!(first(&report).0, 91);
        assert_eq!(first(&report).1, Problem::MissingCheckpoint);

        // Events written before checkpointing began are not held to the rule.
        let report = verify_all(o, &events, cps[5..].to_vec(), &keys);
        assert!(report.ok(), "{}", report.summary());
    }

    #[tokio::test]
    async fn an_incremental_trail_is_anchored_by_the_checkpoint_it_starts_at() {
        let (_dir, signer) = key();
        let keys = vec![signer.public_key().await.unwrap()];
        let events = chain(60);
        let cp = sign(&signer, &events[39], t(41)).await;
        let o = VerifyOptions {
            from_seq: 40,
            ..opts(60)
        };
        let report = verify_all(o.clone(), &events[40..], vec![cp.clone()], &keys);
        assert!(report.ok() && report.anchored, "{}", report.summary());
        // Without the checkpoint it still walks, but says it is not anchored.
        let report = verify_all(o.clone(), &events[40..], vec![], &keys);
        assert!(report.ok() && !report.anchored);
        assert!(report.summary().contains("not vouched for"));
        // The first event's predecessor edited: the anchor catches it.
        let mut tampered = events[40..].to_vec();
        tampered[0].prev_hash = events[10].hash.clone();
        tampered[0].hash = recompute_audit_hash(&tampered[0]);
        let report = verify_all(o, &tampered, vec![cp], &keys);
        assert_eq!(first(&report).0, 41);
    }

    /// A chain of `(action, written at seconds)`.
    fn timed(spec: &[(&str, i64)]) -> Vec<AuditEvent> {
        let mut prev = GENESIS_HASH.to_string();
        spec.iter()
            .enumerate()
            .map(|(i, (action, at))| {
                let mut e = event(i as i64 + 1, &prev, json!({ "n": i }));
                e.action = action.to_string();
                e.created_at = t(*at);
                e.hash = recompute_audit_hash(&e);
                prev = e.hash.clone();
                e
            })
            .collect()
    }

    /// Verifies `events` with checkpoints `(seq, signed at seconds)`, the allowance 660 s (a
    /// checkpoint every 300 s), as of `as_of` seconds.
    async fn verify_timed(events: &[AuditEvent], checkpoints: &[(i64, i64)], as_of: i64) -> Report {
        let (_dir, signer) = key();
        let keys = vec![signer.public_key().await.unwrap()];
        let mut cps = Vec::new();
        for (seq, at) in checkpoints {
            cps.push(sign(&signer, &events[*seq as usize - 1], t(*at)).await);
        }
        let opts = VerifyOptions {
            from_seq: 0,
            to_seq: Some(events.len() as i64),
            max_checkpoint_delay: Some(time::Duration::seconds(660)),
            as_of: t(as_of),
        };
        verify_all(opts, events, cps, &keys)
    }

    #[tokio::test]
    async fn down_time_after_a_stop_or_a_crash_is_not_a_missing_checkpoint() {
        const R: &str = "REQUEST_SUBMITTED";
        // A crash 2 minutes after the last event, down 30 minutes: the tail is signed at the
        // restart, after its SERVICE_STARTED.
        let crash = timed(&[
            ("SERVICE_STARTED", 0),
            (R, 10),
            (R, 60),
            (R, 120),
            ("SERVICE_STARTED", 1920),
        ]);
        let report = verify_timed(&crash, &[(2, 15), (5, 1921)], 5000).await;
        assert!(report.ok(), "{}", report.summary());

        // A stop whose own checkpoint was not signed (the signer was unreachable), down 2 hours.
        let stop = timed(&[
            ("SERVICE_STARTED", 0),
            (R, 60),
            ("SERVICE_STOPPED", 180),
            ("SERVICE_STARTED", 7380),
        ]);
        let report = verify_timed(&stop, &[(1, 1), (4, 7381)], 9000).await;
        assert!(report.ok(), "{}", report.summary());

        // Several restarts in one unsigned stretch: each gap is down time.
        let flapping = timed(&[
            ("SERVICE_STARTED", 0),
            (R, 100),
            ("SERVICE_STARTED", 1000),
            (R, 1100),
            ("SERVICE_STARTED", 3000),
        ]);
        let report = verify_timed(&flapping, &[(1, 1), (5, 3001)], 3100).await;
        assert!(report.ok(), "{}", report.summary());
    }

    #[tokio::test]
    async fn an_event_left_unsigned_while_the_service_ran_is_still_a_missing_checkpoint() {
        const R: &str = "REQUEST_SUBMITTED";
        // The service kept writing for 20 minutes after seq 2 before anything signed it.
        let running = timed(&[("SERVICE_STARTED", 0), (R, 60), (R, 600), (R, 1260)]);
        let report = verify_timed(&running, &[(1, 1), (4, 1261)], 1300).await;
        assert_eq!(first(&report), (2, Problem::MissingCheckpoint));

        // Then it crashed and restarted: the time before the crash still counts.
        let crashed = timed(&[
            ("SERVICE_STARTED", 0),
            (R, 60),
            (R, 900),
            ("SERVICE_STARTED", 5000),
        ]);
        let report = verify_timed(&crashed, &[(1, 1), (4, 5001)], 5100).await;
        assert_eq!(first(&report), (2, Problem::MissingCheckpoint));
        assert!(report.first_bad.unwrap().detail.contains("was down"));

        // Stopped gracefully 20 minutes later: the stop shows it was running meanwhile.
        let stopped = timed(&[
            ("SERVICE_STARTED", 0),
            (R, 60),
            ("SERVICE_STOPPED", 1260),
            ("SERVICE_STARTED", 9000),
        ]);
        let report = verify_timed(&stopped, &[(1, 1), (3, 1261)], 9100).await;
        assert_eq!(first(&report), (2, Problem::MissingCheckpoint));

        // Still running, nothing signed for 12 minutes, as of now.
        let tail = timed(&[("SERVICE_STARTED", 0), (R, 60)]);
        let report = verify_timed(&tail, &[(1, 1)], 60 + 661).await;
        assert_eq!(first(&report), (2, Problem::MissingCheckpoint));
        let report = verify_timed(&tail, &[(1, 1)], 60 + 600).await;
        assert!(report.ok(), "{}", report.summary());
    }

    #[tokio::test]
    async fn a_late_checkpoint_from_before_start_records_is_forgiven_once_the_service_records_starts()
     {
        const R: &str = "REQUEST_SUBMITTED";
        // An older release: stopped and restarted without records; the tail signed late.
        let mut spec = vec![(R, 0), (R, 60), (R, 3000)];
        let old = timed(&spec);
        let report = verify_timed(&old, &[(1, 1), (3, 3001)], 3100).await;
        assert_eq!(first(&report), (2, Problem::MissingCheckpoint));
        // This release's first start: the past cannot be told apart from down time.
        spec.push(("SERVICE_STARTED", 3100));
        let upgraded = timed(&spec);
        let report = verify_timed(&upgraded, &[(1, 1), (3, 3001), (4, 3101)], 3200).await;
        assert!(report.ok(), "{}", report.summary());
        // What comes after the start is held to the rule again.
        spec.extend([(R, 3200), (R, 4000)]);
        let later = timed(&spec);
        let report = verify_timed(&later, &[(1, 1), (3, 3001), (4, 3101), (6, 4001)], 4100).await;
        assert_eq!(first(&report), (5, Problem::MissingCheckpoint));
    }

    /// Verifies the timed chain `spec` (every event covered by a checkpoint) with `unlinked`
    /// events outside it, the oldest written at `oldest` seconds, as of `as_of`, allowing 5 s.
    async fn verify_with_unlinked(
        spec: &[(&str, i64)],
        unlinked: u64,
        oldest: i64,
        as_of: i64,
    ) -> Report {
        let events = timed(spec);
        let (_dir, signer) = key();
        let keys = vec![signer.public_key().await.unwrap()];
        let last = events.last().unwrap();
        let cps = vec![sign(&signer, last, last.created_at).await];
        let mut v = Verifier::new(
            VerifyOptions {
                from_seq: 0,
                to_seq: Some(events.len() as i64),
                max_checkpoint_delay: Some(time::Duration::seconds(660)),
                as_of: t(as_of),
            },
            cps,
            &keys,
        );
        v.push(&events);
        v.check_unlinked(
            UnlinkedEvents {
                count: unlinked,
                oldest_at: (unlinked > 0).then(|| t(oldest)),
            },
            time::Duration::seconds(5),
        );
        v.finish()
    }

    #[tokio::test]
    async fn an_event_left_unlinked_past_the_allowance_is_reported_a_fresh_one_is_not() {
        const R: &str = "REQUEST_SUBMITTED";
        let spec = [("SERVICE_STARTED", 0), (R, 10), (R, 20)];
        // Written 2 s ago: the linker has not got to it yet.
        let fresh = verify_with_unlinked(&spec, 1, 98, 100).await;
        assert!(fresh.ok(), "{}", fresh.summary());
        // Written 60 s ago and still outside the chain, the service running all along.
        let stale = verify_with_unlinked(&spec, 3, 40, 100).await;
        assert_eq!(first(&stale), (4, Problem::Unlinked), "{}", stale.summary());
        assert!(
            stale.findings[0]
                .detail
                .starts_with("3 committed events are not linked"),
            "{}",
            stale.findings[0].detail
        );
        // Nothing unlinked: nothing to report.
        assert!(verify_with_unlinked(&spec, 0, 0, 100).await.ok());
    }

    #[tokio::test]
    async fn down_time_after_an_unlinked_event_is_credited() {
        const R: &str = "REQUEST_SUBMITTED";
        // Written at 21 s; the service died at 22 s (its last event) and started again at
        // 3,000 s: of the 2,982 s until 3,003 s, only 4 s were running time.
        let spec = [
            ("SERVICE_STARTED", 0),
            (R, 10),
            (R, 22),
            ("SERVICE_STARTED", 3000),
        ];
        let report = verify_with_unlinked(&spec, 1, 21, 3003).await;
        assert!(report.ok(), "{}", report.summary());
        // 10 s after the start it is late again.
        let report = verify_with_unlinked(&spec, 1, 21, 3010).await;
        assert_eq!(
            first(&report),
            (5, Problem::Unlinked),
            "{}",
            report.summary()
        );
        assert!(
            report.findings[0]
                .detail
                .contains("2978 s of it the service was down")
        );
    }
}
