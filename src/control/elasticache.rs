//! ElastiCache controllers: `TestFailover`, a chosen primary (`ModifyReplicationGroup
//! PrimaryClusterId`), and `RebootCacheCluster`. Each waits for the completion events AWS
//! documents, so the trial's timeline holds AWS's account next to the probes'.

use super::{BoxFuture, Checked, Trigger, TriggerContext, TriggerFuture};
use crate::aws::error::{explain, AwsError};
use crate::aws::events::{self, AwsEvent, Class};
use crate::aws::group::{describe_cache_cluster, describe_group, slots_contain, GroupInfo};
use crate::aws::modify::{set_automatic_failover, set_primary};
use crate::aws::watch::{AwsRun, Restore};
use crate::error::invalid;
use anyhow::{anyhow, bail, Result};
use chrono::{DateTime, Utc};
use std::sync::Arc;

/// TestFailover: at most this many node groups per rolling 24 h (older docs said 5).
pub(crate) const TEST_FAILOVER_QUOTA: usize = 15;
/// AWS's clock and ours may differ; its events are matched from this long before our call.
const SKEW: chrono::Duration = chrono::Duration::seconds(60);

fn aws_of(ctx: &TriggerContext) -> Result<&Arc<AwsRun>> {
    ctx.aws.as_ref().ok_or_else(|| invalid("ElastiCache triggers need --replication-group or --cache-cluster"))
}

fn group_of(aws: &AwsRun) -> Result<&str> {
    aws.group.as_deref().ok_or_else(|| invalid("this trigger needs --replication-group"))
}

/// `elasticache-test-failover[=<node-group-id>]`.
#[derive(Clone, Debug, PartialEq)]
pub struct TestFailover(pub Option<String>);

impl TestFailover {
    /// The named node group, or the only one, or the one holding the probed shard's slots.
    pub(crate) async fn node_group(&self, ctx: &TriggerContext, g: &GroupInfo) -> Result<String> {
        if let Some(id) = &self.0 {
            return match g.node_group(id) {
                Some(_) => Ok(id.clone()),
                None => Err(invalid(format!(
                    "{} has no node group `{id}` (it has {})",
                    g.id,
                    g.node_groups.iter().map(|n| n.id.as_str()).collect::<Vec<_>>().join(", ")
                ))),
            };
        }
        if let [only] = g.node_groups.as_slice() {
            return Ok(only.id.clone());
        }
        let (_, shard) = super::cluster::chosen_shard(ctx).await?;
        let slot = shard.ranges.first().map(|r| r.0).unwrap_or(0);
        g.node_groups
            .iter()
            .find(|n| n.slots.as_deref().is_some_and(|s| slots_contain(s, slot)))
            .map(|n| n.id.clone())
            .ok_or_else(|| {
                invalid(format!("no node group of {} holds slot {slot}: name one with =<node-group-id>", g.id))
            })
    }

    /// Everything AWS would refuse, refused before anything is written or called; returns the
    /// call each trial makes.
    async fn api_call(&self, ctx: &TriggerContext) -> Result<String> {
        let aws = aws_of(ctx)?;
        let g = describe_group(&aws.client, group_of(aws)?).await?;
        if g.status != "available" {
            return Err(invalid(format!("{} is `{}`, not `available`: TestFailover would be refused", g.id, g.status)));
        }
        if !g.automatic_failover_enabled() {
            return Err(invalid(format!(
                "{} has automatic failover {}: TestFailover needs it enabled (Multi-AZ with a replica)",
                g.id, g.automatic_failover
            )));
        }
        let ng = self.node_group(ctx, &g).await?;
        let members = g.node_group(&ng).map(|n| n.members.len()).unwrap_or(0);
        if members < 2 {
            return Err(invalid(format!("node group {ng} of {} has no replica to fail over to", g.id)));
        }
        let recent = recent_test_failovers(aws).await?;
        if recent.len() >= TEST_FAILOVER_QUOTA {
            return Err(invalid(quota_text(&recent)));
        }
        let left = TEST_FAILOVER_QUOTA - recent.len();
        if ctx.trials > left {
            return Err(invalid(format!(
                "{} trials of TestFailover, but only {left} of the {TEST_FAILOVER_QUOTA} per rolling 24 h are left ({} used by the events of the last 24 h): use --repeat {left} or less",
                ctx.trials,
                recent.len()
            )));
        }
        crate::note!(
            "note: TestFailover is limited to {TEST_FAILOVER_QUOTA} node groups per rolling 24 h per account and region; {} used by the events of the last 24 h, this run uses {}",
            recent.len(),
            ctx.trials
        );
        Ok(format!("TestFailover ReplicationGroupId={} NodeGroupId={ng}", g.id))
    }
}

