//! Probes: a write stream and a read stream per shard or node, each on its own fixed clock
//! (`schedule`), through a `Prober` (`redis` for standalone, Sentinel and Cluster targets,
//! `memcached` for its nodes); `engine` puts each kind behind the one face the run loop uses.

pub mod ack;
pub mod client;
pub mod connection;
pub mod engine;
pub(crate) mod exec;
pub mod keys;
pub(crate) mod locate;
pub mod memcached;
pub mod pubsub;
pub mod redis;
pub(crate) mod redis_rs;
pub(crate) mod runtime;
pub mod schedule;
pub(crate) mod ticker;
pub mod xstream;

use crate::target::error::ProbeError;
use std::future::Future;
use std::sync::Arc;
use tokio::time::Instant;

pub use keys::TrialKeys;

/// The result of one probe as the engine saw it; timing is added by the scheduler.
#[derive(Debug)]
pub struct Attempt {
    /// For reads: the sequence number found (0 when the key was absent).
    pub result: Result<Option<u64>, ProbeError>,
    pub server: Option<String>,
}

/// `--probe pubsub` and `--probe stream`: failprobe's own client producing on the engine's
/// connections, and what its stream consumer needs.
pub trait Producer: Send + Sync {
    /// Publishes `payload` on `channel`; the attempt's value is the number of subscribers the
    /// server delivered it to.
    fn publish(
        self: Arc<Self>,
        shard: usize,
        channel: String,
        payload: String,
        deadline: Instant,
    ) -> schedule::BoxFuture<'static, Attempt>;
    /// Appends entry `seq` (due at `scheduled_us`) to the trial's stream, at its `--write-ack`.
    fn append(
        self: Arc<Self>,
        shard: usize,
        keys: Arc<TrialKeys>,
        seq: u64,
        scheduled_us: u64,
        deadline: Instant,
    ) -> schedule::BoxFuture<'static, Attempt>;
    /// Where the shard's primary is, as failprobe's own client finds it (role checked), and
    /// the connect limit: the stream consumer's way there.
    fn primary_locator(&self, shard: usize) -> xstream::Route;
    /// The trial's stream as the shard's primary of now has it (`xstream::read_back`), and
    /// the server that answered.
    fn read_stream(
        self: Arc<Self>,
        shard: usize,
        key: String,
        max_seq: u64,
    ) -> schedule::BoxFuture<'static, Result<(String, crate::sample::SeqSet, u64), ProbeError>>;
}

/// One engine's way of writing and reading the sentinel key. Each call must return by
/// `deadline`; the scheduler enforces it too, as a safety net.
pub trait Prober: Send + Sync + 'static {
    fn write(
        self: Arc<Self>,
        shard: usize,
        keys: Arc<TrialKeys>,
        seq: u64,
        deadline: Instant,
    ) -> impl Future<Output = Attempt> + Send;
    fn read(
        self: Arc<Self>,
        shard: usize,
        keys: Arc<TrialKeys>,
        deadline: Instant,
    ) -> impl Future<Output = Attempt> + Send;
    /// Stops what the prober runs in the background (connection keepers, topology polls).
    fn stop(&self) {}
    /// `--probe pubsub`: this client's subscriber for one trial, until `task.stop`; None where
    /// it cannot subscribe.
    fn subscribe(self: Arc<Self>, _task: pubsub::SubscribeTask) -> Option<schedule::BoxFuture<'static, ()>> {
        None
    }
}
