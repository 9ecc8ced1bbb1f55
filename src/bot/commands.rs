//! Turns what a person types to Passkey in Teams into a typed [`Command`].
//!
//! Everything here is pure: no I/O, no clock, no configuration. The flow is
//! [`normalize`] (strip `<at>` mentions and simple HTML, decode the common
//! entities, collapse whitespace) followed by a small hand-written grammar in
//! [`parse`]. Command keywords are matched case-insensitively; anything the
//! person supplies (record names, reasons, comments, search words) keeps its
//! case.

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
     `admin revoke 42 REASON` and `admin totp-invite PERSON`.";

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
    "admin",
];

const ADMIN_SUGGESTIONS: &[&str] = &[
    "health",
    "sync",
    "triage",
    "audit",
    "authority",
    "sensitivity",
    "role",
    "replay",
    "revoke",
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
    /// `admin totp-invite <email or Entra object id>`: a one-time invitation to set up an
    /// authenticator app without a factor on file.
    TotpInvite {
        user: String,
    },
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

/// Why some text is not an acceptable duration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DurationError {
    /// No text at all.
    Empty,
    /// Text that is not part of a duration, such as `soon`.
    Invalid { found: String },
    /// A unit without a number, such as `h`.
    MissingNumber { unit: String },
    /// A number without a unit, such as `2`.
    MissingUnit { number: String },
    /// A unit that isn't minutes, hours, days or weeks.
    UnknownUnit { unit: String },
    /// Seconds were used; the smallest unit is minutes.
    Seconds,
    /// A decimal such as `1.5h`.
    Fractional,
    /// A negative amount such as `-2h`.
    Negative,
    /// The total is zero.
    Zero,
    /// More than 366 days, or a number too large to hold.
    TooLong,
}

impl fmt::Display for DurationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DurationError::Empty => f.write_str("no duration was given"),
            DurationError::Invalid { found } => {
                write!(f, "`{}` isn't a length of time", echo(found))
            }
            DurationError::MissingNumber { unit } => write!(
                f,
                "`{}` needs a number in front of it, like `2h`",
                echo(unit)
            ),
            DurationError::MissingUnit { number } => {
                let number = echo(number);
                write!(
                    f,
                    "`{number}` needs a unit, like `{number}h` for hours or `{number}m` for minutes"
                )
            }
            DurationError::UnknownUnit { unit } => write!(
                f,
                "`{}` isn't a unit I know; use minutes (`m`), hours (`h`) or days (`d`)",
                echo(unit)
            ),
            DurationError::Seconds => {
                f.write_str("seconds are too short; the smallest unit is minutes, like `30m`")
            }
            DurationError::Fractional => {
                f.write_str("use whole numbers, like `1h 30m` instead of `1.5h`")
            }
            DurationError::Negative => f.write_str("a duration can't be negative"),
            DurationError::Zero => f.write_str("a duration has to be longer than zero"),
            DurationError::TooLong => {
                f.write_str("that's too long; the most I accept is 366 days (`366d`)")
            }
        }
    }
}

impl std::error::Error for DurationError {}

impl DurationError {
    /// Errors about the value rather than the shape of the text. When trying
    /// successively shorter runs of words as a duration, these say more about
    /// what the person meant than "that word isn't a unit".
    fn is_about_value(&self) -> bool {
        matches!(
            self,
            DurationError::Seconds
                | DurationError::Fractional
                | DurationError::Negative
                | DurationError::Zero
                | DurationError::TooLong
        )
    }
}

// ---------------------------------------------------------------------------
// Normalisation
// ---------------------------------------------------------------------------

/// Removes every `<at …>…</at>` mention, strips simple HTML tags such as
/// `<p>`, `<div>`, `<br>` and `<span …>`, decodes `&nbsp;`, `&amp;`, `&lt;`,
/// `&gt;`, `&quot;`, `&apos;`, smart-quote and numeric entities, turns every
/// run of whitespace (including U+00A0, tabs, newlines and zero-width spaces)
/// into one space, and trims.
///
/// A `<` that does not start a recognised tag, as in `a<b`, is kept.
pub fn normalize(text: &str) -> String {
    let without_tags = strip_tags(text);
    let decoded = decode_entities(&without_tags);
    collapse_whitespace(&decoded)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TagKind {
    /// `<at>`: the whole element, text included, is a mention and goes.
    Mention,
    /// Tags that separate words (`<p>`, `<br>`): replaced by a space.
    Block,
    /// Tags inside a run of text (`<b>`, `<span>`): removed without a trace.
    Inline,
}

struct Tag {
    kind: TagKind,
    closing: bool,
    /// Byte index just past the tag's `>`.
    end: usize,
}

fn tag_kind(name: &[u8]) -> Option<TagKind> {
    let kind = match name.to_ascii_lowercase().as_slice() {
        b"at" => TagKind::Mention,
        b"p" | b"div" | b"br" | b"hr" | b"li" | b"ul" | b"ol" | b"blockquote" | b"pre" | b"h1"
        | b"h2" | b"h3" | b"h4" | b"h5" | b"h6" | b"table" | b"thead" | b"tbody" | b"tr"
        | b"td" | b"th" => TagKind::Block,
        b"span" | b"b" | b"i" | b"u" | b"s" | b"strong" | b"em" | b"code" | b"a" | b"font"
        | b"sup" | b"sub" | b"del" | b"ins" | b"strike" | b"mark" | b"small" | b"img"
        | b"emoji" => TagKind::Inline,
        _ => return None,
    };
    Some(kind)
}

/// Reads a tag starting at `bytes[start] == b'<'`: a known tag name, then
/// well-formed attributes, then `>` or `/>`. Anything else is not a tag.
fn parse_tag(bytes: &[u8], start: usize) -> Option<Tag> {
    let mut i = start + 1;
    let closing = bytes.get(i) == Some(&b'/');
    if closing {
        i += 1;
    }
    let name_start = i;
    while bytes.get(i).is_some_and(u8::is_ascii_alphanumeric) {
        i += 1;
    }
    let name = &bytes[name_start..i];
    if !name.first().is_some_and(u8::is_ascii_alphabetic) {
        return None;
    }
    let kind = tag_kind(name)?;
    loop {
        let before_space = i;
        i = skip_ascii_space(bytes, i);
        match *bytes.get(i)? {
            b'>' => {
                return Some(Tag {
                    kind,
                    closing,
                    end: i + 1,
                });
            }
            b'/' if bytes.get(i + 1) == Some(&b'>') => {
                return Some(Tag {
                    kind,
                    closing,
                    end: i + 2,
                });
            }
            // Attributes must be separated by space, and closing tags have none.
            _ if i == before_space || closing => return None,
            _ => i = skip_attribute(bytes, i)?,
        }
    }
}

fn skip_ascii_space(bytes: &[u8], mut i: usize) -> usize {
    while bytes.get(i).is_some_and(u8::is_ascii_whitespace) {
        i += 1;
    }
    i
}

/// Skips `name`, `name=value`, `name="value"` or `name='value'`.
fn skip_attribute(bytes: &[u8], mut i: usize) -> Option<usize> {
    let name_start = i;
    while bytes
        .get(i)
        .is_some_and(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b':' | b'.'))
    {
        i += 1;
    }
    if i == name_start {
        return None;
    }
    let mut j = skip_ascii_space(bytes, i);
    if bytes.get(j) != Some(&b'=') {
        return Some(i);
    }
    j = skip_ascii_space(bytes, j + 1);
    match *bytes.get(j)? {
        quote @ (b'"' | b'\'') => {
            let length = bytes[j + 1..].iter().position(|&b| b == quote)?;
            Some(j + 1 + length + 1)
        }
        _ => {
            let value_start = j;
            while bytes.get(j).is_some_and(|b| {
                !b.is_ascii_whitespace() && !matches!(b, b'>' | b'<' | b'"' | b'\'' | b'=' | b'`')
            }) {
                j += 1;
            }
            (j > value_start).then_some(j)
        }
    }
}

/// Finds the `</at>` closing a mention, returning the index just past it.
fn find_mention_close(bytes: &[u8], from: usize) -> Option<usize> {
    let mut i = from;
    while let Some(offset) = bytes[i..].iter().position(|&b| b == b'<') {
        let lt = i + offset;
        let is_close = bytes.get(lt + 1) == Some(&b'/')
            && bytes
                .get(lt + 2)
                .is_some_and(|b| b.eq_ignore_ascii_case(&b'a'))
            && bytes
                .get(lt + 3)
                .is_some_and(|b| b.eq_ignore_ascii_case(&b't'));
        if is_close {
            let j = skip_ascii_space(bytes, lt + 4);
            if bytes.get(j) == Some(&b'>') {
                return Some(j + 1);
            }
        }
        i = lt + 1;
    }
    None
}

