//! The HTTP/1.1 codec: reads the requests of one viewer connection in order and drives the
//! protocol-neutral exchange (`exchange.rs`) for each.
//!
//! Requests are handled strictly in order (pipelined requests wait in the client buffer).
//! The request head is parsed in the client buffer and rewritten from it for the origin
//! (`http/request.rs`: no copy of the fields, no allocation); the viewer-cert header block was
//! rendered once for the connection and is appended to every request, and client copies of
//! those headers are dropped by the rewriter. Bodies stream both ways through fixed buffers,
//! never buffered whole.
//!
//! Every wait of this codec is bounded: the request head by `header_read` (the first one from
//! the end of the handshake), idle keep-alive by `idle_keepalive`, request bodies by
//! `header_read` per read and by a minimum rate, writes to the client by `send`.

use std::io;
use std::time::{Duration, Instant};

use monoio::io::{AsyncReadRent, AsyncWriteRent};
use portcullis_config::ServerSettings;

use crate::exchange::{self, BodyMode, Exchange, ExchangeBuffers, Piece, Viewer};
use crate::http::{self, BodyFraming, BodyState, RequestHead, ResponseHead, Status};
use crate::telemetry::access::{HeadView, RequestOutcome};
use crate::tls::stream::Readiness;
use crate::tls::{OpenIdentity, TlsStream};

/// Interim response sent when a client waits for permission to send its body.
const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

/// Serves requests from `tls` until the client closes, an error ends the connection, or
/// shutdown catches it idle.
pub async fn serve<T>(tls: &mut TlsStream<T>, x: &Exchange<'_>) -> io::Result<()>
where
    T: AsyncReadRent + AsyncWriteRent + Readiness,
{
    let mut client = ClientBuffer::new(x.server.limits.max_header_bytes);
    let mut bufs = ExchangeBuffers::new(x.buffers);
    let mut first = true;
    loop {
        x.observer.between_requests(tls.bytes());
        let head = match read_request_head(tls, &mut client, x, first).await? {
            HeadOutcome::Head(head) => head,
            HeadOutcome::Closed => return Ok(()),
            HeadOutcome::Refuse(status) => {
                x.observer.started(None);
                return answer_request(tls, x, status).await;
            }
        };
        first = false;
        let data = client.data();
        let view = HeadView {
            method: head.method(data),
            host: head.host.map(|h| h.get(data)),
            path: head.path(data),
            protocol: if head.version == 0 {
                "HTTP/1.0"
            } else {
                "HTTP/1.1"
            },
        };
        x.observer.started(Some(view));
        let hosts = [head.authority(data), head.host(data)];
        if let Err(status) = exchange::check_request(x, hosts.into_iter().flatten()) {
            return answer_request(tls, x, status).await;
        }
        if let Err(status) = exchange::admit(x, &mut bufs) {
            return answer_request(tls, x, status).await;
        }
        // Boxed: the forwarding state (origin connect, request and response streaming) lives
        // on the heap only while a request is in flight, so an idle connection's task is
        // small.
        let sent = Box::pin(forward(tls, &head, x, &mut client, &mut bufs)).await;
        bufs.release();
        let (outcome, keep_alive) = match sent {
            Ok(sent) => sent,
            Err(e) => {
                // The client went away mid-request: logged as 499 (client closed request).
                x.observer.finished(
                    RequestOutcome::status(Status::CLIENT_CLOSED_REQUEST.code()),
                    tls.bytes(),
                );
                return Err(e);
            }
        };
        x.observer.finished(outcome, tls.bytes());
        if !keep_alive {
            return Ok(());
        }
    }
}

/// [`answer_and_close`] for the request in flight, reporting it as its outcome.
async fn answer_request<T>(
    tls: &mut TlsStream<T>,
    x: &Exchange<'_>,
    status: Status,
) -> io::Result<()>
where
    T: AsyncReadRent + AsyncWriteRent + Readiness,
{
    let sent = answer_and_close(tls, status).await;
    x.observer
        .finished(RequestOutcome::status(status.code()), tls.bytes());
    sent
}

/// Sends a canned error response; the connection closes after it. Boxed: the send (with its
/// time-out) would otherwise enlarge every idle connection's task for a rare event.
async fn answer_and_close<T>(tls: &mut TlsStream<T>, status: Status) -> io::Result<()>
where
    T: AsyncReadRent + AsyncWriteRent + Readiness,
{
    Box::pin(tls.write_all(http::error_response(status))).await
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

enum HeadOutcome {
    Head(RequestHead),
    Closed,
    Refuse(Status),
}

/// How long a connection that just answered a request waits for the next one with a read
/// posted (and a small buffer held) before it waits with a readiness poll and no buffer.
const READ_AHEAD_WINDOW: Duration = Duration::from_millis(200);

/// How long an idle keep-alive connection stays open once the worker drains, for a request
/// the client may already have sent.
const DRAIN_IDLE_GRACE: Duration = Duration::from_secs(1);

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
    // After a response (not before the first request, whose wait also carries the session
    // tickets out), the next request is first awaited with a read posted.
    let mut read_ahead = !first;
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
                    return Ok(HeadOutcome::Refuse(Status::HEADER_FIELDS_TOO_LARGE))
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
        if idle && read_ahead && !draining {
            // A keep-alive client usually sends its next request at once: wait for it with
            // a read posted (holding its buffers for at most READ_AHEAD_WINDOW), then, if
            // nothing came, as below without any buffer.
            read_ahead = false;
            let news = x.revocations.changed_since(x.revocations.generation());
            let interrupt = async {
                monoio::select! {
                    _ = x.shutdown.wait() => {},
                    _ = news, if x.identity.is_some() => {},
                }
            };
            let window = READ_AHEAD_WINDOW.min(wait);
            // Boxed: the posted read, its timer and the interrupt live on the heap only while
            // the connection is in this wait, so an idle connection's task stays small.
            if !Box::pin(tls.read_ahead(window, interrupt)).await? {
                if x.identity
                    .is_some_and(OpenIdentity::revoked_since_last_check)
                {
                    tracing::info!("client certificate revoked on an idle connection; closing");
                    return Ok(HeadOutcome::Closed);
                }
                continue;
            }
        } else if idle {
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
            Err(_) => return Ok(HeadOutcome::Refuse(Status::REQUEST_TIMEOUT)),
        }
    }
}

