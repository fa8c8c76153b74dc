//! Immutable, fully validated configuration consumed by the data plane.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use crate::logs::{DiagnosticsSettings, LogSettings};
use crate::revocation::{CrlExpiredPolicy, CrlSnapshot, RevocationStoreSnapshot};
use crate::sni::SniIndex;
use crate::sources::{SourceSettings, SourceUse};

/// A validated configuration with all referenced files loaded.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// Path of the configuration file this snapshot was loaded from.
    pub source: PathBuf,
    /// Process-wide settings from `[server]`.
    pub server: ServerSettings,
    /// Sites in file order; `sites[i].index == i`.
    pub sites: Vec<Arc<SiteSnapshot>>,
    /// Index into `sites` of the site used when SNI is absent or unmatched.
    pub default_site: usize,
    /// The admin listener from `[admin]`, if configured.
    pub admin: Option<AdminSettings>,
    /// Revocation stores in file order; `revocation_stores[i].index == i`.
    pub revocation_stores: Vec<Arc<RevocationStoreSnapshot>>,
    /// `[sources]`: remote objects, their cache, file watching, pins.
    pub sources: SourceSettings,
    /// Every file and object this snapshot was read from, with its digest.
    pub files: Vec<SourceUse>,
    /// The connection and access logs from `[logs]`.
    pub logs: LogSettings,
    /// Diagnostic output settings from `[diagnostics]`.
    pub diagnostics: DiagnosticsSettings,
    pub(crate) sni: SniIndex,
    pub(crate) warnings: Vec<String>,
}

impl Snapshot {
    /// Selects the site for a TLS ClientHello server name.
    ///
    /// Matching is case-insensitive and ignores one trailing dot. An exact
    /// server name wins over a wildcard; `*.example.com` matches
    /// `a.example.com` but neither `example.com` nor `a.b.example.com`.
    /// Without SNI, or when nothing matches, the default site is returned.
    /// Does not allocate when `sni` is already lowercase.
    pub fn site_for_sni(&self, sni: Option<&str>) -> &Arc<SiteSnapshot> {
        let index = sni
            .and_then(|name| self.sni.lookup(name))
            .unwrap_or(self.default_site);
        // Invariant: `SniIndex` only holds indices of existing sites and
        // `default_site < sites.len()` (a snapshot always has a site).
        &self.sites[index]
    }

    /// Whether a request on a connection whose SNI selected site `site` may name `host`
    /// (from `Host` or an absolute-form target, without the port): yes if `host` is one of
    /// the site's server names (exact or wildcard, matched like SNI), or if no site claims
    /// `host` and `site` is the default site (it serves unknown names, as for SNI). No if
    /// another site claims `host`: that site's policy was not applied to this connection
    /// (answer 421 Misdirected Request).
    pub fn accepts_host(&self, site: usize, host: &str) -> bool {
        match self.sni.lookup(host) {
            Some(owner) => owner == site,
            None => site == self.default_site,
        }
    }

    /// Non-fatal problems found while loading (for example an expired CRL),
    /// each formatted like a [`crate::ConfigError`]: `file: key: reason`.
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }
}

/// Where the admin listener listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdminListen {
    /// A loopback TCP address (`admin.listen`).
    Tcp(SocketAddr),
    /// A Unix domain socket path (`admin.unix_socket`), resolved relative
    /// to the configuration file's directory.
    Unix(PathBuf),
}

/// Settings from `[admin]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminSettings {
    /// The listener address.
    pub listen: AdminListen,
    /// The bearer token every request must carry (`Authorization: Bearer ...`), read from
    /// `admin.token_file`; `None` when not configured.
    pub token: Option<AdminToken>,
}

/// The admin API's bearer token. `Debug` prints `<redacted>`; the bytes are overwritten with
/// zeros on drop.
#[derive(Clone, PartialEq, Eq)]
pub struct AdminToken(Vec<u8>);

