//! Comparing X.509 distinguished names the way certificate path validation does.
//!
//! Two encodings of one name are the same issuer to BoringSSL's chain building: it compares
//! names in a canonical form (RFC 5280 section 7.1, as OpenSSL and BoringSSL implement it), so
//! a certificate whose issuer field says `CN=Test CA` as a UTF8String chains to a CA whose
//! subject says it as a PrintableString, and a multi-valued RDN matches whatever the order of
//! its attributes. Revocation must match the same way: comparing the DER bytes would let a
//! CRL's entries never apply to certificates of its own issuer, and a revoked certificate be
//! accepted. [`canonical_name`] gives the bytes to compare.

use x509_parser::der_parser::asn1_rs::Tag;
use x509_parser::prelude::FromDer;
use x509_parser::x509::X509Name;

/// A canonical form of the DER Name `der`, equal for two names exactly when path validation
/// treats them as the same name; None if `der` is not a Name.
///
/// Each attribute value of a string type (UTF8String, PrintableString, IA5String,
/// NumericString, T61String, BMPString, UniversalString, VisibleString) is decoded to UTF-8,
/// stripped of leading and trailing white space, with inner runs of white space collapsed to
/// one space and ASCII letters lowercased; other values are kept as their DER tag and bytes.
/// The attributes of each RDN are sorted, so a multi-valued RDN's order does not matter. The
/// result is an unambiguous, length-prefixed concatenation (not DER).
pub fn canonical_name(der: &[u8]) -> Option<Vec<u8>> {
    let (rest, name) = X509Name::from_der(der).ok()?;
    // Only a whole, well-formed Name: no trailing bytes, and no RDN that is not a SET (the
    // parser skips such content, which must not make garbage equal to the empty name).
    if !rest.is_empty() || (name.iter_rdn().next().is_none() && der != [0x30, 0x00]) {
        return None;
    }
    let mut out = Vec::with_capacity(der.len());
    for rdn in name.iter_rdn() {
        let mut attributes: Vec<Vec<u8>> = rdn
            .iter()
            .map(|attribute| {
                let mut one = Vec::new();
                push_field(&mut one, attribute.attr_type().as_bytes());
                let value = attribute.attr_value();
                match canonical_text(value.tag(), value.data) {
                    Some(text) => {
                        one.push(b's');
                        push_field(&mut one, text.as_bytes());
                    }
                    None => {
                        one.push(b'r');
                        push_field(&mut one, &value.tag().0.to_be_bytes());
                        push_field(&mut one, value.data);
                    }
                }
                one
            })
            .collect();
        attributes.sort();
        out.push(b'{');
        for attribute in attributes {
            push_field(&mut out, &attribute);
        }
        out.push(b'}');
    }
    Some(out)
}

/// Appends `bytes` with a 4-byte length prefix.
fn push_field(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&u32::try_from(bytes.len()).unwrap_or(u32::MAX).to_be_bytes());
    out.extend_from_slice(bytes);
}

