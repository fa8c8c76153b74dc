//! [`RevocationState`]: the process-wide stores, the verdict cache, the
//! epoch, and the admin mutations.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::SystemTime;

use arc_swap::ArcSwap;
use portcullis_config::revocation::{
    normalize_serial, parse_import_json, CrlExpiredPolicy, MAX_VALUE_BYTES,
};
use portcullis_config::{ConfigErrors, Snapshot};

use super::cache::{
    CacheKey, CacheSettings, CachedVerdict, VerdictCache, Versioned, NO_CRL_ISSUER,
};
use super::error::RevocationError;
use super::freshness::Freshness;
use super::local_cache;
use super::scope::{IssuerCrls, SiteRevocation};
use super::serial;
use super::store::{Interner, Store};
use super::view::RevocationView;
use super::{RevokedBy, Verdict};
use crate::telemetry::metrics::revocation_lookup;

/// Process-wide revocation state: the live generation's [`RevocationView`] (its stores are
/// what the admin API changes), a cache of verdicts, and an epoch counter. Shared by all
/// workers as `Arc`.
pub struct RevocationState {
    /// The view of the live configuration generation.
    live: ArcSwap<RevocationView>,
    /// Serialises store mutations with each other and with reloads: a reload holds it from
    /// reading the store files until its view is live, so no admin change falls between.
    writes: Mutex<()>,
    cache: VerdictCache,
    /// Which cached verdicts are still current.
    freshness: Freshness,
    /// Bumped on revoke, import and publish.
    epoch: AtomicU64,
}

/// Held while store mutations must wait (see [`RevocationState::lock_writes`]).
pub struct WritesLock<'a>(#[allow(dead_code)] MutexGuard<'a, ()>);

impl std::fmt::Debug for WritesLock<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WritesLock")
    }
}

impl std::fmt::Debug for RevocationState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RevocationState")
            .field("stores", &self.store_names())
            .field("epoch", &self.epoch())
            .finish_non_exhaustive()
    }
}

impl RevocationState {
    /// A state with the default cache settings and no live view yet.
    pub fn new() -> Arc<Self> {
        Self::with_cache(CacheSettings::default())
    }

    /// A state with explicit cache settings and no live view yet.
    pub fn with_cache(cache: CacheSettings) -> Arc<Self> {
        Arc::new(Self {
            live: ArcSwap::from_pointee(RevocationView::empty()),
            writes: Mutex::new(()),
            cache: VerdictCache::new(cache),
            freshness: Freshness::new(),
            epoch: AtomicU64::new(0),
        })
    }

    /// A state whose live view is `config`'s (for tests, benchmarks and one-shot checks).
    pub fn for_config(config: &Snapshot) -> Result<Arc<Self>, ConfigErrors> {
        let state = Self::new();
        let view = RevocationView::stage(config)?;
        state.publish(Arc::new(view));
        Ok(state)
    }

