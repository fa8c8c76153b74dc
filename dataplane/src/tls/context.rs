//! BoringSSL contexts for the configured sites, and SNI-based selection between them.
//!
//! Every site gets its own `SslContext` (server chain and key, trust store, client CA names,
//! session id context, certificate verification callback carrying the site's policy). New
//! connections start on a front context whose ClientHello callback picks the site by SNI,
//! switches the connection to the site's context and sets the per-connection verify mode.
//!
//! A site's connection function is checked (compiled) here, so `check` and a reload refuse a
//! broken one, and runs inside the certificate decision ([`verify_viewer`]) or, for a client
//! that presented no certificate, right after the handshake ([`decide_without_certificate`]).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::SystemTime;

use boring::ex_data::Index;
use boring::pkey::PKey;
use boring::ssl::{
    AlpnError, NameType, SelectCertError, Ssl, SslContext, SslContextBuilder, SslMethod,
    SslOptions, SslRef, SslSessionCacheMode, SslVersion,
};
use boring::x509::X509;
use portcullis_config::{
    AppProtocol, ConfigError, ConfigErrors, MtlsMode, SiteSnapshot, Snapshot, TrustAnchor,
};

use super::ext;
use super::policy::ViewerPolicy;
use super::refusal::{alert, Refusal, MAX_CERTIFICATE_MESSAGE};
use super::trust::TrustAnchors;
use super::verify::verify_chain;
use super::viewer_identity::{HandshakeRecord, SiteRevocationCheck};
use crate::function::{ConnectionFunction, FunctionInput, KvsSource};
use crate::revocation::{RevocationState, RevocationView};
use crate::telemetry::{cached_fields, ConnectionId, LeafFields};

/// TLS 1.2 suites: forward secret AEADs only (TLS 1.3 suites are BoringSSL's fixed set), in
/// the server's order of preference (the server chooses): AES-128-GCM and ChaCha20-Poly1305
/// first as equals (BoringSSL's `[a|b]` groups: within one the client's order wins, so a client
/// without AES hardware keeps ChaCha20), then AES-256-GCM.
const TLS12_CIPHERS: &str = "[ECDHE-ECDSA-AES128-GCM-SHA256|ECDHE-ECDSA-CHACHA20-POLY1305]:\
[ECDHE-RSA-AES128-GCM-SHA256|ECDHE-RSA-CHACHA20-POLY1305]:\
ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384";

/// Source of [`SiteTls::id`].
static NEXT_SITE_ID: AtomicU64 = AtomicU64::new(1);

/// One site, ready to terminate TLS.
pub struct SiteTls {
    /// Unique for the life of the process (a reload builds sites with new ids), so caches
    /// keyed by it never mix two configurations of a site.
    pub id: u64,
    /// The site's configuration.
    pub config: Arc<SiteSnapshot>,
    /// The viewer-mTLS policy applied to its handshakes.
    pub policy: ViewerPolicy,
    /// Revocation checks for its viewers.
    pub revocation: SiteRevocationCheck,
    /// The connection function run in its handshakes.
    pub function: Option<Arc<ConnectionFunction>>,
    /// The viewer trust anchors (roots and intermediates of `mtls.trust_store`), shared with
    /// other generations that have the same anchors.
    trust: Arc<TrustAnchors>,
    /// Session id context prefix (the site and its function's digest); the revocation epoch
    /// and the function's data version complete it, so that sessions issued before any
    /// revocation change, or under another function or other function data, are not resumed
    /// (the client gets a full, checked handshake).
    sid_prefix: [u8; 16],
    context: SslContext,
}

impl SiteTls {
    /// The session id context for the current revocation epoch and function data.
    fn session_id_context(&self) -> [u8; 32] {
        let mut sid = [0u8; 32];
        sid[..16].copy_from_slice(&self.sid_prefix);
        sid[16..24].copy_from_slice(&self.revocation.epoch().to_be_bytes());
        let data = self.function.as_ref().map_or(0, |f| f.data_version());
        sid[24..].copy_from_slice(&data.to_be_bytes());
        sid
    }