/// The canonical text of a string-typed value, None for other types (or undecodable bytes).
fn canonical_text(tag: Tag, data: &[u8]) -> Option<String> {
    let decoded: String = match tag {
        Tag::Utf8String
        | Tag::PrintableString
        | Tag::Ia5String
        | Tag::NumericString
        | Tag::VisibleString => std::str::from_utf8(data).ok()?.to_owned(),
        // T61String: decoded as Latin-1, as OpenSSL and BoringSSL do.
        Tag::T61String => data.iter().map(|&b| char::from(b)).collect(),
        Tag::BmpString => {
            if !data.len().is_multiple_of(2) {
                return None;
            }
            let units: Vec<u16> = data
                .chunks_exact(2)
                .map(|c| u16::from_be_bytes([c[0], c[1]]))
                .collect();
            String::from_utf16(&units).ok()?
        }
        Tag::UniversalString => {
            if !data.len().is_multiple_of(4) {
                return None;
            }
            data.chunks_exact(4)
                .map(|c| char::from_u32(u32::from_be_bytes([c[0], c[1], c[2], c[3]])))
                .collect::<Option<String>>()?
        }
        _ => return None,
    };
    let mut text = String::with_capacity(decoded.len());
    for word in decoded.split(|c: char| c.is_ascii_whitespace()) {
        if word.is_empty() {
            continue;
        }
        if !text.is_empty() {
            text.push(' ');
        }
        text.extend(word.chars().map(|c| c.to_ascii_lowercase()));
    }
    Some(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One attribute: (OID DER content, value tag, value).
    type Attribute<'a> = (&'a [u8], u8, &'a [u8]);

    /// DER of a Name built from RDNs, each a list of attributes.
    fn name(rdns: &[&[Attribute<'_>]]) -> Vec<u8> {
        fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
            assert!(content.len() < 128);
            let mut v = vec![tag, content.len() as u8];
            v.extend_from_slice(content);
            v
        }
        let mut seq = Vec::new();
        for rdn in rdns {
            let mut set = Vec::new();
            for (oid, tag, value) in rdn.iter() {
                let mut atv = tlv(0x06, oid);
                atv.extend(tlv(*tag, value));
                set.extend(tlv(0x30, &atv));
            }
            seq.extend(tlv(0x31, &set));
        }
        tlv(0x30, &seq)
    }

    const CN: &[u8] = &[0x55, 0x04, 0x03];
    const O: &[u8] = &[0x55, 0x04, 0x0a];
    const OU: &[u8] = &[0x55, 0x04, 0x0b];
    const UTF8: u8 = 0x0c;
    const PRINTABLE: u8 = 0x13;
    const BMP: u8 = 0x1e;

    #[test]
    fn encodings_of_one_name_compare_equal() {
        let printable = name(&[
            &[(O, PRINTABLE, b"Example")],
            &[(CN, PRINTABLE, b"Test CA")],
        ]);
        let utf8 = name(&[&[(O, UTF8, b"Example")], &[(CN, UTF8, b"Test CA")]]);
        let spaced = name(&[&[(O, UTF8, b" example ")], &[(CN, UTF8, b"TEST   ca")]]);
        let bmp = name(&[
            &[(O, BMP, b"\0E\0x\0a\0m\0p\0l\0e")],
            &[(CN, UTF8, b"Test CA")],
        ]);
        let canon = canonical_name(&printable).expect("name");
        for other in [&utf8, &spaced, &bmp] {
            assert_ne!(&printable, other, "different DER");
            assert_eq!(canonical_name(other).as_ref(), Some(&canon));
        }
        // A multi-valued RDN in either order.
        let ab = name(&[&[(O, UTF8, b"Example"), (OU, UTF8, b"Viewers")]]);
        let ba = name(&[&[(OU, PRINTABLE, b"viewers"), (O, UTF8, b"EXAMPLE")]]);
        assert_ne!(ab, ba);
        assert_eq!(canonical_name(&ab), canonical_name(&ba));
    }

    #[test]
    fn different_names_stay_different() {
        let base = canonical_name(&name(&[&[(CN, UTF8, b"Test CA")]]));
        for other in [
            name(&[&[(CN, UTF8, b"Test CA 2")]]),
            name(&[&[(O, UTF8, b"Test CA")]]),
            name(&[&[(CN, UTF8, b"Test")], &[(CN, UTF8, b"CA")]]),
            name(&[&[(CN, UTF8, b"Test"), (CN, UTF8, b"CA")]]),
            name(&[&[(CN, 0x04, b"Test CA")]]), // an OCTET STRING value
        ] {
            assert_ne!(canonical_name(&other), base);
        }
        assert_eq!(canonical_name(b"\x30\x03\x02\x01\x00"), None);
        assert_eq!(canonical_name(b"\x04\x01\x00"), None);
        assert_eq!(canonical_name(b"\x30\x00"), Some(Vec::new()));
        assert_eq!(canonical_name(b""), None);
    }
}
