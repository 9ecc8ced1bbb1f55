//! The checks: settings that cannot work or are unsafe to run with, every problem named at once.

use super::*;

impl TelemetrySettings {
    /// What is wrong with these settings for `profile`: an OTLP endpoint that is not a URL, or
    /// plain http to another machine outside dev; a `/metrics` token that is short or has nothing
    /// to guard.
    pub(super) fn problems(&self, profile: Profile) -> Vec<String> {
        let mut problems = Vec::new();
        if let Some(url) = self.otlp() {
            let parsed = reqwest::Url::parse(url).ok();
            match parsed.as_ref().map(|u| u.scheme()) {
                Some("https") => {}
                Some("http") if profile == Profile::Dev || is_loopback_url(url) => {}
                Some("http") => problems.push(format!(
                    "telemetry.otlp_endpoint must be https:// outside dev unless it is on this machine (got {url})"
                )),
                _ => problems.push(format!(
                    "telemetry.otlp_endpoint must be an http(s) URL such as http://127.0.0.1:4318 (got {url:?})"
                )),
            }
        }
        if self.service_name.trim().is_empty() {
            problems.push("telemetry.service_name must not be empty".into());
        }
        if let Some(token) = &self.metrics_bearer_token {
            let token = token.expose_secret();
            if !token.starts_with(crate::azure::secrets::REFERENCE_PREFIX) {
                if !self.metrics_endpoint {
                    problems.push(
                        "telemetry.metrics_bearer_token is set but telemetry.metrics_endpoint is off"
                            .into(),
                    );
                }
                if token.len() < 16 {
                    problems.push(
                        "telemetry.metrics_bearer_token must be at least 16 characters".into(),
                    );
                }
            }
        }
        problems
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

impl Settings {
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
            || a.link_allowance_secs == 0
            || a.verify_every_secs == 0
        {
            problems.push(
                "audit.checkpoint_every_events, checkpoint_every_secs, verify_every_secs and link_allowance_secs must be greater than 0".into(),
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
        if l.review_reminder_after_secs > l.review_escalate_after_secs {
            problems.push(
                "lifecycle: review_reminder_after_secs ≤ review_escalate_after_secs must hold"
                    .into(),
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
        problems.extend(self.oauth_authority_problems(dev_channel_auth));
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
        problems.extend(self.telemetry.problems(self.profile));
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
            use crate::channel::HostPattern;
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
            && let Err(refused) = crate::channel::ConnectorHosts::from_settings(self).check(&url)
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

    /// The client-secret credential posts the app password to `{bot.oauth_authority}/{tenant}/…`;
    /// azure_identity does so over https only, and replaces any path the authority has.
    fn oauth_authority_problems(&self, dev_channel_auth: bool) -> Vec<String> {
        let bot = &self.bot;
        let uses_secret = !dev_channel_auth
            && bot.connector_auth == ConnectorAuth::Secret
            && bot
                .app_password
                .as_ref()
                .is_some_and(|p| !p.expose_secret().is_empty());
        if !uses_secret {
            return Vec::new();
        }
        let authority = &bot.oauth_authority;
        match reqwest::Url::parse(authority) {
            // Production says so already, for every URL that carries or vouches for a secret.
            Ok(url) if url.scheme() != "https" && self.profile == Profile::Production => Vec::new(),
            Ok(url) if url.scheme() != "https" => vec![format!(
                "bot.oauth_authority must be https://: the app password is posted there (got {authority})"
            )],
            Ok(url) if url.path() == "/" && url.query().is_none() => Vec::new(),
            _ => vec![format!(
                "bot.oauth_authority must be a scheme and host only, like https://login.microsoftonline.com \
                 (tokens are asked at {{authority}}/{{tenant}}/oauth2/v2.0/token; got {authority})"
            )],
        }
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
}
