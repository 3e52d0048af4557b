//! An ElastiCache API emulator for tests: it speaks the awsQuery protocol (form-encoded `POST /`,
//! XML answers and `ErrorResponse` faults) for exactly the operations failprobe calls, and is wired
//! to a local lab so that what it says is true:
//! - a replication group is the lab's Sentinel pair; its primary endpoint is a TCP forwarder that
//!   sends each new connection to the node Sentinel calls primary (as AWS's DNS name follows the
//!   primary), while connections already open stay where they are;
//! - TestFailover runs SENTINEL FAILOVER and logs the documented events with the real times;
//! - DescribeReplicationGroups reports each member's role from ROLE;
//! - a Memcached cache cluster is the lab's memcached nodes, and RebootCacheCluster restarts them.
//!
//! Test support only: it is not part of the failprobe binary.
#![allow(dead_code)]

use chrono::{DateTime, Utc};
use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Clone, Debug)]
pub struct EmuEvent {
    pub date: DateTime<Utc>,
    pub source_type: String,
    pub source_id: String,
    pub message: String,
}

#[derive(Clone, Debug)]
pub struct Member {
    pub cluster_id: String,
    pub port: u16,
}

#[derive(Clone, Debug)]
pub struct Group {
    pub id: String,
    pub status: String,
    pub automatic_failover: bool,
    pub multi_az: bool,
    pub members: Vec<Member>,
    pub sentinel_port: u16,
    pub master_name: String,
    /// The primary endpoint: a forwarder to whichever node is primary.
    pub endpoint_port: u16,
    /// Cluster mode: the node groups (shards) and the configuration endpoint.
    pub shards: Vec<Shard>,
    pub configuration_port: u16,
    /// ListTagsForResource's answer for the group's ARN.
    pub tags: Vec<(String, String)>,
}

/// A node group of a cluster-mode group: fixed slots, its members (the first was primary).
#[derive(Clone, Debug)]
pub struct Shard {
    pub id: String,
    pub slots: (u16, u16),
    pub members: Vec<Member>,
}

impl Group {
    /// Available, with automatic failover and Multi-AZ: what TestFailover needs.
    fn new(id: &str, members: Vec<Member>) -> Self {
        Group {
            id: id.into(),
            status: "available".into(),
            automatic_failover: true,
            multi_az: true,
            members,
            sentinel_port: 0,
            master_name: String::new(),
            endpoint_port: 0,
            shards: Vec::new(),
            configuration_port: 0,
            tags: Vec::new(),
        }
    }
}

/// A snapshot as DescribeSnapshots lists it: `creating` while the group's primary saves (a real
/// BGSAVE on it), then `available`.
#[derive(Clone, Debug)]
pub struct Snapshot {
    pub name: String,
    pub group: String,
    pub status: String,
}

#[derive(Clone, Debug)]
pub struct CacheCluster {
    pub id: String,
    pub status: String,
    /// (node id, port)
    pub nodes: Vec<(String, u16)>,
    pub lab_dir: std::path::PathBuf,
}

#[derive(Clone, Debug)]
pub struct UpdateAction {
    pub resource: String,
    pub service_update: String,
    pub status: String,
    pub severity: String,
}

#[derive(Default)]
pub struct State {
    pub groups: HashMap<String, Group>,
    pub cache_clusters: HashMap<String, CacheCluster>,
    pub events: Vec<EmuEvent>,
    pub update_actions: Vec<UpdateAction>,
    /// DescribeUpdateActions answers AccessDenied (credentials without that permission).
    pub deny_update_actions: bool,
    /// TestFailover calls left in the rolling 24 h.
    pub test_failover_quota: u32,
    /// Snapshots taken (CreateSnapshot): never deleted, as on AWS until someone does.
    pub snapshots: Vec<Snapshot>,
    /// Every Action received, in order, and its parameters.
    pub calls: Vec<String>,
    pub params: Vec<Vec<(String, String)>>,
}

pub struct Emulator {
    pub port: u16,
    /// The group's primary endpoint (forwarder), when a group is wired.
    pub endpoint_port: u16,
    pub state: Arc<Mutex<State>>,
    stop: Arc<AtomicBool>,
}

