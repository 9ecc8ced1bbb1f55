//! One-time codes and phone numbers: 6 digits from the OS CSPRNG without modulo bias, stored only
//! as a keyed hash, compared in constant time; E.164 validation and masking for display.

use aws_lc_rs::hmac;

/// Digits in every code, texted or from an authenticator.
pub const CODE_DIGITS: usize = 6;
const CODE_SPACE: u32 = 1_000_000;

/// A fresh 6-digit code. Rejection sampling: 32-bit draws at or above the largest multiple of
/// 10^6 are thrown away, so every code is exactly equally likely.
pub fn generate_code() -> Result<String, getrandom::Error> {
    const LIMIT: u32 = u32::MAX - (u32::MAX % CODE_SPACE);
    loop {
        let mut bytes = [0u8; 4];
        getrandom::fill(&mut bytes)?;
        let n = u32::from_le_bytes(bytes);
        if n < LIMIT {
            return Ok(format!("{:06}", n % CODE_SPACE));
        }
    }
}

/// What is stored for a texted code: HMAC-SHA256 under a server-side pepper (a subkey of the
/// data-encryption key) over the challenge id and the code, as 64 lower-case hex digits. The
/// challenge id keys each hash to its row, so equal codes never hash alike; the pepper means a
/// database dump alone cannot try the million possible codes.
pub fn code_hash(pepper: &[u8], challenge_id: &uuid::Uuid, code: &str) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, pepper);
    let mut msg = Vec::with_capacity(16 + 1 + code.len());
    msg.extend_from_slice(challenge_id.as_bytes());
    msg.push(b':');
    msg.extend_from_slice(code.as_bytes());
    hex::encode(hmac::sign(&key, &msg).as_ref())
}

/// Constant-time equality of two hex digests (length is not secret).
pub fn same_hash(a: &str, b: &str) -> bool {
    crate::crypto::same_bytes(a.as_bytes(), b.as_bytes())
}

/// What a person typed, as a code: spaces and dashes (`123 456`, `123-456`) are dropped; anything
/// but exactly six ASCII digits is `None` (it still counts as a wrong attempt).
pub fn normalize_code(typed: &str) -> Option<String> {
    let digits: String = typed
        .chars()
        .filter(|c| !matches!(c, ' ' | '-' | '\u{a0}'))
        .collect();
    (digits.len() == CODE_DIGITS && digits.bytes().all(|b| b.is_ascii_digit())).then_some(digits)
}

/// A phone number in E.164 form: `+`, a country code that doesn't start with 0, 8 to 15 digits
/// in all. Debug prints it masked.
#[derive(Clone, PartialEq, Eq)]
pub struct PhoneNumber(String);

impl std::fmt::Debug for PhoneNumber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PhoneNumber({})", self.masked())
    }
}

impl PhoneNumber {
    /// Parses `+1 (555) 010-4411`, `+15550104411`, `+44 20 7946 0958`: spaces, dashes, dots and
    /// parentheses are dropped; the rest must be `+` and 8–15 digits, the first not 0.
    pub fn parse(text: &str) -> Option<PhoneNumber> {
        let compact: String = text
            .trim()
            .chars()
            .filter(|c| !matches!(c, ' ' | '-' | '.' | '(' | ')' | '\u{a0}'))
            .collect();
        let digits = compact.strip_prefix('+')?;
        let ok = (8..=15).contains(&digits.len())
            && digits.bytes().all(|b| b.is_ascii_digit())
            && !digits.starts_with('0');
        ok.then_some(PhoneNumber(compact))
    }

    /// The number itself (`+15550104411`), for the gateway only.
    pub fn e164(&self) -> &str {
        &self.0
    }

    /// What people and logs may see: `•••• 4411`.
    pub fn masked(&self) -> String {
        let tail = &self.0[self.0.len() - 4..];
        format!("•••• {tail}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_six_digits_and_vary() {
        let codes: std::collections::BTreeSet<String> =
            (0..200).map(|_| generate_code().unwrap()).collect();
        assert!(
            codes
                .iter()
                .all(|c| c.len() == 6 && c.bytes().all(|b| b.is_ascii_digit()))
        );
        assert!(
            codes.len() > 190,
            "codes repeat far too often: {}",
            codes.len()
        );
    }

    #[test]
    fn every_digit_appears_in_every_position() {
        // 2,000 codes: the chance a given digit never appears in a given position is 0.9^2000.
        let mut seen = [[false; 10]; 6];
        for _ in 0..2000 {
            for (i, b) in generate_code().unwrap().bytes().enumerate() {
                seen[i][(b - b'0') as usize] = true;
            }
        }
        assert!(seen.iter().all(|p| p.iter().all(|&s| s)));
    }

    #[test]
    fn hashes_are_keyed_by_challenge_and_pepper() {
        let a = uuid::Uuid::new_v4();
        let b = uuid::Uuid::new_v4();
        let h = code_hash(b"pepper", &a, "123456");
        assert_eq!(h.len(), 64);
        assert!(
            h.bytes()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
        );
        assert_eq!(h, code_hash(b"pepper", &a, "123456"));
        assert_ne!(h, code_hash(b"pepper", &b, "123456"));
        assert_ne!(h, code_hash(b"other", &a, "123456"));
        assert_ne!(h, code_hash(b"pepper", &a, "123457"));
        assert!(!h.contains("123456"));
        assert!(same_hash(&h, &code_hash(b"pepper", &a, "123456")));
        assert!(!same_hash(&h, &code_hash(b"pepper", &a, "654321")));
        assert!(!same_hash(&h, &h[..63]));
    }

    #[test]
    fn typed_codes_are_normalized_or_refused() {
        assert_eq!(normalize_code(" 123 456 ").as_deref(), Some("123456"));
        assert_eq!(normalize_code("123-456").as_deref(), Some("123456"));
        for bad in [
            "",
            "12345",
            "1234567",
            "12345a",
            "１２３４５６",
            "123456\n7",
        ] {
            assert_eq!(normalize_code(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn phone_numbers_are_e164_and_masked() {
        let p = PhoneNumber::parse("+1 (555) 010-4411").unwrap();
        assert_eq!(p.e164(), "+15550104411");
        assert_eq!(p.masked(), "•••• 4411");
        assert_eq!(format!("{p:?}"), "PhoneNumber(•••• 4411)");
        assert!(PhoneNumber::parse("+44 20 7946 0958").is_some());
        for bad in [
            "5550104411",
            "+0123456789",
            "+1555",
            "+1234567890123456",
            "+1555abc4411",
            "",
            "+",
            "tel:+15550104411",
        ] {
            assert!(PhoneNumber::parse(bad).is_none(), "{bad:?}");
        }
    }
}