/// When "Test Failover API called" was logged in the last 24 h, oldest first (quota usage).
async fn recent_test_failovers(aws: &AwsRun) -> Result<Vec<DateTime<Utc>>, AwsError> {
    let since = Utc::now() - chrono::Duration::hours(24);
    let evs = events::fetch(&aws.client, events::Window::Since(since)).await?;
    Ok(evs.iter().filter(|e| e.class() == Class::FailoverStarted).map(|e| e.date).collect())
}

fn quota_text(recent: &[DateTime<Utc>]) -> String {
    // A call becomes possible again when all but 14 of the calls are older than 24 h.
    let freeing = recent.len().saturating_sub(TEST_FAILOVER_QUOTA);
    let after =
        recent.get(freeing).map(|t| (*t + chrono::Duration::hours(24)).format("%Y-%m-%d %H:%M UTC").to_string());
    format!(
        "TestFailover quota: {TEST_FAILOVER_QUOTA} node groups per rolling 24 h, {} used — try after {}",
        recent.len(),
        after.unwrap_or_else(|| "24 h from the oldest call".into())
    )
}

impl Trigger for TestFailover {
    fn parse(arg: Option<&str>) -> Option<Self> {
        match arg {
            None => Some(Self(None)),
            Some(ng) => (!ng.is_empty()).then(|| Self(Some(ng.to_string()))),
        }
    }

    fn label(&self) -> String {
        match &self.0 {
            None => "elasticache-test-failover".into(),
            Some(ng) => format!("elasticache-test-failover={ng}"),
        }
    }

    /// The summary's trigger is the API, whichever node group it fails over.
    fn kind(&self) -> String {
        "elasticache-test-failover".into()
    }

    fn check<'a>(&'a self, ctx: &'a TriggerContext) -> BoxFuture<'a, Checked> {
        Box::pin(async move { Ok(Checked { api_call: Some(self.api_call(ctx).await?), process: None }) })
    }

    fn fire<'a>(&'a self, ctx: &'a TriggerContext) -> TriggerFuture<'a> {
        Box::pin(async move {
            let aws = aws_of(ctx)?;
            let group = group_of(aws)?;
            let g = describe_group(&aws.client, group).await?;
            let ng = self.node_group(ctx, &g).await?;
            let before = logged_before(aws).await;
            let called = Utc::now();
            if let Err(e) = aws.client.test_failover().replication_group_id(group).node_group_id(&ng).send().await {
                let e = explain("TestFailover", e);
                if e.is("TestFailoverNotAvailableFault") {
                    let recent = recent_test_failovers(aws).await.unwrap_or_default();
                    return Err(anyhow!(e.with_hint(quota_text(&recent))));
                }
                return Err(e.into());
            }
            let seq = aws
                .wait_for(aws.wait, |seen| failover_sequence(&fresh(seen, &before), called - SKEW, &ng))
                .await
                .map_err(|e| not_completed(aws, "the failover's \"Finished recovery\" event", e))?;
            Ok(seq)
        })
    }
}

/// Events already logged before a call: a previous trial's sequence must not be taken for this one's.
async fn logged_before(aws: &AwsRun) -> Vec<AwsEvent> {
    aws.poll_events().await.unwrap_or_else(|_| aws.seen())
}

fn fresh(seen: &[AwsEvent], before: &[AwsEvent]) -> Vec<AwsEvent> {
    seen.iter().filter(|e| !before.contains(e)).cloned().collect()
}

