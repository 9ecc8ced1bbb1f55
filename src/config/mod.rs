//! Typed settings. Layers, later wins: built-in defaults < `passkey.toml` (or the file named by
//! `PASSKEY_CONFIG`) < `PASSKEY_*` environment variables (`__` separates sections:
//! `PASSKEY_BOT__APP_ID` sets `bot.app_id`) < `DATABASE_URL`.
//! Secrets are `SecretString`s: Debug prints `[REDACTED]`, and only `expose_secret()` reads them.

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Deserializer};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

mod check;
mod load;
mod schedule;
mod summary;

pub use schedule::{CronSchedule, JOB_NAMES, Schedules};

pub use summary::describe_database_url;

/// Where the app runs. Production refuses every embedded stand-in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Profile {
    Dev,
    Production,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Pretty,
    Json,
}

/// Which Keeper bridge serves vault reads and shares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum VaultBackend {
    /// A vault file in the data directory, with one-time links served by the app itself.
    Local,
    /// Clearly fake links, for staging environments without Commander.
    Stub,
    /// KSM reads plus Commander's REST service mode for shares.
    CommanderService,
    /// KSM reads plus the `keeper` CLI as a subprocess for shares.
    CommanderCli,
}

#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// `dev` holds only on loopback: a non-loopback `bind` or `public_url` makes it `production`
    /// at load time (see [`Settings::exposure`]).
    pub profile: Profile,
    /// Why `profile = dev` was overruled, for start-up's refusal and `doctor`.
    #[serde(skip)]
    pub production_because: Option<String>,
    /// Address the HTTP server binds.
    pub bind: SocketAddr,
    /// Base URL people's browsers reach the app at (deep links). Defaults to `http://{bind}`.
    pub public_url: Option<String>,
    pub data_dir: PathBuf,
    /// `postgres://…` selects PostgreSQL; unset means the SQLite file `passkey.db` in `data_dir`.
    #[serde(serialize_with = "summary::redacted_secret")]
    pub database_url: Option<SecretString>,
    /// The pool's size. The bot holds a few connections beyond it for the statements of its
    /// turns (`store::held`: two on Postgres, one read connection on SQLite).
    #[serde(deserialize_with = "de_u32")]
    pub database_max_connections: u32,
    /// Load the demo data set into an empty database (dev profile only).
    pub demo_data: bool,
    pub log: LogSettings,
    pub http: HttpSettings,
    pub bot: BotSettings,
    pub graph: GraphSettings,
    pub vault: VaultSettings,
    pub lifecycle: LifecycleSettings,
    pub azure: AzureSettings,
    pub crypto: CryptoSettings,
    pub audit: AuditSettings,
    pub web: WebSettings,
    pub otp: OtpSettings,
    pub telemetry: TelemetrySettings,
}

#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogSettings {
    /// Pretty in dev, JSON in production unless set.
    pub format: Option<LogFormat>,
    /// An `EnvFilter` directive; `RUST_LOG` overrides it.
    pub filter: String,
}

#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpSettings {
    /// Largest request body accepted, in bytes; larger bodies get 413.
    #[serde(deserialize_with = "de_usize")]
    pub body_limit_bytes: usize,
}

#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct BotSettings {
    /// The bot's Microsoft App ID. Unset = dev mode (no channel auth), allowed on loopback only.
    pub app_id: Option<String>,
    #[serde(serialize_with = "summary::redacted_secret")]
    pub app_password: Option<SecretString>,
    /// Set for single-tenant bots: tokens from this tenant's Entra issuers are accepted too.
    pub tenant_id: Option<String>,
    /// Teams tenants whose activities are served; empty = any tenant (dev), refused in production.
    #[serde(deserialize_with = "de_list")]
    pub allowed_tenants: Vec<String>,
    /// Bot Framework OpenID metadata (channel-token keys).
    pub openid_metadata_url: String,
    /// Entra OpenID metadata for single-tenant bots; `{tenant}` is replaced by `tenant_id`.
    pub entra_openid_metadata_url: String,
    /// Where Connector and Graph tokens come from with a client secret
    /// (`{authority}/{tenant}/oauth2/v2.0/token`): scheme and host only, https.
    pub oauth_authority: String,
    pub connector_scope: String,
    /// How the bot's own tokens (Connector, Graph) are obtained: `secret` (app password) or
    /// `managed-identity` (the identity `azure.credential` names, as Key Vault uses it).
    pub connector_auth: ConnectorAuth,
    /// The HTTP client for client-secret token requests. Not a setting: tests give one that
    /// trusts their throwaway CA; unset, azure_core's own client is used.
    #[serde(skip)]
    pub token_client: Option<reqwest::Client>,
    /// The Connector base URL for opening 1:1 chats with people the bot has never talked to
    /// (`https://smba.trafficmanager.net/teams/` when unset and the bot has an app id; unset in
    /// dev mode means no chats are opened).
    pub service_url: Option<String>,
    /// Connector hosts the bot's token may go to besides Bot Framework's own (see
    /// `bot::connector::ConnectorHosts`): `host` or `*.domain`. Loopback only outside production.
    #[serde(deserialize_with = "de_list")]
    pub connector_hosts: Vec<String>,
    /// How long a turn holds its claim on an activity without renewing it (renewed every third of
    /// this while the turn runs). A redelivery inside the claim is answered 503 (Teams retries);
    /// after a crash, a redelivery once the claim lapsed runs the turn again.
    #[serde(deserialize_with = "de_u64")]
    pub turn_claim_secs: u64,
}

