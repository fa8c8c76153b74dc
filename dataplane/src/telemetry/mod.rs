//! Observability: the connection log, the access log, Prometheus metrics and the connection
//! id that joins them.
//!
//! [`Telemetry`] is process-wide: it opens the logs, starts the [writer] thread and holds the
//! [metrics]. Each worker takes a [`WorkerTelemetry`] at start: its own id generator, its own
//! queue to the writer and its own counter blocks, so nothing on a worker's path takes a lock,
//! makes a syscall or contends on a shared cache line to log or count. A connection asks it for
//! an id when accepted, reports the end of its handshake (one connection record, handshake
//! metrics) and, if configured, its close; its requests report through a [`RequestObserver`]
//! (one access record each, request metrics).

pub mod access;
pub mod connection_id;
pub mod format;
pub mod leaf;
pub mod metrics;
pub mod record;
pub mod writer;

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use monoio::io::{AsyncReadRent, AsyncWriteRent};
use portcullis_config::{
    ConfigError, LogDestination, LogSettings, LogStream, Snapshot, ACCESS_LOG_FIELDS,
    CONNECTION_LOG_FIELDS,
};

pub use access::RequestObserver;
pub use connection_id::{ConnectionId, IdGenerator};
pub use leaf::{cached_fields, LeafCache, LeafFields};
pub use metrics::{LogKind, Metrics, Refused, SiteCounters};
pub use record::{AccessRecord, CloseStats, ConnectionRecord, LogRecord};

use crate::tls::{HandshakeFailure, HandshakeInfo, SiteTls, TlsStream};
use writer::{Sink, WriterHandle};

/// At most one warning about dropped records per worker and this interval.
const DROP_WARNING_INTERVAL: Duration = Duration::from_secs(10);

/// Why telemetry could not start.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// A log file cannot be opened.
    #[error("{0}")]
    Open(ConfigError),
    /// The writer thread cannot be started.
    #[error("log writer thread: {0}")]
    Thread(std::io::Error),
}

/// Process-wide telemetry: metrics, log settings, the writer thread and the workers' queues.
#[derive(Debug)]
pub struct Telemetry {
    /// Every metric.
    pub metrics: Arc<Metrics>,
    settings: LogSettings,
    prefix: [u8; 8],
    producers: Mutex<Vec<Option<rtrb::Producer<LogRecord>>>>,
    writer: Option<WriterHandle>,
}

impl Telemetry {
    /// Opens the logs of `config` (each file must be writable now) and starts the writer
    /// thread if any log is configured.
    pub fn start(config: &Snapshot) -> Result<Arc<Self>, TelemetryError> {
        let workers = config.server.workers.max(1);
        let metrics = Metrics::new(workers);
        let settings = config.logs.clone();
        let open = |kind, key: &str, stream: &Option<LogStream>, names| {
            stream
                .as_ref()
                .map(|stream| {
                    Sink::open(kind, stream, names).map_err(|e| {
                        let target = match &stream.destination {
                            LogDestination::File(path) => path.display().to_string(),
                            LogDestination::Stdout => "standard output".to_owned(),
                        };
                        TelemetryError::Open(ConfigError::new(
                            &config.source,
                            format!("{key}.path"),
                            format!("cannot open {target} for appending: {e}"),
                        ))
                    })
                })
                .transpose()
        };
        let connection = open(
            LogKind::Connection,
            "logs.connection",
            &settings.connection,
            CONNECTION_LOG_FIELDS,
        )?;
        let access = open(
            LogKind::Access,
            "logs.access",
            &settings.access,
            ACCESS_LOG_FIELDS,
        )?;
        let mut producers = Vec::with_capacity(workers);
        let writer = if connection.is_some() || access.is_some() {
            let mut consumers = Vec::with_capacity(workers);
            for _ in 0..workers {
                let (producer, consumer) = rtrb::RingBuffer::new(settings.queue_capacity);
                producers.push(Some(producer));
                consumers.push(consumer);
            }
            let (control, thread) =
                writer::spawn(consumers, connection, access, Arc::clone(&metrics))
                    .map_err(TelemetryError::Thread)?;
            Some(WriterHandle::new(control, thread))
        } else {
            producers.resize_with(workers, || None);
            None
        };
        Ok(Arc::new(Self {
            metrics,
            settings,
            prefix: connection_id::process_prefix(),
            producers: Mutex::new(producers),
            writer,
        }))
    }

    /// Telemetry without logs (metrics only), for `workers` workers.
    pub fn without_logs(workers: usize) -> Arc<Self> {
        Arc::new(Self {
            metrics: Metrics::new(workers),
            settings: LogSettings::default(),
            prefix: connection_id::process_prefix(),
            producers: Mutex::new((0..workers.max(1)).map(|_| None).collect()),
            writer: None,
        })
    }

