//! Certificate revocation: revocation store files and CRL snapshots.
//!
//! A revocation store maps certificate serial numbers (keys) to free-form
//! values. It is read from either the CloudFront KeyValueStore import format
//! (`{"data":[{"key":"…","value":"…"}]}`, [`StoreFormat::Json`]) or a plain
//! text file with one serial per line ([`StoreFormat::Text`]).
//!
//! Serial numbers are compared in a normal form: lowercase hexadecimal, no
//! `:` separators, no leading zeros (`"0"` for zero); see
//! [`normalize_serial`] and [`serial_from_bytes`].

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::time::SystemTime;

use serde_json::{Map, Value};

/// Maximum length of a store key in bytes, as written (CloudFront limit).
pub const MAX_KEY_BYTES: usize = 512;

/// Maximum length of a store value in bytes of UTF-8 (CloudFront limit).
pub const MAX_VALUE_BYTES: usize = 1024;

/// Normalises a hexadecimal serial number.
///
/// Accepts hex digits in any case with optional `:` separators between
/// non-empty groups and optional leading zeros; returns lowercase hex without
/// separators or leading zeros (`"0"` for zero). `"00:0A:bC"` becomes
/// `"abc"`. Fails with a reason for empty input, a `0x` prefix, any other
/// non-hex character, or input longer than [`MAX_KEY_BYTES`].
pub fn normalize_serial(input: &str) -> Result<String, String> {
    if input.is_empty() {
        return Err("serial number is empty".to_owned());
    }
    if input.len() > MAX_KEY_BYTES {
        return Err(format!(
            "serial number is {} bytes long, more than the limit of {MAX_KEY_BYTES} bytes",
            input.len()
        ));
    }
    let not_hex =
        |detail: String| format!("{input:?} is not a hexadecimal serial number ({detail})");
    let mut digits = String::with_capacity(input.len());
    for group in input.split(':') {
        if group.is_empty() {
            return Err(not_hex("empty group between ':' separators".to_owned()));
        }
        if let Some(bad) = group.chars().find(|c| !c.is_ascii_hexdigit()) {
            return Err(not_hex(format!("unexpected character {bad:?}")));
        }
        digits.extend(group.chars().map(|c| c.to_ascii_lowercase()));
    }
    let trimmed = digits.trim_start_matches('0');
    Ok(if trimmed.is_empty() {
        "0".to_owned()
    } else {
        trimmed.to_owned()
    })
}

/// The normal form of a serial number given as big-endian magnitude bytes
/// (for example a certificate's raw DER serial); leading zero bytes are
/// ignored, and no bytes at all give `"0"`.
pub fn serial_from_bytes(magnitude_be: &[u8]) -> String {
    let mut hex = String::with_capacity(magnitude_be.len() * 2);
    for byte in magnitude_be {
        hex.push_str(&format!("{byte:02x}"));
    }
    let trimmed = hex.trim_start_matches('0');
    if trimmed.is_empty() {
        "0".to_owned()
    } else {
        trimmed.to_owned()
    }
}

/// Checks a value against [`MAX_VALUE_BYTES`].
fn check_value(value: &str) -> Result<(), String> {
    if value.len() > MAX_VALUE_BYTES {
        Err(format!(
            "value is {} bytes long, more than the limit of {MAX_VALUE_BYTES} bytes",
            value.len()
        ))
    } else {
        Ok(())
    }
}

/// Deduplicates (last occurrence wins) and sorts entries by key.
fn dedup_sorted(entries: impl IntoIterator<Item = (String, String)>) -> Vec<(String, String)> {
    entries
        .into_iter()
        .collect::<BTreeMap<String, String>>()
        .into_iter()
        .collect()
}

/// `bytes` without a leading UTF-8 byte order mark.
fn strip_bom(bytes: &[u8]) -> &[u8] {
    bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes)
}

