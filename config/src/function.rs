//! Validation of `[site.mtls.connection_function]`: the JavaScript file (read, size-checked,
//! UTF-8), the key-value store it reads (a `[[revocation_store]]` by name) and its time limit.
//!
//! The source is compiled by the data plane (which embeds the JavaScript engine) when it
//! builds the TLS snapshot, so `portcullis check` and a reload report syntax errors too.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use crate::duration::parse_duration;
use crate::error::{Collector, ConfigError};
use crate::sources::Files;
use crate::stores::{known_stores, StoreNames};

/// Largest function source accepted, in bytes (CloudFront's limit).
pub const MAX_FUNCTION_BYTES: usize = 40_960;

/// Default execution time limit per call (CloudFront's limit).
pub const DEFAULT_TIME_LIMIT: Duration = Duration::from_millis(5);

/// Bounds of `time_limit`.
const MIN_TIME_LIMIT: Duration = Duration::from_micros(100);
const MAX_TIME_LIMIT: Duration = Duration::from_secs(1);

/// `[site.mtls.connection_function]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawConnectionFunction {
    pub(crate) file: String,
    pub(crate) kvs: Option<String>,
    pub(crate) time_limit: Option<String>,
}

/// A validated connection function: its source and how it runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionFunctionSettings {
    /// Resolved path of the JavaScript file (or its object URL, as a path).
    pub path: PathBuf,
    /// The key of its `file` setting (`site[0].mtls.connection_function.file`), for messages.
    pub file_key: String,
    /// The source text (UTF-8, at most [`MAX_FUNCTION_BYTES`]).
    pub source: Arc<str>,
    /// The `[[revocation_store]]` `cf.kvs()` reads, by name, if any.
    pub kvs: Option<String>,
    /// Execution time limit per call.
    pub time_limit: Duration,
}

impl ConnectionFunctionSettings {
    /// The file name (`revocation.js`), as the function is named in logs and stack traces.
    pub fn name(&self) -> String {
        self.path.file_name().map_or_else(
            || "function.js".to_owned(),
            |n| n.to_string_lossy().into_owned(),
        )
    }
}

/// Validates one site's connection function.
pub(crate) fn validate_connection_function(
    raw: &RawConnectionFunction,
    prefix: &str,
    files: &Files<'_>,
    stores: &StoreNames,
    c: &mut Collector<'_>,
) -> Option<ConnectionFunctionSettings> {
    let key = format!("{prefix}.mtls.connection_function");
    let file_key = format!("{key}.file");
    let location = files.resolve(&raw.file, &file_key, c);
    let path = location.as_ref().map(|l| l.to_path());
    let source = location.as_ref().and_then(|location| {
        let path = location.to_path();
        let path = &path;
        let bytes = files
            .read(location, &file_key)
            .map_err(|e| c.push(e))
            .ok()?;
        if bytes.len() > MAX_FUNCTION_BYTES {
            c.push(ConfigError::new(
                path,
                &file_key,
                format!(
                    "function is {} bytes long, more than the limit of {MAX_FUNCTION_BYTES} bytes",
                    bytes.len()
                ),
            ));
            return None;
        }
        match String::from_utf8(bytes.to_vec()) {
            Ok(text) => Some(Arc::<str>::from(text)),
            Err(e) => {
                c.push(ConfigError::new(
                    path,
                    &file_key,
                    format!(
                        "function is not valid UTF-8 (at byte {})",
                        e.utf8_error().valid_up_to()
                    ),
                ));
                None
            }
        }
    });
    let kvs = match &raw.kvs {
        None => Some(None),
        Some(name) => match stores.get(name) {
            Some(_) => Some(Some(name.clone())),
            None => {
                c.config(
                    format!("{key}.kvs"),
                    format!(
                        "unknown key-value store {name:?} ({})",
                        known_stores(stores)
                    ),
                );
                None
            }
        },
    };
    let time_limit = match &raw.time_limit {
        None => Some(DEFAULT_TIME_LIMIT),
        Some(text) => match parse_duration(text) {
            Ok(d) if (MIN_TIME_LIMIT..=MAX_TIME_LIMIT).contains(&d) => Some(d),
            Ok(_) => {
                c.config(
                    format!("{key}.time_limit"),
                    format!("must be in range 100us..=1s, got {text:?}"),
                );
                None
            }
            Err(reason) => {
                c.config(format!("{key}.time_limit"), reason);
                None
            }
        },
    };
    Some(ConnectionFunctionSettings {
        path: path?,
        file_key,
        source: source?,
        kvs: kvs?,
        time_limit: time_limit?,
    })
}
