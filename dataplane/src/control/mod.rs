//! The control plane: every change of configuration at run time goes through
//! [`ControlPlane::reload`], whatever triggered it (SIGHUP, `POST /reload`, a watched file, a
//! polled object), one at a time, as stage → build → validate → commit:
//!
//! 1. **stage**: the configuration is parsed and every file and object it names is read (local
//!    files from disk, objects through [`RemoteSources`]: the newest validated-or-candidate
//!    copy); store mutations through the admin API wait from here until the commit;
//! 2. **build**: the revocation view (stores resolved by name) and every TLS context are built
//!    from that configuration alone;
//! 3. **validate**: any error refuses the whole reload, the running generation stays, and the
//!    errors (`file: key: reason`) go to the log, the reload result and `/status`; candidate
//!    objects that the errors name are remembered as refused;
//! 4. **commit**: one atomic swap of the snapshot (which carries its revocation view), then
//!    the view is published (admin API, open-connection re-checks, epoch bump), candidate
//!    objects become current and are cached.
//!
//! SIGHUP and `POST /reload` re-read the configuration file and poll the object URLs first; a
//! watched file's change or a polled object's change reloads with the configuration text of
//! the live generation, so a half-edited configuration file is never picked up by accident.
//! Settings that only a restart can change (listen addresses, workers, CPU affinity, the
//! admin listener) are named in the result and the log when they differ.

mod summary;
mod watch;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

use portcullis_config::sources::sha256;
use portcullis_config::{ConfigErrors, Location, ObjectUrl, Snapshot};
use serde_json::{json, Value};

use self::summary::{summary, RestartOnly};
use crate::revocation::{RevocationState, RevocationView};
use crate::sources::{unix_seconds, RemoteSources};
use crate::telemetry::Metrics;
use crate::tls::TlsSnapshot;
use crate::worker::Shared;

/// What started a reload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// The configuration the process started with.
    Startup,
    /// SIGHUP.
    Signal,
    /// `POST /reload` on the admin API.
    Admin,
    /// A watched file changed.
    FileWatch,
    /// A polled object changed.
    RemotePoll,
}

impl Trigger {
    /// How the trigger is named in logs and `/status`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Startup => "startup",
            Self::Signal => "sighup",
            Self::Admin => "admin",
            Self::FileWatch => "file-watch",
            Self::RemotePoll => "remote-poll",
        }
    }

    /// Whether the configuration file is re-read (an operator asked for a reload).
    fn rereads_config(self) -> bool {
        matches!(self, Self::Startup | Self::Signal | Self::Admin)
    }
}

/// A committed reload.
#[derive(Debug, Clone)]
pub struct ReloadReport {
    /// The new generation.
    pub generation: u64,
    /// Sites, CAs per trust store, entries per revocation store.
    pub summary: Value,
    /// Settings that differ from the running ones but need a restart.
    pub restart_required: Vec<&'static str>,
}

impl ReloadReport {
    /// The JSON answer of `POST /reload`.
    pub fn to_json(&self) -> Value {
        json!({
            "generation": self.generation,
            "summary": self.summary,
            "restart_required": self.restart_required,
        })
    }
}

/// A refused reload: the running generation stays.
#[derive(Debug, Clone)]
pub struct ReloadRefused {
    /// The generation still running.
    pub generation: u64,
    /// Every problem, as `file: key: reason`.
    pub errors: ConfigErrors,
}

impl ReloadRefused {
    /// The JSON answer of `POST /reload`.
    pub fn to_json(&self) -> Value {
        json!({
            "error": "reload refused; the running configuration stays",
            "generation": self.generation,
            "errors": self.errors.iter().map(ToString::to_string).collect::<Vec<_>>(),
        })
    }
}

/// The outcome of the last reload attempt, for `/status`.
#[derive(Debug, Clone)]
struct LastReload {
    at: SystemTime,
    trigger: Trigger,
    result: Result<ReloadReport, ReloadRefused>,
}

/// What the control plane knows about the live generation.
#[derive(Debug)]
struct ControlState {
    /// The configuration text of the live generation.
    toml: String,
    generation: u64,
    loaded_at: SystemTime,
    trigger: Trigger,
    restart_required: Vec<&'static str>,
    last_reload: Option<LastReload>,
}

/// A stop flag that sleeping threads wake up for.
#[derive(Debug, Default)]
struct Stop {
    stopped: Mutex<bool>,
    wake: Condvar,
}

