//! Audit you can prove. The hash chain itself is written by the store (every state change appends
//! its event under the locked chain head, INV-3); this module makes it provable:
//!
//! - [`actions`]: the catalogue of every action an event may carry;
//! - [`signer`]: the [`Signer`] trait (async, remote-friendly), the local Ed25519 key file, and
//!   offline signature checks for Ed25519 and ES256;
//! - [`verify`]: the pure verifier (edited, deleted, inserted, reordered events; forged, rewritten
//!   and missing checkpoints — the first bad seq and what is wrong there);
//! - [`trail`]: the JSON-lines export format and offline verification of a file;
//! - [`AuditTrail`]: checkpoints, live verification, export and archive against a store.

pub mod actions;
pub mod linker;
pub mod signer;
pub mod trail;
pub mod verify;

pub use actions::{ACTIONS, ActionGroup, AuditAction};
pub use signer::{Algorithm, LocalEd25519Signer, PublicKey, SignError, Signature, Signer};
pub use verify::{Finding, Problem, Report, SERVICE_STARTED, Verifier, VerifyOptions};

use crate::config::AuditSettings;
use crate::domain::Clock;
use crate::notify::Notifier;
use crate::store::{AuditCheckpoint, NewAuditEvent, NewProbeEvent, Store, StoreError};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::json;
use std::io::Write as _;
use std::path::Path;
use std::sync::Arc;
use trail::{Header, Line};

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Sign(#[from] SignError),
    #[error("{path}: {source}")]
    File {
        path: String,
        source: std::io::Error,
    },
    /// A request that cannot be done (the message says why; nothing was written).
    #[error("{0}")]
    Refused(String),
}

/// What an export or archive wrote.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ExportSummary {
    pub from_seq: i64,
    pub to_seq: i64,
    pub events: u64,
    pub checkpoints: u64,
    pub keys: u64,
    pub last_hash: Option<String>,
}

/// The audit trail's operations over a store: checkpoints, verification, export, archive.
#[derive(Clone)]
pub struct AuditTrail {
    store: Arc<dyn Store>,
    signer: Arc<dyn Signer>,
    clock: Arc<dyn Clock>,
    settings: AuditSettings,
}

impl AuditTrail {
    pub fn new(
        store: Arc<dyn Store>,
        signer: Arc<dyn Signer>,
        clock: Arc<dyn Clock>,
        settings: AuditSettings,
    ) -> Self {
        AuditTrail {
            store,
            signer,
            clock,
            settings,
        }
    }

    pub fn settings(&self) -> &AuditSettings {
        &self.settings
    }

    /// How long an event may wait for a checkpoint: twice the checkpoint interval plus a minute,
    /// because the job looks every `min(60 s, interval)` and signs once the interval has passed.
    pub fn max_checkpoint_delay(&self) -> time::Duration {
        max_checkpoint_delay(&self.settings)
    }

    /// How long a committed event may stay unlinked while the service runs.
    pub fn link_allowance(&self) -> time::Duration {
        time::Duration::seconds(self.settings.link_allowance_secs.min(i64::MAX as u64) as i64)
    }

    /// Signs the current chain head unless a checkpoint already covers it. The signer's public
    /// key is registered first, so every stored signature has its key next to it.
    pub async fn checkpoint(&self) -> Result<Option<AuditCheckpoint>, AuditError> {
        let (seq, head_hash) = self.store.audit_head().await?;
        if seq == 0 {
            return Ok(None);
        }
        if let Some(last) = self.store.last_checkpoint().await?
            && last.seq >= seq
        {
            return Ok(None);
        }
        self.sign_head(seq, head_hash).await.map(Some)
    }

    async fn sign_head(&self, seq: i64, head_hash: String) -> Result<AuditCheckpoint, AuditError> {
        let now = self.clock.now();
        let public = self.signer.public_key().await?;
        self.store
            .register_public_key(&trail::to_key_row(&public, now))
            .await?;
        let signature = self
            .signer
            .sign(&verify::checkpoint_message(seq, &head_hash, now))
            .await?;
        let checkpoint = AuditCheckpoint {
            seq,
            head_hash,
            signed_at: now,
            key_id: signature.key_id,
            algorithm: signature.algorithm.as_str().to_string(),
            signature: B64.encode(&signature.bytes),
        };
        // Another instance may have signed this same head a moment ago: theirs stands.
        self.store.insert_checkpoint(&checkpoint).await?;
        Ok(checkpoint)
    }

