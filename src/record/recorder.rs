//! Turns samples and events into a `Summary`. The live run and `failprobe report` feed the very
//! same `Recorder`, so a rebuilt report cannot drift from the live one.

use super::histogram::{new_histogram, percentiles_ms, record};
use super::integrity;
use super::outage::{find_windows, union, Window};
use super::sample::KeyspacePhase;
use super::{Event, EventKind, Record, RunMeta, Sample, Stream};
use crate::duration::format_ms;
use crate::report::summary::*;
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct Budget {
    pub max_outage_ms: Option<f64>,
    pub max_lost_writes: Option<u64>,
}

#[derive(Default)]
struct TrialData {
    /// By shard (None for a single primary), then by stream.
    samples: BTreeMap<Option<String>, [Vec<Sample>; 2]>,
    events: Vec<Event>,
}

/// One shard's samples sorted, its outage windows and integrity.
struct ShardData<'a> {
    name: Option<&'a str>,
    sorted: [Vec<Sample>; 2],
    windows: [Vec<Window>; 2],
    integrity: integrity::Integrity,
}

/// HDR histograms of one stream of one trial, in microseconds.
pub struct StreamHistograms {
    pub all: Histogram<u64>,
    /// Before, during and after the trigger (absent without a trigger).
    pub phases: Option<[Histogram<u64>; 3]>,
}

pub struct Analysis {
    pub summary: Summary,
    pub histograms: BTreeMap<(u32, Stream), StreamHistograms>,
    /// Every outage window of every trial, in microseconds.
    pub outages: Histogram<u64>,
}

pub struct Recorder {
    meta: RunMeta,
    trials: BTreeMap<u32, TrialData>,
}

impl Recorder {
    pub fn new(meta: RunMeta) -> Self {
        Self { meta, trials: BTreeMap::new() }
    }

    pub fn meta(&self) -> &RunMeta {
        &self.meta
    }

    pub fn ingest(&mut self, record: Record) {
        match record {
            Record::Sample(s) => {
                let t = self.trials.entry(s.trial).or_default();
                t.samples.entry(s.shard.clone()).or_default()[s.stream.index()].push(s);
            }
            Record::Event(e) => self.trials.entry(e.trial).or_default().events.push(e),
        }
    }

    /// Samples of one trial and stream, all shards, by scheduled time (for plots).
    pub fn samples(&self, trial: u32, stream: Stream) -> Vec<Sample> {
        let mut v: Vec<Sample> = self
            .trials
            .get(&trial)
            .map(|t| t.samples.values().flat_map(|s| s[stream.index()].iter().cloned()).collect())
            .unwrap_or_default();
        v.sort_by_key(|s| (s.scheduled_us, s.seq));
        v
    }

    /// Samples of one shard (by name) of one trial and stream, by scheduled time.
    pub fn shard_samples(&self, trial: u32, shard: &str, stream: Stream) -> Vec<Sample> {
        let mut v: Vec<Sample> = self
            .trials
            .get(&trial)
            .and_then(|t| t.samples.get(&Some(shard.to_string())))
            .map(|s| s[stream.index()].clone())
            .unwrap_or_default();
        v.sort_by_key(|s| (s.scheduled_us, s.seq));
        v
    }

    pub fn events(&self, trial: u32) -> &[Event] {
        self.trials.get(&trial).map(|t| t.events.as_slice()).unwrap_or_default()
    }

    pub fn summary(&self) -> Summary {
        self.analyse().summary
    }

    /// The summary together with the histograms behind its percentiles (for plots and .hgrm).
    pub fn analyse(&self) -> Analysis {
        let mut histograms = BTreeMap::new();
        let mut trials = Vec::new();
        for (i, t) in &self.trials {
            let (summary, [writes, reads]) = self.trial_summary(*i, t);
            histograms.insert((*i, Stream::Write), writes);
            histograms.insert((*i, Stream::Read), reads);
            trials.push(summary);
        }
        let summary = self.summary_of(trials);
        let mut outages = new_histogram();
        for o in summary.trials.iter().flat_map(|t| t.writes.outages.iter().chain(&t.reads.outages)) {
            record(&mut outages, (o.duration_ms * 1000.0).round() as u64);
        }
        Analysis { summary, histograms, outages }
    }

