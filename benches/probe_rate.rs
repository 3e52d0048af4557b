//! Against a local redis-server (skipped when none is on PATH):
//! - the highest sustained probe rate on one connection (writes, as failprobe sends them);
//! - schedule lateness of the fixed-rate scheduler at 10 000 probes/s.
//!
//! Prints figures rather than criterion statistics: these are capacities, not timings of a
//! function.

use failprobe::clock::Clock;
use failprobe::lab::{Lab, Topology};
use failprobe::probe::redis::RedisProber;
use failprobe::probe::schedule::{run_stream, Health, StreamConfig};
use failprobe::probe::{Prober, TrialKeys};
use failprobe::sample::{Record, Stream};
use failprobe::sink::Reporter;
use failprobe::target::Target;
use std::sync::atomic::AtomicU32;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};

fn main() {
    // `cargo test --all-targets` runs bench binaries without `--bench`: only build-check then.
    if !std::env::args().any(|a| a == "--bench") {
        println!("probe_rate: run with `cargo bench --bench probe_rate`");
        return;
    }
    if std::process::Command::new("redis-server").arg("--version").output().is_err() {
        println!("probe_rate: redis-server not on PATH, skipped");
        return;
    }
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let dir = tempfile::tempdir().expect("tempdir");
        let lab = Lab::up(Topology::Replica, dir.path(), true).await.expect("lab");
        let target = Arc::new(Target::parse(&lab.primary_url()).expect("target"));
        for concurrency in [1usize, 8, 64] {
            let rate = sustained_rate(&target, concurrency).await;
            println!("writes on one connection, {concurrency:>2} in flight: {rate:>8.0} probes/s");
        }
        lateness_at(&target, Duration::from_micros(100), Duration::from_secs(3)).await;
    });
}

fn reporter() -> (Reporter, mpsc::UnboundedReceiver<Record>) {
    let (tx, rx) = mpsc::unbounded_channel();
    (Reporter { clock: Clock::start_now(), tx, trial: Arc::new(AtomicU32::new(0)) }, rx)
}

/// Closed loop: `concurrency` workers each send the next write as soon as the last answered.
async fn sustained_rate(target: &Arc<Target>, concurrency: usize) -> f64 {
    let (report, mut rx) = reporter();
    tokio::spawn(async move { while rx.recv().await.is_some() {} });
    let prober = RedisProber::start(target.clone(), "bench", Duration::from_secs(1), report).await.expect("prober");
    let keys = Arc::new(TrialKeys::new("bench", concurrency as u32, Duration::from_secs(60)));
    let until = tokio::time::Instant::now() + Duration::from_secs(2);
    let mut workers = Vec::new();
    for w in 0..concurrency {
        let (prober, keys) = (prober.clone(), keys.clone());
        workers.push(tokio::spawn(async move {
            let mut n = 0u64;
            while tokio::time::Instant::now() < until {
                let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
                let a = prober.clone().write(0, keys.clone(), (w as u64) << 40 | n, deadline).await;
                if a.result.is_ok() {
                    n += 1;
                }
            }
            n
        }));
    }
    let mut total = 0;
    for w in workers {
        total += w.await.unwrap_or(0);
    }
    prober.shutdown();
    total as f64 / 2.0
}

async fn lateness_at(target: &Arc<Target>, interval: Duration, length: Duration) {
    let (report, mut rx) = reporter();
    let prober =
        RedisProber::start(target.clone(), "bench", Duration::from_secs(1), report.clone()).await.expect("prober");
    let keys = Arc::new(TrialKeys::new("bench-late", 0, Duration::from_secs(60)));
    let (stop_tx, stop_rx) = watch::channel(false);
    let cfg = StreamConfig {
        stream: Stream::Write,
        shard: None,
        client: None,
        trial: 0,
        interval,
        timeout: Duration::from_millis(250),
    };
    let p = prober.clone();
    let stream = tokio::spawn(run_stream(cfg, report, Arc::new(Health::default()), stop_rx, move |seq, d| {
        p.clone().write(0, keys.clone(), seq, d)
    }));
    tokio::time::sleep(length).await;
    let _ = stop_tx.send(true);
    let late = stream.await.unwrap_or(0);
    prober.shutdown();
    let mut lateness = hdrhistogram::Histogram::<u64>::new(3).expect("histogram");
    let (mut probes, mut failed) = (0u64, 0u64);
    while let Ok(r) = rx.try_recv() {
        if let Record::Sample(s) = r {
            probes += 1;
            failed += u64::from(!s.ok());
            let _ = lateness.record(s.start_us.saturating_sub(s.scheduled_us));
        }
    }
    println!(
        "schedule at {:.0} probes/s for {length:?}: {probes} sent, {failed} failed, {late} late; \
         send lateness p50 {} µs, p99 {} µs, max {} µs",
        1.0 / interval.as_secs_f64(),
        lateness.value_at_quantile(0.5),
        lateness.value_at_quantile(0.99),
        lateness.max()
    );
}
