//! Memory budgets: peak RSS must not grow with the length of a run. Each figure is measured in a
//! process of its own (a peak is per process):
//! - the analysis alone, fed 90 s and 10 min of probes at a 250 µs interval (720 000 and
//!   4 800 000 samples), peak from /proc/self/status VmHWM, and its throughput;
//! - a real `failprobe run --trigger none` at a 250 µs interval against the local lab, 90 s and
//!   10 min (skip the long one with `-- --short`), peak RSS of the process from wait4;
//! - `failprobe report` over a generated 10 M-row samples.csv.
//!
//! Budget: 64 MB each; the analysis at least 5 M samples/s. `cargo bench --bench memory`.

use failprobe::analysis::Analyzer;
use failprobe::record::store::RunWriter;
use failprobe::sample::Outcome;
use failprobe::sample::{Budget, ErrorClass, Event, EventKind, Record, RunMeta, Sample, Stream};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

const BUDGET_MB: f64 = 64.0;
const INTERVAL_US: u64 = 250;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    // `cargo test --all-targets` runs bench binaries without `--bench`: only build-check then.
    if !args.iter().any(|a| a == "--bench") {
        println!("memory: run with `cargo bench --bench memory`");
        return;
    }
    if let Some(i) = args.iter().position(|a| a == "--analyse") {
        let seconds: u64 = args[i + 1].parse().expect("seconds");
        analyse_in_process(seconds);
        return;
    }
    if let Some(i) = args.iter().position(|a| a == "--generate") {
        // `--generate DIR ROWS`: only write a run, to look at by hand.
        generate_run(Path::new(&args[i + 1]), args[i + 2].parse().expect("rows"));
        return;
    }
    let short = args.iter().any(|a| a == "--short");
    for seconds in [90, 600] {
        let out = Command::new(std::env::current_exe().unwrap())
            .args(["--bench", "--analyse", &seconds.to_string()])
            .output()
            .expect("re-running this bench");
        print!("{}", String::from_utf8_lossy(&out.stdout));
    }
    let dir = tempfile::tempdir().expect("tempdir");
    if which("redis-server") {
        let runs: &[u64] = if short { &[90] } else { &[90, 600] };
        for &seconds in runs {
            live_run(dir.path(), seconds);
        }
    } else {
        println!("live run: redis-server not on PATH, skipped");
    }
    report_of_generated_run(dir.path(), 10_000_000);
    println!("(this process's own peak, a floor for the figures of its children: {:.1} MB)", vm_hwm_mb());
}

fn which(program: &str) -> bool {
    Command::new(program).arg("--version").output().is_ok()
}

/// Writes and reads alternating every `INTERVAL_US`, a 2 s outage in the middle, probes
/// completing 300 µs after their due time (so they arrive out of order around the outage).
fn sample(i: u64, total: u64) -> Sample {
    let stream = if i.is_multiple_of(2) { Stream::Write } else { Stream::Read };
    let scheduled_us = (i / 2) * INTERVAL_US;
    let middle = total / 2 * INTERVAL_US / 2;
    let down = scheduled_us >= middle && scheduled_us < middle + 2_000_000;
    let latency_us = if down { 250_000 } else { 300 };
    Sample {
        trial: 0,
        stream,
        seq: i / 2 + 1,
        scheduled_us,
        start_us: scheduled_us + 20,
        end_us: scheduled_us + latency_us,
        latency_us,
        outcome: if down { Outcome::Failed } else { Outcome::Ok },
        error_class: down.then_some(ErrorClass::Timeout),
        error: down.then(|| "timed out".to_string()),
        server: Some("127.0.0.1:6379".into()),
        value: (stream == Stream::Read).then_some(i / 2),
        shard: None,
        client: None,
    }
}

fn meta() -> RunMeta {
    RunMeta {
        version: "bench".into(),
        scenario: "bench".into(),
        run_id: "bench".into(),
        target: "redis://127.0.0.1:6379".into(),
        started_at: "2026-01-01T00:00:00Z".into(),
        interval_us: INTERVAL_US,
        timeout_us: 250_000,
        triggers: vec!["none".into()],
        budget: Budget::default(),
        lab: None,
        clients: Vec::new(),
        write_ack: String::new(),
        servers: Vec::new(),
        metrics_listen: None,
    }
}

fn analyse_in_process(seconds: u64) {
    let total = seconds * 1_000_000 / INTERVAL_US * 2;
    let before = vm_hwm_mb();
    let mut a = Analyzer::new(meta());
    a.event(Event { at_us: 0, trial: 0, kind: EventKind::TrialStart });
    let started = Instant::now();
    for i in 0..total {
        a.sample(&sample(i, total));
    }
    a.event(Event { at_us: seconds * 1_000_000, trial: 0, kind: EventKind::TrialEnd { reason: "observed".into() } });
    let summary = a.finish().summary;
    let took = started.elapsed();
    assert_eq!(summary.trials[0].writes.probes, total / 2);
    let peak = vm_hwm_mb();
    println!(
        "analysis of {seconds:>3} s at {INTERVAL_US} µs ({total:>9} samples): peak RSS {peak:5.1} MB (process start {before:.1} MB), \
         {:.1} M samples/s (incl. building each Sample) {}",
        total as f64 / took.as_secs_f64() / 1e6,
        verdict(peak)
    );
}

