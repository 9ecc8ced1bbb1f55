//! The client's address behind trusted proxies. Each proxy appends the address it received the
//! request from to `X-Forwarded-For`, so only the entries on the right were written by proxies we
//! trust; everything to their left is whatever the client sent.

use axum::http::HeaderMap;
use std::net::{IpAddr, SocketAddr};

/// The entry the outermost trusted proxy appended: `hops` entries from the right, reading every
/// `X-Forwarded-For` line as one comma list in order. None when there are fewer entries, or that
/// entry is not an address; the caller then uses the socket peer (the nearest proxy), never an
/// entry further left, which the client chose.
pub fn forwarded_client(headers: &HeaderMap, hops: u8) -> Option<IpAddr> {
    let from_right = usize::from(hops).checked_sub(1)?;
    // Split bytes, not text: a line the client filled with non-ASCII must not hide the entries
    // the proxies appended after it. A comma byte never occurs inside a UTF-8 sequence.
    let entry = headers
        .get_all("x-forwarded-for")
        .iter()
        .rev()
        .flat_map(|line| line.as_bytes().rsplit(|b| *b == b','))
        .filter(|entry| !entry.trim_ascii().is_empty())
        .nth(from_right)?;
    parse_entry(std::str::from_utf8(entry).ok()?)
}

/// `1.2.3.4`, `1.2.3.4:5678`, `2001:db8::1`, `[2001:db8::1]` and `[2001:db8::1]:443`, with
/// surrounding whitespace; IPv4-mapped IPv6 is IPv4. Anything else (`unknown`, a zone id, a
/// host name) is None.
pub fn parse_entry(entry: &str) -> Option<IpAddr> {
    let entry = entry.trim();
    let ip = entry
        .parse::<IpAddr>()
        .ok()
        .or_else(|| entry.parse::<SocketAddr>().ok().map(|s| s.ip()))
        .or_else(|| {
            entry
                .strip_prefix('[')?
                .strip_suffix(']')?
                .parse::<std::net::Ipv6Addr>()
                .ok()
                .map(IpAddr::V6)
        })?;
    Some(ip.to_canonical())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(lines: &[&[u8]]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for line in lines {
            h.append("x-forwarded-for", HeaderValue::from_bytes(line).unwrap());
        }
        h
    }

    fn ip(text: &str) -> Option<IpAddr> {
        Some(text.parse().unwrap())
    }

    #[test]
    fn every_address_form_a_proxy_writes_parses() {
        for (entry, expected) in [
            ("1.2.3.4", "1.2.3.4"),
            (" 1.2.3.4:5678\t", "1.2.3.4"),
            ("2001:db8::1", "2001:db8::1"),
            ("[2001:db8::1]", "2001:db8::1"),
            ("[2001:db8::1]:443", "2001:db8::1"),
            ("::ffff:1.2.3.4", "1.2.3.4"),
            ("[::ffff:1.2.3.4]:80", "1.2.3.4"),
        ] {
            assert_eq!(parse_entry(entry), ip(expected), "{entry}");
        }
        for garbage in [
            "",
            "unknown",
            "_hidden",
            "proxy.contoso.com",
            "fe80::1%eth0",
            "1.2.3.4:port",
            "1.2.3.4:99999",
            "[2001:db8::1",
            "1.2.3",
        ] {
            assert_eq!(parse_entry(garbage), None, "{garbage}");
        }
    }

    #[test]
    fn the_entry_is_counted_from_the_right_across_lines() {
        let h = headers(&[b"6.6.6.6, 7.7.7.7", b"203.0.113.7:4000, 10.0.0.5"]);
        assert_eq!(forwarded_client(&h, 1), ip("10.0.0.5"));
        assert_eq!(forwarded_client(&h, 2), ip("203.0.113.7"));
        assert_eq!(forwarded_client(&h, 3), ip("7.7.7.7"));
        assert_eq!(
            forwarded_client(&h, 0),
            None,
            "0 hops: the header is ignored"
        );
        assert_eq!(forwarded_client(&h, 5), None, "fewer entries than hops");
        assert_eq!(forwarded_client(&HeaderMap::new(), 1), None);
    }

    #[test]
    fn what_the_client_wrote_cannot_shift_or_hide_the_proxys_entry() {
        // Empty elements, non-ASCII bytes and garbage on the left are all the client's.
        let h = headers(&[b"\xff\xfe, ,, 1.1.1.1,", b" , 203.0.113.7 "]);
        assert_eq!(forwarded_client(&h, 1), ip("203.0.113.7"));
        // The chosen entry is garbage: no address (the caller falls back to the peer), never
        // the entry to its left.
        let h = headers(&[b"1.1.1.1, unknown"]);
        assert_eq!(forwarded_client(&h, 1), None);
        let h = headers(&[b"1.1.1.1, \xff"]);
        assert_eq!(forwarded_client(&h, 1), None);
    }
}
