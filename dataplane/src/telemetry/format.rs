//! Rendering records as JSON lines, W3C extended or plain delimiter-separated text, with the
//! configured field selection.
//!
//! JSON: one object per line, the selected fields in order, absent values `null`,
//! `eventTimestamp` in epoch milliseconds. W3C: `#Version: 1.0` and `#Fields:` headers (at the
//! start of every file), values separated by a space, `eventTimestamp` in ISO 8601 (UTC, with
//! milliseconds), absent or empty values `-`, and spaces, `%`, `"`, control and non-ASCII
//! bytes percent-encoded. Plain: values separated by the delimiter, absent values `-`, control
//! bytes, `%` and the delimiter's characters percent-encoded.

use std::io::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

use portcullis_config::{LogFormat, LogStream};
use time::OffsetDateTime;

use super::record::Value;

/// Renders records of one log.
#[derive(Debug, Clone)]
pub struct Formatter {
    format: LogFormat,
    fields: Vec<usize>,
    names: &'static [&'static str],
    delimiter: String,
}

impl Formatter {
    /// A formatter for `stream`, whose field indices refer to `names`.
    pub fn new(stream: &LogStream, names: &'static [&'static str]) -> Self {
        Self {
            format: stream.format,
            fields: stream.fields.clone(),
            names,
            delimiter: stream.delimiter.clone(),
        }
    }

    /// The header every file (and standard output) starts with: W3C's `#Version` and
    /// `#Fields` lines; empty for the other formats.
    pub fn header(&self) -> Vec<u8> {
        if self.format != LogFormat::W3c {
            return Vec::new();
        }
        let mut out = b"#Version: 1.0\n#Fields:".to_vec();
        for &i in &self.fields {
            out.push(b' ');
            out.extend_from_slice(self.names[i].as_bytes());
        }
        out.push(b'\n');
        out
    }

    /// Appends one record (a line) whose values `value` gives by field index.
    pub fn write<'a>(&self, value: impl Fn(usize) -> Value<'a>, out: &mut Vec<u8>) {
        match self.format {
            LogFormat::Json => {
                out.push(b'{');
                for (n, &i) in self.fields.iter().enumerate() {
                    if n > 0 {
                        out.push(b',');
                    }
                    out.push(b'"');
                    out.extend_from_slice(self.names[i].as_bytes());
                    out.extend_from_slice(b"\":");
                    json_value(value(i), out);
                }
                out.push(b'}');
            }
            LogFormat::W3c | LogFormat::Plain => {
                let w3c = self.format == LogFormat::W3c;
                let separator = if w3c { " " } else { self.delimiter.as_str() };
                for (n, &i) in self.fields.iter().enumerate() {
                    if n > 0 {
                        out.extend_from_slice(separator.as_bytes());
                    }
                    text_value(value(i), w3c, &self.delimiter, out);
                }
            }
        }
        out.push(b'\n');
    }
}

