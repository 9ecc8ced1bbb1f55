//! What Commander's answer means. One pure function, [`classify`], reads the output of a
//! Commander command (`one-time-share …`, `list`, `list-sf`, `get <shared folder>`,
//! `pam rotation info`)
//! — from the CLI (exit code, stdout, stderr) or from service mode (HTTP status, body) — and
//! returns either the success payload or a classified [`VaultError`].
//!
//! Commander's exit codes lie (shared/keeper.md): several failures exit 0 and only stderr tells.
//! So success is positive evidence only (a share URL on its own line, a "removed" answer, a JSON
//! list or object); everything else is a failure, classified by the words the tool used.

use super::{ErrorClass, Removed, ShareUrl, VaultError};
use std::sync::LazyLock;

/// Which command produced the output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// `one-time-share create`
    Create,
    /// `one-time-share list --format json`
    List,
    /// `one-time-share remove`
    Remove,
    /// `list-sf --format json`: a JSON list.
    ListSharedFolders,
    /// `get <SHARED_FOLDER_UID> --format json`: a JSON object.
    GetSharedFolder,
    /// `pam rotation info -r <RECORD_UID> --format json`: a JSON object.
    RotationInfo,
    /// `list --format json --verbose`: the vault's records, a JSON list of `{record_uid, type,
    /// title, description, shared}`. `description` can hold a login name, so the output is
    /// private like the other reads'.
    ListRecords,
}

impl Op {
    /// Reads whose output is only ever parsed, never kept: `get` prints field values unmasked
    /// when pointed at a record, so what a read printed never goes into an error's `raw`.
    fn output_is_private(self) -> bool {
        matches!(
            self,
            Op::GetSharedFolder | Op::RotationInfo | Op::ListRecords
        )
    }

    /// Reads: their failures reach administrators (a sync, `doctor`), never a requester's card.
    fn is_read(self) -> bool {
        matches!(
            self,
            Op::ListSharedFolders | Op::GetSharedFolder | Op::RotationInfo | Op::ListRecords
        )
    }

    /// The command word service mode checks against its `-c` list.
    pub fn command_word(self) -> &'static str {
        match self {
            Op::Create | Op::List | Op::Remove => "one-time-share",
            Op::ListSharedFolders => "list-sf",
            Op::GetSharedFolder => "get",
            Op::RotationInfo => "pam",
            Op::ListRecords => "list",
        }
    }
}

/// Every command word Passkey sends: service mode must be created with all of them allowed
/// (`keeper service-create -c "…"`); aliases are not resolved.
pub const SERVICE_COMMANDS: &str = "one-time-share,get,list-sf,list,pam";

/// Service mode answered 401 to a read (an administrator reads this).
pub const KEY_REFUSED: &str = "Commander service mode refused the API key: check vault.commander_api_key \
     (PASSKEY_VAULT__COMMANDER_API_KEY)";

/// Service mode answered 403 to a read: it was created without that command allowed. An
/// administrator reads this (sync, `doctor`): it names the command and the flag that fixes it.
pub fn not_permitted(op: Op) -> String {
    format!(
        "Commander service mode does not allow `{}`: recreate it with \
         `keeper service-create -c \"{SERVICE_COMMANDS}\"` (the -c flag lists the allowed commands)",
        op.command_word()
    )
}

/// Commander's raw answer, as either transport received it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommandOutput {
    /// The `keeper` CLI. `exit` is `None` when the process ended by a signal.
    Process {
        exit: Option<i32>,
        stdout: String,
        stderr: String,
    },
    /// Service mode's `executecommand`.
    Service { status: u16, body: String },
}

/// The success payload of each subcommand.
#[derive(Debug, Clone)]
pub enum Answer {
    Url(ShareUrl),
    /// The JSON rows of `list --format json`, not yet interpreted.
    Rows(Vec<serde_json::Value>),
    Removed(Removed),
    /// The JSON a read printed (`list-sf`: an array; `get`, `pam rotation info`: an object).
    Json(serde_json::Value),
}

