//! The Redis prober, for standalone (`redis://`), Sentinel (`redis+sentinel://`) and Cluster
//! (`redis+cluster://`) targets. A cluster is probed on every shard at once, each shard with its
//! own keys (a hash tag chosen to land in its slots) and its own connections.
//!
//! A write is one MULTI/EXEC: RPUSH the sequence number to the trial's log, raise the sentinel
//! key to it, both with a TTL. After the trial the log tells exactly which acknowledged writes survive.

use super::ack::WriteAck;
use super::connection::{Live, StreamConnection};
use super::locate::{parse_moved, Locator, SlotMap};
use super::{Attempt, Prober, TrialKeys};
use crate::sample::{ErrorClass, EventKind, SeqSet, Stream};
use crate::sink::Reporter;
use crate::target::cluster::{slot_of, tag_for};
use crate::target::dns::Dns;
use crate::target::error::{classify, ProbeError};
use crate::target::{query_role, sentinel_primary, Discovery, Target};
use anyhow::{Context, Result};
use redis::aio::MultiplexedConnection;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::{timeout, timeout_at, Instant};

/// How long a `+switch-master` subscription may stay silent before it is made again.
const SUBSCRIPTION_IDLE: Duration = Duration::from_secs(30);

/// What the sentinels announced, so that the same news from each of them counts once: the first
/// `+sdown` and the first `+odown` of a primary (until a switch), the first `+switch-master` to
/// a new primary. A sentinel that learns of the switch late may still report the deposed
/// primary down after another announced the switch: the same failure, heard late, not news
/// (it put "failure detected" after "new primary announced" on a loaded machine).
#[derive(Default)]
struct Heard {
    suspected: Option<String>,
    down: Option<String>,
    primary: Option<String>,
    deposed: Option<String>,
}

impl Heard {
    fn first_suspected(&mut self, address: &str) -> bool {
        let first = self.suspected.as_deref() != Some(address) && !self.is_deposed(address);
        self.suspected = Some(address.to_string());
        first
    }

    fn first_down(&mut self, address: &str) -> bool {
        let first = self.down.as_deref() != Some(address) && !self.is_deposed(address);
        self.down = Some(address.to_string());
        first
    }

    fn is_deposed(&self, address: &str) -> bool {
        self.deposed.as_deref() == Some(address)
    }

    /// A switch from `from` to `primary`.
    fn first_switch(&mut self, from: &str, primary: &str) -> bool {
        let first = self.primary.as_deref() != Some(primary);
        if first {
            self.primary = Some(primary.to_string());
            self.deposed = Some(from.to_string()).filter(|f| f != primary);
            // The next failure of any other primary, the new one included, is news again.
            (self.down, self.suspected) = (None, None);
        }
        first
    }
}

/// One independently probed part of the target: the primary, or one cluster shard.
pub struct Shard {
    /// `shard0`, `shard1`, ... for a cluster; None for a single primary.
    pub name: Option<String>,
    /// The hash tag in this shard's keys.
    pub tag: String,
    connections: [Arc<StreamConnection>; 2],
    locator: Arc<Locator>,
}

