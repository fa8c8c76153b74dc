//! Prometheus metrics: per-worker counters, summed when `/metrics` is scraped.
//!
//! Every counter has one writer, the worker thread it belongs to: an update is a relaxed load
//! and store of a value in that worker's own cache-line-aligned block (a plain `mov` on x86),
//! never a read-modify-write on a line another thread writes. The scrape (on the admin
//! thread) reads every worker's block with relaxed loads and sums them, then encodes the text
//! exposition format with `prometheus-client`. Sites are counted by name, so their series
//! survive reloads; a worker finds a site's block once per snapshot and caches it.

use std::cell::RefCell;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use crate::tls::FailureCode;

/// Upper bounds (seconds) of the latency histograms' buckets (+Inf is implied).
pub const LATENCY_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// The two logs, for per-log counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogKind {
    /// The connection log.
    Connection = 0,
    /// The access log.
    Access = 1,
}

impl LogKind {
    fn label(self) -> &'static str {
        match self {
            Self::Connection => "connection",
            Self::Access => "access",
        }
    }
}

/// A counter written by one thread only (see the module documentation).
#[derive(Debug, Default)]
pub struct LocalCounter(AtomicU64);

impl LocalCounter {
    /// Adds `n` (the owning thread only).
    #[inline]
    pub fn add(&self, n: u64) {
        self.0.store(
            self.0.load(Ordering::Relaxed).wrapping_add(n),
            Ordering::Relaxed,
        );
    }

    /// Sets the value (for gauges; the owning thread only).
    #[inline]
    pub fn set(&self, n: u64) {
        self.0.store(n, Ordering::Relaxed);
    }

    /// The current value (any thread).
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A latency histogram written by one thread.
#[derive(Debug, Default)]
pub struct LocalHistogram {
    buckets: [LocalCounter; LATENCY_BUCKETS.len() + 1],
    sum_nanos: LocalCounter,
}

impl LocalHistogram {
    /// Records one observation (the owning thread only).
    #[inline]
    pub fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        let slot = LATENCY_BUCKETS
            .iter()
            .position(|&bound| secs <= bound)
            .unwrap_or(LATENCY_BUCKETS.len());
        self.buckets[slot].add(1);
        self.sum_nanos
            .add(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
    }

    fn add_to(&self, sum: &mut Summed) {
        for (total, bucket) in sum.buckets.iter_mut().zip(&self.buckets) {
            *total += bucket.get();
        }
        sum.sum_nanos += self.sum_nanos.get();
    }
}

/// A histogram summed over workers.
#[derive(Debug, Default)]
struct Summed {
    buckets: [u64; LATENCY_BUCKETS.len() + 1],
    sum_nanos: u64,
}

impl Summed {
    fn count(&self) -> u64 {
        self.buckets.iter().sum()
    }

    fn encode_buckets(&self) -> Vec<(f64, u64)> {
        LATENCY_BUCKETS
            .iter()
            .copied()
            .chain(std::iter::once(f64::MAX))
            .zip(self.buckets)
            .collect()
    }
}

/// One site's counters on one worker.
#[derive(Debug, Default)]
#[repr(align(128))]
pub struct SiteWorkerBlock {
    /// Handshakes by status: 0 is `Success`, then [`FailureCode::index`] + 1.
    handshakes: [LocalCounter; FailureCode::ALL.len() + 1],
    resumed: LocalCounter,
    handshake_time: LocalHistogram,
    /// Requests by status class 1xx..5xx.
    requests: [LocalCounter; 5],
    request_time: LocalHistogram,
    origin_time: LocalHistogram,
}

impl SiteWorkerBlock {
    /// Counts a finished handshake attempt (`None`: success).
    pub fn handshake(&self, failure: Option<FailureCode>, took: Duration, resumed: bool) {
        let slot = failure.map_or(0, |code| code.index() + 1);
        self.handshakes[slot].add(1);
        self.handshake_time.observe(took);
        if resumed {
            self.resumed.add(1);
        }
    }