    fn summary_of(&self, trials: Vec<TrialSummary>) -> Summary {
        // A trial with no recorded end was cut short: by Ctrl-C, or by a crash (read back from disk).
        // Fewer trials than planned means the run stopped early, however it stopped.
        let planned = self.meta.triggers.len();
        let interrupted = trials.len() < planned
            || self.trials.values().any(|t| {
                let ended = |e: &Event| matches!(e.kind, EventKind::Interrupted | EventKind::TrialEnd { .. });
                t.events.iter().any(|e| e.kind == EventKind::Interrupted) || !t.events.iter().any(ended)
            });
        let outage_histogram_ms = outage_histogram(&trials);
        let budget = evaluate_budget(&self.meta.budget, &trials, interrupted);
        let verdict = crate::report::summary::Verdict::decide(planned, interrupted, &trials, &budget);
        Summary {
            version: self.meta.version.clone(),
            scenario: self.meta.scenario.clone(),
            run_id: self.meta.run_id.clone(),
            target: self.meta.target.clone(),
            started_at: self.meta.started_at.clone(),
            probe: ProbeInfo {
                interval_ms: us_to_ms(self.meta.interval_us),
                timeout_ms: us_to_ms(self.meta.timeout_us),
            },
            resolution: Resolution {
                timestamp_us: 1.0,
                send_lateness_p99_ms: trials
                    .iter()
                    .flat_map(|t| [t.writes.send_lateness_ms.p99, t.reads.send_lateness_ms.p99])
                    .fold(0.0, f64::max),
                outage_uncertainty_ms: us_to_ms(self.meta.interval_us),
                histogram_significant_digits: 3,
                late_threshold_ms: us_to_ms(self.late_threshold_us()),
            },
            interrupted,
            trials,
            outage_histogram_ms,
            budget,
            verdict,
        }
    }

    /// Tokio's timer wakes with 1 ms granularity, so lateness under 2 ms is the clock, not load.
    fn late_threshold_us(&self) -> u64 {
        self.meta.interval_us.max(2_000)
    }

    fn trial_summary(&self, index: u32, t: &TrialData) -> (TrialSummary, [StreamHistograms; 2]) {
        let trigger = trigger_info(&t.events);
        let shards: Vec<ShardData> =
            t.samples.iter().map(|(name, samples)| shard_data(name.as_deref(), samples, &t.events)).collect();
        // The whole target: every shard's samples; down whenever some shard was down.
        let mut all: [Vec<Sample>; 2] = Default::default();
        let mut windows: [Vec<Window>; 2] = Default::default();
        let mut integrity = integrity::Integrity { checked: !shards.is_empty(), ..Default::default() };
        for sh in &shards {
            for s in Stream::ALL {
                all[s.index()].extend(sh.sorted[s.index()].iter().cloned());
                windows[s.index()].extend(sh.windows[s.index()].iter().cloned());
            }
            integrity.add(&sh.integrity);
        }
        for s in Stream::ALL {
            all[s.index()].sort_by_key(|s| (s.scheduled_us, s.seq));
            windows[s.index()] = union(std::mem::take(&mut windows[s.index()]));
        }
        let phases = phase_bounds(&trigger, &windows, self.meta.timeout_us);
        let stream =
            |s: Stream| self.stream_summary(&all[s.index()], &windows[s.index()], phases, reconnects(&t.events, s));
        let (started, ended) = trial_span(&t.events, &all);
        let ((writes, writes_h), (reads, reads_h)) = (stream(Stream::Write), stream(Stream::Read));
        let per_shard = if shards.len() > 1 || shards.iter().any(|s| s.name.is_some()) {
            shards.iter().map(|sh| self.shard_summary(sh, phases)).collect()
        } else {
            Vec::new()
        };
        let summary = TrialSummary {
            index,
            source: t.events.iter().find_map(|e| match &e.kind {
                EventKind::Source { name } => Some(name.clone()),
                _ => None,
            }),
            started_at_ms: us_to_ms(started),
            ended_at_ms: us_to_ms(ended),
            end_reason: end_reason(&t.events),
            writes,
            reads,
            integrity,
            keyspace: keyspace(&t.events),
            topology: topology_changes(&t.events),
            timeline: timeline(&t.events, &windows),
            shards: per_shard,
            aws: aws_trial(&t.events, &windows[Stream::Write.index()]),
            trigger,
        };
        (summary, [writes_h, reads_h])
    }

