//! Adaptive Cards: every card, fed hostile text, renders to valid JSON that the official Adaptive
//! Card 1.5 schema accepts, under the size limit, with action payloads the bot decodes; and each
//! card's look is pinned by a snapshot (`tests/it/snapshots/`).

use crate::common;

use passkey::bot::actions::{CardAction, from_execute};
use passkey::bot::commands::parse_duration;
use passkey::cards::*;
use passkey::domain::{DiscoverySource, RequestStatus, Role, Sensitivity, SyncStatus, Timestamp};
use passkey::store::{JobRun, Record, Request, User};
use serde_json::{Map, Value, json};

const BASE: &str = "https://passkey.example.com";

/// Text people could type, each one trouble for a naive template.
const HOSTILE: [&str; 10] = [
    r#"quote " and backslash \ and \" and \\"#,
    "new\nline\r\nand\ttab",
    "controls \u{0}\u{1}\u{8}\u{b}\u{c}\u{1b}[31m\u{1f}\u{7f} end",
    "{{title}} {{{raw}}} {{#each x}}{{/each}} {{> partial}} {{&amp}}",
    "</script><script>alert(1)</script><!-- & -->",
    "emoji 😀🔑👩‍💻🏳️‍🌈 and combining e\u{301}",
    "עברית: שלום עולם — العربية: مرحبا بالعالم",
    "\u{202e}txt.exe\u{202c} and \u{2066}isolate\u{2069}",
    "separators \u{2028} \u{2029} and nbsp\u{a0}zwj\u{200d}",
    "json }]}, \"type\": \"Action.OpenUrl\", \"url\": \"https://evil.example\" {[",
];

fn everything_hostile() -> String {
    HOSTILE.join(" | ")
}

/// A 10 KB justification made of every hostile string, over and over.
fn ten_kb() -> String {
    let mut s = String::new();
    while s.len() < 10 * 1024 {
        s.push_str(&everything_hostile());
        s.push(' ');
    }
    s
}

/// Valid by the schema, small enough, and carrying nothing shaped like a secret link.
fn check(what: &str, card: &Value) {
    let errors = common::adaptive_card_errors(card);
    assert!(
        errors.is_empty(),
        "{what}: not a valid Adaptive Card 1.5:\n{}\n{card:#}",
        errors.join("\n")
    );
    assert_eq!(card["version"], "1.5", "{what}");
    let size = card_size(card);
    assert!(size <= MAX_CARD_BYTES, "{what}: {size} bytes");
    assert!(size < 28 * 1024, "{what}: {size} bytes");
    let text = card.to_string();
    assert!(!text.contains("#t="), "{what}: a token fragment");
    assert!(!text.contains("/vault/share"), "{what}: a share link");
    for url in open_urls(card) {
        let report = format!("{BASE}/reports/access/");
        assert!(
            (url.starts_with(BASE) && url.ends_with("/issue"))
                || (url.starts_with(&report)
                    && url[report.len()..]
                        .bytes()
                        .all(|b| b.is_ascii_digit() || b == b'-' || b == b'/')),
            "{what}: unexpected link {url}"
        );
    }
}

fn ts(text: &str) -> Timestamp {
    Timestamp::parse(text).unwrap()
}

fn record(title: &str) -> Record {
    Record {
        id: 5,
        vault_uid: "AbCdEfGhIjKlMnOpQrStUv".into(),
        title: title.into(),
        record_type: "databaseCredentials".into(),
        folder_id: Some(2),
        revision: 3,
        vault_owner: None,
        owner_user_id: None,
        sensitivity: Sensitivity::High,
        sync_status: SyncStatus::Fresh,
        vault_uid_pinned: false,
        discovery_source: DiscoverySource::Auto,
        discovered_at: None,
        last_synced_at: None,
        created_at: ts("2026-11-01T09:00:00Z"),
        updated_at: ts("2026-11-01T09:00:00Z"),
    }
}

fn user(name: &str, role: Role) -> User {
    User {
        id: 7,
        aad_object_id: "00000000-0000-0000-0000-000000000007".into(),
        tenant_id: None,
        teams_user_id: Some("29:requester".into()),
        upn: Some("ana@example.com".into()),
        email: Some("ana@example.com".into()),
        display_name: name.into(),
        role,
        allow_multiple_leases: false,
        created_at: ts("2026-11-01T09:00:00Z"),
        updated_at: ts("2026-11-01T09:00:00Z"),
        directory_checked_at: None,
        directory_check_failed: false,
    }
}

