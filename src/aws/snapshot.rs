//! CreateSnapshot, then DescribeSnapshots every poll until AWS reports it `available` (the
//! runbook's backup before a maintenance, `--backup`). failprobe never deletes a snapshot.

use super::error::explain;
use super::watch::AwsRun;
use anyhow::{bail, Result};
use std::time::Duration;

/// Snapshots the run's replication group (or its cache cluster) as `name` and waits, at most
/// `limit`, until it is available.
pub(crate) async fn create_and_wait(aws: &AwsRun, name: &str, limit: Duration) -> Result<()> {
    let create = aws.client.create_snapshot().snapshot_name(name);
    let create = match (&aws.group, &aws.cache_cluster) {
        (Some(group), _) => create.replication_group_id(group),
        (None, Some(cluster)) => create.cache_cluster_id(cluster),
        (None, None) => bail!("no replication group or cache cluster to snapshot"),
    };
    create.send().await.map_err(|e| explain("CreateSnapshot", e))?;
    let until = tokio::time::Instant::now() + limit;
    loop {
        let answer = aws
            .client
            .describe_snapshots()
            .snapshot_name(name)
            .send()
            .await
            .map_err(|e| explain("DescribeSnapshots", e))?;
        let status = answer.snapshots().first().and_then(|s| s.snapshot_status()).unwrap_or("not listed").to_string();
        match status.as_str() {
            "available" => return Ok(()),
            "failed" | "deleted" | "deleting" => bail!("snapshot {name} is {status}"),
            _ if tokio::time::Instant::now() + aws.poll > until => {
                bail!("snapshot {name} was not available within {limit:?} (status {status})")
            }
            _ => tokio::time::sleep(aws.poll).await,
        }
    }
}
