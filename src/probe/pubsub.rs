//! `--probe pubsub`: on the probes' fixed clock failprobe's own client publishes a numbered
//! message on each client's own channel (`TrialKeys::channel`), and each client's subscriber
//! records every message it receives as a `Deliver` sample. What a subscriber missed, received
//! twice or out of order, and how long it was without its subscription, is the analysis's
//! (`analysis::pubsub`): it compares the publishes the server acknowledged with the deliveries.

use super::locate::Locator;
use crate::sample::{EventKind, Outcome, Record, Sample, Stream};
use crate::sink::Reporter;
use crate::target::error::ProbeError;
use crate::target::Target;
use futures_util::StreamExt;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::{timeout, Instant};

/// A subscription lost is made again after this pause (a refused connection is not retried in
/// a busy loop).
const RESUBSCRIBE_PAUSE: Duration = Duration::from_millis(100);
/// A payload longer than this is not one failprobe published.
const MAX_PAYLOAD: usize = 64;
/// Deliveries recorded beyond twice the messages published (and this many more) come from a
/// server repeating them: the subscription is dropped rather than the recorder flooded.
const SPARE_DELIVERIES: u64 = 1_000;

/// One client's subscriber for one trial.
pub struct SubscribeTask {
    pub(crate) shard: usize,
    pub(crate) channel: String,
    /// The client profile's label (None for failprobe's own).
    pub(crate) client: Option<String>,
    pub(crate) trial: u32,
    pub(crate) report: Reporter,
    pub(crate) stop: watch::Receiver<bool>,
    /// The probe timeout: a subscription silent this long is checked (PING, where the primary
    /// is now), and after the trial's stop, how long messages still in flight are awaited.
    pub(crate) timeout: Duration,
    /// The highest sequence number published so far: a message numbered above it was not
    /// failprobe's and is not recorded (a server cannot grow what the analysis keeps).
    pub(crate) published: Arc<std::sync::atomic::AtomicU64>,
    /// Deliveries recorded so far.
    pub(crate) recorded: std::sync::atomic::AtomicU64,
}

impl SubscribeTask {
    /// Records a message of failprobe's received from `server`; false once more were received
    /// than can be (a server or adapter repeating them). Another payload is ignored.
    pub(crate) fn deliver(&self, payload: &[u8], server: &str) -> bool {
        use std::sync::atomic::Ordering::Relaxed;
        let Some((seq, scheduled_us)) = parse_payload(payload) else { return true };
        let published = self.published.load(Relaxed);
        if seq == 0 || seq > published {
            return true;
        }
        if self.recorded.fetch_add(1, Relaxed) >= published.saturating_mul(2) + SPARE_DELIVERIES {
            return false;
        }
        let end_us = self.report.clock.us(Instant::now());
        let sample = Sample {
            trial: self.trial,
            stream: Stream::Deliver,
            seq,
            scheduled_us,
            start_us: scheduled_us,
            end_us,
            latency_us: end_us.saturating_sub(scheduled_us),
            outcome: Outcome::Ok,
            error_class: None,
            error: None,
            server: Some(server.to_string()),
            value: None,
            shard: None,
            client: self.client.clone(),
        };
        let _ = self.report.tx.send(Record::Sample(sample));
        true
    }
}

pub(crate) async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// What failprobe publishes: the sequence number and when the publish was due (µs on the run
/// clock), so that a delivery's latency counts from the schedule.
pub(crate) fn payload(seq: u64, scheduled_us: u64) -> String {
    format!("{seq} {scheduled_us}")
}

fn parse_payload(bytes: &[u8]) -> Option<(u64, u64)> {
    if bytes.len() > MAX_PAYLOAD {
        return None;
    }
    let (seq, at) = std::str::from_utf8(bytes).ok()?.split_once(' ')?;
    Some((seq.parse().ok()?, at.parse().ok()?))
}

/// How a client's subscriber finds its server: failprobe's own follows the primary (asks
/// discovery again on every subscription and when the channel goes quiet); `pinned` keeps the
/// address it was given.
pub struct Subscriber {
    pub(crate) target: Arc<Target>,
    pub(crate) locator: Arc<Locator>,
    pub(crate) limit: Duration,
    pub(crate) follows_primary: bool,
}

