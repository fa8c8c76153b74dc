//! End-to-end tests: real files in temp dirs, certificates generated with rcgen.

use std::collections::HashSet;
use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, CertifiedIssuer, DnType,
    IsCa, Issuer, KeyIdMethod, KeyPair, RevokedCertParams, SerialNumber,
};
use tempfile::TempDir;

use crate::{
    load, parse_str, AdminListen, AdminSettings, ConfigError, ConfigErrors, CrlExpiredPolicy,
    ForwardHeaders, MtlsMode, Snapshot, StoreFormat,
};

/// Example configuration covering every key.
const EXAMPLE: &str = r#"
[server]
listen = ["127.0.0.1:8443", "[::1]:0"]
workers = 2
cpu_affinity = [0, 1]

[server.timeouts]
handshake = "11s"
header_read = "31s"
idle_keepalive = "1m 1s"
origin_connect = "500ms"
origin_response = "2m"
send = "7s"
request_body = "9s"
drain = "0s"

[server.limits]
max_header_bytes = 32768
max_header_count = 50
max_connections_per_worker = 123
max_connections_per_client_ip = 64
max_requests_in_flight_per_worker = 77
min_request_body_rate = 2048

[server.http2]
max_concurrent_streams = 64
max_header_list_size = 20000
initial_stream_window = 100000
initial_connection_window = 2000000
stream_idle_timeout = "5s"
max_early_resets = 50
max_control_frames_per_second = 500

[admin]
listen = "127.0.0.1:9901"
token_file = "admin.token"

[[revocation_store]]
name = "viewers"
file = "revoked.json"

[[revocation_store]]
name = "legacy_list-2.0"
file = "stores/legacy.list"
format = "text"

[[site]]
name = "example"
server_names = ["Localhost", "*.example.com"]
certificate = "certs/server.pem"
private_key = "certs/server.key"
origin = "http://127.0.0.1:8080/"
alpn = ["http/1.1"]

[site.mtls]
mode = "required"
trust_store = "certs/ca.pem"
ignore_expiration = true
advertise_ca_names = true
max_chain_depth = 3
forward_headers = ["serial-number", "sha256", "pem"]
revocation_store = "legacy_list-2.0"
crls = ["crl/intermediate.crl", "crl/two.pem"]
crl_expired = "allow"
revoke_open_connections = false

[[site]]
name = "fallback"
default = true
certificate = "certs/server.pem"
private_key = "certs/server.key"
origin = "http://[::1]"

[site.mtls]
mode = "passthrough"
"#;

/// Contents of the example's `revoked.json`.
const REVOKED_JSON: &str =
    r#"{"data":[{"key":"0A","value":"stolen laptop"},{"key":"00:ff:01","value":""}]}"#;

/// Contents of the example's `stores/legacy.list`.
const LEGACY_LIST: &str = "# legacy list\n1234 left company\n\nABCD\n";

/// Generated certificates written into a temp directory.
struct Fixture {
    dir: TempDir,
    /// The test CA (subject `CN=Portcullis Test CA`), able to sign CRLs.
    ca: CertifiedIssuer<'static, KeyPair>,
    /// Leaf + CA PEM chain.
    chain_pem: String,
    ca_pem: String,
    leaf_key_pem: String,
    /// A self-signed non-CA certificate.
    non_ca_pem: String,
}

impl Fixture {
    fn new() -> Self {
        let dir = TempDir::new().expect("temp dir");
        let ca_key = KeyPair::generate().expect("ca key");
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "Portcullis Test CA");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = CertifiedIssuer::self_signed(ca_params, ca_key).expect("ca cert");

        let leaf_key = KeyPair::generate().expect("leaf key");
        let leaf = CertificateParams::new(vec!["localhost".to_owned()])
            .expect("leaf params")
            .signed_by(&leaf_key, &*ca)
            .expect("leaf cert");

        let other_key = KeyPair::generate().expect("other key");
        let non_ca = CertificateParams::new(vec!["client.test".to_owned()])
            .expect("non-ca params")
            .self_signed(&other_key)
            .expect("non-ca cert");

        let fixture = Self {
            dir,
            chain_pem: format!("{}{}", leaf.pem(), ca.pem()),
            ca_pem: ca.pem(),
            leaf_key_pem: leaf_key.serialize_pem(),
            non_ca_pem: non_ca.pem(),
            ca,
        };
        fixture.write("certs/server.pem", &fixture.chain_pem);
        fixture.write("certs/server.key", &fixture.leaf_key_pem);
        fixture.write("certs/ca.pem", &fixture.ca_pem);
        fixture.write("revoked.json", REVOKED_JSON);
        let token = fixture.write("admin.token", "0123456789abcdef0123456789abcdef\n");
        {
            use std::os::unix::fs::PermissionsExt as _;
            fs::set_permissions(&token, fs::Permissions::from_mode(0o600)).expect("chmod");
        }
        fixture.write("stores/legacy.list", LEGACY_LIST);
        fixture.write_bytes(
            "crl/intermediate.crl",
            crl(&fixture.ca, &[10, 0xff01], false).der(),
        );
        let two = format!(
            "{}{}",
            crl(&fixture.ca, &[1], false).pem().expect("crl pem"),
            crl(&fixture.ca, &[], false).pem().expect("crl pem")
        );
        fixture.write("crl/two.pem", &two);
        fixture
    }

    fn write_bytes(&self, relative: &str, contents: &[u8]) -> PathBuf {
        let path = self.path(relative);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).expect("create dir");
        }
        fs::write(&path, contents).expect("write file");
        path
    }

    fn path(&self, relative: &str) -> PathBuf {
        self.dir.path().join(relative)
    }

    fn write(&self, relative: &str, contents: &str) -> PathBuf {
        self.write_bytes(relative, contents.as_bytes())
    }

    fn config_path(&self) -> PathBuf {
        self.path("portcullis.toml")
    }

    fn parse(&self, toml: &str) -> Result<Snapshot, ConfigErrors> {
        parse_str(toml, &self.config_path())
    }

    fn errors(&self, toml: &str) -> ConfigErrors {
        match self.parse(toml) {
            Ok(_) => panic!("expected configuration errors"),
            Err(e) => e,
        }
    }

    fn snapshot(&self, toml: &str) -> Snapshot {
        match self.parse(toml) {
            Ok(s) => s,
            Err(e) => panic!("unexpected errors:\n{e}"),
        }
    }
}

/// A CA issuer with the given common name and a fresh key.
fn issuer(common_name: &str) -> Issuer<'static, KeyPair> {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    Issuer::new(params, KeyPair::generate().expect("ca key"))
}

/// A CRL signed by `issuer` revoking `serials`; valid for a day around now,
/// or (when `expired`) issued two days ago with nextUpdate one day ago.
fn crl(
    issuer: &Issuer<'_, KeyPair>,
    serials: &[u64],
    expired: bool,
) -> rcgen::CertificateRevocationList {
    let now = time::OffsetDateTime::now_utc();
    let (this_update, next_update) = if expired {
        (now - time::Duration::days(2), now - time::Duration::days(1))
    } else {
        (
            now - time::Duration::hours(1),
            now + time::Duration::days(1),
        )
    };
    CertificateRevocationListParams {
        this_update,
        next_update,
        crl_number: SerialNumber::from(1u64),
        issuing_distribution_point: None,
        revoked_certs: serials
            .iter()
            .map(|&serial| RevokedCertParams {
                serial_number: SerialNumber::from(serial),
                revocation_time: this_update,
                reason_code: None,
                invalidity_date: None,
            })
            .collect(),
        key_identifier_method: KeyIdMethod::Sha256,
    }
    .signed_by(issuer)
    .expect("sign crl")
}

