//! deploy/ sets Passkey's settings as `PASSKEY_*` variables (the Dockerfile's ENV, the Bicep
//! container's env array, a compose file if there is one). Unknown keys stop start-up, so a
//! misspelled or removed setting there would only show in Azure: here every variable the
//! templates set is loaded as the configuration loader loads the environment, and must be taken.

use passkey::config::{Profile, Settings};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Files under deploy/ that set variables (templates, not prose: the README's examples are
/// checked by their own tests).
fn template_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            template_files(&path, out);
            continue;
        }
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        let ext = path.extension().map(|e| e.to_string_lossy().to_string());
        if name == "Dockerfile"
            || matches!(
                ext.as_deref(),
                Some("bicep" | "json" | "yaml" | "yml" | "env")
            )
        {
            out.push(path);
        }
    }
}

/// A variable name at the start of `text`, if any.
fn variable_at(text: &str) -> Option<String> {
    let rest = text.strip_prefix("PASSKEY_")?;
    let len = rest
        .find(|c: char| !(c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_'))
        .unwrap_or(rest.len());
    (len > 0).then(|| format!("PASSKEY_{}", &rest[..len]))
}

/// The values a Bicep parameter may take, when its `@allowed([...])` list names them.
fn allowed_values(text: &str, param: &str) -> Vec<String> {
    let Some(at) = text.find(&format!("param {param} ")) else {
        return Vec::new();
    };
    let before = &text[..at];
    let Some(open) = before.rfind("@allowed([") else {
        return Vec::new();
    };
    // Only the decorator right above this parameter.
    if before[open..].contains("param ") {
        return Vec::new();
    }
    before[open..]
        .lines()
        .filter_map(|l| {
            l.trim()
                .strip_prefix('\'')
                .and_then(|v| v.strip_suffix('\''))
        })
        .map(String::from)
        .collect()
}

/// Every `PASSKEY_*` variable the templates name, with the values it may take when the template
/// spells them out (`NAME=value` in a Dockerfile or .env, `NAME: value` in compose, a quoted
/// `value: '…'` under `name: 'NAME'` in Bicep, or a parameter's `@allowed` list); empty when the
/// value is an expression.
/// One map per template file (its path below the repository), by variable name.
fn deploy_variables() -> BTreeMap<String, BTreeMap<String, Vec<String>>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy");
    let mut files = Vec::new();
    template_files(&root, &mut files);
    let mut by_file = BTreeMap::new();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        let where_ = file.strip_prefix(env!("CARGO_MANIFEST_DIR")).unwrap();
        let found: &mut BTreeMap<String, Vec<String>> =
            by_file.entry(where_.display().to_string()).or_default();
        let lines: Vec<&str> = text.lines().collect();
        for (i, line) in lines.iter().enumerate() {
            let trimmed = line.trim_start();
            // Comments name variables in prose.
            if trimmed.starts_with("//") || trimmed.starts_with('#') {
                continue;
            }
            let mut start = 0;
            while let Some(at) = line[start..].find("PASSKEY_") {
                let at = start + at;
                let Some(name) = variable_at(&line[at..]) else {
                    start = at + 1;
                    continue;
                };
                let after = &line[at + name.len()..];
                let values = if let Some(v) = after.strip_prefix('=') {
                    // Dockerfile ENV `A=b \`, .env, compose list form `- A=b`.
                    let v = v.split_whitespace().next().unwrap_or("");
                    vec![v.trim_matches('"').to_string()]
                } else if let Some(v) = after.strip_prefix(':') {
                    // compose map form `A: b`.
                    vec![v.trim().trim_matches('"').trim_matches('\'').to_string()]
                } else if after.starts_with('\'') {
                    // Bicep: `name: 'A'`, then `value: …` on one of the next lines.
                    let expr = lines[i + 1..]
                        .iter()
                        .take(3)
                        .find_map(|l| l.trim().strip_prefix("value: "))
                        .map(str::trim)
                        .unwrap_or_default();
                    if expr.len() >= 2
                        && expr.starts_with('\'')
                        && expr.ends_with('\'')
                        && !expr.contains("${")
                    {
                        vec![expr[1..expr.len() - 1].to_string()]
                    } else {
                        allowed_values(&text, expr)
                    }
                } else {
                    Vec::new()
                };
                found.entry(name.clone()).or_insert(values);
                start = at + name.len();
            }
        }
    }
    by_file.retain(|_, found| !found.is_empty());
    by_file
}

/// Every variable any template sets.
fn every_name() -> Vec<String> {
    let mut names: Vec<String> = deploy_variables()
        .into_values()
        .flat_map(|found| found.into_keys())
        .collect();
    names.sort();
    names.dedup();
    names
}

/// Values to try for a variable whose value is an expression in the template: the loader reads
/// `true`/`false` as booleans and everything else as text, so one of these fits any real setting.
const STAND_INS: &[&str] = &["true", "2", "https://passkey.example.test", "stand-in"];

fn load(env: &BTreeMap<String, String>) -> Result<Settings, String> {
    Settings::from_layers(None, env).map_err(|e| e.to_string())
}

