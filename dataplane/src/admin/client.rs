//! A blocking client for the admin API, used by `portcullis revoke` and `portcullis unrevoke`.

use std::fmt;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::{Duration, Instant};

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

/// Longest wait for a TCP connection to be established.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest wait for any single read or write.
pub const IO_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest time a whole response may take to arrive.
pub const RESPONSE_DEADLINE: Duration = Duration::from_secs(60);
/// Largest response (head and body) accepted.
pub const MAX_RESPONSE_BYTES: usize = 16 * 1024 * 1024;
/// Most response headers accepted.
const MAX_HEADERS: usize = 64;

/// Characters percent-encoded in a path segment: everything but RFC 3986 unreserved.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Where the admin server is: `127.0.0.1:9901` (TCP) or `unix:/path/to.sock`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdminTarget {
    /// A TCP address.
    Tcp(SocketAddr),
    /// A Unix socket path.
    Unix(PathBuf),
}

impl FromStr for AdminTarget {
    type Err = ClientError;

    /// Parses `unix:<path>` as a Unix socket and anything else as `ip:port`.
    fn from_str(s: &str) -> Result<AdminTarget, ClientError> {
        if let Some(path) = s.strip_prefix("unix:") {
            if path.is_empty() {
                return Err(ClientError::InvalidTarget(s.to_owned()));
            }
            return Ok(AdminTarget::Unix(PathBuf::from(path)));
        }
        s.parse::<SocketAddr>()
            .map(AdminTarget::Tcp)
            .map_err(|_| ClientError::InvalidTarget(s.to_owned()))
    }
}

impl fmt::Display for AdminTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AdminTarget::Tcp(addr) => write!(f, "{addr}"),
            AdminTarget::Unix(path) => write!(f, "unix:{}", path.display()),
        }
    }
}

/// Why an admin request failed (before any HTTP status was received).
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The target is neither `ip:port` nor `unix:<path>`.
    #[error("invalid admin address {0:?}: expected ip:port or unix:/path/to.sock")]
    InvalidTarget(String),
    /// The method or path cannot be sent as an HTTP/1.1 request line.
    #[error("invalid request: {0}")]
    InvalidRequest(&'static str),
    /// Connecting, writing or reading failed.
    #[error("{context} {target}")]
    Io {
        /// What was being done.
        context: &'static str,
        /// The admin server.
        target: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The response did not arrive within [`RESPONSE_DEADLINE`].
    #[error("timed out waiting for the response from {0}")]
    Timeout(String),
    /// The response exceeded [`MAX_RESPONSE_BYTES`].
    #[error("response from {0} is too large")]
    ResponseTooLarge(String),
    /// The response is not valid HTTP/1.1.
    #[error("invalid response from {target}: {reason}")]
    InvalidResponse {
        /// The admin server.
        target: String,
        /// What is wrong with it.
        reason: String,
    },
}

/// The path of one revocation entry, with `store` and `serial` percent-encoded.
pub fn revocation_path(store: &str, serial: &str) -> String {
    format!(
        "/revocations/{}/{}",
        utf8_percent_encode(store, SEGMENT),
        utf8_percent_encode(serial, SEGMENT)
    )
}

/// The path of a store's import endpoint, with `store` percent-encoded.
pub fn import_path(store: &str) -> String {
    format!(
        "/revocations/{}/import",
        utf8_percent_encode(store, SEGMENT)
    )
}

/// The `error` member of a JSON error body, or the body itself if it has none.
pub fn error_message(body: &str) -> String {
    serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_owned))
        .unwrap_or_else(|| body.trim().to_owned())
}

enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Stream {
    fn set_timeouts(&self, read: Duration) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => {
                s.set_read_timeout(Some(read))?;
                s.set_write_timeout(Some(IO_TIMEOUT))
            }
            Stream::Unix(s) => {
                s.set_read_timeout(Some(read))?;
                s.set_write_timeout(Some(IO_TIMEOUT))
            }
        }
    }

    fn shutdown_write(&self) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.shutdown(Shutdown::Write),
            Stream::Unix(s) => s.shutdown(Shutdown::Write),
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.read(buf),
            Stream::Unix(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.write(buf),
            Stream::Unix(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.flush(),
            Stream::Unix(s) => s.flush(),
        }
    }
}

/// Sends one request (`method path`, with `body` and its `Content-Length`) to the admin
/// server and returns the response status and body.
///
/// Every connect, read and write is bounded ([`CONNECT_TIMEOUT`], [`IO_TIMEOUT`],
/// [`RESPONSE_DEADLINE`]) and the response is at most [`MAX_RESPONSE_BYTES`]. `path` must be
/// an origin-form target (starting with `/`, no spaces or control characters); see
/// [`revocation_path`]. Any status is returned as `Ok`: the caller decides what is a failure.
pub fn request(
    admin: &AdminTarget,
    method: &str,
    path: &str,
    body: &[u8],
) -> Result<(u16, String), ClientError> {
    request_with_token(admin, None, method, path, body)
}

