//! Fixed-rate scheduling without coordinated omission (as wrk2 does it): probe `n` is due at
//! `start + n × interval`, is sent then whether or not earlier probes have returned, carries its
//! own deadline, and its latency counts from when it was due. If the scheduler itself wakes late,
//! the overdue probes are all still sent (never skipped), with their original scheduled times, and
//! counted as late.

use super::{Attempt, TrialKeys};
use crate::clock::Clock;
use crate::sample::Outcome;
use crate::sample::{ErrorClass, EventKind, Record, Sample, Stream};
use crate::sink::Reporter;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::runtime::Handle;
use tokio::sync::{watch, Notify};
use tokio::time::{timeout_at, Instant};

/// Everything one stream of one shard needs to run.
pub struct StreamTask {
    pub shard: usize,
    pub cfg: StreamConfig,
    pub keys: Arc<TrialKeys>,
    pub report: Reporter,
    pub health: Arc<Health>,
    pub stop: watch::Receiver<bool>,
}

/// A boxed future, for the async methods of traits used as `dyn` (`Engine`, `Client`).
pub(crate) type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

#[derive(Clone, Debug)]
pub struct StreamConfig {
    pub stream: Stream,
    /// Which shard or node this stream probes (None for a single primary).
    pub shard: Option<String>,
    /// The client profile probing (None for failprobe's own).
    pub client: Option<String>,
    pub trial: u32,
    pub interval: Duration,
    pub timeout: Duration,
}

/// The live state of one stream, for the run loop (is it up?) and the status line.
#[derive(Debug, Default, Clone)]
pub(crate) struct HealthState {
    /// Scheduled time of the latest-scheduled probe that has completed.
    latest_scheduled_us: u64,
    pub up: bool,
    pub seen_any: bool,
    /// Since when the stream has been in its current state (µs since run start).
    pub since_us: u64,
    pub completed: u64,
    pub failed: u64,
    pub last_error: Option<ErrorClass>,
    /// Highest sequence number sent (writes: the keys to check after the trial).
    pub max_seq: u64,
}

#[derive(Default)]
pub struct Health(Mutex<HealthState>);

impl Health {
    pub(crate) fn snapshot(&self) -> HealthState {
        self.0.lock().map(|s| s.clone()).unwrap_or_default()
    }

