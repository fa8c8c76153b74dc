//! Abuse detection below the HTTP/2 codec: a scanner of the frame headers the viewer sends.
//!
//! `h2` itself refuses streams beyond the concurrency limit, answers oversized header lists
//! with 431, ends the connection on CONTINUATION floods and HPACK bombs, and bounds pending
//! resets. What it does not bound is cheap-to-send frames it answers or absorbs without the
//! application seeing them: PING and SETTINGS floods (each asks for an acknowledgement),
//! PRIORITY, RST_STREAM and empty DATA frames, and the rapid-reset pattern (CVE-2023-44487:
//! streams opened and reset at once, each of which starts an origin request here). The
//! scanner reads every frame header on its way to the codec (9 bytes each; payloads are
//! skipped unread) and trips when:
//!
//! - control frames (non-ACK PING and SETTINGS, PRIORITY, RST_STREAM, empty DATA without
//!   END_STREAM) exceed `max_control_frames_per_second` within a second;
//! - RST_STREAM frames exceed `max_early_resets` and are more than half of the HEADERS frames
//!   (streams opened).
//!
//! The connection then answers GOAWAY with ENHANCE_YOUR_CALM and closes.
//!
//! The frames the codec sends pass a second scanner, for the refusals `h2` makes without
//! telling the application: RST_STREAM with REFUSED_STREAM (a stream over
//! `max_concurrent_streams`), and a response (HEADERS) on a stream the application never
//! accepted, which can only be `h2`'s 431 for a header list over `max_header_list_size`. The
//! first of each kind on a connection is logged; the rest are counted.

use std::cell::{Cell, RefCell};
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::telemetry::metrics::{Http2Refusal, Http2Refusals};

/// The client connection preface (RFC 9113 section 3.4), which precedes the first frame.
const PREFACE_LEN: usize = 24;
const FRAME_HEADER_LEN: usize = 9;

/// Frame types (RFC 9113 section 6).
const DATA: u8 = 0;
const HEADERS: u8 = 1;
const PRIORITY: u8 = 2;
const RST_STREAM: u8 = 3;
const SETTINGS: u8 = 4;
const PING: u8 = 6;
/// ACK flag of SETTINGS and PING; END_STREAM flag of DATA.
const FLAG_ACK_OR_END: u8 = 0x1;

/// Why the guard tripped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Abuse {
    /// More control frames per second than allowed; the kind sent most in the window.
    ControlFlood(&'static str),
    /// Streams reset by the viewer as fast as it opens them.
    RapidReset {
        /// RST_STREAM frames received.
        resets: u64,
        /// HEADERS frames received.
        opened: u64,
    },
}

impl Abuse {
    /// The metric reason.
    pub fn refusal(self) -> Http2Refusal {
        match self {
            Abuse::ControlFlood(_) => Http2Refusal::ControlFlood,
            Abuse::RapidReset { .. } => Http2Refusal::RapidReset,
        }
    }
}

impl std::fmt::Display for Abuse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Abuse::ControlFlood(kind) => write!(f, "{kind} flood"),
            Abuse::RapidReset { resets, opened } => {
                write!(
                    f,
                    "rapid reset ({resets} resets for {opened} streams opened)"
                )
            }
        }
    }
}

/// Limits of the guard.
#[derive(Debug, Clone, Copy)]
pub struct GuardLimits {
    /// Control frames allowed per second.
    pub control_per_second: u32,
    /// Resets allowed before the rapid-reset ratio applies.
    pub early_resets: u32,
}

#[derive(Debug, Default)]
struct Scan {
    preface_left: usize,
    payload_left: usize,
    header: HeaderBuf,
    window_start: Option<Instant>,
    control: u32,
    /// Per kind within the window: PING, SETTINGS, PRIORITY, RST_STREAM, empty DATA.
    kinds: [u32; 5],
    opened: u64,
    resets: u64,
}

/// Reassembles 9-byte frame headers split across reads or writes.
#[derive(Debug, Default)]
struct HeaderBuf {
    bytes: [u8; FRAME_HEADER_LEN],
    len: usize,
}

