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
fn a_typed_entity_is_read_once_never_twice() {
    // What a person typed as `&#50;` or `&lt;p&gt;` arrives escaped once more; decoding it twice
    // (CWE-174) would turn a typed request number into a different one, or swallow typed text.
    assert_eq!(normalize("release 4&amp;#50;"), "release 4&#50;");
    assert!(parse("release 4&amp;#50;").is_err());
    assert_eq!(normalize("because &amp;lt;p&amp;gt;"), "because &lt;p&gt;");
    assert_eq!(
        normalize("approve 42 &amp;amp;amp;"),
        "approve 42 &amp;amp;"
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
fn status_forms() {
    assert_eq!(parse("status 14"), Ok(Command::Status { request_id: 14 }));
    assert_eq!(parse("Status #14"), Ok(Command::Status { request_id: 14 }));
    let message = usage_message("status", "status");
    assert!(message.contains("`status 42`"), "{message}");
    let message = usage_message("status 14 please", "status");
    assert!(message.contains("`please`"), "{message}");
    assert_eq!(unknown("statsu 4"), ("statsu".to_string(), Some("status")));
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
        parse("admin report"),
        admin(AdminCommand::Report {
            days: 7,
            record: None
        })
    );
    assert_eq!(
        parse("admin Report 30D db prod"),
        admin(AdminCommand::Report {
            days: 30,
            record: Some("db prod".into())
        })
    );
    assert_eq!(
        parse("admin report db-prod"),
        admin(AdminCommand::Report {
            days: 7,
            record: Some("db-prod".into())
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
        "`admin report",
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

    let message = usage_message("admin report 9d", "admin report");
    assert!(message.contains("`7d` or `30d`"), "{message}");
    assert!(message.contains("`9d`"), "{message}");

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
