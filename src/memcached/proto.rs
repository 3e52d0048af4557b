//! The memcached text protocol, just what failprobe needs: set, get, version and
//! `lru_crawler metadump all`. One request at a time per connection, each under a deadline.
//!
//! Why not the `memcache` crate: it is synchronous, and its r2d2 pool validates every checkout
//! with an extra round trip and waits up to 30 s for a connection by default, so a probe due
//! every 10 ms with a 250 ms deadline would either double its latency or tie up a thread per
//! probe for seconds while a node restarts. On tokio a deadline is simply a timeout.

use crate::probe::error::ProbeError;
use crate::record::ErrorClass;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::time::{timeout_at, Instant};

pub struct Conn {
    stream: BufReader<TcpStream>,
    pub addr: String,
}

/// One stored item, byte-exact.
#[derive(Clone, Debug, PartialEq)]
pub struct Item {
    pub key: Vec<u8>,
    pub flags: u32,
    pub value: Vec<u8>,
}

fn io_error(e: std::io::Error) -> ProbeError {
    let class = match e.kind() {
        std::io::ErrorKind::ConnectionRefused => ErrorClass::Refused,
        std::io::ErrorKind::TimedOut => ErrorClass::Timeout,
        _ => crate::probe::error::class_from_text(&e.to_string()).unwrap_or(ErrorClass::Reset),
    };
    ProbeError::new(class, e.to_string())
}

async fn within<T>(
    deadline: Instant,
    what: &str,
    f: impl std::future::Future<Output = std::io::Result<T>>,
) -> Result<T, ProbeError> {
    timeout_at(deadline, f).await.map_err(|_| ProbeError::timeout(what))?.map_err(io_error)
}

impl Conn {
    pub async fn connect(addr: &str, deadline: Instant) -> Result<Self, ProbeError> {
        let tcp = within(deadline, "connect", TcpStream::connect(addr)).await?;
        let _ = tcp.set_nodelay(true);
        Ok(Self { stream: BufReader::new(tcp), addr: addr.to_string() })
    }

    async fn line(&mut self, deadline: Instant) -> Result<String, ProbeError> {
        let mut line = String::new();
        let n = within(deadline, "read", self.stream.read_line(&mut line)).await?;
        if n == 0 {
            return Err(ProbeError::new(ErrorClass::Reset, "connection closed by the server"));
        }
        Ok(line.trim_end().to_string())
    }

    async fn send(&mut self, bytes: &[u8], deadline: Instant) -> Result<(), ProbeError> {
        within(deadline, "write", self.stream.get_mut().write_all(bytes)).await
    }

    /// `set`; `ttl` 0 means no expiry. Keys must be protocol-safe (no spaces or control bytes).
    pub async fn set(&mut self, item: &Item, ttl: Duration, deadline: Instant) -> Result<(), ProbeError> {
        let mut req = Vec::with_capacity(item.key.len() + item.value.len() + 40);
        req.extend_from_slice(b"set ");
        req.extend_from_slice(&item.key);
        req.extend_from_slice(format!(" {} {} {}\r\n", item.flags, ttl.as_secs(), item.value.len()).as_bytes());
        req.extend_from_slice(&item.value);
        req.extend_from_slice(b"\r\n");
        self.send(&req, deadline).await?;
        match self.line(deadline).await?.as_str() {
            "STORED" => Ok(()),
            other => Err(server_error(other)),
        }
    }

    /// `get` of several keys; returns the items found.
    pub async fn get_many(&mut self, keys: &[&[u8]], deadline: Instant) -> Result<Vec<Item>, ProbeError> {
        let mut req = b"get".to_vec();
        for k in keys {
            req.push(b' ');
            req.extend_from_slice(k);
        }
        req.extend_from_slice(b"\r\n");
        self.send(&req, deadline).await?;
        let mut items = Vec::new();
        loop {
            let line = self.line(deadline).await?;
            if line == "END" {
                return Ok(items);
            }
            let mut parts = line.split(' ');
            let (Some("VALUE"), Some(key), Some(flags), Some(len)) =
                (parts.next(), parts.next(), parts.next(), parts.next())
            else {
                return Err(server_error(&line));
            };
            let (flags, len): (u32, usize) = (flags.parse().unwrap_or(0), len.parse().unwrap_or(0));
            let mut value = vec![0; len + 2];
            within(deadline, "read", self.stream.read_exact(&mut value)).await?;
            value.truncate(len);
            items.push(Item { key: key.as_bytes().to_vec(), flags, value });
        }
    }