fn request(id: i64, status: RequestStatus, justification: &str, reason: Option<&str>) -> Request {
    let live = status.has_live_lease();
    let decided = !matches!(
        status,
        RequestStatus::Pending | RequestStatus::RequiresTriage
    );
    Request {
        id,
        requester_id: 7,
        record_id: 5,
        status,
        justification: justification.into(),
        ticket_id: Some("INC-4411".into()),
        requested_duration_secs: 7200,
        approved_duration_secs: decided.then_some(7200),
        break_glass: false,
        required_approvals: 1,
        policy_version: Some("v1".into()),
        decided_by: decided.then_some(9),
        decided_at: decided.then(|| ts("2026-11-23T10:05:00Z")),
        decision_reason: reason.map(String::from),
        lease_started_at: live.then(|| ts("2026-11-23T10:05:00Z")),
        lease_expires_at: live.then(|| ts("2026-11-23T12:05:00Z")),
        ended_at: matches!(status, RequestStatus::Expired | RequestStatus::Released)
            .then(|| ts("2026-11-23T11:00:00Z")),
        issuance_token_hash: None,
        issuance_token_expires_at: None,
        issuance_count: if status == RequestStatus::Issued {
            1
        } else {
            0
        },
        max_issuances: 3,
        extension_count: 0,
        renewal_duration_secs: (status == RequestStatus::RenewalPending).then_some(3600),
        preflight_attempts: 0,
        next_attempt_at: None,
        created_at: ts("2026-11-23T10:00:00Z"),
        updated_at: ts("2026-11-23T10:05:00Z"),
        claimed_by: None,
        claim_until: None,
        review_required: false,
        otp_required: false,
        reminded_at: None,
        expiry_warned_at: None,
        issuances_in_flight: 0,
    }
}

fn job_run(name: &str, ok: bool, error: Option<&str>) -> JobRun {
    JobRun {
        id: 1,
        job_name: name.into(),
        holder: "host-1".into(),
        started_at: ts("2026-11-23T10:00:00Z"),
        finished_at: ts("2026-11-23T10:00:02Z"),
        ok,
        counts: sqlx::types::Json(json!({"expired": 1})),
        error: error.map(String::from),
    }
}

/// Every card, built from the given text wherever people's words or names can appear.
pub(crate) fn every_card(text: &str, long_text: &str) -> Vec<(String, Value)> {
    every_rendered_card(text, long_text)
        .into_iter()
        .map(|(what, card)| (what, card.into_value()))
        .collect()
}

fn every_rendered_card(text: &str, long_text: &str) -> Vec<(String, Card)> {
    let rec = record(text);
    let requester = user(text, Role::Requester);
    let reasons = vec![
        text.to_string(),
        long_text.to_string(),
        "MEDIUM needs one approver".into(),
    ];
    let mut cards = vec![
        (
            "welcome".into(),
            render_welcome(&WelcomeCard::new(Some(text))).unwrap(),
        ),
        (
            "welcome, no name".into(),
            render_welcome(&WelcomeCard::new(None)).unwrap(),
        ),
        (
            "help".into(),
            render_help(&HelpCard::for_user(Some(&requester))).unwrap(),
        ),
        (
            "help, admin".into(),
            render_help(&HelpCard::for_user(Some(&user(text, Role::Admin)))).unwrap(),
        ),
    ];
    let many_records: Vec<Record> = (0..45).map(|i| record(&format!("{i} {text}"))).collect();
    cards.push((
        "request form".into(),
        render_request_form(
            &RequestFormCard::new(&many_records, 8 * 3600, 3600)
                .with_record("AbCdEfGhIjKlMnOpQrStUv")
                .with_problem(long_text),
        )
        .unwrap(),
    ));
    for status in RequestStatus::ALL.iter().copied() {
        let r = request(42, status, long_text, Some(long_text));
        cards.push((
            format!("status {status}"),
            render_request_status(&RequestStatusCard::new(&r, &rec, Some(text), BASE)).unwrap(),
        ));
        cards.push((
            format!("decided {status}"),
            render_decided(&DecidedCard::new(&r, &rec, text, Some(text)).already_decided())
                .unwrap(),
        ));
    }
    let pending = request(42, RequestStatus::Pending, long_text, None);
    let ids: Vec<String> = (0..80).map(|i| format!("29:{i}-{text}")).collect();
    cards.push((
        "approval, approver".into(),
        render_approval(
            &ApprovalCard::new(&pending, &rec, &requester, Some(text), &reasons)
                .decidable(true)
                .refresh_for(&ids),
        )
        .unwrap(),
    ));
    cards.push((
        "approval, team channel".into(),
        render_approval(
            &ApprovalCard::new(&pending, &rec, &requester, Some(text), &reasons)
                .refresh_for(&ids)
                .in_channel(long_text),
        )
        .unwrap(),
    ));
    let mut glass = request(43, RequestStatus::RenewalPending, long_text, None);
    glass.break_glass = true;
    cards.push((
        "approval, observer, extension, break-glass".into(),
        render_approval(&ApprovalCard::new(&glass, &rec, &requester, None, &reasons)).unwrap(),
    ));
    let requests: Vec<Request> = (0..25)
        .map(|i| {
            let status = RequestStatus::ALL[i % RequestStatus::ALL.len()];
            request(100 + i as i64, status, long_text, Some(long_text))
        })
        .collect();
    cards.push((
        "my requests".into(),
        render_my_requests(&MyRequestsCard::new(
            requests.iter().map(|r| (r, long_text)),
        ))
        .unwrap(),
    ));
    cards.push((
        "my requests, none".into(),
        render_my_requests(&MyRequestsCard::new(std::iter::empty())).unwrap(),
    ));
    cards.push((
        "pending approvals".into(),
        render_pending_approvals(&PendingApprovalsCard::new(
            requests
                .iter()
                .map(|r| PendingItem::new(r, &rec, long_text))
                .collect(),
        ))
        .unwrap(),
    ));
    cards.push((
        "record search".into(),
        render_record_search(
            &RecordSearchCard::new(Some(text), &many_records).with_note(long_text),
        )
        .unwrap(),
    ));
    cards.push((
        "record search, nothing".into(),
        render_record_search(&RecordSearchCard::new(None, &[])).unwrap(),
    ));
    cards.push((
        "triage queue".into(),
        render_triage_queue(&TriageQueueCard::new(
            requests
                .iter()
                .map(|r| TriageItem::new(r, &rec, long_text))
                .collect(),
        ))
        .unwrap(),
    ));
    let runs: Vec<JobRun> = (0..30)
        .map(|i| job_run(&format!("job-{i} {text}"), i % 3 != 0, Some(long_text)))
        .collect();
    cards.push((
        "admin health".into(),
        render_admin_health(&AdminHealthCard::new(
            vec![
                HealthCheck::new(text, true, long_text),
                HealthCheck::new("database", false, text),
            ],
            &runs,
        ))
        .unwrap(),
    ));
    cards.push((
        "error".into(),
        render_error(&ErrorCard::new(text, long_text).with_reference(text)).unwrap(),
    ));
    let lines = |what: &str| -> Vec<ReportLine> {
        (0..15)
            .map(|i| ReportLine::new(&format!("{i} {what} {text}"), long_text))
            .collect()
    };
    cards.push((
        "access report".into(),
        render_access_report(&AccessReportCard::new(
            text,
            Some(text),
            long_text,
            lines("record"),
            lines("person"),
            &format!("{BASE}/reports/access/2026-10-25/2026-11-24/42"),
            10,
        ))
        .unwrap(),
    ));
    // An access review with more rows than one card shows, some decided, some the reader's own.
    let rows = |decided_every: i64| -> Vec<ReviewRowInput> {
        (1..=25)
            .map(|i| ReviewRowInput {
                kind: if i % 5 == 0 {
                    "BREAK_GLASS"
                } else {
                    "AUTHORITY"
                }
                .into(),
                id: i,
                title: format!("APPROVER · {text}"),
                detail: long_text.to_string(),
                decided: (i % decided_every == 0).then(|| format!("Kept by {text} on 2026-11-23")),
                decidable: i != 1,
            })
            .collect()
    };
    let holders: Vec<(String, u32)> = (0..30).map(|i| (format!("{i} {text}"), 2)).collect();
    let period = (ts("2026-08-25T09:00:00Z"), ts("2026-11-23T09:00:00Z"));
    cards.push((
        "access review".into(),
        render_access_review(&AccessReviewCard::new(
            7,
            text,
            period,
            true,
            "open: 20 of 25 rows to decide",
            Some(long_text),
            &holders,
            rows(3),
        ))
        .unwrap(),
    ));
    cards.push((
        "access report, nothing".into(),
        render_access_report(&AccessReportCard::new(
            "Last 7 days",
            None,
            "0 requests.",
            vec![],
            vec![],
            &format!("{BASE}/reports/access/2026-11-17/2026-11-24"),
            10,
        ))
        .unwrap(),
    ));
    cards.push((
        "access review, closed".into(),
        render_access_review(&AccessReviewCard::new(
            7,
            text,
            period,
            false,
            "closed: every row decided",
            None,
            &[],
            rows(1),
        ))
        .unwrap(),
    ));
    // An admin report of many hostile lines, fenced (monospace) and not.
    let report: String = (0..60)
        .map(|i| format!("- {i} {text} {long_text}\n"))
        .collect();
    for (what, body) in [
        ("admin result", report.clone()),
        ("admin result fenced", format!("```\n{report}```")),
    ] {
        cards.push((
            what.into(),
            render_admin_result(&AdminResultCard::new(text, false, &body)).unwrap(),
        ));
    }
    cards
}

