//! Connection functions end to end: the real binary, real curl and openssl, certificates
//! generated here, JavaScript functions run inside the handshake, the connection log read
//! back, the admin API, reloads and `portcullis function test`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use portcullis_e2e::{
    assert_session_resumes, config_text, origin, portcullis_cli, s_client_with_session, serial_hex,
    CertKind, CertSpec, Curl, CurlResult, DemoOrigin, Issued, Portcullis, SiteConfig, TestPki,
};
use serde_json::Value;

/// How long a test waits for log records or a reload.
const WAIT: Duration = Duration::from_secs(20);

/// A site running a connection function on the `viewers` store, with the admin API and a
/// JSON connection log.
struct Setup {
    pki: TestPki,
    config_path: PathBuf,
    function: PathBuf,
    store: PathBuf,
    conn_log: PathBuf,
    _origin: DemoOrigin,
    server: Portcullis,
}

impl Setup {
    /// `mode` site for localhost and site-a.test, `workers` workers, function `source`,
    /// store `store_json`, `extra` lines in `[site.mtls]`.
    fn start(
        mode: &'static str,
        workers: usize,
        source: &str,
        store_json: &str,
        extra: &str,
    ) -> Self {
        let pki = TestPki::new();
        let origin = origin();
        let function = pki.write("function.js", source);
        let store = pki.write("viewers.json", store_json);
        let conn_log = pki.path("connection.log");
        let trust = (mode != "passthrough").then(|| pki.path("bundle.pem"));
        let mut site = SiteConfig::new(origin.addr(), mode, trust);
        site.server_names = vec!["localhost".into(), "site-a.test".into()];
        site.mtls_extra = format!(
            "{extra}\n[site.mtls.connection_function]\nfile = {function:?}\nkvs = \"viewers\"\ntime_limit = \"5ms\"\n"
        );
        let server_extra = format!(
            "[admin]\nlisten = \"127.0.0.1:0\"\n\n[[revocation_store]]\nname = \"viewers\"\nfile = {store:?}\n\n[logs.connection]\npath = {conn_log:?}\n"
        );
        let text = config_text(&pki, &[site], &server_extra)
            .replace("workers = 2\n", &format!("workers = {workers}\n"));
        let config_path = pki.write("portcullis.toml", &text);
        let server = Portcullis::start_file(&config_path, tempfile::tempdir().expect("dir"));
        Self {
            pki,
            config_path,
            function,
            store,
            conn_log,
            _origin: origin,
            server,
        }
    }

    /// A client certificate from the intermediate with common name `cn`, and its files.
    fn client(&self, cn: &str) -> (Issued, PathBuf, PathBuf) {
        let client = TestPki::client(&self.pki.intermediate, cn);
        let (cert, key) = self
            .pki
            .write_client(cn, &client, &[&self.pki.intermediate]);
        (client, cert, key)
    }

    fn get(&self, host: &str, cert: Option<(&Path, &Path)>) -> CurlResult {
        let mut curl = Curl::new(&self.server, host, "/", &self.pki.path("root.pem"));
        if let Some((cert, key)) = cert {
            curl = curl.cert(cert, key);
        }
        curl.run()
    }

    fn admin(&self) -> String {
        self.server.admin.expect("admin").to_string()
    }

