//! Real Teams people match Keeper folder permissions (#21.2). A Teams activity names its sender by
//! Entra object id and display name only; USER entries of folder ACLs name people by mail or UPN.
//! So the bot asks the directory — the Bot Connector's member lookup, or Graph when it is the
//! people directory — on first contact and once the answer is a day old, keeps only answers about
//! this very person in this tenant, and carries on with what it had when the lookup fails.
//!
//! The real app in dev channel mode over the demo data, on both databases; a fake Connector on
//! loopback answers `GET /v3/conversations/{id}/members/{member}` with TeamsChannelAccounts.

use crate::common;

use common::channel::{OTHER_TENANT, TENANT, teams_member};
use common::chat::Chat;
use common::fake_graph::FakeGraph;
use common::{Db, t0};
use passkey::domain::{FolderPermission, RequestStatus, VaultPrincipalType};
use passkey::governance::directory::UserDirectory;
use passkey::store::{AuditEvent, NewFolderPermission, User};
use serde_json::{Value, json};
use std::sync::Arc;

/// Nobody the demo data knows: Teams id, display name, Entra object id.
const FRANK: (&str, &str, &str) = (
    "29:1frank",
    "Frank Newhire",
    "f4a0c000-0000-4000-8000-00000000000f",
);
const FRANK_MAIL: &str = "frank.newhire@contoso.example";
const FRANK_UPN: &str = "fnewhire@contoso.onmicrosoft.example";
const GRAFANA: &str = "request grafana-admin 1h because INC-4411 dashboards are down";
const JENKINS: &str = "request jenkins-deploy 1h because INC-4412 hotfix deploy";
const NOT_VISIBLE: &str = "not in a vault folder you can see";

/// The common chat harness over the test's database, with this file's look at people.
struct Teams {
    chat: Chat,
}

impl std::ops::Deref for Teams {
    type Target = Chat;

    fn deref(&self) -> &Chat {
        &self.chat
    }
}

impl Teams {
    /// The app over `db` with the demo data; the Platform folder's ACL also names `principal`
    /// (Frank's mail or UPN, in any case) as an EDITOR.
    async fn start(db: &Db, principal: &str) -> Teams {
        Self::start_with(db, &[principal], None, &[]).await
    }

    /// As `start`, with USER entries for each of `principals`, the people directory given and
    /// `extra` settings.
    async fn start_with(
        db: &Db,
        principals: &[&str],
        people: Option<Arc<dyn UserDirectory>>,
        extra: &[(&str, &str)],
    ) -> Teams {
        Self::start_configured(db, principals, people, extra, |_| {}).await
    }

    /// As `start_with`, with `configure` having the last word on the settings.
    async fn start_configured(
        db: &Db,
        principals: &[&str],
        people: Option<Arc<dyn UserDirectory>>,
        extra: &[(&str, &str)],
        configure: impl FnOnce(&mut passkey::config::Settings),
    ) -> Teams {
        passkey::demo::load_if_empty(db.store.as_ref(), t0())
            .await
            .unwrap();
        let platform = db
            .store
            .list_folders()
            .await
            .unwrap()
            .into_iter()
            .find(|f| f.name == "Platform")
            .unwrap();
        let mut acl: Vec<NewFolderPermission> = db
            .store
            .folder_permissions(platform.id)
            .await
            .unwrap()
            .into_iter()
            .map(|p| NewFolderPermission {
                principal_type: p.principal_type,
                principal: p.principal,
                permission: p.permission,
            })
            .collect();
        acl.extend(principals.iter().map(|p| NewFolderPermission {
            principal_type: VaultPrincipalType::User,
            principal: p.to_string(),
            permission: FolderPermission::Editor,
        }));
        db.store
            .replace_folder_permissions(platform.id, &acl, t0())
            .await
            .unwrap();
        Teams {
            chat: Chat::start_over_configured(db.store.clone(), people, extra, configure).await,
        }
    }

    /// Frank (or `who`) as Teams would describe him to the member lookup.
    fn directory_says(&self, who: (&str, &str, &str), mail: &str, upn: &str) {
        self.connector
            .set_member(who.0, teams_member(who.0, who.1, who.2, mail, upn, TENANT));
    }

    /// `text` from `who` in their 1:1 chat; what the bot's reply says.
    async fn say(&self, who: (&str, &str, &str), text: &str) -> String {
        self.chat.say_as(who, text).await
    }

