//! Validation of `[logs]`, `[logs.connection]`, `[logs.access]` and `[diagnostics]`: the
//! connection and access logs (format, destination, field selection, rotation) and the format
//! of diagnostic output.
//!
//! The field names and their order are defined here ([`CONNECTION_LOG_FIELDS`],
//! [`ACCESS_LOG_FIELDS`]), so that a configuration naming an unknown field is refused with
//! the key at fault.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::Collector;
use crate::validate::resolve_path;

/// The connection log's fields: CloudFront's, in its order, then Portcullis's additions, then
/// those of the closing record (only with `log_close = true` unless selected explicitly).
pub const CONNECTION_LOG_FIELDS: &[&str] = &[
    "eventTimestamp",
    "connectionId",
    "connectionStatus",
    "clientIp",
    "clientPort",
    "serverIp",
    "distributionId",
    "distributionTenantId",
    "tlsProtocol",
    "tlsCipher",
    "tlsHandshakeDuration",
    "tlsSni",
    "clientLeafCertSerialNumber",
    "clientLeafCertSubject",
    "clientLeafCertIssuer",
    "clientLeafCertValidity",
    "connectionLogCustomData",
    "serverPort",
    "site",
    "alpn",
    "sessionResumed",
    "mtlsMode",
    "clientLeafCertSha256",
    "failureDetail",
    "connectionDuration",
    "bytesIn",
    "bytesOut",
    "requests",
];

/// How many of [`CONNECTION_LOG_FIELDS`] (from the end) only the closing record fills.
pub const CONNECTION_CLOSE_FIELDS: usize = 4;

/// The access log's fields, in order.
pub const ACCESS_LOG_FIELDS: &[&str] = &[
    "eventTimestamp",
    "connectionId",
    "requestId",
    "clientIp",
    "method",
    "host",
    "path",
    "protocol",
    "status",
    "bytesIn",
    "bytesOut",
    "requestDuration",
    "originAddress",
    "originDuration",
    "clientCertSerialNumber",
    "site",
];

/// Default size of each worker's log queue, in records.
pub const DEFAULT_QUEUE_CAPACITY: usize = 16384;
/// Rotated files kept by default when `rotate_bytes` is set.
pub const DEFAULT_ROTATE_KEEP: usize = 5;

/// `[logs]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawLogs {
    pub(crate) queue_capacity: Option<i64>,
    pub(crate) connection_id_header: Option<String>,
    pub(crate) connection: Option<RawLogStream>,
    pub(crate) access: Option<RawLogStream>,
}

/// `[logs.connection]` or `[logs.access]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawLogStream {
    pub(crate) format: Option<String>,
    pub(crate) path: String,
    pub(crate) fields: Option<Vec<String>>,
    pub(crate) delimiter: Option<String>,
    pub(crate) rotate_bytes: Option<i64>,
    pub(crate) rotate_keep: Option<i64>,
    pub(crate) log_close: Option<bool>,
}

/// `[diagnostics]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawDiagnostics {
    pub(crate) format: Option<String>,
}

/// The settings of `[logs]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogSettings {
    /// Records each worker may queue for the writer thread before it drops new ones.
    pub queue_capacity: usize,
    /// Request header that carries the connectionId to the origin (none by default).
    pub connection_id_header: Option<String>,
    /// The connection log, if configured.
    pub connection: Option<LogStream>,
    /// The access log, if configured.
    pub access: Option<LogStream>,
}

impl Default for LogSettings {
    fn default() -> Self {
        Self {
            queue_capacity: DEFAULT_QUEUE_CAPACITY,
            connection_id_header: None,
            connection: None,
            access: None,
        }
    }
}

/// Record format of a log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// One JSON object per line, fields in order; absent values are `null`.
    Json,
    /// W3C extended: `#Version`/`#Fields` headers, space-separated values, `-` when absent.
    W3c,
    /// Values separated by `delimiter`, `-` when absent, no header.
    Plain,
}

/// Where a log goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogDestination {
    /// Standard output (`path = "-"`).
    Stdout,
    /// A file, appended to, reopened on SIGUSR1.
    File(PathBuf),
}