/// The Teams-wide Connector URL: good for creating conversations in any region.
pub const DEFAULT_SERVICE_URL: &str = "https://smba.trafficmanager.net/teams/";

/// A setting's value as the configuration spells it (`managed-identity`, not the Rust name
/// lower-cased), so what an admin reads can be pasted back into the file.
pub fn spelling<T: serde::Serialize>(value: &T) -> String {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(s)) => s,
        Ok(other) => other.to_string(),
        Err(_) => String::new(),
    }
}

/// How the bot authenticates to the Bot Connector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ConnectorAuth {
    Secret,
    ManagedIdentity,
}

/// Microsoft Graph: people's Entra group memberships (folder ACLs may name groups), EMAIL and
/// GROUP approvers, and installing the Teams app for approvers the bot has never talked to.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct GraphSettings {
    /// Off: nobody has group memberships, and only the demo people (dev) are in the directory.
    pub enabled: bool,
    pub base_url: String,
    /// Install the Teams app for a person before opening a chat with them (needs
    /// `TeamsAppInstallation.ReadWriteForUser.All` and `teams_app_catalog_id`).
    pub install_app: bool,
    /// The app's id in the organisation's Teams app catalog (not the manifest id).
    pub teams_app_catalog_id: Option<String>,
}

#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct VaultSettings {
    pub backend: VaultBackend,
    /// Commander service mode's root URL (`commander-service`), e.g. `http://127.0.0.1:8900`.
    pub commander_url: Option<String>,
    /// Service mode's `api-key` (`commander-service`).
    #[serde(serialize_with = "summary::redacted_secret")]
    pub commander_api_key: Option<SecretString>,
    /// The `keeper` executable (`commander-cli`).
    pub commander_binary: PathBuf,
    /// Commander's config file, already logged in with persistent login (`commander-cli`).
    pub commander_config_path: Option<PathBuf>,
    /// Per-call limit; unset: 30 s for service mode, 60 s for the CLI (which logs in each call).
    #[serde(deserialize_with = "de_opt_u64")]
    pub commander_timeout_secs: Option<u64>,
    /// The KSM application's configuration (base64 or JSON), for vault metadata reads with the
    /// Commander backends. Unset: reads are unavailable (shares still work).
    #[serde(serialize_with = "summary::redacted_secret")]
    pub ksm_config: Option<SecretString>,
}

impl VaultSettings {
    /// The per-call Commander timeout in effect for the configured backend.
    pub fn commander_timeout(&self) -> std::time::Duration {
        match (self.commander_timeout_secs, self.backend) {
            (Some(secs), _) => std::time::Duration::from_secs(secs),
            (None, VaultBackend::CommanderCli) => crate::vault::commander::DEFAULT_CLI_TIMEOUT,
            (None, _) => crate::vault::commander::DEFAULT_SERVICE_TIMEOUT,
        }
    }
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            profile: Profile::Dev,
            production_because: None,
            bind: SocketAddr::from(([127, 0, 0, 1], 3978)),
            public_url: None,
            data_dir: PathBuf::from("data"),
            database_url: None,
            database_max_connections: 10,
            demo_data: true,
            log: LogSettings::default(),
            http: HttpSettings::default(),
            bot: BotSettings::default(),
            graph: GraphSettings::default(),
            vault: VaultSettings::default(),
            lifecycle: LifecycleSettings::default(),
            azure: AzureSettings::default(),
            crypto: CryptoSettings::default(),
            audit: AuditSettings::default(),
            web: WebSettings::default(),
            otp: OtpSettings::default(),
            telemetry: TelemetrySettings::default(),
        }
    }
}

