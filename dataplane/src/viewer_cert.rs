//! The `CloudFront-Viewer-Cert-*` request headers (see `spec/viewer-mtls.md`).
//!
//! [`ViewerCertInfo::from_der`] extracts, once per connection, the values of the headers from the
//! viewer's leaf certificate, and [`render_headers`] renders the header block that is appended to
//! every request of that connection.
//!
//! Every rendered value is printable ASCII: distinguished names escape control characters and
//! non-ASCII bytes (`\XX`), so a certificate can never inject CR/LF into a request head.

use std::fmt::Write as _;

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC};
use time::{OffsetDateTime, UtcOffset};
use x509_parser::asn1_rs::{Any, Class, Tag};
use x509_parser::certificate::X509Certificate;
use x509_parser::prelude::FromDer;
use x509_parser::x509::{AttributeTypeAndValue, X509Name};

pub use portcullis_config::ForwardHeaders;

/// The lowercase prefix shared by every viewer-certificate header name.
pub const HEADER_PREFIX_LOWER: &str = "cloudfront-viewer-cert-";

/// Errors of [`ViewerCertInfo::from_der`].
#[derive(Debug, thiserror::Error)]
pub enum ViewerCertError {
    /// The bytes are not a DER X.509 certificate.
    #[error("certificate DER does not parse: {0}")]
    Parse(String),
    /// The certificate is followed by extra bytes.
    #[error("{0} trailing bytes after the certificate DER")]
    TrailingBytes(usize),
}

/// The values of the `CloudFront-Viewer-Cert-*` headers for one leaf certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ViewerCertInfo {
    /// Serial number: lowercase hex bytes of its magnitude joined by `:` (e.g. `4a:3f:5c`).
    pub serial_number: String,
    /// Issuer DN as an RFC 2253 string (most specific RDN first).
    pub issuer: String,
    /// Subject DN as an RFC 2253 string (most specific RDN first).
    pub subject: String,
    /// Lowercase hex SHA-256 of the certificate DER (64 digits).
    pub sha256: String,
    /// `NotBefore=YYYY-MM-DDTHH:MM:SSZ;NotAfter=YYYY-MM-DDTHH:MM:SSZ` (UTC).
    pub validity: String,
    /// The certificate in PEM, percent-encoded (everything but RFC 3986 unreserved characters).
    pub pem_urlencoded: String,
}

impl ViewerCertInfo {
    /// Extracts the header values from a DER certificate.
    ///
    /// Fails if the bytes are not exactly one DER X.509 certificate.
    pub fn from_der(der: &[u8]) -> Result<Self, ViewerCertError> {
        let (rest, cert) =
            X509Certificate::from_der(der).map_err(|e| ViewerCertError::Parse(e.to_string()))?;
        if !rest.is_empty() {
            return Err(ViewerCertError::TrailingBytes(rest.len()));
        }
        let validity = cert.validity();
        let mut validity_str = String::with_capacity(60);
        validity_str.push_str("NotBefore=");
        push_utc_time(&mut validity_str, validity.not_before.to_datetime());
        validity_str.push_str(";NotAfter=");
        push_utc_time(&mut validity_str, validity.not_after.to_datetime());

        Ok(ViewerCertInfo {
            serial_number: format_serial(cert.raw_serial()),
            issuer: format_name_rfc2253(cert.issuer()),
            subject: format_name_rfc2253(cert.subject()),
            sha256: hex_lower(&boring::sha::sha256(der)),
            validity: validity_str,
            pem_urlencoded: pem_urlencoded(der),
        })
    }
}

