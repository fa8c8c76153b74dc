//! A small per-thread, two-way set-associative front cache of verdicts.
//!
//! Workers are thread-per-core, so each keeps its own recent verdicts and
//! answers a repeated check without touching shared memory beyond the
//! freshness versions. Entries carry the version they were computed with
//! and are served only while [`Freshness::is_fresh`] says so; the shared
//! cache stays the one that is sized, timed out and invalidated.

use std::cell::RefCell;

use super::cache::{CacheKey, CachedVerdict};
use super::freshness::Freshness;

/// Number of slots per thread (a power of two; about 300 KiB).
const SLOTS: usize = 4096;

/// One cached verdict.
struct Slot {
    key: CacheKey,
    verdict: CachedVerdict,
    version: u64,
}

thread_local! {
    /// Allocated on a thread's first store, then reused.
    static SLOTS_OF_THREAD: RefCell<Option<Box<[Option<Slot>]>>> = const { RefCell::new(None) };
}

/// The verdict cached on this thread for `key`, if still fresh.
pub(crate) fn get(key: &CacheKey, freshness: &Freshness) -> Option<CachedVerdict> {
    SLOTS_OF_THREAD
        .try_with(|slots| {
            let slots = slots.try_borrow().ok()?;
            let set = set_of(slots.as_ref()?, key);
            let slot = set.iter().flatten().find(|slot| slot.key == *key)?;
            freshness
                .is_fresh(key.serial(), slot.version)
                .then(|| slot.verdict.clone())
        })
        .ok()
        .flatten()
}

/// Caches a verdict on this thread as the most recent of its set: the
/// set's other entry is kept unless it is for the same key, the older one
/// is evicted.
pub(crate) fn put(key: CacheKey, verdict: CachedVerdict, version: u64) {
    // Fails only while the thread is being torn down; nothing to cache then.
    let _ = SLOTS_OF_THREAD.try_with(|slots| {
        let Ok(mut slots) = slots.try_borrow_mut() else {
            return;
        };
        let slots = slots.get_or_insert_with(|| (0..SLOTS).map(|_| None).collect());
        let set = set_of_mut(slots, &key);
        if set[0].as_ref().is_some_and(|slot| slot.key != key) {
            set.swap(0, 1);
        }
        set[0] = Some(Slot {
            key,
            verdict,
            version,
        });
    });
}

/// The two slots a key may occupy, most recently stored first.
fn set_of<'s>(slots: &'s [Option<Slot>], key: &CacheKey) -> &'s [Option<Slot>] {
    let first = set_index(key) * 2;
    &slots[first..first + 2]
}

/// [`set_of`], mutable.
fn set_of_mut<'s>(slots: &'s mut [Option<Slot>], key: &CacheKey) -> &'s mut [Option<Slot>] {
    let first = set_index(key) * 2;
    &mut slots[first..first + 2]
}

/// The set of a key: scope, issuer slot and serial bytes, mixed.
fn set_index(key: &CacheKey) -> usize {
    let serial = key.serial();
    let mut word = [0u8; 8];
    let tail = &serial[serial.len().saturating_sub(8)..];
    word[8 - tail.len()..].copy_from_slice(tail);
    let mixed =
        (u64::from_le_bytes(word) ^ key.scope().rotate_left(32) ^ u64::from(key.issuer_slot()))
            .wrapping_mul(0x9e37_79b9_7f4a_7c15);
    (mixed >> (64 - (SLOTS / 2).trailing_zeros())) as usize
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[test]
    fn a_set_keeps_the_two_most_recent_keys() {
        // A scope id no other test uses on this thread.
        let scope = u64::MAX - 7;
        let key = |n: u32| CacheKey::new(scope, 0, &n.to_be_bytes()).expect("short serial");
        let target = set_index(&key(0));
        let same_set: Vec<CacheKey> = (0..)
            .map(key)
            .filter(|k| set_index(k) == target)
            .take(3)
            .collect();
        let freshness = Freshness::new();
        let reason = |n: usize| {
            Some((
                Arc::<str>::from(n.to_string()),
                super::super::RevokedBy::Store(Arc::from("s")),
            ))
        };
        for (n, k) in same_set.iter().take(2).enumerate() {
            put(*k, reason(n), 0);
        }
        assert_eq!(get(&same_set[0], &freshness), Some(reason(0)));
        assert_eq!(get(&same_set[1], &freshness), Some(reason(1)));
        put(same_set[1], reason(5), 0);
        assert_eq!(
            get(&same_set[1], &freshness),
            Some(reason(5)),
            "replaced in place"
        );
        assert_eq!(
            get(&same_set[0], &freshness),
            Some(reason(0)),
            "not evicted by a rewrite"
        );
        put(same_set[2], reason(2), 0);
        assert_eq!(get(&same_set[2], &freshness), Some(reason(2)));
        assert_eq!(get(&same_set[1], &freshness), Some(reason(5)));
        assert_eq!(
            get(&same_set[0], &freshness),
            None,
            "the oldest was evicted"
        );
        freshness.all_changed();
        assert_eq!(
            get(&same_set[2], &freshness),
            None,
            "stale entries are not served"
        );
    }
}
