//! The metrics Passkey records: one set of OpenTelemetry instruments for the process, taken from
//! the global meter provider that `telemetry::init` installs (without it every instrument is a
//! no-op, as in tests and one-shot commands). They are exported over OTLP and rendered for
//! `/metrics` (see `telemetry`).
//!
//! Labels are low-cardinality words only — an activity type, an outcome, a backend, an operation,
//! an error class, a job name, an audit action, a request status — never a person, a request
//! number, a token, a URL or a code.
//!
//! Where each is recorded (few, narrow places): the `/api/messages` handler (activities, channel
//! refusals, turn latency); the store's audit append (audit actions, decisions, OTP sends); the
//! vault decorator (`vault::metered`); the Connector's and Graph's retry loops (429s);
//! `Scheduler::run` (jobs). The gauges are read from the store at collection time
//! ([`set_gauges`], fed by `telemetry::refresh_gauges`).

use opentelemetry::KeyValue;
use opentelemetry::metrics::{Counter, Histogram, Meter};
use std::sync::{LazyLock, Mutex};
use std::time::Duration;

/// The instrumentation scope's name.
pub const SCOPE: &str = "passkey";

/// Every instrument.
pub struct Metrics {
    activities: Counter<u64>,
    channel_refusals: Counter<u64>,
    turn_duration: Histogram<f64>,
    audit_events: Counter<u64>,
    decisions: Counter<u64>,
    otp_sends: Counter<u64>,
    vault_calls: Counter<u64>,
    vault_duration: Histogram<f64>,
    throttled: Counter<u64>,
    job_runs: Counter<u64>,
    job_duration: Histogram<f64>,
}

/// Buckets for latencies in seconds: 5 ms to a minute.
const LATENCY_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

/// Buckets for job durations in seconds: 10 ms to ten minutes.
const JOB_BUCKETS: &[f64] = &[
    0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 600.0,
];

static METRICS: LazyLock<Metrics> =
    LazyLock::new(|| Metrics::new(&opentelemetry::global::meter(SCOPE)));

/// The process's instruments (no-ops until `telemetry::init` installed a meter provider; the
/// first call after it makes them).
pub fn get() -> &'static Metrics {
    &METRICS
}

/// What the store said at the last collection: the gauges' values.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Gauges {
    /// Leases still live (APPROVED, ISSUED, RENEWAL_PENDING).
    pub active_leases: u64,
    /// Now minus the end of the oldest live lease that has already ended (0: none overdue).
    pub expiry_lag_secs: f64,
    /// One-time shares issued and not yet revoked.
    pub shares_outstanding: u64,
    /// Requests by status (every status, 0 included).
    pub requests_by_status: Vec<(String, u64)>,
    /// Events in the audit chain.
    pub audit_chain_length: u64,
    /// Seconds since the last signed checkpoint; None before the first.
    pub since_checkpoint_secs: Option<f64>,
}

static GAUGES: Mutex<Option<Gauges>> = Mutex::new(None);

/// Records what the store says now; the gauges report it until the next call.
pub fn set_gauges(gauges: Gauges) {
    if let Ok(mut g) = GAUGES.lock() {
        *g = Some(gauges);
    }
}

fn gauges() -> Option<Gauges> {
    GAUGES.lock().ok().and_then(|g| g.clone())
}

/// The kind of an inbound activity as a label: the Bot Framework types Passkey handles, else
/// `other` (an activity's type is the sender's text).
pub fn activity_type_label(kind: &str) -> &'static str {
    match kind {
        "message" => "message",
        "invoke" => "invoke",
        "conversationUpdate" => "conversation_update",
        "installationUpdate" => "installation_update",
        "messageReaction" => "message_reaction",
        "typing" => "typing",
        "event" => "event",
        _ => "other",
    }
}

/// An audit action as a label: the code's own `SCREAMING_SNAKE_CASE` names only.
fn action_label(action: &str) -> &str {
    if !action.is_empty()
        && action.len() <= 48
        && action
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b == b'_' || b.is_ascii_digit())
    {
        action
    } else {
        "OTHER"
    }
}

