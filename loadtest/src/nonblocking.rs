//! Non-blocking keep-alive connections for the event loops of the keep-alive and rate modes
//! (mio, edge-triggered): [`NbConn`] is one TLS connection as a state machine (TCP connect,
//! TLS handshake, then requests one at a time, each written and its response read
//! incrementally) over an [`NbSocket`] (one `recv` per TLS flight rather than two per
//! record), and [`WakeTimer`] wakes an event loop at a precise instant.
//!
//! A connection only ever stops because the socket would block (`WouldBlock`, or BoringSSL's
//! `SSL_ERROR_WANT_READ` / `SSL_ERROR_WANT_WRITE`) and is advanced again when its socket
//! reports readiness; the readiness seen is remembered so that no read is attempted on a
//! socket known to be drained. Every stage is bounded by the per-operation timeout, counted
//! from the last progress (as a blocking socket's read and write timeouts are); the event
//! loop enforces it through [`NbConn::deadline`].

use std::io::{self, Read, Write};
use std::time::{Duration, Instant};

use mio::event::Event;
use mio::{Interest, Registry, Token};

use crate::errors::{classify_io, ErrorKind, Phase};
use crate::http::{Response, ResponseParser};
use crate::tls_client::{nb_error, NbError, NbStream, TlsClient};

/// Bytes a [`NbSocket`] reads from the kernel at a time.
const SOCKET_READ_BYTES: usize = 4096;

/// A non-blocking TCP socket with a small read buffer under BoringSSL, which reads a record's
/// header and then its body as two separate reads: the buffer serves both (and any records
/// behind them) from one `recv`. Reads at least as large as the buffer bypass it.
#[derive(Debug)]
pub struct NbSocket {
    tcp: mio::net::TcpStream,
    buf: Box<[u8]>,
    start: usize,
    end: usize,
}

impl NbSocket {
    /// Wraps a non-blocking socket.
    pub fn new(tcp: mio::net::TcpStream) -> Self {
        Self {
            tcp,
            buf: vec![0; SOCKET_READ_BYTES].into_boxed_slice(),
            start: 0,
            end: 0,
        }
    }

    /// The socket.
    pub fn tcp(&self) -> &mio::net::TcpStream {
        &self.tcp
    }

    /// The socket, to register it with an event loop.
    pub fn tcp_mut(&mut self) -> &mut mio::net::TcpStream {
        &mut self.tcp
    }

    /// Bytes received from the kernel and not read yet.
    pub fn buffered(&self) -> usize {
        self.end - self.start
    }
}

impl Read for NbSocket {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.start == self.end {
            if out.len() >= self.buf.len() {
                return self.tcp.read(out);
            }
            let n = self.tcp.read(&mut self.buf)?;
            self.start = 0;
            self.end = n;
        }
        let available = self.buf.get(self.start..self.end).unwrap_or_default();
        let n = out.len().min(available.len());
        out[..n].copy_from_slice(&available[..n]);
        self.start += n;
        Ok(n)
    }
}

impl Write for NbSocket {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.tcp.write(data)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.tcp.flush()
    }
}

/// Where a connection is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// The TCP connect is in progress.
    Connecting,
    /// The TLS handshake is in progress.
    Handshaking,
    /// Connected, no request in flight.
    Idle,
    /// Writing a request.
    Writing,
    /// Reading a response.
    Reading,
}

/// What [`NbConn::advance`] got to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Progress {
    /// Waiting for the socket; advance again on its next event.
    Pending,
    /// The handshake completed and no request was waiting for it: the connection is idle.
    Connected,
    /// The response to the request completed; the connection is idle (or, if the response
    /// says so, must be closed).
    Response(Response),
}

/// One non-blocking keep-alive TLS connection.
#[derive(Debug)]
pub struct NbConn {
    stream: NbStream,
    state: State,
    /// The socket may have data to read (no read has seen `WouldBlock` since its last event).
    readable: bool,
    /// The socket may accept data (no write has seen `WouldBlock` since its last event).
    writable: bool,
    /// Received bytes the parser has not consumed yet (a partial head or chunk line).
    carry: Vec<u8>,
    parser: ResponseParser,
    /// Bytes of the current request written.
    written: usize,
    /// A request waits for the handshake to complete.
    queued: bool,
    /// The handshake resumed a session.
    resumed: bool,
    timeout: Duration,
    deadline: Instant,
}

