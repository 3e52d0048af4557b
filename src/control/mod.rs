//! Controllers: ways to cause a failover. Each is a `Trigger` with a row in `TRIGGERS` (its
//! name, usage, help and what it needs); the run loop puts its start, finish and errors on the
//! timeline.

pub(crate) mod backup;
pub mod cluster;
mod command;
pub mod elasticache;
mod failover;
mod process;
mod promote;
pub(crate) mod runbook;
mod sentinel;
mod shutdown;

use crate::error::invalid;
use crate::lab::Lab;
use crate::target::Target;
use anyhow::Result;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

pub(crate) type TriggerFuture<'a> = Pin<Box<dyn Future<Output = Result<String>> + Send + 'a>>;

/// One command on a control connection, given four times the connect limit to answer.
pub(crate) async fn query<T: redis::FromRedisValue>(
    conn: &mut redis::aio::MultiplexedConnection,
    limit: Duration,
    c: &redis::Cmd,
) -> Result<T> {
    use anyhow::Context;
    tokio::time::timeout(limit * 4, c.query_async(conn)).await.context("timed out")?.map_err(Into::into)
}

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
    /// Performs the action and waits until it has completed; returns what was done.
    fn fire<'a>(&'a self, ctx: &'a TriggerContext) -> TriggerFuture<'a>;
}

/// A parsed `--trigger` (see `TRIGGERS` for each one's row).
#[derive(Clone, Debug, PartialEq)]
pub enum TriggerSpec {
    None,
    /// `SENTINEL FAILOVER`; `coordinated`: Valkey 9's `SENTINEL FAILOVER … COORDINATED`.
    Sentinel {
        coordinated: bool,
    },
    Promote,
    /// The `FAILOVER` command on the primary: pause writes, let the replica catch up, switch.
    Failover {
        force: bool,
        timeout: Option<Duration>,
    },
    Kill,
    Pause(Duration),
    Command(String),
    ClusterFailover(Option<String>),
    /// `SHUTDOWN FAILOVER` on the chosen shard's primary (Valkey >= 9, cluster mode).
    ShutdownFailover,
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

/// Which targets a trigger works on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Needs {
    Any,
    Sentinel,
    Cluster,
}

/// One row per trigger: its name, how it is written, what it does, and what it needs. The
/// `--trigger` help, the "unknown trigger" error and every precondition the run checks before
/// it writes anything come from this table.
pub struct TriggerKind {
    pub name: &'static str,
    /// How it is written, e.g. `pause=<duration>`.
    pub usage: &'static str,
    pub help: &'static str,
    /// Acts on a server process (kill, pause, restart): needs `--lab` or `--pid`.
    pub needs_process: bool,
    /// Calls the AWS API: always confirmed, whatever the endpoint.
    pub calls_aws: bool,
    /// Can act on anything (a shell command): always confirmed.
    pub always_confirm: bool,
    pub needs: Needs,
    /// Its argument (after `=`, trimmed) into a spec; None when it does not fit `usage`.
    parse: fn(Option<&str>) -> Option<TriggerSpec>,
}

impl TriggerKind {
    /// Why this trigger cannot act on `target` (its kind) or without a process to signal; None
    /// when it can. `Plan::check` is the one caller: a plan is refused in one place.
    pub(crate) fn refuses(&self, target: &Target, has_process: bool) -> Option<&'static str> {
        if self.needs_process && !has_process {
            return Some("needs the primary's process: give --lab DIR or --pid PID");
        }
        match self.needs {
            Needs::Sentinel if !target.is_sentinel() => Some("needs a redis+sentinel:// target"),
            Needs::Cluster if !target.is_cluster() => Some("needs a redis+cluster:// target"),
            _ => None,
        }
    }
}

const fn row(
    name: &'static str,
    usage: &'static str,
    help: &'static str,
    parse: fn(Option<&str>) -> Option<TriggerSpec>,
) -> TriggerKind {
    TriggerKind {
        name,
        usage,
        help,
        needs_process: false,
        calls_aws: false,
        always_confirm: false,
        needs: Needs::Any,
        parse,
    }
}

fn no_arg(spec: TriggerSpec) -> impl Fn(Option<&str>) -> Option<TriggerSpec> {
    move |arg| arg.is_none().then(|| spec.clone())
}

