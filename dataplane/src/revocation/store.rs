//! One named revocation store: its serial → value map, readable without
//! locks, and its file, rewritten atomically before every change.

use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use portcullis_config::revocation::{RevocationStoreSnapshot, StoreFormat};

use super::error::RevocationError;
use super::persist::write_atomically;
use super::serial;

/// Serial magnitude (big-endian, no leading zero bytes) → value.
pub(crate) type Entries = imbl::HashMap<Box<[u8]>, Arc<str>>;

/// Where and how a store is persisted.
#[derive(Debug)]
struct StoreFile {
    path: PathBuf,
    format: StoreFormat,
    /// The object URL of a store read from an object store (read-only here).
    object_url: Option<String>,
    /// SHA-256 of what the admin API last wrote to the file, so that the file watcher can
    /// tell its own writes from outside changes.
    written_sha256: Option<[u8; 32]>,
}

/// A revocation store shared by every site that names it.
///
/// Readers load the current map through an [`ArcSwap`] (lock-free); writers
/// serialise on `file`, persist the new contents, then swap the map.
pub(crate) struct Store {
    name: Arc<str>,
    entries: ArcSwap<Entries>,
    file: Mutex<StoreFile>,
    /// Bumped on every change of the contents (revoke, unrevoke, import, reload), so that
    /// what depends on the data (a connection function's sessions) can tell it changed.
    version: AtomicU64,
    /// When this store object was created (its configuration generation loaded it).
    created: SystemTime,
    /// When its contents last changed, in milliseconds since the epoch.
    updated_ms: AtomicU64,
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store")
            .field("name", &self.name)
            .field("entries", &self.entries.load().len())
            .finish()
    }
}

impl Store {
    /// A store holding the entries of a configuration snapshot.
    pub(crate) fn from_snapshot(snapshot: &RevocationStoreSnapshot) -> Self {
        let now = SystemTime::now();
        Self {
            name: Arc::from(snapshot.name.as_str()),
            entries: ArcSwap::from_pointee(entries_of(snapshot)),
            file: Mutex::new(StoreFile {
                path: snapshot.path.clone(),
                format: snapshot.format,
                object_url: snapshot.object_url.clone(),
                written_sha256: None,
            }),
            version: AtomicU64::new(next_version()),
            created: now,
            updated_ms: AtomicU64::new(epoch_ms(now)),
        }
    }

    /// Changes every time the contents change (any write); unique in the process, so a store
    /// of a new configuration generation never repeats an earlier store's version.
    pub(crate) fn version(&self) -> u64 {
        self.version.load(Ordering::Acquire)
    }

    /// When this store object was created (its configuration generation loaded it).
    pub(crate) fn created(&self) -> SystemTime {
        self.created
    }

    /// When the contents last changed (or the store was loaded).
    pub(crate) fn last_updated(&self) -> SystemTime {
        UNIX_EPOCH + std::time::Duration::from_millis(self.updated_ms.load(Ordering::Acquire))
    }

    /// Records a change of the contents.
    fn changed(&self) {
        self.updated_ms
            .store(epoch_ms(SystemTime::now()), Ordering::Release);
        self.version.store(next_version(), Ordering::Release);
    }

    /// The store's configured name.
    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// The store's name, shared (for verdicts that name it).
    pub(crate) fn shared_name(&self) -> Arc<str> {
        Arc::clone(&self.name)
    }

    /// Where the store comes from (its file path or object URL), for messages and the status
    /// page.
    pub(crate) fn source(&self) -> String {
        let file = self.lock_file();
        match &file.object_url {
            Some(url) => url.clone(),
            None => file.path.display().to_string(),
        }
    }

    /// Whether the admin API may change the store: not when it is read from an object URL
    /// (the object store is the source of truth for the fleet).
    pub(crate) fn is_writable(&self) -> bool {
        self.lock_file().object_url.is_none()
    }

    /// The local file and the SHA-256 of what the admin API last wrote to it, if it did.
    pub(crate) fn written_file(&self) -> Option<(PathBuf, [u8; 32])> {
        let file = self.lock_file();
        let digest = file.written_sha256?;
        file.object_url
            .is_none()
            .then(|| (file.path.clone(), digest))
    }

