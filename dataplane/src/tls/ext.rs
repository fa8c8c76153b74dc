//! Every BoringSSL call the `boring` crate does not wrap safely, in one place.
//!
//! The rest of the TLS layer works with `boring`'s safe types and the functions here; nothing
//! outside this file calls `boring_sys`. Calls that report failure through their return value
//! go through [`cvt`], which turns it into BoringSSL's error stack. The two C callbacks the
//! contexts install (certificate verification and nothing else) are trampolines here that call
//! safe Rust in [`super::context`] and never unwind into C.

use std::ffi::{c_int, CStr};

use boring::error::ErrorStack;
use boring::pkey::{PKey, Private};
use boring::ssl::{SslContextBuilder, SslRef, SslVerifyMode};
use boring::stack::Stack;
use boring::x509::verify::X509VerifyFlags;
use boring::x509::{X509NameRef, X509Ref, X509StoreContextRef, X509VerifyError, X509};
use foreign_types::ForeignTypeRef;

/// BoringSSL's convention for most functions: 1 (or any positive value) on success, 0 or -1 on
/// failure with the reason on the thread's error stack.
pub(crate) fn cvt(ret: c_int) -> Result<c_int, ErrorStack> {
    if ret > 0 {
        Ok(ret)
    } else {
        Err(ErrorStack::get())
    }
}

// ---------------------------------------------------------------------------------------------
// Certificates as DER, without copies.
// ---------------------------------------------------------------------------------------------

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
/// no copy, no parse. Empty when the peer sent no certificate. During a handshake, and after
/// one that failed, these are the certificates of the handshake in progress.
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

// ---------------------------------------------------------------------------------------------
// Certificate verification.
// ---------------------------------------------------------------------------------------------

/// Gives a store context BoringSSL's settings for verifying a TLS client's chain: the
/// `ssl_client` purpose and trust (what BoringSSL's own verification of a client sets).
pub(crate) fn set_ssl_client_purpose(ctx: &mut X509StoreContextRef) -> Result<(), ErrorStack> {
    // SAFETY: `ctx` is initialised; the name is a static NUL-terminated string.
    cvt(unsafe { boring_sys::X509_STORE_CTX_set_default(ctx.as_ptr(), c"ssl_client".as_ptr()) })
        .map(|_| ())
}

/// The canonical hash of a name (what `X509_LOOKUP_hash_dir` uses), to index trust anchors.
pub(crate) fn name_hash(name: &X509NameRef) -> u32 {
    // SAFETY: `name` is a valid X509_NAME borrowed for the call.
    unsafe { boring_sys::X509_NAME_hash(name.as_ptr()) }
}

/// Makes `anchors` the only trusted certificates of the verification in `ctx` (instead of the
/// store it was initialised with). `anchors` must outlive the verification: BoringSSL keeps a
/// pointer to it.
pub(crate) fn trust_only(ctx: &mut X509StoreContextRef, anchors: &Stack<X509>) {
    // SAFETY: `ctx` is an initialised verification context; the stack is not modified and, per
    // this function's contract, outlives the verification that reads it.
    unsafe { boring_sys::X509_STORE_CTX_set0_trusted_stack(ctx.as_ptr(), anchors.as_ptr()) }
}

/// The TLS alert BoringSSL sends for an X.509 verification error (unknown_ca,
/// certificate_expired, certificate_revoked, bad_certificate, ...).
pub(crate) fn alert_for_verify_error(error: X509VerifyError) -> u8 {
    // SAFETY: a pure mapping from an X.509 error code to an alert number.
    let alert = unsafe { boring_sys::SSL_alert_from_verify_result(error.as_raw().into()) };
    u8::try_from(alert).unwrap_or(super::refusal::alert::BAD_CERTIFICATE)
}

/// BoringSSL's `X509_V_FLAG_NO_CHECK_TIME`, which the `boring` bitflags do not name.
pub(crate) fn no_check_time() -> X509VerifyFlags {
    X509VerifyFlags::from_bits_retain(boring_sys::X509_V_FLAG_NO_CHECK_TIME as _)
}

/// BoringSSL's long name of a TLS alert ("handshake failure", "unknown CA", ...).
pub fn alert_description(alert: u8) -> &'static str {
    // SAFETY: returns a pointer to a static NUL-terminated string for every value.
    let text = unsafe { boring_sys::SSL_alert_desc_string_long(c_int::from(alert)) };
    if text.is_null() {
        return "unknown";
    }
    // SAFETY: a static NUL-terminated string (see above).
    unsafe { CStr::from_ptr(text) }
        .to_str()
        .unwrap_or("unknown")
}

/// Whether a handshake error is BoringSSL's refusal of a client that sent no certificate where
/// one is required.
pub fn is_missing_certificate(error: &boring::error::Error) -> bool {
    error.reason_code() == boring_sys::SSL_R_PEER_DID_NOT_RETURN_A_CERTIFICATE
}

