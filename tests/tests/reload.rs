//! Reloading revocation stores and sites safely, against the real binary with real curl
//! handshakes right after the first SIGHUP: a reload resolves every site's revocation store by
//! name from the new configuration alone and swaps it in one step, so adding, removing,
//! reordering or renaming stores, or moving a site to another store, never fails open or
//! points a site at another store's data.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use boring::ssl::{SslConnector, SslFiletype, SslMethod, SslStream};
use portcullis_e2e::{
    admin_call, config_text, origin, portcullis_cli, serial_hex, Curl, CurlResult, DemoOrigin,
    Portcullis, SiteConfig, TestPki,
};

/// A client certificate on disk, with its serial.
struct Client {
    cert: PathBuf,
    key: PathBuf,
    serial: String,
}

/// A running server, its configuration file and a few clients, each revoked by one store
/// file: `a.json` revokes `x`, `b.json` revokes `y`, `c.json` revokes `w`; `z` is in none.
struct Bed {
    pki: TestPki,
    origin: DemoOrigin,
    config_path: PathBuf,
    server: Portcullis,
    x: Client,
    y: Client,
    w: Client,
    z: Client,
}

impl Bed {
    /// Starts with `stores` (name, file) and the site using `site_store`.
    fn start(stores: &[(&str, &str)], site_store: Option<&str>) -> Self {
        let pki = TestPki::new();
        let origin = origin();
        let client = |cn: &str| {
            let issued = TestPki::client(&pki.intermediate, cn);
            let (cert, key) = pki.write_client(cn, &issued, &[&pki.intermediate]);
            Client {
                cert,
                key,
                serial: serial_hex(&issued),
            }
        };
        let (x, y, w, z) = (client("x"), client("y"), client("w"), client("z"));
        for (file, revoked) in [("a.json", &x), ("b.json", &y), ("c.json", &w)] {
            pki.write(
                file,
                &format!(
                    "{{\"data\":[{{\"key\":\"{}\",\"value\":\"in {file}\"}}]}}",
                    revoked.serial
                ),
            );
        }
        let config_path = pki.path("portcullis.toml");
        write_config(&pki, &origin, &config_path, stores, site_store);
        let server = Portcullis::start_file(&config_path, tempfile::tempdir().expect("dir"));
        assert!(server.admin.is_some(), "admin address not announced");
        Self {
            pki,
            origin,
            config_path,
            server,
            x,
            y,
            w,
            z,
        }
    }

    /// Rewrites the configuration and reloads it with SIGHUP; asserts it was applied.
    fn reload(&self, stores: &[(&str, &str)], site_store: Option<&str>) {
        write_config(
            &self.pki,
            &self.origin,
            &self.config_path,
            stores,
            site_store,
        );
        assert!(
            self.server.reload_with_sighup(),
            "reload refused:\n{}",
            self.server.log()
        );
    }

    fn get(&self, client: &Client) -> CurlResult {
        Curl::new(&self.server, "localhost", "/", &self.pki.path("root.pem"))
            .cert(&client.cert, &client.key)
            .run()
    }

    /// Asserts which of x, y, w, z are accepted (true) and which refused as revoked.
    fn expect(&self, accepted: [bool; 4], context: &str) {
        for (name, client, accept) in [
            ("x", &self.x, accepted[0]),
            ("y", &self.y, accepted[1]),
            ("w", &self.w, accepted[2]),
            ("z", &self.z, accepted[3]),
        ] {
            let r = self.get(client);
            if accept {
                assert_eq!(r.status, Some(200), "{context}: {name} refused: {r:?}");
            } else {
                assert_eq!(r.status, None, "{context}: {name} accepted: {r:?}");
                assert!(
                    r.stderr.contains("certificate revoked"),
                    "{context}: {name}: {}",
                    r.stderr
                );
            }
        }
    }

