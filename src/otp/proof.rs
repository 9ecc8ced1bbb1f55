//! The proof that a second factor was verified for one retrieval.

/// A challenge bound to this request and this issuance token was answered correctly and used up.
/// Only the OTP service makes one ([`crate::otp::OtpService::verify`]); the lifecycle's retrieval
/// takes it instead of a flag, so no caller can claim a second factor it did not check.
///
/// Code outside `otp` cannot make one, neither by a constructor nor by a literal:
///
/// ```compile_fail
/// let proof = passkey::otp::SecondFactorProof::new(1, "0".repeat(64));
/// ```
///
/// ```compile_fail
/// let proof = passkey::otp::SecondFactorProof { request_id: 1, token_hash: "0".repeat(64) };
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct SecondFactorProof {
    request_id: i64,
    token_hash: String,
}

impl SecondFactorProof {
    pub(in crate::otp) fn new(request_id: i64, token_hash: String) -> Self {
        Self {
            request_id,
            token_hash,
        }
    }

    /// The request whose retrieval the verified challenge unlocks.
    pub fn request_id(&self) -> i64 {
        self.request_id
    }

    /// SHA-256 hex of the issuance token the challenge was bound to: the only token it unlocks.
    pub fn token_hash(&self) -> &str {
        &self.token_hash
    }
}
