//! `--probe pubsub`, one client in one trial: the publishes the server acknowledged against the
//! messages the client's subscriber received. Kept as sequence-number ranges and a histogram,
//! never per message.

use super::histogram::{new_histogram, percentiles_ms, record};
use super::summary::PubSubSummary;
use crate::clock::us_to_ms;
use crate::sample::{Event, EventKind, Sample, SeqSet, Stream};
use hdrhistogram::Histogram;

pub(crate) struct PubSubTrial {
    published: u64,
    acknowledged: SeqSet,
    /// Acknowledged with no subscriber on the publishing server (PUBLISH answered 0).
    unheard: u64,
    delivered: SeqSet,
    duplicates: u64,
    out_of_order: u64,
    highest: u64,
    latency: Histogram<u64>,
    /// A publish's sequence number and when it was due: every other one's due time follows
    /// from the fixed clock.
    anchor: Option<(u64, u64)>,
}

impl Default for PubSubTrial {
    fn default() -> Self {
        Self {
            published: 0,
            acknowledged: SeqSet::default(),
            unheard: 0,
            delivered: SeqSet::default(),
            duplicates: 0,
            out_of_order: 0,
            highest: 0,
            latency: new_histogram(),
            anchor: None,
        }
    }
}

impl PubSubTrial {
    pub(crate) fn sample(&mut self, s: &Sample) {
        match s.stream {
            Stream::Publish => {
                self.published += 1;
                self.anchor.get_or_insert((s.seq, s.scheduled_us));
                if s.ok() {
                    self.acknowledged.insert(s.seq);
                    self.unheard += u64::from(s.value == Some(0));
                }
            }
            Stream::Deliver if self.delivered.contains(s.seq) => self.duplicates += 1,
            Stream::Deliver => {
                self.out_of_order += u64::from(s.seq < self.highest);
                self.highest = self.highest.max(s.seq);
                self.delivered.insert(s.seq);
                record(&mut self.latency, s.latency_us);
            }
            _ => {}
        }
    }

    /// When publish `seq` was due, on the run clock.
    fn due_us(&self, seq: u64, interval_us: u64) -> Option<u64> {
        let (anchor, at) = self.anchor?;
        Some(match seq >= anchor {
            true => at + (seq - anchor) * interval_us,
            false => at.saturating_sub((anchor - seq) * interval_us),
        })
    }

    /// `events`: the trial's, for the client's subscription lost and made again.
    pub(crate) fn summary(&self, client: Option<&str>, interval_us: u64, events: &[Event]) -> PubSubSummary {
        let delivered = self.delivered.ranges();
        // Messages published before the subscriber first subscribed were never its to miss.
        let first = delivered.first().map_or(u64::MAX, |r| r.0);
        let acked_between = |lo: u64, hi: u64| count_in(self.acknowledged.ranges(), lo, hi);
        let mut missed = 0;
        let mut longest = (0u64, 0.0f64);
        for pair in delivered.windows(2) {
            let (after, before) = (pair[0].1 + 1, pair[1].0 - 1);
            let n = acked_between(after, before);
            missed += n;
            let span = self.due_us(before + 1, interval_us).zip(self.due_us(after, interval_us));
            let ms = span.map_or(0.0, |(to, from)| us_to_ms(to.saturating_sub(from)));
            if n > longest.0 {
                longest = (n, ms);
            }
        }
        // A subscriber that received nothing missed everything acknowledged: to the end.
        let missed_at_end = match delivered.last() {
            Some(&(_, last)) => acked_between(last.saturating_add(1), u64::MAX),
            None => self.acknowledged.len(),
        };
        let (lost, regained) = subscription_times(client, events);
        PubSubSummary {
            published: self.published,
            acknowledged: self.acknowledged.len(),
            unheard: self.unheard,
            delivered: self.delivered.len(),
            missed: missed + missed_at_end,
            missed_at_end,
            before_first_delivery: if first == u64::MAX { 0 } else { acked_between(0, first - 1) },
            duplicates: self.duplicates,
            out_of_order: self.out_of_order,
            longest_gap_messages: longest.0,
            longest_gap_ms: longest.1,
            subscriptions_lost: lost.len() as u64,
            longest_without_subscription_ms: longest_without(&lost, &regained),
            resubscribed: lost.last().is_none_or(|l| regained.iter().any(|r| r >= l)) && missed_at_end == 0,
            latency_ms: percentiles_ms(&self.latency),
        }
    }
}

