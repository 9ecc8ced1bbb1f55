//! The access report (#19): a seeded quarter of activity on both databases gives exact totals and
//! rows; the CLI writes it and refuses bad input; the chat answers admins with a card whose link
//! downloads the CSV from the signed-in page, for admins only, audited.

use crate::common;

use common::chat::Chat;
use common::web::{WebClient, WebServer};
use common::{Db, t0};
use passkey::domain::*;
use passkey::governance::reports::{AccessQuery, AccessReport, AddressClass, ReportError, Reports};
use passkey::store::*;
use serde_json::json;
use std::sync::Arc;
use time::Duration;

on_both_databases!(a_seeded_quarter_gives_exact_totals);

fn ts(text: &str) -> Timestamp {
    Timestamp::parse(text).unwrap()
}

fn person(aad: &str, name: &str, role: Role) -> NewUser {
    let email = format!(
        "{}@x.example",
        name.split(' ').next().unwrap().to_lowercase()
    );
    NewUser {
        aad_object_id: aad.into(),
        tenant_id: Some("tenant-1".into()),
        teams_user_id: None,
        upn: Some(email.clone()),
        email: Some(email),
        display_name: name.into(),
        initial_role: role,
    }
}

struct Quarter {
    rita: User,
    tom: User,
    db_prod: Record,
    aws_root: Record,
    /// Request ids in seeding order.
    ids: Vec<i64>,
}

/// How a seeded request goes.
enum Decision {
    /// An approver's APPROVE row, moving it to APPROVED with a lease.
    Approver,
    /// The break-glass policy approves it at once (review required).
    BreakGlass,
    /// An approver's DENY row.
    DeniedByApprover,
    /// The policy denied it at submission.
    DeniedByPolicy,
    /// Nobody decided yet.
    Undecided,
}

/// How its lease ends: (audit action, actor, status).
type End = Option<(&'static str, &'static str, RequestStatus)>;

struct Seed<'a> {
    at: &'a str,
    requester: &'a User,
    record: &'a Record,
    decision: Decision,
    retrievals: &'a [Option<&'a str>],
    end: End,
}

