//! Security of the proxy path against misbehaving origins and hostile clients, end to end:
//! a pooled origin connection that carries unsolicited bytes is never reused (no response
//! reaches the wrong client), the Host must belong to the site the SNI selected (421), a
//! non-idempotent request is never sent twice, and a client that stops reading or trickles a
//! body cannot pin a connection and an origin connection.

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use portcullis_e2e::{
    config_text, origin, read_response, Curl, OneSite, Portcullis, ScriptedOrigin, SiteConfig,
    TestPki,
};

/// A complete response an origin sends on its own, long after the exchange it belongs to.
const FORGED: &[u8] =
    b"HTTP/1.1 200 OK\r\nContent-Length: 40\r\n\r\nthe reply to an earlier client's request";

/// One optional site on a single worker (so every request shares one origin pool).
fn single_worker(pki: &TestPki, origin: std::net::SocketAddr, server_extra: &str) -> Portcullis {
    let site = SiteConfig::new(origin, "optional", Some(pki.path("bundle.pem")));
    let config = config_text(pki, &[site], server_extra).replace("workers = 2", "workers = 1");
    Portcullis::start(&config)
}

/// The first request's response is followed, 300 ms later, by `late` on the same origin
/// connection. The next client must get its own response, from another origin connection,
/// and the polluted one must be closed.
fn late_bytes_never_reach_the_next_client(
    first: &[&str],
    first_status: u16,
    response: &'static [u8],
    late: &'static [u8],
) {
    let origin = ScriptedOrigin::start(move |c| {
        while let Some(request) = c.read_request() {
            if request.path() == "/first" {
                let _ = c.write(response);
                std::thread::sleep(Duration::from_millis(300));
                let _ = c.write(late);
                c.note(format!("late bytes sent on conn {}", c.index));
                if c.closed_within(Duration::from_secs(10)) {
                    c.note(format!("conn {} closed by the proxy", c.index));
                }
                return;
            }
            let _ = c.respond(&format!("reply to {} on conn {}", request.path(), c.index));
        }
    });
    let pki = TestPki::new();
    let server = single_worker(&pki, origin.addr(), "");
    let ca = pki.path("root.pem");

    let r = Curl::new(&server, "localhost", "/first", &ca)
        .args(first)
        .run();
    assert_eq!(r.status, Some(first_status), "{r:?}");
    assert!(
        origin
            .journal()
            .wait_for("late bytes sent on conn 0", Duration::from_secs(10)),
        "the origin never sent its late bytes"
    );
    for attempt in 0..3 {
        let path = format!("/second-{attempt}");
        let r = Curl::new(&server, "localhost", &path, &ca).run();
        assert_eq!(r.status, Some(200), "{r:?}");
        assert_eq!(
            r.text(),
            format!("reply to {path} on conn 1"),
            "a client got a response that was not its own"
        );
    }
    assert!(
        origin
            .journal()
            .wait_for("conn 0 closed by the proxy", Duration::from_secs(10)),
        "the polluted origin connection stayed open: {:?}",
        origin.journal().events()
    );
    assert_eq!(origin.connections(), 2);
    assert!(server
        .log()
        .contains("unsolicited data on an idle keep-alive connection"));
}

#[test]
fn an_unsolicited_late_response_is_not_delivered_to_the_next_client() {
    late_bytes_never_reach_the_next_client(
        &[],
        200,
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfirst",
        FORGED,
    );
}

#[test]
fn a_head_body_arriving_later_is_not_delivered_to_the_next_client() {
    late_bytes_never_reach_the_next_client(
        &["-I"],
        200,
        b"HTTP/1.1 200 OK\r\nContent-Length: 79\r\n\r\n",
        FORGED,
    );
}

#[test]
fn a_204_body_arriving_later_is_not_delivered_to_the_next_client() {
    late_bytes_never_reach_the_next_client(&[], 204, b"HTTP/1.1 204 No Content\r\n\r\n", FORGED);
}

#[test]
fn bytes_past_content_length_written_later_are_not_delivered_to_the_next_client() {
    late_bytes_never_reach_the_next_client(
        &[],
        200,
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfirst",
        b"garbage past the body, then HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nevil",
    );
}

