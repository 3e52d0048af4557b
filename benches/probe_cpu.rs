//! CPU per probe, side by side with `redis-benchmark -c 1` on the same redis-server, in one run:
//! - a real `failprobe run --trigger none --interval 1ms --clients failprobe` (two streams) and
//!   `redis-benchmark -c 1 -t get`, one after the other, alternated `ROUNDS` times on a server
//!   of their own (started on a free port); each one's CPU from wait4, per probe (rows of
//!   samples.csv) and per request; the median of the rounds' ratios. Goal: at most 1.5.
//!
//! Per target count (1, 10, 50 targets in one fleet): `benches/fleet_cost.rs`.
//!
//! `FAILPROBE_BENCH_BIN` names another failprobe binary to measure (a build to compare with).
//! Figures, not criterion statistics. `cargo bench --bench probe_cpu`; skipped without
//! redis-server or redis-benchmark on PATH.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const ROUNDS: usize = 5;
const REQUESTS: u64 = 20_000;

fn main() {
    // `cargo test --all-targets` runs bench binaries without `--bench`: only build-check then.
    if !std::env::args().any(|a| a == "--bench") {
        println!("probe_cpu: run with `cargo bench --bench probe_cpu`");
        return;
    }
    for tool in ["redis-server", "redis-benchmark"] {
        if Command::new(tool).arg("--version").output().is_err() {
            println!("probe_cpu: {tool} not on PATH, skipped");
            return;
        }
    }
    let dir = tempfile::tempdir().expect("tempdir");
    side_by_side(dir.path());
}

/// failprobe's CPU per probe against redis-benchmark's per request, alternated on one server.
/// wait4's user + system total is the scheduler's exact run time; its split between the two is
/// sampled at clock ticks, so only the totals are compared. Each round's ratio pairs two runs
/// made under the same load; the median of the rounds is the figure.
fn side_by_side(dir: &Path) {
    let server = Server::start(dir, "side");
    let mut ratios = Vec::new();
    for round in 0..ROUNDS {
        let out = dir.join(format!("side-{round}"));
        let run = measure(&mut failprobe_run(&server.url(), "1ms", "failprobe", "5s", &out));
        let probes = samples(&out);
        let bench = measure(
            Command::new("redis-benchmark")
                .args(["-p", &server.port.to_string(), "-c", "1", "-t", "get", "-q"])
                .args(["-n", &REQUESTS.to_string()]),
        );
        let (probe, request) = (run.per(probes), bench.per(REQUESTS));
        ratios.push((probe.0 + probe.1) / (request.0 + request.1));
        println!(
            "round {round}: failprobe {probes} probes, {:.1} µs CPU per probe ({:.1} user + {:.1} sys); \
             redis-benchmark {REQUESTS} GETs, {:.1} µs per request ({:.1} + {:.1}); ratio {:.2}",
            probe.0 + probe.1,
            probe.0,
            probe.1,
            request.0 + request.1,
            request.0,
            request.1,
            ratios[round]
        );
    }
    ratios.sort_by(f64::total_cmp);
    let median = ratios[ratios.len() / 2];
    println!("CPU per probe / CPU per redis-benchmark request, median of {ROUNDS} rounds: {median:.2} (goal ≤ 1.5)");
}

fn failprobe_run(url: &str, interval: &str, clients: &str, length: &str, out: &Path) -> Command {
    // Another build to compare with (`FAILPROBE_BENCH_BIN=path/to/failprobe`), else this one.
    let bin = std::env::var_os("FAILPROBE_BENCH_BIN").unwrap_or_else(|| env!("CARGO_BIN_EXE_failprobe").into());
    let mut cmd = Command::new(bin);
    cmd.args(["run", "--target", url, "--trigger", "none", "--warmup", "1s", "--quiet"])
        .args(["--duration", length, "--interval", interval, "--clients", clients])
        .arg("--out")
        .arg(out);
    cmd
}

struct Usage {
    user: f64,
    sys: f64,
}

impl Usage {
    /// µs of user and system CPU per operation.
    fn per(&self, ops: u64) -> (f64, f64) {
        (self.user * 1e6 / ops as f64, self.sys * 1e6 / ops as f64)
    }
}

fn measure(cmd: &mut Command) -> Usage {
    reap(cmd.stdout(Stdio::null()).stderr(Stdio::null()).spawn().expect("spawn"))
}

/// The child's own CPU, from wait4 (which reaps it; Child::wait is not called).
fn reap(child: Child) -> Usage {
    let mut status = 0;
    // SAFETY: wait4 writes into the two locals.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let pid = unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut usage) };
    assert_eq!(pid, child.id() as i32, "wait4");
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    Usage { user: secs(usage.ru_utime), sys: secs(usage.ru_stime) }
}

/// Probes recorded: the rows of samples.csv.
fn samples(out: &Path) -> u64 {
    let text = std::fs::read_to_string(out.join("samples.csv")).expect("samples.csv");
    text.lines().count().saturating_sub(1) as u64
}

/// A redis-server of the bench's own, on a free port, without persistence; stopped on drop.
struct Server {
    port: u16,
    child: Child,
}

impl Server {
    fn start(dir: &Path, name: &str) -> Self {
        let home = dir.join(name);
        std::fs::create_dir_all(&home).expect("server dir");
        for _ in 0..10 {
            let port = TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("free port").port();
            let mut child = Command::new("redis-server")
                .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
                .arg("--dir")
                .arg(&home)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("redis-server");
            let until = Instant::now() + Duration::from_secs(5);
            while Instant::now() < until {
                if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    return Self { port, child };
                }
                if child.try_wait().ok().flatten().is_some() {
                    break; // the port was taken meanwhile: another one
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("redis-server did not start");
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