pub struct RedisProber {
    target: Arc<Target>,
    shards: Vec<Shard>,
    /// The slot map MOVED replies correct; None when they are not followed (`pinned`).
    map: Option<Arc<SlotMap>>,
    limit: Duration,
    report: Reporter,
    stop: watch::Sender<bool>,
    /// The ideal client (failprobe's own) follows the primary: drops a connection that reaches
    /// a non-primary, polls the topology, listens to Sentinel. `pinned` does none of it.
    follows_primary: bool,
    /// Whether what it learns of the topology goes on the timeline: failprobe's own client
    /// says it once; a `dns-cache` follower acts on the same news silently.
    announces: bool,
    /// Cluster primaries currently flagged `fail` or `fail?`, with the flag, so each failure
    /// (suspected, then agreed) goes on the timeline once.
    flagged: std::sync::Mutex<std::collections::HashSet<(String, &'static str)>>,
}

impl RedisProber {
    /// Discovers the shards (for a cluster), then starts the connection keepers, the topology
    /// poller and (for Sentinel) the `+switch-master` listener. They run until `shutdown`.
    pub async fn start(
        target: Arc<Target>,
        run_id: &str,
        limit: Duration,
        report: Reporter,
    ) -> Result<Arc<Self>, ProbeError> {
        let (stop, _) = watch::channel(false);
        let (shards, map) = if target.is_cluster() {
            let map = SlotMap::discover(&target, limit).await?;
            let shards = map
                .shards()
                .iter()
                .enumerate()
                .map(|(i, info)| {
                    let tag = tag_for(run_id, info).ok_or_else(|| {
                        ProbeError::new(ErrorClass::Clusterdown, format!("shard {i} owns no usable slot range"))
                    })?;
                    let slot = slot_of(tag.as_bytes());
                    let locator = Locator::ClusterSlot { target: target.clone(), slot, map: map.clone() };
                    Ok(Shard::new(Some(format!("shard{i}")), tag, locator, None))
                })
                .collect::<Result<Vec<_>, ProbeError>>()?;
            (shards, Some(map))
        } else {
            (vec![Shard::new(None, run_id.to_string(), Locator::Primary(target.clone()), None)], None)
        };
        let prober = Arc::new(Self {
            target: target.clone(),
            shards,
            map,
            limit,
            report: report.clone(),
            stop,
            follows_primary: true,
            announces: true,
            flagged: Default::default(),
        });
        prober.launch();
        Ok(prober)
    }

    /// The `pinned` profile on the same shards: per stream one connection to the address each
    /// shard's primary had when the profile started, reopened to that same address only when it
    /// breaks. No topology poll, no Sentinel subscription, MOVED not followed.
    pub async fn pinned(&self, report: Reporter) -> Result<Arc<Self>, ProbeError> {
        let label = super::client::Profile::Pinned.label();
        let mut shards = Vec::new();
        for s in &self.shards {
            let (host, port) = s.locator.current_address(self.limit).await?;
            let locator = Locator::Fixed { target: self.target.clone(), host, port };
            shards.push(Shard::new(s.name.clone(), s.tag.clone(), locator, label.clone()));
        }
        let prober = Arc::new(Self {
            target: self.target.clone(),
            shards,
            map: None,
            limit: self.limit,
            report,
            stop: watch::channel(false).0,
            follows_primary: false,
            announces: false,
            flagged: Default::default(),
        });
        prober.launch();
        Ok(prober)
    }

    /// Another client that follows the primary as failprobe's own does, on the same shards
    /// (its own keys and connections, its own slot map), looking names up through `dns`:
    /// the `dns-cache=D` profile.
    pub(crate) async fn follower(
        &self,
        dns: Dns,
        label: Option<String>,
        report: Reporter,
    ) -> Result<Arc<Self>, ProbeError> {
        let target = Arc::new(self.target.with_dns(dns));
        let map = match self.map {
            Some(_) => Some(SlotMap::discover(&target, self.limit).await?),
            None => None,
        };
        let shards = self
            .shards
            .iter()
            .map(|s| {
                let locator = match (&s.locator.as_ref(), &map) {
                    (Locator::ClusterSlot { slot, .. }, Some(map)) => {
                        Locator::ClusterSlot { target: target.clone(), slot: *slot, map: map.clone() }
                    }
                    _ => Locator::Primary(target.clone()),
                };
                Shard::new(s.name.clone(), s.tag.clone(), locator, label.clone())
            })
            .collect();
        let prober = Arc::new(Self {
            target,
            shards,
            map,
            limit: self.limit,
            report,
            stop: watch::channel(false).0,
            follows_primary: true,
            announces: false,
            flagged: Default::default(),
        });
        prober.launch();
        Ok(prober)
    }

    /// Starts the connection keepers and, for a client that follows the primary, the topology
    /// poll and the Sentinel subscription. They run until `shutdown`. The keepers (and so the
    /// connections they make) run on the probing thread, with the streams that use them.
    fn launch(self: &Arc<Self>) {
        for shard in &self.shards {
            for slot in &shard.connections {
                let connector = slot.clone().run_connector(
                    shard.locator.clone(),
                    self.limit,
                    self.report.clone(),
                    self.stop.subscribe(),
                );
                super::runtime::handle().spawn(connector);
            }
        }
        if self.follows_primary {
            tokio::spawn(self.clone().poll_topology());
            if self.target.is_sentinel() {
                tokio::spawn(self.clone().follow_switch_master());
            }
        }
    }

