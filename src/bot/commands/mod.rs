//! Turns what a person types to Passkey in Teams into a typed [`Command`].
//!
//! Everything here is pure: no I/O, no clock, no configuration. The flow is
//! [`normalize`] (strip `<at>` mentions and simple HTML, decode the common
//! entities, collapse whitespace) followed by a small hand-written grammar in
//! [`parse`]. Command keywords are matched case-insensitively; anything the
//! person supplies (record names, reasons, comments, search words) keeps its
//! case.

mod duration;
mod normalize;
mod parser;
mod suggestions;

use std::fmt;

use time::Duration;

/// The longest duration anyone can ask for: 366 days.
const MAX_DURATION_SECONDS: u64 = 366 * SECONDS_PER_DAY;
const SECONDS_PER_MINUTE: u64 = 60;
const SECONDS_PER_HOUR: u64 = 60 * SECONDS_PER_MINUTE;
const SECONDS_PER_DAY: u64 = 24 * SECONDS_PER_HOUR;
const SECONDS_PER_WEEK: u64 = 7 * SECONDS_PER_DAY;

/// A duration never needs more words than this (`1 day 2 hours and 30 minutes`
/// is seven), so longer runs are not tried as durations.
const MAX_DURATION_WORDS: usize = 12;

/// User text echoed back in an error message is cut to this many characters.
const MAX_ECHO_CHARS: usize = 40;

const REQUEST_EXAMPLE: &str = "`request db-prod 2h because INC-4411`";
const DURATION_FORMS: &str = "Durations look like `30m`, `2h`, `1d`, `90 minutes` or `1h 30m`";
const ADMIN_SUBCOMMANDS: &str = "Admin commands are `admin health`, `admin sync`, `admin triage`, \
     `admin audit verify`, `admin authority …`, `admin sensitivity …`, `admin role …`, \
     `admin replay 17` (or `admin replay all`), \
     `admin revoke 42 REASON`, `admin report [7d|30d] [RECORD]`, `admin totp-invite PERSON` and
     `admin review start`.";

/// Top-level keywords offered as "did you mean" suggestions, in order of
/// preference when two are equally close.
const COMMAND_SUGGESTIONS: &[&str] = &[
    "help",
    "request",
    "requests",
    "records",
    "search",
    "mine",
    "pending",
    "approve",
    "approvals",
    "deny",
    "release",
    "extend",
    "status",
    "admin",
];

const ADMIN_SUGGESTIONS: &[&str] = &[
    "health",
    "review",
    "sync",
    "triage",
    "audit",
    "authority",
    "sensitivity",
    "role",
    "replay",
    "revoke",
    "report",
    "totp-invite",
];

/// A command a person typed to the bot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `help [topic]`, `?`, `hi`, `hello`. The topic is lower-cased.
    Help { topic: Option<String> },
    /// `request <record> [for <duration>] [because <reason>]`.
    Request {
        record: String,
        duration: Option<Duration>,
        reason: Option<String>,
    },
    /// `records [search…]` or `search […]`.
    Records { search: Option<String> },
    /// `my requests`, `my`, `mine`, `requests`.
    MyRequests,
    /// `pending`, `approvals`.
    Pending,
    /// `approve <id> [comment…]`.
    Approve {
        request_id: i64,
        comment: Option<String>,
    },
    /// `deny <id> <reason…>`.
    Deny { request_id: i64, reason: String },
    /// `release <id>`.
    Release { request_id: i64 },
    /// `status <id>`: the request's card as it is now.
    Status { request_id: i64 },
    /// `extend <id> [by] <duration>`.
    Extend { request_id: i64, duration: Duration },
    /// `admin …`.
    Admin(AdminCommand),
}

/// The subcommands of `admin`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdminCommand {
    Health,
    Sync,
    /// `admin triage` lists the queue; `admin triage <id> approve|deny <reason…>` decides one.
    Triage {
        decision: Option<TriageDecision>,
    },
    AuditVerify,
    /// Raw words after `admin authority`; their meaning is decided later.
    Authority {
        args: Vec<String>,
    },
    /// Raw words after `admin sensitivity`: `<record> <LEVEL> <reason…>`, checked later.
    Sensitivity {
        args: Vec<String>,
    },
    /// Raw words after `admin role`; their meaning is decided later.
    Role {
        args: Vec<String>,
    },
    Revoke {
        request_id: i64,
        reason: String,
    },
    /// Re-evaluate one stored decision trace (`Some(id)`) or all of them (`None`).
    Replay {
        trace_id: Option<i64>,
    },
    /// `admin report [7d|30d] [record…]`: the access report of the last 7 (default) or 30 days,
    /// optionally of one record.
    Report {
        days: u32,
        record: Option<String>,
    },
    /// `admin totp-invite <email or Entra object id>`: a one-time invitation to set up an
    /// authenticator app without a factor on file.
    TotpInvite {
        user: String,
    },
    /// `admin review start`: starts an access review campaign now.
    ReviewStart,
}

/// An admin's decision on a request in triage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TriageDecision {
    pub request_id: i64,
    pub approve: bool,
    pub reason: String,
}

/// Why a message could not be turned into a [`Command`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParseError {
    /// Nothing was left after removing mentions, markup and whitespace.
    Empty,
    /// The first word is not a command. `suggestion` is the closest command
    /// keyword, when one is close enough to be a likely typo.
    Unknown {
        word: String,
        suggestion: Option<&'static str>,
    },
    /// A known command with arguments that don't fit. `message` is a friendly
    /// one-line explanation with an example.
    Usage {
        command: &'static str,
        message: String,
    },
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParseError::Empty => {
                f.write_str("I didn't catch a command. Type `help` to see what I can do.")
            }
            ParseError::Unknown { word, suggestion } => {
                write!(f, "I don't know the command `{}`.", echo(word))?;
                if let Some(suggestion) = suggestion {
                    write!(f, " Did you mean `{suggestion}`?")?;
                }
                f.write_str(" Type `help` to see what I can do.")
            }
            ParseError::Usage { message, .. } => f.write_str(message),
        }
    }
}

impl std::error::Error for ParseError {}

pub use crate::domain::format_duration;
pub use duration::{DurationError, parse_duration};
pub use normalize::normalize;
use parser::echo;
pub use parser::parse;
#[cfg(test)]
use suggestions::edit_distance;
use suggestions::suggest;

#[cfg(test)]
mod tests;