/// One log: `[logs.connection]` or `[logs.access]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogStream {
    /// Record format.
    pub format: LogFormat,
    /// Destination.
    pub destination: LogDestination,
    /// Indices into the log's field list ([`CONNECTION_LOG_FIELDS`] or
    /// [`ACCESS_LOG_FIELDS`]), in output order.
    pub fields: Vec<usize>,
    /// Separator of the plain format (default a tab).
    pub delimiter: String,
    /// Rotate the file when it grows past this many bytes.
    pub rotate_bytes: Option<u64>,
    /// Rotated files kept (`path.1` ... `path.N`).
    pub rotate_keep: usize,
    /// Connection log only: write a closing record per connection.
    pub log_close: bool,
}

/// Format of diagnostic output (standard error).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DiagnosticsFormat {
    /// Human-readable lines.
    #[default]
    Human,
    /// One JSON object per event.
    Json,
}

/// The settings of `[diagnostics]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DiagnosticsSettings {
    /// Output format.
    pub format: DiagnosticsFormat,
}

/// Validates `[logs]`.
pub(crate) fn validate_logs(
    raw: Option<&RawLogs>,
    base_dir: &Path,
    c: &mut Collector<'_>,
) -> LogSettings {
    let Some(raw) = raw else {
        return LogSettings::default();
    };
    let queue_capacity = match raw.queue_capacity {
        None => DEFAULT_QUEUE_CAPACITY,
        Some(n) if (16..=1 << 22).contains(&n) => n as usize,
        Some(n) => {
            c.config(
                "logs.queue_capacity",
                format!("must be between 16 and 4194304 records, got {n}"),
            );
            DEFAULT_QUEUE_CAPACITY
        }
    };
    let connection_id_header = raw.connection_id_header.as_ref().and_then(|name| {
        if is_token(name) {
            Some(name.clone())
        } else {
            c.config(
                "logs.connection_id_header",
                format!("{name:?} is not a valid HTTP header name"),
            );
            None
        }
    });
    LogSettings {
        queue_capacity,
        connection_id_header,
        connection: raw.connection.as_ref().and_then(|stream| {
            validate_stream(
                stream,
                "logs.connection",
                CONNECTION_LOG_FIELDS,
                base_dir,
                c,
            )
        }),
        access: raw.access.as_ref().and_then(|stream| {
            validate_stream(stream, "logs.access", ACCESS_LOG_FIELDS, base_dir, c)
        }),
    }
}

