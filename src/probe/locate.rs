//! Where a probe connection should go: the target's primary (directly or through Sentinel), or
//! the current owner of one cluster slot. Every reconnect asks again.

use crate::sample::ErrorClass;
use crate::target::cluster::{cluster_shards, seeds, ClusterNode, ShardInfo};
use crate::target::error::ProbeError;
use crate::target::{connect_node, connect_primary, query_role, ServerInfo, Target};
use redis::aio::MultiplexedConnection;
use std::sync::{Arc, RwLock};
use std::time::Duration;

pub(crate) enum Locator {
    Primary(Arc<Target>),
    ClusterSlot {
        target: Arc<Target>,
        slot: u16,
        map: Arc<SlotMap>,
    },
    /// Always the same `host:port` (DNS resolved on each connect), whatever its role.
    Fixed {
        target: Arc<Target>,
        host: String,
        port: u16,
    },
}

impl Locator {
    pub async fn connect(&self, limit: Duration) -> Result<(MultiplexedConnection, ServerInfo), ProbeError> {
        match self {
            Locator::Primary(target) => connect_primary(target, limit).await,
            Locator::ClusterSlot { target, slot, map } => match connect_owner(target, *slot, map, limit).await {
                // The map was stale (a failover moved the slot): learn the new owner, try once more.
                Err(e) if e.class == ErrorClass::Readonly => {
                    map.refresh(target, limit).await?;
                    connect_owner(target, *slot, map, limit).await
                }
                // The owner is gone (killed, shut down, replaced) and no MOVED will say where its
                // slots went: ask the cluster again at once, as a client that refreshes on a
                // connection error does, so the new owner is used as soon as the cluster has
                // one, not at the next topology poll. A timeout is left to the poll: asking
                // every node with the same deadline would only delay the next attempt.
                Err(e) if matches!(e.class, ErrorClass::Refused | ErrorClass::Reset) => {
                    let before = map.owner(*slot).map(|n| (n.host, n.port));
                    let moved = map.refresh(target, limit).await.is_ok()
                        && map.owner(*slot).map(|n| (n.host, n.port)) != before;
                    match moved {
                        true => connect_owner(target, *slot, map, limit).await,
                        false => Err(e),
                    }
                }
                other => other,
            },
            Locator::Fixed { target, host, port } => {
                let (conn, addr) = connect_node(target, host, *port, limit).await?;
                let role = "unchecked".to_string();
                Ok((conn, ServerInfo { addr, host: host.clone(), port: *port, role, run_id: None }))
            }
        }
    }

    /// Where a connection would go now, without connecting: what a client that is told the
    /// primary once is told.
    pub(crate) async fn current_address(&self, limit: Duration) -> Result<(String, u16), ProbeError> {
        match self {
            Locator::Primary(target) => crate::target::locate_primary(target, limit).await,
            Locator::ClusterSlot { slot, map, .. } => map.owner(*slot).map(|n| (n.host, n.port)).ok_or_else(|| {
                ProbeError::new(ErrorClass::Clusterdown, format!("no node owns slot {slot} in the last CLUSTER SLOTS"))
            }),
            Locator::Fixed { host, port, .. } => Ok((host.clone(), *port)),
        }
    }

    /// Whether a connection's role was checked (only then is its role worth a topology entry).
    pub(crate) fn checks_role(&self) -> bool {
        !matches!(self, Locator::Fixed { .. })
    }

    /// Whether the connected server itself is the authority on "who is primary" (a standalone
    /// target); with Sentinel or a cluster the primary is what they announce.
    pub(crate) fn server_is_primary_source(&self) -> bool {
        matches!(self, Locator::Primary(t) if matches!(t.discovery, crate::target::Discovery::Direct { .. }))
    }
}

/// The cluster's slot ownership as last seen (CLUSTER SLOTS, corrected by MOVED replies).
pub(crate) struct SlotMap {
    shards: RwLock<Vec<ShardInfo>>,
}

