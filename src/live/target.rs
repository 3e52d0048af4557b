//! One target's metrics: the recorder hands it every record. Label handles are resolved when
//! the run begins (per client and stream) or on a first occurrence (an error class, a phase),
//! so a probe costs a few atomic adds and one histogram observation, never an allocation.

use super::families::{ClientLabels, FloatGauge, Metrics, PhaseLabels, ProbeLabels, StreamLabels};
use super::outage::{Change, LiveOutage};
use crate::analysis::summary::TrialSummary;
use crate::sample::{client_name, AwsClass, ErrorClass, Event, EventKind, FaultState, Record, RunMeta, Sample, Stream};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::histogram::Histogram;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// One target's view of the process's metrics (label `target`).
pub struct TargetMetrics {
    metrics: Metrics,
    target: String,
    clients: Vec<ClientMetrics>,
    late_threshold_us: u64,
    /// The run clock's wall time at 0 µs, as Unix seconds: phases are shown as timestamps.
    epoch_s: f64,
    phases: Vec<(&'static str, FloatGauge)>,
    /// The primary last announced (a change is `new_primary`).
    primary: Option<String>,
}

struct ClientMetrics {
    name: String,
    streams: [StreamMetrics; 2],
    lost: Counter,
    ghost: Counter,
}

struct StreamMetrics {
    ok: Counter,
    /// By `ErrorClass as usize`, created at the class's first failure.
    errors: [Option<Counter>; ErrorClass::ALL.len()],
    latency: Histogram,
    late: Counter,
    outage: FloatGauge,
    last_outage: FloatGauge,
    outages: Counter,
    tracker: LiveOutage,
}

impl Metrics {
    /// A target's handle; `target` is its name (the plan's `name`), its only label value.
    pub fn for_target(&self, target: &str) -> TargetMetrics {
        TargetMetrics {
            metrics: self.clone(),
            target: crate::secret::scrub(target),
            clients: Vec::new(),
            late_threshold_us: 0,
            epoch_s: 0.0,
            phases: Vec::new(),
            primary: None,
        }
    }
}

impl TargetMetrics {
    /// The run has begun: its clients' series are created (at zero), its clock's origin known.
    pub fn begin(&mut self, meta: &RunMeta, wall_start: SystemTime) {
        self.late_threshold_us = crate::analysis::late_threshold_us(meta);
        self.epoch_s = wall_start.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO).as_secs_f64();
        for name in meta.client_names() {
            self.client(&name);
        }
    }

    /// Where the listener serving these metrics is bound, when one is.
    pub fn listen_addr(&self) -> Option<std::net::SocketAddr> {
        self.metrics.listen_addr()
    }

    /// Counts a record; returns the trial a `TrialEnd` ended, whose integrity the caller then
    /// hands to [`Self::trial_checked`] once the analysis has it.
    pub fn record(&mut self, r: &Record) -> Option<u32> {
        match r {
            Record::Sample(s) => {
                self.sample(s);
                None
            }
            Record::Event(e) => self.event(e),
        }
    }

    fn sample(&mut self, s: &Sample) {
        // `--probe pubsub` and `stream` have no live metrics yet: its figures are in the reports.
        if !s.stream.is_key_value() {
            return;
        }
        let late_threshold_us = self.late_threshold_us;
        let i = self.client(client_name(&s.client));
        let ClientMetrics { name: client, streams, .. } = &mut self.clients[i];
        let (target, m) = (&self.target, &mut streams[s.stream.index()]);
        if s.ok() {
            m.ok.inc();
            m.latency.observe(seconds(s.latency_us));
        } else {
            let class = s.error_class.unwrap_or(ErrorClass::Other);
            let counter = m.errors[class as usize].get_or_insert_with(|| {
                let labels = probe_labels(target, client, s.stream, "error", class.as_str());
                self.metrics.inner.families.probes.get_or_create_owned(&labels)
            });
            counter.inc();
        }
        if s.start_us.saturating_sub(s.scheduled_us) > late_threshold_us {
            m.late.inc();
        }
        match m.tracker.feed(s.scheduled_us, s.end_us, s.ok()) {
            Change::None => {}
            Change::Opened(us) => {
                m.outages.inc();
                m.outage.set(seconds(us));
            }
            Change::Grew(us) => {
                m.outage.set(seconds(us));
            }
            Change::Closed(us) => {
                m.last_outage.set(seconds(us));
                m.outage.set(0.0);
            }
        }
    }