    /// Polls the connection log until a record satisfies `pick` (bounded); returns it.
    fn record(&self, what: &str, pick: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + WAIT;
        loop {
            let text = std::fs::read_to_string(&self.conn_log).unwrap_or_default();
            let found = text
                .lines()
                .filter_map(|l| serde_json::from_str::<Value>(l).ok())
                .find(|r| pick(r));
            if let Some(record) = found {
                return record;
            }
            assert!(Instant::now() < deadline, "no record {what} in:\n{text}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The record whose custom data starts with `prefix`.
    fn record_with_custom(&self, prefix: &str) -> Value {
        self.record(prefix, |r| {
            r["connectionLogCustomData"]
                .as_str()
                .is_some_and(|c| c.starts_with(prefix))
        })
    }

    fn sighup(&self) {
        let status = Command::new("kill")
            .arg("-HUP")
            .arg(self.server.pid().to_string())
            .status()
            .expect("kill -HUP");
        assert!(status.success());
    }
}

fn assert_denied(r: &CurlResult) {
    assert_eq!(r.status, None, "expected a refused handshake: {r:?}");
    assert!(r.stderr.contains("access denied"), "{}", r.stderr);
}

/// `0a:1b:2c` as the store and the announcement's function write it: colons stripped.
fn lower_serial(client: &Issued) -> String {
    serial_hex(client).to_ascii_lowercase()
}

/// The serial with colons between uppercase byte pairs (`0A:1B:2C`), as an operator may paste it.
fn colon_serial(client: &Issued) -> String {
    let hex = serial_hex(client);
    let hex = if hex.len() % 2 == 1 {
        format!("0{hex}")
    } else {
        hex
    };
    hex.as_bytes()
        .chunks(2)
        .map(|p| String::from_utf8_lossy(p).into_owned())
        .collect::<Vec<_>>()
        .join(":")
}

#[test]
fn announcement_function_refuses_a_revoked_serial_and_accepts_others() {
    // The store lists the serial in an uppercase colon form with a leading zero byte, as an
    // operator may paste it; the function looks up the leaf's `9e:2a:af:01:02` stripped of
    // its colons: both must meet in the store's normal form.
    let store = "{\"data\":[{\"key\":\"00:9E:2A:AF:01:02\",\"value\":\"compromised\"}]}";
    let s = Setup::start(
        "required",
        2,
        portcullis::demo::REVOCATION_FUNCTION,
        store,
        "",
    );
    let revoked = s
        .pki
        .intermediate
        .issue(
            CertSpec::new("revoked-viewer", CertKind::Client)
                .serial(vec![0x00, 0x9e, 0x2a, 0xaf, 0x01, 0x02]),
        )
        .expect("revoked client");
    let (cert, key) = s
        .pki
        .write_client("revoked", &revoked, &[&s.pki.intermediate]);
    let denied = s.get("localhost", Some((&cert, &key)));
    assert_denied(&denied);
    let record = s.record_with_custom("Revoked certificate: ");
    assert_eq!(
        record["connectionStatus"],
        "Failed:ConnectionFunctionDenied"
    );
    assert_eq!(
        record["connectionLogCustomData"],
        "Revoked certificate: 9e2aaf0102"
    );
    assert_eq!(record["clientLeafCertSerialNumber"], "9e:2a:af:01:02");

    let (good, good_cert, good_key) = s.client("good-viewer");
    let ok = s.get("localhost", Some((&good_cert, &good_key)));
    assert_eq!(ok.status, Some(200), "{ok:?}");
    let accepted = s.record_with_custom("Valid certificate: ");
    assert_eq!(accepted["connectionStatus"], "Success");
    let logged = accepted["connectionLogCustomData"]
        .as_str()
        .expect("custom data");
    assert_eq!(
        logged
            .trim_start_matches("Valid certificate: ")
            .trim_start_matches('0'),
        lower_serial(&good).trim_start_matches('0'),
    );
}

#[test]
fn the_function_denies_revoked_serials_and_an_admin_revoke_applies_to_the_next_handshake() {
    let s = Setup::start(
        "required",
        2,
        portcullis::demo::REVOCATION_FUNCTION,
        "{\"data\":[]}",
        "",
    );
    let (revoked, cert, key) = s.client("revoked-viewer");
    let (good, good_cert, good_key) = s.client("good-viewer");

    // Before the revoke: both are served.
    assert_eq!(s.get("localhost", Some((&cert, &key))).status, Some(200));
    // A session of the soon-revoked client, for the resumption check below.
    let sess = s.pki.path("session.pem");
    let s_client = |sess_arg: &str| {
        s_client_with_session(
            &s.server,
            &s.pki.path("root.pem"),
            &cert,
            &key,
            sess_arg,
            &sess,
        )
    };
    assert_session_resumes(&s.server, &s.pki.path("root.pem"), &cert, &key, &sess);

    // Revoke through the CLI and the admin API, in the uppercase colon form.
    let out = portcullis_cli(&[
        "revoke",
        "--admin",
        &s.admin(),
        "--store",
        "viewers",
        &colon_serial(&revoked),
        "--reason",
        "key compromise",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The next handshake is denied by the function (not by the site's revocation checks:
    // the store is only the function's).
    let denied = s.get("localhost", Some((&cert, &key)));
    assert_denied(&denied);
    let record = s.record_with_custom("Revoked certificate: ");
    assert_eq!(
        record["connectionStatus"],
        "Failed:ConnectionFunctionDenied"
    );
    let detail = record["failureDetail"].as_str().expect("detail");
    assert!(
        detail.starts_with("denied by connection function function.js; alert access denied (49)"),
        "{detail}"
    );
    let custom = record["connectionLogCustomData"]
        .as_str()
        .expect("custom data");
    assert_eq!(
        custom
            .trim_start_matches("Revoked certificate: ")
            .trim_start_matches('0'),
        lower_serial(&revoked).trim_start_matches('0')
    );
    assert_eq!(
        record["clientLeafCertSerialNumber"]
            .as_str()
            .map(|v| v.replace(':', "").trim_start_matches('0').to_owned()),
        Some(lower_serial(&revoked).trim_start_matches('0').to_owned())
    );

    // The session issued before the change is not resumed: a full, denied handshake.
    let (after, err) = s_client("-sess_in");
    assert!(
        !after.contains("Reused"),
        "a session from before the store change resumed:\n{after}"
    );
    assert!(!after.contains("HTTP/1.1 200"), "{after}");
    assert!(err.contains("access denied"), "{err}");

    // Others are still served.
    let ok = s.get("localhost", Some((&good_cert, &good_key)));
    assert_eq!(ok.status, Some(200), "{ok:?}");
    let _ = good;

    // Un-revoking (which bumps no revocation epoch) applies too.
    let out = portcullis_cli(&[
        "unrevoke",
        "--admin",
        &s.admin(),
        "--store",
        "viewers",
        &lower_serial(&revoked),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(s.get("localhost", Some((&cert, &key))).status, Some(200));
}

#[test]
fn a_variant_in_the_style_of_the_documented_example_works() {
    let source = r#"import cf from 'cloudfront';

async function connectionHandler(connection) {
    const kvsHandle = cf.kvs();
    const clientSerialNumber = connection.clientCertificate.certificates.leaf.serialNumber.replaceAll(":", "");
    const serialNumberExistsInKvs = await kvsHandle.exists(clientSerialNumber);
    if (serialNumberExistsInKvs) {
        console.log(`Certificate ${clientSerialNumber} is revoked. Denying connection.`);
        connection.logCustomData(`Revoked: ${clientSerialNumber}`);
        connection.deny();
    } else {
        console.log(`Certificate ${clientSerialNumber} is valid. Allowing connection.`);
        connection.allow();
    }
}
"#;
    let s = Setup::start("required", 2, source, "{\"data\":[]}", "");
    let (revoked, cert, key) = s.client("revoked-viewer");
    let (_, good_cert, good_key) = s.client("good-viewer");
    let reason = s.pki.write("reason.txt", "key compromise");
    let (status, body) = portcullis_e2e::admin_call(
        s.server.admin.expect("admin"),
        "PUT",
        &format!("/revocations/viewers/{}", lower_serial(&revoked)),
        Some(&reason),
    );
    assert_eq!(status, 200, "{body}");
    assert_denied(&s.get("localhost", Some((&cert, &key))));
    assert_eq!(
        s.get("localhost", Some((&good_cert, &good_key))).status,
        Some(200)
    );
    let record = s.record_with_custom("Revoked: ");
    assert_eq!(
        record["connectionStatus"],
        "Failed:ConnectionFunctionDenied"
    );
    // console.log goes to the diagnostics at debug level, with the connection id.
    let log = s.server.log();
    let line = log
        .lines()
        .find(|l| l.contains("is revoked. Denying connection."))
        .unwrap_or_else(|| panic!("console.log line missing:\n{log}"));
    let id = record["connectionId"].as_str().expect("id");
    assert!(line.contains(id), "{line}");
}

#[test]
fn failing_functions_refuse_and_the_same_worker_serves_the_next_client() {
    let source = r#"
function connectionHandler(connection) {
    const subject = connection.clientCertificate.certificates.leaf.subject;
    if (subject.includes("CN=thrower")) throw new Error("thrown on purpose");
    if (subject.includes("CN=looper")) { while (true) {} }
    if (subject.includes("CN=silent")) return;
    if (subject.includes("CN=pending")) return new Promise(() => {});
    if (subject.includes("CN=rejecter")) return Promise.reject(new Error("rejected on purpose"));
    connection.allow();
}
"#;
    // One worker: every connection below runs on the same thread and engine.
    let s = Setup::start("required", 1, source, "{\"data\":[]}", "");
    let (_, good_cert, good_key) = s.client("good-viewer");
    let cases = [
        ("thrower", "threw: Error: thrown on purpose"),
        (
            "looper",
            "time limit: connection function function.js ran past 5 ms",
        ),
        ("silent", "made no decision"),
        ("pending", "never settled and made no decision"),
        ("rejecter", "promise rejected: Error: rejected on purpose"),
    ];
    for (cn, detail) in cases {
        let (_, cert, key) = s.client(cn);
        assert_denied(&s.get("localhost", Some((&cert, &key))));
        let record = s.record(cn, |r| {
            r["failureDetail"]
                .as_str()
                .is_some_and(|d| d.contains(detail))
        });
        assert_eq!(
            record["connectionStatus"], "Failed:ConnectionFunctionError",
            "{cn}"
        );
        assert!(
            record["clientLeafCertSubject"]
                .as_str()
                .is_some_and(|s| s.contains(&format!("CN={cn}"))),
            "{record}"
        );
        // The loop was cut: the handshake did not hang (a loose bound, not a speed test).
        assert!(
            record["tlsHandshakeDuration"]
                .as_f64()
                .is_some_and(|ms| ms < 5000.0),
            "{record}"
        );
        // A valid client right after, on the same worker, is served.
        let ok = s.get("localhost", Some((&good_cert, &good_key)));
        assert_eq!(ok.status, Some(200), "after {cn}: {ok:?}");
    }
}

#[test]
fn custom_data_lands_in_the_connection_log_cut_at_800_bytes_on_a_character_boundary() {
    let source = r#"
function connectionHandler(connection) {
    const subject = connection.clientCertificate.certificates.leaf.subject;
    if (subject.includes("CN=accents")) connection.logCustomData("é".repeat(500));
    else if (subject.includes("CN=euro")) connection.logCustomData("a".repeat(799) + "€ and more");
    else connection.logCustomData("short: " + connection.connectionId);
    connection.allow();
}
"#;
    let s = Setup::start("required", 2, source, "{\"data\":[]}", "");
    for cn in ["accents", "euro", "plain"] {
        let (_, cert, key) = s.client(cn);
        assert_eq!(s.get("localhost", Some((&cert, &key))).status, Some(200));
    }
    let accents = s.record_with_custom("éé");
    assert_eq!(
        accents["connectionLogCustomData"].as_str().map(str::len),
        Some(800)
    );
    assert_eq!(accents["connectionLogCustomData"], "é".repeat(400));
    let euro = s.record_with_custom("aaa");
    assert_eq!(euro["connectionLogCustomData"], "a".repeat(799));
    let plain = s.record_with_custom("short: ");
    assert_eq!(
        plain["connectionLogCustomData"],
        format!("short: {}", plain["connectionId"].as_str().expect("id"))
    );
}

#[test]
fn optional_mode_runs_the_function_without_a_certificate_in_tls_1_2_and_1_3() {
    let source = r#"
function connectionHandler(connection) {
    if (connection.clientCertificate === undefined) {
        connection.logCustomData(`no certificate from ${connection.clientIp} for ${connection.endpoint}`);
        return connection.endpoint === "localhost" ? connection.allow() : connection.deny();
    }
    connection.allow();
}
"#;
    let s = Setup::start("optional", 2, source, "{\"data\":[]}", "");
    let ok = s.get("localhost", None);
    assert_eq!(ok.status, Some(200), "{ok:?}");
    assert_eq!(ok.cert_present().as_deref(), Some("0"));
    let allowed = s.record_with_custom("no certificate from 127.0.0.1 for localhost");
    assert_eq!(allowed["connectionStatus"], "Success");
    for tls in ["--tlsv1.3", "--tls-max"] {
        let args: &[&str] = if tls == "--tls-max" {
            &["--tls-max", "1.2"]
        } else {
            &["--tlsv1.3"]
        };
        let curl = Curl::new(&s.server, "site-a.test", "/", &s.pki.path("root.pem")).args(args);
        let denied = curl.run();
        assert_eq!(denied.status, None, "{tls}: {denied:?}");
        assert!(
            denied.stderr.contains("access denied"),
            "{tls}: {}",
            denied.stderr
        );
    }
    let record = s.record_with_custom("no certificate from 127.0.0.1 for site-a.test");
    assert_eq!(
        record["connectionStatus"],
        "Failed:ConnectionFunctionDenied"
    );
    assert_eq!(record["clientLeafCertSerialNumber"], Value::Null);
    // A client with a certificate is decided in the handshake as usual.
    let (_, cert, key) = s.client("viewer");
    assert_eq!(s.get("site-a.test", Some((&cert, &key))).status, Some(200));
}

#[test]
fn a_reload_brings_a_new_function_and_a_broken_one_is_refused() {
    let allow_all = "function connectionHandler(connection) { connection.allow(); }\n";
    let s = Setup::start("required", 2, allow_all, "{\"data\":[]}", "");
    let (_, cert, key) = s.client("viewer");
    assert_eq!(s.get("localhost", Some((&cert, &key))).status, Some(200));

    // A new function: deny everyone, saying so.
    std::fs::write(
        &s.function,
        "function connectionHandler(connection) { connection.logCustomData('closed for maintenance'); connection.deny(); }\n",
    )
    .expect("write function");
    s.sighup();
    let deadline = Instant::now() + WAIT;
    loop {
        let r = s.get("localhost", Some((&cert, &key)));
        if r.status.is_none() {
            assert!(r.stderr.contains("access denied"), "{}", r.stderr);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the new function did not take effect"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    s.record_with_custom("closed for maintenance");

    // A broken one: `check` names file, line and column; the reload is refused and the
    // running function stays.
    std::fs::write(
        &s.function,
        "function connectionHandler(connection) {\n    connection.allow(;\n}\n",
    )
    .expect("write function");
    let check = portcullis_cli(&["check", "--config", s.config_path.to_str().expect("path")]);
    assert!(!check.status.success());
    let errors = String::from_utf8_lossy(&check.stderr);
    let expected = format!(
        "{}: site[0].mtls.connection_function.file: SyntaxError",
        s.function.display()
    );
    assert!(errors.contains(&expected), "{errors}");
    assert!(errors.contains("(line 2, column "), "{errors}");
    s.sighup();
    let deadline = Instant::now() + WAIT;
    while !s.server.log().contains("reload refused") {
        assert!(
            Instant::now() < deadline,
            "reload not refused:\n{}",
            s.server.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(s.server.log().contains("SyntaxError"), "{}", s.server.log());
    assert_denied(&s.get("localhost", Some((&cert, &key))));
    let _ = &s.store;
}

#[test]
fn function_test_prints_the_decision_custom_data_console_and_time() {
    let pki = TestPki::new();
    let client = TestPki::client(&pki.intermediate, "tested");
    let event = pki.write(
        "event.json",
        &portcullis::demo::client_event(&client.cert_der),
    );
    let function = pki.write("revocation.js", portcullis::demo::REVOCATION_FUNCTION);
    let empty = pki.write("empty.json", "{\"data\":[]}");
    let revoked = pki.write(
        "revoked.json",
        &format!(
            "{{\"data\":[{{\"key\":\"{}\",\"value\":\"x\"}}]}}",
            colon_serial(&client)
        ),
    );
    let run = |kvs: &Path| {
        portcullis_cli(&[
            "function",
            "test",
            "--file",
            function.to_str().expect("path"),
            "--event",
            event.to_str().expect("path"),
            "--kvs",
            kvs.to_str().expect("path"),
        ])
    };
    let allowed = run(&empty);
    let text = String::from_utf8_lossy(&allowed.stdout);
    assert_eq!(allowed.status.code(), Some(0), "{text}");
    assert!(
        text.contains("decision: allow\nconnectionStatus: Success\n"),
        "{text}"
    );
    assert!(
        text.contains("connectionLogCustomData: Valid certificate: "),
        "{text}"
    );
    assert!(
        text.contains("time used: ") && text.contains(" ms of 5 ms"),
        "{text}"
    );
    let denied = run(&revoked);
    let text = String::from_utf8_lossy(&denied.stdout);
    assert_eq!(denied.status.code(), Some(2), "{text}");
    assert!(
        text.contains("decision: deny\nconnectionStatus: Failed:ConnectionFunctionDenied\n"),
        "{text}"
    );
    assert!(
        text.contains("connectionLogCustomData: Revoked certificate: "),
        "{text}"
    );

    let chatty = pki.write(
        "chatty.js",
        "function connectionHandler(c) { console.log('hello', {ip: c.clientIp}); while (true) {} }",
    );
    let out = portcullis_cli(&[
        "function",
        "test",
        "--file",
        chatty.to_str().expect("path"),
        "--event",
        event.to_str().expect("path"),
        "--time-limit",
        "2ms",
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(2), "{text}");
    assert!(
        text.contains("decision: error\nconnectionStatus: Failed:ConnectionFunctionError\n"),
        "{text}"
    );
    assert!(
        text.contains("failureDetail: time limit: connection function chatty.js ran past 2 ms"),
        "{text}"
    );
    assert!(
        text.contains("console: 1 line(s)\n  hello {\"ip\":\"127.0.0.1\"}\n"),
        "{text}"
    );

    let broken = pki.write(
        "broken.js",
        "function connectionHandler(c) {\n  c.allow(;\n}\n",
    );
    let out = portcullis_cli(&[
        "function",
        "test",
        "--file",
        broken.to_str().expect("path"),
        "--event",
        event.to_str().expect("path"),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("broken.js: SyntaxError") && err.contains("(line 2, column "),
        "{err}"
    );
}

#[test]
fn passthrough_runs_the_function_for_every_connection() {
    let source = r#"
function connectionHandler(connection) {
    const leaf = connection.clientCertificate?.certificates.leaf;
    connection.logCustomData(leaf === undefined ? "no certificate" : `issuer ${leaf.issuer}`);
    if (leaf !== undefined && leaf.issuer.includes("CN=Stranger CA")) return connection.deny();
    connection.allow();
}
"#;
    let s = Setup::start("passthrough", 2, source, "{\"data\":[]}", "");
    // Not validated in passthrough: a certificate from an unknown CA reaches the function,
    // which refuses it by its issuer.
    let stranger_ca =
        Issued::self_signed(CertSpec::new("Stranger CA", CertKind::RootCa)).expect("ca");
    let stranger = stranger_ca
        .issue(CertSpec::new("stranger", CertKind::Client))
        .expect("client");
    let (cert, key) = s.pki.write_client("stranger", &stranger, &[]);
    assert_denied(&s.get("localhost", Some((&cert, &key))));
    let record = s.record("from the stranger", |r| {
        r["connectionLogCustomData"]
            .as_str()
            .is_some_and(|c| c.starts_with("issuer ") && c.ends_with("CN=Stranger CA"))
    });
    assert_eq!(
        record["connectionStatus"],
        "Failed:ConnectionFunctionDenied"
    );
    // Others, with or without a certificate, are allowed by it.
    let (_, cert, key) = s.client("viewer");
    assert_eq!(s.get("localhost", Some((&cert, &key))).status, Some(200));
    let ok = s.get("localhost", None);
    assert_eq!(ok.status, Some(200), "{ok:?}");
    assert_eq!(
        s.record_with_custom("no certificate")["connectionStatus"],
        "Success"
    );
}

#[test]
fn a_new_function_stops_earlier_sessions_from_resuming() {
    let s = Setup::start(
        "required",
        2,
        "function connectionHandler(connection) { connection.allow(); }\n",
        "{\"data\":[]}",
        "",
    );
    let (_, cert, key) = s.client("resumer");
    let sess = s.pki.path("session.pem");
    let s_client = |sess_arg: &str| {
        s_client_with_session(
            &s.server,
            &s.pki.path("root.pem"),
            &cert,
            &key,
            sess_arg,
            &sess,
        )
        .0
    };
    assert_session_resumes(&s.server, &s.pki.path("root.pem"), &cert, &key, &sess);
    // The same decision, new code: the session of the old function is not resumed, the new
    // function decides a full handshake.
    std::fs::write(
        &s.function,
        "function connectionHandler(connection) { connection.logCustomData('v2'); connection.allow(); }\n",
    )
    .expect("write function");
    s.sighup();
    let deadline = Instant::now() + WAIT;
    while !s.server.log().contains("configuration reloaded") {
        assert!(Instant::now() < deadline, "no reload:\n{}", s.server.log());
        std::thread::sleep(Duration::from_millis(20));
    }
    let after = s_client("-sess_in");
    assert!(!after.contains("Reused"), "{after}");
    assert!(after.contains("HTTP/1.1 200"), "{after}");
    s.record_with_custom("v2");
}
