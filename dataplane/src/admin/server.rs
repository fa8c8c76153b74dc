//! The admin HTTP server: blocking I/O on std threads, one request per connection.
//!
//! One accept thread polls a non-blocking listener (so [`Drop`] never depends on a wake-up
//! connection) and hands each connection to its own thread, at most
//! [`MAX_CONNECTIONS`] at a time (beyond that: `503` and close). The request head must arrive
//! within [`HEAD_TIMEOUT`] of the connection (an idle connection cannot hold a slot for
//! long); every read is bounded by [`READ_TIMEOUT`] and the whole request by
//! [`REQUEST_DEADLINE`]; the head is at most [`MAX_HEAD_BYTES`] (`431` beyond) and the body at
//! most [`MAX_BODY_BYTES`] (`413` beyond). With a token configured, every request but
//! `GET /healthz` and `GET /readyz` must carry `Authorization: Bearer <token>`, checked before
//! the body is read (`401` otherwise). Bodies need `Content-Length` (`411` without it on
//! `PUT`, and for any `Transfer-Encoding`; a `POST` without it has an empty body, as in
//! RFC 9112, so that `curl -X POST .../reload` works). Every response is JSON with
//! `Content-Length` and `Connection: close`.

use std::collections::HashMap;
use std::fs;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use socket2::{Domain, SockAddr, Socket, Type};

use portcullis_config::{AdminSettings, AdminToken};

use super::routes::{self, Response};
use super::{AdminListen, Observe, RevocationAdmin};

/// Largest request head (request line and headers); larger gets `431`.
pub const MAX_HEAD_BYTES: usize = 16 * 1024;
/// Largest request body; larger gets `413`.
pub const MAX_BODY_BYTES: u64 = 64 * 1024 * 1024;
/// Longest wait for any single read from a client.
pub const READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest time from accepting a connection to the end of its request head. Admin clients
/// send their request at once; a connection that does not gives its slot back quickly.
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(2);
/// Longest time one request (head and body) may take to arrive.
pub const REQUEST_DEADLINE: Duration = Duration::from_secs(60);
/// Longest wait for any single write to a client.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// Most connections served at once; further ones get `503`.
pub const MAX_CONNECTIONS: usize = 16;
/// Most request headers.
const MAX_HEADERS: usize = 64;
/// How often the accept thread checks for shutdown when idle.
const ACCEPT_POLL: Duration = Duration::from_millis(25);
/// How long [`Drop`] waits for the accept thread, and then for open connections.
const DROP_WAIT: Duration = Duration::from_secs(2);
/// After responding, how long (and how much) to drain unread input so that closing does not
/// reset the connection before the client has read the response.
const LINGER_TIME: Duration = Duration::from_secs(1);
const LINGER_BYTES: usize = 1024 * 1024;
/// Unix socket listen backlog.
const UNIX_BACKLOG: i32 = 64;

/// A running admin server; stops when dropped.
pub struct AdminServer {
    local_addr: Option<SocketAddr>,
    socket: Option<BoundSocket>,
    shared: Arc<Shared>,
    accept: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for AdminServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminServer")
            .field("local_addr", &self.local_addr)
            .field("socket_path", &self.socket.as_ref().map(|s| &s.path))
            .finish_non_exhaustive()
    }
}

/// The Unix socket file this server created, identified so that [`Drop`] removes only it.
#[derive(Debug)]
struct BoundSocket {
    path: PathBuf,
    dev: u64,
    ino: u64,
}

/// State shared by the accept thread, the connection threads and [`AdminServer`].
struct Shared {
    shutdown: AtomicBool,
    next_id: AtomicU64,
    /// Clones of the open connections, so that [`Drop`] can unblock their reads.
    connections: Mutex<HashMap<u64, Conn>>,
    backend: Arc<dyn RevocationAdmin>,
    /// Metrics and readiness, once the data plane has started.
    observe: OnceLock<Arc<dyn Observe>>,
    /// The bearer token requests must carry, if configured.
    token: Option<AdminToken>,
}

impl Shared {
    fn connections(&self) -> MutexGuard<'_, HashMap<u64, Conn>> {
        // The map stays consistent even if a holder panicked: every operation is one call.
        self.connections
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

enum Listener {
    Tcp(TcpListener),
    Unix(UnixListener),
}

/// An accepted connection, TCP or Unix.
enum Conn {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Conn {
    fn try_clone(&self) -> io::Result<Conn> {
        Ok(match self {
            Conn::Tcp(s) => Conn::Tcp(s.try_clone()?),
            Conn::Unix(s) => Conn::Unix(s.try_clone()?),
        })
    }