    pub fn shutdown(&self) {
        let _ = self.stop.send(true);
    }

    fn announce(&self, kind: EventKind) {
        if self.announces {
            self.report.event(kind);
        }
    }

    pub(crate) fn target(&self) -> &Target {
        &self.target
    }

    pub(crate) fn limit(&self) -> Duration {
        self.limit
    }

    pub fn shards(&self) -> &[Shard] {
        &self.shards
    }

    /// Each shard's primary as discovery names it now.
    pub(crate) async fn primaries(&self) -> Vec<Option<(String, u16)>> {
        if let Some(map) = &self.map {
            let _ = map.refresh(&self.target, self.limit).await;
        }
        let mut out = Vec::new();
        for s in &self.shards {
            let Ok((host, port)) = s.locator.current_address(self.limit).await else {
                out.push(None);
                continue;
            };
            // A name stands for whichever node it resolves to: the primary is the address it
            // reaches now, so that after a DNS flip the old one is still known and asked.
            let resolved = self.target.dns.resolve(&host, port, self.limit).await.ok();
            out.push(resolved.and_then(|a| a.first().map(|a| (a.ip().to_string(), port))));
        }
        out
    }

    pub(crate) async fn role_of(&self, host: &str, port: u16) -> Option<String> {
        let (mut conn, _) = crate::target::connect_node(&self.target, host, port, self.limit).await.ok()?;
        query_role(&mut conn, self.limit).await.ok().map(|(role, _)| role)
    }

    /// This trial's keys for one client profile, one set per shard.
    pub fn keys(&self, trial: u32, ttl: Duration, client: Option<&str>) -> Vec<Arc<TrialKeys>> {
        self.shards.iter().map(|s| Arc::new(TrialKeys::for_client(&s.tag, trial, ttl, client))).collect()
    }

    /// Whether an error means this client drops the connection that produced it.
    fn drops_connection_on(&self, e: &ProbeError) -> bool {
        if self.follows_primary {
            e.needs_reconnect() || e.class == ErrorClass::Moved
        } else {
            e.breaks_connection()
        }
    }

    fn reconnect_all(&self) {
        for s in self.shards.iter().flat_map(|s| &s.connections) {
            s.follow_new_primary();
        }
    }

    /// Runs `op` on the shard's stream connection. A connection-level failure drops the
    /// connection; a MOVED reply is followed to the new owner within the probe's deadline.
    async fn on_conn<T, F, Fut>(&self, shard: usize, stream: Stream, deadline: Instant, op: F) -> Attempt
    where
        F: Fn(MultiplexedConnection) -> Fut,
        Fut: std::future::Future<Output = redis::RedisResult<T>>,
        T: Into<Option<u64>>,
    {
        // Publishes (`--probe pubsub`) go on the write stream's connection.
        let slot = &self.shards[shard].connections[if stream == Stream::Read { 1 } else { 0 }];
        let mut followed = false;
        loop {
            let live: Arc<Live> = match slot.get(deadline).await {
                Ok(l) => l,
                Err(e) => return Attempt { result: Err(e), server: None },
            };
            let server = Some(live.server.addr.clone());
            let result = match timeout_at(deadline, op(live.conn.clone())).await {
                Err(_) => Err(ProbeError::timeout(&format!("{} probe", stream.name()))),
                Ok(Err(e)) => Err(classify(&e)),
                Ok(Ok(v)) => Ok(v.into()),
            };
            match &result {
                Err(e) if e.class == ErrorClass::Moved && !followed && self.map.is_some() => {
                    followed = true;
                    // Every probe in flight gets the same MOVED: the first one tells the timeline.
                    let first = slot.current().is_some_and(|c| c.generation == live.generation);
                    self.follow_moved(shard, &live, e, first);
                    slot.invalidate(live.generation);
                    continue;
                }
                Err(e) if self.drops_connection_on(e) => slot.invalidate(live.generation),
                _ => {}
            }
            return Attempt { result, server };
        }
    }

