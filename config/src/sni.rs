//! Server-name validation and the SNI → site lookup tables.

use std::borrow::Cow;
use std::collections::HashMap;

/// Lookup tables from server name to site index, built once at load time.
#[derive(Debug, Clone, Default)]
pub(crate) struct SniIndex {
    /// Lowercase exact names.
    exact: HashMap<String, usize>,
    /// Wildcards keyed by their suffix: `*.example.com` is stored as `example.com`.
    wildcard: HashMap<String, usize>,
}

impl SniIndex {
    /// Registers a validated, lowercase server name (exact or `*.suffix`).
    /// Returns the site index that already owns the name, if any.
    pub(crate) fn insert(&mut self, name: &str, site: usize) -> Option<usize> {
        let (map, key) = match name.strip_prefix("*.") {
            Some(suffix) => (&mut self.wildcard, suffix),
            None => (&mut self.exact, name),
        };
        match map.get(key) {
            Some(&owner) => Some(owner),
            None => {
                map.insert(key.to_owned(), site);
                None
            }
        }
    }

    /// The site for `sni`, if any name matches. Allocates only when `sni`
    /// contains ASCII uppercase letters.
    pub(crate) fn lookup(&self, sni: &str) -> Option<usize> {
        let sni = sni.strip_suffix('.').unwrap_or(sni);
        if sni.is_empty() {
            return None;
        }
        let name: Cow<'_, str> = if sni.bytes().any(|b| b.is_ascii_uppercase()) {
            Cow::Owned(sni.to_ascii_lowercase())
        } else {
            Cow::Borrowed(sni)
        };
        if let Some(&site) = self.exact.get(name.as_ref()) {
            return Some(site);
        }
        let (label, suffix) = name.split_once('.')?;
        if label.is_empty() || suffix.is_empty() {
            return None;
        }
        self.wildcard.get(suffix).copied()
    }
}

/// Lowercases and validates a configured server name: a DNS name, or `*.`
/// followed by a DNS name. One trailing dot is dropped. Returns the
/// normalised name.
pub(crate) fn normalize_server_name(raw: &str) -> Result<String, String> {
    let name = raw.trim().to_ascii_lowercase();
    let name = name.strip_suffix('.').unwrap_or(&name).to_owned();
    if name.is_empty() {
        return Err("server name must not be empty".to_owned());
    }
    let host = match name.strip_prefix("*.") {
        Some(suffix) => suffix,
        None => &name,
    };
    if host.contains('*') {
        return Err(format!(
            "invalid server name {raw:?}: a wildcard is only allowed as the whole first label (\"*.example.com\")"
        ));
    }
    validate_dns_name(host).map_err(|why| format!("invalid server name {raw:?}: {why}"))?;
    Ok(name)
}

fn validate_dns_name(host: &str) -> Result<(), String> {
    if host.len() > 253 {
        return Err("longer than 253 characters".to_owned());
    }
    for label in host.split('.') {
        if label.is_empty() {
            return Err("empty label".to_owned());
        }
        if label.len() > 63 {
            return Err(format!("label {label:?} is longer than 63 characters"));
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(format!(
                "label {label:?} may only contain letters, digits, '-' and '_'"
            ));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(format!("label {label:?} starts or ends with '-'"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index() -> SniIndex {
        let mut index = SniIndex::default();
        assert_eq!(index.insert("example.com", 0), None);
        assert_eq!(index.insert("*.example.com", 1), None);
        assert_eq!(index.insert("api.example.com", 2), None);
        index
    }

    #[test]
    fn exact_beats_wildcard() {
        let index = index();
        assert_eq!(index.lookup("api.example.com"), Some(2));
        assert_eq!(index.lookup("www.example.com"), Some(1));
        assert_eq!(index.lookup("example.com"), Some(0));
    }

    #[test]
    fn wildcard_covers_exactly_one_label() {
        let index = index();
        assert_eq!(index.lookup("a.b.example.com"), None);
        assert_eq!(index.lookup(".example.com"), None);
        assert_eq!(index.lookup("other.org"), None);
        assert_eq!(index.lookup(""), None);
    }

    #[test]
    fn lookup_is_case_insensitive_and_ignores_trailing_dot() {
        let index = index();
        assert_eq!(index.lookup("API.Example.COM"), Some(2));
        assert_eq!(index.lookup("www.example.com."), Some(1));
        assert_eq!(index.lookup("."), None);
    }

    #[test]
    fn duplicate_insert_reports_owner() {
        let mut index = index();
        assert_eq!(index.insert("*.example.com", 5), Some(1));
        assert_eq!(index.insert("example.com", 5), Some(0));
    }

    #[test]
    fn normalizes_and_validates_names() {
        assert_eq!(
            normalize_server_name("WWW.Example.com").as_deref(),
            Ok("www.example.com")
        );
        assert_eq!(
            normalize_server_name("*.Example.com").as_deref(),
            Ok("*.example.com")
        );
        assert_eq!(
            normalize_server_name("localhost.").as_deref(),
            Ok("localhost")
        );
        assert!(normalize_server_name("").is_err());
        assert!(normalize_server_name("*").is_err());
        assert!(normalize_server_name("a.*.example.com").is_err());
        assert!(normalize_server_name("*foo.example.com").is_err());
        assert!(normalize_server_name("*.*.example.com").is_err());
        assert!(normalize_server_name("bad..name").is_err());
        assert!(normalize_server_name("-bad.example").is_err());
        assert!(normalize_server_name("sp ace.example").is_err());
    }
}