impl Subscriber {
    /// Subscribes until the trial stops, again after each loss. The timeline gets each
    /// subscription made and each lost, and the first failure to subscribe; the attempts that
    /// follow a failure until one succeeds are not news.
    pub(crate) async fn run(self, task: SubscribeTask) {
        let mut stop = task.stop.clone();
        let mut said_down = false;
        loop {
            let subscription = self.attempt(&task);
            tokio::pin!(subscription);
            let ((error, server), was_subscribed) = tokio::select! {
                ended = &mut subscription => match ended {
                    Ok(lost) => (lost, true),
                    Err(failed) => (failed, false),
                },
                _ = stopped(&mut stop) => {
                    // The last publishes' messages are still on their way.
                    let _ = timeout(task.timeout, subscription).await;
                    return;
                }
            };
            if was_subscribed || !said_down {
                task.report.event(EventKind::Subscription {
                    client: task.client.clone(),
                    subscribed: false,
                    server,
                    error: Some(error.text),
                });
            }
            said_down = true;
            tokio::select! {
                _ = tokio::time::sleep(RESUBSCRIBE_PAUSE) => {}
                _ = stopped(&mut stop) => return,
            }
        }
    }

    /// Subscribes, says so, then reads until the subscription is lost (`Ok`: why, and where);
    /// `Err` when it could not be made. (After the trial's stop, `run` reads what is still in
    /// flight for one timeout.)
    async fn attempt(
        &self,
        task: &SubscribeTask,
    ) -> Result<(ProbeError, Option<String>), (ProbeError, Option<String>)> {
        let (host, port) = self.locator.current_address(self.limit).await.map_err(|e| (e, None))?;
        let server = format!("{host}:{port}");
        let connected = crate::target::connect_pubsub(&self.target, self.target.node_client(&host, port), self.limit);
        let (mut sink, mut messages) = match connected.await {
            Ok(p) => p.split(),
            Err(e) => return Err((e, Some(server))),
        };
        match timeout(self.limit, sink.subscribe(&task.channel)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err((crate::target::error::classify(&e), Some(server))),
            Err(_) => return Err((ProbeError::timeout("SUBSCRIBE"), Some(server))),
        }
        task.report.event(EventKind::Subscription {
            client: task.client.clone(),
            subscribed: true,
            server: Some(server.clone()),
            error: None,
        });
        loop {
            match timeout(task.timeout, messages.next()).await {
                Ok(Some(msg)) => {
                    if !task.deliver(msg.get_payload_bytes(), &server) {
                        let text = "more messages than failprobe published: a server repeating them";
                        return Ok((ProbeError::new(crate::sample::ErrorClass::Other, text), Some(server)));
                    }
                }
                Ok(None) => {
                    let closed = ProbeError::new(crate::sample::ErrorClass::Reset, "subscription closed by the server");
                    return Ok((closed, Some(server)));
                }
                Err(_) => {
                    if let Err(e) = self.still_there(&mut sink, &host, port).await {
                        return Ok((e, Some(server)));
                    }
                }
            }
        }
    }

    /// A quiet channel: the server still answers PING, and (for a client that follows the
    /// primary) is still where discovery says the primary is.
    async fn still_there(&self, sink: &mut redis::aio::PubSubSink, host: &str, port: u16) -> Result<(), ProbeError> {
        match timeout(self.limit, sink.ping::<redis::Value>()).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(crate::target::error::classify(&e)),
            Err(_) => return Err(ProbeError::timeout("PING on the subscription")),
        }
        if self.follows_primary {
            let now = self.locator.current_address(self.limit).await?;
            if now != (host.to_string(), port) {
                let text = format!("the primary is now {}:{}", now.0, now.1);
                return Err(ProbeError::new(crate::sample::ErrorClass::Other, text));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_round_trip_and_foreign_ones_are_refused() {
        assert_eq!(parse_payload(payload(42, 1_234_567).as_bytes()), Some((42, 1_234_567)));
        assert_eq!(parse_payload(b"hello"), None);
        assert_eq!(parse_payload(b"1 x"), None);
        assert_eq!(parse_payload(&[b'1'; 100]), None);
    }
}