    fn follow_moved(&self, shard: usize, live: &Live, e: &ProbeError, record: bool) {
        let (Some(map), Some((slot, host, port))) = (&self.map, parse_moved(&e.text)) else { return };
        map.moved(slot, &host, port);
        if !record {
            return;
        }
        self.report.event(EventKind::Redirect {
            shard: self.shards[shard].name.clone(),
            from: live.server.addr.clone(),
            to: format!("{host}:{port}"),
            slot,
        });
    }

    /// Once a second: ask Sentinel or the cluster who the primaries are, ask each probe
    /// connection who it talks to, and drop any connection that no longer reaches its primary.
    async fn poll_topology(self: Arc<Self>) {
        let mut stop = self.stop.subscribe();
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.changed() => return,
            }
            let announced = self.announced_primaries().await;
            for (i, shard) in self.shards.iter().enumerate() {
                for slot in &shard.connections {
                    self.check_connection(slot, announced.as_ref().and_then(|a| a.get(i))).await;
                }
            }
        }
    }

    /// Per shard, the primary that Sentinel or CLUSTER SLOTS announces (None for a standalone
    /// target, whose connections speak for themselves).
    async fn announced_primaries(&self) -> Option<Vec<(String, u16)>> {
        match &self.target.discovery {
            Discovery::Sentinel { .. } => {
                let (h, p, sentinel) = sentinel_primary(&self.target, self.limit).await.ok()?;
                self.announce(EventKind::Topology {
                    source: format!("sentinel {sentinel}"),
                    server: Some(sentinel),
                    role: Some("sentinel".into()),
                    run_id: None,
                    primary: Some(format!("{h}:{p}")),
                });
                Some(vec![(h, p)])
            }
            Discovery::Cluster { .. } => {
                let map = self.map.as_ref()?;
                let fresh = map.refresh(&self.target, self.limit).await.ok()?;
                if self.announces {
                    self.note_cluster_failures(&fresh).await;
                }
                let owners: Vec<(String, u16)> = self
                    .shards
                    .iter()
                    .map(|s| {
                        let owner = map.owner(slot_of(s.tag.as_bytes()));
                        owner.map(|n| (n.host, n.port)).unwrap_or_default()
                    })
                    .collect();
                let layout: Vec<String> = self
                    .shards
                    .iter()
                    .zip(&owners)
                    .map(|(s, (h, p))| format!("{}={h}:{p}", s.name.as_deref().unwrap_or("")))
                    .collect();
                self.announce(EventKind::Topology {
                    source: format!("CLUSTER SLOTS ({} shards)", fresh.len()),
                    server: None,
                    role: None,
                    run_id: None,
                    primary: Some(layout.join(" ")),
                });
                Some(owners)
            }
            Discovery::Nodes { .. } => {
                let (h, p) = crate::target::locate_primary(&self.target, self.limit).await.ok()?;
                self.announce(EventKind::Topology {
                    source: "ROLE of the nodes".into(),
                    server: Some(format!("{h}:{p}")),
                    role: Some("master".into()),
                    run_id: None,
                    primary: Some(format!("{h}:{p}")),
                });
                Some(vec![(h, p)])
            }
            Discovery::Direct { .. } | Discovery::Memcache { .. } => None,
        }
    }

    /// The cluster's own verdict on a primary (`PFAIL`, the node asked suspects it; `FAIL`, its
    /// nodes agreed it is down) on the timeline as "failure detected", each once per failure;
    /// polled with the slot map, every second.
    async fn note_cluster_failures(&self, shards: &[crate::target::cluster::ShardInfo]) {
        let mut nodes = crate::target::cluster::seeds(&self.target);
        for s in shards {
            nodes.extend(std::iter::once(&s.primary).chain(&s.replicas).map(|n| (n.host.clone(), n.port)));
        }
        let Ok((asked, failed)) = crate::target::cluster::failed_primaries(&self.target, &nodes, self.limit).await
        else {
            return;
        };
        let news: Vec<(String, &str)> = {
            let mut flagged = self.flagged.lock().expect("not poisoned");
            // A node no longer flagged (restarted, rejoined) may fail again later.
            flagged.retain(|flag| failed.contains(flag));
            failed.into_iter().filter(|flag| flagged.insert(flag.clone())).collect()
        };
        for (addr, flag) in news {
            let source = format!("CLUSTER NODES via {asked}");
            let detail = match flag {
                "fail?" => format!("primary {addr} flagged fail? (PFAIL: suspected by {asked})"),
                _ => format!("primary {addr} flagged fail"),
            };
            self.announce(EventKind::FailureDetected { source, detail });
        }
    }

    async fn check_connection(&self, slot: &StreamConnection, announced: Option<&(String, u16)>) {
        let Some(live) = slot.current() else { return };
        if announced.is_some_and(|(h, p)| (h.as_str(), *p) != (live.server.host.as_str(), live.server.port)) {
            slot.invalidate(live.generation);
            return;
        }
        let mut conn = live.conn.clone();
        match query_role(&mut conn, self.limit).await {
            Ok((role, run_id)) => {
                let is_primary = role == "master";
                let source_is_server = !self.target.is_sentinel() && !self.target.is_cluster();
                self.announce(EventKind::Topology {
                    source: format!("{} connection", slot.stream.name()),
                    server: Some(live.server.addr.clone()),
                    role: Some(role),
                    run_id,
                    primary: (is_primary && source_is_server).then(|| live.server.addr.clone()),
                });
                if !is_primary {
                    slot.invalidate(live.generation);
                }
            }
            Err(_) => slot.invalidate(live.generation),
        }
    }

    /// Follows Sentinel's announcements, as a well-configured client does: one subscription per
    /// sentinel, because a sentinel that learns of the failover from the leader's hello before
    /// its own quorum is reached never publishes `+odown` (seen on a loaded machine), while the
    /// leader always does.
    async fn follow_switch_master(self: Arc<Self>) {
        let Discovery::Sentinel { sentinels, master } = &self.target.discovery else { return };
        let heard = Arc::new(std::sync::Mutex::new(Heard::default()));
        let listeners = sentinels.iter().map(|(host, port)| self.clone().keep_listening(host, *port, master, &heard));
        futures_util::future::join_all(listeners).await;
    }

    /// Subscribes to one sentinel until `shutdown`, again after each failure.
    async fn keep_listening(
        self: Arc<Self>,
        host: &str,
        port: u16,
        master: &str,
        heard: &Arc<std::sync::Mutex<Heard>>,
    ) {
        let mut stop = self.stop.subscribe();
        loop {
            tokio::select! {
                r = self.listen(host, port, master, heard) => {
                    if let Err(e) = r { tracing::debug!("sentinel {host}:{port} subscription: {e:#}"); }
                }
                _ = stop.changed() => return,
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(200)) => {}
                _ = stop.changed() => return,
            }
        }
    }

    async fn listen(&self, host: &str, port: u16, master: &str, heard: &std::sync::Mutex<Heard>) -> Result<()> {
        use futures_util::StreamExt;
        let client = self.target.sentinel_client(host, port);
        let mut pubsub = crate::target::connect_pubsub(&self.target, client, self.limit)
            .await
            .map_err(|e| anyhow::anyhow!("{}", e.text))?;
        let channels = ["+switch-master", "+odown", "+sdown"];
        timeout(self.limit, pubsub.subscribe(&channels)).await.context("SUBSCRIBE timeout")??;
        let mut messages = pubsub.on_message();
        // Every read has a deadline: a sentinel that went silent (or a half-open connection) is
        // left and subscribed again; the topology poll asks the sentinels every second anyway.
        while let Some(msg) = timeout(SUBSCRIPTION_IDLE, messages.next()).await.ok().flatten() {
            let payload: String = msg.get_payload().unwrap_or_default();
            let parts: Vec<&str> = payload.split_whitespace().collect();
            let channel = msg.get_channel_name();
            if channel == "+odown" || channel == "+sdown" {
                // "master <master-name> <ip> <port> …": +sdown, this sentinel finds it down;
                // +odown, the sentinels agree it failed. Replicas and sentinels are not news.
                if parts.len() >= 4 && parts[0] == "master" && parts[1] == master {
                    let down = format!("{}:{}", parts[2], parts[3]);
                    let mut heard = heard.lock().expect("not poisoned");
                    let first =
                        if channel == "+odown" { heard.first_down(&down) } else { heard.first_suspected(&down) };
                    if first {
                        let source = format!("sentinel {host}:{port} {channel}");
                        self.announce(EventKind::FailureDetected { source, detail: payload.clone() });
                    }
                }
                continue;
            }
            // "<master-name> <old-ip> <old-port> <new-ip> <new-port>"
            if parts.len() == 5 && parts[0] == master {
                let (from, primary) = (format!("{}:{}", parts[1], parts[2]), format!("{}:{}", parts[3], parts[4]));
                if !heard.lock().expect("not poisoned").first_switch(&from, &primary) {
                    continue;
                }
                self.announce(EventKind::Topology {
                    source: format!("sentinel {host}:{port} +switch-master"),
                    server: Some(format!("{host}:{port}")),
                    role: Some("sentinel".into()),
                    run_id: None,
                    primary: Some(primary),
                });
                self.reconnect_all();
            }
        }
        anyhow::bail!("subscription closed or idle for {SUBSCRIPTION_IDLE:?}")
    }

    /// The trial's write log of one shard as its current primary has it, on a fresh connection.
    /// Read a page at a time into ranges: a long trial's log (millions of entries) never
    /// arrives as one reply.
    /// At most `max_seq` entries are read (one per write sent): a server that claims a longer
    /// list is not followed, and numbers failprobe never sent are ignored.
    pub(crate) async fn read_write_log(
        &self,
        shard: usize,
        keys: &TrialKeys,
        max_seq: u64,
    ) -> Result<(String, SeqSet), ProbeError> {
        const PAGE: u64 = 10_000;
        let (mut conn, server) = self.shards[shard].locator.connect(self.limit).await?;
        let len: u64 = timeout(Duration::from_secs(30), redis::cmd("LLEN").arg(&keys.log).query_async(&mut conn))
            .await
            .map_err(|_| ProbeError::timeout("LLEN"))?
            .map_err(|e| classify(&e))?;
        let mut present = SeqSet::default();
        for start in (0..len.min(max_seq)).step_by(PAGE as usize) {
            let mut page = redis::cmd("LRANGE");
            page.arg(&keys.log).arg(start).arg(start + PAGE - 1);
            let seqs: Vec<u64> = timeout(Duration::from_secs(30), page.query_async(&mut conn))
                .await
                .map_err(|_| ProbeError::timeout("LRANGE"))?
                .map_err(|e| classify(&e))?;
            for seq in seqs.into_iter().filter(|seq| (1..=max_seq).contains(seq)) {
                present.insert(seq);
            }
        }
        Ok((server.addr, present))
    }

    /// DBSIZE without failprobe's own keys (those we know we wrote; no KEYS/SCAN needed),
    /// summed over the shards' primaries.
    /// Keys that are not failprobe's: in the selected database (DBSIZE), and per database (INFO
    /// keyspace, every one, not only the selected), summed over the shards' primaries.
    pub(crate) async fn user_key_counts(&self, own: &[String]) -> Result<(u64, BTreeMap<u32, u64>), ProbeError> {
        let mut total = 0;
        let mut dbs: BTreeMap<u32, u64> = BTreeMap::new();
        for shard in &self.shards {
            let (mut conn, _) = shard.locator.connect(self.limit).await?;
            let tag = format!("{{{}}}", shard.tag);
            let mine: Vec<&String> = own.iter().filter(|k| k.contains(&tag)).collect();
            let mut pipe = redis::pipe();
            pipe.cmd("DBSIZE");
            match mine.is_empty() {
                true => pipe.cmd("ECHO").arg(0),
                false => pipe.cmd("EXISTS").arg(&mine),
            };
            pipe.cmd("INFO").arg("keyspace");
            let (size, ours, info): (u64, u64, String) = timeout(self.limit * 4, pipe.query_async(&mut conn))
                .await
                .map_err(|_| ProbeError::timeout("DBSIZE"))?
                .map_err(|e| classify(&e))?;
            total += size.saturating_sub(ours);
            let selected = u32::try_from(self.target.db).unwrap_or(0);
            for (db, keys) in keyspace_counts(&info) {
                let theirs = if db == selected { keys.saturating_sub(ours) } else { keys };
                // A database with only failprobe's keys holds none of the application's.
                if theirs > 0 {
                    *dbs.entry(db).or_default() += theirs;
                }
            }
        }
        Ok((total, dbs))
    }
}

