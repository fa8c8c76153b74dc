//! Running the data plane in the foreground: stage the configuration, start telemetry, the
//! workers and the control plane (file watching, object polling, the admin API), announce
//! readiness, reload on SIGHUP (through the control plane), reopen the log files on SIGUSR1,
//! drain and stop on SIGTERM/SIGINT (the admin API stays up during the drain, answering
//! `/readyz` with 503).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use portcullis_config::ConfigErrors;
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM, SIGUSR1};
use signal_hook::iterator::Signals;

use crate::admin::{self, AdminServer, RevocationAdmin};
use crate::admin_backend::MetricsEndpoint;
use crate::control::{self, ControlPlane, Trigger};
use crate::revocation::RevocationState;
use crate::server::{Server, StartError};
use crate::sources::RemoteSources;
use crate::telemetry::{Telemetry, TelemetryError};
use crate::tls::TlsSnapshot;

/// Why the data plane could not run.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The configuration is invalid. (Not the error's `source`: the list is printed once, in
    /// this message, not again by a `{:#}` that walks the chain.)
    #[error("invalid configuration:\n{0}")]
    Config(ConfigErrors),
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

impl From<ConfigErrors> for RunError {
    fn from(errors: ConfigErrors) -> Self {
        Self::Config(errors)
    }
}

/// Loads and fully checks a configuration (what `check` does): parsing, every file and object
/// it names, revocation stores resolved by name, every site's TLS context. Returns the staged
/// snapshot and the revocation state it checks against.
pub fn load(path: &Path) -> Result<(TlsSnapshot, Arc<RevocationState>), ConfigErrors> {
    let revocation = RevocationState::new();
    let startup = control::stage_startup(path, &revocation, &RemoteSources::new())?;
    Ok((startup.tls, revocation))
}

/// Runs until SIGTERM or SIGINT, then drains and returns. Once every worker listens, one line
/// `listening on https://ADDR` per address and then `ready` are printed on standard output.
pub fn run(config_path: PathBuf) -> Result<(), RunError> {
    let revocation = RevocationState::new();
    let remote = Arc::new(RemoteSources::new());
    let startup = control::stage_startup(&config_path, &revocation, &remote)?;
    let snapshot = &startup.tls;
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
    let workers = snapshot.config.server.workers;
    let admin_settings = snapshot.config.admin.clone();
    let sources = snapshot.config.sources.clone();
    let object_urls: Vec<_> = snapshot
        .config
        .files
        .iter()
        .filter_map(|file| file.location.object_url().cloned())
        .collect();
    revocation.publish(Arc::clone(snapshot.revocation_view()));
    let (tls, startup) = startup.into_parts();
    let mut server = match Server::start(tls, Arc::clone(&revocation), Arc::clone(&telemetry)) {
        Ok(server) => server,
        Err(e) => {
            telemetry.stop();
            return Err(e.into());
        }
    };
    remote.commit(&sources, &object_urls);
    let control = ControlPlane::start(
        config_path.clone(),
        server.shared(),
        revocation,
        remote,
        Some(Arc::clone(&telemetry.metrics)),
        startup,
    );
    let admin = match &admin_settings {
        Some(settings) => {
            let backend: Arc<dyn RevocationAdmin> = Arc::clone(&control) as _;
            match admin::server::start(settings, backend) {
                Ok(admin) => {
                    admin.observe(Arc::new(MetricsEndpoint(Arc::clone(&telemetry.metrics))));
                    tracing::info!(listen = ?settings.listen, "admin API listening");
                    Some(admin)
                }
                Err(e) => {
                    control.shutdown();
                    server.stop();
                    server.join();
                    telemetry.stop();
                    return Err(RunError::Admin(e));
                }
            }
        }
        None => None,
    };
    announce(&server, admin.as_ref(), workers);
    for signal in signals.forever() {
        match signal {
            // The outcome is logged (and counted) by the control plane.
            SIGHUP => {
                let _ = control.reload(Trigger::Signal);
            }
            SIGUSR1 => telemetry.reopen_logs(),
            _ => break,
        }
    }
    tracing::info!("shutting down: draining connections");
    telemetry.metrics.set_draining();
    control.shutdown();
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
