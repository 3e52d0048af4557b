//! The analysis stage, between `record` and `report`: probes and events stream in one at a time
//! (live, or read back from disk by `failprobe report`), accumulators keep what the summary and
//! the plots need (counts, HDR histograms, outage windows, sequence-number ranges, plot buckets),
//! never the probes. Memory depends on the probe rate and the number of shards and trials, not
//! on how long a run lasts.

pub(crate) mod clients;
pub mod histogram;
pub mod integrity;
pub mod outage;
pub(crate) mod phases;
pub(crate) mod pubsub;
pub(crate) mod reorder;
pub(crate) mod sentence;
pub(crate) mod series;
pub(crate) mod split_brain;
pub(crate) mod stream;
pub(crate) mod summarize;
pub mod summary;
pub(crate) mod trial;
pub(crate) mod verdict;
pub(crate) mod waterfall;
pub(crate) mod xstream;

use crate::sample::{Event, EventKind, Record, RunMeta, Sample, Stream};
use clients::TrialClients;
use hdrhistogram::Histogram;
use histogram::{new_histogram, percentiles_ms, record, Packed};
use series::Series;
use std::collections::BTreeMap;
use summary::*;
use trial::Params;

/// The timeline draws at most this many panels (a run of many trials on a many-shard cluster
/// would otherwise ask for an image of gigabytes); series past them are not kept.
pub(crate) const MAX_PANELS: usize = 24;

/// Probes may report this long after the latest one due (deadline plus a scheduler stall).
const REORDER_SLACK_US: u64 = 5_000_000;

/// HDR histograms of one stream of one trial, packed.
#[derive(Clone, Debug)]
pub struct StreamHistograms {
    pub all: Packed,
    /// Before, during and after the trigger (absent without a trigger).
    pub phases: Option<[Packed; 3]>,
}

impl StreamHistograms {
    fn empty(with_phases: bool) -> Self {
        let empty = Packed::pack(&new_histogram());
        Self { all: empty.clone(), phases: with_phases.then(|| [empty.clone(), empty.clone(), empty]) }
    }
}

/// What the reports are made from.
pub struct Analysis {
    pub summary: Summary,
    pub histograms: BTreeMap<(u32, Stream), StreamHistograms>,
    /// Every outage window of every trial, in microseconds.
    pub outages: Histogram<u64>,
    /// The timeline's series by trial, shard (None for a single primary) and stream.
    pub series: BTreeMap<(u32, Option<String>, Stream), Series>,
}

pub struct Analyzer {
    meta: RunMeta,
    params: Params,
    trials: BTreeMap<u32, TrialClients>,
    /// The client profiles measured, in order.
    clients: Vec<String>,
    /// Timeline panels whose series closed trials kept.
    panels: usize,
    /// What the run watched besides its probes (the endpoint, DNS), from any trial's events.
    watches: waterfall::Watches,
    /// The primaries as last announced, whichever trial announced them: where a trial that
    /// heard no announcement before its trigger stood.
    primaries: split_brain::OldPrimaryWatch,
    /// Each adapter's last hello: a client kept across trials (`--keep-clients`) says it once.
    hellos: Vec<(String, String, String, serde_json::Value)>,
}

impl Analyzer {
    pub fn new(meta: RunMeta) -> Self {
        let params = Params {
            timeout_us: meta.timeout_us,
            late_threshold_us: late_threshold_us(&meta),
            horizon_us: meta.timeout_us + REORDER_SLACK_US,
        };
        let clients = meta.client_names();
        let (watches, primaries) = Default::default();
        Self { meta, params, trials: BTreeMap::new(), clients, panels: 0, watches, primaries, hellos: Vec::new() }
    }

    pub fn meta(&self) -> &RunMeta {
        &self.meta
    }

    pub fn ingest(&mut self, r: Record) {
        match r {
            Record::Sample(s) => self.sample(&s),
            Record::Event(e) => self.event(e),
        }
    }

    pub fn event(&mut self, e: Event) {
        self.watches.see(&e.kind);
        let (params, clients, primaries) = (self.params, &self.clients, &self.primaries);
        let trial = self.trials.entry(e.trial).or_insert_with(|| TrialClients::new(clients, &params, primaries));
        if matches!(e.kind, EventKind::Topology { .. }) {
            self.primaries.event(&e);
        }
        if let EventKind::ClientHello { client, library, version, settings } = &e.kind {
            self.hellos.retain(|(c, ..)| c != client);
            self.hellos.push((client.clone(), library.clone(), version.clone(), settings.clone()));
        }
        trial.event(e);
    }