/// Short, generic words for people; the details stay in `raw`.
pub mod says {
    pub const BUG: &str =
        "Passkey sent the vault an incomplete command (a bug in Passkey: please report it)";
    pub const TOO_LONG: &str = "the vault does not allow a link to live that long";
    pub const NO_RECORD: &str = "the vault has no such record";
    pub const PAM: &str = "the vault cannot make one-time links for this kind of record";
    pub const REFUSED: &str = "the vault refused this record";
    pub const BUSY: &str = "the vault is busy, try again";
    pub const NEEDS_OPERATOR: &str = "the vault connection needs an administrator's attention";
    pub const NO_ANSWER: &str = "the vault gave no clear answer, try again";
    pub const MISCONFIGURED: &str = "the vault bridge is misconfigured; administrators were told";
    pub const NO_FOLDER: &str = "the vault has no such shared folder";
}

/// A share URL alone on a line: `https://<host>/vault/share/#<b64url key>`.
static SHARE_URL_LINE: LazyLock<regex::Regex> = LazyLock::new(|| {
    regex::Regex::new(r"^https://[A-Za-z0-9.\-:]+/vault/share/?#[A-Za-z0-9_\-]+=*$").unwrap()
});

/// Maps Commander's answer to the payload `op` succeeds with, or to a classified error.
pub fn classify(op: Op, output: &CommandOutput) -> Result<Answer, VaultError> {
    let seen = Seen::from(output);
    let raw = seen.raw(op.output_is_private());
    let fail = |class: ErrorClass, message: &str| Err(VaultError::new(class, message, &raw));

    // Service mode's own statuses come first: they are about the bridge, not the record.
    if let Some(status) = seen.http {
        match status {
            403 if op.is_read() => return fail(ErrorClass::Terminal, &not_permitted(op)),
            401 if op.is_read() => return fail(ErrorClass::Terminal, KEY_REFUSED),
            401 | 403 => return fail(ErrorClass::Terminal, says::MISCONFIGURED),
            // A redirect (never followed: `crate::outbound`): the configured URL is not the
            // service's, and asking again will not change that.
            300..=399 => return fail(ErrorClass::Terminal, says::MISCONFIGURED),
            429 | 503 | 504 => return fail(ErrorClass::Transient, says::BUSY),
            _ => {}
        }
    }

    // The tool's words, whatever the exit code or status said.
    let words = seen.error_text.as_str();
    if words.contains("\"--expire\" is required") {
        return fail(ErrorClass::Terminal, says::BUG);
    }
    if words.contains("cannot be greater than 6 months") {
        return fail(ErrorClass::Terminal, says::TOO_LONG);
    }
    if words.contains("Enter name or uid of existing record") {
        return fail(ErrorClass::Terminal, says::NO_RECORD);
    }
    if words.contains("not available for PAM records") {
        return fail(ErrorClass::Terminal, says::PAM);
    }
    let lower = words.to_ascii_lowercase();
    if lower.contains("persistent login is not working")
        || (lower.contains("session") && lower.contains("expired"))
    {
        return fail(ErrorClass::NeedsOperator, says::NEEDS_OPERATOR);
    }
    if lower.contains("throttled") {
        return fail(ErrorClass::Transient, says::BUSY);
    }
    if words.contains("Communication Error:") || lower.contains("access_denied") {
        return fail(ErrorClass::Terminal, says::REFUSED);
    }
    if op == Op::Remove && words.contains("There is no one-time share") {
        return Ok(Answer::Removed(Removed::NotFound));
    }
    if op == Op::GetSharedFolder && words.contains("Cannot find any object with UID") {
        return fail(ErrorClass::Terminal, says::NO_FOLDER);
    }

    if seen.ok {
        match op {
            Op::Create => {
                if let Some(line) = seen
                    .out_text
                    .lines()
                    .map(str::trim)
                    .find(|l| SHARE_URL_LINE.is_match(l))
                {
                    return Ok(Answer::Url(ShareUrl::new(line.to_string())));
                }
            }
            Op::Remove => {
                // The CLI says nothing when it removes; service mode says "… is removed".
                if seen.out_text.contains("is removed")
                    || (seen.http.is_none() && seen.error_text.trim().is_empty())
                {
                    return Ok(Answer::Removed(Removed::Removed));
                }
            }
            Op::List => {
                if let Some(rows) = seen.rows {
                    return Ok(Answer::Rows(rows));
                }
            }
            // `list` prints nothing (and logs "No records are found") for an empty vault; Commander
            // may print a line of chatter before the JSON.
            Op::ListRecords => match seen.json {
                Some(serde_json::Value::Array(rows)) => return Ok(Answer::Rows(rows)),
                None if seen.out_text.trim().is_empty()
                    || seen.out_text.contains("No records are found") =>
                {
                    return Ok(Answer::Rows(Vec::new()));
                }
                _ => {}
            },
            Op::ListSharedFolders => {
                // `list-sf` prints nothing at all (or "No shared folders are found") when there
                // are none.
                match seen.json {
                    Some(json @ serde_json::Value::Array(_)) => return Ok(Answer::Json(json)),
                    None if seen.out_text.trim().is_empty()
                        || seen.out_text.contains("No shared folders are found") =>
                    {
                        return Ok(Answer::Json(serde_json::Value::Array(Vec::new())));
                    }
                    _ => {}
                }
            }
            Op::GetSharedFolder | Op::RotationInfo => {
                if let Some(json @ serde_json::Value::Object(_)) = seen.json {
                    return Ok(Answer::Json(json));
                }
            }
        }
        // A success status without the evidence of success: the command may or may not have run.
        return fail(ErrorClass::Transient, says::NO_ANSWER);
    }

    match seen.http {
        // Any other 4xx: we are calling it wrong (path, method, body) — a configuration fault.
        Some(status) if (400..500).contains(&status) => {
            fail(ErrorClass::Terminal, says::MISCONFIGURED)
        }
        // Unrecognised 5xx, non-zero exits and signals: retry within the budget.
        _ => fail(ErrorClass::Transient, says::NO_ANSWER),
    }
}

