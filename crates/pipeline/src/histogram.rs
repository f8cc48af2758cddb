//! Fixed-bucket histograms counted with relaxed atomics, cheap enough for the hot path (a
//! binary search over a dozen bounds and two adds), and read as plain counts that add up across
//! calls: the server sums them over ended and running calls at each scrape, as it does the
//! counters.

use std::sync::atomic::{AtomicU64, Ordering};

/// Buckets of [`CALLBACK_NANOS`] and [`PACING_LAG_MICROS`].
pub const HISTOGRAM_BUCKETS: usize = 12;

/// Upper bounds of a processor's callback time, in nanoseconds: 1 µs to about 4 s in powers of
/// four, then everything longer.
pub const CALLBACK_NANOS: [u64; HISTOGRAM_BUCKETS] = [
    1_000,
    4_000,
    16_000,
    64_000,
    256_000,
    1_024_000,
    4_096_000,
    16_384_000,
    65_536_000,
    262_144_000,
    1_048_576_000,
    u64::MAX,
];

/// Upper bounds of how late the pacer sent a frame after its tick, in microseconds: 100 µs to
/// 5 s, then everything later.
pub const PACING_LAG_MICROS: [u64; HISTOGRAM_BUCKETS] = [
    100,
    250,
    500,
    1_000,
    2_500,
    5_000,
    10_000,
    20_000,
    50_000,
    250_000,
    5_000_000,
    u64::MAX,
];

/// A histogram being counted: one counter per bucket and the sum of what was observed. One
/// writer at a time (a processor's callbacks, the pacer), any number of readers: a count is a
/// plain load and store, not a locked read-modify-write.
#[derive(Debug)]
pub(crate) struct AtomicHistogram {
    bounds: &'static [u64; HISTOGRAM_BUCKETS],
    counts: [AtomicU64; HISTOGRAM_BUCKETS],
    sum: AtomicU64,
}

impl AtomicHistogram {
    pub(crate) const fn new(bounds: &'static [u64; HISTOGRAM_BUCKETS]) -> Self {
        AtomicHistogram {
            bounds,
            counts: [const { AtomicU64::new(0) }; HISTOGRAM_BUCKETS],
            sum: AtomicU64::new(0),
        }
    }

    /// Counts `value` in the first bucket whose bound is at least `value`.
    pub(crate) fn observe(&self, value: u64) {
        let bucket = self
            .bounds
            .partition_point(|&bound| bound < value)
            .min(HISTOGRAM_BUCKETS - 1);
        add(&self.counts[bucket], 1);
        add(&self.sum, value);
    }

    /// The sum of what was observed.
    pub(crate) fn sum(&self) -> u64 {
        self.sum.load(Ordering::Relaxed)
    }

    /// The counts now.
    pub(crate) fn counts(&self) -> HistogramCounts {
        HistogramCounts {
            counts: self.counts.each_ref().map(|c| c.load(Ordering::Relaxed)),
            sum: self.sum(),
        }
    }
}

/// Adds `n` to a counter that only the caller writes (readers see the old or the new value).
pub(crate) fn add(counter: &AtomicU64, n: u64) {
    counter.store(
        counter.load(Ordering::Relaxed).wrapping_add(n),
        Ordering::Relaxed,
    );
}

/// Raises a maximum that only the caller writes.
pub(crate) fn raise(maximum: &AtomicU64, value: u64) {
    if value > maximum.load(Ordering::Relaxed) {
        maximum.store(value, Ordering::Relaxed);
    }
}

/// A histogram's counts at one moment (per bucket, not cumulative), in the unit of its bounds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HistogramCounts {
    /// Observations per bucket.
    pub counts: [u64; HISTOGRAM_BUCKETS],
    /// The sum of the observations.
    pub sum: u64,
}

impl HistogramCounts {
    /// Adds `other`'s counts to these.
    pub fn add(&mut self, other: &HistogramCounts) {
        for (mine, theirs) in self.counts.iter_mut().zip(other.counts) {
            *mine = mine.saturating_add(theirs);
        }
        self.sum = self.sum.saturating_add(other.sum);
    }

    /// How many were observed.
    pub fn count(&self) -> u64 {
        self.counts
            .iter()
            .fold(0, |total, &n| total.saturating_add(n))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_land_in_the_first_bucket_that_holds_them() {
        let histogram = AtomicHistogram::new(&PACING_LAG_MICROS);
        for value in [
            0,
            100,
            101,
            5_000,
            5_001,
            4_999_999,
            5_000_001,
            u64::MAX / 2,
        ] {
            histogram.observe(value);
        }
        let counts = histogram.counts();
        assert_eq!(counts.counts, [2, 1, 0, 0, 0, 1, 1, 0, 0, 0, 1, 2]);
        assert_eq!(counts.count(), 8);
        let mut total = counts;
        total.add(&counts);
        assert_eq!(total.count(), 16);
        assert_eq!(total.counts[11], 4);
    }

    #[test]
    fn bounds_ascend_and_end_unbounded() {
        for bounds in [CALLBACK_NANOS, PACING_LAG_MICROS] {
            assert!(bounds.windows(2).all(|w| w[0] < w[1]), "{bounds:?}");
            assert_eq!(bounds[HISTOGRAM_BUCKETS - 1], u64::MAX);
        }
    }
}
