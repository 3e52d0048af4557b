//! `--probe pubsub` in a trial: each client's subscriber on its own channel, and failprobe's own
//! client publishing a numbered message on that channel on the probe clock.

use super::context::{ClientTrial, RunContext};
use crate::probe::pubsub::{payload, SubscribeTask};
use crate::probe::schedule::{run_stream, Health, StreamConfig};
use crate::sample::Stream;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// The client's subscriber and its publisher, both on the probing thread. Both stop with the
/// trial's streams; each handle gives its late publishes. A client that cannot subscribe (an
/// adapter speaking protocol 1) is an error: nothing measured for it would read as no loss.
pub(super) fn start_pubsub(
    ctx: &RunContext,
    trial: u32,
    c: &ClientTrial,
    stop: watch::Receiver<bool>,
) -> anyhow::Result<Vec<JoinHandle<u64>>> {
    let Some(publisher) = ctx.prober.producer() else { return Ok(Vec::new()) };
    let keys = c.keys[0].clone();
    let published = Arc::new(AtomicU64::new(0));
    let task = SubscribeTask {
        shard: 0,
        channel: keys.channel.clone(),
        client: c.profile.label(),
        trial,
        report: ctx.report.clone(),
        stop: stop.clone(),
        timeout: ctx.plan.timeout,
        published: published.clone(),
        recorded: Default::default(),
    };
    let Some(subscriber) = c.client.clone().subscribe(task) else {
        let why = format!(
            "--probe pubsub: the `{}` client cannot subscribe (an adapter needs protocol 2: adapters/README.md)",
            c.profile.name()
        );
        return Err(crate::error::UsageError::Invalid(why).into());
    };
    let probes = crate::probe::runtime::handle();
    let subscriber = probes.spawn(async move {
        subscriber.await;
        0
    });
    let cfg = StreamConfig {
        stream: Stream::Publish,
        shard: None,
        client: c.profile.label(),
        trial,
        interval: ctx.plan.interval,
        timeout: ctx.plan.timeout,
    };
    let (clock, timeout) = (ctx.report.clock, ctx.plan.timeout);
    let publishes = run_stream(cfg, ctx.report.clone(), Arc::new(Health::default()), stop, move |seq, deadline| {
        published.fetch_max(seq, Ordering::Relaxed);
        let scheduled_us = clock.us(deadline - timeout);
        publisher.clone().publish(0, keys.channel.clone(), payload(seq, scheduled_us), deadline)
    });
    Ok(vec![subscriber, probes.spawn(publishes)])
}