impl Default for LogSettings {
    fn default() -> Self {
        LogSettings {
            format: None,
            filter: "info,sqlx=warn,tower_http=info".into(),
        }
    }
}

impl Default for HttpSettings {
    fn default() -> Self {
        // Bot Framework activities carrying a full Adaptive Card stay well under 100 KB.
        HttpSettings {
            body_limit_bytes: 256 * 1024,
        }
    }
}

impl Default for BotSettings {
    fn default() -> Self {
        BotSettings {
            app_id: None,
            app_password: None,
            tenant_id: None,
            allowed_tenants: Vec::new(),
            openid_metadata_url:
                "https://login.botframework.com/v1/.well-known/openidconfiguration".into(),
            entra_openid_metadata_url:
                "https://login.microsoftonline.com/{tenant}/v2.0/.well-known/openid-configuration"
                    .into(),
            oauth_authority: "https://login.microsoftonline.com".into(),
            connector_scope: "https://api.botframework.com/.default".into(),
            connector_auth: ConnectorAuth::Secret,
            token_client: None,
            service_url: None,
            connector_hosts: Vec::new(),
            turn_claim_secs: 30,
        }
    }
}

impl Default for GraphSettings {
    fn default() -> Self {
        GraphSettings {
            enabled: false,
            base_url: "https://graph.microsoft.com".into(),
            install_app: false,
            teams_app_catalog_id: None,
        }
    }
}

impl Default for VaultSettings {
    fn default() -> Self {
        VaultSettings {
            backend: VaultBackend::Local,
            commander_url: None,
            commander_api_key: None,
            commander_binary: PathBuf::from("keeper"),
            commander_config_path: None,
            commander_timeout_secs: None,
            ksm_config: None,
        }
    }
}

/// How the app authenticates to Azure (Key Vault) without a secret of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum AzureCredentialKind {
    /// The App Service / VM managed identity: system-assigned, or user-assigned by `client_id`.
    ManagedIdentity,
    /// Developer tools on this machine (`az login`, then `azd auth login`), for local runs.
    Developer,
}

/// Azure Key Vault: secret references (`kv:NAME` anywhere a secret is configured) and the keys
/// that sign audit checkpoints and wrap the data-encryption key.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct AzureSettings {
    pub credential: AzureCredentialKind,
    /// A user-assigned managed identity's client id (unset: the system-assigned identity). The one
    /// identity setting: Key Vault, and the bot's Connector and Graph tokens with
    /// `bot.connector_auth = "managed-identity"`.
    pub client_id: Option<String>,
    /// The vault's URL, e.g. `https://passkey-prod.vault.azure.net/`. Needed by any `kv:` reference.
    pub key_vault_url: Option<String>,
}

impl Default for AzureSettings {
    fn default() -> Self {
        AzureSettings {
            credential: AzureCredentialKind::ManagedIdentity,
            client_id: None,
            key_vault_url: None,
        }
    }
}

/// Which key protects a key at rest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum KeyProtection {
    /// A file in the data directory.
    #[default]
    Local,
    /// An Azure Key Vault key (`azure.key_vault_url`) that never leaves the vault.
    KeyVault,
}

/// The data-encryption key for personal data at rest (phone numbers, TOTP secrets).
#[derive(Debug, Clone, Default, Deserialize, serde::Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct CryptoSettings {
    /// `local`: the key file holds the key itself (mode 0600); `key-vault`: the key file holds it
    /// wrapped by `crypto.key_vault_key` (RSA-OAEP-256 wrapKey/unwrapKey).
    pub key_wrapper: KeyProtection,
    /// The Key Vault key (an RSA key's name) that wraps the data-encryption key.
    pub key_vault_key: Option<String>,
}

