//! What the proxy reports per request: [`RequestObserver`] turns the start and the outcome of
//! each request into request metrics and an access log record carrying the connection's id,
//! and renders the optional connection-id header sent to the origin.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use super::metrics::{Http2Refusal, Http2Refusals, LogKind};
use super::record::{AccessRecord, LogRecord, RequestLine};
use super::{ConnLog, WorkerTelemetry};
use crate::tls::SiteTls;

/// One connection's request reporting: references only (its state is in the boxed
/// [`ConnLog`]).
#[derive(Debug)]
pub struct RequestObserver<'a> {
    telemetry: &'a WorkerTelemetry,
    site: &'a Arc<SiteTls>,
    conn: &'a ConnLog,
}

/// The parts of a request head the access log keeps, borrowed from the client buffer.
#[derive(Debug, Clone, Copy)]
pub struct HeadView<'b> {
    /// The method.
    pub method: &'b [u8],
    /// The `Host` value, if any.
    pub host: Option<&'b [u8]>,
    /// The request target.
    pub path: &'b [u8],
    /// The protocol as the access log names it (`HTTP/1.1`, `HTTP/1.0`, `HTTP/2.0`).
    pub protocol: &'static str,
}

/// A request in flight, from its head on.
#[derive(Debug)]
pub struct RequestStart {
    at: Instant,
    bytes: (u64, u64),
    line: Option<RequestLine>,
    protocol: &'static str,
    /// The request's number on its connection, from 1.
    seq: u32,
}

/// How the proxy ended a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestOutcome {
    /// The status sent to the client.
    pub status: u16,
    /// The origin address, and the time from connecting to its response head.
    pub origin: Option<(SocketAddr, Duration)>,
}

impl RequestOutcome {
    /// A response with `status` that did not involve the origin.
    pub fn status(status: u16) -> Self {
        Self {
            status,
            origin: None,
        }
    }
}

impl<'a> RequestObserver<'a> {
    /// Reporting for the requests of connection `conn` on `site`, after its handshake.
    pub fn new(telemetry: &'a WorkerTelemetry, site: &'a Arc<SiteTls>, conn: &'a ConnLog) -> Self {
        Self {
            telemetry,
            site,
            conn,
        }
    }

    /// The connection waits for its next request; `bytes` are the stream's byte counts
    /// (what the next request reads and writes is counted from here).
    pub fn between_requests(&self, bytes: (u64, u64)) {
        self.conn.mark.set(bytes);
    }

    /// A request head arrived (None: it was refused unread).
    pub fn started(&self, head: Option<HeadView<'_>>) {
        let start = self.begin(head, self.conn.mark.get());
        *self.conn.current.borrow_mut() = Some(start);
    }

    /// The request in flight ended with `outcome`; `bytes` are the stream's byte counts now.
    pub fn finished(&self, outcome: RequestOutcome, bytes: (u64, u64)) {
        let Some(start) = self.conn.current.borrow_mut().take() else {
            return;
        };
        self.end(start, outcome, bytes);
    }

    /// A request of a multiplexed connection (an HTTP/2 stream) began, its byte counts
    /// starting at `bytes`: the caller keeps the returned start and hands it to
    /// [`Self::end`], so requests in flight at the same time are reported separately.
    pub fn begin(&self, head: Option<HeadView<'_>>, bytes: (u64, u64)) -> RequestStart {
        self.conn.requests.set(self.conn.requests.get() + 1);
        RequestStart {
            seq: self.conn.requests.get(),
            at: Instant::now(),
            bytes,
            line: head
                .filter(|_| self.telemetry.access_log)
                .map(|head| RequestLine::new(head.method, head.host, head.path)),
            protocol: head.map_or("HTTP/1.1", |h| h.protocol),
        }
    }

