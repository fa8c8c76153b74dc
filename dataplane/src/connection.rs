//! One client connection: TLS handshake under the site's policy, then HTTP proxying.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use monoio::net::TcpStream;
use portcullis_config::MtlsMode;

use crate::proxy::{self, Exchange};
use crate::tls::{OpenIdentity, SiteTls, TlsError, TlsSnapshot, TlsStream};
use crate::viewer_cert::{render_headers, ViewerCertInfo};
use crate::worker::ActiveGuard;

/// How long a refused client gets to read its alert while the rest of its flight is drained.
const REFUSAL_LINGER: Duration = Duration::from_millis(500);

/// Serves one accepted connection until it closes. `guard` keeps it counted as active.
pub async fn handle(stream: TcpStream, peer: SocketAddr, guard: ActiveGuard) {
    let worker = guard.worker();
    let snapshot = worker.shared.snapshot.load_full();
    let timeouts = &snapshot.config.server.timeouts;
    let _ = stream.set_nodelay(true);
    let ssl = match snapshot.new_session() {
        Ok(ssl) => ssl,
        Err(e) => {
            tracing::error!(%peer, error = %e, "cannot create TLS session");
            return;
        }
    };
    let mut tls = match TlsStream::new(ssl, stream) {
        Ok(tls) => tls,
        Err(e) => {
            tracing::error!(%peer, error = %e, "cannot create TLS stream");
            return;
        }
    };
    match monoio::time::timeout(timeouts.handshake, tls.accept()).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            log_refusal(&tls, peer, &e);
            tls.linger_close(REFUSAL_LINGER).await;
            return;
        }
        Err(_) => {
            tracing::debug!(%peer, "handshake timed out");
            return;
        }
    }
    let Some(site) = TlsSnapshot::site_of(tls.ssl()).map(Arc::clone) else {
        // The ClientHello callback always records the site; without it, fail closed.
        tracing::error!(%peer, "handshake completed without a selected site");
        return;
    };
    let Some(viewer_headers) = viewer_headers(&tls, &site) else {
        tracing::info!(%peer, site = %site.config.name, "client certificate does not parse; closing");
        return;
    };
    tracing::debug!(
        %peer,
        site = %site.config.name,
        version = tls.ssl().version_str(),
        "handshake accepted"
    );
    let identity = (site.config.mtls.revoke_open_connections
        && site.policy.mode != MtlsMode::Passthrough)
        .then(|| {
            let record = TlsSnapshot::chain_record_of(tls.ssl());
            OpenIdentity::of(tls.ssl(), record, site.revocation.clone())
        })
        .flatten();
    let exchange = Exchange {
        server: &snapshot.config.server,
        origin: &site.config.origin,
        client_ip: peer.ip(),
        viewer_headers: &viewer_headers,
        pool: &worker.pool,
        shutdown: &worker.shutdown,
        revocations: &worker.revocations,
        identity: identity.as_ref(),
        buffers: &worker.buffers,
    };
    if let Err(e) = proxy::serve(&mut tls, &exchange).await {
        tracing::debug!(%peer, error = %e, "connection ended with an error");
    }
    let _ = tls.shutdown().await;
}

/// The viewer-cert header block of this connection, rendered once for all its requests.
/// None when a presented certificate cannot be parsed (the connection is then refused).
fn viewer_headers<T>(tls: &TlsStream<T>, site: &SiteTls) -> Option<Vec<u8>>
where
    T: monoio::io::AsyncReadRent + monoio::io::AsyncWriteRent,
{
    let info = match tls.ssl().peer_certificate() {
        Some(cert) => {
            let der = cert.to_der().ok()?;
            Some(ViewerCertInfo::from_der(&der).ok()?)
        }
        None => None,
    };
    let mut block = Vec::with_capacity(if info.is_some() { 2048 } else { 40 });
    let include_pem = site.policy.mode != MtlsMode::Passthrough;
    render_headers(
        info.as_ref(),
        &site.config.mtls.forward,
        include_pem,
        &mut block,
    );
    Some(block)
}

fn log_refusal<T>(tls: &TlsStream<T>, peer: SocketAddr, error: &TlsError)
where
    T: monoio::io::AsyncReadRent + monoio::io::AsyncWriteRent,
{
    let site = TlsSnapshot::site_of(tls.ssl()).map(|s| s.config.name.as_str());
    let verify = tls.ssl().verify_result();
    tracing::info!(
        %peer,
        site = site.unwrap_or("-"),
        verify = ?verify.err().map(|e| e.error_string()),
        %error,
        "handshake refused"
    );
}
