//! A local lab on loopback, each node on an address of its own (`node::node_ip`): a primary + replica (and three sentinels), a
//! 3 + 3 node cluster, or two memcached nodes, started from the servers on PATH: Redis, or
//! Valkey (`--server valkey`, or when only Valkey is installed), or one version of either
//! (`--server redis@6.2`: `engine`). `lab.json` in its directory describes it for `--lab DIR`,
//! `lab status` and `lab down`.

mod cluster;
pub mod endpoint;
mod engine;
mod fault;
mod health;
mod lock;
mod node;
mod verify;

pub use engine::{Server, ServerChoice};
pub(crate) use fault::check_can_inject as fault_check;
pub use fault::table_name as fault_table;
pub use fault::{FaultKind, Netem};
pub use health::Readiness;
use node::{free_port, node_ip};
pub use node::{Node, NodeKind};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

/// How many times a lab is started, on fresh ports each time, when a port checked free could
/// not be bound when its node was about to start (seen in CI, once a run of the suite).
const STARTS: usize = 3;

/// A node's port, free when picked, that could not be bound when the node was about to start.
#[derive(Debug, thiserror::Error)]
#[error("lab node {node}: {addr} cannot be bound ({why}); not started")]
struct PortTaken {
    node: String,
    addr: SocketAddr,
    why: std::io::Error,
}

pub const MASTER_NAME: &str = "failprobe";
pub(crate) const LAB_FILE: &str = "lab.json";
/// Sentinel settings from the lab notes: kill -9 → ~2.2 s outage, tests stay fast.
pub(crate) const DOWN_AFTER_MS: u64 = 1000;
pub(crate) const FAILOVER_TIMEOUT_MS: u64 = 3000;
/// Lab notes: node-timeout 1000 gives a ~2.3 s cluster failover on kill -9.
pub(crate) const NODE_TIMEOUT_MS: u64 = 1000;
/// Redis's own default for `min-replicas-max-lag`.
pub(crate) const MIN_REPLICAS_MAX_LAG_S: u64 = 10;

/// The settings people protect themselves with, as the lab runs them (scenario `[lab]`,
/// `lab up` flags): each one's effect is what a run with and without it measures.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct LabSettings {
    /// Sentinel `down-after-milliseconds`: silence before a sentinel calls the primary down.
    pub down_after_ms: u64,
    /// Sentinel `failover-timeout`.
    pub failover_timeout_ms: u64,
    /// Cluster `cluster-node-timeout`.
    pub node_timeout_ms: u64,
    /// `min-replicas-to-write` on every data node (0: off, Redis's default): a primary that
    /// hears from fewer replicas refuses writes (NOREPLICAS) ...
    pub min_replicas_to_write: u32,
    /// ... after `min-replicas-max-lag` seconds without their acknowledgement.
    pub min_replicas_max_lag_s: u64,
}

impl Default for LabSettings {
    fn default() -> Self {
        Self {
            down_after_ms: DOWN_AFTER_MS,
            failover_timeout_ms: FAILOVER_TIMEOUT_MS,
            node_timeout_ms: NODE_TIMEOUT_MS,
            min_replicas_to_write: 0,
            min_replicas_max_lag_s: MIN_REPLICAS_MAX_LAG_S,
        }
    }
}

impl LabSettings {
    /// The lines a data node's config gets from these settings.
    fn data_node_lines(&self) -> String {
        match self.min_replicas_to_write {
            0 => String::new(),
            n => format!("min-replicas-to-write {n}\nmin-replicas-max-lag {}\n", self.min_replicas_max_lag_s),
        }
    }

    /// Refuses values the servers would refuse or that make no lab (checked before anything
    /// starts).
    pub fn check(&self) -> Result<()> {
        if self.down_after_ms == 0 || self.failover_timeout_ms == 0 || self.node_timeout_ms == 0 {
            bail!("lab settings: down-after, failover-timeout and node-timeout must be above 0 ms");
        }
        if self.min_replicas_to_write > 0 && self.min_replicas_max_lag_s == 0 {
            bail!("lab settings: min-replicas-max-lag must be at least 1 s when min-replicas-to-write is set");
        }
        Ok(())
    }
}
const INSTALL_HINT: &str =
    "install them with scripts/install-servers.sh, or: sudo apt-get update && sudo apt-get install -y redis-server redis-sentinel memcached";