    fn update(&self, s: &Sample) {
        let Ok(mut h) = self.0.lock() else { return };
        h.completed += 1;
        h.max_seq = h.max_seq.max(s.seq);
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
///
/// The clock runs on a dedicated OS thread: tokio's timer wheel has 1 ms granularity, which would
/// add up to a millisecond of scheduler lateness to every latency figure; a thread sleeping with
/// the OS's high-resolution timer wakes within ~0.1 ms. Probes themselves run on the runtime.
pub async fn run_stream<F, Fut>(
    cfg: StreamConfig,
    report: Reporter,
    health: Arc<Health>,
    mut stop: watch::Receiver<bool>,
    probe: F,
) -> u64
where
    F: Fn(u64, Instant) -> Fut + Send + 'static,
    Fut: Future<Output = Attempt> + Send + 'static,
{
    let stopped = Arc::new(AtomicBool::new(false));
    let events = report.clone();
    let in_flight = Arc::new(InFlight::default());
    let ticker = {
        let (stopped, in_flight, runtime) = (stopped.clone(), in_flight.clone(), Handle::current());
        let cfg = Arc::new(cfg.clone());
        std::thread::Builder::new().name(format!("failprobe-{}-clock", cfg.stream.name())).spawn(move || {
            tick(&cfg, &stopped, |n, scheduled| {
                let deadline = scheduled + cfg.timeout;
                let fut = probe(n, deadline);
                let (report, health, guard, cfg) = (report.clone(), health.clone(), in_flight.enter(), cfg.clone());
                runtime.spawn(async move {
                    let started = Instant::now();
                    let attempt = timeout_at(deadline, fut).await.unwrap_or_else(|_| Attempt {
                        result: Err(crate::target::error::ProbeError::timeout("probe")),
                        server: None,
                    });
                    let sample = to_sample(&report.clock, &cfg, n, scheduled, started, Instant::now(), attempt);
                    health.update(&sample);
                    let _ = report.tx.send(Record::Sample(sample));
                    drop(guard);
                });
            })
        })
    };
    let _ = stop.wait_for(|s| *s).await;
    stopped.store(true, Ordering::SeqCst);
    let late = match ticker {
        Ok(t) => tokio::task::spawn_blocking(move || t.join().unwrap_or(0)).await.unwrap_or(0),
        Err(_) => 0,
    };
    in_flight.drained().await;
    if late > 0 {
        events.event(EventKind::Lateness { stream: cfg.stream, late });
    }
    late
}

/// The fixed clock: probe `n` (1-based) is due at `start + (n-1) × interval`. Overdue probes are
/// all sent at once with their original due times (never skipped) and counted as late.
fn tick(cfg: &StreamConfig, stopped: &AtomicBool, mut send: impl FnMut(u64, Instant)) -> u64 {
    let late_threshold = cfg.interval.max(Duration::from_millis(2));
    let start = std::time::Instant::now();
    let interval_ns = cfg.interval.as_nanos() as u64;
    let (mut n, mut late) = (0u64, 0u64);
    while !stopped.load(Ordering::Relaxed) {
        let due = start + Duration::from_nanos(interval_ns * n);
        let now = std::time::Instant::now();
        if due > now {
            // Sleep in slices so a stop request is honoured within 50 ms.
            std::thread::sleep((due - now).min(Duration::from_millis(50)));
            continue;
        }
        if now - due > late_threshold {
            late += 1;
        }
        n += 1;
        send(n, Instant::from_std(due));
    }
    late
}

/// Counts probes still running, so a trial can wait for every one to reach its deadline.
#[derive(Default)]
struct InFlight {
    count: AtomicU64,
    idle: Notify,
}

struct InFlightGuard(Arc<InFlight>);

impl InFlight {
    fn enter(self: &Arc<Self>) -> InFlightGuard {
        self.count.fetch_add(1, Ordering::SeqCst);
        InFlightGuard(self.clone())
    }

    async fn drained(&self) {
        loop {
            let idle = self.idle.notified();
            if self.count.load(Ordering::SeqCst) == 0 {
                return;
            }
            idle.await;
        }
    }
}

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        if self.0.count.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

fn to_sample(
    clock: &Clock,
    cfg: &StreamConfig,
    seq: u64,
    scheduled: Instant,
    started: Instant,
    ended: Instant,
    a: Attempt,
) -> Sample {
    let (scheduled_us, end_us) = (clock.us(scheduled), clock.us(ended));
    let late_by = ended.saturating_duration_since(scheduled + cfg.timeout);
    let (outcome, error_class, error, value) = match a.result {
        // An answer after the deadline is one the client had already given up on (it can slip
        // through when the machine is busy and the answer and the timer are ready together).
        Ok(_) if late_by > Duration::ZERO => (
            Outcome::Failed,
            Some(ErrorClass::Timeout),
            Some(format!("answered {:.1} ms after its deadline", late_by.as_secs_f64() * 1000.0)),
            None,
        ),
        Ok(v) => (Outcome::Ok, None, None, v),
        // Whatever the client (a library, an adapter) put in its message, a known password or
        // a URL's userinfo never reaches samples.csv. Only failed probes carry a text.
        Err(e) => (Outcome::Failed, Some(e.class), Some(crate::secret::scrub(&e.text)), None),
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
        shard: cfg.shard.clone(),
        client: cfg.client.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_answer_after_the_deadline_is_a_timeout() {
        let clock = Clock::start_now();
        let cfg = StreamConfig {
            stream: Stream::Write,
            shard: None,
            client: None,
            trial: 0,
            interval: Duration::from_millis(10),
            timeout: Duration::from_millis(250),
        };
        let at = clock.origin() + Duration::from_secs(1);
        let ok = || Attempt { result: Ok(None), server: None };
        let in_time = to_sample(&clock, &cfg, 1, at, at, at + Duration::from_millis(249), ok());
        assert!(in_time.ok());
        let late = to_sample(&clock, &cfg, 2, at, at, at + Duration::from_millis(262), ok());
        assert!(!late.ok());
        assert_eq!(late.error_class, Some(ErrorClass::Timeout));
        assert_eq!(late.latency_us, 262_000);
        // A client's message quoting a known password or a URL's userinfo is scrubbed.
        crate::secret::register("Sched-Secret-7");
        let text = "connect to redis://app:Sched-Secret-7@db:6379 failed (auth Sched-Secret-7)".to_string();
        let failed =
            Attempt { result: Err(crate::target::error::ProbeError::new(ErrorClass::Reset, text)), server: None };
        let sample = to_sample(&clock, &cfg, 3, at, at, at + Duration::from_millis(5), failed);
        let error = sample.error.unwrap();
        assert!(!error.contains("Sched-Secret-7") && error.contains("failed"), "{error}");
    }
}
