//! Did every acknowledged write survive, did unacknowledged ones appear, did a read go back in
//! time? Kept as compact state while the probes stream past (sequence numbers as ranges), then
//! checked against the write log read from the primary after recovery.

use crate::sample::SeqSet;
use serde::{Deserialize, Serialize};
use std::cmp::Reverse;
use std::collections::BinaryHeap;

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct Integrity {
    /// False when the write log could not be read (interrupted run, target still down).
    pub checked: bool,
    pub acked_writes: u64,
    pub surviving_acked_writes: u64,
    pub lost_acked_writes: u64,
    /// Writes whose client saw a failure or timeout, yet which the server applied.
    pub ghost_writes: u64,
    pub unacked_writes: u64,
    /// Reads that returned a value older than a write acknowledged before the read was sent.
    pub stale_reads: u64,
    pub lost_seqs_sample: Vec<u64>,
    pub log_server: Option<String>,
    /// Lost writes that the deposed old primary acknowledged after the new primary was
    /// announced: counted among `lost_acked_writes`, not beside them.
    #[serde(default)]
    pub split_brain_writes: u64,
    /// When the deposed old primary acknowledged writes after the new primary was announced:
    /// the first and the last such acknowledgement, ms on the run clock (absent when none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub split_brain_first_ms: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub split_brain_last_ms: Option<f64>,
    /// The deposed old primary (each shard's, comma-separated).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub split_brain_server: Option<String>,
    /// The client acknowledged writes while an old primary was isolated, without saying which
    /// server answered (an adapter): how many of them were split-brain is unknown, not 0.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub split_brain_unknown: bool,
    /// Memcached: known keys stored before the trigger, and how many survived byte-identical.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seeded_keys: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub surviving_seeded_keys: Option<u64>,
}

impl Integrity {
    /// Adds another shard's figures (the whole target is checked only if every shard was).
    pub fn add(&mut self, o: &Integrity) {
        self.checked &= o.checked;
        self.acked_writes += o.acked_writes;
        self.surviving_acked_writes += o.surviving_acked_writes;
        self.lost_acked_writes += o.lost_acked_writes;
        self.ghost_writes += o.ghost_writes;
        self.unacked_writes += o.unacked_writes;
        self.stale_reads += o.stale_reads;
        self.split_brain_writes += o.split_brain_writes;
        self.split_brain_unknown |= o.split_brain_unknown;
        self.split_brain_first_ms = combine(self.split_brain_first_ms, o.split_brain_first_ms, f64::min);
        self.split_brain_last_ms = combine(self.split_brain_last_ms, o.split_brain_last_ms, f64::max);
        let sum = |a: Option<u64>, b: Option<u64>| match (a, b) {
            (None, None) => None,
            (a, b) => Some(a.unwrap_or(0) + b.unwrap_or(0)),
        };
        self.seeded_keys = sum(self.seeded_keys, o.seeded_keys);
        self.surviving_seeded_keys = sum(self.surviving_seeded_keys, o.surviving_seeded_keys);
        let room = 20usize.saturating_sub(self.lost_seqs_sample.len());
        self.lost_seqs_sample.extend(o.lost_seqs_sample.iter().take(room));
        for (mine, theirs) in
            [(&mut self.log_server, &o.log_server), (&mut self.split_brain_server, &o.split_brain_server)]
        {
            if let Some(s) = theirs {
                *mine = Some(match mine.take() {
                    Some(m) => format!("{m}, {s}"),
                    None => s.clone(),
                });
            }
        }
    }
}

/// Two optional times made one by `pick` (the earlier, the later); either alone when the other
/// is absent.
fn combine(a: Option<f64>, b: Option<f64>, pick: fn(f64, f64) -> f64) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(pick(a, b)),
        (a, b) => a.or(b),
    }
}

pub(crate) fn count(ranges: &[(u64, u64)]) -> u64 {
    ranges.iter().map(|(lo, hi)| hi - lo + 1).sum()
}

/// `a ∩ b`, both sorted and disjoint.
pub(crate) fn intersect(a: &[(u64, u64)], b: &[(u64, u64)]) -> Vec<(u64, u64)> {
    let (mut i, mut j, mut out) = (0, 0, Vec::new());
    while i < a.len() && j < b.len() {
        let (lo, hi) = (a[i].0.max(b[j].0), a[i].1.min(b[j].1));
        if lo <= hi {
            out.push((lo, hi));
        }
        if a[i].1 < b[j].1 {
            i += 1;
        } else {
            j += 1;
        }
    }
    out
}