impl HeaderBuf {
    /// Takes header bytes from the front of `bytes` (advancing it); the header once complete.
    fn take(&mut self, bytes: &mut &[u8]) -> Option<[u8; FRAME_HEADER_LEN]> {
        let n = (FRAME_HEADER_LEN - self.len).min(bytes.len());
        self.bytes[self.len..self.len + n].copy_from_slice(&bytes[..n]);
        self.len += n;
        *bytes = &bytes[n..];
        if self.len < FRAME_HEADER_LEN {
            return None;
        }
        self.len = 0;
        Some(self.bytes)
    }
}

/// The payload length a frame header announces.
fn payload_len(h: &[u8; FRAME_HEADER_LEN]) -> usize {
    usize::from(h[0]) << 16 | usize::from(h[1]) << 8 | usize::from(h[2])
}

/// The scanner of the frames the codec sends: it looks only at RST_STREAM error codes.
#[derive(Debug, Default)]
struct OutScan {
    payload_left: usize,
    header: HeaderBuf,
    /// The error code of the RST_STREAM frame being read (`code_len` bytes of it so far).
    code: [u8; 4],
    code_len: usize,
    in_reset: bool,
}

/// REFUSED_STREAM (RFC 9113 section 7).
const REFUSED_STREAM: u32 = 0x7;

/// The frame scanner of one connection.
#[derive(Debug)]
pub struct FrameGuard {
    limits: GuardLimits,
    scan: RefCell<Scan>,
    out: RefCell<OutScan>,
    /// The highest stream id the application accepted.
    accepted: Cell<u32>,
    refused: Cell<u64>,
    too_large: Cell<u64>,
    tripped: Cell<Option<Abuse>>,
    /// Where refusals are counted for the metrics (none in unit tests).
    metrics: Option<Http2Refusals>,
}

impl FrameGuard {
    /// A guard for a connection whose preface has not been read yet, counting the codec's
    /// refusals in `metrics`.
    pub fn new(limits: GuardLimits, metrics: Option<Http2Refusals>) -> Self {
        Self {
            limits,
            scan: RefCell::new(Scan {
                preface_left: PREFACE_LEN,
                ..Scan::default()
            }),
            out: RefCell::new(OutScan::default()),
            accepted: Cell::new(0),
            refused: Cell::new(0),
            too_large: Cell::new(0),
            tripped: Cell::new(None),
            metrics,
        }
    }

    /// Why the guard tripped, if it did.
    pub fn tripped(&self) -> Option<Abuse> {
        self.tripped.get()
    }

    /// Scans bytes the viewer sent, in order.
    pub fn scan(&self, mut bytes: &[u8]) {
        let mut scan = self.scan.borrow_mut();
        while !bytes.is_empty() && self.tripped.get().is_none() {
            if scan.preface_left > 0 {
                let n = scan.preface_left.min(bytes.len());
                scan.preface_left -= n;
                bytes = &bytes[n..];
            } else if scan.payload_left > 0 {
                let n = scan.payload_left.min(bytes.len());
                scan.payload_left -= n;
                bytes = &bytes[n..];
            } else if let Some(h) = scan.header.take(&mut bytes) {
                let len = payload_len(&h);
                scan.payload_left = len;
                if let Some(abuse) = self.frame(&mut scan, h[3], h[4], len) {
                    self.tripped.set(Some(abuse));
                }
            }
        }
    }

    /// Streams the codec refused with REFUSED_STREAM so far.
    pub fn refused_streams(&self) -> u64 {
        self.refused.get()
    }

    /// Requests the codec answered 431 itself so far.
    pub fn oversized_header_lists(&self) -> u64 {
        self.too_large.get()
    }

    /// The application accepted stream `id` (ids only grow).
    pub fn accepted(&self, id: u32) {
        self.accepted.set(self.accepted.get().max(id));
    }

    /// Scans bytes the codec sent, in order; logs the first refusal of each kind.
    pub fn scan_sent(&self, mut bytes: &[u8]) {
        let mut out = self.out.borrow_mut();
        while !bytes.is_empty() {
            if out.payload_left > 0 {
                let n = out.payload_left.min(bytes.len());
                if out.in_reset {
                    let at = out.code_len;
                    let take = n.min(4 - at);
                    out.code[at..at + take].copy_from_slice(&bytes[..take]);
                    out.code_len += take;
                    if out.code_len == 4 {
                        out.in_reset = false;
                        if u32::from_be_bytes(out.code) == REFUSED_STREAM {
                            self.stream_refused();
                        }
                    }
                }
                out.payload_left -= n;
                bytes = &bytes[n..];
            } else if let Some(h) = out.header.take(&mut bytes) {
                let len = payload_len(&h);
                out.payload_left = len;
                out.in_reset = h[3] == RST_STREAM && len == 4;
                out.code_len = 0;
                let stream = u32::from_be_bytes([h[5], h[6], h[7], h[8]]) & 0x7fff_ffff;
                if h[3] == HEADERS && stream > self.accepted.get() {
                    // A response before the application could accept the stream: the
                    // codec's own 431 (its only response).
                    self.header_list_refused();
                }
            }
        }
    }

