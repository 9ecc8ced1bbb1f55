//! A fake Keeper Commander in service mode, on loopback: `POST /api/v1/executecommand` with an
//! `api-key` header and `{"command": "…"}`, answered in service mode's shapes (shared/keeper.md),
//! plus `GET /health`. It holds a small vault that a test sets up — shared folders with their
//! users, teams and records, and records as `list` prints them — and answers every command
//! Passkey sends:
//!
//! - `list --format json [--verbose]`: `{record_uid, type, title, description, shared}` rows in
//!   `data` (PAM records only with `--verbose`, as keepercommander does);
//! - `list-sf --format json`, `get <SHARED_FOLDER_UID> --format json` (the folder as a JSON string
//!   in `message`); `get` on anything else answers "Cannot find any object" and is remembered in
//!   [`FakeCommander::got_non_folders`] (on a record uid the real one prints its secrets);
//! - `one-time-share create|list|remove` with live shares kept per record;
//! - `pam rotation info -r UID --format json`: no rotation unless [`FakeCommander::set_rotation`].
//!
//! A command word can be refused with 403 as a service created without it would
//! ([`FakeCommander::forbid`]); any command can be made to fail as the service does when busy,
//! denied, broken or slow ([`FakeCommander::fail`]), and `remove`s can be scripted
//! ([`FakeCommander::script_removes`]). Each line is split as service mode splits it (shlex), and
//! a `one-time-share` subcommand's words read the way Commander's argparse reads them
//! ([`FakeCommander::parsed`]).
//!
//! ```ignore
//! let commander = FakeCommander::start().await;            // the default vault below
//! let settings = [("PASSKEY_VAULT__BACKEND", "commander-service"),
//!                 ("PASSKEY_VAULT__COMMANDER_URL", &commander.url),
//!                 ("PASSKEY_VAULT__COMMANDER_API_KEY", &commander.api_key)];
//! ```

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use base64::Engine as _;
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

/// A record as `list` shows it. `description` is what Commander prints under the title (a login
/// name, for a login record): Passkey must never keep it.
#[derive(Debug, Clone)]
pub struct FakeRecord {
    pub uid: String,
    pub record_type: String,
    pub title: String,
    pub description: String,
}

impl FakeRecord {
    pub fn new(uid: &str, record_type: &str, title: &str, description: &str) -> FakeRecord {
        FakeRecord {
            uid: uid.into(),
            record_type: record_type.into(),
            title: title.into(),
            description: description.into(),
        }
    }
}

/// One member of a shared folder: a user (by email) or a team (by name).
#[derive(Debug, Clone)]
pub struct FakeMember {
    pub name: String,
    pub team: bool,
    pub owner: bool,
    pub manage_users: bool,
    pub manage_records: bool,
}

impl FakeMember {
    /// A user who may only view (Passkey: VIEWER, may request).
    pub fn viewer(email: &str) -> FakeMember {
        FakeMember {
            name: email.into(),
            team: false,
            owner: false,
            manage_users: false,
            manage_records: false,
        }
    }

    /// A user who manages users (Passkey: MANAGER, may approve).
    pub fn manager(email: &str) -> FakeMember {
        FakeMember {
            manage_users: true,
            ..FakeMember::viewer(email)
        }
    }

    /// The folder's owner (Passkey: OWNER).
    pub fn owner(email: &str) -> FakeMember {
        FakeMember {
            owner: true,
            manage_users: true,
            manage_records: true,
            ..FakeMember::viewer(email)
        }
    }

    /// A team that manages records (Passkey: EDITOR).
    pub fn team_editor(name: &str) -> FakeMember {
        FakeMember {
            team: true,
            manage_records: true,
            ..FakeMember::viewer(name)
        }
    }
}

#[derive(Debug, Clone)]
pub struct FakeFolder {
    pub uid: String,
    pub name: String,
    pub members: Vec<FakeMember>,
    /// Uids of the records in this folder.
    pub records: Vec<String>,
}

