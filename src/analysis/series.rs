//! What the timeline draws, kept while the probes stream past: time buckets holding the lowest
//! and highest latency of the successful probes, which error classes failed, and the sequence
//! numbers of the acknowledged writes (to mark lost ones once the write log is read). Between
//! [`MIN_BUCKETS`] and twice that: when time runs past the last bucket, neighbours merge and a
//! bucket covers twice the time. A bucket is never wider than a pixel column of the plot.

use crate::sample::ErrorClass;

/// The plot's pixel columns.
pub(crate) const MIN_BUCKETS: usize = 1100;
const MAX_BUCKETS: usize = 2 * MIN_BUCKETS;
const FIRST_WIDTH_US: u64 = 1_000;

#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(crate) struct Bucket {
    /// Highest and lowest latency of successful probes, µs (`min_ok_us` is u32::MAX when none).
    pub max_ok_us: u32,
    pub min_ok_us: u32,
    /// Bit `class as u32` set when a probe of that class failed here (room for 32 classes).
    pub failed: u32,
    /// Lowest and highest sequence number of acknowledged writes here (0, 0 when none).
    seq_lo: u64,
    seq_hi: u64,
}

impl Bucket {
    const EMPTY: Bucket = Bucket { max_ok_us: 0, min_ok_us: u32::MAX, failed: 0, seq_lo: 0, seq_hi: 0 };

    pub(crate) fn has_ok(&self) -> bool {
        self.min_ok_us != u32::MAX
    }

    pub(crate) fn failed_classes(&self) -> impl Iterator<Item = ErrorClass> + '_ {
        ErrorClass::ALL.into_iter().filter(|c| self.failed & (1 << *c as u32) != 0)
    }

    fn merge(&mut self, o: &Bucket) {
        self.max_ok_us = self.max_ok_us.max(o.max_ok_us);
        self.min_ok_us = self.min_ok_us.min(o.min_ok_us);
        self.failed |= o.failed;
        if o.seq_hi != 0 {
            self.seq_lo = if self.seq_hi == 0 { o.seq_lo } else { self.seq_lo.min(o.seq_lo) };
            self.seq_hi = self.seq_hi.max(o.seq_hi);
        }
    }
}

/// The buckets of one panel (a stream of a trial, for the target or one shard).
#[derive(Clone, Debug)]
pub struct Series {
    origin_us: u64,
    width_us: u64,
    buckets: Vec<Bucket>,
    /// Buckets holding an acknowledged write that the write log did not have.
    lost: Vec<usize>,
}

impl Series {
    pub fn new(origin_us: u64) -> Self {
        Self { origin_us, width_us: FIRST_WIDTH_US, buckets: Vec::new(), lost: Vec::new() }
    }

    pub(crate) fn add(
        &mut self,
        scheduled_us: u64,
        latency_us: u64,
        error: Option<ErrorClass>,
        acked_seq: Option<u64>,
    ) {
        let mut i = (scheduled_us.saturating_sub(self.origin_us) / self.width_us) as usize;
        while i >= MAX_BUCKETS {
            self.halve();
            i /= 2;
        }
        if i >= self.buckets.len() {
            self.buckets.resize(i + 1, Bucket::EMPTY);
        }
        let b = &mut self.buckets[i];
        match error {
            None => {
                let us = latency_us.min(u32::MAX as u64 - 1) as u32;
                b.max_ok_us = b.max_ok_us.max(us);
                b.min_ok_us = b.min_ok_us.min(us);
            }
            Some(class) => b.failed |= 1 << class as u32,
        }
        if let Some(seq) = acked_seq {
            b.merge(&Bucket { seq_lo: seq, seq_hi: seq, ..Bucket::EMPTY });
        }
    }

    fn halve(&mut self) {
        let merged = self
            .buckets
            .chunks(2)
            .map(|pair| {
                let mut b = pair[0];
                if let Some(o) = pair.get(1) {
                    b.merge(o);
                }
                b
            })
            .collect();
        self.buckets = merged;
        self.width_us *= 2;
    }

    /// Marks the buckets whose acknowledged writes include one of `lost` (sorted ranges).
    pub(crate) fn mark_lost(&mut self, lost: &[(u64, u64)]) {
        if lost.is_empty() {
            return;
        }
        self.lost = (0..self.buckets.len())
            .filter(|&i| {
                let b = &self.buckets[i];
                let at = lost.partition_point(|(_, hi)| *hi < b.seq_lo);
                b.seq_hi != 0 && at < lost.len() && lost[at].0 <= b.seq_hi
            })
            .collect();
    }

    /// Each bucket with its middle, in µs on the run clock.
    pub(crate) fn buckets(&self) -> impl Iterator<Item = (u64, &Bucket)> {
        self.buckets.iter().enumerate().map(|(i, b)| (self.middle_us(i), b))
    }

    /// Middles of the buckets with a lost acknowledged write, with their highest latency (µs).
    pub fn lost(&self) -> impl Iterator<Item = (u64, u32)> + '_ {
        self.lost.iter().map(|&i| (self.middle_us(i), self.buckets[i].max_ok_us))
    }

    fn middle_us(&self, i: usize) -> u64 {
        self.origin_us + i as u64 * self.width_us + self.width_us / 2
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stays_bounded_and_keeps_extremes_failures_and_lost_writes() {
        let mut s = Series::new(0);
        // An hour at 10 ms: 360 000 probes, one failure and one lost write in the middle.
        for i in 0..360_000u64 {
            let t = i * 10_000;
            let error = (i == 180_000).then_some(ErrorClass::Readonly);
            s.add(t, 100 + i % 7, error, error.is_none().then_some(i + 1));
        }
        s.add(360_000 * 10_000, 90_000, None, None);
        assert!(s.buckets.len() <= MAX_BUCKETS && s.buckets.len() >= MIN_BUCKETS / 2, "{}", s.buckets.len());
        let with_failure: Vec<_> = s.buckets().filter(|(_, b)| b.failed != 0).collect();
        assert_eq!(with_failure.len(), 1);
        assert_eq!(with_failure[0].1.failed_classes().collect::<Vec<_>>(), vec![ErrorClass::Readonly]);
        let hour_s = with_failure[0].0 as f64 / 1e6;
        assert!((hour_s - 1800.0).abs() < 3.0, "{hour_s}");
        assert_eq!(s.buckets().map(|(_, b)| b.max_ok_us).max(), Some(90_000));
        assert_eq!(s.buckets().filter(|(_, b)| b.has_ok()).map(|(_, b)| b.min_ok_us).min(), Some(100));
        s.mark_lost(&[(200_001, 200_001)]);
        let lost: Vec<_> = s.lost().collect();
        assert_eq!(lost.len(), 1);
        assert!((lost[0].0 as f64 / 1e6 - 2000.0).abs() < 3.0, "{:?}", lost);
    }
}