const VALKEY_HINT: &str =
    "install Valkey 9 with scripts/install-servers.sh --valkey and put its .servers/valkey/bin on PATH";

#[derive(Serialize, Deserialize, clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Topology {
    /// Primary + one replica, no automatic failover.
    Replica,
    /// Primary + one replica + three sentinels.
    Sentinel,
    /// Redis Cluster: three primaries, each with one replica.
    Cluster,
    /// Two memcached nodes.
    Memcached,
    /// The Sentinel lab behind a primary endpoint: a stable address that sends each new
    /// connection to the current primary (after `--endpoint-lag`), as a managed service does.
    Endpoint,
}

/// How to start a lab, beside its topology.
#[derive(Clone, Debug, Default)]
pub struct LabOptions {
    /// Redis or Valkey; None: Redis when `redis-server` is found, else Valkey when only
    /// `valkey-server` is.
    pub server: Option<Server>,
    /// One version of it (`6.2` of `--server redis@6.2`): its programs from `programs`, the
    /// checkout's `.servers/`, else PATH, whichever reports that version.
    pub version: Option<String>,
    /// `Topology::Endpoint`: how long after a failover new connections reach the new primary.
    pub endpoint_lag: Duration,
    /// A directory searched before PATH for the server programs.
    pub programs: Option<PathBuf>,
    pub settings: LabSettings,
}

impl LabOptions {
    /// `--server`'s engine and version.
    pub fn choose(&mut self, choice: Option<&ServerChoice>) {
        self.server = choice.map(|c| c.server);
        self.version = choice.and_then(|c| c.version.clone());
    }

    /// The server the lab runs, and where its data node and sentinel programs are.
    fn resolve(&self, topology: Topology) -> Result<(Server, Vec<PathBuf>)> {
        let versioned = match (&self.version, topology) {
            (Some(v), t) if t != Topology::Memcached => {
                let server = self.server.unwrap_or_default();
                Some(engine::programs_for(server, v, self.programs.as_deref())?)
            }
            _ => None,
        };
        let first = versioned.as_deref().or(self.programs.as_deref());
        let find = |bin: &str| find_program(bin, first);
        let server = self.server.unwrap_or_else(|| {
            match find(Server::Redis.server_program()).is_err() && find(Server::Valkey.server_program()).is_ok() {
                true => Server::Valkey,
                false => Server::Redis,
            }
        });
        let data = server.server_program();
        let needed: Vec<&str> = match topology {
            Topology::Replica | Topology::Cluster => vec![data],
            Topology::Sentinel | Topology::Endpoint => vec![data, server.sentinel_program().0],
            Topology::Memcached => vec!["memcached"],
        };
        let hint = match (server, topology) {
            (_, Topology::Memcached) | (Server::Redis, _) => INSTALL_HINT,
            (Server::Valkey, _) => VALKEY_HINT,
        };
        let programs = needed
            .iter()
            .map(|bin| find(bin).with_context(|| format!("`{bin}` is not on PATH; {hint}")))
            .collect::<Result<_>>()?;
        Ok((server, programs))
    }
}

#[derive(Serialize, Deserialize, Clone, Debug)]
pub(crate) struct LabFile {
    pub topology: Topology,
    /// Redis or Valkey (a lab.json from before Valkey labs has none: Redis).
    #[serde(default)]
    pub server: Server,
    /// The version its data node program reports (`6.2.14`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    pub master_name: String,
    pub target: String,
    pub primary_url: String,
    /// How its servers were configured (a lab.json from before has none: the defaults).
    #[serde(default)]
    pub settings: LabSettings,
    pub nodes: Vec<Node>,
}

