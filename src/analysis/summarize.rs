//! Closed trials and their events become the `TrialSummary`s of summary.json.

use super::integrity::Integrity;
use super::outage::Window;
use super::stream::StreamFigures;
use super::summary::*;
use super::trial::{Closed, TrialState};
use crate::clock::us_to_ms;
use crate::duration::format_ms;
use crate::sample::KeyspacePhase;
use crate::sample::{AwsClass, Event, EventKind, Stream};

pub(crate) fn trial_summary(index: u32, t: &mut TrialState, interval_us: u64) -> TrialSummary {
    let events = std::mem::take(&mut t.events);
    let (reconnects, omitted, isolated) = (t.reconnects, t.omitted_events, t.first_isolated);
    let watch = std::mem::take(&mut t.watch);
    let closed = t.closed_mut().expect("summaries are built from closed trials");
    let mut integrities = shard_integrity(closed, &events);
    for (i, sh) in integrities.iter_mut().zip(&closed.shards) {
        if i.split_brain_first_ms.is_some() {
            i.split_brain_server = watch.old_primary(sh.name.as_deref()).map(String::from);
        }
    }
    let mut integrity = Integrity { checked: !closed.shards.is_empty(), ..Default::default() };
    for i in &integrities {
        integrity.add(i);
    }
    let trigger = trigger_info(&events);
    let target_windows = [&closed.target[0].windows, &closed.target[1].windows];
    let stream = |s: Stream| StreamSummary {
        isolated_primary_at_ms: isolated.0[s.index()].map(us_to_ms),
        ..stream_summary(&closed.target[s.index()], reconnects[s.index()], interval_us)
    };
    let shards = if closed.shards.len() > 1 || closed.shards.iter().any(|s| s.name.is_some()) {
        closed
            .shards
            .iter()
            .zip(&integrities)
            .map(|(sh, integrity)| ShardSummary {
                name: sh.name.clone().unwrap_or_default(),
                writes: stream_summary(&sh.streams[0], 0, interval_us),
                reads: stream_summary(&sh.streams[1], 0, interval_us),
                integrity: integrity.clone(),
            })
            .collect()
    } else {
        Vec::new()
    };
    let (started, ended) = trial_span(&events, closed);
    let summary = TrialSummary {
        index,
        source: events.iter().find_map(|e| match &e.kind {
            EventKind::Source { name } => Some(name.clone()),
            _ => None,
        }),
        started_at_ms: us_to_ms(started),
        ended_at_ms: us_to_ms(ended),
        end_reason: end_reason(&events),
        writes: stream(Stream::Write),
        reads: stream(Stream::Read),
        integrity,
        keyspace: keyspace(&events),
        topology: topology_changes(&events),
        timeline: timeline(&events, target_windows, omitted),
        shards,
        aws: aws_trial(&events, target_windows[0]),
        backups: backups(&events),
        trigger,
        clients: Vec::new(),
    };
    (t.events, t.watch) = (events, watch);
    summary
}

