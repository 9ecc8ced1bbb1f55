//! The production profile end to end (#21 "Done when"): the real `passkey` binary, configured
//! with `PASSKEY_*` environment variables only, no demo data and no SQL, against a stand-in for
//! every outside service that speaks its real wire format on this machine:
//!
//! - **Bot Framework** (`common::channel::Issuer`): the channel's OpenID metadata and JWKS (channel
//!   tokens are RS256 JWTs signed with a fixture key, `endorsements: ["msteams"]`), Entra's
//!   metadata for single-tenant tokens, and the token endpoint the app password is posted to.
//! - **Bot Connector** (`common::channel::FakeConnector`): records every activity the bot sends,
//!   opens 1:1 chats, and answers the conversation member lookup
//!   (`GET v3/conversations/{id}/members/{memberId}`) with email and UPN. Production sends its
//!   token only to listed, non-loopback Connector hosts over https, so it listens on this
//!   machine's outside address.
//! - **Entra ID sign-in** (`common::oidc::FakeEntra`): discovery, JWKS, an authorization endpoint
//!   that signs the person in at once, and a token endpoint that checks the client secret, the
//!   redirect URI and the PKCE verifier.
//! - **Keeper Commander service mode** (`common::fake_commander::FakeCommander`): one shared folder
//!   whose ACL names people by email, one record, one-time shares created and removed. Plain http
//!   on loopback, which production allows for Commander alone.
//! - **Twilio** (`common::fake_twilio::FakeTwilio`): the Messages API, keeping every text.
//!
//! Every https service sits behind `common::tls::TlsProxy`, a TLS-terminating relay whose
//! certificate a throwaway CA made for this test issued; the binary trusts that CA through
//! `SSL_CERT_FILE`. The day-one steps are the operator's commands, each a run of the binary:
//! `migrate`, `admin keys init`, `admin sync` (records from Commander alone), `admin record
//! sensitivity` (the discovered record is MEDIUM; payroll is HIGH, so a request needs a ticket and
//! a retrieval a texted code), `admin authority grant` (the folder's owner approves, by email),
//! then `serve`; once the requester has used the bot, `admin phone` gives them a number. The journey runs on a SQLite file
//! the binary creates and on a fresh Postgres database (skipped with a note when Postgres is
//! unreachable, a failure under CI). The test talks to the app's bind address over plain http, as
//! a TLS-terminating front end would, while `public_url` is https; it keeps the `__Host-` cookies
//! by hand.

use crate::common;

use common::channel::{APP_ID, FakeConnector, Issuer, TENANT, sign, teams_member};
use common::fake_commander::{FakeCommander, FakeFolder, FakeMember, FakeRecord};
use common::fake_twilio::{self, FakeTwilio};
use common::oidc::{self, FakeEntra};
use common::tls::{TestCa, TlsProxy, outside_address, socket_of};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const PUBLIC_URL: &str = "https://passkey.contoso.example";
const APP_PASSWORD: &str = "bot-app-password-for-tests";
const FOLDER_UID: &str = "SfPayroll000000000001a";
const RECORD_UID: &str = "RecPayrollDb0000000001";
const RECORD: &str = "payroll-db";
/// Rafael's mobile, as the operator types it.
const RAFAEL_PHONE: &str = "+1 425 555 0142";
const RAFAEL_PHONE_E164: &str = "+14255550142";

/// Someone in the tenant: Entra object id, Teams user id, display name, email (= UPN here).
#[derive(Clone, Copy)]
struct Person {
    aad: &'static str,
    teams_id: &'static str,
    name: &'static str,
    email: &'static str,
}

/// Owns the shared folder in Keeper; approves.
const OLIVIA: Person = Person {
    aad: "0a1b0000-1111-4000-8000-0000000000a1",
    teams_id: "29:1olivia-owner",
    name: "Olivia Owner",
    email: "olivia@contoso.example",
};

/// Named in the folder's ACL by email (may edit records); has never used Passkey.
const RAFAEL: Person = Person {
    aad: "7a4e0000-2222-4000-8000-0000000000b2",
    teams_id: "29:1rafael-requester",
    name: "Rafael Requester",
    email: "rafael@contoso.example",
};

fn personal_chat(p: Person) -> String {
    format!("a:{}-personal", p.aad)
}

/// The stand-ins for every outside service, https where production requires it.
struct World {
    issuer: Issuer,
    connector: FakeConnector,
    entra: FakeEntra,
    /// The fake Entra's own plain-http address: the test's "browser" follows the sign-in
    /// redirect there (the app itself only ever reaches Entra through TLS).
    entra_plain: String,
    commander: FakeCommander,
    twilio: FakeTwilio,
    twilio_https: String,
    ca: TestCa,
}

