//! The accumulators of one stream (writes or reads) of one shard: counts, error classes, HDR
//! histograms of latency and lateness (also by phase), and the outage detector.

use super::histogram::{new_histogram, percentiles_ms, record, Percentiles};
use super::outage::{OutageDetector, Window};
use super::phases::Phase;
use super::reorder::Probe;
use crate::sample::ErrorClass;
use hdrhistogram::Histogram;
use std::collections::BTreeMap;

pub(crate) struct StreamAcc {
    pub(crate) probes: u64,
    pub(crate) ok: u64,
    pub(crate) late: u64,
    errors: [u64; ErrorClass::ALL.len()],
    pub(crate) latency: Histogram<u64>,
    pub(crate) lateness: Histogram<u64>,
    /// Before, during, after the trigger.
    pub(crate) phases: [Histogram<u64>; 3],
    pub(crate) outages: OutageDetector,
    /// Whether the outage open now counts as the trigger's (see `phases`).
    pub(crate) open_outage_counts: bool,
}

impl StreamAcc {
    pub(crate) fn new() -> Self {
        Self {
            probes: 0,
            ok: 0,
            late: 0,
            errors: [0; ErrorClass::ALL.len()],
            latency: new_histogram(),
            lateness: new_histogram(),
            phases: [new_histogram(), new_histogram(), new_histogram()],
            outages: OutageDetector::default(),
            open_outage_counts: false,
        }
    }

    /// Counts a probe (its phase is recorded separately, once known).
    pub(crate) fn count(&mut self, p: &Probe, late_threshold_us: u64) {
        self.probes += 1;
        let sent_late_by = p.start_us.saturating_sub(p.scheduled_us);
        record(&mut self.lateness, sent_late_by);
        if sent_late_by > late_threshold_us {
            self.late += 1;
        }
        match p.error {
            None => {
                self.ok += 1;
                record(&mut self.latency, p.latency_us);
            }
            Some(class) => self.errors[class as usize] += 1,
        }
    }

    pub(crate) fn record_phase(&mut self, phase: Phase, latency_us: u64) {
        let i = match phase {
            Phase::Before => 0,
            Phase::During => 1,
            Phase::After => 2,
        };
        record(&mut self.phases[i], latency_us);
    }

    /// The figures a closed trial keeps; the histograms go to the caller (merged per target).
    pub(crate) fn close(self, with_phases: bool) -> (StreamFigures, StreamHistos) {
        let figures = StreamFigures {
            probes: self.probes,
            ok: self.ok,
            late: self.late,
            errors: ErrorClass::ALL
                .iter()
                .zip(self.errors)
                .filter(|(_, n)| *n > 0)
                .map(|(c, n)| (c.as_str().to_string(), n))
                .collect(),
            latency: percentiles_ms(&self.latency),
            lateness: percentiles_ms(&self.lateness),
            phases: with_phases.then(|| self.phases.each_ref().map(percentiles_ms)),
            windows: self.outages.finish(),
        };
        (figures, StreamHistos { latency: self.latency, lateness: self.lateness, phases: self.phases })
    }
}

pub(crate) struct StreamHistos {
    pub(crate) latency: Histogram<u64>,
    pub(crate) lateness: Histogram<u64>,
    pub(crate) phases: [Histogram<u64>; 3],
}

impl StreamHistos {
    pub(crate) fn empty() -> Self {
        Self {
            latency: new_histogram(),
            lateness: new_histogram(),
            phases: [new_histogram(), new_histogram(), new_histogram()],
        }
    }

    pub(crate) fn add(&mut self, o: &StreamHistos) {
        // Auto-resizing histograms of the same precision always add.
        let _ = self.latency.add(&o.latency);
        let _ = self.lateness.add(&o.lateness);
        for (a, b) in self.phases.iter_mut().zip(&o.phases) {
            let _ = a.add(b);
        }
    }
}

/// What is left of a stream once its trial closed.
#[derive(Clone, Debug, Default)]
pub(crate) struct StreamFigures {
    pub(crate) probes: u64,
    pub(crate) ok: u64,
    pub(crate) late: u64,
    pub(crate) errors: BTreeMap<String, u64>,
    pub(crate) latency: Percentiles,
    pub(crate) lateness: Percentiles,
    pub(crate) phases: Option<[Percentiles; 3]>,
    pub(crate) windows: Vec<Window>,
}
