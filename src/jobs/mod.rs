//! The scheduler. Ticks come from tokio intervals, or from cron expressions
//! (`lifecycle.schedules`, UTC); correctness comes from the database: due work is
//! claimed row by row (`FOR UPDATE SKIP LOCKED` on Postgres, the single writer lock on SQLite)
//! and every state change is a conditional update, so several instances against one database
//! handle each item once (INV-7). A job on a cron schedule also claims each fire time (a
//! `job_fires` row), so of several instances only one runs it per fire time. Every run leaves a
//! `job_runs` row that `admin health` shows.
//!
//! Jobs: lease expiry (expire, remove shares, warn "ends soon"), preflight retry, stale requests
//! (remind, escalate, expire; and open access reviews reminded and escalated), access reviews (a
//! campaign per cron fire, quarterly by default), vault sync (metadata, discovery, ACLs, rotation check, then leases
//! whose holder lost access), housekeeping (dedupe rows, expired OTP challenges), audit
//! checkpoints (sign the chain head) and audit verification (the whole chain, every 4 hours;
//! admins alerted in Teams on a mismatch).

use crate::audit::AuditTrail;
use crate::config::{AuditSettings, CronSchedule, LifecycleSettings};
use crate::domain::{Clock, Timestamp};
use crate::governance::lifecycle::{ClaimCheck, Lifecycle, LifecycleError, Notice, Notifier};
use crate::store::{DueWork, NewJobRun, Request, Store, StoreError};
use crate::vault::{RotationChecker, VaultReader};
use serde_json::{Value, json};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use time::Duration;

/// Failed removals of one share after which admins are alerted (once) and `admin health` lists
/// it. Five: a throttle or a Commander restart clears within a few runs; a share still live after
/// five runs needs a person. The scheduler keeps trying after the alert.
pub const REVOKE_ATTEMPTS_BEFORE_ALERT: i32 = 5;

/// The scheduled jobs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Job {
    LeaseExpiry,
    PreflightRetry,
    StaleRequests,
    VaultSync,
    Housekeeping,
    AuditCheckpoint,
    AuditVerify,
    AccessReviews,
}

impl Job {
    pub const ALL: [Job; 8] = [
        Job::LeaseExpiry,
        Job::PreflightRetry,
        Job::StaleRequests,
        Job::VaultSync,
        Job::Housekeeping,
        Job::AuditCheckpoint,
        Job::AuditVerify,
        Job::AccessReviews,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Job::LeaseExpiry => "lease-expiry",
            Job::PreflightRetry => "preflight-retry",
            Job::StaleRequests => "stale-requests",
            Job::VaultSync => "vault-sync",
            Job::Housekeeping => "housekeeping",
            Job::AuditCheckpoint => "audit-checkpoint",
            Job::AuditVerify => "audit-verify",
            Job::AccessReviews => "access-reviews",
        }
    }

    /// How often the job runs. The audit jobs follow their own settings (see
    /// [`Scheduler::period`]); here they get their defaults.
    pub fn period(self, s: &LifecycleSettings) -> std::time::Duration {
        let secs = match self {
            Job::LeaseExpiry | Job::PreflightRetry => s.tick_secs,
            Job::StaleRequests => s.tick_secs.saturating_mul(5),
            Job::VaultSync => s.vault_sync_secs,
            Job::Housekeeping => 3600,
            Job::AuditCheckpoint => 60,
            Job::AuditVerify => 4 * 3600,
            // Only on a cron schedule (see `Schedule::of`); a quarter, for the restart backoff.
            Job::AccessReviews => 91 * 24 * 3600,
        };
        std::time::Duration::from_secs(secs.max(1))
    }
}

/// When a job runs.
#[derive(Debug, Clone, PartialEq)]
pub enum Schedule {
    /// On a tokio interval from its interval setting, each instance on its own ticks (the
    /// default).
    Every(std::time::Duration),
    /// At the fire times of a cron expression from `lifecycle.schedules` (UTC), once per fire
    /// time across instances.
    Cron(CronSchedule),
}

impl Schedule {
    /// The schedule of `job`: its `lifecycle.schedules` entry, else its interval. `audit` is the
    /// audit settings when the audit jobs run (their intervals follow them).
    pub fn of(job: Job, lifecycle: &LifecycleSettings, audit: Option<&AuditSettings>) -> Schedule {
        if let Some(cron) = lifecycle.schedules.get(job.name()) {
            return Schedule::Cron(cron.clone());
        }
        // Access reviews start a campaign per fire: an interval would start one per instance.
        if job == Job::AccessReviews
            && let Ok(cron) = CronSchedule::parse(crate::governance::reviews::DEFAULT_SCHEDULE)
        {
            return Schedule::Cron(cron);
        }
        Schedule::Every(match (job, audit) {
            (Job::AuditCheckpoint, Some(a)) => crate::audit::checkpoint_tick(a),
            (Job::AuditVerify, Some(a)) => {
                std::time::Duration::from_secs(a.verify_every_secs.max(1))
            }
            _ => job.period(lifecycle),
        })
    }