/// Owned `(key, value)` pairs.
fn pairs(entries: &[(&str, &str)]) -> Vec<(String, String)> {
    entries
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// A minimal valid single-site config, with `site_extra` appended to `[[site]]`
/// and `mtls_extra` to its `[site.mtls]`.
fn minimal(server_extra: &str, site_extra: &str, mtls_extra: &str) -> String {
    format!(
        r#"[server]
listen = ["127.0.0.1:0"]
{server_extra}
[[site]]
name = "only"
certificate = "certs/server.pem"
private_key = "certs/server.key"
origin = "http://127.0.0.1:8080"
{site_extra}
[site.mtls]
mode = "required"
trust_store = "certs/ca.pem"
{mtls_extra}
"#
    )
}

/// The single error with `key`, failing if absent.
fn find<'a>(errors: &'a ConfigErrors, key: &str) -> &'a ConfigError {
    errors
        .iter()
        .find(|e| e.key == key)
        .unwrap_or_else(|| panic!("no error for key {key:?} in:\n{errors}"))
}

#[test]
fn example_config_loads_every_key() {
    let fx = Fixture::new();
    let path = fx.write("portcullis.toml", EXAMPLE);
    let snap = load(&path).unwrap_or_else(|e| panic!("{e}"));

    assert_eq!(snap.source, path);
    let server = &snap.server;
    assert_eq!(
        server.listen,
        vec![
            "127.0.0.1:8443".parse::<SocketAddr>().unwrap(),
            "[::1]:0".parse::<SocketAddr>().unwrap()
        ]
    );
    assert_eq!(server.workers, 2);
    assert_eq!(server.cpu_affinity, Some(vec![0, 1]));
    assert_eq!(server.cpu_for_worker(3), Some(1));
    assert_eq!(server.timeouts.handshake, Duration::from_secs(11));
    assert_eq!(server.timeouts.header_read, Duration::from_secs(31));
    assert_eq!(server.timeouts.idle_keepalive, Duration::from_secs(61));
    assert_eq!(server.timeouts.origin_connect, Duration::from_millis(500));
    assert_eq!(server.timeouts.origin_response, Duration::from_secs(120));
    assert_eq!(server.timeouts.send, Duration::from_secs(7));
    assert_eq!(server.timeouts.request_body, Duration::from_secs(9));
    assert_eq!(server.timeouts.drain, Duration::ZERO);
    assert_eq!(server.limits.min_request_body_rate, 2048);
    assert_eq!(server.limits.max_header_bytes, 32768);
    assert_eq!(server.limits.max_header_count, 50);
    assert_eq!(server.limits.max_connections_per_worker, 123);
    assert_eq!(server.limits.max_connections_per_client_ip, 64);
    assert_eq!(server.limits.max_requests_in_flight_per_worker, 77);
    assert_eq!(
        server.http2,
        crate::Http2Settings {
            max_concurrent_streams: 64,
            max_header_list_size: 20000,
            initial_stream_window: 100_000,
            initial_connection_window: 2_000_000,
            stream_idle_timeout: Duration::from_secs(5),
            max_early_resets: 50,
            max_control_frames_per_second: 500,
        }
    );

    assert_eq!(snap.sites.len(), 2);
    assert_eq!(snap.default_site, 1);
    let site = &snap.sites[0];
    assert_eq!(site.index, 0);
    assert_eq!(site.name, "example");
    assert_eq!(site.key_prefix, "site[0]");
    assert_eq!(site.server_names, vec!["localhost", "*.example.com"]);
    assert_eq!(site.alpn, vec![crate::AppProtocol::Http11]);
    assert_eq!(snap.sites[1].alpn, crate::DEFAULT_ALPN.to_vec());
    assert!(!site.is_default);
    assert_eq!(site.certificate_path, fx.path("certs/server.pem"));
    assert_eq!(site.certificate_chain.len(), 2);
    let chain_pem = pem::parse_many(&fx.chain_pem).unwrap();
    assert_eq!(site.certificate_chain[0], chain_pem[0].contents());
    assert_eq!(site.private_key_path, fx.path("certs/server.key"));
    let key_block = pem::parse(site.private_key.pem()).unwrap();
    assert_eq!(key_block.tag(), "PRIVATE KEY");
    assert_eq!(
        key_block.contents(),
        pem::parse(&fx.leaf_key_pem).unwrap().contents()
    );
    assert_eq!(site.origin.url, "http://127.0.0.1:8080/");
    assert_eq!(site.origin.host, "127.0.0.1");
    assert_eq!(site.origin.port, 8080);
    assert_eq!(site.origin.authority, "127.0.0.1:8080");
    assert_eq!(
        site.origin.addrs,
        vec!["127.0.0.1:8080".parse::<SocketAddr>().unwrap()]
    );
    let mtls = &site.mtls;
    assert_eq!(mtls.mode, MtlsMode::Required);
    assert_eq!(mtls.trust_store_path, Some(fx.path("certs/ca.pem")));
    assert_eq!(mtls.trust_store.len(), 1);
    assert!(mtls.trust_store[0].self_signed);
    assert!(
        mtls.trust_store[0]
            .subject
            .contains("CN=Portcullis Test CA"),
        "{}",
        mtls.trust_store[0].subject
    );
    assert!(mtls.ignore_expiration);
    assert!(mtls.advertise_ca_names);
    assert_eq!(mtls.max_chain_depth, 3);
    assert_eq!(
        mtls.forward,
        ForwardHeaders {
            serial_number: true,
            sha256: true,
            pem: true,
            ..ForwardHeaders::NONE
        }
    );
    assert_eq!(mtls.revocation_store, Some("legacy_list-2.0".to_owned()));
    assert_eq!(mtls.crl_expired, CrlExpiredPolicy::Allow);
    assert!(!mtls.revoke_open_connections);
    assert_eq!(mtls.crls.len(), 3);
    let ca_der = pem::parse(&fx.ca_pem).unwrap().into_contents();
    let (_, ca_cert) = x509_parser::parse_x509_certificate(&ca_der).unwrap();
    let crl0 = &mtls.crls[0];
    assert_eq!(crl0.path, fx.path("crl/intermediate.crl"));
    assert_eq!(crl0.issuer_name_der, ca_cert.subject().as_raw());
    assert!(
        crl0.issuer_subject.contains("CN=Portcullis Test CA"),
        "{}",
        crl0.issuer_subject
    );
    let expected: HashSet<String> = ["a".to_owned(), "ff01".to_owned()].into();
    assert_eq!(crl0.revoked_serials, expected);
    let now = SystemTime::now();
    assert!(crl0.this_update < now);
    assert!(crl0.next_update.is_some_and(|next| next > now));
    assert!(!crl0.is_expired(now));
    for crl in &mtls.crls[1..] {
        assert_eq!(crl.path, fx.path("crl/two.pem"));
    }
    assert_eq!(
        mtls.crls[1].revoked_serials,
        HashSet::from(["1".to_owned()])
    );
    assert!(mtls.crls[2].revoked_serials.is_empty());

    assert_eq!(
        snap.admin,
        Some(AdminSettings {
            listen: AdminListen::Tcp("127.0.0.1:9901".parse().unwrap()),
            token: Some(crate::AdminToken::new(
                b"0123456789abcdef0123456789abcdef".to_vec()
            )),
        })
    );
    assert_eq!(snap.revocation_stores.len(), 2);
    let viewers = &snap.revocation_stores[0];
    assert_eq!(viewers.index, 0);
    assert_eq!(viewers.name, "viewers");
    assert_eq!(viewers.path, fx.path("revoked.json"));
    assert_eq!(viewers.format, StoreFormat::Json);
    assert_eq!(
        viewers.entries,
        pairs(&[("a", "stolen laptop"), ("ff01", "")])
    );
    let legacy = &snap.revocation_stores[1];
    assert_eq!(legacy.index, 1);
    assert_eq!(legacy.name, "legacy_list-2.0");
    assert_eq!(legacy.path, fx.path("stores/legacy.list"));
    assert_eq!(legacy.format, StoreFormat::Text);
    assert_eq!(
        legacy.entries,
        pairs(&[("1234", "left company"), ("abcd", "")])
    );
    assert!(snap.warnings().is_empty(), "{:?}", snap.warnings());

    let fallback = &snap.sites[1];
    assert!(fallback.is_default);
    assert!(fallback.server_names.is_empty());
    assert_eq!(fallback.origin.host, "::1");
    assert_eq!(fallback.origin.port, 80);
    assert_eq!(fallback.origin.authority, "[::1]");
    assert_eq!(fallback.mtls.mode, MtlsMode::Passthrough);
    assert_eq!(fallback.mtls.trust_store_path, None);
    assert!(fallback.mtls.trust_store.is_empty());
    assert!(!fallback.mtls.ignore_expiration);
    assert!(!fallback.mtls.advertise_ca_names);
    assert_eq!(fallback.mtls.max_chain_depth, 4);
    assert_eq!(fallback.mtls.forward, ForwardHeaders::default());
    assert_eq!(fallback.mtls.revocation_store, None);
    assert!(fallback.mtls.crls.is_empty());
    assert_eq!(fallback.mtls.crl_expired, CrlExpiredPolicy::Deny);
    assert!(fallback.mtls.revoke_open_connections);
}