impl Stop {
    /// Waits up to `limit`; true once stopped.
    fn wait(&self, limit: Duration) -> bool {
        let stopped = self.stopped.lock().unwrap_or_else(PoisonError::into_inner);
        let (stopped, _) = self
            .wake
            .wait_timeout_while(stopped, limit, |stopped| !*stopped)
            .unwrap_or_else(PoisonError::into_inner);
        *stopped
    }

    fn is_stopped(&self) -> bool {
        *self.stopped.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn stop(&self) {
        *self.stopped.lock().unwrap_or_else(PoisonError::into_inner) = true;
        self.wake.notify_all();
    }
}

/// A configuration staged at start-up, before the workers exist.
#[derive(Debug)]
pub struct Startup {
    /// The snapshot (generation 1).
    pub tls: TlsSnapshot,
    /// Its configuration text.
    toml: String,
}

/// What the control plane keeps of a start-up configuration once its snapshot went to the
/// workers.
#[derive(Debug)]
pub struct StartupText {
    toml: String,
}

impl Startup {
    /// The snapshot for the workers, and the rest for [`ControlPlane::start`].
    pub fn into_parts(self) -> (TlsSnapshot, StartupText) {
        (self.tls, StartupText { toml: self.toml })
    }
}

/// Stages the configuration at `path` for start-up (and `portcullis check`): read, build,
/// validate. Nothing goes live.
pub fn stage_startup(
    path: &Path,
    revocation: &Arc<RevocationState>,
    remote: &RemoteSources,
) -> Result<Startup, ConfigErrors> {
    let toml = portcullis_config::read_config(path)?;
    let mut tls = stage(&toml, path, revocation, remote)?;
    tls.generation = 1;
    Ok(Startup { tls, toml })
}

/// Builds a snapshot from configuration text alone: the configuration with every file and
/// object it names, its revocation view (stores by name), every TLS context.
fn stage(
    toml: &str,
    path: &Path,
    revocation: &Arc<RevocationState>,
    remote: &RemoteSources,
) -> Result<TlsSnapshot, ConfigErrors> {
    let config = Arc::new(portcullis_config::parse_str_with(toml, path, remote)?);
    let view = Arc::new(RevocationView::stage(&config)?);
    TlsSnapshot::build(config, revocation, view)
}

/// The object URLs a configuration read.
fn object_urls(config: &Snapshot) -> Vec<ObjectUrl> {
    config
        .files
        .iter()
        .filter_map(|file| file.location.object_url().cloned())
        .collect()
}

/// The directories holding the local files a configuration read (what the watcher watches).
fn watched_dirs(config: &Snapshot) -> BTreeSet<PathBuf> {
    if !config.sources.watch_files {
        return BTreeSet::new();
    }
    config
        .files
        .iter()
        .filter_map(|file| match &file.location {
            Location::File(path) => path.parent().map(Path::to_path_buf),
            Location::Object(_) => None,
        })
        .collect()
}

/// RFC 3339, Unix seconds and age of a time, for `/status`.
fn time_json(t: SystemTime) -> Value {
    let rfc3339 = time::OffsetDateTime::from(t)
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    json!({
        "rfc3339": rfc3339,
        "unix": unix_seconds(t),
        "unix_ms": t.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_millis()),
        "age_seconds": SystemTime::now().duration_since(t).map_or(0.0, |d| d.as_secs_f64()),
    })
}

/// Runs configuration changes for a running server (see the module documentation).
pub struct ControlPlane {
    config_path: PathBuf,
    shared: Arc<Shared>,
    revocation: Arc<RevocationState>,
    remote: Arc<RemoteSources>,
    restart_only: RestartOnly,
    /// Reload counters for `/metrics`, when telemetry runs.
    metrics: Option<Arc<Metrics>>,
    state: Mutex<ControlState>,
    stop: Stop,
    watcher: Mutex<Option<watch::FileWatcher>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

impl std::fmt::Debug for ControlPlane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControlPlane")
            .field("config", &self.config_path)
            .finish_non_exhaustive()
    }
}

