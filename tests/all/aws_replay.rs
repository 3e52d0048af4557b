//! Replays of ElastiCache response shapes as the API reference documents them, through the real
//! aws-sdk-elasticache client (aws-smithy-http-client's StaticReplayClient), so a change of the
//! emulator cannot hide a parsing bug in failprobe.

use aws_sdk_elasticache::config::{BehaviorVersion, Credentials, Region};
use aws_smithy_http_client::test_util::{ReplayEvent, StaticReplayClient};
use aws_smithy_types::body::SdkBody;
use chrono::{TimeZone, Utc};
use failprobe::aws::{events, group, Client};

fn client(replies: Vec<(u16, &str)>) -> (Client, StaticReplayClient) {
    let events = replies
        .into_iter()
        .map(|(status, body)| {
            ReplayEvent::new(
                http::Request::builder()
                    .uri("https://elasticache.us-east-1.amazonaws.com/")
                    .body(SdkBody::empty())
                    .unwrap(),
                http::Response::builder().status(status).body(SdkBody::from(body.to_string())).unwrap(),
            )
        })
        .collect();
    let replay = StaticReplayClient::new(events);
    let config = aws_sdk_elasticache::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("AKIDREPLAY", "secret", None, None, "replay"))
        .http_client(replay.clone())
        .build();
    (Client::from_conf(config), replay)
}

fn body(replay: &StaticReplayClient, n: usize) -> String {
    let req = replay.actual_requests().nth(n).expect("request made");
    String::from_utf8(req.body().bytes().expect("in-memory body").to_vec()).unwrap()
}

const EVENTS_PAGE_1: &str = r#"<DescribeEventsResponse xmlns="http://elasticache.amazonaws.com/doc/2015-02-02/">
  <DescribeEventsResult>
    <Marker>page-2</Marker>
    <Events>
      <Event>
        <Message>Finished recovery for cache nodes 0001</Message>
        <SourceType>cache-cluster</SourceType>
        <Date>2026-06-25T19:42:10.511Z</Date>
        <SourceIdentifier>prod-002</SourceIdentifier>
      </Event>
      <Event>
        <Message>Failover from master node prod-001 to replica node prod-002 completed</Message>
        <SourceType>replication-group</SourceType>
        <Date>2026-06-25T19:31:05.102Z</Date>
        <SourceIdentifier>prod</SourceIdentifier>
      </Event>
    </Events>
  </DescribeEventsResult>
  <ResponseMetadata><RequestId>e9b6c1a2-0000-11e6-8a2e-000000000001</RequestId></ResponseMetadata>
</DescribeEventsResponse>"#;

const EVENTS_PAGE_2: &str = r#"<DescribeEventsResponse xmlns="http://elasticache.amazonaws.com/doc/2015-02-02/">
  <DescribeEventsResult>
    <Events>
      <Event>
        <Message>The node with Cache Cluster ID: prod-002, Node ID: 2 is scheduled for replacement during the maintenance window from Start Time: Jun 25 19:00 UTC, End Time: Jun 25 20:00 UTC</Message>
        <SourceType>cache-cluster</SourceType>
        <Date>2026-06-20T08:00:00Z</Date>
        <SourceIdentifier>prod-002</SourceIdentifier>
      </Event>
    </Events>
  </DescribeEventsResult>
  <ResponseMetadata><RequestId>e9b6c1a2-0000-11e6-8a2e-000000000002</RequestId></ResponseMetadata>
</DescribeEventsResponse>"#;

#[tokio::test]
async fn describe_events_follows_markers_and_keeps_aws_times() {
    let (client, replay) = client(vec![(200, EVENTS_PAGE_1), (200, EVENTS_PAGE_2)]);
    let since = Utc.with_ymd_and_hms(2026, 6, 14, 0, 0, 0).unwrap();
    let got = events::fetch(&client, events::Window::Since(since)).await.unwrap();
    assert_eq!(got.len(), 3);
    assert_eq!(got[0].date, Utc.with_ymd_and_hms(2026, 6, 20, 8, 0, 0).unwrap(), "oldest first");
    assert_eq!(got[0].class(), events::Class::ReplacementScheduled);
    assert_eq!(got[1].source_type, "replication-group");
    assert_eq!(got[1].class(), events::Class::FailoverCompleted);
    assert_eq!(got[2].date.timestamp_subsec_millis(), 511, "AWS's milliseconds kept");
    let first = body(&replay, 0);
    assert!(first.contains("Action=DescribeEvents") && first.contains("StartTime=2026-06-14T00%3A00%3A00Z"), "{first}");
    assert!(first.contains("MaxRecords=100"), "{first}");
    assert!(body(&replay, 1).contains("Marker=page-2"), "second page asked with the marker");
}

