//! The Memcached prober: every node probed on its own, one write and one read stream per node.
//! A cache keeps no log, so each write stores its own key (`…:log:<seq>`) besides raising the
//! sentinel key; after recovery the acknowledged write keys are looked up again.

use super::{Attempt, Prober, TrialKeys};
use crate::memcached::proto::{Conn, Item};
use crate::sample::{SeqSet, Stream};
use crate::target::error::ProbeError;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Mutex;
use tokio::time::{timeout_at, Instant};

/// As for Redis: 25 ms after a failed connect, doubling to 200 ms, so a down node is not
/// hammered, yet its return is seen within 200 ms.
const BACKOFF_MIN: Duration = Duration::from_millis(25);
const BACKOFF_MAX: Duration = Duration::from_millis(200);

#[derive(Default)]
struct Slot {
    conn: Option<Conn>,
    retry_at: Option<(Instant, Duration, ProbeError)>,
}

pub(crate) struct MemcachedNode {
    pub name: String,
    pub addr: String,
    /// The hash-tag-like part of this node's keys (`<run-id>.n<i>`).
    pub tag: String,
    slots: [Mutex<Slot>; 2],
}

pub(crate) struct MemcachedProber {
    nodes: Vec<MemcachedNode>,
    limit: Duration,
}

impl MemcachedProber {
    pub fn new(addrs: &[(String, u16)], run_id: &str, limit: Duration) -> Arc<Self> {
        let nodes = addrs
            .iter()
            .enumerate()
            .map(|(i, (h, p))| MemcachedNode {
                name: format!("node{i}"),
                addr: format!("{h}:{p}"),
                tag: format!("{run_id}.n{i}"),
                slots: Default::default(),
            })
            .collect();
        Arc::new(Self { nodes, limit })
    }

    pub fn nodes(&self) -> &[MemcachedNode] {
        &self.nodes
    }

    pub fn keys(&self, trial: u32, ttl: Duration) -> Vec<Arc<TrialKeys>> {
        self.nodes.iter().map(|n| Arc::new(TrialKeys::new(&n.tag, trial, ttl))).collect()
    }

    /// Runs `op` on the node's stream connection, connecting first if needed. Any failure drops
    /// the connection; the next probe reconnects (no sooner than the backoff allows).
    async fn on_conn<F>(&self, node: usize, stream: Stream, deadline: Instant, op: F) -> Attempt
    where
        F: for<'c> FnOnce(
            &'c mut Conn,
        ) -> std::pin::Pin<
            Box<dyn std::future::Future<Output = Result<Option<u64>, ProbeError>> + Send + 'c>,
        >,
    {
        let n = &self.nodes[node];
        let server = Some(n.addr.clone());
        let Ok(mut slot) = timeout_at(deadline, n.slots[stream.index()].lock()).await else {
            return Attempt { result: Err(ProbeError::timeout("waiting for the connection")), server };
        };
        if slot.conn.is_none() {
            if let Some((at, _, e)) = &slot.retry_at {
                if Instant::now() < *at {
                    return Attempt { result: Err(e.clone()), server };
                }
            }
            match Conn::connect(&n.addr, deadline.min(Instant::now() + self.limit)).await {
                Ok(c) => {
                    slot.conn = Some(c);
                    slot.retry_at = None;
                }
                Err(e) => {
                    let backoff = slot.retry_at.as_ref().map(|r| (r.1 * 2).min(BACKOFF_MAX)).unwrap_or(BACKOFF_MIN);
                    slot.retry_at = Some((Instant::now() + backoff, backoff, e.clone()));
                    return Attempt { result: Err(e), server };
                }
            }
        }
        let conn = slot.conn.as_mut().expect("connected above");
        let result = op(conn).await;
        if result.is_err() {
            // A timed-out request leaves its answer in the stream: the connection is unusable.
            slot.conn = None;
        }
        Attempt { result, server }
    }

    /// How many of the acknowledged write keys `1..=max_seq` the node still has.
    pub(crate) async fn present_writes(
        &self,
        node: usize,
        keys: &TrialKeys,
        max_seq: u64,
    ) -> Result<(String, SeqSet), ProbeError> {
        let n = &self.nodes[node];
        // A get of 100 keys per round trip: 30 s, and a further second per 10 000 writes.
        let deadline = Instant::now() + Duration::from_secs(30 + max_seq / 10_000);
        let mut conn = Conn::connect(&n.addr, Instant::now() + self.limit).await?;
        let mut present = SeqSet::default();
        for first in (1..=max_seq).step_by(100) {
            // One batch of key names at a time: a long trial has millions.
            let batch: Vec<String> = (first..=max_seq.min(first + 99)).map(|s| write_key(keys, s)).collect();
            let refs: Vec<&[u8]> = batch.iter().map(|k| k.as_bytes()).collect();
            for item in conn.get_many(&refs, deadline).await? {
                if let Some(seq) = std::str::from_utf8(&item.value).ok().and_then(|v| v.parse().ok()) {
                    present.insert(seq);
                }
            }
        }
        Ok((n.addr.clone(), present))
    }

    /// Stores `count` keys of known value on every node; returns how many per node.
    pub async fn seed(&self, trial: u32, count: u64, ttl: Duration) -> Vec<Result<u64, ProbeError>> {
        let mut out = Vec::new();
        for n in &self.nodes {
            out.push(self.seed_node(n, trial, count, ttl).await);
        }
        out
    }

    async fn seed_node(&self, n: &MemcachedNode, trial: u32, count: u64, ttl: Duration) -> Result<u64, ProbeError> {
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut conn = Conn::connect(&n.addr, Instant::now() + self.limit).await?;
        for k in 0..count {
            conn.set(&seed_item(&n.tag, trial, k), ttl, deadline).await?;
        }
        Ok(count)
    }

    /// How many seeded keys survived, byte-identical, per node.
    pub(crate) async fn seeds_surviving(&self, trial: u32, count: u64) -> Vec<Result<u64, ProbeError>> {
        let mut out = Vec::new();
        for n in &self.nodes {
            out.push(self.surviving_on(n, trial, count).await);
        }
        out
    }

    async fn surviving_on(&self, n: &MemcachedNode, trial: u32, count: u64) -> Result<u64, ProbeError> {
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut conn = Conn::connect(&n.addr, Instant::now() + self.limit).await?;
        let expected: Vec<Item> = (0..count).map(|k| seed_item(&n.tag, trial, k)).collect();
        let mut surviving = 0;
        for chunk in expected.chunks(100) {
            let refs: Vec<&[u8]> = chunk.iter().map(|i| i.key.as_slice()).collect();
            let found = conn.get_many(&refs, deadline).await?;
            surviving += found.iter().filter(|f| chunk.iter().any(|e| e == *f)).count() as u64;
        }
        Ok(surviving)
    }
}