/// The documented order: Test Failover API called → Failover … completed → (Recovering cache
/// nodes) → Finished recovery. Returns a one-line account with AWS's times once complete.
pub(crate) fn failover_sequence(seen: &[AwsEvent], since: DateTime<Utc>, node_group: &str) -> Option<String> {
    let after = |t: DateTime<Utc>, class: Class| seen.iter().find(|e| e.date >= t && e.class() == class);
    let called = seen
        .iter()
        .find(|e| e.date >= since && e.class() == Class::FailoverStarted && e.message.contains(node_group))?;
    let completed = after(called.date, Class::FailoverCompleted)?;
    let recovered = after(completed.date, Class::NodeRecovered)?;
    let secs = |e: &AwsEvent| (e.date - called.date).num_milliseconds() as f64 / 1000.0;
    Some(format!(
        "TestFailover node group {node_group}: AWS logged the call at {}, \"{}\" +{:.1} s, \"{}\" +{:.1} s",
        called.date.format("%H:%M:%S%.3f UTC"),
        completed.message,
        secs(completed),
        recovered.message,
        secs(recovered)
    ))
}

fn not_completed(aws: &AwsRun, waited_for: &str, last_error: String) -> anyhow::Error {
    let seen: Vec<String> = aws.seen().iter().map(|e| format!("{} {}", e.date.format("%H:%M:%S"), e.message)).collect();
    let error = if last_error.is_empty() { String::new() } else { format!("; last API error: {last_error}") };
    anyhow!(
        "AWS did not log {waited_for} within {:?} (events seen: {}){error}",
        aws.wait,
        if seen.is_empty() { "none".into() } else { seen.join(" | ") }
    )
}

/// `elasticache-promote=<cache-cluster-id>`.
#[derive(Clone, Debug, PartialEq)]
pub struct Promote(pub String);

impl Promote {
    /// What AWS would refuse, refused first; returns the calls each trial makes.
    async fn api_call(&self, ctx: &TriggerContext) -> Result<String> {
        let aws = aws_of(ctx)?;
        let g = describe_group(&aws.client, group_of(aws)?).await?;
        if g.cluster_enabled {
            return Err(invalid(format!(
                "{} runs in cluster mode: PrimaryClusterId is for cluster-mode-disabled groups (use elasticache-test-failover)",
                g.id
            )));
        }
        if g.status != "available" {
            return Err(invalid(format!("{} is `{}`, not `available`", g.id, g.status)));
        }
        let member = g.node_groups.iter().flat_map(|n| &n.members).find(|m| m.cache_cluster == self.0);
        match member {
            None => return Err(invalid(format!("{} has no member cluster `{}` ({})", g.id, self.0, g.roles()))),
            Some(m) if m.role.as_deref() == Some("primary") => {
                return Err(invalid(format!("{} is already the primary of {}", self.0, g.id)))
            }
            Some(_) => {}
        }
        let call = format!(
            "ModifyReplicationGroup ReplicationGroupId={} PrimaryClusterId={} ApplyImmediately=true",
            g.id, self.0
        );
        if !g.automatic_failover_enabled() {
            return Ok(call);
        }
        if !aws.allow_multi_az_toggle {
            return Err(invalid(format!(
                "{} has automatic failover enabled, and AWS will not change the primary while it is: the documented way is disable → promote → re-enable, which leaves the group without automatic failover for minutes. Pass --allow-multi-az-toggle to let failprobe do that (it restores the setting even when interrupted), or use elasticache-test-failover",
                g.id
            )));
        }
        let toggle = format!(
            "ModifyReplicationGroup ReplicationGroupId={} AutomaticFailoverEnabled=false{} ApplyImmediately=true",
            g.id,
            if g.multi_az == "enabled" { " MultiAZEnabled=false" } else { "" }
        );
        Ok(format!(
            "{toggle}; then {call}; then the same with AutomaticFailoverEnabled=true{}",
            if g.multi_az == "enabled" { " MultiAZEnabled=true" } else { "" }
        ))
    }
}

impl Trigger for Promote {
    fn parse(arg: Option<&str>) -> Option<Self> {
        arg.filter(|id| !id.is_empty()).map(|id| Self(id.to_string()))
    }

