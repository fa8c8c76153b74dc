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

/// The DER of the certificate the peer presented first (its leaf), borrowed from the
/// session: no copy and no re-encoding. None when the peer sent no certificate.
pub fn peer_leaf_der(ssl: &SslRef) -> Option<&[u8]> {
    // SAFETY: `ssl` is a valid SSL; the stack and its buffers belong to the established
    // session, which lives at least as long as `ssl` is borrowed.
    unsafe {
        let certs = boring_sys::SSL_get0_peer_certificates(ssl.as_ptr());
        let stack = certs.cast::<boring_sys::OPENSSL_STACK>();
        if certs.is_null() || boring_sys::OPENSSL_sk_num(stack) == 0 {
            return None;
        }
        let leaf = boring_sys::OPENSSL_sk_value(stack, 0).cast::<boring_sys::CRYPTO_BUFFER>();
        if leaf.is_null() {
            return None;
        }
        let data = boring_sys::CRYPTO_BUFFER_data(leaf);
        let len = boring_sys::CRYPTO_BUFFER_len(leaf);
        if data.is_null() || len == 0 {
            return None;
        }
        Some(std::slice::from_raw_parts(data, len))
    }
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
}