/// Timings of the request lifecycle and its scheduler. All in seconds.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct LifecycleSettings {
    /// Run the scheduler in this process (turn off on instances that should only serve).
    pub scheduler: bool,
    /// How long a minted issuance token may wait for its exchange.
    #[serde(deserialize_with = "de_u64")]
    pub issuance_token_ttl_secs: u64,
    /// The requester is warned this long before the lease ends.
    #[serde(deserialize_with = "de_u64")]
    pub expiry_warning_secs: u64,
    /// Approvers are reminded once a request has waited this long.
    #[serde(deserialize_with = "de_u64")]
    pub reminder_after_secs: u64,
    /// A routed request nobody decided goes to the admins' triage queue after this long.
    #[serde(deserialize_with = "de_u64")]
    pub escalate_after_secs: u64,
    /// A request still undecided after this long expires.
    #[serde(deserialize_with = "de_u64")]
    pub undecided_ttl_secs: u64,
    /// An access review's owners are reminded once it has stayed open this long.
    #[serde(deserialize_with = "de_u64")]
    pub review_reminder_after_secs: u64,
    /// An access review still open after this long goes to the admins.
    #[serde(deserialize_with = "de_u64")]
    pub review_escalate_after_secs: u64,
    /// Vault preflight retries after the first attempt, before the request is UNFULFILLABLE.
    #[serde(deserialize_with = "de_u32")]
    pub preflight_retry_budget: u32,
    /// Scheduler tick for lease expiry, warnings, preflight retries and stale requests.
    #[serde(deserialize_with = "de_u64")]
    pub tick_secs: u64,
    /// Vault sync, discovery, permission and rotation checks.
    #[serde(deserialize_with = "de_u64")]
    pub vault_sync_secs: u64,
    /// Cron expressions (UTC) by job name, replacing that job's interval: `vault-sync =
    /// "0 0 2 * * *"`. A job on a cron schedule runs once per fire time across instances.
    pub schedules: Schedules,
}

impl Default for LifecycleSettings {
    fn default() -> Self {
        LifecycleSettings {
            scheduler: true,
            issuance_token_ttl_secs: 300,
            expiry_warning_secs: 600,
            reminder_after_secs: 4 * 3600,
            escalate_after_secs: 24 * 3600,
            undecided_ttl_secs: 72 * 3600,
            review_reminder_after_secs: 7 * 24 * 3600,
            review_escalate_after_secs: 14 * 24 * 3600,
            preflight_retry_budget: 3,
            tick_secs: 60,
            vault_sync_secs: 3600,
            schedules: Schedules::default(),
        }
    }
}

/// The audit trail's signed checkpoints and its verification (#9).
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuditSettings {
    /// A checkpoint is signed once this many events were appended since the last one…
    #[serde(deserialize_with = "de_u64")]
    pub checkpoint_every_events: u64,
    /// …or once this many seconds passed with at least one new event. The checkpoint job
    /// looks every `min(60, checkpoint_every_secs)` seconds; the verifier allows twice this
    /// long between an event and the checkpoint that covers it.
    #[serde(deserialize_with = "de_u64")]
    pub checkpoint_every_secs: u64,
    /// How often the `audit-verify` job checks the whole trail (4 hours).
    #[serde(deserialize_with = "de_u64")]
    pub verify_every_secs: u64,
    /// How long a committed event may stay unlinked (outside the chain) while the service runs
    /// before the verifier reports it (`Unlinked`). Postgres links within milliseconds; SQLite
    /// links as it inserts.
    #[serde(deserialize_with = "de_u64")]
    pub link_allowance_secs: u64,
    /// The local Ed25519 signing key (PKCS#8), created 0600 on first start. Relative paths are
    /// inside `data_dir`.
    pub signing_key_file: PathBuf,
    /// Who signs checkpoints: the local key file, or an EC P-256 Key Vault key (ES256) that
    /// never leaves the vault (`audit.key_vault_key` in `azure.key_vault_url`).
    pub signer: KeyProtection,
    pub key_vault_key: Option<String>,
}

impl Default for AuditSettings {
    fn default() -> Self {
        AuditSettings {
            checkpoint_every_events: 1000,
            checkpoint_every_secs: 300,
            verify_every_secs: 4 * 3600,
            link_allowance_secs: 5,
            signing_key_file: PathBuf::from("audit-signing-key.p8"),
            signer: KeyProtection::Local,
            key_vault_key: None,
        }
    }
}

