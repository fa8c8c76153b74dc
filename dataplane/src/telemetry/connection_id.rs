//! `connectionId`: unique across workers, hosts and restarts, made without a lock or a
//! syscall.
//!
//! An id is 16 bytes: 8 random bytes drawn once per process start (BoringSSL's RNG), the
//! worker number (2 bytes) and a per-worker counter (6 bytes), written as 22 characters of
//! URL-safe base64 without padding. Two processes (hosts, restarts) collide only if their
//! random prefixes do (one chance in 2^64 per pair); within a process the worker number and
//! the counter, a plain `Cell` of the worker thread, keep ids apart.

use std::cell::Cell;
use std::fmt;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;

/// Length of the text form.
pub const CONNECTION_ID_LEN: usize = 22;

/// One connection's id.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct ConnectionId([u8; 16]);

impl ConnectionId {
    /// The id's text form (URL-safe base64, 22 characters), on the stack.
    pub fn encode(&self) -> [u8; CONNECTION_ID_LEN] {
        let mut out = [0u8; CONNECTION_ID_LEN];
        // 16 bytes always encode to exactly 22 characters.
        let _ = URL_SAFE_NO_PAD.encode_slice(self.0, &mut out);
        out
    }

    /// The raw bytes.
    pub fn bytes(&self) -> [u8; 16] {
        self.0
    }
}

impl fmt::Display for ConnectionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = self.encode();
        // Base64 output is ASCII.
        f.write_str(std::str::from_utf8(&text).unwrap_or("-"))
    }
}

impl fmt::Debug for ConnectionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// A random prefix for this process (drawn once at start).
pub fn process_prefix() -> [u8; 8] {
    let mut prefix = [0u8; 8];
    if boring::rand::rand_bytes(&mut prefix).is_err() {
        // BoringSSL's RNG does not fail on Linux; fall back to the clock and pid all the same.
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        prefix = (nanos ^ u64::from(std::process::id()).rotate_left(40)).to_be_bytes();
    }
    prefix
}

/// Makes the ids of one worker.
#[derive(Debug)]
pub struct IdGenerator {
    head: [u8; 10],
    next: Cell<u64>,
}

impl IdGenerator {
    /// Ids for `worker` of the process with `prefix`.
    pub fn new(prefix: [u8; 8], worker: usize) -> Self {
        let mut head = [0u8; 10];
        head[..8].copy_from_slice(&prefix);
        head[8..].copy_from_slice(&(worker as u16).to_be_bytes());
        Self {
            head,
            next: Cell::new(0),
        }
    }

    /// The next id.
    pub fn next_id(&self) -> ConnectionId {
        let n = self.next.get();
        self.next.set(n.wrapping_add(1));
        let mut id = [0u8; 16];
        id[..10].copy_from_slice(&self.head);
        id[10..].copy_from_slice(&n.to_be_bytes()[2..]);
        ConnectionId(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn ids_are_url_safe_and_distinct_across_workers_and_processes() {
        let mut seen = HashSet::new();
        for prefix in [process_prefix(), process_prefix()] {
            for worker in 0..4 {
                let ids = IdGenerator::new(prefix, worker);
                for _ in 0..1000 {
                    let text = ids.next_id().to_string();
                    assert_eq!(text.len(), CONNECTION_ID_LEN);
                    assert!(
                        text.bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
                        "{text}"
                    );
                    assert!(seen.insert(text), "duplicate id");
                }
            }
        }
    }
}