#[test]
fn defaults_are_applied() {
    let fx = Fixture::new();
    let snap = fx.snapshot(&minimal("", "", ""));
    let server = &snap.server;
    let expected_workers = std::thread::available_parallelism().map_or(1, |n| n.get());
    assert_eq!(server.workers, expected_workers);
    assert_eq!(server.cpu_affinity, None);
    assert_eq!(server.cpu_for_worker(0), None);
    assert_eq!(server.timeouts, crate::Timeouts::default());
    assert_eq!(server.timeouts.handshake, Duration::from_secs(10));
    assert_eq!(server.timeouts.drain, Duration::from_secs(30));
    assert_eq!(server.limits, crate::Limits::default());
    assert_eq!(server.limits.max_header_bytes, 16384);
    assert_eq!(snap.default_site, 0);
    assert!(snap.sites[0].is_default);
    assert_eq!(snap.sites[0].origin.authority, "127.0.0.1:8080");
    assert_eq!(snap.admin, None);
    assert!(snap.revocation_stores.is_empty());
    assert!(snap.warnings().is_empty());
    let mtls = &snap.sites[0].mtls;
    assert_eq!(mtls.revocation_store, None);
    assert!(mtls.crls.is_empty());
    assert_eq!(mtls.crl_expired, CrlExpiredPolicy::Deny);
    assert!(mtls.revoke_open_connections);
    let zero_workers = fx.snapshot(&minimal("workers = 0", "", ""));
    assert_eq!(zero_workers.server.workers, expected_workers);
}

#[test]
fn sni_selects_sites() {
    let fx = Fixture::new();
    let site = |name: &str, names: &str, default: bool| {
        format!(
            "[[site]]\nname = \"{name}\"\nserver_names = [{names}]\ndefault = {default}\ncertificate = \"certs/server.pem\"\nprivate_key = \"certs/server.key\"\norigin = \"http://127.0.0.1:1\"\n[site.mtls]\nmode = \"passthrough\"\n"
        )
    };
    let toml = format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\n{}{}{}",
        site("wild", "\"*.example.com\"", false),
        site("exact", "\"api.example.com\", \"EXAMPLE.com\"", false),
        site("fallback", "\"fallback.test\"", true),
    );
    let snap = fx.snapshot(&toml);
    let name = |sni: Option<&str>| snap.site_for_sni(sni).name.clone();
    assert_eq!(name(Some("api.example.com")), "exact");
    assert_eq!(name(Some("API.Example.Com.")), "exact");
    assert_eq!(name(Some("example.com")), "exact");
    assert_eq!(name(Some("www.example.com")), "wild");
    assert_eq!(name(Some("a.b.example.com")), "fallback");
    assert_eq!(name(Some("unknown.test")), "fallback");
    assert_eq!(name(Some("fallback.test")), "fallback");
    assert_eq!(name(None), "fallback");
    assert_eq!(snap.default_site, 2);
    assert_eq!(
        snap.sites[1].server_names,
        vec!["api.example.com", "example.com"]
    );

    // Host names a request may carry on each site's connections (wild 0, exact 1, fallback 2).
    let cases: [(usize, &str, bool); 12] = [
        (1, "api.example.com", true),
        (1, "API.EXAMPLE.COM.", true),
        (1, "www.example.com", false), // claimed by the wildcard site
        (0, "www.example.com", true),
        (0, "api.example.com", false), // the exact site claims it
        (0, "a.b.example.com", false), // nobody claims it; not the default site
        (2, "a.b.example.com", true),  // the default site serves unclaimed names
        (2, "127.0.0.1", true),
        (2, "api.example.com", false),
        (2, "fallback.test", true),
        (1, "fallback.test", false),
        (0, "unknown.test", false),
    ];
    for (site, host, ok) in cases {
        assert_eq!(
            snap.accepts_host(site, host),
            ok,
            "site {site}, host {host}"
        );
    }
}

#[test]
fn first_site_is_default_when_none_marked() {
    let fx = Fixture::new();
    let snap = fx.snapshot(
        EXAMPLE
            .replace("default = true\n", "server_names = [\"fb.test\"]\n")
            .as_str(),
    );
    assert_eq!(snap.default_site, 0);
    assert!(snap.sites[0].is_default);
    assert!(!snap.sites[1].is_default);
    assert_eq!(snap.site_for_sni(Some("nomatch.test")).name, "example");
}

#[test]
fn private_key_is_never_printed() {
    let fx = Fixture::new();
    let snap = fx.snapshot(&minimal("", "", ""));
    let key = &snap.sites[0].private_key;
    assert_eq!(format!("{key:?}"), "<redacted>");
    let body_line = fx.leaf_key_pem.lines().nth(1).unwrap();
    let debug = format!("{snap:?}");
    assert!(!debug.contains(body_line));
    assert!(debug.contains("<redacted>"));
}

#[test]
fn error_display_formats() {
    let e = ConfigError::new("/etc/p.toml", "server.listen[0]", "bad");
    assert_eq!(e.to_string(), "/etc/p.toml: server.listen[0]: bad");
    let errors = ConfigErrors(vec![
        e.clone(),
        ConfigError::new("/x", "site[1].origin", "worse"),
    ]);
    assert_eq!(
        errors.to_string(),
        "/etc/p.toml: server.listen[0]: bad\n/x: site[1].origin: worse"
    );
    let as_std: &dyn std::error::Error = &errors;
    assert!(as_std.to_string().contains("worse"));
}

#[test]
fn unreadable_config_file() {
    let fx = Fixture::new();
    let missing = fx.path("nope.toml");
    let errors = match load(&missing) {
        Ok(_) => panic!("expected error"),
        Err(e) => e,
    };
    assert_eq!(errors.len(), 1);
    assert_eq!(errors.0[0].file, missing);
    assert_eq!(errors.0[0].key, crate::DOCUMENT_KEY);
}

#[test]
fn toml_syntax_error() {
    let fx = Fixture::new();
    let errors = fx.errors(&minimal("", "origin2 = ", ""));
    assert_eq!(errors.len(), 1);
    let e = &errors.0[0];
    assert_eq!(e.file, fx.config_path());
    assert_eq!(e.key, "site[0].origin2");
    assert!(e.reason.contains("line 9"), "{}", e.reason);
}

