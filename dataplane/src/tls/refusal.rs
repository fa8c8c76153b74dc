//! Why a connection was refused, typed: [`Refusal`] for a certificate decision, and
//! [`HandshakeFailure`] for every way a TLS handshake can end without a connection.
//!
//! Both know their CloudFront `connectionStatus` code ([`FailureCode`], the list of
//! `spec/connection-logs.md`), and a refusal also its TLS alert; their `Display` is the precise
//! `failureDetail` of the connection log (which certificate of the chain, which store or CRL,
//! which alert). The connection log, the metrics and connection functions all read these types.

use std::fmt;

use boring::x509::X509VerifyError;

use crate::function::FunctionRefusal;
use crate::revocation::RevokedBy;

/// TLS alert numbers (RFC 8446 section 6) that refusals send.
pub mod alert {
    /// handshake_failure.
    pub const HANDSHAKE_FAILURE: u8 = 40;
    /// bad_certificate: a presented certificate does not parse or is otherwise unusable.
    pub const BAD_CERTIFICATE: u8 = 42;
    /// unsupported_certificate: e.g. not usable by a TLS client.
    pub const UNSUPPORTED_CERTIFICATE: u8 = 43;
    /// certificate_revoked.
    pub const CERTIFICATE_REVOKED: u8 = 44;
    /// certificate_expired (also sent for not-yet-valid certificates).
    pub const CERTIFICATE_EXPIRED: u8 = 45;
    /// unknown_ca.
    pub const UNKNOWN_CA: u8 = 48;
    /// access_denied.
    pub const ACCESS_DENIED: u8 = 49;
    /// internal_error: the decision could not be made (fail closed).
    pub const INTERNAL_ERROR: u8 = 80;
    /// certificate_required (TLS 1.3): the client sent no certificate.
    pub const CERTIFICATE_REQUIRED: u8 = 116;
}

/// The failure codes of CloudFront's `connectionStatus` (`Failed:<code>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FailureCode {
    /// The chain is longer than the site's `max_chain_depth`.
    ClientCertMaxChainDepthExceeded,
    /// The certificate is larger than allowed.
    ClientCertMaxSizeExceeded,
    /// No path to a trust anchor of the site's trust store.
    ClientCertUntrusted,
    /// A certificate of the chain is not valid yet.
    ClientCertNotYetValid,
    /// A certificate of the chain has expired.
    ClientCertExpired,
    /// The certificate's type is not supported.
    ClientCertTypeUnsupported,
    /// A certificate is malformed or fails a check not listed separately (signature, ...).
    ClientCertInvalid,
    /// Wrong key usage or extended key usage for a TLS client.
    ClientCertIntentInvalid,
    /// Rejected by custom validation: revoked, or revocation data too old.
    ClientCertRejected,
    /// No certificate where one is required.
    ClientCertMissing,
    /// The TCP connection failed (reset, closed mid-handshake).
    TcpError,
    /// The handshake did not finish in time.
    TcpTimeout,
    /// The connection function threw, timed out or decided nothing.
    ConnectionFunctionError,
    /// The connection function denied the connection.
    ConnectionFunctionDenied,
    /// Portcullis could not evaluate the connection (fail closed).
    Internal,
    /// Anything else, e.g. a TLS protocol error.
    UnmappedConnectionError,
}

impl FailureCode {
    /// Every code, in the spec's order.
    pub const ALL: [FailureCode; 16] = [
        Self::ClientCertMaxChainDepthExceeded,
        Self::ClientCertMaxSizeExceeded,
        Self::ClientCertUntrusted,
        Self::ClientCertNotYetValid,
        Self::ClientCertExpired,
        Self::ClientCertTypeUnsupported,
        Self::ClientCertInvalid,
        Self::ClientCertIntentInvalid,
        Self::ClientCertRejected,
        Self::ClientCertMissing,
        Self::TcpError,
        Self::TcpTimeout,
        Self::ConnectionFunctionError,
        Self::ConnectionFunctionDenied,
        Self::Internal,
        Self::UnmappedConnectionError,
    ];