    fn set_read_timeout(&self, timeout: Duration) -> io::Result<()> {
        match self {
            Conn::Tcp(s) => s.set_read_timeout(Some(timeout)),
            Conn::Unix(s) => s.set_read_timeout(Some(timeout)),
        }
    }

    fn set_write_timeout(&self, timeout: Duration) -> io::Result<()> {
        match self {
            Conn::Tcp(s) => s.set_write_timeout(Some(timeout)),
            Conn::Unix(s) => s.set_write_timeout(Some(timeout)),
        }
    }

    fn set_nonblocking(&self, nonblocking: bool) -> io::Result<()> {
        match self {
            Conn::Tcp(s) => s.set_nonblocking(nonblocking),
            Conn::Unix(s) => s.set_nonblocking(nonblocking),
        }
    }

    fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        match self {
            Conn::Tcp(s) => s.shutdown(how),
            Conn::Unix(s) => s.shutdown(how),
        }
    }
}

impl Read for Conn {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Conn::Tcp(s) => s.read(buf),
            Conn::Unix(s) => s.read(buf),
        }
    }
}

impl Write for Conn {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Conn::Tcp(s) => s.write(buf),
            Conn::Unix(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Conn::Tcp(s) => s.flush(),
            Conn::Unix(s) => s.flush(),
        }
    }
}

/// Starts the admin server on `settings.listen`, serving `backend`, requiring
/// `settings.token` if one is configured.
///
/// A TCP address must be loopback (`127.0.0.0/8` or `::1`); anything else is refused with
/// [`io::ErrorKind::InvalidInput`]. For a Unix socket path, a stale socket file there is
/// removed first (but not a file that is not a socket, nor a socket something still
/// listens on), and the new socket gets mode `0600` before it accepts connections.
pub fn start(
    settings: &AdminSettings,
    backend: Arc<dyn RevocationAdmin>,
) -> io::Result<AdminServer> {
    let (listener, local_addr, socket) = match &settings.listen {
        AdminListen::Tcp(addr) => {
            if !addr.ip().to_canonical().is_loopback() {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("admin listener {addr} is not a loopback address"),
                ));
            }
            let listener = TcpListener::bind(addr)?;
            let local = listener.local_addr()?;
            listener.set_nonblocking(true)?;
            (Listener::Tcp(listener), Some(local), None)
        }
        AdminListen::Unix(path) => {
            let (listener, bound) = bind_unix(path)?;
            listener.set_nonblocking(true)?;
            (Listener::Unix(listener), None, Some(bound))
        }
    };
    let shared = Arc::new(Shared {
        shutdown: AtomicBool::new(false),
        next_id: AtomicU64::new(0),
        connections: Mutex::new(HashMap::new()),
        backend,
        observe: OnceLock::new(),
        token: settings.token.clone(),
    });
    let accept = {
        let shared = Arc::clone(&shared);
        thread::Builder::new()
            .name("admin-accept".to_owned())
            .spawn(move || accept_loop(listener, &shared))?
    };
    match (&local_addr, &socket) {
        (Some(addr), _) => tracing::info!(%addr, "admin API listening"),
        (_, Some(bound)) => tracing::info!(path = %bound.path.display(), "admin API listening"),
        _ => {}
    }
    Ok(AdminServer {
        local_addr,
        socket,
        shared,
        accept: Some(accept),
    })
}

impl AdminServer {
    /// The TCP address listened on (with the real port if `0` was given); `None` for a
    /// Unix socket.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.local_addr
    }

    /// The Unix socket path listened on; `None` for TCP.
    pub fn socket_path(&self) -> Option<&Path> {
        self.socket.as_ref().map(|s| s.path.as_path())
    }

    /// Serves `/metrics` and `/readyz` from `observe` from now on (set once; later calls are
    /// ignored).
    pub fn observe(&self, observe: Arc<dyn Observe>) {
        let _ = self.shared.observe.set(observe);
    }

    /// Number of connections currently being served.
    pub fn open_connections(&self) -> usize {
        self.shared.connections().len()
    }
}

impl Drop for AdminServer {
    /// Stops accepting, closes the listener (removing the Unix socket file), then shuts down
    /// the open connections and waits for their threads; each wait is bounded by two
    /// seconds.
    fn drop(&mut self) {
        self.shared.shutdown.store(true, Ordering::SeqCst);
        if let Some(handle) = self.accept.take() {
            wait_until(DROP_WAIT, || handle.is_finished());
            if handle.is_finished() {
                let _ = handle.join();
            }
        }
        if let Some(bound) = &self.socket {
            // Remove the socket file only if it is still the one this server created.
            if let Ok(meta) = fs::symlink_metadata(&bound.path) {
                if meta.dev() == bound.dev && meta.ino() == bound.ino {
                    let _ = fs::remove_file(&bound.path);
                }
            }
        }
        for conn in self.shared.connections().values() {
            let _ = conn.shutdown(Shutdown::Both);
        }
        wait_until(DROP_WAIT, || self.shared.connections().is_empty());
    }
}

