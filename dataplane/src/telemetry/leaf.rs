//! The client leaf certificate's fields as the connection log writes them, parsed once per
//! certificate and kept per worker.
//!
//! A worker sees the same certificates again and again (clients reconnect), so it keeps the
//! fields it parsed, keyed by the SHA-256 of the leaf DER, in a bounded map that starts over
//! when full (like the viewer-header cache). Records share the fields through an `Arc`.
//!
//! The worker's cache is a thread-local ([`cached_fields`]): a worker is one thread, and the
//! certificate decision (a connection function's event) reads it from inside BoringSSL's
//! verify callback, where only the thread is known. A handshake parses its leaf at most once:
//! the function's event and the connection log share the same `Arc`.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;

use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::FromDer;

use crate::viewer_cert::{format_name_in_order, format_serial, hex_lower, push_utc_time};

/// Parsed leaves kept per worker before the cache starts over.
pub const LEAF_CACHE_CAPACITY: usize = 4096;

/// The connection log's certificate fields of one leaf.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeafFields {
    /// `clientLeafCertSerialNumber`: colon-separated lowercase hex.
    pub serial: Box<str>,
    /// `clientLeafCertSubject`: `C=US, O=Example, CN=client` (certificate order).
    pub subject: Box<str>,
    /// `clientLeafCertIssuer`, same form.
    pub issuer: Box<str>,
    /// `clientLeafCertValidity`: `NotBefore=...Z;NotAfter=...Z`.
    pub validity: Box<str>,
    /// `clientLeafCertSha256`: lowercase hex of the SHA-256 of the DER.
    pub sha256: Box<str>,
    /// The subject alternative names, `DNS:a.example`, `IP:192.0.2.1`, `URI:spiffe://x/y`,
    /// `email:a@example` (a connection function's `subjectAlternativeNames` extension).
    pub subject_alternative_names: Box<[Box<str>]>,
}

impl LeafFields {
    /// `notBefore` of [`Self::validity`] (`2025-09-10T23:43:10Z`).
    pub fn not_before(&self) -> &str {
        self.validity_part().0
    }

    /// `notAfter` of [`Self::validity`].
    pub fn not_after(&self) -> &str {
        self.validity_part().1
    }

    fn validity_part(&self) -> (&str, &str) {
        let text = self.validity.strip_prefix("NotBefore=").unwrap_or_default();
        text.split_once(";NotAfter=").unwrap_or((text, ""))
    }
}

impl LeafFields {
    /// Parses the fields of a DER certificate whose SHA-256 is `digest`. None if it does not
    /// parse.
    pub fn from_der(der: &[u8], digest: &[u8; 32]) -> Option<Self> {
        let (_, cert) = X509Certificate::from_der(der).ok()?;
        let validity = cert.validity();
        let mut text = String::with_capacity(60);
        text.push_str("NotBefore=");
        push_utc_time(&mut text, validity.not_before.to_datetime());
        text.push_str(";NotAfter=");
        push_utc_time(&mut text, validity.not_after.to_datetime());
        Some(Self {
            serial: format_serial(cert.raw_serial()).into(),
            subject: format_name_in_order(cert.subject()).into(),
            issuer: format_name_in_order(cert.issuer()).into(),
            validity: text.into(),
            sha256: hex_lower(digest).into(),
            subject_alternative_names: alternative_names(&cert),
        })
    }
}

/// The subject alternative names in their `TYPE:value` text form.
fn alternative_names(cert: &X509Certificate<'_>) -> Box<[Box<str>]> {
    let Ok(Some(extension)) = cert.subject_alternative_name() else {
        return Box::default();
    };
    let clean = |s: &str| -> String { s.chars().filter(|c| !c.is_control()).collect() };
    extension
        .value
        .general_names
        .iter()
        .filter_map(|name| {
            let text = match name {
                GeneralName::DNSName(s) => format!("DNS:{}", clean(s)),
                GeneralName::RFC822Name(s) => format!("email:{}", clean(s)),
                GeneralName::URI(s) => format!("URI:{}", clean(s)),
                GeneralName::IPAddress(bytes) => match bytes.len() {
                    4 => format!(
                        "IP:{}",
                        std::net::Ipv4Addr::from(<[u8; 4]>::try_from(*bytes).ok()?)
                    ),
                    16 => format!(
                        "IP:{}",
                        std::net::Ipv6Addr::from(<[u8; 16]>::try_from(*bytes).ok()?)
                    ),
                    _ => return None,
                },
                _ => return None,
            };
            Some(text.into_boxed_str())
        })
        .collect()
}

thread_local! {
    /// This worker thread's parsed leaves.
    static LEAVES: LeafCache = LeafCache::default();
}

/// The fields of `der` from this thread's (worker's) cache, parsed on first sight. None if it
/// does not parse.
pub fn cached_fields(der: &[u8]) -> Option<Arc<LeafFields>> {
    LEAVES.with(|cache| cache.fields(der))
}

/// Leaf fields by SHA-256 of the DER, on one worker.
#[derive(Debug, Default)]
pub struct LeafCache {
    leaves: RefCell<HashMap<[u8; 32], Arc<LeafFields>>>,
}

impl LeafCache {
    /// The fields of `der` (parsed on first sight). None if it does not parse.
    pub fn fields(&self, der: &[u8]) -> Option<Arc<LeafFields>> {
        let digest = boring::sha::sha256(der);
        if let Some(fields) = self.leaves.borrow().get(&digest) {
            return Some(Arc::clone(fields));
        }
        let fields = Arc::new(LeafFields::from_der(der, &digest)?);
        let mut leaves = self.leaves.borrow_mut();
        if leaves.len() >= LEAF_CACHE_CAPACITY {
            leaves.clear();
        }
        leaves.insert(digest, Arc::clone(&fields));
        Some(fields)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pki::{CertKind, CertSpec, Issued};

    #[test]
    fn fields_in_certificate_order_and_shared() {
        let root = Issued::self_signed(
            CertSpec::new("Leaf Root", CertKind::RootCa).organization("Example Org"),
        )
        .expect("root");
        let leaf = root
            .issue(
                CertSpec::new("viewer", CertKind::Client)
                    .organization("Example, Inc.")
                    .serial(vec![0x0a, 0xbc]),
            )
            .expect("leaf");
        let cache = LeafCache::default();
        let a = cache.fields(&leaf.cert_der).expect("fields");
        let b = cache.fields(&leaf.cert_der).expect("fields");
        assert!(Arc::ptr_eq(&a, &b));
        assert_eq!(&*a.serial, "0a:bc");
        assert!(
            a.subject.ends_with("O=Example\\, Inc., CN=viewer"),
            "{}",
            a.subject
        );
        assert!(
            a.issuer.ends_with("O=Example Org, CN=Leaf Root"),
            "{}",
            a.issuer
        );
        assert!(a.validity.starts_with("NotBefore=") && a.validity.contains("Z;NotAfter="));
        assert_eq!(a.sha256.len(), 64);
        assert!(a.not_before().ends_with('Z') && a.not_after().ends_with('Z'));
        assert_eq!(
            a.validity.as_ref(),
            format!("NotBefore={};NotAfter={}", a.not_before(), a.not_after())
        );
        assert!(cache.fields(b"junk").is_none());
    }
}