impl Drop for Emulator {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

impl Emulator {
    pub fn start() -> Self {
        let state = Arc::new(Mutex::new(State { test_failover_quota: 15, ..Default::default() }));
        let stop = Arc::new(AtomicBool::new(false));
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        listener.set_nonblocking(true).unwrap();
        let (st, stp) = (state.clone(), stop.clone());
        std::thread::spawn(move || accept_loop(listener, stp, move |s| serve_http(s, st.clone())));
        Self { port, endpoint_port: 0, state, stop }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Wires replication group `id` to a Sentinel lab: members `<id>-001`, `<id>-002`, ... in
    /// the order of `ports`; node group 0001; primary endpoint on a forwarder.
    pub fn add_sentinel_group(&mut self, id: &str, ports: &[u16], sentinel_port: u16, master_name: &str) {
        let members = ports
            .iter()
            .enumerate()
            .map(|(i, p)| Member { cluster_id: format!("{id}-{:03}", i + 1), port: *p })
            .collect();
        self.endpoint_port = start_forwarder(sentinel_port, master_name.to_string(), self.stop.clone());
        let group = Group {
            sentinel_port,
            master_name: master_name.into(),
            endpoint_port: self.endpoint_port,
            ..Group::new(id, members)
        };
        self.state.lock().unwrap().groups.insert(id.into(), group);
    }

    /// A group whose primary endpoint is the server on `port` itself (no forwarder, no
    /// failover): enough to be discovered and probed.
    pub fn add_direct_group(&mut self, id: &str, port: u16, tags: &[(&str, &str)]) {
        let members = vec![Member { cluster_id: format!("{id}-001"), port }];
        let tags = tags.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let group = Group { endpoint_port: port, tags, ..Group::new(id, members) };
        self.state.lock().unwrap().groups.insert(id.into(), group);
    }

    /// A group with no servers behind it (for the event log alone).
    pub fn add_plain_group(&mut self, id: &str, members: &[&str]) {
        let members = members.iter().map(|m| Member { cluster_id: m.to_string(), port: 0 }).collect();
        self.state.lock().unwrap().groups.insert(id.into(), Group::new(id, members));
    }

    /// A cluster-mode group over a lab cluster: node groups 0001, 0002, ... in slot order (as
    /// CLUSTER SLOTS lists them now), members `<id>-<ng>-001` (its primary) and `-002`, ...
    pub fn add_cluster_group(&self, id: &str, seed_port: u16) {
        let mut c = redis_conn(seed_port).expect("cluster node answers");
        let slots: Vec<redis::Value> = redis::cmd("CLUSTER").arg("SLOTS").query(&mut c).unwrap();
        let mut ranges: Vec<(u16, u16, Vec<u16>)> = slots
            .into_iter()
            .map(|v| {
                let items: Vec<redis::Value> = redis::from_redis_value(v).unwrap();
                let (lo, hi): (u16, u16) = (
                    redis::from_redis_value(items[0].clone()).unwrap(),
                    redis::from_redis_value(items[1].clone()).unwrap(),
                );
                let ports = items[2..]
                    .iter()
                    .map(|n| redis::from_redis_value::<Vec<redis::Value>>(n.clone()).unwrap())
                    .map(|n| redis::from_redis_value::<u16>(n[1].clone()).unwrap())
                    .collect();
                (lo, hi, ports)
            })
            .collect();
        ranges.sort();
        let shards: Vec<Shard> = ranges
            .into_iter()
            .enumerate()
            .map(|(i, (lo, hi, ports))| {
                let ng = format!("{:04}", i + 1);
                let members = ports
                    .iter()
                    .enumerate()
                    .map(|(j, p)| Member { cluster_id: format!("{id}-{ng}-{:03}", j + 1), port: *p })
                    .collect();
                Shard { id: ng, slots: (lo, hi), members }
            })
            .collect();
        let members = shards.iter().flat_map(|s| s.members.clone()).collect();
        let group = Group { shards, configuration_port: seed_port, ..Group::new(id, members) };
        self.state.lock().unwrap().groups.insert(id.into(), group);
    }

    /// The parameters of every call of `action`, in order.
    pub fn params_of(&self, action: &str) -> Vec<Vec<(String, String)>> {
        let st = self.state.lock().unwrap();
        st.params.iter().filter(|p| p.iter().any(|(k, v)| k == "Action" && v == action)).cloned().collect()
    }

    pub fn add_memcached_cluster(&self, id: &str, ports: &[u16], lab_dir: &std::path::Path) {
        let nodes = ports.iter().enumerate().map(|(i, p)| (format!("{:04}", i + 1), *p)).collect();
        let c = CacheCluster { id: id.into(), status: "available".into(), nodes, lab_dir: lab_dir.to_path_buf() };
        self.state.lock().unwrap().cache_clusters.insert(id.into(), c);
    }

    pub fn push_event(&self, date: DateTime<Utc>, source_type: &str, source_id: &str, message: &str) {
        self.state.lock().unwrap().events.push(EmuEvent {
            date,
            source_type: source_type.into(),
            source_id: source_id.into(),
            message: message.into(),
        });
    }

    pub fn calls(&self) -> Vec<String> {
        self.state.lock().unwrap().calls.clone()
    }

    pub fn with_group(&self, id: &str, f: impl FnOnce(&mut Group)) {
        f(self.state.lock().unwrap().groups.get_mut(id).unwrap())
    }

    /// The events logged, oldest first.
    pub fn events(&self) -> Vec<EmuEvent> {
        let mut e = self.state.lock().unwrap().events.clone();
        e.sort_by_key(|e| e.date);
        e
    }

    /// Environment for a failprobe process: credentials that sign requests, no real AWS config.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ACCESS_KEY_ID", "AKIDEMULATOR".into()),
            ("AWS_SECRET_ACCESS_KEY", "emulator-secret".into()),
            ("AWS_REGION", "us-east-1".into()),
            ("AWS_CONFIG_FILE", "/nonexistent/failprobe-test-config".into()),
            ("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/failprobe-test-credentials".into()),
            ("AWS_EC2_METADATA_DISABLED", "true".into()),
            ("AWS_ENDPOINT_URL_ELASTICACHE", self.url()),
        ]
    }
}

