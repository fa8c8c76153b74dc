//! Per-thread counters ([`Stats`]), their merge, and the run's [`Summary`] as a table or JSON.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use serde::Serialize;

use crate::errors::{ErrorKind, LoadError};
use crate::histogram::{LatencyHistogram, Percentiles};

/// What one worker thread counted.
#[derive(Debug, Clone, Default)]
pub struct Stats {
    /// Latency of every completed operation (rate mode: from the intended send time).
    pub latency: LatencyHistogram,
    /// Rate mode: service time (actual send to response) of every completed request.
    pub service: LatencyHistogram,
    /// Operations that ended as expected.
    pub completed: u64,
    /// Completed operations whose handshake resumed a session.
    pub resumed: u64,
    /// Completed operations that did a full handshake.
    pub full_handshakes: u64,
    /// TCP connections opened.
    pub connections: u64,
    /// Response body bytes received.
    pub body_bytes: u64,
    /// Failed operations by kind.
    pub errors: BTreeMap<ErrorKind, u64>,
    /// With `--expect-refused`: refused handshakes (completed, as expected) by kind.
    pub expected: BTreeMap<ErrorKind, u64>,
    /// Rate mode: the latest a request was sent after its intended time.
    pub max_lag: Duration,
    /// Rate mode: the load generator's own lateness, how long after its intended time each
    /// request was seen due (the generator's timer and scheduling, not the server: a request
    /// waiting for a busy connection is counted in `max_lag` only).
    pub schedule_lag: LatencyHistogram,
}

impl Stats {
    /// Adds `other` into `self`.
    pub fn merge(&mut self, other: &Stats) -> Result<(), LoadError> {
        self.latency.merge(&other.latency)?;
        self.service.merge(&other.service)?;
        self.completed += other.completed;
        self.resumed += other.resumed;
        self.full_handshakes += other.full_handshakes;
        self.connections += other.connections;
        self.body_bytes += other.body_bytes;
        for (kind, n) in &other.errors {
            *self.errors.entry(kind.clone()).or_default() += n;
        }
        for (kind, n) in &other.expected {
            *self.expected.entry(kind.clone()).or_default() += n;
        }
        self.max_lag = self.max_lag.max(other.max_lag);
        self.schedule_lag.merge(&other.schedule_lag)?;
        Ok(())
    }

    /// Counts one failed operation.
    pub fn error(&mut self, kind: ErrorKind, n: u64) {
        *self.errors.entry(kind).or_default() += n;
    }

    /// Failed operations in total.
    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }
}

/// One line of the error table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ErrorCount {
    /// The kind's label (`connect`, `handshake_refused`, ...).
    pub kind: String,
    /// The alert, TLS reason or HTTP status, when the kind has one.
    pub detail: Option<String>,
    /// How many.
    pub count: u64,
    /// An expected outcome (a refused handshake with `--expect-refused`), not an error.
    pub expected: bool,
}

/// The result of a run.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    /// `handshake`, `keepalive` or `rate`.
    pub mode: String,
    /// The target address.
    pub target: String,
    /// `TLSv1.2` or `TLSv1.3`.
    pub tls_version: String,
    /// Worker threads.
    pub threads: usize,
    /// Client certificates in the pool.
    pub client_certs: usize,
    /// Wall-clock time of the run in seconds.
    pub elapsed_secs: f64,
    /// Operations that ended as expected (handshakes in handshake mode, requests otherwise).
    pub completed: u64,
    /// `completed` per second.
    pub ops_per_sec: f64,
    /// What an operation is: `handshakes` or `requests`.
    pub unit: String,
    /// Completed operations whose handshake resumed a session.
    pub resumed: u64,
    /// Completed operations that did a full handshake.
    pub full_handshakes: u64,
    /// TCP connections opened.
    pub connections: u64,
    /// Response body bytes received.
    pub body_bytes: u64,
    /// Failed (and, with `--expect-refused`, expected refused) operations by kind.
    pub errors: Vec<ErrorCount>,
    /// Failed operations that were not expected.
    pub unexpected_errors: u64,
    /// The tolerated number of unexpected errors.
    pub max_errors: u64,
    /// `unexpected_errors <= max_errors` and something completed.
    pub passed: bool,
    /// Latency of completed operations (rate mode: from the intended send time).
    pub latency: Percentiles,
    /// Rate mode: the target rate.
    pub target_rate: Option<f64>,
    /// Rate mode: service time (actual send to response end), uncorrected.
    pub service_time: Option<Percentiles>,
    /// Rate mode: the latest a request was sent after its intended time, in microseconds.
    pub max_send_lag_us: Option<u64>,
    /// Rate mode: the load generator's own lateness in seeing each request due (its timer
    /// and its thread's scheduling), independent of the server. A run whose p99 or maximum
    /// exceeds a small bound measured the generator, not the server.
    pub schedule_lag: Option<Percentiles>,
}

