//! Origin response heads: parsing and rewriting for the client.

use super::headers::{
    is_hop_by_hop, list_tokens, named_in_connection, parse_content_length, push_field,
    ConnectionTokens, HeaderLines,
};
use super::{BodyFraming, HttpError, Span};

/// The largest number of response header fields [`parse_response_head`] accepts.
pub const MAX_RESPONSE_HEADERS: usize = 128;

/// A parsed response head. Byte ranges refer to the buffer it was parsed from, which must be
/// passed again (unchanged) to [`write_client_response_head`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseHead {
    /// Status code (100..=999, never 101).
    pub status: u16,
    /// Minor version of the origin's response: 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub version: u8,
    /// The reason phrase, as sent (may be empty).
    pub reason: Span,
    /// Length of the head in the buffer, final empty line included; the body starts here.
    pub header_len: usize,
    /// Offset of the first header line (just after the status line).
    pub headers_start: usize,
    /// How the response body is delimited.
    pub framing: BodyFraming,
    /// The origin connection can be reused after this response's body.
    pub origin_keep_alive: bool,
    /// `Connection` names other fields, which must then be removed.
    pub(crate) connection_names_fields: bool,
}

impl ResponseHead {
    /// True for an interim (1xx) response: another head follows on the same exchange.
    pub fn is_interim(&self) -> bool {
        self.status < 200
    }

    pub(crate) fn header_block<'a>(&self, buf: &'a [u8]) -> &'a [u8] {
        buf.get(self.headers_start..self.header_len).unwrap_or(&[])
    }
}

/// Parses a response head at the start of `buf`; `Ok(None)` means more bytes are needed.
///
/// `request_method_is_head`: the request was `HEAD`, so the response has no body. Responses
/// 1xx, 204 and 304 have no body either. Otherwise `Transfer-Encoding` whose last coding is
/// `chunked` gives [`BodyFraming::Chunked`] (other codings: [`BodyFraming::UntilClose`]),
/// `Content-Length` gives [`BodyFraming::ContentLength`], and neither gives
/// [`BodyFraming::UntilClose`]. Errors (all 502): malformed head, more than
/// [`MAX_RESPONSE_HEADERS`] fields, 101 (upgrades are not supported: the proxy strips `Upgrade`),
/// status below 100, both `Content-Length` and `Transfer-Encoding`, conflicting or invalid
/// `Content-Length`, `Transfer-Encoding` on HTTP/1.0.
pub fn parse_response_head(
    buf: &[u8],
    request_method_is_head: bool,
) -> Result<Option<ResponseHead>, HttpError> {
    let mut storage = [httparse::EMPTY_HEADER; MAX_RESPONSE_HEADERS];
    let mut resp = httparse::Response::new(&mut storage);
    let header_len = match resp.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => {
            return Err(HttpError::InvalidResponse("too many header fields"))
        }
        Err(e) => return Err(HttpError::MalformedResponse(e)),
    };
    let (Some(version), Some(status)) = (resp.version, resp.code) else {
        return Err(HttpError::MalformedResponse(httparse::Error::Status));
    };
    if status < 100 {
        return Err(HttpError::InvalidResponse("status code below 100"));
    }
    if status == 101 {
        return Err(HttpError::InvalidResponse("unexpected protocol upgrade"));
    }

    // The status line starts after any leading empty lines and is `HTTP/1.x NNN[ reason]`.
    let line_start = buf
        .iter()
        .position(|&b| b != b'\r' && b != b'\n')
        .unwrap_or(0);
    let malformed = HttpError::MalformedResponse(httparse::Error::Status);
    let line_len = buf
        .get(line_start..header_len)
        .and_then(|rest| rest.iter().position(|&b| b == b'\n'))
        .ok_or(malformed.clone())?;
    let headers_start = line_start + line_len + 1;
    let mut line_end = line_start + line_len;
    if line_end > line_start && buf.get(line_end - 1) == Some(&b'\r') {
        line_end -= 1;
    }
    let reason_start = (line_start + 13).min(line_end);
    let reason = Span {
        start: reason_start,
        end: line_end,
    };

    let mut content_length: Option<u64> = None;
    let mut transfer_encoding: Option<&[u8]> = None;
    let mut connection = ConnectionTokens::default();
    let mut cl_error: Option<HttpError> = None;
    for h in resp.headers.iter() {
        let name = h.name.as_bytes();
        if name.eq_ignore_ascii_case(b"content-length") {
            match parse_content_length(h.value) {
                Ok(n) if content_length.is_some_and(|prev| prev != n) => {
                    cl_error = Some(HttpError::InvalidResponse("conflicting Content-Length"));
                }
                Ok(n) => content_length = Some(n),
                Err(_) => cl_error = Some(HttpError::InvalidResponse("invalid Content-Length")),
            }
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            transfer_encoding = Some(h.value);
        } else if name.eq_ignore_ascii_case(b"connection") {
            connection.add(h.value);
        }
    }

    let no_body = request_method_is_head || status < 200 || status == 204 || status == 304;
    let framing = if no_body {
        BodyFraming::None
    } else {
        if let Some(e) = cl_error {
            return Err(e);
        }
        match (transfer_encoding, content_length) {
            (Some(_), _) if version == 0 => {
                return Err(HttpError::InvalidResponse(
                    "Transfer-Encoding in an HTTP/1.0 response",
                ))
            }
            (Some(_), Some(_)) => {
                return Err(HttpError::InvalidResponse(
                    "both Content-Length and Transfer-Encoding",
                ))
            }
            (Some(te), None) => {
                // With several fields, the last coding is the last token of the last field.
                let last = list_tokens(te).last();
                if last.is_some_and(|t| t.eq_ignore_ascii_case(b"chunked")) {
                    BodyFraming::Chunked
                } else {
                    BodyFraming::UntilClose
                }
            }
            (None, Some(n)) => BodyFraming::ContentLength(n),
            (None, None) => BodyFraming::UntilClose,
        }
    };
    let origin_keep_alive = framing != BodyFraming::UntilClose
        && if version == 1 {
            !connection.close
        } else {
            connection.keep_alive && !connection.close
        };

    Ok(Some(ResponseHead {
        status,
        version,
        reason,
        header_len,
        headers_start,
        framing,
        origin_keep_alive,
        connection_names_fields: connection.other,
    }))
}

