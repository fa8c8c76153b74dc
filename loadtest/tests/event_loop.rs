//! The keep-alive and rate modes' event loop against small in-process TLS servers on
//! 127.0.0.1 that misbehave in known ways: they close connections (cleanly or not), split
//! responses over several TLS records, answer with an error status, or never answer. Every
//! outcome is counted by its number, not by timing.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::time::Duration;

use boring::pkey::PKey;
use boring::ssl::{SslAcceptor, SslMethod, SslStream, SslVerifyMode, SslVersion};
use boring::x509::X509;
use portcullis_loadtest::{run, Config, Mode, Summary};

/// How the test server treats a connection.
#[derive(Debug, Clone, Copy)]
enum Behavior {
    /// Answers every request; the `n`-th response on a connection says `Connection: close`
    /// and the server closes after it.
    CloseAfter(usize),
    /// Answers `n` requests, then closes without a word (the next request fails).
    DropAfter(usize),
    /// Answers every request, writing each response as three TLS records split inside the
    /// head and the chunked body.
    Split,
    /// Answers every request with `503`.
    Unavailable,
    /// Completes the handshake and never answers.
    Silent,
}

/// Starts a server for `localhost` (self-signed, no client certificate asked) that treats
/// every connection as `behavior`, one thread per connection; the threads end with their
/// connections or with the test process.
fn server(behavior: Behavior) -> SocketAddr {
    let key = rcgen::KeyPair::generate().expect("key");
    let cert = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
        .expect("params")
        .self_signed(&key)
        .expect("cert");
    let mut acceptor = SslAcceptor::mozilla_intermediate_v5(SslMethod::tls()).expect("acceptor");
    acceptor
        .set_certificate(&X509::from_der(cert.der()).expect("x509"))
        .expect("cert");
    acceptor
        .set_private_key(&PKey::private_key_from_pem(key.serialize_pem().as_bytes()).expect("pkey"))
        .expect("key");
    acceptor
        .set_min_proto_version(Some(SslVersion::TLS1_3))
        .expect("min");
    acceptor.set_verify(SslVerifyMode::NONE);
    let acceptor = acceptor.build();
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    std::thread::spawn(move || {
        for tcp in listener.incoming() {
            let Ok(tcp) = tcp else { return };
            let acceptor = acceptor.clone();
            std::thread::spawn(move || {
                let _ = tcp.set_read_timeout(Some(Duration::from_secs(10)));
                if let Ok(tls) = acceptor.accept(tcp) {
                    serve(tls, behavior);
                }
            });
        }
    });
    addr
}

/// Reads one request head; `false` at the end of the stream or on an error.
fn read_request(tls: &mut SslStream<std::net::TcpStream>, pending: &mut Vec<u8>) -> bool {
    loop {
        if let Some(end) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
            pending.drain(..end + 4);
            return true;
        }
        let mut buf = [0u8; 4096];
        match tls.read(&mut buf) {
            Ok(0) | Err(_) => return false,
            Ok(n) => pending.extend_from_slice(&buf[..n]),
        }
    }
}

