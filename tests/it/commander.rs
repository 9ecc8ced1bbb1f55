//! The Commander bridge against a fake `keeper` executable (tests/fake-keeper/keeper) and a fake
//! service-mode server: every answer in shared/keeper.md classified, the cleanup after an unclear
//! create, the subprocess timeout, argument refusal, and no share URL in logs or errors; folder
//! ACLs (`list-sf`, then `get` on each shared folder) and `pam rotation info` on both transports.

use crate::common::fake_commander::{
    DB_FOLDER as SF_DATABASES, Failure, FakeCommander, FakeFolder, FakeMember, FakeRecord,
    FakeShare, LOGIN_NAME as LIST_LOGIN_NAME, RemoveAnswer, WEB_FOLDER as SF_WEB, share_key_for,
};
use crate::common::logs;
use crate::common::redirector::Redirector;

use passkey::domain::{Clock, ManualClock, Timestamp};
use passkey::domain::{FolderPermission, VaultPrincipalType};
use passkey::vault::classify::says;
use passkey::vault::{
    CommanderCli, CommanderReader, CommanderService, ErrorClass, FolderAclSource, OneTimeSharer,
    Removed, RotationChecker, Share, SharedFolder, VaultError, VaultReader, share_id_from_url,
};
use secrecy::SecretString;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

const UID: &str = "AbCdEfGhIjKlMnOpQrStUv";
const API_KEY: &str = "fake-commander-api-key";

fn t0() -> Timestamp {
    Timestamp::parse("2026-11-23T09:00:00Z").unwrap()
}

fn clock() -> Arc<dyn Clock> {
    Arc::new(ManualClock::new(t0()))
}

/// Neither a URL nor its key may ever show up in what we print or log.
fn assert_no_url(text: &str) {
    assert!(
        !text.contains("vault/share") && !text.contains("https://keepersecurity"),
        "a share URL leaked: {}",
        text.replace("vault/share", "vault/sh…")
    );
}

fn assert_error_is_clean(e: &VaultError) {
    assert_no_url(&e.to_string());
    assert_no_url(&e.raw);
    assert_no_url(&format!("{e:?}"));
}

fn assert_share_is_clean(share: &Share) {
    assert_no_url(&format!("{share:?}"));
    assert!(share.url.expose().starts_with("https://"));
    assert_eq!(
        share_id_from_url(share.url.expose()).as_deref(),
        Some(share.share_id.as_str())
    );
}

// ---------------------------------------------------------------------------------------------
// The fake CLI.

/// One fake `keeper` set up for a test: a wrapper that sets the scenario, then runs the fake.
struct FakeCli {
    dir: tempfile::TempDir,
}

impl FakeCli {
    fn new(scenario: &str, removes: &str) -> FakeCli {
        FakeCli::with_reads(scenario, removes, "ok", "{}")
    }

    /// With how `list-sf`/`get` answer (`FAKE_KEEPER_SF`) and per-record rotation answers.
    fn reads(sf: &str, rotations: &str) -> FakeCli {
        FakeCli::with_reads("ok", "unknown", sf, rotations)
    }

    /// With how `list` answers (`FAKE_KEEPER_RECORDS`).
    fn with_records(records: &str) -> FakeCli {
        let cli = FakeCli::with_reads("ok", "unknown", "ok", "{}");
        crate::common::set_fake_keeper_env(cli.dir.path(), "FAKE_KEEPER_RECORDS", records);
        cli
    }

    fn with_reads(scenario: &str, removes: &str, sf: &str, rotations: &str) -> FakeCli {
        FakeCli {
            dir: crate::common::fake_keeper_dir(&[
                ("FAKE_KEEPER_SCENARIO", scenario),
                ("FAKE_KEEPER_REMOVE", removes),
                ("FAKE_KEEPER_SF", sf),
                ("FAKE_KEEPER_ROTATION", rotations),
            ]),
        }
    }

    fn sharer(&self, timeout: Duration) -> CommanderCli {
        CommanderCli::new(
            self.dir.path().join("keeper"),
            self.config(),
            timeout,
            clock(),
        )
    }

    fn config(&self) -> PathBuf {
        self.dir.path().join("keeper-config.json")
    }

    /// Every call the fake saw, in order.
    fn calls(&self) -> Vec<serde_json::Value> {
        match std::fs::read_to_string(self.dir.path().join("calls.jsonl")) {
            Ok(text) => text
                .lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect(),
            Err(_) => Vec::new(),
        }
    }

    /// The `one-time-share` part of each call's argv.
    fn commands(&self) -> Vec<Vec<String>> {
        self.calls()
            .iter()
            .map(|c| {
                c["argv"].as_array().unwrap()[4..]
                    .iter()
                    .map(|a| a.as_str().unwrap().to_string())
                    .collect()
            })
            .collect()
    }
}

impl FakeCli {
    /// What the fake's argparse made of each `one-time-share` command: its positionals, by name.
    fn parsed(&self) -> Vec<serde_json::Value> {
        match std::fs::read_to_string(self.dir.path().join("calls.jsonl.parsed")) {
            Ok(text) => text
                .lines()
                .map(|l| {
                    serde_json::from_str::<serde_json::Value>(l).unwrap()["positionals"].clone()
                })
                .collect(),
            Err(_) => Vec::new(),
        }
    }

    /// Each call's command words, after `--config FILE --fail-on-throttle`.
    fn full_commands(&self) -> Vec<Vec<String>> {
        self.calls()
            .iter()
            .map(|c| {
                c["argv"].as_array().unwrap()[3..]
                    .iter()
                    .map(|a| a.as_str().unwrap().to_string())
                    .collect()
            })
            .collect()
    }
}