    async fn user(&self, aad: &str) -> User {
        self.store
            .user_by_aad_object_id(aad)
            .await
            .unwrap()
            .unwrap()
    }

    /// The person's requests that were not denied (a denied one is stored too, as DENIED).
    async fn requests_of(&self, aad: &str) -> usize {
        let user = self.user(aad).await;
        self.store
            .requests_for_requester(user.id, 100)
            .await
            .unwrap()
            .into_iter()
            .filter(|r| r.status != RequestStatus::Denied)
            .count()
    }

    async fn profile_events(&self) -> Vec<AuditEvent> {
        self.store
            .audit_events_after(0, 10_000)
            .await
            .unwrap()
            .into_iter()
            .filter(|e| e.action == "USER_PROFILE_UPDATED")
            .collect()
    }

    fn lookups(&self) -> usize {
        self.connector.member_calls().len()
    }

    fn later(&self, d: time::Duration) {
        self.server.clock.advance(d);
    }
}

/// A brand-new person whose mail a USER entry names (in another case) requests on first contact.
async fn a_new_person_granted_a_folder_by_mail_can_request_at_once(db: Db) {
    let teams = Teams::start(&db, "Frank.Newhire@CONTOSO.example").await;
    teams.directory_says(FRANK, FRANK_MAIL, FRANK_UPN);

    let reply = teams.say(FRANK, GRAFANA).await;
    assert!(!reply.contains(NOT_VISIBLE), "{reply}");
    assert_eq!(teams.requests_of(FRANK.2).await, 1, "{reply}");

    let frank = teams.user(FRANK.2).await;
    assert_eq!(frank.email.as_deref(), Some(FRANK_MAIL));
    assert_eq!(frank.upn.as_deref(), Some(FRANK_UPN));
    assert_eq!(frank.display_name, "Frank Newhire");
    // One lookup, of Frank in his own chat, at the activity's service URL.
    let lookups = teams.connector.member_calls();
    assert_eq!(lookups.len(), 1);
    assert_eq!(
        lookups[0].path,
        format!(
            "/connector/v3/conversations/a:{}-personal/members/29:1frank",
            FRANK.2
        )
    );
    // Audited without the addresses themselves.
    let events = teams.profile_events().await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].detail.0["user_id"], json!(frank.id));
    assert_eq!(events[0].detail.0["source"], "teams-connector");
    assert_eq!(events[0].detail.0["changed"], json!(["email", "upn"]));
    let detail = events[0].detail.0.to_string().to_lowercase();
    assert!(!detail.contains("newhire"), "{detail}");
}

/// The UPN is an address too: a USER entry naming only the UPN grants the folder.
async fn a_user_entry_naming_the_upn_grants_the_folder(db: Db) {
    let teams = Teams::start(&db, &FRANK_UPN.to_uppercase()).await;
    teams.directory_says(FRANK, FRANK_MAIL, FRANK_UPN);
    let reply = teams.say(FRANK, GRAFANA).await;
    assert!(!reply.contains(NOT_VISIBLE), "{reply}");
    assert_eq!(teams.requests_of(FRANK.2).await, 1, "{reply}");
}

/// Someone Passkey stored before it looked addresses up (no mail, permissions cached as "no
/// folders") gets them on their next turn, and that turn is decided with them.
async fn a_person_stored_without_addresses_is_looked_up_and_their_cached_permissions_dropped(
    db: Db,
) {
    let teams = Teams::start(&db, FRANK_MAIL).await;
    let frank = db
        .store
        .upsert_user(
            &passkey::store::NewUser {
                aad_object_id: FRANK.2.into(),
                tenant_id: Some(TENANT.into()),
                teams_user_id: Some(FRANK.0.into()),
                upn: None,
                email: None,
                display_name: FRANK.1.into(),
                initial_role: passkey::domain::Role::Requester,
            },
            t0(),
        )
        .await
        .unwrap();
    let cached = teams
        .server
        .state
        .permissions
        .effective(&frank)
        .await
        .unwrap();
    assert!(cached.requestable_folders.is_empty());

    teams.directory_says(FRANK, FRANK_MAIL, FRANK_UPN);
    let reply = teams.say(FRANK, GRAFANA).await;
    assert!(!reply.contains(NOT_VISIBLE), "{reply}");
    assert_eq!(teams.requests_of(FRANK.2).await, 1, "{reply}");
}

