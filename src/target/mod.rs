//! Targets: parse and redact URLs, find the primary (directly or through Sentinel), connect.

pub mod cluster;
mod connect;
pub(crate) mod dns;
pub mod error;
mod guard;
mod library;
mod tls;
pub(crate) use connect::connect_pubsub;
pub(crate) use connect::{connect_node, connect_primary, connect_sentinel, locate_primary, query_role, ServerInfo};
pub use connect::{info_field, sentinel_primary};

use crate::error::invalid;
use anyhow::Result;
use redis::{Client, ConnectionInfo, IntoConnectionInfo, TlsCertificates};

#[derive(Clone, Debug, PartialEq)]
pub enum Discovery {
    /// A fixed `host:port` (re-resolved through DNS on every reconnect).
    Direct { host: String, port: u16 },
    /// Ask these sentinels for the primary of `master`.
    Sentinel { sentinels: Vec<(String, u16)>, master: String },
    /// A Redis Cluster (or ElastiCache configuration endpoint): shards discovered from these seeds.
    Cluster { seeds: Vec<(String, u16)> },
    /// Memcached nodes, each probed on its own.
    Memcache { nodes: Vec<(String, u16)> },
    /// A primary and its replicas without Sentinel (`redis://a:1,b:2`): the primary is the node
    /// that answers ROLE as one, asked in order on every reconnect (a static master/replica
    /// setup, which a `failover` or `promote` moves).
    Nodes { nodes: Vec<(String, u16)> },
}

/// A target as a command uses it: parsed, the environment's settings added (`env`, read once
/// by the caller), its secrets registered so that no text shows them.
pub fn open(url: &str, env: &TargetEnv) -> Result<Target> {
    let target = Target::parse(url)?.with_env(env)?;
    for secret in target.secrets() {
        crate::secret::register(secret);
    }
    Ok(target)
}

/// What of failprobe's environment a target takes, read once by the caller
/// (`from_process`) rather than by every parse.
#[derive(Clone, Default)]
pub struct TargetEnv {
    /// `FAILPROBE_PASSWORD`, else `REDISCLI_AUTH`.
    pub password: Option<String>,
    /// `FAILPROBE_SENTINEL_PASSWORD`.
    pub sentinel_password: Option<String>,
    /// `FAILPROBE_TLS_CA_FILE`.
    pub tls_ca_file: Option<std::path::PathBuf>,
}

impl TargetEnv {
    pub fn from_process() -> Self {
        let var = |name: &str| std::env::var(name).ok();
        Self {
            password: var("FAILPROBE_PASSWORD").or_else(|| var("REDISCLI_AUTH")),
            sentinel_password: var("FAILPROBE_SENTINEL_PASSWORD"),
            tls_ca_file: std::env::var_os("FAILPROBE_TLS_CA_FILE").map(Into::into),
        }
    }
}

#[derive(Clone)]
pub struct Target {
    pub discovery: Discovery,
    pub tls: bool,
    pub insecure_tls: bool,
    pub username: Option<String>,
    password: Option<String>,
    sentinel_password: Option<String>,
    pub db: i64,
    /// PEM CA bundle from `FAILPROBE_TLS_CA_FILE`, trusted instead of the public roots.
    tls_ca: Option<Vec<u8>>,
    /// rediss://: the TLS configuration failprobe's own streams use (built once, checked at parse).
    tls_config: Option<std::sync::Arc<rustls::ClientConfig>>,
    redacted: String,
    /// How connections look names up: the system, `--dns-server`, a `dns-cache=D` profile.
    pub(crate) dns: dns::Dns,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never let a password reach a log line through {:?}.
        f.debug_struct("Target").field("url", &self.redacted).finish()
    }
}

