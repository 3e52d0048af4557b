//! Name resolution for every Redis connection failprobe opens, and the answers the DNS watch
//! puts on the timeline.
//!
//! By default a connection asks the system's resolver (getaddrinfo) each time it is opened, as
//! an application does. `--dns-server ADDR` asks that server instead (hickory, UDP then TCP),
//! for every profile. `dns-cache=D` reuses an answer for D whatever its TTL, as a JVM with
//! `networkaddress.cache.ttl` or a resolver that ignores TTLs does.

use super::error::ProbeError;
use crate::sample::ErrorClass;
use hickory_resolver::config::{NameServerConfig, ResolverConfig, ResolverOpts};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::rr::RecordType;
use hickory_resolver::TokioResolver;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::time::timeout;

/// Where names are looked up, and for how long an answer is kept.
#[derive(Clone, Default)]
pub(crate) struct Dns {
    /// `--dns-server`; None: the system's resolver.
    server: Option<Arc<TokioResolver>>,
    /// `dns-cache=D`; None: every connect asks again.
    cache: Option<Arc<AnswerCache>>,
}

/// Answers kept for a fixed time, per host name (a handful: the target's nodes).
struct AnswerCache {
    keep: Duration,
    answers: Mutex<HashMap<String, (Instant, Vec<IpAddr>)>>,
}

/// One look at a name, as the DNS watch reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Answer {
    /// The A and AAAA addresses, sorted; empty when the name has none.
    pub addresses: Vec<IpAddr>,
    /// The lowest TTL among them, in seconds, as the server gave it (None from getaddrinfo,
    /// which does not tell).
    pub ttl_s: Option<u32>,
}

impl Dns {
    /// Ask the DNS server at `addr` (port 53 unless given), over UDP and then TCP.
    pub(crate) fn server(addr: SocketAddr) -> Result<Self, String> {
        let mut server = NameServerConfig::udp_and_tcp(addr.ip());
        for connection in &mut server.connections {
            connection.port = addr.port();
        }
        let mut options = ResolverOpts::default();
        // One try of 2 s: a connect's own deadline bounds it anyway.
        options.timeout = Duration::from_secs(2);
        options.attempts = 1;
        let resolver = TokioResolver::builder_with_config(
            ResolverConfig::from_name_servers(vec![server]),
            TokioRuntimeProvider::default(),
        )
        .with_options(options)
        .build()
        .map_err(|e| format!("--dns-server {addr}: {e}"))?;
        Ok(Self { server: Some(Arc::new(resolver)), cache: None })
    }

    /// The same lookups, each answer reused for `keep`.
    pub(crate) fn cached(&self, keep: Duration) -> Self {
        let cache = AnswerCache { keep, answers: Mutex::new(HashMap::new()) };
        Self { server: self.server.clone(), cache: Some(Arc::new(cache)) }
    }

    /// The addresses to connect to for `host:port`, under `limit`. An IP address is itself.
    pub(crate) async fn resolve(&self, host: &str, port: u16, limit: Duration) -> Result<Vec<SocketAddr>, ProbeError> {
        if let Ok(ip) = host.parse::<IpAddr>() {
            return Ok(vec![SocketAddr::new(ip, port)]);
        }
        let ips = match &self.cache {
            Some(cache) => match cache.get(host) {
                Some(ips) => ips,
                None => {
                    let ips = self.ask(host, limit).await?;
                    cache.put(host, &ips);
                    ips
                }
            },
            None => self.ask(host, limit).await?,
        };
        Ok(ips.into_iter().map(|ip| SocketAddr::new(ip, port)).collect())
    }

    async fn ask(&self, host: &str, limit: Duration) -> Result<Vec<IpAddr>, ProbeError> {
        let dns_error = |e: String| ProbeError::new(ErrorClass::Dns, format!("DNS lookup of {host}: {e}"));
        let ips: Vec<IpAddr> = match &self.server {
            Some(resolver) => {
                // hickory keeps a cache of its own; failprobe's lookups go to the server each time.
                resolver.clear_cache();
                let lookup =
                    timeout(limit, resolver.lookup_ip(host)).await.map_err(|_| dns_error("timed out".into()))?;
                lookup.map_err(|e| dns_error(e.to_string()))?.iter().collect()
            }
            None => {
                let lookup = timeout(limit, tokio::net::lookup_host((host, 0)))
                    .await
                    .map_err(|_| dns_error("timed out".into()))?;
                lookup.map_err(|e| dns_error(e.to_string()))?.map(|a| a.ip()).collect()
            }
        };
        if ips.is_empty() {
            return Err(dns_error("no address".into()));
        }
        Ok(ips)
    }

    /// `host`'s A and AAAA records and their TTL, asked afresh (the DNS watch). Through the
    /// `--dns-server`, else the system's configuration (resolv.conf) read by `watcher`.
    pub(crate) async fn answer(watcher: &TokioResolver, host: &str, limit: Duration) -> Result<Answer, String> {
        watcher.clear_cache();
        let mut addresses = Vec::new();
        let mut ttl_s: Option<u32> = None;
        let mut errors = Vec::new();
        for kind in [RecordType::A, RecordType::AAAA] {
            match timeout(limit, watcher.lookup(host, kind)).await {
                Err(_) => errors.push(format!("{kind} timed out")),
                Ok(Err(e)) if e.is_no_records_found() => {}
                Ok(Err(e)) => errors.push(format!("{kind}: {e}")),
                Ok(Ok(lookup)) => {
                    for record in lookup.answers() {
                        if let Some(ip) = record.data.ip_addr() {
                            addresses.push(ip);
                            ttl_s = Some(ttl_s.map_or(record.ttl, |t| t.min(record.ttl)));
                        }
                    }
                }
            }
        }
        if addresses.is_empty() && !errors.is_empty() {
            return Err(errors.join("; "));
        }
        addresses.sort();
        addresses.dedup();
        Ok(Answer { addresses, ttl_s })
    }

    /// The resolver the DNS watch asks: the `--dns-server`, else the system's configuration.
    pub(crate) fn watcher(&self) -> Result<Arc<TokioResolver>, String> {
        if let Some(server) = &self.server {
            return Ok(server.clone());
        }
        let builder = TokioResolver::builder_tokio().map_err(|e| format!("the system's DNS configuration: {e}"))?;
        builder.build().map(Arc::new).map_err(|e| format!("the system's DNS configuration: {e}"))
    }
}

impl AnswerCache {
    fn get(&self, host: &str) -> Option<Vec<IpAddr>> {
        let answers = self.answers.lock().expect("not poisoned");
        answers.get(host).filter(|(at, _)| at.elapsed() < self.keep).map(|(_, ips)| ips.clone())
    }

    fn put(&self, host: &str, ips: &[IpAddr]) {
        self.answers.lock().expect("not poisoned").insert(host.to_string(), (Instant::now(), ips.to_vec()));
    }
}
