//! One proxied request, whatever protocol the viewer speaks: the protocol-neutral exchange
//! that the HTTP/1.1 codec (`http1.rs`) and the HTTP/2 codec (`http2/`) both drive, as
//! hyper's h1 and h2 dispatchers drive one service.
//!
//! A codec parses the viewer's request, checks it with [`check_request`] (revocation, the
//! 421 rule), renders the origin's HTTP/1.1 head (viewer-cert block, `X-Forwarded-*`, client
//! copies of edge fields removed) and hands [`forward`] a [`Viewer`]: the request body source
//! and the response sink of that one request. [`forward`] does the origin round trip
//! through the worker's pool (a quiet pooled connection or a new one; a request sent again
//! only when it is idempotent and was complete), streams the request body, reads the response
//! head within `origin_response` (relaying 1xx), and streams the response body back in
//! fixed buffers, framed as the viewer wants it. Every wait is bounded.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use monoio::buf::IoBufMut;
use monoio::io::AsyncReadRent;
use portcullis_config::{Origin, ServerSettings, Snapshot};

use crate::buffer_pool::{BufferPool, BUFFER_SIZE};
use crate::http::{self, BodyState, ResponseHead, Status};
use crate::notify::LocalNotify;
use crate::origin_pool::{ConnectError, OriginConn, OriginPool};
use crate::shutdown::Shutdown;
use crate::telemetry::access::RequestObserver;
use crate::tls::OpenIdentity;
use crate::write_timeout;

/// Size of the buffers that carry bodies and heads.
pub const BODY_BUFFER: usize = BUFFER_SIZE;
/// Largest plaintext of one TLS record: a response head and a body piece that fit together
/// leave as one record.
const ONE_RECORD: usize = 16 * 1024;

/// Everything a connection's requests need besides the viewer's stream.
#[derive(Debug)]
pub struct Exchange<'a> {
    /// The configuration the connection was accepted under (for the Host check).
    pub config: &'a Snapshot,
    /// Index of the site the connection's SNI selected.
    pub site: usize,
    /// The `Host` sent to the origin for a request without one (HTTP/1.0, or HTTP/2 without
    /// `:authority`): the SNI name or the site's first exact server name; empty if neither
    /// exists (such requests get 400).
    pub fallback_host: &'a [u8],
    /// Time-outs and limits.
    pub server: &'a ServerSettings,
    /// Where the site's requests go.
    pub origin: &'a Origin,
    /// The viewer's address, for X-Forwarded-For.
    pub client_ip: IpAddr,
    /// The CloudFront-Viewer-Cert-* block of this connection.
    pub viewer_headers: &'a [u8],
    /// The worker's origin connections.
    pub pool: &'a OriginPool,
    /// The worker's shutdown notification.
    pub shutdown: &'a Shutdown,
    /// The worker's notification of revocation changes.
    pub revocations: &'a LocalNotify,
    /// The client's certificate identity, when open connections are to be cut on revocation.
    pub identity: Option<&'a OpenIdentity>,
    /// The worker's body buffers.
    pub buffers: &'a BufferPool,
    /// Where each request's outcome is reported (access log, metrics).
    pub observer: &'a RequestObserver<'a>,
}

/// Takes a checked request's buffers and its place among the worker's requests in flight
/// (`max_requests_in_flight_per_worker`); `Err(503)`, counted, when the worker has that many
/// in flight already. The codec answers the error as it answers [`check_request`]'s.
pub fn admit(x: &Exchange<'_>, bufs: &mut ExchangeBuffers<'_>) -> Result<(), Status> {
    if bufs.acquire(x.server.limits.max_requests_in_flight_per_worker) {
        return Ok(());
    }
    x.observer.over_in_flight_limit();
    Err(Status::SERVICE_UNAVAILABLE)
}

