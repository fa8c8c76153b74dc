//! HTTP/2 to viewers, end to end against the real binary: `curl --http2` gets `HTTP/2 200`
//! and the origin sees the same headers as with HTTP/1.1, ALPN follows the site's `alpn`,
//! streams multiplex on one connection, and every limit holds against hostile frame
//! sequences written with the Python `h2` package (`tests/h2_hostile.py`): concurrent
//! streams, header list size, HPACK bomb, rapid reset, CONTINUATION flood, SETTINGS and PING
//! floods, a window that never opens, a stalled request body, and a revoked certificate on an
//! open connection. After each abuse the worker (there is one) still serves a normal client.
//!
//! Needs Python with the `h2` package (`$H2_PYTHON`, as `.ci/run` sets up, or `python3` with
//! `pip install h2`) and `nghttp`/`curl` built with nghttp2 (Debian `nghttp2-client`, `curl`).

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use portcullis_e2e::scripted_origin::ScriptedOrigin;
use portcullis_e2e::{
    config_text, origin, portcullis_cli, sample_sum, scrape, serial_hex, Curl, DemoOrigin, Issued,
    Portcullis, SiteConfig, TestPki,
};

/// HTTP/2 error codes (RFC 9113 section 7).
const CANCEL: u64 = 0x8;
const REFUSED_STREAM: u64 = 0x7;
const ENHANCE_YOUR_CALM: u64 = 0xb;

/// One `required` site on one worker, streams idle for at most 1 s, with the access log on
/// standard output, an admin API and a revocation store.
struct H2Site {
    pki: TestPki,
    _origin: Option<DemoOrigin>,
    server: Portcullis,
    client: (PathBuf, PathBuf),
    issued: Issued,
}

impl H2Site {
    fn start(site_extra: &str) -> Self {
        let origin = origin();
        let mut site = Self::with_origin(site_extra, origin.addr());
        site._origin = Some(origin);
        site
    }

    /// The same site in front of the origin at `origin` (which the caller keeps running).
    fn with_origin(site_extra: &str, origin: SocketAddr) -> Self {
        Self::with_limits(site_extra, "", origin)
    }

    /// The same, with `limits` (lines of `[server.limits]`).
    fn with_limits(site_extra: &str, limits: &str, origin: SocketAddr) -> Self {
        let pki = TestPki::new();
        let store = pki.write("revoked.json", "{\"data\":[]}");
        let access_log = pki.path("access.log");
        let mut site = SiteConfig::new(origin, "required", Some(pki.path("bundle.pem")));
        site.mtls_extra = "revocation_store = \"viewers\"\n".into();
        let server_extra = format!(
            "[server.limits]\n{limits}\n[server.http2]\nstream_idle_timeout = \"1s\"\n\n[admin]\nlisten = \"127.0.0.1:0\"\n\n\
             [[revocation_store]]\nname = \"viewers\"\nfile = {store:?}\n\n\
             [logs.access]\nformat = \"json\"\npath = {access_log:?}\n"
        );
        let mut text =
            config_text(&pki, &[site], &server_extra).replace("workers = 2", "workers = 1");
        if !site_extra.is_empty() {
            text = text.replace("\n[site.mtls]", &format!("{site_extra}\n\n[site.mtls]"));
        }
        let server = Portcullis::start(&text);
        let issued = TestPki::client(&pki.intermediate, "h2-viewer");
        let client = pki.write_client("h2-viewer", &issued, &[&pki.intermediate]);
        Self {
            pki,
            _origin: None,
            server,
            client,
            issued,
        }
    }

    fn ca(&self) -> PathBuf {
        self.pki.path("root.pem")
    }

    fn curl(&self, path: &str) -> Curl {
        Curl::new(&self.server, "localhost", path, &self.ca()).cert(&self.client.0, &self.client.1)
    }