    fn shard_summary(&self, sh: &ShardData, phases: Option<(u64, u64)>) -> ShardSummary {
        let stream = |s: Stream| self.stream_summary(&sh.sorted[s.index()], &sh.windows[s.index()], phases, 0).0;
        ShardSummary {
            name: sh.name.unwrap_or("").to_string(),
            writes: stream(Stream::Write),
            reads: stream(Stream::Read),
            integrity: sh.integrity.clone(),
        }
    }

    fn stream_summary(
        &self,
        samples: &[Sample],
        windows: &[Window],
        phases: Option<(u64, u64)>,
        reconnects: u64,
    ) -> (StreamSummary, StreamHistograms) {
        let late_threshold = self.late_threshold_us();
        let mut all = new_histogram();
        let mut by_phase = [new_histogram(), new_histogram(), new_histogram()];
        let mut lateness = new_histogram();
        let mut errors = BTreeMap::new();
        let mut out = StreamSummary { probes: samples.len() as u64, reconnects, ..Default::default() };
        for s in samples {
            let sent_late_by = s.start_us.saturating_sub(s.scheduled_us);
            record(&mut lateness, sent_late_by);
            if sent_late_by > late_threshold {
                out.late += 1;
            }
            if !s.ok() {
                out.failed += 1;
                let class = s.error_class.map(|c| c.as_str()).unwrap_or("other");
                *errors.entry(class.to_string()).or_default() += 1;
                continue;
            }
            out.ok += 1;
            record(&mut all, s.latency_us);
            if let Some((during_from, after_from)) = phases {
                let phase = match s.scheduled_us {
                    x if x < during_from => 0,
                    x if x < after_from => 1,
                    _ => 2,
                };
                record(&mut by_phase[phase], s.latency_us);
            }
        }
        out.errors = errors;
        out.send_lateness_ms = percentiles_ms(&lateness);
        out.latency_ms = percentiles_ms(&all);
        out.latency_by_phase_ms = phases.map(|_| PhaseLatency {
            before: percentiles_ms(&by_phase[0]),
            during: percentiles_ms(&by_phase[1]),
            after: percentiles_ms(&by_phase[2]),
        });
        out.outages = windows.iter().map(|w| self.outage(w)).collect();
        out.longest_outage_ms = out.outages.iter().map(|o| o.duration_ms).fold(0.0, f64::max);
        out.total_outage_ms = out.outages.iter().map(|o| o.duration_ms).sum();
        out.recovered = windows.last().is_none_or(|w| w.recovered);
        (out, StreamHistograms { all, phases: phases.map(|_| by_phase) })
    }

    fn outage(&self, w: &Window) -> Outage {
        Outage {
            start_ms: us_to_ms(w.start_us),
            end_ms: us_to_ms(w.end_us),
            duration_ms: us_to_ms(w.duration_us()),
            uncertainty_ms: us_to_ms(self.meta.interval_us),
            recovered: w.recovered,
            failed_probes: w.failed_probes,
            errors: w.errors.iter().map(|(k, v)| (k.as_str().to_string(), *v)).collect(),
        }
    }
}

pub fn us_to_ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

