//! Idle keep-alive connections are interruptible on both monoio drivers: io_uring and the
//! epoll fallback (`MONOIO_FORCE_LEGACY_DRIVER=1`, what a host without io_uring gets), whose
//! readiness can be stale after a read. Many connections that made a request and went idle
//! are all closed when their certificate is revoked, and at once on SIGTERM (not at the drain
//! time-out). Between requests a connection first waits with a read posted (the read-ahead
//! window) and then with a readiness poll: a request sent in either phase, or while revocation
//! news cancels the posted read, is answered, never lost.

use std::io::Read;
use std::time::{Duration, Instant};

use portcullis_e2e::{
    admin_call, config_text, origin, read_response, serial_hex, Portcullis, SiteConfig, TestPki,
};

const CONNECTIONS: usize = 40;

/// A required site with a store and the admin API, on `driver` ("uring" or "legacy").
fn start(pki: &TestPki, origin: std::net::SocketAddr, driver: &str) -> Portcullis {
    let store = pki.write("revoked.json", "{\"data\":[]}");
    let mut site = SiteConfig::new(origin, "required", Some(pki.path("bundle.pem")));
    site.mtls_extra = "revocation_store = \"viewers\"\n".into();
    let text = config_text(
        pki,
        &[site],
        &format!(
            "[server.timeouts]\nidle_keepalive = \"120s\"\ndrain = \"60s\"\n[admin]\nlisten = \"127.0.0.1:0\"\n[[revocation_store]]\nname = \"viewers\"\nfile = {store:?}\n"
        ),
    );
    let dir = tempfile::tempdir().expect("dir");
    let config = dir.path().join("portcullis.toml");
    std::fs::write(&config, text).expect("config");
    let legacy = if driver == "legacy" { "1" } else { "0" };
    let server =
        Portcullis::start_file_with_env(&config, dir, &[("MONOIO_FORCE_LEGACY_DRIVER", legacy)]);
    let uses_uring = !server.log().contains("io_uring is not available");
    assert_eq!(uses_uring, driver == "uring", "{}", server.log());
    server
}

/// `CONNECTIONS` connections with `cert`, each after one whole request and response.
fn idle_connections(
    server: &Portcullis,
    pki: &TestPki,
    cert: &std::path::Path,
    key: &std::path::Path,
) -> Vec<boring::ssl::SslStream<std::net::TcpStream>> {
    (0..CONNECTIONS)
        .map(|_| {
            let mut tls =
                server.tls_client("localhost", &pki.path("root.pem"), Some((cert, key)), None);
            std::io::Write::write_all(&mut tls, b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
                .expect("request");
            let response = read_response(&mut tls).expect("response");
            assert_eq!(response.status, 200, "{}", response.head);
            tls
        })
        .collect()
}

/// Waits (at most `limit` in all) until every connection is closed by the server; how many were.
fn closed_within(
    conns: &mut [boring::ssl::SslStream<std::net::TcpStream>],
    limit: Duration,
) -> usize {
    let deadline = Instant::now() + limit;
    let mut closed = 0;
    let mut buf = [0u8; 4096];
    for tls in conns.iter_mut() {
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            tls.get_ref().set_read_timeout(Some(left)).expect("timeout");
            match tls.read(&mut buf) {
                Ok(0) => {
                    closed += 1;
                    break;
                }
                Ok(_) => continue,
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    break
                }
                Err(_) => {
                    closed += 1;
                    break;
                }
            }
        }
    }
    closed
}

fn revoked_idle_connections_are_all_closed(driver: &str) {
    let pki = TestPki::new();
    let origin = origin();
    let server = start(&pki, origin.addr(), driver);
    let client = TestPki::client(&pki.intermediate, "idler");
    let (cert, key) = pki.write_client("idler", &client, &[&pki.intermediate]);
    let mut conns = idle_connections(&server, &pki, &cert, &key);
    let reason = pki.write("reason.txt", "cut");
    let (status, body) = admin_call(
        server.admin.expect("admin"),
        "PUT",
        &format!("/revocations/viewers/{}", serial_hex(&client)),
        Some(&reason),
    );
    assert!((200..300).contains(&status), "{status} {body}");
    let closed = closed_within(&mut conns, Duration::from_secs(10));
    assert_eq!(
        closed, CONNECTIONS,
        "{driver}: {closed} of {CONNECTIONS} idle connections closed"
    );
}