pub struct Lab {
    pub dir: PathBuf,
    pub topology: Topology,
    pub server: Server,
    /// The version the server program reports (`6.2.14`), when it said.
    pub version: Option<String>,
    pub settings: LabSettings,
    /// The data node's and (Sentinel) the sentinel's program, found when the lab started.
    programs: Vec<PathBuf>,
    nodes: Mutex<Vec<Node>>,
    children: Mutex<Vec<std::process::Child>>,
    /// Stop the processes when this value is dropped (tests, `run` with its own lab).
    owned: bool,
    /// The lab directory's lock, for as long as this value uses the lab (`load`).
    _lock: Option<lock::LabLock>,
    /// A network fault kept until the trial ends (`hold_fault`); healed when this value is
    /// dropped, whoever owns the processes.
    fault: Mutex<Option<fault::Fault>>,
}

impl Lab {
    /// Starts a lab in `dir` and waits until it is ready.
    pub async fn up(topology: Topology, dir: &Path, owned: bool) -> Result<Lab> {
        Self::up_with(topology, dir, owned, &LabOptions::default()).await
    }

    /// `up`, with the server to run and the endpoint's lag.
    pub async fn up_with(topology: Topology, dir: &Path, owned: bool, options: &LabOptions) -> Result<Lab> {
        let endpoint_lag = options.endpoint_lag;
        options.settings.check()?;
        let (server, programs) = options.resolve(topology)?;
        std::fs::create_dir_all(dir).with_context(|| format!("creating lab directory {}", dir.display()))?;
        let dir = dir.canonicalize()?;
        // Held while the lab starts (a second `lab up` fails here, before picking ports or
        // writing lab.json); `lab up` then exits and leaves the servers running.
        let _lock = lock::LabLock::acquire(&dir)?;
        let running = verify::lab_processes(&dir);
        if !running.is_empty() || (dir.join(LAB_FILE).exists() && Lab::read(&dir).is_ok_and(|l| l.any_alive())) {
            let who: Vec<String> = running.iter().map(|f| f.who.clone()).collect();
            bail!(
                "a lab is already running in {} ({}; stop it with `failprobe lab down --dir {}`)",
                dir.display(),
                match who.is_empty() {
                    true => "lab.json names live nodes".to_string(),
                    false => who.join(", "),
                },
                dir.display()
            );
        }
        remove_stale_files(&dir);
        // A SIGKILLed run may have left its fault in place: the new lab starts healed.
        fault::remove_leftovers(&dir);
        let lab = Lab {
            dir: dir.clone(),
            topology,
            server,
            version: programs.first().and_then(|p| engine::version_of(p)).map(|v| v.text),
            settings: options.settings.clone(),
            programs,
            nodes: Mutex::new(Vec::new()),
            children: Mutex::new(Vec::new()),
            owned,
            _lock: None,
            fault: Mutex::new(None),
        };
        for attempt in 1..=STARTS {
            let Err(e) = lab.start(endpoint_lag).await else { return Ok(lab) };
            // A lab that does not come up leaves nothing running (`lab up` exits on the error,
            // and what it started would run on until a `lab down`).
            let _ = lab.down();
            if attempt == STARTS || e.downcast_ref::<PortTaken>().is_none() {
                return Err(e);
            }
            tracing::warn!("{e:#}: starting the lab again on other ports");
            lab.nodes.lock().map_err(|_| anyhow::anyhow!("lab lock"))?.clear();
            remove_stale_files(&dir);
        }
        unreachable!("the last start returns")
    }