/// Forwards one request and its response through the exchange. Returns the outcome and
/// whether the connection can carry another request.
async fn forward<T>(
    tls: &mut TlsStream<T>,
    head: &RequestHead,
    x: &Exchange<'_>,
    client: &mut ClientBuffer,
    bufs: &mut ExchangeBuffers<'_>,
) -> io::Result<(RequestOutcome, bool)>
where
    T: AsyncReadRent + AsyncWriteRent + Readiness,
{
    bufs.head.clear();
    let fallback_host = head.authority(client.data()).unwrap_or(x.fallback_host);
    http::write_origin_request(
        head,
        client.data(),
        x.client_ip,
        x.viewer_headers,
        fallback_host,
        &mut bufs.head,
    );
    x.observer.add_origin_header(&mut bufs.head);
    client.consume(head.header_len);
    let mut body = BodyState::new(head.framing);
    let mut viewer = Http1Viewer {
        tls,
        client,
        body: BodyState::Done,
        pace: BodyPace::new(x.server),
        http10: head.version == 0,
        keep_alive: false,
        request_keep_alive: head.keep_alive && !x.shutdown.is_fired(),
    };
    let buffered = match body.take_request(viewer.client.data()) {
        Ok(taken) => taken,
        Err(e) => {
            let status = e.status();
            viewer.refuse(status).await?;
            return Ok((RequestOutcome::status(status.code()), false));
        }
    };
    bufs.head
        .extend_from_slice(&viewer.client.data()[..buffered.forward]);
    bufs.head.extend_from_slice(buffered.end);
    viewer.client.consume(buffered.used);
    if head.expect_continue && !body.is_done() {
        viewer.tls.write_all(CONTINUE).await?;
    }
    viewer.body = body;
    // The whole request is in `bufs.head` when the body was empty or already buffered: only
    // then can it be sent again after a reused origin connection turned out to be closed, and
    // only if sending it twice is harmless (the origin may have processed it before closing).
    let replayable = viewer.body.is_done() && head.idempotent;
    let done = exchange::forward(&mut viewer, x, bufs, replayable, head.is_head()).await?;
    let outcome = RequestOutcome {
        status: done.status.code(),
        origin: done.origin,
    };
    Ok((outcome, done.complete && viewer.keep_alive))
}

