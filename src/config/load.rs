//! Loading: built-in defaults < the TOML file < `PASSKEY_*` environment < `DATABASE_URL`.

use super::*;

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
        let removed = removed_settings(&table);
        if !removed.is_empty() {
            return Err(ConfigError::Parse(removed.join("; ")));
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
}

/// Settings that no longer exist: (section, name, what to do instead).
const REMOVED: &[(&str, &str, &str)] = &[
    (
        "bot",
        "managed_identity_client_id",
        "the bot's managed identity is the one Key Vault uses: set azure.client_id \
         (PASSKEY_AZURE__CLIENT_ID) to the user-assigned identity's client id",
    ),
    (
        "bot",
        "managed_identity_endpoint",
        "managed identity tokens come from App Service's IDENTITY_ENDPOINT, else the VM \
         metadata service, as azure_identity finds them: remove it",
    ),
];

/// One message per removed setting the file or the environment still sets, naming the setting,
/// its variable and its replacement (serde's "unknown field" would name neither).
fn removed_settings(table: &toml::Table) -> Vec<String> {
    REMOVED
        .iter()
        .filter(|(section, name, _)| {
            table
                .get(*section)
                .and_then(toml::Value::as_table)
                .is_some_and(|t| t.contains_key(*name))
        })
        .map(|(section, name, instead)| {
            format!(
                "{section}.{name} (PASSKEY_{}__{}) was removed: {instead}",
                section.to_ascii_uppercase(),
                name.to_ascii_uppercase()
            )
        })
        .collect()
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
