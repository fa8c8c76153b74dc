//! BoringSSL over monoio's owned-buffer I/O.
//!
//! BoringSSL wants a synchronous `Read + Write` transport; monoio wants buffers it can own while
//! the kernel works on them. [`TlsStream`] joins the two with a pair of ciphertext buffers:
//! BoringSSL reads records from `incoming` and appends records to `outgoing`, and the async
//! methods move those buffers to the socket and back. Plaintext is copied only where BoringSSL
//! itself copies it (decrypting into the caller's slice, encrypting from it).

use std::io::{self, Read, Write};
use std::sync::Arc;
use std::time::{Duration, Instant};

use boring::ssl::{ErrorCode, NameType, Ssl, SslStream, SslVersion};
use monoio::buf::IoBufMut;
use monoio::io::{
    AsyncReadRent, AsyncWriteRent, AsyncWriteRentExt, CancelableAsyncReadRent, Canceller,
};

use super::context::{SiteTls, TlsSnapshot};
use super::ext;
use super::refusal::{CertificateFault, HandshakeFailure, Refusal, MAX_CERTIFICATE_MESSAGE};
use super::viewer_identity::{HandshakeRecord, OpenIdentity, SiteRevocationCheck};
use crate::write_timeout;

/// Ciphertext read buffer while traffic is light (an idle connection waits with this much):
/// room for a typical request in one record.
const INCOMING_LIGHT: usize = 2048;
/// Ciphertext read buffer during bulk transfer: one full TLS record plus its header and tag.
pub(super) const INCOMING_BULK: usize = 16 * 1024 + 512;
/// How long queued session tickets wait for the first response before they are sent alone.
const TICKET_HOLD: Duration = Duration::from_millis(200);
/// Largest plaintext slice handed to BoringSSL per write, so `outgoing` stays bounded.
pub(super) const MAX_WRITE_CHUNK: usize = 64 * 1024;

/// The synchronous side BoringSSL sees: ciphertext already read from, or waiting to be written
/// to, the socket.
#[derive(Debug, Default)]
pub(super) struct CipherBuffers {
    pub(super) incoming: Vec<u8>,
    pub(super) consumed: usize,
    pub(super) outgoing: Vec<u8>,
    pub(super) eof: bool,
    /// The last read filled the buffer: more is probably coming, read in bulk.
    pub(super) bulk: bool,
}

impl Read for CipherBuffers {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let available = &self.incoming[self.consumed..];
        if available.is_empty() {
            return if self.eof {
                Ok(0)
            } else {
                Err(io::ErrorKind::WouldBlock.into())
            };
        }
        let n = available.len().min(buf.len());
        buf[..n].copy_from_slice(&available[..n]);
        self.consumed += n;
        Ok(n)
    }
}

impl Write for CipherBuffers {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.outgoing.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Transports that can wait for incoming data without handing the kernel a buffer, and
/// cancel a read in flight without losing what it read.
pub trait Readiness: CancelableAsyncReadRent {
    /// Resolves when a read would find data (or end of stream) waiting.
    fn wait_readable(&self) -> impl std::future::Future<Output = io::Result<()>>;
}

impl Readiness for monoio::net::TcpStream {
    async fn wait_readable(&self) -> io::Result<()> {
        // Exact on both drivers. io_uring: a POLL_ADD. The epoll fallback keeps a readiness
        // flag per socket that a read which emptied the socket without seeing EAGAIN leaves
        // set: a relaxed wait would return at once and the caller would then block inside a
        // TLS read that neither revocation nor shutdown can interrupt. Not relaxed, monoio
        // checks the flag with poll(2) and clears it when the socket is in fact empty.
        self.readable(false).await
    }
}

/// Why a TLS operation failed.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The socket failed.
    #[error("transport: {0}")]
    Io(#[from] io::Error),
    /// BoringSSL refused the peer or the protocol failed (the alert, if any, was sent).
    #[error("tls: {0}")]
    Ssl(boring::ssl::Error),
    /// The peer closed the connection in the middle of the handshake.
    #[error("peer closed the connection during the handshake")]
    Eof,
    /// The decision made right after the handshake (a connection function, for a client
    /// without a certificate) refused the peer; the alert was sent.
    #[error("refused after the handshake")]
    Refused,
}

/// What a finished handshake negotiated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HandshakeInfo {
    /// `TLSv1.3`, `TLSv1.2`.
    pub version: &'static str,
    /// IANA name of the cipher suite (`TLS_AES_128_GCM_SHA256`).
    pub cipher: Option<&'static str>,
    /// The negotiated ALPN protocol, if any.
    pub alpn: Option<&'static str>,
    /// Whether the session was resumed (no certificate exchange).
    pub resumed: bool,
}

