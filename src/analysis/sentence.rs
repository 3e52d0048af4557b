//! The sentences more than one output says, each written once: the terminal, report.md,
//! report.html, JUnit and summary.json's timeline then cannot say the same thing two ways.

use crate::sample::EventKind;
use std::collections::BTreeMap;

/// "readonly ×782, reset ×1"; empty when there were none (each output says "none" its own way).
pub(crate) fn error_counts<'a, K: std::fmt::Display + 'a>(errors: impl IntoIterator<Item = (K, &'a u64)>) -> String {
    errors.into_iter().map(|(k, v)| format!("{k} ×{v}")).collect::<Vec<_>>().join(", ")
}

/// Error counts of several streams (writes and reads, or every trial), added up by class.
pub(crate) fn sum_errors<'a>(maps: impl IntoIterator<Item = &'a BTreeMap<String, u64>>) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for (k, v) in maps.into_iter().flatten() {
        *out.entry(k.clone()).or_default() += v;
    }
    out
}

/// "BGSAVE of 10.0.0.5:6379 saved in 12 ms (dump.rdb)": a `--backup`, in the timeline and in
/// every report.
pub(crate) fn backup(how: &str, node: &str, status: &str, took_ms: u64, name: &str) -> String {
    let name = if name.is_empty() { String::new() } else { format!(" ({name})") };
    format!("{how} of {node} {status} in {took_ms} ms{name}")
}

/// An event as the timeline says it, or None for one the summary says elsewhere (the reason is
/// by each kind). No `_` arm: a new kind must be described here, or the build fails.
pub(crate) fn describe(kind: &EventKind) -> Option<String> {
    let shard = |s: &Option<String>| s.as_deref().map(|s| format!("{s} ")).unwrap_or_default();
    Some(match kind {
        EventKind::TriggerStart { kind, detail } => format!("trigger {kind} started: {detail}"),
        EventKind::TriggerFinish { detail } => format!("trigger finished: {detail}"),
        EventKind::TriggerError { message } => format!("trigger failed: {message}"),
        EventKind::IntegrityError { message } => format!("integrity check failed: {message}"),
        EventKind::Redirect { shard: s, from, to, slot } => {
            format!("{}MOVED: slot {slot} now on {to} (was {from})", shard(s))
        }
        EventKind::Lateness { stream, late } => {
            format!("{} scheduler fell behind: {late} probes sent late", stream.name())
        }
        EventKind::FailureDetected { source, detail } => format!("failure detected by {source}: {detail}"),
        EventKind::NetworkFault { state, fault, node, detail } => match state {
            crate::sample::FaultState::Injected => format!("network fault {fault} on {node} injected: {detail}"),
            crate::sample::FaultState::Healed => format!("network fault {fault} on {node} healed: {detail}"),
        },
        EventKind::EndpointFlip { endpoint, from: Some(from), to } => {
            format!("endpoint {endpoint} flipped: new connections go to {to} (were going to {from})")
        }
        EventKind::DnsAnswer { name, from: Some(from), to, ttl_s } => format!(
            "DNS {name} now answers {to}{} (was {from}; seen by a poll every 1 s)",
            ttl_s.map(|t| format!(", TTL {t} s")).unwrap_or_default()
        ),
        EventKind::RunbookStep { step, command, status, output } => format!(
            "runbook --{step} `{command}`: {status}{}",
            if output.is_empty() { String::new() } else { format!(": {output}") }
        ),
        EventKind::AdapterFault { client, message } => format!("adapter {client} {message}"),
        EventKind::Backup { how, name, node, status, took_ms } => {
            format!("backup: {}", backup(how, node, status, *took_ms, name))
        }
        EventKind::ClientHello { client, library, version, .. } => {
            format!("adapter {client} started: {library} {version}")
        }
        EventKind::StepDown { shard: s, server, role } => {
            format!("{}old primary {server} stepped down (now {role})", shard(s))
        }
        EventKind::TrialEnd { reason } => format!("trial ended: {reason}"),
        EventKind::Interrupted => "interrupted: the run stopped before every trial ran".to_string(),
        EventKind::Aws { source, message, aws_time, .. } => format!("AWS {source}: {message} (AWS time {aws_time})"),
        EventKind::AwsTopology { resource, status, members } => format!("AWS {resource} {status}: {members}"),
        // The first answer or endpoint target is where things stood, not a change.
        EventKind::EndpointFlip { from: None, .. } | EventKind::DnsAnswer { from: None, .. } => return None,
        // The timeline lists changes of primary, not every answer (`summarize::timeline`).
        EventKind::Topology { .. } => return None,
        // Counted per stream, and too many to list.
        EventKind::Reconnect { .. } => return None,
        // The keyspace table, the integrity figures and the trial's label say these.
        EventKind::TrialStart
        | EventKind::Keyspace { .. }
        | EventKind::WriteLog { .. }
        | EventKind::Seeded { .. }
        | EventKind::SeedsSurviving { .. }
        | EventKind::Source { .. } => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_counts_have_one_spelling() {
        let errors = BTreeMap::from([("readonly".to_string(), 782), ("reset".to_string(), 1)]);
        assert_eq!(error_counts(&errors), "readonly ×782, reset ×1");
        assert_eq!(error_counts(&BTreeMap::<String, u64>::new()), "");
        let both = sum_errors([&errors, &BTreeMap::from([("reset".to_string(), 2)])]);
        assert_eq!(error_counts(&both), "readonly ×782, reset ×3");
    }

    #[test]
    fn a_backup_names_its_file_when_there_is_one() {
        assert_eq!(backup("BGSAVE", "h:1", "saved", 12, "dump.rdb"), "BGSAVE of h:1 saved in 12 ms (dump.rdb)");
        assert_eq!(backup("BGSAVE", "h:1", "failed: x", 3, ""), "BGSAVE of h:1 failed: x in 3 ms");
        let event = EventKind::Backup {
            how: "BGSAVE".into(),
            name: String::new(),
            node: "h:1".into(),
            status: "saved".into(),
            took_ms: 5,
        };
        assert_eq!(describe(&event).as_deref(), Some("backup: BGSAVE of h:1 saved in 5 ms"));
    }

    #[test]
    fn only_changes_are_described() {
        let first = EventKind::DnsAnswer { name: "n".into(), from: None, to: "1.2.3.4".into(), ttl_s: None };
        assert_eq!(describe(&first), None);
        let change = EventKind::DnsAnswer {
            name: "n".into(),
            from: Some("1.2.3.4".into()),
            to: "5.6.7.8".into(),
            ttl_s: Some(5),
        };
        assert_eq!(
            describe(&change).unwrap(),
            "DNS n now answers 5.6.7.8, TTL 5 s (was 1.2.3.4; seen by a poll every 1 s)"
        );
    }
}
