//! Error types: [`LoadError`] for failures that stop a run (bad configuration, unreadable
//! certificates, ...) and [`ErrorKind`] for the classified outcome of one failed operation,
//! which is counted and never treated as a success.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;

use boring::ssl;

/// A failure that prevents a run from starting or finishing.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The target is not a loopback address: this tool only loads 127.0.0.0/8 and ::1.
    #[error("refusing to load {target}: only loopback targets (127.0.0.0/8, ::1) are allowed")]
    NotLoopback {
        /// The refused address.
        target: SocketAddr,
    },
    /// The target could not be parsed or resolved.
    #[error("invalid target {target:?}: {reason}")]
    InvalidTarget {
        /// What was given.
        target: String,
        /// Why it is invalid.
        reason: String,
    },
    /// A setting is out of range or inconsistent.
    #[error("invalid configuration: {0}")]
    InvalidConfig(String),
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// A certificate or key file is malformed, or a certificate directory has none.
    #[error("bad certificate material {path}: {reason}")]
    BadCertificate {
        /// The file or directory.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// Minting client certificates failed.
    #[error("certificate generation failed: {0}")]
    Generate(#[from] rcgen::Error),
    /// BoringSSL refused to build the client context.
    #[error("TLS setup failed: {0}")]
    TlsSetup(#[from] boring::error::ErrorStack),
    /// A worker thread could not be started.
    #[error("cannot start a worker thread: {0}")]
    Spawn(#[source] io::Error),
    /// A worker thread's event loop failed (the poller could not be created or polled).
    #[error("event loop failed: {0}")]
    EventLoop(#[source] io::Error),
    /// A worker thread panicked (a bug).
    #[error("a worker thread panicked")]
    WorkerPanicked,
    /// Per-thread histograms could not be merged (a bug: they share bounds).
    #[error("cannot merge latency histograms: {0}")]
    Histogram(String),
}

/// The classified cause of one failed operation (connect + handshake + request + response).
///
/// The label of each kind ([`ErrorKind::label`]) is stable and used in the JSON summary.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ErrorKind {
    /// The TCP connection could not be established (refused, unreachable, ...).
    Connect,
    /// The server ended the TLS handshake with an alert; `alert` is its description in
    /// lowercase (`unknown_ca`, `certificate_required`, `certificate_revoked`, ...) or
    /// `unknown` when BoringSSL did not report it.
    HandshakeRefused {
        /// The alert description.
        alert: String,
    },
    /// A local TLS failure that is not an alert from the server (for example the server's
    /// certificate failed verification); `reason` is BoringSSL's reason in lowercase.
    Tls {
        /// BoringSSL's reason.
        reason: String,
    },
    /// The connection was reset or closed before the response was complete.
    Reset,
    /// An operation exceeded the per-operation timeout.
    Timeout,
    /// The response had a non-2xx status.
    HttpStatus(u16),
    /// The response was malformed (bad status line, bad framing, head too large).
    Protocol,
    /// With `--resume`: a session was offered but the server did a full handshake.
    NotResumed,
    /// With `--expect-refused`: the server accepted a handshake that should have been refused.
    Accepted,
    /// Rate mode: a scheduled request was never sent before the run ended.
    Unsent,
}

impl ErrorKind {
    /// The stable short name of the kind (without details): `connect`, `handshake_refused`,
    /// `tls`, `reset`, `timeout`, `http_status`, `protocol`, `not_resumed`, `accepted`,
    /// `unsent`.
    pub fn label(&self) -> &'static str {
        match self {
            ErrorKind::Connect => "connect",
            ErrorKind::HandshakeRefused { .. } => "handshake_refused",
            ErrorKind::Tls { .. } => "tls",
            ErrorKind::Reset => "reset",
            ErrorKind::Timeout => "timeout",
            ErrorKind::HttpStatus(_) => "http_status",
            ErrorKind::Protocol => "protocol",
            ErrorKind::NotResumed => "not_resumed",
            ErrorKind::Accepted => "accepted",
            ErrorKind::Unsent => "unsent",
        }
    }

    /// The detail of the kind, if it has one: the alert, the TLS reason or the status.
    pub fn detail(&self) -> Option<String> {
        match self {
            ErrorKind::HandshakeRefused { alert } => Some(alert.clone()),
            ErrorKind::Tls { reason } => Some(reason.clone()),
            ErrorKind::HttpStatus(status) => Some(status.to_string()),
            _ => None,
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.detail() {
            Some(detail) => write!(f, "{}({detail})", self.label()),
            None => f.write_str(self.label()),
        }
    }
}

/// Where in an operation an error happened; decides how a generic I/O error is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// The TCP connect.
    Connect,
    /// The TLS handshake or reading/writing through TLS.
    Transfer,
}

/// Classifies an I/O error.
///
/// Timeouts (`TimedOut`, and `WouldBlock` which a socket read/write timeout produces) are
/// [`ErrorKind::Timeout`]; any other error while connecting is [`ErrorKind::Connect`];
/// afterwards, resets, aborts, broken pipes, unexpected EOFs and anything else are
/// [`ErrorKind::Reset`].
pub fn classify_io(err: &io::Error, phase: Phase) -> ErrorKind {
    match err.kind() {
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => ErrorKind::Timeout,
        _ if phase == Phase::Connect => ErrorKind::Connect,
        _ => ErrorKind::Reset,
    }
}

/// The alert description carried by a BoringSSL reason string such as
/// `TLSV1_ALERT_UNKNOWN_CA` or `SSLV3_ALERT_BAD_CERTIFICATE` (BoringSSL reports a received
/// alert this way), in lowercase: `unknown_ca`, `bad_certificate`. `None` for other reasons.
pub fn alert_from_reason(reason: &str) -> Option<String> {
    let upper = reason.to_ascii_uppercase();
    ["TLSV1_ALERT_", "SSLV3_ALERT_", "TLSV13_ALERT_"]
        .iter()
        .find_map(|prefix| upper.strip_prefix(prefix))
        .filter(|rest| !rest.is_empty())
        .map(str::to_ascii_lowercase)
}

/// Classifies what BoringSSL reported: its error `code`, the underlying I/O error if any, and
/// the reason strings of its error stack (outermost last, as BoringSSL queues them).
///
/// A reason naming a received alert wins ([`ErrorKind::HandshakeRefused`]); then an I/O error
/// ([`classify_io`]); then any other reason ([`ErrorKind::Tls`]); a clean `close_notify` or an
/// EOF without an error is [`ErrorKind::Reset`] (the peer went away).
pub fn classify_tls_parts(
    code: ssl::ErrorCode,
    io_error: Option<&io::Error>,
    reasons: &[&str],
) -> ErrorKind {
    if let Some(alert) = reasons.iter().find_map(|r| alert_from_reason(r)) {
        return ErrorKind::HandshakeRefused { alert };
    }
    if let Some(err) = io_error {
        return classify_io(err, Phase::Transfer);
    }
    if code == ssl::ErrorCode::WANT_READ || code == ssl::ErrorCode::WANT_WRITE {
        // A blocking socket only "wants" more when its read/write timeout fired.
        return ErrorKind::Timeout;
    }
    if let Some(reason) = reasons.first() {
        return ErrorKind::Tls {
            reason: reason.to_ascii_lowercase(),
        };
    }
    if code == ssl::ErrorCode::SSL {
        return ErrorKind::Tls {
            reason: "unknown".to_owned(),
        };
    }
    ErrorKind::Reset
}

/// Classifies a BoringSSL error from a handshake, read or write (see [`classify_tls_parts`]).
pub fn classify_tls(err: &ssl::Error) -> ErrorKind {
    let reasons: Vec<&str> = err
        .ssl_error()
        .map(|stack| stack.errors().iter().filter_map(|e| e.reason()).collect())
        .unwrap_or_default();
    classify_tls_parts(err.code(), err.io_error(), &reasons)
}

/// Classifies an HTTP status: `None` for 2xx (a success), [`ErrorKind::HttpStatus`] otherwise.
pub fn classify_status(status: u16) -> Option<ErrorKind> {
    if (200..300).contains(&status) {
        None
    } else {
        Some(ErrorKind::HttpStatus(status))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_errors_by_phase() {
        let refused = io::Error::from(io::ErrorKind::ConnectionRefused);
        assert_eq!(classify_io(&refused, Phase::Connect), ErrorKind::Connect);
        let unreachable = io::Error::from(io::ErrorKind::HostUnreachable);
        assert_eq!(
            classify_io(&unreachable, Phase::Connect),
            ErrorKind::Connect
        );
        for kind in [io::ErrorKind::TimedOut, io::ErrorKind::WouldBlock] {
            let err = io::Error::from(kind);
            assert_eq!(classify_io(&err, Phase::Connect), ErrorKind::Timeout);
            assert_eq!(classify_io(&err, Phase::Transfer), ErrorKind::Timeout);
        }
        for kind in [
            io::ErrorKind::ConnectionReset,
            io::ErrorKind::ConnectionAborted,
            io::ErrorKind::BrokenPipe,
            io::ErrorKind::UnexpectedEof,
        ] {
            let err = io::Error::from(kind);
            assert_eq!(
                classify_io(&err, Phase::Transfer),
                ErrorKind::Reset,
                "{kind:?}"
            );
        }
    }

    #[test]
    fn alerts_from_boringssl_reasons() {
        assert_eq!(
            alert_from_reason("TLSV1_ALERT_UNKNOWN_CA").as_deref(),
            Some("unknown_ca")
        );
        assert_eq!(
            alert_from_reason("SSLV3_ALERT_BAD_CERTIFICATE").as_deref(),
            Some("bad_certificate")
        );
        assert_eq!(
            alert_from_reason("TLSV1_ALERT_CERTIFICATE_REQUIRED").as_deref(),
            Some("certificate_required")
        );
        assert_eq!(
            alert_from_reason("SSLV3_ALERT_CERTIFICATE_REVOKED").as_deref(),
            Some("certificate_revoked")
        );
        assert_eq!(alert_from_reason("CERTIFICATE_VERIFY_FAILED"), None);
        assert_eq!(alert_from_reason("TLSV1_ALERT_"), None);
    }

    #[test]
    fn tls_parts() {
        let alert = classify_tls_parts(ssl::ErrorCode::SSL, None, &["TLSV1_ALERT_UNKNOWN_CA"]);
        assert_eq!(
            alert,
            ErrorKind::HandshakeRefused {
                alert: "unknown_ca".into()
            }
        );
        assert_eq!(alert.to_string(), "handshake_refused(unknown_ca)");
        assert_eq!(alert.label(), "handshake_refused");

        let verify = classify_tls_parts(ssl::ErrorCode::SSL, None, &["CERTIFICATE_VERIFY_FAILED"]);
        assert_eq!(
            verify,
            ErrorKind::Tls {
                reason: "certificate_verify_failed".into()
            }
        );

        let reset = io::Error::from(io::ErrorKind::ConnectionReset);
        assert_eq!(
            classify_tls_parts(ssl::ErrorCode::SYSCALL, Some(&reset), &[]),
            ErrorKind::Reset
        );
        let timeout = io::Error::from(io::ErrorKind::WouldBlock);
        assert_eq!(
            classify_tls_parts(ssl::ErrorCode::WANT_READ, Some(&timeout), &[]),
            ErrorKind::Timeout
        );
        // An alert wins over the I/O error that followed it.
        assert_eq!(
            classify_tls_parts(
                ssl::ErrorCode::SSL,
                Some(&reset),
                &["SSLV3_ALERT_CERTIFICATE_EXPIRED"]
            ),
            ErrorKind::HandshakeRefused {
                alert: "certificate_expired".into()
            }
        );
        assert_eq!(
            classify_tls_parts(ssl::ErrorCode::ZERO_RETURN, None, &[]),
            ErrorKind::Reset
        );
        assert_eq!(
            classify_tls_parts(ssl::ErrorCode::SYSCALL, None, &[]),
            ErrorKind::Reset
        );
    }

    #[test]
    fn statuses() {
        assert_eq!(classify_status(200), None);
        assert_eq!(classify_status(204), None);
        assert_eq!(classify_status(299), None);
        assert_eq!(classify_status(301), Some(ErrorKind::HttpStatus(301)));
        assert_eq!(classify_status(403), Some(ErrorKind::HttpStatus(403)));
        assert_eq!(classify_status(502), Some(ErrorKind::HttpStatus(502)));
        assert_eq!(ErrorKind::HttpStatus(503).to_string(), "http_status(503)");
    }
}