    /// Whether connections without a client certificate are decided by the function after
    /// the handshake: such connections must get no session ticket, since a TLS 1.2 ticket
    /// leaves before that decision (sites whose function only ever runs in the verify
    /// callback, `required` mode, keep resumption).
    fn decides_after_handshake(&self) -> bool {
        self.function.is_some() && self.policy.mode != MtlsMode::Required
    }
}

impl std::fmt::Debug for SiteTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SiteTls")
            .field("site", &self.config.name)
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

/// The TLS side of a configuration snapshot: what workers use to accept connections. It
/// carries its own revocation view, so one atomic swap of the snapshot changes trust stores,
/// sites and revocation data together.
pub struct TlsSnapshot {
    /// The configuration this was built from.
    pub config: Arc<Snapshot>,
    /// The configuration generation (1 for the configuration started with, then one more per
    /// committed reload; 0 until the control plane numbers it).
    pub generation: u64,
    sites: Arc<[Arc<SiteTls>]>,
    front: SslContext,
    revocation: Arc<RevocationView>,
    _live: LiveSnapshot,
}

/// Number of [`TlsSnapshot`]s alive in the process (the live one, staged ones, and old ones
/// that open connections still hold).
static LIVE_SNAPSHOTS: AtomicUsize = AtomicUsize::new(0);

/// Counts one snapshot in [`LIVE_SNAPSHOTS`] for as long as it lives.
struct LiveSnapshot;

impl LiveSnapshot {
    fn new() -> Self {
        LIVE_SNAPSHOTS.fetch_add(1, Ordering::Relaxed);
        Self
    }
}

impl Drop for LiveSnapshot {
    fn drop(&mut self) {
        LIVE_SNAPSHOTS.fetch_sub(1, Ordering::Relaxed);
    }
}

impl std::fmt::Debug for TlsSnapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsSnapshot")
            .field("sites", &self.sites)
            .finish_non_exhaustive()
    }
}

/// Where a connection records its certificate decision and alerts.
pub(crate) fn handshake_record_index() -> Index<Ssl, HandshakeRecord> {
    static INDEX: OnceLock<Index<Ssl, HandshakeRecord>> = OnceLock::new();
    *INDEX.get_or_init(|| {
        // Allocating an ex-data index only fails when BoringSSL is out of memory at start-up.
        Ssl::new_ex_index().expect("BoringSSL ex-data index for the handshake record")
    })
}

/// Where a connection records the site its ClientHello selected.
fn site_index() -> Index<Ssl, Arc<SiteTls>> {
    static INDEX: OnceLock<Index<Ssl, Arc<SiteTls>>> = OnceLock::new();
    *INDEX.get_or_init(|| {
        // Allocating an ex-data index only fails when BoringSSL is out of memory at start-up.
        Ssl::new_ex_index().expect("BoringSSL ex-data index for the site")
    })
}

