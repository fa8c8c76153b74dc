//! Viewer mTLS end to end: the real binary, real curl and openssl, certificates generated here.

use std::path::{Path, PathBuf};

use portcullis_e2e::{
    config_text, openssl, origin, CertKind, CertSpec, Curl, CurlResult, Issued, OneSite,
    Portcullis, SiteConfig, TestPki,
};

fn start(pki: &TestPki, sites: &[SiteConfig]) -> Portcullis {
    Portcullis::start(&config_text(pki, sites, ""))
}

/// `openssl x509` field of a PEM file, with the `name=` prefix removed.
fn x509_field(cert: &std::path::Path, args: &[&str]) -> String {
    let mut all = vec!["x509", "-noout", "-in", cert.to_str().expect("path")];
    all.extend_from_slice(args);
    let out = openssl(&all, "");
    assert!(out.status.success(), "openssl x509 {args:?} failed");
    let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
    text.split_once('=')
        .map(|(_, v)| v.to_string())
        .unwrap_or(text)
}

fn assert_refused(result: &CurlResult, alert: &str) {
    assert_eq!(result.status, None, "expected no HTTP response: {result:?}");
    assert_ne!(result.exit, Some(0), "curl should fail: {result:?}");
    assert!(
        result.stderr.to_ascii_lowercase().contains(alert),
        "expected alert {alert:?} in curl's error: {}",
        result.stderr
    );
}

/// GET / on localhost, trusting the test root, with an optional client certificate.
fn get(server: &Portcullis, pki: &TestPki, cert: Option<(&Path, &Path)>) -> CurlResult {
    let curl = Curl::new(server, "localhost", "/", &pki.path("root.pem"));
    match cert {
        Some((cert, key)) => curl.cert(cert, key).run(),
        None => curl.run(),
    }
}

/// A client certificate (and its files) from a CA the server does not trust.
fn stranger(pki: &TestPki, expired: bool) -> (PathBuf, PathBuf) {
    let spec = |cn: &str, kind| {
        let spec = CertSpec::new(cn, kind);
        if expired {
            spec.expired()
        } else {
            spec
        }
    };
    let ca = Issued::self_signed(spec("Stranger CA", CertKind::RootCa)).expect("ca");
    let client = ca
        .issue(spec("stranger", CertKind::Client))
        .expect("stranger");
    pki.write_client("stranger", &client, &[])
}

#[test]
fn valid_client_reaches_origin_with_all_seven_headers_matching_openssl() {
    let OneSite {
        pki,
        origin: _origin,
        server,
    } = OneSite::start("required", Some("bundle.pem"), "", "");
    let client = TestPki::client(&pki.intermediate, "viewer-one");
    let (cert, key) = pki.write_client("viewer", &client, &[&pki.intermediate]);
    let leaf = pki.write("viewer-leaf.pem", &client.cert_pem);

    let r = Curl::new(&server, "localhost", "/hello", &pki.path("root.pem"))
        .cert(&cert, &key)
        .run();
    assert_eq!(r.status, Some(200), "{r:?}\n{}", server.log());

    let serial = r
        .echoed("CloudFront-Viewer-Cert-Serial-Number")
        .expect("serial header");
    let expected_serial = x509_field(&leaf, &["-serial"]);
    assert_eq!(
        serial.replace(':', "").to_ascii_uppercase(),
        expected_serial
    );
    assert_eq!(serial, serial.to_ascii_lowercase());

    assert_eq!(
        r.echoed("CloudFront-Viewer-Cert-Subject").expect("subject"),
        x509_field(&leaf, &["-subject", "-nameopt", "RFC2253"])
    );
    assert_eq!(
        r.echoed("CloudFront-Viewer-Cert-Issuer").expect("issuer"),
        x509_field(&leaf, &["-issuer", "-nameopt", "RFC2253"])
    );
    assert_eq!(r.cert_present().as_deref(), Some("1"));
    assert_eq!(
        r.echoed("CloudFront-Viewer-Cert-Sha256").expect("sha256"),
        x509_field(&leaf, &["-fingerprint", "-sha256"])
            .replace(':', "")
            .to_ascii_lowercase()
    );
    let iso =
        |field: &str| x509_field(&leaf, &[field, "-dateopt", "iso_8601"]).replacen(' ', "T", 1);
    assert_eq!(
        r.echoed("CloudFront-Viewer-Cert-Validity")
            .expect("validity"),
        format!(
            "NotBefore={};NotAfter={}",
            iso("-startdate"),
            iso("-enddate")
        )
    );
    let pem = r.echoed("CloudFront-Viewer-Cert-Pem").expect("pem");
    assert!(pem.starts_with("-----BEGIN%20CERTIFICATE-----%0A"), "{pem}");
    let decoded = percent_encoding::percent_decode_str(&pem)
        .decode_utf8()
        .expect("utf8");
    assert_eq!(decoded.trim(), client.cert_pem.trim());
}

