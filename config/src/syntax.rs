//! TOML deserialisation and mapping of `toml` errors to dotted config keys.

use std::collections::HashMap;
use std::path::Path;

use crate::error::{ConfigError, DOCUMENT_KEY};
use crate::model::RawConfig;

/// Deserialises the document, turning a TOML error into a [`ConfigError`]
/// located (best effort) at the dotted key the error span points to.
pub(crate) fn parse_document(source: &str, file: &Path) -> Result<RawConfig, ConfigError> {
    toml::from_str::<RawConfig>(source).map_err(|e| {
        let message = e.message().trim().to_owned();
        let (key, reason) = match e.span() {
            Some(span) => {
                let (line, column) = line_column(source, span.start);
                (
                    key_at(source, span.start, &message),
                    format!("{message} (line {line}, column {column})"),
                )
            }
            None => (key_without_span(&message), message),
        };
        ConfigError::new(file, key, reason)
    })
}

/// The field named by a serde "missing field `x`" message, if any.
fn missing_field(message: &str) -> Option<&str> {
    let rest = message.strip_prefix("missing field `")?;
    rest.split('`').next()
}

fn key_without_span(message: &str) -> String {
    missing_field(message).map_or_else(|| DOCUMENT_KEY.to_owned(), str::to_owned)
}

