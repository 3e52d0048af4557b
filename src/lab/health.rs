//! When is the lab ready for a trial? The lab notes' rule: the replica is linked with lag 0,
//! every sentinel sees the same primary, the other two sentinels and the replica, and all of
//! that has held for one second.

use super::{Lab, NodeKind, Topology, MASTER_NAME};
use crate::target::info_field;
use anyhow::{bail, Result};
use redis::aio::MultiplexedConnection;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::time::{sleep, timeout, Instant};

const STABLE_FOR: Duration = Duration::from_secs(1);
const LIMIT: Duration = Duration::from_millis(500);

#[derive(Debug, Clone, PartialEq)]
pub enum Readiness {
    Ready { primary: u16 },
    NotReady(String),
}

impl Lab {
    pub(crate) async fn wait_ready(&self, limit: Duration) -> Result<u16> {
        let until = Instant::now() + limit;
        let mut stable_since: Option<(Instant, u16)> = None;
        let mut last = String::new();
        while Instant::now() < until {
            self.reap();
            match self.readiness().await {
                Readiness::Ready { primary } => match stable_since {
                    Some((since, p)) if p == primary => {
                        if since.elapsed() >= STABLE_FOR {
                            return Ok(primary);
                        }
                    }
                    _ => stable_since = Some((Instant::now(), primary)),
                },
                Readiness::NotReady(why) => {
                    stable_since = None;
                    last = why;
                }
            }
            sleep(Duration::from_millis(100)).await;
        }
        bail!("lab in {} not ready after {limit:?}: {last} (see the *.log files there)", self.dir.display())
    }

    pub async fn readiness(&self) -> Readiness {
        match self.check().await {
            Ok(primary) => Readiness::Ready { primary },
            Err(e) => Readiness::NotReady(format!("{e:#}")),
        }
    }

    async fn check(&self) -> Result<u16> {
        if self.topology == Topology::Cluster {
            return self.check_cluster().await;
        }
        if self.topology == Topology::Memcached {
            return self.check_memcached().await;
        }
        let primary = self.agreed_primary().await?;
        let replicas: Vec<u16> = self.redis_ports().into_iter().filter(|p| *p != primary).collect();
        let at = self.addr_of(primary);
        let primary_info = info(at, "replication").await?;
        if info_field(&primary_info, "role").as_deref() != Some("master") {
            bail!("{at} is not a primary yet");
        }
        for port in &replicas {
            let r = info(self.addr_of(*port), "replication").await?;
            let linked = info_field(&r, "role").as_deref() == Some("slave")
                && info_field(&r, "master_port").as_deref() == Some(&port_str(primary))
                && info_field(&r, "master_link_status").as_deref() == Some("up");
            if !linked {
                bail!("replica {} is not linked to {at}", self.addr_of(*port));
            }
            let synced = (0..16).filter_map(|i| info_field(&primary_info, &format!("slave{i}"))).any(|line| {
                line.contains(&format!("port={port},")) && line.contains("state=online") && lag(&line) <= 1
            });
            if !synced {
                bail!("replica {} is not in sync", self.addr_of(*port));
            }
        }
        for s in self.sentinel_addrs() {
            let m = sentinel_master(s).await?;
            let ok = m.get("num-other-sentinels").map(String::as_str) == Some("2")
                && m.get("num-slaves").and_then(|n| n.parse::<usize>().ok()) >= Some(replicas.len())
                && m.get("flags").map(String::as_str) == Some("master");
            if !ok {
                bail!("sentinel {s} does not see the whole lab yet");
            }
        }
        Ok(primary)
    }

    /// Every node sees a healthy cluster with all slots covered and all six nodes, and every
    /// replica is linked to its primary. Returns the first primary.
    async fn check_cluster(&self) -> Result<u16> {
        let ports = self.redis_ports();
        let mut primaries = Vec::new();
        for &port in &ports {
            let at = self.addr_of(port);
            let mut conn = connect(at).await?;
            let ci: String = timeout(LIMIT, redis::cmd("CLUSTER").arg("INFO").query_async(&mut conn)).await??;
            let ok = info_field(&ci, "cluster_state").as_deref() == Some("ok")
                && info_field(&ci, "cluster_slots_ok").as_deref() == Some("16384")
                && info_field(&ci, "cluster_known_nodes").and_then(|n| n.parse::<usize>().ok()) == Some(ports.len());
            if !ok {
                bail!("cluster node {at} does not see a healthy cluster yet");
            }
            // Every slot range must list a replica: a trigger picks its replica from here.
            let slots: redis::Value =
                timeout(LIMIT, redis::cmd("CLUSTER").arg("SLOTS").query_async(&mut conn)).await??;
            let all_replicated = match slots {
                redis::Value::Array(ranges) => {
                    ranges.iter().all(|r| matches!(r, redis::Value::Array(parts) if parts.len() >= 4))
                }
                _ => false,
            };
            if !all_replicated {
                bail!("cluster node {at} does not list a replica for every shard yet");
            }
            let r = info(at, "replication").await?;
            match info_field(&r, "role").as_deref() {
                Some("master") => primaries.push(port),
                _ if info_field(&r, "master_link_status").as_deref() != Some("up") => {
                    bail!("cluster replica {at} is not linked to its primary")
                }
                _ => {}
            }
        }
        if primaries.len() * 2 != ports.len() {
            bail!("expected {} primaries, found {}", ports.len() / 2, primaries.len());
        }
        Ok(primaries[0])
    }

