//! The verdict cache: fixed-size keys (scope, issuer slot, serial) mapping to
//! "revoked with this reason" or "not revoked".

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use moka::sync::Cache;

use super::serial::CACHED_SERIAL_BYTES;

/// The issuer slot of certificates whose issuer has no CRL in the scope.
pub(crate) const NO_CRL_ISSUER: u32 = u32::MAX;

/// Size and lifetime of the verdict cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheSettings {
    /// Maximum number of cached verdicts.
    pub capacity: u64,
    /// How long a verdict may be served after it was computed.
    pub time_to_live: Duration,
}

impl Default for CacheSettings {
    /// One million verdicts for ten minutes.
    fn default() -> Self {
        Self {
            capacity: 1_000_000,
            time_to_live: Duration::from_secs(600),
        }
    }
}

/// A cached verdict: `Some((reason, source))` when revoked.
pub(crate) type CachedVerdict = Option<(Arc<str>, super::RevokedBy)>;

/// A verdict with the [`super::freshness::Freshness`] version it was
/// computed at.
#[derive(Debug, Clone)]
pub(crate) struct Versioned {
    /// The verdict.
    pub(crate) verdict: CachedVerdict,
    /// The change counter read before the stores were consulted.
    pub(crate) version: u64,
}

/// Identifies one verdict: which site scope, which CRL issuer of that scope,
/// which serial. `Copy`, so building it never allocates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct CacheKey {
    scope: u64,
    issuer_slot: u32,
    len: u8,
    serial: [u8; CACHED_SERIAL_BYTES],
}

impl CacheKey {
    /// The key for a serial magnitude, or `None` if it is too long to cache.
    pub(crate) fn new(scope: u64, issuer_slot: u32, magnitude: &[u8]) -> Option<Self> {
        let len = u8::try_from(magnitude.len())
            .ok()
            .filter(|&len| usize::from(len) <= CACHED_SERIAL_BYTES)?;
        let mut serial = [0u8; CACHED_SERIAL_BYTES];
        serial[..magnitude.len()].copy_from_slice(magnitude);
        Some(Self {
            scope,
            issuer_slot,
            len,
            serial,
        })
    }

    /// The scope id this key is for.
    pub(crate) fn scope(&self) -> u64 {
        self.scope
    }

    /// The CRL issuer slot this key is for.
    pub(crate) fn issuer_slot(&self) -> u32 {
        self.issuer_slot
    }

    /// The serial magnitude this key is for.
    pub(crate) fn serial(&self) -> &[u8] {
        &self.serial[..usize::from(self.len)]
    }
}

/// Bounded, time-limited verdict cache shared by all workers.
pub(crate) struct VerdictCache {
    cache: Cache<CacheKey, Versioned>,
}

impl VerdictCache {
    /// An empty cache; invalidation closures are enabled for targeted
    /// invalidation by serial.
    pub(crate) fn new(settings: CacheSettings) -> Self {
        Self {
            cache: Cache::builder()
                .max_capacity(settings.capacity)
                .time_to_live(settings.time_to_live)
                .support_invalidation_closures()
                .build(),
        }
    }

    /// The cached verdict for `key`. Lock-free and allocation-free.
    pub(crate) fn get(&self, key: &CacheKey) -> Option<Versioned> {
        self.cache.get(key)
    }

    /// Caches a verdict.
    pub(crate) fn insert(&self, key: CacheKey, verdict: Versioned) {
        self.cache.insert(key, verdict);
    }

    /// Drops every verdict for `serial` (any scope, any issuer).
    pub(crate) fn invalidate_serial(&self, serial: Box<[u8]>) {
        self.invalidate_if(move |key| key.serial() == &*serial);
    }

    /// Drops every verdict for any of `serials`.
    pub(crate) fn invalidate_serials(&self, serials: HashSet<Box<[u8]>>) {
        if serials.is_empty() {
            return;
        }
        self.invalidate_if(move |key| serials.contains(key.serial()));
    }

    /// Drops every verdict.
    pub(crate) fn invalidate_all(&self) {
        self.cache.invalidate_all();
    }

    /// Number of cached verdicts (approximate; pending maintenance is run
    /// first).
    pub(crate) fn entry_count(&self) -> u64 {
        self.cache.run_pending_tasks();
        self.cache.entry_count()
    }

    /// Registers an invalidation predicate; falls back to dropping
    /// everything if the cache refuses it (it cannot, as closures are
    /// enabled in [`VerdictCache::new`]).
    fn invalidate_if(&self, predicate: impl Fn(&CacheKey) -> bool + Send + Sync + 'static) {
        if let Err(error) = self
            .cache
            .invalidate_entries_if(move |key, _verdict| predicate(key))
        {
            tracing::error!(%error, "revocation cache refused an invalidation predicate");
            self.cache.invalidate_all();
        }
    }
}
