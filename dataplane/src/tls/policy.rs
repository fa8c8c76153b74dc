//! The viewer-mTLS policy of a site, applied in BoringSSL's certificate verification callback.
//!
//! BoringSSL builds and checks the chain (signatures, CA flags, path length, key usage for TLS
//! clients); this module decides what the site's mode and settings make of the result, and sets
//! the X.509 error BoringSSL turns into the TLS alert (unknown_ca, certificate_expired,
//! bad_certificate, ...).

use boring::ssl::SslVerifyMode;
use boring::x509::verify::X509VerifyFlags;
use boring::x509::X509StoreContext;
use boring::x509::{X509StoreContextRef, X509VerifyError};
use portcullis_config::{MtlsMode, MtlsSettings};

use super::context::chain_record_index;
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

    /// Decides a presented certificate chain. Returns true to accept; on refusal the store
    /// context's error names the cause, which BoringSSL maps to the alert it sends. Every
    /// certificate of the verified chain is checked for revocation, and the chain is recorded
    /// for the connection (for re-checks while it stays open).
    pub fn verify(&self, ctx: &mut X509StoreContextRef, revocation: &SiteRevocationCheck) -> bool {
        if self.mode == MtlsMode::Passthrough {
            // Forwarded unverified; BoringSSL has already refused DER that does not parse.
            return true;
        }
        if self.ignore_expiration {
            ctx.verify_param_mut().set_flags(no_check_time());
        }
        if !ctx.verify_cert().unwrap_or(false) {
            if ctx.verify_result().is_ok() {
                ctx.set_error(Err(X509VerifyError::UNSPECIFIED));
            }
            return false;
        }
        let Some(chain) = ctx.chain() else {
            ctx.set_error(Err(X509VerifyError::UNSPECIFIED));
            return false;
        };
        let refusal = if chain.len() > usize::from(self.max_chain_depth) {
            Some(X509VerifyError::CERT_CHAIN_TOO_LONG)
        } else {
            match revocation.check_certs(chain) {
                Verdict::Good => None,
                Verdict::Revoked { .. } => Some(X509VerifyError::CERT_REVOKED),
                // Fail closed: the issuer's CRL can no longer say what is revoked.
                Verdict::CrlExpired => Some(X509VerifyError::CRL_HAS_EXPIRED),
            }
        };
        if let Some(error) = refusal {
            ctx.set_error(Err(error));
            return false;
        }
        let keys = ctx
            .chain()
            .map(|chain| chain.iter().map(CertKey::of).collect())
            .unwrap_or_default();
        if let Some(record) = chain_record(ctx) {
            record.record(keys);
        }
        true
    }
}

/// BoringSSL's `X509_V_FLAG_NO_CHECK_TIME`, which the `boring` bitflags do not name.
fn no_check_time() -> X509VerifyFlags {
    X509VerifyFlags::from_bits_retain(boring_sys::X509_V_FLAG_NO_CHECK_TIME as _)
}

/// The chain record of the connection being verified, if the ClientHello callback set one.
fn chain_record(ctx: &X509StoreContextRef) -> Option<&ChainRecord> {
    let ssl_index = X509StoreContext::ssl_idx().ok()?;
    let ssl = ctx.ex_data(ssl_index)?;
    ssl.ex_data(chain_record_index())
}