async fn seed(store: &dyn Store, approver: &User, s: Seed<'_>) -> i64 {
    let at = ts(s.at);
    let break_glass = matches!(s.decision, Decision::BreakGlass);
    let status = match s.decision {
        Decision::DeniedByPolicy => RequestStatus::Denied,
        _ => RequestStatus::Pending,
    };
    let request = store
        .create_request(
            &NewRequest {
                requester_id: s.requester.id,
                record_id: s.record.id,
                status,
                justification: "INC-4411".into(),
                ticket_id: None,
                requested_duration_secs: 7200,
                break_glass,
                required_approvals: 1,
                max_issuances: 3,
                policy_version: None,
                review_required: break_glass,
                otp_required: false,
                decision_reason: (status == RequestStatus::Denied).then(|| "not allowed".into()),
            },
            &[],
            &NewAuditEvent::new(format!("user:{}", s.requester.id), "REQUEST_SUBMITTED", at),
            at,
        )
        .await
        .unwrap();
    let decided = at.plus(Duration::minutes(5));
    let lease = |c: StatusChange| c.lease(decided, decided.plus(Duration::hours(2)), 7200);
    let approve = StatusChange::new(
        request.id,
        RequestStatus::Pending,
        RequestStatus::Approved,
        decided,
    );
    match s.decision {
        Decision::Approver | Decision::DeniedByApprover => {
            let deny = matches!(s.decision, Decision::DeniedByApprover);
            let change = if deny {
                StatusChange::new(
                    request.id,
                    RequestStatus::Pending,
                    RequestStatus::Denied,
                    decided,
                )
                .decided_by(approver.id, "no")
            } else {
                lease(approve.decided_by(approver.id, "ok"))
            };
            store
                .record_approval(
                    &NewApproval {
                        request_id: request.id,
                        approver_id: approver.id,
                        stage: 1,
                        decision: if deny {
                            ApprovalDecision::Deny
                        } else {
                            ApprovalDecision::Approve
                        },
                        comment: None,
                        at: decided,
                    },
                    RequestStatus::Pending,
                    0,
                    Some(&change),
                    &[],
                    &NewAuditEvent::new(
                        format!("user:{}", approver.id),
                        if deny {
                            "REQUEST_DENIED"
                        } else {
                            "REQUEST_APPROVED"
                        },
                        decided,
                    ),
                )
                .await
                .unwrap();
        }
        Decision::BreakGlass => {
            store
                .transition_request(
                    &lease(approve.reason("break-glass")),
                    &[],
                    &NewAuditEvent::new("system:policy", "BREAK_GLASS_APPROVED", decided),
                )
                .await
                .unwrap();
        }
        Decision::DeniedByPolicy | Decision::Undecided => {}
    }
    for (n, ip) in s.retrievals.iter().enumerate() {
        let when = decided.plus(Duration::minutes(10 + n as i64));
        let token = passkey::canonical::sha256_hex(format!("token-{}-{n}", request.id));
        store
            .set_issuance_token(
                request.id,
                &token,
                when.plus(Duration::minutes(5)),
                when,
                &NewAuditEvent::new("test", "ISSUANCE_TOKEN_MINTED", when),
            )
            .await
            .unwrap();
        store
            .consume_issuance_token(
                request.id,
                &token,
                when,
                when.minus(passkey::governance::lifecycle::RETRIEVAL_DEAD_AFTER),
            )
            .await
            .unwrap()
            .expect("the token is current");
        store
            .record_issuance(
                &NewIssuance {
                    request_id: request.id,
                    share_link_hash: passkey::canonical::sha256_hex(format!(
                        "url-{}-{n}",
                        request.id
                    )),
                    vault_share_id: format!("share-{}-{n}", request.id),
                    client_ip: ip.map(str::to_string),
                    user_agent: None,
                    issued_at: when,
                    expires_at: decided.plus(Duration::hours(2)),
                },
                when,
                &[],
                &NewAuditEvent::new(
                    format!("user:{}", s.requester.id),
                    "ISSUANCE_SUCCEEDED",
                    when,
                ),
            )
            .await
            .unwrap();
    }
    if let Some((action, actor, to)) = s.end {
        let now = store.request_by_id(request.id).await.unwrap().unwrap();
        let ended = decided.plus(Duration::hours(1));
        store
            .transition_request(
                &StatusChange::new(request.id, now.status, to, ended),
                &[],
                &NewAuditEvent::new(actor, action, ended),
            )
            .await
            .unwrap();
    }
    request.id
}

