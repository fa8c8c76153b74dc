//! Faults, end to end: an origin that breaks its response (short, reset, malformed, oversized)
//! never corrupts what the viewer receives and its connection is never reused; trust and
//! revocation files deleted or truncated while running leave the running snapshot in force;
//! a store or log file that cannot grow (a full disk, here a file-size limit) fails the admin
//! change cleanly, leaves the file whole, and the workers keep serving.

use std::path::Path;
use std::time::Duration;

use portcullis_e2e::{
    admin_call, config_text, portcullis_cli, serial_hex, wait_for, Curl, Portcullis,
    ScriptedOrigin, SiteConfig, TestPki,
};

/// An origin that answers each path with its own fault, and `/ok` properly.
fn faulty_origin() -> ScriptedOrigin {
    ScriptedOrigin::start(|c| {
        while let Some(request) = c.read_request() {
            let path = request.path().to_owned();
            let result = match path.as_str() {
                // Ten bytes of a hundred, then a clean close.
                "/short" => {
                    let _ = c.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789");
                    return;
                }
                // Ten bytes of a hundred, then a reset.
                "/reset" => {
                    let _ = c.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789");
                    let _ = socket2::SockRef::from(&c.stream).set_linger(Some(Duration::ZERO));
                    return;
                }
                // A chunked body that stops in the middle of a chunk.
                "/chunk-cut" => {
                    let _ = c.write(
                        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n10\r\n01234",
                    );
                    return;
                }
                "/bad-status" => c.write(b"HTTP/1.1 2x0 OK\r\nContent-Length: 0\r\n\r\n"),
                "/bad-chunk" => c.write(
                    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
                ),
                "/two-lengths" => c.write(
                    b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
                ),
                "/huge-head" => {
                    let filler = "x".repeat(200 * 1024);
                    c.write(
                        format!("HTTP/1.1 200 OK\r\nX-Filler: {filler}\r\nContent-Length: 0\r\n\r\n")
                            .as_bytes(),
                    )
                }
                _ => c.respond(&format!("ok on connection {}", c.index)),
            };
            if result.is_err() {
                return;
            }
        }
    })
}

#[test]
fn a_broken_origin_response_never_reaches_the_viewer_whole_and_its_connection_is_not_reused() {
    let pki = TestPki::new();
    let origin = faulty_origin();
    let site = SiteConfig::new(origin.addr(), "optional", Some(pki.path("bundle.pem")));
    let server =
        Portcullis::start(&config_text(&pki, &[site], "").replace("workers = 2", "workers = 1"));
    let ca = pki.path("root.pem");
    // Cut after the head was sent: the viewer's stream is cut (curl: partial transfer), never
    // completed with other bytes.
    for path in ["/short", "/reset", "/chunk-cut"] {
        let r = Curl::new(&server, "localhost", path, &ca).run();
        assert_ne!(r.exit, Some(0), "{path}: {r:?}");
        assert!(r.body.len() <= 16, "{path}: {r:?}");
        assert!(!r.body.windows(2).any(|w| w == b"ok"), "{path}: {r:?}");
    }
    // Malformed before any byte was sent: a 502.
    for path in ["/bad-status", "/bad-chunk", "/two-lengths", "/huge-head"] {
        let r = Curl::new(&server, "localhost", path, &ca).run();
        let bad_chunk_cut = path == "/bad-chunk" && r.exit != Some(0) && r.body.is_empty();
        assert!(r.status == Some(502) || bad_chunk_cut, "{path}: {r:?}");
        assert!(!r.text().contains("hello"), "{path}: {r:?}");
    }
    // Every broken exchange's origin connection was closed, never handed to the next request.
    let r = Curl::new(&server, "localhost", "/ok", &ca).run();
    assert_eq!(r.status, Some(200), "{r:?}");
    let requests = origin.journal().requests();
    let ok = requests.iter().find(|q| q.path() == "/ok").expect("/ok");
    for broken in requests.iter().filter(|q| q.path() != "/ok") {
        assert_ne!(
            broken.connection,
            ok.connection,
            "/ok reused the connection of {}",
            broken.path()
        );
    }
    // And each broken response was logged with its reason.
    let log = server.log();
    assert!(log.contains("origin"), "{log}");
}

/// A test bed: a bundle and a store holding `stolen`'s serial, both copies the test may break.
struct Bed {
    pki: TestPki,
    _origin: portcullis_e2e::DemoOrigin,
    server: Portcullis,
    config: std::path::PathBuf,
    good: (std::path::PathBuf, std::path::PathBuf),
    stolen: (std::path::PathBuf, std::path::PathBuf),
}