/// A server-side TLS connection over a monoio transport.
pub struct TlsStream<T> {
    ssl: SslStream<CipherBuffers>,
    transport: T,
    /// Longest wait for the client to take any sent bytes (zero: no bound).
    send_timeout: Duration,
    /// TLS 1.3 session tickets are queued inside BoringSSL until the first write, so they
    /// leave with the first response instead of in a send of their own.
    tickets_queued: bool,
    /// Plaintext bytes read from and written to the client.
    bytes_in: u64,
    bytes_out: u64,
    /// A send failed or timed out: the connection can only be closed.
    send_failed: bool,
    /// Cancels a [`Self::read_ahead`] read (kept: one allocation per connection, not per
    /// request).
    canceller: Canceller,
}

impl<T> std::fmt::Debug for TlsStream<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsStream").finish_non_exhaustive()
    }
}

impl<T: AsyncReadRent + AsyncWriteRent> TlsStream<T> {
    /// Wraps `transport` in a TLS session that has not yet shaken hands.
    pub fn new(ssl: Ssl, transport: T) -> Result<Self, boring::error::ErrorStack> {
        let buffers = CipherBuffers {
            // Handshake flights (client certificate chains) arrive in bulk.
            incoming: Vec::with_capacity(INCOMING_BULK),
            bulk: true,
            ..CipherBuffers::default()
        };
        Ok(Self {
            ssl: SslStream::new(ssl, buffers)?,
            transport,
            send_timeout: Duration::ZERO,
            tickets_queued: false,
            bytes_in: 0,
            bytes_out: 0,
            send_failed: false,
            canceller: Canceller::new(),
        })
    }

    /// Bounds every send: when the client takes no bytes for `timeout`, the send fails with
    /// [`io::ErrorKind::TimedOut`] and the connection can only be dropped (a client that
    /// stops reading must not hold the connection, its buffers or an origin connection).
    pub fn set_send_timeout(&mut self, timeout: Duration) {
        self.send_timeout = timeout;
    }

    /// The site the ClientHello selected (None before the ClientHello was read).
    pub fn site(&self) -> Option<&Arc<SiteTls>> {
        TlsSnapshot::site_of(self.ssl.ssl())
    }

    /// What the handshake recorded: the certificate decision and the alerts.
    pub fn handshake_record(&self) -> Option<&HandshakeRecord> {
        TlsSnapshot::handshake_record_of(self.ssl.ssl())
    }

    /// The negotiated version, cipher suite and ALPN protocol, and whether the session was
    /// resumed.
    pub fn handshake_info(&self) -> HandshakeInfo {
        let ssl = self.ssl.ssl();
        HandshakeInfo {
            version: ssl.version_str(),
            cipher: ssl.current_cipher().and_then(|c| c.standard_name()),
            alpn: ssl.selected_alpn_protocol().map(|p| match p {
                b"http/1.1" => "http/1.1",
                b"h2" => "h2",
                _ => "other",
            }),
            resumed: ssl.session_reused(),
        }
    }

    /// The server name the client sent (SNI), if any.
    pub fn sni(&self) -> Option<&str> {
        self.ssl.ssl().servername(NameType::HOST_NAME)
    }

    /// The DER of the client's leaf certificate (of the handshake in progress, or of the
    /// session after it), without a copy. None without one.
    pub fn leaf_der(&self) -> Option<&[u8]> {
        ext::peer_leaf_der(self.ssl.ssl())
    }

    /// The client's certificate identity for re-checking on revocation changes: the verified
    /// chain, or on resumption the chain of the session. None without a client certificate.
    pub fn open_identity(&self, check: SiteRevocationCheck) -> Option<OpenIdentity> {
        OpenIdentity::of(self.ssl.ssl(), self.handshake_record(), check)
    }

    /// Plaintext bytes (read from, written to) the client so far.
    pub fn bytes(&self) -> (u64, u64) {
        (self.bytes_in, self.bytes_out)
    }

