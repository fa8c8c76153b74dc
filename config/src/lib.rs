//! Typed configuration for Portcullis.
//!
//! [`load`] reads a TOML file, validates every setting (collecting *all*
//! problems into [`ConfigErrors`]), loads the referenced certificates, keys
//! and trust stores, resolves origins, and returns an immutable [`Snapshot`]
//! for the data plane. [`parse_str`] does the same for in-memory TOML.
//!
//! [`revocation`] holds the revocation store formats (CloudFront
//! KeyValueStore import JSON and plain text) and the CRL snapshot types.
//! [`sources`] says where each file comes from (a path or an object URL),
//! holds `[sources]` and records what a load read.

#![warn(missing_docs)]

mod admin;
mod crl;
mod duration;
mod error;
mod function;
mod http2;
mod load;
pub mod logs;
mod machine;
mod model;
mod name;
mod origin;
mod pem_blocks;
pub mod revocation;
mod sigalgs;
mod snapshot;
mod sni;
pub mod sources;
mod stores;
mod syntax;
mod validate;

#[cfg(test)]
mod tests;

use std::path::Path;

pub use duration::parse_duration;
pub use error::{ConfigError, ConfigErrors, DOCUMENT_KEY};
pub use function::{ConnectionFunctionSettings, DEFAULT_TIME_LIMIT, MAX_FUNCTION_BYTES};
pub use http2::{AppProtocol, Http2Settings, DEFAULT_ALPN};
pub use logs::{
    peek_diagnostics, DiagnosticsFormat, DiagnosticsSettings, LogDestination, LogFormat,
    LogSettings, LogStream, ACCESS_LOG_FIELDS, CONNECTION_LOG_FIELDS,
};
pub use name::canonical_name;
pub use revocation::{
    normalize_serial, parse_import_json, parse_serial_lines, serial_from_bytes, to_import_json,
    to_serial_lines, CrlExpiredPolicy, CrlSnapshot, RevocationStoreSnapshot, StoreFormat,
    MAX_KEY_BYTES, MAX_VALUE_BYTES,
};
pub use sigalgs::{signature_scheme, signature_scheme_name, DEFAULT_SIGNATURE_ALGORITHMS};
pub use snapshot::{
    AdminListen, AdminSettings, AdminToken, ForwardHeaders, Limits, MtlsMode, MtlsSettings, Origin,
    PrivateKeyPem, ServerSettings, SiteSnapshot, Snapshot, Timeouts, TrustAnchor,
};
pub use sources::{
    Location, NoObjectFetcher, ObjectFetcher, ObjectScheme, ObjectUrl, SourceSettings, SourceUse,
};

/// Reads, parses and validates the configuration file at `path`, loading all
/// referenced files (relative paths are relative to the file's directory).
/// Object URLs are refused (see [`load_with`]).
pub fn load(path: &Path) -> Result<Snapshot, ConfigErrors> {
    load_with(path, &NoObjectFetcher)
}

/// Like [`load`], with object URLs fetched by `fetcher`.
pub fn load_with(path: &Path, fetcher: &dyn ObjectFetcher) -> Result<Snapshot, ConfigErrors> {
    parse_str_with(&read_config(path)?, path, fetcher)
}

/// Reads the configuration file's text.
pub fn read_config(path: &Path) -> Result<String, ConfigErrors> {
    std::fs::read_to_string(path).map_err(|e| {
        ConfigError::new(
            path,
            DOCUMENT_KEY,
            format!("cannot read configuration file: {e}"),
        )
        .into()
    })
}

/// Like [`load`], but for TOML text already in memory; `path` is used in
/// error messages and as the base for relative file paths.
pub fn parse_str(toml: &str, path: &Path) -> Result<Snapshot, ConfigErrors> {
    parse_str_with(toml, path, &NoObjectFetcher)
}

/// Like [`parse_str`], with object URLs fetched by `fetcher`.
pub fn parse_str_with(
    toml: &str,
    path: &Path,
    fetcher: &dyn ObjectFetcher,
) -> Result<Snapshot, ConfigErrors> {
    let raw = syntax::parse_document(toml, path)?;
    validate::build_snapshot(raw, path, fetcher)
}
