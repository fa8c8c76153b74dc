//! `testssl.sh` (the Debian package) against the real binary in `required` mode: protocols,
//! cipher categories, forward secrecy, server preferences, server defaults and the
//! vulnerability checks (`-p -s -f -P -S -U`, about a minute; the per-cipher scan and client
//! simulations are left to the README's full command). Every finding above LOW must be one the
//! README accepts, and the points a TLS terminator controls are asserted one by one.

use std::collections::BTreeMap;
use std::process::Command;

use portcullis_e2e::{Curl, OneSite, TestPki};
use serde_json::Value;

/// Findings above LOW that are accepted, with why (README, "testssl.sh").
const ACCEPTED: &[(&str, &str)] = &[(
    "cert_revocation",
    "the test PKI's server certificate names no CRL or OCSP URI: the operator's certificate",
)];

/// WARN findings that are accepted: checks that client-certificate authentication prevents
/// (tests/tests/tls_details.rs covers renegotiation; responses are never compressed by
/// Portcullis), and the local OpenSSL's missing GOST engine.
const ACCEPTED_WARNINGS: &[&str] = &["engine_problem", "secure_client_renego", "BREACH"];

#[test]
fn testssl_finds_nothing_unaccepted_in_required_mode() {
    let OneSite {
        pki,
        origin: _origin,
        server,
    } = OneSite::start("required", Some("bundle.pem"), "", "");
    let dir = tempfile::tempdir().expect("dir");
    let json = dir.path().join("testssl.json");
    let out = Command::new("timeout")
        .arg("300")
        .arg("testssl")
        .args(["--quiet", "--color", "0", "--warnings", "batch"])
        .args(["--openssl-timeout", "10", "--ip", "127.0.0.1"])
        .arg("--add-ca")
        .arg(pki.path("root.pem"))
        .arg("--jsonfile")
        .arg(&json)
        .args(["-p", "-s", "-f", "-P", "-S", "-U"])
        .arg(format!("localhost:{}", server.addr.port()))
        .output()
        .expect("run testssl (Debian package testssl.sh; .ci/run installs it)");
    let text = std::fs::read_to_string(&json).unwrap_or_else(|e| {
        panic!(
            "no JSON from testssl ({e}): {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    let findings: Vec<Value> = serde_json::from_str(&text).expect("testssl JSON");
    let by_id: BTreeMap<&str, (&str, &str)> = findings
        .iter()
        .map(|f| {
            (
                f["id"].as_str().unwrap_or_default(),
                (
                    f["severity"].as_str().unwrap_or_default(),
                    f["finding"].as_str().unwrap_or_default(),
                ),
            )
        })
        .collect();
    let all = || format!("{by_id:#?}");

    for (id, (severity, finding)) in &by_id {
        match *severity {
            "MEDIUM" | "HIGH" | "CRITICAL" => assert!(
                ACCEPTED.iter().any(|(a, _)| a == id),
                "testssl: {id} {severity}: {finding}"
            ),
            "WARN" => assert!(
                ACCEPTED_WARNINGS.contains(id),
                "testssl warning {id}: {finding}"
            ),
            _ => {}
        }
    }
    let finding = |id: &str| {
        by_id
            .get(id)
            .map(|(_, f)| *f)
            .unwrap_or_else(|| panic!("no {id} in:\n{}", all()))
    };
    let severity = |id: &str| by_id.get(id).map(|(s, _)| *s).unwrap_or_default();
    for old in ["SSLv2", "SSLv3", "TLS1", "TLS1_1"] {
        assert_eq!(finding(old), "not offered", "{old}");
    }
    assert_eq!(finding("TLS1_2"), "offered");
    assert!(finding("TLS1_3").starts_with("offered"), "{}", all());
    for weak in [
        "cipherlist_NULL",
        "cipherlist_aNULL",
        "cipherlist_EXPORT",
        "cipherlist_LOW",
        "cipherlist_3DES_IDEA",
        "cipherlist_AVERAGE",
    ] {
        assert_eq!(finding(weak), "not offered", "{weak}");
    }
    assert_eq!(finding("cipherlist_STRONG"), "offered");
    // The server chooses the TLS 1.2 suite, AES-128-GCM / ChaCha20 first.
    assert_eq!(severity("cipher_order"), "OK", "{}", all());
    assert!(
        finding("cipherorder_TLSv1_2").starts_with("ECDHE-ECDSA-AES128-GCM-SHA256"),
        "{}",
        all()
    );
    assert_eq!(finding("secure_renego"), "supported");
    assert_eq!(finding("cert_chain_of_trust"), "passed.");
    // testssl's service detection over a handshake the server refuses (no certificate) varies
    // between runs: when it finds no HTTP, Ticketbleed is "not applicable" instead of OK.
    assert!(
        severity("ticketbleed") == "OK" || finding("ticketbleed").contains("not applicable"),
        "ticketbleed: {}",
        finding("ticketbleed")
    );
    for id in [
        "heartbleed",
        "CCS",
        "ROBOT",
        "CRIME_TLS",
        "POODLE_SSL",
        "fallback_SCSV",
        "SWEET32",
        "FREAK",
        "DROWN",
        "LOGJAM",
        "BEAST",
        "LUCKY13",
        "RC4",
    ] {
        assert_eq!(severity(id), "OK", "{id}: {}", finding(id));
    }

    // The scan's hundreds of handshakes left the workers serving.
    let viewer = TestPki::client(&pki.intermediate, "viewer");
    let (cert, key) = pki.write_client("viewer", &viewer, &[&pki.intermediate]);
    let r = Curl::new(&server, "localhost", "/", &pki.path("root.pem"))
        .cert(&cert, &key)
        .run();
    assert_eq!(r.status, Some(200), "{r:?}");
}
