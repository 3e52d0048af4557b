//! Test support: real labs on free loopback ports, the real binary, the files it writes.
#![allow(dead_code)]

pub mod dns;
pub mod elasticache;
pub mod fis;

use failprobe::lab::{Lab, LabOptions, Server, Topology};
use serde_json::Value;
use std::cell::Cell;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;

/// Servers under test take turns: the harness runs two tests at once (two cores), which the
/// lab tests bear, but a six-node cluster or a Sentinel group behind the AWS emulator needs the
/// machine to itself (a starved server looks like an outage). Those hold `alone()`; every other
/// test that starts servers holds a shared turn (`TestLab`, `failprobe()` or `beside_others()`).
static SERVERS: RwLock<()> = RwLock::new(());

thread_local! {
    /// This thread holds `alone()`: its own labs and runs take no shared turn (it has them all).
    static ALONE: Cell<bool> = const { Cell::new(false) };
    /// Shared turns this thread holds: a second one is not taken (a read lock taken twice can
    /// deadlock behind a waiting writer).
    static SHARED: Cell<u32> = const { Cell::new(0) };
}

pub struct Alone(#[allow(dead_code)] RwLockWriteGuard<'static, ()>);

impl Drop for Alone {
    fn drop(&mut self) {
        ALONE.with(|a| a.set(false));
    }
}

/// The machine to this test alone, until the guard drops.
pub fn alone() -> Alone {
    let guard = SERVERS.write().unwrap_or_else(|e| e.into_inner());
    ALONE.with(|a| a.set(true));
    Alone(guard)
}

/// A shared turn: runs beside other shared turns, never beside `alone()`.
pub struct Turn(#[allow(dead_code)] Option<RwLockReadGuard<'static, ()>>);

impl Drop for Turn {
    fn drop(&mut self) {
        if self.0.is_some() {
            SHARED.with(|n| n.set(n.get() - 1));
        }
    }
}

pub fn beside_others() -> Turn {
    if ALONE.with(|a| a.get()) || SHARED.with(|n| n.get()) > 0 {
        return Turn(None);
    }
    let guard = SERVERS.read().unwrap_or_else(|e| e.into_inner());
    SHARED.with(|n| n.set(n.get() + 1));
    Turn(Some(guard))
}

pub struct TestLab {
    pub lab: Lab,
    pub dir: tempfile::TempDir,
    pub rt: tokio::runtime::Runtime,
    /// Last, so it is released after the servers stopped.
    _turn: Turn,
}

impl TestLab {
    /// A lab of the servers found first (Redis here).
    pub fn start(topology: Topology) -> Self {
        Self::start_with(topology, LabOptions::default())
    }

    /// A lab of `server`; Valkey from the checkout's `.servers/valkey/bin`
    /// (`scripts/install-servers.sh --valkey`).
    pub fn start_on(topology: Topology, server: Server) -> Self {
        let programs = (server == Server::Valkey).then(valkey_programs);
        Self::start_with(topology, LabOptions { server: Some(server), programs, ..LabOptions::default() })
    }

    /// A lab of one engine version as `--server` names it (`redis@6.2`, `valkey@9`): from the
    /// checkout's `.servers/` (`scripts/install-servers.sh --redis 6.2.14`), else PATH. A
    /// missing one fails the test with what to install.
    pub fn start_engine(topology: Topology, server: &str) -> Self {
        let choice: failprobe::lab::ServerChoice = server.parse().expect("a --server value");
        let mut options = LabOptions::default();
        options.choose(Some(&choice));
        Self::start_with(topology, options)
    }

    fn start_with(topology: Topology, options: LabOptions) -> Self {
        let turn = beside_others();
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let lab = rt.block_on(Lab::up_with(topology, &dir.path().join("lab"), true, &options)).expect("lab up");
        Self { lab, dir, rt, _turn: turn }
    }

    pub fn lab_dir(&self) -> PathBuf {
        self.lab.dir.clone()
    }

    pub fn out(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn primary_port(&self) -> u16 {
        self.rt.block_on(self.lab.current_primary()).expect("lab has a primary")
    }

    /// `ADDRESS:PORT` of the lab node on `port` (each node has a loopback address of its own).
    pub fn addr(&self, port: u16) -> String {
        self.lab.addr_of(port).to_string()
    }

    /// `ADDRESS:PORT` of the current primary.
    pub fn primary_addr(&self) -> String {
        self.addr(self.primary_port())
    }

    /// `failprobe run --lab <this lab> --quiet --warmup 1s --settle 1s --out <tmp>/<name> <extra…>`.
    pub fn run(&self, name: &str, extra: &[&str]) -> (Output, PathBuf) {
        self.run_with_env(name, extra, &[])
    }

    /// `run` with extra environment variables for the failprobe process.
    pub fn run_with_env(&self, name: &str, extra: &[&str], env: &[(&str, String)]) -> (Output, PathBuf) {
        let out = self.out(name);
        let (lab, out_arg) = (self.lab.dir.to_string_lossy().into_owned(), out.to_string_lossy().into_owned());
        let mut args = vec!["run", "--lab", &lab, "--quiet", "--warmup", "1s", "--settle", "1s", "--out", &out_arg];
        args.extend_from_slice(extra);
        (failprobe_env(&args, env), out)
    }

    pub fn conn(&self, port: u16) -> redis::Connection {
        redis::Client::open(format!("redis://{}", self.addr(port))).unwrap().get_connection().unwrap()
    }
}

/// Where `scripts/install-servers.sh --valkey` put valkey-server. The Valkey tests are part of
/// the suite (CI installs it): a missing binary fails them, with what to run.
pub fn valkey_programs() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(".servers/valkey/bin");
    assert!(
        dir.join("valkey-server").is_file(),
        "Valkey 9 is not installed in {}: run scripts/install-servers.sh --valkey",
        dir.display()
    );
    dir
}

/// An ElastiCache for Memcached configuration endpoint, emulated: it answers
/// `config get cluster` with the given nodes, as the AWS documentation shows, and ERROR to
/// anything else. A test support server on loopback, not part of failprobe.
pub struct ConfigEndpoint {
    pub port: u16,
}

impl ConfigEndpoint {
    pub fn start(nodes: Vec<std::net::SocketAddr>) -> Self {
        use std::io::{BufRead, BufReader, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        std::thread::spawn(move || {
            for stream in listener.incoming().take(64).flatten() {
                let nodes = nodes.clone();
                std::thread::spawn(move || {
                    let mut reader = BufReader::new(stream.try_clone().unwrap());
                    let mut out = stream;
                    let mut line = String::new();
                    while reader.read_line(&mut line).unwrap_or(0) > 0 {
                        let reply = if line.trim() == "config get cluster" {
                            let list: Vec<String> =
                                nodes.iter().map(|a| format!("{}|{}|{}", a.ip(), a.ip(), a.port())).collect();
                            let body = format!("1\n{}\n", list.join(" "));
                            format!("CONFIG cluster 0 {}\r\n{body}\r\nEND\r\n", body.len())
                        } else {
                            "ERROR\r\n".to_string()
                        };
                        if out.write_all(reply.as_bytes()).is_err() {
                            break;
                        }
                        line.clear();
                    }
                });
            }
        });
        Self { port }
    }
}

/// The binary, measuring failprobe's own client unless a test asks for profiles (`--clients`
/// or `FAILPROBE_CLIENTS`): a `pinned` client that never recovers would hold every trial to
/// --max-trial.
pub fn failprobe_command() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_failprobe"));
    cmd.env("FAILPROBE_CLIENTS", "failprobe");
    cmd
}

pub fn failprobe(args: &[&str]) -> Output {
    failprobe_env(args, &[])
}

pub fn failprobe_env(args: &[&str], env: &[(&str, String)]) -> Output {
    let _turn = beside_others();
    let mut cmd = failprobe_command();
    cmd.args(args).stdin(std::process::Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("running failprobe")
}

pub fn code(o: &Output) -> i32 {
    o.status.code().unwrap_or(-1)
}

pub fn explain(o: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

pub fn summary(dir: &Path) -> Value {
    let text = std::fs::read_to_string(dir.join("summary.json")).expect("summary.json written");
    serde_json::from_str(&text).unwrap()
}

pub fn f(v: &Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"))
}

pub fn u(v: &Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not an integer: {v}"))
}

/// Sequence numbers of failprobe's own acknowledged writes of `trial`, from samples.csv.
pub fn acked_writes(dir: &Path, trial: u32) -> Vec<u64> {
    acked_writes_of(dir, trial, None)
}

/// The same for one client profile (`client`: its label; None for failprobe's own).
pub fn acked_writes_of(dir: &Path, trial: u32, client: Option<&str>) -> Vec<u64> {
    let mut r = csv::Reader::from_path(dir.join("samples.csv")).unwrap();
    let headers = r.headers().unwrap().clone();
    let col = |name: &str| headers.iter().position(|h| h == name).unwrap();
    let (t, s, seq, outcome) = (col("trial"), col("stream"), col("seq"), col("outcome"));
    // Runs made before client profiles have no `client` column: all failprobe's own.
    let c = headers.iter().position(|h| h == "client");
    r.records()
        .map(|rec| rec.unwrap())
        .filter(|rec| rec[t].parse::<u32>().unwrap() == trial && &rec[s] == "write" && &rec[outcome] == "ok")
        .filter(|rec| c.map_or("", |c| &rec[c]) == client.unwrap_or(""))
        .map(|rec| rec[seq].parse().unwrap())
        .collect()
}

fn openssl(dir: &Path, args: &[&str]) {
    let ok = std::process::Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap()
        .success();
    assert!(ok, "openssl {args:?}");
}

/// A private CA (`ca.crt`) and a server certificate for 127.0.0.1 and localhost
/// (`server.crt`, `server.key`), made with openssl in `dir`.
pub fn certificates(dir: &Path) {
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
    openssl(
        dir,
        &[
            &["req", "-x509"][..],
            &ec,
            &["-keyout", "ca.key", "-out", "ca.crt", "-days", "1", "-subj", "/CN=failprobe-test-ca"],
        ]
        .concat(),
    );
    openssl(
        dir,
        &[&["req"][..], &ec, &["-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=localhost"]].concat(),
    );
    std::fs::write(dir.join("ext.cnf"), "subjectAltName=IP:127.0.0.1,DNS:localhost\n").unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.crt",
            "-days",
            "1",
            "-extfile",
            "ext.cnf",
        ],
    );
}

/// A redis-server the test started itself (killed when dropped).
pub struct Node(pub Child);

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A plain redis-server bound to `ip:port` only (several may share a port on loopback addresses).
pub fn redis_on(dir: &Path, ip: Ipv4Addr, port: u16, replica_of: Option<Ipv4Addr>) -> Node {
    let mut cmd = Command::new("redis-server");
    cmd.args(["--bind", &ip.to_string(), "--port", &port.to_string(), "--save", "", "--appendonly", "no"])
        // A replica in sync at once, not after the default 5 s wait for more replicas.
        .args(["--repl-diskless-sync-delay", "0"])
        .args(["--dbfilename", &format!("dump-{ip}.rdb"), "--dir"])
        .arg(dir);
    if let Some(primary) = replica_of {
        cmd.args(["--replicaof", &primary.to_string(), &port.to_string()]);
    }
    let node = Node(cmd.stdout(Stdio::null()).spawn().unwrap());
    for _ in 0..100 {
        if std::net::TcpStream::connect((ip, port)).is_ok() {
            return node;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("redis-server on {ip}:{port} did not start");
}

/// A port free on both addresses, below the kernel's ephemeral range (as the lab's ports are):
/// no client's outgoing connection can take it before the servers bind it.
pub fn port_free_on_both(first: Ipv4Addr, second: Ipv4Addr) -> u16 {
    use rand::Rng;
    loop {
        let port = rand::rng().random_range(20_000..=32_767);
        if std::net::TcpListener::bind((first, port)).is_ok() && std::net::TcpListener::bind((second, port)).is_ok() {
            return port;
        }
    }
}
