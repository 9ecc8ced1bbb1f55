//! Typed settings. Layers, later wins: built-in defaults < `passkey.toml` (or the file named by
//! `PASSKEY_CONFIG`) < `PASSKEY_*` environment variables (`__` separates sections:
//! `PASSKEY_BOT__APP_ID` sets `bot.app_id`) < `DATABASE_URL`.
//! Secrets are `SecretString`s: Debug prints `[REDACTED]`, and only `expose_secret()` reads them.

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Deserializer};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

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

#[derive(Debug, Clone, Deserialize)]
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
    pub database_url: Option<SecretString>,
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
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogSettings {
    /// Pretty in dev, JSON in production unless set.
    pub format: Option<LogFormat>,
    /// An `EnvFilter` directive; `RUST_LOG` overrides it.
    pub filter: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpSettings {
    /// Largest request body accepted, in bytes; larger bodies get 413.
    #[serde(deserialize_with = "de_usize")]
    pub body_limit_bytes: usize,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BotSettings {
    /// The bot's Microsoft App ID. Unset = dev mode (no channel auth), allowed on loopback only.
    pub app_id: Option<String>,
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
    /// Where Connector tokens come from (`{authority}/{tenant}/oauth2/v2.0/token`).
    pub oauth_authority: String,
    pub connector_scope: String,
    /// How the Connector token is obtained: `secret` (app password) or `managed-identity`.
    pub connector_auth: ConnectorAuth,
    /// A user-assigned managed identity's client id (unset: the system-assigned identity).
    pub managed_identity_client_id: Option<String>,
    /// Overrides the managed identity endpoint (default: App Service's `IDENTITY_ENDPOINT`, else IMDS).
    pub managed_identity_endpoint: Option<String>,
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
#[derive(Debug, Clone, Deserialize)]
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

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct VaultSettings {
    pub backend: VaultBackend,
    /// Commander service mode's root URL (`commander-service`), e.g. `http://127.0.0.1:8900`.
    pub commander_url: Option<String>,
    /// Service mode's `api-key` (`commander-service`).
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
            managed_identity_client_id: None,
            managed_identity_endpoint: None,
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
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AzureSettings {
    pub credential: AzureCredentialKind,
    /// A user-assigned managed identity's client id (unset: the system-assigned identity).
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
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CryptoSettings {
    /// `local`: the key file holds the key itself (mode 0600); `key-vault`: the key file holds it
    /// wrapped by `crypto.key_vault_key` (RSA-OAEP-256 wrapKey/unwrapKey).
    pub key_wrapper: KeyProtection,
    /// The Key Vault key (an RSA key's name) that wraps the data-encryption key.
    pub key_vault_key: Option<String>,
}

/// Timings of the request lifecycle and its scheduler. All in seconds.
#[derive(Debug, Clone, Deserialize)]
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
    /// Vault preflight retries after the first attempt, before the request is UNFULFILLABLE.
    #[serde(deserialize_with = "de_u32")]
    pub preflight_retry_budget: u32,
    /// Scheduler tick for lease expiry, warnings, preflight retries and stale requests.
    #[serde(deserialize_with = "de_u64")]
    pub tick_secs: u64,
    /// Vault sync, discovery, permission and rotation checks.
    #[serde(deserialize_with = "de_u64")]
    pub vault_sync_secs: u64,
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
            preflight_retry_budget: 3,
            tick_secs: 60,
            vault_sync_secs: 3600,
        }
    }
}

/// The audit trail's signed checkpoints and its verification (#9).
#[derive(Debug, Clone, Deserialize)]
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
            signing_key_file: PathBuf::from("audit-signing-key.p8"),
            signer: KeyProtection::Local,
            key_vault_key: None,
        }
    }
}