fn shard_data<'a>(name: Option<&'a str>, samples: &[Vec<Sample>; 2], events: &[Event]) -> ShardData<'a> {
    let mut sorted = samples.clone();
    for s in &mut sorted {
        s.sort_by_key(|s| (s.scheduled_us, s.seq));
    }
    let windows = [find_windows(&sorted[0]), find_windows(&sorted[1])];
    let log = events.iter().rev().find_map(|e| match &e.kind {
        EventKind::WriteLog { server, present, shard } if shard.as_deref() == name => {
            Some((server.as_str(), present.as_slice()))
        }
        _ => None,
    });
    let mut integrity = integrity::check(&sorted[0], &sorted[1], log);
    if integrity.checked {
        integrity.acked_writes = integrity.surviving_acked_writes + integrity.lost_acked_writes;
    }
    for e in events {
        match &e.kind {
            EventKind::Seeded { shard, keys } if shard.as_deref() == name => integrity.seeded_keys = Some(*keys),
            EventKind::SeedsSurviving { shard, keys } if shard.as_deref() == name => {
                integrity.surviving_seeded_keys = Some(*keys)
            }
            _ => {}
        }
    }
    ShardData { name, sorted, windows, integrity }
}

fn trigger_info(events: &[Event]) -> TriggerInfo {
    let mut info = TriggerInfo { kind: "none".into(), started_at_ms: None, finished_at_ms: None, error: None };
    for e in events {
        match &e.kind {
            EventKind::TriggerStart { kind, .. } => {
                info.kind = kind.clone();
                info.started_at_ms = Some(us_to_ms(e.at_us));
            }
            EventKind::TriggerFinish { .. } => info.finished_at_ms = Some(us_to_ms(e.at_us)),
            EventKind::TriggerError { message } => {
                info.finished_at_ms = Some(us_to_ms(e.at_us));
                info.error = Some(message.clone());
            }
            _ => {}
        }
    }
    info
}

/// "During" runs from the trigger until it finished and the last outage it caused had closed.
fn phase_bounds(trigger: &TriggerInfo, windows: &[Vec<Window>; 2], timeout_us: u64) -> Option<(u64, u64)> {
    let start = (trigger.started_at_ms? * 1000.0) as u64;
    let finish = trigger.finished_at_ms.map(|ms| (ms * 1000.0) as u64).unwrap_or(start);
    let last_outage_end =
        windows.iter().flatten().filter(|w| w.end_us + timeout_us >= start).map(|w| w.end_us).max().unwrap_or(0);
    Some((start, finish.max(last_outage_end)))
}

fn reconnects(events: &[Event], stream: Stream) -> u64 {
    events
        .iter()
        .filter(|e| matches!(&e.kind, EventKind::Reconnect { stream: s, server: Some(_), .. } if *s == stream))
        .count() as u64
}

/// From TrialStart to TrialEnd when both were recorded; otherwise whatever was seen.
fn trial_span(events: &[Event], samples: &[Vec<Sample>; 2]) -> (u64, u64) {
    let start = events.iter().find(|e| e.kind == EventKind::TrialStart).map(|e| e.at_us);
    let end =
        events.iter().find(|e| matches!(e.kind, EventKind::TrialEnd { .. } | EventKind::Interrupted)).map(|e| e.at_us);
    if let (Some(s), Some(e)) = (start, end) {
        return (s, e);
    }
    let times = events.iter().map(|e| e.at_us).chain(samples.iter().flatten().flat_map(|s| [s.scheduled_us, s.end_us]));
    let (mut lo, mut hi) = (u64::MAX, 0);
    for t in times {
        lo = lo.min(t);
        hi = hi.max(t);
    }
    (if lo == u64::MAX { 0 } else { lo }, hi)
}

fn end_reason(events: &[Event]) -> String {
    let ended = events.iter().rev().find_map(|e| match &e.kind {
        EventKind::TrialEnd { reason } => Some(reason.clone()),
        EventKind::Interrupted => Some("interrupted".to_string()),
        _ => None,
    });
    ended.unwrap_or_else(|| "incomplete (no end recorded: the run stopped abruptly)".to_string())
}

fn keyspace(events: &[Event]) -> Keyspace {
    let mut k = Keyspace::default();
    for e in events {
        if let EventKind::Keyspace { phase, keys } = e.kind {
            match phase {
                KeyspacePhase::Before => k.before = Some(keys),
                KeyspacePhase::After => k.after = Some(keys),
            }
        }
    }
    k
}

