//! The old process's side of a binary upgrade: start the binary at its path with the listening
//! sockets inherited, tell it which descriptor is which, wait (bounded) until it reports
//! ready, then commit or give up on it.

use std::io::{self, BufReader};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::os::unix::process::{CommandExt as _, ExitStatusExt as _};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::protocol::{self, Handover, ToChild, ToParent};
use super::{UpgradeError, ENV_FD};

/// How often the wait for readiness looks at the abort flag and the child's exit.
const POLL: Duration = Duration::from_millis(100);
/// How long an abandoned new process may take to drain and exit after SIGTERM before it is
/// killed.
const ABANDON_GRACE: Duration = Duration::from_secs(10);

/// A started new process that has not taken over yet.
#[derive(Debug)]
pub struct NewProcess {
    child: Child,
    writer: UnixStream,
    reader: BufReader<UnixStream>,
}

/// Starts `exe run --config CONFIG` with the descriptors `inherit` (listeners, admin socket)
/// and its end of a new socket pair kept open across exec, and sends it `handover`.
pub fn spawn(
    exe: &Path,
    config: &Path,
    inherit: &[RawFd],
    handover: Handover,
) -> Result<NewProcess, UpgradeError> {
    let (ours, theirs) = UnixStream::pair().map_err(UpgradeError::Spawn)?;
    let reader = BufReader::new(ours.try_clone().map_err(UpgradeError::Spawn)?);
    let their_fd = theirs.as_raw_fd();
    let mut keep: Vec<RawFd> = inherit.to_vec();
    keep.push(their_fd);
    let mut command = Command::new(exe);
    command
        .arg("run")
        .arg("--config")
        .arg(config)
        .env(ENV_FD, their_fd.to_string())
        // The watchdog belongs to whichever process is the main one; the new process learns
        // it is once it took over (WATCHDOG_USEC stays).
        .env_remove("WATCHDOG_PID")
        .stdin(Stdio::null());
    // SAFETY: the closure runs in the forked child before exec and only calls fcntl, which is
    // async-signal-safe, on descriptors that are open in the parent (the caller keeps them
    // open until spawn returns) and therefore in the child.
    unsafe {
        command.pre_exec(move || {
            for &fd in &keep {
                if libc::fcntl(fd, libc::F_SETFD, 0) != 0 {
                    return Err(io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    let child = command.spawn().map_err(UpgradeError::Spawn)?;
    drop(theirs);
    let mut process = NewProcess {
        child,
        writer: ours,
        reader,
    };
    if let Err(e) = protocol::send(&mut process.writer, &ToChild::Handover(handover)) {
        // Most likely the new process exited already (a broken binary): say how.
        if let Some(status) = process.wait_exit(Duration::from_secs(2)) {
            return Err(UpgradeError::Exited(Some(status)));
        }
        process.abandon();
        return Err(UpgradeError::Channel(e));
    }
    Ok(process)
}

impl NewProcess {
    /// The new process's id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits until the new process reports ready, for at most `timeout`, or until `abort` is
    /// set (this process is asked to stop).
    pub fn wait_ready(
        &mut self,
        timeout: Duration,
        abort: &AtomicBool,
    ) -> Result<(), UpgradeError> {
        let deadline = Instant::now() + timeout;
        loop {
            if abort.load(Ordering::SeqCst) {
                return Err(UpgradeError::Aborted);
            }
            if Instant::now() >= deadline {
                return Err(UpgradeError::TimedOut(timeout));
            }
            let step = (Instant::now() + POLL).min(deadline);
            match protocol::receive::<ToParent>(&mut self.reader, step) {
                Ok(ToParent::Ready { .. }) => return Ok(()),
                Ok(ToParent::Failed { reason }) => {
                    let status = self.wait_exit(Duration::from_secs(5));
                    return Err(UpgradeError::Failed { reason, status });
                }
                Err(e) if e.kind() == io::ErrorKind::TimedOut => {}
                // The new process closed its end: it exited (with unread data, a reset).
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::UnexpectedEof | io::ErrorKind::ConnectionReset
                    ) =>
                {
                    let status = self.wait_exit(Duration::from_secs(5));
                    return Err(UpgradeError::Exited(status));
                }
                Err(e) => return Err(UpgradeError::Channel(e)),
            }
        }
    }

    /// Tells the new process it is the service now. The process lives on (it is no longer
    /// waited for: when this process exits, it is re-parented).
    pub fn commit(mut self) -> Result<(), UpgradeError> {
        protocol::send(&mut self.writer, &ToChild::Commit).map_err(UpgradeError::Channel)
    }

    /// Gives up on the new process: asks it to drain what it accepted and exit (Abort, then
    /// SIGTERM), kills it if it has not exited after a grace period, and reaps it on a
    /// background thread.
    pub fn abandon(mut self) {
        let _ = protocol::send(&mut self.writer, &ToChild::Abort);
        let pid = self.child.id() as libc::pid_t;
        // SAFETY: kill(2) with a plain signal number; the child has not been reaped yet (this
        // struct owns it), so the pid cannot name another process.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let deadline = Instant::now() + ABANDON_GRACE;
        let child = self.child;
        // Reaping happens on its own thread so that the old process's loop goes on at once.
        let reaper = std::thread::Builder::new()
            .name("portcullis-reap".into())
            .spawn(move || reap(child, deadline));
        if let Err(error) = reaper {
            tracing::warn!(%error, "cannot start a thread to reap the abandoned new process");
        }
    }

    /// Waits (bounded) for the new process's exit status.
    fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) => return Some(status),
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                _ => return None,
            }
        }
    }
}

/// Waits for `child` until `deadline`, then kills it and waits.
fn reap(mut child: Child, deadline: Instant) {
    loop {
        match child.try_wait() {
            Ok(Some(status)) => {
                tracing::info!(pid = child.id(), %status, "the abandoned new process exited");
                return;
            }
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
            _ => break,
        }
    }
    tracing::warn!(
        pid = child.id(),
        "the abandoned new process did not exit; killing it"
    );
    let _ = child.kill();
    let _ = child.wait();
}

/// How an exit status reads in a log line.
pub fn describe(status: Option<ExitStatus>) -> String {
    match status {
        Some(status) => match (status.code(), status.signal()) {
            (Some(code), _) => format!("exit status {code}"),
            (None, Some(signal)) => format!("killed by signal {signal}"),
            _ => status.to_string(),
        },
        None => "still running".into(),
    }
}
