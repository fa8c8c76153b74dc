//! Errors of the runtime revocation mutations (admin API).

use std::path::PathBuf;

/// Why a revocation-store mutation or lookup was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum RevocationError {
    /// No revocation store of that name is configured.
    #[error("unknown revocation store {0:?}")]
    UnknownStore(String),
    /// The serial number is not a valid hexadecimal serial (or is too long).
    #[error("invalid serial number: {0}")]
    InvalidSerial(String),
    /// The value is empty or too long.
    #[error("invalid value: {0}")]
    InvalidValue(String),
    /// The import document is malformed; nothing was changed.
    #[error("invalid import: {}", .0.join("; "))]
    InvalidImport(Vec<String>),
    /// The store comes from an object URL: the object store is the source of truth, and the
    /// admin API only reads it.
    #[error("revocation store {store:?} is read-only here: it is read from {url}; change the object there")]
    ReadOnly {
        /// The store's name.
        store: String,
        /// The object URL it is read from.
        url: String,
    },
    /// The store file could not be written; memory was left unchanged.
    #[error("cannot write revocation store file {}: {source}", path.display())]
    Persist {
        /// The store file that was being replaced.
        path: PathBuf,
        /// The underlying I/O error.
        #[source]
        source: std::io::Error,
    },
}

impl RevocationError {
    /// The HTTP status an admin API should answer with: 404 for an unknown
    /// store, 400 for invalid input, 409 for a read-only store, 500 when
    /// persisting failed.
    pub fn http_status(&self) -> u16 {
        match self {
            Self::UnknownStore(_) => 404,
            Self::InvalidSerial(_) | Self::InvalidValue(_) | Self::InvalidImport(_) => 400,
            Self::ReadOnly { .. } => 409,
            Self::Persist { .. } => 500,
        }
    }
}