fn strip_tags(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    // Bytes before `copied` are already in `out` (or dropped).
    let mut copied = 0;
    let mut search = 0;
    // Once a search for `</at>` fails, every later one would fail too.
    let mut no_mention_close = false;
    while let Some(offset) = text[search..].find('<') {
        let lt = search + offset;
        let Some(tag) = parse_tag(bytes, lt) else {
            search = lt + 1;
            continue;
        };
        out.push_str(&text[copied..lt]);
        let mut end = tag.end;
        match tag.kind {
            TagKind::Inline => {}
            TagKind::Block => out.push(' '),
            TagKind::Mention => {
                out.push(' ');
                if !tag.closing && !no_mention_close {
                    match find_mention_close(bytes, tag.end) {
                        Some(close_end) => end = close_end,
                        // An unclosed `<at>`: drop just the opening tag.
                        None => no_mention_close = true,
                    }
                }
            }
        }
        copied = end;
        search = end;
    }
    out.push_str(&text[copied..]);
    out
}

fn decode_entities(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        let after = &rest[amp + 1..];
        match decode_entity(after) {
            Some((decoded, used)) => {
                out.push(decoded);
                rest = &after[used..];
            }
            None => {
                out.push('&');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// Decodes the entity at the start of `after` (the text following `&`),
/// returning the character and how many bytes it used, `;` included.
fn decode_entity(after: &str) -> Option<(char, usize)> {
    let semicolon = after.bytes().take(12).position(|b| b == b';')?;
    let name = &after[..semicolon];
    let decoded = if let Some(number) = name.strip_prefix('#') {
        let code = match number.strip_prefix(['x', 'X']) {
            Some(hex) => u32::from_str_radix(hex, 16).ok()?,
            None => number.parse::<u32>().ok()?,
        };
        char::from_u32(code)?
    } else {
        match name.to_ascii_lowercase().as_str() {
            "nbsp" => ' ',
            "amp" => '&',
            "lt" => '<',
            "gt" => '>',
            "quot" => '"',
            "apos" => '\'',
            "ldquo" => '\u{201C}',
            "rdquo" => '\u{201D}',
            "lsquo" => '\u{2018}',
            "rsquo" => '\u{2019}',
            _ => return None,
        }
    };
    Some((decoded, semicolon + 1))
}

fn collapse_whitespace(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut pending_space = false;
    for c in text.chars() {
        if c.is_whitespace() || matches!(c, '\u{200B}' | '\u{FEFF}') {
            pending_space = true;
            continue;
        }
        if pending_space && !out.is_empty() {
            out.push(' ');
        }
        pending_space = false;
        out.push(c);
    }
    out
}

// ---------------------------------------------------------------------------
// Commands
// ---------------------------------------------------------------------------

/// Parses a Teams message into a [`Command`], normalising it first.
pub fn parse(text: &str) -> Result<Command, ParseError> {
    let normalized = normalize(text);
    let mut words: Vec<&str> = normalized.split(' ').filter(|w| !w.is_empty()).collect();
    if words.len() > 1 && matches!(words[0].to_lowercase().as_str(), "please" | "pls") {
        words.remove(0);
    }
    let Some((&first, rest)) = words.split_first() else {
        return Err(ParseError::Empty);
    };
    match keyword(first).as_str() {
        "help" | "?" => Ok(Command::Help {
            topic: joined(rest).map(|topic| topic.to_lowercase()),
        }),
        "hi" | "hello" => Ok(Command::Help { topic: None }),
        "request" => parse_request(rest),
        "records" | "search" => Ok(Command::Records {
            search: joined(rest).map(|search| unquote(&search).to_string()),
        }),
        "my" => match rest {
            [] => Ok(Command::MyRequests),
            [word] if matches!(word.to_lowercase().as_str(), "requests" | "request") => {
                Ok(Command::MyRequests)
            }
            _ => Err(my_requests_usage()),
        },
        "mine" | "requests" if rest.is_empty() => Ok(Command::MyRequests),
        "mine" | "requests" => Err(my_requests_usage()),
        "pending" | "approvals" => match rest {
            [] => Ok(Command::Pending),
            [word] if matches!(word.to_lowercase().as_str(), "approvals" | "requests") => {
                Ok(Command::Pending)
            }
            _ => Err(usage(
                "pending",
                "`pending` lists requests waiting for your approval and takes nothing else; \
                 to act on one, try `approve 42`.",
            )),
        },
        "approve" => {
            let request_id = parse_id(rest.first(), "approve", "`approve 42 looks good`")?;
            Ok(Command::Approve {
                request_id,
                comment: joined(&rest[1..]),
            })
        }
        "deny" => {
            let example = "`deny 42 not on call this week`";
            let request_id = parse_id(rest.first(), "deny", example)?;
            let reason = required_reason(&rest[1..], "deny", example)?;
            Ok(Command::Deny { request_id, reason })
        }
        "release" => {
            let request_id = parse_id(rest.first(), "release", "`release 42`")?;
            if rest.len() > 1 {
                return Err(usage(
                    "release",
                    format!(
                        "`release` takes just the request number, so I don't know what to do with `{}`. Try `release 42`.",
                        echo(&rest[1..].join(" "))
                    ),
                ));
            }
            Ok(Command::Release { request_id })
        }
        "extend" => parse_extend(rest),
        "admin" => parse_admin(rest).map(Command::Admin),
        // A lone "please" is politeness, not a typo of "release".
        "please" | "pls" => Err(ParseError::Unknown {
            word: first.to_string(),
            suggestion: None,
        }),
        _ => Err(ParseError::Unknown {
            word: first.to_string(),
            suggestion: suggest(&keyword(first), COMMAND_SUGGESTIONS),
        }),
    }
}

/// The lower-cased command keyword, tolerating a leading `/` (slash-command
/// habit) and trailing punctuation (`hi!`, `help?`, `request:`).
fn keyword(word: &str) -> String {
    if word.chars().all(|c| c == '?') {
        return "?".to_string();
    }
    let word = word.strip_prefix('/').unwrap_or(word);
    word.trim_end_matches(['?', '!', '.', ',', ':', ';'])
        .to_lowercase()
}

fn usage(command: &'static str, message: impl Into<String>) -> ParseError {
    ParseError::Usage {
        command,
        message: message.into(),
    }
}

fn my_requests_usage() -> ParseError {
    usage(
        "my requests",
        "`my requests` lists your own requests and takes nothing else; to find a record, try `records db`.",
    )
}

/// The words joined by single spaces, or `None` when there are none.
fn joined(words: &[&str]) -> Option<String> {
    (!words.is_empty()).then(|| words.join(" "))
}

/// User text shown inside an error message: at most [`MAX_ECHO_CHARS`]
/// characters, and no backticks that would break the surrounding code span.
fn echo(text: &str) -> String {
    let mut shown: String = text
        .chars()
        .take(MAX_ECHO_CHARS)
        .map(|c| if c == '`' { '\'' } else { c })
        .collect();
    if text.chars().nth(MAX_ECHO_CHARS).is_some() {
        shown.push('…');
    }
    shown
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum QuoteFamily {
    Double,
    Single,
}

fn quote_family(c: char) -> Option<QuoteFamily> {
    match c {
        '"' | '\u{201C}' | '\u{201D}' | '\u{201E}' | '\u{201F}' => Some(QuoteFamily::Double),
        '\'' | '\u{2018}' | '\u{2019}' | '\u{201A}' | '\u{201B}' => Some(QuoteFamily::Single),
        _ => None,
    }
}

/// Removes one pair of surrounding quotes, if the whole text is quoted.
fn unquote(text: &str) -> &str {
    let mut chars = text.chars();
    let (Some(first), Some(last)) = (chars.next(), chars.next_back()) else {
        return text;
    };
    match quote_family(first) {
        Some(family) if quote_family(last) == Some(family) => {
            let inner = text[first.len_utf8()..text.len() - last.len_utf8()].trim();
            if inner.is_empty() { text } else { inner }
        }
        _ => text,
    }
}

fn parse_id(word: Option<&&str>, command: &'static str, example: &str) -> Result<i64, ParseError> {
    let Some(&word) = word else {
        return Err(usage(
            command,
            format!("Which request? Add its number, e.g. {example}."),
        ));
    };
    let digits = word.strip_prefix('#').unwrap_or(word);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(usage(
            command,
            format!(
                "`{}` isn't a request number. Use the number from the request card, e.g. {example}.",
                echo(word)
            ),
        ));
    }
    match digits.parse::<i64>() {
        Ok(0) => Err(usage(
            command,
            format!(
                "Request numbers start at 1. Use the number from the request card, e.g. {example}."
            ),
        )),
        Ok(id) => Ok(id),
        Err(_) => Err(usage(
            command,
            format!(
                "`{}` is too large to be a request number. Use the number from the request card, e.g. {example}.",
                echo(word)
            ),
        )),
    }
}

/// The reason after a request number, with an optional leading `because`.
fn required_reason(
    words: &[&str],
    command: &'static str,
    example: &str,
) -> Result<String, ParseError> {
    let words = match words.split_first() {
        Some((first, rest)) if first.eq_ignore_ascii_case("because") => rest,
        _ => words,
    };
    joined(words).ok_or_else(|| {
        usage(
            command,
            format!("Please add a reason after the request number, e.g. {example}."),
        )
    })
}

fn parse_request(words: &[&str]) -> Result<Command, ParseError> {
    let text = words.join(" ");
    let (record, after, quoted) = take_record(&text)?;
    let after: Vec<&str> = after.split(' ').filter(|w| !w.is_empty()).collect();
    let (middle, reason) = match after.iter().position(|w| w.eq_ignore_ascii_case("because")) {
        Some(at) => {
            let Some(reason) = joined(&after[at + 1..]) else {
                return Err(usage(
                    "request",
                    format!(
                        "Why do you need it? Add a reason after `because`, e.g. {REQUEST_EXAMPLE}."
                    ),
                ));
            };
            (&after[..at], Some(reason))
        }
        None => (&after[..], None),
    };
    let duration = request_duration(middle, quoted)?;
    Ok(Command::Request {
        record,
        duration,
        reason,
    })
}

fn missing_record() -> ParseError {
    usage("request", format!("Which record? Try {REQUEST_EXAMPLE}."))
}

/// Splits the record name (one word, or a quoted phrase) off the front of
/// `text`, returning it, the text after it, and whether it was quoted.
fn take_record(text: &str) -> Result<(String, &str, bool), ParseError> {
    let Some(first) = text.chars().next() else {
        return Err(missing_record());
    };
    if let Some(family) = quote_family(first) {
        let body = &text[first.len_utf8()..];
        let Some((length, close)) = body
            .char_indices()
            .find(|&(_, c)| quote_family(c) == Some(family))
        else {
            return Err(usage(
                "request",
                "The record name's closing quote is missing. Try `request \"db prod\" 2h`.",
            ));
        };
        let record = body[..length].trim();
        if record.is_empty() {
            return Err(missing_record());
        }
        let after = body[length + close.len_utf8()..].trim_start();
        return Ok((record.to_string(), after, true));
    }
    let (record, after) = text.split_once(' ').unwrap_or((text, ""));
    if record.eq_ignore_ascii_case("for") || record.eq_ignore_ascii_case("because") {
        return Err(missing_record());
    }
    Ok((record.to_string(), after, false))
}

/// The optional duration between the record and `because`.
fn request_duration(middle: &[&str], quoted: bool) -> Result<Option<Duration>, ParseError> {
    let Some((first, rest)) = middle.split_first() else {
        return Ok(None);
    };
    let introduced_by_for = first.eq_ignore_ascii_case("for");
    let words = if introduced_by_for { rest } else { middle };
    if words.is_empty() {
        return Err(usage(
            "request",
            "How long do you need it? Add a duration after `for`, e.g. `request db-prod for 2h`.",
        ));
    }
    match leading_duration(words) {
        Ok((duration, used)) if used == words.len() => Ok(Some(duration)),
        Ok((_, used)) => Err(usage(
            "request",
            format!(
                "I didn't understand `{}`. Put the reason after `because`, e.g. {REQUEST_EXAMPLE}.",
                echo(&words[used..].join(" "))
            ),
        )),
        Err(_) if !introduced_by_for && !starts_like_number(words[0]) => {
            let hint = if quoted {
                String::new()
            } else {
                " If the record name has spaces, put it in quotes, e.g. `request \"db prod\" 2h`."
                    .to_string()
            };
            Err(usage(
                "request",
                format!(
                    "I didn't understand `{}`.{hint} Put the reason after `because`, e.g. {REQUEST_EXAMPLE}.",
                    echo(&words.join(" "))
                ),
            ))
        }
        Err(error) => Err(usage(
            "request",
            format!(
                "I couldn't read that duration: {error}. {DURATION_FORMS}, e.g. `request db-prod for 2h`."
            ),
        )),
    }
}

fn starts_like_number(word: &str) -> bool {
    word.starts_with(|c: char| c.is_ascii_digit() || matches!(c, '-' | '+' | '.'))
}

/// Reads the longest run of leading words that forms a valid duration,
/// returning it and how many words it used. When no run is valid, the error
/// explains the most telling problem: a value problem (`45s`, `0m`, `400d`)
/// from any run if there is one, otherwise the problem with the longest run.
fn leading_duration(words: &[&str]) -> Result<(Duration, usize), DurationError> {
    let longest = words.len().min(MAX_DURATION_WORDS);
    let mut errors = Vec::new();
    for used in (1..=longest).rev() {
        match parse_duration(&words[..used].join(" ")) {
            Ok(duration) => {
                // `2h 30` is a duration missing a unit, not `2h` plus a stray word.
                let next_is_number = words.get(used).is_some_and(|w| starts_like_number(w));
                if next_is_number && let Some(error) = most_telling(errors) {
                    return Err(error);
                }
                return Ok((duration, used));
            }
            Err(error) => errors.push(error),
        }
    }
    Err(most_telling(errors).unwrap_or(DurationError::Empty))
}

/// Picks from errors ordered longest run first.
fn most_telling(errors: Vec<DurationError>) -> Option<DurationError> {
    let about_value = errors.iter().position(DurationError::is_about_value);
    errors.into_iter().nth(about_value.unwrap_or(0))
}

fn parse_extend(rest: &[&str]) -> Result<Command, ParseError> {
    let example = "`extend 42 by 1h`";
    let request_id = parse_id(rest.first(), "extend", example)?;
    let mut words = rest.get(1..).unwrap_or_default();
    if let Some((first, after)) = words.split_first()
        && (first.eq_ignore_ascii_case("by") || first.eq_ignore_ascii_case("for"))
    {
        words = after;
    }
    if words.is_empty() {
        return Err(usage(
            "extend",
            format!("How much longer? Add a duration, e.g. {example}."),
        ));
    }
    match leading_duration(words) {
        Ok((duration, used)) if used == words.len() => Ok(Command::Extend {
            request_id,
            duration,
        }),
        Ok((_, used)) => Err(usage(
            "extend",
            format!(
                "I didn't understand `{}` after the duration. Try {example}.",
                echo(&words[used..].join(" "))
            ),
        )),
        Err(error) => Err(usage(
            "extend",
            format!("I couldn't read that duration: {error}. {DURATION_FORMS}, e.g. {example}."),
        )),
    }
}

fn parse_admin(rest: &[&str]) -> Result<AdminCommand, ParseError> {
    let Some((&sub, args)) = rest.split_first() else {
        return Err(usage(
            "admin",
            format!("Which admin command? {ADMIN_SUBCOMMANDS}"),
        ));
    };
    let no_arguments = |command: &'static str, parsed: AdminCommand| {
        if args.is_empty() {
            Ok(parsed)
        } else {
            Err(usage(
                command,
                format!(
                    "`{command}` takes nothing else, so I don't know what to do with `{}`. Try `{command}`.",
                    echo(&args.join(" "))
                ),
            ))
        }
    };
    let owned = |words: &[&str]| words.iter().map(|w| w.to_string()).collect();
    match sub.to_lowercase().as_str() {
        "health" => no_arguments("admin health", AdminCommand::Health),
        "sync" => no_arguments("admin sync", AdminCommand::Sync),
        "triage" if args.is_empty() => Ok(AdminCommand::Triage { decision: None }),
        "triage" => {
            let example = "`admin triage 42 approve on call for INC-4411`";
            let request_id = parse_id(args.first(), "admin triage", example)?;
            let approve = match args.get(1).map(|w| w.to_lowercase()).as_deref() {
                Some("approve") => true,
                Some("deny") => false,
                _ => {
                    return Err(usage(
                        "admin triage",
                        format!("Say `approve` or `deny` after the request id, e.g. {example}."),
                    ));
                }
            };
            let reason = required_reason(args.get(2..).unwrap_or(&[]), "admin triage", example)?;
            Ok(AdminCommand::Triage {
                decision: Some(TriageDecision {
                    request_id,
                    approve,
                    reason,
                }),
            })
        }
        "audit" => match args {
            [verify] if verify.eq_ignore_ascii_case("verify") => Ok(AdminCommand::AuditVerify),
            _ => Err(usage(
                "admin audit verify",
                "To check the audit log, type `admin audit verify`.",
            )),
        },
        "authority" => Ok(AdminCommand::Authority { args: owned(args) }),
        "role" => Ok(AdminCommand::Role { args: owned(args) }),
        "sensitivity" => Ok(AdminCommand::Sensitivity { args: owned(args) }),
        "totp-invite" => match args {
            [who] => Ok(AdminCommand::TotpInvite {
                user: who.to_string(),
            }),
            _ => Err(usage(
                "admin totp-invite",
                "To let someone set up an authenticator app without a phone number on file, type \
                 `admin totp-invite alice@contoso.example`.",
            )),
        },
        "replay" => match args {
            [all] if all.eq_ignore_ascii_case("all") => Ok(AdminCommand::Replay { trace_id: None }),
            _ => {
                let example = "`admin replay 17` or `admin replay all`";
                let trace_id = parse_id(args.first(), "admin replay", example)?;
                if args.len() > 1 {
                    return Err(usage(
                        "admin replay",
                        format!("Replay one trace at a time: {example}."),
                    ));
                }
                Ok(AdminCommand::Replay {
                    trace_id: Some(trace_id),
                })
            }
        },
        "revoke" => {
            let example = "`admin revoke 42 left the team`";
            let request_id = parse_id(args.first(), "admin revoke", example)?;
            let reason = required_reason(&args[1..], "admin revoke", example)?;
            Ok(AdminCommand::Revoke { request_id, reason })
        }
        lower => {
            let did_you_mean = suggest(lower, ADMIN_SUGGESTIONS)
                .map(|s| format!(" Did you mean `admin {s}`?"))
                .unwrap_or_default();
            Err(usage(
                "admin",
                format!(
                    "I don't know `admin {}`.{did_you_mean} {ADMIN_SUBCOMMANDS}",
                    echo(sub)
                ),
            ))
        }
    }
}

// ---------------------------------------------------------------------------
// Suggestions
// ---------------------------------------------------------------------------

/// The candidate closest to `word` by Damerau–Levenshtein distance (optimal
/// string alignment), if it is a likely typo: distance 1 for words of up to
/// four characters, 2 for longer ones. Failing that, a candidate that starts
/// with `word` when `word` has at least three characters (`req` → `request`).
fn suggest(word: &str, candidates: &[&'static str]) -> Option<&'static str> {
    let word = word.to_lowercase();
    let chars: Vec<char> = word.chars().collect();
    // Candidates are at most nine characters: anything much longer is too far.
    if chars.len() < 2 || chars.len() > 16 {
        return None;
    }
    let max_distance = if chars.len() <= 4 { 1 } else { 2 };
    let mut best: Option<(usize, &'static str)> = None;
    for &candidate in candidates {
        let candidate_chars: Vec<char> = candidate.chars().collect();
        let distance = edit_distance(&chars, &candidate_chars);
        if distance <= max_distance && best.is_none_or(|(closest, _)| distance < closest) {
            best = Some((distance, candidate));
        }
    }
    best.map(|(_, candidate)| candidate).or_else(|| {
        (chars.len() >= 3)
            .then(|| {
                candidates
                    .iter()
                    .copied()
                    .find(|candidate| candidate.starts_with(&word))
            })
            .flatten()
    })
}

/// Optimal string alignment distance: insertions, deletions, substitutions
/// and transpositions of adjacent characters each cost one.
fn edit_distance(a: &[char], b: &[char]) -> usize {
    let mut before_previous: Vec<usize> = vec![0; b.len() + 1];
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, &a_char) in a.iter().enumerate() {
        let mut current = vec![i + 1; b.len() + 1];
        for (j, &b_char) in b.iter().enumerate() {
            let substitution = previous[j] + usize::from(a_char != b_char);
            let mut best = substitution.min(previous[j + 1] + 1).min(current[j] + 1);
            if i > 0 && j > 0 && a_char == b[j - 1] && a[i - 1] == b_char {
                best = best.min(before_previous[j - 1] + 1);
            }
            current[j + 1] = best;
        }
        before_previous = std::mem::replace(&mut previous, current);
    }
    previous[b.len()]
}

// ---------------------------------------------------------------------------
// Durations
// ---------------------------------------------------------------------------

/// Parses a duration such as `30m`, `2h`, `1d`, `90 minutes`, `2 hours`,
/// `45min`, `2hrs`, `1h30m`, `1h 30m`, `1 h`, or `1 hour and 30 minutes`.
///
/// Units are minutes, hours, days and weeks, case-insensitive. Amounts are
/// whole numbers; the total must be more than zero and at most 366 days.
/// Seconds are rejected: the smallest unit is minutes.
pub fn parse_duration(text: &str) -> Result<Duration, DurationError> {
    let chars: Vec<char> = text.trim().chars().collect();
    if chars.is_empty() {
        return Err(DurationError::Empty);
    }
    let token_from = |start: usize| -> String {
        chars[start..]
            .iter()
            .take_while(|c| !c.is_whitespace())
            .collect()
    };
    let mut total: u64 = 0;
    let mut parts = 0;
    let mut i = 0;
    loop {
        while chars.get(i).is_some_and(|&c| c.is_whitespace() || c == ',') {
            i += 1;
        }
        let Some(&c) = chars.get(i) else {
            break;
        };
        if c.is_ascii_digit() {
            let number_start = i;
            while chars.get(i).is_some_and(char::is_ascii_digit) {
                i += 1;
            }
            let number: String = chars[number_start..i].iter().collect();
            if matches!(chars.get(i), Some('.' | ','))
                && chars.get(i + 1).is_some_and(char::is_ascii_digit)
            {
                return Err(DurationError::Fractional);
            }
            while chars.get(i).is_some_and(|c| c.is_whitespace()) {
                i += 1;
            }
            let unit_start = i;
            while chars.get(i).is_some_and(|c| c.is_alphabetic()) {
                i += 1;
            }
            let unit: String = chars[unit_start..i].iter().collect();
            if unit.is_empty() {
                return match chars.get(i) {
                    None => Err(DurationError::MissingUnit { number }),
                    Some(c) if c.is_ascii_digit() => Err(DurationError::MissingUnit { number }),
                    Some(_) => Err(DurationError::Invalid {
                        found: token_from(i),
                    }),
                };
            }
            let seconds_per_unit = unit_seconds(&unit)?;
            // A number too big for u64 is certainly more than 366 days.
            let amount: u64 = number.parse().map_err(|_| DurationError::TooLong)?;
            total = amount
                .checked_mul(seconds_per_unit)
                .and_then(|seconds| total.checked_add(seconds))
                .ok_or(DurationError::TooLong)?;
            parts += 1;
        } else if c.is_alphabetic() {
            let word_start = i;
            while chars.get(i).is_some_and(|c| c.is_alphabetic()) {
                i += 1;
            }
            let word: String = chars[word_start..i].iter().collect();
            let lower = word.to_lowercase();
            if lower == "and" && parts > 0 {
                continue;
            }
            return Err(match unit_seconds(&lower) {
                Ok(_) | Err(DurationError::Seconds) => DurationError::MissingNumber { unit: word },
                Err(_) => DurationError::Invalid {
                    found: token_from(word_start),
                },
            });
        } else if c == '-' && chars.get(i + 1).is_some_and(char::is_ascii_digit) {
            return Err(DurationError::Negative);
        } else if c == '.' && chars.get(i + 1).is_some_and(char::is_ascii_digit) {
            return Err(DurationError::Fractional);
        } else {
            return Err(DurationError::Invalid {
                found: token_from(i),
            });
        }
    }
    if parts == 0 {
        return Err(DurationError::Invalid {
            found: text.trim().to_string(),
        });
    }
    if total == 0 {
        return Err(DurationError::Zero);
    }
    if total > MAX_DURATION_SECONDS {
        return Err(DurationError::TooLong);
    }
    // At most 366 days, so it fits an i64 comfortably.
    Ok(Duration::seconds(total as i64))
}

/// Seconds in one of `unit`, or why the unit isn't accepted.
fn unit_seconds(unit: &str) -> Result<u64, DurationError> {
    match unit.to_lowercase().as_str() {
        "m" | "min" | "mins" | "minute" | "minutes" => Ok(SECONDS_PER_MINUTE),
        "h" | "hr" | "hrs" | "hour" | "hours" => Ok(SECONDS_PER_HOUR),
        "d" | "day" | "days" => Ok(SECONDS_PER_DAY),
        "w" | "wk" | "wks" | "week" | "weeks" => Ok(SECONDS_PER_WEEK),
        "s" | "sec" | "secs" | "second" | "seconds" => Err(DurationError::Seconds),
        _ => Err(DurationError::UnknownUnit {
            unit: unit.to_string(),
        }),
    }
}

pub use crate::domain::format_duration;

#[cfg(test)]
mod tests {
    use super::*;

    fn minutes(n: i64) -> Duration {
        Duration::minutes(n)
    }

    fn request(record: &str, duration: Option<Duration>, reason: Option<&str>) -> Command {
        Command::Request {
            record: record.to_string(),
            duration,
            reason: reason.map(str::to_string),
        }
    }

    /// The usage error for `text`, checking it belongs to `command`.
    fn usage_message(text: &str, command: &str) -> String {
        match parse(text) {
            Err(ParseError::Usage {
                command: got,
                message,
            }) => {
                assert_eq!(got, command, "wrong command for {text:?}: {message}");
                message
            }
            other => panic!("expected a usage error for {text:?}, got {other:?}"),
        }
    }

    fn unknown(text: &str) -> (String, Option<&'static str>) {
        match parse(text) {
            Err(ParseError::Unknown { word, suggestion }) => (word, suggestion),
            other => panic!("expected an unknown-command error for {text:?}, got {other:?}"),
        }
    }

    // --- normalize ---------------------------------------------------------

    #[test]
    fn normalize_strips_mentions_anywhere() {
        assert_eq!(normalize("<at>Passkey</at> help"), "help");
        assert_eq!(normalize("help <at>Passkey</at>"), "help");
        assert_eq!(
            normalize("request <at>Passkey</at> db-prod 2h"),
            "request db-prod 2h"
        );
        assert_eq!(
            normalize(r#"<at id="0">Passkey</at> request db-prod"#),
            "request db-prod"
        );
        assert_eq!(
            normalize("<AT id='0' data-x=y>Passkey Bot</AT > approve 4 <at>Alice Smith</at>"),
            "approve 4"
        );
        assert_eq!(
            normalize("<at>Passkey</at><at>Other</at>pending"),
            "pending"
        );
    }

    #[test]
    fn normalize_collapses_every_kind_of_whitespace() {
        assert_eq!(
            normalize("  request\u{a0}\u{a0}db-prod\t2h\n\nbecause   INC-1 "),
            "request db-prod 2h because INC-1"
        );
        assert_eq!(normalize("help&nbsp;&nbsp;request"), "help request");
        assert_eq!(normalize("help\u{200B}request"), "help request");
        assert_eq!(normalize(" \u{a0}\t\n "), "");
    }

    #[test]
    fn normalize_strips_simple_html() {
        assert_eq!(normalize("<p><at>Passkey</at>&nbsp;records</p>"), "records");
        assert_eq!(
            normalize("<div>request</div><div>db-prod</div>"),
            "request db-prod"
        );
        assert_eq!(normalize("deny 4<br/>not today"), "deny 4 not today");
        assert_eq!(normalize("records db-<b>prod</b>"), "records db-prod");
        assert_eq!(
            normalize(r#"<span style="color: red">records</span> a"#),
            "records a"
        );
    }

    #[test]
    fn normalize_keeps_text_that_only_looks_like_markup() {
        assert_eq!(normalize("records a<b"), "records a<b");
        assert_eq!(normalize("records x < y > z"), "records x < y > z");
        assert_eq!(normalize("records <3"), "records <3");
        assert_eq!(normalize("records <unknown>"), "records <unknown>");
        assert_eq!(normalize("records a &b; c"), "records a &b; c");
    }

    #[test]
    fn normalize_decodes_entities_after_stripping_tags() {
        assert_eq!(normalize("records a&lt;b &amp; c"), "records a<b & c");
        assert_eq!(
            normalize("records &quot;x&quot; &#39;y&#x27;"),
            "records \"x\" 'y'"
        );
        // Escaped markup is the person's text, not markup.
        assert_eq!(normalize("records &lt;p&gt;"), "records <p>");
    }

    #[test]
    fn unclosed_mention_drops_only_the_tag() {
        assert_eq!(normalize("<at>help"), "help");
        assert_eq!(normalize("</at> pending"), "pending");
    }

    // --- help and greetings ------------------------------------------------

    #[test]
    fn help_and_greetings() {
        assert_eq!(parse("help"), Ok(Command::Help { topic: None }));
        assert_eq!(parse("?"), Ok(Command::Help { topic: None }));
        assert_eq!(parse("hi"), Ok(Command::Help { topic: None }));
        assert_eq!(parse("Hello!"), Ok(Command::Help { topic: None }));
        assert_eq!(parse("hi there"), Ok(Command::Help { topic: None }));
        assert_eq!(
            parse("HELP  Request"),
            Ok(Command::Help {
                topic: Some("request".to_string())
            })
        );
        assert_eq!(
            parse("? admin role"),
            Ok(Command::Help {
                topic: Some("admin role".to_string())
            })
        );
        assert_eq!(
            parse("<at>Passkey</at>"),
            Err(ParseError::Empty),
            "a bare mention has no command"
        );
    }

    #[test]
    fn empty_input() {
        assert_eq!(parse(""), Err(ParseError::Empty));
        assert_eq!(parse("   \n\t "), Err(ParseError::Empty));
        assert_eq!(parse("<p>&nbsp;</p>"), Err(ParseError::Empty));
        assert!(ParseError::Empty.to_string().contains("`help`"));
    }

    #[test]
    fn tolerated_keyword_decorations() {
        assert_eq!(parse("/pending"), Ok(Command::Pending));
        assert_eq!(parse("help?"), Ok(Command::Help { topic: None }));
        assert_eq!(
            parse("request: db-prod"),
            Ok(request("db-prod", None, None))
        );
        assert_eq!(
            parse("please release 7"),
            Ok(Command::Release { request_id: 7 })
        );
        assert_eq!(unknown("please"), ("please".to_string(), None));
    }

    // --- request -----------------------------------------------------------

    #[test]
    fn request_happy_paths() {
        assert_eq!(parse("request db-prod"), Ok(request("db-prod", None, None)));
        assert_eq!(
            parse("request db-prod 2h"),
            Ok(request("db-prod", Some(minutes(120)), None))
        );
        assert_eq!(
            parse("request db-prod for 2h"),
            Ok(request("db-prod", Some(minutes(120)), None))
        );
        assert_eq!(
            parse("request db-prod 2h because INC-4411"),
            Ok(request("db-prod", Some(minutes(120)), Some("INC-4411")))
        );
        assert_eq!(
            parse("request db-prod for 90 minutes because Fixing the Billing job"),
            Ok(request(
                "db-prod",
                Some(minutes(90)),
                Some("Fixing the Billing job")
            ))
        );
        assert_eq!(
            parse("request db-prod 2 hours"),
            Ok(request("db-prod", Some(minutes(120)), None))
        );
        assert_eq!(
            parse("request db-prod 1h 30m because x"),
            Ok(request("db-prod", Some(minutes(90)), Some("x")))
        );
        assert_eq!(
            parse("request db-prod because INC-4411"),
            Ok(request("db-prod", None, Some("INC-4411")))
        );
    }

    #[test]
    fn request_in_a_channel_with_mentions_and_markup() {
        let expected = Ok(request("db-prod", Some(minutes(120)), Some("INC-4411")));
        assert_eq!(
            parse("<at>Passkey</at> request db-prod 2h because INC-4411"),
            expected
        );
        assert_eq!(
            parse(
                r#"<p><at id="0">Passkey</at>&nbsp;request db-prod <at id="1">Passkey</at>2h because INC-4411</p>"#
            ),
            expected
        );
    }

    #[test]
    fn request_keywords_are_case_insensitive_but_user_text_is_not() {
        assert_eq!(
            parse("  REQUEST   DB-Prod   FOR  2H   BECAUSE   Pager Went Off  "),
            Ok(request(
                "DB-Prod",
                Some(minutes(120)),
                Some("Pager Went Off")
            ))
        );
        assert_eq!(
            parse("Request db-prod Because INC-1"),
            Ok(request("db-prod", None, Some("INC-1")))
        );
    }

    #[test]
    fn reason_is_everything_after_the_first_because() {
        assert_eq!(
            parse("request db-prod because the job failed because of disk"),
            Ok(request(
                "db-prod",
                None,
                Some("the job failed because of disk")
            ))
        );
        // `because-ish` is not the word `because`, so it is an unexpected word.
        let message = usage_message("request db-prod because-ish", "request");
        assert!(message.contains("`because-ish`"), "{message}");
    }

    #[test]
    fn request_quoted_record_names() {
        let expected = Ok(request("db prod", Some(minutes(120)), Some("INC-4411")));
        assert_eq!(parse(r#"request "db prod" 2h because INC-4411"#), expected);
        assert_eq!(parse("request 'db prod' 2h because INC-4411"), expected);
        assert_eq!(
            parse("request \u{201C}db prod\u{201D} 2h because INC-4411"),
            expected
        );
        assert_eq!(
            parse("request \u{2018}db prod\u{2019} for 2h because INC-4411"),
            expected
        );
        assert_eq!(
            parse("request &quot;db prod&quot; 2h because INC-4411"),
            expected
        );
        assert_eq!(
            parse(r#"request "  Billing   DB " "#),
            Ok(request("Billing DB", None, None))
        );
        assert_eq!(
            parse(r#"request "because for" because x"#),
            Ok(request("because for", None, Some("x")))
        );
    }

    #[test]
    fn request_usage_errors() {
        let message = usage_message("request", "request");
        assert!(message.contains("Which record?"), "{message}");
        assert!(message.contains(REQUEST_EXAMPLE), "{message}");

        let message = usage_message("request for 2h", "request");
        assert!(message.contains("Which record?"), "{message}");

        let message = usage_message(r#"request """#, "request");
        assert!(message.contains("Which record?"), "{message}");

        let message = usage_message("request db-prod 2h because", "request");
        assert!(message.contains("reason after `because`"), "{message}");
        assert!(message.contains(REQUEST_EXAMPLE), "{message}");

        let message = usage_message("request db-prod because   ", "request");
        assert!(message.contains("reason after `because`"), "{message}");

        let message = usage_message("request db-prod for soon", "request");
        assert!(message.contains("`soon`"), "{message}");
        assert!(
            message.contains("`30m`") && message.contains("`1h 30m`"),
            "{message}"
        );
        assert!(message.contains("`request db-prod for 2h`"), "{message}");

        let message = usage_message("request db-prod for", "request");
        assert!(message.contains("How long"), "{message}");
        assert!(message.contains("`request db-prod for 2h`"), "{message}");

        let message = usage_message("request db-prod 2h please hurry because x", "request");
        assert!(message.contains("`please hurry`"), "{message}");
        assert!(message.contains("after `because`"), "{message}");

        let message = usage_message("request db prod 2h", "request");
        assert!(message.contains("`prod 2h`"), "{message}");
        assert!(message.contains(r#"`request "db prod" 2h`"#), "{message}");

        let message = usage_message(r#"request "db prod 2h"#, "request");
        assert!(message.contains("closing quote"), "{message}");
        assert!(message.contains(r#"`request "db prod" 2h`"#), "{message}");

        let message = usage_message("request db-prod 45s", "request");
        assert!(message.contains("minutes"), "{message}");
        assert!(message.contains("`30m`"), "{message}");

        let message = usage_message("request db-prod 2h 30", "request");
        assert!(message.contains("`30` needs a unit"), "{message}");

        let message = usage_message("request db-prod 0m because x", "request");
        assert!(message.contains("longer than zero"), "{message}");

        let message = usage_message("request db-prod 2", "request");
        assert!(message.contains("`2h`"), "{message}");

        let message = usage_message("request db-prod for 400 days", "request");
        assert!(message.contains("366 days"), "{message}");
    }

    #[test]
    fn req_is_not_an_alias() {
        assert_eq!(
            unknown("req db-prod 2h"),
            ("req".to_string(), Some("request"))
        );
    }

    // --- records / my requests / pending -----------------------------------

    #[test]
    fn records_and_search() {
        assert_eq!(parse("records"), Ok(Command::Records { search: None }));
        assert_eq!(
            parse("Records   Billing   DB"),
            Ok(Command::Records {
                search: Some("Billing DB".to_string())
            })
        );
        assert_eq!(
            parse("search Prod"),
            Ok(Command::Records {
                search: Some("Prod".to_string())
            })
        );
        assert_eq!(parse("SEARCH"), Ok(Command::Records { search: None }));
        assert_eq!(
            parse("records \u{201C}db prod\u{201D}"),
            Ok(Command::Records {
                search: Some("db prod".to_string())
            })
        );
    }

    #[test]
    fn my_requests_forms() {
        for text in [
            "my requests",
            "My Requests",
            "my",
            "mine",
            "requests",
            "my   request",
        ] {
            assert_eq!(parse(text), Ok(Command::MyRequests), "{text}");
        }
        let message = usage_message("my stuff", "my requests");
        assert!(message.contains("`records db`"), "{message}");
        let message = usage_message("requests db-prod", "my requests");
        assert!(message.contains("`records db`"), "{message}");
    }

    #[test]
    fn pending_forms() {
        for text in [
            "pending",
            "PENDING",
            "approvals",
            "pending approvals",
            "pending requests",
        ] {
            assert_eq!(parse(text), Ok(Command::Pending), "{text}");
        }
        let message = usage_message("pending 42", "pending");
        assert!(message.contains("`approve 42`"), "{message}");
    }

    // --- approve / deny / release / extend ---------------------------------

    #[test]
    fn approve_forms() {
        assert_eq!(
            parse("approve 42"),
            Ok(Command::Approve {
                request_id: 42,
                comment: None
            })
        );
        assert_eq!(
            parse("Approve #42   Looks Good"),
            Ok(Command::Approve {
                request_id: 42,
                comment: Some("Looks Good".to_string())
            })
        );
        assert_eq!(
            parse("approve 9223372036854775807"),
            Ok(Command::Approve {
                request_id: i64::MAX,
                comment: None
            })
        );
    }

    #[test]
    fn request_id_errors() {
        for (text, needle) in [
            ("approve", "Which request?"),
            ("approve #", "isn't a request number"),
            ("approve abc", "`abc` isn't a request number"),
            ("approve 4x2", "isn't a request number"),
            ("approve -3", "isn't a request number"),
            ("approve 0", "start at 1"),
            ("approve #0", "start at 1"),
            ("approve 9223372036854775808", "too large"),
            ("approve 99999999999999999999999", "too large"),
        ] {
            let message = usage_message(text, "approve");
            assert!(message.contains(needle), "{text}: {message}");
            assert!(
                message.contains("`approve 42 looks good`"),
                "{text}: {message}"
            );
        }
        let message = usage_message("release", "release");
        assert!(message.contains("`release 42`"), "{message}");
        let message = usage_message("extend x 1h", "extend");
        assert!(message.contains("`extend 42 by 1h`"), "{message}");
        let message = usage_message("deny #", "deny");
        assert!(
            message.contains("`deny 42 not on call this week`"),
            "{message}"
        );
    }

    #[test]
    fn deny_forms() {
        assert_eq!(
            parse("deny 42 Not on call this week"),
            Ok(Command::Deny {
                request_id: 42,
                reason: "Not on call this week".to_string()
            })
        );
        assert_eq!(
            parse("DENY #7 because No ticket"),
            Ok(Command::Deny {
                request_id: 7,
                reason: "No ticket".to_string()
            })
        );
        for text in ["deny 42", "deny 42 because", "deny #42   "] {
            let message = usage_message(text, "deny");
            assert!(message.contains("reason"), "{text}: {message}");
            assert!(
                message.contains("`deny 42 not on call this week`"),
                "{text}: {message}"
            );
        }
    }

    #[test]
    fn release_forms() {
        assert_eq!(parse("release 5"), Ok(Command::Release { request_id: 5 }));
        assert_eq!(parse("Release #5"), Ok(Command::Release { request_id: 5 }));
        let message = usage_message("release 5 now please", "release");
        assert!(message.contains("`now please`"), "{message}");
        assert!(message.contains("`release 42`"), "{message}");
    }

    #[test]
    fn extend_forms() {
        let extend = |duration| {
            Ok(Command::Extend {
                request_id: 42,
                duration,
            })
        };
        assert_eq!(parse("extend 42 1h"), extend(minutes(60)));
        assert_eq!(parse("extend #42 by 30m"), extend(minutes(30)));
        assert_eq!(parse("EXTEND 42 BY 2 HOURS"), extend(minutes(120)));
        assert_eq!(
            parse("extend 42 for 1 hour and 15 minutes"),
            extend(minutes(75))
        );

        for (text, needle) in [
            ("extend 42", "How much longer?"),
            ("extend 42 by", "How much longer?"),
            ("extend 42 by soon", "`soon` isn't a length of time"),
            ("extend 42 1.5h", "whole numbers"),
            ("extend 42 1h because reasons", "`because reasons`"),
        ] {
            let message = usage_message(text, "extend");
            assert!(message.contains(needle), "{text}: {message}");
            assert!(message.contains("`extend 42 by 1h`"), "{text}: {message}");
        }
    }

    // --- admin -------------------------------------------------------------

    #[test]
    fn admin_subcommands() {
        let admin = |command| Ok(Command::Admin(command));
        assert_eq!(parse("admin health"), admin(AdminCommand::Health));
        assert_eq!(parse("ADMIN Sync"), admin(AdminCommand::Sync));
        assert_eq!(
            parse("admin triage"),
            admin(AdminCommand::Triage { decision: None })
        );
        assert_eq!(
            parse("admin triage 7 deny not on call"),
            admin(AdminCommand::Triage {
                decision: Some(TriageDecision {
                    request_id: 7,
                    approve: false,
                    reason: "not on call".into()
                })
            })
        );
        assert!(parse("admin triage 7 maybe because").is_err());
        assert_eq!(
            parse("admin audit   VERIFY"),
            admin(AdminCommand::AuditVerify)
        );
        assert_eq!(
            parse("admin authority grant Alice@Contoso.com db-prod"),
            admin(AdminCommand::Authority {
                args: vec![
                    "grant".to_string(),
                    "Alice@Contoso.com".to_string(),
                    "db-prod".to_string()
                ]
            })
        );
        assert_eq!(
            parse("admin authority"),
            admin(AdminCommand::Authority { args: vec![] })
        );
        assert_eq!(
            parse("admin role add Bob Approver"),
            admin(AdminCommand::Role {
                args: vec!["add".to_string(), "Bob".to_string(), "Approver".to_string()]
            })
        );
        assert_eq!(
            parse("admin Sensitivity payroll-db high holds salaries"),
            admin(AdminCommand::Sensitivity {
                args: ["payroll-db", "high", "holds", "salaries"]
                    .map(String::from)
                    .to_vec()
            })
        );
        assert_eq!(
            parse("admin revoke #12 Left The Team"),
            admin(AdminCommand::Revoke {
                request_id: 12,
                reason: "Left The Team".to_string()
            })
        );
    }

    #[test]
    fn admin_usage_errors() {
        let message = usage_message("admin", "admin");
        for sub in [
            "`admin health`",
            "`admin sync`",
            "`admin triage`",
            "`admin audit verify`",
            "`admin authority",
            "`admin sensitivity",
            "`admin role",
            "`admin revoke",
        ] {
            assert!(message.contains(sub), "missing {sub}: {message}");
        }

        let message = usage_message("admin frobnicate", "admin");
        assert!(message.contains("`admin frobnicate`"), "{message}");
        assert!(!message.contains("Did you mean"), "{message}");
        assert!(message.contains("`admin health`"), "{message}");

        let message = usage_message("admin heath", "admin");
        assert!(
            message.contains("Did you mean `admin health`?"),
            "{message}"
        );

        let message = usage_message("admin sensitivty", "admin");
        assert!(
            message.contains("Did you mean `admin sensitivity`?"),
            "{message}"
        );

        let message = usage_message("admin sync now", "admin sync");
        assert!(message.contains("`now`"), "{message}");

        let message = usage_message("admin audit", "admin audit verify");
        assert!(message.contains("`admin audit verify`"), "{message}");

        let message = usage_message("admin revoke 12", "admin revoke");
        assert!(
            message.contains("`admin revoke 42 left the team`"),
            "{message}"
        );

        let message = usage_message("admin revoke", "admin revoke");
        assert!(message.contains("Which request?"), "{message}");
    }

    // --- unknown commands --------------------------------------------------

    #[test]
    fn unknown_commands_get_suggestions() {
        assert_eq!(
            unknown("reqest db-prod"),
            ("reqest".to_string(), Some("request"))
        );
        assert_eq!(unknown("relase 4"), ("relase".to_string(), Some("release")));
        assert_eq!(unknown("aprove 4"), ("aprove".to_string(), Some("approve")));
        assert_eq!(unknown("Aprove 4"), ("Aprove".to_string(), Some("approve")));
        assert_eq!(unknown("hepl"), ("hepl".to_string(), Some("help")));
        assert_eq!(unknown("dney 4 x"), ("dney".to_string(), Some("deny")));
        assert_eq!(unknown("pendng"), ("pendng".to_string(), Some("pending")));
        assert_eq!(unknown("ext 4 1h"), ("ext".to_string(), Some("extend")));
        assert_eq!(unknown("recrods"), ("recrods".to_string(), Some("records")));
    }

    #[test]
    fn gibberish_gets_no_suggestion() {
        for text in [
            "xyzzy",
            "qwertyuiop",
            "zz",
            "x",
            "日本語",
            "🚀",
            "<",
            "1234",
            "#42",
        ] {
            let (word, suggestion) = unknown(text);
            assert_eq!(word, text);
            assert_eq!(suggestion, None, "{text}");
        }
    }

    #[test]
    fn unknown_error_reads_well() {
        let error = parse("reqest db-prod").unwrap_err();
        assert_eq!(
            error.to_string(),
            "I don't know the command `reqest`. Did you mean `request`? Type `help` to see what I can do."
        );
        let error = parse("xyzzy").unwrap_err();
        assert_eq!(
            error.to_string(),
            "I don't know the command `xyzzy`. Type `help` to see what I can do."
        );
        let long = "a".repeat(500);
        let shown = parse(&long).unwrap_err().to_string();
        assert!(shown.len() < 200, "long words are cut: {shown}");
        assert!(shown.contains('…'));
        let error: Box<dyn std::error::Error> = Box::new(parse("").unwrap_err());
        assert!(!error.to_string().is_empty());
    }

    #[test]
    fn usage_error_displays_its_message() {
        let error = parse("release").unwrap_err();
        let ParseError::Usage { message, .. } = &error else {
            panic!("expected usage, got {error:?}");
        };
        assert_eq!(error.to_string(), *message);
    }

    #[test]
    fn backticks_in_echoed_text_do_not_break_formatting() {
        let message = usage_message("approve `42`", "approve");
        assert!(message.contains("`'42'`"), "{message}");
    }

    // --- durations ---------------------------------------------------------

    #[test]
    fn duration_accepted_forms() {
        for (text, expected) in [
            ("30m", 30),
            ("2h", 120),
            ("1d", 1440),
            ("90 minutes", 90),
            ("1 minute", 1),
            ("2 hours", 120),
            ("1 hour", 60),
            ("1 day", 1440),
            ("3 days", 3 * 1440),
            ("45min", 45),
            ("45mins", 45),
            ("2hr", 120),
            ("2hrs", 120),
            ("1h30m", 90),
            ("1h 30m", 90),
            ("1 h", 60),
            ("1 H 30 M", 90),
            ("2H", 120),
            ("1 hour and 30 minutes", 90),
            ("1d, 2h", 26 * 60),
            ("1w", 7 * 1440),
            ("2 weeks", 14 * 1440),
            ("  15m  ", 15),
            ("007m", 7),
            ("366d", 366 * 1440),
            ("365d 23h 59m", 366 * 1440 - 1),
        ] {
            assert_eq!(parse_duration(text), Ok(minutes(expected)), "{text}");
        }
    }

    #[test]
    fn duration_rejects() {
        use DurationError as E;
        let invalid = |found: &str| E::Invalid {
            found: found.to_string(),
        };
        for (text, expected) in [
            ("", E::Empty),
            ("   ", E::Empty),
            ("0m", E::Zero),
            ("0h 0m", E::Zero),
            ("45s", E::Seconds),
            ("30 seconds", E::Seconds),
            ("1h 30s", E::Seconds),
            ("400d", E::TooLong),
            ("366d 1m", E::TooLong),
            ("53w", E::TooLong),
            ("99999999999999999999h", E::TooLong),
            ("18446744073709551615d", E::TooLong),
            (
                "h",
                E::MissingNumber {
                    unit: "h".to_string(),
                },
            ),
            (
                "hours",
                E::MissingNumber {
                    unit: "hours".to_string(),
                },
            ),
            (
                "2",
                E::MissingUnit {
                    number: "2".to_string(),
                },
            ),
            (
                "2h 30",
                E::MissingUnit {
                    number: "30".to_string(),
                },
            ),
            ("1.5h", E::Fractional),
            ("1,5h", E::Fractional),
            (".5h", E::Fractional),
            ("-2h", E::Negative),
            (
                "2 parsecs",
                E::UnknownUnit {
                    unit: "parsecs".to_string(),
                },
            ),
            (
                "2y",
                E::UnknownUnit {
                    unit: "y".to_string(),
                },
            ),
            ("soon", invalid("soon")),
            ("a while", invalid("a")),
            ("2h!", invalid("!")),
            ("+2h", invalid("+2h")),
            ("and", invalid("and")),
            (",", invalid(",")),
            ("🚀", invalid("🚀")),
        ] {
            assert_eq!(parse_duration(text), Err(expected), "{text}");
        }
    }

    #[test]
    fn duration_errors_read_well() {
        assert_eq!(
            DurationError::Seconds.to_string(),
            "seconds are too short; the smallest unit is minutes, like `30m`"
        );
        assert_eq!(
            DurationError::MissingUnit {
                number: "2".to_string()
            }
            .to_string(),
            "`2` needs a unit, like `2h` for hours or `2m` for minutes"
        );
        let error: Box<dyn std::error::Error> = Box::new(DurationError::TooLong);
        assert!(error.to_string().contains("366 days"));
    }

    #[test]
    fn format_duration_examples() {
        assert_eq!(format_duration(minutes(120)), "2h");
        assert_eq!(format_duration(minutes(90)), "1h 30m");
        assert_eq!(format_duration(minutes(26 * 60)), "1d 2h");
        assert_eq!(format_duration(minutes(45)), "45m");
        assert_eq!(format_duration(Duration::seconds(30)), "30s");
        assert_eq!(format_duration(Duration::seconds(86_400 + 61)), "1d 1m 1s");
        assert_eq!(format_duration(Duration::ZERO), "0s");
        assert_eq!(format_duration(Duration::milliseconds(1500)), "1s");
        assert_eq!(format_duration(minutes(-90)), "-1h 30m");
        assert_eq!(format_duration(Duration::MIN).chars().next(), Some('-'));
        assert!(format_duration(Duration::MAX).ends_with('s'));
    }

    #[test]
    fn format_then_parse_round_trips() {
        // Every 7th minute up to the limit, plus the edges.
        let limit = 366 * 24 * 60;
        let mut samples: Vec<i64> = (1..=limit).step_by(7).collect();
        samples.extend([1, 59, 60, 61, 1439, 1440, 1441, limit]);
        for m in samples {
            let duration = minutes(m);
            let text = format_duration(duration);
            assert_eq!(parse_duration(&text), Ok(duration), "{text}");
        }
        for text in ["2h", "1h 30m", "1d 2h", "45m", "366d", "3d 4h 5m"] {
            assert_eq!(format_duration(parse_duration(text).unwrap()), text);
        }
    }

    // --- suggestions -------------------------------------------------------

    #[test]
    fn edit_distance_counts_transpositions_once() {
        let d = |a: &str, b: &str| {
            edit_distance(
                &a.chars().collect::<Vec<_>>(),
                &b.chars().collect::<Vec<_>>(),
            )
        };
        assert_eq!(d("", ""), 0);
        assert_eq!(d("abc", ""), 3);
        assert_eq!(d("", "abc"), 3);
        assert_eq!(d("help", "hepl"), 1);
        assert_eq!(d("kitten", "sitting"), 3);
        assert_eq!(d("日本", "本日"), 1);
    }

    // --- robustness --------------------------------------------------------

    struct XorShift(u64);

    impl XorShift {
        fn next(&mut self) -> u64 {
            let mut x = self.0;
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            self.0 = x;
            x
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    #[test]
    fn never_panics_and_is_deterministic() {
        const PIECES: &[&str] = &[
            " ",
            "  ",
            "\u{a0}",
            "\t",
            "\n",
            "&nbsp;",
            "&amp;",
            "&lt;",
            "&#",
            "&#x1F680;",
            ";",
            "é",
            "日本",
            "🚀",
            "👍🏽",
            "ß",
            "\u{200B}",
            "<at>",
            "</at>",
            "<at id=\"0\">",
            "<p>",
            "</p>",
            "<div>",
            "<br/>",
            "<",
            ">",
            "/",
            "\"",
            "'",
            "\u{201C}",
            "\u{201D}",
            "\u{2018}",
            "`",
            "#",
            "-",
            ".",
            ",",
            "0",
            "1",
            "2",
            "7",
            "42",
            "99999999999999999999",
            "h",
            "m",
            "d",
            "s",
            "w",
            "min",
            "hours",
            "days",
            "help",
            "?",
            "hi",
            "request",
            "req",
            "records",
            "search",
            "my",
            "requests",
            "pending",
            "approve",
            "deny",
            "release",
            "extend",
            "admin",
            "audit",
            "verify",
            "revoke",
            "authority",
            "role",
            "health",
            "sync",
            "triage",
            "for",
            "by",
            "because",
            "and",
            "please",
            "db-prod",
            "x",
            "A",
        ];
        let mut rng = XorShift(0x5eed_1234_abcd_9876);
        for _ in 0..20_000 {
            let pieces = rng.below(24);
            let text: String = (0..pieces)
                .map(|_| PIECES[rng.below(PIECES.len())])
                .collect();
            let first = parse(&text);
            assert_eq!(parse(&text), first, "parse is deterministic for {text:?}");
            if let Err(error) = &first {
                assert!(!error.to_string().is_empty());
            }
            let normalized = normalize(&text);
            assert_eq!(normalized.trim(), normalized, "{text:?}");
            assert!(!normalized.contains("  "), "{text:?}");
            assert_eq!(parse_duration(&text), parse_duration(&text), "{text:?}");
            if let Ok(duration) = parse_duration(&text) {
                assert_eq!(parse_duration(&format_duration(duration)), Ok(duration));
            }
        }
    }

    #[test]
    fn huge_inputs_stay_fast_and_safe() {
        let many_mentions = "<at>".repeat(20_000) + "help";
        assert_eq!(parse(&many_mentions), Ok(Command::Help { topic: None }));
        let long_request = format!("request db {}", "1 ".repeat(5_000));
        assert!(matches!(
            parse(&long_request),
            Err(ParseError::Usage {
                command: "request",
                ..
            })
        ));
        let long_because = format!("request db {} because x", "word ".repeat(5_000));
        assert!(parse(&long_because).is_err());
    }

    #[test]
    fn admin_replay_takes_a_trace_number_or_all() {
        assert_eq!(
            parse("admin replay 17"),
            Ok(Command::Admin(AdminCommand::Replay { trace_id: Some(17) }))
        );
        assert_eq!(
            parse("admin replay #17"),
            Ok(Command::Admin(AdminCommand::Replay { trace_id: Some(17) }))
        );
        assert_eq!(
            parse("ADMIN REPLAY ALL"),
            Ok(Command::Admin(AdminCommand::Replay { trace_id: None }))
        );
        for bad in [
            "admin replay",
            "admin replay seventeen",
            "admin replay 17 18",
        ] {
            match parse(bad) {
                Err(ParseError::Usage { command, message }) => {
                    assert_eq!(command, "admin replay", "{bad}");
                    assert!(message.contains("admin replay 17"), "{bad}: {message}");
                }
                other => panic!("{bad}: {other:?}"),
            }
        }
    }
}
