//! Stock `h2load` (nghttp2-client) load-testing a `required` site through the LD_PRELOAD shim in
//! `loadtest/h2load-client-cert/`, which makes it present a client certificate: with the
//! certificate every request succeeds, over HTTP/1.1 (`--h1`) and in h2load's default HTTP/2
//! mode; without it every handshake is refused.
//!
//! Needs `h2load` (Debian package `nghttp2-client`), a C compiler `cc` (`gcc`) and the OpenSSL 3
//! headers (`libssl-dev`); the test fails, naming the package, when one is missing.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use portcullis_e2e::{OneSite, TestPki};

/// Requests per h2load run.
const REQUESTS: u64 = 2000;
/// Concurrent h2load clients.
const CLIENTS: u64 = 10;
/// How long one h2load run may take.
const RUN_TIMEOUT: Duration = Duration::from_secs(120);

/// The shim's source in the repository.
fn shim_source() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("loadtest")
        .join("h2load-client-cert")
        .join("client_cert_shim.c")
}

/// Fails the test unless `program` runs; names the Debian package that provides it.
fn require(program: &str, version_arg: &str, package: &str) {
    let found = Command::new(program)
        .arg(version_arg)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok();
    assert!(
        found,
        "`{program}` is not installed: install the Debian/Ubuntu package `{package}` \
         (apt-get install -y {package})"
    );
}

/// Builds the shim with `cc` into `dir`; returns the shared object's path.
fn build_shim(dir: &Path) -> PathBuf {
    let out = dir.join("client_cert_shim.so");
    let result = Command::new("cc")
        .args(["-shared", "-fPIC", "-O2", "-o"])
        .arg(&out)
        .arg(shim_source())
        .arg("-ldl")
        .output()
        .expect("run cc");
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert!(
        !stderr.contains("openssl/ssl.h"),
        "the OpenSSL headers are missing: install the Debian/Ubuntu package `libssl-dev`\n{stderr}"
    );
    assert!(
        result.status.success(),
        "building the shim failed:\n{stderr}"
    );
    out
}

/// `requests: N total, N started, N done, N succeeded, ...` as (total, succeeded, failed).
#[derive(Debug, PartialEq, Eq)]
struct Requests {
    total: u64,
    succeeded: u64,
    failed: u64,
}

/// Parses h2load's `requests:` summary line.
fn parse_requests(stdout: &str) -> Option<Requests> {
    let line = stdout
        .lines()
        .find_map(|l| l.trim().strip_prefix("requests:"))?;
    let count = |label: &str| -> Option<u64> {
        line.split(',').find_map(|part| {
            let (n, name) = part.trim().split_once(' ')?;
            (name.trim() == label).then(|| n.parse().ok()).flatten()
        })
    };
    Some(Requests {
        total: count("total")?,
        succeeded: count("succeeded")?,
        failed: count("failed")?,
    })
}

/// Runs `h2load` with `mode` (`--h1`, or HTTP/2 options) against `port` (SNI `localhost`,
/// connecting to 127.0.0.1) with the shim preloaded and, if given, the client certificate and
/// key in the shim's variables.
fn h2load(
    shim: &Path,
    port: u16,
    client: Option<(&Path, &Path)>,
    mode: &[&str],
) -> (Requests, String) {
    let mut cmd = Command::new("h2load");
    cmd.args(mode)
        .arg("-n")
        .arg(REQUESTS.to_string())
        .arg("-c")
        .arg(CLIENTS.to_string())
        .arg(format!("--connect-to=127.0.0.1:{port}"))
        .arg(format!("https://localhost:{port}/"))
        .env("LD_PRELOAD", shim)
        .env_remove("H2LOAD_CLIENT_CERT")
        .env_remove("H2LOAD_CLIENT_KEY")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some((cert, key)) = client {
        cmd.env("H2LOAD_CLIENT_CERT", cert)
            .env("H2LOAD_CLIENT_KEY", key);
    }
    let child = cmd.spawn().expect("spawn h2load");
    let pid = child.id();
    let (tx, rx) = mpsc::channel::<std::io::Result<Output>>();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let output = match rx.recv_timeout(RUN_TIMEOUT) {
        Ok(output) => output.expect("h2load output"),
        Err(_) => {
            let _ = Command::new("kill")
                .arg("-KILL")
                .arg(pid.to_string())
                .status();
            panic!("h2load did not finish within {RUN_TIMEOUT:?}");
        }
    };
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    let transcript = format!(
        "status: {}\nstdout:\n{stdout}\nstderr:\n{stderr}",
        output.status
    );
    let requests = parse_requests(&stdout)
        .unwrap_or_else(|| panic!("no `requests:` line in h2load's output:\n{transcript}"));
    (requests, transcript)
}

#[test]
fn parses_h2load_summary() {
    let out = "finished in 354.01ms, 5649.59 req/s, 8.14MB/s\n\
               requests: 2000 total, 10 started, 0 done, 7 succeeded, 1993 failed, 1993 errored, 0 timeout\n";
    assert_eq!(
        parse_requests(out),
        Some(Requests {
            total: 2000,
            succeeded: 7,
            failed: 1993
        })
    );
    assert_eq!(parse_requests("no summary"), None);
}

#[test]
fn h2load_with_shim_presents_client_certificate() {
    require("h2load", "--version", "nghttp2-client");
    require("cc", "--version", "gcc");
    let build = tempfile::tempdir().expect("temp dir");
    let shim = build_shim(build.path());

    let OneSite {
        pki,
        origin: _origin,
        server,
    } = OneSite::start("required", Some("bundle.pem"), "", "");
    let client = TestPki::client(&pki.intermediate, "h2load-client");
    let (cert, key) = pki.write_client("h2load", &client, &[&pki.intermediate]);
    let port = server.addr.port();

    let (with_cert, transcript) = h2load(&shim, port, Some((&cert, &key)), &["--h1"]);
    assert_eq!(
        with_cert,
        Requests {
            total: REQUESTS,
            succeeded: REQUESTS,
            failed: 0
        },
        "with the client certificate every request must succeed:\n{transcript}"
    );

    // h2load's default protocol: HTTP/2 (ALPN h2), ten streams at a time per connection.
    let (h2, transcript) = h2load(&shim, port, Some((&cert, &key)), &["-m", "10"]);
    assert!(
        transcript.contains("Application protocol: h2"),
        "h2load should negotiate HTTP/2:\n{transcript}"
    );
    assert_eq!(
        h2,
        Requests {
            total: REQUESTS,
            succeeded: REQUESTS,
            failed: 0
        },
        "over HTTP/2 every request must succeed:\n{transcript}"
    );

    let (without, transcript) = h2load(&shim, port, None, &["--h1"]);
    assert_eq!(
        without.succeeded, 0,
        "without a client certificate no request may succeed:\n{transcript}"
    );
    assert_eq!(
        without.failed, REQUESTS,
        "without a client certificate every request must fail:\n{transcript}"
    );
    // The refusals are the server's: no certificate was offered. (The log is written right
    // after the alert, so give it a moment.)
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !server.log().contains("ClientCertMissing") && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        server.log().contains("ClientCertMissing"),
        "the server should log handshakes refused for a missing certificate:\n{}",
        server.log()
    );
}
