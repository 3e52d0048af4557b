//! Which server, per shard, is the deposed old primary, and since when: the primary announced
//! before the trigger, once the deployment announced another one after it, until it is seen
//! stepping down. What it acknowledges (or answers) meanwhile is no recovery: a client there
//! writes into a node the deployment has already replaced, and those writes are lost when it
//! steps down (split-brain writes).
//!
//! Known only from what was observed: without a primary announced before the trigger, or
//! without an announcement after it, there is no deposed old primary (never inferred).

use super::sentence::UNREACHABLE_ROLE;
use crate::sample::{Event, EventKind, Stream};

/// At most this many shards are watched (a cluster's layout names each of its shards).
const MAX_SHARDS: usize = 1024;

#[derive(Debug, Default)]
pub(crate) struct OldPrimaryWatch {
    triggered: bool,
    shards: Vec<ShardPrimary>,
}

#[derive(Debug)]
struct ShardPrimary {
    /// None for a single primary; `shard0`… for a cluster.
    shard: Option<String>,
    /// The primary as last announced.
    current: String,
    /// The primary when the trigger started.
    old: Option<String>,
    /// When the deployment first announced another primary after the trigger.
    announced_us: Option<u64>,
    stepped_down_us: Option<u64>,
}

impl OldPrimaryWatch {
    pub(crate) fn event(&mut self, e: &Event) {
        match &e.kind {
            EventKind::TriggerStart { .. } if !self.triggered => {
                self.triggered = true;
                for s in &mut self.shards {
                    s.old = Some(s.current.clone());
                }
            }
            EventKind::Topology { primary: Some(primary), .. } => {
                for (shard, addr) in layout(primary) {
                    self.announced(shard, addr, e.at_us);
                }
            }
            EventKind::StepDown { shard, server, role } if role != UNREACHABLE_ROLE => {
                let watched = self.shards.iter_mut().find(|s| s.shard == *shard && s.old.as_ref() == Some(server));
                if let Some(s) = watched {
                    s.stepped_down_us.get_or_insert(e.at_us);
                }
            }
            _ => {}
        }
    }

    fn announced(&mut self, shard: Option<&str>, addr: &str, at_us: u64) {
        let i = match self.shards.iter().position(|s| s.shard.as_deref() == shard) {
            Some(i) => i,
            None if self.shards.len() < MAX_SHARDS => {
                // First heard of after the trigger: where it stood before is unknown.
                let old = None;
                let (shard, current) = (shard.map(String::from), addr.to_string());
                self.shards.push(ShardPrimary { shard, current, old, announced_us: None, stepped_down_us: None });
                return;
            }
            None => return,
        };
        let s = &mut self.shards[i];
        if s.current == addr {
            return;
        }
        s.current = addr.to_string();
        if self.triggered && s.old.as_deref() != Some(addr) {
            s.announced_us.get_or_insert(at_us);
        }
    }

    /// Whether an answer `server` gave at `end_us` came from the deposed old primary of
    /// `shard` (after another primary was announced, before it was seen stepping down): since
    /// when it was isolated, the announcement.
    pub(crate) fn isolated(&self, shard: Option<&str>, server: Option<&str>, end_us: u64) -> Option<u64> {
        let server = server?;
        let s = self.shards.iter().find(|s| s.shard.as_deref() == shard && s.old.as_deref() == Some(server))?;
        let since = s.announced_us.filter(|at| end_us >= *at)?;
        let stepped_down = s.stepped_down_us.is_some_and(|at| end_us >= at);
        (s.current != server && !stepped_down).then_some(since)
    }

    /// Whether an old primary of `shard` was isolated at `end_us` (announced replaced, not seen
    /// stepping down): an answer from an unnamed server then may have come from it.
    pub(crate) fn any_isolated(&self, shard: Option<&str>, end_us: u64) -> bool {
        self.shards
            .iter()
            .filter(|s| s.shard.as_deref() == shard && s.old.is_some())
            .any(|s| s.announced_us.is_some_and(|at| end_us >= at) && s.stepped_down_us.is_none_or(|at| end_us < at))
    }