#[test]
fn every_variable_the_deploy_templates_set_is_a_real_setting() {
    let by_file = deploy_variables();
    let names = every_name();
    // The extractor sees the Dockerfile and the Bicep (it cannot pass by finding nothing).
    for expected in [
        "PASSKEY_PROFILE",
        "PASSKEY_BIND",
        "PASSKEY_BOT__APP_ID",
        "PASSKEY_AZURE__KEY_VAULT_URL",
        "PASSKEY_CRYPTO__KEY_VAULT_KEY",
        "PASSKEY_AUDIT__KEY_VAULT_KEY",
        "PASSKEY_WEB__OIDC__CLIENT_SECRET",
    ] {
        assert!(
            names.iter().any(|n| n == expected),
            "{expected} not found: {by_file:?}"
        );
    }
    let image = &by_file["deploy/Dockerfile"];
    let app = &by_file["deploy/azure/modules/app.bicep"];
    assert_eq!(image["PASSKEY_PROFILE"], ["production"]);
    assert_eq!(
        app["PASSKEY_OTP__SMS_PROVIDER"],
        ["twilio", "acs"],
        "a parameter's allowed values are each tried"
    );

    // Each variable alone: every value a template may give it is taken.
    let mut chosen: BTreeMap<&str, BTreeMap<String, String>> = BTreeMap::new();
    let mut refused = Vec::new();
    for (file, found) in &by_file {
        let env = chosen.entry(file).or_default();
        for (name, values) in found {
            if values.is_empty() {
                // An expression: some value of the right type must be taken.
                let fits = STAND_INS
                    .iter()
                    .find(|v| load(&BTreeMap::from([(name.clone(), v.to_string())])).is_ok());
                match fits {
                    Some(v) => {
                        env.insert(name.clone(), v.to_string());
                    }
                    None => {
                        let why = load(&BTreeMap::from([(name.clone(), STAND_INS[0].into())]))
                            .err()
                            .unwrap_or_default();
                        refused.push(format!("{name} ({file}): {why}"));
                    }
                }
                continue;
            }
            for value in values {
                if let Err(why) = load(&BTreeMap::from([(name.clone(), value.clone())])) {
                    refused.push(format!("{name}={value} ({file}): {why}"));
                }
            }
            env.insert(name.clone(), values[0].clone());
        }
    }
    assert!(
        refused.is_empty(),
        "refused by the loader:\n{}",
        refused.join("\n")
    );

    // All together, as each container sees them: the image's ENV under the deployment's.
    let image_env = chosen["deploy/Dockerfile"].clone();
    for (file, env) in &chosen {
        let mut all = image_env.clone();
        all.extend(env.clone());
        let settings = load(&all).unwrap_or_else(|e| panic!("{file}: {e}\n{all:#?}"));
        if *file == "deploy/Dockerfile" || file.ends_with(".bicep") {
            assert_eq!(settings.profile, Profile::Production, "{file}");
            assert_eq!(settings.bind.to_string(), "0.0.0.0:3978", "{file}");
            assert!(!settings.demo_data, "{file}");
            assert_eq!(
                settings.data_dir,
                PathBuf::from("/var/lib/passkey"),
                "{file}: the image's data directory and the Azure Files mount agree"
            );
        }
    }
}

#[test]
fn a_misspelled_deploy_variable_is_refused_by_name() {
    // What the check above relies on: an unknown key is an error naming it, not ignored.
    for (name, value) in [
        (
            "PASSKEY_BOT__APP_IDD",
            "6a0f3c52-94b1-4e7d-8c2a-1b5e9f0d7a34",
        ),
        (
            "PASSKEY_AZURE__KEYVAULT_URL",
            "https://passkey.vault.azure.net/",
        ),
        ("PASSKEY_WEB__OIDC_CLIENT_ID", "0c1d2e3f"),
    ] {
        let err = load(&BTreeMap::from([(name.to_string(), value.to_string())])).unwrap_err();
        assert!(err.contains("unknown field"), "{name}: {err}");
    }
    assert!(!every_name().iter().any(|n| n == "PASSKEY_BOT__APP_IDD"));
}

/// deploy/README.md's `passkey.toml` names only real settings, and is production.
#[test]
fn the_deploy_guide_configuration_is_made_of_real_settings() {
    let guide = include_str!("../../deploy/README.md");
    let start = guide.find("```toml\n").expect("a toml block") + "```toml\n".len();
    let toml = &guide[start..start + guide[start..].find("```").unwrap()];
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("passkey.toml");
    std::fs::write(&path, toml).unwrap();
    let settings =
        Settings::from_layers(Some(&path), &BTreeMap::new()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(settings.profile, Profile::Production);
    // The guide's table and the templates agree on what the deployment sets.
    let names = every_name();
    for key in [
        "bot.connector_auth",
        "crypto.key_vault_key",
        "audit.key_vault_key",
        "web.session_key",
        "vault.commander_api_key",
    ] {
        let variable = format!("PASSKEY_{}", key.to_ascii_uppercase().replace('.', "__"));
        assert!(names.contains(&variable), "{variable} is not in deploy/");
    }
}