#[test]
fn required_mode_refuses_a_client_without_certificate() {
    let OneSite {
        pki,
        origin,
        server,
    } = OneSite::start("required", Some("bundle.pem"), "", "");
    let r = get(&server, &pki, None);
    assert_refused(&r, "certificate required");
    assert_eq!(origin.requests_served(), 0);
}

#[test]
fn unknown_ca_and_expired_certificates_are_refused_with_their_alerts() {
    let OneSite {
        pki,
        origin,
        server,
    } = OneSite::start("required", Some("bundle.pem"), "", "");

    let (cert, key) = stranger(&pki, false);
    let r = get(&server, &pki, Some((&cert, &key)));
    assert_refused(&r, "unknown ca");

    let expired = pki
        .intermediate
        .issue(CertSpec::new("old-viewer", CertKind::Client).expired())
        .expect("expired");
    let (cert, key) = pki.write_client("expired", &expired, &[&pki.intermediate]);
    let r = get(&server, &pki, Some((&cert, &key)));
    assert_refused(&r, "certificate expired");
    assert_eq!(origin.requests_served(), 0);
}

#[test]
fn ignore_expiration_accepts_expired_chains_but_still_requires_a_trusted_issuer() {
    let pki = TestPki::new();
    let origin = origin();
    let mut site = SiteConfig::new(origin.addr(), "required", Some(pki.path("bundle.pem")));
    site.mtls_extra = "ignore_expiration = true\n".into();
    let server = start(&pki, &[site]);

    let expired = pki
        .intermediate
        .issue(CertSpec::new("old-viewer", CertKind::Client).expired())
        .expect("expired");
    let (cert, key) = pki.write_client("expired", &expired, &[&pki.intermediate]);
    let r = get(&server, &pki, Some((&cert, &key)));
    assert_eq!(r.status, Some(200), "{r:?}");

    let (cert, key) = stranger(&pki, true);
    let r = get(&server, &pki, Some((&cert, &key)));
    assert_refused(&r, "unknown ca");
}

#[test]
fn chains_of_depth_four_are_accepted_and_depth_five_refused() {
    let OneSite {
        pki,
        origin: _origin,
        server,
    } = OneSite::start("required", Some("root.pem"), "", "");
    // root -> intermediate -> second -> leaf: 4 certificates.
    let second = pki
        .intermediate
        .issue(CertSpec::new(
            "Second Intermediate",
            CertKind::IntermediateCa,
        ))
        .expect("second");
    let leaf4 = TestPki::client(&second, "depth-four");
    let (cert, key) = pki.write_client("depth4", &leaf4, &[&second, &pki.intermediate]);
    let r = get(&server, &pki, Some((&cert, &key)));
    assert_eq!(r.status, Some(200), "{r:?}\n{}", server.log());

    // root -> intermediate -> second -> third -> leaf: 5 certificates.
    let third = second
        .issue(CertSpec::new(
            "Third Intermediate",
            CertKind::IntermediateCa,
        ))
        .expect("third");
    let leaf5 = TestPki::client(&third, "depth-five");
    let (cert, key) = pki.write_client("depth5", &leaf5, &[&third, &second, &pki.intermediate]);
    let r = get(&server, &pki, Some((&cert, &key)));
    assert_refused(&r, "unknown ca");
}

#[test]
fn optional_mode_accepts_no_certificate_and_refuses_an_invalid_one() {
    let OneSite {
        pki,
        origin: _origin,
        server,
    } = OneSite::start("optional", Some("bundle.pem"), "", "");
    let r = get(&server, &pki, None);
    assert_eq!(r.status, Some(200), "{r:?}");
    assert_eq!(r.cert_present().as_deref(), Some("0"));
    let cert_headers = r
        .echoed_headers()
        .into_iter()
        .filter(|(n, _)| n.starts_with("cloudfront-viewer-cert-"))
        .count();
    assert_eq!(
        cert_headers,
        1,
        "only Present is sent without a certificate: {}",
        r.text()
    );

    let (cert, key) = stranger(&pki, false);
    let r = get(&server, &pki, Some((&cert, &key)));
    assert_refused(&r, "unknown ca");

    let valid = TestPki::client(&pki.intermediate, "viewer");
    let (cert, key) = pki.write_client("valid", &valid, &[&pki.intermediate]);
    let r = get(&server, &pki, Some((&cert, &key)));
    assert_eq!(r.status, Some(200));
    assert_eq!(r.cert_present().as_deref(), Some("1"));
}

