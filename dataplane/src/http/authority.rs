//! The host named by a request: the `Host` field or the authority of an absolute-form target.
//!
//! The site (and with it the mTLS policy) is chosen by SNI during the handshake; the proxy then
//! checks that every request names a host that site serves, so that a client cannot pass the
//! policy of a weak site and address a strong one by `Host` (the answer is 421). This module
//! only extracts and validates the host name; the site check is the configuration's
//! [`accepts_host`](portcullis_config::Snapshot::accepts_host).

use super::HttpError;

/// The host of an authority (`host`, `host:port`, `[v6]`, `[v6]:port`), without the port and
/// without IPv6 brackets. Refuses (400) what is not a plain authority: an empty host, user
/// information (`user@host`), a port that is not 1-5 digits, and any byte outside the
/// unreserved set of RFC 3986 (`A-Z a-z 0-9 - . _ ~`; hex digits, `:` and `.` inside brackets).
pub fn host_of(authority: &[u8]) -> Result<&str, HttpError> {
    let invalid = HttpError::InvalidHost;
    let (host, port, host_ok): (&[u8], _, fn(&u8) -> bool) =
        if let Some(rest) = authority.strip_prefix(b"[") {
            let close = rest
                .iter()
                .position(|&b| b == b']')
                .ok_or(invalid.clone())?;
            let (literal, after) = rest.split_at(close);
            let port = match &after[1..] {
                [] => None,
                [b':', port @ ..] => Some(port),
                _ => return Err(invalid),
            };
            (literal, port, |b| {
                b.is_ascii_hexdigit() || matches!(b, b':' | b'.')
            })
        } else {
            let (host, port) = match authority.iter().rposition(|&b| b == b':') {
                Some(colon) => (&authority[..colon], Some(&authority[colon + 1..])),
                None => (authority, None),
            };
            (host, port, |b| {
                b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
            })
        };
    if let Some(port) = port {
        if port.is_empty() || port.len() > 5 || !port.iter().all(u8::is_ascii_digit) {
            return Err(invalid);
        }
    }
    if host.is_empty() || !host.iter().all(host_ok) {
        return Err(invalid);
    }
    // Only ASCII passed the checks above.
    std::str::from_utf8(host).map_err(|_| invalid)
}

/// The authority of an absolute-form request target (`http://host[:port]/path`), if `target`
/// is one. The scheme is matched case-insensitively; the authority ends at the first `/`, `?`
/// or `#`.
pub fn absolute_form_authority(target: &[u8]) -> Option<&[u8]> {
    let rest = strip_prefix_ignore_case(target, b"https://")
        .or_else(|| strip_prefix_ignore_case(target, b"http://"))?;
    let end = rest
        .iter()
        .position(|&b| matches!(b, b'/' | b'?' | b'#'))
        .unwrap_or(rest.len());
    Some(&rest[..end])
}

fn strip_prefix_ignore_case<'a>(s: &'a [u8], prefix: &[u8]) -> Option<&'a [u8]> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &s[prefix.len()..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_and_ports() {
        let ok: [(&[u8], &str); 9] = [
            (b"example.com", "example.com"),
            (b"Example.COM:8443", "Example.COM"),
            (b"localhost:1", "localhost"),
            (b"a.b-c_d~e", "a.b-c_d~e"),
            (b"127.0.0.1:443", "127.0.0.1"),
            (b"[::1]", "::1"),
            (b"[2001:db8::1]:8443", "2001:db8::1"),
            (b"shop.example.com.", "shop.example.com."),
            (b"x:65535", "x"),
        ];
        for (input, host) in ok {
            assert_eq!(
                host_of(input),
                Ok(host),
                "{:?}",
                String::from_utf8_lossy(input)
            );
        }
        let bad: [&[u8]; 14] = [
            b"a:b:80",
            b"",
            b":443",
            b"user@example.com",
            b"example.com:",
            b"example.com:44a",
            b"example.com:123456",
            b"exa mple.com",
            b"example.com/x",
            b"[::1",
            b"[]",
            b"[::1]x",
            b"[fe80::1%25eth0]",
            b"ex\xc3\xa9.com",
        ];
        for input in bad {
            assert_eq!(
                host_of(input),
                Err(HttpError::InvalidHost),
                "{:?}",
                String::from_utf8_lossy(input)
            );
        }
    }

    #[test]
    fn absolute_form() {
        assert_eq!(
            absolute_form_authority(b"https://Other.test:8443/a?b"),
            Some(&b"Other.test:8443"[..])
        );
        assert_eq!(
            absolute_form_authority(b"HTTP://x.test"),
            Some(&b"x.test"[..])
        );
        assert_eq!(
            absolute_form_authority(b"http://x.test?q"),
            Some(&b"x.test"[..])
        );
        assert_eq!(absolute_form_authority(b"/path"), None);
        assert_eq!(absolute_form_authority(b"*"), None);
        assert_eq!(absolute_form_authority(b"ftp://x/"), None);
    }
}