impl AdminToken {
    /// Wraps the token (the file's contents without surrounding whitespace).
    pub fn new(token: Vec<u8>) -> Self {
        Self(token)
    }

    /// Whether every byte is visible ASCII (no spaces or control characters).
    pub fn is_visible_ascii(&self) -> bool {
        self.0.iter().all(u8::is_ascii_graphic)
    }

    /// Whether `presented` is the token, compared in time independent of where they differ.
    pub fn matches(&self, presented: &[u8]) -> bool {
        let mut diff = u8::from(presented.len() != self.0.len());
        for (i, &b) in self.0.iter().enumerate() {
            diff |= b ^ presented.get(i).copied().unwrap_or(!b);
        }
        std::hint::black_box(diff) == 0
    }
}

impl fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl Drop for AdminToken {
    fn drop(&mut self) {
        self.0.fill(0);
        std::hint::black_box(&self.0);
    }
}

/// Settings from `[server]`, with defaults applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerSettings {
    /// Addresses to listen on (at least one).
    pub listen: Vec<SocketAddr>,
    /// Number of worker threads (never zero).
    pub workers: usize,
    /// CPU ids; worker `i` is pinned to `cpu_affinity[i % len]`.
    pub cpu_affinity: Option<Vec<usize>>,
    /// Timeouts from `[server.timeouts]`.
    pub timeouts: Timeouts,
    /// Limits from `[server.limits]`.
    pub limits: Limits,
    /// HTTP/2 settings from `[server.http2]`.
    pub http2: crate::Http2Settings,
}

impl ServerSettings {
    /// The CPU worker `worker` should be pinned to, if affinity is configured.
    pub fn cpu_for_worker(&self, worker: usize) -> Option<usize> {
        let cpus = self.cpu_affinity.as_deref()?;
        cpus.get(worker % cpus.len().max(1)).copied()
    }
}

/// Timeouts from `[server.timeouts]`; all are non-zero except `drain`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// TLS handshake (default 10s).
    pub handshake: Duration,
    /// Reading a request header (default 30s).
    pub header_read: Duration,
    /// Idle time between keep-alive requests (default 60s).
    pub idle_keepalive: Duration,
    /// Connecting to the origin (default 5s).
    pub origin_connect: Duration,
    /// Waiting for the origin's response, and for the origin to take request bytes
    /// (default 60s).
    pub origin_response: Duration,
    /// Writing to a client that makes no progress reading (default 30s): the connection and
    /// its origin connection are closed.
    pub send: Duration,
    /// Time a request body may take before `min_request_body_rate` applies: a body must
    /// arrive within `request_body` plus one second per `min_request_body_rate` bytes
    /// received (default 30s).
    pub request_body: Duration,
    /// Graceful-shutdown drain (default 30s).
    pub drain: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            handshake: Duration::from_secs(10),
            header_read: Duration::from_secs(30),
            idle_keepalive: Duration::from_secs(60),
            origin_connect: Duration::from_secs(5),
            origin_response: Duration::from_secs(60),
            send: Duration::from_secs(30),
            request_body: Duration::from_secs(30),
            drain: Duration::from_secs(30),
        }
    }
}

/// Limits from `[server.limits]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Maximum request header size in bytes (default 16384, 1024..=1048576).
    pub max_header_bytes: usize,
    /// Maximum number of request headers (default 100, 1..=1000).
    pub max_header_count: usize,
    /// Maximum concurrent connections per worker (default 10000, 1..=1000000).
    pub max_connections_per_worker: usize,
    /// Maximum concurrent connections from one client address (an IPv6 /64) on the whole
    /// host (default 0: no limit; 0..=1000000).
    pub max_connections_per_client_ip: usize,
    /// Maximum requests (HTTP/1.1 requests and HTTP/2 streams) in flight to origins per worker
    /// (default 4096, 1..=1000000): each holds two or three 64 KiB buffers, so this bounds the
    /// worker's buffer memory; a request beyond it is answered 503.
    pub max_requests_in_flight_per_worker: usize,
    /// Bytes per second of request body that extend the `request_body` time-out by one second
    /// each (default 1024; 0: only the per-read `header_read` time-out applies).
    pub min_request_body_rate: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_header_bytes: 16384,
            max_header_count: 100,
            max_connections_per_worker: 10000,
            max_connections_per_client_ip: 0,
            max_requests_in_flight_per_worker: 4096,
            min_request_body_rate: 1024,
        }
    }
}

