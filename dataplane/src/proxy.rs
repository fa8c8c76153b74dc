//! HTTP/1.1 reverse proxying of one client connection to its site's origin.
//!
//! Requests are handled strictly in order (pipelined requests wait in the client buffer).
//! Bodies stream both ways through fixed buffers, never buffered whole. The viewer-cert header
//! block was rendered once for the connection and is appended to every request; client copies
//! of those headers are dropped by the request rewriter.
//!
//! Every request must name a host its connection's site serves (421 otherwise: the SNI chose
//! the mTLS policy). Every wait is bounded: the request head by `header_read` (the first one
//! from the end of the handshake), request bodies by `header_read` per read and by a minimum
//! rate, origin writes and reads by `origin_response`, and writes to the client by `send`, so
//! a client or origin that stops cannot hold the other side. Only idempotent requests are
//! sent again after a reused origin connection failed without answering.

use std::io;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use monoio::buf::IoBufMut;
use monoio::io::{AsyncReadRent, AsyncWriteRent};
use portcullis_config::{Origin, ServerSettings, Snapshot};

use crate::buffer_pool::{BufferPool, BUFFER_SIZE};
use crate::http::chunked::END_OF_TRAILERS;
use crate::http::{self, BodyFraming, ChunkedDecoder, HttpError, RequestHead};
use crate::notify::LocalNotify;
use crate::origin_pool::{ConnectError, OriginConn, OriginPool};
use crate::shutdown::Shutdown;
use crate::telemetry::access::{HeadView, RequestObserver, RequestOutcome};
use crate::tls::stream::Readiness;
use crate::tls::{OpenIdentity, TlsStream};
use crate::write_timeout;

/// Size of the buffers that carry bodies and response heads.
const BODY_BUFFER: usize = BUFFER_SIZE;
/// Interim response sent when a client waits for permission to send its body.
const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

/// Everything a connection's requests need besides the TLS stream.
#[derive(Debug)]
pub struct Exchange<'a> {
    /// The configuration the connection was accepted under (for the Host check).
    pub config: &'a Snapshot,
    /// Index of the site the connection's SNI selected.
    pub site: usize,
    /// The `Host` sent to the origin for a request without one (HTTP/1.0): the SNI name or
    /// the site's first exact server name; empty if neither exists (such requests get 400).
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

/// Whether the client connection can carry another request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Next {
    KeepAlive,
    Close,
}

/// How a request ended: what the connection does next and what the client got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Sent {
    next: Next,
    outcome: RequestOutcome,
}

impl Sent {
    /// Closing after a response with `status` from the origin at `origin`.
    fn close(status: u16, origin: Option<(std::net::SocketAddr, Duration)>) -> Self {
        Self {
            next: Next::Close,
            outcome: RequestOutcome { status, origin },
        }
    }
}