    /// Makes store mutations wait until the returned lock is dropped. A reload takes it before
    /// it reads the store files and keeps it until its view is published, so that a change
    /// made through the admin API is either in the files it reads or made after it.
    pub fn lock_writes(&self) -> WritesLock<'_> {
        WritesLock(self.writes.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// Makes `view` the live one (after its TLS snapshot was swapped in): the admin API and
    /// the open-connection re-checks use it from now on. Every cached verdict is dropped and
    /// the epoch bumped, so open connections are re-checked against the new data and sessions
    /// issued before are not resumed.
    pub fn publish(&self, view: Arc<RevocationView>) {
        self.live.store(view);
        self.freshness.all_changed();
        self.cache.invalidate_all();
        self.epoch.fetch_add(1, Ordering::SeqCst);
    }

    /// The live view.
    pub fn live(&self) -> Arc<RevocationView> {
        self.live.load_full()
    }

    /// The live generation's scope of the site called `name` (None when the live
    /// configuration has no such site).
    pub fn live_site_scope(&self, name: &str) -> Option<SiteRevocation> {
        self.live.load().site(name).cloned()
    }

    /// The verdict for one certificate of a presented chain.
    /// `issuer_name_der` is the DER of the certificate's issuer Name,
    /// `serial_be` the big-endian magnitude of its serial (leading zero
    /// bytes are ignored).
    ///
    /// Revoked when the serial is in the site's store (whatever the issuer)
    /// or in a CRL of the certificate's issuer. Otherwise, when the issuer
    /// has a CRL past its nextUpdate and the policy is deny, the verdict is
    /// [`Verdict::CrlExpired`]; that test runs on every call, outside the
    /// cache. Lock-free and allocation-free on a cache hit.
    pub fn check(
        &self,
        scope: &SiteRevocation,
        issuer_name_der: &[u8],
        serial_be: &[u8],
        now: SystemTime,
    ) -> Verdict {
        let magnitude = serial::magnitude(serial_be);
        let issuer = scope.issuer(issuer_name_der);
        if scope.store().is_none() && issuer.is_none() {
            return Verdict::Good;
        }
        let slot = issuer.map_or(NO_CRL_ISSUER, |(slot, _)| slot);
        let crls = issuer.map(|(_, crls)| crls);
        let revoked = match CacheKey::new(scope.id(), slot, magnitude) {
            Some(key) => self.cached(scope, crls, key),
            None => compute(scope, crls, magnitude),
        };
        match revoked {
            Some((reason, by)) => Verdict::Revoked { reason, by },
            None if scope.crl_expired_policy() == CrlExpiredPolicy::Deny
                && crls.is_some_and(|crls| crls.any_expired(now)) =>
            {
                Verdict::CrlExpired
            }
            None => Verdict::Good,
        }
    }

    /// The cached verdict for `key`: from this thread's front cache, else
    /// the shared cache, else computed and cached in both. Entries older
    /// than the last change of their serial are ignored.
    fn cached(
        &self,
        scope: &SiteRevocation,
        crls: Option<&IssuerCrls>,
        key: CacheKey,
    ) -> CachedVerdict {
        if let Some(verdict) = local_cache::get(&key, &self.freshness) {
            revocation_lookup(true);
            return verdict;
        }
        if let Some(entry) = self.cache.get(&key) {
            if self.freshness.is_fresh(key.serial(), entry.version) {
                local_cache::put(key, entry.verdict.clone(), entry.version);
                revocation_lookup(true);
                return entry.verdict;
            }
        }
        revocation_lookup(false);
        let version = self.freshness.current();
        let verdict = compute(scope, crls, key.serial());
        let entry = Versioned {
            verdict: verdict.clone(),
            version,
        };
        self.cache.insert(key, entry);
        local_cache::put(key, verdict.clone(), version);
        verdict
    }

    /// The revocation epoch: bumped on every revoke, import and publish (not
    /// on unrevoke). Workers compare it to re-check open connections.
    pub fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::SeqCst)
    }

    /// Revokes `serial` in `store` with `value` as the reason (replacing an
    /// existing value). The file is rewritten before memory changes; the
    /// serial's cached verdicts are dropped and the epoch bumped. Putting
    /// the value already stored changes nothing.
    pub fn put(&self, store: &str, serial: &str, value: &str) -> Result<(), RevocationError> {
        let _writes = self.lock_writes();
        let store = self.writable_store(store)?;
        let magnitude = parse_serial(serial)?;
        check_value_length(value)?;
        store.check_value(value)?;
        let value: Arc<str> = Arc::from(value);
        let key = magnitude.clone();
        let changed = store.update(move |entries| {
            let changed = entries.get(&key).is_none_or(|old| **old != *value);
            if changed {
                entries.insert(key, value);
            }
            (changed, changed)
        })?;
        if changed {
            self.freshness.serials_changed([&*magnitude]);
            self.cache.invalidate_serial(magnitude);
            self.epoch.fetch_add(1, Ordering::SeqCst);
        }
        Ok(())
    }

    /// Un-revokes `serial` in `store`; returns whether it was there. The
    /// file is rewritten (only if it changes) before memory changes. Does
    /// not bump the epoch: un-revoking never closes a connection.
    pub fn delete(&self, store: &str, serial: &str) -> Result<bool, RevocationError> {
        let _writes = self.lock_writes();
        let store = self.writable_store(store)?;
        let magnitude = parse_serial(serial)?;
        let existed = store.update(|entries| {
            let existed = entries.remove(&magnitude).is_some();
            (existed, existed)
        })?;
        if existed {
            self.freshness.serials_changed([&*magnitude]);
            self.cache.invalidate_serial(magnitude);
        }
        Ok(existed)
    }

    /// The value stored for `serial` in `store`, if it is revoked there.
    pub fn get(&self, store: &str, serial: &str) -> Result<Option<String>, RevocationError> {
        let store = self.store(store)?;
        let magnitude = parse_serial(serial)?;
        Ok(store.lookup(&magnitude).map(|value| value.to_string()))
    }

    /// Merges a CloudFront KeyValueStore import document
    /// (`{"data":[{"key":…,"value":…}]}`) into `store`; imported values
    /// replace existing ones. A malformed document changes nothing. Returns
    /// the number of (distinct) entries imported.
    pub fn import(&self, store: &str, json: &[u8]) -> Result<usize, RevocationError> {
        let _writes = self.lock_writes();
        let store = self.writable_store(store)?;
        let imported = parse_import_json(json).map_err(RevocationError::InvalidImport)?;
        let mut rows = Vec::with_capacity(imported.len());
        let mut errors = Vec::new();
        for (key, value) in &imported {
            match (serial::from_normal_hex(key), store.check_value(value)) {
                (Some(magnitude), Ok(())) => rows.push((magnitude, value.as_str())),
                (None, _) => errors.push(format!("key {key:?} is not a hexadecimal serial")),
                (_, Err(error)) => errors.push(format!("key {key:?}: {error}")),
            }
        }
        if !errors.is_empty() {
            return Err(RevocationError::InvalidImport(errors));
        }
        let count = rows.len();
        let serials: HashSet<Box<[u8]>> = rows.iter().map(|(m, _)| m.clone()).collect();
        store.update(|entries| {
            let mut interner = Interner::seeded(entries);
            for (magnitude, value) in rows {
                entries.insert(magnitude, interner.intern(value));
            }
            ((), count > 0)
        })?;
        if count > 0 {
            self.freshness.serials_changed(serials.iter().map(|s| &**s));
            self.cache.invalidate_serials(serials);
            self.epoch.fetch_add(1, Ordering::SeqCst);
        }
        Ok(count)
    }

    /// Names of the live configuration's stores, sorted.
    pub fn store_names(&self) -> Vec<String> {
        self.live.load().store_names()
    }

    /// Number of revoked serials in `store`.
    pub fn store_len(&self, store: &str) -> Result<usize, RevocationError> {
        Ok(self.store(store)?.len())
    }

    /// Number of cached verdicts (runs pending cache maintenance first; for
    /// tests and metrics).
    pub fn cached_verdicts(&self) -> u64 {
        self.cache.entry_count()
    }

    /// The live store called `name`.
    fn store(&self, name: &str) -> Result<Arc<Store>, RevocationError> {
        self.live
            .load()
            .store(name)
            .cloned()
            .ok_or_else(|| RevocationError::UnknownStore(name.to_owned()))
    }

    /// The live store called `name`, if the admin API may change it.
    fn writable_store(&self, name: &str) -> Result<Arc<Store>, RevocationError> {
        let store = self.store(name)?;
        if !store.is_writable() {
            return Err(RevocationError::ReadOnly {
                store: name.to_owned(),
                url: store.source(),
            });
        }
        Ok(store)
    }
}