/// One lookup a day: none within the window, one after it, and a changed mail is picked up —
/// the old one stops granting the folder.
async fn the_lookup_is_repeated_only_after_a_day_and_picks_up_a_changed_mail(db: Db) {
    let teams = Teams::start(&db, FRANK_MAIL).await;
    teams.directory_says(FRANK, FRANK_MAIL, FRANK_UPN);
    let reply = teams.say(FRANK, GRAFANA).await;
    assert!(!reply.contains(NOT_VISIBLE), "{reply}");
    assert_eq!(teams.lookups(), 1);

    // The directory changes, but within the day the stored answer stands.
    teams.directory_says(FRANK, "frank.renamed@contoso.example", FRANK_UPN);
    teams.later(time::Duration::hours(23));
    teams.say(FRANK, "my requests").await;
    teams.later(time::Duration::minutes(59));
    teams.say(FRANK, "help").await;
    assert_eq!(teams.lookups(), 1, "no lookup within the day");
    assert_eq!(teams.user(FRANK.2).await.email.as_deref(), Some(FRANK_MAIL));

    // A day after the lookup: asked again, and the new mail replaces the old one.
    teams.later(time::Duration::minutes(1));
    let reply = teams.say(FRANK, JENKINS).await;
    assert_eq!(teams.lookups(), 2);
    let frank = teams.user(FRANK.2).await;
    assert_eq!(
        frank.email.as_deref(),
        Some("frank.renamed@contoso.example")
    );
    assert_eq!(frank.upn.as_deref(), Some(FRANK_UPN));
    assert!(
        reply.contains(NOT_VISIBLE),
        "the old mail grants nothing now: {reply}"
    );
    assert_eq!(teams.requests_of(FRANK.2).await, 1);
    let events = teams.profile_events().await;
    assert_eq!(events.len(), 2);
    assert_eq!(events[1].detail.0["changed"], json!(["email"]));
    assert_eq!(events[1].detail.0["first_lookup"], json!(false));

    // An unchanged answer a day later is no new event.
    teams.later(time::Duration::hours(25));
    teams.say(FRANK, "help").await;
    assert_eq!(teams.lookups(), 3);
    assert_eq!(teams.profile_events().await.len(), 2);
}

/// An answer about another person, or from another tenant, teaches nothing.
async fn answers_about_someone_else_or_another_tenant_are_ignored(db: Db) {
    let teams = Teams::start(&db, FRANK_MAIL).await;
    let cases: [(&str, Value); 4] = [
        (
            "another person",
            teams_member(
                FRANK.0,
                FRANK.1,
                "b0b00000-0000-4000-8000-000000000002",
                FRANK_MAIL,
                FRANK_UPN,
                TENANT,
            ),
        ),
        (
            "another tenant",
            teams_member(
                FRANK.0,
                FRANK.1,
                FRANK.2,
                FRANK_MAIL,
                FRANK_UPN,
                OTHER_TENANT,
            ),
        ),
        ("no tenant", {
            let mut v = teams_member(FRANK.0, FRANK.1, FRANK.2, FRANK_MAIL, FRANK_UPN, TENANT);
            v.as_object_mut().unwrap().remove("tenantId");
            v
        }),
        ("no object id", {
            let mut v = teams_member(FRANK.0, FRANK.1, FRANK.2, FRANK_MAIL, FRANK_UPN, TENANT);
            v.as_object_mut().unwrap().remove("aadObjectId");
            v
        }),
    ];
    for (i, (case, answer)) in cases.into_iter().enumerate() {
        teams.connector.set_member(FRANK.0, answer);
        let reply = teams.say(FRANK, GRAFANA).await;
        assert_eq!(teams.lookups(), i + 1, "{case}: asked");
        assert!(reply.contains(NOT_VISIBLE), "{case}: {reply}");
        let frank = teams.user(FRANK.2).await;
        assert_eq!((frank.email, frank.upn), (None, None), "{case}");
        assert!(frank.directory_check_failed, "{case}");
        // The retry window passes before the next case.
        teams.later(time::Duration::minutes(16));
    }
    assert_eq!(teams.requests_of(FRANK.2).await, 0);
    assert!(teams.profile_events().await.is_empty());
}

