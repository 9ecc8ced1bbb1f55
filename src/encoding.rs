//! Percent-encoding, one way for every layer (the `percent-encoding` crate; reqwest's `url` already
//! builds it). Callers choose which characters besides the unreserved ones stay as they are.

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

/// Everything but RFC 3986's unreserved characters (`A-Z a-z 0-9 - . _ ~`) is encoded; a space
/// is `%20`, never `+` (Graph reads `+` as a plus sign).
pub const UNRESERVED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// `value` with every byte outside `kept` as `%XX` (upper-case hex, UTF-8 bytes one by one).
pub fn percent_encode(value: &str, kept: &'static AsciiSet) -> String {
    utf8_percent_encode(value, kept).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_unreserved_characters_stay() {
        assert_eq!(
            percent_encode("a b+c/d@é~-._", UNRESERVED),
            "a%20b%2Bc%2Fd%40%C3%A9~-._"
        );
        const WITH_SLASH: &AsciiSet = &UNRESERVED.remove(b'/');
        assert_eq!(percent_encode("a b/c", WITH_SLASH), "a%20b/c");
    }
}
