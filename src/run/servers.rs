//! What a run measured: each server behind the target says, before the first trial, which
//! engine and version it runs, its role and the settings that shape a failover, for run.json,
//! summary.json and every report's header. A server that refuses (CONFIG is disabled on managed
//! services) or does not answer is recorded as unknown: reading never fails the run.

use super::touch::Touched;
use crate::sample::ServerMeta;
use crate::target::{connect_node, connect_sentinel, info_field, Discovery, Target};
use redis::aio::MultiplexedConnection;
use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::time::Duration;

/// A data node's settings that shape a failover: whether an acknowledged write is on disk,
/// and whether the primary refuses writes without replicas.
const DATA_SETTINGS: [&str; 3] = ["appendonly", "appendfsync", "min-replicas-to-write"];
/// A sentinel's, for the primary it watches (`SENTINEL MASTER`).
const SENTINEL_SETTINGS: [&str; 3] = ["down-after-milliseconds", "failover-timeout", "quorum"];
const UNKNOWN: &str = "unknown";

/// Every server `touched` lists, read at once, each step bounded by `limit`.
pub(super) async fn describe(target: &Target, touched: &Touched, limit: Duration) -> Vec<ServerMeta> {
    let reads = touched.nodes().map(|(role, host, port)| describe_one(target, role, host, port, limit));
    futures_util::future::join_all(reads).await
}

async fn describe_one(target: &Target, found_as: &str, host: &str, port: u16, limit: Duration) -> ServerMeta {
    let address = format!("{host}:{port}");
    let read = match (&target.discovery, found_as) {
        (Discovery::Memcache { .. }, _) => memcached(&address, limit).await,
        (Discovery::Sentinel { master, .. }, "sentinel") => sentinel(target, master, host, port, limit).await,
        _ => data_node(target, host, port, limit).await,
    };
    let meta = match read {
        Ok(meta) => ServerMeta { address, ..meta },
        Err(e) => ServerMeta {
            address,
            role: found_as.to_string(),
            server: UNKNOWN.into(),
            version: UNKNOWN.into(),
            settings: BTreeMap::new(),
            error: Some(e),
        },
    };
    bounded_texts(meta)
}

/// What a server said of itself goes into every header and file: printable, and short.
fn bounded_texts(mut meta: ServerMeta) -> ServerMeta {
    let short = |text: &str, max: usize| -> String { text.chars().filter(|c| !c.is_control()).take(max).collect() };
    for text in [&mut meta.role, &mut meta.server, &mut meta.version] {
        *text = short(text, 64);
    }
    for value in meta.settings.values_mut() {
        *value = short(value, 64);
    }
    if let Some(e) = meta.error.as_mut() {
        *e = short(e, 300);
    }
    meta
}

async fn data_node(target: &Target, host: &str, port: u16, limit: Duration) -> Result<ServerMeta, String> {
    let (mut conn, _) = connect_node(target, host, port, limit).await.map_err(|e| e.to_string())?;
    let mut meta = identify(&mut conn, limit).await?;
    let mut keys = DATA_SETTINGS.to_vec();
    if target.is_cluster() {
        keys.push("cluster-node-timeout");
    }
    let mut config = redis::pipe();
    for key in &keys {
        config.cmd("CONFIG").arg("GET").arg(*key);
    }
    // One CONFIG GET per key: Redis before 7.0 takes a single pattern.
    let answers: Result<Vec<HashMap<String, String>>, String> = bounded(limit, config.query_async(&mut conn)).await;
    let answers = answers.unwrap_or_default();
    for key in keys {
        let value = answers.iter().find_map(|a| a.get(key).cloned()).unwrap_or_else(|| UNKNOWN.into());
        meta.settings.insert(key.to_string(), value);
    }
    Ok(meta)
}

async fn sentinel(target: &Target, master: &str, host: &str, port: u16, limit: Duration) -> Result<ServerMeta, String> {
    let mut conn = connect_sentinel(target, host, port, limit).await.map_err(|e| e.to_string())?;
    let mut meta = identify(&mut conn, limit).await?;
    let watched: HashMap<String, String> =
        bounded(limit, redis::cmd("SENTINEL").arg("MASTER").arg(master).query_async(&mut conn))
            .await
            .unwrap_or_default();
    for key in SENTINEL_SETTINGS {
        meta.settings.insert(key.to_string(), watched.get(key).cloned().unwrap_or_else(|| UNKNOWN.into()));
    }
    Ok(meta)
}

/// ROLE and INFO server, in one round trip: the role as failprobe names it, the engine, its
/// version.
async fn identify(conn: &mut MultiplexedConnection, limit: Duration) -> Result<ServerMeta, String> {
    let (role, info): (redis::Value, String) =
        bounded(limit, redis::pipe().cmd("ROLE").cmd("INFO").arg("server").query_async(conn)).await?;
    let role = match role {
        redis::Value::Array(items) => items.into_iter().next().and_then(|v| redis::from_redis_value::<String>(v).ok()),
        _ => None,
    };
    let (server, version) = engine(&info);
    Ok(ServerMeta { role: role_name(role.as_deref().unwrap_or(UNKNOWN)), server, version, ..ServerMeta::default() })
}

fn role_name(role: &str) -> String {
    match role {
        "master" => "primary",
        "slave" => "replica",
        other => other,
    }
    .to_string()
}

/// From INFO server: Valkey names itself (`server_name:valkey`) and its own version
/// (`valkey_version`); its `redis_version` is the Redis it is compatible with (7.2.4).
fn engine(info: &str) -> (String, String) {
    let version = |key| info_field(info, key).filter(|v| !v.is_empty());
    match info_field(info, "server_name").as_deref() {
        Some("valkey") => {
            let v = version("valkey_version").or_else(|| version("redis_version"));
            ("valkey".into(), v.unwrap_or_else(|| UNKNOWN.into()))
        }
        Some(other) if !other.is_empty() => (other.into(), version("redis_version").unwrap_or_else(|| UNKNOWN.into())),
        _ => ("redis".into(), version("redis_version").unwrap_or_else(|| UNKNOWN.into())),
    }
}

async fn memcached(address: &str, limit: Duration) -> Result<ServerMeta, String> {
    let deadline = tokio::time::Instant::now() + limit;
    let mut conn = crate::memcached::proto::Conn::connect(address, deadline).await.map_err(|e| e.to_string())?;
    let version = conn.version(deadline).await.map_err(|e| e.to_string())?;
    Ok(ServerMeta { role: "node".into(), server: "memcached".into(), version, ..ServerMeta::default() })
}

async fn bounded<T>(limit: Duration, query: impl Future<Output = redis::RedisResult<T>>) -> Result<T, String> {
    match tokio::time::timeout(limit, query).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("timed out".to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valkey_is_named_by_its_own_version_not_its_redis_one() {
        let valkey = "# Server\r\nredis_version:7.2.4\r\nserver_name:valkey\r\nvalkey_version:9.1.2\r\n";
        assert_eq!(engine(valkey), ("valkey".into(), "9.1.2".into()));
        assert_eq!(engine("# Server\r\nredis_version:7.0.15\r\n"), ("redis".into(), "7.0.15".into()));
        assert_eq!(engine(""), ("redis".into(), "unknown".into()));
    }
}