/// Three sites: `localhost` (the default, passthrough), `site-a.test` (required) and
/// `site-b.test` + `*.wild.test` (optional).
fn three_sites(pki: &TestPki, origin: std::net::SocketAddr) -> Portcullis {
    let mut fallback = SiteConfig::new(origin, "passthrough", None);
    fallback.name = "fallback".into();
    let mut strong = SiteConfig::new(origin, "required", Some(pki.path("bundle.pem")));
    strong.name = "strong".into();
    strong.server_names = vec!["site-a.test".into()];
    let mut weak = SiteConfig::new(origin, "optional", Some(pki.path("bundle.pem")));
    weak.name = "weak".into();
    weak.server_names = vec!["site-b.test".into(), "*.wild.test".into()];
    Portcullis::start(&config_text(pki, &[fallback, strong, weak], ""))
}

#[test]
fn the_host_must_belong_to_the_site_the_sni_selected() {
    let pki = TestPki::new();
    let origin = origin();
    let server = three_sites(&pki, origin.addr());
    let ca = pki.path("root.pem");
    let client = TestPki::client(&pki.intermediate, "viewer");
    let (cert, key) = pki.write_client("viewer", &client, &[&pki.intermediate]);
    let port = server.addr.port();

    // (SNI host, extra curl arguments, expected status, whether the origin sees it)
    let host = |h: &str| vec!["-H".to_owned(), format!("Host: {h}")];
    let cases: Vec<(&str, Vec<String>, u16)> = vec![
        // Attacks: a certificate-less client passes the weak site's policy and names the
        // strong site, by Host or by an absolute-form target.
        ("site-b.test", host("site-a.test"), 421),
        ("site-b.test", host(&format!("SITE-A.test:{port}")), 421),
        (
            "site-b.test",
            // Absolute-form exists in HTTP/1.1 only (HTTP/2 refuses it as malformed).
            vec![
                "--http1.1".into(),
                "--request-target".into(),
                format!("https://site-a.test:{port}/x"),
            ],
            421,
        ),
        ("localhost", host("site-a.test"), 421),
        ("site-b.test", host("unclaimed.test"), 421),
        ("site-b.test", host("user@site-b.test"), 400),
        ("site-b.test", host("site-b.test/../x"), 400),
        // Legitimate: port, case, trailing dot, wildcard, the default site's unclaimed names.
        ("site-b.test", host(&format!("Site-B.Test:{port}")), 200),
        ("site-b.test", host("site-b.test."), 200),
        ("x.wild.test", host("y.wild.test"), 200),
        ("localhost", host("unclaimed.test"), 200),
        ("localhost", host("127.0.0.1"), 200),
        (
            "site-b.test",
            vec![
                "--http1.1".into(),
                "--request-target".into(),
                format!("https://site-b.test:{port}/x"),
            ],
            200,
        ),
    ];
    // Every case over HTTP/1.1 and HTTP/2 (`Host` becomes `:authority`), but absolute-form
    // targets, which HTTP/2 does not have.
    for protocol in ["--http1.1", "--http2"] {
        for (sni, args, expected) in &cases {
            if protocol == "--http2" && args.iter().any(|a| a == "--request-target") {
                continue;
            }
            let before = origin.requests_served();
            let r = Curl::new(&server, sni, "/", &ca)
                .args([protocol])
                .args(args)
                .run();
            // A malformed authority is a malformed HTTP/2 request: the codec resets the stream.
            let reset_by_h2 = protocol == "--http2"
                && *expected == 400
                && r.status.is_none()
                && r.stderr.contains("PROTOCOL_ERROR");
            assert!(
                r.status == Some(*expected) || reset_by_h2,
                "{protocol} SNI {sni} {args:?}: {r:?}"
            );
            let reached = origin.requests_served() > before;
            assert_eq!(reached, *expected == 200, "{protocol} SNI {sni} {args:?}");
        }
    }
    // No SNI at all (an IP address): the default site, which does not serve site-a.test.
    let r = Curl::new(&server, "127.0.0.1", "/", &ca)
        .args(["-H", "Host: site-a.test"])
        .run();
    assert_eq!(r.status, Some(421), "{r:?}");
    // The strong site with a certificate: its own names pass, the weak site's do not.
    let r = Curl::new(&server, "site-a.test", "/", &ca)
        .cert(&cert, &key)
        .run();
    assert_eq!(r.status, Some(200), "{r:?}");
    assert_eq!(r.cert_present().as_deref(), Some("1"));
    let r = Curl::new(&server, "site-a.test", "/", &ca)
        .cert(&cert, &key)
        .args(["-H", "Host: site-b.test"])
        .run();
    assert_eq!(r.status, Some(421), "{r:?}");
    assert!(server.log().contains("421"));
}

