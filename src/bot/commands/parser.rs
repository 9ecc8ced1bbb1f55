//! The grammar: normalised text to a typed [`Command`](super::Command).

use super::*;

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
        "status" => {
            let request_id = parse_id(rest.first(), "status", "`status 42`")?;
            if rest.len() > 1 {
                return Err(usage(
                    "status",
                    format!(
                        "`status` takes just the request number, so I don't know what to do with `{}`. Try `status 42`.",
                        echo(&rest[1..].join(" "))
                    ),
                ));
            }
            Ok(Command::Status { request_id })
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
pub(super) fn echo(text: &str) -> String {
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
        "report" => {
            let (days, record) = match args.split_first() {
                Some((first, rest))
                    if first.len() > 1
                        && first.ends_with(['d', 'D'])
                        && first[..first.len() - 1].bytes().all(|b| b.is_ascii_digit()) =>
                {
                    let days = first[..first.len() - 1]
                        .parse::<u32>()
                        .ok()
                        .filter(|d| crate::governance::reports::CHAT_WINDOWS_DAYS.contains(d))
                        .ok_or_else(|| {
                            usage(
                                "admin report",
                                format!(
                                    "Reports cover the last `7d` or `30d`, not `{}`: e.g. `admin report 30d db-prod`.",
                                    echo(first)
                                ),
                            )
                        })?;
                    (days, rest)
                }
                _ => (crate::governance::reports::CHAT_WINDOWS_DAYS[0], args),
            };
            Ok(AdminCommand::Report {
                days,
                record: (!record.is_empty()).then(|| record.join(" ")),
            })
        }
        "review" => match args {
            [start] if start.eq_ignore_ascii_case("start") => Ok(AdminCommand::ReviewStart),
            _ => Err(usage(
                "admin review start",
                "To start an access review campaign now, type `admin review start`.",
            )),
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
