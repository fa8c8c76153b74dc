//! The worker-side cost of one log record: what a worker does per connection or request to
//! log it (fill the record, one push into its queue to the writer thread), and the one-time
//! lookup of the client leaf's fields per connection (SHA-256 of the DER + per-worker map).
//! Formatting and writing happen on the writer thread and are not part of these figures; each
//! sample waits (untimed) until the writer has drained what it pushed, so pushes never meet a
//! full queue.

use std::hint::black_box;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use criterion::{criterion_group, criterion_main, Criterion};
use portcullis::demo::demo_config;
use portcullis::pki::DemoPki;
use portcullis::revocation::{RevocationState, RevocationView};
use portcullis::telemetry::record::RequestLine;
use portcullis::telemetry::{
    AccessRecord, ConnectionRecord, LeafCache, LogKind, LogRecord, Telemetry, WorkerTelemetry,
};
use portcullis::tls::{HandshakeInfo, TlsSnapshot};
use portcullis_config::{
    LogDestination, LogFormat, LogStream, ACCESS_LOG_FIELDS, CONNECTION_LOG_FIELDS,
};

fn stream(fields: usize) -> LogStream {
    LogStream {
        format: LogFormat::Json,
        destination: LogDestination::File("/dev/null".into()),
        fields: (0..fields).collect(),
        delimiter: "\t".into(),
        rotate_bytes: None,
        rotate_keep: 1,
        log_close: false,
    }
}

/// Runs `iters` pushes made by `push`, then waits (untimed) until the writer wrote them.
fn timed_pushes(
    telemetry: &Telemetry,
    kind: LogKind,
    iters: u64,
    mut push: impl FnMut(),
) -> Duration {
    let before = telemetry.metrics.written[kind as usize].get();
    let started = Instant::now();
    for _ in 0..iters {
        push();
    }
    let took = started.elapsed();
    let deadline = Instant::now() + Duration::from_secs(60);
    while telemetry.metrics.written[kind as usize].get() < before + iters
        && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(1));
    }
    took
}

fn log_record(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temp dir");
    let pki = DemoPki::generate(dir.path()).expect("demo PKI");
    let unused: SocketAddr = ([127, 0, 0, 1], 9).into();
    let path = dir.path().join("portcullis.toml");
    std::fs::write(&path, demo_config(unused, unused, 1)).expect("config");
    let mut config = portcullis_config::load(&path).expect("load");
    config.logs.queue_capacity = 1 << 22;
    config.logs.connection = Some(stream(CONNECTION_LOG_FIELDS.len()));
    config.logs.access = Some(stream(ACCESS_LOG_FIELDS.len()));
    let config = Arc::new(config);
    let revocation = RevocationState::new();
    let view = Arc::new(RevocationView::stage(&config).expect("revocation view"));
    let tls = TlsSnapshot::build(Arc::clone(&config), &revocation, view).expect("TLS");
    let site = Arc::clone(&tls.sites()[0]);
    let telemetry = Telemetry::start(&config).expect("telemetry");
    let worker: WorkerTelemetry = telemetry.for_worker(0);
    let leaves = LeafCache::default();
    let leaf_der = pki.client.cert_der.clone();
    let leaf = leaves.fields(&leaf_der).expect("leaf fields");
    let peer: SocketAddr = ([192, 0, 2, 7], 50123).into();
    let local: SocketAddr = ([127, 0, 0, 1], 8443).into();
    let info = HandshakeInfo {
        version: "TLSv1.3",
        cipher: Some("TLS_AES_128_GCM_SHA256"),
        alpn: Some("http/1.1"),
        resumed: false,
    };

    let mut group = c.benchmark_group("log_record");
    group.bench_function("connection_record_push", |b| {
        b.iter_custom(|iters| {
            timed_pushes(&telemetry, LogKind::Connection, iters, || {
                let conn = worker.accepted(peer, local);
                let record = ConnectionRecord {
                    timestamp: SystemTime::now(),
                    id: conn.id,
                    failure: None,
                    client: conn.peer,
                    server: conn.local,
                    site: Some(Arc::clone(&site)),
                    tls: Some(info),
                    handshake_ms: conn.accepted.elapsed().as_secs_f64() * 1e3,
                    sni: Some("shop.example.com".into()),
                    leaf: Some(Arc::clone(&leaf)),
                    custom_data: None,
                    close: None,
                };
                worker.push(
                    LogKind::Connection,
                    LogRecord::Connection(Box::new(black_box(record))),
                );
            })
        })
    });
    group.bench_function("access_record_push", |b| {
        let conn = worker.accepted(peer, local);
        b.iter_custom(|iters| {
            timed_pushes(&telemetry, LogKind::Access, iters, || {
                let started = Instant::now();
                let record = AccessRecord {
                    timestamp: SystemTime::now(),
                    id: conn.id,
                    seq: 1,
                    client: conn.peer.ip(),
                    request: Some(RequestLine::new(
                        b"GET",
                        Some(b"shop.example.com"),
                        b"/products/42?ref=home",
                    )),
                    protocol: "HTTP/1.1",
                    status: 200,
                    bytes_in: 312,
                    bytes_out: 5120,
                    duration_ms: started.elapsed().as_secs_f64() * 1e3,
                    origin: Some(unused),
                    origin_ms: Some(0.4),
                    leaf: Some(Arc::clone(&leaf)),
                    site: Arc::clone(&site),
                };
                worker.push(
                    LogKind::Access,
                    LogRecord::Access(Box::new(black_box(record))),
                );
            })
        })
    });
    group.bench_function("leaf_fields_cached", |b| {
        b.iter(|| black_box(leaves.fields(black_box(&leaf_der))))
    });
    group.finish();
    let dropped: u64 = telemetry
        .metrics
        .worker(0)
        .dropped
        .iter()
        .map(|d| d.get())
        .sum();
    println!("records dropped during the benchmark: {dropped}");
    telemetry.stop();
}

criterion_group!(benches, log_record);
criterion_main!(benches);