/// The decision an audit action records, if it is one.
fn decision_of(action: &str) -> Option<&'static str> {
    Some(match action {
        "REQUEST_APPROVED" => "approved",
        "REQUEST_AUTO_APPROVED" => "auto_approved",
        "REQUEST_DENIED" => "denied",
        "BREAK_GLASS_APPROVED" => "break_glass_approved",
        "TRIAGE_APPROVED" => "triage_approved",
        "TRIAGE_DENIED" => "triage_denied",
        "REQUEST_EXPIRED_UNDECIDED" => "expired_undecided",
        _ => return None,
    })
}

/// The one-time-code send an audit action records, if it is one: (kind, outcome).
fn otp_send_of(action: &str) -> Option<(&'static str, &'static str)> {
    Some(match action {
        "OTP_SENT" => ("retrieval", "sent"),
        "OTP_SEND_FAILED" => ("retrieval", "failed"),
        "FACTOR_PROOF_SENT" => ("factor_proof", "sent"),
        _ => return None,
    })
}

impl Metrics {
    fn new(meter: &Meter) -> Metrics {
        let gauge_u64 =
            |name: &'static str, description: &'static str, read: fn(&Gauges) -> u64| {
                meter
                    .u64_observable_gauge(name)
                    .with_description(description)
                    .with_callback(move |observer| {
                        if let Some(g) = gauges() {
                            observer.observe(read(&g), &[]);
                        }
                    })
                    .build()
            };
        // Observable instruments live as long as the meter provider; the handles are not needed.
        let _ = gauge_u64(
            "passkey.leases.active",
            "Leases still live (approved, issued, renewal pending)",
            |g| g.active_leases,
        );
        let _ = gauge_u64(
            "passkey.shares.outstanding",
            "One-time shares issued and not yet revoked",
            |g| g.shares_outstanding,
        );
        let _ = gauge_u64(
            "passkey.audit.chain_length",
            "Events in the audit hash chain",
            |g| g.audit_chain_length,
        );
        let _ = meter
            .f64_observable_gauge("passkey.leases.expiry_lag")
            .with_unit("s")
            .with_description("Now minus the end of the oldest lease still live past its end")
            .with_callback(|observer| {
                if let Some(g) = gauges() {
                    observer.observe(g.expiry_lag_secs, &[]);
                }
            })
            .build();
        let _ = meter
            .f64_observable_gauge("passkey.audit.since_checkpoint")
            .with_unit("s")
            .with_description("Seconds since the last signed audit checkpoint")
            .with_callback(|observer| {
                if let Some(secs) = gauges().and_then(|g| g.since_checkpoint_secs) {
                    observer.observe(secs, &[]);
                }
            })
            .build();
        let _ = meter
            .u64_observable_gauge("passkey.requests")
            .with_description("Requests by status")
            .with_callback(|observer| {
                if let Some(g) = gauges() {
                    for (status, n) in &g.requests_by_status {
                        observer.observe(*n, &[KeyValue::new("status", status.clone())]);
                    }
                }
            })
            .build();
        Metrics {
            activities: meter
                .u64_counter("passkey.activities")
                .with_description("Inbound Bot Framework activities by type and outcome")
                .build(),
            channel_refusals: meter
                .u64_counter("passkey.channel_auth.refusals")
                .with_description("Activities refused before the turn, by reason")
                .build(),
            turn_duration: meter
                .f64_histogram("passkey.turn.duration")
                .with_unit("s")
                .with_description("Time to answer an activity")
                .with_boundaries(LATENCY_BUCKETS.to_vec())
                .build(),
            audit_events: meter
                .u64_counter("passkey.audit.events")
                .with_description("Audit events appended, by action")
                .build(),
            decisions: meter
                .u64_counter("passkey.decisions")
                .with_description("Request decisions by outcome")
                .build(),
            otp_sends: meter
                .u64_counter("passkey.otp.sends")
                .with_description("One-time codes texted, by kind and outcome")
                .build(),
            vault_calls: meter
                .u64_counter("passkey.vault.calls")
                .with_description("Vault calls by backend, operation and error class")
                .build(),
            vault_duration: meter
                .f64_histogram("passkey.vault.duration")
                .with_unit("s")
                .with_description("Vault call latency by backend and operation")
                .with_boundaries(LATENCY_BUCKETS.to_vec())
                .build(),
            throttled: meter
                .u64_counter("passkey.throttled")
                .with_description("HTTP 429 answers from Microsoft services, by service")
                .build(),
            job_runs: meter
                .u64_counter("passkey.job.runs")
                .with_description("Scheduled job runs by job and outcome")
                .build(),
            job_duration: meter
                .f64_histogram("passkey.job.duration")
                .with_unit("s")
                .with_description("Scheduled job run time by job")
                .with_boundaries(JOB_BUCKETS.to_vec())
                .build(),
        }
    }