/// 1-based line and column of byte `offset` in `source`.
fn line_column(source: &str, offset: usize) -> (usize, usize) {
    let offset = floor_char_boundary(source, offset.min(source.len()));
    let before = &source[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = source[line_start..offset].chars().count() + 1;
    (line, column)
}

fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    while i > 0 && !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// Reconstructs the dotted key (`site[1].mtls.mode`) at byte `offset`, by
/// replaying table headers and key assignments up to that point.
fn key_at(source: &str, offset: usize, message: &str) -> String {
    let mut array_counts: HashMap<String, usize> = HashMap::new();
    let mut table_path = String::new();
    let mut last_key: Option<String> = None;
    // Bracket depth of a multi-line value (array or inline table) still open.
    let mut depth: i64 = 0;
    let mut line_start = 0usize;
    let mut on_key_line = false;

    for line in source.split_inclusive('\n') {
        let code = strip_comment(line);
        let trimmed = code.trim();
        on_key_line = false;
        if depth > 0 {
            depth += bracket_delta(code);
            on_key_line = last_key.is_some();
        } else if let Some(name) = trimmed
            .strip_prefix("[[")
            .and_then(|t| t.strip_suffix("]]"))
        {
            let name = normalize_key(name);
            *array_counts.entry(name.clone()).or_insert(0) += 1;
            table_path = resolve_table(&name, &array_counts);
            last_key = None;
        } else if let Some(name) = trimmed.strip_prefix('[').and_then(|t| t.strip_suffix(']')) {
            table_path = resolve_table(&normalize_key(name), &array_counts);
            last_key = None;
        } else if let Some(eq) = find_unquoted(code, '=') {
            last_key = Some(normalize_key(&code[..eq]));
            depth = bracket_delta(&code[eq + 1..]).max(0);
            on_key_line = true;
        }
        line_start += line.len();
        if line_start > offset {
            break;
        }
    }

    if let Some(field) = missing_field(message) {
        return join(&table_path, field);
    }
    match (&last_key, on_key_line) {
        (Some(key), true) => join(&table_path, key),
        _ if table_path.is_empty() => DOCUMENT_KEY.to_owned(),
        _ => table_path,
    }
}

fn join(prefix: &str, key: &str) -> String {
    match (prefix.is_empty(), key.is_empty()) {
        (true, true) => DOCUMENT_KEY.to_owned(),
        (true, false) => key.to_owned(),
        (false, true) => prefix.to_owned(),
        (false, false) => format!("{prefix}.{key}"),
    }
}

/// Turns `site.mtls` into `site[2].mtls` when `site` is an array of tables.
fn resolve_table(name: &str, array_counts: &HashMap<String, usize>) -> String {
    let mut resolved = String::new();
    let mut raw_prefix = String::new();
    for segment in name.split('.') {
        if !raw_prefix.is_empty() {
            raw_prefix.push('.');
            resolved.push('.');
        }
        raw_prefix.push_str(segment);
        resolved.push_str(segment);
        if let Some(count) = array_counts.get(&raw_prefix) {
            resolved.push_str(&format!("[{}]", count.saturating_sub(1)));
        }
    }
    resolved
}

/// Removes whitespace around dots and quotes around segments of a key.
fn normalize_key(raw: &str) -> String {
    raw.split('.')
        .map(|s| s.trim().trim_matches(|c| c == '"' || c == '\''))
        .collect::<Vec<_>>()
        .join(".")
}

/// The part of `line` before a `#` comment that is not inside a string.
fn strip_comment(line: &str) -> &str {
    find_unquoted(line, '#').map_or(line, |i| &line[..i])
}

/// Byte index of the first `needle` outside single- or double-quoted strings.
fn find_unquoted(line: &str, needle: char) -> Option<usize> {
    let mut quote: Option<char> = None;
    let mut escaped = false;
    for (i, c) in line.char_indices() {
        match quote {
            Some('"') if escaped => escaped = false,
            Some('"') if c == '\\' => escaped = true,
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None if c == '"' || c == '\'' => quote = Some(c),
            None if c == needle => return Some(i),
            None => {}
        }
    }
    None
}

/// Net count of opening minus closing brackets/braces outside strings.
fn bracket_delta(code: &str) -> i64 {
    let mut delta = 0;
    let mut quote: Option<char> = None;
    let mut escaped = false;
    for c in code.chars() {
        match quote {
            Some('"') if escaped => escaped = false,
            Some('"') if c == '\\' => escaped = true,
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None => match c {
                '"' | '\'' => quote = Some(c),
                '[' | '{' => delta += 1,
                ']' | '}' => delta -= 1,
                _ => {}
            },
        }
    }
    delta
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error_for(source: &str) -> ConfigError {
        match parse_document(source, Path::new("/etc/p.toml")) {
            Ok(_) => panic!("expected a TOML error"),
            Err(e) => e,
        }
    }

    const SITE: &str = "name = \"a\"\ncertificate = \"c\"\nprivate_key = \"k\"\norigin = \"http://127.0.0.1\"\n[site.mtls]\nmode = \"passthrough\"\n";

    #[test]
    fn syntax_error_is_located_at_key() {
        let e = error_for("[server]\nlisten = [\"127.0.0.1:1\"]\nworkers = = 3\n");
        assert_eq!(e.key, "server.workers");
        assert_eq!(e.file, Path::new("/etc/p.toml"));
        assert!(e.reason.contains("line 3"), "{}", e.reason);
    }

    #[test]
    fn unknown_field_in_second_site_is_located() {
        let source = format!(
            "[server]\nlisten = [\"127.0.0.1:1\"]\n[[site]]\n{SITE}[[site]]\n{SITE}bogus = 1\n"
        );
        let e = error_for(&source);
        assert_eq!(e.key, "site[1].mtls.bogus");
        assert!(e.reason.contains("unknown field"), "{}", e.reason);
    }

    #[test]
    fn missing_field_names_the_field() {
        let source = "[server]\nlisten = [\"127.0.0.1:1\"]\n[[site]]\nname = \"a\"\ncertificate = \"c\"\nprivate_key = \"k\"\n[site.mtls]\nmode = \"required\"\n";
        let e = error_for(source);
        assert_eq!(e.key, "site[0].origin");
        assert!(e.reason.contains("missing field"), "{}", e.reason);
    }

    #[test]
    fn a_line_without_a_key_is_reported_on_the_document() {
        // Found by the config fuzz target: `= [...]` has no key to name.
        let e = error_for("=[\u{1}\0\0\0\0\0\0\0e");
        assert_eq!(e.key, DOCUMENT_KEY);
        let e = error_for("[server]\n= 1\n");
        assert_eq!(e.key, "server");
    }

    #[test]
    fn missing_server_section() {
        let e = error_for("");
        assert_eq!(e.key, "server");
    }

    #[test]
    fn wrong_type_inside_multiline_array() {
        let source = "[server]\nlisten = [\n  \"127.0.0.1:1\",\n  5,\n]\n";
        let e = error_for(source);
        assert_eq!(e.key, "server.listen");
    }

    #[test]
    fn resolves_nested_array_tables() {
        let mut counts = HashMap::new();
        counts.insert("site".to_owned(), 3);
        assert_eq!(resolve_table("site.mtls", &counts), "site[2].mtls");
        assert_eq!(resolve_table("server.limits", &counts), "server.limits");
        assert_eq!(normalize_key(" \"site\" . mtls "), "site.mtls");
        assert_eq!(strip_comment("a = \"#x\" # c"), "a = \"#x\" ");
    }
}
