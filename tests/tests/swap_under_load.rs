//! Swapping the trust store under continuous handshake load, against the real binary: the
//! bundle alternates 100 times between two versions (`POST /reload` after each write) while
//! `portcullis-loadtest handshake` runs full handshakes with clients valid in both, and two
//! checker threads run handshakes with clients valid in only one each. No handshake of a
//! client valid in both may fail; every handshake of a one-bundle client that ran entirely
//! between two swaps must be decided exactly by the bundle live then.

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use boring::ssl::{SslConnector, SslFiletype, SslMethod};
use portcullis_e2e::{
    admin_json, config_text, origin, wait_for, workspace_bin, CertKind, CertSpec, Issued,
    Portcullis, SiteConfig, TestPki,
};

/// Number of swaps.
const SWAPS: usize = 100;
/// The load generator's time limit: an upper bound; it is stopped (SIGINT) after the swaps.
const LOAD_SECONDS: u64 = 600;

/// One handshake of a one-bundle client.
#[derive(Debug, Clone, Copy)]
struct Attempt {
    start: Instant,
    end: Instant,
    accepted: bool,
}

/// One swap: the live bundle changes somewhere in `[begin, end]`; `bundle` is live after it.
#[derive(Debug, Clone, Copy)]
struct Swap {
    begin: Instant,
    end: Instant,
    bundle: usize,
}

/// Runs one handshake + request with `cert`; true when the server answered 200, false when
/// it refused the certificate.
fn attempt(server: &Portcullis, root: &Path, cert: &Path, key: &Path) -> bool {
    let mut connector = SslConnector::builder(SslMethod::tls()).expect("connector");
    connector.set_ca_file(root).expect("ca");
    connector.set_certificate_chain_file(cert).expect("cert");
    connector
        .set_private_key_file(key, SslFiletype::PEM)
        .expect("key");
    let tcp = std::net::TcpStream::connect(server.addr).expect("connect");
    tcp.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    // In TLS 1.3 the server decides after the client's last flight: read the answer.
    let Ok(mut tls) = connector.build().connect("localhost", tcp) else {
        return false;
    };
    if tls
        .write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut head = [0u8; 12];
    match tls.read_exact(&mut head) {
        Ok(()) => {
            assert_eq!(&head, b"HTTP/1.1 200", "accepted but not served");
            true
        }
        Err(_) => false,
    }
}

