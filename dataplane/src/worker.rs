//! Thread-per-core workers: one monoio runtime per thread, each with its own SO_REUSEPORT
//! listeners, origin pool and shutdown notification. Nothing on the accept/handshake/request
//! path is shared between workers except the configuration snapshot, read through `arc-swap`.

use std::cell::Cell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::AtomicBool;
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use monoio::net::{ListenerOpts, TcpListener};

use crate::buffer_pool::BufferPool;
use crate::connection;
use crate::local_snapshot::{LocalSnapshot, SnapshotSlot, WorkerSnapshot};
use crate::notify::LocalNotify;
use crate::origin_pool::OriginPool;
use crate::revocation::RevocationState;
use crate::shutdown::{self, Shutdown};
use crate::telemetry::{Telemetry, WorkerTelemetry};
use crate::viewer_header_cache::{self, ViewerHeaderCache};

/// Listen backlog of every listener.
const LISTEN_BACKLOG: i32 = 4096;
/// io_uring submission queue size.
const RING_ENTRIES: u32 = 4096;
/// Idle origin connections kept per origin and worker.
const MAX_IDLE_ORIGIN_CONNECTIONS: usize = 256;
/// 64 KiB buffers a worker keeps for reuse (a request in flight holds two).
const IDLE_BUFFERS: usize = 256;
/// How long an idle origin connection may wait for reuse.
const ORIGIN_IDLE_LIMIT: Duration = Duration::from_secs(30);
/// How often idle origin connections are checked (closed when expired or not quiet).
const ORIGIN_SWEEP_INTERVAL: Duration = Duration::from_secs(1);

/// State shared by all workers.
#[derive(Debug)]
pub struct Shared {
    /// The current configuration and TLS contexts; swapped whole on reload.
    pub snapshot: SnapshotSlot,
    /// Set once to ask every worker to stop accepting and drain.
    pub stop: Arc<AtomicBool>,
    /// Revocation data, changed at run time through the admin API.
    pub revocation: Arc<RevocationState>,
    /// Logs and metrics.
    pub telemetry: Arc<Telemetry>,
}

/// What one worker owns.
#[derive(Debug)]
pub struct Worker {
    /// The worker's number, from 0.
    pub id: usize,
    /// State shared with the other workers.
    pub shared: Arc<Shared>,
    /// Fires when the worker begins to drain.
    pub shutdown: Rc<Shutdown>,
    /// Notified when the revocation epoch changes.
    pub revocations: LocalNotify,
    /// The worker's keep-alive origin connections.
    pub pool: OriginPool,
    /// The worker's body buffers.
    pub buffers: BufferPool,
    /// Viewer-cert header blocks rendered on this worker.
    pub viewer_headers: ViewerHeaderCache,
    /// This worker's copy of the live snapshot.
    local_snapshot: LocalSnapshot,
    /// The worker's connection ids, log queue and counters.
    pub telemetry: WorkerTelemetry,
    active: Cell<usize>,
}

impl Worker {
    /// The live snapshot for a new connection, which keeps it for its whole life: one atomic
    /// load and a thread-local reference count while no reload happened.
    pub fn snapshot(&self) -> WorkerSnapshot {
        self.local_snapshot.get(&self.shared.snapshot)
    }

    /// Connections currently open on this worker.
    pub fn active_connections(&self) -> usize {
        self.active.get()
    }
}

/// Counts a connection as active for as long as it lives.
#[derive(Debug)]
pub struct ActiveGuard(Rc<Worker>);

impl ActiveGuard {
    /// Registers one more active connection on `worker`.
    pub fn new(worker: Rc<Worker>) -> Self {
        worker.active.set(worker.active.get() + 1);
        worker.telemetry.set_active(worker.active.get());
        Self(worker)
    }

    /// The worker the connection runs on.
    pub fn worker(&self) -> &Rc<Worker> {
        &self.0
    }
}

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.0.active.set(self.0.active.get() - 1);
        self.0.telemetry.set_active(self.0.active.get());
    }
}