#[test]
fn unknown_keys_are_errors() {
    let fx = Fixture::new();
    let errors = fx.errors(&minimal("[server.limits]\nmax_body = 1\n", "", ""));
    let e = find(&errors, "server.limits.max_body");
    assert_eq!(e.file, fx.config_path());
    assert!(e.reason.contains("unknown field"), "{}", e.reason);

    let errors = fx.errors(&minimal("", "", "colour = \"red\""));
    find(&errors, "site[0].mtls.colour");
}

#[test]
fn missing_mtls_section_is_an_error() {
    let fx = Fixture::new();
    let toml = "[server]\nlisten = [\"127.0.0.1:0\"]\n[[site]]\nname = \"a\"\ncertificate = \"c\"\nprivate_key = \"k\"\norigin = \"http://127.0.0.1\"\n";
    let errors = fx.errors(toml);
    let e = find(&errors, "site[0].mtls");
    assert!(e.reason.contains("missing field"), "{}", e.reason);
}

#[test]
fn missing_referenced_file() {
    let fx = Fixture::new();
    let errors = fx.errors(&minimal("", "", "").replace("certs/server.pem", "certs/absent.pem"));
    assert_eq!(errors.len(), 1, "{errors}");
    let e = find(&errors, "site[0].certificate");
    assert_eq!(e.file, fx.path("certs/absent.pem"));
    let io = fs::read(fx.path("certs/absent.pem")).unwrap_err();
    assert!(e.reason.contains(&io.to_string()), "{}", e.reason);
}

#[test]
fn pem_without_certificates() {
    let fx = Fixture::new();
    let path = fx.write("certs/empty.pem", "just some text, no PEM here\n");
    let errors = fx.errors(&minimal("", "", "").replace("certs/server.pem", "certs/empty.pem"));
    let e = find(&errors, "site[0].certificate");
    assert_eq!(e.file, path);
    assert!(e.reason.contains("no CERTIFICATE"), "{}", e.reason);
}

#[test]
fn unparsable_certificate_names_its_index() {
    let fx = Fixture::new();
    let garbage = pem::encode(&pem::Pem::new(
        "CERTIFICATE",
        vec![0x30, 0x03, 0x02, 0x01, 0x01],
    ));
    let path = fx.write("certs/bad.pem", &format!("{}{garbage}", fx.ca_pem));
    let errors = fx.errors(&minimal("", "", "").replace("certs/ca.pem", "certs/bad.pem"));
    let e = find(&errors, "site[0].mtls.trust_store");
    assert_eq!(e.file, path);
    assert!(e.reason.contains("#1"), "{}", e.reason);
    assert!(!e.reason.contains("#0"), "{}", e.reason);

    let errors = fx.errors(&minimal("", "", "").replace("certs/server.pem", "certs/bad.pem"));
    let e = find(&errors, "site[0].certificate");
    assert!(e.reason.contains("certificate #1"), "{}", e.reason);
}

#[test]
fn trust_store_entries_must_be_cas() {
    let fx = Fixture::new();
    let path = fx.write(
        "certs/mixed.pem",
        &format!("{}{}", fx.ca_pem, fx.non_ca_pem),
    );
    let errors = fx.errors(&minimal("", "", "").replace("certs/ca.pem", "certs/mixed.pem"));
    assert_eq!(errors.len(), 1, "{errors}");
    let e = find(&errors, "site[0].mtls.trust_store");
    assert_eq!(e.file, path);
    assert!(e.reason.contains("#1"), "{}", e.reason);
    assert!(e.reason.contains("not a CA"), "{}", e.reason);
}

#[test]
fn trust_store_required_unless_passthrough() {
    let fx = Fixture::new();
    let toml = minimal("", "", "").replace("trust_store = \"certs/ca.pem\"\n", "");
    let errors = fx.errors(&toml.replace("\"required\"", "\"optional\""));
    let e = find(&errors, "site[0].mtls.trust_store");
    assert_eq!(e.file, fx.config_path());
    let snap = fx.snapshot(&toml.replace("\"required\"", "\"passthrough\""));
    assert!(snap.sites[0].mtls.trust_store.is_empty());
}

#[test]
fn private_key_without_key_block() {
    let fx = Fixture::new();
    let errors = fx.errors(&minimal("", "", "").replace("certs/server.key", "certs/ca.pem"));
    let e = find(&errors, "site[0].private_key");
    assert_eq!(e.file, fx.path("certs/ca.pem"));
    assert!(e.reason.contains("PRIVATE KEY"), "{}", e.reason);
}

#[test]
fn traditional_ec_key_label_is_accepted() {
    let fx = Fixture::new();
    let der = pem::parse(&fx.leaf_key_pem).unwrap().into_contents();
    fx.write(
        "certs/ec.key",
        &pem::encode(&pem::Pem::new("EC PRIVATE KEY", der)),
    );
    let snap = fx.snapshot(&minimal("", "", "").replace("certs/server.key", "certs/ec.key"));
    assert_eq!(
        pem::parse(snap.sites[0].private_key.pem()).unwrap().tag(),
        "EC PRIVATE KEY"
    );
}

#[test]
fn bad_origin_url() {
    let fx = Fixture::new();
    for origin in [
        "https://127.0.0.1",
        "http://127.0.0.1:8080/app",
        "http://h?x=1",
        "http://h:99999",
    ] {
        let errors = fx.errors(&minimal("", "", "").replace("http://127.0.0.1:8080", origin));
        let e = find(&errors, "site[0].origin");
        assert_eq!(e.file, fx.config_path(), "{origin}");
    }
}

#[test]
fn unresolvable_origin() {
    let fx = Fixture::new();
    let errors = fx.errors(
        &minimal("", "", "").replace("http://127.0.0.1:8080", "http://no-such-host.invalid:80"),
    );
    let e = find(&errors, "site[0].origin");
    assert!(e.reason.contains("resolve"), "{}", e.reason);
}

#[test]
fn bad_listen_address() {
    let fx = Fixture::new();
    let errors = fx.errors(&minimal("", "", "").replace(
        "listen = [\"127.0.0.1:0\"]",
        "listen = [\"127.0.0.1:0\", \"localhost:80\", \"::1:80\"]",
    ));
    assert_eq!(find(&errors, "server.listen[1]").file, fx.config_path());
    find(&errors, "server.listen[2]");
    assert!(errors.iter().all(|e| e.key != "server.listen[0]"));

    let errors = fx.errors(&minimal("", "", "").replace("[\"127.0.0.1:0\"]", "[]"));
    find(&errors, "server.listen");
}

#[test]
fn out_of_range_limits_and_timeouts() {
    let fx = Fixture::new();
    let server = "workers = -1\ncpu_affinity = [0, -2]\n[server.limits]\nmax_header_bytes = 1023\nmax_header_count = 1001\nmax_connections_per_worker = 0\n[server.timeouts]\nhandshake = \"10 parsecs\"\nheader_read = \"0s\"\n";
    let errors = fx.errors(&minimal(server, "", "max_chain_depth = 5"));
    for key in [
        "server.workers",
        "server.cpu_affinity[1]",
        "server.limits.max_header_bytes",
        "server.limits.max_header_count",
        "server.limits.max_connections_per_worker",
        "server.timeouts.handshake",
        "server.timeouts.header_read",
        "site[0].mtls.max_chain_depth",
    ] {
        assert_eq!(find(&errors, key).file, fx.config_path());
    }
    assert_eq!(errors.len(), 8, "{errors}");

    let edges = "[server.limits]\nmax_header_bytes = 1048576\nmax_header_count = 1\n";
    let snap = fx.snapshot(&minimal(edges, "", "max_chain_depth = 1"));
    assert_eq!(snap.server.limits.max_header_bytes, 1_048_576);
    assert_eq!(snap.server.limits.max_header_count, 1);
    assert_eq!(snap.sites[0].mtls.max_chain_depth, 1);
}

