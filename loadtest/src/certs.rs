//! The pool of client certificates presented round-robin: loaded from a directory of
//! `client-*.pem` / `client-*.key` pairs, or minted from a CA with `rcgen`.

use std::path::{Path, PathBuf};

use boring::pkey::{PKey, Private};
use boring::x509::X509;
use rcgen::{
    CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    SerialNumber,
};
use time::{Duration as TimeDuration, OffsetDateTime};

use crate::errors::LoadError;

/// Most client certificates `--generate` mints.
pub const MAX_GENERATED: usize = 10_000;

/// Where the client certificates come from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum CertSource {
    /// No client certificate is presented.
    #[default]
    None,
    /// Every `client-*.pem` in the directory with its `client-*.key` (same stem), sorted by
    /// name. A `.pem` may hold the leaf followed by its intermediates.
    Dir(PathBuf),
    /// `count` fresh ECDSA P-256 client leaves issued by the CA in `ca_cert` / `ca_key`
    /// (PEM; the key in PKCS#8). Every certificate in `ca_cert` is sent as the chain.
    Generate {
        /// How many leaves.
        count: usize,
        /// The issuing CA's certificate (first PEM block), optionally followed by its chain.
        ca_cert: PathBuf,
        /// The issuing CA's private key.
        ca_key: PathBuf,
    },
}

/// One client certificate with its chain and key.
#[derive(Debug, Clone)]
pub struct ClientIdentity {
    /// A name for reports (the file stem or the generated CN).
    pub name: String,
    /// The leaf certificate.
    pub cert: X509,
    /// Certificates sent after the leaf.
    pub chain: Vec<X509>,
    /// The leaf's private key.
    pub key: PKey<Private>,
}

/// Loads (or mints) the pool described by `source`.
pub fn load(source: &CertSource) -> Result<Vec<ClientIdentity>, LoadError> {
    match source {
        CertSource::None => Ok(Vec::new()),
        CertSource::Dir(dir) => load_dir(dir),
        CertSource::Generate {
            count,
            ca_cert,
            ca_key,
        } => generate(*count, ca_cert, ca_key),
    }
}

fn read(path: &Path) -> Result<Vec<u8>, LoadError> {
    std::fs::read(path).map_err(|source| LoadError::Read {
        path: path.to_path_buf(),
        source,
    })
}

fn bad(path: &Path, reason: impl ToString) -> LoadError {
    LoadError::BadCertificate {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    }
}

/// Loads one identity from a PEM chain file (leaf first) and a PEM key file.
pub fn load_pair(name: &str, cert: &Path, key: &Path) -> Result<ClientIdentity, LoadError> {
    let mut certs = X509::stack_from_pem(&read(cert)?).map_err(|e| bad(cert, e))?;
    if certs.is_empty() {
        return Err(bad(cert, "no certificate in the file"));
    }
    let leaf = certs.remove(0);
    let key_pem = read(key)?;
    let pkey = PKey::private_key_from_pem(&key_pem).map_err(|e| bad(key, e))?;
    let matches = leaf
        .public_key()
        .map(|public| public.public_eq(&pkey))
        .map_err(|e| bad(cert, e))?;
    if !matches {
        return Err(bad(key, "the key does not belong to the certificate"));
    }
    Ok(ClientIdentity {
        name: name.to_owned(),
        cert: leaf,
        chain: certs,
        key: pkey,
    })
}

/// Loads every `client-*.pem` + `client-*.key` pair in `dir`, sorted by file name.
pub fn load_dir(dir: &Path) -> Result<Vec<ClientIdentity>, LoadError> {
    let entries = std::fs::read_dir(dir).map_err(|source| LoadError::Read {
        path: dir.to_path_buf(),
        source,
    })?;
    let mut stems = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|source| LoadError::Read {
            path: dir.to_path_buf(),
            source,
        })?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some(stem) = name.strip_suffix(".pem") {
            if stem.starts_with("client-") {
                stems.push(stem.to_owned());
            }
        }
    }
    stems.sort();
    if stems.is_empty() {
        return Err(bad(dir, "no client-*.pem files"));
    }
    stems
        .iter()
        .map(|stem| {
            load_pair(
                stem,
                &dir.join(format!("{stem}.pem")),
                &dir.join(format!("{stem}.key")),
            )
        })
        .collect()
}

