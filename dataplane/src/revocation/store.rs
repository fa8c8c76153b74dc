//! One named revocation store: its serial → value map, readable without
//! locks, and its file, rewritten atomically before every change.

use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};

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
        Self {
            name: Arc::from(snapshot.name.as_str()),
            entries: ArcSwap::from_pointee(entries_of(snapshot)),
            file: Mutex::new(StoreFile {
                path: snapshot.path.clone(),
                format: snapshot.format,
                object_url: snapshot.object_url.clone(),
                written_sha256: None,
            }),
        }
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
        }
        Ok(result)
    }

    /// Serialises writers; the guarded data stays consistent even if a
    /// writer panicked, so poisoning is ignored.
    fn lock_file(&self) -> std::sync::MutexGuard<'_, StoreFile> {
        self.file.lock().unwrap_or_else(PoisonError::into_inner)
    }
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