/// How a command fails instead of answering from the vault ([`FakeCommander::fail`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// 403: the service was created without this command.
    Forbidden,
    /// 429 with `result_code` `throttled`.
    Throttled,
    /// 503 "Queue is full".
    Busy,
    /// 504 "Timed out in queue".
    QueueTimeout,
    /// 500: no such record.
    NoRecord,
    /// 500: `access_denied`.
    Denied,
    /// 500 without a JSON body.
    Internal,
    /// 200 with an empty `message` (a create that names no URL).
    NoUrl,
    /// Answers as usual, ten seconds late.
    Slow,
}

impl Failure {
    fn answer(self) -> (StatusCode, String) {
        match self {
            Failure::Forbidden => (
                StatusCode::FORBIDDEN,
                "Not permitted to perform this function".into(),
            ),
            Failure::Throttled => reply(
                429,
                json!({"status": "error", "error": "Too many requests", "result_code": "throttled"}),
            ),
            Failure::Busy => (StatusCode::SERVICE_UNAVAILABLE, "Queue is full".into()),
            Failure::QueueTimeout => (StatusCode::GATEWAY_TIMEOUT, "Timed out in queue".into()),
            Failure::NoRecord => error("one-time-share: Enter name or uid of existing record"),
            Failure::Denied => error("access_denied"),
            Failure::Internal => (StatusCode::INTERNAL_SERVER_ERROR, "Internal error".into()),
            Failure::NoUrl => reply(
                200,
                json!({"status": "success", "command": "one-time-share", "message": "", "data": null}),
            ),
            Failure::Slow => unreachable!("a slow answer is the usual one"),
        }
    }
}

/// What `remove` answers when scripted ([`FakeCommander::script_removes`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RemoveAnswer {
    Removed,
    NoSuchShare,
    Busy,
}

/// The key of the share a create named `name` makes when keys come from names
/// ([`FakeCommander::share_keys_from_names`]): SHA-256 of the name, base64url.
pub fn share_key_for(name: &str) -> String {
    use sha2::Digest as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(name.as_bytes()))
}

/// A live one-time share.
#[derive(Debug, Clone)]
pub struct FakeShare {
    pub record_uid: String,
    pub share_id: String,
    pub name: String,
}

pub const DB_FOLDER: &str = "SfDatabases0000000001a";
pub const WEB_FOLDER: &str = "SfWebServers000000002b";
pub const DB_PROD: &str = "dbPr0dPostgres00000001";
pub const WEB_ADMIN: &str = "WebAdmin00000000000002";
pub const WIKI: &str = "Wiki000000000000000003";
/// The login name in `db-prod`'s description.
pub const LOGIN_NAME: &str = "svc-pg-admin-7731";

#[derive(Default)]
struct Vault {
    records: Vec<FakeRecord>,
    folders: Vec<FakeFolder>,
    forbidden: BTreeSet<String>,
    rotations: BTreeMap<String, Value>,
    shares: Vec<FakeShare>,
    commands: Vec<String>,
    got_non_folders: Vec<String>,
    created: u64,
    /// Commands beginning with these fail so instead.
    failures: Vec<(String, Failure)>,
    /// Scripted `remove` answers (the last repeats; none scripted: no share); `None`: the vault.
    removes: Option<std::collections::VecDeque<RemoveAnswer>>,
    /// A share's key is SHA-256 of its name alone (else of the name and a counter).
    keys_from_names: bool,
    /// The positional words of each `one-time-share` command, as argparse read them.
    parsed: Vec<Vec<String>>,
}

pub struct FakeCommander {
    /// The service's root, e.g. `http://127.0.0.1:41234` (`vault.commander_url`).
    pub url: String,
    /// What `api-key` must say (`vault.commander_api_key`).
    pub api_key: String,
    vault: Arc<Mutex<Vault>>,
}

const PAM_TYPES: [&str; 5] = [
    "pamDatabase",
    "pamDirectory",
    "pamMachine",
    "pamUser",
    "pamRemoteBrowser",
];

