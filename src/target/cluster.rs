//! Redis Cluster: which shard owns which slots, and keys that land in a given shard.

use super::{Discovery, Target};
use crate::sample::ErrorClass;
use crate::target::error::{classify, ProbeError};
use redis::Value;
use std::time::Duration;
use tokio::time::timeout;

pub const SLOTS: u16 = 16384;

/// CRC16-XMODEM, as Redis Cluster uses it for key slots.
fn crc16(data: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for &b in data {
        crc ^= (b as u16) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 { (crc << 1) ^ 0x1021 } else { crc << 1 };
        }
    }
    crc
}

/// The slot of a key, honouring `{hash tags}`.
pub(crate) fn slot_of(key: &[u8]) -> u16 {
    let tagged = key.iter().position(|&c| c == b'{').and_then(|open| {
        let close = key[open + 1..].iter().position(|&c| c == b'}')?;
        (close > 0).then(|| &key[open + 1..open + 1 + close])
    });
    crc16(tagged.unwrap_or(key)) % SLOTS
}

#[derive(Clone, Debug, PartialEq)]
pub(crate) struct ClusterNode {
    pub host: String,
    pub port: u16,
    pub id: String,
}

impl ClusterNode {
    pub fn addr(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}

/// One shard: its slot ranges, its primary and replicas, as CLUSTER SLOTS reports them.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct ShardInfo {
    pub ranges: Vec<(u16, u16)>,
    pub primary: ClusterNode,
    pub replicas: Vec<ClusterNode>,
}

impl ShardInfo {
    pub(crate) fn owns(&self, slot: u16) -> bool {
        self.ranges.iter().any(|(lo, hi)| (*lo..=*hi).contains(&slot))
    }
}

/// CLUSTER SLOTS from the first seed (or known node) that answers, grouped by primary and
/// ordered by first slot, so "shard 0" is the one holding slot 0.
pub(crate) async fn cluster_shards(
    target: &Target,
    nodes: &[(String, u16)],
    limit: Duration,
) -> Result<Vec<ShardInfo>, ProbeError> {
    let mut last = ProbeError::new(ErrorClass::Other, "no cluster node configured");
    for (host, port) in nodes {
        match query_slots(target, host, *port, limit).await {
            Ok(shards) if !shards.is_empty() => return Ok(shards),
            Ok(_) => last = ProbeError::new(ErrorClass::Clusterdown, format!("{host}:{port} reports no slots")),
            Err(e) => last = e,
        }
    }
    Err(ProbeError::new(last.class, format!("no cluster node answered CLUSTER SLOTS: {}", last.text)))
}

async fn query_slots(target: &Target, host: &str, port: u16, limit: Duration) -> Result<Vec<ShardInfo>, ProbeError> {
    let (mut conn, _) = super::connect_node(target, host, port, limit).await?;
    let v: Value = timeout(limit, redis::cmd("CLUSTER").arg("SLOTS").query_async(&mut conn))
        .await
        .map_err(|_| ProbeError::timeout("CLUSTER SLOTS"))?
        .map_err(|e| classify(&e))?;
    Ok(parse_slots(v, host))
}

fn parse_node(v: &Value, default_host: &str) -> Option<ClusterNode> {
    let Value::Array(items) = v else { return None };
    let host: String = redis::from_redis_value_ref(items.first()?).ok()?;
    let port: i64 = redis::from_redis_value_ref(items.get(1)?).ok()?;
    let port = u16::try_from(port).ok().filter(|p| *p > 0)?;
    let id: String = items.get(2).and_then(|v| redis::from_redis_value_ref(v).ok()).unwrap_or_default();
    let host = if host.is_empty() { default_host.to_string() } else { host };
    Some(ClusterNode { host, port, id })
}

fn parse_slots(v: Value, default_host: &str) -> Vec<ShardInfo> {
    let Value::Array(entries) = v else { return Vec::new() };
    let mut shards: Vec<ShardInfo> = Vec::new();
    for e in entries {
        let Value::Array(parts) = e else { continue };
        let (Some(lo), Some(hi)) = (parts.first(), parts.get(1)) else { continue };
        let (Ok(lo), Ok(hi)) = (redis::from_redis_value_ref::<i64>(lo), redis::from_redis_value_ref::<i64>(hi)) else {
            continue;
        };
        // A range outside 0..16384 or upside down is not a real cluster's: skipped, so it can
        // neither own a slot by mistake nor make a tag search run forever.
        if !(0..SLOTS as i64).contains(&lo) || !(lo..SLOTS as i64).contains(&hi) {
            continue;
        }
        let Some(primary) = parts.get(2).and_then(|n| parse_node(n, default_host)) else { continue };
        let replicas: Vec<ClusterNode> = parts.iter().skip(3).filter_map(|n| parse_node(n, default_host)).collect();
        match shards.iter_mut().find(|s| s.primary.addr() == primary.addr()) {
            Some(s) => s.ranges.push((lo as u16, hi as u16)),
            None => shards.push(ShardInfo { ranges: vec![(lo as u16, hi as u16)], primary, replicas }),
        }
    }
    for s in &mut shards {
        s.ranges.sort_unstable();
    }
    shards.sort_by_key(|s| s.ranges.first().map(|r| r.0).unwrap_or(u16::MAX));
    shards
}

