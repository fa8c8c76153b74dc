//! The BoringSSL client: one context for the run, a client certificate set per connection,
//! and a per-certificate session cache filled by the new-session callback (which works for
//! TLS 1.2 and for TLS 1.3 tickets that arrive after the handshake).

use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use boring::ex_data::Index;
use boring::ssl::{
    Ssl, SslConnector, SslMethod, SslSession, SslSessionCacheMode, SslStream, SslVerifyMode,
    SslVersion,
};

use crate::certs::ClientIdentity;
use crate::errors::{classify_io, classify_tls, ErrorKind, LoadError, Phase};
use crate::http::{HttpConn, Transport};
use crate::nonblocking::NbSocket;

/// The TLS protocol version a run pins.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub enum TlsVersion {
    /// TLS 1.2 only.
    #[serde(rename = "TLSv1.2")]
    Tls12,
    /// TLS 1.3 only.
    #[default]
    #[serde(rename = "TLSv1.3")]
    Tls13,
}

impl TlsVersion {
    fn boring(self) -> SslVersion {
        match self {
            TlsVersion::Tls12 => SslVersion::TLS1_2,
            TlsVersion::Tls13 => SslVersion::TLS1_3,
        }
    }
}

/// Everything the client needs to connect.
#[derive(Debug, Clone)]
pub struct TlsSettings<'a> {
    /// The loopback address to connect to.
    pub target: SocketAddr,
    /// SNI and the name the server certificate must match.
    pub sni: &'a str,
    /// Trust anchors for the server certificate; `None` skips server verification.
    pub ca: Option<&'a Path>,
    /// The pinned protocol version.
    pub version: TlsVersion,
    /// Key exchange groups offered (BoringSSL syntax).
    pub groups: &'a str,
    /// Per-operation timeout (connect, and every read and write).
    pub timeout: Duration,
}

/// A TLS connection with its HTTP state.
pub type TlsConn = HttpConn<SslStream<TcpStream>>;

/// A non-blocking TLS connection over a mio socket, driven by an event loop
/// ([`crate::nonblocking`]).
pub type NbStream = SslStream<crate::nonblocking::NbSocket>;

/// What a failed BoringSSL call on a non-blocking socket means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NbError {
    /// It needs the socket to become readable (`SSL_ERROR_WANT_READ`); call it again then.
    WantRead,
    /// It needs the socket to become writable (`SSL_ERROR_WANT_WRITE`); call it again then.
    WantWrite,
    /// The peer ended the stream (`close_notify`, or an EOF without it).
    Eof,
    /// A classified failure.
    Failed(ErrorKind),
}

/// Whether a BoringSSL error is the end of the stream: a `close_notify`, or an EOF without
/// one (reported as SYSCALL with no cause).
fn is_eof(e: &boring::ssl::Error) -> bool {
    e.code() == boring::ssl::ErrorCode::ZERO_RETURN
        || (e.code() == boring::ssl::ErrorCode::SYSCALL
            && e.io_error().is_none()
            && e.ssl_error().is_none_or(|s| s.errors().is_empty()))
}

/// Reads a BoringSSL error from a handshake, read or write on a non-blocking socket.
pub fn nb_error(e: &boring::ssl::Error) -> NbError {
    if e.code() == boring::ssl::ErrorCode::WANT_READ {
        NbError::WantRead
    } else if e.code() == boring::ssl::ErrorCode::WANT_WRITE {
        NbError::WantWrite
    } else if is_eof(e) {
        NbError::Eof
    } else {
        NbError::Failed(classify_tls(e))
    }
}

impl Transport for SslStream<TcpStream> {
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, ErrorKind> {
        match self.ssl_read(buf) {
            Ok(n) => Ok(n),
            Err(e) if is_eof(&e) => Ok(0),
            Err(e) => Err(classify_tls(&e)),
        }
    }

    fn write_all(&mut self, mut buf: &[u8]) -> Result<(), ErrorKind> {
        while !buf.is_empty() {
            let n = self.ssl_write(buf).map_err(|e| classify_tls(&e))?;
            buf = &buf[n..];
        }
        Ok(())
    }
}

