//! The second factor at retrieval (issue 8), below the HTTP layer: [`OtpService`] starts a
//! challenge bound to an issuance token, texts a code (or asks for the authenticator app's),
//! checks what the person types, and enrolls authenticator apps. The web edge calls it; nothing
//! here knows about HTTP.
//!
//! - `code`: 6-digit codes (OS CSPRNG, no modulo bias), keyed hashes, constant-time checks, E.164.
//! - `totp`: RFC 6238 (HMAC-SHA1, 30 s, 6 digits), ±1 step, the otpauth URI and its QR code (SVG).
//! - `sms`: the gateways (Azure Communication Services, Twilio, the dev console).
//!
//! What is stored: phone numbers and TOTP secrets sealed with the data-encryption key
//! (`crypto.rs`); for texted codes only a keyed hash; never a code, a secret or a number in
//! plaintext, in the database, the audit trail, errors or logs (numbers show as `•••• 4411`).

pub mod code;
pub mod sms;
pub mod totp;

use crate::config::{OtpSettings, SmsProvider};
use crate::crypto::{CryptoError, DataKey};
use crate::domain::{Clock, OtpChannel, PhoneSource, Timestamp};
use crate::governance::admin;
use crate::governance::directory::UserDirectory;
use crate::store::{
    ConsumeOutcome, NewAuditEvent, NewChallenge, OtpChallenge, Request, Store, StoreError, User,
};
use code::PhoneNumber;
use secrecy::SecretString;
use serde_json::json;
use sms::{SmsError, SmsSender};
use std::sync::Arc;
use time::Duration;
use uuid::Uuid;

/// The log target of this module's lines. Not `passkey::otp`: the compact log format prints
/// `target: message`, and the redaction layer (`telemetry.rs`) reads `otp: <word>` as a secret
/// field and scrubs the message's first word.
pub const LOG_TARGET: &str = "passkey::second_factor";

/// Why a second-factor step did not go through. The messages are for the person at the page:
/// they never hold a code, a secret or a phone number.
#[derive(Debug, thiserror::Error)]
pub enum OtpError {
    #[error(
        "No phone number or authenticator app is set up for you. Set up an authenticator app, or ask an \
         admin to add your mobile number."
    )]
    NoPhoneOrAuthenticator,
    #[error("That code is not right. {attempts_left} attempt(s) left.")]
    WrongCode { attempts_left: u32 },
    #[error("Too many wrong codes: this challenge is locked. Start again to get a new code.")]
    Locked,
    #[error("This code has expired. Start again to get a new one.")]
    Expired,
    #[error("This code was already used.")]
    AlreadyUsed,
    #[error("This challenge belongs to someone else.")]
    NotYours,
    /// Several challenges locked within the hour: no new one until the oldest of them ages out.
    #[error("Too many wrong codes. Please try again in {} minute(s).", .retry_after_secs.div_ceil(60))]
    TooManyFailures { retry_after_secs: u64 },
    #[error("Please wait {retry_after_secs} seconds before asking for another code.")]
    ResendTooSoon { retry_after_secs: u64 },
    #[error("No more codes can be sent for this attempt. Start again in a few minutes.")]
    NoMoreResends,
    #[error("The code could not be sent. Please try again in a moment.")]
    SendFailed,
    #[error(
        "An authenticator app is already set up for you. Ask an admin to reset it if you lost it."
    )]
    AlreadyEnrolled,
    #[error("Set up your authenticator app first.")]
    NotEnrolled,
    #[error(
        "That code does not match the authenticator app. Check the app's clock and try the current code."
    )]
    CodeNotAccepted,
    #[error("That is not a phone number in international form, e.g. +15550104411.")]
    InvalidPhoneNumber,
    #[error("No such person.")]
    UnknownUser,
    #[error("invalid input: {0}")]
    InvalidInput(&'static str),
    /// Sealed data could not be opened (a missing or changed key): an operator problem.
    #[error("Something went wrong on our side. Please try again later.")]
    Crypto(#[from] CryptoError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl OtpError {
    /// True when the person's input or situation is the reason (a 4xx for the web edge), false
    /// when Passkey or its database failed (`Store`, `Crypto`: a 5xx).
    pub fn is_refusal(&self) -> bool {
        !matches!(self, OtpError::Store(_) | OtpError::Crypto(_))
    }

    /// Seconds to wait before trying again, where the answer has one (`Retry-After`).
    pub fn retry_after_secs(&self) -> Option<u64> {
        match self {
            OtpError::ResendTooSoon { retry_after_secs }
            | OtpError::TooManyFailures { retry_after_secs } => Some(*retry_after_secs),
            _ => None,
        }
    }
}

/// A challenge that is waiting for its code.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ChallengeStarted {
    pub challenge_id: Uuid,
    /// In JSON `"sms"` or `"totp"` (what the issuance page's script reads).
    #[serde(serialize_with = "lowercase_channel")]
    pub channel: OtpChannel,
    /// Where the code went, masked (`•••• 4411`); `None` for the authenticator app.
    pub destination_hint: Option<String>,
    pub expires_at: Timestamp,
    /// When another text may be asked for; `None` when none may (TOTP, or the cap is reached).
    pub resend_after: Option<Timestamp>,
}