const CLUSTER_MODE_GROUP: &str = r#"<DescribeReplicationGroupsResponse xmlns="http://elasticache.amazonaws.com/doc/2015-02-02/">
  <DescribeReplicationGroupsResult>
    <ReplicationGroups>
      <ReplicationGroup>
        <ReplicationGroupId>orders</ReplicationGroupId>
        <Status>available</Status>
        <ClusterEnabled>true</ClusterEnabled>
        <TransitEncryptionEnabled>true</TransitEncryptionEnabled>
        <AuthTokenEnabled>true</AuthTokenEnabled>
        <AutomaticFailover>enabled</AutomaticFailover>
        <MultiAZ>enabled</MultiAZ>
        <Engine>valkey</Engine>
        <ConfigurationEndpoint>
          <Address>clustercfg.orders.abc123.use1.cache.amazonaws.com</Address>
          <Port>6379</Port>
        </ConfigurationEndpoint>
        <MemberClusters>
          <ClusterId>orders-0001-001</ClusterId>
          <ClusterId>orders-0001-002</ClusterId>
          <ClusterId>orders-0002-001</ClusterId>
          <ClusterId>orders-0002-002</ClusterId>
        </MemberClusters>
        <NodeGroups>
          <NodeGroup>
            <NodeGroupId>0001</NodeGroupId>
            <Status>available</Status>
            <Slots>0-8191</Slots>
            <NodeGroupMembers>
              <NodeGroupMember>
                <CacheClusterId>orders-0001-001</CacheClusterId>
                <CacheNodeId>0001</CacheNodeId>
                <PreferredAvailabilityZone>us-east-1a</PreferredAvailabilityZone>
              </NodeGroupMember>
              <NodeGroupMember>
                <CacheClusterId>orders-0001-002</CacheClusterId>
                <CacheNodeId>0001</CacheNodeId>
                <PreferredAvailabilityZone>us-east-1b</PreferredAvailabilityZone>
              </NodeGroupMember>
            </NodeGroupMembers>
          </NodeGroup>
          <NodeGroup>
            <NodeGroupId>0002</NodeGroupId>
            <Status>available</Status>
            <Slots>8192-16383</Slots>
            <NodeGroupMembers>
              <NodeGroupMember>
                <CacheClusterId>orders-0002-001</CacheClusterId>
                <CacheNodeId>0001</CacheNodeId>
              </NodeGroupMember>
            </NodeGroupMembers>
          </NodeGroup>
        </NodeGroups>
      </ReplicationGroup>
    </ReplicationGroups>
  </DescribeReplicationGroupsResult>
  <ResponseMetadata><RequestId>ab12</RequestId></ResponseMetadata>
</DescribeReplicationGroupsResponse>"#;

#[tokio::test]
async fn a_cluster_mode_group_becomes_a_tls_cluster_target() {
    let (client, replay) = client(vec![(200, CLUSTER_MODE_GROUP)]);
    let g = group::describe_group(&client, "orders").await.unwrap();
    assert_eq!(g.target_url().unwrap(), "rediss+cluster://clustercfg.orders.abc123.use1.cache.amazonaws.com:6379");
    assert_eq!(g.engine, "valkey");
    assert!(g.auth_required, "AuthTokenEnabled: the password must be given");
    assert!(g.automatic_failover_enabled());
    assert_eq!(g.node_groups.len(), 2);
    assert_eq!(g.node_groups[1].slots.as_deref(), Some("8192-16383"));
    assert!(group::slots_contain(g.node_groups[1].slots.as_deref().unwrap(), 9000));
    assert_eq!(g.node_groups[0].members[1].cache_cluster, "orders-0001-002");
    assert_eq!(g.node_groups[0].members[0].role, None, "no CurrentRole in cluster mode");
    assert_eq!(g.member_clusters.len(), 4);
    assert!(body(&replay, 0).contains("ReplicationGroupId=orders"));
}

const DISABLED_GROUP: &str = r#"<DescribeReplicationGroupsResponse xmlns="http://elasticache.amazonaws.com/doc/2015-02-02/">
  <DescribeReplicationGroupsResult>
    <ReplicationGroups>
      <ReplicationGroup>
        <ReplicationGroupId>sessions</ReplicationGroupId>
        <Status>available</Status>
        <ClusterEnabled>false</ClusterEnabled>
        <AutomaticFailover>disabled</AutomaticFailover>
        <NodeGroups>
          <NodeGroup>
            <NodeGroupId>0001</NodeGroupId>
            <Status>available</Status>
            <PrimaryEndpoint><Address>sessions.abc123.ng.0001.use1.cache.amazonaws.com</Address><Port>6379</Port></PrimaryEndpoint>
            <ReaderEndpoint><Address>sessions-ro.abc123.ng.0001.use1.cache.amazonaws.com</Address><Port>6379</Port></ReaderEndpoint>
            <NodeGroupMembers>
              <NodeGroupMember><CacheClusterId>sessions-001</CacheClusterId><CacheNodeId>0001</CacheNodeId><CurrentRole>primary</CurrentRole></NodeGroupMember>
              <NodeGroupMember><CacheClusterId>sessions-002</CacheClusterId><CacheNodeId>0001</CacheNodeId><CurrentRole>replica</CurrentRole></NodeGroupMember>
            </NodeGroupMembers>
          </NodeGroup>
        </NodeGroups>
      </ReplicationGroup>
    </ReplicationGroups>
  </DescribeReplicationGroupsResult>
  <ResponseMetadata><RequestId>cd34</RequestId></ResponseMetadata>
