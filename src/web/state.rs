//! What the web routes reach through, each group only what it uses. Taken from the application's
//! state (`AppState`, the composition root's single value) by `axum::extract::FromRef` (see
//! `state.rs`); `web::router` gives each group of routes its own.

use super::WebState;
use crate::config::Profile;
use crate::domain::Clock;
use crate::governance::lifecycle::Lifecycle;
use crate::jobs::JobHealth;
use crate::otp::OtpService;
use crate::store::Store;
use crate::vault::local::LocalVault;
use std::sync::Arc;

/// The issuance page: sign-in (`signin`), the session extractors (`session`), the page and its
/// JSON endpoints (`issue`).
#[derive(Clone)]
pub struct IssuePageState {
    /// The cookie key, the sign-in provider, the rate limits.
    pub web: Arc<WebState>,
    /// The dev sign-in page is served in the dev profile only.
    pub profile: Profile,
    pub clock: Arc<dyn Clock>,
    /// Minting, checking and exchanging issuance tokens; who may see a request.
    pub lifecycle: Arc<Lifecycle>,
    /// The second factor at retrieval, and authenticator enrollment.
    pub otp: Arc<OtpService>,
    /// Reads (the signed-in person, the request and record a page names, the dev sign-in list),
    /// and the store `governance::events` records sign-ins and refusals in. Never written here:
    /// `layers::tests::edges_never_write_the_store`.
    pub store: Arc<dyn Store>,
}

/// `/readyz`: the database's state and the scheduler's crashing jobs; `/metrics`: its settings
/// (`telemetry.*`) and the gauges read from the store at scrape time.
#[derive(Clone)]
pub struct HealthState {
    pub store: Arc<dyn Store>,
    pub jobs: Arc<JobHealth>,
    pub telemetry: Arc<crate::config::TelemetrySettings>,
    pub clock: Arc<dyn Clock>,
}

/// `/dev-vault/share/{key}`: the local vault, when it is the backend.
#[derive(Clone)]
pub struct DevVaultState {
    pub local_vault: Option<Arc<LocalVault>>,
}
