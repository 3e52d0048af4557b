//! One server process of the lab: its config file, how to start it, whether it still runs.

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::engine::Server;

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum NodeKind {
    Redis,
    Sentinel,
    Memcached,
    /// The lab's primary endpoint (a failprobe process, `lab::endpoint`).
    Endpoint,
}

#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct Node {
    pub name: String,
    pub kind: NodeKind,
    /// Its own loopback address (`net::node_ip`): a network fault tells nodes apart by address.
    /// A lab.json from before per-node addresses has none: 127.0.0.1.
    #[serde(default = "loopback")]
    pub ip: Ipv4Addr,
    pub port: u16,
    pub pid: u32,
    pub url: String,
    /// For a redis node: the primary it replicates from when (re)started.
    #[serde(default, with = "addr_or_port")]
    pub replica_of: Option<SocketAddr>,
    /// For a sentinel: the primary it monitors at first.
    #[serde(default, with = "addr_or_port")]
    pub monitors: Option<SocketAddr>,
    /// A Redis Cluster node (its role lives in its nodes-<port>.conf, not in `replica_of`).
    #[serde(default)]
    pub cluster: bool,
    /// For the endpoint: how long after a new primary new connections go to it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint_lag_ms: Option<u64>,
    /// For a redis node or a sentinel: which server runs it (a lab.json from before Valkey
    /// labs has none: Redis).
    #[serde(default)]
    pub server: Server,
    /// The program's absolute path, found when the lab started: a restart (heal, `restart`
    /// trigger, another process with `--lab`) runs the same binary whatever its PATH.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub program: Option<std::path::PathBuf>,
}

impl Node {
    pub fn redis(name: &str, ip: Ipv4Addr, port: u16, replica_of: Option<SocketAddr>) -> Result<Self> {
        Ok(Self {
            name: name.into(),
            kind: NodeKind::Redis,
            ip,
            port,
            pid: 0,
            url: format!("redis://{ip}:{port}"),
            replica_of,
            monitors: None,
            cluster: false,
            endpoint_lag_ms: None,
            server: Server::Redis,
            program: None,
        })
    }

    pub fn memcached(name: &str, ip: Ipv4Addr, port: u16) -> Self {
        Self {
            name: name.into(),
            kind: NodeKind::Memcached,
            ip,
            port,
            pid: 0,
            url: format!("memcache://{ip}:{port}"),
            replica_of: None,
            monitors: None,
            cluster: false,
            endpoint_lag_ms: None,
            server: Server::Redis,
            program: None,
        }
    }

    pub fn sentinel(name: &str, ip: Ipv4Addr, port: u16, monitors: SocketAddr) -> Result<Self> {
        Ok(Self {
            name: name.into(),
            kind: NodeKind::Sentinel,
            ip,
            port,
            pid: 0,
            url: format!("redis://{ip}:{port}"),
            replica_of: None,
            monitors: Some(monitors),
            cluster: false,
            endpoint_lag_ms: None,
            server: Server::Redis,
            program: None,
        })
    }

    pub fn endpoint(name: &str, ip: Ipv4Addr, port: u16, lag: Duration) -> Self {
        Self {
            name: name.into(),
            kind: NodeKind::Endpoint,
            ip,
            port,
            pid: 0,
            url: format!("redis://{ip}:{port}"),
            replica_of: None,
            monitors: None,
            cluster: false,
            endpoint_lag_ms: Some(lag.as_millis() as u64),
            server: Server::Redis,
            program: None,
        }
    }

