//! During a run: the ElastiCache side of the story. Polls DescribeEvents and the group's (or
//! cache cluster's) description, and puts both on the run's timeline: AWS events at AWS's own
//! timestamp, so what the probes saw and what AWS says happened sit side by side.

use super::error::AwsError;
use super::events::{self, AwsEvent};
use super::{group, Client};
use crate::sample::EventKind;
use crate::sink::Reporter;
use chrono::{DateTime, Utc};
use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;
use tokio::sync::watch;

/// A change failprobe made to the deployment that must be undone before it exits.
#[derive(Clone, Debug, PartialEq)]
pub enum Restore {
    /// Automatic failover (and Multi-AZ) were disabled for a promotion.
    AutomaticFailover { group: String, multi_az: bool },
}

impl Restore {
    /// The AWS CLI command that undoes it, for when failprobe cannot.
    pub fn cli(&self) -> String {
        match self {
            Restore::AutomaticFailover { group, multi_az } => format!(
                "aws elasticache modify-replication-group --replication-group-id {group} --automatic-failover-enabled{} --apply-immediately",
                if *multi_az { " --multi-az-enabled" } else { "" }
            ),
        }
    }
}

/// The AWS side of a run: the client, the resource, the events seen so far.
pub struct AwsRun {
    pub client: Client,
    pub group: Option<String>,
    pub cache_cluster: Option<String>,
    pub allow_multi_az_toggle: bool,
    /// `--region` / `--profile` / `--endpoint-url`: other services' clients (FIS) are built
    /// from them too.
    pub api: super::AwsArgs,
    /// Between DescribeEvents / Describe* polls.
    pub poll: Duration,
    /// How long a trigger waits for AWS's completion events.
    pub wait: Duration,
    /// Event sources of interest: the group and its member clusters, or the cache cluster.
    sources: Mutex<BTreeSet<String>>,
    /// Events older than this are not this run's.
    since: OnceLock<DateTime<Utc>>,
    seen: Mutex<Vec<AwsEvent>>,
    report: OnceLock<Reporter>,
    last_topology: Mutex<String>,
    pub(super) pending_restores: Mutex<Vec<Restore>>,
    /// When DescribeEvents / Describe* were last called: a waiting trigger polls too, and the
    /// background loop then skips its turn rather than ask AWS twice.
    events_polled: Mutex<Option<std::time::Instant>>,
    topology_polled: Mutex<Option<std::time::Instant>>,
}

impl AwsRun {
    pub fn new(
        client: Client,
        group: Option<String>,
        cache_cluster: Option<String>,
        sources: BTreeSet<String>,
    ) -> Self {
        Self {
            client,
            group,
            cache_cluster,
            allow_multi_az_toggle: false,
            api: super::AwsArgs::default(),
            poll: Duration::from_secs(5),
            wait: Duration::from_secs(20 * 60),
            sources: Mutex::new(sources),
            since: OnceLock::new(),
            seen: Mutex::new(Vec::new()),
            report: OnceLock::new(),
            last_topology: Mutex::new(String::new()),
            pending_restores: Mutex::new(Vec::new()),
            events_polled: Mutex::new(None),
            topology_polled: Mutex::new(None),
        }
    }

    /// From here on events go to the run's timeline; earlier AWS events are not this run's.
    pub(crate) fn attach(&self, report: Reporter) {
        let start: DateTime<Utc> = report.clock.wall_start().into();
        let _ = self.since.set(start - chrono::Duration::seconds(5));
        let _ = self.report.set(report);
    }

