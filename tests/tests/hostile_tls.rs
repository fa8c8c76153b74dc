//! Hostile TLS clients against the real binary: what honest clients never send (a Certificate
//! of garbage DER, an empty certificate list in required mode, a CertificateVerify signed with
//! the wrong key or with an algorithm the site does not allow, a chain of 50 certificates, a
//! 100 KB certificate, a 16 KB SNI) is refused with a fatal alert and one connection-log record
//! naming the reason, and the worker keeps serving; records split byte by byte still complete
//! the handshake. The clients are `tests/hostile_tls.py`, written with tlslite-ng, whose
//! virtualenv `.ci/run` creates.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use portcullis_e2e::{config_text, origin, Curl, DemoOrigin, Portcullis, SiteConfig, TestPki};
use serde_json::Value;

/// How long a test waits for a record to reach the connection log.
const RECORD_WAIT: Duration = Duration::from_secs(20);

/// The Python with tlslite-ng: `$HOSTILE_TLS_PYTHON`, else the virtualenv `.ci/run` creates.
fn python() -> PathBuf {
    if let Some(path) = std::env::var_os("HOSTILE_TLS_PYTHON") {
        return PathBuf::from(path);
    }
    let venv = std::env::var_os("HOME")
        .map(|home| PathBuf::from(home).join(".cache/portcullis-moto/bin/python"));
    match venv {
        Some(path) if path.is_file() => path,
        _ => panic!(
            "no Python with tlslite-ng ($HOSTILE_TLS_PYTHON, ~/.cache/portcullis-moto/bin/python): \
             .ci/run installs it"
        ),
    }
}

/// What one hostile client saw.
struct Outcome {
    /// The fatal alert the server sent, if any.
    alert: Option<u64>,
    /// The response's status line, if a response came.
    status_line: Option<String>,
    /// Everything the client reported (records sent, other errors), for messages.
    raw: Value,
}

/// The fixture: a `required` site on `localhost` with the default signature algorithms, a
/// `required` site on `site-a.test` that allows only ECDSA P-384 with SHA-384, and a JSON
/// connection log.
struct Hostile {
    pki: TestPki,
    _origin: DemoOrigin,
    server: Portcullis,
    log: PathBuf,
    _dir: tempfile::TempDir,
    cert: PathBuf,
    key: PathBuf,
}

impl Hostile {
    fn start() -> Self {
        let dir = tempfile::tempdir().expect("dir");
        let log = dir.path().join("connection.log");
        let pki = TestPki::new();
        let origin = origin();
        let main = SiteConfig::new(origin.addr(), "required", Some(pki.path("bundle.pem")));
        let mut narrow = SiteConfig::new(origin.addr(), "required", Some(pki.path("bundle.pem")));
        narrow.name = "narrow".into();
        narrow.server_names = vec!["site-a.test".into()];
        narrow.mtls_extra = "signature_algorithms = [\"ecdsa_secp384r1_sha384\"]\n".into();
        let extra = format!("[logs.connection]\npath = {log:?}\n");
        let server = Portcullis::start(&config_text(&pki, &[main, narrow], &extra));
        let viewer = TestPki::client(&pki.intermediate, "viewer");
        let (cert, key) = pki.write_client("viewer", &viewer, &[&pki.intermediate]);
        pki.write("intermediate.key", &pki.intermediate.key_pem);
        pki.write("intermediate.pem", &pki.intermediate.cert_pem);
        Self {
            pki,
            _origin: origin,
            server,
            log,
            _dir: dir,
            cert,
            key,
        }
    }

