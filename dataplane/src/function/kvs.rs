//! `cf.kvs()`: a connection function's key-value store, which is a revocation store.
//!
//! The store is found by name in the revocation state at every use (one lock-free map load),
//! so an admin API change or a reload applies to the next call. Keys that are serial numbers
//! (hex digits, with or without `:` between groups, any case, leading zeros or not) are matched
//! in the stores' normal form; a revocation store holds nothing else, so any other key is
//! absent.

use std::sync::Arc;
use std::time::SystemTime;

use portcullis_config::revocation::{parse_import_json, RevocationStoreSnapshot, StoreFormat};

use crate::revocation::{RevocationState, Store};

/// Where a function's `cf.kvs()` reads.
#[derive(Clone)]
pub struct KvsSource(Source);

#[derive(Clone)]
enum Source {
    /// A revocation store of the running configuration, by name.
    Live {
        /// The process's revocation state.
        state: Arc<RevocationState>,
        /// The store's name.
        name: Arc<str>,
    },
    /// A store loaded on its own (`portcullis function test --kvs`).
    Fixed(Arc<Store>),
}

impl std::fmt::Debug for KvsSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("KvsSource").field(&self.name()).finish()
    }
}

impl KvsSource {
    /// The live store `name` of `state`.
    pub fn live(state: Arc<RevocationState>, name: &str) -> Self {
        Self(Source::Live {
            state,
            name: Arc::from(name),
        })
    }

    /// A store read from a CloudFront KeyValueStore import file (`{"data":[...]}`).
    pub fn from_import_file(path: &std::path::Path) -> Result<Self, String> {
        let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let entries = parse_import_json(&bytes)
            .map_err(|errors| format!("{}: {}", path.display(), errors.join("; ")))?;
        let name = path
            .file_stem()
            .map_or_else(|| "kvs".to_owned(), |s| s.to_string_lossy().into_owned());
        Ok(Self(Source::Fixed(Arc::new(Store::from_snapshot(
            &RevocationStoreSnapshot {
                index: 0,
                name,
                path: path.to_path_buf(),
                format: StoreFormat::Json,
                entries,
            },
        )))))
    }

    /// The store's name.
    pub fn name(&self) -> &str {
        match &self.0 {
            Source::Live { name, .. } => name,
            Source::Fixed(store) => store.name(),
        }
    }

    /// The store, if it is loaded.
    pub(crate) fn store(&self) -> Option<Arc<Store>> {
        match &self.0 {
            Source::Live { state, name } => state.store_named(name),
            Source::Fixed(store) => Some(Arc::clone(store)),
        }
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