fn bed(wrapper: &[&str], store_padding: usize) -> Bed {
    let pki = TestPki::new();
    let origin = portcullis_e2e::origin();
    let good = TestPki::client(&pki.intermediate, "good");
    let stolen = TestPki::client(&pki.intermediate, "stolen");
    let mut entries = vec![format!(
        "{{\"key\":\"{}\",\"value\":\"stolen laptop\"}}",
        serial_hex(&stolen)
    )];
    // Filler entries make the store file as large as the test needs.
    let mut i = 0;
    while entries.iter().map(String::len).sum::<usize>() < store_padding {
        entries.push(format!("{{\"key\":\"7{i:031x}\",\"value\":\"filler\"}}"));
        i += 1;
    }
    for dir in ["store", "live", "logs"] {
        std::fs::create_dir(pki.path(dir)).expect("directory");
    }
    let store = pki.write(
        "store/revoked.json",
        &format!("{{\"data\":[{}]}}", entries.join(",")),
    );
    let bundle = pki.write(
        "live/bundle.pem",
        &std::fs::read_to_string(pki.path("bundle.pem")).expect("bundle"),
    );
    let mut site = SiteConfig::new(origin.addr(), "required", Some(bundle));
    site.mtls_extra = "revocation_store = \"viewers\"\n".into();
    let text = config_text(
        &pki,
        &[site],
        &format!(
            "[sources]\nwatch_files = false\n[admin]\nlisten = \"127.0.0.1:0\"\n[[revocation_store]]\nname = \"viewers\"\nfile = {store:?}\n[logs.access]\npath = {:?}\n",
            pki.path("logs/access.log")
        ),
    );
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("portcullis.toml");
    std::fs::write(&config, text).expect("config");
    let server = Portcullis::start_wrapped(&config, dir, &[], wrapper);
    let good = pki.write_client("good", &good, &[&pki.intermediate]);
    let stolen = pki.write_client("stolen", &stolen, &[&pki.intermediate]);
    Bed {
        pki,
        _origin: origin,
        server,
        config,
        good,
        stolen,
    }
}

impl Bed {
    fn status(&self, client: &(std::path::PathBuf, std::path::PathBuf)) -> Option<u16> {
        let r = Curl::new(&self.server, "localhost", "/", &self.pki.path("root.pem"))
            .cert(&client.0, &client.1)
            .run();
        if r.status.is_none() && client == &self.good {
            eprintln!("good client failed: {r:?}\n{}", self.server.log());
        }
        r.status
    }

    /// The running policy: the good client served, the stolen one refused.
    fn assert_policy_holds(&self, after: &str) {
        assert_eq!(
            self.status(&self.good),
            Some(200),
            "good client after {after}"
        );
        assert_eq!(
            self.status(&self.stolen),
            None,
            "stolen client after {after}"
        );
    }

    /// `portcullis check` on the configuration fails and names `file`.
    fn assert_check_names(&self, file: &Path) {
        let out = portcullis_cli(&["check", "--config", self.config.to_str().expect("path")]);
        let text = String::from_utf8_lossy(&out.stderr).into_owned()
            + &String::from_utf8_lossy(&out.stdout);
        assert!(!out.status.success(), "{text}");
        let name = file.file_name().expect("name").to_string_lossy();
        assert!(text.contains(name.as_ref()), "{text}");
    }
}

/// What is broken, the file it breaks, and how.
type Fault<'a> = (&'static str, &'a Path, Box<dyn Fn() + 'a>);

#[test]
fn trust_and_store_files_deleted_or_truncated_while_running_leave_the_running_snapshot() {
    let bed = bed(&[], 0);
    bed.assert_policy_holds("start");
    let bundle = bed.pki.path("live/bundle.pem");
    let store = bed.pki.path("store/revoked.json");
    let bundle_bytes = std::fs::read(&bundle).expect("bundle");
    let store_bytes = std::fs::read(&store).expect("store");
    let faults: [Fault<'_>; 4] = [
        (
            "deleting the trust bundle",
            &bundle,
            Box::new(|| std::fs::remove_file(&bundle).expect("delete")),
        ),
        (
            "truncating the trust bundle",
            &bundle,
            Box::new(|| {
                std::fs::write(&bundle, &bundle_bytes[..bundle_bytes.len() / 2]).expect("truncate")
            }),
        ),
        (
            "deleting the revocation store",
            &store,
            Box::new(|| std::fs::remove_file(&store).expect("delete")),
        ),
        (
            "truncating the revocation store",
            &store,
            Box::new(|| {
                std::fs::write(&store, &store_bytes[..store_bytes.len() / 2]).expect("truncate")
            }),
        ),
    ];
    for (what, file, break_it) in &faults {
        break_it();
        assert!(
            !bed.server.reload_with_sighup(),
            "a reload after {what} was applied"
        );
        bed.assert_policy_holds(what);
        bed.assert_check_names(file);
        let log = bed.server.log();
        let name = file.file_name().expect("name").to_string_lossy();
        assert!(
            log.contains(name.as_ref()),
            "{what}: the log does not say which file"
        );
        // Put it back: the next reload succeeds (the file watcher may get there first).
        std::fs::write(&bundle, &bundle_bytes).expect("restore bundle");
        std::fs::write(&store, &store_bytes).expect("restore store");
        wait_for(Duration::from_secs(10), "a reload to succeed", || {
            bed.server.reload_with_sighup().then_some(())
        });
        bed.assert_policy_holds(&format!("restoring after {what}"));
    }
}