#[test]
fn passthrough_forwards_a_self_signed_certificate_without_pem() {
    let pki = TestPki::new();
    let origin = origin();
    let server = start(&pki, &[SiteConfig::new(origin.addr(), "passthrough", None)]);
    let own =
        Issued::self_signed(CertSpec::new("self-made", CertKind::Client)).expect("self-signed");
    let (cert, key) = pki.write_client("own", &own, &[]);
    let r = get(&server, &pki, Some((&cert, &key)));
    assert_eq!(r.status, Some(200), "{r:?}\n{}", server.log());
    assert_eq!(r.cert_present().as_deref(), Some("1"));
    let subject = r.echoed("CloudFront-Viewer-Cert-Subject").expect("subject");
    assert!(subject.contains("CN=self-made"), "{subject}");
    assert!(r.echoed("CloudFront-Viewer-Cert-Sha256").is_some());
    assert!(
        r.echoed("CloudFront-Viewer-Cert-Pem").is_none(),
        "Pem is not sent in passthrough"
    );
}

#[test]
fn client_sent_viewer_cert_headers_never_reach_the_origin() {
    let OneSite {
        pki,
        origin: _origin,
        server,
    } = OneSite::start("optional", Some("bundle.pem"), "", "");
    let r = Curl::new(&server, "localhost", "/", &pki.path("root.pem"))
        .args([
            "-H",
            "CloudFront-Viewer-Cert-Subject: CN=admin",
            "-H",
            "cloudfront-viewer-cert-present: 1",
            "-H",
            "CLOUDFRONT-VIEWER-CERT-SERIAL-NUMBER: 01",
        ])
        .run();
    assert_eq!(r.status, Some(200), "{r:?}");
    let text = r.text();
    assert!(
        !text.contains("CN=admin"),
        "forged subject reached the origin:\n{text}"
    );
    assert!(r.echoed("CloudFront-Viewer-Cert-Serial-Number").is_none());
    assert_eq!(r.cert_present().as_deref(), Some("0"));
}

