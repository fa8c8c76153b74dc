//! Raw serde types mirroring the TOML file exactly.
//!
//! Values that need validation with precise error keys (addresses, durations,
//! URLs, ranges) are kept as strings or wide integers here and checked in
//! [`crate::validate`], so that all problems can be collected at once.

use serde::Deserialize;

/// The whole configuration document.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawConfig {
    pub(crate) server: RawServer,
    pub(crate) admin: Option<RawAdmin>,
    #[serde(default)]
    pub(crate) revocation_store: Vec<RawRevocationStore>,
    #[serde(default)]
    pub(crate) site: Vec<RawSite>,
    pub(crate) sources: Option<crate::sources::RawSources>,
    pub(crate) logs: Option<crate::logs::RawLogs>,
    pub(crate) diagnostics: Option<crate::logs::RawDiagnostics>,
}

/// `[admin]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAdmin {
    pub(crate) listen: Option<String>,
    pub(crate) unix_socket: Option<String>,
    pub(crate) token_file: Option<String>,
}

/// One `[[revocation_store]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRevocationStore {
    pub(crate) name: String,
    pub(crate) file: String,
    pub(crate) format: Option<String>,
}

/// `[server]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawServer {
    pub(crate) listen: Vec<String>,
    pub(crate) workers: Option<i64>,
    pub(crate) cpu_affinity: Option<Vec<i64>>,
    #[serde(default)]
    pub(crate) timeouts: RawTimeouts,
    #[serde(default)]
    pub(crate) limits: RawLimits,
    #[serde(default)]
    pub(crate) http2: crate::http2::RawHttp2,
}

/// `[server.timeouts]`: humantime strings.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTimeouts {
    pub(crate) handshake: Option<String>,
    pub(crate) header_read: Option<String>,
    pub(crate) idle_keepalive: Option<String>,
    pub(crate) origin_connect: Option<String>,
    pub(crate) origin_response: Option<String>,
    pub(crate) send: Option<String>,
    pub(crate) request_body: Option<String>,
    pub(crate) drain: Option<String>,
}

/// `[server.limits]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawLimits {
    pub(crate) max_header_bytes: Option<i64>,
    pub(crate) max_header_count: Option<i64>,
    pub(crate) max_connections_per_worker: Option<i64>,
    pub(crate) max_connections_per_client_ip: Option<i64>,
    pub(crate) max_requests_in_flight_per_worker: Option<i64>,
    pub(crate) min_request_body_rate: Option<i64>,
}

/// One `[[site]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSite {
    pub(crate) name: String,
    #[serde(default)]
    pub(crate) server_names: Vec<String>,
    #[serde(default)]
    pub(crate) default: bool,
    pub(crate) certificate: String,
    pub(crate) private_key: String,
    pub(crate) origin: String,
    pub(crate) alpn: Option<Vec<String>>,
    pub(crate) mtls: RawMtls,
}

/// `[site.mtls]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawMtls {
    pub(crate) mode: String,
    pub(crate) trust_store: Option<String>,
    #[serde(default)]
    pub(crate) ignore_expiration: bool,
    #[serde(default)]
    pub(crate) advertise_ca_names: bool,
    pub(crate) max_chain_depth: Option<i64>,
    pub(crate) forward_headers: Option<Vec<String>>,
    pub(crate) revocation_store: Option<String>,
    #[serde(default)]
    pub(crate) crls: Vec<String>,
    pub(crate) crl_expired: Option<String>,
    pub(crate) revoke_open_connections: Option<bool>,
    pub(crate) connection_function: Option<crate::function::RawConnectionFunction>,
    pub(crate) signature_algorithms: Option<Vec<String>>,
}
