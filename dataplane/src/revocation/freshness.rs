//! Versions that tell whether a cached verdict is still current.
//!
//! Every verdict is cached with the change counter read *before* the stores
//! were consulted. A change to a serial swaps the store map first, then
//! bumps the counter and records the new value in the serial's bucket; a
//! verdict is fresh while its version is at least its bucket's (and the
//! global floor, raised by reloads). So a verdict computed from a map that
//! a change replaced is never served once the change has returned, however
//! its cache insertion raced the change's cache invalidation. Buckets are
//! shared by hash: a collision only costs a recomputation.

use std::sync::atomic::{AtomicU64, Ordering};

/// Number of per-serial buckets (a power of two).
const BUCKETS: usize = 4096;

/// The change counter, per-serial-bucket change versions, and the floor.
pub(crate) struct Freshness {
    changes: AtomicU64,
    floor: AtomicU64,
    buckets: Box<[AtomicU64]>,
}

impl Freshness {
    /// Nothing changed yet: every version is fresh.
    pub(crate) fn new() -> Self {
        Self {
            changes: AtomicU64::new(0),
            floor: AtomicU64::new(0),
            buckets: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    /// The version to cache a verdict with; read before consulting stores.
    pub(crate) fn current(&self) -> u64 {
        self.changes.load(Ordering::SeqCst)
    }

    /// Whether a verdict for `serial` cached with `version` is current.
    pub(crate) fn is_fresh(&self, serial: &[u8], version: u64) -> bool {
        version >= self.floor.load(Ordering::SeqCst)
            && version >= self.buckets[bucket(serial)].load(Ordering::SeqCst)
    }

    /// Records that `serials` changed; call after swapping the store map.
    pub(crate) fn serials_changed<'a>(&self, serials: impl IntoIterator<Item = &'a [u8]>) {
        let version = self.changes.fetch_add(1, Ordering::SeqCst) + 1;
        for serial in serials {
            self.buckets[bucket(serial)].fetch_max(version, Ordering::SeqCst);
        }
    }

    /// Records that anything may have changed (reload).
    pub(crate) fn all_changed(&self) {
        let version = self.changes.fetch_add(1, Ordering::SeqCst) + 1;
        self.floor.fetch_max(version, Ordering::SeqCst);
    }
}

/// The bucket of a serial magnitude: its low 8 bytes, mixed.
fn bucket(serial: &[u8]) -> usize {
    let tail = &serial[serial.len().saturating_sub(8)..];
    let mut word = [0u8; 8];
    word[8 - tail.len()..].copy_from_slice(tail);
    let mixed = u64::from_be_bytes(word).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    // The top bits of the product are the best mixed; BUCKETS = 2^12.
    (mixed >> (64 - BUCKETS.trailing_zeros())) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_outdate_older_versions_of_that_serial_only() {
        let freshness = Freshness::new();
        let before = freshness.current();
        assert!(freshness.is_fresh(&[1], before));
        freshness.serials_changed([&[1u8][..]]);
        assert!(!freshness.is_fresh(&[1], before));
        assert!(freshness.is_fresh(&[1], freshness.current()));
        assert!(freshness.is_fresh(&[2], before), "other serial untouched");
        assert!(freshness.is_fresh(&[], before));
        freshness.all_changed();
        assert!(!freshness.is_fresh(&[2], before));
        assert!(freshness.is_fresh(&[2], freshness.current()));
    }
}
