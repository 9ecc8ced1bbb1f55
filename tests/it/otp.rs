//! The second factor (issue 8) below the HTTP layer, on both databases: SMS challenges (send,
//! verify once, wrong codes lock, expiry, resend cooldown and cap, other people's challenges),
//! authenticator apps (enroll, confirm, RFC 6238 codes, no replay of a step), phone numbers
//! (validated, sealed), and a dump of every table touched holding no plaintext number, code or
//! secret. Then the SMS gateways' wire formats against fake Azure Communication Services and
//! Twilio servers on loopback, including their error answers (a passing outage: the person is
//! told to try again; a refused credential: admins are alerted once and the person is sent to an
//! admin; nothing leaks into errors, the audit trail or the logs).

use crate::common;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::IntoResponse;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use common::redirector::Redirector;
use common::{Db, t0};
use passkey::canonical::sha256_hex;
use passkey::config::{OtpSettings, Settings, SmsProvider};
use passkey::crypto::DataKey;
use passkey::domain::*;
use passkey::governance::admin;
use passkey::governance::lifecycle::ClientInfo;
use passkey::otp::code::PhoneNumber;
use passkey::otp::sms::{SmsError, SmsFailure, SmsSender};
use passkey::otp::{Actor, FactorProofInput, OtpError, OtpService, totp};
use passkey::store::*;
use secrecy::{ExposeSecret, SecretString};
use std::sync::{Arc, Mutex};
use time::Duration;

on_both_databases!(
    a_texted_code_opens_its_challenge_once,
    five_wrong_codes_lock_the_challenge_and_the_right_code_is_refused_after,
    an_expired_challenge_accepts_nothing,
    resends_wait_for_the_cooldown_and_stop_at_the_cap,
    another_persons_challenge_is_not_yours,
    an_authenticator_is_enrolled_confirmed_and_never_accepts_a_step_twice,
    without_phone_or_authenticator_there_is_no_challenge,
    phone_numbers_are_validated_and_sealed,
    a_failed_send_is_audited_and_leaves_no_challenge,
    the_database_holds_no_plaintext_number_code_or_secret,
    twenty_parallel_right_codes_open_the_challenge_once,
    parallel_wrong_guesses_never_get_more_than_five_tries,
    an_admin_reset_authenticator_falls_back_to_texts_until_enrolled_again,
    demo_people_get_fictional_phone_numbers_in_dev,
    locked_challenges_count_toward_the_hourly_cap,
    the_store_writes_second_factor_changes_only_from_the_state_seen,
    a_profile_number_from_the_directory_is_used_when_none_is_stored,
    wrong_codes_are_capped_per_person_across_challenges_and_channels,
    admins_are_alerted_once_when_someone_reaches_the_wrong_code_cap,
    changing_the_authenticator_needs_a_code_texted_to_the_number_on_file,
    an_admin_invitation_lets_someone_without_a_factor_enroll_once_before_it_expires,
    second_factor_notices_show_times_in_the_persons_own_zone,
);

const ALICE_PHONE: &str = "+15550104411";
const BOB_PHONE: &str = "+447700900123";

/// Where a change on the page came from.
fn web() -> ClientInfo {
    ClientInfo {
        ip: Some("203.0.113.9".into()),
        user_agent: None,
    }
}

// ---- the world ---------------------------------------------------------------------------------

/// Records every message instead of sending it; fails on demand.
#[derive(Default)]
struct RecordingSender {
    sent: Mutex<Vec<(String, String)>>,
    fail: Mutex<Option<SmsFailure>>,
}

impl RecordingSender {
    fn last_code(&self) -> String {
        let sent = self.sent.lock().unwrap();
        let (_, message) = sent.last().expect("a message was sent");
        message
            .split_whitespace()
            .find(|w| {
                w.trim_end_matches('.').len() == 6
                    && w.trim_end_matches('.').bytes().all(|b| b.is_ascii_digit())
            })
            .expect("a code in the message")
            .trim_end_matches('.')
            .to_string()
    }

    fn count(&self) -> usize {
        self.sent.lock().unwrap().len()
    }
}

#[async_trait::async_trait]
impl SmsSender for RecordingSender {
    fn provider(&self) -> &'static str {
        "recording"
    }

    async fn send(&self, to: &PhoneNumber, message: &SecretString) -> Result<(), SmsError> {
        if let Some(class) = *self.fail.lock().unwrap() {
            return Err(SmsError {
                provider: "recording",
                class,
                detail: "HTTP 503".into(),
            });
        }
        self.sent
            .lock()
            .unwrap()
            .push((to.e164().to_string(), message.expose_secret().to_string()));
        Ok(())
    }
}

/// What people and admins were told in Teams.
#[derive(Default)]
struct Told {
    people: Mutex<Vec<(i64, String)>>,
    admins: Mutex<Vec<String>>,
}

#[async_trait::async_trait]
impl passkey::governance::lifecycle::Notifier for Told {
    async fn deliver(&self, _notices: &[passkey::governance::lifecycle::Notice]) {}
    async fn alert_admins(&self, text: &str) {
        self.admins.lock().unwrap().push(text.to_string());
    }
    async fn tell_user(&self, user_id: i64, text: &str) {
        self.people
            .lock()
            .unwrap()
            .push((user_id, text.to_string()));
    }
}

impl Told {
    fn to(&self, user_id: i64) -> Vec<String> {
        let people = self.people.lock().unwrap();
        people
            .iter()
            .filter(|(id, _)| *id == user_id)
            .map(|(_, text)| text.clone())
            .collect()
    }
}

struct World {
    otp: OtpService,
    told: Arc<Told>,
    store: Arc<dyn Store>,
    clock: Arc<ManualClock>,
    sms: Arc<RecordingSender>,
    alice: User,
    bob: User,
    /// Alice's request; its issuance token hash is `TOKEN_HASH`.
    request: Request,
    token_hash: String,
}

async fn world(db: &Db) -> World {
    world_with(db, OtpSettings::default()).await
}

async fn world_with(db: &Db, settings: OtpSettings) -> World {
    let store = db.store.clone();
    let clock = Arc::new(ManualClock::new(t0()));
    let sms = Arc::new(RecordingSender::default());
    let key = Arc::new(DataKey::generate().unwrap().0);
    let told = Arc::new(Told::default());
    let otp = OtpService::new(store.clone(), clock.clone(), key, sms.clone(), settings)
        .with_notifier(told.clone());
    let user = |aad: &str, name: &str, mail: &str| NewUser {
        aad_object_id: aad.into(),
        tenant_id: Some("tenant-1".into()),
        teams_user_id: None,
        upn: Some(mail.into()),
        email: Some(mail.into()),
        display_name: name.into(),
        initial_role: Role::Requester,
    };
    let alice = store
        .upsert_user(&user("aad-alice", "Alice", "alice@contoso.example"), t0())
        .await
        .unwrap();
    let bob = store
        .upsert_user(&user("aad-bob", "Bob", "bob@contoso.example"), t0())
        .await
        .unwrap();
    let folder = store
        .upsert_folder("FOLDERUID0000000000001", "Databases", t0())
        .await
        .unwrap();
    let record = store
        .upsert_record(
            &NewRecord {
                vault_uid: "RECORDUID0000000000001".into(),
                title: "db-prod".into(),
                record_type: "databaseCredentials".into(),
                folder_id: Some(folder.id),
                revision: 1,
                vault_owner: None,
                owner_user_id: None,
                sensitivity: Sensitivity::High,
                discovery_source: DiscoverySource::Manual,
            },
            t0(),
        )
        .await
        .unwrap();
    let request = store
        .create_request(
            &NewRequest {
                requester_id: alice.id,
                record_id: record.id,
                status: RequestStatus::Pending,
                justification: "INC-4411 failover".into(),
                ticket_id: Some("INC-4411".into()),
                requested_duration_secs: 3600,
                break_glass: false,
                required_approvals: 1,
                max_issuances: 3,
                policy_version: None,
                review_required: false,
                otp_required: true,
                decision_reason: None,
            },
            &[],
            &NewAuditEvent::new(format!("user:{}", alice.id), "REQUEST_CREATED", t0()),
            t0(),
        )
        .await
        .unwrap();
    World {
        otp,
        told,
        store,
        clock,
        sms,
        alice,
        bob,
        request,
        token_hash: sha256_hex("issuance-token-of-the-test"),
    }
}

impl World {
    async fn with_phones(self) -> Self {
        let admin = Actor::Admin(admin::Actor::Cli);
        self.otp
            .set_phone(&admin, self.alice.id, ALICE_PHONE)
            .await
            .unwrap();
        self.otp
            .set_phone(&admin, self.bob.id, BOB_PHONE)
            .await
            .unwrap();
        self
    }

    async fn actions(&self) -> Vec<String> {
        self.store
            .audit_events_after(0, 1000)
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.action)
            .collect()
    }

    async fn challenge(&self, id: uuid::Uuid) -> OtpChallenge {
        self.store.challenge_by_id(id).await.unwrap().unwrap()
    }

    /// A code that is not the one sent.
    /// Sets up an authenticator for `user` the way the page does: a code texted to the number on
    /// file proves they hold it, then the app's secret is shown. The clock first moves past the
    /// texts' cooldown.
    async fn enroll(&self, user: &User) -> passkey::otp::TotpEnrollment {
        self.clock.advance(Duration::seconds(61));
        let proof = self
            .otp
            .begin_factor_change(user, FactorChange::Enroll)
            .await
            .unwrap();
        self.otp
            .enroll_totp(user, &self.texted_proof(&proof), &web())
            .await
            .unwrap()
    }

    /// The proof a texted factor-change code gives (the last text sent).
    fn texted_proof(&self, proof: &passkey::otp::ProofStarted) -> FactorProofInput {
        FactorProofInput::TextedCode {
            proof_id: proof.proof_id,
            code: SecretString::from(self.sms.last_code()),
        }
    }

    fn wrong(code: &str) -> String {
        let n: u32 = code.parse().unwrap();
        format!("{:06}", (n + 1) % 1_000_000)
    }
}

fn base32_decode(text: &str) -> Vec<u8> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut out = Vec::new();
    let (mut buffer, mut bits) = (0u32, 0u32);
    for c in text.bytes() {
        let v = ALPHABET.iter().position(|&a| a == c).expect("base32 digit") as u32;
        buffer = (buffer << 5) | v;
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out.push((buffer >> bits) as u8);
        }
    }
    out
}

fn secret_of(uri: &str) -> Vec<u8> {
    let secret = uri
        .split(['?', '&'])
        .find_map(|p| p.strip_prefix("secret="))
        .expect("secret in the URI");
    base32_decode(secret)
}

fn code_now(secret: &[u8], clock: &ManualClock) -> String {
    totp::totp_at_step(secret, totp::step_at(clock.now().unix_seconds()))
}

// ---- SMS challenges --------------------------------------------------------------------------

async fn a_texted_code_opens_its_challenge_once(db: Db) {
    let w = world(&db).await.with_phones().await;
    let started = w
        .otp
        .begin(&w.alice, &w.request, &w.token_hash)
        .await
        .unwrap();
    assert_eq!(started.channel, OtpChannel::Sms);
    assert_eq!(started.destination_hint.as_deref(), Some("•••• 4411"));
    assert_eq!(started.expires_at, t0().plus(Duration::minutes(5)));
    assert_eq!(started.resend_after, Some(t0().plus(Duration::seconds(60))));
    let json = serde_json::to_value(&started).unwrap();
    assert_eq!(json["channel"], "sms");
    assert_eq!(json["destination_hint"], "•••• 4411");
    assert_eq!(json["expires_at"], "2026-11-23T09:05:00.000000Z");
    assert_eq!(w.sms.sent.lock().unwrap()[0].0, ALICE_PHONE);
    let code = w.sms.last_code();

    let row = w.challenge(started.challenge_id).await;
    assert_eq!(row.token_hash.as_deref(), Some(w.token_hash.as_str()));
    assert_eq!((row.send_count, row.attempts, row.max_attempts), (1, 0, 5));
    assert!(!row.code_hash.as_deref().unwrap().contains(&code));

    // Typed with a space, as people do.
    let typed = format!("{} {}", &code[..3], &code[3..]);
    let verified = w
        .otp
        .verify(&w.alice, started.challenge_id, &typed)
        .await
        .unwrap();
    assert_eq!(verified.request_id, w.request.id);
    assert_eq!(verified.token_hash, w.token_hash);
    assert!(verified.matches_token(&SecretString::from("issuance-token-of-the-test")));
    assert!(!verified.matches_token(&SecretString::from("another-token")));

    let again = w.otp.verify(&w.alice, started.challenge_id, &code).await;
    assert!(matches!(again, Err(OtpError::AlreadyUsed)), "{again:?}");
    assert!(
        w.challenge(started.challenge_id)
            .await
            .consumed_at
            .is_some()
    );
    let actions = w.actions().await;
    assert!(
        actions.ends_with(&["OTP_SENT".to_string(), "OTP_VERIFIED".to_string()]),
        "{actions:?}"
    );
}

