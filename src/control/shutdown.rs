//! `shutdown-failover`: `SHUTDOWN FAILOVER` on the chosen shard's primary (Valkey >= 9, cluster
//! mode). The primary waits for a replica to catch up, hands it its slots (a manual failover it
//! starts itself), then exits: a planned node replacement as an orchestrator does it. Complete
//! when a replica of the shard answers ROLE as the primary. The old node stays down until
//! something starts it again (the lab does, between trials).

use super::cluster::chosen_shard;
use super::failover::{major_minor, server_mode, server_version};
use super::{query, BoxFuture, Checked, Trigger, TriggerContext, TriggerFuture};
use crate::error::invalid;
use crate::target::{connect_node, query_role};
use anyhow::{anyhow, bail, Result};
use std::time::Duration;
use tokio::time::{sleep, timeout, Instant};

/// `SHUTDOWN … FAILOVER` appeared in Valkey 9.0.
const SINCE: (u32, u32) = (9, 0);

#[derive(Clone, Debug, PartialEq)]
pub struct ShutdownFailover;

impl ShutdownFailover {
    /// Before anything is written: the shard's primary is a Valkey >= 9 in cluster mode, and the
    /// shard has a replica to take over.
    async fn check_primary(ctx: &TriggerContext) -> Result<()> {
        let (index, shard) = chosen_shard(ctx).await?;
        let primary = &shard.primary;
        let (mut conn, addr) =
            connect_node(&ctx.target, &primary.host, primary.port, ctx.limit).await.map_err(|e| anyhow!("{e}"))?;
        let info: String = query(&mut conn, ctx.limit, redis::cmd("INFO").arg("server")).await?;
        let (server, version) = server_version(&info);
        if server != "valkey" || major_minor(&version) < SINCE {
            return Err(invalid(format!(
                "trigger `shutdown-failover` needs Valkey {}.{} or later: {addr} runs {server} {version}",
                SINCE.0, SINCE.1
            )));
        }
        if server_mode(&info).as_deref() != Some("cluster") {
            return Err(invalid(format!("trigger `shutdown-failover` is for cluster mode: {addr} is not in it")));
        }
        if shard.replicas.is_empty() {
            return Err(invalid(format!("shard {index} ({addr}) has no replica to hand its slots to")));
        }
        Ok(())
    }
}

impl Trigger for ShutdownFailover {
    fn parse(arg: Option<&str>) -> Option<Self> {
        arg.is_none().then_some(ShutdownFailover)
    }

    fn label(&self) -> String {
        "shutdown-failover".into()
    }

    fn check<'a>(&'a self, ctx: &'a TriggerContext) -> BoxFuture<'a, Checked> {
        Box::pin(async move {
            Self::check_primary(ctx).await?;
            Ok(Checked::default())
        })
    }

    fn fire<'a>(&'a self, ctx: &'a TriggerContext) -> TriggerFuture<'a> {
        Box::pin(async move {
            let (index, shard) = chosen_shard(ctx).await?;
            let primary = &shard.primary;
            let (mut conn, addr) =
                connect_node(&ctx.target, &primary.host, primary.port, ctx.limit).await.map_err(|e| anyhow!("{e}"))?;
            // A server that shuts down closes the connection instead of answering; an error
            // reply (a replica that would not catch up, a refused save) means it is still up.
            let answer: redis::RedisResult<()> =
                match timeout(ctx.max_wait, redis::cmd("SHUTDOWN").arg("FAILOVER").query_async(&mut conn)).await {
                    Ok(answer) => answer,
                    Err(_) => bail!("SHUTDOWN FAILOVER on {addr}: no answer and no exit in {:?}", ctx.max_wait),
                };
            match answer {
                Err(e) if e.is_connection_dropped() || e.is_io_error() => {}
                Err(e) => return Err(anyhow!(e).context(format!("SHUTDOWN FAILOVER on {addr}"))),
                Ok(()) => bail!("SHUTDOWN FAILOVER on {addr} answered OK and did not exit"),
            }
            let until = Instant::now() + ctx.max_wait;
            while Instant::now() < until {
                for replica in &shard.replicas {
                    let Ok((mut r, raddr)) = connect_node(&ctx.target, &replica.host, replica.port, ctx.limit).await
                    else {
                        continue;
                    };
                    if query_role(&mut r, ctx.limit).await.is_ok_and(|(role, _)| role == "master") {
                        return Ok(format!(
                            "SHUTDOWN FAILOVER on {addr} (primary of shard {index}): {raddr} is now the primary"
                        ));
                    }
                }
                sleep(Duration::from_millis(20)).await;
            }
            bail!("no replica of shard {index} became the primary {:?} after SHUTDOWN FAILOVER on {addr}", ctx.max_wait)
        })
    }
}