/// Like [`request`], sending `Authorization: Bearer <token>` when `token` is given (the
/// server's `admin.token_file`). The token must be visible ASCII.
pub fn request_with_token(
    admin: &AdminTarget,
    token: Option<&str>,
    method: &str,
    path: &str,
    body: &[u8],
) -> Result<(u16, String), ClientError> {
    if token.is_some_and(|t| t.is_empty() || !t.bytes().all(|b| b.is_ascii_graphic())) {
        return Err(ClientError::InvalidRequest(
            "the token must be one word of visible ASCII",
        ));
    }
    if method.is_empty() || !method.bytes().all(|b| b.is_ascii_uppercase()) {
        return Err(ClientError::InvalidRequest(
            "method must be upper-case letters",
        ));
    }
    if !path.starts_with('/') || !path.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(ClientError::InvalidRequest(
            "path must start with '/' and contain only visible ASCII",
        ));
    }
    let target = admin.to_string();
    let io_error = |context: &'static str| {
        let target = target.clone();
        move |source: io::Error| ClientError::Io {
            context,
            target,
            source,
        }
    };
    let mut stream = match admin {
        AdminTarget::Tcp(addr) => TcpStream::connect_timeout(addr, CONNECT_TIMEOUT)
            .map(Stream::Tcp)
            .map_err(io_error("connecting to"))?,
        AdminTarget::Unix(path) => UnixStream::connect(path)
            .map(Stream::Unix)
            .map_err(io_error("connecting to"))?,
    };
    stream
        .set_timeouts(IO_TIMEOUT)
        .map_err(io_error("configuring the connection to"))?;
    let authorization = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: portcullis-admin\r\n{authorization}Content-Type: application/octet-stream\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let sent = stream
        .write_all(head.as_bytes())
        .and_then(|()| stream.write_all(body))
        .and_then(|()| stream.flush());
    if let Err(e) = sent {
        // The server may have answered early (e.g. 413) and closed; prefer its response.
        return match read_response(&mut stream, &target) {
            Ok(response) => Ok(response),
            Err(_) => Err(io_error("sending the request to")(e)),
        };
    }
    // Nothing more to send; a failure here is harmless.
    let _ = stream.shutdown_write();
    read_response(&mut stream, &target)
}

/// Reads a response until the connection closes or its `Content-Length` is complete.
fn read_response(stream: &mut Stream, target: &str) -> Result<(u16, String), ClientError> {
    let deadline = Instant::now() + RESPONSE_DEADLINE;
    let invalid = |reason: String| ClientError::InvalidResponse {
        target: target.to_owned(),
        reason,
    };
    let mut buf: Vec<u8> = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    loop {
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            return Err(ClientError::Timeout(target.to_owned()));
        }
        stream
            .set_timeouts(remaining.min(IO_TIMEOUT))
            .map_err(|source| ClientError::Io {
                context: "configuring the connection to",
                target: target.to_owned(),
                source,
            })?;
        let n = match stream.read(&mut chunk) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return Err(ClientError::Timeout(target.to_owned()));
            }
            Err(source) => {
                return Err(ClientError::Io {
                    context: "reading the response from",
                    target: target.to_owned(),
                    source,
                })
            }
        };
        if buf.len() + n > MAX_RESPONSE_BYTES {
            return Err(ClientError::ResponseTooLarge(target.to_owned()));
        }
        buf.extend_from_slice(&chunk[..n]);
        let eof = n == 0;
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut response = httparse::Response::new(&mut headers);
        match response.parse(&buf) {
            Ok(httparse::Status::Complete(head_len)) => {
                let status = response.code.unwrap_or_default();
                if (100..200).contains(&status) {
                    // An interim response (e.g. 100 Continue): skip it.
                    buf.drain(..head_len);
                    continue;
                }
                let length = content_length(response.headers).map_err(invalid)?;
                let body = &buf[head_len..];
                let complete = match length {
                    Some(length) if body.len() >= length => Some(&body[..length]),
                    Some(_) if eof => {
                        return Err(invalid("connection closed before the body ended".into()))
                    }
                    Some(_) => None,
                    None if eof => Some(body),
                    None => None,
                };
                if let Some(body) = complete {
                    return Ok((status, String::from_utf8_lossy(body).into_owned()));
                }
            }
            Ok(httparse::Status::Partial) if eof => {
                return Err(invalid(if buf.is_empty() {
                    "connection closed without a response".into()
                } else {
                    "connection closed in the response head".into()
                }));
            }
            Ok(httparse::Status::Partial) => {}
            Err(e) => return Err(invalid(e.to_string())),
        }
    }
}

fn content_length(headers: &[httparse::Header<'_>]) -> Result<Option<usize>, String> {
    let mut length = None;
    for header in headers {
        if header.name.eq_ignore_ascii_case("content-length") {
            let value = std::str::from_utf8(header.value)
                .ok()
                .and_then(|v| v.trim().parse::<usize>().ok())
                .ok_or_else(|| "invalid Content-Length".to_owned())?;
            if length.is_some_and(|previous| previous != value) {
                return Err("conflicting Content-Length headers".to_owned());
            }
            length = Some(value);
        }
    }
    Ok(length)
}