async fn quarter(store: &dyn Store) -> Quarter {
    let user = |aad: &'static str, name: &'static str, role| async move {
        store
            .upsert_user(&person(aad, name, role), t0())
            .await
            .unwrap()
    };
    let rita = user("aad-rita", "Rita Requester", Role::Requester).await;
    let sam = user("aad-sam", "Sam Sysadmin", Role::Requester).await;
    let tom = user("aad-tom", "Tom Tester", Role::Requester).await;
    let abe = user("aad-abe", "Abe Approver", Role::Approver).await;
    let ada = user("aad-ada", "Ada Admin", Role::Admin).await;
    let databases = store
        .upsert_folder("FOLDER-DB", "Databases", t0())
        .await
        .unwrap();
    let cloud = store
        .upsert_folder("FOLDER-CLOUD", "Cloud", t0())
        .await
        .unwrap();
    let record = |uid: &'static str, title: &'static str, folder: Option<i64>, sensitivity| async move {
        store
            .upsert_record(
                &NewRecord {
                    vault_uid: uid.into(),
                    title: title.into(),
                    record_type: "login".into(),
                    folder_id: folder,
                    revision: 1,
                    vault_owner: None,
                    owner_user_id: None,
                    sensitivity,
                    discovery_source: DiscoverySource::Manual,
                },
                t0(),
            )
            .await
            .unwrap()
    };
    let db_prod = record("REC-DB", "db-prod", Some(databases.id), Sensitivity::High).await;
    let aws_root = record("REC-AWS", "aws-root", Some(cloud.id), Sensitivity::Critical).await;
    let wiki = record("REC-WIKI", "wiki-admin", None, Sensitivity::Low).await;
    let released: End = Some(("LEASE_RELEASED", "test", RequestStatus::Released));
    let expired: End = Some((
        "LEASE_EXPIRED",
        "system:lease-expiry",
        RequestStatus::Expired,
    ));
    let revoked_by_ada = format!("user:{}", ada.id).leak() as &'static str;
    let revoked: End = Some(("LEASE_REVOKED", revoked_by_ada, RequestStatus::Expired));
    let seeds = [
        // The second before the quarter: not in it.
        Seed {
            at: "2026-09-30T23:59:59Z",
            requester: &rita,
            record: &db_prod,
            decision: Decision::Approver,
            retrievals: &[Some("10.0.0.1")],
            end: released,
        },
        // The quarter's first instant: in it.
        Seed {
            at: "2026-10-01T00:00:00Z",
            requester: &rita,
            record: &db_prod,
            decision: Decision::Approver,
            retrievals: &[Some("10.0.0.5"), Some("203.0.113.9")],
            end: released,
        },
        Seed {
            at: "2026-10-15T08:00:00Z",
            requester: &sam,
            record: &db_prod,
            decision: Decision::DeniedByApprover,
            retrievals: &[],
            end: None,
        },
        Seed {
            at: "2026-11-02T03:00:00Z",
            requester: &sam,
            record: &aws_root,
            decision: Decision::BreakGlass,
            retrievals: &[Some("127.0.0.1")],
            end: expired,
        },
        Seed {
            at: "2026-11-20T12:00:00Z",
            requester: &tom,
            record: &aws_root,
            decision: Decision::BreakGlass,
            retrievals: &[None, Some("2001:db8::1"), Some("192.168.1.4")],
            end: revoked,
        },
        Seed {
            at: "2026-12-01T09:00:00Z",
            requester: &rita,
            record: &wiki,
            decision: Decision::DeniedByPolicy,
            retrievals: &[],
            end: None,
        },
        // The quarter's last microsecond: in it.
        Seed {
            at: "2026-12-31T23:59:59.999999Z",
            requester: &tom,
            record: &db_prod,
            decision: Decision::Undecided,
            retrievals: &[],
            end: None,
        },
        // The next quarter's first instant: not in it (windows are half-open).
        Seed {
            at: "2027-01-01T00:00:00Z",
            requester: &rita,
            record: &db_prod,
            decision: Decision::Approver,
            retrievals: &[Some("10.0.0.7")],
            end: None,
        },
    ];
    let mut ids = Vec::new();
    for s in seeds {
        ids.push(seed(store, &abe, s).await);
    }
    // The break-glass use of 2 November was reviewed by the access review campaign.
    store
        .append_audit(
            &NewAuditEvent::new("user:1", "BREAK_GLASS_REVIEWED", ts("2026-12-02T10:00:00Z"))
                .request(ids[3])
                .detail(json!({"outcome": "accepted", "reviewer": "Olga Owner"})),
        )
        .await
        .unwrap();
    Quarter {
        rita,
        tom,
        db_prod,
        aws_root,
        ids,
    }
}

fn counts(c: &passkey::governance::reports::Counts) -> [u64; 5] {
    [c.requests, c.leases, c.denied, c.retrievals, c.break_glass]
}

async fn report(
    store: Arc<dyn Store>,
    record: Option<&str>,
    user: Option<&str>,
) -> Result<AccessReport, ReportError> {
    Reports::new(store, Arc::new(ManualClock::new(t0())))
        .access(&AccessQuery {
            from: ts("2026-10-01T00:00:00Z"),
            to: ts("2027-01-01T00:00:00Z"),
            record: record.map(str::to_string),
            user: user.map(str::to_string),
        })
        .await
}

