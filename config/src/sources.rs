//! Where the files a configuration names come from, and `[sources]`.
//!
//! Every file setting (`certificate`, `private_key`, `trust_store`, `crls`,
//! `revocation_store.file`) is either a path (relative to the configuration
//! file's directory) or an object URL: `s3://bucket/key`, `https://host/path`
//! or `http://host/path` ([`Location`]). The loader reads paths itself and
//! asks an [`ObjectFetcher`] for objects (the data plane's fetches them with
//! `object_store` on a control thread and keeps the last good copy in
//! `cache_dir`). Every read goes through [`Files`], which checks the optional
//! `[sources.sha256]` pin and records what was read ([`SourceUse`]) so that
//! the data plane knows which files to watch and which objects to poll.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::duration::parse_duration;
use crate::error::{Collector, ConfigError};

/// Default `sources.poll_interval`.
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(30);
/// Default `sources.cache_dir`, relative to the configuration file's directory.
pub const DEFAULT_CACHE_DIR: &str = "portcullis-cache";
/// Default `sources.timeout` (each remote request).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// Default `sources.max_object_bytes`.
pub const DEFAULT_MAX_OBJECT_BYTES: u64 = 64 * 1024 * 1024;
/// Largest accepted `sources.max_object_bytes`.
const MAX_MAX_OBJECT_BYTES: i64 = 1024 * 1024 * 1024;
/// Bounds of `sources.poll_interval` and `sources.timeout`.
const MIN_INTERVAL: Duration = Duration::from_millis(100);
const MAX_INTERVAL: Duration = Duration::from_secs(24 * 3600);

/// `[sources]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSources {
    poll_interval: Option<String>,
    cache_dir: Option<String>,
    s3_endpoint: Option<String>,
    s3_region: Option<String>,
    s3_allow_http: Option<bool>,
    timeout: Option<String>,
    max_object_bytes: Option<i64>,
    watch_files: Option<bool>,
    #[serde(default)]
    sha256: BTreeMap<String, String>,
}

/// Validated `[sources]`: how remote objects are fetched and files watched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceSettings {
    /// How often object URLs are polled (conditional requests; default 30s).
    pub poll_interval: Duration,
    /// Where the last good copy of every object is kept (default
    /// `portcullis-cache` next to the configuration file).
    pub cache_dir: PathBuf,
    /// Endpoint of an S3-compatible store (e.g. `http://127.0.0.1:9000`); AWS when absent.
    pub s3_endpoint: Option<String>,
    /// Region for S3 requests (default: `AWS_REGION` / `AWS_DEFAULT_REGION`, else us-east-1).
    pub s3_region: Option<String>,
    /// Whether an `http://` S3 endpoint is allowed (default false).
    pub s3_allow_http: bool,
    /// Time limit of each remote request (default 10s).
    pub timeout: Duration,
    /// Largest object accepted, in bytes (default 64 MiB); larger ones are refused.
    pub max_object_bytes: u64,
    /// Whether local files are watched and reloaded when they change (default true).
    pub watch_files: bool,
    /// `[sources.sha256]`: required SHA-256 digests of files or objects.
    pub sha256: BTreeMap<Location, [u8; 32]>,
}

impl SourceSettings {
    /// The defaults, with the cache under `base_dir`.
    pub fn defaults(base_dir: &Path) -> Self {
        Self {
            poll_interval: DEFAULT_POLL_INTERVAL,
            cache_dir: base_dir.join(DEFAULT_CACHE_DIR),
            s3_endpoint: None,
            s3_region: None,
            s3_allow_http: false,
            timeout: DEFAULT_TIMEOUT,
            max_object_bytes: DEFAULT_MAX_OBJECT_BYTES,
            watch_files: true,
            sha256: BTreeMap::new(),
        }
    }
}

/// The scheme of an object URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ObjectScheme {
    /// `s3://bucket/key` (AWS S3 or an S3-compatible store, see `s3_endpoint`).
    S3,
    /// `http://host[:port]/path`.
    Http,
    /// `https://host[:port]/path`.
    Https,
}

/// An object URL from the configuration: `s3://bucket/key`, `https://host/path` or
/// `http://host/path`. Query strings, fragments and credentials are refused.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectUrl {
    text: String,
    scheme: ObjectScheme,
    authority: String,
    key: String,
}

impl ObjectUrl {
    /// Parses `text` if it is a URL (contains `://`): `None` for a plain path, else the URL
    /// or why it is not usable.
    pub fn parse(text: &str) -> Option<Result<Self, String>> {
        let (scheme, rest) = text.split_once("://")?;
        Some(Self::parse_parts(text, scheme, rest))
    }

