//! Turns are effectively-once (#15.2): a turn that fails at any step — the claim on its activity,
//! remembering the sender, the use case, the reply, the "done" mark — or whose process dies, is
//! redone when Teams redelivers the activity, and its effect happens exactly once.

use crate::common;

use common::channel::{FakeConnector, TENANT};
use common::{Db, TestServer, t0, test_settings};
use passkey::domain::RequestStatus;
use serde_json::{Value, json};

const ALICE: (&str, &str) = ("a11ce000-0000-4000-8000-000000000001", "Alice Requester");
const BOB: (&str, &str) = ("b0b00000-0000-4000-8000-000000000002", "Bob DBA Lead");

/// The real app in dev channel mode over the demo data, on the database under test.
struct Bot {
    server: TestServer,
    connector: FakeConnector,
    db: Db,
    client: reqwest::Client,
    _dir: tempfile::TempDir,
}

impl Bot {
    async fn start(db: Db, extra: &[(&str, &str)]) -> Bot {
        let connector = FakeConnector::start().await;
        passkey::demo::load_if_empty(db.store.as_ref(), t0())
            .await
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let server = TestServer::start(test_settings(dir.path(), extra), db.store.clone()).await;
        Bot {
            server,
            connector,
            db,
            client: reqwest::Client::new(),
            _dir: dir,
        }
    }

    /// A message typed by `who` in their 1:1 chat, with activity id `id`.
    fn message(&self, (aad, name): (&str, &str), id: &str, text: &str) -> Value {
        json!({
            "type": "message",
            "id": id,
            "timestamp": "2026-11-23T09:00:00.000Z",
            "serviceUrl": self.connector.service_url,
            "channelId": "msteams",
            "from": {"id": format!("29:{name}"), "name": name, "aadObjectId": aad},
            "conversation": {"id": format!("a:{aad}-personal"), "conversationType": "personal", "tenantId": TENANT},
            "recipient": {"id": "28:passkey", "name": "Passkey"},
            "text": text,
            "channelData": {"tenant": {"id": TENANT}},
        })
    }

    /// Delivers `activity` as Teams does (again, for a redelivery); the HTTP status.
    async fn deliver(&self, activity: &Value) -> u16 {
        self.client
            .post(self.server.url("/api/messages"))
            .json(activity)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    }

    /// Alice asks for db-analytics-readonly: request #1, waiting for Bob.
    async fn request_one(&self) {
        let ask = self.message(
            ALICE,
            "alice-asks",
            "request db-analytics-readonly 2h because INC-4411 nightly report",
        );
        assert_eq!(self.deliver(&ask).await, 200);
        let request = self.db.store.request_by_id(1).await.unwrap().unwrap();
        assert_eq!(request.status, RequestStatus::Pending);
    }

    /// The bot's replies to activity `id` the Connector took (answered, not failed).
    fn replies_to(&self, id: &str, failed: usize) -> Vec<String> {
        let suffix = format!("/activities/{id}");
        let calls: Vec<_> = self
            .connector
            .calls()
            .into_iter()
            .filter(|c| c.path.ends_with(&suffix))
            .collect();
        calls
            .iter()
            .skip(failed)
            .map(|c| common::message_text(&c.body))
            .collect()
    }

    async fn audit_count(&self, action: &str) -> usize {
        self.db
            .store
            .audit_events_after(0, 10_000)
            .await
            .unwrap()
            .iter()
            .filter(|e| e.action == action)
            .count()
    }

    /// Bob's approval happened once: one approval row, one audit event, the request approved.
    async fn approved_exactly_once(&self, what: &str) {
        let approvals = self.db.store.approvals_for_request(1).await.unwrap();
        assert_eq!(approvals.len(), 1, "{what}: one approval row");
        assert_eq!(
            self.db
                .store
                .request_by_id(1)
                .await
                .unwrap()
                .unwrap()
                .status,
            RequestStatus::Approved,
            "{what}: the request is approved"
        );
        assert_eq!(
            self.audit_count("REQUEST_APPROVED").await,
            1,
            "{what}: one REQUEST_APPROVED audit event"
        );
    }
}

