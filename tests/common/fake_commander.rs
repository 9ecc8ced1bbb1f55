//! Keeper Commander's service mode on loopback (`POST /api/v1/executecommand`, header `api-key`,
//! body `{"command": "…"}`), answering as keepercommander 18 does (shared/keeper.md): `list-sf`
//! and `list` (with `--format json`, `--verbose` or not) in `data`, `get <SHARED_FOLDER_UID> --format json` as a JSON
//! string in `message`, `one-time-share create` with the URL alone in `message`, `list` of shares
//! in `data`, `remove` with Commander's sentences. It holds one small vault the test describes and
//! the shares it handed out, so a test can see a share created and removed.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use base64::Engine as _;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

pub const API_KEY: &str = "commander-service-api-key-for-tests";

/// A shared folder and its ACL: `(username, owner, manage_records, manage_users)`.
#[derive(Clone, Debug)]
pub struct Folder {
    pub uid: String,
    pub name: String,
    pub users: Vec<(String, bool, bool, bool)>,
}

/// A record: uid, title, type, and the shared folder it is in.
#[derive(Clone, Debug)]
pub struct Record {
    pub uid: String,
    pub title: String,
    pub record_type: String,
    pub folder_uid: String,
}

/// A one-time share Commander holds.
#[derive(Clone, Debug)]
pub struct Share {
    pub record_uid: String,
    pub name: String,
    pub share_id: String,
    pub url: String,
}

#[derive(Default)]
pub struct CommanderState {
    pub folders: Mutex<Vec<Folder>>,
    pub records: Mutex<Vec<Record>>,
    /// Live shares, by share id.
    pub shares: Mutex<BTreeMap<String, Share>>,
    /// Every share ever created (removed ones too), in order.
    pub created: Mutex<Vec<Share>>,
    /// Share ids removed, in order.
    pub removed: Mutex<Vec<String>>,
    /// Every command line received with the right key, in order.
    pub commands: Mutex<Vec<String>>,
}

pub struct FakeCommander {
    /// `http://127.0.0.1:port`: the service root (`vault.commander_url`).
    pub base: String,
    pub state: Arc<CommanderState>,
}

impl FakeCommander {
    pub async fn start(folders: Vec<Folder>, records: Vec<Record>) -> FakeCommander {
        let state = Arc::new(CommanderState::default());
        *state.folders.lock().unwrap() = folders;
        *state.records.lock().unwrap() = records;
        let app = axum::Router::new()
            .route("/api/v1/executecommand", post(execute))
            .route("/health", axum::routing::get(|| async { "ok" }))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        FakeCommander { base, state }
    }

    pub fn commands(&self) -> Vec<String> {
        self.state.commands.lock().unwrap().clone()
    }

    pub fn created(&self) -> Vec<Share> {
        self.state.created.lock().unwrap().clone()
    }

    pub fn removed(&self) -> Vec<String> {
        self.state.removed.lock().unwrap().clone()
    }

    pub fn live_shares(&self) -> Vec<Share> {
        self.state
            .shares
            .lock()
            .unwrap()
            .values()
            .cloned()
            .collect()
    }
}

fn reply(status: u16, body: Value) -> (StatusCode, String) {
    (StatusCode::from_u16(status).unwrap(), body.to_string())
}

fn error(text: String) -> (StatusCode, String) {
    reply(
        500,
        json!({"status": "error", "error": format!("Unexpected error: {text}")}),
    )
}

/// Service mode splits the line with shlex; Passkey quotes only what needs it (single quotes).
fn words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word: Option<String> = None;
    let mut quoted = false;
    for c in line.chars() {
        match c {
            '\'' => {
                quoted = !quoted;
                word.get_or_insert_with(String::new);
            }
            ' ' if !quoted => words.extend(word.take()),
            c => word.get_or_insert_with(String::new).push(c),
        }
    }
    words.extend(word);
    words
}

/// The URL's fragment is the share's client key; its id is what Commander computes from it
/// (HMAC-SHA512 of a constant under that key), as `passkey::vault::share_id_from_url` does.
fn share_for(record_uid: &str, name: &str) -> Share {
    use sha2::Digest as _;
    let key = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(
        format!("{record_uid}/{name}/{}", uuid::Uuid::new_v4()).as_bytes(),
    ));
    let url = format!("https://keepersecurity.com/vault/share/#{key}");
    let share_id = passkey::vault::share_id_from_url(&url).expect("a Keeper-shaped URL");
    Share {
        record_uid: record_uid.into(),
        name: name.into(),
        share_id,
        url,
    }
}