    /// The value of a revoked serial (magnitude bytes). Lock-free and
    /// allocation-free.
    pub(crate) fn lookup(&self, magnitude: &[u8]) -> Option<Arc<str>> {
        self.entries.load().get(magnitude).cloned()
    }

    /// The value of a key written as a serial in any accepted form (`0A:1B`, `a1b`): the
    /// lookup of a connection function's `cf.kvs()`. None for an absent or non-serial key.
    /// Lock-free and allocation-free.
    pub(crate) fn lookup_key(&self, key: &str) -> Option<Arc<str>> {
        let mut buf = [0u8; 256];
        let magnitude = serial::key_magnitude(key, &mut buf)?;
        self.entries.load().get(magnitude).cloned()
    }

    /// Number of revoked serials.
    pub(crate) fn len(&self) -> usize {
        self.entries.load().len()
    }

    /// Checks that `value` can be stored in this store's file format.
    pub(crate) fn check_value(&self, value: &str) -> Result<(), RevocationError> {
        let format = self.lock_file().format;
        if format == StoreFormat::Text && value.contains(['\n', '\r']) {
            return Err(RevocationError::InvalidValue(format!(
                "store {:?} is a text file; its values cannot contain line breaks",
                self.name
            )));
        }
        Ok(())
    }

    /// Applies `change` to a copy of the map. When it reports a change, the
    /// file is rewritten first and the map swapped only if that succeeded.
    pub(crate) fn update<R>(
        &self,
        change: impl FnOnce(&mut Entries) -> (R, bool),
    ) -> Result<R, RevocationError> {
        let mut file = self.lock_file();
        let mut next = Entries::clone(&self.entries.load());
        let (result, changed) = change(&mut next);
        if changed {
            let contents = render(file.format, &next);
            write_atomically(&file.path, &contents).map_err(|source| RevocationError::Persist {
                path: file.path.clone(),
                source,
            })?;
            file.written_sha256 = Some(portcullis_config::sources::sha256(&contents));
            self.entries.store(Arc::new(next));
            self.changed();
        }
        Ok(result)
    }

    /// Serialises writers; the guarded data stays consistent even if a
    /// writer panicked, so poisoning is ignored.
    fn lock_file(&self) -> std::sync::MutexGuard<'_, StoreFile> {
        self.file.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A store version never used before in this process.
fn next_version() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// Milliseconds since the Unix epoch (0 before it).
fn epoch_ms(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Shares one `Arc<str>` between equal values (most stores repeat a handful
/// of reasons across many serials).
#[derive(Default)]
pub(crate) struct Interner(HashMap<String, Arc<str>>);

impl Interner {
    /// The shared copy of `value`.
    pub(crate) fn intern(&mut self, value: &str) -> Arc<str> {
        if let Some(shared) = self.0.get(value) {
            return Arc::clone(shared);
        }
        let shared: Arc<str> = Arc::from(value);
        self.0.insert(value.to_owned(), Arc::clone(&shared));
        shared
    }

    /// Seeds the interner with the values already in `entries`.
    pub(crate) fn seeded(entries: &Entries) -> Self {
        let mut interner = Self::default();
        for value in entries.values() {
            if !interner.0.contains_key(&**value) {
                interner.0.insert(value.to_string(), Arc::clone(value));
            }
        }
        interner
    }
}

/// The in-memory map of a snapshot's (already normalised) entries.
fn entries_of(snapshot: &RevocationStoreSnapshot) -> Entries {
    let mut interner = Interner::default();
    let mut entries = Entries::new();
    for (key, value) in &snapshot.entries {
        match serial::from_normal_hex(key) {
            Some(magnitude) => {
                entries.insert(magnitude, interner.intern(value));
            }
            None => tracing::warn!(
                store = %snapshot.name,
                serial = %key,
                "revocation store entry with a non-hex serial ignored"
            ),
        }
    }
    entries
}

/// The file contents for `entries` in `format`.
fn render(format: StoreFormat, entries: &Entries) -> Vec<u8> {
    let rows: Vec<(String, &str)> = entries
        .iter()
        .map(|(magnitude, value)| (serial::to_normal_hex(magnitude), &**value))
        .collect();
    format.render(rows.iter().map(|(key, value)| (key.as_str(), *value)))
}
