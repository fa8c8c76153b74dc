//! A small HTTP/1.1 origin server on std threads, used by `portcullis demo`
//! and by end-to-end tests.
//!
//! One accept thread plus one thread per connection. Connections are
//! keep-alive by default (HTTP/1.1), honour `Connection: close`, allow at most
//! [`MAX_HEAD_BYTES`] of request head (larger → `431`) and time out after
//! [`READ_TIMEOUT`] without data.
//!
//! Endpoints:
//! - `GET /download?bytes=N[&chunked=1]`: `N` bytes of [`pattern_byte`],
//!   with `Content-Length` or (with `chunked=1`) chunked in 64 KiB chunks.
//! - `POST|PUT /upload`: streams the body (`Content-Length` or chunked,
//!   `Expect: 100-continue` honoured) and answers `bytes=<n> sha256=<hex>\n`.
//! - `GET /status/<code>`: answers with that status (200..=599).
//! - anything else: `200 text/plain` whose body is the request line followed
//!   by every received header as `Name: value\n`, in the order received.

use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// Largest request head (request line + headers) accepted; larger gets `431`.
pub const MAX_HEAD_BYTES: usize = 64 * 1024;
/// Per-connection read timeout.
pub const READ_TIMEOUT: Duration = Duration::from_secs(30);
/// Size of the pieces downloads are written in (and of download chunks).
pub const PIECE_BYTES: usize = 64 * 1024;
/// Maximum number of request headers.
const MAX_HEADERS: usize = 128;
/// Longest chunk-size or trailer line accepted in a chunked request body.
const MAX_LINE_BYTES: usize = 8 * 1024;
/// How long [`Drop`] waits for the accept thread to exit.
const DROP_JOIN_TIMEOUT: Duration = Duration::from_secs(2);

/// The byte at offset `i` of every `/download` response body.
pub fn pattern_byte(i: u64) -> u8 {
    (i.wrapping_mul(31).wrapping_add(7) % 251) as u8
}

/// A running demo origin server; stops accepting when dropped.
#[derive(Debug)]
pub struct DemoOrigin {
    addr: SocketAddr,
    shutdown: Arc<AtomicBool>,
    served: Arc<AtomicU64>,
    accept: Option<JoinHandle<()>>,
}

impl DemoOrigin {
    /// Binds `addr` (port 0 picks a free port) and starts serving on a
    /// background accept thread, one thread per connection.
    pub fn start(addr: SocketAddr) -> io::Result<DemoOrigin> {
        let listener = TcpListener::bind(addr)?;
        let addr = listener.local_addr()?;
        let shutdown = Arc::new(AtomicBool::new(false));
        let served = Arc::new(AtomicU64::new(0));
        let accept = {
            let shutdown = Arc::clone(&shutdown);
            let served = Arc::clone(&served);
            thread::Builder::new()
                .name("demo-origin-accept".to_owned())
                .spawn(move || accept_loop(listener, shutdown, served))?
        };
        Ok(DemoOrigin {
            addr,
            shutdown,
            served,
            accept: Some(accept),
        })
    }

    /// The address the server listens on (with the real port if 0 was given).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Number of responses (final, not `100 Continue`) fully written so far.
    pub fn requests_served(&self) -> u64 {
        self.served.load(Ordering::Relaxed)
    }
}

impl Drop for DemoOrigin {
    /// Stops accepting (flag + a wake-up connection) and waits up to two
    /// seconds for the accept thread. Open connections finish their current
    /// request and then close.
    fn drop(&mut self) {
        self.shutdown.store(true, Ordering::SeqCst);
        let mut wake = self.addr;
        if wake.ip().is_unspecified() {
            wake.set_ip(match wake.ip() {
                IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
                IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::LOCALHOST),
            });
        }
        // Failure to connect is fine: the accept loop may already be gone.
        let _ = TcpStream::connect_timeout(&wake, Duration::from_secs(1));
        if let Some(handle) = self.accept.take() {
            let deadline = Instant::now() + DROP_JOIN_TIMEOUT;
            while !handle.is_finished() && Instant::now() < deadline {
                thread::sleep(Duration::from_millis(5));
            }
            if handle.is_finished() {
                let _ = handle.join();
            }
        }
    }
}

