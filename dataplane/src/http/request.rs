//! Client request heads: parsing and rewriting for the origin.

use std::io::Write as _;
use std::mem::MaybeUninit;
use std::net::IpAddr;

use super::authority::absolute_form_authority;
use super::headers::{
    is_hop_by_hop, named_in_connection, offset_in, parse_content_length, push_field,
    ConnectionTokens, HeaderLines,
};
use super::{BodyFraming, HttpError, Span};
use crate::viewer_cert::HEADER_PREFIX_LOWER;

/// The largest number of request header fields [`parse_request_head`] accepts, whatever its
/// `max_headers` argument (the largest `server.limits.max_header_count`). The parse uses an
/// uninitialised array of this size on the stack, so a large bound costs nothing per request.
pub const MAX_REQUEST_HEADERS: usize = 1000;

/// A parsed request head. Byte ranges refer to the buffer it was parsed from, which must be
/// passed again (unchanged) to [`write_origin_request`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestHead {
    /// The method token.
    pub method: Span,
    /// The request target, as sent.
    pub path: Span,
    /// Minor version: 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub version: u8,
    /// Length of the head in the buffer, final empty line included; the body starts here.
    pub header_len: usize,
    /// Offset of the first header line (just after the request line).
    pub headers_start: usize,
    /// Number of header fields.
    pub header_count: usize,
    /// The value of the `Host` field, if any.
    pub host: Option<Span>,
    /// The authority of an absolute-form target (`GET http://host/path`), if the target is one.
    pub authority: Option<Span>,
    /// How the request body is delimited (never [`BodyFraming::UntilClose`]).
    pub framing: BodyFraming,
    /// The client wants the connection kept open after this exchange.
    pub keep_alive: bool,
    /// HTTP/1.1 request with `Expect: 100-continue`.
    pub expect_continue: bool,
    /// The request may be sent again after a failure that cannot tell whether the origin
    /// processed it: an idempotent method (GET, HEAD, OPTIONS, TRACE, PUT, DELETE; RFC 9110
    /// section 9.2.2) or an `Idempotency-Key` field.
    pub idempotent: bool,
    /// The method is `HEAD`.
    is_head: bool,
    /// Number of `X-Forwarded-For` fields.
    xff_count: usize,
    /// `Connection` names other fields, which must then be removed.
    connection_names_fields: bool,
}

impl RequestHead {
    /// The method, e.g. `b"GET"`.
    pub fn method<'a>(&self, buf: &'a [u8]) -> &'a [u8] {
        self.method.get(buf)
    }

    /// The request target, e.g. `b"/index.html?q=1"`.
    pub fn path<'a>(&self, buf: &'a [u8]) -> &'a [u8] {
        self.path.get(buf)
    }

    /// True if the method is `HEAD` (the response then has no body).
    pub fn is_head(&self) -> bool {
        self.is_head
    }

    /// The `Host` value, if present.
    pub fn host<'a>(&self, buf: &'a [u8]) -> Option<&'a [u8]> {
        self.host.map(|s| s.get(buf))
    }

    /// The authority of an absolute-form target, if the target is one.
    pub fn authority<'a>(&self, buf: &'a [u8]) -> Option<&'a [u8]> {
        self.authority.map(|s| s.get(buf))
    }

    fn header_block<'a>(&self, buf: &'a [u8]) -> &'a [u8] {
        buf.get(self.headers_start..self.header_len).unwrap_or(&[])
    }
}

