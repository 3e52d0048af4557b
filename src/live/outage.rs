//! The current outage of one stream, as probes complete (out of due order, unlike the
//! analysis, which waits for stragglers): it opens at the due time of a failed probe due after
//! the last answered one, grows with each failed probe's completion, and ends at the
//! completion of a probe answered that was due after it opened — the analysis's window, seen
//! live. A failure due before the last answer is a straggler of the past: it opens nothing.

#[derive(Default, Debug)]
pub(super) struct LiveOutage {
    /// Due time of the first failed probe of the open outage.
    open_since: Option<u64>,
    /// The latest completion of a failed probe of the open outage.
    latest_end: u64,
    /// Due time of the latest answered probe.
    last_ok_due: Option<u64>,
}

/// What a probe changed.
#[derive(Debug, PartialEq)]
pub(super) enum Change {
    None,
    /// An outage began; it lasts this long so far (µs).
    Opened(u64),
    /// The open outage has lasted this long so far (µs).
    Grew(u64),
    /// The outage ended after this long (µs).
    Closed(u64),
}

impl LiveOutage {
    pub(super) fn feed(&mut self, due_us: u64, end_us: u64, ok: bool) -> Change {
        match (self.open_since, ok) {
            (Some(since), true) if due_us > since => {
                self.open_since = None;
                self.last_ok_due = self.last_ok_due.max(Some(due_us));
                Change::Closed(end_us.saturating_sub(since))
            }
            (_, true) => {
                self.last_ok_due = self.last_ok_due.max(Some(due_us));
                Change::None
            }
            (Some(since), false) => {
                self.latest_end = self.latest_end.max(end_us);
                Change::Grew(self.latest_end.saturating_sub(since))
            }
            (None, false) if self.last_ok_due.is_some_and(|ok| due_us < ok) => Change::None,
            (None, false) => {
                self.open_since = Some(due_us);
                self.latest_end = end_us;
                Change::Opened(end_us.saturating_sub(due_us))
            }
        }
    }

    /// The trial ended with the outage still open: its length so far, and it is over (the
    /// next trial's probes start afresh).
    pub(super) fn end_trial(&mut self) -> Option<u64> {
        let since = self.open_since.take()?;
        Some(self.latest_end.saturating_sub(since))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_grows_and_closes_like_the_analysis_window() {
        let mut o = LiveOutage::default();
        assert_eq!(o.feed(0, 1_000, true), Change::None);
        assert_eq!(o.feed(10_000, 11_000, false), Change::Opened(1_000));
        assert_eq!(o.feed(20_000, 270_000, false), Change::Grew(260_000));
        // An answer due before the outage began, completing late: not a recovery.
        assert_eq!(o.feed(5_000, 280_000, true), Change::None);
        assert_eq!(o.feed(30_000, 301_000, true), Change::Closed(291_000));
        // A straggler due before that answer reports after it: no new outage.
        assert_eq!(o.feed(25_000, 302_000, false), Change::None);
        assert_eq!(o.feed(40_000, 41_000, false), Change::Opened(1_000));
        assert_eq!(o.end_trial(), Some(1_000));
        assert_eq!(o.end_trial(), None);
    }
}