#[test]
fn every_card_with_hostile_text_is_a_valid_adaptive_card_under_the_limit() {
    let big = ten_kb();
    assert!(big.len() >= 10 * 1024);
    for text in HOSTILE
        .iter()
        .map(|s| s.to_string())
        .chain([everything_hostile(), big.clone()])
    {
        for (name, card) in every_card(&text, &big) {
            check(&format!("{name} with {text:.40?}"), &card);
        }
    }
}

#[test]
fn hostile_text_arrives_as_text_not_as_card_structure() {
    let text = HOSTILE[9];
    let rec = record(text);
    let r = request(42, RequestStatus::Approved, text, None);
    let card = render_request_status(&RequestStatusCard::new(&r, &rec, None, BASE)).unwrap();
    // The fake "Action.OpenUrl" in the title stays inside a string: one link, ours.
    assert_eq!(open_urls(&card), vec![format!("{BASE}/requests/42/issue")]);
    assert_eq!(
        card["body"][0]["items"][1]["text"],
        format!("Request #42 · {text}")
    );
    // Control characters and bidi overrides are dropped; the rest is kept as typed.
    let card = render_error(&ErrorCard::new(HOSTILE[7], HOSTILE[2])).unwrap();
    assert_eq!(card["body"][0]["text"], "txt.exe and isolate");
    assert_eq!(card["body"][1]["text"], "controls [31m end");
    let card = render_error(&ErrorCard::new(HOSTILE[3], HOSTILE[6])).unwrap();
    assert_eq!(card["body"][0]["text"], HOSTILE[3]);
    assert_eq!(card["body"][1]["text"], HOSTILE[6]);
}