#[test]
fn a_hundred_trust_store_swaps_under_load_fail_no_handshake() {
    let pki = TestPki::new();
    let origin = origin();
    let only_1 =
        Issued::self_signed(CertSpec::new("Only In Bundle One", CertKind::RootCa)).expect("CA 1");
    let only_2 =
        Issued::self_signed(CertSpec::new("Only In Bundle Two", CertKind::RootCa)).expect("CA 2");
    let common = format!("{}{}", pki.root.cert_pem, pki.intermediate.cert_pem);
    let bundles = [
        format!("{common}{}", only_1.cert_pem),
        format!("{common}{}", only_2.cert_pem),
    ];
    let bundle_path = pki.write("bundle.pem", &bundles[0]);
    let mut site = SiteConfig::new(origin.addr(), "required", Some(bundle_path.clone()));
    site.mtls_extra = String::new();
    let config = config_text(
        &pki,
        &[site],
        "[admin]\nlisten = \"127.0.0.1:0\"\n\n[sources]\nwatch_files = false\n",
    );
    let server = Portcullis::start_file(
        &pki.write("portcullis.toml", &config),
        tempfile::tempdir().expect("dir"),
    );
    let admin = server.admin.expect("admin");

    // Clients valid in both bundles, for the load generator.
    let certs = pki.path("loadtest-certs");
    std::fs::create_dir(&certs).expect("mkdir");
    for i in 0..4 {
        let client = TestPki::client(&pki.intermediate, &format!("both-{i}"));
        std::fs::write(
            certs.join(format!("client-{i}.pem")),
            format!("{}{}", client.cert_pem, pki.intermediate.cert_pem),
        )
        .expect("write cert");
        std::fs::write(certs.join(format!("client-{i}.key")), &client.key_pem).expect("key");
    }
    // One client per bundle-specific CA.
    let one = TestPki::client(&only_1, "only-one");
    let two = TestPki::client(&only_2, "only-two");
    let one_files = pki.write_client("only-one", &one, &[]);
    let two_files = pki.write_client("only-two", &two, &[]);
    let root = pki.path("root.pem");
    assert!(attempt(&server, &root, &one_files.0, &one_files.1));
    assert!(!attempt(&server, &root, &two_files.0, &two_files.1));

    let mut load = Command::new(workspace_bin("portcullis-loadtest"))
        .args(["handshake", "--target", &server.addr.to_string()])
        .args(["--sni", "localhost", "--ca"])
        .arg(&root)
        .arg("--certs")
        .arg(&certs)
        .args(["--threads", "3", "--duration", &LOAD_SECONDS.to_string()])
        .args(["--json", "--no-progress"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start portcullis-loadtest");

    let stop = AtomicBool::new(false);
    let attempts: [Mutex<Vec<Attempt>>; 2] = [Mutex::new(Vec::new()), Mutex::new(Vec::new())];
    let counts: [AtomicUsize; 2] = [AtomicUsize::new(0), AtomicUsize::new(0)];
    let mut swaps = Vec::with_capacity(SWAPS);
    let swapping = Instant::now();
    std::thread::scope(|scope| {
        for (slot, files) in [&one_files, &two_files].into_iter().enumerate() {
            let (stop, attempts, counts, server, root) =
                (&stop, &attempts, &counts, &server, &root);
            scope.spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let start = Instant::now();
                    let accepted = attempt(server, root, &files.0, &files.1);
                    let end = Instant::now();
                    attempts[slot].lock().expect("attempts").push(Attempt {
                        start,
                        end,
                        accepted,
                    });
                    counts[slot].fetch_add(1, Ordering::Relaxed);
                }
            });
        }
        for k in 0..SWAPS {
            let bundle = (k + 1) % 2;
            let begin = Instant::now();
            std::fs::write(&bundle_path, &bundles[bundle]).expect("write bundle");
            let (code, body) = admin_json(admin, "POST", "/reload");
            assert_eq!(code, 200, "swap {k}: {body}");
            let end = Instant::now();
            swaps.push(Swap { begin, end, bundle });
            // Let each checker finish at least one more handshake inside this window (the
            // one under way may have started before the swap).
            let seen = [0, 1].map(|i| counts[i].load(Ordering::Relaxed));
            wait_for(Duration::from_secs(10), "checker handshakes", || {
                (0..2)
                    .all(|i| counts[i].load(Ordering::Relaxed) >= seen[i] + 2)
                    .then_some(())
            });
        }
        stop.store(true, Ordering::Relaxed);
    });
    let swapping = swapping.elapsed();
    assert!(
        load.try_wait().expect("loadtest status").is_none(),
        "the load generator ended before the last swap"
    );
    // Ends the run early; it prints the summary of what ran.
    let interrupted = Command::new("kill")
        .args(["-INT", &load.id().to_string()])
        .status();
    assert!(interrupted.is_ok_and(|s| s.success()), "kill -INT loadtest");
    let output = load.wait_with_output().expect("loadtest output");
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "loadtest JSON: {e}\n{}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    });
    let completed = report["completed"].as_u64().expect("completed");
    assert!(completed > 0, "{report:#}");
    assert_eq!(
        report["unexpected_errors"], 0,
        "clients valid in both bundles failed during the swaps: {report:#}"
    );

    // Each one-bundle handshake that ran between two swaps matches the bundle live then.
    let contains = |bundle: usize, slot: usize| bundle == slot;
    let mut exact = [0usize; 2];
    let mut during_swap = [0usize; 2];
    for slot in 0..2 {
        for a in attempts[slot].lock().expect("attempts").iter() {
            if swaps.iter().any(|s| a.start <= s.end && s.begin <= a.end) {
                during_swap[slot] += 1;
                continue;
            }
            let live = swaps
                .iter()
                .rev()
                .find(|s| s.end < a.start)
                .map_or(0, |s| s.bundle);
            assert_eq!(
                a.accepted,
                contains(live, slot),
                "client of bundle {} decided against bundle {live}: {a:?}",
                slot + 1
            );
            exact[slot] += 1;
        }
    }
    println!(
        "{SWAPS} swaps in {:.1} s; load: {completed} handshakes in {:.1} s, 0 failed; \
         one-bundle clients: {exact:?} handshakes checked exactly, {during_swap:?} overlapping \
         a swap",
        swapping.as_secs_f64(),
        report["elapsed_secs"].as_f64().unwrap_or_default()
    );
    assert!(exact.iter().all(|&n| n >= SWAPS), "{exact:?}");
}
