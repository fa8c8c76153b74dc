//! The systemd watchdog (`WatchdogSec=`): a thread pings `WATCHDOG=1` only while every worker
//! is alive, not merely the process.
//!
//! Each worker's watcher task (a timer task on the worker's own event loop, every 50 ms) bumps
//! the worker's counter in [`Heartbeats`]. The watchdog thread looks every half watchdog
//! interval (as `sd_watchdog_enabled(3)` advises): when every counter moved since its last
//! look it pings; when one did not (a worker's event loop is stuck in a connection task or a
//! blocking call), it logs which and does not ping, so systemd restarts the service once the
//! interval passes without a ping.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use sd_notify::NotifyState;

/// The shortest time between two looks: a worker beats every 50 ms, so a shorter look could
/// find a healthy worker between two beats.
const MIN_CHECK_INTERVAL: Duration = Duration::from_millis(200);

/// One counter per worker, bumped by the worker's own timer task.
#[derive(Debug)]
pub struct Heartbeats {
    beats: Box<[AtomicU64]>,
}

impl Heartbeats {
    /// Counters for `workers` workers.
    pub fn new(workers: usize) -> Self {
        Self {
            beats: (0..workers).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    /// Worker `worker`'s event loop ran its timer task once more.
    pub fn beat(&self, worker: usize) {
        if let Some(beat) = self.beats.get(worker) {
            beat.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Every worker's counter now.
    pub fn read(&self) -> Vec<u64> {
        self.beats
            .iter()
            .map(|beat| beat.load(Ordering::Relaxed))
            .collect()
    }
}

/// The workers whose counter did not move between two reads.
pub fn stalled(before: &[u64], now: &[u64]) -> Vec<usize> {
    before
        .iter()
        .zip(now)
        .enumerate()
        .filter(|(_, (before, now))| before == now)
        .map(|(worker, _)| worker)
        .collect()
}

/// A running watchdog thread; [`Watchdog::stop`] ends it.
#[derive(Debug)]
pub struct Watchdog {
    stop: Arc<(Mutex<bool>, Condvar)>,
    thread: Option<JoinHandle<()>>,
}

impl Watchdog {
    /// Starts pinging if the service manager asked for a watchdog for this process
    /// (`WATCHDOG_USEC`, and `WATCHDOG_PID` unset or this process); None otherwise.
    pub fn start(heartbeats: Arc<Heartbeats>) -> Option<Self> {
        let interval = sd_notify::watchdog_enabled()?;
        let check = (interval / 2).max(MIN_CHECK_INTERVAL);
        let stop = Arc::new((Mutex::new(false), Condvar::new()));
        let thread = {
            let stop = Arc::clone(&stop);
            std::thread::Builder::new()
                .name("portcullis-watchdog".into())
                .spawn(move || run(&heartbeats, check, &stop))
        };
        match thread {
            Ok(thread) => {
                tracing::info!(
                    watchdog_ms = interval.as_millis() as u64,
                    "systemd watchdog enabled"
                );
                Some(Self {
                    stop,
                    thread: Some(thread),
                })
            }
            Err(error) => {
                tracing::error!(%error, "cannot start the watchdog thread");
                None
            }
        }
    }

    /// Stops pinging (the process drains, or handed the service to a new binary).
    pub fn stop(mut self) {
        self.shut_down();
    }

    fn shut_down(&mut self) {
        let (stopped, wake) = &*self.stop;
        *stopped.lock().unwrap_or_else(PoisonError::into_inner) = true;
        wake.notify_all();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        self.shut_down();
    }
}

fn run(heartbeats: &Heartbeats, check: Duration, stop: &(Mutex<bool>, Condvar)) {
    let (stopped, wake) = stop;
    let mut last = heartbeats.read();
    let mut reported = false;
    // The first ping goes at once: the workers just proved alive by listening.
    let _ = sd_notify::notify(&[NotifyState::Watchdog]);
    loop {
        let guard = stopped.lock().unwrap_or_else(PoisonError::into_inner);
        let (guard, _) = wake
            .wait_timeout_while(guard, check, |stopped| !*stopped)
            .unwrap_or_else(PoisonError::into_inner);
        if *guard {
            return;
        }
        drop(guard);
        let now = heartbeats.read();
        let stuck = stalled(&last, &now);
        last = now;
        if stuck.is_empty() {
            if reported {
                tracing::info!("every worker is alive again; watchdog pings resume");
                reported = false;
            }
            if let Err(error) = sd_notify::notify(&[NotifyState::Watchdog]) {
                tracing::warn!(%error, "cannot ping the systemd watchdog");
            }
        } else if !reported {
            tracing::error!(workers = ?stuck, stalled_ms = check.as_millis() as u64, "workers made no progress; the systemd watchdog is not pinged (systemd restarts the service when WatchdogSec passes)");
            reported = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_worker_whose_counter_did_not_move_is_stalled() {
        let beats = Heartbeats::new(3);
        let before = beats.read();
        beats.beat(0);
        beats.beat(2);
        beats.beat(7); // no such worker: ignored
        assert_eq!(stalled(&before, &beats.read()), vec![1]);
        let before = beats.read();
        for worker in 0..3 {
            beats.beat(worker);
        }
        assert!(stalled(&before, &beats.read()).is_empty());
        assert_eq!(stalled(&before, &before), vec![0, 1, 2]);
    }
}