/// Checks a request before anything goes to the origin: the connection's certificate was not
/// revoked meanwhile (403), and every host the request names (`Host`, an absolute-form or
/// `:authority` authority) is one the connection's site serves (421; 400 when malformed, or
/// when the request names no host and the site has none to give it).
pub fn check_request<'h>(
    x: &Exchange<'_>,
    hosts: impl IntoIterator<Item = &'h [u8]>,
) -> Result<(), Status> {
    if x.identity
        .is_some_and(OpenIdentity::revoked_since_last_check)
    {
        tracing::info!("client certificate revoked on an open connection; closing");
        return Err(Status::FORBIDDEN);
    }
    let mut named = false;
    for authority in hosts {
        named = true;
        let host = match http::authority::host_of(authority) {
            Ok(host) => host,
            Err(e) => {
                tracing::info!(error = %e, "request refused: invalid host");
                return Err(e.status());
            }
        };
        if !x.config.accepts_host(x.site, host) {
            tracing::info!(
                site = %x.config.sites[x.site].name,
                host,
                "request refused with 421: it names a host this connection's site does not serve"
            );
            return Err(Status::MISDIRECTED_REQUEST);
        }
    }
    if !named && x.fallback_host.is_empty() {
        tracing::info!("request refused: no Host, and the site has no name to give it");
        return Err(Status::BAD_REQUEST);
    }
    Ok(())
}

/// How the viewer wants the response body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyMode {
    /// The origin's bytes as they are (its chunked framing included).
    Framed,
    /// Only the payload (chunked framing and trailers removed).
    Payload,
}

/// How far a piece handed to [`Viewer::send`] goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Piece {
    /// More follows at once: it may wait to leave with the next piece.
    Queued,
    /// Send it now; more follows later.
    Flush,
    /// The last piece of the response.
    Last,
}

/// The viewer's side of one request.
#[allow(async_fn_in_trait)] // Used generically within the crate, never as `dyn`.
pub trait Viewer {
    /// Whether the request body was read completely (or there is none).
    fn body_done(&self) -> bool;

    /// Reads the next piece of the request body into `buf`, framed for the origin (HTTP/1.1
    /// body bytes), and returns how many bytes of `buf` to send (0 only when the body ended
    /// without further bytes). `Ok(Err(status))` refuses the request (too slow, malformed);
    /// `Err` means the viewer went away.
    async fn request_body(&mut self, buf: &mut [u8]) -> io::Result<Result<usize, Status>>;

    /// The origin sent an interim (1xx) response, `raw` being its head.
    async fn interim(&mut self, head: &ResponseHead, raw: &[u8]) -> io::Result<()>;

    /// The origin's final response head (parsed from `raw`): renders whatever the viewer
    /// sends before the body into `out` (an HTTP/1.1 head; nothing for HTTP/2, which keeps
    /// the head for its HEADERS frame) and says how the body should be framed.
    fn start_response(&mut self, head: &ResponseHead, raw: &[u8], out: &mut Vec<u8>) -> BodyMode;

    /// Sends the next bytes of the response (the first call carries what `start_response`
    /// rendered).
    async fn send(&mut self, data: &[u8], piece: Piece) -> io::Result<()>;

    /// Answers with an error status instead of a response (nothing was sent yet).
    async fn refuse(&mut self, status: Status) -> io::Result<()>;
}

/// The buffers one request in flight uses, from the worker's pool: the origin request head
/// (later the viewer's response head), request body pieces and the origin's response.
#[derive(Debug)]
pub struct ExchangeBuffers<'p> {
    pool: &'p BufferPool,
    /// The request holds one of the worker's requests in flight (a pool lease).
    leased: bool,
    /// The origin request head, then the head (and first body piece) for the viewer.
    pub head: Vec<u8>,
    /// Request body pieces (full length once [`Self::acquire_body`] took it: reads go into
    /// slices of it); empty for a request without a body.
    pub body: Vec<u8>,
    /// The origin's response.
    pub response: Vec<u8>,
}

impl<'p> ExchangeBuffers<'p> {
    /// No buffers yet (an idle connection holds none).
    pub fn new(pool: &'p BufferPool) -> Self {
        Self {
            pool,
            leased: false,
            head: Vec::new(),
            body: Vec::new(),
            response: Vec::new(),
        }
    }

