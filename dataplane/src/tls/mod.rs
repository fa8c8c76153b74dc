//! TLS termination: BoringSSL contexts per site, the viewer-mTLS policy and its typed decision,
//! and the adapter that runs BoringSSL over monoio's owned-buffer sockets.
//!
//! Every BoringSSL call that `boring` does not wrap is in [`ext`]; outside this module nothing
//! sees a raw `SslRef`: [`TlsStream`] answers what callers need (site, verified chain,
//! negotiated parameters, leaf certificate, how a failed handshake ended).

pub mod context;
pub mod ext;
pub mod policy;
pub mod poll_stream;
pub mod refusal;
pub mod stream;
pub mod trust;
pub mod verify;
pub mod viewer_identity;

pub use context::{SiteTls, TlsSnapshot};
pub use policy::ViewerPolicy;
pub use poll_stream::{ByteCounts, SharedTlsPollStream, TlsPollStream};
pub use refusal::{CertificateFault, FailureCode, HandshakeFailure, Refusal};
pub use stream::{HandshakeInfo, TlsError, TlsStream};
pub use verify::{verify_chain, RevocationView, VerifiedChain};
pub use viewer_identity::{HandshakeRecord, OpenIdentity, SiteRevocationCheck};