fn topology_changes(events: &[Event]) -> Vec<TopologyChange> {
    let mut out: Vec<TopologyChange> = Vec::new();
    for e in events {
        if let EventKind::Topology { source, primary: Some(primary), .. } = &e.kind {
            if out.last().is_none_or(|last| &last.primary != primary) {
                out.push(TopologyChange { at_ms: us_to_ms(e.at_us), primary: primary.clone(), source: source.clone() });
            }
        }
    }
    out
}

fn timeline(events: &[Event], windows: &[Vec<Window>; 2]) -> Vec<TimelineEntry> {
    let mut out = Vec::new();
    let mut push = |at_us: u64, what: String| out.push(TimelineEntry { at_ms: us_to_ms(at_us), what });
    for e in events {
        match &e.kind {
            EventKind::TriggerStart { kind, detail } => push(e.at_us, format!("trigger {kind} started: {detail}")),
            EventKind::TriggerFinish { detail } => push(e.at_us, format!("trigger finished: {detail}")),
            EventKind::TriggerError { message } => push(e.at_us, format!("trigger failed: {message}")),
            EventKind::IntegrityError { message } => push(e.at_us, format!("integrity check failed: {message}")),
            EventKind::Redirect { shard, from, to, slot } => push(
                e.at_us,
                format!(
                    "{}MOVED: slot {slot} now on {to} (was {from})",
                    shard.as_deref().map(|s| format!("{s} ")).unwrap_or_default()
                ),
            ),
            EventKind::Lateness { stream, late } => {
                push(e.at_us, format!("{} scheduler fell behind: {late} probes sent late", stream.name()))
            }
            EventKind::TrialEnd { reason } => push(e.at_us, format!("trial ended: {reason}")),
            EventKind::Interrupted => push(e.at_us, "interrupted (Ctrl-C)".to_string()),
            EventKind::Aws { source, message, aws_time, .. } => {
                push(e.at_us, format!("AWS {source}: {message} (AWS time {aws_time})"))
            }
            EventKind::AwsTopology { resource, status, members } => {
                push(e.at_us, format!("AWS {resource} {status}: {members}"))
            }
            _ => {}
        }
    }
    for change in topology_changes(events) {
        out.push(TimelineEntry {
            at_ms: change.at_ms,
            what: format!("primary is {} (seen by {})", change.primary, change.source),
        });
    }
    for (stream, ws) in Stream::ALL.iter().zip(windows) {
        for w in ws {
            out.push(TimelineEntry { at_ms: us_to_ms(w.start_us), what: format!("{} down", stream.name()) });
            if w.recovered {
                out.push(TimelineEntry {
                    at_ms: us_to_ms(w.end_us),
                    what: format!("{} up again after {}", stream.name(), format_ms(us_to_ms(w.duration_us()))),
                });
            }
        }
    }
    out.sort_by(|a, b| a.at_ms.total_cmp(&b.at_ms));
    out
}

fn aws_trial(events: &[Event], write_windows: &[Window]) -> Option<AwsTrial> {
    let mut aws = AwsTrial::default();
    for e in events {
        match &e.kind {
            EventKind::Aws { source, class, message, aws_time, seen_us, .. } => aws.events.push(AwsEventEntry {
                at_ms: us_to_ms(e.at_us),
                aws_time: aws_time.clone(),
                seen_at_ms: us_to_ms(*seen_us),
                source: source.clone(),
                class: class.clone(),
                message: message.clone(),
            }),
            EventKind::AwsTopology { status, members, .. } => aws.topology.push(AwsTopologyEntry {
                at_ms: us_to_ms(e.at_us),
                status: status.clone(),
                members: members.clone(),
            }),
            _ => {}
        }
    }
    if aws.events.is_empty() && aws.topology.is_empty() {
        return None;
    }
    // Events arrive as they are polled; the report lists them in AWS's order.
    aws.events.sort_by(|a, b| a.aws_time.cmp(&b.aws_time).then(a.at_ms.total_cmp(&b.at_ms)));
    aws.failover_completed_at_ms = aws.events.iter().find(|e| e.class == "failover-completed").map(|e| e.at_ms);
    aws.recovery_finished_at_ms = aws.events.iter().rev().find(|e| e.class == "node-recovered").map(|e| e.at_ms);
    aws.writes_recovered_at_ms = write_windows.iter().rev().find(|w| w.recovered).map(|w| us_to_ms(w.end_us));
    if let (Some(done), Some(back)) = (aws.failover_completed_at_ms, aws.writes_recovered_at_ms) {
        aws.completion_lag_ms = Some(done - back);
    }
    Some(aws)
}

