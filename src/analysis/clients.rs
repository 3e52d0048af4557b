//! One trial as each client profile saw it: the same events (the trigger, the topology, AWS),
//! each profile's own probes, outages and write log.

use super::pubsub::PubSubTrial;
use super::split_brain::OldPrimaryWatch;
use super::summarize::trial_summary;
use super::summary::{ClientSummary, TrialSummary};
use super::trial::{Params, TrialState};
use super::waterfall::Watches;
use super::xstream::StreamTrial;
use crate::sample::{client_name, Event, Sample, Stream};

pub(crate) struct TrialClients {
    /// In the run's order of profiles, failprobe's own first when it was measured: the first
    /// gives the trial's own figures (the `writes`, `reads` and `integrity` of summary.json).
    pub(crate) clients: Vec<TrialState>,
    /// `--probe pubsub`, per client name.
    pubsub: std::collections::BTreeMap<String, PubSubTrial>,
    /// `--probe stream`, per client name.
    streams: std::collections::BTreeMap<String, StreamTrial>,
}

impl TrialClients {
    /// `primaries`: the run's primaries as last announced before this trial.
    pub(crate) fn new(names: &[String], p: &Params, primaries: &OldPrimaryWatch) -> Self {
        let clients = names.iter().map(|name| TrialState::new(p, name, primaries.carried_over())).collect();
        Self { clients, pubsub: Default::default(), streams: Default::default() }
    }

    /// The trial whose figures stand for the run (the first profile).
    pub(crate) fn first(&self) -> &TrialState {
        &self.clients[0]
    }

    pub(crate) fn event(&mut self, e: Event) {
        if let crate::sample::EventKind::StreamLog { client, .. } = &e.kind {
            self.streams.entry(client_name(client).to_string()).or_default().event(&e.kind);
        }
        let Some((last, others)) = self.clients.split_last_mut() else { return };
        for t in others {
            t.event(e.clone());
        }
        last.event(e);
    }

    pub(crate) fn sample(&mut self, s: &Sample, p: &Params) {
        let name = client_name(&s.client);
        match s.stream {
            Stream::Publish | Stream::Deliver => return self.pubsub.entry(name.to_string()).or_default().sample(s),
            Stream::Append | Stream::Consume => return self.streams.entry(name.to_string()).or_default().sample(s),
            Stream::Write | Stream::Read => {}
        }
        let i = match self.clients.iter().position(|t| t.client == name) {
            Some(i) => i,
            None => {
                // A profile the run did not announce (a hand-edited samples.csv): it sees the
                // events the first profile kept.
                let mut t = TrialState::new(p, name, OldPrimaryWatch::default());
                for e in &self.clients[0].events {
                    t.event(e.clone());
                }
                self.clients.push(t);
                self.clients.len() - 1
            }
        };
        self.clients[i].sample(s, p);
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.clients.iter().all(|t| t.is_closed())
    }

    /// Closes every profile's trial; only the first keeps plot series (`keep_series`).
    pub(crate) fn close(&mut self, p: &Params, keep_series: bool) {
        for (i, t) in self.clients.iter_mut().enumerate() {
            t.close(p, keep_series && i == 0);
        }
    }

    /// The trial's summary (from the first profile) with every profile's figures in `clients`.
    pub(crate) fn summary(&mut self, index: u32, interval_us: u64, watches: Watches) -> TrialSummary {
        let mut summary = trial_summary(index, &mut self.clients[0], interval_us);
        let first = &self.clients[0];
        let mut clients = vec![client_summary(&first.client, &summary, &first.events, watches)];
        for t in &mut self.clients[1..] {
            let own = trial_summary(index, t, interval_us);
            clients.push(client_summary(&t.client, &own, &t.events, watches));
        }
        for (c, t) in clients.iter_mut().zip(&self.clients) {
            let label = (c.name != crate::sample::OWN_CLIENT).then_some(c.name.as_str());
            c.pubsub = self.pubsub.get(&c.name).map(|p| p.summary(label, interval_us, &t.events));
            c.stream = self.streams.get(&c.name).map(|s| s.summary());
            if c.pubsub.is_some() {
                let (start, end) = (summary.trigger.started_at_ms, summary.ended_at_ms);
                super::waterfall::subscription_phases(&mut c.phases, label, &t.events, start, end);
            }
        }
        summary.clients = clients;
        summary
    }
}

/// One client's part of a trial: its streams, integrity, where the time went, and what its
/// adapter said of itself.
fn client_summary(name: &str, t: &TrialSummary, events: &[crate::sample::Event], watches: Watches) -> ClientSummary {
    use crate::sample::EventKind;
    let hello = events.iter().find_map(|e| match &e.kind {
        EventKind::ClientHello { client, library, version, settings } if client == name => {
            Some((library.clone(), version.clone(), settings.clone()))
        }
        _ => None,
    });
    let adapter_faults = events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::AdapterFault { client, message } if client == name => Some(message.clone()),
            _ => None,
        })
        .collect();
    let mut connections: Option<std::collections::BTreeMap<String, u64>> = None;
    for e in events {
        if let EventKind::Connections { client, node, count } = &e.kind {
            if client == name {
                connections.get_or_insert_default().insert(node.clone(), *count);
            }
        }
    }
    let (library, version, settings) = match hello {
        Some((l, v, s)) => (Some(l), Some(v), Some(s)),
        None => (None, None, None),
    };

    ClientSummary {
        name: name.to_string(),
        writes: t.writes.clone(),
        reads: t.reads.clone(),
        integrity: t.integrity.clone(),
        phases: super::waterfall::phases(t, events, watches),
        library,
        version,
        settings,
        adapter_faults,
        connections,
        pubsub: None,
        stream: None,
    }
}