    /// Borrows the buffers every request needs (the head and the response; the body buffer
    /// only with [`Self::acquire_body`], when a body comes), counting the request against the
    /// worker's `limit` of requests in flight. `false` (nothing borrowed): the worker has
    /// `limit` requests in flight already; the request must be refused (503).
    #[must_use]
    pub fn acquire(&mut self, limit: usize) -> bool {
        if !self.leased {
            if !self.pool.lease(limit) {
                return false;
            }
            self.leased = true;
        }
        if self.head.capacity() < BODY_BUFFER {
            self.head = self.pool.take_empty();
        }
        if self.response.capacity() < BODY_BUFFER {
            self.response = self.pool.take_empty();
        }
        true
    }

    /// Borrows the request body buffer, at full length.
    pub fn acquire_body(&mut self) {
        if self.body.len() < BODY_BUFFER {
            self.body = self.pool.take_full();
        }
    }

    /// Gives them back between requests, and ends the request's count.
    pub fn release(&mut self) {
        if std::mem::take(&mut self.leased) {
            self.pool.end_lease();
        }
        self.pool.give(std::mem::take(&mut self.head));
        self.pool.give(std::mem::take(&mut self.body));
        self.pool.give(std::mem::take(&mut self.response));
    }
}

impl Drop for ExchangeBuffers<'_> {
    fn drop(&mut self) {
        self.release();
    }
}

/// How a forwarded request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Forwarded {
    /// The status the viewer got.
    pub status: Status,
    /// The origin address and the time from connecting to its response head, if it answered.
    pub origin: Option<(SocketAddr, Duration)>,
    /// The response reached the viewer whole and well-framed (the viewer connection may
    /// carry another request).
    pub complete: bool,
}

impl Forwarded {
    /// A canned answer of the proxy's own: complete as a response (HTTP/1.1 closes the
    /// connection after it all the same: its viewer's `refuse` says so).
    fn refused(status: Status) -> Self {
        Self {
            status,
            origin: None,
            complete: true,
        }
    }
}

/// Why the exchange with the origin failed, before anything was sent to the viewer.
enum OriginFailure {
    /// Nothing came back from a reused connection: safe to try once more on a new one.
    Retry,
    /// Answer the viewer with this status.
    Status(Status),
}

