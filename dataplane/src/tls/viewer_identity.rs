//! The certificates that authenticated a connection, and their revocation checks: during the
//! handshake (in the verify callback, for every certificate of the verified chain) and later,
//! for open connections, when revocation data changes.

use std::cell::Cell;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::SystemTime;

use boring::ssl::SslRef;
use boring::x509::X509Ref;

use super::ext::{
    issuer_and_serial_from_der, issuer_name_der, peer_certificates, serial_magnitude,
};
use super::refusal::Refusal;
use super::verify::{RevocationView, VerifiedChain};
use crate::revocation::{RevocationState, SiteRevocation, Verdict};
use crate::telemetry::{ConnectionId, LeafFields};

/// One certificate, as revocation data identifies it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertKey {
    /// DER of the certificate's issuer Name.
    pub issuer: Box<[u8]>,
    /// Big-endian magnitude of its serial number.
    pub serial: Box<[u8]>,
}

impl CertKey {
    /// The key of `cert`.
    pub fn of(cert: &X509Ref) -> Self {
        Self {
            issuer: issuer_name_der(cert).into(),
            serial: serial_magnitude(cert).into(),
        }
    }

    /// The key of a DER certificate, read without parsing it into an X509 (same bytes as
    /// [`CertKey::of`]). None if the DER is malformed.
    pub fn from_der(der: &[u8]) -> Option<Self> {
        let (issuer, serial) = issuer_and_serial_from_der(der)?;
        Some(Self {
            issuer: issuer.into(),
            serial: serial.into(),
        })
    }
}

/// What one handshake recorded for later: the certificate decision (set once by the verify
/// callback; absent when it did not run, e.g. on resumption or without a certificate), the
/// last TLS alerts sent and received (for the connection log's failure detail), and what a
/// connection function produced (its custom log data, the leaf fields of its event).
#[derive(Debug, Default)]
pub struct HandshakeRecord {
    decision: OnceLock<Result<VerifiedChain, Refusal>>,
    alert_sent: AtomicU16,
    alert_received: AtomicU16,
    /// The connection's id and client address (a connection function's event).
    connection: Option<(ConnectionId, SocketAddr)>,
    /// The client leaf's fields, when the connection function's event parsed them.
    leaf: OnceLock<Arc<LeafFields>>,
    /// `connection.logCustomData()` of the connection function.
    custom_data: OnceLock<Box<str>>,
}

/// Marks a recorded alert (so that alert 0, close_notify, is distinguishable from none).
const ALERT_PRESENT: u16 = 0x100;

impl HandshakeRecord {
    /// The record of connection `id` from `peer`.
    pub fn for_connection(id: ConnectionId, peer: SocketAddr) -> Self {
        Self {
            connection: Some((id, peer)),
            ..Self::default()
        }
    }

    /// The connection's id and client address, if known.
    pub fn connection(&self) -> Option<(ConnectionId, SocketAddr)> {
        self.connection
    }

    /// Keeps the leaf's fields parsed during the handshake (the first record wins).
    pub fn set_leaf(&self, leaf: Arc<LeafFields>) {
        let _ = self.leaf.set(leaf);
    }

    /// The leaf's fields, if the handshake parsed them.
    pub fn leaf(&self) -> Option<&Arc<LeafFields>> {
        self.leaf.get()
    }

    /// Keeps the connection function's custom log data (the first record wins: one call of
    /// the function per handshake).
    pub fn set_custom_data(&self, text: Box<str>) {
        let _ = self.custom_data.set(text);
    }

    /// The connection function's custom log data.
    pub fn custom_data(&self) -> Option<&str> {
        self.custom_data.get().map(|s| &**s)
    }

    /// Records the certificate decision (the first record wins).
    pub fn decide(&self, decision: Result<VerifiedChain, Refusal>) {
        let _ = self.decision.set(decision);
    }

    /// The verified chain's keys, if the decision ran and accepted a chain.
    pub fn get(&self) -> Option<&[CertKey]> {
        match self.decision.get() {
            Some(Ok(chain)) if chain.is_verified() => Some(&chain.keys),
            _ => None,
        }
    }

    /// The decision, if it ran.
    pub fn decision(&self) -> Option<&Result<VerifiedChain, Refusal>> {
        self.decision.get()
    }

