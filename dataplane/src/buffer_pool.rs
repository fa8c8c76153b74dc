//! Per-worker pool of the 64 KiB buffers that carry bodies and response heads, so a connection
//! holds them only while a request is in flight and no request allocates them anew.
//! Single-threaded (one pool per worker): a `RefCell`, no locks.

use std::cell::RefCell;

/// Size of every pooled buffer.
pub const BUFFER_SIZE: usize = 64 * 1024;

/// Free buffers of one worker.
#[derive(Debug)]
pub struct BufferPool {
    free: RefCell<Vec<Vec<u8>>>,
    max_free: usize,
}

impl BufferPool {
    /// A pool keeping at most `max_free` idle buffers.
    pub fn new(max_free: usize) -> Self {
        Self {
            free: RefCell::new(Vec::new()),
            max_free,
        }
    }

    /// A buffer of length [`BUFFER_SIZE`] (contents unspecified), for reads into a slice.
    pub fn take_full(&self) -> Vec<u8> {
        let mut buf = self.take();
        if buf.len() < BUFFER_SIZE {
            buf.resize(BUFFER_SIZE, 0);
        }
        buf
    }

    /// An empty buffer with capacity [`BUFFER_SIZE`], for owned reads that append.
    pub fn take_empty(&self) -> Vec<u8> {
        let mut buf = self.take();
        buf.clear();
        buf
    }

    /// Returns a buffer; ones that lost their capacity (e.g. to a cancelled read) are dropped.
    pub fn give(&self, buf: Vec<u8>) {
        let mut free = self.free.borrow_mut();
        if buf.capacity() >= BUFFER_SIZE && free.len() < self.max_free {
            free.push(buf);
        }
    }

    /// Number of idle buffers held.
    #[cfg(test)]
    pub fn idle(&self) -> usize {
        self.free.borrow().len()
    }

    fn take(&self) -> Vec<u8> {
        self.free
            .borrow_mut()
            .pop()
            .unwrap_or_else(|| Vec::with_capacity(BUFFER_SIZE))
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
}
