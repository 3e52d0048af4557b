//! One trial's state while its probes stream past, and what it keeps once closed.

use super::histogram::{percentiles_ms, Packed};
use super::integrity::IntegrityState;
use super::outage::{union, Edge};
use super::phases::{PhaseClock, Waiting};
use super::reorder::{Probe, Reorder};
use super::series::Series;
use super::split_brain::{FirstIsolated, OldPrimaryWatch};
use super::stream::{StreamAcc, StreamFigures, StreamHistos};
use super::StreamHistograms;
use crate::sample::{client_name, Event, EventKind, Sample, Stream};

/// What every trial of a run shares.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Params {
    pub(crate) timeout_us: u64,
    pub(crate) late_threshold_us: u64,
    /// How long a probe may take to report (deadline plus a scheduler stall): probes further
    /// out of order than this are analysed where they arrive.
    pub(crate) horizon_us: u64,
}

/// Timeline-only events kept per trial (a scheduler that keeps falling behind, or a cluster that
/// keeps redirecting, reports one per occurrence); the rest are counted.
pub(crate) const MAX_TIMELINE_EVENTS: u64 = 1000;

pub(crate) struct TrialState {
    /// The client profile whose probes this is (`failprobe` for its own).
    pub(crate) client: String,
    /// The events the summary reads. Periodic ones are reduced as they arrive: topology reports
    /// to changes of the primary, reconnects to counts, timeline-only events to the first
    /// [`MAX_TIMELINE_EVENTS`]. events.jsonl keeps them all.
    pub(crate) events: Vec<Event>,
    last_primary: Option<String>,
    /// Reconnects that reached a server, by stream.
    pub(crate) reconnects: [u64; 2],
    timeline_events: u64,
    /// Timeline-only events past the limit.
    pub(crate) omitted_events: u64,
    phases: PhaseClock,
    live: Option<Live>,
    closed: Option<Closed>,
    /// Probes that arrived after their trial closed (should not happen: trials run one after
    /// the other and wait for their probes' deadlines).
    pub(crate) after_close: u64,
    /// Which server is the deposed old primary, from the events as they arrive: a probe it
    /// answers is classified when it arrives (events then are those up to its completion).
    pub(crate) watch: OldPrimaryWatch,
    /// When each stream was first answered by the deposed old primary.
    pub(crate) first_isolated: FirstIsolated,
}

struct Live {
    shards: Vec<LiveShard>,
    reorder: Reorder,
    /// The due time of the last probe released in order.
    frontier_us: u64,
    first_us: u64,
    last_us: u64,
}

struct LiveShard {
    name: Option<String>,
    streams: [StreamAcc; 2],
    integrity: IntegrityState,
    series: [Series; 2],
}

/// A closed trial: figures, packed histograms, integrity state and plot series. No probes.
pub(crate) struct Closed {
    pub(crate) shards: Vec<ClosedShard>,
    pub(crate) target: [StreamFigures; 2],
    pub(crate) histograms: [StreamHistograms; 2],
    /// Earliest due time and latest completion of any probe.
    pub(crate) span_us: Option<(u64, u64)>,
}

pub(crate) struct ClosedShard {
    pub(crate) name: Option<String>,
    pub(crate) streams: [StreamFigures; 2],
    pub(crate) integrity: IntegrityState,
    /// Dropped for panels past what the timeline draws.
    pub(crate) series: Option<[Series; 2]>,
}

impl TrialState {
    pub(crate) fn new(p: &Params, client: &str, watch: OldPrimaryWatch) -> Self {
        Self {
            watch,
            first_isolated: FirstIsolated::default(),
            client: client.to_string(),
            events: Vec::new(),
            last_primary: None,
            reconnects: [0; 2],
            timeline_events: 0,
            omitted_events: 0,
            phases: PhaseClock::new(p.timeout_us),
            live: None,
            closed: None,
            after_close: 0,
        }
    }

