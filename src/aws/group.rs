//! What DescribeReplicationGroups and DescribeCacheClusters say about a deployment, reduced to
//! what failprobe uses: how to reach it, who is primary, and whether a failover may be asked for.

use super::error::{explain, AwsError};
use super::Client;
use serde::Serialize;

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Member {
    pub cache_cluster: String,
    pub node_id: String,
    /// `primary` / `replica`; AWS gives it for cluster-mode-disabled groups only.
    pub role: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct NodeGroup {
    pub id: String,
    pub status: String,
    /// `0-5461` style ranges (cluster mode).
    pub slots: Option<String>,
    pub primary_endpoint: Option<(String, u16)>,
    pub members: Vec<Member>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct GroupInfo {
    pub id: String,
    pub status: String,
    pub engine: String,
    pub cluster_enabled: bool,
    /// `enabled`, `disabled`, `enabling`, `disabling`.
    pub automatic_failover: String,
    pub multi_az: String,
    pub tls: bool,
    /// AUTH token / RBAC required: the password must come from the environment.
    pub auth_required: bool,
    pub configuration_endpoint: Option<(String, u16)>,
    pub node_groups: Vec<NodeGroup>,
    pub member_clusters: Vec<String>,
}

impl GroupInfo {
    /// The URL failprobe probes: the configuration endpoint in cluster mode, else the primary
    /// endpoint (a DNS name that AWS moves to the new primary).
    pub fn target_url(&self) -> Result<String, String> {
        let s = if self.tls { "s" } else { "" };
        if self.cluster_enabled {
            let (h, p) = self.configuration_endpoint.as_ref().ok_or("the group has no configuration endpoint")?;
            return Ok(format!("redis{s}+cluster://{h}:{p}"));
        }
        let (h, p) = self
            .node_groups
            .first()
            .and_then(|g| g.primary_endpoint.as_ref())
            .ok_or("the group has no primary endpoint (is it still being created?)")?;
        Ok(format!("redis{s}://{h}:{p}"))
    }

    pub(crate) fn node_group(&self, id: &str) -> Option<&NodeGroup> {
        self.node_groups.iter().find(|g| g.id == id)
    }

    /// "c-001=primary c-002=replica": one line for the topology timeline.
    pub fn roles(&self) -> String {
        let members = self.node_groups.iter().flat_map(|g| &g.members);
        members
            .map(|m| format!("{}={}", m.cache_cluster, m.role.as_deref().unwrap_or("member")))
            .collect::<Vec<_>>()
            .join(" ")
    }

    pub fn primary(&self) -> Option<&Member> {
        self.node_groups.iter().flat_map(|g| &g.members).find(|m| m.role.as_deref() == Some("primary"))
    }

    pub fn automatic_failover_enabled(&self) -> bool {
        self.automatic_failover == "enabled"
    }
}

fn endpoint(e: Option<&aws_sdk_elasticache::types::Endpoint>) -> Option<(String, u16)> {
    let e = e?;
    Some((e.address()?.to_string(), u16::try_from(e.port()?).ok()?))
}

pub async fn describe_group(client: &Client, id: &str) -> Result<GroupInfo, AwsError> {
    let out = client
        .describe_replication_groups()
        .replication_group_id(id)
        .send()
        .await
        .map_err(|e| explain("DescribeReplicationGroups", e))?;
    let g = out
        .replication_groups()
        .first()
        .ok_or_else(|| not_listed("DescribeReplicationGroups", "ReplicationGroupNotFoundFault", id))?;
    let node_groups = g
        .node_groups()
        .iter()
        .map(|n| NodeGroup {
            id: n.node_group_id().unwrap_or_default().to_string(),
            status: n.status().unwrap_or_default().to_string(),
            slots: n.slots().map(str::to_string),
            primary_endpoint: endpoint(n.primary_endpoint()),
            members: n
                .node_group_members()
                .iter()
                .map(|m| Member {
                    cache_cluster: m.cache_cluster_id().unwrap_or_default().to_string(),
                    node_id: m.cache_node_id().unwrap_or_default().to_string(),
                    role: m.current_role().map(str::to_string),
                })
                .collect(),
        })
        .collect();
    Ok(GroupInfo {
        id: g.replication_group_id().unwrap_or(id).to_string(),
        status: g.status().unwrap_or_default().to_string(),
        engine: g.engine().unwrap_or("redis").to_string(),
        cluster_enabled: g.cluster_enabled().unwrap_or(false),
        automatic_failover: g.automatic_failover().map(|a| a.as_str().to_string()).unwrap_or_else(|| "disabled".into()),
        multi_az: g.multi_az().map(|a| a.as_str().to_string()).unwrap_or_else(|| "disabled".into()),
        tls: g.transit_encryption_enabled().unwrap_or(false),
        auth_required: g.auth_token_enabled().unwrap_or(false) || !g.user_group_ids().is_empty(),
        configuration_endpoint: endpoint(g.configuration_endpoint()),
        node_groups,
        member_clusters: g.member_clusters().to_vec(),
    })
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CacheNode {
    pub id: String,
    pub status: String,
    pub endpoint: Option<(String, u16)>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CacheClusterInfo {
    pub id: String,
    pub status: String,
    pub engine: String,
    pub replication_group: Option<String>,
    pub tls: bool,
    pub nodes: Vec<CacheNode>,
}

impl CacheClusterInfo {
    /// Every node by its own endpoint (their DNS names survive a node replacement).
    pub fn memcache_url(&self) -> Result<String, String> {
        if self.engine != "memcached" {
            return Err(format!("{} runs {}, not memcached: use --replication-group", self.id, self.engine));
        }
        if self.tls {
            return Err(format!(
                "{} has in-transit encryption, and failprobe's memcached client speaks plain TCP only",
                self.id
            ));
        }
        let nodes: Vec<String> =
            self.nodes.iter().filter_map(|n| n.endpoint.as_ref()).map(|(h, p)| format!("{h}:{p}")).collect();
        if nodes.is_empty() {
            return Err(format!("{} lists no node endpoints (is it still being created?)", self.id));
        }
        Ok(format!("memcache://{}", nodes.join(",")))
    }

    /// "0001=available 0002=rebooting cache cluster node": one line for the topology timeline.
    pub fn node_states(&self) -> String {
        self.nodes.iter().map(|n| format!("{}={}", n.id, n.status)).collect::<Vec<_>>().join(" ")
    }
}

pub async fn describe_cache_cluster(client: &Client, id: &str) -> Result<CacheClusterInfo, AwsError> {
    let out = client
        .describe_cache_clusters()
        .cache_cluster_id(id)
        .show_cache_node_info(true)
        .send()
        .await
        .map_err(|e| explain("DescribeCacheClusters", e))?;
    let c = out
        .cache_clusters()
        .first()
        .ok_or_else(|| not_listed("DescribeCacheClusters", "CacheClusterNotFoundFault", id))?;
    Ok(CacheClusterInfo {
        id: c.cache_cluster_id().unwrap_or(id).to_string(),
        status: c.cache_cluster_status().unwrap_or_default().to_string(),
        engine: c.engine().unwrap_or_default().to_string(),
        replication_group: c.replication_group_id().map(str::to_string),
        tls: c.transit_encryption_enabled().unwrap_or(false),
        nodes: c
            .cache_nodes()
            .iter()
            .map(|n| CacheNode {
                id: n.cache_node_id().unwrap_or_default().to_string(),
                status: n.cache_node_status().unwrap_or_default().to_string(),
                endpoint: endpoint(n.endpoint()),
            })
            .collect(),
    })
}

/// An answer without the resource asked for: said as AWS's own not-found fault would be.
fn not_listed(operation: &'static str, code: &str, id: &str) -> AwsError {
    AwsError {
        operation,
        code: Some(code.into()),
        message: format!("{id} is not in the answer"),
        hint: super::error::hint_for(code, operation),
    }
}

/// Whether `slot` is in a node group's `Slots` ("0-5460,10923-10925").
pub fn slots_contain(slots: &str, slot: u16) -> bool {
    slots
        .split(',')
        .filter_map(|r| {
            let (a, b) = r.trim().split_once('-').unwrap_or((r.trim(), r.trim()));
            Some((a.parse::<u16>().ok()?, b.parse::<u16>().ok()?))
        })
        .any(|(a, b)| (a..=b).contains(&slot))
}

#[cfg(test)]
mod tests {
    #[test]
    fn slot_ranges() {
        assert!(super::slots_contain("0-5460,10923-10925", 10924));
        assert!(super::slots_contain("7", 7));
        assert!(!super::slots_contain("0-5460", 5461));
    }
}