fn sigterm_closes_idle_connections_at_once(driver: &str) {
    let pki = TestPki::new();
    let origin = origin();
    let mut server = start(&pki, origin.addr(), driver);
    let client = TestPki::client(&pki.intermediate, "idler");
    let (cert, key) = pki.write_client("idler", &client, &[&pki.intermediate]);
    let mut conns = idle_connections(&server, &pki, &cert, &key);
    server.terminate();
    // The drain time-out is 60 s: idle connections must not wait for it.
    let closed = closed_within(&mut conns, Duration::from_secs(10));
    assert_eq!(
        closed, CONNECTIONS,
        "{driver}: {closed} of {CONNECTIONS} idle connections closed"
    );
    assert_eq!(server.stop(), Some(0));
}

/// One connection sends requests with pauses inside and beyond the read-ahead window (200 ms)
/// while another thread revokes unrelated serials every 15 ms, each of which interrupts the
/// posted read (cancelled, its answer awaited). Every request must be answered on the same
/// connection.
fn requests_survive_read_ahead_cancellations(driver: &str) {
    let pki = TestPki::new();
    let origin = origin();
    let server = start(&pki, origin.addr(), driver);
    let client = TestPki::client(&pki.intermediate, "steady");
    let (cert, key) = pki.write_client("steady", &client, &[&pki.intermediate]);
    let admin = server.admin.expect("admin");
    let reason = pki.write("reason.txt", "other");
    let stop = std::sync::atomic::AtomicBool::new(false);
    let revocations = std::thread::scope(|scope| {
        let news = scope.spawn(|| {
            let mut n = 0u32;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) && n < 1000 {
                n += 1;
                let (status, body) = admin_call(
                    admin,
                    "PUT",
                    &format!("/revocations/viewers/{:08x}", 0x7000_0000 + n),
                    Some(&reason),
                );
                assert!((200..300).contains(&status), "{status} {body}");
                std::thread::sleep(Duration::from_millis(15));
            }
            n
        });
        let mut tls = server.tls_client(
            "localhost",
            &pki.path("root.pem"),
            Some((&cert, &key)),
            None,
        );
        let pauses = [0u64, 1, 5, 20, 60, 150, 250, 0, 2, 320];
        for (i, pause) in pauses.iter().cycle().take(30).enumerate() {
            std::thread::sleep(Duration::from_millis(*pause));
            std::io::Write::write_all(&mut tls, b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
                .expect("request");
            let response = read_response(&mut tls)
                .unwrap_or_else(|| panic!("{driver}: request {i} after {pause} ms: no response"));
            assert_eq!(
                response.status, 200,
                "{driver}: request {i}: {}",
                response.head
            );
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        news.join().expect("revoking thread")
    });
    assert!(
        revocations > 20,
        "{driver}: only {revocations} revocations ran alongside"
    );
}

#[test]
fn requests_survive_read_ahead_cancellations_on_io_uring() {
    requests_survive_read_ahead_cancellations("uring");
}

#[test]
fn requests_survive_read_ahead_cancellations_on_epoll() {
    requests_survive_read_ahead_cancellations("legacy");
}

#[test]
fn revoked_idle_connections_are_closed_on_io_uring() {
    revoked_idle_connections_are_all_closed("uring");
}

#[test]
fn revoked_idle_connections_are_closed_on_epoll() {
    revoked_idle_connections_are_all_closed("legacy");
}

#[test]
fn sigterm_closes_idle_connections_at_once_on_io_uring() {
    sigterm_closes_idle_connections_at_once("uring");
}

#[test]
fn sigterm_closes_idle_connections_at_once_on_epoll() {
    sigterm_closes_idle_connections_at_once("legacy");
}
