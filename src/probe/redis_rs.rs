//! The `redis-rs` profile: the `redis` crate's own reconnecting client (`ConnectionManager`) with
//! its default settings, as a Rust application uses it. It reconnects, to the address it was
//! given (DNS resolved again), when its connection drops, and not on an error reply: READONLY
//! leaves it where it is. Standalone targets (a primary or an endpoint).

use super::keys::TrialKeys;
use super::redis::{read_probe, write_probe};
use super::{Attempt, Prober};
use crate::sample::ErrorClass;
use crate::target::error::{classify, ProbeError};
use crate::target::{Discovery, Target};
use redis::aio::ConnectionManager;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::{timeout, timeout_at, Instant};

pub(crate) struct RedisRsClient {
    manager: ConnectionManager,
    server: String,
}

impl RedisRsClient {
    /// Connects the way an application would: `ConnectionManager::new(Client::open(url))`.
    pub(crate) async fn start(target: &Target, limit: Duration) -> Result<Arc<Self>, ProbeError> {
        let Discovery::Direct { host, port } = &target.discovery else {
            return Err(ProbeError::new(
                ErrorClass::Other,
                "the redis-rs client profile is for redis:// and rediss:// targets (a primary or an endpoint)",
            ));
        };
        let client = target.node_client(host, *port).map_err(|e| classify(&e))?;
        let manager = timeout(limit, ConnectionManager::new(client))
            .await
            .map_err(|_| ProbeError::timeout("redis-rs connect"))?
            .map_err(|e| classify(&e))?;
        Ok(Arc::new(Self { manager, server: format!("{host}:{port}") }))
    }

    fn attempt<T>(&self, result: Option<redis::RedisResult<T>>, op: &str) -> Result<T, ProbeError> {
        match result {
            None => Err(ProbeError::timeout(op)),
            Some(r) => r.map_err(|e| classify(&e)),
        }
    }
}

impl Prober for RedisRsClient {
    async fn write(self: Arc<Self>, _shard: usize, keys: Arc<TrialKeys>, seq: u64, deadline: Instant) -> Attempt {
        let mut conn = self.manager.clone();
        let done = timeout_at(deadline, write_probe(&keys, seq).query_async::<()>(&mut conn)).await.ok();
        let result = self.attempt(done, "write probe").map(|_| None);
        Attempt { result, server: Some(self.server.clone()) }
    }

    async fn read(self: Arc<Self>, _shard: usize, keys: Arc<TrialKeys>, deadline: Instant) -> Attempt {
        let mut conn = self.manager.clone();
        let done = timeout_at(deadline, read_probe(&keys).query_async::<Option<u64>>(&mut conn)).await.ok();
        let result = self.attempt(done, "read probe").map(|v| Some(v.unwrap_or(0)));
        Attempt { result, server: Some(self.server.clone()) }
    }
}