/// An origin whose first connection answers `/warm`, then reads the next request and closes
/// without answering; later connections answer everything.
fn closes_after_reading_the_second_request() -> ScriptedOrigin {
    ScriptedOrigin::start(|c| {
        while let Some(request) = c.read_request() {
            if c.index == 0 && request.path() != "/warm" {
                c.note(format!("conn 0 processed {} and closed", request.path()));
                return;
            }
            let _ = c.respond(&format!("reply to {} on conn {}", request.path(), c.index));
        }
    })
}

#[test]
fn a_post_is_never_sent_twice_but_a_get_is_retried() {
    for protocol in ["--http1.1", "--http2"] {
        post_never_twice_get_retried(protocol);
    }
}

/// [`a_post_is_never_sent_twice_but_a_get_is_retried`] over one protocol (a curl option).
fn post_never_twice_get_retried(protocol: &str) {
    let pki = TestPki::new();
    let ca = pki.path("root.pem");

    let origin = closes_after_reading_the_second_request();
    let server = single_worker(&pki, origin.addr(), "");
    let r = Curl::new(&server, "localhost", "/warm", &ca)
        .args([protocol])
        .run();
    assert_eq!(r.status, Some(200), "{r:?}");
    let r = Curl::new(&server, "localhost", "/pay", &ca)
        .args([protocol, "--data-binary", "amount=100"])
        .run();
    assert_eq!(r.status, Some(502), "{r:?}");
    let posts = origin
        .journal()
        .requests()
        .iter()
        .filter(|q| q.path() == "/pay")
        .count();
    assert_eq!(posts, 1, "the POST reached the origin {posts} times");
    assert_eq!(origin.connections(), 1);
    drop(server);

    // With an Idempotency-Key the client says a second delivery is harmless: retried.
    let origin = closes_after_reading_the_second_request();
    let server = single_worker(&pki, origin.addr(), "");
    Curl::new(&server, "localhost", "/warm", &ca)
        .args([protocol])
        .run();
    let r = Curl::new(&server, "localhost", "/pay", &ca)
        .args([
            protocol,
            "--data-binary",
            "amount=100",
            "-H",
            "Idempotency-Key: 4f1c",
        ])
        .run();
    assert_eq!(r.status, Some(200), "{r:?}");
    assert_eq!(r.text(), "reply to /pay on conn 1");
    drop(server);

    // A GET is idempotent: sent again on a new connection, and answered.
    let origin = closes_after_reading_the_second_request();
    let server = single_worker(&pki, origin.addr(), "");
    Curl::new(&server, "localhost", "/warm", &ca)
        .args([protocol])
        .run();
    let r = Curl::new(&server, "localhost", "/again", &ca)
        .args([protocol])
        .run();
    assert_eq!(r.status, Some(200), "{r:?}");
    assert_eq!(r.text(), "reply to /again on conn 1");
    let gets = origin
        .journal()
        .requests()
        .iter()
        .filter(|q| q.path() == "/again")
        .count();
    assert_eq!(gets, 2);
}