impl Target {
    /// Parses `redis://`, `rediss://`, `valkey://`, `redis+sentinel://` and `rediss+sentinel://`:
    /// the URL alone, nothing else read or changed (`with_env` adds what the environment gives,
    /// `secrets` says what to register for scrubbing). Redaction uses the same split
    /// (`UrlParts`), so what is read as a password is what is hidden.
    pub fn parse(url: &str) -> Result<Self> {
        let redacted = redact(url);
        let parts = UrlParts::split(url)
            .filter(|p| p.sep == "://")
            .ok_or_else(|| invalid(format!("target `{redacted}` is not a URL (expected redis://host:port)")))?;
        let (username, url_password) = parse_userinfo(parts.userinfo)?;
        // `redis://token@host` carries a token where the user name stands: secret too. A user
        // name beside a password (`default:pw@`) is not, and is not scrubbed from texts.
        if parts.scheme == "memcache" || parts.scheme == "memcached" {
            let nodes = parts.hosts.split(',').map(|h| parse_host_port(h, 11211)).collect::<Result<Vec<_>>>()?;
            return Ok(Self {
                discovery: Discovery::Memcache { nodes },
                tls: false,
                insecure_tls: false,
                username: None,
                password: None,
                sentinel_password: None,
                db: 0,
                tls_ca: None,
                tls_config: None,
                redacted,
                dns: dns::Dns::default(),
            });
        }
        let (tls, sentinel, cluster) = match parts.scheme {
            "redis" | "valkey" => (false, false, false),
            "rediss" | "valkeys" => (true, false, false),
            "redis+sentinel" => (false, true, false),
            "rediss+sentinel" => (true, true, false),
            "redis+cluster" => (false, false, true),
            "rediss+cluster" => (true, false, true),
            other => {
                return Err(invalid(format!(
                    "unsupported target scheme `{other}`: use redis://, rediss://, redis+sentinel://, redis+cluster:// (or their rediss+ forms)"
                )))
            }
        };
        let insecure_tls = match parts.fragment {
            None => false,
            Some("insecure") => true,
            Some(other) => return Err(invalid(format!("unknown URL fragment `#{other}` (only #insecure is known)"))),
        };
        let path = parts.path.unwrap_or("");
        let nodes = parts
            .hosts
            .split(',')
            .map(|h| parse_host_port(h, if sentinel { 26379 } else { 6379 }))
            .collect::<Result<Vec<_>>>()?;
        let (discovery, db) = if cluster {
            (Discovery::Cluster { seeds: nodes }, 0)
        } else if sentinel {
            let (master, db) = path.split_once('/').unwrap_or((path, ""));
            if master.is_empty() {
                return Err(invalid(
                    "a sentinel target needs the master name: redis+sentinel://host:port/<master-name>",
                ));
            }
            (Discovery::Sentinel { sentinels: nodes, master: master.to_string() }, parse_db(db)?)
        } else {
            match <[_; 1]>::try_from(nodes) {
                Ok([(host, port)]) => (Discovery::Direct { host, port }, parse_db(path)?),
                Err(nodes) => (Discovery::Nodes { nodes }, parse_db(path)?),
            }
        };
        let tls_config = match tls {
            true => Some(tls::client_config(None, insecure_tls).map_err(invalid)?),
            false => None,
        };
        Ok(Self {
            discovery,
            tls,
            insecure_tls,
            username,
            password: url_password,
            sentinel_password: None,
            db,
            tls_ca: None,
            tls_config,
            redacted,
            dns: dns::Dns::default(),
        })
    }

    /// What the environment adds to a parsed target: a password the URL does not carry, the
    /// sentinels' password, and the private CA that replaces the public roots.
    pub fn with_env(mut self, env: &TargetEnv) -> Result<Self> {
        if self.password.is_none() {
            self.password = env.password.clone();
        }
        self.sentinel_password = env.sentinel_password.clone();
        if let (true, Some(path)) = (self.tls, &env.tls_ca_file) {
            let pem =
                std::fs::read(path).map_err(|e| invalid(format!("FAILPROBE_TLS_CA_FILE {}: {e}", path.display())))?;
            self.tls_config = Some(tls::client_config(Some(&pem), self.insecure_tls).map_err(invalid)?);
            self.tls_ca = Some(pem);
        }
        Ok(self)
    }

    /// What must be scrubbed from every text: the password, or a token standing where the user
    /// name does (`redis://token@host`; a user name beside a password is not secret).
    pub fn secrets(&self) -> Vec<&str> {
        let token = self.username.as_deref().filter(|_| self.password.is_none());
        [self.password.as_deref(), token, self.sentinel_password.as_deref()].into_iter().flatten().collect()
    }

    pub(crate) fn tls_config(&self) -> Option<&std::sync::Arc<rustls::ClientConfig>> {
        self.tls_config.as_ref()
    }

    pub fn redacted(&self) -> &str {
        &self.redacted
    }

    pub(crate) fn is_sentinel(&self) -> bool {
        matches!(self.discovery, Discovery::Sentinel { .. })
    }

    pub(crate) fn is_cluster(&self) -> bool {
        matches!(self.discovery, Discovery::Cluster { .. })
    }