    /// How a handshake that [`Self::accept`] failed with `error` ended: the certificate
    /// decision's refusal, a missing certificate, a transport failure, or a protocol error
    /// (with the alerts sent and received).
    pub fn handshake_failure(&self, error: &TlsError) -> HandshakeFailure {
        let record = self.handshake_record();
        if let Some(refusal) = record.and_then(HandshakeRecord::refusal) {
            return HandshakeFailure::Refused(refusal.clone());
        }
        let ssl = match error {
            TlsError::Io(e) => return HandshakeFailure::Transport(transport_text(e).into()),
            TlsError::Eof => {
                return HandshakeFailure::Transport(
                    "client closed the connection during the handshake".into(),
                )
            }
            TlsError::Refused => {
                return HandshakeFailure::Internal("refused after the handshake".into())
            }
            TlsError::Ssl(e) => e,
        };
        if let Some(io) = ssl.io_error() {
            return HandshakeFailure::Transport(transport_text(io).into());
        }
        let first = ssl.ssl_error().and_then(|stack| stack.errors().first());
        if first.is_some_and(ext::is_missing_certificate) {
            return HandshakeFailure::Refused(Refusal::CertificateMissing);
        }
        // The SSL-level reason may follow a lower layer's (ECDSA's bad signature first, then
        // the handshake's). An oversized message is the client's Certificate only once the
        // ClientHello chose a site (every later client message is small); before, it is a
        // protocol error.
        let errors = ssl.ssl_error().map_or(&[][..], |stack| stack.errors());
        if let Some(fault) = errors
            .iter()
            .find_map(ext::certificate_fault)
            .filter(|f| *f != CertificateFault::TooLarge || self.site().is_some())
        {
            return HandshakeFailure::Certificate {
                fault,
                sent: record.and_then(HandshakeRecord::alert_sent),
            };
        }
        if first.is_none() && ssl.code() == ErrorCode::SYSCALL {
            return HandshakeFailure::Transport(
                "client closed the connection during the handshake".into(),
            );
        }
        HandshakeFailure::Protocol {
            sent: record.and_then(HandshakeRecord::alert_sent),
            received: record.and_then(HandshakeRecord::alert_received),
            reason: first.and_then(|e| e.reason()).unwrap_or("unknown").into(),
        }
    }

    /// The underlying transport.
    pub fn transport(&self) -> &T {
        &self.transport
    }

    /// Runs the server handshake to completion. On failure any alert BoringSSL produced has been
    /// sent before this returns.
    pub async fn accept(&mut self) -> Result<(), TlsError> {
        loop {
            match self.ssl.accept() {
                Ok(()) => {
                    if let Err(alert) = super::context::decide_without_certificate(self.ssl.ssl()) {
                        ext::send_fatal_alert(self.ssl.ssl_mut(), alert);
                        let _ = self.send_pending().await;
                        return Err(TlsError::Refused);
                    }
                    self.tickets_queued = self.ssl.ssl().version2() == Some(SslVersion::TLS1_3);
                    self.send_pending().await?;
                    return Ok(());
                }
                Err(e) if e.code() == ErrorCode::WANT_READ => {
                    self.send_pending().await?;
                    if !self.fill().await? {
                        return Err(TlsError::Eof);
                    }
                }
                Err(e) if e.code() == ErrorCode::WANT_WRITE => self.send_pending().await?,
                Err(e) => {
                    // Best effort: deliver the alert that explains the refusal.
                    let _ = self.send_pending().await;
                    return Err(TlsError::Ssl(e));
                }
            }
        }
    }