#[test]
fn absurd_values_are_refused_against_the_machine() {
    let fx = Fixture::new();
    let server = "workers = 100000\ncpu_affinity = [0, 999]\n[server.limits]\nmax_connections_per_worker = 2000000\nmax_connections_per_client_ip = 1000001\nmax_requests_in_flight_per_worker = 0\nmin_request_body_rate = -1\n[server.timeouts]\nhandshake = \"1ns\"\norigin_connect = \"1ms\"\nsend = \"2d\"\nrequest_body = \"0s\"\n";
    let errors = fx.errors(&minimal(server, "", ""));
    for (key, says) in [
        ("server.workers", "0..=1024"),
        (
            "server.cpu_affinity[1]",
            "CPU 999 is not available to this process",
        ),
        ("server.limits.max_connections_per_worker", "1..=1000000"),
        ("server.limits.max_connections_per_client_ip", "0..=1000000"),
        (
            "server.limits.max_requests_in_flight_per_worker",
            "1..=1000000",
        ),
        ("server.limits.min_request_body_rate", "0..="),
        ("server.timeouts.handshake", "100ms..=24h"),
        ("server.timeouts.origin_connect", "10ms..=24h"),
        ("server.timeouts.send", "100ms..=24h"),
        ("server.timeouts.request_body", "100ms..=24h"),
    ] {
        let e = find(&errors, key);
        assert!(e.reason.contains(says), "{key}: {}", e.reason);
    }
    assert_eq!(errors.len(), 10, "{errors}");

    // Sensible values pass; more workers than CPUs is only a warning.
    let fine = "workers = 64\ncpu_affinity = [0]\n[server.timeouts]\nsend = \"5s\"\nrequest_body = \"100ms\"\norigin_connect = \"10ms\"\n[server.limits]\nmin_request_body_rate = 0\n";
    let snap = fx.snapshot(&minimal(fine, "", ""));
    assert_eq!(snap.server.workers, 64);
    assert_eq!(snap.server.timeouts.send, Duration::from_secs(5));
    assert_eq!(snap.server.limits.min_request_body_rate, 0);
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    if cpus < 64 {
        assert!(
            snap.warnings()
                .iter()
                .any(|w| w.contains("server.workers") && w.contains("share cores")),
            "{:?}",
            snap.warnings()
        );
    }
}

#[test]
fn unknown_forward_header_and_mode() {
    let fx = Fixture::new();
    let errors = fx.errors(
        &minimal("", "", "forward_headers = [\"subject\", \"cookie\"]")
            .replace("\"required\"", "\"always\""),
    );
    find(&errors, "site[0].mtls.forward_headers[1]");
    find(&errors, "site[0].mtls.mode");
    assert_eq!(errors.len(), 2, "{errors}");
}

#[test]
fn signature_algorithms_are_checked_by_name() {
    let fx = Fixture::new();
    let errors = fx.errors(&minimal(
        "",
        "",
        "signature_algorithms = [\"ed25519\", \"rsa_sha1\", \"ED25519\"]",
    ));
    assert!(
        find(&errors, "site[0].mtls.signature_algorithms[1]")
            .to_string()
            .contains("unknown signature algorithm \"rsa_sha1\""),
        "{errors}"
    );
    find(&errors, "site[0].mtls.signature_algorithms[2]");
    assert_eq!(errors.len(), 2, "{errors}");
    let errors = fx.errors(&minimal("", "", "signature_algorithms = []"));
    find(&errors, "site[0].mtls.signature_algorithms");
    let snap = fx.snapshot(&minimal(
        "",
        "",
        "signature_algorithms = [\"mldsa65\", \"ecdsa_secp256r1_sha256\"]",
    ));
    assert_eq!(
        snap.sites[0].mtls.signature_algorithms,
        vec![0x0905, 0x0403]
    );
    let snap = fx.snapshot(&minimal("", "", ""));
    assert_eq!(
        snap.sites[0].mtls.signature_algorithms,
        crate::DEFAULT_SIGNATURE_ALGORITHMS.to_vec()
    );
}

#[test]
fn duplicate_site_names_and_server_names() {
    let fx = Fixture::new();
    let toml = EXAMPLE
        .replace("name = \"fallback\"", "name = \"example\"")
        .replace(
            "default = true\n",
            "server_names = [\"LOCALHOST\", \"ok.test\", \"ok.test\"]\n",
        );
    let errors = fx.errors(&toml);
    let e = find(&errors, "site[1].name");
    assert_eq!(e.file, fx.config_path());
    assert!(e.reason.contains("site[0]"), "{}", e.reason);
    let e = find(&errors, "site[1].server_names[0]");
    assert!(e.reason.contains("site[0]"), "{}", e.reason);
    find(&errors, "site[1].server_names[2]");
    assert_eq!(errors.len(), 3, "{errors}");
}

#[test]
fn more_than_one_default() {
    let fx = Fixture::new();
    let toml = EXAMPLE.replace(
        "name = \"example\"\n",
        "name = \"example\"\ndefault = true\n",
    );
    let errors = fx.errors(&toml);
    let e = find(&errors, "site[1].default");
    assert_eq!(e.file, fx.config_path());
    assert!(e.reason.contains("site[0]"), "{}", e.reason);
    // site[0] is now the default, so site[1] also lacks server names.
    find(&errors, "site[1].server_names");
    assert_eq!(errors.len(), 2, "{errors}");
}

#[test]
fn non_default_site_needs_server_names() {
    let fx = Fixture::new();
    let toml = EXAMPLE.replace("server_names = [\"Localhost\", \"*.example.com\"]\n", "");
    let errors = fx.errors(&toml);
    find(&errors, "site[0].server_names");
    let errors = fx.errors(&EXAMPLE.replace("\"*.example.com\"", "\"a.*.example.com\""));
    find(&errors, "site[0].server_names[1]");
}

#[test]
fn no_sites_is_an_error() {
    let fx = Fixture::new();
    let errors = fx.errors("[server]\nlisten = [\"127.0.0.1:0\"]\n");
    assert_eq!(find(&errors, "site").file, fx.config_path());
}

#[test]
fn all_problems_are_collected() {
    let fx = Fixture::new();
    let toml = EXAMPLE
        .replace("\"127.0.0.1:8443\"", "\"nonsense\"")
        .replace("certs/server.key", "certs/missing.key")
        .replace("http://127.0.0.1:8080/", "ftp://x")
        .replace("max_header_count = 50", "max_header_count = 0");
    let errors = fx.errors(&toml);
    for key in [
        "server.listen[0]",
        "server.limits.max_header_count",
        "site[0].private_key",
        "site[1].private_key",
        "site[0].origin",
    ] {
        find(&errors, key);
    }
    assert_eq!(
        find(&errors, "site[1].private_key").file,
        fx.path("certs/missing.key")
    );
    assert_eq!(errors.len(), 5, "{errors}");
}

#[test]
fn relative_paths_use_config_directory_and_absolute_paths_stay() {
    let fx = Fixture::new();
    fs::create_dir_all(fx.path("etc")).unwrap();
    let nested = fx.path("etc/portcullis.toml");
    let absolute_key = fx.path("certs/server.key");
    let toml = minimal("", "", "")
        .replace("certs/server.pem", "../certs/server.pem")
        .replace("certs/ca.pem", "../certs/ca.pem")
        .replace("certs/server.key", &absolute_key.display().to_string());
    let snap = parse_str(&toml, &nested).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        snap.sites[0].certificate_path,
        Path::new(&fx.path("etc")).join("../certs/server.pem")
    );
    assert_eq!(snap.sites[0].private_key_path, absolute_key);
    assert_eq!(snap.source, nested);
}