    fn parse_parts(text: &str, scheme: &str, rest: &str) -> Result<Self, String> {
        let scheme = match scheme.to_ascii_lowercase().as_str() {
            "s3" => ObjectScheme::S3,
            "http" => ObjectScheme::Http,
            "https" => ObjectScheme::Https,
            other => {
                return Err(format!(
                    "unsupported URL scheme {other:?} (expected s3://, https:// or http://)"
                ))
            }
        };
        if rest.contains(['?', '#']) {
            return Err("query strings and fragments are not supported in object URLs".into());
        }
        let (authority, key) = rest.split_once('/').unwrap_or((rest, ""));
        if authority.contains('@') {
            return Err(
                "credentials in object URLs are not supported (they would end up in logs); \
                 use the standard AWS credential chain"
                    .into(),
            );
        }
        if authority.is_empty() {
            return Err(match scheme {
                ObjectScheme::S3 => "missing bucket name (expected s3://bucket/key)".into(),
                _ => "missing host name".into(),
            });
        }
        if key.is_empty() || key.ends_with('/') {
            return Err("the URL must name an object, not a bucket or directory".into());
        }
        if key
            .split('/')
            .any(|segment| segment == ".." || segment == ".")
        {
            return Err("'.' and '..' segments are not supported in object URLs".into());
        }
        Ok(Self {
            text: text.to_owned(),
            scheme,
            authority: authority.to_owned(),
            key: key.to_owned(),
        })
    }

    /// The URL as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Its scheme.
    pub fn scheme(&self) -> ObjectScheme {
        self.scheme
    }

    /// The bucket (for `s3://`) or `host[:port]` (for `http(s)://`).
    pub fn authority(&self) -> &str {
        &self.authority
    }

    /// The object key (for `s3://`) or the path without its leading `/`.
    pub fn key(&self) -> &str {
        &self.key
    }
}

impl fmt::Display for ObjectUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// Where one configured file comes from.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Location {
    /// A local file (resolved against the configuration file's directory).
    File(PathBuf),
    /// An object URL.
    Object(ObjectUrl),
}

impl Location {
    /// The path, or the URL as a path (for `ConfigError::file` and messages).
    pub fn to_path(&self) -> PathBuf {
        match self {
            Self::File(path) => path.clone(),
            Self::Object(url) => PathBuf::from(url.as_str()),
        }
    }

    /// The object URL, if this is one.
    pub fn object_url(&self) -> Option<&ObjectUrl> {
        match self {
            Self::Object(url) => Some(url),
            Self::File(_) => None,
        }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::File(path) => write!(f, "{}", path.display()),
            Self::Object(url) => f.write_str(url.as_str()),
        }
    }
}

/// One file or object a configuration read: for status, file watching and polling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceUse {
    /// Where it came from.
    pub location: Location,
    /// The configuration keys that name it (e.g. `site[0].mtls.trust_store`).
    pub keys: Vec<String>,
    /// SHA-256 of the bytes read.
    pub sha256: [u8; 32],
    /// Size in bytes.
    pub len: usize,
}

/// Fetches object URLs for the loader.
pub trait ObjectFetcher {
    /// The bytes of the object at `url` under `settings`, or why they cannot be had.
    fn fetch(&self, settings: &SourceSettings, url: &ObjectUrl) -> Result<Arc<[u8]>, String>;
}

/// A fetcher that reads no object (plain [`crate::load`]): object URLs are read only by the
/// data plane's fetcher (`portcullis check` and `portcullis run`).
#[derive(Debug, Clone, Copy, Default)]
pub struct NoObjectFetcher;

impl ObjectFetcher for NoObjectFetcher {
    fn fetch(&self, _: &SourceSettings, url: &ObjectUrl) -> Result<Arc<[u8]>, String> {
        Err(format!(
            "{url} is an object URL; it can only be fetched by the data plane (portcullis check / run)"
        ))
    }
}