    /// Starts the nodes of `self.topology` and waits until the lab is ready.
    async fn start(&self, endpoint_lag: Duration) -> Result<()> {
        let net = node::lab_net();
        let ip = |name: &str| node_ip(net, name);
        if self.topology == Topology::Cluster {
            return self.start_cluster(net).await;
        }
        if self.topology == Topology::Memcached {
            for i in 1..=2 {
                let name = format!("memcached-{i}");
                self.spawn(Node::memcached(&name, ip(&name), free_port(ip(&name))?))?;
            }
            self.save()?;
            self.wait_listening(Duration::from_secs(10)).await?;
            return self.wait_ready(Duration::from_secs(30)).await.map(|_| ());
        }
        let sentinels = matches!(self.topology, Topology::Sentinel | Topology::Endpoint);
        let primary = SocketAddr::from((ip("redis-1"), free_port(ip("redis-1"))?));
        let replica = free_port(ip("redis-2"))?;
        self.spawn(Node::redis("redis-1", ip("redis-1"), primary.port(), None)?)?;
        self.spawn(Node::redis("redis-2", ip("redis-2"), replica, Some(primary))?)?;
        if sentinels {
            for i in 1..=3 {
                let name = format!("sentinel-{i}");
                self.spawn(Node::sentinel(&name, ip(&name), free_port(ip(&name))?, primary)?)?;
            }
        }
        self.save()?;
        // Before waiting: with Sentinel's default periods (INFO every 10 s, hello every 2 s) a
        // sentinel learns of the replica up to 10 s after it started.
        self.wait_listening(Duration::from_secs(10)).await?;
        if sentinels {
            self.tune_sentinels().await;
        }
        self.wait_ready(Duration::from_secs(30)).await?;
        if self.topology == Topology::Endpoint {
            let at = SocketAddr::from((ip("endpoint"), free_port(ip("endpoint"))?));
            self.spawn(Node::endpoint("endpoint", ip("endpoint"), at.port(), endpoint_lag))?;
            self.save()?;
            self.wait_listening(Duration::from_secs(10)).await?;
        }
        Ok(())
    }

