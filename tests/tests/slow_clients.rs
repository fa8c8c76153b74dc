//! Slow and abusive clients against the real binary: the per-client-address connection limit
//! (across workers, per address), slowloris heads cut at the header time-out while others are
//! served, and 5,000 idle TLS connections held in the memory the benchmark measures per idle
//! connection.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use portcullis_e2e::{
    config_text, origin, read_response, under_sanitizer, wait_for, Curl, Portcullis, SiteConfig,
    TestPki,
};

/// A TCP connection to `server` from the loopback address `from` (127.0.0.x).
fn connect_from(server: &Portcullis, from: [u8; 4]) -> TcpStream {
    let socket =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
    socket
        .bind(&SocketAddr::from((from, 0)).into())
        .expect("bind the client address");
    socket
        .connect_timeout(&server.addr.into(), Duration::from_secs(10))
        .expect("connect");
    let tcp: TcpStream = socket.into();
    tcp.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("read timeout");
    tcp
}

/// A TLS client trusting the test root.
fn connector(pki: &TestPki) -> boring::ssl::SslConnector {
    let mut connector =
        boring::ssl::SslConnector::builder(boring::ssl::SslMethod::tls()).expect("connector");
    connector
        .set_ca_file(pki.path("root.pem"))
        .expect("trust the test root");
    connector.build()
}

/// A TLS session on `tcp` with SNI `localhost` after one request and its whole 200 response;
/// `None` when the server closed the connection instead.
fn serve_one(
    connector: &boring::ssl::SslConnector,
    tcp: TcpStream,
) -> Option<boring::ssl::SslStream<TcpStream>> {
    let mut tls = connector.connect("localhost", tcp).ok()?;
    tls.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .ok()?;
    let response = read_response(&mut tls)?;
    assert_eq!(response.status, 200, "{}", response.head);
    Some(tls)
}

fn optional_server(pki: &TestPki, origin: SocketAddr, server_extra: &str) -> Portcullis {
    let site = SiteConfig::new(origin, "optional", Some(pki.path("bundle.pem")));
    Portcullis::start(&config_text(pki, &[site], server_extra))
}

#[test]
fn a_client_address_holds_at_most_its_connection_limit_across_workers() {
    let pki = TestPki::new();
    let origin = origin();
    let server = optional_server(
        &pki,
        origin.addr(),
        "[admin]\nlisten = \"127.0.0.1:0\"\n[server.limits]\nmax_connections_per_client_ip = 3\n",
    );
    let tls = connector(&pki);
    // Three from 127.0.0.1, spread by the kernel over both workers, are served.
    let mut held: Vec<_> = (0..3)
        .map(|i| {
            serve_one(&tls, connect_from(&server, [127, 0, 0, 1]))
                .unwrap_or_else(|| panic!("connection {i} within the limit was closed"))
        })
        .collect();
    // The fourth, on whichever worker, is closed at once; another address is not affected.
    for _ in 0..4 {
        assert!(
            serve_one(&tls, connect_from(&server, [127, 0, 0, 1])).is_none(),
            "a connection beyond the limit was served"
        );
    }
    let other = serve_one(&tls, connect_from(&server, [127, 0, 0, 2]));
    assert!(
        other.is_some(),
        "127.0.0.2 was refused for 127.0.0.1's connections"
    );
    // Once one closes, the address may connect again (the close is noticed asynchronously).
    drop(held.pop());
    let again = wait_for(Duration::from_secs(10), "a slot to free up", || {
        serve_one(&tls, connect_from(&server, [127, 0, 0, 1]))
    });
    drop(again);
    // The refusals are counted for the operator.
    let metrics = portcullis_e2e::admin_call(server.admin.expect("admin"), "GET", "/metrics", None);
    let line = metrics
        .1
        .lines()
        .find(|l| l.starts_with("portcullis_connections_refused_total{reason=\"client_ip_limit\"}"))
        .unwrap_or_else(|| panic!("no refusal counter in:\n{}", metrics.1))
        .to_owned();
    let count: u64 = line
        .rsplit(' ')
        .next()
        .and_then(|v| v.parse().ok())
        .expect("counter value");
    assert!(count >= 4, "{line}");
}

#[test]
fn slowloris_heads_are_cut_at_the_header_timeout_while_others_are_served() {
    let pki = TestPki::new();
    let origin = origin();
    let server = optional_server(
        &pki,
        origin.addr(),
        "[server.timeouts]\nheader_read = \"2s\"\n",
    );
    let started = Instant::now();
    let head = b"GET / HTTP/1.1\r\nHost: localhost\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n";
    let slow: Vec<_> = (0..40)
        .map(|_| {
            let mut tls = server
                .tls_connect("localhost", &pki.path("root.pem"))
                .expect("TLS");
            std::thread::spawn(move || {
                // One byte per 250 ms: the whole head would take 20 s.
                for byte in head {
                    if tls.write_all(&[*byte]).is_err() {
                        break;
                    }
                    tls.get_ref()
                        .set_read_timeout(Some(Duration::from_millis(250)))
                        .expect("timeout");
                    let mut buf = [0u8; 512];
                    match tls.read(&mut buf) {
                        Ok(0) => return (Instant::now(), String::new()),
                        Ok(n) => {
                            return (Instant::now(), String::from_utf8_lossy(&buf[..n]).into())
                        }
                        Err(e)
                            if e.kind() == std::io::ErrorKind::WouldBlock
                                || e.kind() == std::io::ErrorKind::TimedOut => {}
                        Err(_) => return (Instant::now(), String::new()),
                    }
                }
                (Instant::now(), "sent the whole head".into())
            })
        })
        .collect();
    // An honest client is served while they trickle.
    let (cert, key) = {
        let viewer = TestPki::client(&pki.intermediate, "viewer");
        pki.write_client("viewer", &viewer, &[&pki.intermediate])
    };
    let r = Curl::new(&server, "localhost", "/", &pki.path("root.pem"))
        .cert(&cert, &key)
        .run();
    assert_eq!(r.status, Some(200), "{r:?}");
    for t in slow {
        let (ended, answer) = t.join().expect("slow client");
        assert_ne!(
            answer, "sent the whole head",
            "a slowloris head was never cut"
        );
        assert!(
            answer.is_empty() || answer.starts_with("HTTP/1.1 408"),
            "{answer}"
        );
        let took = ended - started;
        assert!(took < Duration::from_secs(8), "cut after {took:?}");
    }
    assert_eq!(
        origin.requests_served(),
        1,
        "only the honest request reaches the origin"
    );
}

