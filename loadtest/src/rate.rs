//! The open-loop schedule of rate mode, which connection sends which request, and the
//! coordinated-omission correction.
//!
//! Request `k` (0-based, over the whole run) is *intended* to be sent at
//! `start + k / rate`. Worker thread `t` of `T` owns the requests `k ≡ t (mod T)` and sends
//! each at its intended time on one of its idle connections ([`Dispatch`]), or, when all of
//! them are busy, as soon as one becomes idle.
//! The latency reported for a request is measured from its intended send time, not from when
//! it was actually sent, so a stall delays and is charged to every request scheduled during it
//! (the correction for coordinated omission). The plain service time (actual send to response)
//! is reported next to it.

use std::collections::VecDeque;
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

/// Which connection sends which request: a thread's requests become due in schedule order
/// and wait in that order, idle connections wait in the order they became idle, and each due
/// request goes to the connection that has been idle longest (spreading the load over the
/// connections). A request waits only while every connection is busy. Requests are named by
/// their position in the thread's schedule (0, 1, 2, ...), so the waiting ones take no room.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Dispatch {
    idle: VecDeque<usize>,
    /// The position of the first request that is due and not sent.
    next: u64,
    /// How many requests are due and not sent.
    due: u64,
}

impl Dispatch {
    /// `connections` connections, all idle (in index order), and nothing due.
    pub fn new(connections: usize) -> Self {
        Self {
            idle: (0..connections).collect(),
            next: 0,
            due: 0,
        }
    }

    /// The next request in schedule order is due (its intended time has come).
    pub fn due(&mut self) {
        self.due += 1;
    }

    /// Connection `conn` is idle again (its response ended, or it failed and will be reopened
    /// by its next request).
    pub fn idle(&mut self, conn: usize) {
        self.idle.push_back(conn);
    }

    /// The position of the next request to send and the connection to send it on, if a
    /// request is due and a connection idle.
    pub fn assign(&mut self) -> Option<(u64, usize)> {
        if self.due == 0 {
            return None;
        }
        let conn = self.idle.pop_front()?;
        let position = self.next;
        self.next += 1;
        self.due -= 1;
        Some((position, conn))
    }

    /// Whether [`Dispatch::assign`] has something.
    pub fn can_send(&self) -> bool {
        self.due > 0 && !self.idle.is_empty()
    }

    /// How many due requests wait for a connection.
    pub fn waiting(&self) -> u64 {
        self.due
    }

    /// Drops the due requests (the run is over); returns how many there were.
    pub fn clear_due(&mut self) -> u64 {
        let due = std::mem::take(&mut self.due);
        self.next += due;
        due
    }
}

/// What rate mode does with the requests `slots` of `schedule` over `connections`
/// connections when request `i` takes `service[i]` to answer, with a deterministic clock:
/// the worker loop's [`Dispatch`] at each send and completion time. Returns the timing of
/// each request sent, in `slots` order (as many as `service` has).
pub fn simulate_connections(
    schedule: &Schedule,
    slots: impl IntoIterator<Item = u64>,
    connections: usize,
    service: &[Duration],
) -> Vec<Timing> {
    let ks: Vec<u64> = slots.into_iter().take(service.len()).collect();
    let mut timings: Vec<Option<Timing>> = vec![None; ks.len()];
    let mut dispatch = Dispatch::new(connections);
    // (done, connection) of the requests in flight.
    let mut in_flight: Vec<(Duration, usize)> = Vec::new();
    let mut scheduled = 0usize;
    loop {
        let next_send = ks.get(scheduled).map(|&k| schedule.intended(k));
        let next_done = in_flight.iter().map(|&(done, _)| done).min();
        let now = match (next_send, next_done) {
            (Some(a), Some(b)) => a.min(b),
            (Some(a), None) | (None, Some(a)) => a,
            (None, None) => break,
        };
        // Completions first (in completion order, then connection order), then what is due.
        in_flight.sort_unstable();
        while in_flight.first().is_some_and(|&(done, _)| done <= now) {
            let (_, conn) = in_flight.remove(0);
            dispatch.idle(conn);
        }
        while ks
            .get(scheduled)
            .is_some_and(|&k| schedule.intended(k) <= now)
        {
            dispatch.due();
            scheduled += 1;
        }
        while let Some((position, conn)) = dispatch.assign() {
            let Ok(i) = usize::try_from(position) else {
                continue;
            };
            let (Some(&k), Some(&service)) = (ks.get(i), service.get(i)) else {
                continue;
            };
            let done = now + service;
            if let Some(timing) = timings.get_mut(i) {
                *timing = Some(Timing {
                    intended: schedule.intended(k),
                    sent: now,
                    done,
                });
            }
            in_flight.push((done, conn));
        }
    }
    timings.into_iter().flatten().collect()
}

