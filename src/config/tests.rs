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

/// #16: the bot's managed identity is the one Key Vault uses (`azure.client_id`); the two bot
/// settings that named it are gone, and a file or variable that still sets one stops start-up
/// naming it and what replaced it.
#[test]
fn removed_identity_settings_stop_start_up_naming_their_replacement() {
    let err = Settings::from_layers(
        None,
        &env(&[("PASSKEY_BOT__MANAGED_IDENTITY_CLIENT_ID", "0000-client")]),
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains(
            "bot.managed_identity_client_id (PASSKEY_BOT__MANAGED_IDENTITY_CLIENT_ID) was removed"
        ),
        "{err}"
    );
    assert!(
        err.contains("azure.client_id (PASSKEY_AZURE__CLIENT_ID)"),
        "{err}"
    );
    assert!(
        !err.contains("0000-client"),
        "the value is not repeated: {err}"
    );

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("passkey.toml");
    std::fs::write(
        &path,
        "[bot]\nmanaged_identity_endpoint = \"http://127.0.0.1:41000/msi/token\"\n",
    )
    .unwrap();
    let err = Settings::from_layers(Some(&path), &BTreeMap::new())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(
            "bot.managed_identity_endpoint (PASSKEY_BOT__MANAGED_IDENTITY_ENDPOINT) was removed"
        ),
        "{err}"
    );
    assert!(err.contains("IDENTITY_ENDPOINT"), "{err}");

    let s = Settings::from_layers(
        None,
        &env(&[
            ("PASSKEY_BOT__CONNECTOR_AUTH", "managed-identity"),
            ("PASSKEY_AZURE__CLIENT_ID", "0000-client"),
        ]),
    )
    .unwrap();
    assert_eq!(s.azure.client_id.as_deref(), Some("0000-client"));
}

/// The client-secret credential posts the app password to `{authority}/{tenant}/…`, over https
/// only and replacing any path: a dev start with an app password says so up front too.
#[test]
fn the_oauth_authority_is_https_and_a_bare_host_when_the_app_password_is_used() {
    let with = |authority: &str, extra: &[(&str, &str)]| {
        let mut pairs = vec![
            ("PASSKEY_BOT__APP_ID", "app"),
            ("PASSKEY_BOT__APP_PASSWORD", "pw"),
            ("PASSKEY_BOT__OAUTH_AUTHORITY", authority),
        ];
        pairs.extend_from_slice(extra);
        Settings::from_layers(None, &env(&pairs)).unwrap().check()
    };
    let err = with("http://127.0.0.1:9", &[]).unwrap_err().to_string();
    assert!(
        err.contains("bot.oauth_authority must be https://"),
        "{err}"
    );
    let err = with("https://login.example/oauth", &[])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("bot.oauth_authority must be a scheme and host only"),
        "{err}"
    );
    with("https://login.microsoftonline.us/", &[]).unwrap();
    // Not used with a managed identity.
    with(
        "http://127.0.0.1:9",
        &[("PASSKEY_BOT__CONNECTOR_AUTH", "managed-identity")],
    )
    .unwrap();
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
        err.contains(
            "bot.app_password = kv:BOT-APP-PASSWORD is a Key Vault reference that was not resolved"
        ),
        "{err}"
    );
    assert!(
        err.contains("azure.key_vault_url must be an https://"),
        "{err}"
    );
    let wrapper =
        Settings::from_layers(None, &env(&[("PASSKEY_CRYPTO__KEY_WRAPPER", "key-vault")])).unwrap();
    let err = wrapper.check().unwrap_err().to_string();
    assert!(
        err.contains(
            "crypto.key_wrapper = \"key-vault\" needs crypto.key_vault_key and azure.key_vault_url"
        ),
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
    let s =
        Settings::from_layers(None, &env(&[("PASSKEY_WEB__TRUST_FORWARDED_FOR", "true")])).unwrap();
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
    let s =
        Settings::from_layers(None, &env(&[("PASSKEY_BOT__ALLOWED_TENANTS", "t-bot")])).unwrap();
    assert_eq!(s.sign_in_tenants(), ["t-bot"]);
}