fn lowercase_channel<S: serde::Serializer>(c: &OtpChannel, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&c.as_str().to_ascii_lowercase())
}

/// A challenge answered correctly (and used up): the retrieval it unlocks.
#[derive(Debug, Clone, PartialEq)]
pub struct VerifiedChallenge {
    pub request_id: i64,
    /// SHA-256 hex of the issuance token the challenge was started with: the caller must
    /// exchange that token and no other.
    pub token_hash: String,
}

impl VerifiedChallenge {
    /// Whether `token` is the issuance token this challenge was started with (constant time).
    pub fn matches_token(&self, token: &SecretString) -> bool {
        use secrecy::ExposeSecret;
        code::same_hash(
            &self.token_hash,
            &crate::canonical::sha256_hex(token.expose_secret()),
        )
    }
}

/// A new authenticator enrollment, shown once. Both fields carry the secret.
pub struct TotpEnrollment {
    pub otpauth_uri: SecretString,
    /// An inline `<svg>` QR code of the URI (no script, no external references).
    pub qr_svg: String,
}

impl std::fmt::Debug for TotpEnrollment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TotpEnrollment { .. }")
    }
}

/// What second factors a person has, for the page to decide what to offer.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct SecondFactors {
    pub totp_confirmed: bool,
    /// An enrollment was started but never confirmed.
    pub totp_pending: bool,
    /// Their phone number, masked.
    pub phone_hint: Option<String>,
}

/// Who sets a phone number.
#[derive(Debug, Clone)]
pub enum Actor {
    /// An admin (in Teams or the shell).
    Admin(admin::Actor),
    /// The profile sync from Microsoft Graph (`mobilePhone`).
    GraphSync,
}

impl Actor {
    fn audit_name(&self) -> String {
        match self {
            Actor::Admin(a) => a.audit_name(),
            Actor::GraphSync => "system:graph-sync".into(),
        }
    }

    fn source(&self) -> PhoneSource {
        match self {
            Actor::Admin(_) => PhoneSource::Admin,
            Actor::GraphSync => PhoneSource::Graph,
        }
    }
}

/// Locked challenges per person per hour before `begin` refuses: each challenge allows
/// `max_attempts` guesses, so this bounds guesses at an authenticator code (which, unlike a texted
/// one, stays the same across challenges for 30 s) to 15 an hour.
pub const LOCKS_PER_HOUR: usize = 3;

fn phone_purpose(user_id: i64) -> String {
    format!("phone:user:{user_id}")
}

fn totp_purpose(user_id: i64) -> String {
    format!("totp:user:{user_id}")
}