    /// Until every node listens on its port; an error at once, with the server's own words
    /// (the end of its log, where its stderr goes), when one of them exits instead: a config
    /// it refuses, a port taken since it was found free.
    async fn wait_listening(&self, limit: Duration) -> Result<()> {
        let until = tokio::time::Instant::now() + limit;
        loop {
            let mut waiting = Vec::new();
            for node in self.nodes() {
                if let Some(status) = self.exit_status(node.pid) {
                    bail!("{}", self.exited(&node, status));
                }
                if tokio::net::TcpStream::connect(node.addr()).await.is_err() {
                    waiting.push(format!("{} ({})", node.name, node.addr()));
                }
            }
            if waiting.is_empty() {
                return Ok(());
            }
            if tokio::time::Instant::now() >= until {
                bail!("lab in {}: nothing listens for {} after {limit:?}", self.dir.display(), waiting.join(", "));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// How our child `pid` ended, when it has (it stays a child: `reap` removes it).
    fn exit_status(&self, pid: u32) -> Option<std::process::ExitStatus> {
        let mut children = self.children.lock().ok()?;
        children.iter_mut().find(|c| c.id() == pid).and_then(|c| c.try_wait().ok().flatten())
    }

    /// `lab node redis-1 (redis 6.2.14 …) exited at start (exit status: 1): <its last lines>`.
    fn exited(&self, node: &Node, status: std::process::ExitStatus) -> String {
        let program = node.program.as_deref().map_or_else(|| node.name.clone(), |p| p.display().to_string());
        let version = node.program.as_deref().and_then(engine::version_of).map(|v| format!(" {}", v.text));
        let log = node.log_file(&self.dir);
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
        let tail = lines[lines.len().saturating_sub(8)..].join("\n  ");
        format!(
            "lab node {} ({program}{}) exited at start ({status}); it said ({}):\n  {}",
            node.name,
            version.unwrap_or_default(),
            log.display(),
            if tail.is_empty() { "nothing" } else { &tail }
        )
    }

    /// Six cluster nodes, joined as 3 primaries + 3 replicas (`cluster::create`).
    async fn start_cluster(&self, net: Ipv4Addr) -> Result<()> {
        let mut addrs = Vec::new();
        for i in 1..=6 {
            let name = format!("redis-{i}");
            let ip = node_ip(net, &name);
            let mut node = Node::redis(&name, ip, node::free_cluster_port(ip)?, None)?;
            node.cluster = true;
            addrs.push(node.addr());
            self.spawn(node)?;
        }
        self.save()?;
        self.wait_listening(Duration::from_secs(10)).await?;
        cluster::create(&addrs, Duration::from_secs(30)).await?;
        self.wait_ready(Duration::from_secs(30)).await.map(|_| ())
    }

    /// Attaches to a lab started earlier (by `failprobe lab up`) and locks its directory for as
    /// long as this value lives (`run --lab`, `lab down`); its processes are not ours to stop
    /// when this value is dropped.
    pub fn load(dir: &Path) -> Result<Lab> {
        let dir = dir.canonicalize().with_context(|| {
            format!("no lab in {} (start one with `failprobe lab up --dir {}`)", dir.display(), dir.display())
        })?;
        if !dir.join(LAB_FILE).is_file() {
            // The error `read` gives, without leaving a lock file in a directory that is no lab.
            return Lab::read(&dir);
        }
        let lock = lock::LabLock::acquire(&dir)?;
        let mut lab = Lab::read(&dir)?;
        lab._lock = Some(lock);
        Ok(lab)
    }

    /// `load` without the lock: for what only looks (`lab status`, the lab's endpoint) or acts
    /// from outside failprobe (a test's emulated cloud rebooting a node).
    pub fn read(dir: &Path) -> Result<Lab> {
        let dir = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
        let dir = dir.as_path();
        let path = dir.join(LAB_FILE);
        let text = std::fs::read_to_string(&path).with_context(|| {
            format!("no lab in {} (start one with `failprobe lab up --dir {}`)", dir.display(), dir.display())
        })?;
        let file: LabFile = serde_json::from_str(&text).with_context(|| format!("reading {}", path.display()))?;
        // A node's name becomes file names in the lab directory (its .conf and .log): only the
        // names `lab up` gives, never a path.
        if let Some(bad) = file.nodes.iter().find(|n| !node::is_lab_name(&n.name)) {
            bail!("{}: node name `{}` is not one `lab up` gives; not used", path.display(), bad.name.escape_debug());
        }
        Ok(Lab {
            dir: dir.to_path_buf(),
            topology: file.topology,
            server: file.server,
            version: file.version,
            settings: file.settings,
            // Each node in lab.json names its own program.
            programs: Vec::new(),
            nodes: Mutex::new(file.nodes),
            children: Mutex::new(Vec::new()),
            owned: false,
            _lock: None,
            fault: Mutex::new(None),
        })
    }

    /// Leaves the processes running when this value is dropped (`lab up`).
    pub fn detach(mut self) {
        self.owned = false;
        for mut c in self.children.lock().map(|mut c| std::mem::take(&mut *c)).unwrap_or_default() {
            // Reaping is init's job once we exit; nothing to do.
            let _ = c.try_wait();
        }
    }

    pub fn nodes(&self) -> Vec<Node> {
        self.nodes.lock().map(|n| n.clone()).unwrap_or_default()
    }

    fn redis_nodes(&self) -> Vec<Node> {
        self.nodes().into_iter().filter(|n| n.kind == NodeKind::Redis).collect()
    }

    /// The endpoint's address (`Topology::Endpoint`).
    pub fn endpoint_addr(&self) -> Option<SocketAddr> {
        self.nodes().into_iter().find(|n| n.kind == NodeKind::Endpoint).map(|n| n.addr())
    }

    /// The lab through its sentinels: where triggers act, whatever the probes' target.
    pub fn sentinel_url(&self) -> Option<String> {
        let hosts = joined(&self.sentinel_addrs());
        (!hosts.is_empty()).then(|| format!("redis+sentinel://{hosts}/{MASTER_NAME}"))
    }

    pub(crate) fn sentinel_addrs(&self) -> Vec<SocketAddr> {
        self.nodes().into_iter().filter(|n| n.kind == NodeKind::Sentinel).map(|n| n.addr()).collect()
    }

    /// The URL failprobe probes: the endpoint, else through the sentinels when there are some.
    pub fn target_url(&self) -> String {
        if let (Topology::Endpoint, Some(at)) = (self.topology, self.endpoint_addr()) {
            format!("redis://{at}")
        } else if self.topology == Topology::Cluster {
            format!("redis+cluster://{}", joined(&self.redis_addrs()))
        } else if self.topology == Topology::Memcached {
            let nodes: Vec<SocketAddr> = self.nodes().iter().map(Node::addr).collect();
            format!("memcache://{}", joined(&nodes))
        } else {
            self.sentinel_url().unwrap_or_else(|| self.primary_url())
        }
    }

    /// Both nodes of the replica lab, `redis://primary,replica`: a target that follows a
    /// `failover` between them (the primary is whichever answers ROLE as one). Other labs: their
    /// `target_url`.
    pub fn pair_url(&self) -> String {
        match self.topology {
            Topology::Replica => format!("redis://{}", joined(&self.redis_addrs())),
            _ => self.target_url(),
        }
    }

    /// The first node: the primary when the lab started.
    pub fn primary_url(&self) -> String {
        let at = self.redis_nodes().first().map(Node::addr).unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 0)));
        format!("redis://{at}")
    }