/// Parses a request head at the start of `buf`.
///
/// Returns `Ok(None)` if `buf` does not hold a complete head yet (the caller bounds the head
/// size and reports [`HttpError::HeadTooLarge`] itself). At most `max_headers` fields are
/// accepted, capped at [`MAX_REQUEST_HEADERS`]; more gives [`HttpError::TooManyHeaders`].
pub fn parse_request_head(
    buf: &[u8],
    max_headers: usize,
) -> Result<Option<RequestHead>, HttpError> {
    let mut storage =
        [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_REQUEST_HEADERS];
    let limit = max_headers.min(MAX_REQUEST_HEADERS);
    let mut req = httparse::Request::new(&mut []);
    let header_len = match req.parse_with_uninit_headers(buf, &mut storage[..limit]) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(HttpError::TooManyHeaders),
        Err(e) => return Err(HttpError::MalformedRequest(e)),
    };
    let malformed = HttpError::MalformedRequest(httparse::Error::Token);
    let (Some(method), Some(path), Some(version)) = (req.method, req.path, req.version) else {
        return Err(malformed);
    };
    let method_start = offset_in(buf, method.as_bytes()).ok_or(malformed.clone())?;
    let path_start = offset_in(buf, path.as_bytes()).ok_or(malformed.clone())?;
    let path_end = path_start + path.len();
    let headers_start = buf
        .get(path_end..header_len)
        .and_then(|rest| rest.iter().position(|&b| b == b'\n'))
        .map(|nl| path_end + nl + 1)
        .ok_or(malformed.clone())?;

    let mut host: Option<Span> = None;
    let mut content_length: Option<u64> = None;
    let mut transfer_encoding: Option<&[u8]> = None;
    let mut connection = ConnectionTokens::default();
    let mut expect_continue = false;
    let mut idempotency_key = false;
    let mut xff_count = 0;
    for h in req.headers.iter() {
        let name = h.name.as_bytes();
        if name.eq_ignore_ascii_case(b"host") {
            if host.is_some() {
                return Err(HttpError::MultipleHost);
            }
            let start = offset_in(buf, h.value).ok_or(malformed.clone())?;
            host = Some(Span {
                start,
                end: start + h.value.len(),
            });
        } else if name.eq_ignore_ascii_case(b"content-length") {
            let n = parse_content_length(h.value)?;
            if content_length.is_some() {
                return Err(HttpError::ConflictingContentLength);
            }
            content_length = Some(n);
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            if transfer_encoding.is_some() {
                return Err(HttpError::MultipleTransferEncoding);
            }
            transfer_encoding = Some(h.value);
        } else if name.eq_ignore_ascii_case(b"connection") {
            connection.add(h.value);
        } else if name.eq_ignore_ascii_case(b"expect") {
            expect_continue |= h.value.eq_ignore_ascii_case(b"100-continue");
        } else if name.eq_ignore_ascii_case(b"x-forwarded-for") {
            xff_count += 1;
        } else if name.eq_ignore_ascii_case(b"idempotency-key") {
            idempotency_key = true;
        }
    }

    let framing = match (transfer_encoding, content_length) {
        (Some(_), _) if version == 0 => return Err(HttpError::TransferEncodingInHttp10),
        (Some(_), Some(_)) => return Err(HttpError::ContentLengthWithTransferEncoding),
        (Some(te), None) => {
            if !te.eq_ignore_ascii_case(b"chunked") {
                return Err(HttpError::UnsupportedTransferEncoding);
            }
            BodyFraming::Chunked
        }
        (None, Some(0)) | (None, None) => BodyFraming::None,
        (None, Some(n)) => BodyFraming::ContentLength(n),
    };
    if version == 1 && host.is_none() {
        return Err(HttpError::MissingHost);
    }
    check_target(method, path.as_bytes())?;
    let authority = absolute_form_authority(path.as_bytes()).map(|a| {
        // A subslice of `path`, which starts at `path_start`.
        let start = path_start + (a.as_ptr() as usize - path.as_ptr() as usize);
        Span {
            start,
            end: start + a.len(),
        }
    });
    let keep_alive = if version == 1 {
        !connection.close
    } else {
        connection.keep_alive && !connection.close
    };

    Ok(Some(RequestHead {
        method: Span {
            start: method_start,
            end: method_start + method.len(),
        },
        path: Span {
            start: path_start,
            end: path_end,
        },
        version,
        header_len,
        headers_start,
        header_count: req.headers.len(),
        host,
        authority,
        framing,
        keep_alive,
        expect_continue: expect_continue && version == 1,
        idempotent: idempotency_key
            || matches!(
                method,
                "GET" | "HEAD" | "OPTIONS" | "TRACE" | "PUT" | "DELETE"
            ),
        is_head: method == "HEAD",
        xff_count,
        connection_names_fields: connection.other,
    }))
}