#[test]
fn a_ten_kilobyte_justification_is_cut_not_refused() {
    let big = ten_kb();
    let rec = record("db-prod");
    let r = request(42, RequestStatus::Pending, &big, None);
    let card = render_approval(&ApprovalCard::new(
        &r,
        &rec,
        &user("Ana", Role::Requester),
        None,
        &[],
    ))
    .unwrap();
    let shown = find_text_starting(&card, "quote").expect("justification shown");
    assert!(shown.chars().count() <= LONG_TEXT);
    assert!(shown.ends_with('…'));
}

// ---------------------------------------------------------------------------------------------
// Action payloads: what Teams sends back decodes to the action the button means
// ---------------------------------------------------------------------------------------------

/// Every `Action.Execute` in the card (including those in ShowCards and ActionSets).
fn executes(card: &Value) -> Vec<Value> {
    let mut found = Vec::new();
    walk(card, &mut |v| {
        if v.get("type") == Some(&json!("Action.Execute")) {
            found.push(v.clone());
        }
    });
    found
}

fn open_urls(card: &Value) -> Vec<String> {
    let mut found = Vec::new();
    walk(card, &mut |v| {
        if v.get("type") == Some(&json!("Action.OpenUrl")) {
            found.push(v["url"].as_str().unwrap_or_default().to_string());
        }
    });
    found
}

/// Input ids in the card, with the first choice (or the initial value) as what a person picks.
fn inputs(card: &Value) -> Map<String, Value> {
    let mut found = Map::new();
    walk(card, &mut |v| {
        let kind = v.get("type").and_then(Value::as_str).unwrap_or_default();
        if kind.starts_with("Input.") {
            let id = v["id"].as_str().unwrap().to_string();
            let value = v
                .get("value")
                .cloned()
                .or_else(|| v.pointer("/choices/0/value").cloned())
                .unwrap_or_else(|| json!(""));
            found.insert(id, value);
        }
    });
    found
}

fn walk(v: &Value, f: &mut dyn FnMut(&Value)) {
    f(v);
    match v {
        Value::Array(items) => items.iter().for_each(|i| walk(i, f)),
        Value::Object(map) => map.values().for_each(|i| walk(i, f)),
        _ => {}
    }
}

fn find_text_starting(card: &Value, prefix: &str) -> Option<String> {
    let mut found = None;
    walk(card, &mut |v| {
        if let Some(t) = v.get("text").and_then(Value::as_str)
            && t.starts_with(prefix)
            && found.is_none()
        {
            found = Some(t.to_string());
        }
    });
    found
}

/// What Teams sends for a tap: the action's data with the card's input values merged in.
fn tap(card: &Value, verb: &str, typed: &[(&str, &str)]) -> CardAction {
    let action = executes(card)
        .into_iter()
        .find(|a| a["verb"] == verb)
        .unwrap_or_else(|| panic!("no `{verb}` button in {card:#}"));
    let mut data = action["data"].as_object().cloned().unwrap_or_default();
    let card_inputs = inputs(card);
    for (id, value) in &card_inputs {
        data.insert(id.clone(), value.clone());
    }
    for (id, value) in typed {
        assert!(
            card_inputs.contains_key(*id),
            "the card has no input `{id}`"
        );
        data.insert(id.to_string(), json!(value));
    }
    let invoke = json!({
        "action": {"type": "Action.Execute", "verb": verb, "data": data},
        "trigger": "manual"
    });
    from_execute(&invoke).unwrap_or_else(|e| panic!("{verb}: {e}: {invoke}"))
}

#[test]
fn approval_buttons_decode_to_approve_and_deny_with_the_comment() {
    let r = request(42, RequestStatus::Pending, "INC-4411 outage", None);
    let card = render_approval(
        &ApprovalCard::new(
            &r,
            &record("db-prod"),
            &user("Ana", Role::Requester),
            None,
            &[],
        )
        .decidable(true)
        .refresh_for(&["29:approver-1".into(), "29:approver-2".into()]),
    )
    .unwrap();
    assert_eq!(
        tap(&card, "approve", &[("comment", " fine by me ")]),
        CardAction::Approve {
            request_id: 42,
            comment: Some("fine by me".into())
        }
    );
    assert_eq!(
        tap(&card, "deny", &[]),
        CardAction::Deny {
            request_id: 42,
            comment: None
        }
    );
    // The automatic refresh asks for each listed approver's own view.
    assert_eq!(
        card["refresh"]["userIds"],
        json!(["29:approver-1", "29:approver-2"])
    );
    let refresh = json!({"action": card["refresh"]["action"].clone(), "trigger": "automatic"});
    assert_eq!(
        from_execute(&refresh).unwrap(),
        CardAction::Refresh {
            request_id: Some(42),
            view: Some("approver".into())
        }
    );
    // Someone who may not decide sees no buttons and no comment box.
    let observer = render_approval(&ApprovalCard::new(
        &r,
        &record("db-prod"),
        &user("Ana", Role::Requester),
        None,
        &[],
    ))
    .unwrap();
    let verbs: Vec<Value> = executes(&observer)
        .iter()
        .map(|a| a["verb"].clone())
        .collect();
    assert_eq!(verbs, vec![json!("refresh")]);
    assert!(inputs(&observer).is_empty());
    assert!(observer.get("refresh").is_none());
}

