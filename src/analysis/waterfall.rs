//! Where the time went, per trial and client: trigger → failure detected (Sentinel `+sdown` /
//! `+odown`, cluster `PFAIL` / `FAIL`, AWS "failover started") → new primary announced →
//! endpoint flipped or DNS answer changed → old primary stepped down (ROLE answered as a
//! replica, never an unreachable node) → each stream of the client down and recovered; with a
//! silent failure also the fault injected and healed, the old primary unreachable, and the
//! client answered by the deposed old primary (no recovery). Only what was observed gets a
//! time; the rest is listed as not observed, never guessed. A step-down is seen by asking the
//! old primary every 250 ms and a DNS change by asking every second, so they carry that
//! resolution; the others are the times of the events themselves.

use super::sentence::UNREACHABLE_ROLE;
use super::summary::{Phase, PhaseDetail, PhaseId, StreamSummary, TrialSummary};
use crate::clock::us_to_ms;
use crate::sample::{Event, EventKind, FaultState, Stream};

/// What the run watched besides its probes: a phase it never watched cannot have been observed,
/// and is left out rather than listed as not observed (no endpoint lab, no host name to look
/// up).
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Watches {
    /// The lab's endpoint reported where it sends connections (`EndpointFlip`).
    pub endpoint: bool,
    /// The DNS watch answered at least once (`DnsAnswer`).
    pub dns: bool,
}

impl Watches {
    /// Any event of the run, whichever trial it came in.
    pub(crate) fn see(&mut self, kind: &EventKind) {
        match kind {
            EventKind::EndpointFlip { .. } => self.endpoint = true,
            EventKind::DnsAnswer { .. } => self.dns = true,
            _ => {}
        }
    }
}

/// The phases of one client's trial; empty for a trial without a trigger.
pub(crate) fn phases(t: &TrialSummary, events: &[Event], watches: Watches) -> Vec<Phase> {
    let Some(start) = t.trigger.started_at_ms else { return Vec::new() };
    let after = |at_ms: f64| at_ms >= start;
    let first_event = |want: fn(&EventKind) -> bool| first_event_where(events, start, want);
    let mut out = vec![
        Phase::at(PhaseId::TriggerStarted, Some(start)),
        Phase::at(PhaseId::TriggerCompleted, t.trigger.finished_at_ms),
        // Sentinel's +sdown / +odown, a cluster's PFAIL / FAIL, or AWS's "failover started"; a
        // manual failover has none.
        Phase::at(
            PhaseId::FailureDetected,
            first_event(|k| {
                matches!(k, EventKind::FailureDetected { .. })
                    || matches!(k, EventKind::Aws { class: crate::sample::AwsClass::FailoverStarted, .. })
            }),
        ),
        Phase::at(PhaseId::NewPrimary, t.topology.iter().map(|c| c.at_ms).find(|at| after(*at))),
        Phase::at(
            PhaseId::SteppedDown,
            first_event(|k| matches!(k, EventKind::StepDown { role, .. } if role != UNREACHABLE_ROLE)),
        ),
    ];
    // A state, not a step every failover passes through: listed when seen (older runs logged
    // it as a step-down whose role was `unreachable`).
    let unreachable = first_event(|k| {
        matches!(k, EventKind::Unreachable { .. })
            || matches!(k, EventKind::StepDown { role, .. } if role == UNREACHABLE_ROLE)
    });
    out.extend(unreachable.map(|at| Phase::at(PhaseId::OldPrimaryUnreachable, Some(at))));
    if events.iter().any(|e| matches!(e.kind, EventKind::NetworkFault { .. })) {
        let fault = |want: FaultState| {
            first_event_where(events, start, |k| matches!(k, EventKind::NetworkFault { state, .. } if *state == want))
        };
        out.push(Phase::at(PhaseId::FaultInjected, fault(FaultState::Injected)));
        out.push(Phase::at(PhaseId::FaultHealed, fault(FaultState::Healed)));
    }
    for (phase, stream) in [(PhaseId::WritesOnIsolatedPrimary, &t.writes), (PhaseId::ReadsOnIsolatedPrimary, &t.reads)]
    {
        out.extend(stream.isolated_primary_at_ms.map(|at| Phase::at(phase, Some(at))));
    }
    if watches.endpoint {
        out.push(Phase::at(
            PhaseId::EndpointFlipped,
            first_event(|k| matches!(k, EventKind::EndpointFlip { from: Some(_), .. })),
        ));
    }
    if watches.dns {
        // Polled every second: within the second before this time.
        out.push(Phase::at(
            PhaseId::DnsChanged,
            first_event(|k| matches!(k, EventKind::DnsAnswer { from: Some(_), .. })),
        ));
    }
    for (stream, s) in [(Stream::Write, &t.writes), (Stream::Read, &t.reads)] {
        stream_phases(&mut out, stream, s, start);
    }
    in_order(&mut out);
    out
}