/// The issuance page: sessions, sign-in, framing and rate limits.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebSettings {
    /// The key that signs session cookies (base64, at least 32 bytes). Unset: `session.key` in the
    /// data directory, created on first start. Instances behind one load balancer need the same key.
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
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OidcSettings {
    /// `https://login.microsoftonline.com`; discovery is `{authority}/{tenant}/v2.0/.well-known/openid-configuration`.
    pub authority: String,
    /// The directory (tenant) id the app is registered in, or `organizations` for several tenants.
    pub tenant_id: Option<String>,
    /// The app registration's client id. Set: people sign in with Entra ID (also in dev).
    pub client_id: Option<String>,
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
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OtpSettings {
    pub sms_provider: SmsProvider,
    /// The sending number (E.164) or alphanumeric sender id (`acs`, `twilio`).
    pub sms_from: Option<String>,
    /// The ACS resource endpoint, e.g. `https://contoso.communication.azure.com`.
    pub acs_endpoint: Option<String>,
    /// The ACS resource's access key (base64).
    pub acs_access_key: Option<SecretString>,
    /// Twilio's API root (tests point it at loopback).
    pub twilio_base_url: String,
    pub twilio_account_sid: Option<String>,
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

impl OtpSettings {
    /// What is wrong with these settings for `profile`.
    fn problems(&self, profile: Profile) -> Vec<String> {
        let mut problems = Vec::new();
        let missing = |s: &Option<String>| s.as_deref().is_none_or(|v| v.trim().is_empty());
        let missing_secret =
            |s: &Option<SecretString>| s.as_ref().is_none_or(|v| v.expose_secret().is_empty());
        let https_or_dev = |url: &str| {
            url.starts_with("https://") || (profile == Profile::Dev && url.starts_with("http://"))
        };
        match self.sms_provider {
            SmsProvider::Console => {
                if profile == Profile::Production {
                    problems.push(
                        "production cannot use the console SMS sender (otp.sms_provider = \"console\" only logs \
                         codes); use \"acs\" or \"twilio\""
                            .into(),
                    );
                }
            }
            SmsProvider::Acs => {
                match self.acs_endpoint.as_deref() {
                    Some(url) if https_or_dev(url) => {}
                    Some(_) => problems.push("otp.acs_endpoint must be https:// outside dev".into()),
                    None => problems.push(
                        "otp.sms_provider = \"acs\" needs otp.acs_endpoint (PASSKEY_OTP__ACS_ENDPOINT)".into(),
                    ),
                }
                if missing_secret(&self.acs_access_key) {
                    problems.push(
                        "otp.sms_provider = \"acs\" needs otp.acs_access_key (PASSKEY_OTP__ACS_ACCESS_KEY)".into(),
                    );
                }
            }
            SmsProvider::Twilio => {
                if !https_or_dev(&self.twilio_base_url) {
                    problems.push("otp.twilio_base_url must be https:// outside dev".into());
                }
                if missing(&self.twilio_account_sid) || missing_secret(&self.twilio_auth_token) {
                    problems.push(
                        "otp.sms_provider = \"twilio\" needs otp.twilio_account_sid and otp.twilio_auth_token"
                            .into(),
                    );
                }
            }
        }
        if self.sms_provider != SmsProvider::Console && missing(&self.sms_from) {
            problems.push(
                "otp.sms_from is required to send text messages (PASSKEY_OTP__SMS_FROM)".into(),
            );
        }
        if self.code_ttl_secs == 0
            || self.max_attempts == 0
            || self.max_sends == 0
            || self.sms_timeout_secs == 0
            || self.max_wrong_codes_per_hour == 0
            || self.invitation_ttl_secs == 0
        {
            problems.push(
                "otp.code_ttl_secs, max_attempts, max_sends, sms_timeout_secs, max_wrong_codes_per_hour and \
                 invitation_ttl_secs must be greater than 0"
                    .into(),
            );
        }
        problems
    }
}

/// Whether `url` parses and names this machine (`localhost`, 127.0.0.0/8, `::1`): the only place
/// plain http may carry a credential, and where the dev profile may be reached.
fn is_loopback_url(url: &str) -> bool {
    reqwest::Url::parse(url)
        .ok()
        .and_then(|u| u.host_str().map(str::to_ascii_lowercase))
        .is_some_and(|host| {
            host == "localhost"
                || host
                    .trim_start_matches('[')
                    .trim_end_matches(']')
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback())
        })
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
    /// Loads the layers from the process environment and the working directory.
    pub fn load() -> Result<Self, ConfigError> {
        let env: BTreeMap<String, String> = std::env::vars().collect();
        let file = match env.get("PASSKEY_CONFIG") {
            Some(path) => Some(PathBuf::from(path)),
            None => Some(PathBuf::from("passkey.toml")).filter(|p| p.exists()),
        };
        Self::from_layers(file.as_deref(), &env)
    }

    /// Builds settings from an optional TOML file and an environment map (tests pass their own).
    pub fn from_layers(
        file: Option<&Path>,
        env: &BTreeMap<String, String>,
    ) -> Result<Self, ConfigError> {
        let mut table = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.into(),
                    source,
                })?;
                text.parse::<toml::Table>()
                    .map_err(|e| ConfigError::Parse(format!("{}: {e}", path.display())))?
            }
            None => toml::Table::new(),
        };
        for (name, value) in env {
            let Some(key) = name.strip_prefix("PASSKEY_") else {
                continue;
            };
            // `PASSKEY_TEST_*` configure the test suite (its Postgres URL), not the app: a
            // developer who exports one must still be able to `cargo run`.
            if key == "CONFIG" || key.is_empty() || key.starts_with("TEST_") {
                continue;
            }
            let path: Vec<String> = key.split("__").map(|s| s.to_ascii_lowercase()).collect();
            insert_path(&mut table, &path, env_value(value))
                .map_err(|e| ConfigError::Parse(format!("{name}: {e}")))?;
        }
        if let Some(url) = env.get("DATABASE_URL").filter(|u| !u.is_empty()) {
            table.insert("database_url".into(), toml::Value::String(url.clone()));
        }
        let mut settings = Settings::deserialize(toml::Value::Table(table))
            .map_err(|e| ConfigError::Parse(e.to_string()))?;
        // Fail closed: a deployment that forgot PASSKEY_PROFILE gets production's rules (and its
        // refusals), never dev's stand-ins on a reachable address.
        if settings.profile == Profile::Dev
            && let Some(why) = settings.exposure()
        {
            settings.profile = Profile::Production;
            settings.production_because = Some(why);
        }
        Ok(settings)
    }

    /// Why these settings reach beyond this machine: a listen address or public URL that is not
    /// loopback. The dev profile's stand-ins (local vault, console SMS, dev sign-in, cookies
    /// without `Secure`) are only safe when nothing else can connect.
    pub fn exposure(&self) -> Option<String> {
        if !self.bind.ip().is_loopback() {
            return Some(format!("bind {} is not a loopback address", self.bind));
        }
        let url = self.public_url.as_deref().filter(|u| !u.is_empty())?;
        (!is_loopback_url(url)).then(|| format!("public_url {url} is not a loopback address"))
    }

    /// A key said to be in Key Vault without its name or the vault's URL.
    fn key_vault_key_missing(&self, protection: KeyProtection, key: &Option<String>) -> bool {
        let unset = |v: &Option<String>| v.as_deref().is_none_or(str::is_empty);
        protection == KeyProtection::KeyVault && (unset(key) || unset(&self.azure.key_vault_url))
    }

    /// (#21.1) Where records come from with the Commander backends: KSM when `vault.ksm_config` is
    /// set, else Commander's own `list`. Commander alone is a complete source; a KSM setting that
    /// is set but cannot work is not (every sync would fail), so it is refused rather than
    /// silently ignored — in any profile, since the vault bridge could not be built from it.
    fn record_source_problems(&self) -> Vec<String> {
        if !matches!(
            self.vault.backend,
            VaultBackend::CommanderService | VaultBackend::CommanderCli
        ) {
            return Vec::new();
        }
        let Some(config) = &self.vault.ksm_config else {
            return Vec::new();
        };
        let unset_it = "unset it to read records through Commander's `list`, or set the KSM \
                        application's configuration (base64 or JSON)";
        if config.expose_secret().trim().is_empty() {
            return vec![format!(
                "vault.ksm_config (PASSKEY_VAULT__KSM_CONFIG) is set but empty, so no record could be read; {unset_it}"
            )];
        }
        // A `kv:` reference is resolved later (and reported above when it was not).
        if config
            .expose_secret()
            .starts_with(crate::azure::secrets::REFERENCE_PREFIX)
        {
            return Vec::new();
        }
        match crate::vault::ksm::CrateKsm::from_config(config) {
            Ok(_) => Vec::new(),
            Err(_) => vec![format!(
                "vault.ksm_config (PASSKEY_VAULT__KSM_CONFIG) is not a KSM application configuration, so no \
                 record could be read; {unset_it}"
            )],
        }
    }

    /// Refuses combinations that are unsafe to run, naming every problem at once.
    pub fn check(&self) -> Result<(), ConfigError> {
        let mut problems = Vec::new();
        let dev_channel_auth = self.bot.app_id.as_deref().is_none_or(str::is_empty);
        if dev_channel_auth && !self.bind.ip().is_loopback() {
            problems.push(format!(
                "dev channel auth (no bot.app_id) accepts unauthenticated activities, so it only listens on \
                 loopback; {} is not loopback. Set PASSKEY_BOT__APP_ID and PASSKEY_BOT__APP_PASSWORD, or bind 127.0.0.1",
                self.bind
            ));
        }
        if !(3..=3600).contains(&self.bot.turn_claim_secs) {
            problems.push(format!(
                "bot.turn_claim_secs must be between 3 and 3600 (seconds a turn holds its activity), not {}",
                self.bot.turn_claim_secs
            ));
        }
        let mut copy = self.clone();
        for r in crate::azure::secrets::references(&mut copy) {
            problems.push(format!(
                "{} = {} is a Key Vault reference that was not resolved (azure.key_vault_url: {})",
                r.setting,
                r.reference,
                self.azure.key_vault_url.as_deref().unwrap_or("not set")
            ));
        }
        if let Some(url) = self
            .azure
            .key_vault_url
            .as_deref()
            .filter(|u| !u.is_empty())
            && !url.starts_with("https://")
        {
            problems.push(format!(
                "azure.key_vault_url must be an https:// vault URL (Key Vault tokens are never sent over plain http), not {url}"
            ));
        }
        if self.key_vault_key_missing(self.crypto.key_wrapper, &self.crypto.key_vault_key) {
            problems.push(
                "crypto.key_wrapper = \"key-vault\" needs crypto.key_vault_key and azure.key_vault_url".into(),
            );
        }
        if self.key_vault_key_missing(self.audit.signer, &self.audit.key_vault_key) {
            problems.push(
                "audit.signer = \"key-vault\" needs audit.key_vault_key and azure.key_vault_url"
                    .into(),
            );
        }
        if self.http.body_limit_bytes == 0 {
            problems.push("http.body_limit_bytes must be greater than 0".into());
        }
        let a = &self.audit;
        if a.checkpoint_every_events == 0
            || a.checkpoint_every_secs == 0
            || a.verify_every_secs == 0
        {
            problems.push(
                "audit.checkpoint_every_events, checkpoint_every_secs and verify_every_secs must be greater than 0".into(),
            );
        }
        let l = &self.lifecycle;
        if l.tick_secs == 0 || l.vault_sync_secs == 0 || l.issuance_token_ttl_secs == 0 {
            problems.push(
                "lifecycle.tick_secs, vault_sync_secs and issuance_token_ttl_secs must be greater than 0".into(),
            );
        }
        if !(l.reminder_after_secs <= l.escalate_after_secs
            && l.escalate_after_secs <= l.undecided_ttl_secs)
        {
            problems.push(
                "lifecycle: reminder_after_secs ≤ escalate_after_secs ≤ undecided_ttl_secs must hold".into(),
            );
        }
        if self.profile == Profile::Production {
            if dev_channel_auth {
                problems.push("production needs bot.app_id (PASSKEY_BOT__APP_ID)".into());
            }
            if self.bot.connector_auth == ConnectorAuth::Secret
                && self
                    .bot
                    .app_password
                    .as_ref()
                    .is_none_or(|p| p.expose_secret().is_empty())
            {
                problems.push(
                    "production needs bot.app_password (PASSKEY_BOT__APP_PASSWORD) or \
                         bot.connector_auth = \"managed-identity\""
                        .into(),
                );
            }
            if self.bot.allowed_tenants.is_empty() {
                problems.push(
                    "production needs bot.allowed_tenants: the Teams tenants this bot serves"
                        .into(),
                );
            }
            match self.vault.backend {
                VaultBackend::Local => problems.push(
                    "production cannot use the local demo vault (vault.backend = \"local\", PASSKEY_VAULT__BACKEND): \
                     its records are the demo set; use commander-service or commander-cli"
                        .into(),
                ),
                VaultBackend::Stub => problems.push(
                    "production cannot use the staging stub vault (vault.backend = \"stub\", PASSKEY_VAULT__BACKEND): \
                     its records are a file and its links are fake; use commander-service or commander-cli"
                        .into(),
                ),
                VaultBackend::CommanderService => {
                    match self.vault.commander_url.as_deref().filter(|u| !u.is_empty()) {
                        None => problems.push(
                            "vault.backend = \"commander-service\" needs vault.commander_url (PASSKEY_VAULT__COMMANDER_URL)"
                                .into(),
                        ),
                        // Every call carries the service-mode API key.
                        Some(url)
                            if !(url.starts_with("https://")
                                || (url.starts_with("http://") && is_loopback_url(url))) =>
                        {
                            problems.push(format!(
                                "vault.commander_url must be https:// (or http:// on loopback) in production: \
                                 it carries the Commander API key (got {url})"
                            ))
                        }
                        Some(_) => {}
                    }
                    if self
                        .vault
                        .commander_api_key
                        .as_ref()
                        .is_none_or(|k| k.expose_secret().is_empty())
                    {
                        problems.push(
                            "vault.backend = \"commander-service\" needs vault.commander_api_key \
                             (PASSKEY_VAULT__COMMANDER_API_KEY)"
                                .into(),
                        );
                    }
                }
                VaultBackend::CommanderCli => {
                    if self
                        .vault
                        .commander_config_path
                        .as_ref()
                        .is_none_or(|p| p.as_os_str().is_empty())
                    {
                        problems.push(
                            "vault.backend = \"commander-cli\" needs vault.commander_config_path \
                             (PASSKEY_VAULT__COMMANDER_CONFIG_PATH)"
                                .into(),
                        );
                    }
                }
            }
        }
        problems.extend(self.record_source_problems());
        problems.extend(self.web_problems());
        if self.graph.enabled {
            // Graph needs an app token from the home tenant: the bot's identity, single-tenant.
            if dev_channel_auth || self.bot.tenant_id.as_deref().is_none_or(str::is_empty) {
                problems.push(
                    "graph.enabled needs bot.app_id and bot.tenant_id (Graph tokens come from the home tenant)"
                        .into(),
                );
            }
            if self.bot.connector_auth == ConnectorAuth::Secret
                && self
                    .bot
                    .app_password
                    .as_ref()
                    .is_none_or(|p| p.expose_secret().is_empty())
            {
                problems.push(
                    "graph.enabled needs bot.app_password or bot.connector_auth = \"managed-identity\""
                        .into(),
                );
            }
            if !(self.graph.base_url.starts_with("https://")
                || (self.profile == Profile::Dev && self.graph.base_url.starts_with("http://")))
            {
                problems.push(format!(
                    "graph.base_url must be https:// outside dev (got {})",
                    self.graph.base_url
                ));
            }
        }
        problems.extend(self.otp.problems(self.profile));
        if self.graph.install_app {
            if !self.graph.enabled {
                problems.push("graph.install_app needs graph.enabled".into());
            }
            match self.graph.teams_app_catalog_id.as_deref() {
                Some(id) if is_catalog_id(id) => {}
                Some(id) => problems.push(format!(
                    "graph.teams_app_catalog_id must be the app's catalog id (letters, digits and '-'), got {id:?}"
                )),
                None => problems.push(
                    "graph.install_app needs graph.teams_app_catalog_id (the app's id in the Teams app catalog)"
                        .into(),
                ),
            }
        }
        if let Some(url) = &self.bot.service_url
            && !(url.starts_with("https://")
                || (self.profile == Profile::Dev && url.starts_with("http://")))
        {
            problems.push(format!(
                "bot.service_url must be https:// outside dev (got {url})"
            ));
        }
        for entry in &self.bot.connector_hosts {
            use crate::bot::connector::HostPattern;
            match HostPattern::parse(entry) {
                Err(e) => problems.push(format!("bot.connector_hosts: {e}")),
                Ok(pattern) if pattern.is_loopback() && self.profile == Profile::Production => {
                    problems.push(format!(
                        "bot.connector_hosts: {entry} is loopback, which production never sends the Connector token to"
                    ))
                }
                Ok(_) => {}
            }
        }
        if let Some(url) = self.proactive_service_url()
            && let Err(refused) =
                crate::bot::connector::ConnectorHosts::from_settings(self).check(&url)
        {
            problems.push(format!(
                "bot.service_url {url} is refused: {refused}; add its host to bot.connector_hosts if it really is a Bot Framework Connector"
            ));
        }
        if self.profile == Profile::Production {
            if self.public_url.as_deref().is_none_or(str::is_empty) {
                problems.push(
                    "production needs public_url (PASSKEY_PUBLIC_URL): the https address people's browsers reach, \
                     for sign-in redirects, chat links and Secure cookies"
                        .into(),
                );
            }
            // Each of these carries the app password or decides which signing keys are trusted.
            for (setting, url) in [
                ("bot.openid_metadata_url", &self.bot.openid_metadata_url),
                (
                    "bot.entra_openid_metadata_url",
                    &self.bot.entra_openid_metadata_url,
                ),
                ("bot.oauth_authority", &self.bot.oauth_authority),
            ] {
                if !url.starts_with("https://") {
                    problems.push(format!(
                        "{setting} must be https:// in production: it carries or vouches for a secret (got {url})"
                    ));
                }
            }
        }
        if let Some(url) = self.public_url.as_ref().filter(|u| !u.is_empty())
            && !(url.starts_with("https://")
                || (self.profile == Profile::Dev && url.starts_with("http://")))
        {
            problems.push(format!(
                "public_url must be https:// outside dev (got {url})"
            ));
        }
        if problems.is_empty() {
            return Ok(());
        }
        if let Some(why) = &self.production_because {
            problems.insert(
                0,
                format!(
                    "production rules apply because {why} (the dev profile runs on loopback only): fix \
                     each problem below, or bind 127.0.0.1 for local development"
                ),
            );
        }
        Err(ConfigError::Unsafe(problems))
    }

    /// The issuance page's settings that cannot work or are unsafe.
    fn web_problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        let w = &self.web;
        if w.session_ttl_secs == 0
            || w.rate_per_user_per_minute == 0
            || w.rate_per_ip_per_minute == 0
        {
            problems.push(
                "web.session_ttl_secs, rate_per_user_per_minute and rate_per_ip_per_minute must be greater than 0"
                    .into(),
            );
        }
        if w.forwarded_for_hops == 0 {
            problems.push(
                "web.forwarded_for_hops must be at least 1: the number of proxies in front of Passkey \
                 that append to X-Forwarded-For (turn web.trust_forwarded_for off to ignore the header)"
                    .into(),
            );
        }
        if let Some(key) = &w.session_key {
            use base64::Engine as _;
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(key.expose_secret().trim())
                .or_else(|_| {
                    base64::engine::general_purpose::URL_SAFE_NO_PAD
                        .decode(key.expose_secret().trim())
                });
            if decoded.map_or(true, |k| k.len() < 32) {
                problems.push("web.session_key must be base64 of at least 32 random bytes".into());
            }
        }
        let o = &w.oidc;
        if w.oidc_enabled() {
            if o.tenant_id.as_deref().is_none_or(str::is_empty) {
                problems.push(
                    "web.oidc.client_id needs web.oidc.tenant_id (PASSKEY_WEB__OIDC__TENANT_ID)"
                        .into(),
                );
            }
            if o.client_secret
                .as_ref()
                .is_none_or(|s| s.expose_secret().is_empty())
            {
                problems.push(
                    "web.oidc.client_id needs web.oidc.client_secret (PASSKEY_WEB__OIDC__CLIENT_SECRET)".into(),
                );
            }
            if self.sign_in_tenants().is_empty() && self.profile == Profile::Production {
                problems.push(
                    "web sign-in needs allowed tenants: web.oidc.allowed_tenants or bot.allowed_tenants".into(),
                );
            }
            if !(o.authority.starts_with("https://")
                || (self.profile == Profile::Dev && o.authority.starts_with("http://")))
            {
                problems.push(format!(
                    "web.oidc.authority must be https:// outside dev (got {})",
                    o.authority
                ));
            }
        } else if self.profile == Profile::Production {
            problems.push(
                "production needs Entra sign-in for the issuance page: web.oidc.client_id, client_secret and tenant_id"
                    .into(),
            );
        } else if !self.bind.ip().is_loopback() {
            problems.push(format!(
                "the dev sign-in page lets anyone pick a user, so it only listens on loopback; {} is not loopback. \
                 Configure web.oidc, or bind 127.0.0.1",
                self.bind
            ));
        }
        problems
    }

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

    /// The effective settings as TOML-ish lines with every secret replaced by `[REDACTED]`.
    pub fn redacted_summary(&self) -> Vec<(String, String)> {
        // A Key Vault reference is a name, not a secret: showing it helps find a missing one.
        let secret = |s: &Option<SecretString>| match s {
            Some(v) if crate::azure::secrets::reference_name(v.expose_secret()).is_some() => {
                v.expose_secret().to_string()
            }
            Some(_) => "[REDACTED]".to_string(),
            None => "(unset)".to_string(),
        };
        let opt = |s: &Option<String>| s.clone().unwrap_or_else(|| "(unset)".into());
        vec![
            (
                "profile".into(),
                match &self.production_because {
                    Some(why) => format!("production (dev overruled: {why})"),
                    None => spelling(&self.profile),
                },
            ),
            ("bind".into(), self.bind.to_string()),
            ("public_url".into(), self.public_base_url()),
            ("data_dir".into(), self.data_dir.display().to_string()),
            ("database".into(), self.database_label()),
            (
                "database_max_connections".into(),
                self.database_max_connections.to_string(),
            ),
            ("demo_data".into(), self.demo_data.to_string()),
            ("log.format".into(), spelling(&self.log_format())),
            ("log.filter".into(), self.log.filter.clone()),
            (
                "http.body_limit_bytes".into(),
                self.http.body_limit_bytes.to_string(),
            ),
            ("azure.credential".into(), spelling(&self.azure.credential)),
            ("azure.client_id".into(), opt(&self.azure.client_id)),
            ("azure.key_vault_url".into(), opt(&self.azure.key_vault_url)),
            (
                "crypto.key_wrapper".into(),
                spelling(&self.crypto.key_wrapper),
            ),
            (
                "crypto.key_vault_key".into(),
                opt(&self.crypto.key_vault_key),
            ),
            ("audit.signer".into(), spelling(&self.audit.signer)),
            ("audit.key_vault_key".into(), opt(&self.audit.key_vault_key)),
            ("bot.app_id".into(), opt(&self.bot.app_id)),
            (
                "bot.connector_auth".into(),
                spelling(&self.bot.connector_auth),
            ),
            ("bot.app_password".into(), secret(&self.bot.app_password)),
            ("bot.tenant_id".into(), opt(&self.bot.tenant_id)),
            (
                "bot.allowed_tenants".into(),
                format!("{:?}", self.bot.allowed_tenants),
            ),
            (
                "bot.openid_metadata_url".into(),
                self.bot.openid_metadata_url.clone(),
            ),
            (
                "bot.channel_auth".into(),
                if self.dev_channel_auth() {
                    "dev (off)"
                } else {
                    "on"
                }
                .into(),
            ),
            ("graph.enabled".into(), self.graph.enabled.to_string()),
            ("graph.base_url".into(), self.graph.base_url.clone()),
            (
                "graph.install_app".into(),
                self.graph.install_app.to_string(),
            ),
            (
                "graph.teams_app_catalog_id".into(),
                opt(&self.graph.teams_app_catalog_id),
            ),
            (
                "bot.service_url".into(),
                self.proactive_service_url()
                    .unwrap_or_else(|| "(unset: no proactive chats)".into()),
            ),
            (
                "bot.connector_hosts".into(),
                format!(
                    "Bot Framework's{}{}",
                    if self.bot.connector_hosts.is_empty() {
                        String::new()
                    } else {
                        format!(" + {:?}", self.bot.connector_hosts)
                    },
                    if self.dev_channel_auth() {
                        " + loopback (dev)"
                    } else {
                        ""
                    }
                ),
            ),
            ("vault.backend".into(), spelling(&self.vault.backend)),
            ("vault.commander_url".into(), opt(&self.vault.commander_url)),
            (
                "vault.commander_api_key".into(),
                secret(&self.vault.commander_api_key),
            ),
            ("vault.ksm_config".into(), secret(&self.vault.ksm_config)),
            (
                "vault.commander_binary".into(),
                self.vault.commander_binary.display().to_string(),
            ),
            (
                "vault.commander_config_path".into(),
                self.vault
                    .commander_config_path
                    .as_ref()
                    .map_or_else(|| "(unset)".into(), |p| p.display().to_string()),
            ),
            (
                "vault.commander_timeout_secs".into(),
                self.vault.commander_timeout().as_secs().to_string(),
            ),
            ("web.session_key".into(), secret(&self.web.session_key)),
            (
                "web.session_ttl_secs".into(),
                self.web.session_ttl_secs.to_string(),
            ),
            (
                "web.sign_in".into(),
                if self.web.oidc_enabled() {
                    "entra"
                } else {
                    "dev (loopback only)"
                }
                .into(),
            ),
            ("web.oidc.authority".into(), self.web.oidc.authority.clone()),
            ("web.oidc.tenant_id".into(), opt(&self.web.oidc.tenant_id)),
            ("web.oidc.client_id".into(), opt(&self.web.oidc.client_id)),
            (
                "web.oidc.client_secret".into(),
                secret(&self.web.oidc.client_secret),
            ),
            (
                "web.client_address".into(),
                if self.web.trust_forwarded_for {
                    format!(
                        "X-Forwarded-For, entry {} from the right",
                        self.web.forwarded_for_hops
                    )
                } else {
                    "the peer address".into()
                },
            ),
            (
                "web.rate_limits".into(),
                format!(
                    "{}/min per person, {}/min per address (per instance)",
                    self.web.rate_per_user_per_minute, self.web.rate_per_ip_per_minute
                ),
            ),
            ("otp.sms_provider".into(), spelling(&self.otp.sms_provider)),
            ("otp.sms_from".into(), opt(&self.otp.sms_from)),
            ("otp.acs_endpoint".into(), opt(&self.otp.acs_endpoint)),
            (
                "otp.acs_access_key".into(),
                secret(&self.otp.acs_access_key),
            ),
            (
                "otp.twilio_base_url".into(),
                self.otp.twilio_base_url.clone(),
            ),
            (
                "otp.twilio_account_sid".into(),
                opt(&self.otp.twilio_account_sid),
            ),
            (
                "otp.twilio_auth_token".into(),
                secret(&self.otp.twilio_auth_token),
            ),
        ]
    }
}

