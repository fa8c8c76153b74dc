//! `portcullis upgrade --pid PID`: sends `SIGUSR2` to a running `portcullis run` and follows
//! the upgrade from outside through `/proc`: while it runs, the old process has a thread
//! named [`UPGRADE_THREAD`], and the new process appears as its child. The upgrade succeeded
//! when the old process has drained and exited while the new one runs; it failed when the new
//! process is gone while the old one still runs, or when the upgrade thread ended without a
//! new process (the binary could not be started), or when nothing started within
//! [`START_WINDOW`] (the old process refused: another upgrade in progress, demo mode). The old
//! process's log says why.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

/// How often `/proc` is looked at while no new process was seen: often, because the old
/// process may hand over and drain within a few tens of milliseconds.
const FAST_POLL: Duration = Duration::from_millis(2);
/// How often once the new process is known.
const POLL: Duration = Duration::from_millis(50);
/// The name of the old process's thread that runs an upgrade (as `/proc` shows it).
pub const UPGRADE_THREAD: &str = "portcullis-upgr";
/// How long the old process may take to start an upgrade (thread or new process visible).
pub const START_WINDOW: Duration = Duration::from_secs(10);

/// Why `portcullis upgrade` did not see a completed upgrade.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The process is not a running `portcullis`.
    #[error("process {pid} is not a running portcullis ({reason})")]
    NotPortcullis {
        /// The process id given.
        pid: u32,
        /// What was found instead.
        reason: String,
    },
    /// The signal could not be sent.
    #[error("cannot signal process {pid}: {source}")]
    Signal {
        /// The process id given.
        pid: u32,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The new process did not start or did not take over.
    #[error("the upgrade failed: {0}; process {1} keeps serving (its log says why)")]
    Failed(String, u32),
    /// Neither outcome within the time limit.
    #[error("no outcome within {0:?}: {1}")]
    TimedOut(Duration, String),
}

/// Upgrades process `pid` and waits (at most `timeout`) for the outcome; returns the new
/// process's id.
pub fn upgrade(pid: u32, timeout: Duration) -> Result<u32, CliError> {
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).map_err(|e| {
        CliError::NotPortcullis {
            pid,
            reason: e.to_string(),
        }
    })?;
    if !comm.trim_end().starts_with("portcullis") {
        return Err(CliError::NotPortcullis {
            pid,
            reason: format!("its name is {:?}", comm.trim_end()),
        });
    }
    let before = children(pid);
    let Ok(target) = libc::pid_t::try_from(pid) else {
        return Err(CliError::NotPortcullis {
            pid,
            reason: "not a process id".into(),
        });
    };
    // SAFETY: kill(2) with a plain signal number.
    if unsafe { libc::kill(target, libc::SIGUSR2) } != 0 {
        return Err(CliError::Signal {
            pid,
            source: std::io::Error::last_os_error(),
        });
    }
    let started = Instant::now();
    let deadline = started + timeout;
    let mut new = None;
    let mut thread_seen = false;
    loop {
        let upgrading = upgrade_thread(pid);
        thread_seen |= upgrading;
        let old_alive = alive(pid);
        if new.is_none() {
            new = children(pid).difference(&before).next().copied();
            if let Some(child) = new {
                eprintln!("new process {child} started; waiting for it to take over and for {pid} to drain");
            }
        }
        if new.is_none() && old_alive {
            if thread_seen && !upgrading && children(pid).difference(&before).next().is_none() {
                return Err(CliError::Failed(
                    "the new binary could not be started".into(),
                    pid,
                ));
            }
            if !thread_seen && started.elapsed() > START_WINDOW {
                return Err(CliError::Failed(
                    format!("no upgrade started within {START_WINDOW:?} (the new binary could not be started, or the upgrade was refused)"),
                    pid,
                ));
            }
        }
        match (new, old_alive) {
            (Some(child), false) if alive(child) => return Ok(child),
            (Some(child), false) => {
                return Err(CliError::Failed(
                    format!("both the old process and the new one ({child}) are gone"),
                    pid,
                ))
            }
            (Some(child), true) if !alive(child) => {
                return Err(CliError::Failed(
                    format!("the new process {child} exited"),
                    pid,
                ))
            }
            (None, false) => {
                return Err(CliError::Failed(
                    "the process exited without starting a new one".into(),
                    pid,
                ))
            }
            _ => {}
        }
        if Instant::now() >= deadline {
            let state = match new {
                Some(child) => format!("new process {child} runs, old process {pid} has not exited (waiting for the new one to be ready, or draining)"),
                None => format!("process {pid} started no new process"),
            };
            return Err(CliError::TimedOut(timeout, state));
        }
        std::thread::sleep(if new.is_some() { POLL } else { FAST_POLL });
    }
}

/// Whether process `pid` runs an upgrade (has its upgrade thread).
fn upgrade_thread(pid: u32) -> bool {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return false;
    };
    tasks.filter_map(Result::ok).any(|task| {
        std::fs::read_to_string(task.path().join("comm"))
            .is_ok_and(|comm| comm.trim_end() == UPGRADE_THREAD)
    })
}

/// Whether process `pid` exists and is not a zombie.
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| parse_stat(&stat).map(|(state, _)| state != 'Z' && state != 'X'))
        .unwrap_or(false)
}

/// The processes whose parent is `pid`: from each of its threads' `children` lists (cheap:
/// only this process's entries), or by scanning every process where the kernel has no such
/// lists.
fn children(pid: u32) -> BTreeSet<u32> {
    if let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) {
        let mut found = BTreeSet::new();
        let mut listed = false;
        for task in tasks.filter_map(Result::ok) {
            if let Ok(list) = std::fs::read_to_string(task.path().join("children")) {
                listed = true;
                found.extend(
                    list.split_whitespace()
                        .filter_map(|c| c.parse::<u32>().ok()),
                );
            }
        }
        if listed {
            return found;
        }
    }
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return BTreeSet::new();
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&candidate| {
            std::fs::read_to_string(format!("/proc/{candidate}/stat"))
                .ok()
                .and_then(|stat| parse_stat(&stat))
                .is_some_and(|(state, parent)| parent == pid && state != 'Z')
        })
        .collect()
}

/// The state and parent id from a `/proc/PID/stat` line (`pid (comm) state ppid ...`; the
/// command name may hold spaces and parentheses, so fields count from the last `)`).
fn parse_stat(stat: &str) -> Option<(char, u32)> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let parent = fields.next()?.parse().ok()?;
    Some((state, parent))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_lines_parse_even_with_odd_command_names() {
        assert_eq!(parse_stat("42 (portcullis) S 1 42 42 0"), Some(('S', 1)));
        assert_eq!(parse_stat("7 (a) b (c)) Z 99 7 7"), Some(('Z', 99)));
        assert_eq!(parse_stat("garbage"), None);
        assert!(alive(std::process::id()));
    }
}