/// Both transports reduced to the same questions.
struct Seen {
    http: Option<u16>,
    /// Exit 0 / HTTP 2xx with a body that does not say "error".
    ok: bool,
    /// stdout, or service mode's `message`.
    out_text: String,
    /// stderr, or service mode's `error` (whole body when it is not JSON).
    error_text: String,
    /// A JSON list, when the output held one.
    rows: Option<Vec<serde_json::Value>>,
    /// The JSON the output held: stdout, or service mode's `data` (or a JSON string in `message`).
    json: Option<serde_json::Value>,
    process: Option<(Option<i32>, String, String)>,
    body: Option<String>,
}

impl Seen {
    fn from(output: &CommandOutput) -> Seen {
        match output {
            CommandOutput::Process {
                exit,
                stdout,
                stderr,
            } => Seen {
                http: None,
                ok: *exit == Some(0),
                out_text: stdout.clone(),
                error_text: stderr.clone(),
                rows: rows_of(stdout),
                json: json_of(stdout),
                process: Some((*exit, stdout.clone(), stderr.clone())),
                body: None,
            },
            CommandOutput::Service { status, body } => {
                let json: Option<serde_json::Value> = serde_json::from_str(body).ok();
                let field = |name: &str| {
                    json.as_ref()
                        .and_then(|j| j.get(name))
                        .and_then(|v| v.as_str())
                        .unwrap_or_default()
                        .to_string()
                };
                let said_error = field("status") == "error";
                let mut error_text = field("error");
                if json.is_none() || (said_error && error_text.is_empty()) {
                    error_text = body.clone();
                }
                if let Some(code) = json
                    .as_ref()
                    .and_then(|j| j.get("result_code"))
                    .and_then(|v| v.as_str())
                {
                    error_text = format!("{error_text} {code}");
                }
                let message = field("message");
                // "There is no one-time share" comes back as a 200 message, not an error.
                if message.contains("There is no one-time share") {
                    error_text = format!("{error_text} {message}");
                }
                let data = json
                    .as_ref()
                    .and_then(|j| j.get("data"))
                    .filter(|d| !d.is_null())
                    .cloned();
                let rows = data
                    .as_ref()
                    .and_then(|d| d.as_array().cloned())
                    .or_else(|| rows_of(&message));
                let json = data.or_else(|| json_of(&message));
                Seen {
                    http: Some(*status),
                    ok: (200..300).contains(status) && !said_error,
                    out_text: message,
                    error_text,
                    rows,
                    json,
                    process: None,
                    body: Some(body.clone()),
                }
            }
        }
    }