    pub(crate) fn event(&mut self, e: Event) {
        self.watch.event(&e);
        match &e.kind {
            EventKind::TriggerStart { .. } => self.phases.trigger_started(e.at_us),
            EventKind::TriggerFinish { .. } | EventKind::TriggerError { .. } => self.phases.trigger_ended(e.at_us),
            EventKind::Topology { primary, .. } => {
                if primary.is_none() || *primary == self.last_primary {
                    return;
                }
                self.last_primary = primary.clone();
            }
            EventKind::Reconnect { stream, server, client, .. } => {
                if client_name(client) == self.client {
                    self.reconnects[stream.index()] += u64::from(server.is_some());
                }
                return;
            }
            // Another profile's write log.
            EventKind::WriteLog { client, .. } if client_name(client) != self.client => return,
            // Kinds that can recur all run long (a flapping DNS answer, an adapter falling
            // silent again and again): capped like the others.
            EventKind::Lateness { .. }
            | EventKind::Redirect { .. }
            | EventKind::DnsAnswer { .. }
            | EventKind::AdapterFault { .. } => {
                if self.timeline_events >= MAX_TIMELINE_EVENTS {
                    self.omitted_events += 1;
                    return;
                }
                self.timeline_events += 1;
            }
            _ => {}
        }
        self.events.push(e);
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed.is_some()
    }

    pub(crate) fn sample(&mut self, s: &Sample, p: &Params) {
        if self.closed.is_some() {
            self.after_close += 1;
            return;
        }
        let live = self.live.get_or_insert_with(|| Live {
            shards: Vec::new(),
            reorder: Reorder::new(p.horizon_us),
            frontier_us: 0,
            first_us: u64::MAX,
            last_us: 0,
        });
        let shard = match live.shards.iter().position(|sh| sh.name.as_deref() == s.shard.as_deref()) {
            Some(i) => i,
            None => {
                // Plots start at the trial's start (a new shard is rare: a scan of the events is fine).
                let start = self.events.iter().find(|e| e.kind == EventKind::TrialStart).map(|e| e.at_us);
                let origin = start.unwrap_or(s.scheduled_us).min(s.scheduled_us);
                live.shards.push(LiveShard {
                    name: s.shard.clone(),
                    streams: [StreamAcc::new(), StreamAcc::new()],
                    integrity: IntegrityState::default(),
                    series: [Series::new(origin), Series::new(origin)],
                });
                live.shards.len() - 1
            }
        };
        live.first_us = live.first_us.min(s.scheduled_us);
        live.last_us = live.last_us.max(s.end_us);
        let mut probe = Probe::from_sample(s, shard as u32);
        if let Some(since) = self.watch.isolated(s.shard.as_deref(), s.server.as_deref(), s.end_us).filter(|_| s.ok()) {
            probe = probe.answered_by_isolated_primary(since);
            self.first_isolated.see(s.stream, s.end_us);
        } else if s.server.is_none() && s.ok() && s.stream == Stream::Write {
            // An adapter does not say which server answered: split-brain unknown, never 0.
            if self.watch.any_isolated(s.shard.as_deref(), s.end_us) {
                live.shards[shard].integrity.unattributed_ack();
            }
        }
        live.reorder.push(probe);
        while let Some(probe) = live.reorder.pop_ready() {
            live.analyse(probe, &mut self.phases, p);
        }
    }