/// A freshly established connection.
#[derive(Debug)]
pub struct Connected {
    /// The connection, ready for requests.
    pub conn: TlsConn,
    /// The client certificate presented (index into the pool), if any.
    pub identity: Option<usize>,
    /// A cached session was offered.
    pub offered_session: bool,
    /// The server resumed the offered session.
    pub resumed: bool,
    /// Time from the start of the TCP connect to the end of the handshake.
    pub handshake_time: Duration,
}

/// The run's TLS client.
pub struct TlsClient {
    connector: SslConnector,
    verify_server: bool,
    sni: String,
    target: SocketAddr,
    timeout: Duration,
    identities: Vec<ClientIdentity>,
    /// The latest session per identity (one slot when there is no client certificate).
    sessions: Vec<Mutex<Option<SslSession>>>,
    /// Per-connection slot the new-session callback fills.
    new_session: Index<Ssl, Option<SslSession>>,
}

impl std::fmt::Debug for TlsClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsClient")
            .field("target", &self.target)
            .field("sni", &self.sni)
            .field("identities", &self.identities.len())
            .finish()
    }
}

impl TlsClient {
    /// Builds the client context (ALPN `http/1.1`, the pinned version, client session cache).
    pub fn new(
        settings: &TlsSettings<'_>,
        identities: Vec<ClientIdentity>,
    ) -> Result<TlsClient, LoadError> {
        let mut builder = SslConnector::builder(SslMethod::tls())?;
        builder.set_min_proto_version(Some(settings.version.boring()))?;
        builder.set_max_proto_version(Some(settings.version.boring()))?;
        builder.set_alpn_protos(b"\x08http/1.1")?;
        builder.set_curves_list(settings.groups)?;
        match settings.ca {
            Some(ca) => {
                if !ca.exists() {
                    return Err(LoadError::Read {
                        path: ca.to_path_buf(),
                        source: std::io::Error::from(std::io::ErrorKind::NotFound),
                    });
                }
                builder.set_ca_file(ca)?;
                builder.set_verify(SslVerifyMode::PEER);
            }
            None => builder.set_verify(SslVerifyMode::NONE),
        }
        let new_session = Ssl::new_ex_index::<Option<SslSession>>()?;
        builder.set_session_cache_mode(SslSessionCacheMode::CLIENT);
        builder.set_new_session_callback(move |ssl, session| {
            if let Some(slot) = ssl.ex_data_mut(new_session) {
                *slot = Some(session);
            }
        });
        let slots = identities.len().max(1);
        Ok(TlsClient {
            connector: builder.build(),
            verify_server: settings.ca.is_some(),
            sni: settings.sni.to_owned(),
            target: settings.target,
            timeout: settings.timeout,
            identities,
            sessions: (0..slots).map(|_| Mutex::new(None)).collect(),
            new_session,
        })
    }

    /// How many client certificates are in the pool.
    pub fn identities(&self) -> usize {
        self.identities.len()
    }

    /// The pool index for operation number `n` (round-robin), or `None` without a pool.
    pub fn identity_for(&self, n: u64) -> Option<usize> {
        let len = self.identities.len() as u64;
        // n % len < len, which came from a usize.
        (len > 0).then(|| (n % len) as usize)
    }

    /// The SNI / Host name.
    pub fn sni(&self) -> &str {
        &self.sni
    }

    fn session_slot(&self, identity: Option<usize>) -> Option<&Mutex<Option<SslSession>>> {
        self.sessions.get(identity.unwrap_or(0))
    }

    fn cached_session(&self, identity: Option<usize>) -> Option<SslSession> {
        let slot = self.session_slot(identity)?;
        slot.lock().map(|s| s.clone()).unwrap_or(None)
    }

