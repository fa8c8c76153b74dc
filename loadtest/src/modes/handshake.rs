//! Handshake mode: a new TCP + TLS connection per request, `Connection: close`, the client
//! certificate picked round-robin; with resumption, the session cached for the certificate
//! is offered and a full handshake in its place is an error (`not_resumed`).

use std::time::Instant;

use super::{Shared, Success, Worker};
use crate::errors::{classify_status, ErrorKind};
use crate::http::get_request;
use crate::report::Stats;
use crate::tls_client::TlsConn;

/// Runs one worker thread until the run's count or time is used up.
pub fn run(shared: &Shared<'_>, resume: bool) -> Stats {
    let mut worker = Worker::new(shared);
    let request = get_request(shared.client.sni(), &shared.config.path, true);
    while let Some(n) = shared.next_op() {
        let identity = shared.client.identity_for(n);
        let started = Instant::now();
        let (result, closing) = once(&mut worker, identity, resume, &request);
        worker.record(result, started.elapsed(), None);
        if let Some(mut conn) = closing {
            // Let the server close first (so TIME_WAIT stays on its side); not timed.
            conn.drain();
        }
    }
    worker.stats
}

/// One operation; also returns the connection when the server is expected to close it.
fn once(
    worker: &mut Worker<'_, '_>,
    identity: Option<usize>,
    resume: bool,
    request: &[u8],
) -> (Result<Success, ErrorKind>, Option<TlsConn>) {
    worker.stats.connections += 1;
    let client = &worker.shared.client;
    let mut connected = match client.connect(identity, resume) {
        Ok(connected) => connected,
        Err(kind) => return (Err(kind), None),
    };
    let response = connected.conn.exchange(request);
    // TLS 1.3 tickets arrive after the handshake, before the response.
    client.save_session(&connected.conn, identity);
    let response = match response {
        Ok(response) => response,
        Err(kind) => return (Err(kind), None),
    };
    let result = if let Some(kind) = classify_status(response.status) {
        Err(kind)
    } else if resume && connected.offered_session && !connected.resumed {
        Err(ErrorKind::NotResumed)
    } else {
        Ok(Success {
            handshake: Some(connected.resumed),
            body_bytes: response.body_bytes,
        })
    };
    (result, response.close.then_some(connected.conn))
}