#[test]
fn the_request_form_submits_a_request_the_bot_decodes() {
    let records = [record("db-prod"), record("aws-root")];
    let form = RequestFormCard::new(&records, 4 * 3600, 3600);
    let card = render_request_form(&form).unwrap();
    let action = tap(
        &card,
        "submitRequest",
        &[("justification", "INC-4411 outage"), ("ticket", "INC-4411")],
    );
    assert_eq!(
        action,
        CardAction::SubmitRequest {
            record: "AbCdEfGhIjKlMnOpQrStUv".into(),
            duration: Some("1h".into()),
            justification: Some("INC-4411 outage".into()),
            ticket: Some("INC-4411".into()),
        }
    );
    // An empty optional ticket decodes as none.
    let CardAction::SubmitRequest { ticket, .. } =
        tap(&card, "submitRequest", &[("justification", "why")])
    else {
        panic!()
    };
    assert_eq!(ticket, None);
}

#[test]
fn duration_choices_stay_within_the_cap_and_parse() {
    for cap in [
        10 * 60,
        3600,
        90 * 60,
        8 * 3600,
        86_400 + 43_200,
        30 * 86_400,
    ] {
        let choices = duration_choices(cap);
        assert!(!choices.is_empty());
        for c in &choices {
            let d = parse_duration(&c.value).unwrap_or_else(|e| panic!("{}: {e}", c.value));
            assert!(d.whole_seconds() <= cap, "{} over {cap}", c.value);
        }
        assert_eq!(
            parse_duration(&choices.last().unwrap().value)
                .unwrap()
                .whole_seconds(),
            cap
        );
        let form = RequestFormCard::new(&[record("db")], cap, 2 * 3600);
        assert!(
            form.durations.iter().any(|c| c.value == form.duration),
            "{cap}"
        );
    }
}

#[test]
fn status_buttons_release_extend_and_retrieve() {
    let rec = record("db-prod");
    for status in [RequestStatus::Approved, RequestStatus::Issued] {
        let r = request(42, status, "why", None);
        let card = render_request_status(&RequestStatusCard::new(&r, &rec, None, BASE)).unwrap();
        assert_eq!(
            tap(&card, "release", &[]),
            CardAction::Release { request_id: 42 }
        );
        assert_eq!(
            tap(&card, "extend", &[("duration", "2h")]),
            CardAction::Extend {
                request_id: 42,
                duration: "2h".into()
            }
        );
        assert_eq!(open_urls(&card), vec![format!("{BASE}/requests/42/issue")]);
    }
    // Out of retrievals: no Retrieve button.
    let mut used = request(42, RequestStatus::Issued, "why", None);
    used.issuance_count = 3;
    let card = render_request_status(&RequestStatusCard::new(&used, &rec, None, BASE)).unwrap();
    assert!(open_urls(&card).is_empty());
    // Final states: nothing but Refresh.
    for status in [
        RequestStatus::Denied,
        RequestStatus::Expired,
        RequestStatus::Released,
        RequestStatus::Unfulfillable,
        RequestStatus::Pending,
        RequestStatus::RequiresTriage,
    ] {
        let r = request(42, status, "why", Some("because"));
        let card = render_request_status(&RequestStatusCard::new(&r, &rec, None, BASE)).unwrap();
        let verbs: Vec<Value> = executes(&card).iter().map(|a| a["verb"].clone()).collect();
        assert_eq!(verbs, vec![json!("refresh")], "{status}");
        assert!(open_urls(&card).is_empty(), "{status}");
    }
}

#[test]
fn every_button_on_every_card_decodes() {
    for (name, card) in every_card("db-prod", "a reason") {
        for action in executes(&card) {
            let verb = action["verb"].as_str().unwrap();
            let typed: &[(&str, &str)] = if verb == "submitRequest" {
                &[("justification", "why")]
            } else {
                &[]
            };
            let decoded = tap(&card, verb, typed);
            let id_ok = match decoded {
                CardAction::Approve { request_id, .. }
                | CardAction::Deny { request_id, .. }
                | CardAction::Release { request_id }
                | CardAction::Extend { request_id, .. } => request_id > 0,
                CardAction::ReviewDecide {
                    review_id, item_id, ..
                } => review_id > 0 && item_id > 0,
                CardAction::ReviewConfirm { review_id, shown } => {
                    review_id > 0 && !shown.is_empty()
                }
                _ => true,
            };
            assert!(id_ok, "{name}: {verb}");
        }
    }
}

#[test]
fn my_requests_offer_release_and_extend_where_they_apply() {
    let rec_title = "db-prod";
    let live = request(1, RequestStatus::Issued, "why", None);
    let done = request(2, RequestStatus::Released, "why", None);
    let card = render_my_requests(&MyRequestsCard::new([
        (&live, rec_title),
        (&done, rec_title),
    ]))
    .unwrap();
    let payloads: Vec<Value> = executes(&card)
        .into_iter()
        .filter(|a| a["verb"] != "refresh")
        .map(|a| json!({"verb": a["verb"], "data": a["data"]}))
        .collect();
    assert_eq!(
        payloads,
        vec![
            // Extend comes first; Release waits behind its confirmation (#18.4).
            json!({"verb": "extend", "data": {"requestId": 1, "duration": "1h"}}),
            json!({"verb": "release", "data": {"requestId": 1}}),
        ]
    );
    assert_eq!(
        from_execute(&json!({"action": {"type": "Action.Execute", "verb": "extend", "data": payloads[0]["data"]}}))
            .unwrap(),
        CardAction::Extend {
            request_id: 1,
            duration: "1h".into()
        }
    );
}

