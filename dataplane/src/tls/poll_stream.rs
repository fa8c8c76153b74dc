//! The established TLS session as a poll-style stream (tokio's `AsyncRead` + `AsyncWrite`),
//! for the HTTP/2 codec (`h2`), which drives its I/O through those traits.
//!
//! [`TlsStream::into_poll`](super::TlsStream::into_poll) moves the BoringSSL session and its
//! ciphertext buffers here unchanged and turns the socket into monoio's readiness-driven
//! `TcpStreamPoll`. No future is stored: every call runs BoringSSL on the buffers and does at
//! most one non-blocking socket operation, so there is nothing self-referential.
//!
//! Writes only encrypt into the outgoing buffer (up to a bound); `poll_flush` sends it, so
//! the frames `h2` writes between two flushes leave in one send. Vectored writes (`h2` hands
//! over its frame buffer and a DATA payload as two slices) are gathered into one record when
//! they fit in one, so a small response's HEADERS and DATA share a TLS record. A send that makes no
//! progress for the send time-out fails with `TimedOut` (a viewer that stops reading cannot
//! hold the connection), after which every send fails at once.

use std::cell::Cell;
use std::future::Future as _;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::rc::Rc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use boring::ssl::{ErrorCode, SslStream};
use monoio::net::tcp::stream_poll::TcpStreamPoll;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::stream::{ssl_to_io, CipherBuffers, INCOMING_BULK, MAX_WRITE_CHUNK};

/// Plaintext bytes read from and written to the viewer, readable while the stream itself
/// is owned by the codec.
#[derive(Debug, Default)]
pub struct ByteCounts {
    read: Cell<u64>,
    written: Cell<u64>,
}

impl ByteCounts {
    /// (read, written) so far.
    pub fn get(&self) -> (u64, u64) {
        (self.read.get(), self.written.get())
    }
}

/// A server-side TLS session over a readiness-driven socket.
pub struct TlsPollStream {
    ssl: SslStream<CipherBuffers>,
    io: TcpStreamPoll,
    send_timeout: Duration,
    /// Started when a send could not make progress; reset by progress.
    stall: Option<Pin<Box<monoio::time::Sleep>>>,
    counts: Rc<ByteCounts>,
    send_failed: bool,
    /// close_notify was queued (shutdown in progress).
    closing: bool,
    /// Where the slices of a vectored write are gathered into one record (kept for reuse).
    gather: Vec<u8>,
}

/// The largest plaintext of one TLS record.
const RECORD_PLAINTEXT: usize = 16 * 1024;

impl std::fmt::Debug for TlsPollStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsPollStream").finish_non_exhaustive()
    }
}

impl TlsPollStream {
    pub(super) fn new(
        ssl: SslStream<CipherBuffers>,
        io: TcpStreamPoll,
        send_timeout: Duration,
        bytes: (u64, u64),
        send_failed: bool,
    ) -> Self {
        let counts = ByteCounts::default();
        counts.read.set(bytes.0);
        counts.written.set(bytes.1);
        Self {
            ssl,
            io,
            send_timeout,
            stall: None,
            counts: Rc::new(counts),
            send_failed,
            closing: false,
            gather: Vec::new(),
        }
    }

    /// The byte counters, shared (they stay readable after the stream moved into the codec).
    pub fn counts(&self) -> Rc<ByteCounts> {
        Rc::clone(&self.counts)
    }

