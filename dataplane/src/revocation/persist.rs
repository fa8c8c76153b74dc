//! Atomic replacement of a file (revocation stores, cached remote objects): temporary file in
//! the same directory, fsync, rename over the target, fsync of the directory.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Distinguishes temporary files of concurrent writers in one process.
static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Replaces the file at `path` with `contents` so that a crash leaves either
/// the old or the new file, never a partial one.
pub(crate) fn write_atomically(path: &Path, contents: &[u8]) -> io::Result<()> {
    replace(path, contents, None)
}

/// Like [`write_atomically`], but the file is readable by its owner only (mode 0600), whatever
/// the file it replaces allowed: for copies that may hold private keys.
pub(crate) fn write_private_atomically(path: &Path, contents: &[u8]) -> io::Result<()> {
    replace(path, contents, Some(0o600))
}

/// Writes `contents` to a temporary sibling (created with `mode`, or given the permissions of
/// the file it replaces), then renames it over `path`.
fn replace(path: &Path, contents: &[u8], mode: Option<u32>) -> io::Result<()> {
    let dir = parent_dir(path);
    let temp = temp_path(path, &dir);
    let written = write_synced(&temp, contents, mode.unwrap_or(0o666))
        .and_then(|()| match mode {
            Some(_) => Ok(()),
            None => keep_permissions(path, &temp),
        })
        .and_then(|()| fs::rename(&temp, path));
    if let Err(error) = written {
        // Best effort: the temporary file is garbage whatever happened.
        let _ = fs::remove_file(&temp);
        return Err(error);
    }
    sync_dir(&dir)
}

/// The directory holding `path` (`.` for a bare file name).
fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// A hidden, unique sibling of `path` in `dir`.
fn temp_path(path: &Path, dir: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "store".to_owned());
    let unique = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
    dir.join(format!(".{name}.{}.{unique}.tmp", std::process::id()))
}

/// Creates `temp` (which must not exist) with `mode` (less the umask), writes `contents` and
/// fsyncs it.
fn write_synced(temp: &Path, contents: &[u8], mode: u32) -> io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(temp)?;
    file.write_all(contents)?;
    file.sync_all()
}

/// Gives `temp` the permissions of the file it replaces, if that exists.
fn keep_permissions(path: &Path, temp: &Path) -> io::Result<()> {
    match fs::metadata(path) {
        Ok(meta) => fs::set_permissions(temp, meta.permissions()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// Makes a rename in `dir` durable.
fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}