fn validate_stream(
    raw: &RawLogStream,
    key: &str,
    names: &[&str],
    base_dir: &Path,
    c: &mut Collector<'_>,
) -> Option<LogStream> {
    let errors_before = c.error_count();
    let format = match raw.format.as_deref() {
        None | Some("json") => LogFormat::Json,
        Some("w3c") => LogFormat::W3c,
        Some("plain") => LogFormat::Plain,
        Some(other) => {
            c.config(
                format!("{key}.format"),
                format!("unknown format {other:?} (expected \"json\", \"w3c\" or \"plain\")"),
            );
            LogFormat::Json
        }
    };
    let destination = if raw.path == "-" {
        LogDestination::Stdout
    } else {
        resolve_path(base_dir, &raw.path, &format!("{key}.path"), c)
            .map_or(LogDestination::Stdout, LogDestination::File)
    };
    let is_connection = names.len() == CONNECTION_LOG_FIELDS.len();
    let log_close = raw.log_close.unwrap_or(false);
    if raw.log_close.is_some() && !is_connection {
        c.config(
            format!("{key}.log_close"),
            "only the connection log has closing records",
        );
    }
    let fields = match &raw.fields {
        None => {
            let count = if is_connection && !log_close {
                names.len() - CONNECTION_CLOSE_FIELDS
            } else {
                names.len()
            };
            (0..count).collect()
        }
        Some(selected) => {
            if selected.is_empty() {
                c.config(format!("{key}.fields"), "select at least one field");
            }
            let mut indices = Vec::with_capacity(selected.len());
            for (i, name) in selected.iter().enumerate() {
                match names.iter().position(|n| n == name) {
                    Some(_) if selected[..i].contains(name) => c.config(
                        format!("{key}.fields[{i}]"),
                        format!("field {name:?} is selected twice"),
                    ),
                    Some(index) => indices.push(index),
                    None => c.config(
                        format!("{key}.fields[{i}]"),
                        format!("unknown field {name:?} (known: {})", names.join(", ")),
                    ),
                }
            }
            indices
        }
    };
    let delimiter = match &raw.delimiter {
        None => "\t".to_owned(),
        Some(_) if format != LogFormat::Plain => {
            c.config(
                format!("{key}.delimiter"),
                "only the plain format has a delimiter",
            );
            "\t".to_owned()
        }
        Some(d) if d.is_empty() || d.contains(['\n', '\r', '%']) => {
            c.config(
                format!("{key}.delimiter"),
                "must be non-empty and contain no line break or '%'",
            );
            "\t".to_owned()
        }
        Some(d) => d.clone(),
    };
    if raw.rotate_bytes.is_some() && destination == LogDestination::Stdout {
        c.config(
            format!("{key}.rotate_bytes"),
            "standard output cannot be rotated",
        );
    }
    let rotate_bytes = match raw.rotate_bytes {
        None => None,
        Some(n) if n >= 4096 => Some(n as u64),
        Some(n) => {
            c.config(
                format!("{key}.rotate_bytes"),
                format!("must be at least 4096 bytes, got {n}"),
            );
            None
        }
    };
    let rotate_keep = match raw.rotate_keep {
        None => DEFAULT_ROTATE_KEEP,
        Some(n) if (1..=1000).contains(&n) => n as usize,
        Some(n) => {
            c.config(
                format!("{key}.rotate_keep"),
                format!("must be between 1 and 1000, got {n}"),
            );
            DEFAULT_ROTATE_KEEP
        }
    };
    (c.error_count() == errors_before).then_some(LogStream {
        format,
        destination,
        fields,
        delimiter,
        rotate_bytes,
        rotate_keep,
        log_close,
    })
}

/// Validates `[diagnostics]`.
pub(crate) fn validate_diagnostics(
    raw: Option<&RawDiagnostics>,
    c: &mut Collector<'_>,
) -> DiagnosticsSettings {
    let format = match raw.and_then(|d| d.format.as_deref()) {
        None | Some("human") => DiagnosticsFormat::Human,
        Some("json") => DiagnosticsFormat::Json,
        Some(other) => {
            c.config(
                "diagnostics.format",
                format!("unknown format {other:?} (expected \"human\" or \"json\")"),
            );
            DiagnosticsFormat::Human
        }
    };
    DiagnosticsSettings { format }
}

/// The `[diagnostics]` settings of a configuration file, read before the rest is validated
/// (diagnostics must be set up first to report the rest). Anything unreadable gives the
/// defaults; the full load reports the problem.
pub fn peek_diagnostics(path: &Path) -> DiagnosticsSettings {
    #[derive(Deserialize)]
    struct Peek {
        diagnostics: Option<RawDiagnostics>,
    }
    let Ok(text) = std::fs::read_to_string(path) else {
        return DiagnosticsSettings::default();
    };
    let Ok(peek) = toml::from_str::<Peek>(&text) else {
        return DiagnosticsSettings::default();
    };
    let mut c = Collector::new(path);
    validate_diagnostics(peek.diagnostics.as_ref(), &mut c)
}

