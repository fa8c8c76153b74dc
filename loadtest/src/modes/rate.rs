//! Rate mode: the open-loop schedule of [`crate::rate`] over keep-alive connections. Thread
//! `t` of `T` sends the requests `k ≡ t (mod T)`, each at its intended time on whichever of
//! its connections has been idle longest ([`Dispatch`]), so that a slow response delays no
//! other send while another connection is idle; when none is, the request waits for the
//! first to become idle. The thread's connections run as an event loop ([`Pool`]) that
//! wakes at the next intended send time. Latency is measured from the intended time.
//! Requests scheduled within the duration are all sent unless the run is more than the
//! per-operation timeout late at the end, in which case the rest count as `unsent` errors.
//! Each thread opens its connections first and starts its schedule after that.

use std::time::Instant;

use super::pool::{Done, Pool};
use super::{owned_connections, Shared, Worker};
use crate::errors::{ErrorKind, LoadError};
use crate::http::get_request;
use crate::rate::{Dispatch, Schedule};
use crate::report::Stats;

/// Runs worker thread `thread` of `threads`.
pub fn run(
    shared: &Shared<'_>,
    thread: usize,
    threads: usize,
    rate: f64,
    connections: usize,
) -> Result<Stats, LoadError> {
    let mut worker = Worker::new(shared);
    let schedule = Schedule::new(rate);
    let duration = shared.config.time_limit();
    let mut limit = schedule.count_within(duration);
    if let Some(count) = shared.config.count {
        limit = limit.min(count);
    }
    let step = threads.max(1) as u64;
    let first = thread as u64;
    // This thread's requests, by position: the request `first + position * step`.
    let total = if first < limit {
        (limit - first).div_ceil(step)
    } else {
        0
    };
    let owned = owned_connections(thread, threads, connections);
    if owned.is_empty() {
        // More threads than connections: this thread has none to send on.
        worker.stats.error(ErrorKind::Unsent, total);
        return Ok(worker.stats);
    }
    let request = get_request(shared.client.sni(), &shared.config.path, false);
    let mut pool = Pool::new(shared, &owned, request)?;
    // Open the connections before the schedule starts, so that their handshakes are not
    // measured as request latency (a connection that fails here is reopened by its first
    // request).
    for slot in 0..pool.len() {
        pool.open(slot);
    }
    while pool.busy() > 0 {
        pool.wait(None)?;
        for done in pool.take_done() {
            record(&mut worker, done);
        }
    }
    for done in pool.take_done() {
        record(&mut worker, done);
    }

    let start = Instant::now();
    let intended = |position: u64| start + schedule.intended(first + position * step);
    let hard_deadline = start + duration + shared.config.timeout;
    let mut dispatch = Dispatch::new(pool.len());
    // How many of the thread's requests were made due (or dropped, once the run is cut).
    let mut scheduled = 0u64;
    let mut cut = false;
    loop {
        let now = Instant::now();
        if !cut && (now >= hard_deadline || shared.stopped()) {
            let unsent = dispatch.clear_due() + (total - scheduled);
            worker.stats.error(ErrorKind::Unsent, unsent);
            scheduled = total;
            cut = true;
        }
        while scheduled < total && intended(scheduled) <= now {
            // Only while no due request waits for a busy connection: then the loop was waiting
            // on its timer, and any lateness is the generator's own.
            if !cut && dispatch.waiting() == 0 {
                worker
                    .stats
                    .schedule_lag
                    .record(now.saturating_duration_since(intended(scheduled)));
            }
            dispatch.due();
            scheduled += 1;
        }
        while let Some((position, slot)) = dispatch.assign() {
            pool.start(slot, intended(position));
        }
        let ended = finish(&mut pool, &mut dispatch, &mut worker);
        if ended && dispatch.can_send() {
            // A connection failed at once and is free again.
            continue;
        }
        if scheduled >= total && dispatch.waiting() == 0 && pool.busy() == 0 {
            break;
        }
        let wake = if scheduled < total && dispatch.waiting() == 0 {
            Some(intended(scheduled))
        } else {
            None
        };
        let wake = if cut {
            wake
        } else {
            Some(wake.map_or(hard_deadline, |w| w.min(hard_deadline)))
        };
        pool.wait(wake)?;
        finish(&mut pool, &mut dispatch, &mut worker);
    }
    worker.stats.connections += pool.connections();
    Ok(worker.stats)
}

/// Records what ended and makes its connections idle again; whether anything ended.
fn finish(pool: &mut Pool<'_, '_>, dispatch: &mut Dispatch, worker: &mut Worker<'_, '_>) -> bool {
    let mut ended = false;
    for done in pool.take_done() {
        dispatch.idle(done.slot);
        record(worker, done);
        ended = true;
    }
    ended
}

/// Records a request that ended (latency from its intended time, service time from its
/// send), or the failure of a connection opened ahead of the schedule.
fn record(worker: &mut Worker<'_, '_>, done: Done) {
    match done.request {
        Some(request) => {
            worker.stats.max_lag = worker
                .stats
                .max_lag
                .max(request.sent.saturating_duration_since(request.started));
            worker.record(
                done.result,
                done.at.saturating_duration_since(request.started),
                Some(done.at.saturating_duration_since(request.sent)),
            );
        }
        None => {
            if let Err(kind) = done.result {
                worker.stats.error(kind, 1);
            }
        }
    }
}
