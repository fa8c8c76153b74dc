//! `portcullis demo`: a self-contained first run. Generates a demo PKI, starts a loopback
//! origin that echoes request headers, writes a configuration for them and prints the curl
//! commands that show an accepted and a refused client.
//!
//! The demo site runs the announcement's connection function ([`REVOCATION_FUNCTION`])
//! against an empty store that the admin API (a Unix socket in the demo directory) edits, and
//! ships a second function ([`ORGANIZATION_FUNCTION`]) with a test event for
//! `portcullis function test`.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use crate::demo_origin::DemoOrigin;
use crate::pki::{
    DemoPki, PkiError, CLIENT_CERT_FILE, CLIENT_KEY_FILE, EXPIRED_CLIENT_CERT_FILE,
    EXPIRED_CLIENT_KEY_FILE, ROOT_CA_FILE, UNKNOWN_CLIENT_CERT_FILE, UNKNOWN_CLIENT_KEY_FILE,
};
use crate::telemetry::LeafFields;

/// The connection function of CloudFront's viewer-mTLS announcement, byte for byte: denies a
/// client whose serial is in the key-value store.
pub const REVOCATION_FUNCTION: &str = include_str!("../functions/revocation.js");
/// A second demo function: allows one organisation or a subject-alternative-name pattern.
pub const ORGANIZATION_FUNCTION: &str = include_str!("../functions/organization.js");
/// Where the demo writes its functions, store and test event (relative to its directory).
pub const REVOCATION_FUNCTION_FILE: &str = "functions/revocation.js";
/// See [`ORGANIZATION_FUNCTION`].
pub const ORGANIZATION_FUNCTION_FILE: &str = "functions/organization.js";
/// The demo's key-value store (CloudFront import format), read by the revocation function.
pub const VIEWERS_STORE_FILE: &str = "viewers.json";
/// A test connection of the demo client, for `portcullis function test`.
pub const CLIENT_EVENT_FILE: &str = "events/client.json";
/// The demo's admin API socket.
pub const ADMIN_SOCKET_FILE: &str = "admin.sock";

/// Why the demo could not be prepared.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    /// Certificates could not be generated.
    #[error("generating the demo PKI: {0}")]
    Pki(#[from] PkiError),
    /// Files or sockets failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The error.
        source: std::io::Error,
    },
}

/// A prepared demo: PKI on disk, origin running, configuration written.
#[derive(Debug)]
pub struct Demo {
    /// The generated certificates.
    pub pki: DemoPki,
    /// The echo origin (stops when dropped).
    pub origin: DemoOrigin,
    /// The configuration file to run.
    pub config_path: PathBuf,
}

