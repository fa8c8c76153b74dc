//! File watching: the directories of the local files the live generation read are watched
//! with `notify` (inotify on Linux). Events are debounced (a quiet period, bounded), then the
//! control plane compares every watched file's contents with what the generation read and
//! reloads when one differs, well within two seconds of the change.
//!
//! Directories rather than files are watched, so that atomic replacements (write a temporary
//! file, rename it over the old one), editors' save strategies and symlink swaps are all
//! seen. A file caught half-written is just a reload that fails validation (the running
//! generation stays, the error is in `/status`) and that the next event fixes.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use notify::event::{AccessKind, AccessMode};
use notify::{EventKind, RecommendedWatcher, RecursiveMode, Watcher as _};

use super::ControlPlane;

/// Quiet time after the last event before the files are compared.
const QUIET: Duration = Duration::from_millis(200);
/// Longest wait from the first event of a burst to the comparison.
const MAX_DELAY: Duration = Duration::from_millis(800);
/// How often the debounce thread looks at the stop flag while idle.
const IDLE_CHECK: Duration = Duration::from_millis(250);

/// The `notify` watcher and the directories it watches.
pub(crate) struct FileWatcher {
    watcher: RecommendedWatcher,
    dirs: BTreeSet<PathBuf>,
}

impl FileWatcher {
    /// A watcher (watching nothing yet) and its debounce thread, which asks `control` to
    /// reload when watched files changed. The thread ends when the watcher is dropped.
    pub(crate) fn start(
        control: Arc<ControlPlane>,
    ) -> Result<(Self, JoinHandle<()>), notify::Error> {
        let (events, bursts) = mpsc::channel::<()>();
        let watcher =
            notify::recommended_watcher(move |event: notify::Result<notify::Event>| match event {
                Ok(event) if is_change(&event.kind) => {
                    let _ = events.send(());
                }
                Ok(_) => {}
                Err(error) => {
                    tracing::warn!(%error, "file watcher error; checking the files");
                    let _ = events.send(());
                }
            })?;
        let thread = std::thread::Builder::new()
            .name("portcullis-watch".into())
            .spawn(move || debounce(&bursts, &control))
            .map_err(|e| notify::Error::generic(&e.to_string()))?;
        Ok((
            Self {
                watcher,
                dirs: BTreeSet::new(),
            },
            thread,
        ))
    }

    /// Watches exactly `dirs` (non-recursively) from now on.
    pub(crate) fn watch(&mut self, dirs: &BTreeSet<PathBuf>) {
        for gone in self.dirs.difference(dirs) {
            if let Err(error) = self.watcher.unwatch(gone) {
                tracing::debug!(dir = %gone.display(), %error, "unwatch");
            }
        }
        let mut watching = BTreeSet::new();
        for dir in dirs {
            if self.dirs.contains(dir) {
                watching.insert(dir.clone());
                continue;
            }
            match self.watcher.watch(dir, RecursiveMode::NonRecursive) {
                Ok(()) => {
                    watching.insert(dir.clone());
                }
                Err(error) => {
                    tracing::warn!(dir = %dir.display(), %error, "cannot watch directory; its files change on SIGHUP or POST /reload only");
                }
            }
        }
        self.dirs = watching;
    }

    /// The directories watched.
    pub(crate) fn dirs(&self) -> &BTreeSet<PathBuf> {
        &self.dirs
    }
}

/// Whether an event may change a file's contents (opening or reading one does not).
fn is_change(kind: &EventKind) -> bool {
    match kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        EventKind::Access(_) => false,
        _ => true,
    }
}

/// Waits for bursts of events; after each, once quiet (or at the latest [`MAX_DELAY`] after
/// its first event), asks the control plane to reload if files changed. Returns when the
/// watcher is gone or the control plane stops.
fn debounce(bursts: &mpsc::Receiver<()>, control: &ControlPlane) {
    loop {
        match bursts.recv_timeout(IDLE_CHECK) {
            Ok(()) => {}
            Err(RecvTimeoutError::Timeout) => {
                if control.stop.is_stopped() {
                    return;
                }
                continue;
            }
            Err(RecvTimeoutError::Disconnected) => return,
        }
        let first = Instant::now();
        loop {
            let left = MAX_DELAY.saturating_sub(first.elapsed());
            if left.is_zero() {
                break;
            }
            match bursts.recv_timeout(QUIET.min(left)) {
                Ok(()) => {}
                Err(RecvTimeoutError::Timeout) => break,
                Err(RecvTimeoutError::Disconnected) => return,
            }
        }
        if control.stop.is_stopped() {
            return;
        }
        control.reload_if_files_changed();
    }
}