/// Installs the viewer verification callback on a connection, with `mode`.
pub(crate) fn set_connection_verify(ssl: &mut SslRef, mode: SslVerifyMode) {
    // SAFETY: a live SSL; `verify_trampoline` has the signature BoringSSL expects and never
    // unwinds.
    unsafe {
        boring_sys::SSL_set_custom_verify(ssl.as_ptr(), mode.bits(), Some(verify_trampoline));
    }
}

/// Installs the viewer verification callback on a context, with `mode`.
pub(crate) fn set_context_verify(builder: &mut SslContextBuilder, mode: SslVerifyMode) {
    // SAFETY: a valid SSL_CTX under construction; `verify_trampoline` has the signature
    // BoringSSL expects and never unwinds.
    unsafe {
        boring_sys::SSL_CTX_set_custom_verify(
            builder.as_ptr(),
            mode.bits(),
            Some(verify_trampoline),
        );
    }
}

/// BoringSSL's custom-verify callback: runs [`super::context::verify_viewer`] and reports its
/// decision. A panic (never expected) refuses with internal_error instead of unwinding into C.
unsafe extern "C" fn verify_trampoline(
    ssl: *mut boring_sys::SSL,
    out_alert: *mut u8,
) -> boring_sys::ssl_verify_result_t {
    let verdict = std::panic::catch_unwind(|| {
        // SAFETY: BoringSSL passes the live SSL being verified, exclusively for this call.
        let ssl = unsafe { SslRef::from_ptr_mut(ssl) };
        super::context::verify_viewer(ssl)
    })
    .unwrap_or(Err(super::refusal::alert::INTERNAL_ERROR));
    match verdict {
        Ok(()) => boring_sys::ssl_verify_result_t::ssl_verify_ok,
        Err(alert) => {
            // SAFETY: BoringSSL passes a writable alert byte.
            unsafe { *out_alert = alert };
            boring_sys::ssl_verify_result_t::ssl_verify_invalid
        }
    }
}

/// Has a context report every TLS alert its connections send or receive to
/// [`super::context::note_alert`] (BoringSSL's info callback).
pub(crate) fn record_alerts(builder: &mut SslContextBuilder) {
    // SAFETY: a valid SSL_CTX under construction; `info_trampoline` has the signature
    // BoringSSL expects and never unwinds.
    unsafe { boring_sys::SSL_CTX_set_info_callback(builder.as_ptr(), Some(info_trampoline)) };
}

/// BoringSSL's info callback: forwards alerts (`value` is level << 8 | description).
unsafe extern "C" fn info_trampoline(ssl: *const boring_sys::SSL, kind: c_int, value: c_int) {
    let sent = match kind {
        boring_sys::SSL_CB_WRITE_ALERT => true,
        boring_sys::SSL_CB_READ_ALERT => false,
        _ => return,
    };
    let _ = std::panic::catch_unwind(|| {
        // SAFETY: BoringSSL passes the live SSL the event belongs to.
        let ssl = unsafe { SslRef::from_ptr(ssl.cast_mut()) };
        super::context::note_alert(ssl, sent, (value & 0xff) as u8);
    });
}

// ---------------------------------------------------------------------------------------------
// Contexts and connections.
// ---------------------------------------------------------------------------------------------

/// Sets the session id context of one connection (`SSL_set_session_id_context`): sessions and
/// tickets issued under another context are not resumed.
pub(crate) fn set_session_id_context(ssl: &mut SslRef, sid_ctx: &[u8]) -> Result<(), ErrorStack> {
    // SAFETY: `ssl` is a valid SSL; BoringSSL copies at most 32 bytes and rejects longer input.
    cvt(unsafe {
        boring_sys::SSL_set_session_id_context(ssl.as_ptr(), sid_ctx.as_ptr(), sid_ctx.len())
    })
    .map(|_| ())
}

/// Turns session tickets off for one connection (set in the ClientHello callback, before
/// BoringSSL looks at a ticket or decides to issue one, in TLS 1.2 and 1.3 alike).
pub(crate) fn disable_tickets(ssl: &mut SslRef) {
    // SAFETY: `ssl` is a live SSL; SSL_set_options only ORs in option bits.
    unsafe { boring_sys::SSL_set_options(ssl.as_ptr(), boring_sys::SSL_OP_NO_TICKET as u32) };
}

/// Queues a fatal alert on a connection whose handshake completed (the refusal of a decision
/// made after it); the caller sends the queued bytes. False if BoringSSL refused.
pub(crate) fn send_fatal_alert(ssl: &mut SslRef, alert: u8) -> bool {
    // SAFETY: `ssl` is a live SSL; the alert is written into its write buffer.
    unsafe { boring_sys::SSL_send_fatal_alert(ssl.as_ptr(), alert) > 0 }
}

/// Frees the handshake-only configuration (certificate, key, CA names) of a connection once
/// its handshake is done.
pub(crate) fn shed_handshake_config(ssl: &mut SslRef) {
    // SAFETY: `ssl` is a valid, not yet started SSL.
    unsafe { boring_sys::SSL_set_shed_handshake_config(ssl.as_ptr(), 1) };
}

