//! A latency histogram of fixed size: each power of two of nanoseconds is cut into
//! [`SUB_BUCKETS`] equal parts, so a recorded value is known to within 1/16 (6 %) whatever
//! its size, and recording costs an add, whatever the number of samples. The same idea as
//! HdrHistogram, in its smallest form.
//!
//! Used by `dsys bench` (`tools/bench/`) and by the cargo benches (`benches/lean/`), which
//! reach it through the library. Each bench connection keeps its own and the report merges
//! them: no sharing, no lock.

use std::time::Duration;

/// Parts of each power of two.
const SUB_BUCKETS: usize = 16;
/// `log2(SUB_BUCKETS)`.
const SUB_BITS: u32 = 4;
/// Enough buckets for every `u64` of nanoseconds.
const BUCKETS: usize = 64 * SUB_BUCKETS;

/// Counts of latencies, by bucket.
#[derive(Clone)]
pub struct Histogram {
    counts: Vec<u64>,
    total: u64,
    max_ns: u64,
}

impl Default for Histogram {
    fn default() -> Histogram {
        Histogram {
            counts: vec![0; BUCKETS],
            total: 0,
            max_ns: 0,
        }
    }
}

impl Histogram {
    /// Counts one latency.
    pub fn record(&mut self, latency: Duration) {
        let ns = u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX);
        self.counts[bucket_of(ns)] += 1;
        self.total += 1;
        self.max_ns = self.max_ns.max(ns);
    }

    /// Adds `other`'s counts to these.
    pub fn merge(&mut self, other: &Histogram) {
        for (mine, theirs) in self.counts.iter_mut().zip(&other.counts) {
            *mine += theirs;
        }
        self.total += other.total;
        self.max_ns = self.max_ns.max(other.max_ns);
    }

    /// The latency below which a share `q` (0 to 1) of the samples lie: the upper edge of
    /// the bucket that holds that sample, never more than the largest one seen.
    pub fn quantile(&self, q: f64) -> Duration {
        if self.total == 0 {
            return Duration::ZERO;
        }
        let rank = ((q * self.total as f64).ceil() as u64).clamp(1, self.total);
        let mut seen = 0;
        for (bucket, &count) in self.counts.iter().enumerate() {
            seen += count;
            if seen >= rank {
                return Duration::from_nanos(upper_edge(bucket).min(self.max_ns));
            }
        }
        Duration::from_nanos(self.max_ns)
    }

    /// The largest latency counted.
    pub fn max(&self) -> Duration {
        Duration::from_nanos(self.max_ns)
    }

    /// A few lines of text: for each power of two of latency that holds samples, its range,
    /// its share of the samples and a bar.
    pub fn bars(&self) -> Vec<String> {
        const WIDTH: f64 = 40.0;
        let mut lines = Vec::new();
        for power in 0..64 {
            let range = power * SUB_BUCKETS..(power + 1) * SUB_BUCKETS;
            let count: u64 = self.counts[range.clone()].iter().sum();
            if count == 0 {
                continue;
            }
            let share = count as f64 / self.total as f64;
            let low = Duration::from_nanos(lower_edge(range.start));
            let high = Duration::from_nanos(upper_edge(range.end - 1));
            lines.push(format!(
                "{:>9} - {:<9} {:>6.2} % {}",
                format!("{low:.0?}"),
                format!("{high:.0?}"),
                share * 100.0,
                "#".repeat((share * WIDTH).ceil() as usize)
            ));
        }
        lines
    }
}

/// The bucket of `ns`: its power of two, then which of the [`SUB_BUCKETS`] parts of it.
/// Values below [`SUB_BUCKETS`] have a bucket each.
fn bucket_of(ns: u64) -> usize {
    if ns < SUB_BUCKETS as u64 {
        return ns as usize;
    }
    let power = 63 - ns.leading_zeros(); // at least SUB_BITS
    let sub = (ns >> (power - SUB_BITS)) as usize & (SUB_BUCKETS - 1);
    (power - SUB_BITS + 1) as usize * SUB_BUCKETS + sub
}

/// The smallest value in `bucket`.
fn lower_edge(bucket: usize) -> u64 {
    if bucket < SUB_BUCKETS {
        return bucket as u64;
    }
    let power = (bucket / SUB_BUCKETS) as u32 + SUB_BITS - 1;
    let sub = (bucket % SUB_BUCKETS) as u64;
    (1u64 << power) + (sub << (power - SUB_BITS))
}

/// The largest value in `bucket`.
fn upper_edge(bucket: usize) -> u64 {
    if bucket + 1 >= BUCKETS {
        return u64::MAX;
    }
    lower_edge(bucket + 1) - 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_value_falls_in_the_bucket_whose_edges_hold_it() {
        for ns in [
            0,
            1,
            15,
            16,
            17,
            31,
            32,
            1_000,
            999_999,
            1 << 40,
            u64::MAX / 3,
        ] {
            let bucket = bucket_of(ns);
            assert!(
                lower_edge(bucket) <= ns && ns <= upper_edge(bucket),
                "{ns} in bucket {bucket}"
            );
        }
    }

    #[test]
    fn quantiles_are_within_a_sixteenth_of_the_samples() {
        let mut histogram = Histogram::default();
        for us in 1..=1_000 {
            histogram.record(Duration::from_micros(us));
        }
        let p50 = histogram.quantile(0.5).as_micros() as f64;
        let p99 = histogram.quantile(0.99).as_micros() as f64;
        assert!((500.0..=500.0 * 17.0 / 16.0).contains(&p50), "p50 {p50}");
        assert!((990.0..=1_000.0).contains(&p99), "p99 {p99}");
        assert_eq!(histogram.quantile(1.0), Duration::from_micros(1_000));
    }
}
