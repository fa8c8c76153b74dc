//! A site's viewer trust store: the anchors of `mtls.trust_store`, indexed by subject name.
//!
//! BoringSSL's `X509_STORE` sorts its objects on every insertion (to find duplicates), so
//! building one is quadratic in the number of anchors: about 110 ms for 1,000 CAs here. Instead,
//! the anchors are parsed once and indexed by the (canonical) hash of their subject name, which
//! is linear; each verification then hands BoringSSL's verifier only the anchors the presented
//! chain can reach ([`super::ext::trust_only`]): those whose subject is the subject or
//! the issuer of a presented certificate, and transitively the issuers of those. The verifier
//! builds and checks the chain exactly as with a store holding every anchor (an issuer outside
//! that set cannot be part of a chain from the presented certificates), and it takes no lock
//! on a store shared by all workers.
//!
//! Where several anchors could issue a certificate, a store prefers one valid now; the
//! candidates are ordered the same way (valid now first, then as in the bundle).

use std::collections::HashMap;
use std::time::{SystemTime, UNIX_EPOCH};

use boring::asn1::{Asn1Time, Asn1TimeRef};
use boring::error::ErrorStack;
use boring::stack::Stack;
use boring::x509::store::{X509Store, X509StoreBuilder, X509StoreRef};
use boring::x509::{X509Ref, X509};
use portcullis_config::TrustAnchor;

use super::ext::name_hash;

/// One parsed anchor.
struct Anchor {
    cert: X509,
    subject: u32,
    issuer: u32,
    /// notBefore and notAfter in seconds since the Unix epoch.
    valid: (i64, i64),
}

/// A site's trust anchors, ready for verification.
pub struct TrustAnchors {
    /// An empty store: `X509_STORE_CTX_init` needs one; issuers come from the candidates.
    store: X509Store,
    anchors: Box<[Anchor]>,
    by_subject: HashMap<u32, Vec<usize>>,
    ca_names: Vec<Vec<u8>>,
}

impl std::fmt::Debug for TrustAnchors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TrustAnchors")
            .field("anchors", &self.anchors.len())
            .finish_non_exhaustive()
    }
}

/// Seconds since the Unix epoch of an ASN.1 time.
fn unix_seconds(time: &Asn1TimeRef, epoch: &Asn1TimeRef) -> Result<i64, ErrorStack> {
    let diff = epoch.diff(time)?;
    Ok(i64::from(diff.days) * 86_400 + i64::from(diff.secs))
}