impl Shard {
    fn new(name: Option<String>, tag: String, locator: Locator, client: Option<String>) -> Self {
        Self {
            name,
            tag,
            connections: [
                StreamConnection::new(Stream::Write, client.clone()),
                StreamConnection::new(Stream::Read, client),
            ],
            locator: Arc::new(locator),
        }
    }
}

/// Writes are sent concurrently, so two can reach the server out of order; the sentinel key only
/// ever moves forward, so a read that sees an older value really read an older state of the
/// data (a failover that lost writes, a lagging node), not our own reordering.
const SET_IF_HIGHER: &str = "local c = tonumber(redis.call('GET', KEYS[1])) \
if not c or c < tonumber(ARGV[1]) then redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) end";

struct Written;

impl From<Written> for Option<u64> {
    fn from(_: Written) -> Self {
        None
    }
}

/// A write probe, one MULTI/EXEC: the sequence number onto the trial's log, the sentinel key
/// raised to it, both with the TTL; with a `--write-ack` level, its WAIT/WAITAOF after the
/// EXEC in the same round trip. Every Redis client profile sends exactly this.
pub(crate) fn write_probe(keys: &TrialKeys, seq: u64) -> redis::Pipeline {
    let waits = keys.ack != WriteAck::Plain;
    let mut pipe = redis::pipe();
    if waits {
        // The wait must follow the EXEC, outside the transaction (inside it WAIT cannot block).
        pipe.cmd("MULTI").ignore();
    } else {
        pipe.atomic();
    }
    pipe.cmd("RPUSH")
        .arg(&keys.log)
        .arg(seq)
        .ignore()
        .cmd("PEXPIRE")
        .arg(&keys.log)
        .arg(keys.ttl_ms)
        .ignore()
        .cmd("EVAL")
        .arg(SET_IF_HIGHER)
        .arg(1)
        .arg(&keys.sentinel)
        .arg(seq)
        .arg(keys.ttl_ms)
        .ignore();
    if waits {
        pipe.cmd("EXEC");
        keys.ack.append(&mut pipe);
    }
    pipe
}

