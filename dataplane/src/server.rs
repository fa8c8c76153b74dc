//! Starting and stopping the set of workers.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;

use socket2::{Domain, Protocol, Socket, Type};

use crate::local_snapshot::SnapshotSlot;
use crate::revocation::RevocationState;
use crate::telemetry::Telemetry;
use crate::tls::TlsSnapshot;
use crate::worker::{self, Shared};

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

/// A running set of workers.
#[derive(Debug)]
pub struct Server {
    shared: Arc<Shared>,
    workers: Vec<JoinHandle<()>>,
    bound: Vec<SocketAddr>,
}

impl Server {
    /// Starts the configured number of workers and returns once all of them listen.
    pub fn start(
        tls: TlsSnapshot,
        revocation: Arc<RevocationState>,
        telemetry: Arc<Telemetry>,
    ) -> Result<Self, StartError> {
        let settings = tls.config.server.clone();
        // Port 0 means "any": pick one port now so that every worker's SO_REUSEPORT listener
        // joins the same group. The reserving socket is bound but never listens, so it never
        // receives connections; it is closed once the workers are bound.
        let mut reservations = Vec::new();
        let mut bound = Vec::with_capacity(settings.listen.len());
        for &addr in &settings.listen {
            if addr.port() == 0 {
                let (socket, actual) =
                    reserve_port(addr).map_err(|source| StartError::Listen { addr, source })?;
                reservations.push(socket);
                bound.push(actual);
            } else {
                // SO_REUSEPORT would let this process silently share the port with another
                // listener (say, a second instance) and split its traffic: refuse instead.
                std::net::TcpListener::bind(addr)
                    .map_err(|source| StartError::Listen { addr, source })?;
                bound.push(addr);
            }
        }
        let shared = Arc::new(Shared {
            snapshot: SnapshotSlot::new(tls),
            stop: Arc::new(AtomicBool::new(false)),
            revocation,
            telemetry,
        });
        let (ready_tx, ready_rx) = mpsc::channel();
        let mut workers = Vec::with_capacity(settings.workers);
        for id in 0..settings.workers {
            let cpu = settings.cpu_for_worker(id);
            let shared = Arc::clone(&shared);
            let listen = bound.clone();
            let ready = ready_tx.clone();
            let handle = std::thread::Builder::new()
                .name(format!("portcullis-w{id}"))
                .spawn(move || worker::run(id, shared, listen, cpu, ready))
                .map_err(|e| StartError::Worker(format!("worker {id}: spawn: {e}")))?;
            workers.push(handle);
        }
        drop(ready_tx);
        let mut server = Self {
            shared,
            workers,
            bound,
        };
        for _ in 0..server.workers.len() {
            match ready_rx.recv() {
                Ok(Ok(())) => {}
                Ok(Err(reason)) => {
                    server.stop();
                    server.join();
                    return Err(StartError::Worker(reason));
                }
                Err(_) => {
                    server.stop();
                    server.join();
                    return Err(StartError::Worker("a worker exited during start-up".into()));
                }
            }
        }
        drop(reservations);
        Ok(server)
    }

    /// The addresses the workers listen on (with ports resolved).
    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.bound
    }

    /// Replaces the configuration snapshot used by new connections.
    pub fn swap(&self, tls: TlsSnapshot) {
        self.shared.snapshot.publish(Arc::new(tls));
    }

    /// The state the workers share (the live snapshot among it), for the control plane.
    pub fn shared(&self) -> Arc<Shared> {
        Arc::clone(&self.shared)
    }

    /// Whether the current configuration's `[logs]` differ from `running`.
    pub fn logs_changed(&self, running: &portcullis_config::LogSettings) -> bool {
        self.shared.snapshot.load().config.logs != *running
    }

    /// Asks every worker to stop accepting and drain.
    pub fn stop(&self) {
        self.shared.stop.store(true, Ordering::Release);
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
