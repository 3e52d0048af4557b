//! The engines failprobe can probe, behind one face for the run loop: shards (or nodes), their
//! keys, the integrity check after recovery, key counts and seeding.

use super::client::{Client, Profile};
use super::memcached::MemcachedProber;
use super::redis::RedisProber;
use super::schedule::{run_stream, BoxFuture, StreamTask};
use super::{Prober, Producer, TrialKeys};
use crate::sample::{EventKind, SeqSet, Stream};
use crate::sink::Reporter;
use crate::target::connect_primary;
use crate::target::error::ProbeError;
use crate::target::Target;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// What the run loop needs from a kind of deployment: its shards (or nodes), their keys, the
/// probe streams, the integrity check after recovery, key counts and seeding. Everything
/// engine-specific stays behind it; `start` and `preflight` pick the engine from the target.
pub trait Engine: Send + Sync {
    /// `shard0`… / `node0`…, or None for a single primary.
    fn shard_names(&self) -> Vec<Option<String>>;
    /// This trial's keys for one client profile (`client`: its label, None for failprobe's own),
    /// one set per shard.
    fn keys(&self, trial: u32, ttl: Duration, client: Option<&str>) -> Vec<Arc<TrialKeys>>;
    /// A client of `profile` on this deployment, its shards in `shard_names` order. The
    /// engine's own prober is the `failprobe` profile.
    fn client(&self, profile: Profile, report: Reporter) -> BoxFuture<'_, Result<Arc<dyn Client>, ProbeError>>;
    /// The write sequence numbers the shard still holds after recovery (`max_seq`: the highest
    /// sent), and the server that answered.
    fn present_writes<'a>(
        &'a self,
        shard: usize,
        keys: &'a TrialKeys,
        max_seq: u64,
    ) -> BoxFuture<'a, Result<(String, SeqSet), ProbeError>>;
    /// Each shard's primary as the target's discovery names it now (the URL, Sentinel, CLUSTER
    /// SLOTS); None where it cannot tell. Empty for engines without primaries.
    fn primaries(&self) -> BoxFuture<'_, Vec<Option<(String, u16)>>> {
        Box::pin(async { Vec::new() })
    }
    /// What `host:port` answers to ROLE now; None when it does not answer.
    fn role_of<'a>(&'a self, _host: &'a str, _port: u16) -> BoxFuture<'a, Option<String>> {
        Box::pin(async { None })
    }
    /// Keys that are not failprobe's, when the engine can count them: in the selected database,
    /// and per database.
    fn user_key_count<'a>(
        &'a self,
        _own: &'a [String],
    ) -> BoxFuture<'a, Option<(u64, std::collections::BTreeMap<u32, u64>)>> {
        Box::pin(async { None })
    }
    /// Known keys stored per node before the trigger (a cache keeps no log to check otherwise);
    /// per shard, how many. Empty when the engine does not seed.
    fn seed(&self, _trial: u32, _count: u64, _ttl: Duration) -> BoxFuture<'_, Vec<Result<u64, ProbeError>>> {
        Box::pin(async { Vec::new() })
    }
    fn seeds_surviving(&self, _trial: u32, _count: u64) -> BoxFuture<'_, Vec<Result<u64, ProbeError>>> {
        Box::pin(async { Vec::new() })
    }
    /// `--probe pubsub` and `stream`: failprobe's own client as producer. None for an engine
    /// without pub/sub or streams.
    fn producer(&self) -> Option<Arc<dyn Producer>> {
        None
    }
    fn shutdown(&self);
}

/// The engine for `target`'s kind, started: connections made, shards or nodes discovered.
pub async fn start(
    target: Arc<Target>,
    run_id: &str,
    limit: Duration,
    report: Reporter,
) -> Result<Arc<dyn Engine>, ProbeError> {
    Ok(match target.memcache_nodes() {
        Some(nodes) => {
            let listed = discover_nodes(nodes, limit).await?;
            let (stop, stopped) = watch::channel(false);
            if nodes.len() == 1 && listed.as_slice() != nodes {
                tokio::spawn(follow_node_list(nodes[0].clone(), listed.clone(), limit, report, stopped));
            }
            Arc::new(MemcachedEngine { prober: MemcachedProber::new(&listed, run_id, limit), stop })
        }
        None => Arc::new(RedisEngine(RedisProber::start(target, run_id, limit, report).await?)),
    })
}

/// Before anything is recorded: is the deployment there? The primary answers ROLE (through
/// Sentinel or the cluster), or every memcached node answers a get.
pub(crate) async fn preflight(target: &Target, limit: Duration) -> Result<(), String> {
    let Some(nodes) = target.memcache_nodes() else {
        return connect_primary(target, limit).await.map(|_| ()).map_err(|e| format!("{}: {e}", target.redacted()));
    };
    let nodes = discover_nodes(nodes, limit).await.map_err(|e| format!("{}: {e}", target.redacted()))?;
    for (host, port) in &nodes {
        let deadline = tokio::time::Instant::now() + limit;
        let unreachable = |e: ProbeError| format!("memcached {host}:{port}: {e}");
        let mut conn =
            crate::memcached::proto::Conn::connect(&format!("{host}:{port}"), deadline).await.map_err(unreachable)?;
        conn.get(b"failprobe:preflight", deadline).await.map_err(unreachable)?;
    }
    Ok(())
}

struct RedisEngine(Arc<RedisProber>);

impl Engine for RedisEngine {
    fn shard_names(&self) -> Vec<Option<String>> {
        self.0.shards().iter().map(|s| s.name.clone()).collect()
    }

    fn keys(&self, trial: u32, ttl: Duration, client: Option<&str>) -> Vec<Arc<TrialKeys>> {
        self.0.keys(trial, ttl, client)
    }

