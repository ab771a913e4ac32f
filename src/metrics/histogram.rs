//! A fixed-bucket histogram of durations recorded with two relaxed atomic
//! adds and no lock: `prometheus-client`'s own histogram takes a lock per
//! observation, and this one is fed once per relayed command from every
//! worker thread.

use std::sync::atomic::{AtomicU64, Ordering};

/// Command durations: 25 µs (a point select on a near backend) to 30 s.
pub const QUERY_BOUNDS_US: &[u64] = &[
    25, 50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000,
    1_000_000, 2_500_000, 5_000_000, 10_000_000, 30_000_000,
];

/// Waits for a backend connection: an idle one is handed over in a few
/// microseconds, a full pool or plan queues for up to the lease timeout.
pub const LEASE_WAIT_BOUNDS_US: &[u64] = &[
    5, 10, 25, 50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000,
    500_000, 1_000_000, 2_500_000, 5_000_000, 10_000_000,
];

#[derive(Debug)]
pub struct Histogram {
    /// Upper bounds (inclusive) in microseconds, ascending.
    bounds_us: &'static [u64],
    /// One counter per bound plus the +Inf bucket; not cumulative.
    buckets: Box<[AtomicU64]>,
    sum_us: AtomicU64,
}

/// A scrape's copy of a [`Histogram`], in the encoder's terms.
#[derive(Debug, Clone, PartialEq)]
pub struct HistogramSnapshot {
    pub sum_seconds: f64,
    pub count: u64,
    /// (upper bound in seconds, observations in that bucket alone), the
    /// last bound +Inf.
    pub buckets: Vec<(f64, u64)>,
}

impl Histogram {
    pub fn new(bounds_us: &'static [u64]) -> Self {
        Self {
            bounds_us,
            buckets: (0..=bounds_us.len()).map(|_| AtomicU64::new(0)).collect(),
            sum_us: AtomicU64::new(0),
        }
    }

    pub fn observe_us(&self, us: u64) {
        let i = self.bounds_us.partition_point(|&bound| bound < us);
        if let Some(bucket) = self.buckets.get(i) {
            bucket.fetch_add(1, Ordering::Relaxed);
        }
        self.sum_us.fetch_add(us, Ordering::Relaxed);
    }

    pub fn observe(&self, elapsed: std::time::Duration) {
        self.observe_us(u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX));
    }

    pub fn snapshot(&self) -> HistogramSnapshot {
        let bounds = self
            .bounds_us
            .iter()
            .map(|&b| b as f64 / 1e6)
            .chain(std::iter::once(f64::INFINITY));
        let buckets: Vec<(f64, u64)> = bounds
            .zip(self.buckets.iter().map(|b| b.load(Ordering::Relaxed)))
            .collect();
        HistogramSnapshot {
            sum_seconds: self.sum_us.load(Ordering::Relaxed) as f64 / 1e6,
            count: buckets.iter().map(|(_, n)| n).sum(),
            buckets,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn observations_land_in_the_first_bucket_that_holds_them() {
        let h = Histogram::new(&[10, 100]);
        h.observe_us(0);
        h.observe_us(10);
        h.observe_us(11);
        h.observe_us(100);
        h.observe_us(5_000);
        let s = h.snapshot();
        assert_eq!(s.count, 5);
        assert_eq!(
            s.buckets,
            vec![(0.00001, 2), (0.0001, 2), (f64::INFINITY, 1)]
        );
        assert!((s.sum_seconds - 0.005121).abs() < 1e-9);
    }

    #[test]
    fn bounds_are_ascending() {
        for bounds in [QUERY_BOUNDS_US, LEASE_WAIT_BOUNDS_US] {
            assert!(bounds.windows(2).all(|w| w[0] < w[1]));
        }
    }
}