/// The uncached verdict: the store's value, else the reason of a CRL of the
/// certificate's issuer listing the serial.
fn compute(scope: &SiteRevocation, crls: Option<&IssuerCrls>, magnitude: &[u8]) -> CachedVerdict {
    if let Some(store) = scope.store() {
        if let Some(reason) = store.lookup(magnitude) {
            return Some((reason, RevokedBy::Store(store.shared_name())));
        }
    }
    crls.and_then(|crls| crls.revoked(&serial::to_normal_hex(magnitude)))
}

/// Normalises a serial given to the admin API into its magnitude bytes.
fn parse_serial(text: &str) -> Result<Box<[u8]>, RevocationError> {
    let normal = normalize_serial(text).map_err(RevocationError::InvalidSerial)?;
    serial::from_normal_hex(&normal)
        .ok_or_else(|| RevocationError::InvalidSerial(format!("{text:?} is not hexadecimal")))
}

/// Checks a value against the store value limit.
fn check_value_length(value: &str) -> Result<(), RevocationError> {
    if value.len() > MAX_VALUE_BYTES {
        return Err(RevocationError::InvalidValue(format!(
            "value is {} bytes long, more than the limit of {MAX_VALUE_BYTES} bytes",
            value.len()
        )));
    }
    Ok(())
}