impl World {
    async fn start(outside: IpAddr) -> World {
        let loopback = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let ca = TestCa::new(&[loopback, outside]);

        let mut issuer = Issuer::start().await;
        let issuer_tls = TlsProxy::start(&ca, loopback, socket_of(&issuer.base)).await;
        // The metadata documents name the https address (jwks_uri), as Microsoft's do.
        *issuer.state.base.lock().unwrap() = issuer_tls.base();
        issuer.base = issuer_tls.base();

        let plain_connector = FakeConnector::start_on(&outside.to_string()).await;
        let connector_tls =
            TlsProxy::start(&ca, outside, socket_of(&plain_connector.service_url)).await;
        let connector = FakeConnector {
            service_url: format!("{}/connector/", connector_tls.base()),
            state: plain_connector.state,
        };
        // Teams answers the member lookup with the person's mail and UPN; activities carry
        // neither.
        for p in [OLIVIA, RAFAEL] {
            connector.set_member(
                p.teams_id,
                teams_member(p.teams_id, p.name, p.aad, p.email, p.email, TENANT),
            );
        }

        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let mut entra = FakeEntra::start(now).await;
        let entra_plain = entra.base.clone();
        let entra_tls = TlsProxy::start(&ca, loopback, socket_of(&entra.base)).await;
        entra.advertise(&entra_tls.base());
        entra.shape(oidc::IdTokenShape {
            oid: RAFAEL.aad.into(),
            tenant: TENANT.into(),
            ..Default::default()
        });

        let commander = FakeCommander::start_empty().await;
        commander.set_records(vec![FakeRecord::new(
            RECORD_UID,
            "databaseCredentials",
            RECORD,
            "svc-payroll @ payroll-db.contoso.example",
        )]);
        commander.set_folders(vec![FakeFolder {
            uid: FOLDER_UID.into(),
            name: "Payroll".into(),
            members: vec![
                FakeMember::owner(OLIVIA.email),
                // May edit records: Passkey's EDITOR, who may request.
                FakeMember {
                    manage_records: true,
                    ..FakeMember::viewer(RAFAEL.email)
                },
            ],
            records: vec![RECORD_UID.into()],
        }]);

        let twilio = FakeTwilio::start().await;
        let twilio_tls = TlsProxy::start(&ca, loopback, socket_of(&twilio.base)).await;

        World {
            issuer,
            connector,
            entra,
            entra_plain,
            commander,
            twilio,
            twilio_https: twilio_tls.base(),
            ca,
        }
    }

