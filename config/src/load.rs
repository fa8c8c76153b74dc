//! Reading referenced files: certificate chains, trust stores and private keys, from a path
//! or an object URL (through [`Files`]).

use x509_parser::certificate::X509Certificate;

use crate::error::ConfigError;
use crate::snapshot::{PrivateKeyPem, TrustAnchor};
use crate::sources::{Files, Location};

/// PEM labels accepted for private keys.
const KEY_TAGS: [&str; 3] = ["PRIVATE KEY", "EC PRIVATE KEY", "RSA PRIVATE KEY"];

/// Loads a PEM certificate chain (leaf first) and returns the DER blocks.
/// Every unparsable certificate is reported.
pub(crate) fn load_certificate_chain(
    files: &Files<'_>,
    location: &Location,
    key: &str,
) -> Result<Vec<Vec<u8>>, Vec<ConfigError>> {
    let path = location.to_path();
    let ders = read_certificates(files, location, key)?;
    let mut errors = Vec::new();
    for (index, der) in ders.iter().enumerate() {
        if let Err(reason) = parse_certificate(der, index, |_| Ok(())) {
            errors.push(ConfigError::new(&path, key, reason));
        }
    }
    if errors.is_empty() {
        Ok(ders)
    } else {
        Err(errors)
    }
}

/// Loads a PEM bundle of CA certificates. Every certificate that is
/// unparsable or not a CA (basicConstraints cA = true) is reported.
pub(crate) fn load_trust_store(
    files: &Files<'_>,
    location: &Location,
    key: &str,
) -> Result<Vec<TrustAnchor>, Vec<ConfigError>> {
    let path = location.to_path();
    let ders = read_certificates(files, location, key)?;
    let mut anchors = Vec::with_capacity(ders.len());
    let mut errors = Vec::new();
    for (index, der) in ders.into_iter().enumerate() {
        let inspected = parse_certificate(&der, index, |cert| {
            let subject = cert.subject().to_string();
            let is_ca = cert
                .basic_constraints()
                .map_err(|e| {
                    format!("certificate #{index} ({subject}) has an invalid basicConstraints extension: {e}")
                })?
                .is_some_and(|bc| bc.value.ca);
            if !is_ca {
                return Err(format!(
                    "certificate #{index} ({subject}) is not a CA certificate (basicConstraints cA is not true)"
                ));
            }
            let self_signed = cert.subject().as_raw() == cert.issuer().as_raw();
            Ok((subject, self_signed))
        });
        match inspected {
            Ok((subject, self_signed)) => anchors.push(TrustAnchor {
                der,
                subject,
                self_signed,
            }),
            Err(reason) => errors.push(ConfigError::new(&path, key, reason)),
        }
    }
    if errors.is_empty() {
        Ok(anchors)
    } else {
        Err(errors)
    }
}

/// Loads a private key file and returns its single key block re-encoded as PEM.
pub(crate) fn load_private_key(
    files: &Files<'_>,
    location: &Location,
    key: &str,
) -> Result<PrivateKeyPem, ConfigError> {
    let path = &location.to_path();
    let bytes = files.read(location, key)?;
    let blocks = pem::parse_many(&bytes)
        .map_err(|e| ConfigError::new(path, key, format!("invalid PEM: {e}")))?;
    if blocks.iter().any(|b| b.tag() == "ENCRYPTED PRIVATE KEY") {
        return Err(ConfigError::new(
            path,
            key,
            "encrypted private keys are not supported",
        ));
    }
    let mut keys = blocks.iter().filter(|b| KEY_TAGS.contains(&b.tag()));
    let Some(block) = keys.next() else {
        return Err(ConfigError::new(
            path,
            key,
            "no PRIVATE KEY block found (expected PKCS#8 \"PRIVATE KEY\", \"EC PRIVATE KEY\" or \"RSA PRIVATE KEY\")",
        ));
    };
    if keys.next().is_some() {
        return Err(ConfigError::new(
            path,
            key,
            "more than one private key block found; expected exactly one",
        ));
    }
    if block.contents().is_empty() {
        return Err(ConfigError::new(path, key, "private key block is empty"));
    }
    Ok(PrivateKeyPem::new(pem::encode(block).into_bytes()))
}

/// Reads `path` and returns the DER contents of its CERTIFICATE blocks
/// (other blocks are ignored); at least one is required.
fn read_certificates(
    files: &Files<'_>,
    location: &Location,
    key: &str,
) -> Result<Vec<Vec<u8>>, Vec<ConfigError>> {
    let path = location.to_path();
    let bytes = files.read(location, key).map_err(|e| vec![e])?;
    let blocks = pem::parse_many(&bytes)
        .map_err(|e| vec![ConfigError::new(&path, key, format!("invalid PEM: {e}"))])?;
    let ders: Vec<Vec<u8>> = blocks
        .into_iter()
        .filter(|b| b.tag() == "CERTIFICATE")
        .map(pem::Pem::into_contents)
        .collect();
    if ders.is_empty() {
        return Err(vec![ConfigError::new(
            &path,
            key,
            "no CERTIFICATE blocks found in PEM file",
        )]);
    }
    Ok(ders)
}

/// Parses certificate `index` of a bundle with x509-parser and runs `inspect` on it.
fn parse_certificate<T>(
    der: &[u8],
    index: usize,
    inspect: impl FnOnce(&X509Certificate<'_>) -> Result<T, String>,
) -> Result<T, String> {
    match x509_parser::parse_x509_certificate(der) {
        Ok((rest, _)) if !rest.is_empty() => Err(format!(
            "certificate #{index} in bundle has {} trailing bytes after the DER structure",
            rest.len()
        )),
        Ok((_, cert)) => inspect(&cert),
        Err(e) => Err(format!(
            "certificate #{index} in bundle cannot be parsed: {e}"
        )),
    }
}
