//! `server.limits.max_connections_per_client_ip`: how many connections one client address may
//! hold open on the whole host, across workers, without a lock.
//!
//! Each address counts in two of [`BUCKETS`] atomic counters picked by a process-keyed hash
//! (a count-min sketch): a client's count is at most the smaller of its two counters, so the
//! limit is never exceeded through a collision (it fails closed); two addresses only share
//! both counters by chance, and the hash key is random per process so a client cannot pick a
//! victim's counters. Simultaneous accepts on several workers can each pass the check before
//! the others count, so the limit can be exceeded by at most one connection per worker.
//! IPv6 clients are counted per /64 (one subscriber's prefix), IPv4-mapped IPv6 as IPv4.

use std::hash::BuildHasher;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU32, Ordering};

/// Counters per hash function.
const BUCKETS: usize = 1 << 16;

/// Connection counts per client address, shared by the workers.
#[derive(Debug)]
pub struct ClientIpCounts {
    hasher: std::hash::RandomState,
    counters: Box<[AtomicU32]>,
}

/// One admitted connection's place in the counts, returned to [`ClientIpCounts::release`].
#[derive(Debug)]
#[must_use]
pub struct ClientIpTicket(Option<[usize; 2]>);

impl Default for ClientIpCounts {
    fn default() -> Self {
        Self {
            hasher: std::hash::RandomState::new(),
            counters: (0..2 * BUCKETS).map(|_| AtomicU32::new(0)).collect(),
        }
    }
}

impl ClientIpCounts {
    /// Counts a new connection from `ip` if that keeps it within `limit` (0: no limit, nothing
    /// counted); `None` when the client already holds `limit` connections.
    pub fn admit(&self, ip: IpAddr, limit: usize) -> Option<ClientIpTicket> {
        if limit == 0 {
            return Some(ClientIpTicket(None));
        }
        let slots = self.slots(ip);
        let before = slots.map(|i| self.counters[i].fetch_add(1, Ordering::AcqRel));
        if before[0].min(before[1]) as usize >= limit {
            self.release(ClientIpTicket(Some(slots)));
            return None;
        }
        Some(ClientIpTicket(Some(slots)))
    }

    /// Uncounts a connection admitted by [`admit`](Self::admit).
    pub fn release(&self, ticket: ClientIpTicket) {
        if let Some(slots) = ticket.0 {
            for i in slots {
                self.counters[i].fetch_sub(1, Ordering::AcqRel);
            }
        }
    }

    /// The two counters of `ip` (the second in the upper half).
    fn slots(&self, ip: IpAddr) -> [usize; 2] {
        let key: u128 = match ip {
            IpAddr::V4(v4) => u32::from(v4).into(),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => u32::from(v4).into(),
                // The /64 prefix, marked so it never equals an IPv4 key.
                None => (u128::from(v6) >> 64) | (1 << 64),
            },
        };
        let hash = self.hasher.hash_one(key);
        let mask = BUCKETS as u64 - 1;
        [
            (hash & mask) as usize,
            BUCKETS + ((hash >> 32) & mask) as usize,
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("address")
    }

    #[test]
    fn a_client_gets_its_limit_and_no_more_until_one_closes() {
        let counts = ClientIpCounts::default();
        let held: Vec<_> = (0..3)
            .map(|_| counts.admit(ip("192.0.2.1"), 3).expect("within"))
            .collect();
        assert!(counts.admit(ip("192.0.2.1"), 3).is_none());
        assert!(counts.admit(ip("192.0.2.2"), 3).is_some(), "another client");
        let mut held = held.into_iter();
        counts.release(held.next().expect("one"));
        let again = counts.admit(ip("192.0.2.1"), 3).expect("one closed");
        assert!(counts.admit(ip("192.0.2.1"), 3).is_none());
        counts.release(again);
        held.for_each(|t| counts.release(t));
        assert!(counts
            .counters
            .iter()
            .all(|c| c.load(Ordering::Relaxed) <= 1));
    }

    #[test]
    fn ipv6_counts_per_64_and_mapped_ipv4_as_ipv4() {
        let counts = ClientIpCounts::default();
        let _a = counts.admit(ip("2001:db8:1:2::1"), 2).expect("first");
        let _b = counts.admit(ip("2001:db8:1:2::ffff"), 2).expect("same /64");
        assert!(counts.admit(ip("2001:db8:1:2:abcd::9"), 2).is_none());
        assert!(counts.admit(ip("2001:db8:1:3::1"), 2).is_some(), "next /64");
        let _c = counts.admit(ip("198.51.100.7"), 1).expect("v4");
        assert!(counts.admit(ip("::ffff:198.51.100.7"), 1).is_none());
    }

    #[test]
    fn zero_is_no_limit_and_counts_nothing() {
        let counts = ClientIpCounts::default();
        for _ in 0..10 {
            let t = counts.admit(ip("192.0.2.1"), 0).expect("no limit");
            assert!(t.0.is_none());
        }
        assert!(counts
            .counters
            .iter()
            .all(|c| c.load(Ordering::Relaxed) == 0));
    }

    #[test]
    fn a_collision_in_one_counter_does_not_refuse() {
        let counts = ClientIpCounts::default();
        // Fill one of the client's two counters as if other clients hashed there.
        let [first, _] = counts.slots(ip("192.0.2.1"));
        counts.counters[first].store(100, Ordering::Relaxed);
        assert!(counts.admit(ip("192.0.2.1"), 2).is_some());
    }
}