/// A step of a turn, and how a test makes the database (or the Connector) fail it.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Step {
    /// Recording the activity (the claim).
    Claim,
    /// Remembering the sender.
    Sender,
    /// The use case's write (the approval row).
    UseCase,
    /// The reply through the Connector (every retry of it).
    Reply,
    /// Marking the activity done.
    Done,
}

impl Step {
    /// (table, trigger events) a failing trigger goes on.
    fn target(self) -> Option<(&'static str, &'static [&'static str])> {
        match self {
            Step::Claim => Some(("processed_activities", &["INSERT"])),
            Step::Sender => Some(("users", &["INSERT", "UPDATE"])),
            Step::UseCase => Some(("request_approvals", &["INSERT"])),
            Step::Done => Some(("processed_activities", &["UPDATE"])),
            Step::Reply => None,
        }
    }
}

/// Makes every write of `step` fail (with SQLSTATE `code` on Postgres) until [`heal`].
async fn inject(db: &Db, step: Step, code: &str) {
    let Some((table, events)) = step.target() else {
        return;
    };
    for event in events {
        let name = format!("injected_fault_{}", event.to_lowercase());
        if db.engine == "sqlite" {
            db.raw
                .exec(&format!(
                    "CREATE TRIGGER {name} BEFORE {event} ON {table} BEGIN SELECT RAISE(ABORT, 'injected fault'); END"
                ))
                .await
                .unwrap();
        } else {
            db.raw
                .exec(&format!(
                    "CREATE OR REPLACE FUNCTION injected_fault() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'injected fault' USING ERRCODE = '{code}'; END $$"
                ))
                .await
                .unwrap();
            db.raw
                .exec(&format!(
                    "CREATE TRIGGER {name} BEFORE {event} ON {table} FOR EACH ROW EXECUTE FUNCTION injected_fault()"
                ))
                .await
                .unwrap();
        }
    }
}

async fn heal(db: &Db, step: Step) {
    let Some((table, events)) = step.target() else {
        return;
    };
    for event in events {
        let name = format!("injected_fault_{}", event.to_lowercase());
        let sql = if db.engine == "sqlite" {
            format!("DROP TRIGGER {name}")
        } else {
            format!("DROP TRIGGER {name} ON {table}")
        };
        db.raw.exec(&sql).await.unwrap();
    }
}

/// Bob's `approve 1` fails at `step` once; Teams redelivers it, and delivers it once more for
/// good measure. Bob's approval happens once and he reads one answer.
async fn approval_failing_at(db: Db, step: Step) {
    let bot = Bot::start(db, &[]).await;
    bot.request_one().await;
    let approve = bot.message(BOB, "bob-approves", "approve 1 ok for the report");

    inject(&bot.db, step, "XX000").await;
    // Every attempt of the reply fails (the Connector client tries four times).
    let failed_replies = if step == Step::Reply { 4 } else { 0 };
    bot.connector
        .fail_path("/activities/bob-approves", failed_replies);
    let first = bot.deliver(&approve).await;
    if step == Step::Done {
        // The work and the reply are done; only the bookkeeping failed (the done mark is written
        // after the answer, at the latest with the next claim: this redelivery's). Teams does
        // not redeliver a turn answered 200; if it did, inside the claim it is told to retry,
        // and after it (below) the turn runs again and finds the approval made.
        assert_eq!(first, 200, "{step:?}");
        assert_eq!(bot.deliver(&approve).await, 503, "{step:?}: still claimed");
        heal(&bot.db, step).await;
        assert_eq!(
            bot.deliver(&approve).await,
            503,
            "{step:?}: the failed mark is not written later behind the claim's back"
        );
        bot.server.clock.advance(time::Duration::seconds(31));
    } else {
        heal(&bot.db, step).await;
        assert!(
            (500..600).contains(&first),
            "a turn that failed at {step:?} asks Teams to redeliver: {first}"
        );
    }

    for _ in 0..2 {
        assert_eq!(bot.deliver(&approve).await, 200, "{step:?}: redelivery");
    }
    bot.approved_exactly_once(&format!("{step:?}")).await;
    let replies = bot.replies_to("bob-approves", failed_replies);
    assert!(
        !replies.is_empty(),
        "{step:?}: Bob is answered after the redelivery"
    );
    if step != Step::Done {
        assert_eq!(replies.len(), 1, "{step:?}: one answer: {replies:?}");
    } else {
        // At-least-once replies: the redelivery after the claim lapsed is answered again, with
        // the request as it stands.
        assert_eq!(replies.len(), 2, "{step:?}: {replies:?}");
        assert!(
            replies[1].contains("already approved by Bob DBA Lead"),
            "{replies:?}"
        );
    }
    assert!(
        replies[0].contains("approved"),
        "{step:?}: the answer says the request is approved: {replies:?}"
    );
}

async fn a_turn_failing_when_its_activity_is_recorded_is_redone_once(db: Db) {
    approval_failing_at(db, Step::Claim).await;
}

async fn a_turn_failing_when_the_sender_is_remembered_is_redone_once(db: Db) {
    approval_failing_at(db, Step::Sender).await;
}

async fn a_turn_failing_in_its_use_case_is_redone_once(db: Db) {
    approval_failing_at(db, Step::UseCase).await;
}

async fn a_turn_whose_reply_fails_is_answered_on_redelivery_without_a_second_approval(db: Db) {
    approval_failing_at(db, Step::Reply).await;
}

async fn a_turn_failing_when_marked_done_keeps_its_one_approval(db: Db) {
    approval_failing_at(db, Step::Done).await;
}

/// Alice extends her approved lease; the reply fails, so Teams redelivers `extend`. The re-run
/// must not extend the lease a second time.
async fn an_extension_whose_reply_failed_is_granted_once_on_redelivery(db: Db) {
    let bot = Bot::start(db, &[]).await;
    // A low-sensitivity record: the policy approves the request and its extensions itself.
    let ask = bot.message(
        ALICE,
        "alice-asks",
        "request db-staging 1h because INC-4411 check",
    );
    assert_eq!(bot.deliver(&ask).await, 200);
    let before = bot.db.store.request_by_id(1).await.unwrap().unwrap();
    assert_eq!(before.status, RequestStatus::Approved);

    let extend = bot.message(ALICE, "alice-extends", "extend 1 30m");
    bot.connector.fail_path("/activities/alice-extends", 4);
    let first = bot.deliver(&extend).await;
    assert_eq!(
        first, 503,
        "the answer was not delivered: Teams is asked to retry"
    );
    let once = bot.db.store.request_by_id(1).await.unwrap().unwrap();
    assert_eq!(
        once.lease_expires_at,
        before
            .lease_expires_at
            .map(|t| t.plus(time::Duration::minutes(30))),
        "the first attempt extended the lease"
    );
    for _ in 0..2 {
        assert_eq!(bot.deliver(&extend).await, 200);
    }
    let after = bot.db.store.request_by_id(1).await.unwrap().unwrap();
    assert_eq!(
        after.lease_expires_at, once.lease_expires_at,
        "the redelivery did not extend it again"
    );
    assert_eq!(bot.audit_count("LEASE_EXTENDED").await, 1);
    let replies = bot.replies_to("alice-extends", 4);
    assert_eq!(replies.len(), 1, "{replies:?}");
    assert!(replies[0].contains("#1"), "{replies:?}");
}

on_both_databases!(
    an_extension_whose_reply_failed_is_granted_once_on_redelivery,
    a_turn_failing_when_its_activity_is_recorded_is_redone_once,
    a_turn_failing_when_the_sender_is_remembered_is_redone_once,
    a_turn_failing_in_its_use_case_is_redone_once,
    a_turn_whose_reply_fails_is_answered_on_redelivery_without_a_second_approval,
    a_turn_failing_when_marked_done_keeps_its_one_approval,
);

/// Postgres going away mid-turn (the administrator terminated the backend, SQLSTATE 57P01): Teams
/// is told to retry (503, not 500), and the retry is not dropped.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_turn_whose_database_goes_away_answers_503_and_its_retry_runs() {
    let Some(pg) = common::fresh_pg().await else {
        return;
    };
    let db = Db {
        store: pg.store.clone(),
        raw: pg.store.clone(),
        engine: "postgres",
    };
    let bot = Bot::start(db, &[]).await;
    bot.request_one().await;
    let approve = bot.message(BOB, "bob-approves", "approve 1");
    inject(&bot.db, Step::UseCase, "57P01").await;
    assert_eq!(bot.deliver(&approve).await, 503);
    heal(&bot.db, Step::UseCase).await;
    assert_eq!(bot.deliver(&approve).await, 200);
    bot.approved_exactly_once("after the database came back")
        .await;
    assert_eq!(bot.replies_to("bob-approves", 0).len(), 1);
}

