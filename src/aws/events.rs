//! The ElastiCache event log: fetching it (paginated, at most the 14 days AWS keeps), classifying
//! each message, and reading the node-replacement notices into fields.

use super::error::{explain, AwsError};
use super::Client;
use chrono::{DateTime, Datelike, NaiveDateTime, TimeZone, Utc};
use regex::Regex;
use serde::{Deserialize, Serialize};
use std::sync::LazyLock;

/// AWS keeps events for 14 days; DescribeEvents refuses longer windows.
pub(crate) const RETENTION_MINUTES: i32 = 14 * 24 * 60;

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AwsEvent {
    pub date: DateTime<Utc>,
    pub source_type: String,
    pub source_id: String,
    pub message: String,
}

impl AwsEvent {
    pub fn class(&self) -> Class {
        classify(&self.message)
    }
}

pub use crate::sample::AwsClass as Class;

/// By the message text alone, case-insensitively; both the "primary" and the older "master"
/// wording of failover messages match.
pub fn classify(message: &str) -> Class {
    let m = message.to_lowercase();
    let replacement = m.contains("replacement");
    if replacement && (m.contains("canceled") || m.contains("cancelled")) {
        Class::ReplacementCanceled
    } else if replacement && (m.contains("re-scheduled") || m.contains("rescheduled")) {
        Class::ReplacementRescheduled
    } else if m.contains("scheduled for replacement") {
        Class::ReplacementScheduled
    } else if m.starts_with("test failover api called") {
        Class::FailoverStarted
    } else if m.starts_with("failover") && m.contains("completed") {
        Class::FailoverCompleted
    } else if m.starts_with("recovering cache node") {
        Class::NodeRecovering
    } else if m.starts_with("finished recovery for cache node") {
        Class::NodeRecovered
    } else if m.starts_with("cache node") && m.contains("shutdown") {
        Class::NodeShutdown
    } else if m.starts_with("cache node") && (m.contains("restarted") || m.contains("rebooted")) {
        Class::NodeRebooted
    } else if m.contains("service update is available") {
        Class::ServiceUpdateAvailable
    } else {
        Class::Other
    }
}

/// A node-replacement notice read into fields. The raw times are kept: AWS does not document the
/// date format inside these messages, so a time that could not be read is still shown.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct Replacement {
    pub cache_cluster: Option<String>,
    pub node_id: Option<String>,
    pub start: Option<DateTime<Utc>>,
    pub end: Option<DateTime<Utc>>,
    pub start_text: Option<String>,
    pub end_text: Option<String>,
    pub previous_start: Option<DateTime<Utc>>,
    pub previous_end: Option<DateTime<Utc>>,
}

static CLUSTER: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(?i)cache\s*cluster\s*id\s*:\s*([^,\s]+)").expect("valid regex"));
static NODE: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"(?i)node\s*id\s*:\s*([^,\s]+)").expect("valid regex"));
static TIME_LABEL: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)(previous\s+start|previous\s+end|new\s+start|new\s+end|start|end)\s+time\s*:\s*")
        .expect("valid regex")
});

/// Reads a replacement notice; `None` for any other message. `noticed` (the event's date) gives
/// the year when the message has none.
pub(crate) fn parse_replacement(message: &str, noticed: DateTime<Utc>) -> Option<Replacement> {
    if !classify(message).is_replacement() {
        return None;
    }
    let mut r = Replacement {
        cache_cluster: CLUSTER.captures(message).map(|c| c[1].to_string()),
        node_id: NODE.captures(message).map(|c| c[1].trim_end_matches('.').to_string()),
        ..Default::default()
    };
    let labels: Vec<_> = TIME_LABEL.captures_iter(message).collect();
    for (i, caps) in labels.iter().enumerate() {
        let whole = caps.get(0).expect("match");
        let until = labels.get(i + 1).map(|n| n.get(0).expect("match").start()).unwrap_or(message.len());
        let text = clean_time_text(&message[whole.end()..until]);
        let when = parse_time(&text, noticed);
        let label = caps[1].to_lowercase().split_whitespace().collect::<Vec<_>>().join(" ");
        match label.as_str() {
            "start" | "new start" => (r.start, r.start_text) = (when, Some(text)),
            "end" | "new end" => (r.end, r.end_text) = (when, Some(text)),
            "previous start" => r.previous_start = when,
            "previous end" => r.previous_end = when,
            _ => {}
        }
    }
    Some(r)
}

/// The words around a time: "Jun 25 20:00 UTC to " or "... UTC has been canceled".
fn clean_time_text(text: &str) -> String {
    let mut t = text.trim();
    for tail in [" has been canceled", " has been cancelled", " to"] {
        if let Some(i) = t.to_ascii_lowercase().find(tail) {
            t = &t[..i];
        }
    }
    t.trim().trim_end_matches([',', '.', ';']).trim().to_string()
}

