//! The command parser: whatever a person (or a client pretending to be Teams) types. Every input
//! is a command or a [`ParseError`] whose text is short however long the input, and every
//! command satisfies what the turn relies on (positive request numbers, durations within the
//! 366-day limit, no empty reasons).

use super::{apply_text, byte_edits, config};
use passkey::bot::commands::{AdminCommand, Command, ParseError, normalize, parse, parse_duration};
use proptest::prelude::*;

/// An error message is one line of template plus at most a few 40-character echoes.
const MAX_ERROR_CHARS: usize = 1_000;
const MAX_DAYS: i64 = 366;

const VALID: &[&str] = &[
    "help",
    "help request",
    "request db-prod 2h because INC-4411",
    "request db-prod for 1 hour and 30 minutes because restoring the service",
    "records db",
    "search \"prod db\"",
    "my requests",
    "pending",
    "approve 42 looks good",
    "approve #42",
    "deny 42 not on call this week",
    "release 42",
    "extend 42 by 1h 30m",
    "extend 7 2d",
    "admin health",
    "admin triage",
    "admin triage 3 approve on call",
    "admin audit verify",
    "admin authority grant APPROVER db-prod user:aad-2",
    "admin sensitivity db-prod HIGH because it holds customer data",
    "admin role aad-2 ADMIN",
    "admin replay 17",
    "admin replay all",
    "admin revoke 42 left the company",
    "admin totp-invite alice@example.com",
    "<at>Passkey</at> please request db-prod 30m because INC-1",
    "<p>approve&nbsp;42&nbsp;<b>ok</b></p>",
];

/// Words that sit at the edges of what the grammar takes.
const WORDS: &[&str] = &[
    "0",
    "-1",
    "#0",
    "#-5",
    "9223372036854775807",
    "9223372036854775808",
    "99999999999999999999999",
    "1e9",
    "0x10",
    "١٢",
    "367d",
    "366d",
    "52w",
    "53w",
    "9999999999999999999m",
    "1.5h",
    "1,5h",
    "30s",
    "h",
    "and",
    "by",
    "for",
    "because",
    "<at>",
    "</at>",
    "&amp;",
    "&#x0;",
    "&#99999999;",
    "&",
    "<",
    "\u{200b}",
    "\u{202e}",
    "\u{0}",
    "`",
    "\"",
    "ADMIN",
    "İ",
    "ß",
    "ﬁ",
];