</DescribeReplicationGroupsResponse>"#;

#[tokio::test]
async fn a_cluster_mode_disabled_group_is_probed_on_its_primary_endpoint() {
    let (client, _) = client(vec![(200, DISABLED_GROUP)]);
    let g = group::describe_group(&client, "sessions").await.unwrap();
    assert_eq!(g.target_url().unwrap(), "redis://sessions.abc123.ng.0001.use1.cache.amazonaws.com:6379");
    assert_eq!(g.roles(), "sessions-001=primary sessions-002=replica");
    assert_eq!(g.primary().unwrap().cache_cluster, "sessions-001");
    assert!(!g.automatic_failover_enabled());
    assert_eq!(g.engine, "redis", "older answers carry no Engine");
    assert!(!g.auth_required);
}

const MEMCACHED: &str = r#"<DescribeCacheClustersResponse xmlns="http://elasticache.amazonaws.com/doc/2015-02-02/">
  <DescribeCacheClustersResult>
    <CacheClusters>
      <CacheCluster>
        <CacheClusterId>sessions-mc</CacheClusterId>
        <ConfigurationEndpoint><Address>sessions-mc.abc123.cfg.use1.cache.amazonaws.com</Address><Port>11211</Port></ConfigurationEndpoint>
        <Engine>memcached</Engine>
        <EngineVersion>1.6.22</EngineVersion>
        <CacheClusterStatus>available</CacheClusterStatus>
        <NumCacheNodes>2</NumCacheNodes>
        <TransitEncryptionEnabled>false</TransitEncryptionEnabled>
        <CacheNodes>
          <CacheNode>
            <CacheNodeId>0001</CacheNodeId>
            <CacheNodeStatus>available</CacheNodeStatus>
            <Endpoint><Address>sessions-mc.abc123.0001.use1.cache.amazonaws.com</Address><Port>11211</Port></Endpoint>
          </CacheNode>
          <CacheNode>
            <CacheNodeId>0002</CacheNodeId>
            <CacheNodeStatus>rebooting cache cluster nodes</CacheNodeStatus>
            <Endpoint><Address>sessions-mc.abc123.0002.use1.cache.amazonaws.com</Address><Port>11211</Port></Endpoint>
          </CacheNode>
        </CacheNodes>
      </CacheCluster>
    </CacheClusters>
  </DescribeCacheClustersResult>
  <ResponseMetadata><RequestId>mc01</RequestId></ResponseMetadata>
</DescribeCacheClustersResponse>"#;

#[tokio::test]
async fn a_memcached_cluster_is_probed_on_every_node_endpoint() {
    let (client, replay) = client(vec![
        (200, MEMCACHED),
        (200, &MEMCACHED.replace("<TransitEncryptionEnabled>false", "<TransitEncryptionEnabled>true")),
    ]);
    let c = group::describe_cache_cluster(&client, "sessions-mc").await.unwrap();
    assert_eq!(
        c.memcache_url().unwrap(),
        "memcache://sessions-mc.abc123.0001.use1.cache.amazonaws.com:11211,sessions-mc.abc123.0002.use1.cache.amazonaws.com:11211"
    );
    assert_eq!(c.node_states(), "0001=available 0002=rebooting cache cluster nodes");
    assert!(body(&replay, 0).contains("ShowCacheNodeInfo=true"), "node endpoints asked for");
    let tls = group::describe_cache_cluster(&client, "sessions-mc").await.unwrap();
    assert!(tls.memcache_url().unwrap_err().contains("plain TCP only"));
}

const QUOTA_FAULT: &str = r#"<ErrorResponse xmlns="http://elasticache.amazonaws.com/doc/2015-02-02/">
  <Error>
    <Type>Sender</Type>
    <Code>TestFailoverNotAvailableFault</Code>
    <Message>TestFailover is not available for node group 0001 of replication group sessions.</Message>
  </Error>
  <RequestId>ef56</RequestId>
</ErrorResponse>"#;

#[tokio::test]
async fn a_fault_keeps_its_code_and_message_and_gains_a_plain_explanation() {
    let (client, _) = client(vec![(400, QUOTA_FAULT)]);
    let err = client.test_failover().replication_group_id("sessions").node_group_id("0001").send().await.unwrap_err();
    let e = failprobe::aws::error::explain("TestFailover", err);
    assert!(e.is("TestFailoverNotAvailableFault"));
    assert_eq!(e.message, "TestFailover is not available for node group 0001 of replication group sessions.");
    let text = e.to_string();
    assert!(text.starts_with("TestFailover: TestFailoverNotAvailableFault: TestFailover is not available"), "{text}");
    assert!(text.contains("15 node groups (shards) per rolling 24 h"), "{text}");
}