/// Serves requests from `tls` until the client closes, an error ends the connection, or
/// shutdown catches it idle.
pub async fn serve<T>(tls: &mut TlsStream<T>, x: &Exchange<'_>) -> io::Result<()>
where
    T: AsyncReadRent + AsyncWriteRent + Readiness,
{
    let mut buffers = Buffers::new(x.server.limits.max_header_bytes, x.buffers);
    let mut first = true;
    loop {
        x.observer.between_requests(tls.bytes());
        let head = match read_request_head(tls, &mut buffers.client, x, first).await? {
            HeadOutcome::Head(head) => head,
            HeadOutcome::Closed => return Ok(()),
            HeadOutcome::Refuse(status) => {
                x.observer.started(None);
                return answer_request(tls, x, status).await;
            }
        };
        first = false;
        let data = buffers.client.data();
        let view = HeadView {
            method: head.method(data),
            host: head.host.map(|h| h.get(data)),
            path: head.path(data),
            minor_version: head.version,
        };
        x.observer.started(Some(view));
        if x.identity
            .is_some_and(OpenIdentity::revoked_since_last_check)
        {
            tracing::info!("client certificate revoked on an open connection; closing");
            return answer_request(tls, x, 403).await;
        }
        if let Err(status) = check_host(&head, buffers.client.data(), x) {
            return answer_request(tls, x, status).await;
        }
        buffers.acquire();
        // Boxed: the forwarding state (origin connect, request and response streaming) lives
        // on the heap only while a request is in flight, so an idle connection's task is
        // small.
        let sent = Box::pin(forward(tls, &head, x, &mut buffers)).await;
        buffers.release();
        let sent = match sent {
            Ok(sent) => sent,
            Err(e) => {
                // The client went away mid-request: logged as 499 (client closed request).
                x.observer
                    .finished(RequestOutcome::status(499), tls.bytes());
                return Err(e);
            }
        };
        x.observer.finished(sent.outcome, tls.bytes());
        if sent.next == Next::Close {
            return Ok(());
        }
    }
}

/// [`answer_and_close`] for the request in flight, reporting it as its outcome.
async fn answer_request<T>(tls: &mut TlsStream<T>, x: &Exchange<'_>, status: u16) -> io::Result<()>
where
    T: AsyncReadRent + AsyncWriteRent + Readiness,
{
    let sent = answer_and_close(tls, status).await;
    x.observer
        .finished(RequestOutcome::status(status), tls.bytes());
    sent
}

/// Sends a canned error response; the connection closes after it. Boxed: the send (with its
/// time-out) would otherwise enlarge every idle connection's task for a rare event.
async fn answer_and_close<T>(tls: &mut TlsStream<T>, status: u16) -> io::Result<()>
where
    T: AsyncReadRent + AsyncWriteRent + Readiness,
{
    Box::pin(tls.write_all(http::error_response(status))).await
}

/// Checks that the request names a host the connection's site serves: the absolute-form
/// target's authority and the `Host` field, whichever are present (both when both are). 421
/// when another site serves it (its policy did not run for this connection), 400 for a
/// malformed one or for a request naming no host on a site with no name to give it.
fn check_host(head: &RequestHead, buf: &[u8], x: &Exchange<'_>) -> Result<(), u16> {
    for authority in [head.authority(buf), head.host(buf)].into_iter().flatten() {
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
            return Err(421);
        }
    }
    if head.host.is_none() && head.authority.is_none() && x.fallback_host.is_empty() {
        tracing::info!("request refused: no Host, and the site has no name to give it");
        return Err(400);
    }
    Ok(())
}

/// The buffers of one connection. The client buffer lives with the connection; the head, body
/// and response buffers are borrowed from the worker's pool for each request, so an idle
/// connection holds none of them.
struct Buffers<'p> {
    pool: &'p BufferPool,
    client: ClientBuffer,
    head: Vec<u8>,
    body: Vec<u8>,
    response: Vec<u8>,
}

impl<'p> Buffers<'p> {
    fn new(max_header_bytes: usize, pool: &'p BufferPool) -> Self {
        Self {
            pool,
            client: ClientBuffer::new(max_header_bytes),
            head: Vec::new(),
            body: Vec::new(),
            response: Vec::new(),
        }
    }

    /// Borrows the head, body and response buffers for a request.
    fn acquire(&mut self) {
        if self.head.capacity() < BODY_BUFFER {
            self.head = self.pool.take_empty();
        }
        if self.body.len() < BODY_BUFFER {
            self.body = self.pool.take_full();
        }
        if self.response.capacity() < BODY_BUFFER {
            self.response = self.pool.take_empty();
        }
    }

    /// Gives them back between requests.
    fn release(&mut self) {
        self.pool.give(std::mem::take(&mut self.head));
        self.pool.give(std::mem::take(&mut self.body));
        self.pool.give(std::mem::take(&mut self.response));
    }
}

impl Drop for Buffers<'_> {
    fn drop(&mut self) {
        self.release();
    }
}

/// Bytes read from the client and not yet consumed: the next request head, or the start of
/// a pipelined request that arrived with the previous body.
struct ClientBuffer {
    buf: Vec<u8>,
    start: usize,
    end: usize,
    /// Size the buffer may grow to for a request head (`max_header_bytes`).
    limit: usize,
}

/// A connection's client buffer is allocated this small when a request arrives (an idle
/// connection holds none) and grows up to the request-head limit when a head needs it.
const INITIAL_CLIENT_BUFFER: usize = 2048;

