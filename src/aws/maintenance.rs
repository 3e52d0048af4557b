//! `failprobe events`: what the ElastiCache event log says is coming (node replacements) and what
//! is pending (service updates), from a history that outlives AWS's 14 days.

use super::error::{explain, AwsError};
use super::events::{self, parse_replacement, AwsEvent, Class};
use super::{group, history, Client};
use anyhow::Result;
use aws_sdk_elasticache::types::UpdateActionStatus;
use chrono::{DateTime, Utc};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::PathBuf;

pub struct Query {
    pub replication_groups: Vec<String>,
    pub cache_clusters: Vec<String>,
    /// 1..=14: how far back to fetch.
    pub days: u32,
    pub history: PathBuf,
    /// Alert (exit 1) when a replacement window starts within this long.
    pub within: Option<chrono::Duration>,
    pub now: DateTime<Utc>,
}

#[derive(Serialize, Clone, Debug, PartialEq)]
pub struct ClassifiedEvent {
    #[serde(flatten)]
    pub event: AwsEvent,
    pub class: Class,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replacement: Option<events::Replacement>,
}

#[derive(Serialize, Clone, Debug, PartialEq)]
pub struct Upcoming {
    pub cache_cluster: String,
    pub node_id: String,
    pub start: Option<DateTime<Utc>>,
    pub end: Option<DateTime<Utc>>,
    /// The window as AWS wrote it, for when it could not be read.
    pub window_text: String,
    /// `scheduled` or `rescheduled`.
    pub status: String,
    pub noticed: DateTime<Utc>,
    pub message: String,
}

#[derive(Serialize, Clone, Debug, PartialEq)]
pub struct UpdateActionRow {
    pub resource: String,
    pub service_update: String,
    pub severity: String,
    pub status: String,
    pub kind: String,
    pub apply_by: Option<DateTime<Utc>>,
}

#[derive(Serialize, Debug)]
pub struct EventsReport {
    /// Sources the report covers; empty: every resource in the region.
    pub scope: Vec<String>,
    pub history_file: String,
    pub fetched: usize,
    pub added: usize,
    pub history_events: usize,
    pub history_since: Option<DateTime<Utc>>,
    pub events: Vec<ClassifiedEvent>,
    pub upcoming_replacements: Vec<Upcoming>,
    pub update_actions: Vec<UpdateActionRow>,
    /// DescribeUpdateActions failed (e.g. not allowed by IAM): the replacement alert still works.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub update_actions_error: Option<String>,
    pub within_hours: Option<f64>,
    /// A replacement window starts within `--within` (or is under way, or could not be read).
    pub alert: bool,
}

pub async fn run(client: &Client, q: &Query) -> Result<EventsReport> {
    let scope = scope(client, q).await?;
    let minutes = q.days.clamp(1, 14) as i32 * 24 * 60;
    let fetched: Vec<AwsEvent> = events::fetch(client, events::Window::LastMinutes(minutes))
        .await?
        .into_iter()
        .filter(|e| in_scope(&scope, e))
        .collect();
    // File locking and fsync block: off the async workers.
    let (path, batch) = (q.history.clone(), fetched.clone());
    let merged = tokio::task::spawn_blocking(move || history::merge(&path, &batch)).await??;
    if merged.damaged_lines > 0 {
        tracing::warn!("{}: {} damaged line(s) skipped", q.history.display(), merged.damaged_lines);
    }
    let events: Vec<AwsEvent> = merged.events.into_iter().filter(|e| in_scope(&scope, e)).collect();
    let upcoming = upcoming_replacements(&events, q.now);
    let alert = q.within.is_some_and(|w| upcoming.iter().any(|u| u.start.is_none_or(|s| s <= q.now + w)));
    let (update_actions, update_actions_error) = match update_actions(client, q).await {
        Ok(rows) => (rows, None),
        Err(e) => {
            crate::note!("warning: pending service updates not listed: {e}");
            (Vec::new(), Some(e.to_string()))
        }
    };
    Ok(EventsReport {
        scope: scope.iter().cloned().collect(),
        history_file: q.history.display().to_string(),
        fetched: fetched.len(),
        added: merged.added,
        history_events: events.len(),
        history_since: events.first().map(|e| e.date),
        events: events.iter().map(classified).collect(),
        upcoming_replacements: upcoming,
        update_actions,
        update_actions_error,
        within_hours: q.within.map(|w| w.num_seconds() as f64 / 3600.0),
        alert,
    })
}

/// The resources asked for, with every member cluster of each replication group (node
/// replacement notices name the member cluster, not the group).
async fn scope(client: &Client, q: &Query) -> Result<BTreeSet<String>, AwsError> {
    let mut scope: BTreeSet<String> = q.cache_clusters.iter().cloned().collect();
    for id in &q.replication_groups {
        let g = group::describe_group(client, id).await?;
        scope.insert(g.id.clone());
        scope.extend(g.member_clusters);
    }
    Ok(scope)
}

fn in_scope(scope: &BTreeSet<String>, e: &AwsEvent) -> bool {
    scope.is_empty() || scope.contains(&e.source_id)
}