    fn label(&self) -> String {
        format!("elasticache-promote={}", self.0)
    }

    fn kind(&self) -> String {
        "elasticache-promote".into()
    }

    fn check<'a>(&'a self, ctx: &'a TriggerContext) -> BoxFuture<'a, Checked> {
        Box::pin(async move { Ok(Checked { api_call: Some(self.api_call(ctx).await?), process: None }) })
    }

    fn fire<'a>(&'a self, ctx: &'a TriggerContext) -> TriggerFuture<'a> {
        Box::pin(async move {
            let aws = aws_of(ctx)?;
            let group = group_of(aws)?.to_string();
            let g = describe_group(&aws.client, &group).await?;
            let before = g.primary().map(|m| m.cache_cluster.clone()).unwrap_or_else(|| "?".into());
            if !g.automatic_failover_enabled() {
                return self.promote(aws, &group, &before).await;
            }
            if !aws.allow_multi_az_toggle {
                bail!("automatic failover is enabled on {group} and --allow-multi-az-toggle was not given");
            }
            let restore = Restore::AutomaticFailover { group: group.clone(), multi_az: g.multi_az == "enabled" };
            aws.push_restore(restore.clone());
            crate::note!(
                "disabling automatic failover on {group}; failprobe re-enables it (if it is killed first: {})",
                restore.cli()
            );
            let promoted = async {
                set_automatic_failover(aws, &group, false, false).await?;
                self.promote(aws, &group, &before).await
            }
            .await;
            // Re-enabled whatever happened; only a cancelled trial leaves it to the run's end.
            let restored = set_automatic_failover(aws, &group, true, g.multi_az == "enabled").await;
            if restored.is_ok() {
                aws.clear_restore(&restore);
            }
            let detail = promoted?;
            restored.map_err(|e| anyhow!("{e:#}; restore it with: {}", restore.cli()))?;
            Ok(format!("{detail}; automatic failover disabled for the promotion and enabled again"))
        })
    }
}

impl Promote {
    async fn promote(&self, aws: &AwsRun, group: &str, before: &str) -> Result<String> {
        set_primary(aws, group, &self.0).await?;
        Ok(format!("ModifyReplicationGroup PrimaryClusterId={}: primary {before} → {}", self.0, self.0))
    }
}

/// `elasticache-reboot=<cache-cluster-id>:<node-id>[,<node-id>...]`.
#[derive(Clone, Debug, PartialEq)]
pub struct Reboot {
    pub cache_cluster: String,
    pub nodes: Vec<String>,
}

impl Reboot {
    /// What AWS would refuse, refused first; returns the call each trial makes.
    async fn api_call(&self, ctx: &TriggerContext) -> Result<String> {
        let aws = aws_of(ctx)?;
        let c = describe_cache_cluster(&aws.client, &self.cache_cluster).await?;
        if c.status != "available" {
            return Err(invalid(format!("{} is `{}`, not `available`", c.id, c.status)));
        }
        if let Some(rg) = &c.replication_group {
            let g = describe_group(&aws.client, rg).await?;
            if g.cluster_enabled {
                return Err(invalid(format!(
                    "{} belongs to cluster-mode group {rg}: RebootCacheCluster is for Memcached and cluster-mode-disabled groups",
                    c.id
                )));
            }
        }
        for n in &self.nodes {
            if !c.nodes.iter().any(|x| &x.id == n) {
                let known: Vec<&str> = c.nodes.iter().map(|x| x.id.as_str()).collect();
                return Err(invalid(format!("{} has no node `{n}` (nodes: {})", c.id, known.join(", "))));
            }
        }
        Ok(format!("RebootCacheCluster CacheClusterId={} CacheNodeIdsToReboot={}", c.id, self.nodes.join(",")))
    }
}

impl Trigger for Reboot {
    /// `<cache-cluster-id>:<node-id>[,<node-id>...]`.
    fn parse(arg: Option<&str>) -> Option<Self> {
        let (cluster, nodes) = arg?.split_once(':')?;
        let nodes: Vec<String> = nodes.split(',').map(|n| n.trim().to_string()).filter(|n| !n.is_empty()).collect();
        if cluster.trim().is_empty() || nodes.is_empty() {
            return None;
        }
        Some(Self { cache_cluster: cluster.trim().to_string(), nodes })
    }

