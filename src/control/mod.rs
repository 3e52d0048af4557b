//! Controllers: ways to cause a failover. Each is a `Trigger`; the run loop puts its start,
//! finish and errors on the timeline.

pub mod cluster;
mod command;
pub mod elasticache;
mod process;
mod promote;
mod sentinel;

use crate::error::invalid;
use crate::lab::Lab;
use crate::target::Target;
use anyhow::Result;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

pub type TriggerFuture<'a> = Pin<Box<dyn Future<Output = Result<String>> + Send + 'a>>;

/// What a trigger may act on.
pub struct TriggerContext {
    pub target: Arc<Target>,
    pub lab: Option<Arc<Lab>>,
    /// `--pid`: the primary's process, for kill/pause outside a lab.
    pub pid: Option<u32>,
    /// Connect/command deadline for control connections.
    pub limit: Duration,
    /// How long a trigger may wait for its action to complete.
    pub max_wait: Duration,
    /// Cluster: the shard to act on (`--shard N`), or the one owning `--key K`; default 0.
    pub shard: Option<usize>,
    pub key: Option<String>,
    /// How many trials the run has (a quota-limited trigger counts them all before the first).
    pub trials: usize,
    /// `--replication-group` / `--cache-cluster`: the AWS side of the run.
    pub aws: Option<Arc<crate::aws::watch::AwsRun>>,
}

pub trait Trigger: Send + Sync {
    /// Short name for the report (`sentinel`, `kill`, `pause=2s`, ...).
    fn kind(&self) -> String;
    /// Whether it changes the deployment (asks for confirmation against a non-loopback target).
    fn destructive(&self) -> bool {
        true
    }
    /// Performs the action and waits until it has completed; returns what was done.
    fn fire<'a>(&'a self, ctx: &'a TriggerContext) -> TriggerFuture<'a>;
}

/// `--trigger` values: none, sentinel, promote, kill, pause=<D>, command=<shell command>.
#[derive(Clone, Debug, PartialEq)]
pub enum TriggerSpec {
    None,
    Sentinel,
    Promote,
    Kill,
    Pause(Duration),
    Command(String),
    ClusterFailover(Option<String>),
    /// Kill a lab node and start it again on the same port: a node replacement.
    Restart,
    /// ElastiCache TestFailover on a node group (default: the probed one).
    ElasticacheTestFailover(Option<String>),
    /// ElastiCache ModifyReplicationGroup PrimaryClusterId.
    ElasticachePromote(String),
    /// ElastiCache RebootCacheCluster.
    ElasticacheReboot {
        cache_cluster: String,
        nodes: Vec<String>,
    },
}

impl TriggerSpec {
    pub fn parse(text: &str) -> Result<Self> {
        let (name, arg) = match text.split_once('=') {
            Some((n, a)) => (n.trim(), Some(a)),
            None => (text.trim(), None),
        };
        Ok(match (name, arg) {
            ("none", None) => Self::None,
            ("sentinel", None) => Self::Sentinel,
            ("promote", None) => Self::Promote,
            ("kill", None) => Self::Kill,
            ("restart", None) => Self::Restart,
            ("pause", Some(d)) => Self::Pause(crate::duration::parse_duration(d).map_err(invalid)?),
            ("command", Some(c)) if !c.trim().is_empty() => Self::Command(c.to_string()),
            ("cluster-failover", None) => Self::ClusterFailover(None),
            ("elasticache-test-failover", None) => Self::ElasticacheTestFailover(None),
            ("elasticache-test-failover", Some(ng)) if !ng.trim().is_empty() => {
                Self::ElasticacheTestFailover(Some(ng.trim().to_string()))
            }
            ("elasticache-promote", Some(id)) if !id.trim().is_empty() => Self::ElasticachePromote(id.trim().to_string()),
            ("elasticache-reboot", Some(arg)) => parse_reboot(arg)?,
            ("cluster-failover", Some(m)) if ["force", "takeover"].contains(&m.to_lowercase().as_str()) => {
                Self::ClusterFailover(Some(m.to_lowercase()))
            }
            _ => {
                return Err(invalid(format!(
                    "unknown trigger `{text}`: use none, sentinel, promote, kill, restart, pause=<duration>, command=<shell command>, cluster-failover[=force|takeover], elasticache-test-failover[=<node-group-id>], elasticache-promote=<cache-cluster-id> or elasticache-reboot=<cache-cluster-id>:<node-id>[,<node-id>...]"
                )))
            }
        })
    }

    pub fn build(&self) -> Option<Box<dyn Trigger>> {
        Some(match self {
            Self::None => return None,
            Self::Sentinel => Box::new(sentinel::SentinelFailover),
            Self::Promote => Box::new(promote::Promote),
            Self::Kill => Box::new(process::Signal::Kill),
            Self::Pause(d) => Box::new(process::Signal::Pause(*d)),
            Self::Command(c) => Box::new(command::Command(c.clone())),
            Self::ClusterFailover(mode) => Box::new(cluster::ClusterFailover(mode.clone())),
            Self::Restart => Box::new(process::Restart),
            Self::ElasticacheTestFailover(ng) => Box::new(elasticache::TestFailover(ng.clone())),
            Self::ElasticachePromote(id) => Box::new(elasticache::Promote(id.clone())),
            Self::ElasticacheReboot { cache_cluster, nodes } => {
                Box::new(elasticache::Reboot { cache_cluster: cache_cluster.clone(), nodes: nodes.clone() })
            }
        })
    }

