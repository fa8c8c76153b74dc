//! HTTP/1.1 codec for the reverse proxy: request and response heads, the chunked body framing
//! and canned error responses.
//!
//! Everything here is pure (no I/O) and parses bytes straight from the network: no input can
//! make these functions panic. Heads are parsed with `httparse` into stack arrays and rewritten
//! into caller-provided buffers, so the hot path does not allocate.

pub mod authority;
pub mod body;
pub mod chunked;
pub mod error_response;
pub mod h2_fields;
mod headers;
pub mod request;
pub mod response;
pub mod status;

pub use body::{
    encode_chunk, encode_chunk_into, BodyState, RequestBytes, CHUNK_OVERHEAD, LAST_CHUNK,
};
pub use chunked::ChunkedDecoder;
pub use error_response::error_response;
pub use request::{parse_request_head, write_origin_request, RequestHead, MAX_REQUEST_HEADERS};
pub use response::{
    parse_response_head, write_client_response_head, write_client_response_head_http10,
    ResponseHead, MAX_RESPONSE_HEADERS,
};
pub use status::Status;

/// How the end of a message body is found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFraming {
    /// No body.
    None,
    /// Exactly this many bytes follow the head.
    ContentLength(u64),
    /// `Transfer-Encoding: chunked`: use [`ChunkedDecoder`] to find the end.
    Chunked,
    /// The body ends when the peer closes the connection (responses only).
    UntilClose,
}

/// A byte range of the buffer a head was parsed from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Span {
    /// Offset of the first byte.
    pub start: usize,
    /// Offset one past the last byte.
    pub end: usize,
}