    /// Counts a request answered with `status`, its time and its origin time.
    pub fn request(&self, status: u16, took: Duration, origin: Option<Duration>) {
        let class = usize::from(status / 100).clamp(1, 5) - 1;
        self.requests[class].add(1);
        self.request_time.observe(took);
        if let Some(origin) = origin {
            self.origin_time.observe(origin);
        }
    }
}

/// One site's counters, a block per worker.
#[derive(Debug)]
pub struct SiteCounters {
    name: String,
    blocks: Box<[SiteWorkerBlock]>,
}

impl SiteCounters {
    /// The block of `worker`.
    pub fn worker(&self, worker: usize) -> &SiteWorkerBlock {
        &self.blocks[worker % self.blocks.len()]
    }
}

/// One worker's counters that belong to no site.
#[derive(Debug, Default)]
#[repr(align(128))]
pub struct WorkerBlock {
    /// Connections open on the worker (a gauge).
    pub active: LocalCounter,
    /// Whether the worker's listeners accept connections.
    pub listening: AtomicBool,
    /// Revocation verdicts served from a cache.
    pub revocation_hits: LocalCounter,
    /// Revocation verdicts computed.
    pub revocation_misses: LocalCounter,
    /// Log records dropped because the worker's queue was full, by log.
    pub dropped: [LocalCounter; 2],
    /// Connections closed at accept, by [`Refused`] reason.
    pub refused: [LocalCounter; 2],
    /// HTTP/2 streams refused and connections ended for abuse, by [`Http2Refusal`] reason.
    pub http2_refusals: [LocalCounter; Http2Refusal::ALL.len()],
    /// Requests answered 503 because the worker had `max_requests_in_flight_per_worker` in
    /// flight.
    pub over_in_flight_limit: LocalCounter,
}

/// Why the HTTP/2 layer refused a stream or ended a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Http2Refusal {
    /// A stream over `max_concurrent_streams`, reset with REFUSED_STREAM by the codec.
    RefusedStream = 0,
    /// A header list over `max_header_list_size`, answered 431 by the codec.
    HeaderListTooLarge = 1,
    /// A PING, SETTINGS, PRIORITY, RST_STREAM or empty-DATA flood (GOAWAY ENHANCE_YOUR_CALM).
    ControlFlood = 2,
    /// Streams reset as fast as they were opened (CVE-2023-44487; GOAWAY ENHANCE_YOUR_CALM).
    RapidReset = 3,
    /// A connection the codec ended with GOAWAY for the viewer's protocol error (HPACK bomb,
    /// CONTINUATION flood, malformed frames).
    ProtocolError = 4,
    /// A stream whose request body or response window stalled for `stream_idle_timeout`
    /// (408 or RST_STREAM CANCEL).
    StreamTimeout = 5,
}

impl Http2Refusal {
    /// Every reason, in label order.
    pub const ALL: [Self; 6] = [
        Self::RefusedStream,
        Self::HeaderListTooLarge,
        Self::ControlFlood,
        Self::RapidReset,
        Self::ProtocolError,
        Self::StreamTimeout,
    ];

    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            Self::RefusedStream => "refused_stream",
            Self::HeaderListTooLarge => "header_list_too_large",
            Self::ControlFlood => "control_flood",
            Self::RapidReset => "rapid_reset",
            Self::ProtocolError => "protocol_error",
            Self::StreamTimeout => "stream_timeout",
        }
    }
}

/// One worker's HTTP/2 refusal counters, as its connections hold them (written by that
/// worker's thread only).
#[derive(Debug, Clone)]
pub struct Http2Refusals {
    metrics: Arc<Metrics>,
    worker: usize,
}

impl Http2Refusals {
    /// The counters of `worker`.
    pub fn new(metrics: Arc<Metrics>, worker: usize) -> Self {
        Self { metrics, worker }
    }

    /// Counts one refusal.
    pub fn count(&self, reason: Http2Refusal) {
        self.metrics.worker(self.worker).http2_refusals[reason as usize].add(1);
    }
}

/// Why a connection was closed as soon as it was accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// The worker holds `max_connections_per_worker` connections.
    WorkerLimit = 0,
    /// The client address holds `max_connections_per_client_ip` connections.
    ClientIpLimit = 1,
}

impl Refused {
    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            Self::WorkerLimit => "worker_limit",
            Self::ClientIpLimit => "client_ip_limit",
        }
    }
}

/// Every metric of the process.
#[derive(Debug)]
pub struct Metrics {
    workers: Box<[WorkerBlock]>,
    sites: Mutex<Vec<Arc<SiteCounters>>>,
    /// Records written by the log writer, by log (written by the writer thread).
    pub written: [LocalCounter; 2],
    /// Failed writes of the log writer.
    pub write_errors: LocalCounter,
    reloads_ok: AtomicU64,
    reloads_failed: AtomicU64,
    generation: AtomicU64,
    draining: AtomicBool,
}

