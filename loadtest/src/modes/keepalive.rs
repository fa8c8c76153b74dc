//! Keep-alive mode: each thread owns its share of the connections and runs them as an event
//! loop ([`Pool`]): every connection has a request in flight at the same time, and sends its
//! next request as soon as the previous response ended, until it made its requests (or the
//! count or time ran out; requests in flight then still complete). A connection that fails or
//! is closed by the server is reopened for its next request. Each connection presents the
//! client certificate `index % pool` for its life.

use super::pool::Pool;
use super::{owned_connections, Shared, Worker};
use crate::errors::LoadError;
use crate::http::get_request;
use crate::report::Stats;

/// How many requests each connection has left to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quota {
    left: Vec<u64>,
}

impl Quota {
    /// `requests` for each of `connections` connections.
    pub fn new(connections: usize, requests: u64) -> Self {
        Self {
            left: vec![requests; connections],
        }
    }

    /// Takes one request of connection `conn`'s quota; `false` once it is used up.
    pub fn take(&mut self, conn: usize) -> bool {
        match self.left.get_mut(conn) {
            Some(left) if *left > 0 => {
                *left -= 1;
                true
            }
            _ => false,
        }
    }
}

/// Runs worker thread `thread` of `threads`.
pub fn run(
    shared: &Shared<'_>,
    thread: usize,
    threads: usize,
    connections: usize,
    requests: u64,
) -> Result<Stats, LoadError> {
    let mut worker = Worker::new(shared);
    let request = get_request(shared.client.sni(), &shared.config.path, false);
    let owned = owned_connections(thread, threads, connections);
    let mut pool = Pool::new(shared, &owned, request)?;
    let mut quota = Quota::new(pool.len(), requests);
    // Slots ready for their next request; all of them at first.
    let mut ready: Vec<usize> = (0..pool.len()).rev().collect();
    let mut exhausted = false;
    loop {
        while let Some(slot) = ready.pop() {
            if exhausted || !quota.take(slot) {
                continue;
            }
            if shared.next_op().is_none() {
                exhausted = true;
                continue;
            }
            pool.start(slot, std::time::Instant::now());
            // A connection that could not even be opened ends at once.
            for done in pool.take_done() {
                if let Some(request) = done.request {
                    let latency = done.at.saturating_duration_since(request.started);
                    worker.record(done.result, latency, None);
                }
                ready.push(done.slot);
            }
        }
        if pool.busy() == 0 {
            break;
        }
        pool.wait(None)?;
        for done in pool.take_done() {
            if let Some(request) = done.request {
                let latency = done.at.saturating_duration_since(request.started);
                worker.record(done.result, latency, None);
            }
            ready.push(done.slot);
        }
    }
    worker.stats.connections += pool.connections();
    Ok(worker.stats)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_connection_sends_its_requests() {
        let mut quota = Quota::new(2, 2);
        assert!(quota.take(0));
        assert!(quota.take(1));
        assert!(quota.take(0));
        assert!(!quota.take(0), "connection 0 made its 2 requests");
        assert!(quota.take(1));
        assert!(!quota.take(1));
        assert!(!quota.take(2), "no such connection");
    }
}