/// Sends a write probe on any connection and judges it: a server error anywhere in the replies
/// (the transaction's too) fails it, and so does a `--write-ack` level not reached.
pub(crate) async fn send_write<C: redis::aio::ConnectionLike>(
    conn: &mut C,
    keys: &TrialKeys,
    seq: u64,
) -> redis::RedisResult<()> {
    let replies: Vec<redis::Value> = write_probe(keys, seq).query_async(conn).await?;
    for reply in &replies {
        first_error(reply)?;
    }
    keys.ack.check(&replies)
}

fn first_error(v: &redis::Value) -> redis::RedisResult<()> {
    match v {
        redis::Value::ServerError(e) => Err(e.clone().into()),
        redis::Value::Array(items) => items.iter().try_for_each(first_error),
        _ => Ok(()),
    }
}

/// `db3:keys=12,expires=0,avg_ttl=0` lines → (3, 12), at most one per database number a server
/// can have (Redis allows up to 2^31; a hostile reply is cut at 10 000 lines).
fn keyspace_counts(info: &str) -> Vec<(u32, u64)> {
    info.lines()
        .take(10_000)
        .filter_map(|line| {
            let (db, fields) = line.trim().strip_prefix("db")?.split_once(':')?;
            let keys = fields.split(',').find_map(|f| f.strip_prefix("keys="))?;
            Some((db.parse().ok()?, keys.parse().ok()?))
        })
        .collect()
}

