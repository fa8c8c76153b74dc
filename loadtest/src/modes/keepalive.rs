//! Keep-alive mode: each thread owns its share of the connections and cycles through them,
//! one request at a time on each, until every connection made its requests (or the count or
//! time ran out). A connection that fails or is closed by the server is reopened for its next
//! request. Each connection presents the client certificate `index % pool` for its life.

use std::time::Instant;

use super::{keepalive_request, owned_connections, Shared, Worker};
use crate::http::get_request;
use crate::report::Stats;
use crate::tls_client::TlsConn;

/// Runs worker thread `thread` of `threads`.
pub fn run(
    shared: &Shared<'_>,
    thread: usize,
    threads: usize,
    connections: usize,
    requests: u64,
) -> Stats {
    let mut worker = Worker::new(shared);
    let request = get_request(shared.client.sni(), &shared.config.path, false);
    let owned = owned_connections(thread, threads, connections);
    let mut slots: Vec<Option<TlsConn>> = owned.iter().map(|_| None).collect();
    'rounds: for _ in 0..requests {
        for (slot, &index) in slots.iter_mut().zip(&owned) {
            if shared.next_op().is_none() {
                break 'rounds;
            }
            let identity = shared.client.identity_for(index as u64);
            let started = Instant::now();
            let result = keepalive_request(&mut worker, slot, identity, &request);
            worker.record(result, started.elapsed(), None);
        }
    }
    worker.stats
}
