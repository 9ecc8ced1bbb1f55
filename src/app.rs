//! Assembly: settings in, a running server out. `build` wires the store, clock and router into
//! one cloneable [`AppState`]; `App::run_until_stopped` serves on a listener the caller bound, so
//! tests can bind port 0 and production binds the configured address.

use crate::bot::BotRuntime;
use crate::bot::connector::TokenProvider;
use crate::bot::notify::{ProactiveChats, TeamsNotifier};
use crate::config::{ConfigError, Profile, Settings};
use crate::demo::{self, DemoOutcome};
use crate::domain::{Clock, SystemClock};
use crate::governance::directory::{GRAPH_SCOPE, GraphDirectory, StaticDirectory, UserDirectory};
use crate::governance::lifecycle::{Lifecycle, Notifier};
use crate::governance::permissions::{GroupDirectory, PermissionResolver, StaticGroupDirectory};
use crate::governance::policies::{self, PolicyLoadError};
pub use crate::state::AppState;
use crate::store::{self, Store, StoreError};
pub use crate::vault::backend::{VaultParts, VaultSetupError, vault_backend};
use secrecy::ExposeSecret;
use std::future::Future;
use std::sync::Arc;
use tokio::net::TcpListener;

/// Messages in people's existing 1:1 Teams chats with the bot. Also what the command line uses
/// to tell someone that an admin changed their second factor.
pub fn teams_notifier(
    settings: &Settings,
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    bot: &BotRuntime,
) -> TeamsNotifier {
    TeamsNotifier::new(
        store,
        bot.connector.clone(),
        clock,
        settings.public_base_url(),
    )
}

