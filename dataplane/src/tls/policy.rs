//! The viewer-mTLS policy of a site: what it requires of client certificates, and the
//! BoringSSL verify mode that follows. The decision itself is [`super::verify::verify_chain`].

use boring::ssl::SslVerifyMode;
use portcullis_config::{MtlsMode, MtlsSettings};

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
}
