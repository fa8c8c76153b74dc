//! The viewer-mTLS policy of a site, applied in BoringSSL's custom certificate verification
//! callback.
//!
//! The contexts run without BoringSSL's X509 layer (the peer chain stays as DER buffers, so an
//! open connection holds no parsed certificates); this module parses the presented chain for
//! the duration of the check, has BoringSSL's X509 verifier build and check it (signatures, CA
//! flags, path length, key usage for TLS clients), decides what the site's mode and settings
//! make of the result, and picks the TLS alert (unknown_ca, certificate_expired,
//! certificate_revoked, bad_certificate, ...).

use boring::ssl::{SslRef, SslVerifyMode};
use boring::stack::Stack;
use boring::x509::verify::X509VerifyFlags;
use boring::x509::{X509StoreContext, X509StoreContextRef, X509VerifyError, X509};
use foreign_types::ForeignTypeRef;
use portcullis_config::{MtlsMode, MtlsSettings};

use super::cert_keys::peer_certificates;
use super::trust::TrustAnchors;
use super::viewer_identity::{CertKey, ChainRecord, SiteRevocationCheck};
use crate::revocation::Verdict;

/// What a site requires of viewer certificates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ViewerPolicy {
    /// `required`, `optional` or `passthrough`.
    pub mode: MtlsMode,
    /// Skip only the notBefore/notAfter checks, for every certificate of the chain.
    pub ignore_expiration: bool,
    /// Longest accepted chain, counting the leaf and the trust anchor.
    pub max_chain_depth: u8,
}

impl ViewerPolicy {
    /// The policy configured for a site.
    pub fn from_settings(settings: &MtlsSettings) -> Self {
        Self {
            mode: settings.mode,
            ignore_expiration: settings.ignore_expiration,
            max_chain_depth: settings.max_chain_depth,
        }
    }

    /// The BoringSSL verify mode: always ask for a certificate; only `required` refuses its
    /// absence (BoringSSL then sends certificate_required in TLS 1.3).
    pub fn verify_mode(&self) -> SslVerifyMode {
        match self.mode {
            MtlsMode::Required => SslVerifyMode::PEER | SslVerifyMode::FAIL_IF_NO_PEER_CERT,
            MtlsMode::Optional | MtlsMode::Passthrough => SslVerifyMode::PEER,
        }
    }

    /// Decides the certificate chain a client presented, in BoringSSL's custom-verify
    /// callback: builds and checks the chain against the anchors of `trust` the presented
    /// certificates can reach (signatures, CA flags, path
    /// length, key usage for TLS clients, validity unless `ignore_expiration`), enforces
    /// `max_chain_depth`, and checks every certificate of the verified chain for revocation.
    /// The verified chain (or the reason for a refusal) goes to `record`. On refusal returns
    /// the TLS alert to send (unknown_ca, certificate_expired, certificate_revoked, ...).
    pub fn verify_peer(
        &self,
        ssl: &SslRef,
        trust: &TrustAnchors,
        revocation: &SiteRevocationCheck,
        record: Option<&ChainRecord>,
    ) -> Result<(), u8> {
        if self.mode == MtlsMode::Passthrough {
            // Forwarded unverified (a leaf that does not parse is refused after the handshake,
            // when its headers are rendered).
            return Ok(());
        }
        let refuse = |error: X509VerifyError| {
            if let Some(record) = record {
                record.refuse(error);
            }
            // SAFETY: a pure mapping from an X.509 error code to an alert number.
            let alert = unsafe { boring_sys::SSL_alert_from_verify_result(error.as_raw().into()) };
            u8::try_from(alert).unwrap_or(ALERT_BAD_CERTIFICATE)
        };
        let mut presented = peer_certificates(ssl).map(X509::from_der);
        let leaf = match presented.next() {
            Some(Ok(leaf)) => leaf,
            // BoringSSL does not call this without a certificate; fail closed all the same.
            None => return Err(refuse(X509VerifyError::UNSPECIFIED)),
            Some(Err(_)) => return Err(ALERT_BAD_CERTIFICATE),
        };
        let mut untrusted = Stack::new().map_err(|_| ALERT_INTERNAL_ERROR)?;
        for cert in presented {
            let cert = cert.map_err(|_| ALERT_BAD_CERTIFICATE)?;
            untrusted.push(cert).map_err(|_| ALERT_INTERNAL_ERROR)?;
        }
        // Outlives the verification, which reads it.
        let anchors = trust
            .candidates(std::iter::once(&*leaf).chain(untrusted.iter()))
            .map_err(|_| ALERT_INTERNAL_ERROR)?;
        let mut ctx = X509StoreContext::new().map_err(|_| ALERT_INTERNAL_ERROR)?;
        let outcome = ctx
            .init(trust.store(), &leaf, &untrusted, |ctx| {
                TrustAnchors::trust_only(ctx, &anchors);
                // What BoringSSL's own verification of a client chain sets: the "ssl_client"
                // purpose and trust settings.
                // SAFETY: `ctx` is initialised; the name is a static NUL-terminated string.
                let ok = unsafe {
                    boring_sys::X509_STORE_CTX_set_default(ctx.as_ptr(), c"ssl_client".as_ptr())
                };
                if ok != 1 {
                    return Ok(Err(X509VerifyError::UNSPECIFIED));
                }
                Ok(self.check_chain(ctx, revocation))
            })
            .map_err(|_| ALERT_INTERNAL_ERROR)?;
        match outcome {
            Ok(keys) => {
                if let Some(record) = record {
                    record.record(keys);
                }
                Ok(())
            }
            Err(error) => Err(refuse(error)),
        }
    }

    /// Verifies the chain set up in `ctx` and applies depth and revocation: the verified
    /// chain's keys, or the X.509 error that refuses it.
    fn check_chain(
        &self,
        ctx: &mut X509StoreContextRef,
        revocation: &SiteRevocationCheck,
    ) -> Result<Vec<CertKey>, X509VerifyError> {
        if self.ignore_expiration {
            ctx.verify_param_mut().set_flags(no_check_time());
        }
        if !ctx.verify_cert().unwrap_or(false) {
            return Err(ctx
                .verify_result()
                .err()
                .unwrap_or(X509VerifyError::UNSPECIFIED));
        }
        let chain = ctx.chain().ok_or(X509VerifyError::UNSPECIFIED)?;
        if chain.len() > usize::from(self.max_chain_depth) {
            return Err(X509VerifyError::CERT_CHAIN_TOO_LONG);
        }
        match revocation.check_certs(chain) {
            Verdict::Good => Ok(chain.iter().map(CertKey::of).collect()),
            Verdict::Revoked { .. } => Err(X509VerifyError::CERT_REVOKED),
            // Fail closed: the issuer's CRL can no longer say what is revoked.
            Verdict::CrlExpired => Err(X509VerifyError::CRL_HAS_EXPIRED),
        }
    }
}

/// TLS alert bad_certificate (42): a presented certificate does not parse.
const ALERT_BAD_CERTIFICATE: u8 = 42;
/// TLS alert internal_error (80): verification could not run (fail closed).
pub(crate) const ALERT_INTERNAL_ERROR: u8 = 80;

/// BoringSSL's `X509_V_FLAG_NO_CHECK_TIME`, which the `boring` bitflags do not name.
fn no_check_time() -> X509VerifyFlags {
    X509VerifyFlags::from_bits_retain(boring_sys::X509_V_FLAG_NO_CHECK_TIME as _)
}