fn epoch_millis(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn json_value(value: Value<'_>, out: &mut Vec<u8>) {
    // Writing to a Vec cannot fail.
    match value {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Str(s) => {
            let _ = serde_json::to_writer(&mut *out, s);
        }
        Value::Num(n) => {
            let _ = write!(out, "{n}");
        }
        Value::Millis(ms) => {
            let _ = write!(out, "{ms:.3}");
        }
        Value::Bool(b) => out.extend_from_slice(if b { b"true" } else { b"false" }),
        Value::Time(t) => {
            let _ = write!(out, "{}", epoch_millis(t));
        }
        Value::Ip(ip) => {
            let _ = write!(out, "\"{ip}\"");
        }
        Value::Addr(addr) => {
            let _ = write!(out, "\"{addr}\"");
        }
        Value::Id(id) => {
            out.push(b'"');
            out.extend_from_slice(&id.encode());
            out.push(b'"');
        }
        Value::RequestId(id, seq) => {
            out.push(b'"');
            out.extend_from_slice(&id.encode());
            let _ = write!(out, "-{seq}\"");
        }
    }
}

fn text_value(value: Value<'_>, w3c: bool, delimiter: &str, out: &mut Vec<u8>) {
    match value {
        Value::Null => out.push(b'-'),
        Value::Str("") => out.push(b'-'),
        Value::Str(s) => escape(s, w3c, delimiter, out),
        Value::Num(n) => {
            let _ = write!(out, "{n}");
        }
        Value::Millis(ms) => {
            let _ = write!(out, "{ms:.3}");
        }
        Value::Bool(b) => out.extend_from_slice(if b { b"true" } else { b"false" }),
        Value::Time(t) if w3c => iso8601(t, out),
        Value::Time(t) => {
            let _ = write!(out, "{}", epoch_millis(t));
        }
        Value::Ip(ip) => {
            let _ = write!(out, "{ip}");
        }
        Value::Addr(addr) => {
            let _ = write!(out, "{addr}");
        }
        Value::Id(id) => out.extend_from_slice(&id.encode()),
        Value::RequestId(id, seq) => {
            out.extend_from_slice(&id.encode());
            let _ = write!(out, "-{seq}");
        }
    }
}

/// Percent-encodes what would break the line or the field separation.
fn escape(s: &str, w3c: bool, delimiter: &str, out: &mut Vec<u8>) {
    for &b in s.as_bytes() {
        let encode = b < 0x20
            || b == 0x7f
            || b == b'%'
            || (w3c && (b == b' ' || b == b'"' || b >= 0x80))
            || (!w3c && delimiter.as_bytes().contains(&b));
        if encode {
            let _ = write!(out, "%{b:02X}");
        } else {
            out.push(b);
        }
    }
}

/// `2024-11-14T21:34:06.814Z`.
fn iso8601(t: SystemTime, out: &mut Vec<u8>) {
    let t = OffsetDateTime::from(t);
    let _ = write!(
        out,
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.millisecond()
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use portcullis_config::LogDestination;
    use std::time::Duration;

    const NAMES: &[&str] = &["eventTimestamp", "name", "count", "missing"];

    fn formatter(format: LogFormat, fields: Vec<usize>, delimiter: &str) -> Formatter {
        let stream = LogStream {
            format,
            destination: LogDestination::Stdout,
            fields,
            delimiter: delimiter.into(),
            rotate_bytes: None,
            rotate_keep: 1,
            log_close: false,
        };
        Formatter::new(&stream, NAMES)
    }

    fn values(i: usize) -> Value<'static> {
        match i {
            0 => Value::Time(UNIX_EPOCH + Duration::from_millis(1_731_620_046_814)),
            1 => Value::Str("C=US, O=Ex\"am|ple%, CN=é"),
            2 => Value::Num(7),
            _ => Value::Null,
        }
    }

    fn line(f: &Formatter) -> String {
        let mut out = Vec::new();
        f.write(values, &mut out);
        String::from_utf8(out).expect("utf8")
    }

    #[test]
    fn json_w3c_and_plain() {
        let json = line(&formatter(LogFormat::Json, vec![0, 1, 2, 3], "\t"));
        let parsed: serde_json::Value = serde_json::from_str(&json).expect("json");
        assert_eq!(parsed["eventTimestamp"], 1_731_620_046_814u64);
        assert_eq!(parsed["name"], "C=US, O=Ex\"am|ple%, CN=é");
        assert_eq!(parsed["count"], 7);
        assert!(parsed["missing"].is_null());
        assert!(
            json.starts_with("{\"eventTimestamp\":"),
            "fields keep their order"
        );

        let w3c = formatter(LogFormat::W3c, vec![0, 1, 3], "\t");
        assert_eq!(
            String::from_utf8(w3c.header()).expect("utf8"),
            "#Version: 1.0\n#Fields: eventTimestamp name missing\n"
        );
        assert_eq!(
            line(&w3c),
            "2024-11-14T21:34:06.814Z C=US,%20O=Ex%22am|ple%25,%20CN=%C3%A9 -\n"
        );

        let plain = formatter(LogFormat::Plain, vec![2, 1, 3], "|");
        assert!(plain.header().is_empty());
        assert_eq!(line(&plain), "7|C=US, O=Ex\"am%7Cple%25, CN=é|-\n");
    }
}
