//! The worker loops of the three modes and what they share: the TLS client, the stop
//! conditions, the operation counter and the per-thread recording of outcomes. The
//! handshake mode runs blocking connections one at a time; the keep-alive and rate modes run
//! each thread's connections concurrently in an event loop ([`pool::Pool`]).

pub mod handshake;
pub mod keepalive;
pub mod pool;
pub mod rate;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::config::Config;
use crate::errors::ErrorKind;
use crate::progress::Live;
use crate::report::Stats;
use crate::tls_client::TlsClient;

/// State shared by every worker thread of a run.
#[derive(Debug)]
pub struct Shared<'a> {
    /// The run's configuration.
    pub config: &'a Config,
    /// The TLS client.
    pub client: TlsClient,
    /// Live counters for the progress line.
    pub live: Live,
    /// When the run started.
    pub start: Instant,
    /// After this no operation starts.
    pub deadline: Instant,
    /// The most operations, if bounded by count.
    pub op_limit: Option<u64>,
    next_op: AtomicU64,
    stop: AtomicBool,
}

impl<'a> Shared<'a> {
    /// Shared state for a run starting now.
    pub fn new(config: &'a Config, client: TlsClient) -> Self {
        let start = Instant::now();
        Shared {
            config,
            client,
            live: Live::default(),
            start,
            deadline: start + config.time_limit(),
            op_limit: config.op_limit(),
            next_op: AtomicU64::new(0),
            stop: AtomicBool::new(false),
        }
    }

    /// Claims the next operation number, or `None` once the count or the time is used up.
    pub fn next_op(&self) -> Option<u64> {
        if self.stopped() || Instant::now() >= self.deadline {
            return None;
        }
        let n = self.next_op.fetch_add(1, Ordering::Relaxed);
        match self.op_limit {
            Some(limit) if n >= limit => None,
            _ => Some(n),
        }
    }

    /// Asks every worker to stop after its current operation.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }

    /// Whether [`Shared::stop`] was called, or the process was asked to stop early
    /// ([`crate::stop_early_on_signals`]).
    pub fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed) || crate::interrupted()
    }
}

/// A successful operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Success {
    /// The operation made a handshake: `Some(resumed)`.
    pub handshake: Option<bool>,
    /// Response body bytes.
    pub body_bytes: u64,
}

/// One worker thread's recorder.
#[derive(Debug)]
pub struct Worker<'s, 'a> {
    shared: &'s Shared<'a>,
    /// What it counted.
    pub stats: Stats,
}

impl<'s, 'a> Worker<'s, 'a> {
    /// A recorder for `shared`'s run.
    pub fn new(shared: &'s Shared<'a>) -> Self {
        Self {
            shared,
            stats: Stats::default(),
        }
    }

    /// Records the outcome of one operation that took `latency` (and, in rate mode, whose
    /// service time was `service`). A success with `--expect-refused` is an `accepted`
    /// error; a refused handshake with `--expect-refused` is a completed operation.
    pub fn record(
        &mut self,
        result: Result<Success, ErrorKind>,
        latency: Duration,
        service: Option<Duration>,
    ) {
        let expect_refused = self.shared.config.expect_refused;
        let ok = match result {
            Ok(_) if expect_refused => {
                self.stats.error(ErrorKind::Accepted, 1);
                false
            }
            Ok(success) => {
                match success.handshake {
                    Some(true) => self.stats.resumed += 1,
                    Some(false) => self.stats.full_handshakes += 1,
                    None => {}
                }
                self.stats.body_bytes += success.body_bytes;
                true
            }
            Err(kind @ ErrorKind::HandshakeRefused { .. }) if expect_refused => {
                *self.stats.expected.entry(kind).or_default() += 1;
                true
            }
            Err(kind) => {
                self.stats.error(kind, 1);
                false
            }
        };
        if ok {
            self.stats.completed += 1;
            self.stats.latency.record(latency);
            if let Some(service) = service {
                self.stats.service.record(service);
            }
        }
        self.shared.live.add(ok);
    }
}

/// The connection indices thread `thread` of `threads` owns: `thread, thread + threads, ...`
/// below `connections`.
pub fn owned_connections(thread: usize, threads: usize, connections: usize) -> Vec<usize> {
    (thread..connections).step_by(threads.max(1)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_split_over_threads() {
        assert_eq!(owned_connections(0, 2, 5), vec![0, 2, 4]);
        assert_eq!(owned_connections(1, 2, 5), vec![1, 3]);
        assert_eq!(owned_connections(3, 4, 2), Vec::<usize>::new());
    }
}