#[test]
fn acceptable_ca_names_are_listed_only_when_advertised() {
    let pki = TestPki::new();
    let origin = origin();
    let quiet = SiteConfig::new(origin.addr(), "optional", Some(pki.path("bundle.pem")));
    let mut loud = SiteConfig::new(origin.addr(), "optional", Some(pki.path("bundle.pem")));
    loud.name = "loud".into();
    loud.server_names = vec!["site-a.test".into()];
    loud.mtls_extra = "advertise_ca_names = true\n".into();
    let server = start(&pki, &[quiet, loud]);
    let connect = format!("127.0.0.1:{}", server.addr.port());
    let s_client = |sni: &str| {
        let out = openssl(
            &[
                "s_client",
                "-connect",
                &connect,
                "-servername",
                sni,
                "-tls1_3",
            ],
            "",
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let loud_out = s_client("site-a.test");
    assert!(
        loud_out.contains("Acceptable client certificate CA names"),
        "{loud_out}"
    );
    assert!(loud_out.contains("Test Root CA"), "{loud_out}");
    assert!(loud_out.contains("Test Intermediate CA"), "{loud_out}");
    let quiet_out = s_client("localhost");
    assert!(
        quiet_out.contains("No client certificate CA names sent"),
        "{quiet_out}"
    );
    assert!(
        !quiet_out.contains("Acceptable client certificate CA names"),
        "{quiet_out}"
    );
}

#[test]
fn two_sites_by_sni_accept_only_their_own_clients() {
    let pki = TestPki::new();
    let origin = origin();
    let ca_a = Issued::self_signed(CertSpec::new("CA A", CertKind::RootCa)).expect("ca a");
    let ca_b = Issued::self_signed(CertSpec::new("CA B", CertKind::RootCa)).expect("ca b");
    let store_a = pki.write("ca-a.pem", &ca_a.cert_pem);
    let store_b = pki.write("ca-b.pem", &ca_b.cert_pem);
    let mut a = SiteConfig::new(origin.addr(), "required", Some(store_a));
    a.name = "a".into();
    a.server_names = vec!["site-a.test".into()];
    let mut b = SiteConfig::new(origin.addr(), "required", Some(store_b));
    b.name = "b".into();
    b.server_names = vec!["site-b.test".into()];
    let server = start(&pki, &[a, b]);
    let (cert_a, key_a) = pki.write_client("client-a", &TestPki::client(&ca_a, "client-a"), &[]);
    let (cert_b, key_b) = pki.write_client("client-b", &TestPki::client(&ca_b, "client-b"), &[]);
    let ca = pki.path("root.pem");
    let get = |host: &str, cert: &std::path::Path, key: &std::path::Path| {
        Curl::new(&server, host, "/", &ca).cert(cert, key).run()
    };
    let r = get("site-a.test", &cert_a, &key_a);
    assert_eq!(r.status, Some(200), "{r:?}");
    assert!(r
        .echoed("CloudFront-Viewer-Cert-Subject")
        .expect("subject")
        .contains("CN=client-a"));
    assert_eq!(get("site-b.test", &cert_b, &key_b).status, Some(200));
    assert_refused(&get("site-a.test", &cert_b, &key_b), "unknown ca");
    assert_refused(&get("site-b.test", &cert_a, &key_a), "unknown ca");
}

#[test]
fn tls12_clients_are_verified_the_same_way() {
    let OneSite {
        pki,
        origin: _origin,
        server,
    } = OneSite::start("required", Some("bundle.pem"), "", "");
    let client = TestPki::client(&pki.intermediate, "viewer-tls12");
    let (cert, key) = pki.write_client("viewer", &client, &[&pki.intermediate]);
    let r = Curl::new(&server, "localhost", "/", &pki.path("root.pem"))
        .cert(&cert, &key)
        .args(["--tls-max", "1.2"])
        .run();
    assert_eq!(r.status, Some(200), "{r:?}");
    let r = Curl::new(&server, "localhost", "/", &pki.path("root.pem"))
        .args(["--tls-max", "1.2"])
        .run();
    assert_eq!(r.status, None, "{r:?}");
    assert_ne!(r.exit, Some(0));
}

#[test]
fn rsa_server_certificates_wildcard_names_and_alpn_work() {
    let pki = TestPki::new();
    let origin = origin();
    let rsa_server = pki
        .intermediate
        .issue(
            CertSpec::new(
                "rsa.wild.test",
                CertKind::Server {
                    dns_names: vec!["*.wild.test".into()],
                    ip_addresses: vec![],
                },
            )
            .key(portcullis_e2e::KeyAlgorithm::Rsa2048),
        )
        .expect("rsa server");
    let mut site = SiteConfig::new(origin.addr(), "required", Some(pki.path("bundle.pem")));
    site.name = "wild".into();
    site.server_names = vec!["*.wild.test".into()];
    let mut text = config_text(&pki, &[site], "");
    let chain = pki.write(
        "rsa-server.pem",
        &format!("{}{}", rsa_server.cert_pem, pki.intermediate.cert_pem),
    );
    let key = pki.write("rsa-server.key", &rsa_server.key_pem);
    text = text
        .replace(
            &format!("{:?}", pki.path("server.pem")),
            &format!("{chain:?}"),
        )
        .replace(
            &format!("{:?}", pki.path("server.key")),
            &format!("{key:?}"),
        );
    let server = Portcullis::start(&text);
    let client = TestPki::client(&pki.intermediate, "viewer");
    let (cert, ckey) = pki.write_client("viewer", &client, &[&pki.intermediate]);
    let r = Curl::new(&server, "shop.wild.test", "/", &pki.path("root.pem"))
        .cert(&cert, &ckey)
        .args(["-v"])
        .run();
    assert_eq!(r.status, Some(200), "{r:?}");
    // Both protocols are offered: curl's first choice, h2, is taken; a client that asks for
    // HTTP/1.1 gets it.
    assert!(
        r.stderr.contains("ALPN: server accepted h2"),
        "{}",
        r.stderr
    );
    let h1 = Curl::new(&server, "shop.wild.test", "/", &pki.path("root.pem"))
        .cert(&cert, &ckey)
        .args(["-v", "--http1.1"])
        .run();
    assert_eq!(h1.status, Some(200), "{h1:?}");
    assert!(
        h1.stderr.contains("ALPN: server accepted http/1.1"),
        "{}",
        h1.stderr
    );
    assert!(
        r.stderr.contains("CN=rsa.wild.test")
            || r.stderr.contains("CN = rsa.wild.test")
            || r.stderr.contains("rsa.wild.test"),
        "{}",
        r.stderr
    );
}

#[test]
fn a_certificate_not_meant_for_clients_is_refused_as_unsupported() {
    let OneSite {
        pki,
        origin: _origin,
        server,
    } = OneSite::start("required", Some("bundle.pem"), "", "");
    // A server certificate (EKU serverAuth only) from the trusted CA, used as a client cert.
    let (cert, key) = pki.write_client("server-as-client", &pki.server, &[&pki.intermediate]);
    let r = get(&server, &pki, Some((&cert, &key)));
    assert_refused(&r, "unsupported certificate");
}

#[test]
fn only_the_configured_viewer_headers_are_forwarded() {
    let pki = TestPki::new();
    let origin = origin();
    let mut site = SiteConfig::new(origin.addr(), "required", Some(pki.path("bundle.pem")));
    site.mtls_extra = "forward_headers = [\"present\", \"subject\"]\n".into();
    let server = start(&pki, &[site]);
    let client = TestPki::client(&pki.intermediate, "picky");
    let (cert, key) = pki.write_client("picky", &client, &[&pki.intermediate]);
    let r = get(&server, &pki, Some((&cert, &key)));
    assert_eq!(r.status, Some(200), "{r:?}");
    let mut names: Vec<String> = r
        .echoed_headers()
        .into_iter()
        .map(|(n, _)| n)
        .filter(|n| n.starts_with("cloudfront-viewer-cert-"))
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "cloudfront-viewer-cert-present",
            "cloudfront-viewer-cert-subject"
        ]
    );
}