/// The issuance page: sessions, sign-in, framing and rate limits.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebSettings {
    /// The key that signs session cookies (base64, at least 32 bytes). Unset: `session.key` in the
    /// data directory, created on first start. Instances behind one load balancer need the same key.
    #[serde(serialize_with = "summary::redacted_secret")]
    pub session_key: Option<SecretString>,
    /// How long a sign-in lasts.
    #[serde(deserialize_with = "de_u64")]
    pub session_ttl_secs: u64,
    /// Origins allowed to frame the page (CSP `frame-ancestors`): Teams' hosts.
    #[serde(deserialize_with = "de_list")]
    pub frame_ancestors: Vec<String>,
    /// Take the client address from `X-Forwarded-For` (behind App Service or another proxy that
    /// appends to it); otherwise the peer address is used. Only with Passkey reachable through
    /// those proxies alone: a client that connects directly writes the header itself.
    pub trust_forwarded_for: bool,
    /// How many trusted proxies append to `X-Forwarded-For` in front of Passkey (App Service: 1;
    /// Front Door in front of App Service: 2). The client address is that many entries from the
    /// right; everything to its left was written by the client.
    #[serde(deserialize_with = "de_u8")]
    pub forwarded_for_hops: u8,
    /// Exchange and challenge calls per person per minute (per instance).
    #[serde(deserialize_with = "de_u32")]
    pub rate_per_user_per_minute: u32,
    /// Exchange and challenge calls per client address per minute (per instance).
    #[serde(deserialize_with = "de_u32")]
    pub rate_per_ip_per_minute: u32,
    pub oidc: OidcSettings,
}

/// Entra ID sign-in (OpenID Connect authorization code flow with PKCE, confidential client).
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct OidcSettings {
    /// `https://login.microsoftonline.com`; discovery is `{authority}/{tenant}/v2.0/.well-known/openid-configuration`.
    pub authority: String,
    /// The directory (tenant) id the app is registered in, or `organizations` for several tenants.
    pub tenant_id: Option<String>,
    /// The app registration's client id. Set: people sign in with Entra ID (also in dev).
    pub client_id: Option<String>,
    #[serde(serialize_with = "summary::redacted_secret")]
    pub client_secret: Option<SecretString>,
    /// Tenants whose people may sign in; empty = `bot.allowed_tenants`.
    #[serde(deserialize_with = "de_list")]
    pub allowed_tenants: Vec<String>,
}

impl Default for WebSettings {
    fn default() -> Self {
        WebSettings {
            session_key: None,
            session_ttl_secs: 15 * 60,
            frame_ancestors: [
                "https://teams.microsoft.com",
                "https://*.teams.microsoft.com",
                "https://teams.cloud.microsoft",
                "https://*.cloud.microsoft",
                "https://*.office.com",
            ]
            .map(String::from)
            .to_vec(),
            trust_forwarded_for: false,
            forwarded_for_hops: 1,
            rate_per_user_per_minute: 10,
            rate_per_ip_per_minute: 30,
            oidc: OidcSettings::default(),
        }
    }
}

/// Which gateway texts one-time codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SmsProvider {
    /// Dev only: the message is written to the log, not sent.
    Console,
    /// Azure Communication Services.
    Acs,
    Twilio,
}

/// Second factor at retrieval: SMS gateway, code lifetimes and limits.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct OtpSettings {
    pub sms_provider: SmsProvider,
    /// The sending number (E.164) or alphanumeric sender id (`acs`, `twilio`).
    pub sms_from: Option<String>,
    /// The ACS resource endpoint, e.g. `https://contoso.communication.azure.com`.
    pub acs_endpoint: Option<String>,
    /// The ACS resource's access key (base64).
    #[serde(serialize_with = "summary::redacted_secret")]
    pub acs_access_key: Option<SecretString>,
    /// Twilio's API root (tests point it at loopback).
    pub twilio_base_url: String,
    pub twilio_account_sid: Option<String>,
    #[serde(serialize_with = "summary::redacted_secret")]
    pub twilio_auth_token: Option<SecretString>,
    /// How long a code is valid.
    #[serde(deserialize_with = "de_u64")]
    pub code_ttl_secs: u64,
    /// Wrong codes before a challenge locks.
    #[serde(deserialize_with = "de_u32")]
    pub max_attempts: u32,
    /// Seconds between two texts to the same person.
    #[serde(deserialize_with = "de_u64")]
    pub resend_cooldown_secs: u64,
    /// Texts per challenge, the first included.
    #[serde(deserialize_with = "de_u32")]
    pub max_sends: u32,
    /// Per-request limit for the gateway.
    #[serde(deserialize_with = "de_u64")]
    pub sms_timeout_secs: u64,
    /// Wrong codes one person may type in a rolling hour, across every challenge and channel
    /// (retrieval codes, authenticator codes, proofs for a factor change); past it, no new
    /// challenge until the hour has passed, and admins are alerted once.
    #[serde(deserialize_with = "de_u32")]
    pub max_wrong_codes_per_hour: u32,
    /// How long an admin's invitation to set up an authenticator stays usable.
    #[serde(deserialize_with = "de_u64")]
    pub invitation_ttl_secs: u64,
}

