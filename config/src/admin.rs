//! Validation of `[admin]`.

use std::net::SocketAddr;
use std::path::Path;

use crate::error::Collector;
use crate::model::RawAdmin;
use crate::snapshot::{AdminListen, AdminSettings};
use crate::validate::resolve_path;

/// Validates `[admin]`: exactly one of `listen` (a loopback IP address and
/// port) and `unix_socket` (a path relative to `base_dir`).
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
    Some(AdminSettings { listen })
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
