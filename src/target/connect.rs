//! Finding and connecting to the primary. Every connection is a fresh one (fresh DNS lookup,
//! fresh Sentinel answer), made under a deadline, and checked with `ROLE` before use.

use super::{Discovery, Target};
use crate::sample::ErrorClass;
use crate::target::error::{classify, ProbeError};
use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Client, Value};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::time::timeout;

#[derive(Clone, Debug, PartialEq)]
pub(crate) struct ServerInfo {
    /// `host:port` as connected (with the resolved address when the host is a name).
    pub addr: String,
    pub host: String,
    pub port: u16,
    pub role: String,
    pub run_id: Option<String>,
}

impl ServerInfo {
    pub(crate) fn is_primary(&self) -> bool {
        self.role == "master"
    }
}

/// Where the primary is right now, according to the target's discovery method.
pub(crate) async fn locate_primary(target: &Target, limit: Duration) -> Result<(String, u16), ProbeError> {
    match &target.discovery {
        Discovery::Direct { host, port } => Ok((host.clone(), *port)),
        Discovery::Sentinel { .. } => sentinel_primary(target, limit).await.map(|(h, p, _)| (h, p)),
        Discovery::Nodes { nodes } => primary_among(target, nodes, limit).await,
        Discovery::Memcache { .. } => {
            Err(ProbeError::new(ErrorClass::Other, "a memcache:// target has no primary".to_string()))
        }
        Discovery::Cluster { seeds } => {
            // The primary of the first shard: enough for preflight.
            let shards = super::cluster::cluster_shards(target, seeds, limit).await?;
            let p = &shards[0].primary;
            Ok((p.host.clone(), p.port))
        }
    }
}

/// The first of `nodes` that answers ROLE as the primary.
async fn primary_among(target: &Target, nodes: &[(String, u16)], limit: Duration) -> Result<(String, u16), ProbeError> {
    let mut seen = Vec::new();
    for (host, port) in nodes {
        let role = async {
            let (mut conn, _) = connect_node(target, host, *port, limit).await?;
            query_role(&mut conn, limit).await.map(|(role, _)| role)
        };
        match role.await {
            Ok(role) if role == "master" => return Ok((host.clone(), *port)),
            Ok(role) => seen.push(format!("{host}:{port} {role}")),
            Err(e) => seen.push(format!("{host}:{port} {}", e.class)),
        }
    }
    Err(ProbeError::new(ErrorClass::Readonly, format!("no node answers as the primary ({})", seen.join(", "))))
}

/// Asks the sentinels in order; the first that answers wins. Returns the sentinel that answered.
pub async fn sentinel_primary(target: &Target, limit: Duration) -> Result<(String, u16, String), ProbeError> {
    let Discovery::Sentinel { sentinels, master } = &target.discovery else {
        return Err(ProbeError::new(ErrorClass::Other, "not a sentinel target"));
    };
    let mut last = ProbeError::new(ErrorClass::Other, "no sentinel configured");
    for (host, port) in sentinels {
        let answer = async {
            let (mut conn, _) = connect_raw(target, target.sentinel_client(host, *port), limit).await?;
            let reply: Option<(String, u16)> = timeout(
                limit,
                redis::cmd("SENTINEL").arg("get-master-addr-by-name").arg(master).query_async(&mut conn),
            )
            .await
            .map_err(|_| ProbeError::timeout("sentinel query"))?
            .map_err(|e| classify(&e))?;
            reply.ok_or_else(|| ProbeError::new(ErrorClass::Other, format!("sentinel does not know master `{master}`")))
        };
        match answer.await {
            Ok((h, p)) => return Ok((h, p, format!("{host}:{port}"))),
            Err(e) => last = e,
        }
    }
    Err(ProbeError::new(last.class, format!("no sentinel answered: {}", last.text)))
}

/// Connects to `host:port` with the target's TLS and auth settings, under `limit`; also says
/// where it connected (`host:port (ip)` for a name).
pub(crate) async fn connect_node(
    target: &Target,
    host: &str,
    port: u16,
    limit: Duration,
) -> Result<(MultiplexedConnection, String), ProbeError> {
    let (conn, at) = connect_raw(target, target.node_client(host, port), limit).await?;
    let addr = match host.parse::<std::net::IpAddr>() {
        Ok(_) => format!("{host}:{port}"),
        Err(_) => format!("{host}:{port} ({})", at.ip()),
    };
    Ok((conn, addr))
}

/// A sentinel, with the sentinel's own credentials: what `run` asks it about the primary it
/// watches.
pub(crate) async fn connect_sentinel(
    target: &Target,
    host: &str,
    port: u16,
    limit: Duration,
) -> Result<MultiplexedConnection, ProbeError> {
    Ok(connect_raw(target, target.sentinel_client(host, port), limit).await?.0)
}