/// Forwards one request, whose origin head (with any body bytes already at hand) is in
/// `bufs.head`, and its response. `replayable`: the request may be sent again after a
/// reused origin connection closed without answering (the whole request is in `bufs.head`
/// and sending it twice is harmless). `is_head`: the request is HEAD (no response body).
/// `Err` means the viewer went away (or stopped reading for `send`).
pub async fn forward<V: Viewer>(
    viewer: &mut V,
    x: &Exchange<'_>,
    bufs: &mut ExchangeBuffers<'_>,
    replayable: bool,
    is_head: bool,
) -> io::Result<Forwarded> {
    let timeouts = &x.server.timeouts;
    let mut fresh = false;
    let origin_started = Instant::now();
    let (mut origin, response) = loop {
        let connected = if fresh {
            OriginPool::connect(&x.origin.addrs, timeouts.origin_connect).await
        } else {
            x.pool.get(&x.origin.addrs, timeouts.origin_connect).await
        };
        let mut origin = match connected {
            Ok(conn) => conn,
            Err(ConnectError::TimedOut) => return refuse(viewer, Status::GATEWAY_TIMEOUT).await,
            Err(ConnectError::Unreachable(e)) => {
                tracing::debug!(error = %e, "origin unreachable");
                return refuse(viewer, Status::BAD_GATEWAY).await;
            }
        };
        let may_retry = origin.reused && replayable && !fresh;
        match send_request(viewer, &mut origin, x, bufs, may_retry).await? {
            Ok(()) => {}
            Err(OriginFailure::Retry) => {
                fresh = true;
                continue;
            }
            Err(OriginFailure::Status(status)) => return refuse(viewer, status).await,
        }
        match read_response_head(viewer, &mut origin, is_head, x, bufs, may_retry).await? {
            Ok(response) => break (origin, response),
            Err(OriginFailure::Retry) => fresh = true,
            Err(OriginFailure::Status(status)) => return refuse(viewer, status).await,
        }
    };
    let answered = Some((origin.addr(), origin_started.elapsed()));
    let status = Status::new(response.status).unwrap_or(Status::BAD_GATEWAY);
    let ended = |complete| Forwarded {
        status,
        origin: answered,
        complete,
    };

    bufs.head.clear();
    let mode = viewer.start_response(&response, &bufs.response, &mut bufs.head);
    let head_len = bufs.head.len();
    bufs.response.drain(..response.header_len);
    let mut body = BodyState::new(response.framing);
    let mut surplus = false;
    let mut first = true;
    loop {
        // The piece to send: the origin's bytes as they are, or their payload appended to
        // `bufs.head` (after the head on the first round).
        if !first {
            bufs.head.clear();
        }
        let taken = match mode {
            BodyMode::Framed => body.take(&bufs.response),
            BodyMode::Payload => body.take_dechunked(&bufs.response, &mut bufs.head),
        };
        let taken = match taken {
            Ok(n) => n,
            Err(e) => {
                tracing::debug!(error = %e, "origin sent a malformed body");
                if first && head_len > 0 {
                    // The head alone, so the viewer sees the status it was logged with.
                    viewer.send(&bufs.head[..head_len], Piece::Flush).await?;
                }
                return Ok(ended(false));
            }
        };
        surplus |= taken < bufs.response.len();
        let done = body.is_done();
        let piece = if done { Piece::Last } else { Piece::Flush };
        match mode {
            BodyMode::Payload => viewer.send(&bufs.head, piece).await?,
            BodyMode::Framed if first && head_len + taken <= ONE_RECORD => {
                // A small response leaves as one TLS record: head and body in one write.
                bufs.head.extend_from_slice(&bufs.response[..taken]);
                viewer.send(&bufs.head, piece).await?;
            }
            BodyMode::Framed => {
                if first {
                    viewer.send(&bufs.head[..head_len], Piece::Queued).await?;
                }
                viewer.send(&bufs.response[..taken], piece).await?;
            }
        }
        first = false;
        if done {
            break;
        }
        bufs.response.clear();
        let limit = body.read_limit(BODY_BUFFER);
        let buf = std::mem::take(&mut bufs.response).slice_mut(0..limit);
        match monoio::time::timeout(timeouts.origin_response, origin.stream.read(buf)).await {
            Ok((Ok(0), buf)) => {
                bufs.response = buf.into_inner();
                if matches!(body, BodyState::UntilClose) {
                    // The end of an until-close body.
                    viewer.send(&[], Piece::Last).await?;
                    return Ok(ended(true));
                }
                tracing::debug!("origin closed in the middle of a response body");
                return Ok(ended(false));
            }
            Ok((Ok(_), buf)) => bufs.response = buf.into_inner(),
            Ok((Err(e), _)) => {
                tracing::debug!(error = %e, "origin read failed mid-body");
                bufs.response = Vec::new();
                return Ok(ended(false));
            }
            Err(_) => {
                tracing::debug!("origin timed out mid-body");
                bufs.response = Vec::new();
                return Ok(ended(false));
            }
        }
    }
    if response.origin_keep_alive && !surplus {
        x.pool.put(origin);
    }
    Ok(ended(true))
}

async fn refuse<V: Viewer>(viewer: &mut V, status: Status) -> io::Result<Forwarded> {
    viewer.refuse(status).await?;
    Ok(Forwarded::refused(status))
}

