//! `SENTINEL FAILOVER <master>`, complete when the sentinels announce a new primary. With
//! `coordinated` (Valkey >= 9) the sentinel runs the failover through the `FAILOVER` command on
//! the primary (writes paused until the replica caught up) instead of promoting the replica
//! while the old primary still takes writes.

use super::failover::{major_minor, server_version};
use super::{BoxFuture, Checked, Trigger, TriggerContext, TriggerFuture};
use crate::error::invalid;
use crate::target::{sentinel_primary, Discovery};
use anyhow::{anyhow, bail, Context};
use std::time::Duration;
use tokio::time::{sleep, timeout, Instant};

/// `SENTINEL FAILOVER … COORDINATED` appeared in Valkey 9.0.
const COORDINATED_SINCE: (u32, u32) = (9, 0);

#[derive(Clone, Debug, PartialEq)]
pub struct SentinelFailover {
    pub coordinated: bool,
}

/// Before anything is written: every sentinel that answers is a Valkey >= 9 one (an older one
/// would refuse COORDINATED, or be asked next when the first cannot be reached).
async fn check_coordinated(ctx: &TriggerContext) -> anyhow::Result<()> {
    let Discovery::Sentinel { sentinels, .. } = &ctx.target.discovery else {
        return Err(invalid("trigger `sentinel=coordinated` needs a redis+sentinel:// target"));
    };
    let mut answered = 0;
    for (host, port) in sentinels {
        let Ok(info) = sentinel_info(ctx, host, *port).await else { continue };
        answered += 1;
        let (server, version) = server_version(&info);
        if server != "valkey" || major_minor(&version) < COORDINATED_SINCE {
            return Err(invalid(format!(
                "trigger `sentinel=coordinated` needs Valkey {}.{} or later on every sentinel: {host}:{port} runs {server} {version}",
                COORDINATED_SINCE.0, COORDINATED_SINCE.1
            )));
        }
    }
    if answered == 0 {
        bail!("no sentinel answered INFO server");
    }
    Ok(())
}

async fn sentinel_info(ctx: &TriggerContext, host: &str, port: u16) -> anyhow::Result<String> {
    let client = ctx.target.sentinel_client(host, port)?;
    let mut conn = timeout(ctx.limit, client.get_multiplexed_async_connection()).await.context("connect timeout")??;
    Ok(timeout(ctx.limit * 4, redis::cmd("INFO").arg("server").query_async(&mut conn)).await.context("timed out")??)
}

impl Trigger for SentinelFailover {
    fn parse(arg: Option<&str>) -> Option<Self> {
        match arg.map(str::to_lowercase).as_deref() {
            None => Some(Self { coordinated: false }),
            Some("coordinated") => Some(Self { coordinated: true }),
            Some(_) => None,
        }
    }

    fn label(&self) -> String {
        match self.coordinated {
            true => "sentinel=coordinated".into(),
            false => "sentinel".into(),
        }
    }

    fn check<'a>(&'a self, ctx: &'a TriggerContext) -> BoxFuture<'a, Checked> {
        Box::pin(async move {
            if self.coordinated {
                check_coordinated(ctx).await?;
            }
            Ok(Checked::default())
        })
    }

    fn fire<'a>(&'a self, ctx: &'a TriggerContext) -> TriggerFuture<'a> {
        Box::pin(async move {
            let Discovery::Sentinel { sentinels, master } = &ctx.target.discovery else {
                bail!("the sentinel trigger needs a redis+sentinel:// target");
            };
            let (h, p, _) = sentinel_primary(&ctx.target, ctx.limit).await.map_err(|e| anyhow!("{e}"))?;
            let before = format!("{h}:{p}");
            let mut last_err = None;
            let mut asked = None;
            for (host, port) in sentinels {
                match ask_failover(ctx, host, *port, master, self.coordinated).await {
                    Ok(()) => {
                        asked = Some(format!("{host}:{port}"));
                        break;
                    }
                    Err(e) => last_err = Some(e),
                }
            }
            let Some(asked) = asked else {
                return Err(last_err.unwrap_or_else(|| anyhow!("no sentinel configured")));
            };
            let after = wait_for_new_primary(ctx, &before).await?;
            let how = if self.coordinated { " COORDINATED" } else { "" };
            Ok(format!("SENTINEL FAILOVER {master}{how} via {asked}: primary {before} → {after}"))
        })
    }
}

async fn ask_failover(
    ctx: &TriggerContext,
    host: &str,
    port: u16,
    master: &str,
    coordinated: bool,
) -> anyhow::Result<()> {
    let client = ctx.target.sentinel_client(host, port)?;
    let mut conn = timeout(ctx.limit, client.get_multiplexed_async_connection()).await.context("connect timeout")??;
    let mut cmd = redis::cmd("SENTINEL");
    cmd.arg("FAILOVER").arg(master);
    if coordinated {
        cmd.arg("COORDINATED");
    }
    let _: () = timeout(ctx.limit * 4, cmd.query_async(&mut conn))
        .await
        .context("SENTINEL FAILOVER timed out")?
        .with_context(|| format!("SENTINEL FAILOVER {master} on {host}:{port}"))?;
    Ok(())
}

async fn wait_for_new_primary(ctx: &TriggerContext, before: &str) -> anyhow::Result<String> {
    let until = Instant::now() + ctx.max_wait;
    while Instant::now() < until {
        if let Ok((h, p, _)) = sentinel_primary(&ctx.target, ctx.limit).await {
            let now = format!("{h}:{p}");
            if now != before {
                return Ok(now);
            }
        }
        sleep(Duration::from_millis(20)).await;
    }
    bail!("sentinels still announce {before} after {:?}", ctx.max_wait)
}