pub fn accept_loop(listener: TcpListener, stop: Arc<AtomicBool>, handle: impl Fn(TcpStream) + Send + Clone + 'static) {
    while !stop.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((s, _)) => {
                s.set_nonblocking(false).ok();
                let h = handle.clone();
                std::thread::spawn(move || h(s));
            }
            Err(_) => std::thread::sleep(Duration::from_millis(5)),
        }
    }
}

/// The primary endpoint: each new connection goes to whichever node Sentinel calls primary now.
fn start_forwarder(sentinel_port: u16, master: String, stop: Arc<AtomicBool>) -> u16 {
    let primary = Arc::new(AtomicU16::new(0));
    let (p, s) = (primary.clone(), stop.clone());
    std::thread::spawn(move || {
        while !s.load(Ordering::SeqCst) {
            if let Some(port) = sentinel_primary(sentinel_port, &master) {
                p.store(port, Ordering::SeqCst);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    while primary.load(Ordering::SeqCst) == 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    listener.set_nonblocking(true).unwrap();
    std::thread::spawn(move || {
        accept_loop(listener, stop, move |client| {
            let port = primary.load(Ordering::SeqCst);
            let Ok(upstream) = TcpStream::connect((host(port).as_str(), port)) else { return };
            pipe(client, upstream);
        })
    });
    port
}

fn pipe(a: TcpStream, b: TcpStream) {
    let (mut a2, mut b2) = (a.try_clone().unwrap(), b.try_clone().unwrap());
    let (mut a, mut b) = (a, b);
    let t = std::thread::spawn(move || {
        let _ = std::io::copy(&mut a2, &mut b2);
        let _ = b2.shutdown(std::net::Shutdown::Write);
    });
    let _ = std::io::copy(&mut b, &mut a);
    let _ = a.shutdown(std::net::Shutdown::Both);
    let _ = t.join();
}

/// The lab's nodes by port: each has a loopback address of its own, and the emulator names
/// members by port (`know_lab` before a group is added).
static HOSTS: Mutex<BTreeMap<u16, String>> = Mutex::new(BTreeMap::new());

pub fn know_lab(lab: &failprobe::lab::Lab) {
    let mut hosts = HOSTS.lock().unwrap_or_else(|e| e.into_inner());
    hosts.extend(lab.nodes().into_iter().map(|n| (n.port, n.ip.to_string())));
}

fn host(port: u16) -> String {
    HOSTS.lock().unwrap_or_else(|e| e.into_inner()).get(&port).cloned().unwrap_or_else(|| "127.0.0.1".into())
}

fn redis_conn(port: u16) -> Option<redis::Connection> {
    let client = redis::Client::open(format!("redis://{}:{port}", host(port))).ok()?;
    client.get_connection_with_timeout(Duration::from_millis(500)).ok()
}

fn sentinel_primary(sentinel_port: u16, master: &str) -> Option<u16> {
    let mut c = redis_conn(sentinel_port)?;
    let (_, port): (String, u16) =
        redis::cmd("SENTINEL").arg("get-master-addr-by-name").arg(master).query(&mut c).ok()?;
    Some(port)
}

/// `primary`, `replica`, or None when the node does not answer.
fn role(port: u16) -> Option<String> {
    let mut c = redis_conn(port)?;
    let v: Vec<redis::Value> = redis::cmd("ROLE").query(&mut c).ok()?;
    let r: String = redis::from_redis_value(v.into_iter().next()?).ok()?;
    Some(if r == "master" { "primary".into() } else { "replica".into() })
}

fn replica_in_sync(port: u16) -> bool {
    let Some(mut c) = redis_conn(port) else { return false };
    let info: String = redis::cmd("INFO").arg("replication").query(&mut c).unwrap_or_default();
    info.contains("role:slave") && info.contains("master_link_status:up")
}

// ---- HTTP / awsQuery ----

fn serve_http(stream: TcpStream, state: Arc<Mutex<State>>) {
    stream.set_read_timeout(Some(Duration::from_secs(30))).ok();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut out = stream;
    loop {
        let mut length = 0usize;
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            if h == "\r\n" || h == "\n" {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                if k.eq_ignore_ascii_case("content-length") {
                    length = v.trim().parse().unwrap_or(0);
                }
            }
        }
        let mut body = vec![0u8; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let params: Vec<(String, String)> = url::form_urlencoded::parse(&body).into_owned().collect();
        let (status, xml) = handle(&state, &Params(params));
        let reason = if status == 200 { "OK" } else { "Bad Request" };
        let head = format!(
            "HTTP/1.1 {status} {reason}\r\nContent-Type: text/xml\r\nContent-Length: {}\r\nx-amzn-RequestId: emu\r\n\r\n",
            xml.len()
        );
        if out.write_all(head.as_bytes()).and_then(|_| out.write_all(xml.as_bytes())).is_err() {
            return;
        }
    }
}

struct Params(Vec<(String, String)>);

impl Params {
    fn get(&self, k: &str) -> Option<&str> {
        self.0.iter().find(|(a, _)| a == k).map(|(_, v)| v.as_str())
    }

    /// `Name.member.1`, `Name.CacheNodeId.1`, ...: every list entry, in index order.
    fn list(&self, name: &str) -> Vec<String> {
        let prefix = format!("{name}.");
        let mut items: Vec<(u32, String)> = self
            .0
            .iter()
            .filter(|(k, _)| k.starts_with(&prefix))
            .filter_map(|(k, v)| Some((k.rsplit('.').next()?.parse().ok()?, v.clone())))
            .collect();
        items.sort();
        items.into_iter().map(|(_, v)| v).collect()
    }
}

type Reply = (u16, String);

fn fault(code: &str, message: &str) -> Reply {
    (
        400,
        format!(
            r#"<ErrorResponse xmlns="http://elasticache.amazonaws.com/doc/2015-02-02/"><Error><Type>Sender</Type><Code>{code}</Code><Message>{}</Message></Error><RequestId>emu</RequestId></ErrorResponse>"#,
            esc(message)
        ),
    )
}

fn ok(action: &str, inner: &str) -> Reply {
    (
        200,
        format!(
            r#"<{action}Response xmlns="http://elasticache.amazonaws.com/doc/2015-02-02/"><{action}Result>{inner}</{action}Result><ResponseMetadata><RequestId>emu</RequestId></ResponseMetadata></{action}Response>"#
        ),
    )
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

fn handle(state: &Arc<Mutex<State>>, p: &Params) -> Reply {
    let action = p.get("Action").unwrap_or("").to_string();
    {
        let mut st = state.lock().unwrap();
        st.calls.push(action.clone());
        st.params.push(p.0.clone());
    }
    match action.as_str() {
        "DescribeEvents" => describe_events(state, p),
        "DescribeReplicationGroups" => describe_groups(state, p),
        "DescribeCacheClusters" => describe_cache_clusters(state, p),
        "DescribeUpdateActions" => describe_update_actions(state, p),
        "TestFailover" => test_failover(state, p),
        "ModifyReplicationGroup" => modify_group(state, p),
        "RebootCacheCluster" => reboot(state, p),
        "CreateSnapshot" => create_snapshot(state, p),
        "DescribeSnapshots" => describe_snapshots(state, p),
        "ListTagsForResource" => list_tags(state, p),
        other => fault("InvalidAction", &format!("the emulator does not implement {other}")),
    }
}

fn describe_events(state: &Arc<Mutex<State>>, p: &Params) -> Reply {
    let parse = |k: &str| p.get(k).and_then(|t| DateTime::parse_from_rfc3339(t).ok()).map(|t| t.with_timezone(&Utc));
    let now = Utc::now();
    let start = parse("StartTime")
        .or_else(|| p.get("Duration").and_then(|d| d.parse().ok()).map(|m: i64| now - chrono::Duration::minutes(m)))
        .unwrap_or(now - chrono::Duration::hours(1));
    if start < now - chrono::Duration::days(14) - chrono::Duration::minutes(1) {
        return fault("InvalidParameterValue", "events are kept for 14 days");
    }
    let max: usize = p.get("MaxRecords").and_then(|m| m.parse().ok()).unwrap_or(100);
    if !(20..=100).contains(&max) {
        return fault("InvalidParameterValue", "MaxRecords must be between 20 and 100");
    }
    let end = parse("EndTime").unwrap_or(now);
    let mut events: Vec<EmuEvent> = state.lock().unwrap().events.clone();
    events.retain(|e| e.date >= start && e.date <= end);
    events.retain(|e| p.get("SourceIdentifier").is_none_or(|s| s == e.source_id));
    events.retain(|e| p.get("SourceType").is_none_or(|s| s == e.source_type));
    // Newest first, as AWS lists them.
    events.sort_by_key(|e| std::cmp::Reverse(e.date));
    let from: usize = p.get("Marker").and_then(|m| m.parse().ok()).unwrap_or(0);
    let page: Vec<&EmuEvent> = events.iter().skip(from).take(max).collect();
    let marker = if from + max < events.len() { format!("<Marker>{}</Marker>", from + max) } else { String::new() };
    let items: String = page
        .iter()
        .map(|e| {
            format!(
                "<Event><SourceIdentifier>{}</SourceIdentifier><SourceType>{}</SourceType><Message>{}</Message><Date>{}</Date></Event>",
                esc(&e.source_id),
                esc(&e.source_type),
                esc(&e.message),
                ts(e.date)
            )
        })
        .collect();
    ok("DescribeEvents", &format!("{marker}<Events>{items}</Events>"))
}

fn arn(id: &str) -> String {
    format!("arn:aws:elasticache:us-east-1:123456789012:replicationgroup:{id}")
}

fn list_tags(state: &Arc<Mutex<State>>, p: &Params) -> Reply {
    let st = state.lock().unwrap();
    let name = p.get("ResourceName").unwrap_or("");
    let Some(g) = st.groups.values().find(|g| arn(&g.id) == name) else {
        return fault("ReplicationGroupNotFoundFault", &format!("{name} not found."));
    };
    let tags: String =
        g.tags.iter().map(|(k, v)| format!("<Tag><Key>{}</Key><Value>{}</Value></Tag>", esc(k), esc(v))).collect();
    ok("ListTagsForResource", &format!("<TagList>{tags}</TagList>"))
}

fn group_xml(g: &Group) -> String {
    if !g.shards.is_empty() {
        return cluster_group_xml(g);
    }
    let enabled = |b: bool| if b { "enabled" } else { "disabled" };
    let members: String = g
        .members
        .iter()
        .map(|m| {
            let role = role(m.port).map(|r| format!("<CurrentRole>{r}</CurrentRole>")).unwrap_or_default();
            format!(
                "<NodeGroupMember><CacheClusterId>{}</CacheClusterId><CacheNodeId>0001</CacheNodeId><ReadEndpoint><Address>{}</Address><Port>{}</Port></ReadEndpoint><PreferredAvailabilityZone>us-east-1a</PreferredAvailabilityZone>{role}</NodeGroupMember>",
                m.cluster_id, host(m.port), m.port
            )
        })
        .collect();
    let clusters: String = g.members.iter().map(|m| format!("<ClusterId>{}</ClusterId>", m.cluster_id)).collect();
    format!(
        "<ReplicationGroup><ReplicationGroupId>{id}</ReplicationGroupId><ARN>{arn}</ARN><Description>failprobe emulator</Description><Status>{status}</Status><MemberClusters>{clusters}</MemberClusters><NodeGroups><NodeGroup><NodeGroupId>0001</NodeGroupId><Status>{status}</Status><PrimaryEndpoint><Address>{}</Address><Port>{}</Port></PrimaryEndpoint><NodeGroupMembers>{members}</NodeGroupMembers></NodeGroup></NodeGroups><AutomaticFailover>{af}</AutomaticFailover><MultiAZ>{maz}</MultiAZ><ClusterEnabled>false</ClusterEnabled><TransitEncryptionEnabled>false</TransitEncryptionEnabled><Engine>redis</Engine></ReplicationGroup>",
        host(g.endpoint_port),
        g.endpoint_port,
        id = g.id,
        arn = arn(&g.id),
        status = g.status,
        af = enabled(g.automatic_failover),
        maz = enabled(g.multi_az),
    )
}

/// Cluster mode: a configuration endpoint, node groups with slots, no member roles (as AWS).
fn cluster_group_xml(g: &Group) -> String {
    let node_groups: String = g
        .shards
        .iter()
        .map(|s| {
            let members: String = s
                .members
                .iter()
                .map(|m| format!("<NodeGroupMember><CacheClusterId>{}</CacheClusterId><CacheNodeId>0001</CacheNodeId></NodeGroupMember>", m.cluster_id))
                .collect();
            format!(
                "<NodeGroup><NodeGroupId>{}</NodeGroupId><Status>{}</Status><Slots>{}-{}</Slots><NodeGroupMembers>{members}</NodeGroupMembers></NodeGroup>",
                s.id, g.status, s.slots.0, s.slots.1
            )
        })
        .collect();
    let clusters: String = g.members.iter().map(|m| format!("<ClusterId>{}</ClusterId>", m.cluster_id)).collect();
    format!(
        "<ReplicationGroup><ReplicationGroupId>{}</ReplicationGroupId><Status>{}</Status><MemberClusters>{clusters}</MemberClusters><NodeGroups>{node_groups}</NodeGroups><AutomaticFailover>enabled</AutomaticFailover><MultiAZ>enabled</MultiAZ><ClusterEnabled>true</ClusterEnabled><ConfigurationEndpoint><Address>{}</Address><Port>{}</Port></ConfigurationEndpoint><Engine>redis</Engine></ReplicationGroup>",
        g.id, g.status, host(g.configuration_port), g.configuration_port
    )
}

fn describe_groups(state: &Arc<Mutex<State>>, p: &Params) -> Reply {
    let groups: Vec<Group> = state.lock().unwrap().groups.values().cloned().collect();
    let wanted = p.get("ReplicationGroupId");
    let found: Vec<&Group> = groups.iter().filter(|g| wanted.is_none_or(|w| w == g.id)).collect();
    if found.is_empty() && wanted.is_some() {
        return fault(
            "ReplicationGroupNotFoundFault",
            &format!("Replication group {} not found.", wanted.unwrap_or("")),
        );
    }
    let items: String = found.iter().map(|g| group_xml(g)).collect();
    ok("DescribeReplicationGroups", &format!("<ReplicationGroups>{items}</ReplicationGroups>"))
}

fn describe_cache_clusters(state: &Arc<Mutex<State>>, p: &Params) -> Reply {
    let id = p.get("CacheClusterId").unwrap_or("");
    let st = state.lock().unwrap();
    if let Some(c) = st.cache_clusters.get(id) {
        let nodes: String = c
            .nodes
            .iter()
            .map(|(n, port)| {
                format!(
                    "<CacheNode><CacheNodeId>{n}</CacheNodeId><CacheNodeStatus>available</CacheNodeStatus><Endpoint><Address>{}</Address><Port>{port}</Port></Endpoint></CacheNode>",
                    host(*port)
                )
            })
            .collect();
        return ok(
            "DescribeCacheClusters",
            &format!(
                "<CacheClusters><CacheCluster><CacheClusterId>{}</CacheClusterId><Engine>memcached</Engine><CacheClusterStatus>{}</CacheClusterStatus><NumCacheNodes>{}</NumCacheNodes><CacheNodes>{nodes}</CacheNodes></CacheCluster></CacheClusters>",
                c.id,
                c.status,
                c.nodes.len()
            ),
        );
    }
    for g in st.groups.values() {
        if let Some(m) = g.members.iter().find(|m| m.cluster_id == id) {
            return ok(
                "DescribeCacheClusters",
                &format!(
                    "<CacheClusters><CacheCluster><CacheClusterId>{id}</CacheClusterId><Engine>redis</Engine><CacheClusterStatus>available</CacheClusterStatus><ReplicationGroupId>{}</ReplicationGroupId><CacheNodes><CacheNode><CacheNodeId>0001</CacheNodeId><CacheNodeStatus>available</CacheNodeStatus><Endpoint><Address>{}</Address><Port>{}</Port></Endpoint></CacheNode></CacheNodes></CacheCluster></CacheClusters>",
                    g.id, host(m.port), m.port
                ),
            );
        }
    }
    fault("CacheClusterNotFoundFault", &format!("CacheCluster {id} not found."))
}

fn describe_update_actions(state: &Arc<Mutex<State>>, p: &Params) -> Reply {
    if state.lock().unwrap().deny_update_actions {
        return fault("AccessDenied", "User is not authorized to perform: elasticache:DescribeUpdateActions");
    }
    let mut resources = p.list("ReplicationGroupIds");
    resources.extend(p.list("CacheClusterIds"));
    let statuses = p.list("UpdateActionStatus");
    let items: String = state
        .lock()
        .unwrap()
        .update_actions
        .iter()
        .filter(|a| resources.is_empty() || resources.contains(&a.resource))
        .filter(|a| statuses.is_empty() || statuses.contains(&a.status))
        .map(|a| {
            format!(
                "<UpdateAction><ReplicationGroupId>{}</ReplicationGroupId><ServiceUpdateName>{}</ServiceUpdateName><ServiceUpdateSeverity>{}</ServiceUpdateSeverity><ServiceUpdateType>security-update</ServiceUpdateType><UpdateActionStatus>{}</UpdateActionStatus><ServiceUpdateRecommendedApplyByDate>2027-01-15T00:00:00Z</ServiceUpdateRecommendedApplyByDate></UpdateAction>",
                a.resource, a.service_update, a.severity, a.status
            )
        })
        .collect();
    ok("DescribeUpdateActions", &format!("<UpdateActions>{items}</UpdateActions>"))
}

/// Logs an event now. AWS's events are seconds apart; these, milliseconds: never the same time.
fn log(state: &Arc<Mutex<State>>, source_type: &str, source_id: &str, message: String) {
    std::thread::sleep(Duration::from_millis(5));
    state.lock().unwrap().events.push(EmuEvent {
        date: Utc::now(),
        source_type: source_type.into(),
        source_id: source_id.into(),
        message,
    });
}

fn test_failover(state: &Arc<Mutex<State>>, p: &Params) -> Reply {
    let id = p.get("ReplicationGroupId").unwrap_or("").to_string();
    let ng = p.get("NodeGroupId").unwrap_or("").to_string();
    let group = {
        let mut st = state.lock().unwrap();
        let Some(g) = st.groups.get(&id).cloned() else {
            return fault("ReplicationGroupNotFoundFault", &format!("Replication group {id} not found."));
        };
        let known = if g.shards.is_empty() { ng == "0001" } else { g.shards.iter().any(|s| s.id == ng) };
        if !known {
            return fault("NodeGroupNotFoundFault", &format!("Node group {ng} not found."));
        }
        if g.status != "available" {
            return fault("InvalidReplicationGroupStateFault", &format!("Replication group {id} is not available."));
        }
        if !g.automatic_failover {
            return fault("InvalidReplicationGroupStateFault", "Automatic failover is not enabled.");
        }
        if st.test_failover_quota == 0 {
            return fault("TestFailoverNotAvailableFault", "TestFailover is not available: quota exceeded.");
        }
        st.test_failover_quota -= 1;
        g
    };
    log(state, "replication-group", &id, format!("Test Failover API called for node group {ng}"));
    let (st, g) = (state.clone(), group.clone());
    match g.shards.iter().find(|s| s.id == ng).cloned() {
        Some(shard) => std::thread::spawn(move || run_cluster_failover(&st, &g, &shard)),
        None => std::thread::spawn(move || run_failover(&st, &g)),
    };
    let xml = group_xml(&group);
    ok("TestFailover", &xml)
}

/// SENTINEL FAILOVER, then the documented events as the lab reaches each step.
fn run_failover(state: &Arc<Mutex<State>>, g: &Group) {
    let Some(old) = sentinel_primary(g.sentinel_port, &g.master_name) else { return };
    if let Some(mut c) = redis_conn(g.sentinel_port) {
        let _: redis::RedisResult<()> = redis::cmd("SENTINEL").arg("FAILOVER").arg(&g.master_name).query(&mut c);
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    let new = loop {
        match sentinel_primary(g.sentinel_port, &g.master_name) {
            Some(p) if p != old => break p,
            _ if Instant::now() > deadline => return,
            _ => std::thread::sleep(Duration::from_millis(20)),
        }
    };
    log_completion(state, g, old, new, deadline);
}

/// CLUSTER FAILOVER on the node group's replica, then the same events as for a group.
fn run_cluster_failover(state: &Arc<Mutex<State>>, g: &Group, shard: &Shard) {
    let by_role = |r: &str| shard.members.iter().find(|m| role(m.port).as_deref() == Some(r)).map(|m| m.port);
    let (Some(old), Some(new)) = (by_role("primary"), by_role("replica")) else { return };
    if let Some(mut c) = redis_conn(new) {
        let _: redis::RedisResult<()> = redis::cmd("CLUSTER").arg("FAILOVER").query(&mut c);
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while role(new).as_deref() != Some("primary") {
        if Instant::now() > deadline {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    log_completion(state, g, old, new, deadline);
}

/// "Failover … completed" (cache cluster and group), "Recovering", and "Finished recovery" once
/// the old primary replicates from the new one.
fn log_completion(state: &Arc<Mutex<State>>, g: &Group, old: u16, new: u16, deadline: Instant) {
    let name = |port: u16| g.members.iter().find(|m| m.port == port).map(|m| m.cluster_id.clone()).unwrap_or_default();
    let (old_id, new_id) = (name(old), name(new));
    let text = format!("Failover from primary node {old_id} to replica node {new_id} completed");
    log(state, "cache-cluster", &new_id, text.clone());
    log(state, "replication-group", &g.id, text);
    log(state, "cache-cluster", &old_id, "Recovering cache nodes 0001".into());
    while !replica_in_sync(old) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    log(state, "cache-cluster", &old_id, "Finished recovery for cache nodes 0001".into());
}

fn snapshot_xml(s: &Snapshot) -> String {
    format!(
        "<Snapshot><SnapshotName>{}</SnapshotName><ReplicationGroupId>{}</ReplicationGroupId><SnapshotStatus>{}</SnapshotStatus><SnapshotSource>manual</SnapshotSource></Snapshot>",
        esc(&s.name),
        esc(&s.group),
        s.status
    )
}

/// CreateSnapshot of a replication group: `creating` at once; a thread runs BGSAVE on the
/// group's primary and waits for it (LASTSAVE), then marks it `available`.
fn create_snapshot(state: &Arc<Mutex<State>>, p: &Params) -> Reply {
    let (Some(name), Some(id)) = (p.get("SnapshotName"), p.get("ReplicationGroupId")) else {
        return fault("InvalidParameterCombination", "SnapshotName and ReplicationGroupId are required here.");
    };
    let mut st = state.lock().unwrap();
    if st.snapshots.iter().any(|s| s.name == name) {
        return fault("SnapshotAlreadyExistsFault", &format!("Snapshot {name} already exists."));
    }
    let Some(g) = st.groups.get(id) else {
        return fault("ReplicationGroupNotFoundFault", &format!("Replication group {id} not found."));
    };
    let ports: Vec<u16> = g.members.iter().map(|m| m.port).collect();
    let snapshot = Snapshot { name: name.to_string(), group: id.to_string(), status: "creating".into() };
    let reply = ok("CreateSnapshot", &snapshot_xml(&snapshot));
    st.snapshots.push(snapshot);
    let (state, name) = (state.clone(), name.to_string());
    std::thread::spawn(move || {
        let saved = ports.into_iter().find(|p| role(*p).as_deref() == Some("primary")).and_then(|port| {
            let mut c = redis_conn(port)?;
            let before: i64 = redis::cmd("LASTSAVE").query(&mut c).ok()?;
            std::thread::sleep(Duration::from_millis(1100));
            let _: String = redis::cmd("BGSAVE").query(&mut c).ok()?;
            let deadline = Instant::now() + Duration::from_secs(30);
            while Instant::now() < deadline {
                let now: i64 = redis::cmd("LASTSAVE").query(&mut c).ok()?;
                if now > before {
                    return Some(());
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            None
        });
        let mut st = state.lock().unwrap();
        if let Some(s) = st.snapshots.iter_mut().find(|s| s.name == name) {
            s.status = if saved.is_some() { "available" } else { "failed" }.into();
        }
    });
    reply
}

fn describe_snapshots(state: &Arc<Mutex<State>>, p: &Params) -> Reply {
    let st = state.lock().unwrap();
    let name = p.get("SnapshotName");
    let items: String = st.snapshots.iter().filter(|s| name.is_none_or(|n| n == s.name)).map(snapshot_xml).collect();
    if let (Some(n), true) = (name, items.is_empty()) {
        return fault("SnapshotNotFoundFault", &format!("Snapshot {n} not found."));
    }
    ok("DescribeSnapshots", &format!("<Snapshots>{items}</Snapshots>"))
}

fn modify_group(state: &Arc<Mutex<State>>, p: &Params) -> Reply {
    let id = p.get("ReplicationGroupId").unwrap_or("").to_string();
    let mut st = state.lock().unwrap();
    let Some(g) = st.groups.get_mut(&id) else {
        return fault("ReplicationGroupNotFoundFault", &format!("Replication group {id} not found."));
    };
    if g.status != "available" {
        return fault("InvalidReplicationGroupStateFault", &format!("Replication group {id} is not available."));
    }
    if let Some(af) = p.get("AutomaticFailoverEnabled") {
        g.automatic_failover = af == "true";
        g.multi_az = p.get("MultiAZEnabled") == Some("true");
    }
    if let Some(primary) = p.get("PrimaryClusterId") {
        if g.automatic_failover {
            return fault(
                "InvalidParameterCombination",
                "Cannot set PrimaryClusterId while AutomaticFailover is enabled.",
            );
        }
        let Some(member) = g.members.iter().find(|m| m.cluster_id == primary).cloned() else {
            return fault("InvalidParameterValue", &format!("{primary} is not a member of {id}."));
        };
        g.status = "modifying".into();
        let (st2, g2) = (state.clone(), g.clone());
        std::thread::spawn(move || {
            if role(member.port).as_deref() != Some("primary") {
                if let Some(mut c) = redis_conn(g2.sentinel_port) {
                    let _: redis::RedisResult<()> =
                        redis::cmd("SENTINEL").arg("FAILOVER").arg(&g2.master_name).query(&mut c);
                }
                let deadline = Instant::now() + Duration::from_secs(30);
                while sentinel_primary(g2.sentinel_port, &g2.master_name) != Some(member.port)
                    && Instant::now() < deadline
                {
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
            st2.lock().unwrap().groups.get_mut(&g2.id).unwrap().status = "available".into();
        });
    }
    let g = g.clone();
    drop(st);
    let xml = group_xml(&g);
    ok("ModifyReplicationGroup", &xml)
}

fn reboot(state: &Arc<Mutex<State>>, p: &Params) -> Reply {
    let id = p.get("CacheClusterId").unwrap_or("").to_string();
    let nodes = p.list("CacheNodeIdsToReboot");
    let cluster = {
        let mut st = state.lock().unwrap();
        let Some(c) = st.cache_clusters.get_mut(&id) else {
            return fault("CacheClusterNotFoundFault", &format!("CacheCluster {id} not found."));
        };
        if c.status != "available" {
            return fault("InvalidCacheClusterStateFault", &format!("{id} is not available."));
        }
        if let Some(n) = nodes.iter().find(|n| !c.nodes.iter().any(|(id, _)| id == *n)) {
            return fault("InvalidParameterValue", &format!("Cache node {n} not found."));
        }
        c.status = "rebooting cache cluster nodes".into();
        c.clone()
    };
    let st = state.clone();
    let ids = nodes.clone();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        // The cloud reboots the node, not failprobe: the run holds the lab's lock meanwhile.
        let lab = failprobe::lab::Lab::read(&cluster.lab_dir).unwrap();
        for n in &ids {
            let port = cluster.nodes.iter().find(|(id, _)| id == n).map(|(_, p)| *p).unwrap();
            log(&st, "cache-cluster", &cluster.id, format!("Cache node {n} shutdown"));
            rt.block_on(lab.restart_port(port)).unwrap();
            log(&st, "cache-cluster", &cluster.id, format!("Cache node {n} restarted"));
        }
        lab.detach();
        st.lock().unwrap().cache_clusters.get_mut(&cluster.id).unwrap().status = "available".into();
    });
    ok(
        "RebootCacheCluster",
        &format!(
            "<CacheCluster><CacheClusterId>{id}</CacheClusterId><Engine>memcached</Engine><CacheClusterStatus>rebooting cache cluster nodes</CacheClusterStatus></CacheCluster>"
        ),
    )
}