fn accept_loop(listener: TcpListener, shutdown: Arc<AtomicBool>, served: Arc<AtomicU64>) {
    for stream in listener.incoming() {
        if shutdown.load(Ordering::SeqCst) {
            break;
        }
        match stream {
            Ok(stream) => {
                let shutdown = Arc::clone(&shutdown);
                let served = Arc::clone(&served);
                // If the thread cannot be spawned the connection is dropped.
                let _ = thread::Builder::new()
                    .name("demo-origin-conn".to_owned())
                    .spawn(move || {
                        let _ = serve_connection(stream, &shutdown, &served);
                    });
            }
            // E.g. EMFILE: back off instead of spinning.
            Err(_) => thread::sleep(Duration::from_millis(10)),
        }
    }
}

/// How the request body is framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BodyFraming {
    Length(u64),
    Chunked,
}

/// A parsed request head.
#[derive(Debug)]
struct RequestHead {
    /// The request line exactly as received (without CR LF).
    request_line: String,
    method: String,
    target: String,
    /// HTTP/1.x minor version.
    minor_version: u8,
    /// Header names and values as received.
    headers: Vec<(String, Vec<u8>)>,
}

impl RequestHead {
    fn header_values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.headers
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_slice())
    }

    /// Comma-separated tokens of all `name` headers, lower-cased and trimmed.
    fn tokens(&self, name: &str) -> Vec<String> {
        self.header_values(name)
            .flat_map(|v| {
                String::from_utf8_lossy(v)
                    .split(',')
                    .map(|t| t.trim().to_ascii_lowercase())
                    .collect::<Vec<_>>()
            })
            .filter(|t| !t.is_empty())
            .collect()
    }

    fn keep_alive(&self) -> bool {
        let connection = self.tokens("connection");
        if connection.iter().any(|t| t == "close") {
            false
        } else if self.minor_version == 0 {
            connection.iter().any(|t| t == "keep-alive")
        } else {
            true
        }
    }

    fn framing(&self) -> Result<BodyFraming, &'static str> {
        let te = self.tokens("transfer-encoding");
        if !te.is_empty() {
            return if te.last().map(String::as_str) == Some("chunked") {
                Ok(BodyFraming::Chunked)
            } else {
                Err("unsupported transfer-encoding")
            };
        }
        let mut length = None;
        for value in self.header_values("content-length") {
            let text = std::str::from_utf8(value).map_err(|_| "bad content-length")?;
            let text = text.trim();
            if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
                return Err("bad content-length");
            }
            let n: u64 = text.parse().map_err(|_| "bad content-length")?;
            if length.is_some_and(|l| l != n) {
                return Err("conflicting content-length");
            }
            length = Some(n);
        }
        Ok(BodyFraming::Length(length.unwrap_or(0)))
    }

    fn expects_continue(&self) -> bool {
        self.minor_version >= 1
            && self
                .header_values("expect")
                .any(|v| v.trim_ascii().eq_ignore_ascii_case(b"100-continue"))
    }
}

/// Why reading a request failed.
#[derive(Debug)]
enum ReadError {
    /// The peer closed cleanly between requests.
    Closed,
    /// The peer sent something we reject with this status; then close.
    Reject(u16, &'static str),
    /// I/O failure (including timeouts and mid-request EOF).
    Io(io::Error),
}

impl From<io::Error> for ReadError {
    fn from(e: io::Error) -> Self {
        ReadError::Io(e)
    }
}

/// A connection with a read buffer.
struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
    start: usize,
    end: usize,
}

impl Conn {
    fn new(stream: TcpStream) -> Conn {
        Conn {
            stream,
            buf: vec![0; MAX_HEAD_BYTES + PIECE_BYTES],
            start: 0,
            end: 0,
        }
    }

    fn buffered(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }

    fn consume(&mut self, n: usize) {
        self.start += n.min(self.end - self.start);
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
    }