impl ClientBuffer {
    fn new(limit: usize) -> Self {
        Self {
            buf: Vec::new(),
            start: 0,
            end: 0,
            limit,
        }
    }

    /// Frees the buffer while the connection waits idle (it is empty then).
    fn release_if_empty(&mut self) {
        if self.is_empty() {
            self.buf = Vec::new();
        }
    }

    fn data(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }

    fn is_empty(&self) -> bool {
        self.start == self.end
    }

    fn consume(&mut self, n: usize) {
        self.start += n.min(self.end - self.start);
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
    }

    /// Free space at the end, after moving unconsumed bytes to the front or growing the
    /// buffer (up to the limit) if needed.
    fn spare(&mut self) -> &mut [u8] {
        if self.buf.is_empty() {
            self.buf = vec![0; INITIAL_CLIENT_BUFFER.min(self.limit)];
        }
        if self.end == self.buf.len() {
            if self.start > 0 {
                self.buf.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            } else if self.buf.len() < self.limit {
                let grown = (self.buf.len() * 2).clamp(INITIAL_CLIENT_BUFFER, self.limit);
                self.buf.resize(grown, 0);
            }
        }
        &mut self.buf[self.end..]
    }

    /// Keeps bytes that arrived after a request body (pipelining).
    fn append(&mut self, bytes: &[u8]) {
        if self.buf.len() - self.end < bytes.len() {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
            if self.buf.len() - self.end < bytes.len() {
                self.buf.resize(self.end + bytes.len(), 0);
            }
        }
        self.buf[self.end..self.end + bytes.len()].copy_from_slice(bytes);
        self.end += bytes.len();
    }
}

/// How long an idle keep-alive connection stays open once the worker drains, for a request
/// the client may already have sent.
const DRAIN_IDLE_GRACE: Duration = Duration::from_secs(1);

enum HeadOutcome {
    Head(RequestHead),
    Closed,
    Refuse(u16),
}

async fn read_request_head<T>(
    tls: &mut TlsStream<T>,
    client: &mut ClientBuffer,
    x: &Exchange<'_>,
    first: bool,
) -> io::Result<HeadOutcome>
where
    T: AsyncReadRent + AsyncWriteRent + Readiness,
{
    let limits = &x.server.limits;
    let timeouts = &x.server.timeouts;
    let mut deadline: Option<Instant> = None;
    let mut idle_deadline: Option<Instant> = None;
    let mut drain_deadline: Option<Instant> = None;
    if first {
        // The first request has `header_read` from the end of the handshake for all of it:
        // waiting for its first byte and reading the rest share one deadline.
        let at = Instant::now() + timeouts.header_read;
        deadline = Some(at);
        idle_deadline = Some(at);
    }
    loop {
        if !client.is_empty() {
            match http::parse_request_head(client.data(), limits.max_header_count) {
                Ok(Some(head)) => return Ok(HeadOutcome::Head(head)),
                Ok(None) if client.data().len() >= limits.max_header_bytes => {
                    return Ok(HeadOutcome::Refuse(431))
                }
                Ok(None) => {}
                Err(e) => return Ok(HeadOutcome::Refuse(e.status())),
            }
        }
        let idle = client.is_empty();
        let draining = x.shutdown.is_fired();
        let wait = if idle {
            let mut at =
                *idle_deadline.get_or_insert_with(|| Instant::now() + timeouts.idle_keepalive);
            if draining {
                // Draining (SIGTERM, or a binary upgrade handed over): a client that already
                // sent its next request, or sends it on the response it just got, has it
                // answered (with `Connection: close`) instead of finding the connection
                // reset under it; a quiet connection closes after the grace.
                at = at
                    .min(*drain_deadline.get_or_insert_with(|| Instant::now() + DRAIN_IDLE_GRACE));
            }
            at.saturating_duration_since(Instant::now())
        } else {
            let at = *deadline.get_or_insert_with(|| Instant::now() + timeouts.header_read);
            at.saturating_duration_since(Instant::now())
        };
        if idle {
            // Wait for the next request holding no buffer at all.
            client.release_if_empty();
            let revocation_news = x.revocations.changed_since(x.revocations.generation());
            let revoked = async {
                match x.identity {
                    Some(identity) => {
                        revocation_news.await;
                        identity.revoked_since_last_check()
                    }
                    None => std::future::pending().await,
                }
            };
            monoio::select! {
                r = monoio::time::timeout(wait, tls.wait_readable()) => match r {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => return Err(e),
                    Err(_) => return Ok(HeadOutcome::Closed),
                },
                _ = x.shutdown.wait(), if !draining => continue,
                revoked = revoked => {
                    if revoked {
                        tracing::info!("client certificate revoked on an idle connection; closing");
                        return Ok(HeadOutcome::Closed);
                    }
                    // Revocation data changed without touching this client: keep waiting.
                    continue;
                }
            }
        }
        let spare = client.spare();
        let read = monoio::time::timeout(wait, tls.read(spare)).await;
        match read {
            Ok(Ok(0)) => return Ok(HeadOutcome::Closed),
            Ok(Ok(n)) => client.end += n,
            Ok(Err(e)) => return Err(e),
            Err(_) if idle => return Ok(HeadOutcome::Closed),
            Err(_) => return Ok(HeadOutcome::Refuse(408)),
        }
    }
}