fn strings(words: &[&str]) -> Vec<String> {
    words.iter().map(|w| w.to_string()).collect()
}

#[tokio::test]
async fn cli_create_runs_keeper_with_an_argv_and_utc_and_returns_the_share() {
    let fake = FakeCli::new("ok", "unknown");
    let sharer = fake.sharer(Duration::from_secs(20));
    // 89.5 minutes: Keeper takes whole minutes, so we ask for 90 (never less than granted).
    let share = sharer
        .create(UID, time::Duration::seconds(89 * 60 + 30), "passkey-req-1")
        .await
        .unwrap();
    assert_share_is_clean(&share);
    assert_eq!(share.expires_at, t0().plus(time::Duration::minutes(90)));

    let calls = fake.calls();
    assert_eq!(calls.len(), 1);
    let config = fake.config().display().to_string();
    let argv: Vec<String> = serde_json::from_value(calls[0]["argv"].clone()).unwrap();
    assert_eq!(
        argv,
        strings(&[
            "--config",
            &config,
            "--fail-on-throttle",
            "one-time-share",
            "create",
            "--expire",
            "90mi",
            "--name",
            "passkey-req-1",
            "--",
            UID,
        ])
    );
    assert_eq!(calls[0]["tz"], "UTC");
    assert_eq!(calls[0]["storage"], "file");
}

#[tokio::test]
async fn cli_every_row_of_the_table_is_classified() {
    use ErrorClass::*;
    let rows = [
        ("no-expire", Terminal, says::BUG),
        ("too-long", Terminal, says::TOO_LONG),
        ("not-found", Terminal, says::NO_RECORD),
        ("pam", Terminal, says::PAM),
        ("throttled", Transient, says::BUSY),
        ("denied", Terminal, says::REFUSED),
        ("login-broken", NeedsOperator, says::NEEDS_OPERATOR),
        ("session-expired", NeedsOperator, says::NEEDS_OPERATOR),
        ("empty", Transient, says::NO_ANSWER),
        ("chatter", Transient, says::NO_ANSWER),
    ];
    for (scenario, class, message) in rows {
        let fake = FakeCli::new(scenario, "unknown");
        let e = fake
            .sharer(Duration::from_secs(20))
            .create(UID, time::Duration::hours(1), "passkey-req-2")
            .await
            .unwrap_err();
        assert_eq!(
            (e.class, e.message.as_str()),
            (class, message),
            "{scenario}"
        );
        assert_error_is_clean(&e);
        assert!(!e.raw.is_empty(), "{scenario}: raw keeps the tool's words");
    }
}

#[tokio::test]
async fn cli_remove_and_list() {
    let fake = FakeCli::new("ok", "removed,unknown");
    let sharer = fake.sharer(Duration::from_secs(20));
    assert_eq!(
        sharer.remove(UID, "c2hhcmUtb25l").await.unwrap(),
        Removed::Removed
    );
    assert_eq!(
        sharer.remove(UID, "c2hhcmUtb25l").await.unwrap(),
        Removed::NotFound
    );
    let shares = sharer.list(UID).await.unwrap();
    assert_eq!(shares.len(), 2, "the row without a share id is skipped");
    assert_eq!(shares[0].share_id, "c2hhcmUtb25l");
    assert_eq!(shares[0].name.as_deref(), Some("passkey-req-1"));
    assert_eq!(shares[0].opened, None);
    assert_eq!(
        shares[0].expires,
        Some(Timestamp::parse("2026-11-23T10:00:00Z").unwrap())
    );
    assert_eq!(
        shares[1].opened,
        Some(Timestamp::parse("2026-11-22T08:31:15Z").unwrap())
    );
    assert_eq!(shares[1].status, "Opened");
    assert_eq!(
        fake.commands(),
        vec![
            strings(&["remove", "--", UID, "c2hhcmUtb25l"]),
            strings(&["remove", "--", UID, "c2hhcmUtb25l"]),
            strings(&["list", "--format", "json", "--", UID]),
        ]
    );
}

#[tokio::test]
async fn cli_unclear_create_is_cleaned_up_by_name_until_none_is_left() {
    let fake = FakeCli::new("empty", "removed,removed,unknown");
    let e = fake
        .sharer(Duration::from_secs(20))
        .create(UID, time::Duration::hours(1), "passkey-req-7")
        .await
        .unwrap_err();
    assert_eq!(e.class, ErrorClass::Transient);
    let remove = strings(&["remove", "--", UID, "passkey-req-7"]);
    assert_eq!(
        fake.commands(),
        vec![
            strings(&[
                "create",
                "--expire",
                "60mi",
                "--name",
                "passkey-req-7",
                "--",
                UID
            ]),
            remove.clone(),
            remove.clone(),
            remove,
        ]
    );
}

#[tokio::test]
async fn cli_clear_refusals_need_no_cleanup() {
    for scenario in ["throttled", "not-found", "denied"] {
        let fake = FakeCli::new(scenario, "unknown");
        fake.sharer(Duration::from_secs(20))
            .create(UID, time::Duration::hours(1), "passkey-req-8")
            .await
            .unwrap_err();
        assert_eq!(fake.commands().len(), 1, "{scenario}: create only");
    }
}