/// A failing lookup (403, 404, 429, 500, or no answer at all) still answers the turn, grants
/// nothing new, keeps what the person had, is not repeated on the next turns, and is retried
/// after the retry window.
async fn a_failing_lookup_keeps_what_people_had_and_is_retried_later(db: Db) {
    const ALICE: (&str, &str, &str) = (
        "29:1alice",
        "Alice Requester",
        "a11ce000-0000-4000-8000-000000000001",
    );
    let teams = Teams::start(&db, FRANK_MAIL).await;
    // 0: the Connector never answers (the lookup gives up after its timeout).
    for status in [403u16, 404, 429, 500, 0] {
        teams.connector.fail_members(Some(status));
        let before = teams.lookups();

        // Frank is new: nothing is granted from a guess.
        let reply = teams.say(FRANK, GRAFANA).await;
        assert!(reply.contains(NOT_VISIBLE), "{status}: {reply}");
        assert!(teams.lookups() > before, "{status}: asked");
        let frank = teams.user(FRANK.2).await;
        assert_eq!((frank.email, frank.upn), (None, None), "{status}");

        // Alice keeps her stored mail, and with it her folders (db-staging is in Databases).
        let reply = teams
            .say(
                ALICE,
                "request db-staging 1h because INC-4411 migration check",
            )
            .await;
        assert!(!reply.contains(NOT_VISIBLE), "{status}: {reply}");
        assert_eq!(
            teams.user(ALICE.2).await.email.as_deref(),
            Some("alice@contoso.example")
        );

        // Not asked again on every turn.
        let asked = teams.lookups();
        teams.later(time::Duration::minutes(10));
        teams.say(FRANK, "help").await;
        teams.say(ALICE, "help").await;
        assert_eq!(
            teams.lookups(),
            asked,
            "{status}: no lookup within the retry window"
        );
        teams.later(time::Duration::minutes(6));
    }
    assert!(teams.profile_events().await.is_empty());
    assert_eq!(teams.requests_of(FRANK.2).await, 0);

    // The Connector is back: the next turn after the window asks again, and Frank gets in.
    teams.connector.fail_members(None);
    teams.directory_says(FRANK, FRANK_MAIL, FRANK_UPN);
    let asked = teams.lookups();
    let reply = teams.say(FRANK, GRAFANA).await;
    assert_eq!(teams.lookups(), asked + 1);
    assert!(!reply.contains(NOT_VISIBLE), "{reply}");
    assert_eq!(teams.requests_of(FRANK.2).await, 1);
}

/// With Graph as the people directory (home tenant set), Graph is asked first by object id and
/// the Connector is not; a Graph that fails falls back to the Connector.
async fn graph_is_asked_first_and_the_connector_when_graph_fails(db: Db) {
    const GINA: (&str, &str, &str) = (
        "29:1gina",
        "Gina Contractor",
        "61a40000-0000-4000-8000-00000000006a",
    );
    let graph = FakeGraph::start().await;
    graph.add_user(FRANK.2, FRANK.1, FRANK_MAIL, FRANK_UPN);
    let people: Arc<dyn UserDirectory> = Arc::new(graph.directory());
    let teams = Teams::start_with(
        &db,
        &[FRANK_UPN, "gina@contoso.example"],
        Some(people),
        &[("PASSKEY_BOT__TENANT_ID", TENANT)],
    )
    .await;

    let reply = teams.say(FRANK, GRAFANA).await;
    assert!(!reply.contains(NOT_VISIBLE), "{reply}");
    assert_eq!(teams.requests_of(FRANK.2).await, 1);
    let frank = teams.user(FRANK.2).await;
    assert_eq!(frank.email.as_deref(), Some(FRANK_MAIL));
    assert_eq!(frank.upn.as_deref(), Some(FRANK_UPN));
    let by_id: Vec<_> = graph
        .calls()
        .into_iter()
        .filter(|c| c.path == format!("/v1.0/users/{}", FRANK.2))
        .collect();
    assert_eq!(by_id.len(), 1, "{:?}", graph.calls());
    assert_eq!(
        teams.lookups(),
        0,
        "Graph answered: the Connector is not asked"
    );
    let events = teams.profile_events().await;
    assert_eq!(events[0].detail.0["source"], "graph");

    // Graph fails for Gina: the Connector answers instead (her mail is granted Platform too).
    graph.set_down(true);
    teams.directory_says(
        GINA,
        "gina@contoso.example",
        "gina@contoso.onmicrosoft.example",
    );
    let reply = teams.say(GINA, GRAFANA).await;
    assert!(!reply.contains(NOT_VISIBLE), "{reply}");
    assert_eq!(teams.lookups(), 1);
    assert_eq!(
        teams.user(GINA.2).await.email.as_deref(),
        Some("gina@contoso.example")
    );
}

