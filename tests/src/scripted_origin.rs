//! An origin whose behaviour each test writes: a real TCP server on 127.0.0.1 that runs a
//! handler per connection on its own thread, for origins that misbehave on purpose (late
//! responses, bytes past a Content-Length, closing without answering, never reading).

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Longest time any read of the origin waits (every read is bounded).
const READ_TIMEOUT: Duration = Duration::from_secs(20);

/// What a connection's handler gets: the socket, its number (from 0) and the shared journal.
pub struct OriginConn {
    /// The accepted socket.
    pub stream: TcpStream,
    /// Which connection this is, in accept order from 0.
    pub index: usize,
    buf: Vec<u8>,
    journal: Journal,
}

/// A request as the origin received it.
#[derive(Debug, Clone)]
pub struct OriginRequest {
    /// The request line, e.g. `GET /a HTTP/1.1`.
    pub line: String,
    /// The head's header lines, as received.
    pub headers: Vec<(String, String)>,
    /// The raw bytes of the head, final empty line included.
    pub head: Vec<u8>,
    /// The body read per `Content-Length` (a chunked body is left in the connection).
    pub body: Vec<u8>,
    /// Which connection carried it.
    pub connection: usize,
}

impl OriginRequest {
    /// The request target.
    pub fn path(&self) -> &str {
        self.line.split(' ').nth(1).unwrap_or("")
    }

    /// Every value of a header (case-insensitive name).
    pub fn header_values(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

/// What the origin saw, shared by its handlers and the test.
#[derive(Clone, Default)]
pub struct Journal {
    requests: Arc<Mutex<Vec<OriginRequest>>>,
    events: Arc<Mutex<Vec<String>>>,
}

impl Journal {
    /// Every request read so far, in order.
    pub fn requests(&self) -> Vec<OriginRequest> {
        self.requests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Records a free-form event (e.g. "conn 0 closed by the proxy").
    pub fn note(&self, event: impl Into<String>) {
        self.events
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(event.into());
    }

    /// The events recorded so far.
    pub fn events(&self) -> Vec<String> {
        self.events
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Waits (at most `limit`) until `event` was recorded.
    pub fn wait_for(&self, event: &str, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        loop {
            if self.events().iter().any(|e| e == event) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl OriginConn {
    /// Reads the next request head and its Content-Length body. None when the proxy closed
    /// the connection (or it failed) before a complete head.
    pub fn read_request(&mut self) -> Option<OriginRequest> {
        let head_len = loop {
            if let Some(end) = find(&self.buf, b"\r\n\r\n") {
                break end + 4;
            }
            if !self.fill().ok()? {
                return None;
            }
        };
        let head: Vec<u8> = self.buf.drain(..head_len).collect();
        let text = String::from_utf8_lossy(&head).into_owned();
        let mut lines = text.split("\r\n");
        let line = lines.next().unwrap_or_default().to_owned();
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
            .collect();
        let length = headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
            .and_then(|(_, v)| v.parse::<usize>().ok())
            .unwrap_or(0);
        while self.buf.len() < length {
            if !self.fill().ok()? {
                return None;
            }
        }
        let body = self.buf.drain(..length).collect();
        let request = OriginRequest {
            line,
            headers,
            head,
            body,
            connection: self.index,
        };
        self.journal
            .requests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(request.clone());
        Some(request)
    }

    /// Reads what follows on the connection until `end` has been seen (or it closes).
    pub fn read_until(&mut self, end: &[u8]) -> Vec<u8> {
        loop {
            if let Some(at) = find(&self.buf, end) {
                return self.buf.drain(..at + end.len()).collect();
            }
            match self.fill() {
                Ok(true) => {}
                _ => return std::mem::take(&mut self.buf),
            }
        }
    }

    /// Writes all of `bytes`.
    pub fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes)?;
        self.stream.flush()
    }

    /// Answers `200` with `body` and `Content-Length`.
    pub fn respond(&mut self, body: &str) -> io::Result<()> {
        self.write(
            format!(
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )
            .as_bytes(),
        )
    }

    /// Waits (at most `limit`) for the proxy to close the connection; true if it did.
    pub fn closed_within(&mut self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        let mut scratch = [0u8; 4096];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            if self.stream.set_read_timeout(Some(left)).is_err() {
                return true;
            }
            match self.stream.read(&mut scratch) {
                Ok(0) => return true,
                Ok(_) => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    return false
                }
                Err(_) => return true,
            }
        }
    }

    /// Records an event in the journal.
    pub fn note(&self, event: impl Into<String>) {
        self.journal.note(event);
    }

    fn fill(&mut self) -> io::Result<bool> {
        self.stream.set_read_timeout(Some(READ_TIMEOUT))?;
        let mut chunk = [0u8; 16 * 1024];
        let n = self.stream.read(&mut chunk)?;
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(n > 0)
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// A running scripted origin; stops accepting when dropped.
pub struct ScriptedOrigin {
    addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    journal: Journal,
    stop: Arc<AtomicBool>,
    accept: Option<JoinHandle<()>>,
}

impl ScriptedOrigin {
    /// Listens on 127.0.0.1 (ephemeral port) and runs `handler` for every connection on a
    /// thread of its own.
    pub fn start<F>(handler: F) -> Self
    where
        F: Fn(&mut OriginConn) + Send + Sync + 'static,
    {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind scripted origin");
        let addr = listener.local_addr().expect("origin address");
        listener
            .set_nonblocking(true)
            .expect("non-blocking listener");
        let accepted = Arc::new(AtomicUsize::new(0));
        let journal = Journal::default();
        let stop = Arc::new(AtomicBool::new(false));
        let handler = Arc::new(handler);
        let accept = {
            let (accepted, journal, stop) = (accepted.clone(), journal.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    match listener.accept() {
                        Ok((stream, _)) => {
                            let _ = stream.set_nonblocking(false);
                            let index = accepted.fetch_add(1, Ordering::SeqCst);
                            let handler = Arc::clone(&handler);
                            let journal = journal.clone();
                            std::thread::spawn(move || {
                                let mut conn = OriginConn {
                                    stream,
                                    index,
                                    buf: Vec::new(),
                                    journal,
                                };
                                handler(&mut conn);
                            });
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(5)),
                    }
                }
            })
        };
        Self {
            addr,
            accepted,
            journal,
            stop,
            accept: Some(accept),
        }
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    /// What the origin saw.
    pub fn journal(&self) -> &Journal {
        &self.journal
    }
}

impl Drop for ScriptedOrigin {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(handle) = self.accept.take() {
            let _ = handle.join();
        }
    }
}