    /// A trial's clients as their adapters last described themselves (said once for a client
    /// kept across trials), and their connections only where they carry the name counted: an
    /// adapter whose hello does not confirm `client_name` would read as holding none.
    fn described(&self, mut t: TrialSummary) -> TrialSummary {
        for c in &mut t.clients {
            if c.library.is_none() {
                if let Some((_, library, version, settings)) = self.hellos.iter().find(|(n, ..)| *n == c.name) {
                    (c.library, c.version, c.settings) =
                        (Some(library.clone()), Some(version.clone()), Some(settings.clone()));
                }
            }
            let named = c.settings.as_ref().is_some_and(|s| s.get("client_name").is_some_and(|n| n.is_string()));
            if !named {
                c.connections = None;
            }
        }
        t
    }

    pub fn sample(&mut self, s: &Sample) {
        // Trials run one after the other: a probe of a later trial means the earlier ones are over.
        let earlier_open = self.trials.range(..s.trial).any(|(_, t)| !t.is_closed());
        if earlier_open {
            self.close_until(s.trial);
        }
        let (params, clients, primaries) = (self.params, &self.clients, &self.primaries);
        self.trials.entry(s.trial).or_insert_with(|| TrialClients::new(clients, &params, primaries)).sample(s, &params);
    }

    /// Trial `trial` ended live (`TrialEnd`): the run awaits every probe before it reads the
    /// write log, so none of this trial is still on its way and it closes now instead of at
    /// the next trial's first probe. Its summary (each client's integrity) is known from here
    /// on: the live metrics read it. Replaying a run closes it later, with the same figures.
    pub fn trial_ended(&mut self, trial: u32) -> Option<TrialSummary> {
        self.close_until(trial.saturating_add(1));
        let clients = self.trials.get_mut(&trial)?;
        let summary = clients.summary(trial, self.meta.interval_us, self.watches);
        Some(self.described(summary))
    }

    fn close_until(&mut self, trial: u32) {
        for t in self.trials.range_mut(..trial).map(|(_, t)| t).filter(|t| !t.is_closed()) {
            let keep = self.panels < MAX_PANELS;
            t.close(&self.params, keep);
            if keep {
                self.panels += t.first().closed().map_or(0, |c| c.shards.len().max(1) * 2);
            }
        }
    }

    /// The summary and everything the plots need.
    pub fn finish(mut self) -> Analysis {
        self.close_until(u32::MAX);
        let mut histograms = BTreeMap::new();
        let mut series = BTreeMap::new();
        let mut trials = Vec::new();
        let mut outages = new_histogram();
        let mut after_close = 0;
        for (&i, clients) in &mut self.trials {
            trials.push(clients.summary(i, self.meta.interval_us, self.watches));
            after_close += clients.clients.iter().map(|t| t.after_close).sum::<u64>();
            // The histograms, outages and plots are the first profile's.
            let closed = clients.clients[0].closed_mut().expect("closed above");
            for s in Stream::ALL {
                for w in &closed.target[s.index()].windows {
                    record(&mut outages, w.duration_us());
                }
            }
            let [w, r] = closed.histograms.clone();
            histograms.insert((i, Stream::Write), w);
            histograms.insert((i, Stream::Read), r);
            for sh in &mut closed.shards {
                if let Some([w, r]) = sh.series.take() {
                    series.insert((i, sh.name.clone(), Stream::Write), w);
                    series.insert((i, sh.name.clone(), Stream::Read), r);
                }
            }
        }
        if after_close > 0 {
            tracing::warn!("{after_close} probe(s) reported after their trial closed; not analysed");
        }
        let trials = trials.into_iter().map(|t| self.described(t)).collect();
        let summary = self.summary_of(trials, &outages);
        Analysis { summary, histograms, outages, series }
    }

    fn summary_of(&self, trials: Vec<TrialSummary>, outages: &Histogram<u64>) -> Summary {
        // A trial with no recorded end was cut short: by Ctrl-C, or by a crash (read back from disk).
        // Fewer trials than planned means the run stopped early, however it stopped.
        let planned = self.meta.triggers.len();
        let interrupted = trials.len() < planned
            || self.trials.values().map(|t| t.first()).any(|t| {
                let ended = |e: &Event| matches!(e.kind, EventKind::Interrupted | EventKind::TrialEnd { .. });
                t.events.iter().any(|e| e.kind == EventKind::Interrupted) || !t.events.iter().any(ended)
            });
        let budget = verdict::evaluate_budget(&self.meta.budget, &trials, interrupted);
        let verdict = verdict::decide(planned, interrupted, &trials, &budget);
        let connection_leaks = verdict::connection_leaks(&trials);
        let p = percentiles_ms(outages);
        let us_to_ms = crate::clock::us_to_ms;
        Summary {
            version: self.meta.version.clone(),
            scenario: self.meta.scenario.clone(),
            run_id: self.meta.run_id.clone(),
            target: self.meta.target.clone(),
            started_at: self.meta.started_at.clone(),
            servers: self.meta.servers.clone(),
            probe: ProbeInfo {
                interval_ms: us_to_ms(self.meta.interval_us),
                timeout_ms: us_to_ms(self.meta.timeout_us),
                write_ack: match self.meta.write_ack.as_str() {
                    "" => "plain".to_string(),
                    level => level.to_string(),
                },
            },
            resolution: Resolution {
                timestamp_us: 1.0,
                send_lateness_p99_ms: trials
                    .iter()
                    .flat_map(|t| [t.writes.send_lateness_ms.p99, t.reads.send_lateness_ms.p99])
                    .fold(0.0, f64::max),
                outage_uncertainty_ms: us_to_ms(self.meta.interval_us),
                histogram_significant_digits: histogram::SIGNIFICANT_DIGITS,
                late_threshold_ms: us_to_ms(self.params.late_threshold_us),
            },
            interrupted,
            trials,
            outage_histogram_ms: OutageHistogram { count: p.count, p50: p.p50, p90: p.p90, p99: p.p99, max: p.max },
            budget,
            verdict,
            connection_leaks,
        }
    }
}