    pub fn label(&self) -> String {
        match self {
            Self::None => "none".into(),
            Self::Sentinel => "sentinel".into(),
            Self::Promote => "promote".into(),
            Self::Kill => "kill".into(),
            Self::Pause(d) => {
                format!("pause={}", crate::duration::format_ms(d.as_secs_f64() * 1000.0).replace(' ', ""))
            }
            Self::Command(c) => format!("command={c}"),
            Self::ClusterFailover(mode) => cluster::ClusterFailover(mode.clone()).kind(),
            Self::Restart => "restart".into(),
            Self::ElasticacheTestFailover(None) => "elasticache-test-failover".into(),
            Self::ElasticacheTestFailover(Some(ng)) => format!("elasticache-test-failover={ng}"),
            Self::ElasticachePromote(id) => format!("elasticache-promote={id}"),
            Self::ElasticacheReboot { cache_cluster, nodes } => {
                format!("elasticache-reboot={cache_cluster}:{}", nodes.join(","))
            }
        }
    }

    /// Needs the primary's process: from `--lab` or `--pid`.
    pub fn needs_process(&self) -> bool {
        matches!(self, Self::Kill | Self::Pause(_) | Self::Restart)
    }

    /// Calls the AWS API: always confirmed (`--yes` or typed), whatever the endpoint.
    pub fn is_aws(&self) -> bool {
        matches!(self, Self::ElasticacheTestFailover(_) | Self::ElasticachePromote(_) | Self::ElasticacheReboot { .. })
    }

    /// What can be checked before anything is written or fired: the chosen shard exists and,
    /// for a cluster failover, has a replica; AWS's preconditions for the ElastiCache triggers.
    /// Returns, for those, exactly which API calls the trigger will make.
    pub async fn check(&self, ctx: &TriggerContext) -> Result<Option<String>> {
        match self {
            Self::ElasticacheTestFailover(ng) => {
                return elasticache::TestFailover(ng.clone()).check(ctx).await.map(Some)
            }
            Self::ElasticachePromote(id) => return elasticache::Promote(id.clone()).check(ctx).await.map(Some),
            Self::ElasticacheReboot { cache_cluster, nodes } => {
                let reboot = elasticache::Reboot { cache_cluster: cache_cluster.clone(), nodes: nodes.clone() };
                return reboot.check(ctx).await.map(Some);
            }
            _ => {}
        }
        self.check_redis(ctx).await.map(|_| None)
    }

    async fn check_redis(&self, ctx: &TriggerContext) -> Result<()> {
        if matches!(self, Self::Kill | Self::Pause(_)) {
            process::check_process(ctx).await?;
        }
        if !ctx.target.is_cluster() {
            return match self {
                Self::ClusterFailover(_) => Err(invalid("cluster-failover needs a redis+cluster:// target")),
                _ => Ok(()),
            };
        }
        if matches!(self, Self::ClusterFailover(_) | Self::Kill | Self::Pause(_)) {
            let (index, shard) = cluster::chosen_shard(ctx).await.map_err(|e| invalid(format!("{e:#}")))?;
            if matches!(self, Self::ClusterFailover(_)) && shard.replicas.is_empty() {
                return Err(invalid(format!(
                    "shard {index} ({}) has no replica to fail over to",
                    shard.primary.addr()
                )));
            }
        }
        Ok(())
    }
}

/// `<cache-cluster-id>:<node-id>[,<node-id>...]`.
fn parse_reboot(arg: &str) -> Result<TriggerSpec> {
    let usage = || {
        invalid(format!("elasticache-reboot=`{arg}`: expected <cache-cluster-id>:<node-id>[,<node-id>...], e.g. my-memcached:0001,0002"))
    };
    let (cluster, nodes) = arg.split_once(':').ok_or_else(usage)?;
    let nodes: Vec<String> = nodes.split(',').map(|n| n.trim().to_string()).filter(|n| !n.is_empty()).collect();
    if cluster.trim().is_empty() || nodes.is_empty() {
        return Err(usage());
    }
    Ok(TriggerSpec::ElasticacheReboot { cache_cluster: cluster.trim().to_string(), nodes })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_trigger_specs() {
        assert_eq!(TriggerSpec::parse("pause=1.5s").unwrap(), TriggerSpec::Pause(Duration::from_millis(1500)));
        assert_eq!(TriggerSpec::parse("command=echo a=b").unwrap(), TriggerSpec::Command("echo a=b".into()));
        assert_eq!(TriggerSpec::parse("sentinel").unwrap(), TriggerSpec::Sentinel);
        assert!(TriggerSpec::parse("pause").is_err());
        assert!(TriggerSpec::parse("explode").is_err());
        assert_eq!(
            TriggerSpec::parse("elasticache-reboot=mc:0001,0002").unwrap(),
            TriggerSpec::ElasticacheReboot { cache_cluster: "mc".into(), nodes: vec!["0001".into(), "0002".into()] }
        );
        assert!(TriggerSpec::parse("elasticache-reboot=mc").is_err());
        assert!(TriggerSpec::parse("elasticache-promote").is_err());
        let spec = TriggerSpec::parse("elasticache-test-failover=0002").unwrap();
        assert_eq!(spec, TriggerSpec::ElasticacheTestFailover(Some("0002".into())));
        assert_eq!(TriggerSpec::parse(&spec.label()).unwrap(), spec);
    }
}
