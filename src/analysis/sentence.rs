//! The sentences more than one output says, each written once: the terminal, report.md,
//! report.html, JUnit and summary.json's timeline then cannot say the same thing two ways.

use super::integrity::Integrity;
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

/// What a split-brain write is, and how it is counted: the reports' "how to read this".
pub(crate) const SPLIT_BRAIN_DEFINITION: &str = "A **split-brain write** was acknowledged by the old primary after the deployment had announced a new one (cut off, it still acted as primary; a client that reached it had not recovered) and is missing after recovery: split-brain writes are counted among the lost writes, not beside them.";

/// " (226 of them split-brain)" after a count of lost writes; empty when there are none;
/// "split-brain unknown" when a client acknowledged writes while an old primary was isolated
/// without saying which server answered (an adapter).
pub(crate) fn split_brain_part(split_brain: u64, unknown: bool) -> String {
    match (split_brain, unknown) {
        (0, true) => " (how many split-brain unknown: the client does not say which server answered)".to_string(),
        (0, false) => String::new(),
        (n, _) => format!(" ({n} of them split-brain)"),
    }
}

/// "the deposed old primary 127.0.0.1:6379 kept acknowledging writes for 213 ms after the new
/// primary was announced (20 093.1 → 20 306.0 ms); 226 of them lost: split-brain writes": the
/// window and what became of those writes; None when it acknowledged none.
pub(crate) fn split_brain(i: &Integrity) -> Option<String> {
    let (first, last) = (i.split_brain_first_ms?, i.split_brain_last_ms?);
    let server = i.split_brain_server.as_deref().map(|s| format!(" {s}")).unwrap_or_default();
    let lost = match (i.checked, i.split_brain_writes) {
        (false, _) => "their loss unknown (write log unread)".to_string(),
        (true, 0) => "none of them lost".to_string(),
        (true, n) => format!("{n} of them lost: split-brain writes"),
    };
    Some(format!(
        "the deposed old primary{server} kept acknowledging writes for {} after the new primary was announced ({first:.1} → {last:.1} ms); {lost}",
        crate::duration::format_ms(last - first)
    ))
}

/// The `role` of a `StepDown` whose process was verified gone (a lab node).
pub(crate) const GONE_ROLE: &str = "gone";
/// The `role` older runs gave a `StepDown` when the old primary did not answer: read back as
/// unreachable, never as a step-down.
pub(crate) const UNREACHABLE_ROLE: &str = "unreachable";

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
        EventKind::Subscription { client, subscribed: true, server, .. } => format!(
            "{} subscriber subscribed on {}",
            client.as_deref().unwrap_or(crate::sample::OWN_CLIENT),
            server.as_deref().unwrap_or("?")
        ),
        EventKind::Subscription { client, subscribed: false, server, error } => format!(
            "{} subscriber lost its subscription{}: {}",
            client.as_deref().unwrap_or(crate::sample::OWN_CLIENT),
            server.as_deref().map(|s| format!(" on {s}")).unwrap_or_default(),
            error.as_deref().unwrap_or("unknown")
        ),
        EventKind::Connections { client, node, count } => {
            format!("{client} holds {count} connection{} on {node}", if *count == 1 { "" } else { "s" })
        }
        EventKind::Backup { how, name, node, status, took_ms } => {
            format!("backup: {}", backup(how, node, status, *took_ms, name))
        }
        EventKind::ClientHello { client, library, version, .. } => {
            format!("adapter {client} started: {library} {version}")
        }
        EventKind::StepDown { shard: s, server, role } if role == UNREACHABLE_ROLE => {
            format!("{}old primary {server} unreachable: ROLE unanswered, not stepped down", shard(s))
        }
        EventKind::StepDown { shard: s, server, role } if role == GONE_ROLE => {
            format!("{}old primary {server} stepped down (its process is gone)", shard(s))
        }
        EventKind::StepDown { shard: s, server, role } => {
            format!("{}old primary {server} stepped down (now {role})", shard(s))
        }
        EventKind::Unreachable { shard: s, server } => {
            format!("{}old primary {server} unreachable: ROLE unanswered, not stepped down", shard(s))
        }
        EventKind::Reachable { shard: s, server, role } => format!(
            "{}old primary {server} answers again, as {role}: still acting as primary, what it acknowledges now is lost when it steps down",
            shard(s)
        ),
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
        | EventKind::StreamLog { .. }
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