impl TlsSnapshot {
    /// Builds every site's context, with revocation checks against `revocation` under the
    /// scopes of `view` (staged from the same configuration). Errors name the file and
    /// configuration key at fault; a site without a scope in `view` is refused (fail closed).
    pub fn build(
        config: Arc<Snapshot>,
        revocation: &Arc<RevocationState>,
        view: Arc<RevocationView>,
    ) -> Result<Self, ConfigErrors> {
        let mut errors = Vec::new();
        let mut sites = Vec::with_capacity(config.sites.len());
        for site in &config.sites {
            let Some(scope) = view.site(&site.name) else {
                errors.push(ConfigError {
                    file: config.source.clone(),
                    key: format!("{}.mtls", site.key_prefix),
                    reason: "no revocation scope was staged for this site".to_owned(),
                });
                continue;
            };
            let check = SiteRevocationCheck::new(Arc::clone(revocation), scope.clone(), &site.name);
            let function = match site_function(site, &view) {
                Ok(function) => function,
                Err(e) => {
                    errors.push(e);
                    None
                }
            };
            match site_context_builder(site, true) {
                Ok(SiteContext {
                    builder,
                    trust: Some(trust),
                }) => {
                    let mut id = format!("{}\0{}\0", site.index, site.name).into_bytes();
                    if let Some(function) = &function {
                        id.extend_from_slice(function.digest());
                    }
                    let sid = boring::sha::sha256(&id);
                    let mut sid_prefix = [0u8; 16];
                    sid_prefix.copy_from_slice(&sid[..16]);
                    sites.push(Arc::new(SiteTls {
                        id: NEXT_SITE_ID.fetch_add(1, Ordering::Relaxed),
                        config: Arc::clone(site),
                        policy: ViewerPolicy::from_settings(&site.mtls),
                        revocation: check,
                        function: function.map(Arc::new),
                        trust,
                        sid_prefix,
                        context: builder.build(),
                    }));
                }
                Ok(SiteContext { trust: None, .. }) => {
                    // Unreachable: a site context is always built with its trust anchors.
                    errors.push(ConfigError {
                        file: config.source.clone(),
                        key: format!("{}.mtls.trust_store", site.key_prefix),
                        reason: "internal error: no trust store was built".to_owned(),
                    });
                }
                Err(mut e) => errors.append(&mut e),
            }
        }
        if !errors.is_empty() {
            return Err(ConfigErrors(errors));
        }
        let sites: Arc<[Arc<SiteTls>]> = sites.into();
        let default_site = &sites[config.default_site];
        // The front context only selects the site (its ClientHello callback switches every
        // connection to the site's context before any certificate is requested or checked), so
        // it gets no trust anchors and no CA names.
        let mut front = site_context_builder(&default_site.config, false)
            .map_err(ConfigErrors)?
            .builder;
        let selector_config = Arc::clone(&config);
        let selector_sites = Arc::clone(&sites);
        front.set_select_certificate_callback(move |mut hello| {
            let sni = hello.servername(NameType::HOST_NAME);
            let index = selector_config.site_for_sni(sni).index;
            let site = selector_sites.get(index).ok_or(SelectCertError::ERROR)?;
            let ssl = hello.ssl_mut();
            ssl.set_ssl_context(&site.context)
                .map_err(|_| SelectCertError::ERROR)?;
            ext::set_session_id_context(ssl, &site.session_id_context())
                .map_err(|_| SelectCertError::ERROR)?;
            ext::set_connection_verify(ssl, site.policy.verify_mode());
            // Verification settings stay with the connection, not the context it switches
            // to: the site's signature algorithms are set on the connection itself.
            ext::set_connection_verify_algorithms(ssl, &site.config.mtls.signature_algorithms)
                .map_err(|_| SelectCertError::ERROR)?;
            if site.decides_after_handshake() {
                ext::disable_tickets(ssl);
            }
            ssl.set_ex_data(site_index(), Arc::clone(site));
            Ok(())
        });
        // One ticket per handshake instead of BoringSSL's two: each carries the client's
        // certificate chain, costs an encryption and waits in memory until the first response.
        ext::set_num_tickets(&mut front, 1);
        Ok(Self {
            config,
            generation: 0,
            sites,
            front: front.build(),
            revocation: view,
            _live: LiveSnapshot::new(),
        })
    }

    /// The session ticket key new tickets are encrypted with (shared with the process a
    /// binary upgrade starts, so that tickets stay valid across it).
    pub fn session_ticket_key(
        &self,
    ) -> Result<[u8; ext::TICKET_KEYS_LEN], boring::error::ErrorStack> {
        ext::ticket_keys(&self.front)
    }

    /// Encrypts and decrypts session tickets with `key` (from the process this one replaces).
    /// Only before the snapshot goes to the workers: BoringSSL swaps the key without a lock.
    pub fn use_session_ticket_key(
        &mut self,
        key: &[u8; ext::TICKET_KEYS_LEN],
    ) -> Result<(), boring::error::ErrorStack> {
        ext::set_ticket_keys(&self.front, key)
    }