    /// `every 1h`, or `cron "0 0 2 * * *" UTC`.
    pub fn describe(&self) -> String {
        match self {
            Schedule::Every(period) => format!("every {}", humantime_secs(period.as_secs())),
            Schedule::Cron(cron) => format!("cron {:?} UTC", cron.expression()),
        }
    }

    /// The next run after `after`: the next fire time on a cron schedule; on an interval, one
    /// period on (each instance keeps its own ticks, so this is approximate).
    pub fn next_after(&self, after: time::OffsetDateTime) -> Option<time::OffsetDateTime> {
        match self {
            Schedule::Every(period) => Some(after + *period),
            Schedule::Cron(cron) => cron.next_after(after),
        }
    }

    /// The time between two runs (bounds the restart backoff after a panic).
    fn period(&self, after: time::OffsetDateTime) -> std::time::Duration {
        match self {
            Schedule::Every(period) => *period,
            Schedule::Cron(cron) => cron
                .next_after(after)
                .and_then(|a| Some((a, cron.next_after(a)?)))
                .map(|(a, b)| (b - a).unsigned_abs())
                .unwrap_or(MAX_RESTART_BACKOFF),
        }
    }
}

/// `90` → `1m30s`, `3600` → `1h`.
fn humantime_secs(secs: u64) -> String {
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    let mut out = String::new();
    for (n, unit) in [(h, "h"), (m, "m"), (s, "s")] {
        if n > 0 {
            out.push_str(&format!("{n}{unit}"));
        }
    }
    if out.is_empty() { "0s".into() } else { out }
}

/// Processed-activity rows older than this are forgotten (Teams redelivers within minutes).
const DEDUPE_RETENTION: Duration = Duration::days(2);
/// Due work claimed at once, and how long a claim holds before another instance may take over
/// (at least; see [`Scheduler::claim_ttl_for`]). A holder renews its claims while it works on
/// them, so the TTL only bounds how long work waits after its holder died.
const BATCH: i64 = 500;
const CLAIM_TTL: Duration = Duration::minutes(5);
/// Due leases claimed at once by lease expiry. Larger than [`BATCH`]: a batch is ended with the
/// same four write transactions whatever its size (claim, expiry, revocations, release; see
/// [`Lifecycle::expire_due_batch`]), so a larger one spreads them and their round trips over
/// more leases. 2,000 leases' traces and events are a few megabytes.
const EXPIRY_BATCH: i64 = 2000;
/// A restarted job waits 1 s, 2 s, 4 s … after each panic in a row, never longer than this (nor
/// than its own period).
const MAX_RESTART_BACKOFF: std::time::Duration = std::time::Duration::from_secs(300);
/// A run stops after this many batches even if more is due (the next tick continues).
const MAX_BATCHES: usize = 1000;

pub struct Scheduler {
    lifecycle: Arc<Lifecycle>,
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    reader: Arc<dyn VaultReader>,
    rotations: Arc<dyn RotationChecker>,
    notifier: Arc<dyn Notifier>,
    /// This instance's name in claims (several instances may share one database).
    holder: String,
    /// The audit trail's checkpoints and verification; without it the audit jobs don't run.
    audit: Option<Arc<AuditTrail>>,
    /// How long a claim holds without renewal.
    claim_ttl: Duration,
    /// Which supervised jobs are crashing (`/readyz`, `admin health`).
    health: Arc<JobHealth>,
    /// Test hook: the next N runs of a job panic (see [`Scheduler::inject_panics`]).
    injected_panics: Mutex<HashMap<Job, u32>>,
    /// The fire time each cron job's current run claimed: a campaign is keyed by it, so a run
    /// repeated after a panic creates nothing twice.
    fires: Mutex<HashMap<Job, Timestamp>>,
}

/// The claims a run holds on a batch of requests. They are renewed (to now + TTL) whenever a
/// third of the TTL has passed since the last renewal, at the moment the holder asks whether it
/// still holds one — which it does before every vault call. A claim that was taken over meanwhile
/// (it lapsed, say the process stalled) is not renewed and is reported lost, so the holder stops
/// working on it. A renewal that fails counts as lost too: without the database nothing proves
/// the claim is still ours.
struct ClaimKeeper<'a> {
    scheduler: &'a Scheduler,
    state: tokio::sync::Mutex<KeptClaims>,
}

struct KeptClaims {
    held: HashSet<i64>,
    lost: HashSet<i64>,
    renewed_at: Timestamp,
}

impl<'a> ClaimKeeper<'a> {
    fn new(scheduler: &'a Scheduler, ids: &[i64], claimed_at: Timestamp) -> Self {
        ClaimKeeper {
            scheduler,
            state: tokio::sync::Mutex::new(KeptClaims {
                held: ids.iter().copied().collect(),
                lost: HashSet::new(),
                renewed_at: claimed_at,
            }),
        }
    }

    /// The work on this request is done: its claim is no longer renewed.
    async fn done(&self, request_id: i64) {
        self.state.lock().await.held.remove(&request_id);
    }
}