/// A read probe: the sentinel key.
pub(crate) fn read_probe(keys: &TrialKeys) -> redis::Cmd {
    let mut cmd = redis::cmd("GET");
    cmd.arg(&keys.sentinel);
    cmd
}

impl Prober for RedisProber {
    async fn write(self: Arc<Self>, shard: usize, keys: Arc<TrialKeys>, seq: u64, deadline: Instant) -> Attempt {
        self.on_conn(shard, Stream::Write, deadline, |mut conn| {
            let keys = keys.clone();
            async move { send_write(&mut conn, &keys, seq).await.map(|_| Written) }
        })
        .await
    }

    async fn read(self: Arc<Self>, shard: usize, keys: Arc<TrialKeys>, deadline: Instant) -> Attempt {
        self.on_conn(shard, Stream::Read, deadline, |mut conn| {
            let cmd = read_probe(&keys);
            async move {
                let v: Option<u64> = cmd.query_async(&mut conn).await?;
                Ok(Some(v.unwrap_or(0)))
            }
        })
        .await
    }

    fn stop(&self) {
        self.shutdown();
    }

    fn subscribe(
        self: Arc<Self>,
        task: super::pubsub::SubscribeTask,
    ) -> Option<super::schedule::BoxFuture<'static, ()>> {
        // Sharded channels (SSUBSCRIBE) are not probed yet: a cluster has no subscriber.
        if self.map.is_some() || self.target.is_cluster() {
            return None;
        }
        let subscriber = super::pubsub::Subscriber {
            target: self.target.clone(),
            locator: self.shards.get(task.shard)?.locator.clone(),
            limit: self.limit,
            follows_primary: self.follows_primary,
        };
        Some(Box::pin(subscriber.run(task)))
    }
}