async fn a_seeded_quarter_gives_exact_totals(db: Db) {
    let q = quarter(db.store.as_ref()).await;
    let r = report(db.store.clone(), None, None).await.unwrap();
    // [requests, leases, denied, retrievals, break-glass]
    assert_eq!(counts(&r.totals), [6, 3, 2, 6, 2], "{}", db.engine);
    assert_eq!(
        r.rows.iter().map(|row| row.request_id).collect::<Vec<_>>(),
        q.ids[1..7].to_vec(),
        "the quarter's requests, oldest first, and none outside it"
    );
    let by_record: Vec<(&str, [u64; 5])> = r
        .by_record
        .iter()
        .map(|t| (t.record.as_str(), counts(&t.counts)))
        .collect();
    assert_eq!(
        by_record,
        [
            ("db-prod", [3, 1, 1, 2, 0]),
            ("aws-root", [2, 2, 0, 4, 2]),
            ("wiki-admin", [1, 0, 1, 0, 0]),
        ]
    );
    let by_person: Vec<(&str, [u64; 5])> = r
        .by_person
        .iter()
        .map(|t| (t.person.as_str(), counts(&t.counts)))
        .collect();
    assert_eq!(
        by_person,
        [
            ("Tom Tester", [2, 1, 0, 3, 1]),
            ("Rita Requester", [2, 1, 1, 2, 0]),
            ("Sam Sysadmin", [2, 1, 1, 1, 1]),
        ]
    );

    let row = |id: i64| r.rows.iter().find(|row| row.request_id == id).unwrap();
    let first = row(q.ids[1]);
    assert_eq!(
        (first.requester.as_str(), first.record.as_str()),
        ("Rita Requester", "db-prod")
    );
    assert_eq!(
        (first.folder.as_deref(), first.sensitivity),
        (Some("Databases"), Sensitivity::High)
    );
    assert_eq!(first.decisions.len(), 1);
    assert_eq!(
        (first.decisions[0].by.as_str(), first.decisions[0].decision),
        ("Abe Approver", "APPROVE")
    );
    assert_eq!(first.decisions[0].at, ts("2026-10-01T00:05:00Z"));
    assert_eq!(first.lease_start, Some(ts("2026-10-01T00:05:00Z")));
    assert_eq!(first.lease_end, Some(ts("2026-10-01T01:05:00Z")));
    assert_eq!(first.ending.as_ref().unwrap().kind, "released");
    assert_eq!(
        first
            .retrievals
            .iter()
            .map(|x| (x.at, x.address))
            .collect::<Vec<_>>(),
        [
            (ts("2026-10-01T00:15:00Z"), AddressClass::PrivateNetwork),
            (ts("2026-10-01T00:16:00Z"), AddressClass::Internet),
        ]
    );
    assert_eq!(row(q.ids[2]).decisions[0].decision, "DENY");
    assert_eq!(row(q.ids[2]).lease_start, None);
    let glass = row(q.ids[3]);
    assert_eq!(
        (glass.decisions[0].by.as_str(), glass.decisions[0].decision),
        ("policy", "BREAK_GLASS")
    );
    assert_eq!(glass.ending.as_ref().unwrap().kind, "expired");
    assert_eq!(
        glass.review.as_deref(),
        Some("accepted by Olga Owner on 2026-12-02")
    );
    let revoked = row(q.ids[4]);
    assert_eq!(revoked.ending.as_ref().unwrap().kind, "revoked");
    assert_eq!(
        revoked.ending.as_ref().unwrap().by.as_deref(),
        Some("Ada Admin")
    );
    assert_eq!(revoked.review.as_deref(), Some("awaiting review"));
    assert_eq!(
        revoked
            .retrievals
            .iter()
            .map(|x| x.address)
            .collect::<Vec<_>>(),
        [
            AddressClass::Unknown,
            AddressClass::Internet,
            AddressClass::PrivateNetwork
        ]
    );
    assert_eq!(row(q.ids[5]).decisions[0].by, "policy");
    assert_eq!(row(q.ids[6]).decisions, vec![]);
    assert_eq!(row(q.ids[6]).ending, None);
    let csv = r.to_csv();
    assert_eq!(
        csv.split_terminator("\r\n").count(),
        7,
        "a header and six rows"
    );
    for raw in ["10.0.0.5", "203.0.113.9", "2001:db8::1", "192.168.1.4"] {
        assert!(!csv.contains(raw) && !r.to_json().contains(raw) && !r.to_markdown().contains(raw));
    }

    // Filters: one record, one requester.
    let aws = report(db.store.clone(), Some("aws-root"), None)
        .await
        .unwrap();
    assert_eq!(counts(&aws.totals), [2, 2, 0, 4, 2]);
    assert_eq!(aws.record.as_deref(), Some(q.aws_root.title.as_str()));
    let rita = report(
        db.store.clone(),
        None,
        Some(q.rita.email.as_deref().unwrap()),
    )
    .await
    .unwrap();
    assert_eq!(counts(&rita.totals), [2, 1, 1, 2, 0]);
    let both = report(
        db.store.clone(),
        Some(&q.db_prod.vault_uid),
        Some(q.tom.email.as_deref().unwrap()),
    )
    .await
    .unwrap();
    assert_eq!(
        both.rows.iter().map(|x| x.request_id).collect::<Vec<_>>(),
        [q.ids[6]]
    );

    // Bad input is refused and names what was wrong.
    let unknown = report(db.store.clone(), Some("no-such-record"), None)
        .await
        .unwrap_err();
    assert!(
        unknown.is_refusal() && unknown.to_string().contains("no-such-record"),
        "{unknown}"
    );
    let nobody = report(db.store.clone(), None, Some("nobody@x.example"))
        .await
        .unwrap_err();
    assert!(
        nobody.is_refusal() && nobody.to_string().contains("nobody@x.example"),
        "{nobody}"
    );
    let backwards = Reports::new(db.store.clone(), Arc::new(ManualClock::new(t0())))
        .access(&AccessQuery {
            from: ts("2027-01-01T00:00:00Z"),
            to: ts("2026-10-01T00:00:00Z"),
            record: None,
            user: None,
        })
        .await
        .unwrap_err();
    assert!(
        matches!(backwards, ReportError::EmptyWindow { .. }),
        "{backwards}"
    );
}

