//! What the Teams edge reaches through: the channel's own parts and the use cases a turn calls.
//! Taken from the application's state (`AppState`, the composition root's single value) by
//! `axum::extract::FromRef` (see `state.rs`); nothing here is built for the bot alone.

use super::BotRuntime;
use crate::audit::AuditTrail;
use crate::config::Settings;
use crate::domain::Clock;
use crate::governance::admin::GovernanceAdmin;
use crate::governance::conversations::Conversations;
use crate::governance::directory::UserDirectory;
use crate::governance::lifecycle::{Lifecycle, Notifier};
use crate::governance::permissions::PermissionResolver;
use crate::jobs::JobHealth;
use crate::otp::OtpService;
use crate::policy::Engine;
use crate::store::Store;
use crate::vault::VaultReader;
use std::sync::Arc;

/// `/api/messages` and the turn code (`turn`, `views`, `admin`) take this, not the whole
/// application state.
#[derive(Clone)]
pub struct BotState {
    pub settings: Arc<Settings>,
    pub clock: Arc<dyn Clock>,
    /// The channel: inbound authentication, the Connector, recently written rows.
    pub bot: Arc<BotRuntime>,
    /// Turn claims, the people and conversations the bot talks to, the cards it sent.
    pub conversations: Arc<Conversations>,
    /// The request lifecycle's use cases.
    pub lifecycle: Arc<Lifecycle>,
    /// `admin authority|sensitivity|role|totp-invite`.
    pub admin: Arc<GovernanceAdmin>,
    /// Tells the other people about a change (the sender reads the reply).
    pub notifier: Arc<dyn Notifier>,
    /// `admin audit verify`.
    pub audit: Arc<AuditTrail>,
    /// `admin totp-invite`.
    pub otp: Arc<OtpService>,
    /// Which records a person may request (the request form, `records`).
    pub permissions: Arc<PermissionResolver>,
    /// The sender's addresses from Graph (home tenant only).
    pub directory: Arc<dyn UserDirectory>,
    /// The active policy: lease caps on the form, `admin replay`, `admin health`.
    pub policy: Arc<Engine>,
    /// `admin sync` reads the vault.
    pub vault: Arc<dyn VaultReader>,
    /// Crashing jobs for `admin health`.
    pub jobs: Arc<JobHealth>,
    /// Reads for the cards, and the store the use-case functions take (`events`, `identities`,
    /// `policies`, `vault_sync`). Never written here: `layers::tests::edges_never_write_the_store`.
    pub store: Arc<dyn Store>,
}

impl BotState {
    /// The vault reader, as a plain reference for use cases.
    pub fn vault_reader(&self) -> &dyn VaultReader {
        self.vault.as_ref()
    }
}