    /// The tool's text for the audit detail (VaultError::new scrubs share URLs from it). With
    /// `private`, what the command printed is left out (its size only) and service mode keeps
    /// only its `error` text: a read's output is never kept.
    fn raw(&self, private: bool) -> String {
        match (&self.process, &self.body) {
            (Some((exit, stdout, stderr)), _) => {
                let exit = exit.map_or_else(|| "signal".to_string(), |c| c.to_string());
                let stdout = if private {
                    format!("[{} bytes, not kept]", stdout.len())
                } else {
                    clip(stdout.trim())
                };
                format!(
                    "exit {exit}; stdout: {stdout}; stderr: {}",
                    clip(stderr.trim())
                )
            }
            // A success status's text is the command's output: not kept either.
            (None, Some(body)) if private => format!(
                "HTTP {}; error: {}; body: [{} bytes, not kept]",
                self.http.unwrap_or_default(),
                if self.ok {
                    String::new()
                } else {
                    clip(self.error_text.trim())
                },
                body.len()
            ),
            (None, Some(body)) => format!(
                "HTTP {}; body: {}",
                self.http.unwrap_or_default(),
                clip(body.trim())
            ),
            (None, None) => String::new(),
        }
    }
}

/// A JSON array, or an object whose `data` is one; empty output is an empty list.
fn rows_of(text: &str) -> Option<Vec<serde_json::Value>> {
    let text = text.trim();
    if text.is_empty() {
        return Some(Vec::new());
    }
    match serde_json::from_str::<serde_json::Value>(text).ok()? {
        serde_json::Value::Array(rows) => Some(rows),
        serde_json::Value::Object(mut o) => match o.remove("data") {
            Some(serde_json::Value::Array(rows)) => Some(rows),
            _ => None,
        },
        _ => None,
    }
}

/// The JSON value printed: the whole text, or — when Commander printed a line of chatter first —
/// from the first line that opens a JSON object or array.
fn json_of(text: &str) -> Option<serde_json::Value> {
    let text = text.trim();
    if text.is_empty() {
        return None;
    }
    if let Ok(json) = serde_json::from_str(text) {
        return Some(json);
    }
    let start = text
        .match_indices('\n')
        .map(|(i, _)| i + 1)
        .find(|&i| matches!(text[i..].trim_start().chars().next(), Some('{' | '[')))?;
    serde_json::from_str(&text[start..]).ok()
}

