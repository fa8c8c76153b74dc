//! Rate mode: the open-loop schedule of [`crate::rate`] over keep-alive connections. Thread
//! `t` of `T` sends the requests `k ≡ t (mod T)`, each at its intended time or at once when
//! late, round-robin over its connections; latency is measured from the intended time.
//! Requests scheduled within the duration are all sent unless the run is more than the
//! per-operation timeout late at the end, in which case the rest count as `unsent` errors.
//! Each thread opens its connections first and starts its schedule after that.

use std::time::Instant;

use super::{keepalive_request, owned_connections, Shared, Worker};
use crate::errors::ErrorKind;
use crate::http::get_request;
use crate::rate::Schedule;
use crate::report::Stats;
use crate::tls_client::TlsConn;

/// Runs worker thread `thread` of `threads`.
pub fn run(
    shared: &Shared<'_>,
    thread: usize,
    threads: usize,
    rate: f64,
    connections: usize,
) -> Stats {
    let mut worker = Worker::new(shared);
    let schedule = Schedule::new(rate);
    let duration = shared.config.time_limit();
    let mut limit = schedule.count_within(duration);
    if let Some(count) = shared.config.count {
        limit = limit.min(count);
    }
    let request = get_request(shared.client.sni(), &shared.config.path, false);
    let owned = owned_connections(thread, threads, connections);
    let mut slots: Vec<Option<TlsConn>> = owned.iter().map(|_| None).collect();
    // Open the connections before the schedule starts, so that their handshakes are not
    // measured as request latency (a connection that fails here is retried lazily).
    for (slot, &index) in slots.iter_mut().zip(&owned) {
        let identity = shared.client.identity_for(index as u64);
        match shared.client.connect(identity, false) {
            Ok(connected) => {
                worker.stats.connections += 1;
                *slot = Some(connected.conn);
            }
            Err(kind) => worker.stats.error(kind, 1),
        }
    }
    let start = Instant::now();
    let hard_deadline = start + duration + shared.config.timeout;
    let mut next_conn = 0usize;
    for k in Schedule::slots(thread, threads) {
        if k >= limit {
            break;
        }
        let intended = start + schedule.intended(k);
        let now = Instant::now();
        if now >= hard_deadline || shared.stopped() {
            let left = (limit - k).div_ceil(threads as u64);
            worker.stats.error(ErrorKind::Unsent, left);
            break;
        }
        if intended > now {
            std::thread::sleep(intended - now);
        }
        let sent = Instant::now();
        let result = if slots.is_empty() {
            // More threads than connections: this thread has none to send on.
            Err(ErrorKind::Unsent)
        } else {
            let i = next_conn % slots.len();
            next_conn = next_conn.wrapping_add(1);
            let identity = shared.client.identity_for(owned[i] as u64);
            keepalive_request(&mut worker, &mut slots[i], identity, &request)
        };
        let done = Instant::now();
        worker.stats.max_lag = worker
            .stats
            .max_lag
            .max(sent.saturating_duration_since(intended));
        worker.record(
            result,
            done.saturating_duration_since(intended),
            Some(done.saturating_duration_since(sent)),
        );
    }
    worker.stats
}