    /// Memcached nodes, when this is a memcache:// target.
    pub fn memcache_nodes(&self) -> Option<&[(String, u16)]> {
        match &self.discovery {
            Discovery::Memcache { nodes } => Some(nodes),
            _ => None,
        }
    }

    /// The same target, its names looked up through `dns`.
    pub(crate) fn with_dns(&self, dns: dns::Dns) -> Self {
        Self { dns, ..self.clone() }
    }

    /// The host names the target gives (IP addresses left out), each once: what the DNS watch
    /// follows.
    pub(crate) fn host_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .hosts()
            .into_iter()
            .filter(|h| unbracketed(h).parse::<std::net::IpAddr>().is_err())
            .map(str::to_string)
            .collect();
        let mut seen = std::collections::HashSet::new();
        names.retain(|n| seen.insert(n.clone()));
        names
    }

    fn hosts(&self) -> Vec<&str> {
        match &self.discovery {
            Discovery::Direct { host, .. } => vec![host],
            Discovery::Sentinel { sentinels: nodes, .. }
            | Discovery::Cluster { seeds: nodes }
            | Discovery::Memcache { nodes }
            | Discovery::Nodes { nodes } => nodes.iter().map(|(h, _)| h.as_str()).collect(),
        }
    }

    /// True when every host named is on this machine (127.0.0.0/8, ::1, localhost).
    pub(crate) fn is_loopback(&self) -> bool {
        self.hosts()
            .iter()
            .all(|h| *h == "localhost" || unbracketed(h).parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback()))
    }

    /// For process triggers (`--shard N`): node N of a target whose nodes are numbered
    /// independents (memcached), or None when the target has primaries to find instead (Redis).
    pub(crate) fn memcache_node(&self, index: usize) -> Option<Result<(String, u16), String>> {
        let nodes = self.memcache_nodes()?;
        Some(
            nodes
                .get(index)
                .cloned()
                .ok_or_else(|| format!("the target has {} memcached node(s); there is no node {index}", nodes.len())),
        )
    }

    /// A client for a data node.
    pub(crate) fn node_client(&self, host: &str, port: u16) -> Result<Client, redis::RedisError> {
        self.client(self.info(host, port, self.password.as_deref(), self.db)?)
    }

    /// A client for a sentinel (its own password, db 0).
    pub(crate) fn sentinel_client(&self, host: &str, port: u16) -> Result<Client, redis::RedisError> {
        self.client(self.info(host, port, self.sentinel_password.as_deref(), 0)?)
    }

    fn client(&self, info: ConnectionInfo) -> Result<Client, redis::RedisError> {
        match (&self.tls_ca, self.tls) {
            (Some(ca), true) => {
                Client::build_with_tls(info, TlsCertificates { client_tls: None, root_cert: Some(ca.clone()) })
            }
            _ => Client::open(info),
        }
    }

    fn info(
        &self,
        host: &str,
        port: u16,
        password: Option<&str>,
        db: i64,
    ) -> Result<ConnectionInfo, redis::RedisError> {
        let scheme = if self.tls { "rediss" } else { "redis" };
        let fragment = if self.tls && self.insecure_tls { "#insecure" } else { "" };
        let info = format!("{scheme}://{host}:{port}/{db}{fragment}").into_connection_info()?;
        let mut settings = info.redis_settings().clone();
        if let Some(user) = &self.username {
            settings = settings.set_username(user);
        }
        if let Some(pw) = password {
            settings = settings.set_password(pw);
        }
        Ok(info.set_redis_settings(settings))
    }
}

/// rustls needs one process-wide crypto provider; redis-rs does not pick one itself.
/// The process-wide TLS provider the redis crate's own connections use (failprobe's streams
/// name theirs): installed once, by `main`, before any target is used.
pub fn install_tls_provider() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// `user:password`, percent-decoded (RFC 3986): `+` stays a plus, `%2B` is a plus too.
fn parse_userinfo(userinfo: Option<&str>) -> Result<(Option<String>, Option<String>)> {
    let Some(u) = userinfo else { return Ok((None, None)) };
    // The message never shows the text: it is (part of) a password.
    let decode = |s: &str, what: &str| -> Result<String> {
        percent_encoding::percent_decode_str(s)
            .decode_utf8()
            .map(|c| c.into_owned())
            .map_err(|_| invalid(format!("the {what} in the target URL is not valid UTF-8 once percent-decoded")))
    };
    Ok(match u.split_once(':') {
        Some((user, pw)) => {
            let user = if user.is_empty() { None } else { Some(decode(user, "user name")?) };
            (user, Some(decode(pw, "password")?))
        }
        None => (Some(decode(u, "user name")?).filter(|s| !s.is_empty()), None),
    })
}