    /// Runs `tests/hostile_tls.py --case case` against the server (bounded by `timeout`).
    fn client(&self, case: &str, extra: &[&str]) -> Outcome {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("hostile_tls.py");
        let out = Command::new("timeout")
            .arg("90")
            .arg(python())
            .arg(script)
            .args(["--port", &self.server.addr.port().to_string()])
            .args(["--case", case])
            .arg("--cert")
            .arg(&self.cert)
            .arg("--key")
            .arg(&self.key)
            .arg("--ca-cert")
            .arg(self.pki.path("intermediate.pem"))
            .arg("--ca-key")
            .arg(self.pki.path("intermediate.key"))
            .args(extra)
            .output()
            .expect("run the hostile client");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let raw: Value = serde_json::from_str(stdout.trim()).unwrap_or_else(|e| {
            panic!(
                "{case}: no JSON from the client ({e}): {stdout}\n{}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
        Outcome {
            alert: raw["alert"].as_u64(),
            status_line: raw["status_line"].as_str().map(str::to_owned),
            raw,
        }
    }

    /// Waits for the `n`th connection-log record (1-based); asserts it is the last one.
    fn record(&self, n: usize) -> Value {
        let (record, total) = self.record_any(n);
        assert_eq!(total, n, "one record per connection: {total} records");
        record
    }

    /// Waits for the `n`th connection-log record (1-based); (it, the number of records).
    fn record_any(&self, n: usize) -> (Value, usize) {
        let deadline = Instant::now() + RECORD_WAIT;
        loop {
            let text = std::fs::read_to_string(&self.log).unwrap_or_default();
            // The writer may be in the middle of a line: only complete lines are records.
            let complete = text.rfind('\n').map_or("", |end| &text[..end]);
            let lines: Vec<&str> = complete.lines().filter(|l| !l.is_empty()).collect();
            if lines.len() >= n {
                let record = serde_json::from_str(lines[n - 1]).expect("JSON record");
                return (record, lines.len());
            }
            assert!(
                Instant::now() < deadline,
                "{} records, expected {n}:\n{complete}\nserver log:\n{}",
                lines.len(),
                self.server.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// A normal curl request with the viewer certificate succeeds.
    fn still_serves(&self) {
        let r = Curl::new(&self.server, "localhost", "/", &self.pki.path("root.pem"))
            .cert(&self.cert, &self.key)
            .run();
        assert_eq!(r.status, Some(200), "{r:?}");
    }
}

/// One hostile case: the client's arguments, the alert it must get, the connection log's
/// `connectionStatus` and a piece of its `failureDetail`.
struct Case {
    case: &'static str,
    args: &'static [&'static str],
    alert: u64,
    status: &'static str,
    detail: &'static str,
}

/// Runs each case, then a normal curl request: the case's record, then the request's.
fn refuse_all(h: &Hostile, cases: &[Case]) {
    let mut n = 0;
    for c in cases {
        let outcome = h.client(c.case, c.args);
        assert_eq!(outcome.alert, Some(c.alert), "{}: {}", c.case, outcome.raw);
        assert_eq!(outcome.status_line, None, "{}: {}", c.case, outcome.raw);
        n += 1;
        let record = h.record(n);
        assert_eq!(record["connectionStatus"], c.status, "{}: {record}", c.case);
        let detail = record["failureDetail"].as_str().unwrap_or_default();
        assert!(
            detail.contains(c.detail),
            "{}: {detail:?} lacks {:?}",
            c.case,
            c.detail
        );
        assert_eq!(record["tlsProtocol"], Value::Null, "{}: {record}", c.case);
        // The worker keeps serving: a normal request on a new connection succeeds.
        h.still_serves();
        n += 1;
        assert_eq!(h.record(n)["connectionStatus"], "Success", "{}", c.case);
    }
}

#[test]
fn malformed_certificate_messages_are_refused_with_an_alert_and_logged() {
    let h = Hostile::start();
    refuse_all(
        &h,
        &[
            Case {
                case: "garbage-der",
                args: &[],
                alert: 50, // decode_error
                status: "Failed:ClientCertInvalid",
                detail: "client leaf certificate does not parse; alert sent decode error (50)",
            },
            Case {
                case: "garbage-der",
                args: &["--tls", "1.2"],
                alert: 50,
                status: "Failed:ClientCertInvalid",
                detail: "client leaf certificate does not parse",
            },
            Case {
                case: "garbage-der-chain",
                args: &[],
                alert: 42, // bad_certificate
                status: "Failed:ClientCertInvalid",
                detail: "presented certificate 1 does not parse; alert bad certificate (42)",
            },
            Case {
                case: "empty-list",
                args: &[],
                alert: 116, // certificate_required
                status: "Failed:ClientCertMissing",
                detail: "no client certificate; alert certificate required (116)",
            },
            Case {
                case: "empty-list",
                args: &["--tls", "1.2"],
                alert: 40, // handshake_failure: TLS 1.2 has no certificate_required
                status: "Failed:ClientCertMissing",
                detail: "no client certificate",
            },
            Case {
                case: "chain-of-50",
                args: &[],
                alert: 48, // unknown_ca, as BoringSSL maps a chain too long
                status: "Failed:ClientCertMaxChainDepthExceeded",
                detail:
                    "chain of 52 certificates (trust anchor included) exceeds max_chain_depth 4",
            },
            Case {
                case: "certificate-100k",
                args: &[],
                alert: 47, // illegal_parameter
                status: "Failed:ClientCertMaxSizeExceeded",
                detail: "client Certificate message larger than 102400 bytes",
            },
            Case {
                case: "certificate-100k",
                args: &["--tls", "1.2"],
                alert: 47,
                status: "Failed:ClientCertMaxSizeExceeded",
                detail: "client Certificate message larger than 102400 bytes",
            },
        ],
    );
}

#[test]
fn bad_certificate_verify_signatures_are_refused_with_an_alert_and_logged() {
    let h = Hostile::start();
    refuse_all(
        &h,
        &[
            Case {
                case: "wrong-key",
                args: &[],
                alert: 51, // decrypt_error
                status: "Failed:ClientCertInvalid",
                detail: "CertificateVerify signature does not verify with the leaf certificate's key; alert sent decrypt error (51)",
            },
            Case {
                case: "wrong-key",
                args: &["--tls", "1.2"],
                alert: 51,
                status: "Failed:ClientCertInvalid",
                detail: "does not verify with the leaf certificate's key",
            },
            // ECDSA with SHA-1: not in the default list.
            Case {
                case: "sha1-signature",
                args: &["--tls", "1.2"],
                alert: 47, // illegal_parameter
                status: "Failed:ClientCertTypeUnsupported",
                detail: "CertificateVerify signature algorithm not allowed by the site's signature_algorithms; alert sent illegal parameter (47)",
            },
            // ECDSA P-256 with SHA-256 to a site that allows only P-384 with SHA-384.
            Case {
                case: "unoffered-signature",
                args: &["--sni", "site-a.test"],
                alert: 47,
                status: "Failed:ClientCertTypeUnsupported",
                detail: "signature algorithm not allowed",
            },
            Case {
                case: "unoffered-signature",
                args: &["--sni", "site-a.test", "--tls", "1.2"],
                alert: 47,
                status: "Failed:ClientCertTypeUnsupported",
                detail: "signature algorithm not allowed",
            },
        ],
    );
}

#[test]
fn a_16k_sni_is_refused_with_an_alert_and_not_logged_whole() {
    let h = Hostile::start();
    refuse_all(
        &h,
        &[Case {
            case: "sni-16k",
            args: &[],
            alert: 112, // unrecognized_name
            status: "Failed:UnmappedConnectionError",
            detail: "ERROR_PARSING_EXTENSION; alert sent unrecognized name (112)",
        }],
    );
    let (record, _) = h.record_any(1);
    let sni = record["tlsSni"].as_str().unwrap_or_default();
    assert!(sni.len() <= 255, "{} bytes of SNI logged", sni.len());
}

#[test]
fn records_split_byte_by_byte_still_complete_the_handshake() {
    let h = Hostile::start();
    for (i, version) in ["1.3", "1.2"].into_iter().enumerate() {
        let outcome = h.client("byte-records", &["--tls", version]);
        assert_eq!(
            outcome.status_line.as_deref(),
            Some("HTTP/1.1 200 OK"),
            "TLS {version}: {}",
            outcome.raw
        );
        assert_eq!(outcome.raw["largest_record"], 1, "{}", outcome.raw);
        // The ClientHello alone is hundreds of records.
        assert!(
            outcome.raw["records_sent"].as_u64().unwrap_or(0) > 500,
            "{}",
            outcome.raw
        );
        let record = h.record(i + 1);
        assert_eq!(record["connectionStatus"], "Success", "{record}");
        assert_eq!(record["tlsProtocol"], format!("TLSv{version}"), "{record}");
    }
    h.still_serves();
}