/// `a \ b`, both sorted and disjoint.
pub(crate) fn subtract(a: &[(u64, u64)], b: &[(u64, u64)]) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    let mut j = 0;
    for &(lo, hi) in a {
        while j < b.len() && b[j].1 < lo {
            j += 1;
        }
        // `next`: the lowest number of [lo, hi] not yet known to be covered by `b`.
        let (mut next, mut k) = (Some(lo), j);
        while let Some(n) = next.filter(|n| *n <= hi) {
            if k >= b.len() || b[k].0 > hi {
                out.push((n, hi));
                break;
            }
            if b[k].0 > n {
                out.push((n, b[k].0 - 1));
            }
            next = b[k].1.checked_add(1).map(|m| m.max(n));
            k += 1;
        }
    }
    out
}

/// Whether a read was stale needs the writes acknowledged before it was sent, so a read waits
/// (at most the reorder horizon) until every write due before it has been seen. Acknowledgements
/// older than every read still to come fold into one number: memory is what is in flight.
#[derive(Debug, Default)]
pub(crate) struct IntegrityState {
    acked: SeqSet,
    failed: SeqSet,
    /// Acknowledgements not folded yet: (completion, seq), earliest first.
    acks: BinaryHeap<Reverse<(u64, u64)>>,
    /// The highest seq of every folded acknowledgement.
    floor_seq: u64,
    /// Successful reads waiting for their verdict, earliest sent first: (sent at, value seen).
    /// By send time, not due time: a read sent late must not fold acknowledgements that a read
    /// due after it, but sent before it, had not seen.
    reads: BinaryHeap<Reverse<(u64, u64)>>,
    stale_reads: u64,
    /// Writes the deposed old primary acknowledged after the new primary was announced, and
    /// the first and last such acknowledgement (µs).
    isolated_acks: SeqSet,
    isolated_span_us: Option<(u64, u64)>,
    /// A write was acknowledged while an old primary was isolated, by a server not named.
    unattributed_while_isolated: bool,
}

impl IntegrityState {
    pub(crate) fn write(&mut self, seq: u64, end_us: u64, ok: bool) {
        if ok {
            self.acked.insert(seq);
            self.acks.push(Reverse((end_us, seq)));
        } else {
            self.failed.insert(seq);
        }
    }

    /// An acknowledged write (also given to `write`) came from the deposed old primary.
    pub(crate) fn isolated_ack(&mut self, seq: u64, end_us: u64) {
        self.isolated_acks.insert(seq);
        let (first, last) = self.isolated_span_us.unwrap_or((end_us, end_us));
        self.isolated_span_us = Some((first.min(end_us), last.max(end_us)));
    }

    /// An acknowledged write whose server is not known came while an old primary was isolated.
    pub(crate) fn unattributed_ack(&mut self) {
        self.unattributed_while_isolated = true;
    }

    pub(crate) fn read(&mut self, start_us: u64, value: u64) {
        self.reads.push(Reverse((start_us, value)));
    }

    /// Every probe due up to `frontier_us` has been seen: judge the reads sent by then, and fold
    /// acknowledgements that no later read (due after `frontier_us - horizon_us`) can precede.
    pub(crate) fn advance(&mut self, frontier_us: u64, horizon_us: u64) {
        while let Some(&Reverse((start, value))) = self.reads.peek() {
            if start > frontier_us {
                break;
            }
            self.reads.pop();
            self.judge(start, value);
        }
        self.fold_before(frontier_us.saturating_sub(horizon_us));
    }

    /// The trial is over: judge what is left.
    pub(crate) fn finish(&mut self) {
        while let Some(Reverse((start, value))) = self.reads.pop() {
            self.judge(start, value);
        }
    }

    fn judge(&mut self, start_us: u64, value: u64) {
        self.fold_before(start_us);
        if value < self.floor_seq {
            self.stale_reads += 1;
        }
    }

    fn fold_before(&mut self, t_us: u64) {
        while let Some(&Reverse((end, seq))) = self.acks.peek() {
            if end >= t_us {
                break;
            }
            self.floor_seq = self.floor_seq.max(seq);
            self.acks.pop();
        }
    }

    /// Acknowledged writes missing from the write log.
    pub(crate) fn lost(&self, present: &[(u64, u64)]) -> Vec<(u64, u64)> {
        subtract(self.acked.ranges(), present)
    }