#[async_trait::async_trait]
impl ClaimCheck for ClaimKeeper<'_> {
    async fn still_held(&self, request_id: i64) -> bool {
        let s = self.scheduler;
        let mut state = self.state.lock().await;
        let now = s.clock.now();
        if now >= state.renewed_at.plus(s.claim_ttl / 3) && !state.held.is_empty() {
            let ids: Vec<i64> = state.held.iter().copied().collect();
            match s
                .store
                .renew_claims(&ids, &s.holder, now.plus(s.claim_ttl))
                .await
            {
                Ok(kept) => {
                    let kept: HashSet<i64> = kept.into_iter().collect();
                    for id in ids.into_iter().filter(|id| !kept.contains(id)) {
                        state.held.remove(&id);
                        state.lost.insert(id);
                    }
                    state.renewed_at = now;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "claims not renewed; the work stops and is retried next run");
                    let held = std::mem::take(&mut state.held);
                    state.lost.extend(held);
                }
            }
        }
        state.held.contains(&request_id)
    }
}

/// Which jobs are crashing, shared by the scheduler (which supervises them) and the health views.
/// A job is degraded from a panic until its next run that finishes.
#[derive(Debug, Default)]
pub struct JobHealth {
    jobs: Mutex<HashMap<&'static str, Crashes>>,
}

#[derive(Debug, Clone, Default)]
struct Crashes {
    /// Panics in a row (0: the last run finished).
    in_a_row: u32,
    /// Whether admins were told about this run of panics.
    alerted: bool,
}

/// A job that is crashing, for `/readyz` and `admin health`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CrashingJob {
    pub job: String,
    pub panics_in_a_row: u32,
}

impl JobHealth {
    pub fn new() -> Arc<JobHealth> {
        Arc::new(JobHealth::default())
    }

    /// Jobs whose last run panicked, by name.
    pub fn crashing(&self) -> Vec<CrashingJob> {
        let jobs = self.jobs.lock().expect("job health lock");
        let mut out: Vec<CrashingJob> = jobs
            .iter()
            .filter(|(_, c)| c.in_a_row > 0)
            .map(|(name, c)| CrashingJob {
                job: name.to_string(),
                panics_in_a_row: c.in_a_row,
            })
            .collect();
        out.sort_by(|a, b| a.job.cmp(&b.job));
        out
    }

    /// Counts a panic; returns the panics in a row and whether admins are to be told (the first
    /// panic of a run of them: a crash loop alerts once, not once per restart).
    fn panicked(&self, job: Job) -> (u32, bool) {
        let mut jobs = self.jobs.lock().expect("job health lock");
        let c = jobs.entry(job.name()).or_default();
        c.in_a_row += 1;
        let alert = !c.alerted;
        c.alerted = true;
        (c.in_a_row, alert)
    }

    fn finished(&self, job: Job) {
        let mut jobs = self.jobs.lock().expect("job health lock");
        jobs.remove(job.name());
    }
}

/// Aborts a task when dropped.
struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// How long a job waits before its restart after `in_a_row` panics in a row.
fn restart_backoff(in_a_row: u32, period: std::time::Duration) -> std::time::Duration {
    let exp = in_a_row.saturating_sub(1).min(16);
    std::time::Duration::from_secs(1u64 << exp)
        .min(MAX_RESTART_BACKOFF)
        .min(period)
}

/// Counts a run reports, by name.
type Counts = serde_json::Map<String, Value>;

fn bump(counts: &mut Counts, key: &str) {
    add(counts, key, 1);
}

/// Adds `by` to a count (a count that stays zero is not reported).
fn add(counts: &mut Counts, key: &str, by: usize) {
    if by == 0 {
        return;
    }
    let n = counts.get(key).and_then(Value::as_u64).unwrap_or(0);
    counts.insert(key.into(), json!(n + by as u64));
}

impl Scheduler {
    pub fn new(
        lifecycle: Arc<Lifecycle>,
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        reader: Arc<dyn VaultReader>,
        rotations: Arc<dyn RotationChecker>,
        notifier: Arc<dyn Notifier>,
        holder: impl Into<String>,
    ) -> Self {
        Scheduler {
            lifecycle,
            store,
            clock,
            reader,
            rotations,
            notifier,
            holder: holder.into(),
            audit: None,
            claim_ttl: CLAIM_TTL,
            health: JobHealth::new(),
            injected_panics: Mutex::new(HashMap::new()),
            fires: Mutex::new(HashMap::new()),
        }
    }

    /// Claims hold for `ttl` without renewal (default 5 minutes; see [`Self::claim_ttl_for`]).
    pub fn with_claim_ttl(mut self, ttl: Duration) -> Self {
        self.claim_ttl = ttl;
        self
    }

    /// A claim TTL for vault calls that may each take up to `call_timeout`: at least five
    /// minutes, and three call timeouts, so that a claim renewed a third of the TTL ago still has
    /// two whole calls of time left when the next call starts.
    pub fn claim_ttl_for(call_timeout: std::time::Duration) -> Duration {
        let three_calls = Duration::seconds(call_timeout.as_secs().saturating_mul(3) as i64);
        CLAIM_TTL.max(three_calls)
    }

