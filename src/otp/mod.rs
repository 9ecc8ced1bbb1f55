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
mod proof;
pub mod sms;
pub mod totp;

use crate::config::{OtpSettings, SmsProvider};
use crate::crypto::{CryptoError, DataKey};
use crate::domain::{Clock, FactorChange, OtpChannel, PhoneSource, Timestamp};
use crate::governance::admin;
use crate::governance::directory::UserDirectory;
use crate::governance::lifecycle::{ClientInfo, Notifier, SilentNotifier};
use crate::store::{
    ConsumeOutcome, FactorProof, NewAuditEvent, NewChallenge, NewFactorProof, OtpChallenge,
    Request, Store, StoreError, TotpInvitation, User,
};
use code::PhoneNumber;
use secrecy::SecretString;
use serde_json::json;
use sms::{SmsError, SmsFailure, SmsSender};
use std::sync::Arc;
use time::Duration;
use uuid::Uuid;

pub use proof::SecondFactorProof;

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
    /// The person typed `otp.max_wrong_codes_per_hour` wrong codes within the hour (any challenge,
    /// any channel): no new challenge and no further guess until the oldest of them ages out.
    #[error("Too many wrong codes. Please try again in {} minute(s).", .retry_after_secs.div_ceil(60))]
    TooManyFailures { retry_after_secs: u64 },
    /// A factor change without proof: a code texted to the number on file, or an invitation.
    #[error("To change your authenticator app, first confirm a code texted to the number on file.")]
    ProofRequired,
    /// A factor change asked for by someone with no number on file to text a proof code to.
    #[error(
        "There is no phone number on file to confirm this change. Ask an admin to invite you to set \
         up an authenticator app (`admin totp-invite`)."
    )]
    NoPhoneOnFile,
    /// An invitation was offered and there is none open (never issued, used, or expired).
    #[error("You have no open invitation to set up an authenticator app. Ask an admin for one.")]
    NoInvitation,
    /// A proof code sent for one change (e.g. set-up) offered for another (e.g. removal).
    #[error("That code was sent for a different change. Ask for a new code.")]
    ProofForAnotherChange,
    /// Concurrent guesses kept moving the row: this one was not counted, so it is not judged.
    #[error("Too many attempts at once. Please try again in a moment.")]
    Contended,
    #[error("Please wait {retry_after_secs} seconds before asking for another code.")]
    ResendTooSoon { retry_after_secs: u64 },
    #[error("No more codes can be sent for this attempt. Start again in a few minutes.")]
    NoMoreResends,
    #[error("The code could not be sent. Please try again in a moment.")]
    SendFailed,
    /// The SMS provider refuses Passkey's credentials: no retry helps until an admin acts.
    #[error(
        "Texting codes is not working right now: Passkey's text-message service is not set up \
         correctly. Your admins have been alerted; please contact your Passkey admin."
    )]
    TextingNotWorking,
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
            OtpError::Contended => Some(1),
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
    /// The same, as the proof the lifecycle's retrieval takes (only `verify` makes one).
    pub proof: SecondFactorProof,
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
    /// An admin's invitation to set up an authenticator is open.
    pub invitation_open: bool,
}

/// A proof code texted for a factor change, waiting to be typed.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ProofStarted {
    pub proof_id: Uuid,
    /// Where the code went, masked (`•••• 4411`).
    pub destination_hint: String,
    pub expires_at: Timestamp,
}

/// What authorises a change to a person's authenticator app.
#[derive(Debug, Clone)]
pub enum FactorProofInput {
    /// The code texted to the number on file for this change (`begin_factor_change`).
    TextedCode { proof_id: Uuid, code: SecretString },
    /// An admin's open invitation (set-up only).
    Invitation,
}

/// Which proof a change went through, for the audit trail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ProofUsed {
    TextedCode,
    Invitation,
}

impl ProofUsed {
    fn as_str(self) -> &'static str {
        match self {
            ProofUsed::TextedCode => "texted_code",
            ProofUsed::Invitation => "invitation",
        }
    }
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

/// The window of the per-person cap on wrong codes (`otp.max_wrong_codes_per_hour`).
const GUESS_WINDOW: Duration = Duration::hours(1);

/// "from 203.0.113.9" for a message about a change made on the page.
fn from_address(client: &ClientInfo) -> String {
    match &client.ip {
        Some(ip) => format!("from {ip}"),
        None => "from an unknown address".into(),
    }
}

