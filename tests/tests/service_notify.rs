//! systemd's `Type=notify` protocol against the real binary, with a fake `NOTIFY_SOCKET` (a
//! Unix datagram socket the test reads): `READY=1` only once the port accepts TLS (and never
//! for a configuration that cannot start), `RELOADING=1` then `READY=1` around SIGHUP
//! (applied or refused), `STOPPING=1` on SIGTERM, watchdog pings while the workers run, and
//! `MAINPID=` to the new process of a binary upgrade, the old one draining without
//! `STOPPING=1`.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use portcullis_e2e::{
    config_text, origin, portcullis_bin, process_alive, upgrade_with_cli, Curl, NotifySocket,
    Portcullis, SiteConfig, TestPki,
};

const LIMIT: Duration = Duration::from_secs(30);

fn has_line(messages: &[String], line: &str) -> bool {
    messages.iter().any(|m| m.lines().any(|l| l == line))
}

/// A free loopback port (bound and released; nothing else on this machine picks ports in
/// this range deliberately).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

#[test]
fn ready_arrives_only_once_the_port_accepts_tls_and_never_for_a_bad_configuration() {
    let pki = TestPki::new();
    let origin = origin();
    let port = free_port();
    let site = SiteConfig::new(origin.addr(), "required", Some(pki.path("bundle.pem")));
    let config =
        config_text(&pki, &[site], "").replace("127.0.0.1:0", &format!("127.0.0.1:{port}"));
    let config_path = pki.write("portcullis.toml", &config);
    let notify = NotifySocket::new();
    // Not the test helper: it waits for the `ready` line on stdout; here only the datagram
    // tells when to connect.
    let mut child = Command::new(portcullis_bin())
        .args(["run", "--config"])
        .arg(&config_path)
        .env("NOTIFY_SOCKET", notify.env())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn portcullis");
    let messages = notify.until("READY=1", LIMIT);
    assert_eq!(messages.len(), 1, "nothing before READY=1: {messages:?}");
    assert!(messages[0].contains("STATUS=serving on 1 address(es), 2 worker(s)"));
    // At once, without retrying: the port accepts TLS and the request is proxied.
    let client = TestPki::client(&pki.intermediate, "notify-client");
    let (cert, key) = pki.write_client("notify-client", &client, &[&pki.intermediate]);
    let out = Command::new("curl")
        .args([
            "-s",
            "--max-time",
            "10",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
        ])
        .arg("--cacert")
        .arg(pki.path("root.pem"))
        .arg("--cert")
        .arg(&cert)
        .arg("--key")
        .arg(&key)
        .arg(format!("https://localhost:{port}/"))
        .output()
        .expect("curl");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "200");
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let status = child.wait().expect("exit");
    assert!(status.success());

    // A configuration that cannot start (the key does not match the certificate): the
    // process exits with an error and never says READY=1.
    let other = TestPki::new();
    std::fs::copy(other.path("server.key"), pki.path("server.key")).expect("swap key");
    let notify = NotifySocket::new();
    let out = Command::new("timeout")
        .arg("30")
        .arg(portcullis_bin())
        .args(["run", "--config"])
        .arg(&config_path)
        .env("NOTIFY_SOCKET", notify.env())
        .output()
        .expect("run");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("private key does not match"));
    let messages = notify.drain(Duration::from_millis(200));
    assert!(!has_line(&messages, "READY=1"), "{messages:?}");
}

#[test]
fn sighup_sends_reloading_then_ready_and_sigterm_sends_stopping() {
    let pki = TestPki::new();
    let origin = origin();
    let site = SiteConfig::new(origin.addr(), "required", Some(pki.path("bundle.pem")));
    let config = config_text(&pki, &[site], "[sources]\nwatch_files = false\n");
    let config_path = pki.write("portcullis.toml", &config);
    let notify = NotifySocket::new();
    let mut server = Portcullis::start_file_with_env(
        &config_path,
        tempfile::tempdir().expect("dir"),
        &[("NOTIFY_SOCKET", notify.env())],
    );
    notify.until("READY=1", LIMIT);

    assert!(server.reload_with_sighup());
    let messages = notify.until("READY=1", LIMIT);
    assert_eq!(messages.len(), 2, "{messages:?}");
    assert!(has_line(&messages[..1], "RELOADING=1"), "{messages:?}");
    assert!(
        messages[0]
            .lines()
            .any(|l| l.starts_with("MONOTONIC_USEC=")),
        "{messages:?}"
    );
    assert!(
        messages[1].contains("STATUS=serving generation 2"),
        "{messages:?}"
    );

    // A refused reload: the process serves on, so READY=1 follows too.
    std::fs::write(&config_path, "[server]\nlisten = 7\n").expect("break config");
    assert!(!server.reload_with_sighup());
    let messages = notify.until("READY=1", LIMIT);
    assert!(has_line(&messages[..1], "RELOADING=1"), "{messages:?}");
    assert!(
        messages[1].contains("(the last reload was refused)"),
        "{messages:?}"
    );

    server.terminate();
    let messages = notify.until("STOPPING=1", LIMIT);
    assert_eq!(messages.len(), 1, "{messages:?}");
    assert_eq!(server.stop(), Some(0));
}

