//! The engines failprobe can probe, behind one face for the run loop: shards (or nodes), their
//! keys, the integrity check after recovery, key counts and seeding.

use super::connection::Reporter;
use super::memcached::MemcachedProber;
use super::redis::RedisProber;
use super::schedule::{run_stream, Health, StreamConfig};
use super::{Prober, TrialKeys};
use crate::sample::{EventKind, SeqSet, Stream};
use crate::target::error::ProbeError;
use crate::target::Target;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// Everything one stream of one shard needs to run.
pub struct StreamTask {
    pub shard: usize,
    pub cfg: StreamConfig,
    pub keys: Arc<TrialKeys>,
    pub report: Reporter,
    pub health: Arc<Health>,
    pub stop: watch::Receiver<bool>,
}

pub enum Engine {
    Redis(Arc<RedisProber>),
    Memcached(Arc<MemcachedProber>, watch::Sender<bool>),
}

impl Engine {
    pub async fn start(
        target: Arc<Target>,
        run_id: &str,
        limit: Duration,
        report: Reporter,
    ) -> Result<Self, ProbeError> {
        Ok(match target.memcache_nodes() {
            Some(nodes) => {
                let listed = discover_nodes(nodes, limit).await?;
                let (stop, stopped) = watch::channel(false);
                if nodes.len() == 1 && listed.as_slice() != nodes {
                    tokio::spawn(follow_node_list(nodes[0].clone(), listed.clone(), limit, report, stopped));
                }
                Engine::Memcached(MemcachedProber::new(&listed, run_id, limit), stop)
            }
            None => Engine::Redis(RedisProber::start(target, run_id, limit, report).await?),
        })
    }

    /// `shard0`… / `node0`…, or None for a single primary.
    pub fn shard_names(&self) -> Vec<Option<String>> {
        match self {
            Engine::Redis(p) => p.shards().iter().map(|s| s.name.clone()).collect(),
            Engine::Memcached(p, _) => p.nodes().iter().map(|n| Some(n.name.clone())).collect(),
        }
    }

    pub fn keys(&self, trial: u32, ttl: Duration) -> Vec<Arc<TrialKeys>> {
        match self {
            Engine::Redis(p) => p.keys(trial, ttl),
            Engine::Memcached(p, _) => p.keys(trial, ttl),
        }
    }

    pub fn shutdown(&self) {
        match self {
            Engine::Redis(p) => p.shutdown(),
            Engine::Memcached(_, stop) => {
                let _ = stop.send(true);
            }
        }
    }

    /// One stream of one shard, until `task.stop`.
    pub async fn run_stream(&self, task: StreamTask) -> u64 {
        match self {
            Engine::Redis(p) => stream_of(p.clone(), task).await,
            Engine::Memcached(p, _) => stream_of(p.clone(), task).await,
        }
    }

    /// The write sequence numbers the shard still holds after recovery.
    pub async fn present_writes(
        &self,
        shard: usize,
        keys: &TrialKeys,
        max_seq: u64,
    ) -> Result<(String, SeqSet), ProbeError> {
        match self {
            Engine::Redis(p) => p.read_write_log(shard, keys).await,
            Engine::Memcached(p, _) => p.present_writes(shard, keys, max_seq).await,
        }
    }

    /// DBSIZE without failprobe's keys; memcached has no such count.
    pub async fn user_key_count(&self, own: &[String]) -> Option<u64> {
        match self {
            Engine::Redis(p) => p.user_key_count(own).await.ok(),
            Engine::Memcached(..) => None,
        }
    }

    /// Seeds `count` keys per node (memcached: a cache keeps no log to check otherwise).
    pub async fn seed(&self, trial: u32, count: u64, ttl: Duration) -> Vec<Result<u64, ProbeError>> {
        match self {
            Engine::Memcached(p, _) if count > 0 => p.seed(trial, count, ttl).await,
            _ => Vec::new(),
        }
    }

    pub async fn seeds_surviving(&self, trial: u32, count: u64) -> Vec<Result<u64, ProbeError>> {
        match self {
            Engine::Memcached(p, _) if count > 0 => p.seeds_surviving(trial, count).await,
            _ => Vec::new(),
        }
    }
}

/// One address that is an ElastiCache configuration endpoint stands for the nodes it lists.
pub async fn discover_nodes(nodes: &[(String, u16)], limit: Duration) -> Result<Vec<(String, u16)>, ProbeError> {
    let [(host, port)] = nodes else { return Ok(nodes.to_vec()) };
    let deadline = tokio::time::Instant::now() + limit.max(Duration::from_secs(1));
    let named = |e: ProbeError| ProbeError::new(e.class, format!("memcached {host}:{port} not reachable: {}", e.text));
    let mut conn = crate::memcached::proto::Conn::connect(&format!("{host}:{port}"), deadline).await.map_err(named)?;
    match conn.config_get_cluster(deadline).await.map_err(named)? {
        Some(listed) if !listed.is_empty() => Ok(listed),
        _ => Ok(nodes.to_vec()),
    }
}

/// Asks the configuration endpoint for the node list once a second and puts every change on the
/// timeline (a node replaced, added or removed). The streams keep probing the nodes listed at the
/// start: a node added mid-run is reported, not probed.
async fn follow_node_list(
    endpoint: (String, u16),
    mut known: Vec<(String, u16)>,
    limit: Duration,
    report: Reporter,
    mut stop: watch::Receiver<bool>,
) {
    let describe =
        |nodes: &[(String, u16)]| nodes.iter().map(|(h, p)| format!("{h}:{p}")).collect::<Vec<_>>().join(" ");
    report.event(EventKind::Topology {
        source: format!("config get cluster {}:{}", endpoint.0, endpoint.1),
        server: None,
        role: None,
        run_id: None,
        primary: Some(describe(&known)),
    });
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => return,
        }
        let Ok(listed) = discover_nodes(std::slice::from_ref(&endpoint), limit).await else { continue };
        if listed != known && listed.as_slice() != std::slice::from_ref(&endpoint) {
            report.event(EventKind::Topology {
                source: format!("config get cluster {}:{}", endpoint.0, endpoint.1),
                server: None,
                role: None,
                run_id: None,
                primary: Some(describe(&listed)),
            });
            known = listed;
        }
    }
}

async fn stream_of<P: Prober>(prober: Arc<P>, task: StreamTask) -> u64 {
    let StreamTask { shard, cfg, keys, report, health, stop } = task;
    match cfg.stream {
        Stream::Write => {
            run_stream(cfg, report, health, stop, move |seq, deadline| {
                prober.clone().write(shard, keys.clone(), seq, deadline)
            })
            .await
        }
        Stream::Read => {
            run_stream(cfg, report, health, stop, move |_, deadline| prober.clone().read(shard, keys.clone(), deadline))
                .await
        }
    }
}
