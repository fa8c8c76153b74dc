//! Translation between HTTP/2 viewer messages and the HTTP/1.1 origin (RFC 9113 section 8):
//! an HTTP/2 request becomes an HTTP/1.1 origin request head, an origin response head becomes
//! the HTTP/2 response.
//!
//! Requests: `:authority` becomes `Host` (a client `Host` must name the same site, the caller
//! checks both), cookie crumbs are joined with `"; "`, connection-specific fields (which the
//! codec already refuses) and `TE` are not forwarded, and the same fields as for HTTP/1.1 are
//! removed or set: client copies of `CloudFront-Viewer-Cert-*` (both spellings), `Forwarded`,
//! `X-Real-IP`, `X-Forwarded-Host`/`-Port`/`-Proto`, then `X-Forwarded-For` gets the client
//! address and `X-Forwarded-Proto: https` and the viewer-cert block are appended. A body of
//! unknown length goes to the origin chunked. Responses lose their hop-by-hop fields, those
//! named in `Connection` and `Transfer-Encoding` (the body is de-chunked into DATA frames).

use std::io::Write as _;
use std::net::IpAddr;

use http::header::{HeaderName, HeaderValue, COOKIE, HOST};

use super::headers::{
    is_hop_by_hop, named_in_connection, parse_content_length, push_field, HeaderLines,
};
use super::request::{check_target, is_dropped_request_field};
use super::{BodyFraming, HttpError, ResponseHead};

/// What the exchange needs to know about a translated request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct H2RequestInfo {
    /// How the body reaches the origin: none, with the client's `Content-Length`, or chunked.
    pub framing: BodyFraming,
    /// The request may be sent again after a reused origin connection failed (idempotent
    /// method or `Idempotency-Key`).
    pub idempotent: bool,
    /// The method is HEAD.
    pub is_head: bool,
}

/// Writes (appends to `out`) the HTTP/1.1 origin request head for an HTTP/2 request.
///
/// `has_body`: the request's HEADERS did not end the stream. `fallback_host` is used when the
/// request has neither `:authority` nor `Host`. Refuses CONNECT (405), targets that are not
/// origin-form (or `*` for OPTIONS), more than one `Host` or `Content-Length`, an invalid
/// `Content-Length`, and values with CR, LF or NUL (400).
pub fn write_origin_request(
    parts: &http::request::Parts,
    has_body: bool,
    client_ip: IpAddr,
    viewer_headers: &[u8],
    fallback_host: &[u8],
    out: &mut Vec<u8>,
) -> Result<H2RequestInfo, HttpError> {
    let method = parts.method.as_str();
    let target = parts
        .uri
        .path_and_query()
        .map_or("", |p| p.as_str())
        .as_bytes();
    check_target(method, target)?;
    if target.first() != Some(&b'/') && target != b"*" {
        return Err(HttpError::InvalidTarget);
    }
    let headers = &parts.headers;
    let mut hosts = headers.get_all(HOST).iter();
    let host_field = hosts.next();
    if hosts.next().is_some() {
        return Err(HttpError::MultipleHost);
    }
    let host = parts
        .uri
        .authority()
        .map(|a| a.as_str().as_bytes())
        .or(host_field.map(HeaderValue::as_bytes))
        .unwrap_or(fallback_host);
    let mut lengths = headers.get_all(http::header::CONTENT_LENGTH).iter();
    let content_length = lengths
        .next()
        .map(|v| parse_content_length(v.as_bytes()))
        .transpose()?;
    if lengths.next().is_some() {
        return Err(HttpError::ConflictingContentLength);
    }
    let framing = match (has_body, content_length) {
        (_, Some(0)) | (false, None) => BodyFraming::None,
        (_, Some(n)) => BodyFraming::ContentLength(n),
        (true, None) => BodyFraming::Chunked,
    };

    out.extend_from_slice(method.as_bytes());
    out.push(b' ');
    out.extend_from_slice(target);
    out.extend_from_slice(b" HTTP/1.1\r\n");
    check_value(host)?;
    push_field(out, b"host", host);
    let xff_count = headers.get_all("x-forwarded-for").iter().count();
    let mut xff_seen = 0;
    let client_ip = client_ip.to_canonical();
    let mut idempotency_key = false;
    for (name, value) in headers {
        let (name, value) = (name.as_str().as_bytes(), value.as_bytes());
        check_value(value)?;
        if name == b"host"
            || name == b"content-length"
            || name == b"cookie"
            || is_dropped_request_field(name)
        {
            continue;
        }
        idempotency_key |= name == b"idempotency-key";
        if name == b"x-forwarded-for" {
            xff_seen += 1;
            if xff_seen == xff_count {
                out.extend_from_slice(b"x-forwarded-for: ");
                if !value.is_empty() {
                    out.extend_from_slice(value);
                    out.extend_from_slice(b", ");
                }
                // Writing to a Vec cannot fail.
                let _ = write!(out, "{client_ip}\r\n");
                continue;
            }
        }
        push_field(out, name, value);
    }
    // Cookie crumbs (RFC 9113 section 8.2.3) become one field again.
    let mut cookies = headers.get_all(COOKIE).iter();
    if let Some(first) = cookies.next() {
        out.extend_from_slice(b"cookie: ");
        out.extend_from_slice(first.as_bytes());
        for crumb in cookies {
            out.extend_from_slice(b"; ");
            out.extend_from_slice(crumb.as_bytes());
        }
        out.extend_from_slice(b"\r\n");
    }
    match framing {
        BodyFraming::ContentLength(n) => {
            let _ = write!(out, "content-length: {n}\r\n");
        }
        BodyFraming::Chunked => out.extend_from_slice(b"transfer-encoding: chunked\r\n"),
        // A method whose request usually has content gets an explicit empty one, so the
        // origin does not wait for a body.
        BodyFraming::None if !matches!(method, "GET" | "HEAD" | "DELETE" | "OPTIONS" | "TRACE") => {
            out.extend_from_slice(b"content-length: 0\r\n")
        }
        BodyFraming::None | BodyFraming::UntilClose => {}
    }
    if xff_count == 0 {
        let _ = write!(out, "X-Forwarded-For: {client_ip}\r\n");
    }
    out.extend_from_slice(b"X-Forwarded-Proto: https\r\n");
    out.extend_from_slice(viewer_headers);
    out.extend_from_slice(b"\r\n");
    Ok(H2RequestInfo {
        framing,
        idempotent: idempotency_key
            || matches!(
                method,
                "GET" | "HEAD" | "OPTIONS" | "TRACE" | "PUT" | "DELETE"
            ),
        is_head: method == "HEAD",
    })
}

