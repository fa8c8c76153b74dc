//! An mTLS load generator for Portcullis.
//!
//! Three modes ([`Mode`]): `handshake` (a new TCP + TLS connection per request, optionally
//! resuming sessions), `keepalive` (C connections × R sequential requests) and `rate` (open
//! loop at a fixed rate, latency corrected for coordinated omission). Client certificates are
//! presented round-robin from a pool ([`CertSource`]). Worker threads use BoringSSL; in
//! handshake mode each runs one blocking connection at a time, in the keep-alive and rate
//! modes each runs its share of the connections concurrently as an event loop over
//! non-blocking sockets ([`nonblocking`]). Every run is bounded in time and count, and only
//! loopback targets are accepted.
//!
//! ```no_run
//! use portcullis_loadtest::{run, CertSource, Config, Mode};
//! let mut config = Config::new(Mode::Handshake { resume: true }, "127.0.0.1:8443".parse()?);
//! config.ca = Some("root.pem".into());
//! config.certs = CertSource::Dir("certs".into());
//! config.duration = Some(std::time::Duration::from_secs(2));
//! let summary = run(&config)?;
//! println!("{}", summary.to_table());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod certs;
pub mod cli;
pub mod config;
pub mod errors;
pub mod histogram;
pub mod http;
pub mod modes;
pub mod nonblocking;
pub mod progress;
pub mod rate;
pub mod report;
pub mod tls_client;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

pub use certs::{CertSource, ClientIdentity};
pub use config::{parse_target, Config, Mode};
pub use errors::{ErrorKind, LoadError};
pub use report::{ErrorCount, Summary};
pub use tls_client::TlsVersion;

use modes::Shared;
use report::{RunInfo, Stats};
use tls_client::{TlsClient, TlsSettings};

/// Set by SIGINT or SIGTERM once [`stop_early_on_signals`] was called.
static INTERRUPTED: OnceLock<Arc<AtomicBool>> = OnceLock::new();

/// Makes SIGINT and SIGTERM end a run early, as if its time were up: operations in progress
/// finish, none starts, and the summary covers what ran (a second signal still kills).
pub fn stop_early_on_signals() -> std::io::Result<()> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let flag = Arc::clone(INTERRUPTED.get_or_init(|| Arc::new(AtomicBool::new(false))));
    for signal in [SIGINT, SIGTERM] {
        signal_hook::flag::register_conditional_shutdown(signal, 1, Arc::clone(&flag))?;
        signal_hook::flag::register(signal, Arc::clone(&flag))?;
    }
    Ok(())
}

/// Whether a signal asked the run to stop early.
pub(crate) fn interrupted() -> bool {
    INTERRUPTED
        .get()
        .is_some_and(|flag| flag.load(Ordering::Relaxed))
}

/// Runs the load described by `config` and returns its summary.
///
/// Fails before sending anything if the configuration is invalid (including a non-loopback
/// target) or the certificates cannot be loaded. Operations that fail are counted in the
/// summary, never returned as errors.
pub fn run(config: &Config) -> Result<Summary, LoadError> {
    config.validate()?;
    let identities = certs::load(&config.certs)?;
    let client_certs = identities.len();
    let client = TlsClient::new(
        &TlsSettings {
            target: config.target,
            sni: &config.sni,
            ca: config.ca.as_deref(),
            version: config.version,
            groups: &config.groups,
            timeout: config.timeout,
        },
        identities,
    )?;
    let threads = match config.mode {
        Mode::Handshake { .. } => config.threads,
        Mode::KeepAlive { connections, .. } | Mode::Rate { connections, .. } => {
            config.threads.min(connections)
        }
    };
    let unit = match config.mode {
        Mode::Handshake { .. } => "handshakes",
        _ => "requests",
    };
    let shared = Shared::new(config, client);
    let done = AtomicBool::new(false);
    let (results, elapsed) = std::thread::scope(|scope| -> Result<_, LoadError> {
        let progress = std::thread::Builder::new()
            .name("progress".into())
            .spawn_scoped(scope, || {
                progress::show(
                    &shared.live,
                    &done,
                    config.progress,
                    unit,
                    config.time_limit(),
                )
            });
        let mut workers = Vec::with_capacity(threads);
        let mut spawn_error = None;
        for thread in 0..threads {
            let shared = &shared;
            let spawned = std::thread::Builder::new()
                .name(format!("load-{thread}"))
                .spawn_scoped(scope, move || worker(shared, thread, threads));
            match spawned {
                Ok(handle) => workers.push(handle),
                Err(err) => {
                    shared.stop();
                    spawn_error = Some(err);
                    break;
                }
            }
        }
        let joined: Vec<Option<Result<Stats, LoadError>>> =
            workers.into_iter().map(|h| h.join().ok()).collect();
        let elapsed = shared.start.elapsed();
        done.store(true, Ordering::Relaxed);
        if let Ok(progress) = progress {
            progress.thread().unpark();
            let _ = progress.join();
        }
        if let Some(err) = spawn_error {
            return Err(LoadError::Spawn(err));
        }
        let stats = joined
            .into_iter()
            .map(|stats| stats.ok_or(LoadError::WorkerPanicked).and_then(|s| s))
            .collect::<Result<Vec<Stats>, LoadError>>()?;
        Ok((stats, elapsed))
    })?;
    let mut total = Stats::default();
    for stats in &results {
        total.merge(stats)?;
    }
    let target_rate = match config.mode {
        Mode::Rate { rate, .. } => Some(rate),
        _ => None,
    };
    Ok(Summary::new(
        RunInfo {
            mode: config.mode.name().to_owned(),
            target: config.target.to_string(),
            tls_version: match config.version {
                TlsVersion::Tls12 => "TLSv1.2",
                TlsVersion::Tls13 => "TLSv1.3",
            }
            .to_owned(),
            threads,
            client_certs,
            elapsed,
            unit: unit.to_owned(),
            max_errors: config.max_errors,
            target_rate,
        },
        &total,
    ))
}

fn worker(shared: &Shared<'_>, thread: usize, threads: usize) -> Result<Stats, LoadError> {
    let stats = match shared.config.mode {
        Mode::Handshake { resume } => Ok(modes::handshake::run(shared, resume)),
        Mode::KeepAlive {
            connections,
            requests,
        } => modes::keepalive::run(shared, thread, threads, connections, requests),
        Mode::Rate { rate, connections } => {
            modes::rate::run(shared, thread, threads, rate, connections)
        }
    };
    if stats.is_err() {
        // The others stop too: the run fails.
        shared.stop();
    }
    stats
}
