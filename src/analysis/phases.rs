//! Before, during and after the trigger, decided as probes stream past.
//!
//! "During" runs from the trigger's start until it finished and the last outage it caused had
//! closed. Which outage is the last is known only later, so a successful probe after the
//! trigger finished, while every stream is up, waits (as two numbers) until either an outage
//! opens — it was during — or [`QUIET_US`] pass with none — it was after. An outage that opens
//! later than that after the deployment recovered is reported as its own outage but is not the
//! trigger's: it does not stretch "during". That wait is the only state, bounded by
//! [`MAX_WAITING`] probes.

use std::collections::VecDeque;

/// How long the deployment must stay up after the trigger before the "after" phase begins.
pub(crate) const QUIET_US: u64 = 60_000_000;
/// At most this many probes wait for their phase (16 bytes each); beyond, the oldest are
/// counted as after (only at rates above ~8 700 probes/s over 60 s).
pub(crate) const MAX_WAITING: usize = 1 << 19;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Phase {
    Before,
    During,
    After,
}

/// A successful probe whose phase is not known yet.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Waiting {
    pub(crate) scheduled_us: u64,
    pub(crate) latency_us: u64,
    /// Which accumulator it goes to once decided (shard × stream).
    pub(crate) slot: u32,
}

#[derive(Debug)]
pub(crate) struct PhaseClock {
    trigger_start: Option<u64>,
    trigger_end: Option<u64>,
    timeout_us: u64,
    /// The latest end of a closed outage that counts as the trigger's.
    outage_end: u64,
    /// Outages open now that count as the trigger's.
    open_outages: usize,
    waiting: VecDeque<Waiting>,
    decided: Vec<(Waiting, Phase)>,
}

impl PhaseClock {
    pub(crate) fn new(timeout_us: u64) -> Self {
        Self {
            trigger_start: None,
            trigger_end: None,
            timeout_us,
            outage_end: 0,
            open_outages: 0,
            waiting: VecDeque::new(),
            decided: Vec::new(),
        }
    }

    pub(crate) fn trigger_started(&mut self, at_us: u64) {
        self.trigger_start.get_or_insert(at_us);
    }

    pub(crate) fn trigger_ended(&mut self, at_us: u64) {
        self.trigger_end.get_or_insert(at_us);
    }

    pub(crate) fn has_trigger(&self) -> bool {
        self.trigger_start.is_some()
    }

    /// Where "during" ends as far as is known: the trigger's end, or the end of the last outage
    /// that closed no earlier than one timeout before the trigger started.
    fn boundary(&self) -> Option<u64> {
        let (start, end) = (self.trigger_start?, self.trigger_end?);
        let outage = if self.outage_end + self.timeout_us >= start { self.outage_end } else { 0 };
        Some(end.max(outage))
    }

    /// An outage opened at `start_us`: returns whether it counts as the trigger's.
    pub(crate) fn outage_opened(&mut self, start_us: u64) -> bool {
        let counts = self.boundary().is_none_or(|b| start_us <= b + QUIET_US);
        if counts {
            self.open_outages += 1;
            // Everything waiting was before this outage's start, hence during.
            self.decide_all(Phase::During);
        }
        counts
    }

    /// An outage that counted as the trigger's closed at `end_us`.
    pub(crate) fn outage_closed(&mut self, end_us: u64) {
        self.open_outages = self.open_outages.saturating_sub(1);
        self.outage_end = self.outage_end.max(end_us);
    }

    /// The phase of a successful probe due at `scheduled_us`, or None while it must wait (it is
    /// then kept and comes back through [`Self::take_decided`]). Probes arrive in due order.
    pub(crate) fn classify(&mut self, w: Waiting) -> Option<Phase> {
        let t = w.scheduled_us;
        let start = self.trigger_start?;
        if t < start {
            return Some(Phase::Before);
        }
        let Some(boundary) = self.boundary().filter(|_| self.open_outages == 0) else {
            return Some(Phase::During);
        };
        if t < boundary {
            return Some(Phase::During);
        }
        if t < boundary + QUIET_US {
            if self.waiting.len() >= MAX_WAITING {
                let oldest = self.waiting.pop_front().expect("not empty");
                self.decided.push((oldest, Phase::After));
            }
            self.waiting.push_back(w);
            return None;
        }
        self.decide_all(Phase::After);
        Some(Phase::After)
    }

    /// The trial is over: whatever still waits was after.
    pub(crate) fn finish(&mut self) {
        self.decide_all(Phase::After);
    }

    /// Probes whose phase was decided since the last call.
    pub(crate) fn take_decided(&mut self) -> Vec<(Waiting, Phase)> {
        std::mem::take(&mut self.decided)
    }

    fn decide_all(&mut self, phase: Phase) {
        self.decided.extend(self.waiting.drain(..).map(|w| (w, phase)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probe(ms: u64) -> Waiting {
        Waiting { scheduled_us: ms * 1000, latency_us: 1, slot: 0 }
    }

    #[test]
    fn a_late_second_outage_pulls_the_quiet_probes_into_during() {
        let mut c = PhaseClock::new(250_000);
        assert_eq!(c.classify(probe(5)), None, "no trigger: no phases");
        c.trigger_started(10_000);
        assert_eq!(c.classify(probe(5)), Some(Phase::Before));
        assert_eq!(c.classify(probe(12)), Some(Phase::During), "trigger still running");
        c.trigger_ended(20_000);
        assert!(c.outage_opened(15_000));
        assert_eq!(c.classify(probe(30)), Some(Phase::During), "an outage is open");
        c.outage_closed(40_000);
        assert_eq!(c.classify(probe(41)), None, "up again: waits");
        assert_eq!(c.classify(probe(50)), None);
        // A second outage 10 s later is still the trigger's: the waiting probes were during.
        assert!(c.outage_opened(10_050_000));
        assert_eq!(c.take_decided().iter().map(|(_, p)| *p).collect::<Vec<_>>(), vec![Phase::During; 2]);
        c.outage_closed(10_100_000);
        assert_eq!(c.classify(probe(10_101)), None);
        // A minute of quiet: after, and so is what waited.
        assert_eq!(c.classify(probe(70_101)), Some(Phase::After));
        assert_eq!(c.take_decided(), vec![(probe(10_101), Phase::After)]);
        // An outage that starts long after is not the trigger's.
        assert!(!c.outage_opened(80_000_000));
        assert_eq!(c.classify(probe(80_001)), Some(Phase::After));
    }

    #[test]
    fn an_outage_that_ended_well_before_the_trigger_does_not_count() {
        let mut c = PhaseClock::new(250_000);
        assert!(c.outage_opened(1_000));
        c.outage_closed(2_000);
        c.trigger_started(5_000_000);
        c.trigger_ended(5_001_000);
        assert_eq!(c.classify(probe(5_000)), Some(Phase::During));
        assert_eq!(c.classify(probe(5_002)), None);
        c.finish();
        assert_eq!(c.take_decided(), vec![(probe(5_002), Phase::After)]);
    }
}
