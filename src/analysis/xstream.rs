//! `--probe stream`, one trial: the appends the primary acknowledged, the entries the consumer
//! group read, and the stream as the primary had it after recovery. Kept as sequence-number
//! ranges and a histogram, never per entry.

use super::histogram::{new_histogram, percentiles_ms, record};
use super::summary::StreamProbeSummary;
use crate::sample::{EventKind, Sample, SeqSet, Stream};
use hdrhistogram::Histogram;

pub(crate) struct StreamTrial {
    appended: u64,
    acknowledged: SeqSet,
    consumed: SeqSet,
    duplicates: u64,
    latency: Histogram<u64>,
    /// From the read-back after recovery: the appends present and the entries pending.
    log: Option<(SeqSet, u64)>,
}

impl Default for StreamTrial {
    fn default() -> Self {
        Self {
            appended: 0,
            acknowledged: SeqSet::default(),
            consumed: SeqSet::default(),
            duplicates: 0,
            latency: new_histogram(),
            log: None,
        }
    }
}

impl StreamTrial {
    pub(crate) fn sample(&mut self, s: &Sample) {
        match s.stream {
            Stream::Append => {
                self.appended += 1;
                if s.ok() {
                    self.acknowledged.insert(s.seq);
                }
            }
            Stream::Consume if self.consumed.contains(s.seq) => self.duplicates += 1,
            Stream::Consume => {
                self.consumed.insert(s.seq);
                record(&mut self.latency, s.latency_us);
            }
            _ => {}
        }
    }

    pub(crate) fn event(&mut self, kind: &EventKind) {
        if let EventKind::StreamLog { present, pending, .. } = kind {
            self.log = Some((SeqSet::from_ranges(present.clone()), *pending));
        }
    }

    pub(crate) fn summary(&self) -> StreamProbeSummary {
        let (lost, never_read, pending) = match &self.log {
            Some((present, pending)) => {
                let (lost, never_read) =
                    (self.acknowledged.count_not_in(present), present.count_not_in(&self.consumed));
                (Some(lost), Some(never_read), Some(*pending))
            }
            None => (None, None, None),
        };
        StreamProbeSummary {
            appended: self.appended,
            acknowledged: self.acknowledged.len(),
            lost,
            consumed: self.consumed.len(),
            duplicates: self.duplicates,
            never_read,
            pending,
            latency_ms: percentiles_ms(&self.latency),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sample::Outcome;

    fn sample(stream: Stream, seq: u64, ok: bool) -> Sample {
        Sample {
            trial: 0,
            stream,
            seq,
            scheduled_us: seq * 10_000,
            start_us: seq * 10_000,
            end_us: seq * 10_000 + 500,
            latency_us: 500,
            outcome: if ok { Outcome::Ok } else { Outcome::Failed },
            error_class: None,
            error: None,
            server: None,
            value: None,
            shard: None,
            client: None,
        }
    }

    #[test]
    fn lost_appends_and_entries_never_read_or_read_twice_are_counted_against_the_read_back() {
        let mut t = StreamTrial::default();
        for seq in 1..=100 {
            t.sample(&sample(Stream::Append, seq, !(50..55).contains(&seq)));
        }
        for seq in (1..=60).chain([10, 11]) {
            t.sample(&sample(Stream::Consume, seq, true));
        }
        assert_eq!((t.summary().lost, t.summary().acknowledged), (None, 95), "unknown until read back");
        // 40..=49 acknowledged and gone; 52 failed yet present (a ghost); 61..=100 never read.
        let present: Vec<u64> = (1..40).chain([52]).chain(55..=100).collect();
        let kind = EventKind::StreamLog {
            server: "p".into(),
            present: crate::sample::to_ranges(&present),
            pending: 3,
            client: None,
        };
        t.event(&kind);
        let s = t.summary();
        assert_eq!((s.lost, s.consumed, s.duplicates, s.pending), (Some(10), 60, 2, Some(3)));
        assert_eq!(s.never_read, Some(40), "55..=100 less 55..=60 read, and none of 40..=49");
    }
}