fn write_key(keys: &TrialKeys, seq: u64) -> String {
    format!("{}:{seq}", keys.log)
}

/// Seed key `k` of a node: a known value, different for every key.
pub(crate) fn seed_item(tag: &str, trial: u32, k: u64) -> Item {
    Item {
        key: format!("{}{{{tag}}}:t{trial}:seed:{k}", super::keys::NAMESPACE).into_bytes(),
        flags: (k % 65536) as u32,
        value: format!("seed-{tag}-{k}-{}", k.wrapping_mul(2654435761)).into_bytes(),
    }
}

impl Prober for MemcachedProber {
    async fn write(self: Arc<Self>, shard: usize, keys: Arc<TrialKeys>, seq: u64, deadline: Instant) -> Attempt {
        let ttl = Duration::from_millis(keys.ttl_ms);
        self.on_conn(shard, Stream::Write, deadline, move |conn| {
            Box::pin(async move {
                let value = seq.to_string().into_bytes();
                conn.set(
                    &Item { key: write_key(&keys, seq).into_bytes(), flags: 0, value: value.clone() },
                    ttl,
                    deadline,
                )
                .await?;
                conn.set(&Item { key: keys.sentinel.clone().into_bytes(), flags: 0, value }, ttl, deadline).await?;
                Ok(None)
            })
        })
        .await
    }

    async fn read(self: Arc<Self>, shard: usize, keys: Arc<TrialKeys>, deadline: Instant) -> Attempt {
        self.on_conn(shard, Stream::Read, deadline, move |conn| {
            Box::pin(async move {
                let item = conn.get(keys.sentinel.as_bytes(), deadline).await?;
                let value = item.and_then(|i| std::str::from_utf8(&i.value).ok()?.parse().ok()).unwrap_or(0);
                Ok(Some(value))
            })
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn seed_keys_are_in_failprobes_namespace_and_distinct() {
        let (a, b) = (super::seed_item("run1.0", 3, 7), super::seed_item("run1.0", 3, 8));
        assert!(a.key.starts_with(b"failprobe:{run1.0}:t3:seed:"));
        assert_ne!((a.key, a.value), (b.key, b.value));
    }
}
