//! `passkey admin …` as an operator runs it: the real binary against a SQLite file in a temporary
//! data directory. Refusals exit 1 with the reason on stderr and change nothing.

use crate::common;

use passkey::store::{AuditStore, HealthStore, SqliteStore};
use std::path::Path;
use std::process::{Command, Output};

/// Runs the binary in `dir` with only the settings this test gives it.
fn passkey(dir: &Path, args: &[&str]) -> Output {
    passkey_with_env(dir, args, &[])
}

/// [`passkey`] with more environment variables.
fn passkey_with_env(dir: &Path, args: &[&str], extra: &[(String, String)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_passkey"));
    command.current_dir(dir).args(args);
    for (name, _) in std::env::vars() {
        if name.starts_with("PASSKEY_") || name == "DATABASE_URL" || name == "RUST_LOG" {
            command.env_remove(name);
        }
    }
    command
        .env("PASSKEY_DATA_DIR", dir.join("data"))
        .env("PASSKEY_LOG__FILTER", "warn")
        .envs(extra.iter().map(|(k, v)| (k, v)));
    command.output().expect("run passkey")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[tokio::test]
async fn admin_commands_run_against_the_configured_database() {
    let dir = tempfile::tempdir().unwrap();

    // Before migrations: a clear instruction, exit 2.
    let out = passkey(
        dir.path(),
        &["admin", "role", "nobody@contoso.example", "ADMIN"],
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("run `passkey migrate` first"));

    let out = passkey(dir.path(), &["migrate"]);
    assert!(out.status.success(), "{}", text(&out.stderr));

    // An unknown person: exit 1, the reason on stderr, nothing on stdout.
    let out = passkey(
        dir.path(),
        &["admin", "role", "nobody@contoso.example", "ADMIN"],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("No Passkey user `nobody@contoso.example`"),
        "{}",
        text(&out.stderr)
    );
    assert!(out.stdout.is_empty());

    let out = passkey(dir.path(), &["admin", "demo-load"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("demo data loaded: 5 users, 12 records"));

    let out = passkey(dir.path(), &["admin", "authority", "show", "db-prod"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("APPROVER — user Bob DBA Lead <bob@contoso.example>"));

    let out = passkey(
        dir.path(),
        &[
            "admin",
            "authority",
            "grant",
            "db-prod",
            "approver",
            "user:dave@contoso.example",
            "--stage",
            "2",
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let granted = text(&out.stdout);
    assert!(granted.contains("(stage 2)"), "{granted}");
    let id = granted
        .trim()
        .rsplit_once('#')
        .map(|(_, n)| n.trim_end_matches('.').to_string())
        .unwrap();

    let revoke = [
        "admin",
        "authority",
        "revoke",
        &format!("#{id}"),
        "handed",
        "over",
    ];
    let out = passkey(dir.path(), &revoke);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).starts_with(&format!("Revoked authority #{id}")));
    let out = passkey(dir.path(), &revoke);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("already revoked"),
        "{}",
        text(&out.stderr)
    );

    let out = passkey(
        dir.path(),
        &["admin", "role", "erin@contoso.example", "approver"],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout).trim(),
        "Erin Contractor <erin@contoso.example> is now APPROVER (was REQUESTER)."
    );

    // The changes are audited as the CLI.
    let store = SqliteStore::open(&dir.path().join("data/passkey.db"), 1)
        .await
        .unwrap();
    assert!(store.migration_state().await.unwrap().is_current());
    let events = store.audit_events_after(0, 10_000).await.unwrap();
    let by_cli: Vec<&str> = events
        .iter()
        .filter(|e| e.actor == "admin-cli")
        .map(|e| e.action.as_str())
        .collect();
    assert_eq!(
        by_cli,
        ["AUTHORITY_GRANTED", "AUTHORITY_REVOKED", "ROLE_CHANGED"]
    );
}

/// (#21.9) `passkey admin record sensitivity <record> <LEVEL> <reason…>`: refusals exit 1 (a
/// missing reason is clap's usage error, exit 2) and change nothing; a change is audited as the
/// CLI; the same level again says so.
#[tokio::test]
async fn admin_record_sensitivity_changes_a_level_from_the_shell() {
    let dir = tempfile::tempdir().unwrap();
    assert!(passkey(dir.path(), &["migrate"]).status.success());
    assert!(
        passkey(dir.path(), &["admin", "demo-load"])
            .status
            .success()
    );
    let sensitivity = |rest: &[&str]| {
        let mut args = vec!["admin", "record", "sensitivity"];
        args.extend_from_slice(rest);
        passkey(dir.path(), &args)
    };
    let open = || async {
        SqliteStore::open(&dir.path().join("data/passkey.db"), 1)
            .await
            .unwrap()
    };
    let before = open()
        .await
        .audit_events_after(0, 10_000)
        .await
        .unwrap()
        .len();

    for (args, code, says) in [
        (
            &["nope-db", "HIGH", "audit", "finding"][..],
            1,
            "No record matches `nope-db`",
        ),
        (&["db", "HIGH", "audit"][..], 1, "matches several records"),
        (
            &["smtp-relay", "URGENT", "audit"][..],
            1,
            "Unknown sensitivity `URGENT`",
        ),
        (&["smtp-relay", "HIGH", " "][..], 1, "A reason is required"),
        (&["smtp-relay", "HIGH"][..], 2, "<REASON>"),
    ] {
        let out = sensitivity(args);
        assert_eq!(
            out.status.code(),
            Some(code),
            "{args:?}: {}",
            text(&out.stderr)
        );
        assert!(
            text(&out.stderr).contains(says),
            "{args:?}: {}",
            text(&out.stderr)
        );
        assert!(out.stdout.is_empty(), "{args:?}");
    }
    assert_eq!(
        open()
            .await
            .audit_events_after(0, 10_000)
            .await
            .unwrap()
            .len(),
        before,
        "refusals write nothing"
    );

    let out = sensitivity(&["smtp-relay", "high", "relays", "payroll", "mail"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).starts_with("`smtp-relay` is now HIGH (was LOW)."),
        "{}",
        text(&out.stdout)
    );
    let out = sensitivity(&["smtp-relay", "HIGH", "again"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("already HIGH; nothing changed"));

    let events = open().await.audit_events_after(0, 10_000).await.unwrap();
    let changes: Vec<_> = events
        .iter()
        .skip(before)
        .map(|e| {
            (
                e.actor.as_str(),
                e.action.as_str(),
                e.detail.0["new"].clone(),
                e.detail.0["reason"].clone(),
            )
        })
        .collect();
    assert_eq!(
        changes,
        [(
            "admin-cli",
            "RECORD_SENSITIVITY_CHANGED",
            serde_json::json!("HIGH"),
            serde_json::json!("relays payroll mail")
        )]
    );
}

#[tokio::test]
async fn replay_reports_same_or_different_decisions_and_exits_accordingly() {
    use passkey::domain::*;
    use passkey::governance::policies::{ensure_default_policies, load_engine};
    use passkey::store::{GovernanceStore, NewAuditEvent, NewPolicy};
    let dir = tempfile::tempdir().unwrap();
    assert!(passkey(dir.path(), &["migrate"]).status.success());

    let out = passkey(dir.path(), &["admin", "replay", "--all"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("replayed 0 trace(s): 0 same, 0 different"));
    let out = passkey(dir.path(), &["admin", "replay", "41"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("there is no decision trace 41"));

    // Write one MEDIUM submission decision the way the request flow does.
    let store = SqliteStore::open(&dir.path().join("data/passkey.db"), 1)
        .await
        .unwrap();
    let now = Timestamp::parse("2026-11-23T09:00:00Z").unwrap();
    ensure_default_policies(&store, now).await.unwrap();
    let engine = load_engine(&store).await.unwrap();
    let ctx = common::submission_context(Sensitivity::Medium);
    let trace = store
        .insert_trace(&passkey::policy::trace_record(
            TraceStage::RequestSubmission,
            &ctx,
            &engine.evaluate(&ctx),
        ))
        .await
        .unwrap();
    let out = passkey(dir.path(), &["admin", "replay", &trace.id.to_string()]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    assert!(text(&out.stdout).contains("same decision"));

    // An operator lets MEDIUM records auto-approve: the same inputs now decide differently.
    let mut access = serde_json::to_value(&passkey::policy::PolicySet::defaults().access).unwrap();
    access["auto_approve_max_sensitivity"] = serde_json::json!("MEDIUM");
    store
        .put_policy(
            &NewPolicy {
                kind: PolicyKind::Access,
                name: passkey::policy::set::ACCESS_POLICY.into(),
                body: access,
                created_by: "ops".into(),
            },
            &NewAuditEvent::new("admin-cli", "POLICY_CHANGED", now),
        )
        .await
        .unwrap();
    let out = passkey(dir.path(), &["admin", "replay", "--all"]);
    assert_eq!(out.status.code(), Some(1));
    let report = text(&out.stdout);
    assert!(
        report.contains("replayed 1 trace(s): 0 same, 1 different"),
        "{report}"
    );
    assert!(
        report.contains("outcome: was \"ROUTE_TO_AUTHORITY\", now \"AUTO_APPROVE\""),
        "{report}"
    );
    assert!(report.contains("why: the policy changed"), "{report}");
}

/// The plain flow an operator runs on a fresh instance — an auto-approval, an approval, a
/// release and an extension — replays entirely to the same decisions with the real binary.
#[tokio::test]
async fn replay_all_after_a_plain_flow_finds_every_decision_the_same() {
    use common::fake_sharer::FakeSharer;
    use passkey::config::LifecycleSettings;
    use passkey::domain::*;
    use passkey::governance::lifecycle::{Lifecycle, Submission};
    use passkey::governance::permissions::{PermissionResolver, StaticGroupDirectory};
    use passkey::governance::policies::load_engine;
    use passkey::store::Store;
    use std::sync::Arc;
    let dir = tempfile::tempdir().unwrap();
    assert!(passkey(dir.path(), &["migrate"]).status.success());
    assert!(
        passkey(dir.path(), &["admin", "demo-load"])
            .status
            .success()
    );

    let store: Arc<dyn Store> = Arc::new(
        SqliteStore::open(&dir.path().join("data/passkey.db"), 1)
            .await
            .unwrap(),
    );
    // The demo authorities are in force from when `demo-load` ran.
    let clock = Arc::new(ManualClock::new(SystemClock.now()));
    // What `serve` does on start.
    passkey::governance::policies::ensure_default_policies(store.as_ref(), clock.now())
        .await
        .unwrap();
    let life = Lifecycle::new(
        store.clone(),
        Arc::new(load_engine(store.as_ref()).await.unwrap()),
        clock.clone(),
        Arc::new(PermissionResolver::new(
            store.clone(),
            Arc::new(StaticGroupDirectory::new()),
            clock.clone(),
        )),
        FakeSharer::new(clock.clone()),
        LifecycleSettings::default(),
    );
    let person = |email: &'static str| {
        let store = store.clone();
        async move { store.user_by_email(email).await.unwrap().unwrap() }
    };
    let (alice, bob) = (
        person("alice@contoso.example").await,
        person("bob@contoso.example").await,
    );
    let ask = |record: &str, secs: i64, why: &str| Submission {
        record: record.into(),
        duration_secs: Some(secs),
        justification: why.into(),
        ticket_id: None,
        break_glass: false,
    };
    let staging = life
        .submit(&alice, &ask("db-staging", 3600, "INC-7 load test"))
        .await
        .unwrap()
        .request;
    assert_eq!(staging.status, RequestStatus::Approved);
    let prod = life
        .submit(&alice, &ask("db-prod", 7200, "INC-4411 failover"))
        .await
        .unwrap()
        .request;
    life.approve(&bob, prod.id, None).await.unwrap();
    life.release(&alice, staging.id).await.unwrap();
    life.extend(&alice, prod.id, 3600).await.unwrap();
    let traces = store.traces_after(0, 100).await.unwrap().len();
    assert!(traces >= 7, "{traces} traces");

    let out = passkey(dir.path(), &["admin", "replay", "--all"]);
    let report = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{report}{}", text(&out.stderr));
    assert!(
        report.contains(&format!(
            "replayed {traces} trace(s): {traces} same, 0 different"
        )),
        "{report}"
    );
}

#[test]
fn admin_sync_discovers_the_local_vault_into_an_empty_database() {
    let dir = tempfile::tempdir().unwrap();
    assert!(passkey(dir.path(), &["migrate"]).status.success());
    let out = passkey(dir.path(), &["admin", "sync"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("12 records seen: 12 discovered"),
        "{}",
        text(&out.stdout)
    );
    assert!(
        text(&out.stderr).contains("12/12 records"),
        "progress is shown: {}",
        text(&out.stderr)
    );
    let again = passkey(dir.path(), &["admin", "sync"]);
    assert!(
        text(&again.stdout).contains("0 discovered, 0 rotated, 0 updated, 0 orphaned"),
        "{}",
        text(&again.stdout)
    );
}

/// #21.1: `admin sync` with Commander alone brings the records in; when the vault cannot be read
/// the error says why once (naming the setting, or the flag that fixes the service), never blames
/// the database, and exits 3 — the exit code for "the vault could not be read".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_sync_with_commander_alone_and_each_vault_failure_exits_3_saying_why_once() {
    use common::fake_commander::{FakeCommander, LOGIN_NAME};
    let commander = FakeCommander::start().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    let run = |env: Vec<(String, String)>| {
        let path = path.clone();
        tokio::task::spawn_blocking(move || passkey_with_env(&path, &["admin", "sync"], &env))
    };
    let pairs = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    assert!(passkey(dir.path(), &["migrate"]).status.success());
    let service = [
        ("PASSKEY_VAULT__BACKEND", "commander-service"),
        ("PASSKEY_VAULT__COMMANDER_URL", commander.url.as_str()),
        (
            "PASSKEY_VAULT__COMMANDER_API_KEY",
            commander.api_key.as_str(),
        ),
    ];

    let out = run(pairs(&service)).await.unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("2 folders (2 ACL changes), 3 records seen: 3 discovered"),
        "{}",
        text(&out.stdout)
    );
    assert!(!text(&out.stdout).contains(LOGIN_NAME) && !text(&out.stderr).contains(LOGIN_NAME));

    let once = |haystack: &str, needle: &str| haystack.matches(needle).count() == 1;
    // (environment, words stderr must hold exactly once)
    type Case<'a> = (Vec<(String, String)>, Vec<&'a str>);
    let cases: Vec<Case> = vec![
        (
            pairs(&[("PASSKEY_VAULT__BACKEND", "commander-service")]),
            vec!["vault.commander_url", "PASSKEY_VAULT__COMMANDER_URL"],
        ),
        (
            pairs(&[
                ("PASSKEY_VAULT__BACKEND", "commander-cli"),
                ("PASSKEY_VAULT__COMMANDER_BINARY", "/nonexistent/keeper"),
            ]),
            vec![
                "vault.commander_config_path",
                "PASSKEY_VAULT__COMMANDER_CONFIG_PATH",
            ],
        ),
        (
            [
                pairs(&service),
                pairs(&[("PASSKEY_VAULT__KSM_CONFIG", "bm90IGEga3NtIGNvbmZpZw==")]),
            ]
            .concat(),
            vec!["vault.ksm_config", "PASSKEY_VAULT__KSM_CONFIG"],
        ),
        (
            pairs(&[
                ("PASSKEY_VAULT__BACKEND", "commander-service"),
                ("PASSKEY_VAULT__COMMANDER_URL", commander.url.as_str()),
                ("PASSKEY_VAULT__COMMANDER_API_KEY", "not-the-key"),
            ]),
            vec![
                "vault.commander_api_key",
                "PASSKEY_VAULT__COMMANDER_API_KEY",
            ],
        ),
    ];
    for (env, wanted) in cases {
        let out = run(env.clone()).await.unwrap();
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(3), "{env:?}: {stderr}");
        assert!(
            stderr.starts_with("passkey: the vault could not be read: "),
            "{stderr}"
        );
        for w in wanted {
            assert!(once(&stderr, w), "{w:?} once in: {stderr}");
        }
        assert!(
            !stderr.contains("database") && !stderr.contains("sqlite"),
            "the database is not blamed: {stderr}"
        );
        assert!(!stderr.contains("bm90IGEga3Nt"), "{stderr}");
        assert!(out.stdout.is_empty(), "{}", text(&out.stdout));
    }

    // Service mode created without `list`: the admin is told the flag that fixes it, once.
    commander.forbid("list");
    let out = run(pairs(&service)).await.unwrap();
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(once(&stderr, "service-create -c"), "{stderr}");
    assert!(stderr.contains("`list`"), "{stderr}");
    assert!(
        !stderr.contains("database") && !stderr.contains("sqlite"),
        "{stderr}"
    );
}

#[test]
fn admin_job_runs_one_scheduled_job_and_records_it() {
    let dir = tempfile::tempdir().unwrap();
    let out = passkey(dir.path(), &["migrate"]);
    assert!(out.status.success(), "{}", text(&out.stderr));

    let out = passkey(dir.path(), &["admin", "job", "lease-expiry"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).starts_with("lease-expiry ok: {"),
        "{}",
        text(&out.stdout)
    );

    let out = passkey(dir.path(), &["admin", "job", "housekeeping"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("processed_activities_forgotten"),
        "{}",
        text(&out.stdout)
    );

    // An unknown job is named, with the ones that exist, and nothing runs.
    let out = passkey(dir.path(), &["admin", "job", "lease-expire"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("no job `lease-expire`; jobs: lease-expiry, preflight-retry"),
        "{}",
        text(&out.stderr)
    );
}

/// `cargo run` gives the binary every `cargo:rustc-env` variable of build.rs as well. Those must
/// not be taken for settings: `PASSKEY_GIT_SHA` once was, and `cargo run` refused to start with
/// "unknown field `git_sha`".
#[test]
fn the_variables_cargo_run_adds_from_the_build_script_are_not_settings() {
    let build_script = include_str!("../../build.rs");
    let stamped: Vec<(String, String)> = build_script
        .split("cargo:rustc-env=")
        .skip(1)
        .filter_map(|rest| rest.split_once('='))
        .map(|(name, _)| (name.to_string(), "0123456789ab".to_string()))
        .collect();
    assert!(!stamped.is_empty(), "build.rs stamps the commit");
    let dir = tempfile::tempdir().unwrap();
    let out = passkey_with_env(dir.path(), &["migrate"], &stamped);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{:?}: {}",
        stamped,
        text(&out.stderr)
    );
    assert!(dir.path().join("data/passkey.db").exists());
}

/// Rewrites one line of a file.
fn edit_line(path: &Path, n: usize, edit: impl Fn(&str) -> String) {
    let body = std::fs::read_to_string(path).unwrap();
    let lines: Vec<String> = body
        .lines()
        .enumerate()
        .map(|(i, l)| if i == n { edit(l) } else { l.to_string() })
        .collect();
    std::fs::write(path, lines.join("\n") + "\n").unwrap();
}

#[test]
fn audit_export_verifies_offline_and_a_tampered_file_names_the_first_bad_seq() {
    let dir = tempfile::tempdir().unwrap();
    assert!(passkey(dir.path(), &["migrate"]).status.success());
    let out = passkey(dir.path(), &["admin", "demo-load"]);
    assert!(out.status.success(), "{}", text(&out.stderr));

    // Export: a checkpoint is signed first with the key made in the data directory.
    let trail = dir.path().join("trail.jsonl");
    let out = passkey(
        dir.path(),
        &["audit", "export", "--out", trail.to_str().unwrap()],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let said = text(&out.stdout);
    assert!(
        said.contains("1 signed checkpoints, 1 public keys"),
        "{said}"
    );
    assert!(dir.path().join("data/audit-signing-key.p8").exists());
    let body = std::fs::read_to_string(&trail).unwrap();
    let lines: Vec<serde_json::Value> = body
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines[0]["type"], "header");
    assert_eq!(lines[0]["format"], "passkey-audit-trail");
    let events = lines.iter().filter(|l| l["type"] == "event").count();
    assert!(events > 5, "the demo load is audited");
    assert_eq!(
        lines.iter().rev().find(|l| l["type"] == "event").unwrap()["action"],
        "AUDIT_EXPORTED",
        "the export is itself recorded"
    );

    // Offline: no database, no settings needed.
    let elsewhere = tempfile::tempdir().unwrap();
    let out = passkey(
        elsewhere.path(),
        &["audit", "verify", trail.to_str().unwrap()],
    );
    assert!(
        out.status.success(),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    assert!(
        text(&out.stdout).starts_with(&format!("Audit trail verified: {events} events")),
        "{}",
        text(&out.stdout)
    );

    // One detail changed in the file (line 4 is event 3): exit 1, seq 3 named.
    let tampered = dir.path().join("tampered.jsonl");
    std::fs::copy(&trail, &tampered).unwrap();
    edit_line(&tampered, 3, |l| {
        l.replacen("\"actor\":\"", "\"actor\":\"x", 1)
    });
    let out = passkey(
        elsewhere.path(),
        &["audit", "verify", tampered.to_str().unwrap()],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stdout).contains("First bad seq 3: edited"),
        "{}",
        text(&out.stdout)
    );

    // A line removed: the gap is named.
    std::fs::copy(&trail, &tampered).unwrap();
    edit_line(&tampered, 5, |_| String::new());
    let out = passkey(
        elsewhere.path(),
        &["audit", "verify", tampered.to_str().unwrap()],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stdout).contains("First bad seq 5: deleted"),
        "{}",
        text(&out.stdout)
    );

    // Pinned to a key the file was not signed with: its checkpoint is not trusted.
    let other = tempfile::tempdir().unwrap();
    assert!(passkey(other.path(), &["migrate"]).status.success());
    let out = passkey(other.path(), &["admin", "demo-load"]);
    assert!(out.status.success());
    let other_trail = other.path().join("other.jsonl");
    assert!(
        passkey(
            other.path(),
            &["audit", "export", "--out", other_trail.to_str().unwrap()]
        )
        .status
        .success()
    );
    let out = passkey(
        elsewhere.path(),
        &[
            "audit",
            "verify",
            trail.to_str().unwrap(),
            "--trusted-keys",
            other_trail.to_str().unwrap(),
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stdout).contains("forged checkpoint — signed by unknown key"),
        "{}",
        text(&out.stdout)
    );
    let out = passkey(
        elsewhere.path(),
        &[
            "audit",
            "verify",
            trail.to_str().unwrap(),
            "--trusted-keys",
            trail.to_str().unwrap(),
        ],
    );
    assert!(out.status.success());

    // Not a trail: exit 2 with the line.
    let junk = dir.path().join("junk.jsonl");
    std::fs::write(&junk, "{\"type\":\"event\"}\n").unwrap();
    let out = passkey(
        elsewhere.path(),
        &["audit", "verify", junk.to_str().unwrap()],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("line 1"),
        "{}",
        text(&out.stderr)
    );
}

#[tokio::test]
async fn audit_export_is_incremental_and_archive_is_recorded_without_deleting() {
    let dir = tempfile::tempdir().unwrap();
    assert!(passkey(dir.path(), &["migrate"]).status.success());
    assert!(
        passkey(dir.path(), &["admin", "demo-load"])
            .status
            .success()
    );
    let first = dir.path().join("first.jsonl");
    assert!(
        passkey(
            dir.path(),
            &["audit", "export", "--out", first.to_str().unwrap()]
        )
        .status
        .success()
    );
    let header: serde_json::Value = serde_json::from_str(
        std::fs::read_to_string(&first)
            .unwrap()
            .lines()
            .next()
            .unwrap(),
    )
    .unwrap();
    let upto = header["to_seq"].as_i64().unwrap();

    // The next export starts after the first one's end, anchored by the checkpoint there.
    let next = dir.path().join("next.jsonl");
    let out = passkey(
        dir.path(),
        &[
            "audit",
            "export",
            "--out",
            next.to_str().unwrap(),
            "--from",
            &upto.to_string(),
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains(&format!("events {}–{}", upto + 1, upto + 1)),
        "only the second export's own event: {}",
        text(&out.stdout)
    );
    let out = passkey(dir.path(), &["audit", "verify", next.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stdout));
    assert!(!text(&out.stdout).contains("not vouched for"));

    // Archive up to the last checkpoint before the second export.
    let archive = dir.path().join("archive.jsonl");
    let out = passkey(
        dir.path(),
        &[
            "audit",
            "archive",
            "--before",
            &(upto + 1).to_string(),
            "--out",
            archive.to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains(&format!("events 1–{upto}")),
        "{}",
        text(&out.stdout)
    );
    let out = passkey(dir.path(), &["audit", "verify", archive.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stdout));

    // Nothing before the first checkpoint: refused, nothing written.
    let refused = dir.path().join("refused.jsonl");
    let out = passkey(
        dir.path(),
        &[
            "audit",
            "archive",
            "--before",
            "2",
            "--out",
            refused.to_str().unwrap(),
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("no signed checkpoint"));
    assert!(!refused.exists());

    let store = SqliteStore::open(&dir.path().join("data/passkey.db"), 1)
        .await
        .unwrap();
    let events = store.audit_events_after(0, 10_000).await.unwrap();
    assert_eq!(events[0].seq, 1, "archiving deletes nothing");
    let archived = events
        .iter()
        .find(|e| e.action == "AUDIT_ARCHIVED")
        .expect("the archive is recorded");
    assert_eq!(archived.actor, "admin-cli");
    assert_eq!(archived.detail.0["to_seq"], serde_json::json!(upto));
    assert_eq!(archived.detail.0["file"], "archive.jsonl");
}

#[test]
fn audit_export_to_an_unwritable_place_records_nothing() {
    let dir = tempfile::tempdir().unwrap();
    assert!(passkey(dir.path(), &["migrate"]).status.success());
    let out = passkey(
        dir.path(),
        &["audit", "export", "--out", "/nonexistent-dir/trail.jsonl"],
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("/nonexistent-dir/trail.jsonl"),
        "{}",
        text(&out.stderr)
    );
    // Nothing was recorded: a fresh export holds no AUDIT_EXPORTED before its own.
    let trail = dir.path().join("trail.jsonl");
    assert!(
        passkey(
            dir.path(),
            &["audit", "export", "--out", trail.to_str().unwrap()]
        )
        .status
        .success()
    );
    let exported = std::fs::read_to_string(&trail)
        .unwrap()
        .matches("\"AUDIT_EXPORTED\"")
        .count();
    assert_eq!(exported, 1);
}

/// A complete production configuration on loopback fakes that are never called before the first
/// request (Twilio, Entra, Commander), for start-up tests.
fn production_env(dir: &Path) -> Vec<(String, String)> {
    [
        ("PASSKEY_PROFILE", "production"),
        ("PASSKEY_BIND", "127.0.0.1:0"),
        ("PASSKEY_PUBLIC_URL", "https://passkey.contoso.example"),
        (
            "PASSKEY_BOT__APP_ID",
            "6a0f3c52-94b1-4e7d-8c2a-1b5e9f0d7a34",
        ),
        ("PASSKEY_BOT__APP_PASSWORD", "pw"),
        ("PASSKEY_BOT__ALLOWED_TENANTS", "tenant-1"),
        ("PASSKEY_VAULT__BACKEND", "commander-cli"),
        ("PASSKEY_OTP__SMS_PROVIDER", "twilio"),
        (
            "PASSKEY_OTP__TWILIO_ACCOUNT_SID",
            "AC0123456789abcdef0123456789abcdef",
        ),
        ("PASSKEY_OTP__TWILIO_AUTH_TOKEN", "twilio-auth-token-value"),
        ("PASSKEY_OTP__SMS_FROM", "+18005550100"),
        (
            "PASSKEY_WEB__OIDC__CLIENT_ID",
            "3c1a9e77-2b4d-4f60-8e1a-6d5c4b3a2f10",
        ),
        ("PASSKEY_WEB__OIDC__CLIENT_SECRET", "web-secret"),
        ("PASSKEY_WEB__OIDC__TENANT_ID", "tenant-1"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .chain([(
        "PASSKEY_VAULT__COMMANDER_CONFIG_PATH".to_string(),
        dir.join("keeper.json").display().to_string(),
    )])
    .collect()
}

/// One refusal lists everything to fix: a production start with an incomplete configuration and
/// no data-encryption key names both, and says which command makes the key (#21.5).
#[test]
fn a_production_refusal_lists_the_missing_data_key_with_the_configuration_problems() {
    let dir = tempfile::tempdir().unwrap();
    let out = passkey_with_env(
        dir.path(),
        &["serve"],
        &[("PASSKEY_PROFILE".to_string(), "production".to_string())],
    );
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("bot.app_id"), "{err}");
    assert!(err.contains("no data-encryption key at"), "{err}");
    assert!(err.contains("passkey admin keys init"), "{err}");
    assert_eq!(
        err.matches("refusing to start").count(),
        1,
        "one refusal: {err}"
    );
    assert!(!dir.path().join("data").exists(), "nothing was created");
}

/// `passkey admin keys init` makes the production key once, privately, says where; refuses to
/// replace it; and production starts after it, its banner naming the profile and public_url.
#[cfg(unix)]
#[test]
fn keys_init_creates_the_production_key_once_and_start_up_passes_after_it() {
    use std::io::BufRead as _;
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("keeper.json"), "{}").unwrap();
    let env = production_env(dir.path());
    let key_file = dir
        .path()
        .join("data")
        .join(passkey::crypto::LOCAL_KEY_FILE);

    let refused = passkey_with_env(dir.path(), &["serve"], &env);
    assert_eq!(refused.status.code(), Some(2));
    assert!(
        text(&refused.stderr).contains("passkey admin keys init"),
        "{}",
        text(&refused.stderr)
    );

    let out = passkey_with_env(dir.path(), &["admin", "keys", "init"], &env);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let said = text(&out.stdout);
    assert!(
        said.contains(&key_file.display().to_string()) && said.contains("dek-"),
        "says where it wrote: {said}"
    );
    assert_eq!(
        std::fs::metadata(&key_file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let written = std::fs::read(&key_file).unwrap();
    let key_b64 = String::from_utf8(written.clone())
        .unwrap()
        .split_whitespace()
        .last()
        .unwrap()
        .to_string();
    assert!(!said.contains(&key_b64), "the key is never printed");

    let again = passkey_with_env(dir.path(), &["admin", "keys", "init"], &env);
    assert_eq!(again.status.code(), Some(1));
    assert!(
        text(&again.stderr).contains("already exists"),
        "{}",
        text(&again.stderr)
    );
    assert_eq!(
        std::fs::read(&key_file).unwrap(),
        written,
        "the key is kept"
    );

    let mut command = Command::new(env!("CARGO_BIN_EXE_passkey"));
    command.current_dir(dir.path()).arg("serve");
    for (name, _) in std::env::vars() {
        if name.starts_with("PASSKEY_") || name == "DATABASE_URL" || name == "RUST_LOG" {
            command.env_remove(name);
        }
    }
    let mut child = command
        .env("PASSKEY_DATA_DIR", dir.path().join("data"))
        .env("PASSKEY_LOG__FILTER", "warn")
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let banner: Vec<String> = std::io::BufReader::new(child.stdout.take().unwrap())
        .lines()
        .take(3)
        .map(Result::unwrap)
        .collect();
    child.kill().unwrap();
    let rest = child.wait_with_output().unwrap();
    assert!(
        banner.iter().any(|l| l.trim() == "profile: production"),
        "{banner:?} {}",
        text(&rest.stderr)
    );
    assert!(
        banner
            .iter()
            .any(|l| l.trim() == "public_url: https://passkey.contoso.example"),
        "{banner:?}"
    );
}

/// `keys init` for a Key Vault-wrapped key without the key's name refuses, naming the setting and
/// its variable, and writes nothing.
#[test]
fn keys_init_without_the_wrapping_key_names_the_setting_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let out = passkey_with_env(
        dir.path(),
        &["admin", "keys", "init"],
        &[(
            "PASSKEY_CRYPTO__KEY_WRAPPER".to_string(),
            "key-vault".to_string(),
        )],
    );
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("crypto.key_vault_key") && err.contains("PASSKEY_CRYPTO__KEY_VAULT_KEY"),
        "{err}"
    );
    assert!(
        !dir.path()
            .join("data")
            .join(passkey::crypto::LOCAL_KEY_FILE)
            .exists()
    );
}

/// `passkey healthcheck` is the container image's HEALTHCHECK (distroless has no curl): exit 0
/// when `/healthz` answers 200, 1 when it answers anything else or nothing listens. Without
/// `--url` it probes loopback at the port of `bind`.
#[tokio::test]
async fn healthcheck_exits_0_when_healthz_answers_and_1_otherwise() {
    let dir = tempfile::tempdir().unwrap();
    let server_dir = tempfile::tempdir().unwrap();
    let db = common::fresh_sqlite().await;
    let server = common::TestServer::start(
        common::test_settings(server_dir.path(), &[]),
        db.store.clone(),
    )
    .await;
    let bind = server.base.trim_start_matches("http://").to_string();
    let run = |args: Vec<String>, env: Vec<(String, String)>| {
        let dir = dir.path().to_path_buf();
        tokio::task::spawn_blocking(move || {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            passkey_with_env(&dir, &args, &env)
        })
    };
    let healthy = run(
        vec!["healthcheck".into(), "--url".into(), server.url("/healthz")],
        vec![],
    )
    .await
    .unwrap();
    assert_eq!(healthy.status.code(), Some(0), "{}", text(&healthy.stderr));
    assert!(healthy.stdout.is_empty(), "{}", text(&healthy.stdout));

    // The default URL: the port of `bind` on loopback.
    let by_bind = run(
        vec!["healthcheck".into()],
        vec![("PASSKEY_BIND".into(), bind.clone())],
    )
    .await
    .unwrap();
    assert_eq!(by_bind.status.code(), Some(0), "{}", text(&by_bind.stderr));

    let not_found = run(
        vec![
            "healthcheck".into(),
            "--url".into(),
            server.url("/nothing-here"),
        ],
        vec![],
    )
    .await
    .unwrap();
    assert_eq!(not_found.status.code(), Some(1));
    assert!(
        text(&not_found.stderr).contains("404"),
        "{}",
        text(&not_found.stderr)
    );

    server.stop().await;
    let down = run(
        vec!["healthcheck".into(), "--timeout-secs".into(), "2".into()],
        vec![("PASSKEY_BIND".into(), bind)],
    )
    .await
    .unwrap();
    assert_eq!(down.status.code(), Some(1));
    assert!(
        text(&down.stderr).contains("nothing listens"),
        "{}",
        text(&down.stderr)
    );
}

/// (#17.3) A bad cron expression under `lifecycle.schedules` stops the binary before it does
/// anything, naming the key; so does an unknown job.
#[test]
fn a_bad_job_schedule_stops_the_binary_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    for (var, named) in [
        (
            "PASSKEY_LIFECYCLE__SCHEDULES__VAULT_SYNC",
            "lifecycle.schedules.vault_sync: \"0 99 * * *\" is not a cron expression",
        ),
        (
            "PASSKEY_LIFECYCLE__SCHEDULES__NIGHTLY",
            "lifecycle.schedules.nightly: no such job",
        ),
    ] {
        let out = passkey_with_env(
            dir.path(),
            &["migrate"],
            &[(var.to_string(), "0 99 * * *".to_string())],
        );
        assert!(!out.status.success(), "{var}: {}", text(&out.stdout));
        assert!(text(&out.stderr).contains(named), "{}", text(&out.stderr));
    }
    assert!(
        !dir.path().join("data").join("passkey.db").exists(),
        "nothing was created"
    );
    let out = passkey_with_env(
        dir.path(),
        &["migrate"],
        &[(
            "PASSKEY_LIFECYCLE__SCHEDULES__VAULT_SYNC".to_string(),
            "0 0 2 * * *".to_string(),
        )],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
}

#[test]
fn report_reviews_summarises_campaigns_as_csv_json_and_markdown() {
    let dir = tempfile::tempdir().unwrap();
    for args in [&["migrate"][..], &["admin", "demo-load"]] {
        let out = passkey(dir.path(), args);
        assert!(out.status.success(), "{}", text(&out.stderr));
    }
    // No campaign yet: a header and nothing else.
    let out = passkey(dir.path(), &["report", "reviews", "--format", "csv"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).lines().count(), 1);

    let out = passkey(dir.path(), &["admin", "job", "access-reviews"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("\"reviews\":12"),
        "{}",
        text(&out.stdout)
    );

    let out = passkey(dir.path(), &["report", "reviews", "--format", "csv"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let csv = text(&out.stdout);
    let lines: Vec<&str> = csv.split("\r\n").collect();
    assert!(
        lines[0].starts_with("campaign_id,started_at,started_by,"),
        "{csv}"
    );
    assert!(lines[1].starts_with("1,"), "{csv}");
    assert!(lines[1].contains(",system:access-reviews,"), "{csv}");

    let out = passkey(
        dir.path(),
        &["report", "reviews", "--campaign", "1", "--format", "json"],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json[0]["reviews"], 12);
    assert_eq!(json[0]["reviews_open"], 12);
    assert_eq!(json[0]["completion_percent"], 0);

    let out = passkey(dir.path(), &["report", "reviews"]);
    assert!(text(&out.stdout).starts_with("| campaign_id | started_at |"));

    // An unknown campaign: said, exit 1, nothing on stdout.
    let out = passkey(dir.path(), &["report", "reviews", "--campaign", "9"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("no access review campaign #9"));
    assert!(out.stdout.is_empty());
}
