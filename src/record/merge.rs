//! `failprobe merge`: several stored runs become one, aligned on wall-clock time. Each source
//! run's trials keep their own numbers of probes and outages (so merged counts are the sums of
//! the parts) and are labelled with the run they came from, so vantage points stay distinguishable.

use super::store::StoredRun;
use crate::error::invalid;
use crate::sample::{Event, EventKind, Record, RunMeta};
use anyhow::Result;
use chrono::{DateTime, FixedOffset};

/// Several stored runs, aligned on the earliest start.
pub struct Merge {
    runs: Vec<StoredRun>,
    /// Each run's offset from the earliest start, µs.
    shifts: Vec<u64>,
    meta: RunMeta,
}

impl Merge {
    pub fn new(runs: Vec<StoredRun>) -> Result<Self> {
        let starts: Vec<DateTime<FixedOffset>> = runs
            .iter()
            .map(|r| {
                DateTime::parse_from_rfc3339(&r.meta.started_at)
                    .map_err(|e| invalid(format!("{}: bad started_at `{}`: {e}", r.dir.display(), r.meta.started_at)))
            })
            .collect::<Result<_>>()?;
        let base = *starts.iter().min().ok_or_else(|| invalid("nothing to merge"))?;
        let shifts = starts.iter().map(|s| (*s - base).num_microseconds().unwrap_or(0).max(0) as u64).collect();
        let meta = crate::secret::scrub_meta(merged_meta(&runs, base));
        Ok(Self { runs, shifts, meta })
    }

    pub fn meta(&self) -> &RunMeta {
        &self.meta
    }

    /// Every record of every run, run by run, shifted and renumbered, into `sink`. Samples are
    /// streamed from disk (read twice: once for the trial numbers, once to pass them on).
    pub fn for_each(&self, mut sink: impl FnMut(Record) -> Result<()>) -> Result<()> {
        let mut next_trial = 0u32;
        for (run, &shift) in self.runs.iter().zip(&self.shifts) {
            let name = run.dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            // First pass: the trials, and when each was first heard of.
            let mut first_at: std::collections::BTreeMap<u32, u64> = Default::default();
            for e in run.events()? {
                let e = e?;
                first_at.entry(e.trial).or_insert(e.at_us);
            }
            for s in run.samples()? {
                first_at.entry(s?.trial).or_insert(0);
            }
            let trials: Vec<u32> = first_at.keys().copied().collect();
            let renumber = |t: u32| next_trial + trials.binary_search(&t).unwrap_or(0) as u32;
            for (&t, &at_us) in &first_at {
                let source = EventKind::Source { name: format!("{name} · {}", run.meta.target) };
                sink(Record::Event(Event { at_us: at_us + shift, trial: renumber(t), kind: source }))?;
            }
            for e in run.events()? {
                let mut e = e?;
                e.at_us += shift;
                e.trial = renumber(e.trial);
                sink(Record::Event(e))?;
            }
            for s in run.samples()? {
                let mut s = s?;
                s.scheduled_us += shift;
                s.start_us += shift;
                s.end_us += shift;
                s.trial = renumber(s.trial);
                sink(Record::Sample(s))?;
            }
            next_trial += trials.len() as u32;
        }
        Ok(())
    }
}

fn merged_meta(runs: &[StoredRun], base: DateTime<FixedOffset>) -> RunMeta {
    let first = &runs[0].meta;
    let mut targets: Vec<String> = runs.iter().map(|r| r.meta.target.clone()).collect();
    targets.dedup();
    RunMeta {
        version: env!("CARGO_PKG_VERSION").to_string(),
        scenario: format!("merge of {}", runs.iter().map(|r| r.meta.scenario.as_str()).collect::<Vec<_>>().join(", ")),
        run_id: runs.iter().map(|r| r.meta.run_id.as_str()).collect::<Vec<_>>().join("+"),
        target: targets.join(" | "),
        started_at: base.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        // The coarsest probe of the parts bounds the merged uncertainty.
        interval_us: runs.iter().map(|r| r.meta.interval_us).max().unwrap_or(first.interval_us),
        timeout_us: runs.iter().map(|r| r.meta.timeout_us).max().unwrap_or(first.timeout_us),
        triggers: runs.iter().flat_map(|r| r.meta.triggers.clone()).collect(),
        budget: first.budget.clone(),
        lab: None,
        // Profiles in first-seen order across the parts.
        clients: runs.iter().flat_map(|r| r.meta.client_names()).fold(Vec::new(), |mut all, c| {
            if !all.contains(&c) {
                all.push(c);
            }
            all
        }),
        // Parts measured at different levels are named together.
        write_ack: {
            let mut levels: Vec<String> = runs.iter().map(|r| r.meta.write_ack.clone()).collect();
            levels.dedup();
            levels.join(" | ")
        },
        // Vantage points of one deployment name its servers once each.
        servers: runs.iter().flat_map(|r| r.meta.servers.clone()).fold(Vec::new(), |mut all, s| {
            if !all.contains(&s) {
                all.push(s);
            }
            all
        }),
        metrics_listen: None,
    }
}