fn classified(e: &AwsEvent) -> ClassifiedEvent {
    ClassifiedEvent { event: e.clone(), class: e.class(), replacement: parse_replacement(&e.message, e.date) }
}

/// Replays the notices in order: a reschedule moves the window, a cancellation or the node's
/// recovery after the window opened closes it. What is left, not yet past, is upcoming.
pub fn upcoming_replacements(events: &[AwsEvent], now: DateTime<Utc>) -> Vec<Upcoming> {
    let mut open: BTreeMap<(String, String), Upcoming> = BTreeMap::new();
    for e in events {
        let class = e.class();
        if let Some(r) = parse_replacement(&e.message, e.date) {
            let cluster = r.cache_cluster.clone().unwrap_or_else(|| e.source_id.clone());
            let key = (cluster.clone(), node_key(r.node_id.as_deref().unwrap_or("?")));
            if class == Class::ReplacementCanceled {
                open.remove(&key);
                continue;
            }
            let window_text =
                format!("{} → {}", r.start_text.as_deref().unwrap_or("?"), r.end_text.as_deref().unwrap_or("?"));
            let status = if class == Class::ReplacementRescheduled { "rescheduled" } else { "scheduled" };
            open.insert(
                key,
                Upcoming {
                    cache_cluster: cluster,
                    node_id: r.node_id.unwrap_or_else(|| "?".into()),
                    start: r.start,
                    end: r.end,
                    window_text,
                    status: status.into(),
                    noticed: e.date,
                    message: e.message.clone(),
                },
            );
        } else if class == Class::NodeRecovered {
            for node in nodes_named(&e.message) {
                let key = (e.source_id.clone(), node_key(&node));
                if open.get(&key).is_some_and(|u| u.start.is_some_and(|s| e.date >= s)) {
                    open.remove(&key);
                }
            }
        }
    }
    let mut out: Vec<Upcoming> = open.into_values().filter(|u| u.end.or(u.start).is_none_or(|t| t > now)).collect();
    out.sort_by_key(|u| (u.start, u.cache_cluster.clone()));
    out
}

/// "0002" and "2" name the same node.
fn node_key(id: &str) -> String {
    let t = id.trim_start_matches('0');
    if t.is_empty() {
        "0".into()
    } else {
        t.to_string()
    }
}

/// "Finished recovery for cache nodes 0001,0002" → ["0001", "0002"].
fn nodes_named(message: &str) -> Vec<String> {
    let tail = message.rsplit_once("nodes").or_else(|| message.rsplit_once("node")).map(|(_, t)| t).unwrap_or("");
    tail.split([',', ' '])
        .map(|s| s.trim().trim_end_matches('.'))
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

const PENDING: [UpdateActionStatus; 7] = [
    UpdateActionStatus::NotApplied,
    UpdateActionStatus::WaitingToStart,
    UpdateActionStatus::InProgress,
    UpdateActionStatus::Stopping,
    UpdateActionStatus::Stopped,
    UpdateActionStatus::Scheduling,
    UpdateActionStatus::Scheduled,
];

async fn update_actions(client: &Client, q: &Query) -> Result<Vec<UpdateActionRow>, AwsError> {
    let mut req = client.describe_update_actions().max_records(100);
    for id in &q.replication_groups {
        req = req.replication_group_ids(id);
    }
    for id in &q.cache_clusters {
        req = req.cache_cluster_ids(id);
    }
    for status in PENDING {
        req = req.update_action_status(status);
    }
    let mut pages = req.into_paginator().send();
    let mut out = Vec::new();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| explain("DescribeUpdateActions", e))?;
        for a in page.update_actions() {
            out.push(UpdateActionRow {
                resource: a.replication_group_id().or(a.cache_cluster_id()).unwrap_or_default().to_string(),
                service_update: a.service_update_name().unwrap_or_default().to_string(),
                severity: a.service_update_severity().map(|s| s.as_str().to_string()).unwrap_or_default(),
                status: a.update_action_status().map(|s| s.as_str().to_string()).unwrap_or_default(),
                kind: a.service_update_type().map(|s| s.as_str().to_string()).unwrap_or_default(),
                apply_by: a.service_update_recommended_apply_by_date().and_then(events::to_chrono),
            });
        }
    }
    Ok(out)
}

fn when(t: Option<DateTime<Utc>>) -> String {
    t.map(|t| t.format("%Y-%m-%d %H:%M UTC").to_string()).unwrap_or_else(|| "?".into())
}

fn until(now: DateTime<Utc>, t: Option<DateTime<Utc>>) -> String {
    let Some(t) = t else { return "window unreadable".into() };
    let seconds = (t - now).num_seconds();
    if seconds <= 0 {
        return "under way".into();
    }
    format!("in {}", span_text(seconds as f64 / 3600.0))
}

/// 168 → "7d", 36 → "1d 12h", 0.5 → "30m".
fn span_text(hours: f64) -> String {
    let minutes = (hours * 60.0).round() as i64;
    let (d, h, m) = (minutes / 1440, minutes % 1440 / 60, minutes % 60);
    let parts: Vec<String> =
        [(d, "d"), (h, "h"), (m, "m")].iter().filter(|(n, _)| *n > 0).map(|(n, unit)| format!("{n}{unit}")).collect();
    if parts.is_empty() {
        "0m".into()
    } else {
        parts.join(" ")
    }
}

