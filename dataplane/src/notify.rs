//! A single-threaded notification for the tasks of one worker: waiters registered with
//! [`LocalNotify::changed_since`] wake on the next [`LocalNotify::notify`]. No locks, no atomics:
//! a worker's tasks all run on its thread.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

/// A generation counter whose changes wake waiters.
#[derive(Debug, Default)]
pub struct LocalNotify {
    generation: Cell<u64>,
    waiters: RefCell<slab::Slab<Waker>>,
}

impl LocalNotify {
    /// The current generation.
    pub fn generation(&self) -> u64 {
        self.generation.get()
    }

    /// Advances the generation and wakes every waiter.
    pub fn notify(&self) {
        self.generation.set(self.generation.get().wrapping_add(1));
        for waker in self.waiters.borrow_mut().drain() {
            waker.wake();
        }
    }

    /// Completes once the generation differs from `seen`.
    pub fn changed_since(&self, seen: u64) -> Changed<'_> {
        Changed {
            notify: self,
            seen,
            slot: None,
        }
    }

    /// Number of registered waiters (for tests).
    #[cfg(test)]
    pub fn waiters(&self) -> usize {
        self.waiters.borrow().len()
    }
}

/// Future returned by [`LocalNotify::changed_since`]; deregisters itself when dropped.
#[derive(Debug)]
pub struct Changed<'a> {
    notify: &'a LocalNotify,
    seen: u64,
    slot: Option<usize>,
}

impl Future for Changed<'_> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.notify.generation() != self.seen {
            self.slot = None;
            return Poll::Ready(());
        }
        let mut waiters = self.notify.waiters.borrow_mut();
        match self.slot.and_then(|slot| waiters.get_mut(slot)) {
            Some(waker) => {
                if !waker.will_wake(cx.waker()) {
                    *waker = cx.waker().clone();
                }
            }
            None => {
                let slot = waiters.insert(cx.waker().clone());
                drop(waiters);
                self.slot = Some(slot);
            }
        }
        Poll::Pending
    }
}

impl Drop for Changed<'_> {
    fn drop(&mut self) {
        if let Some(slot) = self.slot {
            let mut waiters = self.notify.waiters.borrow_mut();
            if waiters.contains(slot) {
                waiters.remove(slot);
            }
        }
    }
}