/// OpenTelemetry traces and metrics over OTLP, and a Prometheus `/metrics` endpoint. All off
/// unless set.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct TelemetrySettings {
    /// The OTLP/HTTP (protobuf) base URL, e.g. `http://127.0.0.1:4318` (an OpenTelemetry
    /// Collector or the Azure Monitor agent): traces go to `…/v1/traces`, metrics to
    /// `…/v1/metrics`. Unset: nothing is exported.
    pub otlp_endpoint: Option<String>,
    /// `service.name` on every span and metric.
    pub service_name: String,
    /// Serve `/metrics` in the Prometheus text format: to loopback peers only, or to anyone
    /// with `metrics_bearer_token`.
    pub metrics_endpoint: bool,
    /// A bearer token that lets a scraper on another machine read `/metrics`.
    #[serde(serialize_with = "summary::redacted_secret")]
    pub metrics_bearer_token: Option<SecretString>,
}

impl Default for TelemetrySettings {
    fn default() -> Self {
        TelemetrySettings {
            otlp_endpoint: None,
            service_name: "passkey".into(),
            metrics_endpoint: false,
            metrics_bearer_token: None,
        }
    }
}

impl TelemetrySettings {
    /// The OTLP base URL when export is on (set and not empty).
    pub fn otlp(&self) -> Option<&str> {
        self.otlp_endpoint
            .as_deref()
            .map(|u| u.trim_end_matches('/'))
            .filter(|u| !u.is_empty())
    }
}

impl Default for OtpSettings {
    fn default() -> Self {
        OtpSettings {
            sms_provider: SmsProvider::Console,
            sms_from: None,
            acs_endpoint: None,
            acs_access_key: None,
            twilio_base_url: "https://api.twilio.com".into(),
            twilio_account_sid: None,
            twilio_auth_token: None,
            code_ttl_secs: 300,
            max_attempts: 5,
            resend_cooldown_secs: 60,
            max_sends: 3,
            sms_timeout_secs: 10,
            max_wrong_codes_per_hour: 10,
            invitation_ttl_secs: 86_400,
        }
    }
}

impl AuditSettings {
    /// The signing key's path: absolute as given, else inside the data directory.
    pub fn signing_key_path(&self, data_dir: &Path) -> PathBuf {
        if self.signing_key_file.is_absolute() {
            self.signing_key_file.clone()
        } else {
            data_dir.join(&self.signing_key_file)
        }
    }
}

impl Default for OidcSettings {
    fn default() -> Self {
        OidcSettings {
            authority: "https://login.microsoftonline.com".into(),
            tenant_id: None,
            client_id: None,
            client_secret: None,
            allowed_tenants: Vec::new(),
        }
    }
}

impl WebSettings {
    /// True when people sign in with Entra ID rather than the dev sign-in page.
    pub fn oidc_enabled(&self) -> bool {
        self.oidc
            .client_id
            .as_deref()
            .is_some_and(|c| !c.is_empty())
    }
}

/// Configuration that cannot be loaded, or that is unsafe to run with.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid configuration: {0}")]
    Parse(String),
    #[error("refusing to start:\n{}", .0.iter().map(|p| format!("  - {p}")).collect::<Vec<_>>().join("\n"))]
    Unsafe(Vec<String>),
}

impl Settings {
    /// Tenants whose people may sign in to the issuance page.
    pub fn sign_in_tenants(&self) -> &[String] {
        if self.web.oidc.allowed_tenants.is_empty() {
            &self.bot.allowed_tenants
        } else {
            &self.web.oidc.allowed_tenants
        }
    }

