//! Running the data plane in the foreground: start telemetry and the workers, announce
//! readiness, reload on SIGHUP, reopen the log files on SIGUSR1, drain and stop on
//! SIGTERM/SIGINT (the admin API stays up during the drain, answering `/readyz` with 503).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use portcullis_config::ConfigErrors;
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM, SIGUSR1};
use signal_hook::iterator::Signals;

use crate::admin::{self, AdminServer, RevocationAdmin};
use crate::admin_backend::MetricsEndpoint;
use crate::revocation::RevocationState;
use crate::server::{Server, StartError};
use crate::telemetry::{Telemetry, TelemetryError};
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
    /// The logs could not be opened.
    #[error(transparent)]
    Telemetry(#[from] TelemetryError),
}

/// Loads and fully checks a configuration: parsing, files, and every site's TLS context.
/// Returns the revocation state it was checked with, for a first start.
pub fn load(path: &Path) -> Result<(TlsSnapshot, Arc<RevocationState>), ConfigErrors> {
    let config = Arc::new(portcullis_config::load(path)?);
    let revocation = RevocationState::new(&config);
    let tls = TlsSnapshot::build(config, &revocation)?;
    Ok((tls, revocation))
}

/// Reloads the configuration into a running server: the new snapshot is fully built before
/// anything changes, so a bad one leaves the running configuration in place.
fn reload(
    path: &Path,
    server: &Server,
    revocation: &Arc<RevocationState>,
) -> Result<(), ConfigErrors> {
    let config = Arc::new(portcullis_config::load(path)?);
    let tls = TlsSnapshot::build(Arc::clone(&config), revocation)?;
    revocation.reload(&config);
    server.swap(tls);
    Ok(())
}

/// Runs until SIGTERM or SIGINT, then drains and returns. Once every worker listens, one line
/// `listening on https://ADDR` per address and then `ready` are printed on standard output.
pub fn run(config_path: PathBuf) -> Result<(), RunError> {
    let (snapshot, revocation) = load(&config_path)?;
    for warning in snapshot.config.warnings() {
        tracing::warn!("{warning}");
    }
    raise_open_file_limit(&snapshot.config.server);
    // Install handlers before the workers start, so an early SIGTERM is not fatal.
    let mut signals =
        Signals::new([SIGTERM, SIGINT, SIGHUP, SIGUSR1]).map_err(RunError::Signals)?;
    let telemetry = Telemetry::start(&snapshot.config)?;
    if !monoio::utils::detect_uring() {
        tracing::warn!("io_uring is not available here; workers fall back to epoll");
    }
    let admin = match &snapshot.config.admin {
        Some(settings) => {
            let backend: Arc<dyn RevocationAdmin> = Arc::clone(&revocation) as _;
            let server = admin::server::start(settings, backend).map_err(RunError::Admin)?;
            server.observe(Arc::new(MetricsEndpoint(Arc::clone(&telemetry.metrics))));
            tracing::info!(listen = ?settings.listen, "admin API listening");
            Some(server)
        }
        None => None,
    };
    let workers = snapshot.config.server.workers;
    let mut server = match Server::start(snapshot, Arc::clone(&revocation), Arc::clone(&telemetry))
    {
        Ok(server) => server,
        Err(e) => {
            telemetry.stop();
            return Err(e.into());
        }
    };
    announce(&server, admin.as_ref(), workers);
    for signal in signals.forever() {
        match signal {
            SIGHUP => {
                let result = reload(&config_path, &server, &revocation);
                telemetry.metrics.reloaded(result.is_ok());
                match result {
                    Ok(()) => {
                        tracing::info!(config = %config_path.display(), "configuration reloaded");
                        if server.logs_changed(telemetry.log_settings()) {
                            tracing::warn!("[logs] changed: log settings apply at the next start");
                        }
                    }
                    Err(errors) => {
                        tracing::error!(config = %config_path.display(), %errors, "reload refused; the running configuration stays");
                    }
                }
            }
            SIGUSR1 => telemetry.reopen_logs(),
            _ => break,
        }
    }
    tracing::info!("shutting down: draining connections");
    telemetry.metrics.set_draining();
    server.stop();
    server.join();
    drop(admin);
    telemetry.stop();
    tracing::info!("stopped");
    Ok(())
}

/// File descriptors kept aside for listeners, the admin API, logs and configuration files.
const FILE_DESCRIPTOR_RESERVE: u64 = 256;

/// Raises the soft open-file limit to the hard one (as nginx's `worker_rlimit_nofile` or
/// HAProxy do), and warns when even that is below what the connection limits may need: every
/// connection can hold a client socket and an origin socket.
fn raise_open_file_limit(server: &portcullis_config::ServerSettings) {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit into `limit`.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return;
    }
    if limit.rlim_cur < limit.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: limit.rlim_max,
            rlim_max: limit.rlim_max,
        };
        // SAFETY: setrlimit reads one rlimit; raising the soft limit up to the hard one is
        // always allowed.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            limit = raised;
        }
    }
    let needed = (server.workers as u64)
        .saturating_mul(server.limits.max_connections_per_worker as u64)
        .saturating_mul(2)
        .saturating_add(FILE_DESCRIPTOR_RESERVE);
    if needed > limit.rlim_cur {
        tracing::warn!(
            workers = server.workers,
            max_connections_per_worker = server.limits.max_connections_per_worker,
            needed,
            limit = limit.rlim_cur,
            "the open-file limit (RLIMIT_NOFILE) is below what the connection limits may need: raise it (LimitNOFILE= in systemd) or lower server.limits.max_connections_per_worker"
        );
    }
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
