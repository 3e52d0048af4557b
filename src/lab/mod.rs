//! A local lab on loopback, on ports the OS picks: a primary + replica (and three sentinels), a
//! 3 + 3 node cluster, or two memcached nodes, started from the servers on PATH: Redis, or
//! Valkey (`--server valkey`, or when only Valkey is installed). `lab.json` in its directory
//! describes it for `--lab DIR`, `lab status` and `lab down`.

mod cluster;
pub mod endpoint;
mod health;
mod lock;
mod node;
mod verify;

pub use health::Readiness;
use node::free_port;
pub use node::{Node, NodeKind, Server};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

pub const MASTER_NAME: &str = "failprobe";
pub(crate) const LAB_FILE: &str = "lab.json";
/// Sentinel settings from the lab notes: kill -9 → ~2.2 s outage, tests stay fast.
pub(crate) const DOWN_AFTER_MS: u64 = 1000;
pub(crate) const FAILOVER_TIMEOUT_MS: u64 = 3000;
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
    /// `Topology::Endpoint`: how long after a failover new connections reach the new primary.
    pub endpoint_lag: Duration,
    /// A directory searched before PATH for the server programs.
    pub programs: Option<PathBuf>,
}

impl LabOptions {
    /// The server the lab runs, and where its data node and sentinel programs are.
    fn resolve(&self, topology: Topology) -> Result<(Server, Vec<PathBuf>)> {
        let find = |bin: &str| find_program(bin, self.programs.as_deref());
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
    pub master_name: String,
    pub target: String,
    pub primary_url: String,
    pub nodes: Vec<Node>,
}

pub struct Lab {
    pub dir: PathBuf,
    pub topology: Topology,
    pub server: Server,
    /// The data node's and (Sentinel) the sentinel's program, found when the lab started.
    programs: Vec<PathBuf>,
    nodes: Mutex<Vec<Node>>,
    children: Mutex<Vec<std::process::Child>>,
    /// Stop the processes when this value is dropped (tests, `run` with its own lab).
    owned: bool,
    /// The lab directory's lock, for as long as this value uses the lab (`load`).
    _lock: Option<lock::LabLock>,
}

impl Lab {
    /// Starts a lab in `dir` and waits until it is ready.
    pub async fn up(topology: Topology, dir: &Path, owned: bool) -> Result<Lab> {
        Self::up_with(topology, dir, owned, &LabOptions::default()).await
    }

    /// `up`, with the server to run and the endpoint's lag.
    pub async fn up_with(topology: Topology, dir: &Path, owned: bool, options: &LabOptions) -> Result<Lab> {
        let endpoint_lag = options.endpoint_lag;
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
        let lab = Lab {
            dir: dir.clone(),
            topology,
            server,
            programs,
            nodes: Mutex::new(Vec::new()),
            children: Mutex::new(Vec::new()),
            owned,
            _lock: None,
        };
        if topology == Topology::Cluster {
            lab.start_cluster().await?;
            return Ok(lab);
        }
        if topology == Topology::Memcached {
            for i in 1..=2 {
                lab.spawn(Node::memcached(&format!("memcached-{i}"), free_port()?))?;
            }
            lab.save()?;
            lab.wait_ready(Duration::from_secs(30)).await?;
            return Ok(lab);
        }
        let primary = free_port()?;
        let replica = free_port()?;
        lab.spawn(Node::redis("redis-1", primary, None)?)?;
        lab.spawn(Node::redis("redis-2", replica, Some(primary))?)?;
        if matches!(topology, Topology::Sentinel | Topology::Endpoint) {
            for i in 1..=3 {
                lab.spawn(Node::sentinel(&format!("sentinel-{i}"), free_port()?, primary)?)?;
            }
        }
        lab.save()?;
        if matches!(topology, Topology::Sentinel | Topology::Endpoint) {
            // Before waiting: with Sentinel's default periods (INFO every 10 s, hello every
            // 2 s) a sentinel learns of the replica up to 10 s after it started.
            for port in lab.sentinel_ports() {
                node::wait_port_open(port, Duration::from_secs(10)).await?;
            }
            lab.tune_sentinels().await;
        }
        lab.wait_ready(Duration::from_secs(30)).await?;
        if topology == Topology::Endpoint {
            let port = free_port()?;
            lab.spawn(Node::endpoint("endpoint", port, endpoint_lag))?;
            lab.save()?;
            node::wait_port_open(port, Duration::from_secs(10)).await?;
        }
        Ok(lab)
    }