/// Refuses values that would split an HTTP/1.1 header line (the HTTP/2 codec already does;
/// checked again because the origin side is a text protocol).
fn check_value(value: &[u8]) -> Result<(), HttpError> {
    if value.iter().any(|&b| b == b'\r' || b == b'\n' || b == 0) {
        return Err(HttpError::InvalidHeaderValue);
    }
    Ok(())
}

/// The HTTP/2 response for an origin response head parsed from `buf` (status and fields;
/// the body follows in DATA frames). Fields HTTP/2 cannot carry are dropped: hop-by-hop
/// ones, those named in `Connection`, `Transfer-Encoding`, and any name or value `http`
/// refuses.
pub fn client_response(head: &ResponseHead, buf: &[u8]) -> http::Response<()> {
    let mut response = http::Response::new(());
    *response.status_mut() =
        http::StatusCode::from_u16(head.status).unwrap_or(http::StatusCode::BAD_GATEWAY);
    let block = head.header_block(buf);
    let fields = response.headers_mut();
    for (name, value) in HeaderLines::new(block) {
        if is_hop_by_hop(name)
            || name.eq_ignore_ascii_case(b"transfer-encoding")
            || (head.connection_names_fields && named_in_connection(block, name))
            || (name.eq_ignore_ascii_case(b"content-length")
                && !matches!(
                    head.framing,
                    BodyFraming::ContentLength(_) | BodyFraming::None
                ))
        {
            continue;
        }
        match (HeaderName::from_bytes(name), HeaderValue::from_bytes(value)) {
            (Ok(name), Ok(value)) => {
                fields.append(name, value);
            }
            _ => tracing::debug!("origin response field not representable in HTTP/2; dropped"),
        }
    }
    response
}

