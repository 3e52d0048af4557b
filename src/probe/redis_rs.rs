//! The `redis-rs` profile: the `redis` crate's own clients with their default settings, as a
//! Rust application uses them.
//! - `redis://`, `rediss://`: a `ConnectionManager` on the target's address. It reconnects (to
//!   that address, DNS resolved again) when its connection drops, not on an error reply:
//!   READONLY leaves it where it is.
//! - Sentinel: the crate's `SentinelClient` names the primary once, at start-up, and a
//!   `ConnectionManager` keeps to that address: the crate asks Sentinel again only when the
//!   application builds a new client.
//! - Cluster: the async `ClusterClient` connection, which discovers the shards, follows MOVED
//!   and refreshes its slot map itself.

use super::keys::TrialKeys;
use super::redis::{read_probe, send_write};
use super::{Attempt, Prober};
use crate::target::error::{classify, ProbeError};
use crate::target::{Discovery, Target};
use redis::aio::{ConnectionLike, ConnectionManager};
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, Pipeline, RedisFuture, Value};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::{timeout, timeout_at, Instant};

/// The crate's client for the target's kind; both reconnect on their own.
#[derive(Clone)]
enum Library {
    Manager(ConnectionManager),
    Cluster(ClusterConnection),
}

pub(crate) struct RedisRsClient {
    connection: Library,
    /// What the samples name as the server: the address the crate was given.
    server: String,
}

impl RedisRsClient {
    /// Connects the way an application would, from the target's settings.
    pub(crate) async fn start(target: &Target, limit: Duration) -> Result<Arc<Self>, ProbeError> {
        let open = async {
            Ok::<_, redis::RedisError>(match &target.discovery {
                Discovery::Cluster { seeds } => {
                    let connection = target.library_cluster_client()?.get_async_connection().await?;
                    (Library::Cluster(connection), format!("cluster via {}", join(seeds)))
                }
                Discovery::Sentinel { .. } => {
                    let client = target.library_sentinel_primary().await?;
                    let server = client.get_connection_info().addr().to_string();
                    (Library::Manager(ConnectionManager::new(client).await?), server)
                }
                Discovery::Direct { host, port } => {
                    let client = target.node_client(host, *port)?;
                    (Library::Manager(ConnectionManager::new(client).await?), format!("{host}:{port}"))
                }
                Discovery::Memcache { .. } => {
                    return Err(redis::RedisError::from((
                        redis::ErrorKind::InvalidClientConfig,
                        "the redis-rs client profile is for Redis targets",
                    )))
                }
                Discovery::Nodes { .. } => {
                    return Err(redis::RedisError::from((
                        redis::ErrorKind::InvalidClientConfig,
                        "the redis-rs client profile needs one address, Sentinel or a cluster (the crate has no static primary/replica client)",
                    )))
                }
            })
        };
        let (connection, server) = timeout(limit, open)
            .await
            .map_err(|_| ProbeError::timeout("redis-rs connect"))?
            .map_err(|e| classify(&e))?;
        Ok(Arc::new(Self { connection, server }))
    }

    fn attempt<T>(&self, result: Option<redis::RedisResult<T>>, op: &str) -> Result<T, ProbeError> {
        match result {
            None => Err(ProbeError::timeout(op)),
            Some(r) => r.map_err(|e| classify(&e)),
        }
    }
}

fn join(nodes: &[(String, u16)]) -> String {
    nodes.iter().map(|(h, p)| format!("{h}:{p}")).collect::<Vec<_>>().join(",")
}

/// Requests go to whichever client the target's kind has.
impl ConnectionLike for Library {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Library::Manager(c) => c.req_packed_command(cmd),
            Library::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Library::Manager(c) => c.req_packed_commands(pipeline, offset, count),
            Library::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Library::Manager(c) => c.get_db(),
            Library::Cluster(c) => c.get_db(),
        }
    }
}

impl Prober for RedisRsClient {
    async fn write(self: Arc<Self>, _shard: usize, keys: Arc<TrialKeys>, seq: u64, deadline: Instant) -> Attempt {
        let mut conn = self.connection.clone();
        let done = timeout_at(deadline, send_write(&mut conn, &keys, seq)).await.ok();
        let result = self.attempt(done, "write probe").map(|_| None);
        Attempt { result, server: Some(self.server.clone()) }
    }

    async fn read(self: Arc<Self>, _shard: usize, keys: Arc<TrialKeys>, deadline: Instant) -> Attempt {
        let mut conn = self.connection.clone();
        let done = timeout_at(deadline, read_probe(&keys).query_async::<Option<u64>>(&mut conn)).await.ok();
        let result = self.attempt(done, "read probe").map(|v| Some(v.unwrap_or(0)));
        Attempt { result, server: Some(self.server.clone()) }
    }
}
