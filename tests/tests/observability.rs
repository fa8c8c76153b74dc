//! Connection logs, access logs, metrics and health end to end: the real binary, real curl and
//! openssl, certificates generated here, log files read back and parsed.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use portcullis_e2e::{
    config_text, current_crl, openssl, origin, sample_sum, scrape, CertKind, CertSpec, Curl,
    DemoOrigin, Issued, Portcullis, SiteConfig, TestPki,
};
use serde_json::Value;

/// How long a test waits for records to reach a file.
const RECORD_WAIT: Duration = Duration::from_secs(20);

/// Polls `path` until it has at least `n` record lines (W3C headers excluded); returns them.
fn wait_records(path: &Path, n: usize) -> Vec<String> {
    let deadline = Instant::now() + RECORD_WAIT;
    loop {
        let lines = records(path);
        if lines.len() >= n || Instant::now() > deadline {
            assert!(
                lines.len() >= n,
                "{}: {} records, expected {n}:\n{}",
                path.display(),
                lines.len(),
                lines.join("\n")
            );
            return lines;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The complete records of a log file: the writer thread may be in the middle of a line, so
/// anything after the last newline is not a record yet.
fn records(path: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let complete = text.rfind('\n').map_or("", |end| &text[..end]);
    complete
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(str::to_owned)
        .collect()
}

fn json(line: &str) -> Value {
    serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"))
}

/// `openssl x509` field of a PEM file, with the `name=` prefix removed.
fn x509_field(cert: &Path, args: &[&str]) -> String {
    let mut all = vec!["x509", "-noout", "-in", cert.to_str().expect("path")];
    all.extend_from_slice(args);
    let out = openssl(&all, "");
    assert!(out.status.success(), "openssl x509 {args:?} failed");
    let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
    text.split_once('=')
        .map(|(_, v)| v.to_string())
        .unwrap_or(text)
}

/// GET on the admin API with curl: (status, body).
fn admin_get(server: &Portcullis, path: &str) -> (u16, String) {
    let admin = server.admin.expect("admin address");
    portcullis_e2e::admin_call(admin, "GET", path, None)
}

/// A running server with the admin API and the given `[logs]` sections (in `dir`).
struct Logged {
    pki: TestPki,
    origin: DemoOrigin,
    server: Portcullis,
}

impl Logged {
    fn start(sites: impl FnOnce(&TestPki, &DemoOrigin) -> Vec<SiteConfig>, extra: &str) -> Self {
        let pki = TestPki::new();
        let origin = origin();
        let sites = sites(&pki, &origin);
        let text = config_text(
            &pki,
            &sites,
            &format!("[admin]\nlisten = \"127.0.0.1:0\"\n{extra}"),
        );
        let server = Portcullis::start(&text);
        Self {
            pki,
            origin,
            server,
        }
    }

    fn client(&self, cn: &str) -> (Issued, PathBuf, PathBuf) {
        let client = TestPki::client(&self.pki.intermediate, cn);
        let (cert, key) = self
            .pki
            .write_client(cn, &client, &[&self.pki.intermediate]);
        (client, cert, key)
    }

    fn curl(&self, host: &str, path: &str) -> Curl {
        Curl::new(&self.server, host, path, &self.pki.path("root.pem"))
    }
}

#[test]
fn every_refusal_reason_is_one_connection_record_with_its_code_and_detail() {
    let dir = tempfile::tempdir().expect("dir");
    let conn_log = dir.path().join("connection.log");
    let store = dir.path().join("revoked.json");
    let crl_file = dir.path().join("intermediate.crl");
    let pki = TestPki::new();
    let origin = origin();
    let revoked_by_store = TestPki::client(&pki.intermediate, "stolen");
    let revoked_by_crl = TestPki::client(&pki.intermediate, "compromised");
    let serial_of = |c: &Issued| portcullis_e2e::serial_hex(c);
    std::fs::write(
        &store,
        format!(
            "{{\"data\":[{{\"key\":\"{}\",\"value\":\"stolen laptop\"}}]}}",
            serial_of(&revoked_by_store)
        ),
    )
    .expect("store");
    let now = time::OffsetDateTime::now_utc();
    let crl = current_crl(&pki.intermediate, &[&revoked_by_crl]);
    std::fs::write(&crl_file, crl).expect("write crl");

    let mut main = SiteConfig::new(origin.addr(), "required", Some(pki.path("bundle.pem")));
    main.mtls_extra = format!("revocation_store = \"viewers\"\ncrls = [{crl_file:?}]\n");
    let mut shallow = SiteConfig::new(origin.addr(), "required", Some(pki.path("bundle.pem")));
    shallow.name = "shallow".into();
    shallow.server_names = vec!["site-a.test".into()];
    shallow.mtls_extra = "max_chain_depth = 2\n".into();
    let extra = format!(
        "[server.timeouts]\nhandshake = \"700ms\"\n[admin]\nlisten = \"127.0.0.1:0\"\n[[revocation_store]]\nname = \"viewers\"\nfile = {store:?}\n[logs.connection]\npath = {conn_log:?}\n"
    );
    let server = Portcullis::start(&config_text(&pki, &[main, shallow], &extra));
    let root = pki.path("root.pem");

    let client_files =
        |stem: &str, cert: &Issued, chain: &[&Issued]| pki.write_client(stem, cert, chain);
    let intermediate = &pki.intermediate;
    let later = now + time::Duration::days(10);
    let stranger_ca =
        Issued::self_signed(CertSpec::new("Stranger CA", CertKind::RootCa)).expect("ca");
    let stranger = stranger_ca
        .issue(CertSpec::new("stranger", CertKind::Client))
        .expect("stranger");
    let expired = intermediate
        .issue(CertSpec::new("old", CertKind::Client).expired())
        .expect("expired");
    let future = intermediate
        .issue(
            CertSpec::new("future", CertKind::Client)
                .validity(later, later + time::Duration::days(1)),
        )
        .expect("future");
    let server_cert = intermediate
        .issue(CertSpec::new(
            "server-as-client",
            CertKind::Server {
                dns_names: vec!["x.test".into()],
                ip_addresses: vec![],
            },
        ))
        .expect("server cert");
    let good = TestPki::client(intermediate, "good");

    // (what the client does, expected connectionStatus, a piece of failureDetail)
    type Action<'a> = Box<dyn Fn() + 'a>;
    let curl_with = |host: &'static str, files: Option<(PathBuf, PathBuf)>| -> Action<'_> {
        let (server, root) = (&server, root.clone());
        Box::new(move || {
            let mut curl = Curl::new(server, host, "/", &root);
            if let Some((cert, key)) = &files {
                curl = curl.cert(cert, key);
            }
            let r = curl.run();
            assert_eq!(r.status, None, "{host}: refused expected: {r:?}");
        })
    };
    let addr = server.addr;
    let cases: Vec<(Action<'_>, &str, &str)> = vec![
        (
            curl_with("localhost", None),
            "Failed:ClientCertMissing",
            "no client certificate",
        ),
        (
            curl_with("localhost", Some(client_files("stranger", &stranger, &[]))),
            "Failed:ClientCertUntrusted",
            "no trusted issuer for leaf certificate (CN=stranger)",
        ),
        (
            curl_with(
                "localhost",
                Some(client_files("expired", &expired, &[intermediate])),
            ),
            "Failed:ClientCertExpired",
            "leaf certificate (CN=old) expired",
        ),
        (
            curl_with(
                "localhost",
                Some(client_files("future", &future, &[intermediate])),
            ),
            "Failed:ClientCertNotYetValid",
            "leaf certificate (CN=future) not yet valid",
        ),
        (
            curl_with(
                "site-a.test",
                Some(client_files("deep", &good, &[intermediate])),
            ),
            "Failed:ClientCertMaxChainDepthExceeded",
            "exceeds max_chain_depth 2",
        ),
        (
            curl_with(
                "localhost",
                Some(client_files("srv", &server_cert, &[intermediate])),
            ),
            "Failed:ClientCertIntentInvalid",
            "not usable by a TLS client",
        ),
        (
            curl_with(
                "localhost",
                Some(client_files("stolen", &revoked_by_store, &[intermediate])),
            ),
            "Failed:ClientCertRejected",
            "revoked by store viewers: leaf certificate",
        ),
        (
            curl_with(
                "localhost",
                Some(client_files(
                    "compromised",
                    &revoked_by_crl,
                    &[intermediate],
                )),
            ),
            "Failed:ClientCertRejected",
            "revoked by CRL of ",
        ),
        (
            Box::new(move || {
                // Connect and say nothing: the handshake times out.
                let mut tcp = TcpStream::connect(addr).expect("connect");
                tcp.set_read_timeout(Some(Duration::from_secs(10)))
                    .expect("timeout");
                let mut buf = [0u8; 16];
                let _ = tcp.read(&mut buf);
            }),
            "Failed:TcpTimeout",
            "handshake not finished within 700 ms",
        ),
        (
            Box::new(move || {
                // Half a ClientHello, then a reset.
                let tcp = TcpStream::connect(addr).expect("connect");
                (&tcp)
                    .write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00])
                    .expect("write");
                let socket = socket2::Socket::from(tcp);
                socket.set_linger(Some(Duration::ZERO)).expect("linger");
                drop(socket);
            }),
            "Failed:TcpError",
            "connection reset by the client",
        ),
        (
            Box::new(|| {
                // No cipher suite in common: a TLS protocol error.
                let out = openssl(
                    &[
                        "s_client",
                        "-connect",
                        &addr.to_string(),
                        "-servername",
                        "localhost",
                        "-tls1_2",
                        "-cipher",
                        "AES128-SHA",
                    ],
                    "",
                );
                assert!(!out.status.success());
            }),
            "Failed:UnmappedConnectionError",
            "alert sent handshake failure (40)",
        ),
    ];
    for (i, (act, status, detail)) in cases.iter().enumerate() {
        act();
        let lines = wait_records(&conn_log, i + 1);
        assert_eq!(
            lines.len(),
            i + 1,
            "exactly one record per attempt:\n{}",
            lines.join("\n")
        );
        let record = json(&lines[i]);
        assert_eq!(record["connectionStatus"], *status, "{record}");
        let text = record["failureDetail"].as_str().unwrap_or_default();
        assert!(text.contains(detail), "{status}: {text:?} lacks {detail:?}");
        assert_eq!(record["clientIp"], "127.0.0.1");
        assert_eq!(record["tlsProtocol"], Value::Null, "{record}");
    }
    // The certificate refusals name the alert sent, and carry the presented leaf.
    let revoked = json(&records(&conn_log)[6]);
    assert!(
        revoked["failureDetail"]
            .as_str()
            .unwrap_or_default()
            .ends_with("alert certificate revoked (44)"),
        "{revoked}"
    );
    assert_eq!(
        revoked["clientLeafCertSubject"],
        "O=Portcullis Tests, OU=Viewers, CN=stolen"
    );
    assert_eq!(revoked["site"], "main");
    assert_eq!(revoked["distributionId"], "main");
    assert_eq!(json(&records(&conn_log)[4])["site"], "shallow");
}

#[test]
fn accepted_records_match_an_independent_parse_and_join_the_access_log() {
    accepted_records_join_the_access_log("--http1.1", "http/1.1", "HTTP/1.1");
}

#[test]
fn http2_streams_join_the_access_log_of_their_connection() {
    accepted_records_join_the_access_log("--http2", "h2", "HTTP/2.0");
}

/// Two requests on one connection (`curl_protocol`), then the connection, access and closing
/// records, with the negotiated `alpn` and the access log's `protocol`.
fn accepted_records_join_the_access_log(curl_protocol: &str, alpn: &str, protocol: &str) {
    let dir = tempfile::tempdir().expect("dir");
    let conn_log = dir.path().join("connection.log");
    let access_log = dir.path().join("access.log");
    let extra = format!(
        "[logs]\nconnection_id_header = \"X-Connection-Id\"\n[logs.connection]\npath = {conn_log:?}\nlog_close = true\n[logs.access]\npath = {access_log:?}\n"
    );
    let t = Logged::start(
        |pki, origin| {
            vec![SiteConfig::new(
                origin.addr(),
                "required",
                Some(pki.path("bundle.pem")),
            )]
        },
        &extra,
    );
    let (client, cert, key) = t.client("viewer");
    let leaf = t.pki.write("viewer-leaf.pem", &client.cert_pem);
    // Two requests on one keep-alive connection; the client sends a forged id header.
    let r = t
        .curl("localhost", "/one")
        .cert(&cert, &key)
        .args([
            curl_protocol,
            "-H",
            "X-Connection-Id: forged",
            &t.server.url("localhost", "/two"),
        ])
        .run();
    assert_eq!(r.status, Some(200), "{r:?}");
    let connection = wait_records(&conn_log, 2);
    let (handshake, close) = (json(&connection[0]), json(&connection[1]));
    assert_eq!(handshake["connectionStatus"], "Success");
    let id = handshake["connectionId"].as_str().expect("id").to_owned();
    assert_eq!(id.len(), 22);
    assert!(id
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
    // Fields in the spec's order, then Portcullis's additions.
    let keys: Vec<&str> = connection[0]
        .trim_start_matches('{')
        .split(",\"")
        .map(|kv| kv.trim_start_matches('"').split('"').next().unwrap_or(""))
        .collect();
    assert_eq!(
        keys,
        portcullis_config::CONNECTION_LOG_FIELDS.to_vec(),
        "log_close selects every field, in order"
    );
    // Certificate fields equal an independent parse.
    assert_eq!(
        handshake["clientLeafCertSerialNumber"]
            .as_str()
            .expect("serial")
            .replace(':', "")
            .to_ascii_uppercase(),
        x509_field(&leaf, &["-serial"])
    );
    let in_order = "esc_2253,esc_ctrl,esc_msb,utf8,dump_nostr,dump_unknown,dump_der,sep_comma_plus_space,sname";
    assert_eq!(
        handshake["clientLeafCertSubject"],
        x509_field(&leaf, &["-subject", "-nameopt", in_order])
    );
    assert_eq!(
        handshake["clientLeafCertIssuer"],
        x509_field(&leaf, &["-issuer", "-nameopt", in_order])
    );
    let iso =
        |field: &str| x509_field(&leaf, &[field, "-dateopt", "iso_8601"]).replacen(' ', "T", 1);
    assert_eq!(
        handshake["clientLeafCertValidity"],
        format!(
            "NotBefore={};NotAfter={}",
            iso("-startdate"),
            iso("-enddate")
        )
    );
    assert_eq!(
        handshake["clientLeafCertSha256"],
        x509_field(&leaf, &["-fingerprint", "-sha256"])
            .replace(':', "")
            .to_ascii_lowercase()
    );
    assert_eq!(handshake["tlsProtocol"], "TLSv1.3");
    assert_eq!(
        handshake["tlsCipher"]
            .as_str()
            .map(|c| c.starts_with("TLS_")),
        Some(true)
    );
    assert_eq!(handshake["tlsSni"], "localhost");
    assert_eq!(handshake["alpn"], alpn);
    assert_eq!(handshake["sessionResumed"], false);
    assert_eq!(handshake["mtlsMode"], "required");
    assert_eq!(handshake["serverPort"], t.server.addr.port());
    assert!(
        handshake["tlsHandshakeDuration"]
            .as_f64()
            .expect("duration")
            > 0.0
    );
    assert!(handshake["eventTimestamp"].as_u64().expect("epoch ms") > 1_700_000_000_000);
    assert!(handshake["requests"].is_null());
    // The closing record: same id, two requests, bytes both ways.
    assert_eq!(close["connectionId"], id.as_str());
    assert_eq!(close["requests"], 2);
    assert!(close["bytesIn"].as_u64().expect("in") > 0);
    assert!(close["bytesOut"].as_u64().expect("out") > 0);
    assert!(close["connectionDuration"].as_f64().expect("duration") > 0.0);

    // Both requests share the connection's id in the access log.
    let access = wait_records(&access_log, 2);
    let (one, two) = (json(&access[0]), json(&access[1]));
    for (record, path) in [(&one, "/one"), (&two, "/two")] {
        assert_eq!(record["connectionId"], id.as_str(), "{record}");
        assert_eq!(record["path"], path);
        assert_eq!(record["method"], "GET");
        assert_eq!(
            record["host"],
            format!("localhost:{}", t.server.addr.port())
        );
        assert_eq!(record["status"], 200);
        assert_eq!(record["protocol"], protocol);
        assert_eq!(record["site"], "main");
        assert_eq!(
            record["clientCertSerialNumber"],
            handshake["clientLeafCertSerialNumber"]
        );
        assert_eq!(record["originAddress"], t.origin.addr().to_string());
        assert!(record["originDuration"].as_f64().is_some());
        assert!(record["bytesOut"].as_u64().expect("out") > 0);
    }
    assert_eq!(one["requestId"], format!("{id}-1"));
    assert_eq!(two["requestId"], format!("{id}-2"));
    // The origin got the connection's id, not the client's forgery.
    let body = r.text();
    assert!(body.contains(&format!("X-Connection-Id: {id}")), "{body}");
    assert!(!body.contains("forged"), "{body}");
}

#[test]
fn w3c_header_field_selection_and_delimiter() {
    let dir = tempfile::tempdir().expect("dir");
    let conn_log = dir.path().join("connection.w3c");
    let access_log = dir.path().join("access.txt");
    let extra = format!(
        "[logs.connection]\npath = {conn_log:?}\nformat = \"w3c\"\n[logs.access]\npath = {access_log:?}\nformat = \"plain\"\ndelimiter = \"|\"\nfields = [\"status\", \"connectionId\", \"path\"]\n"
    );
    let t = Logged::start(
        |pki, origin| {
            vec![SiteConfig::new(
                origin.addr(),
                "required",
                Some(pki.path("bundle.pem")),
            )]
        },
        &extra,
    );
    let (_, cert, key) = t.client("w3c viewer");
    let r = t.curl("localhost", "/a|b?q=1").cert(&cert, &key).run();
    assert_eq!(r.status, Some(200), "{r:?}");
    let r = t.curl("localhost", "/").run();
    assert_eq!(r.status, None);
    wait_records(&conn_log, 2);
    let text = std::fs::read_to_string(&conn_log).expect("log");
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("#Version: 1.0"));
    let fields: Vec<&str> = lines
        .next()
        .and_then(|l| l.strip_prefix("#Fields: "))
        .expect("#Fields header")
        .split(' ')
        .collect();
    assert_eq!(
        fields,
        portcullis_config::CONNECTION_LOG_FIELDS
            [..portcullis_config::CONNECTION_LOG_FIELDS.len() - 4]
            .to_vec()
    );
    let parsed: Vec<std::collections::HashMap<&str, &str>> = lines
        .map(|line| {
            let values: Vec<&str> = line.split(' ').collect();
            assert_eq!(values.len(), fields.len(), "{line}");
            fields.iter().copied().zip(values).collect()
        })
        .collect();
    assert_eq!(parsed[0]["connectionStatus"], "Success");
    assert_eq!(
        parsed[0]["clientLeafCertSubject"],
        "O=Portcullis%20Tests,%20OU=Viewers,%20CN=w3c%20viewer"
    );
    assert!(
        parsed[0]["eventTimestamp"].ends_with('Z') && parsed[0]["eventTimestamp"].contains('T')
    );
    assert_eq!(parsed[1]["connectionStatus"], "Failed:ClientCertMissing");
    assert_eq!(parsed[1]["clientLeafCertSubject"], "-");
    assert_eq!(parsed[1]["distributionTenantId"], "-");

    let access = wait_records(&access_log, 1);
    let values: Vec<&str> = access[0].split('|').collect();
    assert_eq!(values.len(), 3, "{}", access[0]);
    assert_eq!(values[0], "200");
    assert_eq!(values[1], parsed[0]["connectionId"]);
    assert_eq!(
        values[2], "/a%7Cb?q=1",
        "the delimiter inside a value is escaped"
    );
}

#[test]
fn logrotate_rename_and_sigusr1_under_load_lose_no_record() {
    let dir = tempfile::tempdir().expect("dir");
    let conn_log = dir.path().join("connection.log");
    let rotated = dir.path().join("connection.log.1");
    let extra = format!("[logs.connection]\npath = {conn_log:?}\n");
    let t = Logged::start(
        |pki, origin| {
            vec![SiteConfig::new(
                origin.addr(),
                "optional",
                Some(pki.path("bundle.pem")),
            )]
        },
        &extra,
    );
    const CONNECTIONS: usize = 120;
    let url = t.server.url("localhost", "/");
    let port = t.server.addr.port();
    let root = t.pki.path("root.pem");
    let load = std::thread::spawn(move || {
        let mut made = 0;
        for _ in 0..CONNECTIONS {
            let out = Command::new("curl")
                .args(["-s", "-o", "/dev/null", "--max-time", "20", "--resolve"])
                .arg(format!("localhost:{port}:127.0.0.1"))
                .arg("--cacert")
                .arg(&root)
                .arg(&url)
                .status()
                .expect("curl");
            assert!(out.success());
            made += 1;
        }
        made
    });
    // Rotate in the middle of the load, as logrotate does: rename, then SIGUSR1.
    wait_records(&conn_log, 10);
    std::fs::rename(&conn_log, &rotated).expect("rename");
    let kill = Command::new("kill")
        .args(["-USR1", &t.server.pid().to_string()])
        .status()
        .expect("kill");
    assert!(kill.success());
    let made = load.join().expect("load");
    assert_eq!(made, CONNECTIONS);
    let deadline = Instant::now() + RECORD_WAIT;
    loop {
        let (old, new) = (records(&rotated).len(), records(&conn_log).len());
        if old + new >= made || Instant::now() > deadline {
            assert_eq!(
                old + new,
                made,
                "records written = connections made ({old} + {new})"
            );
            assert!(new > 0, "the reopened file receives records");
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let ids: std::collections::HashSet<String> = records(&rotated)
        .iter()
        .chain(records(&conn_log).iter())
        .map(|l| json(l)["connectionId"].as_str().expect("id").to_owned())
        .collect();
    assert_eq!(ids.len(), made, "every connection has its own id");
    let metrics = scrape(&t.server);
    assert_eq!(
        sample_sum(
            &metrics,
            "portcullis_log_records_written_total",
            &[("log", "connection")]
        ),
        made as f64
    );
}

#[test]
fn a_full_queue_drops_and_counts_instead_of_blocking() {
    let dir = tempfile::tempdir().expect("dir");
    let fifo = dir.path().join("connection.fifo");
    let made = Command::new("mkfifo").arg(&fifo).status().expect("mkfifo");
    assert!(made.success());
    // Hold the pipe open for reading without reading: once the pipe buffer is full, the
    // writer thread blocks and the workers' queues (16 records each) fill up.
    let reader = {
        use std::os::unix::fs::OpenOptionsExt as _;
        /// `O_NONBLOCK` on Linux: open the FIFO without waiting for a writer.
        const O_NONBLOCK: i32 = 0o4000;
        std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(O_NONBLOCK)
            .open(&fifo)
            .expect("open fifo")
    };
    let extra = format!("[logs]\nqueue_capacity = 16\n[logs.connection]\npath = {fifo:?}\n");
    let t = Logged::start(
        |pki, origin| {
            vec![SiteConfig::new(
                origin.addr(),
                "optional",
                Some(pki.path("bundle.pem")),
            )]
        },
        &extra,
    );
    // Long records (a long SNI each) fill the 64 KiB pipe quickly.
    let addr = t.server.addr;
    let mut handshakes = 0;
    let started = Instant::now();
    for i in 0..400 {
        let name = format!("{0}.{0}.{0}.{0}-{i}.test", "x".repeat(50));
        let mut tcp = TcpStream::connect(addr).expect("connect");
        tcp.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        let mut connector =
            boring::ssl::SslConnector::builder(boring::ssl::SslMethod::tls()).expect("connector");
        connector.set_verify(boring::ssl::SslVerifyMode::NONE);
        let connector = connector.build();
        let config = connector
            .configure()
            .expect("config")
            .verify_hostname(false);
        let mut tls = config
            .connect(&name, tcp.try_clone().expect("clone"))
            .expect("handshake never blocks");
        let _ = tls.shutdown();
        let _ = tcp.flush();
        handshakes += 1;
    }
    assert!(started.elapsed() < Duration::from_secs(60));
    let metrics = scrape(&t.server);
    let dropped = sample_sum(
        &metrics,
        "portcullis_log_records_dropped_total",
        &[("log", "connection")],
    );
    let counted = sample_sum(&metrics, "portcullis_handshakes_total", &[]);
    assert_eq!(counted, f64::from(handshakes));
    assert!(
        dropped > 0.0,
        "records were dropped and counted:\n{metrics:?}"
    );
    drop(reader);
}

#[test]
fn metrics_parse_and_handshake_counters_equal_the_handshakes_made() {
    let t = Logged::start(
        |pki, origin| {
            vec![SiteConfig::new(
                origin.addr(),
                "required",
                Some(pki.path("bundle.pem")),
            )]
        },
        "",
    );
    let (_, cert, key) = t.client("counted");
    for _ in 0..3 {
        let r = t.curl("localhost", "/").cert(&cert, &key).run();
        assert_eq!(r.status, Some(200), "{r:?}");
    }
    for _ in 0..2 {
        let r = t.curl("localhost", "/").run();
        assert_eq!(r.status, None);
    }
    let metrics = scrape(&t.server);
    let ok = sample_sum(
        &metrics,
        "portcullis_handshakes_total",
        &[("site", "main"), ("status", "Success")],
    );
    let missing = sample_sum(
        &metrics,
        "portcullis_handshakes_total",
        &[("site", "main"), ("status", "Failed:ClientCertMissing")],
    );
    assert_eq!((ok, missing), (3.0, 2.0));
    assert_eq!(
        sample_sum(&metrics, "portcullis_handshakes_total", &[]),
        5.0
    );
    assert_eq!(
        sample_sum(
            &metrics,
            "portcullis_requests_total",
            &[("site", "main"), ("code", "2xx")]
        ),
        3.0
    );
    assert_eq!(
        sample_sum(
            &metrics,
            "portcullis_handshake_duration_seconds_count",
            &[("site", "main")]
        ),
        5.0
    );
    assert_eq!(sample_sum(&metrics, "portcullis_ready", &[]), 1.0);
    assert_eq!(
        sample_sum(&metrics, "portcullis_config_generation", &[]),
        1.0
    );
    let (status, body) = admin_get(&t.server, "/healthz");
    assert_eq!((status, body.as_str()), (200, "{\"status\":\"ok\"}"));
    let (status, _) = admin_get(&t.server, "/readyz");
    assert_eq!(status, 200);
}

#[test]
fn readyz_turns_503_during_drain() {
    let extra = "[server.timeouts]\nhandshake = \"5s\"\ndrain = \"10s\"\n";
    let t = Logged::start(
        |pki, origin| {
            vec![SiteConfig::new(
                origin.addr(),
                "optional",
                Some(pki.path("bundle.pem")),
            )]
        },
        extra,
    );
    assert_eq!(admin_get(&t.server, "/readyz").0, 200);
    // A connection in its handshake keeps the drain going (up to the handshake time-out).
    let _pending = TcpStream::connect(t.server.addr).expect("connect");
    // Let the worker accept it before the stop.
    let deadline = Instant::now() + Duration::from_secs(10);
    while sample_sum(&scrape(&t.server), "portcullis_active_connections", &[]) < 1.0 {
        assert!(Instant::now() < deadline, "connection not accepted");
        std::thread::sleep(Duration::from_millis(20));
    }
    t.server.terminate();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (status, body) = admin_get(&t.server, "/readyz");
        if status == 503 {
            assert!(body.contains("draining"), "{body}");
            break;
        }
        assert!(Instant::now() < deadline, "/readyz stayed {status}: {body}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn json_diagnostics_carry_the_connection_span() {
    let dir = tempfile::tempdir().expect("dir");
    let t = Logged::start(
        |pki, origin| {
            vec![SiteConfig::new(
                origin.addr(),
                "required",
                Some(pki.path("bundle.pem")),
            )]
        },
        "[diagnostics]\nformat = \"json\"\n",
    );
    let r = t.curl("localhost", "/").run();
    assert_eq!(r.status, None);
    let deadline = Instant::now() + RECORD_WAIT;
    let line = loop {
        let log = t.server.log();
        if let Some(line) = log.lines().find(|l| l.contains("handshake refused")) {
            break line.to_owned();
        }
        assert!(Instant::now() < deadline, "no refusal line:\n{log}");
        std::thread::sleep(Duration::from_millis(20));
    };
    let event = json(&line);
    assert_eq!(event["span"]["name"], "conn", "{event}");
    assert_eq!(event["span"]["site"], "main", "{event}");
    assert_eq!(
        event["span"]["id"].as_str().map(str::len),
        Some(22),
        "{event}"
    );
    assert_eq!(event["fields"]["code"], "ClientCertMissing", "{event}");
    drop(dir);
}