/// A mail that moved (Erin left, her address went to Frank) names only its new holder once the
/// directory gives it to him: the old holder in the same tenant loses it at once, and is looked
/// up again on her next turn; a person of another tenant with the same address is not touched.
async fn an_address_that_moved_stops_naming_its_old_holder(db: Db) {
    const ERIN: (&str, &str, &str) = (
        "29:1erin",
        "Erin Contractor",
        "e2140000-0000-4000-8000-000000000005",
    );
    const ERIN_MAIL: &str = "erin@contoso.example";
    let teams = Teams::start(&db, FRANK_MAIL).await;
    let elsewhere = db
        .store
        .upsert_user(
            &passkey::store::NewUser {
                aad_object_id: "0e1e0000-0000-4000-8000-0000000000e1".into(),
                tenant_id: Some(OTHER_TENANT.into()),
                teams_user_id: None,
                upn: None,
                email: Some(ERIN_MAIL.into()),
                display_name: "Erin Elsewhere".into(),
                initial_role: passkey::domain::Role::Requester,
            },
            t0(),
        )
        .await
        .unwrap();
    let erin_before = teams.user(ERIN.2).await;
    assert_eq!(erin_before.email.as_deref(), Some(ERIN_MAIL));

    teams.directory_says(FRANK, &ERIN_MAIL.to_uppercase(), FRANK_UPN);
    let reply = teams
        .say(
            FRANK,
            "request db-staging 1h because INC-4411 migration check",
        )
        .await;
    assert!(!reply.contains(NOT_VISIBLE), "{reply}");
    assert_eq!(teams.requests_of(FRANK.2).await, 1);

    let erin = teams.user(ERIN.2).await;
    assert_eq!(
        (erin.email, erin.upn),
        (None, None),
        "the address moved to Frank"
    );
    assert_eq!(
        erin.directory_checked_at, None,
        "Erin is looked up on her next turn"
    );
    let frank = teams.user(FRANK.2).await;
    let holders = db
        .raw
        .texts(&format!(
            "SELECT aad_object_id FROM users WHERE lower(email) = '{ERIN_MAIL}' AND tenant_id = '{TENANT}'"
        ))
        .await
        .unwrap();
    assert_eq!(holders, [frank.aad_object_id.as_str()]);
    let untouched = teams.user(&elsewhere.aad_object_id).await;
    assert_eq!(untouched.email.as_deref(), Some(ERIN_MAIL));
    let events = teams.profile_events().await;
    assert_eq!(events.len(), 2);
    let released = events
        .iter()
        .find(|e| e.detail.0["user_id"] == json!(erin.id))
        .expect("Erin's change is audited");
    // The demo gave Erin the address as her UPN too.
    assert_eq!(released.detail.0["changed"], json!(["email", "upn"]));
    assert_eq!(released.detail.0["moved_to_user_id"], json!(frank.id));

    // Erin writes again; the directory does not know her any more: she has no address, and the
    // folder her old mail named is closed to her.
    let reply = teams
        .say(
            ERIN,
            "request db-staging 1h because INC-4411 migration check",
        )
        .await;
    assert!(reply.contains(NOT_VISIBLE), "{reply}");
    assert_eq!(teams.lookups(), 2);
}

on_both_databases!(
    an_address_that_moved_stops_naming_its_old_holder,
    a_new_person_granted_a_folder_by_mail_can_request_at_once,
    a_user_entry_naming_the_upn_grants_the_folder,
    a_person_stored_without_addresses_is_looked_up_and_their_cached_permissions_dropped,
    the_lookup_is_repeated_only_after_a_day_and_picks_up_a_changed_mail,
    answers_about_someone_else_or_another_tenant_are_ignored,
    a_failing_lookup_keeps_what_people_had_and_is_retried_later,
    graph_is_asked_first_and_the_connector_when_graph_fails,
);

