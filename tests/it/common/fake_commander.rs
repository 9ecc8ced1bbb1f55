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
//! ([`FakeCommander::forbid`]).
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
    let mut v = vault.lock().unwrap();
    v.commands.push(command.clone());
    // Passkey's words are plain (validated; nothing needs quoting), so whitespace splits them.
    let words: Vec<&str> = command.split_whitespace().collect();
    if words.is_empty() || v.forbidden.contains(words[0]) {
        return (
            StatusCode::FORBIDDEN,
            "Not permitted to perform this function".into(),
        );
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
        "one-time-share" => one_time_share(&mut v, words.get(1).copied(), &words, &positionals),
        other => error(&format!("unknown command {other}")),
    }
}

fn one_time_share(
    v: &mut Vault,
    sub: Option<&str>,
    words: &[&str],
    positionals: &[&str],
) -> (StatusCode, String) {
    let option = |name: &str| {
        words
            .iter()
            .position(|w| *w == name)
            .and_then(|i| words.get(i + 1))
            .copied()
    };
    // `positionals[0]` is the subcommand itself.
    let record = positionals.get(1).copied().unwrap_or_default();
    if !v.records.iter().any(|r| r.uid == record) {
        return error("one-time-share: Enter name or uid of existing record");
    }
    match sub {
        Some("create") => {
            if option("--expire").is_none() {
                return reply(
                    200,
                    json!({"status": "success", "message": "URL expiration period parameter \"--expire\" is required."}),
                );
            }
            let name = option("--name").unwrap_or("unnamed").to_string();
            v.created += 1;
            use sha2::Digest as _;
            let key = sha2::Sha256::digest(format!("{name}#{}", v.created).as_bytes());
            let url = format!(
                "https://keepersecurity.com/vault/share/#{}",
                base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(key)
            );
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
        Some("list") => {
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
        Some("remove") => {
            let target = positionals.get(2).copied().unwrap_or_default();
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