    /// Reads decrypted application data into `buf`. Returns 0 at end of stream (close_notify or a
    /// plain TCP close).
    pub async fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            match self.ssl.ssl_read(buf) {
                Ok(n) => {
                    self.bytes_in += n as u64;
                    if !self.ssl.get_ref().outgoing.is_empty() {
                        self.send_pending().await?;
                    }
                    return Ok(n);
                }
                Err(e) if e.code() == ErrorCode::WANT_READ => {
                    self.send_pending().await?;
                    if !self.fill().await? {
                        return Ok(0);
                    }
                }
                Err(e) if e.code() == ErrorCode::WANT_WRITE => self.send_pending().await?,
                Err(e) if e.code() == ErrorCode::ZERO_RETURN => return Ok(0),
                Err(e) if e.code() == ErrorCode::SYSCALL && self.ssl.get_ref().eof => return Ok(0),
                Err(e) => return Err(ssl_to_io(e)),
            }
        }
    }

    /// Encrypts and sends all of `buf`, together with anything queued by [`Self::feed`].
    pub async fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.feed(buf).await?;
        self.flush().await
    }

    /// Encrypts `buf` into the outgoing queue without sending it yet (the queue is sent when
    /// it grows past a bound, by the next [`Self::write_all`], [`Self::flush`], read that has
    /// to wait, or [`Self::shutdown`]), so a response head, its body and a close_notify can
    /// leave in one send.
    pub async fn feed(&mut self, mut buf: &[u8]) -> io::Result<()> {
        if !buf.is_empty() {
            self.tickets_queued = false;
        }
        while !buf.is_empty() {
            let chunk = &buf[..buf.len().min(MAX_WRITE_CHUNK)];
            match self.ssl.ssl_write(chunk) {
                Ok(n) => {
                    self.bytes_out += n as u64;
                    buf = &buf[n..];
                    if self.ssl.get_ref().outgoing.len() >= MAX_WRITE_CHUNK {
                        self.flush().await?;
                    }
                }
                Err(e) if e.code() == ErrorCode::WANT_WRITE => self.flush().await?,
                Err(e) if e.code() == ErrorCode::WANT_READ => {
                    self.flush().await?;
                    if !self.fill().await? {
                        return Err(io::ErrorKind::UnexpectedEof.into());
                    }
                }
                Err(e) => return Err(ssl_to_io(e)),
            }
        }
        Ok(())
    }

    /// Whether a read can make progress without waiting on the socket: decrypted or
    /// undecrypted bytes are buffered, or the peer already closed.
    fn has_buffered_input(&self) -> bool {
        let io = self.ssl.get_ref();
        ext::has_pending(self.ssl.ssl()) || io.consumed < io.incoming.len() || io.eof
    }

    /// Waits, between requests, until the client sends something, holding no read or write
    /// buffer meanwhile: queued output is sent, both ciphertext buffers are released and the
    /// wait is a readiness poll, so an idle keep-alive connection costs only its TLS state.
    pub async fn wait_readable(&mut self) -> io::Result<()>
    where
        T: Readiness,
    {
        if self.has_buffered_input() {
            return Ok(());
        }
        self.send_pending().await?;
        self.release_buffers();
        if self.tickets_queued {
            // Usually the first request is on its way: give it a moment to carry the
            // tickets out with its response; a client that stays idle gets them now, so the
            // queued flight does not stay in memory.
            // Boxed: the timer lives on the heap only during this first wait, so it does not
            // enlarge every idle connection's task.
            let hold = Box::pin(monoio::time::timeout(
                TICKET_HOLD,
                self.transport.wait_readable(),
            ));
            if let Ok(ready) = hold.await {
                return ready;
            }
            self.send_queued_tickets().await?;
            self.release_buffers();
        }
        self.transport.wait_readable().await
    }

    fn release_buffers(&mut self) {
        let io = self.ssl.get_mut();
        io.incoming = Vec::new();
        io.consumed = 0;
        io.outgoing = Vec::new();
        io.bulk = false;
    }

    /// Sends the session tickets BoringSSL queued at the end of the handshake.
    async fn send_queued_tickets(&mut self) -> io::Result<()> {
        self.tickets_queued = false;
        if !ext::write_queued_flight(self.ssl.ssl_mut()) {
            tracing::debug!("flushing session tickets failed");
        }
        self.send_pending().await
    }

    /// Sends close_notify (best effort) and shuts the transport down. After a failed send
    /// nothing more is sent.
    pub async fn shutdown(&mut self) -> io::Result<()> {
        if !self.send_failed {
            let _ = self.ssl.shutdown();
            self.flush().await?;
        }
        self.transport.shutdown().await
    }

    /// Closes after a refused handshake without losing the alert: stops sending, then reads
    /// and discards what the peer still sends (at most 128 KiB, for at most `linger`), so the
    /// kernel ends the connection with FIN instead of a reset that could destroy the alert.
    /// The bound covers a Certificate message of about [`MAX_CERTIFICATE_MESSAGE`] refused from
    /// its header while the client is still sending it, and the messages after it; a client
    /// sending more than that is reset.
    pub async fn linger_close(&mut self, linger: Duration) {
        const MAX_DISCARD: usize = MAX_CERTIFICATE_MESSAGE + 28 * 1024;
        let _ = self.transport.shutdown().await;
        let deadline = Instant::now() + linger;
        let mut discarded = 0;
        let mut buf = std::mem::take(&mut self.ssl.get_mut().incoming);
        buf.clear();
        buf.reserve(INCOMING_LIGHT);
        while discarded < MAX_DISCARD {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            match monoio::time::timeout(left, self.transport.read(buf)).await {
                Ok((Ok(n), returned)) if n > 0 => {
                    discarded += n;
                    buf = returned;
                    buf.clear();
                }
                _ => break,
            }
        }
    }

    /// Writes every pending ciphertext byte to the transport with no time-out of its own: for
    /// the handshake and read paths, whose callers bound the whole operation (handshake,
    /// request head and idle time-outs). Keeping the send timer out of these futures keeps an
    /// idle connection's task small.
    async fn send_pending(&mut self) -> io::Result<()> {
        if self.send_failed {
            return Err(io::ErrorKind::BrokenPipe.into());
        }
        let pending = std::mem::take(&mut self.ssl.get_mut().outgoing);
        if pending.is_empty() {
            self.ssl.get_mut().outgoing = pending;
            return Ok(());
        }
        let (result, mut pending) = self.transport.write_all(pending).await;
        pending.clear();
        self.ssl.get_mut().outgoing = pending;
        if result.is_err() {
            self.send_failed = true;
        }
        result.map(|_| ())
    }

    /// Writes every pending ciphertext byte to the transport, each write bounded by the
    /// send time-out. Once a send failed, every later one fails at once.
    pub async fn flush(&mut self) -> io::Result<()> {
        if self.send_failed {
            return Err(io::ErrorKind::BrokenPipe.into());
        }
        let pending = std::mem::take(&mut self.ssl.get_mut().outgoing);
        if pending.is_empty() {
            self.ssl.get_mut().outgoing = pending;
            return Ok(());
        }
        let len = pending.len();
        let (result, mut pending) =
            write_timeout::write_all(&mut self.transport, pending, 0..len, self.send_timeout).await;
        pending.clear();
        self.ssl.get_mut().outgoing = pending;
        if result.is_err() {
            self.send_failed = true;
        }
        result
    }

    /// Takes the ciphertext buffer out for a read, unread bytes moved to the front and room
    /// made after them.
    fn incoming_for_read(&mut self) -> Vec<u8> {
        let io = self.ssl.get_mut();
        let mut incoming = std::mem::take(&mut io.incoming);
        incoming.drain(..io.consumed);
        io.consumed = 0;
        // Size the buffer to the traffic: bulk reads get a whole record's room; when traffic
        // is light (and always between requests) a drained buffer shrinks back, so idle
        // connections hold little. A cancelled read (time-out) leaves an empty buffer behind,
        // which gets room again here too.
        let want = if io.bulk {
            INCOMING_BULK
        } else {
            INCOMING_LIGHT
        };
        if incoming.is_empty() && incoming.capacity() > want {
            incoming = Vec::with_capacity(want);
        }
        if incoming.capacity() - incoming.len() < want / 2 {
            incoming.reserve(want);
        }
        incoming
    }

    /// Puts the buffer back after a read of `result` into `start..end`. Returns false at end
    /// of stream.
    fn incoming_read(
        &mut self,
        incoming: Vec<u8>,
        result: io::Result<usize>,
        room: usize,
    ) -> io::Result<bool> {
        let io = self.ssl.get_mut();
        io.incoming = incoming;
        match result {
            Ok(0) => {
                io.eof = true;
                Ok(false)
            }
            Ok(n) => {
                io.bulk = n == room;
                Ok(true)
            }
            Err(e) => Err(e),
        }
    }

    /// Reads more ciphertext from the transport. Returns false at end of stream.
    async fn fill(&mut self) -> io::Result<bool> {
        let incoming = self.incoming_for_read();
        let (start, end) = (incoming.len(), incoming.capacity());
        let (result, slice) = self.transport.read(incoming.slice_mut(start..end)).await;
        self.incoming_read(slice.into_inner(), result, end - start)
    }

    /// Waits for the next request on a connection that just answered one, with a read
    /// already posted instead of a readiness poll first: keep-alive clients usually send the
    /// next request at once, and this saves a ring round trip per request. Gives up after
    /// `window`, or as soon as `interrupt` resolves (shutdown, revocation news): the read is
    /// then cancelled and its answer awaited, so bytes that arrived meanwhile are kept, never
    /// lost. Returns true when bytes (or the end of the stream) are buffered for the next
    /// read; false when nothing came, and then the connection holds no buffer again.
    pub async fn read_ahead(
        &mut self,
        window: Duration,
        interrupt: impl std::future::Future<Output = ()>,
    ) -> io::Result<bool>
    where
        T: Readiness,
    {
        if self.has_buffered_input() {
            return Ok(true);
        }
        self.send_pending().await?;
        let incoming = self.incoming_for_read();
        let (start, end) = (incoming.len(), incoming.capacity());
        let (result, slice) = {
            let canceller = &mut self.canceller;
            let read = self
                .transport
                .cancelable_read(incoming.slice_mut(start..end), canceller.handle());
            let mut read = std::pin::pin!(read);
            let gave_up = async {
                monoio::select! {
                    _ = monoio::time::sleep(window) => {},
                    _ = interrupt => {},
                }
            };
            monoio::select! {
                done = &mut read => done,
                _ = gave_up => {
                    // A used canceller stays cancelled: the connection gets a fresh one.
                    let _ = std::mem::take(canceller).cancel();
                    read.await
                }
            }
        };
        let cancelled = matches!(
            &result,
            Err(e) if matches!(e.raw_os_error(), Some(libc::ECANCELED | libc::EINTR))
        );
        if cancelled {
            self.ssl.get_mut().incoming = slice.into_inner();
            self.release_buffers();
            return Ok(false);
        }
        self.incoming_read(slice.into_inner(), result, end - start)?;
        Ok(true)
    }
}