    /// The revocation view this snapshot's sites check against.
    pub fn revocation_view(&self) -> &Arc<RevocationView> {
        &self.revocation
    }

    /// Number of TLS snapshots alive in the process: the live one, any being staged, and old
    /// ones still held by open connections. Old snapshots go when their last connection ends.
    pub fn live_count() -> usize {
        LIVE_SNAPSHOTS.load(Ordering::Relaxed)
    }

    /// A new server-side TLS session for an accepted connection.
    pub fn new_session(&self) -> Result<Ssl, boring::error::ErrorStack> {
        self.session_with(HandshakeRecord::default())
    }

    /// A new server-side TLS session for connection `id` from `peer` (what a connection
    /// function's event names).
    pub fn new_session_for(
        &self,
        id: ConnectionId,
        peer: SocketAddr,
    ) -> Result<Ssl, boring::error::ErrorStack> {
        self.session_with(HandshakeRecord::for_connection(id, peer))
    }

    fn session_with(&self, record: HandshakeRecord) -> Result<Ssl, boring::error::ErrorStack> {
        let mut ssl = Ssl::new(&self.front)?;
        // Free the handshake-only configuration (certificate, key, CA names) once the
        // handshake is done: an idle connection keeps only what it still needs.
        ext::shed_handshake_config(&mut ssl);
        // Set before the ClientHello, so that alerts of a handshake that fails early are
        // recorded too.
        ssl.set_ex_data(handshake_record_index(), record);
        Ok(ssl)
    }

    /// The sites, in configuration order.
    pub fn sites(&self) -> &[Arc<SiteTls>] {
        &self.sites
    }

    /// What a connection's handshake recorded (decision, alerts).
    pub(crate) fn handshake_record_of(ssl: &SslRef) -> Option<&HandshakeRecord> {
        ssl.ex_data(handshake_record_index())
    }

    /// The site a connection's ClientHello selected (None before the ClientHello was read).
    pub(crate) fn site_of(ssl: &SslRef) -> Option<&Arc<SiteTls>> {
        ssl.ex_data(site_index())
    }
}

/// A site's connection function, compiled to check it (a syntax error is a configuration
/// error naming the file, line and column), reading the store its `kvs` names in this
/// generation's revocation view (the store the admin API edits once the view is live).
fn site_function(
    site: &SiteSnapshot,
    view: &RevocationView,
) -> Result<Option<ConnectionFunction>, ConfigError> {
    let Some(settings) = &site.mtls.connection_function else {
        return Ok(None);
    };
    let kvs = match &settings.kvs {
        None => None,
        Some(name) => Some(
            view.store(name)
                .cloned()
                .map(KvsSource::of)
                .ok_or_else(|| ConfigError {
                    file: settings.path.clone(),
                    key: format!("{}.mtls.connection_function.kvs", site.key_prefix),
                    reason: format!(
                        "key-value store {name:?} is not defined in this configuration"
                    ),
                })?,
        ),
    };
    ConnectionFunction::from_settings(settings, kvs)
        .map(Some)
        .map_err(|e| ConfigError {
            file: settings.path.clone(),
            key: settings.file_key.clone(),
            reason: e.to_string(),
        })
}

/// A site's context under construction and the trust anchors its verify callback uses (none
/// for the front context).
struct SiteContext {
    builder: SslContextBuilder,
    trust: Option<Arc<TrustAnchors>>,
}

/// Trust anchors by the SHA-256 of their DER, while some snapshot uses them: a reload whose
/// bundle did not change reuses them instead of parsing them again.
fn trust_cache() -> &'static Mutex<HashMap<[u8; 32], Weak<TrustAnchors>>> {
    static CACHE: OnceLock<Mutex<HashMap<[u8; 32], Weak<TrustAnchors>>>> = OnceLock::new();
    CACHE.get_or_init(|| Mutex::new(HashMap::new()))
}