    /// The code's name (`ClientCertExpired`).
    pub fn as_str(self) -> &'static str {
        self.status().trim_start_matches("Failed:")
    }

    /// The connection log's `connectionStatus` value (`Failed:ClientCertExpired`).
    pub fn status(self) -> &'static str {
        match self {
            Self::ClientCertMaxChainDepthExceeded => "Failed:ClientCertMaxChainDepthExceeded",
            Self::ClientCertMaxSizeExceeded => "Failed:ClientCertMaxSizeExceeded",
            Self::ClientCertUntrusted => "Failed:ClientCertUntrusted",
            Self::ClientCertNotYetValid => "Failed:ClientCertNotYetValid",
            Self::ClientCertExpired => "Failed:ClientCertExpired",
            Self::ClientCertTypeUnsupported => "Failed:ClientCertTypeUnsupported",
            Self::ClientCertInvalid => "Failed:ClientCertInvalid",
            Self::ClientCertIntentInvalid => "Failed:ClientCertIntentInvalid",
            Self::ClientCertRejected => "Failed:ClientCertRejected",
            Self::ClientCertMissing => "Failed:ClientCertMissing",
            Self::TcpError => "Failed:TcpError",
            Self::TcpTimeout => "Failed:TcpTimeout",
            Self::ConnectionFunctionError => "Failed:ConnectionFunctionError",
            Self::ConnectionFunctionDenied => "Failed:ConnectionFunctionDenied",
            Self::Internal => "Failed:Internal",
            Self::UnmappedConnectionError => "Failed:UnmappedConnectionError",
        }
    }

    /// Position in [`Self::ALL`] (for per-code counters).
    pub fn index(self) -> usize {
        Self::ALL.iter().position(|&c| c == self).unwrap_or(0)
    }
}

impl fmt::Display for FailureCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One certificate of a presented or built chain: its position (0 is the leaf) and subject.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainCert {
    /// Position in the chain, leaf first.
    pub index: usize,
    /// Subject name, for the detail (`CN=viewer, O=Example`), empty if unknown.
    pub subject: Box<str>,
}

impl fmt::Display for ChainCert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.index == 0 {
            f.write_str("leaf certificate")?;
        } else {
            write!(f, "chain certificate {}", self.index)?;
        }
        if !self.subject.is_empty() {
            write!(f, " ({})", self.subject)?;
        }
        Ok(())
    }
}

/// Why the certificate decision refused a client: the result of
/// [`super::verify::verify_chain`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The site requires a certificate and the client sent none.
    CertificateMissing,
    /// A presented certificate is not DER X.509.
    Malformed {
        /// Position in the presented chain.
        index: usize,
    },
    /// No path from the chain to a trust anchor of the site.
    Untrusted {
        /// The certificate whose issuer could not be found or trusted.
        cert: ChainCert,
        /// The verifier's error.
        error: X509VerifyError,
    },
    /// A certificate of the chain is past its notAfter.
    Expired {
        /// The expired certificate.
        cert: ChainCert,
        /// Its notAfter.
        not_after: Box<str>,
    },
    /// A certificate of the chain is before its notBefore.
    NotYetValid {
        /// The certificate.
        cert: ChainCert,
        /// Its notBefore.
        not_before: Box<str>,
    },
    /// The verified chain is longer than the site allows.
    ChainTooDeep {
        /// Certificates in the verified chain, trust anchor included.
        length: usize,
        /// The site's `max_chain_depth`.
        max: u8,
    },
    /// Wrong key usage or extended key usage for a TLS client.
    IntentInvalid {
        /// The certificate at fault.
        cert: ChainCert,
        /// The verifier's error.
        error: X509VerifyError,
    },
    /// Another verification failure (bad signature, malformed extension, ...).
    Invalid {
        /// The certificate at fault.
        cert: ChainCert,
        /// The verifier's error.
        error: X509VerifyError,
    },
    /// A certificate of the verified chain is revoked.
    Revoked {
        /// The revoked certificate.
        cert: ChainCert,
        /// Its serial, colon-separated lowercase hex.
        serial: Box<str>,
        /// The store or CRL that revokes it.
        by: RevokedBy,
    },
    /// A CRL of a chain certificate's issuer is past its nextUpdate and the site fails closed.
    CrlExpired {
        /// The certificate whose issuer's CRL is stale.
        cert: ChainCert,
    },
    /// The site's connection function denied the connection, or failed (threw, timed out,
    /// rejected, decided nothing): it runs only after every check above passed.
    Function(FunctionRefusal),
    /// The decision could not be evaluated (fail closed).
    Internal(&'static str),
}

