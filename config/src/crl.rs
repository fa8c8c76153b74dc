//! Loading CRL files and verifying them against a site's trust store.

use std::collections::HashSet;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use x509_parser::certificate::X509Certificate;
use x509_parser::revocation_list::CertificateRevocationList;
use x509_parser::time::ASN1Time;

use crate::error::ConfigError;
use crate::name::canonical_name;
use crate::revocation::{serial_from_bytes, CrlSnapshot};
use crate::snapshot::TrustAnchor;
use crate::sources::{Files, Location};

/// PEM label of a CRL block.
const CRL_TAG: &str = "X509 CRL";

/// A CRL that loaded, plus the human-readable nextUpdate for warnings.
pub(crate) struct LoadedCrl {
    pub(crate) crl: CrlSnapshot,
    /// nextUpdate as printed by x509-parser, if present.
    pub(crate) next_update_text: Option<String>,
}

/// Loads every CRL at `location` (PEM with one or more `X509 CRL` blocks, or
/// a single DER CRL). When `trust_store` is given, each CRL's issuer must be
/// one of its certificates and the signature must verify. Every problem is
/// reported under `key`.
pub(crate) fn load_crls(
    files: &Files<'_>,
    location: &Location,
    key: &str,
    trust_store: Option<&[TrustAnchor]>,
) -> Result<Vec<LoadedCrl>, Vec<ConfigError>> {
    let path = &location.to_path();
    let bytes = files.read(location, key).map_err(|e| vec![e])?;
    let ders = crl_ders(&bytes).map_err(|reason| vec![ConfigError::new(path, key, reason)])?;
    let several = ders.len() > 1;
    let mut crls = Vec::with_capacity(ders.len());
    let mut errors = Vec::new();
    for (index, der) in ders.iter().enumerate() {
        let label = if several {
            format!("CRL #{index}")
        } else {
            "CRL".to_owned()
        };
        match load_one(der, &label, trust_store) {
            Ok((mut crl, next_update_text)) => {
                crl.path = path.to_path_buf();
                crls.push(LoadedCrl {
                    crl,
                    next_update_text,
                });
            }
            Err(reason) => errors.push(ConfigError::new(path, key, reason)),
        }
    }
    if errors.is_empty() {
        Ok(crls)
    } else {
        Err(errors)
    }
}

/// The DER CRLs in a file: PEM `X509 CRL` blocks, else the whole file as DER.
fn crl_ders(bytes: &[u8]) -> Result<Vec<Vec<u8>>, String> {
    if bytes.first() == Some(&0x30) {
        return Ok(vec![bytes.to_vec()]);
    }
    let blocks = pem::parse_many(bytes).map_err(|e| format!("invalid PEM: {e}"))?;
    let ders: Vec<Vec<u8>> = blocks
        .into_iter()
        .filter(|b| b.tag() == CRL_TAG)
        .map(pem::Pem::into_contents)
        .collect();
    if ders.is_empty() {
        return Err(format!(
            "no \"{CRL_TAG}\" PEM blocks found (expected PEM or DER CRLs)"
        ));
    }
    Ok(ders)
}

/// Parses and verifies one DER CRL; `path` is filled in by the caller.
fn load_one(
    der: &[u8],
    label: &str,
    trust_store: Option<&[TrustAnchor]>,
) -> Result<(CrlSnapshot, Option<String>), String> {
    let crl = match x509_parser::parse_x509_crl(der) {
        Ok((rest, _)) if !rest.is_empty() => {
            return Err(format!(
                "{label} has {} trailing bytes after the DER structure",
                rest.len()
            ))
        }
        Ok((_, crl)) => crl,
        Err(e) => return Err(format!("{label} cannot be parsed: {e}")),
    };
    let issuer_subject = crl.issuer().to_string();
    if let Some(anchors) = trust_store {
        verify_issuer(&crl, label, &issuer_subject, anchors)?;
    }
    let revoked_serials: HashSet<String> = crl
        .iter_revoked_certificates()
        .map(|r| serial_from_bytes(r.raw_serial()))
        .collect();
    let next_update = crl.next_update();
    Ok((
        CrlSnapshot {
            path: Default::default(),
            issuer_name_der: crl.issuer().as_raw().to_vec(),
            issuer_subject,
            revoked_serials,
            this_update: system_time(crl.last_update()),
            next_update: next_update.map(system_time),
        },
        next_update.map(|t| t.to_string()),
    ))
}

/// Finds the CRL's issuer among `anchors` (exact Name DER equality) and
/// checks the signature with its public key.
fn verify_issuer(
    crl: &CertificateRevocationList<'_>,
    label: &str,
    issuer_subject: &str,
    anchors: &[TrustAnchor],
) -> Result<(), String> {
    // Names compare as path validation compares them (not by their DER bytes).
    let issuer = canonical_name(crl.issuer().as_raw());
    let mut last_error = None;
    let mut found = false;
    for anchor in anchors {
        let Ok((_, cert)) = x509_parser::parse_x509_certificate(&anchor.der) else {
            continue;
        };
        if issuer.is_none() || canonical_name(cert.subject().as_raw()) != issuer {
            continue;
        }
        found = true;
        match verify_with(crl, &cert) {
            Ok(()) => return Ok(()),
            Err(e) => last_error = Some(e),
        }
    }
    if !found {
        return Err(format!(
            "{label} issuer {issuer_subject} is not in the trust store"
        ));
    }
    Err(format!(
        "{label} signature does not verify with the public key of trust store CA {issuer_subject}: {}",
        last_error.unwrap_or_default()
    ))
}

fn verify_with(
    crl: &CertificateRevocationList<'_>,
    cert: &X509Certificate<'_>,
) -> Result<(), String> {
    crl.verify_signature(cert.public_key())
        .map_err(|e| e.to_string())
}

/// Converts an ASN.1 time to a [`SystemTime`].
fn system_time(time: ASN1Time) -> SystemTime {
    let secs = time.timestamp();
    let offset = Duration::from_secs(secs.unsigned_abs());
    let time = if secs >= 0 {
        UNIX_EPOCH.checked_add(offset)
    } else {
        UNIX_EPOCH.checked_sub(offset)
    };
    // ASN.1 times are within years 0..=9999, which SystemTime represents.
    time.unwrap_or(UNIX_EPOCH)
}