#[derive(Debug, Clone)]
enum WordEdit {
    Replace(usize, &'static str),
    Insert(usize, &'static str),
    Drop(usize),
    Swap(usize, usize),
    Repeat(usize, usize),
}

fn word_edit() -> impl Strategy<Value = WordEdit> {
    let word = proptest::sample::select(WORDS);
    prop_oneof![
        3 => (any::<usize>(), word.clone()).prop_map(|(i, w)| WordEdit::Replace(i, w)),
        2 => (any::<usize>(), word).prop_map(|(i, w)| WordEdit::Insert(i, w)),
        1 => any::<usize>().prop_map(WordEdit::Drop),
        1 => (any::<usize>(), any::<usize>()).prop_map(|(i, j)| WordEdit::Swap(i, j)),
        1 => (any::<usize>(), 1usize..400).prop_map(|(i, n)| WordEdit::Repeat(i, n)),
    ]
}

fn apply_words(text: &str, edits: &[WordEdit]) -> String {
    let mut words: Vec<String> = text.split(' ').map(String::from).collect();
    for edit in edits {
        let n = words.len().max(1);
        match edit {
            WordEdit::Replace(i, w) if !words.is_empty() => words[i % n] = w.to_string(),
            WordEdit::Insert(i, w) => words.insert(i % (words.len() + 1), w.to_string()),
            WordEdit::Drop(i) if !words.is_empty() => {
                words.remove(i % n);
            }
            WordEdit::Swap(i, j) if !words.is_empty() => words.swap(i % n, j % n),
            WordEdit::Repeat(i, times) if !words.is_empty() => {
                let w = words[i % n].clone();
                words[i % n] = vec![w; *times].join(" ");
            }
            _ => {}
        }
    }
    words.join(" ")
}

/// Plain text as Teams puts it in an activity's HTML `text`.
fn escape_html(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// What the turn relies on, for any input.
fn check(text: &str) -> Result<(), TestCaseError> {
    let normalized = normalize(text);
    // Teams sends HTML and `normalize` reads it once: the words it returns, sent again by Teams
    // (escaped), read back as the same words. Idempotence (`normalize(normalize(x))`) is the wrong
    // property: it would decode a typed `&amp;#50;` twice into `2` (double decoding, CWE-174),
    // and a typed `&lt;p&gt;` would lose its `<p>`.
    prop_assert_eq!(
        normalize(&escape_html(&normalized)),
        normalized.clone(),
        "the words read back the same when Teams sends them again"
    );
    prop_assert!(!normalized.starts_with(' ') && !normalized.ends_with(' '));
    let first = parse(text);
    prop_assert_eq!(&parse(text), &first, "parse is deterministic");
    let in_days =
        |d: &time::Duration| *d > time::Duration::ZERO && *d <= time::Duration::days(MAX_DAYS);
    match first {
        Ok(command) => match command {
            Command::Request {
                record,
                duration,
                reason,
            } => {
                prop_assert!(!record.trim().is_empty());
                prop_assert!(duration.as_ref().is_none_or(in_days), "{duration:?}");
                prop_assert!(reason.as_deref().is_none_or(|r| !r.trim().is_empty()));
            }
            Command::Approve { request_id, .. } | Command::Release { request_id } => {
                prop_assert!(request_id > 0)
            }
            Command::Deny { request_id, reason } => {
                prop_assert!(request_id > 0);
                prop_assert!(!reason.trim().is_empty());
            }
            Command::Extend {
                request_id,
                duration,
            } => {
                prop_assert!(request_id > 0);
                prop_assert!(in_days(&duration), "{duration:?}");
            }
            Command::Admin(AdminCommand::Revoke { request_id, reason }) => {
                prop_assert!(request_id > 0);
                prop_assert!(!reason.trim().is_empty());
            }
            Command::Admin(AdminCommand::Triage { decision: Some(d) }) => {
                prop_assert!(d.request_id > 0);
                prop_assert!(!d.reason.trim().is_empty());
            }
            Command::Admin(AdminCommand::Replay { trace_id: Some(id) }) => prop_assert!(id > 0),
            _ => {}
        },
        Err(e) => {
            let shown = e.to_string();
            prop_assert!(
                shown.chars().count() <= MAX_ERROR_CHARS,
                "an error echoes {} characters",
                shown.chars().count()
            );
            prop_assert!(!shown.is_empty());
            if let ParseError::Unknown { word, .. } = &e {
                prop_assert!(!word.is_empty());
            }
        }
    }
    // A duration, parsed alone, keeps to the same limit.
    if let Ok(d) = parse_duration(text) {
        prop_assert!(in_days(&d), "{d:?} from {text:?}");
    }
    Ok(())
}

proptest! {
    #![proptest_config(config(512))]

    #[test]
    fn any_text_is_a_command_or_a_short_error(text in ".{0,300}") {
        check(&text)?;
    }

    #[test]
    fn any_bytes_read_as_text_are_a_command_or_a_short_error(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        check(&String::from_utf8_lossy(&bytes))?;
    }

    #[test]
    fn edited_commands_are_commands_or_short_errors(
        base in proptest::sample::select(VALID),
        words in proptest::collection::vec(word_edit(), 1..5),
        bytes in proptest::option::of(byte_edits()),
    ) {
        let mut text = apply_words(base, &words);
        if let Some(bytes) = bytes {
            text = apply_text(&text, &bytes);
        }
        check(&text)?;
    }

    #[test]
    fn any_duration_text_is_a_duration_within_limits_or_an_error(
        text in "([0-9]{1,25}|[ ,.]|and|[a-zA-Zµ]{1,8}){0,12}",
    ) {
        if let Ok(d) = parse_duration(&text) {
            prop_assert!(d > time::Duration::ZERO && d <= time::Duration::days(MAX_DAYS), "{d:?} from {text:?}");
        }
        check(&format!("extend 4 {text}"))?;
        check(&format!("request db-prod {text} because x"))?;
    }
}

#[test]
fn the_valid_examples_are_commands() {
    for text in VALID {
        assert!(parse(text).is_ok(), "{text}: {:?}", parse(text));
    }
    // The word edits above are not all no-ops.
    let edited = apply_words("approve 42", &[WordEdit::Replace(1, "0")]);
    assert!(parse(&edited).is_err());
}
