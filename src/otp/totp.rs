//! TOTP (RFC 6238 over RFC 4226 HOTP): HMAC-SHA1, 30-second steps, 6 digits, the authenticator-app
//! default. Secrets are 160 random bits, shown once as base32 in an `otpauth://` URI and a QR code
//! rendered here as SVG (no script, no external references).

use aws_lc_rs::hmac;

/// Seconds per time step.
pub const STEP_SECS: i64 = 30;
/// Steps either side of now that are accepted (clock drift, typing time).
pub const WINDOW: i64 = 1;
/// Secret length: 160 bits, as RFC 4226 recommends.
pub const SECRET_LEN: usize = 20;
pub const ISSUER: &str = "Passkey";

/// The time step a Unix time falls in.
pub fn step_at(unix_secs: i64) -> i64 {
    unix_secs.div_euclid(STEP_SECS)
}

/// HOTP (RFC 4226 §5.3): HMAC-SHA1 of the big-endian counter, dynamic truncation, the low
/// `digits` decimal digits, zero-padded.
pub fn hotp(secret: &[u8], counter: u64, digits: u32) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, secret);
    let mac = hmac::sign(&key, &counter.to_be_bytes());
    let mac = mac.as_ref();
    let offset = (mac[mac.len() - 1] & 0x0f) as usize;
    let binary = u32::from_be_bytes([
        mac[offset],
        mac[offset + 1],
        mac[offset + 2],
        mac[offset + 3],
    ]) & 0x7fff_ffff;
    let value = binary % 10u32.pow(digits);
    format!("{value:0width$}", width = digits as usize)
}

/// The 6-digit TOTP code for a time step.
pub fn totp_at_step(secret: &[u8], step: i64) -> String {
    hotp(secret, step.max(0) as u64, 6)
}

/// The step, within ±[`WINDOW`] of `now_step`, whose code is `code` and that is later than
/// `last_accepted` (a step already used can never be used again). Every candidate is compared in
/// constant time.
pub fn matching_step(
    secret: &[u8],
    code: &str,
    now_step: i64,
    last_accepted: Option<i64>,
) -> Option<i64> {
    let mut found = None;
    for step in (now_step - WINDOW)..=(now_step + WINDOW) {
        let candidate = totp_at_step(secret, step);
        let equal = crate::crypto::same_bytes(candidate.as_bytes(), code.as_bytes());
        if equal && last_accepted.is_none_or(|last| step > last) && found.is_none() {
            found = Some(step);
        }
    }
    found
}

/// A fresh 160-bit secret from the OS CSPRNG.
pub fn generate_secret() -> Result<[u8; SECRET_LEN], getrandom::Error> {
    let mut s = [0u8; SECRET_LEN];
    getrandom::fill(&mut s)?;
    Ok(s)
}

/// RFC 4648 base32, upper case, without padding (what authenticator apps expect).
pub fn base32(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut out = String::with_capacity(bytes.len().div_ceil(5) * 8);
    let mut buffer: u64 = 0;
    let mut bits = 0u32;
    for &b in bytes {
        buffer = (buffer << 8) | u64::from(b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(ALPHABET[((buffer >> bits) & 31) as usize] as char);
        }
    }
    if bits > 0 {
        out.push(ALPHABET[((buffer << (5 - bits)) & 31) as usize] as char);
    }
    out
}

/// `otpauth://totp/Passkey:{account}?secret=…&issuer=Passkey&algorithm=SHA1&digits=6&period=30`
/// (the Key Uri Format authenticator apps read), the account percent-encoded.
pub fn otpauth_uri(account: &str, secret: &[u8]) -> String {
    format!(
        "otpauth://totp/{ISSUER}:{}?secret={}&issuer={ISSUER}&algorithm=SHA1&digits=6&period={STEP_SECS}",
        percent_encode(account),
        base32(secret)
    )
}

/// The account label keeps its `@` readable in authenticator apps.
fn percent_encode(s: &str) -> String {
    const LABEL: &percent_encoding::AsciiSet = &crate::encoding::UNRESERVED.remove(b'@');
    crate::encoding::percent_encode(s, LABEL)
}

