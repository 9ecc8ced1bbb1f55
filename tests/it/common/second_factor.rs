//! A real second factor for tests that drive `Lifecycle` directly: the OTP service texts a code
//! (to a [`CapturedSms`]) on a challenge bound to the issuance token, the code is read back and
//! verified, and `verify` hands over the [`SecondFactorProof`] that `exchange_proven` takes — the
//! way the issuance page gets one. No test can skip the factor.

use super::web::CapturedSms;
use passkey::config::OtpSettings;
use passkey::crypto::DataKey;
use passkey::domain::Clock;
use passkey::governance::lifecycle::Lifecycle;
use passkey::otp::{Actor, OtpService, SecondFactorProof};
use passkey::store::{Store, User};
use secrecy::SecretString;
use std::sync::Arc;

/// The number a person's codes go to when they have none yet (a fictional 555 number).
const PHONE: &str = "+15550104411";

/// An OTP service beside a lifecycle, on the same store and clock.
pub struct SecondFactor {
    otp: OtpService,
    sms: Arc<CapturedSms>,
}

impl SecondFactor {
    /// No cooldown between texts: a test proves as many retrievals as it likes at one instant.
    pub fn new(store: Arc<dyn Store>, clock: Arc<dyn Clock>) -> SecondFactor {
        let sms = Arc::new(CapturedSms::default());
        let key = Arc::new(DataKey::generate().unwrap().0);
        let settings = OtpSettings {
            resend_cooldown_secs: 0,
            ..OtpSettings::default()
        };
        let otp = OtpService::new(store, clock, key, sms.clone(), settings);
        SecondFactor { otp, sms }
    }

    /// Proves the second factor for retrieving `request_id` with `token`, as the page does:
    /// `check_issuance_token`, a challenge bound to the token's hash, the texted code verified.
    pub async fn prove(
        &self,
        life: &Lifecycle,
        user: &User,
        request_id: i64,
        token: &SecretString,
    ) -> SecondFactorProof {
        let (request, token_hash) = life
            .check_issuance_token(user, request_id, token)
            .await
            .expect("the token checks");
        if self.otp.factors(user).await.unwrap().phone_hint.is_none() {
            self.otp
                .set_phone(&Actor::GraphSync, user.id, PHONE)
                .await
                .unwrap();
        }
        let started = self.otp.begin(user, &request, &token_hash).await.unwrap();
        let code = self.sms.last_code_to(PHONE);
        let verified = self
            .otp
            .verify(user, started.challenge_id, &code)
            .await
            .unwrap();
        assert_eq!(verified.token_hash, token_hash);
        verified.proof
    }
}