    /// The service starting. Appends `SERVICE_STARTED` — which tells the verifier the service
    /// was down since the event before it — then signs a checkpoint over it and whatever tail
    /// the previous run left unsigned (a crash leaves one; a clean stop signs its own). The
    /// event says how the previous run ended: `clean` when the last service event before it is
    /// a `SERVICE_STOPPED`, `crash` when it is a `SERVICE_STARTED` (no stop was recorded), and
    /// `unknown` when neither is among the last [`verify::PAGE`] events (a first start, or an
    /// older release). A failure to append fails the start (the database cannot be written);
    /// a failure to sign is logged and left to the checkpoint job, and the missing-checkpoint
    /// rule catches it if it lasts.
    pub async fn record_start(&self, instance: &str) -> Result<(), AuditError> {
        let (head, _) = self.store.audit_head().await?;
        let signed = self.store.last_checkpoint().await?.map_or(0, |c| c.seq);
        let recent = self
            .store
            .audit_events_after((head - verify::PAGE as i64).max(0), verify::PAGE as i64)
            .await?;
        let previous = recent
            .iter()
            .rev()
            .find_map(|e| match e.action.as_str() {
                SERVICE_STOPPED => Some("clean"),
                verify::SERVICE_STARTED => Some("crash"),
                _ => None,
            })
            .unwrap_or("unknown");
        let unsigned = (head > signed).then(|| json!({ "from_seq": signed + 1, "to_seq": head }));
        self.store
            .append_audit(
                &NewAuditEvent::new("system:service", verify::SERVICE_STARTED, self.clock.now())
                    .detail(json!({
                        "instance": instance,
                        "version": crate::VERSION,
                        "previous_stop": previous,
                        "unsigned_tail": unsigned,
                    })),
            )
            .await?;
        if let Err(e) = self.checkpoint().await {
            tracing::error!(error = %e, "no audit checkpoint at start; the checkpoint job will retry");
        }
        Ok(())
    }

    /// The service stopping gracefully: appends `SERVICE_STOPPED` and signs a checkpoint over
    /// it, so the trail is covered for however long the service stays down.
    pub async fn record_stop(&self, instance: &str) -> Result<(), AuditError> {
        self.store
            .append_audit(
                &NewAuditEvent::new("system:service", SERVICE_STOPPED, self.clock.now())
                    .detail(json!({ "instance": instance, "version": crate::VERSION })),
            )
            .await?;
        self.checkpoint().await?;
        Ok(())
    }

    /// The checkpoint job: signs when `checkpoint_every_events` events arrived since the last
    /// checkpoint, or when `checkpoint_every_secs` passed and anything arrived.
    pub async fn checkpoint_if_due(&self) -> Result<Option<AuditCheckpoint>, AuditError> {
        let (seq, head_hash) = self.store.audit_head().await?;
        let last = self.store.last_checkpoint().await?;
        let (last_seq, last_at) = match &last {
            Some(c) => (c.seq, Some(c.signed_at)),
            None => (0, None),
        };
        if seq <= last_seq {
            return Ok(None);
        }
        let interval = time::Duration::seconds(self.settings.checkpoint_every_secs as i64);
        let due = (seq - last_seq) as u64 >= self.settings.checkpoint_every_events
            || last_at.is_none_or(|at| self.clock.now().since(at) >= interval);
        if !due {
            return Ok(None);
        }
        self.sign_head(seq, head_hash).await.map(Some)
    }

    /// The keys checkpoints may be signed with: every registered key, and the signer's own.
    pub async fn trusted_keys(&self) -> Result<Vec<PublicKey>, AuditError> {
        let mut keys: Vec<PublicKey> = self
            .store
            .public_keys()
            .await?
            .iter()
            .filter_map(trail::to_public_key)
            .collect();
        let own = self.signer.public_key().await?;
        if !keys.iter().any(|k| k.key_id == own.key_id) {
            keys.push(own);
        }
        Ok(keys)
    }

    /// Verifies the whole chain in the database, page by page.
    pub async fn verify(&self) -> Result<Report, AuditError> {
        let checkpoints = self.store.checkpoints_from(0).await?;
        let keys = self.trusted_keys().await?;
        let mut verifier = Verifier::new(
            VerifyOptions {
                from_seq: 0,
                to_seq: None,
                max_checkpoint_delay: Some(self.max_checkpoint_delay()),
                as_of: self.clock.now(),
            },
            checkpoints,
            &keys,
        );
        let mut after = 0;
        let mut looked_again = false;
        loop {
            let page = self
                .store
                .audit_events_after(after, verify::PAGE as i64)
                .await?;
            if let Some(last) = page.last() {
                after = last.seq;
                looked_again = false;
                verifier.push(&page);
                continue;
            }
            // The head is read after the events: every event committed by now is at or below
            // it, so a row above it was never appended. Events committed during the walk move
            // it on: look once more (a head above rows that are gone is the verifier's finding).
            let (head, _) = self.store.audit_head().await?;
            if head > after && !looked_again {
                looked_again = true;
                continue;
            }
            verifier.set_to_seq(head);
            break;
        }
        // Read after the walk, whose reads linked what was committed: what is left was
        // committed since, or the linker is failing.
        verifier.check_unlinked(self.store.unlinked_events().await?, self.link_allowance());
        Ok(verifier.finish())
    }

