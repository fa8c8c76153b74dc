//! Running the data plane in the foreground: start the workers, announce readiness, reload on
//! SIGHUP, drain and stop on SIGTERM/SIGINT.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use portcullis_config::ConfigErrors;
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

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
}

/// Loads and fully checks a configuration: parsing, files, and every site's TLS context.
pub fn load(path: &Path) -> Result<TlsSnapshot, ConfigErrors> {
    let config = portcullis_config::load(path)?;
    TlsSnapshot::build(Arc::new(config))
}

/// Runs until SIGTERM or SIGINT, then drains and returns. Once every worker listens, one line
/// `listening on https://ADDR` per address and then `ready` are printed on standard output.
pub fn run(config_path: PathBuf) -> Result<(), RunError> {
    let snapshot = load(&config_path)?;
    // Install handlers before the workers start, so an early SIGTERM is not fatal.
    let mut signals = Signals::new([SIGTERM, SIGINT, SIGHUP]).map_err(RunError::Signals)?;
    if !monoio::utils::detect_uring() {
        tracing::warn!("io_uring is not available here; workers fall back to epoll");
    }
    let workers = snapshot.config.server.workers;
    let mut server = Server::start(snapshot)?;
    announce(&server, workers);
    for signal in signals.forever() {
        match signal {
            SIGHUP => match load(&config_path) {
                Ok(snapshot) => {
                    server.swap(snapshot);
                    tracing::info!(config = %config_path.display(), "configuration reloaded");
                }
                Err(errors) => {
                    tracing::error!(config = %config_path.display(), %errors, "reload refused; the running configuration stays");
                }
            },
            _ => break,
        }
    }
    tracing::info!("shutting down: draining connections");
    server.stop();
    server.join();
    tracing::info!("stopped");
    Ok(())
}

fn announce(server: &Server, workers: usize) {
    let mut out = std::io::stdout().lock();
    for addr in server.local_addrs() {
        let _ = writeln!(out, "listening on https://{addr}");
    }
    tracing::info!(workers, "ready");
    let _ = writeln!(out, "ready");
    let _ = out.flush();
}