impl TrustAnchors {
    /// Parses and indexes `anchors`. Every anchor BoringSSL cannot use is reported with its
    /// 1-based position.
    pub fn build(anchors: &[TrustAnchor]) -> Result<Self, Vec<(usize, String)>> {
        let store = X509StoreBuilder::new()
            .map_err(|e| vec![(0, format!("trust store: {e}"))])?
            .build();
        let epoch = Asn1Time::from_unix(0).map_err(|e| vec![(0, e.to_string())])?;
        let mut errors = Vec::new();
        let mut parsed = Vec::with_capacity(anchors.len());
        let mut ca_names = Vec::with_capacity(anchors.len());
        let mut by_subject: HashMap<u32, Vec<usize>> = HashMap::with_capacity(anchors.len());
        let mut seen: HashMap<&[u8], ()> = HashMap::with_capacity(anchors.len());
        for (i, anchor) in anchors.iter().enumerate() {
            let cert = match X509::from_der(&anchor.der) {
                Ok(cert) => cert,
                Err(e) => {
                    errors.push((i + 1, e.to_string()));
                    continue;
                }
            };
            let valid = unix_seconds(cert.not_before(), &epoch)
                .and_then(|from| Ok((from, unix_seconds(cert.not_after(), &epoch)?)));
            let (valid, name) = match (valid, cert.subject_name().to_der()) {
                (Ok(valid), Ok(name)) => (valid, name),
                (Err(e), _) | (_, Err(e)) => {
                    errors.push((i + 1, e.to_string()));
                    continue;
                }
            };
            ca_names.push(name);
            // A store ignores duplicates; so does the index.
            if seen.insert(&anchor.der, ()).is_some() {
                continue;
            }
            let subject = name_hash(cert.subject_name());
            by_subject.entry(subject).or_default().push(parsed.len());
            parsed.push(Anchor {
                subject,
                issuer: name_hash(cert.issuer_name()),
                valid,
                cert,
            });
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(Self {
            store,
            anchors: parsed.into_boxed_slice(),
            by_subject,
            ca_names,
        })
    }

    /// The (empty) store a verification context is initialised with.
    pub fn store(&self) -> &X509StoreRef {
        &self.store
    }

    /// The DER subject names of the anchors, in bundle order (for `advertise_ca_names`).
    pub fn ca_names(&self) -> &[Vec<u8>] {
        &self.ca_names
    }

    /// Number of distinct anchors.
    pub fn len(&self) -> usize {
        self.anchors.len()
    }

    /// Whether there is no anchor.
    pub fn is_empty(&self) -> bool {
        self.anchors.is_empty()
    }

    /// The anchors a chain from `presented` can reach: those whose subject is the subject or
    /// the issuer of a presented certificate, then the issuers of those, transitively; valid
    /// now first.
    pub fn candidates<'a>(
        &self,
        presented: impl Iterator<Item = &'a X509Ref>,
    ) -> Result<Stack<X509>, ErrorStack> {
        let mut frontier: Vec<u32> = Vec::with_capacity(8);
        for cert in presented {
            frontier.push(name_hash(cert.subject_name()));
            frontier.push(name_hash(cert.issuer_name()));
        }
        let mut reached: Vec<usize> = Vec::new();
        while let Some(hash) = frontier.pop() {
            for &index in self.by_subject.get(&hash).map_or(&[][..], Vec::as_slice) {
                if !reached.contains(&index) {
                    reached.push(index);
                    let anchor = &self.anchors[index];
                    if anchor.issuer != anchor.subject {
                        frontier.push(anchor.issuer);
                    }
                }
            }
        }
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
        reached.sort_by_key(|&index| {
            let (from, until) = self.anchors[index].valid;
            (!(from <= now && now <= until), index)
        });
        let mut stack = Stack::new()?;
        for index in reached {
            stack.push(self.anchors[index].cert.clone())?;
        }
        Ok(stack)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pki::{CertKind, CertSpec, Issued};

    fn anchor(cert: &Issued) -> TrustAnchor {
        TrustAnchor {
            der: cert.cert_der.clone(),
            subject: String::new(),
            self_signed: false,
        }
    }

    fn ders(stack: &Stack<X509>) -> Vec<Vec<u8>> {
        stack.iter().map(|c| c.to_der().expect("der")).collect()
    }

    #[test]
    fn candidates_are_the_anchors_a_chain_can_reach() {
        let root = Issued::self_signed(CertSpec::new("Root", CertKind::RootCa)).expect("root");
        let intermediate = root
            .issue(CertSpec::new("Intermediate", CertKind::IntermediateCa))
            .expect("intermediate");
        let unrelated =
            Issued::self_signed(CertSpec::new("Unrelated", CertKind::RootCa)).expect("other");
        let leaf = intermediate
            .issue(CertSpec::new("leaf", CertKind::Client))
            .expect("leaf");
        let trust = TrustAnchors::build(&[
            anchor(&unrelated),
            anchor(&intermediate),
            anchor(&root),
            anchor(&root),
        ])
        .expect("build");
        assert_eq!(trust.len(), 3, "the duplicate root is indexed once");
        assert_eq!(trust.ca_names().len(), 4);
        let leaf = X509::from_der(&leaf.cert_der).expect("leaf");
        let reached = ders(
            &trust
                .candidates(std::iter::once(&*leaf))
                .expect("candidates"),
        );
        assert_eq!(reached.len(), 2);
        assert!(reached.contains(&intermediate.cert_der));
        assert!(reached.contains(&root.cert_der));
        let stranger = unrelated
            .issue(CertSpec::new("stranger", CertKind::Client))
            .expect("stranger");
        let stranger = X509::from_der(&stranger.cert_der).expect("stranger");
        assert_eq!(
            trust
                .candidates(std::iter::once(&*stranger))
                .expect("c")
                .len(),
            1
        );
        let nobody = Issued::self_signed(CertSpec::new("Nobody", CertKind::RootCa))
            .expect("nobody")
            .issue(CertSpec::new("orphan", CertKind::Client))
            .expect("orphan");
        let nobody = X509::from_der(&nobody.cert_der).expect("orphan");
        assert_eq!(
            trust
                .candidates(std::iter::once(&*nobody))
                .expect("c")
                .len(),
            0
        );
    }
}