/// A Teams app catalog id goes into a Graph URL: a GUID-like word, nothing else.
fn is_catalog_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 64 && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
}

/// `postgres://user:pass@host:5432/db` → `postgres host:5432/db`; `sqlite://path` → `sqlite path`.
pub fn describe_database_url(url: &str) -> String {
    if crate::azure::secrets::reference_name(url).is_some() {
        return format!("Key Vault reference {url}");
    }
    if let Some(path) = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
    {
        return format!("sqlite {path}");
    }
    if let Some(rest) = url
        .strip_prefix("postgres://")
        .or_else(|| url.strip_prefix("postgresql://"))
    {
        let after_credentials = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
        let without_query = after_credentials.split('?').next().unwrap_or_default();
        return format!("postgres {without_query}");
    }
    "unrecognised database URL".into()
}

/// Environment values are strings, except the words true/false, which are booleans.
fn env_value(raw: &str) -> toml::Value {
    match raw {
        "true" => toml::Value::Boolean(true),
        "false" => toml::Value::Boolean(false),
        other => toml::Value::String(other.to_string()),
    }
}

fn insert_path(table: &mut toml::Table, path: &[String], value: toml::Value) -> Result<(), String> {
    let (last, parents) = path.split_last().ok_or("empty key")?;
    let mut current = table;
    for part in parents {
        let entry = current
            .entry(part.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        current = entry
            .as_table_mut()
            .ok_or_else(|| format!("`{part}` is not a section"))?;
    }
    current.insert(last.clone(), value);
    Ok(())
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
mod tests {
    /// Every setting, as `section.name` keys, read from this file's settings structs (a nested
    /// `…Settings` struct is a section). `#[serde(skip)]` fields are not settings.
    fn every_setting_key() -> Vec<String> {
        let source = include_str!("mod.rs");
        let fields = |name: &str| -> Vec<(String, String)> {
            let start = source
                .find(&format!("pub struct {name} {{"))
                .unwrap_or_else(|| panic!("no struct {name}"));
            let mut out = Vec::new();
            let mut skipped = false;
            for line in source[start..].lines().skip(1) {
                let line = line.trim();
                if line == "}" {
                    break;
                }
                if line.starts_with("#[serde(skip") {
                    skipped = true;
                }
                if let Some(rest) = line.strip_prefix("pub ")
                    && let Some((field, ty)) = rest.split_once(": ")
                {
                    if !skipped {
                        out.push((field.to_string(), ty.trim_end_matches(',').to_string()));
                    }
                    skipped = false;
                }
            }
            out
        };
        fn walk(
            prefix: &str,
            name: &str,
            fields: &dyn Fn(&str) -> Vec<(String, String)>,
            out: &mut Vec<String>,
        ) {
            for (field, ty) in fields(name) {
                let key = format!("{prefix}{field}");
                if ty.ends_with("Settings") {
                    walk(&format!("{key}."), &ty, fields, out);
                } else {
                    out.push(key);
                }
            }
        }
        let mut keys = Vec::new();
        walk("", "Settings", &fields, &mut keys);
        keys
    }

    /// The README's configuration table names every setting (#21.5): a new one cannot ship
    /// undocumented.
    #[test]
    fn the_production_guide_configures_only_real_settings_and_lacks_only_its_secrets() {
        let guide = include_str!("../../docs/PRODUCTION.md");
        let start = guide.find("```toml\n").expect("a toml block") + "```toml\n".len();
        let toml = &guide[start..start + guide[start..].find("```").unwrap()];
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("passkey.toml");
        std::fs::write(&path, toml).unwrap();
        // Unknown keys are errors: every key the guide names is a real setting.
        let s = Settings::from_layers(Some(&path), &BTreeMap::new()).unwrap();
        assert_eq!(s.profile, Profile::Production);
        // What stops it is only the Key Vault references, which start-up resolves first.
        let ConfigError::Unsafe(problems) = s.check().unwrap_err() else {
            panic!("not a refusal")
        };
        assert!(
            problems
                .iter()
                .all(|p| p.contains("is a Key Vault reference that was not resolved")),
            "{problems:#?}"
        );
        assert_eq!(problems.len(), 5, "{problems:#?}");
    }

    #[test]
    fn the_readme_configuration_table_lists_every_setting() {
        let readme = include_str!("../../README.md");
        let keys = every_setting_key();
        assert!(keys.iter().any(|k| k == "lifecycle.tick_secs"), "{keys:?}");
        assert!(keys.iter().any(|k| k == "web.oidc.client_id"), "{keys:?}");
        let missing: Vec<&String> = keys
            .iter()
            .filter(|k| !readme.contains(&format!("| `{k}` |")))
            .collect();
        assert!(missing.is_empty(), "not in the README table: {missing:?}");
    }

    use super::*;

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_are_a_loopback_dev_server_on_sqlite() {
        let s = Settings::from_layers(None, &env(&[])).unwrap();
        assert_eq!(s.bind.to_string(), "127.0.0.1:3978");
        assert_eq!(s.profile, Profile::Dev);
        assert!(s.dev_channel_auth());
        assert_eq!(s.database_label(), "sqlite data/passkey.db");
        assert_eq!(s.log_format(), LogFormat::Pretty);
        s.check().unwrap();
    }

    #[test]
    fn environment_beats_file_beats_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("passkey.toml");
        std::fs::write(
            &file,
            "bind = \"127.0.0.1:4000\"\ndata_dir = \"/tmp/pk\"\n[http]\nbody_limit_bytes = 1000\n[bot]\nallowed_tenants = [\"t1\"]\n",
        )
        .unwrap();
        let s = Settings::from_layers(
            Some(&file),
            &env(&[
                ("PASSKEY_BIND", "127.0.0.1:5000"),
                ("PASSKEY_HTTP__BODY_LIMIT_BYTES", "2048"),
                ("PASSKEY_BOT__ALLOWED_TENANTS", "a, b"),
                ("PASSKEY_DEMO_DATA", "false"),
                ("UNRELATED", "x"),
            ]),
        )
        .unwrap();
        assert_eq!(s.bind.to_string(), "127.0.0.1:5000");
        assert_eq!(s.data_dir, PathBuf::from("/tmp/pk"));
        assert_eq!(s.http.body_limit_bytes, 2048);
        assert_eq!(s.bot.allowed_tenants, vec!["a", "b"]);
        assert!(!s.demo_data);
    }

    #[test]
    fn database_url_selects_postgres_and_never_prints_the_password() {
        let s = Settings::from_layers(
            None,
            &env(&[(
                "DATABASE_URL",
                "postgres://app:hunter2@db.internal:5432/passkey",
            )]),
        )
        .unwrap();
        assert_eq!(s.database_label(), "postgres db.internal:5432/passkey");
        let debug = format!("{s:?}");
        assert!(
            !debug.contains("hunter2"),
            "Debug leaked the password: {debug}"
        );
        let summary = format!("{:?}", s.redacted_summary());
        assert!(!summary.contains("hunter2"));
    }

    #[test]
    fn secrets_are_redacted_in_debug_and_summary() {
        let s = Settings::from_layers(None, &env(&[("PASSKEY_BOT__APP_PASSWORD", "s3cr3t-value")]))
            .unwrap();
        assert!(!format!("{s:?}").contains("s3cr3t-value"));
        let summary = s.redacted_summary();
        assert!(
            summary
                .iter()
                .any(|(k, v)| k == "bot.app_password" && v == "[REDACTED]")
        );
    }

    #[test]
    fn unknown_keys_and_bad_values_are_named() {
        let tests_own = Settings::from_layers(
            None,
            &env(&[(
                "PASSKEY_TEST_DATABASE_URL",
                "postgres://postgres@127.0.0.1:5432/postgres",
            )]),
        )
        .expect("the test suite's own variable is not a setting");
        assert!(tests_own.database_url.is_none());
        let err = Settings::from_layers(None, &env(&[("PASSKEY_BINDD", "x")])).unwrap_err();
        assert!(err.to_string().contains("bindd"), "{err}");
        let err = Settings::from_layers(None, &env(&[("PASSKEY_HTTP__BODY_LIMIT_BYTES", "lots")]))
            .unwrap_err();
        assert!(err.to_string().contains("`lots` is not a number"), "{err}");
        let err = Settings::from_layers(None, &env(&[("PASSKEY_PROFILE", "staging")])).unwrap_err();
        assert!(err.to_string().contains("staging"), "{err}");
    }

    #[test]
    fn dev_channel_auth_is_refused_off_loopback() {
        let s = Settings::from_layers(None, &env(&[("PASSKEY_BIND", "0.0.0.0:3978")])).unwrap();
        let err = s.check().unwrap_err().to_string();
        assert!(err.contains("only listens on loopback"), "{err}");
        // With an app id and sign-in the same address is still refused unless the rest of
        // production is configured: forgetting PASSKEY_PROFILE never runs dev's stand-ins there.
        let s = Settings::from_layers(
            None,
            &env(&[
                ("PASSKEY_BIND", "0.0.0.0:3978"),
                (
                    "PASSKEY_BOT__APP_ID",
                    "00000000-0000-0000-0000-000000000001",
                ),
                ("PASSKEY_WEB__OIDC__CLIENT_ID", "web-app"),
                ("PASSKEY_WEB__OIDC__CLIENT_SECRET", "web-secret"),
                ("PASSKEY_WEB__OIDC__TENANT_ID", "tenant-1"),
            ]),
        )
        .unwrap();
        assert_eq!(s.profile, Profile::Production);
        let err = s.check().unwrap_err().to_string();
        for needle in [
            "bot.app_password",
            "bot.allowed_tenants",
            "local demo vault",
            "console SMS",
        ] {
            assert!(err.contains(needle), "missing {needle}: {err}");
        }
    }

    #[test]
    fn graph_is_off_by_default_and_needs_the_bots_identity_and_tenant_when_on() {
        let s = Settings::from_layers(None, &env(&[])).unwrap();
        assert!(!s.graph.enabled);
        assert_eq!(s.graph.base_url, "https://graph.microsoft.com");
        let s = Settings::from_layers(None, &env(&[("PASSKEY_GRAPH__ENABLED", "true")])).unwrap();
        let err = s.check().unwrap_err().to_string();
        assert!(
            err.contains("graph.enabled needs bot.app_id and bot.tenant_id"),
            "{err}"
        );
        let s = Settings::from_layers(
            None,
            &env(&[
                ("PASSKEY_GRAPH__ENABLED", "true"),
                ("PASSKEY_GRAPH__BASE_URL", "http://127.0.0.1:9"),
                ("PASSKEY_BOT__APP_ID", "app"),
                ("PASSKEY_BOT__APP_PASSWORD", "pw"),
                ("PASSKEY_BOT__TENANT_ID", "tenant-1"),
            ]),
        )
        .unwrap();
        s.check().unwrap();
    }

    #[test]
    fn installing_the_app_needs_graph_and_a_clean_catalog_id_and_chats_open_only_when_asked() {
        let base = [
            ("PASSKEY_BOT__APP_ID", "app"),
            ("PASSKEY_BOT__APP_PASSWORD", "pw"),
            ("PASSKEY_BOT__TENANT_ID", "tenant-1"),
        ];
        let with = |extra: &[(&'static str, &'static str)]| {
            let mut pairs = base.to_vec();
            pairs.extend_from_slice(extra);
            Settings::from_layers(None, &env(&pairs)).unwrap()
        };
        let err = with(&[("PASSKEY_GRAPH__INSTALL_APP", "true")])
            .check()
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("graph.install_app needs graph.enabled"),
            "{err}"
        );
        assert!(
            err.contains("graph.install_app needs graph.teams_app_catalog_id"),
            "{err}"
        );
        let err = with(&[
            ("PASSKEY_GRAPH__ENABLED", "true"),
            ("PASSKEY_GRAPH__INSTALL_APP", "true"),
            ("PASSKEY_GRAPH__TEAMS_APP_CATALOG_ID", "../../me"),
        ])
        .check()
        .unwrap_err()
        .to_string();
        assert!(err.contains("graph.teams_app_catalog_id must be"), "{err}");
        let s = with(&[
            ("PASSKEY_GRAPH__ENABLED", "true"),
            ("PASSKEY_GRAPH__INSTALL_APP", "true"),
            (
                "PASSKEY_GRAPH__TEAMS_APP_CATALOG_ID",
                "1542629c-01b3-4a6d-8f76-1938b779e48d",
            ),
        ]);
        s.check().unwrap();
        assert_eq!(
            s.install_app_catalog_id().as_deref(),
            Some("1542629c-01b3-4a6d-8f76-1938b779e48d")
        );
        // With an app id, chats open through the Teams-wide Connector unless told otherwise.
        assert_eq!(
            s.proactive_service_url().as_deref(),
            Some(DEFAULT_SERVICE_URL)
        );
        // Dev mode opens none unless a service URL is configured.
        let dev = Settings::from_layers(None, &env(&[])).unwrap();
        assert_eq!(dev.proactive_service_url(), None);
        assert_eq!(dev.install_app_catalog_id(), None);
        let dev = Settings::from_layers(
            None,
            &env(&[("PASSKEY_BOT__SERVICE_URL", "http://127.0.0.1:9/connector/")]),
        )
        .unwrap();
        dev.check().unwrap();
        assert_eq!(
            dev.proactive_service_url().as_deref(),
            Some("http://127.0.0.1:9/connector/")
        );
        let prod_http = with(&[
            ("PASSKEY_PROFILE", "production"),
            ("PASSKEY_BOT__SERVICE_URL", "http://smba.example/"),
        ]);
        let err = prod_http.check().unwrap_err().to_string();
        assert!(err.contains("bot.service_url must be https://"), "{err}");
    }

    #[test]
    fn key_vault_references_are_named_in_the_summary_and_refused_unresolved() {
        let s = Settings::from_layers(
            None,
            &env(&[
                ("PASSKEY_BOT__APP_PASSWORD", "kv:BOT-APP-PASSWORD"),
                ("PASSKEY_AZURE__CREDENTIAL", "developer"),
                ("PASSKEY_AZURE__KEY_VAULT_URL", "http://kv.example.test/"),
            ]),
        )
        .unwrap();
        assert_eq!(s.azure.credential, AzureCredentialKind::Developer);
        let summary = s.redacted_summary();
        assert!(
            summary
                .iter()
                .any(|(k, v)| k == "bot.app_password" && v == "kv:BOT-APP-PASSWORD")
        );
        let err = s.check().unwrap_err().to_string();
        assert!(
            err.contains("bot.app_password = kv:BOT-APP-PASSWORD is a Key Vault reference that was not resolved"),
            "{err}"
        );
        assert!(
            err.contains("azure.key_vault_url must be an https://"),
            "{err}"
        );
        let wrapper =
            Settings::from_layers(None, &env(&[("PASSKEY_CRYPTO__KEY_WRAPPER", "key-vault")]))
                .unwrap();
        let err = wrapper.check().unwrap_err().to_string();
        assert!(
            err.contains("crypto.key_wrapper = \"key-vault\" needs crypto.key_vault_key and azure.key_vault_url"),
            "{err}"
        );
        let signer =
            Settings::from_layers(None, &env(&[("PASSKEY_AUDIT__SIGNER", "key-vault")])).unwrap();
        let err = signer.check().unwrap_err().to_string();
        assert!(
            err.contains(
                "audit.signer = \"key-vault\" needs audit.key_vault_key and azure.key_vault_url"
            ),
            "{err}"
        );
        let bad = Settings::from_layers(
            None,
            &env(&[("PASSKEY_AZURE__CREDENTIAL", "client-secret")]),
        );
        assert!(
            bad.is_err(),
            "only the identities without a secret are accepted"
        );
    }

    #[test]
    fn production_may_use_a_managed_identity_instead_of_an_app_password() {
        let s = Settings::from_layers(
            None,
            &env(&[
                ("PASSKEY_PROFILE", "production"),
                ("PASSKEY_BOT__APP_ID", "app"),
                ("PASSKEY_BOT__CONNECTOR_AUTH", "managed-identity"),
                ("PASSKEY_BOT__ALLOWED_TENANTS", "tenant-1"),
                ("PASSKEY_WEB__OIDC__CLIENT_ID", "web-app"),
                ("PASSKEY_WEB__OIDC__CLIENT_SECRET", "web-secret"),
                ("PASSKEY_WEB__OIDC__TENANT_ID", "tenant-1"),
                ("PASSKEY_VAULT__BACKEND", "commander-cli"),
                (
                    "PASSKEY_VAULT__COMMANDER_CONFIG_PATH",
                    "/etc/passkey/keeper.json",
                ),
                ("PASSKEY_OTP__SMS_PROVIDER", "acs"),
                (
                    "PASSKEY_OTP__ACS_ENDPOINT",
                    "https://contoso.communication.azure.com",
                ),
                ("PASSKEY_OTP__ACS_ACCESS_KEY", "a2V5"),
                ("PASSKEY_OTP__SMS_FROM", "+18005550100"),
                ("PASSKEY_PUBLIC_URL", "https://passkey.contoso.example"),
            ]),
        )
        .unwrap();
        s.check().unwrap();
        assert_eq!(s.bot.connector_auth, ConnectorAuth::ManagedIdentity);
    }

    #[test]
    fn connector_hosts_are_checked_and_the_service_url_must_be_one() {
        let with_app = |extra: &[(&str, &str)]| {
            let mut pairs = vec![
                ("PASSKEY_BOT__APP_ID", "app"),
                ("PASSKEY_BOT__APP_PASSWORD", "pw"),
            ];
            pairs.extend_from_slice(extra);
            Settings::from_layers(None, &env(&pairs)).unwrap()
        };
        // The default service URL and the Teams government ones pass.
        with_app(&[]).check().unwrap();
        with_app(&[(
            "PASSKEY_BOT__SERVICE_URL",
            "https://smba.infra.gov.teams.microsoft.us/teams",
        )])
        .check()
        .unwrap();
        let err = with_app(&[(
            "PASSKEY_BOT__SERVICE_URL",
            "https://connector.evil.example/",
        )])
        .check()
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("bot.service_url https://connector.evil.example/ is refused"),
            "{err}"
        );
        // Loopback only when listed (dev profile), and never in production.
        let err = with_app(&[("PASSKEY_BOT__SERVICE_URL", "http://127.0.0.1:9/")])
            .check()
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("bot.service_url http://127.0.0.1:9/ is refused"),
            "{err}"
        );
        with_app(&[
            ("PASSKEY_BOT__SERVICE_URL", "http://127.0.0.1:9/"),
            ("PASSKEY_BOT__CONNECTOR_HOSTS", "127.0.0.1"),
        ])
        .check()
        .unwrap();
        with_app(&[
            // `*.domain` is the names under it, not the domain itself.
            ("PASSKEY_BOT__SERVICE_URL", "https://contoso.example/"),
            (
                "PASSKEY_BOT__CONNECTOR_HOSTS",
                "*.contoso.example, smba.example.net",
            ),
        ])
        .check()
        .unwrap_err();
        with_app(&[
            (
                "PASSKEY_BOT__SERVICE_URL",
                "https://x.bots.contoso.example/",
            ),
            ("PASSKEY_BOT__CONNECTOR_HOSTS", "*.bots.contoso.example"),
        ])
        .check()
        .unwrap();
        let err = with_app(&[("PASSKEY_BOT__CONNECTOR_HOSTS", "https://x.example/,*.com")])
            .check()
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("bot.connector_hosts: \"https://x.example/\" is not a host name"),
            "{err}"
        );
        assert!(
            err.contains("would allow a whole top-level domain"),
            "{err}"
        );
        let err = with_app(&[
            ("PASSKEY_PROFILE", "production"),
            ("PASSKEY_BOT__CONNECTOR_HOSTS", "127.0.0.1,localhost"),
        ])
        .check()
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("bot.connector_hosts: 127.0.0.1 is loopback"),
            "{err}"
        );
        assert!(
            err.contains("bot.connector_hosts: localhost is loopback"),
            "{err}"
        );
        // Dev channel mode (no app id, no token sent) reaches loopback without an entry.
        let dev = Settings::from_layers(
            None,
            &env(&[("PASSKEY_BOT__SERVICE_URL", "http://127.0.0.1:9/")]),
        )
        .unwrap();
        dev.check().unwrap();
    }

    #[test]
    fn production_refuses_local_vault_stub_vault_and_missing_bot_credentials() {
        let s = Settings::from_layers(None, &env(&[("PASSKEY_PROFILE", "production")])).unwrap();
        let err = s.check().unwrap_err().to_string();
        assert!(err.contains("production needs bot.app_id"), "{err}");
        assert!(err.contains("production needs bot.app_password"), "{err}");
        assert!(err.contains("local demo vault"), "{err}");
        let s = Settings::from_layers(
            None,
            &env(&[
                ("PASSKEY_PROFILE", "production"),
                ("PASSKEY_BOT__APP_ID", "app"),
                ("PASSKEY_BOT__APP_PASSWORD", "pw"),
                ("PASSKEY_BOT__ALLOWED_TENANTS", "tenant-1"),
                ("PASSKEY_VAULT__BACKEND", "stub"),
            ]),
        )
        .unwrap();
        let err = s.check().unwrap_err().to_string();
        assert!(err.contains("staging stub"), "{err}");
        let s = Settings::from_layers(
            None,
            &env(&[
                ("PASSKEY_PROFILE", "production"),
                ("PASSKEY_BOT__APP_ID", "app"),
                ("PASSKEY_BOT__APP_PASSWORD", "pw"),
                ("PASSKEY_BOT__ALLOWED_TENANTS", "tenant-1"),
                ("PASSKEY_VAULT__BACKEND", "commander-service"),
                ("PASSKEY_VAULT__COMMANDER_URL", "http://127.0.0.1:8900"),
                ("PASSKEY_VAULT__COMMANDER_API_KEY", "k-123"),
                ("PASSKEY_WEB__OIDC__CLIENT_ID", "web-app"),
                ("PASSKEY_WEB__OIDC__CLIENT_SECRET", "web-secret"),
                ("PASSKEY_WEB__OIDC__TENANT_ID", "tenant-1"),
                ("PASSKEY_OTP__SMS_PROVIDER", "twilio"),
                (
                    "PASSKEY_OTP__TWILIO_ACCOUNT_SID",
                    "AC0123456789abcdef0123456789abcdef",
                ),
                ("PASSKEY_OTP__TWILIO_AUTH_TOKEN", "tw-token"),
                ("PASSKEY_OTP__SMS_FROM", "+18005550100"),
                ("PASSKEY_PUBLIC_URL", "https://passkey.contoso.example"),
            ]),
        )
        .unwrap();
        s.check().unwrap();
        assert_eq!(s.log_format(), LogFormat::Json);
    }

    /// A production configuration that passes `check()`, with `overrides` replacing or adding
    /// values.
    fn complete_production(overrides: &[(&str, &str)]) -> Settings {
        let mut pairs: BTreeMap<String, String> = env(&[
            ("PASSKEY_PROFILE", "production"),
            ("PASSKEY_PUBLIC_URL", "https://passkey.contoso.example"),
            ("PASSKEY_BOT__APP_ID", "app"),
            ("PASSKEY_BOT__APP_PASSWORD", "pw"),
            ("PASSKEY_BOT__ALLOWED_TENANTS", "tenant-1"),
            ("PASSKEY_VAULT__BACKEND", "commander-service"),
            (
                "PASSKEY_VAULT__COMMANDER_URL",
                "https://commander.internal:8900",
            ),
            ("PASSKEY_VAULT__COMMANDER_API_KEY", "k-123"),
            ("PASSKEY_WEB__OIDC__CLIENT_ID", "web-app"),
            ("PASSKEY_WEB__OIDC__CLIENT_SECRET", "web-secret"),
            ("PASSKEY_WEB__OIDC__TENANT_ID", "tenant-1"),
            ("PASSKEY_OTP__SMS_PROVIDER", "twilio"),
            (
                "PASSKEY_OTP__TWILIO_ACCOUNT_SID",
                "AC0123456789abcdef0123456789abcdef",
            ),
            ("PASSKEY_OTP__TWILIO_AUTH_TOKEN", "tw-token"),
            ("PASSKEY_OTP__SMS_FROM", "+18005550100"),
        ]);
        pairs.extend(env(overrides));
        Settings::from_layers(None, &pairs).unwrap()
    }

    /// #21.3, #21.4: production needs an https `public_url` (sign-in redirects, chat links and
    /// `__Host-` cookies depend on it), and every outbound URL that carries or vouches for a secret
    /// is https.
    #[test]
    fn production_needs_an_https_public_url_and_https_token_sources() {
        complete_production(&[]).check().unwrap();
        let err = complete_production(&[("PASSKEY_PUBLIC_URL", "")])
            .check()
            .unwrap_err()
            .to_string();
        assert!(err.contains("production needs public_url"), "{err}");
        for (key, url, setting) in [
            (
                "PASSKEY_PUBLIC_URL",
                "http://passkey.contoso.example",
                "public_url",
            ),
            (
                "PASSKEY_BOT__OPENID_METADATA_URL",
                "http://login.botframework.com/v1/.well-known/openidconfiguration",
                "bot.openid_metadata_url",
            ),
            (
                "PASSKEY_BOT__ENTRA_OPENID_METADATA_URL",
                "http://login.microsoftonline.com/t/v2.0/.well-known/openid-configuration",
                "bot.entra_openid_metadata_url",
            ),
            (
                "PASSKEY_BOT__OAUTH_AUTHORITY",
                "http://login.microsoftonline.com",
                "bot.oauth_authority",
            ),
        ] {
            let err = complete_production(&[(key, url)])
                .check()
                .unwrap_err()
                .to_string();
            assert!(
                err.contains(&format!("{setting} must be https://")),
                "{key}: {err}"
            );
        }
    }

    /// #21.1: records must be able to come in. Commander alone is a record source (`list`); the
    /// demo vault, the stub, a Commander backend that cannot be reached, and a KSM setting that is
    /// set but cannot work are each refused, naming the setting and its environment variable.
    #[test]
    fn production_refuses_every_vault_configuration_records_cannot_come_from() {
        complete_production(&[]).check().unwrap();
        complete_production(&[
            ("PASSKEY_VAULT__BACKEND", "commander-cli"),
            (
                "PASSKEY_VAULT__COMMANDER_CONFIG_PATH",
                "/etc/passkey/keeper.json",
            ),
        ])
        .check()
        .unwrap();
        // (settings changed, words the refusal must contain)
        type Refusal<'a> = (&'a [(&'a str, &'a str)], &'a [&'a str]);
        let refusals: &[Refusal] = &[
            (
                &[("PASSKEY_VAULT__BACKEND", "local")],
                &[
                    "vault.backend = \"local\"",
                    "PASSKEY_VAULT__BACKEND",
                    "demo set",
                ],
            ),
            (
                &[("PASSKEY_VAULT__BACKEND", "stub")],
                &["vault.backend = \"stub\"", "PASSKEY_VAULT__BACKEND"],
            ),
            (
                &[("PASSKEY_VAULT__COMMANDER_URL", "")],
                &["vault.commander_url", "PASSKEY_VAULT__COMMANDER_URL"],
            ),
            (
                &[("PASSKEY_VAULT__COMMANDER_API_KEY", "")],
                &[
                    "vault.commander_api_key",
                    "PASSKEY_VAULT__COMMANDER_API_KEY",
                ],
            ),
            (
                &[("PASSKEY_VAULT__BACKEND", "commander-cli")],
                &[
                    "vault.commander_config_path",
                    "PASSKEY_VAULT__COMMANDER_CONFIG_PATH",
                ],
            ),
            (
                &[("PASSKEY_VAULT__KSM_CONFIG", "  ")],
                &[
                    "vault.ksm_config",
                    "PASSKEY_VAULT__KSM_CONFIG",
                    "set but empty",
                ],
            ),
            (
                &[("PASSKEY_VAULT__KSM_CONFIG", "bm90IGEga3NtIGNvbmZpZw==")],
                &[
                    "vault.ksm_config",
                    "PASSKEY_VAULT__KSM_CONFIG",
                    "not a KSM application configuration",
                ],
            ),
        ];
        for (overrides, wanted) in refusals {
            let err = complete_production(overrides)
                .check()
                .unwrap_err()
                .to_string();
            for w in *wanted {
                assert!(err.contains(w), "{overrides:?}: {w:?} missing from {err}");
            }
            assert!(
                !err.contains("bm90IGEga3Nt"),
                "the value is never shown: {err}"
            );
        }
    }

    /// #14.11: the Commander URL carries the service-mode API key on every call.
    #[test]
    fn production_sends_the_commander_api_key_over_https_or_loopback_only() {
        complete_production(&[]).check().unwrap();
        for fine in [
            "https://commander.internal:8900",
            "http://127.0.0.1:8900",
            "http://localhost:8900/",
            "http://[::1]:8900",
        ] {
            complete_production(&[("PASSKEY_VAULT__COMMANDER_URL", fine)])
                .check()
                .unwrap_or_else(|e| panic!("{fine}: {e}"));
        }
        for refused in [
            "http://commander.internal:8900",
            "http://10.0.0.7:8900",
            "http://localhost.evil.example:8900",
            "ftp://commander.internal",
            "commander.internal:8900",
        ] {
            let err = complete_production(&[("PASSKEY_VAULT__COMMANDER_URL", refused)])
                .check()
                .unwrap_err()
                .to_string();
            assert!(
                err.contains("vault.commander_url must be https://"),
                "{refused}: {err}"
            );
        }
    }

    #[test]
    fn dev_holds_only_on_loopback_addresses() {
        let profile = |pairs: &[(&str, &str)]| {
            let s = Settings::from_layers(None, &env(pairs)).unwrap();
            (s.profile, s.production_because.is_some())
        };
        for loopback in [
            vec![],
            vec![("PASSKEY_BIND", "127.0.0.2:3978")],
            vec![("PASSKEY_BIND", "[::1]:3978")],
            vec![("PASSKEY_PUBLIC_URL", "http://localhost:3978")],
            vec![("PASSKEY_PUBLIC_URL", "http://[::1]:3978/")],
            vec![("PASSKEY_PUBLIC_URL", "http://127.0.0.1:3978")],
        ] {
            assert_eq!(profile(&loopback), (Profile::Dev, false), "{loopback:?}");
        }
        for reachable in [
            vec![("PASSKEY_BIND", "0.0.0.0:3978")],
            vec![("PASSKEY_BIND", "10.0.0.4:3978")],
            vec![("PASSKEY_PROFILE", "dev"), ("PASSKEY_BIND", "[::]:3978")],
            vec![("PASSKEY_PUBLIC_URL", "https://passkey.contoso.example")],
            vec![("PASSKEY_PUBLIC_URL", "http://localhost.evil.example")],
            vec![("PASSKEY_PUBLIC_URL", "http://127.0.0.1@evil.example/")],
            vec![("PASSKEY_PUBLIC_URL", "not a url")],
        ] {
            assert_eq!(
                profile(&reachable),
                (Profile::Production, true),
                "{reachable:?}"
            );
        }
        // A complete production configuration on a public address starts as production; the
        // reason is not a problem of its own.
        let err = Settings::from_layers(None, &env(&[("PASSKEY_BIND", "0.0.0.0:3978")]))
            .unwrap()
            .check()
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("production rules apply because bind 0.0.0.0:3978"),
            "{err}"
        );
    }

    #[test]
    fn otp_gateways_need_their_credentials_and_console_is_dev_only() {
        let err = Settings::from_layers(None, &env(&[("PASSKEY_PROFILE", "production")]))
            .unwrap()
            .check()
            .unwrap_err()
            .to_string();
        assert!(err.contains("console SMS sender"), "{err}");
        // Dev may use the console sender (the default).
        Settings::from_layers(None, &env(&[]))
            .unwrap()
            .check()
            .unwrap();
        let err = Settings::from_layers(None, &env(&[("PASSKEY_OTP__SMS_PROVIDER", "acs")]))
            .unwrap()
            .check()
            .unwrap_err()
            .to_string();
        assert!(err.contains("otp.acs_endpoint"), "{err}");
        assert!(err.contains("otp.acs_access_key"), "{err}");
        assert!(err.contains("otp.sms_from"), "{err}");
        let err = Settings::from_layers(
            None,
            &env(&[
                ("PASSKEY_OTP__SMS_PROVIDER", "twilio"),
                ("PASSKEY_OTP__SMS_FROM", "+18005550100"),
                ("PASSKEY_OTP__TWILIO_AUTH_TOKEN", "tw-s3cret"),
            ]),
        )
        .unwrap()
        .check()
        .unwrap_err()
        .to_string();
        assert!(err.contains("otp.twilio_account_sid"), "{err}");
        let err = Settings::from_layers(None, &env(&[("PASSKEY_OTP__MAX_ATTEMPTS", "0")]))
            .unwrap()
            .check()
            .unwrap_err()
            .to_string();
        assert!(err.contains("max_attempts"), "{err}");
        let s = Settings::from_layers(
            None,
            &env(&[
                ("PASSKEY_OTP__TWILIO_AUTH_TOKEN", "tw-s3cret"),
                ("PASSKEY_OTP__ACS_ACCESS_KEY", "acs-s3cret"),
            ]),
        )
        .unwrap();
        let shown = format!("{s:?} {:?}", s.redacted_summary());
        assert!(
            !shown.contains("tw-s3cret") && !shown.contains("acs-s3cret"),
            "{shown}"
        );
    }

    #[test]
    fn production_commander_needs_its_address_key_or_config_and_hides_the_key() {
        let base = [
            ("PASSKEY_PROFILE", "production"),
            ("PASSKEY_BOT__APP_ID", "app"),
            ("PASSKEY_BOT__APP_PASSWORD", "pw"),
            ("PASSKEY_BOT__ALLOWED_TENANTS", "tenant-1"),
            ("PASSKEY_WEB__OIDC__CLIENT_ID", "web-app"),
            ("PASSKEY_WEB__OIDC__CLIENT_SECRET", "web-secret"),
            ("PASSKEY_WEB__OIDC__TENANT_ID", "tenant-1"),
        ];
        let with = |extra: &[(&'static str, &'static str)]| {
            let mut pairs = base.to_vec();
            pairs.extend_from_slice(extra);
            Settings::from_layers(None, &env(&pairs)).unwrap()
        };
        let err = with(&[("PASSKEY_VAULT__BACKEND", "commander-service")])
            .check()
            .unwrap_err()
            .to_string();
        assert!(err.contains("vault.commander_url"), "{err}");
        assert!(err.contains("vault.commander_api_key"), "{err}");
        let err = with(&[("PASSKEY_VAULT__BACKEND", "commander-cli")])
            .check()
            .unwrap_err()
            .to_string();
        assert!(err.contains("vault.commander_config_path"), "{err}");

        let s = with(&[
            ("PASSKEY_VAULT__BACKEND", "commander-cli"),
            ("PASSKEY_VAULT__COMMANDER_CONFIG_PATH", "/etc/k.json"),
            ("PASSKEY_VAULT__COMMANDER_API_KEY", "super-secret-key"),
        ]);
        assert_eq!(s.vault.commander_binary, PathBuf::from("keeper"));
        assert_eq!(s.vault.commander_timeout().as_secs(), 60);
        let shown = format!("{s:?} {:?}", s.redacted_summary());
        assert!(!shown.contains("super-secret-key"), "{shown}");
        let s = with(&[
            ("PASSKEY_VAULT__BACKEND", "commander-service"),
            ("PASSKEY_VAULT__COMMANDER_TIMEOUT_SECS", "7"),
        ]);
        assert_eq!(s.vault.commander_timeout().as_secs(), 7);
        assert_eq!(with(&[]).vault.commander_timeout().as_secs(), 30);
    }

    #[test]
    fn forwarded_for_hops_default_to_one_and_zero_or_garbage_is_refused() {
        let s = Settings::from_layers(None, &env(&[("PASSKEY_WEB__TRUST_FORWARDED_FOR", "true")]))
            .unwrap();
        assert_eq!(
            s.web.forwarded_for_hops, 1,
            "an old configuration means one proxy"
        );
        s.check().unwrap();
        let s = Settings::from_layers(
            None,
            &env(&[
                ("PASSKEY_WEB__TRUST_FORWARDED_FOR", "true"),
                ("PASSKEY_WEB__FORWARDED_FOR_HOPS", "0"),
            ]),
        )
        .unwrap();
        let err = s.check().unwrap_err().to_string();
        assert!(
            err.contains("web.forwarded_for_hops must be at least 1"),
            "{err}"
        );
        let err = Settings::from_layers(None, &env(&[("PASSKEY_WEB__FORWARDED_FOR_HOPS", "300")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("forwarded_for_hops"), "{err}");
    }

    #[test]
    fn the_issuance_page_needs_entra_sign_in_in_production_and_loopback_for_dev_sign_in() {
        let s = Settings::from_layers(None, &env(&[("PASSKEY_PROFILE", "production")])).unwrap();
        let err = s.check().unwrap_err().to_string();
        assert!(err.contains("production needs Entra sign-in"), "{err}");

        let s = Settings::from_layers(
            None,
            &env(&[
                ("PASSKEY_BIND", "0.0.0.0:3978"),
                (
                    "PASSKEY_BOT__APP_ID",
                    "00000000-0000-0000-0000-000000000001",
                ),
            ]),
        )
        .unwrap();
        let err = s.check().unwrap_err().to_string();
        assert!(err.contains("production needs Entra sign-in"), "{err}");

        let s = Settings::from_layers(
            None,
            &env(&[
                ("PASSKEY_WEB__OIDC__CLIENT_ID", "web-app"),
                ("PASSKEY_WEB__SESSION_KEY", "dG9vLXNob3J0"),
            ]),
        )
        .unwrap();
        let err = s.check().unwrap_err().to_string();
        assert!(err.contains("web.oidc.tenant_id"), "{err}");
        assert!(err.contains("web.oidc.client_secret"), "{err}");
        assert!(err.contains("at least 32 random bytes"), "{err}");
        assert!(!format!("{:?}", s.redacted_summary()).contains("dG9vLXNob3J0"));

        let s = Settings::from_layers(
            None,
            &env(&[
                ("PASSKEY_BOT__ALLOWED_TENANTS", "t-bot"),
                ("PASSKEY_WEB__OIDC__ALLOWED_TENANTS", "t-web, t-2"),
            ]),
        )
        .unwrap();
        assert_eq!(s.sign_in_tenants(), ["t-web", "t-2"]);
        let s = Settings::from_layers(None, &env(&[("PASSKEY_BOT__ALLOWED_TENANTS", "t-bot")]))
            .unwrap();
        assert_eq!(s.sign_in_tenants(), ["t-bot"]);
    }
}
