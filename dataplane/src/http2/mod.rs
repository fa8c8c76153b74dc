//! The HTTP/2 codec for viewers: one connection's streams, each driving the protocol-neutral
//! exchange (`exchange.rs`) to the HTTP/1.1 origin.
//!
//! The frame layer is the `h2` crate (hyperium's), which needs tokio's poll-style I/O: the
//! established TLS session moves to `tls/poll_stream.rs` (BoringSSL over monoio's
//! readiness-driven socket), and [`guard::GuardedIo`] scans every frame header the viewer
//! sends for floods `h2` does not bound. Everything runs in the connection's task: `h2`'s
//! connection is polled together with the streams in flight (a `FuturesUnordered`), so a
//! stream waiting on a slow origin or a slow viewer window never stops the others.
//!
//! The connection ends with GOAWAY: NO_ERROR when idle for `idle_keepalive` (the first
//! request must come within `header_read`) or when the worker drains (in-flight streams
//! finish), NO_ERROR at once when the client certificate is revoked (streams are cut),
//! ENHANCE_YOUR_CALM for abuse (the guard, or `h2`'s own limits), then close_notify and a
//! short lingering drain.

pub mod guard;
mod stream;

use std::future::{poll_fn, Future as _};
use std::rc::Rc;
use std::task::Poll;
use std::time::Duration;

use bytes::Bytes;
use futures_util::stream::{FuturesUnordered, StreamExt as _};
use h2::server::SendResponse;
use h2::{Reason, RecvStream};
use monoio::net::TcpStream;
use portcullis_config::Http2Settings;

use crate::exchange::{Exchange, BODY_BUFFER};
use crate::telemetry::metrics::Http2Refusal;
use crate::tls::{ByteCounts, OpenIdentity, SharedTlsPollStream, TlsStream};
use guard::{Abuse, FrameGuard, GuardLimits, GuardedIo};

/// How long a connection that is being cut (abuse, revocation) may take to send its GOAWAY.
const GOAWAY_GRACE: Duration = Duration::from_secs(1);

/// What ended the connection loop.
enum Event {
    /// A new stream (boxed: the request and its handle are large).
    Stream(Box<(http::Request<RecvStream>, SendResponse<Bytes>)>),
    Closed(Option<h2::Error>),
    Abuse(Abuse),
    Drain,
    Revocation,
    Idle,
}

/// Serves an HTTP/2 connection whose TLS handshake negotiated `h2`, until it closes.
/// Returns the byte counters of the connection (None when the socket could not be handed to
/// the codec).
pub async fn serve(
    tls: TlsStream<TcpStream>,
    x: &Exchange<'_>,
    settings: &Http2Settings,
    linger: Duration,
) -> Option<Rc<ByteCounts>> {
    let stream = match tls.into_poll() {
        Ok(stream) => stream,
        Err(failed) => {
            let (e, mut tls) = *failed;
            tracing::error!(error = %e, "cannot hand the connection to the HTTP/2 codec; closing");
            let _ = tls.shutdown().await;
            return None;
        }
    };
    let counts = stream.counts();
    let shared = SharedTlsPollStream::new(stream);
    let guard = Rc::new(FrameGuard::new(
        GuardLimits {
            control_per_second: settings.max_control_frames_per_second,
            early_resets: settings.max_early_resets,
        },
        Some(x.observer.http2_refusals()),
    ));
    let io = GuardedIo::new(shared.clone(), Rc::clone(&guard));
    let mut builder = h2::server::Builder::new();
    builder
        .max_concurrent_streams(settings.max_concurrent_streams)
        .max_header_list_size(settings.max_header_list_size)
        .initial_window_size(settings.initial_stream_window)
        .initial_connection_window_size(settings.initial_connection_window)
        // A stream buffers at most one exchange buffer of response data beyond the window.
        .max_send_buffer_size(BODY_BUFFER);
    let timeouts = &x.server.timeouts;
    match monoio::time::timeout(timeouts.header_read, builder.handshake::<_, Bytes>(io)).await {
        Ok(Ok(conn)) => run(conn, x, settings, &guard).await,
        Ok(Err(e)) => tracing::debug!(error = %e, "HTTP/2 preface or settings refused"),
        Err(_) => tracing::info!("HTTP/2 preface not received within header_read; closing"),
    }
    shared.close(linger).await;
    Some(counts)
}

type Connection = h2::server::Connection<GuardedIo<SharedTlsPollStream>, Bytes>;

