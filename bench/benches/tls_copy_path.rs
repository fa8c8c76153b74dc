//! The TLS adapter's data path: a real TLS 1.3 connection over 127.0.0.1 TCP, accepted with
//! Portcullis's own server context (`TlsSnapshot`, mTLS `required`, demo PKI) and driven by
//! `portcullis::tls::TlsStream` on a monoio runtime (the worker's driver) on the bench thread;
//! the peer is a BoringSSL `SslStream` client on its own thread presenting the demo client
//! certificate.
//!
//! `write_64KiB`: the server encrypts and sends 64 KiB writes (`TlsStream::write_all`) that the
//! client reads and discards (a response body towards the viewer). `read_into_64KiB`: the
//! client sends 64 KiB writes and the server decrypts them (`TlsStream::read`) into a 64 KiB
//! buffer (a request body from the viewer). Each timed batch ends when the last byte has
//! reached the other side, so figures include both ends' crypto (and share the machine's
//! cores).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use boring::ssl::{SslConnector, SslFiletype, SslMethod, SslStream, SslVerifyMode};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use monoio::net::TcpStream;
use portcullis::demo::demo_config;
use portcullis::pki::{DemoPki, CLIENT_CERT_FILE, CLIENT_KEY_FILE, ROOT_CA_FILE};
use portcullis::revocation::{RevocationState, RevocationView};
use portcullis::tls::{TlsSnapshot, TlsStream};

/// Size of each application write (and of the server's read buffer).
const WRITE_SIZE: usize = 64 * 1024;

/// What the client thread does next.
enum Job {
    /// Read and discard this many bytes, then report.
    Drain(u64),
    /// Send this many bytes in `WRITE_SIZE` writes, then report.
    Send(u64),
}

/// The BoringSSL client on its own thread.
struct Peer {
    jobs: mpsc::Sender<Job>,
    done: mpsc::Receiver<()>,
    thread: JoinHandle<()>,
}

impl Peer {
    /// Connects to `addr` with the demo client certificate and serves jobs until the sender is
    /// dropped.
    fn start(addr: SocketAddr, pki: &DemoPki) -> Self {
        let mut connector = SslConnector::builder(SslMethod::tls()).expect("client context");
        connector
            .set_ca_file(pki.path(ROOT_CA_FILE))
            .expect("trust the demo root");
        connector
            .set_certificate_chain_file(pki.path(CLIENT_CERT_FILE))
            .expect("client certificate");
        connector
            .set_private_key_file(pki.path(CLIENT_KEY_FILE), SslFiletype::PEM)
            .expect("client key");
        connector.set_verify(SslVerifyMode::PEER);
        let connector = connector.build();
        let (jobs, job_rx) = mpsc::channel::<Job>();
        let (done_tx, done) = mpsc::channel();
        let thread = std::thread::spawn(move || {
            let tcp = std::net::TcpStream::connect(addr).expect("connect");
            tcp.set_nodelay(true).expect("TCP_NODELAY");
            tcp.set_read_timeout(Some(Duration::from_secs(60)))
                .expect("read timeout");
            let mut tls: SslStream<std::net::TcpStream> = connector
                .connect("localhost", tcp)
                .expect("client handshake");
            let mut buf = vec![0u8; WRITE_SIZE];
            let payload: Vec<u8> = (0..WRITE_SIZE).map(|i| (i % 251) as u8).collect();
            while let Ok(job) = job_rx.recv() {
                match job {
                    Job::Drain(mut left) => {
                        while left > 0 {
                            let n = tls.read(&mut buf).expect("client read");
                            assert!(n > 0, "server closed early");
                            left -= n as u64;
                        }
                    }
                    Job::Send(mut left) => {
                        while left > 0 {
                            let n = usize::try_from(left).map_or(WRITE_SIZE, |l| l.min(WRITE_SIZE));
                            tls.write_all(&payload[..n]).expect("client write");
                            left -= n as u64;
                        }
                    }
                }
                if done_tx.send(()).is_err() {
                    break;
                }
            }
        });
        Peer { jobs, done, thread }
    }

