//! Probes complete out of order (a timed-out probe reports after faster ones due later); the
//! analysis wants them in due order. A min-heap holds what is in flight and releases a probe once
//! probes due `horizon` later have been seen: memory is one horizon of probes, never the run.

use crate::sample::{ErrorClass, Sample, Stream};
use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;

/// One probe as the analysis keeps it: numbers only (a `Sample` carries strings).
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Probe {
    pub(crate) scheduled_us: u64,
    pub(crate) start_us: u64,
    pub(crate) end_us: u64,
    pub(crate) latency_us: u64,
    pub(crate) seq: u64,
    /// Reads: the sequence number found (0 when the key was absent).
    pub(crate) value: u64,
    /// Index of the shard in its trial.
    pub(crate) shard: u32,
    pub(crate) stream: Stream,
    /// None when the probe succeeded.
    pub(crate) error: Option<ErrorClass>,
    /// Answered by the deposed old primary, which was so since this time (the new primary's
    /// announcement); `error` is then `split-brain`.
    pub(crate) split_brain_since: Option<u64>,
}

impl Probe {
    pub(crate) fn from_sample(s: &Sample, shard: u32) -> Self {
        Self {
            scheduled_us: s.scheduled_us,
            start_us: s.start_us,
            end_us: s.end_us,
            latency_us: s.latency_us,
            seq: s.seq,
            value: s.value.unwrap_or(0),
            shard,
            stream: s.stream,
            error: (!s.ok()).then(|| s.error_class.unwrap_or(ErrorClass::Other)),
            split_brain_since: None,
        }
    }

    /// The probe answered by the deposed old primary, isolated since `since_us`: not up.
    pub(crate) fn answered_by_isolated_primary(mut self, since_us: u64) -> Self {
        self.error = Some(ErrorClass::SplitBrain);
        self.split_brain_since = Some(since_us);
        self
    }

    /// The server answered it (an acknowledged write, even from the deposed old primary).
    pub(crate) fn answered(&self) -> bool {
        self.error.is_none() || self.split_brain_since.is_some()
    }

    pub(crate) fn ok(&self) -> bool {
        self.error.is_none()
    }

    fn key(&self) -> (u64, Stream, u32, u64) {
        (self.scheduled_us, self.stream, self.shard, self.seq)
    }
}

struct ByDue(Probe);

impl PartialEq for ByDue {
    fn eq(&self, other: &Self) -> bool {
        self.0.key() == other.0.key()
    }
}
impl Eq for ByDue {}
impl PartialOrd for ByDue {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for ByDue {
    fn cmp(&self, other: &Self) -> Ordering {
        self.0.key().cmp(&other.0.key())
    }
}

pub(crate) struct Reorder {
    heap: BinaryHeap<Reverse<ByDue>>,
    horizon_us: u64,
    /// The latest due time seen.
    newest_us: u64,
}

impl Reorder {
    pub(crate) fn new(horizon_us: u64) -> Self {
        Self { heap: BinaryHeap::new(), horizon_us, newest_us: 0 }
    }

    pub(crate) fn push(&mut self, p: Probe) {
        self.newest_us = self.newest_us.max(p.scheduled_us);
        self.heap.push(Reverse(ByDue(p)));
    }

    /// The next probe in due order that can no longer be overtaken.
    pub(crate) fn pop_ready(&mut self) -> Option<Probe> {
        let Reverse(ByDue(first)) = self.heap.peek()?;
        if first.scheduled_us.saturating_add(self.horizon_us) > self.newest_us {
            return None;
        }
        self.heap.pop().map(|Reverse(ByDue(p))| p)
    }

    /// Everything left, in due order (the trial is over).
    pub(crate) fn pop_any(&mut self) -> Option<Probe> {
        self.heap.pop().map(|Reverse(ByDue(p))| p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probe(scheduled_ms: u64) -> Probe {
        Probe {
            scheduled_us: scheduled_ms * 1000,
            start_us: 0,
            end_us: 0,
            latency_us: 0,
            seq: scheduled_ms,
            value: 0,
            shard: 0,
            stream: Stream::Write,
            error: None,
            split_brain_since: None,
        }
    }

    #[test]
    fn releases_in_due_order_once_the_horizon_passed() {
        let mut r = Reorder::new(100_000);
        for ms in [0, 30, 10, 20, 60] {
            r.push(probe(ms));
        }
        assert_eq!(r.pop_ready(), None, "nothing is 100 ms old yet");
        r.push(probe(115));
        let ready: Vec<u64> = std::iter::from_fn(|| r.pop_ready()).map(|p| p.seq).collect();
        assert_eq!(ready, vec![0, 10]);
        let rest: Vec<u64> = std::iter::from_fn(|| r.pop_any()).map(|p| p.seq).collect();
        assert_eq!(rest, vec![20, 30, 60, 115]);
    }
}