impl Metrics {
    /// Metrics for `workers` workers.
    pub fn new(workers: usize) -> Arc<Self> {
        Arc::new(Self {
            workers: (0..workers.max(1))
                .map(|_| WorkerBlock::default())
                .collect(),
            sites: Mutex::new(Vec::new()),
            written: Default::default(),
            write_errors: LocalCounter::default(),
            reloads_ok: AtomicU64::new(0),
            reloads_failed: AtomicU64::new(0),
            generation: AtomicU64::new(1),
            draining: AtomicBool::new(false),
        })
    }

    /// The block of `worker`.
    pub fn worker(&self, worker: usize) -> &WorkerBlock {
        &self.workers[worker % self.workers.len()]
    }

    /// The counters of the site called `name` (created on first use; not on the hot path:
    /// workers cache the result per snapshot).
    pub fn site(&self, name: &str) -> Arc<SiteCounters> {
        let mut sites = self.sites.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(site) = sites.iter().find(|s| s.name == name) {
            return Arc::clone(site);
        }
        let site = Arc::new(SiteCounters {
            name: name.to_owned(),
            blocks: (0..self.workers.len())
                .map(|_| SiteWorkerBlock::default())
                .collect(),
        });
        sites.push(Arc::clone(&site));
        site
    }

    /// Counts a reload; a successful one starts a new configuration generation.
    pub fn reloaded(&self, ok: bool) {
        if ok {
            self.reloads_ok.fetch_add(1, Ordering::Relaxed);
            self.generation.fetch_add(1, Ordering::Relaxed);
        } else {
            self.reloads_failed.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The configuration generation (1 at start, +1 per successful reload).
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Relaxed)
    }

    /// Marks the process as draining (readiness turns false for good).
    pub fn set_draining(&self) {
        self.draining.store(true, Ordering::Release);
    }

    /// Whether every worker listens and the process is not draining; otherwise why not.
    pub fn readiness(&self) -> Result<(), &'static str> {
        if self.draining.load(Ordering::Acquire) {
            return Err("draining");
        }
        if self
            .workers
            .iter()
            .any(|w| !w.listening.load(Ordering::Acquire))
        {
            return Err("not every worker is listening");
        }
        Ok(())
    }

    /// Number of workers.
    pub fn workers(&self) -> usize {
        self.workers.len()
    }

    /// The Prometheus text exposition of every metric.
    pub fn encode(self: &Arc<Self>) -> String {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(Scrape(Arc::clone(self))));
        let mut text = String::new();
        // Writing to a String cannot fail; a failure of a collector is a bug.
        if prometheus_client::encoding::text::encode(&mut text, &registry).is_err() {
            tracing::error!("encoding metrics failed");
        }
        text
    }
}

thread_local! {
    /// The metrics block of the worker running on this thread (none on other threads).
    static CURRENT: RefCell<Option<(Arc<Metrics>, usize)>> = const { RefCell::new(None) };
}

/// Makes this thread count as `worker` for counters updated deep inside libraries' callbacks
/// (revocation cache lookups).
pub fn register_worker_thread(metrics: Arc<Metrics>, worker: usize) {
    CURRENT.with(|current| *current.borrow_mut() = Some((metrics, worker)));
}

/// Counts a revocation verdict lookup on this thread's worker: from a cache (`hit`) or
/// computed.
pub fn revocation_lookup(hit: bool) {
    CURRENT.with(|current| {
        if let Some((metrics, worker)) = &*current.borrow() {
            let block = metrics.worker(*worker);
            if hit {
                block.revocation_hits.add(1);
            } else {
                block.revocation_misses.add(1);
            }
        }
    });
}

/// The collector the registry calls at scrape time.
#[derive(Debug)]
struct Scrape(Arc<Metrics>);

/// Encodes one counter family with label sets.
fn counters<'a>(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    series: impl IntoIterator<Item = (Vec<(&'a str, String)>, u64)>,
) -> fmt::Result {
    let mut metric = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (labels, value) in series {
        ConstCounter::new(value).encode(metric.encode_family(&labels)?)?;
    }
    Ok(())
}

