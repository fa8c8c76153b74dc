//! One HTTP/2 stream: one proxied request to the HTTP/1.1 origin through the exchange.
//!
//! Flow control holds both ways. The request body is read from the stream one DATA frame at a
//! time and its window is released only once the bytes are in the exchange's buffer, so a
//! stream never holds more than its window plus one buffer. The response body is sent only as
//! far as the viewer's window allows (`reserve_capacity`/`poll_capacity`), so a slow viewer
//! stream makes the exchange wait for it instead of buffering the body, and other streams
//! are not affected. A stream that makes no progress for `stream_idle_timeout` (no request
//! body, no window for the response) is answered 408 or reset with CANCEL.

use std::future::poll_fn;
use std::io;
use std::time::Duration;

use ::http::HeaderValue;
use bytes::Bytes;
use h2::server::SendResponse;
use h2::{Reason, RecvStream, SendStream};

use crate::exchange::{self, BodyMode, Exchange, ExchangeBuffers, Piece, Viewer};
use crate::http::{self, h2_fields, BodyFraming, ResponseHead, Status, CHUNK_OVERHEAD, LAST_CHUNK};
use crate::telemetry::access::{HeadView, RequestOutcome};
use crate::telemetry::metrics::Http2Refusal;

/// Serves one stream: `request` as the codec decoded it, `respond` to answer.
pub(super) async fn serve(
    x: &Exchange<'_>,
    stream_idle: Duration,
    request: ::http::Request<RecvStream>,
    respond: SendResponse<Bytes>,
) {
    let (parts, recv) = request.into_parts();
    let authority = parts.uri.authority().map(|a| a.as_str().as_bytes());
    let host_field = parts
        .headers
        .get(::http::header::HOST)
        .map(HeaderValue::as_bytes);
    let path = parts
        .uri
        .path_and_query()
        .map_or(&b""[..], |p| p.as_str().as_bytes());
    let start = x.observer.begin(
        Some(HeadView {
            method: parts.method.as_str().as_bytes(),
            host: authority.or(host_field),
            path,
            protocol: "HTTP/2.0",
        }),
        (0, 0),
    );
    let mut viewer = Http2Viewer {
        respond,
        recv,
        send: None,
        response: None,
        chunked: false,
        body_done: false,
        pending: Bytes::new(),
        stream_idle,
        timed_out: false,
        bytes_in: 0,
        bytes_out: 0,
    };
    let outcome = match check_and_forward(x, &parts, &mut viewer).await {
        Ok(done) => {
            if !done.complete && viewer.send.is_some() {
                // The response was cut short (origin closed or failed mid-body): the viewer
                // must not take the truncated body for a whole one.
                viewer.reset(Reason::INTERNAL_ERROR);
            }
            RequestOutcome {
                status: done.status.code(),
                origin: done.origin,
            }
        }
        Err(e) => {
            tracing::debug!(error = %e, "HTTP/2 stream ended early");
            viewer.reset(Reason::CANCEL);
            RequestOutcome::status(Status::CLIENT_CLOSED_REQUEST.code())
        }
    };
    if viewer.timed_out {
        x.observer.http2_refusal(Http2Refusal::StreamTimeout);
    }
    x.observer
        .end(start, outcome, (viewer.bytes_in, viewer.bytes_out));
}