/// The URI as a QR code in an inline SVG element: black modules on white, a quiet zone, no XML
/// prolog (it goes inside an HTML page), labelled for screen readers. Only `<svg>`, `<rect>` and
/// one `<path>`: nothing a browser would run.
pub fn qr_svg(uri: &str) -> Result<String, qrcode::types::QrError> {
    let code = qrcode::QrCode::with_error_correction_level(uri.as_bytes(), qrcode::EcLevel::M)?;
    let svg = code
        .render::<qrcode::render::svg::Color>()
        .min_dimensions(220, 220)
        .quiet_zone(true)
        .build();
    let body = match svg.find("<svg") {
        Some(i) => &svg[i..],
        None => svg.as_str(),
    };
    Ok(body.replacen(
        "<svg ",
        "<svg role=\"img\" aria-label=\"QR code to add Passkey to your authenticator app\" ",
        1,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    const RFC_SECRET: &[u8] = b"12345678901234567890";

    /// RFC 6238 appendix B, the SHA-1 column (8 digits).
    const VECTORS: &[(i64, &str)] = &[
        (59, "94287082"),
        (1_111_111_109, "07081804"),
        (1_111_111_111, "14050471"),
        (1_234_567_890, "89005924"),
        (2_000_000_000, "69279037"),
        (20_000_000_000, "65353130"),
    ];

    #[test]
    fn rfc6238_appendix_b_sha1_vectors() {
        for (t, expected) in VECTORS {
            assert_eq!(
                hotp(RFC_SECRET, step_at(*t) as u64, 8),
                *expected,
                "T = {t}"
            );
            // Six digits are the low six of the same truncated value.
            assert_eq!(
                totp_at_step(RFC_SECRET, step_at(*t)),
                expected[2..],
                "T = {t}"
            );
        }
    }

    #[test]
    fn rfc4226_appendix_d_hotp_vectors() {
        let expected = [
            "755224", "287082", "359152", "969429", "338314", "254676", "287922", "162583",
            "399871", "520489",
        ];
        for (counter, code) in expected.iter().enumerate() {
            assert_eq!(hotp(RFC_SECRET, counter as u64, 6), *code);
        }
    }

    #[test]
    fn the_window_is_one_step_either_side_and_used_steps_never_match() {
        let now = step_at(1_234_567_890);
        for drift in [-1, 0, 1] {
            let code = totp_at_step(RFC_SECRET, now + drift);
            assert_eq!(
                matching_step(RFC_SECRET, &code, now, None),
                Some(now + drift)
            );
        }
        for drift in [-3, -2, 2, 3] {
            let code = totp_at_step(RFC_SECRET, now + drift);
            assert_eq!(
                matching_step(RFC_SECRET, &code, now, None),
                None,
                "drift {drift}"
            );
        }
        let code = totp_at_step(RFC_SECRET, now);
        assert_eq!(matching_step(RFC_SECRET, &code, now, Some(now)), None);
        assert_eq!(matching_step(RFC_SECRET, &code, now, Some(now + 1)), None);
        assert_eq!(
            matching_step(RFC_SECRET, &code, now, Some(now - 1)),
            Some(now)
        );
    }

    #[test]
    fn base32_matches_rfc4648() {
        assert_eq!(base32(b""), "");
        assert_eq!(base32(b"f"), "MY");
        assert_eq!(base32(b"fo"), "MZXQ");
        assert_eq!(base32(b"foo"), "MZXW6");
        assert_eq!(base32(b"foob"), "MZXW6YQ");
        assert_eq!(base32(b"fooba"), "MZXW6YTB");
        assert_eq!(base32(b"foobar"), "MZXW6YTBOI");
        assert_eq!(base32(RFC_SECRET), "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ");
    }

    #[test]
    fn the_uri_names_issuer_and_account() {
        let uri = otpauth_uri("alice smith@contoso.example", RFC_SECRET);
        assert_eq!(
            uri,
            "otpauth://totp/Passkey:alice%20smith@contoso.example?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ\
             &issuer=Passkey&algorithm=SHA1&digits=6&period=30"
        );
    }

    #[test]
    fn the_qr_svg_is_inline_and_inert() {
        let svg = qr_svg(&otpauth_uri("alice@contoso.example", RFC_SECRET)).unwrap();
        assert!(svg.starts_with("<svg role=\"img\""));
        assert!(svg.ends_with("</svg>"));
        let lower = svg.to_ascii_lowercase();
        for bad in [
            "<script",
            "javascript:",
            "onload",
            "onclick",
            "href",
            "<?xml",
            "<foreignobject",
        ] {
            assert!(!lower.contains(bad), "{bad} in the SVG");
        }
        assert!(
            !svg.contains("GEZDGNBV"),
            "the secret must not be in the markup as text"
        );
    }
}