/// How much of a body is still to come.
enum BodyState {
    Done,
    Remaining(u64),
    Chunked(ChunkedDecoder),
    UntilClose,
}

impl BodyState {
    fn new(framing: BodyFraming) -> Self {
        match framing {
            BodyFraming::None | BodyFraming::ContentLength(0) => Self::Done,
            BodyFraming::ContentLength(n) => Self::Remaining(n),
            BodyFraming::Chunked => Self::Chunked(ChunkedDecoder::new()),
            BodyFraming::UntilClose => Self::UntilClose,
        }
    }

    fn is_done(&self) -> bool {
        matches!(self, Self::Done)
    }

    /// How many of `data`'s leading bytes belong to the body.
    fn take(&mut self, data: &[u8]) -> Result<usize, HttpError> {
        let taken = match self {
            Self::Done => 0,
            Self::Remaining(n) => {
                let t = data.len().min(usize::try_from(*n).unwrap_or(usize::MAX));
                *n -= t as u64;
                if *n == 0 {
                    *self = Self::Done;
                }
                t
            }
            Self::Chunked(decoder) => {
                let (used, complete) = decoder.advance(data)?;
                if complete {
                    *self = Self::Done;
                }
                used
            }
            Self::UntilClose => data.len(),
        };
        Ok(taken)
    }

    /// Like [`take`](Self::take), for a request body on its way to the origin: chunked trailers
    /// are dropped (RFC 9110 section 6.5.1: fields such as `Content-Length`, `Host` or a forged
    /// viewer-cert header must not reach the origin as trailers, and origins do not ask for
    /// request trailers). Forward `data[..forward]`, then `end`.
    fn take_request(&mut self, data: &[u8]) -> Result<RequestBytes, HttpError> {
        if let Self::Chunked(decoder) = self {
            let (used, forward, complete) = decoder.advance_dropping_trailers(data)?;
            if complete {
                *self = Self::Done;
            }
            let end = if complete { END_OF_TRAILERS } else { b"" };
            return Ok(RequestBytes { used, forward, end });
        }
        let used = self.take(data)?;
        Ok(RequestBytes {
            used,
            forward: used,
            end: b"",
        })
    }

    /// Like [`take`](Self::take), also appending the body's payload to `payload`, without the
    /// chunked framing (for HTTP/1.0 clients, which do not understand it).
    fn take_dechunked(&mut self, data: &[u8], payload: &mut Vec<u8>) -> Result<usize, HttpError> {
        match self {
            Self::Chunked(decoder) => {
                let (used, complete) =
                    decoder.advance_payload(data, |run| payload.extend_from_slice(run))?;
                if complete {
                    *self = Self::Done;
                }
                Ok(used)
            }
            _ => {
                let taken = self.take(data)?;
                payload.extend_from_slice(&data[..taken]);
                Ok(taken)
            }
        }
    }