/// Runs worker `id` on the current thread until shutdown has drained. `ready` receives
/// `Ok(())` once its listeners are bound, or the reason they could not be.
pub fn run(
    id: usize,
    shared: Arc<Shared>,
    listen: Vec<SocketAddr>,
    cpu: Option<usize>,
    ready: mpsc::Sender<Result<(), String>>,
) {
    if let Some(cpu) = cpu {
        if let Err(e) = monoio::utils::bind_to_cpu_set([cpu]) {
            tracing::warn!(worker = id, cpu, error = ?e, "could not pin worker to CPU");
        }
    }
    let mut runtime = match build_runtime() {
        Ok(rt) => rt,
        Err(e) => {
            let _ = ready.send(Err(format!("worker {id}: runtime: {e}")));
            return;
        }
    };
    runtime.block_on(async move {
        let opts = ListenerOpts::new()
            .reuse_port(true)
            .reuse_addr(true)
            .backlog(LISTEN_BACKLOG);
        let mut listeners = Vec::with_capacity(listen.len());
        for addr in &listen {
            match TcpListener::bind_with_config(addr, &opts) {
                Ok(l) => listeners.push(l),
                Err(e) => {
                    let _ = ready.send(Err(format!("worker {id}: listen on {addr}: {e}")));
                    return;
                }
            }
        }
        let _ = ready.send(Ok(()));
        let worker = Rc::new(Worker {
            id,
            shutdown: Shutdown::new(),
            revocations: LocalNotify::default(),
            pool: OriginPool::new(MAX_IDLE_ORIGIN_CONNECTIONS, ORIGIN_IDLE_LIMIT),
            buffers: BufferPool::new(IDLE_BUFFERS),
            viewer_headers: ViewerHeaderCache::new(viewer_header_cache::DEFAULT_CAPACITY),
            local_snapshot: LocalSnapshot::new(&shared.snapshot),
            telemetry: shared.telemetry.for_worker(id),
            active: Cell::new(0),
            shared,
        });
        worker.telemetry.set_listening(true);
        let watcher = {
            let worker = Rc::clone(&worker);
            let start_epoch = worker.shared.revocation.epoch();
            monoio::spawn(async move {
                let stop = Arc::clone(&worker.shared.stop);
                let revocation = Arc::clone(&worker.shared.revocation);
                shutdown::watch(
                    &worker.shutdown,
                    stop,
                    &worker.revocations,
                    start_epoch,
                    || {
                        // Every poll, also let go of a snapshot a reload replaced, so that an
                        // idle worker does not keep it alive.
                        worker.local_snapshot.refresh(&worker.shared.snapshot);
                        revocation.epoch()
                    },
                )
                .await
            })
        };
        let sweeper = monoio::spawn(sweep_origin_pool(Rc::clone(&worker)));
        let accepts: Vec<_> = listeners
            .into_iter()
            .map(|l| monoio::spawn(accept_loop(l, Rc::clone(&worker))))
            .collect();
        for a in accepts {
            a.await;
        }
        worker.telemetry.set_listening(false);
        watcher.await;
        drain(&worker).await;
        sweeper.await;
    });
}

/// Closes idle origin connections that expired or that the origin wrote to or closed, until
/// the worker stops.
async fn sweep_origin_pool(worker: Rc<Worker>) {
    loop {
        monoio::select! {
            _ = monoio::time::sleep(ORIGIN_SWEEP_INTERVAL) => worker.pool.sweep(),
            _ = worker.shutdown.wait() => return,
        }
    }
}

/// io_uring with a timer, or epoll with a timer where io_uring is missing.
type WorkerRuntime = monoio::FusionRuntime<
    monoio::time::TimeDriver<monoio::IoUringDriver>,
    monoio::time::TimeDriver<monoio::LegacyDriver>,
>;

/// The worker's runtime: io_uring (epoll where io_uring is missing). The ring runs
/// completion work cooperatively (IORING_SETUP_COOP_TASKRUN, Linux 5.19+): a completion
/// arriving from another CPU is processed at the worker's next ring entry instead of through
/// an inter-processor interrupt into whatever the worker is doing. Older kernels refuse the
/// flag; the ring is then built without it.
fn build_runtime() -> std::io::Result<WorkerRuntime> {
    let build = |cooperative: bool| {
        let mut ring = io_uring::IoUring::builder();
        if cooperative {
            ring.setup_coop_taskrun();
        }
        monoio::RuntimeBuilder::<monoio::FusionDriver>::new()
            .enable_timer()
            .with_entries(RING_ENTRIES)
            .uring_builder(ring)
            .build()
    };
    build(true).or_else(|e| {
        tracing::debug!(error = %e, "io_uring without cooperative task running");
        build(false)
    })
}

async fn accept_loop(listener: TcpListener, worker: Rc<Worker>) {
    // The local address of every connection: the listener's, unless it is a wildcard (then
    // each connection asks the kernel).
    let bound = listener
        .local_addr()
        .ok()
        .filter(|addr| !addr.ip().is_unspecified());
    loop {
        let accepted = monoio::select! {
            r = listener.accept() => r,
            _ = worker.shutdown.wait() => return,
        };
        match accepted {
            Ok((stream, peer)) => {
                // Read at every accept, so that a reload changes the limit.
                let max = worker
                    .shared
                    .snapshot
                    .load()
                    .config
                    .server
                    .limits
                    .max_connections_per_worker;
                if worker.active.get() >= max {
                    tracing::warn!(worker = worker.id, %peer, max, "connection limit reached; closing new connection");
                    drop(stream);
                    continue;
                }
                let local = bound
                    .or_else(|| stream.local_addr().ok())
                    .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0)));
                let guard = ActiveGuard::new(Rc::clone(&worker));
                monoio::spawn(connection::handle(stream, peer, local, guard));
            }
            Err(e) => {
                // Out of descriptors or a transient error: back off briefly instead of spinning.
                tracing::warn!(worker = worker.id, error = %e, "accept failed");
                monoio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

/// Waits for in-flight connections to finish, up to the drain time-out.
async fn drain(worker: &Worker) {
    let limit = worker.shared.snapshot.load().config.server.timeouts.drain;
    let start = Instant::now();
    while worker.active.get() > 0 && start.elapsed() < limit {
        monoio::time::sleep(Duration::from_millis(10)).await;
    }
    if worker.active.get() > 0 {
        tracing::warn!(
            worker = worker.id,
            open = worker.active.get(),
            "drain time-out passed; closing remaining connections"
        );
    }
}