impl FakeCommander {
    /// Starts with the default vault: `Databases` (alice owner, bob manager, carol viewer, team
    /// DBA) holding `db-prod` (a database credential whose description is [`LOGIN_NAME`]); `Web
    /// servers` (erin owner) holding the PAM machine `web-admin`; and `Team wiki`, in no folder.
    pub async fn start() -> FakeCommander {
        let commander = FakeCommander::start_empty().await;
        commander.set_records(vec![
            FakeRecord::new(
                DB_PROD,
                "databaseCredentials",
                "db-prod",
                &format!("{LOGIN_NAME} @ db-prod.contoso.example"),
            ),
            FakeRecord::new(
                WEB_ADMIN,
                "pamMachine",
                "web-admin",
                "root @ web01.contoso.example",
            ),
            FakeRecord::new(WIKI, "login", "Team wiki", "wiki-bot"),
        ]);
        commander.set_folders(vec![
            FakeFolder {
                uid: DB_FOLDER.into(),
                name: "Databases".into(),
                members: vec![
                    FakeMember::owner("alice@contoso.example"),
                    FakeMember::manager("bob@contoso.example"),
                    FakeMember::viewer("carol@contoso.example"),
                    FakeMember::team_editor("DBA"),
                ],
                records: vec![DB_PROD.into()],
            },
            FakeFolder {
                uid: WEB_FOLDER.into(),
                name: "Web servers".into(),
                members: vec![FakeMember::owner("erin@contoso.example")],
                records: vec![WEB_ADMIN.into()],
            },
        ]);
        commander
    }

