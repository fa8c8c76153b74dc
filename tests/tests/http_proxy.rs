//! HTTP/1.1 proxying end to end: bodies both ways, keep-alive and pipelining, error statuses.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::time::Duration;

use portcullis_e2e::{config_text, origin, Curl, OneSite, Portcullis, SiteConfig, TestPki};

const MIB: u64 = 1024 * 1024;

fn optional_site(pki: &TestPki, origin: std::net::SocketAddr) -> SiteConfig {
    SiteConfig::new(origin, "optional", Some(pki.path("bundle.pem")))
}

fn sha256_hex(data: &[u8]) -> String {
    boring::sha::sha256(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[test]
fn chunked_upload_and_100_mib_download_arrive_intact_in_bounded_memory() {
    let OneSite {
        pki,
        origin: _origin,
        server,
    } = OneSite::start("optional", Some("bundle.pem"), "", "");
    let ca = pki.path("root.pem");

    // Chunked upload of 8 MiB of pseudo-random bytes.
    let upload: Vec<u8> = (0..8 * MIB as usize)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let upload_path = pki.dir.path().join("upload.bin");
    std::fs::write(&upload_path, &upload).expect("write upload");
    let r = Curl::new(&server, "localhost", "/upload", &ca)
        .args(["-H", "Transfer-Encoding: chunked", "--data-binary"])
        .args([format!("@{}", upload_path.display())])
        .run();
    assert_eq!(r.status, Some(200), "{r:?}\n{}", server.log());
    assert_eq!(
        r.text().trim(),
        format!("bytes={} sha256={}", upload.len(), sha256_hex(&upload))
    );

    // 100 MiB download, checked against the origin's deterministic pattern.
    let size = 100 * MIB;
    let download_path = pki.dir.path().join("download.bin");
    let r = Curl::new(
        &server,
        "localhost",
        &format!("/download?bytes={size}"),
        &ca,
    )
    .args(["-o"])
    .args([&download_path])
    .run();
    assert_eq!(r.status, Some(200), "{r:?}");
    let mut file = std::fs::File::open(&download_path).expect("downloaded file");
    let mut buf = vec![0u8; 1 << 20];
    let mut offset = 0u64;
    loop {
        let n = file.read(&mut buf).expect("read download");
        if n == 0 {
            break;
        }
        for (i, &b) in buf[..n].iter().enumerate() {
            assert_eq!(
                b,
                portcullis_e2e::pattern_byte(offset + i as u64),
                "byte {} differs",
                offset + i as u64
            );
        }
        offset += n as u64;
    }
    assert_eq!(offset, size);

    // The same through chunked transfer coding from the origin.
    let r = Curl::new(
        &server,
        "localhost",
        &format!("/download?bytes={}&chunked=1", 3 * MIB + 5),
        &ca,
    )
    .args(["-o"])
    .args([&download_path])
    .run();
    assert_eq!(r.status, Some(200), "{r:?}");
    assert_eq!(
        std::fs::metadata(&download_path).expect("meta").len(),
        3 * MIB + 5
    );

    let peak = server.peak_rss_kib();
    if !portcullis_e2e::under_sanitizer() {
        assert!(peak < 64 * 1024, "peak RSS {peak} KiB exceeds 64 MiB");
    }
}

#[test]
fn keep_alive_and_pipelined_requests_are_answered_in_order() {
    let OneSite {
        pki,
        origin: _origin,
        server,
    } = OneSite::start("optional", Some("bundle.pem"), "", "");

    let mut tls = server
        .tls_connect("localhost", &pki.path("root.pem"))
        .expect("handshake");
    // Three requests in one write; the second has a body.
    let requests = "GET /first HTTP/1.1\r\nHost: localhost\r\n\r\n\
        POST /upload HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5\r\n\r\nhello\
        GET /third HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
    tls.write_all(requests.as_bytes()).expect("write");
    let mut all = Vec::new();
    let _ = tls.read_to_end(&mut all);
    let text = String::from_utf8_lossy(&all);
    let first = text.find("GET /first").expect("first answered");
    let second = text
        .find(&format!("bytes=5 sha256={}", sha256_hex(b"hello")))
        .expect("second answered");
    let third = text.find("GET /third").expect("third answered");
    assert!(first < second && second < third, "out of order:\n{text}");
    assert_eq!(text.matches("HTTP/1.1 200").count(), 3, "{text}");
    assert!(text.contains("X-Forwarded-Proto: https"), "{text}");
    assert!(text.contains("X-Forwarded-For: 127.0.0.1"), "{text}");
}

#[test]
fn malformed_and_oversized_requests_get_400_and_431() {
    let OneSite {
        pki,
        origin,
        server,
    } = OneSite::start(
        "optional",
        Some("bundle.pem"),
        "",
        "[server.limits]\nmax_header_bytes = 4096\n",
    );
    let ca = pki.path("root.pem");
    let big = format!("X-Big: {}", "a".repeat(8192));
    let r = Curl::new(&server, "localhost", "/", &ca)
        .args(["-H", &big])
        .run();
    assert_eq!(r.status, Some(431), "{r:?}");

    let mut tls = server.tls_connect("localhost", &ca).expect("handshake");
    tls.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n")
        .expect("write");
    let mut all = Vec::new();
    let _ = tls.read_to_end(&mut all);
    let text = String::from_utf8_lossy(&all);
    assert!(text.starts_with("HTTP/1.1 400"), "{text}");
    assert!(
        text.to_ascii_lowercase().contains("connection: close"),
        "{text}"
    );
    assert_eq!(origin.requests_served(), 0);
}

#[test]
fn origin_down_gives_502_and_silent_origin_gives_504() {
    let pki = TestPki::new();
    let down = {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr")
    };
    let silent = TcpListener::bind("127.0.0.1:0").expect("bind silent");
    let mut down_site = SiteConfig::new(down, "optional", Some(pki.path("bundle.pem")));
    down_site.name = "down".into();
    let mut silent_site = SiteConfig::new(
        silent.local_addr().expect("addr"),
        "optional",
        Some(pki.path("bundle.pem")),
    );
    silent_site.name = "silent".into();
    silent_site.server_names = vec!["site-b.test".into()];
    let server = Portcullis::start(&config_text(
        &pki,
        &[down_site, silent_site],
        "[server.timeouts]\norigin_response = \"1s\"\n",
    ));
    let ca = pki.path("root.pem");
    let r = Curl::new(&server, "localhost", "/", &ca).run();
    assert_eq!(r.status, Some(502), "{r:?}");
    let r = Curl::new(&server, "site-b.test", "/", &ca).run();
    assert_eq!(r.status, Some(504), "{r:?}");
    drop(silent);
}

#[test]
fn sigterm_stops_the_server_cleanly() {
    let OneSite {
        pki,
        origin: _origin,
        mut server,
    } = OneSite::start("optional", Some("bundle.pem"), "", "");
    let r = Curl::new(&server, "localhost", "/", &pki.path("root.pem")).run();
    assert_eq!(r.status, Some(200));
    assert_eq!(server.stop(), Some(0));
}

#[test]
fn http10_clients_get_a_dechunked_body_and_a_close() {
    let OneSite {
        pki,
        origin: _origin,
        server,
    } = OneSite::start("optional", Some("bundle.pem"), "", "");
    let mut tls = server
        .tls_connect("localhost", &pki.path("root.pem"))
        .expect("handshake");
    let size = 200_000u64;
    tls.write_all(format!("GET /download?bytes={size}&chunked=1 HTTP/1.0\r\n\r\n").as_bytes())
        .expect("write");
    let mut all = Vec::new();
    let _ = tls.read_to_end(&mut all);
    let split = all
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("head end")
        + 4;
    let head = String::from_utf8_lossy(&all[..split]).to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(!head.contains("transfer-encoding"), "{head}");
    let body = &all[split..];
    assert_eq!(body.len() as u64, size, "{head}");
    assert!(body
        .iter()
        .enumerate()
        .all(|(i, &b)| b == portcullis_e2e::pattern_byte(i as u64)));
}

#[test]
fn sigterm_lets_an_in_flight_download_finish_and_refuses_new_connections() {
    let OneSite {
        pki,
        origin: _origin,
        mut server,
    } = OneSite::start("optional", Some("bundle.pem"), "", "");
    let size = 40 * MIB;
    let out = pki.dir.path().join("slow.bin");
    let slow = {
        let curl = Curl::new(
            &server,
            "localhost",
            &format!("/download?bytes={size}"),
            &pki.path("root.pem"),
        )
        .args(["--limit-rate", "16M", "-o"])
        .args([&out]);
        std::thread::spawn(move || curl.run())
    };
    // Wait (bounded) until the download is under way, then ask the server to stop.
    let started = std::time::Instant::now();
    while std::fs::metadata(&out).map(|m| m.len()).unwrap_or(0) < MIB {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "download never started"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    server.terminate();
    // Wait (bounded) until the listeners are closed: a new connection is then refused.
    let refused_by = std::time::Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(server.addr).is_ok() {
        assert!(
            std::time::Instant::now() < refused_by,
            "still accepting after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let late = Curl::new(&server, "localhost", "/", &pki.path("root.pem")).run();
    assert_eq!(
        late.status, None,
        "a new connection was accepted while draining: {late:?}"
    );
    let r = slow.join().expect("curl thread");
    assert_eq!(r.status, Some(200), "{r:?}");
    assert_eq!(std::fs::metadata(&out).expect("file").len(), size);
    assert_eq!(server.stop(), Some(0));
}

#[test]
fn connections_beyond_the_per_worker_limit_are_closed() {
    let pki = TestPki::new();
    let origin = origin();
    let text = config_text(
        &pki,
        &[optional_site(&pki, origin.addr())],
        "[server.limits]\nmax_connections_per_worker = 1\n",
    )
    .replace("workers = 2", "workers = 1");
    let server = Portcullis::start(&text);
    let ca = pki.path("root.pem");
    let open = || server.tls_connect("localhost", &ca);
    let mut first = open().expect("first connection");
    first
        .write_all(b"GET /one HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .expect("write");
    let mut buf = [0u8; 4096];
    let n = first.read(&mut buf).expect("first response");
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
    // The worker is full: a second connection is closed before its handshake completes.
    assert!(open().is_err(), "second connection was served");
    drop(first);
    // Once the first is gone, new connections are served again (bounded retries).
    let served = (0..50).any(|_| {
        std::thread::sleep(Duration::from_millis(20));
        open().is_ok()
    });
    assert!(served, "the worker never accepted again");
}

#[test]
fn connections_still_open_at_the_drain_timeout_are_closed_not_left_behind() {
    // The origin takes every request and never answers.
    let origin = portcullis_e2e::ScriptedOrigin::start(|c| {
        if c.read_request().is_some() {
            c.note("request held");
            let _ = c.closed_within(Duration::from_secs(30));
        }
    });
    let pki = TestPki::new();
    let text = config_text(
        &pki,
        &[optional_site(&pki, origin.addr())],
        "[server.timeouts]\ndrain = \"1s\"\norigin_response = \"60s\"\n",
    );
    let mut server = Portcullis::start(&text);
    let mut held = server
        .tls_connect("localhost", &pki.path("root.pem"))
        .expect("TLS");
    held.write_all(b"GET /hang HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .expect("request");
    assert!(origin
        .journal()
        .wait_for("request held", Duration::from_secs(10)));
    let started = std::time::Instant::now();
    server.terminate();
    // The in-flight request is cut when the drain time-out passes; the client sees the close.
    let mut buf = [0u8; 1024];
    let n = held.read(&mut buf).unwrap_or(0);
    assert!(
        !String::from_utf8_lossy(&buf[..n]).contains("200"),
        "{:?}",
        String::from_utf8_lossy(&buf[..n])
    );
    assert_eq!(server.stop(), Some(0));
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    let log = server.log();
    assert!(
        log.contains("drain time-out passed; closing remaining connections"),
        "{log}"
    );
    assert!(!log.contains("still open after being closed"), "{log}");
}

/// A socket that keeps a copy of every byte it reads, so a test can look at the TLS records.
#[derive(Debug)]
struct Recording {
    tcp: std::net::TcpStream,
    seen: std::rc::Rc<std::cell::RefCell<Vec<u8>>>,
}

impl Read for Recording {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.tcp.read(buf)?;
        self.seen.borrow_mut().extend_from_slice(&buf[..n]);
        Ok(n)
    }
}

impl Write for Recording {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.tcp.write(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.tcp.flush()
    }
}

/// (content type, length) of the TLS records in `bytes`.
fn tls_records(mut bytes: &[u8]) -> Vec<(u8, usize)> {
    let mut records = Vec::new();
    while bytes.len() >= 5 {
        let len = usize::from(bytes[3]) << 8 | usize::from(bytes[4]);
        records.push((bytes[0], len));
        bytes = &bytes[(5 + len).min(bytes.len())..];
    }
    records
}

#[test]
fn a_small_response_leaves_as_one_tls_record() {
    use boring::ssl::{SslConnector, SslMethod, SslVersion};
    let OneSite {
        pki,
        origin: _origin,
        server,
    } = OneSite::start("optional", Some("bundle.pem"), "", "");
    // TLS 1.2: nothing follows the handshake but the response (TLS 1.3 sends session tickets
    // after it), so every application-data record the client reads belongs to the response.
    let mut connector = SslConnector::builder(SslMethod::tls()).expect("connector");
    connector
        .set_ca_file(pki.path("root.pem"))
        .expect("trust the test root");
    connector
        .set_max_proto_version(Some(SslVersion::TLS1_2))
        .expect("TLS 1.2");
    let tcp = std::net::TcpStream::connect(server.addr).expect("connect");
    tcp.set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    let seen = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
    let recording = Recording {
        tcp,
        seen: std::rc::Rc::clone(&seen),
    };
    let mut tls = connector
        .build()
        .connect("localhost", recording)
        .expect("handshake");
    let mark = seen.borrow().len();
    for path in ["/first", "/second"] {
        let before = seen.borrow().len();
        tls.write_all(format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n").as_bytes())
            .expect("request");
        let response = portcullis_e2e::read_response(&mut tls).expect("response");
        assert_eq!(response.status, 200);
        assert!(response.text().starts_with(&format!("GET {path} HTTP/1.1")));
        let records = tls_records(&seen.borrow()[before..]);
        assert_eq!(
            records.len(),
            1,
            "head and body in one record, got {records:?} (after {mark} handshake bytes)"
        );
        assert_eq!(records[0].0, 23, "an application-data record");
    }
}
