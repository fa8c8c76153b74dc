//! Running the data plane in the foreground: stage the configuration, start telemetry, the
//! workers and the control plane (file watching, object polling, the admin API), announce
//! readiness (stdout and systemd's `READY=1`), reload on SIGHUP (through the control plane),
//! reopen the log files on SIGUSR1, start a binary upgrade on SIGUSR2 ([`crate::upgrade`]),
//! drain and stop on SIGTERM/SIGINT (the admin API stays up during the drain, answering
//! `/readyz` with 503). Signals reach the main loop through a forwarding thread, and an
//! upgrade runs on its own thread, so a stop is handled during an upgrade.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};

use portcullis_config::{ConfigErrors, Location};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM, SIGUSR1, SIGUSR2};
use signal_hook::iterator::Signals;

use crate::admin::{self, AdminServer, RevocationAdmin};
use crate::admin_backend::MetricsEndpoint;
use crate::control::{self, ControlPlane, Trigger};
use crate::revocation::RevocationState;
use crate::server::{Server, StartError};
use crate::service::{self, Watchdog};
use crate::sources::RemoteSources;
use crate::telemetry::{Telemetry, TelemetryError};
use crate::tls::TlsSnapshot;
use crate::upgrade::{self, UpgradeError};

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
    /// A binary upgrade's handover could not be read.
    #[error("binary upgrade: {0}")]
    Upgrade(String),
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
/// `listening on https://ADDR` per address and then `ready` are printed on standard output
/// (and `READY=1` sent to systemd). SIGUSR2 starts a binary upgrade (see [`crate::upgrade`]).
pub fn run(config_path: PathBuf) -> Result<(), RunError> {
    serve(config_path, true)
}

/// [`run`] without binary upgrades (SIGUSR2 is refused): for `portcullis demo`, whose echo
/// origin lives in this process.
pub fn run_without_upgrades(config_path: PathBuf) -> Result<(), RunError> {
    serve(config_path, false)
}

/// Something the main loop acts on.
#[derive(Debug)]
enum Event {
    /// A signal arrived.
    Signal(i32),
    /// A binary upgrade ended: the new process's id, or why it did not happen.
    UpgradeFinished(Result<u32, UpgradeError>),
}

/// How the main loop ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Exit {
    /// SIGTERM or SIGINT (or the old process of an upgrade gave up on this one).
    Stop,
    /// A binary upgrade handed the service to the new process `pid`.
    HandedOver(u32),
}

fn serve(config_path: PathBuf, upgradable: bool) -> Result<(), RunError> {
    // The binary to start on SIGUSR2: the path this one was started from, read now (after a
    // package upgrade replaced the file, /proc/self/exe names the deleted old one).
    let exe = std::env::current_exe().ok();
    let config_path = std::path::absolute(&config_path).unwrap_or(config_path);
    let mut inherited = upgrade::Inherited::from_env().map_err(RunError::Upgrade)?;
    let result = serve_inner(config_path, exe.filter(|_| upgradable), &mut inherited);
    if let (Err(e), Some(inherited)) = (&result, inherited.as_mut()) {
        inherited.fail(&e.to_string());
    }
    result
}

