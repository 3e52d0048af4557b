//! What a run will touch, found before it asks: the servers a failover or a backup acts on as
//! the deployment names them (the sentinels' primary, each primary's replicas, a cluster's
//! CLUSTER SLOTS), every host name resolved through the target's resolver. A sentinel on
//! loopback may name a primary anywhere: the confirmation is about these addresses, not only
//! about the hosts typed in the URL, and each trial checks again before it acts.

use crate::target::cluster::cluster_shards;
use crate::target::{connect_node, info_field, locate_primary, Discovery, Target};
use std::collections::BTreeSet;
use std::net::IpAddr;
use std::time::Duration;

/// The most servers listed (and asked, and resolved one by one): a cluster of 128 shards with a
/// replica each; more is a reply that names nodes without end.
const MAX_SERVERS: usize = 256;

/// One server the run may act on, and what its host resolved to.
#[derive(Clone, Debug)]
pub(crate) struct Node {
    role: &'static str,
    host: String,
    port: u16,
    addrs: Vec<IpAddr>,
}

impl Node {
    /// On this machine: every address it resolved to is a loopback one (none: not known to be).
    fn is_loopback(&self) -> bool {
        !self.addrs.is_empty() && self.addrs.iter().all(|ip| ip.to_canonical().is_loopback())
    }

    fn key(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    /// `replica 10.0.1.7:6379`, or `primary cache.internal:6379 (10.0.1.5)` for a name.
    fn describe(&self) -> String {
        let ips: Vec<String> = self.addrs.iter().map(IpAddr::to_string).collect();
        let resolved = match (self.host.parse::<IpAddr>().is_ok(), ips.is_empty()) {
            (true, _) => String::new(),
            (false, true) => " (did not resolve)".to_string(),
            (false, false) => format!(" ({})", ips.join(", ")),
        };
        let place = if self.is_loopback() { "" } else { ", not on loopback" };
        format!("{} {}{resolved}{place}", self.role, self.key())
    }
}

/// The servers found, and why the list may be incomplete.
#[derive(Clone, Debug, Default)]
pub(crate) struct Touched {
    nodes: Vec<Node>,
    /// A part of the deployment that could not be listed: not known to be on loopback.
    unknown: Vec<String>,
}

impl Touched {
    /// Every server found is on loopback, and nothing was left unlisted.
    pub(crate) fn all_loopback(&self) -> bool {
        self.unknown.is_empty() && self.nodes.iter().all(Node::is_loopback)
    }

    /// Each server found: its role as the deployment named it, its host and its port.
    pub(crate) fn nodes(&self) -> impl Iterator<Item = (&'static str, &str, u16)> {
        self.nodes.iter().map(|n| (n.role, n.host.as_str(), n.port))
    }

    /// One line per server (and per part that could not be listed), for the question.
    pub(crate) fn lines(&self) -> Vec<String> {
        let nodes = self.nodes.iter().map(Node::describe);
        nodes.chain(self.unknown.iter().map(|u| format!("not listed: {u}"))).collect()
    }

    /// Servers in `now` that this list neither holds nor knows to be on loopback: acting on
    /// them was never confirmed.
    pub(crate) fn unconfirmed_in(&self, now: &Touched) -> Vec<String> {
        let known: BTreeSet<String> = self.nodes.iter().map(Node::key).collect();
        let mut new: Vec<String> =
            now.nodes.iter().filter(|n| !n.is_loopback() && !known.contains(&n.key())).map(Node::describe).collect();
        // A part that cannot be listed now may hide a server off loopback; unless the question
        // already showed a part unlisted and was answered yes all the same.
        if self.unknown.is_empty() {
            new.extend(now.unknown.iter().map(|u| format!("not listed: {u}")));
        }
        new
    }
}

/// What the user agreed to act on.
pub(crate) enum Consent {
    /// `--yes`: whatever the deployment names.
    Everything,
    /// The servers the confirmation listed (or found all on loopback, so nothing was asked).
    Listed(Touched),
}

impl Consent {
    /// Servers in `now` never agreed to: an error naming them.
    pub(crate) fn check(&self, now: &Touched) -> Result<(), String> {
        let Consent::Listed(agreed) = self else { return Ok(()) };
        match agreed.unconfirmed_in(now).as_slice() {
            [] => Ok(()),
            new => Err(format!(
                "it would act on {}, which the confirmation did not list (run again to be asked, or pass --yes)",
                new.join("; ")
            )),
        }
    }
}

/// The servers behind `target`: the hosts it names, the primary its sentinels or its node list
/// name, every primary's replicas (INFO replication) and every node of a cluster.
pub(crate) async fn discover(target: &Target, limit: Duration) -> Touched {
    let mut found = Found { target, limit, touched: Touched::default(), seen: BTreeSet::new() };
    match &target.discovery {
        Discovery::Direct { host, port } => found.data_node("node", host, *port).await,
        Discovery::Sentinel { sentinels, .. } => {
            for (host, port) in sentinels {
                found.add("sentinel", host, *port).await;
            }
            match locate_primary(target, limit).await {
                Ok((host, port)) => found.data_node("primary", &host, port).await,
                Err(e) => found.touched.unknown.push(format!("the sentinels' primary ({e})")),
            }
        }
        Discovery::Nodes { nodes } => {
            for (host, port) in nodes {
                found.data_node("node", host, *port).await;
            }
        }
        Discovery::Cluster { seeds } => {
            for (host, port) in seeds {
                found.add("seed", host, *port).await;
            }
            match cluster_shards(target, seeds, limit).await {
                Ok(shards) => {
                    for shard in shards {
                        found.add("primary", &shard.primary.host, shard.primary.port).await;
                        for r in shard.replicas {
                            found.add("replica", &r.host, r.port).await;
                        }
                    }
                }
                Err(e) => found.touched.unknown.push(format!("the cluster's nodes ({e})")),
            }
        }
        Discovery::Memcache { nodes } => {
            for (host, port) in nodes {
                found.add("node", host, *port).await;
            }
        }
    }
    found.touched
}

struct Found<'a> {
    target: &'a Target,
    limit: Duration,
    touched: Touched,
    seen: BTreeSet<(String, u16)>,
}