/// A canned HTTP/2 response for an error the proxy answers itself (`text/plain`, the
/// reason phrase as body).
pub fn error_response(status: super::Status) -> (http::Response<()>, &'static str) {
    let body = match status.reason() {
        "" => "Error",
        reason => reason,
    };
    let mut response = http::Response::new(());
    *response.status_mut() = http::StatusCode::from_u16(status.code())
        .unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR);
    let fields = response.headers_mut();
    fields.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain"),
    );
    fields.insert(
        http::header::CONTENT_LENGTH,
        HeaderValue::from(body.len() + 1),
    );
    (response, body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn request(method: &str, uri: &str, fields: &[(&str, &str)]) -> http::request::Parts {
        let mut b = http::Request::builder().method(method).uri(uri);
        for (n, v) in fields {
            b = b.header(*n, *v);
        }
        b.body(()).expect("request").into_parts().0
    }

    fn translate(
        parts: &http::request::Parts,
        has_body: bool,
    ) -> Result<(String, H2RequestInfo), HttpError> {
        let mut out = Vec::new();
        let info = write_origin_request(
            parts,
            has_body,
            IpAddr::V4(Ipv4Addr::new(192, 0, 2, 9)),
            b"CloudFront-Viewer-Cert-Present: 1\r\n",
            b"fallback.test",
            &mut out,
        )?;
        Ok((String::from_utf8(out).expect("utf8"), info))
    }

    #[test]
    fn request_fields_are_translated() {
        let parts = request(
            "GET",
            "https://shop.test/a?b=c",
            &[
                ("cookie", "a=1"),
                ("accept", "*/*"),
                ("cookie", "b=2"),
                ("te", "trailers"),
                ("cloudfront-viewer-cert-present", "forged"),
                ("cloudfront_viewer_cert_sha256", "forged"),
                ("x-forwarded-host", "evil"),
                ("forwarded", "for=1.2.3.4"),
                ("x-real-ip", "1.2.3.4"),
                ("x-forwarded-port", "1"),
                ("x-forwarded-proto", "http"),
                ("x-forwarded-for", "10.0.0.1"),
            ],
        );
        let (head, info) = translate(&parts, false).expect("valid");
        assert_eq!(
            head,
            "GET /a?b=c HTTP/1.1\r\nhost: shop.test\r\naccept: */*\r\n\
             x-forwarded-for: 10.0.0.1, 192.0.2.9\r\ncookie: a=1; b=2\r\n\
             X-Forwarded-Proto: https\r\nCloudFront-Viewer-Cert-Present: 1\r\n\r\n"
        );
        assert_eq!(info.framing, BodyFraming::None);
        assert!(info.idempotent);
        assert!(!info.is_head);
    }

    #[test]
    fn bodies_and_hosts() {
        let post = request("POST", "/up", &[("host", "h.test")]);
        let (head, info) = translate(&post, true).expect("valid");
        assert!(
            head.starts_with("POST /up HTTP/1.1\r\nhost: h.test\r\n"),
            "{head}"
        );
        assert!(head.contains("transfer-encoding: chunked\r\n"), "{head}");
        assert_eq!(info.framing, BodyFraming::Chunked);
        assert!(!info.idempotent);
        let sized = request("PUT", "/up", &[("content-length", "5")]);
        let (head, info) = translate(&sized, true).expect("valid");
        assert!(head.contains("host: fallback.test\r\n"), "{head}");
        assert!(head.contains("content-length: 5\r\n"), "{head}");
        assert_eq!(info.framing, BodyFraming::ContentLength(5));
        let empty_post = request("POST", "/x", &[]);
        let (head, _) = translate(&empty_post, false).expect("valid");
        assert!(head.contains("content-length: 0\r\n"), "{head}");
        let keyed = request("POST", "/x", &[("idempotency-key", "k")]);
        assert!(translate(&keyed, false).expect("valid").1.idempotent);
    }

    #[test]
    fn refusals() {
        let cases = [
            (
                request("CONNECT", "h.test:443", &[]),
                HttpError::MethodNotAllowed,
            ),
            (request("GET", "*", &[]), HttpError::InvalidTarget),
            (
                request("GET", "/", &[("host", "a"), ("host", "b")]),
                HttpError::MultipleHost,
            ),
            (
                request(
                    "POST",
                    "/",
                    &[("content-length", "1"), ("content-length", "1")],
                ),
                HttpError::ConflictingContentLength,
            ),
            (
                request("POST", "/", &[("content-length", "x")]),
                HttpError::InvalidContentLength,
            ),
        ];
        for (parts, expected) in cases {
            assert_eq!(translate(&parts, false).err(), Some(expected));
        }
        assert!(translate(&request("OPTIONS", "*", &[]), false).is_ok());
    }

    #[test]
    fn response_fields_are_translated() {
        let raw = b"HTTP/1.1 200 OK\r\nConnection: keep-alive, X-Hop\r\nX-Hop: 1\r\nKeep-Alive: timeout=5\r\nTransfer-Encoding: chunked\r\nContent-Type: text/plain\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\n\r\n";
        let head = super::super::parse_response_head(raw, false)
            .expect("valid")
            .expect("complete");
        let response = client_response(&head, raw);
        assert_eq!(response.status(), 200);
        let names: Vec<&str> = response.headers().keys().map(HeaderName::as_str).collect();
        assert_eq!(names, ["content-type", "set-cookie"]);
        assert_eq!(response.headers().get_all("set-cookie").iter().count(), 2);
        let (canned, body) = error_response(super::super::Status::MISDIRECTED_REQUEST);
        assert_eq!(canned.status(), 421);
        assert_eq!(body, "Misdirected Request");
        assert_eq!(canned.headers()["content-length"], "20");
    }
}