/// SQLite whose pool is gone: 503 too.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_turn_without_its_sqlite_database_answers_503() {
    let sqlite = common::fresh_sqlite().await;
    let db = Db {
        store: sqlite.store.clone(),
        raw: sqlite.store.clone(),
        engine: "sqlite",
    };
    let bot = Bot::start(db, &[]).await;
    sqlite.store.close().await;
    let approve = bot.message(BOB, "bob-approves", "approve 1");
    assert_eq!(bot.deliver(&approve).await, 503);
}

/// The real binary, serving `database_url` (or the SQLite file in `dir`) on a loopback port.
struct Process {
    child: std::process::Child,
    base: String,
}

impl Process {
    fn start(dir: &std::path::Path, database_url: Option<&str>) -> Process {
        use std::io::{BufRead, BufReader};
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_passkey"));
        cmd.current_dir(dir)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("PASSKEY_BIND", "127.0.0.1:0")
            .env("PASSKEY_BOT__TURN_CLAIM_SECS", "3")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null());
        if let Some(url) = database_url {
            cmd.env("DATABASE_URL", url);
        }
        let mut child = cmd.spawn().unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let first = lines.next().unwrap().unwrap();
        let addr = first.rsplit("http://").next().unwrap().trim().to_string();
        // Keep reading so the process never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Process {
            child,
            base: format!("http://{addr}"),
        }
    }

    /// `kill -9`: no shutdown, no cleanup.
    fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The process is killed (SIGKILL) after Bob's approval committed and before he was answered