/// Validates `[sources]`.
pub(crate) fn validate_sources(
    raw: Option<&RawSources>,
    base_dir: &Path,
    c: &mut Collector<'_>,
) -> SourceSettings {
    let mut settings = SourceSettings::defaults(base_dir);
    let Some(raw) = raw else {
        return settings;
    };
    let mut interval = |name: &str, value: &Option<String>, default: Duration| {
        let Some(text) = value else {
            return default;
        };
        match parse_duration(text) {
            Ok(d) if (MIN_INTERVAL..=MAX_INTERVAL).contains(&d) => d,
            Ok(_) => {
                c.config(
                    format!("sources.{name}"),
                    "must be in range 100ms..=24h".to_owned(),
                );
                default
            }
            Err(reason) => {
                c.config(format!("sources.{name}"), reason);
                default
            }
        }
    };
    settings.poll_interval = interval("poll_interval", &raw.poll_interval, settings.poll_interval);
    settings.timeout = interval("timeout", &raw.timeout, settings.timeout);
    if let Some(dir) = &raw.cache_dir {
        if dir.trim().is_empty() {
            c.config("sources.cache_dir", "path must not be empty");
        } else {
            settings.cache_dir = base_dir.join(dir);
        }
    }
    settings.s3_allow_http = raw.s3_allow_http.unwrap_or(false);
    if let Some(endpoint) = &raw.s3_endpoint {
        let endpoint = endpoint.trim().trim_end_matches('/');
        let lower = endpoint.to_ascii_lowercase();
        if lower.starts_with("https://") && endpoint.len() > "https://".len() {
            settings.s3_endpoint = Some(endpoint.to_owned());
        } else if lower.starts_with("http://") && endpoint.len() > "http://".len() {
            if !settings.s3_allow_http {
                c.config(
                    "sources.s3_endpoint",
                    "an http:// endpoint needs s3_allow_http = true",
                );
            }
            settings.s3_endpoint = Some(endpoint.to_owned());
        } else {
            c.config(
                "sources.s3_endpoint",
                format!("expected an http:// or https:// URL, got {endpoint:?}"),
            );
        }
        if endpoint.contains('@') {
            c.config(
                "sources.s3_endpoint",
                "credentials in the endpoint URL are not supported; use the AWS credential chain",
            );
        }
    }
    if let Some(region) = &raw.s3_region {
        if region.trim().is_empty() {
            c.config("sources.s3_region", "must not be empty");
        } else {
            settings.s3_region = Some(region.trim().to_owned());
        }
    }
    if let Some(bytes) = raw.max_object_bytes {
        match u64::try_from(bytes) {
            Ok(n) if (1..=MAX_MAX_OBJECT_BYTES).contains(&bytes) => settings.max_object_bytes = n,
            _ => c.config(
                "sources.max_object_bytes",
                format!("must be in range 1..={MAX_MAX_OBJECT_BYTES}, got {bytes}"),
            ),
        }
    }
    settings.watch_files = raw.watch_files.unwrap_or(true);
    for (written, digest) in &raw.sha256 {
        let key = format!("sources.sha256.{written:?}");
        let Some(location) = resolve(base_dir, written, &key, c) else {
            continue;
        };
        match parse_sha256(digest) {
            Ok(pin) => {
                settings.sha256.insert(location, pin);
            }
            Err(reason) => c.config(key, reason),
        }
    }
    settings
}

/// Parses a hex SHA-256 digest (64 hex digits, any case).
fn parse_sha256(text: &str) -> Result<[u8; 32], String> {
    let mut pin = [0u8; 32];
    hex::decode_to_slice(text.trim(), &mut pin)
        .map_err(|e| format!("expected 64 hexadecimal digits (a SHA-256 digest): {e}"))?;
    Ok(pin)
}

/// Resolves a file setting: an object URL, or a path relative to `base_dir`.
pub(crate) fn resolve(
    base_dir: &Path,
    value: &str,
    key: &str,
    c: &mut Collector<'_>,
) -> Option<Location> {
    let value = value.trim();
    if value.is_empty() {
        c.config(key, "path must not be empty");
        return None;
    }
    match ObjectUrl::parse(value) {
        None => Some(Location::File(base_dir.join(value))),
        Some(Ok(url)) => Some(Location::Object(url)),
        Some(Err(reason)) => {
            c.config(key, format!("{value:?}: {reason}"));
            None
        }
    }
}

/// What one read produced, remembered so that every key naming the same file sees the same
/// bytes (and the same error) within one load.
type Read = Result<Arc<[u8]>, String>;

/// Reads every file of one load: paths from disk, objects through the fetcher; checks pins
/// and records what was read.
pub(crate) struct Files<'a> {
    base_dir: &'a Path,
    settings: &'a SourceSettings,
    fetcher: &'a dyn ObjectFetcher,
    reads: RefCell<BTreeMap<Location, (Read, Vec<String>)>>,
}

