//! The share id of a Keeper one-time share, computed from its URL the way Keeper does:
//! `b64url(HMAC-SHA512(key = b64url_decode(fragment), msg = "KEEPER_SECRETS_MANAGER_CLIENT_ID"))`.
//! We store this id (never the URL) and revoke by it.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

const CLIENT_ID_MESSAGE: &[u8] = b"KEEPER_SECRETS_MANAGER_CLIENT_ID";

/// The share id for `https://<host>/vault/share/#<b64url(client key)>`, or `None` when the URL has
/// no decodable fragment.
pub fn share_id_from_url(url: &str) -> Option<String> {
    let (_, fragment) = url.split_once('#')?;
    let key = URL_SAFE_NO_PAD
        .decode(fragment.trim_end_matches('='))
        .ok()?;
    if key.is_empty() {
        return None;
    }
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA512, &key);
    let tag = aws_lc_rs::hmac::sign(&key, CLIENT_ID_MESSAGE);
    Some(URL_SAFE_NO_PAD.encode(tag))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_id_is_the_hmac_of_the_fragment_key() {
        // Independently computed with Python: base64.urlsafe_b64encode(hmac.new(key, msg, sha512).digest())
        let key = [7u8; 32];
        let url = format!(
            "https://keepersecurity.com/vault/share/#{}",
            URL_SAFE_NO_PAD.encode(key)
        );
        let id = share_id_from_url(&url).unwrap();
        assert_eq!(
            id,
            "X5Kt409mTqVNSpYI4P4dXgn6EkpEpFxDeQUJN9ijzISZMdUflEgNnZwnNW7PxloLcxA4RJtCany060cQAL2pag"
        );
        assert_eq!(id, share_id_from_url(&url).unwrap());
        let other = format!(
            "https://keepersecurity.com/vault/share/#{}",
            URL_SAFE_NO_PAD.encode([8u8; 32])
        );
        assert_ne!(share_id_from_url(&other).unwrap(), id);
    }

    #[test]
    fn urls_without_a_key_have_no_id() {
        assert_eq!(
            share_id_from_url("https://keepersecurity.com/vault/share/"),
            None
        );
        assert_eq!(
            share_id_from_url("https://keepersecurity.com/vault/share/#"),
            None
        );
        assert_eq!(
            share_id_from_url("https://keepersecurity.com/vault/share/#!!not-base64!!"),
            None
        );
    }
}