pub(crate) const TRIGGERS: &[TriggerKind] = &[
    row("none", "none", "observe only, for --duration", |a| no_arg(TriggerSpec::None)(a)),
    TriggerKind {
        needs: Needs::Sentinel,
        ..row(
            "sentinel",
            "sentinel[=coordinated]",
            "SENTINEL FAILOVER through the target's sentinels (coordinated: Valkey >= 9's COORDINATED, built on FAILOVER)",
            |a| match a.map(str::to_lowercase).as_deref() {
                None => Some(TriggerSpec::Sentinel { coordinated: false }),
                Some("coordinated") => Some(TriggerSpec::Sentinel { coordinated: true }),
                Some(_) => None,
            },
        )
    },
    row("promote", "promote", "REPLICAOF NO ONE on the replica, then the old primary follows it", |a| {
        no_arg(TriggerSpec::Promote)(a)
    }),
    row(
        "failover",
        "failover[=force][,timeout=<duration>]",
        "FAILOVER on the primary (Redis >= 6.2, Valkey): writes paused until the replica caught up, then the roles swap",
        |a| failover::Failover::parse(a).map(|f| TriggerSpec::Failover { force: f.force, timeout: f.timeout }),
    ),
    TriggerKind {
        needs_process: true,
        ..row("kill", "kill", "kill -9 of the primary's process (lab node or --pid)", |a| no_arg(TriggerSpec::Kill)(a))
    },
    TriggerKind {
        needs_process: true,
        ..row("restart", "restart", "kill a lab node and start it again on the same port (a node replacement)", |a| {
            no_arg(TriggerSpec::Restart)(a)
        })
    },
    TriggerKind {
        needs_process: true,
        ..row("pause", "pause=<duration>", "SIGSTOP the primary for the duration, then SIGCONT", |a| {
            crate::duration::parse_duration(a?).ok().map(TriggerSpec::Pause)
        })
    },
    TriggerKind {
        always_confirm: true,
        ..row("command", "command=<shell command>", "run a shell command (own process group, killed on timeout)", |a| {
            a.filter(|c| !c.is_empty()).map(|c| TriggerSpec::Command(c.to_string()))
        })
    },
    TriggerKind {
        needs: Needs::Cluster,
        ..row(
            "cluster-failover",
            "cluster-failover[=force|takeover]",
            "CLUSTER FAILOVER on a replica of the chosen shard",
            |a| match a.map(str::to_lowercase).as_deref() {
                None => Some(TriggerSpec::ClusterFailover(None)),
                Some(m @ ("force" | "takeover")) => Some(TriggerSpec::ClusterFailover(Some(m.to_string()))),
                Some(_) => None,
            },
        )
    },
    TriggerKind {
        needs: Needs::Cluster,
        always_confirm: true,
        ..row(
            "shutdown-failover",
            "shutdown-failover",
            "SHUTDOWN FAILOVER on the chosen shard's primary (Valkey >= 9): it hands its slots to a replica, then exits",
            |a| no_arg(TriggerSpec::ShutdownFailover)(a),
        )
    },
    TriggerKind {
        calls_aws: true,
        ..row(
            "elasticache-test-failover",
            "elasticache-test-failover[=<node-group-id>]",
            "ElastiCache TestFailover of a node group (default: the probed one)",
            |a| match a {
                None => Some(TriggerSpec::ElasticacheTestFailover(None)),
                Some(ng) => (!ng.is_empty()).then(|| TriggerSpec::ElasticacheTestFailover(Some(ng.to_string()))),
            },
        )
    },
    TriggerKind {
        calls_aws: true,
        ..row(
            "elasticache-promote",
            "elasticache-promote=<cache-cluster-id>",
            "ElastiCache ModifyReplicationGroup PrimaryClusterId",
            |a| a.filter(|id| !id.is_empty()).map(|id| TriggerSpec::ElasticachePromote(id.to_string())),
        )
    },
    TriggerKind {
        calls_aws: true,
        ..row(
            "elasticache-reboot",
            "elasticache-reboot=<cache-cluster-id>:<node-id>[,<node-id>...]",
            "ElastiCache RebootCacheCluster of the listed nodes",
            |a| parse_reboot(a?),
        )
    },
];

/// The `--trigger` help, from the table.
pub(crate) fn trigger_help() -> String {
    let usages: Vec<&str> = TRIGGERS.iter().map(|k| k.usage).collect();
    format!("What causes the failover: {}", usages.join(" | "))
}