async fn five_wrong_codes_lock_the_challenge_and_the_right_code_is_refused_after(db: Db) {
    let w = world(&db).await.with_phones().await;
    let started = w
        .otp
        .begin(&w.alice, &w.request, &w.token_hash)
        .await
        .unwrap();
    let code = w.sms.last_code();
    let wrong = World::wrong(&code);
    for left in [4u32, 3, 2, 1] {
        match w.otp.verify(&w.alice, started.challenge_id, &wrong).await {
            Err(OtpError::WrongCode { attempts_left }) => assert_eq!(attempts_left, left),
            other => panic!("expected a wrong code, got {other:?}"),
        }
    }
    // Garbage counts as a wrong attempt too: the fifth locks.
    let fifth = w.otp.verify(&w.alice, started.challenge_id, "abc").await;
    assert!(matches!(fifth, Err(OtpError::Locked)), "{fifth:?}");
    let sixth = w.otp.verify(&w.alice, started.challenge_id, &code).await;
    assert!(
        matches!(sixth, Err(OtpError::Locked)),
        "the right code after the lock: {sixth:?}"
    );
    let row = w.challenge(started.challenge_id).await;
    assert_eq!(row.attempts, 5);
    assert!(row.locked_at.is_some() && row.consumed_at.is_none());
    // A locked challenge sends nothing more either.
    let resend = w.otp.resend(&w.alice, started.challenge_id).await;
    assert!(matches!(resend, Err(OtpError::Locked)), "{resend:?}");
    let actions = w.actions().await;
    assert_eq!(actions.iter().filter(|a| *a == "OTP_WRONG_CODE").count(), 4);
    assert_eq!(actions.iter().filter(|a| *a == "OTP_LOCKED").count(), 1);
    assert!(!actions.contains(&"OTP_VERIFIED".to_string()));
}

async fn an_expired_challenge_accepts_nothing(db: Db) {
    let w = world(&db).await.with_phones().await;
    let started = w
        .otp
        .begin(&w.alice, &w.request, &w.token_hash)
        .await
        .unwrap();
    let code = w.sms.last_code();
    w.clock.advance(Duration::minutes(5));
    let late = w.otp.verify(&w.alice, started.challenge_id, &code).await;
    assert!(matches!(late, Err(OtpError::Expired)), "{late:?}");
    let resend = w.otp.resend(&w.alice, started.challenge_id).await;
    assert!(matches!(resend, Err(OtpError::Expired)), "{resend:?}");
    let row = w.challenge(started.challenge_id).await;
    assert_eq!(row.attempts, 0, "an expired challenge counts nothing");
    assert!(row.consumed_at.is_none());
    // An id nobody issued (or one housekeeping forgot) reads as expired.
    let unknown = w.otp.verify(&w.alice, uuid::Uuid::new_v4(), &code).await;
    assert!(matches!(unknown, Err(OtpError::Expired)));
}

async fn resends_wait_for_the_cooldown_and_stop_at_the_cap(db: Db) {
    let w = world(&db).await.with_phones().await;
    let started = w
        .otp
        .begin(&w.alice, &w.request, &w.token_hash)
        .await
        .unwrap();
    let first = w.sms.last_code();
    w.clock.advance(Duration::seconds(20));
    match w.otp.resend(&w.alice, started.challenge_id).await {
        Err(OtpError::ResendTooSoon { retry_after_secs }) => assert_eq!(retry_after_secs, 40),
        other => panic!("expected the cooldown, got {other:?}"),
    }
    // Starting over doesn't dodge the cooldown either.
    let restart = w.otp.begin(&w.alice, &w.request, &w.token_hash).await;
    assert!(
        matches!(
            restart,
            Err(OtpError::ResendTooSoon {
                retry_after_secs: 40
            })
        ),
        "{restart:?}"
    );
    assert_eq!(w.sms.count(), 1);

    w.clock.advance(Duration::seconds(40));
    let second = w.otp.resend(&w.alice, started.challenge_id).await.unwrap();
    assert_eq!(second.challenge_id, started.challenge_id);
    assert_eq!(second.expires_at, w.clock.now().plus(Duration::minutes(5)));
    let second_code = w.sms.last_code();
    assert_eq!(w.sms.count(), 2);
    // The first code stopped working when the second was sent (unless they happen to be equal).
    if second_code != first {
        let old = w.otp.verify(&w.alice, started.challenge_id, &first).await;
        assert!(
            matches!(old, Err(OtpError::WrongCode { attempts_left: 4 })),
            "{old:?}"
        );
    }
    w.clock.advance(Duration::seconds(60));
    let third = w.otp.resend(&w.alice, started.challenge_id).await.unwrap();
    assert_eq!(third.resend_after, None, "the third text is the last");
    w.clock.advance(Duration::seconds(60));
    let fourth = w.otp.resend(&w.alice, started.challenge_id).await;
    assert!(matches!(fourth, Err(OtpError::NoMoreResends)), "{fourth:?}");
    assert_eq!(w.sms.count(), 3);
    assert_eq!(w.challenge(started.challenge_id).await.send_count, 3);
    let code = w.sms.last_code();
    w.otp
        .verify(&w.alice, started.challenge_id, &code)
        .await
        .unwrap();
}

async fn another_persons_challenge_is_not_yours(db: Db) {
    let w = world(&db).await.with_phones().await;
    let refused = w.otp.begin(&w.bob, &w.request, &w.token_hash).await;
    assert!(matches!(refused, Err(OtpError::NotYours)), "{refused:?}");
    assert_eq!(
        w.sms.count(),
        0,
        "nothing is texted for someone else's request"
    );

    let started = w
        .otp
        .begin(&w.alice, &w.request, &w.token_hash)
        .await
        .unwrap();
    let code = w.sms.last_code();
    let stolen = w.otp.verify(&w.bob, started.challenge_id, &code).await;
    assert!(matches!(stolen, Err(OtpError::NotYours)), "{stolen:?}");
    let resend = w.otp.resend(&w.bob, started.challenge_id).await;
    assert!(matches!(resend, Err(OtpError::NotYours)), "{resend:?}");
    let row = w.challenge(started.challenge_id).await;
    assert_eq!((row.attempts, row.send_count), (0, 1));
    assert!(row.consumed_at.is_none());
    // The owner still can.
    w.otp
        .verify(&w.alice, started.challenge_id, &code)
        .await
        .unwrap();
}

async fn locked_challenges_count_toward_the_hourly_cap(db: Db) {
    let w = world(&db).await.with_phones().await;
    let enrollment = w.enroll(&w.alice).await;
    let secret = secret_of(enrollment.otpauth_uri.expose_secret());
    w.otp
        .confirm_totp(&w.alice, &code_now(&secret, &w.clock), &web())
        .await
        .unwrap();
    let first_wrong = w.clock.now();
    // An authenticator code stays the same for 30 s: without a cap across challenges, new
    // challenges would give endless guesses at it. Two locked challenges are 10 wrong codes.
    for round in 0..2 {
        let started = w
            .otp
            .begin(&w.alice, &w.request, &w.token_hash)
            .await
            .unwrap();
        let wrong = World::wrong(&code_now(&secret, &w.clock));
        for _ in 0..5 {
            let _ = w.otp.verify(&w.alice, started.challenge_id, &wrong).await;
        }
        assert!(
            w.challenge(started.challenge_id).await.locked_at.is_some(),
            "round {round}"
        );
        w.clock.advance(Duration::minutes(10));
    }
    // Wrong codes at +0 and +10 min; now is +20 min: the first ones age out at +60 min.
    match w.otp.begin(&w.alice, &w.request, &w.token_hash).await {
        Err(e @ OtpError::TooManyFailures { retry_after_secs }) => {
            assert_eq!(
                retry_after_secs as i64,
                first_wrong
                    .plus(Duration::hours(1))
                    .since(w.clock.now())
                    .whole_seconds()
            );
            assert!(e.to_string().contains("40 minute"), "{e}");
        }
        other => panic!("expected a pause, got {other:?}"),
    }
    w.clock.advance(Duration::minutes(40));
    w.otp
        .begin(&w.alice, &w.request, &w.token_hash)
        .await
        .unwrap();
}

/// Issue 14.2: four wrong codes never lock a challenge, and the same unused issuance token opens
/// a new one at once. The cap must hold per person over a rolling hour, across challenges and
/// across SMS and authenticator channels: 10 wrong codes (the default), then no new challenge and
/// no further guess on an open one until the hour has passed.
async fn wrong_codes_are_capped_per_person_across_challenges_and_channels(db: Db) {
    let w = world(&db).await.with_phones().await;
    let mut wrong_codes = 0;
    // Texted codes: 4 wrong ones on each of two challenges (8).
    for _ in 0..2 {
        let started = w
            .otp
            .begin(&w.alice, &w.request, &w.token_hash)
            .await
            .unwrap();
        let wrong = World::wrong(&w.sms.last_code());
        for _ in 0..4 {
            let answer = w.otp.verify(&w.alice, started.challenge_id, &wrong).await;
            assert!(
                matches!(answer, Err(OtpError::WrongCode { .. })),
                "{answer:?}"
            );
            wrong_codes += 1;
        }
        w.clock.advance(Duration::seconds(61));
    }
    // Then an authenticator app: its wrong codes count against the same allowance.
    let enrollment = w.enroll(&w.alice).await;
    let secret = secret_of(enrollment.otpauth_uri.expose_secret());
    w.otp
        .confirm_totp(&w.alice, &code_now(&secret, &w.clock), &web())
        .await
        .unwrap();
    let started = w
        .otp
        .begin(&w.alice, &w.request, &w.token_hash)
        .await
        .unwrap();
    assert_eq!(started.channel, OtpChannel::Totp);
    let wrong = World::wrong(&code_now(&secret, &w.clock));
    let answer = w.otp.verify(&w.alice, started.challenge_id, &wrong).await;
    assert!(
        matches!(answer, Err(OtpError::WrongCode { .. })),
        "{answer:?}"
    );
    // The 10th wrong code is counted and answered with the pause, not with another try.
    let answer = w.otp.verify(&w.alice, started.challenge_id, &wrong).await;
    assert!(
        matches!(answer, Err(OtpError::TooManyFailures { .. })),
        "{answer:?}"
    );
    wrong_codes += 2;
    assert_eq!(wrong_codes, 10);
    assert_eq!(
        w.store
            .wrong_codes_since(w.alice.id, t0().minus(Duration::seconds(1)))
            .await
            .unwrap()
            .len(),
        10
    );
    // The allowance is spent: the open challenge takes no more guesses, even the right code...
    let right = code_now(&secret, &w.clock);
    let answer = w.otp.verify(&w.alice, started.challenge_id, &right).await;
    assert!(
        matches!(answer, Err(OtpError::TooManyFailures { .. })),
        "an 11th guess on an open challenge: {answer:?}"
    );
    // ...and the same unused token opens no new challenge.
    w.clock.advance(Duration::minutes(10));
    match w.otp.begin(&w.alice, &w.request, &w.token_hash).await {
        Err(OtpError::TooManyFailures { retry_after_secs }) => {
            // The first wrong code (t0) ages out at t0 + 1 h.
            let now = w.clock.now();
            assert_eq!(
                retry_after_secs as i64,
                t0().plus(Duration::hours(1)).since(now).whole_seconds()
            );
        }
        other => panic!("a new challenge past the cap: {other:?}"),
    }
    // Once the hour has passed, the person may try again.
    w.clock.advance(Duration::hours(1));
    w.otp
        .begin(&w.alice, &w.request, &w.token_hash)
        .await
        .unwrap();
}

