//! The certificate decision, as a pure function of (site policy, presented chain, revocation
//! view, time): [`verify_chain`] returns the [`VerifiedChain`] or the typed [`Refusal`].
//!
//! The verify callback of every site calls it with the chain the client presented (DER, as
//! BoringSSL received it), the site's revocation checks and the current time; tests call it
//! with chains generated in the test and any time, without sockets. The chain is parsed only
//! for the duration of the call: BoringSSL's X509 verifier builds and checks it (signatures, CA
//! flags, path length, key usage for TLS clients, validity at `now` unless
//! `ignore_expiration`), then the site's depth limit and every certificate's revocation apply.

use std::time::{SystemTime, UNIX_EPOCH};

use boring::stack::Stack;
use boring::x509::{
    X509NameRef, X509Ref, X509StoreContext, X509StoreContextRef, X509VerifyError, X509,
};
use portcullis_config::MtlsMode;

use super::ext;
use super::policy::ViewerPolicy;
use super::refusal::{ChainCert, Refusal};
use super::trust::TrustAnchors;
use super::viewer_identity::CertKey;
use crate::revocation::Verdict;

/// What the decision needs to know about revocation: the verdict for one certificate,
/// identified by its issuer Name (DER) and serial magnitude, at `now`.
pub trait RevocationView {
    /// The verdict for one certificate.
    fn verdict(&self, issuer_name_der: &[u8], serial: &[u8], now: SystemTime) -> Verdict;
}

/// A chain the decision accepted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VerifiedChain {
    /// The verified chain's revocation keys, leaf first, trust anchor last. Empty when nothing
    /// was verified (no certificate in optional mode, or passthrough).
    pub keys: Vec<CertKey>,
}

impl VerifiedChain {
    /// Whether a certificate chain was verified (false: accepted without one, or passthrough).
    pub fn is_verified(&self) -> bool {
        !self.keys.is_empty()
    }
}

/// Decides a presented chain (DER, leaf first) under `policy` and the site's `trust` anchors
/// (only those the presented certificates can reach are handed to the verifier), with
/// revocation from `revocation`, at time `now`.
///
/// Passthrough accepts anything (the leaf is parsed later, for the headers). Without a
/// certificate, `required` refuses ([`Refusal::CertificateMissing`]) and `optional` accepts.
/// Otherwise the chain must verify against `trust` at `now` (or at any time with
/// `ignore_expiration`), be at most `max_chain_depth` long (trust anchor included), and no
/// certificate of the verified chain may be revoked (nor, under the deny policy, have an issuer
/// whose CRL is stale).
pub fn verify_chain(
    policy: &ViewerPolicy,
    trust: &TrustAnchors,
    presented: &[&[u8]],
    revocation: &dyn RevocationView,
    now: SystemTime,
) -> Result<VerifiedChain, Refusal> {
    if policy.mode == MtlsMode::Passthrough {
        return Ok(VerifiedChain::default());
    }
    let Some((leaf_der, rest)) = presented.split_first() else {
        return match policy.mode {
            MtlsMode::Required => Err(Refusal::CertificateMissing),
            _ => Ok(VerifiedChain::default()),
        };
    };
    let leaf = X509::from_der(leaf_der).map_err(|_| Refusal::Malformed { index: 0 })?;
    let mut untrusted = Stack::new().map_err(|_| Refusal::Internal("certificate stack"))?;
    for (i, der) in rest.iter().enumerate() {
        let cert = X509::from_der(der).map_err(|_| Refusal::Malformed { index: i + 1 })?;
        untrusted
            .push(cert)
            .map_err(|_| Refusal::Internal("certificate stack"))?;
    }
    // Read by the verification, so it lives until the end of this function.
    let anchors = trust
        .candidates(std::iter::once(&*leaf).chain(untrusted.iter()))
        .map_err(|_| Refusal::Internal("trust anchors"))?;
    let mut ctx = X509StoreContext::new().map_err(|_| Refusal::Internal("verify context"))?;
    ctx.init(trust.store(), &leaf, &untrusted, |ctx| {
        // `anchors` outlives this verification, as `trust_only` requires.
        ext::trust_only(ctx, &anchors);
        Ok(check(policy, ctx, revocation, now))
    })
    .unwrap_or(Err(Refusal::Internal("verify context")))
}

