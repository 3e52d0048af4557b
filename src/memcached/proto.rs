//! The memcached text protocol, just what failprobe needs: set, get, version and
//! `lru_crawler metadump all`. One request at a time per connection, each under a deadline.
//!
//! Why not the `memcache` crate: it is synchronous, and its r2d2 pool validates every checkout
//! with an extra round trip and waits up to 30 s for a connection by default, so a probe due
//! every 10 ms with a 250 ms deadline would either double its latency or tie up a thread per
//! probe for seconds while a node restarts. On tokio a deadline is simply a timeout.

use crate::sample::ErrorClass;
use crate::target::error::ProbeError;
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
        _ => crate::target::error::class_from_text(&e.to_string()).unwrap_or(ErrorClass::Reset),
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

    /// One reply line as bytes (keys are bytes, not UTF-8), at most `MAX_LINE` long: a server
    /// that never ends its line cannot make failprobe buffer without bound.
    async fn line_bytes(&mut self, deadline: Instant) -> Result<Vec<u8>, ProbeError> {
        let mut line = Vec::new();
        let limited = (&mut self.stream).take(MAX_LINE as u64 + 1);
        let n = within(deadline, "read", read_until_newline(limited, &mut line)).await?;
        if n == 0 {
            return Err(ProbeError::new(ErrorClass::Reset, "connection closed by the server"));
        }
        if !line.ends_with(b"\n") {
            return Err(if line.len() > MAX_LINE {
                ProbeError::new(ErrorClass::Other, format!("memcached sent a line longer than {MAX_LINE} bytes"))
            } else {
                ProbeError::new(ErrorClass::Reset, "connection closed in the middle of a reply")
            });
        }
        while line.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
            line.pop();
        }
        Ok(line)
    }

    async fn line(&mut self, deadline: Instant) -> Result<String, ProbeError> {
        Ok(String::from_utf8_lossy(&self.line_bytes(deadline).await?).into_owned())
    }

    async fn send(&mut self, bytes: &[u8], deadline: Instant) -> Result<(), ProbeError> {
        within(deadline, "write", self.stream.get_mut().write_all(bytes)).await
    }

    /// `set`; `ttl` 0 means no expiry.
    pub async fn set(&mut self, item: &Item, ttl: Duration, deadline: Instant) -> Result<(), ProbeError> {
        match self.store("set", item, exptime(ttl), deadline).await? {
            true => Ok(()),
            false => Err(server_error("NOT_STORED")),
        }
    }

    /// `set`, or `add` (stores only when the key is absent), with a raw exptime (see `exptime`):
    /// `Ok(true)` STORED, `Ok(false)` NOT_STORED (with `add`: the key exists, left as it is).
    pub async fn store(&mut self, cmd: &str, item: &Item, exptime: u64, deadline: Instant) -> Result<bool, ProbeError> {
        check_key(&item.key)?;
        let mut req = Vec::with_capacity(item.key.len() + item.value.len() + 40);
        req.extend_from_slice(cmd.as_bytes());
        req.push(b' ');
        req.extend_from_slice(&item.key);
        req.extend_from_slice(format!(" {} {exptime} {}\r\n", item.flags, item.value.len()).as_bytes());
        req.extend_from_slice(&item.value);
        req.extend_from_slice(b"\r\n");
        self.send(&req, deadline).await?;
        match self.line(deadline).await?.as_str() {
            "STORED" => Ok(true),
            "NOT_STORED" => Ok(false),
            other => Err(server_error(other)),
        }
    }

    /// `get` of several keys; returns the items found.
    pub(crate) async fn get_many(&mut self, keys: &[&[u8]], deadline: Instant) -> Result<Vec<Item>, ProbeError> {
        let mut req = b"get".to_vec();
        for k in keys {
            check_key(k)?;
            req.push(b' ');
            req.extend_from_slice(k);
        }
        req.extend_from_slice(b"\r\n");
        self.send(&req, deadline).await?;
        let mut items = Vec::new();
        loop {
            let line = self.line_bytes(deadline).await?;
            if line == b"END" {
                return Ok(items);
            }
            let mut parts = line.split(|b| *b == b' ');
            let (Some(b"VALUE"), Some(key), Some(flags), Some(len)) =
                (parts.next(), parts.next(), parts.next(), parts.next())
            else {
                return Err(server_error(&String::from_utf8_lossy(&line)));
            };
            let text = |b: &[u8]| std::str::from_utf8(b).ok().map(str::to_string);
            let flags = text(flags).and_then(|t| t.parse::<u32>().ok());
            let len = text(len).and_then(|t| t.parse::<u64>().ok());
            // At most one VALUE per key asked: a server that sends more is not memcached.
            let (Some(flags), Some(len), true) = (flags, len, items.len() < keys.len()) else {
                return Err(server_error(&String::from_utf8_lossy(&line)));
            };
            if len > MAX_VALUE as u64 {
                return Err(ProbeError::new(
                    ErrorClass::Other,
                    format!("memcached announced a {len}-byte value (more than failprobe reads: {MAX_VALUE})"),
                ));
            }
            // Read as it arrives: an announced length allocates nothing before the bytes come.
            let mut value = Vec::new();
            let body = (&mut self.stream).take(len + 2);
            within(deadline, "read", read_all(body, &mut value)).await?;
            if value.len() as u64 != len + 2 || !value.ends_with(b"\r\n") {
                return Err(ProbeError::new(ErrorClass::Reset, "connection closed in the middle of a value"));
            }
            value.truncate(len as usize);
            items.push(Item { key: key.to_vec(), flags, value });
        }
    }

    pub async fn get(&mut self, key: &[u8], deadline: Instant) -> Result<Option<Item>, ProbeError> {
        Ok(self.get_many(&[key], deadline).await?.into_iter().next())
    }

    /// `lru_crawler metadump all`: every key with its expiry (unix time, -1 = never), in memory.
    /// For a small node (tests, checks); a dump streams with `metadump_start` / `metadump_next`.
    /// `stats cachedump` misses keys (lab notes), so a dump is built on this.
    pub async fn metadump(&mut self, deadline: Instant) -> Result<Vec<(Vec<u8>, i64)>, ProbeError> {
        self.metadump_start(deadline).await?;
        let mut out = Vec::new();
        while let Some(entry) = self.metadump_next(deadline).await? {
            out.push(entry);
        }
        Ok(out)
    }

    pub(crate) async fn metadump_start(&mut self, deadline: Instant) -> Result<(), ProbeError> {
        self.send(b"lru_crawler metadump all\r\n", deadline).await
    }

    /// The next key of a metadump and its expiry; `None` at its end. One line at a time, so a
    /// node with millions of keys never has its key list held in memory.
    pub(crate) async fn metadump_next(&mut self, deadline: Instant) -> Result<Option<(Vec<u8>, i64)>, ProbeError> {
        loop {
            let line = self.line(deadline).await?;
            if line == "END" {
                return Ok(None);
            }
            if line.starts_with("ERROR") || line.starts_with("BUSY") || line.starts_with("CLIENT_ERROR") {
                return Err(server_error(&line));
            }
            let field = |name: &str| line.split(' ').find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='));
            if let Some(key) = field("key") {
                return Ok(Some((url_decode(key), field("exp").and_then(|e| e.parse().ok()).unwrap_or(-1))));
            }
        }
    }
}

