//! A loaded configuration with one site and a large revocation store, built
//! in a temporary directory.

use std::fmt::Write as _;
use std::fs;
use std::io;
use std::path::Path;
use std::sync::Arc;

use portcullis::demo::demo_config;
use portcullis::pki::DemoPki;
use portcullis_config::revocation::{RevocationStoreSnapshot, StoreFormat};
use portcullis_config::Snapshot;

/// Why a fixture could not be built.
#[derive(Debug, thiserror::Error)]
pub enum FixtureError {
    /// Generating the demo certificates failed.
    #[error("generating certificates: {0}")]
    Pki(#[from] portcullis::pki::PkiError),
    /// Reading or writing a file failed.
    #[error("file I/O: {0}")]
    Io(#[from] io::Error),
    /// The configuration did not load.
    #[error("configuration: {0}")]
    Config(#[from] portcullis_config::ConfigErrors),
    /// The generated store file did not parse.
    #[error("store file: {}", .0.join("; "))]
    Store(Vec<String>),
}

/// The `i`-th generated serial: 16 big-endian bytes, first byte non-zero.
pub fn serial(i: u64) -> [u8; 16] {
    let mut bytes = [0u8; 16];
    bytes[0] = 0x40;
    bytes[8..].copy_from_slice(&i.wrapping_mul(0x9e37_79b9_7f4a_7c15).to_be_bytes());
    bytes
}

/// Writes a JSON store file with `count` revoked serials ([`serial`]`(0..count)`).
pub fn write_store(path: &Path, count: u64) -> io::Result<()> {
    let mut text = String::with_capacity(usize::try_from(count).unwrap_or(0) * 64);
    text.push_str("{\"data\":[");
    for i in 0..count {
        if i > 0 {
            text.push(',');
        }
        text.push_str("{\"key\":\"");
        for byte in serial(i) {
            // Writing to a String cannot fail.
            let _ = write!(text, "{byte:02x}");
        }
        text.push_str("\",\"value\":\"revoked by benchmark\"}");
    }
    text.push_str("]}\n");
    fs::write(path, text)
}

/// A configuration loaded from `dir` (demo PKI, one site) whose site uses
/// the JSON store at `store` as `main`, read the way the loader reads it.
pub fn config_with_store(dir: &Path, store: &Path) -> Result<Snapshot, FixtureError> {
    DemoPki::generate(dir)?;
    let config_path = dir.join("portcullis.toml");
    let unused: std::net::SocketAddr = ([127, 0, 0, 1], 9).into();
    fs::write(&config_path, demo_config(unused, unused, 1))?;
    let mut config = portcullis_config::load(&config_path)?;
    let format = StoreFormat::Json;
    let entries = format
        .parse(&fs::read(store)?)
        .map_err(FixtureError::Store)?;
    config.revocation_stores = vec![Arc::new(RevocationStoreSnapshot {
        index: 0,
        name: "main".to_owned(),
        path: store.to_path_buf(),
        object_url: None,
        format,
        entries,
    })];
    let mut site = (*config.sites[0]).clone();
    site.mtls.revocation_store = Some("main".to_owned());
    config.sites[0] = Arc::new(site);
    Ok(config)
}

/// What a demo site adds to run the announcement's connection function on the store
/// `viewers.json` (see [`demo_snapshot`]).
pub const FUNCTION_MTLS: &str =
    "connection_function = { file = \"revocation.js\", kvs = \"viewers\" }\n\n\
     [[revocation_store]]\nname = \"viewers\"\nfile = \"viewers.json\"\n";

/// The demo configuration in `dir` (its demo PKI must be there) with `mtls_extra` appended
/// to the site's `[site.mtls]`, loaded as `portcullis run` loads it. With [`FUNCTION_MTLS`],
/// the announcement's function and a store of `store_size` serials ([`serial`]`(0..)`) are
/// written first.
pub fn demo_snapshot(
    dir: &Path,
    mtls_extra: &str,
    store_size: u64,
) -> Result<portcullis::tls::TlsSnapshot, FixtureError> {
    if mtls_extra.contains("viewers.json") {
        write_store(&dir.join("viewers.json"), store_size)?;
        fs::write(
            dir.join("revocation.js"),
            portcullis::demo::REVOCATION_FUNCTION,
        )?;
    }
    let config_path = dir.join("portcullis.toml");
    let unused: std::net::SocketAddr = ([127, 0, 0, 1], 9).into();
    fs::write(
        &config_path,
        format!("{}{mtls_extra}", demo_config(unused, unused, 1)),
    )?;
    Ok(portcullis::run::load(&config_path)?.0)
}
