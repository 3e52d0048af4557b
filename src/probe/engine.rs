//! The engines failprobe can probe, behind one face for the run loop: shards (or nodes), their
//! keys, the integrity check after recovery, key counts and seeding.

use super::error::ProbeError;
use super::memcached::MemcachedProber;
use super::redis::RedisProber;
use super::schedule::{run_stream, Health, StreamConfig};
use super::slot::Reporter;
use super::{Prober, TrialKeys};
use crate::record::Stream;
use crate::target::Target;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

pub enum Engine {
    Redis(Arc<RedisProber>),
    Memcached(Arc<MemcachedProber>),
}

impl Engine {
    pub async fn start(
        target: Arc<Target>,
        run_id: &str,
        limit: Duration,
        report: Reporter,
    ) -> Result<Self, ProbeError> {
        Ok(match target.memcache_nodes() {
            Some(nodes) => Engine::Memcached(MemcachedProber::new(nodes, run_id, limit)),
            None => Engine::Redis(RedisProber::start(target, run_id, limit, report).await?),
        })
    }

    /// `shard0`… / `node0`…, or None for a single primary.
    pub fn shard_names(&self) -> Vec<Option<String>> {
        match self {
            Engine::Redis(p) => p.shards().iter().map(|s| s.name.clone()).collect(),
            Engine::Memcached(p) => p.nodes().iter().map(|n| Some(n.name.clone())).collect(),
        }
    }

    pub fn keys(&self, trial: u32, ttl: Duration) -> Vec<Arc<TrialKeys>> {
        match self {
            Engine::Redis(p) => p.keys(trial, ttl),
            Engine::Memcached(p) => p.keys(trial, ttl),
        }
    }

    pub fn shutdown(&self) {
        if let Engine::Redis(p) = self {
            p.shutdown();
        }
    }

    /// One stream of one shard, until `stop`.
    pub async fn run_stream(
        &self,
        shard: usize,
        cfg: StreamConfig,
        keys: Arc<TrialKeys>,
        report: Reporter,
        health: Arc<Health>,
        stop: watch::Receiver<bool>,
    ) -> u64 {
        match self {
            Engine::Redis(p) => stream_of(p.clone(), shard, cfg, keys, report, health, stop).await,
            Engine::Memcached(p) => stream_of(p.clone(), shard, cfg, keys, report, health, stop).await,
        }
    }

    /// The write sequence numbers the shard still holds after recovery.
    pub async fn present_writes(
        &self,
        shard: usize,
        keys: &TrialKeys,
        max_seq: u64,
    ) -> Result<(String, Vec<u64>), ProbeError> {
        match self {
            Engine::Redis(p) => p.read_write_log(shard, keys).await,
            Engine::Memcached(p) => p.present_writes(shard, keys, max_seq).await,
        }
    }

    /// DBSIZE without failprobe's keys; memcached has no such count.
    pub async fn user_key_count(&self, own: &[String]) -> Option<u64> {
        match self {
            Engine::Redis(p) => p.user_key_count(own).await.ok(),
            Engine::Memcached(_) => None,
        }
    }

    /// Seeds `count` keys per node (memcached: a cache keeps no log to check otherwise).
    pub async fn seed(&self, trial: u32, count: u64, ttl: Duration) -> Vec<Result<u64, ProbeError>> {
        match self {
            Engine::Memcached(p) if count > 0 => p.seed(trial, count, ttl).await,
            _ => Vec::new(),
        }
    }

    pub async fn seeds_surviving(&self, trial: u32, count: u64) -> Vec<Result<u64, ProbeError>> {
        match self {
            Engine::Memcached(p) if count > 0 => p.seeds_surviving(trial, count).await,
            _ => Vec::new(),
        }
    }
}

async fn stream_of<P: Prober>(
    prober: Arc<P>,
    shard: usize,
    cfg: StreamConfig,
    keys: Arc<TrialKeys>,
    report: Reporter,
    health: Arc<Health>,
    stop: watch::Receiver<bool>,
) -> u64 {
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