async fn check_and_forward(
    x: &Exchange<'_>,
    parts: &::http::request::Parts,
    viewer: &mut Http2Viewer,
) -> io::Result<exchange::Forwarded> {
    let refused = |status| exchange::Forwarded {
        status,
        origin: None,
        complete: true,
    };
    let authority = parts.uri.authority().map(|a| a.as_str().as_bytes());
    let hosts = parts
        .headers
        .get_all(::http::header::HOST)
        .iter()
        .map(HeaderValue::as_bytes)
        .chain(authority);
    if let Err(status) = exchange::check_request(x, hosts) {
        viewer.refuse(status).await?;
        return Ok(refused(status));
    }
    if parts.headers.len() > x.server.limits.max_header_count {
        tracing::info!(
            count = parts.headers.len(),
            "HTTP/2 request refused: more header fields than max_header_count"
        );
        viewer.refuse(Status::HEADER_FIELDS_TOO_LARGE).await?;
        return Ok(refused(Status::HEADER_FIELDS_TOO_LARGE));
    }
    let mut bufs = ExchangeBuffers::new(x.buffers);
    if let Err(status) = exchange::admit(x, &mut bufs) {
        viewer.refuse(status).await?;
        return Ok(refused(status));
    }
    let has_body = !viewer.recv.is_end_stream();
    let info = match h2_fields::write_origin_request(
        parts,
        has_body,
        x.client_ip,
        x.viewer_headers,
        x.fallback_host,
        &mut bufs.head,
    ) {
        Ok(info) => info,
        Err(e) => {
            tracing::info!(error = %e, "HTTP/2 request refused");
            viewer.refuse(e.status()).await?;
            return Ok(refused(e.status()));
        }
    };
    x.observer.add_origin_header(&mut bufs.head);
    viewer.chunked = info.framing == BodyFraming::Chunked;
    viewer.body_done = !has_body;
    // A small body of an idempotent request is read whole before the origin is contacted, so
    // the request can be sent again after a reused origin connection failed (as for
    // HTTP/1.1, where such a body arrives with the head).
    if let (true, BodyFraming::ContentLength(n)) = (info.idempotent, info.framing) {
        let room = exchange::BODY_BUFFER.saturating_sub(bufs.head.len());
        if usize::try_from(n).is_ok_and(|n| n <= room) {
            bufs.acquire_body();
            while !viewer.body_done {
                let got = match viewer.request_body(&mut bufs.body).await? {
                    Ok(got) => got,
                    Err(status) => {
                        viewer.refuse(status).await?;
                        return Ok(refused(status));
                    }
                };
                bufs.head.extend_from_slice(&bufs.body[..got]);
            }
        }
    }
    let replayable = viewer.body_done && info.idempotent;
    exchange::forward(viewer, x, &mut bufs, replayable, info.is_head).await
}

/// The viewer side of one stream.
struct Http2Viewer {
    respond: SendResponse<Bytes>,
    recv: RecvStream,
    /// The response body stream, once the response head was sent.
    send: Option<SendStream<Bytes>>,
    /// The response head, between `start_response` and the first `send`.
    response: Option<::http::Response<()>>,
    /// The request body goes to the origin chunked (its length is unknown).
    chunked: bool,
    body_done: bool,
    /// Request body bytes received but not yet handed to the exchange.
    pending: Bytes,
    stream_idle: Duration,
    /// The stream stalled for `stream_idle` (request body or response window).
    timed_out: bool,
    bytes_in: u64,
    bytes_out: u64,
}

impl Http2Viewer {
    fn reset(&mut self, reason: Reason) {
        match &mut self.send {
            Some(send) => send.send_reset(reason),
            None => self.respond.send_reset(reason),
        }
    }

    /// Sends `data` as DATA frames, each no larger than the window the viewer opened.
    async fn send_data(&mut self, mut data: &[u8], end: bool) -> io::Result<()> {
        let Some(send) = self.send.as_mut() else {
            return Err(io::ErrorKind::NotConnected.into());
        };
        if data.is_empty() {
            if end {
                send.send_data(Bytes::new(), true).map_err(h2_to_io)?;
            }
            return Ok(());
        }
        while !data.is_empty() {
            send.reserve_capacity(data.len());
            let capacity =
                monoio::time::timeout(self.stream_idle, poll_fn(|cx| send.poll_capacity(cx))).await;
            let n = match capacity {
                Ok(Some(Ok(n))) => n.min(data.len()),
                Ok(Some(Err(e))) => return Err(h2_to_io(e)),
                Ok(None) => return Err(io::ErrorKind::ConnectionReset.into()),
                Err(_) => {
                    self.timed_out = true;
                    tracing::info!(
                        stream_idle_ms = self.stream_idle.as_millis() as u64,
                        "HTTP/2 stream window did not open within stream_idle_timeout; resetting the stream (CANCEL)"
                    );
                    return Err(io::ErrorKind::TimedOut.into());
                }
            };
            if n == 0 {
                continue;
            }
            let last = end && n == data.len();
            send.send_data(Bytes::copy_from_slice(&data[..n]), last)
                .map_err(h2_to_io)?;
            self.bytes_out += n as u64;
            data = &data[n..];
        }
        Ok(())
    }
}