/// Each shard's integrity against its write log (the last one read), and the lost writes
/// marked on its plot series.
fn shard_integrity(closed: &mut Closed, events: &[Event]) -> Vec<Integrity> {
    let mut out = Vec::new();
    for sh in &mut closed.shards {
        let name = sh.name.as_deref();
        let log = events.iter().rev().find_map(|e| match &e.kind {
            EventKind::WriteLog { server, present, shard, .. } if shard.as_deref() == name => {
                Some((server.as_str(), present.as_slice()))
            }
            _ => None,
        });
        let mut integrity = sh.integrity.result(log);
        if let (Some((_, present)), Some(series)) = (log, sh.series.as_mut()) {
            series[Stream::Write.index()].mark_lost(&sh.integrity.lost(present));
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
        out.push(integrity);
    }
    out
}

fn stream_summary(f: &StreamFigures, reconnects: u64, interval_us: u64) -> StreamSummary {
    let outages: Vec<Outage> = f.windows.iter().map(|w| outage(w, interval_us)).collect();
    StreamSummary {
        probes: f.probes,
        ok: f.ok,
        failed: f.probes - f.ok,
        late: f.late,
        reconnects,
        longest_outage_ms: outages.iter().map(|o| o.duration_ms).fold(0.0, f64::max),
        total_outage_ms: outages.iter().map(|o| o.duration_ms).sum(),
        recovered: f.windows.last().is_none_or(|w| w.recovered),
        outages,
        errors: f.errors.clone(),
        send_lateness_ms: f.lateness.clone(),
        latency_ms: f.latency.clone(),
        latency_by_phase_ms: f.phases.clone().map(|[before, during, after]| PhaseLatency { before, during, after }),
        isolated_primary_at_ms: None,
    }
}

fn outage(w: &Window, interval_us: u64) -> Outage {
    Outage {
        start_ms: us_to_ms(w.start_us),
        end_ms: us_to_ms(w.end_us),
        duration_ms: us_to_ms(w.duration_us()),
        uncertainty_ms: us_to_ms(interval_us),
        recovered: w.recovered,
        failed_probes: w.failed_probes,
        errors: w.errors.iter().map(|(k, v)| (k.as_str().to_string(), *v)).collect(),
    }
}

/// From TrialStart to TrialEnd when both were recorded; otherwise whatever was seen.
fn trial_span(events: &[Event], closed: &Closed) -> (u64, u64) {
    let start = events.iter().find(|e| e.kind == EventKind::TrialStart).map(|e| e.at_us);
    let end =
        events.iter().find(|e| matches!(e.kind, EventKind::TrialEnd { .. } | EventKind::Interrupted)).map(|e| e.at_us);
    if let (Some(s), Some(e)) = (start, end) {
        return (s, e);
    }
    let times = events.iter().map(|e| e.at_us).chain(closed.span_us.into_iter().flat_map(|(a, b)| [a, b]));
    let (mut lo, mut hi) = (u64::MAX, 0);
    for t in times {
        lo = lo.min(t);
        hi = hi.max(t);
    }
    (if lo == u64::MAX { 0 } else { lo }, hi)
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

/// The trial's own account of its end (an abort says why); else that the run was stopped.
fn end_reason(events: &[Event]) -> String {
    let said = events.iter().rev().find_map(|e| match &e.kind {
        EventKind::TrialEnd { reason } => Some(reason.clone()),
        _ => None,
    });
    let stopped = events.iter().any(|e| e.kind == EventKind::Interrupted).then(|| "interrupted".to_string());
    said.or(stopped).unwrap_or_else(|| "incomplete (no end recorded: the run stopped abruptly)".to_string())
}

fn keyspace(events: &[Event]) -> Keyspace {
    let mut k = Keyspace::default();
    for e in events {
        if let EventKind::Keyspace { phase, keys, dbs } = &e.kind {
            match phase {
                KeyspacePhase::Before => (k.before, k.dbs_before) = (Some(*keys), dbs.iter().copied().collect()),
                KeyspacePhase::After => (k.after, k.dbs_after) = (Some(*keys), dbs.iter().copied().collect()),
            }
        }
    }
    k.mismatch = k
        .rows()
        .into_iter()
        .filter(|(_, before, after)| matches!((before, after), (Some(b), Some(a)) if a != b))
        .map(|(db, _, _)| db)
        .collect();
    k
}

fn backups(events: &[Event]) -> Vec<Backup> {
    events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::Backup { how, name, node, status, took_ms } => Some(Backup {
                at_ms: us_to_ms(e.at_us),
                how: how.clone(),
                name: name.clone(),
                node: node.clone(),
                status: status.clone(),
                took_ms: *took_ms,
            }),
            _ => None,
        })
        .collect()
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

fn timeline(events: &[Event], windows: [&Vec<Window>; 2], omitted: u64) -> Vec<TimelineEntry> {
    let mut out: Vec<TimelineEntry> = events
        .iter()
        .filter_map(|e| Some(TimelineEntry { at_ms: us_to_ms(e.at_us), what: super::sentence::describe(&e.kind)? }))
        .collect();
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
    if omitted > 0 {
        let at_ms = out.last().map_or(0.0, |e| e.at_ms);
        let what = format!("{omitted} more scheduler and redirect events not listed (events.jsonl has them all)");
        out.push(TimelineEntry { at_ms, what });
    }
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
                class: *class,
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
    aws.failover_completed_at_ms = aws.events.iter().find(|e| e.class == AwsClass::FailoverCompleted).map(|e| e.at_ms);
    aws.recovery_finished_at_ms = aws.events.iter().rev().find(|e| e.class == AwsClass::NodeRecovered).map(|e| e.at_ms);
    aws.writes_recovered_at_ms = write_windows.iter().rev().find(|w| w.recovered).map(|w| us_to_ms(w.end_us));
    if let (Some(done), Some(back)) = (aws.failover_completed_at_ms, aws.writes_recovered_at_ms) {
        aws.completion_lag_ms = Some(done - back);
    }
    Some(aws)
}