    pub fn seen(&self) -> Vec<AwsEvent> {
        self.seen.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// Fetches new events, puts each on the timeline once, returns all seen so far.
    pub(crate) async fn poll_events(&self) -> Result<Vec<AwsEvent>, AwsError> {
        let since = *self.since.get_or_init(|| Utc::now() - chrono::Duration::seconds(5));
        stamp(&self.events_polled);
        let fetched = events::fetch(&self.client, events::Window::Since(since)).await?;
        let sources = self.sources.lock().map(|s| s.clone()).unwrap_or_default();
        let mut seen = self.seen.lock().map_err(|_| poisoned())?;
        for e in fetched.into_iter().filter(|e| sources.contains(&e.source_id) && e.date >= since) {
            if seen.contains(&e) {
                continue;
            }
            self.on_timeline(&e, e.class());
            seen.push(e);
        }
        seen.sort_by_key(|e| e.date);
        Ok(seen.clone())
    }

    /// Puts what AWS said on the run's timeline at AWS's own time (ElastiCache's events, a FIS
    /// experiment's states); nothing before the run is attached.
    pub(crate) fn on_timeline(&self, e: &AwsEvent, class: events::Class) {
        let Some(report) = self.report.get() else { return };
        let wall: DateTime<Utc> = report.clock.wall_start().into();
        let at_us = (e.date - wall).num_microseconds().unwrap_or(0).max(0) as u64;
        report.event_at(
            at_us,
            EventKind::Aws {
                source: e.source_id.clone(),
                source_type: e.source_type.clone(),
                class,
                message: e.message.clone(),
                aws_time: e.date.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                seen_us: report.clock.now_us(),
            },
        );
    }

    /// Status and member roles, on the timeline whenever they change.
    pub(crate) async fn poll_topology(&self) -> Result<(), AwsError> {
        stamp(&self.topology_polled);
        let (resource, status, members) = if let Some(id) = &self.group {
            let g = group::describe_group(&self.client, id).await?;
            if let Ok(mut sources) = self.sources.lock() {
                sources.extend(g.member_clusters.iter().cloned());
            }
            (g.id.clone(), g.status.clone(), g.roles())
        } else if let Some(id) = &self.cache_cluster {
            let c = group::describe_cache_cluster(&self.client, id).await?;
            (c.id.clone(), c.status.clone(), c.node_states())
        } else {
            return Ok(());
        };
        let line = format!("{status} {members}");
        let changed = self.last_topology.lock().map(|mut last| std::mem::replace(&mut *last, line.clone()) != line);
        if changed.unwrap_or(false) {
            if let Some(report) = self.report.get() {
                report.event(EventKind::AwsTopology { resource, status, members });
            }
        }
        Ok(())
    }

    /// Polls until `done` finds what it waits for in the events seen, or `limit` passes.
    pub(crate) async fn wait_for<T>(
        &self,
        limit: Duration,
        done: impl Fn(&[AwsEvent]) -> Option<T>,
    ) -> Result<T, String> {
        let until = tokio::time::Instant::now() + limit;
        let mut last_error = None;
        loop {
            match self.poll_events().await {
                Ok(seen) => {
                    if let Some(found) = done(&seen) {
                        return Ok(found);
                    }
                }
                Err(e) => last_error = Some(e.to_string()),
            }
            let _ = self.poll_topology().await;
            if tokio::time::Instant::now() + self.poll > until {
                return Err(last_error.unwrap_or_default());
            }
            tokio::time::sleep(self.poll).await;
        }
    }

    /// Polls in the background until `stop`; errors go to the log, not the run.
    pub fn spawn(self: Arc<Self>, mut stop: watch::Receiver<bool>) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            loop {
                if self.due(&self.topology_polled) {
                    if let Err(e) = self.poll_topology().await {
                        tracing::warn!("{e}");
                    }
                }
                if self.due(&self.events_polled) {
                    if let Err(e) = self.poll_events().await {
                        tracing::warn!("{e}");
                    }
                }
                tokio::select! {
                    _ = tokio::time::sleep(self.poll) => {}
                    _ = stop.changed() => return,
                }
            }
        })
    }

    /// Not polled within the last poll interval (by anyone).
    fn due(&self, last: &Mutex<Option<std::time::Instant>>) -> bool {
        let last = last.lock().map(|l| *l).unwrap_or(None);
        last.is_none_or(|at| at.elapsed() + Duration::from_millis(50) >= self.poll)
    }

    pub(crate) fn push_restore(&self, r: Restore) {
        if let Ok(mut v) = self.pending_restores.lock() {
            v.push(r);
        }
    }

    pub(crate) fn clear_restore(&self, r: &Restore) {
        if let Ok(mut v) = self.pending_restores.lock() {
            v.retain(|x| x != r);
        }
    }
}

fn stamp(at: &Mutex<Option<std::time::Instant>>) {
    if let Ok(mut at) = at.lock() {
        *at = Some(std::time::Instant::now());
    }
}

fn poisoned() -> AwsError {
    AwsError { operation: "DescribeEvents", code: None, message: "internal lock poisoned".into(), hint: None }
}