/// How many of `ranges` fall in `lo..=hi`.
fn count_in(ranges: &[(u64, u64)], lo: u64, hi: u64) -> u64 {
    ranges.iter().map(|&(a, b)| if a.max(lo) <= b.min(hi) { b.min(hi) - a.max(lo) + 1 } else { 0 }).sum()
}

/// When the client's subscription was lost, and when it was made (µs), in order.
fn subscription_times(client: Option<&str>, events: &[Event]) -> (Vec<u64>, Vec<u64>) {
    let (mut lost, mut made) = (Vec::new(), Vec::new());
    for e in events {
        if let EventKind::Subscription { client: c, subscribed, .. } = &e.kind {
            if c.as_deref() == client {
                if *subscribed {
                    made.push(e.at_us)
                } else {
                    lost.push(e.at_us)
                }
            }
        }
    }
    (lost, made)
}

/// The longest stretch from a loss to the next subscription; None when it was never lost, or
/// lost and never made again (the summary says so by `resubscribed`).
fn longest_without(lost: &[u64], made: &[u64]) -> Option<f64> {
    lost.iter()
        .filter_map(|&l| made.iter().find(|&&m| m >= l).map(|m| us_to_ms(m - l)))
        .fold(None, |a: Option<f64>, ms| Some(a.map_or(ms, |a| a.max(ms))))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sample::Outcome;

    fn sample(stream: Stream, seq: u64, value: Option<u64>, ok: bool) -> Sample {
        Sample {
            trial: 0,
            stream,
            seq,
            scheduled_us: seq * 10_000,
            start_us: seq * 10_000,
            end_us: seq * 10_000 + 300,
            latency_us: 300,
            outcome: if ok { Outcome::Ok } else { Outcome::Failed },
            error_class: None,
            error: None,
            server: None,
            value,
            shard: None,
            client: None,
        }
    }

    #[test]
    fn missed_duplicated_and_out_of_order_messages_are_counted_from_the_first_delivery() {
        let mut t = PubSubTrial::default();
        for seq in 1..=100 {
            // 40..=49 failed to publish; 50..=59 were acknowledged with no subscriber.
            let ok = !(40..50).contains(&seq);
            t.sample(&sample(Stream::Publish, seq, Some(u64::from(!(50..60).contains(&seq))), ok));
        }
        // Subscribed from 3 on; 30..=59 never arrived; 70 arrived twice, 81 before 80.
        for seq in (3..30).chain(60..80).chain([81, 80]).chain(82..=100).chain([70]) {
            t.sample(&sample(Stream::Deliver, seq, None, true));
        }
        let s = t.summary(None, 10_000, &[]);
        assert_eq!((s.published, s.acknowledged, s.unheard, s.delivered), (100, 90, 10, 68));
        assert_eq!((s.before_first_delivery, s.missed, s.missed_at_end), (2, 20, 0));
        assert_eq!((s.duplicates, s.out_of_order), (1, 1));
        // 30..=59 without 40..=49 (never published): 20 messages, 30 intervals from 30 to 60.
        assert_eq!((s.longest_gap_messages, s.longest_gap_ms), (20, 300.0));
        assert!(s.resubscribed);
    }

    #[test]
    fn a_subscriber_that_never_received_anything_missed_everything() {
        let mut t = PubSubTrial::default();
        for seq in 1..=50 {
            t.sample(&sample(Stream::Publish, seq, Some(0), true));
        }
        let s = t.summary(None, 10_000, &[]);
        assert_eq!((s.missed, s.missed_at_end, s.before_first_delivery, s.delivered), (50, 50, 0, 0));
        assert!(!s.resubscribed);
    }

    #[test]
    fn a_subscriber_that_never_comes_back_misses_every_message_to_the_end() {
        let mut t = PubSubTrial::default();
        for seq in 1..=50 {
            t.sample(&sample(Stream::Publish, seq, Some(1), true));
        }
        for seq in 1..=20 {
            t.sample(&sample(Stream::Deliver, seq, None, true));
        }
        let lost = Event {
            at_us: 205_000,
            trial: 0,
            kind: EventKind::Subscription { client: None, subscribed: false, server: None, error: None },
        };
        let s = t.summary(None, 10_000, &[lost]);
        assert_eq!((s.missed, s.missed_at_end, s.subscriptions_lost), (30, 30, 1));
        assert!(!s.resubscribed);
        assert_eq!(s.longest_without_subscription_ms, None);
    }
}