/// An IPv6 address as URLs and `host:port` write it (`[::1]`) without its brackets; any other
/// host as it is.
pub(crate) fn unbracketed(host: &str) -> &str {
    host.trim_matches(|c| c == '[' || c == ']')
}

fn parse_host_port(text: &str, default_port: u16) -> Result<(String, u16)> {
    let text = text.trim();
    if text.is_empty() {
        return Err(invalid("target has an empty host"));
    }
    let (host, port) = match text.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(':') => {
            (h, p.parse::<u16>().map_err(|_| invalid(format!("`{p}` is not a port number")))?)
        }
        _ => (text, default_port),
    };
    Ok((unbracketed(host).to_string(), port))
}

fn parse_db(text: &str) -> Result<i64> {
    if text.is_empty() {
        return Ok(0);
    }
    text.parse().map_err(|_| invalid(format!("`{text}` is not a database number")))
}

/// A URL cut into its parts: userinfo is everything before the *last* `@` (a password may hold
/// `/ ? # @`), then hosts, path, query and fragment. Lenient, so that even a malformed URL
/// (`redis:/:pw@h`) can be redacted.
pub(crate) struct UrlParts<'a> {
    scheme: &'a str,
    /// `://`, or whatever stands between scheme and rest in a malformed URL (`:/`).
    sep: &'a str,
    userinfo: Option<&'a str>,
    hosts: &'a str,
    path: Option<&'a str>,
    query: Option<&'a str>,
    fragment: Option<&'a str>,
}

impl<'a> UrlParts<'a> {
    pub(crate) fn split(url: &'a str) -> Option<Self> {
        let (scheme, sep, rest) = match url.find("://") {
            Some(i) => (&url[..i], "://", &url[i + 3..]),
            None => {
                let i = url.find(':')?;
                let after = &url[i + 1..];
                let slashes = after.len() - after.trim_start_matches('/').len();
                (&url[..i], &url[i..i + 1 + slashes], &after[slashes..])
            }
        };
        if scheme.is_empty() || !scheme.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.')) {
            return None;
        }
        let (userinfo, rest) = match rest.rsplit_once('@') {
            Some((u, h)) => (Some(u), h),
            None => (None, rest),
        };
        let (rest, fragment) = split_opt(rest, '#');
        let (rest, query) = split_opt(rest, '?');
        let (hosts, path) = split_opt(rest, '/');
        Some(Self { scheme, sep, userinfo, hosts, path, query, fragment })
    }

    fn redacted(&self) -> String {
        let mut out = format!("{}{}", self.scheme, self.sep);
        match self.userinfo.map(|u| u.split_once(':')) {
            Some(Some((user, _))) => out.push_str(&format!("{user}:***@")),
            Some(None) => out.push_str("***@"),
            None => {}
        }
        out.push_str(self.hosts);
        if let Some(path) = self.path {
            out.push('/');
            out.push_str(path);
        }
        if let Some(query) = self.query {
            let q: Vec<String> = query
                .split('&')
                .map(|kv| match kv.split_once('=') {
                    Some((k, _))
                        if ["pass", "token", "secret", "auth", "key"].iter().any(|s| k.to_lowercase().contains(s)) =>
                    {
                        format!("{k}=***")
                    }
                    _ => kv.to_string(),
                })
                .collect();
            out.push('?');
            out.push_str(&q.join("&"));
        }
        if let Some(fragment) = self.fragment {
            out.push('#');
            out.push_str(fragment);
        }
        out
    }
}

fn split_opt(text: &str, at: char) -> (&str, Option<&str>) {
    match text.split_once(at) {
        Some((a, b)) => (a, Some(b)),
        None => (text, None),
    }
}

/// Whether a URL carries a password (`redis://:pw@…`, `redis://user:pw@…`, `redis://pw@…`).
pub(crate) fn has_password(url: &str) -> bool {
    UrlParts::split(url).and_then(|p| p.userinfo).is_some_and(|u| match u.split_once(':') {
        Some((_, pw)) => !pw.is_empty(),
        None => !u.is_empty(),
    })
}

