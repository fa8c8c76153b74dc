//! The admin API: a small HTTP/1.1 + JSON control interface for revocations, and its client.
//!
//! The admin server is not on the data path. It runs on its own std threads with blocking
//! I/O ([`server`]), listens on a loopback TCP address or on a Unix socket (mode `0600`), and
//! serves one request per connection:
//!
//! | method   | path                              | body              | success                                   |
//! |----------|-----------------------------------|-------------------|-------------------------------------------|
//! | `PUT`    | `/revocations/{store}/{serial}`   | value (UTF-8)     | `200 {"store":..,"key":..,"value":..}`    |
//! | `DELETE` | `/revocations/{store}/{serial}`   | none              | `200 {"deleted":true}` (`404` if absent)  |
//! | `GET`    | `/revocations/{store}/{serial}`   | none              | `200 {"key":..,"value":..}` (`404`)       |
//! | `POST`   | `/revocations/{store}/import`     | CloudFront JSON   | `200 {"imported":n}`                      |
//! | `GET`    | `/healthz`                        | none              | `200 {"status":"ok"}` (alive)             |
//! | `GET`    | `/readyz`                         | none              | `200 {"status":"ready"}`, `503` otherwise |
//! | `GET`    | `/metrics`                        | none              | `200` Prometheus text exposition          |
//! | `POST`   | `/reload`                         | none              | `200 {"generation":..,"summary":..}` (`400 {"errors":[..]}`) |
//! | `GET`    | `/status`                         | none              | `200 {"generation":..,"sources":[..],..}` |
//!
//! Errors are `{"error": message}` with the status of the [`AdminError`]. The server talks to
//! the revocation state only through the [`RevocationAdmin`] trait, so it can be tested (and
//! reused) without it. [`client`] is the blocking client used by `portcullis revoke` and
//! `portcullis unrevoke`.

pub mod client;
pub mod control;
mod routes;
pub mod server;
#[cfg(test)]
mod tests;

pub use client::{request, AdminTarget, ClientError};
pub use control::ControlAdmin;
pub use server::{start, AdminServer};

/// Where the admin server listens (from the configuration's `[admin]` section).
pub use portcullis_config::AdminListen;

/// The revocation operations the admin server exposes.
///
/// Implementations validate and normalise `store`, `serial` and `value` themselves; the
/// server passes the percent-decoded path segments and the request body through unchanged.
/// Every error becomes an HTTP response with the error's status.
pub trait RevocationAdmin: Send + Sync + 'static {
    /// Revokes `serial` in `store` with `value` (e.g. a reason; may be empty).
    fn put(&self, store: &str, serial: &str, value: &str) -> Result<(), AdminError>;
    /// Un-revokes `serial` in `store`; `Ok(false)` if it was not revoked.
    fn delete(&self, store: &str, serial: &str) -> Result<bool, AdminError>;
    /// The value stored for `serial` in `store`, if it is revoked.
    fn get(&self, store: &str, serial: &str) -> Result<Option<String>, AdminError>;
    /// Imports a CloudFront KeyValueStore JSON document into `store`; returns how many
    /// entries were imported.
    fn import(&self, store: &str, json: &[u8]) -> Result<usize, AdminError>;
    /// The reload and status side (`POST /reload`, `GET /status`), if the backend has one.
    fn control(&self) -> Option<&dyn ControlAdmin> {
        None
    }
}

/// What `/metrics` and `/readyz` report, set with [`AdminServer::observe`]. Until it is set
/// (the workers are starting), `/readyz` answers 503 and `/metrics` 503.
pub trait Observe: Send + Sync + 'static {
    /// The Prometheus text exposition.
    fn metrics(&self) -> String;
    /// Ok when the data plane serves traffic, else why not (e.g. `draining`).
    fn readiness(&self) -> Result<(), String>;
}

/// An error from a [`RevocationAdmin`] operation, carrying the HTTP status to answer with.
///
/// Conventionally `404` for an unknown store, `400` for an invalid serial, value or import
/// document, `409` for a read-only store (read from an object URL) and `500` for a
/// persistence failure. A status outside `400..=599` is answered
/// as `500`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message} (HTTP {status})")]
pub struct AdminError {
    /// The HTTP status code of the response.
    pub status: u16,
    /// The message sent as `{"error": message}`.
    pub message: String,
}

impl AdminError {
    /// An error with the given status and message.
    pub fn new(status: u16, message: impl Into<String>) -> AdminError {
        AdminError {
            status,
            message: message.into(),
        }
    }

    /// `400 Bad Request`: invalid serial, value or import document.
    pub fn bad_request(message: impl Into<String>) -> AdminError {
        AdminError::new(400, message)
    }

    /// `404 Not Found`: e.g. an unknown store.
    pub fn not_found(message: impl Into<String>) -> AdminError {
        AdminError::new(404, message)
    }

    /// `500 Internal Server Error`: e.g. a persistence failure.
    pub fn internal(message: impl Into<String>) -> AdminError {
        AdminError::new(500, message)
    }
}
