//! The per-site view of revocation: which store, which CRLs (grouped by
//! issuer Name), what to do when a CRL is stale, and a unique scope id that
//! keeps cached verdicts of one TLS snapshot from serving another.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::SystemTime;

use portcullis_config::canonical_name;
use portcullis_config::revocation::{CrlExpiredPolicy, CrlSnapshot};

use super::store::Store;
use super::RevokedBy;

/// Source of unique scope ids, process-wide.
static NEXT_SCOPE_ID: AtomicU64 = AtomicU64::new(1);

/// One CRL with the reason reported for the serials it revokes.
#[derive(Debug)]
struct Crl {
    snapshot: Arc<CrlSnapshot>,
    reason: Arc<str>,
    by: RevokedBy,
}

/// The CRLs of one issuer Name.
#[derive(Debug)]
pub(crate) struct IssuerCrls {
    /// The issuer Name as the first of its CRLs encodes it (the fast, usual match).
    issuer_name_der: Box<[u8]>,
    /// Its canonical form ([`canonical_name`]): how path validation compares names.
    issuer_canonical: Box<[u8]>,
    crls: Vec<Crl>,
}

impl IssuerCrls {
    /// The reason and source of the first CRL listing `normal_serial`.
    pub(crate) fn revoked(&self, normal_serial: &str) -> Option<(Arc<str>, RevokedBy)> {
        self.crls
            .iter()
            .find(|crl| crl.snapshot.revoked_serials.contains(normal_serial))
            .map(|crl| (Arc::clone(&crl.reason), crl.by.clone()))
    }

    /// Whether any of the issuer's CRLs is past its nextUpdate at `now`.
    pub(crate) fn any_expired(&self, now: SystemTime) -> bool {
        self.crls.iter().any(|crl| crl.snapshot.is_expired(now))
    }
}

/// Immutable revocation settings of one site, built with its TLS snapshot
/// by [`super::RevocationView::stage`]. Cheap to clone.
#[derive(Debug, Clone)]
pub struct SiteRevocation {
    inner: Arc<ScopeInner>,
}

#[derive(Debug)]
struct ScopeInner {
    id: u64,
    store: Option<Arc<Store>>,
    issuers: Box<[IssuerCrls]>,
    crl_expired: CrlExpiredPolicy,
    revoke_open_connections: bool,
}

impl SiteRevocation {
    /// A scope with a fresh id. CRLs with the same issuer Name (compared canonically) are
    /// grouped, in configuration order.
    pub(crate) fn new(
        store: Option<Arc<Store>>,
        crls: &[Arc<CrlSnapshot>],
        crl_expired: CrlExpiredPolicy,
        revoke_open_connections: bool,
    ) -> Self {
        let mut issuers: Vec<IssuerCrls> = Vec::new();
        for snapshot in crls {
            let crl = Crl {
                reason: Arc::from(format!("crl {}", snapshot.path.display())),
                by: RevokedBy::Crl {
                    issuer: Arc::from(snapshot.issuer_subject.as_str()),
                },
                snapshot: Arc::clone(snapshot),
            };
            // A CRL's issuer Name was parsed when it loaded; the DER itself is the fallback.
            let canonical: Box<[u8]> = canonical_name(&snapshot.issuer_name_der)
                .unwrap_or_else(|| snapshot.issuer_name_der.clone())
                .into();
            match issuers
                .iter_mut()
                .find(|group| group.issuer_canonical == canonical)
            {
                Some(group) => group.crls.push(crl),
                None => issuers.push(IssuerCrls {
                    issuer_name_der: snapshot.issuer_name_der.as_slice().into(),
                    issuer_canonical: canonical,
                    crls: vec![crl],
                }),
            }
        }
        let issuers = issuers.into_boxed_slice();
        Self {
            inner: Arc::new(ScopeInner {
                id: NEXT_SCOPE_ID.fetch_add(1, Ordering::Relaxed),
                store,
                issuers,
                crl_expired,
                revoke_open_connections,
            }),
        }
    }

    /// The same store, CRLs and settings under a new scope id: none of this scope's cached
    /// verdicts apply to it (benchmarks use it to measure cache misses).
    pub fn with_new_id(&self) -> Self {
        let inner = &self.inner;
        Self {
            inner: Arc::new(ScopeInner {
                id: NEXT_SCOPE_ID.fetch_add(1, Ordering::Relaxed),
                store: inner.store.clone(),
                issuers: inner
                    .issuers
                    .iter()
                    .map(|issuer| IssuerCrls {
                        issuer_name_der: issuer.issuer_name_der.clone(),
                        issuer_canonical: issuer.issuer_canonical.clone(),
                        crls: issuer
                            .crls
                            .iter()
                            .map(|crl| Crl {
                                snapshot: Arc::clone(&crl.snapshot),
                                reason: Arc::clone(&crl.reason),
                                by: crl.by.clone(),
                            })
                            .collect(),
                    })
                    .collect(),
                crl_expired: inner.crl_expired,
                revoke_open_connections: inner.revoke_open_connections,
            }),
        }
    }

    /// The scope's unique id (distinct for every scope built).
    pub fn id(&self) -> u64 {
        self.inner.id
    }

    /// Name of the site's revocation store, if it has one.
    pub fn store_name(&self) -> Option<&str> {
        self.inner.store.as_deref().map(Store::name)
    }

    /// Number of CRLs configured for the site.
    pub fn crl_count(&self) -> usize {
        self.inner.issuers.iter().map(|i| i.crls.len()).sum()
    }

    /// Whether the site checks revocation at all (a store or a CRL). When
    /// false, every check answers [`super::Verdict::Good`].
    pub fn is_enabled(&self) -> bool {
        self.inner.store.is_some() || !self.inner.issuers.is_empty()
    }

    /// Whether open connections are re-checked (and closed when revoked)
    /// after the revocation epoch changes.
    pub fn revoke_open_connections(&self) -> bool {
        self.inner.revoke_open_connections
    }

    /// What happens while a CRL of the certificate's issuer is stale.
    pub fn crl_expired_policy(&self) -> CrlExpiredPolicy {
        self.inner.crl_expired
    }

    /// The site's store.
    pub(crate) fn store(&self) -> Option<&Store> {
        self.inner.store.as_deref()
    }

    /// The slot and CRLs of `issuer_name_der`, if the site has CRLs from it. Names match as
    /// path validation matches them: the same DER (the usual case, a linear scan over the
    /// site's few CRL issuers), else the same canonical form, so another encoding of the
    /// issuer's name (string type, case, spacing, attribute order in a multi-valued RDN)
    /// cannot escape its CRLs.
    pub(crate) fn issuer(&self, issuer_name_der: &[u8]) -> Option<(u32, &IssuerCrls)> {
        let issuers = &self.inner.issuers;
        if issuers.is_empty() {
            return None;
        }
        let found = issuers
            .iter()
            .position(|issuer| *issuer.issuer_name_der == *issuer_name_der)
            .or_else(|| {
                let canonical = canonical_name(issuer_name_der)?;
                issuers
                    .iter()
                    .position(|issuer| *issuer.issuer_canonical == *canonical)
            })?;
        Some((u32::try_from(found).ok()?, &issuers[found]))
    }
}