/// Verifies the chain set up in `ctx`, then applies depth and revocation.
fn check(
    policy: &ViewerPolicy,
    ctx: &mut X509StoreContextRef,
    revocation: &dyn RevocationView,
    now: SystemTime,
) -> Result<VerifiedChain, Refusal> {
    ext::set_ssl_client_purpose(ctx).map_err(|_| Refusal::Internal("verify purpose"))?;
    if policy.ignore_expiration {
        ctx.verify_param_mut().set_flags(ext::no_check_time());
    } else {
        let secs = now
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
        ctx.verify_param_mut().set_time(secs as _);
    }
    if !ctx.verify_cert().unwrap_or(false) {
        let error = ctx
            .verify_result()
            .err()
            .unwrap_or(X509VerifyError::UNSPECIFIED);
        return Err(refusal_for(ctx, error, policy.max_chain_depth));
    }
    let chain = ctx
        .chain()
        .ok_or(Refusal::Internal("verified chain missing"))?;
    if chain.len() > usize::from(policy.max_chain_depth) {
        return Err(Refusal::ChainTooDeep {
            length: chain.len(),
            max: policy.max_chain_depth,
        });
    }
    for (index, cert) in chain.iter().enumerate() {
        let serial = ext::serial_magnitude(cert);
        match revocation.verdict(ext::issuer_name_der(cert), serial, now) {
            Verdict::Good => {}
            Verdict::Revoked { by, .. } => {
                return Err(Refusal::Revoked {
                    cert: chain_cert(index, cert),
                    serial: colon_hex(serial).into(),
                    by,
                })
            }
            Verdict::CrlExpired => {
                return Err(Refusal::CrlExpired {
                    cert: chain_cert(index, cert),
                })
            }
        }
    }
    Ok(VerifiedChain {
        keys: chain.iter().map(CertKey::of).collect(),
    })
}

/// The typed refusal for a verifier error, naming the certificate it concerns.
fn refusal_for(ctx: &X509StoreContextRef, error: X509VerifyError, max_depth: u8) -> Refusal {
    let index = usize::try_from(ctx.error_depth()).unwrap_or(0);
    let cert = match ctx.current_cert() {
        Some(cert) => chain_cert(index, cert),
        None => ChainCert {
            index,
            subject: "".into(),
        },
    };
    let time = |t: Option<String>| t.unwrap_or_default().into_boxed_str();
    match error {
        X509VerifyError::CERT_HAS_EXPIRED => Refusal::Expired {
            not_after: time(ctx.current_cert().map(|c| c.not_after().to_string())),
            cert,
        },
        X509VerifyError::CERT_NOT_YET_VALID => Refusal::NotYetValid {
            not_before: time(ctx.current_cert().map(|c| c.not_before().to_string())),
            cert,
        },
        X509VerifyError::UNABLE_TO_GET_ISSUER_CERT
        | X509VerifyError::UNABLE_TO_GET_ISSUER_CERT_LOCALLY
        | X509VerifyError::UNABLE_TO_VERIFY_LEAF_SIGNATURE
        | X509VerifyError::DEPTH_ZERO_SELF_SIGNED_CERT
        | X509VerifyError::SELF_SIGNED_CERT_IN_CHAIN
        | X509VerifyError::CERT_UNTRUSTED => Refusal::Untrusted { cert, error },
        X509VerifyError::INVALID_PURPOSE | X509VerifyError::KEYUSAGE_NO_DIGITAL_SIGNATURE => {
            Refusal::IntentInvalid { cert, error }
        }
        X509VerifyError::CERT_CHAIN_TOO_LONG => Refusal::ChainTooDeep {
            length: index + 1,
            max: max_depth,
        },
        X509VerifyError::OUT_OF_MEM => Refusal::Internal("out of memory while verifying"),
        _ => Refusal::Invalid { cert, error },
    }
}

fn chain_cert(index: usize, cert: &X509Ref) -> ChainCert {
    ChainCert {
        index,
        subject: name_text(cert.subject_name()).into_boxed_str(),
    }
}

