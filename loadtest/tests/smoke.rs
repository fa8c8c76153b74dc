//! End-to-end smoke test: every mode for about a second against the real `portcullis` binary
//! (built by `cargo test --workspace`) in front of the demo echo origin, on 127.0.0.1.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use portcullis_e2e::{CertKind, CertSpec, Issued, OneSite, TestPki};
use portcullis_loadtest::{run, CertSource, Config, Mode, Summary, TlsVersion};

/// Writes `clients` as `client-N.pem` (leaf + `chain`) / `client-N.key` into a new directory.
fn cert_dir(pki: &TestPki, name: &str, clients: &[Issued], chain: &Issued) -> PathBuf {
    let dir = pki.path(name);
    std::fs::create_dir(&dir).expect("create cert dir");
    for (i, client) in clients.iter().enumerate() {
        std::fs::write(
            dir.join(format!("client-{i}.pem")),
            format!("{}{}", client.cert_pem, chain.cert_pem),
        )
        .expect("write client cert");
        std::fs::write(dir.join(format!("client-{i}.key")), &client.key_pem)
            .expect("write client key");
    }
    dir
}

fn config(site: &OneSite, mode: Mode, certs: CertSource) -> Config {
    let mut config = Config::new(mode, site.server.addr);
    config.ca = Some(site.pki.path("root.pem"));
    config.certs = certs;
    config.threads = 2;
    config.duration = Some(Duration::from_secs(1));
    config.timeout = Duration::from_secs(10);
    config
}

fn check_clean(summary: &Summary) {
    println!("{}", summary.to_table());
    assert!(summary.completed > 0, "nothing completed");
    assert_eq!(summary.unexpected_errors, 0, "{:?}", summary.errors);
    assert!(summary.passed);
    assert!(summary.latency.count > 0 && summary.latency.p50_us > 0);
}

