//! Fixed-rate scheduling without coordinated omission (as wrk2 does it): probe `n` is due at
//! `start + n × interval`, is sent then whether or not earlier probes have returned, carries its
//! own deadline, and its latency counts from when it was due. If the scheduler itself wakes late,
//! the overdue probes are all still sent (never skipped), with their original scheduled times, and
//! counted as late.

use super::Attempt;
use crate::clock::Clock;
use crate::probe::slot::Reporter;
use crate::record::sample::Outcome;
use crate::record::{ErrorClass, EventKind, Record, Sample, Stream};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::{sleep_until, timeout_at, Instant};

#[derive(Clone, Copy, Debug)]
pub struct StreamConfig {
    pub stream: Stream,
    pub trial: u32,
    pub interval: Duration,
    pub timeout: Duration,
}

/// The live state of one stream, for the run loop (is it up?) and the status line.
#[derive(Debug, Default, Clone)]
pub struct HealthState {
    /// Scheduled time of the latest-scheduled probe that has completed.
    latest_scheduled_us: u64,
    pub up: bool,
    pub seen_any: bool,
    /// Since when the stream has been in its current state (µs since run start).
    pub since_us: u64,
    pub completed: u64,
    pub failed: u64,
    pub last_error: Option<ErrorClass>,
}

#[derive(Default)]
pub struct Health(Mutex<HealthState>);

impl Health {
    pub fn snapshot(&self) -> HealthState {
        self.0.lock().map(|s| s.clone()).unwrap_or_default()
    }

    pub fn reset(&self) {
        if let Ok(mut s) = self.0.lock() {
            *s = HealthState::default();
        }
    }

    fn update(&self, s: &Sample) {
        let Ok(mut h) = self.0.lock() else { return };
        h.completed += 1;
        if !s.ok() {
            h.failed += 1;
            h.last_error = s.error_class;
        }
        // Up/down follows scheduled order, like the outage windows: a late answer to an old
        // probe does not flip the state back.
        if h.seen_any && s.scheduled_us < h.latest_scheduled_us {
            return;
        }
        h.latest_scheduled_us = s.scheduled_us;
        if !h.seen_any || h.up != s.ok() {
            h.since_us = if s.ok() { s.end_us } else { s.scheduled_us };
            h.up = s.ok();
            h.seen_any = true;
        }
    }
}

/// Runs one stream until `stop` turns true, then waits for in-flight probes (each bounded by its
/// own deadline). Returns how many probes were sent late.
pub async fn run_stream<F, Fut>(
    cfg: StreamConfig,
    report: Reporter,
    health: Arc<Health>,
    mut stop: watch::Receiver<bool>,
    probe: F,
) -> u64
where
    F: Fn(u64, Instant) -> Fut,
    Fut: Future<Output = Attempt> + Send + 'static,
{
    let clock = report.clock;
    let late_threshold = cfg.interval.max(Duration::from_millis(2));
    let start = Instant::now();
    let mut tasks = JoinSet::new();
    let mut n: u64 = 0;
    let mut late = 0u64;
    loop {
        let due = start + cfg.interval * n as u32;
        tokio::select! {
            biased;
            _ = stop.changed() => break,
            _ = sleep_until(due) => {}
        }
        if *stop.borrow() {
            break;
        }
        let now = Instant::now();
        loop {
            let scheduled = start + cfg.interval * n as u32;
            if scheduled > now {
                break;
            }
            n += 1;
            if now.duration_since(scheduled) > late_threshold {
                late += 1;
            }
            let deadline = scheduled + cfg.timeout;
            let fut = probe(n, deadline);
            let (report, health) = (report.clone(), health.clone());
            tasks.spawn(async move {
                let started = Instant::now();
                let attempt = timeout_at(deadline, fut).await.unwrap_or_else(|_| Attempt {
                    result: Err(super::error::ProbeError::timeout("probe")),
                    server: None,
                });
                let sample = to_sample(&clock, cfg, n, scheduled, started, Instant::now(), attempt);
                health.update(&sample);
                let _ = report.tx.send(Record::Sample(sample));
            });
        }
        while tasks.try_join_next().is_some() {}
    }
    while tasks.join_next().await.is_some() {}
    if late > 0 {
        report.event(EventKind::Lateness { stream: cfg.stream, late });
    }
    late
}

fn to_sample(
    clock: &Clock,
    cfg: StreamConfig,
    seq: u64,
    scheduled: Instant,
    started: Instant,
    ended: Instant,
    a: Attempt,
) -> Sample {
    let (scheduled_us, end_us) = (clock.us(scheduled), clock.us(ended));
    let (outcome, error_class, error, value) = match a.result {
        Ok(v) => (Outcome::Ok, None, None, v),
        Err(e) => (Outcome::Failed, Some(e.class), Some(e.text), None),
    };
    Sample {
        trial: cfg.trial,
        stream: cfg.stream,
        seq,
        scheduled_us,
        start_us: clock.us(started),
        end_us,
        latency_us: end_us.saturating_sub(scheduled_us),
        outcome,
        error_class,
        error,
        server: a.server,
        value,
    }
}