/// Raises this process's open-file limit to its hard limit; the limit reached.
fn raise_nofile() -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit write to and read from a valid rlimit.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return 0;
        }
        limit.rlim_cur = limit.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit);
    }
    limit.rlim_cur
}

#[test]
fn five_thousand_idle_connections_are_held_in_bounded_memory() {
    const IDLE: usize = 5000;
    assert!(
        raise_nofile() >= IDLE as u64 + 200,
        "this test needs {} open files (ulimit -n)",
        IDLE + 200
    );
    let pki = TestPki::new();
    let origin = origin();
    let server = optional_server(
        &pki,
        origin.addr(),
        "[server.timeouts]\nidle_keepalive = \"600s\"\n",
    );
    let tls = connector(&pki);
    // Warm up (buffers, caches) before the baseline.
    let warm: Vec<_> = (0..50)
        .map(|_| serve_one(&tls, connect_from(&server, [127, 0, 0, 1])).expect("served"))
        .collect();
    drop(warm);
    let before = server.rss_kib();
    // Four client threads; each connection is handshaken, used once and left idle.
    let held: Vec<_> = std::thread::scope(|scope| {
        let openers: Vec<_> = (0..4)
            .map(|_| {
                scope.spawn(|| {
                    (0..IDLE / 4)
                        .map(|i| {
                            serve_one(&tls, connect_from(&server, [127, 0, 0, 1]))
                                .unwrap_or_else(|| panic!("idle connection {i} refused"))
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        openers
            .into_iter()
            .flat_map(|t| t.join().expect("opener"))
            .collect()
    });
    assert_eq!(held.len(), IDLE);
    let after = server.rss_kib();
    let per_connection = (after.saturating_sub(before)) as f64 / IDLE as f64;
    eprintln!("{IDLE} idle connections: {before} -> {after} KiB, {per_connection:.1} KiB each");
    if !under_sanitizer() {
        // The benchmark measures about 8 KiB per idle TLS connection (README, release build);
        // twice that leaves room for the debug build and allocator slack.
        assert!(
            per_connection < 16.0,
            "{per_connection:.1} KiB per idle connection"
        );
    }
    // Every one of them is still usable.
    for mut conn in held.into_iter().step_by(500) {
        conn.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
            .expect("write");
        let response = read_response(&mut conn).expect("response");
        assert_eq!(response.status, 200, "{}", response.head);
    }
}

/// CPU time (user + system) the process has used so far.
fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("stat");
    // Fields after the command name (which ends with the last ')'): utime is the 12th, stime
    // the 13th, in clock ticks.
    let after = &stat[stat.rfind(')').expect("comm") + 2..];
    let fields: Vec<&str> = after.split(' ').collect();
    let ticks: u64 =
        fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime");
    // SAFETY: sysconf has no preconditions.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Duration::from_millis(ticks * 1000 / per_second)
}

#[test]
fn out_of_file_descriptors_accept_backs_off_instead_of_spinning() {
    let pki = TestPki::new();
    let origin = origin();
    let site = SiteConfig::new(origin.addr(), "optional", Some(pki.path("bundle.pem")));
    let text = config_text(&pki, &[site], "[server.timeouts]\nhandshake = \"60s\"\n")
        .replace("workers = 2", "workers = 1");
    let dir = tempfile::tempdir().expect("dir");
    let config = dir.path().join("portcullis.toml");
    std::fs::write(&config, text).expect("config");
    // 96 descriptors for everything: the runtime, logs and listeners take a few dozen.
    let server = Portcullis::start_wrapped(&config, dir, &[], &["prlimit", "--nofile=96", "--"]);
    // Far more TCP connections than descriptors: the kernel completes them into the backlog
    // and accept(2) fails with EMFILE once the process is out of descriptors.
    let held: Vec<TcpStream> = (0..150)
        .map(|_| connect_from(&server, [127, 0, 0, 1]))
        .collect();
    wait_for(
        Duration::from_secs(10),
        "accept to fail with EMFILE",
        || server.log().contains("Too many open files").then_some(()),
    );
    let before = cpu_time(server.pid());
    std::thread::sleep(Duration::from_secs(2));
    let used = cpu_time(server.pid()) - before;
    assert!(
        used < Duration::from_millis(1000),
        "{used:?} of CPU in 2 s out of descriptors"
    );
    // Once the connections go, the worker serves again.
    drop(held);
    let tls = connector(&pki);
    wait_for(
        Duration::from_secs(30),
        "a connection to be served again",
        || serve_one(&tls, connect_from(&server, [127, 0, 0, 1])),
    );
}