/// Encodes one histogram family, one series per site.
fn histograms(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    series: &[(String, Summed)],
) -> fmt::Result {
    let mut metric = encoder.encode_descriptor(name, help, None, MetricType::Histogram)?;
    for (site, summed) in series {
        let labels = vec![("site", site.clone())];
        metric
            .encode_family(&labels)?
            .encode_histogram::<NoLabelSet>(
                summed.sum_nanos as f64 / 1e9,
                summed.count(),
                &summed.encode_buckets(),
                None,
            )?;
    }
    Ok(())
}

impl Collector for Scrape {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> fmt::Result {
        let m = &self.0;
        let sites: Vec<Arc<SiteCounters>> = m
            .sites
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();

        let mut handshakes = Vec::new();
        let mut resumed = Vec::new();
        let mut requests = Vec::new();
        let (mut handshake_time, mut request_time, mut origin_time) =
            (Vec::new(), Vec::new(), Vec::new());
        for site in &sites {
            let mut by_status = [0u64; FailureCode::ALL.len() + 1];
            let mut by_class = [0u64; 5];
            let mut resumed_total = 0;
            let (mut h, mut r, mut o) = (Summed::default(), Summed::default(), Summed::default());
            for block in site.blocks.iter() {
                for (total, counter) in by_status.iter_mut().zip(&block.handshakes) {
                    *total += counter.get();
                }
                for (total, counter) in by_class.iter_mut().zip(&block.requests) {
                    *total += counter.get();
                }
                resumed_total += block.resumed.get();
                block.handshake_time.add_to(&mut h);
                block.request_time.add_to(&mut r);
                block.origin_time.add_to(&mut o);
            }
            for (slot, &count) in by_status.iter().enumerate() {
                if count == 0 {
                    continue;
                }
                let status = match slot {
                    0 => "Success",
                    n => FailureCode::ALL[n - 1].status(),
                };
                handshakes.push((
                    vec![("site", site.name.clone()), ("status", status.to_owned())],
                    count,
                ));
            }
            resumed.push((vec![("site", site.name.clone())], resumed_total));
            for (class, &count) in by_class.iter().enumerate() {
                if count > 0 {
                    requests.push((
                        vec![
                            ("site", site.name.clone()),
                            ("code", format!("{}xx", class + 1)),
                        ],
                        count,
                    ));
                }
            }
            handshake_time.push((site.name.clone(), h));
            request_time.push((site.name.clone(), r));
            origin_time.push((site.name.clone(), o));
        }
        counters(
            &mut encoder,
            "portcullis_handshakes",
            "TLS connection attempts by site and connectionStatus",
            handshakes,
        )?;
        histograms(
            &mut encoder,
            "portcullis_handshake_duration_seconds",
            "Time from accept to the end of the TLS handshake",
            &handshake_time,
        )?;
        counters(
            &mut encoder,
            "portcullis_handshakes_resumed",
            "Handshakes that resumed a session",
            resumed,
        )?;
        counters(
            &mut encoder,
            "portcullis_requests",
            "HTTP requests by site and status class",
            requests,
        )?;
        histograms(
            &mut encoder,
            "portcullis_request_duration_seconds",
            "Time from a request head to the end of its response",
            &request_time,
        )?;
        histograms(
            &mut encoder,
            "portcullis_origin_duration_seconds",
            "Time from connecting to the origin to its response head",
            &origin_time,
        )?;