    /// Reports crashing jobs to `health` (the app's, which `/readyz` and `admin health` read).
    pub fn with_health(mut self, health: Arc<JobHealth>) -> Self {
        self.health = health;
        self
    }

    pub fn health(&self) -> Arc<JobHealth> {
        self.health.clone()
    }

    /// Test hook for the supervisor: the next `runs` runs of `job` panic.
    #[doc(hidden)]
    pub fn inject_panics(&self, job: Job, runs: u32) {
        self.injected_panics
            .lock()
            .expect("injected panics lock")
            .insert(job, runs);
    }

    fn take_injected_panic(&self, job: Job) -> bool {
        let mut injected = self.injected_panics.lock().expect("injected panics lock");
        match injected.get_mut(&job) {
            Some(n) if *n > 0 => {
                *n -= 1;
                true
            }
            _ => false,
        }
    }

    /// Adds the audit jobs (checkpoints, verification).
    pub fn with_audit(mut self, audit: Arc<AuditTrail>) -> Self {
        self.audit = Some(audit);
        self
    }

    /// The jobs this scheduler runs.
    pub fn jobs(&self) -> Vec<Job> {
        Job::ALL
            .into_iter()
            .filter(|j| {
                self.audit.is_some() || !matches!(j, Job::AuditCheckpoint | Job::AuditVerify)
            })
            .collect()
    }

    /// When `job` runs on this scheduler.
    pub fn schedule(&self, job: Job, settings: &LifecycleSettings) -> Schedule {
        Schedule::of(
            job,
            settings,
            self.audit.as_deref().map(AuditTrail::settings),
        )
    }

