//! Joins the lab's six cluster nodes into 3 primaries + 3 replicas, as `redis-cli --cluster
//! create` does, with commands every Redis from 5.0 on and Valkey speaks: no cli is needed, so
//! a machine with only Valkey's server binary gets a cluster too.

use anyhow::{bail, Context, Result};
use redis::aio::MultiplexedConnection;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::time::{sleep, timeout, Instant};

const SLOTS: u16 = 16384;
const LIMIT: Duration = Duration::from_secs(2);

/// The first half of `ports` become primaries (slots split evenly, in order), the second half
/// their replicas (`ports[i + n]` replicates `ports[i]`).
pub(super) async fn create(ports: &[SocketAddr], limit: Duration) -> Result<()> {
    let until = Instant::now() + limit;
    let primaries = ports.len() / 2;
    let mut conns = Vec::new();
    for &port in ports {
        conns.push(connect(port).await?);
    }
    for (i, conn) in conns.iter_mut().enumerate() {
        if i < primaries {
            let (first, last) = slot_range(i, primaries);
            // ADDSLOTS with every slot: ADDSLOTSRANGE came with Redis 7.0.
            let slots: Vec<u16> = (first..=last).collect();
            command(conn, redis::cmd("CLUSTER").arg("ADDSLOTS").arg(slots)).await?;
        }
        // Distinct epochs before the nodes meet, so no collision has to be resolved first.
        command(conn, redis::cmd("CLUSTER").arg("SET-CONFIG-EPOCH").arg(i + 1)).await?;
    }
    for conn in conns.iter_mut().skip(1) {
        command(conn, redis::cmd("CLUSTER").arg("MEET").arg(ports[0].ip().to_string()).arg(ports[0].port())).await?;
    }
    wait_all_known(&mut conns, ports, until).await?;
    for i in 0..primaries {
        let id: String = query(&mut conns[i], redis::cmd("CLUSTER").arg("MYID")).await?;
        let replica = &mut conns[i + primaries];
        // A replica may not have heard of its primary's id through the gossip yet.
        loop {
            match query::<()>(replica, redis::cmd("CLUSTER").arg("REPLICATE").arg(&id)).await {
                Ok(()) => break,
                Err(e) if Instant::now() < until => {
                    tracing::debug!("CLUSTER REPLICATE on {}: {e:#}", ports[i + primaries]);
                    sleep(Duration::from_millis(100)).await;
                }
                Err(e) => return Err(e.context(format!("{} replicating {id}", ports[i + primaries]))),
            }
        }
    }
    Ok(())
}

/// Slots of primary `i` of `n`: `SLOTS / n` each, the last one taking the remainder.
fn slot_range(i: usize, n: usize) -> (u16, u16) {
    let per = SLOTS / n as u16;
    let first = per * i as u16;
    let last = if i + 1 == n { SLOTS - 1 } else { first + per - 1 };
    (first, last)
}

/// Every node lists every other one, none of them still in the handshake.
async fn wait_all_known(conns: &mut [MultiplexedConnection], ports: &[SocketAddr], until: Instant) -> Result<()> {
    loop {
        let mut missing = None;
        for (conn, port) in conns.iter_mut().zip(ports) {
            let nodes: String = query(conn, redis::cmd("CLUSTER").arg("NODES")).await?;
            let joined = nodes.lines().filter(|l| !l.contains("handshake") && !l.contains("noaddr")).count();
            if joined < ports.len() {
                missing = Some(format!("{port} knows {joined} of {} nodes", ports.len()));
                break;
            }
        }
        let Some(why) = missing else { return Ok(()) };
        if Instant::now() >= until {
            bail!("the cluster nodes did not meet: {why}");
        }
        sleep(Duration::from_millis(100)).await;
    }
}

async fn connect(port: SocketAddr) -> Result<MultiplexedConnection> {
    let client = redis::Client::open(format!("redis://{port}"))?;
    timeout(LIMIT, client.get_multiplexed_async_connection())
        .await
        .with_context(|| format!("connecting to {port}"))?
        .with_context(|| format!("connecting to {port}"))
}

async fn query<T: redis::FromRedisValue>(conn: &mut MultiplexedConnection, cmd: &redis::Cmd) -> Result<T> {
    Ok(timeout(LIMIT, cmd.query_async(conn)).await.context("timed out")??)
}

async fn command(conn: &mut MultiplexedConnection, cmd: &redis::Cmd) -> Result<()> {
    query::<()>(conn, cmd).await
}

#[cfg(test)]
mod tests {
    use super::slot_range;

    #[test]
    fn three_primaries_cover_every_slot_once() {
        assert_eq!(slot_range(0, 3), (0, 5460));
        assert_eq!(slot_range(1, 3), (5461, 10921));
        assert_eq!(slot_range(2, 3), (10922, 16383));
    }
}