/// Polls `done` every few milliseconds for at most `limit`.
fn wait_until(limit: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(5));
    }
}

fn bind_unix(path: &Path) -> io::Result<(UnixListener, BoundSocket)> {
    use std::os::unix::fs::FileTypeExt as _;
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => {
            if UnixStream::connect(path).is_ok() {
                return Err(io::Error::new(
                    io::ErrorKind::AddrInUse,
                    format!("{}: another process is listening there", path.display()),
                ));
            }
            fs::remove_file(path)?;
        }
        Ok(_) => {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("{}: exists and is not a socket", path.display()),
            ));
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let socket = Socket::new(Domain::UNIX, Type::STREAM, None)?;
    socket.bind(&SockAddr::unix(path)?)?;
    // Restrict the socket before it accepts anything: connect() needs write permission.
    let restricted = fs::set_permissions(path, fs::Permissions::from_mode(0o600))
        .and_then(|()| fs::symlink_metadata(path))
        .and_then(|meta| socket.listen(UNIX_BACKLOG).map(|()| meta));
    let meta = match restricted {
        Ok(meta) => meta,
        Err(e) => {
            let _ = fs::remove_file(path);
            return Err(e);
        }
    };
    let bound = BoundSocket {
        path: path.to_path_buf(),
        dev: meta.dev(),
        ino: meta.ino(),
    };
    Ok((UnixListener::from(socket), bound))
}

fn accept_loop(listener: Listener, shared: &Arc<Shared>) {
    while !shared.shutdown.load(Ordering::SeqCst) {
        let accepted = match &listener {
            Listener::Tcp(l) => l.accept().map(|(s, _)| Conn::Tcp(s)),
            Listener::Unix(l) => l.accept().map(|(s, _)| Conn::Unix(s)),
        };
        match accepted {
            Ok(conn) => dispatch(conn, shared),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => thread::sleep(ACCEPT_POLL),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                // E.g. EMFILE: back off instead of spinning.
                tracing::warn!(error = %e, "admin: accept failed");
                thread::sleep(ACCEPT_POLL);
            }
        }
    }
}

/// Registers `conn` and serves it on a new thread, or refuses it with `503`.
fn dispatch(mut conn: Conn, shared: &Arc<Shared>) {
    if conn.set_nonblocking(false).is_err() {
        return;
    }
    let id = shared.next_id.fetch_add(1, Ordering::Relaxed);
    let registered = {
        let mut connections = shared.connections();
        if connections.len() >= MAX_CONNECTIONS {
            None
        } else {
            conn.try_clone()
                .ok()
                .map(|clone| connections.insert(id, clone))
        }
    };
    if registered.is_none() {
        // Too many connections (or no clone): refuse without blocking the accept thread.
        // Discard what already arrived, so that closing does not reset the connection
        // before the client has read the 503.
        let _ = conn.set_nonblocking(true);
        let mut scratch = [0u8; 4096];
        for _ in 0..16 {
            match conn.read(&mut scratch) {
                Ok(n) if n > 0 => {}
                _ => break,
            }
        }
        let response = Response::error(503, "too many admin connections");
        let _ = conn.write_all(&encode_response(&response));
        let _ = conn.shutdown(Shutdown::Both);
        return;
    }
    let thread_shared = Arc::clone(shared);
    let spawned = thread::Builder::new()
        .name("admin-conn".to_owned())
        .spawn(move || {
            let _registration = Registration {
                shared: &thread_shared,
                id,
            };
            if let Err(e) = serve(&mut conn, &thread_shared) {
                tracing::debug!(error = %e, "admin: connection ended with an error");
            }
        });
    if spawned.is_err() {
        shared.connections().remove(&id);
    }
}

/// Unregisters a connection when its thread ends, even by panic.
struct Registration<'a> {
    shared: &'a Shared,
    id: u64,
}

impl Drop for Registration<'_> {
    fn drop(&mut self) {
        self.shared.connections().remove(&self.id);
    }
}

/// A request read in full.
struct Request {
    method: String,
    target: String,
    body: Vec<u8>,
}

/// Why a request could not be read.
enum ReadError {
    /// Answer with this response, then close.
    Respond(Response),
    /// The client went away or the socket failed: just close.
    Io(io::Error),
}

