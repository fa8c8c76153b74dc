//! Graceful shutdown, per worker.
//!
//! The main thread sets a process-wide flag on SIGTERM/SIGINT; each worker notices it within a
//! tick and fires its local [`Shutdown`], which stops the accept loop and wakes idle keep-alive
//! connections so they close. Connections busy with a request finish it first.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

/// How often a worker looks at the process-wide stop flag.
const STOP_POLL_INTERVAL: Duration = Duration::from_millis(50);

/// A single-threaded, fire-once notification shared by a worker's tasks.
#[derive(Debug, Default)]
pub struct Shutdown {
    fired: Cell<bool>,
    waiters: RefCell<slab::Slab<Waker>>,
}

impl Shutdown {
    /// A new, unfired notification.
    pub fn new() -> Rc<Self> {
        Rc::new(Self::default())
    }

    /// Whether shutdown has begun.
    pub fn is_fired(&self) -> bool {
        self.fired.get()
    }

    /// Begins shutdown and wakes every waiter.
    pub fn fire(&self) {
        self.fired.set(true);
        for waker in self.waiters.borrow_mut().drain() {
            waker.wake();
        }
    }

    /// Completes once shutdown has begun.
    pub fn wait(&self) -> Fired<'_> {
        Fired {
            shutdown: self,
            slot: None,
        }
    }

    /// Fires this notification once `stop` becomes true (checked every 50 ms).
    pub async fn follow(&self, stop: Arc<AtomicBool>) {
        while !stop.load(Ordering::Acquire) {
            monoio::time::sleep(STOP_POLL_INTERVAL).await;
        }
        self.fire();
    }
}

/// Future returned by [`Shutdown::wait`]; deregisters itself when dropped.
#[derive(Debug)]
pub struct Fired<'a> {
    shutdown: &'a Shutdown,
    slot: Option<usize>,
}

impl Future for Fired<'_> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.shutdown.is_fired() {
            return Poll::Ready(());
        }
        let mut waiters = self.shutdown.waiters.borrow_mut();
        match self.slot {
            Some(slot) => match waiters.get_mut(slot) {
                Some(waker) if waker.will_wake(cx.waker()) => {}
                Some(waker) => *waker = cx.waker().clone(),
                None => {
                    drop(waiters);
                    self.slot = None;
                    return self.poll(cx);
                }
            },
            None => {
                let slot = waiters.insert(cx.waker().clone());
                drop(waiters);
                self.slot = Some(slot);
            }
        }
        Poll::Pending
    }
}

impl Drop for Fired<'_> {
    fn drop(&mut self) {
        if let Some(slot) = self.slot {
            let mut waiters = self.shutdown.waiters.borrow_mut();
            if waiters.contains(slot) {
                waiters.remove(slot);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waiters_wake_on_fire_and_deregister_on_drop() {
        let mut rt = monoio::RuntimeBuilder::<monoio::FusionDriver>::new()
            .enable_timer()
            .build()
            .expect("runtime");
        rt.block_on(async {
            let shutdown = Shutdown::new();
            // A waiter that times out leaves nothing registered behind.
            let r = monoio::time::timeout(Duration::from_millis(10), shutdown.wait()).await;
            assert!(r.is_err());
            assert!(shutdown.waiters.borrow().is_empty());

            let stop = Arc::new(AtomicBool::new(false));
            let follower = {
                let shutdown = Rc::clone(&shutdown);
                let stop = Arc::clone(&stop);
                monoio::spawn(async move { shutdown.follow(stop).await })
            };
            let waiter = {
                let shutdown = Rc::clone(&shutdown);
                monoio::spawn(async move { shutdown.wait().await })
            };
            monoio::time::sleep(Duration::from_millis(20)).await;
            assert!(!shutdown.is_fired());
            stop.store(true, Ordering::Release);
            monoio::time::timeout(Duration::from_secs(5), waiter)
                .await
                .expect("waiter woke");
            follower.await;
            assert!(shutdown.is_fired());
            assert!(shutdown.waiters.borrow().is_empty());
        });
    }
}