/// `passkey doctor` shows every setting: one added to the settings structs appears in the
/// summary without anyone remembering to list it, and a secret set in every secret setting shows
/// nowhere (#16.3).
#[test]
fn the_summary_shows_every_setting_and_no_secret() {
    let mut s = Settings::default();
    for (_, field) in s.secret_fields_mut() {
        *field = Some(SecretString::from("hunter2-secret-value"));
    }
    let summary = s.redacted_summary();
    let keys: Vec<&str> = summary.iter().map(|(k, _)| k.as_str()).collect();
    let missing: Vec<String> = every_setting_key()
        .into_iter()
        .filter(|k| !keys.contains(&k.as_str()))
        .collect();
    assert!(missing.is_empty(), "not in the summary: {missing:?}");
    assert!(!format!("{summary:?}").contains("hunter2"), "{summary:?}");
    let shown = |key: &str| {
        summary
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .unwrap_or_else(|| panic!("no {key}"))
    };
    assert_eq!(shown("database_url"), "[REDACTED]");
    assert_eq!(
        shown("web.frame_ancestors"),
        format!("{:?}", s.web.frame_ancestors)
    );
    assert_eq!(shown("otp.max_attempts"), s.otp.max_attempts.to_string());
    assert_eq!(shown("azure.client_id"), "(unset)");
    let mut unique = keys.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), keys.len(), "a setting listed twice: {keys:?}");
}

#[test]
fn telemetry_is_off_by_default_and_its_settings_are_checked() {
    let s = Settings::default();
    assert_eq!(s.telemetry.otlp(), None);
    assert!(!s.telemetry.metrics_endpoint);
    let problems = |profile: Profile, t: TelemetrySettings| t.problems(profile);
    let with = |endpoint: &str| TelemetrySettings {
        otlp_endpoint: Some(endpoint.into()),
        ..TelemetrySettings::default()
    };
    assert!(
        problems(
            Profile::Production,
            with("https://collector.contoso.example")
        )
        .is_empty()
    );
    assert!(problems(Profile::Production, with("http://127.0.0.1:4318/")).is_empty());
    assert!(problems(Profile::Dev, with("http://collector:4318")).is_empty());
    let plain = problems(
        Profile::Production,
        with("http://collector.contoso.example:4318"),
    );
    assert!(
        plain
            .iter()
            .any(|p| p.contains("telemetry.otlp_endpoint must be https://")),
        "{plain:?}"
    );
    let not_url = problems(Profile::Dev, with("collector:4318"));
    assert!(
        not_url
            .iter()
            .any(|p| p.contains("telemetry.otlp_endpoint")),
        "{not_url:?}"
    );
    let short = problems(
        Profile::Production,
        TelemetrySettings {
            metrics_bearer_token: Some("short".to_string().into()),
            ..TelemetrySettings::default()
        },
    );
    assert!(
        short.iter().any(|p| p.contains("at least 16"))
            && short.iter().any(|p| p.contains("metrics_endpoint is off")),
        "{short:?}"
    );
}

/// `lifecycle.schedules` (#17.3): cron expressions from the file or the environment; a bad
/// expression or an unknown job stops loading, naming the key.
#[test]
fn job_schedules_are_cron_expressions_and_bad_ones_stop_loading_naming_the_key() {
    let defaults = Settings::from_layers(None, &env(&[])).unwrap();
    assert!(defaults.lifecycle.schedules.get("vault-sync").is_none());
    let summary = defaults.redacted_summary();
    assert!(
        summary
            .iter()
            .any(|(k, v)| k == "lifecycle.schedules" && v.contains("interval")),
        "{summary:?}"
    );

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("passkey.toml");
    std::fs::write(
        &path,
        "[lifecycle.schedules]\nvault-sync = \"0 0 2 * * *\"\nhousekeeping = \"15 3 * * *\"\n",
    )
    .unwrap();
    let s = Settings::from_layers(Some(&path), &env(&[])).unwrap();
    assert_eq!(
        s.lifecycle
            .schedules
            .get("vault-sync")
            .unwrap()
            .expression(),
        "0 0 2 * * *"
    );
    assert_eq!(
        s.lifecycle
            .schedules
            .get("housekeeping")
            .unwrap()
            .expression(),
        "15 3 * * *"
    );

    let s = Settings::from_layers(
        None,
        &env(&[("PASSKEY_LIFECYCLE__SCHEDULES__VAULT_SYNC", "0 30 1 * * *")]),
    )
    .unwrap();
    assert_eq!(
        s.lifecycle
            .schedules
            .get("vault-sync")
            .unwrap()
            .expression(),
        "0 30 1 * * *"
    );

    std::fs::write(
        &path,
        "[lifecycle.schedules]\nvault-sync = \"0 99 * * *\"\n",
    )
    .unwrap();
    let err = Settings::from_layers(Some(&path), &env(&[]))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("lifecycle.schedules.vault-sync: \"0 99 * * *\" is not a cron expression: "),
        "{err}"
    );
    let err = Settings::from_layers(
        None,
        &env(&[("PASSKEY_LIFECYCLE__SCHEDULES__VAULT_SNYC", "0 2 * * *")]),
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("lifecycle.schedules.vault_snyc: no such job"),
        "{err}"
    );
}