#[test]
fn a_client_that_stops_reading_releases_its_origin_connection() {
    // The origin streams an endless body; it notes when the proxy closes on it.
    let origin = ScriptedOrigin::start(|c| {
        if c.read_request().is_none() {
            return;
        }
        let _ = c.stream.set_write_timeout(Some(Duration::from_secs(30)));
        let head = b"HTTP/1.1 200 OK\r\nContent-Length: 10000000000\r\n\r\n";
        let piece = vec![b'x'; 64 * 1024];
        let mut result = c.stream.write_all(head);
        while result.is_ok() {
            result = c.stream.write_all(&piece);
        }
        match result {
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut =>
            {
                c.note("origin write stalled for 30 s")
            }
            _ => c.note("origin connection closed by the proxy"),
        }
    });
    let pki = TestPki::new();
    let server = single_worker(&pki, origin.addr(), "[server.timeouts]\nsend = \"1s\"\n");
    let ca = pki.path("root.pem");
    let before = server.peak_rss_kib();
    let started = Instant::now();
    // Twenty clients ask for the endless body and never read.
    const STALLED: usize = 20;
    let conns: Vec<_> = (0..STALLED)
        .map(|_| {
            let mut conn = server.tls_client("localhost", &ca, None, Some(4096));
            conn.write_all(b"GET /big HTTP/1.1\r\nHost: localhost\r\n\r\n")
                .expect("request");
            conn
        })
        .collect();
    // The proxy must give up on each and close its origin connection.
    let closed = |events: Vec<String>| {
        events
            .iter()
            .filter(|e| *e == "origin connection closed by the proxy")
            .count()
    };
    portcullis_e2e::wait_for(
        Duration::from_secs(25),
        "every origin connection closed",
        || (closed(origin.journal().events()) == STALLED).then_some(()),
    );
    assert!(started.elapsed() < Duration::from_secs(25));
    assert!(server.log().contains("send time-out"), "{}", server.log());
    // Nothing was buffered beyond the bounded per-connection buffers: the origin offered
    // gigabytes to each.
    let grown = server.peak_rss_kib().saturating_sub(before);
    eprintln!("{STALLED} stalled clients: peak RSS grew by {grown} KiB");
    if !portcullis_e2e::under_sanitizer() {
        assert!(
            grown < 20 * 1024,
            "peak RSS grew by {grown} KiB for {STALLED} stalled clients"
        );
    }
    drop(conns);
}

#[test]
fn a_request_body_trickled_a_byte_at_a_time_is_cut_with_408() {
    let origin = ScriptedOrigin::start(|c| match c.read_request() {
        Some(_) => {
            let _ = c.respond("whole body arrived");
        }
        None => c.note("origin connection closed mid-request"),
    });
    let pki = TestPki::new();
    let server = single_worker(
        &pki,
        origin.addr(),
        "[server.timeouts]\nrequest_body = \"1s\"\n[server.limits]\nmin_request_body_rate = 100\n",
    );
    let ca = pki.path("root.pem");
    let mut conn = server.tls_client("localhost", &ca, None, None);
    conn.write_all(b"POST /slow HTTP/1.1\r\nHost: localhost\r\nContent-Length: 1000\r\n\r\n")
        .expect("head");
    conn.get_ref().set_nonblocking(true).expect("non-blocking");
    // One byte every 200 ms (5 B/s, far below 100 B/s), watching for the answer in between.
    let started = Instant::now();
    let mut response = Vec::new();
    let mut buf = [0u8; 1024];
    while started.elapsed() < Duration::from_secs(10) && !response.ends_with(b"Timeout\n") {
        let _ = conn.write_all(b"x");
        std::thread::sleep(Duration::from_millis(200));
        match conn.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => response.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(_) => break,
        }
    }
    let elapsed = started.elapsed();
    let text = String::from_utf8_lossy(&response);
    assert!(
        text.starts_with("HTTP/1.1 408 "),
        "after {elapsed:?}: {text:?}"
    );
    assert!(
        elapsed < Duration::from_secs(5),
        "cut only after {elapsed:?}"
    );
    assert!(origin.journal().wait_for(
        "origin connection closed mid-request",
        Duration::from_secs(10)
    ));
    assert!(
        server
            .log()
            .contains("request body slower than min_request_body_rate"),
        "{}",
        server.log()
    );
}

#[test]
fn the_first_request_head_gets_one_header_read_in_all() {
    let OneSite {
        pki,
        origin: _origin,
        server,
    } = OneSite::start(
        "optional",
        Some("bundle.pem"),
        "",
        "[server.timeouts]\nheader_read = \"2s\"\n",
    );
    let mut conn = server.tls_client("localhost", &pki.path("root.pem"), None, None);
    let handshake_done = Instant::now();
    std::thread::sleep(Duration::from_millis(1500));
    conn.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n")
        .expect("partial head");
    let r = read_response(&mut conn).expect("a 408 before the close");
    let elapsed = handshake_done.elapsed();
    assert_eq!(r.status, 408);
    // One header_read from the handshake (2 s), not two (up to 3.5 s here).
    assert!(
        elapsed < Duration::from_millis(2900),
        "408 after {elapsed:?}"
    );
}

/// Sends `request` on a fresh connection to the single-worker server and returns the
/// responses read until the connection closes (at most `count`).
fn raw_exchange(
    server: &Portcullis,
    pki: &TestPki,
    request: &[u8],
    count: usize,
) -> Vec<portcullis_e2e::RawResponse> {
    let mut conn = server.tls_client("localhost", &pki.path("root.pem"), None, None);
    conn.write_all(request).expect("request");
    (0..count).map_while(|_| read_response(&mut conn)).collect()
}