    fn event(&mut self, e: &Event) -> Option<u32> {
        if let EventKind::TrialEnd { .. } = e.kind {
            // Probes stopped: an outage still open is over with its trial.
            for m in self.clients.iter_mut().flat_map(|c| c.streams.iter_mut()) {
                if let Some(us) = m.tracker.end_trial() {
                    m.last_outage.set(seconds(us));
                    m.outage.set(0.0);
                }
            }
        }
        if let Some(phase) = self.phase_of(&e.kind) {
            let at = self.epoch_s + seconds(e.at_us);
            self.phase(phase).set(at);
        }
        matches!(e.kind, EventKind::TrialEnd { .. }).then_some(e.trial)
    }

    /// A trial's integrity check, known once it ended: its lost and ghost writes, per client.
    pub fn trial_checked(&mut self, trial: &TrialSummary) {
        for c in trial.clients.iter().filter(|c| c.integrity.checked) {
            let i = self.client(&c.name);
            self.clients[i].lost.inc_by(c.integrity.lost_acked_writes);
            self.clients[i].ghost.inc_by(c.integrity.ghost_writes);
        }
    }

    /// A failover phase an event marks, named as summary.json names it (`PhaseId`), plus the
    /// trial's own start and end.
    fn phase_of(&mut self, kind: &EventKind) -> Option<&'static str> {
        Some(match kind {
            EventKind::TrialStart => "trial_started",
            EventKind::TrialEnd { .. } => "trial_ended",
            EventKind::TriggerStart { .. } => "trigger_started",
            EventKind::TriggerFinish { .. } => "trigger_completed",
            EventKind::FailureDetected { .. } => "failure_detected",
            EventKind::Aws { class: AwsClass::FailoverStarted, .. } => "failure_detected",
            // Announced again and again (every ROLE check): a copy only when it changed.
            EventKind::Topology { primary: Some(p), .. } if self.primary.as_ref() != Some(p) => {
                self.primary.replace(p.clone()).map(|_| "new_primary")?
            }
            EventKind::StepDown { role, .. } if role == crate::analysis::sentence::UNREACHABLE_ROLE => {
                "old_primary_unreachable"
            }
            EventKind::StepDown { .. } => "stepped_down",
            EventKind::Unreachable { .. } => "old_primary_unreachable",
            EventKind::NetworkFault { state: FaultState::Injected, .. } => "fault_injected",
            EventKind::NetworkFault { state: FaultState::Healed, .. } => "fault_healed",
            EventKind::EndpointFlip { from: Some(_), .. } => "endpoint_flipped",
            EventKind::DnsAnswer { from: Some(_), .. } => "dns_changed",
            _ => return None,
        })
    }

    fn phase(&mut self, phase: &'static str) -> &FloatGauge {
        let i = match self.phases.iter().position(|(p, _)| *p == phase) {
            Some(i) => i,
            None => {
                let labels = PhaseLabels { target: self.target.clone(), phase };
                self.phases.push((phase, self.metrics.inner.families.phases.get_or_create_owned(&labels)));
                self.phases.len() - 1
            }
        };
        &self.phases[i].1
    }

    /// The client's index; its series are created at its first sight (normally at `begin`).
    fn client(&mut self, name: &str) -> usize {
        if let Some(i) = self.clients.iter().position(|c| c.name == name) {
            return i;
        }
        let f = &self.metrics.inner.families;
        let streams = Stream::ALL.map(|stream| {
            let labels = StreamLabels { target: self.target.clone(), client: name.to_string(), stream: stream.name() };
            StreamMetrics {
                ok: f.probes.get_or_create_owned(&probe_labels(&self.target, name, stream, "ok", "none")),
                errors: Default::default(),
                latency: f.latency.get_or_create_owned(&labels),
                late: f.late.get_or_create_owned(&labels),
                outage: f.outage.get_or_create_owned(&labels),
                last_outage: f.last_outage.get_or_create_owned(&labels),
                outages: f.outages.get_or_create_owned(&labels),
                tracker: LiveOutage::default(),
            }
        });
        // At zero from the start, so `increase()` sees a trial's first lost writes.
        let labels = ClientLabels { target: self.target.clone(), client: name.to_string() };
        let (lost, ghost) = (f.lost.get_or_create_owned(&labels), f.ghost.get_or_create_owned(&labels));
        self.clients.push(ClientMetrics { name: name.to_string(), streams, lost, ghost });
        self.clients.len() - 1
    }
}