// ---- the CLI ----------------------------------------------------------------------------------

fn passkey(dir: &std::path::Path, args: &[&str]) -> std::process::Output {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_passkey"));
    command.current_dir(dir).args(args);
    for (name, _) in std::env::vars() {
        if name.starts_with("PASSKEY_") || name == "DATABASE_URL" || name == "RUST_LOG" {
            command.env_remove(name);
        }
    }
    command
        .env("PASSKEY_DATA_DIR", dir.join("data"))
        .env("PASSKEY_LOG__FILTER", "warn");
    command.output().expect("run passkey")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[tokio::test]
async fn the_cli_writes_the_report_and_refuses_bad_input_with_exit_1() {
    let dir = tempfile::tempdir().unwrap();
    assert!(passkey(dir.path(), &["migrate"]).status.success());
    let store = SqliteStore::open(&dir.path().join("data/passkey.db"), 1)
        .await
        .unwrap();
    quarter(&store).await;
    drop(store);
    let window = [
        "report",
        "access",
        "--from",
        "2026-10-01",
        "--to",
        "2027-01-01",
    ];

    let out = passkey(dir.path(), &window);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let csv = text(&out.stdout);
    assert!(
        csv.starts_with("request_id,requested_at,requester,"),
        "{csv}"
    );
    assert_eq!(csv.split_terminator("\r\n").count(), 7, "{csv}");

    let out = passkey(
        dir.path(),
        &[&window[..], &["--format", "json", "--record", "aws-root"]].concat(),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        json["totals"],
        json!({"requests": 2, "leases": 2, "denied": 0, "retrievals": 4, "break_glass": 2})
    );
    assert_eq!(json["rows"][0]["retrievals"][0]["address"], "loopback");

    let file = dir.path().join("quarter.md");
    let out = passkey(
        dir.path(),
        &[
            &window[..],
            &["--format", "md", "--output", file.to_str().unwrap()],
        ]
        .concat(),
    );
    assert!(
        out.status.success() && out.stdout.is_empty(),
        "{}",
        text(&out.stderr)
    );
    let md = std::fs::read_to_string(&file).unwrap();
    assert!(
        md.contains("| db-prod | Databases | 3 | 1 | 1 | 2 | 0 |"),
        "{md}"
    );

    for (args, says) in [
        (
            vec!["--from", "2026-13-01", "--to", "2027-01-01"],
            "`2026-13-01` is not a date",
        ),
        (
            vec!["--from", "2026-10-01", "--to", "next week"],
            "`next week` is not a date",
        ),
        (
            vec!["--from", "2027-01-01", "--to", "2026-10-01"],
            "The window is empty",
        ),
        (
            vec![
                "--from",
                "2026-10-01",
                "--to",
                "2027-01-01",
                "--format",
                "xlsx",
            ],
            "Unknown format `xlsx`",
        ),
        (
            vec![
                "--from",
                "2026-10-01",
                "--to",
                "2027-01-01",
                "--record",
                "nope",
            ],
            "No record matches `nope`",
        ),
        (
            vec![
                "--from",
                "2026-10-01",
                "--to",
                "2027-01-01",
                "--user",
                "nobody@x.example",
            ],
            "No Passkey user `nobody@x.example`",
        ),
    ] {
        let out = passkey(dir.path(), &[&["report", "access"][..], &args].concat());
        assert_eq!(
            out.status.code(),
            Some(1),
            "{args:?}: {}",
            text(&out.stderr)
        );
        assert!(
            text(&out.stderr).contains(says),
            "{args:?}: {}",
            text(&out.stderr)
        );
        assert!(out.stdout.is_empty());
    }
}

// ---- chat and the download page ----------------------------------------------------------------

const CAROL: (&str, &str) = ("ca201000-0000-4000-8000-000000000003", "Carol SecOps");
const ALICE: (&str, &str) = ("a11ce000-0000-4000-8000-000000000001", "Alice Requester");

#[tokio::test]
async fn admins_get_the_report_card_in_chat_and_others_are_refused() {
    let chat = Chat::start(None).await;
    chat.say(ALICE, "request db-prod 1h because INC-4411").await;

    let reply = chat.say(CAROL, "admin report 30d").await;
    assert!(reply.contains("Access report"), "{reply}");
    assert!(
        reply.contains("Last 30 days: 2026-10-25 to 2026-11-23 (UTC)"),
        "{reply}"
    );
    assert!(reply.contains("1 requests, 0 leases"), "{reply}");
    let (_, card) = chat.every_card().pop().unwrap();
    let errors = common::adaptive_card_errors(&card);
    assert!(errors.is_empty(), "{errors:?}");
    let open = &card["actions"][0];
    assert_eq!(open["type"], "Action.OpenUrl");
    let url = open["url"].as_str().unwrap();
    assert!(
        url.starts_with("http") && url.ends_with("/reports/access/2026-10-25/2026-11-24"),
        "the card's window, as whole days, and nothing else: {url}"
    );

    let one = chat.say(CAROL, "admin report db-prod").await;
    assert!(
        one.contains("Last 7 days") && one.contains("db-prod"),
        "{one}"
    );
    let (_, card) = chat.every_card().pop().unwrap();
    let db_prod = chat
        .store
        .records_by_title_prefix("db-prod", 1)
        .await
        .unwrap()
        .remove(0);
    assert!(
        card["actions"][0]["url"]
            .as_str()
            .unwrap()
            .ends_with(&format!("/2026-11-17/2026-11-24/{}", db_prod.id)),
        "{card}"
    );

    let unknown = chat.say(CAROL, "admin report 7d no-such-thing").await;
    assert!(
        unknown.contains("No record matches no-such-thing"),
        "{unknown}"
    );

    let before = chat.audit_count().await;
    let refused = chat.say(ALICE, "admin report").await;
    assert_eq!(refused, "Admin commands are for Passkey admins.");
    let events = chat.store.audit_events_after(0, 10_000).await.unwrap();
    assert_eq!(events.len(), before + 1);
    assert_eq!(
        events.last().unwrap().action,
        "ACCESS_DENIED_INSUFFICIENT_PERMISSION"
    );
    assert_eq!(events.last().unwrap().detail.0["command"], "admin report");
}

#[tokio::test]
async fn the_csv_downloads_for_signed_in_admins_only_and_each_download_is_audited() {
    let db = common::fresh_sqlite().await;
    let dir = tempfile::tempdir().unwrap();
    let server = WebServer::start(db.store.clone(), dir.path(), &[]).await;
    let id = server
        .approved_request("alice@contoso.example", "db-prod", "bob@contoso.example")
        .await;
    let path = "/reports/access/2026-11-01/2026-12-01";

    // Not signed in: sent to sign in, and back here after.
    let anonymous = WebClient::new(&server.base);
    let r = anonymous.get(path).await;
    assert_eq!(r.status(), 303);
    assert_eq!(
        r.headers()["location"],
        "/signin?next=/reports/access/2026-11-01/2026-12-01"
    );

    // A requester: a clear 403 page, the attempt recorded, no CSV.
    let alice = WebClient::new(&server.base);
    alice.sign_in_dev("Alice Requester", path).await;
    let r = alice.get(path).await;
    assert_eq!(r.status(), 403);
    assert!(
        r.text()
            .await
            .unwrap()
            .contains("Access reports are for Passkey admins.")
    );
    let last = server.all_audit_actions().await.pop().unwrap();
    assert_eq!(last, "ACCESS_DENIED_INSUFFICIENT_PERMISSION");

    // An admin: the CSV, as an attachment never cached, and the download recorded.
    let carol = WebClient::new(&server.base);
    carol.sign_in_dev("Carol SecOps", path).await;
    let r = carol.get(path).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "text/csv; charset=utf-8");
    assert_eq!(
        r.headers()["content-disposition"],
        "attachment; filename=\"passkey-access-2026-11-01-2026-12-01.csv\""
    );
    assert_eq!(r.headers()["cache-control"], "no-store");
    let csv = r.text().await.unwrap();
    let lines: Vec<&str> = csv.split_terminator("\r\n").collect();
    assert_eq!(lines.len(), 2, "{csv}");
    assert!(lines[1].starts_with(&format!("{id},")), "{csv}");
    assert!(lines[1].contains("APPROVE Bob DBA Lead"), "{csv}");
    let events = server.store.audit_events_after(0, 10_000).await.unwrap();
    let download = events.last().unwrap();
    let carol_id = server.user("carol@contoso.example").await.id;
    assert_eq!(download.action, "REPORT_DOWNLOADED");
    assert_eq!(download.actor, format!("user:{carol_id}"));
    assert_eq!(
        download.detail.0,
        json!({"report": "access", "format": "csv", "from": "2026-11-01T00:00:00.000000Z",
               "to": "2026-12-01T00:00:00.000000Z", "record_id": null, "rows": 1})
    );

    // One record's report; a record that does not exist, and a window that is not one.
    let record = server
        .store
        .record_by_id(
            server
                .store
                .request_by_id(id)
                .await
                .unwrap()
                .unwrap()
                .record_id,
        )
        .await
        .unwrap()
        .unwrap();
    let r = carol.get(&format!("{path}/{}", record.id)).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap().split_terminator("\r\n").count(), 2);
    let before = server.all_audit_actions().await.len();
    assert_eq!(carol.get(&format!("{path}/999999")).await.status(), 404);
    let r = carol.get("/reports/access/2026-12-01/2026-11-01").await;
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("The window is empty"));
    assert_eq!(
        carol.get("/reports/access/yesterday/today").await.status(),
        400
    );
    assert_eq!(
        server.all_audit_actions().await.len(),
        before,
        "refusals download nothing"
    );
    server.stop().await;
}