        let mut active = encoder.encode_descriptor(
            "portcullis_active_connections",
            "Connections open, per worker",
            None,
            MetricType::Gauge,
        )?;
        for (i, block) in m.workers.iter().enumerate() {
            let labels = vec![("worker", i.to_string())];
            ConstGauge::new(block.active.get() as i64).encode(active.encode_family(&labels)?)?;
        }
        let sum = |get: fn(&WorkerBlock) -> u64| m.workers.iter().map(get).sum::<u64>();
        ConstCounter::new(sum(|w| w.revocation_hits.get())).encode(encoder.encode_descriptor(
            "portcullis_revocation_cache_hits",
            "Revocation verdicts served from the cache",
            None,
            MetricType::Counter,
        )?)?;
        ConstCounter::new(sum(|w| w.revocation_misses.get())).encode(
            encoder.encode_descriptor(
                "portcullis_revocation_cache_misses",
                "Revocation verdicts computed (not cached)",
                None,
                MetricType::Counter,
            )?,
        )?;
        counters(
            &mut encoder,
            "portcullis_reloads",
            "Configuration reloads by result",
            [
                (
                    vec![("result", "success".to_owned())],
                    m.reloads_ok.load(Ordering::Relaxed),
                ),
                (
                    vec![("result", "failure".to_owned())],
                    m.reloads_failed.load(Ordering::Relaxed),
                ),
            ],
        )?;
        ConstGauge::new(m.generation() as i64).encode(encoder.encode_descriptor(
            "portcullis_config_generation",
            "Configuration generation: 1 at start, +1 per successful reload",
            None,
            MetricType::Gauge,
        )?)?;
        let kinds = [LogKind::Connection, LogKind::Access];
        counters(
            &mut encoder,
            "portcullis_log_records_dropped",
            "Log records dropped because a worker's queue to the writer was full",
            kinds.iter().map(|&k| {
                let dropped = m.workers.iter().map(|w| w.dropped[k as usize].get()).sum();
                (vec![("log", k.label().to_owned())], dropped)
            }),
        )?;
        counters(
            &mut encoder,
            "portcullis_connections_refused",
            "Connections closed as soon as they were accepted, by the limit they met",
            [Refused::WorkerLimit, Refused::ClientIpLimit]
                .iter()
                .map(|&r| {
                    let refused = m.workers.iter().map(|w| w.refused[r as usize].get()).sum();
                    (vec![("reason", r.label().to_owned())], refused)
                }),
        )?;
        counters(
            &mut encoder,
            "portcullis_http2_refusals",
            "HTTP/2 streams refused and connections ended for abuse, by reason",
            Http2Refusal::ALL.iter().map(|&r| {
                let n = m
                    .workers
                    .iter()
                    .map(|w| w.http2_refusals[r as usize].get())
                    .sum();
                (vec![("reason", r.label().to_owned())], n)
            }),
        )?;
        counters(
            &mut encoder,
            "portcullis_requests_refused",
            "Requests answered 503 without reaching an origin, by the limit they met",
            std::iter::once((
                vec![("reason", "in_flight_limit".to_owned())],
                m.workers.iter().map(|w| w.over_in_flight_limit.get()).sum(),
            )),
        )?;
        counters(
            &mut encoder,
            "portcullis_log_records_written",
            "Log records written by the writer thread",
            kinds.iter().map(|&k| {
                (
                    vec![("log", k.label().to_owned())],
                    m.written[k as usize].get(),
                )
            }),
        )?;
        ConstCounter::new(m.write_errors.get()).encode(encoder.encode_descriptor(
            "portcullis_log_write_errors",
            "Failed writes of log records",
            None,
            MetricType::Counter,
        )?)?;
        ConstGauge::new(i64::from(m.readiness().is_ok())).encode(encoder.encode_descriptor(
            "portcullis_ready",
            "1 when every worker listens and the process is not draining",
            None,
            MetricType::Gauge,
        )?)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_worker_counters_sum_at_scrape() {
        let metrics = Metrics::new(2);
        let site = metrics.site("main");
        assert!(Arc::ptr_eq(&site, &metrics.site("main")));
        site.worker(0)
            .handshake(None, Duration::from_millis(2), false);
        site.worker(1)
            .handshake(None, Duration::from_millis(3), true);
        site.worker(1).handshake(
            Some(FailureCode::ClientCertExpired),
            Duration::from_millis(1),
            false,
        );
        site.worker(0).request(
            204,
            Duration::from_millis(1),
            Some(Duration::from_micros(500)),
        );
        metrics.worker(1).dropped[LogKind::Access as usize].add(3);
        metrics.reloaded(true);
        let text = metrics.encode();
        for line in [
            "portcullis_handshakes_total{site=\"main\",status=\"Success\"} 2",
            "portcullis_handshakes_total{site=\"main\",status=\"Failed:ClientCertExpired\"} 1",
            "portcullis_handshakes_resumed_total{site=\"main\"} 1",
            "portcullis_handshake_duration_seconds_count{site=\"main\"} 3",
            "portcullis_requests_total{site=\"main\",code=\"2xx\"} 1",
            "portcullis_log_records_dropped_total{log=\"access\"} 3",
            "portcullis_config_generation 2",
            "portcullis_reloads_total{result=\"success\"} 1",
        ] {
            assert!(text.contains(line), "missing {line:?} in\n{text}");
        }
    }
}