    fn label(&self) -> String {
        format!("elasticache-reboot={}:{}", self.cache_cluster, self.nodes.join(","))
    }

    fn kind(&self) -> String {
        "elasticache-reboot".into()
    }

    fn check<'a>(&'a self, ctx: &'a TriggerContext) -> BoxFuture<'a, Checked> {
        Box::pin(async move { Ok(Checked { api_call: Some(self.api_call(ctx).await?), process: None }) })
    }

    fn fire<'a>(&'a self, ctx: &'a TriggerContext) -> TriggerFuture<'a> {
        Box::pin(async move {
            let aws = aws_of(ctx)?;
            let before = logged_before(aws).await;
            let called = Utc::now();
            let mut req = aws.client.reboot_cache_cluster().cache_cluster_id(&self.cache_cluster);
            for n in &self.nodes {
                req = req.cache_node_ids_to_reboot(n);
            }
            req.send().await.map_err(|e| explain("RebootCacheCluster", e))?;
            let (cluster, nodes) = (self.cache_cluster.clone(), self.nodes.clone());
            aws.wait_for(aws.wait, move |seen| {
                let seen = fresh(seen, &before);
                let restarted = |n: &String| {
                    seen.iter().find(|e| {
                        e.date >= called - SKEW
                            && e.source_id == cluster
                            && e.class() == Class::NodeRebooted
                            && e.message.contains(n.as_str())
                    })
                };
                let times: Option<Vec<&AwsEvent>> = nodes.iter().map(restarted).collect();
                times.map(|t| {
                    let last = t.iter().map(|e| e.date).max().unwrap_or(called);
                    format!(
                        "RebootCacheCluster {cluster} nodes {}: AWS logged the last restart at {}",
                        nodes.join(","),
                        last.format("%H:%M:%S%.3f UTC")
                    )
                })
            })
            .await
            .map_err(|e| not_completed(aws, "\"Cache node … restarted\" for every node", e))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn ev(sec: u32, source: &str, message: &str) -> AwsEvent {
        AwsEvent {
            date: Utc.with_ymd_and_hms(2026, 11, 27, 10, 0, sec).unwrap(),
            source_type: "cache-cluster".into(),
            source_id: source.into(),
            message: message.into(),
        }
    }

    #[test]
    fn the_sequence_is_complete_only_with_finished_recovery_after_the_failover() {
        let since = Utc.with_ymd_and_hms(2026, 11, 27, 9, 59, 0).unwrap();
        let mut seen = vec![
            ev(1, "rg", "Test Failover API called for node group 0001"),
            ev(4, "rg-002", "Failover from master node rg-001 to replica node rg-002 completed"),
            ev(5, "rg-001", "Recovering cache nodes 0001"),
        ];
        assert_eq!(failover_sequence(&seen, since, "0001"), None, "no Finished recovery yet");
        seen.push(ev(9, "rg-001", "Finished recovery for cache nodes 0001"));
        let done = failover_sequence(&seen, since, "0001").unwrap();
        assert!(done.contains("+3.0 s") && done.contains("+8.0 s"), "{done}");
        assert_eq!(failover_sequence(&seen, since, "0002"), None, "another node group's call");
        // A previous trial's sequence, logged before this call, is not this trial's.
        assert!(fresh(&seen, &seen).is_empty());
    }

    #[test]
    fn the_quota_frees_when_the_call_that_filled_it_is_24_h_old() {
        let t = |h: u32| Utc.with_ymd_and_hms(2026, 11, 27, h, 0, 0).unwrap();
        let mut calls: Vec<_> = (0..15).map(|_| t(1)).collect();
        calls.push(t(2));
        assert!(quota_text(&calls).ends_with("16 used — try after 2026-11-28 01:00 UTC"), "{}", quota_text(&calls));
        calls.remove(0);
        calls.insert(0, t(0));
        assert!(quota_text(&calls).contains("try after 2026-11-28 01:00 UTC"), "the second-oldest of 16 frees a slot");
    }
}