    /// Connects over TCP and completes a TLS handshake presenting `identity`; with `resume`,
    /// offers that identity's cached session if there is one.
    pub fn connect(&self, identity: Option<usize>, resume: bool) -> Result<Connected, ErrorKind> {
        let started = Instant::now();
        let tcp = TcpStream::connect_timeout(&self.target, self.timeout)
            .map_err(|e| classify_io(&e, Phase::Connect))?;
        let _ = tcp.set_nodelay(true);
        tcp.set_read_timeout(Some(self.timeout))
            .and_then(|()| tcp.set_write_timeout(Some(self.timeout)))
            .map_err(|e| classify_io(&e, Phase::Connect))?;
        let (ssl, offered_session) =
            self.new_ssl(identity, resume).map_err(|e| ErrorKind::Tls {
                reason: format!("setup: {e}"),
            })?;
        let mut stream = SslStream::new(ssl, tcp).map_err(|e| ErrorKind::Tls {
            reason: format!("setup: {e}"),
        })?;
        stream.connect().map_err(|e| classify_tls(&e))?;
        let resumed = stream.ssl().session_reused();
        Ok(Connected {
            conn: HttpConn::new(stream),
            identity,
            offered_session,
            resumed,
            handshake_time: started.elapsed(),
        })
    }

    /// Starts a non-blocking TCP connect and prepares (without starting) the TLS handshake
    /// presenting `identity`; with `resume`, offers that identity's cached session if there is
    /// one. Returns the stream and whether a session was offered. The caller registers the
    /// socket with its event loop, waits for the connect to finish and drives the handshake.
    pub fn start_connect(
        &self,
        identity: Option<usize>,
        resume: bool,
    ) -> Result<(NbStream, bool), ErrorKind> {
        let tcp = mio::net::TcpStream::connect(self.target)
            .map_err(|e| classify_io(&e, Phase::Connect))?;
        let _ = tcp.set_nodelay(true);
        let (ssl, offered_session) =
            self.new_ssl(identity, resume).map_err(|e| ErrorKind::Tls {
                reason: format!("setup: {e}"),
            })?;
        let stream = SslStream::new(ssl, NbSocket::new(tcp)).map_err(|e| ErrorKind::Tls {
            reason: format!("setup: {e}"),
        })?;
        Ok((stream, offered_session))
    }

