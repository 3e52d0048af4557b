//! `cluster-failover[=force|takeover]`: CLUSTER FAILOVER sent to a replica of the chosen shard,
//! complete when that replica reports itself primary.

use super::{BoxFuture, Checked, Trigger, TriggerContext, TriggerFuture};
use crate::error::invalid;
use crate::target::cluster::{cluster_shards, seeds, slot_of, ShardInfo};
use crate::target::{connect_node, query_role};
use anyhow::{anyhow, bail, Context, Result};
use std::time::Duration;
use tokio::time::{sleep, timeout, Instant};

/// The mode, lowercase: `force` or `takeover`; None for a plain CLUSTER FAILOVER.
#[derive(Clone, Debug, PartialEq)]
pub struct ClusterFailover(pub Option<String>);

impl Trigger for ClusterFailover {
    fn parse(arg: Option<&str>) -> Option<Self> {
        match arg.map(str::to_lowercase).as_deref() {
            None => Some(Self(None)),
            Some(m @ ("force" | "takeover")) => Some(Self(Some(m.to_string()))),
            Some(_) => None,
        }
    }

    fn label(&self) -> String {
        match &self.0 {
            Some(mode) => format!("cluster-failover={mode}"),
            None => "cluster-failover".into(),
        }
    }

    /// The chosen shard exists and has a replica to fail over to.
    fn check<'a>(&'a self, ctx: &'a TriggerContext) -> BoxFuture<'a, Checked> {
        Box::pin(async move {
            if ctx.target.is_cluster() {
                let (index, shard) = chosen_shard(ctx).await?;
                if shard.replicas.is_empty() {
                    return Err(invalid(format!(
                        "shard {index} ({}) has no replica to fail over to",
                        shard.primary.addr()
                    )));
                }
            }
            Ok(Checked::default())
        })
    }

    fn fire<'a>(&'a self, ctx: &'a TriggerContext) -> TriggerFuture<'a> {
        Box::pin(async move {
            let (index, shard) = chosen_shard(ctx).await?;
            let replica =
                shard.replicas.first().ok_or_else(|| anyhow!("shard {index} has no replica to fail over to"))?;
            let (mut conn, addr) =
                connect_node(&ctx.target, &replica.host, replica.port, ctx.limit).await.map_err(|e| anyhow!("{e}"))?;
            let mut cmd = redis::cmd("CLUSTER");
            cmd.arg("FAILOVER");
            if let Some(mode) = &self.0 {
                cmd.arg(mode.to_uppercase());
            }
            let _: () = timeout(ctx.limit * 4, cmd.query_async(&mut conn))
                .await
                .context("CLUSTER FAILOVER timed out")?
                .with_context(|| format!("CLUSTER FAILOVER on {addr}"))?;
            let until = Instant::now() + ctx.max_wait;
            while Instant::now() < until {
                if let Ok((role, _)) = query_role(&mut conn, ctx.limit).await {
                    if role == "master" {
                        return Ok(format!(
                            "{} on {addr} (replica of shard {index}, primary {}): it is now the primary",
                            self.label().to_uppercase().replace(['-', '='], " "),
                            shard.primary.addr()
                        ));
                    }
                }
                sleep(Duration::from_millis(20)).await;
            }
            bail!("{addr} is still a replica {:?} after CLUSTER FAILOVER", ctx.max_wait)
        })
    }
}

/// The shard named by `--shard N`, or owning `--key K`, or the first.
pub(crate) async fn chosen_shard(ctx: &TriggerContext) -> Result<(usize, ShardInfo)> {
    let shards = cluster_shards(&ctx.target, &seeds(&ctx.target), ctx.limit).await.map_err(|e| anyhow!("{e}"))?;
    let index = match (&ctx.shard, &ctx.key) {
        (Some(i), _) => *i,
        (None, Some(key)) => {
            let slot = slot_of(key.as_bytes());
            shards.iter().position(|s| s.owns(slot)).ok_or_else(|| anyhow!("no shard owns slot {slot} of `{key}`"))?
        }
        (None, None) => 0,
    };
    let shard = shards.get(index).cloned().ok_or_else(|| {
        anyhow!("the cluster has {} shards (0..{}); there is no shard {index}", shards.len(), shards.len())
    })?;
    Ok((index, shard))
}