async fn admins_are_alerted_once_when_someone_reaches_the_wrong_code_cap(db: Db) {
    let w = world_with(
        &db,
        OtpSettings {
            max_wrong_codes_per_hour: 3,
            ..OtpSettings::default()
        },
    )
    .await
    .with_phones()
    .await;
    let started = w
        .otp
        .begin(&w.alice, &w.request, &w.token_hash)
        .await
        .unwrap();
    let wrong = World::wrong(&w.sms.last_code());
    for _ in 0..6 {
        let _ = w.otp.verify(&w.alice, started.challenge_id, &wrong).await;
    }
    w.clock.advance(Duration::minutes(5));
    let later = w.otp.begin(&w.alice, &w.request, &w.token_hash).await;
    assert!(
        matches!(later, Err(OtpError::TooManyFailures { .. })),
        "{later:?}"
    );
    // Three counted (the cap), the rest refused uncounted; one alert, one audit event.
    assert_eq!(w.challenge(started.challenge_id).await.attempts, 3);
    let alerts = w.told.admins.lock().unwrap().clone();
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert!(
        alerts[0].contains("Alice") && alerts[0].contains("3 wrong"),
        "{alerts:?}"
    );
    let actions = w.actions().await;
    assert_eq!(
        actions
            .iter()
            .filter(|a| *a == "OTP_GUESS_CAP_REACHED")
            .count(),
        1
    );
    // A new hour, a new run of wrong codes: a new alert.
    w.clock.advance(Duration::hours(1));
    let again = w
        .otp
        .begin(&w.alice, &w.request, &w.token_hash)
        .await
        .unwrap();
    let wrong = World::wrong(&w.sms.last_code());
    for _ in 0..3 {
        let _ = w.otp.verify(&w.alice, again.challenge_id, &wrong).await;
    }
    assert_eq!(w.told.admins.lock().unwrap().len(), 2);
}

async fn changing_the_authenticator_needs_a_code_texted_to_the_number_on_file(db: Db) {
    use passkey::domain::FactorChange::{Enroll, Remove};
    let w = world(&db).await.with_phones().await;
    assert!(
        w.told.to(w.alice.id)[0].contains("set the phone number"),
        "an admin's change of number is told too"
    );
    w.told.people.lock().unwrap().clear();
    // No proof at all: nothing changes.
    let none = w
        .otp
        .enroll_totp(&w.alice, &FactorProofInput::Invitation, &web())
        .await;
    assert!(matches!(none, Err(OtpError::NoInvitation)), "{none:?}");
    // A made-up proof, and Bob's proof, are not Alice's.
    let made_up = FactorProofInput::TextedCode {
        proof_id: uuid::Uuid::new_v4(),
        code: SecretString::from("123456"),
    };
    let answer = w.otp.enroll_totp(&w.alice, &made_up, &web()).await;
    assert!(matches!(answer, Err(OtpError::Expired)), "{answer:?}");
    let bobs = w.otp.begin_factor_change(&w.bob, Enroll).await.unwrap();
    let answer = w
        .otp
        .enroll_totp(&w.alice, &w.texted_proof(&bobs), &web())
        .await;
    assert!(matches!(answer, Err(OtpError::NotYours)), "{answer:?}");
    // A code sent to remove the app does not set one up.
    let removal = w.otp.begin_factor_change(&w.alice, Remove).await.unwrap();
    assert_eq!(removal.destination_hint, "•••• 4411");
    let (to, text) = w.sms.sent.lock().unwrap().last().unwrap().clone();
    assert_eq!(to, ALICE_PHONE);
    assert!(text.contains("remove an authenticator app"), "{text}");
    let answer = w
        .otp
        .enroll_totp(&w.alice, &w.texted_proof(&removal), &web())
        .await;
    assert!(
        matches!(answer, Err(OtpError::ProofForAnotherChange)),
        "{answer:?}"
    );
    // A wrong code counts against the hourly allowance like any other.
    w.clock.advance(Duration::seconds(61));
    let proof = w.otp.begin_factor_change(&w.alice, Enroll).await.unwrap();
    let wrong = FactorProofInput::TextedCode {
        proof_id: proof.proof_id,
        code: SecretString::from(World::wrong(&w.sms.last_code())),
    };
    let answer = w.otp.enroll_totp(&w.alice, &wrong, &web()).await;
    assert!(
        matches!(answer, Err(OtpError::WrongCode { attempts_left: 4 })),
        "{answer:?}"
    );
    assert_eq!(
        w.store
            .wrong_codes_since(w.alice.id, t0().minus(Duration::seconds(1)))
            .await
            .unwrap()
            .len(),
        1
    );
    assert!(w.store.totp_enrollment(w.alice.id).await.unwrap().is_none());
    assert!(w.told.to(w.alice.id).is_empty(), "nothing changed yet");
    // The right code sets one up, once.
    let right = w.texted_proof(&proof);
    let first = w.otp.enroll_totp(&w.alice, &right, &web()).await.unwrap();
    let reused = w.otp.enroll_totp(&w.alice, &right, &web()).await;
    assert!(matches!(reused, Err(OtpError::AlreadyUsed)), "{reused:?}");
    let old_secret = secret_of(first.otpauth_uri.expose_secret());
    w.otp
        .confirm_totp(&w.alice, &code_now(&old_secret, &w.clock), &web())
        .await
        .unwrap();
    // Replacing a confirmed app needs the same proof; the old app stops answering once the new
    // one is set up.
    let replacement = w.enroll(&w.alice).await;
    let new_secret = secret_of(replacement.otpauth_uri.expose_secret());
    assert_ne!(new_secret, old_secret);
    w.clock.advance(Duration::seconds(30));
    w.otp
        .confirm_totp(&w.alice, &code_now(&new_secret, &w.clock), &web())
        .await
        .unwrap();
    let started = w
        .otp
        .begin(&w.alice, &w.request, &w.token_hash)
        .await
        .unwrap();
    w.clock.advance(Duration::seconds(30));
    let answer = w
        .otp
        .verify(
            &w.alice,
            started.challenge_id,
            &code_now(&old_secret, &w.clock),
        )
        .await;
    assert!(
        matches!(answer, Err(OtpError::WrongCode { .. })),
        "{answer:?}"
    );
    // Removing needs a removal code; an invitation is not proof for it.
    let answer = w
        .otp
        .remove_totp(&w.alice, &FactorProofInput::Invitation, &web())
        .await;
    assert!(matches!(answer, Err(OtpError::ProofRequired)), "{answer:?}");
    w.clock.advance(Duration::seconds(61));
    let removal = w.otp.begin_factor_change(&w.alice, Remove).await.unwrap();
    assert!(
        w.otp
            .remove_totp(&w.alice, &w.texted_proof(&removal), &web())
            .await
            .unwrap()
    );
    assert!(w.store.totp_enrollment(w.alice.id).await.unwrap().is_none());
    // Every change was told to Alice: what, when, from where, and what to do if it wasn't her.
    let told = w.told.to(w.alice.id);
    assert_eq!(told.len(), 5, "{told:#?}");
    for text in &told {
        assert!(text.contains("203.0.113.9"), "{text}");
        assert!(text.contains("2026-11-23"), "{text}");
        assert!(text.contains("Not you? Tell your admin"), "{text}");
        assert!(!text.contains(&w.sms.last_code()), "{text}");
    }
    assert!(told[4].contains("removed"), "{told:#?}");
    let actions = w.actions().await;
    for a in [
        "FACTOR_PROOF_SENT",
        "FACTOR_PROOF_WRONG_CODE",
        "FACTOR_PROOF_VERIFIED",
        "TOTP_ENROLLED",
        "TOTP_REMOVED",
    ] {
        assert!(
            actions.contains(&a.to_string()),
            "{a} missing from {actions:?}"
        );
    }
}

/// #18.6: what a person is told in Teams about their second factor shows its times in the zone
/// their Teams client last reported, named; someone whose client never reported one reads UTC,
/// named.
async fn second_factor_notices_show_times_in_the_persons_own_zone(db: Db) {
    let w = world(&db).await;
    w.store
        .set_user_time_zone(w.alice.id, "Europe/Berlin")
        .await
        .unwrap();
    let admin = admin::Actor::Cli;
    w.otp.invite_totp(&admin, w.alice.id).await.unwrap();
    w.otp.invite_totp(&admin, w.bob.id).await.unwrap();
    let to_alice = w.told.to(w.alice.id).join("\n");
    assert!(
        to_alice.contains("(2026-11-23 10:00 Europe/Berlin)")
            && to_alice.contains("before 2026-11-24 10:00 Europe/Berlin"),
        "{to_alice}"
    );
    assert!(!to_alice.contains("UTC"), "{to_alice}");
    let to_bob = w.told.to(w.bob.id).join("\n");
    assert!(
        to_bob.contains("(2026-11-23 09:00 UTC)") && to_bob.contains("before 2026-11-24 09:00 UTC"),
        "{to_bob}"
    );

    // An admin's change of the number is told in the person's zone too.
    w.otp
        .set_phone(&Actor::Admin(admin::Actor::Cli), w.alice.id, ALICE_PHONE)
        .await
        .unwrap();
    let told = w.told.to(w.alice.id);
    let last = told.last().unwrap();
    assert!(
        last.contains("2026-11-23 10:00 Europe/Berlin, now"),
        "{last}"
    );
}

async fn an_admin_invitation_lets_someone_without_a_factor_enroll_once_before_it_expires(db: Db) {
    let w = world(&db).await;
    // Alice has no number on file: no proof code can be texted.
    let answer = w
        .otp
        .begin_factor_change(&w.alice, passkey::domain::FactorChange::Enroll)
        .await;
    assert!(matches!(answer, Err(OtpError::NoPhoneOnFile)), "{answer:?}");
    assert!(answer.unwrap_err().to_string().contains("admin"));
    let admin = admin::Actor::Cli;
    let invitation = w.otp.invite_totp(&admin, w.alice.id).await.unwrap();
    assert_eq!(
        invitation.expires_at,
        w.clock.now().plus(Duration::hours(24))
    );
    assert!(w.otp.factors(&w.alice).await.unwrap().invitation_open);
    let told = w.told.to(w.alice.id);
    assert_eq!(told.len(), 1);
    assert!(told[0].contains("invited you"), "{told:?}");
    // Bob's session can't use Alice's invitation.
    let answer = w
        .otp
        .enroll_totp(&w.bob, &FactorProofInput::Invitation, &web())
        .await;
    assert!(matches!(answer, Err(OtpError::NoInvitation)), "{answer:?}");
    w.otp
        .enroll_totp(&w.alice, &FactorProofInput::Invitation, &web())
        .await
        .unwrap();
    let twice = w
        .otp
        .enroll_totp(&w.alice, &FactorProofInput::Invitation, &web())
        .await;
    assert!(matches!(twice, Err(OtpError::NoInvitation)), "{twice:?}");
    assert!(!w.otp.factors(&w.alice).await.unwrap().invitation_open);
    // An invitation nobody used expires.
    w.otp.invite_totp(&admin, w.alice.id).await.unwrap();
    w.clock.advance(Duration::hours(24));
    let late = w
        .otp
        .enroll_totp(&w.alice, &FactorProofInput::Invitation, &web())
        .await;
    assert!(matches!(late, Err(OtpError::NoInvitation)), "{late:?}");
    let unknown = w.otp.invite_totp(&admin, 999_999).await;
    assert!(matches!(unknown, Err(OtpError::UnknownUser)), "{unknown:?}");
    let actions = w.actions().await;
    assert_eq!(
        actions
            .iter()
            .filter(|a| *a == "TOTP_INVITATION_ISSUED")
            .count(),
        2
    );
    assert_eq!(
        actions
            .iter()
            .filter(|a| *a == "TOTP_INVITATION_USED")
            .count(),
        1
    );
}

async fn twenty_parallel_right_codes_open_the_challenge_once(db: Db) {
    let w = Arc::new(world(&db).await.with_phones().await);
    let started = w
        .otp
        .begin(&w.alice, &w.request, &w.token_hash)
        .await
        .unwrap();
    let code = w.sms.last_code();
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let (w, code) = (w.clone(), code.clone());
            tokio::spawn(async move { w.otp.verify(&w.alice, started.challenge_id, &code).await })
        })
        .collect();
    let mut ok = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(v) => {
                assert_eq!(v.request_id, w.request.id);
                ok += 1;
            }
            Err(OtpError::AlreadyUsed) => {}
            Err(e) => panic!("unexpected {e:?}"),
        }
    }
    assert_eq!(ok, 1, "single use under concurrency");
    let verified = w
        .actions()
        .await
        .iter()
        .filter(|a| *a == "OTP_VERIFIED")
        .count();
    assert_eq!(verified, 1);
}

