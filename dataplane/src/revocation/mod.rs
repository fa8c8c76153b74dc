//! Certificate revocation at run time.
//!
//! A [`RevocationView`] holds one configuration generation's revocation
//! stores (serial → reason maps, CloudFront KeyValueStore style, any issuer)
//! and a [`SiteRevocation`] scope per site, built from that configuration
//! alone ([`RevocationView::stage`]) and carried by the generation's TLS
//! snapshot. [`RevocationState`] holds the live view (published when its
//! snapshot goes live), a cache of verdicts and an epoch counter; the
//! handshake asks [`RevocationState::check`] for every certificate of the
//! client chain with its snapshot's scope.
//!
//! - Reads are lock-free: store maps are persistent maps behind `ArcSwap`,
//!   verdicts live in a shared concurrent cache (moka) keyed by a
//!   fixed-size [scope, CRL issuer, serial] value, fronted by a small
//!   per-thread cache; a cache hit neither locks nor allocates. Cached
//!   verdicts carry a version and are ignored once their serial changed.
//! - Writes (admin API: [`RevocationState::put`], `delete`, `import`)
//!   rewrite the store file atomically first, then swap the map, drop the
//!   affected cached verdicts and bump the [epoch](RevocationState::epoch)
//!   that workers watch to re-check open connections. Publishing a view
//!   drops every cached verdict and bumps the epoch too; open connections are
//!   re-checked against the live view of their site.
//! - A stale CRL (past nextUpdate) under the deny policy fails closed; this
//!   is evaluated on every check, so a cached verdict never outlives it.

mod cache;
mod error;
mod freshness;
mod local_cache;
pub(crate) mod persist;
mod scope;
mod serial;
mod state;
mod store;
mod view;

#[cfg(test)]
mod tests;

use std::sync::Arc;

pub use cache::CacheSettings;
pub use error::RevocationError;
pub use scope::SiteRevocation;
pub use state::{RevocationState, WritesLock};
pub(crate) use store::Store;
pub use view::{RevocationView, StoreSummary};

/// The revocation verdict for one certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Not revoked.
    Good,
    /// Revoked: `reason` is the store's value for the serial, or
    /// `"crl <path>"` for a CRL; `by` names the store or CRL issuer.
    Revoked {
        /// Why the certificate is revoked.
        reason: Arc<str>,
        /// Which store or CRL revoked it.
        by: RevokedBy,
    },
    /// A CRL of the certificate's issuer is past its nextUpdate and the
    /// site's policy is to deny (fail closed).
    CrlExpired,
}

/// Where a revocation comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RevokedBy {
    /// The site's revocation store, by name.
    Store(Arc<str>),
    /// A CRL of the certificate's issuer.
    Crl {
        /// The CRL issuer's name, as configuration messages print it.
        issuer: Arc<str>,
    },
}

impl std::fmt::Display for RevokedBy {
    /// `store <name>` or `CRL of <issuer>`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Store(name) => write!(f, "store {name}"),
            Self::Crl { issuer } => write!(f, "CRL of {issuer}"),
        }
    }
}

impl Verdict {
    /// Whether the certificate must be refused.
    pub fn is_denied(&self) -> bool {
        !matches!(self, Self::Good)
    }
}