impl NbConn {
    /// Starts connecting to `client`'s target presenting `identity` (no session resumption)
    /// and registers the socket with `registry` under `token`. The connect and the handshake
    /// progress through [`NbConn::advance`].
    pub fn open(
        client: &TlsClient,
        identity: Option<usize>,
        registry: &Registry,
        token: Token,
    ) -> Result<NbConn, ErrorKind> {
        let (mut stream, _) = client.start_connect(identity, false)?;
        registry
            .register(
                stream.get_mut().tcp_mut(),
                token,
                Interest::READABLE | Interest::WRITABLE,
            )
            .map_err(|e| classify_io(&e, Phase::Connect))?;
        let timeout = client.timeout();
        Ok(NbConn {
            stream,
            state: State::Connecting,
            readable: true,
            writable: true,
            carry: Vec::new(),
            parser: ResponseParser::new(),
            written: 0,
            queued: false,
            resumed: false,
            timeout,
            deadline: Instant::now() + timeout,
        })
    }

    /// Deregisters the socket; dropping the connection closes it.
    pub fn close(mut self, registry: &Registry) {
        let _ = registry.deregister(self.stream.get_mut().tcp_mut());
    }

    /// Notes the readiness an event reported for this connection's socket.
    pub fn on_event(&mut self, event: &Event) {
        let failed = event.is_error() || event.is_read_closed() || event.is_write_closed();
        if event.is_readable() || failed {
            self.readable = true;
        }
        if event.is_writable() || failed {
            self.writable = true;
        }
    }

    /// Starts a request: written at once when idle, or as soon as the handshake completes.
    /// Returns `false` (and does nothing) if a request is already in flight.
    pub fn send(&mut self) -> bool {
        match self.state {
            State::Idle => {
                self.state = State::Writing;
                self.written = 0;
                self.deadline = Instant::now() + self.timeout;
                true
            }
            State::Connecting | State::Handshaking if !self.queued => {
                self.queued = true;
                true
            }
            _ => false,
        }
    }

    /// Whether the handshake resumed a session (meaningful once connected).
    pub fn resumed(&self) -> bool {
        self.resumed
    }

    /// Whether the connection is idle: connected, with no request in flight.
    pub fn is_idle(&self) -> bool {
        self.state == State::Idle
    }

    /// When the current stage times out (no progress for the per-operation timeout); `None`
    /// when idle.
    pub fn deadline(&self) -> Option<Instant> {
        (self.state != State::Idle).then_some(self.deadline)
    }

    fn progressed(&mut self) {
        self.deadline = Instant::now() + self.timeout;
    }