/// The parsed and indexed `anchors`: from the cache when another snapshot already built them.
fn trust_anchors(anchors: &[TrustAnchor]) -> Result<Arc<TrustAnchors>, Vec<(usize, String)>> {
    let mut digest = boring::sha::Sha256::new();
    for anchor in anchors {
        digest.update(&(anchor.der.len() as u64).to_be_bytes());
        digest.update(&anchor.der);
    }
    let key = digest.finish();
    let mut cache = trust_cache()
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(trust) = cache.get(&key).and_then(Weak::upgrade) {
        return Ok(trust);
    }
    let trust = Arc::new(TrustAnchors::build(anchors)?);
    cache.retain(|_, weak| weak.strong_count() > 0);
    cache.insert(key, Arc::downgrade(&trust));
    Ok(trust)
}

/// Everything a site's context holds; the front context adds SNI selection on top.
///
/// The context runs without BoringSSL's X509 layer (`TLS_with_buffers_method`): certificates
/// travel as DER buffers, so a session (and every open connection) holds no parsed X509
/// objects; the client chain is parsed only while [`verify_viewer`] checks it.
fn site_context_builder(
    site: &SiteSnapshot,
    with_trust: bool,
) -> Result<SiteContext, Vec<ConfigError>> {
    let prefix = &site.key_prefix;
    let cert_error = |reason: String| ConfigError {
        file: site.certificate_path.clone(),
        key: format!("{prefix}.certificate"),
        reason,
    };
    let key_error = |reason: String| ConfigError {
        file: site.private_key_path.clone(),
        key: format!("{prefix}.private_key"),
        reason,
    };
    let internal = |what: &str, e: boring::error::ErrorStack| {
        vec![ConfigError {
            file: site.certificate_path.clone(),
            key: prefix.clone(),
            reason: format!("{what}: {e}"),
        }]
    };

    // SAFETY: this module calls no X509-based function on these contexts or their
    // connections (certificates, CA names and verification all go through DER buffers).
    let method = unsafe { SslMethod::tls_with_buffer() };
    let mut b = SslContext::builder(method).map_err(|e| internal("TLS context", e))?;
    b.set_min_proto_version(Some(SslVersion::TLS1_2))
        .map_err(|e| internal("TLS versions", e))?;
    b.set_max_proto_version(Some(SslVersion::TLS1_3))
        .map_err(|e| internal("TLS versions", e))?;
    b.set_cipher_list(TLS12_CIPHERS)
        .map_err(|e| internal("cipher suites", e))?;
    b.set_options(SslOptions::CIPHER_SERVER_PREFERENCE);
    // Tickets (stateless, shared by all workers through the front context) instead of a
    // locked server-side session cache.
    b.set_session_cache_mode(SslSessionCacheMode::OFF);
    // The site's protocols in its order of preference (the context the ClientHello callback
    // switches to answers ALPN). A client offering none of them gets no ALPN answer and
    // speaks HTTP/1.1 if the site allows it, else the no_application_protocol alert.
    let alpn = site.alpn.clone();
    let no_match = if alpn.contains(&AppProtocol::Http11) {
        AlpnError::NOACK
    } else {
        AlpnError::ALERT_FATAL
    };
    b.set_alpn_select_callback(move |_, offered| select_alpn(&alpn, offered).ok_or(no_match));
    ext::record_alerts(&mut b);
    ext::set_max_certificate_message(&mut b, MAX_CERTIFICATE_MESSAGE);

    let mut errors = Vec::new();
    if let Err(e) = ext::set_context_verify_algorithms(&mut b, &site.mtls.signature_algorithms) {
        errors.push(ConfigError {
            file: site.certificate_path.clone(),
            key: format!("{prefix}.mtls.signature_algorithms"),
            reason: format!("not usable with this TLS library: {e}"),
        });
    }
    let leaf = match site
        .certificate_chain
        .first()
        .map(|der| X509::from_der(der))
    {
        Some(Ok(leaf)) => Some(leaf),
        Some(Err(e)) => {
            errors.push(cert_error(format!("certificate does not parse: {e}")));
            None
        }
        None => {
            errors.push(cert_error("no certificate in the file".into()));
            None
        }
    };
    for (i, der) in site.certificate_chain.iter().enumerate().skip(1) {
        if let Err(e) = X509::from_der(der) {
            errors.push(cert_error(format!("chain certificate {i}: {e}")));
        }
    }
    let key = match PKey::private_key_from_pem(site.private_key.pem()) {
        Ok(key) => Some(key),
        Err(e) => {
            errors.push(key_error(format!("private key does not parse: {e}")));
            None
        }
    };
    if let (Some(leaf), Some(key)) = (&leaf, &key) {
        match leaf.public_key() {
            Ok(public) if public.public_eq(key) => {
                if let Err(e) = ext::set_chain_and_key(&mut b, &site.certificate_chain, key) {
                    errors.push(cert_error(format!("certificate not usable: {e}")));
                }
            }
            Ok(_) => errors.push(key_error(
                "private key does not match the certificate".into(),
            )),
            Err(e) => errors.push(cert_error(format!("certificate not usable: {e}"))),
        }
    }

    let trust_error = |reason: String| ConfigError {
        file: site
            .mtls
            .trust_store_path
            .clone()
            .unwrap_or_else(|| site.certificate_path.clone()),
        key: format!("{prefix}.mtls.trust_store"),
        reason,
    };
    let trust = if with_trust {
        match trust_anchors(&site.mtls.trust_store) {
            Ok(trust) => Some(trust),
            Err(problems) => {
                errors.extend(
                    problems
                        .into_iter()
                        .map(|(i, e)| trust_error(format!("certificate {i}: {e}"))),
                );
                None
            }
        }
    } else {
        None
    };
    if !errors.is_empty() {
        return Err(errors);
    }
    if let Some(trust) = trust.as_ref().filter(|_| site.mtls.advertise_ca_names) {
        if !trust.ca_names().is_empty() {
            ext::set_client_ca_names(&mut b, trust.ca_names())
                .map_err(|e| internal("client CA names", e))?;
        }
    }
    ext::set_context_verify(
        &mut b,
        ViewerPolicy::from_settings(&site.mtls).verify_mode(),
    );
    Ok(SiteContext { builder: b, trust })
}