/// `minimal` with one revocation store `name = "s"` reading `file`.
fn with_store(file: &str, store_extra: &str, mtls_extra: &str) -> String {
    minimal(
        &format!("[[revocation_store]]\nname = \"s\"\nfile = \"{file}\"\n{store_extra}"),
        "",
        mtls_extra,
    )
}

#[test]
fn store_format_defaults_by_extension_and_empty_stores_load() {
    let fx = Fixture::new();
    fx.write("empty.json", "");
    fx.write("empty2.JSON", "{\"data\":[]}");
    fx.write("empty.txt", "\n# nothing\n");
    for (file, format) in [
        ("empty.json", StoreFormat::Json),
        ("empty2.JSON", StoreFormat::Json),
        ("empty.txt", StoreFormat::Text),
    ] {
        let snap = fx.snapshot(&with_store(file, "", "revocation_store = \"s\""));
        let store = &snap.revocation_stores[0];
        assert_eq!(store.format, format, "{file}");
        assert!(store.entries.is_empty(), "{file}");
        assert_eq!(snap.sites[0].mtls.revocation_store, Some("s".to_owned()));
    }
    // An explicit format wins over the extension; duplicates: last wins.
    fx.write("list.json", "0a first\n00:0A second\n");
    let snap = fx.snapshot(&with_store("list.json", "format = \"text\"", ""));
    assert_eq!(snap.revocation_stores[0].entries, pairs(&[("a", "second")]));
}

#[test]
fn bad_json_entries_are_all_reported() {
    let fx = Fixture::new();
    let path = fx.write(
        "bad.json",
        r#"{"data":[{"key":"01","value":"ok"},{"key":"xyz","value":""},{"key":"0x12","value":""}]}"#,
    );
    let errors = fx.errors(&with_store("bad.json", "", ""));
    assert_eq!(errors.len(), 2, "{errors}");
    for e in &errors {
        assert_eq!(e.file, path);
        assert_eq!(e.key, "revocation_store[0].file");
    }
    assert!(
        errors.0[0]
            .reason
            .starts_with("data[1].key: \"xyz\" is not a hexadecimal serial number"),
        "{}",
        errors.0[0].reason
    );
    assert!(
        errors.0[1].reason.starts_with("data[2].key: "),
        "{}",
        errors.0[1].reason
    );

    fx.write("broken.json", "{\"data\": [");
    let errors = fx.errors(&with_store("broken.json", "", ""));
    let e = find(&errors, "revocation_store[0].file");
    assert!(e.reason.starts_with("invalid JSON"), "{}", e.reason);
}

#[test]
fn bad_text_lines_are_reported_with_line_numbers() {
    let fx = Fixture::new();
    let path = fx.write("bad.txt", "# header\n01\n\nnot-a-serial because\n02\n:\n");
    let errors = fx.errors(&with_store("bad.txt", "", ""));
    assert_eq!(errors.len(), 2, "{errors}");
    assert!(errors
        .iter()
        .all(|e| e.file == path && e.key == "revocation_store[0].file"));
    assert!(
        errors.0[0].reason.starts_with("line 4: "),
        "{}",
        errors.0[0].reason
    );
    assert!(
        errors.0[1].reason.starts_with("line 6: "),
        "{}",
        errors.0[1].reason
    );
}

#[test]
fn keys_and_values_over_the_limits() {
    let fx = Fixture::new();
    let long_key = "0".repeat(crate::MAX_KEY_BYTES + 1);
    let long_value = "v".repeat(crate::MAX_VALUE_BYTES + 1);
    fx.write(
        "limits.json",
        &format!(
            r#"{{"data":[{{"key":"{long_key}","value":""}},{{"key":"1","value":"{long_value}"}},{{"key":"{}","value":"{}"}}]}}"#,
            "0".repeat(crate::MAX_KEY_BYTES),
            "v".repeat(crate::MAX_VALUE_BYTES)
        ),
    );
    let errors = fx.errors(&with_store("limits.json", "", ""));
    assert_eq!(errors.len(), 2, "{errors}");
    assert!(
        errors.0[0].reason.starts_with("data[0].key: "),
        "{}",
        errors.0[0].reason
    );
    assert!(errors.0[0].reason.contains("512"), "{}", errors.0[0].reason);
    assert!(
        errors.0[1].reason.starts_with("data[1].value: "),
        "{}",
        errors.0[1].reason
    );
    assert!(
        errors.0[1].reason.contains("1024"),
        "{}",
        errors.0[1].reason
    );

    fx.write("limits.txt", &format!("{long_key}\n1 {long_value}\n"));
    let errors = fx.errors(&with_store("limits.txt", "", ""));
    assert_eq!(errors.len(), 2, "{errors}");
    assert!(
        errors.0[0].reason.starts_with("line 1: "),
        "{}",
        errors.0[0].reason
    );
    assert!(
        errors.0[1].reason.starts_with("line 2: value is 1025"),
        "{}",
        errors.0[1].reason
    );
}

#[test]
fn store_definition_errors() {
    let fx = Fixture::new();
    let stores = "[[revocation_store]]\nname = \"a b\"\nfile = \"revoked.json\"\n\
        [[revocation_store]]\nname = \"ok\"\nfile = \"revoked.json\"\nformat = \"csv\"\n\
        [[revocation_store]]\nname = \"ok\"\nfile = \"missing.json\"\n\
        [[revocation_store]]\nname = \"\"\nfile = \"revoked.json\"\n";
    let errors = fx.errors(&minimal(stores, "", "revocation_store = \"ok\""));
    for key in [
        "revocation_store[0].name",
        "revocation_store[1].format",
        "revocation_store[2].name",
        "revocation_store[2].file",
        "revocation_store[3].name",
    ] {
        find(&errors, key);
    }
    assert!(find(&errors, "revocation_store[2].name")
        .reason
        .contains("revocation_store[1]"));
    assert_eq!(
        find(&errors, "revocation_store[2].file").file,
        fx.path("missing.json")
    );
    assert_eq!(errors.len(), 5, "{errors}");

    let errors = fx.errors(&minimal("[[revocation_store]]\nname = \"x\"\n", "", ""));
    find(&errors, "revocation_store[0].file");
}

#[test]
fn unknown_revocation_store_name() {
    let fx = Fixture::new();
    let errors = fx.errors(&with_store(
        "revoked.json",
        "",
        "revocation_store = \"nope\"",
    ));
    assert_eq!(errors.len(), 1, "{errors}");
    let e = find(&errors, "site[0].mtls.revocation_store");
    assert_eq!(e.file, fx.config_path());
    assert!(e.reason.contains("\"nope\""), "{}", e.reason);
    let errors = fx.errors(&minimal("", "", "revocation_store = \"nope\""));
    find(&errors, "site[0].mtls.revocation_store");
}

#[test]
fn crl_with_unknown_issuer() {
    let fx = Fixture::new();
    let path = fx.write_bytes("crl/other.crl", crl(&issuer("Other CA"), &[1], false).der());
    let errors = fx.errors(&minimal(
        "",
        "",
        "crls = [\"crl/intermediate.crl\", \"crl/other.crl\"]",
    ));
    assert_eq!(errors.len(), 1, "{errors}");
    let e = find(&errors, "site[0].mtls.crls[1]");
    assert_eq!(e.file, path);
    assert!(
        e.reason
            .contains("issuer CN=Other CA is not in the trust store"),
        "{}",
        e.reason
    );
}