/// The run facts a [`Summary`] is built from besides the counters.
#[derive(Debug, Clone)]
pub struct RunInfo {
    /// Mode name.
    pub mode: String,
    /// Target address.
    pub target: String,
    /// TLS version name.
    pub tls_version: String,
    /// Worker threads.
    pub threads: usize,
    /// Client certificates in the pool.
    pub client_certs: usize,
    /// Wall-clock duration.
    pub elapsed: Duration,
    /// `handshakes` or `requests`.
    pub unit: String,
    /// Tolerated unexpected errors.
    pub max_errors: u64,
    /// Rate mode: the target rate.
    pub target_rate: Option<f64>,
}

impl Summary {
    /// Builds the summary of merged `stats`.
    pub fn new(info: RunInfo, stats: &Stats) -> Summary {
        let elapsed = info.elapsed.as_secs_f64();
        let mut errors: Vec<ErrorCount> = stats
            .errors
            .iter()
            .map(|(kind, &count)| (kind, count, false))
            .chain(stats.expected.iter().map(|(k, &c)| (k, c, true)))
            .map(|(kind, count, expected)| ErrorCount {
                kind: kind.label().to_owned(),
                detail: kind.detail(),
                count,
                expected,
            })
            .collect();
        errors.sort_by(|a, b| b.count.cmp(&a.count).then(a.kind.cmp(&b.kind)));
        let unexpected_errors = stats.error_count();
        let rate_mode = info.target_rate.is_some();
        Summary {
            mode: info.mode,
            target: info.target,
            tls_version: info.tls_version,
            threads: info.threads,
            client_certs: info.client_certs,
            elapsed_secs: elapsed,
            completed: stats.completed,
            ops_per_sec: if elapsed > 0.0 {
                stats.completed as f64 / elapsed
            } else {
                0.0
            },
            unit: info.unit,
            resumed: stats.resumed,
            full_handshakes: stats.full_handshakes,
            connections: stats.connections,
            body_bytes: stats.body_bytes,
            errors,
            unexpected_errors,
            max_errors: info.max_errors,
            passed: unexpected_errors <= info.max_errors && stats.completed > 0,
            latency: stats.latency.percentiles(),
            target_rate: info.target_rate,
            service_time: rate_mode.then(|| stats.service.percentiles()),
            max_send_lag_us: rate_mode
                .then(|| u64::try_from(stats.max_lag.as_micros()).unwrap_or(u64::MAX)),
            schedule_lag: rate_mode.then(|| stats.schedule_lag.percentiles()),
        }
    }

    /// Count of the errors (unexpected or expected) of kind `label`.
    pub fn errors_of(&self, label: &str) -> u64 {
        self.errors
            .iter()
            .filter(|e| e.kind == label)
            .map(|e| e.count)
            .sum()
    }

    /// The summary as pretty JSON.
    pub fn to_json(&self) -> String {
        // Serializing plain structs of numbers and strings cannot fail.
        serde_json::to_string_pretty(self)
            .unwrap_or_else(|e| format!("{{\"error\":{:?}}}", e.to_string()))
    }