    /// The request that `start` began ended with `outcome`; `bytes` are its byte counts now
    /// (on the scale `begin` was given).
    pub fn end(&self, start: RequestStart, outcome: RequestOutcome, bytes: (u64, u64)) {
        let took = start.at.elapsed();
        let Some(established) = &self.conn.established else {
            return;
        };
        established.slot.0.worker(self.telemetry.worker).request(
            outcome.status,
            took,
            outcome.origin.map(|(_, d)| d),
        );
        if !self.telemetry.access_log {
            return;
        }
        let record = AccessRecord {
            timestamp: SystemTime::now(),
            id: self.conn.id,
            seq: start.seq,
            client: self.conn.peer.ip(),
            request: start.line,
            protocol: start.protocol,
            status: outcome.status,
            bytes_in: bytes.0.saturating_sub(start.bytes.0),
            bytes_out: bytes.1.saturating_sub(start.bytes.1),
            duration_ms: took.as_secs_f64() * 1e3,
            origin: outcome.origin.map(|(addr, _)| addr),
            origin_ms: outcome.origin.map(|(_, d)| d.as_secs_f64() * 1e3),
            leaf: self.conn.established.as_ref().and_then(|e| e.leaf.clone()),
            site: Arc::clone(self.site),
        };
        self.telemetry
            .push(LogKind::Access, LogRecord::Access(Box::new(record)));
    }

    /// Requests seen so far.
    pub fn requests(&self) -> u32 {
        self.conn.requests.get()
    }

    /// The worker's HTTP/2 refusal counters, for a connection to keep.
    pub fn http2_refusals(&self) -> Http2Refusals {
        Http2Refusals::new(Arc::clone(&self.telemetry.metrics), self.telemetry.worker)
    }

    /// Counts a request refused because the worker had `max_requests_in_flight_per_worker`
    /// in flight. Not logged line by line (a flood would flood the log): the access log has
    /// the 503, the metric the count.
    pub fn over_in_flight_limit(&self) {
        self.telemetry
            .metrics
            .worker(self.telemetry.worker)
            .over_in_flight_limit
            .add(1);
    }

    /// Counts one HTTP/2 refusal of this connection.
    pub fn http2_refusal(&self, reason: Http2Refusal) {
        self.http2_refusals().count(reason);
    }

    /// Adds the connection-id header (if configured) to a rendered origin request head,
    /// replacing any field of that name the client sent.
    pub fn add_origin_header(&self, head: &mut Vec<u8>) {
        if let Some(name) = self.telemetry.connection_id_header() {
            set_header(head, name.as_bytes(), &self.conn.id.encode());
        }
    }
}

/// Removes every `name` field from a rendered request head (ending in an empty line) and
/// inserts `name: value` before the empty line.
pub fn set_header(head: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    let mut out = Vec::with_capacity(head.len() + name.len() + value.len() + 4);
    let mut rest = &head[..];
    let mut first = true;
    while let Some(end) = rest.windows(2).position(|w| w == b"\r\n") {
        let current = &rest[..end];
        rest = &rest[end + 2..];
        if current.is_empty() {
            break;
        }
        let is_name = !first
            && current.len() > name.len()
            && current[name.len()] == b':'
            && current[..name.len()].eq_ignore_ascii_case(name);
        first = false;
        if !is_name {
            out.extend_from_slice(current);
            out.extend_from_slice(b"\r\n");
        }
    }
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n\r\n");
    out.extend_from_slice(rest);
    *head = out;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_replaces_a_client_copy_and_goes_before_the_end() {
        let mut head =
            b"GET / HTTP/1.1\r\nHost: a\r\nx-conn-id: forged\r\nAccept: */*\r\n\r\nbody".to_vec();
        set_header(&mut head, b"X-Conn-Id", b"abc");
        assert_eq!(
            String::from_utf8(head).expect("utf8"),
            "GET / HTTP/1.1\r\nHost: a\r\nAccept: */*\r\nX-Conn-Id: abc\r\n\r\nbody"
        );
    }
}
