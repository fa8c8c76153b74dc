//! The control plane through the admin API against the real binary: `POST /reload` (new
//! generation and summary, or every validation error while the running configuration stays),
//! `GET /status`, restart-only settings named in the result, session resumption across a
//! changed trust store, and old snapshots freed across many reloads.

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use boring::ssl::{SslConnector, SslFiletype, SslMethod};
use portcullis_e2e::{
    admin_json, assert_session_resumes, config_text, origin, s_client_with_session, wait_for,
    DemoOrigin, Portcullis, SiteConfig, TestPki,
};
use serde_json::Value;

struct Bed {
    pki: TestPki,
    origin: DemoOrigin,
    server: Portcullis,
}

impl Bed {
    fn start(server_extra: &str) -> Self {
        let pki = TestPki::new();
        let origin = origin();
        let config = Self::config(&pki, &origin, "required", server_extra);
        let path = pki.write("portcullis.toml", &config);
        let server = Portcullis::start_file(&path, tempfile::tempdir().expect("dir"));
        Self {
            pki,
            origin,
            server,
        }
    }

    fn config(
        pki: &TestPki,
        origin: &DemoOrigin,
        mode: &'static str,
        server_extra: &str,
    ) -> String {
        let site = SiteConfig::new(origin.addr(), mode, Some(pki.path("bundle.pem")));
        config_text(
            pki,
            &[site],
            &format!("[admin]\nlisten = \"127.0.0.1:0\"\n{server_extra}"),
        )
    }

    fn rewrite(&self, text: &str) {
        self.pki.write("portcullis.toml", text);
    }

    fn admin(&self, method: &str, path: &str) -> (u16, Value) {
        admin_json(self.server.admin.expect("admin"), method, path)
    }
}

#[test]
fn post_reload_answers_with_the_generation_or_every_error_and_status_follows() {
    let bed = Bed::start("");
    let (code, status) = bed.admin("GET", "/status");
    assert_eq!(code, 200, "{status}");
    assert_eq!(status["generation"], 1);
    assert_eq!(status["trigger"], "startup");
    assert!(status["last_reload"].is_null());
    assert!(status["loaded_at"]["rfc3339"].is_string());
    assert!(status["config"]
        .as_str()
        .is_some_and(|c| c.ends_with("portcullis.toml")));

    let (code, report) = bed.admin("POST", "/reload");
    assert_eq!(code, 200, "{report}");
    assert_eq!(report["generation"], 2);
    let site = &report["summary"]["sites"][0];
    assert_eq!(site["name"], "main");
    assert_eq!(
        site["trust_store"]["cas"], 2,
        "root + intermediate: {report:#}"
    );
    assert_eq!(report["restart_required"], Value::Array(vec![]));
    let (_, status) = bed.admin("GET", "/status");
    assert_eq!(status["generation"], 2);
    assert_eq!(status["trigger"], "admin");
    assert_eq!(status["last_reload"]["result"], "applied");

    // Two mistakes: both reported as file: key: reason, nothing changes.
    let bad = Bed::config(&bed.pki, &bed.origin, "required", "")
        .replace("mode = \"required\"", "mode = \"strict\"")
        .replace(
            &format!("{:?}", bed.pki.path("bundle.pem")),
            &format!("{:?}", bed.pki.path("missing.pem")),
        );
    bed.rewrite(&bad);
    let (code, refused) = bed.admin("POST", "/reload");
    assert_eq!(code, 400, "{refused}");
    assert_eq!(refused["generation"], 2);
    let errors: Vec<&str> = refused["errors"]
        .as_array()
        .expect("errors")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        errors
            .iter()
            .any(|e| e.contains("portcullis.toml: site[0].mtls.mode: unknown mode")),
        "{errors:#?}"
    );
    assert!(
        errors
            .iter()
            .any(|e| e.contains("missing.pem: site[0].mtls.trust_store: cannot read file")),
        "{errors:#?}"
    );
    let (_, status) = bed.admin("GET", "/status");
    assert_eq!(status["generation"], 2);
    assert_eq!(status["last_reload"]["result"], "refused");
    assert_eq!(
        status["last_reload"]["errors"].as_array().map(Vec::len),
        Some(errors.len())
    );
    let client = TestPki::client(&bed.pki.intermediate, "still-served");
    let (cert, key) = bed
        .pki
        .write_client("still", &client, &[&bed.pki.intermediate]);
    let r = portcullis_e2e::Curl::new(&bed.server, "localhost", "/", &bed.pki.path("root.pem"))
        .cert(&cert, &key)
        .run();
    assert_eq!(
        r.status,
        Some(200),
        "the running configuration stays: {r:?}"
    );

    // SIGHUP goes the same way.
    bed.rewrite(&Bed::config(&bed.pki, &bed.origin, "optional", ""));
    assert!(bed.server.reload_with_sighup());
    let (_, status) = bed.admin("GET", "/status");
    assert_eq!(status["generation"], 3);
    assert_eq!(status["trigger"], "sighup");
    assert_eq!(status["summary"]["sites"][0]["mode"], "optional");
    let (code, _) = bed.admin("GET", "/reload");
    assert_eq!(code, 405);
}