    /// The per-operation timeout.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    fn new_ssl(
        &self,
        identity: Option<usize>,
        resume: bool,
    ) -> Result<(Ssl, bool), boring::error::ErrorStack> {
        let config = self
            .connector
            .configure()?
            .verify_hostname(self.verify_server);
        let mut ssl = config.into_ssl(&self.sni)?;
        if let Some(id) = identity.and_then(|i| self.identities.get(i)) {
            ssl.set_certificate(&id.cert)?;
            ssl.set_private_key(&id.key)?;
            for cert in &id.chain {
                ssl.add_chain_cert(cert)?;
            }
        }
        ssl.set_ex_data(self.new_session, None);
        let mut offered = false;
        if resume {
            if let Some(session) = self.cached_session(identity) {
                // SAFETY: every cached session was negotiated through `self.connector`'s
                // context, the only context this client has.
                unsafe { ssl.set_session(&session)? };
                offered = true;
            }
        }
        Ok((ssl, offered))
    }

    /// Stores the newest session the server issued on `conn` (if any) as the session to
    /// resume for `identity`.
    pub fn save_session(&self, conn: &TlsConn, identity: Option<usize>) {
        let session = conn
            .transport()
            .ssl()
            .ex_data(self.new_session)
            .and_then(Clone::clone);
        if let (Some(session), Some(slot)) = (session, self.session_slot(identity)) {
            if let Ok(mut slot) = slot.lock() {
                *slot = Some(session);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use boring::pkey::PKey;
    use boring::ssl::{SslAcceptor, SslAlert, SslVerifyError};
    use boring::x509::X509;
    use std::io::{Read, Write};
    use std::net::TcpListener;

    /// A self-signed server for `localhost` that requires a client certificate and refuses
    /// every one with `unknown_ca`, or, when `accept_all`, accepts any and answers 200.
    fn server(accept_all: bool, version: SslVersion) -> (SocketAddr, std::thread::JoinHandle<()>) {
        let key = rcgen::KeyPair::generate().expect("key");
        let cert = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
            .expect("params")
            .self_signed(&key)
            .expect("cert");
        let mut acceptor =
            SslAcceptor::mozilla_intermediate_v5(SslMethod::tls()).expect("acceptor");
        acceptor
            .set_certificate(&X509::from_der(cert.der()).expect("x509"))
            .expect("cert");
        acceptor
            .set_private_key(
                &PKey::private_key_from_pem(key.serialize_pem().as_bytes()).expect("pkey"),
            )
            .expect("key");
        acceptor.set_min_proto_version(Some(version)).expect("min");
        acceptor.set_max_proto_version(Some(version)).expect("max");
        acceptor.set_custom_verify_callback(
            SslVerifyMode::PEER | SslVerifyMode::FAIL_IF_NO_PEER_CERT,
            move |_| {
                if accept_all {
                    Ok(())
                } else {
                    Err(SslVerifyError::Invalid(SslAlert::UNKNOWN_CA))
                }
            },
        );
        let acceptor = acceptor.build();
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let handle = std::thread::spawn(move || {
            if let Ok((tcp, _)) = listener.accept() {
                tcp.set_read_timeout(Some(Duration::from_secs(5)))
                    .expect("timeout");
                if let Ok(mut tls) = acceptor.accept(tcp) {
                    let mut buf = [0u8; 1024];
                    let _ = Read::read(&mut tls, &mut buf);
                    let _ = Write::write_all(
                        &mut tls,
                        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
                    );
                    let _ = tls.shutdown();
                }
            }
        });
        (addr, handle)
    }

    fn identity() -> ClientIdentity {
        let key = rcgen::KeyPair::generate().expect("key");
        let cert = rcgen::CertificateParams::new(Vec::<String>::new())
            .expect("params")
            .self_signed(&key)
            .expect("cert");
        ClientIdentity {
            name: "test".into(),
            cert: X509::from_der(cert.der()).expect("x509"),
            chain: Vec::new(),
            key: PKey::private_key_from_pem(key.serialize_pem().as_bytes()).expect("pkey"),
        }
    }

    fn client(addr: SocketAddr, version: TlsVersion) -> TlsClient {
        TlsClient::new(
            &TlsSettings {
                target: addr,
                sni: "localhost",
                ca: None,
                version,
                groups: crate::config::DEFAULT_GROUPS,
                timeout: Duration::from_secs(5),
            },
            vec![identity()],
        )
        .expect("client")
    }

    /// Connects and does one request; returns the classified outcome.
    fn attempt(client: &TlsClient) -> Result<u16, ErrorKind> {
        let mut connected = client.connect(client.identity_for(0), false)?;
        let response =
            connected
                .conn
                .exchange(&crate::http::get_request("localhost", "/", true))?;
        Ok(response.status)
    }

    #[test]
    fn refused_client_certificate_is_an_alert_in_both_versions() {
        for (ours, theirs) in [
            (TlsVersion::Tls13, SslVersion::TLS1_3),
            (TlsVersion::Tls12, SslVersion::TLS1_2),
        ] {
            let (addr, handle) = server(false, theirs);
            let outcome = attempt(&client(addr, ours));
            handle.join().expect("server thread");
            assert_eq!(
                outcome,
                Err(ErrorKind::HandshakeRefused {
                    alert: "unknown_ca".into()
                }),
                "{ours:?}"
            );
        }
    }

    #[test]
    fn accepted_client_certificate() {
        let (addr, handle) = server(true, SslVersion::TLS1_3);
        let outcome = attempt(&client(addr, TlsVersion::Tls13));
        handle.join().expect("server thread");
        assert_eq!(outcome, Ok(200));
    }

    #[test]
    fn version_mismatch_is_a_tls_error_and_refused_port_a_connect_error() {
        let (addr, handle) = server(true, SslVersion::TLS1_2);
        let outcome = attempt(&client(addr, TlsVersion::Tls13));
        handle.join().expect("server thread");
        assert!(
            matches!(
                outcome,
                Err(ErrorKind::HandshakeRefused { .. } | ErrorKind::Tls { .. })
            ),
            "{outcome:?}"
        );

        // A port nobody listens on.
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        drop(listener);
        assert_eq!(
            attempt(&client(addr, TlsVersion::Tls13)),
            Err(ErrorKind::Connect)
        );
    }

    #[test]
    fn silent_server_times_out() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let client = TlsClient::new(
            &TlsSettings {
                target: addr,
                sni: "localhost",
                ca: None,
                version: TlsVersion::Tls13,
                groups: crate::config::DEFAULT_GROUPS,
                timeout: Duration::from_millis(200),
            },
            Vec::new(),
        )
        .expect("client");
        assert_eq!(attempt(&client), Err(ErrorKind::Timeout));
        drop(listener);
    }
}