/// Parses the CloudFront KeyValueStore import format,
/// `{"data":[{"key":"…","value":"…"}, …]}`.
///
/// An empty (or whitespace-only) input is an empty store. Keys are
/// normalised with [`normalize_serial`]; values must be strings of at most
/// [`MAX_VALUE_BYTES`]. Returns entries sorted by key with duplicates
/// removed (the last occurrence wins), or every problem found, each
/// prefixed with its location, e.g. `data[3].key: "xyz" is not a
/// hexadecimal serial number (…)`.
pub fn parse_import_json(bytes: &[u8]) -> Result<Vec<(String, String)>, Vec<String>> {
    let bytes = strip_bom(bytes);
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(Vec::new());
    }
    let document: Value =
        serde_json::from_slice(bytes).map_err(|e| vec![format!("invalid JSON: {e}")])?;
    let Value::Object(top) = document else {
        return Err(vec![
            "expected a JSON object of the form {\"data\": [...]}".to_owned()
        ]);
    };
    let mut errors = Vec::new();
    for name in top.keys().filter(|k| k.as_str() != "data") {
        errors.push(format!("unknown field {name:?} (expected only \"data\")"));
    }
    let items = match top.get("data") {
        Some(Value::Array(items)) => items.as_slice(),
        Some(_) => {
            errors.push("data: expected an array".to_owned());
            &[]
        }
        None => {
            errors.push("missing field \"data\"".to_owned());
            &[]
        }
    };
    let mut entries = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let Value::Object(fields) = item else {
            errors.push(format!(
                "data[{i}]: expected an object with \"key\" and \"value\""
            ));
            continue;
        };
        for name in fields
            .keys()
            .filter(|k| k.as_str() != "key" && k.as_str() != "value")
        {
            errors.push(format!(
                "data[{i}]: unknown field {name:?} (expected \"key\" and \"value\")"
            ));
        }
        let key = string_field(fields, i, "key", &mut errors).and_then(|k| {
            normalize_serial(k)
                .map_err(|r| errors.push(format!("data[{i}].key: {r}")))
                .ok()
        });
        let value = string_field(fields, i, "value", &mut errors).and_then(|v| {
            check_value(v)
                .map_err(|r| errors.push(format!("data[{i}].value: {r}")))
                .ok()
                .map(|()| v.to_owned())
        });
        if let (Some(key), Some(value)) = (key, value) {
            entries.push((key, value));
        }
    }
    if errors.is_empty() {
        Ok(dedup_sorted(entries))
    } else {
        Err(errors)
    }
}

/// The string field `name` of entry `index`, recording an error if it is
/// missing or not a string.
fn string_field<'v>(
    fields: &'v Map<String, Value>,
    index: usize,
    name: &str,
    errors: &mut Vec<String>,
) -> Option<&'v str> {
    match fields.get(name) {
        Some(Value::String(s)) => Some(s),
        Some(_) => {
            errors.push(format!("data[{index}].{name}: expected a string"));
            None
        }
        None => {
            errors.push(format!("data[{index}]: missing field {name:?}"));
            None
        }
    }
}

/// Parses one text line (without its line break); `None` for a blank or
/// comment line.
fn parse_line(line: &str) -> Option<Result<(String, String), String>> {
    let line = line.strip_suffix('\r').unwrap_or(line).trim_start();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let (key, value) = match line.char_indices().find(|(_, c)| c.is_whitespace()) {
        Some((at, c)) => (&line[..at], &line[at + c.len_utf8()..]),
        None => (line, ""),
    };
    Some(normalize_serial(key).and_then(|key| check_value(value).map(|()| (key, value.to_owned()))))
}

/// Collects the results of [`parse_line`] over numbered lines.
fn collect_lines<'t>(
    lines: impl Iterator<Item = Result<&'t str, String>>,
) -> Result<Vec<(String, String)>, Vec<String>> {
    let mut entries = Vec::new();
    let mut errors = Vec::new();
    for (i, line) in lines.enumerate() {
        let parsed = match line {
            Ok(line) => parse_line(line),
            Err(reason) => Some(Err(reason)),
        };
        match parsed {
            None => {}
            Some(Ok(entry)) => entries.push(entry),
            Some(Err(reason)) => errors.push(format!("line {}: {reason}", i + 1)),
        }
    }
    if errors.is_empty() {
        Ok(dedup_sorted(entries))
    } else {
        Err(errors)
    }
}

/// Parses the text format: one serial per line, optionally followed by
/// whitespace and a value (everything after the first whitespace character;
/// otherwise the value is `""`). Blank lines and lines starting with `#`
/// (after leading whitespace) are ignored.
///
/// Returns entries sorted by key with duplicates removed (the last
/// occurrence wins), or every problem found, e.g. `line 7: …` (1-based).
pub fn parse_serial_lines(text: &str) -> Result<Vec<(String, String)>, Vec<String>> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    collect_lines(text.split('\n').map(Ok))
}