/// Refuses request targets the proxy must not forward: anything but origin-form (`/path`),
/// absolute-form (`http(s)://authority/path`) and `*` for OPTIONS; a fragment (`#`), which a
/// client never sends; and CONNECT (authority-form), since the proxy does not tunnel.
pub(crate) fn check_target(method: &str, target: &[u8]) -> Result<(), HttpError> {
    if method == "CONNECT" {
        return Err(HttpError::MethodNotAllowed);
    }
    let form_ok = match target {
        [b'/', ..] => true,
        b"*" => method == "OPTIONS",
        _ => absolute_form_authority(target).is_some(),
    };
    if !form_ok || target.contains(&b'#') {
        return Err(HttpError::InvalidTarget);
    }
    Ok(())
}

/// Client-sent fields that would speak for the edge, which only Portcullis may set: the origin
/// would take them for the proxy's own. `X-Forwarded-Proto` is set again by the proxy;
/// `X-Forwarded-For` is kept and the client address appended to it.
const EDGE_FIELDS: [&[u8]; 5] = [
    b"x-forwarded-proto",
    b"x-forwarded-host",
    b"x-forwarded-port",
    b"x-real-ip",
    b"forwarded",
];

/// True for the request fields the proxy never forwards (besides those named in `Connection`):
/// `CloudFront-Viewer-Cert-*` in any case and with `_` for `-` (CGI-style origins map both
/// spellings to one variable), hop-by-hop fields, `Expect` and [`EDGE_FIELDS`].
pub(crate) fn is_dropped_request_field(name: &[u8]) -> bool {
    let prefix = HEADER_PREFIX_LOWER.as_bytes();
    let viewer_cert = name.get(..prefix.len()).is_some_and(|p| {
        p.iter()
            .zip(prefix)
            .all(|(&a, &b)| a.eq_ignore_ascii_case(&b) || (a == b'_' && b == b'-'))
    });
    viewer_cert
        || is_hop_by_hop(name)
        || name.eq_ignore_ascii_case(b"expect")
        || EDGE_FIELDS.iter().any(|f| name.eq_ignore_ascii_case(f))
}

