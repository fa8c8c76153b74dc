//! TLS details a client can see, checked with `openssl s_client` against the real binary: the
//! signature algorithms the CertificateRequest advertises (no SHA-1, no ML-DSA unless
//! configured; a per-site list), old protocol versions refused, renegotiation refused with
//! `no_renegotiation`, early data never accepted, the TLS 1.2 suite chosen in the server's
//! order; the worker keeps serving after each.

use std::path::Path;

use portcullis_e2e::{openssl, s_client_with_session, Curl, OneSite, Portcullis, TestPki};

/// `openssl s_client` to `server` as `localhost` with extra `args`; (stdout + stderr).
fn s_client(server: &Portcullis, pki: &TestPki, args: &[&str], stdin: &str) -> String {
    let connect = format!("127.0.0.1:{}", server.addr.port());
    let ca = pki.path("root.pem");
    let mut all = vec![
        "s_client",
        "-connect",
        &connect,
        "-servername",
        "localhost",
        "-CAfile",
        ca.to_str().expect("path"),
    ];
    all.extend_from_slice(args);
    let out = openssl(&all, stdin);
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A TLS 1.2 `openssl s_client` session that asks to renegotiate (`R`) once its handshake has
/// finished; the transcript (stdout + stderr) once the client ends (bounded by `timeout`).
fn renegotiate(server: &Portcullis, pki: &TestPki, cert: &str, key: &str) -> String {
    use std::io::{BufRead, BufReader, Read, Write};
    use std::process::{Command, Stdio};
    let mut child = Command::new("timeout")
        .args(["20", "openssl", "s_client", "-connect"])
        .arg(format!("127.0.0.1:{}", server.addr.port()))
        .args(["-servername", "localhost", "-tls1_2"])
        .args(["-cert", cert, "-key", key, "-CAfile"])
        .arg(pki.path("root.pem"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run openssl");
    let mut stdin = child.stdin.take().expect("stdin");
    let mut stderr = child.stderr.take().expect("stderr");
    let errors = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let mut transcript = String::new();
    let mut asked = false;
    for line in BufReader::new(child.stdout.take().expect("stdout")).lines() {
        let Ok(line) = line else { break };
        transcript.push_str(&line);
        transcript.push('\n');
        // The session summary ends the handshake's printout: ask for renegotiation once.
        if !asked && line.trim_start().starts_with("Verify return code") {
            let _ = stdin.write_all(b"R\n");
            let _ = stdin.flush();
            asked = true;
        }
    }
    drop(stdin);
    let _ = child.wait();
    transcript + &errors.join().unwrap_or_default()
}

/// The `Requested Signature Algorithms` line of an s_client transcript.
fn requested(transcript: &str) -> String {
    transcript
        .lines()
        .find_map(|l| l.strip_prefix("Requested Signature Algorithms: "))
        .unwrap_or_else(|| panic!("no CertificateRequest algorithms in:\n{transcript}"))
        .to_owned()
}

fn still_serves(server: &Portcullis, pki: &TestPki, cert: &Path, key: &Path) {
    let r = Curl::new(server, "localhost", "/", &pki.path("root.pem"))
        .cert(cert, key)
        .run();
    assert_eq!(r.status, Some(200), "{r:?}");
}

fn client(pki: &TestPki) -> (std::path::PathBuf, std::path::PathBuf) {
    let viewer = TestPki::client(&pki.intermediate, "viewer");
    pki.write_client("viewer", &viewer, &[&pki.intermediate])
}

#[test]
fn the_certificate_request_advertises_no_sha1_and_no_ml_dsa_by_default() {
    let OneSite {
        pki,
        origin: _origin,
        server,
    } = OneSite::start("optional", Some("bundle.pem"), "", "");
    for version in ["-tls1_2", "-tls1_3"] {
        let algorithms = requested(&s_client(&server, &pki, &[version], ""));
        assert!(
            algorithms.starts_with("ECDSA+SHA256:RSA-PSS+SHA256:RSA+SHA256"),
            "{version}: {algorithms}"
        );
        assert!(!algorithms.contains("SHA1"), "{version}: {algorithms}");
        // ML-DSA has no OpenSSL 3.0 name: it would show as raw code points 0x09..
        assert!(!algorithms.contains("0x09"), "{version}: {algorithms}");
    }
    let (cert, key) = client(&pki);
    still_serves(&server, &pki, &cert, &key);
}

#[test]
fn a_site_can_narrow_its_signature_algorithms() {
    let OneSite {
        pki,
        origin: _origin,
        server,
    } = OneSite::start(
        "optional",
        Some("bundle.pem"),
        "signature_algorithms = [\"ecdsa_secp384r1_sha384\", \"ecdsa_secp256r1_sha256\"]\n",
        "",
    );
    for version in ["-tls1_2", "-tls1_3"] {
        let algorithms = requested(&s_client(&server, &pki, &[version], ""));
        assert_eq!(algorithms, "ECDSA+SHA384:ECDSA+SHA256", "{version}");
    }
    // The test clients' ECDSA P-256 keys sign with one of them.
    let (cert, key) = client(&pki);
    still_serves(&server, &pki, &cert, &key);
}

#[test]
fn old_versions_renegotiation_and_early_data_are_refused() {
    let OneSite {
        pki,
        origin: _origin,
        server,
    } = OneSite::start("required", Some("bundle.pem"), "", "");
    let (cert, key) = client(&pki);
    let (cert_s, key_s) = (cert.to_str().expect("path"), key.to_str().expect("path"));

    // TLS 1.1 (and so 1.0): the protocol_version alert.
    let t = s_client(
        &server,
        &pki,
        &["-tls1_1", "-cert", cert_s, "-key", key_s],
        "",
    );
    assert!(
        t.contains("alert protocol version") || t.contains("no protocols available"),
        "{t}"
    );

    // A TLS 1.2 client asking to renegotiate gets no_renegotiation (100).
    let t = renegotiate(&server, &pki, cert_s, key_s);
    assert!(t.contains("RENEGOTIATING"), "{t}");
    assert!(t.contains("alert no renegotiation"), "{t}");

    // A resumed TLS 1.3 session never offers early data (tickets carry max_early_data 0), so
    // nothing can be replayed in 0-RTT.
    let session = pki.path("session.pem");
    let (first, _) = s_client_with_session(
        &server,
        &pki.path("root.pem"),
        &cert,
        &key,
        "-sess_out",
        &session,
    );
    assert!(first.contains("HTTP/1.1 200"), "{first}");
    let early = pki.write("early.txt", "GET / HTTP/1.1\r\nHost: localhost\r\n\r\n");
    let t = s_client(
        &server,
        &pki,
        &[
            "-tls1_3",
            "-cert",
            cert_s,
            "-key",
            key_s,
            "-sess_in",
            session.to_str().expect("path"),
            "-early_data",
            early.to_str().expect("path"),
        ],
        "",
    );
    assert!(t.contains("Reused, TLSv1.3"), "{t}");
    assert!(t.contains("Early data was not sent"), "{t}");
    still_serves(&server, &pki, &cert, &key);
}

#[test]
fn the_server_chooses_the_tls12_suite_with_aes128_and_chacha20_as_equals() {
    let OneSite {
        pki,
        origin: _origin,
        server,
    } = OneSite::start("optional", Some("bundle.pem"), "", "");
    // (client's order, suite chosen): AES-256 listed first still gets AES-128 (the server's
    // order); between AES-128-GCM and ChaCha20 (one equal-preference group) the client's
    // order wins.
    for (offer, chosen) in [
        (
            "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-ECDSA-AES128-GCM-SHA256",
            "ECDHE-ECDSA-AES128-GCM-SHA256",
        ),
        (
            "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-ECDSA-AES128-GCM-SHA256",
            "ECDHE-ECDSA-CHACHA20-POLY1305",
        ),
        (
            "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-ECDSA-CHACHA20-POLY1305",
            "ECDHE-ECDSA-AES128-GCM-SHA256",
        ),
        (
            "ECDHE-ECDSA-AES256-GCM-SHA384",
            "ECDHE-ECDSA-AES256-GCM-SHA384",
        ),
    ] {
        let t = s_client(&server, &pki, &["-tls1_2", "-cipher", offer], "");
        assert!(
            t.contains(&format!("Cipher is {chosen}")),
            "{offer}: expected {chosen}:\n{t}"
        );
    }
    let (cert, key) = client(&pki);
    still_serves(&server, &pki, &cert, &key);
}