    /// Reads more data into the buffer; returns the number of bytes read
    /// (0 at EOF or when the buffer is full).
    fn fill(&mut self) -> io::Result<usize> {
        if self.end == self.buf.len() && self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        if self.end == self.buf.len() {
            return Ok(0);
        }
        loop {
            match self.stream.read(&mut self.buf[self.end..]) {
                Ok(n) => {
                    self.end += n;
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// Ensures at least one byte is buffered; EOF is an error.
    fn fill_some(&mut self) -> io::Result<()> {
        if self.start == self.end && self.fill()? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        Ok(())
    }

    fn read_head(&mut self) -> Result<RequestHead, ReadError> {
        loop {
            if self.start < self.end {
                let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
                let mut req = httparse::Request::new(&mut headers);
                let data = &self.buf[self.start..self.end];
                match req.parse(data) {
                    Ok(httparse::Status::Complete(len)) => {
                        if len > MAX_HEAD_BYTES {
                            return Err(ReadError::Reject(431, "request header too large\n"));
                        }
                        let line_end = data.iter().position(|&b| b == b'\n').unwrap_or(0);
                        let line = data[..line_end]
                            .strip_suffix(b"\r")
                            .unwrap_or(&data[..line_end]);
                        let head = RequestHead {
                            request_line: String::from_utf8_lossy(line).into_owned(),
                            method: req.method.unwrap_or_default().to_owned(),
                            target: req.path.unwrap_or_default().to_owned(),
                            minor_version: req.version.unwrap_or(1),
                            headers: req
                                .headers
                                .iter()
                                .map(|h| (h.name.to_owned(), h.value.to_vec()))
                                .collect(),
                        };
                        self.consume(len);
                        return Ok(head);
                    }
                    Ok(httparse::Status::Partial) => {
                        if self.end - self.start >= MAX_HEAD_BYTES {
                            return Err(ReadError::Reject(431, "request header too large\n"));
                        }
                    }
                    Err(httparse::Error::TooManyHeaders) => {
                        return Err(ReadError::Reject(431, "too many request headers\n"));
                    }
                    Err(_) => return Err(ReadError::Reject(400, "malformed request\n")),
                }
            }
            let had_data = self.start < self.end;
            if self.fill()? == 0 {
                return Err(if had_data {
                    ReadError::Io(io::ErrorKind::UnexpectedEof.into())
                } else {
                    ReadError::Closed
                });
            }
        }
    }

    /// Reads one line (up to LF, bounded) and returns it without CR LF.
    fn read_line(&mut self) -> Result<Vec<u8>, ReadError> {
        loop {
            if let Some(pos) = self.buffered().iter().position(|&b| b == b'\n') {
                let line = self.buffered()[..pos].to_vec();
                self.consume(pos + 1);
                let line = match line.strip_suffix(b"\r") {
                    Some(l) => l.to_vec(),
                    None => line,
                };
                return Ok(line);
            }
            if self.end - self.start > MAX_LINE_BYTES {
                return Err(ReadError::Reject(400, "chunk line too long\n"));
            }
            if self.fill()? == 0 {
                return Err(ReadError::Io(io::ErrorKind::UnexpectedEof.into()));
            }
        }
    }

    /// Streams exactly `n` body bytes to `sink`.
    fn read_exact_to(&mut self, mut n: u64, sink: &mut dyn FnMut(&[u8])) -> io::Result<()> {
        while n > 0 {
            self.fill_some()?;
            let take = self
                .buffered()
                .len()
                .min(usize::try_from(n).unwrap_or(usize::MAX));
            sink(&self.buffered()[..take]);
            self.consume(take);
            n -= take as u64;
        }
        Ok(())
    }

    /// Streams the request body to `sink`.
    fn read_body(
        &mut self,
        framing: BodyFraming,
        sink: &mut dyn FnMut(&[u8]),
    ) -> Result<(), ReadError> {
        match framing {
            BodyFraming::Length(n) => Ok(self.read_exact_to(n, sink)?),
            BodyFraming::Chunked => {
                loop {
                    let line = self.read_line()?;
                    let size_text = line.split(|&b| b == b';').next().unwrap_or_default();
                    let size_text = std::str::from_utf8(size_text)
                        .map_err(|_| ReadError::Reject(400, "bad chunk size\n"))?
                        .trim();
                    let size = u64::from_str_radix(size_text, 16)
                        .map_err(|_| ReadError::Reject(400, "bad chunk size\n"))?;
                    if size == 0 {
                        break;
                    }
                    self.read_exact_to(size, sink)?;
                    if !self.read_line()?.is_empty() {
                        return Err(ReadError::Reject(400, "missing CRLF after chunk\n"));
                    }
                }
                // Trailers, up to the empty line.
                let mut trailer_bytes = 0usize;
                loop {
                    let line = self.read_line()?;
                    if line.is_empty() {
                        return Ok(());
                    }
                    trailer_bytes += line.len();
                    if trailer_bytes > MAX_HEAD_BYTES {
                        return Err(ReadError::Reject(431, "trailers too large\n"));
                    }
                }
            }
        }
    }
}

/// A small in-memory response.
struct Response {
    status: u16,
    content_type: &'static str,
    body: Vec<u8>,
}

impl Response {
    fn text(status: u16, body: impl Into<Vec<u8>>) -> Response {
        Response {
            status,
            content_type: "text/plain",
            body: body.into(),
        }
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        206 => "Partial Content",
        301 => "Moved Permanently",
        302 => "Found",
        304 => "Not Modified",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        413 => "Content Too Large",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Status",
    }
}

fn status_line_and_connection(status: u16, keep_alive: bool) -> String {
    let mut head = format!("HTTP/1.1 {status} {}\r\n", reason(status));
    if !keep_alive {
        head.push_str("Connection: close\r\n");
    }
    head
}

/// Writes a complete in-memory response.
fn write_response(
    stream: &mut TcpStream,
    resp: &Response,
    keep_alive: bool,
    head_only: bool,
) -> io::Result<()> {
    let mut out = status_line_and_connection(resp.status, keep_alive).into_bytes();
    let no_body = resp.status == 204 || resp.status == 304 || (100..200).contains(&resp.status);
    if !no_body {
        out.extend_from_slice(
            format!(
                "Content-Type: {}\r\nContent-Length: {}\r\n",
                resp.content_type,
                resp.body.len()
            )
            .as_bytes(),
        );
    }
    out.extend_from_slice(b"\r\n");
    if !no_body && !head_only {
        out.extend_from_slice(&resp.body);
    }
    stream.write_all(&out)?;
    stream.flush()
}

/// Writes a `/download` response: `bytes` pattern bytes, in 64 KiB pieces.
fn write_download(
    stream: &mut TcpStream,
    bytes: u64,
    chunked: bool,
    keep_alive: bool,
    head_only: bool,
) -> io::Result<()> {
    let mut head = status_line_and_connection(200, keep_alive);
    head.push_str("Content-Type: application/octet-stream\r\n");
    if chunked {
        head.push_str("Transfer-Encoding: chunked\r\n\r\n");
    } else {
        head.push_str(&format!("Content-Length: {bytes}\r\n\r\n"));
    }
    stream.write_all(head.as_bytes())?;
    if head_only {
        return stream.flush();
    }
    let mut piece = vec![0u8; PIECE_BYTES];
    let mut offset = 0u64;
    while offset < bytes {
        let len = usize::try_from(bytes - offset)
            .unwrap_or(PIECE_BYTES)
            .min(PIECE_BYTES);
        for (k, b) in piece[..len].iter_mut().enumerate() {
            *b = pattern_byte(offset + k as u64);
        }
        if chunked {
            stream.write_all(format!("{len:x}\r\n").as_bytes())?;
            stream.write_all(&piece[..len])?;
            stream.write_all(b"\r\n")?;
        } else {
            stream.write_all(&piece[..len])?;
        }
        offset += len as u64;
    }
    if chunked {
        stream.write_all(b"0\r\n\r\n")?;
    }
    stream.flush()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Parses the `/download` query string into (bytes, chunked).
fn parse_download_query(query: &str) -> Option<(u64, bool)> {
    let mut bytes = None;
    let mut chunked = false;
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        match key {
            "bytes" => bytes = Some(value.parse::<u64>().ok()?),
            "chunked" => chunked = matches!(value, "1" | "true" | "yes"),
            _ => {}
        }
    }
    Some((bytes?, chunked))
}

/// The echo body: request line, then every header as received.
fn echo_body(head: &RequestHead) -> Vec<u8> {
    let mut body = Vec::with_capacity(256);
    body.extend_from_slice(head.request_line.as_bytes());
    body.push(b'\n');
    for (name, value) in &head.headers {
        body.extend_from_slice(name.as_bytes());
        body.extend_from_slice(b": ");
        body.extend_from_slice(value);
        body.push(b'\n');
    }
    body
}

fn serve_connection(
    stream: TcpStream,
    shutdown: &AtomicBool,
    served: &AtomicU64,
) -> io::Result<()> {
    stream.set_read_timeout(Some(READ_TIMEOUT))?;
    stream.set_write_timeout(Some(READ_TIMEOUT))?;
    stream.set_nodelay(true)?;
    let mut conn = Conn::new(stream);
    loop {
        let head = match conn.read_head() {
            Ok(head) => head,
            Err(ReadError::Closed) => return Ok(()),
            Err(ReadError::Io(e)) => return Err(e),
            Err(ReadError::Reject(status, msg)) => {
                served.fetch_add(1, Ordering::Relaxed);
                write_response(&mut conn.stream, &Response::text(status, msg), false, false)?;
                let _ = conn.stream.shutdown(Shutdown::Write);
                return Ok(());
            }
        };
        let keep_alive =
            handle_request(&mut conn, &head, served)? && !shutdown.load(Ordering::SeqCst);
        if !keep_alive {
            let _ = conn.stream.shutdown(Shutdown::Write);
            return Ok(());
        }
    }
}

/// Handles one request whose head has been read; returns whether the
/// connection may be kept open.
fn handle_request(conn: &mut Conn, head: &RequestHead, served: &AtomicU64) -> io::Result<bool> {
    let mut keep_alive = head.keep_alive();
    let head_only = head.method == "HEAD";
    let framing = match head.framing() {
        Ok(f) => f,
        Err(msg) => {
            served.fetch_add(1, Ordering::Relaxed);
            write_response(
                &mut conn.stream,
                &Response::text(400, format!("{msg}\n")),
                false,
                false,
            )?;
            return Ok(false);
        }
    };
    if framing != BodyFraming::Length(0) && head.expects_continue() {
        conn.stream.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?;
    }

    let (path, query) = head.target.split_once('?').unwrap_or((&head.target, ""));
    let is_upload = path == "/upload" && (head.method == "POST" || head.method == "PUT");

    // Read (or discard) the body first so the connection stays in sync.
    let mut hasher = boring::sha::Sha256::new();
    let mut count = 0u64;
    let body_result = if is_upload {
        conn.read_body(framing, &mut |data| {
            hasher.update(data);
            count += data.len() as u64;
        })
    } else {
        conn.read_body(framing, &mut |_| {})
    };
    match body_result {
        Ok(()) => {}
        Err(ReadError::Reject(status, msg)) => {
            served.fetch_add(1, Ordering::Relaxed);
            write_response(&mut conn.stream, &Response::text(status, msg), false, false)?;
            return Ok(false);
        }
        Err(ReadError::Closed) => return Ok(false),
        Err(ReadError::Io(e)) => return Err(e),
    }
    // Counted before the response is written, so a client that has read its response always
    // sees it counted.
    served.fetch_add(1, Ordering::Relaxed);

    if path == "/download" && (head.method == "GET" || head_only) {
        match parse_download_query(query) {
            Some((bytes, chunked)) => {
                write_download(&mut conn.stream, bytes, chunked, keep_alive, head_only)?;
            }
            None => {
                keep_alive = false;
                let resp = Response::text(400, "usage: /download?bytes=N[&chunked=1]\n");
                write_response(&mut conn.stream, &resp, keep_alive, head_only)?;
            }
        }
    } else {
        let resp = if is_upload {
            Response::text(
                200,
                format!("bytes={count} sha256={}\n", hex(&hasher.finish())),
            )
        } else if let Some(code) = path.strip_prefix("/status/") {
            match code.parse::<u16>() {
                Ok(code) if (200..=599).contains(&code) => {
                    Response::text(code, format!("status {code}\n"))
                }
                _ => Response::text(400, "usage: /status/<200..=599>\n"),
            }
        } else {
            Response::text(200, echo_body(head))
        };
        write_response(&mut conn.stream, &resp, keep_alive, head_only)?;
    }
    Ok(keep_alive)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader};

    struct Resp {
        status: u16,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
        /// Sizes of the chunks, if the body was chunked.
        chunks: Vec<usize>,
    }

    impl Resp {
        fn header(&self, name: &str) -> Option<&str> {
            self.headers
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str())
        }
    }

    fn line(r: &mut BufReader<TcpStream>) -> String {
        let mut s = String::new();
        r.read_line(&mut s).unwrap();
        assert!(s.ends_with("\r\n"), "bad line {s:?}");
        s.truncate(s.len() - 2);
        s
    }

    fn read_resp(r: &mut BufReader<TcpStream>, head_request: bool) -> Resp {
        let status_line = line(r);
        let mut parts = status_line.splitn(3, ' ');
        assert_eq!(parts.next(), Some("HTTP/1.1"));
        let status: u16 = parts.next().unwrap().parse().unwrap();
        let mut headers = Vec::new();
        loop {
            let l = line(r);
            if l.is_empty() {
                break;
            }
            let (n, v) = l.split_once(": ").unwrap();
            headers.push((n.to_owned(), v.to_owned()));
        }
        let mut resp = Resp {
            status,
            headers,
            body: Vec::new(),
            chunks: Vec::new(),
        };
        if head_request || status == 204 || status == 304 || status == 100 {
            return resp;
        }
        if resp.header("transfer-encoding") == Some("chunked") {
            loop {
                let size = usize::from_str_radix(&line(r), 16).unwrap();
                if size == 0 {
                    assert_eq!(line(r), "");
                    break;
                }
                resp.chunks.push(size);
                let start = resp.body.len();
                resp.body.resize(start + size, 0);
                r.read_exact(&mut resp.body[start..]).unwrap();
                assert_eq!(line(r), "");
            }
        } else {
            let n: usize = resp.header("content-length").unwrap().parse().unwrap();
            resp.body.resize(n, 0);
            r.read_exact(&mut resp.body).unwrap();
        }
        resp
    }

    fn connect(origin: &DemoOrigin) -> (TcpStream, BufReader<TcpStream>) {
        let s = TcpStream::connect(origin.addr()).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let r = BufReader::new(s.try_clone().unwrap());
        (s, r)
    }

    fn request(origin: &DemoOrigin, raw: &[u8]) -> Resp {
        let (mut s, mut r) = connect(origin);
        s.write_all(raw).unwrap();
        read_resp(&mut r, raw.starts_with(b"HEAD "))
    }

    fn assert_closed(r: &mut BufReader<TcpStream>) {
        let mut rest = Vec::new();
        assert_eq!(r.read_to_end(&mut rest).unwrap(), 0, "{rest:?}");
    }

    fn start() -> DemoOrigin {
        DemoOrigin::start("127.0.0.1:0".parse().unwrap()).unwrap()
    }

    fn pattern(n: u64) -> Vec<u8> {
        (0..n).map(pattern_byte).collect()
    }

    #[test]
    fn pattern_values() {
        assert_eq!(pattern_byte(0), 7);
        assert_eq!(pattern_byte(1), 38);
        assert_eq!(pattern_byte(8), 4); // 255 % 251
        assert_eq!(pattern_byte(251), 7);
        assert!((0..10_000).all(|i| pattern_byte(i) < 251));
    }

    #[test]
    fn download_content_length() {
        let origin = start();
        assert_eq!(origin.requests_served(), 0);
        let n = 3 * PIECE_BYTES as u64 + 12_345;
        let resp = request(
            &origin,
            format!("GET /download?bytes={n} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        );
        assert_eq!(resp.status, 200);
        assert_eq!(resp.header("content-length"), Some(n.to_string().as_str()));
        assert_eq!(
            resp.header("content-type"),
            Some("application/octet-stream")
        );
        assert_eq!(resp.body.len() as u64, n);
        assert!(resp.body == pattern(n));
        assert_eq!(origin.requests_served(), 1);

        let resp = request(&origin, b"GET /download?bytes=0 HTTP/1.1\r\n\r\n");
        assert_eq!(resp.status, 200);
        assert_eq!(resp.header("content-length"), Some("0"));
        let resp = request(&origin, b"GET /download?bytes=lots HTTP/1.1\r\n\r\n");
        assert_eq!(resp.status, 400);
        let resp = request(&origin, b"GET /download HTTP/1.1\r\n\r\n");
        assert_eq!(resp.status, 400);
    }

    #[test]
    fn download_chunked() {
        let origin = start();
        let n = 2 * PIECE_BYTES as u64 + 100;
        let resp = request(
            &origin,
            format!("GET /download?chunked=1&bytes={n} HTTP/1.1\r\n\r\n").as_bytes(),
        );
        assert_eq!(resp.status, 200);
        assert_eq!(resp.header("transfer-encoding"), Some("chunked"));
        assert_eq!(resp.header("content-length"), None);
        assert_eq!(resp.chunks, vec![PIECE_BYTES, PIECE_BYTES, 100]);
        assert!(resp.body == pattern(n));

        let resp = request(&origin, b"GET /download?bytes=0&chunked=1 HTTP/1.1\r\n\r\n");
        assert_eq!(resp.status, 200);
        assert!(resp.chunks.is_empty() && resp.body.is_empty());
    }

    #[test]
    fn head_download_has_no_body_and_keeps_alive() {
        let origin = start();
        let (mut s, mut r) = connect(&origin);
        s.write_all(b"HEAD /download?bytes=1000 HTTP/1.1\r\n\r\n")
            .unwrap();
        let resp = read_resp(&mut r, true);
        assert_eq!(resp.header("content-length"), Some("1000"));
        s.write_all(b"GET /status/201 HTTP/1.1\r\n\r\n").unwrap();
        assert_eq!(read_resp(&mut r, false).status, 201);
    }

    fn sha_hex(data: &[u8]) -> String {
        hex(&boring::sha::sha256(data))
    }

    #[test]
    fn upload_content_length() {
        let origin = start();
        let body = pattern(200_000);
        let mut raw = format!(
            "PUT /upload HTTP/1.1\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .into_bytes();
        raw.extend_from_slice(&body);
        let resp = request(&origin, &raw);
        assert_eq!(resp.status, 200);
        let expected = format!("bytes=200000 sha256={}\n", sha_hex(&body));
        assert_eq!(String::from_utf8(resp.body).unwrap(), expected);

        let resp = request(
            &origin,
            b"POST /upload HTTP/1.1\r\nContent-Length: 0\r\n\r\n",
        );
        assert_eq!(
            String::from_utf8(resp.body).unwrap(),
            format!("bytes=0 sha256={}\n", sha_hex(b""))
        );
    }

    #[test]
    fn upload_chunked_with_expect_continue() {
        let origin = start();
        let body = pattern(100_003);
        let (mut s, mut r) = connect(&origin);
        s.write_all(
            b"POST /upload?x=1 HTTP/1.1\r\nTransfer-Encoding: chunked\r\nExpect: 100-continue\r\n\r\n",
        )
        .unwrap();
        let interim = read_resp(&mut r, false);
        assert_eq!(interim.status, 100);
        // Irregular chunk sizes, a chunk extension and a trailer.
        let mut raw = Vec::new();
        let mut rest = &body[..];
        for size in [1usize, 70_000, 17, 20_000] {
            let (chunk, tail) = rest.split_at(size.min(rest.len()));
            raw.extend_from_slice(format!("{:X};ext=1\r\n", chunk.len()).as_bytes());
            raw.extend_from_slice(chunk);
            raw.extend_from_slice(b"\r\n");
            rest = tail;
        }
        raw.extend_from_slice(format!("{:x}\r\n", rest.len()).as_bytes());
        raw.extend_from_slice(rest);
        raw.extend_from_slice(b"\r\n0\r\nX-Trailer: t\r\n\r\n");
        s.write_all(&raw).unwrap();
        let resp = read_resp(&mut r, false);
        assert_eq!(resp.status, 200);
        assert_eq!(
            String::from_utf8(resp.body).unwrap(),
            format!("bytes=100003 sha256={}\n", sha_hex(&body))
        );
        // The connection is still usable afterwards.
        s.write_all(b"GET /status/202 HTTP/1.1\r\n\r\n").unwrap();
        assert_eq!(read_resp(&mut r, false).status, 202);
    }

    #[test]
    fn bad_chunked_body_is_rejected() {
        let origin = start();
        let (mut s, mut r) = connect(&origin);
        s.write_all(b"POST /upload HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n")
            .unwrap();
        assert_eq!(read_resp(&mut r, false).status, 400);
        assert_closed(&mut r);
    }

    #[test]
    fn status_endpoint() {
        let origin = start();
        let resp = request(&origin, b"GET /status/404 HTTP/1.1\r\n\r\n");
        assert_eq!(resp.status, 404);
        assert_eq!(resp.body, b"status 404\n");
        let resp = request(&origin, b"GET /status/503 HTTP/1.1\r\n\r\n");
        assert_eq!(resp.status, 503);
        assert_eq!(
            request(&origin, b"GET /status/abc HTTP/1.1\r\n\r\n").status,
            400
        );
        assert_eq!(
            request(&origin, b"GET /status/99 HTTP/1.1\r\n\r\n").status,
            400
        );

        // 204 has no body; the next response on the connection parses.
        let (mut s, mut r) = connect(&origin);
        s.write_all(b"GET /status/204 HTTP/1.1\r\n\r\nGET /status/200 HTTP/1.1\r\n\r\n")
            .unwrap();
        let first = read_resp(&mut r, false);
        assert_eq!(first.status, 204);
        assert_eq!(first.header("content-length"), None);
        let second = read_resp(&mut r, false);
        assert_eq!(second.status, 200);
        assert_eq!(second.body, b"status 200\n");
    }

    #[test]
    fn echo_reports_request_line_and_headers_as_received() {
        let origin = start();
        let resp = request(
            &origin,
            b"GET /some/path?q=1 HTTP/1.1\r\nHost: example.test\r\nCloudFront-Viewer-Cert-Serial: 0a:0b\r\nx-lower: MiXeD Value\r\nx-lower: second\r\n\r\n",
        );
        assert_eq!(resp.status, 200);
        assert_eq!(resp.header("content-type"), Some("text/plain"));
        assert_eq!(
            String::from_utf8(resp.body).unwrap(),
            "GET /some/path?q=1 HTTP/1.1\nHost: example.test\nCloudFront-Viewer-Cert-Serial: 0a:0b\nx-lower: MiXeD Value\nx-lower: second\n"
        );
        // GET /upload is not an upload.
        let resp = request(&origin, b"GET /upload HTTP/1.1\r\n\r\n");
        assert_eq!(resp.body, b"GET /upload HTTP/1.1\n");
        // A request body on the echo endpoint is discarded, not echoed.
        let resp = request(
            &origin,
            b"POST /echo HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello",
        );
        assert_eq!(resp.body, b"POST /echo HTTP/1.1\nContent-Length: 5\n");
    }

    #[test]
    fn keep_alive_and_connection_close() {
        let origin = start();
        let (mut s, mut r) = connect(&origin);
        s.write_all(b"GET /one HTTP/1.1\r\n\r\n").unwrap();
        let first = read_resp(&mut r, false);
        assert_eq!(first.body, b"GET /one HTTP/1.1\n");
        assert_eq!(first.header("connection"), None);
        s.write_all(b"GET /two HTTP/1.1\r\n\r\n").unwrap();
        assert_eq!(read_resp(&mut r, false).body, b"GET /two HTTP/1.1\n");
        s.write_all(b"GET /three HTTP/1.1\r\nConnection: close\r\n\r\n")
            .unwrap();
        let third = read_resp(&mut r, false);
        assert_eq!(third.header("connection"), Some("close"));
        assert_closed(&mut r);
        assert_eq!(origin.requests_served(), 3);

        // HTTP/1.0 defaults to close.
        let (mut s, mut r) = connect(&origin);
        s.write_all(b"GET /old HTTP/1.0\r\n\r\n").unwrap();
        assert_eq!(read_resp(&mut r, false).header("connection"), Some("close"));
        assert_closed(&mut r);
    }

    #[test]
    fn oversized_head_gets_431() {
        let origin = start();
        let (mut s, mut r) = connect(&origin);
        let mut raw = b"GET / HTTP/1.1\r\n".to_vec();
        let filler = "a".repeat(1000);
        for i in 0..70 {
            raw.extend_from_slice(format!("X-Filler-{i}: {filler}\r\n").as_bytes());
        }
        raw.extend_from_slice(b"\r\n");
        // The server may close before reading everything.
        let _ = s.write_all(&raw);
        let resp = read_resp(&mut r, false);
        assert_eq!(resp.status, 431);
        assert_eq!(resp.header("connection"), Some("close"));

        let resp = request(&origin, b"BAD\x01 / HTTP/1.1\r\n\r\n");
        assert_eq!(resp.status, 400);
    }

    #[test]
    fn drop_stops_listening() {
        let origin = start();
        let addr = origin.addr();
        assert_eq!(request(&origin, b"GET / HTTP/1.1\r\n\r\n").status, 200);
        let started = Instant::now();
        drop(origin);
        assert!(started.elapsed() < Duration::from_secs(2));
        assert!(TcpStream::connect(addr).is_err());
    }
}