    /// The telemetry of worker `id` (its queue can be taken once).
    pub fn for_worker(self: &Arc<Self>, id: usize) -> WorkerTelemetry {
        let queue = self
            .producers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get_mut(id)
            .and_then(Option::take);
        let connection = self.settings.connection.as_ref();
        metrics::register_worker_thread(Arc::clone(&self.metrics), id);
        WorkerTelemetry {
            worker: id,
            metrics: Arc::clone(&self.metrics),
            ids: IdGenerator::new(self.prefix, id),
            connection_log: queue.is_some() && connection.is_some(),
            access_log: queue.is_some() && self.settings.access.is_some(),
            log_close: queue.is_some() && connection.is_some_and(|c| c.log_close),
            queue: RefCell::new(queue),
            sites: RefCell::new(HashMap::new()),
            unknown_site: self.metrics.site("-"),
            connection_id_header: self.settings.connection_id_header.clone(),
            last_drop_warning: Cell::new(None),
            drops_since_warning: Cell::new(0),
        }
    }

    /// The `[logs]` settings in force (read at start).
    pub fn log_settings(&self) -> &LogSettings {
        &self.settings
    }

    /// Reopens the log files (SIGUSR1).
    pub fn reopen_logs(&self) {
        if let Some(writer) = &self.writer {
            writer.control.reopen();
        }
    }

    /// Writes every queued record and stops the writer (after the workers stopped).
    pub fn stop(&self) {
        if let Some(writer) = &self.writer {
            writer.stop();
        }
    }
}

/// A site's counters as one worker caches them.
#[derive(Debug)]
pub struct SiteSlot(pub(crate) Arc<SiteCounters>);

/// What one worker uses to identify, log and count its connections.
#[derive(Debug)]
pub struct WorkerTelemetry {
    /// The worker's number.
    pub worker: usize,
    /// The process's metrics.
    pub metrics: Arc<Metrics>,
    ids: IdGenerator,
    queue: RefCell<Option<rtrb::Producer<LogRecord>>>,
    sites: RefCell<HashMap<u64, Rc<SiteSlot>>>,
    /// Counters of connections that failed before a site was selected (`site="-"`).
    unknown_site: Arc<SiteCounters>,
    connection_log: bool,
    access_log: bool,
    log_close: bool,
    connection_id_header: Option<String>,
    last_drop_warning: Cell<Option<Instant>>,
    drops_since_warning: Cell<u64>,
}

/// A connection as telemetry knows it from accept on. Boxed ([`WorkerTelemetry::accepted`]),
/// so that the connection's task holds a pointer.
#[derive(Debug)]
pub struct ConnLog {
    /// Its id.
    pub id: ConnectionId,
    /// When it was accepted.
    pub accepted: Instant,
    /// The client's address.
    pub peer: SocketAddr,
    /// The local address that accepted it.
    pub local: SocketAddr,
    /// Set when the handshake succeeded.
    established: Option<Established>,
    /// Requests seen.
    requests: Cell<u32>,
    /// The stream's byte counts when the previous request ended.
    mark: Cell<(u64, u64)>,
    /// The request in flight.
    current: RefCell<Option<access::RequestStart>>,
}

/// What a connection keeps from its handshake for its requests and its closing record.
#[derive(Debug)]
pub struct Established {
    /// The worker's counters of the connection's site.
    slot: Rc<SiteSlot>,
    /// The client's leaf certificate fields (when a log needs them).
    pub leaf: Option<Arc<LeafFields>>,
    /// What the handshake negotiated.
    pub info: HandshakeInfo,
}

impl WorkerTelemetry {
    /// A new connection: its id (no lock, no syscall) and its boxed log state.
    pub fn accepted(&self, peer: SocketAddr, local: SocketAddr) -> Box<ConnLog> {
        Box::new(ConnLog {
            id: self.ids.next_id(),
            accepted: Instant::now(),
            peer,
            local,
            established: None,
            requests: Cell::new(0),
            mark: Cell::new((0, 0)),
            current: RefCell::new(None),
        })
    }

    /// Counts a connection closed at accept for `reason`.
    pub fn refused(&self, reason: Refused) {
        self.metrics.worker(self.worker).refused[reason as usize].add(1);
    }

    /// The gauge of open connections on this worker.
    pub fn set_active(&self, open: usize) {
        self.metrics.worker(self.worker).active.set(open as u64);
    }

    /// Records whether this worker's listeners accept connections.
    pub fn set_listening(&self, listening: bool) {
        self.metrics
            .worker(self.worker)
            .listening
            .store(listening, std::sync::atomic::Ordering::Release);
    }

    /// This worker's counters of `site` (found once per snapshot).
    pub fn site(&self, site: &SiteTls) -> Rc<SiteSlot> {
        if let Some(slot) = self.sites.borrow().get(&site.id) {
            return Rc::clone(slot);
        }
        let slot = Rc::new(SiteSlot(self.metrics.site(&site.config.name)));
        let mut sites = self.sites.borrow_mut();
        if sites.len() >= 1024 {
            // Sites of old snapshots; their counters live on in the registry.
            sites.clear();
        }
        sites.insert(site.id, Rc::clone(&slot));
        slot
    }