    /// No more probes for this trial: drain, decide what waits, pack the histograms.
    pub(crate) fn close(&mut self, p: &Params, keep_series: bool) {
        if self.closed.is_some() {
            return;
        }
        let with_phases = self.phases.has_trigger();
        let Some(mut live) = self.live.take() else {
            self.closed = Some(Closed {
                shards: Vec::new(),
                target: Default::default(),
                histograms: [StreamHistograms::empty(with_phases), StreamHistograms::empty(with_phases)],
                span_us: None,
            });
            return;
        };
        while let Some(probe) = live.reorder.pop_any() {
            live.analyse(probe, &mut self.phases, p);
        }
        self.phases.finish();
        live.apply_decided(&mut self.phases);
        let span_us = Some((live.first_us, live.last_us));
        let mut target_histos = [StreamHistos::empty(), StreamHistos::empty()];
        let mut target: [StreamFigures; 2] = Default::default();
        let mut shards = Vec::new();
        // Reported by name (indices referred to arrival order until here).
        live.shards.sort_by(|a, b| a.name.cmp(&b.name));
        for mut sh in live.shards {
            sh.integrity.finish();
            let [w, r] = sh.streams;
            let mut figures = Vec::new();
            for (i, acc) in [w, r].into_iter().enumerate() {
                let (f, h) = acc.close(with_phases);
                target_histos[i].add(&h);
                add_counts(&mut target[i], &f);
                figures.push(f);
            }
            let [w, r]: [StreamFigures; 2] = figures.try_into().expect("two streams");
            shards.push(ClosedShard {
                name: sh.name,
                streams: [w, r],
                integrity: sh.integrity,
                series: keep_series.then_some(sh.series),
            });
        }
        for (i, h) in target_histos.iter().enumerate() {
            let windows = shards.iter().flat_map(|sh| sh.streams[i].windows.iter().cloned()).collect();
            let t = &mut target[i];
            t.windows = union(windows);
            t.latency = percentiles_ms(&h.latency);
            t.lateness = percentiles_ms(&h.lateness);
            t.phases = with_phases.then(|| h.phases.each_ref().map(percentiles_ms));
        }
        let histograms = target_histos.each_ref().map(|h| StreamHistograms {
            all: Packed::pack(&h.latency),
            phases: with_phases.then(|| h.phases.each_ref().map(Packed::pack)),
        });
        self.closed = Some(Closed { shards, target, histograms, span_us });
    }

    pub(crate) fn closed(&self) -> Option<&Closed> {
        self.closed.as_ref()
    }

    pub(crate) fn closed_mut(&mut self) -> Option<&mut Closed> {
        self.closed.as_mut()
    }
}

fn add_counts(t: &mut StreamFigures, f: &StreamFigures) {
    t.probes += f.probes;
    t.ok += f.ok;
    t.late += f.late;
    for (k, v) in &f.errors {
        *t.errors.entry(k.clone()).or_default() += v;
    }
}

impl Live {
    /// One probe, in due order: counts, outage edges, phase, integrity, plot.
    fn analyse(&mut self, p: Probe, phases: &mut PhaseClock, params: &Params) {
        self.frontier_us = self.frontier_us.max(p.scheduled_us);
        let slot = p.shard * 2 + p.stream.index() as u32;
        let sh = &mut self.shards[p.shard as usize];
        let acc = &mut sh.streams[p.stream.index()];
        acc.count(&p, params.late_threshold_us);
        // An answer from the deposed old primary is down from its isolation on, not before.
        let down_from = p.split_brain_since.map_or(p.scheduled_us, |since| since.max(p.scheduled_us));
        match acc.outages.feed(down_from, p.end_us, p.ok(), p.error.unwrap_or(crate::sample::ErrorClass::Other)) {
            Some(Edge::Opened { start_us }) => acc.open_outage_counts = phases.outage_opened(start_us),
            Some(Edge::Closed { end_us, .. }) if acc.open_outage_counts => {
                acc.open_outage_counts = false;
                phases.outage_closed(end_us);
            }
            _ => {}
        }
        if p.ok() {
            let w = Waiting { scheduled_us: p.scheduled_us, latency_us: p.latency_us, slot };
            if let Some(phase) = phases.classify(w) {
                acc.record_phase(phase, p.latency_us);
            }
        }
        match p.stream {
            Stream::Write => {
                // Acknowledged all the same: the client counts on it.
                sh.integrity.write(p.seq, p.end_us, p.answered());
                if p.split_brain_since.is_some() {
                    sh.integrity.isolated_ack(p.seq, p.end_us);
                }
            }
            Stream::Read if p.ok() => sh.integrity.read(p.start_us, p.value),
            _ => {}
        }
        let acked = (p.stream == Stream::Write && p.answered()).then_some(p.seq);
        sh.series[p.stream.index()].add(p.scheduled_us, p.latency_us, p.error, acked);
        // Other shards' reads wait for their own next probe, or the close: later, never wrong.
        sh.integrity.advance(self.frontier_us, params.horizon_us);
        self.apply_decided(phases);
    }

    fn apply_decided(&mut self, phases: &mut PhaseClock) {
        for (w, phase) in phases.take_decided() {
            let sh = &mut self.shards[(w.slot / 2) as usize];
            sh.streams[(w.slot % 2) as usize].record_phase(phase, w.latency_us);
        }
    }
}