    fn client(&self, profile: Profile, report: Reporter) -> BoxFuture<'_, Result<Arc<dyn Client>, ProbeError>> {
        Box::pin(async move {
            Ok(match profile {
                Profile::Failprobe => self.0.clone() as Arc<dyn Client>,
                Profile::Pinned => self.0.pinned(report).await? as Arc<dyn Client>,
                Profile::Exec(spec) => {
                    super::exec::ExecClient::start(&spec, self.0.target(), self.0.limit(), report).await?
                        as Arc<dyn Client>
                }
                Profile::DnsCache(keep) => {
                    let dns = self.0.target().dns.cached(keep);
                    self.0.follower(dns, profile.label(), report).await? as Arc<dyn Client>
                }
                Profile::RedisRs => {
                    super::redis_rs::RedisRsClient::start(self.0.target(), self.0.limit()).await? as Arc<dyn Client>
                }
            })
        })
    }

    fn present_writes<'a>(
        &'a self,
        shard: usize,
        keys: &'a TrialKeys,
        max_seq: u64,
    ) -> BoxFuture<'a, Result<(String, SeqSet), ProbeError>> {
        Box::pin(self.0.read_write_log(shard, keys, max_seq))
    }

    fn user_key_count<'a>(
        &'a self,
        own: &'a [String],
    ) -> BoxFuture<'a, Option<(u64, std::collections::BTreeMap<u32, u64>)>> {
        Box::pin(async move { self.0.user_key_counts(own).await.ok() })
    }

    fn primaries(&self) -> BoxFuture<'_, Vec<Option<(String, u16)>>> {
        Box::pin(self.0.primaries())
    }

    fn role_of<'a>(&'a self, host: &'a str, port: u16) -> BoxFuture<'a, Option<String>> {
        Box::pin(self.0.role_of(host, port))
    }

    fn producer(&self) -> Option<Arc<dyn Producer>> {
        Some(self.0.clone() as Arc<dyn Producer>)
    }

    fn shutdown(&self) {
        self.0.shutdown();
    }
}

struct MemcachedEngine {
    prober: Arc<MemcachedProber>,
    /// Stops the node-list follower of a configuration endpoint.
    stop: watch::Sender<bool>,
}

impl Engine for MemcachedEngine {
    fn shard_names(&self) -> Vec<Option<String>> {
        self.prober.nodes().iter().map(|n| Some(n.name.clone())).collect()
    }

    /// Memcached is probed by failprobe's own client only (`client` is always None).
    fn keys(&self, trial: u32, ttl: Duration, _client: Option<&str>) -> Vec<Arc<TrialKeys>> {
        self.prober.keys(trial, ttl)
    }

    fn client(&self, profile: Profile, _report: Reporter) -> BoxFuture<'_, Result<Arc<dyn Client>, ProbeError>> {
        Box::pin(async move {
            match profile {
                Profile::Failprobe => Ok(self.prober.clone() as Arc<dyn Client>),
                other => Err(ProbeError::new(
                    crate::sample::ErrorClass::Other,
                    format!(
                        "the `{}` client profile is for Redis targets; memcached is probed by failprobe's own client",
                        other.name()
                    ),
                )),
            }
        })
    }

    fn present_writes<'a>(
        &'a self,
        shard: usize,
        keys: &'a TrialKeys,
        max_seq: u64,
    ) -> BoxFuture<'a, Result<(String, SeqSet), ProbeError>> {
        Box::pin(self.prober.present_writes(shard, keys, max_seq))
    }

    fn seed(&self, trial: u32, count: u64, ttl: Duration) -> BoxFuture<'_, Vec<Result<u64, ProbeError>>> {
        Box::pin(async move {
            match count {
                0 => Vec::new(),
                _ => self.prober.seed(trial, count, ttl).await,
            }
        })
    }

    fn seeds_surviving(&self, trial: u32, count: u64) -> BoxFuture<'_, Vec<Result<u64, ProbeError>>> {
        Box::pin(async move {
            match count {
                0 => Vec::new(),
                _ => self.prober.seeds_surviving(trial, count).await,
            }
        })
    }

    fn shutdown(&self) {
        let _ = self.stop.send(true);
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

/// Any `Prober` is a client: its streams run on the fixed-rate schedule.
impl<P: Prober> Client for P {
    fn run_stream(self: Arc<Self>, task: StreamTask) -> BoxFuture<'static, u64> {
        Box::pin(stream_of(self, task))
    }

    fn shutdown(&self) {
        Prober::stop(self);
    }

    fn subscribe(self: Arc<Self>, task: super::pubsub::SubscribeTask) -> Option<BoxFuture<'static, ()>> {
        Prober::subscribe(self, task)
    }
}

/// One stream of one shard on any `Prober`, on the fixed-rate schedule, on the probing thread.
pub(crate) async fn stream_of<P: Prober>(prober: Arc<P>, task: StreamTask) -> u64 {
    let StreamTask { shard, cfg, keys, report, health, stop } = task;
    let stream = async move {
        match cfg.stream {
            Stream::Write => {
                run_stream(cfg, report, health, stop, move |seq, deadline| {
                    prober.clone().write(shard, keys.clone(), seq, deadline)
                })
                .await
            }
            Stream::Read => {
                run_stream(cfg, report, health, stop, move |_, deadline| {
                    prober.clone().read(shard, keys.clone(), deadline)
                })
                .await
            }
            // The engine's producer publishes and appends; subscribers and consumers record.
            Stream::Publish | Stream::Deliver | Stream::Append | Stream::Consume => 0,
        }
    };
    super::runtime::handle().spawn(stream).await.unwrap_or(0)
}
