//! `--probe stream` in a trial: failprobe's own client appends a numbered entry to the trial's
//! stream on the probe clock and its consumer group reads them; after the trial the stream is
//! read back from the primary of now.

use super::context::{ClientTrial, RunContext};
use crate::probe::client::Profile;
use crate::probe::schedule::{run_stream, Health, StreamConfig};
use crate::probe::xstream::Consumer;
use crate::sample::{EventKind, Stream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// What a trial's stream probe leaves for the check after it: the highest entry appended.
pub(super) struct StreamProbe {
    appended: Arc<AtomicU64>,
}

/// The appends and the consumer, on the probing thread, for failprobe's own client (the
/// profiles measure the key writes and reads only). Each handle gives its late appends.
pub(super) fn start_stream(
    ctx: &RunContext,
    trial: u32,
    clients: &[ClientTrial],
    stop: watch::Receiver<bool>,
) -> Option<(StreamProbe, Vec<JoinHandle<u64>>)> {
    let own = clients.iter().find(|c| c.profile == Profile::Failprobe)?;
    let producer = ctx.prober.producer()?;
    let keys = own.keys[0].clone();
    let appended = Arc::new(AtomicU64::new(0));
    let route = producer.primary_locator(0);
    let consumer = Consumer {
        locator: route.locator,
        limit: route.limit,
        key: keys.stream.clone(),
        ttl_ms: keys.ttl_ms,
        client: None,
        trial,
        report: ctx.report.clone(),
        stop: stop.clone(),
        timeout: ctx.plan.timeout,
        appended: appended.clone(),
    };
    let probes = crate::probe::runtime::handle();
    let consumer = probes.spawn(async move {
        consumer.run().await;
        0
    });
    let cfg = StreamConfig {
        stream: Stream::Append,
        shard: None,
        client: None,
        trial,
        interval: ctx.plan.interval,
        timeout: ctx.plan.timeout,
    };
    let (clock, timeout, counter) = (ctx.report.clock, ctx.plan.timeout, appended.clone());
    let appends = run_stream(cfg, ctx.report.clone(), Arc::new(Health::default()), stop, move |seq, deadline| {
        counter.fetch_max(seq, Ordering::Relaxed);
        let scheduled_us = clock.us(deadline - timeout);
        producer.clone().append(0, keys.clone(), seq, scheduled_us, deadline)
    });
    Some((StreamProbe { appended }, vec![consumer, probes.spawn(appends)]))
}

/// After the trial: the stream as the primary of now has it, on the timeline.
pub(super) async fn check_stream(ctx: &RunContext, clients: &[ClientTrial], probe: &StreamProbe) {
    let (Some(own), Some(producer)) = (clients.iter().find(|c| c.profile == Profile::Failprobe), ctx.prober.producer())
    else {
        return;
    };
    let max_seq = probe.appended.load(Ordering::Relaxed);
    match producer.read_stream(0, own.keys[0].stream.clone(), max_seq).await {
        Ok((server, present, pending)) => {
            ctx.report.event(EventKind::StreamLog { server, present: present.into_ranges(), pending, client: None })
        }
        Err(e) => ctx.report.event(EventKind::IntegrityError { message: format!("stream read-back: {e}") }),
    }
}