    /// A holder name unique to this process.
    pub fn instance_name() -> String {
        let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "passkey".into());
        format!(
            "{host}:{}:{}",
            std::process::id(),
            uuid::Uuid::new_v4().simple()
        )
    }

    /// Runs one job now and records the run. Errors are part of the record, not a panic.
    pub async fn run(&self, job: Job) -> NewJobRun {
        let started = self.clock.now();
        let timer = std::time::Instant::now();
        if self.take_injected_panic(job) {
            panic!("injected panic in {}", job.name());
        }
        let result = match job {
            Job::LeaseExpiry => self.lease_expiry().await,
            Job::PreflightRetry => self.preflight_retry().await,
            Job::StaleRequests => self.stale_requests().await,
            Job::VaultSync => self.vault_sync().await,
            Job::Housekeeping => self.housekeeping().await,
            Job::AuditCheckpoint => self.audit_checkpoint().await,
            Job::AuditVerify => self.audit_verify().await,
            Job::AccessReviews => self.access_reviews().await,
        };
        let (ok, counts, error) = match result {
            Ok(counts) => (true, Value::Object(counts), None),
            Err(e) => (false, json!({}), Some(e)),
        };
        let run = NewJobRun {
            job_name: job.name().to_string(),
            holder: self.holder.clone(),
            started_at: started,
            finished_at: self.clock.now(),
            ok,
            counts,
            error,
        };
        crate::metrics::get().job_run(job.name(), run.ok, timer.elapsed());
        if let Err(e) = self.store.record_job_run(&run).await {
            tracing::warn!(job = job.name(), error = %e, "job run not recorded");
        }
        if let Some(error) = run.error.as_deref() {
            // The error's own words (`%`), not `Some("…")` around an escaped string.
            tracing::warn!(job = job.name(), error = %error, "job run failed");
        }
        run
    }

    /// Claims batches of `kind` and hands each request to `work` until nothing new is due.
    /// A request handled in this run and claimable again (its work is not done, e.g. a share
    /// that could not be removed) is left for the next run.
    async fn drain<F, Fut>(
        &self,
        kind: DueWork,
        cutoff: Timestamp,
        counts: &mut Counts,
        mut work: F,
    ) -> Result<(), String>
    where
        F: FnMut(Request) -> Fut,
        Fut: std::future::Future<Output = Result<(Vec<Notice>, &'static str), LifecycleError>>,
    {
        let mut seen: HashSet<i64> = HashSet::new();
        for _ in 0..MAX_BATCHES {
            let now = self.clock.now();
            let claimed = self
                .store
                .claim_due(
                    kind,
                    now,
                    cutoff,
                    &self.holder,
                    now.plus(self.claim_ttl),
                    BATCH,
                )
                .await
                .map_err(|e| e.to_string())?;
            let fresh: Vec<Request> = claimed.into_iter().filter(|r| seen.insert(r.id)).collect();
            if fresh.is_empty() {
                break;
            }
            let ids: Vec<i64> = fresh.iter().map(|r| r.id).collect();
            let claims = ClaimKeeper::new(self, &ids, now);
            for request in fresh {
                let id = request.id;
                if !claims.still_held(id).await {
                    bump(counts, "claims_lost");
                    continue;
                }
                let result = work(request).await;
                claims.done(id).await;
                match result {
                    Ok((notices, outcome)) => {
                        bump(counts, outcome);
                        self.notifier.deliver(&notices).await;
                    }
                    Err(LifecycleError::Store(e @ StoreError::Unavailable(_))) => {
                        return Err(e.to_string());
                    }
                    Err(e) => {
                        bump(counts, "errors");
                        tracing::warn!(request_id = id, error = %e, "due work failed; retried next run");
                    }
                }
                if let Err(e) = self.store.release_claim(id, &self.holder).await {
                    tracing::warn!(request_id = id, error = %e, "claim not released; it lapses");
                }
            }
        }
        Ok(())
    }

    /// Expires leases past their end and removes their shares; warns leases ending soon.
    /// Each claimed batch is ended with [`Lifecycle::expire_due_batch`]: two write transactions
    /// per batch (and one audit chain-head lock each) rather than two per lease.
    pub async fn lease_expiry(&self) -> Result<Counts, String> {
        let mut counts = Counts::new();
        let now = self.clock.now();
        let mut seen: HashSet<i64> = HashSet::new();
        let mut retry_next_run: Vec<i64> = Vec::new();
        for _ in 0..MAX_BATCHES {
            let claimed_at = self.clock.now();
            let claimed = self
                .store
                .claim_due(
                    DueWork::LeaseEnd,
                    claimed_at,
                    now,
                    &self.holder,
                    claimed_at.plus(self.claim_ttl),
                    EXPIRY_BATCH,
                )
                .await
                .map_err(|e| e.to_string())?;
            // A request handled earlier in this run and due again (a share that could not be
            // removed) stays claimed until the run ends, then is given back for the next run.
            let (fresh, again): (Vec<Request>, Vec<Request>) =
                claimed.into_iter().partition(|r| seen.insert(r.id));
            retry_next_run.extend(again.iter().map(|r| r.id));
            if fresh.is_empty() {
                break;
            }
            let ids: Vec<i64> = fresh.iter().map(|r| r.id).collect();
            let claims = ClaimKeeper::new(self, &ids, claimed_at);
            match self.lifecycle.expire_due_batch(fresh, &claims).await {
                Ok(batch) => {
                    add(&mut counts, "shares_claim_lost", batch.shares_claim_lost);
                    add(&mut counts, "expired", batch.expired.len());
                    add(&mut counts, "shares_retried", batch.shares_retried);
                    add(&mut counts, "skipped_changed", batch.skipped);
                    add(&mut counts, "shares_removed", batch.shares.removed as usize);
                    add(
                        &mut counts,
                        "shares_already_gone",
                        batch.shares.already_gone as usize,
                    );
                    add(&mut counts, "shares_failed", batch.shares.failed as usize);
                    self.notifier.deliver(&batch.notices).await;
                }
                Err(LifecycleError::Store(e @ StoreError::Unavailable(_))) => {
                    return Err(e.to_string());
                }
                Err(e) => {
                    add(&mut counts, "errors", ids.len());
                    tracing::warn!(requests = ids.len(), error = %e, "lease expiry batch failed; retried next run");
                }
            }
            if let Err(e) = self.store.release_claims(&ids, &self.holder).await {
                tracing::warn!(requests = ids.len(), error = %e, "claims not released; they lapse");
            }
        }
        if let Err(e) = self
            .store
            .release_claims(&retry_next_run, &self.holder)
            .await
        {
            tracing::warn!(requests = retry_next_run.len(), error = %e, "claims not released; they lapse");
        }
        self.alert_unremovable_shares(&mut counts).await;
        let lc = self.lifecycle.clone();
        let warn_until = now.plus(Duration::seconds(
            self.lifecycle.settings().expiry_warning_secs as i64,
        ));
        self.drain(DueWork::ExpiryWarning, warn_until, &mut counts, |request| {
            let lc = lc.clone();
            async move {
                let notice = lc.warn_expiry(&request).await?;
                Ok((notice.into_iter().collect(), "warned"))
            }
        })
        .await?;
        Ok(counts)
    }

    /// Tells admins, once per share, about shares whose removal failed
    /// [`REVOKE_ATTEMPTS_BEFORE_ALERT`] times: their one-time link may still open. The claim is
    /// one conditional update, so of several schedulers only one alerts about a share.
    async fn alert_unremovable_shares(&self, counts: &mut Counts) {
        let stuck = match self
            .store
            .claim_unremovable_alerts(REVOKE_ATTEMPTS_BEFORE_ALERT, self.clock.now())
            .await
        {
            Ok(stuck) => stuck,
            Err(e) => {
                tracing::warn!(error = %e, "unremovable shares not checked; next run");
                return;
            }
        };
        add(counts, "shares_unremovable_alerted", stuck.len());
        for share in stuck {
            tracing::error!(
                request_id = share.request_id,
                issuance_id = share.issuance_id,
                attempts = share.revoke_attempts,
                last_error = share.last_revoke_error.as_deref().unwrap_or_default(),
                "a one-time share could not be removed; admins alerted"
            );
            self.notifier
                .alert_admins(&format!(
                    "A one-time share of request #{} could not be removed after {} tries, so its \
                     link may still open. Passkey keeps trying; `admin health` lists it. If it \
                     stays, remove the request's one-time shares in Keeper.",
                    share.request_id, share.revoke_attempts
                ))
                .await;
        }
    }

    /// Repeats the vault preflight of approved requests whose retry is due.
    pub async fn preflight_retry(&self) -> Result<Counts, String> {
        let mut counts = Counts::new();
        let lc = self.lifecycle.clone();
        let store = self.store.clone();
        self.drain(
            DueWork::Preflight,
            self.clock.now(),
            &mut counts,
            |request| {
                let lc = lc.clone();
                let store = store.clone();
                async move {
                    let record = store
                        .record_by_id(request.record_id)
                        .await?
                        .ok_or(StoreError::NotFound("record"))?;
                    let (_, event, notices) = lc.preflight(request, &record).await?;
                    Ok((
                        notices,
                        match event {
                            crate::governance::lifecycle::Event::Unfulfillable => "unfulfillable",
                            crate::governance::lifecycle::Event::PreflightDeferred => "deferred",
                            _ => "passed",
                        },
                    ))
                }
            },
        )
        .await?;
        Ok(counts)
    }

    /// Reminds approvers, escalates to triage, and expires requests nobody decided.
    pub async fn stale_requests(&self) -> Result<Counts, String> {
        let mut counts = Counts::new();
        let cutoff = self.clock.now().minus(Duration::seconds(
            self.lifecycle.settings().reminder_after_secs as i64,
        ));
        let lc = self.lifecycle.clone();
        self.drain(DueWork::Undecided, cutoff, &mut counts, |request| {
            let lc = lc.clone();
            async move {
                Ok(match lc.chase_undecided(request).await? {
                    Some(change) => {
                        let outcome = match change.event {
                            crate::governance::lifecycle::Event::Expired => "expired",
                            crate::governance::lifecycle::Event::Escalated => "escalated",
                            _ => "reminded",
                        };
                        (change.notices, outcome)
                    }
                    None => (vec![], "waiting"),
                })
            }
        })
        .await?;
        let chased = crate::governance::reviews::Reviews::new(self.lifecycle.clone())
            .chase()
            .await
            .map_err(|e| e.to_string())?;
        add(&mut counts, "reviews_reminded", chased.reminded);
        add(&mut counts, "reviews_escalated", chased.escalated);
        self.notifier.review_cards(&chased.notices).await;
        Ok(counts)
    }

    /// Starts an access review campaign (#19.2), keyed by the fire time this run claimed (or,
    /// run by hand, by the time now), so a repeated run of one fire creates nothing twice.
    pub async fn access_reviews(&self) -> Result<Counts, String> {
        let fire = self
            .fires
            .lock()
            .expect("fires lock")
            .get(&Job::AccessReviews)
            .copied();
        let key = match fire {
            Some(at) => format!("cron:{}", at.to_fixed_text()),
            None => format!("run:{}", self.clock.now().to_fixed_text()),
        };
        let started = crate::governance::reviews::Reviews::new(self.lifecycle.clone())
            .start_campaign(&key, "system:access-reviews")
            .await
            .map_err(|e| e.to_string())?;
        let mut counts = Counts::new();
        match started {
            Some(started) => {
                counts.insert("campaign_id".into(), json!(started.campaign.id));
                add(&mut counts, "reviews", started.reviews.len());
                add(&mut counts, "cards", started.notices.len());
                self.notifier.review_cards(&started.notices).await;
            }
            None => bump(&mut counts, "already_started"),
        }
        Ok(counts)
    }

    /// Vault metadata, discovery and ACLs, then leases whose holder lost access.
    pub async fn vault_sync(&self) -> Result<Counts, String> {
        let report = crate::governance::vault_sync::sync_vault(
            self.reader.as_ref(),
            self.store.as_ref(),
            self.clock.now(),
            "system:vault-sync",
            &|_, _| {},
        )
        .await
        .map_err(|e| e.to_string())?;
        let mut counts = match serde_json::to_value(&report) {
            Ok(Value::Object(m)) => m,
            _ => Counts::new(),
        };
        // Rotation is judged against the changes the sync just recorded, so it runs after it.
        let rotation = crate::governance::vault_sync::check_rotations(
            self.rotations.as_ref(),
            self.store.as_ref(),
            self.clock.now(),
            "system:rotation-check",
        )
        .await
        .map_err(|e| e.to_string())?;
        counts.insert("rotation_due_flagged".into(), json!(rotation.flagged));
        let revoked = self
            .lifecycle
            .revoke_lost_permissions()
            .await
            .map_err(|e| e.to_string())?;
        counts.insert(
            "leases_revoked_permission_lost".into(),
            json!(revoked.len()),
        );
        for change in revoked {
            self.notifier.deliver(&change.notices).await;
        }
        Ok(counts)
    }

    pub async fn housekeeping(&self) -> Result<Counts, String> {
        let now = self.clock.now();
        let dedupe = self
            .store
            .forget_processed_before(now.minus(DEDUPE_RETENTION))
            .await
            .map_err(|e| e.to_string())?;
        let challenges = self
            .store
            .forget_expired_challenges(now.minus(Duration::days(1)))
            .await
            .map_err(|e| e.to_string())?;
        let mut counts = Counts::new();
        counts.insert("processed_activities_forgotten".into(), json!(dedupe));
        counts.insert("otp_challenges_forgotten".into(), json!(challenges));
        Ok(counts)
    }

    fn audit(&self) -> Result<&AuditTrail, String> {
        self.audit
            .as_deref()
            .ok_or_else(|| "the audit trail is not configured for this scheduler".to_string())
    }

    /// Signs the chain head when enough events or time passed since the last checkpoint.
    pub async fn audit_checkpoint(&self) -> Result<Counts, String> {
        let mut counts = Counts::new();
        if let Some(c) = self
            .audit()?
            .checkpoint_if_due()
            .await
            .map_err(|e| e.to_string())?
        {
            counts.insert("checkpoint_seq".into(), json!(c.seq));
        }
        Ok(counts)
    }

    /// Verifies the whole chain; a mismatch alerts the admins and fails the run.
    pub async fn audit_verify(&self) -> Result<Counts, String> {
        let report = self
            .audit()?
            .verify_and_alert(self.notifier.as_ref(), "system:audit-verify")
            .await
            .map_err(|e| e.to_string())?;
        match report.first_bad {
            None => {
                let mut counts = Counts::new();
                counts.insert("events".into(), json!(report.events));
                counts.insert(
                    "checkpoints_verified".into(),
                    json!(report.checkpoints_verified),
                );
                Ok(counts)
            }
            Some(first) => Err(format!(
                "audit trail failed verification: first bad {first}"
            )),
        }
    }

    /// Starts one supervised task per job, on its [`Schedule`].
    ///
    /// On an interval, missed ticks are skipped, not bunched. The first run of each job comes
    /// one period after start, except lease expiry and preflight retry, which run at once (work
    /// may have come due while the app was down) — on a cron schedule too.
    ///
    /// On a cron schedule, every instance wakes at each fire time (UTC) and claims it in the
    /// database (`job_fires`); the one whose claim lands runs the job, the others wait for the
    /// next fire time. Fire times that pass while a run is still going are skipped.
    ///
    /// Each run is its own task, so a panic ends the run, not the job: the supervisor records a
    /// failed run, marks the job crashing in [`JobHealth`] (`/readyz` fails, `admin health`
    /// shows it), alerts the admins in Teams on the first panic of a run of them, and runs the
    /// job again after a backoff (1 s, doubling, at most its period and five minutes). A run
    /// that finishes clears the mark.
    pub fn spawn(
        self: Arc<Self>,
        settings: &LifecycleSettings,
    ) -> Vec<tokio::task::JoinHandle<()>> {
        self.jobs()
            .into_iter()
            .map(|job| {
                let me = self.clone();
                let schedule = self.schedule(job, settings);
                tokio::spawn(async move {
                    match schedule {
                        Schedule::Every(period) => me.every(job, period).await,
                        Schedule::Cron(cron) => me.on_cron(job, cron).await,
                    }
                })
            })
            .collect()
    }

    /// Runs `job` every `period`, forever.
    async fn every(self: Arc<Self>, job: Job, period: std::time::Duration) {
        let first = match job {
            Job::LeaseExpiry | Job::PreflightRetry => tokio::time::Instant::now(),
            _ => tokio::time::Instant::now() + period,
        };
        let mut ticks = tokio::time::interval_at(first, period);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let mut panics_in_a_row = 0;
        loop {
            if panics_in_a_row == 0 {
                ticks.tick().await;
            } else {
                tokio::time::sleep(restart_backoff(panics_in_a_row, period)).await;
                ticks.reset();
            }
            panics_in_a_row = self.clone().run_supervised(job).await;
        }
    }

    /// Runs `job` at the fire times of `cron` that this instance claims, forever.
    async fn on_cron(self: Arc<Self>, job: Job, cron: CronSchedule) {
        let schedule = Schedule::Cron(cron.clone());
        if matches!(job, Job::LeaseExpiry | Job::PreflightRetry) {
            self.clone().run_until_finished(job, &schedule).await;
        }
        let mut last: Option<time::OffsetDateTime> = None;
        loop {
            let now = time::OffsetDateTime::now_utc();
            let Some(fire) = cron.next_after(last.map_or(now, |l| l.max(now))) else {
                tracing::error!(
                    job = job.name(),
                    "the job's cron schedule fires no more; the job stops"
                );
                return;
            };
            let wait = fire - time::OffsetDateTime::now_utc();
            tokio::time::sleep(wait.max(Duration::ZERO).unsigned_abs()).await;
            last = Some(fire);
            if self.claim_fire(job, Timestamp::from_datetime(fire)).await {
                self.fires
                    .lock()
                    .expect("fires lock")
                    .insert(job, Timestamp::from_datetime(fire));
                self.clone().run_until_finished(job, &schedule).await;
            }
        }
    }

    /// Claims the fire time `fire_at` of `job` for this instance: false when another instance
    /// has it, or when the database cannot say (the job waits for its next fire time).
    pub async fn claim_fire(&self, job: Job, fire_at: Timestamp) -> bool {
        match self
            .store
            .claim_job_fire(job.name(), fire_at, &self.holder)
            .await
        {
            Ok(claimed) => claimed,
            Err(e) => {
                tracing::warn!(job = job.name(), error = %e, "fire time not claimed; the job waits for the next one");
                false
            }
        }
    }

    /// Runs `job` supervised, restarting it with backoff after each panic until a run finishes.
    async fn run_until_finished(self: Arc<Self>, job: Job, schedule: &Schedule) {
        let mut panics_in_a_row = self.clone().run_supervised(job).await;
        while panics_in_a_row > 0 {
            let period = schedule.period(time::OffsetDateTime::now_utc());
            tokio::time::sleep(restart_backoff(panics_in_a_row, period)).await;
            panics_in_a_row = self.clone().run_supervised(job).await;
        }
    }

    /// Runs `job` in a task of its own; returns the panics in a row (0: the run finished).
    async fn run_supervised(self: Arc<Self>, job: Job) -> u32 {
        let me = self.clone();
        let started = self.clock.now();
        let run = tokio::spawn(async move { me.run(job).await });
        // Stopping the job (aborting its loop) stops the run in progress too, as before.
        let _stop_with_loop = AbortOnDrop(run.abort_handle());
        match run.await {
            Ok(_) => {
                self.health.finished(job);
                0
            }
            Err(e) => {
                let (in_a_row, alert) = self.health.panicked(job);
                // The panic's message stays in the (redacted) log: it may quote anything.
                let message = if e.is_panic() {
                    let payload = e.into_panic();
                    payload
                        .downcast_ref::<&str>()
                        .map(|s| s.to_string())
                        .or_else(|| payload.downcast_ref::<String>().cloned())
                        .unwrap_or_default()
                } else {
                    "cancelled".to_string()
                };
                tracing::error!(job = job.name(), in_a_row, panic = %message, "job panicked; restarting it");
                let run = NewJobRun {
                    job_name: job.name().to_string(),
                    holder: self.holder.clone(),
                    started_at: started,
                    finished_at: self.clock.now(),
                    ok: false,
                    counts: json!({ "panics_in_a_row": in_a_row }),
                    error: Some("the job panicked; it is restarted with backoff".to_string()),
                };
                if let Err(e) = self.store.record_job_run(&run).await {
                    tracing::warn!(job = job.name(), error = %e, "job run not recorded");
                }
                if alert {
                    self.notifier
                        .alert_admins(&format!(
                            "Passkey's scheduled job {} crashed on {}. It is restarted with backoff; \
                             until a run finishes, /readyz fails and `admin health` shows it. \
                             The server log has the details.",
                            job.name(),
                            self.holder
                        ))
                        .await;
                }
                in_a_row
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `lifecycle.schedules` accepts exactly the jobs' names.
    #[test]
    fn schedule_keys_are_the_job_names() {
        let names: Vec<&str> = Job::ALL.iter().map(|j| j.name()).collect();
        assert_eq!(names, crate::config::JOB_NAMES);
    }

    #[test]
    fn schedules_default_to_the_intervals_and_cron_replaces_one() {
        let mut lifecycle = LifecycleSettings::default();
        let audit = AuditSettings::default();
        let of = |job, l: &LifecycleSettings| Schedule::of(job, l, Some(&audit));
        assert_eq!(
            of(Job::VaultSync, &lifecycle),
            Schedule::Every(std::time::Duration::from_secs(3600))
        );
        assert_eq!(of(Job::VaultSync, &lifecycle).describe(), "every 1h");
        assert_eq!(
            of(Job::AuditVerify, &lifecycle),
            Schedule::Every(std::time::Duration::from_secs(audit.verify_every_secs))
        );
        lifecycle.schedules = crate::config::Schedules::from_table(
            [("vault-sync".to_string(), "0 0 2 * * *".to_string())].into(),
        )
        .unwrap();
        let cron = of(Job::VaultSync, &lifecycle);
        assert_eq!(cron.describe(), "cron \"0 0 2 * * *\" UTC");
        assert_eq!(
            cron.next_after(time::macros::datetime!(2026-12-06 16:00 UTC)),
            Some(time::macros::datetime!(2026-12-07 02:00 UTC))
        );
        assert_eq!(
            cron.period(time::macros::datetime!(2026-12-06 16:00 UTC)),
            std::time::Duration::from_secs(24 * 3600)
        );
        assert_eq!(
            of(Job::LeaseExpiry, &lifecycle),
            Schedule::Every(std::time::Duration::from_secs(60))
        );
    }
}