// ---------------------------------------------------------------------------------------------
// Snapshots: how each card looks, with ordinary data
// ---------------------------------------------------------------------------------------------

fn snap(name: &str, card: impl Into<Value>) {
    let card: Value = card.into();
    check(name, &card);
    // Snapshotted as the JSON text Teams receives (pretty), not through insta's serializer,
    // which shows serde_json's arbitrary-precision numbers as internal structs.
    insta::assert_snapshot!(name, serde_json::to_string_pretty(&card).unwrap());
}

#[test]
fn snapshots() {
    let rec = record("db-prod");
    let ana = user("Ana Silva", Role::Requester);
    let just = "INC-4411: the orders database is refusing connections.";
    snap(
        "welcome",
        render_welcome(&WelcomeCard::new(Some("Ana Silva"))).unwrap(),
    );
    snap(
        "help",
        render_help(&HelpCard::for_user(Some(&ana))).unwrap(),
    );
    snap(
        "help_admin",
        render_help(&HelpCard::for_user(Some(&user("Bo", Role::Admin)))).unwrap(),
    );
    snap(
        "request_form",
        render_request_form(&RequestFormCard::new(
            &[rec.clone(), record("aws-root")],
            8 * 3600,
            2 * 3600,
        ))
        .unwrap(),
    );
    for status in RequestStatus::ALL.iter().copied() {
        let reason = match status {
            RequestStatus::Denied => Some("Not during the change freeze."),
            RequestStatus::Unfulfillable => Some("The vault cannot share PAM records."),
            RequestStatus::Expired => Some("The lease ended."),
            _ => None,
        };
        let r = request(42, status, just, reason);
        snap(
            &format!("status_{}", status.as_str().to_lowercase()),
            render_request_status(&RequestStatusCard::new(&r, &rec, Some("Databases"), BASE))
                .unwrap(),
        );
    }
    let pending = request(42, RequestStatus::Pending, just, None);
    let reasons = ["HIGH sensitivity needs one approver".to_string()];
    snap(
        "approval_approver",
        render_approval(
            &ApprovalCard::new(&pending, &rec, &ana, Some("Databases"), &reasons)
                .decidable(true)
                .refresh_for(&["29:approver-1".into(), "29:approver-2".into()]),
        )
        .unwrap(),
    );
    snap(
        "approval_team_channel",
        render_approval(
            &ApprovalCard::new(&pending, &rec, &ana, Some("Databases"), &reasons)
                .refresh_for(&["29:approver-1".into(), "29:approver-2".into()])
                .in_channel("sre-oncall"),
        )
        .unwrap(),
    );
    snap(
        "approval_observer",
        render_approval(&ApprovalCard::new(
            &pending,
            &rec,
            &ana,
            Some("Databases"),
            &reasons,
        ))
        .unwrap(),
    );
    let mut renewal = request(42, RequestStatus::RenewalPending, just, None);
    renewal.break_glass = true;
    snap(
        "approval_extension_break_glass",
        render_approval(&ApprovalCard::new(&renewal, &rec, &ana, None, &[]).decidable(true))
            .unwrap(),
    );
    let approved = request(42, RequestStatus::Approved, just, Some("ok, go ahead"));
    snap(
        "decided_approved",
        render_decided(&DecidedCard::new(
            &approved,
            &rec,
            "Ana Silva",
            Some("Bo Chen"),
        ))
        .unwrap(),
    );
    let denied = request(42, RequestStatus::Denied, just, Some("Use the replica."));
    snap(
        "decided_denied_stale_click",
        render_decided(
            &DecidedCard::new(&denied, &rec, "Ana Silva", Some("Bo Chen")).already_decided(),
        )
        .unwrap(),
    );
    let mine = [
        request(44, RequestStatus::Issued, just, None),
        request(43, RequestStatus::Pending, just, None),
        request(41, RequestStatus::Denied, just, Some("Use the replica.")),
    ];
    snap(
        "my_requests",
        render_my_requests(&MyRequestsCard::new(mine.iter().map(|r| (r, "db-prod")))).unwrap(),
    );
    snap(
        "pending_approvals",
        render_pending_approvals(&PendingApprovalsCard::new(vec![PendingItem::new(
            &pending,
            &rec,
            "Ana Silva",
        )]))
        .unwrap(),
    );
    snap(
        "record_search",
        render_record_search(&RecordSearchCard::new(
            Some("db"),
            &[rec.clone(), record("db-staging")],
        ))
        .unwrap(),
    );
    let mut triage = request(45, RequestStatus::RequiresTriage, just, None);
    triage.decision_reason = Some("No approver is configured for this record.".into());
    snap(
        "triage_queue",
        render_triage_queue(&TriageQueueCard::new(vec![TriageItem::new(
            &triage,
            &rec,
            "Ana Silva",
        )]))
        .unwrap(),
    );
    snap(
        "admin_health",
        render_admin_health(&AdminHealthCard::new(
            vec![
                HealthCheck::new("Database", true, "sqlite, migrations current"),
                HealthCheck::new("Vault", true, "local vault file"),
            ],
            &[
                job_run("lease-expiry", true, None),
                job_run("vault-sync", false, Some("the vault is busy")),
            ],
        ))
        .unwrap(),
    );
    snap(
        "access_report",
        render_access_report(&AccessReportCard::new(
            "Last 30 days: 2026-10-25 to 2026-11-23 (UTC)",
            None,
            "12 requests, 9 leases, 2 denied, 14 retrievals, 1 break-glass.",
            vec![
                ReportLine::new("db-prod", "7 requests · 5 leases · 9 retrievals"),
                ReportLine::new(
                    "aws-root",
                    "5 requests · 4 leases · 5 retrievals · 1 break-glass",
                ),
            ],
            vec![
                ReportLine::new("Ana Silva", "8 requests · 6 leases · 10 retrievals"),
                ReportLine::new("Ben Okafor", "4 requests · 3 leases · 4 retrievals"),
            ],
            &format!("{BASE}/reports/access/2026-10-25/2026-11-24"),
            10,
        ))
        .unwrap(),
    );
    snap(
        "admin_result",
        render_admin_result(&AdminResultCard::new(
            "Policy replay",
            true,
            "```\nreplayed 2 trace(s): 2 same, 0 different\ntrace 7: same decision (ROUTE)\n```",
        ))
        .unwrap(),
    );
    snap(
        "error",
        render_error(&ErrorCard::new(
            "That didn't work",
            "There is no request #99.",
        ))
        .unwrap(),
    );
    snap(
        "status_hostile",
        render_request_status(&RequestStatusCard::new(
            &request(
                42,
                RequestStatus::Denied,
                &everything_hostile(),
                Some(&everything_hostile()),
            ),
            &record(&everything_hostile()),
            Some(HOSTILE[6]),
            BASE,
        ))
        .unwrap(),
    );
    let row =
        |kind: &str, id: i64, title: &str, detail: &str, decided: Option<&str>| ReviewRowInput {
            kind: kind.into(),
            id,
            title: title.into(),
            detail: detail.into(),
            decided: decided.map(String::from),
            decidable: decided.is_none() && id != 11,
        };
    snap(
        "access_review",
        render_access_review(&AccessReviewCard::new(
            4,
            "db-prod",
            (ts("2026-08-25T09:00:00Z"), ts("2026-11-23T09:00:00Z")),
            true,
            "open: 2 of 4 rows to decide",
            Some("You are an owner of this record: please review who governs it."),
            &[("Ana Silva".into(), 2), ("Erin Contractor".into(), 1)],
            vec![
                row("AUTHORITY", 11, "OWNER · Bo", "since 2026-01-05", None),
                row("AUTHORITY", 12, "APPROVER · Bo", "since 2026-01-05", None),
                row(
                    "AUTHORITY",
                    13,
                    "CUSTODIAN · group sre-oncall",
                    "since 2026-03-01",
                    Some("Removed by Bo on 2026-11-23"),
                ),
                row("BREAK_GLASS", 77, "Break-glass #77 · Ana Silva", just, None),
            ],
        ))
        .unwrap(),
    );
}