/// Why the app could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A `kv:` secret reference did not resolve (the message names each, never a value).
    #[error(transparent)]
    Secrets(#[from] crate::azure::secrets::ResolveError),
    #[error("{0}")]
    Azure(#[from] crate::azure::AzureError),
    #[error("cannot create data directory {path}: {source}")]
    DataDir {
        path: String,
        source: std::io::Error,
    },
    /// The data-encryption key for personal data is missing (production) or unusable.
    #[error(transparent)]
    DataKey(#[from] crate::crypto::CryptoError),
    /// The vault bridge the settings select cannot work (checked before the database).
    #[error("vault: {0}")]
    Vault(#[from] VaultSetupError),
    #[error("database ({database}): {source}")]
    Database {
        database: String,
        source: StoreError,
    },
}

pub struct App {
    pub state: AppState,
    /// Set when this start loaded the demo data set.
    pub demo: Option<DemoOutcome>,
}

impl App {
    /// Resolves Key Vault secret references (`kv:NAME`, from `azure.key_vault_url` with the
    /// configured Azure identity), checks the settings, opens and migrates the database, loads
    /// demo data in dev.
    pub async fn build(settings: Settings) -> Result<App, StartError> {
        Self::build_resolved(resolve_secrets(settings).await?).await
    }

    /// As [`App::build`], with the secret references resolved through `source` (tests give a fake).
    pub async fn build_with_secrets(
        mut settings: Settings,
        source: &dyn crate::azure::secrets::SecretSource,
    ) -> Result<App, StartError> {
        let resolved = crate::azure::secrets::resolve(&mut settings, source).await?;
        if !resolved.is_empty() {
            tracing::info!(settings = ?resolved, vault = %source.location(), "resolved Key Vault references");
        }
        Self::build_resolved(settings).await
    }

    async fn build_resolved(settings: Settings) -> Result<App, StartError> {
        // One refusal lists everything to fix: the configuration's problems and the data key's
        // (the part of it visible without unwrapping), not one after the other.
        let mut problems = match settings.check() {
            Ok(()) => Vec::new(),
            Err(ConfigError::Unsafe(problems)) => problems,
            Err(e) => return Err(e.into()),
        };
        let key_file = crate::crypto::LocalKeyFile::new(
            &settings.data_dir,
            Box::new(crate::crypto::LocalWrapper),
        );
        if let Some(problem) = key_file.precheck(settings.profile == Profile::Dev) {
            problems.push(problem.to_string());
        }
        if !problems.is_empty() {
            return Err(ConfigError::Unsafe(problems).into());
        }
        crate::private_fs::create_dir(&settings.data_dir).map_err(|source| {
            StartError::DataDir {
                path: settings.data_dir.display().to_string(),
                source,
            }
        })?;
        // Checked before the database is touched, so a production start without its key says so.
        crate::crypto::LocalKeyFile::new(&settings.data_dir, key_wrapper(&settings)?)
            .load(settings.profile == Profile::Dev)
            .await?;
        // Assembled once before the database is touched, so a vault setting that cannot work is
        // reported as itself, not as a database failure.
        vault_backend(&settings, Arc::new(SystemClock), None)?;
        let database = settings.database_label();
        let db_err = |source| StartError::Database {
            database: database.clone(),
            source,
        };
        let store = store::connect(
            settings.effective_database_url().expose_secret(),
            settings.database_max_connections,
        )
        .await
        .map_err(db_err)?;
        store.migrate().await.map_err(db_err)?;
        Self::with_store(settings, store, Arc::new(SystemClock))
            .await
            .map_err(db_err)
    }

    /// Builds around an already-open, migrated store (tests inject theirs and a manual clock).
    /// Group memberships and people come from Graph when `graph.enabled`, else nobody has any
    /// groups and the directory holds the demo people (dev with demo data) or nobody.
    pub async fn with_store(
        settings: Settings,
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
    ) -> Result<App, StoreError> {
        let (groups, people) = directories(&settings)?;
        Self::with_directories(settings, store, clock, groups, people).await
    }

    /// As [`App::with_store`], with the group directory given (tests use a static one).
    pub async fn with_directory(
        settings: Settings,
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        directory: Arc<dyn GroupDirectory>,
    ) -> Result<App, StoreError> {
        let (_, people) = directories(&settings)?;
        Self::with_directories(settings, store, clock, directory, people).await
    }

    /// As [`App::with_store`], with both directories given (tests use fakes).
    pub async fn with_directories(
        settings: Settings,
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        directory: Arc<dyn GroupDirectory>,
        people: Arc<dyn UserDirectory>,
    ) -> Result<App, StoreError> {
        // Default policy bodies fill any gap before anything is evaluated; a stored body that
        // doesn't parse stops the start (never decide with a policy we can't read).
        policies::ensure_default_policies(store.as_ref(), clock.now()).await?;
        let policy = Arc::new(policies::load_engine(store.as_ref()).await.map_err(
            |e| match e {
                PolicyLoadError::Store(e) => e,
                PolicyLoadError::Invalid(e) => StoreError::Invalid(e.to_string()),
            },
        )?);
        let demo = if settings.profile == Profile::Dev && settings.demo_data {
            match demo::load_if_empty(store.as_ref(), clock.now()).await? {
                outcome @ DemoOutcome::Loaded { .. } => Some(outcome),
                DemoOutcome::SkippedNotEmpty => None,
            }
        } else {
            None
        };
        let VaultParts {
            reader: vault,
            sharer,
            rotations,
            local: local_vault,
        } = crate::vault::metered::wrap(
            vault_backend(&settings, clock.clone(), Some(store.clone()))?,
            settings.vault.backend,
        );
        let bot = Arc::new(BotRuntime::from_settings(
            &settings,
            clock.clone(),
            store.clone(),
        ));
        let permissions = Arc::new(PermissionResolver::new(
            store.clone(),
            directory,
            clock.clone(),
        ));
        let lifecycle = Arc::new(
            Lifecycle::new(
                store.clone(),
                policy.clone(),
                clock.clone(),
                permissions.clone(),
                sharer.clone(),
                settings.lifecycle.clone(),
            )
            .with_directory(people.clone()),
        );
        let mut notifier = teams_notifier(&settings, store.clone(), clock.clone(), &bot)
            .with_lifecycle(lifecycle.clone());
        if let Some(service_url) = settings.proactive_service_url() {
            notifier = notifier.with_proactive_chats(ProactiveChats {
                service_url,
                bot_id: bot_account_id(&settings),
                tenant_id: settings.bot.tenant_id.clone().filter(|t| !t.is_empty()),
                install: settings
                    .install_app_catalog_id()
                    .map(|id| (people.clone(), id)),
            });
        }
        let notifier: Arc<dyn Notifier> = Arc::new(notifier);
        let audit = Arc::new(crate::audit::AuditTrail::new(
            store.clone(),
            audit_signer(&settings).map_err(|e| StoreError::Invalid(e.to_string()))?,
            clock.clone(),
            settings.audit.clone(),
        ));
        let web = Arc::new(
            crate::web::WebState::from_settings(&settings, clock.clone())
                .map_err(StoreError::Invalid)?,
        );
        let otp = Arc::new(
            crate::otp::OtpService::new(
                store.clone(),
                clock.clone(),
                Arc::new(data_key(&settings).await?),
                crate::otp::sms_sender(&settings.otp, clock.clone())
                    .map_err(StoreError::Invalid)?,
                settings.otp.clone(),
            )
            .with_directory(people.clone())
            .with_notifier(notifier.clone()),
        );
        if demo.is_some() {
            // The demo people get fictional phone numbers, so the console SMS flow works at once.
            otp.give_demo_phones().await.map_err(|e| match e {
                crate::otp::OtpError::Store(e) => e,
                other => StoreError::Invalid(other.to_string()),
            })?;
        }
        let state = AppState {
            audit,
            directory: people,
            conversations: Arc::new(crate::governance::conversations::Conversations::new(
                store.clone(),
                clock.clone(),
            )),
            admin: Arc::new(crate::governance::admin::GovernanceAdmin::new(
                store.clone(),
                clock.clone(),
            )),
            lifecycle,
            notifier,
            otp,
            web,
            settings: Arc::new(settings),
            store,
            clock,
            bot,
            permissions,
            policy,
            vault,
            sharer,
            rotations,
            local_vault,
            jobs: crate::jobs::JobHealth::new(),
        };
        Ok(App { state, demo })
    }

    /// Starts the scheduler's jobs in this process, unless `lifecycle.scheduler` is off.
    pub fn start_scheduler(&self) -> Vec<tokio::task::JoinHandle<()>> {
        let s = &self.state;
        if !s.settings.lifecycle.scheduler {
            return Vec::new();
        }
        Arc::new(self.scheduler(&crate::jobs::Scheduler::instance_name()))
            .spawn(&s.settings.lifecycle)
    }

    /// The scheduler over this app's state, claiming work as `holder`.
    pub fn scheduler(&self, holder: &str) -> crate::jobs::Scheduler {
        let s = &self.state;
        crate::jobs::Scheduler::new(
            s.lifecycle.clone(),
            s.store.clone(),
            s.clock.clone(),
            s.vault.clone(),
            s.rotations.clone(),
            s.notifier.clone(),
            holder,
        )
        .with_audit(s.audit.clone())
        .with_health(s.jobs.clone())
        .with_claim_ttl(crate::jobs::Scheduler::claim_ttl_for(
            s.settings.vault.commander_timeout(),
        ))
    }

    pub fn router(&self) -> axum::Router {
        crate::web::router(self.state.clone())
    }

    /// `passkey serve`: records the start in the audit trail (and signs a checkpoint over any
    /// tail a crash left), starts the audit linker (Postgres) and the scheduler's jobs, serves until `shutdown` resolves, then
    /// writes the turns' deferred done marks, records the stop and signs, so a stopped service
    /// leaves nothing unsigned or unmarked behind it.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let audit = self.state.audit.clone();
        let instance = crate::jobs::Scheduler::instance_name();
        audit
            .record_start(&instance)
            .await
            .map_err(|e| std::io::Error::other(format!("audit trail: {e}")))?;
        let _linker = crate::audit::linker::spawn(self.state.store.clone());
        let _jobs = self.start_scheduler();
        let conversations = self.state.conversations.clone();
        let served = self.run_until_stopped(listener, shutdown).await;
        // The last turns answered; their done marks may still wait for a write to ride with.
        conversations.flush().await;
        if let Err(e) = audit.record_stop(&instance).await {
            tracing::error!(error = %e, "the stop was not recorded and signed in the audit trail");
        }
        served
    }

    /// Serves until `shutdown` resolves, then finishes in-flight requests and returns.
    pub async fn run_until_stopped(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let router = self.router();
        // The peer address feeds the per-address rate limits and the dev sign-in's loopback check.
        axum::serve(
            listener,
            router.into_make_service_with_connect_info::<std::net::SocketAddr>(),
        )
        .with_graceful_shutdown(shutdown)
        .await
    }

    /// The one short banner `serve` prints.
    pub fn banner(&self, listening: std::net::SocketAddr) -> String {
        let s = &self.state.settings;
        let mut lines = vec![format!(
            "passkey {} listening on http://{listening}",
            crate::VERSION
        )];
        // Which rules this instance runs under and the address people are sent to: the two
        // things an operator checks first after a deployment.
        let profile = match &s.production_because {
            Some(why) => format!("production (dev overruled: {why})"),
            None => crate::config::spelling(&s.profile),
        };
        let public_url = match s.public_url.as_deref().filter(|u| !u.is_empty()) {
            Some(url) => url.trim_end_matches('/').to_string(),
            None => format!("http://{listening} (public_url unset)"),
        };
        lines.push(format!("  profile: {profile}"));
        lines.push(format!("  public_url: {public_url}"));
        lines.push(format!("  bot endpoint: http://{listening}/api/messages"));
        lines.push(format!("  database: {}", s.database_label()));
        if s.dev_channel_auth() {
            lines.push(
                "  dev mode: channel auth OFF (loopback only) — Teams tokens are not checked"
                    .into(),
            );
        }
        if let Some(DemoOutcome::Loaded { users, records }) = &self.demo {
            lines.push(format!(
                "  demo data loaded: {users} users, {records} records"
            ));
        }
        lines.join("\n")
    }
}

/// What protects the data-encryption key in its file: nothing but the file's mode (`local`), or
/// the Key Vault key `crypto.key_vault_key` (`key-vault`; unwrapped once at start).
pub fn key_wrapper(
    settings: &Settings,
) -> Result<Box<dyn crate::crypto::KeyWrapper>, crate::crypto::CryptoError> {
    use crate::config::KeyProtection;
    match settings.crypto.key_wrapper {
        KeyProtection::Local => Ok(Box::new(crate::crypto::LocalWrapper)),
        KeyProtection::KeyVault => {
            let name = settings
                .crypto
                .key_vault_key
                .as_deref()
                .filter(|n| !n.is_empty())
                .ok_or_else(|| {
                    crate::crypto::CryptoError::Wrapper(
                        "crypto.key_wrapper = \"key-vault\" needs crypto.key_vault_key \
                         (PASSKEY_CRYPTO__KEY_VAULT_KEY)"
                            .into(),
                    )
                })?;
            let keys = key_vault_keys(settings)
                .map_err(|e| crate::crypto::CryptoError::Wrapper(e.to_string()))?;
            Ok(Box::new(crate::azure::keys::KeyVaultWrapper::new(
                keys, name,
            )))
        }
    }
}

/// Key Vault keys in `azure.key_vault_url`, reached with the configured Azure identity.
pub fn key_vault_keys(
    settings: &Settings,
) -> Result<Arc<dyn crate::azure::keys::KeyVaultKeys>, crate::azure::AzureError> {
    use crate::azure::{AzureError, credential, keys::SdkKeys};
    let url = settings
        .azure
        .key_vault_url
        .as_deref()
        .filter(|u| !u.is_empty())
        .ok_or_else(|| {
            AzureError::Config(
                "azure.key_vault_url is not set (PASSKEY_AZURE__KEY_VAULT_URL)".into(),
            )
        })?;
    let credential = credential::from_settings(&settings.azure)?;
    Ok(Arc::new(SdkKeys::new(url, credential)?))
}

/// The data-encryption key for personal data at rest: the key file in the data directory,
/// created on first start in dev, required in production (see `crypto.rs`).
pub async fn data_key(settings: &Settings) -> Result<crate::crypto::DataKey, StoreError> {
    let wrapper = key_wrapper(settings).map_err(|e| StoreError::Invalid(e.to_string()))?;
    let file = crate::crypto::LocalKeyFile::new(&settings.data_dir, wrapper);
    file.load(settings.profile == Profile::Dev)
        .await
        .map_err(|e| StoreError::Invalid(e.to_string()))
}

/// The bot's channel account as Teams addresses it: `28:<app id>` (dev mode has no app id; the
/// placeholder only ever reaches a configured loopback Connector).
fn bot_account_id(settings: &Settings) -> String {
    match settings.bot.app_id.as_deref().filter(|id| !id.is_empty()) {
        Some(id) => format!("28:{id}"),
        None => "28:passkey-dev".into(),
    }
}

/// Where group memberships and people come from.
type Directories = (Arc<dyn GroupDirectory>, Arc<dyn UserDirectory>);

/// Replaces `kv:` secret references with their values from Key Vault (nothing to do, and no
/// Azure call, when there are none). Every command that uses the settings goes through this.
pub async fn resolve_secrets(mut settings: Settings) -> Result<Settings, StartError> {
    if crate::azure::secrets::references(&mut settings).is_empty() {
        return Ok(settings);
    }
    let source = key_vault_secrets(&settings)?;
    let resolved = crate::azure::secrets::resolve(&mut settings, source.as_ref()).await?;
    tracing::info!(settings = ?resolved, vault = %source.location(), "resolved Key Vault references");
    Ok(settings)
}

/// The Key Vault that `kv:` references point into, reached with the configured Azure identity.
pub fn key_vault_secrets(
    settings: &Settings,
) -> Result<Box<dyn crate::azure::secrets::SecretSource>, crate::azure::AzureError> {
    use crate::azure::{AzureError, credential, secrets::KeyVaultSecrets};
    let url = settings
        .azure
        .key_vault_url
        .as_deref()
        .filter(|u| !u.is_empty())
        .ok_or_else(|| {
            let mut copy = settings.clone();
            let named: Vec<String> = crate::azure::secrets::references(&mut copy)
                .into_iter()
                .map(|r| format!("{} = {}", r.setting, r.reference))
                .collect();
            AzureError::Config(format!(
                "{} use Key Vault but azure.key_vault_url (PASSKEY_AZURE__KEY_VAULT_URL) is not set",
                named.join(", ")
            ))
        })?;
    let credential = credential::from_settings(&settings.azure)?;
    Ok(Box::new(KeyVaultSecrets::new(url, credential)?))
}

/// Graph with the bot's own identity when enabled (`Settings::check` made sure it has one) — one
/// client for group memberships and people — else an empty group directory and the demo people
/// (dev with demo data) or nobody.
fn directories(settings: &Settings) -> Result<Directories, StoreError> {
    if !settings.graph.enabled {
        let people = if settings.profile == Profile::Dev && settings.demo_data {
            StaticDirectory::demo()
        } else {
            StaticDirectory::new()
        };
        return Ok((Arc::new(StaticGroupDirectory::new()), Arc::new(people)));
    }
    let http = crate::outbound::client(None);
    let tokens = TokenProvider::from_settings(settings, GRAPH_SCOPE).ok_or_else(|| {
        StoreError::Invalid(
            "graph.enabled needs the bot's app id and password (or a managed identity)".into(),
        )
    })?;
    let graph = Arc::new(
        GraphDirectory::new(http, &settings.graph.base_url, Arc::new(tokens))
            .map_err(|e| StoreError::Invalid(e.to_string()))?,
    );
    Ok((graph.clone(), graph))
}

/// The audit checkpoint signer: the local Ed25519 key file in the data directory (created on
/// first start).
pub fn audit_signer(
    settings: &Settings,
) -> Result<Arc<dyn crate::audit::Signer>, crate::audit::SignError> {
    match crate::azure::signing_key_name(settings) {
        Some(key) => {
            let keys = key_vault_keys(settings)
                .map_err(|e| crate::audit::SignError::Key(e.to_string()))?;
            Ok(Arc::new(crate::azure::keys::KeyVaultSigner::new(
                keys, &key,
            )))
        }
        None => crate::audit::local_signer(&settings.audit, &settings.data_dir),
    }
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
}
