//! Validation of `[admin]`.

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;

use crate::error::{Collector, ConfigError};
use crate::model::RawAdmin;
use crate::snapshot::{AdminListen, AdminSettings, AdminToken};
use crate::validate::resolve_path;

/// Shortest accepted admin token.
const MIN_TOKEN_BYTES: usize = 16;
/// Longest accepted admin token file.
const MAX_TOKEN_BYTES: usize = 4096;

/// Validates `[admin]`: exactly one of `listen` (a loopback IP address and
/// port) and `unix_socket` (a path relative to `base_dir`), and the optional
/// `token_file`.
pub(crate) fn validate_admin(
    raw: &RawAdmin,
    base_dir: &Path,
    c: &mut Collector<'_>,
) -> Option<AdminSettings> {
    let listen = match (&raw.listen, &raw.unix_socket) {
        (Some(_), Some(_)) => {
            c.config(
                "admin",
                "set exactly one of admin.listen and admin.unix_socket, not both",
            );
            return None;
        }
        (None, None) => {
            c.config(
                "admin",
                "one of admin.listen or admin.unix_socket is required",
            );
            return None;
        }
        (Some(text), None) => AdminListen::Tcp(loopback_addr(text, c)?),
        (None, Some(path)) => {
            AdminListen::Unix(resolve_path(base_dir, path, "admin.unix_socket", c)?)
        }
    };
    let token = match &raw.token_file {
        Some(value) => {
            let path = resolve_path(base_dir, value, "admin.token_file", c)?;
            match load_token(&path) {
                Ok((token, loose)) => {
                    if loose {
                        c.warn(
                            &path,
                            "admin.token_file",
                            "readable by group or others: restrict it to the service user (chmod 600)",
                        );
                    }
                    Some(token)
                }
                Err(reason) => {
                    c.push(ConfigError::new(&path, "admin.token_file", reason));
                    return None;
                }
            }
        }
        None => {
            if matches!(listen, AdminListen::Tcp(_)) {
                c.warn_config(
                    "admin.listen",
                    "the TCP admin listener has no admin.token_file: any local process can change revocations; prefer admin.unix_socket or set a token",
                );
            }
            None
        }
    };
    Some(AdminSettings { listen, token })
}

/// Reads a token file: one token of visible ASCII characters (surrounding whitespace
/// ignored). Returns the token and whether the file is readable by group or others.
fn load_token(path: &Path) -> Result<(AdminToken, bool), String> {
    let meta = std::fs::metadata(path).map_err(|e| format!("cannot read token file: {e}"))?;
    if meta.len() > MAX_TOKEN_BYTES as u64 {
        return Err(format!("token file larger than {MAX_TOKEN_BYTES} bytes"));
    }
    let mut bytes = std::fs::read(path).map_err(|e| format!("cannot read token file: {e}"))?;
    let start = bytes
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(start, |i| i + 1);
    let token = bytes[start..end].to_vec();
    bytes.fill(0);
    let token = AdminToken::new(token);
    let len = end - start;
    if len < MIN_TOKEN_BYTES {
        return Err(format!(
            "the token must be at least {MIN_TOKEN_BYTES} characters (e.g. openssl rand -hex 32)"
        ));
    }
    if !token.is_visible_ascii() {
        return Err("the token must be one word of visible ASCII characters".to_owned());
    }
    Ok((token, meta.permissions().mode() & 0o077 != 0))
}

fn loopback_addr(text: &str, c: &mut Collector<'_>) -> Option<SocketAddr> {
    match text.trim().parse::<SocketAddr>() {
        Ok(addr) if addr.ip().is_loopback() => Some(addr),
        Ok(addr) => {
            c.config(
                "admin.listen",
                format!(
                    "{addr} is not a loopback address (the admin listener must use 127.0.0.0/8 or ::1, or admin.unix_socket)"
                ),
            );
            None
        }
        Err(e) => {
            c.config(
                "admin.listen",
                format!("invalid socket address {text:?} (expected a loopback IP:port, e.g. \"127.0.0.1:9901\" or \"[::1]:9901\"): {e}"),
            );
            None
        }
    }
}
