//! Starting and stopping the set of workers, and their listening sockets (bound here, or
//! inherited from the process a binary upgrade replaces).

use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;

use socket2::{Domain, Protocol, Socket, Type};

use crate::client_ip_limit::ClientIpCounts;
use crate::local_snapshot::SnapshotSlot;
use crate::revocation::RevocationState;
use crate::service::Heartbeats;
use crate::telemetry::Telemetry;
use crate::tls::TlsSnapshot;
use crate::worker::{self, Shared, LISTEN_BACKLOG};

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A listen address could not be reserved.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// The configured address.
        addr: SocketAddr,
        /// What the OS said.
        source: std::io::Error,
    },
    /// A worker failed to start.
    #[error("{0}")]
    Worker(String),
}

/// A listening socket inherited from the process this one replaces (binary upgrade), with
/// the address it is bound to.
#[derive(Debug)]
pub struct InheritedListener {
    /// The bound address (port resolved).
    pub addr: SocketAddr,
    /// The socket, listening.
    pub socket: TcpListener,
}

/// A running set of workers.
#[derive(Debug)]
pub struct Server {
    shared: Arc<Shared>,
    workers: Vec<JoinHandle<()>>,
    bound: Vec<SocketAddr>,
    /// A duplicate of every worker's listener (address, socket), for a binary upgrade to hand
    /// to the new process; let go of on [`Server::stop`], so that a stopping process closes
    /// its listeners as soon as its workers stop accepting.
    handover: Mutex<Vec<(SocketAddr, TcpListener)>>,
}