    /// Sends what is queued in the outgoing buffer. Ready(Ok) once it is empty.
    fn poll_send(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.send_failed {
            return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
        }
        loop {
            let pending = &self.ssl.get_ref().outgoing;
            if pending.is_empty() {
                self.stall = None;
                return Poll::Ready(Ok(()));
            }
            match Pin::new(&mut self.io).poll_write(cx, pending) {
                Poll::Ready(Ok(0)) => {
                    self.send_failed = true;
                    return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
                }
                Poll::Ready(Ok(n)) => {
                    self.ssl.get_mut().outgoing.drain(..n);
                    self.stall = None;
                }
                Poll::Ready(Err(e)) if e.kind() == io::ErrorKind::Interrupted => {}
                Poll::Ready(Err(e)) => {
                    self.send_failed = true;
                    return Poll::Ready(Err(e));
                }
                Poll::Pending => {
                    if self.send_timeout.is_zero() {
                        return Poll::Pending;
                    }
                    let timeout = self.send_timeout;
                    let stall = self
                        .stall
                        .get_or_insert_with(|| Box::pin(monoio::time::sleep(timeout)));
                    if stall.as_mut().poll(cx).is_ready() {
                        self.send_failed = true;
                        return Poll::Ready(Err(io::ErrorKind::TimedOut.into()));
                    }
                    return Poll::Pending;
                }
            }
        }
    }

    /// Reads more ciphertext from the socket. Ready(Ok(false)) at end of stream.
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<bool>> {
        let buffers = self.ssl.get_mut();
        if buffers.consumed > 0 {
            buffers.incoming.drain(..buffers.consumed);
            buffers.consumed = 0;
        }
        if buffers.incoming.capacity() - buffers.incoming.len() < INCOMING_BULK / 2 {
            buffers.incoming.reserve(INCOMING_BULK);
        }
        let spare = buffers.incoming.spare_capacity_mut();
        let mut read = ReadBuf::uninit(spare);
        ready!(Pin::new(&mut self.io).poll_read(cx, &mut read))?;
        let n = read.filled().len();
        let buffers = self.ssl.get_mut();
        if n == 0 {
            buffers.eof = true;
            return Poll::Ready(Ok(false));
        }
        let len = buffers.incoming.len();
        // SAFETY: `poll_read` initialised the first `n` bytes of the spare capacity.
        unsafe { buffers.incoming.set_len(len + n) };
        Poll::Ready(Ok(true))
    }
}

/// What `ssl_read` and `ssl_write` asked for.
fn wants(e: &boring::ssl::Error) -> Option<ErrorCode> {
    let code = e.code();
    (code == ErrorCode::WANT_READ || code == ErrorCode::WANT_WRITE).then_some(code)
}

impl AsyncRead for TlsPollStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            let dst = buf.initialize_unfilled();
            if dst.is_empty() {
                return Poll::Ready(Ok(()));
            }
            match this.ssl.ssl_read(dst) {
                Ok(n) => {
                    buf.advance(n);
                    this.counts.read.set(this.counts.read.get() + n as u64);
                    // A KeyUpdate or an alert may have queued a reply.
                    if !this.ssl.get_ref().outgoing.is_empty() {
                        let _ = this.poll_send(cx);
                    }
                    return Poll::Ready(Ok(()));
                }
                Err(e) if e.code() == ErrorCode::ZERO_RETURN => return Poll::Ready(Ok(())),
                Err(e) if e.code() == ErrorCode::SYSCALL && this.ssl.get_ref().eof => {
                    return Poll::Ready(Ok(()))
                }
                Err(e) if wants(&e).is_some() => {
                    // Queued output (alerts, KeyUpdate replies) goes first; a socket that
                    // takes none right now does not stop reading.
                    if let Poll::Ready(Err(e)) = this.poll_send(cx) {
                        return Poll::Ready(Err(e));
                    }
                    if !ready!(this.poll_fill(cx))? {
                        // Checked again by BoringSSL: a truncated record is an error.
                        continue;
                    }
                }
                Err(e) => return Poll::Ready(Err(ssl_to_io(e))),
            }
        }
    }
}