/// Mints `count` client leaves (CN `loadtest-client-NNNNN`, EKU clientAuth, valid from an
/// hour ago for a day, random serial) issued by the CA in `ca_cert` / `ca_key`.
pub fn generate(
    count: usize,
    ca_cert: &Path,
    ca_key: &Path,
) -> Result<Vec<ClientIdentity>, LoadError> {
    if count == 0 || count > MAX_GENERATED {
        return Err(LoadError::InvalidConfig(format!(
            "--generate takes 1..={MAX_GENERATED} certificates, not {count}"
        )));
    }
    let ca_pem = read(ca_cert)?;
    let ca_text = String::from_utf8(ca_pem.clone()).map_err(|e| bad(ca_cert, e))?;
    let chain = X509::stack_from_pem(&ca_pem).map_err(|e| bad(ca_cert, e))?;
    if chain.is_empty() {
        return Err(bad(ca_cert, "no certificate in the file"));
    }
    let key_text = String::from_utf8(read(ca_key)?).map_err(|e| bad(ca_key, e))?;
    let signing_key = KeyPair::from_pem(&key_text).map_err(|e| bad(ca_key, e))?;
    let issuer = Issuer::from_ca_cert_pem(&ca_text, signing_key).map_err(|e| bad(ca_cert, e))?;
    let now = OffsetDateTime::now_utc();
    (0..count)
        .map(|i| -> Result<ClientIdentity, LoadError> {
            let name = format!("loadtest-client-{i:05}");
            let key = KeyPair::generate()?;
            let mut params = CertificateParams::new(Vec::<String>::new())?;
            params.distinguished_name.push(DnType::CommonName, &name);
            params
                .distinguished_name
                .push(DnType::OrganizationName, "Portcullis Loadtest");
            params.is_ca = IsCa::NoCa;
            params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
            params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
            params.not_before = now - TimeDuration::hours(1);
            params.not_after = now + TimeDuration::days(1);
            params.use_authority_key_identifier_extension = true;
            let mut serial = [0u8; 16];
            boring::rand::rand_bytes(&mut serial)?;
            serial[0] &= 0x7f;
            serial[0] |= 0x01;
            params.serial_number = Some(SerialNumber::from_slice(&serial));
            let cert = params.signed_by(&key, &issuer)?;
            Ok(ClientIdentity {
                name,
                cert: X509::from_der(cert.der())?,
                chain: chain.clone(),
                key: PKey::private_key_from_pem(key.serialize_pem().as_bytes())?,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A self-signed CA written to `dir` as ca.pem / ca.key.
    fn write_ca(dir: &Path) -> (PathBuf, PathBuf) {
        let key = KeyPair::generate().expect("key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params
            .distinguished_name
            .push(DnType::CommonName, "Loadtest Test CA");
        params.is_ca = IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let cert = params.self_signed(&key).expect("self-signed");
        let cert_path = dir.join("ca.pem");
        let key_path = dir.join("ca.key");
        std::fs::write(&cert_path, cert.pem()).expect("write ca");
        std::fs::write(&key_path, key.serialize_pem()).expect("write key");
        (cert_path, key_path)
    }

    #[test]
    fn generate_and_reload() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (ca_cert, ca_key) = write_ca(dir.path());
        let ids = generate(3, &ca_cert, &ca_key).expect("generate");
        assert_eq!(ids.len(), 3);
        let ca = X509::from_pem(&std::fs::read(&ca_cert).expect("read")).expect("ca");
        let ca_key_pub = ca.public_key().expect("ca public key");
        let mut serials = std::collections::HashSet::new();
        for id in &ids {
            assert!(id.cert.verify(&ca_key_pub).expect("verify"), "{}", id.name);
            assert_eq!(id.chain.len(), 1);
            serials.insert(id.cert.serial_number().to_bn().expect("bn").to_vec());
        }
        assert_eq!(serials.len(), 3, "distinct serials");

        // Write them as a certificate directory and load it back in order.
        let certs = dir.path().join("certs");
        std::fs::create_dir(&certs).expect("mkdir");
        for (i, id) in ids.iter().enumerate() {
            let pem = [
                id.cert.to_pem().expect("pem"),
                id.chain[0].to_pem().expect("pem"),
            ]
            .concat();
            std::fs::write(certs.join(format!("client-{i}.pem")), pem).expect("write");
            std::fs::write(
                certs.join(format!("client-{i}.key")),
                id.key.private_key_to_pem_pkcs8().expect("key pem"),
            )
            .expect("write");
        }
        std::fs::write(certs.join("other.pem"), b"ignored").expect("write");
        let loaded = load(&CertSource::Dir(certs.clone())).expect("load dir");
        assert_eq!(loaded.len(), 3);
        assert_eq!(loaded[0].name, "client-0");
        assert_eq!(loaded[2].chain.len(), 1);
        assert_eq!(
            loaded[1].cert.to_der().expect("der"),
            ids[1].cert.to_der().expect("der")
        );

        // A key that does not match is refused.
        std::fs::copy(certs.join("client-0.key"), certs.join("client-1.key")).expect("copy");
        assert!(matches!(
            load_dir(&certs),
            Err(LoadError::BadCertificate { .. })
        ));
    }

    #[test]
    fn bad_inputs() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert!(matches!(
            load_dir(dir.path()),
            Err(LoadError::BadCertificate { .. })
        ));
        let (ca_cert, ca_key) = write_ca(dir.path());
        assert!(matches!(
            generate(0, &ca_cert, &ca_key),
            Err(LoadError::InvalidConfig(_))
        ));
        assert!(matches!(
            generate(1, &ca_cert, &dir.path().join("missing.key")),
            Err(LoadError::Read { .. })
        ));
    }
}