#[test]
fn restart_only_settings_are_named_instead_of_ignored() {
    let bed = Bed::start("");
    let changed = Bed::config(&bed.pki, &bed.origin, "required", "")
        .replace("workers = 2", "workers = 3")
        .replace(
            "listen = [\"127.0.0.1:0\"]",
            "listen = [\"127.0.0.1:0\", \"127.0.0.2:0\"]",
        );
    bed.rewrite(&changed);
    let (code, report) = bed.admin("POST", "/reload");
    assert_eq!(code, 200, "{report}");
    assert_eq!(
        report["restart_required"],
        serde_json::json!(["server.listen", "server.workers"])
    );
    let (_, status) = bed.admin("GET", "/status");
    assert_eq!(status["restart_required"], report["restart_required"]);
    let log = bed.server.log();
    assert!(
        log.contains("only take effect after a restart") && log.contains("server.workers"),
        "{log}"
    );
}

#[test]
fn a_session_is_not_resumed_after_its_trust_store_changed() {
    let bed = Bed::start("");
    let client = TestPki::client(&bed.pki.intermediate, "resumer");
    let (cert, key) = bed
        .pki
        .write_client("resumer", &client, &[&bed.pki.intermediate]);
    let sess = bed.pki.path("session.pem");
    let s_client = |session_arg: &str| {
        s_client_with_session(
            &bed.server,
            &bed.pki.path("root.pem"),
            &cert,
            &key,
            session_arg,
            &sess,
        )
    };
    assert_session_resumes(&bed.server, &bed.pki.path("root.pem"), &cert, &key, &sess);

    // The trust store no longer holds the client's CAs.
    let other = portcullis_e2e::Issued::self_signed(portcullis_e2e::CertSpec::new(
        "Unrelated Root",
        portcullis_e2e::CertKind::RootCa,
    ))
    .expect("other root");
    bed.pki.write("bundle.pem", &other.cert_pem);
    let (code, report) = bed.admin("POST", "/reload");
    assert_eq!(code, 200, "{report}");
    let (after, err) = s_client("-sess_in");
    assert!(
        !after.contains("Reused"),
        "a session outlived its trust store:\n{after}"
    );
    assert!(!after.contains("HTTP/1.1 200"), "{after}");
    assert!(err.contains("unknown ca"), "{err}");
}

#[test]
fn old_snapshots_are_freed_when_their_last_connection_ends_across_ten_thousand_reloads() {
    let bed = Bed::start("");
    let client = TestPki::client(&bed.pki.intermediate, "holder");
    let (cert, key) = bed
        .pki
        .write_client("holder", &client, &[&bed.pki.intermediate]);
    let live = |bed: &Bed| bed.admin("GET", "/status").1["live_snapshots"].as_u64();
    assert_eq!(live(&bed), Some(1));

    // An open connection holds its generation's snapshot across a reload, until it ends.
    let mut connector = SslConnector::builder(SslMethod::tls()).expect("connector");
    connector.set_ca_file(bed.pki.path("root.pem")).expect("ca");
    connector.set_certificate_chain_file(&cert).expect("cert");
    connector
        .set_private_key_file(&key, SslFiletype::PEM)
        .expect("key");
    let tcp = std::net::TcpStream::connect(bed.server.addr).expect("connect");
    tcp.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut open = connector
        .build()
        .connect("localhost", tcp)
        .expect("handshake");
    open.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .expect("request");
    let mut buf = [0u8; 4096];
    assert!(open.read(&mut buf).expect("response") > 0);
    assert_eq!(bed.admin("POST", "/reload").0, 200);
    assert_eq!(
        live(&bed),
        Some(2),
        "the open connection holds generation 1"
    );
    drop(open);
    wait_for(Duration::from_secs(10), "the old snapshot to go", || {
        (live(&bed) == Some(1)).then_some(())
    });

    // Many reloads: no snapshot stays behind, and memory levels off. Eight clients at a time
    // (the admin server accepts every pending connection each time it looks; the reloads
    // themselves run one at a time).
    let admin = bed.server.admin.expect("admin");
    let reloads = |n: usize| {
        std::thread::scope(|scope| {
            for _ in 0..8 {
                scope.spawn(move || {
                    for _ in 0..n / 8 {
                        let (code, body) = admin_json(admin, "POST", "/reload");
                        assert_eq!(code, 200, "{body}");
                    }
                });
            }
        });
    };
    let started = Instant::now();
    reloads(1_000);
    let rss_1k = bed.server.rss_kib();
    reloads(9_000);
    let rss_10k = bed.server.rss_kib();
    let took = started.elapsed();
    let (_, status) = bed.admin("GET", "/status");
    assert_eq!(status["generation"], 10_002);
    // Workers let go of a replaced snapshot within their 50 ms poll.
    wait_for(Duration::from_secs(10), "one live snapshot", || {
        (live(&bed) == Some(1)).then_some(())
    });
    println!(
        "10,000 reloads in {:.1} s ({:.2} ms each); RSS after 1,000: {rss_1k} KiB, after 10,000: {rss_10k} KiB",
        took.as_secs_f64(),
        took.as_secs_f64() * 1000.0 / 10_000.0
    );
    // Allocator noise, not growth: 9,000 more reloads may not add 8 MiB (a leak of one
    // snapshot per reload would add well over 100 MiB).
    assert!(
        portcullis_e2e::under_sanitizer() || rss_10k < rss_1k + 8 * 1024,
        "RSS grew from {rss_1k} KiB to {rss_10k} KiB"
    );
}