/// `CN=viewer, O=Example` (attributes in certificate order), for details only.
fn name_text(name: &X509NameRef) -> String {
    let mut out = String::new();
    for entry in name.entries() {
        if !out.is_empty() {
            out.push_str(", ");
        }
        let key = entry.object().nid().short_name().unwrap_or("?");
        out.push_str(key);
        out.push('=');
        match entry.data().as_utf8() {
            Ok(value) => out.extend(value.chars().map(|c| if c.is_control() { '?' } else { c })),
            Err(_) => out.push('?'),
        }
    }
    out
}

/// Colon-separated lowercase hex (`0a:1b`), `00` for an empty value.
pub(crate) fn colon_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    if bytes.is_empty() {
        return "00".to_owned();
    }
    let mut s = String::with_capacity(bytes.len() * 3);
    for (i, &b) in bytes.iter().enumerate() {
        if i > 0 {
            s.push(':');
        }
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    s
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use time::OffsetDateTime;

    use super::*;
    use crate::pki::{CertKind, CertSpec, Issued};
    use crate::revocation::RevokedBy;
    use crate::tls::refusal::{alert, FailureCode};

    /// A revocation view for tests: certificates revoked by serial, each with its source.
    #[derive(Default)]
    struct Revoked {
        serials: Vec<(Vec<u8>, RevokedBy)>,
        stale_crl_for_issuer: Option<Vec<u8>>,
    }

    impl RevocationView for Revoked {
        fn verdict(&self, issuer: &[u8], serial: &[u8], _now: SystemTime) -> Verdict {
            if let Some((_, by)) = self.serials.iter().find(|(s, _)| s == serial) {
                return Verdict::Revoked {
                    reason: Arc::from("test"),
                    by: by.clone(),
                };
            }
            if self.stale_crl_for_issuer.as_deref() == Some(issuer) {
                return Verdict::CrlExpired;
            }
            Verdict::Good
        }
    }

    struct Pki {
        root: Issued,
        intermediate: Issued,
        trust: TrustAnchors,
    }

    fn pki() -> Pki {
        let root =
            Issued::self_signed(CertSpec::new("Verify Root", CertKind::RootCa)).expect("root");
        let intermediate = root
            .issue(CertSpec::new(
                "Verify Intermediate",
                CertKind::IntermediateCa,
            ))
            .expect("intermediate");
        let trust = TrustAnchors::build(&[portcullis_config::TrustAnchor {
            der: root.cert_der.clone(),
            subject: String::new(),
            self_signed: true,
        }])
        .expect("trust anchors");
        Pki {
            root,
            intermediate,
            trust,
        }
    }

    fn policy(mode: MtlsMode) -> ViewerPolicy {
        ViewerPolicy {
            mode,
            ignore_expiration: false,
            max_chain_depth: 4,
        }
    }

    fn serial_of(cert: &Issued) -> Vec<u8> {
        ext::serial_magnitude(&X509::from_der(&cert.cert_der).expect("parse")).to_vec()
    }

    fn issuer_of(cert: &Issued) -> Vec<u8> {
        ext::issuer_name_der(&X509::from_der(&cert.cert_der).expect("parse")).to_vec()
    }

    /// One case: a policy, a presented chain, a revocation view and a time, and what the
    /// decision must be (Ok with this many verified certificates, or the code, alert and a
    /// piece of the detail).
    struct Case {
        name: &'static str,
        policy: ViewerPolicy,
        chain: Vec<Vec<u8>>,
        revoked: Revoked,
        now: SystemTime,
        expect: Result<usize, (FailureCode, u8, &'static str)>,
    }

    #[test]
    fn decisions_table() {
        let p = pki();
        let now = SystemTime::now();
        let client = |spec: CertSpec| p.intermediate.issue(spec).expect("client");
        let good = client(CertSpec::new("viewer", CertKind::Client).organization("Example"));
        let chain = |leaf: &Issued| vec![leaf.cert_der.clone(), p.intermediate.cert_der.clone()];
        let expired = client(CertSpec::new("old", CertKind::Client).expired());
        let later = OffsetDateTime::now_utc() + time::Duration::days(10);
        let future = client(
            CertSpec::new("future", CertKind::Client)
                .validity(later, later + time::Duration::days(10)),
        );
        let server_cert = client(CertSpec::new(
            "server-as-client",
            CertKind::Server {
                dns_names: vec!["x.test".into()],
                ip_addresses: vec![],
            },
        ));
        let stranger_ca =
            Issued::self_signed(CertSpec::new("Stranger CA", CertKind::RootCa)).expect("ca");
        let stranger = stranger_ca
            .issue(CertSpec::new("stranger", CertKind::Client))
            .expect("stranger");
        let store = |cert: &Issued| Revoked {
            serials: vec![(serial_of(cert), RevokedBy::Store(Arc::from("viewers")))],
            stale_crl_for_issuer: None,
        };
        let crl = |cert: &Issued| Revoked {
            serials: vec![(
                serial_of(cert),
                RevokedBy::Crl {
                    issuer: Arc::from("CN=Verify Intermediate"),
                },
            )],
            stale_crl_for_issuer: None,
        };
        let ignore_expiration = ViewerPolicy {
            ignore_expiration: true,
            ..policy(MtlsMode::Required)
        };
        let shallow = ViewerPolicy {
            max_chain_depth: 2,
            ..policy(MtlsMode::Required)
        };
        let required = policy(MtlsMode::Required);
        let cases = vec![
            Case {
                name: "valid chain",
                policy: required,
                chain: chain(&good),
                revoked: Revoked::default(),
                now,
                expect: Ok(3),
            },
            Case {
                name: "no certificate, required",
                policy: required,
                chain: vec![],
                revoked: Revoked::default(),
                now,
                expect: Err((
                    FailureCode::ClientCertMissing,
                    alert::CERTIFICATE_REQUIRED,
                    "no client certificate",
                )),
            },
            Case {
                name: "no certificate, optional",
                policy: policy(MtlsMode::Optional),
                chain: vec![],
                revoked: Revoked::default(),
                now,
                expect: Ok(0),
            },
            Case {
                name: "passthrough accepts anything",
                policy: policy(MtlsMode::Passthrough),
                chain: vec![b"junk".to_vec()],
                revoked: Revoked::default(),
                now,
                expect: Ok(0),
            },
            Case {
                name: "malformed intermediate",
                policy: required,
                chain: vec![good.cert_der.clone(), b"junk".to_vec()],
                revoked: Revoked::default(),
                now,
                expect: Err((
                    FailureCode::ClientCertInvalid,
                    alert::BAD_CERTIFICATE,
                    "presented certificate 1 does not parse",
                )),
            },
            Case {
                name: "unknown CA",
                policy: required,
                chain: vec![stranger.cert_der.clone()],
                revoked: Revoked::default(),
                now,
                expect: Err((
                    FailureCode::ClientCertUntrusted,
                    alert::UNKNOWN_CA,
                    "no trusted issuer for leaf certificate (CN=stranger)",
                )),
            },
            Case {
                name: "missing intermediate",
                policy: required,
                chain: vec![good.cert_der.clone()],
                revoked: Revoked::default(),
                now,
                expect: Err((
                    FailureCode::ClientCertUntrusted,
                    alert::UNKNOWN_CA,
                    "leaf certificate (O=Example, CN=viewer)",
                )),
            },
            Case {
                name: "expired leaf",
                policy: required,
                chain: chain(&expired),
                revoked: Revoked::default(),
                now,
                expect: Err((
                    FailureCode::ClientCertExpired,
                    alert::CERTIFICATE_EXPIRED,
                    "leaf certificate (CN=old) expired (notAfter ",
                )),
            },
            Case {
                name: "the whole chain expired at a later time",
                policy: required,
                chain: chain(&good),
                revoked: Revoked::default(),
                now: now + Duration::from_secs(3 * 365 * 86400),
                expect: Err((
                    FailureCode::ClientCertExpired,
                    alert::CERTIFICATE_EXPIRED,
                    "expired",
                )),
            },
            Case {
                name: "expired leaf with ignore_expiration",
                policy: ignore_expiration,
                chain: chain(&expired),
                revoked: Revoked::default(),
                now,
                expect: Ok(3),
            },
            Case {
                name: "not yet valid",
                policy: required,
                chain: chain(&future),
                revoked: Revoked::default(),
                now,
                expect: Err((
                    FailureCode::ClientCertNotYetValid,
                    alert::CERTIFICATE_EXPIRED,
                    "leaf certificate (CN=future) not yet valid",
                )),
            },
            Case {
                name: "chain too deep",
                policy: shallow,
                chain: chain(&good),
                revoked: Revoked::default(),
                now,
                expect: Err((
                    FailureCode::ClientCertMaxChainDepthExceeded,
                    alert::UNKNOWN_CA,
                    "chain of 3 certificates (trust anchor included) exceeds max_chain_depth 2",
                )),
            },
            Case {
                name: "server certificate used as a client certificate",
                policy: required,
                chain: chain(&server_cert),
                revoked: Revoked::default(),
                now,
                expect: Err((
                    FailureCode::ClientCertIntentInvalid,
                    alert::UNSUPPORTED_CERTIFICATE,
                    "leaf certificate (CN=server-as-client) not usable by a TLS client",
                )),
            },
            Case {
                name: "leaf revoked by a store",
                policy: required,
                chain: chain(&good),
                revoked: store(&good),
                now,
                expect: Err((
                    FailureCode::ClientCertRejected,
                    alert::CERTIFICATE_REVOKED,
                    "revoked by store viewers: leaf certificate (O=Example, CN=viewer), serial ",
                )),
            },
            Case {
                name: "leaf revoked by a CRL",
                policy: required,
                chain: chain(&good),
                revoked: crl(&good),
                now,
                expect: Err((
                    FailureCode::ClientCertRejected,
                    alert::CERTIFICATE_REVOKED,
                    "revoked by CRL of CN=Verify Intermediate: leaf certificate",
                )),
            },
            Case {
                name: "intermediate revoked",
                policy: required,
                chain: chain(&good),
                revoked: store(&p.intermediate),
                now,
                expect: Err((
                    FailureCode::ClientCertRejected,
                    alert::CERTIFICATE_REVOKED,
                    "revoked by store viewers: chain certificate 1 (C=US, CN=Verify Intermediate)",
                )),
            },
            Case {
                name: "issuer's CRL is stale",
                policy: required,
                chain: chain(&good),
                revoked: Revoked {
                    serials: vec![],
                    stale_crl_for_issuer: Some(issuer_of(&good)),
                },
                now,
                expect: Err((
                    FailureCode::ClientCertRejected,
                    alert::CERTIFICATE_EXPIRED,
                    "CRL of the issuer of leaf certificate",
                )),
            },
        ];
        for case in cases {
            let presented: Vec<&[u8]> = case.chain.iter().map(Vec::as_slice).collect();
            let got = verify_chain(&case.policy, &p.trust, &presented, &case.revoked, case.now);
            match (&got, &case.expect) {
                (Ok(chain), Ok(len)) => assert_eq!(chain.keys.len(), *len, "{}", case.name),
                (Err(refusal), Err((code, alert, detail))) => {
                    assert_eq!(refusal.code(), *code, "{}: {refusal}", case.name);
                    assert_eq!(refusal.alert(), *alert, "{}: {refusal}", case.name);
                    let text = refusal.to_string();
                    assert!(
                        text.contains(detail),
                        "{}: {text:?} lacks {detail:?}",
                        case.name
                    );
                }
                _ => panic!(
                    "{}: got {got:?}, want {:?}",
                    case.name,
                    case.expect.map(|_| ())
                ),
            }
        }
        // The verified chain's keys are those of leaf, intermediate and root, in order.
        let presented: Vec<&[u8]> = vec![&good.cert_der, &p.intermediate.cert_der];
        let verified =
            verify_chain(&required, &p.trust, &presented, &Revoked::default(), now).expect("valid");
        let keys: Vec<Vec<u8>> = verified.keys.iter().map(|k| k.serial.to_vec()).collect();
        assert_eq!(
            keys,
            vec![
                serial_of(&good),
                serial_of(&p.intermediate),
                serial_of(&p.root)
            ]
        );
    }
}
