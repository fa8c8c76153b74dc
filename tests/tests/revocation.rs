//! Revocation end to end: the admin API and CLI, revoked-serial stores, CRLs, session
//! resumption and open connections, against the real binary with real curl and openssl.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use boring::ssl::{SslConnector, SslFiletype, SslMethod, SslStream};
use portcullis_e2e::{
    admin_call, assert_session_resumes, config_text, current_crl, origin, portcullis_cli,
    s_client_with_session, serial_hex, Curl, CurlResult, DemoOrigin, Issued, Portcullis,
    SiteConfig, TestPki,
};

/// A `required` site with a revoked-serial store `viewers` and the admin API on loopback.
struct Setup {
    pki: TestPki,
    config_path: PathBuf,
    store: PathBuf,
    _origin: DemoOrigin,
    server: Portcullis,
}

impl Setup {
    fn start(mtls_extra: &str) -> Self {
        let pki = TestPki::new();
        let origin = origin();
        let store = pki.write("revoked.json", "{\"data\":[]}");
        let config_path = Self::write_config(&pki, &origin, &store, mtls_extra);
        let server = Portcullis::start_file(&config_path, tempfile::tempdir().expect("dir"));
        assert!(server.admin.is_some(), "admin address not announced");
        Self {
            pki,
            config_path,
            store,
            _origin: origin,
            server,
        }
    }

    fn write_config(pki: &TestPki, origin: &DemoOrigin, store: &Path, mtls_extra: &str) -> PathBuf {
        let mut site = SiteConfig::new(origin.addr(), "required", Some(pki.path("bundle.pem")));
        site.mtls_extra = format!("revocation_store = \"viewers\"\n{mtls_extra}");
        let server_extra = format!(
            "[admin]\nlisten = \"127.0.0.1:0\"\n\n[[revocation_store]]\nname = \"viewers\"\nfile = {store:?}\n"
        );
        let text = config_text(pki, &[site], &server_extra);
        pki.write("portcullis.toml", &text)
    }

    fn admin(&self) -> String {
        self.server.admin.expect("admin").to_string()
    }

    /// A fresh client certificate from the intermediate, with its files.
    fn client(&self, cn: &str) -> (Issued, PathBuf, PathBuf) {
        let client = TestPki::client(&self.pki.intermediate, cn);
        let (cert, key) = self
            .pki
            .write_client(cn, &client, &[&self.pki.intermediate]);
        (client, cert, key)
    }

    fn get(&self, cert: &Path, key: &Path) -> CurlResult {
        Curl::new(&self.server, "localhost", "/", &self.pki.path("root.pem"))
            .cert(cert, key)
            .run()
    }