    /// Revokes `client` in `store` with `portcullis revoke` through the admin API.
    fn revoke(&self, store: &str, client: &Client) {
        let admin = self.server.admin.expect("admin").to_string();
        let out = portcullis_cli(&[
            "revoke",
            "--admin",
            &admin,
            "--store",
            store,
            &client.serial,
            "--reason",
            "runtime",
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn admin(&self, method: &str, path: &str) -> (u16, String) {
        admin_call(self.server.admin.expect("admin"), method, path, None)
    }
}

/// Writes the configuration for `stores` (name, file) with the one site using `site_store`.
fn write_config(
    pki: &TestPki,
    origin: &DemoOrigin,
    path: &Path,
    stores: &[(&str, &str)],
    site_store: Option<&str>,
) {
    let mut site = SiteConfig::new(origin.addr(), "required", Some(pki.path("bundle.pem")));
    if let Some(store) = site_store {
        site.mtls_extra = format!("revocation_store = {store:?}\n");
    }
    let mut extra = "[admin]\nlisten = \"127.0.0.1:0\"\n".to_owned();
    for (name, file) in stores {
        extra.push_str(&format!(
            "\n[[revocation_store]]\nname = {name:?}\nfile = {:?}\n",
            pki.path(file)
        ));
    }
    std::fs::write(path, config_text(pki, &[site], &extra)).expect("write config");
}

#[test]
fn adding_a_store_revokes_at_the_first_reload() {
    let bed = Bed::start(&[], None);
    bed.expect([true, true, true, true], "no store");
    bed.reload(&[("a", "a.json")], Some("a"));
    bed.expect([false, true, true, true], "store a added");
}

#[test]
fn removing_a_store_keeps_the_site_on_the_store_it_names() {
    let bed = Bed::start(&[("a", "a.json"), ("b", "b.json")], Some("b"));
    bed.expect([true, false, true, true], "a and b, site on b");
    bed.reload(&[("b", "b.json")], Some("b"));
    bed.expect([true, false, true, true], "a removed");
    let (status, body) = bed.admin("GET", &format!("/revocations/a/{}", bed.x.serial));
    assert_eq!(
        status, 404,
        "the removed store is gone from the admin API: {body}"
    );
}

#[test]
fn reordering_stores_keeps_each_site_on_its_store() {
    let bed = Bed::start(&[("a", "a.json"), ("b", "b.json")], Some("a"));
    bed.expect([false, true, true, true], "site on a");
    bed.reload(&[("b", "b.json"), ("a", "a.json")], Some("a"));
    bed.expect([false, true, true, true], "b and a swapped");
}

#[test]
fn renaming_a_store_uses_the_new_definition_and_drops_the_old_name() {
    let bed = Bed::start(&[("a", "a.json")], Some("a"));
    bed.expect([false, true, true, true], "site on a");
    bed.reload(&[("renamed", "c.json")], Some("renamed"));
    bed.expect([true, true, false, true], "a renamed, now reading c.json");
    let (status, _) = bed.admin("GET", &format!("/revocations/a/{}", bed.x.serial));
    assert_eq!(status, 404);
    let (status, body) = bed.admin("GET", &format!("/revocations/renamed/{}", bed.w.serial));
    assert_eq!(status, 200, "{body}");
    // Runtime revocations go to the renamed store and apply at once.
    bed.revoke("renamed", &bed.z);
    bed.expect([true, true, false, false], "z revoked in the renamed store");
}

#[test]
fn moving_a_site_to_another_store_applies_to_handshakes_and_open_connections() {
    let bed = Bed::start(&[("a", "a.json")], Some("a"));
    bed.expect([false, true, true, true], "site on a");
    let mut open = mtls_connect(&bed, &bed.z);
    assert!(request(&mut open).starts_with("HTTP/1.1 200"));

    bed.reload(&[("a", "a.json"), ("b", "b.json")], Some("b"));
    bed.expect([true, false, true, true], "site moved to the new store b");
    assert!(
        request(&mut open).starts_with("HTTP/1.1 200"),
        "the open connection keeps its identity across the reload"
    );
    // A revocation in the site's new store applies to the connection opened before the move.
    bed.revoke("b", &bed.z);
    assert_closed_without_200(&mut open);
}

#[test]
fn runtime_revocations_survive_a_reload_that_keeps_the_store() {
    let bed = Bed::start(&[("a", "a.json")], Some("a"));
    bed.revoke("a", &bed.z);
    bed.expect([false, true, true, false], "x from the file, z at run time");
    bed.reload(&[("b", "b.json"), ("a", "a.json")], Some("a"));
    bed.expect([false, true, true, false], "after the reload");
}

#[test]
fn a_reload_that_revokes_cuts_open_connections_of_the_revoked_certificate() {
    let bed = Bed::start(&[("a", "a.json")], Some("a"));
    let mut open = mtls_connect(&bed, &bed.w);
    assert!(request(&mut open).starts_with("HTTP/1.1 200"));
    bed.reload(&[("a", "c.json")], Some("a"));
    bed.expect([true, true, false, true], "a now reads c.json");
    assert_closed_without_200(&mut open);
}

/// A TLS connection presenting `client`'s certificate.
fn mtls_connect(bed: &Bed, client: &Client) -> SslStream<std::net::TcpStream> {
    let mut c = SslConnector::builder(SslMethod::tls()).expect("connector");
    c.set_ca_file(bed.pki.path("root.pem")).expect("ca");
    c.set_certificate_chain_file(&client.cert).expect("cert");
    c.set_private_key_file(&client.key, SslFiletype::PEM)
        .expect("key");
    let tcp = std::net::TcpStream::connect(bed.server.addr).expect("connect");
    tcp.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    c.build().connect("localhost", tcp).expect("handshake")
}

/// Sends one keep-alive request and returns the response head and body (read until the
/// echo origin's body is complete or the connection closes).
fn request(tls: &mut SslStream<std::net::TcpStream>) -> String {
    let _ = tls.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n");
    let mut all = Vec::new();
    let mut buf = [0u8; 16384];
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        match tls.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                all.extend_from_slice(&buf[..n]);
                if response_complete(&all) {
                    break;
                }
            }
        }
    }
    String::from_utf8_lossy(&all).into_owned()
}

/// Whether `bytes` hold a whole response with a Content-Length body.
fn response_complete(bytes: &[u8]) -> bool {
    let text = String::from_utf8_lossy(bytes);
    let Some((head, body)) = text.split_once("\r\n\r\n") else {
        return false;
    };
    head.lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse::<usize>().ok())
                .flatten()
        })
        .is_some_and(|len| body.len() >= len)
}

/// Asserts the connection is closed (bounded) without another 200: a request then gets a 403
/// and a close, or nothing.
fn assert_closed_without_200(tls: &mut SslStream<std::net::TcpStream>) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let answer = request(tls);
        assert!(
            !answer.contains("HTTP/1.1 200"),
            "a revoked open connection was served: {answer}"
        );
        if answer.is_empty() || answer.starts_with("HTTP/1.1 403") {
            return;
        }
        assert!(Instant::now() < deadline, "connection still open: {answer}");
    }
}