    /// Where 1:1 chats with people the bot has never talked to are opened: the configured
    /// `bot.service_url`, else the Teams-wide default when the bot has an app id. `None` in dev
    /// mode without one, so `cargo run` and tests never call out unasked.
    pub fn proactive_service_url(&self) -> Option<String> {
        match &self.bot.service_url {
            Some(url) if !url.trim().is_empty() => Some(url.trim().to_string()),
            _ if self.dev_channel_auth() => None,
            _ => Some(DEFAULT_SERVICE_URL.to_string()),
        }
    }

    /// The catalog app id to install for people before opening a chat, when configured.
    pub fn install_app_catalog_id(&self) -> Option<String> {
        self.graph
            .install_app
            .then(|| self.graph.teams_app_catalog_id.clone())
            .flatten()
            .filter(|id| is_catalog_id(id))
    }

    /// True when inbound activities are accepted without a channel token.
    pub fn dev_channel_auth(&self) -> bool {
        self.bot.app_id.as_deref().is_none_or(str::is_empty)
    }

    pub fn log_format(&self) -> LogFormat {
        self.log.format.unwrap_or(match self.profile {
            Profile::Dev => LogFormat::Pretty,
            Profile::Production => LogFormat::Json,
        })
    }

    /// The database URL in effect (a secret: it may hold a password).
    pub fn effective_database_url(&self) -> SecretString {
        match &self.database_url {
            Some(url) if !url.expose_secret().is_empty() => url.clone(),
            _ => SecretString::from(format!(
                "sqlite://{}",
                self.data_dir.join("passkey.db").display()
            )),
        }
    }

    /// Every secret setting by its configuration name, for Key Vault reference resolution
    /// (`kv:NAME` values are replaced at start-up). A new `SecretString` field belongs here too;
    /// the `every_secret_field_is_resolvable` test counts them.
    pub fn secret_fields_mut(&mut self) -> Vec<(&'static str, &mut Option<SecretString>)> {
        vec![
            ("database_url", &mut self.database_url),
            ("bot.app_password", &mut self.bot.app_password),
            ("vault.commander_api_key", &mut self.vault.commander_api_key),
            ("vault.ksm_config", &mut self.vault.ksm_config),
            ("otp.acs_access_key", &mut self.otp.acs_access_key),
            ("otp.twilio_auth_token", &mut self.otp.twilio_auth_token),
            ("web.session_key", &mut self.web.session_key),
            ("web.oidc.client_secret", &mut self.web.oidc.client_secret),
            (
                "telemetry.metrics_bearer_token",
                &mut self.telemetry.metrics_bearer_token,
            ),
        ]
    }

    /// A description of the database safe to print: kind and location, no credentials.
    pub fn database_label(&self) -> String {
        let url = self.effective_database_url();
        describe_database_url(url.expose_secret())
    }

    pub fn public_base_url(&self) -> String {
        self.public_url
            .clone()
            .unwrap_or_else(|| format!("http://{}", self.bind))
            .trim_end_matches('/')
            .to_string()
    }
}

/// A Teams app catalog id goes into a Graph URL: a GUID-like word, nothing else.
fn is_catalog_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 64 && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
}

/// Numbers may come from TOML (integers) or the environment (strings).
#[derive(Deserialize)]
#[serde(untagged)]
enum NumberOrText {
    Number(u64),
    Text(String),
}

fn de_u64<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    match NumberOrText::deserialize(d)? {
        NumberOrText::Number(n) => Ok(n),
        NumberOrText::Text(s) => s
            .trim()
            .parse()
            .map_err(|_| serde::de::Error::custom(format!("`{s}` is not a number"))),
    }
}

fn de_opt_u64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    de_u64(d).map(Some)
}

fn de_u32<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    u32::try_from(de_u64(d)?).map_err(serde::de::Error::custom)
}

fn de_u8<'de, D: Deserializer<'de>>(d: D) -> Result<u8, D::Error> {
    u8::try_from(de_u64(d)?).map_err(serde::de::Error::custom)
}

fn de_usize<'de, D: Deserializer<'de>>(d: D) -> Result<usize, D::Error> {
    usize::try_from(de_u64(d)?).map_err(serde::de::Error::custom)
}

/// Lists may be TOML arrays or comma-separated environment strings.
fn de_list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum ListOrText {
        List(Vec<String>),
        Text(String),
    }
    Ok(match ListOrText::deserialize(d)? {
        ListOrText::List(v) => v,
        ListOrText::Text(s) => s
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect(),
    })
}

#[cfg(test)]
mod tests;
