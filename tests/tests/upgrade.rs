//! Binary upgrades against the real binary: `portcullis upgrade --pid` (and SIGUSR2) swap the
//! process while `portcullis-loadtest keepalive` and `handshake` run, with zero failed
//! connections and requests, a new PID, the old process exiting 0 after its drain, the admin
//! socket and session tickets carried over; a new binary that cannot start, or a
//! configuration it refuses, leaves the old process serving.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use portcullis_e2e::{
    config_text, origin, portcullis_bin, s_client_with_session, signal, upgrade_with_cli, wait_for,
    workspace_bin, Curl, Portcullis, SiteConfig, TestPki,
};

const LIMIT: Duration = Duration::from_secs(30);
/// How long each load generator runs; the upgrade happens while they do.
const LOAD_SECONDS: &str = "8";

/// `GET` on the admin Unix socket: the HTTP status.
fn admin_status(socket: &Path, path: &str) -> u16 {
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
        .arg("--unix-socket")
        .arg(socket)
        .arg(format!("http://admin{path}"))
        .output()
        .expect("curl");
    String::from_utf8_lossy(&out.stdout).parse().unwrap_or(0)
}

/// The sum of `portcullis_requests_total` in the admin API's metrics.
fn requests_served(socket: &Path) -> u64 {
    let out = Command::new("curl")
        .args(["-s", "--max-time", "10", "--unix-socket"])
        .arg(socket)
        .arg("http://admin/metrics")
        .output()
        .expect("curl");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.starts_with("portcullis_requests_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

/// Starts `portcullis-loadtest MODE` against `addr` with the clients in `certs`.
fn load(
    mode: &str,
    addr: std::net::SocketAddr,
    root: &Path,
    certs: &Path,
    extra: &[&str],
) -> Child {
    Command::new(workspace_bin("portcullis-loadtest"))
        .args([
            mode,
            "--target",
            &addr.to_string(),
            "--sni",
            "localhost",
            "--ca",
        ])
        .arg(root)
        .arg("--certs")
        .arg(certs)
        .args(["--threads", "1", "--duration", LOAD_SECONDS])
        .args(extra)
        .args(["--json", "--no-progress"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start portcullis-loadtest")
}

/// Waits for a load generator and returns its JSON report.
fn report(load: Child) -> serde_json::Value {
    let output = load.wait_with_output().expect("loadtest output");
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "loadtest JSON: {e}\n{}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    })
}

struct Setup {
    pki: TestPki,
    _origin: portcullis_e2e::DemoOrigin,
    config: PathBuf,
    admin: PathBuf,
}

fn setup() -> Setup {
    let pki = TestPki::new();
    let origin = origin();
    let admin = pki.path("admin.sock");
    let site = SiteConfig::new(origin.addr(), "required", Some(pki.path("bundle.pem")));
    let extra = format!("\n[admin]\nunix_socket = {admin:?}\n\n[sources]\nwatch_files = false\n");
    let config = pki.write("portcullis.toml", &config_text(&pki, &[site], &extra));
    Setup {
        pki,
        _origin: origin,
        config,
        admin,
    }
}

#[test]
fn upgrade_under_keepalive_and_handshake_load_drops_nothing_and_keeps_tickets() {
    let s = setup();
    let mut old = Portcullis::start_file(&s.config, tempfile::tempdir().expect("dir"));
    let old_pid = old.pid();
    let root = s.pki.path("root.pem");
    let certs = s.pki.path("loadtest-certs");
    std::fs::create_dir(&certs).expect("mkdir");
    let client = TestPki::client(&s.pki.intermediate, "load-client");
    std::fs::write(
        certs.join("client-0.pem"),
        format!("{}{}", client.cert_pem, s.pki.intermediate.cert_pem),
    )
    .expect("cert");
    std::fs::write(certs.join("client-0.key"), &client.key_pem).expect("key");
    let (cert, key) = (certs.join("client-0.pem"), certs.join("client-0.key"));

    // A TLS 1.3 session from the old process, to resume on the new one.
    let session = s.pki.path("session.pem");
    let (out, err) = s_client_with_session(&old, &root, &cert, &key, "-sess_out", &session);
    assert!(out.contains("HTTP/1.1 200"), "{out}\n{err}");

    let keepalive = load(
        "keepalive",
        old.addr,
        &root,
        &certs,
        &["-c", "8", "-r", "100000000"],
    );
    let handshake = load("handshake", old.addr, &root, &certs, &[]);
    // Both generators are under way before the upgrade.
    wait_for(LIMIT, "load on the old process", || {
        (requests_served(&s.admin) > 300).then_some(())
    });

    let started = Instant::now();
    let new = upgrade_with_cli(old_pid).unwrap_or_else(|e| panic!("{e}\n{}", old.log()));
    assert_ne!(new.pid, old_pid);
    // The old process drained and exited by itself, with success.
    assert_eq!(old.wait_exit(LIMIT), Some(0), "{}", old.log());
    // A figure for the README, not an assertion: SIGUSR2 to the old process's exit.
    println!(
        "upgrade: SIGUSR2 to the old process's exit (new process ready, old drained) {} ms under load",
        started.elapsed().as_millis()
    );
    let log = old.log();
    assert!(log.contains("binary upgrade: the new process serves; draining this one"));
    assert!(log.contains("stopped"));
    assert!(new.alive());
    // The admin socket file is the new process's now (the old one left it in place).
    assert_eq!(admin_status(&s.admin, "/healthz"), 200);
    // The new process serves the load (its counters started at zero).
    wait_for(LIMIT, "load on the new process", || {
        (requests_served(&s.admin) > 100).then_some(())
    });

    for (name, load) in [("keepalive", keepalive), ("handshake", handshake)] {
        let report = report(load);
        assert!(
            report["completed"].as_u64().unwrap_or(0) > 0,
            "{name}: {report:#}"
        );
        assert_eq!(report["unexpected_errors"], 0, "{name}: {report:#}");
        println!(
            "{name}: {} completed, {} connections, 0 failed, across the upgrade",
            report["completed"], report["connections"]
        );
    }

    // The session ticket the old process issued resumes on the new one.
    let (out, err) = s_client_with_session(&old, &root, &cert, &key, "-sess_in", &session);
    assert!(out.contains("Reused, TLSv1.3"), "{out}\n{err}");
    assert!(out.contains("HTTP/1.1 200"), "{out}\n{err}");
    assert!(new.stop());
}

#[test]
fn a_new_binary_that_cannot_start_leaves_the_old_process_serving() {
    let s = setup();
    // The service runs a copy of the binary, which the test replaces as a package upgrade
    // would (a new file renamed over the path).
    let bin_dir = tempfile::tempdir().expect("dir");
    let bin = bin_dir.path().join("portcullis");
    std::fs::copy(portcullis_bin(), &bin).expect("copy binary");
    let mut old = Portcullis::start_binary(&bin, &s.config, tempfile::tempdir().expect("dir"), &[]);
    let old_pid = old.pid();
    let client = TestPki::client(&s.pki.intermediate, "client");
    let (cert, key) = s
        .pki
        .write_client("client", &client, &[&s.pki.intermediate]);
    let serves = |server: &Portcullis| {
        Curl::new(server, "localhost", "/", &s.pki.path("root.pem"))
            .cert(&cert, &key)
            .run()
            .status
            == Some(200)
    };
    let replace = |contents: &[u8], mode: u32| {
        use std::os::unix::fs::PermissionsExt as _;
        let temp = bin.with_extension("new");
        std::fs::write(&temp, contents).expect("write new binary");
        std::fs::set_permissions(&temp, std::fs::Permissions::from_mode(mode)).expect("chmod");
        std::fs::rename(&temp, &bin).expect("rename over the binary");
    };

    // 1. A binary that exits at once, upgraded with a plain SIGUSR2.
    replace(b"#!/bin/sh\necho 'broken build' >&2\nexit 3\n", 0o755);
    assert!(signal(old_pid, "USR2"));
    wait_for(LIMIT, "the failed upgrade in the log", || {
        old.log().contains("binary upgrade failed").then_some(())
    });
    let log = old.log();
    assert!(log.contains("exit status 3"), "{log}");
    assert!(log.contains("this process keeps serving"), "{log}");
    assert!(serves(&old));

    // 2. A file that is not executable at all: the CLI reports the failure.
    replace(b"not a program", 0o644);
    let e = upgrade_with_cli(old_pid).err().expect("upgrade must fail");
    assert!(e.contains("keeps serving"), "{e}");
    // The log line may land just after the CLI's answer.
    wait_for(LIMIT, "the failed start in the log", || {
        old.log()
            .contains("cannot start the new binary")
            .then_some(())
    });
    assert!(serves(&old));

    // 3. The real binary, but the configuration it reads is refused: it says why.
    replace(
        &std::fs::read(portcullis_bin()).expect("read binary"),
        0o755,
    );
    let good = std::fs::read_to_string(&s.config).expect("config");
    std::fs::write(&s.config, good.replace("workers = 2", "workers = \"two\"")).expect("break");
    let e = upgrade_with_cli(old_pid).err().expect("upgrade must fail");
    assert!(e.contains("keeps serving"), "{e}");
    wait_for(LIMIT, "the refused configuration in the log", || {
        let log = old.log();
        (log.contains("the new process cannot start") && log.contains("server.workers"))
            .then_some(())
    });
    assert!(serves(&old));
    assert_eq!(admin_status(&s.admin, "/healthz"), 200);

    // 4. Fixed: reloads (held back during each attempt) work again, and the upgrade goes
    // through.
    std::fs::write(&s.config, &good).expect("restore config");
    assert!(old.reload_with_sighup());
    let new = upgrade_with_cli(old_pid).unwrap_or_else(|e| panic!("{e}\n{}", old.log()));
    assert_eq!(old.wait_exit(LIMIT), Some(0));
    assert!(serves(&old), "the new process serves the same address");
    assert!(new.stop());
}