    /// How much to read next so that no byte past the body is read when its length is known.
    fn read_limit(&self, capacity: usize) -> usize {
        match self {
            Self::Remaining(n) => capacity.min(usize::try_from(*n).unwrap_or(usize::MAX)),
            _ => capacity,
        }
    }
}

/// What [`BodyState::take_request`] made of some request bytes.
struct RequestBytes {
    /// Bytes that belong to the body (the rest belongs to the next request).
    used: usize,
    /// Leading bytes to forward to the origin (`forward <= used`).
    forward: usize,
    /// Bytes to send after them (the end of a chunked body whose trailers were dropped).
    end: &'static [u8],
}

/// Why the exchange with the origin failed, before anything was sent to the client.
enum OriginFailure {
    /// Nothing came back from a reused connection: safe to try once more on a new one.
    Retry,
    /// Answer the client with this status and close.
    Status(u16),
}

/// Forwards one request and its response.
async fn forward<T>(
    tls: &mut TlsStream<T>,
    head: &RequestHead,
    x: &Exchange<'_>,
    bufs: &mut Buffers<'_>,
) -> io::Result<Sent>
where
    T: AsyncReadRent + AsyncWriteRent + Readiness,
{
    bufs.head.clear();
    let fallback_host = head
        .authority(bufs.client.data())
        .unwrap_or(x.fallback_host);
    http::write_origin_request(
        head,
        bufs.client.data(),
        x.client_ip,
        x.viewer_headers,
        fallback_host,
        &mut bufs.head,
    );
    x.observer.add_origin_header(&mut bufs.head);
    bufs.client.consume(head.header_len);
    let mut request_body = BodyState::new(head.framing);
    let buffered = match request_body.take_request(bufs.client.data()) {
        Ok(taken) => taken,
        Err(e) => return refuse(tls, e.status()).await,
    };
    bufs.head
        .extend_from_slice(&bufs.client.data()[..buffered.forward]);
    bufs.head.extend_from_slice(buffered.end);
    bufs.client.consume(buffered.used);
    if head.expect_continue && !request_body.is_done() {
        tls.write_all(CONTINUE).await?;
    }
    // The whole request is in `bufs.head` when the body was empty or already buffered: only
    // then can it be sent again after a reused origin connection turned out to be closed, and
    // only if sending it twice is harmless (the origin may have processed it before closing).
    let replayable = request_body.is_done() && head.idempotent;
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
            Err(ConnectError::TimedOut) => return refuse(tls, 504).await,
            Err(ConnectError::Unreachable(e)) => {
                tracing::debug!(error = %e, "origin unreachable");
                return refuse(tls, 502).await;
            }
        };
        let may_retry = origin.reused && replayable && !fresh;
        match send_request(tls, &mut origin, &mut request_body, x, bufs, may_retry).await? {
            Ok(()) => {}
            Err(OriginFailure::Retry) => {
                fresh = true;
                continue;
            }
            Err(OriginFailure::Status(status)) => return refuse(tls, status).await,
        }
        match read_response_head(tls, &mut origin, head, x, bufs, may_retry).await? {
            Ok(response) => break (origin, response),
            Err(OriginFailure::Retry) => fresh = true,
            Err(OriginFailure::Status(status)) => return refuse(tls, status).await,
        }
    };
    let answered = Some((origin.addr(), origin_started.elapsed()));

    // An HTTP/1.0 client cannot read chunked bodies: it gets the payload and a close.
    let http10 = head.version == 0;
    let dechunk = http10 && matches!(response.framing, BodyFraming::Chunked);
    let client_keep_alive = head.keep_alive
        && !x.shutdown.is_fired()
        && !dechunk
        && !matches!(response.framing, BodyFraming::UntilClose);
    bufs.head.clear();
    if http10 {
        http::write_client_response_head_http10(
            &response,
            &bufs.response,
            client_keep_alive,
            &mut bufs.head,
        );
    } else {
        http::write_client_response_head(
            &response,
            &bufs.response,
            client_keep_alive,
            &mut bufs.head,
        );
    }
    // The head leaves with the first piece of the body, in one send.
    tls.feed(&bufs.head).await?;
    bufs.response.drain(..response.header_len);

    let mut response_body = BodyState::new(response.framing);
    let mut surplus = false;
    loop {
        bufs.head.clear();
        let taken = if dechunk {
            response_body.take_dechunked(&bufs.response, &mut bufs.head)
        } else {
            response_body.take(&bufs.response)
        };
        let taken = match taken {
            Ok(n) => n,
            Err(e) => {
                tracing::debug!(error = %e, "origin sent a malformed body");
                return Ok(Sent::close(response.status, answered));
            }
        };
        let forward = if dechunk {
            &bufs.head[..]
        } else {
            &bufs.response[..taken]
        };
        surplus |= taken < bufs.response.len();
        if response_body.is_done() {
            if client_keep_alive {
                tls.write_all(forward).await?;
            } else {
                // The close_notify that follows leaves in the same send.
                tls.feed(forward).await?;
            }
            break;
        }
        tls.write_all(forward).await?;
        bufs.response.clear();
        let limit = response_body.read_limit(BODY_BUFFER);
        let buf = std::mem::take(&mut bufs.response).slice_mut(0..limit);
        match monoio::time::timeout(timeouts.origin_response, origin.stream.read(buf)).await {
            Ok((Ok(0), buf)) => {
                bufs.response = buf.into_inner();
                // The end of an until-close body; for any other framing, a truncated one.
                if !matches!(response_body, BodyState::UntilClose) {
                    tracing::debug!("origin closed in the middle of a response body");
                }
                return Ok(Sent::close(response.status, answered));
            }
            Ok((Ok(_), buf)) => bufs.response = buf.into_inner(),
            Ok((Err(e), _)) => {
                tracing::debug!(error = %e, "origin read failed mid-body");
                bufs.response = Vec::new();
                return Ok(Sent::close(response.status, answered));
            }
            Err(_) => {
                tracing::debug!("origin timed out mid-body");
                bufs.response = Vec::new();
                return Ok(Sent::close(response.status, answered));
            }
        }
    }
    if response.origin_keep_alive && !surplus {
        x.pool.put(origin);
    }
    Ok(Sent {
        next: if client_keep_alive {
            Next::KeepAlive
        } else {
            Next::Close
        },
        outcome: RequestOutcome {
            status: response.status,
            origin: answered,
        },
    })
}