impl Refusal {
    /// The CloudFront failure code.
    pub fn code(&self) -> FailureCode {
        match self {
            Self::CertificateMissing => FailureCode::ClientCertMissing,
            Self::Malformed { .. } | Self::Invalid { .. } => FailureCode::ClientCertInvalid,
            Self::Untrusted { .. } => FailureCode::ClientCertUntrusted,
            Self::Expired { .. } => FailureCode::ClientCertExpired,
            Self::NotYetValid { .. } => FailureCode::ClientCertNotYetValid,
            Self::ChainTooDeep { .. } => FailureCode::ClientCertMaxChainDepthExceeded,
            Self::IntentInvalid { .. } => FailureCode::ClientCertIntentInvalid,
            Self::Revoked { .. } | Self::CrlExpired { .. } => FailureCode::ClientCertRejected,
            Self::Function(refusal) if refusal.is_denial() => FailureCode::ConnectionFunctionDenied,
            Self::Function(_) => FailureCode::ConnectionFunctionError,
            Self::Internal(_) => FailureCode::Internal,
        }
    }

    /// The TLS alert sent to the client: what BoringSSL sends for the equivalent X.509 error.
    pub fn alert(&self) -> u8 {
        use super::ext::alert_for_verify_error as of;
        match self {
            Self::CertificateMissing => alert::CERTIFICATE_REQUIRED,
            Self::Malformed { .. } => alert::BAD_CERTIFICATE,
            Self::Untrusted { error, .. }
            | Self::IntentInvalid { error, .. }
            | Self::Invalid { error, .. } => of(*error),
            Self::Expired { .. } => of(X509VerifyError::CERT_HAS_EXPIRED),
            Self::NotYetValid { .. } => of(X509VerifyError::CERT_NOT_YET_VALID),
            Self::ChainTooDeep { .. } => of(X509VerifyError::CERT_CHAIN_TOO_LONG),
            Self::Revoked { .. } => of(X509VerifyError::CERT_REVOKED),
            Self::CrlExpired { .. } => of(X509VerifyError::CRL_HAS_EXPIRED),
            // Denied or failed alike: the client learns only that access is denied.
            Self::Function(_) => alert::ACCESS_DENIED,
            Self::Internal(_) => alert::INTERNAL_ERROR,
        }
    }
}

impl fmt::Display for Refusal {
    /// The connection log's `failureDetail`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::CertificateMissing => f.write_str("no client certificate"),
            Self::Malformed { index } => {
                write!(f, "presented certificate {index} does not parse")
            }
            Self::Untrusted { cert, error } => {
                write!(f, "no trusted issuer for {cert}: {}", error.error_string())
            }
            Self::Expired { cert, not_after } => {
                write!(f, "{cert} expired (notAfter {not_after})")
            }
            Self::NotYetValid { cert, not_before } => {
                write!(f, "{cert} not yet valid (notBefore {not_before})")
            }
            Self::ChainTooDeep { length, max } => write!(
                f,
                "chain of {length} certificates (trust anchor included) exceeds max_chain_depth {max}"
            ),
            Self::IntentInvalid { cert, error } => {
                write!(f, "{cert} not usable by a TLS client: {}", error.error_string())
            }
            Self::Invalid { cert, error } => write!(f, "{cert}: {}", error.error_string()),
            Self::Revoked { cert, serial, by } => {
                write!(f, "revoked by {by}: {cert}, serial {serial}")
            }
            Self::CrlExpired { cert } => write!(
                f,
                "CRL of the issuer of {cert} is past its nextUpdate (crl_expired = deny)"
            ),
            Self::Function(refusal) => write!(f, "{refusal}"),
            Self::Internal(what) => write!(f, "internal error: {what}"),
        }
    }
}