/// The first of the site's `protocols` (its order of preference) that the client `offered`
/// (ALPN wire format: length-prefixed identifiers), as a slice of `offered`. A malformed list
/// selects nothing.
fn select_alpn<'a>(protocols: &[AppProtocol], offered: &'a [u8]) -> Option<&'a [u8]> {
    protocols.iter().find_map(|p| {
        let mut rest = offered;
        while let Some((&len, tail)) = rest.split_first() {
            let (id, next) = tail.split_at_checked(usize::from(len))?;
            if id == p.as_str().as_bytes() {
                return Some(id);
            }
            rest = next;
        }
        None
    })
}

/// The certificate decision of the site the ClientHello selected, for BoringSSL's verify
/// callback ([`ext`]'s trampoline): runs [`verify_chain`] on the presented chain now, records
/// the decision for the connection log, and answers the alert to send on refusal. Fails closed
/// (internal_error) when it cannot be evaluated.
pub(crate) fn verify_viewer(ssl: &mut SslRef) -> Result<(), u8> {
    let Some(site) = TlsSnapshot::site_of(ssl) else {
        return Err(alert::INTERNAL_ERROR);
    };
    let presented: Vec<&[u8]> = ext::peer_certificates(ssl).collect();
    let mut decision = verify_chain(
        &site.policy,
        &site.trust,
        &presented,
        &site.revocation,
        SystemTime::now(),
    );
    if let (Ok(_), Some(function)) = (&decision, &site.function) {
        // The function can only narrow access: it runs once every check above passed.
        let leaf = presented.first().map(|der| cached_fields(der));
        decision = match leaf {
            Some(None) => Err(Refusal::Malformed { index: 0 }),
            Some(Some(leaf)) => run_function(ssl, site, function, Some(leaf)).and(decision),
            None => run_function(ssl, site, function, None).and(decision),
        };
    }
    let answer = decision.as_ref().map(|_| ()).map_err(Refusal::alert);
    if let Some(record) = TlsSnapshot::handshake_record_of(ssl) {
        record.decide(decision);
    }
    answer
}

