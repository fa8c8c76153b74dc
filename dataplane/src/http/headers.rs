//! Helpers shared by the request and response codecs: iteration over an already validated
//! header block, token lists and the hop-by-hop rules.

use super::HttpError;

/// Iterates over the `(name, value)` fields of a header block that `httparse` has validated
/// (lines `name: value` ending in CRLF or LF, terminated by an empty line). The value is trimmed
/// of surrounding spaces and tabs, like `httparse` does. Stops at the empty line, at the end of
/// the input, or at a line without a colon (which validated input does not contain).
#[derive(Debug, Clone)]
pub(crate) struct HeaderLines<'a> {
    rest: &'a [u8],
}

impl<'a> HeaderLines<'a> {
    /// Iterates over the header lines at the start of `block`.
    pub(crate) fn new(block: &'a [u8]) -> Self {
        HeaderLines { rest: block }
    }
}

impl<'a> Iterator for HeaderLines<'a> {
    type Item = (&'a [u8], &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        let nl = self.rest.iter().position(|&b| b == b'\n')?;
        let (line, rest) = self.rest.split_at(nl);
        self.rest = rest.get(1..).unwrap_or(&[]);
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            self.rest = &[];
            return None;
        };
        let (name, value) = line.split_at(colon);
        Some((name, trim_ows(value.get(1..).unwrap_or(&[]))))
    }
}

/// Trims spaces and horizontal tabs on both sides.
pub(crate) fn trim_ows(mut v: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = v {
        v = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = v {
        v = rest;
    }
    v
}

/// The non-empty, trimmed elements of a comma-separated list.
pub(crate) fn list_tokens(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .split(|&b| b == b',')
        .map(trim_ows)
        .filter(|t| !t.is_empty())
}

/// What a `Connection` field says, folded over all `Connection` fields.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct ConnectionTokens {
    pub(crate) close: bool,
    pub(crate) keep_alive: bool,
    /// Some token names another field (which is then hop-by-hop).
    pub(crate) other: bool,
}

impl ConnectionTokens {
    pub(crate) fn add(&mut self, value: &[u8]) {
        for t in list_tokens(value) {
            if t.eq_ignore_ascii_case(b"close") {
                self.close = true;
            } else if t.eq_ignore_ascii_case(b"keep-alive") {
                self.keep_alive = true;
            } else {
                self.other = true;
            }
        }
    }
}

/// Fields that can never be removed by being named in `Connection`: removing them would change
/// the message framing seen by the next hop (request smuggling) or its target.
fn is_protected(name: &[u8]) -> bool {
    name.eq_ignore_ascii_case(b"content-length")
        || name.eq_ignore_ascii_case(b"transfer-encoding")
        || name.eq_ignore_ascii_case(b"host")
}

/// True if `name` is listed in one of the `Connection` fields of `block` (and is not protected).
pub(crate) fn named_in_connection(block: &[u8], name: &[u8]) -> bool {
    if is_protected(name) {
        return false;
    }
    HeaderLines::new(block)
        .filter(|(n, _)| n.eq_ignore_ascii_case(b"connection"))
        .any(|(_, v)| list_tokens(v).any(|t| t.eq_ignore_ascii_case(name)))
}

/// The fixed hop-by-hop fields (RFC 9110 section 7.6.1) removed by the proxy in both directions.
pub(crate) fn is_hop_by_hop(name: &[u8]) -> bool {
    const HOP: [&[u8]; 6] = [
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"upgrade",
    ];
    HOP.iter().any(|h| name.eq_ignore_ascii_case(h))
}

/// Parses a `Content-Length` value: one or more ASCII digits, fitting in a `u64`.
pub(crate) fn parse_content_length(value: &[u8]) -> Result<u64, HttpError> {
    if value.is_empty() {
        return Err(HttpError::InvalidContentLength);
    }
    let mut n: u64 = 0;
    for &b in value {
        if !b.is_ascii_digit() {
            return Err(HttpError::InvalidContentLength);
        }
        n = n
            .checked_mul(10)
            .and_then(|n| n.checked_add(u64::from(b - b'0')))
            .ok_or(HttpError::InvalidContentLength)?;
    }
    Ok(n)
}