/// [`parse_serial_lines`] for raw bytes; each line must be valid UTF-8.
fn parse_serial_bytes(bytes: &[u8]) -> Result<Vec<(String, String)>, Vec<String>> {
    collect_lines(
        strip_bom(bytes)
            .split(|&b| b == b'\n')
            .map(|line| std::str::from_utf8(line).map_err(|e| format!("not valid UTF-8: {e}"))),
    )
}

/// Entries deduplicated (last wins) and sorted by key, borrowed.
fn sorted<'a>(entries: impl IntoIterator<Item = (&'a str, &'a str)>) -> Vec<(&'a str, &'a str)> {
    let mut all: Vec<(&str, &str)> = entries.into_iter().collect();
    // Stable, so that of equal keys the last given stays last.
    all.sort_by(|a, b| a.0.cmp(b.0));
    let mut out: Vec<(&str, &str)> = Vec::with_capacity(all.len());
    for entry in all {
        match out.last_mut() {
            Some(last) if last.0 == entry.0 => *last = entry,
            _ => out.push(entry),
        }
    }
    out
}

/// Renders entries in the CloudFront KeyValueStore import format: compact
/// JSON `{"data":[{"key":"…","value":"…"},…]}` followed by a newline, sorted
/// by key (duplicate keys: the last wins). Keys and values are written as
/// given. Deterministic and parsable by [`parse_import_json`] when the keys
/// are valid serials.
pub fn to_import_json<'a>(entries: impl IntoIterator<Item = (&'a str, &'a str)>) -> Vec<u8> {
    let entries = sorted(entries);
    // Written directly (stores can hold millions of entries): no intermediate JSON tree.
    let mut out = Vec::with_capacity(16 + entries.len() * 48);
    out.extend_from_slice(b"{\"data\":[");
    for (i, (key, value)) in entries.into_iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(b"{\"key\":");
        write_json_string(&mut out, key);
        out.extend_from_slice(b",\"value\":");
        write_json_string(&mut out, value);
        out.push(b'}');
    }
    out.extend_from_slice(b"]}\n");
    out
}

/// Appends `text` as a JSON string literal.
fn write_json_string(out: &mut Vec<u8>, text: &str) {
    // Serialising a &str into a Vec cannot fail.
    if serde_json::to_writer(&mut *out, text).is_err() {
        out.extend_from_slice(b"\"\"");
    }
}

/// Renders entries in the text format: `"serial value\n"`, or `"serial\n"`
/// for an empty value, sorted by key (duplicate keys: the last wins). Line
/// breaks inside a value cannot be represented and are written as spaces.
pub fn to_serial_lines<'a>(entries: impl IntoIterator<Item = (&'a str, &'a str)>) -> Vec<u8> {
    let mut out = String::new();
    for (key, value) in sorted(entries) {
        out.push_str(key);
        if !value.is_empty() {
            out.push(' ');
            out.extend(
                value
                    .chars()
                    .map(|c| if c == '\n' || c == '\r' { ' ' } else { c }),
            );
        }
        out.push('\n');
    }
    out.into_bytes()
}

/// File format of a revocation store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StoreFormat {
    /// CloudFront KeyValueStore import JSON (`format = "json"`).
    Json,
    /// One serial per line (`format = "text"`).
    Text,
}

impl StoreFormat {
    /// Parses a store file in this format ([`parse_import_json`], or
    /// [`parse_serial_lines`] with every line required to be UTF-8).
    pub fn parse(&self, bytes: &[u8]) -> Result<Vec<(String, String)>, Vec<String>> {
        match self {
            Self::Json => parse_import_json(bytes),
            Self::Text => parse_serial_bytes(bytes),
        }
    }

    /// Renders entries in this format ([`to_import_json`] or
    /// [`to_serial_lines`]).
    pub fn render<'a>(&self, entries: impl IntoIterator<Item = (&'a str, &'a str)>) -> Vec<u8> {
        match self {
            Self::Json => to_import_json(entries),
            Self::Text => to_serial_lines(entries),
        }
    }
}