impl Viewer for Http2Viewer {
    fn body_done(&self) -> bool {
        self.body_done
    }

    async fn request_body(&mut self, buf: &mut [u8]) -> io::Result<Result<usize, Status>> {
        if self.pending.is_empty() {
            let next = monoio::time::timeout(self.stream_idle, self.recv.data()).await;
            match next {
                Err(_) => {
                    self.timed_out = true;
                    tracing::info!(
                        stream_idle_ms = self.stream_idle.as_millis() as u64,
                        "HTTP/2 request body stalled for stream_idle_timeout; answering 408"
                    );
                    return Ok(Err(Status::REQUEST_TIMEOUT));
                }
                Ok(None) => {
                    // The end of the body (any trailers are dropped, as for HTTP/1.1).
                    self.body_done = true;
                    if self.chunked {
                        buf[..LAST_CHUNK.len()].copy_from_slice(LAST_CHUNK);
                        return Ok(Ok(LAST_CHUNK.len()));
                    }
                    return Ok(Ok(0));
                }
                Ok(Some(Err(e))) => return Err(h2_to_io(e)),
                Ok(Some(Ok(data))) => {
                    self.bytes_in += data.len() as u64;
                    // The bytes are the exchange's now: the viewer may send more.
                    let _ = self.recv.flow_control().release_capacity(data.len());
                    self.pending = data;
                }
            }
        }
        let room = buf.len() - CHUNK_OVERHEAD;
        let piece = self.pending.split_to(self.pending.len().min(room));
        if !self.chunked {
            buf[..piece.len()].copy_from_slice(&piece);
            return Ok(Ok(piece.len()));
        }
        Ok(Ok(http::encode_chunk_into(&piece, buf)))
    }

    async fn interim(&mut self, head: &ResponseHead, raw: &[u8]) -> io::Result<()> {
        // 100 Continue and 103 Early Hints go on as HTTP/2 informational responses.
        let response = h2_fields::client_response(head, raw);
        if let Err(e) = self.respond.send_informational(response) {
            tracing::debug!(error = %e, "interim response not relayed");
        }
        Ok(())
    }

    fn start_response(&mut self, head: &ResponseHead, raw: &[u8], _out: &mut Vec<u8>) -> BodyMode {
        self.response = Some(h2_fields::client_response(head, raw));
        BodyMode::Payload
    }

    async fn send(&mut self, data: &[u8], piece: Piece) -> io::Result<()> {
        let end = piece == Piece::Last;
        if let Some(response) = self.response.take() {
            let head_only = end && data.is_empty();
            let send = self
                .respond
                .send_response(response, head_only)
                .map_err(h2_to_io)?;
            self.send = Some(send);
            if head_only {
                return Ok(());
            }
        }
        self.send_data(data, end).await
    }

    async fn refuse(&mut self, status: Status) -> io::Result<()> {
        if self.send.is_some() || self.response.is_some() {
            self.reset(Reason::INTERNAL_ERROR);
            return Ok(());
        }
        let (response, body) = h2_fields::error_response(status);
        let send = self
            .respond
            .send_response(response, false)
            .map_err(h2_to_io)?;
        self.send = Some(send);
        let mut text = Vec::with_capacity(body.len() + 1);
        text.extend_from_slice(body.as_bytes());
        text.push(b'\n');
        self.send_data(&text, true).await
    }
}

fn h2_to_io(e: h2::Error) -> io::Error {
    if e.is_io() {
        return e.into_io().unwrap_or_else(|| io::ErrorKind::Other.into());
    }
    io::Error::other(e)
}