impl<'a> Files<'a> {
    /// A reader for files relative to `base_dir` under `settings`.
    pub(crate) fn new(
        base_dir: &'a Path,
        settings: &'a SourceSettings,
        fetcher: &'a dyn ObjectFetcher,
    ) -> Self {
        Self {
            base_dir,
            settings,
            fetcher,
            reads: RefCell::new(BTreeMap::new()),
        }
    }

    /// Resolves a file setting (see [`resolve`]).
    pub(crate) fn resolve(
        &self,
        value: &str,
        key: &str,
        c: &mut Collector<'_>,
    ) -> Option<Location> {
        resolve(self.base_dir, value, key, c)
    }

    /// The bytes at `location` (read once per load), checked against its pin; errors name the
    /// file or URL and `key`.
    pub(crate) fn read(&self, location: &Location, key: &str) -> Result<Arc<[u8]>, ConfigError> {
        let mut reads = self.reads.borrow_mut();
        let (read, keys) = reads
            .entry(location.clone())
            .or_insert_with(|| (self.read_checked(location), Vec::new()));
        if !keys.iter().any(|k| k == key) {
            keys.push(key.to_owned());
        }
        read.clone()
            .map_err(|reason| ConfigError::new(location.to_path(), key, reason))
    }

    fn read_checked(&self, location: &Location) -> Read {
        let bytes: Arc<[u8]> = match location {
            Location::File(path) => std::fs::read(path)
                .map_err(|e| format!("cannot read file: {e}"))?
                .into(),
            Location::Object(url) => self
                .fetcher
                .fetch(self.settings, url)
                .map_err(|e| format!("cannot fetch object: {e}"))?,
        };
        if let Some(pin) = self.settings.sha256.get(location) {
            let digest: [u8; 32] = Sha256::digest(&bytes).into();
            if digest != *pin {
                return Err(format!(
                    "SHA-256 is {}, but [sources.sha256] pins {}; refused",
                    hex::encode(digest),
                    hex::encode(pin)
                ));
            }
        }
        Ok(bytes)
    }

    /// What was read successfully, in location order; warns about pins no setting uses.
    pub(crate) fn into_uses(self, c: &mut Collector<'_>, config_file: &Path) -> Vec<SourceUse> {
        let reads = self.reads.into_inner();
        for pinned in self.settings.sha256.keys() {
            if !reads.contains_key(pinned) {
                c.warn(
                    config_file,
                    "sources.sha256",
                    format!("the pin for {pinned} matches no file or object of this configuration"),
                );
            }
        }
        reads
            .into_iter()
            .filter_map(|(location, (read, keys))| {
                let bytes = read.ok()?;
                Some(SourceUse {
                    location,
                    keys,
                    sha256: Sha256::digest(&bytes).into(),
                    len: bytes.len(),
                })
            })
            .collect()
    }
}

/// The SHA-256 of `bytes` (for digests compared with [`SourceUse::sha256`]).
pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_urls_parse_or_say_why_not() {
        let url = ObjectUrl::parse("s3://fleet/trust/bundle.pem")
            .expect("a URL")
            .expect("valid");
        assert_eq!(url.scheme(), ObjectScheme::S3);
        assert_eq!(url.authority(), "fleet");
        assert_eq!(url.key(), "trust/bundle.pem");
        let url = ObjectUrl::parse("https://cdn.example.com:8443/a/b.crl")
            .expect("a URL")
            .expect("valid");
        assert_eq!(url.scheme(), ObjectScheme::Https);
        assert_eq!(url.authority(), "cdn.example.com:8443");
        assert_eq!(url.key(), "a/b.crl");
        assert!(ObjectUrl::parse("certs/ca.pem").is_none());
        for (bad, why) in [
            ("ftp://host/x", "unsupported URL scheme"),
            ("s3:///key", "missing bucket"),
            ("s3://bucket", "must name an object"),
            ("s3://bucket/dir/", "must name an object"),
            ("https://user:pw@host/x", "credentials"),
            ("https://host/x?versionId=1", "query strings"),
            ("s3://bucket/a/../b", "'..'"),
        ] {
            let reason = ObjectUrl::parse(bad).expect("a URL").expect_err("refused");
            assert!(reason.contains(why), "{bad}: {reason}");
        }
    }

    #[test]
    fn pins_parse_as_hex_digests() {
        let digest = sha256(b"abc");
        assert_eq!(parse_sha256(&hex::encode_upper(digest)), Ok(digest));
        assert!(parse_sha256("abcd").is_err());
        assert!(parse_sha256(&"zz".repeat(32)).is_err());
    }
}