async fn execute(
    State(state): State<Arc<CommanderState>>,
    headers: HeaderMap,
    body: String,
) -> (StatusCode, String) {
    if headers.get("api-key").and_then(|v| v.to_str().ok()) != Some(API_KEY) {
        return (
            StatusCode::UNAUTHORIZED,
            "Please provide a valid api key".into(),
        );
    }
    let line = serde_json::from_str::<Value>(&body)
        .ok()
        .and_then(|v| v["command"].as_str().map(String::from))
        .unwrap_or_default();
    state.commands.lock().unwrap().push(line.clone());
    let words = words(&line);
    let w: Vec<&str> = words.iter().map(String::as_str).collect();
    match w.as_slice() {
        ["list-sf", "--format", "json"] => {
            let data: Vec<Value> = state
                .folders
                .lock()
                .unwrap()
                .iter()
                .map(|f| json!({"shared_folder_uid": f.uid, "name": f.name}))
                .collect();
            reply(
                200,
                json!({"status": "success", "command": "list-sf", "data": data}),
            )
        }
        // `list --format json`, with `--verbose` or not (PAM records and whole titles).
        ["list", "--format", "json", ..] => {
            let data: Vec<Value> = state
                .records
                .lock()
                .unwrap()
                .iter()
                .map(|r| json!({"record_uid": r.uid, "type": r.record_type, "title": r.title, "description": ""}))
                .collect();
            reply(
                200,
                json!({"status": "success", "command": "list", "data": data}),
            )
        }
        ["get", uid, "--format", "json"] => {
            let folders = state.folders.lock().unwrap().clone();
            let Some(folder) = folders.iter().find(|f| f.uid == *uid) else {
                return error(format!("get: Cannot find any object with UID: {uid}"));
            };
            let records: Vec<Value> = state
                .records
                .lock()
                .unwrap()
                .iter()
                .filter(|r| r.folder_uid == folder.uid)
                .map(|r| json!({"record_uid": r.uid, "can_edit": false, "can_share": false}))
                .collect();
            let users: Vec<Value> = folder
                .users
                .iter()
                .map(|(username, owner, manage_records, manage_users)| {
                    json!({"username": username, "owner": owner,
                           "manage_records": manage_records, "manage_users": manage_users})
                })
                .collect();
            let printed = json!({
                "shared_folder_uid": folder.uid, "name": folder.name,
                "records": records, "users": users, "teams": [],
            });
            reply(
                200,
                json!({"status": "success", "command": "get", "message": printed.to_string(), "data": null}),
            )
        }
        ["one-time-share", "create", rest @ ..] => {
            let name = rest
                .windows(2)
                .find(|p| p[0] == "--name")
                .map(|p| p[1].to_string())
                .unwrap_or_default();
            let Some(uid) = rest.last().filter(|u| !u.starts_with('-')) else {
                return error("one-time-share: Enter name or uid of existing record".into());
            };
            if !state.records.lock().unwrap().iter().any(|r| r.uid == *uid) {
                return error("one-time-share: Enter name or uid of existing record".into());
            }
            let share = share_for(uid, &name);
            state
                .shares
                .lock()
                .unwrap()
                .insert(share.share_id.clone(), share.clone());
            state.created.lock().unwrap().push(share.clone());
            reply(
                200,
                json!({"status": "success", "command": "one-time-share", "message": share.url, "data": null}),
            )
        }
        ["one-time-share", "list", rest @ ..] => {
            let uid = rest.last().copied().unwrap_or_default();
            let data: Vec<Value> = state
                .shares
                .lock()
                .unwrap()
                .values()
                .filter(|s| s.record_uid == uid)
                .map(|s| {
                    json!({"record_uid": s.record_uid, "share_link_id": s.share_id, "name": s.name,
                           "generated": "2026-01-01 00:00:00", "opened": null,
                           "expires": "2099-01-01 00:00:00", "status": "Generated"})
                })
                .collect();
            reply(
                200,
                json!({"status": "success", "command": "one-time-share", "data": data}),
            )
        }
        ["one-time-share", "remove", rest @ ..] => {
            let target = rest.last().copied().unwrap_or_default().to_string();
            let mut shares = state.shares.lock().unwrap();
            let found = shares
                .iter()
                .find(|(id, s)| **id == target || s.name == target)
                .map(|(id, _)| id.clone());
            match found {
                Some(id) => {
                    shares.remove(&id);
                    state.removed.lock().unwrap().push(id);
                    reply(
                        200,
                        json!({"status": "success", "message": format!("One-time share \"{target}\" is removed.")}),
                    )
                }
                None => reply(
                    200,
                    json!({"status": "success", "message": format!("There is no one-time share \"{target}\"")}),
                ),
            }
        }
        _ => (
            StatusCode::FORBIDDEN,
            "Not permitted to perform this function".into(),
        ),
    }
}
