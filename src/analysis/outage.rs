//! Outage windows: a maximal run of consecutive failed probes of one stream, ordered by
//! scheduled time. A window starts at the scheduled time of its first failed probe and ends at the
//! completion of the first successful probe after it; its uncertainty is one probe interval
//! (the outage may have begun up to one interval before the first failed probe was scheduled).

use crate::sample::{ErrorClass, Sample};
use std::collections::BTreeMap;

#[derive(Clone, Debug, PartialEq)]
pub struct Window {
    pub start_us: u64,
    /// Completion of the first successful probe after the window, or the last failed probe's
    /// completion when the window never closed.
    pub end_us: u64,
    pub recovered: bool,
    pub failed_probes: u64,
    pub errors: BTreeMap<ErrorClass, u64>,
}

impl Window {
    pub(crate) fn duration_us(&self) -> u64 {
        self.end_us.saturating_sub(self.start_us)
    }
}

/// What a probe did to the window state of its stream.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Edge {
    Opened { start_us: u64 },
    Closed { start_us: u64, end_us: u64 },
}

/// The run-length outage detector of one stream, fed one probe at a time in scheduled order:
/// it holds the open window and the closed ones (few), never the probes.
#[derive(Default, Debug)]
pub(crate) struct OutageDetector {
    open: Option<Window>,
    closed: Vec<Window>,
}

impl OutageDetector {
    pub(crate) fn feed(&mut self, scheduled_us: u64, end_us: u64, ok: bool, class: ErrorClass) -> Option<Edge> {
        match (&mut self.open, ok) {
            (None, true) => None,
            (None, false) => {
                let mut w = Window {
                    start_us: scheduled_us,
                    end_us,
                    recovered: false,
                    failed_probes: 0,
                    errors: BTreeMap::new(),
                };
                count_failure(&mut w, end_us, class);
                self.open = Some(w);
                Some(Edge::Opened { start_us: scheduled_us })
            }
            (Some(w), false) => {
                count_failure(w, end_us, class);
                None
            }
            (Some(w), true) => {
                w.end_us = end_us.max(w.start_us);
                w.recovered = true;
                let edge = Edge::Closed { start_us: w.start_us, end_us: w.end_us };
                self.closed.extend(self.open.take());
                Some(edge)
            }
        }
    }

    /// Every window, the last one open (unrecovered) if the stream never came back.
    pub fn finish(mut self) -> Vec<Window> {
        self.closed.extend(self.open.take());
        self.closed
    }
}

/// `samples` must be one stream of one trial, sorted by `scheduled_us`.
pub fn find_windows(samples: &[Sample]) -> Vec<Window> {
    let mut d = OutageDetector::default();
    for s in samples {
        d.feed(s.scheduled_us, s.end_us, s.ok(), s.error_class.unwrap_or(ErrorClass::Other));
    }
    d.finish()
}

/// Merges windows of several shards into "some shard was down" windows: overlapping windows
/// become one, which is unrecovered if any part of it is.
pub(crate) fn union(mut windows: Vec<Window>) -> Vec<Window> {
    windows.sort_by_key(|w| w.start_us);
    let mut out: Vec<Window> = Vec::new();
    for w in windows {
        match out.last_mut() {
            Some(last) if w.start_us <= last.end_us => {
                last.recovered &= w.recovered;
                last.end_us = last.end_us.max(w.end_us);
                last.failed_probes += w.failed_probes;
                for (k, v) in w.errors {
                    *last.errors.entry(k).or_default() += v;
                }
            }
            _ => out.push(w),
        }
    }
    out
}

fn count_failure(w: &mut Window, end_us: u64, class: ErrorClass) {
    w.failed_probes += 1;
    w.end_us = w.end_us.max(end_us);
    *w.errors.entry(class).or_default() += 1;
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::sample::{Outcome, Stream};

    pub fn sample(seq: u64, scheduled_ms: u64, latency_ms: u64, ok: bool) -> Sample {
        let scheduled_us = scheduled_ms * 1000;
        Sample {
            trial: 0,
            stream: Stream::Write,
            seq,
            scheduled_us,
            start_us: scheduled_us,
            end_us: scheduled_us + latency_ms * 1000,
            latency_us: latency_ms * 1000,
            outcome: if ok { Outcome::Ok } else { Outcome::Failed },
            error_class: (!ok).then_some(ErrorClass::Timeout),
            error: None,
            server: None,
            value: None,
            shard: None,
            client: None,
        }
    }

    #[test]
    fn one_window_from_first_failure_to_first_success_completion() {
        let s: Vec<_> = (0..10).map(|i| sample(i, i * 10, 1, !(3..6).contains(&i))).collect();
        let w = find_windows(&s);
        assert_eq!(w.len(), 1);
        assert_eq!(w[0].start_us, 30_000);
        assert_eq!(w[0].end_us, 61_000);
        assert!(w[0].recovered);
        assert_eq!(w[0].failed_probes, 3);
        assert_eq!(w[0].errors[&ErrorClass::Timeout], 3);
    }

    #[test]
    fn a_slow_success_ends_the_window_at_its_completion() {
        // The probe at 40 ms succeeded but only answered at 300 ms: the outage lasted until then.
        let s = vec![sample(0, 0, 1, true), sample(1, 30, 250, false), sample(2, 40, 260, true)];
        let w = find_windows(&s);
        assert_eq!(w[0].end_us, 300_000);
    }

    #[test]
    fn unrecovered_window_is_reported_open() {
        let s: Vec<_> = (0..5).map(|i| sample(i, i * 10, 1, i < 2)).collect();
        let w = find_windows(&s);
        assert_eq!(w.len(), 1);
        assert!(!w[0].recovered);
        assert_eq!(w[0].end_us, 41_000);
    }

    #[test]
    fn union_of_shards_merges_overlaps_and_keeps_unrecovered() {
        let a: Vec<_> = (0..10).map(|i| sample(i, i * 10, 1, !(2..5).contains(&i))).collect();
        let b: Vec<_> = (0..10).map(|i| sample(i, i * 10 + 5, 1, !(3..9).contains(&i))).collect();
        let c: Vec<_> = (0..3).map(|i| sample(i, 500 + i * 10, 1, i == 0)).collect();
        let mut all = find_windows(&a);
        all.extend(find_windows(&b));
        all.extend(find_windows(&c));
        let u = union(all);
        assert_eq!(u.len(), 2);
        assert_eq!((u[0].start_us, u[0].end_us), (20_000, 96_000));
        assert_eq!(u[0].failed_probes, 9);
        assert!(u[0].recovered);
        assert!(!u[1].recovered);
    }

    #[test]
    fn separate_failures_are_separate_windows() {
        let s: Vec<_> = (0..7).map(|i| sample(i, i * 10, 1, i % 3 != 1)).collect();
        assert_eq!(find_windows(&s).len(), 2);
    }
}