#[tokio::test]
async fn cli_timeout_kills_keeper_then_cleans_up() {
    let fake = FakeCli::new("slow", "unknown");
    let started = std::time::Instant::now();
    let e = fake
        .sharer(Duration::from_millis(1500))
        .create(UID, time::Duration::hours(1), "passkey-req-9")
        .await
        .unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "the timeout held"
    );
    assert_eq!(e.class, ErrorClass::Transient);
    assert!(e.message.contains("too long"), "{}", e.message);
    let calls = fake.calls();
    let pid = calls[0]["pid"].as_u64().unwrap();
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists(),
        "keeper (pid {pid}) outlived its timeout"
    );
    // A timed-out create may have made a link: it was removed by name afterwards.
    assert_eq!(
        fake.commands()[1],
        strings(&["remove", "--", UID, "passkey-req-9"])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_runs_one_keeper_at_a_time_per_config() {
    let fake = FakeCli::new("pause", "unknown");
    let sharer = Arc::new(fake.sharer(Duration::from_secs(20)));
    let (a, b) = tokio::join!(
        sharer.create(UID, time::Duration::hours(1), "passkey-req-20"),
        sharer.create(UID, time::Duration::hours(1), "passkey-req-21"),
    );
    a.unwrap();
    b.unwrap();
    let started: Vec<f64> = fake
        .calls()
        .iter()
        .map(|c| c["started"].as_f64().unwrap())
        .collect();
    assert_eq!(started.len(), 2);
    assert!(
        (started[1] - started[0]).abs() >= 0.9,
        "the second keeper started while the first was still running: {started:?}"
    );
}

#[tokio::test]
async fn cli_refuses_arguments_that_could_change_the_command_before_running_anything() {
    let fake = FakeCli::new("ok", "unknown");
    let sharer = fake.sharer(Duration::from_secs(20));
    for uid in [
        "AbCdEfGhIjKlMnOp;rm -rf",
        "AbCdEfGhIjKl MnOpQrStU",
        "AbCdEfGhIjKlMnOpQrS'$(",
    ] {
        let e = sharer
            .create(uid, time::Duration::hours(1), "passkey-req-1")
            .await
            .unwrap_err();
        assert_eq!(
            (e.class, e.message.as_str()),
            (ErrorClass::Terminal, "invalid record uid")
        );
        assert!(sharer.remove(uid, "passkey-req-1").await.is_err());
        assert!(sharer.list(uid).await.is_err());
    }
    for name in ["req 1; keeper whoami", "--expire", "a\"b", ""] {
        let e = sharer
            .create(UID, time::Duration::hours(1), name)
            .await
            .unwrap_err();
        assert_eq!(
            (e.class, e.message.as_str()),
            (ErrorClass::Terminal, "invalid share name")
        );
    }
    let e = sharer
        .create(UID, time::Duration::days(183), "passkey-req-1")
        .await
        .unwrap_err();
    assert_eq!(e.class, ErrorClass::Terminal);
    assert!(fake.calls().is_empty(), "keeper was never started");
}

// ---------------------------------------------------------------------------------------------
// The fake service mode (`common::fake_commander`).

/// The common fake service (`common::fake_commander`) set up as these tests want it: one
/// database credential (`UID`, whose rotation is scheduled), a KSM application record and a PAM
/// machine; the folders `Databases` (holding `UID`) and `Web servers`; one live share of `UID`;
/// share keys made from their names alone; `create` and the reads answering as `create` and
/// `reads` say (`ok`, or a failure by the status it answers with), and `remove` as `removes`
/// script.
struct FakeService {
    base: String,
    commander: FakeCommander,
}

/// The read commands a service must be created with (`service-create -c`).
const READS: [&str; 4] = ["list", "list-sf", "get", "pam"];

impl FakeService {
    async fn start(create: &'static str, removes: &[&'static str]) -> FakeService {
        FakeService::start_with_reads(create, removes, "ok").await
    }

    async fn start_with_reads(
        create: &'static str,
        removes: &[&'static str],
        reads: &'static str,
    ) -> FakeService {
        let commander = FakeCommander::start_empty().await;
        commander.share_keys_from_names();
        commander.set_records(vec![
            FakeRecord::new(UID, "databaseCredentials", "db-prod", LIST_LOGIN_NAME),
            FakeRecord::new("KsmApp0000000000000004", "app", "Passkey KSM app", ""),
            FakeRecord::new("WebAdmin00000000000002", "pamMachine", "web-admin", "root"),
        ]);
        commander.set_folders(vec![
            FakeFolder {
                uid: SF_DATABASES.into(),
                name: "Databases".into(),
                members: vec![
                    FakeMember::owner("alice@contoso.example"),
                    FakeMember {
                        manage_records: true,
                        ..FakeMember::viewer("carol@contoso.example")
                    },
                    FakeMember {
                        team: true,
                        manage_users: true,
                        ..FakeMember::viewer("DBA")
                    },
                ],
                records: vec![UID.into()],
            },
            FakeFolder {
                uid: SF_WEB.into(),
                name: "Web servers".into(),
                members: vec![FakeMember::viewer("erin@contoso.example")],
                records: vec![],
            },
        ]);
        commander.set_rotation(
            UID,
            serde_json::json!({"status":"RRS_ONLINE","ready_to_rotate":true,"disabled":false,
                "schedule_type":"scheduled",
                "schedule_data":"[{\"type\": \"WEEKLY\", \"utcTime\": \"08:00\", \"weekday\": \"SUNDAY\", \"intervalCount\": 1}]"}),
        );
        commander.add_share(FakeShare {
            record_uid: UID.into(),
            share_id: "c2hhcmUtb25l".into(),
            name: "passkey-req-1".into(),
        });
        let failure = |mode: &str| match mode {
            "forbidden" => Failure::Forbidden,
            "429" | "throttled" => Failure::Throttled,
            "503" => Failure::Busy,
            "504" => Failure::QueueTimeout,
            "not-found" => Failure::NoRecord,
            "denied" => Failure::Denied,
            "500" => Failure::Internal,
            "no-url" => Failure::NoUrl,
            "slow" => Failure::Slow,
            other => panic!("unknown mode {other}"),
        };
        if create != "ok" {
            commander.fail("one-time-share create", failure(create));
        }
        match reads {
            "ok" => {}
            "forbidden" => READS.iter().for_each(|w| commander.forbid(w)),
            mode => READS
                .iter()
                .for_each(|w| commander.fail(&format!("{w} "), failure(mode))),
        }
        let removes: Vec<RemoveAnswer> = removes
            .iter()
            .map(|r| match *r {
                "removed" => RemoveAnswer::Removed,
                "503" => RemoveAnswer::Busy,
                _ => RemoveAnswer::NoSuchShare,
            })
            .collect();
        commander.script_removes(&removes);
        FakeService {
            base: commander.url.clone(),
            commander,
        }
    }

    fn sharer(&self, key: &str, timeout: Duration) -> CommanderService {
        CommanderService::new(&self.base, SecretString::from(key), timeout, clock()).unwrap()
    }

    fn seen(&self) -> Vec<String> {
        self.commander.commands()
    }

    fn parsed(&self) -> Vec<Vec<String>> {
        self.commander.parsed()
    }
}

// ---------------------------------------------------------------------------------------------
// Share ids that look like options (#15.1): Keeper's ids are base64url, so about one in 64 begins
// with '-'. Both fakes read their words the way Commander's argparse does.

/// A record uid that begins with '-', as one in 64 of Keeper's do.
const DASH_UID: &str = "-bCdEfGhIjKlMnOpQrStUv";

/// Request names whose share (as both fakes make it: key = SHA-256 of the name) has an id
/// beginning with `prefix`.
fn name_whose_share_id_starts_with(prefix: &str) -> String {
    (0..1_000_000)
        .map(|n| format!("passkey-req-{n}"))
        .find(|name| {
            let url = format!(
                "https://keepersecurity.com/vault/share/#{}",
                share_key_for(name)
            );
            share_id_from_url(&url)
                .is_some_and(|id| id.starts_with(prefix) && !id[prefix.len()..].starts_with('-'))
        })
        .expect("a name for the prefix")
}

/// Ids with '=' and '_' and option-like shapes, as `remove` must pass them on unchanged.
const AWKWARD_IDS: [&str; 6] = [
    "-c2hhcmUtb25l",
    "--c2hhcmUtdHdv",
    "--expire=1mi",
    "c2hh=cmU=",
    "_c2hh_cmU_",
    "-a=b_c",
];

#[tokio::test]
async fn cli_share_ids_beginning_with_a_dash_are_removed() {
    let fake = FakeCli::new("ok", "removed");
    let sharer = fake.sharer(Duration::from_secs(20));
    let mut expected = Vec::new();
    for prefix in ["-", "--"] {
        let share = sharer
            .create(
                UID,
                time::Duration::hours(1),
                &name_whose_share_id_starts_with(prefix),
            )
            .await
            .unwrap();
        assert!(share.share_id.starts_with(prefix), "{}", share.share_id);
        assert_eq!(
            sharer.remove(UID, &share.share_id).await.unwrap(),
            Removed::Removed,
            "{}",
            share.share_id
        );
        expected.push((UID.to_string(), share.share_id));
    }
    for id in AWKWARD_IDS {
        assert_eq!(
            sharer.remove(UID, id).await.unwrap(),
            Removed::Removed,
            "{id}"
        );
        expected.push((UID.to_string(), id.to_string()));
    }
    assert_eq!(
        sharer.remove(DASH_UID, "-c2hhcmU").await.unwrap(),
        Removed::Removed
    );
    expected.push((DASH_UID.to_string(), "-c2hhcmU".to_string()));
    // Commander read each as the share to remove, of that record: nothing was taken for an option.
    let removed: Vec<(String, String)> = fake
        .parsed()
        .iter()
        .filter(|p| p.get("share").is_some())
        .map(|p| {
            (
                p["record"].as_str().unwrap().to_string(),
                p["share"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(removed, expected);
    assert_eq!(sharer.list(DASH_UID).await.unwrap().len(), 2);
}

#[tokio::test]
async fn service_share_ids_beginning_with_a_dash_are_removed() {
    let fake = FakeService::start("ok", &["removed"]).await;
    let sharer = fake.sharer(API_KEY, Duration::from_secs(10));
    let mut expected = Vec::new();
    for prefix in ["-", "--"] {
        let name = name_whose_share_id_starts_with(prefix);
        let share = sharer
            .create(UID, time::Duration::hours(1), &name)
            .await
            .unwrap();
        assert!(share.share_id.starts_with(prefix), "{}", share.share_id);
        expected.push(vec![UID.to_string()]);
        assert_eq!(
            sharer.remove(UID, &share.share_id).await.unwrap(),
            Removed::Removed,
            "{}",
            share.share_id
        );
        expected.push(vec![UID.to_string(), share.share_id]);
    }
    for id in AWKWARD_IDS {
        assert_eq!(
            sharer.remove(UID, id).await.unwrap(),
            Removed::Removed,
            "{id}"
        );
        expected.push(vec![UID.to_string(), id.to_string()]);
    }
    assert_eq!(
        sharer.remove(DASH_UID, "-c2hhcmU").await.unwrap(),
        Removed::Removed
    );
    expected.push(vec![DASH_UID.to_string(), "-c2hhcmU".to_string()]);
    assert_eq!(fake.parsed(), expected);
}

#[tokio::test]
async fn service_create_sends_the_command_with_the_api_key() {
    let fake = FakeService::start("ok", &[]).await;
    let share = fake
        .sharer(API_KEY, Duration::from_secs(10))
        .create(UID, time::Duration::minutes(30), "passkey-req-3")
        .await
        .unwrap();
    assert_share_is_clean(&share);
    assert_eq!(share.expires_at, t0().plus(time::Duration::minutes(30)));
    assert_eq!(
        fake.seen(),
        vec![format!(
            "one-time-share create --expire 30mi --name passkey-req-3 -- {UID}"
        )]
    );
}

#[tokio::test]
async fn service_every_status_is_classified() {
    use ErrorClass::*;
    let rows = [
        ("forbidden", Terminal, says::MISCONFIGURED),
        ("429", Transient, says::BUSY),
        ("503", Transient, says::BUSY),
        ("504", Transient, says::BUSY),
        ("not-found", Terminal, says::NO_RECORD),
        ("denied", Terminal, says::REFUSED),
        ("500", Transient, says::NO_ANSWER),
        ("no-url", Transient, says::NO_ANSWER),
    ];
    for (mode, class, message) in rows {
        let fake = FakeService::start(mode, &["unknown"]).await;
        let e = fake
            .sharer(API_KEY, Duration::from_secs(10))
            .create(UID, time::Duration::hours(1), "passkey-req-4")
            .await
            .unwrap_err();
        assert_eq!((e.class, e.message.as_str()), (class, message), "{mode}");
        assert_error_is_clean(&e);
    }
}

/// A service URL that answers with a redirect (a moved or hostile endpoint) is refused, not
/// followed: the `api-key` header and the command would go along to wherever it points.
#[tokio::test]
async fn service_a_redirect_is_refused_and_the_api_key_goes_nowhere_else() {
    let fake = FakeService::start("ok", &[]).await;
    let redirector = Redirector::start(&fake.base).await;
    let e = CommanderService::new(
        &redirector.base,
        SecretString::from(API_KEY),
        Duration::from_secs(10),
        clock(),
    )
    .unwrap()
    .create(UID, time::Duration::hours(1), "passkey-req-5")
    .await
    .unwrap_err();
    assert_eq!(
        (e.class, e.message.as_str()),
        (ErrorClass::Terminal, says::MISCONFIGURED),
        "{}",
        e.raw
    );
    assert_error_is_clean(&e);
    assert!(!e.raw.contains(API_KEY));
    assert!(redirector.hits() >= 1);
    assert!(
        fake.seen().is_empty(),
        "the command never reached the redirect's target"
    );
}

#[tokio::test]
async fn service_a_wrong_api_key_is_a_configuration_fault() {
    let fake = FakeService::start("ok", &[]).await;
    let e = fake
        .sharer("wrong-key", Duration::from_secs(10))
        .create(UID, time::Duration::hours(1), "passkey-req-5")
        .await
        .unwrap_err();
    assert_eq!(
        (e.class, e.message.as_str()),
        (ErrorClass::Terminal, says::MISCONFIGURED)
    );
    assert!(e.raw.contains("valid api key"), "{}", e.raw);
    assert!(fake.seen().is_empty());
}

#[tokio::test]
async fn service_unclear_create_is_cleaned_up_by_name_in_order() {
    let fake = FakeService::start("504", &["removed", "unknown"]).await;
    let e = fake
        .sharer(API_KEY, Duration::from_secs(10))
        .create(UID, time::Duration::hours(1), "passkey-req-6")
        .await
        .unwrap_err();
    assert_eq!(e.class, ErrorClass::Transient);
    let remove = format!("one-time-share remove -- {UID} passkey-req-6");
    assert_eq!(
        fake.seen(),
        vec![
            format!("one-time-share create --expire 60mi --name passkey-req-6 -- {UID}"),
            remove.clone(),
            remove,
        ]
    );
}

#[tokio::test]
async fn service_cleanup_is_bounded_and_clear_refusals_skip_it() {
    let fake = FakeService::start("500", &["503"]).await;
    fake.sharer(API_KEY, Duration::from_secs(10))
        .create(UID, time::Duration::hours(1), "passkey-req-6")
        .await
        .unwrap_err();
    assert_eq!(
        fake.seen().len(),
        1 + 5,
        "create, then five removes, then stop"
    );

    for mode in ["429", "503", "not-found", "forbidden"] {
        let fake = FakeService::start(mode, &["unknown"]).await;
        fake.sharer(API_KEY, Duration::from_secs(10))
            .create(UID, time::Duration::hours(1), "passkey-req-6")
            .await
            .unwrap_err();
        assert_eq!(
            fake.seen().len(),
            1,
            "{mode}: no cleanup after a clear refusal"
        );
    }
}

#[tokio::test]
async fn service_timeout_is_transient_and_cleaned_up() {
    let fake = FakeService::start("slow", &["unknown"]).await;
    let started = std::time::Instant::now();
    let e = fake
        .sharer(API_KEY, Duration::from_millis(500))
        .create(UID, time::Duration::hours(1), "passkey-req-10")
        .await
        .unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(8));
    assert_eq!(e.class, ErrorClass::Transient);
    assert!(e.message.contains("too long"), "{}", e.message);
    assert_eq!(
        fake.seen().len(),
        2,
        "create, then one remove answering NotFound"
    );
}

#[tokio::test]
async fn service_unreachable_is_transient() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let sharer = CommanderService::new(
        &base,
        SecretString::from(API_KEY),
        Duration::from_secs(5),
        clock(),
    )
    .unwrap();
    let e = sharer.list(UID).await.unwrap_err();
    assert_eq!(e.class, ErrorClass::Transient);
}

#[tokio::test]
async fn service_remove_and_list() {
    let fake = FakeService::start("ok", &["removed", "unknown"]).await;
    let sharer = fake.sharer(API_KEY, Duration::from_secs(10));
    assert_eq!(
        sharer.remove(UID, "c2hhcmUtb25l").await.unwrap(),
        Removed::Removed
    );
    assert_eq!(
        sharer.remove(UID, "c2hhcmUtb25l").await.unwrap(),
        Removed::NotFound
    );
    let shares = sharer.list(UID).await.unwrap();
    assert_eq!(shares.len(), 1);
    assert_eq!(shares[0].share_id, "c2hhcmUtb25l");
    assert_eq!(
        shares[0].generated,
        Some(Timestamp::parse("2026-11-23T09:00:00Z").unwrap())
    );
    assert_eq!(shares[0].opened, None);
    let e = sharer.remove(UID, "x; keeper logout").await.unwrap_err();
    assert_eq!(e.message, "invalid share name");
    assert_eq!(fake.seen().len(), 3, "the refused remove was never sent");
}

// ---------------------------------------------------------------------------------------------
// Folder ACLs and rotation information.

/// One ACL entry as (type, principal, permission).
type Entry = (VaultPrincipalType, String, FolderPermission);

/// The entries of each folder, by folder uid.
fn acl_table(folders: &[SharedFolder]) -> Vec<(String, Vec<Entry>)> {
    folders
        .iter()
        .map(|f| {
            let acl = f
                .acl
                .as_ref()
                .expect("Commander folders always carry an ACL")
                .iter()
                .map(|e| (e.principal_type, e.principal.clone(), e.permission))
                .collect();
            (f.uid.clone(), acl)
        })
        .collect()
}

#[tokio::test]
async fn cli_folder_acls_come_from_list_sf_then_get_on_each_shared_folder() {
    use FolderPermission::*;
    use VaultPrincipalType::*;
    let fake = FakeCli::reads("ok", "{}");
    let folders = fake
        .sharer(Duration::from_secs(20))
        .folder_acls()
        .await
        .unwrap();
    let names: Vec<&str> = folders.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(names, ["Databases", "Web servers"]);
    let user = |p: &str, level| (User, p.to_string(), level);
    let team = |p: &str, level| (Team, p.to_string(), level);
    assert_eq!(
        acl_table(&folders),
        vec![
            (
                "SfDatabases0000000001a".to_string(),
                vec![
                    user("alice@contoso.example", Owner),
                    user("bob@contoso.example", Manager),
                    user("carol@contoso.example", Editor),
                    user("dave@contoso.example", Viewer),
                    team("DBA", Editor),
                    team("Auditors", Viewer),
                ]
            ),
            (
                "SfWebServers000000002b".to_string(),
                vec![user("erin@contoso.example", Owner)]
            ),
        ]
    );
    // Only list-sf and `get` on the uids it listed: never `get` on a record.
    assert_eq!(
        fake.full_commands(),
        vec![
            strings(&["list-sf", "--format", "json"]),
            strings(&["get", "SfDatabases0000000001a", "--format", "json"]),
            strings(&["get", "SfWebServers000000002b", "--format", "json"]),
        ]
    );
    let calls = fake.calls();
    assert!(
        calls
            .iter()
            .all(|c| c["tz"] == "UTC" && c["storage"] == "file")
    );
}

#[tokio::test]
async fn cli_folder_acl_failures_are_classified_and_never_read_as_empty() {
    use ErrorClass::*;
    for (scenario, class, message) in [
        ("throttled", Transient, says::BUSY),
        ("login-broken", NeedsOperator, says::NEEDS_OPERATOR),
        ("get-denied", Terminal, says::REFUSED),
        ("record", Transient, says::NO_ANSWER),
    ] {
        let fake = FakeCli::reads(scenario, "{}");
        let e = fake
            .sharer(Duration::from_secs(20))
            .folder_acls()
            .await
            .unwrap_err();
        assert_eq!(
            (e.class, e.message.as_str()),
            (class, message),
            "{scenario}"
        );
        assert!(!e.raw.contains("hunter2"), "{scenario}: {}", e.raw);
        assert!(!format!("{e:?}").contains("hunter2"), "{scenario}");
    }

    // No shared folders at all is an empty list, not an error.
    let fake = FakeCli::reads("empty", "{}");
    let none = fake.sharer(Duration::from_secs(20)).folder_acls().await;
    assert_eq!(none.unwrap(), vec![]);

    // A folder removed between list-sf and get is left out; the others still come.
    let fake = FakeCli::reads("vanished", "{}");
    let folders = fake
        .sharer(Duration::from_secs(20))
        .folder_acls()
        .await
        .unwrap();
    assert_eq!(folders.len(), 1);
    assert_eq!(folders[0].name, "Databases");
}

#[tokio::test]
async fn cli_rotation_info_reads_pam_rotation_info() {
    let rotations = format!(
        r#"{{"{UID}": "daily", "BbCdEfGhIjKlMnOpQrStUv": "manual", "CbCdEfGhIjKlMnOpQrStUv": "throttled", "DbCdEfGhIjKlMnOpQrStUv": "denied"}}"#
    );
    let fake = FakeCli::reads("ok", &rotations);
    let cli = fake.sharer(Duration::from_secs(20));
    let daily = cli.rotation_info(UID).await.unwrap();
    assert_eq!(
        (daily.status.as_str(), daily.ready_to_rotate, daily.disabled),
        ("RRS_ONLINE", true, false)
    );
    assert_eq!(daily.schedule_type.as_deref(), Some("scheduled"));
    assert!(daily.schedule().unwrap().is_some());
    let manual = cli.rotation_info("BbCdEfGhIjKlMnOpQrStUv").await.unwrap();
    assert_eq!(manual.schedule().unwrap(), None);
    let none = cli.rotation_info("EbCdEfGhIjKlMnOpQrStUv").await.unwrap();
    assert_eq!(none.status, "RRS_NO_ROTATION");
    let throttled = cli
        .rotation_info("CbCdEfGhIjKlMnOpQrStUv")
        .await
        .unwrap_err();
    assert_eq!(throttled.class, ErrorClass::Transient);
    let denied = cli
        .rotation_info("DbCdEfGhIjKlMnOpQrStUv")
        .await
        .unwrap_err();
    assert_eq!(denied.class, ErrorClass::Terminal);
    assert_eq!(
        fake.full_commands()[0],
        strings(&["pam", "rotation", "info", "-r", UID, "--format", "json"])
    );
    let e = cli.rotation_info("-r; keeper logout").await.unwrap_err();
    assert_eq!(e.message, "invalid record uid");
    assert_eq!(fake.calls().len(), 5, "the refused uid was never sent");
}

#[tokio::test]
async fn service_folder_acls_and_rotation_info() {
    use FolderPermission::*;
    use VaultPrincipalType::*;
    let fake = FakeService::start_with_reads("ok", &[], "ok").await;
    let service = fake.sharer(API_KEY, Duration::from_secs(10));
    let folders = service.folder_acls().await.unwrap();
    assert_eq!(
        acl_table(&folders),
        vec![
            (
                SF_DATABASES.to_string(),
                vec![
                    (User, "alice@contoso.example".to_string(), Owner),
                    (User, "carol@contoso.example".to_string(), Editor),
                    (Team, "DBA".to_string(), Manager),
                ]
            ),
            (
                SF_WEB.to_string(),
                vec![(User, "erin@contoso.example".to_string(), Viewer)]
            ),
        ]
    );
    let info = service.rotation_info(UID).await.unwrap();
    assert!(info.schedule().unwrap().is_some(), "{info:?}");
    assert_eq!(
        fake.seen(),
        vec![
            "list-sf --format json".to_string(),
            format!("get {SF_DATABASES} --format json"),
            format!("get {SF_WEB} --format json"),
            format!("pam rotation info -r {UID} --format json"),
        ]
    );
}

#[tokio::test]
async fn service_read_failures_are_classified() {
    use ErrorClass::*;
    for (mode, class, message) in [
        ("denied", Terminal, says::REFUSED),
        ("throttled", Transient, says::BUSY),
    ] {
        let fake = FakeService::start_with_reads("ok", &[], mode).await;
        let service = fake.sharer(API_KEY, Duration::from_secs(10));
        let e = service.folder_acls().await.unwrap_err();
        assert_eq!((e.class, e.message.as_str()), (class, message), "{mode}");
        let e = service.rotation_info(UID).await.unwrap_err();
        assert_eq!((e.class, e.message.as_str()), (class, message), "{mode}");
    }
    // A service created without the read commands: the admin is told which flag fixes it.
    let fake = FakeService::start_with_reads("ok", &[], "forbidden").await;
    let service = fake.sharer(API_KEY, Duration::from_secs(10));
    for e in [
        service.folder_acls().await.unwrap_err(),
        service.rotation_info(UID).await.unwrap_err(),
    ] {
        assert_eq!(e.class, Terminal);
        assert!(e.message.contains("service-create -c"), "{}", e.message);
    }
    let fake = FakeService::start_with_reads("ok", &[], "ok").await;
    let e = fake
        .sharer("wrong-key", Duration::from_secs(10))
        .folder_acls()
        .await
        .unwrap_err();
    assert_eq!(e.class, Terminal);
}

// ---------------------------------------------------------------------------------------------
// Records without KSM (#21.1): `list --format json --verbose` on both transports.

/// (uid, type, title, folder) of what the reader returns; the description never appears.
fn listed(records: &[passkey::vault::RecordMeta]) -> Vec<(String, String, String, Option<String>)> {
    assert!(
        !format!("{records:?}").contains(LIST_LOGIN_NAME)
            && !format!("{records:?}").contains("svc-")
    );
    records
        .iter()
        .map(|r| {
            assert_eq!(r.revision, None, "Commander has no revision");
            (
                r.uid.clone(),
                r.record_type.clone(),
                r.title.clone(),
                r.folder_uid.clone(),
            )
        })
        .collect()
}

#[tokio::test]
async fn service_records_come_from_list_verbose_without_their_description() {
    let fake = FakeService::start_with_reads("ok", &[], "ok").await;
    let reader = CommanderReader::new(Arc::new(fake.sharer(API_KEY, Duration::from_secs(10))));
    let records = reader.records().await.unwrap();
    assert_eq!(
        listed(&records),
        vec![
            (
                UID.into(),
                "databaseCredentials".into(),
                "db-prod".into(),
                Some(SF_DATABASES.into())
            ),
            (
                "WebAdmin00000000000002".into(),
                "pamMachine".into(),
                "web-admin".into(),
                None
            ),
        ],
        "PAM records come in; the KSM application record does not"
    );
    assert!(
        fake.seen()
            .contains(&"list --format json --verbose".to_string())
    );

    // Created without `list` allowed: Terminal, naming the flag; denied and throttled as usual.
    for (mode, class) in [
        ("forbidden", ErrorClass::Terminal),
        ("denied", ErrorClass::Terminal),
        ("throttled", ErrorClass::Transient),
    ] {
        let fake = FakeService::start_with_reads("ok", &[], mode).await;
        let reader = CommanderReader::new(Arc::new(fake.sharer(API_KEY, Duration::from_secs(10))));
        let e = reader.records().await.unwrap_err();
        assert_eq!(e.class, class, "{mode}: {e:?}");
        if mode == "forbidden" {
            assert!(e.message.contains("service-create -c"), "{}", e.message);
        }
        assert_error_is_clean(&e);
    }
}

#[tokio::test]
async fn cli_records_come_from_list_verbose_without_their_description() {
    let cli = FakeCli::reads("ok", "{}");
    let reader = CommanderReader::new(Arc::new(cli.sharer(Duration::from_secs(20))));
    let records = reader.records().await.unwrap();
    let mut got = listed(&records);
    got.sort();
    assert_eq!(
        got,
        vec![
            (
                "WebAdmin00000000000002".into(),
                "pamMachine".into(),
                "web-admin".into(),
                Some("SfDatabases0000000001a".into())
            ),
            (
                "Wiki000000000000000003".into(),
                "login".into(),
                "Team wiki with a title longer than forty characters, whole".into(),
                None
            ),
            (
                "dbPr0dPostgres00000001".into(),
                "databaseCredentials".into(),
                "db-prod".into(),
                Some("SfDatabases0000000001a".into())
            ),
        ]
    );
    assert!(
        cli.full_commands()
            .contains(&strings(&["list", "--format", "json", "--verbose"])),
        "{:?}",
        cli.full_commands()
    );
    for (scenario, class) in [
        ("throttled", ErrorClass::Transient),
        ("denied", ErrorClass::Terminal),
        ("login-broken", ErrorClass::NeedsOperator),
    ] {
        let failing = FakeCli::with_records(scenario);
        let reader = CommanderReader::new(Arc::new(failing.sharer(Duration::from_secs(20))));
        let e = reader.records().await.unwrap_err();
        assert_eq!(e.class, class, "{scenario}: {e:?}");
        assert!(!e.raw.contains("svc-pg-admin"), "{}", e.raw);
    }
    // An empty vault is an empty list, not a failure.
    let empty = FakeCli::with_records("empty");
    let reader = CommanderReader::new(Arc::new(empty.sharer(Duration::from_secs(20))));
    assert!(reader.records().await.unwrap().is_empty());
}

// ---------------------------------------------------------------------------------------------
// Logs.

/// A plain subscriber with no redaction layer: the bridge itself must never log a URL.
#[tokio::test]
async fn no_share_url_is_ever_logged() {
    let (capture, _guard) = logs::capture_raw();

    let cli = FakeCli::new("ok", "removed");
    let sharer = cli.sharer(Duration::from_secs(20));
    let share = sharer
        .create(UID, time::Duration::hours(1), "passkey-req-11")
        .await
        .unwrap();
    sharer.remove(UID, &share.share_id).await.unwrap();
    let chatter = FakeCli::new("chatter", "unknown");
    chatter
        .sharer(Duration::from_secs(20))
        .create(UID, time::Duration::hours(1), "passkey-req-12")
        .await
        .unwrap_err();

    let service = FakeService::start("ok", &["removed"]).await;
    let sharer = service.sharer(API_KEY, Duration::from_secs(10));
    let share = sharer
        .create(UID, time::Duration::hours(1), "passkey-req-13")
        .await
        .unwrap();
    sharer.remove(UID, &share.share_id).await.unwrap();

    let logs = capture.text();
    assert!(logs.contains("passkey-req-11"), "the bridge logs its work");
    assert!(logs.contains(&share.share_id), "share ids are fine to log");
    assert_no_url(&logs);
    assert_no_url(&format!("{share:?}"));
}

// ---------------------------------------------------------------------------------------------
// Redaction keeps error classes (#15.8b): a result code is what an operator needs to read.

#[tokio::test]
async fn throttled_and_other_result_codes_stay_readable_in_failure_text() {
    let fake = FakeService::start("429", &["unknown"]).await;
    let e = fake
        .sharer(API_KEY, Duration::from_secs(10))
        .create(UID, time::Duration::hours(1), "passkey-req-11")
        .await
        .unwrap_err();
    assert!(e.raw.contains(r#""result_code":"throttled""#), "{}", e.raw);
    assert!(!e.raw.contains("REDACTED"), "{}", e.raw);

    use passkey::telemetry::redact;
    for readable in [
        r#"{"status":"error","result_code":"throttled"}"#,
        "result_code=access_denied",
        "code: throttled",
        "error code: invalid_client_version",
        r#"{\"result_code\":\"session_token_expired\"}"#,
    ] {
        assert_eq!(redact(readable), readable, "an error class was scrubbed");
    }
    // Secrets under the same kind of names are still scrubbed.
    for (line, secret) in [
        ("code: 493817", "493817"),
        (r#"{"otp_code":"throttled"}"#, "throttled"),
        ("auth_code=abcdefghijkl", "abcdefghijkl"),
        ("device_code: wdjbmjht", "wdjbmjht"),
        ("code=Q2xpZW50S2V5", "Q2xpZW50S2V5"),
        ("token: throttled", "throttled"),
        ("password=hunter", "hunter"),
    ] {
        let out = redact(line);
        assert!(!out.contains(secret), "{line} -> {out}");
    }
}