    /// Makes all the progress the socket allows: finishes the connect and the handshake,
    /// writes `request` (the request started by [`NbConn::send`]; the same bytes on every
    /// call until its response) and reads the response, using `scratch` to read into.
    ///
    /// An error is the classified failure of the connection; it must then be closed.
    pub fn advance(&mut self, request: &[u8], scratch: &mut [u8]) -> Result<Progress, ErrorKind> {
        loop {
            match self.state {
                State::Idle => return Ok(Progress::Pending),
                State::Connecting => {
                    let tcp = self.stream.get_ref().tcp();
                    match tcp.take_error() {
                        Ok(None) => {}
                        Ok(Some(e)) | Err(e) => return Err(classify_io(&e, Phase::Connect)),
                    }
                    match tcp.peer_addr() {
                        Ok(_) => {
                            self.state = State::Handshaking;
                            self.progressed();
                        }
                        Err(e) if e.kind() == io::ErrorKind::NotConnected => {
                            return Ok(Progress::Pending)
                        }
                        Err(e) => return Err(classify_io(&e, Phase::Connect)),
                    }
                }
                State::Handshaking => match self.stream.connect() {
                    Ok(()) => {
                        self.resumed = self.stream.ssl().session_reused();
                        self.progressed();
                        if self.queued {
                            self.queued = false;
                            self.state = State::Writing;
                            self.written = 0;
                        } else {
                            self.state = State::Idle;
                            return Ok(Progress::Connected);
                        }
                    }
                    Err(e) => return self.blocked(nb_error(&e)),
                },
                State::Writing => {
                    if !self.writable {
                        return Ok(Progress::Pending);
                    }
                    let rest = request.get(self.written..).unwrap_or_default();
                    if rest.is_empty() {
                        self.state = State::Reading;
                        continue;
                    }
                    match self.stream.ssl_write(rest) {
                        Ok(n) => {
                            self.written += n;
                            self.progressed();
                        }
                        Err(e) => return self.blocked(nb_error(&e)),
                    }
                }
                State::Reading => {
                    if !self.carry.is_empty() {
                        let (used, response) = self.parser.parse(&self.carry)?;
                        self.carry.drain(..used);
                        if let Some(response) = response {
                            return Ok(self.completed(response));
                        }
                    }
                    if !self.readable {
                        return Ok(Progress::Pending);
                    }
                    match self.stream.ssl_read(scratch) {
                        Ok(n) => {
                            self.progressed();
                            let data = scratch.get(..n).unwrap_or_default();
                            if self.carry.is_empty() {
                                let (used, response) = self.parser.parse(data)?;
                                self.carry
                                    .extend_from_slice(data.get(used..).unwrap_or_default());
                                if let Some(response) = response {
                                    return Ok(self.completed(response));
                                }
                            } else {
                                // Parsed with the carried bytes at the top of the loop.
                                self.carry.extend_from_slice(data);
                            }
                        }
                        Err(e) => match nb_error(&e) {
                            NbError::Eof => {
                                let response = self.parser.eof()?;
                                return Ok(self.completed(response));
                            }
                            other => return self.blocked(other),
                        },
                    }
                }
            }
        }
    }

    /// A BoringSSL call stopped: wait for the readiness it needs, or fail.
    fn blocked(&mut self, error: NbError) -> Result<Progress, ErrorKind> {
        match error {
            NbError::WantRead => self.readable = false,
            NbError::WantWrite => self.writable = false,
            // The peer closed before the response (or during the handshake).
            NbError::Eof => return Err(ErrorKind::Reset),
            NbError::Failed(kind) => return Err(kind),
        }
        Ok(Progress::Pending)
    }

    /// A response completed: the connection is idle again.
    fn completed(&mut self, response: Response) -> Progress {
        self.state = State::Idle;
        if self.carry.is_empty()
            && self.stream.ssl().pending() == 0
            && self.stream.get_ref().buffered() == 0
        {
            // Nothing is buffered on our side, so the next response can only come from new
            // data on the socket, which epoll reports as a new edge: the next read can wait
            // for it instead of first trying a read that would block.
            self.readable = false;
        }
        Progress::Response(response)
    }
}

/// Wakes an event loop at a precise instant. On Linux it is a `timerfd` registered with the
/// loop (nanosecond resolution); elsewhere, or if the timer cannot be created, the loop's
/// poll timeout does it (millisecond resolution, rounded up by mio).
#[derive(Debug)]
pub struct WakeTimer {
    #[cfg(target_os = "linux")]
    fd: Option<std::os::fd::OwnedFd>,
    token: Token,
    armed: Option<Instant>,
}

impl WakeTimer {
    /// A timer whose expiry is reported on `registry` as a readable event for `token`.
    pub fn new(registry: &Registry, token: Token) -> WakeTimer {
        #[cfg(target_os = "linux")]
        {
            use rustix::time::{timerfd_create, TimerfdClockId, TimerfdFlags};
            use std::os::fd::AsRawFd;
            let fd = timerfd_create(
                TimerfdClockId::Monotonic,
                TimerfdFlags::NONBLOCK | TimerfdFlags::CLOEXEC,
            )
            .ok()
            .filter(|fd| {
                registry
                    .register(
                        &mut mio::unix::SourceFd(&fd.as_raw_fd()),
                        token,
                        Interest::READABLE,
                    )
                    .is_ok()
            });
            WakeTimer {
                fd,
                token,
                armed: None,
            }
        }
        #[cfg(not(target_os = "linux"))]
        {
            let _ = registry;
            WakeTimer { token, armed: None }
        }
    }

