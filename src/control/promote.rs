//! `promote`: `REPLICAOF NO ONE` on a replica of the primary, then the old primary is re-pointed
//! at it — a failover by hand, as a runbook without Sentinel would do it.

use super::{Trigger, TriggerContext, TriggerFuture};
use crate::target::{connect_node, connect_primary, info_field};
use anyhow::{anyhow, Context, Result};
use redis::aio::MultiplexedConnection;
use tokio::time::timeout;

pub(crate) struct Promote;

impl Trigger for Promote {
    fn kind(&self) -> String {
        "promote".into()
    }

    fn fire<'a>(&'a self, ctx: &'a TriggerContext) -> TriggerFuture<'a> {
        Box::pin(async move {
            let (mut old, primary) = connect_primary(&ctx.target, ctx.limit).await.map_err(|e| anyhow!("{e}"))?;
            let info: String = cmd(&mut old, ctx, redis::cmd("INFO").arg("replication")).await?;
            let (host, port) = first_online_replica(&info)
                .ok_or_else(|| anyhow!("the primary {} has no online replica", primary.addr))?;
            let (mut replica, addr) =
                connect_node(&ctx.target, &host, port, ctx.limit).await.map_err(|e| anyhow!("{e}"))?;
            let _: () = cmd(&mut replica, ctx, redis::cmd("REPLICAOF").arg("NO").arg("ONE")).await?;
            let _: () = cmd(&mut old, ctx, redis::cmd("REPLICAOF").arg(&host).arg(port)).await?;
            Ok(format!("REPLICAOF NO ONE on {addr}; {} now replicates from it", primary.addr))
        })
    }
}

async fn cmd<T: redis::FromRedisValue>(
    conn: &mut MultiplexedConnection,
    ctx: &TriggerContext,
    c: &mut redis::Cmd,
) -> Result<T> {
    timeout(ctx.limit * 4, c.query_async(conn)).await.context("timed out")?.map_err(Into::into)
}

/// `slave0:ip=127.0.0.1,port=6380,state=online,offset=123,lag=0`
pub(crate) fn first_online_replica(info: &str) -> Option<(String, u16)> {
    (0..16).find_map(|i| {
        let line = info_field(info, &format!("slave{i}"))?;
        let field = |k: &str| line.split(',').find_map(|kv| kv.strip_prefix(k)?.strip_prefix('='));
        (field("state") == Some("online")).then(|| Some((field("ip")?.to_string(), field("port")?.parse().ok()?)))?
    })
}
