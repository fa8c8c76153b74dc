//! The live progress line on stderr (indicatif), redrawn about four times a second.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// How often the line is redrawn.
pub const TICK: Duration = Duration::from_millis(250);

/// Counters the worker threads bump after every operation.
#[derive(Debug, Default)]
pub struct Live {
    /// Operations that ended as expected.
    pub completed: AtomicU64,
    /// Failed operations.
    pub errors: AtomicU64,
}

impl Live {
    /// Counts an operation.
    pub fn add(&self, ok: bool) {
        let counter = if ok { &self.completed } else { &self.errors };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// Draws `live` until `done` is set (unpark the thread after setting it to end at once):
/// `elapsed/limit  N ok (R/s)  E errors`. Draws nothing unless `enabled` and stderr is a
/// terminal.
pub fn show(live: &Live, done: &AtomicBool, enabled: bool, unit: &str, limit: Duration) {
    let target = if enabled && std::io::stderr().is_terminal() {
        ProgressDrawTarget::stderr_with_hz(4)
    } else {
        ProgressDrawTarget::hidden()
    };
    let bar = ProgressBar::with_draw_target(None, target);
    if let Ok(style) = ProgressStyle::with_template("{spinner} {msg}") {
        bar.set_style(style);
    }
    let started = Instant::now();
    let mut last = (started, 0u64);
    loop {
        std::thread::park_timeout(TICK);
        if done.load(Ordering::Relaxed) {
            break;
        }
        if bar.is_hidden() {
            continue;
        }
        let now = Instant::now();
        let completed = live.completed.load(Ordering::Relaxed);
        let errors = live.errors.load(Ordering::Relaxed);
        let window = now.duration_since(last.0).as_secs_f64();
        let rate = if window > 0.0 {
            completed.saturating_sub(last.1) as f64 / window
        } else {
            0.0
        };
        last = (now, completed);
        bar.set_message(format!(
            "{:>5.1}s/{:.1}s  {completed} {unit} ok ({rate:.0}/s)  {errors} errors",
            started.elapsed().as_secs_f64(),
            limit.as_secs_f64(),
        ));
        bar.tick();
    }
    bar.finish_and_clear();
}
