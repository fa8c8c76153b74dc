//! Running the data plane in the foreground: start the workers, announce readiness, reload on
//! SIGHUP, drain and stop on SIGTERM/SIGINT.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use portcullis_config::ConfigErrors;
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

use crate::admin::{self, AdminServer, RevocationAdmin};
use crate::revocation::{RevocationState, RevocationView};
use crate::server::{Server, StartError};
use crate::tls::TlsSnapshot;

/// Why the data plane could not run.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The configuration is invalid.
    #[error("invalid configuration:\n{0}")]
    Config(#[from] ConfigErrors),
    /// The workers could not start.
    #[error(transparent)]
    Start(#[from] StartError),
    /// Signal handlers could not be installed.
    #[error("signal handling: {0}")]
    Signals(std::io::Error),
    /// The admin API could not listen.
    #[error("admin API: {0}")]
    Admin(std::io::Error),
}

/// Stages a configuration: loads and fully checks it (parsing, files, revocation stores
/// resolved by name, every site's TLS context) into a snapshot built from it alone, checking
/// revocation against `revocation`. Nothing live changes; the snapshot goes live with
/// [`commit`].
pub fn stage(path: &Path, revocation: &Arc<RevocationState>) -> Result<TlsSnapshot, ConfigErrors> {
    let config = Arc::new(portcullis_config::load(path)?);
    let view = Arc::new(RevocationView::stage(&config)?);
    TlsSnapshot::build(config, revocation, view)
}

/// Loads and fully checks a configuration (what `check` does): a staged snapshot and the
/// revocation state it checks against, for a first start.
pub fn load(path: &Path) -> Result<(TlsSnapshot, Arc<RevocationState>), ConfigErrors> {
    let revocation = RevocationState::new();
    let tls = stage(path, &revocation)?;
    Ok((tls, revocation))
}

/// Makes a staged snapshot live: one atomic swap of the snapshot (trust stores, sites and
/// the revocation view it carries), then the view is published for the admin API and the
/// open-connection re-checks.
fn commit(server: &Server, revocation: &RevocationState, tls: TlsSnapshot) {
    let view = Arc::clone(tls.revocation_view());
    server.swap(tls);
    revocation.publish(view);
}

/// Reloads the configuration into a running server: stage → build → validate → commit. The
/// new snapshot is built from the new configuration alone, any unresolved reference refuses
/// the whole reload (the running snapshot stays), and the swap is one atomic step. Store
/// mutations through the admin API wait from before the store files are read until the new
/// view is live, so none is lost in between.
fn reload(
    path: &Path,
    server: &Server,
    revocation: &Arc<RevocationState>,
) -> Result<(), ConfigErrors> {
    let _writes = revocation.lock_writes();
    let tls = stage(path, revocation)?;
    commit(server, revocation, tls);
    Ok(())
}

/// Runs until SIGTERM or SIGINT, then drains and returns. Once every worker listens, one line
/// `listening on https://ADDR` per address and then `ready` are printed on standard output.
pub fn run(config_path: PathBuf) -> Result<(), RunError> {
    let (snapshot, revocation) = load(&config_path)?;
    for warning in snapshot.config.warnings() {
        tracing::warn!("{warning}");
    }
    // Install handlers before the workers start, so an early SIGTERM is not fatal.
    let mut signals = Signals::new([SIGTERM, SIGINT, SIGHUP]).map_err(RunError::Signals)?;
    if !monoio::utils::detect_uring() {
        tracing::warn!("io_uring is not available here; workers fall back to epoll");
    }
    let admin = match &snapshot.config.admin {
        Some(settings) => {
            let backend: Arc<dyn RevocationAdmin> = Arc::clone(&revocation) as _;
            let server =
                admin::server::start(&settings.listen, backend).map_err(RunError::Admin)?;
            tracing::info!(listen = ?settings.listen, "admin API listening");
            Some(server)
        }
        None => None,
    };
    let workers = snapshot.config.server.workers;
    revocation.publish(Arc::clone(snapshot.revocation_view()));
    let mut server = Server::start(snapshot, Arc::clone(&revocation))?;
    announce(&server, admin.as_ref(), workers);
    for signal in signals.forever() {
        match signal {
            SIGHUP => match reload(&config_path, &server, &revocation) {
                Ok(()) => tracing::info!(config = %config_path.display(), "configuration reloaded"),
                Err(errors) => {
                    tracing::error!(config = %config_path.display(), %errors, "reload refused; the running configuration stays");
                }
            },
            _ => break,
        }
    }
    tracing::info!("shutting down: draining connections");
    drop(admin);
    server.stop();
    server.join();
    tracing::info!("stopped");
    Ok(())
}

fn announce(server: &Server, admin: Option<&AdminServer>, workers: usize) {
    let mut out = std::io::stdout().lock();
    for addr in server.local_addrs() {
        let _ = writeln!(out, "listening on https://{addr}");
    }
    if let Some(addr) = admin.and_then(AdminServer::local_addr) {
        let _ = writeln!(out, "admin on http://{addr}");
    }
    tracing::info!(workers, "ready");
    let _ = writeln!(out, "ready");
    let _ = out.flush();
}
