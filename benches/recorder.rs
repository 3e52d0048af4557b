//! Analysis throughput: 1 M samples through the streaming analysis (the live path and the
//! `failprobe report` path), the same with the live metrics (`--metrics-listen`) counting each
//! record as the recorder does, the metrics alone, and outage detection alone. Criterion
//! prints the throughput in elements/s; the budget is at least 5 M samples/s.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use failprobe::analysis::outage::find_windows;
use failprobe::analysis::Analyzer;
use failprobe::live::Metrics;
use failprobe::sample::{Budget, ErrorClass, RunMeta, Sample, Stream};
use failprobe::sample::{Outcome, Record};

const N: u64 = 1_000_000;

/// 1 M write samples at 100 µs with an outage every 10 000 probes lasting 300 probes.
fn samples() -> Vec<Sample> {
    (0..N)
        .map(|i| {
            let ok = i % 10_000 >= 300;
            Sample {
                trial: 0,
                stream: Stream::Write,
                seq: i + 1,
                scheduled_us: i * 100,
                start_us: i * 100 + 5,
                end_us: i * 100 + 400,
                latency_us: 400,
                outcome: if ok { Outcome::Ok } else { Outcome::Failed },
                error_class: (!ok).then_some(ErrorClass::Refused),
                error: None,
                server: Some("127.0.0.1:6379".into()),
                value: None,
                shard: None,
                client: None,
            }
        })
        .collect()
}

fn meta() -> RunMeta {
    RunMeta {
        version: "bench".into(),
        scenario: "bench".into(),
        run_id: "bench".into(),
        target: "redis://127.0.0.1:6379".into(),
        started_at: "2026-01-01T00:00:00Z".into(),
        interval_us: 100,
        timeout_us: 250_000,
        triggers: vec![],
        budget: Budget::default(),
        lab: None,
        clients: Vec::new(),
        write_ack: String::new(),
        servers: Vec::new(),
        metrics_listen: None,
    }
}

fn bench(c: &mut Criterion) {
    let data = samples();
    let mut g = c.benchmark_group("recorder");
    g.sample_size(10);
    g.throughput(Throughput::Elements(N));
    g.bench_function("analyse 1M samples (ingest and summary)", |b| {
        b.iter(|| {
            let mut a = Analyzer::new(meta());
            for s in &data {
                a.sample(s);
            }
            a.finish().summary.trials.len()
        })
    });
    // What the recorder does per record with --metrics-listen: the metrics, then the analysis.
    let records: Vec<Record> = data.iter().cloned().map(Record::Sample).collect();
    let metrics = Metrics::new();
    g.bench_function("analyse 1M samples with live metrics", |b| {
        b.iter(|| {
            let mut a = Analyzer::new(meta());
            let mut live = metrics.for_target("bench");
            live.begin(&meta(), std::time::SystemTime::now());
            for r in &records {
                live.record(r);
                if let Record::Sample(s) = r {
                    a.sample(s);
                }
            }
            a.finish().summary.trials.len()
        })
    });
    g.bench_function("live metrics alone over 1M samples", |b| {
        b.iter(|| {
            let mut live = metrics.for_target("bench");
            live.begin(&meta(), std::time::SystemTime::now());
            records.iter().filter_map(|r| live.record(r)).count()
        })
    });
    g.bench_function("outage windows over 1M samples", |b| b.iter(|| find_windows(&data).len()));
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