/// In the order they happened; what was not observed last.
fn in_order(phases: &mut [Phase]) {
    phases.sort_by(|a, b| match (a.at_ms, b.at_ms) {
        (Some(x), Some(y)) => x.total_cmp(&y),
        (Some(_), None) => std::cmp::Ordering::Less,
        (None, Some(_)) => std::cmp::Ordering::Greater,
        (None, None) => std::cmp::Ordering::Equal,
    });
}

/// `--probe pubsub`: the client's first subscription lost after the trigger, then when it was
/// made again, or that it was not by the trial's end (`end_ms`). Nothing when none was lost.
pub(crate) fn subscription_phases(
    phases: &mut Vec<Phase>,
    client: Option<&str>,
    events: &[Event],
    start: Option<f64>,
    end_ms: f64,
) {
    let Some(start) = start else { return };
    let ours = |e: &EventKind, made: bool| matches!(e, EventKind::Subscription { client: c, subscribed, .. } if c.as_deref() == client && *subscribed == made);
    let Some(lost) = first_event_where(events, start, |k| ours(k, false)) else { return };
    phases.push(Phase::at(PhaseId::SubscriptionLost, Some(lost)));
    let last_lost = events.iter().filter(|e| ours(&e.kind, false)).map(|e| us_to_ms(e.at_us)).fold(lost, f64::max);
    match first_event_where(events, last_lost, |k| ours(k, true)) {
        Some(again) => phases.push(Phase::at(PhaseId::Resubscribed, Some(again))),
        None => phases.push(Phase::at(PhaseId::NotResubscribed, Some(end_ms))),
    }
    in_order(phases);
}

/// When the first event `want` picks happened at or after `start` (ms).
fn first_event_where(events: &[Event], start: f64, want: impl Fn(&EventKind) -> bool) -> Option<f64> {
    events.iter().map(|e| (e, us_to_ms(e.at_us))).find(|(e, at)| want(&e.kind) && *at >= start).map(|(_, at)| at)
}

/// A stream's outage after the trigger (its first start, its last end): down, then recovered or
/// not. A stream that never went down adds nothing.
fn stream_phases(out: &mut Vec<Phase>, stream: Stream, s: &StreamSummary, start: f64) {
    let outages: Vec<_> = s.outages.iter().filter(|o| o.end_ms >= start).collect();
    let (Some(first), Some(last)) = (outages.first(), outages.last()) else { return };
    let [down, recovered, not_recovered] = PhaseId::of_stream(stream);
    let detail = PhaseDetail { errors: last.errors.clone() };
    out.push(Phase::with(down, Some(first.start_ms), detail));
    out.push(Phase::at(if last.recovered { recovered } else { not_recovered }, Some(last.end_ms)));
}

/// "trigger +0 s · new primary announced +1.04 s · endpoint flipped: not observed · …", times
/// from the trigger's start.
pub(crate) fn describe(phases: &[Phase]) -> String {
    let Some(start) = phases.first().and_then(|p| p.at_ms) else { return String::new() };
    let parts: Vec<String> = phases
        .iter()
        .map(|p| match p.at_ms {
            Some(at) => format!("{} +{}", p.name, crate::duration::format_ms(at - start)),
            None => format!("{}: not observed", p.name),
        })
        .collect();
    parts.join(" · ")
}