#[test]
fn the_schema_check_has_teeth() {
    let good = render_error(&ErrorCard::new("t", "m"))
        .unwrap()
        .into_value();
    assert!(common::adaptive_card_errors(&good).is_empty());
    let mut unknown_property = good.clone();
    unknown_property["body"][0]["colour"] = json!("red");
    assert!(!common::adaptive_card_errors(&unknown_property).is_empty());
    let mut bad_action = good.clone();
    bad_action["actions"] = json!([{"type": "Action.Execute", "verb": 3}]);
    assert!(!common::adaptive_card_errors(&bad_action).is_empty());
    let mut missing_text = good;
    missing_text["body"][0]
        .as_object_mut()
        .unwrap()
        .remove("text");
    assert!(!common::adaptive_card_errors(&missing_text).is_empty());
}

#[test]
fn the_largest_hostile_cards_keep_room_to_spare() {
    let big = ten_kb();
    let largest = every_card(&big, &big)
        .into_iter()
        .map(|(name, card)| (card_size(&card), name))
        .max()
        .unwrap();
    println!("largest card: {} ({} bytes)", largest.1, largest.0);
    assert!(largest.0 < 24 * 1024, "{largest:?}");
}

#[test]
fn typed_markdown_links_do_not_become_links() {
    let r = request(
        42,
        RequestStatus::Pending,
        "[Approve here](https://evil.example)",
        None,
    );
    let card = render_approval(
        &ApprovalCard::new(&r, &record("db"), &user("Ana", Role::Requester), None, &[])
            .decidable(true),
    )
    .unwrap();
    let shown = find_text_starting(&card, "[Approve").unwrap();
    assert!(!shown.contains("]("), "{shown}");
    assert!(open_urls(&card).is_empty());
}

// ---------------------------------------------------------------------------------------------
// #18: release confirmed, words not codes
// ---------------------------------------------------------------------------------------------

/// The titles of a card's (or ActionSet's) own actions, in order.
fn titles(actions: &Value) -> Vec<String> {
    actions
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["title"].as_str().unwrap().to_string())
        .collect()
}

/// The Release ShowCard asks first; its Release releases, its Cancel only refreshes.
fn assert_release_confirms(release: &Value, record: &str) {
    assert_eq!(release["type"], "Action.ShowCard", "{release}");
    let inner = &release["card"];
    assert_eq!(
        inner["body"][0]["text"],
        format!("Release access to {record} now?")
    );
    assert_eq!(titles(&inner["actions"]), ["Release", "Cancel"]);
    assert_eq!(inner["actions"][0]["verb"], "release");
    assert_eq!(inner["actions"][1]["verb"], "refresh");
}