fn user_ref(user: &User) -> String {
    format!("user:{}", user.id)
}

fn is_hex64(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The second factor's use cases.
pub struct OtpService {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    key: Arc<DataKey>,
    /// HMAC key of texted-code hashes (a subkey of the data key).
    pepper: [u8; 32],
    sms: Arc<dyn SmsSender>,
    settings: OtpSettings,
    /// Where a person's profile number (Graph `mobilePhone`) comes from when none is stored.
    directory: Option<Arc<dyn UserDirectory>>,
}

impl OtpService {
    pub fn new(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        key: Arc<DataKey>,
        sms: Arc<dyn SmsSender>,
        settings: OtpSettings,
    ) -> Self {
        let pepper = key.derive_subkey("otp-code-hash");
        OtpService {
            store,
            clock,
            key,
            pepper,
            sms,
            settings,
            directory: None,
        }
    }

    /// Reads a person's number from their directory profile (Graph `mobilePhone`) the first
    /// time a code is to be texted and none is stored; an admin-set number is never replaced.
    pub fn with_directory(mut self, directory: Arc<dyn UserDirectory>) -> Self {
        self.directory = Some(directory);
        self
    }

    fn ttl(&self) -> Duration {
        Duration::seconds(self.settings.code_ttl_secs as i64)
    }

    fn cooldown(&self) -> Duration {
        Duration::seconds(self.settings.resend_cooldown_secs as i64)
    }

    /// Starts the second factor for a retrieval: the authenticator app when the person has a
    /// confirmed one, else a code texted to their phone. `token_hash` is the SHA-256 hex of the
    /// issuance token the caller has just checked; the challenge unlocks that token only.
    pub async fn begin(
        &self,
        user: &User,
        request: &Request,
        token_hash: &str,
    ) -> Result<ChallengeStarted, OtpError> {
        if request.requester_id != user.id {
            return Err(OtpError::NotYours);
        }
        if !is_hex64(token_hash) {
            return Err(OtpError::InvalidInput(
                "token hash must be 64 lower-case hex digits",
            ));
        }
        let now = self.clock.now();
        let locks = self
            .store
            .challenge_locks_since(user.id, now.minus(Duration::hours(1)))
            .await?;
        if locks.len() >= LOCKS_PER_HOUR {
            let free_at = locks[locks.len() - LOCKS_PER_HOUR].plus(Duration::hours(1));
            return Err(OtpError::TooManyFailures {
                retry_after_secs: free_at.since(now).whole_seconds().max(1) as u64,
            });
        }
        let id = Uuid::new_v4();
        let expires_at = now.plus(self.ttl());
        let totp_ready = self
            .store
            .totp_enrollment(user.id)
            .await?
            .is_some_and(|e| e.confirmed_at.is_some());
        if totp_ready {
            let challenge = NewChallenge {
                id,
                request_id: request.id,
                user_id: user.id,
                channel: OtpChannel::Totp,
                code_hash: None,
                max_attempts: self.settings.max_attempts as i32,
                created_at: now,
                expires_at,
                last_sent_at: None,
                send_count: 0,
                token_hash: token_hash.to_string(),
            };
            let audit = NewAuditEvent::new(user_ref(user), "OTP_CHALLENGE_STARTED", now)
                .request(request.id)
                .record(request.record_id)
                .detail(json!({ "challenge_id": id, "channel": OtpChannel::Totp }));
            let row = self.store.create_challenge(&challenge, &audit).await?;
            return Ok(self.started(&row, None));
        }
        let phone = match self.phone_of(user.id).await? {
            Some(phone) => phone,
            None => self
                .phone_from_directory(user)
                .await?
                .ok_or(OtpError::NoPhoneOrAuthenticator)?,
        };
        if let Some(last) = self.store.last_code_sent_to(user.id).await? {
            self.check_cooldown(last, now)?;
        }
        let code = code::generate_code().map_err(|_| CryptoError::Random)?;
        self.text_code(
            user,
            request.id,
            Some(request.record_id),
            id,
            &phone,
            &code,
            1,
            now,
        )
        .await?;
        let challenge = NewChallenge {
            id,
            request_id: request.id,
            user_id: user.id,
            channel: OtpChannel::Sms,
            code_hash: Some(code::code_hash(&self.pepper, &id, &code)),
            max_attempts: self.settings.max_attempts as i32,
            created_at: now,
            expires_at,
            last_sent_at: Some(now),
            send_count: 1,
            token_hash: token_hash.to_string(),
        };
        let audit = NewAuditEvent::new(user_ref(user), "OTP_SENT", now)
            .request(request.id)
            .record(request.record_id)
            .detail(json!({
                "challenge_id": id, "channel": OtpChannel::Sms, "provider": self.sms.provider(), "send": 1,
            }));
        let row = self.store.create_challenge(&challenge, &audit).await?;
        Ok(self.started(&row, Some(phone.masked())))
    }

    /// Texts a new code for a live SMS challenge (the old one stops working), after the cooldown
    /// and within the cap. For an authenticator challenge nothing is sent and it is returned as is.
    pub async fn resend(
        &self,
        user: &User,
        challenge_id: Uuid,
    ) -> Result<ChallengeStarted, OtpError> {
        let now = self.clock.now();
        let challenge = self.live_challenge_of(user, challenge_id, now).await?;
        if challenge.channel == OtpChannel::Totp {
            return Ok(self.started(&challenge, None));
        }
        if challenge.send_count >= self.settings.max_sends as i32 {
            return Err(OtpError::NoMoreResends);
        }
        if let Some(last) = challenge.last_sent_at {
            self.check_cooldown(last, now)?;
        }
        let phone = self
            .phone_of(user.id)
            .await?
            .ok_or(OtpError::NoPhoneOrAuthenticator)?;
        let code = code::generate_code().map_err(|_| CryptoError::Random)?;
        let send = challenge.send_count + 1;
        self.text_code(
            user,
            challenge.request_id,
            None,
            challenge_id,
            &phone,
            &code,
            send,
            now,
        )
        .await?;
        let audit = NewAuditEvent::new(user_ref(user), "OTP_SENT", now)
            .request(challenge.request_id)
            .detail(json!({
                "challenge_id": challenge_id, "channel": OtpChannel::Sms, "provider": self.sms.provider(),
                "send": send,
            }));
        match self
            .store
            .record_resend(
                challenge_id,
                &code::code_hash(&self.pepper, &challenge_id, &code),
                now,
                now.plus(self.ttl()),
                challenge.send_count,
                &audit,
            )
            .await?
        {
            Some(row) => Ok(self.started(&row, Some(phone.masked()))),
            // Another resend won the race (its code is the live one), or it just ended.
            None => {
                let again = self.live_challenge_of(user, challenge_id, now).await?;
                let wait = again.last_sent_at.map_or(0, |l| {
                    l.plus(self.cooldown()).since(now).whole_seconds().max(1)
                });
                Err(OtpError::ResendTooSoon {
                    retry_after_secs: wait as u64,
                })
            }
        }
    }

    /// Checks a code against a challenge. A right code uses the challenge up (single use) and
    /// returns the retrieval it unlocks; a wrong one counts, and the last allowed wrong one locks
    /// the challenge — after that even the right code is refused.
    pub async fn verify(
        &self,
        user: &User,
        challenge_id: Uuid,
        code: &str,
    ) -> Result<VerifiedChallenge, OtpError> {
        let now = self.clock.now();
        let typed = code::normalize_code(code);
        let mut challenge = self.live_challenge_of(user, challenge_id, now).await?;
        // A concurrent guess can move the row between read and write: read again, a few times.
        for _ in 0..5 {
            let (right, step) = match challenge.channel {
                OtpChannel::Sms => {
                    let right = match (&typed, &challenge.code_hash) {
                        (Some(t), Some(stored)) => code::same_hash(
                            stored,
                            &code::code_hash(&self.pepper, &challenge.id, t),
                        ),
                        _ => false,
                    };
                    (right, None)
                }
                OtpChannel::Totp => {
                    let step = match (&typed, self.store.totp_enrollment(user.id).await?) {
                        (Some(t), Some(e)) if e.confirmed_at.is_some() => {
                            let secret = self.key.open(&totp_purpose(user.id), &e.secret_sealed)?;
                            totp::matching_step(
                                &secret,
                                t,
                                totp::step_at(now.unix_seconds()),
                                e.last_accepted_step,
                            )
                        }
                        _ => None,
                    };
                    (step.is_some(), step)
                }
            };
            if right {
                let audit = NewAuditEvent::new(user_ref(user), "OTP_VERIFIED", now)
                    .request(challenge.request_id)
                    .detail(json!({
                        "challenge_id": challenge.id, "channel": challenge.channel,
                        "attempt": challenge.attempts + 1,
                    }));
                match self
                    .store
                    .consume_challenge(challenge.id, now, step, &audit)
                    .await?
                {
                    ConsumeOutcome::Consumed(row) => {
                        return Ok(VerifiedChallenge {
                            request_id: row.request_id,
                            token_hash: row.token_hash.unwrap_or_default(),
                        });
                    }
                    ConsumeOutcome::NotLive => {
                        challenge = self.live_challenge_of(user, challenge_id, now).await?;
                        continue;
                    }
                    // The same step was used meanwhile (a replay): a wrong code, below.
                    ConsumeOutcome::StepReplayed => {}
                }
            }
            let locks = challenge.attempts + 1 >= challenge.max_attempts;
            let action = if locks {
                "OTP_LOCKED"
            } else {
                "OTP_WRONG_CODE"
            };
            let audit = NewAuditEvent::new(user_ref(user), action, now)
                .request(challenge.request_id)
                .detail(json!({
                    "challenge_id": challenge.id, "channel": challenge.channel,
                    "attempt": challenge.attempts + 1, "max_attempts": challenge.max_attempts,
                }));
            match self
                .store
                .record_wrong_code(challenge.id, challenge.attempts, now, &audit)
                .await?
            {
                Some(row) if row.locked_at.is_some() => return Err(OtpError::Locked),
                Some(row) => {
                    return Err(OtpError::WrongCode {
                        attempts_left: (row.max_attempts - row.attempts).max(0) as u32,
                    });
                }
                None => challenge = self.live_challenge_of(user, challenge_id, now).await?,
            }
        }
        // Still losing races after several tries: someone is hammering this challenge. This guess
        // was not counted, so it is not judged either; the state as it is now answers.
        self.live_challenge_of(user, challenge_id, now).await?;
        Err(OtpError::WrongCode {
            attempts_left: (challenge.max_attempts - challenge.attempts).max(0) as u32,
        })
    }

    /// Starts an authenticator enrollment: a fresh 160-bit secret, sealed, shown once as an
    /// otpauth URI and a QR code. An unconfirmed earlier one is replaced; a confirmed one is kept
    /// (a signed-in session alone must not swap the second factor).
    pub async fn enroll_totp(&self, user: &User) -> Result<TotpEnrollment, OtpError> {
        if self
            .store
            .totp_enrollment(user.id)
            .await?
            .is_some_and(|e| e.confirmed_at.is_some())
        {
            return Err(OtpError::AlreadyEnrolled);
        }
        let now = self.clock.now();
        let secret = totp::generate_secret().map_err(|_| CryptoError::Random)?;
        let sealed = self.key.seal(&totp_purpose(user.id), &secret)?;
        let audit = NewAuditEvent::new(user_ref(user), "TOTP_ENROLLED", now)
            .detail(json!({ "user_id": user.id }));
        match self
            .store
            .start_totp_enrollment(user.id, &sealed, now, &audit)
            .await
        {
            Ok(_) => {}
            Err(StoreError::Conflict(_)) => return Err(OtpError::AlreadyEnrolled),
            Err(e) => return Err(e.into()),
        }
        let account = user
            .upn
            .as_deref()
            .or(user.email.as_deref())
            .unwrap_or(&user.display_name);
        let uri = totp::otpauth_uri(account, &secret);
        let qr_svg = totp::qr_svg(&uri)
            .map_err(|_| OtpError::InvalidInput("account name too long for a QR code"))?;
        Ok(TotpEnrollment {
            otpauth_uri: SecretString::from(uri),
            qr_svg,
        })
    }

    /// Confirms the pending enrollment with a first code from the app; that code's step counts
    /// as used.
    pub async fn confirm_totp(&self, user: &User, code: &str) -> Result<(), OtpError> {
        let enrollment = self
            .store
            .totp_enrollment(user.id)
            .await?
            .ok_or(OtpError::NotEnrolled)?;
        if enrollment.confirmed_at.is_some() {
            return Err(OtpError::AlreadyEnrolled);
        }
        let now = self.clock.now();
        let secret = self
            .key
            .open(&totp_purpose(user.id), &enrollment.secret_sealed)?;
        let step = code::normalize_code(code)
            .and_then(|c| totp::matching_step(&secret, &c, totp::step_at(now.unix_seconds()), None))
            .ok_or(OtpError::CodeNotAccepted)?;
        let audit = NewAuditEvent::new(user_ref(user), "TOTP_CONFIRMED", now)
            .detail(json!({ "user_id": user.id }));
        match self
            .store
            .confirm_totp_enrollment(user.id, &enrollment.secret_sealed, step, now, &audit)
            .await
        {
            Ok(_) => Ok(()),
            Err(StoreError::Conflict(_)) => Err(OtpError::AlreadyEnrolled),
            Err(e) => Err(e.into()),
        }
    }

    /// Sets a person's phone number (validated as E.164, stored sealed).
    pub async fn set_phone(&self, by: &Actor, user_id: i64, e164: &str) -> Result<(), OtpError> {
        let phone = PhoneNumber::parse(e164).ok_or(OtpError::InvalidPhoneNumber)?;
        if self.store.user_by_id(user_id).await?.is_none() {
            return Err(OtpError::UnknownUser);
        }
        let now = self.clock.now();
        let sealed = self
            .key
            .seal(&phone_purpose(user_id), phone.e164().as_bytes())?;
        let audit = NewAuditEvent::new(by.audit_name(), "PHONE_NUMBER_SET", now)
            .detail(json!({ "user_id": user_id, "source": by.source() }));
        self.store
            .set_phone_number(user_id, &sealed, by.source(), now, &audit)
            .await?;
        Ok(())
    }

    /// Removes a person's authenticator (lost or replaced device), so they can enroll again;
    /// until they do, their code is texted. False when they had none.
    pub async fn reset_totp(&self, by: &Actor, user_id: i64) -> Result<bool, OtpError> {
        if self.store.user_by_id(user_id).await?.is_none() {
            return Err(OtpError::UnknownUser);
        }
        let audit = NewAuditEvent::new(by.audit_name(), "TOTP_RESET", self.clock.now())
            .detail(json!({ "user_id": user_id }));
        Ok(self.store.delete_totp_enrollment(user_id, &audit).await?)
    }

    /// Dev: gives each demo person who has none a fictional phone number (NANP 555-01xx, which
    /// no real phone has), as if their Entra profile carried it. Returns how many were set.
    pub async fn give_demo_phones(&self) -> Result<usize, OtpError> {
        let mut set = 0;
        for (email, phone) in DEMO_PHONES {
            let Some(user) = self.store.user_by_email(email).await? else {
                continue;
            };
            if self.store.phone_number(user.id).await?.is_none() {
                self.set_phone(&Actor::GraphSync, user.id, phone).await?;
                set += 1;
            }
        }
        Ok(set)
    }

    /// Which second factors a person has.
    pub async fn factors(&self, user: &User) -> Result<SecondFactors, OtpError> {
        let enrollment = self.store.totp_enrollment(user.id).await?;
        Ok(SecondFactors {
            totp_confirmed: enrollment
                .as_ref()
                .is_some_and(|e| e.confirmed_at.is_some()),
            totp_pending: enrollment
                .as_ref()
                .is_some_and(|e| e.confirmed_at.is_none()),
            phone_hint: self.phone_of(user.id).await?.map(|p| p.masked()),
        })
    }

    /// The SMS gateway in use (`console`, `acs`, `twilio`).
    pub fn sms_provider(&self) -> &'static str {
        self.sms.provider()
    }

    async fn phone_of(&self, user_id: i64) -> Result<Option<PhoneNumber>, OtpError> {
        let Some(row) = self.store.phone_number(user_id).await? else {
            return Ok(None);
        };
        let plain = self.key.open(&phone_purpose(user_id), &row.phone_sealed)?;
        let text = String::from_utf8(plain).map_err(|_| CryptoError::Open)?;
        Ok(Some(PhoneNumber::parse(&text).ok_or(CryptoError::Open)?))
    }

    /// The person's profile number, stored (sealed, source GRAPH) when it is a valid one. Only a
    /// profile whose object id is this person's counts; a directory that fails is logged and
    /// treated as "no number" (the person is told to set up an authenticator or ask an admin).
    async fn phone_from_directory(&self, user: &User) -> Result<Option<PhoneNumber>, OtpError> {
        let Some(directory) = &self.directory else {
            return Ok(None);
        };
        let Some(address) = user.upn.as_deref().or(user.email.as_deref()) else {
            return Ok(None);
        };
        let profile = match directory.user_by_address(address).await {
            Ok(Some(p)) if p.id.eq_ignore_ascii_case(&user.aad_object_id) => p,
            Ok(_) => return Ok(None),
            Err(e) => {
                tracing::warn!(target: LOG_TARGET, user_id = user.id, error = %e, "directory lookup for a phone number failed");
                return Ok(None);
            }
        };
        let Some(phone) = profile.mobile_phone.as_deref().and_then(PhoneNumber::parse) else {
            return Ok(None);
        };
        self.set_phone(&Actor::GraphSync, user.id, phone.e164())
            .await?;
        Ok(Some(phone))
    }

    fn check_cooldown(&self, last_sent: Timestamp, now: Timestamp) -> Result<(), OtpError> {
        let next = last_sent.plus(self.cooldown());
        if next > now {
            let wait = next.since(now);
            let secs = wait.whole_seconds() + i64::from(wait.subsec_nanoseconds() > 0);
            return Err(OtpError::ResendTooSoon {
                retry_after_secs: secs.max(1) as u64,
            });
        }
        Ok(())
    }

    /// The challenge, if it is this person's and still answerable.
    async fn live_challenge_of(
        &self,
        user: &User,
        id: Uuid,
        now: Timestamp,
    ) -> Result<OtpChallenge, OtpError> {
        // Housekeeping forgets expired challenges, so an unknown id reads as expired.
        let challenge = self
            .store
            .challenge_by_id(id)
            .await?
            .ok_or(OtpError::Expired)?;
        if challenge.user_id != user.id {
            return Err(OtpError::NotYours);
        }
        if challenge.consumed_at.is_some() {
            return Err(OtpError::AlreadyUsed);
        }
        if challenge.locked_at.is_some() {
            return Err(OtpError::Locked);
        }
        if challenge.expires_at <= now {
            return Err(OtpError::Expired);
        }
        Ok(challenge)
    }

    fn started(&self, c: &OtpChallenge, hint: Option<String>) -> ChallengeStarted {
        let resend_after = match (c.channel, c.last_sent_at) {
            (OtpChannel::Sms, Some(last)) if c.send_count < self.settings.max_sends as i32 => {
                Some(last.plus(self.cooldown()))
            }
            _ => None,
        };
        ChallengeStarted {
            challenge_id: c.id,
            channel: c.channel,
            destination_hint: hint,
            expires_at: c.expires_at,
            resend_after,
        }
    }

    /// Texts a code; a failure is audited (`OTP_SEND_FAILED`, class and gateway code only) and
    /// logged with the number masked, and the person is told to try again.
    #[allow(clippy::too_many_arguments)]
    async fn text_code(
        &self,
        user: &User,
        request_id: i64,
        record_id: Option<i64>,
        challenge_id: Uuid,
        phone: &PhoneNumber,
        code: &str,
        send: i32,
        now: Timestamp,
    ) -> Result<(), OtpError> {
        let minutes = (self.settings.code_ttl_secs.div_ceil(60)).max(1);
        let message = SecretString::from(format!(
            "Your Passkey code is {code}. It expires in {minutes} minute{}. Never share it.",
            if minutes == 1 { "" } else { "s" }
        ));
        let Err(SmsError {
            provider,
            class,
            detail,
        }) = self.sms.send(phone, &message).await
        else {
            return Ok(());
        };
        tracing::warn!(
            target: LOG_TARGET,
            provider,
            ?class,
            detail = %detail,
            to = %phone.masked(),
            user_id = user.id,
            request_id,
            "one-time code not sent"
        );
        let mut audit = NewAuditEvent::new(user_ref(user), "OTP_SEND_FAILED", now)
            .request(request_id)
            .detail(json!({
                "challenge_id": challenge_id, "provider": provider, "class": class, "detail": detail,
                "send": send,
            }));
        audit.record_id = record_id;
        self.store.append_audit(&audit).await?;
        Err(OtpError::SendFailed)
    }
}