    /// Starts with an empty vault.
    pub async fn start_empty() -> FakeCommander {
        let vault = Arc::new(Mutex::new(Vault::default()));
        let app = axum::Router::new()
            .route("/api/v1/executecommand", post(execute))
            .route("/health", get(|| async { "OK" }))
            .with_state(vault.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        FakeCommander {
            url,
            api_key: "fake-commander-api-key".into(),
            vault,
        }
    }

    pub fn set_records(&self, records: Vec<FakeRecord>) {
        self.vault.lock().unwrap().records = records;
    }

    pub fn set_folders(&self, folders: Vec<FakeFolder>) {
        self.vault.lock().unwrap().folders = folders;
    }

    /// Answers 403 "Not permitted to perform this function" to commands beginning with `word`
    /// (`list`, `get`, `one-time-share`…), as a service created without it in `-c` does.
    pub fn forbid(&self, word: &str) {
        self.vault.lock().unwrap().forbidden.insert(word.into());
    }

    /// Commands beginning with `prefix` (`one-time-share create`, `get`…) fail as `failure` says
    /// (checked after [`FakeCommander::forbid`]).
    pub fn fail(&self, prefix: &str, failure: Failure) {
        self.vault
            .lock()
            .unwrap()
            .failures
            .push((prefix.into(), failure));
    }

    /// `one-time-share remove` answers these in turn, the last one repeating (none: "There is no
    /// one-time share"), whatever the vault holds, on any record.
    pub fn script_removes(&self, answers: &[RemoveAnswer]) {
        self.vault.lock().unwrap().removes = Some(answers.iter().copied().collect());
    }

    /// A created share's key is SHA-256 of its name alone ([`share_key_for`]), so a test can
    /// choose a name for the share id it wants.
    pub fn share_keys_from_names(&self) {
        self.vault.lock().unwrap().keys_from_names = true;
    }

    /// A live share, as if created before the test.
    pub fn add_share(&self, share: FakeShare) {
        self.vault.lock().unwrap().shares.push(share);
    }

    /// The positional words argparse read from each `one-time-share` command, in order.
    pub fn parsed(&self) -> Vec<Vec<String>> {
        self.vault.lock().unwrap().parsed.clone()
    }

    /// `pam rotation info` for `record_uid` answers this object (in `data`).
    pub fn set_rotation(&self, record_uid: &str, info: Value) {
        self.vault
            .lock()
            .unwrap()
            .rotations
            .insert(record_uid.into(), info);
    }

    /// Every command received with the right key, in order.
    pub fn commands(&self) -> Vec<String> {
        self.vault.lock().unwrap().commands.clone()
    }

    /// Uids `get` was pointed at that are not shared folders (must stay empty: on a record uid
    /// the real `get` prints the record's secrets).
    pub fn got_non_folders(&self) -> Vec<String> {
        self.vault.lock().unwrap().got_non_folders.clone()
    }

    /// The live one-time shares.
    pub fn live_shares(&self) -> Vec<FakeShare> {
        self.vault.lock().unwrap().shares.clone()
    }
}

fn reply(status: u16, body: Value) -> (StatusCode, String) {
    (StatusCode::from_u16(status).unwrap(), body.to_string())
}

fn error(text: &str) -> (StatusCode, String) {
    reply(
        500,
        json!({"status": "error", "error": format!("Unexpected error: {text}")}),
    )
}

async fn execute(
    State(vault): State<Arc<Mutex<Vault>>>,
    headers: HeaderMap,
    body: String,
) -> (StatusCode, String) {
    if headers.get("api-key").and_then(|v| v.to_str().ok()) != Some("fake-commander-api-key") {
        return (
            StatusCode::UNAUTHORIZED,
            "Please provide a valid api key".into(),
        );
    }
    let Some(command) = serde_json::from_str::<Value>(&body)
        .ok()
        .and_then(|b| b["command"].as_str().map(str::to_string))
    else {
        return (StatusCode::BAD_REQUEST, "no command".into());
    };
    let (failure, owned) = {
        let mut v = vault.lock().unwrap();
        v.commands.push(command.clone());
        // Service mode splits the line with shlex, then hands the words to argparse.
        let Some(owned) = shlex_split(&command) else {
            return error("No closing quotation");
        };
        if owned.is_empty() || v.forbidden.contains(&owned[0]) {
            return Failure::Forbidden.answer();
        }
        let failure = v
            .failures
            .iter()
            .find(|(prefix, _)| command.starts_with(prefix.as_str()))
            .map(|(_, f)| *f);
        (failure, owned)
    };
    match failure {
        Some(Failure::Slow) => tokio::time::sleep(std::time::Duration::from_secs(10)).await,
        Some(failure) if owned[0] != "one-time-share" => return failure.answer(),
        _ => {}
    }
    let mut v = vault.lock().unwrap();
    let words: Vec<&str> = owned.iter().map(String::as_str).collect();
    if words[0] == "one-time-share" {
        let (valued, positionals): (&[&str], &[&str]) = match words.get(1).copied() {
            Some("create") => (&["--expire", "--name"], &["record"]),
            Some("remove") => (&[], &["record", "share"]),
            Some("list") => (&["--format"], &["record"]),
            _ => return error("one-time-share: unknown subcommand"),
        };
        let (options, found) = match argparse(&words[2..], valued, positionals.len()) {
            Ok(parsed) => parsed,
            Err(e) => return error(&format!("one-time-share: error: {e}")),
        };
        v.parsed.push(found.clone());
        if let Some(failure) = failure.filter(|f| *f != Failure::Slow) {
            return failure.answer();
        }
        return one_time_share(&mut v, words[1], &options, &found);
    }
    let has = |flag: &str| words.contains(&flag);
    // Positionals: words that are not options, nor values of the options Passkey sends.
    let positionals: Vec<&str> = {
        let mut out = Vec::new();
        let mut after_dashes = false;
        let mut skip = false;
        for w in &words[1..] {
            if skip {
                skip = false;
            } else if after_dashes || !w.starts_with('-') {
                out.push(*w);
            } else if *w == "--" {
                after_dashes = true;
            } else if matches!(*w, "--format" | "--expire" | "--name" | "-r") {
                skip = true;
            }
        }
        out
    };
    match words[0] {
        "list" => {
            let rows: Vec<Value> = v
                .records
                .iter()
                .filter(|r| has("--verbose") || !PAM_TYPES.contains(&r.record_type.as_str()))
                .map(|r| {
                    json!({"record_uid": r.uid, "type": r.record_type, "title": r.title,
                           "description": r.description, "shared": true})
                })
                .collect();
            if rows.is_empty() {
                return reply(
                    200,
                    json!({"status": "success", "command": "list", "data": null}),
                );
            }
            reply(
                200,
                json!({"status": "success", "command": "list", "data": rows}),
            )
        }
        "list-sf" => {
            let rows: Vec<Value> = v
                .folders
                .iter()
                .map(|f| json!({"shared_folder_uid": f.uid, "name": f.name}))
                .collect();
            reply(
                200,
                json!({"status": "success", "command": "list-sf", "data": rows}),
            )
        }
        "get" => {
            let uid = positionals.first().copied().unwrap_or_default();
            let Some(folder) = v.folders.iter().find(|f| f.uid == uid).cloned() else {
                v.got_non_folders.push(uid.to_string());
                return error(&format!("get: Cannot find any object with UID: {uid}"));
            };
            let member = |m: &FakeMember| {
                if m.team {
                    json!({"name": m.name, "team_uid": "VGVhbQ", "manage_records": m.manage_records,
                           "manage_users": m.manage_users})
                } else {
                    json!({"username": m.name, "owner": m.owner, "manage_records": m.manage_records,
                           "manage_users": m.manage_users})
                }
            };
            let json = json!({
                "folder_uid": folder.uid, "type": "classic_folder", "name": folder.name,
                "records": folder.records.iter().map(|r| json!({"record_uid": r, "can_edit": false, "can_share": false})).collect::<Vec<_>>(),
                "users": folder.members.iter().filter(|m| !m.team).map(member).collect::<Vec<_>>(),
                "teams": folder.members.iter().filter(|m| m.team).map(member).collect::<Vec<_>>(),
            });
            reply(
                200,
                json!({"status": "success", "command": "get", "message": json.to_string(), "data": null}),
            )
        }
        "pam" => {
            let uid = words
                .iter()
                .position(|w| *w == "-r")
                .and_then(|i| words.get(i + 1))
                .copied()
                .unwrap_or_default();
            let info =
                v.rotations.get(uid).cloned().unwrap_or_else(
                    || json!({"status": "RRS_NO_ROTATION", "ready_to_rotate": false}),
                );
            reply(
                200,
                json!({"status": "success", "command": "pam", "data": info}),
            )
        }
        other => error(&format!("unknown command {other}")),
    }
}

fn one_time_share(
    v: &mut Vault,
    sub: &str,
    options: &std::collections::HashMap<String, String>,
    found: &[String],
) -> (StatusCode, String) {
    let record = found[0].as_str();
    if sub == "remove"
        && let Some(removes) = v.removes.as_mut()
    {
        let answer = if removes.len() > 1 {
            removes.pop_front()
        } else {
            removes.front().copied()
        };
        let target = &found[1];
        return match answer {
            Some(RemoveAnswer::Removed) => reply(
                200,
                json!({"status": "success", "message": format!("One-time share \"{target}\" is removed.")}),
            ),
            Some(RemoveAnswer::Busy) => Failure::Busy.answer(),
            _ => reply(
                200,
                json!({"status": "success", "message": format!("There is no one-time share \"{target}\"")}),
            ),
        };
    }
    if !v.records.iter().any(|r| r.uid == record) {
        return error("one-time-share: Enter name or uid of existing record");
    }
    match sub {
        "create" => {
            if !options.contains_key("--expire") {
                return reply(
                    200,
                    json!({"status": "success", "message": "URL expiration period parameter \"--expire\" is required."}),
                );
            }
            let name = options
                .get("--name")
                .map_or("unnamed", String::as_str)
                .to_string();
            v.created += 1;
            let key = if v.keys_from_names {
                share_key_for(&name)
            } else {
                share_key_for(&format!("{name}#{}", v.created))
            };
            let url = format!("https://keepersecurity.com/vault/share/#{key}");
            let share_id = passkey::vault::share_id_from_url(&url).unwrap();
            v.shares.push(FakeShare {
                record_uid: record.into(),
                share_id,
                name,
            });
            reply(
                200,
                json!({"status": "success", "command": "one-time-share", "message": url, "data": null}),
            )
        }
        "list" => {
            let rows: Vec<Value> = v
                .shares
                .iter()
                .filter(|s| s.record_uid == record)
                .map(|s| {
                    json!({"record_uid": s.record_uid, "share_link_id": s.share_id, "name": s.name,
                           "generated": "2026-11-23 09:00:00", "opened": null,
                           "expires": "2026-11-23 10:00:00", "status": "Active"})
                })
                .collect();
            reply(
                200,
                json!({"status": "success", "command": "one-time-share", "data": rows}),
            )
        }
        "remove" => {
            let target = found[1].as_str();
            let before = v.shares.len();
            v.shares.retain(|s| {
                !(s.record_uid == record && (s.share_id == target || s.name == target))
            });
            let message = if v.shares.len() < before {
                format!("One-time share \"{target}\" is removed.")
            } else {
                format!("There is no one-time share \"{target}\"")
            };
            reply(200, json!({"status": "success", "message": message}))
        }
        _ => error("one-time-share: unknown subcommand"),
    }
}

/// Python's `shlex.split` (POSIX mode) for the words Passkey sends: bare words, single quotes,
/// double quotes and backslashes. `None` for an unclosed quote.
fn shlex_split(line: &str) -> Option<Vec<String>> {
    let mut words = Vec::new();
    let mut word: Option<String> = None;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            ' ' | '\t' | '\n' => {
                if let Some(w) = word.take() {
                    words.push(w);
                }
            }
            '\'' => {
                let w = word.get_or_insert_with(String::new);
                loop {
                    match chars.next()? {
                        '\'' => break,
                        c => w.push(c),
                    }
                }
            }
            '"' => {
                let w = word.get_or_insert_with(String::new);
                loop {
                    match chars.next()? {
                        '"' => break,
                        '\\' => w.push(chars.next()?),
                        c => w.push(c),
                    }
                }
            }
            '\\' => word.get_or_insert_with(String::new).push(chars.next()?),
            c => word.get_or_insert_with(String::new).push(c),
        }
    }
    words.extend(word);
    Some(words)
}