/// An RFC 9110 token (a header name).
fn is_token(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn validate(toml_text: &str) -> (LogSettings, Vec<String>) {
        #[derive(Deserialize)]
        struct Doc {
            logs: RawLogs,
        }
        let doc: Doc = toml::from_str(toml_text).expect("toml");
        let file = Path::new("/etc/portcullis.toml");
        let mut c = Collector::new(file);
        let settings = validate_logs(Some(&doc.logs), Path::new("/var/log"), &mut c);
        let errors = c.into_errors().into_iter().map(|e| e.to_string()).collect();
        (settings, errors)
    }

    #[test]
    fn defaults_select_every_field_but_the_closing_ones() {
        let (logs, errors) = validate("[logs.connection]\npath = \"conn.log\"\n[logs.access]\npath = \"-\"\nformat = \"w3c\"\n");
        assert!(errors.is_empty(), "{errors:?}");
        let connection = logs.connection.expect("connection log");
        assert_eq!(connection.format, LogFormat::Json);
        assert_eq!(
            connection.destination,
            LogDestination::File(PathBuf::from("/var/log/conn.log"))
        );
        assert_eq!(
            connection.fields.len(),
            CONNECTION_LOG_FIELDS.len() - CONNECTION_CLOSE_FIELDS
        );
        assert!(!connection.log_close);
        let access = logs.access.expect("access log");
        assert_eq!(access.destination, LogDestination::Stdout);
        assert_eq!(access.format, LogFormat::W3c);
        assert_eq!(
            access.fields,
            (0..ACCESS_LOG_FIELDS.len()).collect::<Vec<_>>()
        );
        assert_eq!(logs.queue_capacity, DEFAULT_QUEUE_CAPACITY);
        assert_eq!(logs.connection_id_header, None);
    }

    #[test]
    fn selection_delimiter_close_and_header() {
        let (logs, errors) = validate(
            "[logs]\nconnection_id_header = \"X-Connection-Id\"\nqueue_capacity = 64\n[logs.connection]\npath = \"c.log\"\nformat = \"plain\"\ndelimiter = \"|\"\nfields = [\"connectionId\", \"connectionStatus\"]\nlog_close = true\nrotate_bytes = 1048576\nrotate_keep = 3\n",
        );
        assert!(errors.is_empty(), "{errors:?}");
        let connection = logs.connection.expect("connection log");
        assert_eq!(connection.fields, vec![1, 2]);
        assert_eq!(connection.delimiter, "|");
        assert!(connection.log_close);
        assert_eq!(connection.rotate_bytes, Some(1_048_576));
        assert_eq!(connection.rotate_keep, 3);
        assert_eq!(
            logs.connection_id_header.as_deref(),
            Some("X-Connection-Id")
        );
        assert_eq!(logs.queue_capacity, 64);
    }

    #[test]
    fn every_mistake_is_reported_with_its_key() {
        let (logs, errors) = validate(
            "[logs]\nconnection_id_header = \"bad header\"\nqueue_capacity = 1\n[logs.connection]\npath = \"-\"\nformat = \"xml\"\nfields = [\"connectionId\", \"nope\", \"connectionId\"]\ndelimiter = \",\"\nrotate_bytes = 10\n[logs.access]\npath = \"a.log\"\nlog_close = true\n",
        );
        let expected = [
            "/etc/portcullis.toml: logs.queue_capacity: must be between 16",
            "/etc/portcullis.toml: logs.connection_id_header: \"bad header\" is not a valid HTTP header name",
            "/etc/portcullis.toml: logs.connection.format: unknown format \"xml\"",
            "/etc/portcullis.toml: logs.connection.fields[1]: unknown field \"nope\"",
            "/etc/portcullis.toml: logs.connection.fields[2]: field \"connectionId\" is selected twice",
            "/etc/portcullis.toml: logs.connection.delimiter: only the plain format has a delimiter",
            "/etc/portcullis.toml: logs.connection.rotate_bytes: standard output cannot be rotated",
            "/etc/portcullis.toml: logs.connection.rotate_bytes: must be at least 4096 bytes",
            "/etc/portcullis.toml: logs.access.log_close: only the connection log has closing records",
        ];
        for want in expected {
            assert!(
                errors.iter().any(|e| e.starts_with(want)),
                "missing {want:?} in {errors:#?}"
            );
        }
        assert_eq!(errors.len(), expected.len(), "{errors:#?}");
        assert!(logs.connection.is_none() && logs.access.is_none());
    }

    #[test]
    fn diagnostics_format() {
        let mut c = Collector::new(Path::new("/etc/p.toml"));
        let raw = RawDiagnostics {
            format: Some("json".into()),
        };
        assert_eq!(
            validate_diagnostics(Some(&raw), &mut c).format,
            DiagnosticsFormat::Json
        );
        let raw = RawDiagnostics {
            format: Some("yaml".into()),
        };
        validate_diagnostics(Some(&raw), &mut c);
        let errors = c.into_errors();
        assert_eq!(errors.len(), 1);
        assert_eq!(errors.0[0].key, "diagnostics.format");
    }
}