    fn config(&self, dir: &Path, settings: &super::LabSettings) -> String {
        let d = quote(&dir.display().to_string());
        let log = quote(&self.log_file(dir).display().to_string());
        let (ip, port) = (self.ip, self.port);
        // Directives Redis 7.0 introduced: 6.2 and 5.0 exit at start on them ("Bad directive").
        let modern = self.program.as_deref().and_then(super::engine::version_of).is_some_and(|v| v.is_7_or_later());
        // The node's outgoing connections (replication, a sentinel's, the cluster bus) leave
        // from its own address too, so a partition can cut exactly them. Older servers leave
        // from their first `bind` address, which is the same one.
        let source = match modern {
            true => format!("bind-source-addr {ip}\n"),
            false => String::new(),
        };
        // DEBUG is open to local clients by default before 7.0.
        let debug = if modern { "enable-debug-command local\n" } else { "" };
        match self.kind {
            NodeKind::Redis => {
                let mut c = format!(
                    "port {port}\nbind {ip}\n{source}protected-mode no\ndaemonize no\ndir {d}\n\
                     dbfilename dump-{port}.rdb\nsave \"\"\nappendonly no\nlogfile {log}\n\
                     repl-diskless-sync yes\nrepl-diskless-sync-delay 0\n{debug}",
                );
                c.push_str(&settings.data_node_lines());
                if let Some(p) = self.replica_of.filter(|_| !self.cluster) {
                    c.push_str(&format!("replicaof {} {}\n", p.ip(), p.port()));
                }
                if self.cluster {
                    // A replica is listed in CLUSTER SLOTS once its replication offset is not 0,
                    // which on an idle primary takes its next ping to the replicas (every 10 s
                    // by default): every second, the lab is ready in about 2 s, not 11.
                    c.push_str(&format!(
                        "cluster-enabled yes\ncluster-config-file {}\ncluster-node-timeout {}\nrepl-ping-replica-period 1\n",
                        quote(&self.cluster_config_file(dir).display().to_string()),
                        settings.node_timeout_ms,
                    ));
                }
                c
            }
            NodeKind::Memcached | NodeKind::Endpoint => String::new(),
            NodeKind::Sentinel => {
                let monitors = self.monitors.unwrap_or_else(|| SocketAddr::from((loopback(), 0)));
                format!(
                    "port {port}\nbind {ip}\n{source}protected-mode no\ndaemonize no\ndir {d}\nlogfile {log}\n\
                     sentinel monitor {m} {} {} 2\n\
                     sentinel down-after-milliseconds {m} {down}\n\
                     sentinel failover-timeout {m} {fo}\n\
                     sentinel parallel-syncs {m} 1\n",
                    monitors.ip(),
                    monitors.port(),
                    m = super::MASTER_NAME,
                    down = settings.down_after_ms,
                    fo = settings.failover_timeout_ms,
                )
            }
        }
    }

    /// Writes a config file (redis rewrites it on REPLICAOF/failover, so it must be a file) and
    /// starts the process in its own process group, so a Ctrl-C meant for failprobe does not
    /// kill the servers it is measuring. Every node runs in the lab directory: that is how a
    /// process is recognised as this lab's whatever lab.json says (`verify`).
    pub fn start(&self, dir: &Path, settings: &super::LabSettings) -> Result<Child> {
        use std::os::unix::process::CommandExt;
        if self.kind == NodeKind::Memcached {
            // As root memcached needs a user to drop to (lab notes).
            let mut cmd = Command::new("memcached");
            scrubbed_env(&mut cmd);
            cmd.args(["-p", &self.port.to_string(), "-l", &self.ip.to_string(), "-U", "0", "-m", "64"]);
            if unsafe { libc::geteuid() } == 0 {
                cmd.args(["-u", "nobody"]);
            }
            return cmd
                .current_dir(dir)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(self.stderr_log(dir)?)
                .process_group(0)
                .spawn()
                .with_context(|| format!("starting memcached for {}", self.name));
        }
        if self.kind == NodeKind::Endpoint {
            // This same binary, in its own process: a lab started by `lab up` outlives the command.
            let exe = std::env::current_exe().context("finding the failprobe executable")?;
            let mut cmd = Command::new(exe);
            scrubbed_env(&mut cmd);
            return cmd
                .args(["lab", "endpoint", "--ip", &self.ip.to_string(), "--port", &self.port.to_string(), "--lag-ms"])
                .arg(self.endpoint_lag_ms.unwrap_or(0).to_string())
                .arg("--dir")
                .arg(dir)
                .current_dir(dir)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .process_group(0)
                .spawn()
                .context("starting the lab's endpoint");
        }
        let conf = dir.join(format!("{}.conf", self.name));
        // A sentinel's rewritten config knows the current primary; keep it on restart.
        if !(self.kind == NodeKind::Sentinel && conf.exists()) {
            std::fs::write(&conf, self.config(dir, settings)).with_context(|| format!("writing {}", conf.display()))?;
        }
        let (bin, extra) = match self.kind {
            NodeKind::Redis => (self.server.server_program(), &[][..]),
            // memcached and the endpoint returned above
            NodeKind::Sentinel | NodeKind::Memcached | NodeKind::Endpoint => self.server.sentinel_program(),
        };
        let mut cmd = Command::new(self.program.as_deref().unwrap_or(Path::new(bin)));
        scrubbed_env(&mut cmd)
            .arg(&conf)
            .args(extra)
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(self.stderr_log(dir)?)
            .process_group(0)
            .spawn()
            .with_context(|| format!("starting {bin} for {}", self.name))
    }