    /// Runs a scenario of `tests/h2_hostile.py` and returns its JSON report.
    fn hostile(&self, scenario: &str) -> serde_json::Value {
        let out = self
            .python(scenario)
            .stdin(Stdio::null())
            .output()
            .expect("run python3 (install it and `pip install h2`)");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success(),
            "scenario {scenario} failed (needs `pip install h2`):\n{stdout}\n{stderr}"
        );
        serde_json::from_str(stdout.lines().last().unwrap_or("")).unwrap_or_else(|e| {
            panic!("scenario {scenario}: no JSON report ({e}):\n{stdout}\n{stderr}")
        })
    }

    fn python(&self, scenario: &str) -> Command {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("h2_hostile.py");
        let mut cmd = Command::new(h2_python());
        cmd.arg(script)
            .arg(scenario)
            .arg(self.server.addr.port().to_string())
            .arg(self.ca())
            .arg(&self.client.0)
            .arg(&self.client.1);
        cmd
    }

    /// Starts `scenario` as an [`Interactive`] one.
    fn interactive(&self, scenario: &str) -> Interactive {
        let mut child = self
            .python(scenario)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run python3");
        Interactive {
            stdin: child.stdin.take().expect("stdin"),
            stdout: BufReader::new(child.stdout.take().expect("stdout")),
            child,
        }
    }

    /// Runs `scenario` and checks that the connection was cut off: GOAWAY
    /// ENHANCE_YOUR_CALM, then closed.
    fn expect_cut_off(&self, scenario: &str) -> serde_json::Value {
        let v = self.hostile(scenario);
        assert_eq!(
            code(&v["goaway"]),
            Some(ENHANCE_YOUR_CALM),
            "{scenario}: {v}"
        );
        assert_eq!(v["closed"], true, "{scenario}: {v}");
        v
    }

    /// `portcullis_http2_refusals_total` for `reason`, from the admin API.
    fn refusals(&self, reason: &str) -> f64 {
        sample_sum(
            &scrape(&self.server),
            "portcullis_http2_refusals_total",
            &[("reason", reason)],
        )
    }

    /// `portcullis_requests_refused_total{reason="in_flight_limit"}`, from the admin API.
    fn in_flight_refusals(&self) -> f64 {
        sample_sum(
            &scrape(&self.server),
            "portcullis_requests_refused_total",
            &[("reason", "in_flight_limit")],
        )
    }

    /// A normal HTTP/2 request still succeeds (the worker kept serving).
    fn still_serves(&self) {
        let r = self.curl("/still-there").args(["--http2"]).run();
        assert_eq!(r.status, Some(200), "{r:?}");
    }

    /// Waits (bounded) until the log contains `text`.
    fn log_shows(&self, text: &str) -> bool {
        for _ in 0..100 {
            if self.server.log().contains(text) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }
}

/// A scenario of `tests/h2_hostile.py` that waits for the test between its steps: it prints a
/// line when it reaches a step and goes on when it reads one.
struct Interactive {
    child: std::process::Child,
    stdin: std::process::ChildStdin,
    stdout: BufReader<std::process::ChildStdout>,
}

impl Interactive {
    /// Waits for the scenario's next line and checks it is `expected`.
    fn expect_line(&mut self, expected: &str) {
        let mut line = String::new();
        self.stdout.read_line(&mut line).expect("a line");
        assert_eq!(line.trim(), expected, "the scenario failed: {line}");
    }

    /// Lets the scenario go on.
    fn go(&mut self) {
        self.stdin.write_all(b"go\n").expect("go");
    }

    /// The scenario's JSON report, once it ended.
    fn report(mut self) -> serde_json::Value {
        let mut rest = String::new();
        std::io::Read::read_to_string(&mut self.stdout, &mut rest).expect("report");
        let _ = self.child.wait();
        serde_json::from_str(rest.lines().last().unwrap_or(""))
            .unwrap_or_else(|e| panic!("no JSON report ({e}): {rest}"))
    }
}

/// The Python with the `h2` package: `$H2_PYTHON`, else the virtualenv `.ci/run` creates
/// (`~/.cache/portcullis-h2py`), else `python3`.
fn h2_python() -> PathBuf {
    if let Some(python) = std::env::var_os("H2_PYTHON") {
        return python.into();
    }
    let venv = std::env::var_os("HOME")
        .map(|home| Path::new(&home).join(".cache/portcullis-h2py/bin/python"))
        .filter(|p| p.exists());
    venv.unwrap_or_else(|| "python3".into())
}

fn code(v: &serde_json::Value) -> Option<u64> {
    v.as_u64()
}