/// How the client's HTTP version changes the rewrite.
#[derive(Clone, Copy, PartialEq, Eq)]
enum ClientVersion {
    Http11,
    Http10,
}

fn write_head(
    head: &ResponseHead,
    buf: &[u8],
    client_keep_alive: bool,
    client: ClientVersion,
    out: &mut Vec<u8>,
) {
    let block = head.header_block(buf);
    out.extend_from_slice(b"HTTP/1.1 ");
    // `status` is 100..=999: three digits.
    let s = head.status;
    out.extend_from_slice(&[
        b'0' + (s / 100 % 10) as u8,
        b'0' + (s / 10 % 10) as u8,
        b'0' + (s % 10) as u8,
        b' ',
    ]);
    out.extend_from_slice(head.reason.get(buf));
    out.extend_from_slice(b"\r\n");
    let dechunk = client == ClientVersion::Http10 && head.framing == BodyFraming::Chunked;
    for (name, value) in HeaderLines::new(block) {
        if is_hop_by_hop(name)
            || (head.connection_names_fields && named_in_connection(block, name))
            || (dechunk && name.eq_ignore_ascii_case(b"transfer-encoding"))
        {
            continue;
        }
        push_field(out, name, value);
    }
    if !head.is_interim() {
        let close = !client_keep_alive || head.framing == BodyFraming::UntilClose || dechunk;
        if close {
            out.extend_from_slice(b"Connection: close\r\n");
        } else if client == ClientVersion::Http10 {
            out.extend_from_slice(b"Connection: keep-alive\r\n");
        }
    }
    out.extend_from_slice(b"\r\n");
}

/// Writes (appends to `out`) the response head to send to an HTTP/1.1 client.
///
/// `head` must have been parsed from `buf`. The status line is sent as `HTTP/1.1` with the
/// origin's code and reason; the origin's fields are copied except the hop-by-hop ones
/// (`Connection`, `Keep-Alive`, `Proxy-Connection`, `TE`, `Trailer`, `Upgrade`) and those named
/// in `Connection` (`Content-Length` and `Transfer-Encoding` are always kept: the body is
/// forwarded verbatim). `Connection: close` is added (except on 1xx) if `!client_keep_alive` or
/// the body is delimited by the origin closing.
pub fn write_client_response_head(
    head: &ResponseHead,
    buf: &[u8],
    client_keep_alive: bool,
    out: &mut Vec<u8>,
) {
    write_head(head, buf, client_keep_alive, ClientVersion::Http11, out);
}