/// A loaded `[[revocation_store]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevocationStoreSnapshot {
    /// Position in the file (and in `Snapshot::revocation_stores`).
    pub index: usize,
    /// Unique store name.
    pub name: String,
    /// Resolved path of the store file (for an object, the URL as a path).
    pub path: PathBuf,
    /// The object URL the store is read from, if it is not a local file. Such a
    /// store is read-only locally: the object store is the source of truth.
    pub object_url: Option<String>,
    /// Format the file was read in.
    pub format: StoreFormat,
    /// Normalised serials and their values, sorted by key, without duplicates.
    pub entries: Vec<(String, String)>,
}

/// What the data plane does while a CRL is past its nextUpdate
/// (`crl_expired`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum CrlExpiredPolicy {
    /// Reject client certificates of that issuer (`"deny"`, the default).
    #[default]
    Deny,
    /// Keep using the stale CRL (`"allow"`).
    Allow,
}

/// A loaded CRL whose signature was verified against a trust store CA.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CrlSnapshot {
    /// Resolved path of the CRL file, or its object URL as a path (a file may
    /// hold several CRLs).
    pub path: PathBuf,
    /// DER of the CRL issuer Name (equal to the issuing CA's subject).
    pub issuer_name_der: Vec<u8>,
    /// Issuer distinguished name (RFC 2253-like), for messages.
    pub issuer_subject: String,
    /// Serials of revoked certificates, in normal form.
    pub revoked_serials: HashSet<String>,
    /// thisUpdate.
    pub this_update: SystemTime,
    /// nextUpdate, if present.
    pub next_update: Option<SystemTime>,
}