/// Connects on failprobe's own socket (and TLS stream, for rediss://), wrapped in the guard
/// that bounds what a server can make us buffer, and hands it to the client library.
async fn connect_raw(
    target: &Target,
    client: Result<Client, redis::RedisError>,
    limit: Duration,
) -> Result<(MultiplexedConnection, SocketAddr), ProbeError> {
    let client = client.map_err(|e| classify(&e))?;
    // Our own deadlines govern every request; the connection itself imposes none.
    let config = AsyncConnectionConfig::new().set_connection_timeout(Some(limit)).set_response_timeout(None);
    let info = client.get_connection_info();
    let setup = async {
        let (stream, at) = open_guarded(target, info, limit).await?;
        let (conn, driver) = MultiplexedConnection::new_with_config(info.redis_settings(), stream, config)
            .await
            .map_err(|e| classify(&e))?;
        tokio::spawn(driver);
        Ok((conn, at))
    };
    timeout(limit, setup).await.map_err(|_| ProbeError::timeout("connect"))?
}

/// A pub/sub connection (Sentinel's `+switch-master`) over the same guarded stream.
pub(crate) async fn connect_pubsub(
    target: &Target,
    client: Result<Client, redis::RedisError>,
    limit: Duration,
) -> Result<redis::aio::PubSub, ProbeError> {
    let client = client.map_err(|e| classify(&e))?;
    let info = client.get_connection_info();
    let setup = async {
        let (stream, _) = open_guarded(target, info, limit).await?;
        redis::aio::PubSub::new(info.redis_settings(), stream).await.map_err(|e| classify(&e))
    };
    timeout(limit, setup).await.map_err(|_| ProbeError::timeout("connect"))?
}

trait Stream: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Stream for T {}

/// The name looked up through the target's resolver (`--dns-server`, `dns-cache=D`), TCP to
/// the first address that answers, then TLS (named by host) when the target is rediss://, then
/// the guard.
async fn open_guarded(
    target: &Target,
    info: &redis::ConnectionInfo,
    limit: Duration,
) -> Result<(super::guard::Guarded<Box<dyn Stream>>, SocketAddr), ProbeError> {
    let (host, port) = match info.addr() {
        redis::ConnectionAddr::Tcp(host, port) | redis::ConnectionAddr::TcpTls { host, port, .. } => (host, *port),
        other => return Err(ProbeError::new(ErrorClass::Other, format!("unsupported address {other}"))),
    };
    let mut last = None;
    let mut connected = None;
    for at in target.dns.resolve(host, port, limit).await? {
        match tokio::net::TcpStream::connect(at).await {
            Ok(tcp) => {
                connected = Some((tcp, at));
                break;
            }
            Err(e) => last = Some(e),
        }
    }
    let (tcp, at) = match (connected, last) {
        (Some(c), _) => c,
        (None, Some(e)) => return Err(classify(&e.into())),
        (None, None) => return Err(ProbeError::new(ErrorClass::Dns, format!("DNS lookup of {host}: no address"))),
    };
    let _ = tcp.set_nodelay(true);
    let stream: Box<dyn Stream> = match target.tls_config() {
        None => Box::new(tcp),
        Some(tls) => {
            let tls_error = |e: String| ProbeError::new(ErrorClass::Tls, format!("tls with {host}:{port}: {e}"));
            let name = super::tls::server_name(host).map_err(tls_error)?;
            let connector = tokio_rustls::TlsConnector::from(tls.clone());
            Box::new(connector.connect(name, tcp).await.map_err(|e| tls_error(e.to_string()))?)
        }
    };
    Ok((super::guard::Guarded::new(stream), at))
}

/// `ROLE` and the server's run id, in one round trip.
pub(crate) async fn query_role(
    conn: &mut MultiplexedConnection,
    limit: Duration,
) -> Result<(String, Option<String>), ProbeError> {
    let (role, info): (Value, String) =
        timeout(limit, redis::pipe().cmd("ROLE").cmd("INFO").arg("server").query_async(conn))
            .await
            .map_err(|_| ProbeError::timeout("ROLE"))?
            .map_err(|e| classify(&e))?;
    let role = match role {
        Value::Array(items) => items.into_iter().next().and_then(|v| redis::from_redis_value::<String>(v).ok()),
        _ => None,
    }
    .unwrap_or_else(|| "unknown".to_string());
    let run_id = info_field(&info, "run_id");
    Ok((role, run_id))
}

pub fn info_field(info: &str, key: &str) -> Option<String> {
    info.lines().find_map(|l| l.strip_prefix(key)?.strip_prefix(':').map(|v| v.trim().to_string()))
}

/// Locates the primary, connects, and checks it really is a primary: a demoted node that still
/// accepts connections must not be probed as if nothing happened.
pub(crate) async fn connect_primary(
    target: &Target,
    limit: Duration,
) -> Result<(MultiplexedConnection, ServerInfo), ProbeError> {
    let (host, port) = locate_primary(target, limit).await?;
    let (mut conn, addr) = connect_node(target, &host, port, limit).await?;
    let (role, run_id) = query_role(&mut conn, limit).await?;
    let info = ServerInfo { addr, host, port, role, run_id };
    if !info.is_primary() {
        return Err(ProbeError::new(
            ErrorClass::Readonly,
            format!("{} answers as {}, not as the primary", info.addr, info.role),
        ));
    }
    Ok((conn, info))
}