#[test]
fn release_asks_for_confirmation_and_is_never_the_first_button() {
    let rec = record("db-prod");
    for status in [
        RequestStatus::Approved,
        RequestStatus::Issued,
        RequestStatus::RenewalPending,
    ] {
        let r = request(42, status, "why", None);
        let card = render_request_status(&RequestStatusCard::new(&r, &rec, None, BASE)).unwrap();
        let names = titles(&card["actions"]);
        assert_ne!(names[0], "Release", "{status}: {names:?}");
        let release = card["actions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["title"] == "Release")
            .unwrap();
        assert_release_confirms(release, "db-prod");
        // Beside Retrieve and Extend it waits in the overflow menu ("…"): three buttons are cut
        // on a phone (#18.10).
        let in_menu = status != RequestStatus::RenewalPending;
        assert_eq!(release["mode"] == "secondary", in_menu, "{status}");
        // The tap on the confirmation decodes to a release, as before.
        assert_eq!(
            tap(&card, "release", &[]),
            CardAction::Release { request_id: 42 }
        );
    }
    let live = request(1, RequestStatus::Issued, "why", None);
    let card = render_my_requests(&MyRequestsCard::new([(&live, "db-prod")])).unwrap();
    let mut sets = Vec::new();
    walk(&card, &mut |v| {
        if v["type"] == "ActionSet" {
            sets.push(v["actions"].clone());
        }
    });
    assert_eq!(titles(&sets[0]), ["Extend 1h", "Release"]);
    assert_release_confirms(&sets[0][1], "db-prod");
}

/// Every text a person reads on a card: TextBlocks, FactSet titles and values, action titles.
fn card_texts(card: &Value) -> Vec<String> {
    let mut found = Vec::new();
    walk(card, &mut |v| match v["type"].as_str() {
        Some("TextBlock") => found.push(v["text"].as_str().unwrap_or_default().to_string()),
        Some("FactSet") => {
            for f in v["facts"].as_array().unwrap() {
                found.push(f["title"].as_str().unwrap_or_default().to_string());
                found.push(f["value"].as_str().unwrap_or_default().to_string());
            }
        }
        Some(t) if t.starts_with("Action.") => {
            found.push(v["title"].as_str().unwrap_or_default().to_string())
        }
        _ => {}
    });
    found
}

#[test]
fn no_card_shows_a_backtick_or_a_status_code() {
    // Text with backticks, as commands and reports write them, on every card kind.
    for (name, card) in every_card("`db-prod`", "run `passkey migrate` first") {
        for text in card_texts(&card) {
            assert!(!text.contains('`'), "{name}: {text}");
            for status in RequestStatus::ALL {
                assert!(
                    !text
                        .split(|c: char| !c.is_ascii_uppercase() && c != '_')
                        .any(|w| w == status.as_str()),
                    "{name} shows {status}: {text}"
                );
            }
        }
    }
}

#[test]
fn states_read_as_words_from_one_function() {
    let rec = record("db-prod");
    for status in RequestStatus::ALL.iter().copied() {
        let r = request(42, status, "why", None);
        let words = status_words(&r);
        assert_eq!(words, status.in_words());
        let card = render_request_status(&RequestStatusCard::new(&r, &rec, None, BASE)).unwrap();
        assert_eq!(find_text_starting(&card, words).as_deref(), Some(words));
        let list = render_my_requests(&MyRequestsCard::new([(&r, "db-prod")])).unwrap();
        assert!(
            find_text_starting(&list, &format!("{words} · ")).is_some(),
            "{status}: {list}"
        );
    }
    assert_eq!(RequestStatus::Pending.in_words(), "Waiting for approval");
    assert_eq!(RequestStatus::RenewalPending.in_words(), "Renewal pending");
    // An admin's revocation says so, on the card and in the list.
    let revoked = request(
        7,
        RequestStatus::Expired,
        "why",
        Some("revoked by an admin: drill over"),
    );
    assert_eq!(status_words(&revoked), "Revoked by an admin");
    let card = render_request_status(&RequestStatusCard::new(&revoked, &rec, None, BASE)).unwrap();
    assert!(find_text_starting(&card, "Revoked by an admin").is_some());
    let ran_out = request(8, RequestStatus::Expired, "why", Some("the lease ran out"));
    assert_eq!(status_words(&ran_out), "Ended");
}

#[test]
fn record_types_are_readable() {
    assert_eq!(
        record_type_words("databaseCredentials"),
        "Database credentials"
    );
    assert_eq!(record_type_words("login"), "Login");
    assert_eq!(record_type_words("sshKeys"), "SSH keys");
    assert_eq!(record_type_words("awsAccessKeyPair"), "Aws access key pair");
    assert_eq!(record_type_words("custom_type-x"), "Custom type x");
    assert_eq!(record_type_words(""), "Record");
    let mut rec = record("db-prod");
    rec.record_type = "databaseCredentials".into();
    let pending = request(42, RequestStatus::Pending, "why", None);
    let card = render_approval(&ApprovalCard::new(
        &pending,
        &rec,
        &user("Alice", Role::Requester),
        None,
        &[],
    ))
    .unwrap();
    let texts = card_texts(&card).join("\n");
    assert!(texts.contains("Database credentials"), "{texts}");
    assert!(!texts.contains("databaseCredentials"), "{texts}");
}
