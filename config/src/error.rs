//! Configuration error types and the collector used while validating.

use std::fmt;
use std::path::{Path, PathBuf};

/// Key used for problems that concern the whole document rather than one key
/// (for example an unreadable configuration file).
pub const DOCUMENT_KEY: &str = "(document)";

/// One configuration problem, located by file and dotted key path.
///
/// `file` is the configuration file for problems with the TOML itself, or the
/// referenced file (certificate, key, trust store) for problems with its
/// contents. `key` is a dotted path such as `site[1].mtls.trust_store`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {key}: {reason}", file.display())]
pub struct ConfigError {
    /// The file the problem was found in.
    pub file: PathBuf,
    /// Dotted key path of the offending setting, e.g. `server.listen[0]`.
    pub key: String,
    /// Human-readable description of the problem.
    pub reason: String,
}

impl ConfigError {
    /// Creates an error for `key` in `file`.
    pub fn new(
        file: impl Into<PathBuf>,
        key: impl Into<String>,
        reason: impl Into<String>,
    ) -> Self {
        Self {
            file: file.into(),
            key: key.into(),
            reason: reason.into(),
        }
    }
}

/// Every problem found while loading a configuration, in document order.
///
/// Displayed as one [`ConfigError`] per line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl ConfigErrors {
    /// Iterates over the individual errors.
    pub fn iter(&self) -> std::slice::Iter<'_, ConfigError> {
        self.0.iter()
    }

    /// Number of errors.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True when there are no errors (never the case for a returned error).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

impl From<ConfigError> for ConfigErrors {
    fn from(e: ConfigError) -> Self {
        Self(vec![e])
    }
}

impl IntoIterator for ConfigErrors {
    type Item = ConfigError;
    type IntoIter = std::vec::IntoIter<ConfigError>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

impl<'a> IntoIterator for &'a ConfigErrors {
    type Item = &'a ConfigError;
    type IntoIter = std::slice::Iter<'a, ConfigError>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

/// Accumulates problems so validation can report all of them at once.
#[derive(Debug)]
pub(crate) struct Collector<'a> {
    config_file: &'a Path,
    errors: Vec<ConfigError>,
    warnings: Vec<String>,
}

impl<'a> Collector<'a> {
    pub(crate) fn new(config_file: &'a Path) -> Self {
        Self {
            config_file,
            errors: Vec::new(),
            warnings: Vec::new(),
        }
    }

    /// Records a non-fatal problem, formatted like a [`ConfigError`].
    pub(crate) fn warn(&mut self, file: &Path, key: &str, reason: impl AsRef<str>) {
        self.warnings
            .push(format!("{}: {key}: {}", file.display(), reason.as_ref()));
    }

    /// Records a warning about a setting of the configuration file itself.
    pub(crate) fn warn_config(&mut self, key: &str, reason: impl AsRef<str>) {
        let file = self.config_file;
        self.warn(file, key, reason);
    }

    /// The warnings recorded so far, leaving none behind.
    pub(crate) fn take_warnings(&mut self) -> Vec<String> {
        std::mem::take(&mut self.warnings)
    }

    /// Records a problem with a key of the configuration file itself.
    pub(crate) fn config(&mut self, key: impl Into<String>, reason: impl Into<String>) {
        self.errors
            .push(ConfigError::new(self.config_file, key, reason));
    }

    /// Records an already-built error (e.g. one about a referenced file).
    pub(crate) fn push(&mut self, error: ConfigError) {
        self.errors.push(error);
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.errors.is_empty()
    }

    /// Number of errors recorded so far.
    pub(crate) fn error_count(&self) -> usize {
        self.errors.len()
    }

    pub(crate) fn into_errors(self) -> ConfigErrors {
        ConfigErrors(self.errors)
    }
}
