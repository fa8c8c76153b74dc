//! Hostile input to the admin API of the real binary: path tricks in store names and serials,
//! a declared body over the limit, malformed imports (refused whole), and concurrent writers
//! that never leave a store file a reader cannot parse.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use portcullis_e2e::{admin_call, config_text, origin, Portcullis, SiteConfig, TestPki};

struct Bed {
    pki: TestPki,
    _origin: portcullis_e2e::DemoOrigin,
    server: Portcullis,
    store: PathBuf,
}

fn bed() -> Bed {
    let pki = TestPki::new();
    let origin = origin();
    let store = pki.write(
        "revoked.json",
        "{\"data\":[{\"key\":\"0a\",\"value\":\"first\"}]}",
    );
    let mut site = SiteConfig::new(origin.addr(), "required", Some(pki.path("bundle.pem")));
    site.mtls_extra = "revocation_store = \"viewers\"\n".into();
    let server = Portcullis::start(&config_text(
        &pki,
        &[site],
        &format!(
            "[admin]\nlisten = \"127.0.0.1:0\"\n[[revocation_store]]\nname = \"viewers\"\nfile = {store:?}\n"
        ),
    ));
    Bed {
        pki,
        _origin: origin,
        server,
        store,
    }
}

impl Bed {
    fn admin(&self) -> SocketAddr {
        self.server.admin.expect("admin")
    }

    /// Sends `request` as is; the response's status.
    fn raw(&self, request: &[u8]) -> u16 {
        let mut tcp = TcpStream::connect(self.admin()).expect("connect");
        tcp.set_read_timeout(Some(Duration::from_secs(20)))
            .expect("timeout");
        tcp.write_all(request).expect("send");
        let mut response = Vec::new();
        let _ = tcp.read_to_end(&mut response);
        let text = String::from_utf8_lossy(&response);
        text.split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("no status in {text:?}"))
    }

    fn store_text(&self) -> String {
        std::fs::read_to_string(&self.store).expect("store file")
    }
}

#[test]
fn path_tricks_in_store_names_and_serials_touch_no_file() {
    let bed = bed();
    let before = bed.store_text();
    let value = bed.pki.write("value.txt", "x");
    for (path, expected) in [
        ("/revocations/..%2F..%2Fetc%2Fpasswd/01", 404),
        ("/revocations/..%2Frevoked.json/01", 404),
        ("/revocations/viewers%00/01", 404),
        ("/revocations/viewers/..%2F..%2Fetc%2Fpasswd", 400),
        ("/revocations/viewers/0a%2F0b", 400),
        ("/revocations/viewers/%ff", 400),
        ("/revocations/viewers/0x0a", 400),
    ] {
        let (status, body) = admin_call(bed.admin(), "PUT", path, Some(&value));
        assert_eq!(status, expected, "{path}: {body}");
    }
    // Dot segments are not resolved to another store.
    let request = "PUT /revocations/other/../viewers/0b HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nConnection: close\r\n\r\nx";
    assert_eq!(bed.raw(request.as_bytes()), 404);
    assert_eq!(bed.store_text(), before, "the store file changed");
    let dir: Vec<_> = std::fs::read_dir(bed.pki.path(""))
        .expect("dir")
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("passwd") || n.starts_with('.'))
        .collect();
    assert!(dir.is_empty(), "files created: {dir:?}");
}

#[test]
fn oversized_and_malformed_bodies_are_refused_whole() {
    let bed = bed();
    let before = bed.store_text();
    // A declared body over the limit is refused before it is read.
    let status = bed.raw(
        b"POST /revocations/viewers/import HTTP/1.1\r\nHost: a\r\nContent-Length: 1000000000\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(status, 413);
    for (name, body) in [
        ("not-json.json", "{\"data\":["),
        ("wrong-shape.json", "{\"data\":{\"key\":\"0b\"}}"),
        ("not-an-object.json", "[1,2,3]"),
        (
            "one-bad-serial.json",
            "{\"data\":[{\"key\":\"0b\",\"value\":\"ok\"},{\"key\":\"zz\",\"value\":\"bad\"}]}",
        ),
        (
            "value-not-string.json",
            "{\"data\":[{\"key\":\"0b\",\"value\":{\"nested\":true}}]}",
        ),
        (
            "huge-value.json",
            &format!(
                "{{\"data\":[{{\"key\":\"0b\",\"value\":\"{}\"}}]}}",
                "v".repeat(4096)
            ),
        ),
    ] {
        let file = bed.pki.write(name, body);
        let (status, answer) = admin_call(
            bed.admin(),
            "POST",
            "/revocations/viewers/import",
            Some(&file),
        );
        assert_eq!(status, 400, "{name}: {answer}");
        assert_eq!(bed.store_text(), before, "{name} changed the store file");
        let (status, _) = admin_call(bed.admin(), "GET", "/revocations/viewers/0b", None);
        assert_eq!(status, 404, "{name} was applied in part");
    }
}

#[test]
fn concurrent_admin_writes_never_leave_an_unparsable_store_file() {
    let bed = bed();
    let stop = AtomicBool::new(false);
    let value = bed.pki.write("value.txt", "concurrent");
    let (reads, writes) = std::thread::scope(|scope| {
        let reader = scope.spawn(|| {
            let mut reads = 0u32;
            while !stop.load(Ordering::Relaxed) {
                let text = bed.store_text();
                serde_json::from_str::<serde_json::Value>(&text)
                    .unwrap_or_else(|e| panic!("a reader saw an unparsable store ({e}): {text}"));
                reads += 1;
            }
            reads
        });
        let writers: Vec<_> = (0..6)
            .map(|w| {
                let (bed, value) = (&bed, &value);
                scope.spawn(move || {
                    for i in 0..25 {
                        let path = format!("/revocations/viewers/{:x}{i:02x}", w + 1);
                        let (status, body) = admin_call(bed.admin(), "PUT", &path, Some(value));
                        assert!((200..300).contains(&status), "{path}: {status} {body}");
                        if i % 3 == 0 {
                            let (status, body) = admin_call(bed.admin(), "DELETE", &path, None);
                            assert!((200..300).contains(&status), "{path}: {status} {body}");
                        }
                    }
                    25
                })
            })
            .collect();
        let writes: u32 = writers.into_iter().map(|t| t.join().expect("writer")).sum();
        stop.store(true, Ordering::Relaxed);
        (reader.join().expect("reader"), writes)
    });
    assert!(reads > 0 && writes == 150);
    // The file holds exactly what the API says: the first entry and the 6 x 16 kept ones.
    let stored: serde_json::Value = serde_json::from_str(&bed.store_text()).expect("json");
    let entries = stored["data"].as_array().expect("data array");
    assert_eq!(entries.len(), 1 + 6 * 16, "{stored}");
    for w in 0..6 {
        for i in 0..25 {
            let path = format!("/revocations/viewers/{:x}{i:02x}", w + 1);
            let (status, _) = admin_call(bed.admin(), "GET", &path, None);
            assert_eq!(status, if i % 3 == 0 { 404 } else { 200 }, "{path}");
        }
    }
}