    /// The summary as a human-readable table.
    pub fn to_table(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "{} -> {}  ({}, {} threads, {} client certs)",
            self.mode, self.target, self.tls_version, self.threads, self.client_certs
        );
        let _ = writeln!(s, "  elapsed        {:.2} s", self.elapsed_secs);
        let _ = writeln!(
            s,
            "  completed      {} {} ({:.1} {}/s)",
            self.completed, self.unit, self.ops_per_sec, self.unit
        );
        if let Some(rate) = self.target_rate {
            let _ = writeln!(s, "  target rate    {rate:.1} requests/s");
        }
        let _ = writeln!(
            s,
            "  handshakes     {} full, {} resumed  ({} connections)",
            self.full_handshakes, self.resumed, self.connections
        );
        let _ = writeln!(
            s,
            "  errors         {} unexpected (max {})",
            self.unexpected_errors, self.max_errors
        );
        for e in &self.errors {
            let name = match &e.detail {
                Some(d) => format!("{}({d})", e.kind),
                None => e.kind.clone(),
            };
            let note = if e.expected { "  (expected)" } else { "" };
            let _ = writeln!(s, "    {name:<40} {:>10}{note}", e.count);
        }
        let _ = writeln!(
            s,
            "  {:<14} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
            "latency (ms)", "p50", "p90", "p99", "p99.9", "max", "mean"
        );
        let _ = writeln!(s, "{}", percentile_row("  total", &self.latency));
        if let Some(service) = &self.service_time {
            let _ = writeln!(s, "{}", percentile_row("  service", service));
        }
        if let Some(lag) = self.max_send_lag_us {
            let _ = writeln!(s, "  max send lag   {:.3} ms", lag as f64 / 1000.0);
        }
        if let Some(lag) = &self.schedule_lag {
            let _ = writeln!(
                s,
                "  schedule lag   p99 {:.3} ms, max {:.3} ms (the generator's own lateness)",
                lag.p99_us as f64 / 1000.0,
                lag.max_us as f64 / 1000.0
            );
        }
        let _ = writeln!(
            s,
            "  result         {}",
            if self.passed { "PASS" } else { "FAIL" }
        );
        s
    }
}

fn percentile_row(name: &str, p: &Percentiles) -> String {
    let ms = |us: u64| us as f64 / 1000.0;
    format!(
        "{name:<16} {:>9.3} {:>9.3} {:>9.3} {:>9.3} {:>9.3} {:>9.3}",
        ms(p.p50_us),
        ms(p.p90_us),
        ms(p.p99_us),
        ms(p.p999_us),
        ms(p.max_us),
        p.mean_us / 1000.0
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info() -> RunInfo {
        RunInfo {
            mode: "handshake".into(),
            target: "127.0.0.1:1".into(),
            tls_version: "TLSv1.3".into(),
            threads: 2,
            client_certs: 4,
            elapsed: Duration::from_secs(2),
            unit: "handshakes".into(),
            max_errors: 1,
            target_rate: None,
        }
    }

    #[test]
    fn merge_and_summarize() {
        let mut a = Stats::default();
        let mut b = Stats::default();
        for ms in 1..=100u64 {
            let s = if ms % 2 == 0 { &mut a } else { &mut b };
            s.latency.record(Duration::from_millis(ms));
            s.completed += 1;
            s.full_handshakes += 1;
        }
        a.error(ErrorKind::HttpStatus(503), 1);
        b.error(ErrorKind::HttpStatus(503), 2);
        b.error(ErrorKind::Timeout, 1);
        b.expected.insert(
            ErrorKind::HandshakeRefused {
                alert: "unknown_ca".into(),
            },
            5,
        );
        b.max_lag = Duration::from_millis(3);
        a.merge(&b).expect("merge");
        let summary = Summary::new(info(), &a);
        assert_eq!(summary.completed, 100);
        assert_eq!(summary.ops_per_sec, 50.0);
        assert_eq!(summary.unexpected_errors, 4);
        assert!(!summary.passed, "4 errors > max 1");
        assert_eq!(summary.errors_of("http_status"), 3);
        assert_eq!(summary.errors_of("handshake_refused"), 5);
        assert_eq!(
            summary.errors[0],
            ErrorCount {
                kind: "handshake_refused".into(),
                detail: Some("unknown_ca".into()),
                count: 5,
                expected: true
            }
        );
        assert_eq!(summary.latency.count, 100);
        assert!(summary.latency.p50_us.abs_diff(50_000) <= 50);
        assert!(summary.latency.p99_us.abs_diff(99_000) <= 99);
        assert!(summary.latency.max_us.abs_diff(100_000) <= 100);

        let table = summary.to_table();
        assert!(table.contains("http_status(503)"), "{table}");
        assert!(table.contains("(expected)"), "{table}");
        assert!(table.contains("FAIL"), "{table}");
        let json: serde_json::Value = serde_json::from_str(&summary.to_json()).expect("json");
        assert_eq!(json["completed"], 100);
        assert_eq!(json["unexpected_errors"], 4);
        assert_eq!(json["latency"]["count"], 100);
    }

    #[test]
    fn nothing_completed_fails() {
        let summary = Summary::new(info(), &Stats::default());
        assert!(!summary.passed);
        assert_eq!(summary.ops_per_sec, 0.0);
    }
}