impl TlsStream<monoio::net::TcpStream> {
    /// Hands the established session to a poll-style stream (tokio's `AsyncRead` and
    /// `AsyncWrite`, for the HTTP/2 codec): the socket becomes a readiness-driven one and the
    /// BoringSSL session with its ciphertext buffers moves over as it is, so nothing read or
    /// queued is lost. Fails (returning the stream) when the socket cannot change mode.
    pub fn into_poll(self) -> Result<super::poll_stream::TlsPollStream, Box<(io::Error, Self)>> {
        let Self {
            ssl,
            transport,
            send_timeout,
            tickets_queued: _,
            bytes_in,
            bytes_out,
            send_failed,
            canceller: _,
        } = self;
        match transport.try_into_poll_io() {
            Ok(io) => Ok(super::poll_stream::TlsPollStream::new(
                ssl,
                io,
                send_timeout,
                (bytes_in, bytes_out),
                send_failed,
            )),
            Err((e, transport)) => Err(Box::new((
                e,
                Self {
                    ssl,
                    transport,
                    send_timeout,
                    tickets_queued: false,
                    bytes_in,
                    bytes_out,
                    send_failed,
                    canceller: Canceller::new(),
                },
            ))),
        }
    }
}

/// A transport failure as the connection log's detail says it.
fn transport_text(e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::ConnectionReset => "connection reset by the client".to_owned(),
        io::ErrorKind::BrokenPipe => "connection closed by the client (broken pipe)".to_owned(),
        io::ErrorKind::UnexpectedEof => {
            "client closed the connection during the handshake".to_owned()
        }
        _ => format!("transport error: {e}"),
    }
}