    /// The node's log file (`<name>.log`, appended to): a server that refuses its config says
    /// why on stderr before it opens its own log, and `lab up` shows those words.
    fn stderr_log(&self, dir: &Path) -> Result<std::fs::File> {
        let path = self.log_file(dir);
        let file = std::fs::OpenOptions::new().create(true).append(true).open(&path);
        file.with_context(|| format!("opening {}", path.display()))
    }

    pub(crate) fn log_file(&self, dir: &Path) -> std::path::PathBuf {
        dir.join(format!("{}.log", self.name))
    }

    /// Every cluster node fsyncs its nodes.conf on each configuration change (a failover bumps
    /// the epoch on all of them). On these machines' disks that stalls every primary for ~0.25 s
    /// at once, which a probe sees as an outage on shards nobody touched; the lab keeps the file
    /// on tmpfs when there is one, so the lab measures the failover, not the disk.
    pub(crate) fn cluster_config_file(&self, dir: &Path) -> std::path::PathBuf {
        let shm = Path::new("/dev/shm");
        if shm.is_dir() {
            // Named after the lab directory, so any process that restarts the node finds it.
            let hash = dir_hash(dir);
            shm.join(format!("failprobe-{hash:016x}-nodes-{}.conf", self.port))
        } else {
            dir.join(format!("nodes-{}.conf", self.port))
        }
    }

    /// Sends `signal` to this node's process once it is verified to be the process on its port
    /// (a server, or for the endpoint a failprobe process).
    pub(crate) fn signal(&self, signal: libc::c_int) -> Result<String> {
        let at = [self.addr()];
        match self.kind {
            NodeKind::Endpoint => crate::os::signal_verified_as(self.pid as u64, &at, signal, &["failprobe"]),
            _ => crate::os::signal_verified(self.pid as u64, &at, signal),
        }
    }

    /// Where the node listens: its own loopback address (its configuration binds only that).
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from((self.ip, self.port))
    }

    /// Alive and still the process we started (a recycled pid is not ours).
    pub fn is_alive(&self) -> bool {
        if self.pid == 0 {
            return false;
        }
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{}/stat", self.pid)) else { return false };
        // A zombie ("Z") is dead for our purposes.
        let state = stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().next());
        if state == Some("Z") {
            return false;
        }
        let cmdline = std::fs::read(format!("/proc/{}/cmdline", self.pid)).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline);
        // redis rewrites its process title to `redis-server <address>:<port>` (valkey to
        // `…/valkey-server <address>:<port>`); memcached keeps its arguments (`-p <port>`).
        let port = self.port.to_string();
        let ours = cmdline.split(['\0', ' ', ':']).any(|t| t == port);
        let server = match self.kind {
            NodeKind::Endpoint => cmdline.contains("failprobe") && cmdline.contains("endpoint"),
            _ => ["redis", "valkey", "memcached"].iter().any(|name| cmdline.contains(name)),
        };
        server && ours
    }
}