impl ControlPlane {
    /// Takes over a server started with `startup`'s snapshot (already live, its view
    /// published): starts the object poller and the file watcher.
    pub fn start(
        config_path: PathBuf,
        shared: Arc<Shared>,
        revocation: Arc<RevocationState>,
        remote: Arc<RemoteSources>,
        metrics: Option<Arc<Metrics>>,
        startup: StartupText,
    ) -> Arc<Self> {
        let live = shared.snapshot.load_full();
        let control = Arc::new(Self {
            config_path,
            restart_only: RestartOnly::of(&live.config),
            shared,
            revocation,
            remote,
            metrics,
            state: Mutex::new(ControlState {
                toml: startup.toml,
                generation: live.generation,
                loaded_at: SystemTime::now(),
                trigger: Trigger::Startup,
                restart_required: Vec::new(),
                last_reload: None,
            }),
            stop: Stop::default(),
            watcher: Mutex::new(None),
            threads: Mutex::new(Vec::new()),
        });
        let dirs = watched_dirs(&live.config);
        drop(live);
        let mut threads = Vec::new();
        match watch::FileWatcher::start(Arc::clone(&control)) {
            Ok((mut watcher, thread)) => {
                watcher.watch(&dirs);
                *control.lock_watcher() = Some(watcher);
                threads.push(thread);
            }
            Err(error) => {
                tracing::warn!(%error, "cannot watch files; changes apply on SIGHUP or POST /reload only");
            }
        }
        let poller = Arc::clone(&control);
        match std::thread::Builder::new()
            .name("portcullis-poll".into())
            .spawn(move || poller.poll_loop())
        {
            Ok(thread) => threads.push(thread),
            Err(error) => tracing::error!(%error, "cannot start the remote-source poller"),
        }
        *control
            .threads
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = threads;
        control
    }