/// The primaries the cluster has flagged `fail` (its nodes agreed it is down: cluster
/// `FAIL`, not a single node's `fail?`), as the first of `nodes` that answers CLUSTER NODES
/// says; with the node that said it.
pub(crate) async fn failed_primaries(
    target: &Target,
    nodes: &[(String, u16)],
    limit: Duration,
) -> Result<(String, Vec<(String, &'static str)>), ProbeError> {
    let mut last = ProbeError::new(ErrorClass::Other, "no cluster node configured");
    for (host, port) in nodes {
        let answer = async {
            let (mut conn, _) = super::connect_node(target, host, *port, limit).await?;
            timeout(limit, redis::cmd("CLUSTER").arg("NODES").query_async::<String>(&mut conn))
                .await
                .map_err(|_| ProbeError::timeout("CLUSTER NODES"))?
                .map_err(|e| classify(&e))
        };
        match answer.await {
            Ok(text) => return Ok((format!("{host}:{port}"), parse_failed(&text))),
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// `<id> <ip:port@cport[,hostname]> <flags> …` lines → the primaries flagged `fail` (the
/// cluster agreed it is down) or `fail?` (PFAIL: the node asked suspects it), with that flag.
fn parse_failed(nodes: &str) -> Vec<(String, &'static str)> {
    nodes
        .lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let (_, addr, flags) = (fields.next()?, fields.next()?, fields.next()?);
            let flags: Vec<&str> = flags.split(',').collect();
            let flag = ["fail", "fail?"].into_iter().find(|f| flags.contains(f))?;
            flags.contains(&"master").then(|| (addr.split('@').next().unwrap_or(addr).to_string(), flag))
        })
        .collect()
}

/// A hash tag `<run-id>.<n>` whose slot lies in `shard`: every key of that shard's probe uses it.
/// Bounded: a shard owning one slot of 16 384 is found within ~200 000 tries with near
/// certainty; a shard that owns nothing (a broken CLUSTER SLOTS) is an error, not a spin.
pub(crate) fn tag_for(run_id: &str, shard: &ShardInfo) -> Option<String> {
    (0u32..2_000_000).map(|n| format!("{run_id}.{n}")).find(|tag| shard.owns(slot_of(tag.as_bytes())))
}

pub(crate) fn seeds(target: &Target) -> Vec<(String, u16)> {
    match &target.discovery {
        Discovery::Cluster { seeds } => seeds.clone(),
        Discovery::Direct { host, port } => vec![(host.clone(), *port)],
        Discovery::Nodes { nodes } => nodes.clone(),
        Discovery::Sentinel { .. } | Discovery::Memcache { .. } => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn primaries_flagged_fail_or_suspected_by_the_node_asked() {
        let nodes = "\
a1 127.0.0.1:7000@17000 myself,master - 0 0 1 connected 0-5460
b2 127.0.0.1:7001@17001 master,fail - 1 2 2 disconnected
c3 127.0.0.1:7002@17002,host.example master,fail? - 1 2 3 connected 10923-16383
d4 127.0.0.1:7003@17003 slave,fail a1 1 2 1 disconnected
";
        let failed = [("127.0.0.1:7001".to_string(), "fail"), ("127.0.0.1:7002".to_string(), "fail?")];
        assert_eq!(parse_failed(nodes), failed);
        assert!(parse_failed("garbage\n\n").is_empty());
    }

    #[test]
    fn slots_match_redis() {
        assert_eq!(crc16(b"123456789"), 0x31C3);
        assert_eq!(slot_of(b"foo"), 12182);
        assert_eq!(slot_of(b"{user1000}.following"), slot_of(b"{user1000}.followers"));
        assert_eq!(slot_of(b"foo{}{bar}"), slot_of(b"foo{}{bar}"));
        assert_eq!(slot_of(b"{}x"), crc16(b"{}x") % SLOTS);
    }

    #[test]
    fn a_tag_is_found_for_each_shard() {
        let node = ClusterNode { host: "h".into(), port: 1, id: String::new() };
        for ranges in [vec![(0, 5460)], vec![(5461, 10922)], vec![(10923, 16383)], vec![(100, 100)]] {
            let shard = ShardInfo { ranges, primary: node.clone(), replicas: vec![] };
            let tag = tag_for("abc", &shard).unwrap();
            assert!(shard.owns(slot_of(format!("failprobe:{{{tag}}}:t0:log").as_bytes())));
        }
        let nothing = ShardInfo { ranges: vec![], primary: node.clone(), replicas: vec![] };
        assert_eq!(tag_for("abc", &nothing), None);
    }

    #[test]
    fn malformed_slot_ranges_are_skipped() {
        let node = |port: i64| Value::Array(vec![Value::BulkString(b"127.0.0.1".to_vec()), Value::Int(port)]);
        let range = |lo: i64, hi: i64, port: i64| Value::Array(vec![Value::Int(lo), Value::Int(hi), node(port)]);
        let v = Value::Array(vec![range(16000, 5, 1), range(0, 99999, 2), range(-1, 5, 3), range(0, 16383, 4)]);
        let shards = parse_slots(v, "h");
        assert_eq!(shards.len(), 1);
        assert_eq!(shards[0].primary.port, 4);
    }
}