/// With an app id (a real channel), the member lookup goes to the activity's verified Connector
/// with the bot's Connector token, like every other Connector call.
#[tokio::test]
async fn the_member_lookup_carries_the_connector_token() {
    use common::channel::{APP_ID, CONNECTOR_TOKEN, Issuer, message, sign};
    let issuer = Issuer::start().await;
    let db = common::fresh_sqlite().await;
    let db = Db {
        store: db.store.clone(),
        raw: db.store.clone(),
        engine: "sqlite",
    };
    let metadata = issuer.bf_metadata_url();
    let https = common::tokens::HttpsTokens::front(&issuer.oauth_authority()).await;
    let entra = issuer.entra_metadata_template();
    let teams = Teams::start_configured(
        &db,
        &[FRANK_MAIL],
        None,
        &[
            ("PASSKEY_BOT__APP_ID", APP_ID),
            ("PASSKEY_BOT__APP_PASSWORD", "test-app-password"),
            ("PASSKEY_BOT__OPENID_METADATA_URL", metadata.as_str()),
            ("PASSKEY_BOT__ENTRA_OPENID_METADATA_URL", entra.as_str()),
            ("PASSKEY_BOT__CONNECTOR_HOSTS", "127.0.0.1"),
        ],
        |settings| https.trusted_by(settings),
    )
    .await;
    teams.directory_says(FRANK, FRANK_MAIL, FRANK_UPN);
    let now = {
        use passkey::domain::Clock;
        teams.server.clock.now().unix_seconds()
    };
    let token = sign(
        "channel-a",
        "kid-a",
        &json!({
            "iss": "https://api.botframework.com",
            "aud": APP_ID,
            "exp": now + 3600,
            "nbf": now - 60,
            "serviceurl": teams.connector.service_url,
        }),
    );
    let mut activity = message(&teams.connector.service_url, "t-1", GRAFANA);
    activity["from"] = json!({"id": FRANK.0, "name": FRANK.1, "aadObjectId": FRANK.2});
    activity["conversation"]["id"] = json!("a:1frank-personal");
    let r = reqwest::Client::new()
        .post(teams.server.url("/api/messages"))
        .header("authorization", format!("Bearer {token}"))
        .json(&activity)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let lookups = teams.connector.member_calls();
    assert_eq!(lookups.len(), 1);
    assert_eq!(
        lookups[0].path,
        "/connector/v3/conversations/a:1frank-personal/members/29:1frank"
    );
    assert_eq!(
        lookups[0].authorization.as_deref(),
        Some(format!("Bearer {CONNECTOR_TOKEN}").as_str())
    );
    assert_eq!(teams.requests_of(FRANK.2).await, 1);
}

/// Mail and UPN are personal data: lookups are logged by user id and source, even at debug
/// level, and the addresses never appear — not when found, changed, or refused.
#[tokio::test]
async fn looked_up_addresses_never_reach_the_log() {
    let (log, _guard) = common::logs::capture_app(&[("PASSKEY_LOG__FILTER", "passkey=debug")]);
    let db = common::fresh_sqlite().await;
    let db = Db {
        store: db.store.clone(),
        raw: db.store.clone(),
        engine: "sqlite",
    };
    let teams = Teams::start(&db, FRANK_MAIL).await;
    teams.directory_says(FRANK, FRANK_MAIL, FRANK_UPN);
    teams.say(FRANK, GRAFANA).await;
    teams.later(time::Duration::hours(25));
    teams.directory_says(
        FRANK,
        "frank.renamed@contoso.example",
        "frank.renamed@contoso.example",
    );
    teams.say(FRANK, "help").await;
    teams.later(time::Duration::hours(25));
    teams.connector.set_member(
        FRANK.0,
        teams_member(
            FRANK.0,
            FRANK.1,
            FRANK.2,
            "mallory@contoso.example",
            FRANK_UPN,
            OTHER_TENANT,
        ),
    );
    teams.say(FRANK, "help").await;
    assert_eq!(teams.lookups(), 3);

    let text = log.text().to_lowercase();
    assert!(
        text.contains("addresses looked up"),
        "the lookups are logged: {text}"
    );
    assert!(text.contains("directory answer ignored"), "{text}");
    for address in [
        FRANK_MAIL,
        FRANK_UPN,
        "frank.renamed@contoso.example",
        "mallory@contoso.example",
    ] {
        assert!(!text.contains(address), "{address} in the log: {text}");
    }
}