/// The viewer side of one HTTP/1.1 request.
struct Http1Viewer<'t, 'c, T> {
    tls: &'t mut TlsStream<T>,
    client: &'c mut ClientBuffer,
    /// What is left of the request body.
    body: BodyState,
    pace: BodyPace,
    /// The request is HTTP/1.0 (no interim responses, no chunked bodies).
    http10: bool,
    /// The request allows keeping the connection open.
    request_keep_alive: bool,
    /// The response keeps the connection open (set by `start_response`).
    keep_alive: bool,
}

impl<T> Viewer for Http1Viewer<'_, '_, T>
where
    T: AsyncReadRent + AsyncWriteRent + Readiness,
{
    fn body_done(&self) -> bool {
        self.body.is_done()
    }

    async fn request_body(&mut self, buf: &mut [u8]) -> io::Result<Result<usize, Status>> {
        let limit = self.body.read_limit(buf.len());
        let Some(wait) = self.pace.next_wait() else {
            tracing::info!(
                received = self.pace.received,
                "request body slower than min_request_body_rate; closing"
            );
            return Ok(Err(Status::REQUEST_TIMEOUT));
        };
        let started = Instant::now();
        let read = monoio::time::timeout(wait, self.tls.read(&mut buf[..limit])).await;
        self.pace.waited += started.elapsed();
        let n = match read {
            Ok(Ok(0)) | Ok(Err(_)) => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "client closed during the request body",
                ))
            }
            Ok(Ok(n)) => n,
            Err(_) => {
                if self.pace.next_wait().is_none() {
                    tracing::info!(
                        received = self.pace.received,
                        "request body slower than min_request_body_rate; closing"
                    );
                } else {
                    tracing::info!(
                        received = self.pace.received,
                        "request body stalled for header_read; closing"
                    );
                }
                return Ok(Err(Status::REQUEST_TIMEOUT));
            }
        };
        self.pace.received += n as u64;
        let taken = match self.body.take_request(&buf[..n]) {
            Ok(t) => t,
            Err(e) => return Ok(Err(e.status())),
        };
        if taken.used < n {
            self.client.append(&buf[taken.used..n]);
        }
        // The end of a chunked body whose trailers were dropped replaces (part of) those
        // trailers: `forward + end.len() <= used` (the final CRLF itself was consumed).
        let end = taken.forward + taken.end.len();
        buf[taken.forward..end].copy_from_slice(taken.end);
        Ok(Ok(end))
    }

    async fn interim(&mut self, _head: &ResponseHead, raw: &[u8]) -> io::Result<()> {
        // HTTP/1.0 clients do not expect interim responses (RFC 9110 section 15.2).
        if self.http10 {
            return Ok(());
        }
        self.tls.write_all(raw).await
    }

    fn start_response(&mut self, head: &ResponseHead, raw: &[u8], out: &mut Vec<u8>) -> BodyMode {
        // An HTTP/1.0 client cannot read chunked bodies: it gets the payload and a close.
        let dechunk = self.http10 && matches!(head.framing, BodyFraming::Chunked);
        self.keep_alive =
            self.request_keep_alive && !dechunk && !matches!(head.framing, BodyFraming::UntilClose);
        if self.http10 {
            http::write_client_response_head_http10(head, raw, self.keep_alive, out);
        } else {
            http::write_client_response_head(head, raw, self.keep_alive, out);
        }
        if dechunk {
            BodyMode::Payload
        } else {
            BodyMode::Framed
        }
    }

    async fn send(&mut self, data: &[u8], piece: Piece) -> io::Result<()> {
        match piece {
            Piece::Queued => self.tls.feed(data).await,
            // The close_notify that follows leaves in the same send.
            Piece::Last if !self.keep_alive => self.tls.feed(data).await,
            Piece::Flush | Piece::Last => self.tls.write_all(data).await,
        }
    }

    async fn refuse(&mut self, status: Status) -> io::Result<()> {
        self.keep_alive = false;
        self.tls.write_all(http::error_response(status)).await
    }
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
