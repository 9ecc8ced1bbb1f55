//! Keeper Commander, by either of its two doors: [`CommanderService`] (service mode's REST API:
//! one login, preferred for a long-running bot) and [`CommanderCli`] (`keeper` as a subprocess per
//! command). Both serve one-time shares ([`OneTimeSharer`]), shared-folder ACLs
//! ([`FolderAclSource`]: `list-sf`, then `get` on each shared folder uid it returned), record
//! metadata ([`CommanderReads`]: `list --format json --verbose`, uid, type and title only) and
//! rotation information ([`RotationChecker`]: `pam rotation info`).
//!
//! Both only move a command (a full argv: `one-time-share create …`, `list-sf …`, `get …`,
//! `pam rotation info …`) and its raw answer; the meaning of the answer is [`classify`]'s, and the
//! logic above it (validation, expiry, cleanup after an unclear create, ACL mapping) is written
//! once below, over the private [`Transport`] trait.

use super::acl::{
    CommanderReads, FolderAclSource, FolderListing, ListedRecord, acl_from_folder_json,
};
use super::classify::{Answer, CommandOutput, Op, classify};
use super::rotation::{RotationChecker, RotationInfo};
use super::{
    ErrorClass, OneTimeSharer, Removed, Share, ShareInfo, SharedFolder, VaultError,
    share_id_from_url,
};
use crate::domain::{Clock, Timestamp};
use async_trait::async_trait;
use secrecy::{ExposeSecret, SecretString};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, LazyLock};
use std::time::Duration;
use tokio::io::AsyncReadExt;

/// Keeper refuses one-time shares that live longer than this (shared/keeper.md).
pub const MAX_TTL: time::Duration = time::Duration::days(182);

/// How many times an unclear create is followed by remove-by-name before we give up and say so.
const CLEANUP_ATTEMPTS: u32 = 5;

pub const DEFAULT_SERVICE_TIMEOUT: Duration = Duration::from_secs(30);
pub const DEFAULT_CLI_TIMEOUT: Duration = Duration::from_secs(60);

/// Carries one Commander command — its whole argv, command words first (`["list-sf", "--format",
/// "json"]`) — to Commander and brings back its raw answer. Errors here are transport failures
/// (timeout, unreachable). Every argument has passed validation: no spaces or quotes; a value that
/// may begin with `-` (a record uid or share id: base64url, so one in 64 does) only ever follows
/// the `--` separator, after which Commander's argparse reads every word as positional.
#[async_trait]
trait Transport: Send + Sync {
    async fn run(&self, argv: &[String]) -> Result<CommandOutput, VaultError>;
}