    /// One activity answered (or refused): its type label and an outcome word.
    pub fn activity(&self, kind: &'static str, outcome: &'static str, took: Option<Duration>) {
        self.activities.add(
            1,
            &[
                KeyValue::new("type", kind),
                KeyValue::new("outcome", outcome),
            ],
        );
        if let Some(took) = took {
            self.turn_duration
                .record(took.as_secs_f64(), &[KeyValue::new("type", kind)]);
        }
    }

    /// An activity refused before its turn (channel token, tenant, channel, host, shape).
    pub fn channel_refused(&self, reason: &'static str) {
        self.channel_refusals
            .add(1, &[KeyValue::new("reason", reason)]);
    }

    /// Audit events appended (called by the store once they are written).
    pub fn audit_appended<'a>(&self, actions: impl IntoIterator<Item = &'a str>) {
        for action in actions {
            self.audit_events.add(
                1,
                &[KeyValue::new("action", action_label(action).to_string())],
            );
            if let Some(outcome) = decision_of(action) {
                self.decisions.add(1, &[KeyValue::new("outcome", outcome)]);
            }
            if let Some((kind, outcome)) = otp_send_of(action) {
                self.otp_sends.add(
                    1,
                    &[
                        KeyValue::new("kind", kind),
                        KeyValue::new("outcome", outcome),
                    ],
                );
            }
        }
    }

    /// One vault call: `error_class` is `none` when it succeeded.
    pub fn vault_call(
        &self,
        backend: &'static str,
        operation: &'static str,
        error_class: &'static str,
        took: Duration,
    ) {
        self.vault_calls.add(
            1,
            &[
                KeyValue::new("backend", backend),
                KeyValue::new("operation", operation),
                KeyValue::new("error_class", error_class),
            ],
        );
        self.vault_duration.record(
            took.as_secs_f64(),
            &[
                KeyValue::new("backend", backend),
                KeyValue::new("operation", operation),
            ],
        );
    }

    /// A 429 from `service` (`connector`, `graph`).
    pub fn throttled(&self, service: &'static str) {
        self.throttled.add(1, &[KeyValue::new("service", service)]);
    }

    /// One scheduled job run.
    pub fn job_run(&self, job: &'static str, ok: bool, took: Duration) {
        self.job_runs.add(
            1,
            &[
                KeyValue::new("job", job),
                KeyValue::new("outcome", if ok { "ok" } else { "failed" }),
            ],
        );
        self.job_duration
            .record(took.as_secs_f64(), &[KeyValue::new("job", job)]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_words_of_the_code_never_the_senders_text() {
        assert_eq!(activity_type_label("message"), "message");
        assert_eq!(activity_type_label("https://evil.example/?x=1"), "other");
        assert_eq!(action_label("REQUEST_APPROVED"), "REQUEST_APPROVED");
        assert_eq!(action_label("request 42 by bob"), "OTHER");
        assert_eq!(decision_of("REQUEST_DENIED"), Some("denied"));
        assert_eq!(decision_of("LEASE_EXPIRED"), None);
        assert_eq!(
            otp_send_of("OTP_SEND_FAILED"),
            Some(("retrieval", "failed"))
        );
    }
}