#[test]
fn crl_with_bad_signature() {
    let fx = Fixture::new();
    // Same issuer name as the trust store CA, different key.
    let impostor = issuer("Portcullis Test CA");
    let pem = crl(&impostor, &[1], false).pem().unwrap();
    let path = fx.write("crl/forged.pem", &pem);
    let errors = fx.errors(&minimal("", "", "crls = [\"crl/forged.pem\"]"));
    assert_eq!(errors.len(), 1, "{errors}");
    let e = find(&errors, "site[0].mtls.crls[0]");
    assert_eq!(e.file, path);
    assert!(e.reason.contains("signature"), "{}", e.reason);

    // Tampering with a genuine CRL also breaks its signature.
    let mut der = crl(&fx.ca, &[0x42], false).der().to_vec();
    let at = der.len() - 1;
    der[at] ^= 0x01;
    fx.write_bytes("crl/tampered.crl", &der);
    let errors = fx.errors(&minimal("", "", "crls = [\"crl/tampered.crl\"]"));
    assert!(find(&errors, "site[0].mtls.crls[0]")
        .reason
        .contains("signature"));
}

#[test]
fn crl_file_problems() {
    let fx = Fixture::new();
    let text = fx.write("crl/text.pem", &fx.ca_pem);
    fx.write("crl/garbage.crl", "\x30\x03\x02\x01\x01");
    let errors = fx.errors(&minimal(
        "",
        "",
        "crls = [\"crl/text.pem\", \"crl/garbage.crl\", \"crl/missing.crl\", \"\"]\ncrl_expired = \"warn\"",
    ));
    let e = find(&errors, "site[0].mtls.crls[0]");
    assert_eq!(e.file, text);
    assert!(e.reason.contains("X509 CRL"), "{}", e.reason);
    assert!(find(&errors, "site[0].mtls.crls[1]")
        .reason
        .contains("cannot be parsed"));
    assert_eq!(
        find(&errors, "site[0].mtls.crls[2]").file,
        fx.path("crl/missing.crl")
    );
    assert_eq!(find(&errors, "site[0].mtls.crls[3]").file, fx.config_path());
    find(&errors, "site[0].mtls.crl_expired");
    assert_eq!(errors.len(), 5, "{errors}");
}

#[test]
fn a_pem_file_cut_short_is_refused_not_read_in_part() {
    // A file caught half-written: the first of two CRLs (or certificates) is complete, the
    // second is cut. Reading only the first would drop revocations (or CAs) silently.
    let fx = Fixture::new();
    let two = fs::read_to_string(fx.path("crl/two.pem")).expect("two CRLs");
    let second = two.rfind("-----BEGIN").expect("second block");
    for cut in [second + 40, second + 5, two.len() - 10] {
        fx.write("crl/cut.pem", &two[..cut]);
        let errors = fx.errors(&minimal("", "", "crls = [\"crl/cut.pem\"]"));
        let e = find(&errors, "site[0].mtls.crls[0]");
        assert!(e.reason.contains("incomplete PEM"), "{cut}: {}", e.reason);
    }
    let bundle = fs::read_to_string(fx.path("certs/server.pem")).expect("chain");
    fx.write("certs/cut.pem", &bundle[..bundle.len() - 30]);
    let errors = fx.errors(&minimal("", "", "").replace("certs/ca.pem", "certs/cut.pem"));
    assert!(
        find(&errors, "site[0].mtls.trust_store")
            .reason
            .contains("incomplete PEM"),
        "{errors}"
    );
}

#[test]
fn crl_round_trip_and_expiry_warning() {
    let fx = Fixture::new();
    let revoked = [0x0102_0304_u64, 0xAB];
    fx.write(
        "crl/expired.pem",
        &crl(&fx.ca, &revoked, true).pem().unwrap(),
    );
    let snap = fx.snapshot(&minimal("", "", "crls = [\"crl/expired.pem\"]"));
    let mtls = &snap.sites[0].mtls;
    assert_eq!(mtls.crl_expired, CrlExpiredPolicy::Deny);
    let crl = &mtls.crls[0];
    assert_eq!(
        crl.revoked_serials,
        HashSet::from(["1020304".to_owned(), "ab".to_owned()])
    );
    let now = SystemTime::now();
    assert!(crl.is_expired(now));
    let next = crl.next_update.unwrap();
    assert!(!crl.is_expired(next - Duration::from_secs(1)));
    assert!(crl.this_update < next);
    assert_eq!(snap.warnings().len(), 1, "{:?}", snap.warnings());
    let warning = &snap.warnings()[0];
    assert!(
        warning.starts_with(&format!(
            "{}: site[0].mtls.crls[0]: ",
            fx.path("crl/expired.pem").display()
        )),
        "{warning}"
    );
    assert!(warning.contains("expired"), "{warning}");
    assert!(warning.contains("CN=Portcullis Test CA"), "{warning}");
}

#[test]
fn admin_listen_must_be_loopback() {
    let fx = Fixture::new();
    for addr in [
        "0.0.0.0:9901",
        "192.168.1.1:9901",
        "[::]:9901",
        "localhost:9901",
    ] {
        let errors = fx.errors(&minimal(&format!("[admin]\nlisten = \"{addr}\""), "", ""));
        assert_eq!(errors.len(), 1, "{errors}");
        assert_eq!(
            find(&errors, "admin.listen").file,
            fx.config_path(),
            "{addr}"
        );
    }
    let snap = fx.snapshot(&minimal("[admin]\nlisten = \"[::1]:0\"", "", ""));
    assert_eq!(
        snap.admin.map(|a| a.listen),
        Some(AdminListen::Tcp("[::1]:0".parse().unwrap()))
    );
    let snap = fx.snapshot(&minimal(
        "[admin]\nunix_socket = \"run/admin.sock\"",
        "",
        "",
    ));
    assert_eq!(
        snap.admin.map(|a| a.listen),
        Some(AdminListen::Unix(fx.path("run/admin.sock")))
    );
}

#[test]
fn admin_needs_exactly_one_listener() {
    let fx = Fixture::new();
    let errors = fx.errors(&minimal(
        "[admin]\nlisten = \"127.0.0.1:9901\"\nunix_socket = \"a.sock\"",
        "",
        "",
    ));
    assert_eq!(errors.len(), 1, "{errors}");
    let e = find(&errors, "admin");
    assert!(e.reason.contains("both"), "{}", e.reason);
    let errors = fx.errors(&minimal("[admin]\n", "", ""));
    find(&errors, "admin");
    let errors = fx.errors(&minimal("[admin]\nport = 1\n", "", ""));
    find(&errors, "admin.port");
}