impl From<io::Error> for ReadError {
    fn from(e: io::Error) -> ReadError {
        match e.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => {
                ReadError::Respond(Response::error(408, "request timed out"))
            }
            _ => ReadError::Io(e),
        }
    }
}

fn serve(conn: &mut Conn, shared: &Shared) -> io::Result<()> {
    conn.set_write_timeout(WRITE_TIMEOUT)?;
    let accepted = Instant::now();
    let response = match read_request(conn, accepted, shared.token.as_ref()) {
        Ok(Some(request)) => {
            let response = routes::handle(
                shared.backend.as_ref(),
                shared.observe.get().map(|o| o.as_ref()),
                &request.method,
                &request.target,
                &request.body,
            );
            log_request(&request, &response);
            response
        }
        Ok(None) => return Ok(()),
        Err(ReadError::Respond(response)) => {
            tracing::debug!(status = response.status, "admin: bad request");
            response
        }
        Err(ReadError::Io(e)) => return Err(e),
    };
    conn.write_all(&encode_response(&response))?;
    conn.flush()?;
    linger(conn);
    Ok(())
}

fn log_request(request: &Request, response: &Response) {
    if request.method == "GET" {
        tracing::debug!(method = %request.method, target = %request.target, status = response.status, "admin request");
    } else {
        tracing::info!(method = %request.method, target = %request.target, status = response.status, "admin request");
    }
}

/// Half-closes and drains (boundedly) what the client still sends, so that the close does
/// not turn into a reset that would discard the response before the client reads it.
fn linger(conn: &mut Conn) {
    if conn.shutdown(Shutdown::Write).is_err() {
        return;
    }
    let deadline = Instant::now() + LINGER_TIME;
    let mut drained = 0usize;
    let mut scratch = [0u8; 8192];
    while drained < LINGER_BYTES {
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() || conn.set_read_timeout(remaining).is_err() {
            return;
        }
        match conn.read(&mut scratch) {
            Ok(0) | Err(_) => return,
            Ok(n) => drained += n,
        }
    }
}

/// One read bounded by [`READ_TIMEOUT`] and by `deadline`.
fn read_some(conn: &mut Conn, buf: &mut [u8], deadline: Instant) -> io::Result<usize> {
    let remaining = deadline.saturating_duration_since(Instant::now());
    if remaining.is_zero() {
        return Err(io::ErrorKind::TimedOut.into());
    }
    conn.set_read_timeout(remaining.min(READ_TIMEOUT))?;
    loop {
        match conn.read(buf) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            result => return result,
        }
    }
}

/// Reads one request; `Ok(None)` if the client closed before sending anything. The head must
/// end within [`HEAD_TIMEOUT`] of `accepted` and carry `token` (if any) before the body is
/// read; the whole request must arrive within [`REQUEST_DEADLINE`].
fn read_request(
    conn: &mut Conn,
    accepted: Instant,
    token: Option<&AdminToken>,
) -> Result<Option<Request>, ReadError> {
    let head_deadline = accepted + HEAD_TIMEOUT;
    let deadline = accepted + REQUEST_DEADLINE;
    let mut buf = vec![0u8; MAX_HEAD_BYTES];
    let mut filled = 0;
    let (head_len, method, target, framing) = loop {
        let n = read_some(conn, &mut buf[filled..], head_deadline)?;
        if n == 0 {
            return if filled == 0 {
                Ok(None)
            } else {
                Err(ReadError::Io(io::ErrorKind::UnexpectedEof.into()))
            };
        }
        filled += n;
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut parsed = httparse::Request::new(&mut headers);
        match parsed.parse(&buf[..filled]) {
            Ok(httparse::Status::Complete(head_len)) => {
                let method = parsed.method.unwrap_or_default().to_owned();
                let target = parsed.path.unwrap_or_default().to_owned();
                if let Some(token) = token {
                    authorize(token, &method, &target, parsed.headers)?;
                }
                let framing = framing(&method, parsed.headers)?;
                break (head_len, method, target, framing);
            }
            Ok(httparse::Status::Partial) if filled == buf.len() => {
                return Err(ReadError::Respond(Response::error(
                    431,
                    "request head too large",
                )));
            }
            Ok(httparse::Status::Partial) => {}
            Err(httparse::Error::TooManyHeaders) => {
                return Err(ReadError::Respond(Response::error(
                    431,
                    "too many request headers",
                )));
            }
            Err(e) => {
                return Err(ReadError::Respond(Response::error(
                    400,
                    &format!("malformed request: {e}"),
                )));
            }
        }
    };
    let length = framing.length;
    if framing.expect_continue && length > 0 {
        conn.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?;
    }
    // `length` is at most MAX_BODY_BYTES, so it fits in usize on every supported target.
    let length = usize::try_from(length)
        .map_err(|_| ReadError::Respond(Response::error(413, "request body too large")))?;
    let already = (filled - head_len).min(length);
    let mut body = Vec::with_capacity(already);
    body.extend_from_slice(&buf[head_len..head_len + already]);
    drop(buf);
    // Grow with the data actually received rather than trusting Content-Length up front.
    let mut chunk = vec![0u8; 64 * 1024];
    while body.len() < length {
        let want = (length - body.len()).min(chunk.len());
        let n = read_some(conn, &mut chunk[..want], deadline)?;
        if n == 0 {
            return Err(ReadError::Io(io::ErrorKind::UnexpectedEof.into()));
        }
        body.extend_from_slice(&chunk[..n]);
    }
    Ok(Some(Request {
        method,
        target,
        body,
    }))
}