fn vm_hwm_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM");
    kb / 1024.0
}

fn verdict(peak_mb: f64) -> &'static str {
    if peak_mb <= BUDGET_MB {
        "(within 64 MB)"
    } else {
        "(OVER the 64 MB budget)"
    }
}

/// Runs `cmd` and returns its peak RSS in MB (wait4's ru_maxrss), with its wall time.
// The child is reaped by wait4 (which also gives its own peak RSS), not by Child::wait.
#[allow(clippy::zombie_processes)]
fn peak_of(cmd: &mut Command) -> (f64, Duration, i32) {
    let started = Instant::now();
    let child = cmd.spawn().expect("spawning failprobe");
    let mut status = 0;
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: waits for our own child; `usage` is a valid rusage to fill.
    let pid = unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut usage) };
    assert_eq!(pid, child.id() as i32, "wait4");
    (usage.ru_maxrss as f64 / 1024.0, started.elapsed(), libc::WEXITSTATUS(status))
}

/// The lab is started by its own process, so that its redis-server (whose write log grows with
/// the run, ~10 bytes a write) is not a descendant of the measured process: wait4's peak covers
/// the children a process reaped, and failprobe reaps the servers of a lab it started itself.
fn live_run(dir: &Path, seconds: u64) {
    let lab = dir.join(format!("lab-{seconds}"));
    let lab_cmd = |args: &[&str]| {
        let status = Command::new(env!("CARGO_BIN_EXE_failprobe"))
            .arg("lab")
            .args(args)
            .arg("--dir")
            .arg(&lab)
            .stdout(std::process::Stdio::null())
            .status()
            .expect("failprobe lab");
        assert!(status.success(), "failprobe lab {args:?}");
    };
    lab_cmd(&["up", "--topology", "replica"]);
    let out = dir.join(format!("live-{seconds}"));
    let (peak, took, code) = peak_of(
        Command::new(env!("CARGO_BIN_EXE_failprobe"))
            .args(["run", "--trigger", "none", "--warmup", "1s", "--quiet"])
            .args(["--interval", "250us", "--duration", &format!("{}s", seconds - 1)])
            .arg("--lab")
            .arg(&lab)
            .arg("--out")
            .arg(&out)
            .stdout(std::process::Stdio::null()),
    );
    lab_cmd(&["down"]);
    let rows = count_lines(&out.join("samples.csv")).saturating_sub(1);
    println!(
        "failprobe run, {seconds:>3} s at 250 µs ({rows:>9} samples, exit {code}, {:.0} s): peak RSS {peak:5.1} MB {}",
        took.as_secs_f64(),
        verdict(peak)
    );
}

/// Streamed: this process must stay small, since a child's peak as wait4 reports it starts at
/// the peak of the process that spawned it (Linux carries it over at exec).
fn count_lines(path: &Path) -> u64 {
    use std::io::BufRead;
    let Ok(f) = std::fs::File::open(path) else { return 0 };
    std::io::BufReader::new(f).split(b'\n').count() as u64
}

fn report_of_generated_run(dir: &Path, rows: u64) {
    let run = dir.join("generated");
    generate_run(&run, rows);
    let size = std::fs::metadata(run.join("samples.csv")).map(|m| m.len()).unwrap_or(0);
    let (peak, took, code) = peak_of(
        Command::new(env!("CARGO_BIN_EXE_failprobe")).arg("report").arg(&run).stdout(std::process::Stdio::null()),
    );
    println!(
        "failprobe report, {rows} rows ({:.0} MB samples.csv, exit {code}, {:.1} s, {:.1} M rows/s): peak RSS {peak:5.1} MB {}",
        size as f64 / 1e6,
        took.as_secs_f64(),
        rows as f64 / took.as_secs_f64() / 1e6,
        verdict(peak)
    );
}

fn generate_run(run: &Path, rows: u64) {
    let mut writer = RunWriter::create(run, &meta()).expect("run dir");
    let write = |w: &mut RunWriter, r: Record| w.write(&r).expect("writing");
    write(&mut writer, Record::Event(Event { at_us: 0, trial: 0, kind: EventKind::TrialStart }));
    for i in 0..rows {
        write(&mut writer, Record::Sample(sample(i, rows)));
    }
    let end = rows / 2 * INTERVAL_US;
    write(
        &mut writer,
        Record::Event(Event { at_us: end, trial: 0, kind: EventKind::TrialEnd { reason: "observed".into() } }),
    );
    writer.flush().expect("flush");
}