pub(super) fn ssl_to_io(e: boring::ssl::Error) -> io::Error {
    match e.into_io_error() {
        Ok(io) => io,
        Err(e) => io::Error::other(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pki::{CertKind, CertSpec, Issued};
    use boring::ssl::{SslAcceptor, SslConnector, SslMethod, SslVerifyMode};
    use boring::x509::X509;

    fn server_acceptor(server: &Issued) -> SslAcceptor {
        let mut b = SslAcceptor::mozilla_intermediate_v5(SslMethod::tls()).expect("acceptor");
        let cert = X509::from_pem(server.cert_pem.as_bytes()).expect("cert");
        let key = boring::pkey::PKey::private_key_from_pem(server.key_pem.as_bytes()).expect("key");
        b.set_certificate(&cert).expect("set cert");
        b.set_private_key(&key).expect("set key");
        b.build()
    }

    /// Echo server over a real socket on 127.0.0.1, driven by a real BoringSSL client thread
    /// that sends `payload` in odd-sized pieces and reads the echo back.
    fn echo_round_trip(payload: Vec<u8>) -> Vec<u8> {
        let root = Issued::self_signed(CertSpec::new("Test Root", CertKind::RootCa)).expect("root");
        let server = root
            .issue(CertSpec::new(
                "localhost",
                CertKind::Server {
                    dns_names: vec!["localhost".into()],
                    ip_addresses: vec![],
                },
            ))
            .expect("server");
        let acceptor = server_acceptor(&server);
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = std_listener.local_addr().expect("addr");
        let root_pem = root.cert_pem.clone();
        let expected_len = payload.len();
        let client = std::thread::spawn(move || {
            let mut c = SslConnector::builder(SslMethod::tls()).expect("connector");
            c.cert_store_mut()
                .add_cert(X509::from_pem(root_pem.as_bytes()).expect("root"))
                .expect("add root");
            c.set_verify(SslVerifyMode::PEER);
            let tcp = std::net::TcpStream::connect(addr).expect("connect");
            tcp.set_read_timeout(Some(std::time::Duration::from_secs(20)))
                .expect("timeout");
            let mut tls = c.build().connect("localhost", tcp).expect("handshake");
            let mut echoed = Vec::with_capacity(expected_len);
            let mut buf = vec![0u8; 65536];
            // Each piece is read back before the next is sent, so neither side's socket
            // buffers can fill up and deadlock the exchange.
            for piece in payload.chunks(7919) {
                tls.write_all(piece).expect("write");
                let want = echoed.len() + piece.len();
                while echoed.len() < want {
                    let n = tls.read(&mut buf).expect("read");
                    assert!(n > 0, "server closed early");
                    echoed.extend_from_slice(&buf[..n]);
                }
            }
            echoed
        });
        let mut rt = monoio::RuntimeBuilder::<monoio::FusionDriver>::new()
            .enable_timer()
            .build()
            .expect("runtime");
        rt.block_on(async move {
            let listener = monoio::net::TcpListener::from_std(std_listener).expect("listener");
            let (tcp, _) = listener.accept().await.expect("accept");
            let ssl = Ssl::new(acceptor.context()).expect("ssl");
            let mut tls = TlsStream::new(ssl, tcp).expect("stream");
            tls.accept().await.expect("server handshake");
            let mut buf = vec![0u8; 10_000];
            let mut total = 0;
            while total < expected_len {
                let n = tls.read(&mut buf).await.expect("server read");
                assert!(n > 0, "client closed early");
                tls.write_all(&buf[..n]).await.expect("server write");
                total += n;
            }
        });
        client.join().expect("client thread")
    }

    #[test]
    fn echoes_small_and_large_payloads_intact() {
        for len in [1usize, 5000, 3 * 1024 * 1024 + 17] {
            let payload: Vec<u8> = (0..len).map(|i| (i * 7 + 3) as u8).collect();
            let echoed = echo_round_trip(payload.clone());
            assert_eq!(echoed.len(), payload.len());
            assert!(echoed == payload, "payload of {len} bytes corrupted");
        }
    }

    #[test]
    fn handshake_with_garbage_fails_cleanly() {
        let root = Issued::self_signed(CertSpec::new("Test Root", CertKind::RootCa)).expect("root");
        let acceptor = server_acceptor(&root);
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = std_listener.local_addr().expect("addr");
        let client = std::thread::spawn(move || {
            let mut tcp = std::net::TcpStream::connect(addr).expect("connect");
            tcp.set_read_timeout(Some(std::time::Duration::from_secs(10)))
                .expect("timeout");
            tcp.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
                .expect("write");
            let mut buf = Vec::new();
            let _ = tcp.read_to_end(&mut buf);
        });
        let mut rt = monoio::RuntimeBuilder::<monoio::FusionDriver>::new()
            .build()
            .expect("runtime");
        let result = rt.block_on(async move {
            let listener = monoio::net::TcpListener::from_std(std_listener).expect("listener");
            let (tcp, _) = listener.accept().await.expect("accept");
            let mut tls =
                TlsStream::new(Ssl::new(acceptor.context()).expect("ssl"), tcp).expect("stream");
            let result = tls.accept().await;
            // Close while the runtime still runs, so the client sees EOF.
            let _ = tls.shutdown().await;
            result
        });
        client.join().expect("client");
        assert!(matches!(result, Err(TlsError::Ssl(_))), "got {result:?}");
    }
}
