//! The last good copy of every remote object, in `sources.cache_dir`, so that a restart works
//! while the object store is unreachable.
//!
//! One file per object URL, named by the SHA-256 of the URL: a one-line JSON header (URL,
//! ETag, SHA-256 of the body, when it was fetched) then the body. Written atomically with mode
//! 0600 (objects may be private keys) in a directory created with mode 0700; a copy whose
//! header does not match its URL or body is refused.

use std::fs;
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use portcullis_config::sources::sha256;
use portcullis_config::ObjectUrl;
use serde_json::{json, Value};

use crate::revocation::persist::write_private_atomically;

/// Largest header accepted when reading a cached copy.
const MAX_HEADER_BYTES: u64 = 64 * 1024;

/// A copy of an object, fetched or read from the cache.
#[derive(Debug, Clone)]
pub(crate) struct Copy {
    /// The object's bytes.
    pub(crate) bytes: Arc<[u8]>,
    /// Its ETag, if the store sent one.
    pub(crate) etag: Option<String>,
    /// SHA-256 of `bytes`.
    pub(crate) sha256: [u8; 32],
    /// When it was fetched from the store.
    pub(crate) fetched_at: SystemTime,
}

impl Copy {
    /// A copy of `bytes` fetched now.
    pub(crate) fn fetched(bytes: Arc<[u8]>, etag: Option<String>) -> Self {
        Self {
            sha256: sha256(&bytes),
            bytes,
            etag,
            fetched_at: SystemTime::now(),
        }
    }
}

/// The cache file of `url` in `dir`.
pub(crate) fn path_of(dir: &Path, url: &ObjectUrl) -> PathBuf {
    dir.join(format!(
        "{}.object",
        hex::encode(sha256(url.as_str().as_bytes()))
    ))
}

/// Writes `copy` of `url` to `dir` (created if needed) atomically.
pub(crate) fn write(dir: &Path, url: &ObjectUrl, copy: &Copy) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt as _;
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    let fetched_at = copy
        .fetched_at
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    let header = json!({
        "url": url.as_str(),
        "etag": copy.etag,
        "sha256": hex::encode(copy.sha256),
        "fetched_at": fetched_at,
    });
    let mut contents = serde_json::to_vec(&header).map_err(std::io::Error::other)?;
    contents.push(b'\n');
    contents.extend_from_slice(&copy.bytes);
    write_private_atomically(&path_of(dir, url), &contents)
}

/// Reads the cached copy of `url` from `dir`, refusing a body larger than `max_bytes` or one
/// that does not match its header.
pub(crate) fn read(dir: &Path, url: &ObjectUrl, max_bytes: u64) -> Result<Copy, String> {
    let path = path_of(dir, url);
    let file = fs::File::open(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut contents = Vec::new();
    file.take(max_bytes + MAX_HEADER_BYTES + 1)
        .read_to_end(&mut contents)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let bad = |why: &str| format!("{}: not a valid cached copy ({why})", path.display());
    let split = contents
        .iter()
        .position(|&b| b == b'\n')
        .ok_or_else(|| bad("no header"))?;
    let header: Value = serde_json::from_slice(&contents[..split]).map_err(|_| bad("header"))?;
    let body = &contents[split + 1..];
    if body.len() as u64 > max_bytes {
        return Err(bad("larger than sources.max_object_bytes"));
    }
    if header.get("url").and_then(Value::as_str) != Some(url.as_str()) {
        return Err(bad("it is another URL's"));
    }
    let digest = sha256(body);
    if header.get("sha256").and_then(Value::as_str) != Some(hex::encode(digest).as_str()) {
        return Err(bad("its body does not match its SHA-256"));
    }
    let fetched_at = header
        .get("fetched_at")
        .and_then(Value::as_u64)
        .map_or(UNIX_EPOCH, |secs| UNIX_EPOCH + Duration::from_secs(secs));
    Ok(Copy {
        bytes: body.into(),
        etag: header
            .get("etag")
            .and_then(Value::as_str)
            .map(str::to_owned),
        sha256: digest,
        fetched_at,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_copy_round_trips_privately_and_a_tampered_one_is_refused() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().expect("dir");
        let cache = dir.path().join("cache");
        let url = ObjectUrl::parse("s3://fleet/bundle.pem")
            .expect("url")
            .expect("valid");
        let copy = Copy::fetched(Arc::from(&b"-----BEGIN\nline\n"[..]), Some("\"e1\"".into()));
        write(&cache, &url, &copy).expect("write");
        let mode = |p: &Path| fs::metadata(p).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode(&cache), 0o700);
        assert_eq!(mode(&path_of(&cache, &url)), 0o600);
        let back = read(&cache, &url, 1024).expect("read");
        assert_eq!(&*back.bytes, &*copy.bytes);
        assert_eq!(back.etag.as_deref(), Some("\"e1\""));
        assert_eq!(back.sha256, copy.sha256);
        assert!(read(&cache, &url, 4).is_err(), "larger than the cap");
        let other = ObjectUrl::parse("s3://fleet/other.pem")
            .expect("url")
            .expect("valid");
        assert!(read(&cache, &other, 1024).is_err(), "no copy");
        let path = path_of(&cache, &url);
        let mut tampered = fs::read(&path).expect("read");
        let last = tampered.len() - 2;
        tampered[last] ^= 1;
        fs::write(&path, tampered).expect("write");
        assert!(read(&cache, &url, 1024)
            .expect_err("tampered")
            .contains("does not match"));
    }
}