fn outage_histogram(trials: &[TrialSummary]) -> OutageHistogram {
    let mut h = new_histogram();
    for o in trials.iter().flat_map(|t| t.writes.outages.iter().chain(&t.reads.outages)) {
        record(&mut h, (o.duration_ms * 1000.0) as u64);
    }
    let p = percentiles_ms(&h);
    OutageHistogram { count: p.count, p50: p.p50, p90: p.p90, p99: p.p99, max: p.max }
}

/// Every check the budget implies, passed or not: JUnit shows them all, the verdict fails on any.
fn evaluate_budget(budget: &Budget, trials: &[TrialSummary], interrupted: bool) -> BudgetResult {
    let mut checks = Vec::new();
    for t in trials {
        for (name, s) in [("writes", &t.writes), ("reads", &t.reads)] {
            checks.push(BudgetCheck {
                trial: t.index,
                shard: None,
                name: format!("{name} recovered"),
                passed: s.recovered,
                measured: if s.recovered { "recovered".into() } else { "still down when the trial ended".into() },
                limit: "recovery within the trial".into(),
            });
            if let Some(max) = budget.max_outage_ms {
                checks.push(BudgetCheck {
                    trial: t.index,
                    shard: None,
                    name: format!("{name} outage within --max-outage"),
                    passed: s.longest_outage_ms <= max,
                    measured: format!("longest outage {}", format_ms(s.longest_outage_ms)),
                    limit: format_ms(max),
                });
            }
        }
        if let Some(max) = budget.max_outage_ms {
            for sh in &t.shards {
                for (name, s) in [("writes", &sh.writes), ("reads", &sh.reads)] {
                    checks.push(BudgetCheck {
                        trial: t.index,
                        shard: Some(sh.name.clone()),
                        name: format!("{} {name} outage within --max-outage", sh.name),
                        passed: s.longest_outage_ms <= max,
                        measured: format!("longest outage {}", format_ms(s.longest_outage_ms)),
                        limit: format_ms(max),
                    });
                }
            }
        }
        if let Some(max) = budget.max_lost_writes {
            for sh in t.shards.iter().filter(|sh| sh.integrity.checked) {
                checks.push(BudgetCheck {
                    trial: t.index,
                    shard: Some(sh.name.clone()),
                    name: format!("{} acknowledged writes within --max-lost-writes", sh.name),
                    passed: sh.integrity.lost_acked_writes <= max,
                    measured: format!("{} acknowledged writes lost", sh.integrity.lost_acked_writes),
                    limit: max.to_string(),
                });
            }
        }
        if let Some(max) = budget.max_lost_writes {
            let i = &t.integrity;
            let (passed, measured) = if i.checked {
                (i.lost_acked_writes <= max, format!("{} acknowledged writes lost", i.lost_acked_writes))
            } else {
                (interrupted, "write log could not be read, loss unknown".to_string())
            };
            checks.push(BudgetCheck {
                trial: t.index,
                shard: None,
                name: "acknowledged writes within --max-lost-writes".into(),
                passed,
                measured,
                limit: max.to_string(),
            });
        }
    }
    for t in trials {
        if let Some(error) = &t.trigger.error {
            checks.push(BudgetCheck {
                trial: t.index,
                shard: None,
                name: "trigger completed".into(),
                passed: false,
                measured: error.clone(),
                limit: "the failover happened as asked".into(),
            });
        }
    }
    let violations = checks
        .iter()
        .filter(|c| !c.passed)
        .map(|c| format!("trial {}: {}: {} (limit {})", c.trial, c.name, c.measured, c.limit))
        .collect::<Vec<_>>();
    BudgetResult {
        passed: violations.is_empty(),
        max_outage_ms: budget.max_outage_ms,
        max_lost_writes: budget.max_lost_writes,
        violations,
        checks,
    }
}

