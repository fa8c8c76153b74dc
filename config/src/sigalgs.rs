//! `site.mtls.signature_algorithms`: the TLS signature schemes a site accepts in a client's
//! CertificateVerify, which it also advertises in its CertificateRequest.

use crate::error::Collector;

/// TLS SignatureScheme names (RFC 8446 section 4.2.3, and the ML-DSA code points) and their
/// numbers.
const SCHEMES: [(&str, u16); 15] = [
    ("ecdsa_secp256r1_sha256", 0x0403),
    ("ecdsa_secp384r1_sha384", 0x0503),
    ("ecdsa_secp521r1_sha512", 0x0603),
    ("rsa_pss_rsae_sha256", 0x0804),
    ("rsa_pss_rsae_sha384", 0x0805),
    ("rsa_pss_rsae_sha512", 0x0806),
    ("rsa_pkcs1_sha256", 0x0401),
    ("rsa_pkcs1_sha384", 0x0501),
    ("rsa_pkcs1_sha512", 0x0601),
    ("ed25519", 0x0807),
    ("rsa_pkcs1_sha1", 0x0201),
    ("ecdsa_sha1", 0x0203),
    ("mldsa44", 0x0904),
    ("mldsa65", 0x0905),
    ("mldsa87", 0x0906),
];

/// The default: what BoringSSL offers without SHA-1 (broken for signatures) and without
/// ML-DSA (not yet in client certificates; an operator can opt in), strongest curve-hash pairs
/// first. The same set CloudFront's TLSv1.2_2021 policy accepts.
pub const DEFAULT_SIGNATURE_ALGORITHMS: [u16; 8] = [
    0x0403, 0x0804, 0x0401, 0x0503, 0x0805, 0x0501, 0x0806, 0x0601,
];

/// The number of a scheme name, if known.
pub fn signature_scheme(name: &str) -> Option<u16> {
    SCHEMES
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|&(_, code)| code)
}

/// The name of a scheme number, if known.
pub fn signature_scheme_name(code: u16) -> Option<&'static str> {
    SCHEMES
        .iter()
        .find(|&&(_, c)| c == code)
        .map(|&(name, _)| name)
}

/// Validates `site[i].mtls.signature_algorithms` (None: the default list).
pub(crate) fn validate_signature_algorithms(
    raw: Option<&[String]>,
    prefix: &str,
    c: &mut Collector<'_>,
) -> Option<Vec<u16>> {
    let Some(names) = raw else {
        return Some(DEFAULT_SIGNATURE_ALGORITHMS.to_vec());
    };
    let key = format!("{prefix}.mtls.signature_algorithms");
    if names.is_empty() {
        c.config(key, "must list at least one signature algorithm");
        return None;
    }
    let mut codes = Vec::with_capacity(names.len());
    let mut ok = true;
    for (j, name) in names.iter().enumerate() {
        match signature_scheme(name.trim()) {
            Some(code) if codes.contains(&code) => {
                c.config(format!("{key}[{j}]"), format!("{name:?} is listed twice"));
                ok = false;
            }
            Some(code) => codes.push(code),
            None => {
                let known: Vec<&str> = SCHEMES.iter().map(|(n, _)| *n).collect();
                c.config(
                    format!("{key}[{j}]"),
                    format!(
                        "unknown signature algorithm {name:?} (expected one of {})",
                        known.join(", ")
                    ),
                );
                ok = false;
            }
        }
    }
    ok.then_some(codes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_numbers() {
        assert_eq!(signature_scheme("ECDSA_secp256r1_sha256"), Some(0x0403));
        assert_eq!(signature_scheme("mldsa65"), Some(0x0905));
        assert_eq!(signature_scheme("rsa_sha1"), None);
        assert_eq!(signature_scheme_name(0x0201), Some("rsa_pkcs1_sha1"));
        for code in DEFAULT_SIGNATURE_ALGORITHMS {
            let name = signature_scheme_name(code).expect("known");
            assert!(
                !name.contains("sha1") && !name.starts_with("mldsa"),
                "{name}"
            );
        }
    }
}
