//! Zero-copy views of certificate fields that the `boring` API only offers as copies, and the
//! one per-connection setting it does not expose. Used on the handshake path.

use boring::ssl::SslRef;
use boring::x509::X509Ref;
use foreign_types::ForeignTypeRef;

/// The DER encoding of `cert`'s issuer Name, borrowed from the certificate.
pub fn issuer_name_der(cert: &X509Ref) -> &[u8] {
    let mut der: *const u8 = std::ptr::null();
    let mut len: usize = 0;
    // SAFETY: `cert` is a valid X509; X509_get_issuer_name returns a pointer owned by it, and
    // X509_NAME_get0_der returns a buffer owned by that name, which lives as long as `cert`
    // is borrowed (certificates are not mutated once parsed).
    unsafe {
        let name = boring_sys::X509_get_issuer_name(cert.as_ptr());
        if name.is_null() || boring_sys::X509_NAME_get0_der(name, &mut der, &mut len) != 1 {
            return &[];
        }
        if der.is_null() {
            return &[];
        }
        std::slice::from_raw_parts(der, len)
    }
}

/// The big-endian magnitude of `cert`'s serial number, borrowed from the certificate.
pub fn serial_magnitude(cert: &X509Ref) -> &[u8] {
    // Asn1IntegerRef::as_slice is not offered; an ASN1_INTEGER is an ASN1_STRING whose data
    // is the magnitude (the sign is in its type).
    // SAFETY: X509_get_serialNumber never returns null for a parsed certificate and the
    // string is owned by `cert`.
    unsafe {
        let serial = boring_sys::X509_get_serialNumber(cert.as_ptr());
        if serial.is_null() {
            return &[];
        }
        let data = boring_sys::ASN1_STRING_get0_data(serial.cast());
        let len = boring_sys::ASN1_STRING_length(serial.cast());
        if data.is_null() || len <= 0 {
            return &[];
        }
        std::slice::from_raw_parts(data, len as usize)
    }
}

/// The DER of every certificate the peer presented (leaf first), borrowed from the session:
/// no copy, no parse. Empty when the peer sent no certificate.
pub fn peer_certificates(ssl: &SslRef) -> impl Iterator<Item = &[u8]> + '_ {
    // SAFETY: `ssl` is a valid SSL; the stack and its buffers belong to its session (or to the
    // handshake in progress), which outlives the borrow of `ssl`.
    let stack = unsafe { boring_sys::SSL_get0_peer_certificates(ssl.as_ptr()) }
        .cast::<boring_sys::OPENSSL_STACK>();
    let count = if stack.is_null() {
        0
    } else {
        // SAFETY: a non-null stack from BoringSSL.
        unsafe { boring_sys::OPENSSL_sk_num(stack) }
    };
    (0..count).filter_map(move |i| {
        // SAFETY: `i` is in bounds; the elements are CRYPTO_BUFFERs owned by the stack.
        unsafe {
            let buffer = boring_sys::OPENSSL_sk_value(stack, i).cast::<boring_sys::CRYPTO_BUFFER>();
            if buffer.is_null() {
                return None;
            }
            let data = boring_sys::CRYPTO_BUFFER_data(buffer);
            let len = boring_sys::CRYPTO_BUFFER_len(buffer);
            (!data.is_null() && len > 0).then(|| std::slice::from_raw_parts(data, len))
        }
    })
}

/// The DER of the certificate the peer presented first (its leaf). None without one.
pub fn peer_leaf_der(ssl: &SslRef) -> Option<&[u8]> {
    peer_certificates(ssl).next()
}

