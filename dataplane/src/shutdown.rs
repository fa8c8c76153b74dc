//! Graceful shutdown and revocation news, per worker.
//!
//! The main thread sets a process-wide flag on SIGTERM/SIGINT, and the revocation state bumps
//! an epoch on every revoke. Each worker's watcher task looks at both every 50 ms and turns
//! changes into local notifications: [`Shutdown`] stops the accept loop and wakes idle
//! keep-alive connections so they close; the revocation notification wakes idle connections so
//! they re-check their certificates.

use std::future::Future;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::notify::LocalNotify;

/// How often a worker looks at the process-wide flags.
const POLL_INTERVAL: Duration = Duration::from_millis(50);

/// A fire-once notification shared by a worker's tasks.
#[derive(Debug, Default)]
pub struct Shutdown {
    notify: LocalNotify,
}

impl Shutdown {
    /// A new, unfired notification.
    pub fn new() -> Rc<Self> {
        Rc::new(Self::default())
    }

    /// Whether shutdown has begun.
    pub fn is_fired(&self) -> bool {
        self.notify.generation() != 0
    }

    /// Begins shutdown and wakes every waiter.
    pub fn fire(&self) {
        if !self.is_fired() {
            self.notify.notify();
        }
    }

    /// Completes once shutdown has begun.
    pub fn wait(&self) -> impl Future<Output = ()> + '_ {
        self.notify.changed_since(0)
    }
}

/// Watches the process-wide stop flag and the revocation epoch (last seen at
/// `start_epoch`) for one worker, until stop.
pub async fn watch(
    shutdown: &Shutdown,
    stop: Arc<AtomicBool>,
    revocations: &LocalNotify,
    start_epoch: u64,
    epoch: impl Fn() -> u64,
) {
    let mut seen = start_epoch;
    while !stop.load(Ordering::Acquire) {
        monoio::time::sleep(POLL_INTERVAL).await;
        let now = epoch();
        if now != seen {
            seen = now;
            revocations.notify();
        }
    }
    shutdown.fire();
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    #[test]
    fn waiters_wake_on_stop_and_on_epoch_changes_and_deregister_on_drop() {
        let mut rt = monoio::RuntimeBuilder::<monoio::FusionDriver>::new()
            .enable_timer()
            .build()
            .expect("runtime");
        rt.block_on(async {
            let shutdown = Shutdown::new();
            let revocations = Rc::new(LocalNotify::default());
            // A waiter that times out leaves nothing registered behind.
            let r = monoio::time::timeout(Duration::from_millis(10), shutdown.wait()).await;
            assert!(r.is_err());

            let stop = Arc::new(AtomicBool::new(false));
            let epoch = Rc::new(Cell::new(0u64));
            let watcher = {
                let (shutdown, stop, revocations, epoch) = (
                    Rc::clone(&shutdown),
                    Arc::clone(&stop),
                    Rc::clone(&revocations),
                    Rc::clone(&epoch),
                );
                monoio::spawn(async move {
                    watch(&shutdown, stop, &revocations, 0, || epoch.get()).await
                })
            };
            let seen = revocations.generation();
            epoch.set(1);
            monoio::time::timeout(Duration::from_secs(5), revocations.changed_since(seen))
                .await
                .expect("revocation news delivered");
            assert!(!shutdown.is_fired());
            let waiter = {
                let shutdown = Rc::clone(&shutdown);
                monoio::spawn(async move { shutdown.wait().await })
            };
            stop.store(true, Ordering::Release);
            monoio::time::timeout(Duration::from_secs(5), waiter)
                .await
                .expect("waiter woke");
            watcher.await;
            assert!(shutdown.is_fired());
            assert_eq!(revocations.waiters(), 0);
        });
    }
}