#[test]
fn request_heads_are_cleaned_before_they_reach_the_origin() {
    let origin = ScriptedOrigin::start(|c| {
        while let Some(request) = c.read_request() {
            if request
                .header_values("transfer-encoding")
                .iter()
                .any(|v| v.eq_ignore_ascii_case("chunked"))
            {
                let body = c.read_until(b"0\r\n\r\n");
                c.note(format!("chunked body: {}", String::from_utf8_lossy(&body)));
            }
            let _ = c.respond("ok");
        }
    });
    let pki = TestPki::new();
    let server = single_worker(
        &pki,
        origin.addr(),
        "[server.limits]\nmax_header_count = 500\n",
    );
    let requests = |r: usize| origin.journal().requests()[r].clone();

    // 1. 300 header fields under max_header_count = 500 (the parser used to stop at 128).
    let mut many = b"GET /many HTTP/1.1\r\nHost: localhost\r\n".to_vec();
    for i in 0..300 {
        many.extend_from_slice(format!("X-Field-{i}: {i}\r\n").as_bytes());
    }
    many.extend_from_slice(b"Connection: close\r\n\r\n");
    let r = raw_exchange(&server, &pki, &many, 1);
    assert_eq!(r[0].status, 200, "{:?}", r[0]);
    assert_eq!(requests(0).header_values("x-field-299"), vec!["299"]);

    // 2. Forged edge and identity fields in every spelling.
    let forged = b"POST /forged HTTP/1.1\r\nHost: localhost\r\n\
        CloudFront_Viewer_Cert_Present: 1\r\n\
        cloudfront-viewer-cert-subject: CN=admin\r\n\
        Forwarded: for=10.0.0.1;host=admin.internal\r\n\
        X-Real-IP: 10.0.0.1\r\n\
        X-Forwarded-Host: admin.internal\r\n\
        X-Forwarded-Port: 80\r\n\
        Content-Length: 4\r\nConnection: close\r\n\r\nbody";
    let r = raw_exchange(&server, &pki, forged, 1);
    assert_eq!(r[0].status, 200);
    let seen = requests(1);
    let head = String::from_utf8_lossy(&seen.head).to_ascii_lowercase();
    for gone in [
        "cloudfront_viewer",
        "subject: cn=admin",
        "forwarded:",
        "x-real-ip",
        "x-forwarded-host",
        "x-forwarded-port",
    ] {
        assert!(!head.contains(gone), "{gone} reached the origin:\n{head}");
    }
    assert_eq!(
        seen.header_values("cloudfront-viewer-cert-present"),
        vec!["0"]
    );
    assert_eq!(seen.header_values("content-length"), vec!["4"]);
    assert_eq!(seen.body, b"body");

    // 3. Trailers of a chunked request body are not forwarded.
    let chunked = b"POST /trailers HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\
        Connection: close\r\n\r\n4\r\ndata\r\n0\r\nContent-Length: 99\r\n\
        CloudFront-Viewer-Cert-Present: 1\r\nX-Trailer: t\r\n\r\n";
    let r = raw_exchange(&server, &pki, chunked, 1);
    assert_eq!(r[0].status, 200);
    let events = origin.journal().events();
    assert!(
        events.contains(&"chunked body: 4\r\ndata\r\n0\r\n\r\n".to_owned()),
        "{events:?}"
    );

    // 4. HTTP/1.0 without Host: the origin gets the SNI name as Host.
    let r = raw_exchange(&server, &pki, b"GET /old HTTP/1.0\r\n\r\n", 1);
    assert_eq!(r[0].status, 200);
    let old = requests(3);
    assert_eq!(old.line, "GET /old HTTP/1.1");
    assert_eq!(old.header_values("host"), vec!["localhost"]);
}

#[test]
fn interim_responses_reach_http11_clients_only() {
    let origin = ScriptedOrigin::start(|c| {
        while c.read_request().is_some() {
            let _ = c.write(
                b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n\
                  HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfinal",
            );
        }
    });
    let pki = TestPki::new();
    let server = single_worker(&pki, origin.addr(), "");
    let r = raw_exchange(
        &server,
        &pki,
        b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
        2,
    );
    assert_eq!(
        r.iter().map(|r| r.status).collect::<Vec<_>>(),
        vec![103, 200]
    );
    let r = raw_exchange(
        &server,
        &pki,
        b"GET / HTTP/1.0\r\nHost: localhost\r\n\r\n",
        2,
    );
    assert_eq!(r.iter().map(|r| r.status).collect::<Vec<_>>(), vec![200]);
    assert_eq!(r[0].text(), "final");
}