/// Session tickets wait inside the server for the first response (so they share its send);
/// a client that completes the handshake and then sends nothing must still receive its
/// ticket soon, and be able to resume with it.
#[test]
fn an_idle_client_still_receives_a_session_ticket_it_can_resume() {
    use boring::ssl::{SslConnector, SslFiletype, SslMethod, SslSessionCacheMode};
    use std::io::Read;
    use std::sync::{Arc, Mutex};
    use std::time::{Duration, Instant};

    let OneSite {
        pki,
        origin: _origin,
        server,
    } = OneSite::start("required", Some("bundle.pem"), "", "");
    let client = TestPki::client(&pki.intermediate, "idle-viewer");
    let (cert, key) = pki.write_client("idle", &client, &[&pki.intermediate]);
    let tickets: Arc<Mutex<Vec<boring::ssl::SslSession>>> = Arc::default();
    let mut c = SslConnector::builder(SslMethod::tls()).expect("connector");
    c.set_ca_file(pki.path("root.pem")).expect("ca");
    c.set_certificate_chain_file(&cert).expect("cert");
    c.set_private_key_file(&key, SslFiletype::PEM).expect("key");
    c.set_session_cache_mode(SslSessionCacheMode::CLIENT);
    let seen = Arc::clone(&tickets);
    c.set_new_session_callback(move |_, session| seen.lock().expect("lock").push(session));
    let connector = c.build();

    let tcp = std::net::TcpStream::connect(server.addr).expect("connect");
    tcp.set_read_timeout(Some(Duration::from_millis(100)))
        .expect("timeout");
    let mut idle = connector.connect("localhost", tcp).expect("handshake");
    // Send nothing; reading processes post-handshake messages until the ticket is in.
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut buf = [0u8; 256];
    while tickets.lock().expect("lock").is_empty() {
        assert!(
            Instant::now() < deadline,
            "no session ticket reached an idle client within 5 s"
        );
        match idle.read(&mut buf) {
            Ok(0) => panic!("server closed an idle connection"),
            Ok(n) => panic!("unexpected data from the server: {n} bytes"),
            Err(_) => {} // read timed out: keep polling
        }
    }
    let session = tickets.lock().expect("lock")[0].clone();

    let tcp = std::net::TcpStream::connect(server.addr).expect("connect");
    tcp.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut config = connector.configure().expect("configure");
    // SAFETY (boring API contract): the session comes from this connector's own context.
    unsafe { config.set_session(&session).expect("set session") };
    let resumed = config.connect("localhost", tcp).expect("resumed handshake");
    assert!(
        resumed.ssl().session_reused(),
        "the ticket was not accepted"
    );
}
