//! TLS termination: BoringSSL contexts per site, the viewer-mTLS policy, and the adapter that
//! runs BoringSSL over monoio's owned-buffer sockets.

pub mod cert_keys;
pub mod context;
pub mod policy;
pub mod stream;
pub mod trust;
pub mod viewer_identity;

pub use context::{SiteTls, TlsSnapshot};
pub use policy::ViewerPolicy;
pub use stream::{TlsError, TlsStream};
pub use viewer_identity::{ChainRecord, OpenIdentity, SiteRevocationCheck};
