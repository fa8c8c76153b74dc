//! One worker thread's keep-alive connections and the event loop that drives them: every
//! connection can have a request in flight at the same time, each on a non-blocking socket
//! ([`NbConn`]). A connection that fails or is closed by the server is closed and reopened for
//! its next request.

use std::time::{Duration, Instant};

use mio::{Events, Poll, Registry, Token};

use super::{Shared, Success};
use crate::errors::{classify_status, ErrorKind, LoadError};
use crate::http::READ_BYTES;
use crate::nonblocking::{NbConn, Progress, WakeTimer};

/// Most events taken from the poller at once.
const MAX_EVENTS: usize = 1024;
/// Longest time between two scans for timed-out connections.
const MAX_SCAN_INTERVAL: Duration = Duration::from_millis(100);

/// A request in flight on a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InFlight {
    /// What its latency counts from: when it was started (keep-alive) or intended (rate).
    pub started: Instant,
    /// When it was handed to the connection (its service time counts from here).
    pub sent: Instant,
    /// It opened the connection: `Some(resumed)`.
    handshake: Option<bool>,
}

/// Something that ended on a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Done {
    /// The connection's slot (index into the pool).
    pub slot: usize,
    /// The request that ended, or `None` for a connection opened ahead of its requests
    /// (whose result is then the failure of that connection).
    pub request: Option<InFlight>,
    /// The outcome.
    pub result: Result<Success, ErrorKind>,
    /// When it ended.
    pub at: Instant,
}

#[derive(Debug)]
struct Slot {
    /// The client certificate the connection presents.
    identity: Option<usize>,
    conn: Option<NbConn>,
    request: Option<InFlight>,
    /// The connection is being opened ahead of any request.
    opening: bool,
}

/// A worker thread's connections (slot `i` is the thread's `i`-th connection) and its
/// event loop.
#[derive(Debug)]
pub struct Pool<'s, 'a> {
    poll: Poll,
    events: Events,
    timer: WakeTimer,
    scan_every: Duration,
    next_scan: Instant,
    core: Core<'s, 'a>,
}

/// The connections' state, apart from the poller so that both can be borrowed at once.
#[derive(Debug)]
struct Core<'s, 'a> {
    shared: &'s Shared<'a>,
    slots: Vec<Slot>,
    request: Vec<u8>,
    scratch: Vec<u8>,
    /// Slots with a request in flight or a connection being opened ahead of requests.
    busy: usize,
    /// What ended since the caller last took it.
    done: Vec<Done>,
    /// TCP connections opened.
    connections: u64,
}

impl<'s, 'a> Pool<'s, 'a> {
    /// A pool for the connections with the global indices `owned` (each presents the client
    /// certificate `index % pool`), all closed, sending `request` on each.
    pub fn new(
        shared: &'s Shared<'a>,
        owned: &[usize],
        request: Vec<u8>,
    ) -> Result<Self, LoadError> {
        let poll = Poll::new().map_err(LoadError::EventLoop)?;
        let timer = WakeTimer::new(poll.registry(), Token(owned.len()));
        let client = &shared.client;
        let slots = owned
            .iter()
            .map(|&index| Slot {
                identity: client.identity_for(index as u64),
                conn: None,
                request: None,
                opening: false,
            })
            .collect();
        let scan_every =
            (shared.config.timeout / 8).clamp(Duration::from_millis(1), MAX_SCAN_INTERVAL);
        Ok(Pool {
            poll,
            events: Events::with_capacity(owned.len().clamp(1, MAX_EVENTS - 1) + 1),
            timer,
            scan_every,
            next_scan: Instant::now() + scan_every,
            core: Core {
                shared,
                slots,
                request,
                scratch: vec![0; READ_BYTES],
                busy: 0,
                done: Vec::new(),
                connections: 0,
            },
        })
    }

    /// How many connections.
    pub fn len(&self) -> usize {
        self.core.slots.len()
    }

    /// Whether the pool has no connections.
    pub fn is_empty(&self) -> bool {
        self.core.slots.is_empty()
    }

    /// How many slots have a request in flight or a connection being opened.
    pub fn busy(&self) -> usize {
        self.core.busy
    }

    /// TCP connections opened so far.
    pub fn connections(&self) -> u64 {
        self.core.connections
    }