    /// Runs [`AuditTrail::verify`] as a probe: records the run (a `governance_probe_events`
    /// row), and on a mismatch appends `AUDIT_VERIFY_FAILED` and alerts the admins in Teams.
    pub async fn verify_and_alert(
        &self,
        notifier: &dyn Notifier,
        invoked_by: &str,
    ) -> Result<Report, AuditError> {
        let started = std::time::Instant::now();
        let at = self.clock.now();
        let result = self.verify().await;
        let (exit_code, detail) = match &result {
            Ok(r) => (
                if r.ok() { 0 } else { 1 },
                json!({ "events": r.events, "checkpoints_verified": r.checkpoints_verified,
                        "last_seq": r.last_seq, "first_bad": r.first_bad }),
            ),
            Err(e) => (2, json!({ "error": e.to_string() })),
        };
        let probe = NewProbeEvent {
            command_id: "audit-verify".into(),
            invoked_by: invoked_by.into(),
            invoked_at: at,
            exit_code,
            fresh: true,
            degraded: exit_code != 0,
            duration_ms: started.elapsed().as_millis() as i64,
            detail,
        };
        if let Err(e) = self.store.record_probe(&probe).await {
            tracing::warn!(error = %e, "audit verify probe not recorded");
        }
        let report = result?;
        if let Some(first) = &report.first_bad {
            tracing::error!(
                seq = first.seq,
                problem = first.problem.as_str(),
                "audit trail failed verification"
            );
            self.store
                .append_audit(
                    &NewAuditEvent::new(invoked_by, "AUDIT_VERIFY_FAILED", self.clock.now())
                        .detail(json!({ "first_bad": first, "problems": report.findings.len() })),
                )
                .await?;
            notifier
                .alert_admins(&format!(
                    "⚠️ Passkey's audit trail failed verification. First bad {first}. \
                     Run `passkey audit export` and `passkey audit verify` to examine it."
                ))
                .await;
        }
        Ok(report)
    }

    /// Writes events after `from` (with the checkpoints from `from` on and every public key) to
    /// `out`. Records `AUDIT_EXPORTED` and signs a checkpoint first, so the file's tail is
    /// covered.
    pub async fn export(
        &self,
        out: &Path,
        from: i64,
        actor: &str,
    ) -> Result<ExportSummary, AuditError> {
        if from < 0 {
            return Err(AuditError::Refused("--from must be 0 or more".into()));
        }
        writable(out)?;
        self.store
            .append_audit(
                &NewAuditEvent::new(actor, "AUDIT_EXPORTED", self.clock.now())
                    .detail(json!({ "from_seq": from, "file": file_name(out) })),
            )
            .await?;
        self.checkpoint().await?;
        self.write_trail(out, from, None, false).await
    }

    /// Exports the events up to the last checkpoint before `before` (a range that ends on a
    /// signed checkpoint verifies on its own) and records `AUDIT_ARCHIVED`. Nothing is deleted.
    pub async fn archive(
        &self,
        out: &Path,
        from: i64,
        before: i64,
        actor: &str,
    ) -> Result<ExportSummary, AuditError> {
        if from < 0 || before <= from + 1 {
            return Err(AuditError::Refused(
                "--before must be greater than --from + 1".into(),
            ));
        }
        self.checkpoint().await?;
        let end = self
            .store
            .checkpoints_from(from + 1)
            .await?
            .into_iter()
            .filter(|c| c.seq < before)
            .map(|c| c.seq)
            .max()
            .ok_or_else(|| {
                AuditError::Refused(format!(
                    "no signed checkpoint between seq {} and {}: nothing archived",
                    from + 1,
                    before - 1
                ))
            })?;
        writable(out)?;
        let summary = self.write_trail(out, from, Some(end), true).await?;
        self.store
            .append_audit(
                &NewAuditEvent::new(actor, "AUDIT_ARCHIVED", self.clock.now()).detail(json!({
                    "from_seq": summary.from_seq,
                    "to_seq": summary.to_seq,
                    "events": summary.events,
                    "last_hash": summary.last_hash,
                    "file": file_name(out),
                })),
            )
            .await?;
        self.checkpoint().await?;
        Ok(summary)
    }

