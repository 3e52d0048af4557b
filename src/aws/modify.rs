//! The ElastiCache changes failprobe makes (ModifyReplicationGroup), each followed by a wait
//! until AWS reports it applied. Triggers in `control` call these; so does the restore of an
//! interrupted run.

use super::error::explain;
use super::group::{describe_group, GroupInfo};
use super::watch::{AwsRun, Restore};
use anyhow::{bail, Result};

/// Describes the group every poll until `done`, or fails after the run's AWS wait.
pub(crate) async fn wait_group(
    aws: &AwsRun,
    group: &str,
    what: &str,
    done: impl Fn(&GroupInfo) -> bool,
) -> Result<GroupInfo> {
    let until = tokio::time::Instant::now() + aws.wait;
    loop {
        let g = describe_group(&aws.client, group).await?;
        if done(&g) {
            return Ok(g);
        }
        if tokio::time::Instant::now() + aws.poll > until {
            bail!("{group} did not reach {what} within {:?} (status {}, {})", aws.wait, g.status, g.roles());
        }
        let _ = aws.poll_events().await;
        tokio::time::sleep(aws.poll).await;
    }
}

/// ModifyReplicationGroup AutomaticFailoverEnabled (+ MultiAZEnabled), then waits until applied.
/// AWS refuses changes while the group is modifying (e.g. an interrupted promotion): wait first.
pub(crate) async fn set_automatic_failover(aws: &AwsRun, group: &str, enabled: bool, multi_az: bool) -> Result<()> {
    wait_group(aws, group, "`available`", |g| g.status == "available").await?;
    aws.client
        .modify_replication_group()
        .replication_group_id(group)
        .automatic_failover_enabled(enabled)
        .multi_az_enabled(enabled && multi_az)
        .apply_immediately(true)
        .send()
        .await
        .map_err(|e| explain("ModifyReplicationGroup", e))?;
    let want = if enabled { "enabled" } else { "disabled" };
    wait_group(aws, group, &format!("automatic failover {want}"), |g| {
        g.status == "available" && g.automatic_failover == want
    })
    .await
    .map(|_| ())
}

/// ModifyReplicationGroup PrimaryClusterId, then waits until `cluster` is the primary.
pub(crate) async fn set_primary(aws: &AwsRun, group: &str, cluster: &str) -> Result<()> {
    aws.client
        .modify_replication_group()
        .replication_group_id(group)
        .primary_cluster_id(cluster)
        .apply_immediately(true)
        .send()
        .await
        .map_err(|e| explain("ModifyReplicationGroup", e))?;
    let want = cluster.to_string();
    wait_group(aws, group, "the new primary", move |g| {
        g.status == "available" && g.primary().is_some_and(|m| m.cache_cluster == want)
    })
    .await?;
    Ok(())
}

/// Undoes what an interrupted trigger left changed; says how when it cannot.
pub(crate) async fn restore_all(aws: &AwsRun) {
    let pending: Vec<Restore> = aws.pending_restores.lock().map(|mut v| std::mem::take(&mut *v)).unwrap_or_default();
    for r in pending {
        let result = match &r {
            Restore::AutomaticFailover { group, multi_az } => set_automatic_failover(aws, group, true, *multi_az).await,
        };
        match result {
            Ok(()) => crate::note!("restored: {}", r.cli()),
            Err(e) => crate::note!("error: could not restore automatic failover ({e:#}); run:\n  {}", r.cli()),
        }
    }
}