/// Tokio's timer wakes with 1 ms granularity, so lateness under 2 ms is the clock, not load.
pub(crate) fn late_threshold_us(meta: &RunMeta) -> u64 {
    meta.interval_us.max(2_000)
}

/// A stored run read back through the analysis (`failprobe report`, `compare`): its events, then
/// its samples, both streamed from disk. Memory does not depend on the run's length.
pub fn replay(run: &crate::record::store::StoredRun) -> anyhow::Result<Analysis> {
    // A run stored by an older failprobe may hold a label or message as it was typed.
    let mut a = Analyzer::new(crate::secret::scrub_meta(run.meta.clone()));
    for e in run.events()? {
        let mut e = e?;
        e.kind.scrub_texts(crate::secret::scrub, crate::secret::scrub_command);
        a.event(e);
    }
    for s in run.samples()? {
        a.sample(&s?);
    }
    Ok(a.finish())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::sample::{to_ranges, Outcome};
    use crate::sample::{Budget, ErrorClass};

    pub(crate) fn meta(planned: usize, budget: Budget) -> RunMeta {
        RunMeta {
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
            clients: Vec::new(),
            write_ack: String::new(),
            servers: Vec::new(),
            metrics_listen: None,
        }
    }

    pub(crate) fn event(a: &mut Analyzer, trial: u32, at_us: u64, kind: EventKind) {
        a.event(Event { at_us, trial, kind });
    }

    /// A probe due at `ms`, answered `latency_ms` later (failed: `class`).
    fn probe(stream: Stream, seq: u64, ms: u64, latency_ms: u64, class: Option<ErrorClass>) -> Sample {
        let scheduled_us = ms * 1000;
        Sample {
            trial: 0,
            stream,
            seq,
            scheduled_us,
            start_us: scheduled_us,
            end_us: scheduled_us + latency_ms * 1000,
            latency_us: latency_ms * 1000,
            outcome: if class.is_none() { Outcome::Ok } else { Outcome::Failed },
            error_class: class,
            error: class.map(|c| c.to_string()),
            server: Some("127.0.0.1:1".into()),
            value: (stream == Stream::Read).then_some(seq),
            shard: None,
            client: None,
        }
    }

    /// Trial 0: writes every 10 ms for 3 s, failing (READONLY) from 1.0 s to 1.5 s, the
    /// trigger at 0.9 s finishing at 0.95 s; reads alongside; write log missing 50..=52.
    fn failover_trial(a: &mut Analyzer) -> Vec<Sample> {
        event(a, 0, 0, EventKind::TrialStart);
        event(a, 0, 900_000, EventKind::TriggerStart { kind: "sentinel".into(), detail: "x".into() });
        event(a, 0, 950_000, EventKind::TriggerFinish { detail: "x".into() });
        let mut samples = Vec::new();
        for i in 0..300u64 {
            let down = (100..150).contains(&i);
            let class = down.then_some(ErrorClass::Readonly);
            samples.push(probe(Stream::Write, i + 1, i * 10, 1, class));
            // A read sees the last acknowledged write.
            let seen = if (100..150).contains(&i) { 100 } else { i + 1 };
            samples.push(Sample { value: Some(seen), ..probe(Stream::Read, i, i * 10 + 5, 1, None) });
        }
        samples
    }

    fn finish_failover(a: &mut Analyzer) {
        let present: Vec<u64> = (1..=300).filter(|n| !(50..=52).contains(n) && !(101..=150).contains(n)).collect();
        event(
            a,
            0,
            3_100_000,
            EventKind::WriteLog { server: "p".into(), present: to_ranges(&present), shard: None, client: None },
        );
        event(a, 0, 3_200_000, EventKind::TrialEnd { reason: "recovered".into() });
    }

    #[test]
    fn a_failover_trial_in_order_and_shuffled_gives_the_same_summary() {
        let mut a = Analyzer::new(meta(1, Budget::default()));
        let samples = failover_trial(&mut a);
        for s in &samples {
            a.sample(s);
        }
        finish_failover(&mut a);
        let sorted = a.finish().summary;
        let t = &sorted.trials[0];
        assert_eq!(t.writes.outages.len(), 1);
        let o = &t.writes.outages[0];
        assert_eq!((o.start_ms, o.end_ms, o.failed_probes), (1000.0, 1501.0, 50));
        assert_eq!(o.errors["readonly"], 50);
        assert_eq!((t.writes.probes, t.writes.ok, t.writes.failed), (300, 250, 50));
        assert_eq!(t.integrity.lost_acked_writes, 3);
        assert_eq!(t.integrity.lost_seqs_sample, vec![50, 51, 52]);
        assert_eq!(t.integrity.ghost_writes, 0);
        assert_eq!(t.integrity.unacked_writes, 50);
        // Reads saw the last acknowledged write: none stale.
        assert_eq!(t.integrity.stale_reads, 0);
        let phases = t.writes.latency_by_phase_ms.as_ref().unwrap();
        // Before 0.9 s: 90 probes; during: 0.9 s .. 1.501 s minus the 50 failed; after: the rest.
        assert_eq!((phases.before.count, phases.during.count, phases.after.count), (90, 11, 149));
        assert_eq!(sorted.verdict.kind, "recovered");
        assert!(sorted.verdict.headline.contains("3 acknowledged writes lost"), "{}", sorted.verdict.headline);

        // The same probes arriving in completion order with a slow one overtaken by 20 others.
        let mut a = Analyzer::new(meta(1, Budget::default()));
        let mut samples = failover_trial(&mut a);
        let slow = samples.remove(40);
        samples.insert(60, slow);
        samples.reverse();
        samples[..400].reverse();
        for chunk in samples.chunks_mut(7) {
            chunk.reverse();
        }
        samples.reverse();
        for s in &samples {
            a.sample(s);
        }
        finish_failover(&mut a);
        let shuffled = a.finish().summary;
        assert_eq!(serde_json::to_value(&sorted).unwrap(), serde_json::to_value(&shuffled).unwrap());
    }

    #[test]
    fn late_probes_stale_reads_and_an_unrecovered_outage() {
        let mut a = Analyzer::new(meta(1, Budget::default()));
        event(&mut a, 0, 0, EventKind::TrialStart);
        for i in 0..100u64 {
            let mut w = probe(Stream::Write, i + 1, i * 10, 1, (i >= 80).then_some(ErrorClass::Timeout));
            if i == 10 {
                w.start_us += 15_000; // sent 15 ms late: more than one interval
            }
            a.sample(&w);
            // The read at 505 ms sees seq 3, although write 51 was acknowledged at 501 ms.
            let value = if i == 50 { 3 } else { i + 1 };
            a.sample(&Sample { value: Some(value), ..probe(Stream::Read, i, i * 10 + 5, 1, None) });
        }
        event(&mut a, 0, 1_000_000, EventKind::TrialEnd { reason: "observed".into() });
        let s = a.finish().summary;
        let t = &s.trials[0];
        assert_eq!(t.writes.late, 1);
        assert_eq!(t.integrity.stale_reads, 1);
        assert!(!t.integrity.checked, "no write log: loss unknown, not zero");
        assert!(!t.writes.recovered);
        assert_eq!(t.writes.outages[0].failed_probes, 20);
        // Without a budget too: a stream that never recovered fails its check.
        assert_eq!((s.verdict.kind.as_str(), s.verdict.exit_code), ("fail", 1), "{}", s.verdict.headline);
    }

    #[test]
    fn fewer_trials_than_planned_is_no_verdict_everywhere() {
        let mut a = Analyzer::new(meta(3, Budget::default()));
        event(&mut a, 0, 0, EventKind::TrialStart);
        event(&mut a, 0, 1_000, EventKind::TrialEnd { reason: "observed".into() });
        let s = a.finish().summary;
        assert!(s.interrupted);
        assert_eq!(s.verdict.kind, "incomplete");
        assert_eq!(s.verdict.exit_code, 2);
        assert!(s.verdict.headline.contains("1 of 3"), "{}", s.verdict.headline);
        // A run that stopped before its first trial (memcached seeding, a Ctrl-C in prepare).
        let s = Analyzer::new(meta(1, Budget::default())).finish().summary;
        assert_eq!((s.verdict.kind.as_str(), s.verdict.exit_code), ("incomplete", 2), "{}", s.verdict.headline);
        // A trial with probes but no recorded end (a crash, read back from disk).
        let mut a = Analyzer::new(meta(1, Budget::default()));
        event(&mut a, 0, 0, EventKind::TrialStart);
        a.sample(&probe(Stream::Write, 1, 0, 1, None));
        let s = a.finish().summary;
        assert_eq!(s.verdict.kind, "incomplete");
        assert!(s.trials[0].end_reason.starts_with("incomplete"), "{}", s.trials[0].end_reason);
    }

    #[test]
    fn the_timeline_image_stays_bounded_for_many_trials() {
        let mut a = Analyzer::new(meta(40, Budget::default()));
        for t in 0..40 {
            event(&mut a, t, t as u64 * 1000, EventKind::TrialStart);
            event(&mut a, t, t as u64 * 1000 + 500, EventKind::TrialEnd { reason: "observed".into() });
            a.sample(&Sample { trial: t, ..probe(Stream::Write, 1, t as u64, 1, None) });
        }
        let analysis = a.finish();
        assert_eq!(analysis.summary.trials.len(), 40);
        assert_eq!(analysis.series.len(), MAX_PANELS, "series kept only for the panels drawn");
    }

    #[test]
    fn no_budget_never_reads_pass_and_a_failed_trigger_is_no_verdict() {
        let mut a = Analyzer::new(meta(1, Budget::default()));
        event(&mut a, 0, 0, EventKind::TrialStart);
        event(&mut a, 0, 1_000, EventKind::TrialEnd { reason: "recovered".into() });
        let s = a.finish().summary;
        assert_eq!(s.verdict.kind, "recovered");
        assert!(s.verdict.headline.starts_with("RECOVERED") && s.verdict.headline.contains("no budget set"));
        assert!(!s.verdict.headline.contains("PASS"));
        let mut a = Analyzer::new(meta(1, Budget { max_outage_ms: Some(1000.0), ..Default::default() }));
        event(&mut a, 0, 0, EventKind::TrialStart);
        event(&mut a, 0, 10, EventKind::TriggerStart { kind: "kill".into(), detail: "kill".into() });
        event(&mut a, 0, 20, EventKind::TriggerError { message: "no such process".into() });
        event(&mut a, 0, 1_000, EventKind::TrialEnd { reason: "recovered".into() });
        let s = a.finish().summary;
        assert_eq!(s.verdict.kind, "incomplete", "{}", s.verdict.headline);
        assert_eq!(
            (s.verdict.exit_code, s.verdict.incomplete_reason.as_deref()),
            (2, Some("the trigger of trial 0 failed"))
        );
    }

    /// failprobe recovers at 0.5 s; `pinned` gets READONLY from 1 s to the end and its write
    /// log misses 3 writes (acknowledged by the old primary before it stepped down).
    pub(crate) fn two_clients(budget: Budget) -> Summary {
        two_clients_analysis(budget).summary
    }

    /// `two_clients` with its series, for the plots.
    pub(crate) fn two_clients_analysis(budget: Budget) -> Analysis {
        let mut m = meta(1, budget);
        m.clients = vec!["failprobe".into(), "pinned".into()];
        let mut a = Analyzer::new(m);
        event(&mut a, 0, 0, EventKind::TrialStart);
        event(&mut a, 0, 300_000, EventKind::TriggerStart { kind: "sentinel".into(), detail: "x".into() });
        event(&mut a, 0, 350_000, EventKind::TriggerFinish { detail: "x".into() });
        for i in 0..200u64 {
            let own = (30..50).contains(&i).then_some(ErrorClass::Readonly);
            a.sample(&probe(Stream::Write, i + 1, i * 10, 1, own));
            a.sample(&probe(Stream::Read, i + 1, i * 10 + 5, 1, None));
            let pinned = (i >= 100).then_some(ErrorClass::Readonly);
            let label = Some("pinned".to_string());
            a.sample(&Sample { client: label.clone(), ..probe(Stream::Write, i + 1, i * 10, 1, pinned) });
            a.sample(&Sample { client: label, ..probe(Stream::Read, i + 1, i * 10 + 5, 1, None) });
        }
        let own: Vec<u64> = (1..=200).filter(|n| !(31..=50).contains(n)).collect();
        let log = |present: &[u64], client: Option<&str>| EventKind::WriteLog {
            server: "p".into(),
            present: to_ranges(present),
            shard: None,
            client: client.map(String::from),
        };
        event(&mut a, 0, 2_100_000, log(&own, None));
        let pinned: Vec<u64> = (1..=97).collect();
        event(&mut a, 0, 2_100_000, log(&pinned, Some("pinned")));
        event(&mut a, 0, 2_200_000, EventKind::TrialEnd { reason: "not recovered (pinned)".into() });
        a.finish()
    }

    /// A phase is listed (observed or not) only when the run watched for it: the DNS watch's
    /// first answer, given before the trial, is enough to list "DNS answer changed".
    #[test]
    fn watched_phases_are_listed_observed_or_not() {
        let mut a = Analyzer::new(meta(1, Budget::default()));
        let dns = EventKind::DnsAnswer { name: "cache".into(), from: None, to: "10.0.0.1".into(), ttl_s: Some(5) };
        event(&mut a, 0, 0, dns);
        event(&mut a, 0, 0, EventKind::TrialStart);
        event(&mut a, 0, 100_000, EventKind::TriggerStart { kind: "sentinel".into(), detail: "x".into() });
        let flip = EventKind::EndpointFlip { endpoint: "e".into(), from: Some("a".into()), to: "b".into() };
        event(&mut a, 0, 150_000, flip);
        for i in 0..50u64 {
            a.sample(&probe(Stream::Write, i + 1, i * 10, 1, None));
            a.sample(&probe(Stream::Read, i + 1, i * 10 + 5, 1, None));
        }
        event(&mut a, 0, 600_000, EventKind::TrialEnd { reason: "observed".into() });
        let s = a.finish().summary;
        let phases: Vec<(&str, Option<f64>)> =
            s.trials[0].clients[0].phases.iter().map(|p| (p.name.as_str(), p.at_ms)).collect();
        assert!(phases.contains(&("endpoint flipped", Some(150.0))), "{phases:?}");
        assert!(phases.contains(&("DNS answer changed", None)), "watched, not observed: {phases:?}");
        // summary.json: a stable id, a number (or null: not observed), and the text beside them.
        let json = serde_json::to_value(&s.trials[0].clients[0].phases).unwrap();
        let flip = json.as_array().unwrap().iter().find(|p| p["phase"] == "endpoint_flipped").unwrap();
        assert_eq!(
            flip,
            &serde_json::json!({"phase": "endpoint_flipped", "at_ms": 150.0, "detail": {}, "name": "endpoint flipped"})
        );
        let dns = json.as_array().unwrap().iter().find(|p| p["phase"] == "dns_changed").unwrap();
        assert!(dns["at_ms"].is_null(), "{dns}");
    }

    #[test]
    fn each_client_profile_has_its_own_outage_and_write_log_and_the_budget_covers_those_named() {
        let s = two_clients(Budget::default());
        let t = &s.trials[0];
        let names: Vec<&str> = t.clients.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["failprobe", "pinned"]);
        let (own, pinned) = (&t.clients[0], &t.clients[1]);
        assert_eq!(
            (own.writes.longest_outage_ms, own.writes.recovered),
            (201.0, true),
            "from the first failed probe due to the first answer"
        );
        assert_eq!((own.integrity.lost_acked_writes, own.integrity.acked_writes), (0, 180));
        assert_eq!(t.writes, own.writes, "the trial's own figures are the first profile's");
        assert!(!pinned.writes.recovered && pinned.reads.recovered);
        assert_eq!(pinned.writes.errors.get("readonly"), Some(&100));
        assert_eq!(pinned.integrity.lost_acked_writes, 3, "writes 98..=100 acknowledged, then gone");
        // Where the time went: what was observed has a time, the rest none (never guessed).
        let phases: Vec<(PhaseId, &str, Option<f64>)> =
            pinned.phases.iter().map(|p| (p.phase, p.name.as_str(), p.at_ms)).collect();
        assert_eq!(
            phases,
            [
                (PhaseId::TriggerStarted, "trigger started", Some(300.0)),
                (PhaseId::TriggerCompleted, "trigger completed", Some(350.0)),
                (PhaseId::WritesDown, "writes down (readonly ×100)", Some(1000.0)),
                (PhaseId::WritesNotRecovered, "writes not recovered by the end of the trial", Some(1991.0)),
                (PhaseId::FailureDetected, "failure detected", None),
                (PhaseId::NewPrimary, "new primary announced", None),
                (PhaseId::SteppedDown, "old primary stepped down", None),
            ],
            "no endpoint and no DNS watch in this run: those phases could not happen and are left out"
        );
        let down = serde_json::to_value(&pinned.phases[2]).unwrap();
        assert_eq!(down["phase"], "writes_down");
        assert_eq!(down["detail"], serde_json::json!({"errors": {"readonly": 100}}), "counts as numbers, not prose");
        let line = waterfall::describe(&pinned.phases);
        assert!(line.starts_with("trigger started +0 µs · trigger completed +50.0 ms · writes down"), "{line}");
        let unobserved = "failure detected: not observed · new primary announced: not observed · old primary stepped down: not observed";
        assert!(line.ends_with(unobserved), "{line}");
        // By default the verdict covers failprobe's own client: the deployment recovered.
        assert_eq!((s.verdict.kind.as_str(), s.verdict.exit_code), ("recovered", 0), "{}", s.verdict.headline);
        // ...and the headline still names the client outside the budget that did not recover.
        assert_eq!(
            s.verdict.headline,
            "RECOVERED for failprobe — no budget set; pinned NOT RECOVERED and lost 3 acknowledged writes (outside the budget)"
        );
        let s = two_clients(Budget { max_outage_ms: Some(1000.0), ..Default::default() });
        assert_eq!((s.verdict.kind.as_str(), s.verdict.exit_code), ("pass", 0), "{}", s.verdict.headline);
        assert_eq!(
            s.verdict.headline,
            "PASS for failprobe — within the budget; pinned NOT RECOVERED and lost 3 acknowledged writes (outside the budget)"
        );
        let s = two_clients(Budget { clients: vec!["all".into()], ..Default::default() });
        assert_eq!((s.verdict.kind.as_str(), s.verdict.exit_code), ("fail", 1), "{}", s.verdict.headline);
        assert!(!s.verdict.headline.contains("outside the budget"), "{}", s.verdict.headline);
        assert!(s.budget.violations.iter().any(|v| v.contains("pinned writes recovered")), "{:?}", s.budget.violations);
        let s = two_clients(Budget { clients: vec!["pinned".into()], max_lost_writes: Some(0), ..Default::default() });
        let failed: Vec<&str> = s.budget.checks.iter().filter(|c| !c.passed).map(|c| c.name.as_str()).collect();
        assert_eq!(failed, ["pinned writes recovered", "pinned acknowledged writes within --max-lost-writes"]);
    }

    /// failprobe's subscriber receives every message until 1 s, then none: outside the budget
    /// it is named in the headline; covered, it fails the run, and `--max-lost-messages` too.
    fn silent_subscriber(budget: Budget) -> Summary {
        let mut m = meta(1, budget);
        m.clients = vec!["failprobe".into(), "pinned".into()];
        let mut a = Analyzer::new(m);
        event(&mut a, 0, 0, EventKind::TrialStart);
        for i in 0..200u64 {
            a.sample(&probe(Stream::Write, i + 1, i * 10, 1, None));
            a.sample(&probe(Stream::Read, i + 1, i * 10 + 5, 1, None));
            let pinned = Some("pinned".to_string());
            a.sample(&Sample { client: pinned.clone(), ..probe(Stream::Write, i + 1, i * 10, 1, None) });
            a.sample(&Sample { client: pinned.clone(), ..probe(Stream::Read, i + 1, i * 10 + 5, 1, None) });
            a.sample(&Sample {
                client: pinned.clone(),
                value: Some(1),
                ..probe(Stream::Publish, i + 1, i * 10, 1, None)
            });
            a.sample(&Sample { client: pinned.clone(), ..probe(Stream::Deliver, i + 1, i * 10, 1, None) });
            a.sample(&Sample { value: Some(1), ..probe(Stream::Publish, i + 1, i * 10, 1, None) });
            if i < 100 {
                a.sample(&probe(Stream::Deliver, i + 1, i * 10, 1, None));
            }
        }
        let lost = EventKind::Subscription { client: None, subscribed: false, server: None, error: Some("x".into()) };
        event(&mut a, 0, 1_000_500, lost);
        let all: Vec<u64> = (1..=200).collect();
        for client in [None, Some("pinned".to_string())] {
            let log = EventKind::WriteLog { server: "p".into(), present: to_ranges(&all), shard: None, client };
            event(&mut a, 0, 2_100_000, log);
        }
        event(&mut a, 0, 2_200_000, EventKind::TrialEnd { reason: "recovered".into() });
        a.finish().summary
    }

    #[test]
    fn a_subscriber_silent_to_the_end_is_in_the_headline_and_fails_a_budget_covering_it() {
        let s = silent_subscriber(Budget { clients: vec!["pinned".into()], ..Default::default() });
        let own = s.trials[0].clients[0].pubsub.clone().unwrap();
        assert_eq!((own.missed, own.missed_at_end, own.resubscribed), (100, 100, false));
        assert_eq!(s.trials[0].clients[1].pubsub.as_ref().map(|p| p.missed), Some(0));
        assert_eq!(
            s.verdict.headline,
            "RECOVERED for pinned — no budget set; failprobe subscriber NOT RESUBSCRIBED and missed 100 messages (outside the budget)"
        );
        let s = silent_subscriber(Budget { max_lost_messages: Some(10), ..Default::default() });
        assert_eq!((s.verdict.kind.as_str(), s.verdict.exit_code), ("fail", 1), "{}", s.verdict.headline);
        assert!(s.verdict.headline.contains("100 pub/sub messages missed"), "{}", s.verdict.headline);
        let failed: Vec<&str> = s.budget.checks.iter().filter(|c| !c.passed).map(|c| c.name.as_str()).collect();
        assert_eq!(failed, ["failprobe subscriber resubscribed", "failprobe messages within --max-lost-messages"]);
        let line = s.trials[0].clients[0].pubsub.as_ref().unwrap().sentence();
        assert!(line.contains("pub/sub NOT RESUBSCRIBED: 100 of 200 acknowledged messages missed"), "{line}");
        assert!(line.contains("100 after its last message, to the end"), "{line}");
    }

    #[test]
    fn shards_are_down_together_and_lost_writes_are_per_shard() {
        let mut a = Analyzer::new(meta(
            1,
            Budget { max_outage_ms: Some(100.0), max_lost_writes: Some(0), ..Default::default() },
        ));
        event(&mut a, 0, 0, EventKind::TrialStart);
        for i in 0..100u64 {
            for (shard, down) in [("a", 20..30), ("b", 25..40)] {
                let class = down.contains(&i).then_some(ErrorClass::Clusterdown);
                a.sample(&Sample { shard: Some(shard.into()), ..probe(Stream::Write, i + 1, i * 10, 1, class) });
            }
        }
        for (shard, missing) in [("a", 0), ("b", 7)] {
            let present: Vec<u64> = (1..=100).filter(|n| *n != missing).collect();
            let kind = EventKind::WriteLog {
                server: shard.into(),
                present: to_ranges(&present),
                shard: Some(shard.into()),
                client: None,
            };
            event(&mut a, 0, 2_000_000, kind);
        }
        event(&mut a, 0, 2_100_000, EventKind::TrialEnd { reason: "recovered".into() });
        let analysis = a.finish();
        let s = &analysis.summary;
        let t = &s.trials[0];
        // a: 200 .. 301 ms, b: 250 .. 401 ms: the target was down from 200 to 401 ms.
        assert_eq!(t.writes.outages.len(), 1);
        assert_eq!((t.writes.outages[0].start_ms, t.writes.outages[0].end_ms), (200.0, 401.0));
        assert_eq!(t.shards.iter().map(|sh| sh.integrity.lost_acked_writes).collect::<Vec<_>>(), vec![0, 1]);
        assert_eq!(t.integrity.lost_acked_writes, 1);
        assert_eq!(s.verdict.kind, "fail");
        let failed: Vec<&str> = s.budget.checks.iter().filter(|c| !c.passed).map(|c| c.name.as_str()).collect();
        assert!(failed.contains(&"b writes outage within --max-outage"), "{failed:?}");
        assert!(failed.contains(&"b acknowledged writes within --max-lost-writes"), "{failed:?}");
        let lost: Vec<_> = analysis.series[&(0, Some("b".into()), Stream::Write)].lost().collect();
        assert_eq!(lost.len(), 1, "one bucket marked lost on b's timeline");
        assert!(analysis.series[&(0, Some("a".into()), Stream::Write)].lost().next().is_none());
        assert_eq!(analysis.outages.len(), 1, "two shard windows are one target window");
    }

    #[test]
    fn periodic_events_are_reduced_as_they_arrive() {
        let mut a = Analyzer::new(meta(1, Budget::default()));
        event(&mut a, 0, 0, EventKind::TrialStart);
        let topology = |primary: &str| EventKind::Topology {
            source: "sentinel".into(),
            server: Some("h:1".into()),
            role: Some("master".into()),
            run_id: None,
            primary: Some(primary.into()),
        };
        for i in 0..10_000u64 {
            // A ROLE check every second for hours, the primary changing once.
            event(&mut a, 0, i, topology(if i < 6000 { "h:1" } else { "h:2" }));
            let server = (i % 2 == 0).then(|| "h:1".to_string());
            event(&mut a, 0, i, EventKind::Reconnect { stream: Stream::Write, server, error: None, client: None });
            event(&mut a, 0, i, EventKind::Lateness { stream: Stream::Read, late: 1 });
        }
        event(&mut a, 0, 20_000, EventKind::TrialEnd { reason: "observed".into() });
        assert!(a.trials[&0].first().events.len() < 1100, "{} events kept", a.trials[&0].first().events.len());
        let s = a.finish().summary;
        let t = &s.trials[0];
        assert_eq!(t.topology.iter().map(|c| c.primary.as_str()).collect::<Vec<_>>(), vec!["h:1", "h:2"]);
        assert_eq!(t.writes.reconnects, 5000, "reconnects that reached a server");
        let late = t.timeline.iter().filter(|e| e.what.contains("fell behind")).count();
        assert_eq!(late, trial::MAX_TIMELINE_EVENTS as usize);
        assert!(t.timeline.last().unwrap().what.starts_with("9000 more"), "{:?}", t.timeline.last());
    }
}