/// Sends the request head (with any buffered body) and streams the rest of the body.
async fn send_request<T>(
    tls: &mut TlsStream<T>,
    origin: &mut OriginConn,
    body: &mut BodyState,
    x: &Exchange<'_>,
    bufs: &mut Buffers<'_>,
    may_retry: bool,
) -> io::Result<Result<(), OriginFailure>>
where
    T: AsyncReadRent + AsyncWriteRent + Readiness,
{
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
            OriginFailure::Status(504)
        } else if may_retry {
            OriginFailure::Retry
        } else {
            OriginFailure::Status(502)
        }));
    }
    let mut pace = BodyPace::new(x.server);
    while !body.is_done() {
        let limit = body.read_limit(bufs.body.len());
        let Some(wait) = pace.next_wait() else {
            tracing::info!(
                received = pace.received,
                "request body slower than min_request_body_rate; closing"
            );
            return Ok(Err(OriginFailure::Status(408)));
        };
        let started = Instant::now();
        let read = monoio::time::timeout(wait, tls.read(&mut bufs.body[..limit])).await;
        pace.waited += started.elapsed();
        let n = match read {
            Ok(Ok(0)) | Ok(Err(_)) => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "client closed during the request body",
                ))
            }
            Ok(Ok(n)) => n,
            Err(_) => {
                if pace.next_wait().is_none() {
                    tracing::info!(
                        received = pace.received,
                        "request body slower than min_request_body_rate; closing"
                    );
                } else {
                    tracing::info!(
                        received = pace.received,
                        "request body stalled for header_read; closing"
                    );
                }
                return Ok(Err(OriginFailure::Status(408)));
            }
        };
        pace.received += n as u64;
        let taken = match body.take_request(&bufs.body[..n]) {
            Ok(t) => t,
            Err(e) => return Ok(Err(OriginFailure::Status(e.status()))),
        };
        if taken.used < n {
            bufs.client.append(&bufs.body[taken.used..n]);
        }
        // The end of a chunked body whose trailers were dropped replaces (part of) those
        // trailers: `forward + end.len() <= used` (the final CRLF itself was consumed).
        let end = taken.forward + taken.end.len();
        bufs.body[taken.forward..end].copy_from_slice(taken.end);
        let (sent, chunk) = write_timeout::write_all(
            &mut origin.stream,
            std::mem::take(&mut bufs.body),
            0..end,
            timeouts.origin_response,
        )
        .await;
        bufs.body = chunk;
        if let Err(e) = sent {
            tracing::debug!(error = %e, "streaming the request body to the origin failed");
            return Ok(Err(OriginFailure::Status(
                if e.kind() == io::ErrorKind::TimedOut {
                    504
                } else {
                    502
                },
            )));
        }
    }
    Ok(Ok(()))
}