/// Rebuilds the recorder from a stored run (the `failprobe report` path).
pub fn replay(run: crate::record::store::StoredRun) -> Recorder {
    let mut r = Recorder::new(run.meta);
    for e in run.events {
        r.ingest(Record::Event(e));
    }
    for s in run.samples {
        r.ingest(Record::Sample(s));
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{Event, EventKind, RunMeta};

    fn recorder(planned: usize, budget: Budget) -> Recorder {
        Recorder::new(RunMeta {
            version: "test".into(),
            scenario: "t".into(),
            run_id: "r".into(),
            target: "redis://127.0.0.1:1".into(),
            started_at: "2026-11-29T00:00:00Z".into(),
            interval_us: 10_000,
            timeout_us: 250_000,
            triggers: vec!["none".into(); planned],
            budget,
            lab: None,
        })
    }

    fn event(r: &mut Recorder, trial: u32, at_us: u64, kind: EventKind) {
        r.ingest(Record::Event(Event { at_us, trial, kind }));
    }

    #[test]
    fn fewer_trials_than_planned_is_no_verdict_everywhere() {
        let mut r = recorder(3, Budget::default());
        event(&mut r, 0, 0, EventKind::TrialStart);
        event(&mut r, 0, 1_000, EventKind::TrialEnd { reason: "observed".into() });
        let s = r.summary();
        assert!(s.interrupted);
        assert_eq!(s.verdict.kind, "incomplete");
        assert_eq!(crate::report::exit_code(&s), 2);
        assert!(s.verdict.headline.contains("1 of 3"), "{}", s.verdict.headline);
        assert!(crate::report::terminal::final_summary(&s).starts_with("INCOMPLETE"));
        assert!(crate::report::junit::junit(&s).contains(r#"type="incomplete""#));
        assert!(crate::report::junit::step_summary(&s).contains("INCOMPLETE"));
        // A run that stopped before its first trial (memcached seeding, a Ctrl-C in prepare).
        let s = recorder(1, Budget::default()).summary();
        assert_eq!((s.verdict.kind.as_str(), s.verdict.exit_code), ("incomplete", 2), "{}", s.verdict.headline);
    }

    #[test]
    fn the_timeline_image_stays_bounded_for_many_trials() {
        let mut r = recorder(40, Budget::default());
        for t in 0..40 {
            event(&mut r, t, t as u64 * 1000, EventKind::TrialStart);
            event(&mut r, t, t as u64 * 1000 + 500, EventKind::TrialEnd { reason: "observed".into() });
        }
        let (w, h) = crate::report::plot::timeline::size(&r.summary());
        // 80 panels asked for; at most 24 drawn (1200 × 6240 px, about 22 MB of pixels).
        assert!(u64::from(w) * u64::from(h) <= 1200 * 24 * 260, "{w} x {h}");
    }

    #[test]
    fn no_budget_never_reads_pass_and_a_failed_trigger_is_no_verdict() {
        let mut r = recorder(1, Budget::default());
        event(&mut r, 0, 0, EventKind::TrialStart);
        event(&mut r, 0, 1_000, EventKind::TrialEnd { reason: "recovered".into() });
        let s = r.summary();
        assert_eq!(s.verdict.kind, "recovered");
        assert!(s.verdict.headline.starts_with("RECOVERED") && s.verdict.headline.contains("no budget set"));
        assert!(!s.verdict.headline.contains("PASS"));
        let mut r = recorder(1, Budget { max_outage_ms: Some(1000.0), max_lost_writes: None });
        event(&mut r, 0, 0, EventKind::TrialStart);
        event(&mut r, 0, 10, EventKind::TriggerStart { kind: "kill".into(), detail: "kill".into() });
        event(&mut r, 0, 20, EventKind::TriggerError { message: "no such process".into() });
        event(&mut r, 0, 1_000, EventKind::TrialEnd { reason: "recovered".into() });
        let s = r.summary();
        assert_eq!(s.verdict.kind, "incomplete", "{}", s.verdict.headline);
        assert_eq!(crate::report::exit_code(&s), 2);
        assert!(crate::report::junit::junit(&s).contains("trigger of trial 0 failed"));
    }
}