/// `one-time-share <args…>`.
fn ots(args: &[&str]) -> Vec<String> {
    std::iter::once("one-time-share")
        .chain(args.iter().copied())
        .map(str::to_string)
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Argument validation: service mode joins arguments into one command line that Commander splits
// again (shlex), so anything that could change how it splits (spaces, quotes, shell
// metacharacters) is refused before a command is built. A leading '-' is refused only where the
// value must sit among options (`--name`, `get`, `-r`); record uids and share ids are Keeper's
// base64url, which begins with '-' one time in 64, so in `one-time-share` commands they are
// passed after `--` instead of refused: every id Commander hands out can be removed again.

/// A record uid in a `one-time-share` command (after `--`): any base64url uid.
static RECORD_UID: LazyLock<regex::Regex> =
    LazyLock::new(|| regex::Regex::new(r"^[A-Za-z0-9_\-]{22}$").unwrap());
/// A uid given among options (`get <uid>`, `-r <uid>`): must not read as an option.
static OPTION_SAFE_UID: LazyLock<regex::Regex> =
    LazyLock::new(|| regex::Regex::new(r"^[A-Za-z0-9_][A-Za-z0-9_\-]{21}$").unwrap());
/// Our request ids (`passkey-req-42`), the value of `--name`: never begins with '-'.
static SHARE_NAME: LazyLock<regex::Regex> =
    LazyLock::new(|| regex::Regex::new(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]{0,127}$").unwrap());
/// What `remove` takes after `--`: a Keeper share id (base64url, perhaps `=`-padded, perhaps
/// beginning with '-'; `--a=b` is only a word there) or one of our names. At least one letter or
/// digit, so it is never just dashes.
static SHARE_REF: LazyLock<regex::Regex> = LazyLock::new(|| {
    regex::Regex::new(r"^[A-Za-z0-9_.=\-]*[A-Za-z0-9][A-Za-z0-9_.=\-]*$").unwrap()
});

fn check_uid(uid: &str) -> Result<(), VaultError> {
    if RECORD_UID.is_match(uid) {
        Ok(())
    } else {
        Err(VaultError::new(
            ErrorClass::Terminal,
            "invalid record uid",
            format!("refused record uid {uid:?} before calling Commander"),
        ))
    }
}

/// A record uid that must stand among options (`pam rotation info -r <uid>`).
fn check_option_safe_uid(uid: &str) -> Result<(), VaultError> {
    if OPTION_SAFE_UID.is_match(uid) {
        Ok(())
    } else {
        Err(VaultError::new(
            ErrorClass::Terminal,
            "invalid record uid",
            format!("refused record uid {uid:?} before calling Commander"),
        ))
    }
}

/// Shared folder uids have the same shape as record uids.
fn check_folder_uid(uid: &str) -> Result<(), VaultError> {
    if OPTION_SAFE_UID.is_match(uid) {
        Ok(())
    } else {
        Err(VaultError::new(
            ErrorClass::Terminal,
            "the vault listed a shared folder Passkey cannot read",
            format!("refused shared folder uid {uid:?} from list-sf before calling get"),
        ))
    }
}

fn check_name(name: &str) -> Result<(), VaultError> {
    if SHARE_NAME.is_match(name) {
        Ok(())
    } else {
        Err(VaultError::new(
            ErrorClass::Terminal,
            "invalid share name",
            format!("refused share name or id {name:?} before calling Commander"),
        ))
    }
}

/// A share id or name to remove (it follows `--`).
fn check_share_ref(id_or_name: &str) -> Result<(), VaultError> {
    if id_or_name.len() <= 128 && SHARE_REF.is_match(id_or_name) {
        Ok(())
    } else {
        Err(VaultError::new(
            ErrorClass::Terminal,
            "invalid share name",
            format!("refused share name or id {id_or_name:?} before calling Commander"),
        ))
    }
}

/// `ttl` in whole minutes, rounded up; refused when not positive or beyond Keeper's limit.
fn expire_minutes(ttl: time::Duration) -> Result<i64, VaultError> {
    if ttl <= time::Duration::ZERO || ttl > MAX_TTL {
        return Err(VaultError::new(
            ErrorClass::Terminal,
            super::classify::says::TOO_LONG,
            format!("ttl {ttl} is outside (0, 182 days]; Commander was not called"),
        ));
    }
    let micros = ttl.whole_microseconds();
    let minute = 60_000_000i128;
    Ok(((micros + minute - 1) / minute) as i64)
}

// ---------------------------------------------------------------------------------------------
// The share logic, once for both transports.

/// Both transports share one `OneTimeSharer`: the share logic above, over their `transport`.
macro_rules! commander_sharer {
    ($sharer:ty) => {
        #[async_trait]
        impl OneTimeSharer for $sharer {
            async fn create(
                &self,
                record_uid: &str,
                ttl: time::Duration,
                name: &str,
            ) -> Result<Share, VaultError> {
                create_share(&self.transport, self.clock.as_ref(), record_uid, ttl, name).await
            }

            async fn remove(
                &self,
                record_uid: &str,
                share_id_or_name: &str,
            ) -> Result<Removed, VaultError> {
                remove_share(&self.transport, record_uid, share_id_or_name).await
            }

            async fn list(&self, record_uid: &str) -> Result<Vec<ShareInfo>, VaultError> {
                list_shares(&self.transport, record_uid).await
            }
        }

        #[async_trait]
        impl FolderAclSource for $sharer {
            async fn folder_acls(&self) -> Result<Vec<SharedFolder>, VaultError> {
                Ok(folder_listings(&self.transport)
                    .await?
                    .into_iter()
                    .map(|l| l.folder)
                    .collect())
            }
        }

        #[async_trait]
        impl CommanderReads for $sharer {
            async fn listed_records(&self) -> Result<Vec<ListedRecord>, VaultError> {
                listed_records(&self.transport).await
            }

            async fn folder_listings(&self) -> Result<Vec<FolderListing>, VaultError> {
                folder_listings(&self.transport).await
            }
        }

        #[async_trait]
        impl RotationChecker for $sharer {
            async fn rotation_info(&self, record_uid: &str) -> Result<RotationInfo, VaultError> {
                rotation_info(&self.transport, record_uid).await
            }
        }
    };
}

/// `classify` answered `op` with a payload of another kind (a bug in Passkey, not the vault's
/// fault): a Transient error, so the caller retries and the scheduler keeps running, rather than
/// a panic. The answer itself is not quoted: it may hold a share URL.
fn unexpected_answer(op: Op) -> VaultError {
    tracing::error!(
        ?op,
        "the vault bridge got an answer of the wrong kind (a bug in Passkey)"
    );
    VaultError::new(
        ErrorClass::Transient,
        super::classify::says::NO_ANSWER,
        format!("unexpected answer kind for {op:?}"),
    )
}

async fn run_op(
    transport: &dyn Transport,
    op: Op,
    args: &[String],
) -> Result<(Answer, CommandOutput), (VaultError, Option<CommandOutput>)> {
    let output = transport.run(args).await.map_err(|e| (e, None))?;
    match classify(op, &output) {
        Ok(answer) => Ok((answer, output)),
        Err(e) => Err((e, Some(output))),
    }
}

async fn create_share(
    transport: &dyn Transport,
    clock: &dyn Clock,
    record_uid: &str,
    ttl: time::Duration,
    name: &str,
) -> Result<Share, VaultError> {
    check_uid(record_uid)?;
    check_name(name)?;
    let minutes = expire_minutes(ttl)?;
    let now = clock.now();
    let expire = format!("{minutes}mi");
    let args = ots(&[
        "create", "--expire", &expire, "--name", name, "--", record_uid,
    ]);
    tracing::info!(record_uid, name, minutes, "creating a one-time share");
    let failure = match run_op(transport, Op::Create, &args).await {
        Ok((Answer::Url(url), _)) => match share_id_from_url(url.expose()) {
            Some(share_id) => {
                tracing::info!(record_uid, name, share_id, "one-time share created");
                return Ok(Share {
                    url,
                    share_id,
                    expires_at: now.plus(time::Duration::minutes(minutes)),
                });
            }
            // A live link we cannot name by id: take it down by name rather than hand it out.
            None => (
                VaultError::new(
                    ErrorClass::Transient,
                    super::classify::says::NO_ANSWER,
                    "create printed a share URL without a usable key",
                ),
                None,
            ),
        },
        // An answer of another kind is a Passkey bug; the create may still have run, so it is
        // cleaned up like any unclear failure.
        Ok((_, output)) => (unexpected_answer(Op::Create), Some(output)),
        Err(failure) => failure,
    };
    let (error, output) = failure;
    tracing::warn!(
        record_uid,
        name,
        class = ?error.class,
        raw = %error.raw,
        "one-time share create failed"
    );
    if may_have_run(&error, output.as_ref()) {
        clean_up(transport, record_uid, name).await;
    }
    Err(error)
}

/// Whether a failed create may still have made a link. Only a clear refusal rules it out: a
/// Terminal answer, or a throttle/queue refusal that happens before the command runs.
fn may_have_run(error: &VaultError, output: Option<&CommandOutput>) -> bool {
    if error.class == ErrorClass::Terminal {
        return false;
    }
    match output {
        Some(CommandOutput::Service {
            status: 429 | 503, ..
        }) => false,
        Some(CommandOutput::Process { stderr, .. }) if stderr.contains("throttled") => false,
        _ => true,
    }
}

/// Create is not idempotent: after an unclear failure, remove by name until Commander says there
/// is no such share, so that the retry never leaves two live links.
async fn clean_up(transport: &dyn Transport, record_uid: &str, name: &str) {
    for attempt in 1..=CLEANUP_ATTEMPTS {
        match remove_share(transport, record_uid, name).await {
            Ok(Removed::NotFound) => {
                tracing::info!(
                    record_uid,
                    name,
                    attempt,
                    "no share left after an unclear create"
                );
                return;
            }
            Ok(Removed::Removed) => {
                tracing::info!(
                    record_uid,
                    name,
                    attempt,
                    "removed a share left by an unclear create"
                );
            }
            Err(e) => {
                tracing::warn!(record_uid, name, attempt, class = ?e.class, raw = %e.raw, "cleanup remove failed");
            }
        }
    }
    tracing::error!(
        record_uid,
        name,
        "a one-time share may still be live after an unclear create; remove it by this name"
    );
}

async fn remove_share(
    transport: &dyn Transport,
    record_uid: &str,
    share_id_or_name: &str,
) -> Result<Removed, VaultError> {
    check_uid(record_uid)?;
    check_share_ref(share_id_or_name)?;
    let args = ots(&["remove", "--", record_uid, share_id_or_name]);
    match run_op(transport, Op::Remove, &args).await {
        Ok((Answer::Removed(r), _)) => Ok(r),
        Ok(_) => Err(unexpected_answer(Op::Remove)),
        Err((e, _)) => Err(e),
    }
}

async fn list_shares(
    transport: &dyn Transport,
    record_uid: &str,
) -> Result<Vec<ShareInfo>, VaultError> {
    check_uid(record_uid)?;
    let args = ots(&["list", "--format", "json", "--", record_uid]);
    match run_op(transport, Op::List, &args).await {
        Ok((Answer::Rows(rows), _)) => Ok(rows.iter().filter_map(share_info).collect()),
        Ok(_) => Err(unexpected_answer(Op::List)),
        Err((e, _)) => Err(e),
    }
}

// ---------------------------------------------------------------------------------------------
// Shared-folder ACLs and rotation information: reads, once for both transports.

async fn run_read(
    transport: &dyn Transport,
    op: Op,
    argv: &[&str],
) -> Result<serde_json::Value, VaultError> {
    let argv: Vec<String> = argv.iter().map(|a| a.to_string()).collect();
    match run_op(transport, op, &argv).await {
        Ok((Answer::Json(json), _)) => Ok(json),
        Ok(_) => Err(unexpected_answer(op)),
        Err((e, _)) => Err(e),
    }
}

/// `list-sf`, then `get <uid>` for each shared folder it listed — and only for those: `get` on a
/// record uid would print the record's secrets. A folder that disappears between the two calls
/// is left out; any other failure fails the whole read (an ACL is never guessed). Each folder
/// comes with the uids in its `records` list (its membership: `list` does not say where a record
/// lives).
async fn folder_listings(transport: &dyn Transport) -> Result<Vec<FolderListing>, VaultError> {
    let listed = run_read(
        transport,
        Op::ListSharedFolders,
        &["list-sf", "--format", "json"],
    )
    .await?;
    let rows = listed.as_array().cloned().unwrap_or_default();
    let mut folders = Vec::with_capacity(rows.len());
    for row in &rows {
        let text = |key: &str| {
            row.get(key)
                .and_then(|v| v.as_str())
                .map(str::trim)
                .filter(|s| !s.is_empty())
        };
        let Some(uid) = text("shared_folder_uid") else {
            continue;
        };
        check_folder_uid(uid)?;
        let folder = match run_read(
            transport,
            Op::GetSharedFolder,
            &["get", uid, "--format", "json"],
        )
        .await
        {
            Ok(folder) => folder,
            Err(e) if e.message == super::classify::says::NO_FOLDER => {
                tracing::info!(
                    folder_uid = uid,
                    "shared folder gone between list-sf and get"
                );
                continue;
            }
            Err(e) => return Err(e),
        };
        // Positive evidence that `get` described this shared folder and nothing else.
        let described = ["folder_uid", "shared_folder_uid"]
            .iter()
            .any(|k| folder.get(*k).and_then(|v| v.as_str()) == Some(uid));
        if !described || folder.get("record_uid").is_some() {
            return Err(VaultError::new(
                ErrorClass::Transient,
                super::classify::says::NO_ANSWER,
                format!("get {uid} did not describe that shared folder (output not kept)"),
            ));
        }
        let name = text("name")
            .or_else(|| folder.get("name").and_then(|v| v.as_str()))
            .unwrap_or(uid)
            .to_string();
        let record_uids = folder
            .get("records")
            .and_then(|v| v.as_array())
            .map(|rows| {
                rows.iter()
                    .filter_map(|r| r.get("record_uid").and_then(|v| v.as_str()))
                    .filter(|u| RECORD_UID.is_match(u))
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default();
        folders.push(FolderListing {
            folder: SharedFolder {
                uid: uid.to_string(),
                name,
                acl: Some(acl_from_folder_json(&folder)),
            },
            record_uids,
        });
    }
    tracing::info!(
        folders = folders.len(),
        "read shared folder ACLs from Commander"
    );
    Ok(folders)
}

/// Record types `list --verbose` also prints that are not credentials: KSM application
/// definitions and file attachments (v3 records keep their files as separate `file` records).
const NOT_CREDENTIALS: [&str; 2] = ["app", "file"];

/// `list --format json --verbose`: every record the account sees (`--verbose` includes PAM
/// records, which plain `list` leaves out, and prints whole titles). Only `record_uid`, `type` and
/// `title` are read from each row; `description` (which can hold a login name) and anything else
/// is dropped here, and the output is never kept in an error. Rows without a usable uid are
/// skipped.
async fn listed_records(transport: &dyn Transport) -> Result<Vec<ListedRecord>, VaultError> {
    let argv: Vec<String> = ["list", "--format", "json", "--verbose"]
        .iter()
        .map(|a| a.to_string())
        .collect();
    let rows = match run_op(transport, Op::ListRecords, &argv).await {
        Ok((Answer::Rows(rows), _)) => rows,
        Ok(_) => return Err(unexpected_answer(Op::ListRecords)),
        Err((e, _)) => return Err(e),
    };
    let mut skipped = 0usize;
    let records: Vec<ListedRecord> = rows
        .iter()
        .filter_map(|row| {
            let text = |key: &str| {
                row.get(key)
                    .and_then(|v| v.as_str())
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
            };
            let listed = text("record_uid")
                .filter(|uid| RECORD_UID.is_match(uid))
                .map(|uid| ListedRecord {
                    uid: uid.to_string(),
                    record_type: text("type").unwrap_or("unknown").to_string(),
                    title: text("title").unwrap_or(uid).to_string(),
                });
            if listed.is_none() {
                skipped += 1;
            }
            listed
        })
        .filter(|r| !NOT_CREDENTIALS.contains(&r.record_type.as_str()))
        .collect();
    if skipped > 0 {
        tracing::warn!(
            skipped,
            "Commander listed records without a usable uid; skipped"
        );
    }
    tracing::info!(records = records.len(), "listed records from Commander");
    Ok(records)
}

/// `pam rotation info -r <uid> --format json`.
async fn rotation_info(
    transport: &dyn Transport,
    record_uid: &str,
) -> Result<RotationInfo, VaultError> {
    check_option_safe_uid(record_uid)?;
    let json = run_read(
        transport,
        Op::RotationInfo,
        &[
            "pam", "rotation", "info", "-r", record_uid, "--format", "json",
        ],
    )
    .await?;
    RotationInfo::from_json(&json).map_err(|why| {
        VaultError::new(
            ErrorClass::Transient,
            super::classify::says::NO_ANSWER,
            format!("pam rotation info {record_uid}: {why}"),
        )
    })
}

/// One `list` row; rows without a share id are skipped (nothing could be done with them).
fn share_info(row: &serde_json::Value) -> Option<ShareInfo> {
    let text = |key: &str| {
        row.get(key)
            .and_then(|v| v.as_str())
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
    };
    Some(ShareInfo {
        share_id: text("share_link_id")?,
        name: text("name"),
        generated: text("generated").and_then(|t| naive_utc(&t)),
        opened: text("opened").and_then(|t| naive_utc(&t)),
        expires: text("expires").and_then(|t| naive_utc(&t)),
        status: text("status").unwrap_or_default(),
    })
}

/// Commander prints local time without an offset; we run it with `TZ=UTC`, so read it as UTC.
/// RFC 3339 and fractional seconds are accepted too.
fn naive_utc(text: &str) -> Option<Timestamp> {
    if let Ok(t) = Timestamp::parse(text) {
        return Some(t);
    }
    let formats = [
        time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second]"),
        time::macros::format_description!(
            "[year]-[month]-[day] [hour]:[minute]:[second].[subsecond]"
        ),
        time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]"),
    ];
    formats.iter().find_map(|f| {
        time::PrimitiveDateTime::parse(text, f)
            .ok()
            .map(|p| Timestamp::from_datetime(p.assume_utc()))
    })
}

// ---------------------------------------------------------------------------------------------
// Service mode.

/// Commander's REST service mode: `POST {base}/api/v1/executecommand` with an `api-key` header.
pub struct CommanderService {
    transport: ServiceTransport,
    clock: Arc<dyn Clock>,
}

struct ServiceTransport {
    http: reqwest::Client,
    endpoint: String,
    api_key: SecretString,
}

impl CommanderService {
    /// `base_url` is the service's root (e.g. `http://127.0.0.1:8900`); `timeout` bounds each call.
    pub fn new(
        base_url: &str,
        api_key: SecretString,
        timeout: Duration,
        clock: Arc<dyn Clock>,
    ) -> Result<CommanderService, VaultError> {
        // No redirects (`crate::outbound`): the `api-key` header would follow one to any host.
        let http = crate::outbound::builder()
            .timeout(timeout)
            .build()
            .map_err(|e| {
                VaultError::new(
                    ErrorClass::Terminal,
                    super::classify::says::MISCONFIGURED,
                    e.to_string(),
                )
            })?;
        Ok(CommanderService {
            transport: ServiceTransport {
                http,
                endpoint: format!("{}/api/v1/executecommand", base_url.trim_end_matches('/')),
                api_key,
            },
            clock,
        })
    }
}

#[async_trait]
impl Transport for ServiceTransport {
    async fn run(&self, argv: &[String]) -> Result<CommandOutput, VaultError> {
        // Commander splits this line again with shlex: each word is quoted where it needs it
        // (validation already refused spaces and quotes; this keeps the split exact regardless).
        let command = argv
            .iter()
            .map(|a| shell_quote(a))
            .collect::<Vec<_>>()
            .join(" ");
        let sent = self
            .http
            .post(&self.endpoint)
            .header("api-key", self.api_key.expose_secret())
            .json(&serde_json::json!({ "command": command }))
            .send()
            .await;
        let response = sent.map_err(|e| transport_error(&e))?;
        let status = response.status().as_u16();
        let body = response.text().await.map_err(|e| transport_error(&e))?;
        Ok(CommandOutput::Service { status, body })
    }
}

/// One word as POSIX shell (and Python's shlex) reads it back: bare when it has only characters
/// shlex never splits or interprets, otherwise in single quotes.
fn shell_quote(word: &str) -> std::borrow::Cow<'_, str> {
    let plain = |c: char| c.is_ascii_alphanumeric() || "@%+=:,./_-".contains(c);
    if !word.is_empty() && word.chars().all(plain) {
        std::borrow::Cow::Borrowed(word)
    } else {
        std::borrow::Cow::Owned(format!("'{}'", word.replace('\'', r#"'"'"'"#)))
    }
}

fn transport_error(e: &reqwest::Error) -> VaultError {
    let message = if e.is_timeout() {
        "the vault took too long, try again"
    } else {
        "the vault could not be reached, try again"
    };
    VaultError::new(
        ErrorClass::Transient,
        message,
        format!("commander service: {e}"),
    )
}

commander_sharer!(CommanderService);

// ---------------------------------------------------------------------------------------------
// The CLI.

/// `keeper --config <path> --fail-on-throttle <command> …` as a subprocess, one at a time
/// (each call logs in and rewrites the config's clone code, so calls sharing a config must not
/// overlap), killed when it outlives its timeout.
pub struct CommanderCli {
    transport: CliTransport,
    clock: Arc<dyn Clock>,
}

struct CliTransport {
    binary: PathBuf,
    config_path: PathBuf,
    timeout: Duration,
    one_at_a_time: tokio::sync::Mutex<()>,
}

impl CommanderCli {
    pub fn new(
        binary: impl Into<PathBuf>,
        config_path: impl Into<PathBuf>,
        timeout: Duration,
        clock: Arc<dyn Clock>,
    ) -> CommanderCli {
        CommanderCli {
            transport: CliTransport {
                binary: binary.into(),
                config_path: config_path.into(),
                timeout,
                one_at_a_time: tokio::sync::Mutex::new(()),
            },
            clock,
        }
    }
}

/// Commander's output is a line or a JSON document (a large vault's `list-sf` is the biggest);
/// more than this is not an answer we want.
const MAX_OUTPUT: u64 = 16 << 20;

#[async_trait]
impl Transport for CliTransport {
    async fn run(&self, argv: &[String]) -> Result<CommandOutput, VaultError> {
        let _turn = self.one_at_a_time.lock().await;
        // An argv vector, no shell: nothing in an argument is ever interpreted.
        let mut child = tokio::process::Command::new(&self.binary)
            .arg("--config")
            .arg(&self.config_path)
            .arg("--fail-on-throttle")
            .args(argv)
            .env("TZ", "UTC")
            .env("KEEPER_CONFIG_STORAGE", "file")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| {
                VaultError::new(
                    ErrorClass::NeedsOperator,
                    super::classify::says::NEEDS_OPERATOR,
                    format!("cannot start {}: {e}", self.binary.display()),
                )
            })?;
        let stdout = read_all(child.stdout.take());
        let stderr = read_all(child.stderr.take());
        let waited = tokio::time::timeout(self.timeout, child.wait()).await;
        let status = match waited {
            Ok(Ok(status)) => status,
            Ok(Err(e)) => {
                return Err(VaultError::new(
                    ErrorClass::Transient,
                    super::classify::says::NO_ANSWER,
                    format!("waiting for Commander: {e}"),
                ));
            }
            Err(_) => {
                // Kill and reap now, so no Commander outlives the call (nor lingers as a zombie).
                let _ = child.kill().await;
                return Err(VaultError::new(
                    ErrorClass::Transient,
                    "the vault took too long, try again",
                    format!(
                        "Commander did not finish within {}s and was killed",
                        self.timeout.as_secs_f64()
                    ),
                ));
            }
        };
        let stdout = stdout.await.unwrap_or_default();
        let stderr = stderr.await.unwrap_or_default();
        Ok(CommandOutput::Process {
            exit: status.code(),
            stdout,
            stderr,
        })
    }
}

fn read_all<R>(pipe: Option<R>) -> tokio::task::JoinHandle<String>
where
    R: tokio::io::AsyncRead + Unpin + Send + 'static,
{
    tokio::spawn(async move {
        let mut bytes = Vec::new();
        if let Some(pipe) = pipe {
            let _ = pipe.take(MAX_OUTPUT).read_to_end(&mut bytes).await;
        }
        String::from_utf8_lossy(&bytes).into_owned()
    })
}

commander_sharer!(CommanderCli);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minutes_round_up_and_the_limit_is_keepers() {
        assert_eq!(expire_minutes(time::Duration::minutes(60)).unwrap(), 60);
        assert_eq!(expire_minutes(time::Duration::seconds(61)).unwrap(), 2);
        assert_eq!(expire_minutes(time::Duration::seconds(1)).unwrap(), 1);
        assert_eq!(expire_minutes(MAX_TTL).unwrap(), 182 * 24 * 60);
        assert!(expire_minutes(MAX_TTL + time::Duration::seconds(1)).is_err());
        assert!(expire_minutes(time::Duration::ZERO).is_err());
    }

    #[test]
    fn only_plain_uids_and_names_pass() {
        assert!(check_uid("AbCdEfGhIjKlMnOpQrStUv").is_ok());
        assert!(check_uid("Ab_dEfGh-jKlMnOpQrStUv").is_ok());
        // Keeper's uids are base64url: one in 64 begins with '-'; it goes after `--`.
        assert!(check_uid("-bCdEfGhIjKlMnOpQrStUv").is_ok());
        assert!(check_option_safe_uid("-bCdEfGhIjKlMnOpQrStUv").is_err());
        assert!(check_folder_uid("-bCdEfGhIjKlMnOpQrStUv").is_err());
        for bad in [
            "",
            "short",
            "AbCdEfGhIjKlMnOpQrStU;",
            "AbCdEfGh IjKlMnOpQrStU",
            "AbCdEfGhIjKlMnOpQrSt'v",
            "AbCdEfGhIjKlMnOpQrStUvW",
        ] {
            assert!(check_uid(bad).is_err(), "{bad:?}");
        }
        assert!(check_name("passkey-req-42").is_ok());
        for bad in ["", "a b", "x;rm", "--expire", "$(id)", "a\"b", "a\nb"] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
        for id in [
            "-AbC_d",
            "--AbC-d",
            "AbC=",
            "--expire=1mi",
            "a_b",
            "passkey-req-42",
        ] {
            assert!(check_share_ref(id).is_ok(), "{id:?}");
        }
        for bad in [
            "", "-", "--", "a b", "x;rm", "$(id)", "a'b", "a=b c", "==", "-_",
        ] {
            assert!(check_share_ref(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn service_words_split_back_exactly() {
        assert_eq!(shell_quote("--"), "--");
        assert_eq!(shell_quote("-AbC=_d"), "-AbC=_d");
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), r#"'it'"'"'s'"#);
        assert_eq!(shell_quote(""), "''");
    }

    #[test]
    fn list_times_are_read_as_utc_whatever_their_shape() {
        let want = Timestamp::parse("2026-11-23T10:00:00Z").unwrap();
        assert_eq!(naive_utc("2026-11-23 10:00:00"), Some(want));
        assert_eq!(naive_utc("2026-11-23T10:00:00"), Some(want));
        assert_eq!(naive_utc("2026-11-23T10:00:00Z"), Some(want));
        assert_eq!(naive_utc("2026-11-23 10:00:00.000"), Some(want));
        assert_eq!(naive_utc("soon"), None);
    }
}