    fn revoke(&self, serial: &str, reason: &str) {
        let out = portcullis_cli(&[
            "revoke",
            "--admin",
            &self.admin(),
            "--store",
            "viewers",
            serial,
            "--reason",
            reason,
        ]);
        assert!(
            out.status.success(),
            "revoke failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// A TLS connection presenting `cert`, for hand-written requests.
    fn mtls_connect(&self, cert: &Path, key: &Path) -> SslStream<std::net::TcpStream> {
        let mut c = SslConnector::builder(SslMethod::tls()).expect("connector");
        c.set_ca_file(self.pki.path("root.pem")).expect("ca");
        c.set_certificate_chain_file(cert).expect("cert");
        c.set_private_key_file(key, SslFiletype::PEM).expect("key");
        let tcp = std::net::TcpStream::connect(self.server.addr).expect("connect");
        tcp.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        c.build().connect("localhost", tcp).expect("handshake")
    }
}

fn assert_refused_revoked(r: &CurlResult) {
    assert_eq!(r.status, None, "expected a refused handshake: {r:?}");
    assert!(r.stderr.contains("certificate revoked"), "{}", r.stderr);
}

/// Reads until the server closes (bounded); returns what arrived.
fn read_until_closed(tls: &mut SslStream<std::net::TcpStream>) -> Vec<u8> {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut all = Vec::new();
    let mut buf = [0u8; 16384];
    loop {
        assert!(Instant::now() < deadline, "connection not closed in time");
        match tls.read(&mut buf) {
            Ok(0) => return all,
            Ok(n) => all.extend_from_slice(&buf[..n]),
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut =>
            {
                panic!("connection still open after revocation")
            }
            Err(_) => return all,
        }
    }
}

#[test]
fn revoke_and_unrevoke_through_the_cli_apply_to_the_next_handshake() {
    let s = Setup::start("");
    let (client, cert, key) = s.client("viewer");
    assert_eq!(s.get(&cert, &key).status, Some(200));

    // Given with colons and upper case: the server normalises.
    let serial = serial_hex(&client);
    let colons: Vec<String> = serial
        .as_bytes()
        .chunks(2)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect();
    s.revoke(&colons.join(":"), "stolen laptop");
    assert_refused_revoked(&s.get(&cert, &key));

    let (status, body) = admin_call(
        s.server.admin.expect("admin"),
        "GET",
        &format!("/revocations/viewers/{}", serial.to_lowercase()),
        None,
    );
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("stolen laptop"), "{body}");
    let other = s.client("bystander");
    assert_eq!(
        s.get(&other.1, &other.2).status,
        Some(200),
        "only the revoked serial is refused"
    );

    let out = portcullis_cli(&[
        "unrevoke",
        "--admin",
        &s.admin(),
        "--store",
        "viewers",
        &serial,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(s.get(&cert, &key).status, Some(200));
}

#[test]
fn a_revoked_intermediate_refuses_its_whole_subtree() {
    let s = Setup::start("");
    let (_, cert, key) = s.client("under-intermediate");
    assert_eq!(s.get(&cert, &key).status, Some(200));
    s.revoke(&serial_hex(&s.pki.intermediate), "compromised CA");
    assert_refused_revoked(&s.get(&cert, &key));
    let (_, cert2, key2) = s.client("another");
    assert_refused_revoked(&s.get(&cert2, &key2));
}

#[test]
fn crls_revoke_for_their_issuer_and_expired_crls_follow_the_policy() {
    let pki = TestPki::new();
    let origin = origin();
    let revoked = TestPki::client(&pki.intermediate, "on-the-crl");
    let fine = TestPki::client(&pki.intermediate, "not-on-the-crl");
    let now = time::OffsetDateTime::now_utc();
    let fresh = current_crl(&pki.intermediate, &[&revoked]);
    let stale = pki
        .intermediate
        .crl(
            &[&revoked],
            now - time::Duration::days(10),
            now - time::Duration::days(1),
        )
        .expect("crl");
    let fresh_path = pki.write("fresh.crl", &fresh);
    let stale_path = pki.write("stale.crl", &stale);
    let (rc, rk) = pki.write_client("revoked", &revoked, &[&pki.intermediate]);
    let (fc, fk) = pki.write_client("fine", &fine, &[&pki.intermediate]);
    let run = |crl: &Path, policy: &str| {
        let mut site = SiteConfig::new(origin.addr(), "required", Some(pki.path("bundle.pem")));
        site.mtls_extra = format!("crls = [{crl:?}]\ncrl_expired = \"{policy}\"\n");
        let server = Portcullis::start(&config_text(&pki, &[site], ""));
        let get = |c: &Path, k: &Path| {
            Curl::new(&server, "localhost", "/", &pki.path("root.pem"))
                .cert(c, k)
                .run()
        };
        (get(&rc, &rk), get(&fc, &fk))
    };
    let (r, f) = run(&fresh_path, "deny");
    assert_refused_revoked(&r);
    assert_eq!(f.status, Some(200), "{f:?}");

    let (r, f) = run(&stale_path, "deny");
    assert_eq!(r.status, None);
    assert_eq!(
        f.status, None,
        "an expired CRL fails closed under deny: {f:?}"
    );
    assert!(f.stderr.contains("certificate expired"), "{}", f.stderr);

    let (r, f) = run(&stale_path, "allow");
    assert_refused_revoked(&r);
    assert_eq!(
        f.status,
        Some(200),
        "allow accepts despite the expired CRL: {f:?}"
    );
}

#[test]
fn a_crl_applies_whatever_the_encoding_of_its_issuers_name() {
    // The client certificate's issuer field encodes the intermediate's name as
    // PrintableString; the intermediate's subject (and so its CRL's issuer) as UTF8String.
    // Path validation compares names canonically and chains them; so must the CRL match.
    let pki = TestPki::new();
    let origin = origin();
    let spec = portcullis_e2e::CertSpec::new("reencoded", portcullis_e2e::CertKind::Client);
    let revoked = pki
        .intermediate
        .issue_with_reencoded_issuer_name(spec)
        .expect("client");
    let other = pki
        .intermediate
        .issue_with_reencoded_issuer_name(portcullis_e2e::CertSpec::new(
            "reencoded-fine",
            portcullis_e2e::CertKind::Client,
        ))
        .expect("client");
    let crl = current_crl(&pki.intermediate, &[&revoked]);
    let crl_path = pki.write("intermediate.crl", &crl);
    let (rc, rk) = pki.write_client("reencoded", &revoked, &[&pki.intermediate]);
    let (oc, ok) = pki.write_client("reencoded-fine", &other, &[&pki.intermediate]);
    let issuer_of = |path: &Path| {
        let out = portcullis_e2e::openssl(
            &[
                "x509",
                "-noout",
                "-issuer",
                "-nameopt",
                "multiline,show_type",
                "-in",
                path.to_str().expect("path"),
            ],
            "",
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert!(
        issuer_of(&rc).contains("PRINTABLESTRING"),
        "{}",
        issuer_of(&rc)
    );
    let mut site = SiteConfig::new(origin.addr(), "required", Some(pki.path("bundle.pem")));
    site.mtls_extra = format!("crls = [{crl_path:?}]\n");
    let server = Portcullis::start(&config_text(&pki, &[site], ""));
    let get = |c: &Path, k: &Path| {
        Curl::new(&server, "localhost", "/", &pki.path("root.pem"))
            .cert(c, k)
            .run()
    };
    assert_refused_revoked(&get(&rc, &rk));
    assert_eq!(get(&oc, &ok).status, Some(200), "the chain itself is valid");
}

#[test]
fn a_session_of_a_revoked_certificate_is_not_resumed() {
    let s = Setup::start("");
    let (client, cert, key) = s.client("resumer");
    let sess = s.pki.path("session.pem");
    let s_client = |session_arg: &str| {
        s_client_with_session(
            &s.server,
            &s.pki.path("root.pem"),
            &cert,
            &key,
            session_arg,
            &sess,
        )
    };
    assert_session_resumes(&s.server, &s.pki.path("root.pem"), &cert, &key, &sess);

    s.revoke(&serial_hex(&client), "revoked after the session was issued");
    let (after, err) = s_client("-sess_in");
    assert!(
        !after.contains("Reused"),
        "a revoked certificate's session was resumed:\n{after}"
    );
    assert!(!after.contains("HTTP/1.1 200"), "{after}");
    assert!(err.contains("certificate revoked"), "{err}");
}

#[test]
fn open_keep_alive_connections_are_cut_after_a_revoke() {
    let s = Setup::start("");
    let (client, cert, key) = s.client("long-lived");
    let request = b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n";
    let mut idle = s.mtls_connect(&cert, &key);
    let mut busy = s.mtls_connect(&cert, &key);
    let mut buf = vec![0u8; 65536];
    for tls in [&mut idle, &mut busy] {
        tls.write_all(request).expect("write");
        let n = tls.read(&mut buf).expect("response");
        assert!(
            buf[..n].starts_with(b"HTTP/1.1 200"),
            "{}",
            String::from_utf8_lossy(&buf[..n])
        );
    }
    // Drain what is left of the first responses (bounded by the read timeout).
    let _ = (
        idle.get_ref()
            .set_read_timeout(Some(Duration::from_millis(300))),
        busy.get_ref()
            .set_read_timeout(Some(Duration::from_millis(300))),
    );
    while idle.read(&mut buf).map(|n| n > 0).unwrap_or(false) {}
    while busy.read(&mut buf).map(|n| n > 0).unwrap_or(false) {}
    idle.get_ref()
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    busy.get_ref()
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");

    s.revoke(&serial_hex(&client), "cut it");
    // The busy connection sends its next request at once: it gets a 403 and a close (or is
    // already closed if the worker noticed first); it never gets another 200.
    let _ = busy.write_all(request);
    let after = read_until_closed(&mut busy);
    let text = String::from_utf8_lossy(&after);
    assert!(!text.contains("HTTP/1.1 200"), "{text}");
    if !after.is_empty() {
        assert!(text.starts_with("HTTP/1.1 403"), "{text}");
    }
    // The idle connection is closed without sending anything.
    assert!(read_until_closed(&mut idle).is_empty());
}

#[test]
fn revocations_survive_a_restart_and_a_bad_import_changes_nothing() {
    let mut s = Setup::start("");
    let (client, cert, key) = s.client("persistent");
    let (victim, vcert, vkey) = s.client("imported");
    s.revoke(&serial_hex(&client), "persist me");
    let stored = std::fs::read_to_string(&s.store).expect("store file");
    assert!(
        stored.contains(
            &serial_hex(&client)
                .to_lowercase()
                .trim_start_matches('0')
                .to_string()
        ),
        "{stored}"
    );

    // A malformed import is refused and neither memory nor file change.
    let bad = s.pki.write(
        "bad.json",
        "{\"data\":[{\"key\":\"not-hex\",\"value\":\"x\"}]}",
    );
    let (status, body) = admin_call(
        s.server.admin.expect("admin"),
        "POST",
        "/revocations/viewers/import",
        Some(&bad),
    );
    assert_eq!(status, 400, "{body}");
    assert_eq!(std::fs::read_to_string(&s.store).expect("store"), stored);
    assert_refused_revoked(&s.get(&cert, &key));

    // A good import takes effect.
    let good = s.pki.write(
        "good.json",
        &format!(
            "{{\"data\":[{{\"key\":\"{}\",\"value\":\"imported\"}}]}}",
            serial_hex(&victim)
        ),
    );
    let (status, body) = admin_call(
        s.server.admin.expect("admin"),
        "POST",
        "/revocations/viewers/import",
        Some(&good),
    );
    assert_eq!(status, 200, "{body}");
    assert_refused_revoked(&s.get(&vcert, &vkey));

    // Restart on the same configuration: both revocations are still there.
    assert_eq!(s.server.stop(), Some(0));
    s.server = Portcullis::start_file(&s.config_path, tempfile::tempdir().expect("dir"));
    assert_refused_revoked(&s.get(&cert, &key));
    assert_refused_revoked(&s.get(&vcert, &vkey));
    let (_, ok_cert, ok_key) = s.client("untouched");
    assert_eq!(s.get(&ok_cert, &ok_key).status, Some(200));
}

#[test]
fn with_a_token_file_only_holders_of_the_token_can_revoke() {
    use std::os::unix::fs::PermissionsExt as _;
    let pki = TestPki::new();
    let origin = origin();
    let store = pki.write("revoked.json", "{\"data\":[]}");
    let token = pki.write("admin.token", "3f9a1c7e5b2d4f608a1b3c5d7e9f0a2b\n");
    std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let mut site = SiteConfig::new(origin.addr(), "required", Some(pki.path("bundle.pem")));
    site.mtls_extra = "revocation_store = \"viewers\"\n".into();
    let server_extra = format!(
        "[admin]\nlisten = \"127.0.0.1:0\"\ntoken_file = {token:?}\n\n[[revocation_store]]\nname = \"viewers\"\nfile = {store:?}\n"
    );
    let server = Portcullis::start(&config_text(&pki, &[site], &server_extra));
    let admin = server.admin.expect("admin").to_string();
    let client = TestPki::client(&pki.intermediate, "viewer");
    let serial = serial_hex(&client);

    // Any local process without the token: refused, nothing changes.
    let (status, _) = admin_call(
        server.admin.expect("admin"),
        "PUT",
        &format!("/revocations/viewers/{serial}"),
        None,
    );
    assert_eq!(status, 401);
    let out = portcullis_cli(&["revoke", "--admin", &admin, "--store", "viewers", &serial]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("401"));
    assert_eq!(
        std::fs::read_to_string(&store).expect("store"),
        "{\"data\":[]}"
    );
    // Probes need no token.
    assert_eq!(
        admin_call(server.admin.expect("admin"), "GET", "/healthz", None).0,
        200
    );

    // The CLI with the token file.
    let token_path = token.to_str().expect("path");
    let out = portcullis_cli(&[
        "revoke",
        "--admin",
        &admin,
        "--token-file",
        token_path,
        "--store",
        "viewers",
        &serial,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(std::fs::read_to_string(&store)
        .expect("store")
        .contains(&serial.to_lowercase()));
}