impl SlotMap {
    pub async fn discover(target: &Target, limit: Duration) -> Result<Arc<Self>, ProbeError> {
        let shards = cluster_shards(target, &seeds(target), limit).await?;
        Ok(Arc::new(Self { shards: RwLock::new(shards) }))
    }

    pub fn shards(&self) -> Vec<ShardInfo> {
        self.shards.read().map(|s| s.clone()).unwrap_or_default()
    }

    pub fn owner(&self, slot: u16) -> Option<ClusterNode> {
        self.shards.read().ok()?.iter().find(|s| s.owns(slot)).map(|s| s.primary.clone())
    }

    /// A MOVED reply names the slot's new owner: believe it until the next refresh.
    pub fn moved(&self, slot: u16, host: &str, port: u16) {
        if let Ok(mut shards) = self.shards.write() {
            if let Some(s) = shards.iter_mut().find(|s| s.owns(slot)) {
                s.primary = ClusterNode { host: host.to_string(), port, id: String::new() };
            }
        }
    }

    /// Asks the seeds and every node known so far; keeps the old map when none answers.
    pub(crate) async fn refresh(&self, target: &Target, limit: Duration) -> Result<Vec<ShardInfo>, ProbeError> {
        let mut nodes = seeds(target);
        for s in self.shards() {
            nodes.extend(std::iter::once(&s.primary).chain(&s.replicas).map(|n| (n.host.clone(), n.port)));
        }
        nodes.dedup();
        let fresh = cluster_shards(target, &nodes, limit).await?;
        if let Ok(mut shards) = self.shards.write() {
            *shards = fresh.clone();
        }
        Ok(fresh)
    }
}

/// "MOVED 3999 127.0.0.1:6381" (or redis-rs's "Moved: 3999 127.0.0.1:6381", possibly inside a
/// transaction abort) → (3999, host, port).
pub(crate) fn parse_moved(text: &str) -> Option<(u16, String, u16)> {
    let lower = text.to_ascii_lowercase();
    lower.match_indices("moved").find_map(|(at, _)| {
        let rest = text[at + 5..].trim_start_matches(|c: char| c == ':' || c.is_whitespace());
        let mut parts = rest.split_whitespace();
        let slot = parts.next()?.parse().ok()?;
        let addr = parts.next()?.trim_end_matches(|c: char| !c.is_ascii_digit());
        let (host, port) = addr.rsplit_once(':')?;
        Some((slot, host.to_string(), port.parse().ok()?))
    })
}

async fn connect_owner(
    target: &Target,
    slot: u16,
    map: &SlotMap,
    limit: Duration,
) -> Result<(MultiplexedConnection, ServerInfo), ProbeError> {
    let node =
        map.owner(slot).ok_or_else(|| ProbeError::new(ErrorClass::Clusterdown, format!("no node owns slot {slot}")))?;
    let (mut conn, addr) = connect_node(target, &node.host, node.port, limit).await?;
    let (role, run_id) = query_role(&mut conn, limit).await?;
    let info = ServerInfo { addr, host: node.host, port: node.port, role, run_id };
    if !info.is_primary() {
        return Err(ProbeError::new(
            ErrorClass::Readonly,
            format!("{} answers as {}, not as the slot's primary", info.addr, info.role),
        ));
    }
    Ok((conn, info))
}

#[cfg(test)]
mod tests {
    #[test]
    fn parses_moved() {
        assert_eq!(super::parse_moved("MOVED 3999 127.0.0.1:6381"), Some((3999, "127.0.0.1".into(), 6381)));
        assert_eq!(
            super::parse_moved("An error was signalled by the server - Moved: MOVED 12 h:1"),
            Some((12, "h".into(), 1))
        );
        assert_eq!(super::parse_moved("Moved: 5798 127.0.0.1:36747"), Some((5798, "127.0.0.1".into(), 36747)));
        assert_eq!(super::parse_moved("READONLY"), None);
    }
}