    /// Six cluster nodes, joined as 3 primaries + 3 replicas (`cluster::create`).
    async fn start_cluster(&self) -> Result<()> {
        let mut ports = Vec::new();
        for i in 1..=6 {
            let port = node::free_cluster_port()?;
            let mut node = Node::redis(&format!("redis-{i}"), port, None)?;
            node.cluster = true;
            self.spawn(node)?;
            ports.push(port);
        }
        self.save()?;
        for &p in &ports {
            node::wait_port_open(p, Duration::from_secs(10)).await?;
        }
        cluster::create(&ports, Duration::from_secs(30)).await?;
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
            // Each node in lab.json names its own program.
            programs: Vec::new(),
            nodes: Mutex::new(file.nodes),
            children: Mutex::new(Vec::new()),
            owned: false,
            _lock: None,
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

    /// The endpoint's port (`Topology::Endpoint`).
    pub fn endpoint_port(&self) -> Option<u16> {
        self.nodes().into_iter().find(|n| n.kind == NodeKind::Endpoint).map(|n| n.port)
    }

    /// The lab through its sentinels: where triggers act, whatever the probes' target.
    pub fn sentinel_url(&self) -> Option<String> {
        let sentinels = self.sentinel_ports();
        let hosts: Vec<String> = sentinels.iter().map(|p| format!("127.0.0.1:{p}")).collect();
        (!hosts.is_empty()).then(|| format!("redis+sentinel://{}/{MASTER_NAME}", hosts.join(",")))
    }

    fn sentinel_ports(&self) -> Vec<u16> {
        self.nodes().into_iter().filter(|n| n.kind == NodeKind::Sentinel).map(|n| n.port).collect()
    }

    /// The URL failprobe probes: the endpoint, else through the sentinels when there are some.
    pub fn target_url(&self) -> String {
        let sentinels = self.sentinel_ports();
        if let (Topology::Endpoint, Some(port)) = (self.topology, self.endpoint_port()) {
            format!("redis://127.0.0.1:{port}")
        } else if self.topology == Topology::Cluster {
            let seeds: Vec<String> = self.redis_ports().iter().map(|p| format!("127.0.0.1:{p}")).collect();
            format!("redis+cluster://{}", seeds.join(","))
        } else if self.topology == Topology::Memcached {
            let nodes: Vec<String> = self.nodes().iter().map(|n| format!("127.0.0.1:{}", n.port)).collect();
            format!("memcache://{}", nodes.join(","))
        } else if sentinels.is_empty() {
            self.primary_url()
        } else {
            let hosts: Vec<String> = sentinels.iter().map(|p| format!("127.0.0.1:{p}")).collect();
            format!("redis+sentinel://{}/{MASTER_NAME}", hosts.join(","))
        }
    }

    /// Both nodes of the replica lab, `redis://primary,replica`: a target that follows a
    /// `failover` between them (the primary is whichever answers ROLE as one). Other labs: their
    /// `target_url`.
    pub fn pair_url(&self) -> String {
        match self.topology {
            Topology::Replica => {
                let nodes: Vec<String> = self.redis_ports().iter().map(|p| format!("127.0.0.1:{p}")).collect();
                format!("redis://{}", nodes.join(","))
            }
            _ => self.target_url(),
        }
    }

    /// The first node: the primary when the lab started.
    pub fn primary_url(&self) -> String {
        let port = self.redis_nodes().first().map(|n| n.port).unwrap_or(0);
        format!("redis://127.0.0.1:{port}")
    }

    pub fn redis_ports(&self) -> Vec<u16> {
        self.redis_nodes().iter().map(|n| n.port).collect()
    }

    pub fn pid_of_port(&self, port: u16) -> Option<u32> {
        self.nodes().into_iter().find(|n| n.port == port).map(|n| n.pid)
    }

    pub fn save(&self) -> Result<()> {
        let file = LabFile {
            topology: self.topology,
            server: self.server,
            master_name: MASTER_NAME.to_string(),
            target: self.target_url(),
            primary_url: self.primary_url(),
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
        if std::net::TcpListener::bind(node.addr()).is_err() {
            bail!("lab node {}: {} is in use by another process; not started", node.name, node.addr());
        }
        let child = node.start(&self.dir)?;
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
            if !node::wait_port_closed(node.port, Duration::from_secs(5)).await {
                // Something answers on the port, and it is not the process lab.json names.
                let why = crate::os::identify(node.pid as u64, &[node.addr()]).err().unwrap_or_default();
                anyhow::bail!(
                    "lab node {} on {}: its port still answers but not as the process lab.json names ({why}); not restarted",
                    node.name,
                    node.addr()
                );
            }
            if node.kind == NodeKind::Redis && !node.cluster {
                node.replica_of = primary.filter(|p| *p != node.port);
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
        if !node::wait_port_closed(port, Duration::from_secs(5)).await {
            bail!("lab node {} on {}: the port still answers after SIGKILL; not started again", node.name, node.addr());
        }
        let old_pid = node.pid;
        self.spawn(node)?;
        self.save()?;
        node::wait_port_open(port, Duration::from_secs(10)).await?;
        Ok(format!(
            "killed pid {old_pid} on 127.0.0.1:{port} and started it again (pid {})",
            self.pid_of_port(port).unwrap_or(0)
        ))
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