    /// A watch for the next trial: the primaries as last announced, nothing else.
    pub(crate) fn carried_over(&self) -> Self {
        let shards = self
            .shards
            .iter()
            .map(|s| ShardPrimary {
                shard: s.shard.clone(),
                current: s.current.clone(),
                old: None,
                announced_us: None,
                stepped_down_us: None,
            })
            .collect();
        Self { triggered: false, shards }
    }

    /// The deposed old primary of `shard`, once another was announced.
    pub(crate) fn old_primary(&self, shard: Option<&str>) -> Option<&str> {
        let s = self.shards.iter().find(|s| s.shard.as_deref() == shard)?;
        s.announced_us.and(s.old.as_deref())
    }
}

/// What a `Topology` event names: one primary (`h:p`), or a cluster's layout
/// (`shard0=h:p shard1=h:p`), shard by shard.
fn layout(primary: &str) -> Vec<(Option<&str>, &str)> {
    if !primary.contains('=') {
        return vec![(None, primary)];
    }
    primary.split_whitespace().filter_map(|part| part.split_once('=')).map(|(s, a)| (Some(s), a)).collect()
}

/// The first answer of each stream from a deposed old primary, as a client's trial saw it.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct FirstIsolated(pub(crate) [Option<u64>; 2]);

impl FirstIsolated {
    pub(crate) fn see(&mut self, stream: Stream, end_us: u64) {
        let first = &mut self.0[stream.index()];
        *first = Some(first.map_or(end_us, |f| f.min(end_us)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(at_us: u64, kind: EventKind) -> Event {
        Event { at_us, trial: 0, kind }
    }

    fn topology(primary: &str) -> EventKind {
        EventKind::Topology {
            source: "sentinel".into(),
            server: None,
            role: None,
            run_id: None,
            primary: Some(primary.into()),
        }
    }

    #[test]
    fn the_old_primary_is_isolated_from_the_announcement_until_it_steps_down() {
        let mut w = OldPrimaryWatch::default();
        w.event(&at(0, topology("h:1")));
        assert_eq!(w.isolated(None, Some("h:1"), 5), None, "no trigger: nothing is isolated");
        w.event(&at(10, EventKind::TriggerStart { kind: "command".into(), detail: "x".into() }));
        w.event(&at(20, topology("h:1")));
        assert_eq!(w.isolated(None, Some("h:1"), 30), None, "not replaced yet");
        w.event(&at(2_000, topology("h:2")));
        assert_eq!(w.isolated(None, Some("h:1"), 1_999), None, "before the announcement");
        assert!(w.isolated(None, Some("h:1"), 2_000).is_some());
        assert_eq!(w.isolated(None, Some("h:2"), 2_500), None, "the new primary is not isolated");
        assert_eq!(w.old_primary(None), Some("h:1"));
        // An unreachable node has not stepped down: still isolated.
        let unreachable = EventKind::StepDown { shard: None, server: "h:1".into(), role: "unreachable".into() };
        w.event(&at(2_300, unreachable));
        assert!(w.isolated(None, Some("h:1"), 9_000).is_some());
        w.event(&at(10_000, EventKind::StepDown { shard: None, server: "h:1".into(), role: "slave".into() }));
        assert!(w.isolated(None, Some("h:1"), 9_999).is_some());
        assert_eq!(w.isolated(None, Some("h:1"), 10_000), None, "a replica now");
    }

    #[test]
    fn a_cluster_layout_is_watched_shard_by_shard_and_nothing_is_guessed() {
        let mut w = OldPrimaryWatch::default();
        w.event(&at(0, topology("shard0=h:1 shard1=h:2")));
        w.event(&at(10, EventKind::TriggerStart { kind: "kill".into(), detail: "x".into() }));
        w.event(&at(20, topology("shard0=h:3 shard1=h:2")));
        assert!(w.isolated(Some("shard0"), Some("h:1"), 30).is_some());
        assert_eq!(w.isolated(Some("shard1"), Some("h:2"), 30), None);
        // No primary announced before the trigger: no old primary known.
        let mut w = OldPrimaryWatch::default();
        w.event(&at(10, EventKind::TriggerStart { kind: "kill".into(), detail: "x".into() }));
        w.event(&at(20, topology("h:1")));
        w.event(&at(30, topology("h:2")));
        assert_eq!(w.isolated(None, Some("h:1"), 40), None);
        assert_eq!(w.old_primary(None), None);
    }
}

/// A silent failure as the analysis sees it: events and probes in, phases, counts and the
/// headline out.
#[cfg(test)]
pub(crate) mod silent_failure {
    use crate::analysis::summary::{PhaseId, Summary};
    use crate::analysis::tests::meta;
    use crate::analysis::Analyzer;
    use crate::sample::*;

    const OLD: &str = "127.0.0.1:1";
    const NEW: &str = "127.0.0.1:2";

    fn sample(
        client: Option<&str>,
        stream: Stream,
        seq: u64,
        ms: u64,
        server: &str,
        class: Option<ErrorClass>,
    ) -> Sample {
        let scheduled_us = ms * 1000;
        // A timeout answers at its deadline; the rest within a millisecond.
        let latency_us = if class == Some(ErrorClass::Timeout) { 250_000 } else { 500 };
        Sample {
            trial: 0,
            stream,
            seq,
            scheduled_us,
            start_us: scheduled_us,
            end_us: scheduled_us + latency_us,
            latency_us,
            outcome: if class.is_none() { Outcome::Ok } else { Outcome::Failed },
            error_class: class,
            error: class.map(|c| c.to_string()),
            server: Some(server.to_string()),
            value: (stream == Stream::Read).then_some(seq),
            shard: None,
            client: client.map(String::from),
        }
    }

    fn at(at_us: u64, kind: EventKind) -> Record {
        Record::Event(Event { at_us, trial: 0, kind })
    }

    /// The primary OLD vanishes at 1 s (every packet dropped) until 9 s. failprobe's own client
    /// times out, then writes to NEW once Sentinel announced it (2.96 s). `pinned` times out
    /// until the heal, then OLD, still primary, acknowledges its writes from 9 s until it is
    /// demoted at 9.25 s (writes 901..=925); READONLY after. Records in time order, as they
    /// arrive live.
    fn records() -> Vec<(u64, Record)> {
        let topology = |primary: &str| EventKind::Topology {
            source: "sentinel".into(),
            server: None,
            role: Some("sentinel".into()),
            run_id: None,
            primary: Some(primary.into()),
        };
        let fault = |state| EventKind::NetworkFault {
            state,
            fault: "blackhole".into(),
            node: OLD.into(),
            detail: "every packet dropped".into(),
        };
        let mut out: Vec<Record> = vec![
            at(0, EventKind::TrialStart),
            at(100_000, topology(OLD)),
            at(1_000_000, EventKind::TriggerStart { kind: "blackhole".into(), detail: "x".into() }),
            at(1_000_100, fault(FaultState::Injected)),
            at(2_200_000, EventKind::FailureDetected { source: "sentinel +odown".into(), detail: "x".into() }),
            at(2_960_000, topology(NEW)),
            at(3_270_000, EventKind::Unreachable { shard: None, server: OLD.into() }),
            at(9_000_000, fault(FaultState::Healed)),
            at(9_000_100, EventKind::TriggerFinish { detail: "x".into() }),
            at(9_250_000, EventKind::StepDown { shard: None, server: OLD.into(), role: "slave".into() }),
        ];
        for i in 0..1200u64 {
            let ms = i * 10;
            let own = match ms {
                ..1000 => (OLD, None),
                1000..3000 => (OLD, Some(ErrorClass::Timeout)),
                _ => (NEW, None),
            };
            let pinned = match ms {
                ..1000 => (OLD, None),
                1000..9000 => (OLD, Some(ErrorClass::Timeout)),
                9000..9250 => (OLD, None),
                _ => (OLD, Some(ErrorClass::Readonly)),
            };
            // Reads: OLD answers again at the heal and, a replica after 9.25 s, keeps answering.
            let pinned_read = if (1000..9000).contains(&ms) { Some(ErrorClass::Timeout) } else { None };
            for (client, (server, class), read) in [(None, own, own.1), (Some("pinned"), pinned, pinned_read)] {
                out.push(Record::Sample(sample(client, Stream::Write, i + 1, ms, server, class)));
                out.push(Record::Sample(sample(client, Stream::Read, i + 1, ms + 5, server, read)));
            }
        }
        let log = |present: Vec<u64>, client: Option<&str>| EventKind::WriteLog {
            server: NEW.into(),
            present: to_ranges(&present),
            shard: None,
            client: client.map(String::from),
        };
        let own: Vec<u64> = (1..=1200).filter(|n| !(101..=300).contains(n)).collect();
        out.push(at(12_100_000, log(own, None)));
        out.push(at(12_100_000, log((1..=100).collect(), Some("pinned"))));
        out.push(at(12_200_000, EventKind::TrialEnd { reason: "not recovered (pinned)".into() }));
        let mut timed: Vec<(u64, Record)> = out
            .into_iter()
            .map(|r| match &r {
                Record::Event(e) => (e.at_us, r),
                Record::Sample(s) => (s.end_us, r),
            })
            .collect();
        timed.sort_by_key(|(t, _)| *t);
        timed
    }

    /// The silent failure's summary under `budget` (the reports' tests read it).
    pub(crate) fn summary(budget: Budget) -> Summary {
        let mut m = meta(1, budget);
        m.clients = vec!["failprobe".into(), "pinned".into()];
        let mut a = Analyzer::new(m);
        for (_, r) in records() {
            a.ingest(r);
        }
        a.finish().summary
    }

    fn analyse(records: impl IntoIterator<Item = Record>) -> Summary {
        let mut m = meta(1, Budget::default());
        m.clients = vec!["failprobe".into(), "pinned".into()];
        let mut a = Analyzer::new(m);
        for r in records {
            a.ingest(r);
        }
        a.finish().summary
    }

    #[test]
    fn writes_the_isolated_old_primary_took_are_split_brain_and_no_recovery() {
        let live = analyse(records().into_iter().map(|(_, r)| r));
        let t = &live.trials[0];
        let (own, pinned) = (&t.clients[0], &t.clients[1]);
        assert!(own.writes.recovered && own.integrity.split_brain_writes == 0, "{:?}", own.integrity);
        // 901..=925 acknowledged by OLD after NEW was announced, then gone.
        let i = &pinned.integrity;
        assert_eq!((i.lost_acked_writes, i.split_brain_writes), (25, 25), "{i:?}");
        assert_eq!((i.split_brain_first_ms, i.split_brain_last_ms), (Some(9000.5), Some(9240.5)));
        assert_eq!(i.split_brain_server.as_deref(), Some(OLD));
        // The writes OLD took are no recovery: one outage from the fault to the end.
        assert!(!pinned.writes.recovered, "{:?}", pinned.writes.outages);
        assert_eq!(pinned.writes.outages.len(), 1, "{:?}", pinned.writes.outages);
        let errors = &pinned.writes.outages[0].errors;
        assert_eq!((errors["timeout"], errors["split-brain"], errors["readonly"]), (800, 25, 275));
        // Its reads: answered by OLD isolated until it stepped down, then by a replica.
        assert!(pinned.reads.recovered);
        assert_eq!(pinned.reads.outages.last().map(|o| o.end_ms), Some(9255.5));
        let phases: Vec<(PhaseId, Option<f64>)> = pinned.phases.iter().map(|p| (p.phase, p.at_ms)).collect();
        for expected in [
            (PhaseId::FaultInjected, Some(1000.1)),
            (PhaseId::FailureDetected, Some(2200.0)),
            (PhaseId::NewPrimary, Some(2960.0)),
            (PhaseId::OldPrimaryUnreachable, Some(3270.0)),
            (PhaseId::FaultHealed, Some(9000.0)),
            (PhaseId::WritesOnIsolatedPrimary, Some(9000.5)),
            (PhaseId::SteppedDown, Some(9250.0)),
            (PhaseId::WritesNotRecovered, Some(11_990.5)),
        ] {
            assert!(phases.contains(&expected), "{expected:?} in {phases:?}");
        }
        assert!(!phases.iter().any(|(p, _)| *p == PhaseId::WritesRecovered), "{phases:?}");
        assert_eq!(
            live.verdict.headline,
            "RECOVERED for failprobe — no budget set; pinned NOT RECOVERED (answered by the deposed old primary) \
             and lost 25 acknowledged writes (25 of them split-brain) (outside the budget)"
        );
        assert_eq!(
            crate::analysis::sentence::split_brain(i).unwrap(),
            "the deposed old primary 127.0.0.1:1 kept acknowledging writes for 240.0 ms after the new primary \
             was announced (9000.5 → 9240.5 ms); 25 of them lost: split-brain writes"
        );
        // Read back from disk (every event first, then the probes): the same report.
        let (events, samples): (Vec<Record>, Vec<Record>) =
            records().into_iter().map(|(_, r)| r).partition(|r| matches!(r, Record::Event(_)));
        let replayed = analyse(events.into_iter().chain(samples));
        assert_eq!(serde_json::to_value(&live).unwrap(), serde_json::to_value(&replayed).unwrap());
    }

    /// The same run, `pinned` an adapter that does not say which server answered: its writes
    /// acknowledged while OLD was isolated may be split-brain or not; the count says unknown.
    #[test]
    fn an_adapter_answering_while_the_old_primary_is_isolated_has_split_brain_unknown_not_zero() {
        let records = records().into_iter().map(|(_, r)| match r {
            Record::Sample(mut s) if s.client.as_deref() == Some("pinned") => {
                s.server = None;
                Record::Sample(s)
            }
            r => r,
        });
        let s = analyse(records);
        let (own, pinned) = (&s.trials[0].clients[0], &s.trials[0].clients[1]);
        assert!(!own.integrity.split_brain_unknown, "failprobe's own client names its server");
        let i = &pinned.integrity;
        assert!(i.split_brain_unknown && i.split_brain_writes == 0, "{i:?}");
        assert!(i.lost_acked_writes > 0);
        assert!(s.verdict.headline.contains("how many split-brain unknown"), "{}", s.verdict.headline);
    }

    #[test]
    fn an_unreachable_old_primary_is_not_a_step_down_even_as_older_runs_logged_it() {
        let records = records().into_iter().map(|(_, r)| match r {
            Record::Event(Event { at_us, kind: EventKind::Unreachable { shard, server }, .. }) => {
                at(at_us, EventKind::StepDown { shard, server, role: "unreachable".into() })
            }
            r => r,
        });
        let s = analyse(records);
        let pinned = &s.trials[0].clients[1];
        let phase = |id| pinned.phases.iter().find(|p| p.phase == id).and_then(|p| p.at_ms);
        assert_eq!(phase(PhaseId::OldPrimaryUnreachable), Some(3270.0));
        assert_eq!(phase(PhaseId::SteppedDown), Some(9250.0), "the step-down is the ROLE answer");
        let timeline: Vec<&str> = s.trials[0].timeline.iter().map(|e| e.what.as_str()).collect();
        assert!(
            timeline.contains(&"old primary 127.0.0.1:1 unreachable: ROLE unanswered, not stepped down"),
            "{timeline:?}"
        );
        assert!(timeline.contains(&"old primary 127.0.0.1:1 stepped down (now slave)"), "{timeline:?}");
    }
}