/// Lenient: ISO 8601 / RFC 3339 / RFC 2822, "Jun 25 19:00 UTC" (year from `noticed`), "Thu Jun 25
/// 19:00:00 UTC 2026", "Jun 25, 2026 19:00", "25 Jun 2026 19:00", "06/25/2026 19:00". Times are UTC
/// unless they say otherwise; an unknown zone gives `None`.
pub(crate) fn parse_time(text: &str, noticed: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let text = text.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Some(t.with_timezone(&Utc));
    }
    if let Ok(t) = DateTime::parse_from_rfc2822(text) {
        return Some(t.with_timezone(&Utc));
    }
    let words: Vec<&str> = text.split_whitespace().collect();
    let is_utc = |w: &str| ["utc", "gmt", "z", "+0000", "+00:00"].contains(&w.to_lowercase().as_str());
    let kept: Vec<&str> = words.iter().copied().filter(|w| !is_utc(w)).collect();
    if kept.iter().any(|w| w.len() >= 3 && w.chars().all(|c| c.is_ascii_uppercase()) && !is_month_or_day(w)) {
        return None; // a zone we cannot convert (PST, CEST, ...)
    }
    let s = kept.join(" ").replace(',', "");
    const WITH_YEAR: [&str; 10] = [
        "%Y-%m-%d %H:%M:%S",
        "%Y-%m-%dT%H:%M:%S",
        "%Y-%m-%d %H:%M",
        "%Y-%m-%dT%H:%M",
        "%a %b %d %H:%M:%S %Y",
        "%b %d %Y %H:%M",
        "%b %d %Y %H:%M:%S",
        "%d %b %Y %H:%M",
        "%d %b %Y %H:%M:%S",
        "%m/%d/%Y %H:%M",
    ];
    for f in WITH_YEAR {
        if let Ok(t) = NaiveDateTime::parse_from_str(&s, f) {
            return Some(Utc.from_utc_datetime(&t));
        }
    }
    // No year: the one that puts the time nearest to when the notice was published.
    const NO_YEAR: [&str; 6] =
        ["%b %d %H:%M", "%b %d %H:%M:%S", "%a %b %d %H:%M", "%a %b %d %H:%M:%S", "%d %b %H:%M", "%B %d %H:%M"];
    for f in NO_YEAR {
        let candidates = [noticed.year() - 1, noticed.year(), noticed.year() + 1].map(|y| {
            NaiveDateTime::parse_from_str(&format!("{y} {s}"), &format!("%Y {f}"))
                .ok()
                .map(|t| Utc.from_utc_datetime(&t))
        });
        if let Some(best) = candidates.into_iter().flatten().min_by_key(|t| (*t - noticed).num_seconds().abs()) {
            return Some(best);
        }
    }
    None
}

fn is_month_or_day(word: &str) -> bool {
    let w = word.to_lowercase();
    let names = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"];
    let days = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
    names.iter().chain(&days).any(|n| w.starts_with(n))
}

/// Which events to ask for.
#[derive(Clone, Copy, Debug)]
pub enum Window {
    Since(DateTime<Utc>),
    /// The last N minutes by AWS's clock (`Duration`): asking for all 14 days by a start time
    /// from this machine's clock could fall a moment outside what AWS keeps.
    LastMinutes(i32),
}

/// Every event in the window (paginated), oldest first.
pub async fn fetch(client: &Client, window: Window) -> Result<Vec<AwsEvent>, AwsError> {
    let req = client.describe_events().max_records(100);
    let req = match window {
        Window::Since(t) => req.start_time(aws_smithy_types::DateTime::from_millis(t.timestamp_millis())),
        Window::LastMinutes(m) => req.duration(m.clamp(1, RETENTION_MINUTES)),
    };
    let mut pages = req.into_paginator().send();
    let mut out = Vec::new();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| explain("DescribeEvents", e))?;
        out.extend(page.events().iter().filter_map(from_sdk));
    }
    // By time only: events AWS logged in the same millisecond keep the order AWS gave.
    out.sort_by_key(|e| e.date);
    let mut known = std::collections::HashSet::new();
    out.retain(|e| known.insert(e.clone()));
    Ok(out)
}

/// The SDK's timestamp as chrono's, nanoseconds kept.
pub(crate) fn to_chrono(t: &aws_smithy_types::DateTime) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp(t.secs(), t.subsec_nanos())
}