/// The demo people's phone numbers: fictional (NANP 555-0100…0199 is reserved for fiction).
pub const DEMO_PHONES: &[(&str, &str)] = &[
    ("alice@contoso.example", "+14255550101"),
    ("bob@contoso.example", "+14255550102"),
    ("carol@contoso.example", "+14255550103"),
    ("dave@contoso.example", "+14255550104"),
    ("erin@contoso.example", "+14255550105"),
];

/// The SMS gateway the settings select.
pub fn sms_sender(
    settings: &OtpSettings,
    clock: Arc<dyn Clock>,
) -> Result<Arc<dyn SmsSender>, String> {
    let timeout = std::time::Duration::from_secs(settings.sms_timeout_secs.max(1));
    let from = settings.sms_from.clone().unwrap_or_default();
    match settings.sms_provider {
        SmsProvider::Console => Ok(Arc::new(sms::ConsoleSender)),
        SmsProvider::Acs => {
            let (Some(endpoint), Some(key)) = (&settings.acs_endpoint, &settings.acs_access_key)
            else {
                return Err(
                    "otp.sms_provider = acs needs otp.acs_endpoint and otp.acs_access_key".into(),
                );
            };
            Ok(Arc::new(sms::AcsSender::new(
                endpoint, key, &from, timeout, clock,
            )?))
        }
        SmsProvider::Twilio => {
            let (Some(sid), Some(token)) =
                (&settings.twilio_account_sid, &settings.twilio_auth_token)
            else {
                return Err(
                    "otp.sms_provider = twilio needs otp.twilio_account_sid and otp.twilio_auth_token".into(),
                );
            };
            Ok(Arc::new(sms::TwilioSender::new(
                &settings.twilio_base_url,
                sid,
                token.clone(),
                &from,
                timeout,
            )?))
        }
    }
}

/// Whether a phone-number text is valid E.164 (for edges that validate before calling).
pub fn is_valid_phone_number(text: &str) -> bool {
    PhoneNumber::parse(text).is_some()
}

impl OtpService {
    /// For tests and the CLI: the data key (sealing checks, e.g. that a dump holds no plaintext).
    pub fn data_key(&self) -> &DataKey {
        &self.key
    }
}
