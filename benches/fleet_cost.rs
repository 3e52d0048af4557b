//! What a fleet costs: 1, 10 and 50 targets (each a redis-server of its own on loopback) probed
//! by one `failprobe run` process with two clients (`failprobe,pinned`: four streams per target)
//! at a 10 ms interval, no trigger. For each: CPU cores used and CPU per probe over a steady
//! window (from /proc/PID/stat, after start-up and before the reports), peak RSS (VmHWM), and
//! the late probes the fleet's summary counts. In the same run, `redis-benchmark -c 1` against
//! one of the servers gives the CPU one request costs a minimal client, for the ratio.
//!
//! `cargo bench --bench fleet_cost` (release build; `-- --targets 1,10` to choose).

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const INTERVAL_MS: u64 = 10;
const STREAMS_PER_TARGET: u64 = 4;
/// Probing before the window opens (connections, first probes) and after it closes.
const LEAD_IN: Duration = Duration::from_secs(4);
const WINDOW: Duration = Duration::from_secs(10);

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if !args.iter().any(|a| a == "--bench") {
        println!("fleet_cost: run with `cargo bench --bench fleet_cost`");
        return;
    }
    let counts: Vec<usize> = match args.iter().position(|a| a == "--targets") {
        Some(i) => args[i + 1].split(',').map(|n| n.parse().expect("a number of targets")).collect(),
        None => vec![1, 10, 50],
    };
    let failprobe = PathBuf::from(env!("CARGO_BIN_EXE_failprobe"));
    let dir = tempfile::tempdir().expect("tempdir");
    let servers: Vec<Server> = (0..*counts.iter().max().unwrap_or(&1)).map(|_| Server::start()).collect();
    let per_request_us = redis_benchmark_cpu_us(servers[0].port);
    println!("redis-benchmark -c 1 (GET and SET, 100 000 each): {per_request_us:.1} µs of CPU per request");
    println!("| targets | probes/s | CPU cores used | CPU per probe | vs redis-benchmark | peak RSS | late probes |");
    println!("|---|---|---|---|---|---|---|");
    for n in counts {
        let r = measure_fleet(&failprobe, dir.path(), &servers[..n]);
        println!(
            "| {n} | {} | {:.3} | {:.1} µs | {:.2}× | {:.1} MB | {} of {} |",
            n as u64 * STREAMS_PER_TARGET * 1000 / INTERVAL_MS,
            r.cpu_s / WINDOW.as_secs_f64(),
            r.cpu_s * 1e6 / r.probes as f64,
            r.cpu_s * 1e6 / r.probes as f64 / per_request_us,
            r.peak_rss_kb as f64 / 1024.0,
            r.late,
            r.total_probes,
        );
    }
}

struct Server {
    port: u16,
    child: Child,
}

impl Server {
    fn start() -> Server {
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server on PATH");
        let until = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < until, "redis-server on {port} did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        Server { port, child }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// User + system CPU seconds of a process so far.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command's closing parenthesis: utime is the 12th, stime the 13th.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = fields.get(11..13).map_or(0.0, |f| f.iter().map(|v| v.parse::<f64>().unwrap_or(0.0)).sum());
    ticks / unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64
}

fn vm_hwm_kb(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// The CPU redis-benchmark spends per request, as its own process's rusage.
fn redis_benchmark_cpu_us(port: u16) -> f64 {
    let requests = 100_000u64;
    let child = Command::new("redis-benchmark")
        .args(["-p", &port.to_string(), "-c", "1", "-n", &requests.to_string(), "-t", "get,set", "-q"])
        .stdout(Stdio::null())
        .spawn()
        .expect("redis-benchmark on PATH");
    let (cpu_s, _) = wait_with_rusage(child);
    cpu_s * 1e6 / (2 * requests) as f64
}

/// Waits for a child; its user + system CPU seconds and peak RSS (KB) from wait4.
fn wait_with_rusage(child: Child) -> (f64, u64) {
    let mut status = 0;
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut usage) };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    (secs(usage.ru_utime) + secs(usage.ru_stime), usage.ru_maxrss as u64)
}

struct FleetCost {
    cpu_s: f64,
    probes: u64,
    peak_rss_kb: u64,
    late: u64,
    total_probes: u64,
}

fn measure_fleet(failprobe: &Path, dir: &Path, servers: &[Server]) -> FleetCost {
    let out = dir.join(format!("fleet-{}", servers.len()));
    let duration = LEAD_IN * 2 + WINDOW;
    // A fleet file, so that one target is a fleet of one: the same process shape for every N.
    let file = dir.join(format!("fleet-{}.toml", servers.len()));
    let targets: String = servers
        .iter()
        .enumerate()
        .map(|(i, s)| format!("[[target]]\nname = \"t{i}\"\nurl = \"redis://127.0.0.1:{}\"\n", s.port))
        .collect();
    std::fs::write(&file, targets).expect("writing the fleet file");
    let child = Command::new(failprobe)
        .args(["run", "--trigger", "none", "--clients", "failprobe,pinned", "--interval", "10ms", "--quiet"])
        .args(["--warmup", "0s", "--duration", &format!("{}s", duration.as_secs()), "--fleet"])
        .arg(&file)
        .arg("--out")
        .arg(&out)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("failprobe");
    let pid = child.id();
    // The window opens once every target probes (the fleet's start-up is not a probe's cost).
    std::thread::sleep(LEAD_IN + Duration::from_secs(1));
    let before = cpu_seconds(pid);
    std::thread::sleep(WINDOW);
    let cpu_s = cpu_seconds(pid) - before;
    let mut peak = vm_hwm_kb(pid).unwrap_or(0);
    let (_, maxrss) = wait_with_rusage(child);
    peak = peak.max(maxrss);
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("summary.json")).expect("the fleet's summary")).unwrap();
    let rows = summary["targets"].as_array().cloned().unwrap_or_default();
    let late = rows.iter().map(|r| r["late_probes"].as_u64().unwrap_or(0)).sum();
    let targets = rows.len() as u64;
    let probes = targets * STREAMS_PER_TARGET * WINDOW.as_millis() as u64 / INTERVAL_MS;
    let total_probes = targets * STREAMS_PER_TARGET * duration.as_millis() as u64 / INTERVAL_MS;
    FleetCost { cpu_s, probes, peak_rss_kb: peak, late, total_probes }
}