    fn count(&self, reason: Http2Refusal) {
        if let Some(metrics) = &self.metrics {
            metrics.count(reason);
        }
    }

    fn stream_refused(&self) {
        self.count(Http2Refusal::RefusedStream);
        let refused = self.refused.get() + 1;
        self.refused.set(refused);
        if refused == 1 {
            tracing::info!(
                "HTTP/2 stream refused (REFUSED_STREAM): more than max_concurrent_streams open; \
                 further refusals on this connection are counted, not logged"
            );
        }
    }

    fn header_list_refused(&self) {
        self.count(Http2Refusal::HeaderListTooLarge);
        let count = self.too_large.get() + 1;
        self.too_large.set(count);
        if count == 1 {
            tracing::info!(
                "HTTP/2 request answered 431: header list over max_header_list_size; further \
                 ones on this connection are counted, not logged"
            );
        }
    }

    fn frame(&self, scan: &mut Scan, kind: u8, flags: u8, len: usize) -> Option<Abuse> {
        let control = match kind {
            PING if flags & FLAG_ACK_OR_END == 0 => 0,
            SETTINGS if flags & FLAG_ACK_OR_END == 0 => 1,
            PRIORITY => 2,
            RST_STREAM => {
                scan.resets += 1;
                if scan.resets > u64::from(self.limits.early_resets)
                    && scan.resets * 2 > scan.opened
                {
                    return Some(Abuse::RapidReset {
                        resets: scan.resets,
                        opened: scan.opened,
                    });
                }
                3
            }
            DATA if len == 0 && flags & FLAG_ACK_OR_END == 0 => 4,
            HEADERS => {
                scan.opened += 1;
                return None;
            }
            _ => return None,
        };
        if scan.control == 0 {
            // One clock read per window, not per frame.
            scan.window_start = Some(Instant::now());
        }
        scan.kinds[control] += 1;
        scan.control += 1;
        if scan.control <= self.limits.control_per_second {
            return None;
        }
        let now = Instant::now();
        let start = scan.window_start.unwrap_or(now);
        if now.duration_since(start) >= Duration::from_secs(1) {
            scan.window_start = Some(now);
            scan.control = 1;
            scan.kinds = [0; 5];
            scan.kinds[control] = 1;
            return None;
        }
        const NAMES: [&str; 5] = ["PING", "SETTINGS", "PRIORITY", "RST_STREAM", "empty DATA"];
        let most = (0..5).max_by_key(|&i| scan.kinds[i]).unwrap_or(0);
        Some(Abuse::ControlFlood(NAMES[most]))
    }
}

/// The viewer's stream as the codec reads it: every byte read passes the [`FrameGuard`].
/// Once the guard tripped, nothing more is read (the connection answers GOAWAY and closes).
#[derive(Debug)]
pub struct GuardedIo<T> {
    inner: T,
    guard: Rc<FrameGuard>,
}