impl Span {
    /// The bytes of this span in `buf` (empty if `buf` is not the parsed buffer and is too short).
    pub fn get<'a>(&self, buf: &'a [u8]) -> &'a [u8] {
        buf.get(self.start..self.end).unwrap_or(&[])
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.end.saturating_sub(self.start)
    }

    /// True if the span is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Errors of the HTTP codec. [`HttpError::status`] gives the status code to answer with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HttpError {
    /// The request head is not valid HTTP/1.x (bad token, obs-fold, bad newline, version, ...).
    #[error("malformed request head: {0}")]
    MalformedRequest(httparse::Error),
    /// The request has more header fields than allowed.
    #[error("too many request header fields")]
    TooManyHeaders,
    /// The request head exceeds the size limit (reported by the caller, which owns the buffer).
    #[error("request head too large")]
    HeadTooLarge,
    /// Both `Content-Length` and `Transfer-Encoding` are present.
    #[error("both Content-Length and Transfer-Encoding")]
    ContentLengthWithTransferEncoding,
    /// More than one `Content-Length` field (even with equal values: refused, as nginx does,
    /// rather than guessing which one the next hop would use).
    #[error("more than one Content-Length field")]
    ConflictingContentLength,
    /// `Content-Length` is not a decimal number that fits in 64 bits.
    #[error("invalid Content-Length")]
    InvalidContentLength,
    /// `Transfer-Encoding` is not exactly `chunked` (`chunked, identity`, `xchunked`,
    /// `gzip, chunked`, ...): refused rather than interpreted differently from the origin.
    #[error("unsupported Transfer-Encoding")]
    UnsupportedTransferEncoding,
    /// The request target is not origin-form (`/path`), absolute-form (`http://host/path`) or
    /// `*` with OPTIONS, or it carries a fragment.
    #[error("invalid request target")]
    InvalidTarget,
    /// `CONNECT`: the proxy does not tunnel.
    #[error("CONNECT is not supported")]
    MethodNotAllowed,
    /// More than one `Transfer-Encoding` field.
    #[error("multiple Transfer-Encoding fields")]
    MultipleTransferEncoding,
    /// `Transfer-Encoding` in an HTTP/1.0 message (faulty framing, RFC 9112 section 6.1).
    #[error("Transfer-Encoding in an HTTP/1.0 message")]
    TransferEncodingInHttp10,
    /// HTTP/1.1 request without `Host`.
    #[error("missing Host")]
    MissingHost,
    /// More than one `Host` field.
    #[error("multiple Host fields")]
    MultipleHost,
    /// The `Host` value or an absolute-form target's authority is not a plain `host[:port]`.
    #[error("invalid Host or request-target authority")]
    InvalidHost,
    /// A header value contains CR, LF or NUL (HTTP/2 requests, which carry values as binary).
    #[error("invalid header value")]
    InvalidHeaderValue,
    /// Malformed chunked body (the reason says where).
    #[error("invalid chunked body: {0}")]
    InvalidChunkedBody(&'static str),
    /// A chunk size does not fit in 64 bits.
    #[error("chunk size overflows")]
    ChunkSizeOverflow,
    /// A chunk-size line (with extensions) is longer than the limit.
    #[error("chunk size line too long")]
    ChunkLineTooLong,
    /// The trailer section of a chunked body is larger than the limit.
    #[error("chunked trailers too large")]
    TrailersTooLarge,
    /// The origin's response head is not valid HTTP/1.x.
    #[error("malformed response head: {0}")]
    MalformedResponse(httparse::Error),
    /// The origin's response head is unusable (the reason says why).
    #[error("invalid response: {0}")]
    InvalidResponse(&'static str),
}

impl HttpError {
    /// The status code to answer the client with.
    ///
    /// Request errors give 400, 405 or 431; response errors give 502. Errors of a
    /// [`ChunkedDecoder`] give 400 (they are meant for request bodies; on a response body the
    /// client head was already sent and the caller just closes the connection).
    pub fn status(&self) -> Status {
        match self {
            HttpError::TooManyHeaders | HttpError::HeadTooLarge => Status::HEADER_FIELDS_TOO_LARGE,
            HttpError::MethodNotAllowed => Status::METHOD_NOT_ALLOWED,
            HttpError::MalformedResponse(_) | HttpError::InvalidResponse(_) => Status::BAD_GATEWAY,
            HttpError::MalformedRequest(_)
            | HttpError::ContentLengthWithTransferEncoding
            | HttpError::ConflictingContentLength
            | HttpError::UnsupportedTransferEncoding
            | HttpError::InvalidTarget
            | HttpError::InvalidContentLength
            | HttpError::MultipleTransferEncoding
            | HttpError::TransferEncodingInHttp10
            | HttpError::MissingHost
            | HttpError::MultipleHost
            | HttpError::InvalidHost
            | HttpError::InvalidHeaderValue
            | HttpError::InvalidChunkedBody(_)
            | HttpError::ChunkSizeOverflow
            | HttpError::ChunkLineTooLong
            | HttpError::TrailersTooLarge => Status::BAD_REQUEST,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_mapping() {
        assert_eq!(HttpError::TooManyHeaders.status(), 431);
        assert_eq!(HttpError::HeadTooLarge.status(), 431);
        assert_eq!(HttpError::UnsupportedTransferEncoding.status(), 400);
        assert_eq!(HttpError::MethodNotAllowed.status(), 405);
        assert_eq!(HttpError::InvalidTarget.status(), 400);
        assert_eq!(HttpError::MissingHost.status(), 400);
        assert_eq!(
            HttpError::MalformedRequest(httparse::Error::Token).status(),
            400
        );
        assert_eq!(HttpError::InvalidResponse("x").status(), 502);
        assert_eq!(
            HttpError::MalformedResponse(httparse::Error::Status).status(),
            502
        );
        assert_eq!(HttpError::ChunkSizeOverflow.status(), 400);
    }

    #[test]
    fn span_get_never_panics() {
        let s = Span { start: 2, end: 5 };
        assert_eq!(s.get(b"abcdef"), b"cde");
        assert_eq!(s.get(b"ab"), b"");
        assert_eq!(s.len(), 3);
        let bad = Span { start: 5, end: 2 };
        assert_eq!(bad.get(b"abcdef"), b"");
        assert!(bad.is_empty());
    }
}