/// One validated `[[site]]` with its certificate, key and trust store loaded.
#[derive(Debug, Clone)]
pub struct SiteSnapshot {
    /// Position of the site in the file (and in [`Snapshot::sites`]).
    pub index: usize,
    /// Unique site name.
    pub name: String,
    /// Key prefix for messages, e.g. `"site[0]"`.
    pub key_prefix: String,
    /// Lowercased exact names and `*.suffix` wildcards.
    pub server_names: Vec<String>,
    /// Whether this is the default site.
    pub is_default: bool,
    /// Resolved path of the certificate chain file (or its object URL).
    pub certificate_path: PathBuf,
    /// DER certificates, leaf first, then intermediates.
    pub certificate_chain: Vec<Vec<u8>>,
    /// Resolved path of the private key file (or its object URL).
    pub private_key_path: PathBuf,
    /// The private key as a single PEM block (never printed).
    pub private_key: PrivateKeyPem,
    /// Where requests are proxied to.
    pub origin: Origin,
    /// The protocols offered in ALPN, in the server's order of preference (`alpn`; default
    /// `["h2", "http/1.1"]`).
    pub alpn: Vec<crate::AppProtocol>,
    /// Client-certificate settings.
    pub mtls: MtlsSettings,
}

impl SiteSnapshot {
    /// The site's first exact (not wildcard) server name: the host a connection without SNI
    /// is taken to address.
    pub fn first_exact_name(&self) -> Option<&str> {
        self.server_names
            .iter()
            .find(|n| !n.starts_with("*."))
            .map(String::as_str)
    }
}

/// A PEM-encoded private key. `Debug` prints `<redacted>`; the bytes are
/// overwritten with zeros on drop.
#[derive(Clone, PartialEq, Eq)]
pub struct PrivateKeyPem(Vec<u8>);

impl PrivateKeyPem {
    /// Wraps PEM text containing exactly one private key block.
    pub fn new(pem: Vec<u8>) -> Self {
        Self(pem)
    }

    /// The PEM text (`-----BEGIN ... PRIVATE KEY-----` ...).
    pub fn pem(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for PrivateKeyPem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl Drop for PrivateKeyPem {
    fn drop(&mut self) {
        self.0.fill(0);
        // Keep the zeroing from being optimised away as a dead store.
        std::hint::black_box(&self.0);
    }
}

/// The upstream origin of a site (`http://host[:port][/]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// The URL as written in the configuration.
    pub url: String,
    /// Host name or IP address, without IPv6 brackets.
    pub host: String,
    /// Port (80 when not written).
    pub port: u16,
    /// `host[:port]` exactly as written in the URL (IPv6 in brackets), for
    /// use as a `Host` header value.
    pub authority: String,
    /// Addresses resolved at load time (non-empty).
    pub addrs: Vec<SocketAddr>,
}

/// How client certificates are handled for a site.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MtlsMode {
    /// A client certificate that verifies against the trust store is required.
    Required,
    /// A client certificate is requested; if sent it must verify.
    Optional,
    /// A client certificate is requested and forwarded without verification.
    Passthrough,
}

impl MtlsMode {
    /// The configuration spelling (`"required"`, `"optional"`, `"passthrough"`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Required => "required",
            Self::Optional => "optional",
            Self::Passthrough => "passthrough",
        }
    }

    /// Parses the configuration spelling.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "required" => Some(Self::Required),
            "optional" => Some(Self::Optional),
            "passthrough" => Some(Self::Passthrough),
            _ => None,
        }
    }
}