impl<T> GuardedIo<T> {
    /// Scans what `inner` reads with `guard`.
    pub fn new(inner: T, guard: Rc<FrameGuard>) -> Self {
        Self { inner, guard }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for GuardedIo<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.guard.tripped().is_some() {
            // The connection task sees the trip in the same poll and shuts the codec down.
            return Poll::Pending;
        }
        let before = buf.filled().len();
        let read = Pin::new(&mut this.inner).poll_read(cx, buf);
        if read.is_ready() {
            this.guard.scan(&buf.filled()[before..]);
        }
        read
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for GuardedIo<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let written = Pin::new(&mut this.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = written {
            this.guard.scan_sent(&buf[..n]);
        }
        written
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let written = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(mut n)) = written {
            for b in bufs {
                let take = n.min(b.len());
                this.guard.scan_sent(&b[..take]);
                n -= take;
                if n == 0 {
                    break;
                }
            }
        }
        written
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(kind: u8, flags: u8, payload: &[u8]) -> Vec<u8> {
        let len = payload.len();
        let mut f = vec![
            (len >> 16) as u8,
            (len >> 8) as u8,
            len as u8,
            kind,
            flags,
            0,
            0,
            0,
            1,
        ];
        f.extend_from_slice(payload);
        f
    }

    fn guard(control: u32, resets: u32) -> FrameGuard {
        let g = FrameGuard::new(
            GuardLimits {
                control_per_second: control,
                early_resets: resets,
            },
            None,
        );
        g.scan(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
        g
    }

    #[test]
    fn ping_flood_trips_and_acks_do_not() {
        let g = guard(10, 100);
        let acks: Vec<u8> = (0..50).flat_map(|_| frame(PING, 1, &[0; 8])).collect();
        g.scan(&acks);
        assert_eq!(g.tripped(), None);
        let pings: Vec<u8> = (0..11).flat_map(|_| frame(PING, 0, &[0; 8])).collect();
        // Fed one byte at a time: headers split across reads are reassembled.
        for b in pings {
            g.scan(&[b]);
        }
        assert_eq!(g.tripped(), Some(Abuse::ControlFlood("PING")));
    }

    #[test]
    fn settings_and_empty_data_count_but_payload_bytes_do_not() {
        let g = guard(10, 100);
        // A DATA payload that looks like PING headers is skipped, not scanned.
        let fake: Vec<u8> = (0..20).flat_map(|_| frame(PING, 0, &[0; 8])).collect();
        g.scan(&frame(DATA, 0, &fake));
        assert_eq!(g.tripped(), None);
        let settings: Vec<u8> = (0..6).flat_map(|_| frame(SETTINGS, 0, &[])).collect();
        let empty: Vec<u8> = (0..5).flat_map(|_| frame(DATA, 0, &[])).collect();
        g.scan(&settings);
        g.scan(&empty);
        assert_eq!(g.tripped(), Some(Abuse::ControlFlood("SETTINGS")));
    }

    #[test]
    fn refused_streams_are_counted_in_what_the_codec_sends() {
        let g = guard(10, 10);
        let mut sent = frame(SETTINGS, 0, &[0; 6]);
        // A DATA payload that looks like a REFUSED_STREAM reset is skipped.
        sent.extend(frame(DATA, 0, &frame(RST_STREAM, 0, &[0, 0, 0, 7])));
        sent.extend(frame(RST_STREAM, 0, &[0, 0, 0, 8]));
        sent.extend(frame(RST_STREAM, 0, &[0, 0, 0, 7]));
        sent.extend(frame(RST_STREAM, 0, &[0, 0, 0, 7]));
        // Split anywhere (one byte at a time), as writes may be.
        for b in &sent {
            g.scan_sent(std::slice::from_ref(b));
        }
        assert_eq!(g.refused_streams(), 2);
        assert_eq!(
            g.tripped(),
            None,
            "what the server sends never trips the guard"
        );
        // HEADERS on streams the application accepted are its responses; on a later stream,
        // the codec's 431.
        let headers = |id: u8| {
            let mut f = frame(HEADERS, 5, &[0x88]);
            f[8] = id;
            f
        };
        g.accepted(3);
        g.scan_sent(&headers(1));
        g.scan_sent(&headers(3));
        assert_eq!(g.oversized_header_lists(), 0);
        g.scan_sent(&headers(5));
        assert_eq!(g.oversized_header_lists(), 1);
    }

    #[test]
    fn rapid_reset_trips_and_normal_cancels_do_not() {
        let g = guard(100_000, 10);
        // Many streams, a few cancelled: fine.
        for _ in 0..100 {
            g.scan(&frame(HEADERS, 5, &[0x82]));
        }
        for _ in 0..20 {
            g.scan(&frame(RST_STREAM, 0, &[0, 0, 0, 8]));
        }
        assert_eq!(g.tripped(), None);
        let g = guard(100_000, 10);
        for _ in 0..11 {
            g.scan(&frame(HEADERS, 5, &[0x82]));
            g.scan(&frame(RST_STREAM, 0, &[0, 0, 0, 8]));
        }
        assert!(matches!(
            g.tripped(),
            Some(Abuse::RapidReset { resets: 11, .. })
        ));
    }
}