/// Writes (appends to `out`) the request head to send to the origin.
///
/// `head` must have been parsed from `buf`. Writes `METHOD target HTTP/1.1`, then
/// `Host: fallback_host` if the request has no `Host` (an HTTP/1.0 request), then the client's
/// fields except: `CloudFront-Viewer-Cert-*` (always stripped, in either spelling: only the
/// edge sets them), hop-by-hop fields and those named in `Connection` (never `Host`,
/// `Content-Length` or `Transfer-Encoding`, which are kept as sent with the body), `Expect`,
/// the edge's own fields (`X-Forwarded-Proto`, `X-Forwarded-Host`, `X-Forwarded-Port`,
/// `X-Real-IP`, `Forwarded`). `client_ip` is appended to the last
/// `X-Forwarded-For` (or a new one is added), then `X-Forwarded-Proto: https`, the
/// pre-rendered `viewer_headers` block (complete `Name: value\r\n` lines) and the final empty
/// line. The origin connection stays keep-alive.
pub fn write_origin_request(
    head: &RequestHead,
    buf: &[u8],
    client_ip: IpAddr,
    viewer_headers: &[u8],
    fallback_host: &[u8],
    out: &mut Vec<u8>,
) {
    let block = head.header_block(buf);
    let client_ip = client_ip.to_canonical();
    out.extend_from_slice(head.method(buf));
    out.push(b' ');
    out.extend_from_slice(head.path(buf));
    out.extend_from_slice(b" HTTP/1.1\r\n");
    if head.host.is_none() {
        push_field(out, b"Host", fallback_host);
    }

    let xff_listed = head.connection_names_fields && named_in_connection(block, b"x-forwarded-for");
    let xff_kept = if xff_listed { 0 } else { head.xff_count };
    let mut xff_seen = 0;
    for (name, value) in HeaderLines::new(block) {
        if is_dropped_request_field(name) {
            continue;
        }
        let is_xff = name.eq_ignore_ascii_case(b"x-forwarded-for");
        if is_xff && xff_listed {
            continue;
        }
        if !is_xff && head.connection_names_fields && named_in_connection(block, name) {
            continue;
        }
        if is_xff {
            xff_seen += 1;
            if xff_seen == xff_kept {
                out.extend_from_slice(name);
                out.extend_from_slice(b": ");
                if !value.is_empty() {
                    out.extend_from_slice(value);
                    out.extend_from_slice(b", ");
                }
                // Writing to a Vec cannot fail.
                let _ = write!(out, "{client_ip}");
                out.extend_from_slice(b"\r\n");
                continue;
            }
        }
        push_field(out, name, value);
    }
    if xff_kept == 0 {
        out.extend_from_slice(b"X-Forwarded-For: ");
        let _ = write!(out, "{client_ip}");
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"X-Forwarded-Proto: https\r\n");
    out.extend_from_slice(viewer_headers);
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn parse(buf: &[u8]) -> Result<Option<RequestHead>, HttpError> {
        parse_request_head(buf, 64)
    }

    fn parse_ok(buf: &[u8]) -> RequestHead {
        parse(buf).expect("valid").expect("complete")
    }

    fn rewrite(buf: &[u8], viewer: &[u8]) -> String {
        let head = parse_ok(buf);
        let mut out = Vec::new();
        write_origin_request(
            &head,
            buf,
            IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7)),
            viewer,
            b"site.test",
            &mut out,
        );
        String::from_utf8(out).expect("utf8")
    }

    #[test]
    fn simple_get() {
        let buf = b"GET /a?b=c HTTP/1.1\r\nHost: example.com\r\nAccept: */*\r\n\r\nNEXT";
        let h = parse_ok(buf);
        assert_eq!(h.method(buf), b"GET");
        assert_eq!(h.path(buf), b"/a?b=c");
        assert_eq!(h.host(buf), Some(&b"example.com"[..]));
        assert_eq!(h.version, 1);
        assert_eq!(h.header_len, buf.len() - 4);
        assert_eq!(h.header_count, 2);
        assert_eq!(h.framing, BodyFraming::None);
        assert!(h.keep_alive);
        assert!(!h.expect_continue);
        assert!(!h.is_head());
        assert_eq!(&buf[h.headers_start..h.headers_start + 5], b"Host:");
    }

    #[test]
    fn partial_at_every_prefix() {
        let buf = b"POST /upload HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello";
        let full = buf.len() - 5;
        for n in 0..full {
            assert_eq!(parse(&buf[..n]), Ok(None), "prefix {n}");
        }
        let h = parse_ok(buf);
        assert_eq!(h.header_len, full);
        assert_eq!(h.framing, BodyFraming::ContentLength(5));
    }

    #[test]
    fn leading_empty_lines_and_lf_only() {
        let buf = b"\r\n\nHEAD /x HTTP/1.1\nHost: h\n\n";
        let h = parse_ok(buf);
        assert_eq!(h.method(buf), b"HEAD");
        assert!(h.is_head());
        let out = rewrite(buf, b"");
        assert!(out.starts_with("HEAD /x HTTP/1.1\r\nHost: h\r\n"), "{out}");
    }

    #[test]
    fn keep_alive_rules() {
        let cases: [(&[u8], bool); 7] = [
            (b"GET / HTTP/1.1\r\nHost: h\r\n\r\n", true),
            (
                b"GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
                false,
            ),
            (
                b"GET / HTTP/1.1\r\nHost: h\r\nConnection: keep-alive, Close\r\n\r\n",
                false,
            ),
            (b"GET / HTTP/1.0\r\n\r\n", false),
            (b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n", true),
            (
                b"GET / HTTP/1.0\r\nConnection: foo\r\nConnection: keep-alive\r\n\r\n",
                true,
            ),
            (
                b"GET / HTTP/1.0\r\nConnection: keep-alive\r\nConnection: close\r\n\r\n",
                false,
            ),
        ];
        for (buf, ka) in cases {
            assert_eq!(
                parse_ok(buf).keep_alive,
                ka,
                "{:?}",
                String::from_utf8_lossy(buf)
            );
        }
    }

    #[test]
    fn expect_continue() {
        let h = parse_ok(
            b"PUT / HTTP/1.1\r\nHost: h\r\nExpect: 100-Continue\r\nContent-Length: 3\r\n\r\n",
        );
        assert!(h.expect_continue);
        let h = parse_ok(b"PUT / HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n");
        assert!(!h.expect_continue);
        let h = parse_ok(b"PUT / HTTP/1.1\r\nHost: h\r\nExpect: other\r\n\r\n");
        assert!(!h.expect_continue);
    }

    #[test]
    fn framing_rules() {
        let ok: [(&[u8], BodyFraming); 4] = [
            (
                b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: Chunked\r\n\r\n",
                BodyFraming::Chunked,
            ),
            (
                b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n",
                BodyFraming::None,
            ),
            (
                b"POST / HTTP/1.0\r\nContent-Length: 3\r\n\r\n",
                BodyFraming::ContentLength(3),
            ),
            (
                b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 18446744073709551615\r\n\r\n",
                BodyFraming::ContentLength(u64::MAX),
            ),
        ];
        for (buf, f) in ok {
            assert_eq!(parse_ok(buf).framing, f);
        }
    }

    /// Request-smuggling shapes (after the published research and HAProxy's and Envoy's HTTP/1
    /// tests): every one is refused with 400 before anything reaches an origin.
    #[test]
    fn smuggling_shapes_are_refused() {
        use HttpError as E;
        let bad: [(&[u8], HttpError); 22] = [
            (b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n", E::ContentLengthWithTransferEncoding),
            (b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n", E::ContentLengthWithTransferEncoding),
            (b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n", E::ConflictingContentLength),
            (b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\n", E::ConflictingContentLength),
            (b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3, 3\r\n\r\n", E::InvalidContentLength),
            (b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: +3\r\n\r\n", E::InvalidContentLength),
            (b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 0x3\r\n\r\n", E::InvalidContentLength),
            (b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: -1\r\n\r\n", E::InvalidContentLength),
            (b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 18446744073709551616\r\n\r\n", E::InvalidContentLength),
            (b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked, identity\r\n\r\n", E::UnsupportedTransferEncoding),
            (b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: xchunked\r\n\r\n", E::UnsupportedTransferEncoding),
            (b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked, chunked\r\n\r\n", E::UnsupportedTransferEncoding),
            (b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", E::UnsupportedTransferEncoding),
            (b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: identity\r\n\r\n", E::UnsupportedTransferEncoding),
            (b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", E::MultipleTransferEncoding),
            (b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", E::TransferEncodingInHttp10),
            (b"GET / HTTP/1.1\r\nAccept: x\r\n\r\n", E::MissingHost),
            (b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", E::MultipleHost),
            (b"GET example.com HTTP/1.1\r\nHost: h\r\n\r\n", E::InvalidTarget),
            (b"GET * HTTP/1.1\r\nHost: h\r\n\r\n", E::InvalidTarget),
            (b"GET /a#frag HTTP/1.1\r\nHost: h\r\n\r\n", E::InvalidTarget),
            (b"CONNECT h:443 HTTP/1.1\r\nHost: h:443\r\n\r\n", E::MethodNotAllowed),
        ];
        for (buf, e) in bad {
            let got = parse(buf);
            assert_eq!(got, Err(e.clone()), "{:?}", String::from_utf8_lossy(buf));
            let status = e.status();
            assert!(status == 400 || (e == E::MethodNotAllowed && status == 405));
        }
        // Forms that are fine.
        for buf in [
            &b"OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n"[..],
            b"GET http://h/a HTTP/1.1\r\nHost: h\r\n\r\n",
            b"GET /a?b=/c HTTP/1.1\r\nHost: h\r\n\r\n",
        ] {
            assert!(parse(buf).is_ok(), "{:?}", String::from_utf8_lossy(buf));
        }
    }

    /// Bare LF line endings are accepted the same way everywhere in a head and the origin
    /// always gets CRLF, so no two hops can split the head differently.
    #[test]
    fn bare_lf_heads_are_normalised() {
        let buf = b"POST /x HTTP/1.1\nHost: h\nContent-Length: 2\nX: y\n\nhi";
        let head = parse_ok(buf);
        assert_eq!(head.framing, BodyFraming::ContentLength(2));
        assert_eq!(&buf[head.header_len..], b"hi");
        let out = rewrite(buf, b"");
        assert!(!out.replace("\r\n", "").contains('\n'), "{out:?}");
        assert!(out.starts_with("POST /x HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\nX: y\r\n"));
    }

    #[test]
    fn malformed_heads() {
        let bad: [&[u8]; 19] = [
            b"GET / HTTP/1.1\r\nHost: h\r\nX: a\r\n b\r\n\r\n", // obs-fold
            b"GET / HTTP/1.1\r\nHost: h\r\nX: a\r\n\tb\r\n\r\n", // obs-fold (tab)
            b"GET / HTTP/1.1\r\nHost: h\r\nX : a\r\n\r\n",      // space before colon
            b"GET / HTTP/1.1\r\nHost: h\r\nX\t: a\r\n\r\n",     // tab before colon
            b"GET / HTTP/1.1\r\nHost: h\r\nX: a\rb\r\n\r\n",    // bare CR
            b"GET / HTTP/1.1\r\nHost: h\r\nX: a\x00\r\n\r\n",   // NUL in a value
            b"GET / HTTP/1.1\r\nHost: h\r\nX\x00Y: a\r\n\r\n",  // NUL in a name
            b"GET / HTTP/1.1\r\nHost: h\r\nX: a\x01b\r\n\r\n",  // control character
            b"GET / HTTP/1.1\r\nHost: h\r\nX: a\x7f\r\n\r\n",   // DEL
            b"GET / HTTP/1.1\r\nHost: h\r\n: empty name\r\n\r\n",
            b"GET / HTTP/2.0\r\nHost: h\r\n\r\n",
            b"GET / HTTP/1.2\r\nHost: h\r\n\r\n",
            b"GET / HTTP/0.9\r\n\r\n",
            b"GET /\r\n\r\n", // HTTP/0.9 request line
            b"GET / http/1.1\r\nHost: h\r\n\r\n",
            b"GET  / HTTP/1.1\r\nHost: h\r\n\r\n",
            b"G(T / HTTP/1.1\r\nHost: h\r\n\r\n",
            b"GET /a b HTTP/1.1\r\nHost: h\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: h\r\nBad\x7fName: v\r\n\r\n",
        ];
        for buf in bad {
            let r = parse(buf);
            assert!(
                matches!(r, Err(HttpError::MalformedRequest(_))),
                "{:?} gave {r:?}",
                String::from_utf8_lossy(buf)
            );
            assert_eq!(r.err().map(|e| e.status().code()), Some(400));
        }
    }

    #[test]
    fn too_many_headers() {
        let mut buf = b"GET / HTTP/1.1\r\nHost: h\r\n".to_vec();
        for i in 0..10 {
            buf.extend_from_slice(format!("X-{i}: v\r\n").as_bytes());
        }
        buf.extend_from_slice(b"\r\n");
        assert!(parse_request_head(&buf, 11).expect("ok").is_some());
        let e = parse_request_head(&buf, 10).expect_err("too many");
        assert_eq!(e, HttpError::TooManyHeaders);
        assert_eq!(e.status(), 431);
        // The cap applies whatever the argument.
        let mut big = b"GET / HTTP/1.1\r\nHost: h\r\n".to_vec();
        for i in 0..MAX_REQUEST_HEADERS {
            big.extend_from_slice(format!("X-{i}: v\r\n").as_bytes());
        }
        big.extend_from_slice(b"\r\n");
        assert_eq!(
            parse_request_head(&big, usize::MAX),
            Err(HttpError::TooManyHeaders)
        );
    }

    #[test]
    fn rewrite_strips_and_adds() {
        let buf = b"POST /p HTTP/1.1\r\n\
            Host: example.com\r\n\
            cloudfront-viewer-cert-present: 1\r\n\
            CLOUDFRONT-VIEWER-CERT-SUBJECT: CN=forged\r\n\
            Connection: keep-alive, X-Secret\r\n\
            Keep-Alive: timeout=5\r\n\
            Proxy-Connection: keep-alive\r\n\
            TE: trailers\r\n\
            Trailer: X-T\r\n\
            Upgrade: websocket\r\n\
            X-Secret: s\r\n\
            Expect: 100-continue\r\n\
            X-Forwarded-Proto: http\r\n\
            Transfer-Encoding: chunked\r\n\
            X-Keep:  spaced value \r\n\
            \r\n";
        let out = rewrite(buf, b"CloudFront-Viewer-Cert-Present: 1\r\n");
        assert_eq!(
            out,
            "POST /p HTTP/1.1\r\n\
             Host: example.com\r\n\
             Transfer-Encoding: chunked\r\n\
             X-Keep: spaced value\r\n\
             X-Forwarded-For: 192.0.2.7\r\n\
             X-Forwarded-Proto: https\r\n\
             CloudFront-Viewer-Cert-Present: 1\r\n\
             \r\n"
        );
    }

    #[test]
    fn rewrite_xff_append() {
        let buf = b"GET / HTTP/1.0\r\nX-Forwarded-For: 10.0.0.1\r\nA: b\r\nx-forwarded-for: 10.0.0.2\r\n\r\n";
        let out = rewrite(buf, b"");
        assert_eq!(
            out,
            "GET / HTTP/1.1\r\nHost: site.test\r\nX-Forwarded-For: 10.0.0.1\r\nA: b\r\n\
             x-forwarded-for: 10.0.0.2, 192.0.2.7\r\nX-Forwarded-Proto: https\r\n\r\n"
        );
        let buf = b"GET / HTTP/1.1\r\nHost: h\r\nX-Forwarded-For:\r\n\r\n";
        let out = rewrite(buf, b"");
        assert!(out.contains("\r\nX-Forwarded-For: 192.0.2.7\r\n"), "{out}");
        assert_eq!(out.matches("X-Forwarded-For").count(), 1);
    }

    #[test]
    fn connection_cannot_strip_framing_or_host() {
        let buf =
            b"POST / HTTP/1.1\r\nHost: h\r\nConnection: content-length, host, x-forwarded-for\r\n\
            Content-Length: 4\r\nX-Forwarded-For: 1.1.1.1\r\n\r\n";
        let out = rewrite(buf, b"");
        assert_eq!(
            out,
            "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 4\r\n\
             X-Forwarded-For: 192.0.2.7\r\nX-Forwarded-Proto: https\r\n\r\n"
        );
    }

    #[test]
    fn rewrite_ipv6_and_mapped() {
        let buf = b"GET / HTTP/1.1\r\nHost: h\r\n\r\n";
        let head = parse_ok(buf);
        let mut out = Vec::new();
        write_origin_request(
            &head,
            buf,
            IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1)),
            b"",
            b"h",
            &mut out,
        );
        let s = String::from_utf8(out.clone()).expect("utf8");
        assert!(s.contains("\r\nX-Forwarded-For: 2001:db8::1\r\n"), "{s}");
        out.clear();
        let mapped = Ipv4Addr::new(203, 0, 113, 9).to_ipv6_mapped();
        write_origin_request(&head, buf, IpAddr::V6(mapped), b"", b"h", &mut out);
        let s = String::from_utf8(out).expect("utf8");
        assert!(s.contains("X-Forwarded-For: 203.0.113.9\r\n"), "{s}");
    }

    #[test]
    fn rewrite_strips_edge_fields_in_both_spellings() {
        let buf = b"GET / HTTP/1.1\r\nHost: h\r\n\
            CloudFront_Viewer_Cert_Present: 1\r\n\
            cloudfront_viewer-cert-subject: CN=forged\r\n\
            Forwarded: for=198.51.100.1\r\n\
            X-Real-IP: 198.51.100.1\r\n\
            X-Forwarded-Host: admin.internal\r\n\
            X-Forwarded-Port: 80\r\n\
            CloudFront-Viewer-Country: XX\r\n\
            CloudFront_Viewer: kept\r\n\
            \r\n";
        let out = rewrite(buf, b"CloudFront-Viewer-Cert-Present: 0\r\n");
        assert_eq!(
            out,
            "GET / HTTP/1.1\r\nHost: h\r\nCloudFront-Viewer-Country: XX\r\n\
             CloudFront_Viewer: kept\r\nX-Forwarded-For: 192.0.2.7\r\n\
             X-Forwarded-Proto: https\r\nCloudFront-Viewer-Cert-Present: 0\r\n\r\n"
        );
    }

    #[test]
    fn http10_without_host_gets_the_fallback() {
        let out = rewrite(b"GET /x HTTP/1.0\r\nA: b\r\n\r\n", b"");
        assert!(
            out.starts_with("GET /x HTTP/1.1\r\nHost: site.test\r\nA: b\r\n"),
            "{out}"
        );
        let out = rewrite(b"GET /x HTTP/1.0\r\nHost: given\r\n\r\n", b"");
        assert_eq!(out.matches("Host:").count(), 1);
        assert!(out.contains("Host: given\r\n"));
    }

    #[test]
    fn idempotency_and_absolute_form() {
        for (buf, idempotent) in [
            (&b"GET / HTTP/1.1\r\nHost: h\r\n\r\n"[..], true),
            (b"DELETE / HTTP/1.1\r\nHost: h\r\n\r\n", true),
            (b"PUT / HTTP/1.1\r\nHost: h\r\n\r\n", true),
            (b"OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n", true),
            (b"POST / HTTP/1.1\r\nHost: h\r\n\r\n", false),
            (b"PATCH / HTTP/1.1\r\nHost: h\r\n\r\n", false),
            (
                b"POST / HTTP/1.1\r\nHost: h\r\nIdempotency-Key: 8e03\r\n\r\n",
                true,
            ),
            (b"get / HTTP/1.1\r\nHost: h\r\n\r\n", false),
        ] {
            assert_eq!(
                parse_ok(buf).idempotent,
                idempotent,
                "{:?}",
                String::from_utf8_lossy(buf)
            );
        }
        let buf = b"GET https://Other.test:8443/p?q HTTP/1.1\r\nHost: h\r\n\r\n";
        let h = parse_ok(buf);
        assert_eq!(h.authority(buf), Some(&b"Other.test:8443"[..]));
        assert_eq!(h.path(buf), b"https://Other.test:8443/p?q");
        assert_eq!(
            parse_ok(b"GET /p HTTP/1.1\r\nHost: h\r\n\r\n").authority,
            None
        );
    }

    #[test]
    fn header_count_follows_the_setting_beyond_128() {
        let mut buf = b"GET / HTTP/1.1\r\nHost: h\r\n".to_vec();
        for i in 0..499 {
            buf.extend_from_slice(format!("X-{i}: v\r\n").as_bytes());
        }
        buf.extend_from_slice(b"\r\n");
        let h = parse_request_head(&buf, 500)
            .expect("500 fields allowed")
            .expect("complete");
        assert_eq!(h.header_count, 500);
        assert_eq!(
            parse_request_head(&buf, 499),
            Err(HttpError::TooManyHeaders)
        );
    }

    #[test]
    fn rewrite_output_reparses() {
        let buf = b"GET /q HTTP/1.1\r\nHost: h\r\nCookie: a=b\r\nX-Forwarded-For: 9.9.9.9\r\n\r\n";
        let out = rewrite(buf, b"CloudFront-Viewer-Cert-Present: 0\r\n");
        let again = parse_ok(out.as_bytes());
        assert_eq!(again.header_len, out.len());
        assert_eq!(again.header_count, 5);
        assert_eq!(again.host(out.as_bytes()), Some(&b"h"[..]));
    }

    #[test]
    fn garbage_never_panics() {
        let seeds: [&[u8]; 4] = [
            b"POST /p HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nConnection: a, b\r\nA: b\r\n\r\n",
            b"GET / HTTP/1.0\r\nContent-Length: 12\r\nX-Forwarded-For: 1\r\n\r\n",
            b"\xff\xfe\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: \xc3\xa9\r\n\r\n",
        ];
        let mut out = Vec::new();
        for seed in seeds {
            for i in 0..seed.len() {
                for flip in [0x01u8, 0x20, 0x80, 0xff] {
                    let mut b = seed.to_vec();
                    b[i] ^= flip;
                    for n in [b.len(), i + 1] {
                        if let Ok(Some(h)) = parse_request_head(&b[..n], 16) {
                            out.clear();
                            write_origin_request(
                                &h,
                                &b[..n],
                                IpAddr::V4(Ipv4Addr::LOCALHOST),
                                b"",
                                b"fallback",
                                &mut out,
                            );
                            assert!(out.ends_with(b"\r\n\r\n"));
                        }
                    }
                }
            }
        }
    }
}