    /// The figures against the write log read back after recovery, if it could be read.
    pub(crate) fn result(&self, log: Option<(&str, &[(u64, u64)])>) -> Integrity {
        let mut out = Integrity {
            stale_reads: self.stale_reads,
            acked_writes: self.acked.len(),
            split_brain_unknown: self.unattributed_while_isolated,
            ..Default::default()
        };
        if let Some((first, last)) = self.isolated_span_us {
            let ms = crate::clock::us_to_ms;
            (out.split_brain_first_ms, out.split_brain_last_ms) = (Some(ms(first)), Some(ms(last)));
        }
        let Some((server, present)) = log else {
            return out;
        };
        let lost = self.lost(present);
        out.checked = true;
        out.log_server = Some(server.to_string());
        out.lost_acked_writes = count(&lost);
        out.split_brain_writes = count(&intersect(self.isolated_acks.ranges(), &lost));
        out.surviving_acked_writes = out.acked_writes - out.lost_acked_writes;
        out.ghost_writes = count(&intersect(self.failed.ranges(), present));
        out.unacked_writes = self.failed.len();
        out.lost_seqs_sample = lost.iter().flat_map(|&(lo, hi)| lo..=hi).take(20).collect();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sample::to_ranges;

    fn state(writes: &[(u64, u64, bool)]) -> IntegrityState {
        let mut st = IntegrityState::default();
        for &(seq, end, ok) in writes {
            st.write(seq, end, ok);
        }
        st
    }

    #[test]
    fn counts_lost_and_ghost_writes() {
        let writes: Vec<_> = (1..=10).map(|i| (i, i * 10, i != 9)).collect();
        // 4 and 5 were acknowledged but are gone; 9 failed for the client but was applied.
        let present = to_ranges(&[1, 2, 3, 6, 7, 8, 9, 10]);
        let r = state(&writes).result(Some(("p", &present)));
        assert_eq!(r.acked_writes, 9);
        assert_eq!(r.lost_acked_writes, 2);
        assert_eq!(r.surviving_acked_writes, 7);
        assert_eq!(r.ghost_writes, 1);
        assert_eq!(r.unacked_writes, 1);
        assert_eq!(r.lost_seqs_sample, vec![4, 5]);
    }

    #[test]
    fn out_of_order_completions_and_an_empty_log() {
        // Probes complete out of order; the set is the same.
        let r = state(&[(3, 30, true), (1, 31, true), (2, 32, true), (5, 33, true), (4, 34, false)])
            .result(Some(("p", &[])));
        assert_eq!((r.acked_writes, r.lost_acked_writes, r.unacked_writes, r.ghost_writes), (4, 4, 1, 0));
        assert_eq!(r.lost_seqs_sample, vec![1, 2, 3, 5]);
        // Without a log nothing is claimed lost.
        let r = state(&[(1, 1, true)]).result(None);
        assert!(!r.checked && r.lost_acked_writes == 0 && r.acked_writes == 1);
    }

    #[test]
    fn range_algebra() {
        let a = [(1, 10), (20, 30)];
        let b = [(0, 2), (5, 5), (9, 21), (30, 40)];
        assert_eq!(subtract(&a, &b), vec![(3, 4), (6, 8), (22, 29)]);
        assert_eq!(intersect(&a, &b), vec![(1, 2), (5, 5), (9, 10), (20, 21), (30, 30)]);
        assert_eq!(subtract(&a, &[]), a.to_vec());
        assert_eq!(subtract(&[(5, 9)], &[(0, u64::MAX)]), vec![]);
        let mut s = SeqSet::default();
        for n in [5, 1, 3, 2, 4, 9, 7, 8, 6] {
            s.insert(n);
        }
        assert_eq!(s.ranges(), &[(1, 9)]);
    }

    #[test]
    fn a_read_sent_late_does_not_make_an_earlier_sent_one_stale() {
        // Write 2 acknowledged at 12 ms. The read due at 10 ms was sent late, at 13 ms, and saw 2;
        // the read due at 11 ms was sent at 11.5 ms and saw 1: both fine.
        let mut st = state(&[(1, 9_000, true), (2, 12_000, true)]);
        st.read(13_000, 2);
        st.read(11_500, 1);
        st.advance(14_000, 5_000);
        st.finish();
        assert_eq!(st.result(None).stale_reads, 0);
    }

    #[test]
    fn stale_read_is_older_than_an_earlier_ack() {
        // write 1 acked at 11 ms, write 2 acked at 21 ms
        let mut st = state(&[(1, 11_000, true), (2, 21_000, true)]);
        // read at 30 ms saw 1 although 2 was acked at 21 ms; read at 20 ms was sent before that ack.
        for (start_ms, value) in [(15, 1), (20, 1), (25, 2), (30, 1)] {
            st.read(start_ms * 1000, value);
        }
        st.advance(22_000, 5_000);
        assert_eq!(st.stale_reads, 0, "the read at 30 ms is not judged before its time");
        st.finish();
        assert_eq!(st.result(None).stale_reads, 1);
    }
}