#[test]
fn curl_http2_gets_http2_200_and_the_origin_sees_the_http11_headers() {
    let s = H2Site::start("");
    let r = s
        .curl("/hello?x=1")
        .args([
            "--http2",
            "--include",
            "-H",
            "CloudFront-Viewer-Cert-Present: 0",
            "-H",
            "cloudfront_viewer_cert_sha256: forged",
            "-H",
            "X-Forwarded-Host: evil.test",
            "-H",
            "X-Forwarded-Port: 1",
            "-H",
            "X-Forwarded-Proto: http",
            "-H",
            "Forwarded: for=1.2.3.4",
            "-H",
            "X-Real-IP: 1.2.3.4",
            "-H",
            "X-Forwarded-For: 203.0.113.7",
            "-H",
            "Cookie: a=1",
            "-H",
            "TE: trailers",
        ])
        .run();
    assert_eq!(r.status, Some(200), "{r:?}");
    let text = r.text();
    assert!(text.starts_with("HTTP/2 200"), "{text}");
    let echo = &text[text.find("\r\n\r\n").expect("head end") + 4..];
    assert!(echo.starts_with("GET /hello?x=1 HTTP/1.1\n"), "{echo}");
    let fields: Vec<(String, String)> = echo
        .lines()
        .skip(1)
        .filter_map(|l| l.split_once(": "))
        .map(|(n, v)| (n.to_ascii_lowercase(), v.to_string()))
        .collect();
    let get = |name: &str| -> Vec<&str> {
        fields
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .collect()
    };
    let port = s.server.addr.port();
    assert_eq!(get("host"), [format!("localhost:{port}")]);
    assert_eq!(get("cloudfront-viewer-cert-present"), ["1"]);
    assert!(get("cloudfront_viewer_cert_sha256").is_empty());
    assert_eq!(get("cloudfront-viewer-cert-sha256").len(), 1);
    assert_eq!(get("cloudfront-viewer-cert-pem").len(), 1);
    for gone in [
        "x-forwarded-host",
        "x-forwarded-port",
        "forwarded",
        "x-real-ip",
        "te",
    ] {
        assert!(get(gone).is_empty(), "{gone} reached the origin: {echo}");
    }
    assert_eq!(get("x-forwarded-proto"), ["https"]);
    assert_eq!(get("x-forwarded-for"), ["203.0.113.7, 127.0.0.1"]);
    assert_eq!(get("cookie"), ["a=1"]);

    // A body of unknown length goes to the origin chunked, intact.
    let body = "x".repeat(200_000);
    let path = s.pki.write("body.txt", &body);
    let r = s
        .curl("/upload")
        .args([
            "--http2".to_string(),
            "--data-binary".to_string(),
            format!("@{}", path.display()),
        ])
        .run();
    assert_eq!(r.status, Some(200), "{r:?}");
    assert!(r.text().starts_with("bytes=200000 sha256="), "{}", r.text());

    // Access log: one HTTP/2.0 record per stream, with the connection's id.
    let mut records = Vec::new();
    for _ in 0..100 {
        let text = std::fs::read_to_string(s.pki.path("access.log")).unwrap_or_default();
        records = text
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .collect();
        if records.len() >= 2 {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(records.len(), 2, "{records:?}");
    for r in &records {
        assert_eq!(r["protocol"], "HTTP/2.0", "{r}");
        assert_eq!(r["status"], 200, "{r}");
        assert_eq!(r["connectionId"].as_str().map(str::len), Some(22), "{r}");
    }
    assert_eq!(records[1]["method"], "POST", "{records:?}");
}

#[test]
fn alpn_follows_the_site_list() {
    let s = H2Site::start("alpn = [\"http/1.1\"]");
    let r = s.curl("/").args(["--http2", "--include"]).run();
    assert!(r.text().starts_with("HTTP/1.1 200"), "{}", r.text());
    let s = H2Site::start("alpn = [\"h2\", \"http/1.1\"]");
    let r = s.curl("/").args(["--http1.1", "--include"]).run();
    assert!(r.text().starts_with("HTTP/1.1 200"), "{}", r.text());
    // An h2-only site: HTTP/2 works, a client that offers only http/1.1 is refused in the
    // handshake (no_application_protocol).
    let s = H2Site::start("alpn = [\"h2\"]");
    let r = s.curl("/").args(["--http2", "--include"]).run();
    assert!(r.text().starts_with("HTTP/2 200"), "{}", r.text());
    let r = s.curl("/").args(["--http1.1"]).run();
    assert_eq!(r.status, None, "{r:?}");
    assert!(
        r.stderr.contains("alert") || r.stderr.contains("SSL"),
        "{r:?}"
    );
}

#[test]
fn the_authority_must_belong_to_the_site_the_sni_selected() {
    let pki = TestPki::new();
    let origin = origin();
    let main = SiteConfig::new(origin.addr(), "optional", Some(pki.path("bundle.pem")));
    let mut other = SiteConfig::new(origin.addr(), "required", Some(pki.path("bundle.pem")));
    other.name = "other".into();
    other.server_names = vec!["other.test".into()];
    let server = Portcullis::start(&config_text(&pki, &[main, other], ""));
    // SNI localhost (optional, no certificate), :authority other.test (required): 421.
    let r = Curl::new(&server, "localhost", "/", &pki.path("root.pem"))
        .args(["--http2", "--include", "-H", "Host: other.test"])
        .run();
    assert_eq!(r.status, Some(421), "{r:?}");
    assert!(r.text().starts_with("HTTP/2 421"), "{}", r.text());
    assert!(server.log().contains("request refused with 421"));
}

#[test]
fn nghttp_multiplexes_streams_on_one_connection() {
    let s = H2Site::start("");
    let port = s.server.addr.port();
    let urls: Vec<String> = (0..8)
        .map(|i| {
            format!(
                "https://localhost:{port}/download?bytes={}",
                50_000 * (i + 1)
            )
        })
        .collect();
    let out = Command::new("nghttp")
        .args(["-nv", "--cert"])
        .arg(&s.client.0)
        .arg("--key")
        .arg(&s.client.1)
        .args(&urls)
        .output()
        .expect("run nghttp (Debian package nghttp2-client)");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    let oks = text.matches(":status: 200").count();
    assert_eq!(oks, 8, "{text}");
    // Eight streams on one connection (one SETTINGS exchange) answered.
    assert!(text.contains("The negotiated protocol: h2"), "{text}");
    let settings = text
        .lines()
        .filter(|l| l.contains("recv SETTINGS frame") && l.contains("flags=0x00"))
        .count();
    assert_eq!(settings, 1, "{text}");

    // The Python client checks bodies: twenty streams of different sizes, all intact.
    let v = s.hostile("multiplex");
    for (id, size) in v["expected"].as_object().expect("expected") {
        assert_eq!(v["status"][id], 200, "{v}");
        assert_eq!(v["body_len"][id], *size, "{v}");
    }
}

#[test]
fn more_than_128_concurrent_streams_are_refused() {
    let s = H2Site::start("");
    let v = s.hostile("streams");
    let resets = v["resets"].as_object().expect("resets");
    assert_eq!(resets.len(), 2, "{v}");
    assert!(
        resets.values().all(|c| code(c) == Some(REFUSED_STREAM)),
        "{v}"
    );
    assert_eq!(v["status"]["1"], 200, "{v}");
    assert!(
        s.log_shows("HTTP/2 stream refused (REFUSED_STREAM)"),
        "{}",
        s.server.log()
    );
    // Logged once per connection, but every refusal is counted.
    assert_eq!(s.refusals("refused_stream"), 2.0);
    assert_eq!(s.refusals("header_list_too_large"), 0.0);
    s.still_serves();
}

#[test]
fn an_oversized_header_list_gets_431_and_an_hpack_bomb_ends_the_connection() {
    let s = H2Site::start("");
    let v = s.hostile("header_list");
    assert_eq!(v["status"]["1"], 431, "{v}");
    assert_eq!(v["status"]["3"], 200, "the connection stays usable: {v}");
    assert!(
        s.log_shows("HTTP/2 request answered 431"),
        "{}",
        s.server.log()
    );
    assert_eq!(s.refusals("header_list_too_large"), 1.0);
    assert_eq!(s.refusals("protocol_error"), 0.0);
    s.expect_cut_off("hpack_bomb");
    assert!(s.log_shows("HTTP/2 protocol error from the viewer"));
    assert_eq!(s.refusals("protocol_error"), 1.0);
    s.still_serves();
}

#[test]
fn rapid_reset_is_cut_off() {
    let s = H2Site::start("");
    s.expect_cut_off("rapid_reset");
    assert!(
        s.log_shows("HTTP/2 protocol error from the viewer") || s.log_shows("rapid reset"),
        "{}",
        s.server.log()
    );
    // Whichever cut it first (the guard or h2's own reset limit), it was counted once.
    assert_eq!(
        s.refusals("rapid_reset") + s.refusals("protocol_error"),
        1.0
    );
    s.still_serves();
}

#[test]
fn a_continuation_flood_is_cut_off() {
    let s = H2Site::start("");
    s.expect_cut_off("continuation");
    assert!(s.log_shows("HTTP/2 protocol error from the viewer"));
    assert_eq!(s.refusals("protocol_error"), 1.0);
    s.still_serves();
}

#[test]
fn settings_and_ping_floods_are_cut_off() {
    let s = H2Site::start("");
    for (scenario, kind) in [
        ("settings_flood", "SETTINGS flood"),
        ("ping_flood", "PING flood"),
    ] {
        s.expect_cut_off(scenario);
        assert!(s.log_shows(kind), "{}", s.server.log());
        s.still_serves();
    }
    assert_eq!(s.refusals("control_flood"), 2.0);
}

#[test]
fn a_window_that_never_opens_resets_only_its_stream() {
    let s = H2Site::start("");
    let v = s.hostile("window");
    // Stream 3 got its window and completed while stream 1 waited for one.
    assert_eq!(v["status"]["3"], 200, "{v}");
    assert_eq!(v["body_len"]["3"], 100_000, "{v}");
    assert!(
        v["stream3_done_after_s"].as_f64().expect("time") < 0.9,
        "{v}"
    );
    // Stream 1 was reset once stream_idle_timeout (1 s) passed; the connection lives on.
    assert_eq!(code(&v["resets"]["1"]), Some(CANCEL), "{v}");
    assert_eq!(v["goaway"], serde_json::Value::Null, "{v}");
    assert!(s.log_shows("HTTP/2 stream window did not open"));
    assert_eq!(s.refusals("stream_timeout"), 1.0);
    s.still_serves();
}

#[test]
fn a_stalled_request_body_gets_408_after_the_stream_idle_timeout() {
    let s = H2Site::start("");
    let v = s.hostile("idle");
    assert_eq!(v["status"]["1"], 408, "{v}");
    let after = v["after_s"].as_f64().expect("time");
    assert!((0.9..5.0).contains(&after), "{v}");
    assert!(s.log_shows("HTTP/2 request body stalled"));
    assert_eq!(s.refusals("stream_timeout"), 1.0);
    s.still_serves();
}

#[test]
fn a_revoked_certificate_gets_goaway_and_close_on_an_open_connection() {
    let s = H2Site::start("");
    let mut scenario = s.interactive("revoke");
    scenario.expect_line("ready");
    let serial = serial_hex(&s.issued);
    let admin = s.server.admin.expect("admin").to_string();
    let out = portcullis_cli(&["revoke", "--admin", &admin, "--store", "viewers", &serial]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    scenario.go();
    let v = scenario.report();
    assert_eq!(v["status"]["1"], 200, "{v}");
    assert!(v["goaway"].is_u64(), "a GOAWAY before the close: {v}");
    assert_eq!(v["closed"], true, "{v}");
    assert!(v["closed_after_s"].as_f64().expect("time") < 5.0, "{v}");
    assert!(s.log_shows("revoked on an open HTTP/2 connection"));
}

#[test]
fn a_small_response_leaves_as_one_tls_record() {
    let s = H2Site::start("");
    let v = s.hostile("records");
    assert_eq!(v["settings_acked"], true, "{v}");
    for id in ["1", "3"] {
        assert_eq!(v["status"][id], 200, "{v}");
        // Above h2's copy threshold (1 KiB), so HEADERS and DATA reach the TLS layer as two
        // slices of one vectored write.
        assert!(v["body_len"][id].as_u64().expect("body") > 1024, "{v}");
        let records = v["records"][id].as_array().expect("records");
        assert_eq!(
            records.len(),
            1,
            "stream {id}: HEADERS and DATA in one record, got {records:?}"
        );
        assert_eq!(records[0][0], 23, "an application-data record: {v}");
    }
}

/// An origin that holds its answer to `/slow` until [`HeldOrigin::release`] (at most 10 s) and
/// answers anything else at once.
struct HeldOrigin {
    origin: ScriptedOrigin,
    released: Arc<(Mutex<bool>, Condvar)>,
}

impl HeldOrigin {
    fn start() -> Self {
        let released = Arc::new((Mutex::new(false), Condvar::new()));
        let origin = ScriptedOrigin::start({
            let released = Arc::clone(&released);
            move |c| {
                let (done, changed) = &*released;
                while let Some(request) = c.read_request() {
                    if request.path() == "/slow" {
                        let guard = done.lock().unwrap_or_else(|p| p.into_inner());
                        let (guard, _) = changed
                            .wait_timeout_while(guard, Duration::from_secs(10), |done| !*done)
                            .unwrap_or_else(|p| p.into_inner());
                        let body = if *guard {
                            "slow"
                        } else {
                            "slow, never released"
                        };
                        drop(guard);
                        let _ = c.respond(body);
                    } else {
                        let _ = c.respond("fast");
                    }
                }
            }
        });
        Self { origin, released }
    }

    /// Waits (bounded) until `/slow` reached the origin.
    fn wait_for_slow(&self) -> bool {
        (0..200).any(|_| {
            let seen = self.paths().iter().any(|p| p == "/slow");
            if !seen {
                std::thread::sleep(Duration::from_millis(25));
            }
            seen
        })
    }

    fn release(&self) {
        let (done, changed) = &*self.released;
        *done.lock().unwrap_or_else(|p| p.into_inner()) = true;
        changed.notify_all();
    }

    /// The paths the origin was asked for, in order.
    fn paths(&self) -> Vec<String> {
        self.origin
            .journal()
            .requests()
            .iter()
            .map(|r| r.path().to_owned())
            .collect()
    }
}

/// Runs the `slow_origin` scenario against `s`: stream 1 asks for /slow; once it is held at
/// the origin, stream 3 asks for /fast and is awaited; then /slow is released. The report.
fn slow_then_fast(s: &H2Site, origin: &HeldOrigin) -> serde_json::Value {
    let mut scenario = s.interactive("slow_origin");
    scenario.expect_line("slow-sent");
    assert!(origin.wait_for_slow(), "/slow never reached the origin");
    scenario.go();
    scenario.expect_line("fast-done");
    origin.release();
    scenario.go();
    scenario.report()
}

/// A site that allows one request in flight per worker, in front of a [`HeldOrigin`].
fn one_request_in_flight() -> (HeldOrigin, H2Site) {
    let origin = HeldOrigin::start();
    let s = H2Site::with_limits(
        "",
        "max_requests_in_flight_per_worker = 1\n",
        origin.origin.addr(),
    );
    (origin, s)
}

#[test]
fn a_slow_origin_response_does_not_hold_back_the_other_streams() {
    // The origin holds /slow's answer until the test releases it and answers /fast at once.
    // /fast goes out on the same viewer connection while /slow is in flight.
    let origin = HeldOrigin::start();
    let s = H2Site::with_origin("", origin.origin.addr());
    let v = slow_then_fast(&s, &origin);
    assert_eq!(v["status"]["3"], 200, "{v}");
    assert_eq!(v["body_len"]["3"], 4, "{v}");
    assert_eq!(v["slow_ended_before_fast"], false, "{v}");
    assert_eq!(v["status"]["1"], 200, "{v}");
    assert_eq!(v["body_len"]["1"], 4, "/slow answered once released: {v}");
    assert_eq!(origin.paths(), ["/slow", "/fast"]);
}

#[test]
fn a_stream_beyond_the_in_flight_limit_is_answered_503() {
    // One request in flight per worker: while /slow waits at the origin, /fast on the same
    // connection is answered 503 without reaching the origin, /slow is answered once
    // released, and the freed slot serves the next request.
    let (origin, s) = one_request_in_flight();
    let v = slow_then_fast(&s, &origin);
    assert_eq!(v["status"]["3"], 503, "{v}");
    assert_eq!(v["status"]["1"], 200, "{v}");
    assert_eq!(v["body_len"]["1"], 4, "/slow answered once released: {v}");
    assert_eq!(
        origin.paths(),
        ["/slow"],
        "the refused stream never reached the origin"
    );
    s.still_serves();
    assert_eq!(origin.paths(), ["/slow", "/still-there"]);
    assert_eq!(s.in_flight_refusals(), 1.0);
}

#[test]
fn an_http1_request_beyond_the_in_flight_limit_is_answered_503() {
    // The same limit on HTTP/1.1: a second connection's request while /slow waits at the
    // origin is answered 503 (and the connection closed) without reaching the origin.
    let (origin, s) = one_request_in_flight();
    let slow = std::thread::scope(|scope| {
        let slow = scope.spawn(|| s.curl("/slow").args(["--http1.1"]).run());
        assert!(origin.wait_for_slow(), "/slow never reached the origin");
        let r = s.curl("/fast").args(["--http1.1"]).run();
        assert_eq!(r.status, Some(503), "{r:?}");
        origin.release();
        slow.join().expect("the /slow request's thread")
    });
    assert_eq!(slow.status, Some(200), "{slow:?}");
    assert_eq!(slow.text(), "slow");
    assert_eq!(
        origin.paths(),
        ["/slow"],
        "the refused request never reached the origin"
    );
    let r = s.curl("/again").args(["--http1.1"]).run();
    assert_eq!(
        r.status,
        Some(200),
        "the freed slot serves the next request: {r:?}"
    );
    assert_eq!(s.in_flight_refusals(), 1.0);
}