impl Server {
    /// Starts the configured number of workers and returns once all of them listen.
    ///
    /// Every worker gets one `SO_REUSEPORT` listener per address, all in the address's
    /// group. Listeners in `inherited` (a binary upgrade) are used first for the addresses
    /// they are bound to (an address with port 0 takes the inherited listeners of its IP):
    /// worker `i` accepts on the inherited listeners `j` with `j % workers == i`, so that no
    /// inherited accept queue is left without a worker, and workers beyond the inherited
    /// count get new listeners in the same group. Inherited listeners of addresses no longer
    /// configured are closed (with a warning: connections waiting in their queues are reset).
    pub fn start(
        tls: TlsSnapshot,
        revocation: Arc<RevocationState>,
        telemetry: Arc<Telemetry>,
        inherited: Vec<InheritedListener>,
    ) -> Result<Self, StartError> {
        let settings = tls.config.server.clone();
        let workers = settings.workers.max(1);
        let mut inherited: Vec<Option<InheritedListener>> =
            inherited.into_iter().map(Some).collect();
        let mut per_worker: Vec<Vec<TcpListener>> = (0..workers).map(|_| Vec::new()).collect();
        let mut handover = Vec::new();
        let mut bound = Vec::with_capacity(settings.listen.len());
        for &addr in &settings.listen {
            let listen_error = |source| StartError::Listen { addr, source };
            let mut sockets: Vec<TcpListener> = inherited
                .iter_mut()
                .filter(|slot| slot.as_ref().is_some_and(|l| serves(addr, l.addr)))
                .filter_map(Option::take)
                .map(|l| l.socket)
                .collect();
            // Port 0 means "any": pick one port now so that every worker's SO_REUSEPORT
            // listener joins the same group. The reserving socket is bound but never
            // listens, so it never receives connections; it is closed once the listeners
            // are bound.
            let mut reservation = None;
            let actual = match sockets.first() {
                Some(socket) => socket.local_addr().map_err(listen_error)?,
                None if addr.port() == 0 => {
                    let (socket, actual) = reserve_port(addr).map_err(listen_error)?;
                    reservation = Some(socket);
                    actual
                }
                None => {
                    // SO_REUSEPORT would let this process silently share the port with
                    // another listener (say, a second instance) and split its traffic:
                    // refuse instead.
                    TcpListener::bind(addr).map_err(listen_error)?;
                    addr
                }
            };
            if !sockets.is_empty() {
                tracing::info!(%actual, inherited = sockets.len(), "listening on inherited sockets");
            }
            while sockets.len() < workers {
                sockets.push(listener(actual).map_err(listen_error)?);
            }
            drop(reservation);
            for (j, socket) in sockets.into_iter().enumerate() {
                let copy = socket.try_clone().map_err(listen_error)?;
                handover.push((actual, copy));
                per_worker[j % workers].push(socket);
            }
            bound.push(actual);
        }
        for unused in inherited.into_iter().flatten() {
            tracing::warn!(addr = %unused.addr, "an inherited listener's address is no longer configured; closing it (connections waiting in its queue are reset)");
        }
        let shared = Arc::new(Shared {
            snapshot: SnapshotSlot::new(tls),
            stop: Arc::new(AtomicBool::new(false)),
            revocation,
            telemetry,
            client_ips: ClientIpCounts::default(),
            heartbeats: Arc::new(Heartbeats::new(workers)),
        });
        let (ready_tx, ready_rx) = mpsc::channel();
        let mut handles = Vec::with_capacity(workers);
        let mut server = Self {
            shared,
            workers: Vec::new(),
            bound,
            handover: Mutex::new(handover),
        };
        for (id, listeners) in per_worker.into_iter().enumerate() {
            let cpu = settings.cpu_for_worker(id);
            let shared = Arc::clone(&server.shared);
            let ready = ready_tx.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("portcullis-w{id}"))
                .spawn(move || worker::run(id, shared, listeners, cpu, ready));
            match spawned {
                Ok(handle) => handles.push(handle),
                Err(e) => {
                    server.workers = handles;
                    server.stop();
                    server.join();
                    return Err(StartError::Worker(format!("worker {id}: spawn: {e}")));
                }
            }
        }
        drop(ready_tx);
        server.workers = handles;
        for _ in 0..server.workers.len() {
            let failure = match ready_rx.recv() {
                Ok(Ok(())) => continue,
                Ok(Err(reason)) => reason,
                Err(_) => "a worker exited during start-up".into(),
            };
            server.stop();
            server.join();
            return Err(StartError::Worker(failure));
        }
        Ok(server)
    }

    /// The addresses the workers listen on (with ports resolved).
    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.bound
    }

    /// The state the workers share (the live snapshot among it), for the control plane.
    pub fn shared(&self) -> Arc<Shared> {
        Arc::clone(&self.shared)
    }

    /// Every worker's listener (address, socket) for a binary upgrade to hand over; empty once
    /// the server stops.
    pub fn listeners(&self) -> MutexGuard<'_, Vec<(SocketAddr, TcpListener)>> {
        self.handover.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Asks every worker to stop accepting and drain.
    pub fn stop(&self) {
        self.shared.stop.store(true, Ordering::Release);
        self.listeners().clear();
    }

    /// Waits for every worker to finish draining.
    pub fn join(&mut self) {
        for handle in self.workers.drain(..) {
            if handle.join().is_err() {
                tracing::error!("a worker thread panicked");
            }
        }
    }
}

/// Whether an inherited listener bound to `bound` serves the configured address `configured`
/// (the same address; for port 0, the same IP).
fn serves(configured: SocketAddr, bound: SocketAddr) -> bool {
    configured == bound || (configured.port() == 0 && configured.ip() == bound.ip())
}

/// A new `SO_REUSEPORT` listener on `addr`, non-blocking (as both of monoio's drivers accept
/// it; the socket may also be handed to another process).
fn listener(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_port(true)?;
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(LISTEN_BACKLOG)?;
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}

fn reserve_port(addr: SocketAddr) -> std::io::Result<(Socket, SocketAddr)> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_port(true)?;
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    let actual = socket
        .local_addr()?
        .as_socket()
        .ok_or_else(|| std::io::Error::other("bound address is not an IP address"))?;
    Ok((socket, actual))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inherited_listeners_serve_their_address_or_any_port_of_their_ip() {
        let a: SocketAddr = "127.0.0.1:8443".parse().unwrap();
        assert!(serves(a, a));
        assert!(!serves(a, "127.0.0.1:8444".parse().unwrap()));
        assert!(serves("127.0.0.1:0".parse().unwrap(), a));
        assert!(!serves("127.0.0.2:0".parse().unwrap(), a));
    }
}