/// Sends the request head (with any buffered body) and streams the rest of the body.
async fn send_request<V: Viewer>(
    viewer: &mut V,
    origin: &mut OriginConn,
    x: &Exchange<'_>,
    bufs: &mut ExchangeBuffers<'_>,
    may_retry: bool,
) -> io::Result<Result<(), OriginFailure>> {
    let timeouts = &x.server.timeouts;
    let len = bufs.head.len();
    let (sent, head) = write_timeout::write_all(
        &mut origin.stream,
        std::mem::take(&mut bufs.head),
        0..len,
        timeouts.origin_response,
    )
    .await;
    bufs.head = head;
    if let Err(e) = sent {
        tracing::debug!(error = %e, "writing to origin failed");
        return Ok(Err(if e.kind() == io::ErrorKind::TimedOut {
            OriginFailure::Status(Status::GATEWAY_TIMEOUT)
        } else if may_retry {
            OriginFailure::Retry
        } else {
            OriginFailure::Status(Status::BAD_GATEWAY)
        }));
    }
    if !viewer.body_done() {
        bufs.acquire_body();
    }
    while !viewer.body_done() {
        let n = match viewer.request_body(&mut bufs.body).await? {
            Ok(n) => n,
            Err(status) => return Ok(Err(OriginFailure::Status(status))),
        };
        if n == 0 {
            continue;
        }
        let (sent, chunk) = write_timeout::write_all(
            &mut origin.stream,
            std::mem::take(&mut bufs.body),
            0..n,
            timeouts.origin_response,
        )
        .await;
        bufs.body = chunk;
        if let Err(e) = sent {
            tracing::debug!(error = %e, "streaming the request body to the origin failed");
            return Ok(Err(OriginFailure::Status(
                if e.kind() == io::ErrorKind::TimedOut {
                    Status::GATEWAY_TIMEOUT
                } else {
                    Status::BAD_GATEWAY
                },
            )));
        }
    }
    Ok(Ok(()))
}

/// Reads the origin's final response head into `bufs.response`, relaying interim (1xx)
/// responses to the viewer.
async fn read_response_head<V: Viewer>(
    viewer: &mut V,
    origin: &mut OriginConn,
    is_head: bool,
    x: &Exchange<'_>,
    bufs: &mut ExchangeBuffers<'_>,
    may_retry: bool,
) -> io::Result<Result<ResponseHead, OriginFailure>> {
    let deadline = Instant::now() + x.server.timeouts.origin_response;
    bufs.response.clear();
    let mut received_any = false;
    loop {
        if !bufs.response.is_empty() {
            match http::parse_response_head(&bufs.response, is_head) {
                Ok(Some(head)) if head.is_interim() => {
                    viewer
                        .interim(&head, &bufs.response[..head.header_len])
                        .await?;
                    bufs.response.drain(..head.header_len);
                    continue;
                }
                Ok(Some(head)) => return Ok(Ok(head)),
                Ok(None) => {}
                Err(e) => {
                    tracing::debug!(error = %e, "origin sent a malformed response head");
                    return Ok(Err(OriginFailure::Status(Status::BAD_GATEWAY)));
                }
            }
        }
        let len = bufs.response.len();
        if len == bufs.response.capacity() {
            if len >= BODY_BUFFER {
                tracing::debug!("origin response head too large");
                return Ok(Err(OriginFailure::Status(Status::BAD_GATEWAY)));
            }
            bufs.response.reserve(BODY_BUFFER - len);
        }
        let cap = bufs.response.capacity();
        let buf = std::mem::take(&mut bufs.response).slice_mut(len..cap);
        let wait = deadline.saturating_duration_since(Instant::now());
        match monoio::time::timeout(wait.max(Duration::from_millis(1)), origin.stream.read(buf))
            .await
        {
            Ok((Ok(0), buf)) => {
                bufs.response = buf.into_inner();
                return Ok(Err(if may_retry && !received_any {
                    OriginFailure::Retry
                } else {
                    OriginFailure::Status(Status::BAD_GATEWAY)
                }));
            }
            Ok((Ok(_), buf)) => {
                bufs.response = buf.into_inner();
                received_any = true;
            }
            Ok((Err(e), buf)) => {
                bufs.response = buf.into_inner();
                tracing::debug!(error = %e, "reading from origin failed");
                return Ok(Err(if may_retry && !received_any {
                    OriginFailure::Retry
                } else {
                    OriginFailure::Status(Status::BAD_GATEWAY)
                }));
            }
            Err(_) => {
                bufs.response = Vec::new();
                return Ok(Err(OriginFailure::Status(Status::GATEWAY_TIMEOUT)));
            }
        }
    }
}