    /// Why the decision refused the chain, if it did.
    pub fn refusal(&self) -> Option<&Refusal> {
        self.decision.get().and_then(|d| d.as_ref().err())
    }

    /// Records a TLS alert sent (`sent`) or received.
    pub fn note_alert(&self, sent: bool, alert: u8) {
        let slot = if sent {
            &self.alert_sent
        } else {
            &self.alert_received
        };
        slot.store(ALERT_PRESENT | u16::from(alert), Ordering::Relaxed);
    }

    /// The last alert sent to the client.
    pub fn alert_sent(&self) -> Option<u8> {
        alert_of(self.alert_sent.load(Ordering::Relaxed))
    }

    /// The last alert received from the client.
    pub fn alert_received(&self) -> Option<u8> {
        alert_of(self.alert_received.load(Ordering::Relaxed))
    }
}

fn alert_of(slot: u16) -> Option<u8> {
    (slot & ALERT_PRESENT != 0).then_some((slot & 0xff) as u8)
}

/// Revocation checking for one site of one configuration generation.
#[derive(Clone)]
pub struct SiteRevocationCheck {
    state: Arc<RevocationState>,
    scope: SiteRevocation,
    site: Arc<str>,
}

impl std::fmt::Debug for SiteRevocationCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SiteRevocationCheck")
            .finish_non_exhaustive()
    }
}

impl SiteRevocationCheck {
    /// Checks against `state` with the scope of the site called `site` in its generation.
    pub fn new(state: Arc<RevocationState>, scope: SiteRevocation, site: &str) -> Self {
        Self {
            state,
            scope,
            site: Arc::from(site),
        }
    }

    /// The first non-good verdict among recorded keys, else Good, under the revocation data
    /// of the *live* generation's site of the same name (an open connection keeps its
    /// identity across reloads, but revocations in newer data apply to it), or under this
    /// generation's when the live configuration no longer has the site.
    pub fn check_keys(&self, keys: &[CertKey]) -> Verdict {
        let now = SystemTime::now();
        let live = self.state.live_site_scope(&self.site);
        let scope = live.as_ref().unwrap_or(&self.scope);
        for key in keys {
            let verdict = self.state.check(scope, &key.issuer, &key.serial, now);
            if !matches!(verdict, Verdict::Good) {
                return verdict;
            }
        }
        Verdict::Good
    }

    /// The revocation epoch (changes on every revoke, import or reload).
    pub fn epoch(&self) -> u64 {
        self.state.epoch()
    }
}

impl RevocationView for SiteRevocationCheck {
    fn verdict(&self, issuer_name_der: &[u8], serial: &[u8], now: SystemTime) -> Verdict {
        self.state.check(&self.scope, issuer_name_der, serial, now)
    }
}

/// An open connection's identity, re-checked when revocation data changes
/// (`revoke_open_connections`).
#[derive(Debug)]
pub struct OpenIdentity {
    check: SiteRevocationCheck,
    keys: Vec<CertKey>,
    checked_at_epoch: Cell<u64>,
}

impl OpenIdentity {
    /// The identity of a finished handshake: the verified chain if verification ran, else (a
    /// resumed session) the client's certificates. None without a client certificate.
    pub fn of(
        ssl: &SslRef,
        record: Option<&HandshakeRecord>,
        check: SiteRevocationCheck,
    ) -> Option<Self> {
        let keys = match record.and_then(HandshakeRecord::get) {
            Some(keys) => keys.to_vec(),
            None => {
                // A resumed session: the chain the client presented when the session was
                // issued, read from its DER.
                let keys: Vec<CertKey> = peer_certificates(ssl)
                    .map(CertKey::from_der)
                    .collect::<Option<_>>()?;
                if keys.is_empty() {
                    return None;
                }
                keys
            }
        };
        let epoch = check.epoch();
        Some(Self {
            check,
            keys,
            checked_at_epoch: Cell::new(epoch),
        })
    }

    /// True if revocation data changed since the last check and now revokes this identity.
    /// Costs one atomic load when nothing changed.
    pub fn revoked_since_last_check(&self) -> bool {
        let epoch = self.check.epoch();
        if epoch == self.checked_at_epoch.get() {
            return false;
        }
        self.checked_at_epoch.set(epoch);
        !matches!(self.check.check_keys(&self.keys), Verdict::Good)
    }
}