    pub fn redis_ports(&self) -> Vec<u16> {
        self.redis_nodes().iter().map(|n| n.port).collect()
    }

    pub fn redis_addrs(&self) -> Vec<SocketAddr> {
        self.redis_nodes().iter().map(Node::addr).collect()
    }

    /// The address of the lab's node on `port` (ports are unique within a lab); a port no node
    /// has is taken to be on 127.0.0.1.
    pub fn addr_of(&self, port: u16) -> SocketAddr {
        let node = self.nodes().into_iter().find(|n| n.port == port);
        node.map_or_else(|| SocketAddr::from(([127, 0, 0, 1], port)), |n| n.addr())
    }

    pub fn pid_of_port(&self, port: u16) -> Option<u32> {
        self.nodes().into_iter().find(|n| n.port == port).map(|n| n.pid)
    }

    pub fn save(&self) -> Result<()> {
        let file = LabFile {
            topology: self.topology,
            server: self.server,
            version: self.version.clone(),
            master_name: MASTER_NAME.to_string(),
            target: self.target_url(),
            primary_url: self.primary_url(),
            settings: self.settings.clone(),
            nodes: self.nodes(),
        };
        crate::file::write_file(&self.dir.join(LAB_FILE), &serde_json::to_vec_pretty(&file)?)
    }

    fn spawn(&self, mut node: Node) -> Result<()> {
        if node.program.is_none() {
            let program = match node.kind {
                NodeKind::Redis => self.programs.first(),
                NodeKind::Sentinel => self.programs.get(1),
                NodeKind::Memcached | NodeKind::Endpoint => None,
            };
            if let Some(program) = program {
                node.server = self.server;
                node.program = Some(program.clone());
            }
        } else {
            verify::check_program(&node)?;
        }
        // Something else on the port would make the node fail to start, or worse answer for it.
        // Our own check's socket may outlive its drop for a moment: a child forked meanwhile by
        // another thread (labs and runs start beside each other) holds it until its exec.
        let mut bound = std::net::TcpListener::bind(node.addr());
        for _ in 0..10 {
            if bound.is_ok() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
            bound = std::net::TcpListener::bind(node.addr());
        }
        if let Err(e) = bound {
            return Err(PortTaken { node: node.name.clone(), addr: node.addr(), why: e }.into());
        }
        drop(bound);
        let child = node.start(&self.dir, &self.settings)?;
        node.pid = child.id();
        self.children.lock().map_err(|_| anyhow::anyhow!("lab lock"))?.push(child);
        let mut nodes = self.nodes.lock().map_err(|_| anyhow::anyhow!("lab lock"))?;
        match nodes.iter_mut().find(|n| n.name == node.name) {
            Some(existing) => *existing = node,
            None => nodes.push(node),
        }
        Ok(())
    }

    pub(crate) fn any_alive(&self) -> bool {
        self.nodes().iter().any(|n| n.is_alive())
    }