/// Requests answered without the token: liveness and readiness probes.
fn is_probe(method: &str, target: &str) -> bool {
    let path = target.split_once('?').map_or(target, |(path, _)| path);
    method == "GET" && matches!(path, "/healthz" | "/readyz")
}

/// Checks `Authorization: Bearer <token>` (exactly one such field) unless the request is a
/// probe.
fn authorize(
    token: &AdminToken,
    method: &str,
    target: &str,
    headers: &[httparse::Header<'_>],
) -> Result<(), ReadError> {
    if is_probe(method, target) {
        return Ok(());
    }
    let mut fields = headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("authorization"));
    let presented = match (fields.next(), fields.next()) {
        (Some(field), None) => field
            .value
            .strip_prefix(b"Bearer ")
            .or_else(|| field.value.strip_prefix(b"bearer ")),
        _ => None,
    };
    if presented.is_some_and(|p| token.matches(p)) {
        return Ok(());
    }
    tracing::warn!(
        method,
        "admin: request refused: missing or wrong bearer token"
    );
    Err(ReadError::Respond(Response {
        authenticate: true,
        ..Response::error(401, "a valid bearer token is required (admin.token_file)")
    }))
}

/// How the request body is framed.
struct Framing {
    /// Body length in bytes (0 without a body).
    length: u64,
    /// The client sent `Expect: 100-continue`.
    expect_continue: bool,
}

/// Validates the body framing headers.
fn framing(method: &str, headers: &[httparse::Header<'_>]) -> Result<Framing, ReadError> {
    let respond = |status, message: &str| ReadError::Respond(Response::error(status, message));
    let mut length: Option<u64> = None;
    let mut expect_continue = false;
    for header in headers {
        if header.name.eq_ignore_ascii_case("transfer-encoding") {
            return Err(respond(
                411,
                "Transfer-Encoding is not supported; send Content-Length",
            ));
        } else if header.name.eq_ignore_ascii_case("content-length") {
            let text = std::str::from_utf8(header.value)
                .map_err(|_| respond(400, "invalid Content-Length"))?
                .trim();
            if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
                return Err(respond(400, "invalid Content-Length"));
            }
            // All digits: a parse failure can only be overflow, i.e. far too large.
            let value = text.parse::<u64>().unwrap_or(u64::MAX);
            if length.is_some_and(|previous| previous != value) {
                return Err(respond(400, "conflicting Content-Length headers"));
            }
            length = Some(value);
        } else if header.name.eq_ignore_ascii_case("expect") {
            expect_continue = header.value.eq_ignore_ascii_case(b"100-continue");
        }
    }
    let length = match length {
        Some(length) if length > MAX_BODY_BYTES => {
            return Err(respond(413, "request body too large"));
        }
        Some(length) => length,
        None if method == "PUT" => {
            return Err(respond(411, "Content-Length required"));
        }
        None => 0,
    };
    Ok(Framing {
        length,
        expect_continue,
    })
}

fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        411 => "Length Required",
        413 => "Content Too Large",
        422 => "Unprocessable Content",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Status",
    }
}

fn encode_response(response: &Response) -> Vec<u8> {
    let mut out = Vec::with_capacity(160 + response.body.len());
    out.extend_from_slice(
        format!(
            "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\nCache-Control: no-store\r\n",
            response.status,
            reason(response.status),
            response.content_type,
            response.body.len()
        )
        .as_bytes(),
    );
    if let Some(allow) = response.allow {
        out.extend_from_slice(format!("Allow: {allow}\r\n").as_bytes());
    }
    if response.authenticate {
        out.extend_from_slice(b"WWW-Authenticate: Bearer realm=\"portcullis-admin\"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(&response.body);
    out
}