fn serve_inner(
    config_path: PathBuf,
    exe: Option<PathBuf>,
    inherited: &mut Option<upgrade::Inherited>,
) -> Result<(), RunError> {
    let revocation = RevocationState::new();
    let remote = Arc::new(RemoteSources::new());
    let startup = control::stage_startup(&config_path, &revocation, &remote)?;
    // Sessions of the process this one replaces stay resumable if this process runs exactly
    // its configuration and data.
    let sessions = inherited
        .as_mut()
        .and_then(|i| i.sessions.take())
        .filter(|sessions| {
            let same = sessions.fingerprint == startup.fingerprint();
            if !same {
                tracing::info!("binary upgrade: the configuration or its files differ from the old process's live generation; sessions issued before the upgrade get full handshakes");
            }
            same
        });
    let (mut tls, startup) = startup.into_parts();
    if let Some(sessions) = &sessions {
        if let Err(error) = tls.use_session_ticket_key(&sessions.ticket_key) {
            tracing::warn!(%error, "binary upgrade: cannot use the old process's session ticket key");
        }
    }
    let snapshot = &tls;
    for warning in snapshot.config.warnings() {
        tracing::warn!("{warning}");
    }
    for warning in private_key_warnings(&snapshot.config) {
        tracing::warn!("{warning}");
    }
    raise_open_file_limit(&snapshot.config.server);
    ignore_file_size_signal();
    // Install handlers before the workers start, so an early SIGTERM is not fatal.
    let signals =
        Signals::new([SIGTERM, SIGINT, SIGHUP, SIGUSR1, SIGUSR2]).map_err(RunError::Signals)?;
    let telemetry = Telemetry::start(&snapshot.config)?;
    if !monoio::utils::detect_uring() {
        tracing::warn!("io_uring is not available here (kernel, or a seccomp filter); workers fall back to epoll");
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
    if let Some(sessions) = &sessions {
        revocation.continue_epoch(sessions.epoch);
        tracing::info!("binary upgrade: the old process's session tickets stay valid");
    }
    let listeners = inherited
        .as_mut()
        .map(|i| std::mem::take(&mut i.listeners))
        .unwrap_or_default();
    let mut server = match Server::start(
        tls,
        Arc::clone(&revocation),
        Arc::clone(&telemetry),
        listeners,
    ) {
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
    let mut admin = match &admin_settings {
        Some(settings) => {
            let backend: Arc<dyn RevocationAdmin> = Arc::clone(&control) as _;
            let inherited_admin = inherited.as_mut().and_then(|i| i.admin.take());
            match admin::server::start_with(settings, backend, inherited_admin) {
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
    let status = format!(
        "serving on {} address(es), {workers} worker(s)",
        server.local_addrs().len()
    );
    // Whether this process is the service's main process (whose notifications systemd takes).
    let mut main = true;
    let mut exit = None;
    if let Some(inherited) = inherited.as_mut() {
        match inherited.ready() {
            upgrade::Decision::Commit => {
                tracing::info!(
                    old = inherited.parent,
                    "binary upgrade: this process took over"
                );
            }
            upgrade::Decision::ParentGone => {
                tracing::warn!(
                    old = inherited.parent,
                    "binary upgrade: the old process is gone without deciding; this process serves"
                );
            }
            upgrade::Decision::Abort => {
                tracing::warn!(old = inherited.parent, "binary upgrade: the old process gave up on this one (not ready in time); draining and exiting");
                main = false;
                exit = Some(Exit::Stop);
            }
        }
    }
    let mut watchdog = None;
    if main {
        service::ready(&status);
        watchdog = Watchdog::start(Arc::clone(&server.shared().heartbeats));
    }

    let (events, receive) = mpsc::channel();
    let signal_handle = signals.handle();
    spawn_signal_forwarder(signals, events.clone());
    let abort = Arc::new(AtomicBool::new(false));
    let mut upgrading: Option<std::thread::JoinHandle<()>> = None;
    let exit = match exit {
        Some(exit) => exit,
        None => {
            loop {
                let Ok(event) = receive.recv() else {
                    break Exit::Stop;
                };
                match event {
                    Event::Signal(SIGHUP) if upgrading.is_some() => {
                        tracing::warn!("SIGHUP ignored: a binary upgrade is in progress (the new process reads the configuration file)");
                    }
                    // The outcome is logged (and counted) by the control plane.
                    Event::Signal(SIGHUP) => {
                        let _ = control.reload(Trigger::Signal);
                    }
                    Event::Signal(SIGUSR1) => telemetry.reopen_logs(),
                    Event::Signal(SIGUSR2) => {
                        let Some(exe) = &exe else {
                            tracing::warn!("SIGUSR2 ignored: binary upgrades are not available here (demo mode)");
                            continue;
                        };
                        if upgrading.is_some() {
                            tracing::warn!("SIGUSR2 ignored: {}", UpgradeError::InProgress);
                            continue;
                        }
                        match upgrade_request(exe, &config_path, &server, admin.as_ref()) {
                            Ok(request) => {
                                upgrading = Some(spawn_upgrade(
                                    request,
                                    Arc::clone(&control),
                                    Arc::clone(&abort),
                                    events.clone(),
                                ));
                            }
                            Err(error) => {
                                tracing::error!(%error, "binary upgrade: cannot duplicate the listeners; this process keeps serving")
                            }
                        }
                    }
                    Event::Signal(_) => break Exit::Stop,
                    Event::UpgradeFinished(Ok(pid)) => break Exit::HandedOver(pid),
                    Event::UpgradeFinished(Err(error)) => {
                        if let Some(thread) = upgrading.take() {
                            let _ = thread.join();
                        }
                        tracing::error!(%error, "binary upgrade failed; this process keeps serving");
                        if main {
                            service::ready(&status);
                        }
                    }
                }
            }
        }
    };
    match exit {
        Exit::HandedOver(pid) => {
            tracing::info!(
                new = pid,
                "binary upgrade: the new process serves; draining this one"
            );
            if let Some(admin) = admin.as_mut() {
                admin.hand_over();
            }
        }
        Exit::Stop => {
            tracing::info!("shutting down: draining connections");
            if main {
                service::stopping();
            }
        }
    }
    if let Some(watchdog) = watchdog.take() {
        watchdog.stop();
    }
    telemetry.metrics.set_draining();
    // An upgrade still waiting for its new process gives up on it first.
    abort.store(true, Ordering::SeqCst);
    if let Some(thread) = upgrading.take() {
        let _ = thread.join();
    }
    signal_handle.close();
    control.shutdown();
    server.stop();
    server.join();
    drop(admin);
    telemetry.stop();
    tracing::info!("stopped");
    Ok(())
}

/// Forwards every handled signal to the main loop.
fn spawn_signal_forwarder(mut signals: Signals, events: mpsc::Sender<Event>) {
    let spawned = std::thread::Builder::new()
        .name("portcullis-signals".into())
        .spawn(move || {
            for signal in signals.forever() {
                if events.send(Event::Signal(signal)).is_err() {
                    return;
                }
            }
        });
    if let Err(error) = spawned {
        // Without it the process cannot be stopped gracefully: fail loudly.
        panic!("cannot start the signal thread: {error}");
    }
}

/// What a binary upgrade hands over: duplicates of the listeners, taken now.
fn upgrade_request(
    exe: &Path,
    config: &Path,
    server: &Server,
    admin: Option<&AdminServer>,
) -> std::io::Result<upgrade::Request> {
    let listeners = server
        .listeners()
        .iter()
        .map(|(addr, socket)| Ok((*addr, socket.try_clone()?)))
        .collect::<std::io::Result<Vec<_>>>()?;
    let admin = admin.map(AdminServer::listener_for_handover).transpose()?;
    Ok(upgrade::Request {
        exe: exe.to_path_buf(),
        config: config.to_path_buf(),
        listeners,
        admin,
    })
}

/// Runs the upgrade on its own thread (the main loop keeps handling signals); its outcome
/// comes back as an [`Event`].
fn spawn_upgrade(
    request: upgrade::Request,
    control: Arc<ControlPlane>,
    abort: Arc<AtomicBool>,
    events: mpsc::Sender<Event>,
) -> std::thread::JoinHandle<()> {
    let spawned = std::thread::Builder::new()
        .name(upgrade::cli::UPGRADE_THREAD.into())
        .spawn(move || {
            let outcome = upgrade::run(request, &control, &abort);
            let _ = events.send(Event::UpgradeFinished(outcome));
        });
    match spawned {
        Ok(thread) => thread,
        Err(error) => {
            tracing::error!(%error, "binary upgrade: cannot start its thread");
            std::thread::spawn(|| {})
        }
    }
}

/// `check` and `run` warn about private key files that other users may read: the key should
/// be readable by the service user only (mode 0600 or 0400, owned by it).
pub fn private_key_warnings(config: &portcullis_config::Snapshot) -> Vec<String> {
    use std::os::unix::fs::PermissionsExt as _;
    let mut warnings = Vec::new();
    for site in &config.sites {
        let key = format!("{}.private_key", site.key_prefix);
        let paths = config.files.iter().filter_map(|file| match &file.location {
            Location::File(path) if file.keys.contains(&key) => Some(path),
            _ => None,
        });
        for path in paths {
            let Ok(meta) = std::fs::metadata(path) else {
                continue;
            };
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                let who = if mode & 0o007 != 0 {
                    "every user"
                } else {
                    "its group"
                };
                warnings.push(format!(
                    "{}: {key}: the private key is readable by {who} (mode {mode:04o}); make it readable by the service user only: chmod 600, owned by that user",
                    path.display()
                ));
            }
        }
    }
    warnings
}

/// File descriptors kept aside for listeners, the admin API, logs and configuration files.
const FILE_DESCRIPTOR_RESERVE: u64 = 256;

/// A write past the file-size limit (RLIMIT_FSIZE) fails with EFBIG, like a full disk,
/// instead of killing the process with SIGXFSZ: a log or store file that cannot grow is an
/// error the writer reports, not a reason to drop every connection.
fn ignore_file_size_signal() {
    // SAFETY: setting a signal's disposition to SIG_IGN installs no handler code.
    unsafe {
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
    }
}

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