fn from_sdk(e: &aws_sdk_elasticache::types::Event) -> Option<AwsEvent> {
    Some(AwsEvent {
        date: to_chrono(e.date()?)?,
        source_type: e.source_type().map(|t| t.as_str().to_string()).unwrap_or_default(),
        source_id: e.source_identifier().unwrap_or_default().to_string(),
        message: e.message().unwrap_or_default().to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn classifies_failover_wordings_old_and_new() {
        assert_eq!(classify("Test Failover API called for node group 0001"), Class::FailoverStarted);
        assert_eq!(
            classify("Failover from primary node my-rg-001 to replica node my-rg-002 completed"),
            Class::FailoverCompleted
        );
        assert_eq!(
            classify("Failover from master node my-rg-001 to replica node my-rg-002 completed"),
            Class::FailoverCompleted
        );
        assert_eq!(classify("Failover to replica node my-rg-002 completed"), Class::FailoverCompleted);
        assert_eq!(classify("Recovering cache nodes 0001"), Class::NodeRecovering);
        assert_eq!(classify("Finished recovery for cache nodes 0001"), Class::NodeRecovered);
        assert_eq!(classify("Cache node 0001 shutdown"), Class::NodeShutdown);
        assert_eq!(classify("Cache node 0001 restarted"), Class::NodeRebooted);
        assert_eq!(classify("Service update is available for cache node 0001."), Class::ServiceUpdateAvailable);
        assert_eq!(classify("Added cache node 0002 in availability zone us-east-1a"), Class::Other);
    }

    #[test]
    fn reads_the_replacement_seen_in_the_wild() {
        let msg = "The node with Cache Cluster ID: prod-cache-002, Node ID: 2 is scheduled for replacement during the maintenance window from Start Time: Jun 25 19:00 UTC, End Time: Jun 25 20:00 UTC";
        let r = parse_replacement(msg, at("2026-06-20T08:00:00Z")).unwrap();
        assert_eq!(classify(msg), Class::ReplacementScheduled);
        assert_eq!(r.cache_cluster.as_deref(), Some("prod-cache-002"));
        assert_eq!(r.node_id.as_deref(), Some("2"));
        assert_eq!(r.start, Some(at("2026-06-25T19:00:00Z")));
        assert_eq!(r.end, Some(at("2026-06-25T20:00:00Z")));
        assert_eq!(r.start_text.as_deref(), Some("Jun 25 19:00 UTC"));
    }

    #[test]
    fn a_window_early_in_january_noticed_in_december_is_next_year() {
        let t = parse_time("Jan 03 02:00 UTC", at("2026-12-28T10:00:00Z"));
        assert_eq!(t, Some(at("2027-01-03T02:00:00Z")));
    }

    #[test]
    fn reads_rescheduled_and_canceled_notices() {
        let noticed = at("2026-03-01T00:00:00Z");
        let msg = "The replacement in maintenance window for node with Cache Cluster ID: c-001, Node ID: 0001 has re-scheduled from Previous Start Time: 2026-03-05 10:00:00 UTC, Previous End Time: 2026-03-05 11:00:00 UTC to New Start Time: 2026-03-08 10:00:00 UTC, New End Time: 2026-03-08 11:00:00 UTC";
        let r = parse_replacement(msg, noticed).unwrap();
        assert_eq!(classify(msg), Class::ReplacementRescheduled);
        assert_eq!((r.cache_cluster.as_deref(), r.node_id.as_deref()), (Some("c-001"), Some("0001")));
        assert_eq!(r.previous_start, Some(at("2026-03-05T10:00:00Z")));
        assert_eq!(r.previous_end, Some(at("2026-03-05T11:00:00Z")));
        assert_eq!(r.start, Some(at("2026-03-08T10:00:00Z")));
        assert_eq!(r.end, Some(at("2026-03-08T11:00:00Z")));

        let msg = "The replacement for Cache Cluster ID: c-001, Node ID: 0001 scheduled during the maintenance window from Start Time: Thu Mar 05 10:00:00 UTC 2026, End Time: Thu Mar 05 11:00:00 UTC 2026 has been canceled";
        let r = parse_replacement(msg, noticed).unwrap();
        assert_eq!(classify(msg), Class::ReplacementCanceled);
        assert_eq!(r.start, Some(at("2026-03-05T10:00:00Z")));
        assert_eq!(r.end, Some(at("2026-03-05T11:00:00Z")));
    }

    #[test]
    fn unreadable_times_keep_their_text() {
        let msg = "The node with Cache Cluster ID: c-9, Node ID: 0003 is scheduled for replacement during the maintenance window from Start Time: sometime soon, End Time: 25.06. 20h PST";
        let r = parse_replacement(msg, at("2026-06-20T00:00:00Z")).unwrap();
        assert_eq!(r.start, None);
        assert_eq!(r.start_text.as_deref(), Some("sometime soon"));
        assert_eq!(r.end, None);
        assert_eq!(r.node_id.as_deref(), Some("0003"));
    }

    #[test]
    fn odd_characters_in_a_notice_do_not_panic() {
        let msg = "The node with Cache Cluster ID: İİ-1, Node ID: 1 is scheduled for replacement during the maintenance window from Start Time: İstanbul Ω to, End Time: ẞ has been canceled";
        let r = parse_replacement(msg, at("2026-06-20T00:00:00Z")).unwrap();
        assert_eq!(r.cache_cluster.as_deref(), Some("İİ-1"));
        assert_eq!(r.start, None);
    }

    #[test]
    fn reads_other_date_shapes() {
        let n = at("2026-06-20T00:00:00Z");
        for text in [
            "2026-06-25T19:00:00Z",
            "Jun 25, 2026 19:00 UTC",
            "25 Jun 2026 19:00",
            "06/25/2026 19:00 GMT",
            "Thu, 25 Jun 2026 19:00:00 +0000",
        ] {
            assert_eq!(parse_time(text, n), Some(at("2026-06-25T19:00:00Z")), "{text}");
        }
        assert_eq!(parse_time("Jun 25 19:00 PST", n), None);
    }
}