/// The decision of a site's connection function for a connection that presented no client
/// certificate (optional or passthrough mode), made right after its full handshake (BoringSSL
/// runs no verify callback without a certificate). Resumed sessions and connections already
/// decided pass. On refusal the alert to send is returned and the refusal recorded.
pub(crate) fn decide_without_certificate(ssl: &SslRef) -> Result<(), u8> {
    let Some(site) = TlsSnapshot::site_of(ssl) else {
        return Ok(());
    };
    let Some(function) = &site.function else {
        return Ok(());
    };
    let record = TlsSnapshot::handshake_record_of(ssl);
    if ssl.session_reused()
        || record.is_some_and(|r| r.decision().is_some())
        || ext::peer_leaf_der(ssl).is_some()
    {
        return Ok(());
    }
    let decision = run_function(ssl, site, function, None).map(|()| Default::default());
    let answer = decision.as_ref().map(|_| ()).map_err(Refusal::alert);
    if let Some(record) = record {
        record.decide(decision);
    }
    answer
}

/// Runs `function` for this connection (with the leaf's fields when a certificate was
/// presented); keeps its custom log data and the leaf in the handshake record.
fn run_function(
    ssl: &SslRef,
    site: &SiteTls,
    function: &ConnectionFunction,
    leaf: Option<Arc<LeafFields>>,
) -> Result<(), Refusal> {
    let record = TlsSnapshot::handshake_record_of(ssl);
    let (id, peer) = record
        .and_then(HandshakeRecord::connection)
        .ok_or(Refusal::Internal(
            "connection function without a connection id",
        ))?;
    let id = id.encode();
    let endpoint = ssl
        .servername(NameType::HOST_NAME)
        .or_else(|| site.config.first_exact_name())
        .unwrap_or_default();
    let input = FunctionInput {
        leaf: leaf.as_deref(),
        client_ip: peer.ip(),
        endpoint,
        distribution_id: &site.config.name,
        connection_id: std::str::from_utf8(&id).unwrap_or("-"),
        tls_version: Some(ssl.version_str()),
    };
    let report = function.call(&input);
    if let Some(record) = record {
        if let Some(leaf) = leaf {
            record.set_leaf(leaf);
        }
        if let Some(text) = report.custom_data {
            record.set_custom_data(text);
        }
    }
    report.decision.map_err(Refusal::Function)
}

/// Records an alert a connection sent (`sent`) or received in its handshake record (called
/// by [`ext`]'s info callback).
pub(crate) fn note_alert(ssl: &SslRef, sent: bool, alert: u8) {
    if let Some(record) = TlsSnapshot::handshake_record_of(ssl) {
        record.note_alert(sent, alert);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alpn_follows_the_site_preference() {
        use AppProtocol::{Http11, H2};
        let both = b"\x02h2\x08http/1.1";
        assert_eq!(select_alpn(&[H2, Http11], both), Some(&b"h2"[..]));
        assert_eq!(select_alpn(&[Http11, H2], both), Some(&b"http/1.1"[..]));
        assert_eq!(select_alpn(&[Http11], b"\x02h2"), None);
        assert_eq!(select_alpn(&[H2], b"\x08http/1.1\x02h2"), Some(&b"h2"[..]));
        // Truncated or malformed lists select nothing and never panic.
        assert_eq!(select_alpn(&[H2], b"\x05h2"), None);
        assert_eq!(select_alpn(&[H2], b""), None);
        assert_eq!(select_alpn(&[H2], b"\x00\x00\x02h2"), Some(&b"h2"[..]));
    }
}