/// How a TLS handshake ended without a connection: refused by the certificate decision, or
/// failed at the TCP or TLS level.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HandshakeFailure {
    /// The certificate decision refused the client.
    Refused(Refusal),
    /// The handshake did not finish within the handshake time-out.
    Timeout {
        /// The time-out, in milliseconds.
        after_ms: u64,
    },
    /// The TCP connection failed or closed before the handshake finished.
    Transport(Box<str>),
    /// A TLS protocol error (no shared cipher, bad record, unexpected message, an alert from
    /// the client, ...).
    Protocol {
        /// The alert Portcullis sent, if any.
        sent: Option<u8>,
        /// The alert the client sent, if any.
        received: Option<u8>,
        /// BoringSSL's reason.
        reason: Box<str>,
    },
    /// The connection could not be set up (fail closed).
    Internal(Box<str>),
}

impl HandshakeFailure {
    /// The CloudFront failure code.
    pub fn code(&self) -> FailureCode {
        match self {
            Self::Refused(refusal) => refusal.code(),
            Self::Timeout { .. } => FailureCode::TcpTimeout,
            Self::Transport(_) => FailureCode::TcpError,
            Self::Protocol { .. } => FailureCode::UnmappedConnectionError,
            Self::Internal(_) => FailureCode::Internal,
        }
    }
}

impl fmt::Display for HandshakeFailure {
    /// The connection log's `failureDetail`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let alert_text = |a: u8| format!("{} ({a})", super::ext::alert_description(a));
        match self {
            Self::Refused(refusal) => write!(f, "{refusal}; alert {}", alert_text(refusal.alert())),
            Self::Timeout { after_ms } => {
                write!(f, "handshake not finished within {after_ms} ms")
            }
            Self::Transport(what) => f.write_str(what),
            Self::Protocol {
                sent,
                received,
                reason,
            } => {
                write!(f, "TLS protocol error: {reason}")?;
                if let Some(a) = sent {
                    write!(f, "; alert sent {}", alert_text(*a))?;
                }
                if let Some(a) = received {
                    write!(f, "; alert received {}", alert_text(*a))?;
                }
                Ok(())
            }
            Self::Internal(what) => write!(f, "internal error: {what}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_has_its_status_and_index() {
        for (i, code) in FailureCode::ALL.iter().enumerate() {
            assert_eq!(code.index(), i);
            assert_eq!(code.status(), format!("Failed:{code}"));
        }
    }

    #[test]
    fn revocation_detail_names_the_store_or_crl() {
        let cert = ChainCert {
            index: 0,
            subject: "CN=viewer".into(),
        };
        let by_store = Refusal::Revoked {
            cert: cert.clone(),
            serial: "01:02".into(),
            by: RevokedBy::Store("viewers".into()),
        };
        assert_eq!(
            by_store.to_string(),
            "revoked by store viewers: leaf certificate (CN=viewer), serial 01:02"
        );
        assert_eq!(by_store.code(), FailureCode::ClientCertRejected);
        assert_eq!(by_store.alert(), alert::CERTIFICATE_REVOKED);
        let by_crl = Refusal::Revoked {
            cert,
            serial: "01:02".into(),
            by: RevokedBy::Crl {
                issuer: "CN=Root".into(),
            },
        };
        assert!(by_crl
            .to_string()
            .starts_with("revoked by CRL of CN=Root: "));
        let failure = HandshakeFailure::Refused(by_crl);
        assert!(
            failure
                .to_string()
                .ends_with("; alert certificate revoked (44)"),
            "{failure}"
        );
    }
}