impl TriggerSpec {
    pub fn parse(text: &str) -> Result<Self> {
        let (name, arg) = match text.split_once('=') {
            Some((n, a)) => (n.trim(), Some(a.trim())),
            None => (text.trim(), None),
        };
        let parsed = TRIGGERS.iter().find(|k| k.name == name).and_then(|k| (k.parse)(arg));
        parsed.ok_or_else(|| {
            let usages: Vec<&str> = TRIGGERS.iter().map(|k| k.usage).collect();
            invalid(format!("unknown trigger `{text}`: use {}", usages.join(", ")))
        })
    }

    /// This trigger's row of the table.
    pub fn kind(&self) -> &'static TriggerKind {
        let name = match self {
            Self::None => "none",
            Self::Sentinel { .. } => "sentinel",
            Self::Promote => "promote",
            Self::Failover { .. } => "failover",
            Self::Kill => "kill",
            Self::Pause(_) => "pause",
            Self::Command(_) => "command",
            Self::ClusterFailover(_) => "cluster-failover",
            Self::ShutdownFailover => "shutdown-failover",
            Self::Restart => "restart",
            Self::ElasticacheTestFailover(_) => "elasticache-test-failover",
            Self::ElasticachePromote(_) => "elasticache-promote",
            Self::ElasticacheReboot { .. } => "elasticache-reboot",
        };
        TRIGGERS.iter().find(|k| k.name == name).expect("every trigger has a row")
    }

    pub fn build(&self) -> Option<Box<dyn Trigger>> {
        Some(match self {
            Self::None => return None,
            Self::Sentinel { coordinated } => Box::new(sentinel::SentinelFailover { coordinated: *coordinated }),
            Self::Promote => Box::new(promote::Promote),
            Self::Failover { force, timeout } => Box::new(failover::Failover { force: *force, timeout: *timeout }),
            Self::Kill => Box::new(process::Signal::Kill),
            Self::Pause(d) => Box::new(process::Signal::Pause(*d)),
            Self::Command(c) => Box::new(command::Command(c.clone())),
            Self::ClusterFailover(mode) => Box::new(cluster::ClusterFailover(mode.clone())),
            Self::ShutdownFailover => Box::new(shutdown::ShutdownFailover),
            Self::Restart => Box::new(process::Restart),
            Self::ElasticacheTestFailover(ng) => Box::new(elasticache::TestFailover(ng.clone())),
            Self::ElasticachePromote(id) => Box::new(elasticache::Promote(id.clone())),
            Self::ElasticacheReboot { cache_cluster, nodes } => {
                Box::new(elasticache::Reboot { cache_cluster: cache_cluster.clone(), nodes: nodes.clone() })
            }
        })
    }

    pub(crate) fn label(&self) -> String {
        match self {
            Self::None => "none".into(),
            Self::Sentinel { coordinated } => sentinel::SentinelFailover { coordinated: *coordinated }.kind(),
            Self::Promote => "promote".into(),
            Self::Failover { force, timeout } => failover::Failover { force: *force, timeout: *timeout }.label(),
            Self::Kill => "kill".into(),
            Self::Pause(d) => {
                format!("pause={}", crate::duration::format_ms(d.as_secs_f64() * 1000.0).replace(' ', ""))
            }
            Self::Command(c) => format!("command={c}"),
            Self::ClusterFailover(mode) => cluster::ClusterFailover(mode.clone()).kind(),
            Self::ShutdownFailover => "shutdown-failover".into(),
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
    pub(crate) fn needs_process(&self) -> bool {
        self.kind().needs_process
    }

    /// Calls the AWS API: always confirmed (`--yes` or typed), whatever the endpoint.
    pub(crate) fn is_aws(&self) -> bool {
        self.kind().calls_aws
    }

    /// What can be checked before anything is written or fired: the chosen shard exists and,
    /// for a cluster failover, has a replica; AWS's preconditions for the ElastiCache triggers.
    /// Returns what the confirmation must show: exactly which API calls the trigger will make,
    /// or which process it will signal.
    pub async fn check(&self, ctx: &TriggerContext) -> Result<Checked> {
        let api_call = match self {
            Self::ElasticacheTestFailover(ng) => elasticache::TestFailover(ng.clone()).check(ctx).await?,
            Self::ElasticachePromote(id) => elasticache::Promote(id.clone()).check(ctx).await?,
            Self::ElasticacheReboot { cache_cluster, nodes } => {
                let reboot = elasticache::Reboot { cache_cluster: cache_cluster.clone(), nodes: nodes.clone() };
                reboot.check(ctx).await?
            }
            _ => return self.check_redis(ctx).await.map(|process| Checked { api_call: None, process }),
        };
        Ok(Checked { api_call: Some(api_call), process: None })
    }

    async fn check_redis(&self, ctx: &TriggerContext) -> Result<Option<String>> {
        let mut process = None;
        if matches!(self, Self::Kill | Self::Pause(_)) {
            process = Some(process::check_process(ctx).await?);
        }
        if matches!(self, Self::Failover { .. }) {
            failover::Failover::check(ctx).await?;
        }
        if matches!(self, Self::Sentinel { coordinated: true }) {
            sentinel::check_coordinated(ctx).await?;
        }
        if matches!(self, Self::ShutdownFailover) {
            shutdown::ShutdownFailover::check(ctx).await?;
        }
        if !ctx.target.is_cluster() {
            return Ok(process);
        }
        if matches!(self, Self::ClusterFailover(_) | Self::Kill | Self::Pause(_)) {
            let (index, shard) = cluster::chosen_shard(ctx).await?;
            if matches!(self, Self::ClusterFailover(_)) && shard.replicas.is_empty() {
                return Err(invalid(format!(
                    "shard {index} ({}) has no replica to fail over to",
                    shard.primary.addr()
                )));
            }
        }
        Ok(process)
    }
}

/// What a trigger's check found that the confirmation must name.
#[derive(Debug, Default)]
pub struct Checked {
    /// The AWS API calls each trial makes.
    pub api_call: Option<String>,
    /// The process a kill or pause signals: program, pid, address and port.
    pub process: Option<String>,
}

/// `<cache-cluster-id>:<node-id>[,<node-id>...]`.
fn parse_reboot(arg: &str) -> Option<TriggerSpec> {
    let (cluster, nodes) = arg.split_once(':')?;
    let nodes: Vec<String> = nodes.split(',').map(|n| n.trim().to_string()).filter(|n| !n.is_empty()).collect();
    if cluster.trim().is_empty() || nodes.is_empty() {
        return None;
    }
    Some(TriggerSpec::ElasticacheReboot { cache_cluster: cluster.trim().to_string(), nodes })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_trigger_specs() {
        assert_eq!(TriggerSpec::parse("pause=1.5s").unwrap(), TriggerSpec::Pause(Duration::from_millis(1500)));
        assert_eq!(TriggerSpec::parse("command=echo a=b").unwrap(), TriggerSpec::Command("echo a=b".into()));
        assert_eq!(TriggerSpec::parse("sentinel").unwrap(), TriggerSpec::Sentinel { coordinated: false });
        let coordinated = TriggerSpec::parse("sentinel=COORDINATED").unwrap();
        assert_eq!(coordinated, TriggerSpec::Sentinel { coordinated: true });
        assert_eq!(TriggerSpec::parse(&coordinated.label()).unwrap(), coordinated);
        assert!(TriggerSpec::parse("sentinel=now").is_err());
        assert!(TriggerSpec::parse("pause").is_err());
        assert!(TriggerSpec::parse("explode").is_err());
        assert_eq!(
            TriggerSpec::parse("elasticache-reboot=mc:0001,0002").unwrap(),
            TriggerSpec::ElasticacheReboot { cache_cluster: "mc".into(), nodes: vec!["0001".into(), "0002".into()] }
        );
        assert!(TriggerSpec::parse("elasticache-reboot=mc").is_err());
        assert!(TriggerSpec::parse("elasticache-promote").is_err());
        assert!(TriggerSpec::parse("kill=now").is_err(), "a trigger without an argument takes none");
        assert_eq!(
            TriggerSpec::parse("cluster-failover=FORCE").unwrap(),
            TriggerSpec::ClusterFailover(Some("force".into()))
        );
        let unknown = TriggerSpec::parse("explode").unwrap_err().to_string();
        for kind in TRIGGERS {
            assert!(unknown.contains(kind.usage), "the error lists {}: {unknown}", kind.name);
            assert!(trigger_help().contains(kind.usage));
        }
        let spec = TriggerSpec::parse("elasticache-test-failover=0002").unwrap();
        assert_eq!(spec, TriggerSpec::ElasticacheTestFailover(Some("0002".into())));
        assert_eq!(TriggerSpec::parse(&spec.label()).unwrap(), spec);
        let spec = TriggerSpec::parse("failover=force,timeout=3s").unwrap();
        assert_eq!(spec, TriggerSpec::Failover { force: true, timeout: Some(Duration::from_secs(3)) });
        assert_eq!(TriggerSpec::parse(&spec.label()).unwrap(), spec);
        assert!(TriggerSpec::parse("failover=force").is_err(), "FORCE needs a timeout");
    }
}