fn loadtest_bin(args: &[&str]) -> (Option<i32>, String, String) {
    let out = Command::new("timeout")
        .arg("60")
        .arg(env!("CARGO_BIN_EXE_portcullis-loadtest"))
        .args(args)
        .output()
        .expect("run portcullis-loadtest");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn path_str(path: &Path) -> &str {
    path.to_str().expect("utf-8 temp path")
}

#[test]
fn every_mode_against_the_real_data_plane() {
    let site = OneSite::start("required", Some("bundle.pem"), "", "");
    let pki = &site.pki;
    let clients: Vec<Issued> = (0..4)
        .map(|i| TestPki::client(&pki.intermediate, &format!("load-{i}")))
        .collect();
    let dir = cert_dir(pki, "clients", &clients, &pki.intermediate);
    let ca_cert = pki.write("issuing.pem", &pki.intermediate.cert_pem);
    let ca_key = pki.write("issuing.key", &pki.intermediate.key_pem);
    let generated = CertSource::Generate {
        count: 6,
        ca_cert: ca_cert.clone(),
        ca_key: ca_key.clone(),
    };

    // Full handshakes, TLS 1.3, certificates from a directory.
    let summary = run(&config(
        &site,
        Mode::Handshake { resume: false },
        CertSource::Dir(dir.clone()),
    ))
    .expect("handshake run");
    check_clean(&summary);
    assert_eq!(summary.client_certs, 4);
    assert_eq!(summary.full_handshakes, summary.completed);
    assert_eq!(summary.resumed, 0);

    // Resumed handshakes with minted certificates, TLS 1.3 and TLS 1.2.
    for version in [TlsVersion::Tls13, TlsVersion::Tls12] {
        let mut resume = config(&site, Mode::Handshake { resume: true }, generated.clone());
        resume.version = version;
        let summary = run(&resume).expect("resume run");
        check_clean(&summary);
        assert!(summary.resumed > 0, "{version:?}: nothing resumed");
        assert_eq!(summary.errors_of("not_resumed"), 0);
        assert!(
            summary.full_handshakes <= 2 * 6,
            "{version:?}: one full handshake per certificate (and thread) at most: {}",
            summary.full_handshakes
        );
    }

    // Keep-alive: 4 connections x 50 requests.
    let summary = run(&config(
        &site,
        Mode::KeepAlive {
            connections: 4,
            requests: 50,
        },
        CertSource::Dir(dir.clone()),
    ))
    .expect("keepalive run");
    check_clean(&summary);
    assert_eq!(summary.completed, 200);
    assert_eq!(summary.connections, 4);

    // Open loop: 200 requests/s for a second over 4 connections.
    let summary = run(&config(
        &site,
        Mode::Rate {
            rate: 200.0,
            connections: 4,
        },
        CertSource::Dir(dir.clone()),
    ))
    .expect("rate run");
    check_clean(&summary);
    assert_eq!(summary.completed, 200);
    let service = summary.service_time.expect("service time in rate mode");
    assert!(summary.latency.max_us >= service.max_us.saturating_sub(1000));

    // A client certificate from an unknown CA is refused, never a success.
    let stranger_ca =
        Issued::self_signed(CertSpec::new("Stranger CA", CertKind::RootCa)).expect("stranger CA");
    let stranger = TestPki::client(&stranger_ca, "stranger");
    let strangers = cert_dir(pki, "strangers", &[stranger], &stranger_ca);
    let mut refused = config(
        &site,
        Mode::Handshake { resume: false },
        CertSource::Dir(strangers.clone()),
    );
    refused.count = Some(20);
    refused.duration = None;
    let summary = run(&refused).expect("refused run");
    println!("{}", summary.to_table());
    assert_eq!(summary.completed, 0);
    assert_eq!(
        summary.errors_of("handshake_refused"),
        20,
        "{:?}",
        summary.errors
    );
    assert!(summary.errors.iter().all(|e| !e.expected));
    assert!(!summary.passed);
    // ... and with --expect-refused that is the expected outcome.
    refused.expect_refused = true;
    let summary = run(&refused).expect("expect-refused run");
    assert_eq!(summary.completed, 20);
    assert_eq!(summary.unexpected_errors, 0, "{:?}", summary.errors);
    assert!(summary.passed);
    // A valid certificate under --expect-refused is an error.
    let mut accepted = config(
        &site,
        Mode::Handshake { resume: false },
        CertSource::Dir(dir.clone()),
    );
    accepted.expect_refused = true;
    accepted.count = Some(5);
    let summary = run(&accepted).expect("accepted run");
    assert_eq!(summary.errors_of("accepted"), 5);
    assert!(!summary.passed);

    // The binary: JSON summary and exit codes.
    let target = site.server.addr.to_string();
    let root = pki.path("root.pem");
    let (code, stdout, stderr) = loadtest_bin(&[
        "keepalive",
        "--target",
        &target,
        "--ca",
        path_str(&root),
        "--generate",
        "3",
        "--ca-cert",
        path_str(&ca_cert),
        "--ca-key",
        path_str(&ca_key),
        "-c",
        "2",
        "-r",
        "10",
        "--json",
    ]);
    assert_eq!(code, Some(0), "{stderr}");
    let json: serde_json::Value = serde_json::from_str(&stdout).expect("JSON summary");
    assert_eq!(json["completed"], 20);
    assert_eq!(json["unexpected_errors"], 0);
    assert_eq!(json["client_certs"], 3);

    let (code, stdout, _) = loadtest_bin(&[
        "handshake",
        "--target",
        &target,
        "--ca",
        path_str(&root),
        "--certs",
        path_str(&strangers),
        "--count",
        "3",
        "--no-progress",
    ]);
    assert_eq!(code, Some(1), "unexpected refusals fail the run: {stdout}");
    assert!(stdout.contains("handshake_refused("), "{stdout}");

    let (code, _, stderr) = loadtest_bin(&[
        "handshake",
        "--target",
        "192.0.2.1:443",
        "--insecure",
        "--count",
        "1",
    ]);
    assert_eq!(code, Some(2));
    assert!(stderr.contains("only loopback"), "{stderr}");
}