impl CrlSnapshot {
    /// True when the CRL has a nextUpdate and `now` is after it.
    pub fn is_expired(&self, now: SystemTime) -> bool {
        self.next_update.is_some_and(|next| now > next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(entries: &[(&str, &str)]) -> Vec<(String, String)> {
        entries
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn normalises_serials() {
        assert_eq!(normalize_serial("00:0A:bC").unwrap(), "abc");
        assert_eq!(normalize_serial("0").unwrap(), "0");
        assert_eq!(normalize_serial("00").unwrap(), "0");
        assert_eq!(normalize_serial("00:00").unwrap(), "0");
        assert_eq!(normalize_serial("DEADbeef").unwrap(), "deadbeef");
        let e = normalize_serial("0x12").unwrap_err();
        assert!(
            e.contains("\"0x12\" is not a hexadecimal serial number"),
            "{e}"
        );
        assert!(normalize_serial("").unwrap_err().contains("empty"));
        assert!(normalize_serial("ab::cd").is_err());
        assert!(normalize_serial(":ab").is_err());
        assert!(normalize_serial("ab:").is_err());
        assert!(normalize_serial(" ab").is_err());
        assert!(normalize_serial("é").is_err());
        assert_eq!(normalize_serial(&"0".repeat(MAX_KEY_BYTES)).unwrap(), "0");
        let e = normalize_serial(&"0".repeat(MAX_KEY_BYTES + 1)).unwrap_err();
        assert!(e.contains("513 bytes"), "{e}");
    }

    #[test]
    fn serials_from_bytes() {
        assert_eq!(serial_from_bytes(&[0x00, 0x0a, 0xbc]), "abc");
        assert_eq!(serial_from_bytes(&[0x01, 0x00]), "100");
        assert_eq!(serial_from_bytes(&[0, 0]), "0");
        assert_eq!(serial_from_bytes(&[]), "0");
        assert_eq!(
            serial_from_bytes(&[0x00, 0x0a, 0xbc]),
            normalize_serial("00:0A:bC").unwrap()
        );
    }

    #[test]
    fn parses_import_json() {
        let json = br#"{"data":[{"key":"0A","value":"x"},{"key":"b","value":""},{"key":"00:0a","value":"last"}]}"#;
        assert_eq!(
            parse_import_json(json).unwrap(),
            pairs(&[("a", "last"), ("b", "")])
        );
        assert!(parse_import_json(b"").unwrap().is_empty());
        assert!(parse_import_json(b" \n").unwrap().is_empty());
        assert!(parse_import_json(br#"{"data":[]}"#).unwrap().is_empty());
        assert!(parse_import_json(b"\xEF\xBB\xBF{\"data\":[]}")
            .unwrap()
            .is_empty());
    }

    #[test]
    fn reports_every_bad_json_entry() {
        let long_value = "v".repeat(MAX_VALUE_BYTES + 1);
        let json = format!(
            r#"{{"data":[{{"key":"0c","value":""}},{{"key":"xyz","value":""}},{{"key":1,"value":"a"}},{{"value":"a"}},{{"key":"1","value":"{long_value}"}},5,{{"key":"2","value":"","extra":1}}],"more":1}}"#
        );
        let errors = parse_import_json(json.as_bytes()).unwrap_err();
        let expect = [
            "unknown field \"more\"",
            "data[1].key: \"xyz\" is not a hexadecimal serial number",
            "data[2].key: expected a string",
            "data[3]: missing field \"key\"",
            "data[4].value: value is 1025 bytes long",
            "data[5]: expected an object",
            "data[6]: unknown field \"extra\"",
        ];
        assert_eq!(errors.len(), expect.len(), "{errors:#?}");
        for (error, prefix) in errors.iter().zip(expect) {
            assert!(error.starts_with(prefix), "{error:?} vs {prefix:?}");
        }
        assert!(parse_import_json(b"{\"data\":").unwrap_err()[0].starts_with("invalid JSON"));
        assert!(parse_import_json(b"[]").is_err());
        assert_eq!(
            parse_import_json(b"{}").unwrap_err(),
            vec!["missing field \"data\"".to_owned()]
        );
    }

    #[test]
    fn parses_serial_lines() {
        let text = "# revoked\n\n  0A reason with  spaces\r\nff\n  # indented comment\n0a:00\tx\n0A again\n";
        assert_eq!(
            parse_serial_lines(text).unwrap(),
            pairs(&[("a", "again"), ("a00", "x"), ("ff", "")])
        );
        let long = format!("ab {}\n", "v".repeat(MAX_VALUE_BYTES + 1));
        let errors = parse_serial_lines(&format!("0c\nxyz\n\n{long}")).unwrap_err();
        assert_eq!(errors.len(), 2, "{errors:#?}");
        assert!(
            errors[0].starts_with("line 2: \"xyz\" is not"),
            "{}",
            errors[0]
        );
        assert!(
            errors[1].starts_with("line 4: value is 1025"),
            "{}",
            errors[1]
        );
        let errors = StoreFormat::Text.parse(b"ab\n\xff\xfe\n").unwrap_err();
        assert_eq!(errors.len(), 1);
        assert!(
            errors[0].starts_with("line 2: not valid UTF-8"),
            "{}",
            errors[0]
        );
    }

    #[test]
    fn renders_deterministically_and_round_trips() {
        let entries = [("b", "quote \" and \\ and \n é"), ("a", ""), ("10", "x")];
        let json = to_import_json(entries);
        assert_eq!(
            String::from_utf8(json.clone()).unwrap(),
            "{\"data\":[{\"key\":\"10\",\"value\":\"x\"},{\"key\":\"a\",\"value\":\"\"},{\"key\":\"b\",\"value\":\"quote \\\" and \\\\ and \\n é\"}]}\n"
        );
        assert_eq!(to_import_json(entries.iter().rev().copied()), json);
        let parsed = StoreFormat::Json.parse(&json).unwrap();
        let expected = pairs(&[("10", "x"), ("a", ""), ("b", entries[0].1)]);
        assert_eq!(parsed, expected);
        assert_eq!(StoreFormat::Json.render([]), b"{\"data\":[]}\n");

        let text = StoreFormat::Text.render(entries);
        assert_eq!(
            String::from_utf8(text.clone()).unwrap(),
            "10 x\na\nb quote \" and \\ and   é\n"
        );
        let parsed = StoreFormat::Text.parse(&text).unwrap();
        assert_eq!(parsed[2].1, "quote \" and \\ and   é");
        assert_eq!(to_serial_lines([("a", "1"), ("a", "2")]), b"a 2\n");
    }

    #[test]
    fn crl_expiry() {
        let now = SystemTime::now();
        let hour = std::time::Duration::from_secs(3600);
        let mut crl = CrlSnapshot {
            path: PathBuf::from("x.crl"),
            issuer_name_der: Vec::new(),
            issuer_subject: String::new(),
            revoked_serials: HashSet::new(),
            this_update: now - hour,
            next_update: None,
        };
        assert!(!crl.is_expired(now + hour * 1000));
        crl.next_update = Some(now);
        assert!(!crl.is_expired(now));
        assert!(crl.is_expired(now + hour));
        assert_eq!(CrlExpiredPolicy::default(), CrlExpiredPolicy::Deny);
    }
}