/// What a person is told after each change to their second factor.
const NOT_YOU: &str = "Not you? Tell your admin now: someone may be using your account.";

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
    /// Tells people about changes to their second factor, and admins about guessing.
    notifier: Arc<dyn Notifier>,
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
            notifier: Arc::new(SilentNotifier),
        }
    }

    /// Where people are told about changes to their second factor (their Teams 1:1 chat), and
    /// admins about someone reaching the wrong-code cap.
    pub fn with_notifier(mut self, notifier: Arc<dyn Notifier>) -> Self {
        self.notifier = notifier;
        self
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
        self.check_guess_allowance(user, now).await?;
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
            &phone,
            &code,
            Texted::Retrieval {
                request_id: request.id,
                record_id: Some(request.record_id),
                challenge_id: id,
                send: 1,
            },
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
            &phone,
            &code,
            Texted::Retrieval {
                request_id: challenge.request_id,
                record_id: None,
                challenge_id,
                send,
            },
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
        // Past the person's hourly allowance not even the right code is judged: the allowance
        // is what bounds guessing, across this and every other challenge.
        self.check_guess_allowance(user, now).await?;
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
                        let token_hash = row.token_hash.unwrap_or_default();
                        return Ok(VerifiedChallenge {
                            request_id: row.request_id,
                            proof: SecondFactorProof::new(row.request_id, token_hash.clone()),
                            token_hash,
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
                Some(row) => {
                    self.after_wrong_code(user, now).await?;
                    if row.locked_at.is_some() {
                        return Err(OtpError::Locked);
                    }
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

    /// Texts a code to the number on file that proves the person holds it, before their
    /// authenticator app is set up, replaced (`FactorChange::Enroll`) or removed (`Remove`). A
    /// signed-in session alone never changes the second factor (#14.1).
    pub async fn begin_factor_change(
        &self,
        user: &User,
        change: FactorChange,
    ) -> Result<ProofStarted, OtpError> {
        let now = self.clock.now();
        self.check_guess_allowance(user, now).await?;
        let phone = match self.phone_of(user.id).await? {
            Some(phone) => phone,
            None => self
                .phone_from_directory(user)
                .await?
                .ok_or(OtpError::NoPhoneOnFile)?,
        };
        if let Some(last) = self.store.last_code_sent_to(user.id).await? {
            self.check_cooldown(last, now)?;
        }
        let id = Uuid::new_v4();
        let code = code::generate_code().map_err(|_| CryptoError::Random)?;
        self.text_code(
            user,
            &phone,
            &code,
            Texted::Proof {
                change,
                proof_id: id,
            },
            now,
        )
        .await?;
        let proof = NewFactorProof {
            id,
            user_id: user.id,
            purpose: change,
            code_hash: code::code_hash(&self.pepper, &id, &code),
            max_attempts: self.settings.max_attempts as i32,
            created_at: now,
            expires_at: now.plus(self.ttl()),
        };
        let audit = NewAuditEvent::new(user_ref(user), "FACTOR_PROOF_SENT", now).detail(json!({
            "proof_id": id, "change": change, "provider": self.sms.provider(),
        }));
        let row = self.store.create_factor_proof(&proof, &audit).await?;
        Ok(ProofStarted {
            proof_id: row.id,
            destination_hint: phone.masked(),
            expires_at: row.expires_at,
        })
    }

    /// Starts an authenticator enrollment — a fresh 160-bit secret, sealed, shown once as an
    /// otpauth URI and a QR code — once `proof` shows the person holds the factor on file (or an
    /// admin invited them). Any earlier app, confirmed or not, is replaced: until the new one is
    /// confirmed, codes are texted. The person is told in Teams.
    pub async fn enroll_totp(
        &self,
        user: &User,
        proof: &FactorProofInput,
        client: &ClientInfo,
    ) -> Result<TotpEnrollment, OtpError> {
        let now = self.clock.now();
        let via = self
            .use_proof(user, FactorChange::Enroll, proof, now)
            .await?;
        let replaced = self
            .store
            .totp_enrollment(user.id)
            .await?
            .is_some_and(|e| e.confirmed_at.is_some());
        let secret = totp::generate_secret().map_err(|_| CryptoError::Random)?;
        let sealed = self.key.seal(&totp_purpose(user.id), &secret)?;
        let audit = NewAuditEvent::new(user_ref(user), "TOTP_ENROLLED", now).detail(json!({
            "user_id": user.id, "proof": via.as_str(), "replaces_confirmed": replaced, "ip": client.ip,
        }));
        self.store
            .replace_totp_enrollment(user.id, &sealed, now, &audit)
            .await?;
        let what = if replaced {
            "Your authenticator app for Passkey was removed and a new one is being set up"
        } else {
            "An authenticator app is being set up for your Passkey account"
        };
        self.notifier
            .tell_user(
                user.id,
                &format!(
                    "{what} ({}, {}). {NOT_YOU}",
                    self.their_time(user.id, now).await,
                    from_address(client)
                ),
            )
            .await;
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
    /// as used. From then on the app answers retrievals; the person is told in Teams.
    pub async fn confirm_totp(
        &self,
        user: &User,
        code: &str,
        client: &ClientInfo,
    ) -> Result<(), OtpError> {
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
            .detail(json!({ "user_id": user.id, "ip": client.ip }));
        match self
            .store
            .confirm_totp_enrollment(user.id, &enrollment.secret_sealed, step, now, &audit)
            .await
        {
            Ok(_) => {}
            Err(StoreError::Conflict(_)) => return Err(OtpError::AlreadyEnrolled),
            Err(e) => return Err(e.into()),
        }
        self.notifier
            .tell_user(
                user.id,
                &format!(
                    "A new authenticator app now answers your Passkey retrievals ({}, {}). {NOT_YOU}",
                    self.their_time(user.id, now).await,
                    from_address(client)
                ),
            )
            .await;
        Ok(())
    }

    /// Removes the person's own authenticator app, with a code texted to the number on file as
    /// proof; their codes are texted from then on. False when they had none.
    pub async fn remove_totp(
        &self,
        user: &User,
        proof: &FactorProofInput,
        client: &ClientInfo,
    ) -> Result<bool, OtpError> {
        if matches!(proof, FactorProofInput::Invitation) {
            return Err(OtpError::ProofRequired);
        }
        let now = self.clock.now();
        self.use_proof(user, FactorChange::Remove, proof, now)
            .await?;
        let audit = NewAuditEvent::new(user_ref(user), "TOTP_REMOVED", now).detail(
            json!({ "user_id": user.id, "proof": ProofUsed::TextedCode.as_str(), "ip": client.ip }),
        );
        let removed = self.store.delete_totp_enrollment(user.id, &audit).await?;
        if removed {
            self.notifier
                .tell_user(
                    user.id,
                    &format!(
                        "Your authenticator app was removed from Passkey ({}, {}); codes are texted to you \
                         from now on. {NOT_YOU}",
                        self.their_time(user.id, now).await,
                        from_address(client)
                    ),
                )
                .await;
        }
        Ok(removed)
    }

    /// An admin's one-time invitation for a person to set up an authenticator app without a factor
    /// on file (no phone number, or a lost app), usable once within `otp.invitation_ttl_secs`.
    /// Nothing secret is handed out: the person's own sign-in redeems it. They are told in Teams.
    pub async fn invite_totp(
        &self,
        by: &admin::Actor,
        user_id: i64,
    ) -> Result<TotpInvitation, OtpError> {
        let Some(user) = self.store.user_by_id(user_id).await? else {
            return Err(OtpError::UnknownUser);
        };
        let now = self.clock.now();
        let expires_at = now.plus(Duration::seconds(
            self.settings.invitation_ttl_secs.min(i64::MAX as u64) as i64,
        ));
        let audit = NewAuditEvent::new(by.audit_name(), "TOTP_INVITATION_ISSUED", now)
            .detail(json!({ "user_id": user.id, "expires_at": expires_at.to_fixed_text() }));
        let invitation = self
            .store
            .create_totp_invitation(user.id, &by.audit_name(), now, expires_at, &audit)
            .await?;
        self.notifier
            .tell_user(
                user.id,
                &format!(
                    "{} invited you to set up an authenticator app for Passkey ({}). Open any retrieval \
                     page before {} to do it; the invitation works once. Not expecting this? Tell your admin.",
                    admin_label(by),
                    self.their_time(user.id, now).await,
                    self.their_time(user.id, expires_at).await
                ),
            )
            .await;
        Ok(invitation)
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
        // A number read from the person's own profile is not news to them; an admin's change is.
        if let Actor::Admin(admin) = by {
            self.notifier
                .tell_user(
                    user_id,
                    &format!(
                        "{} set the phone number Passkey texts your codes to ({}, now {}). {NOT_YOU}",
                        admin_label(admin),
                        self.their_time(user_id, now).await,
                        phone.masked()
                    ),
                )
                .await;
        }
        Ok(())
    }

    /// Removes a person's authenticator (lost or replaced device), so they can enroll again;
    /// until they do, their code is texted. False when they had none.
    pub async fn reset_totp(&self, by: &Actor, user_id: i64) -> Result<bool, OtpError> {
        if self.store.user_by_id(user_id).await?.is_none() {
            return Err(OtpError::UnknownUser);
        }
        let now = self.clock.now();
        let audit = NewAuditEvent::new(by.audit_name(), "TOTP_RESET", now)
            .detail(json!({ "user_id": user_id }));
        let removed = self.store.delete_totp_enrollment(user_id, &audit).await?;
        if let (true, Actor::Admin(admin)) = (removed, by) {
            self.notifier
                .tell_user(
                    user_id,
                    &format!(
                        "{} removed your authenticator app from Passkey ({}); codes are texted to you until \
                         you set up a new one. {NOT_YOU}",
                        admin_label(admin),
                        self.their_time(user_id, now).await
                    ),
                )
                .await;
        }
        Ok(removed)
    }

    /// A time in a notice to `user_id`: in the zone their Teams client last reported, named (UTC,
    /// named, when none is known) — they read it later, wherever they are (#18.6).
    async fn their_time(&self, user_id: i64, at: Timestamp) -> String {
        at.to_local_text(
            &crate::governance::conversations::zone_of(self.store.as_ref(), user_id).await,
        )
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
        let now = self.clock.now();
        Ok(SecondFactors {
            totp_confirmed: enrollment
                .as_ref()
                .is_some_and(|e| e.confirmed_at.is_some()),
            totp_pending: enrollment
                .as_ref()
                .is_some_and(|e| e.confirmed_at.is_none()),
            phone_hint: self.phone_of(user.id).await?.map(|p| p.masked()),
            invitation_open: self
                .store
                .totp_invitation(user.id)
                .await?
                .is_some_and(|i| i.used_at.is_none() && i.expires_at > now),
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

    fn guess_cap(&self) -> usize {
        self.settings.max_wrong_codes_per_hour.max(1) as usize
    }

    /// Refuses once the person typed `otp.max_wrong_codes_per_hour` wrong codes in the last hour
    /// (every challenge, every channel, every proof), until the oldest that counts ages out.
    async fn check_guess_allowance(&self, user: &User, now: Timestamp) -> Result<(), OtpError> {
        let wrong = self
            .store
            .wrong_codes_since(user.id, now.minus(GUESS_WINDOW))
            .await?;
        let cap = self.guess_cap();
        if wrong.len() >= cap {
            let free_at = wrong[wrong.len() - cap].plus(GUESS_WINDOW);
            return Err(OtpError::TooManyFailures {
                retry_after_secs: free_at.since(now).whole_seconds().max(1) as u64,
            });
        }
        Ok(())
    }

    /// After a wrong code was counted: at the cap, admins are alerted (once an hour per person,
    /// whichever instance gets there first) and the person gets the pause instead of another try.
    async fn after_wrong_code(&self, user: &User, now: Timestamp) -> Result<(), OtpError> {
        let wrong = self
            .store
            .wrong_codes_since(user.id, now.minus(GUESS_WINDOW))
            .await?;
        if wrong.len() < self.guess_cap() {
            return Ok(());
        }
        if self
            .store
            .claim_guess_cap_alert(user.id, now, now.minus(GUESS_WINDOW))
            .await?
        {
            let audit = NewAuditEvent::new("system:second-factor", "OTP_GUESS_CAP_REACHED", now)
                .detail(json!({
                    "user_id": user.id, "wrong_codes": wrong.len(), "window_secs": GUESS_WINDOW.whole_seconds(),
                }));
            self.store.append_audit(&audit).await?;
            tracing::warn!(target: LOG_TARGET, user_id = user.id, wrong_codes = wrong.len(), "wrong-code cap reached");
            self.notifier
                .alert_admins(&format!(
                    "Passkey: {} typed {} wrong second-factor codes within an hour ({}). No new code is \
                     sent to them for up to an hour. If they say it was not them, their sign-in may be in \
                     someone else's hands.",
                    user.display_name,
                    wrong.len(),
                    now.to_minute_text()
                ))
                .await;
        }
        self.check_guess_allowance(user, now).await
    }

    /// Checks and uses the proof for a factor change: the texted code (single use; a wrong one
    /// counts against the hourly cap) or the person's open invitation (set-up only, once).
    async fn use_proof(
        &self,
        user: &User,
        change: FactorChange,
        proof: &FactorProofInput,
        now: Timestamp,
    ) -> Result<ProofUsed, OtpError> {
        let (proof_id, typed) = match proof {
            FactorProofInput::Invitation => {
                if change != FactorChange::Enroll {
                    return Err(OtpError::ProofRequired);
                }
                let audit = NewAuditEvent::new(user_ref(user), "TOTP_INVITATION_USED", now)
                    .detail(json!({ "user_id": user.id }));
                return if self.store.use_totp_invitation(user.id, now, &audit).await? {
                    Ok(ProofUsed::Invitation)
                } else {
                    Err(OtpError::NoInvitation)
                };
            }
            FactorProofInput::TextedCode { proof_id, code } => {
                use secrecy::ExposeSecret;
                (*proof_id, code::normalize_code(code.expose_secret()))
            }
        };
        // A concurrent guess can move the row between read and write: read again, a few times.
        for _ in 0..5 {
            let row = self.live_proof_of(user, proof_id, now).await?;
            if row.purpose != change {
                return Err(OtpError::ProofForAnotherChange);
            }
            self.check_guess_allowance(user, now).await?;
            let right = typed.as_ref().is_some_and(|t| {
                code::same_hash(&row.code_hash, &code::code_hash(&self.pepper, &row.id, t))
            });
            if right {
                let audit = NewAuditEvent::new(user_ref(user), "FACTOR_PROOF_VERIFIED", now)
                    .detail(json!({ "proof_id": row.id, "change": change }));
                if self
                    .store
                    .consume_factor_proof(row.id, now, &audit)
                    .await?
                    .is_some()
                {
                    return Ok(ProofUsed::TextedCode);
                }
                continue;
            }
            let locks = row.attempts + 1 >= row.max_attempts;
            let action = if locks {
                "FACTOR_PROOF_LOCKED"
            } else {
                "FACTOR_PROOF_WRONG_CODE"
            };
            let audit = NewAuditEvent::new(user_ref(user), action, now).detail(json!({
                "proof_id": row.id, "change": change, "attempt": row.attempts + 1,
                "max_attempts": row.max_attempts,
            }));
            if let Some(after) = self
                .store
                .record_factor_proof_wrong_code(row.id, row.attempts, now, &audit)
                .await?
            {
                self.after_wrong_code(user, now).await?;
                if after.locked_at.is_some() {
                    return Err(OtpError::Locked);
                }
                return Err(OtpError::WrongCode {
                    attempts_left: (after.max_attempts - after.attempts).max(0) as u32,
                });
            }
        }
        Err(OtpError::Contended)
    }

    /// The factor-change proof, if it is this person's and still answerable.
    async fn live_proof_of(
        &self,
        user: &User,
        id: Uuid,
        now: Timestamp,
    ) -> Result<FactorProof, OtpError> {
        let proof = self
            .store
            .factor_proof_by_id(id)
            .await?
            .ok_or(OtpError::Expired)?;
        if proof.user_id != user.id {
            return Err(OtpError::NotYours);
        }
        if proof.consumed_at.is_some() {
            return Err(OtpError::AlreadyUsed);
        }
        if proof.locked_at.is_some() {
            return Err(OtpError::Locked);
        }
        if proof.expires_at <= now {
            return Err(OtpError::Expired);
        }
        Ok(proof)
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
    async fn text_code(
        &self,
        user: &User,
        phone: &PhoneNumber,
        code: &str,
        what: Texted,
        now: Timestamp,
    ) -> Result<(), OtpError> {
        let minutes = (self.settings.code_ttl_secs.div_ceil(60)).max(1);
        let plural = if minutes == 1 { "" } else { "s" };
        let message = SecretString::from(match what {
            Texted::Retrieval { .. } => format!(
                "Your Passkey code is {code}. It expires in {minutes} minute{plural}. Never share it."
            ),
            Texted::Proof { change, .. } => format!(
                "Your Passkey code to {} an authenticator app is {code}. It expires in {minutes} \
                 minute{plural}. Never share it. Not you? Tell your admin.",
                match change {
                    FactorChange::Enroll => "set up",
                    FactorChange::Remove => "remove",
                }
            ),
        });
        let Err(SmsError {
            provider,
            class,
            detail,
        }) = self.sms.send(phone, &message).await
        else {
            // A text went through: any credential fault on record is over. The code is sent
            // either way, so a database hiccup here does not fail the person's step.
            match self
                .store
                .clear_sms_credential_fault(self.sms.provider())
                .await
            {
                Ok(true) => {
                    tracing::info!(target: LOG_TARGET, provider = self.sms.provider(), "the SMS provider accepts Passkey's credentials again");
                }
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(target: LOG_TARGET, error = %e, "SMS credential fault not cleared");
                }
            }
            return Ok(());
        };
        tracing::warn!(
            target: LOG_TARGET,
            provider,
            ?class,
            detail = %detail,
            to = %phone.masked(),
            user_id = user.id,
            "one-time code not sent"
        );
        let audit = match what {
            Texted::Retrieval {
                request_id,
                record_id,
                challenge_id,
                send,
            } => {
                let mut audit = NewAuditEvent::new(user_ref(user), "OTP_SEND_FAILED", now)
                    .request(request_id)
                    .detail(json!({
                        "challenge_id": challenge_id, "provider": provider, "class": class,
                        "detail": detail, "send": send,
                    }));
                audit.record_id = record_id;
                audit
            }
            Texted::Proof { change, proof_id } => {
                NewAuditEvent::new(user_ref(user), "OTP_SEND_FAILED", now).detail(json!({
                    "proof_id": proof_id, "change": change, "provider": provider, "class": class,
                    "detail": detail,
                }))
            }
        };
        self.store.append_audit(&audit).await?;
        if class == SmsFailure::Credentials {
            self.sms_credentials_refused(provider, &detail, now).await?;
            return Err(OtpError::TextingNotWorking);
        }
        Err(OtpError::SendFailed)
    }

    /// The SMS provider refused Passkey's credentials: admins are alerted in Teams once per fault
    /// (whichever instance records it first; it ends when a text goes through), naming the
    /// settings to fix. `admin health` and `doctor` show it while it lasts.
    async fn sms_credentials_refused(
        &self,
        provider: &str,
        detail: &str,
        now: Timestamp,
    ) -> Result<(), OtpError> {
        if !self
            .store
            .record_sms_credential_fault(provider, detail, now)
            .await?
        {
            return Ok(());
        }
        let settings = sms::credential_settings(provider);
        let audit = NewAuditEvent::new("system:second-factor", "SMS_CREDENTIALS_REFUSED", now)
            .detail(json!({ "provider": provider, "detail": detail }));
        self.store.append_audit(&audit).await?;
        tracing::error!(target: LOG_TARGET, provider, detail, "the SMS provider refuses Passkey's credentials; no code can be texted");
        self.notifier
            .alert_admins(&format!(
                "Passkey: texting one-time codes is not working. The SMS provider ({provider}) refused \
                 Passkey's credentials or account ({detail}) at {}. Check {settings}. People who \
                 need a texted code are told to contact an admin until a text goes through again.",
                now.to_minute_text()
            ))
            .await;
        Ok(())
    }
}

/// What a texted code is for.
#[derive(Debug, Clone, Copy)]
enum Texted {
    Retrieval {
        request_id: i64,
        record_id: Option<i64>,
        challenge_id: Uuid,
        send: i32,
    },
    Proof {
        change: FactorChange,
        proof_id: Uuid,
    },
}

/// How an admin is named to the person whose second factor they changed.
fn admin_label(admin: &admin::Actor) -> String {
    match admin {
        admin::Actor::User(u) => format!("{} (an admin, in Teams)", u.display_name),
        admin::Actor::Cli => "An admin, from the Passkey command line,".into(),
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
