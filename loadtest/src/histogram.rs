//! Latency recording in HDR histograms (microseconds, 3 significant digits), one per worker
//! thread, merged at the end of a run.

use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::errors::LoadError;

/// Largest latency recorded exactly (one hour); larger values are clamped to it.
const HIGHEST_MICROS: u64 = 3_600_000_000;

/// A latency histogram.
#[derive(Debug, Clone)]
pub struct LatencyHistogram {
    inner: Histogram<u64>,
}

impl Default for LatencyHistogram {
    fn default() -> Self {
        Self::new()
    }
}

impl LatencyHistogram {
    /// An empty histogram covering 1 µs ..= 1 h at 3 significant digits.
    pub fn new() -> Self {
        // 1 <= HIGHEST_MICROS / 2 and 3 significant digits are valid bounds: a true invariant.
        #[allow(clippy::expect_used)]
        let inner = Histogram::new_with_bounds(1, HIGHEST_MICROS, 3)
            .expect("constant histogram bounds are valid");
        Self { inner }
    }

    /// Records one latency (sub-microsecond values count as 1 µs; over an hour as an hour).
    pub fn record(&mut self, latency: Duration) {
        let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        self.inner
            .saturating_record(micros.clamp(1, HIGHEST_MICROS));
    }

    /// Adds every value of `other`.
    pub fn merge(&mut self, other: &LatencyHistogram) -> Result<(), LoadError> {
        self.inner
            .add(&other.inner)
            .map_err(|e| LoadError::Histogram(format!("{e:?}")))
    }

    /// How many values were recorded.
    pub fn count(&self) -> u64 {
        self.inner.len()
    }

    /// The summary percentiles.
    pub fn percentiles(&self) -> Percentiles {
        let h = &self.inner;
        if h.is_empty() {
            return Percentiles::default();
        }
        Percentiles {
            count: h.len(),
            min_us: h.min(),
            mean_us: h.mean(),
            p50_us: h.value_at_quantile(0.50),
            p90_us: h.value_at_quantile(0.90),
            p99_us: h.value_at_quantile(0.99),
            p999_us: h.value_at_quantile(0.999),
            max_us: h.max(),
        }
    }
}

/// Latency percentiles in microseconds (values are HDR bucket boundaries: within 0.1 %).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Percentiles {
    /// Number of values.
    pub count: u64,
    /// Smallest value.
    pub min_us: u64,
    /// Mean.
    pub mean_us: f64,
    /// Median.
    pub p50_us: u64,
    /// 90th percentile.
    pub p90_us: u64,
    /// 99th percentile.
    pub p99_us: u64,
    /// 99.9th percentile.
    pub p999_us: u64,
    /// Largest value.
    pub max_us: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `a` is within HDR's 3-significant-digit precision of `b`.
    fn close(a: u64, b: u64) -> bool {
        a.abs_diff(b) * 1000 <= b.max(1)
    }

    #[test]
    fn merged_percentiles_of_known_inputs() {
        // Thread 1 records 1..=500 ms, thread 2 records 501..=1000 ms: together 1..=1000 ms.
        let mut a = LatencyHistogram::new();
        let mut b = LatencyHistogram::new();
        for ms in 1..=1000u64 {
            let h = if ms <= 500 { &mut a } else { &mut b };
            h.record(Duration::from_millis(ms));
        }
        a.merge(&b).expect("merge");
        let p = a.percentiles();
        assert_eq!(p.count, 1000);
        for (got, want) in [
            (p.min_us, 1_000),
            (p.p50_us, 500_000),
            (p.p90_us, 900_000),
            (p.p99_us, 990_000),
            (p.p999_us, 999_000),
            (p.max_us, 1_000_000),
        ] {
            assert!(close(got, want), "got {got}, want {want}");
        }
        assert!((p.mean_us - 500_500.0).abs() < 500.0, "{}", p.mean_us);
    }

    #[test]
    fn exact_small_values_and_clamping() {
        let mut h = LatencyHistogram::new();
        for us in [100u64, 100, 200, 300] {
            h.record(Duration::from_micros(us));
        }
        h.record(Duration::from_nanos(10)); // clamped up to 1 µs
        h.record(Duration::from_secs(7200)); // clamped down to an hour
        let p = h.percentiles();
        assert_eq!(p.count, 6);
        assert_eq!(p.min_us, 1);
        assert_eq!(p.p50_us, 100);
        assert!(close(p.max_us, HIGHEST_MICROS));
    }

    #[test]
    fn empty() {
        assert_eq!(
            LatencyHistogram::new().percentiles(),
            Percentiles::default()
        );
    }
}