/// A value for a redis config line: double-quoted with `\\`, `"` and newlines escaped, so a
/// directory with spaces, quotes or a newline in its name is one value, not several directives.
fn quote(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Servers get only what they need from our environment: a password in FAILPROBE_PASSWORD,
/// REDISCLI_AUTH or an AWS key must not sit in /proc/PID/environ of a long-lived lab server
/// (nor make redis-cli authenticate to a lab that has no password).
pub(crate) fn scrubbed_env(cmd: &mut Command) -> &mut Command {
    cmd.env_clear();
    for var in ["PATH", "LANG", "TZ"] {
        if let Some(v) = std::env::var_os(var) {
            cmd.env(var, v);
        }
    }
    cmd
}

/// `redis-1`, `sentinel-3`, `memcached-2`, `endpoint`: the names `lab up` gives its nodes.
pub(crate) fn is_lab_name(name: &str) -> bool {
    let (kind, number) = name.split_once('-').unwrap_or((name, ""));
    match kind {
        "endpoint" => number.is_empty(),
        "redis" | "sentinel" | "memcached" => {
            (1..=2).contains(&number.len()) && number.bytes().all(|b| b.is_ascii_digit())
        }
        _ => false,
    }
}

/// Lab ports come from below the kernel's ephemeral range (32768 and up by default), where no
/// outgoing connection takes its source port: a port found free a moment ago is then still
/// free when the server binds it, even with other labs and clients busy beside it.
const LAB_PORTS: std::ops::RangeInclusive<u16> = 20_000..=32_767;

/// A free port for a lab node (random in `LAB_PORTS`, so labs started at once rarely pick the
/// same one; the bind check makes sure).
pub(crate) fn free_port(ip: Ipv4Addr) -> Result<u16> {
    free_port_in(ip, LAB_PORTS, |_| true)
}

fn free_port_in(ip: Ipv4Addr, range: std::ops::RangeInclusive<u16>, also: impl Fn(u16) -> bool) -> Result<u16> {
    use rand::Rng;
    // Ports handed out by this process: a lab picks all its ports before its servers bind them.
    static GIVEN: std::sync::Mutex<std::collections::BTreeSet<u16>> =
        std::sync::Mutex::new(std::collections::BTreeSet::new());
    let mut rng = rand::rng();
    for _ in 0..500 {
        let port = rng.random_range(range.clone());
        let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
        // A wildcard listener elsewhere on the port makes this bind fail too.
        if !given.contains(&port) && std::net::TcpListener::bind((ip, port)).is_ok() && also(port) {
            given.insert(port);
            return Ok(port);
        }
    }
    anyhow::bail!("no free port in {range:?} for a lab node")
}

pub(crate) async fn wait_port_open(addr: SocketAddr, limit: Duration) -> Result<()> {
    let until = tokio::time::Instant::now() + limit;
    while tokio::time::Instant::now() < until {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    anyhow::bail!("nothing listens on {addr} after {limit:?}")
}

/// A port for a cluster node: its cluster bus listens on port + 10 000, which must be free (and
/// below the ephemeral range) too.
pub(crate) fn free_cluster_port(ip: Ipv4Addr) -> Result<u16> {
    // The bus port (p + 10000) below the ephemeral range too.
    let bus_free = |port: u16| std::net::TcpListener::bind((ip, port + 10_000)).is_ok();
    free_port_in(ip, *LAB_PORTS.start()..=*LAB_PORTS.end() - 10_000, bus_free)
}

/// A SIGKILLed redis can linger as a zombie for a while: wait for its port, not its pid.
/// Waits until nothing accepts connections on the port; false when something still does.
pub(crate) async fn wait_port_closed(addr: SocketAddr, limit: Duration) -> bool {
    let until = tokio::time::Instant::now() + limit;
    while tokio::time::Instant::now() < until {
        if tokio::net::TcpStream::connect(addr).await.is_err() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

fn loopback() -> Ipv4Addr {
    Ipv4Addr::LOCALHOST
}

/// A random loopback /24 for one lab (`127.X.Y.0`, X from 100: clear of 127.0.0.x, where
/// resolvers and hostnames live), its nodes at fixed host numbers (`node_ip`). Every address of
/// 127.0.0.0/8 is this machine's own without any setup; none is reachable from elsewhere.
pub(crate) fn lab_net() -> Ipv4Addr {
    use rand::Rng;
    let mut rng = rand::rng();
    Ipv4Addr::new(127, rng.random_range(100..=254), rng.random_range(0..=255), 0)
}

/// A node's address in its lab's /24, by its name: `redis-N` .N, `sentinel-N` .(10+N),
/// `memcached-N` .(20+N), the endpoint .30.
pub(crate) fn node_ip(net: Ipv4Addr, name: &str) -> Ipv4Addr {
    let (kind, number) = name.split_once('-').unwrap_or((name, ""));
    let n: u8 = number.parse().unwrap_or(0);
    let host = match kind {
        "redis" => n,
        "sentinel" => 10 + n,
        "memcached" => 20 + n,
        _ => 30,
    };
    let [a, b, c, _] = net.octets();
    Ipv4Addr::new(a, b, c, host)
}

/// `replica_of` / `monitors`: an address; a lab.json from before per-node addresses has a port
/// on 127.0.0.1.
mod addr_or_port {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};
    use std::net::SocketAddr;

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Either {
        Addr(SocketAddr),
        Port(u16),
    }

    pub(super) fn serialize<S: Serializer>(value: &Option<SocketAddr>, s: S) -> Result<S::Ok, S::Error> {
        value.serialize(s)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<SocketAddr>, D::Error> {
        Ok(Option::<Either>::deserialize(d)?.map(|e| match e {
            Either::Addr(a) => a,
            Either::Port(p) => SocketAddr::from(([127, 0, 0, 1], p)),
        }))
    }
}

/// A stable name for a lab directory (FNV-1a of its path): what the lab makes outside its
/// directory (cluster configs on tmpfs, its nftables table) is named after it.
pub(crate) fn dir_hash(dir: &Path) -> u64 {
    let mut hash = 0xcbf29ce484222325u64;
    for b in dir.as_os_str().as_encoded_bytes() {
        hash = (hash ^ *b as u64).wrapping_mul(0x100000001b3);
    }
    hash
}