    pub async fn get(&mut self, key: &[u8], deadline: Instant) -> Result<Option<Item>, ProbeError> {
        Ok(self.get_many(&[key], deadline).await?.into_iter().next())
    }

    /// `lru_crawler metadump all`: every key with its expiry (unix time, -1 = never).
    /// `stats cachedump` misses keys (lab notes), so a dump is built on this.
    pub async fn metadump(&mut self, deadline: Instant) -> Result<Vec<(Vec<u8>, i64)>, ProbeError> {
        self.send(b"lru_crawler metadump all\r\n", deadline).await?;
        let mut out = Vec::new();
        loop {
            let line = self.line(deadline).await?;
            if line == "END" {
                return Ok(out);
            }
            if line.starts_with("ERROR") || line.starts_with("BUSY") || line.starts_with("CLIENT_ERROR") {
                return Err(server_error(&line));
            }
            let field = |name: &str| line.split(' ').find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='));
            if let Some(key) = field("key") {
                out.push((url_decode(key), field("exp").and_then(|e| e.parse().ok()).unwrap_or(-1)));
            }
        }
    }
}

impl Conn {
    /// ElastiCache's configuration endpoint: `config get cluster` lists the nodes
    /// (`host|ip|port` separated by spaces). A plain memcached answers ERROR: `None`.
    pub async fn config_get_cluster(&mut self, deadline: Instant) -> Result<Option<Vec<(String, u16)>>, ProbeError> {
        self.send(b"config get cluster\r\n", deadline).await?;
        let first = self.line(deadline).await?;
        if !first.starts_with("CONFIG cluster") {
            return Ok(None);
        }
        let _version = self.line(deadline).await?;
        let nodes_line = self.line(deadline).await?;
        loop {
            if self.line(deadline).await? == "END" {
                break;
            }
        }
        Ok(Some(parse_cluster_config(&nodes_line)))
    }
}

/// `host|ip|port host|ip|port`: the host name when there is one (what ElastiCache clients
/// use), else the IP.
pub fn parse_cluster_config(line: &str) -> Vec<(String, u16)> {
    line.split_whitespace()
        .filter_map(|entry| {
            let mut f = entry.split('|');
            let (host, ip, port) = (f.next()?, f.next().unwrap_or(""), f.next()?.parse().ok()?);
            Some((if host.is_empty() { ip } else { host }.to_string(), port))
        })
        .collect()
}

fn server_error(line: &str) -> ProbeError {
    ProbeError::new(ErrorClass::Other, format!("memcached answered `{line}`"))
}

/// metadump URL-encodes keys (`%3A` for `:`).
pub fn url_decode(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match (b[i], b.get(i + 1..i + 3)) {
            (b'%', Some(hex)) if u8::from_str_radix(std::str::from_utf8(hex).unwrap_or("zz"), 16).is_ok() => {
                out.push(u8::from_str_radix(std::str::from_utf8(hex).unwrap_or("0"), 16).unwrap_or(0));
                i += 3;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn parses_elasticache_node_lists() {
        let line = "my.0001.use1.cache.amazonaws.com|10.82.235.120|11211 |10.80.249.27|11212";
        assert_eq!(
            super::parse_cluster_config(line),
            vec![("my.0001.use1.cache.amazonaws.com".to_string(), 11211), ("10.80.249.27".to_string(), 11212)]
        );
    }

    #[test]
    fn decodes_metadump_keys() {
        assert_eq!(super::url_decode("failprobe%3A%7Bab%7D%3Aseed%3A1"), b"failprobe:{ab}:seed:1".to_vec());
        assert_eq!(super::url_decode("plain"), b"plain".to_vec());
        assert_eq!(super::url_decode("bad%zz"), b"bad%zz".to_vec());
    }
}
