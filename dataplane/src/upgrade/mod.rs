//! Binary upgrades without downtime, like nginx's `SIGUSR2`.
//!
//! On `SIGUSR2` (or `portcullis upgrade --pid PID`, [`cli`]) the running process:
//!
//! 1. holds configuration changes back (`control::ControlPlane::hold_for_upgrade`: no
//!    reload commits and no revocation change until the upgrade is decided), and takes the
//!    session material of the live generation (ticket key, fingerprint, revocation epoch);
//! 2. starts the binary at the path it was started from (the new version, after a package
//!    upgrade replaced the file) as `run --config CONFIG`, with every worker listener and the
//!    admin listener inherited (descriptors kept open across exec; the sockets themselves, so
//!    the port is never closed and no accept queue is reset) and one end of a Unix socket
//!    pair ([`parent`]);
//! 3. tells it over that pair which descriptor is which and the session material
//!    ([`protocol`]); the new process ([`child`]) checks each descriptor, loads and checks
//!    the configuration, uses the old ticket key and epoch if its configuration and data are
//!    exactly the old live generation's (equal fingerprints: then every ticket the old process
//!    issued stays valid), starts its workers on the inherited listeners and reports ready;
//! 4. on ready, within [`READY_TIMEOUT`]: tells systemd the new main PID (`MAINPID=`),
//!    commits (the new process then starts its watchdog and answers systemd), hands the admin
//!    listener over, stops accepting, drains its open connections (in-flight requests finish,
//!    keep-alive connections close after their current request) and exits 0;
//! 5. otherwise (the new binary does not start, its configuration is refused, it exits, or it
//!    is not ready in time) the new process is told to abort, stopped and reaped, and the old
//!    process logs why and keeps serving, configuration changes resuming.

mod child;
pub mod cli;
mod parent;
mod protocol;

use std::net::{SocketAddr, TcpListener};
use std::os::fd::{AsRawFd, RawFd};
use std::path::PathBuf;
use std::process::ExitStatus;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

pub use child::{Decision, Inherited};

use crate::admin::InheritedAdmin;
use crate::control::ControlPlane;
use crate::service;

/// The environment variable naming the new process's end of the socket pair.
pub const ENV_FD: &str = "PORTCULLIS_UPGRADE_FD";

/// How long the new process may take to report ready.
pub const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// Why a binary upgrade did not happen (the old process keeps serving).
#[derive(Debug, thiserror::Error)]
pub enum UpgradeError {
    /// The new binary could not be started.
    #[error("cannot start the new binary: {0}")]
    Spawn(std::io::Error),
    /// Talking to the new process failed.
    #[error("talking to the new process: {0}")]
    Channel(std::io::Error),
    /// The new process reported that it cannot start.
    #[error("the new process cannot start ({}): {reason}", parent::describe(*status))]
    Failed {
        /// Its reason.
        reason: String,
        /// Its exit status, if it exited in time.
        status: Option<ExitStatus>,
    },
    /// The new process exited before it was ready.
    #[error("the new process exited before it was ready ({})", parent::describe(*.0))]
    Exited(Option<ExitStatus>),
    /// The new process was not ready in time.
    #[error("the new process was not ready within {0:?}; it was stopped")]
    TimedOut(Duration),
    /// This process was asked to stop during the upgrade.
    #[error("this process is stopping; the new process was stopped")]
    Aborted,
    /// Another upgrade is in progress.
    #[error("another binary upgrade is in progress")]
    InProgress,
}

/// What the running process hands to the new binary.
#[derive(Debug)]
pub struct Request {
    /// The binary to start: the path this process was started from.
    pub exe: PathBuf,
    /// The configuration file (absolute).
    pub config: PathBuf,
    /// Duplicates of every worker listener.
    pub listeners: Vec<(SocketAddr, TcpListener)>,
    /// A duplicate of the admin listener.
    pub admin: Option<InheritedAdmin>,
}

/// Runs a binary upgrade on the current thread (see the module documentation); returns the
/// new process's id once it took over. `abort` set (this process was asked to stop) ends the
/// wait for the new process, which is then stopped.
pub(crate) fn run(
    request: Request,
    control: &ControlPlane,
    abort: &AtomicBool,
) -> Result<u32, UpgradeError> {
    control.hold_for_upgrade(|sessions| {
        let mut inherit: Vec<RawFd> = Vec::with_capacity(request.listeners.len() + 1);
        let listeners = request
            .listeners
            .iter()
            .map(|(addr, socket)| {
                inherit.push(socket.as_raw_fd());
                protocol::PassedListener {
                    fd: socket.as_raw_fd(),
                    addr: *addr,
                }
            })
            .collect();
        let admin = request.admin.as_ref().map(|admin| {
            let (fd, endpoint) = match admin {
                InheritedAdmin::Tcp(l) => (
                    l.as_raw_fd(),
                    l.local_addr().map_or_else(
                        |_| protocol::AdminEndpoint::Unix(PathBuf::new()),
                        protocol::AdminEndpoint::Tcp,
                    ),
                ),
                InheritedAdmin::Unix { listener, path } => (
                    listener.as_raw_fd(),
                    protocol::AdminEndpoint::Unix(path.clone()),
                ),
            };
            inherit.push(fd);
            protocol::PassedAdmin { fd, endpoint }
        });
        let handover = protocol::Handover {
            parent: std::process::id(),
            listeners,
            admin,
            sessions: sessions.as_ref().map(child::passed_sessions),
        };
        let result = start(&request, &inherit, handover, abort);
        let taken = result.is_ok();
        (result, taken)
    })
}

/// Starts the new process and waits for it; commits on ready.
fn start(
    request: &Request,
    inherit: &[RawFd],
    handover: protocol::Handover,
    abort: &AtomicBool,
) -> Result<u32, UpgradeError> {
    tracing::info!(exe = %request.exe.display(), "binary upgrade: starting the new process");
    let mut process = parent::spawn(&request.exe, &request.config, inherit, handover)?;
    let pid = process.pid();
    tracing::info!(
        pid,
        "binary upgrade: new process started; waiting until it is ready"
    );
    if let Err(e) = process.wait_ready(READY_TIMEOUT, abort) {
        process.abandon();
        return Err(e);
    }
    // systemd first (the new process answers it once committed), then the new process.
    service::main_pid(pid);
    if let Err(e) = process.commit() {
        service::main_pid(std::process::id());
        return Err(e);
    }
    Ok(pid)
}