    fn submit(&self, job: Job) {
        self.jobs.send(job).expect("client thread alive");
    }

    fn wait(&self) {
        self.done.recv().expect("client thread finished its job");
    }
}

/// The demo PKI and a one-site `required` configuration in `dir`, as a TLS snapshot.
fn server_snapshot(dir: &std::path::Path) -> (DemoPki, TlsSnapshot) {
    let pki = DemoPki::generate(dir).expect("demo PKI");
    let config_path = dir.join("portcullis.toml");
    let unused: std::net::SocketAddr = ([127, 0, 0, 1], 9).into();
    std::fs::write(&config_path, demo_config(unused, unused, 1)).expect("write configuration");
    let config = portcullis_config::load(&config_path).expect("configuration loads");
    let revocation = RevocationState::new();
    let view = Arc::new(RevocationView::stage(&config).expect("revocation view"));
    let snapshot = TlsSnapshot::build(Arc::new(config), &revocation, view).expect("TLS snapshot");
    (pki, snapshot)
}

fn tls_copy_path(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temp dir");
    let (pki, snapshot) = server_snapshot(dir.path());
    println!(
        "monoio driver: {}",
        if monoio::utils::detect_uring() {
            "io_uring"
        } else {
            "epoll (legacy)"
        }
    );
    let mut rt = monoio::RuntimeBuilder::<monoio::FusionDriver>::new()
        .enable_timer()
        .build()
        .expect("monoio runtime");
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("listen address");
    let peer = Peer::start(addr, &pki);
    let mut tls = rt.block_on(async {
        let listener = monoio::net::TcpListener::from_std(listener).expect("monoio listener");
        let (tcp, _): (TcpStream, _) = listener.accept().await.expect("accept");
        tcp.set_nodelay(true).expect("TCP_NODELAY");
        let ssl = snapshot.new_session().expect("server session");
        let mut tls = TlsStream::new(ssl, tcp).expect("TLS stream");
        tls.accept().await.expect("server handshake");
        tls
    });
    let info = tls.handshake_info();
    println!("negotiated {} {}", info.version, info.cipher.unwrap_or("?"));
    assert!(
        tls.leaf_der().is_some(),
        "the client presented its certificate"
    );

    let payload: Vec<u8> = (0..WRITE_SIZE).map(|i| (i * 7 % 253) as u8).collect();
    let mut buf = vec![0u8; WRITE_SIZE];

    let mut group = c.benchmark_group("tls_copy_path");
    group.throughput(Throughput::Bytes(WRITE_SIZE as u64));
    group.bench_function("write_64KiB", |b| {
        b.iter_custom(|iters| {
            peer.submit(Job::Drain(iters * WRITE_SIZE as u64));
            let started = Instant::now();
            rt.block_on(async {
                for _ in 0..iters {
                    tls.write_all(&payload).await.expect("server write");
                }
            });
            peer.wait();
            started.elapsed()
        })
    });
    group.bench_function("read_into_64KiB", |b| {
        b.iter_custom(|iters| {
            let total = iters * WRITE_SIZE as u64;
            peer.submit(Job::Send(total));
            let started = Instant::now();
            rt.block_on(async {
                let mut received = 0u64;
                while received < total {
                    let n = tls.read(&mut buf).await.expect("server read");
                    assert!(n > 0, "client closed early");
                    received += n as u64;
                }
            });
            let elapsed = started.elapsed();
            peer.wait();
            elapsed
        })
    });
    group.finish();

    let Peer { jobs, done, thread } = peer;
    drop(jobs);
    drop(done);
    thread.join().expect("client thread");
    drop(tls);
}

criterion_group!(benches, tls_copy_path);
criterion_main!(benches);