    /// Restarts every node that is no longer running (after a kill trigger), as a replica of the
    /// current primary, so the next trial starts from a healthy lab.
    pub(crate) async fn heal(&self) -> Result<()> {
        // Before the first trial, whether or not a node is down: a restart trigger would start
        // the same programs.
        self.check_programs()?;
        self.reap();
        let dead: Vec<Node> = self.nodes().into_iter().filter(|n| !n.is_alive()).collect();
        if dead.is_empty() {
            return Ok(());
        }
        let primary = self.current_primary().await;
        for mut node in dead {
            if !node::wait_port_closed(node.addr(), Duration::from_secs(5)).await {
                // Something answers on the port, and it is not the process lab.json names.
                let why = crate::os::identify(node.pid as u64, &[node.addr()]).err().unwrap_or_default();
                anyhow::bail!(
                    "lab node {} on {}: its port still answers but not as the process lab.json names ({why}); not restarted",
                    node.name,
                    node.addr()
                );
            }
            if node.kind == NodeKind::Redis && !node.cluster {
                node.replica_of = primary.filter(|p| *p != node.port).map(|p| self.addr_of(p));
            }
            self.spawn(node)?;
        }
        self.save()
    }

    /// Kills the node on `port` and starts it again on the same port: a node replacement (for
    /// memcached: the same address, no data).
    pub async fn restart_port(&self, port: u16) -> Result<String> {
        let node = self
            .nodes()
            .into_iter()
            .find(|n| n.port == port)
            .ok_or_else(|| anyhow::anyhow!("no lab node on port {port}"))?;
        verify::check_program(&node)?;
        self.signal_node(&node, libc::SIGKILL)?;
        self.reap();
        if !node::wait_port_closed(node.addr(), Duration::from_secs(5)).await {
            bail!("lab node {} on {}: the port still answers after SIGKILL; not started again", node.name, node.addr());
        }
        let (old_pid, at) = (node.pid, node.addr());
        self.spawn(node)?;
        self.save()?;
        node::wait_port_open(at, Duration::from_secs(10)).await?;
        Ok(format!("killed pid {old_pid} on {at} and started it again (pid {})", self.pid_of_port(port).unwrap_or(0)))
    }

    /// SIGKILL to the lab node on `port`, once verified (`adapter check`: a server gone).
    pub(crate) fn kill_node(&self, port: u16) -> Result<String> {
        let node = self.nodes().into_iter().find(|n| n.port == port);
        let node = node.ok_or_else(|| anyhow::anyhow!("no lab node on port {port}"))?;
        self.signal_node(&node, libc::SIGKILL)
    }

    /// Every node's program is one `lab up` would run (lab.json may have been edited).
    fn check_programs(&self) -> Result<()> {
        self.nodes().iter().try_for_each(verify::check_program)
    }

    /// `signal` to a node once its pid is verified to be this lab's process on its port.
    fn signal_node(&self, node: &Node, signal: libc::c_int) -> Result<String> {
        verify::node_process(node, &self.dir)
            .map_err(|e| anyhow::anyhow!("lab node {}: not signalled: {e}", node.name))?;
        node.signal(signal)
    }

    /// Reaps exited children so they do not linger as zombies.
    fn reap(&self) {
        if let Ok(mut children) = self.children.lock() {
            children.retain_mut(|c| !matches!(c.try_wait(), Ok(Some(_))));
        }
    }

    /// The nodes this value knows, plus any another failprobe process restarted meanwhile (a
    /// `restart` trigger or a heal in a run with `--lab`): lab.json is the record of truth.
    fn all_known_nodes(&self) -> Vec<Node> {
        let mut nodes = self.nodes();
        let on_disk = std::fs::read_to_string(self.dir.join(LAB_FILE))
            .ok()
            .and_then(|t| serde_json::from_str::<LabFile>(&t).ok())
            .map(|f| f.nodes)
            .unwrap_or_default();
        for n in on_disk {
            if !nodes.iter().any(|m| m.pid == n.pid) {
                nodes.push(n);
            }
        }
        nodes
    }