#[test]
fn admin_token_file() {
    use std::os::unix::fs::PermissionsExt as _;
    let fx = Fixture::new();
    let token = fx.write("admin.token", "  0123456789abcdef0123456789abcdef\n");
    fs::set_permissions(&token, fs::Permissions::from_mode(0o600)).expect("chmod");
    // (Fixture::new wrote the same token; this one has surrounding whitespace.)
    let snap = fx.snapshot(&minimal(
        "[admin]\nlisten = \"127.0.0.1:0\"\ntoken_file = \"admin.token\"",
        "",
        "",
    ));
    let admin = snap.admin.as_ref().expect("admin");
    let t = admin.token.as_ref().expect("token");
    assert!(t.matches(b"0123456789abcdef0123456789abcdef"));
    assert!(!t.matches(b"0123456789abcdef0123456789abcdeF"));
    assert!(!t.matches(b"0123456789abcdef0123456789abcde"));
    assert!(!t.matches(b""));
    assert_eq!(format!("{t:?}"), "<redacted>");
    assert!(snap.warnings().is_empty(), "{:?}", snap.warnings());

    // World-readable: accepted with a warning naming the file.
    fs::set_permissions(&token, fs::Permissions::from_mode(0o644)).expect("chmod");
    let snap = fx.snapshot(&minimal(
        "[admin]\nlisten = \"127.0.0.1:0\"\ntoken_file = \"admin.token\"",
        "",
        "",
    ));
    assert!(
        snap.warnings()
            .iter()
            .any(|w| w.contains("admin.token: admin.token_file: readable by group or others")),
        "{:?}",
        snap.warnings()
    );
    // TCP without a token: a warning; a short, missing or spaced token: an error.
    let snap = fx.snapshot(&minimal("[admin]\nlisten = \"127.0.0.1:0\"", "", ""));
    assert!(snap
        .warnings()
        .iter()
        .any(|w| w.contains("admin.listen") && w.contains("no admin.token_file")));
    for (contents, says) in [
        ("short", "at least 16"),
        ("0123456789 abcdef0123", "one word"),
    ] {
        fx.write("bad.token", contents);
        let errors = fx.errors(&minimal(
            "[admin]\nlisten = \"127.0.0.1:0\"\ntoken_file = \"bad.token\"",
            "",
            "",
        ));
        let e = find(&errors, "admin.token_file");
        assert_eq!(e.file, fx.path("bad.token"));
        assert!(e.reason.contains(says), "{}", e.reason);
    }
    let errors = fx.errors(&minimal(
        "[admin]\nlisten = \"127.0.0.1:0\"\ntoken_file = \"missing.token\"",
        "",
        "",
    ));
    assert!(find(&errors, "admin.token_file")
        .reason
        .contains("cannot read"));
}

#[test]
fn serial_normalisation_matches_crl_serials() {
    assert_eq!(crate::normalize_serial("00:0A:bC").unwrap(), "abc");
    assert_eq!(crate::normalize_serial("0").unwrap(), "0");
    assert_eq!(crate::normalize_serial("00").unwrap(), "0");
    assert!(crate::normalize_serial("0x12").is_err());
    assert!(crate::normalize_serial("").is_err());
    assert_eq!(crate::serial_from_bytes(&1u64.to_be_bytes()), "1");
}

#[test]
fn http2_defaults_and_site_alpn() {
    let fx = Fixture::new();
    let snap = fx.snapshot(&minimal("", "", ""));
    assert_eq!(snap.server.http2, crate::Http2Settings::default());
    assert_eq!(snap.server.http2.max_concurrent_streams, 128);
    assert_eq!(snap.sites[0].alpn, crate::DEFAULT_ALPN.to_vec());

    let only_h1 = fx.snapshot(&minimal("", "alpn = [\"http/1.1\"]", ""));
    assert_eq!(only_h1.sites[0].alpn, vec![crate::AppProtocol::Http11]);
    let server = "[server.http2]\nmax_concurrent_streams = 16\nstream_idle_timeout = \"2s\"\n";
    let tuned = fx.snapshot(&minimal(server, "alpn = [\"http/1.1\", \"h2\"]", ""));
    assert_eq!(tuned.server.http2.max_concurrent_streams, 16);
    assert_eq!(
        tuned.server.http2.stream_idle_timeout,
        Duration::from_secs(2)
    );
    assert_eq!(
        tuned.sites[0].alpn,
        vec![crate::AppProtocol::Http11, crate::AppProtocol::H2]
    );
}

#[test]
fn http2_mistakes_name_their_keys() {
    let fx = Fixture::new();
    let server = "[server.http2]\nmax_concurrent_streams = 0\nmax_header_list_size = 10\ninitial_stream_window = 1\nstream_idle_timeout = \"soon\"\nmax_control_frames_per_second = 1\n";
    let errors = fx.errors(&minimal(server, "alpn = [\"h3\", \"h2\", \"h2\"]", ""));
    for key in [
        "server.http2.max_concurrent_streams",
        "server.http2.max_header_list_size",
        "server.http2.initial_stream_window",
        "server.http2.stream_idle_timeout",
        "server.http2.max_control_frames_per_second",
        "site[0].alpn[0]",
        "site[0].alpn[2]",
    ] {
        assert_eq!(find(&errors, key).file, fx.config_path());
    }
    assert_eq!(errors.len(), 7, "{errors}");
    let empty = fx.errors(&minimal("", "alpn = []", ""));
    find(&empty, "site[0].alpn");
    let unknown = fx.errors(&minimal("[server.http2]\nbogus = 1\n", "", ""));
    find(&unknown, "server.http2.bogus");
}

#[test]
fn connection_function_settings_and_their_errors() {
    let fx = Fixture::new();
    fx.write(
        "functions/revocation.js",
        "function connectionHandler(c) { c.allow(); }\n",
    );
    let store = "[[revocation_store]]\nname = \"viewers\"\nfile = \"revoked.json\"\n";
    let snap = fx.snapshot(&minimal(
        store,
        "",
        "[site.mtls.connection_function]\nfile = \"functions/revocation.js\"\nkvs = \"viewers\"\ntime_limit = \"2ms\"\n",
    ));
    let function = snap.sites[0]
        .mtls
        .connection_function
        .as_ref()
        .expect("function");
    assert_eq!(function.path, fx.path("functions/revocation.js"));
    assert_eq!(function.name(), "revocation.js");
    assert_eq!(
        &*function.source,
        "function connectionHandler(c) { c.allow(); }\n"
    );
    assert_eq!(function.kvs.as_deref(), Some("viewers"));
    assert_eq!(function.time_limit, Duration::from_millis(2));
    assert_eq!(function.file_key, "site[0].mtls.connection_function.file");

    // Defaults: no store, 5 ms.
    let snap = fx.snapshot(&minimal(
        "",
        "",
        "connection_function = { file = \"functions/revocation.js\" }\n",
    ));
    let function = snap.sites[0]
        .mtls
        .connection_function
        .as_ref()
        .expect("function");
    assert_eq!(
        (function.kvs.clone(), function.time_limit),
        (None, Duration::from_millis(5))
    );

    // Every mistake at once, each at its key.
    fx.write(
        "functions/big.js",
        &"/".repeat(crate::MAX_FUNCTION_BYTES + 1),
    );
    let errors = fx.errors(&minimal(
        "",
        "",
        "connection_function = { file = \"functions/big.js\", kvs = \"nope\", time_limit = \"2s\" }\n",
    ));
    let f = "site[0].mtls.connection_function";
    assert!(find(&errors, &format!("{f}.file"))
        .reason
        .contains("more than the limit of 40960 bytes"));
    assert!(find(&errors, &format!("{f}.kvs"))
        .reason
        .contains("unknown key-value store \"nope\""));
    assert!(find(&errors, &format!("{f}.time_limit"))
        .reason
        .contains("100us..=1s"));
    fx.write_bytes("functions/latin1.js", b"// caf\xe9\n");
    let errors = fx.errors(&minimal(
        "",
        "",
        "connection_function = { file = \"functions/latin1.js\" }\n",
    ));
    assert!(find(&errors, &format!("{f}.file"))
        .reason
        .contains("not valid UTF-8"));
    let errors = fx.errors(&minimal(
        "",
        "",
        "connection_function = { file = \"functions/missing.js\" }\n",
    ));
    assert!(find(&errors, &format!("{f}.file"))
        .reason
        .contains("cannot read file"));
    let errors = fx.errors(&minimal(
        "",
        "",
        "connection_function = { file = \"x.js\", bogus = 1 }\n",
    ));
    assert!(
        errors
            .iter()
            .any(|e| e.reason.contains("unknown field `bogus`")),
        "{errors}"
    );
}