/// Keeps audit details bounded: Commander can print pages of text.
fn clip(text: &str) -> String {
    const MAX: usize = 2000;
    if text.len() <= MAX {
        return text.to_string();
    }
    let mut end = MAX;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    const URL: &str =
        "https://keepersecurity.com/vault/share/#AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8";

    fn cli(exit: i32, stdout: &str, stderr: &str) -> CommandOutput {
        CommandOutput::Process {
            exit: Some(exit),
            stdout: stdout.into(),
            stderr: stderr.into(),
        }
    }

    fn service(status: u16, body: &str) -> CommandOutput {
        CommandOutput::Service {
            status,
            body: body.into(),
        }
    }

    fn error(op: Op, out: CommandOutput) -> VaultError {
        match classify(op, &out) {
            Err(e) => {
                assert!(
                    !e.raw.contains("vault/share/#") && !e.to_string().contains("vault/share/#"),
                    "a share URL leaked into an error"
                );
                e
            }
            Ok(_) => panic!("expected a failure for {out:?}"),
        }
    }

    fn class(op: Op, out: CommandOutput) -> (ErrorClass, String) {
        let e = error(op, out);
        (e.class, e.message)
    }

    #[test]
    fn a_url_alone_on_a_line_with_exit_zero_is_success() {
        let out = cli(0, &format!("Syncing...\n{URL}\n"), "");
        let Ok(Answer::Url(url)) = classify(Op::Create, &out) else {
            panic!("expected a url");
        };
        assert_eq!(url.expose(), URL);
        let out = service(
            200,
            &format!(
                r#"{{"status":"success","command":"one-time-share","message":"{URL}","data":null}}"#
            ),
        );
        assert!(matches!(classify(Op::Create, &out), Ok(Answer::Url(_))));
    }

    #[test]
    fn a_url_with_a_failing_exit_or_inside_other_text_is_not_success() {
        assert_eq!(class(Op::Create, cli(1, URL, "")).0, ErrorClass::Transient);
        assert_eq!(
            class(Op::Create, cli(0, &format!("see {URL} here"), "")).0,
            ErrorClass::Transient
        );
        assert_eq!(
            class(Op::Create, cli(0, "http://evil/vault/share/#abc", "")).0,
            ErrorClass::Transient
        );
    }

    #[test]
    fn every_row_of_the_cli_table() {
        use ErrorClass::*;
        let rows: &[(CommandOutput, ErrorClass, &str)] = &[
            (
                cli(
                    0,
                    "",
                    "URL expiration period parameter \"--expire\" is required.",
                ),
                Terminal,
                says::BUG,
            ),
            (
                cli(
                    1,
                    "",
                    "one-time-share: URL expiration period cannot be greater than 6 months.",
                ),
                Terminal,
                says::TOO_LONG,
            ),
            (
                cli(
                    1,
                    "",
                    "one-time-share: Enter name or uid of existing record",
                ),
                Terminal,
                says::NO_RECORD,
            ),
            (
                cli(
                    1,
                    "",
                    "one-time-share: One-Time Shares are currently not available for PAM records.",
                ),
                Terminal,
                says::PAM,
            ),
            (
                cli(1, "", "Communication Error: throttled"),
                Transient,
                says::BUSY,
            ),
            (
                cli(1, "", "Communication Error: access denied"),
                Terminal,
                says::REFUSED,
            ),
            (
                cli(
                    0,
                    "",
                    "Persistent login is not working in this non-interactive environment",
                ),
                NeedsOperator,
                says::NEEDS_OPERATOR,
            ),
            (
                cli(1, "", "Session token expired"),
                NeedsOperator,
                says::NEEDS_OPERATOR,
            ),
            (cli(0, "", ""), Transient, says::NO_ANSWER),
            (cli(0, "", "something new"), Transient, says::NO_ANSWER),
            (cli(2, "", "Traceback: boom"), Transient, says::NO_ANSWER),
        ];
        for (out, want, message) in rows {
            assert_eq!(
                class(Op::Create, out.clone()),
                (*want, message.to_string()),
                "{out:?}"
            );
        }
        let killed = CommandOutput::Process {
            exit: None,
            stdout: String::new(),
            stderr: String::new(),
        };
        assert_eq!(class(Op::Create, killed).0, Transient);
    }

    #[test]
    fn every_service_mode_status() {
        use ErrorClass::*;
        let rows: &[(CommandOutput, ErrorClass, &str)] = &[
            (
                service(401, "Please provide a valid api key"),
                Terminal,
                says::MISCONFIGURED,
            ),
            (
                service(403, "Not permitted to perform this function"),
                Terminal,
                says::MISCONFIGURED,
            ),
            (
                service(
                    429,
                    r#"{"status":"error","error":"rate limit","result_code":"throttled"}"#,
                ),
                Transient,
                says::BUSY,
            ),
            (service(503, "queue full"), Transient, says::BUSY),
            (service(504, "timed out in queue"), Transient, says::BUSY),
            (
                service(
                    500,
                    r#"{"status":"error","error":"Unexpected error: one-time-share: Enter name or uid of existing record"}"#,
                ),
                Terminal,
                says::NO_RECORD,
            ),
            (
                service(
                    500,
                    r#"{"status":"error","error":"Unexpected error: access_denied"}"#,
                ),
                Terminal,
                says::REFUSED,
            ),
            (
                service(500, "Internal Server Error"),
                Transient,
                says::NO_ANSWER,
            ),
            (service(404, "Not Found"), Terminal, says::MISCONFIGURED),
            (service(307, ""), Terminal, says::MISCONFIGURED),
            (service(301, ""), Terminal, says::MISCONFIGURED),
            (
                service(200, r#"{"status":"success","message":"","data":null}"#),
                Transient,
                says::NO_ANSWER,
            ),
            (
                service(
                    200,
                    r#"{"status":"error","error":"Communication Error: throttled"}"#,
                ),
                Transient,
                says::BUSY,
            ),
        ];
        for (out, want, message) in rows {
            assert_eq!(
                class(Op::Create, out.clone()),
                (*want, message.to_string()),
                "{out:?}"
            );
        }
    }

    #[test]
    fn remove_answers() {
        let removed = |out| matches!(classify(Op::Remove, &out), Ok(Answer::Removed(r)) if r == Removed::Removed);
        let missing = |out| matches!(classify(Op::Remove, &out), Ok(Answer::Removed(r)) if r == Removed::NotFound);
        assert!(removed(cli(0, "", "")));
        assert!(missing(cli(
            0,
            "",
            "There is no one-time share \"passkey-req-1\""
        )));
        assert!(removed(service(
            200,
            r#"{"status":"success","message":"One-time share \"x\" is removed."}"#
        )));
        assert!(missing(service(
            200,
            r#"{"status":"success","message":"There is no one-time share \"x\""}"#
        )));
        // A 200 that says neither is no proof that the share is gone.
        assert_eq!(
            class(
                Op::Remove,
                service(200, r#"{"status":"success","message":""}"#)
            )
            .0,
            ErrorClass::Transient
        );
        assert_eq!(
            class(
                Op::Remove,
                cli(
                    0,
                    "",
                    "Persistent login is not working in this non-interactive environment"
                )
            )
            .0,
            ErrorClass::NeedsOperator
        );
    }

    #[test]
    fn list_answers() {
        let rows = |out| match classify(Op::List, &out) {
            Ok(Answer::Rows(rows)) => rows.len(),
            other => panic!("{other:?}"),
        };
        assert_eq!(rows(cli(0, r#"[{"share_link_id":"a"}]"#, "")), 1);
        assert_eq!(rows(cli(0, "", "")), 0);
        assert_eq!(
            rows(service(
                200,
                r#"{"status":"success","data":[{"a":1},{"b":2}]}"#
            )),
            2
        );
        assert_eq!(
            class(Op::List, cli(0, "not json", "")).0,
            ErrorClass::Transient
        );
    }

    #[test]
    fn reads_answer_with_json_from_either_transport() {
        let json = |op, out| match classify(op, &out) {
            Ok(Answer::Json(json)) => json,
            other => panic!("{other:?}"),
        };
        let rows = r#"[{"shared_folder_uid":"SfDatabases0000000001a","name":"Databases"}]"#;
        assert_eq!(
            json(Op::ListSharedFolders, cli(0, rows, ""))
                .as_array()
                .unwrap()
                .len(),
            1
        );
        assert_eq!(
            json(Op::ListSharedFolders, cli(0, "", "")),
            serde_json::json!([])
        );
        assert_eq!(
            json(
                Op::ListSharedFolders,
                service(200, &format!(r#"{{"status":"success","data":{rows}}}"#))
            )
            .as_array()
            .unwrap()
            .len(),
            1
        );
        let folder = r#"{"folder_uid":"SfDatabases0000000001a","users":[]}"#;
        assert_eq!(
            json(
                Op::GetSharedFolder,
                cli(0, &format!("Syncing...\n{folder}"), "")
            )["folder_uid"],
            "SfDatabases0000000001a"
        );
        // Service mode: the JSON in `data`, or as a string in `message`.
        let in_data = service(
            200,
            &format!(r#"{{"status":"success","command":"get","data":{folder}}}"#),
        );
        let in_message = service(
            200,
            &serde_json::json!({"status":"success","command":"get","message":folder,"data":null})
                .to_string(),
        );
        assert_eq!(
            json(Op::GetSharedFolder, in_data)["users"],
            serde_json::json!([])
        );
        assert_eq!(
            json(Op::GetSharedFolder, in_message)["users"],
            serde_json::json!([])
        );
        assert_eq!(
            json(
                Op::RotationInfo,
                cli(
                    0,
                    r#"{"status":"RRS_NO_ROTATION","ready_to_rotate":false}"#,
                    ""
                )
            )["status"],
            "RRS_NO_ROTATION"
        );
        // A list where an object is expected (and the reverse) is no answer.
        assert_eq!(
            class(Op::GetSharedFolder, cli(0, "[]", "")).0,
            ErrorClass::Transient
        );
        assert_eq!(
            class(Op::ListSharedFolders, cli(0, "{}", "")).0,
            ErrorClass::Transient
        );
    }

    #[test]
    fn reads_are_classified_like_shares_and_keep_no_output() {
        use ErrorClass::*;
        let rows: &[(Op, CommandOutput, ErrorClass, &str)] = &[
            (
                Op::GetSharedFolder,
                cli(1, "", "get: Cannot find any object with UID: SfGone"),
                Terminal,
                says::NO_FOLDER,
            ),
            (
                Op::ListSharedFolders,
                cli(1, "", "Communication Error: throttled"),
                Transient,
                says::BUSY,
            ),
            (
                Op::RotationInfo,
                cli(1, "", "Communication Error: access denied"),
                Terminal,
                says::REFUSED,
            ),
            (
                Op::ListSharedFolders,
                cli(
                    0,
                    "",
                    "Persistent login is not working in this non-interactive environment",
                ),
                NeedsOperator,
                says::NEEDS_OPERATOR,
            ),
            (
                Op::RotationInfo,
                service(429, r#"{"status":"error","result_code":"throttled"}"#),
                Transient,
                says::BUSY,
            ),
        ];
        for (op, out, want, message) in rows {
            assert_eq!(
                class(*op, out.clone()),
                (*want, message.to_string()),
                "{op:?} {out:?}"
            );
        }
        // Whatever a read printed stays out of the error, even when it is not what we expected.
        for out in [
            cli(0, "Password: hunter2-secret", ""),
            service(
                200,
                r#"{"status":"success","message":"Password: hunter2-secret"}"#,
            ),
        ] {
            let e = error(Op::GetSharedFolder, out);
            assert_eq!(e.class, Transient);
            assert!(!e.raw.contains("hunter2"), "{}", e.raw);
            assert!(e.raw.contains("not kept"), "{}", e.raw);
        }
    }

    /// #21.1: `list --format json --verbose` is a read like `get`: rows from either transport,
    /// an empty vault is an empty list, and what it printed (a `description` can hold a login
    /// name) never goes into an error.
    #[test]
    fn record_listing_answers_with_rows_and_keeps_no_output() {
        let rows = |out| match classify(Op::ListRecords, &out) {
            Ok(Answer::Rows(rows)) => rows,
            other => panic!("{other:?}"),
        };
        let listed = r#"[{"record_uid":"dbPr0dPostgres00000001","type":"login","title":"db-prod","description":"svc-admin","shared":true}]"#;
        assert_eq!(rows(cli(0, listed, "")).len(), 1);
        assert_eq!(rows(cli(0, &format!("Syncing...\n{listed}"), "")).len(), 1);
        assert_eq!(
            rows(service(
                200,
                &format!(r#"{{"status":"success","command":"list","data":{listed}}}"#)
            ))
            .len(),
            1
        );
        assert!(rows(cli(0, "", "No records are found")).is_empty());
        assert!(rows(service(200, r#"{"status":"success","data":null}"#)).is_empty());
        for out in [
            cli(0, "{\"description\": \"svc-admin\"}", ""),
            service(
                200,
                r#"{"status":"success","message":"description: svc-admin"}"#,
            ),
        ] {
            let e = error(Op::ListRecords, out);
            assert_eq!(e.class, ErrorClass::Transient);
            assert!(!e.raw.contains("svc-admin"), "{}", e.raw);
        }
        let e = error(
            Op::ListRecords,
            cli(
                0,
                "",
                "Persistent login is not working in this non-interactive environment",
            ),
        );
        assert_eq!(e.class, ErrorClass::NeedsOperator);
    }

    /// #21.1: service mode created without a read command answers 403. That is a configuration
    /// fault an administrator fixes, so the message names the command and the flag; a 403 for a
    /// share (which a requester may read) keeps the short words.
    #[test]
    fn a_forbidden_read_names_the_service_create_flag() {
        for op in [
            Op::ListRecords,
            Op::ListSharedFolders,
            Op::GetSharedFolder,
            Op::RotationInfo,
        ] {
            let e = error(op, service(403, "Not permitted to perform this function"));
            assert_eq!(e.class, ErrorClass::Terminal);
            assert!(
                e.message.contains(&format!("`{}`", op.command_word()))
                    && e.message.contains("service-create -c")
                    && e.message.contains(SERVICE_COMMANDS),
                "{op:?}: {}",
                e.message
            );
        }
        assert!(SERVICE_COMMANDS.split(',').any(|c| c == "list"));
        assert_eq!(
            error(Op::Create, service(403, "Not permitted")).message,
            says::MISCONFIGURED
        );
    }

    #[test]
    fn raw_keeps_the_tool_text_without_urls() {
        let e = error(
            Op::Create,
            cli(1, URL, "Communication Error: access denied"),
        );
        assert!(e.raw.contains("access denied"), "{}", e.raw);
        assert!(e.raw.contains("exit 1"), "{}", e.raw);
        assert!(!e.raw.contains("AAECAwQF"), "{}", e.raw);
    }
}
