//! The service manager's side of running (systemd `Type=notify`): readiness, reload and stop
//! notifications over `NOTIFY_SOCKET` (through the `sd-notify` crate), the main PID a binary
//! upgrade hands to the new process, and the watchdog ([`watchdog`]), which pings only while
//! every worker's event loop is alive.
//!
//! Without `NOTIFY_SOCKET` (not started by systemd) every notification is a no-op. A
//! notification that cannot be sent is logged and otherwise ignored: the service manager's
//! view is advisory, the data plane runs either way.

pub mod watchdog;

use sd_notify::NotifyState;

pub use watchdog::{Heartbeats, Watchdog};

/// Sends `states` to the service manager, if there is one.
fn notify(states: &[NotifyState<'_>]) {
    if let Err(error) = sd_notify::notify(states) {
        tracing::warn!(%error, "cannot notify the service manager (NOTIFY_SOCKET)");
    }
}

/// `READY=1`: every worker listens (or a reload finished); `status` is shown by
/// `systemctl status`.
pub fn ready(status: &str) {
    notify(&[NotifyState::Ready, NotifyState::Status(status)]);
}

/// `RELOADING=1`: a reload (SIGHUP, `POST /reload`) started; [`ready`] follows when it ends,
/// whether it was applied or refused. `MONOTONIC_USEC` goes with it, as systemd 253's
/// `Type=notify-reload` requires (older versions ignore it).
pub fn reloading() {
    match NotifyState::monotonic_usec_now() {
        Ok(now) => notify(&[NotifyState::Reloading, now]),
        Err(_) => notify(&[NotifyState::Reloading]),
    }
}

/// `STOPPING=1`: the process drains and exits (SIGTERM/SIGINT). Not sent by a process that
/// handed the service to a new binary: the service goes on.
pub fn stopping() {
    notify(&[NotifyState::Stopping, NotifyState::Status("draining")]);
}

/// `MAINPID=pid`: after a binary upgrade, the new process is the service's main process.
/// systemd accepts it from the current main process (`NotifyAccess=main`); from then on it
/// takes notifications (and the watchdog) from `pid` only.
pub fn main_pid(pid: u32) {
    notify(&[
        NotifyState::MainPid(pid),
        NotifyState::Status("binary upgrade: handed over to the new process"),
    ]);
}