#[test]
fn a_store_or_log_that_cannot_grow_fails_cleanly_and_the_workers_keep_serving() {
    // Every file the data plane writes is limited to 64 KiB (as a full disk would stop it);
    // the store starts just under that.
    const LIMIT: usize = 64 * 1024;
    let bed = bed(&["prlimit", &format!("--fsize={LIMIT}"), "--"], LIMIT / 2);
    bed.assert_policy_holds("start");
    let store = bed.pki.path("store/revoked.json");
    let admin = bed.server.admin.expect("admin");

    // Revocations with long values until one would take the file past the limit: that one is
    // refused with the reason, and neither the file nor the running data changed.
    let value = bed.pki.write("value.txt", &"v".repeat(1000));
    let mut accepted = Vec::new();
    let refused = (0..80).find_map(|i| {
        let before = std::fs::read(&store).expect("store");
        let key = format!("0abc{i:04x}");
        let (status, body) = admin_call(
            admin,
            "PUT",
            &format!("/revocations/viewers/{key}"),
            Some(&value),
        );
        if (200..300).contains(&status) {
            accepted.push(key);
            return None;
        }
        Some((key, status, body, before))
    });
    let (key, status, body, before) = refused.expect("the store file never reached its limit");
    assert!(
        !accepted.is_empty(),
        "the first revocation was already refused: {body}"
    );
    assert_eq!(status, 500, "{body}");
    assert!(
        body.contains("revoked.json") && body.contains("File too large"),
        "{body}"
    );
    assert_eq!(
        std::fs::read(&store).expect("store"),
        before,
        "the store file changed"
    );
    serde_json::from_slice::<serde_json::Value>(&before).expect("the store file is valid JSON");
    let (status, _) = admin_call(admin, "GET", &format!("/revocations/viewers/{key}"), None);
    assert_eq!(status, 404, "the refused revocation is in force");
    let leftovers: Vec<_> = std::fs::read_dir(bed.pki.path("store"))
        .expect("store dir")
        .filter_map(Result::ok)
        .map(|e| e.file_name())
        .filter(|n| n != "revoked.json")
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
    // A change that shrinks the file still goes through, and the policy still holds.
    let (status, body) = admin_call(
        admin,
        "DELETE",
        &format!("/revocations/viewers/{}", accepted[0]),
        None,
    );
    assert!((200..300).contains(&status), "{status} {body}");
    bed.assert_policy_holds("a refused store write");

    // The access log reaches the limit: its writes fail and are counted, requests go on.
    for _ in 0..400 {
        assert_eq!(bed.status(&bed.good), Some(200));
        let size = std::fs::metadata(bed.pki.path("logs/access.log")).map_or(0, |m| m.len());
        if size as usize >= LIMIT - 512 {
            break;
        }
    }
    for _ in 0..20 {
        assert_eq!(bed.status(&bed.good), Some(200));
    }
    let (status, metrics) = admin_call(admin, "GET", "/metrics", None);
    assert_eq!(status, 200);
    let errors: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("portcullis_log_write_errors_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no write error counter in {metrics}"));
    assert!(errors >= 1.0, "log write errors: {errors}");
    assert!(
        std::fs::metadata(bed.pki.path("logs/access.log"))
            .expect("log")
            .len()
            <= LIMIT as u64
    );
    // Its diagnostics (standard error, a file here) reached the limit too, and it still serves.
    assert!(
        bed.server.log().len() >= LIMIT - 4096,
        "{}",
        bed.server.log().len()
    );
    assert_eq!(bed.status(&bed.good), Some(200));
}
