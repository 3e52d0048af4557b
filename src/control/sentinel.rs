//! `SENTINEL FAILOVER <master>`, complete when the sentinels announce a new primary.

use super::{Trigger, TriggerContext, TriggerFuture};
use crate::target::{sentinel_primary, Discovery};
use anyhow::{anyhow, bail, Context};
use std::time::Duration;
use tokio::time::{sleep, timeout, Instant};

pub(crate) struct SentinelFailover;

impl Trigger for SentinelFailover {
    fn kind(&self) -> String {
        "sentinel".into()
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
                match ask_failover(ctx, host, *port, master).await {
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
            Ok(format!("SENTINEL FAILOVER {master} via {asked}: primary {before} → {after}"))
        })
    }
}

async fn ask_failover(ctx: &TriggerContext, host: &str, port: u16, master: &str) -> anyhow::Result<()> {
    let client = ctx.target.sentinel_client(host, port)?;
    let mut conn = timeout(ctx.limit, client.get_multiplexed_async_connection()).await.context("connect timeout")??;
    let _: () = timeout(ctx.limit * 4, redis::cmd("SENTINEL").arg("FAILOVER").arg(master).query_async(&mut conn))
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
