//! `cf.kvs()`: a connection function's key-value store, which is a revocation store.
//!
//! The store is the one of the function's configuration generation, read lock-free at every
//! use, so an admin API change applies to the next call (a reload brings a new generation, its
//! stores and a newly built function together). Keys that are serial numbers
//! (hex digits, with or without `:` between groups, any case, leading zeros or not) are matched
//! in the stores' normal form; a revocation store holds nothing else, so any other key is
//! absent.

use std::sync::Arc;
use std::time::SystemTime;

use portcullis_config::revocation::{parse_import_json, RevocationStoreSnapshot, StoreFormat};

use crate::revocation::Store;

/// Where a function's `cf.kvs()` reads: a revocation store of the function's configuration
/// generation (the very store the admin API edits once that generation is live).
#[derive(Clone)]
pub struct KvsSource(Arc<Store>);

impl std::fmt::Debug for KvsSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("KvsSource").field(&self.name()).finish()
    }
}

impl KvsSource {
    /// Reads `store`.
    pub(crate) fn of(store: Arc<Store>) -> Self {
        Self(store)
    }

    /// A store read from a CloudFront KeyValueStore import file (`{"data":[...]}`), on its
    /// own (`portcullis function test --kvs`).
    pub fn from_import_file(path: &std::path::Path) -> Result<Self, String> {
        let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let entries = parse_import_json(&bytes)
            .map_err(|errors| format!("{}: {}", path.display(), errors.join("; ")))?;
        let name = path
            .file_stem()
            .map_or_else(|| "kvs".to_owned(), |s| s.to_string_lossy().into_owned());
        Ok(Self(Arc::new(Store::from_snapshot(
            &RevocationStoreSnapshot {
                index: 0,
                name,
                path: path.to_path_buf(),
                format: StoreFormat::Json,
                entries,
                object_url: None,
            },
        ))))
    }

    /// The store's name.
    pub fn name(&self) -> &str {
        self.0.name()
    }

    /// The store.
    pub(crate) fn store(&self) -> Option<Arc<Store>> {
        Some(Arc::clone(&self.0))
    }

    /// Changes whenever the store's contents change (0 while it is not loaded).
    pub fn version(&self) -> u64 {
        self.store().map_or(0, |store| store.version())
    }

    /// Whether `key` is in the store (None: the store is not loaded).
    pub fn exists(&self, key: &str) -> Option<bool> {
        Some(self.store()?.lookup_key(key).is_some())
    }

    /// The value of `key` (Some(None): absent; None: the store is not loaded).
    pub fn get(&self, key: &str) -> Option<Option<Arc<str>>> {
        Some(self.store()?.lookup_key(key))
    }

    /// `creationDateTime`, `lastUpdatedDateTime` (ISO 8601) and `keyCount`.
    pub fn meta(&self) -> Option<(String, String, usize)> {
        let store = self.store()?;
        Some((
            iso8601(store.created()),
            iso8601(store.last_updated()),
            store.len(),
        ))
    }
}

/// `2025-09-10T23:43:10Z`.
fn iso8601(at: SystemTime) -> String {
    let mut text = String::with_capacity(20);
    crate::viewer_cert::push_utc_time(&mut text, time::OffsetDateTime::from(at));
    text
}
