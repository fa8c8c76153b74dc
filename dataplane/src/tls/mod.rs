//! TLS termination: BoringSSL contexts per site, the viewer-mTLS policy, and the adapter that
//! runs BoringSSL over monoio's owned-buffer sockets.

pub mod context;
pub mod policy;
pub mod stream;

pub use context::{SiteTls, TlsSnapshot};
pub use policy::ViewerPolicy;
pub use stream::{TlsError, TlsStream};