/// The terminal view: upcoming replacements first, then pending updates, then the events.
pub fn render(r: &EventsReport, now: DateTime<Utc>) -> String {
    let mut s = String::new();
    let scope = if r.scope.is_empty() { "every resource in the region".to_string() } else { r.scope.join(", ") };
    let _ = writeln!(s, "ElastiCache events for {scope}");
    let _ = writeln!(
        s,
        "fetched {} from AWS ({} new); history {}: {} events since {}",
        r.fetched,
        r.added,
        r.history_file,
        r.history_events,
        when(r.history_since)
    );
    let _ = writeln!(s, "\nUpcoming node replacements:");
    if r.upcoming_replacements.is_empty() {
        let _ = writeln!(s, "  none scheduled");
    }
    for u in &r.upcoming_replacements {
        let window = match (u.start, u.end) {
            (Some(a), Some(b)) => format!("{} → {}", when(Some(a)), b.format("%H:%M UTC")),
            _ => u.window_text.clone(),
        };
        let _ = writeln!(
            s,
            "  {:<24} node {:<5} {:<40} {:<18} {} (notice {})",
            u.cache_cluster,
            u.node_id,
            window,
            until(now, u.start),
            u.status,
            when(Some(u.noticed))
        );
    }
    let _ = writeln!(s, "\nPending service updates:");
    match &r.update_actions_error {
        Some(e) => {
            let _ = writeln!(s, "  could not be listed: {e}");
        }
        None if r.update_actions.is_empty() => {
            let _ = writeln!(s, "  none");
        }
        None => {}
    }
    for a in &r.update_actions {
        let _ = writeln!(
            s,
            "  {:<24} {:<32} {:<10} {:<16} {:<18} apply by {}",
            a.resource,
            a.service_update,
            a.severity,
            a.status,
            a.kind,
            when(a.apply_by)
        );
    }
    let _ = writeln!(s, "\nEvents ({}):", r.events.len());
    for e in &r.events {
        let _ = writeln!(
            s,
            "  {}  {:<24} {:<24} {}",
            e.event.date.format("%Y-%m-%d %H:%M:%S"),
            e.event.source_id,
            e.class.as_str(),
            e.event.message
        );
    }
    if let Some(h) = r.within_hours {
        let verdict = if r.alert { "ALERT: a node replacement" } else { "no node replacement" };
        let _ = writeln!(s, "\n{verdict} within {}", span_text(h));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn ev(day: u32, source: &str, message: &str) -> AwsEvent {
        AwsEvent {
            date: Utc.with_ymd_and_hms(2026, 6, day, 8, 0, 0).unwrap(),
            source_type: "cache-cluster".into(),
            source_id: source.into(),
            message: message.into(),
        }
    }

    const SCHEDULED: &str = "The node with Cache Cluster ID: c-002, Node ID: 2 is scheduled for replacement during the maintenance window from Start Time: Jun 25 19:00 UTC, End Time: Jun 25 20:00 UTC";

    #[test]
    fn scheduled_then_canceled_then_rescheduled() {
        let now = Utc.with_ymd_and_hms(2026, 6, 21, 0, 0, 0).unwrap();
        let up = upcoming_replacements(&[ev(20, "c-002", SCHEDULED)], now);
        assert_eq!(up.len(), 1);
        assert_eq!(up[0].start, Some(Utc.with_ymd_and_hms(2026, 6, 25, 19, 0, 0).unwrap()));
        let canceled = "The replacement for Cache Cluster ID: c-002, Node ID: 0002 scheduled during the maintenance window from Start Time: Jun 25 19:00 UTC, End Time: Jun 25 20:00 UTC has been canceled";
        assert!(upcoming_replacements(&[ev(20, "c-002", SCHEDULED), ev(21, "c-002", canceled)], now).is_empty());
        // Past windows are not upcoming.
        let later = Utc.with_ymd_and_hms(2026, 6, 26, 0, 0, 0).unwrap();
        assert!(upcoming_replacements(&[ev(20, "c-002", SCHEDULED)], later).is_empty());
    }

    #[test]
    fn spans_read_like_the_flag() {
        assert_eq!(span_text(168.0), "7d");
        assert_eq!(span_text(36.0), "1d 12h");
        assert_eq!(span_text(0.5), "30m");
    }

    #[test]
    fn recovery_inside_the_window_closes_it() {
        let now = Utc.with_ymd_and_hms(2026, 6, 25, 19, 30, 0).unwrap();
        let mut done = ev(25, "c-002", "Finished recovery for cache nodes 0002");
        done.date = Utc.with_ymd_and_hms(2026, 6, 25, 19, 20, 0).unwrap();
        assert_eq!(upcoming_replacements(&[ev(20, "c-002", SCHEDULED)], now).len(), 1);
        assert!(upcoming_replacements(&[ev(20, "c-002", SCHEDULED), done], now).is_empty());
    }
}