/// What argparse makes of a subcommand's words: a word beginning with '-' is an option (or
/// `--opt=value`) unless it follows the first `--`; an option that takes a value refuses a next
/// word beginning with '-'; exactly `positionals` positional words.
fn argparse(
    words: &[&str],
    valued: &[&str],
    positionals: usize,
) -> Result<(std::collections::HashMap<String, String>, Vec<String>), String> {
    let mut options = std::collections::HashMap::new();
    let mut found = Vec::new();
    let mut only_positionals = false;
    let mut words = words.iter();
    while let Some(&word) = words.next() {
        if only_positionals || !word.starts_with('-') || word == "-" {
            found.push(word.to_string());
        } else if word == "--" {
            only_positionals = true;
        } else {
            let (name, value) = match word.split_once('=') {
                Some((name, value)) => (name, Some(value.to_string())),
                None => (word, None),
            };
            if !valued.contains(&name) {
                return Err(format!("unrecognized arguments: {word}"));
            }
            let value = match value {
                Some(v) => v,
                None => match words.next() {
                    Some(v) if !v.starts_with('-') => v.to_string(),
                    _ => return Err(format!("argument {name}: expected one argument")),
                },
            };
            options.insert(name.to_string(), value);
        }
    }
    match found.len().cmp(&positionals) {
        std::cmp::Ordering::Less => Err("the following arguments are required".into()),
        std::cmp::Ordering::Greater => Err(format!(
            "unrecognized arguments: {}",
            found[positionals..].join(" ")
        )),
        std::cmp::Ordering::Equal => Ok((options, found)),
    }
}