    /// The name of the header that carries the connection id to the origin, if configured.
    pub fn connection_id_header(&self) -> Option<&str> {
        self.connection_id_header.as_deref()
    }

    fn logs_anything(&self) -> bool {
        self.connection_log || self.access_log
    }

    /// Counts and logs the end of a handshake: `failure` is None when it succeeded (then the
    /// connection keeps what its requests and closing record need, and this returns true).
    pub fn handshake_finished<T>(
        &self,
        conn: &mut ConnLog,
        tls: &TlsStream<T>,
        failure: Option<&HandshakeFailure>,
    ) -> bool
    where
        T: AsyncReadRent + AsyncWriteRent,
    {
        let took = conn.accepted.elapsed();
        let site = tls.site();
        let info = failure.is_none().then(|| tls.handshake_info());
        let code = failure.map(HandshakeFailure::code);
        let slot = site.map(|site| self.site(site));
        let counters: &SiteCounters = match &slot {
            Some(slot) => &slot.0,
            None => &self.unknown_site,
        };
        counters
            .worker(self.worker)
            .handshake(code, took, info.is_some_and(|i| i.resumed));
        let record = tls.handshake_record();
        let leaf = match record.and_then(|r| r.leaf()) {
            // Parsed for the connection function's event in this handshake.
            Some(leaf) => Some(Arc::clone(leaf)),
            None if self.logs_anything() => tls.leaf_der().and_then(cached_fields),
            None => None,
        };
        if self.connection_log {
            let record = ConnectionRecord {
                timestamp: SystemTime::now(),
                id: conn.id,
                failure: failure.map(|f| (f.code(), f.to_string().into_boxed_str())),
                client: conn.peer,
                server: conn.local,
                site: site.cloned(),
                tls: info,
                handshake_ms: took.as_secs_f64() * 1e3,
                sni: tls.sni().map(Into::into),
                leaf: leaf.clone(),
                custom_data: record.and_then(|r| r.custom_data()).map(Into::into),
                close: None,
            };
            self.push(LogKind::Connection, LogRecord::Connection(Box::new(record)));
        }
        conn.established = info
            .zip(slot)
            .map(|(info, slot)| Established { slot, leaf, info });
        conn.established.is_some()
    }

    /// Logs a connection that failed after its handshake (e.g. a passthrough leaf that does
    /// not parse): one connection record with `failure`, counted as such.
    pub fn refused_after_handshake<T>(
        &self,
        conn: &mut ConnLog,
        tls: &TlsStream<T>,
        failure: &HandshakeFailure,
    ) where
        T: AsyncReadRent + AsyncWriteRent,
    {
        let _ = self.handshake_finished(conn, tls, Some(failure));
    }

    /// Writes the closing record of a connection (with `log_close`).
    pub fn connection_closed<T>(&self, tls: &TlsStream<T>, conn: &ConnLog)
    where
        T: AsyncReadRent + AsyncWriteRent,
    {
        self.connection_closed_with(tls.site(), tls.sni(), tls.bytes(), conn);
    }

    /// [`Self::connection_closed`] for a connection whose TLS stream moved on (to the HTTP/2
    /// codec): its site, SNI and plaintext byte counts.
    pub fn connection_closed_with(
        &self,
        site: Option<&Arc<SiteTls>>,
        sni: Option<&str>,
        (bytes_in, bytes_out): (u64, u64),
        conn: &ConnLog,
    ) {
        let (true, Some(established)) = (self.log_close, &conn.established) else {
            return;
        };
        let requests = conn.requests.get();
        let record = ConnectionRecord {
            timestamp: SystemTime::now(),
            id: conn.id,
            failure: None,
            client: conn.peer,
            server: conn.local,
            site: site.cloned(),
            tls: Some(established.info),
            handshake_ms: 0.0,
            sni: sni.map(Into::into),
            leaf: established.leaf.clone(),
            custom_data: None,
            close: Some(CloseStats {
                duration_ms: conn.accepted.elapsed().as_secs_f64() * 1e3,
                bytes_in,
                bytes_out,
                requests,
            }),
        };
        self.push(LogKind::Connection, LogRecord::Connection(Box::new(record)));
    }

    /// Hands a record to the writer; drops and counts it when the queue is full.
    pub fn push(&self, kind: LogKind, record: LogRecord) {
        let mut queue = self.queue.borrow_mut();
        let Some(queue) = queue.as_mut() else {
            return;
        };
        if queue.push(record).is_err() {
            self.metrics.worker(self.worker).dropped[kind as usize].add(1);
            self.drops_since_warning
                .set(self.drops_since_warning.get() + 1);
            let now = Instant::now();
            if self
                .last_drop_warning
                .get()
                .is_none_or(|at| now.duration_since(at) >= DROP_WARNING_INTERVAL)
            {
                self.last_drop_warning.set(Some(now));
                tracing::warn!(
                    worker = self.worker,
                    dropped = self.drops_since_warning.replace(0),
                    "log queue full: records dropped (the writer cannot keep up)"
                );
            }
        }
    }
}