fn serve(mut tls: SslStream<std::net::TcpStream>, behavior: Behavior) {
    let mut pending = Vec::new();
    let mut answered = 0usize;
    while read_request(&mut tls, &mut pending) {
        answered += 1;
        let parts: Vec<&[u8]> = match behavior {
            Behavior::CloseAfter(n) if answered == n => {
                vec![b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"]
            }
            Behavior::CloseAfter(_) | Behavior::DropAfter(_) => {
                vec![b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"]
            }
            Behavior::Split => vec![
                b"HTTP/1.1 200 OK\r\nTransfer-Enc",
                b"oding: chunked\r\n\r\n5\r\nhel",
                b"lo\r\n0\r\n\r\n",
            ],
            Behavior::Unavailable => {
                vec![b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n"]
            }
            Behavior::Silent => {
                std::thread::sleep(Duration::from_secs(5));
                return;
            }
        };
        for part in parts {
            if tls.write_all(part).is_err() {
                return;
            }
        }
        match behavior {
            Behavior::CloseAfter(n) if answered == n => {
                let _ = tls.shutdown();
                return;
            }
            Behavior::DropAfter(n) if answered == n => return,
            _ => {}
        }
    }
}

fn config(addr: SocketAddr, mode: Mode) -> Config {
    let mut config = Config::new(mode, addr);
    config.threads = 1;
    config.duration = Some(Duration::from_secs(30));
    config.timeout = Duration::from_secs(10);
    config
}

fn keepalive(addr: SocketAddr, connections: usize, requests: u64) -> Summary {
    let summary = run(&config(
        addr,
        Mode::KeepAlive {
            connections,
            requests,
        },
    ))
    .expect("keepalive run");
    println!("{}", summary.to_table());
    summary
}

#[test]
fn a_connection_the_server_closes_is_reopened_for_the_next_request() {
    let summary = keepalive(server(Behavior::CloseAfter(3)), 2, 10);
    assert_eq!(summary.completed, 20);
    assert_eq!(summary.unexpected_errors, 0, "{:?}", summary.errors);
    // Each connection closes after its 3rd, 6th and 9th response: 4 connections each.
    assert_eq!(summary.connections, 8);
    assert_eq!(summary.full_handshakes, 8);
    assert_eq!(summary.latency.count, 20);
}

#[test]
fn a_connection_dropped_without_a_word_fails_one_request_and_is_reopened() {
    // Requests 1-3 answered, 4 fails (reset), 5-7 answered on a new connection, 8 fails,
    // 9-10 answered on a third connection.
    let summary = keepalive(server(Behavior::DropAfter(3)), 1, 10);
    assert_eq!(summary.completed, 8);
    assert_eq!(summary.errors_of("reset"), 2, "{:?}", summary.errors);
    assert_eq!(summary.unexpected_errors, 2);
    assert_eq!(summary.connections, 3);
    assert!(!summary.passed);
}

#[test]
fn responses_split_over_records_and_a_count_limit() {
    let addr = server(Behavior::Split);
    let mut config = config(
        addr,
        Mode::KeepAlive {
            connections: 3,
            requests: 1000,
        },
    );
    config.threads = 2;
    config.count = Some(50);
    let summary = run(&config).expect("run");
    println!("{}", summary.to_table());
    assert_eq!(summary.completed, 50);
    assert_eq!(summary.unexpected_errors, 0, "{:?}", summary.errors);
    assert_eq!(summary.body_bytes, 50 * 5);
    assert_eq!(summary.connections, 3);
}

#[test]
fn error_statuses_are_errors_on_a_kept_connection() {
    let summary = keepalive(server(Behavior::Unavailable), 2, 5);
    assert_eq!(summary.completed, 0);
    assert_eq!(summary.errors_of("http_status"), 10);
    assert_eq!(summary.connections, 2);
}

#[test]
fn a_silent_server_times_out_every_connection_at_once() {
    let addr = server(Behavior::Silent);
    let mut config = config(
        addr,
        Mode::KeepAlive {
            connections: 4,
            requests: 1,
        },
    );
    config.timeout = Duration::from_millis(300);
    let started = std::time::Instant::now();
    let summary = run(&config).expect("run");
    assert_eq!(summary.errors_of("timeout"), 4, "{:?}", summary.errors);
    assert_eq!(summary.completed, 0);
    // The four requests were in flight together: one timeout, not four in a row.
    assert!(
        started.elapsed() < Duration::from_millis(1100),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn rate_mode_reopens_closed_connections() {
    let addr = server(Behavior::CloseAfter(1));
    let mut config = config(
        addr,
        Mode::Rate {
            rate: 200.0,
            connections: 2,
        },
    );
    config.duration = Some(Duration::from_millis(100));
    let summary = run(&config).expect("rate run");
    println!("{}", summary.to_table());
    assert_eq!(summary.completed, 20);
    assert_eq!(summary.unexpected_errors, 0, "{:?}", summary.errors);
    assert!(summary.service_time.is_some());
    // Every connection closes after one response: 2 opened ahead of the schedule, then one
    // opened (with a full handshake) by each of the other 18 requests.
    assert_eq!(summary.connections, 20);
    assert_eq!(summary.full_handshakes, 18);
}