impl fmt::Display for MtlsMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Validated `[site.mtls]`.
#[derive(Debug, Clone)]
pub struct MtlsSettings {
    /// Verification mode.
    pub mode: MtlsMode,
    /// Resolved path (or object URL) of the trust store, if configured.
    pub trust_store_path: Option<PathBuf>,
    /// CA certificates from the trust store (empty when none configured).
    pub trust_store: Vec<TrustAnchor>,
    /// Accept expired / not-yet-valid client certificates.
    pub ignore_expiration: bool,
    /// Send the trust store's subject names in the CertificateRequest.
    pub advertise_ca_names: bool,
    /// Maximum client chain depth (1..=4).
    pub max_chain_depth: u8,
    /// Which client-certificate headers are forwarded to the origin.
    pub forward: ForwardHeaders,
    /// Name of the `[[revocation_store]]` consulted for client certificate
    /// serials, if any (always the name of one of
    /// `Snapshot::revocation_stores`: references are resolved by name, never
    /// by position, so adding, removing or reordering stores cannot point a
    /// site at another store).
    pub revocation_store: Option<String>,
    /// CRLs, each verified against a trust store CA, in configuration order
    /// (a file holding several CRLs contributes several entries).
    pub crls: Vec<Arc<CrlSnapshot>>,
    /// What to do while a CRL is past its nextUpdate (default deny).
    pub crl_expired: CrlExpiredPolicy,
    /// Close open connections whose client certificate becomes revoked on
    /// reload (default true).
    pub revoke_open_connections: bool,
    /// The connection function run in the handshake (`[site.mtls.connection_function]`).
    pub connection_function: Option<crate::function::ConnectionFunctionSettings>,
    /// TLS SignatureScheme numbers accepted in the client's CertificateVerify and advertised
    /// in the CertificateRequest, in preference order (`signature_algorithms`; default
    /// [`crate::DEFAULT_SIGNATURE_ALGORITHMS`]: no SHA-1, no ML-DSA).
    pub signature_algorithms: Vec<u16>,
}

/// One CA certificate from a trust store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustAnchor {
    /// DER encoding.
    pub der: Vec<u8>,
    /// Subject distinguished name (RFC 2253-like), for messages.
    pub subject: String,
    /// Subject equals issuer (a root rather than an intermediate).
    pub self_signed: bool,
}

/// Which client-certificate headers are forwarded (all by default).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ForwardHeaders {
    /// `serial-number`.
    pub serial_number: bool,
    /// `issuer`.
    pub issuer: bool,
    /// `subject`.
    pub subject: bool,
    /// `present`.
    pub present: bool,
    /// `sha256`.
    pub sha256: bool,
    /// `validity`.
    pub validity: bool,
    /// `pem`.
    pub pem: bool,
}

impl ForwardHeaders {
    /// The accepted names in `forward_headers`.
    pub const NAMES: [&'static str; 7] = [
        "serial-number",
        "issuer",
        "subject",
        "present",
        "sha256",
        "validity",
        "pem",
    ];

    /// No headers forwarded.
    pub const NONE: Self = Self {
        serial_number: false,
        issuer: false,
        subject: false,
        present: false,
        sha256: false,
        validity: false,
        pem: false,
    };

    /// Enables the header called `name`; returns false for an unknown name.
    pub fn enable(&mut self, name: &str) -> bool {
        let flag = match name {
            "serial-number" => &mut self.serial_number,
            "issuer" => &mut self.issuer,
            "subject" => &mut self.subject,
            "present" => &mut self.present,
            "sha256" => &mut self.sha256,
            "validity" => &mut self.validity,
            "pem" => &mut self.pem,
            _ => return false,
        };
        *flag = true;
        true
    }
}

impl Default for ForwardHeaders {
    fn default() -> Self {
        Self {
            serial_number: true,
            issuer: true,
            subject: true,
            present: true,
            sha256: true,
            validity: true,
            pem: true,
        }
    }
}