/// How many TLS 1.3 session tickets a context issues per handshake.
pub(crate) fn set_num_tickets(builder: &mut SslContextBuilder, tickets: usize) {
    // SAFETY: a valid SSL_CTX under construction.
    unsafe { boring_sys::SSL_CTX_set_num_tickets(builder.as_ptr(), tickets) };
}

/// Whether BoringSSL holds decrypted or undecrypted input for this connection.
pub(crate) fn has_pending(ssl: &SslRef) -> bool {
    // SAFETY: `ssl` is a live SSL.
    unsafe { boring_sys::SSL_has_pending(ssl.as_ptr()) != 0 }
}

/// Makes BoringSSL write its queued handshake flight (session tickets) with a zero-byte write,
/// which SSL_write documents (the `boring` wrapper returns early for an empty slice). False if
/// BoringSSL reported an error.
pub(crate) fn write_queued_flight(ssl: &mut SslRef) -> bool {
    // SAFETY: `ssl` is a live SSL; a zero-length write reads no memory through the pointer.
    unsafe { boring_sys::SSL_write(ssl.as_ptr(), [0u8; 1].as_ptr().cast(), 0) >= 0 }
}

/// Installs the server chain (DER, leaf first) and key on a buffers-only context.
pub(crate) fn set_chain_and_key(
    builder: &mut SslContextBuilder,
    chain: &[Vec<u8>],
    key: &PKey<Private>,
) -> Result<(), ErrorStack> {
    let buffers = chain
        .iter()
        .map(|der| CryptoBuffer::new(der))
        .collect::<Result<Vec<_>, _>>()?;
    let pointers: Vec<*mut boring_sys::CRYPTO_BUFFER> = buffers.iter().map(|b| b.0).collect();
    // SAFETY: valid context, buffers and key; BoringSSL takes its own references.
    cvt(unsafe {
        boring_sys::SSL_CTX_set_chain_and_key(
            builder.as_ptr(),
            pointers.as_ptr(),
            pointers.len(),
            key.as_ptr(),
            std::ptr::null(),
        )
    })
    .map(|_| ())
}

/// Sets the CA names sent in the CertificateRequest (`advertise_ca_names`), each a DER Name.
pub(crate) fn set_client_ca_names(
    builder: &mut SslContextBuilder,
    names: &[Vec<u8>],
) -> Result<(), ErrorStack> {
    let buffers = names
        .iter()
        .map(|name| CryptoBuffer::new(name))
        .collect::<Result<Vec<_>, _>>()?;
    // SAFETY: a fresh stack; each pushed buffer's reference moves into it (and is freed with it
    // on failure), and the stack's ownership moves into the context (SSL_CTX_set0_client_CAs).
    unsafe {
        let stack = boring_sys::OPENSSL_sk_new_null();
        if stack.is_null() {
            return Err(ErrorStack::get());
        }
        for buffer in buffers {
            if boring_sys::OPENSSL_sk_push(stack, buffer.0.cast()) == 0 {
                let error = ErrorStack::get();
                for i in 0..boring_sys::OPENSSL_sk_num(stack) {
                    boring_sys::CRYPTO_BUFFER_free(boring_sys::OPENSSL_sk_value(stack, i).cast());
                }
                boring_sys::OPENSSL_sk_free(stack);
                return Err(error);
            }
            std::mem::forget(buffer);
        }
        boring_sys::SSL_CTX_set0_client_CAs(builder.as_ptr(), stack.cast());
    }
    Ok(())
}

/// An owned CRYPTO_BUFFER reference.
struct CryptoBuffer(*mut boring_sys::CRYPTO_BUFFER);

impl CryptoBuffer {
    fn new(der: &[u8]) -> Result<Self, ErrorStack> {
        // SAFETY: BoringSSL copies `der`.
        let buffer =
            unsafe { boring_sys::CRYPTO_BUFFER_new(der.as_ptr(), der.len(), std::ptr::null_mut()) };
        if buffer.is_null() {
            Err(ErrorStack::get())
        } else {
            Ok(Self(buffer))
        }
    }
}

impl Drop for CryptoBuffer {
    fn drop(&mut self) {
        // SAFETY: we own one reference.
        unsafe { boring_sys::CRYPTO_BUFFER_free(self.0) };
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
        let mut truncated = root.cert_der.clone();
        truncated.truncate(truncated.len() / 2);
        assert!(issuer_and_serial_from_der(&truncated).is_none());
    }

    #[test]
    fn alert_names_and_verify_alerts() {
        assert_eq!(alert_description(40), "handshake failure");
        assert_eq!(
            alert_for_verify_error(X509VerifyError::CERT_HAS_EXPIRED),
            45
        );
        assert_eq!(alert_for_verify_error(X509VerifyError::CERT_REVOKED), 44);
        assert_eq!(
            alert_for_verify_error(X509VerifyError::UNABLE_TO_GET_ISSUER_CERT_LOCALLY),
            48
        );
    }
}