async fn run(mut conn: Connection, x: &Exchange<'_>, settings: &Http2Settings, guard: &FrameGuard) {
    let timeouts = &x.server.timeouts;
    let mut streams = FuturesUnordered::new();
    let mut shutdown = std::pin::pin!(x.shutdown.wait());
    let mut draining = false;
    let mut seen = x.revocations.generation();
    let mut revocation = Box::pin(x.revocations.changed_since(seen));
    // The first request must come within header_read, later ones within idle_keepalive.
    let mut idle = Box::pin(monoio::time::sleep(timeouts.header_read));
    let mut idle_armed = true;
    loop {
        let event = poll_fn(|cx| {
            while let Poll::Ready(Some(())) = streams.poll_next_unpin(cx) {}
            match conn.poll_accept(cx) {
                Poll::Ready(Some(Ok((request, respond)))) => {
                    return Poll::Ready(Event::Stream(Box::new((request, respond))))
                }
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Event::Closed(Some(e))),
                Poll::Ready(None) => return Poll::Ready(Event::Closed(None)),
                Poll::Pending => {}
            }
            if let Some(abuse) = guard.tripped() {
                return Poll::Ready(Event::Abuse(abuse));
            }
            if !draining && shutdown.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Event::Drain);
            }
            if x.identity.is_some() && revocation.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Event::Revocation);
            }
            if idle_armed && streams.is_empty() && idle.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Event::Idle);
            }
            Poll::Pending
        })
        .await;
        match event {
            Event::Stream(stream) => {
                let (request, respond) = *stream;
                guard.accepted(respond.stream_id().as_u32());
                idle_armed = false;
                // Not boxed: the set holds each future in its own (already heap) task.
                streams.push(stream::serve(
                    x,
                    settings.stream_idle_timeout,
                    request,
                    respond,
                ));
            }
            Event::Closed(None) => return,
            Event::Closed(Some(e)) => {
                if log_connection_error(&e) {
                    x.observer.http2_refusal(Http2Refusal::ProtocolError);
                }
                return;
            }
            Event::Abuse(abuse) => {
                tracing::warn!(%abuse, "HTTP/2 abuse; GOAWAY ENHANCE_YOUR_CALM and close");
                x.observer.http2_refusal(abuse.refusal());
                drop(streams);
                cut(&mut conn, Reason::ENHANCE_YOUR_CALM).await;
                return;
            }
            Event::Drain => {
                draining = true;
                conn.graceful_shutdown();
            }
            Event::Revocation => {
                seen = x.revocations.generation();
                revocation = Box::pin(x.revocations.changed_since(seen));
                if x.identity
                    .is_some_and(OpenIdentity::revoked_since_last_check)
                {
                    tracing::info!(
                        "client certificate revoked on an open HTTP/2 connection; GOAWAY and close"
                    );
                    drop(streams);
                    cut(&mut conn, Reason::NO_ERROR).await;
                    return;
                }
            }
            Event::Idle => {
                tracing::debug!("HTTP/2 connection idle; GOAWAY");
                idle_armed = false;
                draining = true;
                conn.graceful_shutdown();
            }
        }
        if streams.is_empty() && !idle_armed && !draining {
            idle.as_mut()
                .reset(monoio::time::Instant::now() + timeouts.idle_keepalive);
            idle_armed = true;
        }
    }
}

/// Sends GOAWAY with `reason` and closes, waiting at most [`GOAWAY_GRACE`] for it to leave.
async fn cut(conn: &mut Connection, reason: Reason) {
    conn.abrupt_shutdown(reason);
    let closed = monoio::time::timeout(GOAWAY_GRACE, poll_fn(|cx| conn.poll_closed(cx))).await;
    if let Ok(Err(e)) = closed {
        tracing::debug!(error = %e, "HTTP/2 connection closed with an error");
    }
}

/// Logs how `h2` ended a connection: protocol errors and abuse it detected itself (HPACK bombs,
/// CONTINUATION floods, too many resets) at info with their reason, transport errors at debug.
/// Returns whether it was the viewer's protocol error (a GOAWAY the codec sent).
fn log_connection_error(e: &h2::Error) -> bool {
    match e.reason() {
        Some(reason) if e.is_go_away() && e.is_library() => {
            tracing::info!(
                %reason,
                error = %e,
                "HTTP/2 protocol error from the viewer; GOAWAY sent and connection closed"
            );
            true
        }
        Some(reason) if e.is_go_away() && e.is_remote() => {
            tracing::debug!(%reason, "viewer closed the HTTP/2 connection with GOAWAY");
            false
        }
        _ => {
            tracing::debug!(error = %e, "HTTP/2 connection ended");
            false
        }
    }
}
