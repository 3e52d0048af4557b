//! `promote`: `REPLICAOF NO ONE` on a replica of the primary, then the old primary is re-pointed
//! at it — a failover by hand, as a runbook without Sentinel would do it.

use super::{query, Trigger, TriggerContext, TriggerFuture};
use crate::target::{connect_node, connect_primary, info_field, ServerInfo};
use anyhow::{anyhow, Result};
use redis::aio::MultiplexedConnection;

#[derive(Clone, Debug, PartialEq)]
pub struct Promote;

impl Trigger for Promote {
    fn parse(arg: Option<&str>) -> Option<Self> {
        arg.is_none().then_some(Promote)
    }

    fn label(&self) -> String {
        "promote".into()
    }

    fn fire<'a>(&'a self, ctx: &'a TriggerContext) -> TriggerFuture<'a> {
        Box::pin(async move {
            let (mut old, primary, (host, port)) = primary_and_replica(ctx).await?;
            let (mut replica, addr) =
                connect_node(&ctx.target, &host, port, ctx.limit).await.map_err(|e| anyhow!("{e}"))?;
            let _: () = query(&mut replica, ctx.limit, redis::cmd("REPLICAOF").arg("NO").arg("ONE")).await?;
            let _: () = query(&mut old, ctx.limit, redis::cmd("REPLICAOF").arg(&host).arg(port)).await?;
            Ok(format!("REPLICAOF NO ONE on {addr}; {} now replicates from it", primary.addr))
        })
    }
}

/// The primary (connected) and the address of its first online replica: where `promote` and
/// `failover` act.
pub(crate) async fn primary_and_replica(
    ctx: &TriggerContext,
) -> Result<(MultiplexedConnection, ServerInfo, (String, u16))> {
    let (mut conn, primary) = connect_primary(&ctx.target, ctx.limit).await.map_err(|e| anyhow!("{e}"))?;
    let info: String = query(&mut conn, ctx.limit, redis::cmd("INFO").arg("replication")).await?;
    let replica =
        first_online_replica(&info).ok_or_else(|| anyhow!("the primary {} has no online replica", primary.addr))?;
    Ok((conn, primary, replica))
}

/// `slave0:ip=127.0.0.1,port=6380,state=online,offset=123,lag=0`
pub(crate) fn first_online_replica(info: &str) -> Option<(String, u16)> {
    (0..16).find_map(|i| {
        let line = info_field(info, &format!("slave{i}"))?;
        let field = |k: &str| line.split(',').find_map(|kv| kv.strip_prefix(k)?.strip_prefix('='));
        (field("state") == Some("online")).then(|| Some((field("ip")?.to_string(), field("port")?.parse().ok()?)))?
    })
}