/// Offset of `sub` inside `buf`, if `sub` is a subslice of it.
pub(crate) fn offset_in(buf: &[u8], sub: &[u8]) -> Option<usize> {
    let start = (sub.as_ptr() as usize).checked_sub(buf.as_ptr() as usize)?;
    (start.checked_add(sub.len())? <= buf.len()).then_some(start)
}

/// Appends `name: value\r\n`.
pub(crate) fn push_field(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn httparse_fields(block: &[u8]) -> Option<Vec<(Vec<u8>, Vec<u8>)>> {
        let mut h = [httparse::EMPTY_HEADER; 32];
        match httparse::parse_headers(block, &mut h) {
            Ok(httparse::Status::Complete((_, hs))) => Some(
                hs.iter()
                    .map(|h| (h.name.as_bytes().to_vec(), h.value.to_vec()))
                    .collect(),
            ),
            _ => None,
        }
    }

    #[test]
    fn header_lines_agree_with_httparse() {
        let blocks: [&[u8]; 8] = [
            b"A: b\r\nC:d\r\n\r\n",
            b"A: \t b c \t\r\nEmpty:\r\nE: \r\n\r\n",
            b"A: b\nC: d\n\n",
            b"A: b\r\nC: d\n\r\n",
            b"X: caf\xc3\xa9 \xff\r\n\r\n",
            b"X: a:b:c\r\nY: ::\r\n\r\n",
            b"\r\n",
            b"Many: 1\r\nMany: 2\r\nmany: 3\r\n\r\n",
        ];
        for block in blocks {
            let expected = httparse_fields(block).expect("valid block");
            let got: Vec<(Vec<u8>, Vec<u8>)> = HeaderLines::new(block)
                .map(|(n, v)| (n.to_vec(), v.to_vec()))
                .collect();
            assert_eq!(got, expected, "block {:?}", String::from_utf8_lossy(block));
        }
    }

    #[test]
    fn header_lines_garbage_does_not_panic() {
        let inputs: [&[u8]; 6] = [b"", b"\n", b"no colon\r\nA: b\r\n", b"A", b":\n", b"\r"];
        for i in inputs {
            let _ = HeaderLines::new(i).count();
        }
        assert_eq!(HeaderLines::new(b"no colon\r\nA: b\r\n").count(), 0);
        assert_eq!(
            HeaderLines::new(b":\n").collect::<Vec<_>>(),
            vec![(&b""[..], &b""[..])]
        );
    }

    #[test]
    fn tokens_and_connection() {
        let t: Vec<&[u8]> = list_tokens(b" a ,, b\t,c ,").collect();
        assert_eq!(t, vec![&b"a"[..], b"b", b"c"]);
        let mut c = ConnectionTokens::default();
        c.add(b"Keep-Alive, X-Foo");
        assert!(c.keep_alive && c.other && !c.close);
        c.add(b"CLOSE");
        assert!(c.close);
        let block = b"Connection: x-a, Content-Length, host\r\nConnection: X-B\r\n\r\n";
        assert!(named_in_connection(block, b"X-A"));
        assert!(named_in_connection(block, b"x-b"));
        assert!(!named_in_connection(block, b"x-c"));
        assert!(!named_in_connection(block, b"content-length"));
        assert!(!named_in_connection(block, b"Host"));
    }

    #[test]
    fn content_length_values() {
        assert_eq!(parse_content_length(b"0"), Ok(0));
        assert_eq!(parse_content_length(b"007"), Ok(7));
        assert_eq!(parse_content_length(b"18446744073709551615"), Ok(u64::MAX));
        for bad in [
            &b""[..],
            b"18446744073709551616",
            b"-1",
            b"+1",
            b"1 2",
            b"1,1",
            b"0x10",
            b"1.0",
        ] {
            assert_eq!(
                parse_content_length(bad),
                Err(HttpError::InvalidContentLength)
            );
        }
    }

    #[test]
    fn offsets() {
        let buf = b"hello world";
        assert_eq!(offset_in(buf, &buf[6..]), Some(6));
        assert_eq!(offset_in(buf, &buf[11..]), Some(11));
        let other = b"zzz";
        assert_eq!(offset_in(buf, other), None);
    }
}