/// Replaces any password in a URL (userinfo or `password=`/`token=` query values) with `***`.
/// Text that is not a URL at all is returned with any `…@` userinfo hidden all the same.
pub(crate) fn redact(url: &str) -> String {
    match UrlParts::split(url) {
        Some(parts) => parts.redacted(),
        None => match url.rsplit_once('@') {
            Some((_, host)) => format!("***@{host}"),
            None => url.to_string(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_passwords() {
        assert_eq!(redact("redis://user:s3cret@host:6379/0"), "redis://user:***@host:6379/0");
        assert_eq!(redact("redis://:s3cret@host:6379"), "redis://:***@host:6379");
        assert_eq!(redact("rediss://tok@host"), "rediss://***@host");
        assert_eq!(redact("redis://h:1/0?password=x&db=1"), "redis://h:1/0?password=***&db=1");
        assert_eq!(redact("redis://host:6379"), "redis://host:6379");
    }

    #[test]
    fn redaction_hides_exactly_what_the_parser_reads_as_a_password() {
        for pw in ["ab/cd", "a+b", "a#b", "a?b", "a@b", "a%b", "p%2Fq%2B", "x/y?z#w@v+%25"] {
            for url in [
                format!("redis://:{pw}@127.0.0.1:6390"),
                format!("redis://default:{pw}@127.0.0.1:6390/2"),
                format!("rediss://u:{pw}@h:1/0#insecure"),
                format!("redis+sentinel://:{pw}@h:1,h:2/mymaster"),
            ] {
                let t = Target::parse(&url).unwrap_or_else(|e| panic!("{url}: {e}"));
                let expected = percent_encoding::percent_decode_str(pw).decode_utf8().unwrap();
                assert_eq!(t.password.as_deref(), Some(expected.as_ref()), "{url}");
                assert!(!t.redacted().contains(pw), "{url} -> {}", t.redacted());
                assert!(t.redacted().contains(":***@"), "{url} -> {}", t.redacted());
            }
        }
        // `+` is a plus in userinfo (not a form-encoded space).
        assert_eq!(Target::parse("redis://:a+b@h:1").unwrap().password.as_deref(), Some("a+b"));
        assert_eq!(Target::parse("redis://:a%2Bb@h:1").unwrap().password.as_deref(), Some("a+b"));
    }

    #[test]
    fn malformed_urls_are_redacted_in_errors() {
        for url in ["redis:/:s3cr3tpw@h:1", "redis:s3cr3tpw@h", "s3cr3tpw@h:1", "redis://:s3cr3tpw@h:1#bogus"] {
            let err = format!("{:#}", Target::parse(url).err().unwrap_or_else(|| panic!("{url} parsed")));
            assert!(!err.contains("s3cr3tpw"), "{url}: {err}");
        }
        let err = format!("{:#}", Target::parse("redis://:%FF%FE@h:1").unwrap_err());
        assert!(err.contains("not valid UTF-8") && !err.contains("%FF"), "{err}");
    }

    #[test]
    fn parses_sentinel_targets() {
        let t = Target::parse("redis+sentinel://127.0.0.1:26379,127.0.0.1:26380/mymaster").unwrap();
        assert_eq!(
            t.discovery,
            Discovery::Sentinel {
                sentinels: vec![("127.0.0.1".into(), 26379), ("127.0.0.1".into(), 26380)],
                master: "mymaster".into()
            }
        );
        assert!(t.is_loopback());
        assert!(Target::parse("redis+sentinel://127.0.0.1:26379").is_err());
    }

    #[test]
    fn parses_direct_targets_and_keeps_password_out_of_debug() {
        let t = Target::parse("rediss://default:hunter2@cache.example.com:6380/2").unwrap();
        assert_eq!(t.discovery, Discovery::Direct { host: "cache.example.com".into(), port: 6380 });
        assert_eq!(t.db, 2);
        assert!(t.tls && !t.is_loopback());
        assert!(!format!("{t:?}").contains("hunter2"));
        assert!(!t.redacted().contains("hunter2"));
        assert!(Target::parse("http://x").is_err());
        // Several nodes without Sentinel: a static primary/replica pair.
        let pair = Target::parse("redis://a:1,b:2/3").unwrap();
        let nodes = vec![("a".to_string(), 1), ("b".to_string(), 2)];
        assert_eq!((pair.discovery, pair.db), (Discovery::Nodes { nodes }, 3));
    }
}
