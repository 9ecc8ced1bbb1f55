//! What the edges (Teams, the web) reach through: one cloneable state, built by `app.rs` (the
//! composition root) from the layers below. It lives apart from `app.rs` so that the edges import
//! it without importing the module that builds them (see src/layers.rs).

use crate::bot::{BotRuntime, BotState};
use crate::config::Settings;
use crate::domain::Clock;
use crate::governance::admin::GovernanceAdmin;
use crate::governance::conversations::Conversations;
use crate::governance::directory::UserDirectory;
use crate::governance::lifecycle::{Lifecycle, Notifier};
use crate::governance::permissions::PermissionResolver;
use crate::policy::Engine;
use crate::store::Store;
use crate::vault::local::LocalVault;
use crate::vault::{OneTimeSharer, RotationChecker, VaultReader};
use crate::web::state::{DevVaultState, HealthState, IssuePageState};
use axum::extract::FromRef;
use std::sync::Arc;

/// Everything the composition root built, in one cloneable value. The edges do not take it
/// whole: each takes its sub-state (`BotState`, `IssuePageState`, `HealthState`,
/// `DevVaultState`), given from this one by `FromRef` below.
#[derive(Clone)]
pub struct AppState {
    pub settings: Arc<Settings>,
    pub store: Arc<dyn Store>,
    pub clock: Arc<dyn Clock>,
    pub bot: Arc<BotRuntime>,
    /// Who may request from and approve for which vault folders.
    pub permissions: Arc<PermissionResolver>,
    /// People and groups (Graph, or the demo people in dev): EMAIL and GROUP approvers.
    pub directory: Arc<dyn UserDirectory>,
    /// The active policy set, loaded at start (a policy change takes effect on restart).
    pub policy: Arc<Engine>,
    /// Vault metadata reads.
    pub vault: Arc<dyn VaultReader>,
    /// One-time shares.
    pub sharer: Arc<dyn OneTimeSharer>,
    /// Rotation information (Commander's `pam rotation info`; nothing for the local vault).
    pub rotations: Arc<dyn RotationChecker>,
    /// The local vault, when that is the backend: it also serves `/dev-vault/share/…`.
    pub local_vault: Option<Arc<LocalVault>>,
    /// The request lifecycle's use cases.
    pub lifecycle: Arc<Lifecycle>,
    /// What the bot records about whom it talks to and where (turn claims, people,
    /// conversations, sent cards).
    pub conversations: Arc<Conversations>,
    /// Authority, sensitivity and role changes, audited.
    pub admin: Arc<GovernanceAdmin>,
    /// Tells people about requests (Teams messages in their 1:1 chat with the bot).
    pub notifier: Arc<dyn Notifier>,
    /// Signed checkpoints, verification and export of the audit trail.
    pub audit: Arc<crate::audit::AuditTrail>,
    /// The issuance page's cookie key, sign-in provider and rate limits.
    pub web: Arc<crate::web::WebState>,
    /// The second factor at retrieval: challenges, SMS, authenticator apps.
    pub otp: Arc<crate::otp::OtpService>,
    /// Which scheduled jobs are crashing (the scheduler's supervisor writes it; `/readyz` and
    /// `admin health` read it).
    pub jobs: Arc<crate::jobs::JobHealth>,
}

impl AppState {
    /// The vault reader, as a plain reference for use cases.
    pub fn vault_reader(&self) -> &dyn VaultReader {
        self.vault.as_ref()
    }
}

impl FromRef<AppState> for BotState {
    fn from_ref(app: &AppState) -> BotState {
        BotState {
            settings: app.settings.clone(),
            clock: app.clock.clone(),
            bot: app.bot.clone(),
            conversations: app.conversations.clone(),
            lifecycle: app.lifecycle.clone(),
            admin: app.admin.clone(),
            notifier: app.notifier.clone(),
            audit: app.audit.clone(),
            otp: app.otp.clone(),
            permissions: app.permissions.clone(),
            directory: app.directory.clone(),
            policy: app.policy.clone(),
            vault: app.vault.clone(),
            jobs: app.jobs.clone(),
            store: app.store.clone(),
        }
    }
}

impl FromRef<AppState> for IssuePageState {
    fn from_ref(app: &AppState) -> IssuePageState {
        IssuePageState {
            web: app.web.clone(),
            profile: app.settings.profile,
            clock: app.clock.clone(),
            lifecycle: app.lifecycle.clone(),
            otp: app.otp.clone(),
            store: app.store.clone(),
        }
    }
}

impl FromRef<AppState> for HealthState {
    fn from_ref(app: &AppState) -> HealthState {
        HealthState {
            store: app.store.clone(),
            jobs: app.jobs.clone(),
            telemetry: Arc::new(app.settings.telemetry.clone()),
            clock: app.clock.clone(),
        }
    }
}

impl FromRef<AppState> for DevVaultState {
    fn from_ref(app: &AppState) -> DevVaultState {
        DevVaultState {
            local_vault: app.local_vault.clone(),
        }
    }
}