impl super::Producer for RedisProber {
    fn publish(
        self: Arc<Self>,
        shard: usize,
        channel: String,
        payload: String,
        deadline: Instant,
    ) -> super::schedule::BoxFuture<'static, Attempt> {
        Box::pin(async move {
            self.on_conn(shard, Stream::Publish, deadline, |mut conn| {
                let mut cmd = redis::cmd("PUBLISH");
                cmd.arg(&channel).arg(&payload);
                async move { cmd.query_async::<u64>(&mut conn).await.map(Some) }
            })
            .await
        })
    }

    fn append(
        self: Arc<Self>,
        shard: usize,
        keys: Arc<TrialKeys>,
        seq: u64,
        scheduled_us: u64,
        deadline: Instant,
    ) -> super::schedule::BoxFuture<'static, Attempt> {
        Box::pin(async move {
            self.on_conn(shard, Stream::Append, deadline, |mut conn| {
                let pipe = super::xstream::append(&keys.stream, seq, scheduled_us, keys.ttl_ms, &keys.ack);
                let keys = keys.clone();
                async move {
                    let replies: Vec<redis::Value> = pipe.query_async(&mut conn).await?;
                    replies.iter().try_for_each(first_error)?;
                    keys.ack.check(&replies).map(|_| Written)
                }
            })
            .await
        })
    }

    fn primary_locator(&self, shard: usize) -> super::xstream::Route {
        super::xstream::Route { locator: self.shards[shard].locator.clone(), limit: self.limit }
    }

    fn read_stream(
        self: Arc<Self>,
        shard: usize,
        key: String,
        max_seq: u64,
    ) -> super::schedule::BoxFuture<'static, Result<(String, SeqSet, u64), ProbeError>> {
        Box::pin(async move {
            let (mut conn, server) = self.shards[shard].locator.connect(self.limit).await?;
            let (present, pending) = super::xstream::read_back(&mut conn, &key, max_seq).await?;
            Ok((server.addr, present, pending))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::Heard;

    #[test]
    fn the_deposed_primary_reported_down_late_is_not_news() {
        let mut heard = Heard::default();
        assert!(heard.first_suspected("10.0.0.1:6379"));
        assert!(!heard.first_suspected("10.0.0.1:6379"), "the same news from a second sentinel");
        assert!(heard.first_down("10.0.0.1:6379"));
        assert!(heard.first_switch("10.0.0.1:6379", "10.0.0.2:6379"));
        assert!(!heard.first_switch("10.0.0.1:6379", "10.0.0.2:6379"), "the same switch from a second sentinel");
        // A sentinel that has not learnt of the switch yet still finds the old primary down.
        assert!(!heard.first_suspected("10.0.0.1:6379") && !heard.first_down("10.0.0.1:6379"));
        // The new primary failing is news, and so is the old one once it is primary again.
        assert!(heard.first_suspected("10.0.0.2:6379") && heard.first_down("10.0.0.2:6379"));
        assert!(heard.first_switch("10.0.0.2:6379", "10.0.0.1:6379"));
        assert!(heard.first_suspected("10.0.0.1:6379") && heard.first_down("10.0.0.1:6379"));
    }
}