    /// Takes what ended since the last call, in the order it ended.
    pub fn take_done(&mut self) -> std::vec::Drain<'_, Done> {
        self.core.done.drain(..)
    }

    /// Opens slot `slot`'s connection ahead of its requests (if it has none and is not busy).
    /// A failure is reported by [`Pool::take_done`] without a request.
    pub fn open(&mut self, slot: usize) {
        self.core.open(self.poll.registry(), slot);
    }

    /// Starts a request on slot `slot`, whose latency counts from `started`; opens the
    /// connection first if there is none. Its end, possibly at once, is reported by
    /// [`Pool::take_done`]. Does nothing if the slot already has a request in flight.
    pub fn start(&mut self, slot: usize, started: Instant) {
        self.core.start(self.poll.registry(), slot, started);
    }

    /// Waits for events (until `wake` at the latest, if given) and drives the connections
    /// they concern; fails connections that made no progress for the timeout. What ended is
    /// reported by [`Pool::take_done`].
    pub fn wait(&mut self, wake: Option<Instant>) -> Result<(), LoadError> {
        if self.core.busy == 0 && wake.is_none() {
            // Nothing could ever end the wait.
            return Ok(());
        }
        let now = Instant::now();
        let mut timeout =
            (self.core.busy > 0).then(|| self.next_scan.saturating_duration_since(now));
        if let Some(wake) = wake {
            if let Some(wait) = self.timer.arm(wake, now) {
                timeout = Some(timeout.map_or(wait, |t| t.min(wait)));
            }
        }
        match self.poll.poll(&mut self.events, timeout) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(LoadError::EventLoop(e)),
        }
        let registry = self.poll.registry();
        let timer = self.timer.token();
        for event in self.events.iter() {
            let token = event.token();
            if token == timer {
                self.timer.fired();
                continue;
            }
            let Some(conn) = self
                .core
                .slots
                .get_mut(token.0)
                .and_then(|s| s.conn.as_mut())
            else {
                continue;
            };
            conn.on_event(event);
            self.core.drive(registry, token.0);
        }
        let now = Instant::now();
        if now >= self.next_scan {
            self.next_scan = now + self.scan_every;
            self.core.expire(registry, now);
        }
        Ok(())
    }
}

impl Core<'_, '_> {
    fn open(&mut self, registry: &Registry, slot: usize) {
        let Some(s) = self.slots.get_mut(slot) else {
            return;
        };
        if s.conn.is_some() || s.request.is_some() || s.opening {
            return;
        }
        match NbConn::open(&self.shared.client, s.identity, registry, Token(slot)) {
            Ok(conn) => {
                s.conn = Some(conn);
                s.opening = true;
                self.busy += 1;
                self.drive(registry, slot);
            }
            Err(kind) => self.done.push(Done {
                slot,
                request: None,
                result: Err(kind),
                at: Instant::now(),
            }),
        }
    }

    fn start(&mut self, registry: &Registry, slot: usize, started: Instant) {
        let Some(s) = self.slots.get_mut(slot) else {
            return;
        };
        if s.request.is_some() {
            return;
        }
        let sent = Instant::now();
        let mut handshake = None;
        if s.conn.is_none() {
            self.connections += 1;
            match NbConn::open(&self.shared.client, s.identity, registry, Token(slot)) {
                Ok(conn) => s.conn = Some(conn),
                Err(kind) => {
                    self.done.push(Done {
                        slot,
                        request: Some(InFlight {
                            started,
                            sent,
                            handshake: None,
                        }),
                        result: Err(kind),
                        at: Instant::now(),
                    });
                    return;
                }
            }
            handshake = Some(false);
        }
        let Some(conn) = s.conn.as_mut() else {
            return;
        };
        if !conn.send() {
            return;
        }
        if std::mem::take(&mut s.opening) {
            // Opened ahead and still handshaking: the request now waits for it.
            self.busy -= 1;
            self.connections += 1;
            handshake = Some(false);
        }
        s.request = Some(InFlight {
            started,
            sent,
            handshake,
        });
        self.busy += 1;
        self.drive(registry, slot);
    }

    /// Fails the connections that made no progress for the timeout.
    fn expire(&mut self, registry: &Registry, now: Instant) {
        for slot in 0..self.slots.len() {
            let expired = self.slots[slot]
                .conn
                .as_ref()
                .and_then(NbConn::deadline)
                .is_some_and(|deadline| deadline <= now);
            if expired {
                self.end(registry, slot, Err(ErrorKind::Timeout), true);
            }
        }
    }

    /// Advances slot `slot`'s connection as far as it goes and reports what ended.
    fn drive(&mut self, registry: &Registry, slot: usize) {
        let Some(s) = self.slots.get_mut(slot) else {
            return;
        };
        let Some(conn) = s.conn.as_mut() else {
            return;
        };
        match conn.advance(&self.request, &mut self.scratch) {
            Ok(Progress::Pending) => {}
            Ok(Progress::Connected) => {
                if std::mem::take(&mut s.opening) {
                    self.busy -= 1;
                    self.connections += 1;
                }
            }
            Ok(Progress::Response(response)) => {
                let resumed = conn.resumed();
                if let Some(request) = s.request.as_mut() {
                    if request.handshake.is_some() {
                        request.handshake = Some(resumed);
                    }
                }
                let result = match classify_status(response.status) {
                    Some(kind) => Err(kind),
                    None => Ok(Success {
                        handshake: None,
                        body_bytes: response.body_bytes,
                    }),
                };
                self.end(registry, slot, result, response.close);
            }
            Err(kind) => self.end(registry, slot, Err(kind), true),
        }
    }

    /// Ends what slot `slot` was doing with `result` (closing its connection if `close`).
    fn end(
        &mut self,
        registry: &Registry,
        slot: usize,
        result: Result<Success, ErrorKind>,
        close: bool,
    ) {
        let Some(s) = self.slots.get_mut(slot) else {
            return;
        };
        if close {
            if let Some(conn) = s.conn.take() {
                conn.close(registry);
            }
        }
        let request = s.request.take();
        if request.is_none() && !std::mem::take(&mut s.opening) {
            return;
        }
        self.busy -= 1;
        let result = match (result, request) {
            (Ok(success), Some(request)) => Ok(Success {
                handshake: request.handshake,
                ..success
            }),
            (result, _) => result,
        };
        self.done.push(Done {
            slot,
            request,
            result,
            at: Instant::now(),
        });
    }
}