impl Demo {
    /// Prepares the demo in `dir`, for a data plane listening on `listen`.
    pub fn prepare(dir: &Path, listen: SocketAddr) -> Result<Self, DemoError> {
        std::fs::create_dir_all(dir).map_err(|source| DemoError::Io {
            what: format!("creating {}", dir.display()),
            source,
        })?;
        let pki = DemoPki::generate(dir)?;
        let origin_addr: SocketAddr = ([127, 0, 0, 1], 0).into();
        let origin = DemoOrigin::start(origin_addr).map_err(|source| DemoError::Io {
            what: "starting the demo origin".into(),
            source,
        })?;
        let write = |file: &str, contents: &str| {
            let path = dir.join(file);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent).map_err(|source| DemoError::Io {
                    what: format!("creating {}", parent.display()),
                    source,
                })?;
            }
            std::fs::write(&path, contents).map_err(|source| DemoError::Io {
                what: format!("writing {}", path.display()),
                source,
            })?;
            Ok::<PathBuf, DemoError>(path)
        };
        write(REVOCATION_FUNCTION_FILE, REVOCATION_FUNCTION)?;
        write(ORGANIZATION_FUNCTION_FILE, ORGANIZATION_FUNCTION)?;
        write(VIEWERS_STORE_FILE, "{\"data\":[]}\n")?;
        write(CLIENT_EVENT_FILE, &client_event(&pki.client.cert_der))?;
        let config = format!(
            "{}{}",
            demo_config(listen, origin.addr(), 2),
            demo_function_config()
        );
        let config_path = write("portcullis.toml", &config)?;
        Ok(Self {
            pki,
            origin,
            config_path,
        })
    }

    /// The commands a user can paste to see the demo work, for a server on `addr`.
    pub fn instructions(&self, addr: SocketAddr) -> String {
        let d = |f: &str| self.pki.path(f).display().to_string();
        let url = format!("https://localhost:{}/", addr.port());
        let mut s = String::new();
        let _ = writeln!(
            s,
            "Portcullis demo: PKI and configuration in {}",
            self.pki.dir.display()
        );
        let _ = writeln!(
            s,
            "Origin (echoes request headers) on http://{}",
            self.origin.addr()
        );
        let _ = writeln!(s, "Data plane on {url} (viewer mTLS required)\n");
        let ca = d(ROOT_CA_FILE);
        let mut example = |what: &str, cert: Option<(&str, &str)>| {
            let _ = writeln!(s, "{what}");
            match cert {
                Some((cert, key)) => {
                    let (cert, key) = (d(cert), d(key));
                    let _ = writeln!(s, "  curl --cacert {ca} --cert {cert} --key {key} {url}\n");
                }
                None => {
                    let _ = writeln!(s, "  curl --cacert {ca} {url}\n");
                }
            }
        };
        example(
            "Accepted: a client certificate from the trusted CA",
            Some((CLIENT_CERT_FILE, CLIENT_KEY_FILE)),
        );
        example("Refused: no client certificate", None);
        example(
            "Refused: an expired client certificate",
            Some((EXPIRED_CLIENT_CERT_FILE, EXPIRED_CLIENT_KEY_FILE)),
        );
        example(
            "Refused: a certificate from an unknown CA",
            Some((UNKNOWN_CLIENT_CERT_FILE, UNKNOWN_CLIENT_KEY_FILE)),
        );
        let dir = self.pki.dir.display();
        let serial = LeafFields::from_der(&self.pki.client.cert_der, &[0; 32])
            .map(|leaf| leaf.serial.to_string())
            .unwrap_or_default();
        let _ = writeln!(
            s,
            "The site runs the connection function {dir}/{REVOCATION_FUNCTION_FILE} (CloudFront's \
             announcement) on the store {dir}/{VIEWERS_STORE_FILE}. Revoke the client above, then \
             the same curl is refused (access denied):"
        );
        let _ = writeln!(
            s,
            "  portcullis revoke --admin unix:{dir}/{ADMIN_SOCKET_FILE} --store viewers {serial}\n"
        );
        let _ = writeln!(
            s,
            "Test a function against a test connection without the server:"
        );
        let _ = writeln!(
            s,
            "  portcullis function test --file {dir}/{ORGANIZATION_FUNCTION_FILE} --event {dir}/{CLIENT_EVENT_FILE}"
        );
        let _ = writeln!(
            s,
            "  portcullis function test --file {dir}/{REVOCATION_FUNCTION_FILE} --event {dir}/{CLIENT_EVENT_FILE} --kvs {dir}/{VIEWERS_STORE_FILE}\n"
        );
        let _ = writeln!(s, "Press Ctrl-C to stop.");
        s
    }
}

/// What the demo adds to [`demo_config`]: the admin API on a Unix socket, the `viewers` store
/// and the revocation function reading it.
pub fn demo_function_config() -> String {
    format!(
        r#"connection_function = {{ file = "{REVOCATION_FUNCTION_FILE}", kvs = "viewers", time_limit = "5ms" }}

[admin]
unix_socket = "{ADMIN_SOCKET_FILE}"

[[revocation_store]]
name = "viewers"
file = "{VIEWERS_STORE_FILE}"
"#
    )
}

/// The test event (the spec's event shape) of a client certificate.
pub fn client_event(leaf_der: &[u8]) -> String {
    let digest = boring::sha::sha256(leaf_der);
    let Some(leaf) = LeafFields::from_der(leaf_der, &digest) else {
        return "{}".to_owned();
    };
    let event = serde_json::json!({
        "clientCertificate": {"certificates": {"leaf": {
            "serialNumber": &*leaf.serial,
            "subject": &*leaf.subject,
            "issuer": &*leaf.issuer,
            "validity": {"notBefore": leaf.not_before(), "notAfter": leaf.not_after()},
            "sha256Fingerprint": &*leaf.sha256,
            "subjectAlternativeNames": leaf.subject_alternative_names.iter().map(|n| &**n).collect::<Vec<_>>(),
        }}},
        "clientIp": "127.0.0.1",
        "endpoint": "localhost",
        "distributionId": "demo",
        "connectionId": "demo-connection",
    });
    format!("{event:#}\n")
}

/// The demo configuration (for a [`DemoPki`] in the same directory): one site for
/// localhost, required mTLS, trust bundle of the demo root and intermediate, `workers`
/// workers on `listen`, requests to `origin`. Also the base of benchmarks and tests that need
/// a working configuration.
pub fn demo_config(listen: SocketAddr, origin: SocketAddr, workers: usize) -> String {
    format!(
        r#"# Generated by `portcullis demo`.
[server]
listen = ["{listen}"]
workers = {workers}

[[site]]
name = "demo"
server_names = ["localhost"]
default = true
certificate = "server.pem"
private_key = "server.key"
origin = "http://{origin}"

[site.mtls]
mode = "required"
trust_store = "trust-bundle.pem"
advertise_ca_names = true
"#
    )
}