    fn lock_state(&self) -> MutexGuard<'_, ControlState> {
        // Reloads keep the state consistent before any step that could panic.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn lock_watcher(&self) -> MutexGuard<'_, Option<watch::FileWatcher>> {
        self.watcher.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The revocation state (the admin API's backend).
    pub fn revocation(&self) -> &Arc<RevocationState> {
        &self.revocation
    }

    /// Reloads now (SIGHUP, `POST /reload`): re-reads the configuration file, polls the object
    /// URLs, then stage → build → validate → commit.
    pub fn reload(&self, trigger: Trigger) -> Result<ReloadReport, ReloadRefused> {
        let mut state = self.lock_state();
        self.reload_locked(&mut state, trigger)
    }

    /// Reloads if a watched file's contents changed (anything but what the admin API wrote
    /// to its store files itself). None when nothing changed.
    pub(crate) fn reload_if_files_changed(&self) -> Option<Result<ReloadReport, ReloadRefused>> {
        let mut state = self.lock_state();
        let changed = {
            let live = self.shared.snapshot.load();
            changed_file(&live.config, live.revocation_view())
        };
        let path = changed?;
        tracing::info!(file = %path.display(), "watched file changed; reloading");
        Some(self.reload_locked(&mut state, Trigger::FileWatch))
    }

    fn reload_locked(
        &self,
        state: &mut ControlState,
        trigger: Trigger,
    ) -> Result<ReloadReport, ReloadRefused> {
        let toml = if trigger.rereads_config() {
            match portcullis_config::read_config(&self.config_path) {
                Ok(toml) => toml,
                Err(errors) => return Err(self.refused(state, trigger, errors)),
            }
        } else {
            state.toml.clone()
        };
        if trigger.rereads_config() {
            let (settings, urls) = {
                let live = self.shared.snapshot.load();
                (live.config.sources.clone(), object_urls(&live.config))
            };
            self.remote.poll(&settings, &urls);
        }
        let writes = self.revocation.lock_writes();
        let mut tls = match stage(&toml, &self.config_path, &self.revocation, &self.remote) {
            Ok(tls) => tls,
            Err(errors) => {
                drop(writes);
                self.remote.reject(&errors);
                return Err(self.refused(state, trigger, errors));
            }
        };
        let generation = state.generation + 1;
        tls.generation = generation;
        if let Some(metrics) = &self.metrics {
            metrics.reloaded(true);
        }
        let report = ReloadReport {
            generation,
            summary: summary(&tls),
            restart_required: self.restart_only.differences(&tls.config),
        };
        let settings = tls.config.sources.clone();
        let urls = object_urls(&tls.config);
        let dirs = watched_dirs(&tls.config);
        let view = Arc::clone(tls.revocation_view());
        // Commit: one atomic swap of the snapshot and the revocation view it carries.
        self.shared.snapshot.publish(Arc::new(tls));
        self.revocation.publish(view);
        drop(writes);
        self.remote.commit(&settings, &urls);
        if let Some(watcher) = self.lock_watcher().as_mut() {
            watcher.watch(&dirs);
        }
        state.toml = toml;
        state.generation = generation;
        state.loaded_at = SystemTime::now();
        state.trigger = trigger;
        state.restart_required = report.restart_required.clone();
        state.last_reload = Some(LastReload {
            at: state.loaded_at,
            trigger,
            result: Ok(report.clone()),
        });
        if report.restart_required.is_empty() {
            tracing::info!(config = %self.config_path.display(), generation, trigger = trigger.as_str(), "configuration reloaded");
        } else {
            tracing::warn!(config = %self.config_path.display(), generation, trigger = trigger.as_str(), restart_required = ?report.restart_required, "configuration reloaded; these settings changed but only take effect after a restart");
        }
        Ok(report)
    }

    /// Records and logs a refused reload.
    fn refused(
        &self,
        state: &mut ControlState,
        trigger: Trigger,
        errors: ConfigErrors,
    ) -> ReloadRefused {
        tracing::error!(config = %self.config_path.display(), trigger = trigger.as_str(), generation = state.generation, %errors, "reload refused; the running configuration stays");
        if let Some(metrics) = &self.metrics {
            metrics.reloaded(false);
        }
        let refused = ReloadRefused {
            generation: state.generation,
            errors,
        };
        state.last_reload = Some(LastReload {
            at: SystemTime::now(),
            trigger,
            result: Err(refused.clone()),
        });
        refused
    }

    /// Polls the live generation's object URLs every `sources.poll_interval` and reloads when
    /// one changed, until [`ControlPlane::shutdown`].
    fn poll_loop(&self) {
        loop {
            // Read the interval, then let go of the snapshot before sleeping.
            let interval = self.shared.snapshot.load().config.sources.poll_interval;
            if self.stop.wait(interval) {
                return;
            }
            let mut state = self.lock_state();
            let (settings, urls) = {
                let live = self.shared.snapshot.load();
                (live.config.sources.clone(), object_urls(&live.config))
            };
            if urls.is_empty() {
                continue;
            }
            let outcome = self.remote.poll(&settings, &urls);
            if !outcome.changed.is_empty() {
                let _ = self.reload_locked(&mut state, Trigger::RemotePoll);
            }
        }
    }

    /// The `GET /status` document: generation, when and from what it was loaded, the last
    /// reload's result, every remote source's state, the watched files.
    pub fn status(&self) -> Value {
        let state = self.lock_state();
        let live = self.shared.snapshot.load_full();
        let last_reload = state.last_reload.as_ref().map(|last| {
            let mut value = match &last.result {
                Ok(report) => json!({ "result": "applied", "generation": report.generation, "restart_required": report.restart_required }),
                Err(refused) => {
                    let mut v = refused.to_json();
                    v["result"] = json!("refused");
                    v
                }
            };
            value["at"] = time_json(last.at);
            value["trigger"] = json!(last.trigger.as_str());
            value
        });
        let files: Vec<Value> = live
            .config
            .files
            .iter()
            .map(|file| {
                json!({
                    "source": file.location.to_string(),
                    "keys": file.keys,
                    "sha256": hex::encode(file.sha256),
                    "bytes": file.len,
                })
            })
            .collect();
        let watching = self.lock_watcher().as_ref().map(|w| {
            w.dirs()
                .iter()
                .map(|d| d.display().to_string())
                .collect::<Vec<_>>()
        });
        json!({
            "generation": state.generation,
            "config": self.config_path.display().to_string(),
            "loaded_at": time_json(state.loaded_at),
            "trigger": state.trigger.as_str(),
            "restart_required": state.restart_required,
            "summary": summary(&live),
            "last_reload": last_reload,
            "sources": self.remote.status(),
            "files": files,
            "watching": watching,
            "poll_interval_seconds": live.config.sources.poll_interval.as_secs_f64(),
            "live_snapshots": TlsSnapshot::live_count(),
            "revocation_epoch": self.revocation.epoch(),
        })
    }

    /// Stops the poller and the file watcher and waits for their threads.
    pub fn shutdown(&self) {
        self.stop.stop();
        self.lock_watcher().take();
        let threads =
            std::mem::take(&mut *self.threads.lock().unwrap_or_else(PoisonError::into_inner));
        for thread in threads {
            if thread.join().is_err() {
                tracing::error!("a control thread panicked");
            }
        }
    }
}

/// The first local file of `config` whose contents differ from what the generation read (and
/// from what the admin API last wrote, for a store file), if any.
fn changed_file(config: &Snapshot, view: &RevocationView) -> Option<PathBuf> {
    let written = view.written_files();
    config.files.iter().find_map(|file| {
        let Location::File(path) = &file.location else {
            return None;
        };
        let changed = match std::fs::read(path) {
            Ok(bytes) => {
                let digest = sha256(&bytes);
                digest != file.sha256 && !written.iter().any(|(p, d)| p == path && *d == digest)
            }
            // Gone or unreadable: a reload reports it (and the running generation stays).
            Err(_) => true,
        };
        changed.then(|| path.clone())
    })
}