    /// Stops exactly the processes of this lab: a node of lab.json whose pid is verified to be
    /// this lab's server on its port, and any process running in the lab directory that
    /// lab.json lost or misnames. An entry naming someone else's server is refused and makes
    /// this an error, after everything that is the lab's has been stopped.
    pub fn down(&self) -> Result<usize> {
        // A network fault first: what a SIGKILLed run left would outlive the servers.
        self.heal_network();
        fault::remove_leftovers(&self.dir);
        let nodes = self.all_known_nodes();
        let running = verify::lab_processes(&self.dir);
        let mut targets: Vec<(u32, std::net::SocketAddr, NodeKind)> = Vec::new();
        let mut refused = Vec::new();
        for node in &nodes {
            match verify::node_process(node, &self.dir) {
                Ok(_) => targets.push((node.pid, node.addr(), node.kind)),
                // Gone, or a pid reused by something that is no server: only stale.
                Err(_) if !verify::is_a_server(node.pid) || running.iter().any(|f| f.pid == node.pid) => {}
                Err(why) => refused.push(format!("node {} (pid {}, {}): {why}", node.name, node.pid, node.addr())),
            }
        }
        for f in running {
            if !targets.iter().any(|t| t.0 == f.pid) {
                let named = match nodes.iter().find(|n| n.addr() == f.addr) {
                    Some(n) => format!("lab.json names pid {} for {}", n.pid, n.name),
                    None => "lab.json does not name it".to_string(),
                };
                crate::note!("lab down: {} runs in {} but {named}; stopping it too", f.who, self.dir.display());
                targets.push((f.pid, f.addr, f.kind));
            }
        }
        let signal = |&(pid, addr, kind): &(u32, std::net::SocketAddr, NodeKind), sig| {
            verify::signal_lab_process(pid, addr, kind, &self.dir, sig)
        };
        let stopped = targets.iter().filter(|t| signal(t, libc::SIGTERM).is_ok()).count();
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while targets.iter().any(|t| verify::is_running(t.0)) && std::time::Instant::now() < deadline {
            self.reap();
            std::thread::sleep(Duration::from_millis(50));
        }
        for t in &targets {
            let _ = signal(t, libc::SIGKILL);
        }
        for node in nodes.iter().filter(|n| n.cluster) {
            let _ = std::fs::remove_file(node.cluster_config_file(&self.dir));
        }
        // Our own children (not yet reaped, so their pids cannot have been reused) go too, even
        // one that never came to listen on its port.
        if let Ok(mut children) = self.children.lock() {
            for c in children.iter_mut() {
                if matches!(c.try_wait(), Ok(None)) {
                    let _ = c.kill();
                    let _ = c.wait();
                }
            }
            children.clear();
        }
        if !refused.is_empty() {
            bail!(
                "stopped {stopped} process(es); not signalled, as lab.json names a server that is not this lab's: {}",
                refused.join("; ")
            );
        }
        Ok(stopped)
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        self.heal_network();
        if self.owned {
            // Make sure no paused node survives us.
            for n in self.nodes() {
                let _ = self.signal_node(&n, libc::SIGCONT);
            }
            let _ = self.down();
        }
    }
}

/// What an earlier lab in the same directory left: a sentinel keeps its rewritten config on
/// restart (it knows the current primary), which for a *new* lab would name the old one's ports.
/// Only the files a lab writes are removed.
fn remove_stale_files(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let ours = name == LAB_FILE
            || name == endpoint::FLIP_FILE
            || ((name.starts_with("redis-") || name.starts_with("sentinel-") || name.starts_with("memcached-"))
                && (name.ends_with(".conf") || name.ends_with(".log")));
        if ours {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// `a:p,b:q`: addresses as a URL lists them.
fn joined(addrs: &[SocketAddr]) -> String {
    addrs.iter().map(SocketAddr::to_string).collect::<Vec<_>>().join(",")
}

/// `bin` in `first` (when given), else on PATH, as an absolute path. Not canonicalized: Redis
/// runs as a sentinel because it was started by the name `redis-sentinel`, a symlink.
fn find_program(bin: &str, first: Option<&Path>) -> Result<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    first
        .map(Path::to_path_buf)
        .into_iter()
        .chain(std::env::split_paths(&path))
        .map(|d| d.join(bin))
        .find(|p| p.is_file())
        .and_then(|p| std::path::absolute(p).ok())
        .ok_or_else(|| anyhow::anyhow!("{bin} not found"))
}