async fn parallel_wrong_guesses_never_get_more_than_five_tries(db: Db) {
    let w = Arc::new(world(&db).await.with_phones().await);
    let started = w
        .otp
        .begin(&w.alice, &w.request, &w.token_hash)
        .await
        .unwrap();
    let code = w.sms.last_code();
    let tasks: Vec<_> = (0..20u32)
        .map(|i| {
            let w = w.clone();
            let guess = format!("{:06}", (code.parse::<u32>().unwrap() + 1 + i) % 1_000_000);
            tokio::spawn(async move { w.otp.verify(&w.alice, started.challenge_id, &guess).await })
        })
        .collect();
    let mut wrong = 0;
    let mut locked = 0;
    for t in tasks {
        match t.await.unwrap() {
            Err(OtpError::WrongCode { .. }) => wrong += 1,
            Err(OtpError::Locked) => locked += 1,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(wrong + locked, 20);
    assert_eq!(wrong, 4, "exactly four answers say 'wrong, N left'");
    let row = w.challenge(started.challenge_id).await;
    assert_eq!(row.attempts, 5, "no guess beyond the fifth was counted");
    assert!(row.locked_at.is_some());
    let audited = w
        .actions()
        .await
        .iter()
        .filter(|a| *a == "OTP_WRONG_CODE" || *a == "OTP_LOCKED")
        .count();
    assert_eq!(audited, 5);
    let right = w.otp.verify(&w.alice, started.challenge_id, &code).await;
    assert!(matches!(right, Err(OtpError::Locked)));
}

async fn an_admin_reset_authenticator_falls_back_to_texts_until_enrolled_again(db: Db) {
    let w = world(&db).await.with_phones().await;
    let enrollment = w.enroll(&w.alice).await;
    let secret = secret_of(enrollment.otpauth_uri.expose_secret());
    w.otp
        .confirm_totp(&w.alice, &code_now(&secret, &w.clock), &web())
        .await
        .unwrap();
    let admin = Actor::Admin(admin::Actor::Cli);
    assert!(w.otp.reset_totp(&admin, w.alice.id).await.unwrap());
    assert!(
        !w.otp.reset_totp(&admin, w.alice.id).await.unwrap(),
        "nothing left to reset"
    );
    w.clock.advance(Duration::seconds(61));
    let started = w
        .otp
        .begin(&w.alice, &w.request, &w.token_hash)
        .await
        .unwrap();
    assert_eq!(started.channel, OtpChannel::Sms);
    let fresh = w.enroll(&w.alice).await;
    assert_ne!(secret_of(fresh.otpauth_uri.expose_secret()), secret);
    let actions = w.actions().await;
    assert_eq!(actions.iter().filter(|a| *a == "TOTP_RESET").count(), 1);
}

async fn demo_people_get_fictional_phone_numbers_in_dev(db: Db) {
    let dir = tempfile::tempdir().unwrap();
    let settings = common::test_settings(dir.path(), &[("PASSKEY_DEMO_DATA", "true")]);
    let app =
        passkey::app::App::with_store(settings, db.store.clone(), Arc::new(ManualClock::new(t0())))
            .await
            .unwrap();
    assert!(app.demo.is_some());
    let alice = db
        .store
        .user_by_email("alice@contoso.example")
        .await
        .unwrap()
        .unwrap();
    let factors = app.state.otp.factors(&alice).await.unwrap();
    assert_eq!(factors.phone_hint.as_deref(), Some("•••• 0101"));
    assert!(
        dir.path().join(passkey::crypto::LOCAL_KEY_FILE).exists(),
        "dev creates the key"
    );
}

async fn the_store_writes_second_factor_changes_only_from_the_state_seen(db: Db) {
    let w = world(&db).await.with_phones().await;
    let store = &w.store;
    let audits = || async { store.audit_events_after(0, 1000).await.unwrap().len() };
    let id = uuid::Uuid::new_v4();
    let challenge = store
        .create_challenge(
            &NewChallenge {
                id,
                request_id: w.request.id,
                user_id: w.alice.id,
                channel: OtpChannel::Sms,
                code_hash: Some("ab".repeat(32)),
                max_attempts: 2,
                created_at: t0(),
                expires_at: t0().plus(Duration::minutes(5)),
                last_sent_at: Some(t0()),
                send_count: 1,
                token_hash: w.token_hash.clone(),
            },
            &NewAuditEvent::new("user:1", "OTP_SENT", t0()),
        )
        .await
        .unwrap();
    assert_eq!(challenge.attempts, 0);
    let ev = |a: &str| NewAuditEvent::new("user:1", a, t0());
    let before = audits().await;
    // Stale attempt count, stale send count: nothing written, no event.
    assert!(
        store
            .record_wrong_code(id, 1, t0(), &ev("OTP_WRONG_CODE"))
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        store
            .record_resend(id, &"cd".repeat(32), t0(), t0(), 0, &ev("OTP_SENT"))
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(audits().await, before);
    // A code hash that isn't 64 lower-case hex is refused by the database itself.
    let bad = store
        .record_resend(
            id,
            "123456",
            t0(),
            t0().plus(Duration::minutes(5)),
            1,
            &ev("OTP_SENT"),
        )
        .await;
    assert!(matches!(bad, Err(StoreError::Invalid(_))), "{bad:?}");
    // The last allowed wrong code locks, with its event.
    let first = store
        .record_wrong_code(id, 0, t0(), &ev("OTP_WRONG_CODE"))
        .await
        .unwrap()
        .unwrap();
    assert!(first.locked_at.is_none());
    let second = store
        .record_wrong_code(id, 1, t0(), &ev("OTP_LOCKED"))
        .await
        .unwrap()
        .unwrap();
    assert!(second.locked_at.is_some());
    assert_eq!(
        store
            .consume_challenge(id, t0(), None, &ev("OTP_VERIFIED"))
            .await
            .unwrap(),
        ConsumeOutcome::NotLive
    );
    assert_eq!(audits().await, before + 2);

    // TOTP: a replayed step rolls the consumption back.
    let sealed = w
        .otp
        .data_key()
        .seal(
            &format!("totp:user:{}", w.alice.id),
            b"0123456789abcdefghij",
        )
        .unwrap();
    store
        .start_totp_enrollment(w.alice.id, &sealed, t0(), &ev("TOTP_ENROLLED"))
        .await
        .unwrap();
    let other = w
        .otp
        .data_key()
        .seal(
            &format!("totp:user:{}", w.alice.id),
            b"another-secret-bytes",
        )
        .unwrap();
    let stale = store
        .confirm_totp_enrollment(w.alice.id, &other, 100, t0(), &ev("TOTP_CONFIRMED"))
        .await;
    assert!(matches!(stale, Err(StoreError::Conflict(_))), "{stale:?}");
    store
        .confirm_totp_enrollment(w.alice.id, &sealed, 100, t0(), &ev("TOTP_CONFIRMED"))
        .await
        .unwrap();
    let again = store
        .start_totp_enrollment(w.alice.id, &other, t0(), &ev("TOTP_ENROLLED"))
        .await;
    assert!(matches!(again, Err(StoreError::Conflict(_))), "{again:?}");
    let totp_id = uuid::Uuid::new_v4();
    store
        .create_challenge(
            &NewChallenge {
                id: totp_id,
                request_id: w.request.id,
                user_id: w.alice.id,
                channel: OtpChannel::Totp,
                code_hash: None,
                max_attempts: 5,
                created_at: t0(),
                expires_at: t0().plus(Duration::minutes(5)),
                last_sent_at: None,
                send_count: 0,
                token_hash: w.token_hash.clone(),
            },
            &ev("OTP_CHALLENGE_STARTED"),
        )
        .await
        .unwrap();
    let before = audits().await;
    assert_eq!(
        store
            .consume_challenge(totp_id, t0(), Some(100), &ev("OTP_VERIFIED"))
            .await
            .unwrap(),
        ConsumeOutcome::StepReplayed
    );
    assert!(
        w.challenge(totp_id).await.consumed_at.is_none(),
        "rolled back"
    );
    assert_eq!(audits().await, before);
    assert!(matches!(
        store
            .consume_challenge(totp_id, t0(), Some(101), &ev("OTP_VERIFIED"))
            .await
            .unwrap(),
        ConsumeOutcome::Consumed(_)
    ));
    assert_eq!(
        store
            .totp_enrollment(w.alice.id)
            .await
            .unwrap()
            .unwrap()
            .last_accepted_step,
        Some(101)
    );
    assert_eq!(audits().await, before + 1);
}

async fn a_profile_number_from_the_directory_is_used_when_none_is_stored(db: Db) {
    use passkey::governance::directory::{DirectoryUser, StaticDirectory};
    let mut w = world(&db).await;
    let profile = |id: &str, mail: &str, phone: &str| DirectoryUser {
        mobile_phone: Some(phone.into()),
        ..DirectoryUser::new(id, "someone", mail)
    };
    let directory = StaticDirectory::new()
        .with_user(profile(
            "aad-alice",
            "alice@contoso.example",
            "+1 425 555 0150",
        ))
        // Bob's address, but another object id: not Bob's profile.
        .with_user(profile(
            "aad-impostor",
            "bob@contoso.example",
            "+1 425 555 0166",
        ));
    w.otp = OtpService::new(
        w.store.clone(),
        w.clock.clone(),
        Arc::new(DataKey::generate().unwrap().0),
        w.sms.clone(),
        OtpSettings::default(),
    )
    .with_directory(Arc::new(directory));
    let started = w
        .otp
        .begin(&w.alice, &w.request, &w.token_hash)
        .await
        .unwrap();
    assert_eq!(started.destination_hint.as_deref(), Some("•••• 0150"));
    assert_eq!(w.sms.sent.lock().unwrap()[0].0, "+14255550150");
    let row = w.store.phone_number(w.alice.id).await.unwrap().unwrap();
    assert_eq!(row.source, PhoneSource::Graph);
    let events = w.store.audit_events_after(0, 100).await.unwrap();
    assert!(
        events
            .iter()
            .any(|e| e.action == "PHONE_NUMBER_SET" && e.actor == "system:graph-sync")
    );
    // An admin-set number wins over the profile from then on.
    w.otp
        .set_phone(&Actor::Admin(admin::Actor::Cli), w.alice.id, "+14255550177")
        .await
        .unwrap();
    w.clock.advance(Duration::minutes(2));
    let again = w
        .otp
        .begin(&w.alice, &w.request, &w.token_hash)
        .await
        .unwrap();
    assert_eq!(again.destination_hint.as_deref(), Some("•••• 0177"));

    let bobs_request = Request {
        requester_id: w.bob.id,
        ..w.request.clone()
    };
    let none = w.otp.begin(&w.bob, &bobs_request, &w.token_hash).await;
    assert!(
        matches!(none, Err(OtpError::NoPhoneOrAuthenticator)),
        "{none:?}"
    );
    assert!(w.store.phone_number(w.bob.id).await.unwrap().is_none());
}

#[test]
fn rfc6238_vectors_through_the_public_api() {
    // RFC 6238 appendix B, SHA-1: the 6-digit codes are the low six digits of the 8-digit ones.
    let secret = b"12345678901234567890";
    for (t, eight) in [
        (59, "94287082"),
        (1_111_111_109, "07081804"),
        (1_234_567_890, "89005924"),
        (20_000_000_000i64, "65353130"),
    ] {
        assert_eq!(totp::hotp(secret, totp::step_at(t) as u64, 8), eight);
        assert_eq!(totp::totp_at_step(secret, totp::step_at(t)), eight[2..]);
    }
}

// ---- authenticator apps --------------------------------------------------------------------------

async fn an_authenticator_is_enrolled_confirmed_and_never_accepts_a_step_twice(db: Db) {
    let w = world(&db).await.with_phones().await;
    let first = w.enroll(&w.alice).await;
    // Starting over before confirming replaces the secret.
    let enrollment = w.enroll(&w.alice).await;
    let uri = enrollment.otpauth_uri.expose_secret().to_string();
    assert_ne!(uri, first.otpauth_uri.expose_secret());
    assert!(
        uri.starts_with("otpauth://totp/Passkey:alice@contoso.example?secret="),
        "{uri}"
    );
    assert!(uri.contains("&issuer=Passkey"));
    assert!(enrollment.qr_svg.starts_with("<svg") && !enrollment.qr_svg.contains("<script"));
    let secret = secret_of(&uri);
    assert_eq!(secret.len(), 20, "160-bit secret");
    let factors = w.otp.factors(&w.alice).await.unwrap();
    assert!(factors.totp_pending && !factors.totp_confirmed);
    assert_eq!(factors.phone_hint.as_deref(), Some("•••• 4411"));

    // Until confirmed, retrieval still texts (once the texts' cooldown has passed).
    w.clock.advance(Duration::seconds(61));
    let sms = w
        .otp
        .begin(&w.alice, &w.request, &w.token_hash)
        .await
        .unwrap();
    assert_eq!(sms.channel, OtpChannel::Sms);

    let bad = w
        .otp
        .confirm_totp(
            &w.alice,
            &World::wrong(&code_now(&secret, &w.clock)),
            &web(),
        )
        .await;
    assert!(matches!(bad, Err(OtpError::CodeNotAccepted)), "{bad:?}");
    let confirm_code = code_now(&secret, &w.clock);
    w.otp
        .confirm_totp(&w.alice, &confirm_code, &web())
        .await
        .unwrap();
    let again = w
        .otp
        .enroll_totp(&w.alice, &FactorProofInput::Invitation, &web())
        .await;
    assert!(
        matches!(again, Err(OtpError::NoInvitation)),
        "a session can't swap the factor: {again:?}"
    );

    // The confirmation code's step is used: the same code can't open a challenge.
    let started = w
        .otp
        .begin(&w.alice, &w.request, &w.token_hash)
        .await
        .unwrap();
    assert_eq!(started.channel, OtpChannel::Totp);
    assert_eq!(
        (started.destination_hint.clone(), started.resend_after),
        (None, None)
    );
    let replay = w
        .otp
        .verify(&w.alice, started.challenge_id, &confirm_code)
        .await;
    assert!(
        matches!(replay, Err(OtpError::WrongCode { attempts_left: 4 })),
        "{replay:?}"
    );

    w.clock.advance(Duration::seconds(30));
    let code = code_now(&secret, &w.clock);
    let verified = w
        .otp
        .verify(&w.alice, started.challenge_id, &code)
        .await
        .unwrap();
    assert_eq!(verified.token_hash, w.token_hash);

    // A second challenge in the same 30 seconds: the same code is a replay.
    let next = w
        .otp
        .begin(&w.alice, &w.request, &w.token_hash)
        .await
        .unwrap();
    let replay = w.otp.verify(&w.alice, next.challenge_id, &code).await;
    assert!(
        matches!(replay, Err(OtpError::WrongCode { .. })),
        "{replay:?}"
    );
    // One step later (within the window) the next code works; an old step never does.
    w.clock.advance(Duration::seconds(30));
    w.otp
        .verify(&w.alice, next.challenge_id, &code_now(&secret, &w.clock))
        .await
        .unwrap();
    let stored = w.store.totp_enrollment(w.alice.id).await.unwrap().unwrap();
    assert_eq!(
        stored.last_accepted_step,
        Some(totp::step_at(w.clock.now().unix_seconds()))
    );
    let actions = w.actions().await;
    for a in [
        "TOTP_ENROLLED",
        "TOTP_CONFIRMED",
        "OTP_CHALLENGE_STARTED",
        "OTP_VERIFIED",
    ] {
        assert!(
            actions.contains(&a.to_string()),
            "{a} missing from {actions:?}"
        );
    }
}

async fn without_phone_or_authenticator_there_is_no_challenge(db: Db) {
    let w = world(&db).await;
    let none = w.otp.begin(&w.alice, &w.request, &w.token_hash).await;
    assert!(
        matches!(none, Err(OtpError::NoPhoneOrAuthenticator)),
        "{none:?}"
    );
    let bad_hash = w.otp.begin(&w.alice, &w.request, "not-a-hash").await;
    assert!(
        matches!(bad_hash, Err(OtpError::InvalidInput(_))),
        "{bad_hash:?}"
    );
    let confirm = w.otp.confirm_totp(&w.alice, "123456", &web()).await;
    assert!(matches!(confirm, Err(OtpError::NotEnrolled)), "{confirm:?}");
    assert_eq!(w.sms.count(), 0);
    assert!(!w.actions().await.iter().any(|a| a.starts_with("OTP_")));
}

async fn phone_numbers_are_validated_and_sealed(db: Db) {
    let w = world(&db).await;
    let admin = Actor::Admin(admin::Actor::Cli);
    for bad in [
        "5550104411",
        "+0150104411",
        "+1555",
        "call me",
        "+1555010441199999",
    ] {
        let r = w.otp.set_phone(&admin, w.alice.id, bad).await;
        assert!(
            matches!(r, Err(OtpError::InvalidPhoneNumber)),
            "{bad}: {r:?}"
        );
    }
    let unknown = w.otp.set_phone(&admin, 999_999, ALICE_PHONE).await;
    assert!(matches!(unknown, Err(OtpError::UnknownUser)), "{unknown:?}");
    assert!(w.store.phone_number(w.alice.id).await.unwrap().is_none());
    assert!(!w.actions().await.contains(&"PHONE_NUMBER_SET".to_string()));

    w.otp
        .set_phone(&Actor::GraphSync, w.alice.id, "+1 (555) 010-4411")
        .await
        .unwrap();
    let row = w.store.phone_number(w.alice.id).await.unwrap().unwrap();
    assert_eq!(row.source, PhoneSource::Graph);
    assert_eq!(
        w.otp
            .data_key()
            .open(&format!("phone:user:{}", w.alice.id), &row.phone_sealed)
            .unwrap(),
        ALICE_PHONE.as_bytes()
    );
    // Bound to Alice's row: the same bytes under Bob's id don't open.
    assert!(
        w.otp
            .data_key()
            .open(&format!("phone:user:{}", w.bob.id), &row.phone_sealed)
            .is_err()
    );
    w.otp
        .set_phone(&admin, w.alice.id, "+15550109999")
        .await
        .unwrap();
    let row = w.store.phone_number(w.alice.id).await.unwrap().unwrap();
    assert_eq!(row.source, PhoneSource::Admin);
    let events = w.store.audit_events_after(0, 100).await.unwrap();
    let set: Vec<_> = events
        .iter()
        .filter(|e| e.action == "PHONE_NUMBER_SET")
        .collect();
    assert_eq!(set.len(), 2);
    assert_eq!(set[0].actor, "system:graph-sync");
    assert_eq!(set[1].actor, "admin-cli");
    // The database itself refuses a number stored in the clear.
    let raw = w
        .store
        .set_phone_number(
            w.bob.id,
            ALICE_PHONE.as_bytes(),
            PhoneSource::Admin,
            t0(),
            &NewAuditEvent::new("admin-cli", "PHONE_NUMBER_SET", t0()),
        )
        .await;
    assert!(matches!(raw, Err(StoreError::Invalid(_))), "{raw:?}");
    assert!(w.store.phone_number(w.bob.id).await.unwrap().is_none());
}

async fn a_failed_send_is_audited_and_leaves_no_challenge(db: Db) {
    let w = world(&db).await.with_phones().await;
    *w.sms.fail.lock().unwrap() = Some(SmsFailure::Transient);
    let failed = w.otp.begin(&w.alice, &w.request, &w.token_hash).await;
    let err = failed.unwrap_err();
    assert!(matches!(err, OtpError::SendFailed), "{err:?}");
    assert!(err.to_string().contains("try again"));
    let events = w
        .store
        .audit_events_for_request(w.request.id)
        .await
        .unwrap();
    let failure = events
        .iter()
        .find(|e| e.action == "OTP_SEND_FAILED")
        .expect("audited");
    assert_eq!(failure.detail.0["class"], "transient");
    assert!(!events.iter().any(|e| e.action == "OTP_SENT"));
    let challenges = db
        .raw
        .texts("SELECT CAST(COUNT(*) AS TEXT) FROM otp_challenges")
        .await
        .unwrap();
    assert_eq!(challenges, ["0"]);
    // Once the gateway is back, trying again works at once (a failed send starts no cooldown).
    *w.sms.fail.lock().unwrap() = None;
    w.otp
        .begin(&w.alice, &w.request, &w.token_hash)
        .await
        .unwrap();
}

async fn the_database_holds_no_plaintext_number_code_or_secret(db: Db) {
    let w = world(&db).await.with_phones().await;
    let mut codes = Vec::new();
    let started = w
        .otp
        .begin(&w.alice, &w.request, &w.token_hash)
        .await
        .unwrap();
    codes.push(w.sms.last_code());
    w.otp
        .verify(&w.alice, started.challenge_id, &World::wrong(&codes[0]))
        .await
        .unwrap_err();
    w.otp
        .verify(&w.alice, started.challenge_id, &codes[0])
        .await
        .unwrap();
    let enrollment = w.enroll(&w.alice).await;
    let uri = enrollment.otpauth_uri.expose_secret().to_string();
    let secret = secret_of(&uri);
    let totp_code = code_now(&secret, &w.clock);
    w.otp
        .confirm_totp(&w.alice, &totp_code, &web())
        .await
        .unwrap();
    codes.push(totp_code);

    let dump_sql: &[&str] = if db.engine == "sqlite" {
        &[
            "SELECT quote(id) || quote(code_hash) || quote(token_hash) || quote(created_at) FROM otp_challenges",
            "SELECT quote(phone_sealed) || quote(source) FROM user_phone_numbers",
            "SELECT quote(secret_sealed) || quote(last_accepted_step) FROM totp_enrollments",
            "SELECT actor || action || detail FROM audit_events",
        ]
    } else {
        &[
            "SELECT t::text FROM otp_challenges t",
            "SELECT t::text FROM user_phone_numbers t",
            "SELECT t::text FROM totp_enrollments t",
            "SELECT t::text FROM audit_events t",
        ]
    };
    let mut dump = String::new();
    for sql in dump_sql {
        dump.push_str(&db.raw.texts(sql).await.unwrap().join("\n"));
        dump.push('\n');
    }
    assert!(
        dump.contains("SMS") || dump.contains("OTP_SENT"),
        "the dump read something"
    );
    let base32_secret = uri
        .split("secret=")
        .nth(1)
        .unwrap()
        .split('&')
        .next()
        .unwrap();
    let mut needles = vec![
        ALICE_PHONE.to_string(),
        ALICE_PHONE[2..].to_string(),
        BOB_PHONE[1..].to_string(),
        hex::encode(ALICE_PHONE),
        hex::encode(ALICE_PHONE).to_uppercase(),
        base32_secret.to_string(),
        hex::encode(&secret),
        hex::encode(&secret).to_uppercase(),
    ];
    needles.extend(codes.iter().map(|c| format!("\"{c}\"")));
    needles.extend(codes.iter().map(sha256_hex));
    for needle in needles {
        assert!(
            !dump.contains(&needle),
            "`{needle}` found in the {} dump",
            db.engine
        );
    }
}

// ---- the SMS gateways on the wire ----------------------------------------------------------------

/// What a fake gateway saw, and what it answers next.
#[derive(Default)]
struct Gateway {
    requests: Mutex<Vec<Seen>>,
    /// (status, JSON body) answers, used front to back; empty: success.
    script: Mutex<Vec<(u16, serde_json::Value)>>,
    /// Why the last request's signature or credentials were refused.
    auth_failures: Mutex<Vec<String>>,
}

#[derive(Clone, Debug)]
struct Seen {
    uri: String,
    headers: HeaderMap,
    body: Vec<u8>,
}

const ACS_KEY_B64: &str = "c2VjcmV0LWFjY2Vzcy1rZXktZm9yLXRlc3RzLW9ubHktMTIzNDU2Nzg5MA==";
const TWILIO_SID: &str = "AC0123456789abcdef0123456789abcdef";
const TWILIO_TOKEN: &str = "twilio-auth-token-secret";

async fn fake_acs(
    State(g): State<Arc<Gateway>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> impl IntoResponse {
    g.requests.lock().unwrap().push(Seen {
        uri: uri.to_string(),
        headers: headers.clone(),
        body: body.to_vec(),
    });
    // Verify exactly as ACS does: the body hash, then the signature over the documented string.
    let header = |n: &str| {
        headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    let content_hash =
        B64.encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &body).as_ref());
    let mut failures = Vec::new();
    if header("x-ms-content-sha256") != content_hash {
        failures.push("content hash".to_string());
    }
    let to_sign = format!(
        "POST\n{}\n{};{};{}",
        uri.path_and_query().map(|p| p.as_str()).unwrap_or_default(),
        header("x-ms-date"),
        header("host"),
        content_hash
    );
    let key = aws_lc_rs::hmac::Key::new(
        aws_lc_rs::hmac::HMAC_SHA256,
        &B64.decode(ACS_KEY_B64).unwrap(),
    );
    let expected = format!(
        "HMAC-SHA256 SignedHeaders=x-ms-date;host;x-ms-content-sha256&Signature={}",
        B64.encode(aws_lc_rs::hmac::sign(&key, to_sign.as_bytes()).as_ref())
    );
    if header("authorization") != expected {
        failures.push(format!("authorization {:?}", header("authorization")));
    }
    if !failures.is_empty() {
        g.auth_failures.lock().unwrap().extend(failures);
        return (
            StatusCode::UNAUTHORIZED,
            axum::Json(
                serde_json::json!({"error": {"code": "Denied", "message": "Denied by the resource provider."}}),
            ),
        );
    }
    let scripted = {
        let mut s = g.script.lock().unwrap();
        (!s.is_empty()).then(|| s.remove(0))
    };
    match scripted {
        Some((status, body)) => (StatusCode::from_u16(status).unwrap(), axum::Json(body)),
        None => {
            let sent: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
            (
                StatusCode::ACCEPTED,
                axum::Json(serde_json::json!({"value": [{
                    "to": sent["smsRecipients"][0]["to"], "messageId": "Outgoing_20261123090000_abc",
                    "httpStatusCode": 202, "errorMessage": null, "repeatabilityResult": "accepted",
                    "successful": true,
                }]})),
            )
        }
    }
}

async fn fake_twilio(
    State(g): State<Arc<Gateway>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> impl IntoResponse {
    g.requests.lock().unwrap().push(Seen {
        uri: uri.to_string(),
        headers: headers.clone(),
        body: body.to_vec(),
    });
    let expected = format!(
        "Basic {}",
        B64.encode(format!("{TWILIO_SID}:{TWILIO_TOKEN}"))
    );
    if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some(expected.as_str()) {
        g.auth_failures.lock().unwrap().push("basic auth".into());
        return (
            StatusCode::UNAUTHORIZED,
            axum::Json(
                serde_json::json!({"code": 20003, "message": "Authenticate", "more_info": "https://www.twilio.com/docs/errors/20003", "status": 401}),
            ),
        );
    }
    let scripted = {
        let mut s = g.script.lock().unwrap();
        (!s.is_empty()).then(|| s.remove(0))
    };
    match scripted {
        Some((status, body)) => (StatusCode::from_u16(status).unwrap(), axum::Json(body)),
        None => (
            StatusCode::CREATED,
            axum::Json(
                serde_json::json!({"sid": "SM0123456789abcdef0123456789abcdef", "status": "queued"}),
            ),
        ),
    }
}

async fn serve(router: axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    base
}

/// Every log line written while the guard lives, through the production redaction layer.
#[derive(Clone, Default)]
struct LogBuffer(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for LogBuffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl LogBuffer {
    fn capture(&self) -> tracing::subscriber::DefaultGuard {
        let me = self.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(passkey::telemetry::RedactingMakeWriter::new(move || {
                me.clone()
            }))
            .with_max_level(tracing::Level::DEBUG)
            .with_ansi(false)
            .finish();
        common::logs::capture(subscriber)
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

/// An OtpService on SQLite whose SMS gateway comes from `settings` (the production path).
async fn gateway_world(settings: OtpSettings) -> (World, common::SqliteTestDb) {
    let db = common::fresh_sqlite().await;
    let handle = Db {
        store: db.store.clone(),
        raw: db.store.clone(),
        engine: "sqlite",
    };
    let mut w = world_with(&handle, settings.clone())
        .await
        .with_phones()
        .await;
    let sender = passkey::otp::sms_sender(&settings, w.clock.clone()).unwrap();
    w.otp = OtpService::new(
        w.store.clone(),
        w.clock.clone(),
        Arc::new(DataKey::generate().unwrap().0),
        sender,
        settings,
    );
    // Phones were sealed with the first key: set them again under this one.
    let admin = Actor::Admin(admin::Actor::Cli);
    w.otp
        .set_phone(&admin, w.alice.id, ALICE_PHONE)
        .await
        .unwrap();
    (w, db)
}

fn assert_nothing_leaks(text: &str, what: &str) {
    for needle in [
        ALICE_PHONE,
        &ALICE_PHONE[2..],
        ACS_KEY_B64,
        TWILIO_TOKEN,
        TWILIO_SID,
        "is not a valid phone number",
    ] {
        assert!(
            !text.contains(needle),
            "`{needle}` leaked into {what}: {text}"
        );
    }
}

#[tokio::test]
async fn acs_requests_are_signed_and_shaped_as_documented() {
    let gateway = Arc::new(Gateway::default());
    let base = serve(
        axum::Router::new()
            .route("/sms", axum::routing::post(fake_acs))
            .with_state(gateway.clone()),
    )
    .await;
    let settings = OtpSettings {
        sms_provider: SmsProvider::Acs,
        acs_endpoint: Some(base.clone()),
        acs_access_key: Some(SecretString::from(ACS_KEY_B64)),
        sms_from: Some("+18005550100".into()),
        ..OtpSettings::default()
    };
    let (w, _db) = gateway_world(settings).await;
    let started = w
        .otp
        .begin(&w.alice, &w.request, &w.token_hash)
        .await
        .unwrap();
    assert!(
        gateway.auth_failures.lock().unwrap().is_empty(),
        "{:?}",
        gateway.auth_failures.lock().unwrap()
    );
    let seen = gateway.requests.lock().unwrap()[0].clone();
    assert_eq!(seen.uri, "/sms?api-version=2021-03-07");
    assert_eq!(seen.headers["content-type"], "application/json");
    assert_eq!(seen.headers["x-ms-date"], "Mon, 23 Nov 2026 09:00:00 GMT");
    let body: serde_json::Value = serde_json::from_slice(&seen.body).unwrap();
    let message = body["message"].as_str().unwrap().to_string();
    assert_eq!(
        body,
        serde_json::json!({
            "from": "+18005550100",
            "smsRecipients": [{"to": ALICE_PHONE}],
            "message": message,
            "smsSendOptions": {"enableDeliveryReport": false},
        })
    );
    let code = message
        .split_whitespace()
        .nth(4)
        .unwrap()
        .trim_end_matches('.')
        .to_string();
    assert!(message.starts_with("Your Passkey code is "), "{message}");
    w.otp
        .verify(&w.alice, started.challenge_id, &code)
        .await
        .unwrap();
}

/// An SMS endpoint that answers with a redirect is refused, not followed: a 307 keeps the
/// method and the body, so following it would post the code to wherever it points. Both
/// providers; the gateway behind the redirect receives nothing.
#[tokio::test]
async fn sms_endpoints_that_redirect_are_refused_and_the_code_goes_nowhere_else() {
    let gateway = Arc::new(Gateway::default());
    let base = serve(
        axum::Router::new()
            .route("/sms", axum::routing::post(fake_acs))
            .route(
                "/2010-04-01/Accounts/{sid}/Messages.json",
                axum::routing::post(fake_twilio),
            )
            .with_state(gateway.clone()),
    )
    .await;
    let redirector = Redirector::start(&base).await;
    let providers = [
        OtpSettings {
            sms_provider: SmsProvider::Acs,
            acs_endpoint: Some(redirector.base.clone()),
            acs_access_key: Some(SecretString::from(ACS_KEY_B64)),
            sms_from: Some("+18005550100".into()),
            ..OtpSettings::default()
        },
        OtpSettings {
            sms_provider: SmsProvider::Twilio,
            twilio_base_url: redirector.base.clone(),
            twilio_account_sid: Some(TWILIO_SID.into()),
            twilio_auth_token: Some(SecretString::from(TWILIO_TOKEN)),
            sms_from: Some("+18005550100".into()),
            ..OtpSettings::default()
        },
    ];
    for (n, settings) in providers.into_iter().enumerate() {
        let (w, _db) = gateway_world(settings).await;
        let err = w
            .otp
            .begin(&w.alice, &w.request, &w.token_hash)
            .await
            .unwrap_err();
        assert!(matches!(err, OtpError::SendFailed), "{err:?}");
        assert_eq!(redirector.hits(), n + 1, "one try, not followed");
    }
    assert!(
        gateway.requests.lock().unwrap().is_empty(),
        "no SMS request reached the redirect's target"
    );
}

#[tokio::test]
async fn acs_error_answers_are_classified_and_leak_nothing() {
    let gateway = Arc::new(Gateway::default());
    let base = serve(
        axum::Router::new()
            .route("/sms", axum::routing::post(fake_acs))
            .with_state(gateway.clone()),
    )
    .await;
    let settings = OtpSettings {
        sms_provider: SmsProvider::Acs,
        acs_endpoint: Some(base.clone()),
        acs_access_key: Some(SecretString::from(ACS_KEY_B64)),
        sms_from: Some("+18005550100".into()),
        ..OtpSettings::default()
    };
    let (w, _db) = gateway_world(settings.clone()).await;
    let logs = LogBuffer::default();
    let _guard = logs.capture();
    let cases = [
        (
            429,
            serde_json::json!({"error": {"code": "TooManyRequests", "message": "Rate limit for +15550104411 exceeded"}}),
            "transient",
            "TooManyRequests",
        ),
        (
            500,
            serde_json::json!({"error": {"code": "InternalServerError", "message": "oops"}}),
            "transient",
            "InternalServerError",
        ),
        (
            400,
            serde_json::json!({"error": {"code": "BadRequest", "message": "+15550104411 is not a valid phone number"}}),
            "refused",
            "BadRequest",
        ),
        // Accepted as a request, refused for the recipient.
        (
            202,
            serde_json::json!({"value": [{"to": ALICE_PHONE, "httpStatusCode": 400, "successful": false,
                "errorMessage": "+15550104411 is not a valid phone number"}]}),
            "refused",
            "HTTP 400",
        ),
    ];
    for (status, body, class, detail) in cases {
        gateway.script.lock().unwrap().push((status, body));
        let err = w
            .otp
            .begin(&w.alice, &w.request, &w.token_hash)
            .await
            .unwrap_err();
        assert!(matches!(err, OtpError::SendFailed), "{status}: {err:?}");
        assert_nothing_leaks(&format!("{err} {err:?}"), "the error");
        let events = w
            .store
            .audit_events_for_request(w.request.id)
            .await
            .unwrap();
        let last = events.last().unwrap();
        assert_eq!(last.action, "OTP_SEND_FAILED");
        assert_eq!(last.detail.0["class"], class, "{status}");
        assert!(
            last.detail.0["detail"].as_str().unwrap().contains(detail),
            "{:?}",
            last.detail
        );
        assert_nothing_leaks(&last.detail.0.to_string(), "the audit trail");
    }
    // A wrong access key is refused by the (fake) service's signature check: not "try again"
    // but "contact an admin" (see a_refused_acs_access_key_alerts_admins_naming_it).
    let (w2, _db2) = gateway_world(OtpSettings {
        acs_access_key: Some(SecretString::from(B64.encode("another-key"))),
        ..settings
    })
    .await;
    let err = w2
        .otp
        .begin(&w2.alice, &w2.request, &w2.token_hash)
        .await
        .unwrap_err();
    assert!(matches!(err, OtpError::TextingNotWorking), "{err:?}");
    assert!(!gateway.auth_failures.lock().unwrap().is_empty());
    let text = logs.text();
    assert!(text.contains("one-time code not sent"), "{text}");
    assert!(text.contains("•••• 4411"), "{text}");
    assert_nothing_leaks(&text, "the logs");
}

#[tokio::test]
async fn twilio_requests_use_basic_auth_and_the_documented_form() {
    let gateway = Arc::new(Gateway::default());
    let base = serve(
        axum::Router::new()
            .route(
                "/2010-04-01/Accounts/{sid}/Messages.json",
                axum::routing::post(fake_twilio),
            )
            .with_state(gateway.clone()),
    )
    .await;
    let settings = OtpSettings {
        sms_provider: SmsProvider::Twilio,
        twilio_base_url: base.clone(),
        twilio_account_sid: Some(TWILIO_SID.into()),
        twilio_auth_token: Some(SecretString::from(TWILIO_TOKEN)),
        sms_from: Some("+18005550100".into()),
        ..OtpSettings::default()
    };
    let (w, _db) = gateway_world(settings).await;
    let started = w
        .otp
        .begin(&w.alice, &w.request, &w.token_hash)
        .await
        .unwrap();
    assert!(gateway.auth_failures.lock().unwrap().is_empty());
    let seen = gateway.requests.lock().unwrap()[0].clone();
    assert_eq!(
        seen.uri,
        format!("/2010-04-01/Accounts/{TWILIO_SID}/Messages.json")
    );
    assert_eq!(
        seen.headers["content-type"],
        "application/x-www-form-urlencoded"
    );
    let form: Vec<(String, String)> = serde_urlencoded_pairs(&seen.body);
    let names: Vec<&str> = form.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(names, ["To", "From", "Body"]);
    assert_eq!(form[0].1, ALICE_PHONE);
    assert_eq!(form[1].1, "+18005550100");
    let code = form[2]
        .1
        .split_whitespace()
        .nth(4)
        .unwrap()
        .trim_end_matches('.')
        .to_string();
    w.otp
        .verify(&w.alice, started.challenge_id, &code)
        .await
        .unwrap();
}

#[tokio::test]
async fn twilio_error_answers_are_classified_and_leak_nothing() {
    let gateway = Arc::new(Gateway::default());
    let base = serve(
        axum::Router::new()
            .route(
                "/2010-04-01/Accounts/{sid}/Messages.json",
                axum::routing::post(fake_twilio),
            )
            .with_state(gateway.clone()),
    )
    .await;
    let settings = OtpSettings {
        sms_provider: SmsProvider::Twilio,
        twilio_base_url: base.clone(),
        twilio_account_sid: Some(TWILIO_SID.into()),
        twilio_auth_token: Some(SecretString::from(TWILIO_TOKEN)),
        sms_from: Some("+18005550100".into()),
        ..OtpSettings::default()
    };
    let (w, _db) = gateway_world(settings.clone()).await;
    let logs = LogBuffer::default();
    let _guard = logs.capture();
    let twilio_error = |code: u32, status: u16, message: &str| {
        serde_json::json!({"code": code, "message": message,
            "more_info": format!("https://www.twilio.com/docs/errors/{code}"), "status": status})
    };
    let cases = [
        (
            400,
            twilio_error(
                21211,
                400,
                "The 'To' number +15550104411 is not a valid phone number.",
            ),
            "refused",
            "21211",
        ),
        (
            429,
            twilio_error(20429, 429, "Too Many Requests"),
            "transient",
            "20429",
        ),
        (
            503,
            twilio_error(20503, 503, "Service unavailable"),
            "transient",
            "20503",
        ),
    ];
    for (status, body, class, code) in cases {
        gateway.script.lock().unwrap().push((status, body));
        let err = w
            .otp
            .begin(&w.alice, &w.request, &w.token_hash)
            .await
            .unwrap_err();
        assert!(matches!(err, OtpError::SendFailed), "{status}: {err:?}");
        assert_nothing_leaks(&format!("{err} {err:?}"), "the error");
        let events = w
            .store
            .audit_events_for_request(w.request.id)
            .await
            .unwrap();
        let last = events.last().unwrap();
        assert_eq!(last.action, "OTP_SEND_FAILED");
        assert_eq!(last.detail.0["class"], class);
        assert!(last.detail.0["detail"].as_str().unwrap().contains(code));
        assert_nothing_leaks(&last.detail.0.to_string(), "the audit trail");
    }
    // A wrong auth token: Twilio's 401 (error 20003) refuses Passkey itself — the person is sent
    // to an admin (see a_refused_sms_credential_alerts_admins_once_and_sends_the_person_to_an_admin),
    // and the token never shows.
    let (w2, _db2) = gateway_world(OtpSettings {
        twilio_auth_token: Some(SecretString::from("wrong-token")),
        ..settings
    })
    .await;
    let err = w2
        .otp
        .begin(&w2.alice, &w2.request, &w2.token_hash)
        .await
        .unwrap_err();
    assert!(matches!(err, OtpError::TextingNotWorking), "{err:?}");
    let last = w2
        .store
        .audit_events_for_request(w2.request.id)
        .await
        .unwrap();
    assert!(
        last.last().unwrap().detail.0["detail"]
            .as_str()
            .unwrap()
            .contains("20003")
    );
    // Unreachable gateway: transient, and the URL (which holds the account SID) is not repeated.
    let (w3, _db3) = gateway_world(OtpSettings {
        twilio_base_url: "http://127.0.0.1:9".into(),
        sms_provider: SmsProvider::Twilio,
        twilio_account_sid: Some(TWILIO_SID.into()),
        twilio_auth_token: Some(SecretString::from(TWILIO_TOKEN)),
        sms_from: Some("+18005550100".into()),
        ..OtpSettings::default()
    })
    .await;
    let err = w3
        .otp
        .begin(&w3.alice, &w3.request, &w3.token_hash)
        .await
        .unwrap_err();
    assert!(matches!(err, OtpError::SendFailed));
    let events = w3
        .store
        .audit_events_for_request(w3.request.id)
        .await
        .unwrap();
    assert_eq!(events.last().unwrap().detail.0["class"], "transient");
    let text = logs.text();
    assert!(text.contains("one-time code not sent"), "{text}");
    assert_nothing_leaks(&text, "the logs");
    assert_nothing_leaks(
        &events.last().unwrap().detail.0.to_string(),
        "the audit trail",
    );
}

#[tokio::test]
async fn the_console_sender_shows_the_code_only_in_the_dev_log() {
    let logs = LogBuffer::default();
    let _guard = logs.capture();
    let (w, _db) = gateway_world(OtpSettings::default()).await;
    assert_eq!(w.otp.sms_provider(), "console");
    let started = w
        .otp
        .begin(&w.alice, &w.request, &w.token_hash)
        .await
        .unwrap();
    let text = logs.text();
    let line = text
        .lines()
        .find(|l| l.contains("DEV SMS, NOT SENT"))
        .expect("the console line");
    assert!(
        line.contains("•••• 4411") && !line.contains(ALICE_PHONE),
        "{line}"
    );
    let code = line
        .split_whitespace()
        .find(|w| {
            w.trim_end_matches('.').len() == 6
                && w.trim_end_matches('.').bytes().all(|b| b.is_ascii_digit())
        })
        .expect("the code survives redaction in the dev line")
        .trim_end_matches('.')
        .to_string();
    w.otp
        .verify(&w.alice, started.challenge_id, &code)
        .await
        .unwrap();
    // The code appears in that one line only.
    assert_eq!(text.matches(code.as_str()).count(), 1, "{text}");
}

#[test]
fn production_settings_refuse_the_console_sender() {
    let env: std::collections::BTreeMap<String, String> =
        [("PASSKEY_PROFILE".to_string(), "production".to_string())].into();
    let err = Settings::from_layers(None, &env)
        .unwrap()
        .check()
        .unwrap_err();
    assert!(err.to_string().contains("console SMS sender"));
}

fn serde_urlencoded_pairs(body: &[u8]) -> Vec<(String, String)> {
    let text = std::str::from_utf8(body).unwrap();
    text.split('&')
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap();
            let decode = |s: &str| {
                let s = s.replace('+', " ");
                let mut out = Vec::new();
                let bytes = s.as_bytes();
                let mut i = 0;
                while i < bytes.len() {
                    if bytes[i] == b'%' {
                        out.push(u8::from_str_radix(&s[i + 1..i + 3], 16).unwrap());
                        i += 3;
                    } else {
                        out.push(bytes[i]);
                        i += 1;
                    }
                }
                String::from_utf8(out).unwrap()
            };
            (decode(k), decode(v))
        })
        .collect()
}

// ---- the shell ------------------------------------------------------------------------------------

fn passkey_cli(dir: &std::path::Path, args: &[&str]) -> std::process::Output {
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

#[tokio::test]
async fn admins_set_phone_numbers_and_reset_authenticators_from_the_shell() {
    let dir = tempfile::tempdir().unwrap();
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    assert!(passkey_cli(dir.path(), &["migrate"]).status.success());
    let out = passkey_cli(dir.path(), &["admin", "demo-load"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("(5 phone numbers)"),
        "{}",
        text(&out.stdout)
    );

    let out = passkey_cli(
        dir.path(),
        &["admin", "phone", "alice@contoso.example", "+1 425 555 0199"],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout).trim(),
        "phone number set for Alice Requester"
    );
    assert!(!text(&out.stdout).contains("0199") && !text(&out.stderr).contains("0199"));

    for (args, needle) in [
        (
            vec!["admin", "phone", "alice@contoso.example", "0199"],
            "international form",
        ),
        (
            vec!["admin", "phone", "nobody@contoso.example", "+14255550199"],
            "no Passkey user",
        ),
        (
            vec!["admin", "totp-reset", "nobody@contoso.example"],
            "no Passkey user",
        ),
    ] {
        let out = passkey_cli(dir.path(), &args);
        assert_eq!(
            out.status.code(),
            Some(1),
            "{args:?}: {}",
            text(&out.stderr)
        );
        assert!(
            text(&out.stderr).contains(needle),
            "{args:?}: {}",
            text(&out.stderr)
        );
        assert!(out.stdout.is_empty());
    }
    let out = passkey_cli(
        dir.path(),
        &["admin", "totp-reset", "alice@contoso.example"],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("had no authenticator app"));
    let out = passkey_cli(
        dir.path(),
        &["admin", "totp-invite", "alice@contoso.example"],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("may set up an authenticator app once"),
        "{}",
        text(&out.stdout)
    );
    let out = passkey_cli(
        dir.path(),
        &["admin", "totp-invite", "nobody@contoso.example"],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));

    // The number is sealed under the key file the CLI created (0600) in the data directory.
    let data = dir.path().join("data");
    let key = passkey::crypto::LocalKeyFile::new(&data, Box::new(passkey::crypto::LocalWrapper))
        .load(false)
        .await
        .unwrap();
    let store = passkey::store::SqliteStore::open(&data.join("passkey.db"), 1)
        .await
        .unwrap();
    let alice = store
        .user_by_email("alice@contoso.example")
        .await
        .unwrap()
        .unwrap();
    let row = store.phone_number(alice.id).await.unwrap().unwrap();
    assert_eq!(row.source, PhoneSource::Admin);
    assert_eq!(
        key.open(&format!("phone:user:{}", alice.id), &row.phone_sealed)
            .unwrap(),
        b"+14255550199"
    );
    let bob = store
        .user_by_email("bob@contoso.example")
        .await
        .unwrap()
        .unwrap();
    let bob_row = store.phone_number(bob.id).await.unwrap().unwrap();
    assert_eq!(bob_row.source, PhoneSource::Graph);
    assert_eq!(
        key.open(&format!("phone:user:{}", bob.id), &bob_row.phone_sealed)
            .unwrap(),
        b"+14255550102"
    );
    let actions: Vec<String> = store
        .audit_events_after(0, 1000)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.action == "PHONE_NUMBER_SET")
        .map(|e| e.actor)
        .collect();
    assert_eq!(actions.last().map(String::as_str), Some("admin-cli"));
    let invitation = store.totp_invitation(alice.id).await.unwrap().unwrap();
    assert_eq!(invitation.created_by, "admin-cli");
    assert!(invitation.used_at.is_none());
}

#[cfg(unix)]
#[tokio::test]
async fn doctor_checks_the_data_encryption_key() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    assert!(passkey_cli(dir.path(), &["migrate"]).status.success());
    let out = passkey_cli(dir.path(), &["doctor"]);
    assert!(out.status.success(), "{}", text(&out.stdout));
    assert!(
        text(&out.stdout).contains("is created on the first dev start"),
        "{}",
        text(&out.stdout)
    );
    // Any admin command that needs it creates it (dev), private.
    assert!(
        passkey_cli(dir.path(), &["admin", "demo-load"])
            .status
            .success()
    );
    let key_file = dir
        .path()
        .join("data")
        .join(passkey::crypto::LOCAL_KEY_FILE);
    assert_eq!(
        std::fs::metadata(&key_file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let out = passkey_cli(dir.path(), &["doctor"]);
    assert!(out.status.success(), "{}", text(&out.stdout));
    let line = text(&out.stdout)
        .lines()
        .find(|l| l.contains("data-encryption key:"))
        .unwrap()
        .to_string();
    assert!(line.contains("[ ok ]") && line.contains("(dek-"), "{line}");
    let key_text = std::fs::read_to_string(&key_file).unwrap();
    let key_b64 = key_text.split_whitespace().last().unwrap();
    assert!(
        !text(&out.stdout).contains(key_b64),
        "doctor must not print the key"
    );
    std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = passkey_cli(dir.path(), &["doctor"]);
    assert!(!out.status.success());
    assert!(
        text(&out.stdout).contains("chmod 600"),
        "{}",
        text(&out.stdout)
    );
}

#[test]
fn a_production_start_without_the_data_encryption_key_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_passkey"));
    command.current_dir(dir.path()).arg("serve");
    for (name, _) in std::env::vars() {
        if name.starts_with("PASSKEY_") || name == "DATABASE_URL" || name == "RUST_LOG" {
            command.env_remove(name);
        }
    }
    let out = command
        .env("PASSKEY_DATA_DIR", dir.path().join("data"))
        .env("PASSKEY_LOG__FILTER", "warn")
        .env("PASSKEY_PROFILE", "production")
        .env("PASSKEY_PUBLIC_URL", "https://passkey.contoso.example")
        .env(
            "PASSKEY_BOT__APP_ID",
            "6a0f3c52-94b1-4e7d-8c2a-1b5e9f0d7a34",
        )
        .env("PASSKEY_BOT__APP_PASSWORD", "pw")
        .env("PASSKEY_BOT__ALLOWED_TENANTS", "tenant-1")
        .env("PASSKEY_VAULT__BACKEND", "commander-cli")
        .env(
            "PASSKEY_VAULT__COMMANDER_CONFIG_PATH",
            "/nonexistent/keeper.json",
        )
        .env("PASSKEY_OTP__SMS_PROVIDER", "twilio")
        .env("PASSKEY_OTP__TWILIO_ACCOUNT_SID", TWILIO_SID)
        .env("PASSKEY_OTP__TWILIO_AUTH_TOKEN", TWILIO_TOKEN)
        .env("PASSKEY_OTP__SMS_FROM", "+18005550100")
        // The issuance page signs people in with Entra in production.
        .env(
            "PASSKEY_WEB__OIDC__CLIENT_ID",
            "3c1a9e77-2b4d-4f60-8e1a-6d5c4b3a2f10",
        )
        .env("PASSKEY_WEB__OIDC__CLIENT_SECRET", "web-secret")
        .env("PASSKEY_WEB__OIDC__TENANT_ID", "tenant-1")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("no data-encryption key at"), "{err}");
    assert!(!err.contains(TWILIO_TOKEN));
    assert!(
        !dir.path()
            .join("data")
            .join(passkey::crypto::LOCAL_KEY_FILE)
            .exists(),
        "production never makes a key"
    );
}

/// Twilio's account resource (`GET /2010-04-01/Accounts/{Sid}.json`), which `doctor` reads to
/// prove the credentials: the same basic-auth check as sending.
async fn fake_twilio_account(
    axum::extract::Path(file): axum::extract::Path<String>,
    headers: HeaderMap,
) -> impl IntoResponse {
    let expected = format!(
        "Basic {}",
        B64.encode(format!("{TWILIO_SID}:{TWILIO_TOKEN}"))
    );
    if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some(expected.as_str()) {
        return (
            StatusCode::UNAUTHORIZED,
            axum::Json(serde_json::json!({"code": 20003, "message": "Authenticate",
                "more_info": "https://www.twilio.com/docs/errors/20003", "status": 401})),
        );
    }
    if file != format!("{TWILIO_SID}.json") {
        return (
            StatusCode::NOT_FOUND,
            axum::Json(serde_json::json!({"code": 20404, "status": 404})),
        );
    }
    (
        StatusCode::OK,
        axum::Json(
            serde_json::json!({"sid": TWILIO_SID, "friendly_name": "Contoso",
            "status": "active", "type": "Full"}),
        ),
    )
}

/// A fake Twilio on loopback: messages and the account resource.
async fn twilio_on_loopback(gateway: Arc<Gateway>) -> String {
    serve(
        axum::Router::new()
            .route(
                "/2010-04-01/Accounts/{sid}/Messages.json",
                axum::routing::post(fake_twilio),
            )
            .route(
                "/2010-04-01/Accounts/{file}",
                axum::routing::get(fake_twilio_account),
            )
            .with_state(gateway),
    )
    .await
}

/// One instance of the service over `w`'s database, texting through `settings`' gateway and
/// alerting into its own `Told`.
fn instance(w: &World, settings: &OtpSettings, key: &Arc<DataKey>) -> (OtpService, Arc<Told>) {
    let told = Arc::new(Told::default());
    let sender = passkey::otp::sms_sender(settings, w.clock.clone()).unwrap();
    let otp = OtpService::new(
        w.store.clone(),
        w.clock.clone(),
        key.clone(),
        sender,
        settings.clone(),
    )
    .with_notifier(told.clone());
    (otp, told)
}

// A wrong SMS credential is not a passing outage: Twilio's 401 (error 20003) tells the person
// texting is not working and to contact an admin; admins are alerted in Teams once — not per
// attempt, not per instance — naming the settings; the fault is on record until a text goes
// through, and a later fault alerts again. A 503 stays "try again" (#21.6).
on_both_databases!(a_refused_sms_credential_alerts_admins_once_and_sends_the_person_to_an_admin);
async fn a_refused_sms_credential_alerts_admins_once_and_sends_the_person_to_an_admin(db: Db) {
    let gateway = Arc::new(Gateway::default());
    let base = twilio_on_loopback(gateway.clone()).await;
    let good = OtpSettings {
        sms_provider: SmsProvider::Twilio,
        twilio_base_url: base.clone(),
        twilio_account_sid: Some(TWILIO_SID.into()),
        twilio_auth_token: Some(SecretString::from(TWILIO_TOKEN)),
        sms_from: Some("+18005550100".into()),
        ..OtpSettings::default()
    };
    let bad = OtpSettings {
        twilio_auth_token: Some(SecretString::from("wrong-token")),
        ..good.clone()
    };
    let w = world_with(&db, good.clone()).await;
    let key = Arc::new(DataKey::generate().unwrap().0);
    let (a, told_a) = instance(&w, &bad, &key);
    let (b, told_b) = instance(&w, &bad, &key);
    let (fixed, told_fixed) = instance(&w, &good, &key);
    a.set_phone(&Actor::Admin(admin::Actor::Cli), w.alice.id, ALICE_PHONE)
        .await
        .unwrap();

    for (service, round) in [(&a, 1), (&b, 2), (&a, 3)] {
        let err = service
            .begin(&w.alice, &w.request, &w.token_hash)
            .await
            .unwrap_err();
        assert!(
            matches!(err, OtpError::TextingNotWorking),
            "{round}: {err:?}"
        );
        let text = err.to_string();
        assert!(
            text.contains("not working") && text.contains("contact your Passkey admin"),
            "{text}"
        );
        assert!(!text.contains("try again"), "{text}");
        let api = passkey::web::issue::otp_error(err);
        assert_eq!(api.status().as_u16(), 503);
        assert_nothing_leaks(&text, "the person's message");
    }
    let alerts: Vec<String> = told_a
        .admins
        .lock()
        .unwrap()
        .iter()
        .chain(told_b.admins.lock().unwrap().iter())
        .cloned()
        .collect();
    assert_eq!(
        alerts.len(),
        1,
        "one alert for three refusals on two instances: {alerts:?}"
    );
    for needed in [
        "otp.twilio_account_sid",
        "otp.twilio_auth_token",
        "PASSKEY_OTP__TWILIO_AUTH_TOKEN",
        "twilio",
        "20003",
    ] {
        assert!(alerts[0].contains(needed), "`{needed}` in {}", alerts[0]);
    }
    assert_nothing_leaks(&alerts[0], "the admin alert");
    assert!(!alerts[0].contains("wrong-token"));
    let faults = w.store.sms_credential_faults().await.unwrap();
    assert_eq!(faults.len(), 1, "{faults:?}");
    assert_eq!(faults[0].provider, "twilio");
    assert!(faults[0].detail.contains("401"), "{faults:?}");
    let refused: Vec<_> = w
        .store
        .audit_events_for_request(w.request.id)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.action == "OTP_SEND_FAILED")
        .collect();
    assert_eq!(refused.len(), 3, "each refused send is audited");
    assert_eq!(refused[0].detail.0["class"], "credentials");

    // A passing outage after the fix is still "try again", and does not end or repeat the alert.
    gateway.script.lock().unwrap().push((
        503,
        serde_json::json!({"code": 20503, "message": "Service unavailable", "status": 503}),
    ));
    let err = fixed
        .begin(&w.alice, &w.request, &w.token_hash)
        .await
        .unwrap_err();
    assert!(matches!(err, OtpError::SendFailed), "{err:?}");
    assert_eq!(w.store.sms_credential_faults().await.unwrap().len(), 1);

    // A text goes through: the fault is over.
    fixed
        .begin(&w.alice, &w.request, &w.token_hash)
        .await
        .unwrap();
    assert!(w.store.sms_credential_faults().await.unwrap().is_empty());
    assert!(told_fixed.admins.lock().unwrap().is_empty());

    // The credential breaks again later: a new fault, a new alert.
    w.clock.advance(Duration::hours(1));
    let err = b
        .begin(&w.alice, &w.request, &w.token_hash)
        .await
        .unwrap_err();
    assert!(matches!(err, OtpError::TextingNotWorking), "{err:?}");
    assert_eq!(told_b.admins.lock().unwrap().len(), 1);
}

// ACS answers a wrong access key with 401: the same, naming the ACS settings.
on_both_databases!(a_refused_acs_access_key_alerts_admins_naming_it);
async fn a_refused_acs_access_key_alerts_admins_naming_it(db: Db) {
    let gateway = Arc::new(Gateway::default());
    let base = serve(
        axum::Router::new()
            .route("/sms", axum::routing::post(fake_acs))
            .with_state(gateway.clone()),
    )
    .await;
    let wrong_key = B64.encode("a-different-access-key-for-this-test-000");
    let settings = OtpSettings {
        sms_provider: SmsProvider::Acs,
        acs_endpoint: Some(base),
        acs_access_key: Some(SecretString::from(wrong_key.clone())),
        sms_from: Some("+18005550100".into()),
        ..OtpSettings::default()
    };
    let w = world_with(&db, settings.clone()).await;
    let key = Arc::new(DataKey::generate().unwrap().0);
    let (service, told) = instance(&w, &settings, &key);
    service
        .set_phone(&Actor::Admin(admin::Actor::Cli), w.alice.id, ALICE_PHONE)
        .await
        .unwrap();
    for _ in 0..2 {
        let err = service
            .begin(&w.alice, &w.request, &w.token_hash)
            .await
            .unwrap_err();
        assert!(matches!(err, OtpError::TextingNotWorking), "{err:?}");
    }
    let alerts = told.admins.lock().unwrap().clone();
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert!(
        alerts[0].contains("otp.acs_access_key")
            && alerts[0].contains("PASSKEY_OTP__ACS_ACCESS_KEY"),
        "{}",
        alerts[0]
    );
    assert!(!alerts[0].contains(&wrong_key));
    assert_nothing_leaks(&alerts[0], "the admin alert");
    assert_eq!(
        w.store.sms_credential_faults().await.unwrap()[0].provider,
        "acs"
    );
}

// `doctor` proves Twilio credentials with a call that sends nothing (reading the account), and
// names the settings when they are refused (#21.6).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_checks_the_twilio_credentials_without_sending_anything() {
    let gateway = Arc::new(Gateway::default());
    let base = twilio_on_loopback(gateway.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    assert!(passkey_cli(dir.path(), &["migrate"]).status.success());
    let doctor = |token: &str| {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_passkey"));
        command.current_dir(dir.path()).arg("doctor");
        for (name, _) in std::env::vars() {
            if name.starts_with("PASSKEY_") || name == "DATABASE_URL" || name == "RUST_LOG" {
                command.env_remove(name);
            }
        }
        let out = command
            .env("PASSKEY_DATA_DIR", dir.path().join("data"))
            .env("PASSKEY_LOG__FILTER", "warn")
            .env("PASSKEY_OTP__SMS_PROVIDER", "twilio")
            .env("PASSKEY_OTP__TWILIO_BASE_URL", &base)
            .env("PASSKEY_OTP__TWILIO_ACCOUNT_SID", TWILIO_SID)
            .env("PASSKEY_OTP__TWILIO_AUTH_TOKEN", token)
            .env("PASSKEY_OTP__SMS_FROM", "+18005550100")
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let out = doctor(TWILIO_TOKEN);
    let line = out
        .lines()
        .find(|l| l.contains("sms provider:"))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(line.contains("[ ok ]") && line.contains("twilio"), "{line}");

    let out = doctor("wrong-token");
    let line = out
        .lines()
        .find(|l| l.contains("sms provider:"))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(
        line.contains("[FAIL]")
            && line.contains("otp.twilio_auth_token")
            && line.contains("PASSKEY_OTP__TWILIO_AUTH_TOKEN"),
        "{line}"
    );
    assert!(
        !out.contains("wrong-token") && !out.contains(TWILIO_TOKEN),
        "{out}"
    );
    assert!(
        gateway.requests.lock().unwrap().is_empty(),
        "no message was sent"
    );
}