/// The issuer Name DER and serial magnitude of a DER certificate, read straight from its
/// TBSCertificate without building an X509 object (what [`issuer_name_der`] and
/// [`serial_magnitude`] return for the parsed certificate). None if the DER is malformed.
pub fn issuer_and_serial_from_der(der: &[u8]) -> Option<(&[u8], &[u8])> {
    use boring_sys::{CBS_get_asn1, CBS_get_asn1_element, CBS_get_optional_asn1, CBS};
    const SEQUENCE: u32 = boring_sys::CBS_ASN1_SEQUENCE as u32;
    const INTEGER: u32 = boring_sys::CBS_ASN1_INTEGER as u32;
    const VERSION: u32 =
        (boring_sys::CBS_ASN1_CONSTRUCTED as u32) | (boring_sys::CBS_ASN1_CONTEXT_SPECIFIC as u32);
    let empty = || CBS {
        data: std::ptr::null(),
        len: 0,
    };
    let mut input = CBS {
        data: der.as_ptr(),
        len: der.len(),
    };
    let (mut cert, mut tbs, mut serial, mut issuer) = (empty(), empty(), empty(), empty());
    // SAFETY: every CBS points into `der` (or is empty); BoringSSL only reads through them.
    let ok = unsafe {
        CBS_get_asn1(&mut input, &mut cert, SEQUENCE) == 1
            && CBS_get_asn1(&mut cert, &mut tbs, SEQUENCE) == 1
            && CBS_get_optional_asn1(
                &mut tbs,
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                VERSION,
            ) == 1
            && CBS_get_asn1(&mut tbs, &mut serial, INTEGER) == 1
            && CBS_get_asn1(&mut tbs, std::ptr::null_mut(), SEQUENCE) == 1
            && CBS_get_asn1_element(&mut tbs, &mut issuer, SEQUENCE) == 1
    };
    if !ok || serial.len == 0 {
        return None;
    }
    // SAFETY: both views lie within `der`, which outlives the returned slices.
    let (issuer, mut serial) = unsafe {
        (
            std::slice::from_raw_parts(issuer.data, issuer.len),
            std::slice::from_raw_parts(serial.data, serial.len),
        )
    };
    // An ASN1_INTEGER keeps the magnitude: DER's leading zero (for a set high bit) goes.
    while serial.len() > 1 && serial[0] == 0 {
        serial = &serial[1..];
    }
    Some((issuer, serial))
}

/// Sets the session id context of one connection (`SSL_set_session_id_context`): sessions and
/// tickets issued under another context are not resumed.
pub fn set_session_id_context(ssl: &mut SslRef, sid_ctx: &[u8]) -> bool {
    // SAFETY: `ssl` is a valid SSL; BoringSSL copies at most 32 bytes and rejects longer input.
    unsafe {
        boring_sys::SSL_set_session_id_context(ssl.as_ptr(), sid_ctx.as_ptr(), sid_ctx.len()) == 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pki::{CertKind, CertSpec, Issued};
    use boring::x509::X509;

    #[test]
    fn issuer_and_serial_match_boring_copies() {
        let root = Issued::self_signed(CertSpec::new("Keys Root", CertKind::RootCa)).expect("root");
        let leaf = root
            .issue(CertSpec::new("leaf", CertKind::Client).serial(vec![0x00, 0x8f, 0x01, 0x02]))
            .expect("leaf");
        let cert = X509::from_der(&leaf.cert_der).expect("parse");
        assert_eq!(
            issuer_name_der(&cert),
            cert.issuer_name().to_der().expect("issuer der").as_slice()
        );
        let root_cert = X509::from_der(&root.cert_der).expect("root");
        assert_eq!(
            issuer_name_der(&cert),
            root_cert
                .subject_name()
                .to_der()
                .expect("subject der")
                .as_slice()
        );
        let bn = cert.serial_number().to_bn().expect("bn").to_vec();
        assert_eq!(serial_magnitude(&cert), bn.as_slice());
        assert_eq!(serial_magnitude(&cert), &[0x8f, 0x01, 0x02]);
    }

    #[test]
    fn der_walk_agrees_with_the_parsed_certificate() {
        let root = Issued::self_signed(CertSpec::new("Walk Root", CertKind::RootCa)).expect("root");
        for serial in [vec![0x00, 0x8f, 0x01], vec![0x7f], vec![0x01, 0x00, 0x00]] {
            let leaf = root
                .issue(CertSpec::new("leaf", CertKind::Client).serial(serial))
                .expect("leaf");
            let cert = X509::from_der(&leaf.cert_der).expect("parse");
            let (issuer, serial) = issuer_and_serial_from_der(&leaf.cert_der).expect("walk");
            assert_eq!(issuer, issuer_name_der(&cert));
            assert_eq!(serial, serial_magnitude(&cert));
        }
        let (issuer, _) = issuer_and_serial_from_der(&root.cert_der).expect("walk root");
        assert_eq!(
            issuer,
            issuer_name_der(&X509::from_der(&root.cert_der).expect("root"))
        );
        assert!(issuer_and_serial_from_der(b"\x30\x03\x02\x01\x01").is_none());
        assert!(issuer_and_serial_from_der(&leaf_truncated(&root)).is_none());
    }

    fn leaf_truncated(root: &Issued) -> Vec<u8> {
        let mut der = root.cert_der.clone();
        der.truncate(der.len() / 2);
        der
    }
}
