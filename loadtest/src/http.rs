//! A minimal HTTP/1.1 client side over any byte [`Transport`]: writes a `GET` and reads one
//! full response (Content-Length, chunked or close-delimited body, interim 1xx skipped).

use crate::errors::ErrorKind;

/// Largest response head accepted; larger is [`ErrorKind::Protocol`].
pub const MAX_HEAD_BYTES: usize = 64 * 1024;
/// Most response headers accepted.
const MAX_HEADERS: usize = 64;
/// Longest chunk-size or trailer line accepted.
const MAX_LINE_BYTES: usize = 4096;
/// Bytes read from the transport at a time.
pub const READ_BYTES: usize = 16 * 1024;

/// A byte stream whose failures are already classified.
pub trait Transport {
    /// Reads into `buf`; `Ok(0)` is the end of the stream.
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, ErrorKind>;
    /// Writes all of `buf`.
    fn write_all(&mut self, buf: &[u8]) -> Result<(), ErrorKind>;
}

/// A `GET` request head for `path` on `host`; `close` adds `Connection: close`.
pub fn get_request(host: &str, path: &str, close: bool) -> Vec<u8> {
    let connection = if close { "Connection: close\r\n" } else { "" };
    format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: portcullis-loadtest\r\nAccept: */*\r\n{connection}\r\n"
    )
    .into_bytes()
}

/// What one response was.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The final status code.
    pub status: u16,
    /// Body bytes received (after chunk decoding).
    pub body_bytes: u64,
    /// The connection cannot be reused (`Connection: close`, HTTP/1.0, close-delimited body).
    pub close: bool,
}

/// An HTTP/1.1 connection: a transport plus the bytes read but not yet consumed.
#[derive(Debug)]
pub struct HttpConn<T> {
    transport: T,
    buf: Vec<u8>,
    pos: usize,
}

impl<T: Transport> HttpConn<T> {
    /// Wraps a transport.
    pub fn new(transport: T) -> Self {
        Self {
            transport,
            buf: Vec::with_capacity(READ_BYTES),
            pos: 0,
        }
    }

    /// The transport.
    pub fn transport(&self) -> &T {
        &self.transport
    }

    /// Writes `request` and reads the whole response to it.
    pub fn exchange(&mut self, request: &[u8]) -> Result<Response, ErrorKind> {
        self.transport.write_all(request)?;
        self.read_response()
    }

    /// Reads one full response (skipping interim 1xx responses), discarding the body.
    pub fn read_response(&mut self) -> Result<Response, ErrorKind> {
        let mut parser = ResponseParser::new();
        loop {
            let (used, response) = parser.parse(self.available())?;
            self.pos += used;
            if let Some(response) = response {
                return Ok(response);
            }
            if self.fill()? == 0 {
                return parser.eof();
            }
        }
    }

    /// Reads and discards until the peer closes, an error, or 1 MiB (each read bounded by
    /// the transport's timeout).
    pub fn drain(&mut self) {
        let mut total = 0usize;
        while let Ok(n) = self.fill() {
            total += n;
            self.pos = self.buf.len();
            if n == 0 || total > 1 << 20 {
                break;
            }
        }
    }

    fn available(&self) -> &[u8] {
        &self.buf[self.pos..]
    }

    /// Reads more bytes into the buffer; returns how many (0 at the end of the stream).
    fn fill(&mut self) -> Result<usize, ErrorKind> {
        if self.pos > 0 {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        let len = self.buf.len();
        self.buf.resize(len + READ_BYTES, 0);
        let read = self.transport.read(&mut self.buf[len..]);
        let n = *read.as_ref().unwrap_or(&0);
        self.buf.truncate(len + n);
        read
    }
}

/// Where an incremental [`ResponseParser`] is inside a response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Before the end of a (final or interim) response head.
    Head,
    /// `left` bytes of a Content-Length body to go.
    Body { left: u64 },
    /// Before the end of a chunk-size line.
    ChunkSize,
    /// `left` bytes of the current chunk to go.
    ChunkData { left: u64 },
    /// Before the CRLF that ends a chunk's data.
    ChunkEnd,
    /// Before the empty line that ends the trailers.
    Trailers,
    /// A body delimited by the end of the connection.
    UntilClose,
}

/// An incremental parser of one response at a time, for non-blocking connections: it is fed
/// whatever bytes have arrived ([`ResponseParser::parse`]) and says how many it consumed
/// and, once a whole response (interim 1xx responses skipped, body discarded) has been
/// seen, what it was. After a response it is ready for the next one. Malformed input is
/// [`ErrorKind::Protocol`]; it never panics and never needs more than [`MAX_HEAD_BYTES`]
/// of unconsumed input (or 4 KiB inside chunked framing) before deciding.
#[derive(Debug, Clone)]
pub struct ResponseParser {
    state: State,
    status: u16,
    close: bool,
    body_bytes: u64,
}

impl Default for ResponseParser {
    fn default() -> Self {
        Self::new()
    }
}

impl ResponseParser {
    /// A parser waiting for a response head.
    pub fn new() -> Self {
        Self {
            state: State::Head,
            status: 0,
            close: false,
            body_bytes: 0,
        }
    }

    /// Whether the parser is between responses (nothing of the next one seen yet).
    pub fn is_idle(&self) -> bool {
        self.state == State::Head
    }

    /// Consumes what it can of `input`, the bytes received and not consumed yet: returns
    /// how many bytes it consumed and the response if one ended there (bytes after its end
    /// are not consumed). Bytes that are not consumed must be passed again, followed by
    /// new ones.
    pub fn parse(&mut self, input: &[u8]) -> Result<(usize, Option<Response>), ErrorKind> {
        let mut used = 0usize;
        loop {
            let rest = &input[used..];
            match self.state {
                State::Head => {
                    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
                    let mut response = httparse::Response::new(&mut headers);
                    match response.parse(rest) {
                        Ok(httparse::Status::Complete(len)) => {
                            let head = Head::from_parsed(&response)?;
                            used += len;
                            if (100..200).contains(&head.status) && head.status != 101 {
                                continue;
                            }
                            self.status = head.status;
                            self.close = head.close || head.framing == Framing::UntilClose;
                            self.body_bytes = 0;
                            self.state = match head.framing {
                                Framing::None => return Ok((used, Some(self.finish()))),
                                Framing::Length(0) => return Ok((used, Some(self.finish()))),
                                Framing::Length(n) => State::Body { left: n },
                                Framing::Chunked => State::ChunkSize,
                                Framing::UntilClose => State::UntilClose,
                            };
                        }
                        Ok(httparse::Status::Partial) => {
                            if rest.len() > MAX_HEAD_BYTES {
                                return Err(ErrorKind::Protocol);
                            }
                            return Ok((used, None));
                        }
                        Err(_) => return Err(ErrorKind::Protocol),
                    }
                }
                State::Body { left } | State::ChunkData { left } => {
                    if rest.is_empty() {
                        return Ok((used, None));
                    }
                    let take = left.min(rest.len() as u64);
                    // take <= rest.len(), a usize.
                    used += take as usize;
                    self.body_bytes += take;
                    let left = left - take;
                    self.state = match (self.state, left) {
                        (State::Body { .. }, 0) => return Ok((used, Some(self.finish()))),
                        (State::Body { .. }, left) => State::Body { left },
                        (_, 0) => State::ChunkEnd,
                        (_, left) => State::ChunkData { left },
                    };
                }
                State::ChunkSize | State::ChunkEnd | State::Trailers => {
                    let Some(end) = rest.windows(2).position(|w| w == b"\r\n") else {
                        if rest.len() > MAX_LINE_BYTES {
                            return Err(ErrorKind::Protocol);
                        }
                        return Ok((used, None));
                    };
                    let line = &rest[..end];
                    used += end + 2;
                    self.state = match self.state {
                        State::ChunkSize => match parse_chunk_size(line)? {
                            0 => State::Trailers,
                            size => State::ChunkData { left: size },
                        },
                        State::ChunkEnd if line.is_empty() => State::ChunkSize,
                        State::ChunkEnd => return Err(ErrorKind::Protocol),
                        _ if line.is_empty() => return Ok((used, Some(self.finish()))),
                        _ => State::Trailers,
                    };
                }
                State::UntilClose => {
                    self.body_bytes += rest.len() as u64;
                    return Ok((input.len(), None));
                }
            }
        }
    }

    /// The peer ended the stream: the response if its body was delimited by the end of the
    /// connection, else [`ErrorKind::Reset`] (closed before or in the middle of a response).
    pub fn eof(&mut self) -> Result<Response, ErrorKind> {
        if self.state == State::UntilClose {
            Ok(self.finish())
        } else {
            *self = Self::new();
            Err(ErrorKind::Reset)
        }
    }

    /// The response just completed; the parser is ready for the next one.
    fn finish(&mut self) -> Response {
        let response = Response {
            status: self.status,
            body_bytes: self.body_bytes,
            close: self.close,
        };
        *self = Self::new();
        response
    }
}

/// How the body of a response is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    None,
    Length(u64),
    Chunked,
    UntilClose,
}

struct Head {
    status: u16,
    framing: Framing,
    close: bool,
}

impl Head {
    fn from_parsed(response: &httparse::Response<'_, '_>) -> Result<Head, ErrorKind> {
        let status = response.code.ok_or(ErrorKind::Protocol)?;
        let http10 = response.version == Some(0);
        let mut length = None;
        let mut chunked = false;
        let mut close = http10;
        for header in response.headers.iter() {
            let value = std::str::from_utf8(header.value).map_err(|_| ErrorKind::Protocol)?;
            if header.name.eq_ignore_ascii_case("content-length") {
                let n: u64 = value.trim().parse().map_err(|_| ErrorKind::Protocol)?;
                if length.is_some_and(|l| l != n) {
                    return Err(ErrorKind::Protocol);
                }
                length = Some(n);
            } else if header.name.eq_ignore_ascii_case("transfer-encoding") {
                chunked = value
                    .rsplit(',')
                    .next()
                    .is_some_and(|last| last.trim().eq_ignore_ascii_case("chunked"));
            } else if header.name.eq_ignore_ascii_case("connection") {
                for token in value.split(',').map(str::trim) {
                    if token.eq_ignore_ascii_case("close") {
                        close = true;
                    } else if token.eq_ignore_ascii_case("keep-alive") && http10 {
                        close = false;
                    }
                }
            }
        }
        let framing = if (100..200).contains(&status) || status == 204 || status == 304 {
            Framing::None
        } else if chunked {
            Framing::Chunked
        } else if let Some(n) = length {
            Framing::Length(n)
        } else {
            Framing::UntilClose
        };
        Ok(Head {
            status,
            framing,
            close,
        })
    }
}

fn parse_chunk_size(line: &[u8]) -> Result<u64, ErrorKind> {
    let text = std::str::from_utf8(line).map_err(|_| ErrorKind::Protocol)?;
    let hex = text.split(';').next().unwrap_or("").trim();
    if hex.is_empty() || hex.len() > 15 {
        return Err(ErrorKind::Protocol);
    }
    u64::from_str_radix(hex, 16).map_err(|_| ErrorKind::Protocol)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Serves `data` in pieces of `piece` bytes, then EOF; records what is written.
    struct Mem {
        data: Vec<u8>,
        pos: usize,
        piece: usize,
        written: Vec<u8>,
    }

    impl Mem {
        fn new(data: &[u8], piece: usize) -> Self {
            Self {
                data: data.to_vec(),
                pos: 0,
                piece,
                written: Vec::new(),
            }
        }
    }

    impl Transport for Mem {
        fn read(&mut self, buf: &mut [u8]) -> Result<usize, ErrorKind> {
            let n = self.piece.min(buf.len()).min(self.data.len() - self.pos);
            buf[..n].copy_from_slice(&self.data[self.pos..self.pos + n]);
            self.pos += n;
            Ok(n)
        }
        fn write_all(&mut self, buf: &[u8]) -> Result<(), ErrorKind> {
            self.written.extend_from_slice(buf);
            Ok(())
        }
    }

    fn responses(data: &[u8], piece: usize, count: usize) -> Vec<Result<Response, ErrorKind>> {
        let mut conn = HttpConn::new(Mem::new(data, piece));
        (0..count).map(|_| conn.read_response()).collect()
    }

    #[test]
    fn keep_alive_length_and_chunked() {
        let data = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhelloHTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\n\r\n3;x=y\r\nabc\r\n2\r\nde\r\n0\r\nTrailer: 1\r\n\r\nHTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n";
        for piece in [1, 3, 1024] {
            let got = responses(data, piece, 4);
            assert_eq!(
                got[0],
                Ok(Response {
                    status: 200,
                    body_bytes: 5,
                    close: false
                })
            );
            assert_eq!(
                got[1],
                Ok(Response {
                    status: 404,
                    body_bytes: 5,
                    close: false
                })
            );
            assert_eq!(
                got[2],
                Ok(Response {
                    status: 204,
                    body_bytes: 0,
                    close: true
                })
            );
            assert_eq!(got[3], Err(ErrorKind::Reset), "EOF before a response");
        }
    }

    #[test]
    fn close_delimited() {
        let got = responses(b"HTTP/1.0 200 OK\r\n\r\nbody until close", 4, 1);
        assert_eq!(
            got[0],
            Ok(Response {
                status: 200,
                body_bytes: 16,
                close: true
            })
        );
    }

    #[test]
    fn malformed_and_truncated() {
        assert_eq!(
            responses(b"NOT HTTP\r\n\r\n", 64, 1)[0],
            Err(ErrorKind::Protocol)
        );
        assert_eq!(
            responses(b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n", 64, 1)[0],
            Err(ErrorKind::Protocol)
        );
        assert_eq!(
            responses(
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
                64,
                1
            )[0],
            Err(ErrorKind::Protocol)
        );
        assert_eq!(
            responses(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", 64, 1)[0],
            Err(ErrorKind::Reset)
        );
        assert_eq!(
            responses(b"HTTP/1.1 200 OK\r\nContent-Le", 64, 1)[0],
            Err(ErrorKind::Reset)
        );
    }

    #[test]
    fn incremental_parser_stops_at_the_end_of_each_response() {
        let data = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nx\r\n0\r\n\r\nHTTP/1.1 500 Oops\r\n";
        let mut parser = ResponseParser::new();
        assert!(parser.is_idle());
        let (used, first) = parser.parse(data).expect("first");
        assert_eq!(
            first,
            Some(Response {
                status: 200,
                body_bytes: 2,
                close: false
            })
        );
        assert!(parser.is_idle());
        // Byte by byte from there, passing the unconsumed bytes again each time.
        let mut pending: Vec<u8> = Vec::new();
        let mut got = Vec::new();
        for &byte in &data[used..] {
            pending.push(byte);
            let (n, response) = parser.parse(&pending).expect("parse");
            pending.drain(..n);
            got.extend(response);
        }
        assert_eq!(
            got,
            vec![Response {
                status: 200,
                body_bytes: 1,
                close: false
            }]
        );
        assert!(!pending.is_empty(), "the third head is incomplete");
        assert_eq!(parser.eof(), Err(ErrorKind::Reset));
        assert!(parser.is_idle());

        let mut until_close = ResponseParser::new();
        let (n, none) = until_close
            .parse(b"HTTP/1.0 200 OK\r\n\r\nabc")
            .expect("head");
        assert_eq!((n, none), (22, None));
        assert_eq!(
            until_close.eof(),
            Ok(Response {
                status: 200,
                body_bytes: 3,
                close: true
            })
        );
        let mut huge = ResponseParser::new();
        let head = [b'a'; MAX_HEAD_BYTES + 1];
        assert!(huge.parse(b"HTTP/1.1 200 OK\r\nX: ").is_ok());
        let mut long = b"HTTP/1.1 200 OK\r\nX: ".to_vec();
        long.extend_from_slice(&head);
        assert_eq!(huge.parse(&long), Err(ErrorKind::Protocol));
    }

    #[test]
    fn request_head() {
        let mut conn = HttpConn::new(Mem::new(
            b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
            64,
        ));
        let response = conn
            .exchange(&get_request("localhost", "/x?y=1", true))
            .expect("response");
        assert_eq!(response.status, 200);
        assert_eq!(
            String::from_utf8_lossy(&conn.transport().written),
            "GET /x?y=1 HTTP/1.1\r\nHost: localhost\r\nUser-Agent: portcullis-loadtest\r\nAccept: */*\r\nConnection: close\r\n\r\n"
        );
    }
}
