//! Per-worker pool of the 64 KiB buffers that carry bodies and response heads, so a connection
//! holds them only while a request is in flight and no request allocates them anew. It also
//! counts the requests in flight that hold them, so the worker's buffer memory has a bound
//! (`server.limits.max_requests_in_flight_per_worker`).
//! Single-threaded (one pool per worker): a `RefCell` and a `Cell`, no locks.

use std::cell::{Cell, RefCell};

/// Size of every pooled buffer.
pub const BUFFER_SIZE: usize = 64 * 1024;

/// Free buffers of one worker, kept apart by whether their whole length is initialised: a
/// buffer for reads into a slice must be, and making it so writes 64 KiB of zeros, so a full
/// buffer that comes back is handed out full again.
#[derive(Debug)]
pub struct BufferPool {
    free: RefCell<Free>,
    max_free: usize,
    /// Requests holding buffers ([`Self::lease`] not yet matched by [`Self::end_lease`]).
    in_flight: Cell<usize>,
}

/// The idle buffers of a [`BufferPool`].
#[derive(Debug, Default)]
struct Free {
    /// Length [`BUFFER_SIZE`].
    full: Vec<Vec<u8>>,
    /// Capacity [`BUFFER_SIZE`], any length.
    partial: Vec<Vec<u8>>,
}

impl BufferPool {
    /// A pool keeping at most `max_free` idle buffers.
    pub fn new(max_free: usize) -> Self {
        Self {
            free: RefCell::new(Free::default()),
            max_free,
            in_flight: Cell::new(0),
        }
    }

    /// Counts one more request in flight, unless `limit` already are (then `false`).
    pub fn lease(&self, limit: usize) -> bool {
        let n = self.in_flight.get();
        if n >= limit {
            return false;
        }
        self.in_flight.set(n + 1);
        true
    }

    /// Ends a request's [`Self::lease`].
    pub fn end_lease(&self) {
        debug_assert!(self.in_flight.get() > 0, "a lease ended twice");
        self.in_flight.set(self.in_flight.get().saturating_sub(1));
    }

    /// Requests in flight.
    #[cfg(test)]
    pub fn in_flight(&self) -> usize {
        self.in_flight.get()
    }

    /// A buffer of length [`BUFFER_SIZE`] (contents unspecified), for reads into a slice.
    pub fn take_full(&self) -> Vec<u8> {
        let mut free = self.free.borrow_mut();
        if let Some(buf) = free.full.pop() {
            return buf;
        }
        let mut buf = free
            .partial
            .pop()
            .unwrap_or_else(|| Vec::with_capacity(BUFFER_SIZE));
        drop(free);
        buf.resize(BUFFER_SIZE, 0);
        buf
    }

    /// An empty buffer with capacity [`BUFFER_SIZE`], for owned reads that append.
    pub fn take_empty(&self) -> Vec<u8> {
        let mut free = self.free.borrow_mut();
        let mut buf = free
            .partial
            .pop()
            .or_else(|| free.full.pop())
            .unwrap_or_else(|| Vec::with_capacity(BUFFER_SIZE));
        buf.clear();
        buf
    }

    /// Returns a buffer; ones that lost their capacity (e.g. to a cancelled read) are dropped.
    pub fn give(&self, buf: Vec<u8>) {
        let mut free = self.free.borrow_mut();
        if buf.capacity() < BUFFER_SIZE || free.full.len() + free.partial.len() >= self.max_free {
            return;
        }
        if buf.len() == BUFFER_SIZE {
            free.full.push(buf);
        } else {
            free.partial.push(buf);
        }
    }

    /// Number of idle buffers held.
    #[cfg(test)]
    pub fn idle(&self) -> usize {
        let free = self.free.borrow();
        free.full.len() + free.partial.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_are_reused_and_bounded() {
        let pool = BufferPool::new(2);
        let a = pool.take_full();
        assert_eq!(a.len(), BUFFER_SIZE);
        let a_ptr = a.as_ptr();
        pool.give(a);
        let b = pool.take_empty();
        assert!(b.is_empty());
        assert_eq!(b.as_ptr(), a_ptr, "the returned buffer is reused");
        pool.give(b);
        pool.give(Vec::new());
        assert_eq!(pool.idle(), 1, "a buffer without capacity is not kept");
        pool.give(Vec::with_capacity(BUFFER_SIZE));
        pool.give(Vec::with_capacity(BUFFER_SIZE));
        assert_eq!(pool.idle(), 2, "at most max_free are kept");
    }

    #[test]
    fn leases_are_bounded_and_returned() {
        let pool = BufferPool::new(2);
        assert!(pool.lease(2));
        assert!(pool.lease(2));
        assert!(!pool.lease(2), "a third request over a limit of two");
        assert_eq!(pool.in_flight(), 2);
        pool.end_lease();
        assert!(pool.lease(2), "a slot freed by an ended request");
        assert!(pool.lease(3), "a raised limit (a reload) applies at once");
        assert_eq!(pool.in_flight(), 3);
    }

    #[test]
    fn full_buffers_come_back_full() {
        let pool = BufferPool::new(4);
        let mut full = pool.take_full();
        full[BUFFER_SIZE - 1] = 7;
        let full_ptr = full.as_ptr();
        let mut partial = pool.take_empty();
        partial.extend_from_slice(b"head");
        let partial_ptr = partial.as_ptr();
        pool.give(full);
        pool.give(partial);
        // The partial buffer went back last, yet the full one is handed out for a full take,
        // as it was (not zeroed again), and the partial one for an empty take.
        let full = pool.take_full();
        assert_eq!(full.as_ptr(), full_ptr);
        assert_eq!(full[BUFFER_SIZE - 1], 7, "not written again");
        let empty = pool.take_empty();
        assert_eq!(empty.as_ptr(), partial_ptr);
        assert!(empty.is_empty());
        // With only a full buffer idle, an empty take gets it, cleared.
        pool.give(full);
        let empty = pool.take_empty();
        assert_eq!(empty.as_ptr(), full_ptr);
        assert!(empty.is_empty());
        // With only a partial buffer idle, a full take gets it at full length.
        pool.give(empty);
        let full = pool.take_full();
        assert_eq!(full.as_ptr(), full_ptr);
        assert_eq!(full.len(), BUFFER_SIZE);
    }
}
