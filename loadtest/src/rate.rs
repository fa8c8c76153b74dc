//! The open-loop schedule of rate mode and its coordinated-omission correction.
//!
//! Request `k` (0-based, over the whole run) is *intended* to be sent at
//! `start + k / rate`. Worker thread `t` of `T` owns the requests `k ≡ t (mod T)` and sends
//! each at its intended time, or at once when it is late because an earlier request blocked.
//! The latency reported for a request is measured from its intended send time, not from when
//! it was actually sent, so a stall delays and is charged to every request scheduled during it
//! (the correction for coordinated omission). The plain service time (actual send to response)
//! is reported next to it.

use std::time::Duration;

/// The intended send times of an open-loop run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Schedule {
    rate: f64,
}

impl Schedule {
    /// A schedule of `rate` requests per second (finite and > 0; checked by the caller).
    pub fn new(rate: f64) -> Self {
        Self { rate }
    }

    /// The requests per second.
    pub fn rate(&self) -> f64 {
        self.rate
    }

    /// When request `k` is intended to be sent, from the start of the run.
    pub fn intended(&self, k: u64) -> Duration {
        // Rounded to the nanosecond; saturating float-to-int conversion.
        Duration::from_nanos((k as f64 * 1e9 / self.rate).round() as u64)
    }

    /// How many requests are scheduled strictly before `duration`.
    pub fn count_within(&self, duration: Duration) -> u64 {
        let n = (duration.as_secs_f64() * self.rate).ceil();
        // Saturating float-to-int conversion; n >= 0.
        let mut n = n as u64;
        // Guard against rounding: keep exactly the k with intended(k) < duration.
        while n > 0 && self.intended(n - 1) >= duration {
            n -= 1;
        }
        while self.intended(n) < duration {
            n += 1;
        }
        n
    }

    /// The requests thread `thread` of `threads` owns, in order: `thread, thread + threads, ...`.
    pub fn slots(thread: usize, threads: usize) -> impl Iterator<Item = u64> {
        (thread as u64..).step_by(threads.max(1))
    }
}

/// The latency reported for a request intended at `intended` whose response completed at
/// `done` (both from the start of the run): `done - intended`, never negative.
pub fn corrected_latency(intended: Duration, done: Duration) -> Duration {
    done.saturating_sub(intended)
}

/// One simulated or measured request of a single sender.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// Intended send time, from the start.
    pub intended: Duration,
    /// Actual send time, from the start (never before `intended`).
    pub sent: Duration,
    /// Response completion time, from the start.
    pub done: Duration,
}

impl Timing {
    /// The coordinated-omission-corrected latency (from the intended send time).
    pub fn latency(&self) -> Duration {
        corrected_latency(self.intended, self.done)
    }

    /// The service time (from the actual send).
    pub fn service(&self) -> Duration {
        self.done.saturating_sub(self.sent)
    }

    /// How late the request was sent.
    pub fn lag(&self) -> Duration {
        self.sent.saturating_sub(self.intended)
    }
}

/// What one blocking sender does with the requests `slots` of `schedule` when request `i`
/// takes `service[i]` to answer: each is sent at its intended time or, if the previous one
/// has not completed yet, right when it completes. This is the worker loop of rate mode with
/// a deterministic clock.
pub fn simulate(
    schedule: &Schedule,
    slots: impl IntoIterator<Item = u64>,
    service: &[Duration],
) -> Vec<Timing> {
    let mut free_at = Duration::ZERO;
    slots
        .into_iter()
        .zip(service)
        .map(|(k, &service)| {
            let intended = schedule.intended(k);
            let sent = intended.max(free_at);
            let done = sent + service;
            free_at = done;
            Timing {
                intended,
                sent,
                done,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }

    #[test]
    fn intended_times_and_counts() {
        let s = Schedule::new(10.0);
        assert_eq!(s.intended(0), ms(0));
        assert_eq!(s.intended(1), ms(100));
        assert_eq!(s.intended(25), ms(2500));
        assert_eq!(s.count_within(ms(1000)), 10);
        assert_eq!(s.count_within(ms(1001)), 11);
        assert_eq!(s.count_within(ms(0)), 0);
        let s = Schedule::new(3.0);
        assert_eq!(s.count_within(Duration::from_secs(2)), 6);
        assert_eq!(
            Schedule::new(1000.0).count_within(Duration::from_secs(1)),
            1000
        );
    }

    #[test]
    fn slots_interleave_threads() {
        let a: Vec<u64> = Schedule::slots(0, 3).take(3).collect();
        let b: Vec<u64> = Schedule::slots(2, 3).take(3).collect();
        assert_eq!(a, vec![0, 3, 6]);
        assert_eq!(b, vec![2, 5, 8]);
    }

    #[test]
    fn a_stall_is_charged_to_the_requests_behind_it() {
        // 10/s: intended at 0, 100, 200, 300, 400 ms. Request 1 stalls for 250 ms.
        let s = Schedule::new(10.0);
        let timings = simulate(&s, 0..5, &[ms(10), ms(250), ms(10), ms(10), ms(10)]);
        let sent: Vec<Duration> = timings.iter().map(|t| t.sent).collect();
        assert_eq!(sent, vec![ms(0), ms(100), ms(350), ms(360), ms(400)]);
        let latency: Vec<Duration> = timings.iter().map(Timing::latency).collect();
        assert_eq!(latency, vec![ms(10), ms(250), ms(160), ms(70), ms(10)]);
        // The uncorrected service times hide the stall's effect on requests 2 and 3.
        let service: Vec<Duration> = timings.iter().map(Timing::service).collect();
        assert_eq!(service, vec![ms(10), ms(250), ms(10), ms(10), ms(10)]);
        let lag: Vec<Duration> = timings.iter().map(Timing::lag).collect();
        assert_eq!(lag, vec![ms(0), ms(0), ms(150), ms(60), ms(0)]);
    }

    #[test]
    fn per_thread_slots_with_deterministic_clock() {
        // 20/s over two threads: thread 1 owns k = 1, 3, 5 (intended 50, 150, 250 ms).
        let s = Schedule::new(20.0);
        let timings = simulate(&s, Schedule::slots(1, 2), &[ms(120), ms(5), ms(5)]);
        let latency: Vec<Duration> = timings.iter().map(Timing::latency).collect();
        // 50 -> done 170; 150 sent at 170 -> done 175 (25); 250 -> 255 (5).
        assert_eq!(latency, vec![ms(120), ms(25), ms(5)]);
    }

    #[test]
    fn early_completion_is_never_negative() {
        assert_eq!(corrected_latency(ms(100), ms(90)), Duration::ZERO);
        assert_eq!(corrected_latency(ms(100), ms(130)), ms(30));
    }
}