/// How long a request body may still take: `header_read` per read, and in all at most
/// `request_body` plus one second per `min_request_body_rate` bytes received, counting only
/// the time spent waiting for the client (not for a slow origin to take the bytes).
struct BodyPace {
    per_read: Duration,
    allowance: Duration,
    rate: u64,
    waited: Duration,
    received: u64,
}

impl BodyPace {
    fn new(server: &ServerSettings) -> Self {
        Self {
            per_read: server.timeouts.header_read,
            allowance: server.timeouts.request_body,
            rate: server.limits.min_request_body_rate,
            waited: Duration::ZERO,
            received: 0,
        }
    }

    /// The longest the next read may wait, or None when the body is already too slow.
    fn next_wait(&self) -> Option<Duration> {
        if self.rate == 0 {
            return Some(self.per_read);
        }
        let earned = Duration::from_millis(self.received.saturating_mul(1000) / self.rate);
        let left = (self.allowance + earned).checked_sub(self.waited)?;
        (!left.is_zero()).then(|| left.min(self.per_read))
    }
}

/// Reads the origin's final response head into `bufs.response`, relaying interim (1xx)
/// responses to the client.
async fn read_response_head<T>(
    tls: &mut TlsStream<T>,
    origin: &mut OriginConn,
    request: &RequestHead,
    x: &Exchange<'_>,
    bufs: &mut Buffers<'_>,
    may_retry: bool,
) -> io::Result<Result<http::ResponseHead, OriginFailure>>
where
    T: AsyncReadRent + AsyncWriteRent + Readiness,
{
    let deadline = Instant::now() + x.server.timeouts.origin_response;
    bufs.response.clear();
    let mut received_any = false;
    loop {
        if !bufs.response.is_empty() {
            match http::parse_response_head(&bufs.response, request.is_head()) {
                Ok(Some(head)) if (100..200).contains(&head.status) && head.status != 101 => {
                    // HTTP/1.0 clients do not expect interim responses (RFC 9110 section 15.2).
                    if request.version != 0 {
                        tls.write_all(&bufs.response[..head.header_len]).await?;
                    }
                    bufs.response.drain(..head.header_len);
                    continue;
                }
                Ok(Some(head)) if head.status == 101 => return Ok(Err(OriginFailure::Status(502))),
                Ok(Some(head)) => return Ok(Ok(head)),
                Ok(None) => {}
                Err(e) => {
                    tracing::debug!(error = %e, "origin sent a malformed response head");
                    return Ok(Err(OriginFailure::Status(502)));
                }
            }
        }
        let len = bufs.response.len();
        if len == bufs.response.capacity() {
            if len >= BODY_BUFFER {
                tracing::debug!("origin response head too large");
                return Ok(Err(OriginFailure::Status(502)));
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
                    OriginFailure::Status(502)
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
                    OriginFailure::Status(502)
                }));
            }
            Err(_) => {
                bufs.response = Vec::new();
                return Ok(Err(OriginFailure::Status(504)));
            }
        }
    }
}

/// Answers with an error status; the connection closes after it.
async fn refuse<T>(tls: &mut TlsStream<T>, status: u16) -> io::Result<Sent>
where
    T: AsyncReadRent + AsyncWriteRent + Readiness,
{
    tls.write_all(http::error_response(status)).await?;
    Ok(Sent::close(status, None))
}