/// [`simulate_connections`] with one connection: each request is sent at its intended time
/// or, if the previous one has not completed yet, right when it completes.
pub fn simulate(
    schedule: &Schedule,
    slots: impl IntoIterator<Item = u64>,
    service: &[Duration],
) -> Vec<Timing> {
    simulate_connections(schedule, slots, 1, service)
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
    fn dispatch_picks_the_longest_idle_connection() {
        let mut d = Dispatch::new(3);
        assert_eq!(d.assign(), None, "nothing due");
        for _ in 0..4 {
            d.due();
        }
        assert_eq!(d.assign(), Some((0, 0)));
        assert_eq!(d.assign(), Some((1, 1)));
        assert_eq!(d.assign(), Some((2, 2)));
        assert!(!d.can_send());
        assert_eq!(d.assign(), None, "every connection busy: request 3 waits");
        assert_eq!(d.waiting(), 1);
        d.idle(2);
        d.idle(0);
        assert!(d.can_send());
        assert_eq!(d.assign(), Some((3, 2)), "connection 2 became idle first");
        d.due();
        assert_eq!(d.assign(), Some((4, 0)));
        d.due();
        d.due();
        assert_eq!(d.clear_due(), 2);
        assert_eq!(d.waiting(), 0);
        d.due();
        d.idle(1);
        assert_eq!(d.assign(), Some((7, 1)), "positions 5 and 6 were dropped");
    }

    #[test]
    fn a_slow_response_does_not_delay_sends_on_other_connections() {
        // 10/s over 2 connections: request 1 stalls for 250 ms on connection 1, and the
        // requests after it go out on time on connection 0 (idle again after 10 ms).
        let s = Schedule::new(10.0);
        let timings = simulate_connections(&s, 0..5, 2, &[ms(10), ms(250), ms(10), ms(10), ms(10)]);
        let sent: Vec<Duration> = timings.iter().map(|t| t.sent).collect();
        assert_eq!(sent, vec![ms(0), ms(100), ms(200), ms(300), ms(400)]);
        let latency: Vec<Duration> = timings.iter().map(Timing::latency).collect();
        assert_eq!(latency, vec![ms(10), ms(250), ms(10), ms(10), ms(10)]);
        assert!(timings.iter().all(|t| t.lag().is_zero()));
    }

    #[test]
    fn a_request_waits_only_while_every_connection_is_busy() {
        // 10/s over 2 connections, held by requests 0 and 1 (done at 300 and 150 ms):
        // requests 2 (due at 200) and 3 (due at 300) take the connections in the order they
        // became idle, and each is sent on time.
        let s = Schedule::new(10.0);
        let timings =
            simulate_connections(&s, 0..5, 2, &[ms(300), ms(50), ms(210), ms(10), ms(10)]);
        let sent: Vec<Duration> = timings.iter().map(|t| t.sent).collect();
        assert_eq!(sent, vec![ms(0), ms(100), ms(200), ms(300), ms(400)]);
        // Request 2 went on connection 1 (free at 150) and ends at 410; request 3 on
        // connection 0 (free at 300) ends at 310; request 4 finds connection 0 idle.
        let done: Vec<Duration> = timings.iter().map(|t| t.done).collect();
        assert_eq!(done, vec![ms(300), ms(150), ms(410), ms(310), ms(410)]);

        // Three requests in a burst on two connections: the third waits for the first free.
        let s = Schedule::new(1000.0);
        let timings = simulate_connections(&s, 0..3, 2, &[ms(5), ms(2), ms(1)]);
        let sent: Vec<Duration> = timings.iter().map(|t| t.sent).collect();
        assert_eq!(sent, vec![ms(0), ms(1), ms(3)]);
        assert_eq!(timings[2].lag(), ms(1));
        assert_eq!(
            timings[2].latency(),
            ms(2),
            "counted from its intended time (2 ms)"
        );
    }

    #[test]
    fn early_completion_is_never_negative() {
        assert_eq!(corrected_latency(ms(100), ms(90)), Duration::ZERO);
        assert_eq!(corrected_latency(ms(100), ms(130)), ms(30));
    }
}