    /// The token its events carry.
    pub fn token(&self) -> Token {
        self.token
    }

    /// Arranges for the loop to wake at `at` (`now` is the current time). Returns the poll
    /// timeout the loop must use for it instead, when there is no timer to arm.
    pub fn arm(&mut self, at: Instant, now: Instant) -> Option<Duration> {
        let wait = at.saturating_duration_since(now);
        #[cfg(target_os = "linux")]
        if let Some(fd) = &self.fd {
            if self.armed == Some(at) {
                return None;
            }
            use rustix::time::{timerfd_settime, Itimerspec, TimerfdTimerFlags, Timespec};
            // A zero value disarms the timer: wake at once instead.
            let value = Timespec::try_from(wait.max(Duration::from_nanos(1))).ok();
            let armed = value.is_some_and(|it_value| {
                let spec = Itimerspec {
                    it_interval: Timespec {
                        tv_sec: 0,
                        tv_nsec: 0,
                    },
                    it_value,
                };
                timerfd_settime(fd, TimerfdTimerFlags::empty(), &spec).is_ok()
            });
            if armed {
                self.armed = Some(at);
                return None;
            }
        }
        self.armed = None;
        Some(wait)
    }

    /// The timer's event arrived: it expired.
    pub fn fired(&mut self) {
        self.armed = None;
        #[cfg(target_os = "linux")]
        if let Some(fd) = &self.fd {
            // Consume the expiration count so the next expiry is a new edge.
            let mut count = [0u8; 8];
            let _ = rustix::io::read(fd, &mut count);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mio::{Events, Poll};

    #[test]
    fn socket_buffer_serves_small_reads_and_passes_large_ones() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let client =
            std::net::TcpStream::connect(listener.local_addr().expect("addr")).expect("connect");
        let (mut server, _) = listener.accept().expect("accept");
        let data: Vec<u8> = (0..20_000u32).map(|i| (i % 251) as u8).collect();
        server.write_all(&data).expect("write");
        drop(server);
        client.set_nonblocking(true).expect("nonblocking");
        let mut socket = NbSocket::new(mio::net::TcpStream::from_std(client));
        let mut got = Vec::new();
        let sizes = [5usize, 300, 8192, 1, 16_384];
        let mut attempts = 0;
        let mut i = 0;
        while attempts < 10_000 {
            let mut buf = vec![0u8; sizes[i % sizes.len()]];
            match socket.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    assert!(socket.buffered() < SOCKET_READ_BYTES);
                    got.extend_from_slice(&buf[..n]);
                    i += 1;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    attempts += 1;
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err(e) => panic!("{e}"),
            }
        }
        assert_eq!(got, data);
    }

    #[test]
    fn wake_timer_fires() {
        let mut poll = Poll::new().expect("poll");
        let mut events = Events::with_capacity(4);
        let mut timer = WakeTimer::new(poll.registry(), Token(7));
        let start = Instant::now();
        let at = start + Duration::from_millis(5);
        let fallback = timer.arm(at, start);
        let mut woke = false;
        while start.elapsed() < Duration::from_secs(2) {
            poll.poll(&mut events, fallback.or(Some(Duration::from_secs(1))))
                .expect("poll");
            if events.iter().any(|e| e.token() == timer.token()) || fallback.is_some() {
                timer.fired();
                woke = true;
                break;
            }
        }
        assert!(woke);
        assert!(
            start.elapsed() >= Duration::from_millis(4),
            "{:?}",
            start.elapsed()
        );
        // Re-arming for the same instant after it fired arms it again.
        assert_eq!(
            timer.arm(at, Instant::now()).is_none(),
            cfg!(target_os = "linux")
        );
    }
}
