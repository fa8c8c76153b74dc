//! Server CPU per full mTLS handshake with and without a connection function, in memory: the
//! server side is Portcullis's own `TlsSnapshot` (demo PKI, `required`, the demo's settings),
//! the client a BoringSSL client presenting the demo client certificate, both on the bench
//! thread over an in-memory pipe. Only the server's handshake steps are timed, in the thread's
//! CPU time (`CLOCK_THREAD_CPUTIME_ID`), so the ratio is the server's cost: no load generator,
//! no kernel networking, and no time the thread spent descheduled on this shared machine.
//!
//! `with_function`: the announcement's function on a live store of 1,000,000 serials (the
//! client's is not among them: every handshake runs it and is allowed).

use std::cell::RefCell;
use std::io::{self, Read, Write};
use std::rc::Rc;
use std::time::Duration;

use boring::ssl::{ErrorCode, SslConnector, SslFiletype, SslMethod, SslStream};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use portcullis::pki::{DemoPki, CLIENT_CERT_FILE, CLIENT_KEY_FILE, ROOT_CA_FILE};
use portcullis::telemetry::IdGenerator;
use portcullis::tls::TlsSnapshot;
use portcullis_bench::fixture::{demo_snapshot, FUNCTION_MTLS};

const STORE_SIZE: u64 = 1_000_000;

/// One direction of the in-memory pipe.
type Channel = Rc<RefCell<Vec<u8>>>;

/// One end: reads what the other end wrote.
struct End {
    incoming: Channel,
    outgoing: Channel,
}

impl Read for End {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut incoming = self.incoming.borrow_mut();
        if incoming.is_empty() {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let n = incoming.len().min(buf.len());
        buf[..n].copy_from_slice(&incoming[..n]);
        incoming.drain(..n);
        Ok(n)
    }
}

impl Write for End {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.outgoing.borrow_mut().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// CPU time this thread has used.
fn thread_cpu_time() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec into `ts`.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID)");
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// One full handshake; returns the time the server spent in its handshake steps.
fn handshake(server: &TlsSnapshot, client: &SslConnector, ids: &IdGenerator) -> Duration {
    let to_server: Channel = Rc::default();
    let to_client: Channel = Rc::default();
    let peer = ([127, 0, 0, 1], 40000).into();
    let server_ssl = server
        .new_session_for(ids.next_id(), peer)
        .expect("server session");
    let mut s = SslStream::new(
        server_ssl,
        End {
            incoming: Rc::clone(&to_server),
            outgoing: Rc::clone(&to_client),
        },
    )
    .expect("server stream");
    let client_ssl = client
        .configure()
        .expect("client configuration")
        .into_ssl("localhost")
        .expect("client session");
    let mut c = SslStream::new(
        client_ssl,
        End {
            incoming: to_client,
            outgoing: to_server,
        },
    )
    .expect("client stream");
    let mut spent = Duration::ZERO;
    let (mut server_done, mut client_done) = (false, false);
    for _ in 0..16 {
        if !client_done {
            match c.connect() {
                Ok(()) => client_done = true,
                Err(e) if e.code() == ErrorCode::WANT_READ => {}
                Err(e) => panic!("client handshake: {e}"),
            }
        }
        if !server_done {
            let started = thread_cpu_time();
            let step = s.accept();
            spent += thread_cpu_time().saturating_sub(started);
            match step {
                Ok(()) => server_done = true,
                Err(e) if e.code() == ErrorCode::WANT_READ => {}
                Err(e) => panic!("server handshake: {e}"),
            }
        }
        if server_done && client_done {
            return spent;
        }
    }
    panic!("handshake did not finish");
}

fn handshakes(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temp dir");
    let pki = DemoPki::generate(dir.path()).expect("demo PKI");
    let plain = demo_snapshot(dir.path(), "", 0).expect("snapshot");
    let with_function = demo_snapshot(dir.path(), FUNCTION_MTLS, STORE_SIZE).expect("snapshot");
    let mut client = SslConnector::builder(SslMethod::tls()).expect("client context");
    client.set_ca_file(pki.path(ROOT_CA_FILE)).expect("root");
    client
        .set_certificate_chain_file(pki.path(CLIENT_CERT_FILE))
        .expect("client certificate");
    client
        .set_private_key_file(pki.path(CLIENT_KEY_FILE), SslFiletype::PEM)
        .expect("client key");
    let client = client.build();
    let ids = IdGenerator::new([0; 8], 0);
    // Warm both (the function is compiled on this thread on its first call).
    handshake(&plain, &client, &ids);
    handshake(&with_function, &client, &ids);

    let mut group = c.benchmark_group("full_handshake_server_side");
    group.throughput(Throughput::Elements(1));
    for (name, snapshot) in [
        ("without_function", &plain),
        ("with_function", &with_function),
    ] {
        group.bench_function(name, |b| {
            b.iter_custom(|iters| (0..iters).map(|_| handshake(snapshot, &client, &ids)).sum())
        });
    }
    group.finish();
}

criterion_group!(benches, handshakes);
criterion_main!(benches);