impl Conn {
    /// `version`: the server's version (`1.6.21`), for the run's record of what it measured.
    pub(crate) async fn version(&mut self, deadline: Instant) -> Result<String, ProbeError> {
        self.send(b"version\r\n", deadline).await?;
        let line = self.line(deadline).await?;
        match line.strip_prefix("VERSION ") {
            Some(version) => Ok(version.trim().to_string()),
            None => Err(ProbeError::new(ErrorClass::Other, format!("`version` answered {line}"))),
        }
    }

    /// ElastiCache's configuration endpoint: `config get cluster` lists the nodes
    /// (`host|ip|port` separated by spaces). A plain memcached answers ERROR: `None`.
    pub(crate) async fn config_get_cluster(
        &mut self,
        deadline: Instant,
    ) -> Result<Option<Vec<(String, u16)>>, ProbeError> {
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
pub(crate) fn parse_cluster_config(line: &str) -> Vec<(String, u16)> {
    line.split_whitespace()
        .filter_map(|entry| {
            let mut f = entry.split('|');
            let (host, ip, port) = (f.next()?, f.next().unwrap_or(""), f.next()?.parse().ok()?);
            Some((if host.is_empty() { ip } else { host }.to_string(), port))
        })
        .collect()
}

/// The longest reply line failprobe reads (metadump and VALUE lines are well under 1 kB).
const MAX_LINE: usize = 64 * 1024;
/// The largest value failprobe reads back (memcached's item size limit is 1 MB by default and
/// 1 GB at most; anything announced above this is refused, not allocated).
pub(crate) const MAX_VALUE: usize = 128 << 20;
/// memcached reads an exptime above 30 days as an absolute unix time.
pub(crate) const RELATIVE_EXPTIME_MAX: u64 = 30 * 24 * 3600;

async fn read_until_newline(mut r: impl tokio::io::AsyncBufRead + Unpin, buf: &mut Vec<u8>) -> std::io::Result<usize> {
    r.read_until(b'\n', buf).await
}

async fn read_all(mut r: impl tokio::io::AsyncRead + Unpin, buf: &mut Vec<u8>) -> std::io::Result<usize> {
    r.read_to_end(buf).await
}

/// The exptime for a TTL: 0 never expires, up to 30 days relative seconds, beyond that the
/// absolute unix time (sent relative, memcached would read it as a date in 1970).
pub fn exptime(ttl: Duration) -> u64 {
    let secs = ttl.as_secs() + u64::from(ttl.subsec_nanos() > 0);
    if secs <= RELATIVE_EXPTIME_MAX {
        return secs;
    }
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    now + secs
}

/// A key the text protocol can carry: 1 to 250 bytes, no whitespace or control characters
/// (anything else would end the command early and let the rest be read as another command).
pub(crate) fn valid_key(key: &[u8]) -> bool {
    !key.is_empty() && key.len() <= 250 && key.iter().all(|b| b.is_ascii_graphic() || *b >= 0x80)
}

fn check_key(key: &[u8]) -> Result<(), ProbeError> {
    if valid_key(key) {
        return Ok(());
    }
    Err(ProbeError::new(ErrorClass::Other, "a key with whitespace, control characters or over 250 bytes was refused"))
}

fn server_error(line: &str) -> ProbeError {
    ProbeError::new(ErrorClass::Other, format!("memcached answered `{line}`"))
}

/// metadump URL-encodes keys (`%3A` for `:`).
pub(crate) fn url_decode(s: &str) -> Vec<u8> {
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
    fn keys_and_expiry_follow_the_text_protocol() {
        assert!(super::valid_key(b"failprobe:{ab}:seed:1") && super::valid_key(&[0xff, 0xfe, b'k']));
        for bad in [&b""[..], b"a b", b"a\r\nflush_all", b"tab\there", &[0x7f], &[b'k'; 251]] {
            assert!(!super::valid_key(bad), "{bad:?}");
        }
        assert_eq!(super::exptime(std::time::Duration::ZERO), 0);
        assert_eq!(super::exptime(std::time::Duration::from_millis(500)), 1, "under a second is not 'never'");
        assert_eq!(super::exptime(std::time::Duration::from_secs(3600)), 3600);
        let forty_days = super::exptime(std::time::Duration::from_secs(40 * 86400));
        assert!(forty_days > 1_700_000_000, "absolute above 30 days: {forty_days}");
    }

    #[test]
    fn decodes_metadump_keys() {
        assert_eq!(super::url_decode("failprobe%3A%7Bab%7D%3Aseed%3A1"), b"failprobe:{ab}:seed:1".to_vec());
        assert_eq!(super::url_decode("plain"), b"plain".to_vec());
        assert_eq!(super::url_decode("bad%zz"), b"bad%zz".to_vec());
    }
}
