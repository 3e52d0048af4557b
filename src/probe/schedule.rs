//! Fixed-rate scheduling without coordinated omission (as wrk2 does it): probe `n` is due at
//! `start + n × interval`, is sent then whether or not earlier probes have returned, carries its
//! own deadline, and its latency counts from when it was due. If the scheduler itself wakes late,
//! the overdue probes are all still sent (never skipped), with their original scheduled times, and
//! counted as late.

use super::ticker::Ticker;
use super::{Attempt, TrialKeys};
use crate::clock::Clock;
use crate::sample::Outcome;
use crate::sample::{ErrorClass, EventKind, Record, Sample, Stream};
use crate::sink::Reporter;
use futures_util::stream::{FuturesUnordered, StreamExt};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;
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
/// One task drives the whole stream: its clock (`Ticker`, the OS's high-resolution timer read
/// through the runtime's epoll: tokio's timer wheel has 1 ms granularity, which would add up to a
/// millisecond of scheduler lateness to every latency figure) and every probe in flight, polled
/// side by side, so that no probe waits for another. Samples go to the recorder in batches.
pub async fn run_stream<F, Fut>(
    cfg: StreamConfig,
    report: Reporter,
    health: Arc<Health>,
    stop: watch::Receiver<bool>,
    probe: F,
) -> u64
where
    F: Fn(u64, Instant) -> Fut + Send + 'static,
    Fut: Future<Output = Attempt> + Send + 'static,
{
    let mut ticker = match Ticker::start(cfg.interval) {
        Ok(t) => t,
        Err(e) => {
            crate::note!("error: the {} stream cannot start: no timer ({e})", cfg.stream.name());
            return 0;
        }
    };
    let late_threshold = cfg.interval.max(Duration::from_millis(2));
    let mut samples = Batch::new(&report);
    let mut in_flight = FuturesUnordered::new();
    let (mut n, mut late) = (0u64, 0u64);
    let send = |n: u64, scheduled: Instant| {
        let deadline = scheduled + cfg.timeout;
        let attempt = probe(n, deadline);
        async move {
            let started = Instant::now();
            let attempt = timeout_at(deadline, attempt).await.unwrap_or_else(|_| Attempt {
                result: Err(crate::target::error::ProbeError::timeout("probe")),
                server: None,
            });
            (n, scheduled, started, Instant::now(), attempt)
        }
    };
    let mut stop = std::pin::pin!(wait_for_stop(stop));
    // A timer that is always pending and due no later than any new probe's deadline: a deadline
    // registered while an earlier timer is pending does not make tokio wake its own (running)
    // thread through the event fd, which it does for a timer earlier than all others.
    let mut earlier = std::pin::pin!(tokio::time::sleep(cfg.timeout));
    loop {
        tokio::select! {
            biased;
            () = &mut earlier => earlier.as_mut().reset(Instant::now() + cfg.timeout),
            due = ticker.next() => {
                let Ok(due) = due else { break };
                if due.elapsed() > late_threshold {
                    late += 1;
                }
                n += 1;
                in_flight.push(send(n, due));
                samples.flush_if_due();
            }
            Some((seq, scheduled, started, ended, attempt)) = in_flight.next(), if !in_flight.is_empty() => {
                let sample = to_sample(&report.clock, &cfg, seq, scheduled, started, ended, attempt);
                health.update(&sample);
                samples.push(sample);
            }
            _ = &mut stop => break,
        }
    }
    while let Some((seq, scheduled, started, ended, attempt)) = in_flight.next().await {
        let sample = to_sample(&report.clock, &cfg, seq, scheduled, started, ended, attempt);
        health.update(&sample);
        samples.push(sample);
    }
    samples.flush();
    if late > 0 {
        report.event(EventKind::Lateness { stream: cfg.stream, late });
    }
    late
}

async fn wait_for_stop(mut stop: watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// Samples on their way to the recorder, sent a batch at a time: one wake-up of the recorder per
/// batch rather than per probe. A batch waits at most `BATCH_AGE` (or one interval, when that is
/// longer) and holds at most `BATCH_LEN` samples.
struct Batch<'a> {
    report: &'a Reporter,
    samples: Vec<Sample>,
    since: Instant,
}

const BATCH_AGE: Duration = Duration::from_millis(100);
const BATCH_LEN: usize = 256;

impl<'a> Batch<'a> {
    fn new(report: &'a Reporter) -> Self {
        Self { report, samples: Vec::with_capacity(BATCH_LEN), since: Instant::now() }
    }

    fn push(&mut self, sample: Sample) {
        self.samples.push(sample);
        if self.samples.len() >= BATCH_LEN {
            self.flush();
        }
    }

    fn flush_if_due(&mut self) {
        if !self.samples.is_empty() && self.since.elapsed() >= BATCH_AGE {
            self.flush();
        }
    }

    fn flush(&mut self) {
        for sample in self.samples.drain(..) {
            let _ = self.report.tx.send(Record::Sample(sample));
        }
        self.since = Instant::now();
    }
}

/// A stream stopped half-way (its task cancelled) still delivers what it measured.
impl Drop for Batch<'_> {
    fn drop(&mut self) {
        self.flush();
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