    /// Every memcached node answers `version`. Returns the first node's port.
    async fn check_memcached(&self) -> Result<u16> {
        let nodes = self.nodes();
        for at in nodes.iter().map(|n| n.addr()) {
            let deadline = Instant::now() + LIMIT;
            let mut conn = crate::memcached::proto::Conn::connect(&at.to_string(), deadline)
                .await
                .map_err(|e| anyhow::anyhow!("memcached {at}: {e}"))?;
            conn.get(b"failprobe:ready", deadline).await.map_err(|e| anyhow::anyhow!("memcached {at}: {e}"))?;
        }
        nodes.first().map(|n| n.port).ok_or_else(|| anyhow::anyhow!("no memcached node"))
    }

    /// The primary every sentinel announces (they must agree), or the one redis node that says
    /// it is a primary when there are no sentinels.
    async fn agreed_primary(&self) -> Result<u16> {
        let sentinels = self.sentinel_addrs();
        if sentinels.is_empty() {
            let mut primaries = Vec::new();
            for p in self.redis_ports() {
                if info_field(&info(self.addr_of(p), "replication").await?, "role").as_deref() == Some("master") {
                    primaries.push(p);
                }
            }
            return match primaries.as_slice() {
                [p] => Ok(*p),
                _ => bail!("expected one primary, found {primaries:?}"),
            };
        }
        let mut seen = Vec::new();
        for s in sentinels {
            let mut conn = connect(s).await?;
            let (_, port): (String, u16) = timeout(
                LIMIT,
                redis::cmd("SENTINEL").arg("get-master-addr-by-name").arg(MASTER_NAME).query_async(&mut conn),
            )
            .await??;
            seen.push(port);
        }
        seen.dedup();
        match seen.as_slice() {
            [p] => Ok(*p),
            _ => bail!("sentinels disagree about the primary: {seen:?}"),
        }
    }

    /// The current primary, best effort (for restarting a killed node as its replica). For a
    /// cluster: the first shard's primary.
    pub async fn current_primary(&self) -> Option<u16> {
        if self.topology == Topology::Cluster {
            return self.check_cluster().await.ok();
        }
        self.agreed_primary().await.ok()
    }

    /// Runtime-only test knobs (lab notes): a demoted primary rejoins as a replica in ~5 s
    /// instead of ~13 s, so repeated trials do not wait for it.
    pub(super) async fn tune_sentinels(&self) {
        for s in self.sentinel_addrs() {
            if let Ok(mut conn) = connect(s).await {
                let _: Result<(), _> = redis::cmd("SENTINEL")
                    .arg("DEBUG")
                    .arg("info-period")
                    .arg(1000)
                    .arg("publish-period")
                    .arg(500)
                    .query_async(&mut conn)
                    .await;
            }
        }
    }

    pub(crate) fn is_sentinel(&self) -> bool {
        matches!(self.topology, Topology::Sentinel | Topology::Endpoint)
            && self.nodes().iter().any(|n| n.kind == NodeKind::Sentinel)
    }
}

fn port_str(p: u16) -> String {
    p.to_string()
}

fn lag(line: &str) -> u64 {
    line.split(',').find_map(|kv| kv.strip_prefix("lag=")?.parse().ok()).unwrap_or(u64::MAX)
}

async fn connect(at: SocketAddr) -> Result<MultiplexedConnection> {
    let client = redis::Client::open(format!("redis://{at}"))?;
    Ok(timeout(LIMIT, client.get_multiplexed_async_connection()).await??)
}

pub async fn info(at: SocketAddr, section: &str) -> Result<String> {
    let mut conn = connect(at).await?;
    Ok(timeout(LIMIT, redis::cmd("INFO").arg(section).query_async(&mut conn)).await??)
}

async fn sentinel_master(at: SocketAddr) -> Result<HashMap<String, String>> {
    let mut conn = connect(at).await?;
    let flat: Vec<String> =
        timeout(LIMIT, redis::cmd("SENTINEL").arg("MASTER").arg(MASTER_NAME).query_async(&mut conn)).await??;
    Ok(flat.chunks(2).filter(|c| c.len() == 2).map(|c| (c[0].clone(), c[1].clone())).collect())
}
