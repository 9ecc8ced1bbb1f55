//! The redacted summary `passkey doctor` prints: every setting, no secret.

use super::*;

impl Settings {
    /// The effective settings as TOML-ish lines with every secret replaced by `[REDACTED]`.
    pub fn redacted_summary(&self) -> Vec<(String, String)> {
        let secret = |s: &Option<SecretString>| shown_secret(s).to_string();
        let opt = |s: &Option<String>| s.clone().unwrap_or_else(|| "(unset)".into());
        let mut lines: Vec<(String, String)> = vec![
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
        ];
        // The lines above say what a setting means; every other setting follows as the settings
        // structs themselves serialize it, so a new one cannot be left out. A secret cannot leak
        // through this: `SecretString` does not serialize, so each one must name
        // `redacted_secret`, or the build fails.
        let shown: Vec<String> = lines.iter().map(|(key, _)| key.clone()).collect();
        match serde_json::to_value(self) {
            Ok(value) => {
                let mut rest = Vec::new();
                flatten("", &value, &mut rest);
                lines.extend(rest.into_iter().filter(|(key, _)| !shown.contains(key)));
            }
            Err(e) => lines.push(("(other settings)".into(), format!("cannot be listed: {e}"))),
        }
        lines
    }
}

/// A secret as the summary shows it. A Key Vault reference is a name, not a secret: showing it
/// helps find a missing one.
fn shown_secret(secret: &Option<SecretString>) -> &str {
    match secret {
        Some(v) if crate::azure::secrets::reference_name(v.expose_secret()).is_some() => {
            v.expose_secret()
        }
        Some(_) => "[REDACTED]",
        None => "(unset)",
    }
}

/// How every `Option<SecretString>` setting serializes (`#[serde(serialize_with)]`).
pub(super) fn redacted_secret<S: serde::Serializer>(
    secret: &Option<SecretString>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(shown_secret(secret))
}

/// `{"bot": {"app_id": null}}` → `("bot.app_id", "(unset)")`.
fn flatten(prefix: &str, value: &serde_json::Value, out: &mut Vec<(String, String)>) {
    use serde_json::Value;
    match value {
        Value::Object(fields) => {
            for (name, field) in fields {
                let key = if prefix.is_empty() {
                    name.clone()
                } else {
                    format!("{prefix}.{name}")
                };
                flatten(&key, field, out);
            }
        }
        Value::Null => out.push((prefix.to_string(), "(unset)".into())),
        Value::String(text) => out.push((prefix.to_string(), text.clone())),
        Value::Array(items) => {
            let items: Vec<String> = items
                .iter()
                .map(|item| match item {
                    Value::String(text) => text.clone(),
                    other => other.to_string(),
                })
                .collect();
            out.push((prefix.to_string(), format!("{items:?}")));
        }
        other => out.push((prefix.to_string(), other.to_string())),
    }
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