impl AsyncWrite for TlsPollStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        if this.ssl.get_ref().outgoing.len() >= MAX_WRITE_CHUNK {
            ready!(this.poll_send(cx))?;
        }
        let chunk = &buf[..buf.len().min(MAX_WRITE_CHUNK)];
        loop {
            match this.ssl.ssl_write(chunk) {
                Ok(n) => {
                    this.counts
                        .written
                        .set(this.counts.written.get() + n as u64);
                    return Poll::Ready(Ok(n));
                }
                Err(e) if wants(&e) == Some(ErrorCode::WANT_WRITE) => {
                    ready!(this.poll_send(cx))?;
                }
                Err(e) if wants(&e) == Some(ErrorCode::WANT_READ) => {
                    if !ready!(this.poll_fill(cx))? {
                        return Poll::Ready(Err(io::ErrorKind::UnexpectedEof.into()));
                    }
                }
                Err(e) => return Poll::Ready(Err(ssl_to_io(e))),
            }
        }
    }

    /// Slices that fit in one record together are written as one record (one `ssl_write`);
    /// otherwise the first non-empty slice is written as by `poll_write`.
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let mut slices = bufs.iter().filter(|b| !b.is_empty());
        let Some(first) = slices.next() else {
            return Poll::Ready(Ok(0));
        };
        let total: usize = bufs.iter().map(|b| b.len()).sum();
        if total == first.len() || total > RECORD_PLAINTEXT {
            return Pin::new(this).poll_write(cx, first);
        }
        let mut gather = std::mem::take(&mut this.gather);
        gather.clear();
        for b in bufs {
            gather.extend_from_slice(b);
        }
        let written = Pin::new(&mut *this).poll_write(cx, &gather);
        this.gather = gather;
        written
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().poll_send(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.closing && !this.send_failed {
            this.closing = true;
            let _ = this.ssl.shutdown();
        }
        if !this.send_failed {
            ready!(this.poll_send(cx))?;
        }
        match ready!(Pin::new(&mut this.io).poll_shutdown(cx)) {
            // The viewer closed first: nothing left to shut down.
            Err(e) if e.kind() == io::ErrorKind::NotConnected => Poll::Ready(Ok(())),
            done => Poll::Ready(done),
        }
    }
}

impl TlsPollStream {
    /// Reads and discards what the viewer still sends, for at most `linger` and 64 KiB, so
    /// the connection ends with FIN rather than a reset that could destroy the last frames.
    pub async fn linger_close(&mut self, linger: Duration) {
        const MAX_DISCARD: usize = 64 * 1024;
        let _ = std::future::poll_fn(|cx| Pin::new(&mut *self).poll_shutdown(cx)).await;
        let mut discarded = 0;
        let drain = async {
            let mut scratch = [0u8; 2048];
            while discarded < MAX_DISCARD {
                let mut buf = ReadBuf::new(&mut scratch);
                let read =
                    std::future::poll_fn(|cx| Pin::new(&mut self.io).poll_read(cx, &mut buf)).await;
                match read {
                    Ok(()) if !buf.filled().is_empty() => discarded += buf.filled().len(),
                    _ => break,
                }
            }
        };
        let _ = monoio::time::timeout(linger, drain).await;
    }
}

/// A [`TlsPollStream`] the codec can own while the connection keeps a handle to it (to
/// close it with a lingering drain after the codec is gone). Single-threaded: the codec and
/// the connection run in the same task, never borrowing it at the same time.
#[derive(Debug, Clone)]
pub struct SharedTlsPollStream(Rc<std::cell::RefCell<TlsPollStream>>);

impl SharedTlsPollStream {
    /// Shares `stream`.
    pub fn new(stream: TlsPollStream) -> Self {
        Self(Rc::new(std::cell::RefCell::new(stream)))
    }

    /// Closes the session (close_notify unless a send failed) and drains what the viewer
    /// still sends for at most `linger`, once the codec has let go of the stream (while it
    /// still holds it, the socket simply closes when both are dropped).
    pub async fn close(self, linger: Duration) {
        if let Ok(stream) = Rc::try_unwrap(self.0) {
            stream.into_inner().linger_close(linger).await;
        }
    }
}

impl AsyncRead for SharedTlsPollStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.0.borrow_mut()).poll_read(cx, buf)
    }
}

impl AsyncWrite for SharedTlsPollStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut *self.0.borrow_mut()).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut *self.0.borrow_mut()).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.0.borrow_mut()).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.0.borrow_mut()).poll_shutdown(cx)
    }
}
