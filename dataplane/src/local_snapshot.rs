//! Each worker's copy of the live snapshot, so that a new connection gets its snapshot with one
//! plain atomic load and a non-atomic reference count increment instead of an `ArcSwap` load
//! and an atomic increment on a cache line every worker shares.
//!
//! [`SnapshotSlot`] is the process-wide slot: the `ArcSwap` and a version bumped after every
//! [`SnapshotSlot::publish`]. [`LocalSnapshot`] (one per worker thread) keeps the version it
//! saw and an `Rc` of that snapshot; connections clone the `Rc`. When the version moves, the
//! next connection (or [`LocalSnapshot::refresh`], which the worker calls periodically so that
//! an idle worker does not keep an old snapshot alive) loads the new snapshot. An old snapshot
//! is freed when the last connection holding it ends and every worker moved on.

use std::cell::RefCell;
use std::ops::Deref;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::tls::TlsSnapshot;

/// The live snapshot and its version.
#[derive(Debug)]
pub struct SnapshotSlot {
    current: ArcSwap<TlsSnapshot>,
    version: AtomicU64,
}

impl SnapshotSlot {
    /// A slot holding `tls`.
    pub fn new(tls: TlsSnapshot) -> Self {
        Self {
            current: ArcSwap::from_pointee(tls),
            version: AtomicU64::new(0),
        }
    }

    /// Makes `tls` the snapshot of new connections, in one atomic store; workers see it at
    /// their next connection.
    pub fn publish(&self, tls: Arc<TlsSnapshot>) {
        self.current.store(tls);
        // After the store: a worker that sees the new version loads the new snapshot.
        self.version.fetch_add(1, Ordering::Release);
    }

    /// A short-lived view of the live snapshot (do not hold it across waits).
    pub fn load(&self) -> arc_swap::Guard<Arc<TlsSnapshot>> {
        self.current.load()
    }

    /// The live snapshot, owned.
    pub fn load_full(&self) -> Arc<TlsSnapshot> {
        self.current.load_full()
    }

    fn version(&self) -> u64 {
        self.version.load(Ordering::Acquire)
    }
}

/// A snapshot as a worker's connections hold it: counted on the worker's thread without
/// atomics, around the process-wide `Arc`.
#[derive(Debug, Clone)]
pub struct WorkerSnapshot(Rc<Held>);

/// The process-wide reference a worker holds for all its connections.
#[derive(Debug)]
struct Held(Arc<TlsSnapshot>);

impl WorkerSnapshot {
    fn new(snapshot: Arc<TlsSnapshot>) -> Self {
        Self(Rc::new(Held(snapshot)))
    }

    /// The process-wide reference.
    pub fn arc(&self) -> &Arc<TlsSnapshot> {
        &self.0 .0
    }

    /// Whether both are the same copy.
    pub fn same(&self, other: &Self) -> bool {
        Rc::ptr_eq(&self.0, &other.0)
    }
}

impl Deref for WorkerSnapshot {
    type Target = TlsSnapshot;

    fn deref(&self) -> &TlsSnapshot {
        &self.0 .0
    }
}

/// One worker's copy of the live snapshot.
#[derive(Debug)]
pub struct LocalSnapshot {
    seen: RefCell<(u64, WorkerSnapshot)>,
}

impl LocalSnapshot {
    /// The slot's current snapshot.
    pub fn new(slot: &SnapshotSlot) -> Self {
        Self {
            seen: RefCell::new((slot.version(), WorkerSnapshot::new(slot.load_full()))),
        }
    }

    /// The live snapshot for a new connection (kept for the connection's whole life).
    pub fn get(&self, slot: &SnapshotSlot) -> WorkerSnapshot {
        let version = slot.version();
        let mut seen = self.seen.borrow_mut();
        if seen.0 != version {
            *seen = (version, WorkerSnapshot::new(slot.load_full()));
        }
        seen.1.clone()
    }

    /// Lets go of an outdated snapshot even when no connection arrives.
    pub fn refresh(&self, slot: &SnapshotSlot) {
        drop(self.get(slot));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::revocation::{RevocationState, RevocationView};

    fn snapshot() -> TlsSnapshot {
        let dir = tempfile::tempdir().expect("dir");
        crate::pki::DemoPki::generate(dir.path()).expect("pki");
        let path = dir.path().join("portcullis.toml");
        let unused: std::net::SocketAddr = ([127, 0, 0, 1], 9).into();
        std::fs::write(&path, crate::demo::demo_config(unused, unused, 1)).expect("config");
        let config = Arc::new(portcullis_config::load(&path).expect("load"));
        let view = Arc::new(RevocationView::stage(&config).expect("view"));
        TlsSnapshot::build(config, &RevocationState::new(), view).expect("build")
    }

    #[test]
    fn a_worker_follows_published_snapshots_and_lets_old_ones_go() {
        let slot = SnapshotSlot::new(snapshot());
        let local = LocalSnapshot::new(&slot);
        let first = local.get(&slot);
        assert!(first.same(&local.get(&slot)), "unchanged: the same copy");
        let old = Arc::downgrade(first.arc());
        let mut next = snapshot();
        next.generation = 2;
        slot.publish(Arc::new(next));
        let second = local.get(&slot);
        assert_eq!(second.generation, 2);
        assert_eq!(first.generation, 0, "a connection keeps its snapshot");
        drop(first);
        drop(second);
        assert!(old.upgrade().is_none(), "the old snapshot is freed");
        let mut third = snapshot();
        third.generation = 3;
        let kept = Arc::new(third);
        let weak = Arc::downgrade(&kept);
        slot.publish(kept);
        local.refresh(&slot);
        slot.publish(Arc::new(snapshot()));
        local.refresh(&slot);
        assert!(
            weak.upgrade().is_none(),
            "an idle worker lets go at its refresh"
        );
    }
}