/// Like [`write_client_response_head`], for an HTTP/1.0 client, which does not understand
/// chunked bodies and keeps connections open only with `Connection: keep-alive`.
///
/// If the framing is [`BodyFraming::Chunked`], `Transfer-Encoding` is removed and
/// `Connection: close` added: the caller must then forward only the payload (see
/// [`ChunkedDecoder::advance_payload`](super::ChunkedDecoder::advance_payload)) and close the
/// client connection at the end. (A `Transfer-Encoding` with codings besides `chunked` is not
/// supported for such clients.) Otherwise `Connection: keep-alive` is added when the connection
/// stays open.
pub fn write_client_response_head_http10(
    head: &ResponseHead,
    buf: &[u8],
    client_keep_alive: bool,
    out: &mut Vec<u8>,
) {
    write_head(head, buf, client_keep_alive, ClientVersion::Http10, out);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_ok(buf: &[u8], head_req: bool) -> ResponseHead {
        parse_response_head(buf, head_req)
            .expect("valid")
            .expect("complete")
    }

    fn client_head(buf: &[u8], keep_alive: bool) -> String {
        let h = parse_ok(buf, false);
        let mut out = Vec::new();
        write_client_response_head(&h, buf, keep_alive, &mut out);
        String::from_utf8(out).expect("utf8")
    }

    #[test]
    fn framing_rules() {
        let cases: [(&[u8], bool, BodyFraming, bool); 12] = [
            (
                b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n",
                false,
                BodyFraming::ContentLength(5),
                true,
            ),
            (
                b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n",
                true,
                BodyFraming::None,
                true,
            ),
            (
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
                false,
                BodyFraming::Chunked,
                true,
            ),
            (
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, CHUNKED\r\n\r\n",
                false,
                BodyFraming::Chunked,
                true,
            ),
            (
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n",
                false,
                BodyFraming::Chunked,
                true,
            ),
            (
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
                false,
                BodyFraming::UntilClose,
                false,
            ),
            (
                b"HTTP/1.1 200 OK\r\n\r\n",
                false,
                BodyFraming::UntilClose,
                false,
            ),
            (
                b"HTTP/1.1 204 No Content\r\n\r\n",
                false,
                BodyFraming::None,
                true,
            ),
            (
                b"HTTP/1.1 304 Not Modified\r\nContent-Length: 99\r\n\r\n",
                false,
                BodyFraming::None,
                true,
            ),
            (
                b"HTTP/1.1 100 Continue\r\n\r\n",
                false,
                BodyFraming::None,
                true,
            ),
            (
                b"HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\n",
                false,
                BodyFraming::ContentLength(1),
                false,
            ),
            (
                b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 1\r\n\r\n",
                false,
                BodyFraming::ContentLength(1),
                true,
            ),
        ];
        for (buf, head_req, framing, ka) in cases {
            let h = parse_ok(buf, head_req);
            assert_eq!(h.framing, framing, "{:?}", String::from_utf8_lossy(buf));
            assert_eq!(
                h.origin_keep_alive,
                ka,
                "{:?}",
                String::from_utf8_lossy(buf)
            );
            assert_eq!(h.header_len, buf.len());
        }
        let h = parse_ok(
            b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
            false,
        );
        assert!(!h.origin_keep_alive);
        assert_eq!(h.framing, BodyFraming::ContentLength(0));
    }

    #[test]
    fn errors_are_502() {
        let bad: [&[u8]; 10] = [
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: five\r\n\r\n",
            b"HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n",
            b"HTTP/1.1 099 Low\r\n\r\n",
            b"HTTP/1.1 20 OK\r\n\r\n",
            b"HTTP/2 200 OK\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nX: a\r\n b\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nX : a\r\n\r\n",
        ];
        for buf in bad {
            let e = parse_response_head(buf, false).expect_err("invalid");
            assert_eq!(e.status(), 502, "{:?}: {e}", String::from_utf8_lossy(buf));
        }
        let mut many = b"HTTP/1.1 200 OK\r\n".to_vec();
        for i in 0..=MAX_RESPONSE_HEADERS {
            many.extend_from_slice(format!("X-{i}: v\r\n").as_bytes());
        }
        many.extend_from_slice(b"\r\n");
        assert_eq!(
            parse_response_head(&many, false).map(|_| ()),
            Err(HttpError::InvalidResponse("too many header fields"))
        );
        // Content-Length problems do not matter when there is no body.
        assert!(
            parse_response_head(b"HTTP/1.1 204 No\r\nContent-Length: x\r\n\r\n", false).is_ok()
        );
    }

    #[test]
    fn partial_prefixes() {
        let buf = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi";
        for n in 0..buf.len() - 2 {
            assert_eq!(
                parse_response_head(&buf[..n], false),
                Ok(None),
                "prefix {n}"
            );
        }
        assert_eq!(parse_ok(buf, false).header_len, buf.len() - 2);
    }

    #[test]
    fn rewrite_drops_hop_by_hop() {
        let buf = b"HTTP/1.0 200 Fine Thanks\r\n\
            Connection: keep-alive, X-Hop, Content-Length\r\n\
            Keep-Alive: timeout=5\r\n\
            Proxy-Connection: keep-alive\r\n\
            TE: trailers\r\n\
            Trailer: X-T\r\n\
            Upgrade: h2c\r\n\
            X-Hop: 1\r\n\
            Content-Length: 3\r\n\
            Set-Cookie: a=b\r\n\
            \r\n";
        assert_eq!(
            client_head(buf, true),
            "HTTP/1.1 200 Fine Thanks\r\nContent-Length: 3\r\nSet-Cookie: a=b\r\n\r\n"
        );
        assert_eq!(
            client_head(buf, false),
            "HTTP/1.1 200 Fine Thanks\r\nContent-Length: 3\r\nSet-Cookie: a=b\r\nConnection: close\r\n\r\n"
        );
    }

    #[test]
    fn rewrite_until_close_and_chunked() {
        let buf = b"HTTP/1.1 200 OK\r\nServer: x\r\n\r\n";
        assert_eq!(
            client_head(buf, true),
            "HTTP/1.1 200 OK\r\nServer: x\r\nConnection: close\r\n\r\n"
        );
        let buf = b"HTTP/1.1 404 \r\nTransfer-Encoding: chunked\r\n\r\n";
        assert_eq!(
            client_head(buf, true),
            "HTTP/1.1 404 \r\nTransfer-Encoding: chunked\r\n\r\n"
        );
        let buf = b"\r\nHTTP/1.1 500\nTransfer-Encoding: chunked\n\n";
        let h = parse_ok(buf, false);
        assert!(h.reason.is_empty());
        assert_eq!(
            client_head(buf, true),
            "HTTP/1.1 500 \r\nTransfer-Encoding: chunked\r\n\r\n"
        );
    }

    #[test]
    fn interim_responses_get_no_connection_close() {
        let buf = b"HTTP/1.1 100 Continue\r\n\r\n";
        let h = parse_ok(buf, false);
        assert!(h.is_interim());
        let mut out = Vec::new();
        write_client_response_head(&h, buf, false, &mut out);
        assert_eq!(out, b"HTTP/1.1 100 Continue\r\n\r\n");
    }

    #[test]
    fn http10_client() {
        let buf = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX: y\r\n\r\n";
        let h = parse_ok(buf, false);
        let mut out = Vec::new();
        write_client_response_head_http10(&h, buf, true, &mut out);
        assert_eq!(out, b"HTTP/1.1 200 OK\r\nX: y\r\nConnection: close\r\n\r\n");
        let buf = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
        let h = parse_ok(buf, false);
        out.clear();
        write_client_response_head_http10(&h, buf, true, &mut out);
        assert_eq!(
            out,
            b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: keep-alive\r\n\r\n"
        );
        out.clear();
        write_client_response_head_http10(&h, buf, false, &mut out);
        assert_eq!(
            out,
            b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        );
    }

    #[test]
    fn reason_with_obs_text_is_kept() {
        let buf = b"HTTP/1.1 200 Tr\xe8s bien\r\nContent-Length: 0\r\n\r\n";
        let h = parse_ok(buf, false);
        assert_eq!(h.reason.get(buf), b"Tr\xe8s bien");
        let mut out = Vec::new();
        write_client_response_head(&h, buf, true, &mut out);
        assert!(out.starts_with(b"HTTP/1.1 200 Tr\xe8s bien\r\n"));
    }

    #[test]
    fn garbage_never_panics() {
        let seed: &[u8] =
            b"HTTP/1.1 200 OK\r\nConnection: a, b\r\nTransfer-Encoding: chunked\r\nA: b\r\n\r\n";
        let mut out = Vec::new();
        for i in 0..seed.len() {
            for flip in [0x01u8, 0x20, 0x80, 0xff] {
                let mut b = seed.to_vec();
                b[i] ^= flip;
                for n in [b.len(), i + 1] {
                    for head_req in [false, true] {
                        if let Ok(Some(h)) = parse_response_head(&b[..n], head_req) {
                            out.clear();
                            write_client_response_head(&h, &b[..n], true, &mut out);
                            assert!(out.starts_with(b"HTTP/1.1 "));
                            assert!(out.ends_with(b"\r\n\r\n"));
                        }
                    }
                }
            }
        }
    }
}