#[test]
fn a_refusal_reaches_a_client_that_is_still_sending() {
    let OneSite {
        pki,
        origin: _origin,
        server,
    } = OneSite::start("optional", Some("bundle.pem"), "", "");
    for round in 0..5 {
        let mut conn = server.tls_client("localhost", &pki.path("root.pem"), None, None);
        // A head over max_header_bytes (16 KiB), and more bytes after it: the proxy answers
        // 431 while the client is still sending.
        let mut head = b"POST / HTTP/1.1\r\nHost: localhost\r\nX-Big: ".to_vec();
        head.resize(20 * 1024, b'a');
        let _ = conn.write_all(&head);
        for _ in 0..8 {
            let _ = conn.write_all(&[b'b'; 4096]);
        }
        let r = read_response(&mut conn);
        assert_eq!(r.map(|r| r.status), Some(431), "round {round}");
    }
}

#[test]
fn smuggling_shapes_get_400_and_nothing_after_them_reaches_the_origin() {
    let origin = ScriptedOrigin::start(|c| {
        while let Some(request) = c.read_request() {
            let _ = c.respond(&format!("reply to {}", request.path()));
        }
    });
    let pki = TestPki::new();
    let server = single_worker(&pki, origin.addr(), "");
    // Each shape is followed by a request that would reach the origin if the proxy read the
    // first one's framing differently from a downstream server.
    let smuggled = "GET /smuggled HTTP/1.1\r\nHost: localhost\r\n\r\n";
    let shapes: [(&str, u16); 14] = [
        (
            "Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            400,
        ),
        (
            "Transfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n0\r\n\r\n",
            400,
        ),
        ("Content-Length: 4\r\nContent-Length: 4\r\n\r\nbody", 400),
        ("Content-Length: 4\r\nContent-Length: 40\r\n\r\nbody", 400),
        ("Transfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n", 400),
        ("Transfer-Encoding: xchunked\r\n\r\n0\r\n\r\n", 400),
        (
            "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            400,
        ),
        ("Transfer-Encoding:\x0bchunked\r\n\r\n0\r\n\r\n", 400),
        ("X-Folded: a\r\n b\r\nContent-Length: 0\r\n\r\n", 400),
        ("Content-Length : 4\r\n\r\nbody", 400),
        (
            "Transfer-Encoding: chunked\r\n\r\nfffffffffffffffff\r\n",
            400,
        ),
        ("Transfer-Encoding: chunked\r\n\r\nz\r\n", 400),
        (
            "Transfer-Encoding: chunked\r\n\r\n4;ext=\x01\r\nbody\r\n0\r\n\r\n",
            400,
        ),
        ("X-Nul: a\x00b\r\nContent-Length: 0\r\n\r\n", 400),
    ];
    for (rest, status) in shapes {
        let request = format!("POST /first HTTP/1.1\r\nHost: localhost\r\n{rest}{smuggled}");
        let r = raw_exchange(&server, &pki, request.as_bytes(), 2);
        assert_eq!(
            r.iter().map(|r| r.status).collect::<Vec<_>>(),
            vec![status],
            "{rest:?}"
        );
    }
    for line in [
        "GET /smuggled HTTP/2.0",
        "GET /smuggled HTTP/1.2",
        "GET /smuggled",
        "CONNECT localhost:443 HTTP/1.1",
        "GET localhost/smuggled HTTP/1.1",
    ] {
        let request = format!("{line}\r\nHost: localhost\r\n\r\n{smuggled}");
        let r = raw_exchange(&server, &pki, request.as_bytes(), 2);
        assert_eq!(r.len(), 1, "{line}: {r:?}");
        assert!(matches!(r[0].status, 400 | 405), "{line}: {:?}", r[0]);
    }
    assert!(
        origin.journal().requests().is_empty(),
        "reached the origin: {:?}",
        origin.journal().requests()
    );
    // A well-formed request on the same server still works.
    let r = raw_exchange(
        &server,
        &pki,
        b"GET /fine HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
        1,
    );
    assert_eq!(r[0].text(), "reply to /fine");
}