    /// Writes the file: the events go to a temporary file first, because the header names the
    /// chain head, which is read after the events (see [`AuditTrail::verify`]).
    async fn write_trail(
        &self,
        out: &Path,
        from: i64,
        upto: Option<i64>,
        archive: bool,
    ) -> Result<ExportSummary, AuditError> {
        let io = |source| AuditError::File {
            path: out.display().to_string(),
            source,
        };
        let body_path = out.with_extension("partial");
        let mut body = std::io::BufWriter::new(std::fs::File::create(&body_path).map_err(io)?);
        let mut after = from;
        let mut events = 0u64;
        let mut last_hash = None;
        let mut looked_again = false;
        let to_seq = loop {
            let mut page = self
                .store
                .audit_events_after(after, verify::PAGE as i64)
                .await?;
            if let Some(upto) = upto {
                page.retain(|e| e.seq <= upto);
            }
            if let Some(last) = page.last() {
                after = last.seq;
                last_hash = Some(last.hash.clone());
                events += page.len() as u64;
                looked_again = false;
                for e in page {
                    trail::write_line(&mut body, &Line::Event(e)).map_err(io)?;
                }
                continue;
            }
            if let Some(upto) = upto {
                break upto;
            }
            // As in `verify`: the head, read after the events, is what the file should reach.
            let (head, _) = self.store.audit_head().await?;
            if head > after && !looked_again {
                looked_again = true;
                continue;
            }
            break head;
        };
        let checkpoints: Vec<AuditCheckpoint> = self
            .store
            .checkpoints_from(from)
            .await?
            .into_iter()
            .filter(|c| c.seq <= to_seq)
            .collect();
        let keys = self.store.public_keys().await?;
        for c in &checkpoints {
            trail::write_line(&mut body, &Line::Checkpoint(c.clone())).map_err(io)?;
        }
        for k in &keys {
            trail::write_line(&mut body, &Line::PublicKey(k.clone())).map_err(io)?;
        }
        body.flush().map_err(io)?;
        drop(body);
        // Read after the events: what the file leaves out because it was not linked yet.
        let unlinked = self.store.unlinked_events().await?;
        let header = Header {
            format: trail::FORMAT.into(),
            version: trail::VERSION,
            exported_at: self.clock.now(),
            from_seq: from,
            to_seq,
            checkpoint_every_events: self.settings.checkpoint_every_events,
            checkpoint_every_secs: self.settings.checkpoint_every_secs,
            max_checkpoint_delay_secs: self.max_checkpoint_delay().whole_seconds() as u64,
            archive,
            unlinked: unlinked.count,
            oldest_unlinked_at: unlinked.oldest_at,
            link_allowance_secs: self.settings.link_allowance_secs,
        };
        let write = || -> std::io::Result<()> {
            let mut file = std::io::BufWriter::new(std::fs::File::create(out)?);
            trail::write_line(&mut file, &Line::Header(header))?;
            std::io::copy(&mut std::fs::File::open(&body_path)?, &mut file)?;
            file.flush()?;
            std::fs::remove_file(&body_path)
        };
        write().map_err(io)?;
        Ok(ExportSummary {
            from_seq: from,
            to_seq,
            events,
            checkpoints: checkpoints.len() as u64,
            keys: keys.len() as u64,
            last_hash,
        })
    }
}

/// The action a graceful stop appends (see [`AuditTrail::record_stop`]).
pub const SERVICE_STOPPED: &str = "SERVICE_STOPPED";

/// See [`AuditTrail::max_checkpoint_delay`].
pub fn max_checkpoint_delay(settings: &AuditSettings) -> time::Duration {
    time::Duration::seconds(
        settings
            .checkpoint_every_secs
            .saturating_mul(2)
            .saturating_add(60)
            .min(i64::MAX as u64) as i64,
    )
}

/// How often the checkpoint job looks.
pub fn checkpoint_tick(settings: &AuditSettings) -> std::time::Duration {
    std::time::Duration::from_secs(settings.checkpoint_every_secs.clamp(1, 60))
}

/// Fails before anything is recorded when the output file cannot be created.
fn writable(out: &Path) -> Result<(), AuditError> {
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(out)
        .map(drop)
        .map_err(|source| AuditError::File {
            path: out.display().to_string(),
            source,
        })
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Opens the configured local signing key, creating it on first start.
pub fn local_signer(
    settings: &AuditSettings,
    data_dir: &Path,
) -> Result<Arc<dyn Signer>, SignError> {
    Ok(Arc::new(LocalEd25519Signer::open_or_create(
        &settings.signing_key_path(data_dir),
    )?))
}