impl Found<'_> {
    /// A server, once, with its host resolved through the target's resolver.
    async fn add(&mut self, role: &'static str, host: &str, port: u16) -> bool {
        if self.seen.len() >= MAX_SERVERS {
            // A reply naming ever more nodes is not listed on: the rest is not known to be local.
            if self.seen.len() == MAX_SERVERS {
                self.touched.unknown.push(format!("servers beyond the first {MAX_SERVERS} named"));
                self.seen.insert((String::new(), 0));
            }
            return false;
        }
        if !self.seen.insert((host.to_string(), port)) {
            return false;
        }
        let addrs = self.target.dns.resolve(host, port, self.limit).await.unwrap_or_default();
        let addrs = addrs.into_iter().map(|a| a.ip()).collect();
        self.touched.nodes.push(Node { role, host: host.to_string(), port, addrs });
        true
    }

    /// A data node and the servers replicating with it: its replicas, or its primary.
    async fn data_node(&mut self, role: &'static str, host: &str, port: u16) {
        if !self.add(role, host, port).await {
            return;
        }
        let info = async {
            let (mut conn, _) = connect_node(self.target, host, port, self.limit).await.map_err(|e| e.to_string())?;
            let mut info = redis::cmd("INFO");
            info.arg("replication");
            match tokio::time::timeout(self.limit, info.query_async::<String>(&mut conn)).await {
                Ok(Ok(info)) => Ok(info),
                Ok(Err(e)) => Err(e.to_string()),
                Err(_) => Err("timed out".to_string()),
            }
        };
        match info.await {
            Ok(info) => {
                for (role, host, port) in replication_peers(&info) {
                    self.add(role, &host, port).await;
                }
            }
            Err(e) => self.touched.unknown.push(format!("the replicas of {host}:{port} ({e})")),
        }
    }
}

/// From INFO replication: a replica's primary (`master_host`, `master_port`) and a primary's
/// replicas (`slave0:ip=…,port=…,state=…`), whatever their state.
fn replication_peers(info: &str) -> Vec<(&'static str, String, u16)> {
    let mut peers = Vec::new();
    if let (Some(host), Some(port)) = (info_field(info, "master_host"), info_field(info, "master_port")) {
        if let Ok(port) = port.parse() {
            peers.push(("primary", host, port));
        }
    }
    for i in 0..info_field(info, "connected_slaves").and_then(|n| n.parse().ok()).unwrap_or(0usize).min(64) {
        let Some(line) = info_field(info, &format!("slave{i}")) else { continue };
        let field = |k: &str| line.split(',').find_map(|kv| kv.strip_prefix(k)?.strip_prefix('=')).map(str::to_string);
        if let (Some(ip), Some(port)) = (field("ip"), field("port").and_then(|p| p.parse().ok())) {
            peers.push(("replica", ip, port));
        }
    }
    peers
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(role: &'static str, host: &str, addrs: &[&str]) -> Node {
        Node { role, host: host.into(), port: 6379, addrs: addrs.iter().map(|a| a.parse().unwrap()).collect() }
    }

    #[test]
    fn a_node_off_loopback_or_unresolved_needs_confirming() {
        let local = Touched { nodes: vec![node("sentinel", "127.0.0.1", &["127.0.0.1"])], unknown: vec![] };
        assert!(local.all_loopback());
        let remote = node("primary", "10.0.0.5", &["10.0.0.5"]);
        let with_remote = Touched { nodes: vec![local.nodes[0].clone(), remote], unknown: vec![] };
        assert!(!with_remote.all_loopback());
        assert_eq!(with_remote.lines()[1], "primary 10.0.0.5:6379, not on loopback");
        let named = Touched { nodes: vec![node("node", "cache.internal", &[])], unknown: vec![] };
        assert!(!named.all_loopback(), "a name that did not resolve is not known to be local");
        assert_eq!(named.lines()[0], "node cache.internal:6379 (did not resolve), not on loopback");
        let partial = Touched { nodes: vec![], unknown: vec!["the cluster's nodes (timeout)".into()] };
        assert!(!partial.all_loopback());
        assert_eq!(local.unconfirmed_in(&with_remote), vec!["primary 10.0.0.5:6379, not on loopback"]);
        assert!(with_remote.unconfirmed_in(&with_remote).is_empty());
        assert_eq!(local.unconfirmed_in(&partial), vec!["not listed: the cluster's nodes (timeout)"]);
        assert!(partial.unconfirmed_in(&partial).is_empty(), "an unlisted part agreed to stays agreed");
    }

    #[test]
    fn replication_peers_are_read_from_info() {
        let info = "# Replication\r\nrole:master\r\nconnected_slaves:2\r\n\
                    slave0:ip=10.0.0.6,port=6380,state=online,offset=1,lag=0\r\n\
                    slave1:ip=127.0.0.1,port=6381,state=wait_bgsave,offset=0,lag=0\r\n";
        let peers = replication_peers(info);
        assert_eq!(peers, vec![("replica", "10.0.0.6".into(), 6380), ("replica", "127.0.0.1".into(), 6381)]);
        let replica = "role:slave\r\nmaster_host:10.1.1.1\r\nmaster_port:6379\r\nconnected_slaves:0\r\n";
        assert_eq!(replication_peers(replica), vec![("primary", "10.1.1.1".into(), 6379)]);
    }
}