    /// A complete production configuration pointing at the fakes.
    fn settings(&self, data_dir: &Path, database_url: Option<&str>) -> BTreeMap<String, String> {
        let outside_host = reqwest::Url::parse(&self.connector.service_url)
            .unwrap()
            .host_str()
            .unwrap()
            .to_string();
        let mut env: BTreeMap<String, String> = [
            ("PASSKEY_PROFILE", "production".to_string()),
            ("PASSKEY_BIND", "127.0.0.1:0".into()),
            ("PASSKEY_PUBLIC_URL", PUBLIC_URL.into()),
            ("PASSKEY_DATA_DIR", data_dir.display().to_string()),
            ("PASSKEY_BOT__APP_ID", APP_ID.into()),
            ("PASSKEY_BOT__APP_PASSWORD", APP_PASSWORD.into()),
            ("PASSKEY_BOT__ALLOWED_TENANTS", TENANT.into()),
            (
                "PASSKEY_BOT__OPENID_METADATA_URL",
                self.issuer.bf_metadata_url(),
            ),
            (
                "PASSKEY_BOT__ENTRA_OPENID_METADATA_URL",
                self.issuer.entra_metadata_template(),
            ),
            (
                "PASSKEY_BOT__OAUTH_AUTHORITY",
                self.issuer.oauth_authority(),
            ),
            (
                "PASSKEY_BOT__SERVICE_URL",
                self.connector.service_url.clone(),
            ),
            ("PASSKEY_BOT__CONNECTOR_HOSTS", outside_host),
            ("PASSKEY_VAULT__BACKEND", "commander-service".into()),
            ("PASSKEY_VAULT__COMMANDER_URL", self.commander.url.clone()),
            (
                "PASSKEY_VAULT__COMMANDER_API_KEY",
                self.commander.api_key.clone(),
            ),
            ("PASSKEY_OTP__SMS_PROVIDER", "twilio".into()),
            ("PASSKEY_OTP__TWILIO_BASE_URL", self.twilio_https.clone()),
            (
                "PASSKEY_OTP__TWILIO_ACCOUNT_SID",
                fake_twilio::ACCOUNT_SID.into(),
            ),
            (
                "PASSKEY_OTP__TWILIO_AUTH_TOKEN",
                fake_twilio::AUTH_TOKEN.into(),
            ),
            ("PASSKEY_OTP__SMS_FROM", fake_twilio::FROM.into()),
            // The scheduler's vault sync waits an hour after start; `admin sync` ran before.
            ("PASSKEY_LOG__FILTER", "info,sqlx=warn".into()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        for (k, v) in self.entra.settings() {
            env.insert(k.to_string(), v);
        }
        env.insert(
            "PASSKEY_WEB__OIDC__ALLOWED_TENANTS".into(),
            TENANT.to_string(),
        );
        env.insert("PASSKEY_WEB__OIDC__TENANT_ID".into(), TENANT.to_string());
        if let Some(url) = database_url {
            env.insert("DATABASE_URL".into(), url.to_string());
        }
        env
    }
}

/// The binary with exactly `env` (plus PATH and the test CA), run from `dir`.
fn passkey(dir: &Path, env: &BTreeMap<String, String>, ca_file: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_passkey"));
    cmd.current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("SSL_CERT_FILE", ca_file)
        .envs(env);
    cmd
}

/// Runs a one-shot command (`migrate`, `admin …`); (exit code, stdout, stderr).
fn run(cmd: &mut Command) -> (i32, String, String) {
    let out = cmd.output().expect("run passkey");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `passkey serve`, killed when dropped.
pub(crate) struct Served {
    pub child: std::process::Child,
    /// `http://127.0.0.1:port`, from the banner.
    pub base: String,
    /// The process's log (stderr), for failure messages.
    log: PathBuf,
}

impl Served {
    fn start(mut cmd: Command, log: PathBuf) -> Served {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("spawn passkey serve");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let Some(Ok(first)) = lines.next() else {
            let _ = child.wait();
            panic!(
                "passkey serve printed no banner; its log:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        };
        let addr = first.rsplit("http://").next().unwrap().trim().to_string();
        // Keep reading so the process never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Served {
            child,
            base: format!("http://{addr}"),
            log,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Teams, as seen from the bot: signed activities to `/api/messages`.
struct Teams<'a> {
    world: &'a World,
    served: &'a Served,
    http: reqwest::Client,
    sent: std::sync::atomic::AtomicUsize,
}

impl Teams<'_> {
    /// A channel token for an activity from `service_url`, as Bot Framework signs it.
    fn token(&self) -> String {
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        sign(
            "channel-a",
            "kid-a",
            &json!({
                "iss": "https://api.botframework.com",
                "aud": APP_ID,
                "exp": now + 3600,
                "nbf": now - 60,
                "serviceurl": self.world.connector.service_url,
            }),
        )
    }

    fn activity(&self, who: Person, kind: &str) -> (String, Value) {
        let n = self.sent.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
        let id = format!("activity-{n}");
        let activity = json!({
            "type": kind,
            "id": id,
            "timestamp": time::OffsetDateTime::now_utc()
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap(),
            "serviceUrl": self.world.connector.service_url,
            "channelId": "msteams",
            "from": {"id": who.teams_id, "name": who.name, "aadObjectId": who.aad},
            "conversation": {"id": personal_chat(who), "conversationType": "personal", "tenantId": TENANT},
            "recipient": {"id": format!("28:{APP_ID}"), "name": "Passkey"},
            "channelData": {"tenant": {"id": TENANT}},
            "locale": "en-US",
        });
        (id, activity)
    }

    async fn deliver(&self, activity: &Value) -> reqwest::Response {
        self.http
            .post(self.served.url("/api/messages"))
            .bearer_auth(self.token())
            .json(activity)
            .send()
            .await
            .unwrap()
    }

    /// `who` types `text` in their 1:1 chat; what the bot's reply says.
    async fn say(&self, who: Person, text: &str) -> String {
        let (id, mut activity) = self.activity(who, "message");
        activity["text"] = json!(text);
        let r = self.deliver(&activity).await;
        assert_eq!(
            r.status(),
            200,
            "{} says {text:?}; log:\n{}",
            who.name,
            self.served.log()
        );
        let suffix = format!("/activities/{id}");
        let reply = self
            .world
            .connector
            .calls()
            .into_iter()
            // A reply is a POST; an update in place of a card the fake Connector numbered
            // alike (`activity-N`) is a PUT.
            .find(|c| c.method == "POST" && c.path.ends_with(&suffix))
            .unwrap_or_else(|| {
                panic!(
                    "no reply to {}'s {text:?}; log:\n{}",
                    who.name,
                    self.served.log()
                )
            });
        common::message_text(&reply.body)
    }

    /// `who` taps the `Action.Execute` button titled `title` on `card`; the invoke answer.
    async fn tap(&self, who: Person, card: &Value, title: &str) -> Value {
        let action =
            find_action(card, title).unwrap_or_else(|| panic!("no {title:?} button on {card:#}"));
        let (_, mut activity) = self.activity(who, "invoke");
        activity["name"] = json!("adaptiveCard/action");
        activity["value"] = json!({
            "action": {"type": "Action.Execute", "verb": action["verb"], "data": action["data"]},
            "trigger": "manual",
        });
        let r = self.deliver(&activity).await;
        assert_eq!(r.status(), 200, "{title}; log:\n{}", self.served.log());
        r.json().await.unwrap()
    }

    /// What the bot started (not replies) in `who`'s 1:1 chat, oldest first: (text, card).
    fn messages_to(&self, who: Person) -> Vec<(String, Option<Value>)> {
        let path = format!(
            "/connector/v3/conversations/{}/activities",
            personal_chat(who)
        );
        self.world
            .connector
            .calls()
            .into_iter()
            .filter(|c| c.method == "POST" && c.path == path)
            .map(|c| {
                (
                    common::message_text(&c.body),
                    c.body["attachments"][0].get("content").cloned(),
                )
            })
            .collect()
    }

    /// Waits (briefly) until the bot has started `n` messages in `who`'s chat.
    async fn wait_for_messages(&self, who: Person, n: usize) -> Vec<(String, Option<Value>)> {
        for _ in 0..200 {
            if self.messages_to(who).len() >= n {
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        self.messages_to(who)
    }
}

/// The `Action.Execute` titled `title` anywhere on `card`.
fn find_action(card: &Value, title: &str) -> Option<Value> {
    match card {
        Value::Object(map) => {
            if map.get("type").and_then(Value::as_str) == Some("Action.Execute")
                && map.get("title").and_then(Value::as_str) == Some(title)
            {
                return Some(card.clone());
            }
            map.values().find_map(|v| find_action(v, title))
        }
        Value::Array(items) => items.iter().find_map(|v| find_action(v, title)),
        _ => None,
    }
}

/// `passkey admin keys init`, as an operator runs it before the first start (production never
/// creates the data-encryption key by itself).
fn init_data_key(dir: &Path, env: &BTreeMap<String, String>, ca_file: &Path) {
    let (code, stdout, stderr) = run(passkey(dir, env, ca_file).args(["admin", "keys", "init"]));
    assert_eq!(
        code, 0,
        "admin keys init\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
}

/// Fails loudly on a machine without an outside address: production sends the Connector token
/// to non-loopback hosts only, so there is nothing to run the journey against.
fn outside_or_fail() -> IpAddr {
    outside_address().expect(
        "this machine has no non-loopback address: production refuses loopback Connector hosts, \
         so the production end-to-end test cannot run here",
    )
}

/// Production refuses to start without a setting it needs, and says which and how to set it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn production_refuses_to_start_without_commander_naming_the_setting() {
    let world = World::start(outside_or_fail()).await;
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let mut env = world.settings(&data_dir, None);
    init_data_key(dir.path(), &env, &world.ca.ca_file);
    env.remove("PASSKEY_VAULT__COMMANDER_URL");
    let (code, stdout, stderr) = run(passkey(dir.path(), &env, &world.ca.ca_file).arg("serve"));
    assert_eq!(code, 2, "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(
        stderr.contains("vault.commander_url") && stderr.contains("PASSKEY_VAULT__COMMANDER_URL"),
        "{stderr}"
    );
    assert!(
        !stdout.contains("listening"),
        "it did not start serving: {stdout}"
    );
    assert!(
        !stderr.contains(&world.commander.api_key) && !stderr.contains(APP_PASSWORD),
        "{stderr}"
    );
}

async fn a_new_person_gets_a_record_their_folder_permission_gives_them(database_url: Option<&str>) {
    journey(database_url, &[]).await;
}

/// What the journey leaves running and what it saw, for tests that look further (telemetry).
pub(crate) struct Journey {
    pub served: Served,
    /// The request Rafael retrieved.
    pub request_id: i64,
    /// Secrets the journey handled, that nothing outside the app may carry: the one-time link,
    /// the issuance token, the texted code.
    pub secrets: Vec<String>,
    _world: World,
    _dir: tempfile::TempDir,
}

/// The whole production journey (request, approval, retrieval with a texted code, release)
/// with `extra` settings on top; the server is still running when it returns.
pub(crate) async fn journey(database_url: Option<&str>, extra: &[(&str, String)]) -> Journey {
    let world = World::start(outside_or_fail()).await;
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let mut env = world.settings(&data_dir, database_url);
    for (key, value) in extra {
        env.insert(key.to_string(), value.clone());
    }
    let cli = |args: &[&str]| {
        let (code, stdout, stderr) = run(passkey(dir.path(), &env, &world.ca.ca_file).args(args));
        assert_eq!(
            code, 0,
            "passkey {args:?}\nstdout:\n{stdout}\nstderr:\n{stderr}"
        );
        stdout
    };

    // Day one: the schema, the data key, the vault's records from Commander alone.
    cli(&["migrate"]);
    cli(&["admin", "keys", "init"]);
    let synced = cli(&["admin", "sync"]);
    assert!(synced.contains("1 discovered"), "{synced}");
    // Discovery makes every record MEDIUM; the operator marks payroll HIGH without SQL.
    let marked = cli(&[
        "admin",
        "record",
        "sensitivity",
        RECORD,
        "HIGH",
        "every",
        "salary",
        "in",
        "the",
        "company",
    ]);
    assert!(
        marked.contains(&format!("`{RECORD}` is now HIGH (was MEDIUM)")),
        "{marked}"
    );
    cli(&[
        "admin",
        "authority",
        "grant",
        RECORD,
        "OWNER",
        &format!("email:{}", OLIVIA.email),
    ]);

    let served = Served::start(
        {
            let mut cmd = passkey(dir.path(), &env, &world.ca.ca_file);
            cmd.arg("serve");
            cmd
        },
        dir.path().join("serve.log"),
    );
    let teams = Teams {
        world: &world,
        served: &served,
        http: reqwest::Client::new(),
        sent: Default::default(),
    };

    // Olivia opens her chat with the bot; Passkey learns her address from the Connector.
    let hello = teams.say(OLIVIA, "help").await;
    assert!(hello.contains("Passkey commands"), "{hello}");

    // Rafael has never used Passkey; the folder's ACL names him by email only. A HIGH record
    // needs a ticket id in the reason.
    let no_ticket = teams
        .say(
            RAFAEL,
            &format!("request {RECORD} 1h because payroll export failed"),
        )
        .await;
    assert!(
        no_ticket.contains("HIGH records need a ticket id"),
        "refused, naming what is missing: {no_ticket}"
    );
    assert!(
        teams.messages_to(OLIVIA).is_empty(),
        "nothing reached the approver"
    );
    let asked = teams
        .say(
            RAFAEL,
            &format!("request {RECORD} 1h because INC-4411 payroll export failed"),
        )
        .await;
    assert!(
        asked.contains("is waiting for approval"),
        "Rafael's request went to its approver: {asked}\nlog:\n{}",
        served.log()
    );
    let to_olivia = teams.wait_for_messages(OLIVIA, 1).await;
    let (text, card) = to_olivia
        .iter()
        .find(|(text, card)| card.is_some() && text.contains(RECORD))
        .cloned()
        .unwrap_or_else(|| {
            panic!(
                "Olivia gets an approval card: {to_olivia:?}\nlog:\n{}",
                served.log()
            )
        });
    assert!(text.contains("Rafael Requester"), "{text}");
    assert!(text.contains("INC-4411"), "{text}");

    // Rafael is known now; the operator gives him a mobile number for texted codes.
    let phoned = cli(&["admin", "phone", RAFAEL.email, RAFAEL_PHONE]);
    assert!(phoned.contains("phone number set"), "{phoned}");
    assert!(
        !phoned.contains("0142"),
        "the number is not echoed: {phoned}"
    );
    let before_decision = teams.messages_to(RAFAEL).len();

    // Olivia approves; Rafael is told in his 1:1 chat.
    let answer = teams.tap(OLIVIA, card.as_ref().unwrap(), "Approve").await;
    assert_eq!(answer["statusCode"], 200, "{answer:#}");
    let decided = common::card_text(&answer["value"]);
    assert!(
        decided.contains("Approved") && decided.contains("Olivia Owner"),
        "Olivia's card now shows her decision: {decided}"
    );
    let to_rafael = teams.wait_for_messages(RAFAEL, before_decision + 1).await;
    let approved = to_rafael
        .iter()
        .map(|(text, _)| text.clone())
        .find(|text| text.contains("approved"))
        .unwrap_or_else(|| {
            panic!(
                "Rafael hears of the approval: {to_rafael:?}\nlog:\n{}",
                served.log()
            )
        });
    assert!(approved.contains(RECORD), "{approved}");
    let link_at = approved
        .find(&format!("{PUBLIC_URL}/requests/"))
        .unwrap_or_else(|| panic!("the link is on the public https address: {approved}"));
    let page_path = approved[link_at + PUBLIC_URL.len()..]
        .split(|c: char| c.is_whitespace() || c == ')' || c == '"' || c == '#')
        .next()
        .unwrap()
        .to_string();
    let request_id: i64 = page_path
        .trim_start_matches("/requests/")
        .trim_end_matches("/issue")
        .parse()
        .unwrap_or_else(|_| panic!("a request link: {page_path}"));

    // Rafael opens the link: Entra sign-in with PKCE, then the one-time link Commander made.
    let browser = Browser::new(&served);
    let signed_in = browser.sign_in(&world, &page_path).await;
    assert_eq!(signed_in, page_path, "back on the page after signing in");
    let page = browser.get(&page_path).await;
    assert_eq!(page.status(), 200);
    for header in ["strict-transport-security", "content-security-policy"] {
        assert!(page.headers().contains_key(header), "{header}");
    }
    let html = page.text().await.unwrap();
    assert!(
        html.contains("•••• 0142"),
        "the page says a code is texted to Rafael's phone"
    );
    let csrf = common::web::attr_value(&html, "name=\"csrf-token\" content=\"");
    let minted = browser
        .post_json(
            &format!("/api/requests/{request_id}/issuance-token"),
            &json!({}),
            &csrf,
        )
        .await;
    assert_eq!(minted.0, 200, "{:#}", minted.1);
    let exchanged = browser
        .post_json(
            &format!("/api/requests/{request_id}/issue"),
            &json!({ "token": minted.1["token"] }),
            &csrf,
        )
        .await;
    assert_eq!(exchanged.0, 200, "{:#}", exchanged.1);
    // HIGH: the default policy asks for a texted code first. Twilio (over TLS) has it; no link
    // exists yet, at Commander or on the page.
    assert_eq!(exchanged.1["channel"], "sms", "{:#}", exchanged.1);
    assert!(
        exchanged.1.get("share_url").is_none() && world.commander.live_shares().is_empty(),
        "no link before the code: {:#}",
        exchanged.1
    );
    assert!(world.twilio_https.starts_with("https://"));
    let texts = world.twilio.texts();
    assert_eq!(texts.len(), 1, "{texts:?}");
    assert_eq!(
        (texts[0].to.as_str(), texts[0].from.as_str()),
        (RAFAEL_PHONE_E164, fake_twilio::FROM)
    );
    let code: String = texts[0]
        .body
        .split(|c: char| !c.is_ascii_digit())
        .find(|w| w.len() == 6)
        .unwrap_or_else(|| panic!("a six-digit code: {}", texts[0].body))
        .to_string();
    let verified = browser
        .post_json(
            &format!("/api/requests/{request_id}/issue/verify"),
            &json!({ "challenge_id": exchanged.1["challenge_id"], "code": code }),
            &csrf,
        )
        .await;
    assert_eq!(verified.0, 200, "{:#}", verified.1);
    let share_url = verified.1["share_url"]
        .as_str()
        .unwrap_or_else(|| panic!("the link after the code: {:#}", verified.1))
        .to_string();
    let live = world.commander.live_shares();
    assert_eq!(live.len(), 1, "one share at Commander: {live:?}");
    assert_eq!(
        passkey::vault::share_id_from_url(&share_url).as_deref(),
        Some(live[0].share_id.as_str()),
        "Rafael sees the one-time link Commander printed: {share_url}"
    );
    assert_eq!(live[0].record_uid, RECORD_UID);

    // Rafael is done: the share is removed at Commander.
    let released = teams.say(RAFAEL, &format!("release {request_id}")).await;
    assert!(released.contains("links were removed"), "{released}");
    for _ in 0..200 {
        if world.commander.live_shares().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(
        world.commander.live_shares().is_empty(),
        "the share is gone at Commander; log:\n{}",
        served.log()
    );
    let removal = format!("one-time-share remove -- {RECORD_UID} {}", live[0].share_id);
    assert!(
        world.commander.commands().contains(&removal),
        "removed by its id: {:?}",
        world.commander.commands()
    );

    // Every call to the Connector (messages, cards, member lookups) carried the token the app
    // password bought at the token endpoint, over TLS.
    assert!(
        world
            .issuer
            .state
            .token_requests
            .load(std::sync::atomic::Ordering::SeqCst)
            >= 1
    );
    // azure_identity's client-secret credential asked in the client-credentials format.
    let form = world
        .issuer
        .state
        .last_token_form
        .lock()
        .unwrap()
        .clone()
        .expect("a token request");
    assert!(form.contains("grant_type=client_credentials"), "{form}");
    assert!(
        form.contains("scope=https%3A%2F%2Fapi.botframework.com%2F.default"),
        "{form}"
    );
    assert!(form.contains(&format!("client_id={APP_ID}")), "{form}");
    let lookups = world.connector.member_calls();
    for p in [OLIVIA, RAFAEL] {
        assert!(
            lookups
                .iter()
                .any(|c| c.path.ends_with(&format!("/members/{}", p.teams_id))),
            "{} was looked up: {lookups:?}",
            p.name
        );
    }
    let bearer = format!("Bearer {}", common::channel::CONNECTOR_TOKEN);
    for call in world.connector.calls().iter().chain(&lookups) {
        assert_eq!(
            call.authorization.as_deref(),
            Some(bearer.as_str()),
            "{}",
            call.path
        );
    }
    let log = served.log();
    for secret in [
        share_url.as_str(),
        RAFAEL_PHONE_E164,
        APP_PASSWORD,
        world.commander.api_key.as_str(),
        oidc::CLIENT_SECRET,
        fake_twilio::AUTH_TOKEN,
    ] {
        assert!(!log.contains(secret), "{secret} is in the log");
    }
    let token = minted.1["token"].as_str().unwrap_or_default().to_string();
    drop(teams);
    drop(browser);
    Journey {
        served,
        request_id,
        secrets: vec![share_url, token, code],
        _world: world,
        _dir: dir,
    }
}

/// A browser on the app's bind address (where a TLS-terminating front end would forward
/// `public_url`'s traffic): keeps the cookies the app sets, follows nothing by itself.
struct Browser {
    http: reqwest::Client,
    base: String,
    cookies: std::sync::Mutex<BTreeMap<String, String>>,
}

impl Browser {
    fn new(served: &Served) -> Browser {
        Browser {
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            base: served.base.clone(),
            cookies: Default::default(),
        }
    }

    /// A path on the app, or one of its `public_url` addresses, as a URL on the bind address.
    fn on_app(&self, path_or_url: &str) -> String {
        let path = path_or_url.strip_prefix(PUBLIC_URL).unwrap_or(path_or_url);
        assert!(
            path.starts_with('/'),
            "not the app's address: {path_or_url}"
        );
        format!("{}{path}", self.base)
    }

    fn cookie_header(&self) -> String {
        let jar = self.cookies.lock().unwrap();
        jar.iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    /// Keeps the cookies `response` sets. Every one must be `__Host-` and Secure: the app is
    /// served over https to browsers.
    fn keep_cookies(&self, response: &reqwest::Response) {
        let mut jar = self.cookies.lock().unwrap();
        for value in response.headers().get_all("set-cookie") {
            let text = value.to_str().unwrap();
            let (name, value) = text.split(';').next().unwrap().split_once('=').unwrap();
            assert!(name.starts_with("__Host-"), "{text}");
            assert!(
                text.contains("Secure") && text.contains("HttpOnly"),
                "{text}"
            );
            if value.is_empty() || text.contains("Max-Age=0") {
                jar.remove(name);
            } else {
                jar.insert(name.to_string(), value.to_string());
            }
        }
    }

    async fn get(&self, path_or_url: &str) -> reqwest::Response {
        let r = self
            .http
            .get(self.on_app(path_or_url))
            .header("cookie", self.cookie_header())
            .send()
            .await
            .unwrap();
        self.keep_cookies(&r);
        r
    }

    /// A JSON POST as the page's script makes it: same origin, with the CSRF token.
    async fn post_json(&self, path: &str, body: &Value, csrf: &str) -> (u16, Value) {
        let r = self
            .http
            .post(self.on_app(path))
            .header("cookie", self.cookie_header())
            .header("origin", PUBLIC_URL)
            .header("x-csrf-token", csrf)
            .json(body)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// Opens `page_path` signed out and signs in through Entra; where the app sends the browser
    /// at the end.
    async fn sign_in(&self, world: &World, page_path: &str) -> String {
        let location = |r: &reqwest::Response| {
            r.headers()
                .get("location")
                .unwrap_or_else(|| panic!("a redirect, got {}", r.status()))
                .to_str()
                .unwrap()
                .to_string()
        };
        let page = self.get(page_path).await;
        assert!(page.status().is_redirection(), "{}", page.status());
        let signin = self.get(&location(&page)).await;
        assert!(signin.status().is_redirection(), "{}", signin.status());
        let authorize = location(&signin);
        assert!(
            authorize.starts_with(&world.entra.base),
            "off to Entra over https: {authorize}"
        );
        assert!(
            authorize.contains("code_challenge_method=S256"),
            "{authorize}"
        );
        // The browser's hop to Entra: the fake's own address (the app reaches it through TLS).
        let at_entra = self
            .http
            .get(authorize.replacen(&world.entra.base, &world.entra_plain, 1))
            .send()
            .await
            .unwrap();
        let callback = location(&at_entra);
        assert!(
            callback.starts_with(&format!("{PUBLIC_URL}/signin/callback?")),
            "Entra sends the browser back to the public address: {callback}"
        );
        let back = self.get(&callback).await;
        assert!(back.status().is_redirection(), "{}", back.status());
        location(&back)
    }
}

/// App Service's managed identity endpoint (API 2019-08-01): plain http on loopback, as App
/// Service gives it; answers with the `expires_on` string it sends and records each query and
/// `X-IDENTITY-HEADER`.
async fn fake_app_service_identity() -> (String, Arc<Mutex<Vec<(String, Option<String>)>>>) {
    use axum::extract::{RawQuery, State};
    use axum::http::HeaderMap;
    type Seen = Arc<Mutex<Vec<(String, Option<String>)>>>;
    async fn token(
        State(seen): State<Seen>,
        headers: HeaderMap,
        RawQuery(query): RawQuery,
    ) -> axum::response::Response {
        use axum::response::IntoResponse;
        let header = headers
            .get("x-identity-header")
            .and_then(|v| v.to_str().ok())
            .map(String::from);
        seen.lock()
            .unwrap()
            .push((query.unwrap_or_default(), header.clone()));
        if header.as_deref() != Some(IDENTITY_HEADER) {
            return (axum::http::StatusCode::UNAUTHORIZED, "no identity header").into_response();
        }
        let expires_on = (time::OffsetDateTime::now_utc().unix_timestamp() + 3600).to_string();
        axum::Json(json!({
            "access_token": MI_TOKEN,
            "expires_on": expires_on,
            "resource": "https://api.botframework.com",
            "token_type": "Bearer",
        }))
        .into_response()
    }
    let seen: Seen = Default::default();
    let app = axum::Router::new()
        .route("/msi/token", axum::routing::get(token))
        .with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/msi/token", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, seen)
}

const IDENTITY_HEADER: &str = "app-service-identity-header-for-tests";
const MI_TOKEN: &str = "connector-token-from-the-managed-identity";
const USER_ASSIGNED: &str = "5b7c0000-3333-4000-8000-0000000000c3";

/// With `bot.connector_auth = "managed-identity"` the real binary, in production, gets its
/// Connector token from App Service's identity endpoint (found in `IDENTITY_ENDPOINT` and
/// `IDENTITY_HEADER`, as App Service sets them), for the user-assigned identity `azure.client_id`
/// names — the one identity setting — and no app password exists anywhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_bot_answers_with_its_managed_identity_token() {
    let world = World::start(outside_or_fail()).await;
    let (endpoint, seen) = fake_app_service_identity().await;
    let dir = tempfile::tempdir().unwrap();
    let mut env = world.settings(&dir.path().join("data"), None);
    env.remove("PASSKEY_BOT__APP_PASSWORD");
    env.insert(
        "PASSKEY_BOT__CONNECTOR_AUTH".into(),
        "managed-identity".into(),
    );
    env.insert("PASSKEY_AZURE__CLIENT_ID".into(), USER_ASSIGNED.into());
    env.insert("IDENTITY_ENDPOINT".into(), endpoint);
    env.insert("IDENTITY_HEADER".into(), IDENTITY_HEADER.into());
    for args in [&["migrate"][..], &["admin", "keys", "init"]] {
        let (code, stdout, stderr) = run(passkey(dir.path(), &env, &world.ca.ca_file).args(args));
        assert_eq!(code, 0, "{args:?}\nstdout:\n{stdout}\nstderr:\n{stderr}");
    }
    let served = Served::start(
        {
            let mut cmd = passkey(dir.path(), &env, &world.ca.ca_file);
            cmd.arg("serve");
            cmd
        },
        dir.path().join("serve.log"),
    );
    let teams = Teams {
        world: &world,
        served: &served,
        http: reqwest::Client::new(),
        sent: Default::default(),
    };
    let reply = teams.say(OLIVIA, "help").await;
    assert!(!reply.is_empty(), "a reply");
    let bearer = format!("Bearer {MI_TOKEN}");
    let calls = world.connector.calls();
    assert!(!calls.is_empty());
    for call in &calls {
        assert_eq!(
            call.authorization.as_deref(),
            Some(bearer.as_str()),
            "{}",
            call.path
        );
    }
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 1, "one token, cached: {seen:?}");
    let (query, header) = &seen[0];
    assert!(query.contains("api-version=2019-08-01"), "{query}");
    assert!(
        query.contains("resource=https%3A%2F%2Fapi.botframework.com"),
        "the Connector scope as a resource: {query}"
    );
    assert!(
        query.contains(&format!("client_id={USER_ASSIGNED}")),
        "{query}"
    );
    assert_eq!(header.as_deref(), Some(IDENTITY_HEADER));
    assert_eq!(
        world
            .issuer
            .state
            .token_requests
            .load(std::sync::atomic::Ordering::SeqCst),
        0,
        "no client-secret request"
    );
    let log = served.log();
    assert!(
        !log.contains(MI_TOKEN) && !log.contains(IDENTITY_HEADER),
        "{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_new_person_gets_a_record_their_folder_permission_gives_them_on_sqlite() {
    a_new_person_gets_a_record_their_folder_permission_gives_them(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_new_person_gets_a_record_their_folder_permission_gives_them_on_postgres() {
    let Some(pg) = common::fresh_pg().await else {
        return;
    };
    a_new_person_gets_a_record_their_folder_permission_gives_them(Some(&pg.url())).await;
}