fn probe_labels(target: &str, client: &str, stream: Stream, result: &'static str, class: &'static str) -> ProbeLabels {
    ProbeLabels { target: target.to_string(), client: client.to_string(), stream: stream.name(), result, class }
}

fn seconds(us: u64) -> f64 {
    us as f64 / 1e6
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::summary::PhaseId;
    use crate::sample::Outcome;

    fn probe(client: Option<&str>, seq: u64, due_ms: u64, class: Option<ErrorClass>) -> Record {
        let scheduled_us = due_ms * 1000;
        Record::Sample(Sample {
            trial: 0,
            stream: Stream::Write,
            seq,
            scheduled_us,
            start_us: scheduled_us,
            end_us: scheduled_us + 2_000,
            latency_us: 2_000,
            outcome: if class.is_none() { Outcome::Ok } else { Outcome::Failed },
            error_class: class,
            error: None,
            server: Some("127.0.0.1:6379".into()),
            value: None,
            shard: None,
            client: client.map(String::from),
        })
    }

    /// The value of the one sample line that starts with `series`.
    fn value(text: &str, series: &str) -> f64 {
        let lines: Vec<&str> = text.lines().filter(|l| l.starts_with(series)).collect();
        assert_eq!(lines.len(), 1, "{series} in\n{text}");
        lines[0].rsplit_once(' ').unwrap().1.parse().unwrap()
    }

    #[test]
    fn probes_count_by_result_and_class_and_an_outage_is_live_then_last() {
        let metrics = Metrics::new();
        let mut m = metrics.for_target("staging");
        let mut meta = crate::analysis::tests::meta(1, Default::default());
        meta.clients = vec!["failprobe".into(), "pinned".into()];
        m.begin(&meta, UNIX_EPOCH + Duration::from_secs(1_000));
        let pinned = "failprobe_probes_total{target=\"staging\",client=\"pinned\",stream=\"writes\",result=\"ok\",class=\"none\"}";
        assert_eq!(value(&metrics.encode(false), pinned), 0.0, "a client's series exist from the start");
        for i in 0..10 {
            m.record(&probe(None, i, i * 10, None));
        }
        for i in 10..15 {
            m.record(&probe(None, i, i * 10, Some(ErrorClass::Readonly)));
        }
        let text = metrics.encode(false);
        let own = "target=\"staging\",client=\"failprobe\",stream=\"writes\"";
        assert_eq!(value(&text, &format!("failprobe_probes_total{{{own},result=\"ok\",class=\"none\"}}")), 10.0);
        assert_eq!(value(&text, &format!("failprobe_probes_total{{{own},result=\"error\",class=\"readonly\"}}")), 5.0);
        // Due at 100 ms, the last failure answered at 142 ms.
        assert_eq!(value(&text, &format!("failprobe_outage_seconds{{{own}}}")), 0.042);
        assert_eq!(value(&text, &format!("failprobe_probe_latency_seconds_count{{{own}}}")), 10.0);
        m.record(&probe(None, 15, 150, None));
        let text = metrics.encode(false);
        assert_eq!(value(&text, &format!("failprobe_outage_seconds{{{own}}}")), 0.0);
        assert_eq!(value(&text, &format!("failprobe_last_outage_seconds{{{own}}}")), 0.052);
        assert_eq!(value(&text, &format!("failprobe_outages_total{{{own}}}")), 1.0);
        let at = Event {
            at_us: 500_000,
            trial: 0,
            kind: EventKind::TriggerStart { kind: "kill".into(), detail: "".into() },
        };
        m.record(&Record::Event(at));
        let phase = "failprobe_phase_timestamp_seconds{target=\"staging\",phase=\"trigger_started\"}";
        assert_eq!(value(&metrics.encode(false), phase), 1_000.5);
        // A second target of the same process: its own series beside the first's.
        let mut other = metrics.for_target("prod");
        other.begin(&meta, UNIX_EPOCH);
        other.record(&probe(None, 0, 0, Some(ErrorClass::Timeout)));
        let text = metrics.encode(true);
        assert!(text
            .contains("target=\"prod\",client=\"failprobe\",stream=\"writes\",result=\"error\",class=\"timeout\"} 1"));
        assert!(text.ends_with("# EOF\n"), "OpenMetrics: {text}");
    }

    /// Phases are named as summary.json names them (`PhaseId`), besides the trial's own start
    /// and end; a primary announced again is no new one.
    #[test]
    fn phases_are_named_as_summary_json_names_them() {
        let metrics = Metrics::new();
        let mut m = metrics.for_target("t");
        let topology = |p: &str| EventKind::Topology {
            source: "sentinel".into(),
            server: None,
            role: None,
            run_id: None,
            primary: Some(p.into()),
        };
        let (addr, fault) = (String::from("127.0.0.1:1"), String::from("blackhole"));
        let kinds = [
            EventKind::TrialStart,
            EventKind::TriggerStart { kind: "kill".into(), detail: String::new() },
            EventKind::TriggerFinish { detail: String::new() },
            EventKind::FailureDetected { source: "s".into(), detail: "+odown".into() },
            topology("a:1"),
            topology("a:1"),
            EventKind::StepDown { shard: None, server: addr.clone(), role: "slave".into() },
            EventKind::Unreachable { shard: None, server: addr.clone() },
            EventKind::NetworkFault {
                state: FaultState::Injected,
                fault: fault.clone(),
                node: addr.clone(),
                detail: String::new(),
            },
            EventKind::NetworkFault { state: FaultState::Healed, fault, node: addr.clone(), detail: String::new() },
            EventKind::EndpointFlip { endpoint: "e".into(), from: Some("a".into()), to: "b".into() },
            EventKind::DnsAnswer { name: "n".into(), from: Some("x".into()), to: "y".into(), ttl_s: None },
            EventKind::TrialEnd { reason: "recovered".into() },
        ];
        for kind in kinds {
            m.record(&Record::Event(Event { at_us: 0, trial: 0, kind }));
        }
        let text = metrics.encode(false);
        let names: Vec<&str> = text.lines().filter_map(|l| l.split("phase=\"").nth(1)?.split('"').next()).collect();
        assert_eq!(names.len(), 11, "every phase but new_primary: {names:?}");
        assert!(!names.contains(&"new_primary"), "the first announcement is no change");
        for name in names.iter().filter(|n| !n.starts_with("trial_")) {
            serde_json::from_value::<PhaseId>(serde_json::json!(name)).unwrap_or_else(|_| panic!("{name}"));
        }
        m.record(&Record::Event(Event { at_us: 0, trial: 0, kind: topology("b:2") }));
        assert!(metrics.encode(false).contains("phase=\"new_primary\""));
    }
}