/// or the activity was marked done. Restarted, Teams' redelivery is taken over once the dead
/// turn's claim lapses: Bob is answered, and the approval exists once.
async fn a_turn_killed_mid_flight_is_redone_once_after_a_restart(
    dir: &std::path::Path,
    database_url: Option<&str>,
    store: std::sync::Arc<dyn passkey::store::Store>,
) {
    let connector = FakeConnector::start().await;
    let client = reqwest::Client::new();
    let deliver = |base: String, activity: Value| {
        let client = client.clone();
        async move {
            client
                .post(format!("{base}/api/messages"))
                .json(&activity)
                .send()
                .await
                .map(|r| r.status().as_u16())
        }
    };
    let message = |(aad, name): (&str, &str), id: &str, text: &str| {
        json!({
            "type": "message", "id": id, "timestamp": "2026-11-23T09:00:00.000Z",
            "serviceUrl": connector.service_url, "channelId": "msteams",
            "from": {"id": format!("29:{name}"), "name": name, "aadObjectId": aad},
            "conversation": {"id": format!("a:{aad}-personal"), "conversationType": "personal", "tenantId": TENANT},
            "recipient": {"id": "28:passkey", "name": "Passkey"},
            "text": text, "channelData": {"tenant": {"id": TENANT}},
        })
    };

    let process = Process::start(dir, database_url);
    let ask = message(
        ALICE,
        "alice-asks",
        "request db-analytics-readonly 2h because INC-4411 nightly report",
    );
    assert_eq!(deliver(process.base.clone(), ask).await.unwrap(), 200);
    let request_id = store
        .requests_in_status(&[RequestStatus::Pending], 10)
        .await
        .unwrap()[0]
        .id;

    let approve = message(BOB, "bob-approves", &format!("approve {request_id}"));
    connector.hang_path("/activities/bob-approves");
    let in_flight = tokio::spawn(deliver(process.base.clone(), approve.clone()));
    let mut approved = false;
    for _ in 0..200 {
        let calls = connector.calls();
        if calls
            .iter()
            .any(|c| c.path.ends_with("/activities/bob-approves"))
        {
            approved = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    assert!(approved, "the turn reached its reply");
    process.kill();
    assert!(
        in_flight.await.unwrap().is_err(),
        "the killed process never answered"
    );
    assert_eq!(
        store.approvals_for_request(request_id).await.unwrap().len(),
        1,
        "the approval had committed before the kill"
    );

    // Restarted; Teams redelivers until it is answered 200.
    let process = Process::start(dir, database_url);
    *connector.state.hanging.lock().unwrap() = None;
    let mut statuses = Vec::new();
    for _ in 0..40 {
        let status = deliver(process.base.clone(), approve.clone())
            .await
            .unwrap();
        statuses.push(status);
        if status == 200 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
    assert_eq!(statuses.last(), Some(&200), "{statuses:?}");
    assert!(
        statuses.iter().all(|s| *s == 200 || *s == 503),
        "while the dead turn's claim holds, Teams is told to retry: {statuses:?}"
    );
    // Teams delivers it once more: acknowledged, nothing runs.
    assert_eq!(deliver(process.base.clone(), approve).await.unwrap(), 200);

    assert_eq!(
        store.approvals_for_request(request_id).await.unwrap().len(),
        1,
        "one approval row"
    );
    let audit = store.audit_events_after(0, 10_000).await.unwrap();
    assert_eq!(
        audit
            .iter()
            .filter(|e| e.action == "REQUEST_APPROVED")
            .count(),
        1,
        "one REQUEST_APPROVED event"
    );
    let answers: Vec<String> = connector
        .calls()
        .iter()
        .filter(|c| c.path.ends_with("/activities/bob-approves"))
        .skip(1) // the reply the killed process never got an answer to
        .map(|c| common::message_text(&c.body))
        .collect();
    assert_eq!(answers.len(), 1, "Bob is answered once: {answers:?}");
    assert!(
        answers[0].contains("already approved by Bob DBA Lead"),
        "{answers:?}"
    );
    process.kill();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_turn_killed_mid_flight_is_redone_once_after_a_restart_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    // The binary creates and migrates data/passkey.db; the test reads the same file.
    let first = Process::start(dir.path(), None);
    first.kill();
    let store = passkey::store::SqliteStore::open(&dir.path().join("data/passkey.db"), 2)
        .await
        .unwrap();
    a_turn_killed_mid_flight_is_redone_once_after_a_restart(
        dir.path(),
        None,
        std::sync::Arc::new(store),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_turn_killed_mid_flight_is_redone_once_after_a_restart_on_postgres() {
    let Some(pg) = common::fresh_pg().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    a_turn_killed_mid_flight_is_redone_once_after_a_restart(
        dir.path(),
        Some(&pg.url()),
        pg.store.clone(),
    )
    .await;
}