/// Renders the viewer-certificate header block, appending it to `out`.
///
/// Each enabled header is written as `Name: value\r\n`. With `info == None` (no certificate
/// presented) only `CloudFront-Viewer-Cert-Present: 0` is written (if enabled). `include_pem`
/// is false in passthrough mode, where the PEM header is never sent. `out` is not cleared.
pub fn render_headers(
    info: Option<&ViewerCertInfo>,
    forward: &ForwardHeaders,
    include_pem: bool,
    out: &mut Vec<u8>,
) {
    let Some(info) = info else {
        if forward.present {
            out.extend_from_slice(b"CloudFront-Viewer-Cert-Present: 0\r\n");
        }
        return;
    };
    let mut line = |enabled: bool, name: &str, value: &str| {
        if enabled {
            out.extend_from_slice(b"CloudFront-Viewer-Cert-");
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(value.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
    };
    line(forward.serial_number, "Serial-Number", &info.serial_number);
    line(forward.issuer, "Issuer", &info.issuer);
    line(forward.subject, "Subject", &info.subject);
    line(forward.present, "Present", "1");
    line(forward.sha256, "Sha256", &info.sha256);
    line(forward.validity, "Validity", &info.validity);
    line(forward.pem && include_pem, "Pem", &info.pem_urlencoded);
}

const HEX_LOWER: &[u8; 16] = b"0123456789abcdef";
const HEX_UPPER: &[u8; 16] = b"0123456789ABCDEF";

/// Lowercase hex of `bytes`, no separator.
pub(crate) fn hex_lower(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        s.push(HEX_LOWER[usize::from(b >> 4)] as char);
        s.push(HEX_LOWER[usize::from(b & 0x0f)] as char);
    }
    s
}

/// Formats the content octets of a DER INTEGER serial as colon-separated lowercase hex of its
/// magnitude (no sign padding; negative serials, which RFC 5280 forbids, give their absolute value).
pub(crate) fn format_serial(raw: &[u8]) -> String {
    let mut magnitude: Vec<u8> = raw.to_vec();
    if magnitude.first().is_some_and(|b| b & 0x80 != 0) {
        // Two's complement negation: invert and add one.
        for b in magnitude.iter_mut() {
            *b = !*b;
        }
        for b in magnitude.iter_mut().rev() {
            let (v, carry) = b.overflowing_add(1);
            *b = v;
            if !carry {
                break;
            }
        }
    }
    let first_nonzero = magnitude
        .iter()
        .position(|&b| b != 0)
        .unwrap_or(magnitude.len());
    let digits = &magnitude[first_nonzero..];
    if digits.is_empty() {
        return "00".to_owned();
    }
    let mut s = String::with_capacity(digits.len() * 3);
    for (i, &b) in digits.iter().enumerate() {
        if i > 0 {
            s.push(':');
        }
        s.push(HEX_LOWER[usize::from(b >> 4)] as char);
        s.push(HEX_LOWER[usize::from(b & 0x0f)] as char);
    }
    s
}

pub(crate) fn push_utc_time(s: &mut String, t: OffsetDateTime) {
    let t = t.to_offset(UtcOffset::UTC);
    // Writing to a String cannot fail.
    let _ = write!(
        s,
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    );
}

/// Unreserved characters of RFC 3986 are the only ones left as is.
const PEM_ENCODE_SET: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

fn pem_urlencoded(der: &[u8]) -> String {
    let mut pem = String::with_capacity(der.len() * 4 / 3 + der.len() / 48 + 64);
    pem.push_str("-----BEGIN CERTIFICATE-----\n");
    for chunk in der.chunks(48) {
        base64_encode_into(chunk, &mut pem);
        pem.push('\n');
    }
    pem.push_str("-----END CERTIFICATE-----\n");
    percent_encoding::utf8_percent_encode(&pem, PEM_ENCODE_SET).to_string()
}

/// Standard base64 (RFC 4648, with padding).
fn base64_encode_into(data: &[u8], out: &mut String) {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    for chunk in data.chunks(3) {
        let b0 = chunk[0];
        let b1 = chunk.get(1).copied().unwrap_or(0);
        let b2 = chunk.get(2).copied().unwrap_or(0);
        let n = (u32::from(b0) << 16) | (u32::from(b1) << 8) | u32::from(b2);
        out.push(ALPHABET[(n >> 18) as usize & 63] as char);
        out.push(ALPHABET[(n >> 12) as usize & 63] as char);
        if chunk.len() > 1 {
            out.push(ALPHABET[(n >> 6) as usize & 63] as char);
        } else {
            out.push('=');
        }
        if chunk.len() > 2 {
            out.push(ALPHABET[n as usize & 63] as char);
        } else {
            out.push('=');
        }
    }
}

/// Short names of attribute types, as printed by OpenSSL's `-nameopt RFC2253` (except `STREET`,
/// which RFC 2253 spells so). Types not listed are printed as a dotted OID with a `#hex` value.
const ATTRIBUTE_NAMES: &[(&str, &str)] = &[
    ("2.5.4.3", "CN"),
    ("2.5.4.4", "SN"),
    ("2.5.4.5", "serialNumber"),
    ("2.5.4.6", "C"),
    ("2.5.4.7", "L"),
    ("2.5.4.8", "ST"),
    ("2.5.4.9", "STREET"),
    ("2.5.4.10", "O"),
    ("2.5.4.11", "OU"),
    ("2.5.4.12", "title"),
    ("2.5.4.13", "description"),
    ("2.5.4.15", "businessCategory"),
    ("2.5.4.17", "postalCode"),
    ("2.5.4.41", "name"),
    ("2.5.4.42", "GN"),
    ("2.5.4.43", "initials"),
    ("2.5.4.44", "generationQualifier"),
    ("2.5.4.46", "dnQualifier"),
    ("2.5.4.65", "pseudonym"),
    ("2.5.4.72", "role"),
    ("2.5.4.97", "organizationIdentifier"),
    ("0.9.2342.19200300.100.1.1", "UID"),
    ("0.9.2342.19200300.100.1.25", "DC"),
    ("1.2.840.113549.1.9.1", "emailAddress"),
    ("1.2.840.113549.1.9.2", "unstructuredName"),
    ("1.3.6.1.4.1.311.60.2.1.1", "jurisdictionL"),
    ("1.3.6.1.4.1.311.60.2.1.2", "jurisdictionST"),
    ("1.3.6.1.4.1.311.60.2.1.3", "jurisdictionC"),
];

/// Formats a distinguished name like `openssl x509 -nameopt RFC2253`: attributes in reverse
/// order (so RDNs most specific first, and the attributes of a multi-valued RDN too), RDNs
/// separated by `,` and attributes of one RDN by `+`.
fn format_name_rfc2253(name: &X509Name<'_>) -> String {
    format_name(name, true)
}

/// Formats a distinguished name the way the connection log shows it
/// (`C=US, ST=WA, O=Example, CN=client`): attributes in the certificate's order, RDNs separated
/// by `", "` and attributes of one RDN by `" + "`, values escaped as in RFC 2253 (what
/// `openssl x509 -nameopt RFC2253,-dn_rev,sep_comma_plus_space` prints).
pub fn format_name_in_order(name: &X509Name<'_>) -> String {
    format_name(name, false)
}

fn format_name(name: &X509Name<'_>, rfc2253: bool) -> String {
    let mut attrs: Vec<(usize, &AttributeTypeAndValue<'_>)> = Vec::new();
    for (i, rdn) in name.iter().enumerate() {
        for atv in rdn.iter() {
            attrs.push((i, atv));
        }
    }
    if rfc2253 {
        attrs.reverse();
    }
    let (rdn_sep, attr_sep) = if rfc2253 { (",", "+") } else { (", ", " + ") };
    let mut out = String::with_capacity(name.as_raw().len() + 16);
    let mut prev: Option<usize> = None;
    for &(rdn_index, atv) in attrs.iter() {
        match prev {
            Some(p) if p == rdn_index => out.push_str(attr_sep),
            Some(_) => out.push_str(rdn_sep),
            None => {}
        }
        prev = Some(rdn_index);
        let oid = atv.attr_type().to_id_string();
        let short = ATTRIBUTE_NAMES
            .iter()
            .find(|(id, _)| *id == oid)
            .map(|(_, n)| *n);
        match short {
            Some(n) => {
                out.push_str(n);
                out.push('=');
                if !push_escaped_string(&mut out, atv.attr_value()) {
                    push_der_hex(&mut out, atv.attr_value());
                }
            }
            None => {
                out.push_str(&oid);
                out.push('=');
                push_der_hex(&mut out, atv.attr_value());
            }
        }
    }
    out
}

/// Appends `#` and the uppercase hex of the DER encoding of `value`.
fn push_der_hex(out: &mut String, value: &Any<'_>) {
    let mut der: Vec<u8> = Vec::with_capacity(value.data.len() + 8);
    match value.header.raw_tag() {
        Some(raw) => der.extend_from_slice(raw),
        None => {
            let class = match value.header.class() {
                Class::Universal => 0x00,
                Class::Application => 0x40,
                Class::ContextSpecific => 0x80,
                Class::Private => 0xc0,
            };
            let constructed = if value.header.is_constructed() {
                0x20
            } else {
                0
            };
            let Tag(tag) = value.header.tag();
            if tag < 31 {
                der.push(class | constructed | tag as u8);
            } else {
                der.push(class | constructed | 0x1f);
                let mut groups = [0u8; 5];
                let mut n = 0;
                let mut t = tag;
                loop {
                    groups[n] = (t & 0x7f) as u8;
                    n += 1;
                    t >>= 7;
                    if t == 0 {
                        break;
                    }
                }
                for i in (0..n).rev() {
                    der.push(groups[i] | if i > 0 { 0x80 } else { 0 });
                }
            }
        }
    }
    let len = value.data.len();
    if len < 0x80 {
        der.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes
            .iter()
            .position(|&b| b != 0)
            .unwrap_or(bytes.len() - 1);
        der.push(0x80 | (bytes.len() - skip) as u8);
        der.extend_from_slice(&bytes[skip..]);
    }
    der.extend_from_slice(value.data);
    out.push('#');
    for b in der {
        out.push(HEX_UPPER[usize::from(b >> 4)] as char);
        out.push(HEX_UPPER[usize::from(b & 0x0f)] as char);
    }
}

/// Appends the RFC 2253-escaped string value; returns false (appending nothing) if the value is
/// not a character string type or is not validly encoded, so the caller dumps it as hex.
fn push_escaped_string(out: &mut String, value: &Any<'_>) -> bool {
    if value.header.class() != Class::Universal || value.header.is_constructed() {
        return false;
    }
    let data = value.data;
    let Tag(tag) = value.header.tag();
    match tag {
        // UTF8String
        12 => match std::str::from_utf8(data) {
            Ok(s) => {
                let n = s.chars().count();
                for (i, c) in s.chars().enumerate() {
                    push_escaped_char(out, c, i == 0, i + 1 == n);
                }
                true
            }
            Err(_) => false,
        },
        // Numeric, Printable, T61, IA5, UTCTime, GeneralizedTime, Visible, General: one byte per
        // character (Latin-1), as OpenSSL reads them.
        18 | 19 | 20 | 22 | 23 | 24 | 26 | 27 => {
            let n = data.len();
            for (i, &b) in data.iter().enumerate() {
                push_escaped_char(out, char::from(b), i == 0, i + 1 == n);
            }
            true
        }
        // BMPString: UCS-2 big-endian.
        30 => {
            let units = data.chunks_exact(2);
            if !units.remainder().is_empty() {
                return false;
            }
            let units = units.map(|c| u16::from_be_bytes([c[0], c[1]]));
            let chars: Option<Vec<char>> = units.map(|u| char::from_u32(u32::from(u))).collect();
            push_chars(out, chars)
        }
        // UniversalString: UCS-4 big-endian.
        28 => {
            let quads = data.chunks_exact(4);
            if !quads.remainder().is_empty() {
                return false;
            }
            let chars: Option<Vec<char>> = quads
                .map(|c| char::from_u32(u32::from_be_bytes([c[0], c[1], c[2], c[3]])))
                .collect();
            push_chars(out, chars)
        }
        _ => false,
    }
}

fn push_chars(out: &mut String, chars: Option<Vec<char>>) -> bool {
    let Some(chars) = chars else {
        return false;
    };
    let n = chars.len();
    for (i, &c) in chars.iter().enumerate() {
        push_escaped_char(out, c, i == 0, i + 1 == n);
    }
    true
}

/// Escapes one character the way OpenSSL's `ASN1_STRFLGS_RFC2253` does: the character is
/// converted to UTF-8 and every byte above 0x7f or control byte becomes `\XX`; RFC 2253 specials
/// get a backslash.
fn push_escaped_char(out: &mut String, c: char, first: bool, last: bool) {
    let mut buf = [0u8; 4];
    for &b in c.encode_utf8(&mut buf).as_bytes() {
        match b {
            b',' | b'+' | b'"' | b'\\' | b'<' | b'>' | b';' => {
                out.push('\\');
                out.push(char::from(b));
            }
            b'#' if first => out.push_str("\\#"),
            b' ' if first || last => out.push_str("\\ "),
            0x00..=0x1f | 0x7f..=0xff => {
                out.push('\\');
                out.push(HEX_UPPER[usize::from(b >> 4)] as char);
                out.push(HEX_UPPER[usize::from(b & 0x0f)] as char);
            }
            _ => out.push(char::from(b)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use boring::hash::MessageDigest;
    use boring::x509::X509;
    use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair, SerialNumber};

    fn all_forward() -> ForwardHeaders {
        let f = ForwardHeaders::default();
        assert!(f.serial_number && f.issuer && f.subject && f.present);
        assert!(f.sha256 && f.validity && f.pem);
        f
    }

    fn make_cert(serial: &[u8]) -> Vec<u8> {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CountryName, "US");
        dn.push(DnType::StateOrProvinceName, "Washington");
        dn.push(DnType::OrganizationName, "mTLS, Inc+Co");
        dn.push(DnType::OrganizationalUnitName, " client-3 ");
        dn.push(DnType::CommonName, "#client_.com");
        params.distinguished_name = dn;
        params.serial_number = Some(SerialNumber::from_slice(serial));
        params.not_before = OffsetDateTime::from_unix_timestamp(1_695_261_017).expect("time");
        params.not_after = OffsetDateTime::from_unix_timestamp(1_726_797_017).expect("time");
        let key = KeyPair::generate().expect("key");
        params.self_signed(&key).expect("sign").der().to_vec()
    }

    #[test]
    fn fields_from_rcgen_certificate() {
        let der = make_cert(&[0x4a, 0x3f, 0x5c, 0x92, 0xd1, 0xe8, 0x7b, 0x6c]);
        let info = ViewerCertInfo::from_der(&der).expect("parse");
        assert_eq!(info.serial_number, "4a:3f:5c:92:d1:e8:7b:6c");
        let expected_dn = r"CN=\#client_.com,OU=\ client-3\ ,O=mTLS\, Inc\+Co,ST=Washington,C=US";
        assert_eq!(info.subject, expected_dn);
        assert_eq!(info.issuer, expected_dn);
        assert_eq!(
            info.validity,
            "NotBefore=2023-09-21T01:50:17Z;NotAfter=2024-09-20T01:50:17Z"
        );

        let x = X509::from_der(&der).expect("boring parse");
        let digest = x.digest(MessageDigest::sha256()).expect("digest");
        assert_eq!(info.sha256, hex_lower(&digest));
        assert_eq!(info.sha256.len(), 64);
        let bn = x.serial_number().to_bn().expect("bn");
        let boring_hex = bn.to_hex_str().expect("hex").to_ascii_lowercase();
        assert_eq!(info.serial_number.replace(':', ""), boring_hex.to_string());
    }

    #[test]
    fn serial_padding_and_zero() {
        // High bit set: DER adds a 0x00 sign byte, which must not appear.
        let der = make_cert(&[0x80, 0x01]);
        let info = ViewerCertInfo::from_der(&der).expect("parse");
        assert_eq!(info.serial_number, "80:01");
        assert_eq!(format_serial(&[0x00, 0x80, 0x01]), "80:01");
        assert_eq!(format_serial(&[0x00]), "00");
        assert_eq!(format_serial(&[]), "00");
        assert_eq!(format_serial(&[0x00, 0x00, 0x05]), "05");
        // -1 and -256 in two's complement.
        assert_eq!(format_serial(&[0xff]), "01");
        assert_eq!(format_serial(&[0xff, 0x00]), "01:00");
    }

    #[test]
    fn pem_matches_boring_and_is_urlencoded() {
        let der = make_cert(&[1, 2, 3]);
        let info = ViewerCertInfo::from_der(&der).expect("parse");
        let pem = X509::from_der(&der).expect("x509").to_pem().expect("pem");
        let pem = String::from_utf8(pem).expect("utf8");
        let decoded = percent_encoding::percent_decode_str(&info.pem_urlencoded)
            .decode_utf8()
            .expect("decode");
        assert_eq!(decoded, pem);
        assert!(info
            .pem_urlencoded
            .starts_with("-----BEGIN%20CERTIFICATE-----%0AMII"));
        assert!(info
            .pem_urlencoded
            .ends_with("%0A-----END%20CERTIFICATE-----%0A"));
        assert!(info
            .pem_urlencoded
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~%".contains(&b)));
        assert!(!info.pem_urlencoded.contains('+') && !info.pem_urlencoded.contains('/'));
    }

    #[test]
    fn base64_vectors() {
        for (input, expected) in [
            (&b""[..], ""),
            (b"f", "Zg=="),
            (b"fo", "Zm8="),
            (b"foo", "Zm9v"),
            (b"foob", "Zm9vYg=="),
            (b"\xfb\xff\xbf", "+/+/"),
        ] {
            let mut s = String::new();
            base64_encode_into(input, &mut s);
            assert_eq!(s, expected);
        }
    }

    #[test]
    fn render_all_and_none() {
        let der = make_cert(&[0x01]);
        let info = ViewerCertInfo::from_der(&der).expect("parse");
        let mut out = Vec::new();
        render_headers(Some(&info), &all_forward(), true, &mut out);
        let text = String::from_utf8(out.clone()).expect("ascii");
        let lines: Vec<&str> = text.split_terminator("\r\n").collect();
        assert_eq!(lines.len(), 7);
        assert_eq!(lines[0], "CloudFront-Viewer-Cert-Serial-Number: 01");
        assert!(lines[1].starts_with("CloudFront-Viewer-Cert-Issuer: CN="));
        assert!(lines[2].starts_with("CloudFront-Viewer-Cert-Subject: CN="));
        assert_eq!(lines[3], "CloudFront-Viewer-Cert-Present: 1");
        assert_eq!(
            lines[4],
            format!("CloudFront-Viewer-Cert-Sha256: {}", info.sha256)
        );
        assert!(lines[5].starts_with("CloudFront-Viewer-Cert-Validity: NotBefore="));
        assert!(lines[6].starts_with("CloudFront-Viewer-Cert-Pem: -----BEGIN%20"));
        assert!(text.ends_with("\r\n"));

        // Passthrough: no PEM even if enabled.
        out.clear();
        render_headers(Some(&info), &all_forward(), false, &mut out);
        let text = String::from_utf8(out.clone()).expect("ascii");
        assert!(!text.contains("-Pem:"));
        assert_eq!(text.matches("\r\n").count(), 6);

        // Selection.
        out.clear();
        let only = ForwardHeaders {
            serial_number: false,
            issuer: false,
            subject: true,
            present: false,
            sha256: true,
            validity: false,
            pem: false,
        };
        render_headers(Some(&info), &only, true, &mut out);
        let text = String::from_utf8(out.clone()).expect("ascii");
        assert_eq!(text.matches("\r\n").count(), 2);
        assert!(text.starts_with("CloudFront-Viewer-Cert-Subject: "));

        // No certificate.
        out.clear();
        render_headers(None, &all_forward(), true, &mut out);
        assert_eq!(out, b"CloudFront-Viewer-Cert-Present: 0\r\n");
        out.clear();
        render_headers(None, &only, true, &mut out);
        assert!(out.is_empty());

        // Appends, does not clear.
        out.clear();
        out.extend_from_slice(b"X: y\r\n");
        render_headers(None, &all_forward(), true, &mut out);
        assert_eq!(out, b"X: y\r\nCloudFront-Viewer-Cert-Present: 0\r\n");
    }

    /// DER of a Name: SEQUENCE OF SET OF (OID, value).
    fn der_tlv(tag: u8, content: &[u8]) -> Vec<u8> {
        let mut v = vec![tag];
        assert!(content.len() < 0x10000);
        if content.len() < 0x80 {
            v.push(content.len() as u8);
        } else if content.len() < 0x100 {
            v.extend_from_slice(&[0x81, content.len() as u8]);
        } else {
            v.extend_from_slice(&[0x82, (content.len() >> 8) as u8, content.len() as u8]);
        }
        v.extend_from_slice(content);
        v
    }

    fn atv(oid: &[u8], value_tag: u8, value: &[u8]) -> Vec<u8> {
        let mut c = der_tlv(0x06, oid);
        c.extend(der_tlv(value_tag, value));
        der_tlv(0x30, &c)
    }

    fn name(rdns: &[Vec<Vec<u8>>]) -> Vec<u8> {
        let mut seq = Vec::new();
        for rdn in rdns {
            seq.extend(der_tlv(0x31, &rdn.concat()));
        }
        der_tlv(0x30, &seq)
    }

    fn fmt(der: &[u8]) -> String {
        let (rest, n) = X509Name::from_der(der).expect("name");
        assert!(rest.is_empty());
        format_name_rfc2253(&n)
    }

    const CN: &[u8] = &[0x55, 0x04, 0x03];
    const O: &[u8] = &[0x55, 0x04, 0x0a];
    const OU: &[u8] = &[0x55, 0x04, 0x0b];
    const C: &[u8] = &[0x55, 0x04, 0x06];
    const DC: &[u8] = &[0x09, 0x92, 0x26, 0x89, 0x93, 0xf2, 0x2c, 0x64, 0x01, 0x19];
    const EMAIL: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x01];
    const UNKNOWN: &[u8] = &[0x2b, 0x06, 0x01, 0x04, 0x01, 0x82, 0x37, 0x63, 0x01]; // 1.3.6.1.4.1.311.99.1

    // Expected strings below were checked against
    // `openssl x509 -noout -subject -nameopt RFC2253` (OpenSSL 3.0).
    #[test]
    fn multi_valued_rdn_and_escaping() {
        let der = name(&[
            vec![atv(C, 0x13, b"US")],
            vec![atv(DC, 0x16, b"example")],
            vec![atv(O, 0x0c, b"a,b+c\"d\\e<f>g;h"), atv(OU, 0x0c, b"ou1")],
            vec![
                atv(CN, 0x0c, b" lead and trail "),
                atv(EMAIL, 0x16, b"x@y.z"),
            ],
        ]);
        assert_eq!(
            fmt(&der),
            r#"emailAddress=x@y.z+CN=\ lead and trail\ ,OU=ou1+O=a\,b\+c\"d\\e\<f\>g\;h,DC=example,C=US"#
        );
    }

    #[test]
    fn non_ascii_control_and_non_string_values() {
        let der = name(&[
            vec![atv(CN, 0x0c, "é\r\n#x".as_bytes())],
            vec![atv(UNKNOWN, 0x0c, b"hi")],
            vec![atv(O, 0x04, b"\x01\x02")],
            vec![atv(OU, 0x1e, &[0x00, 0x41, 0x00, 0xe9])],
            vec![atv(CN, 0x0c, b"\xff\xfe")],
            vec![atv(CN, 0x0c, b"")],
        ]);
        assert_eq!(
            fmt(&der),
            r"CN=,CN=#0C02FFFE,OU=A\C3\A9,O=#04020102,1.3.6.1.4.1.311.99.1=#0C026869,CN=\C3\A9\0D\0A#x"
        );
        assert_eq!(fmt(&name(&[])), "");
    }

    #[test]
    fn rejects_garbage_and_trailing_bytes() {
        assert!(ViewerCertInfo::from_der(b"").is_err());
        assert!(ViewerCertInfo::from_der(b"\x30\x03abc").is_err());
        let mut der = make_cert(&[7]);
        der.push(0);
        assert!(matches!(
            ViewerCertInfo::from_der(&der),
            Err(ViewerCertError::TrailingBytes(1))
        ));
        der.pop();
        // Every truncation fails without panicking.
        for n in 0..der.len() {
            assert!(ViewerCertInfo::from_der(&der[..n]).is_err());
        }
        // Random-ish byte flips never panic.
        for i in (0..der.len()).step_by(7) {
            let mut d = der.clone();
            d[i] ^= 0x5a;
            let _ = ViewerCertInfo::from_der(&d);
        }
    }

    #[test]
    fn der_hex_long_tags_and_lengths() {
        let long = vec![b'a'; 200];
        let der = name(&[vec![atv(UNKNOWN, 0x0c, &long)]]);
        let s = fmt(&der);
        assert!(s.starts_with("1.3.6.1.4.1.311.99.1=#0C81C8616161"));
        assert_eq!(s.len(), "1.3.6.1.4.1.311.99.1=#".len() + 2 * (3 + 200));
    }
}