#[test]
fn the_watchdog_is_pinged_while_the_workers_run() {
    let pki = TestPki::new();
    let origin = origin();
    let site = SiteConfig::new(origin.addr(), "required", Some(pki.path("bundle.pem")));
    let notify = NotifySocket::new();
    let mut server = Portcullis::start_file_with_env(
        &pki.write("portcullis.toml", &config_text(&pki, &[site], "")),
        tempfile::tempdir().expect("dir"),
        // 600 ms: a ping at least every 300 ms.
        &[("NOTIFY_SOCKET", notify.env()), ("WATCHDOG_USEC", "600000")],
    );
    notify.until("READY=1", LIMIT);
    let start = Instant::now();
    for _ in 0..5 {
        notify.until("WATCHDOG=1", Duration::from_secs(5));
    }
    // Five pings (the first at once) at most 300 ms apart, with a generous margin for the
    // shared machine.
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
    assert!(server.log().contains("systemd watchdog enabled"));

    // A watchdog meant for another process (WATCHDOG_PID) is not this one's.
    server.stop();
    let notify = NotifySocket::new();
    let _other = Portcullis::start_file_with_env(
        &pki.path("portcullis.toml"),
        tempfile::tempdir().expect("dir"),
        &[
            ("NOTIFY_SOCKET", notify.env()),
            ("WATCHDOG_USEC", "600000"),
            ("WATCHDOG_PID", "1"),
        ],
    );
    notify.until("READY=1", LIMIT);
    let messages = notify.drain(Duration::from_millis(700));
    assert!(!has_line(&messages, "WATCHDOG=1"), "{messages:?}");
}

#[test]
fn a_binary_upgrade_moves_the_main_pid_and_the_old_process_does_not_say_stopping() {
    let pki = TestPki::new();
    let origin = origin();
    let site = SiteConfig::new(origin.addr(), "required", Some(pki.path("bundle.pem")));
    let notify = NotifySocket::new();
    let mut old = Portcullis::start_file_with_env(
        &pki.write("portcullis.toml", &config_text(&pki, &[site], "")),
        tempfile::tempdir().expect("dir"),
        &[
            ("NOTIFY_SOCKET", notify.env()),
            ("WATCHDOG_USEC", "2000000"),
        ],
    );
    notify.until("READY=1", LIMIT);
    let old_pid = old.pid();
    let new = upgrade_with_cli(old_pid).unwrap_or_else(|e| panic!("{e}\n{}", old.log()));
    let new_pid = new.pid;
    assert_ne!(new_pid, old_pid);
    assert_eq!(old.wait_exit(LIMIT), Some(0), "{}", old.log());
    assert!(new.alive());

    // The old process named the new main PID; the new one then said READY=1 and pings the
    // watchdog. Nobody said STOPPING=1: the service goes on.
    let messages = notify.until(&format!("MAINPID={new_pid}"), LIMIT);
    let after = notify.until("READY=1", LIMIT);
    notify.until("WATCHDOG=1", Duration::from_secs(5));
    for message in messages.iter().chain(&after) {
        assert!(!message.contains("STOPPING=1"), "{messages:?} {after:?}");
    }
    assert!(!process_alive(old_pid));

    // It serves.
    let client = TestPki::client(&pki.intermediate, "after-upgrade");
    let (cert, key) = pki.write_client("after-upgrade", &client, &[&pki.intermediate]);
    let result = Curl::new(&old, "localhost", "/", &pki.path("root.pem"))
        .cert(&cert, &key)
        .run();
    assert_eq!(result.status, Some(200));
    assert!(new.stop());
    let messages = notify.until("STOPPING=1", LIMIT);
    assert!(!messages.is_empty());
}
